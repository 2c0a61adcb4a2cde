#!/bin/sh
# fuzz/run.sh BUILD SECONDS [NAME...] - run the libFuzzer harnesses BUILD/fuzz/fuzz_NAME (all of
# fuzz/fuzz_*.c when no NAME is given), one after the other, SECONDS each (`make fuzz`).
#
# Each reads its committed corpus fuzz/corpus/NAME/ and writes what it finds new to
# BUILD/fuzz-corpus/NAME/ (the first directory is libFuzzer's output), so the committed corpus
# changes only by hand. A crash, leak, timeout (> 10 s for one input) or out-of-memory is saved
# in BUILD/findings/NAME/ and stops the run with libFuzzer's exit status. To keep a finding as
# a regression input, fix the bug, then copy the file into fuzz/corpus/NAME/ under a name that
# says what it is; `make test` replays it from then on. $FUZZ_ARGS adds libFuzzer options
# (e.g. "-seed=1 -runs=1000000").
set -eu
b=$1
secs=$2
shift 2
if [ $# -eq 0 ]; then
    set -- $(for f in fuzz/fuzz_*.c; do n=${f#fuzz/fuzz_}; echo "${n%.c}"; done)
fi
for n in "$@"; do
    args="-timeout=10 -rss_limit_mb=2048 -print_final_stats=1"
    case $n in
        # stb_image's time grows with the pixels a header claims; small inputs keep the rate up
        image|assist_frame) args="$args -max_len=4096" ;;
        safetensors|manifest|assist_exam) args="$args -dict=fuzz/json.dict" ;;
    esac
    mkdir -p "$b/fuzz-corpus/$n" "$b/findings/$n"
    echo "fuzz/run.sh: fuzz_$n for ${secs}s" >&2
    # shellcheck disable=SC2086
    "$b/fuzz/fuzz_$n" -max_total_time="$secs" $args ${FUZZ_ARGS:-} -artifact_prefix="$b/findings/$n/" \
        "$b/fuzz-corpus/$n" "fuzz/corpus/$n"
done
