#!/bin/sh
# tools/endoqc_rule_eval.sh [OUT-DIR] - what the choice of site rule costs, measured on seeded
# synthetic exams (medinfer endoqc-synth, the shipped demo blob):
#
#   agreement  a site is seen when >= 2 classified frames have it as top class at p >= 0.5 (default)
#   method     a site is seen when any classified frame has it as top class (--min-frames 1
#              --min-prob 0), as the published method counts distinct classified sites
#
# 20 exams, seeds 300-319: 6 complete, 4 complete with three sites passed quickly (--brief), 4
# with three sites never shown (still complete: 23 > 22), 6 with four to eight sites never shown
# (incomplete). Truth: incomplete when the rendered sites are <= 22, as the verdict rule says.
# Prints, per rule, how many exams are flagged incomplete and how many verdicts are wrong either
# way; then the de-duplication window (last 32 kept frames against every kept frame) on the same
# exams: frames kept and dedup time. Times are of this machine while it runs, not a benchmark.
#
#   sh tools/endoqc_rule_eval.sh /tmp/rules     (20-50 minutes on 2 cores; rerun to resume)
set -eu
BIN=${MI_BIN:-build/medinfer}
PY=${PYTHON:-python3}
MODEL=weights/endoqc_sites_demo.safetensors
OUT=${1:-$(mktemp -d)}
mkdir -p "$OUT"

exam() {  # SEED NAME [endoqc-synth options]; an exam listed in exams.txt is done (rerun resumes)
    seed=$1; name=$2; shift 2
    grep -qx "$name" "$OUT/exams.txt" && return 0
    "$BIN" endoqc-synth --seed "$seed" --out "$OUT/$name.mp4" --truth "$OUT/$name.csv" "$@" 2>/dev/null
    for rule in agreement method all; do
        case $rule in
            agreement) opt="" ;;
            method) opt="--min-frames 1 --min-prob 0" ;;
            all) opt="--dup-window all" ;;
        esac
        # shellcheck disable=SC2086
        "$BIN" endoqc --quiet --model "$MODEL" $opt --out "$OUT/$name.$rule.json" "$OUT/$name.mp4" || true
    done
    echo "$name" >> "$OUT/exams.txt"
}

touch "$OUT/exams.txt"
s=300
for i in 1 2 3 4 5 6; do exam $s "complete_$i"; s=$((s + 1)); done
for b in 17,21,24 3,9,13 18,22,25 5,10,14; do exam $s "brief_$s" --brief "$b"; s=$((s + 1)); done
for k in 2,11,25 17,20,23 4,8,15 12,19,26; do exam $s "skip3_$s" --skip "$k"; s=$((s + 1)); done
for k in 17-20 3-6 2,11,17,25 9-12,21 13-16,24-26 1,7,8,17,18; do exam $s "skip_$s" --skip "$k"; s=$((s + 1)); done

"$PY" - "$OUT" <<'EOF'
import csv, json, os, sys
out = sys.argv[1]
names = open(os.path.join(out, "exams.txt")).read().split()
rows = {r: {"flagged": 0, "wrong_complete": 0, "wrong_incomplete": 0} for r in ("agreement", "method")}
truth_incomplete = 0
kept = {"window": 0, "all": 0}
dedup = {"window": 0, "all": 0}
for n in names:
    shown = sum(1 for r in csv.DictReader(open(os.path.join(out, n + ".csv"))) if r["rendered"] != "0")
    incomplete = shown <= 22
    truth_incomplete += incomplete
    for rule in rows:
        r = json.load(open(os.path.join(out, f"{n}.{rule}.json")))
        flagged = r["verdict"] == "incomplete"
        rows[rule]["flagged"] += flagged
        rows[rule]["wrong_complete"] += incomplete and not flagged
        rows[rule]["wrong_incomplete"] += flagged and not incomplete
    for mode, f in (("window", "agreement"), ("all", "all")):
        r = json.load(open(os.path.join(out, f"{n}.{f}.json")))
        kept[mode] += r["frames"]["kept"]
        dedup[mode] += r["timing_ms"]["dedup"]
print(f"{len(names)} exams, {truth_incomplete} incomplete by construction")
print(f"{'rule':<10} {'flagged':>8} {'wrongly complete':>17} {'wrongly incomplete':>19}")
for rule, v in rows.items():
    print(f"{rule:<10} {v['flagged']:>8} {v['wrong_complete']:>17} {v['wrong_incomplete']:>19}")
print(f"dedup window 32: {kept['window']} frames kept, {dedup['window']:.0f} ms dedup in all")
print(f"dedup all:       {kept['all']} frames kept, {dedup['all']:.0f} ms dedup in all")
EOF
