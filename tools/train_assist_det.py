#!/usr/bin/python3
"""tools/train_assist_det.py - train the endoscopy assistant's demo lesion detector on the synthetic
frames of tools/assist_synth.py, choose its checkpoint and score threshold on validation frames,
score it once on held-out frames, and export weights/assist_det_demo.safetensors.

    tools/train_assist_det.py train --data DATA --work WORK [--threads 1] [--epochs E] ...
    tools/train_assist_det.py eval  --data DATA --work WORK [--threads 1] [--out BLOB]

DATA holds the frames as tools/assist_synth.py writes them: DATA/train (seed 1), DATA/val (seed 2),
DATA/test (seed 5000), each with its index.json. Everything is seeded and runs on the CPU in this
process (torch.set_num_threads(--threads)); the same --threads gives the same weights.

The model is tools/rcnn_ref.build(meta) from the metadata that goes into the blob (det_meta()
below): torchvision's FasterRCNN on a ResNet-18 BackboneWithFPN with returned_layers [1, 2, 3]
(no layer4: the FPN's maps '0' '1' '2' at strides 4, 8, 16 and 'pool' at 32), fpn_channels 64,
representation_size 256, min_size/max_size --min-size/--max-size (160/224: a 256 x 256 training
frame and a 320 x 320 one become 160 x 160, a 480 x 360 one 213 x 160), two anchor sizes per level
(8/14, 20/28, 40/56, 80/112 px of the resized input) x ratios 0.5, 1, 2; at inference the RPN
keeps 300 boxes per level before NMS and 100 after, at most 20 detections. The backbone is trained
from scratch with nn.BatchNorm2d (its statistics are folded into the convolutions by medinfer), as
no pretrained weights are reachable here. Training-only settings (not in the blob, they do not
change inference): RPN 600/300 proposals pre/post NMS, RoI sampler 128 per image. AdamW, weight
decay 1e-4, linear warm-up 100 steps then cosine to 0, batch 4, gradient norm clipped at 10,
augmentation: random horizontal and vertical flips and transposition (the endoscope's roll is
arbitrary), brightness x U(0.8, 1.2).

train: after every epoch the checkpoint is scored on the first --val-count (100) validation frames
(AP@0.5 per class and their mean) and saved as WORK/epoch<N>.pt. eval: the checkpoint with the best validation mean AP is
chosen, then the score threshold: the one of 0.05, 0.10, ..., 0.95 that maximizes F1 (a detection
is right when its class is the frame's lesion's and IoU >= 0.5, each truth box matched once) on the
validation frames. Then, once, on the held-out frames: AP@0.5 per class and mean, and recall and
precision at that threshold. The blob (F16) carries these figures in its metadata 'training'.

The shipped blob was made with these commands (2 cores shared with other builds and helpers):
    nice -n 5 /usr/bin/python3 tools/assist_synth.py DATA/train --seed 1 --count 1000 --size 256 --jobs 2
    nice -n 5 /usr/bin/python3 tools/assist_synth.py DATA/val --seed 2 --count 200 --size 256 --jobs 2
    nice -n 5 /usr/bin/python3 tools/assist_synth.py DATA/test --seed 5000 --count 200 --size 256 --jobs 2
    nice -n 5 /usr/bin/python3 tools/train_assist_det.py train --data DATA --work WORK --threads 1 --epochs 2
    nice -n 5 /usr/bin/python3 tools/train_assist_det.py train --data DATA --work WORK2 --threads 1 --epochs 1 \
        --lr 3e-4 --init WORK/epoch1.pt
    nice -n 5 /usr/bin/python3 tools/train_assist_det.py eval --data DATA --work WORK2 --threads 1
(data 1347 s, training 1957 s + 624 s for 500 + 250 steps, eval 65 s) and gave, with the second
stage's checkpoint (validation mean AP@0.5 0.849 against the first stage's 0.744) and score
threshold 0.65 chosen on the validation frames, on the 200 held-out frames of seed 5000: AP@0.5
adenomatous polyp 0.991, non-adenomatous polyp 0.395 (the weak class), ulcer 1.000, other 0.962,
mean 0.837; recall 0.779 and precision 0.931 at the threshold (docs/assist_training.md; the
held-out frames were also scored for the first stage's blob, which it replaced).
--init continues from a checkpoint's weights with a schedule of its own (warm-up and cosine).

This is a demo model trained on synthetic frames only: it has never seen a real endoscopy frame
and is not for diagnosis.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import assist_synth  # noqa: E402
import export  # noqa: E402
import rcnn_ref  # noqa: E402

MODEL_VERSION = "2026.12.01.2"   # 2026.12.01.1: the first, 2-epoch blob (never shipped)
INTENDED_USE = "demo model trained on synthetic frames only; not for diagnosis"
CMD = "nice -n 5 /usr/bin/python3 tools/train_assist_det.py "


def det_meta(a):
    meta = rcnn_ref.metadata(
        "resnet18", len(assist_synth.LABELS), list(assist_synth.LABELS), model_version=MODEL_VERSION,
        arch="fasterrcnn_fpn", min_size=a.min_size, max_size=a.max_size,
        returned_layers=[1, 2, 3], fpn_channels=64, representation_size=256,
        anchor_sizes=[[8, 14], [20, 28], [40, 56], [80, 112]], anchor_ratios=[0.5, 1.0, 2.0],
        rpn_pre_nms_top_n=300, rpn_post_nms_top_n=100, box_detections_per_img=20)
    meta["high_risk_labels"] = json.dumps(assist_synth.HIGH_RISK)
    meta["intended_use"] = INTENDED_USE
    meta["training_data"] = ("tools/assist_synth.py synthetic endoscopy frames with pasted lesions: "
                             "train seed 1 (1000 frames, 256 x 256), validation seed 2 (200), held-out seed 5000 (200)")
    return meta


def load_set(d):
    with open(os.path.join(d, "index.json")) as f:
        idx = json.load(f)
    out = []
    for im in idx["images"]:
        arr = np.asarray(Image.open(os.path.join(d, im["file"])).convert("RGB"))
        out.append((arr, im["lesions"]))
    print(f"{d}: {len(out)} frames", flush=True)
    return out


def to_tensor(arr):
    return torch.from_numpy(np.array(arr, dtype=np.float32)).permute(2, 0, 1) / 255


def flip_transpose(arr, b, rng):
    """Random horizontal and vertical flips and transposition (the endoscope's roll is arbitrary)
    of an HWC image and its (n, 4) x1 y1 x2 y2 boxes, which are changed in place."""
    H, W = arr.shape[:2]
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
        b[:, [0, 2]] = W - b[:, [2, 0]]
    if rng.random() < 0.5:
        arr = arr[::-1]
        b[:, [1, 3]] = H - b[:, [3, 1]]
    if rng.random() < 0.5:
        arr = arr.transpose(1, 0, 2)
        b = b[:, [1, 0, 3, 2]]
    return arr, b


def augment(arr, boxes, rng):
    arr, b = flip_transpose(arr, np.array(boxes, np.float32).reshape(-1, 4), rng)
    x = to_tensor(arr) * float(rng.uniform(0.8, 1.2))
    return x.clamp(0, 1), torch.from_numpy(b)


def lr_at(step, total, base, warm=100):
    if step < warm:
        return base * (step + 1) / warm
    return base * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / u if u > 0 else 0.0


def predict(m, data):
    m.eval()
    out = []
    with torch.no_grad():
        for arr, _ in data:
            r = m([to_tensor(arr)])[0]
            out.append([(b, float(s), int(lab)) for b, s, lab in
                        zip(r["boxes"].tolist(), r["scores"].tolist(), r["labels"].tolist())])
    return out


def match(dets, truth, thr=0.0):
    """per detection (score, label, true positive?) with each truth box matched at most once,
    best scores first, class-aware, IoU >= 0.5"""
    rows = []
    used = set()
    for b, s, lab in sorted(dets, key=lambda d: -d[1]):
        if s < thr:
            continue
        best, bi = 0.5, -1
        for k, t in enumerate(truth):
            if k in used or t["label_index"] != lab:
                continue
            v = iou(b, t["box"])
            if v >= best:
                best, bi = v, k
        if bi >= 0:
            used.add(bi)
        rows.append((s, lab, bi >= 0))
    return rows


def average_precision(preds, data):
    """AP@0.5 per class (all-point interpolation, as VOC 2010+ and COCO's per-IoU AP) and the mean"""
    ncls = len(assist_synth.LABELS)
    aps = {}
    for c in range(1, ncls):
        rows, npos = [], 0
        for dets, (_, truth) in zip(preds, data):
            tc = [t for t in truth if t["label_index"] == c]
            npos += len(tc)
            rows += [r for r in match([d for d in dets if d[2] == c], tc)]
        rows.sort(key=lambda r: -r[0])
        tp = np.cumsum([r[2] for r in rows]) if rows else np.zeros(0)
        fp = np.cumsum([not r[2] for r in rows]) if rows else np.zeros(0)
        rec = tp / max(npos, 1)
        prec = tp / np.maximum(tp + fp, 1e-9)
        mrec = np.concatenate([[0], rec, [1]])
        mpre = np.concatenate([[0], prec, [0]])
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = max(mpre[i], mpre[i + 1])
        k = np.where(mrec[1:] != mrec[:-1])[0]
        aps[assist_synth.LABELS[c]] = round(float(np.sum((mrec[k + 1] - mrec[k]) * mpre[k + 1])), 4)
    return aps, round(float(np.mean(list(aps.values()))), 4)


def recall_precision(preds, data, thr):
    tp = fp = npos = 0
    for dets, (_, truth) in zip(preds, data):
        npos += len(truth)
        for _, _, ok in match(dets, truth, thr):
            tp += ok
            fp += not ok
    return tp / max(npos, 1), tp / max(tp + fp, 1)


def train(a):
    meta = det_meta(a)
    data = load_set(os.path.join(a.data, "train"))
    val = None   # read after the first epoch: the generator may still be writing it when training starts
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    m = rcnn_ref.build(meta, norm_layer=torch.nn.BatchNorm2d)
    if a.init:   # continue from a checkpoint of the same metadata, with a schedule of its own
        init = torch.load(a.init)
        if init["meta"]["anchor_sizes"] != meta["anchor_sizes"] or init["meta"]["min_size"] != meta["min_size"]:
            sys.exit(f"{a.init}: another configuration than this run's")
        m.load_state_dict(init["state"])
    m.rpn._pre_nms_top_n["training"] = 600
    m.rpn._post_nms_top_n["training"] = 300
    m.roi_heads.fg_bg_sampler.batch_size_per_image = 128
    opt = torch.optim.AdamW(m.parameters(), lr=a.lr, weight_decay=1e-4)
    B = 4
    steps_per_epoch = len(data) // B
    total = steps_per_epoch * a.epochs
    t0, step, run = time.time(), 0, {}
    for ep in range(a.epochs):
        m.train()
        perm = rng.permutation(len(data))
        for s in range(steps_per_epoch):
            imgs, tg = [], []
            for i in perm[s * B:(s + 1) * B]:
                arr, les = data[i]
                x, b = augment(arr, [t["box"] for t in les], rng)
                imgs.append(x)
                tg.append({"boxes": b, "labels": torch.tensor([t["label_index"] for t in les], dtype=torch.int64)})
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, a.lr)
            losses = m(imgs, tg)
            loss = sum(losses.values())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 10.0)
            opt.step()
            for k, v in losses.items():
                run[k] = 0.98 * run.get(k, v.item()) + 0.02 * v.item()
            step += 1
            if step % 25 == 0:
                print(f"ep {ep} step {step}/{total} {time.time() - t0:.0f}s "
                      + " ".join(f"{k[5:]}={v:.3f}" for k, v in run.items()), flush=True)
        if val is None:
            val = load_set(os.path.join(a.data, "val"))[:a.val_count]
        aps, mean = average_precision(predict(m, val), val)
        print(f"epoch {ep}: val mAP@0.5 {mean} {json.dumps(aps)} ({time.time() - t0:.0f} s)", flush=True)
        torch.save({"state": m.state_dict(), "meta": meta, "epoch": ep, "steps": step, "secs": time.time() - t0,
                    "val_ap": aps, "val_map": mean, "argv": a.argv}, os.path.join(a.work, f"epoch{ep}.pt"))


