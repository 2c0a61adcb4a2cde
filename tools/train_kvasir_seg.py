#!/usr/bin/python3
"""tools/train_kvasir_seg.py - train the lesion-segmentation network ("segnet" of
tools/lesionseg_ref.py, the shipped synthetic demo's architecture and metadata, so `medinfer
lesionseg --seg-model` runs it unchanged) on real colonoscopy images: the train split of Kvasir-SEG.

    tools/train_kvasir_seg.py cache                     # images, masks, depth -> WORK/cache.pt
    tools/train_kvasir_seg.py train [--init synthetic|scratch] [--steps-crop N] [--steps-full N] ...
    tools/train_kvasir_seg.py export --scores eval.json # WORK/seg.pt -> weights/lesionseg_seg_kvasir.safetensors

Data: ../shared/data/kvasir-seg-full (995 images, JPEG masks thresholded at 128), split by the
fixed list tools/kvasir_seg_split.tsv (tools/kvasir_split.py): 800 train, 100 validation, 100 test.
This script reads only train and val ids and refuses to go on if a test id would be read; the test
images are scored only by tools/eval_kvasir_seg.py, after training, from the exported blob.
Checkpoints are chosen on validation: mean Dice per image at the image's original size (lesion
probability up-sampled bilinear to the original size, the argmax of the two channels, what
`medinfer lesionseg` does), against the expert mask thresholded at 128.

Depth branch input from the synthetic-trained depth network, frozen: the depth blob
weights/lesionseg_depth_demo.safetensors (trained on tools/lesionseg_synth.py frames only) is read
back (F16 widened to F32, as the C reader does) and run once, in eval mode, on every train and val
image; the maps are cached (with the blob's SHA-256, so a different blob recomputes them) and
segnet trains on the depth the pipeline will give it. The depth network is not trained here.

Preprocessing, as both blobs' metadata says: the RGB image resized straight to 192 x 192 (squash,
aspect not kept) with torchvision's antialiased bilinear resize of a uint8 tensor
(train_lesionseg.resize_u8), then ImageNet normalisation. Masks go to 192 by antialiased bilinear
of the 0/1 map, > 0.5 (training targets only; the score is at the original size).

Training (seeded: torch.manual_seed and one torch.Generator from --seed; the same commands and
--threads give the same weights on the same machine). segnet initialised from the shipped synthetic
segnet (weights/lesionseg_seg_demo.safetensors, our own weights) or from scratch (--init).
Augmentation, applied alike to image, depth and mask: a random scale (zoom 0.75 .. 1.33, the depth
map scaled with the image rather than recomputed: the depth net is not run inside the loop, which
would cost more than the segnet step itself), flips and 90-degree turns; colour jitter (brightness,
contrast, per-channel gain, saturation) on the image only. Phase 1: random 128 x 128 crops of the
scaled frames (2.25 times cheaper than whole frames, so more images per minute; the network is
fully convolutional). Phase 2: whole 192 frames (what inference sees), zoom 0.9 .. 1.1.
Each phase has its own warm-up and cosine decay. Loss: cross-entropy of the 2-class softmax + mean
over the images of (1 - soft Dice of the lesion channel): the score is a per-image Dice, and every
Kvasir-SEG image has a polyp. AdamW (weight decay 1e-4).

The defaults are the shipped run's step counts (750 crop steps, 150 whole-frame steps, val every 75).
RESULTS: see docs/lesionseg_kvasir.md for the commands, wall times, validation curve and the test
table of the shipped blob.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export                 # noqa: E402
import lesionseg_ref as ref   # noqa: E402
import train_lesionseg as tl  # noqa: E402

MODEL_VERSION = "2026.12.01.1"
INPUT = tl.INPUT
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(ROOT, "..", "shared", "data")
SPLIT = os.path.join(HERE, "kvasir_seg_split.tsv")
DEPTH_BLOB = os.path.join(ROOT, "weights", "lesionseg_depth_demo.safetensors")
SYNTH_SEG_BLOB = os.path.join(ROOT, "weights", "lesionseg_seg_demo.safetensors")
OUT_BLOB = os.path.join(ROOT, "weights", "lesionseg_seg_kvasir.safetensors")
log = tl.log


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_split(path=SPLIT):
    """-> {id: 'train' | 'val' | 'test'} from the committed split file."""
    out = {}
    with open(path) as f:
        for line in f:
            i, s = line.rstrip("\n").split("\t")
            out[i] = s
    if sorted(out.values()).count("train") != 800 or len(out) != 1000:
        raise SystemExit(f"{path}: expected 1000 ids, 800 of them train")
    return out


def ids_of(split, which):
    return sorted(i for i, s in split.items() if s == which)


def load_pair(data, i):
    """-> (RGB uint8 HWC, bool mask HW) of one Kvasir-SEG id; masks are JPEG, white = polyp."""
    rgb = np.asarray(Image.open(os.path.join(data, "images", i + ".jpg")).convert("RGB"))
    m = np.asarray(Image.open(os.path.join(data, "masks", i + ".jpg")).convert("L")) >= 128
    if m.shape != rgb.shape[:2]:
        raise SystemExit(f"{i}: mask {m.shape} and image {rgb.shape[:2]} differ in size")
    return rgb, m


def mask192(m):
    return (tl.resize_map(torch.from_numpy(m.astype(np.float32))[None, None])[0] > 0.5).to(torch.uint8)


# ---------------------------------------------------------------- cache

def cmd_cache(a):
    split = read_split()
    data = os.path.join(a.data, "kvasir-seg-full")
    os.makedirs(a.work, exist_ok=True)
    dm, dmeta = tl.load_blob(DEPTH_BLOB)
    if dmeta["resize_mode"] != "squash" or int(dmeta["input_size"]) != INPUT:
        raise SystemExit(f"{DEPTH_BLOB}: preprocessing metadata differs from what this script feeds")
    out = {"depth_blob_sha256": sha256_file(DEPTH_BLOB), "split_sha256": sha256_file(SPLIT)}
    for which in ("train", "val"):
        t0 = time.time()
        ids = ids_of(split, which)
        x8, msk, full = [], [], []
        for i in ids:
            if split[i] == "test":   # cannot happen by construction; the rule is worth a check
                raise SystemExit(f"{i} is a test image")
            rgb, m = load_pair(data, i)
            x8.append(tl.resize_u8(rgb))
            msk.append(mask192(m))
            if which == "val":
                full.append(torch.from_numpy(m))
        x8 = torch.stack(x8)
        depth = tl.depth_forward_batches(dm, x8, bs=8)
        out[which] = {"ids": ids, "x8": x8, "mask": torch.stack(msk), "depth": depth}
        if which == "val":
            out[which]["full_mask"] = full
        log(f"{which}: {len(ids)} images, depth from the frozen synthetic depth net, {time.time() - t0:.0f} s")
    torch.save(out, os.path.join(a.work, "cache.pt"))


def get_cache(a):
    c = torch.load(os.path.join(a.work, "cache.pt"))
    if c["depth_blob_sha256"] != sha256_file(DEPTH_BLOB) or c["split_sha256"] != sha256_file(SPLIT):
        raise SystemExit("cache.pt was made from another depth blob or split file: run `cache` again")
    return c


# ---------------------------------------------------------------- validation

def val_dice(model, va, bs=10):
    """Mean Dice per image at the original size: softmax probabilities up-sampled bilinear
    (align_corners False) to the image's size, lesion where channel 1 > channel 0."""
    model.eval()
    ds = []
    with torch.no_grad():
        for i in range(0, va["x8"].shape[0], bs):
            s = model(ref.seg_input(tl.normalize(va["x8"][i:i + bs]), va["depth"][i:i + bs]))
            for j in range(s.shape[0]):
                gt = va["full_mask"][i + j].numpy()
                u = F.interpolate(s[j:j + 1], size=gt.shape, mode="bilinear", align_corners=False)[0]
                ds.append(tl.dice((u[1] > u[0]).numpy(), gt))
    model.train()
    return float(np.mean(ds))


