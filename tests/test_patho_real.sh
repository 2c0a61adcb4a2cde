#!/bin/sh
# tests/test_patho_real.sh - `medinfer patho` on the real Aperio slide CMU-1-Small-Region.svs in
# ../shared/data (skipped, exit 77, when it is absent):
#  - with the demo blobs: it opens (aperio, 2220 x 2967, 0.499 um/px), is tiled at the model's
#    2 um/px, gives a classified report with its top tiles inside the slide, a heat-map of the
#    thumbnail's size, and the note that the model knows only synthetic lesions;
#  - with the random-weight blobs of tests/ref_patho.py (which call much of anything lesion, so
#    that there are regions to check): a GeoJSON whose every polygon is closed and lies inside the
#    slide's level-0 bounds.
set -u
bin=${MI_BIN:-build/medinfer}
py=${PYTHON:-/usr/bin/python3}
fx=${MI_FIXTURES:-build/fixtures}
svs=${MI_SHARED_DATA:-../shared/data}/wsi-he/CMU-1-Small-Region.svs
[ -f "$svs" ] || { echo "test_patho_real: $svs is absent: skipped"; exit 77; }
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail() { echo "test_patho_real: $*"; exit 1; }

"$bin" patho --vnet weights/patho_vnet_demo.safetensors --gcn weights/patho_gcn_demo.safetensors --quiet \
    --out "$t/demo.json" --heatmap "$t" --geojson "$t" "$svs" || fail "demo blobs: exit $?"
"$bin" patho --vnet "$fx/patho_e2e_vnet.safetensors" --gcn "$fx/patho_e2e_gcn.safetensors" --tile 128 --quiet \
    --out "$t/e2e.json" --geojson "$t/e2e" "$svs" || fail "random blobs: exit $?"
"$py" - "$t" <<'EOF' || fail "report, heat-map or regions wrong"
import json, sys
from PIL import Image
t = sys.argv[1]
doc = json.load(open(f"{t}/demo.json"))
r = doc["results"][0]
assert r["status"] == "classified", r["status"]
s = r["slide"]
assert (s["vendor"], s["width"], s["height"], s["levels"]) == ("aperio", 2220, 2967, 1), s
assert abs(s["mpp"] - 0.499) < 1e-9 and s["mpp_source"] == "slide", s
assert r["tiles"]["tissue"] > 0 and r["tiles"]["read"] < r["tiles"]["total"], r["tiles"]
for tile in r["top_tiles"]:
    assert 0 <= tile["x"] < 2220 and 0 <= tile["y"] < 2967, tile
assert "synthetic" in doc.get("note", ""), doc.get("note")
im = Image.open(r["heatmap"])
assert im.size[0] >= 1533 and im.size[1] >= 2048, im.size
json.load(open(r["geojson"]))
g = json.load(open(f"{t}/e2e/CMU-1-Small-Region.svs.geojson"))
assert g["features"], "no regions from the random-weight model"
n = 0
for f in g["features"]:
    for ring in f["geometry"]["coordinates"]:
        assert ring[0] == ring[-1] and len(ring) >= 5
        for x, y in ring:
            assert 0 <= x <= 2220 and 0 <= y <= 2967, (x, y)
            n += 1
print(f"test_patho_real: {r['class']} (p={r['probabilities'][r['class']]:.2f}), {r['tiles']['tissue']} tissue tiles "
      f"of {r['tiles']['total']}; {len(g['features'])} regions, {n} vertices inside 2220 x 2967")
EOF
echo "test_patho_real: passed"
