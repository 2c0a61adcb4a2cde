#!/usr/bin/python3
"""tests/ref_assist_term.py OUTDIR - the detector blob tests/test_assist_term.sh serves while the
demo detector (weights/assist_det_demo.safetensors) is not there: tools/rcnn_ref.py's
fasterrcnn_fpn on ResNet-18 with random weights, the assistant's labels and high-risk labels, at
the 256-pixel frames the test sends. Random weights find no lesion, so the box head's class bias
is set to make each frame's few detections confident ones ("adenomatous polyp" at about 0.97):
the test then checks the mechanics (every answer drawn where and only where the log says, on its
own exam's video) rather than what a trained detector sees."""
import os
import sys

import torch

import mi_ref

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import rcnn_ref  # noqa: E402

LABELS = ["__background__", "adenomatous polyp", "non-adenomatous polyp", "ulcer", "other"]
torch.manual_seed(0)
# the demo detector's configuration (tools/train_assist_det.py), so the test costs what it will
meta = rcnn_ref.metadata("resnet18", len(LABELS), labels=LABELS, model_version="test-assist-term-1",
                         arch="fasterrcnn_fpn", min_size=160, max_size=224, returned_layers=[1, 2, 3],
                         fpn_channels=64, representation_size=256,
                         anchor_sizes=[[8, 14], [20, 28], [40, 56], [80, 112]], anchor_ratios=[0.5, 1.0, 2.0],
                         rpn_pre_nms_top_n=300, rpn_post_nms_top_n=100, box_detections_per_img=3)
meta["high_risk_labels"] = '["adenomatous polyp", "ulcer"]'
model = rcnn_ref.build(meta)
with torch.no_grad():
    cls = model.roi_heads.box_predictor.cls_score
    cls.weight.mul_(0.01)
    cls.bias.zero_()
    cls.bias[1] = 5.0
model.eval()
with torch.no_grad():
    dets = model([torch.rand(3, 256, 256)])[0]
assert len(dets["scores"]) > 0 and float(dets["scores"].min()) > 0.9, dets["scores"]
mi_ref.export.write_safetensors(os.path.join(mi_ref.out_dir(), "assist_term_det.safetensors"),
                                model.state_dict(), meta)
print(f"ref_assist_term: {len(dets['scores'])} detections on noise, scores {dets['scores'].tolist()}",
      file=sys.stderr)