# ---------------------------------------------------------------- augmentation

def rand(gen, lo, hi):
    return lo + (hi - lo) * float(torch.rand(1, generator=gen))


def scaled_crop(x, d, m, gen, zoom, C):
    """One image: x (3,R,R) 0..1, d (1,R,R), m (1,R,R) 0/1 -> scaled by a random zoom (log-uniform
    in zoom), then a random C x C crop. A scaled frame smaller than C is padded before
    normalisation: black around the image, like the dark border of an endoscope frame."""
    z = float(np.exp(rand(gen, np.log(zoom[0]), np.log(zoom[1]))))
    S = max(int(round(INPUT * z)), 8)
    if S != INPUT:
        aa = S < INPUT
        x = F.interpolate(x[None], size=(S, S), mode="bilinear", align_corners=False, antialias=aa)[0].clamp(0, 1)
        d = F.interpolate(d[None], size=(S, S), mode="bilinear", align_corners=False, antialias=aa)[0]
        m = (F.interpolate(m[None], size=(S, S), mode="bilinear", align_corners=False, antialias=aa)[0] > 0.5).float()
    if S < C:
        p = C - S
        pt, pl = int(torch.randint(0, p + 1, (1,), generator=gen)), int(torch.randint(0, p + 1, (1,), generator=gen))
        pad = (pl, p - pl, pt, p - pt)
        x, d, m = F.pad(x, pad), F.pad(d, pad, mode="replicate"), F.pad(m, pad)
        S = C
    oy, ox = (int(v) for v in torch.randint(0, S - C + 1, (2,), generator=gen))
    return x[:, oy:oy + C, ox:ox + C], d[:, oy:oy + C, ox:ox + C], m[:, oy:oy + C, ox:ox + C]


