"""tests/ref_fpn.py - torchvision's FPN Faster R-CNN (eval mode), the reference for tests/test_fpn.c.

The models are torchvision's own constructors, not re-implementations:
  r50  fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=5): BatchNorm2d
       backbone, torchvision's default anchors ((32,), ..., (512,)) x (0.5, 1, 2), RoIAlign
       sampling 2, LevelMapper 224 / 4, TwoMLPHead 1024; pre-NMS top 200 per level (levels '0',
       '1', '2' are cut there) and post-NMS 100 instead of 1000 / 1000 (see well-posedness, and
       this torch's reference BLAS runs the 12544 x 1024 fc6 at ~1 GFLOP/s); a 3x160x192 image
       that the transform leaves at its size (min_size 160, max_size 192).
  r18  FasterRCNN(resnet_fpn_backbone(backbone_name='resnet18', weights=None), ...): the
       FrozenBatchNorm2d backbone the demo uses, a batch of two 3x120x150 images resized to
       160x200 (and padded to 160x224), two anchor sizes per level, an RPN score threshold,
       adaptive RoIAlign sampling, a LevelMapper canonical scale of 56 (so that these small
       images' RoIs can reach all four maps, not only '0' and '1'; a seed whose RoIs do not is
       refused, as one is for r50 whose RoIs are not on two), TwoMLPHead 256, other thresholds,
       and FrozenBatchNorm2d eps 1e-3 (metadata bn_eps; large enough that folding with another
       eps fails the test).
  r18s the endoscopy assistant's demo shape, small: torchvision's BackboneWithFPN on a
       FrozenBatchNorm2d resnet18 with returned_layers [1, 2, 3] (IntermediateLayerGetter drops
       layer4: maps '0' '1' '2' 'pool', LevelMapper levels 2..4 inferred from the map sizes) and
       out_channels 32 (metadata returned_layers, fpn_channels), four levels of two anchor sizes,
       TwoMLPHead 64, one 3x96x112 image resized to 128x149 (padded to 128x160). Its weights are
       rounded to float16 and stored as F16 (the shipped blob's dtype; half the fixture).
Every case also records, per detection, the box head's softmax row of the proposal it came from
(probs.<n>: torchvision's own pred_scores, caught by wrapping the F.softmax that
RoIHeads.postprocess_detections calls, and the proposal found by replaying that function's
filters on an index), which medinfer gives as mi_detection.probs.
Weights are random (seeded) with non-trivial norm statistics and biases; the RPN head's and the
predictor's output layers are scaled to a trained detector's ranges on the case's images (see
calibrate_rpn). Each model's state_dict is also loaded (strictly) into tools/rcnn_ref.build(meta)
for the metadata written to the blob, and must give the same detections: the training-side
module is the same network.

Each stage is taken from torchvision's own modules in GeneralizedRCNN.forward's order and checked
to reproduce model(images) exactly: transform, the ResNet stages, the FPN maps, the RPN head per
level, proposals per image, MultiScaleRoIAlign's output (and each RoI's level), the box head,
the predictor, the detections.

Well-posedness. A random-weight detector takes many discrete decisions (top-k per level, NMS,
score thresholds, the LevelMapper's floor, the post-NMS and per-image cuts) on values that two
correct float32 engines compute a few ulps apart. Each decision is replayed here on torchvision's
values with an error bound on every value it reads, and a seed is refused unless no decision can
flip within those bounds:
  objectness logits: EPS_LOGIT * max|logit| (1e-5; measured in tests/test_fpn.c under MI_ISA=
  avx2, portable and ref: at most 3.4e-6 of r50's, 4.2e-6 of r18's); a score: the logit's bound
  times sigmoid's slope there plus two of its ulps;
  RPN boxes: EPS_BOX (1e-5) of the anchor's longer side in each coordinate, zero for a
  coordinate clipped onto the border (measured: at most 1.1e-5 of the box's longer side, which
  is rarely longer than its anchor); a detection's box: its proposal's plus 1e-5 of the
  proposal's side; detection scores: EPS_SCORE (2e-5; measured at most 7e-6);
  NMS: every comparison (kept box, live box) with |IoU - threshold| beyond the first-order bound
  of the IoU's change (second-order terms kept), and every pair overlapping about the threshold
  or more with a score gap beyond both scores' bounds (their order decides which survives);
  LevelMapper: level0 + log2(sqrt(area) / scale0) + 1e-6 farther from each integer where the
  level changes than the boxes' bounds move it; cuts and thresholds: gaps beyond both bounds.
The bounds are one to three times the largest errors measured, so this is a guard against
fixtures that no engine could be expected to reproduce, not a proof for every ISA. With a
thousand candidates per level most seeds have a few NMS comparisons within 1e-4 of the
threshold; the sizes above are what keeps well-posed seeds common enough (one in five to fifty
here).
Exact score ties among boxes that do not interact are allowed: their order is not a decision
(tests/test_fpn.c compares proposals as sets and detections within runs of ties). The seed of a
case is the first well-posed one from its base (the bases are the seeds found so: r50 4, r18
178, r18s 313; REF_FPN_SEEDS says how many to try); the metadata records it and the margins.
"""
import json
import math
import os
import sys

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, fasterrcnn_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
import torchvision
from torchvision.models.detection import roi_heads as tv_roi_heads
from torchvision.models.detection.backbone_utils import BackboneWithFPN, resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import boxes as box_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

