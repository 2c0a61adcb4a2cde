#!/bin/sh
# tests/test_lesionseg_kvasir.sh - the real polyp segmenter (weights/lesionseg_seg_kvasir.safetensors,
# trained on Kvasir-SEG by tools/train_kvasir_seg.py) in `medinfer lesionseg` against the same blob
# in PyTorch, on four Kvasir-SEG test images (../shared/data/kvasir-seg-sample: all in the test
# split, so the model never saw them). The PyTorch side is tools/eval_kvasir_seg.py's (its own blob
# reader and preprocessing, tools/lesionseg_ref.py's modules; no code of the pipeline): probabilities
# up-sampled bilinear to the image's size, lesion where channel 1 > channel 0. The C mask PNG must
# agree with it on >= 99.5 % of the pixels, and its Dice against the expert mask must be within
# 0.01 of PyTorch's, image by image. Skipped (exit 77) when the data or the blob is absent.
set -u
bin=${MI_BIN:-build/medinfer}
py=${PYTHON:-/usr/bin/python3}
data=${MI_SHARED_DATA:-../shared/data}/kvasir-seg-sample
D=weights/lesionseg_depth_demo.safetensors
S=weights/lesionseg_seg_kvasir.safetensors
[ -d "$data/images" ] || { echo "test_lesionseg_kvasir: $data is absent: skipped"; exit 77; }
[ -f "$D" ] && [ -f "$S" ] || { echo "test_lesionseg_kvasir: no blobs ($D, $S): skipped"; exit 77; }
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail() { echo "test_lesionseg_kvasir: $*"; exit 1; }
# four of the five (617 x 528 up to 1348 x 1070; the fifth is another 619 x 529)
ids="cju0qkwl35piu0993l0dewei2 cju0qoxqj9q6s0835b43399p4 cju0roawvklrq0799vmjorwfv cju0rx1idathl0835detmsp84"
imgs=""
for i in $ids; do imgs="$imgs $data/images/$i.jpg"; done
# shellcheck disable=SC2086
"$bin" lesionseg --depth-model "$D" --seg-model "$S" --threads 1 --quiet --out-dir "$t/o" --out "$t/r.json" \
    $imgs || fail "exit $?"
# shellcheck disable=SC2086
"$py" - "$t" "$data" "$D" "$S" $ids <<'EOF2' || fail "C masks differ from PyTorch's"
import json, sys
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
sys.path.insert(0, "tools")
import eval_kvasir_seg as ev
t, data, D, S, ids = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
torch.set_num_threads(1)
dm, dmeta, _ = ev.load_net(D)
sm, smeta, _ = ev.load_net(S)
doc = json.load(open(f"{t}/r.json"))
assert doc["summary"]["ok"] == len(ids), doc["summary"]
line = []
for i in ids:
    rgb = np.array(Image.open(f"{data}/images/{i}.jpg").convert("RGB"))
    gt = np.asarray(Image.open(f"{data}/masks/{i}.jpg").convert("L")) >= 128
    x = ev.preprocess(rgb, dmeta)
    with torch.no_grad():
        u = F.interpolate(sm(torch.cat([x, dm(x)], 1)), size=gt.shape, mode="bilinear", align_corners=False)[0]
    mpy = (u[1] > u[0]).numpy()
    mc = np.asarray(Image.open(f"{t}/o/{i}_mask.png").convert("L")) > 127
    assert mc.shape == gt.shape, (i, mc.shape, gt.shape)
    agree = float((mc == mpy).mean())
    dpy, dc = ev.score(mpy, gt)["dice"], ev.score(mc, gt)["dice"]
    assert agree >= 0.995, (i, "pixel agreement", agree)
    assert abs(dc - dpy) <= 0.01, (i, "Dice C", dc, "PyTorch", dpy)
    line.append(f"{i[:8]} Dice {dc:.3f} (PyTorch {dpy:.3f}, {100 * agree:.3f} % pixels agree)")
print("test_lesionseg_kvasir: " + "; ".join(line))
EOF2
echo "test_lesionseg_kvasir: passed"