# ---------------------------------------------------------------- training

def build_model(init):
    if init == "synthetic":
        model, meta = tl.load_blob(SYNTH_SEG_BLOB)
        if ref.config(meta) != ref.config({"arch": "segnet"}):
            raise SystemExit(f"{SYNTH_SEG_BLOB}: not the default segnet configuration")
        return model
    return ref.build({"arch": "segnet"})


def cmd_train(a):
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed + 1)
    c = get_cache(a)
    tr, va = c["train"], c["val"]
    model = build_model(a.init)
    if a.resume:
        model.load_state_dict(torch.load(a.resume))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    N = tr["x8"].shape[0]
    total = a.steps_crop + a.steps_full
    best, best_step, t0, run = -1.0, -1, time.time(), 0.0
    curve = []
    if a.val_at_start:
        best, best_step = val_dice(model, va), 0
        torch.save(model.state_dict(), os.path.join(a.work, f"seg_{a.tag}.pt"))
        log(f"step 0 ({a.init}): val mean Dice {best:.4f}")
        curve.append((0, round(best, 4)))
    for step in range(total):
        crop = step < a.steps_crop
        lr = tl.cosine_lr(opt, a.lr, step, a.steps_crop) if crop else \
            tl.cosine_lr(opt, a.lr_full, step - a.steps_crop, a.steps_full, warm=20)
        bs, C = (a.batch_crop, a.crop) if crop else (a.batch_full, INPUT)
        zoom = (0.75, 1.33) if crop else (0.9, 1.1)
        ii = torch.randint(0, N, (bs,), generator=gen)
        xs, ds, ms = [], [], []
        for j in range(bs):
            x, d, m = scaled_crop(tr["x8"][ii[j]].float() / 255, tr["depth"][ii[j]], tr["mask"][ii[j]].float(),
                                  gen, zoom, C)
            k, fl = int(torch.randint(0, 4, (1,), generator=gen)), bool(torch.randint(0, 2, (1,), generator=gen))
            x, d, m = tl.dihedral([x[None], d[None], m[None]], k, fl)
            xs.append(x[0])
            ds.append(d[0])
            ms.append(m[0])
        x, d, m = torch.stack(xs), torch.stack(ds), torch.stack(ms)
        x = (tl.color_jitter(x, gen) - tl.MEAN) / tl.STD
        st = {}
        model(ref.seg_input(x, d), st)
        logits = st["logits"]
        loss = F.cross_entropy(logits, m[:, 0].long()) + \
            tl.soft_dice_loss(torch.softmax(logits, 1)[:, 1], m[:, 0], per_frame=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        run = 0.98 * run + 0.02 * loss.item() if step else loss.item()
        if step % 25 == 0:
            log(f"step {step}/{total} ({'crop' if crop else 'full'}) loss {run:.4f} lr {lr:.2e} "
                f"({time.time() - t0:.0f} s)")
        if (step + 1) % a.val_every == 0 or step == total - 1:
            v = val_dice(model, va)
            curve.append((step + 1, round(v, 4)))
            log(f"step {step + 1}: val mean Dice {v:.4f} ({time.time() - t0:.0f} s)")
            if v > best:
                best, best_step = v, step + 1
                torch.save(model.state_dict(), os.path.join(a.work, f"seg_{a.tag}.pt"))
    res = {"init": a.init, "best_val_mean_dice": round(best, 4), "best_step": best_step, "curve": curve,
           "wall_s": round(time.time() - t0), "args": vars(a)}
    with open(os.path.join(a.work, f"train_{a.tag}.json"), "w") as f:
        json.dump(res, f, indent=1)
    log(f"best val mean Dice {best:.4f} at step {best_step}; {time.time() - t0:.0f} s")


# ---------------------------------------------------------------- export

def cmd_export(a):
    c = get_cache(a)
    sd = torch.load(os.path.join(a.work, f"seg_{a.tag}.pt"))
    model = ref.build({"arch": "segnet"})
    model.load_state_dict(sd)
    model.eval()
    with open(os.path.join(a.work, f"train_{a.tag}.json")) as f:
        tr = json.load(f)
    init = tr["init"]
    scores = {}
    if a.scores:
        with open(a.scores) as f:
            scores = json.load(f)["pytorch"]["summary"]
    training = {"dataset": "Kvasir-SEG (Jha et al., MMM 2020), ../shared/data/kvasir-seg-full",
                "split_file": "tools/kvasir_seg_split.tsv", "split_sha256": c["split_sha256"],
                "train_images": len(c["train"]["ids"]), "val_images": len(c["val"]["ids"]),
                "depth_input": "depth branch input from the synthetic-trained depth network, frozen",
                "depth_blob": "weights/lesionseg_depth_demo.safetensors",
                "depth_blob_sha256": c["depth_blob_sha256"],
                "init": ("weights/lesionseg_seg_demo.safetensors (synthetic-trained), sha256 "
                         + sha256_file(SYNTH_SEG_BLOB)) if init == "synthetic" else "scratch",
                "trainer": "tools/train_kvasir_seg.py", "seed": tr["args"]["seed"],
                "best_val_mean_dice": tr["best_val_mean_dice"], "best_step": tr["best_step"]}
    meta = export.blob_metadata("segnet", 2, ["background", "lesion"], INPUT, export.IMAGENET_MEAN,
                                export.IMAGENET_STD, MODEL_VERSION, "squash",
                                training_data=json.dumps(training))
    meta.update({k: v for k, v in ref.metadata(model.c).items() if k != "input_size"})
    meta["intended_use"] = (f"research demo trained on {len(c['train']['ids'])} Kvasir-SEG images from "
                            f"{'scratch' if init == 'scratch' else 'synthetic init'}; not a medical device")
    if scores:   # measured by tools/eval_kvasir_seg.py on the weights this export writes
        meta["test_scores"] = json.dumps({"set": "Kvasir-SEG test split, 100 images, at their original size",
                                          "measured_by": "tools/eval_kvasir_seg.py (PyTorch from the F16 blob)",
                                          **scores})
    export.write_safetensors(a.out, export.cast_floats(model.state_dict(), "f16"), meta)
    size = os.path.getsize(a.out)
    if size > 10 * 1024 * 1024:
        raise SystemExit(f"{a.out}: {size} bytes, over the 10 MB budget")
    # the F16 blob, read back as the C reader does, against the F32 state on val
    m16, _ = tl.load_blob(a.out)
    log(f"wrote {a.out}: {size} bytes; val mean Dice F32 {val_dice(model, c['val']):.4f}, "
        f"F16 blob {val_dice(m16, c['val']):.4f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("cache", "train", "export"):
        p = sub.add_parser(name)
        p.add_argument("--data", default=SHARED)
        p.add_argument("--work", default=os.path.join(ROOT, "build", "kvasir_seg_work"))
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--tag", default="main", help="names WORK/seg_TAG.pt and WORK/train_TAG.json")
        if name == "train":
            p.add_argument("--init", choices=("synthetic", "scratch"), default="synthetic")
            p.add_argument("--seed", type=int, default=1)
            p.add_argument("--steps-crop", type=int, default=750)
            p.add_argument("--steps-full", type=int, default=150)
            p.add_argument("--batch-crop", type=int, default=8)
            p.add_argument("--batch-full", type=int, default=4)
            p.add_argument("--crop", type=int, default=128)
            p.add_argument("--lr", type=float, default=2e-3)
            p.add_argument("--lr-full", type=float, default=5e-4)
            p.add_argument("--val-every", type=int, default=75)
            p.add_argument("--val-at-start", action="store_true", help="score and keep the initial state too")
            p.add_argument("--resume", help="start from this state_dict")
        if name == "export":
            p.add_argument("--out", default=OUT_BLOB)
            p.add_argument("--scores", help="tools/eval_kvasir_seg.py's JSON: its PyTorch test summary goes "
                                            "into the metadata")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    log(f"{a.cmd}: " + " ".join(sys.argv[1:]))
    {"cache": cmd_cache, "train": cmd_train, "export": cmd_export}[a.cmd](a)


if __name__ == "__main__":
    main()
