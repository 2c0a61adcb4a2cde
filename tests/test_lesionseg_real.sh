#!/bin/sh
# tests/test_lesionseg_real.sh - `medinfer lesionseg` with the shipped demo blobs on the five real
# Kvasir-SEG polyp images in ../shared/data/kvasir-seg-sample (JPEG, 332 x 487 up to 1920 x 1072;
# skipped, exit 77, when they or the demo blobs are absent): every image is segmented, its mask,
# overlay and depth PNGs have the image's own size, the report's components lie inside it, and the
# note says the model knows only synthetic images. The Dice against the real masks is printed,
# not judged: the demo model has never seen a real polyp.
set -u
bin=${MI_BIN:-build/medinfer}
py=${PYTHON:-/usr/bin/python3}
data=${MI_SHARED_DATA:-../shared/data}/kvasir-seg-sample
D=weights/lesionseg_depth_demo.safetensors
S=weights/lesionseg_seg_demo.safetensors
[ -d "$data/images" ] || { echo "test_lesionseg_real: $data is absent: skipped"; exit 77; }
[ -f "$D" ] && [ -f "$S" ] || { echo "test_lesionseg_real: no demo blobs ($D, $S) yet: skipped"; exit 77; }
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail() { echo "test_lesionseg_real: $*"; exit 1; }
"$bin" lesionseg --depth-model "$D" --seg-model "$S" --threads 1 --quiet --truth "$data/masks" --out-dir "$t/o" \
    --out "$t/r.json" "$data/images" || fail "exit $?"
"$py" - "$t" <<'EOF2' || fail "report or pictures wrong"
import json, sys
from PIL import Image
t = sys.argv[1]
doc = json.load(open(f"{t}/r.json"))
assert doc["summary"]["ok"] == 5 and doc["summary"]["not_ok"] == 0, doc["summary"]
assert "synthetic" in doc.get("note", ""), doc.get("note")
line = []
for r in doc["results"]:
    size = Image.open(r["input"]).size
    assert (r["width"], r["height"]) == size, (r["input"], size)
    for k in ("mask", "overlay", "depth"):
        assert Image.open(r["outputs"][k]).size == size, (r["input"], k)
    for c in r["components"]:
        x0, y0, x1, y1 = c["box"]
        assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1], c
    line.append(f"{size[0]}x{size[1]} {r['lesion']['area_pct']:.1f}% dice {r['truth']['dice']:.2f}")
print("test_lesionseg_real: " + "; ".join(line))
EOF2
echo "test_lesionseg_real: passed"
