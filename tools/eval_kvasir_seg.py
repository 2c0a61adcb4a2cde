#!/usr/bin/python3
"""tools/eval_kvasir_seg.py - score the Kvasir-SEG lesion segmenter on the 100 test images of the
fixed split (tools/kvasir_seg_split.tsv), twice: with PyTorch from the blob, and from the mask PNGs
that `medinfer lesionseg` writes; then the difference between the two.

    tools/eval_kvasir_seg.py [--seg-model weights/lesionseg_seg_kvasir.safetensors]
                             [--bin build/medinfer] [--c-out DIR] [--json F] [--md F] [--threads 1]

The test images are read only here, after training, and nothing is chosen on them.

(a) PyTorch. The blobs are read by this file's own safetensors reader (F16 widened to F32, as the C
    reader does); the networks are built by tools/lesionseg_ref.py from the blobs' metadata (the
    one module both sides must share: it is the definition of the architecture). Preprocessing
    written out here from the metadata, not imported: squash resize to input_size with
    torchvision's antialiased bilinear resize of the uint8 image, /255, (x - mean) / std. The
    softmax probabilities are up-sampled to the image's own size with F.interpolate(bilinear,
    align_corners=False) and the mask is where channel 1 > channel 0: what `medinfer lesionseg`
    does (docs/lesionseg.md, step 6; a tie is background).
(b) C. `medinfer lesionseg --seg-model BLOB --out-dir DIR` on the same images (or the PNGs already
    in --c-out DIR when --bin is "none"); the mask is DIR/<id>_mask.png > 127. Nothing here reads
    the pipeline's code or report numbers: the same scoring function runs on both sets of masks.
(c) The difference of every summary figure, the per-image Dice difference and the pixel agreement
    between the two sets of masks.

Scores per image at the original size against the expert mask (JPEG, >= 128 is polyp): Dice =
2|P n G| / (|P| + |G|), IoU = |P n G| / |P u G| (1 when both are empty); mean and median over the
images; pixel precision and recall pooled over all pixels of all test images.
"""
import argparse
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import lesionseg_ref  # noqa: E402  (the architecture only)

SHARED = os.path.join(ROOT, "..", "shared", "data")
SPLIT = os.path.join(HERE, "kvasir_seg_split.tsv")


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    meta = head.pop("__metadata__", {})
    dt = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    sd = {}
    for k, v in head.items():
        b, e = v["data_offsets"]
        a = np.frombuffer(raw[8 + n + b:8 + n + e], dt[v["dtype"]]).reshape(v["shape"])
        sd[k] = torch.from_numpy(a.astype(np.int64 if v["dtype"] == "I64" else np.float32))
    return sd, meta, hashlib.sha256(raw).hexdigest()


def load_net(path):
    sd, meta, sha = read_safetensors(path)
    m = lesionseg_ref.build(meta)
    m.load_state_dict(sd, strict=True)
    return m.eval(), meta, sha


def preprocess(rgb, meta):
    if meta.get("resize_mode") != "squash":
        raise SystemExit(f"resize_mode {meta.get('resize_mode')!r}: this script feeds squash only")
    R = int(meta["input_size"])
    t = TF.resize(torch.from_numpy(rgb).permute(2, 0, 1), [R, R], InterpolationMode.BILINEAR, antialias=True)
    mean = torch.tensor(json.loads(meta["mean"])).view(1, 3, 1, 1)
    std = torch.tensor(json.loads(meta["std"])).view(1, 3, 1, 1)
    return (t[None].float() / 255 - mean) / std


def test_images(data):
    """-> [(id, image path, mask path)] of the split's test ids, from kvasir-seg-full or -sample."""
    out = []
    with open(SPLIT) as f:
        ids = sorted(line.split("\t")[0] for line in f if line.rstrip("\n").endswith("\ttest"))
    for i in ids:
        for d in ("kvasir-seg-full", "kvasir-seg-sample"):
            p = os.path.join(data, d, "images", i + ".jpg")
            if os.path.exists(p):
                out.append((i, p, os.path.join(data, d, "masks", i + ".jpg")))
                break
        else:
            raise SystemExit(f"test image {i} is in neither kvasir-seg-full nor kvasir-seg-sample under {data}")
    return out


def score(pred, gt):
    """Per image (bool arrays of one size) -> dict; both empty counts as 1."""
    inter, p, g = int((pred & gt).sum()), int(pred.sum()), int(gt.sum())
    union = p + g - inter
    return {"dice": 1.0 if p + g == 0 else 2 * inter / (p + g), "iou": 1.0 if union == 0 else inter / union,
            "tp": inter, "fp": p - inter, "fn": g - inter}


