"""tests/ref_assist_det.py - the shipped demo lesion detector (weights/assist_det_demo.safetensors) in
PyTorch on a few held-out synthetic frames, the reference for tests/test_assist_det.c.

Frames: tools/assist_synth.py's held-out seed 5000 (never used in training or to choose anything),
rendered at 320 x 320 (the network resizes them to its min_size), indices from 1000 on (the
training script scored 0..199 at 256 px): for each class the blob's validation figures (metadata
'training': AP@0.5 on seed 2) show it detects (AP >= MIN_VAL_AP), the first frame that has exactly
one lesion, of that class, at least 20 px on its shorter side. They are chosen from the truth and
the validation figures alone, before the model sees them; a class the model is not validated on is
left out here and named on stderr and in the fixture's metadata. Per frame k the fixture holds input.k (1, 3, 320, 320:
the PNG's bytes / 255, what a caller gives medinfer), truth.k (x1, y1, x2, y2, label) and
torchvision's answer from tools/rcnn_ref.build(the blob's metadata) with the blob's F16 weights:
boxes.k, scores.k, labels.k and probs.k (per detection the box head's softmax row of its
proposal: RoIHeads' own pred_scores, caught by wrapping the F.softmax it calls, and the proposal
found by replaying postprocess_detections' filters on an index).
"""
import json
import os
import sys

import numpy as np
import torch
from torchvision.models.detection import roi_heads as tv_roi_heads
from torchvision.ops import boxes as box_ops

import mi_ref

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import assist_synth  # noqa: E402
import rcnn_ref  # noqa: E402

BLOB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "weights", "assist_det_demo.safetensors")
SIZE, FIRST = 320, 1000
MIN_VAL_AP = 0.5

tensors, meta = mi_ref.export.read_safetensors(BLOB)
model = rcnn_ref.build(meta, norm_layer=torch.nn.BatchNorm2d)   # the blob's BatchNorm2d tensors, eval mode
model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
model.eval()


def with_probs(x):
    """model([x]) and per detection its proposal's softmax row"""
    caught = []
    softmax = tv_roi_heads.F.softmax

    def catch(t, *a, **k):
        y = softmax(t, *a, **k)
        caught.append(y)
        return y

    # the proposals and regression the heads see, to replay postprocess_detections on an index
    seen = {}
    orig = model.roi_heads.postprocess_detections

    def post(class_logits, box_regression, proposals, image_shapes):
        seen.update(reg=box_regression, props=proposals, sizes=image_shapes)
        return orig(class_logits, box_regression, proposals, image_shapes)

    tv_roi_heads.F.softmax = catch
    model.roi_heads.postprocess_detections = post
    try:
        det = model([x])[0]
    finally:
        tv_roi_heads.F.softmax = softmax
        del model.roi_heads.postprocess_detections
    rh = model.roi_heads
    s = caught[0]
    nc = s.shape[-1]
    b = rh.box_coder.decode(seen["reg"], seen["props"])
    src = torch.arange(len(s)).view(-1, 1).expand(len(s), nc)
    lab = torch.arange(nc).view(1, -1).expand_as(s)
    b = box_ops.clip_boxes_to_image(b, seen["sizes"][0])[:, 1:].reshape(-1, 4)
    sc, lab, src = s[:, 1:].reshape(-1), lab[:, 1:].reshape(-1), src[:, 1:].reshape(-1)
    keep = torch.where(sc > rh.score_thresh)[0]
    b, sc, lab, src = b[keep], sc[keep], lab[keep], src[keep]
    keep = box_ops.remove_small_boxes(b, min_size=1e-2)
    b, sc, lab, src = b[keep], sc[keep], lab[keep], src[keep]
    keep = box_ops.batched_nms(b, sc, lab, rh.nms_thresh)[: rh.detections_per_img]
    probs = s[src[keep]]
    assert torch.equal(sc[keep], det["scores"]) and torch.equal(lab[keep], det["labels"]), "replay differs"
    return det, probs


acts, chosen = {}, []
val_ap = json.loads(meta["training"])["val"]["ap50"]
want = {c for c in range(1, len(assist_synth.LABELS)) if val_ap[assist_synth.LABELS[c]] >= MIN_VAL_AP}
left_out = [assist_synth.LABELS[c] for c in range(1, len(assist_synth.LABELS)) if c not in want]
if len(want) < 2:
    raise SystemExit(f"ref_assist_det: the blob's validation AP@0.5 {val_ap} is >= {MIN_VAL_AP} for fewer than 2 classes")
i = FIRST
while want:
    if i > FIRST + 400:
        raise SystemExit(f"ref_assist_det: no frame for classes {sorted(want)} in seed 5000 {FIRST}..{i}")
    img, info = assist_synth.frame(assist_synth.SEED_TEST, i, SIZE)
    les = info["lesions"]
    if len(les) == 1 and les[0]["label_index"] in want:
        b = les[0]["box"]
        if min(b[2] - b[0], b[3] - b[1]) >= 20:
            k = len(chosen)
            x = torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1) / 255
            det, probs = with_probs(x)
            acts[f"input.{k}"] = x[None]
            acts[f"truth.{k}"] = torch.tensor([*b, les[0]["label_index"]], dtype=torch.float32)
            acts[f"boxes.{k}"], acts[f"scores.{k}"] = det["boxes"], det["scores"]
            acts[f"labels.{k}"], acts[f"probs.{k}"] = det["labels"].float(), probs
            chosen.append({"index": i, "label": les[0]["label"], "box": b,
                           "top": [round(float(det["scores"][0]), 4), int(det["labels"][0])] if len(det["scores"]) else None})
            want.discard(les[0]["label_index"])
    i += 1
mi_ref.save("assist_det_ref.safetensors", acts, {"frames": json.dumps(chosen), "seed": str(assist_synth.SEED_TEST),
                                                 "classes_left_out": json.dumps(left_out),
                                                 "size": str(SIZE), "score_threshold": meta.get("score_threshold", "0.5")})
print("ref_assist_det:", json.dumps(chosen), "left out (validation AP@0.5 below", MIN_VAL_AP, "):", left_out,
      file=sys.stderr)
