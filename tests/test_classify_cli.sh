#!/bin/sh
# tests/test_classify_cli.sh - `medinfer classify` refuses what it cannot use, saying which option
# or file is wrong: every numeric option is parsed whole (no "3x" taken as 3, no "" as all
# cores), and a result whose audit row cannot be written is never printed.
# Env: MI_BIN, MI_FIXTURES (set by tests/run.sh).
set -u
bin=${MI_BIN:-build/medinfer}; fx=${MI_FIXTURES:-build/fixtures}
blob=$fx/resnet18_rand.safetensors
[ -x "$bin" ] && [ -f "$blob" ] || { echo "missing $bin or $blob"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
check() { if [ "$1" = 0 ]; then echo "ok   $2"; else echo "FAIL $2"; fails=$((fails + 1)); fi; }

# an input: a (3, 32, 32) float32 .npy
"${PYTHON:-/usr/bin/python3}" -c 'import sys, numpy; numpy.save(sys.argv[1], numpy.zeros((3, 32, 32), "<f4"))' "$tmp/x.npy"
"$bin" classify --model "$blob" "$tmp/x.npy" > "$tmp/out" 2> "$tmp/err"
check $? "the input classifies ($(cat "$tmp/err"))"

# bad_option OPTION VALUE: exit 2 and the message names the option and the value
bad_option() {
    "$bin" classify --model "$blob" "$1" "$2" "$tmp/x.npy" > "$tmp/out" 2> "$tmp/err"; rc=$?
    [ $rc -eq 2 ] && grep -q -- "$1 '$2'" "$tmp/err" && [ ! -s "$tmp/out" ]
    check $? "$1 '$2' is refused naming it (exit $rc)"
}
bad_option --threads 3x
bad_option --threads abc
bad_option --threads ""
bad_option --threads -1
bad_option --topk 0
bad_option --topk 2.5
bad_option --batch 0
bad_option --batch 257
"$bin" classify --model "$blob" --frobnicate "$tmp/x.npy" > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- "unknown option --frobnicate" "$tmp/err"; check $? "an unknown option is named (exit $rc)"
"$bin" classify "$tmp/x.npy" > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- "--model is required" "$tmp/err"; check $? "a missing --model is named (exit $rc)"
"$bin" classify --model "$blob" --topk > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- "--topk needs a value" "$tmp/err"; check $? "a missing value is named (exit $rc)"

# no result leaves without its audit record: an audit database that cannot be written
mkdir "$tmp/ro"; chmod 500 "$tmp/ro"
"$bin" classify --model "$blob" --audit "$tmp/ro/sub/audit.db" "$tmp/x.npy" > "$tmp/out" 2> "$tmp/err"; rc=$?
[ $rc -eq 31 ] && [ ! -s "$tmp/out" ]; check $? "an unwritable --audit withholds the result (exit $rc, $(wc -c < "$tmp/out") bytes out)"
"$bin" classify --model "$blob" --audit "$tmp/audit.db" "$tmp/x.npy" > "$tmp/out" 2> "$tmp/err"; rc=$?
[ $rc -eq 0 ] && [ -s "$tmp/out" ] && "$bin" audit verify "$tmp/audit.db" > /dev/null
check $? "a writable --audit lets it out, chain intact (exit $rc)"
[ $fails -eq 0 ]
