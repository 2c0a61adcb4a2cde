"""tests/ref_assist_quality.py OUT - fixtures for tests/test_assist_quality.c: frames and the
frame quality rule of pipelines/assist/quality.h computed on them with numpy, from its written
definition and sharing no code with the C:

    Y      = 0.299 R + 0.587 G + 0.114 B, kept as 299 R + 587 G + 114 B (exact integers)
    luma   = mean Y
    blocks = Y summed over k x k blocks, k = max(1, min(w, h) // 200), remainders left out
    sobel  = mean |[-1 0 1; -2 0 2; -1 0 1] * blocks| and its transpose over the interior,
             divided by k^2 (block sums -> block means)
    glare  = fraction of pixels with min(R, G, B) >= glare_level
    verdict: the first failing rule of too small, too dark, too bright, blurred, glare

Written to OUT/assist_quality.safetensors: one U8 tensor [H, W, 3] per frame and, in the
metadata, "cases" (JSON: name -> thresholds and the expected metrics, verdict and reason; floats
as Python's repr, which round-trips doubles exactly) and "defaults" (the thresholds
mi_quality_defaults must give). Frames: synthetic cases for every verdict and every branch of
the reason (both Sobel axes, one of them, block sizes 1, 2 and 5 with remainders, 1x1 and 2x2
frames), and the real Kvasir-SEG photos of ../shared/data when present (decoded by PIL: the C
test reads the same pixels from the fixture, so the decoder does not matter).

    ref_assist_quality.py --measure DIR   the rule on DIR/*.npy, into DIR/*.json (frames of the
                                          real clip, decoded by the C test with FFmpeg)"""
import glob
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mi_ref  # noqa: E402

# must equal mi_quality_defaults() in pipelines/assist/quality.c (the C test checks it)
DEFAULTS = {"luma_lo": 30.0, "luma_hi": 220.0, "sobel_min": 8.0, "glare_level": 235, "glare_max_frac": 0.15}


