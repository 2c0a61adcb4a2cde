#!/bin/sh
# tools/install-deps.sh [build|test|fuzz] - install the Debian packages medinfer needs, only those missing.
# Called by the Makefile; safe to run again (does nothing when all are present).
set -eu

build="gcc make pkg-config libcjson-dev libstb-dev check
       libavformat-dev libavcodec-dev libswscale-dev libavutil-dev
       libsqlite3-dev libsodium-dev libcurl4-openssl-dev libdcmtk-dev libopenslide-dev libtiff-dev"
# PyTorch references for parity tests and benchmarks (never needed at run time)
# and the DICOM fixtures and synthetic echo studies (pydicom writes them, DCMTK's dcmcjpeg compresses),
# the pathology references (skimage's Otsu), synthetic pyramidal slides (tifffile writes them) and
# the 50 000-pixel test slide (vips builds it), and what OpenSlide returns through openslide-python
# (tests/ref_slide.py)
test="python3 python3-torch python3-torchvision python3-numpy python3-pil python3-pydicom dcmtk
      python3-skimage python3-tifffile python3-openslide libvips-tools"
# `make fuzz`: clang, its libFuzzer and sanitizer runtimes (only recommended by clang, so named
# here), and the OpenMP runtime clang links (not GCC's libgomp)
fuzz="clang libclang-rt-dev libomp-dev"

want=$build
[ "${1:-build}" = test ] && want="$build $test"
[ "${1:-build}" = fuzz ] && want="$build $fuzz"

missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing" >&2
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "install-deps: need root to install:$missing (apt-get install$missing)" >&2; exit 1
    fi
else SUDO=""; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
