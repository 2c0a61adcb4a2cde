#!/bin/sh
# tests/test_patho.sh - `medinfer patho` end to end on the picture and random-weight blobs of
# tests/ref_patho.py:
#  - against the Python pipeline (tools/patho_ref.py, vnet_ref, gcn_ref): the same tiles kept,
#    each tile's score S within 1e-4 relative, the same top-K order and graph edges, class
#    probabilities within 1e-4;
#  - 1 and 2 threads, batch 1 and 3: identical tiles, scores (every tile's, --tiles CSV),
#    probabilities and regions;
#  - the heat-map PNG and the GeoJSON (polygons inside the image, closed rings) are written, and
#    an audit row per slide;
#  - a white picture: status no_tissue, exit 4;
#  - bad inputs: a missing file, a text file, a truncated slide, a blob of the wrong kind, each a
#    clear message naming the file and exit 1, while the good slide's result in the same run is
#    kept.
set -u
bin=${MI_BIN:-build/medinfer}
py=${PYTHON:-/usr/bin/python3}
fx=${MI_FIXTURES:-build/fixtures}
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail() { echo "test_patho: $*"; exit 1; }
img=$fx/patho_e2e.png
patho() { "$bin" patho --vnet "$fx/patho_e2e_vnet.safetensors" --gcn "$fx/patho_e2e_gcn.safetensors" \
              --slide-mpp 2 --tissue-gray 215 --quiet "$@"; }

patho --out "$t/a.json" --heatmap "$t/pics" --geojson "$t/pics" --audit "$t/audit.db" "$img" || fail "exit $?"
"$py" - "$fx/patho_e2e.json" "$t/a.json" <<'EOF' || fail "C pipeline differs from the Python one"
import json, sys
ref = json.load(open(sys.argv[1]))
res = json.load(open(sys.argv[2]))["results"][0]
assert res["status"] == "classified", res["status"]
assert res["tiles"]["tissue"] == len(ref["kept"]), (res["tiles"], len(ref["kept"]))
top = [[t["col"], t["row"]] for t in res["top_tiles"]]
assert top == ref["top"], (top, ref["top"])
score = {tuple(k): s for k, s in zip(ref["kept"], ref["scores"])}
for t in res["top_tiles"]:
    s = score[(t["col"], t["row"])]
    assert abs(t["score"] - s) <= 1e-4 * abs(s), (t, s)
assert res["graph"]["edges"] == ref["edges"], (res["graph"], ref["edges"])
for lab, p in zip(ref["labels"], ref["probabilities"]):
    assert abs(res["probabilities"][lab] - p) <= 1e-4, (lab, res["probabilities"][lab], p)
print(f"test_patho: {len(ref['kept'])} tiles, top {len(top)}, {ref['edges']} edges, class {res['class']}: as the Python pipeline")
EOF

# any thread count and batch: the same answer
patho --out "$t/b.json" --threads 1 --batch 1 --geojson "$t/g1" --tiles "$t/g1" "$img" || fail "1 thread: exit $?"
patho --out "$t/c.json" --threads 2 --batch 3 --geojson "$t/g2" --tiles "$t/g2" "$img" || fail "2 threads: exit $?"
"$py" - "$t/a.json" "$t/b.json" "$t/c.json" <<'EOF' || fail "results depend on threads or batch"
import json, sys
def core(p):
    r = json.load(open(p))["results"][0]
    r["tiles"].pop("per_second", None)
    return {k: r[k] for k in ("class", "probabilities", "top_tiles", "graph", "tiles")}
a, b, c = (core(p) for p in sys.argv[1:])
assert a == b == c
EOF
cmp -s "$t/g1/patho_e2e.png.geojson" "$t/g2/patho_e2e.png.geojson" || fail "regions depend on threads or batch"
cmp -s "$t/g1/patho_e2e.png.tiles.csv" "$t/g2/patho_e2e.png.tiles.csv" || fail "tile scores depend on threads or batch"
[ "$(wc -l < "$t/g1/patho_e2e.png.tiles.csv")" -eq 29 ] || fail "tiles.csv: want a header and 28 tiles"

# pictures and regions
[ -s "$t/pics/patho_e2e.png.heatmap.png" ] || fail "no heat-map"
"$py" - "$t/pics/patho_e2e.png.geojson" "$t/pics/patho_e2e.png.heatmap.png" <<'EOF' || fail "bad GeoJSON or heat-map"
import json, sys
from PIL import Image
g = json.load(open(sys.argv[1]))
assert g["type"] == "FeatureCollection" and g["features"], "no regions"
for f in g["features"]:
    assert f["geometry"]["type"] == "Polygon" and f["properties"]["objectType"] == "annotation"
    assert f["properties"]["classification"]["name"]
    for ring in f["geometry"]["coordinates"]:
        assert ring[0] == ring[-1] and len(ring) >= 5, ring[:3]
        for x, y in ring:
            assert 0 <= x <= 448 and 0 <= y <= 320, (x, y)
im = Image.open(sys.argv[2])
assert im.size[0] >= 448 and im.size[1] > 320, im.size
EOF
"$bin" audit verify "$t/audit.db" >"$t/audit.txt" 2>&1 || { cat "$t/audit.txt"; fail "audit chain"; }
grep -q "1 rows\|1 row" "$t/audit.txt" || { cat "$t/audit.txt"; fail "expected 1 audit row"; }

# a white picture has no tissue: a result, exit 4
"$py" -c "from PIL import Image; Image.new('RGB', (256, 192), (246, 246, 246)).save('$t/white.png')"
patho --out "$t/w.json" "$t/white.png"
rc=$?
[ $rc -eq 4 ] || fail "white picture: exit $rc, want 4"
grep -q '"status":	"no_tissue"' "$t/w.json" || fail "white picture: no no_tissue status"

# bad inputs: each named, exit 1, the good slide's result kept
head -c 20000 ../shared/data/wsi-he/CMU-1-Small-Region.svs > "$t/cut.svs" 2>/dev/null || \
    head -c 20000 "$img" > "$t/cut.svs"
echo "not a slide" > "$t/text.svs"
patho --out "$t/bad.json" "$img" "$t/missing.svs" "$t/text.svs" "$t/cut.svs" 2>"$t/err"
rc=$?
[ $rc -eq 1 ] || fail "bad inputs: exit $rc, want 1"
for f in missing.svs text.svs cut.svs; do grep -q "$f" "$t/err" || fail "bad inputs: no message naming $f"; done
"$py" -c "
import json, sys
r = json.load(open('$t/bad.json'))['results']
assert [x['status'] for x in r] == ['classified', 'error', 'error', 'error'], [x['status'] for x in r]
" || fail "bad inputs: the good result was not kept"
"$bin" patho --vnet "$fx/patho_e2e_gcn.safetensors" --gcn "$fx/patho_e2e_gcn.safetensors" "$img" 2>"$t/err2" >/dev/null
rc=$?
[ $rc -eq 1 ] && grep -q "patho_e2e_gcn.safetensors" "$t/err2" || fail "a GCN blob as the V-Net: exit $rc, $(cat "$t/err2")"
"$bin" patho --vnet "$fx/patho_e2e_vnet.safetensors" --gcn "$fx/patho_e2e_vnet.safetensors" "$img" 2>"$t/err3" >/dev/null
rc=$?
[ $rc -eq 1 ] && grep -q "patho_e2e_vnet.safetensors" "$t/err3" || fail "a V-Net blob as the GCN: exit $rc, $(cat "$t/err3")"
echo "test_patho: passed"
