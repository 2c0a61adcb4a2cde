#!/bin/sh
# tests/test_fuzz_replay.sh - every committed fuzz corpus fuzz/corpus/NAME/ through its harness
# fuzz/fuzz_NAME.c, built by the normal compiler with fuzz/replay.c in place of libFuzzer (next
# to $MI_BIN: build/fuzz/ under `make test`, the ASan+UBSan build-san/fuzz/ under `make check`).
# The seeds must still parse as before and every input that once crashed a parser must not again.
set -u
dir=$(dirname "${MI_BIN:-build/medinfer}")/fuzz
fail=0
n=0
for src in fuzz/fuzz_*.c; do
    name=${src#fuzz/fuzz_}
    name=${name%.c}
    n=$((n + 1))
    if [ ! -x "$dir/fuzz_$name" ]; then echo "FAIL: $dir/fuzz_$name is not built"; fail=1; continue; fi
    if [ ! -d "fuzz/corpus/$name" ]; then echo "FAIL: fuzz_$name has no corpus fuzz/corpus/$name"; fail=1; continue; fi
    if "$dir/fuzz_$name" "fuzz/corpus/$name"; then echo "ok: fuzz_$name"
    else echo "FAIL: fuzz_$name on fuzz/corpus/$name (exit $?)"; fail=1; fi
done
[ "$n" -gt 0 ] || { echo "FAIL: no fuzz/fuzz_*.c"; exit 1; }
exit $fail
