#!/bin/sh
# tests/test_endoqc_meta.sh - what `medinfer endoqc` does with the blob's metadata and where its
# results go, on the demo blob with its metadata rewritten by tools/blob_meta.py (same weights):
#   site_groups repeating a label (once, 70 times, 5000 times in the 8th group): refused naming
#     the blob, the key and the label, never a crash; under --pubkey or MEDINFER_TRUST an unsigned
#     such blob is refused as untrusted (exit 10) before its metadata is read, and a signed one is
#     still checked (exit 1);
#   labels that JSON must escape, 63 bytes each: the report, the audit row, the results database
#     and the batch summary carry the same exact missing-site list;
#   the same frame gives `classify` and `endoqc` the same probability (one preprocessing, with
#     the blob's resize and with the default when it has none; one softmax);
#   resize_mode squash: classify and endoqc still agree on non-square views, the report states
#     the mode, the logits are not crop mode's, the resume key says squash (crop keys unchanged),
#     and a contradicting 'resize' or an unknown mode is refused naming the blob and the key;
#   an --audit database that cannot be written: exit 31 and nothing of the result leaves (no
#     report, no --out file, no verdict line, no contact sheet, no database row).
set -u
. "$(dirname "$0")/endoqc_lib.sh"
[ -f "$MODEL" ] || fail "$MODEL is missing"
META="$PY tools/blob_meta.py"
sanitizer() { grep -q -e 'Sanitizer' -e 'runtime error:' "$1"; }

# ---- site_groups with repeated labels ----------------------------------------------------------
"$PY" - "$T" <<'EOF' || fail "writing the site_groups variants"
import json, subprocess, sys
t = sys.argv[1]
ant = ["antrum_gc", "antrum_pw", "antrum_aw", "antrum_lc"]
cases = {
    "rep1": {"fundus": ["fundus_gc", "fundus_pw", "fundus_gc", "fundus_aw", "fundus_lc"], "antrum": ant},
    "rep70": {"fundus": ["fundus_gc"] * 70, "antrum": ant},
    "rep5000": dict({f"g{i}": ["oesophagus"] for i in range(7)}, big=["fundus_lc"] * 5000),
}
for name, groups in cases.items():
    subprocess.run([sys.executable, "tools/blob_meta.py", "weights/endoqc_sites_demo.safetensors",
                    f"{t}/{name}.safetensors", "--set", "site_groups=" + json.dumps(groups)],
                   check=True, stderr=subprocess.DEVNULL)
EOF
: > "$T/any.mp4"   # never opened: the model is refused first
for c in "rep1 fundus fundus_gc" "rep70 fundus fundus_gc" "rep5000 big fundus_lc"; do
    set -- $c
    "$BIN" endoqc --quiet --model "$T/$1.safetensors" "$T/any.mp4" > /dev/null 2> "$T/$1.err"; rc=$?
    sanitizer "$T/$1.err" && { cat "$T/$1.err"; fail "$1: sanitizer report"; }
    [ $rc -eq 1 ] || { cat "$T/$1.err"; fail "$1: exit $rc, expected 1"; }
    grep -qF "$T/$1.safetensors: metadata 'site_groups' group '$2' repeats '$3'" "$T/$1.err" \
        || { cat "$T/$1.err"; fail "$1: the message must name the blob, the key, the group and the label"; }
done

# the blob is checked before its metadata is read: a refused blob is refused, whatever it holds
"$BIN" model keygen --out "$T/k" > /dev/null 2>&1 || fail "keygen"
"$BIN" endoqc --quiet --model "$T/rep5000.safetensors" --pubkey "$T/k.pub" "$T/any.mp4" > /dev/null 2> "$T/untrusted.err"; rc=$?
[ $rc -eq 10 ] && grep -q "refused: .*rep5000.safetensors" "$T/untrusted.err" \
    || { cat "$T/untrusted.err"; fail "unsigned blob under --pubkey: exit $rc, expected 10 (refused)"; }
MEDINFER_TRUST="$T/k.pub" "$BIN" endoqc --quiet --model "$T/rep5000.safetensors" "$T/any.mp4" > /dev/null 2> "$T/untrusted.err"; rc=$?
[ $rc -eq 10 ] || { cat "$T/untrusted.err"; fail "unsigned blob under MEDINFER_TRUST: exit $rc, expected 10"; }
# signed by the trusted key: the signature says who made it, not that its metadata is sound
"$BIN" model sign --key "$T/k.key" "$T/rep5000.safetensors" > /dev/null 2>&1 || fail "sign"
"$BIN" endoqc --quiet --model "$T/rep5000.safetensors" --pubkey "$T/k.pub" "$T/any.mp4" > /dev/null 2> "$T/signed.err"; rc=$?
[ $rc -eq 1 ] && grep -q "repeats 'fundus_lc'" "$T/signed.err" && ! sanitizer "$T/signed.err" \
    || { cat "$T/signed.err"; fail "signed blob with bad metadata: exit $rc, expected 1 naming the repeat"; }