import mi_ref

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import rcnn_ref  # noqa: E402

EPS_BOX, EPS_SCORE, EPS_LOGIT = 1e-5, 2e-5, 1e-5

d = mi_ref.out_dir()
CASES = {
    "r50": dict(backbone="resnet50", num_classes=5, seed=4, batch=1, hw=(160, 192), roi_maps=2,
                cfg=dict(min_size=160, max_size=192, rpn_pre_nms_top_n=200, rpn_post_nms_top_n=100)),
    "r18": dict(backbone="resnet18", num_classes=4, seed=178, batch=2, hw=(120, 150), roi_maps=4,
                cfg=dict(min_size=160, max_size=256, anchor_sizes=[[24, 32], [48, 64], [96, 128], [192, 256],
                                                                    [384, 512]],
                         anchor_ratios=[0.5, 1.0, 2.0], rpn_pre_nms_top_n=150, rpn_post_nms_top_n=100,
                         rpn_nms_thresh=0.65, rpn_score_thresh=0.2, roi_sampling_ratio=0, roi_canonical_scale=56,
                         representation_size=256, box_score_thresh=0.03, box_nms_thresh=0.45, bn_eps=1e-3,
                         box_detections_per_img=40)),
    "r18s": dict(backbone="resnet18", num_classes=5, seed=313, batch=1, hw=(96, 112), roi_maps=3, f16=True,
                 cfg=dict(min_size=128, max_size=192, returned_layers=[1, 2, 3], fpn_channels=32,
                          anchor_sizes=[[12, 20], [28, 40], [56, 80], [112, 160]], anchor_ratios=[0.5, 1.0, 2.0],
                          rpn_pre_nms_top_n=120, rpn_post_nms_top_n=60, roi_canonical_scale=56,
                          representation_size=64, box_score_thresh=0.04, box_detections_per_img=20)),
}


class IllPosed(Exception):
    pass


