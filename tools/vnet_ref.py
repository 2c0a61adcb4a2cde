#!/usr/bin/python3
"""tools/vnet_ref.py - the V-Net that nn/vnet.c runs, in 2-D (slide tiles) or 3-D (volumes).

Milletari, Navab & Ahmadi, "V-Net: Fully Convolutional Neural Networks for Volumetric Medical
Image Segmentation" (3DV 2016): every resolution level is a residual stage of 5x5(x5) "same"
convolutions, each followed by a PReLU, whose input is added to its output (then one more PReLU);
down-sampling is a 2x2(x2) convolution with stride 2 that doubles the channels; up-sampling a
2x2(x2) transposed convolution with stride 2 that halves them, concatenated with the encoder
stage of the same level (the skip); a 1x1(x1) convolution to 2 channels and a softmax give the
per-voxel probabilities of background and foreground (lesion). The paper's input stage adds the
single-channel input replicated 16 times; here the input channels are repeated in turn up to width
channels (channel c of the residual is input channel c % in_channels: width / in_channels copies
when width is a multiple, as for 3 -> 12; the RGB default 3 -> 16 ends with one extra R plane).
There is no BatchNorm (the paper has none).

Beside the segmentation head, a classification branch on the bottleneck: global average pool ->
Linear -> ReLU gives the tile's feature vector ('features', feature_dim numbers), and Linear on it
gives 'tile_logits' (the tile's class, trained as an auxiliary task; the graph uses 'features').

Training (tools/train_patho.py), export and the parity tests all build the module here from the
metadata the blob carries, so the blob and the module cannot disagree.

Metadata keys (strings, as safetensors stores them):
  arch            "vnet2d" | "vnet3d"
  in_channels     input channels (3 for RGB tiles)                               default 3
  width           channels of level 0 (>= in_channels)                            default 16
  enc_convs       JSON list, convolutions per encoder stage, level 0 .. L (the last one is the
                  bottleneck; L = len - 1 down-samplings)                         default [1,2,3,3,3]
  dec_convs       JSON list, convolutions per decoder stage, level L-1 .. 0       default [3,3,2,1]
  feature_dim     length of the feature vector                                    default 64
  num_classes     tile classes of the auxiliary head                              default 4
  input_size      the tile side (pixels) the network is packed for                default 512

Every spatial side of the input must be a multiple of 2^L. State-dict names:
  enc.<l>.convs.<i>.weight/bias, enc.<l>.act.<i>.weight, enc.<l>.out_act.weight   (stage l)
  down.<l-1>.conv.weight/bias, down.<l-1>.act.weight                            (into level l)
  up.<j>.conv.weight/bias, up.<j>.act.weight     (j = 0 .. L-1, from level L-j to L-j-1)
  dec.<j>.convs.<i>..., dec.<j>.act.<i>..., dec.<j>.out_act.weight
  head.weight/bias (1x1 conv to 2), fc.weight/bias (features), cls.weight/bias (tile classes)
"""
import json

import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = {"arch": "vnet2d", "in_channels": 3, "width": 16, "enc_convs": [1, 2, 3, 3, 3],
            "dec_convs": [3, 3, 2, 1], "feature_dim": 64, "num_classes": 4, "input_size": 512}


def _layers(dims):
    return (nn.Conv2d, nn.ConvTranspose2d) if dims == 2 else (nn.Conv3d, nn.ConvTranspose3d)


class ResStage(nn.Module):
    """n x (conv 5 'same' -> PReLU), + residual, -> PReLU. The first conv maps cin to cout."""

    def __init__(self, dims, cin, cout, n):
        super().__init__()
        conv, _ = _layers(dims)
        self.convs = nn.ModuleList(conv(cin if i == 0 else cout, cout, 5, padding=2) for i in range(n))
        self.act = nn.ModuleList(nn.PReLU(cout) for _ in range(n))
        self.out_act = nn.PReLU(cout)

    def forward(self, x, residual):
        for conv, act in zip(self.convs, self.act):
            x = act(conv(x))
        return self.out_act(x + residual)


class Down(nn.Module):
    def __init__(self, dims, cin, cout):
        super().__init__()
        conv, _ = _layers(dims)
        self.conv = conv(cin, cout, 2, stride=2)
        self.act = nn.PReLU(cout)

    def forward(self, x):
        return self.act(self.conv(x))


