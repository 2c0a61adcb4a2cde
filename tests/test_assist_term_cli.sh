#!/bin/sh
# tests/test_assist_term_cli.sh - `medinfer assist-terminal` without a server: usage errors name
# the option (exit 2); a source that cannot be read names it (exit 1); with no server to reach
# the terminal plays its source to the end, draws the fault indicator on every frame and exits 0;
# and the freeze calibration of docs/assist.md on the real clip (skipped without ../shared/data):
# the defaults find exactly one freeze per held frame of its colonoscopy inset, 19.
set -u
BIN=${MI_BIN:-build/medinfer}
PY=${PYTHON:-/usr/bin/python3}
COUNT=$(dirname "$BIN")/tests/test_assist_term
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

expect() {   # exit-code message args...
    want=$1 msg=$2
    shift 2
    "$BIN" assist-terminal "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    rc=$?
    [ $rc -eq "$want" ] || fail "assist-terminal $*: exit $rc, expected $want ($(head -n 1 "$tmp/err"))"
    grep -qF -- "$msg" "$tmp/err" || fail "assist-terminal $*: no '$msg' in: $(head -n 1 "$tmp/err")"
}
S="--server http://127.0.0.1:9 --token t"
expect 2 "--server, --source and one of --token / --token-file are required" --source x.mp4
expect 2 "--server 'ftp://h': expected an http:// or https:// URL" --server ftp://h --token t --source x
expect 2 "--trigger 'auto,blink': unknown trigger 'blink'" $S --source x --trigger auto,blink
expect 2 "--trigger auto:K '0': expected a whole number in [1, 100000]" $S --source x --trigger auto:0
expect 2 "--timeout-ms '-5': expected a whole number" $S --source x --timeout-ms -5
expect 2 "--crop '1,2,3': expected X,Y,W,H in pixels" $S --source x --crop 1,2,3
expect 2 "--freeze-eps 'nan': expected a number" $S --source x --freeze-eps nan
expect 2 "unknown option '--bogus'" $S --source x --bogus
expect 2 "--token-file $tmp/none:" --server http://h --token-file "$tmp/none" --source x
printf '# only a comment\n\n' > "$tmp/empty.tokens"
expect 2 "no token in it" --server http://h --token-file "$tmp/empty.tokens" --source x
expect 1 "$tmp/missing.mp4: no such file" $S --source "$tmp/missing.mp4"
expect 1 "folder '$tmp/nodir' of the image sequence does not exist" $S --source "$tmp/nodir/%04d.png"

# no server: 20 frames (a PNG sequence of sharp, mid-grey texture) played to the end, the fault on each
mkdir "$tmp/seq"
"$PY" - "$tmp/seq" <<'EOF' || fail "writing frames"
import sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
for i in range(20):
    Image.fromarray(rng.integers(60, 200, (120, 160, 3), dtype=np.uint8)).save(f"{sys.argv[1]}/{i:04d}.png")
EOF
"$BIN" assist-terminal --server http://127.0.0.1:9 --token t --source "$tmp/seq/%04d.png" --no-realtime \
    --trigger auto:2 --out "$tmp/o.mp4" --log "$tmp/o.jsonl" --timeout-ms 300 </dev/null >"$tmp/sum.json" 2>"$tmp/err" ||
    fail "no server: exit $? ($(head -n 1 "$tmp/err"))"
"$COUNT" --count "$tmp/o.mp4" >"$tmp/o.count" || fail "decoding the overlay"
"$PY" - "$tmp" <<'EOF' || exit 1
import json, sys
tmp = sys.argv[1]
s = json.load(open(f"{tmp}/sum.json"))
rows = [[int(x) for x in l.split()] for l in open(f"{tmp}/o.count")]
bad = []
if s["sent"] != 0 or s["frames"] != 20 or len(rows) != 20:
    bad.append(f"summary {s['frames']} frames, {s['sent']} sent; MP4 {len(rows)} frames")
if s["dropped"].get("no exam", 0) < 1:
    bad.append(f"targets without an exam not counted: {s['dropped']}")
no_fault = [r[0] for r in rows if r[2] < 200]
if no_fault:
    bad.append(f"frames without the fault indicator: {no_fault[:10]}")
if any(r[1] > 5 for r in rows):
    bad.append("a box drawn with no answer")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
EOF

CLIP=../shared/data/endoscopy-video-misc/simcol_example_result_real.mp4
[ -f "$CLIP" ] || { echo "../shared/data/endoscopy-video-misc absent: calibration not checked"; exit 77; }
"$BIN" assist-terminal --calibrate --source "$CLIP" --crop 782,571,260,195 --size 0 >"$tmp/cal.jsonl" 2>"$tmp/err" ||
    fail "calibrate: $(head -n 1 "$tmp/err")"
"$PY" - "$tmp/cal.jsonl" <<'EOF' || exit 1
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
mads = sorted(r["mad"] for r in rows if "mad" in r)
still = [m for m in mads if m < 1.0]
moves = [m for m in mads if m >= 1.0]
freezes = sum(1 for r in rows if r.get("freeze"))
judged = sum(1 for r in rows if r["judged"])
ok = (len(rows) == 576 and freezes == 19 and still[-1] < 0.5 and moves[0] > 0.5 and len(moves) == 18
      and judged == 576)
print(f"real clip: {len(rows)} frames, {freezes} freezes, still max {still[-1]:.3f}, smallest move {moves[0]:.2f}, "
      f"{judged} judged")
sys.exit(0 if ok else 1)
EOF
[ $? -eq 0 ] || fail "the real clip no longer calibrates as docs/assist.md says"
echo "ok"