def torchvision_model(c):
    """The model as torchvision's own constructors make it (not through rcnn_ref)."""
    cfg = dict(rcnn_ref.DEFAULTS, **c["cfg"])
    kw = dict(min_size=cfg["min_size"], max_size=cfg["max_size"],
              rpn_pre_nms_top_n_test=cfg["rpn_pre_nms_top_n"], rpn_post_nms_top_n_test=cfg["rpn_post_nms_top_n"],
              rpn_nms_thresh=cfg["rpn_nms_thresh"], rpn_score_thresh=cfg["rpn_score_thresh"],
              box_score_thresh=cfg["box_score_thresh"], box_nms_thresh=cfg["box_nms_thresh"],
              box_detections_per_img=cfg["box_detections_per_img"])
    if c["backbone"] == "resnet50":
        return fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=c["num_classes"], **kw)
    rl = cfg.get("returned_layers", [1, 2, 3, 4])
    if rl == [1, 2, 3, 4] and cfg.get("fpn_channels", 256) == 256:
        bb = resnet_fpn_backbone(backbone_name=c["backbone"], weights=None)
    else:   # _resnet_fpn_extractor's steps with another out_channels
        body = getattr(torchvision.models, c["backbone"])(weights=None, norm_layer=FrozenBatchNorm2d)
        bb = BackboneWithFPN(body, {f"layer{k}": str(v) for v, k in enumerate(rl)},
                             [body.inplanes // 8 * 2 ** (k - 1) for k in rl], cfg["fpn_channels"],
                             extra_blocks=LastLevelMaxPool())
    maps = [str(i) for i in range(len(rl))]
    for m in bb.modules():   # torchvision's overwrite_eps, as its COCO weights set 0
        if isinstance(m, FrozenBatchNorm2d):
            m.eps = cfg["bn_eps"]
    rep, r = cfg["representation_size"], cfg["roi_output_size"]
    return FasterRCNN(bb, num_classes=None,
                      rpn_anchor_generator=AnchorGenerator(tuple(tuple(s) for s in cfg["anchor_sizes"]),
                                                           (tuple(cfg["anchor_ratios"]),) * (len(rl) + 1)),
                      box_roi_pool=MultiScaleRoIAlign(maps, r, cfg["roi_sampling_ratio"],
                                                      canonical_scale=cfg["roi_canonical_scale"]),
                      box_head=TwoMLPHead(bb.out_channels * r * r, rep),
                      box_predictor=FastRCNNPredictor(rep, c["num_classes"]), **kw)


def randomize(model, gen):
    """Norm statistics and affine parameters off their identity, every bias non-zero (torchvision
    initialises FPN, RPN and head biases to 0)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                n = m.running_mean.numel()
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


def scale_output(layer, out, std):
    """layer's weight and bias scaled so that its output `out` gets standard deviation std"""
    k = std / float(out.std())
    layer.weight.mul_(k)
    layer.bias.mul_(k)


def calibrate_rpn(model, il, feats):
    """The RPN head's output layers scaled to a trained detector's ranges on these images: with
    random weights and un-normalised statistics the FPN maps reach ~100, which makes deltas of ~50
    (every box shifted off the image and clipped to a sliver). Objectness logits get std 2,
    deltas 0.3."""
    obj, deltas = model.rpn.head(list(feats.values()))
    scale_output(model.rpn.head.cls_logits, torch.cat([o.flatten() for o in obj]), 2.0)
    scale_output(model.rpn.head.bbox_pred, torch.cat([o.flatten() for o in deltas]), 0.3)


def calibrate_box_head(model, il, feats, props):
    """The predictor scaled likewise (softmax scores would saturate): class logits std 1.5, box
    regression 1."""
    pool = model.roi_heads.box_roi_pool
    logits, reg = model.roi_heads.box_predictor(model.roi_heads.box_head(pool(feats, props, il.image_sizes)))
    scale_output(model.roi_heads.box_predictor.cls_score, logits, 1.5)
    scale_output(model.roi_heads.box_predictor.bbox_pred, reg, 1.0)
    pool.scales = None   # set up again by the next call, as on a fresh model


# ---- well-posedness -----------------------------------------------------------------------------

def iou_bound(a, b, ea, eb):
    """IoU of every pair of a (n, 4) and b (m, 4), and how far coordinate errors ea (n, 4), eb (m, 4)
    can move it, to first order with the second-order terms kept: (2 dInter + dArea_a + dArea_b) /
    union, every error taken in its worst direction."""
    wa, ha = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    wb, hb = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = (wa * ha)[:, None] + (wb * hb)[None, :] - inter
    e = torch.max(ea[:, None, :], eb[None, :, :])              # (n, m, 4)
    diw, dih = e[..., 0] + e[..., 2], e[..., 1] + e[..., 3]
    d_inter = (diw * wh[..., 1] + dih * wh[..., 0] + diw * dih) * (inter > 0)
    dwa, dha, dwb, dhb = ea[:, 0] + ea[:, 2], ea[:, 1] + ea[:, 3], eb[:, 0] + eb[:, 2], eb[:, 1] + eb[:, 3]
    d_a, d_b = dwa * ha + dha * wa + dwa * dha, dwb * hb + dhb * wb + dwb * dhb
    return inter / union, (2 * d_inter + d_a[:, None] + d_b[None, :]) / union


def clipped_eps(raw, clipped, eps):
    """Per-coordinate errors after clip_boxes_to_image: a coordinate clipped onto the border by
    more than its error is exactly 0 or the image's side in any engine."""
    e = eps[:, None].expand(len(eps), 4).clone()
    e[(raw - clipped).abs() > eps[:, None]] = 0
    return e


class Margins:
    """Per decision kind: the smallest margin (> 0: no error within the bounds can flip it) and how
    many decisions had none."""

    def __init__(self):
        self.m, self.bad = {}, {}

    def add(self, kind, margins):
        margins = torch.as_tensor(margins, dtype=torch.float64).reshape(-1)
        if len(margins) == 0:
            return
        self.m[kind] = min(self.m.get(kind, math.inf), float(margins.min()))
        self.bad[kind] = self.bad.get(kind, 0) + int((margins <= 0).sum())

    def failures(self):
        return {k: v for k, v in self.bad.items() if v}


def nms_replay(boxes, scores, eps_box, eps_score, thresh, margins, what):
    """Greedy NMS in torchvision's order (descending score, stable), recording for every comparison
    (kept i, live j) |IoU - thresh| - bound, and for the pairs that overlap about the threshold or
    more, their score gap less both scores' error bounds eps_score (their order decides which
    survives). Returns the kept indices."""
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.int64)
    order = torch.sort(scores, descending=True, stable=True)[1]
    b, s, e = boxes[order].double(), scores[order].double(), eps_box[order].double()   # e: (n, 4)
    es = eps_score[order].double()
    iou, bound = iou_bound(b, b, e, e)
    n = len(b)
    suppressed = torch.zeros(n, dtype=torch.bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        live = ~suppressed
        live[: i + 1] = False
        if not live.any():
            break
        margins.add(what + " nms iou", ((iou[i] - thresh).abs() - bound[i])[live])
        near = live & (iou[i] > thresh - bound[i])
        margins.add(what + " nms score order", (s[i] - s[near]).abs() - es[i] - es[near])
        suppressed |= live & (iou[i] > thresh)
    return order[torch.tensor(keep, dtype=torch.int64)]


def batched_nms_replay(boxes, scores, eps_box, eps_score, idxs, thresh, margins, what):
    """nms_replay per category; the kept indices by descending score (stable)."""
    kept = [at[nms_replay(boxes[at], scores[at], eps_box[at], eps_score[at], thresh, margins, what)]
            for at in (torch.where(idxs == k)[0] for k in torch.unique(idxs))]
    kept = torch.cat(kept) if kept else torch.zeros(0, dtype=torch.int64)
    return kept[torch.sort(scores[kept], descending=True, stable=True)[1]]


def cut_margin(values, n, eps):
    """A top-n cut of values known to within eps (a number, or one per value): the gap at the
    cut less the two values' bounds."""
    if len(values) <= n:
        return []
    srt, idx = values.double().sort(descending=True)
    e = torch.as_tensor(eps, dtype=torch.float64).expand(len(values))[idx]
    return [float(srt[n - 1] - srt[n] - e[n - 1] - e[n])]


def small_margin(boxes, eps_box, min_size):
    """Widths and heights against remove_small_boxes' min_size. A box clipped flat onto the
    border is exactly 0 wide in any engine: not a decision."""
    ws = torch.cat([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]]).double()
    e = torch.cat([eps_box[:, 0] + eps_box[:, 2], eps_box[:, 1] + eps_box[:, 3]]).double()
    return ((ws - min_size).abs() - e)[ws != 0]


