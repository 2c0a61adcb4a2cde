#!/bin/sh
# no-sanitize: a dozen full videos through ResNet-18 under ASan would take most of the CI budget;
# tests/test_endoqc.c and tests/test_endoqc_real.sh run the same code paths under the sanitizers.
# tests/test_endoqc.sh - `medinfer endoqc` end to end on seeded synthetic gastroscopies rendered by
# `medinfer endoqc-synth`, classified by the shipped demo blob:
#   verdicts and the exact missing-site lists of a complete and an incomplete exam; duplicates
#   dropped (at least every frozen frame the renderer repeated); the report's fields and
#   provenance; the contact sheet; targeted re-sampling recovering a fundus that plain every-k-th
#   sampling misses, with the blob's site_groups and, without them, by the standard groups (the
#   same report without the decoder thread); the
#   site rule and the de-duplication window stated (the method's rule and window reachable); a
#   truncated file processed as far as it decodes, with the report saying so.
set -u
. "$(dirname "$0")/endoqc_lib.sh"
[ -f "$MODEL" ] || fail "$MODEL is missing (tools/train_sites.py writes it)"

render() {  # NAME SEED [renderer options]: video + truth CSV
    name=$1; seed=$2; shift 2
    "$BIN" endoqc-synth --seed "$seed" --out "$T/$name.mp4" --truth "$T/$name.csv" "$@" 2>"$T/$name.log" \
        || { cat "$T/$name.log"; fail "endoqc-synth $name"; }
}
qc() {  # NAME [endoqc options]: report NAME.json, the verdict line in NAME.err, exit status in $rc
    name=$1; shift
    "$BIN" endoqc --model "$MODEL" --out "$T/$name.json" "$@" 2>"$T/$name.err"; rc=$?
}
skipped() { awk -F, 'NR > 1 && $3 == 0 { printf "%s\"%s\"", n++ ? "," : "", $2 }' "$1"; }

# ---- a complete exam ------------------------------------------------------------------------
render complete 11
qc complete --contact-sheet "$T/complete.png" "$T/complete.mp4"
[ $rc -eq 0 ] || { cat "$T/complete.err"; fail "endoqc on the complete exam exited $rc"; }
check "$T/complete.json" 'r["verdict"] == "complete" and r["missing_sites"] == []' "complete exam: verdict complete, nothing missing"
check "$T/complete.json" 'r["distinct_sites"] == 26 and r["total_sites"] == 26' "complete exam: 26 distinct sites"
frozen=$(awk -F, 'NR > 1 { n += $6 } END { print n + 0 }' "$T/complete.csv")
[ "$frozen" -gt 0 ] || fail "the renderer made no frozen stretch with seed 11"
check "$T/complete.json" "r['frames']['duplicates'] >= $frozen" "every frozen (repeated) frame is dropped as a duplicate"
check "$T/complete.json" 'r["frames"]["decoded"] == r["frames"]["dark"] + r["frames"]["duplicates"] + r["frames"]["kept"]' "decoded = dark + duplicates + kept"
check "$T/complete.json" 'r["frames"]["kept"] < r["frames"]["decoded"] / 3 and r["frames"]["dark"] > 0' "dedup keeps a minority; dark frames are skipped"
check "$T/complete.json" 'r["decode"]["complete"] and not r["decode"]["truncated"] and r["decode"]["damage"] is None' "clean decode"
check "$T/complete.json" 'all(k in r["timing_ms"] for k in ("decode", "dedup", "preprocess", "classify", "resample", "total"))' "timing per stage"
for k in first_ms last_ms best_ms best_prob frames seen label number; do
    check "$T/complete.json" "all('$k' in s for s in r['sites'])" "every site has $k"
