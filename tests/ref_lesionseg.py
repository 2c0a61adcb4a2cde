"""tests/ref_lesionseg.py - the references for tests/test_lesionseg.c: tools/lesionseg_ref.py's depth
estimator and depth-guided U-Net, built from the metadata their blob carries, random weights (seeded;
BatchNorm running statistics and affine parameters randomized as tools/export.py's
randomize_batchnorm does, the InstanceNorm / GroupNorm affine parameters drawn away from 1 and 0, so
folding and the run-time normalizations are both exercised), blobs written with tools/export.py's
writer and blob_metadata. Each case stores its input and every stage the module's forward(x, stages)
fills; the depth cases also store the EncDec run on the patch batch as the engine runs it
("local.input" (N*np, 3, P, P), row k*N + n = patch k of image n; "local.dec.<i>", "local.encdec"),
so a wrong batch layout shows before the stitching hides it.

  depth_a     input 64, global 32, patch 32 at stride 16 (3 x 3 patches), 3 encoder stages, batch 2
  depth_b     input 96, global 64, patch 64 at stride 32 (2 x 2), the whole ResNet-18 body (4 stages),
              fuse_weights [0.3, 0.7], batch 1
  depth_c     input 64, global 48 (not the patch size: the EncDec runs at two sizes), patch 32 at
              stride 32 (2 x 2, no overlap), refine_groups 2, refine_scale 1.5 (the clamp bites at
              both ends), batch 2
  seg_a       spatial attention, F * W, softmax; widths [8, 16, 32], batch 2 at 64 x 64
  seg_b       channel attention, F * (1 + W), sigmoid; widths [8, 16, 16, 24], batch 2
  seg_c       spatial attention, F * (1 + W), softmax, one image channel; widths [6, 12]
  seg_d       channel attention, F * W, sigmoid; widths [8, 16, 32], batch 2 at 64 x 96
  depth_full, seg_full   the DEFAULTS (input 192), one image each
Bad blobs for the refusals (depth_bad_*, seg_bad_*): a missing tensor, a tensor of the wrong shape,
and metadata wrong in one key each."""
import os
import sys

import torch

import mi_ref

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import export  # noqa: E402
import lesionseg_ref as ls  # noqa: E402

DEPTH = {
    "depth_a": dict(cfg=dict(input_size=64, global_size=32, patch_size=32, patch_stride=16,
                             dec_channels=[8, 16, 16, 24], refine_channels=8, refine_groups=4), batch=2, seed=0),
    "depth_b": dict(cfg=dict(input_size=96, global_size=64, patch_size=64, patch_stride=32, encoder_stages=4,
                             dec_channels=[8, 8, 16, 16, 32], fuse_weights=[0.3, 0.7], refine_channels=8,
                             refine_groups=4, refine_scale=0.4), batch=1, seed=1),
    "depth_c": dict(cfg=dict(input_size=64, global_size=48, patch_size=32, patch_stride=32,
                             dec_channels=[8, 8, 16, 16], refine_channels=6, refine_groups=2, refine_scale=1.5),
                  batch=2, seed=2),
    "depth_full": dict(cfg={}, batch=1, seed=3),
}
SEG = {
    "seg_a": dict(cfg=dict(input_size=64, widths=[8, 16, 32], depth_channels=4), shape=(2, 64, 64), seed=10),
    "seg_b": dict(cfg=dict(input_size=64, widths=[8, 16, 16, 24], depth_channels=4, attention="channel",
                           attention_residual=1, output="sigmoid", mask_threshold=0.4), shape=(2, 64, 64), seed=11),
    "seg_c": dict(cfg=dict(input_size=32, in_channels=1, widths=[6, 12], depth_channels=3, attention_residual=1),
                  shape=(1, 32, 32), seed=12),
    "seg_d": dict(cfg=dict(input_size=64, widths=[8, 16, 32], depth_channels=5, attention="channel",
                           output="sigmoid"), shape=(2, 64, 96), seed=13),
    "seg_full": dict(cfg={}, shape=(1, 192, 192), seed=14),
}


def config(arch, cfg):
    return ls.config({"arch": arch, **cfg})


def model(c, seed):
    torch.manual_seed(seed)
    m = ls.build(c)
    g = torch.Generator().manual_seed(seed + 100)
    export.randomize_batchnorm(m, g)
    for mod in m.modules():
        if isinstance(mod, (torch.nn.GroupNorm, torch.nn.InstanceNorm2d)):
            mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) * 0.5 + 0.75)
            mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.1)
    if isinstance(m, ls.DepthEstimator):
        # torch's default init leaves the EncDec's sigmoid within 0.5 +- 0.01 everywhere; a steeper
        # head spreads it over most of (0, 1), so the stitching and the fusion move the numbers
        m.encdec.head.weight.mul_(20)
    return m.eval()


def meta(c):
    """blob_metadata's keys (arch, num_classes, labels, input_size, mean, std, ...) and the
    module's own, as the demo blobs carry them."""
    m = ls.metadata(c)
    arch = m.pop("arch")
    size = int(m.pop("input_size"))
    labels = ["depth"] if arch == "depthnet" else ["background", "lesion"]
    return export.blob_metadata(arch, len(labels), labels, size, model_version="test-1", resize_mode="squash", **m)


