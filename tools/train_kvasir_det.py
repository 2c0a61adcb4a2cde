#!/usr/bin/python3
"""tools/train_kvasir_det.py - train the endoscopy assistant's lesion detector on real colonoscopy
images: the polyp boxes of Kvasir-SEG's train split; choose the checkpoint and the score threshold
on its validation split; export weights/assist_det_kvasir.safetensors.

    tools/train_kvasir_det.py train --work WORK [--threads 1] [--steps N] [--init synthetic|scratch] ...
    tools/train_kvasir_det.py export --work WORK [--scores eval.json]

Data: ../shared/data/kvasir-seg-full (images and the official kavsir_bboxes.json), split by the
fixed list tools/kvasir_seg_split.tsv (tools/kvasir_split.py; the lesion segmenter's split, so the
two real models never saw the same test images): 800 train, 100 validation, 100 test. This script
reads only train and val ids and stops if a test id would be read; the test images are scored only
by tools/eval_kvasir_det.py, from the exported blob (its figures go into the blob's metadata with
export --scores).

Architecture: the assistant's (tools/train_assist_det.py), so `medinfer assist-server --model` runs
it unchanged: tools/rcnn_ref.build(meta), torchvision's FasterRCNN on a ResNet-18 BackboneWithFPN
with returned_layers [1, 2, 3], fpn_channels 64, representation_size 256, min_size 160, max_size
224, two classes (background, "polyp"). The anchors are larger than the synthetic model's, sized
from the boxes of the train split at that input size (side sqrt(w h): 1 % 11 px, median 66,
99 % 165): 16/24, 32/48, 64/96, 128/176 px on the FPN's maps '0', '1', '2' and 'pool' (strides 4,
8, 16, 32) x ratios 0.5, 1, 2. Inference keeps 300 RPN boxes per level before NMS, 100 after, at most 20 detections.

Input: each image at its own size, decoded by PIL to RGB, /255: the model's own transform resizes
it (bilinear, as at inference, where the server hands the decoded frame to the same transform).

Initialisation (--init): from the synthetic assistant detector weights/assist_det_demo.safetensors
(our own weights, trained on tools/assist_synth.py frames; no pretrained weights are reachable
here), its box classifier cut to background + "adenomatous polyp" (the rows of those two
classes); or from scratch. BatchNorm statistics are trained (nn.BatchNorm2d) and folded by
medinfer at load.

Training (seeded: torch.manual_seed and one numpy Generator from --seed; the same commands and
--threads give the same weights on the same machine): AdamW, weight decay 1e-4, linear warm-up 50
steps then cosine to 0, batch 4, gradient norm clipped at 10. RPN 600/300 proposals pre/post NMS
and 128 sampled RoIs per image (training only). Augmentation: a random crop of 60..100 % of each
side (redrawn up to 10 times until every box keeps at least 70 % of its area, else the whole image;
boxes clipped to it), horizontal and vertical flips and transposition (the endoscope's roll is
arbitrary), brightness x U(0.75, 1.25), contrast about the mean x U(0.75, 1.25), per-channel gain
x U(0.9, 1.1). Every --val-every steps (and at the end) the checkpoint is scored on the 100
validation images (AP@0.5, tools/eval_kvasir_det.scores) and saved as WORK/step<N>.pt.

export: the checkpoint with the best validation AP@0.5 (the earliest on a tie), with its weights
rounded to F16 as the blob stores them; the score threshold with the best F1 at IoU 0.5 on the
validation images (tools/eval_kvasir_det.best_threshold) goes into the metadata as
'score_threshold', which `medinfer assist-server` uses unless --score-threshold is given.

RESULTS: docs/assist_kvasir.md (commands, wall times, validation curve, the test table).
This is a small model trained on 800 images without pretraining: not a medical device.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import eval_kvasir_det as ev  # noqa: E402  (split, boxes and the scoring both sides use)
import export                 # noqa: E402
import rcnn_ref               # noqa: E402
from train_assist_det import flip_transpose, lr_at  # noqa: E402

MODEL_VERSION = "2026.12.01.1"
LABELS = ["__background__", "polyp"]
SYNTH_BLOB = os.path.join(ROOT, "weights", "assist_det_demo.safetensors")
OUT_BLOB = ev.DEFAULT_BLOB
CMD = "nice -n 5 /usr/bin/python3 tools/train_kvasir_det.py "


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def det_meta():
    meta = rcnn_ref.metadata(
        "resnet18", len(LABELS), LABELS, model_version=MODEL_VERSION, arch="fasterrcnn_fpn",
        min_size=160, max_size=224, returned_layers=[1, 2, 3], fpn_channels=64, representation_size=256,
        anchor_sizes=[[16, 24], [32, 48], [64, 96], [128, 176]], anchor_ratios=[0.5, 1.0, 2.0],
        rpn_pre_nms_top_n=300, rpn_post_nms_top_n=100, box_detections_per_img=20)
    meta["high_risk_labels"] = json.dumps(["polyp"])
    meta["intended_use"] = ("research model trained on 800 Kvasir-SEG colonoscopy images without pretraining; "
                            "not a medical device, not for diagnosis")
    meta["training_data"] = ("Kvasir-SEG (Jha et al., MMM 2020; research and education use only) polyp boxes "
                             "(kavsir_bboxes.json): train 800, validation 100 images of tools/kvasir_seg_split.tsv")
    meta["split_sha256"] = sha256_file(ev.SPLIT)
    return meta


def load_split_images(a, which):
    split = ev.read_split()
    if len(split) != 1000 or sorted(split.values()).count("train") != 800:
        raise SystemExit(f"{ev.SPLIT}: expected 1000 ids, 800 of them train")
    ids = sorted(i for i, s in split.items() if s == which)
    if which == "test" or any(split[i] == "test" for i in ids):
        raise SystemExit("the test split is read only by tools/eval_kvasir_det.py")
    truth = ev.truth_boxes(os.path.join(a.data, "kvasir-seg-full"))
    out = []
    for i in ids:
        rgb = np.asarray(Image.open(os.path.join(a.data, "kvasir-seg-full", "images", i + ".jpg")).convert("RGB"))
        out.append((rgb, np.array(truth[i], np.float32).reshape(-1, 4)))
    log(f"{which}: {len(out)} images, {sum(len(b) for _, b in out)} boxes")
    return out


def augment(rgb, boxes, rng):
    H, W = rgb.shape[:2]
    b = boxes.copy()
    for _ in range(10):
        cw, ch = int(W * rng.uniform(0.6, 1.0)), int(H * rng.uniform(0.6, 1.0))
        x0, y0 = int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1))
        c = np.stack([np.clip(boxes[:, 0] - x0, 0, cw), np.clip(boxes[:, 1] - y0, 0, ch),
                      np.clip(boxes[:, 2] - x0, 0, cw), np.clip(boxes[:, 3] - y0, 0, ch)], 1)
        area = lambda q: (q[:, 2] - q[:, 0]) * (q[:, 3] - q[:, 1])  # noqa: E731
        if (area(c) >= 0.7 * area(boxes)).all():
            rgb, b = rgb[y0:y0 + ch, x0:x0 + cw], c
            break
    rgb, b = flip_transpose(rgb, b, rng)
    x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1) / 255
    mean = x.mean()
    x = (x - mean) * float(rng.uniform(0.75, 1.25)) + mean
    x = x * float(rng.uniform(0.75, 1.25)) * torch.from_numpy(rng.uniform(0.9, 1.1, (3, 1, 1)).astype(np.float32))
    return x.clamp(0, 1), torch.from_numpy(np.ascontiguousarray(b))


def init_from_synthetic(m):
    sd, meta = export.read_safetensors(SYNTH_BLOB)
    labels = json.loads(meta["labels"])
    keep = [0, labels.index("adenomatous polyp")]
    box = [4 * k + j for k in keep for j in range(4)]
    sd["roi_heads.box_predictor.cls_score.weight"] = sd["roi_heads.box_predictor.cls_score.weight"][keep]
    sd["roi_heads.box_predictor.cls_score.bias"] = sd["roi_heads.box_predictor.cls_score.bias"][keep]
    sd["roi_heads.box_predictor.bbox_pred.weight"] = sd["roi_heads.box_predictor.bbox_pred.weight"][box]
    sd["roi_heads.box_predictor.bbox_pred.bias"] = sd["roi_heads.box_predictor.bbox_pred.bias"][box]
    m.load_state_dict(sd)
    log(f"initialised from {os.path.relpath(SYNTH_BLOB, ROOT)} (sha256 {sha256_file(SYNTH_BLOB)[:16]}...)")


def predict(m, data):
    m.eval()
    out = []
    with torch.no_grad():
        for rgb, _ in data:
            r = m([torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1) / 255])[0]
            out.append([(b, float(s)) for b, s in zip(r["boxes"].tolist(), r["scores"].tolist())])
    return out


def train(a):
    meta = det_meta()
    data = load_split_images(a, "train")
    val = load_split_images(a, "val")
    vtruth = [b.tolist() for _, b in val]
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    m = rcnn_ref.build(meta, norm_layer=torch.nn.BatchNorm2d)
    if a.init == "synthetic":
        init_from_synthetic(m)
    m.rpn._pre_nms_top_n["training"] = 600
    m.rpn._post_nms_top_n["training"] = 300
    m.roi_heads.fg_bg_sampler.batch_size_per_image = 128
    opt = torch.optim.AdamW(m.parameters(), lr=a.lr, weight_decay=1e-4)
    B, t0, run, order = 4, time.time(), {}, []
    for step in range(a.steps):
        m.train()
        if len(order) < B:
            order += rng.permutation(len(data)).tolist()
        batch, order = order[:B], order[B:]
        imgs, tg = [], []
        for i in batch:
            x, b = augment(*data[i], rng)
            imgs.append(x)
            tg.append({"boxes": b, "labels": torch.ones(len(b), dtype=torch.int64)})
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a.steps, a.lr, warm=50)
        losses = m(imgs, tg)
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 10.0)
        opt.step()
        for k, v in losses.items():
            run[k] = 0.98 * run.get(k, v.item()) + 0.02 * v.item()
        if (step + 1) % 25 == 0:
            log(f"step {step + 1}/{a.steps} {time.time() - t0:.0f}s "
                + " ".join(f"{k[5:]}={v:.3f}" for k, v in run.items()))
        if (step + 1) % a.val_every == 0 or step + 1 == a.steps:
            s = ev.scores(predict(m, val), vtruth, 0.5)
            log(f"step {step + 1}: val AP@0.5 {s['ap50']} recall@0.5 {s['recall50']} "
                f"precision {s['precision50']} ({time.time() - t0:.0f} s)")
            torch.save({"state": m.state_dict(), "meta": meta, "steps": step + 1, "secs": time.time() - t0,
                        "val": s, "argv": a.argv}, os.path.join(a.work, f"step{step + 1}.pt"))


def cmd_export(a):
    cks = sorted((f for f in os.listdir(a.work) if f.startswith("step") and f.endswith(".pt")),
                 key=lambda f: int(f[4:-3]))
    if not cks:
        raise SystemExit(f"{a.work}: no step<N>.pt checkpoints (run train first)")
    loaded = {f: torch.load(os.path.join(a.work, f)) for f in cks}
    curve = [(loaded[f]["steps"], loaded[f]["val"]["ap50"]) for f in cks]
    best = max(cks, key=lambda f: (loaded[f]["val"]["ap50"], -loaded[f]["steps"]))
    ck = loaded[best]
    log(f"chosen {best}: val AP@0.5 {ck['val']['ap50']} (curve {curve})")
    sd16 = {k: v.half().float() if v.is_floating_point() else v for k, v in ck["state"].items()}
    m = rcnn_ref.build(ck["meta"])
    m.load_state_dict(sd16)
    val = load_split_images(a, "val")
    vtruth = [b.tolist() for _, b in val]
    pv = predict(m, val)
    thr = ev.best_threshold(pv, vtruth)
    vs = ev.scores(pv, vtruth, thr)
    log(f"score threshold {thr} (validation F1 at IoU 0.5): {json.dumps(vs)}")
    meta = dict(ck["meta"])
    meta["score_threshold"] = str(thr)
    training = {"script": "tools/train_kvasir_det.py", "checkpoint": best, "steps": ck["steps"],
                "train_seconds": round(ck["secs"]), "validation_curve_ap50": curve, "validation": vs,
                "commands": [CMD + " ".join(ck["argv"]), CMD + " ".join(a.argv)]}
    if a.scores:
        with open(a.scores) as f:
            sc = json.load(f)
        if sc.get("split") != "test" or "c" not in sc:
            raise SystemExit(f"{a.scores}: not a test-split result of tools/eval_kvasir_det.py with the C side")
        training["test"] = {k: sc[k] for k in ("pytorch", "c", "difference")}
    meta["training"] = json.dumps(training)
    export.write_safetensors(a.out, export.cast_floats(ck["state"], "f16"), meta)
    size = os.path.getsize(a.out)
    log(f"wrote {a.out}: {size} bytes")
    if size > 10 * 1024 * 1024:
        raise SystemExit(f"{a.out}: {size} bytes, over the 10 MB budget of a shipped blob")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", choices=["train", "export"])
    ap.add_argument("--work", required=True)
    ap.add_argument("--data", default=ev.SHARED)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--val-every", type=int, default=150)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--init", choices=["synthetic", "scratch"], default="synthetic")
    ap.add_argument("--scores", help="export: tools/eval_kvasir_det.py --json output for the test split")
    ap.add_argument("--out", default=OUT_BLOB)
    a = ap.parse_args(argv)
    a.argv = list(argv)
    torch.set_num_threads(a.threads)
    os.makedirs(a.work, exist_ok=True)
    {"train": train, "export": cmd_export}[a.part](a)


if __name__ == "__main__":
    main()
