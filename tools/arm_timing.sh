#!/bin/sh
# tools/arm_timing.sh - time ResNet-18 / ResNet-50 on a real ARM board (docs/arm.md).
#
#   On the build machine (x86-64 Debian 12, repository root):
#     make CROSS=aarch64-linux-gnu build-aarch64/bench_engine
#     python3 tools/export.py --arch resnet18 --random --num-classes 1000 --out build-aarch64/resnet18.safetensors
#     python3 tools/export.py --arch resnet50 --random --num-classes 1000 --out build-aarch64/resnet50.safetensors
#     scp tools/arm_timing.sh build-aarch64/bench_engine build-aarch64/resnet*.safetensors \
#         build-aarch64/sysroot/usr/lib/aarch64-linux-gnu/libcjson.so.1* board:medinfer/
#   On the board (any aarch64 Linux with glibc and libgomp; Debian/Raspberry Pi OS/Ubuntu):
#     cd medinfer && sh arm_timing.sh
#   or, building natively on an aarch64 Debian board with the repository:
#     make build/bench_engine && sh tools/arm_timing.sh build/bench_engine DIR_WITH_BLOBS
#
# For each network, thread count (1, 2, 4, and the core count if larger) and mode (the default
# NEON kernels; MI_EXACT=1, the bits of every other CPU) it runs bench_engine (5 warm-up runs, then
# ITERS timed ones at batch 1, 224 x 224) and prints the median and 90th percentile in ms, then the
# published anchors for comparison: ncnn's ResNet-50 at 4 threads, 46 ms on a Raspberry Pi 5 and
# 54 ms on an RK3588 (big cores). Run it on an idle board, cooled: a throttling SoC slows down
# within seconds. Times under qemu-user are emulation, not measurements; this script refuses to
# run under it.
set -eu
bench=${1:-./bench_engine}
dir=${2:-.}
iters=${ITERS:-30}
[ -x "$bench" ] || { echo "arm_timing: $bench is not an executable (bench_engine, see the header)" >&2; exit 2; }
[ "$(uname -m)" = aarch64 ] || { echo "arm_timing: this is $(uname -m), not an aarch64 board" >&2; exit 2; }
# qemu-user answers uname with aarch64 but passes the x86 host's /proc/cpuinfo through
grep -qiE 'qemu|GenuineIntel|AuthenticAMD' /proc/cpuinfo 2>/dev/null &&
    { echo "arm_timing: running under emulation on an x86 host: not a measurement" >&2; exit 2; }
export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"   # libcjson.so.1 copied beside
cores=$(nproc)
threads="1 2 4"
[ "$cores" -gt 4 ] && threads="$threads $cores"
model=$(tr -d '\0' < /proc/device-tree/model 2>/dev/null || grep -m1 -i 'model name\|Hardware' /proc/cpuinfo | cut -d: -f2)
echo "board: ${model:-unknown}, $cores cores, $(uname -r)"
printf '%-9s %-7s %-7s %10s %10s\n' network threads mode median_ms p90_ms
for net in resnet18 resnet50; do
    blob=$dir/$net.safetensors
    [ -f "$blob" ] || { echo "arm_timing: $blob missing (see the header)" >&2; exit 2; }
    for t in $threads; do
        for mode in neon exact; do
            if [ $mode = exact ]; then out=$(MI_EXACT=1 "$bench" "$blob" "$t" "$iters"); else out=$("$bench" "$blob" "$t" "$iters"); fi
            med=$(echo "$out" | sed -E 's/.*"median_ms": *([0-9.]+).*/\1/')
            p90=$(echo "$out" | sed -E 's/.*"p90_ms": *([0-9.]+).*/\1/')
            printf '%-9s %-7s %-7s %10s %10s\n' "$net" "$t" "$mode" "$med" "$p90"
        done
    done
done
echo "anchors (ncnn, ResNet-50, 4 threads): Raspberry Pi 5 46 ms, RK3588 54 ms"
