#!/bin/sh
# tests/test_isa_env.sh - MI_ISA is checked before any command runs: a value that names no ISA
# (a typo would otherwise silently mean "no cap", and a test meant for the scalar kernels would
# run the widest ones) is refused with exit 2 and a message naming MI_ISA, the value and the
# accepted ones; the accepted values (any case) and an empty MI_ISA run as before.
set -u
bin=${MI_BIN:-build/medinfer}
blob=weights/endoqc_sites_demo.safetensors
[ -x "$bin" ] || { echo "no $bin (make it first)"; exit 77; }
err=$(mktemp); out=$(mktemp); trap 'rm -f "$err" "$out"' EXIT
fails=0
for bad in avx3 AVX-512 scalar " ref" "ref,avx2"; do
    for cmd in "inspect $blob" "--version"; do
        MI_ISA=$bad "$bin" $cmd > "$out" 2> "$err"; rc=$?
        if [ $rc -ne 2 ] || [ -s "$out" ] || ! grep -qF "MI_ISA='$bad'" "$err" || ! grep -qF "ref, portable, neon, avx2, avx512" "$err"; then
            echo "FAIL: MI_ISA='$bad' medinfer $cmd: exit $rc, expected 2 with a message and no output"
            cat "$err"; fails=$((fails + 1))
        fi
    done
done
for good in ref REF portable avx2 Avx512 neon ""; do
    MI_ISA=$good "$bin" inspect "$blob" > "$out" 2> "$err"; rc=$?
    [ $rc -eq 0 ] && grep -q "^sha256:" "$out" || { echo "FAIL: MI_ISA='$good': exit $rc"; cat "$err"; fails=$((fails + 1)); }
done
[ $fails -eq 0 ] || exit 1
echo "test_isa_env: unknown MI_ISA values refused, known ones accepted"
