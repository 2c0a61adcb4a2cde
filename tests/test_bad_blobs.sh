#!/bin/sh
# tests/test_bad_blobs.sh - the bad-blob corpus (tests/ref_bad_blobs.py) through the CLI: every
# refusal is an ordinary failure (exit 1) with a message naming the file, never a crash (a signal,
# exit >= 128) and never a sanitizer report. tests/test_bad_blobs.c checks the exact messages.
#   bad_*   `medinfer inspect` must refuse them
#   arch_*  well-formed blobs that do not fit resnet18: `inspect` shows them (exit 0), and
#           `medinfer classify --model` must refuse them
# Exit 0 pass, 77 skip, anything else fail. Env: MI_BIN, MI_FIXTURES (set by tests/run.sh).
set -u
bin=${MI_BIN:-build/medinfer}
dir=${MI_FIXTURES:-build/fixtures}/bad_blobs
[ -x "$bin" ] || { echo "no $bin (make it first)"; exit 77; }
[ -f "$dir/ok.safetensors" ] || { echo "no corpus in $dir (tests/ref_bad_blobs.py writes it)"; exit 77; }
err=$(mktemp); trap 'rm -f "$err"' EXIT
fails=0

# run WANT FILE CMD...: WANT is "fail" or "ok"; FILE must appear in the message of a failure
run() {
    want=$1; file=$2; shift 2
    "$@" >/dev/null 2>"$err"; rc=$?
    why=""
    if [ $rc -ge 128 ]; then why="crashed (exit $rc)"
    elif grep -q -e 'Sanitizer' -e 'runtime error:' "$err"; then why="sanitizer report"
    elif [ "$want" = fail ] && [ $rc -ne 1 ]; then why="exit $rc, expected 1"
    elif [ "$want" = fail ] && ! grep -qF "$file" "$err"; then why="message does not name the file"
    elif [ "$want" = ok ] && [ $rc -ne 0 ]; then why="exit $rc, expected 0"
    fi
    if [ -n "$why" ]; then
        echo "FAIL: $*: $why"; sed 's/^/    /' "$err" | head -n 20; fails=$((fails + 1))
    fi
}

n=0
for f in "$dir"/bad_*.safetensors; do run fail "$f" "$bin" inspect "$f"; n=$((n + 1)); done
for f in "$dir"/arch_*.safetensors "$dir"/ok*.safetensors; do run ok "$f" "$bin" inspect "$f"; done
run fail "$dir/missing.safetensors" "$bin" inspect "$dir/missing.safetensors"
run fail "$dir" "$bin" inspect "$dir"
echo "inspect: $n bad blobs refused"

# `classify` must refuse every blob `inspect` refuses, and the misfitting ones too; a CLI without
# it fails here rather than passing on `inspect` alone
img=$dir/ok.png
cls() { "$bin" classify --model "$1" "$img"; }
run ok "$dir/ok_resnet18.safetensors" cls "$dir/ok_resnet18.safetensors"
n=0
for f in "$dir"/bad_*.safetensors "$dir"/arch_*.safetensors; do run fail "$f" cls "$f"; n=$((n + 1)); done
echo "classify: $n bad and misfitting blobs refused"

[ $fails -eq 0 ] || { echo "$fails failures"; exit 1; }
