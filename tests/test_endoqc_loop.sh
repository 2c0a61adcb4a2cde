#!/bin/sh
# no-sanitize: a dozen full videos through ResNet-18 under ASan would take most of the CI budget;
# the code the loop adds (pipelines/trust staging, the self-check rule) runs under the sanitizers
# in tests/test_trust.sh and tests/test_endoqc.c.
# tests/test_endoqc_loop.sh - the endoqc model-quality loop end to end against a local update
# server (tests/test_trust_server.py): a batch that drifts stages the newer signed model the
# server offers, runs the labelled reference set through it, and activates it only when it agrees
# with the labels at least as well as the current model; otherwise the current model stays and
# the staged one is set aside with the reason, and is not staged again. The batch summary and the
# audit log say which and why, in order. A replayed (older) or unauthorized model is refused as
# `medinfer model update` refuses it. A process killed with SIGKILL while downloading or during
# the self-check, and a machine stopped between the two renames of an activation, leave a model
# dir whose model loads and verifies, and the next run finishes the job.
#
# The models are the demo site classifier with their metadata rewritten and, for the drifted
# one, its fundus outputs pushed down (it never sees the fundus, so complete exams come out
# incomplete):
#   1.0.0 drifted                      reference accuracy 2/3 (the complete exam is called incomplete)
#   2.0.0 drifted + site threshold 0   1/3 (everything complete): worse, must be rejected
#   3.0.0 the demo weights             3/3: better, must be activated
#   4.0.0 the demo weights again       3/3: equal, activated (after the kills)
set -u
. "$(dirname "$0")/endoqc_lib.sh"
PY=${PYTHON:-/usr/bin/python3}
[ -f "$MODEL" ] || fail "$MODEL is missing"
"$PY" -c 'import sqlite3' 2>/dev/null || { echo "python3 with sqlite3 needed"; exit 77; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
MODEL=$(pwd)/$MODEL
here=$(cd "$(dirname "$0")" && pwd)
unset MEDINFER_TRUST http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
srv_pid=""
trap '[ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null; rm -rf "$T"' EXIT
cd "$T" || exit 1
sql() { "$PY" -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "$@"; }

# ---- videos, keys, models ------------------------------------------------------------------------
"$BIN" endoqc-synth --seed 21 --dwell 2.5 --out a_complete.mp4 2>/dev/null || fail "render a"
"$BIN" endoqc-synth --seed 22 --dwell 2.5 --skip fundus --out b_nofundus.mp4 2>/dev/null || fail "render b"
"$BIN" endoqc-synth --seed 23 --dwell 2.5 --skip antrum --out c_noantrum.mp4 2>/dev/null || fail "render c"
printf 'a_complete.mp4\nb_nofundus.mp4\nc_noantrum.mp4\n' > list.txt
printf 'video,label\na_complete.mp4,complete\nb_nofundus.mp4,incomplete\nc_noantrum.mp4,incomplete\n' > refs.csv
"$BIN" model keygen --out vendor >/dev/null || fail "keygen"
mkdir -p srv/blobs
"$PY" - "$MODEL" srv/blobs <<'EOF' || fail "making the test models"
import json, struct, sys
src, out = sys.argv[1], sys.argv[2]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
data = bytearray(raw[8 + n:])
labels = json.loads(header["__metadata__"]["labels"])
def write(version, drifted, extra):
    h = json.loads(json.dumps(header))
    d = bytearray(data)
    meta = h["__metadata__"]
    meta.update(model_version=version, name="endoqc-sites", **extra)
    if drifted:
        t = h["fc.bias"]
        assert t["dtype"] == "F16"
        lo = t["data_offsets"][0]
        for i, lab in enumerate(labels):
            if lab.startswith("fundus_"):
                struct.pack_into("<e", d, lo + 2 * i, -60.0)
    hb = json.dumps(h).encode()
    hb += b" " * (-len(hb) % 8)
    open(f"{out}/m-{version}.safetensors", "wb").write(struct.pack("<Q", len(hb)) + hb + bytes(d))
write("1.0.0", True, {})
write("2.0.0", True, {"endoqc_site_threshold": "0"})
write("3.0.0", False, {})
write("4.0.0", False, {})
EOF
for v in 1.0.0 2.0.0 3.0.0 4.0.0; do
    "$BIN" model sign --key vendor.key srv/blobs/m-$v.safetensors >/dev/null || fail "sign $v"
done
HW=$("$BIN" model hwcode) || fail "hwcode"
# manifest DIR K BLOB [key=value ...]: the K-th answer of /seq/DIR/manifest.json
manifest() {
    "$PY" - srv "$HW" "$@" <<'EOF'
import hashlib, json, os, sys
srv, hw, d, k, blob, *kv = sys.argv[1:]
sig = dict(l.split(": ", 1) for l in open(f"{srv}/blobs/{blob}.sig").read().splitlines()[1:])
data = open(f"{srv}/blobs/{blob}", "rb").read()
m = {"format": "medinfer-manifest-v1", "model": "endoqc-sites", "model_version": sig["model-version"],
     "released": "2026-12-01T12:00:00Z", "blob_url": f"/blobs/{blob}", "size": len(data),
     "sha256": hashlib.sha256(data).hexdigest(), "key_id": sig["key-id"],
     "signature": sig["signature"], "hardware": [hw]}
for a in kv:
    key, v = a.split("=", 1)
    m[key] = json.loads(v)
os.makedirs(f"{srv}/{d}", exist_ok=True)
json.dump(m, open(f"{srv}/{d}/manifest.{k}.json", "w"), indent=1)
EOF
}
manifest install 1 m-1.0.0.safetensors
# run 1: nothing newer before the batch, the worse 2.0.0 when it drifts
manifest run1 1 m-1.0.0.safetensors
manifest run1 2 m-2.0.0.safetensors
# run 2: 2.0.0 again before the batch (rejected here already), the better 3.0.0 when it drifts
manifest run2 1 m-2.0.0.safetensors
manifest run2 2 m-3.0.0.safetensors
# run 3: a replay of the old 1.0.0, then 4.0.0 without this machine's hardware code
manifest run3 1 m-1.0.0.safetensors
manifest run3 2 m-4.0.0.safetensors 'hardware=["0000-1111-2222-3333"]'
# run 4: 4.0.0 through a download that stalls half-way (the process is killed there)
manifest run4 1 m-4.0.0.safetensors 'blob_url="/stall/blobs/m-4.0.0.safetensors"'
# run 5 and 6: 4.0.0 (killed during its self-check, then finished)
manifest run5 1 m-4.0.0.safetensors
manifest run6 1 m-4.0.0.safetensors

"$PY" "$here/test_trust_server.py" srv port 2>server.log &
srv_pid=$!
i=0
while [ ! -s port ]; do   # waits for the port file; bounded only to fail cleanly
    i=$((i + 1)); [ $i -gt 600 ] && { cat server.log; fail "test server did not start"; }
    sleep 0.1
done
URL=http://127.0.0.1:$(cat port)

D=$T/models
"$BIN" model update --pubkey vendor.pub --model-dir "$D" --quiet --server "$URL/seq/install" >/dev/null \
    || fail "installing 1.0.0"
# active VERSION: what endoqc loads from the model dir is VERSION, and it verifies
active() {
    "$BIN" model verify --pubkey vendor.pub "$D/model.safetensors" > verify.out 2>&1 \
        || { cat verify.out; fail "the model dir's model does not verify ($2)"; }
    grep -q "model_version $1," verify.out || { cat verify.out; fail "active model is not $1 ($2)"; }
}
active 1.0.0 "installed"
loop() {  # RUN OUT [options]: one batch with the loop on; exit status in $rc
    run=$1; out=$2; shift 2
    "$BIN" endoqc --quiet --model-dir "$D" --pubkey vendor.pub --update-server "$URL/seq/$run" \
        --batch list.txt --reference refs.csv --drift-min-exams 3 --db r.sqlite --audit audit.db --out "$out" "$@"
    rc=$?
}
loop_bg() {  # RUN OUT: the same batch in the background, $pid the medinfer process itself
    "$BIN" endoqc --quiet --model-dir "$D" --pubkey vendor.pub --update-server "$URL/seq/$1" \
        --batch list.txt --reference refs.csv --drift-min-exams 3 --db r.sqlite --audit audit.db --out "$2" &
    pid=$!
}

# ---- run 1: drift, the staged model is worse: the old one stays ---------------------------------
loop run1 r1.json
[ "$(cat srv/run1/served)" = 2 ] || fail "run 1 should have asked the server twice"
[ $rc -eq 3 ] || fail "run 1: exit $rc, expected 3 (drift, no better model)"
check r1.json 'r["drift"]["alerted"] and r["model_update_required"] and r["drift"]["reference_predicted_share"] == 1.0' "run 1 drifted"
check r1.json '[p["trigger"] for p in r["model_update"]["passes"]] == ["before batch", "drift"]' "run 1: a pass before the batch and one on drift"
check r1.json '[p["outcome"] for p in r["model_update"]["passes"]] == ["up_to_date", "rejected"]' "run 1 outcomes"
check r1.json '[s["step"] + ":" + s["outcome"] for s in r["model_update"]["passes"][1]["steps"]] == ["check:staged", "selfcheck:failed", "reject:rejected"]' "run 1 steps"
check r1.json 'r["model_update"]["passes"][1]["steps"][1]["result"]["staged_agree"] == 1 and r["model_update"]["passes"][1]["steps"][1]["result"]["current_agree"] == 2' "run 1 self-check counts"
check r1.json '"1/3 = 0.3333 < the bar 0.6667 (current model)" in r["model_update"]["passes"][1]["steps"][2]["reason"]' "run 1 reason"
check r1.json 'r["model_update"]["active_model_version"] == "1.0.0" and r["provenance"]["model_version"] == "1.0.0"' "run 1 keeps 1.0.0"
active 1.0.0 "after the rejected update"
[ -L "$D/rejected" ] && [ ! -e "$D/staged" ] || fail "run 1: 2.0.0 must be set aside as rejected, nothing staged"
grep -q '1/3' "$D/rejected/selfcheck.json" || fail "run 1: the rejected model's record lacks the reason"

# ---- run 2: 2.0.0 is not staged again; drift, the staged 3.0.0 is better: activated ---------------
loop run2 r2.json
[ $rc -eq 0 ] || fail "run 2: exit $rc, expected 0 (drift, better model activated)"
check r2.json '[p["outcome"] for p in r["model_update"]["passes"]] == ["rejected_earlier", "activated"]' "run 2 outcomes"
check r2.json '[s["step"] + ":" + s["outcome"] for s in r["model_update"]["passes"][1]["steps"]] == ["check:staged", "selfcheck:passed", "activate:activated"]' "run 2 steps"
check r2.json '"3/3 = 1.0000 >= the bar 0.6667 (current model)" in r["model_update"]["passes"][1]["steps"][2]["reason"]' "run 2 reason"
check r2.json 'r["model_update"]["activated_after_drift"] and r["model_update"]["active_model_version"] == "3.0.0" and r["provenance"]["model_version"] == "1.0.0"' "run 2: exams judged by 1.0.0, 3.0.0 active after"
active 3.0.0 "after the activation"
# the audit log: every step, in order, and the chain intact
"$PY" - audit.db <<'EOF' || fail "audit rows of the loop"
import json, sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute(
    "SELECT model_version, result FROM audit_log WHERE command = 'endoqc-model-update' ORDER BY seq").fetchall()
got = [(v, json.loads(r)["step"], json.loads(r)["outcome"]) for v, r in rows]
want = [("1.0.0", "check", "up_to_date"), ("1.0.0", "check", "staged"), ("2.0.0", "selfcheck", "failed"),
        ("2.0.0", "reject", "rejected"), ("1.0.0", "check", "rejected_earlier"), ("1.0.0", "check", "staged"),
        ("3.0.0", "selfcheck", "passed"), ("3.0.0", "activate", "activated")]
if got != want:
    sys.exit(f"audit rows {got}\n      expected {want}")
EOF
"$BIN" audit verify audit.db >/dev/null || fail "audit chain"
[ "$(sql r.sqlite "SELECT count(*) FROM exams WHERE role = 'selfcheck'")" -eq 6 ] || fail "self-check exams stored (3 per staged model)"

# ---- run 3: a replayed older model and an unauthorized one are refused, 3.0.0 stays ----------------
loop run3 r3.json
[ $rc -eq 0 ] || fail "run 3: exit $rc, expected 0 (no drift with 3.0.0)"
check r3.json 'r["model_update"]["passes"][0]["outcome"] == "refused" and r["model_update"]["passes"][0]["steps"][0]["exit_code"] == 24' "run 3: replay refused (24)"
check r3.json 'not r["model_update_required"] and len(r["model_update"]["passes"]) == 1' "run 3: no drift, one pass"
"$BIN" endoqc --quiet --model-dir "$D" --pubkey vendor.pub --update-server "$URL/seq/run3" --check-updates \
    --reference refs.csv --db r.sqlite --audit audit.db --out single.json a_complete.mp4 || fail "single exam with --check-updates"
check single.json 'r["verdict"] == "complete" and r["provenance"]["model"]["model_version"] == "3.0.0"' "single exam ran with 3.0.0"
"$PY" -c "
import json, sqlite3, sys
r = json.loads(sqlite3.connect('audit.db').execute(
    \"SELECT result FROM audit_log WHERE command = 'endoqc-model-update' ORDER BY seq DESC LIMIT 1\").fetchone()[0])
sys.exit(0 if r['outcome'] == 'refused' and r['exit_code'] == 25 else f'unauthorized: {r}')" || fail "run 3: unauthorized 4.0.0 refused (25)"
active 3.0.0 "after the refusals"

# ---- run 4: killed while downloading --------------------------------------------------------------
loop_bg run4 r4.json
i=0
while [ ! -e srv/stalled ]; do
    i=$((i + 1)); [ $i -gt 1200 ] && { kill -9 $pid; fail "the download never stalled"; }
    sleep 0.1
done
kill -9 $pid; wait $pid 2>/dev/null
active 3.0.0 "after SIGKILL during the download"
[ ! -e "$D/staged" ] || fail "a half download must not be staged"

# ---- run 5: killed during the self-check; run 6 finishes it --------------------------------------
before=$(sql r.sqlite "SELECT count(*) FROM exams WHERE role = 'selfcheck'")
loop_bg run5 r5.json
i=0
while [ "$(sql r.sqlite "SELECT count(*) FROM exams WHERE role = 'selfcheck'")" -le "$before" ]; do
    i=$((i + 1)); [ $i -gt 3000 ] && { kill -9 $pid; fail "the self-check never started"; }
    kill -0 $pid 2>/dev/null || fail "run 5 ended before it could be killed"
    sleep 0.1
done
kill -9 $pid; wait $pid 2>/dev/null
active 3.0.0 "after SIGKILL during the self-check"
[ -L "$D/staged" ] || fail "4.0.0 should still be staged"
ls -a "$D/versions" | grep -q '^\.incoming' && fail "run 5 left a download behind"
loop run6 r6.json
[ $rc -eq 0 ] || fail "run 6: exit $rc"
check r6.json 'r["model_update"]["passes"][0]["outcome"] == "activated"' "run 6 activates the staged 4.0.0 (equal accuracy)"
check r6.json '"3/3 = 1.0000 >= the bar 1.0000" in r["model_update"]["passes"][0]["steps"][2]["reason"]' "run 6 reason"
active 4.0.0 "after run 6"

# ---- a machine stopped between the renames of an activation -------------------------------------
# The order is previous := current, current := staged, then staged removed. Rebuild both in-between
# states by hand (4.0.0 active, 3.0.0 previous: stage 3.0.0's folder again as if offered) and check
# that the model dir's model loads in each, and that the next command holding the lock tidies up.
prev=$(readlink "$D/previous")
cur=$(readlink "$D/current")
ln -sfn "$prev" "$D/staged"           # 3.0.0 staged again ...
ln -sfn "$cur" "$D/previous"          # ... stopped after step 1: previous = current = 4.0.0
active 4.0.0 "stopped after the first rename"
ln -sfn "$prev" "$D/current"          # stopped after step 2: current = staged = 3.0.0
active 3.0.0 "stopped after the second rename"
"$BIN" model rollback --pubkey vendor.pub --model-dir "$D" >/dev/null || fail "the next model command must clean up"
[ ! -e "$D/staged" ] || fail "a staged link equal to current must be dropped"
active 4.0.0 "rolled back after the interrupted activation"
"$BIN" audit verify audit.db >/dev/null || fail "audit chain at the end"
echo "test_endoqc_loop: all checks passed"
