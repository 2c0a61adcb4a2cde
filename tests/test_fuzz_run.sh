#!/bin/sh
# tests/test_fuzz_run.sh - fuzz/run.sh's report of a finding. CI keeps only the tail of its
# output, and a harness's log ends with the stack and the statistics, far below the line that
# says what broke. Two stand-in harnesses (shell scripts that print what a libFuzzer harness
# prints; no clang needed) run side by side, the one that fails first, as a harness does when
# the code under test breaks a promise (fuzz/fuzz.h): the run must fail, and its last lines must
# name that harness, the broken promise, libFuzzer's report and summary, and the input with a
# command that runs it again; a run where every harness passes must exit 0 and report nothing.
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/b/fuzz"
cat >"$tmp/b/fuzz/fuzz_bad" <<'EOF'
#!/bin/sh
prefix=
for a in "$@"; do case $a in -artifact_prefix=*) prefix=${a#-artifact_prefix=} ;; esac; done
echo "INFO: Seed: 1"
echo "#2	INITED cov: 7 ft: 7 corp: 1/4b exec/s: 0 rss: 30Mb"
echo "fuzz/fuzz_safetensors.c:40: fuzz check failed: !ok: accepted a header of 3 bytes"
echo "==77== ERROR: libFuzzer: deadly signal"
for i in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19; do echo "    #$i 0x5644fc67fbfd in frame$i"; done
echo "NOTE: libFuzzer has rudimentary signal handlers."
echo "SUMMARY: libFuzzer: deadly signal"
echo "MS: 0 ; base unit: 0000000000000000000000000000000000000000"
echo "0x4d,0x49,0x5,0x5,"
echo "artifact_prefix='$prefix'; Test unit written to ${prefix}crash-5803ec97"
echo "Base64: TUkFBQ=="
echo "stat::number_of_executed_units: 2"
exit 1
EOF
cat >"$tmp/b/fuzz/fuzz_ok" <<'EOF'
#!/bin/sh
i=0
while [ $i -lt 60 ]; do echo "#$i	NEW    cov: 99 ft: 99 corp: 9/99b exec/s: 999 rss: 40Mb"; i=$((i + 1)); done
echo "Done 999 runs in 1 second(s)"
EOF
cp "$tmp/b/fuzz/fuzz_ok" "$tmp/b/fuzz/fuzz_ok2"
chmod +x "$tmp/b/fuzz/fuzz_bad" "$tmp/b/fuzz/fuzz_ok" "$tmp/b/fuzz/fuzz_ok2"
fail=0

FUZZ_JOBS=2 sh fuzz/run.sh "$tmp/b" 1 bad ok >"$tmp/out" 2>&1
rc=$?
tail -n 9 "$tmp/out" >"$tmp/tail"
echo "--- last lines of a run where fuzz_bad fails (exit $rc):"
cat "$tmp/tail"
[ $rc -ne 0 ] || { echo "FAIL: the run exited 0 with a failed harness"; fail=1; }
for want in "fuzz_bad exited with status 1" "fuzz check failed: !ok: accepted a header of 3 bytes" \
    "ERROR: libFuzzer: deadly signal" "SUMMARY: libFuzzer: deadly signal" \
    "Test unit written to $tmp/b/findings/bad/crash-5803ec97" \
    "to run it again: echo TUkFBQ== | base64 -d >in && $tmp/b/fuzz/fuzz_bad in"; do
    grep -qF "$want" "$tmp/tail" || { echo "FAIL: the last lines do not say: $want"; fail=1; }
done
grep -q "fuzz_ok exited" "$tmp/out" && { echo "FAIL: fuzz_ok reported as failed"; fail=1; }
grep -q "Done 999 runs" "$tmp/out" || { echo "FAIL: fuzz_ok's log not printed"; fail=1; }

FUZZ_JOBS=2 sh fuzz/run.sh "$tmp/b" 1 ok ok2 >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 0 ] || { echo "FAIL: a run of passing harnesses exited $rc"; cat "$tmp/out"; fail=1; }
grep -q "exited with status" "$tmp/out" && { echo "FAIL: a passing run reported a failure"; fail=1; }
exit $fail