def evaluate(a):
    cks = sorted((f for f in os.listdir(a.work) if f.startswith("epoch") and f.endswith(".pt")),
                 key=lambda f: int(f[5:-3]))
    if not cks:
        sys.exit(f"{a.work}: no epoch<N>.pt checkpoints (run train first)")
    best = max(cks, key=lambda f: (torch.load(os.path.join(a.work, f))["val_map"], -int(f[5:-3])))
    ck = torch.load(os.path.join(a.work, best))
    print(f"chosen {best}: val mAP@0.5 {ck['val_map']}", flush=True)
    m = rcnn_ref.build(ck["meta"], norm_layer=torch.nn.BatchNorm2d)   # the trained statistics, in eval mode
    # the blob's own numbers: F16 weights as medinfer reads them
    sd16 = {k: v.half().float() if v.is_floating_point() else v for k, v in ck["state"].items()}
    m.load_state_dict(sd16)
    val = load_set(os.path.join(a.data, "val"))
    pv = predict(m, val)
    best_thr, best_f1 = 0.5, -1.0
    for thr in [round(0.05 * k, 2) for k in range(1, 20)]:
        r, p = recall_precision(pv, val, thr)
        f1 = 2 * r * p / max(r + p, 1e-9)
        if f1 > best_f1 + 1e-12:
            best_thr, best_f1 = thr, f1
    vr, vp = recall_precision(pv, val, best_thr)
    vaps, vmean = average_precision(pv, val)
    test = load_set(os.path.join(a.data, "test"))
    pt = predict(m, test)
    aps, mean = average_precision(pt, test)
    tr, tp = recall_precision(pt, test, best_thr)
    res = {"checkpoint": best, "epochs_trained": int(ck["epoch"]) + 1, "steps": ck["steps"],
           "train_seconds": round(ck["secs"]), "val": {"seed": assist_synth.SEED_VAL, "frames": len(val),
                                                        "ap50": vaps, "map50": vmean,
                                                        "score_threshold": best_thr, "recall50": round(vr, 4),
                                                        "precision50": round(vp, 4)},
           "test": {"seed": assist_synth.SEED_TEST, "frames": len(test), "ap50": aps, "map50": mean,
                    "recall50_at_threshold": round(tr, 4), "precision50_at_threshold": round(tp, 4)}}
    print(json.dumps(res, indent=1), flush=True)
    if a.no_export:
        return
    meta = dict(ck["meta"])
    meta["score_threshold"] = str(best_thr)
    meta["training"] = json.dumps(dict(res, script="tools/train_assist_det.py",
                                       commands=[CMD + " ".join(ck["argv"]), CMD + " ".join(a.argv)]))
    export.write_safetensors(a.out, export.cast_floats(ck["state"], "f16"), meta)
    print("wrote", a.out, os.path.getsize(a.out), "bytes", flush=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", choices=["train", "eval"])
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--val-count", type=int, default=100, help="train: validation frames scored after each epoch")
    ap.add_argument("--init", help="train: start from this checkpoint's weights (WORK/epoch<N>.pt of a run)")
    ap.add_argument("--min-size", type=int, default=160)
    ap.add_argument("--max-size", type=int, default=224)
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "weights", "assist_det_demo.safetensors"))
    a = ap.parse_args(argv)
    a.argv = list(argv)
    torch.set_num_threads(a.threads)
    os.makedirs(a.work, exist_ok=True)
    {"train": train, "eval": evaluate}[a.part](a)


if __name__ == "__main__":
    main()
