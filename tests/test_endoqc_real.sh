#!/bin/sh
# tests/test_endoqc_real.sh - real files through `medinfer endoqc`: the H.264 1080p clip in
# ../shared/data/endoscopy-video-misc/ decodes completely and runs the whole pipeline; every real
# Kvasir frame in ../shared/data/kvasir-v2-onepercls/ (PNG, read by FFmpeg as a one-frame video)
# is decoded and classified without error. The demo model knows only synthetic sites, so only
# that it runs cleanly is checked, not what it answers. Skipped (77) without ../shared/data.
set -u
BIN=${MI_BIN:-build/medinfer}
PY=${PYTHON:-python3}
MODEL=weights/endoqc_sites_demo.safetensors
DATA=${MI_SHARED_DATA:-../shared/data}
CLIP=$DATA/endoscopy-video-misc/simcol_example_result_real.mp4
KVASIR=$DATA/kvasir-v2-onepercls
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
check() {
    "$PY" -c "import json, sys; r = json.load(open(sys.argv[1])); sys.exit(0 if ($2) else 1)" "$1" \
        || { head -c 2000 "$1"; fail "$3"; }
}
if [ ! -f "$CLIP" ] || [ ! -d "$KVASIR" ]; then
    echo "$DATA/endoscopy-video-misc or kvasir-v2-onepercls not present"
    exit 77
fi

"$BIN" endoqc --quiet --model "$MODEL" --out "$T/clip.json" --contact-sheet "$T/clip.png" "$CLIP" \
    || fail "endoqc on the real H.264 clip exited $?"
check "$T/clip.json" 'r["video"]["codec"] == "h264" and r["video"]["width"] == 1920 and r["frames"]["decoded"] == 576' "all 576 frames of the 1080p H.264 clip decoded"
check "$T/clip.json" 'r["decode"]["complete"] and r["frames"]["kept"] > 0 and r["frames"]["classified"] > 0' "clean decode, frames kept and classified"
check "$T/clip.json" '18500 < r["decode"]["decoded_until_ms"] < 19100' "capture times from the stream's timestamps"
[ -s "$T/clip.png" ] || fail "contact sheet of the real clip"

n=0
for img in "$KVASIR"/*.png; do
    name=$(basename "$img" .png)
    "$BIN" endoqc --quiet --model "$MODEL" --out "$T/$name.json" "$img" || fail "endoqc on $img exited $?"
    check "$T/$name.json" 'r["frames"]["decoded"] == 1 and r["frames"]["kept"] == 1 and r["frames"]["classified"] == 1' "$name: one real frame decoded and classified"
    check "$T/$name.json" 'r["verdict"] == "incomplete" and len(r["sites"]) == 26' "$name: a full report"
    n=$((n + 1))
done
[ $n -ge 8 ] || fail "expected the 8 Kvasir frames, found $n"
echo "test_endoqc_real: real clip and $n Kvasir frames ok"
