#!/bin/sh
# tools/lesionseg_demo.sh [BUILD_DIR] - the lesion segmentation part of `make demo`: `medinfer
# lesionseg` with the shipped demo blobs on the synthetic endoscopy images in
# examples/lesionseg/images (tools/lesionseg_synth.py, seed 5000, which the training never saw;
# their true masks in examples/lesionseg/truth), then on the five real Kvasir-SEG polyp images in
# ../shared/data/kvasir-seg-sample when they are there, with the segmenter trained on real images
# (weights/lesionseg_seg_kvasir.safetensors, tools/train_kvasir_seg.py: 800 Kvasir-SEG images;
# these five are in its test split, it never saw them; docs/lesionseg_kvasir.md has its scores).
# The synthetic blob stays for the synthetic frames: it is the one with known ground truth there.
# medinfer's own summary lines give each image's lesion share and its Dice against the known
# mask. Neither model is a medical device, and the reports say so. Last, a video: a 4-second synthetic gastroscopy rendered by `medinfer
# endoqc-synth` (not what the demo models were trained on: it shows the video mechanics - every
# 5th frame segmented, an overlay MP4 at fps / 5, each frame's time and components in the report).
# Needs the build only (no Python).
set -eu
B=${1:-build}
bin=$B/medinfer
out=$B/demo/lesionseg
mkdir -p "$out"
ex=examples/lesionseg

echo "lesionseg demo: $(ls "$ex/images" | wc -l) synthetic endoscopy images (seed 5000, never used in training)"
status=0
"$bin" lesionseg --out-dir "$out" --truth "$ex/truth" --out "$out/report_synthetic.json" "$ex/images" || status=$?
real=../shared/data/kvasir-seg-sample
kvasir=weights/lesionseg_seg_kvasir.safetensors
if [ -d "$real/images" ] && [ -f "$kvasir" ]; then
    echo
    echo "five real Kvasir-SEG polyp images (test split) with the segmenter trained on 800 Kvasir-SEG images:"
    "$bin" lesionseg --seg-model "$kvasir" --out-dir "$out" --truth "$real/masks" --out "$out/report_kvasir.json" \
        "$real/images" || status=$?
elif [ -d "$real/images" ]; then
    echo
    echo "five real Kvasir-SEG polyp images ($kvasir is absent: the synthetic demo model, which knows no real image):"
    "$bin" lesionseg --out-dir "$out" --truth "$real/masks" --out "$out/report_kvasir.json" "$real/images" || status=$?
else
    echo "($real is not here: the real-image run is skipped)"
fi
echo
echo "a synthetic gastroscopy video (the mechanics only: the models know colonoscopy frames):"
"$bin" endoqc-synth --out "$out/video.mp4" --size 320x240 --skip 3-26 --dwell 2 --no-events --seed 5 2>/dev/null
"$bin" lesionseg --every 5 --video-out "$out/video_overlay.mp4" --out "$out/report_video.json" "$out/video.mp4" ||
    status=$?
echo
echo "reports: $out/report_*.json"
echo "pictures: $out/<image>_mask.png (the mask), _overlay.png (the lesion over the image),"
echo "          _depth.png (turbo colours: dark blue 0 cm, near; dark red 20 cm, far);"
echo "          the overlaid video: $out/video_overlay.mp4"
exit $status
