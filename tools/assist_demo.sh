#!/bin/sh
# tools/assist_demo.sh [BUILD_DIR] - the real-time assistant part of `make demo`, on 127.0.0.1:
# one `medinfer assist-server` with the demo detector (weights/assist_det_demo.safetensors,
# synthetic training only) and a fresh findings database; the report workstation opens an exam for
# terminal T1 (curl); one `medinfer assist-terminal` plays examples/assist/frames (a synthetic
# 4-second sequence with two lesions, never used in training) in real time with a target every 3rd
# frame, and writes the overlaid MP4 and its events log. Then the exam's findings as the
# workstation reads them, and --verify-db over the database's hash chains. Then, when
# ../shared/data/kvasir-seg-sample is there, real images: a second server with the polyp detector
# trained on 800 Kvasir-SEG images (weights/assist_det_kvasir.safetensors, tools/train_kvasir_det.py;
# these five are in its test split, it never saw them; docs/assist_kvasir.md has its scores) and
# its own database, the five colonoscopy photos posted as pedal frames, each answer's polyps beside
# the expert's boxes (kavsir_bboxes.json), and each finding's thumbnail saved. Needs the build and
# curl (no Python).
set -eu
B=${1:-build}
bin=$B/medinfer
out=$B/demo/assist
rm -rf "$out" && mkdir -p "$out"
ws=ws-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
t1=t1-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
umask 077
printf '%s workstation WS1\n%s terminal T1\n' "$ws" "$t1" > "$out/tokens"
echo "assist demo: server, workstation and one terminal on 127.0.0.1 (files in $out)"
# start_server BLOB DIR [options]: a server on a free port with its own database; $srv, $srv_url
start_server() {
    blob=$1 dir=$2
    shift 2
    "$bin" assist-server --model "$blob" --tokens "$out/tokens" --db "$dir/findings.sqlite" \
        --port 0 --port-file "$dir/port" "$@" >"$dir/server.out" 2>"$dir/server.log" &
    srv=$!
    trap 'kill $srv 2>/dev/null; wait $srv 2>/dev/null' EXIT
    i=0
    while [ ! -s "$dir/port" ]; do
        kill -0 $srv 2>/dev/null || { cat "$dir/server.log"; exit 1; }
        i=$((i + 1)); [ $i -lt 600 ] || { echo "assist demo: the server did not start"; exit 1; }
        sleep 0.1
    done
    srv_url=http://127.0.0.1:$(cat "$dir/port")
}
# the example frames are smoother than real endoscopy (examples/assist/README.md): --sobel-min 5
# on both sides
start_server weights/assist_det_demo.safetensors "$out" --sobel-min 5
exam=$(curl -s -f -H "Authorization: Bearer $ws" -H "Content-Type: application/json" \
    -d '{"terminal": "T1", "patient_id": "DEMO-0001", "exam_number": "D1", "age": 61, "sex": "F"}' \
    "$srv_url/v1/exams")
echo "workstation opened: $exam"
"$bin" assist-terminal --server "$srv_url" --token "$t1" --source "examples/assist/frames/%04d.jpg" --fps 25 \
    --size 0 --trigger auto:3 --sobel-min 5 --out "$out/overlay.mp4" --log "$out/events.jsonl" >"$out/terminal.json"
echo "terminal: $(cat "$out/terminal.json")"
id=$(echo "$exam" | sed -n 's/.*"exam_id":"\([^"]*\)".*/\1/p')
echo "findings of exam $id (what the report workstation reads):"
curl -s -f -H "Authorization: Bearer $ws" "$srv_url/v1/exams/$id/findings" | tr '{' '\n' | grep '"type"' |
    sed 's/"probs":{[^}]*},//; s/,"thumbnail".*//' | head -n 20
kill -TERM $srv && wait $srv 2>/dev/null || true
trap - EXIT
"$bin" assist-server --verify-db "$out/findings.sqlite"
echo "overlaid video: $out/overlay.mp4; events: $out/events.jsonl; server log: $out/server.log"

real=${MI_SHARED_DATA:-../shared/data}/kvasir-seg-sample
boxes=${MI_SHARED_DATA:-../shared/data}/kvasir-seg-full/kavsir_bboxes.json
kvasir=weights/assist_det_kvasir.safetensors
if [ ! -d "$real/images" ] || [ ! -f "$kvasir" ]; then
    echo "($real or $kvasir is not here: the real-image part is skipped)"
    exit 0
fi
echo
echo "five real Kvasir-SEG colonoscopy images (test split) with the detector trained on 800 Kvasir-SEG images:"
k=$out/kvasir
mkdir -p "$k"
start_server "$kvasir" "$k"
sed -n 's/.*listening on [^:]*: //p' "$k/server.log"
exam=$(curl -s -f -H "Authorization: Bearer $ws" -H "Content-Type: application/json" \
    -d '{"terminal": "T1", "patient_id": "DEMO-0002", "exam_number": "D2", "age": 58, "sex": "M"}' "$srv_url/v1/exams")
id=$(echo "$exam" | sed -n 's/.*"exam_id":"\([^"]*\)".*/\1/p')
n=0
for f in "$real"/images/*.jpg; do
    n=$((n + 1))
    stem=$(basename "$f" .jpg)
    curl -s -f -H "Authorization: Bearer $t1" -H "Content-Type: image/jpeg" --data-binary "@$f" \
        "$srv_url/v1/frames?exam=$id&timestamp_ms=$((n * 1000))&trigger=pedal" > "$k/$stem.json"
    found=$(sed 's/"probs":{[^}]*},//g' "$k/$stem.json" | tr '{' '\n' |
        sed -n 's/^"type":"\([^"]*\)","score":\([0-9.]*\),"box":\[\([^]]*\)\].*/\1 \2 [\3]/p' | paste -sd ';' -)
    truth=$(grep -o "\"$stem\": {[^]]*]" "$boxes" 2>/dev/null |
        grep -o '"xmin": [0-9]*, "ymin": [0-9]*, "xmax": [0-9]*, "ymax": [0-9]*' |
        sed 's/"[a-z]*": //g; s/^/[/; s/$/]/' | paste -sd ';' -)
    echo "  $stem: found ${found:-nothing}; the expert's box ${truth:-?}"
done
{ curl -s -f -H "Authorization: Bearer $ws" "$srv_url/v1/exams/$id/findings"; echo; } | tr ',' '\n' |
    sed -n 's|^"thumbnail":"\(/v1/findings/\([0-9]*\)/thumbnail\)".*|\2 \1|p' | while read -r fid path; do
    curl -s -f -H "Authorization: Bearer $ws" "$srv_url$path" -o "$k/finding_$fid.jpg"
done
kill -TERM $srv && wait $srv 2>/dev/null || true
trap - EXIT
"$bin" assist-server --verify-db "$k/findings.sqlite"
echo "answers: $k/*.json; finding thumbnails (box drawn): $k/finding_*.jpg"
