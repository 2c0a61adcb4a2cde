#!/bin/sh
# tests/test_endoqc_small.sh - one short synthetic exam through every code path of `medinfer
# endoqc` (dark and duplicate frames, batching, the re-sampling second pass with its seek, the
# contact sheet, the batch database with an exam met twice, the same report without the decoder
# thread) - small enough to run under the
# sanitizers in `make check`, where the full-length tests are skipped.
set -u
. "$(dirname "$0")/endoqc_lib.sh"
[ -f "$MODEL" ] || fail "$MODEL is missing"

"$BIN" endoqc-synth --seed 3 --dwell 0.8 --brief fundus --skip 5-8 --out "$T/short.mp4" 2>/dev/null || fail "render"
# every 5th kept frame: plenty left unclassified for the second pass to find
"$BIN" endoqc --quiet --model "$MODEL" --every 5 --infer-batch 3 --contact-sheet "$T/short.png" \
    --out "$T/short.json" "$T/short.mp4" || fail "endoqc exited $?"
check "$T/short.json" 'r["frames"]["duplicates"] > 0 and r["frames"]["dark"] > 0 and r["frames"]["classified"] > 0' "frame accounting"
check "$T/short.json" 'any(g["run"] for g in r["resampling"]) and r["frames"]["classified_resampling"] > 0' "a re-sampling pass ran and classified frames"
check "$T/short.json" 'all(m in r["missing_sites"] for m in ("antrum_aw", "antrum_lc", "duodenal_bulb", "descending_duodenum")) and r["verdict"] == "incomplete"' "skipped sites missing"
[ -s "$T/short.png" ] || fail "contact sheet"
# the decoder thread changes nothing in the report: the same run decoding on the network's thread
"$BIN" endoqc --quiet --model "$MODEL" --every 5 --infer-batch 3 --no-decode-thread --out "$T/short_one.json" \
    "$T/short.mp4" || fail "endoqc --no-decode-thread exited $?"
same_report "$T/short.json" "$T/short_one.json" "the report with and without the decoder thread"
cp "$T/short.mp4" "$T/same_exam_again.mp4"
printf 'short.mp4\nsame_exam_again.mp4\n' > "$T/list.txt"
"$BIN" endoqc --quiet --model "$MODEL" --every 5 --infer-batch 3 --batch "$T/list.txt" --db "$T/db.sqlite" \
    --out "$T/batch.json"
[ $? -eq 0 ] || fail "batch exited $?"
check "$T/batch.json" '[e["status"] for e in r["exams"]] == ["done", "resumed"]' "the same video bytes are one exam"
echo "test_endoqc_small: ok"
