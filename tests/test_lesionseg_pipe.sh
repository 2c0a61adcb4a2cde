#!/bin/sh
# tests/test_lesionseg_pipe.sh - `medinfer lesionseg` end to end on the random-weight blobs of
# tests/ref_lesionseg_pipe.py (input 64; they know nothing, so this checks the mechanics):
#  - against the whole pipeline in PyTorch on a 97 x 61 picture: the mask (except where the two
#    probabilities are within 1e-3), the lesion area and mean probability, the components
#    (scipy's 8-connected labels of the mask PNG: boxes, areas, order), the depth picture (the
#    turbo colour of the reference depth, within 2 steps of 255), the overlay (the image where no
#    lesion is);
#  - odd (97 x 61), large (1000 x 700) and JPEG (333 x 211) inputs: every picture at the original
#    size; --threads 1 and 2 give the same report (apart from timings) and the same bytes;
#  - a folder: its images in name order, the same stem twice kept apart, other files skipped with
#    a reason; a video (rendered by `medinfer endoqc-synth`): every K-th frame with its time, an
#    overlay MP4 with that many frames (read back by medinfer itself: no ffprobe here) at fps / K,
#    the same bytes for 1 and 2 threads; a video cut short: the frames before the cut, status
#    partial, exit 1;
#  - bad inputs beside good ones (a grey PNG, a 1 x 1 PNG, a truncated PNG, a text file, PNG
#    headers claiming 5000 x 4000 and 40000 x 40000, a GIF, a missing file): each a message naming
#    the file and what is wrong, an error entry, the good images still segmented and written, exit
#    1; blobs that preprocess differently refused naming both; a sigmoid head; --audit rows;
#    --truth (Dice 1 against the run's own mask; a reference of another size fails that input).
set -u
bin=${MI_BIN:-build/medinfer}
py=${PYTHON:-/usr/bin/python3}
fx=${MI_FIXTURES:-build/fixtures}
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail() { echo "test_lesionseg_pipe: $*"; exit 1; }
D=$fx/lesionseg_pipe_depth.safetensors
S=$fx/lesionseg_pipe_seg.safetensors
# One thread unless a test compares thread counts: libgomp's spinning barriers make the depth
# network's many short parallel regions crawl when the machine's cores are all busy (60 ms with
# one thread, seconds with two, measured under a load of 12 on 2 cores).
les() { "$bin" lesionseg --depth-model "$D" --seg-model "$S" --quiet --threads 1 "$@"; }

les --out "$t/probe.json" "$fx/lesionseg_pipe.png" 2>"$t/err"
rc=$?
if [ $rc -ne 0 ] && grep -q "is not a network this engine runs" "$t/err"; then
    echo "test_lesionseg_pipe: the engine runs no depthnet/segnet yet ($(cat "$t/err")): skipped"
    exit 77
fi
[ $rc -eq 0 ] || { cat "$t/err"; fail "the fixture picture: exit $rc"; }

# 1. against the PyTorch pipeline
les --out "$t/ref.json" --out-dir "$t/ref" "$fx/lesionseg_pipe.png" || fail "reference picture: exit $?"
"$py" - "$fx" "$t" <<'EOF' || fail "the C pipeline differs from the PyTorch one"
import json, sys
import numpy as np
from PIL import Image
from matplotlib import cm
from scipy import ndimage
fx, t = sys.argv[1:]
margin = np.load(f"{fx}/lesionseg_pipe_margin.npy")
prob = np.load(f"{fx}/lesionseg_pipe_prob.npy")
depth = np.load(f"{fx}/lesionseg_pipe_depth.npy")
doc = json.load(open(f"{t}/ref.json"))
r = doc["results"][0]
assert r["status"] == "ok" and r["kind"] == "image" and (r["width"], r["height"]) == (97, 61), r
m = Image.open(r["outputs"]["mask"])
assert m.mode == "L" and m.size == (97, 61), (m.mode, m.size)
m = np.asarray(m)
assert set(np.unique(m)) <= {0, 255}, np.unique(m)
mask = m == 255
sure = np.abs(margin) > 1e-3
bad = (mask != (margin > 0)) & sure
assert not bad.any(), f"{bad.sum()} mask pixels differ from torch, e.g. {np.argwhere(bad)[:3]}"
assert r["lesion"]["area_px"] == mask.sum(), (r["lesion"], mask.sum())
assert abs(r["lesion"]["area_pct"] - 100 * mask.mean()) < 1e-3, r["lesion"]
assert abs(r["lesion"]["mean_prob"] - prob[mask].mean()) < 1e-3, (r["lesion"], prob[mask].mean())
lab, n = ndimage.label(mask, structure=np.ones((3, 3), int))
assert r["components_total"] == n and len(r["components"]) == min(n, 100), (r["components_total"], n)
comps = []
for k in range(1, n + 1):
    ys, xs = np.nonzero(lab == k)
    comps.append(([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1], len(xs), prob[ys, xs].mean(),
                  20 * depth[ys, xs].mean()))