# ---- labels that need escaping ---------------------------------------------------------------------
# every label 63 bytes (the longest allowed) with quotes and backslashes; order and groups follow
"$PY" - "$T" <<'EOF' || fail "writing the relabelled blob"
import json, struct, subprocess, sys
t = sys.argv[1]
with open("weights/endoqc_sites_demo.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    meta = json.loads(f.read(n))["__metadata__"]
old = json.loads(meta["labels"])
new = [(f'{i:02d} say "ah" \\ {name} ' + "\\\"" * 30)[:63] for i, name in enumerate(old)]
ren = dict(zip(old, new))
groups = {g: [ren[x] for x in v] for g, v in json.loads(meta["site_groups"]).items()}
subprocess.run([sys.executable, "tools/blob_meta.py", "weights/endoqc_sites_demo.safetensors",
                f"{t}/odd.safetensors", "--set", "labels=" + json.dumps(new),
                "--set", "site_order=" + json.dumps([ren[x] for x in json.loads(meta["site_order"])]),
                "--set", "site_groups=" + json.dumps(groups)], check=True, stderr=subprocess.DEVNULL)
json.dump(new, open(f"{t}/odd_labels.json", "w"))
EOF
"$BIN" endoqc-synth --seed 3 --fps 10 --dwell 0.6 --no-events --size 128x96 --skip 5-8 --out "$T/exam.mp4" 2>/dev/null \
    || fail "endoqc-synth"
"$BIN" endoqc --quiet --model "$T/odd.safetensors" --audit "$T/audit.sqlite" --db "$T/single.sqlite" \
    --out "$T/odd.json" "$T/exam.mp4" || fail "endoqc with escaped labels exited $?"
check "$T/odd.json" "all(l in r['missing_sites'] for l in json.load(open('$T/odd_labels.json'))[4:8])" \
    "the report lists the four skipped sites by their exact labels"
"$BIN" audit verify "$T/audit.sqlite" > /dev/null 2>&1 || fail "audit chain"
printf 'exam.mp4\n' > "$T/list.txt"
"$BIN" endoqc --quiet --model "$T/odd.safetensors" --batch "$T/list.txt" --db "$T/batch.sqlite" --out "$T/b1.json" \
    || fail "batch exited $?"
"$BIN" endoqc --quiet --model "$T/odd.safetensors" --batch "$T/list.txt" --db "$T/batch.sqlite" --out "$T/b2.json" \
    || fail "resumed batch exited $?"
"$PY" - "$T" <<'EOF' || fail "the missing-site lists differ between report, audit row, database and batch summary"
import json, sqlite3, sys
t = sys.argv[1]
want = json.load(open(f"{t}/odd.json"))["missing_sites"]
assert len(want) >= 4, want
audit = sqlite3.connect(f"{t}/audit.sqlite").execute("SELECT result, thresholds FROM audit_log").fetchall()
assert len(audit) == 1, audit
assert json.loads(audit[0][0])["missing_sites"] == want, "audit row"
assert json.loads(audit[0][1])["min_frames"] == 2, "audit thresholds"
for db in ("single", "batch"):
    rows = sqlite3.connect(f"{t}/{db}.sqlite").execute("SELECT missing_sites FROM exams").fetchall()
    assert len(rows) == 1 and json.loads(rows[0][0]) == want, db + " database row"
b1, b2 = (json.load(open(f"{t}/{n}.json"))["exams"][0] for n in ("b1", "b2"))
assert b1["status"] == "done" and b1["missing_sites"] == want, "batch summary of a new exam"
assert b2["status"] == "resumed" and b2["missing_sites"] == want, "batch summary of a stored exam"
EOF

# ---- classify and endoqc: one preprocessing, one softmax --------------------------------------------
"$BIN" endoqc-synth --dump "$T/crops" --per-site 1 --seed 5 2>/dev/null || fail "endoqc-synth --dump"
# the renderer dumps PPM; classify reads the formats it documents (PNG, JPEG, BMP): lossless PNG
"$PY" -c 'import sys; from PIL import Image; [Image.open(f).save(f[:-4] + ".png") for f in sys.argv[1:]]' \
    "$T/crops/s09_0000.ppm" "$T/crops/s24_0000.ppm" || fail "PPM to PNG"
crops="$T/crops/s09_0000.png $T/crops/s24_0000.png"
$META "$MODEL" "$T/noresize.safetensors" --del resize 2>/dev/null || fail "blob_meta --del resize"
for blob in "$MODEL" "$T/noresize.safetensors"; do
    "$BIN" classify --model "$blob" --topk 1 $crops > "$T/classify.jsonl" || fail "classify $blob exited $?"
    for c in $crops; do
        # --min-prob 0: the top class counts however sure it is, so its probability is reported;
        # --dark-level 0: a dim view is classified too
        "$BIN" endoqc --quiet --model "$blob" --min-prob 0 --dark-level 0 --out "$T/frame.json" "$c" \
            || fail "endoqc $c exited $?"
        "$PY" - "$T/classify.jsonl" "$T/frame.json" "$c" <<'EOF' || fail "classify and endoqc disagree on $c with $blob"
import json, sys
top = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["file"] == sys.argv[3]][0]["top"][0]
r = json.load(open(sys.argv[2]))
best = max((s for s in r["sites"] if s["best_prob"] is not None), key=lambda s: s["best_prob"])
assert r["frames"]["classified"] == 1
assert best["label"] == top["label"], "labels differ"
assert abs(best["best_prob"] - top["probability"]) <= 0.5e-4 + 1e-7, "probabilities differ"
EOF
    done
