"""tests/ref_rcnn.py - torchvision's FasterRCNN (eval mode) on ResNet C4 backbones, the reference
for tests/test_rcnn.c: random weights with randomized BatchNorm statistics, the model built by
tools/rcnn_ref.py from the metadata the blob carries, the blob written by mi_ref.write_independent.

Each case stores its input, every stage torchvision computes (taken from torchvision's own
modules, in GeneralizedRCNN.forward's order, and checked to reproduce model(images) exactly) and
the final detections per image. The cases are chosen so that torchvision returns >= 20
detections per image, some with equal scores, and so that both of batched_nms's implementations
run (more and fewer than 1000 candidate boxes):
  r18:     ResNet-18 C4, RGB, torchvision's 15 default anchors, a batch of 2, 6 classes
  r50grey: ResNet-50 C4, one grey channel, three (w, h) anchors (adaptive), non-square input,
           an RPN score threshold, sampling_ratio adaptive
"""
import json
import os
import sys

import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

import mi_ref

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import rcnn_ref  # noqa: E402

d = mi_ref.out_dir()
CASES = {
    "r18": dict(backbone="resnet18", num_classes=6, seed=0, batch=2, gain=1.0, channels=3, hw=(120, 200),
                cfg=dict(min_size=160, max_size=256, rpn_pre_nms_top_n=1000, rpn_post_nms_top_n=300,
                         representation_size=128, box_detections_per_img=100)),
    "r50grey": dict(backbone="resnet50", num_classes=3, seed=1, batch=1, gain=0.5, channels=1, hw=(150, 311),
                    cfg=dict(min_size=128, max_size=400, input_channels=1, image_mean=[0.1], image_std=[0.9],
                             anchors=[[22.5, 60], [41, 87.3], [80, 130]], rpn_pre_nms_top_n=500,
                             rpn_post_nms_top_n=120, rpn_score_thresh=0.05, rpn_nms_thresh=0.6,
                             roi_sampling_ratio=0, representation_size=64, box_score_thresh=0.02,
                             box_nms_thresh=0.45, box_detections_per_img=60)),
}

for name, c in CASES.items():
    torch.manual_seed(c["seed"])
    meta = rcnn_ref.metadata(c["backbone"], c["num_classes"], model_version="test-1", **c["cfg"])
    model = rcnn_ref.build(meta)
    mi_ref.export.randomize_batchnorm(model, torch.Generator().manual_seed(c["seed"] + 100))
    with torch.no_grad():  # box scores spread over (0, 1) rather than all near 1 / num_classes or 1
        for p in model.roi_heads.parameters():
            p.mul_(c["gain"])
    model.eval()
    mi_ref.write_independent(os.path.join(d, f"rcnn_{name}.safetensors"), model.state_dict(), meta)

    g = torch.Generator().manual_seed(c["seed"] + 200)
    x = torch.rand(c["batch"], c["channels"], *c["hw"], generator=g) * 2 - 0.5
    images = list(x)
    acts = {"input": x}
    il, _ = model.transform(images)
    acts["transform"] = il.tensors
    feats = model.backbone(il.tensors)
    acts["features"] = feats["0"]
    obj, deltas = model.rpn.head([feats["0"]])
    acts["rpn.objectness"], acts["rpn.deltas"] = obj[0], deltas[0]
    props, _ = model.rpn(il, feats)
    for n, p in enumerate(props):
        acts[f"proposals.{n}"] = p
    bf = model.roi_heads.box_head(model.roi_heads.box_roi_pool(feats, props, il.image_sizes))
    acts["box_features"] = bf
    logits, reg = model.roi_heads.box_predictor(bf)
    acts["class_logits"], acts["box_regression"] = logits, reg
    dets = model(images)
    counts = []
    for n, det in enumerate(dets):
        acts[f"boxes.{n}"], acts[f"scores.{n}"] = det["boxes"], det["scores"]
        acts[f"labels.{n}"] = det["labels"].float()
        counts.append(len(det["scores"]))
        assert len(det["scores"]) >= 20, f"{name}: only {len(det['scores'])} detections"
    # the staged forward is torchvision's forward
    dets2, _ = model.roi_heads(feats, props, il.image_sizes)
    dets2 = model.transform.postprocess(dets2, il.image_sizes, [tuple(x.shape[-2:])] * len(images))
    for a, b in zip(dets, dets2):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])
    mi_ref.save(f"rcnn_{name}_ref.safetensors", acts,
                {"counts": json.dumps(counts), "proposals": json.dumps([len(p) for p in props])})
    print(f"ref_rcnn: {name}: detections {counts}, proposals {[len(p) for p in props]}", file=sys.stderr)

# GeneralizedRCNNTransform's resized sizes, from torchvision's own transform on images of each
# size: the shipped detectors' (min_size, max_size) and torchvision's default, over a sweep of
# sizes and the ones where the float32 scale's last bit decides a row (1070 x 1348 and 475 x 528
# at 160 / 224: a scale computed as min_size / side, rounded once, gives 159 rows or columns
# where torch, which computes side.reciprocal() * min_size, gives 160)
gen = torch.Generator().manual_seed(7)
rows = []
for lo, hi in ((160, 224), (256, 600), (800, 1333)):
    sizes = [(1070, 1348), (528, 475), (505, 577), (1072, 1920), (1080, 1920), (720, 1280)]
    sizes += [tuple(int(v) for v in torch.randint(16, 2001, (2,), generator=gen)) for _ in range(150)]
    t = GeneralizedRCNNTransform(lo, hi, [0.0], [1.0])
    t.eval()
    for h, w in sizes:
        il, _ = t([torch.zeros(1, h, w)])
        rows.append([lo, hi, h, w, *il.image_sizes[0]])
mi_ref.save("rcnn_resize_ref.safetensors", {"sizes": torch.tensor(rows, dtype=torch.float32)})
print(f"ref_rcnn: resize: {len(rows)} sizes", file=sys.stderr)
