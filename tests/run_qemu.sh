#!/bin/sh
# tests/run_qemu.sh DIR TEST... - run the aarch64 test programs DIR/test_TEST under qemu-user
# (`make test-arm`, docs/arm.md) and print one closing line "tests-arm: N passed, N failed,
# N skipped", counted as tests/run.sh counts them. MI_FIXTURES must name the native build's
# fixtures (the PyTorch references are not run under qemu).
#
# One CPU per program and passive waiting: under qemu-user an OpenMP team whose idle threads spin
# (libgomp's default) stalls on a shared 2-core machine, so each program is pinned to a CPU (taskset:
# omp_get_num_procs() is then 1, the engine's default thread count) and OMP_WAIT_POLICY=passive
# makes the threads that tests ask for explicitly (the 1/2/4-thread memcmp checks) sleep instead
# of spin. Check's per-test time limits are stretched for the emulation (CK_TIMEOUT_MULTIPLIER).
# Times printed here are qemu's, not measurements of any ARM machine.
dir=$1; shift
command -v qemu-aarch64 >/dev/null 2>&1 || { echo "run_qemu: no qemu-aarch64 (make test-arm installs qemu-user)"; exit 1; }
[ -d /usr/aarch64-linux-gnu/lib ] || { echo "run_qemu: no /usr/aarch64-linux-gnu (libc6-arm64-cross)"; exit 1; }
[ -n "${MI_FIXTURES:-}" ] || { echo "run_qemu: MI_FIXTURES is not set"; exit 1; }
pass=0; fail=0; skip=0; failed=""
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
# run NAME CPU: one program on one CPU; its output, exit status and seconds in $tmp/NAME.*
run() {
    t=$dir/test_$1
    if [ ! -x "$t" ]; then echo "test_$1: not built" > "$tmp/$1.log"; echo 1 > "$tmp/$1.rc"; echo 0 > "$tmp/$1.s"; return; fi
    t0=$(date +%s)
    CK_FORK=yes CK_TIMEOUT_MULTIPLIER=4 OMP_WAIT_POLICY=passive \
        taskset -c "$2" qemu-aarch64 -L /usr/aarch64-linux-gnu "$t" >"$tmp/$1.log" 2>&1
    echo $? > "$tmp/$1.rc"
    echo $(($(date +%s) - t0)) > "$tmp/$1.s"
}
# The longest program (the first named) runs on the second CPU while the rest take turns on the
# first; with one CPU they all take turns.
first=$1
if [ "$(nproc)" -ge 2 ]; then run "$first" 1 & bg=$!; shift; else bg=; fi
for name in "$@"; do run "$name" 0; done
[ -n "$bg" ] && { wait "$bg"; set -- "$first" "$@"; }
for name in "$@"; do
    log=$tmp/$name.log; rc=$(cat "$tmp/$name.rc"); secs=$(cat "$tmp/$name.s")
    line=$(grep -E '^[0-9]+%: Checks: ' "$log" | tail -n 1)
    n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
    f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+), Errors: ([0-9]+).*/\1+\2/')
    s=$(grep -c '^MI-SKIP: ' "$log")
    if [ -z "$line" ]; then n=1; f=1; fi
    f=$(($f))
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    pass=$((pass + n - f - s)); fail=$((fail + f)); skip=$((skip + s))
    if [ "$f" -ne 0 ]; then failed="$failed test_$name"; cat "$log"; echo "test_$name: FAILED (${secs} s under qemu)"
    else echo "test_$name: $n checks, $s skipped (${secs} s under qemu)"; grep -E '^MI-SKIP: |isa ' "$log" | head -n 3; fi
done
[ -n "$failed" ] && echo "failed:$failed"
echo "tests-arm: $pass passed, $fail failed, $skip skipped ($(($(date +%s) - start)) s under qemu)"
[ $fail -eq 0 ]
