"""tests/ref_detect.py - PyTorch references for the detection ops (ops/box.h, nms.h, roi.h), read by
tests/test_detect.c. torchvision 0.14's own code computes every expected value: AnchorGenerator,
BoxCoder, ops.clip_boxes_to_image, remove_small_boxes, nms, batched_nms, torch.topk, roi_align,
roi_pool. All tensors are stored as F32 (indices too: they stay far below 2**24).

Files: detect_box.safetensors (anchors, coder, clip, small boxes), detect_nms.safetensors (NMS,
batched NMS, top-k), detect_roi.safetensors (RoIAlign, RoIPool). Case i of a kind has tensors
"<kind>.<i>.<name>"; metadata "<kind>" gives the count."""
import math
import random

import torch
import torchvision
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import boxes as box_ops
from torchvision.ops import roi_align, roi_pool

import mi_ref

rng = random.Random(2024)
torch.manual_seed(2024)


class Cases:
    def __init__(self):
        self.t, self.meta = {}, {}

    def add(self, kind, **tensors):
        i = int(self.meta.get(kind, "0"))
        for k, v in tensors.items():
            v = v if torch.is_tensor(v) else torch.tensor(v, dtype=torch.float32)
            self.t["%s.%d.%s" % (kind, i, k)] = v.float().contiguous()
        self.meta[kind] = str(i + 1)

    def save(self, name):
        mi_ref.save(name, self.t, self.meta)


def f32(v):
    """v rounded to float32, as a Python float: a threshold that C's float holds exactly."""
    return float(torch.tensor(v, dtype=torch.float32))


def random_boxes(n, lo=0.0, hi=200.0, min_wh=1.0, max_wh=80.0):
    x1 = torch.rand(n) * (hi - lo) + lo
    y1 = torch.rand(n) * (hi - lo) + lo
    w = torch.rand(n) * (max_wh - min_wh) + min_wh
    h = torch.rand(n) * (max_wh - min_wh) + min_wh
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=1)


# ---- boxes -------------------------------------------------------------------------------
box = Cases()

# Cell anchors: torchvision's default, the FPN sizes, and odd sizes/ratios where rounding matters.
for sizes, ratios in [((128.0, 256.0, 512.0), (0.5, 1.0, 2.0)),
                      ((32.0,), (0.5, 1.0, 2.0)),
                      ((23.0, 45.5, 100.0, 3.0), (0.3, 0.7, 1.3, 3.1, 1.0)),
                      ((16.0, 17.0, 33.0), (0.25, 4.0, 0.6))]:
    ag = AnchorGenerator(sizes=(sizes,), aspect_ratios=(ratios,))
    box.add("cells", sizes=list(sizes), ratios=list(ratios), cell=ag.cell_anchors[0])

# Anchors given as (w, h): odd integers put -w/2 on a half, where half-to-even rounding shows.
wh = torch.tensor([[1, 1], [3, 5], [5, 7], [2, 9], [11, 13], [32.0, 64.0], [45.5, 22.25], [7.0, 0.5],
                   [1024.0, 513.0], [2.5, 1.5]])
box.add("cells_wh", wh=wh, cell=(torch.stack([-wh[:, 0], -wh[:, 1], wh[:, 0], wh[:, 1]], dim=1) / 2).round())

