#!/bin/sh
# tests/test_assist_server.sh - `medinfer assist-server` end to end over HTTP on 127.0.0.1 (a port
# the kernel picks): tests/assist_server_test.py says what is checked. A tiny random-weight
# detector is made in the test, so it needs PyTorch (skipped without it), not the demo blob.
#
# env: MI_BIN (medinfer), PYTHON (python3 with torch). Exit 0 pass, 77 skip, 1 fail.
bin=${MI_BIN:-build/medinfer}
py=${PYTHON:-/usr/bin/python3}
[ -x "$bin" ] || { echo "no medinfer binary at $bin"; exit 77; }
command -v "$py" >/dev/null 2>&1 || { echo "no $py"; exit 77; }
# the environment must not route 127.0.0.1 through a proxy
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$py" "$(dirname "$0")/assist_server_test.py" "$bin" "$T"
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 77 ] && { echo "server log:"; tail -n 40 "$T/server.log"; }
exit $rc
