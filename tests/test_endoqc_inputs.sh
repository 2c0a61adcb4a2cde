#!/bin/sh
# tests/test_endoqc_inputs.sh - inputs that are not what they seem, made here from small
# synthetic exams (`medinfer endoqc-synth`):
#   an MP4 with flipped bytes (it decodes, with errors the decoder conceals) and an AVI cut to
#     90 % (its index is lost, so FFmpeg measures a shorter duration): the report says the
#     decode was not complete and why, the same without the decoder thread; the clean originals
#     decode completely;
#   empty files and directories given as a video, an image or a .npy: one sentence saying what
#     the file is, exit 1, for `endoqc` (single and batch) and `classify`;
#   `endoqc-synth --duration S` writes a video of S seconds, and refuses what it cannot do.
set -u
. "$(dirname "$0")/endoqc_lib.sh"
[ -f "$MODEL" ] || fail "$MODEL is missing"
qc() {  # NAME VIDEO: report NAME.json, exit status in $rc
    "$BIN" endoqc --quiet --model "$MODEL" --out "$T/$1.json" "$2" 2> "$T/$1.err"; rc=$?
}

# ---- damaged videos ---------------------------------------------------------------------------------
for ext in mp4 avi; do
    "$BIN" endoqc-synth --seed 4 --fps 10 --dwell 0.3 --no-events --size 128x96 --out "$T/clean.$ext" 2>/dev/null \
        || fail "endoqc-synth .$ext"
    qc "clean_$ext" "$T/clean.$ext"
    [ $rc -eq 0 ] || { cat "$T/clean_$ext.err"; fail "clean .$ext: exit $rc"; }
    check "$T/clean_$ext.json" 'r["decode"]["complete"] and r["decode"]["damage"] is None and r["decode"]["damaged_frames"] == 0 and r["decode"]["bad_packets"] == 0' "the clean .$ext decodes completely"