done
check "$T/complete.json" 'all(s["first_ms"] <= s["best_ms"] <= s["last_ms"] for s in r["sites"] if s["seen"])' "first <= best <= last"
msha=$(sha256sum "$MODEL" | cut -d' ' -f1)
vsha=$(sha256sum "$T/complete.mp4" | cut -d' ' -f1)
check "$T/complete.json" "r['provenance']['model']['sha256'] == '$msha' and r['provenance']['input_sha256'] == '$vsha' == r['video']['sha256']" "provenance hashes"
check "$T/complete.json" 'r["provenance"]["engine_version"] and r["provenance"]["model"]["arch"] == "resnet18" and r["provenance"]["model"]["model_version"]' "provenance engine and model"
check "$T/complete.json" 'r["provenance"]["thresholds"]["min_frames"] == 2 and r["provenance"]["thresholds"]["site_threshold"] == 22 and r["provenance"]["thresholds"]["source"]["min_frames"] == "metadata"' "thresholds from the blob metadata"
# site order and time: the renderer shows the sites in guideline order, so best frames are in order
check "$T/complete.json" '[s["best_ms"] for s in r["sites"]] == sorted(s["best_ms"] for s in r["sites"])' "best frames in guideline order"
"$PY" -c "
import struct, sys
d = open(sys.argv[1], 'rb').read()
assert d[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
w, h = struct.unpack('>II', d[16:24])
assert w >= 1000 and h >= 600, (w, h)
" "$T/complete.png" || fail "contact sheet is not a readable PNG"

# ---- an incomplete exam: fundus and three other sites never shown -------------------------------
render incomplete 12 --skip 2,11,17-20,25
qc incomplete "$T/incomplete.mp4"
[ $rc -eq 0 ] || { cat "$T/incomplete.err"; fail "endoqc on the incomplete exam exited $rc"; }
want="[$(skipped "$T/incomplete.csv")]"
check "$T/incomplete.json" "r['verdict'] == 'incomplete' and r['missing_sites'] == $want" "incomplete exam: missing exactly $want"
check "$T/incomplete.json" '[g for g in r["resampling"] if g["group"] == "fundus"][0]["run"]' "missing fundus triggers re-sampling"
check "$T/incomplete.json" '[g for g in r["resampling"] if g["group"] == "fundus"][0]["anchor_before"] == "mid_upper_body_lc" and [g for g in r["resampling"] if g["group"] == "fundus"][0]["anchor_after"] == "angle_pw"' "fundus window anchored on sites 16 and 21"
grep -q "^endoqc incomplete.mp4: INCOMPLETE, 19 of 26 sites seen; missing: cardia_scj, lower_body_aw, fundus_gc, fundus_pw, fundus_aw, fundus_lc, retroflex_mid_upper_body_aw$" \
    "$T/incomplete.err" || { cat "$T/incomplete.err"; fail "verdict line on stderr"; }

# ---- targeted re-sampling: a fundus passed quickly ---------------------------------------------------
render brief 14 --brief fundus
qc brief_plain --no-resample "$T/brief.mp4"
[ $rc -eq 0 ] || fail "endoqc --no-resample exited $rc"
qc brief "$T/brief.mp4"
[ $rc -eq 0 ] || fail "endoqc exited $rc"
check "$T/brief_plain.json" 'any(m.startswith("fundus_") for m in r["missing_sites"])' "plain every-3rd sampling misses part of the quick fundus pass"
check "$T/brief.json" 'not any(m.startswith("fundus_") for m in r["missing_sites"])' "re-sampling finds all four fundus sites"
check "$T/brief.json" '[g for g in r["resampling"] if g["group"] == "fundus"][0]["recovered"] and r["frames"]["classified_resampling"] > 0' "the report names what re-sampling recovered"
check "$T/brief.json" 'r["verdict"] == "complete" and r["missing_sites"] == []' "quick fundus exam is complete after re-sampling"
# the same first pass and re-sampling windows decoding on the network's thread: the same report
qc brief_one --no-decode-thread "$T/brief.mp4"
[ $rc -eq 0 ] || fail "endoqc --no-decode-thread exited $rc"
same_report "$T/brief.json" "$T/brief_one.json" "the report with and without the decoder thread"
check "$T/brief.json" 'r["provenance"]["thresholds"]["site_groups_source"] == "metadata" and r["provenance"]["thresholds"]["site_groups_warning"] is None' "the groups' source is stated"
# the same blob without its site_groups key re-samples by the standard fundus and antrum groups
"$PY" -c "
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
del h['__metadata__']['site_groups']
t = json.dumps(h).encode()
t += b' ' * (-len(t) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(t)) + t + b[8 + n:])
" "$MODEL" "$T/nogroups.safetensors" || fail "could not write the blob without site_groups"
"$BIN" endoqc --model "$T/nogroups.safetensors" --out "$T/brief_std.json" "$T/brief.mp4" 2>"$T/brief_std.err" \
    || { cat "$T/brief_std.err"; fail "endoqc with a blob without site_groups"; }
check "$T/brief_std.json" 'r["provenance"]["thresholds"]["site_groups_source"] == "standard" and [g["group"] for g in r["resampling"]] == ["fundus", "antrum"]' "no site_groups: the standard groups"
check "$T/brief_std.json" '[g for g in r["resampling"] if g["group"] == "fundus"][0]["recovered"] and r["verdict"] == "complete"' "no site_groups: the quick fundus is still recovered"
grep -q "warning" "$T/brief_std.err" && { cat "$T/brief_std.err"; fail "standard labels must not warn"; }

