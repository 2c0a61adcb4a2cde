#!/bin/sh
# tools/echo_demo.sh [BUILD_DIR] - the echo part of `make demo`: `medinfer echo` with the shipped
# demo blobs on the three synthetic M-mode studies in examples/echo (seed 3, never used in
# training): each DICOM (calibrated by its ultrasound region: EF, volumes, heart rate), then one
# of the same strips as PNG (no calibration: pixel measures and FS only, and a note saying so).
# Prints medinfer's summary lines beside the ground truth, and where the report and the annotated
# images are.
set -eu
B=${1:-build}
bin=$B/medinfer
out=$B/demo/echo
mkdir -p "$out"
models="--detector weights/echo_cycle_demo.safetensors --points weights/echo_points_demo.safetensors"

echo "echo demo: three synthetic M-mode studies (DICOM with ultrasound regions)"
for j in examples/echo/*.json; do
    printf '  %s: ground truth EF per cycle %s %%\n' "$(basename "$j" .json)" \
        "$(grep -o '"EF": [0-9.]*' "$j" | sed 's/"EF": //' | paste -sd/ -)"
done
status=0
# shellcheck disable=SC2086
"$bin" echo $models --out "$out/report_dicom.json" --annotate "$out" examples/echo/*.dcm || status=$?
echo
echo "the first study as PNG, without a calibration:"
# shellcheck disable=SC2086
"$bin" echo $models --out "$out/report_png.json" --annotate "$out" "$(ls examples/echo/*.png | head -n 1)" || status=$?
echo
echo "reports: $out/report_dicom.json $out/report_png.json"
echo "annotated images: $out/*.echo.png"
exit $status
