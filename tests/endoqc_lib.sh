# tests/endoqc_lib.sh - sourced by the tests/test_endoqc*.sh scripts: the binary, the demo blob,
# a scratch folder removed on exit, and the two assertion helpers they share.
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