class Up(nn.Module):
    def __init__(self, dims, cin, cout):
        super().__init__()
        _, deconv = _layers(dims)
        self.conv = deconv(cin, cout, 2, stride=2)
        self.act = nn.PReLU(cout)

    def forward(self, x):
        return self.act(self.conv(x))


class VNet(nn.Module):
    def __init__(self, dims=2, in_channels=3, width=16, enc_convs=(1, 2, 3, 3, 3),
                 dec_convs=(3, 3, 2, 1), feature_dim=64, num_classes=4):
        super().__init__()
        if width < in_channels:
            raise ValueError(f"width {width} is less than in_channels {in_channels}")
        levels = len(enc_convs) - 1
        if len(dec_convs) != levels or levels < 1:
            raise ValueError(f"{len(enc_convs)} encoder stages need {levels} >= 1 decoder stages")
        conv, _ = _layers(dims)
        self.dims, self.in_channels, self.width, self.levels = dims, in_channels, width, levels
        ch = [width << l for l in range(levels + 1)]
        self.enc = nn.ModuleList([ResStage(dims, in_channels, width, enc_convs[0])] +
                                 [ResStage(dims, ch[l], ch[l], enc_convs[l]) for l in range(1, levels + 1)])
        self.down = nn.ModuleList(Down(dims, ch[l], ch[l + 1]) for l in range(levels))
        # decoder stage j ends at level L-1-j; its input is up (ch[l]) + skip (ch[l]) channels
        out = ch[levels]
        self.up, self.dec = nn.ModuleList(), nn.ModuleList()
        for j in range(levels):
            l = levels - 1 - j
            self.up.append(Up(dims, out, ch[l]))
            self.dec.append(ResStage(dims, 2 * ch[l], 2 * ch[l], dec_convs[j]))
            out = 2 * ch[l]
        self.head = conv(out, 2, 1)
        self.fc = nn.Linear(ch[levels], feature_dim)
        self.cls = nn.Linear(feature_dim, num_classes)

    def forward(self, x, stages=None):
        """-> (seg, features, tile_logits); seg is the softmax over (background, lesion).
        stages: a dict that receives every named stage output (the parity tests compare them)."""
        rep = -(-self.width // self.in_channels)
        skips = []
        h = self.enc[0](x, x.repeat(1, rep, *([1] * self.dims))[:, :self.width])
        for l in range(self.levels + 1):
            if l:
                d = self.down[l - 1](h)
                if stages is not None:
                    stages[f"down.{l - 1}"] = d
                h = self.enc[l](d, d)
            if stages is not None:
                stages[f"enc.{l}"] = h
            skips.append(h)
        bottleneck = h
        for j in range(self.levels):
            u = self.up[j](h)
            if stages is not None:
                stages[f"up.{j}"] = u
            cat = torch.cat([u, skips[self.levels - 1 - j]], 1)
            h = self.dec[j](cat, cat)
            if stages is not None:
                stages[f"dec.{j}"] = h
        seg = torch.softmax(self.head(h), 1)
        pooled = bottleneck.mean(dim=tuple(range(2, 2 + self.dims)))
        features = F.relu(self.fc(pooled))
        tile_logits = self.cls(features)
        if stages is not None:
            stages.update({"seg": seg, "features": features, "tile_logits": tile_logits})
        return seg, features, tile_logits


def config(meta):
    """The full configuration from a blob's metadata (strings) or a dict of values."""
    c = dict(DEFAULTS)
    for k, v in meta.items():
        if k in c and isinstance(v, str) and k != "arch":
            v = json.loads(v)
        if k in c:
            c[k] = v
    if c["arch"] not in ("vnet2d", "vnet3d"):
        raise ValueError(f"arch {c['arch']!r} is not a V-Net")
    return c


def build(meta):
    c = config(meta)
    return VNet(dims=2 if c["arch"] == "vnet2d" else 3, in_channels=int(c["in_channels"]),
                width=int(c["width"]), enc_convs=list(c["enc_convs"]), dec_convs=list(c["dec_convs"]),
                feature_dim=int(c["feature_dim"]), num_classes=int(c["num_classes"]))


def metadata(c):
    """The metadata strings for a configuration (config() of it gives it back)."""
    return {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in c.items()}
