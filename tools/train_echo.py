#!/usr/bin/python3
"""tools/train_echo.py - train the demo networks of `medinfer echo` on synthetic M-mode strips.

    tools/train_echo.py det  [options]   # (a) the cycle detector  -> WORK/det.pt
    tools/train_echo.py reg  [options]   # (b) the wall-point regressor -> WORK/reg.pt
    tools/train_echo.py eval [options]   # both on the validation studies; exports both blobs

All seeded, CPU only (torch.set_num_threads(--threads)); studies come from tools/echo_synth.py in
memory: training studies 0..--train-count-1 of --data-seed, validation studies 0..--val-count-1
of --val-seed (examples/echo/ uses seed 3, which no training uses).

(a) Detector: tools/rcnn_ref.build(meta), torchvision FasterRCNN on a ResNet-18 C4 backbone, one
    input channel, image_mean [0], image_std [1], classes ["__background__", "cycle"], min_size
    --min-size, max_size --max-size, representation_size 128, rpn_pre_nms_top_n 600,
    rpn_post_nms_top_n 300, and the adaptive anchors of tools/anchors.py computed from the
    training boxes. Input: the whole strip whitened per image (whiten() below, exactly what C
    does: g = u8/255; mean, population std over all pixels in float64 cast to float32; (g - mean)
    / max(std, 1e-6)), shape (1, H, W); targets: every complete cycle's box. Training-only
    settings (not in the blob, they do not change inference): RoI sampler 64 per image, RPN
    600/300 proposals pre/post NMS. AdamW, linear warm-up then cosine, batch 4, random
    horizontal flips are NOT used (time runs left to right).
(b) Regressor: torchvision resnet18(num_classes=16), conv1 = Conv2d(1, 64, 7, 2, 3, bias=False).
    Training crops: the labeled box with its length and width each scaled by U(0.9, 1.1) and its
    centre moved by U(-0.1, 0.1) * box width in x and U(-0.1, 0.1) * box height in y (inside the
    middle half of the box, as the method asks). With crop_margin 0.2 the crop reaches at least
    0.9 * 0.7 = 0.63 box sizes either side of the moved centre, and every point is within 0.5 box
    size of the labeled centre, so all 8 points stay inside the crop (>= 0.03 box size spare).
    crop() below = the C contract: X0 = max(0, floor(x1 - m w)), X1 = min(W, ceil(x2 + m w)),
    same in y; whiten the crop; bilinear resize (align_corners False, no antialias) to S x S.
    Loss: L1 on the 16 sigmoid outputs, y coordinates weighted 2 (EF depends on depths only).
(c) eval: detector recall (top box IoU >= 0.5 with a GT cycle), regressor mean point error on GT
    boxes (px, mm), and EF MAE end to end: top box -> crop -> regressor -> Teichholz, compared
    with the GT cycle that overlaps the box most. Writes both blobs (F16) with these numbers.

The shipped blobs were made with these commands (2 cores shared with other builds; det and reg ran
side by side, 1 thread each: det 1929 s, reg 2541 s, eval 252 s):
    nice -n 10 /usr/bin/python3 tools/train_echo.py det  --threads 1 --work /tmp/echo_work --det-epochs 2
    nice -n 10 /usr/bin/python3 tools/train_echo.py reg  --threads 1 --work /tmp/echo_work --reg-epochs 4
    nice -n 10 /usr/bin/python3 tools/train_echo.py eval --threads 2 --work /tmp/echo_work
(defaults: --seed 0 --data-seed 1 --train-count 2000 --val-seed 2 --val-count 200, --min-size 128
--max-size 384, --input-size 128). Validation (200 studies of seed 2): detector recall 1.0 (mean
IoU 0.97 of the top box), regressor mean point error 1.14 px (|dy| 0.26 mm) on GT boxes, end to end
EF MAE 1.15 pp, |LVIDd| 0.31 mm, |LVIDs| 0.31 mm.

These are demo models for synthetic strips only: they have never seen a real echocardiogram.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import anchors as anchors_mod  # noqa: E402
import echo_synth  # noqa: E402
import export  # noqa: E402
import rcnn_ref  # noqa: E402

CROP_MARGIN = 0.2
POINT_NAMES = ["ED septum outer (RV side)", "ED septum inner (LV side)",
               "ED posterior wall inner (endocardium)", "ED posterior wall outer (epicardium)",
               "ES septum outer (RV side)", "ES septum inner (LV side)",
               "ES posterior wall inner (endocardium)", "ES posterior wall outer (epicardium)"]
MODEL_VERSION = "2026.11.30.1"
CMD = "nice -n 10 /usr/bin/python3 tools/train_echo.py "


def whiten(g_u8):
    """uint8 array -> float32 tensor, z-scored exactly as medinfer does it"""
    g = g_u8.astype(np.float32) / np.float32(255)
    mean = np.float32(g.astype(np.float64).mean())
    std = np.float32(np.sqrt(((g.astype(np.float64) - np.float64(mean)) ** 2).mean()))
    return torch.from_numpy((g - mean) / max(std, np.float32(1e-6)))


def crop_window(box, W, H, m=CROP_MARGIN):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return (max(0, math.floor(x1 - m * w)), max(0, math.floor(y1 - m * h)),
            min(W, math.ceil(x2 + m * w)), min(H, math.ceil(y2 + m * h)))


def crop(img, box, S):
    """(1, S, S) float tensor and the window (X0, Y0, X1, Y1)"""
    H, W = img.shape
    X0, Y0, X1, Y1 = crop_window(box, W, H)
    x = whiten(img[Y0:Y1, X0:X1])
    x = F.interpolate(x[None, None], size=(S, S), mode="bilinear", align_corners=False)[0]
    return x, (X0, Y0, X1, Y1)


def studies(seed, count):
    t = time.time()
    out = [echo_synth.study(seed, i) for i in range(count)]
    print(f"generated {count} studies of seed {seed} in {time.time() - t:.0f} s", flush=True)
    return out


def regressor():
    import torchvision
    r = torchvision.models.resnet18(weights=None, num_classes=16)
    r.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return r


def det_meta(a, anchor_wh):
    meta = rcnn_ref.metadata("resnet18", 2, ["__background__", "cycle"], model_version=MODEL_VERSION,
                             input_channels=1, min_size=a.min_size, max_size=a.max_size,
                             image_mean=[0.0], image_std=[1.0], anchors=anchor_wh,
                             representation_size=128, rpn_pre_nms_top_n=600, rpn_post_nms_top_n=300)
    meta.update({"whiten": "zscore", "echo_role": "cycle_detector", "echo_min_score": "0.5"})
    return meta


def lr_at(step, total, base, warm=100):
    if step < warm:
        return base * (step + 1) / warm
    return base * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def train_det(a):
    data = studies(a.data_seed, a.train_count)
    rows = [(g["width"], g["height"], *c["box"]) for _, g in data for c in g["cycles"]]
    anc = anchors_mod.anchors(rows, a.min_size, a.max_size)
    print("anchors", json.dumps(anc), flush=True)
    meta = det_meta(a, anc)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    m = rcnn_ref.build(meta)
    m.train()
    m.roi_heads.fg_bg_sampler.batch_size_per_image = 64
    m.rpn._pre_nms_top_n["training"] = 600
    m.rpn._post_nms_top_n["training"] = 300
    opt = torch.optim.AdamW(m.parameters(), lr=a.det_lr, weight_decay=1e-4)
    B = 4
    steps_per_epoch = len(data) // B
    total = steps_per_epoch * a.det_epochs
    t0, step, run = time.time(), 0, {}
    for ep in range(a.det_epochs):
        perm = rng.permutation(len(data))
        for s in range(steps_per_epoch):
            idx = perm[s * B:(s + 1) * B]
            imgs = [whiten(data[i][0])[None] for i in idx]
            tg = [{"boxes": torch.tensor([c["box"] for c in data[i][1]["cycles"]], dtype=torch.float32),
                   "labels": torch.ones(len(data[i][1]["cycles"]), dtype=torch.int64)} for i in idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, a.det_lr)
            losses = m(imgs, tg)
            loss = sum(losses.values())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 10.0)
            opt.step()
            for k, v in losses.items():
                run[k] = 0.98 * run.get(k, v.item()) + 0.02 * v.item()
            step += 1
            if step % 50 == 0:
                print(f"det ep {ep} step {step}/{total} {time.time() - t0:.0f}s "
                      + " ".join(f"{k[5:]}={v:.3f}" for k, v in run.items()), flush=True)
    secs = time.time() - t0
    torch.save({"state": m.state_dict(), "meta": meta, "secs": secs, "epochs": a.det_epochs,
                "steps": total, "argv": a.argv}, os.path.join(a.work, "det.pt"))
    print(f"det: {secs:.0f} s", flush=True)


def jitter_box(box, rng):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2 + rng.uniform(-0.1, 0.1) * w
    cy = (y1 + y2) / 2 + rng.uniform(-0.1, 0.1) * h
    w2, h2 = w * rng.uniform(0.9, 1.1), h * rng.uniform(0.9, 1.1)
    return (cx - w2 / 2, cy - h2 / 2, cx + w2 / 2, cy + h2 / 2)


def target(points, win):
    X0, Y0, X1, Y1 = win
    t = []
    for x, y in points:
        t += [(x - X0) / (X1 - X0), (y - Y0) / (Y1 - Y0)]
    return torch.tensor(t, dtype=torch.float32)


def train_reg(a):
    data = studies(a.data_seed, a.train_count)
    items = [(i, k) for i, (_, g) in enumerate(data) for k in range(len(g["cycles"]))]
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed + 1)
    r = regressor()
    r.train()
    opt = torch.optim.AdamW(r.parameters(), lr=a.reg_lr, weight_decay=1e-4)
    B, S = 32, a.input_size
    wvec = torch.tensor([1.0, 2.0] * 8)
    steps_per_epoch = len(items) // B
    total = steps_per_epoch * a.reg_epochs
    t0, step, run = time.time(), 0, None
    for ep in range(a.reg_epochs):
        perm = rng.permutation(len(items))
        for s in range(steps_per_epoch):
            xs, ts = [], []
            for j in perm[s * B:(s + 1) * B]:
                i, k = items[j]
                img, g = data[i]
                c = g["cycles"][k]
                x, win = crop(img, jitter_box(c["box"], rng), S)
                xs.append(x)
                ts.append(target(c["points"], win))
            x, t = torch.stack(xs), torch.stack(ts)
            for gr in opt.param_groups:
                gr["lr"] = lr_at(step, total, a.reg_lr)
            out = torch.sigmoid(r(x))
            loss = ((out - t).abs() * wvec).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            run = loss.item() if run is None else 0.98 * run + 0.02 * loss.item()
            step += 1
            if step % 50 == 0:
                print(f"reg ep {ep} step {step}/{total} {time.time() - t0:.0f}s loss={run:.4f}", flush=True)
    secs = time.time() - t0
    torch.save({"state": r.state_dict(), "secs": secs, "epochs": a.reg_epochs, "steps": total,
                "input_size": S, "argv": a.argv}, os.path.join(a.work, "reg.pt"))
    print(f"reg: {secs:.0f} s", flush=True)


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / u if u > 0 else 0.0


def points_from(out, win):
    X0, Y0, X1, Y1 = win
    u = torch.sigmoid(out).double().tolist()
    return [[X0 + u[2 * k] * (X1 - X0), Y0 + u[2 * k + 1] * (Y1 - Y0)] for k in range(8)]


def ef_from(points, mmpp):
    lvidd = (points[2][1] - points[1][1]) * mmpp
    lvids = (points[6][1] - points[5][1]) * mmpp
    edv, esv = echo_synth.teichholz(lvidd), echo_synth.teichholz(lvids)
    return 100.0 * (edv - esv) / edv if edv > 0 else float("nan"), lvidd, lvids


def evaluate(a):
    torch.manual_seed(a.seed)
    dck = torch.load(os.path.join(a.work, "det.pt"))
    rck = torch.load(os.path.join(a.work, "reg.pt"))
    det = rcnn_ref.build(dck["meta"])
    det.load_state_dict(dck["state"])
    det.eval()
    reg = regressor()
    reg.load_state_dict(rck["state"])
    reg.eval()
    S = rck["input_size"]
    val = studies(a.val_seed, a.val_count)
    hits, n, perr_px, perr_mm, ef_err, dd_err, ds_err, nodet = 0, 0, [], [], [], [], [], 0
    t0 = time.time()
    with torch.no_grad():
        for img, g in val:
            mmpp = g["mm_per_px"]
            # regressor on the GT boxes
            for c in g["cycles"]:
                x, win = crop(img, c["box"], S)
                p = points_from(reg(x[None])[0], win)
                for (px, py), (gx, gy) in zip(p, c["points"]):
                    d = math.hypot(px - gx, py - gy)
                    perr_px.append(d)
                    perr_mm.append(abs(py - gy) * mmpp)
            # end to end
            n += 1
            res = det([whiten(img)[None]])[0]
            keep = res["scores"] >= float(dck["meta"]["echo_min_score"])
            if not keep.any():
                nodet += 1
                continue
            box = res["boxes"][int(res["scores"].argmax())].tolist()
            ious = [iou(box, c["box"]) for c in g["cycles"]]
            best = int(np.argmax(ious))
            hits += ious[best] >= 0.5
            x, win = crop(img, box, S)
            p = points_from(reg(x[None])[0], win)
            ef, dd, ds = ef_from(p, mmpp)
            c = g["cycles"][best]
            ef_err.append(abs(ef - c["EF"]))
            dd_err.append(abs(dd - c["LVIDd"]))
            ds_err.append(abs(ds - c["LVIDs"]))
    r = {"val_seed": a.val_seed, "val_studies": n,
         "det_recall_iou50": round(hits / n, 4), "det_none": nodet,
         "reg_point_err_px": round(float(np.mean(perr_px)), 3),
         "reg_point_err_y_mm": round(float(np.mean(perr_mm)), 3),
         "ef_mae_pp": round(float(np.mean(ef_err)), 3),
         "ef_median_abs_err_pp": round(float(np.median(ef_err)), 3),
         "lvidd_mae_mm": round(float(np.mean(dd_err)), 3),
         "lvids_mae_mm": round(float(np.mean(ds_err)), 3)}
    print(json.dumps(r), f"({time.time() - t0:.0f} s)", flush=True)
    if a.no_export:
        return
    record = {"script": "tools/train_echo.py", "seed": a.seed, "data_seed": a.data_seed, "train_studies": a.train_count,
              "commands": [CMD + " ".join(ck.get("argv", ["(not recorded)"])) for ck in (dck, rck)]
              + [CMD + " ".join(a.argv)],
              "val_seed": a.val_seed, "data": "tools/echo_synth.py studies (synthetic only)",
              "validation": r}
    dm = dict(dck["meta"])
    dm["training"] = json.dumps(dict(record, part="detector", epochs=dck["epochs"], steps=dck["steps"],
                                     train_seconds=round(dck["secs"])))
    export.write_safetensors(a.det_out, export.cast_floats(dck["state"], "f16"), dm)
    rm = export.blob_metadata("resnet18", 16, [f"p{k}_{c}" for k in range(1, 9) for c in "xy"],
                              input_size=S, model_version=MODEL_VERSION, resize=str(S))
    del rm["mean"], rm["std"]
    rm.update({"whiten": "zscore", "echo_role": "keypoints", "crop_margin": str(CROP_MARGIN),
               "points": json.dumps(POINT_NAMES),
               "training": json.dumps(dict(record, part="regressor", epochs=rck["epochs"],
                                           steps=rck["steps"], train_seconds=round(rck["secs"]),
                                           jitter="size x U(0.9,1.1) each axis; centre + U(-0.1,0.1) x box size each axis",
                                           loss="L1 on sigmoid outputs, y weighted 2"))})
    export.write_safetensors(a.reg_out, export.cast_floats(rck["state"], "f16"), rm)
    print("wrote", a.det_out, a.reg_out, flush=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", choices=["det", "reg", "eval"])
    ap.add_argument("--work", default="/tmp/echo_work")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-seed", type=int, default=1)
    ap.add_argument("--train-count", type=int, default=2000)
    ap.add_argument("--val-seed", type=int, default=2)
    ap.add_argument("--val-count", type=int, default=200)
    ap.add_argument("--min-size", type=int, default=128)
    ap.add_argument("--max-size", type=int, default=384)
    ap.add_argument("--det-epochs", type=int, default=2)
    ap.add_argument("--det-lr", type=float, default=1e-3)
    ap.add_argument("--reg-epochs", type=int, default=4)
    ap.add_argument("--reg-lr", type=float, default=2e-3)
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--det-out", default=os.path.join(HERE, "..", "weights", "echo_cycle_demo.safetensors"))
    ap.add_argument("--reg-out", default=os.path.join(HERE, "..", "weights", "echo_points_demo.safetensors"))
    a = ap.parse_args(argv)
    a.argv = list(argv)
    torch.set_num_threads(a.threads)
    os.makedirs(a.work, exist_ok=True)
    {"det": train_det, "reg": train_reg, "eval": evaluate}[a.part](a)


if __name__ == "__main__":
    main()
