#!/bin/sh
# no-sanitize: a dozen full videos through ResNet-18 under ASan would take most of the CI budget;
# tests/test_endoqc.c and tests/test_endoqc_real.sh run the same code paths under the sanitizers.
# tests/test_endoqc_batch.sh - `medinfer endoqc --batch`: one row per exam in SQLite, never
# overwritten (UPDATE/DELETE refused), a batch killed mid-way loses no finished exam and a rerun
# resumes; the drift rule: no alert at a low incomplete share, the reference set run above it, and
# model_update_required (JSON, database, exit 3) when the reference shares disagree; a batch
# under the minimum exam count is not judged.
set -u
. "$(dirname "$0")/endoqc_lib.sh"
sql() { "$PY" -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "$@"; }
[ -f "$MODEL" ] || fail "$MODEL is missing"

"$BIN" endoqc-synth --seed 21 --out "$T/a_complete.mp4" 2>/dev/null || fail "render a"
"$BIN" endoqc-synth --seed 22 --skip fundus --out "$T/b_nofundus.mp4" 2>/dev/null || fail "render b"
"$BIN" endoqc-synth --seed 23 --skip antrum,1 --out "$T/c_noantrum.mp4" 2>/dev/null || fail "render c"
printf 'a_complete.mp4\n# a comment line\n\nb_nofundus.mp4\nc_noantrum.mp4\n' > "$T/list.txt"
run() {  # OUT DB [options]: exit status in $rc
    out=$1; db=$2; shift 2
    "$BIN" endoqc --quiet --model "$MODEL" --db "$db" --out "$out" "$@"; rc=$?
}

