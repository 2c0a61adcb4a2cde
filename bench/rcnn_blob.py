"""bench/rcnn_blob.py NAME OUT - a random-weight Faster R-CNN (ResNet C4) blob for the benchmark,
built by tools/rcnn_ref.py (randomized BatchNorm statistics, as the parity tests use).
  r50: ResNet-50 C4, RGB, torchvision's 15 anchors, 91 classes (COCO's head), min_size 480,
       max_size 640, 300 proposals after NMS, representation 1024
  echo: ResNet-18 C4, one grey channel, three box anchors, 2 classes, min_size 256, max_size
        800, 300 proposals, representation 256 (the M-mode cycle detector's shape)"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import export  # noqa: E402
import rcnn_ref  # noqa: E402

CONFIGS = {
    "r50": ("resnet50", 91, dict(min_size=480, max_size=640, rpn_post_nms_top_n=300, representation_size=1024)),
    "echo": ("resnet18", 2, dict(min_size=256, max_size=800, input_channels=1, image_mean=[0.0], image_std=[1.0],
                                 anchors=[[120, 130], [190, 170], [300, 210]], rpn_post_nms_top_n=300,
                                 representation_size=256)),
}
name, out = sys.argv[1], sys.argv[2]
backbone, classes, cfg = CONFIGS[name]
torch.manual_seed(0)
meta = rcnn_ref.metadata(backbone, classes, model_version="bench-1", **cfg)
m = rcnn_ref.build(meta)
export.randomize_batchnorm(m, torch.Generator().manual_seed(1))
export.write_safetensors(out, m.eval().state_dict(), meta)
