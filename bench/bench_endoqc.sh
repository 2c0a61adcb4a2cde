#!/bin/sh
# bench/bench_endoqc.sh [BUILD_DIR] - `medinfer endoqc` on a 5-minute 720p 25 fps synthetic
# gastroscopy (H.264, 7,500 frames) with a ResNet-50 at 224 as the site classifier: frames/s per
# stage and end to end, the factor against real time, and where the time goes (decoding and dedup
# on the decoder thread, beside the network: their time overlaps the rest).
#
# The ResNet-50 has random weights (tools/export.py --random) and the demo blob's site metadata,
# so the network's cost is the real one but its answers are noise; resize=224 (the whole field of
# view, shorter side to 224) keeps the work frames the size the measured figures were taken at. Two runs:
#   first pass:  --no-resample: decode, dedup, every 3rd kept frame classified - what an exam
#                in which every site group was found costs
#   worst case:  the defaults; a random network finds no fundus or antrum, so both groups are
#                re-sampled over the whole video: every kept frame ends up classified once
#   window all:  the first pass with --dup-window all (each frame compared with every kept frame,
#                as the method compares any two images, instead of the last 32): its dedup cost
#                and the frames it keeps beside the window's
# The video and blob are made once and kept in BUILD_DIR/bench_endoqc/.
#
# bench/bench_endoqc.sh BUILD_DIR OTHER_MEDINFER: the first pass and the worst case of
# BUILD_DIR/medinfer against another build (e.g. main's, built with `make B=build-old`), in turns
# (ROUNDS rounds, default 3, the order swapped every round) so that a change in the machine's load
# falls on both; prints the median x real time of each and the load average around each run.
set -eu
B=${1:-build}
OTHER=${2:-}
PY=${PYTHON:-/usr/bin/python3}
BIN=$B/medinfer
d=$B/bench_endoqc
mkdir -p "$d"
video=$d/synth_720p25_5min.mp4
blob=$d/resnet50_224_sites_random.safetensors
demo=weights/endoqc_sites_demo.safetensors
threads=${MI_THREADS:-$(nproc)}

if [ ! -f "$video" ]; then
    echo "bench_endoqc: rendering the 5-minute 1280x720 25 fps video (once) ..." >&2
    t0=$(date +%s)
    "$BIN" endoqc-synth --seed 5 --size 1280x720 --fps 25 --duration 300 --out "$video.tmp.mp4" 2>/dev/null
    mv "$video.tmp.mp4" "$video"
    echo "bench_endoqc: rendered in $(( $(date +%s) - t0 )) s" >&2
fi
if [ ! -f "$blob" ]; then
    # labels, site order and groups exactly as the demo blob has them
    "$PY" - "$demo" "$d/meta.json" <<'EOF'
import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]
meta = json.loads(f.read(n))["__metadata__"]
json.dump({k: meta[k] for k in ("labels", "site_order", "site_groups")}, open(sys.argv[2], "w"))
EOF
    "$PY" -c "import json, sys; json.dump(json.loads(json.load(open(sys.argv[1]))['labels']), open(sys.argv[2], 'w'))" \
        "$d/meta.json" "$d/labels.json"
    order=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['site_order'])" "$d/meta.json")
    groups=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['site_groups'])" "$d/meta.json")
    "$PY" tools/export.py --arch resnet50 --random --seed 0 --num-classes 26 --labels "$d/labels.json" \
        --input-size 224 --meta resize=224 --meta "site_order=$order" --meta "site_groups=$groups" \
        --out "$blob" 2>/dev/null
fi

run() {  # NAME [options]
    name=$1; shift
    "${RUN_BIN:-$BIN}" endoqc --quiet --threads "$threads" --model "$blob" --out "$d/$name.json" "$@" "$video"
}

if [ -n "$OTHER" ]; then
    rounds=${ROUNDS:-3}
    rm -f "$d"/cmp_*.json "$d/cmp_load.txt"
    i=1
    while [ $i -le "$rounds" ]; do
        order="other this"; [ $((i % 2)) -eq 0 ] && order="this other"
        for which in $order; do
            RUN_BIN=$BIN; [ $which = other ] && RUN_BIN=$OTHER
            for pass in first worst; do
                opt=; [ $pass = first ] && opt=--no-resample
                echo "$which $pass $i $(cut -d' ' -f1 /proc/loadavg)" >> "$d/cmp_load.txt"
                run "cmp_${which}_${pass}_$i" $opt
                echo "bench_endoqc: round $i $which $pass done" >&2
            done
        done
        i=$((i + 1))
    done
    echo "end end 0 $(cut -d' ' -f1 /proc/loadavg)" >> "$d/cmp_load.txt"
    "$PY" - "$d" "$rounds" "$BIN" "$OTHER" "$threads" <<'EOF'