# ---- interrupted batch: kill -9 after the first exam is stored, then resume ----------------------
"$BIN" endoqc --quiet --model "$MODEL" --db "$T/r.sqlite" --batch "$T/list.txt" --out "$T/killed.json" &
pid=$!
n=0
for i in $(seq 1 600); do
    n=$(sql "$T/r.sqlite" "SELECT count(*) FROM exams" 2>/dev/null || echo 0)
    [ "${n:-0}" -ge 1 ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
n=$(sql "$T/r.sqlite" "SELECT count(*) FROM exams")
[ "$n" -ge 1 ] && [ "$n" -lt 3 ] || fail "expected the kill to land between exams 1 and 3 (rows: $n)"
first=$(sql "$T/r.sqlite" "SELECT id || ' ' || video_sha256 || ' ' || verdict FROM exams ORDER BY id LIMIT 1")
run "$T/resumed.json" "$T/r.sqlite" --batch "$T/list.txt"
[ $rc -eq 0 ] || [ $rc -eq 3 ] || fail "resumed batch exited $rc"
[ "$(sql "$T/r.sqlite" "SELECT count(*) FROM exams")" -eq 3 ] || fail "resume must add only the missing exams"
[ "$(sql "$T/r.sqlite" "SELECT id || ' ' || video_sha256 || ' ' || verdict FROM exams ORDER BY id LIMIT 1")" = "$first" ] \
    || fail "the first exam's row changed"
check "$T/resumed.json" 'r["exams"][0]["status"] == "resumed" and r["exams"][2]["status"] == "done" and r["counts"]["exams"] == 3' "resume statuses"
check "$T/resumed.json" '[e["verdict"] for e in r["exams"]] == ["complete", "incomplete", "incomplete"]' "batch verdicts"
check "$T/resumed.json" 'r["exams"][1]["missing_sites"] == ["fundus_gc", "fundus_pw", "fundus_aw", "fundus_lc"]' "missing sites of exam b"
check "$T/resumed.json" 'r["exams"][2]["missing_sites"] == ["oesophagus", "antrum_gc", "antrum_pw", "antrum_aw", "antrum_lc"]' "missing sites of exam c"
# the database refuses to overwrite results
"$PY" -c "
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
for q in ('UPDATE exams SET verdict=\"complete\"', 'DELETE FROM exams', 'UPDATE batches SET model_update_required=0'):
    try:
        c.execute(q); c.commit()
    except sqlite3.DatabaseError as e:
        assert 'append-only' in str(e), e
    else:
        sys.exit('accepted: ' + q)
" "$T/r.sqlite" || fail "results must be append-only"
[ "$(sql "$T/r.sqlite" "SELECT count(*) FROM exams WHERE report_json LIKE '%\"verdict\"%'")" -eq 3 ] || fail "full reports stored"

# ---- drift ---------------------------------------------------------------------------------------
# 2 of 3 incomplete (67% > 20%): the reference set runs. Labelled as predicted: no update.
printf 'video,label\na_complete.mp4,complete\nb_nofundus.mp4,incomplete\nc_noantrum.mp4,incomplete\n' > "$T/refs_ok.csv"
# at the default minimum of 20 exams a batch of 3 is not judged at all
run "$T/small.json" "$T/r.sqlite" --batch "$T/list.txt" --reference "$T/refs_ok.csv"
[ $rc -eq 0 ] || fail "a batch under the minimum: exit $rc, expected 0"
check "$T/small.json" 'r["drift"]["min_exams"] == 20 and not r["drift"]["judged"] and not r["drift"]["alerted"] and not r["drift"]["reference_run"]' "3 exams are not judged"
run "$T/drift_ok.json" "$T/r.sqlite" --batch "$T/list.txt" --reference "$T/refs_ok.csv" --drift-min-exams 3
[ $rc -eq 0 ] || fail "agreeing reference set: exit $rc, expected 0"
check "$T/drift_ok.json" 'r["drift"]["alerted"] and r["drift"]["reference_run"] and not r["model_update_required"]' "alert, reference run, no update"
check "$T/drift_ok.json" 'abs(r["drift"]["incomplete_share"] - 2/3) < 1e-9 and r["drift"]["reference_predicted_share"] == r["drift"]["reference_labelled_share"]' "shares"
# labels saying all three are incomplete: labelled 100% vs predicted 67% -> 33 points > 5
printf 'a_complete.mp4,incomplete\nb_nofundus.mp4,incomplete\nc_noantrum.mp4,incomplete\n' > "$T/refs_bad.csv"
run "$T/drift_bad.json" "$T/r.sqlite" --batch "$T/list.txt" --reference "$T/refs_bad.csv" --drift-min-exams 3
[ $rc -eq 3 ] || fail "disagreeing reference set: exit $rc, expected 3"
check "$T/drift_bad.json" 'r["model_update_required"] and r["drift"]["reference_labelled_share"] == 1.0' "model_update_required in the JSON"
[ "$(sql "$T/r.sqlite" "SELECT model_update_required FROM batches ORDER BY id DESC LIMIT 1")" -eq 1 ] || fail "model_update_required in the database"
# a tolerance wider than the gap: no update
run "$T/drift_tol.json" "$T/r.sqlite" --batch "$T/list.txt" --reference "$T/refs_bad.csv" --drift-tolerance 40 --drift-min-exams 3
[ $rc -eq 0 ] || fail "--drift-tolerance 40: exit $rc"
# a batch of one complete exam: 0% incomplete, no alert, the reference set is not run
echo a_complete.mp4 > "$T/one.txt"
run "$T/noalert.json" "$T/r.sqlite" --batch "$T/one.txt" --reference "$T/refs_bad.csv" --drift-min-exams 1
[ $rc -eq 0 ] || fail "no-alert batch: exit $rc"
check "$T/noalert.json" 'not r["drift"]["alerted"] and not r["drift"]["reference_run"] and not r["model_update_required"]' "no alert"
# every run above is a batch row; exams were stored once each (reference runs reuse them)
[ "$(sql "$T/r.sqlite" "SELECT count(*) FROM batches")" -eq 6 ] || fail "one batches row per run"
[ "$(sql "$T/r.sqlite" "SELECT count(*) FROM exams")" -eq 3 ] || fail "exams stored once"
# a missing video fails that exam, not the batch
printf 'a_complete.mp4\nnot_there.mp4\n' > "$T/missing.txt"
run "$T/missing.json" "$T/r.sqlite" --batch "$T/missing.txt"
[ $rc -eq 1 ] || fail "a missing video: exit $rc, expected 1"
check "$T/missing.json" 'r["exams"][1]["status"] == "failed" and r["exams"][0]["status"] == "resumed"' "failed exam reported, others kept"
echo "test_endoqc_batch: all checks passed"
