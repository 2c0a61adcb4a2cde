#!/bin/sh
# tools/endoqc_demo.sh [BUILD_DIR] - what `make demo` runs: the endoscopy completeness QC on two
# synthetic gastroscopies rendered here and now (seeded; no patient data; no PyTorch needed):
# one complete exam, and one in which the fundus (sites 17-20) and three other sites were never
# shown. Prints both verdicts with the missing sites, and where the reports and contact sheets are.
set -eu
B=${1:-build}
bin=$B/medinfer
model=weights/endoqc_sites_demo.safetensors
out=$B/demo
mkdir -p "$out"

echo "endoqc demo: rendering two synthetic gastroscopy videos (384x288, 25 fps, H.264) ..."
"$bin" endoqc-synth --seed 11 --out "$out/exam_complete.mp4" --truth "$out/exam_complete.truth.csv" 2>/dev/null
"$bin" endoqc-synth --seed 12 --skip 2,11,17-20,25 --out "$out/exam_incomplete.mp4" \
    --truth "$out/exam_incomplete.truth.csv" 2>/dev/null

status=0
for exam in complete incomplete; do
    echo
    echo "== exam_$exam.mp4 (rendered without: $(awk -F, 'NR > 1 && $3 == 0 { printf "%s%s", n++ ? ", " : "", $2 }
                                                     END { if (!n) printf "nothing" }' "$out/exam_$exam.truth.csv"))"
    # the verdict line is medinfer's own summary on stderr; the JSON report goes to a file
    "$bin" endoqc --model "$model" --out "$out/exam_$exam.json" --contact-sheet "$out/exam_$exam.png" \
        "$out/exam_$exam.mp4" || status=$?
done
echo
echo "reports: $out/exam_complete.json $out/exam_incomplete.json"
echo "contact sheets: $out/exam_complete.png $out/exam_incomplete.png"
exit $status
