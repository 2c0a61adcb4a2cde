# tests/endoqc_lib.sh - sourced by the tests/test_endoqc*.sh scripts: the binary, the demo blob,
# a scratch folder removed on exit, and the assertion helpers they share.
BIN=${MI_BIN:-build/medinfer}
PY=${PYTHON:-python3}
MODEL=weights/endoqc_sites_demo.safetensors
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# check FILE PYTHON-EXPR MESSAGE: the expression sees the JSON report as r; on failure the start
# of the report is shown
check() {
    "$PY" -c "import json, sys; r = json.load(open(sys.argv[1])); sys.exit(0 if ($2) else 1)" "$1" \
        || { head -c 3000 "$1"; echo; fail "$3 ($(basename "$1"))"; }
}
# same_report A.json B.json MESSAGE: two reports equal in every field but the timings and the
# creation time (e.g. decoding on its own thread, and on the network's: --no-decode-thread)
same_report() {
    "$PY" - "$1" "$2" <<'EOF' || fail "$3"
import json, sys
def load(p):
    r = json.load(open(p))
    del r["timing_ms"], r["provenance"]["created"]
    return r
a, b = load(sys.argv[1]), load(sys.argv[2])
for k in sorted(set(a) | set(b)):
    if a.get(k) != b.get(k):
        print(f"{k}: {json.dumps(a.get(k))[:400]}\n  vs {json.dumps(b.get(k))[:400]}")
sys.exit(0 if a == b else 1)
EOF
}