def summary(rows):
    d, j = [r["dice"] for r in rows], [r["iou"] for r in rows]
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    return {"images": len(rows), "mean_dice": float(np.mean(d)), "median_dice": float(np.median(d)),
            "mean_iou": float(np.mean(j)), "median_iou": float(np.median(j)),
            "pixel_precision": tp / max(tp + fp, 1), "pixel_recall": tp / max(tp + fn, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=SHARED)
    ap.add_argument("--depth-model", default=os.path.join(ROOT, "weights", "lesionseg_depth_demo.safetensors"))
    ap.add_argument("--seg-model", default=os.path.join(ROOT, "weights", "lesionseg_seg_kvasir.safetensors"))
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "medinfer"),
                    help="the medinfer binary, or 'none' to read the masks already in --c-out")
    ap.add_argument("--c-out", help="where medinfer writes (or has written) its PNGs (default: a temporary folder)")
    ap.add_argument("--json", default=os.path.join(ROOT, "build", "kvasir_seg_work", "eval.json"))
    ap.add_argument("--md", help="write the markdown table here too")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    imgs = test_images(a.data)
    dm, dmeta, dsha = load_net(a.depth_model)
    sm, smeta, ssha = load_net(a.seg_model)
    for k in ("input_size", "resize_mode", "mean", "std"):
        if dmeta.get(k) != smeta.get(k):
            raise SystemExit(f"the blobs preprocess differently: {k} {dmeta.get(k)!r} vs {smeta.get(k)!r}")
    if smeta.get("output", "softmax") != "softmax":
        raise SystemExit("this script scores softmax segnets (mask = argmax)")

    tmp = None
    c_out = a.c_out
    if c_out is None:
        tmp = tempfile.TemporaryDirectory()
        c_out = tmp.name
    c_wall = None
    if a.bin != "none":
        t0 = time.time()
        cmd = [a.bin, "lesionseg", "--depth-model", a.depth_model, "--seg-model", a.seg_model, "--threads",
               str(a.threads), "--quiet", "--out-dir", c_out, "--out", os.path.join(c_out, "report.json")]
        subprocess.run(cmd + [p for _, p, _ in imgs], check=True)
        c_wall = time.time() - t0

    t0 = time.time()
    rows_py, rows_c, agree, total = [], [], 0, 0
    for i, p, mp in imgs:
        rgb = np.array(Image.open(p).convert("RGB"))
        gt = np.asarray(Image.open(mp).convert("L")) >= 128
        H, W = rgb.shape[:2]
        x = preprocess(rgb, dmeta)
        with torch.no_grad():
            s = sm(torch.cat([x, dm(x)], 1))
            u = F.interpolate(s, size=(H, W), mode="bilinear", align_corners=False)[0]
        mpy = (u[1] > u[0]).numpy()
        mc = np.asarray(Image.open(os.path.join(c_out, i + "_mask.png")).convert("L")) > 127
        if mc.shape != gt.shape:
            raise SystemExit(f"{i}: C mask {mc.shape}, image {gt.shape}")
        rows_py.append({"id": i, **score(mpy, gt)})
        rows_c.append({"id": i, **score(mc, gt)})
        agree += int((mpy == mc).sum())
        total += mpy.size
    py_wall = time.time() - t0
    spy, sc = summary(rows_py), summary(rows_c)
    dd = [abs(x["dice"] - y["dice"]) for x, y in zip(rows_py, rows_c)]
    diff = {k: sc[k] - spy[k] for k in spy if k != "images"}
    diff["mean_dice_rel_pct"] = 100 * (sc["mean_dice"] - spy["mean_dice"]) / spy["mean_dice"]
    diff["max_abs_image_dice"] = max(dd)
    diff["pixel_agreement"] = agree / total
    res = {"seg_model": os.path.relpath(a.seg_model, ROOT), "seg_sha256": ssha,
           "seg_model_version": smeta.get("model_version"), "depth_sha256": dsha,
           "split_sha256": hashlib.sha256(open(SPLIT, "rb").read()).hexdigest(),
           "pytorch": {"summary": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in spy.items()},
                       "per_image": rows_py},
           "c": {"summary": sc, "per_image": rows_c}, "difference_c_minus_pytorch": diff,
           "wall_s": {"pytorch": round(py_wall, 1), "c": None if c_wall is None else round(c_wall, 1)}}
    os.makedirs(os.path.dirname(a.json) or ".", exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)
    md = ["| 100 test images, at their original size | PyTorch (blob) | C (`medinfer lesionseg` mask PNGs) | C - PyTorch |",
          "|---|---|---|---|"]
    for k, name in (("mean_dice", "mean Dice"), ("median_dice", "median Dice"), ("mean_iou", "mean IoU"),
                    ("median_iou", "median IoU"), ("pixel_precision", "pixel precision (pooled)"),
                    ("pixel_recall", "pixel recall (pooled)")):
        md.append(f"| {name} | {spy[k]:.4f} | {sc[k]:.4f} | {diff[k]:+.5f} |")
    md.append(f"| mean Dice, relative difference | | | {diff['mean_dice_rel_pct']:+.3f} % |")
    md.append(f"| largest per-image Dice difference | | | {diff['max_abs_image_dice']:.5f} |")
    md.append(f"| pixels where the two masks agree | | | {100 * diff['pixel_agreement']:.4f} % |")
    text = "\n".join(md) + "\n"
    if a.md:
        with open(a.md, "w") as f:
            f.write(text)
    print(text)
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
