#!/bin/sh
# tools/assist_demo.sh [BUILD_DIR] - the real-time assistant part of `make demo`, on 127.0.0.1:
# one `medinfer assist-server` with the demo detector (weights/assist_det_demo.safetensors,
# synthetic training only) and a fresh findings database; the report workstation opens an exam for
# terminal T1 (curl); one `medinfer assist-terminal` plays examples/assist/frames (a synthetic
# 4-second sequence with two lesions, never used in training) in real time with a target every 3rd
# frame, and writes the overlaid MP4 and its events log. Then the exam's findings as the
# workstation reads them, and --verify-db over the database's hash chains. Needs the build and
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
# the example frames are smoother than real endoscopy (examples/assist/README.md): --sobel-min 5
# on both sides
"$bin" assist-server --model weights/assist_det_demo.safetensors --tokens "$out/tokens" --db "$out/findings.sqlite" \
    --port 0 --port-file "$out/port" --sobel-min 5 >"$out/server.out" 2>"$out/server.log" &
srv=$!
trap 'kill $srv 2>/dev/null; wait $srv 2>/dev/null' EXIT
i=0
while [ ! -s "$out/port" ]; do
    kill -0 $srv 2>/dev/null || { cat "$out/server.log"; exit 1; }
    i=$((i + 1)); [ $i -lt 600 ] || { echo "assist demo: the server did not start"; exit 1; }
    sleep 0.1
done
srv_url=http://127.0.0.1:$(cat "$out/port")
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
