#!/bin/sh
# tests/run.sh DIR - run every test binary in DIR and every tests/test_*.sh, each line ending
# with the test's wall time (what CI's time goes on), then the whole run's time and one closing
# line "tests: N passed, N failed, N skipped".
# A C test that cannot run (missing ../shared/data, say) prints "MI-SKIP: <test>: <why>" and is
# counted as skipped, not passed; a script exits 77 to skip.
dir=$1
pass=0; fail=0; skip=0; failed=""
start=$(date +%s)
log=$(mktemp); trap 'rm -f "$log"' EXIT

for t in "$dir"/test_*; do
    case $t in *.o|*.d) continue ;; esac
    [ -x "$t" ] || continue
    name=$(basename "$t")
    t0=$(date +%s)
    CK_FORK=yes "$t" >"$log" 2>&1; rc=$?
    secs=$(($(date +%s) - t0))
    line=$(grep -E '^[0-9]+%: Checks: ' "$log" | tail -n 1)
    n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
    f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+), Errors: ([0-9]+).*/\1+\2/')
    s=$(grep -c '^MI-SKIP: ' "$log")
    if [ -z "$line" ]; then n=1; f=1; fi
    f=$(($f))
    [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
    pass=$((pass + n - f - s)); fail=$((fail + f)); skip=$((skip + s))
    if [ "$f" -ne 0 ]; then failed="$failed $name"; cat "$log"; echo "$name: FAILED (${secs} s)"; else
        echo "$name: $n checks, $s skipped, ${secs} s"; grep '^MI-SKIP: ' "$log"; fi
done

for t in tests/test_*.sh; do
    [ -f "$t" ] || continue
    [ -n "${MI_SANITIZE:-}" ] && grep -q '^# no-sanitize' "$t" && continue
    name=$(basename "$t")
    t0=$(date +%s)
    sh "$t" >"$log" 2>&1; rc=$?
    secs=$(($(date +%s) - t0))
    if [ $rc -eq 0 ]; then pass=$((pass + 1)); echo "$name: ok, ${secs} s"
    elif [ $rc -eq 77 ]; then skip=$((skip + 1)); echo "MI-SKIP: $name: $(tail -n 1 "$log")"
    else fail=$((fail + 1)); failed="$failed $name"; cat "$log"; echo "$name: FAILED (exit $rc, ${secs} s)"; fi
done

[ -n "$failed" ] && echo "failed:$failed"
echo "time: $(($(date +%s) - start)) s in all"
echo "tests: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