done

# ---- resize_mode squash: frames scaled straight to the input size, aspect not kept ----------------
# The same weights, their blob saying they were trained on whole frames (Resize((64, 64))). On
# views that are not square: classify and endoqc still agree (one preprocessing), the report states
# the mode, and the logits are not the crop-mode ones. On a video: the resume key gains
# " resize_mode=squash", and a crop-mode key is what it was before the mode existed.
$META "$MODEL" "$T/squash.safetensors" --set resize_mode=squash 2>/dev/null || fail "blob_meta resize_mode=squash"
# shorter side 160, so that endoqc's work frame (shorter side max(160, resize)) is the image itself
"$PY" -c 'import sys; from PIL import Image; im = Image.open(sys.argv[1]); im.resize((240, 160)).save(sys.argv[2]); im.resize((160, 240)).save(sys.argv[3])' \
    "$T/crops/s09_0000.png" "$T/wide.png" "$T/tall.png" || fail "making non-square views"
for c in "$T/wide.png" "$T/tall.png"; do
    for blob in "$MODEL" "$T/squash.safetensors"; do
        n=$(basename "$blob" .safetensors)
        "$BIN" classify --model "$blob" --topk 1 --logits "$c" > "$T/$n.jsonl" || fail "classify $blob $c exited $?"
        "$BIN" endoqc --quiet --model "$blob" --min-prob 0 --dark-level 0 --out "$T/$n.json" "$c" \
            || fail "endoqc $blob $c exited $?"
    done
    "$PY" - "$T" "$(basename "$MODEL" .safetensors)" <<'EOF' || fail "resize_mode squash on $c"
import json, sys
t, crop = sys.argv[1], sys.argv[2]
for name, mode in ((crop, "crop"), ("squash", "squash")):
    cls = json.loads(open(f"{t}/{name}.jsonl").readline())
    r = json.load(open(f"{t}/{name}.json"))
    assert r["provenance"]["model"]["resize_mode"] == mode, f"{name}: report says {r['provenance']['model']}"
    assert r["frames"]["classified"] == 1
    best = max((s for s in r["sites"] if s["best_prob"] is not None), key=lambda s: s["best_prob"])
    top = cls["top"][0]
    assert best["label"] == top["label"], f"{name}: classify and endoqc labels differ"
    assert abs(best["best_prob"] - top["probability"]) <= 0.5e-4 + 1e-7, f"{name}: probabilities differ"
a = json.loads(open(f"{t}/{crop}.jsonl").readline())["logits"]
b = json.loads(open(f"{t}/squash.jsonl").readline())["logits"]
d = max(abs(x - y) for x, y in zip(a, b))
assert d > 1e-3, f"squash and crop give the same logits (max |d| {d})"
print(f"squash vs crop: max |logit difference| {d:.4f}")
EOF
done
"$BIN" endoqc --quiet --model "$MODEL" --db "$T/modes.sqlite" --out "$T/crop_exam.json" "$T/exam.mp4" \
    || fail "endoqc crop exam exited $?"