# Grid anchors on non-square maps whose image sizes do not divide evenly.
for sizes, ratios, img, grid in [((32.0, 64.0, 128.0), (0.5, 1.0, 2.0), (190, 341), (12, 17)),
                                 ((128.0, 256.0, 512.0), (0.5, 1.0, 2.0), (600, 803), (38, 51)),
                                 ((23.0,), (0.7, 1.3), (37, 29), (5, 9))]:
    ag = AnchorGenerator(sizes=(sizes,), aspect_ratios=(ratios,))
    il = ImageList(torch.zeros(1, 3, *img), [img])
    fm = torch.zeros(1, 4, *grid)
    anchors = ag(il, [fm])[0]
    box.add("grid", p=[grid[0], grid[1], img[0] // grid[0], img[1] // grid[1]],
            cell=ag.cell_anchors[0], anchors=anchors)

# Box coder: decode with both weight sets, deltas including ones far past bbox_xform_clip.
for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
    bc = BoxCoder(weights)
    n = 517
    ref = random_boxes(n)
    rel = torch.randn(n, 4) * 2
    rel[:40] = torch.randn(40, 4) * 60          # huge: dw, dh hit the clip
    rel[40:50, 2:] = 1e4
    rel[50:60, 2:] = -30.0                       # tiny widths
    box.add("decode", w=list(weights), ref=ref, rel=rel, out=bc.decode_single(rel, ref),
            clip=[bc.bbox_xform_clip])
    gt = random_boxes(n)
    box.add("encode", w=list(weights), ref=ref, gt=gt, rel=bc.encode_single(gt, ref))

# clip_boxes_to_image, with (height, width) as the detector passes them (ints).
b = random_boxes(300, lo=-60.0, hi=260.0)
box.add("clip", size=[181, 203], boxes=b, out=box_ops.clip_boxes_to_image(b, (181, 203)))

# remove_small_boxes, with sizes exactly at the limit.
b = random_boxes(400, min_wh=0.0, max_wh=8.0)
b[:20, 2] = b[:20, 0] + 2.0
b[20:40, 3] = b[20:40, 1] + 2.0
for ms in [1e-3, 2.0, 5.0]:
    box.add("small", min_size=[ms], boxes=b, keep=box_ops.remove_small_boxes(b, ms))
box.save("detect_box.safetensors")


# ---- NMS ---------------------------------------------------------------------------------
nms = Cases()


def nms_input(n, tie_levels, dup_frac):
    """Clustered boxes (so many overlap), scores from tie_levels values when given, and a fraction
    of exact duplicates of earlier boxes."""
    b = random_boxes(n, hi=120.0, min_wh=4.0, max_wh=60.0)
    if tie_levels:
        s = torch.randint(0, tie_levels, (n,)).float() / tie_levels
    else:
        s = torch.rand(n)
    nd = int(n * dup_frac)
    if n > 1 and nd:
        src = torch.randint(0, n, (nd,))
        dst = torch.randint(0, n, (nd,))
        b[dst] = b[src]
    return b, s


thresholds = [0.5, f32(0.7), f32(0.3), 0.0, 0.25, 1.0]
for i in range(40):
    n = rng.choice([1, 2, 5, 17, 50, 300, 1200])
    ties = rng.choice([0, 0, 2, 3, 7])
    b, s = nms_input(n, ties, rng.choice([0.0, 0.1, 0.3]))
    thr = thresholds[i % len(thresholds)]
    nms.add("nms", boxes=b, scores=s, thr=[thr], keep=torchvision.ops.nms(b, s, thr))

# Batched NMS on both sides of torchvision's switch (numel > 4000 on CPU): the coordinate trick up
# to 1000 boxes, per-category NMS above. "distinct": scores without ties, where the vanilla path's
# unstable final sort is deterministic.
for n in [300, 999, 1000, 1001, 1500]:
    for ties in [0, 4]:
        b, s = nms_input(n, ties, 0.1)
        idx = torch.randint(0, 5, (n,))
        thr = rng.choice([0.5, f32(0.7)])
        keep = torchvision.ops.batched_nms(b, s, idx, thr)
        nms.add("batched", boxes=b, scores=s, idx=idx, thr=[thr], keep=keep, distinct=[float(ties == 0)],
                vanilla=[float(n > 1000)])

# torch.topk, largest and sorted, on both sides of its partial_sort / nth_element switch (k*64 <= n).
for n, k in [(1000, 5), (1000, 300), (50, 50), (7, 3), (20000, 2000), (4096, 64)]:
    for ties in [0, 6]:
        v = torch.randn(n) if ties == 0 else torch.randint(0, ties, (n,)).float()
        vals, ix = v.topk(k)
        nms.add("topk", v=v, k=[k], vals=vals, idx=ix, distinct=[float(ties == 0)])
nms.save("detect_nms.safetensors")


# ---- RoIAlign, RoIPool ----------------------------------------------------------------------
roi = Cases()


def make_rois(nb, h_img, w_img, n):
    """Inside, partly outside, tiny, degenerate (x2 < x1) and one whole-image RoI, over nb images."""
    out = []
    for j in range(n):
        kind = j % 5
        bi = float(rng.randrange(nb))
        if kind == 0:
            x1, y1 = rng.uniform(0, w_img * 0.7), rng.uniform(0, h_img * 0.7)
            out.append([bi, x1, y1, x1 + rng.uniform(4, w_img * 0.5), y1 + rng.uniform(4, h_img * 0.5)])
        elif kind == 1:
            x1, y1 = rng.uniform(-w_img * 0.5, w_img), rng.uniform(-h_img * 0.5, h_img)
            out.append([bi, x1, y1, x1 + rng.uniform(10, w_img), y1 + rng.uniform(10, h_img)])
        elif kind == 2:
            x1, y1 = rng.uniform(0, w_img), rng.uniform(0, h_img)
            out.append([bi, x1, y1, x1 + rng.uniform(0, 1.5), y1 + rng.uniform(0, 1.5)])
        elif kind == 3:
            x1, y1 = rng.uniform(0, w_img), rng.uniform(0, h_img)
            out.append([bi, x1, y1, x1 - rng.uniform(0, 5), y1 + rng.uniform(-3, 5)])
        else:
            out.append([bi, 0.0, 0.0, float(w_img), float(h_img)])
    return torch.tensor(out, dtype=torch.float32)


for shape, scale in [((2, 3, 13, 17), 0.25), ((3, 5, 20, 24), 0.5), ((1, 2, 9, 9), 1.0), ((2, 17, 11, 7), 0.0625)]:
    x = torch.randn(*shape)
    h_img, w_img = shape[2] / scale, shape[3] / scale
    rois = make_rois(shape[0], h_img, w_img, 23)
    for out in [(7, 7), (3, 5)]:
        for aligned in [False, True]:
            for sr in [2, 0, -1, 3]:
                y = roi_align(x, rois, out, spatial_scale=scale, sampling_ratio=sr, aligned=aligned)
                roi.add("align", x=x, rois=rois, p=[out[0], out[1], scale, sr, float(aligned)], y=y)
        y = roi_pool(x, rois, out, spatial_scale=scale)
        roi.add("pool", x=x, rois=rois, p=[out[0], out[1], scale], y=y)
roi.save("detect_roi.safetensors")
