#!/bin/sh
# fuzz/run.sh BUILD SECONDS [NAME...] - run the libFuzzer harnesses BUILD/fuzz/fuzz_NAME (all of
# fuzz/fuzz_*.c when no NAME is given), SECONDS each, $FUZZ_JOBS at a time (default: one per
# core; each harness is one process on one core, so two at a time on two cores find what one at
# a time would, in half the wall time) (`make fuzz`).
#
# Each reads its committed corpus fuzz/corpus/NAME/ and writes what it finds new to
# BUILD/fuzz-corpus/NAME/ (the first directory is libFuzzer's output), so the committed corpus
# changes only by hand. A crash, leak, timeout (> 10 s for one input) or out-of-memory is saved
# in BUILD/findings/NAME/ and stops the run, once the harnesses running beside it have ended, with
# libFuzzer's exit status. Each harness's output goes to BUILD/fuzz-logs/NAME.log and is printed
# when its batch ends, and the output then ends with what each failed harness found (report()).
# To keep a finding as a regression input, fix the bug, then copy the file into
# fuzz/corpus/NAME/ under a name that says what it is; `make test` replays it from then on.
# $FUZZ_ARGS adds libFuzzer options (e.g. "-seed=1 -runs=1000000").
set -eu
b=$1
secs=$2
shift 2
if [ $# -eq 0 ]; then
    # shellcheck disable=SC2046   # one word per harness name
    set -- $(for f in fuzz/fuzz_*.c; do n=${f#fuzz/fuzz_}; echo "${n%.c}"; done)
fi
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
mkdir -p "$b/fuzz-logs"

start() {
    n=$1
    args="-timeout=10 -rss_limit_mb=2048 -print_final_stats=1"
    case $n in
        # stb_image's time grows with the pixels a header claims; small inputs keep the rate up
        image|assist_frame) args="$args -max_len=4096" ;;
        safetensors|manifest|assist_exam) args="$args -dict=fuzz/json.dict" ;;
    esac
    mkdir -p "$b/fuzz-corpus/$n" "$b/findings/$n"
    echo "fuzz/run.sh: fuzz_$n for ${secs}s" >&2
    # shellcheck disable=SC2086
    ( rc=0
      "$b/fuzz/fuzz_$n" -max_total_time="$secs" $args ${FUZZ_ARGS:-} -artifact_prefix="$b/findings/$n/" \
          "$b/fuzz-corpus/$n" "fuzz/corpus/$n" >"$b/fuzz-logs/$n.log" 2>&1 || rc=$?
      echo "$rc" >"$b/fuzz-logs/$n.rc" ) &
}

# What a failed harness's log says of its finding, for the last lines of the output (all a CI
# page may keep): the broken promise or the sanitizer's report, its one-line summary, the file
# the input went to and the input itself (libFuzzer prints small ones in base64), with the line
# that runs it again through the same harness.
report() {
    n=$1
    log="$b/fuzz-logs/$n.log"
    echo "fuzz/run.sh: fuzz_$n exited with status $2; from $log:" >&2
    grep -E 'fuzz check failed: |ERROR: |runtime error: |^SUMMARY: |Test unit written to |^Base64: ' "$log" |
        head -n 12 | sed 's/^/    /' >&2
    b64=$(sed -n 's/^Base64: //p' "$log" | head -n 1)
    if [ -n "$b64" ]; then
        echo "fuzz/run.sh: to run it again: echo $b64 | base64 -d >in && $b/fuzz/fuzz_$n in" >&2
    else
        echo "fuzz/run.sh: to run it again: $b/fuzz/fuzz_$n FILE, FILE the input in $b/findings/$n/" >&2
    fi
}

# the harnesses of one batch: started together, then each one's log in order, then what each
# failed one found
finish() {
    wait
    status=0
    for n in "$@"; do cat "$b/fuzz-logs/$n.log" >&2; done
    for n in "$@"; do
        rc=$(cat "$b/fuzz-logs/$n.rc")
        if [ "$rc" -ne 0 ]; then
            report "$n" "$rc"
            status=$rc
        fi
    done
    [ "$status" -eq 0 ] || exit "$status"
}

batch=""
count=0
for n in "$@"; do
    start "$n"
    batch="$batch $n"
    count=$((count + 1))
    if [ "$count" -ge "$jobs" ]; then
        # shellcheck disable=SC2086
        finish $batch
        batch=""
        count=0
    fi
done
# shellcheck disable=SC2086
[ -z "$batch" ] || finish $batch
