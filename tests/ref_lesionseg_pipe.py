"""tests/ref_lesionseg_pipe.py - fixtures for `medinfer lesionseg` (pipelines/lesionseg):

lesionseg_post.safetensors, for tests/test_lesionseg_pipe.c: what the pipeline does after the
  networks, done by torch and scipy. Segmenter outputs at R = 16 (a softmax pair from smooth random
  logits, with a 4 x 4 block of equal logits, and a sigmoid map) and a depth map, up-sampled to
  61 x 97 and 23 x 37 by F.interpolate(bilinear, align_corners=False); the masks (argmax: a tie goes
  to channel 0, background; sigmoid >= 0.4) and their 8-connected components (scipy.ndimage.label)
  with box (x0, y0, x1, y1, end exclusive), area, mean lesion probability and mean depth in cm
  (depth_max_cm 20), largest first, ties by first pixel in raster order.

Random-weight blobs of tools/lesionseg_ref.py at input_size 64, for tests/test_lesionseg_pipe.sh:
  lesionseg_pipe_depth.safetensors      depthnet: global 32, patch 32 at stride 16, 3 encoder stages
  lesionseg_pipe_seg.safetensors        segnet: widths [8, 16, 32], spatial attention, softmax
  lesionseg_pipe_seg_sigmoid.safetensors  the same with a sigmoid head, mask_threshold 0.4
  lesionseg_pipe_seg_mean.safetensors   softmax, but normalized with another mean (must be refused)
  lesionseg_pipe_seg_32.safetensors     softmax at input_size 32 (must be refused)
  all with resize_mode squash, mean [0.5, 0.45, 0.4], std [0.25, 0.25, 0.25], model_version
  "pipe-test", intended_use saying what they are.
and the whole pipeline run here on one 97 x 61 picture (lesionseg_pipe.png): torchvision's
  Resize((64, 64), antialias) of the uint8 image, ToTensor, Normalize, the two modules, F.interpolate
  to 61 x 97: lesionseg_pipe_margin.npy (p_lesion - p_background), lesionseg_pipe_prob.npy and
  lesionseg_pipe_depth.npy (0..1), which the shell test compares with the C pipeline's mask, report
  and depth picture."""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from scipy import ndimage

import mi_ref

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import export  # noqa: E402
import lesionseg_ref as ls  # noqa: E402

MEAN, STD = [0.5, 0.45, 0.4], [0.25, 0.25, 0.25]
DEPTH_MAX = 20.0


def components(mask, prob, depth):
    """(K, 7): x0, y0, x1, y1, area, mean prob, mean depth cm; largest first, then raster order."""
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), int))   # 8-connected
    rows = []
    for k in range(1, n + 1):   # scipy numbers components by their first pixel in raster order
        ys, xs = np.nonzero(lab == k)
        rows.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, len(xs),
                     prob[ys, xs].astype(np.float64).mean(), depth[ys, xs].astype(np.float64).mean() * DEPTH_MAX])
    rows.sort(key=lambda r: -r[4])   # stable: equal areas keep raster order
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 7)


def smooth(g, c, R, cells):
    return F.interpolate(torch.randn(1, c, cells, cells, generator=g), size=(R, R), mode="bilinear",
                         align_corners=False)


def post_fixture():
    g = torch.Generator().manual_seed(5)
    R = 16
    logits = 3 * smooth(g, 2, R, 5)
    logits[:, 1, 2:6, 9:13] = logits[:, 0, 2:6, 9:13]   # a tie: softmax gives exactly 0.5 / 0.5
    probs2 = torch.softmax(logits, 1)
    probs1 = torch.sigmoid(3 * smooth(g, 1, R, 4))
    depth = torch.rand(1, 1, R, R, generator=g)
    t = {"probs2": probs2[0], "probs1": probs1[0], "depth": depth[0, 0]}
    for tag, (H, W) in {"a": (61, 97), "b": (23, 37)}.items():
        up2 = F.interpolate(probs2, size=(H, W), mode="bilinear", align_corners=False)[0]
        up1 = F.interpolate(probs1, size=(H, W), mode="bilinear", align_corners=False)[0, 0]
        ud = F.interpolate(depth, size=(H, W), mode="bilinear", align_corners=False)[0, 0]
        mask2 = torch.argmax(up2, 0) == 1                       # ties: index 0
        mask1 = up1 >= 0.4
        t[f"{tag}.prob2"], t[f"{tag}.prob1"], t[f"{tag}.depth"] = up2[1], up1, ud
        t[f"{tag}.mask2"], t[f"{tag}.mask1"] = mask2.float(), mask1.float()
        t[f"{tag}.comps2"] = components(mask2.numpy(), up2[1].numpy(), ud.numpy()).float()
        t[f"{tag}.comps1"] = components(mask1.numpy(), up1.numpy(), ud.numpy()).float()
        assert len(t[f"{tag}.comps2"]) > 1 and len(t[f"{tag}.comps1"]) > 0
    mi_ref.save("lesionseg_post.safetensors", t)