done
"$PY" - "$T" <<'EOF' || fail "damaging the copies"
import sys
t = sys.argv[1]
b = bytearray(open(f"{t}/clean.mp4", "rb").read())
n = len(b)
for i in range(30):                      # inside the frame data (the index is at the front)
    b[n // 3 + i * (n // 3 // 30)] ^= 0x55
open(f"{t}/flipped.mp4", "wb").write(b)
a = open(f"{t}/clean.avi", "rb").read()
open(f"{t}/cut.avi", "wb").write(a[:len(a) * 9 // 10])
EOF
qc flipped "$T/flipped.mp4"
[ $rc -eq 0 ] || { cat "$T/flipped.err"; fail "a damaged video must still give a report (exit $rc)"; }
check "$T/flipped.json" 'not r["decode"]["complete"] and r["decode"]["damaged_frames"] + r["decode"]["bad_packets"] > 0' "flipped bytes: the decode is not complete"
check "$T/flipped.json" 'r["decode"]["damaged_frames"] == 0 or "decoded with errors concealed by the decoder" in r["decode"]["damage"]' "flipped bytes: the damage text says frames were concealed"
check "$T/flipped.json" 'not r["decode"]["truncated"] and r["frames"]["decoded"] > 0' "flipped bytes: not truncated, frames decoded"
qc cut "$T/cut.avi"
[ $rc -eq 0 ] || { cat "$T/cut.err"; fail "a cut AVI must still give a report (exit $rc)"; }
check "$T/cut.json" 'not r["decode"]["complete"] and r["decode"]["truncated"] and "(file truncated?)" in r["decode"]["damage"]' "AVI cut to 90 %: truncated"
check "$T/cut.json" 'r["video"]["duration_ms"] == json.load(open(sys.argv[1].replace("cut.json", "clean_avi.json")))["video"]["duration_ms"]' "AVI cut to 90 %: the stated duration is the header's"
check "$T/cut.json" '0.8 * r["video"]["duration_ms"] < r["decode"]["decoded_until_ms"] < 0.97 * r["video"]["duration_ms"]' "AVI cut to 90 %: decoded about as far as the bytes go"
# damage seen on the decoder thread reaches the report as it does decoding on the network's thread
for name in flipped:flipped.mp4 cut:cut.avi; do
    "$BIN" endoqc --quiet --model "$MODEL" --no-decode-thread --out "$T/${name%%:*}_one.json" "$T/${name#*:}" \
        || fail "endoqc --no-decode-thread ${name#*:}"
    same_report "$T/${name%%:*}.json" "$T/${name%%:*}_one.json" "${name#*:}: the report with and without the decoder thread"
done

# ---- empty files and directories ----------------------------------------------------------------------
: > "$T/empty.mp4"; mkdir "$T/folder.mp4"
# want FILE EXIT-WANTED MESSAGE CMD...: the command exits as wanted with exactly that message line
want() {
    file=$1; code=$2; msg=$3; shift 3
    "$@" > /dev/null 2> "$T/want.err"; rc=$?
    [ $rc -eq "$code" ] && grep -qxF "$msg" "$T/want.err" \
        || { cat "$T/want.err"; fail "$*: exit $rc, expected $code with '$msg'"; }
}
want "$T/empty.mp4" 1 "medinfer endoqc: $T/empty.mp4: empty file (0 bytes)" "$BIN" endoqc --quiet --model "$MODEL" "$T/empty.mp4"
want "$T/folder.mp4" 1 "medinfer endoqc: $T/folder.mp4: is a directory, not a video file" "$BIN" endoqc --quiet --model "$MODEL" "$T/folder.mp4"
printf 'empty.mp4\nfolder.mp4\n' > "$T/list.txt"
"$BIN" endoqc --quiet --model "$MODEL" --batch "$T/list.txt" --db "$T/b.sqlite" --out "$T/batch.json"; rc=$?
[ $rc -eq 1 ] || fail "a batch of unusable files: exit $rc, expected 1"
check "$T/batch.json" 'r["exams"][0]["error"].endswith("empty.mp4: empty file (0 bytes)") and r["exams"][1]["error"].endswith("folder.mp4: is a directory, not a video file")' "the batch says what each file is"
: > "$T/empty.png"; mkdir "$T/folder.png"; : > "$T/empty.npy"; mkdir "$T/folder.npy"
for f in "empty.png:empty file (0 bytes)" "folder.png:is a directory, not an image file" \
         "empty.npy:empty file (0 bytes)" "folder.npy:is a directory, not a .npy file"; do
    want "$T/${f%%:*}" 1 "medinfer classify: $T/${f%%:*}: ${f#*:}" "$BIN" classify --model "$MODEL" "$T/${f%%:*}"
done

# ---- endoqc-synth --duration --------------------------------------------------------------------------
"$BIN" endoqc-synth --duration 40 --fps 5 --size 64x48 --out "$T/d40.mp4" --truth "$T/d40.csv" 2>/dev/null || fail "endoqc-synth --duration 40"
"$BIN" endoqc --quiet --model "$MODEL" --every 50 --no-resample --out "$T/d40.json" "$T/d40.mp4" || fail "endoqc on the 40 s video"
check "$T/d40.json" 'r["video"]["duration_ms"] == 40000 and r["frames"]["decoded"] == 200 and r["decode"]["complete"]' "--duration 40 at 5 fps: 40.0 s, 200 frames"
awk -F, 'NR > 1 && $3 == 1 { n++ } END { exit n == 26 ? 0 : 1 }' "$T/d40.csv" || fail "--duration 40: every site shown"
"$BIN" endoqc-synth --duration 10 --out "$T/d10.mp4" 2> "$T/d10.err"; rc=$?
[ $rc -eq 2 ] && grep -q "too short" "$T/d10.err" && [ ! -e "$T/d10.mp4" ] || { cat "$T/d10.err"; fail "--duration 10 must be refused (exit $rc)"; }
"$BIN" endoqc-synth --duration 40x --out "$T/dx.mp4" 2>/dev/null; rc=$?
[ $rc -eq 2 ] || fail "--duration 40x must be refused as a bad value (exit $rc)"
echo "test_endoqc_inputs: all checks passed"