def depth_case(name, spec):
    c = config("depthnet", spec["cfg"])
    m = model(c, spec["seed"])
    mi_ref.save(f"{name}_rand.safetensors", m.state_dict(), meta(c))
    R, P, N = int(c["input_size"]), int(c["patch_size"]), spec["batch"]
    x = torch.randn(N, 3, R, R, generator=torch.Generator().manual_seed(spec["seed"] + 200))
    stages = {}
    depth = m(x, stages)
    assert torch.equal(depth, stages["depth"])
    grid = ls.patch_grid(R, P, int(c["patch_stride"]))
    patches = torch.cat([x[:, :, y:y + P, x0:x0 + P] for y, x0 in grid], 0)
    stages["local.input"] = patches
    stages["local.encdec"] = m.encdec(patches, stages, "local.")
    mi_ref.save(f"{name}_ref.safetensors", {"input": x, **stages})
    return m, c


def seg_case(name, spec):
    c = config("segnet", spec["cfg"])
    m = model(c, spec["seed"])
    mi_ref.save(f"{name}_rand.safetensors", m.state_dict(), meta(c))
    N, H, W = spec["shape"]
    g = torch.Generator().manual_seed(spec["seed"] + 200)
    image = torch.randn(N, int(c["in_channels"]), H, W, generator=g)
    x = ls.seg_input(image, torch.rand(N, 1, H, W, generator=g))
    stages = {}
    seg = m(x, stages)
    assert torch.equal(seg, stages["seg"])
    mi_ref.save(f"{name}_ref.safetensors", {"input": x, **stages})
    return m, c


for name, spec in DEPTH.items():
    depth_case(name, spec)
for name, spec in SEG.items():
    seg_case(name, spec)

# ---- bad blobs: one small network of each kind, each file wrong in one way ---------------------
dm, dc = depth_case("depth_bad_ok", dict(cfg=DEPTH["depth_a"]["cfg"], batch=1, seed=20))
sd, good = dm.state_dict(), meta(dc)
mi_ref.save("depth_bad_missing.safetensors", {k: v for k, v in sd.items() if k != "refine.norm2.bias"}, good)
mi_ref.save("depth_bad_missing_bn.safetensors",
            {k: v for k, v in sd.items() if k != "encdec.encoder.layer2.0.bn1.running_var"}, good)
mi_ref.save("depth_bad_shape.safetensors", {**sd, "encdec.up1.1.conv.weight": torch.zeros(16, 24, 3, 3)}, good)
BAD_DEPTH = {
    "stride": {"patch_stride": "20"},                    # does not divide 64 - 32
    "stride_zero": {"patch_stride": "0"},
    "global": {"global_size": "40"},                     # not a multiple of 2^4
    "patch_big": {"patch_size": "128"},                  # larger than the input
    "stages": {"encoder_stages": "5"},
    "dec_len": {"dec_channels": "[8, 16, 16]"},          # 3 stages need 4
    "groups": {"refine_groups": "3"},                    # 8 channels
    "fuse": {"fuse_weights": "[0.5]"},
    "scale": {"refine_scale": "big"},
    "deep": {"encoder_stages": "4", "dec_channels": "[8, 8, 16, 16, 32]"},  # 32 / 2^5 = 1: no reflect pad
    "max_cm": {"depth_max_cm": "0"},
}
# the configuration is checked before any tensor is read, so these carry the refinement head only
# (the ResNet-18 body would make each 11 MB)
head = {k: v for k, v in sd.items() if k.startswith("refine.")}
for case, kv in BAD_DEPTH.items():
    mi_ref.save(f"depth_bad_{case}.safetensors", head, {**good, **kv})

sm, sc = seg_case("seg_bad_ok", dict(cfg=SEG["seg_a"]["cfg"], shape=(1, 64, 64), seed=21))
sd, good = sm.state_dict(), meta(sc)
mi_ref.save("seg_bad_missing.safetensors", {k: v for k, v in sd.items() if k != "att.1.bias"}, good)
mi_ref.save("seg_bad_missing_bn.safetensors", {k: v for k, v in sd.items() if k != "ddown.0.0.1.running_mean"},
            good)
mi_ref.save("seg_bad_shape.safetensors", {**sd, "up.0.weight": torch.zeros(32, 16, 3, 3)}, good)
BAD_SEG = {
    "widths": {"widths": "[16]"},
    "widths_json": {"widths": "[16, 32"},
    "attention": {"attention": "both"},
    "output": {"output": "logits"},
    "residual": {"attention_residual": "2"},
    "input_size": {"input_size": "66"},                 # not a multiple of 2^2
    "channels": {"in_channels": "0"},
    "threshold": {"mask_threshold": "1.5"},
}
for case, kv in BAD_SEG.items():
    mi_ref.save(f"seg_bad_{case}.safetensors", sd, {**good, **kv})