def blob(arch, cfg, seed, name, calibrate=None, **extra):
    """calibrate: (image input, depth) on which the segmenter's head is scaled and shifted so that
    its probabilities are decisive and 30 % of the pixels lesion: random weights otherwise call
    everything one class at about 0.5, and a mask needs edges that are not ties."""
    c = ls.config({"arch": arch, **cfg})
    torch.manual_seed(seed)
    m = ls.build(c)
    g = torch.Generator().manual_seed(seed + 100)
    export.randomize_batchnorm(m, g)
    if arch == "depthnet":
        m.encdec.head.weight.mul_(20)   # spread the depth over (0, 1) instead of 0.5 +- 0.01
    m.eval()
    if calibrate is not None:
        st = {}
        m(ls.seg_input(*calibrate), st)
        lg = st["logits"][0]
        spread = float((lg[1] - lg[0] if c["output"] == "softmax" else lg[0]).std())
        m.head.weight.mul_(4 / spread)   # logits (differences) spread over about +-8
        m.head.bias.mul_(4 / spread)
        lg = lg * 4 / spread
        if c["output"] == "softmax":
            m.head.bias[1] -= torch.quantile(lg[1] - lg[0], 0.7)
        else:
            th = float(c["mask_threshold"])
            m.head.bias[0] -= torch.quantile(lg[0], 0.7) - float(np.log(th / (1 - th)))
    meta = ls.metadata(c)
    meta.pop("arch")
    size = int(meta.pop("input_size"))
    labels = ["depth"] if arch == "depthnet" else ["background", "lesion"]
    md = export.blob_metadata(arch, len(labels), labels, size, mean=extra.pop("mean", MEAN), std=STD,
                              model_version="pipe-test", resize_mode="squash",
                              intended_use="random weights for the pipeline's tests; not a model", **meta, **extra)
    mi_ref.save(name, m.state_dict(), md)
    return m


def picture(W, H, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W] / max(W, H)
    base = np.stack([0.75 + 0.2 * np.sin(5 * x + 1), 0.45 + 0.25 * np.cos(4 * y), 0.4 + 0.2 * np.sin(3 * (x + y))], -1)
    blob_ = np.exp(-(((x - 0.55) ** 2 + (y - 0.3) ** 2) / 0.01))[..., None] * np.array([0.2, -0.2, -0.1])
    img = 255 * (base + blob_) + rng.normal(0, 6, (H, W, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def main():
    d = mi_ref.out_dir()
    post_fixture()
    depth_cfg = dict(input_size=64, global_size=32, patch_size=32, patch_stride=16, dec_channels=[8, 16, 16, 24],
                     refine_channels=8, refine_groups=4)
    seg_cfg = dict(input_size=64, widths=[8, 16, 32], depth_channels=4)
    img = picture(97, 61, 7)
    Image.fromarray(img).save(os.path.join(d, "lesionseg_pipe.png"))
    t = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    t = TF.resize(t, [64, 64], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    x = TF.normalize(t.float().div(255), MEAN, STD)[None]
    dn = blob("depthnet", depth_cfg, 20, "lesionseg_pipe_depth.safetensors")
    depth = dn(x)
    sn = blob("segnet", seg_cfg, 21, "lesionseg_pipe_seg.safetensors", calibrate=(x, depth))
    blob("segnet", dict(seg_cfg, output="sigmoid", mask_threshold=0.4), 22, "lesionseg_pipe_seg_sigmoid.safetensors",
         calibrate=(x, depth))
    blob("segnet", seg_cfg, 21, "lesionseg_pipe_seg_mean.safetensors", mean=[0.485, 0.456, 0.406])
    blob("segnet", dict(seg_cfg, input_size=32), 21, "lesionseg_pipe_seg_32.safetensors")
    seg = sn(ls.seg_input(x, depth))
    up = F.interpolate(seg, size=(61, 97), mode="bilinear", align_corners=False)[0]
    ud = F.interpolate(depth, size=(61, 97), mode="bilinear", align_corners=False)[0, 0]
    np.save(os.path.join(d, "lesionseg_pipe_margin.npy"), (up[1] - up[0]).numpy())
    np.save(os.path.join(d, "lesionseg_pipe_prob.npy"), up[1].numpy())
    np.save(os.path.join(d, "lesionseg_pipe_depth.npy"), ud.numpy())
    m = (up[1] > up[0]).numpy()
    print(f"ref_lesionseg_pipe: the 97 x 61 picture: {m.mean() * 100:.1f} % lesion, "
          f"{ndimage.label(m, structure=np.ones((3, 3), int))[1]} components, depth {ud.min():.2f}..{ud.max():.2f}")


if __name__ == "__main__":
    main()
