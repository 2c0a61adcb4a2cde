"""tests/ref_patho_steps.py - fixtures for tests/test_patho_steps.c: tools/patho_ref.py's tissue,
stain and graph steps on synthetic images, on the real H&E tiles of ../shared/data/wsi-he/tiles
(when present; read as PIL's RGB, which drops alpha as stb_image does), and on random features.

patho_steps.safetensors   synthetic cases and the graph steps; metadata "cases" and "tiles" list
                          the image cases, "tiles" those the C must load from the PNG itself
Per image case <c>: <c>.rgb (U8, synthetic only), <c>.gray (U8), <c>.otsu (I64), <c>.ratio (F64),
<c>.mk_status (I64: 0 fitted, 1 too little stain (patho_ref None), 2 degenerate: numpy's solve
raised or a maxC is not > 0), <c>.he (F64 3x2), <c>.maxc (F64 2), <c>.mk_norm (U8, fitted only),
<c>.rh_fit (F64 6: mean then std), <c>.rh_norm (U8).
Normalization references: ref.he, ref.maxc (Macenko's published H&E reference), ref.rh (F64 6:
Reinhard statistics of the synthetic H&E tile).
Graph: g.feat (F32 K x F) with duplicate rows, a constant row and a zero row; g.pearson,
g.cosine (F64 K x K); g.adj<i> (F32) for the settings in metadata "adj"; g.scores (F32, with
ties), g.top<k> (I64) for k in metadata "topk" (one beyond K)."""
import glob
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

import mi_ref

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import patho_ref  # noqa: E402

rng = np.random.default_rng(7)
T = {}


def put(name, a):
    T[name] = torch.from_numpy(np.ascontiguousarray(a))


def image_case(name, rgb, store_rgb=True):
    if store_rgb:
        put(name + ".rgb", rgb)
    g = patho_ref.gray(rgb)
    t = patho_ref.otsu(g)
    put(name + ".gray", g)
    put(name + ".otsu", np.array([t], dtype=np.int64))
    put(name + ".ratio", np.array([patho_ref.tissue_ratio(g, t)]))
    status, he, maxc = 0, np.zeros((3, 2)), np.zeros(2)
    try:
        fit = patho_ref.macenko_fit(rgb)
        if fit is None:
            status = 1
        else:
            he, maxc = fit
            if not (np.all(np.isfinite(maxc)) and np.all(maxc > 0)):
                status = 2
    except np.linalg.LinAlgError:
        status = 2
    put(name + ".mk_status", np.array([status], dtype=np.int64))
    put(name + ".he", he)
    put(name + ".maxc", maxc)
    if status == 0:
        put(name + ".mk_norm", patho_ref.macenko_normalize(rgb, HE_REF, MAXC_REF))
    mean, std = patho_ref.reinhard_fit(rgb)
    put(name + ".rh_fit", np.concatenate([mean, std]))
    put(name + ".rh_norm", patho_ref.reinhard_normalize(rgb, RH_REF[:3], RH_REF[3:]))


def synth_he(h, w):
    """an H&E-like tile: hematoxylin and eosin concentrations in blobs over white background"""
    he = np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]])
    he /= np.linalg.norm(he, axis=0)
    yy, xx = np.mgrid[0:h, 0:w]
    c_h = np.clip(1.2 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.normal(0, 0.15, (h, w)), 0, None)
    c_e = np.clip(0.8 + 0.4 * np.sin((xx + yy) / 21.0) + rng.normal(0, 0.1, (h, w)), 0, None)
    c_e[:, : w // 5] = 0
    c_h[:, : w // 5] = 0                                   # a band of background
    od = np.stack([c_h, c_e], -1) @ he.T
    return np.clip(np.rint(240 * np.exp(-od) - 1 + rng.normal(0, 1.5, od.shape)), 0, 255).astype(np.uint8)


HE_REF = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])   # Macenko's reference
MAXC_REF = np.array([1.9705, 1.0308])
he_tile = synth_he(256, 256)
RH_REF = np.concatenate(patho_ref.reinhard_fit(he_tile))
put("ref.he", HE_REF)
put("ref.maxc", MAXC_REF)
put("ref.rh", RH_REF)

cases = []


def add(name, rgb):
    cases.append(name)
    image_case(name, rgb)


add("synth_he", he_tile)
add("synth_he_odd", synth_he(37, 91))
add("white", np.full((64, 64, 3), 255, np.uint8))
add("black", np.zeros((16, 16, 3), np.uint8))
add("single", np.tile(np.array([150, 80, 160], np.uint8), (32, 32, 1)))
few = np.full((64, 64, 3), 250, np.uint8)
few[:7, :7] = (120, 60, 140)                               # 49 stained pixels: too few
add("few_stained", few)
add("one_pixel", np.array([[[10, 200, 30]]], np.uint8))
add("noise", rng.integers(0, 256, (61, 47, 3), dtype=np.uint8))
two = np.full((20, 30, 3), 230, np.uint8)
two[5:, :] = (90, 40, 120)
add("two_values", two)

tiles = []
root = os.environ.get("MI_SHARED_DATA") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                         "shared", "data")
paths = sorted(glob.glob(os.path.join(root, "wsi-he", "tiles", "*.png")))
if not paths:
    print("ref_patho_steps: no real tiles under %s/wsi-he/tiles: only synthetic cases" % root)
for p in paths:
    name = "tile:" + os.path.basename(p)
    tiles.append(os.path.basename(p))
    image_case(name, np.array(Image.open(p).convert("RGB")), store_rgb=False)

# ---- graph steps
K, F = 40, 16
f = rng.standard_normal((K, F)).astype(np.float32)
f[5] = f[9]                                   # duplicate rows: similarity 1 within rounding
f[12] = 0.3                                   # constant: zero variance (pearson 0), cosine defined
f[13] = 0.0                                   # zero: 0 under both
f[20:30] += 1.5 * rng.standard_normal(F).astype(np.float32)   # a cluster
put("g.feat", f)
put("g.pearson", patho_ref.pearson(f))
put("g.cosine", patho_ref.cosine(f))
adj = [("pearson", "ge", 0.3), ("cosine", "abs_ge", 0.2), ("pearson", "abs_ge", 0.5), ("cosine", "ge", 1.5)]
for i, (m, c, t) in enumerate(adj):
    put("g.adj%d" % i, patho_ref.adjacency(f, m, c, t))
scores = rng.standard_normal(K).astype(np.float32)
scores[[3, 17, 31]] = scores[8]               # ties: broken by ascending index
scores[[22, 23]] = np.float32(np.inf)
scores[25] = np.float32(-np.inf)
put("g.scores", scores)
ks = [1, 4, 10, K, K + 5]
for k in ks:
    put("g.top%d" % k, np.array(patho_ref.top_k([float(s) for s in scores], k), dtype=np.int64))

meta = {"cases": json.dumps(cases), "tiles": json.dumps(tiles), "adj": json.dumps(adj), "topk": json.dumps(ks)}
mi_ref.export.write_safetensors(os.path.join(mi_ref.out_dir(), "patho_steps.safetensors"), T, meta)