# ---- the rule that makes a site seen, and the de-duplication window, are stated --------------------
check "$T/brief_plain.json" 'r["provenance"]["thresholds"]["site_rule"] == "agreement" and "at least 2 classified frames at probability >= 0.5" in r["provenance"]["thresholds"]["site_rule_text"]' "the default rule is stated"
qc brief_method --no-resample --min-frames 1 --min-prob 0 "$T/brief.mp4"
[ $rc -eq 0 ] || fail "endoqc --min-frames 1 --min-prob 0 exited $rc"
check "$T/brief_method.json" 'r["provenance"]["thresholds"]["site_rule"] == "method" and "any classified frame" in r["provenance"]["thresholds"]["site_rule_text"]' "the method's rule is stated"
"$PY" -c "
import json, sys
a, m = (json.load(open(p)) for p in sys.argv[1:3])
# every classified frame counts: a site is seen as soon as it tops one frame, at any probability
for s in m['sites']:
    assert s['seen'] == (s['frames'] > 0), s
assert m['distinct_sites'] >= a['distinct_sites'], (m['distinct_sites'], a['distinct_sites'])
assert set(m['missing_sites']) <= set(a['missing_sites'])
" "$T/brief_plain.json" "$T/brief_method.json" || fail "the method's rule counts every classified site"
check "$T/brief_plain.json" 'r["provenance"]["thresholds"]["dup_window"] == 32 and r["provenance"]["thresholds"]["dup_compared_with"] == "the last 32 kept frames"' "the default window is stated"
qc brief_all --dup-window all "$T/brief.mp4"
[ $rc -eq 0 ] || fail "endoqc --dup-window all exited $rc"
check "$T/brief_all.json" 'r["provenance"]["thresholds"]["dup_window"] == 0 and r["provenance"]["thresholds"]["dup_compared_with"] == "every kept frame"' "--dup-window all is stated"
"$PY" -c "
import json, sys
w, a = (json.load(open(p))['frames'] for p in sys.argv[1:3])
assert a['decoded'] == w['decoded'] and a['duplicates'] >= w['duplicates'] and a['kept'] <= w['kept'], (w, a)
" "$T/brief.json" "$T/brief_all.json" || fail "comparing with every kept frame drops at least what the window drops"

# ---- a truncated file ----------------------------------------------------------------------------
size=$(wc -c < "$T/complete.mp4")
head -c $((size * 55 / 100)) "$T/complete.mp4" > "$T/truncated.mp4"
qc truncated "$T/truncated.mp4"
[ $rc -eq 0 ] || { cat "$T/truncated.err"; fail "a truncated video must still give a report (exit $rc)"; }
check "$T/truncated.json" 'not r["decode"]["complete"] and r["decode"]["truncated"] and "truncated" in r["decode"]["damage"]' "report says the file is truncated"
check "$T/truncated.json" '0.3 * r["video"]["duration_ms"] < r["decode"]["decoded_until_ms"] < 0.8 * r["video"]["duration_ms"]' "decoded about as far as the bytes go"
check "$T/truncated.json" 'r["verdict"] == "incomplete" and r["distinct_sites"] > 5' "what decoded was classified"

# ---- trust and audit (pipelines/trust): refuse an unsigned blob, sign it, audit each result -------
"$BIN" model keygen --out "$T/site" >/dev/null 2>&1 || fail "keygen"
"$BIN" endoqc --quiet --model "$MODEL" --pubkey "$T/site.pub" "$T/complete.mp4" > /dev/null 2>"$T/trust.err"
[ $? -eq 10 ] || fail "an unsigned blob under --pubkey must be refused with exit 10"
cp "$MODEL" "$T/signed.safetensors"
"$BIN" model sign --key "$T/site.key" "$T/signed.safetensors" >/dev/null 2>&1 || fail "sign"
"$BIN" endoqc --quiet --model "$T/signed.safetensors" --pubkey "$T/site.pub" --audit "$T/audit.sqlite" \
    --out "$T/audited.json" "$T/incomplete.mp4" || fail "signed blob refused"
"$BIN" audit verify "$T/audit.sqlite" >/dev/null 2>&1 || fail "audit chain of the endoqc row"
"$PY" -c "
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute('SELECT * FROM audit_log').fetchall()
assert len(rows) == 1 and any('fundus_gc' in str(x) for x in rows[0]), rows
" "$T/audit.sqlite" || fail "one audit row naming the missing sites"

# ---- not a video -----------------------------------------------------------------------------------
echo "not a video" > "$T/bad.mp4"
"$BIN" endoqc --quiet --model "$MODEL" "$T/bad.mp4" > /dev/null 2> "$T/bad.err"; rc=$?
[ $rc -eq 1 ] && grep -q "bad.mp4" "$T/bad.err" || fail "a non-video must fail with exit 1 naming the file (exit $rc)"
"$BIN" endoqc --every 0 "$T/bad.mp4" > /dev/null 2>&1; [ $? -eq 2 ] || fail "bad option must exit 2"
echo "test_endoqc: all checks passed"
