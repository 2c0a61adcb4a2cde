#!/bin/sh
# tests/test_trust.sh - trusted models through the CLI: signatures and the trust store,
# `model update` against a local HTTP server (tests/test_trust_server.py on 127.0.0.1, a port
# the kernel picks) with every refusal, a download killed half-way, rollback, and the audit
# chain catching edited and deleted rows. Each refusal is followed by a check that the installed
# model still loads, verifies and has the old version.
#
# env: MI_BIN (medinfer), PYTHON (python3). Exit 0 pass, 77 skip, 1 fail.
bin=${MI_BIN:-build/medinfer}
py=${PYTHON:-/usr/bin/python3}
[ -x "$bin" ] || { echo "no medinfer binary at $bin"; exit 77; }
"$py" -c 'import sqlite3' 2>/dev/null || { echo "python3 with sqlite3 needed"; exit 77; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
here=$(cd "$(dirname "$0")" && pwd)

T=$(mktemp -d)
srv_pid=""
cleanup() {
    [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null && wait "$srv_pid" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
# the environment must not choose keys or route 127.0.0.1 through a proxy
unset MEDINFER_TRUST http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
cd "$T" || exit 1

fails=0
# expect CODE WHAT CMD...: runs CMD, output in $T/out; prints ok/FAIL with what was checked
expect() {
    want=$1; what=$2; shift 2
    "$@" >"$T/out" 2>&1; rc=$?
    # under `make check` a sanitizer report must fail the case even when the exit code matches
    # (LeakSanitizer exits 23, which is also a refusal code)
    if grep -q -e 'Sanitizer' -e 'runtime error:' "$T/out"; then rc="$rc+sanitizer"; fi
    if [ "$rc" = "$want" ]; then echo "ok:   $what (exit $rc)"
    else echo "FAIL: $what: exit $rc, expected $want"; sed 's/^/      /' "$T/out"; fails=$((fails + 1)); fi
}
# saying PATTERN: the last command's output contains PATTERN (the reason, not just the code)
saying() {
    if grep -q -- "$1" "$T/out"; then echo "      says: $(grep -m1 -- "$1" "$T/out" | cut -c1-150)"
    else echo "FAIL: output lacks '$1':"; sed 's/^/      /' "$T/out"; fails=$((fails + 1)); fi
}
check() {  # check WHAT COMMAND...: a shell condition
    what=$1; shift
    if "$@"; then echo "ok:   $what"; else echo "FAIL: $what"; fails=$((fails + 1)); fi
}

# ---- fixtures: tiny blobs (a few KiB of float32, any version), keys, signatures ------------------
"$py" - "$T" <<'EOF' || exit 1
import json, os, random, struct, sys
root = sys.argv[1]
os.makedirs(f"{root}/srv/blobs")
def blob(path, version, seed):
    r = random.Random(seed)
    data = bytes(r.getrandbits(8) for _ in range(16384))
    h = {"w": {"dtype": "F32", "shape": [4096], "data_offsets": [0, 16384]},
         "__metadata__": {"arch": "tiny", "name": "demo", "model_version": version}}
    hb = json.dumps(h).encode(); hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + data)
for v, seed in (("1.0.0", 1), ("1.1.0", 2), ("2.0.0", 3)):
    blob(f"{root}/srv/blobs/m-{v}.safetensors", v, seed)
blob(f"{root}/unsigned.safetensors", "1.0.0", 9)
EOF
expect 0 "keygen vendor key" "$bin" model keygen --out vendor --comment "Vendor QA 2026"
expect 0 "keygen rogue key" "$bin" model keygen --out rogue
expect 1 "keygen refuses to overwrite an existing key" "$bin" model keygen --out vendor
check "secret key is mode 600" [ "$(stat -c %a vendor.key)" = 600 ]
for v in 1.0.0 1.1.0 2.0.0; do
    expect 0 "sign m-$v" "$bin" model sign --key vendor.key srv/blobs/m-$v.safetensors
done
cp srv/blobs/m-2.0.0.safetensors rogue-signed.safetensors
expect 0 "sign a blob with the rogue key" "$bin" model sign --key rogue.key rogue-signed.safetensors

# ---- signatures and the trust store -------------------------------------------------------------
B=srv/blobs/m-1.0.0.safetensors
expect 0 "verify a signed blob" "$bin" model verify --pubkey vendor.pub $B
saying "signature ok: key"
expect 0 "inspect --pubkey accepts the signed blob" "$bin" inspect --pubkey vendor.pub $B
saying "signed:  key"
expect 10 "verify refuses an unsigned blob" "$bin" model verify --pubkey vendor.pub unsigned.safetensors
saying "unsigned"
expect 10 "inspect --pubkey refuses an unsigned blob" "$bin" inspect --pubkey vendor.pub unsigned.safetensors
cp $B tampered.safetensors; cp $B.sig tampered.safetensors.sig
printf '\001' | dd of=tampered.safetensors bs=1 seek=4000 conv=notrunc 2>/dev/null
expect 10 "verify refuses a blob changed after signing" "$bin" model verify --pubkey vendor.pub tampered.safetensors
saying "signature is for a blob with SHA-256"
expect 10 "verify refuses a blob signed by an untrusted key" "$bin" model verify --pubkey vendor.pub rogue-signed.safetensors
saying "not in the trust store"
cp $B edited.safetensors; sed 's/^model-version: 1.0.0$/model-version: 9.0.0/' $B.sig >edited.safetensors.sig
expect 10 "verify refuses a signature whose version line was edited" "$bin" model verify --pubkey vendor.pub edited.safetensors
saying "signature is for model_version 9.0.0"
cp $B forged.safetensors
"$py" - $B.sig forged.safetensors.sig <<'EOF'
import sys
lines = open(sys.argv[1]).read().split("\n")
sig = lines[5].split(": ")[1]
lines[5] = "signature: " + ("0" if sig[0] != "0" else "1") + sig[1:]   # one nibble of the signature
open(sys.argv[2], "w").write("\n".join(lines))
EOF
expect 10 "verify refuses a forged signature" "$bin" model verify --pubkey vendor.pub forged.safetensors
saying "does not verify"
expect 10 "MEDINFER_TRUST applies without --pubkey" env MEDINFER_TRUST=vendor.pub "$bin" inspect unsigned.safetensors
expect 10 "a MEDINFER_TRUST that names a missing file refuses (fails closed)" env MEDINFER_TRUST=nope.pub "$bin" inspect $B
saying "nope.pub"
if [ -e /etc/medinfer/trusted.pub ]; then
    echo "skip: no-key cases (/etc/medinfer/trusted.pub exists on this machine)"
else
    expect 0 "without a configured key an unsigned blob still loads" "$bin" inspect unsigned.safetensors
    expect 10 "verify without any key says there is nothing to verify against" "$bin" model verify $B
fi
expect 0 "hwcode" "$bin" model hwcode
HW=$(cat out)
check "hwcode looks like XXXX-XXXX-XXXX-XXXX" sh -c "echo '$HW' | grep -Eq '^[0-9A-F]{4}(-[0-9A-F]{4}){3}$'"
check "hwcode is stable" [ "$("$bin" model hwcode)" = "$HW" ]

# ---- the update server ---------------------------------------------------------------------------
# manifest DIR BLOB [key=value ...]: srv/DIR/manifest.json offering BLOB (signed), authorized for
# this machine unless hardware= says otherwise; other keys override fields (JSON values)
manifest() {
    "$py" - "$T/srv" "$HW" "$@" <<'EOF'
import hashlib, json, os, sys
srv, hw, d, blob, *kv = sys.argv[1:]
sig = dict(l.split(": ", 1) for l in open(f"{srv}/blobs/{blob}.sig").read().splitlines()[1:])
data = open(f"{srv}/blobs/{blob}", "rb").read()
m = {"format": "medinfer-manifest-v1", "model": "demo", "model_version": sig["model-version"],
     "released": "2026-11-21T12:00:00Z", "blob_url": f"../blobs/{blob}", "size": len(data),
     "sha256": hashlib.sha256(data).hexdigest(), "key_id": sig["key-id"],
     "signature": sig["signature"], "hardware": ["0000-1111-2222-3333", hw]}
for a in kv:
    k, v = a.split("=", 1)
    m[k] = json.loads(v)
os.makedirs(f"{srv}/{d}", exist_ok=True)
json.dump(m, open(f"{srv}/{d}/manifest.json", "w"), indent=1)
EOF
}
manifest v1 m-1.0.0.safetensors
# the code as a human might paste it: lowercase, no dashes
manifest v2 m-1.1.0.safetensors "hardware=[\"$(echo "$HW" | tr -d - | tr A-F a-f)\"]"
manifest v3 m-2.0.0.safetensors
manifest unauth m-2.0.0.safetensors 'hardware=["0000-1111-2222-3333"]'
cp srv/blobs/m-2.0.0.safetensors srv/blobs/m-2.0.0-mitm.safetensors
printf '\001' | dd of=srv/blobs/m-2.0.0-mitm.safetensors bs=1 seek=5000 conv=notrunc 2>/dev/null
manifest badhash m-2.0.0.safetensors 'blob_url="../blobs/m-2.0.0-mitm.safetensors"'
cp rogue-signed.safetensors rogue-signed.safetensors.sig srv/blobs/
manifest badkey rogue-signed.safetensors
manifest badsig2 m-2.0.0.safetensors "signature=\"$(sed -n 's/^signature: //p' srv/blobs/m-1.1.0.safetensors.sig)\""
manifest older m-1.0.0.safetensors
manifest case-truncate m-2.0.0.safetensors 'blob_url="/truncate/blobs/m-2.0.0.safetensors"'
manifest case-stall m-2.0.0.safetensors 'blob_url="/stall/blobs/m-2.0.0.safetensors"'
manifest lying m-1.0.0.safetensors 'model_version="3.0.0"'
manifest othermodel m-2.0.0.safetensors 'model="chest-xray"'
mkdir -p srv/garbage && echo 'this is not json' >srv/garbage/manifest.json

"$py" "$here/test_trust_server.py" "$T/srv" "$T/port" 2>"$T/server.log" &
srv_pid=$!
i=0
while [ ! -s "$T/port" ]; do   # waits for an event (the port file), bounded only to fail cleanly
    i=$((i + 1)); [ $i -gt 600 ] && { echo "FAIL: test server did not start"; cat "$T/server.log"; exit 1; }
    kill -0 $srv_pid 2>/dev/null || { echo "FAIL: test server died"; cat "$T/server.log"; exit 1; }
    sleep 0.1
done
URL=http://127.0.0.1:$(cat "$T/port")
echo "server: $URL (pid $srv_pid)"

D=$T/models
U() { "$bin" model update --pubkey "$T/vendor.pub" --model-dir "$D" --quiet --server "$@"; }
# installed VERSION: what commands load is VERSION, it verifies, and no download is lying around
installed() {
    out=$("$bin" inspect --pubkey "$T/vendor.pub" "$D/model.safetensors" 2>&1)
    if [ $? -ne 0 ]; then echo "FAIL: installed model does not load/verify: $out"; fails=$((fails + 1)); return; fi
    v=$(echo "$out" | sed -n 's/^  model_version = //p')
    if [ "$v" = "$1" ]; then echo "      installed model still loads, verifies, model_version $v"
    else echo "FAIL: installed model_version '$v', expected $1"; fails=$((fails + 1)); fi
    if ls -a "$D/versions" | grep -q '^\.incoming'; then echo "FAIL: a download was left behind"; fails=$((fails + 1)); fi
}

expect 0 "update into an empty model dir installs 1.0.0 (relative blob_url)" U $URL/v1
saying "installed model_version 1.0.0"
installed 1.0.0
expect 0 "same version again: up to date, nothing downloaded" U $URL/v1/manifest.json
saying "up to date"
expect 0 "newer version 1.1.0 installs (hardware code matched case/dash-insensitively)" U $URL/v2
installed 1.1.0
check "previous is kept: previous/model.safetensors is 1.0.0" \
    sh -c "'$bin' inspect '$D/previous/model.safetensors' | grep -q 'model_version = 1.0.0'"

expect 24 "refused: older version offered" U $URL/older
saying "older than the installed 1.1.0"
installed 1.1.0
expect 25 "refused: this machine's hardware code not authorized" U $URL/unauth
saying "is not among"
installed 1.1.0
expect 22 "refused: blob bytes changed in transit (SHA-256 mismatch)" U $URL/badhash
saying "SHA-256 is"
installed 1.1.0
expect 23 "refused: signed by a key not in the trust store" U $URL/badkey
saying "not in the trust store"
installed 1.1.0
expect 23 "refused: signature does not verify (signature of another blob)" U $URL/badsig2
saying "does not verify"
installed 1.1.0
expect 21 "refused: server closes the connection half-way (truncated download)" U $URL/case-truncate
saying "incomplete"
installed 1.1.0
expect 28 "refused: manifest claims 3.0.0 for a signed 1.0.0 blob (replay)" U $URL/lying
saying "blob's model_version is '1.0.0'"
installed 1.1.0
expect 28 "refused: manifest for another model than the dir holds (metadata name)" U $URL/othermodel
saying "offers model 'chest-xray', the model dir holds 'demo'"
installed 1.1.0
expect 28 "refused: into an empty dir, a blob named 'demo' offered as 'chest-xray'" \
    "$bin" model update --pubkey vendor.pub --model-dir "$T/fresh" --quiet --server "$URL/othermodel"
saying "the blob is model 'demo'"
check "the refused first install left no model behind" [ ! -e "$T/fresh/model.safetensors" ]
expect 20 "refused: no manifest on the server (HTTP 404)" U $URL/missing
saying "404"
installed 1.1.0
expect 20 "refused: manifest is not JSON" U $URL/garbage
installed 1.1.0
DEAD=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
expect 20 "refused: nothing listening on the server's port" U http://127.0.0.1:$DEAD
installed 1.1.0
if [ ! -e /etc/medinfer/trusted.pub ]; then
    expect 23 "refused: update without any trusted key" "$bin" model update --model-dir "$D" --server $URL/v3
    saying "needs a trusted public key"
    installed 1.1.0
fi
expect 2 "usage: update without --server" "$bin" model update --model-dir "$D"

# ---- killed during the download ----------------------------------------------------------------------
rm -f srv/stalled
"$bin" model update --pubkey "$T/vendor.pub" --model-dir "$D" --quiet --server $URL/case-stall >"$T/stall.out" 2>&1 &
upd=$!
i=0
while [ ! -e srv/stalled ]; do   # the server has sent half the blob and is holding the connection
    i=$((i + 1)); [ $i -gt 600 ] && { echo "FAIL: update never reached the stalled download"; cat "$T/stall.out"; break; }
    sleep 0.1
done
kill -9 $upd 2>/dev/null; wait $upd 2>/dev/null
check "killed mid-download: its temporary download is still on disk" sh -c "ls -a '$D/versions' | grep -q '^\.incoming'"
check "killed mid-download: model.safetensors -> current/ does not lead to the download" \
    sh -c "! readlink '$D/current' | grep -q incoming"
out=$("$bin" inspect --pubkey "$T/vendor.pub" "$D/model.safetensors" 2>&1 | sed -n 's/^  model_version = //p')
check "killed mid-download: the installed 1.1.0 still loads and verifies" [ "$out" = 1.1.0 ]
expect 0 "the next update succeeds (and clears the killed download)" U $URL/v3
installed 2.0.0
check "two versions kept: current and previous" [ "$(ls "$D/versions" | wc -l)" -eq 2 ]

# ---- rollback ----------------------------------------------------------------------------------------
expect 0 "rollback restores the previous model" "$bin" model rollback --pubkey "$T/vendor.pub" --model-dir "$D"
installed 1.1.0
expect 0 "rollback again returns to the newer one" "$bin" model rollback --model-dir "$D"
installed 2.0.0
mkdir -p "$T/empty"
expect 27 "rollback with no previous model" "$bin" model rollback --model-dir "$T/empty"
saying "no previous model"
# a hand-installed model dir (plain files) is adopted: it becomes `previous` on the first update
D2=$T/plain; mkdir -p "$D2"; cp srv/blobs/m-1.0.0.safetensors "$D2/model.safetensors"
cp srv/blobs/m-1.0.0.safetensors.sig "$D2/model.safetensors.sig"
expect 0 "update over a hand-installed model" "$bin" model update --pubkey vendor.pub --model-dir "$D2" --server $URL/v2
check "hand-installed model kept as previous" sh -c "'$bin' inspect --pubkey vendor.pub '$D2/previous/model.safetensors' | grep -q 'model_version = 1.0.0'"
expect 0 "rollback to the hand-installed model" "$bin" model rollback --pubkey vendor.pub --model-dir "$D2"
check "hand-installed model is current again" sh -c "'$bin' inspect --pubkey vendor.pub '$D2/model.safetensors' | grep -q 'model_version = 1.0.0'"
# a previous blob damaged on disk is not rolled back to
prev=$(readlink "$D/previous")
printf '\001' | dd of="$D/$prev/model.safetensors" bs=1 seek=6000 conv=notrunc 2>/dev/null
expect 10 "rollback refuses a previous blob that no longer verifies" "$bin" model rollback --pubkey "$T/vendor.pub" --model-dir "$D"
installed 2.0.0

# ---- audit trail ---------------------------------------------------------------------------------------
newdb() {  # newdb NAME: three rows from three inspects
    for k in 1 2 3; do "$bin" inspect --pubkey vendor.pub --audit "$1" $B >/dev/null || echo "FAIL: inspect --audit"; done
}
sql() { "$py" -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()' "$@"; }
newdb a.db
expect 0 "audit verify: three untouched rows are intact" "$bin" audit verify a.db
saying "3 rows intact"
HEAD=$(sed -n 's/^head //p' out)
expect 10 "a refused blob gets no result and no audit row" "$bin" inspect --pubkey vendor.pub --audit a.db unsigned.safetensors
expect 0 "audit verify after the refusal" "$bin" audit verify a.db
saying "3 rows intact"
check "rows record model, version, blob sha256, key id, build, ISA" sh -c "'$py' -c \"
import sqlite3; r = sqlite3.connect('a.db').execute('SELECT model_name, model_version, blob_sha256, key_id, build, isa FROM audit_log').fetchone()
assert r[0] == 'demo' and r[1] == '1.0.0' and len(r[2]) == 64 and len(r[3]) == 16 and r[4] and r[5], r\""
check "UPDATE on the audit table is refused by its trigger" sh -c "! '$py' -c \"
import sqlite3; c = sqlite3.connect('a.db'); c.execute('UPDATE audit_log SET result = 1'); c.commit()\" 2>/dev/null"
sql a.db "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET result = '{\"tensors\":2}' WHERE seq = 2;"
expect 30 "audit verify detects an edited row" "$bin" audit verify a.db
saying "row 2 .* was edited"
newdb b.db
sql b.db "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 2;"
expect 30 "audit verify detects a deleted row" "$bin" audit verify b.db
saying "rows 2..2 are missing"
newdb c.db
sql c.db "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 3;"
expect 30 "audit verify detects a row deleted from the end" "$bin" audit verify c.db
saying "deleted from the end"
newdb d.db
expect 0 "audit verify d.db" "$bin" audit verify d.db
DHEAD=$(sed -n 's/^head //p' out)
sql d.db "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 3; UPDATE sqlite_sequence SET seq = 2;"
expect 30 "a recorded head catches a tail cut that also rewound sqlite_sequence" "$bin" audit verify --expect-head "$DHEAD" d.db
newdb e.db
sql e.db "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET prev_hash = row_hash WHERE seq = 2;"
expect 30 "audit verify detects a rewritten link" "$bin" audit verify e.db
echo "not a database" >f.db
expect 31 "audit verify on something that is not an audit DB" "$bin" audit verify f.db
check "head printed as SEQ:HASH" sh -c "echo '$HEAD' | grep -Eq '^3:[0-9a-f]{64}$'"

[ $fails -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "all trust checks passed"
