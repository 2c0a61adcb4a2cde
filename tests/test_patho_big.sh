#!/bin/sh
# no-sanitize (minutes of tiles under ASan say nothing the small tests do not)
# tests/test_patho_big.sh - `medinfer patho` on a 50 000 x 50 000 pixel pyramidal TIFF (built by
# tests/make_big_slide.sh with vips; kept in the build tree, so only the first run pays for it):
#  - peak RSS of the whole run <= 1 GiB (measured by the kernel: getrusage of the child);
#  - tiles per second printed (a figure for the record, never a pass/fail condition);
#  - every analysed tile's result (--tiles CSV) and the report identical for 1 and 2 threads.
# The blobs are the demo V-Net and GCN (2 um/px, 128-pixel tiles: about 9 600 tiles in the grid).
set -u
bin=${MI_BIN:-build/medinfer}
py=${PYTHON:-/usr/bin/python3}
big=${MI_BIG_SLIDE:-build/fixtures/big_50000.tif}
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail() { echo "test_patho_big: $*"; exit 1; }
if [ ! -s "$big" ]; then
    mkdir -p "$(dirname "$big")"
    # vips picks the format by the name's extension; the rename makes a half-built slide never count
    sh tests/make_big_slide.sh "${big%.tif}.partial.tif" 50000 50000 0.5 >/dev/null || fail "make_big_slide.sh failed"
    mv "${big%.tif}.partial.tif" "$big"
fi
run() {   # run THREADS: the report, the tiles CSV, and peak RSS in KiB on stdout
    "$py" - "$@" <<'EOF'
import resource, subprocess, sys, os
threads, out = sys.argv[1], sys.argv[2]
bin_, big = os.environ["MI_BIN_"], os.environ["MI_BIG_"]
r = subprocess.run([bin_, "patho", "--vnet", "weights/patho_vnet_demo.safetensors",
                    "--gcn", "weights/patho_gcn_demo.safetensors", "--quiet", "--threads", threads,
                    "--out", out + ".json", "--tiles", out, big])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(r.returncode)
EOF
}
export MI_BIN_="$bin" MI_BIG_="$big"
rss1=$(run 1 "$t/t1") || fail "1 thread: exit $?"
rss2=$(run 2 "$t/t2") || fail "2 threads: exit $?"
"$py" - "$t/t1.json" "$t/t2.json" "$rss1" "$rss2" <<'EOF' || exit 1
import json, sys
a, b = (json.load(open(p))["results"][0] for p in sys.argv[1:3])
rss = max(int(sys.argv[3]), int(sys.argv[4])) * 1024
t = a["tiles"]
print(f"test_patho_big: {a['slide']['width']} x {a['slide']['height']} px, {t['total']} tiles in the grid, "
      f"{t['read']} read, {t['tissue']} analysed; {t.get('per_second')} tiles/s at 1 thread, "
      f"{b['tiles'].get('per_second')} at 2; peak RSS {rss / 2**20:.0f} MiB")
for r in (a, b):
    r["tiles"].pop("per_second", None)
    r.pop("tiles_csv")
if a != b:
    sys.exit("test_patho_big: the report differs between 1 and 2 threads")
if t["total"] < 9000 or t["read"] < 1000 or t["tissue"] < 100:
    sys.exit("test_patho_big: the slide is not the one this test means to run")
if rss > 2**30:
    sys.exit(f"test_patho_big: peak RSS {rss / 2**20:.0f} MiB > 1 GiB")
EOF
cmp -s "$t/t1/$(basename "$big").tiles.csv" "$t/t2/$(basename "$big").tiles.csv" || fail "tile results differ between 1 and 2 threads"
echo "test_patho_big: passed"
