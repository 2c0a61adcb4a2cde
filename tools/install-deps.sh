#!/bin/sh
# tools/install-deps.sh [build|test|fuzz|bench|arm SYSROOT|static SRCDIR] - install the Debian packages medinfer needs, only those missing.
# Called by the Makefile; safe to run again (does nothing when all are present).
#
# arm SYSROOT: the aarch64 cross-build of the engine core and its unit tests (`make test-arm`,
# docs/arm.md). The cross compiler (with libgomp) and qemu-user come from the host's apt; the
# arm64 libraries the core and the tests link (cJSON, Check and its libsubunit) are downloaded as
# Debian's arm64 .debs through a private apt state under SYSROOT/.apt (its own sources list,
# package lists and status file, the host's keyring), and unpacked with dpkg -x into SYSROOT. The
# host's dpkg is never told about arm64 (no `dpkg --add-architecture`), so its own apt-get update
# is left as it was. Once SYSROOT/.done exists nothing is fetched again.
#
# static SRCDIR: `make static` (docs/arm.md). Debian ships cJSON as a shared library only, so its
# Debian source package (upstream source plus Debian's security patches, applied by dpkg-source)
# is fetched the same private way (a deb-src line in SRCDIR/.apt) and unpacked into SRCDIR/cjson;
# the Makefile compiles its one file into the binary.
set -eu

# curl (the command): the assistant's demo and tests open exams on the server with it
build="gcc make pkg-config libcjson-dev libstb-dev check
       libavformat-dev libavdevice-dev libavcodec-dev libswscale-dev libavutil-dev libmicrohttpd-dev
       libsqlite3-dev libsodium-dev libcurl4-openssl-dev libdcmtk-dev libopenslide-dev libtiff-dev
       curl"
# PyTorch references for parity tests and benchmarks (never needed at run time)
# and the DICOM fixtures and synthetic echo studies (pydicom writes them, DCMTK's dcmcjpeg compresses),
# the pathology references (skimage's Otsu), synthetic pyramidal slides (tifffile writes them) and
# the 50 000-pixel test slide (vips builds it), and what OpenSlide returns through openslide-python
# (tests/ref_slide.py), and headless Chromium for the endoscopy assistant's web view screenshot
# (tests/test_assist_term.sh)
test="python3 python3-torch python3-torchvision python3-numpy python3-pil python3-pydicom dcmtk
      python3-skimage python3-tifffile python3-openslide libvips-tools chromium"
# `make fuzz`: clang, its libFuzzer and sanitizer runtimes (only recommended by clang, so named
# here), and the OpenMP runtime clang links (not GCC's libgomp)
fuzz="clang libclang-rt-dev libomp-dev"

# `make bench`: the test packages (PyTorch is a peer there) and Node.js with npm, which install
# and run ONNX Runtime, the other peer (onnxruntime-node from npm into build/ort, by the Makefile).
# Node is asked for by command, not by package: a node and npm already on the PATH (NodeSource's
# nodejs, which bundles npm and conflicts with Debian's npm package) are used as they are.
bench_node="nodejs npm"

# aarch64 cross-build: host tools, then the arm64 libraries into the sysroot (below)
arm="gcc make gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user debian-archive-keyring"
arm_debs="libcjson1 libcjson-dev check libsubunit0 libsubunit-dev"

# dpkg-dev: dpkg-source unpacks the cJSON source package
static="$build dpkg-dev debian-archive-keyring"

want=$build
[ "${1:-build}" = static ] && want="$static"
[ "${1:-build}" = test ] && want="$build $test"
[ "${1:-build}" = fuzz ] && want="$build $fuzz"
[ "${1:-build}" = arm ] && want="$arm"
if [ "${1:-build}" = bench ]; then
    want="$build $test"
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || want="$want $bench_node"
fi