comps.sort(key=lambda c: -c[1])
for c, e in zip(r["components"], comps):
    x0, y0, x1, y1 = c["box"]
    assert 0 <= x0 < x1 <= 97 and 0 <= y0 < y1 <= 61, c
    assert c["box"] == e[0] and c["area_px"] == e[1], (c, e)
    assert abs(c["mean_prob"] - e[2]) < 1e-3 and abs(c["mean_depth_cm"] - e[3]) < 1e-2, (c, e)
lut = np.rint(cm.get_cmap("turbo")(np.arange(256) / 255)[:, :3] * 255).astype(int)
dp = np.asarray(Image.open(r["outputs"]["depth"]).convert("RGB")).astype(int)
assert dp.shape == (61, 97, 3), dp.shape
idx = np.abs(dp[:, :, None, :] - lut[None, None]).sum(-1).argmin(-1)
assert (np.abs(dp - lut[idx]).sum(-1) == 0).all(), "depth picture has colours outside turbo"
assert np.abs(idx - depth * 255).max() <= 2, np.abs(idx - depth * 255).max()
img = np.asarray(Image.open(f"{fx}/lesionseg_pipe.png").convert("RGB"))
ov = np.asarray(Image.open(r["outputs"]["overlay"]))
assert ov.shape == img.shape and (ov[~mask] == img[~mask]).all() and (ov[mask] != img[mask]).any(), "overlay"
s = doc["settings"]
assert s["seg_output"] == "softmax" and s["mask_threshold"] is None and s["depth_colormap"]["name"] == "turbo", s
assert s["preprocessing"]["input_size"] == 64 and s["preprocessing"]["resize_mode"] == "squash", s
for k in ("depth", "seg"):
    mo = doc["models"][k]
    assert mo["model_version"] == "pipe-test" and len(mo["sha256"]) == 64 and mo["arch"] in ("depthnet", "segnet"), mo
assert doc["engine"]["version"] and "random weights" in doc["note"], doc
print(f"test_lesionseg_pipe: as PyTorch: {mask.sum()} lesion pixels, {n} components, "
      f"{(~sure).sum()} pixels within 1e-3 of a tie")
EOF

