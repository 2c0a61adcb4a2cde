#!/usr/bin/python3
"""tools/lesionseg_ref.py - the two networks of depth-guided lesion segmentation, as nn/depthnet.c
and nn/segnet.c run them. Training (tools/train_lesionseg.py), export and the parity tests all build
the modules here from the metadata a blob carries, so a blob and its module cannot disagree.

Both networks take the image after the pipeline's preprocessing: resized to input_size x input_size
(squashed, the aspect ratio is not kept) and normalized with the blob's mean and std.

DEPTH ("depthnet"): one encoder-decoder, run twice and fused.
  EncDec: the torchvision ResNet-18 body (conv1 .. layer<encoder_stages>, names "encdec.encoder.*")
    and a Monodepth2-style decoder (Godard et al., "Digging Into Self-Supervised Monocular Depth
    Estimation", ICCV 2019): for i = L .. 0, a 3x3 convolution with reflection padding and an ELU,
    nearest up-sampling by 2, concatenation with the encoder map of the same size (feats[i-1]: the
    stem's relu(bn1(conv1)) for i = 1, layer<i-1> above it), and a second 3x3 reflect-padded
    convolution + ELU; then a 3x3 reflect-padded convolution to one channel and a sigmoid, so the
    output is bounded to (0, 1): depth / depth_max_cm, the normalization SimCol3D uses.
  Estimator, in order (stage names as the parity tests and nn/depthnet.c mark them):
    "global"     EncDec on the whole image resized (bilinear, align_corners False) to global_size
    "global_up"  that map resized back to input_size (bilinear)
    "local"      EncDec on the overlapping patch_size patches at patch_stride (a grid from 0 to
                 input_size - patch_size on both axes, row by row), all patches in one batch
                 (patch k of image n is batch row k*N + n), stitched by averaging: the patches are
                 added in grid order to a zeroed map and divided by how many cover each pixel
    "fused"      fuse_weights[0] * global_up + fuse_weights[1] * local
    "refine"     three 3x3 convolutions with replicate padding on cat(image, fused): conv1 ->
                 InstanceNorm (affine) -> LeakyReLU(0.2), conv2 -> GroupNorm(refine_groups) ->
                 LeakyReLU(0.2), conv3 to one channel
    "depth"      clamp(fused + refine_scale * tanh(refine), 0, 1)
  Metadata: input_size 192, global_size 96, patch_size 96, patch_stride 48, fuse_weights [0.5, 0.5],
    encoder_stages 3 (4: the whole ResNet-18 body), dec_channels [16, 32, 64, 128] (encoder_stages+1
    entries), refine_channels 16, refine_groups 4, refine_scale 0.25, depth_max_cm 20.
    global_size and patch_size are multiples of 2^(encoder_stages+1) and at least twice that (the
    deepest map at least 2 x 2, which reflection padding needs); (input_size - patch_size) is a
    multiple of patch_stride.

SEGMENTATION ("segnet"): a U-Net (Ronneberger et al. 2015) whose encoder is weighted, scale by
  scale, by attention computed from the depth map.
  Input: (N, in_channels + 1, input_size, input_size): the normalized image, then the "depth" map
    of the depth network (0..1) as the last channel.
  Encoder level l (0 .. L, L = len(widths) - 1): (after a 2x2 max-pool for l > 0) two 3x3
    convolutions each followed by BatchNorm and ReLU, widths[l] channels.
  Depth branch: "dstem" 3x3 conv + BN + ReLU (1 -> depth_channels); before level l > 0,
    "ddown.<l-1>": a depthwise 3x3 stride-2 convolution + BN + ReLU, then a pointwise 1x1 + BN +
    ReLU (the map follows the encoder's scale).
  Attention at level l: W = sigmoid(att.<l>(D)) with a 1x1 convolution; attention "spatial": D is
    the depth feature map and W has one channel, broadcast over the encoder's channels; "channel":
    D is its spatial mean and W has widths[l] channels, one weight per channel and image. The
    encoder map becomes F * W, or F * (1 + W) with attention_residual 1. That weighted map is
    both the skip and the next level's input.
  Decoder j = 0 .. L-1 (level l = L-1-j): a 2x2 stride-2 transposed convolution (widths[l+1] ->
    widths[l]), cat(skip, up), two 3x3 conv + BN + ReLU. Head: a 1x1 convolution to 2 channels
    and a softmax (output "softmax": channel 1 = lesion) or to 1 channel and a sigmoid ("sigmoid").
  Stage names: "enc.<l>" (after attention), "att.<l>" (W), "dec.<j>", "logits", "seg".
  Metadata: input_size 192, in_channels 3, widths [16, 32, 64, 128, 256], depth_channels 8,
    attention "spatial", attention_residual 0, output "softmax", mask_threshold 0.5 (sigmoid only;
    softmax masks are the argmax). input_size is a multiple of 2^L.
"""
import json

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