def rpn_replay(model, il, feats, margins):
    """RegionProposalNetwork.forward + filter_proposals (eval) step by step on torchvision's values,
    recording every decision's margin; returns the proposals and their error bounds."""
    rpn = model.rpn
    fl = list(feats.values())
    obj, deltas = rpn.head(fl)
    anchors = rpn.anchor_generator(il, fl)
    per_level = [o[0].numel() for o in obj]
    o, dl = concat_box_prediction_layers(obj, deltas)
    props = rpn.box_coder.decode(dl, anchors).view(len(anchors), -1, 4)
    o = o.view(len(anchors), -1)
    eps_logit = EPS_LOGIT * float(o.abs().max())
    out, out_eps = [], []
    for n in range(len(anchors)):
        a = anchors[n]
        eps_all = EPS_BOX * torch.max(a[:, 2] - a[:, 0], a[:, 3] - a[:, 1])
        cand_b, cand_s, cand_l, cand_e, off = [], [], [], [], 0
        for lvl, cnt in enumerate(per_level):
            ob = o[n, off:off + cnt]
            k = min(rpn.pre_nms_top_n(), cnt)
            margins.add("rpn top-k cut", cut_margin(ob, k, eps_logit))
            idx = ob.sort(descending=True, stable=True)[1][:k]
            cand_b.append(props[n, off + idx])
            cand_s.append(torch.sigmoid(ob[idx]))
            cand_l.append(torch.full((k,), lvl, dtype=torch.int64))
            cand_e.append(eps_all[off + idx])
            off += cnt
        b, s, lv, e = torch.cat(cand_b), torch.cat(cand_s), torch.cat(cand_l), torch.cat(cand_e)
        # a score's error: the logit's times sigmoid's slope there, plus its own rounding
        es = s.double() * (1 - s.double()) * eps_logit + 2 * s.double() * 2.0 ** -24
        raw, b = b, box_ops.clip_boxes_to_image(b, il.image_sizes[n])
        e = clipped_eps(raw, b, e)
        margins.add("rpn remove small", small_margin(b, e, rpn.min_size))
        keep = box_ops.remove_small_boxes(b, rpn.min_size)
        b, s, lv, e, es = b[keep], s[keep], lv[keep], e[keep], es[keep]
        if rpn.score_thresh > 0:
            margins.add("rpn score thresh", (s.double() - rpn.score_thresh).abs() - es)
        keep = torch.where(s >= rpn.score_thresh)[0]
        b, s, lv, e, es = b[keep], s[keep], lv[keep], e[keep], es[keep]
        kept = batched_nms_replay(b, s, e, es, lv, rpn.nms_thresh, margins, "rpn")
        margins.add("rpn post-nms cut", cut_margin(s[kept], rpn.post_nms_top_n(), es[kept]))
        kept = kept[: rpn.post_nms_top_n()]
        out.append(b[kept])
        out_eps.append(e[kept])
    return out, out_eps


