#!/bin/sh
# no-sanitize (a few hundred tiles per slide under ASan say nothing the small tests do not)
# tests/test_patho_demo.sh - the shipped demo blobs on synthetic slides of a seed that neither the
# training (1), its held-out measurement (1000) nor the examples (7) use: 8 slides, two per class,
# generated here by tools/patho_synth.py, classified by `medinfer patho`, scored by
# tools/patho_eval.py (which shares no code with the pipeline): at least 7 of 8 correct. The
# 40-slide figure is in docs/patho.md.
set -u
bin=${MI_BIN:-build/medinfer}
py=${PYTHON:-/usr/bin/python3}
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail() { echo "test_patho_demo: $*"; exit 1; }
"$py" tools/patho_synth.py --seed 11 --count 8 --out "$t/s" >/dev/null || fail "patho_synth failed"
"$bin" patho --vnet weights/patho_vnet_demo.safetensors --gcn weights/patho_gcn_demo.safetensors --quiet \
    --out "$t/r.json" "$t"/s/*.tif
rc=$?
[ $rc -eq 0 ] || fail "exit $rc"
"$py" tools/patho_eval.py "$t/s" "$t/r.json" --min-accuracy 0.875 || fail "fewer than 7 of 8 slides right"
echo "test_patho_demo: passed"