import json, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
load = [float(l.split()[3]) for l in open(f"{d}/cmp_load.txt")]
print(f"endoqc bench, {sys.argv[3]} (this) against {sys.argv[4]} (other), {sys.argv[5]} threads, "
      f"{rounds} rounds in turns; load average (1 min) before the runs: {min(load):.1f} to {max(load):.1f} "
      f"(median {statistics.median(load):.1f})")
for pass_, title in (("first", "first pass"), ("worst", "worst case")):
    med = {}
    for which in ("other", "this"):
        xs, ts = [], []
        for i in range(1, rounds + 1):
            r = json.load(open(f"{d}/cmp_{which}_{pass_}_{i}.json"))
            video_s = r["decode"]["decoded_until_ms"] / 1000 + 1 / r["video"]["fps"]
            ts.append(r["timing_ms"]["total"] / 1000)
            xs.append(video_s / ts[-1])
        med[which] = statistics.median(xs)
        print(f"  {title:11s} {which:5s}: x real time {' '.join(f'{x:5.2f}' for x in xs)}  median {med[which]:5.2f} "
              f"(total s: {' '.join(f'{t:.1f}' for t in ts)})")
    print(f"  {title:11s} this / other: {med['this'] / med['other']:.2f}")
EOF
    exit 0
fi

run first --no-resample
run worst
run first_all --no-resample --dup-window all

"$PY" - "$d/first.json" "$d/worst.json" "$threads" "$d/first_all.json" <<'EOF'
import json, sys
print(f"endoqc bench: 5-minute 1280x720 25 fps H.264 synthetic gastroscopy, ResNet-50 at 224 "
      f"(random weights, 26 sites), {sys.argv[3]} threads")
for path, title in ((sys.argv[1], "first pass (every 3rd kept frame classified, no re-sampling)"),
                    (sys.argv[2], "worst case (every kept frame classified)")):
    r = json.load(open(path))
    t, f = r["timing_ms"], r["frames"]
    video_s = r["decode"]["decoded_until_ms"] / 1000 + 1 / r["video"]["fps"]
    total = t["total"] / 1000
    # decoding and dedup run on the decoder thread beside the rest: their seconds are that thread's
    # and overlap the network's; what the network's thread lost to them is the wait
    beside = [("decode + scale", t["decode"], f["decoded"]),
              ("hash + dedup", t["dedup"], f["decoded"])]
    rows = [("sha256 of the file", t["hash_file"], None),
            ("waiting for the decoder", t["decode_wait"], None),
            ("preprocess", t["preprocess"], f["classified"]),
            ("classify (ResNet-50)", t["classify"], f["classified"]),
            ("re-sampling (2nd pass)", t["resample"], f["classified_resampling"])]
    print(f"\n{title}: decoded {f['decoded']}, dark {f['dark']}, duplicates {f['duplicates']}, kept "
          f"{f['kept']}, classified {f['classified']} + {f['classified_resampling']} by re-sampling")
    print(f"  {'stage':26s} {'seconds':>8s} {'frames':>7s} {'frames/s':>9s} {'share':>6s}")
    for name, ms, n in beside + rows:
        fps = f"{n / (ms / 1000):9.1f}" if n and ms > 0 else f"{'':9s}"
        mark = " (decoder thread)" if (name, ms, n) in beside else ""
        print(f"  {name:26s} {ms / 1000:8.2f} {n if n is not None else '':>7} {fps} {100 * ms / t['total']:5.1f}%{mark}")
    other = t["total"] - sum(ms for _, ms, _ in rows)
    print(f"  {'other (open, report)':26s} {other / 1000:8.2f} {'':7s} {'':9s} {100 * other / t['total']:5.1f}%")
    print(f"  end to end: {total:.1f} s for {video_s:.0f} s of video = {f['decoded'] / total:.1f} frames/s, "
          f"{video_s / total:.2f}x real time ({'faster' if video_s > total else 'SLOWER'} than real time)")
w, a = (json.load(open(p)) for p in (sys.argv[1], sys.argv[4]))
print("\nde-duplication window (first pass):")
for title, r in (("last 32 kept frames", w), ("every kept frame", a)):
    print(f"  {title:22s} kept {r['frames']['kept']:6d}, classified {r['frames']['classified']:5d}, "
          f"dedup {r['timing_ms']['dedup'] / 1000:6.2f} s, total {r['timing_ms']['total'] / 1000:6.1f} s")
EOF
