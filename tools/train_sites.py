#!/usr/bin/python3
"""tools/train_sites.py - train the demo site classifier of `medinfer endoqc` on synthetic frames.

    tools/train_sites.py [--bin build/medinfer] [--out weights/endoqc_sites_demo.safetensors]

What it does, all seeded (--seed, default 0), on the CPU: about 5 minutes on an idle 2-core machine
(the shipped blob took 13 minutes on one shared with five other builds):
  1. `medinfer endoqc-synth --dump` renders --per-site random views of each of the 26 synthetic
     sites (random camera pose, zoom, rotation, brightness, blur, sensor noise) through the very
     renderer and the same area down-scale that the demo videos and the decoder use, as 160x160
     crops (the decoder's work image). A second dump with another seed is the validation set.
  2. Each crop is resized to --input-size (default 64) exactly as medinfer's preprocessing does it
     (torchvision Resize(antialias=True), ImageNet mean/std), so training sees what inference sees.
  3. torchvision resnet18(num_classes=26), from scratch, Adam + cosine schedule, --epochs epochs.
  4. tools/export.py writes the blob in F16 (half the bytes; the reader widens to F32 and folds
     BN in float64) with the metadata `medinfer endoqc` reads: labels (the 26 sites in guideline
     order), resize (= input size: how step 2 resized), site_order, site_groups (fundus, antrum),
     the verdict defaults endoqc_min_frames, endoqc_min_prob, endoqc_site_threshold,
     model_version (dotted decimal), and the training record.

The shipped blob was trained with an earlier revision that wrote neither `resize` nor a dotted
model_version; its metadata was restated afterwards, weights untouched, with
    B=weights/endoqc_sites_demo.safetensors
    tools/blob_meta.py $B $B --set model_version=2026.11.30.1 --set resize=64

This is a demo model for synthetic video only: it has never seen a real stomach.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
GROUPS = {"fundus": ["fundus_gc", "fundus_pw", "fundus_aw", "fundus_lc"],
          "antrum": ["antrum_gc", "antrum_pw", "antrum_aw", "antrum_lc"]}


def read_ppm(path):
    with open(path, "rb") as f:
        data = f.read()
    parts = data.split(maxsplit=4)   # P6, width, height, maxval, pixels
    w, h = int(parts[1]), int(parts[2])
    return np.frombuffer(parts[4][:w * h * 3], dtype=np.uint8).reshape(h, w, 3)


def load_dump(binary, seed, per_site, size, workdir):
    d = os.path.join(workdir, f"dump{seed}")
    subprocess.run([binary, "endoqc-synth", "--dump", d, "--per-site", str(per_site),
                    "--seed", str(seed)], check=True)
    rows = [line.strip().split(",") for line in open(os.path.join(d, "labels.csv"))][1:]
    labels = [None] * 26
    xs, ys = [], []
    for name, site, label in rows:
        labels[int(site)] = label
        img = torch.from_numpy(read_ppm(os.path.join(d, name)).copy()).permute(2, 0, 1).float() / 255
        # torchvision Resize(size, antialias=True) on a square crop == this interpolate call;
        # one image at a time, so 160 px copies of the whole set are never held at once
        xs.append(F.interpolate(img[None], size=(size, size), mode="bilinear", align_corners=False,
                                antialias=True)[0])
        ys.append(int(site))
    x = torch.stack(xs)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return x, torch.tensor(ys), labels


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "medinfer"))
    ap.add_argument("--out", default=os.path.join(HERE, "..", "weights", "endoqc_sites_demo.safetensors"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-site", type=int, default=200)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    # dotted decimal: what `medinfer model update` compares (docs/trust.md)
    ap.add_argument("--model-version", default="2026.11.30.1")
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as work:
        x, y, labels = load_dump(a.bin, 1000 + a.seed, a.per_site, a.input_size, work)
        xv, yv, _ = load_dump(a.bin, 2000 + a.seed, max(10, a.per_site // 6), a.input_size, work)
    print(f"train_sites: {len(y)} training, {len(yv)} validation frames at {a.input_size} px "
          f"({time.time() - t0:.0f} s)", file=sys.stderr)

    import torchvision
    model = torchvision.models.resnet18(weights=None, num_classes=26)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = a.epochs * ((len(y) + a.batch - 1) // a.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.2)
    g = torch.Generator().manual_seed(a.seed)
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(len(y), generator=g)
        tot, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(y), a.batch):
            idx = perm[i:i + a.batch]
            xb = x[idx]
            # what the codec and the sensor add on top of the renderer: noise, a little contrast
            xb = xb * (1 + 0.1 * torch.randn(len(idx), 1, 1, 1, generator=g)) \
                + 0.05 * torch.randn(xb.shape, generator=g)
            out = model(xb)
            loss = F.cross_entropy(out, y[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += (out.argmax(1) == y[idx]).sum().item()
            tot += len(idx)
        model.eval()
        with torch.no_grad():
            acc = (torch.cat([model(xv[i:i + 256]).argmax(1) for i in range(0, len(yv), 256)]) == yv).float().mean().item()
        print(f"train_sites: epoch {epoch + 1}/{a.epochs}: loss {loss_sum / tot:.3f}, train acc "
              f"{correct / tot:.3f}, validation acc {acc:.3f} ({time.time() - t0:.0f} s)", file=sys.stderr)

    state = model.state_dict()
    meta = {
        # the crops were resized straight to input_size (step 2): Resize(input_size), no border
        # cropped, for `classify` as for `endoqc` (whose default would be input_size*256/224)
        "resize": str(a.input_size),
        "site_order": json.dumps(labels),
        "site_groups": json.dumps(GROUPS),
        "endoqc_min_frames": "2",
        "endoqc_min_prob": "0.5",
        "endoqc_site_threshold": "22",
        "training": json.dumps({"script": "tools/train_sites.py", "seed": a.seed, "per_site": a.per_site,
                                "epochs": a.epochs, "input_size": a.input_size,
                                "validation_accuracy": round(acc, 4),
                                "data": "medinfer endoqc-synth --dump (synthetic sites only)"}),
    }
    with tempfile.TemporaryDirectory() as work:
        sd, lab = os.path.join(work, "state.pt"), os.path.join(work, "labels.json")
        torch.save(state, sd)
        json.dump(labels, open(lab, "w"))
        cmd = [sys.executable, os.path.join(HERE, "export.py"), "--arch", "resnet18", "--state-dict", sd,
               "--labels", lab, "--input-size", str(a.input_size), "--model-version", a.model_version,
               "--dtype", "f16", "--out", a.out] + [f"--meta={k}={v}" for k, v in meta.items()]
        subprocess.run(cmd, check=True)
    print(f"train_sites: wrote {a.out} ({os.path.getsize(a.out) / 1e6:.1f} MB), validation accuracy "
          f"{acc:.3f}, {time.time() - t0:.0f} s in all", file=sys.stderr)


if __name__ == "__main__":
    main()
