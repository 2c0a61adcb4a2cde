#!/bin/sh
# bench/bench_assist.sh [BUILD_DIR] - the endoscopy assistant under load: bench/assist_load.py with
# 1, 4 and 16 simulated terminals at 25 fps, automatic trigger on every frame (one request in flight
# per terminal), 60 s each, against one `medinfer assist-server` (default workers and threads) with
# the demo detector, on 40 held-out synthetic frames (tools/assist_synth.py seed 5000, 320 x 320,
# JPEG quality 90 as a terminal sends them); then 4 terminals for 30 s with the server killed
# (SIGKILL) at 10 s and restarted 2 s later. Prints the table (p50 / p99 round trip, answers per
# second, rejects, faults, leaks, lost findings) and writes BUILD_DIR/bench_assist/load.json.
# Everything runs on this machine: the terminals' threads share its cores with the server.
set -eu
B=${1:-build}
PY=${PYTHON:-/usr/bin/python3}
BLOB=${ASSIST_BLOB:-weights/assist_det_demo.safetensors}
d=$B/bench_assist
[ -f "$BLOB" ] || { echo "bench_assist: no detector blob $BLOB"; exit 1; }
mkdir -p "$d"
if [ ! -f "$d/frames/.done" ]; then
    rm -rf "$d/png" "$d/frames" && mkdir -p "$d/frames"
    "$PY" tools/assist_synth.py "$d/png" --seed 5000 --count 40 --size 320 >/dev/null
    "$PY" - "$d" <<'PYEOF'
import os, sys
from PIL import Image
d = sys.argv[1]
for f in sorted(os.listdir(f"{d}/png")):
    if f.endswith(".png"):
        Image.open(f"{d}/png/{f}").convert("RGB").save(f"{d}/frames/{f[:-4]}.jpg", quality=90)
PYEOF
    touch "$d/frames/.done"
fi
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
echo "assist-server under simulated terminals ($BLOB)"
"$PY" bench/assist_load.py --bin "$B/medinfer" --model "$BLOB" --frames "$d/frames" --terminals 1,4,16 \
    --duration "${ASSIST_SECONDS:-60}" --json "$d/load.json"
echo
echo "the same with the server killed and restarted"
"$PY" bench/assist_load.py --bin "$B/medinfer" --model "$BLOB" --frames "$d/frames" --terminals 4 \
    --duration 30 --kill-at 10 --timeout 2 --json "$d/load_kill.json"
