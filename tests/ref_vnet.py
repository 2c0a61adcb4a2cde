"""tests/ref_vnet.py - the V-Net references for tests/test_vnet.c: tools/vnet_ref.py's module built
from the metadata the blob carries, random weights (seeded; every PReLU slope drawn per channel,
some negative, so a shared-slope or swapped-channel bug shows), the blob written by tools/export.py's
writer. Each case stores its input and every stage vnet_ref.forward(x, stages) fills.

  vnet2d     RGB, width 12, enc_convs [1, 2, 3, 3], dec_convs [2, 2, 1], 2 tiles of 64 x 96
  vnet3d     one channel, width 4, enc_convs [1, 2, 2], dec_convs [2, 1], 2 volumes of 16 x 16 x 24
  vnet2d_w8  RGB into width 8 (not a multiple of 3: the input stage's residual cycles R, G, B, R, ...
             as the RGB default 3 -> 16 does), enc_convs [1, 1], 1 tile of 16 x 16
Bad blobs for the refusals, made from one tiny network (vnet_bad_*.safetensors): a missing tensor,
a tensor of the wrong shape, and metadata that is wrong in one key each."""
import os
import sys

import torch

import mi_ref

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import vnet_ref  # noqa: E402

d = mi_ref.out_dir()
CASES = {
    "vnet2d": dict(cfg=dict(arch="vnet2d", in_channels=3, width=12, enc_convs=[1, 2, 3, 3], dec_convs=[2, 2, 1],
                            feature_dim=32, num_classes=4, input_size=64), shape=(2, 3, 64, 96), seed=0),
    "vnet3d": dict(cfg=dict(arch="vnet3d", in_channels=1, width=4, enc_convs=[1, 2, 2], dec_convs=[2, 1],
                            feature_dim=16, num_classes=3, input_size=16), shape=(2, 1, 16, 16, 24), seed=1),
    "vnet2d_w8": dict(cfg=dict(arch="vnet2d", in_channels=3, width=8, enc_convs=[1, 1], dec_convs=[1],
                               feature_dim=8, num_classes=2, input_size=16), shape=(1, 3, 16, 16), seed=2),
}


def model(cfg, seed):
    torch.manual_seed(seed)
    m = vnet_ref.build(vnet_ref.metadata(vnet_ref.config(cfg)))
    g = torch.Generator().manual_seed(seed + 100)
    for name, p in m.named_parameters():
        if ".act." in name or name.endswith("out_act.weight") or name.endswith("act.weight"):
            p.copy_(torch.rand(p.shape, generator=g) * 0.6 - 0.1)   # slopes in [-0.1, 0.5)
    return m.eval()


def meta(cfg):
    m = vnet_ref.metadata(vnet_ref.config(cfg))
    m.update(model_version="test-1", format_version="1")
    return m


for name, c in CASES.items():
    m = model(c["cfg"], c["seed"])
    mi_ref.save(f"{name}_rand.safetensors", m.state_dict(), meta(c["cfg"]))
    x = torch.randn(*c["shape"], generator=torch.Generator().manual_seed(c["seed"] + 200))
    stages = {}
    seg, feat, logits = m(x, stages)
    assert torch.equal(seg, m(x)[0])
    mi_ref.save(f"{name}_ref.safetensors", {"input": x, **stages})

# ---- bad blobs: one tiny network, each file wrong in one way ---------------------------------
tiny = dict(arch="vnet2d", in_channels=3, width=6, enc_convs=[1, 1], dec_convs=[1], feature_dim=4,
            num_classes=2, input_size=16)
sd = model(tiny, 3).state_dict()
good = meta(tiny)
mi_ref.save("vnet_bad_ok.safetensors", sd, good)
mi_ref.save("vnet_bad_missing.safetensors", {k: v for k, v in sd.items() if k != "dec.0.convs.0.bias"}, good)
mi_ref.save("vnet_bad_shape.safetensors", {**sd, "enc.1.convs.0.weight": torch.zeros(12, 12, 3, 3)}, good)
mi_ref.save("vnet_bad_prelu.safetensors", {**sd, "up.0.act.weight": torch.zeros(5)}, good)
BAD_META = {
    "enc_json": ("enc_convs", "[1, 1"),
    "enc_zero": ("enc_convs", "[1, 0]"),
    "enc_short": ("enc_convs", "[1]"),
    "enc_float": ("enc_convs", "[1, 1.5]"),
    "dec_len": ("dec_convs", "[1, 1]"),
    "width": ("width", "six"),
    "width_small": ("width", "2"),
    "channels": ("in_channels", "0"),
    "feature_dim": ("feature_dim", "-4"),
    "input_size": ("input_size", "17"),
    "arch3d": ("arch", "vnet3d"),   # 2-D kernels under a 3-D arch: the first conv's shape is named
}
for case, (key, value) in BAD_META.items():
    mi_ref.save(f"vnet_bad_{case}.safetensors", sd, {**good, key: value})