"$BIN" endoqc --quiet --model "$T/squash.safetensors" --db "$T/modes.sqlite" --out "$T/squash_exam.json" "$T/exam.mp4" \
    || fail "endoqc squash exam exited $?"
check "$T/squash_exam.json" 'r["provenance"]["model"]["resize_mode"] == "squash"' "the exam report states squash"
check "$T/crop_exam.json" 'r["provenance"]["model"]["resize_mode"] == "crop"' "the exam report states crop"
"$PY" - "$T/modes.sqlite" <<'EOF' || fail "resume keys (settings) of crop and squash exams"
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute("SELECT settings FROM exams ORDER BY id").fetchall()
assert len(rows) == 2, rows
crop, squash = rows[0][0], rows[1][0]
assert crop.endswith(" resize=64 input=64") and "resize_mode" not in crop, crop
assert squash == crop + " resize_mode=squash", (crop, squash)
EOF
# a squash blob whose 'resize' contradicts it, or an unknown mode, is refused before any frame is read
$META "$T/squash.safetensors" "$T/squash73.safetensors" --set resize=73 2>/dev/null || fail "blob_meta resize=73"
"$BIN" endoqc --quiet --model "$T/squash73.safetensors" "$T/exam.mp4" > /dev/null 2> "$T/squash73.err"; rc=$?
[ $rc -eq 1 ] && grep -qF "$T/squash73.safetensors: metadata 'resize' = 73, but 'resize_mode' squash" "$T/squash73.err" \
    || { cat "$T/squash73.err"; fail "squash blob with resize 73: exit $rc, expected 1 naming the blob and the keys"; }
$META "$MODEL" "$T/stretch.safetensors" --set resize_mode=stretch 2>/dev/null || fail "blob_meta resize_mode=stretch"
"$BIN" endoqc --quiet --model "$T/stretch.safetensors" "$T/exam.mp4" > /dev/null 2> "$T/stretch.err"; rc=$?
[ $rc -eq 1 ] && grep -qF "$T/stretch.safetensors: metadata 'resize_mode' = 'stretch' is not 'crop' or 'squash'" "$T/stretch.err" \
    || { cat "$T/stretch.err"; fail "resize_mode stretch: exit $rc, expected 1 naming the blob and the key"; }

# ---- an audit database that cannot be written ---------------------------------------------------
"$BIN" endoqc --model "$MODEL" --audit "$T/no/such/dir/audit.sqlite" --out "$T/noaudit.json" \
    --contact-sheet "$T/noaudit.png" --db "$T/noaudit.sqlite" "$T/exam.mp4" > "$T/noaudit.stdout" 2> "$T/noaudit.err"; rc=$?
[ $rc -eq 31 ] || { cat "$T/noaudit.err"; fail "unwritable --audit: exit $rc, expected 31"; }
grep -q "audit" "$T/noaudit.err" || fail "the message must say the audit failed"
[ ! -e "$T/noaudit.json" ] || fail "a report was written without its audit record"
[ ! -s "$T/noaudit.stdout" ] || fail "a report went to stdout without its audit record"
[ ! -e "$T/noaudit.png" ] || fail "a contact sheet was written without its audit record"
! grep -q "COMPLETE" "$T/noaudit.err" || fail "the verdict line was printed without its audit record"
[ ! -e "$T/noaudit.sqlite" ] || [ "$("$PY" -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM exams').fetchone()[0])" "$T/noaudit.sqlite")" = 0 ] \
    || fail "a database row was stored without its audit record"
"$BIN" endoqc --quiet --model "$MODEL" --audit "$T/no/such/dir/audit.sqlite" --batch "$T/list.txt" \
    --db "$T/noaudit_batch.sqlite" --out "$T/noaudit_batch.json"; rc=$?
[ $rc -eq 31 ] || fail "unwritable --audit in a batch: exit $rc, expected 31"
check "$T/noaudit_batch.json" 'r["exams"][0]["status"] == "failed" and "audit" in r["exams"][0]["error"] and "verdict" not in r["exams"][0]' \
    "the batch reports the exam as failed, without its verdict"
[ "$("$PY" -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM exams').fetchone()[0])" "$T/noaudit_batch.sqlite")" = 0 ] \
    || fail "a batch stored an exam without its audit record"
echo "test_endoqc_meta: all checks passed"