def level_margin(mapper, props, eps, margins):
    """The LevelMapper's level0 + log2(sqrt(area) / scale0) + 1e-6 against the integers where its
    floor changes the level (k_min + 1 .. k_max), less what box errors eps could move it."""
    k_min, k_max = mapper.k_min, mapper.k_max
    b, e = torch.cat(props).double(), torch.cat(eps).double()
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    v = mapper.lvl0 + torch.log2(torch.sqrt(w * h) / mapper.s0) + 1e-6
    dw, dh = e[:, 0] + e[:, 2], e[:, 1] + e[:, 3]
    dv = (dw / w + dh / h) / (2 * math.log(2))   # d log2(sqrt(w h))
    for j in range(k_min + 1, k_max + 1):
        margins.add("roi level", (v - j).abs() - dv)


def roi_replay(model, class_logits, box_regression, props, props_eps, image_sizes, margins):
    """RoIHeads.postprocess_detections' decisions: score threshold, small boxes, NMS per class,
    the detections_per_img cut. A detection's box error: its proposal's plus EPS_BOX of its size."""
    rh = model.roi_heads
    boxes = rh.box_coder.decode(box_regression, props)
    scores = torch.softmax(class_logits, -1)
    nc = scores.shape[-1]
    sizes = [len(p) for p in props]
    for b, s, pe, p, size in zip(boxes.split(sizes), scores.split(sizes), props_eps, props, image_sizes):
        side = torch.max(p[:, 2] - p[:, 0], p[:, 3] - p[:, 1])
        e = (pe.max(dim=1)[0] + EPS_BOX * side)[:, None].expand(len(p), nc - 1).reshape(-1)
        raw = b[:, 1:].reshape(-1, 4)
        b = box_ops.clip_boxes_to_image(b, size)[:, 1:].reshape(-1, 4)
        e = clipped_eps(raw, b, e)
        lab = torch.arange(nc).view(1, -1).expand(len(s), nc)[:, 1:].reshape(-1)
        s = s[:, 1:].reshape(-1)
        margins.add("box score thresh", (s.double() - rh.score_thresh).abs() - EPS_SCORE)
        keep = torch.where(s > rh.score_thresh)[0]
        b, s, lab, e = b[keep], s[keep], lab[keep], e[keep]
        margins.add("box remove small", small_margin(b, e, 1e-2))
        keep = box_ops.remove_small_boxes(b, 1e-2)
        b, s, lab, e = b[keep], s[keep], lab[keep], e[keep]
        kept = batched_nms_replay(b, s, e, torch.full(s.shape, EPS_SCORE, dtype=torch.float64), lab, rh.nms_thresh,
                                  margins, "box")
        margins.add("detections cut", cut_margin(s[kept], rh.detections_per_img, EPS_SCORE))


