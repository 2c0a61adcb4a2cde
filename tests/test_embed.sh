#!/bin/sh
# tests/test_embed.sh - the public API as an integrator uses it, from the tree `make install`
# wrote (build/stage): examples/embed.c (built by the Makefile through pkg-config only) must give
# `medinfer classify`'s top-5 on the same image, a program compiled here with nothing but
# `pkg-config --cflags --libs medinfer` must print `classify --logits`'s logits bit for bit on a
# non-square tensor, and the shared library must export nothing include/medinfer.h does not
# declare. Env: MI_BIN, MI_EMBED, MI_LIB, MI_FIXTURES, PYTHON (set by make test).
set -u
bin=${MI_BIN:-build/medinfer}; embed=${MI_EMBED:-build/embed}; lib=${MI_LIB:-build/libmedinfer.so}
fx=${MI_FIXTURES:-build/fixtures}; py=${PYTHON:-/usr/bin/python3}
stage=$(dirname "$embed")/stage
blob=$fx/resnet18_rand.safetensors
for f in "$bin" "$embed" "$lib" "$blob" "$stage/lib/pkgconfig/medinfer.pc"; do
    [ -e "$f" ] || { echo "missing $f (make test builds it)"; exit 1; }
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
check() { if [ "$1" = 0 ]; then echo "ok   $2"; else echo "FAIL $2"; fails=$((fails + 1)); fi; }

# an image both read the same way (PNG, decoded by stb_image in both)
"$py" - "$tmp" <<'PY'
import sys, numpy as np
from PIL import Image
rng = np.random.default_rng(5)
img = (rng.random((180, 240, 3)) * 255).astype(np.uint8)
Image.fromarray(img).save(sys.argv[1] + "/img.png")
x = rng.standard_normal((1, 3, 96, 128)).astype("<f4")
np.save(sys.argv[1] + "/x.npy", x)
x.tofile(sys.argv[1] + "/x.f32")
PY

"$embed" "$blob" "$tmp/img.png" > "$tmp/embed.txt"; check $? "embed runs"
"$bin" classify --model "$blob" "$tmp/img.png" > "$tmp/classify.json"; check $? "classify runs"
"$py" -c '
import json, sys
top = json.loads(open(sys.argv[1]).read())["top"]
print("\n".join("%d %s %s" % (t["index"], t["probability"], t["label"]) for t in top))' \
    "$tmp/classify.json" > "$tmp/classify.txt"
cmp -s "$tmp/embed.txt" "$tmp/classify.txt"; check $? "embed's top-5 equals classify's (indices, probabilities, labels)"
[ "$(wc -l < "$tmp/embed.txt")" -eq 5 ]; check $? "five classes printed"

export PKG_CONFIG_PATH="$stage/lib/pkgconfig"
${CC:-cc} -o "$tmp/logits" tests/api/pkgconfig_logits.c $(pkg-config --cflags --libs medinfer) 2> "$tmp/cc.err"
check $? "a program builds with pkg-config --cflags --libs medinfer alone"
"$tmp/logits" "$blob" "$tmp/x.f32" 96 128 > "$tmp/lib.txt"; check $? "it runs (1, 3, 96, 128) from the installed shared library"
ldd "$tmp/logits" | grep -q "$stage/lib/libmedinfer.so"; check $? "it links the installed libmedinfer.so"
"$bin" classify --logits --model "$blob" "$tmp/x.npy" | "$py" -c '
import json, sys
print("\n".join(json.loads(sys.stdin.read(), parse_float=str)["logits"]))' > "$tmp/cli.txt"
cmp -s "$tmp/lib.txt" "$tmp/cli.txt"; check $? "its logits equal classify --logits bit for bit ($(wc -l < "$tmp/lib.txt") logits)"

# exported symbols: each must be declared in the one public header
bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ { print $3 }' | while read -r s; do
    grep -q "\b$s\b" include/medinfer.h || echo "$s"; done)
[ -z "$bad" ]; check $? "libmedinfer.so exports only medinfer.h's symbols${bad:+ (also: $bad)}"
n=$(nm -D --defined-only "$lib" | awk '$2 == "T"' | wc -l)
[ "$n" -ge 20 ]; check $? "and it exports the API ($n functions)"
[ $fails -eq 0 ]