DEPTH_DEFAULTS = {"arch": "depthnet", "input_size": 192, "global_size": 96, "patch_size": 96,
                  "patch_stride": 48, "fuse_weights": [0.5, 0.5], "encoder_stages": 3,
                  "dec_channels": [16, 32, 64, 128], "refine_channels": 16, "refine_groups": 4,
                  "refine_scale": 0.25, "depth_max_cm": 20}
SEG_DEFAULTS = {"arch": "segnet", "input_size": 192, "in_channels": 3, "widths": [16, 32, 64, 128, 256],
                "depth_channels": 8, "attention": "spatial", "attention_residual": 0, "output": "softmax",
                "mask_threshold": 0.5}
ENC_CHANNELS = [64, 64, 128, 256, 512]   # ResNet-18: stem, layer1 .. layer4


class ConvELU(nn.Module):
    """Monodepth2's ConvBlock: reflection padding 1, 3x3 convolution, ELU."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect")

    def forward(self, x):
        return F.elu(self.conv(x))


class EncDec(nn.Module):
    def __init__(self, encoder_stages=3, dec_channels=(16, 32, 64, 128)):
        super().__init__()
        L = encoder_stages
        if L not in (3, 4) or len(dec_channels) != L + 1:
            raise ValueError(f"encoder_stages {L} (3 or 4) needs {L + 1} dec_channels, not {len(dec_channels)}")
        self.L = L
        enc = torchvision.models.resnet18()
        del enc.fc, enc.avgpool
        if L == 3:
            del enc.layer4
        self.encoder = enc
        dec = list(dec_channels)
        self.up0 = nn.ModuleList(ConvELU(ENC_CHANNELS[L] if i == L else dec[i + 1], dec[i]) for i in range(L + 1))
        self.up1 = nn.ModuleList(ConvELU(dec[i] + (ENC_CHANNELS[i - 1] if i else 0), dec[i]) for i in range(L + 1))
        self.head = nn.Conv2d(dec[0], 1, 3, padding=1, padding_mode="reflect")

    def features(self, x):
        e = self.encoder
        f = [e.relu(e.bn1(e.conv1(x)))]
        h = e.maxpool(f[0])
        for l in range(1, self.L + 1):
            h = getattr(e, f"layer{l}")(h)
            f.append(h)
        return f

    def forward(self, x, stages=None, prefix=""):
        f = self.features(x)
        h = f[self.L]
        for i in range(self.L, -1, -1):
            h = F.interpolate(self.up0[i](h), scale_factor=2, mode="nearest")
            if i:
                h = torch.cat([h, f[i - 1]], 1)
            h = self.up1[i](h)
            if stages is not None:
                stages[f"{prefix}dec.{i}"] = h
        return torch.sigmoid(self.head(h))


def patch_grid(size, patch, stride):
    """Top-left corners of the patches, row by row."""
    starts = list(range(0, size - patch + 1, stride))
    return [(y, x) for y in starts for x in starts]


class DepthEstimator(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.encdec = EncDec(int(c["encoder_stages"]), list(c["dec_channels"]))
        rc = int(c["refine_channels"])
        self.refine = nn.ModuleDict({
            "conv1": nn.Conv2d(4, rc, 3, padding=1, padding_mode="replicate"),
            "norm1": nn.InstanceNorm2d(rc, affine=True),
            "conv2": nn.Conv2d(rc, rc, 3, padding=1, padding_mode="replicate"),
            "norm2": nn.GroupNorm(int(c["refine_groups"]), rc),
            "conv3": nn.Conv2d(rc, 1, 3, padding=1, padding_mode="replicate")})

    def forward(self, x, stages=None):
        c = self.c
        R, S, P = int(c["input_size"]), int(c["global_size"]), int(c["patch_size"])
        if x.shape[-2:] != (R, R):
            raise ValueError(f"input {tuple(x.shape)} is not {R} x {R}")
        N = x.shape[0]
        g = self.encdec(F.interpolate(x, size=(S, S), mode="bilinear", align_corners=False), stages, "global.")
        gu = F.interpolate(g, size=(R, R), mode="bilinear", align_corners=False)
        grid = patch_grid(R, P, int(c["patch_stride"]))
        out = self.encdec(torch.cat([x[:, :, y:y + P, x0:x0 + P] for y, x0 in grid], 0))
        acc = torch.zeros(N, 1, R, R)
        cnt = torch.zeros(1, 1, R, R)
        for k, (y, x0) in enumerate(grid):
            acc[:, :, y:y + P, x0:x0 + P] += out[k * N:(k + 1) * N]
            cnt[:, :, y:y + P, x0:x0 + P] += 1
        loc = acc / cnt
        wg, wl = (float(v) for v in c["fuse_weights"])
        fused = wg * gu + wl * loc
        r = self.refine
        h = F.leaky_relu(r["norm1"](r["conv1"](torch.cat([x, fused], 1))), 0.2)
        h = F.leaky_relu(r["norm2"](r["conv2"](h)), 0.2)
        h = r["conv3"](h)
        depth = torch.clamp(fused + float(c["refine_scale"]) * torch.tanh(h), 0, 1)
        if stages is not None:
            stages.update({"global": g, "global_up": gu, "local": loc, "fused": fused, "refine": h, "depth": depth})
        return depth


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout, k=3, stride=1, groups=1):
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DoubleConv(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(ConvBNReLU(cin, cout), ConvBNReLU(cout, cout))


class DepthDown(nn.Sequential):
    """Depthwise-separable, stride 2: depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU."""

    def __init__(self, ch):
        super().__init__(ConvBNReLU(ch, ch, 3, 2, groups=ch), ConvBNReLU(ch, ch, 1))


class SegNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        w = [int(v) for v in c["widths"]]
        cin, dc = int(c["in_channels"]), int(c["depth_channels"])
        if len(w) < 2:
            raise ValueError("widths needs at least 2 levels")
        if c["attention"] not in ("spatial", "channel") or c["output"] not in ("softmax", "sigmoid"):
            raise ValueError(f"attention {c['attention']!r} / output {c['output']!r} not known")
        L = len(w) - 1
        self.L, self.cin = L, cin
        self.enc = nn.ModuleList(DoubleConv(cin if l == 0 else w[l - 1], w[l]) for l in range(L + 1))
        self.dstem = ConvBNReLU(1, dc)
        self.ddown = nn.ModuleList(DepthDown(dc) for _ in range(L))
        spatial = c["attention"] == "spatial"
        self.att = nn.ModuleList(nn.Conv2d(dc, 1 if spatial else w[l], 1) for l in range(L + 1))
        self.up = nn.ModuleList(nn.ConvTranspose2d(w[l + 1], w[l], 2, 2) for l in reversed(range(L)))
        self.dec = nn.ModuleList(DoubleConv(2 * w[l], w[l]) for l in reversed(range(L)))
        self.head = nn.Conv2d(w[0], 2 if c["output"] == "softmax" else 1, 1)

    def forward(self, inp, stages=None):
        c = self.c
        x, d = inp[:, :self.cin], inp[:, self.cin:self.cin + 1]
        if inp.shape[1] != self.cin + 1:
            raise ValueError(f"input has {inp.shape[1]} channels, expected {self.cin} image + 1 depth")
        df = self.dstem(d)
        skips, f = [], x
        for l in range(self.L + 1):
            if l:
                f = F.max_pool2d(f, 2)
                df = self.ddown[l - 1](df)
            f = self.enc[l](f)
            a = df if c["attention"] == "spatial" else df.mean((2, 3), keepdim=True)
            wt = torch.sigmoid(self.att[l](a))
            f = f * (1 + wt) if int(c["attention_residual"]) else f * wt
            if stages is not None:
                stages[f"att.{l}"], stages[f"enc.{l}"] = wt, f
            skips.append(f)
        for j in range(self.L):
            f = self.dec[j](torch.cat([skips[self.L - 1 - j], self.up[j](f)], 1))
            if stages is not None:
                stages[f"dec.{j}"] = f
        logits = self.head(f)
        seg = torch.softmax(logits, 1) if c["output"] == "softmax" else torch.sigmoid(logits)
        if stages is not None:
            stages.update({"logits": logits, "seg": seg})
        return seg


def config(meta):
    """The full configuration from a blob's metadata (strings) or a dict of values."""
    arch = meta.get("arch")
    if arch not in ("depthnet", "segnet"):
        raise ValueError(f"arch {arch!r} is not depthnet or segnet")
    c = dict(DEPTH_DEFAULTS if arch == "depthnet" else SEG_DEFAULTS)
    for k, v in meta.items():
        if k in c and k != "arch" and isinstance(v, str) and not isinstance(c[k], str):
            v = json.loads(v)
        if k in c:
            c[k] = v
    if arch == "depthnet":
        R, S, P, T = (int(c[k]) for k in ("input_size", "global_size", "patch_size", "patch_stride"))
        m = 1 << (int(c["encoder_stages"]) + 1)
        # the deepest map must be at least 2 x 2: reflection padding needs a neighbour to mirror
        if S % m or P % m or min(S, P) < 2 * m or P > R or T < 1 or (R - P) % T:
            raise ValueError(f"sizes R {R} S {S} P {P} stride {T}: S, P multiples of {m} and at least {2 * m}, "
                             f"P <= R, (R-P) % stride == 0")
    elif int(c["input_size"]) % (1 << (len(c["widths"]) - 1)):
        raise ValueError(f"input_size {c['input_size']} is not a multiple of 2^{len(c['widths']) - 1}")
    return c


def build(meta):
    c = config(meta)
    return DepthEstimator(c) if c["arch"] == "depthnet" else SegNet(c)


def metadata(c):
    """The metadata strings for a configuration (config() of it gives it back)."""
    return {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in c.items()}


def seg_input(image, depth):
    """The segmentation network's input: the normalized image and the depth map, channel-stacked."""
    return torch.cat([image, depth], 1)


if __name__ == "__main__":
    torch.manual_seed(0)
    dn, sn = build({"arch": "depthnet"}).eval(), build({"arch": "segnet"}).eval()
    x = torch.randn(2, 3, 192, 192)
    with torch.no_grad():
        st = {}
        d = dn(x, st)
        s = sn(seg_input(x, d), st)
    for k, v in st.items():
        print(f"{k:12s} {tuple(v.shape)}")
    print("params: depth", sum(p.numel() for p in dn.parameters()), "seg", sum(p.numel() for p in sn.parameters()))