def round_f16(model):
    """every floating parameter and buffer rounded to float16 (and kept as float32): the case's blob is
    stored as F16, which the engine widens exactly to these values"""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())


def detection_probs(model, scores, box_regression, props, image_sizes):
    """Per image, the softmax row (scores: RoIHeads' pred_scores) of the proposal each detection
    came from: postprocess_detections' filters replayed on the index of each (proposal, class)
    candidate, then checked against torchvision's own detections."""
    rh = model.roi_heads
    boxes = rh.box_coder.decode(box_regression, props)
    out = []
    sizes = [len(p) for p in props]
    for b, s, size in zip(boxes.split(sizes), scores.split(sizes), image_sizes):
        nc = s.shape[-1]
        src = torch.arange(len(s)).view(-1, 1).expand(len(s), nc)
        lab = torch.arange(nc).view(1, -1).expand_as(s)
        b = box_ops.clip_boxes_to_image(b, size)[:, 1:].reshape(-1, 4)
        sc, lab, src = s[:, 1:].reshape(-1), lab[:, 1:].reshape(-1), src[:, 1:].reshape(-1)
        keep = torch.where(sc > rh.score_thresh)[0]
        b, sc, lab, src = b[keep], sc[keep], lab[keep], src[keep]
        keep = box_ops.remove_small_boxes(b, min_size=1e-2)
        b, sc, lab, src = b[keep], sc[keep], lab[keep], src[keep]
        keep = box_ops.batched_nms(b, sc, lab, rh.nms_thresh)[: rh.detections_per_img]
        out.append(s[src[keep]])
    return out


# ---- one case -------------------------------------------------------------------------------------