# 2. odd, large and JPEG inputs; 1 and 2 threads
"$py" - "$t" <<'EOF' || fail "cannot make the test images"
import sys
import numpy as np
from PIL import Image
t = sys.argv[1]
def pic(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.stack([0.7 + 0.2 * np.sin(6 * x + seed), 0.4 + 0.3 * np.cos(5 * y), 0.35 + 0.2 * np.sin(4 * (x - y))], -1)
    return np.clip(255 * base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
Image.fromarray(pic(97, 61, 1)).save(f"{t}/odd.png")
Image.fromarray(pic(1000, 700, 2)).save(f"{t}/big.png")
Image.fromarray(pic(333, 211, 3)).save(f"{t}/photo.jpg", quality=90)
EOF
les --out "$t/r1.json" --out-dir "$t/o1" "$t/odd.png" "$t/big.png" "$t/photo.jpg" || fail "threads 1: exit $?"
les --threads 2 --out "$t/r2.json" --out-dir "$t/o2" "$t/odd.png" "$t/big.png" "$t/photo.jpg" || fail "threads 2: exit $?"
for f in odd big photo; do for k in mask overlay depth; do
    cmp -s "$t/o1/${f}_$k.png" "$t/o2/${f}_$k.png" || fail "${f}_$k.png differs between 1 and 2 threads"
done; done
"$py" - "$t" <<'EOF' || fail "reports or sizes"
import json, sys
from PIL import Image
t = sys.argv[1]
def core(p):
    d = json.load(open(p))
    d.pop("run")
    for r in d["results"]:
        r.pop("timing_ms")
        r["outputs"] = {k: v.rsplit("/", 1)[-1] for k, v in r["outputs"].items()}
    return d
a, b = core(f"{t}/r1.json"), core(f"{t}/r2.json")
assert a == b, "reports differ between 1 and 2 threads"
sizes = {"odd": (97, 61), "big": (1000, 700), "photo": (333, 211)}
for r in a["results"]:
    name = r["input"].rsplit("/", 1)[-1].split(".")[0]
    assert r["status"] == "ok" and (r["width"], r["height"]) == sizes[name], r
    for k in ("mask", "overlay", "depth"):
        assert r["outputs"][k] == f"{name}_{k}.png", r["outputs"]
        assert Image.open(f"{t}/o1/{name}_{k}.png").size == sizes[name], (name, k)
    assert r["components_total"] >= len(r["components"]) and len(r["components"]) <= 100
    for c in r["components"]:
        x0, y0, x1, y1 = c["box"]
        assert 0 <= x0 < x1 <= r["width"] and 0 <= y0 < y1 <= r["height"] and c["area_px"] <= (x1 - x0) * (y1 - y0), c
assert a["summary"] == {"inputs": 3, "ok": 3, "not_ok": 0, "skipped": 0}, a["summary"]
EOF

# 3. a folder
mkdir -p "$t/dir/sub"
cp "$t/odd.png" "$t/dir/b.png"; cp "$t/photo.jpg" "$t/dir/a.JPG"; cp "$t/odd.png" "$t/dir/a.png"
echo "notes" > "$t/dir/notes.txt"; echo "II*" > "$t/dir/scan.tif"; cp "$t/odd.png" "$t/dir/sub/c.png"
les --out "$t/dir.json" --out-dir "$t/od" "$t/dir" || fail "folder: exit $?"
"$py" - "$t" <<'EOF' || fail "folder"
import json, os, sys
t = sys.argv[1]
d = json.load(open(f"{t}/dir.json"))
names = [r["input"].rsplit("/", 1)[-1] for r in d["results"]]
assert names == ["a.JPG", "a.png", "b.png"], names
stems = [r["outputs"]["mask"].rsplit("/", 1)[-1] for r in d["results"]]
assert stems == ["a_mask.png", "a_2_mask.png", "b_mask.png"], stems
sk = {s["input"].rsplit("/", 1)[-1]: s["reason"] for s in d["skipped"]}
assert set(sk) == {"notes.txt", "scan.tif", "sub"} and "TIFF" in sk["scan.tif"] and "subfolder" in sk["sub"], sk
assert all(os.path.exists(f"{t}/od/{s}") for s in stems)
EOF

# 4. a video: one synthetic site for about 2 s at 10 fps, every 3rd frame -> an overlay at 3 fps
"$bin" endoqc-synth --out "$t/v.mp4" --size 96x64 --fps 10 --skip 2-26 --dwell 2 --no-events --seed 3 >/dev/null 2>&1 ||
    fail "endoqc-synth could not make the test video"
les --every 3 --video-out "$t/v1.mp4" --out "$t/v1.json" "$t/v.mp4" || fail "video: exit $?"
les --every 3 --threads 2 --video-out "$t/v2.mp4" --out "$t/v2.json" "$t/v.mp4" || fail "video, 2 threads: exit $?"
cmp -s "$t/v1.mp4" "$t/v2.mp4" || fail "the overlay video differs between 1 and 2 threads"
les --every 1 --out "$t/vback.json" "$t/v1.mp4" || fail "reading the overlay video back: exit $?"
les --every 4 --out-dir "$t/ov" --out "$t/v3.json" "$t/v.mp4" || fail "video into --out-dir: exit $?"
"$py" - "$t" <<'EOF' || fail "video report"
import json, os, sys
t = sys.argv[1]
def core(p):
    d = json.load(open(p)); d.pop("run")
    for r in d["results"]: r.pop("timing_ms"); r["video_out"].pop("path")
    return d
assert core(f"{t}/v1.json") == core(f"{t}/v2.json"), "video reports differ between 1 and 2 threads"
r = json.load(open(f"{t}/v1.json"))["results"][0]
assert r["status"] == "ok" and r["kind"] == "video" and r["decode_complete"], r
assert r["video"]["width"] == 96 and r["video"]["height"] == 64 and abs(r["video"]["fps"] - 10) < 1e-6, r["video"]
n = r["frames_decoded"]
assert 15 <= n <= 30 and r["frames_segmented"] == (n + 2) // 3 and r["every"] == 3, r
assert [f["index"] for f in r["frames"]] == list(range(0, n, 3)), [f["index"] for f in r["frames"]]
assert [f["t_ms"] for f in r["frames"]] == list(range(0, 100 * n, 300)), [f["t_ms"] for f in r["frames"]]
for f in r["frames"]:
    assert "lesion" in f and "components" in f and f["components_total"] >= len(f["components"]), f
    for c in f["components"]:
        assert 0 <= c["box"][0] < c["box"][2] <= 96 and 0 <= c["box"][1] < c["box"][3] <= 64, c
vo = r["video_out"]
k = r["frames_segmented"]
assert vo["path"].endswith("v1.mp4") and vo["fps"] == 3 and vo["frames"] == k and (vo["width"], vo["height"]) == (96, 64), vo
b = json.load(open(f"{t}/vback.json"))["results"][0]
assert b["frames_decoded"] == k and b["frames_segmented"] == k and abs(b["video"]["fps"] - 3) < 1e-6, b
assert (b["video"]["width"], b["video"]["height"]) == (96, 64), b["video"]
r3 = json.load(open(f"{t}/v3.json"))["results"][0]
assert r3["frames_segmented"] == (n + 3) // 4 and r3["video_out"]["path"].endswith("ov/v_overlay.mp4"), r3["video_out"]
assert os.path.getsize(r3["video_out"]["path"]) > 0 and not os.path.exists(r3["video_out"]["path"] + ".part.mp4")
EOF

# a video cut short (its index is at the front, so it opens): the frames before the cut, status
# partial, exit 1
sz=$(wc -c < "$t/v.mp4")
head -c $((sz * 6 / 10)) "$t/v.mp4" > "$t/vcut.mp4"
les --every 2 --out "$t/vcut.json" "$t/vcut.mp4" 2>"$t/err"
rc=$?
[ $rc -eq 1 ] && grep -q "vcut.mp4: .*truncated" "$t/err" || { cat "$t/err"; fail "cut video: exit $rc, no message"; }
"$py" -c "
import json; r = json.load(open('$t/vcut.json'))['results'][0]
assert r['status'] == 'partial' and not r['decode_complete'] and r['frames_segmented'] > 0 and 'truncated' in r['damage'], r
" || fail "cut video: report"

# 5. bad inputs beside good ones
"$py" - "$t" <<'EOF' || fail "cannot make the bad inputs"
import struct, sys, zlib
import numpy as np
from PIL import Image
t = sys.argv[1]
Image.fromarray(np.asarray(Image.open(f"{t}/odd.png").convert("L"))).save(f"{t}/grey.png")
Image.new("RGB", (1, 1), (200, 80, 90)).save(f"{t}/tiny.png")
raw = open(f"{t}/big.png", "rb").read()
open(f"{t}/cut.png", "wb").write(raw[:len(raw) // 2])
open(f"{t}/notes.png", "w").write("this is not an image\n")
def png(w, h):   # a valid header and an IDAT far too short: only the header may be read
    chunk = lambda k, d: struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
open(f"{t}/wide.png", "wb").write(png(5000, 4000))
open(f"{t}/vast.png", "wb").write(png(40000, 40000))
Image.new("RGB", (64, 64), (200, 80, 90)).save(f"{t}/anim.gif")
EOF
les --out "$t/bad.json" --out-dir "$t/ob" "$t/odd.png" "$t/grey.png" "$t/tiny.png" "$t/cut.png" "$t/notes.png" \
    "$t/wide.png" "$t/vast.png" "$t/anim.gif" "$t/missing.png" "$t/photo.jpg" 2>"$t/err"
rc=$?
[ $rc -eq 1 ] || { cat "$t/err"; fail "bad inputs: exit $rc, expected 1"; }
check() { grep "$1" "$t/err" | grep -q "$2" || { cat "$t/err"; fail "$1: no message saying '$2'"; }; }
check grey.png "grey image"
check tiny.png "1x1 pixels; at least 32x32"
check cut.png "truncated"
check notes.png "neither an image nor a video"
check wide.png "5000x4000 pixels"
check vast.png "40000x40000 pixels"
check wide.png "at most 16777216 pixels"
check anim.gif "a GIF image"
check missing.png "cannot open"
"$py" - "$t" <<'EOF' || fail "bad inputs: report"
import json, os, sys
t = sys.argv[1]
d = json.load(open(f"{t}/bad.json"))
st = [(r["input"].rsplit("/", 1)[-1], r["status"]) for r in d["results"]]
assert [s for _, s in st] == ["ok"] + ["error"] * 8 + ["ok"], st
for r in d["results"][1:-1]:
    assert r["input"].rsplit("/", 1)[-1] in r["error"], r
for n in ("odd", "photo"):
    for k in ("mask", "overlay", "depth"):
        assert os.path.exists(f"{t}/ob/{n}_{k}.png"), (n, k)
assert d["summary"]["ok"] == 2 and d["summary"]["not_ok"] == 8, d["summary"]
EOF

# 6. blobs that preprocess differently; a sigmoid head; the audit trail
for other in "$fx/lesionseg_pipe_seg_mean.safetensors" "$fx/lesionseg_pipe_seg_32.safetensors"; do
    "$bin" lesionseg --depth-model "$D" --seg-model "$other" "$t/odd.png" >/dev/null 2>"$t/err"
    rc=$?
    [ $rc -eq 1 ] && grep -q "$(basename "$D")" "$t/err" && grep -q "$(basename "$other")" "$t/err" &&
        grep -q "preprocess differently" "$t/err" || { cat "$t/err"; fail "$(basename "$other"): exit $rc, not refused naming both"; }
done
"$bin" lesionseg --depth-model "$D" --seg-model "$fx/lesionseg_pipe_seg_sigmoid.safetensors" --quiet --threads 1 --out "$t/sig.json" \
    "$fx/lesionseg_pipe.png" || fail "sigmoid head: exit $?"
"$py" -c "
import json; d = json.load(open('$t/sig.json')); s = d['settings']; r = d['results'][0]
assert s['seg_output'] == 'sigmoid' and s['mask_threshold'] == 0.4, s
assert r['status'] == 'ok' and 0 < r['lesion']['area_pct'] < 100, r['lesion']
" || fail "sigmoid head: report"
les --audit "$t/audit.db" --out "$t/aud.json" "$t/odd.png" "$t/photo.jpg" "$t/v.mp4" || fail "--audit: exit $?"
"$bin" audit verify "$t/audit.db" >"$t/audit.txt" 2>&1 || { cat "$t/audit.txt"; fail "audit chain"; }
grep -q "3 rows" "$t/audit.txt" || { cat "$t/audit.txt"; fail "expected 3 audit rows"; }

# --truth: the run's own mask scores Dice 1; a reference of the wrong size fails that input
mkdir -p "$t/truth"
cp "$t/ref/lesionseg_pipe_mask.png" "$t/truth/"
cp "$t/odd.png" "$t/truth/photo.png"
les --truth "$t/truth" --out-dir "$t/otr" --out "$t/truth.json" "$fx/lesionseg_pipe.png" "$t/big.png" "$t/photo.jpg" 2>"$t/err"
rc=$?
[ $rc -eq 1 ] && grep -q "photo.jpg: --truth: .*photo.png: reference mask is 97x61, the image 333x211" "$t/err" ||
    { cat "$t/err"; fail "--truth: exit $rc, no message on the wrong-sized reference"; }
"$py" -c "
import json; d = json.load(open('$t/truth.json')); r = d['results']
assert r[0]['truth']['dice'] == 1 and r[0]['truth']['iou'] == 1, r[0]['truth']
assert r[1]['truth']['path'] is None and 'error' in r[2]['truth'] and r[2]['status'] == 'ok', (r[1]['truth'], r[2]['truth'])
assert d['summary']['truth_compared'] == 1 and d['summary']['mean_dice'] == 1, d['summary']
import os; assert all(os.path.exists(p) for p in r[2]['outputs'].values()) and len(r[2]['outputs']) == 3, r[2]['outputs']
" || fail "--truth: report"

# 7. usage
les --every 0 "$t/odd.png" 2>/dev/null; [ $? -eq 2 ] || fail "--every 0: expected exit 2"
les --video-out "$t/x.mp4" "$t/v.mp4" "$t/v.mp4" 2>/dev/null; [ $? -eq 2 ] || fail "--video-out with two videos: expected exit 2"
les 2>/dev/null; [ $? -eq 2 ] || fail "no input: expected exit 2"
les --bogus "$t/odd.png" 2>/dev/null; [ $? -eq 2 ] || fail "unknown option: expected exit 2"
echo "test_lesionseg_pipe: passed"