def quality(px, t):
    p = px.astype(np.int64)
    y = 299 * p[..., 0] + 587 * p[..., 1] + 114 * p[..., 2]
    h, w = y.shape
    luma = float(y.sum()) / (1000.0 * w * h)
    glare = float((p.min(axis=2) >= t["glare_level"]).sum()) / (w * h)
    k = max(1, min(w, h) // 200)
    bh, bw = h // k, w // k
    b = y[:bh * k, :bw * k].reshape(bh, k, bw, k).sum(axis=(1, 3))
    sx = sy = 0.0
    if bw >= 3 and bh >= 3:
        a, m, c = b[:-2], b[1:-1], b[2:]
        gx = (a[:, 2:] + 2 * m[:, 2:] + c[:, 2:]) - (a[:, :-2] + 2 * m[:, :-2] + c[:, :-2])
        gy = (c[:, :-2] + 2 * c[:, 1:-1] + c[:, 2:]) - (a[:, :-2] + 2 * a[:, 1:-1] + a[:, 2:])
        n = 1000.0 * k * k * (bw - 2) * (bh - 2)
        sx = float(np.abs(gx).sum()) / n
        sy = float(np.abs(gy).sum()) / n
    lo, hi, smin = t["luma_lo"], t["luma_hi"], t["sobel_min"]
    if w < 3 or h < 3:
        reason = "too small: %dx%d pixels, the quality rule needs at least 3x3" % (w, h)
    elif luma < lo:
        reason = "too dark: mean luma %.1f < %.1f" % (luma, lo)
    elif luma > hi:
        reason = "too bright: mean luma %.1f > %.1f" % (luma, hi)
    elif sx < smin and sy < smin:
        reason = "blurred: mean |Sobel x| %.2f and mean |Sobel y| %.2f < %.2f" % (sx, sy, smin)
    elif sx < smin:
        reason = "blurred: mean |Sobel x| %.2f < %.2f" % (sx, smin)
    elif sy < smin:
        reason = "blurred: mean |Sobel y| %.2f < %.2f" % (sy, smin)
    elif glare > t["glare_max_frac"]:
        reason = "glare/foreign matter: %.1f%% near-white pixels > %.1f%%" % (100 * glare, 100 * t["glare_max_frac"])
    else:
        reason = ""
    return {"mean_luma": luma, "sobel_x": sx, "sobel_y": sy, "glare_frac": glare, "block": k,
            "judged": reason == "", "reason": reason}


def synthetic():
    rng = np.random.default_rng(0)
    u8 = lambda a: np.clip(a, 0, 255).astype(np.uint8)  # noqa: E731
    f = {}
    f["noise"] = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    f["dark"] = rng.integers(0, 21, (40, 50, 3), dtype=np.uint8)
    f["bright"] = rng.integers(230, 256, (30, 30, 3), dtype=np.uint8)
    f["flat"] = u8(100 + rng.integers(-1, 2, (36, 52, 3)))
    yy, xx = np.mgrid[0:60, 0:80]
    f["rows"] = u8(np.repeat((60 + 80 * (yy // 2 % 2))[..., None], 3, axis=2))  # changes along y only
    f["cols"] = u8(np.repeat((60 + 80 * (xx // 2 % 2))[..., None], 3, axis=2))  # along x only
    g = rng.integers(40, 200, (50, 70, 3), dtype=np.uint8)
    g[5:25, 10:50] = 250                                                       # 23 % white
    f["glare"] = g
    f["tiny2"] = rng.integers(0, 256, (2, 2, 3), dtype=np.uint8)
    f["one"] = np.full((1, 1, 3), 128, np.uint8)
    f["line3"] = rng.integers(0, 256, (3, 9, 3), dtype=np.uint8)
    # block averaging with remainders: k = 2 (413 // 200), 1 column and 1 row left over; k = 5
    big = u8(rng.normal(120, 20, (413, 901, 3)))
    big[:, 450:452] = 250
    f["k2"] = big
    f["k5"] = u8(rng.normal(110, 30, (1003, 1207, 3)))
    # a smooth gradient: sharp enough or not depending on thresholds
    f["ramp"] = u8(np.stack([xx * 3, yy * 2, xx + yy], axis=2))
    return f


def cases():
    t = dict(DEFAULTS)
    out = [(n, px, t) for n, px in synthetic().items()]
    strict = dict(DEFAULTS, sobel_min=100.0, luma_lo=10.0, luma_hi=250.0, glare_level=200, glare_max_frac=0.01)
    out.append(("noise_strict", out[0][1], strict))
    out.append(("ramp_x", synthetic()["ramp"], dict(DEFAULTS, sobel_min=9.0)))    # Sobel x alone fails
    root = os.environ.get("MI_SHARED_DATA") or "../shared/data"
    for p in sorted(glob.glob(os.path.join(root, "kvasir-seg-sample", "images", "*.jpg"))):
        from PIL import Image
        out.append(("kvasir_" + os.path.basename(p)[:8], np.asarray(Image.open(p).convert("RGB")), t))
    return out


def measure(d):
    """--measure DIR: for every DIR/X.npy ([H, W, 3] float32 holding uint8 values: frames the C test
    decoded, e.g. from the real clip) writes DIR/X.json, the rule with the default thresholds"""
    for f in sorted(glob.glob(os.path.join(d, "*.npy"))):
        px = np.load(f)
        assert px.ndim == 3 and px.shape[2] == 3 and (px == np.round(px)).all() and px.min() >= 0 and px.max() <= 255, f
        with open(f[:-4] + ".json", "w") as out:
            json.dump(quality(px.astype(np.uint8), DEFAULTS), out)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        return measure(sys.argv[2])
    tensors, meta = {}, {}
    for name, px, t in cases():
        tensors[name] = torch.from_numpy(np.array(px, np.uint8))  # a copy: PIL arrays are read-only
        meta[name] = {"thresholds": t, "expect": quality(px, t)}
    mi_ref.save("assist_quality.safetensors", tensors,
                {"cases": json.dumps(meta), "defaults": json.dumps(DEFAULTS)})


if __name__ == "__main__":
    main()