# The arm64 sysroot: apt-get download through a private state (no root needed for this part).
arm_sysroot() {
    root=$1
    [ -f "$root/.done" ] && return 0
    state="$root/.apt"
    rm -rf "$state" && mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/debs"
    : > "$state/status"
    key=/usr/share/keyrings/debian-archive-keyring.gpg
    {
        echo "deb [arch=arm64 signed-by=$key] http://deb.debian.org/debian bookworm main"
        echo "deb [arch=arm64 signed-by=$key] http://deb.debian.org/debian bookworm-updates main"
        echo "deb [arch=arm64 signed-by=$key] http://deb.debian.org/debian-security bookworm-security main"
    } > "$state/sources.list"
    set -- -o Dir::Etc::sourcelist="$state/sources.list" -o Dir::Etc::sourceparts=/nonexistent \
           -o Dir::State::lists="$state/lists" -o Dir::State::status="$state/status" \
           -o Dir::Cache="$state/cache" -o APT::Architecture=arm64 -o APT::Architectures::=arm64 \
           -o Debug::NoLocking=1 -o APT::Sandbox::User=root
    echo "install-deps: arm64 libraries into $root:$arm_debs" >&2
    apt-get "$@" -qq update
    # shellcheck disable=SC2086
    (cd "$state/debs" && apt-get "$@" -qq download $arm_debs)
    for d in "$state/debs"/*.deb; do dpkg -x "$d" "$root"; done
    touch "$root/.done"
}

# cJSON's Debian source package, patched, into SRCDIR/cjson (no root needed)
cjson_source() {
    root=$1
    [ -f "$root/cjson/.done" ] && return 0
    state="$root/.apt"
    rm -rf "$state" "$root/cjson" && mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/src"
    : > "$state/status"
    key=/usr/share/keyrings/debian-archive-keyring.gpg
    {
        echo "deb-src [signed-by=$key] http://deb.debian.org/debian bookworm main"
        echo "deb-src [signed-by=$key] http://deb.debian.org/debian-security bookworm-security main"
    } > "$state/sources.list"
    set -- -o Dir::Etc::sourcelist="$state/sources.list" -o Dir::Etc::sourceparts=/nonexistent \
           -o Dir::State::lists="$state/lists" -o Dir::State::status="$state/status" \
           -o Dir::Cache="$state/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root
    echo "install-deps: cJSON's Debian source package into $root/cjson" >&2
    apt-get "$@" -qq update
    (cd "$state/src" && apt-get "$@" -qq --download-only source cjson >/dev/null)
    dpkg-source -q -x "$state"/src/cjson_*.dsc "$root/cjson" >/dev/null
    touch "$root/cjson/.done"
}

missing=""
if [ "${1:-build}" = arm ] || [ "${1:-build}" = static ]; then
    [ -n "${2:-}" ] || { echo "install-deps: $1 needs a directory" >&2; exit 2; }
    case $2 in /*) sysroot=$2 ;; *) sysroot=$(pwd)/$2 ;; esac
fi
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    [ "${1:-build}" = arm ] && arm_sysroot "$sysroot"
    [ "${1:-build}" = static ] && cjson_source "$sysroot"
    exit 0
fi

echo "install-deps: installing:$missing" >&2
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "install-deps: need root to install:$missing (apt-get install$missing)" >&2; exit 1
    fi
else SUDO=""; fi
export DEBIAN_FRONTEND=noninteractive
# make runs one job per CPU: two sets (make test fuzz) may install at once, and apt takes one at a
# time. The lock is for that only: where its file cannot be opened (another user's), go on without.
lock=${TMPDIR:-/tmp}/medinfer-install-deps.lock
if { command exec 9>>"$lock" || command exec 9<"$lock"; } 2>/dev/null; then flock 9 || true; fi
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
[ "${1:-build}" = arm ] && arm_sysroot "$sysroot"
[ "${1:-build}" = static ] && cjson_source "$sysroot"
exit 0