def run_case(name, c, seed):
    torch.manual_seed(seed)
    model = torchvision_model(c)
    randomize(model, torch.Generator().manual_seed(seed + 1))
    if c.get("f16"):
        round_f16(model)
    model.eval()
    g = torch.Generator().manual_seed(seed + 2)
    x = torch.rand(c["batch"], 3, *c["hw"], generator=g) * 2 - 0.5
    images = list(x)

    acts = {"input": x}
    il, _ = model.transform(images)
    acts["transform"] = il.tensors
    body = model.backbone.body(il.tensors)
    for i, k in enumerate(body):
        acts[f"features.C{c['cfg'].get('returned_layers', [1, 2, 3, 4])[i] + 1}"] = body[k]
    feats = model.backbone.fpn(body)
    for k, v in feats.items():
        acts[f"fpn.{k}"] = v
    calibrate_rpn(model, il, feats)
    if c.get("f16"):
        round_f16(model)
    obj, deltas = model.rpn.head(list(feats.values()))
    for k, o, dl in zip(feats, obj, deltas):
        acts[f"rpn.objectness.{k}"], acts[f"rpn.deltas.{k}"] = o, dl
    props, _ = model.rpn(il, feats)
    for n, p in enumerate(props):
        acts[f"proposals.{n}"] = p
    margins = Margins()
    replay, replay_eps = rpn_replay(model, il, feats, margins)
    if any(not torch.equal(a, b) for a, b in zip(replay, props)):
        raise IllPosed("the RPN replay differs from torchvision")   # ties resolved otherwise
    if margins.failures():
        raise IllPosed(margins.failures())

    calibrate_box_head(model, il, feats, props)
    if c.get("f16"):
        round_f16(model)
    pool = model.roi_heads.box_roi_pool
    acts["box_roi_pool"] = pooled = pool(feats, props, il.image_sizes)
    acts["box_roi_pool.level"] = levels = pool.map_levels(props).float()
    if len(torch.unique(levels)) < c["roi_maps"]:
        raise IllPosed(f"RoIs on maps {torch.unique(levels).int().tolist()} only")
    level_margin(pool.map_levels, props, replay_eps, margins)
    bf = model.roi_heads.box_head(pooled)
    acts["box_features"] = bf
    logits, reg = model.roi_heads.box_predictor(bf)
    acts["class_logits"], acts["box_regression"] = logits, reg
    roi_replay(model, logits, reg, props, replay_eps, il.image_sizes, margins)
    if margins.failures():
        raise IllPosed(margins.failures())

    # the staged forward is torchvision's forward; its softmax caught on the way
    caught = []
    softmax = tv_roi_heads.F.softmax

    def catch(x, *a, **k):
        y = softmax(x, *a, **k)
        caught.append(y)
        return y
    tv_roi_heads.F.softmax = catch
    try:
        dets = model(images)
    finally:
        tv_roi_heads.F.softmax = softmax
    assert len(caught) == 1 and torch.equal(caught[0], torch.softmax(logits, -1))
    probs = detection_probs(model, caught[0], reg, props, il.image_sizes)
    dets2, _ = model.roi_heads(feats, props, il.image_sizes)
    dets2 = model.transform.postprocess(dets2, il.image_sizes, [tuple(x.shape[-2:])] * len(images))
    counts = []
    for n, (a, b) in enumerate(zip(dets, dets2)):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])
        acts[f"boxes.{n}"], acts[f"scores.{n}"], acts[f"labels.{n}"] = a["boxes"], a["scores"], a["labels"].float()
        rows = probs[n]
        assert len(rows) == len(a["scores"]), "the replayed postprocess_detections differs from torchvision's"
        assert torch.equal(rows[torch.arange(len(rows)), a["labels"]], a["scores"]), "probs[label] != score"
        acts[f"probs.{n}"] = rows
        counts.append(len(a["scores"]))
    if min(counts) < 10:
        raise IllPosed(f"only {counts} detections")
    # the training-side module built from the blob's metadata is the same network
    meta = rcnn_ref.metadata(c["backbone"], c["num_classes"], model_version="test-1", arch="fasterrcnn_fpn",
                             **c["cfg"])
    ref = rcnn_ref.build(meta, norm_layer=nn.BatchNorm2d if c["backbone"] == "resnet50" else None)
    if c.get("f16"):
        assert all(torch.equal(v, v.half().float()) for v in model.state_dict().values() if v.is_floating_point())
    ref.load_state_dict(model.state_dict(), strict=True)
    ref.eval()
    for a, b in zip(dets, ref(images)):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"]), name
    return model, meta, acts, counts, [len(p) for p in props], margins.m


