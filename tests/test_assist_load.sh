#!/bin/sh
# tests/test_assist_load.sh - the assistant under simulated terminals (bench/assist_load.py, the
# same script `make bench` runs for 60 s at 1, 4 and 16 terminals): 4 terminals for 6 s against one
# `medinfer assist-server` on 127.0.0.1, each on its own exam, one request in flight each, the
# server killed with SIGKILL 2 s in and restarted on the same database 2 s later. Checked: no answer
# names another exam or terminal, every acknowledged finding is in its own exam's list afterwards
# and in no other, the terminals saw the outage (faults) and all four were answered again after the
# restart. Nothing here depends on timing figures; the detector is a tiny random-weight
# fasterrcnn_fpn made here whose class bias makes a finding of (almost) every frame.
#
# env: MI_BIN (medinfer), PYTHON (python3 with torch). Exit 0 pass, 77 skip, 1 fail.
bin=${MI_BIN:-build/medinfer}
py=${PYTHON:-/usr/bin/python3}
[ -x "$bin" ] || { echo "no medinfer binary at $bin"; exit 77; }
"$py" -c "import torch, torchvision" 2>/dev/null || { echo "no PyTorch in $py"; exit 77; }
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "test_assist_load: $*"; exit 1; }
"$py" - "$T" <<'PYEOF' || fail "could not make the test detector and frames"
import io, os, sys
import numpy as np
import torch
from PIL import Image
sys.path.insert(0, "tools")
import export, rcnn_ref
t = sys.argv[1]
labels = ["__background__", "adenomatous polyp", "non-adenomatous polyp", "ulcer", "other"]
torch.manual_seed(0)
meta = rcnn_ref.metadata("resnet18", len(labels), labels=labels, model_version="test-assist-load",
                         arch="fasterrcnn_fpn", min_size=96, max_size=128, representation_size=64,
                         returned_layers=[1, 2, 3], fpn_channels=64, anchor_sizes=[32, 64, 128, 256],
                         rpn_pre_nms_top_n=100, rpn_post_nms_top_n=20, box_detections_per_img=2)
m = rcnn_ref.build(meta).eval()
with torch.no_grad():
    m.roi_heads.box_predictor.cls_score.weight.mul_(0.01)
    m.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, 8.0, 0.0, 0.0, 0.0]))
export.write_safetensors(f"{t}/det.safetensors", m.state_dict(), meta)
os.makedirs(f"{t}/frames")
rng = np.random.default_rng(1)
for i in range(8):
    Image.fromarray(rng.integers(40, 220, (240, 320, 3), dtype=np.uint8)).save(f"{t}/frames/{i:04d}.jpg", quality=90)
PYEOF
"$py" bench/assist_load.py --bin "$bin" --model "$T/det.safetensors" --frames "$T/frames" --terminals 4 \
    --duration 6 --kill-at 2 --timeout 2 --json "$T/load.json" >"$T/out" 2>&1 || { cat "$T/out"; fail "exit $?"; }
cat "$T/out"
"$py" - "$T/load.json" <<'PYEOF' || fail "load figures wrong"
import json, sys
r = json.load(open(sys.argv[1]))["runs"][0]
assert r["terminals"] == 4 and r["killed"], r
assert r["answered"] > 0 and r["acknowledged_findings"] > 0, r
assert not r["leaks"] and r["lost_findings"] == 0 and r["foreign_findings"] == 0, r
assert r["faults"] > 0, ("the outage was not seen", r)
assert r["terminals_answered_after_restart"] == 4, ("not every terminal was answered after the restart", r)
assert r["metrics_lines"], r
PYEOF
