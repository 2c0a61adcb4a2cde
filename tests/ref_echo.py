"""tests/ref_echo.py - the M-mode pipeline's steps as the training side computes them
(tools/train_echo.py: whiten, crop), and the whole pipeline (detector -> top box -> crop ->
regressor -> sigmoid -> points) on random weights, for tests/test_echo.c.

  echo_det_rand.safetensors  a one-channel Faster R-CNN (ResNet-18 C4) with the echo metadata
  echo_pts_rand.safetensors  a one-channel ResNet-18 with 16 outputs, input_size 64
  echo_ref.safetensors       the grey image, its whitening, crops of several boxes (inside, across
                             the border, tiny) and the pipeline's box, score and 8 points
"""
import json
import os
import sys

import numpy as np
import torch

import mi_ref

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import rcnn_ref  # noqa: E402
import train_echo  # noqa: E402

d = mi_ref.out_dir()
S = 64
torch.manual_seed(0)
meta = rcnn_ref.metadata("resnet18", 2, ["__background__", "cycle"], model_version="test-1", input_channels=1,
                         min_size=96, max_size=200, image_mean=[0.0], image_std=[1.0],
                         anchors=[[40, 50], [70, 60], [110, 80]], rpn_post_nms_top_n=50,
                         representation_size=32, box_score_thresh=0.0)
meta.update({"whiten": "zscore", "echo_role": "cycle_detector", "echo_min_score": "0.5"})
det = rcnn_ref.build(meta)
mi_ref.export.randomize_batchnorm(det, torch.Generator().manual_seed(1))
det.eval()
mi_ref.write_independent(os.path.join(d, "echo_det_rand.safetensors"), det.state_dict(), meta)

reg = train_echo.regressor()
mi_ref.export.randomize_batchnorm(reg, torch.Generator().manual_seed(2))
reg.eval()
pmeta = mi_ref.export.blob_metadata("resnet18", 16, [f"p{i // 2 + 1}_{'xy'[i % 2]}" for i in range(16)],
                                    input_size=S, model_version="test-1", resize=S, whiten="zscore",
                                    echo_role="keypoints", crop_margin="0.2")
del pmeta["mean"], pmeta["std"]
mi_ref.write_independent(os.path.join(d, "echo_pts_rand.safetensors"), reg.state_dict(), pmeta)

rng = np.random.default_rng(3)
H, W = 123, 251
img = (rng.random((H, W)) * 80).astype(np.uint8)
img[40:90, :] += 120   # a bright band: the detector's features are not flat
acts = {"image": torch.from_numpy(img.astype(np.float32)), "whiten": train_echo.whiten(img)}
boxes = [(30.2, 20.7, 140.9, 100.1), (-15.5, -8.0, 60.25, 40.5), (200.0, 90.0, 262.0, 130.0), (10.0, 10.0, 10.5, 11.0)]
for i, b in enumerate(boxes):
    x, win = train_echo.crop(img, b, S)
    acts[f"box.{i}"] = torch.tensor(b, dtype=torch.float32)
    acts[f"crop.{i}"] = x
    acts[f"win.{i}"] = torch.tensor(win, dtype=torch.float32)

with torch.no_grad():
    out = det([train_echo.whiten(img)[None]])[0]
    assert len(out["scores"]) > 0, "the random detector found nothing"
    box = out["boxes"][0].tolist()
    x, (X0, Y0, X1, Y1) = train_echo.crop(img, box, S)
    p = torch.sigmoid(reg(x[None]))[0].view(8, 2).double()
    pts = torch.stack([X0 + p[:, 0] * (X1 - X0), Y0 + p[:, 1] * (Y1 - Y0)], dim=1).float()
acts["pipeline.box"] = out["boxes"][0]
acts["pipeline.score"] = out["scores"][:1]
acts["pipeline.points"] = pts
mi_ref.save("echo_ref.safetensors", acts, {"boxes": json.dumps(len(boxes)), "S": str(S)})