state = {}
for name, c in CASES.items():
    for seed in range(c["seed"], c["seed"] + int(os.environ.get("REF_FPN_SEEDS", "20"))):
        try:
            model, meta, acts, counts, nprops, margins = run_case(name, c, seed)
            break
        except IllPosed as e:
            print(f"ref_fpn: {name}: seed {seed} is ill-posed ({e}); next seed", file=sys.stderr)
    else:
        raise SystemExit(f"ref_fpn: {name}: no well-posed seed from {c['seed']}")
    # r18 through tools/export.py's writer, as a training script writes a blob; r50 through the
    # test's independent one, so that a bug shared by our writer and our reader cannot hide
    write = mi_ref.export.write_safetensors if name != "r50" else mi_ref.write_independent
    sd = model.state_dict()
    if c.get("f16"):
        sd = mi_ref.export.cast_floats(sd, "f16")
    write(os.path.join(d, f"fpn_{name}.safetensors"), sd, meta)
    state[name] = sd
    mi_ref.save(f"fpn_{name}_ref.safetensors", acts,
                {"counts": json.dumps(counts), "proposals": json.dumps(nprops), "seed": str(seed),
                 "margins": json.dumps({k: float(f"{v:.3g}") for k, v in margins.items()})})
    print(f"ref_fpn: {name}: seed {seed}, detections {counts}, proposals {nprops}, margins "
          + ", ".join(f"{k} {v:.3g}" for k, v in margins.items()), file=sys.stderr)

# Metadata a fasterrcnn_fpn refuses (tests/test_fpn.c): blobs of metadata only, since the
# configuration is read before any tensor.
base = rcnn_ref.metadata("resnet18", 3, model_version="test-1", arch="fasterrcnn_fpn")
for name, extra in {"anchors": {"anchors": "[[10, 20], [20, 10]]"},
                    "levels": {"anchor_sizes": "[32, 64, 128, 256]"},
                    "uneven": {"anchor_sizes": "[[32, 40], [64], [128], [256], [512]]"},
                    "eps": {"bn_eps": "2"},
                    "returned": {"returned_layers": "[2, 1]"},
                    "rhuge": {"returned_layers": "[1e309]"},
                    "rlevels": {"returned_layers": "[1, 2, 3]"},
                    "rmissing": {"returned_layers": "[2, 3, 4]", "anchor_sizes": None},
                    "c4": {"arch": "fasterrcnn_c4", "fpn_channels": "64"}}.items():
    mi_ref.save(f"fpn_bad_{name}.safetensors", {}, {k: v for k, v in dict(base, **extra).items() if v is not None})
# Blobs whose tensors disagree with returned_layers / fpn_channels: r18s's body up to layer2 (its
# F16 tensors) with metadata returned_layers [1, 2], plus one tensor that must not be there.
small = {k: v for k, v in state["r18s"].items() if k.startswith(("backbone.body.conv1", "backbone.body.bn1",
                                                                  "backbone.body.layer1", "backbone.body.layer2"))}
inner0 = state["r18s"]["backbone.fpn.inner_blocks.0.0.weight"]
m2 = dict(base, returned_layers="[1, 2]", fpn_channels="32", anchor_sizes="[16, 32, 64]")
for name, extra, meta in (("layer3", {"backbone.body.layer3.0.conv1.weight":
                                      state["r18s"]["backbone.body.layer3.0.conv1.weight"]}, m2),
                          ("channels", {"backbone.fpn.inner_blocks.0.0.weight": inner0}, dict(m2, fpn_channels="48")),
                          ("extra", {"backbone.fpn.inner_blocks.0.0.weight": inner0,
                                     "backbone.fpn.inner_blocks.2.0.weight": state["r18s"][
                                         "backbone.fpn.inner_blocks.2.0.weight"]}, m2)):
    mi_ref.export.write_safetensors(os.path.join(d, f"fpn_bad_{name}.safetensors"), dict(small, **extra), meta)
