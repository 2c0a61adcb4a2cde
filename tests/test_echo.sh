#!/bin/sh
# tests/test_echo.sh - `medinfer echo` end to end with the shipped demo blobs:
#  - 12 synthetic studies of a seed neither training (1), validation (2) nor the examples (3) use:
#    calibrated DICOM in -> EF out, scored against the ground truth by tools/echo_eval.py (which
#    shares no code with the pipeline), EF MAE <= 5 points on these 12 (measured 0.94; the
#    200-study figure is in docs/echo.md); the annotated PNGs and one audit row per study;
#  - the same strips as PNG: pixel measures and a note, no volumes, no EF; with --mm-per-px the
#    same EF as the DICOM's calibration gives;
#  - bad inputs: a 1x1 image, a DICOM without pixel data, an unsupported photometric
#    interpretation, absurd dimensions, a missing file, each a clear message naming the file and
#    exit 1, while the good study's result in the same run is kept; an image without a cycle:
#    status no_cycle and exit 4.
set -u
bin=${MI_BIN:-build/medinfer}
py=${PYTHON:-/usr/bin/python3}
fx=${MI_FIXTURES:-build/fixtures}
det=weights/echo_cycle_demo.safetensors
pts=weights/echo_points_demo.safetensors
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail() { echo "test_echo: $*"; exit 1; }
echo_() { "$bin" echo --detector "$det" --points "$pts" --quiet "$@"; }

"$py" tools/echo_synth.py --seed 7 --count 12 --out "$t/s" >/dev/null || fail "echo_synth failed"

# calibrated DICOM -> EF, against the ground truth
echo_ --out "$t/dcm.json" --annotate "$t/ann" --audit "$t/audit.db" "$t"/s/*.dcm
rc=$?
[ $rc -eq 0 ] || fail "DICOM studies: exit $rc"
"$py" tools/echo_eval.py "$t/s" "$t/dcm.json" --max-ef-mae 5 || fail "DICOM studies: EF off the ground truth"
[ "$(ls "$t/ann" | grep -c '\.dcm\.echo\.png$')" -eq 12 ] || fail "annotated PNGs missing"
"$bin" audit verify "$t/audit.db" >"$t/audit.txt" 2>&1 || { cat "$t/audit.txt"; fail "audit chain"; }
grep -q "12 rows" "$t/audit.txt" || { cat "$t/audit.txt"; fail "expected 12 audit rows"; }

# the same strips as PNG: uncalibrated, then calibrated by option
echo_ --out "$t/png.json" "$t"/s/*.png || fail "PNG studies: exit $?"
first=$(ls "$t"/s/*.json | head -n 1)
mm=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["mm_per_px"])' "$first")
png=${first%.json}.png
echo_ --mm-per-px "$mm" --out "$t/png_mm.json" "$png" || fail "PNG with --mm-per-px: exit $?"
"$py" - "$t/dcm.json" "$t/png.json" "$t/png_mm.json" "$(basename "$first" .json)" <<'EOF' || fail "report contents"
import json, sys
dcm, png, pmm, name = [json.load(open(p)) for p in sys.argv[1:4]] + [sys.argv[4]]
for r in dcm["results"]:
    assert r["status"] == "ok" and r["format"] == "dicom", r
    assert r["calibration"]["depth_source"] == "dicom_ultrasound_region", r["calibration"]
    assert r["measures"]["LVIDd"]["unit"] == "mm" and "EF" in r["measures"] and r["ef_flag"] in ("low", "normal", "high")
for r in png["results"]:
    assert r["status"] == "ok" and r["format"] == "image", r
    m = r["measures"]
    assert m["LVIDd"]["unit"] == "px" and "EF" not in m and "EDV" not in m and "FS" in m, m
    assert r["ef_flag"] is None and "uncalibrated" in r["note"], r
by = {r["input"].rsplit("/", 1)[-1]: r for r in dcm["results"]}
a, b = by[name + ".dcm"], pmm["results"][0]
# the DICOM region is the whole strip: same pixels, same points; mm/px the same number
assert a["points"] == b["points"], (a["points"], b["points"])
assert abs(a["measures"]["EF"]["value"] - b["measures"]["EF"]["value"]) < 1e-3, (a["measures"], b["measures"])
EOF

# bad inputs, with one good study in the same run: its result is kept
"$py" - "$t" <<'EOF'
import sys
from PIL import Image
Image.new("L", (1, 1), 128).save(sys.argv[1] + "/tiny.png")
Image.new("L", (400, 200), 90).save(sys.argv[1] + "/flat.png")
EOF
good=$(ls "$t"/s/*.dcm | head -n 1)
for bad in "$t/tiny.png" "$fx/dicom/no_pixels.dcm" "$fx/dicom/cmyk.dcm" "$fx/dicom/huge.dcm" "$t/missing.dcm"; do
    echo_ --out "$t/bad.json" "$good" "$bad" 2>"$t/err"
    rc=$?
    [ $rc -eq 1 ] || { cat "$t/err"; fail "$bad: exit $rc, expected 1"; }
    grep -q "$(basename "$bad")" "$t/err" || { cat "$t/err"; fail "$bad: the message does not name the file"; }
    "$py" -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; assert [x["status"] for x in r] == ["ok", "error"], r' \
        "$t/bad.json" || fail "$bad: the good study's result was not kept"
done
echo_ "$t/tiny.png" 2>&1 | grep -q "1x1 pixels" || fail "1x1 image: no clear message"
echo_ "$fx/dicom/no_pixels.dcm" 2>&1 | grep -q "no Pixel Data" || fail "DICOM without pixels: no clear message"
echo_ "$fx/dicom/cmyk.dcm" 2>&1 | grep -qi "photometric" || fail "CMYK DICOM: no clear message"

# no cardiac cycle in view: a result saying so, exit 4
echo_ --out "$t/flat.json" "$t/flat.png" 2>"$t/err"
rc=$?
[ $rc -eq 4 ] || { cat "$t/err"; fail "flat image: exit $rc, expected 4"; }
"$py" -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; assert r["status"] == "no_cycle" and "measures" not in r, r' \
    "$t/flat.json" || fail "flat image: report"

# usage
"$bin" echo --points "$pts" "$good" 2>/dev/null
[ $? -eq 2 ] || fail "missing --detector: expected exit 2"
"$bin" echo --detector "$det" --points "$pts" --mm-per-px abc "$good" 2>/dev/null
[ $? -eq 2 ] || fail "--mm-per-px abc: expected exit 2"
echo "test_echo: ok"
