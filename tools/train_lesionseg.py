#!/usr/bin/python3
"""tools/train_lesionseg.py - train the demo networks of depth-guided lesion segmentation
(tools/lesionseg_ref.py: "depthnet" and "segnet") on the synthetic frames of tools/lesionseg_synth.py,
export them, and score them from the exported blobs.

    tools/train_lesionseg.py cache --data D                  # PNG -> D/cache_{train,val}.npz (192 px)
    tools/train_lesionseg.py depth --data D --work W         # EncDec, then refinement -> depth blob
    tools/train_lesionseg.py seg   --data D --work W         # depth of every frame, then SegNet -> seg blob
    tools/train_lesionseg.py eval  --data D --work W         # W/eval.json + W/eval.md

D holds the generator's folders train/ (seed 1), val/ (seed 2) and test/ (seed 5000, 50 frames);
see RESULTS at the end of this docstring for the commands and figures of the shipped blobs.
Seed 5000 is the held-out test set: only `eval` reads it, after training; nothing (steps,
checkpoints, thresholds) is chosen on it. Checkpoints are chosen on val (seed 2).

Preprocessing (what the blobs' metadata says, and what the pipeline must do): the 8-bit RGB frame
resized straight to input_size x input_size ("resize_mode" squash, the aspect ratio is not kept)
with torchvision's F.resize(uint8 tensor, BILINEAR, antialias=True) (float resize, rounded back to
uint8: ops/preprocess.c's transform), then x / 255, (x - "mean") / "std" with ImageNet's mean and
std (tools/export.py IMAGENET_MEAN / IMAGENET_STD), NCHW float32. The same for both networks;
segnet's input is cat(that image, depthnet's output "depth") (lesionseg_ref.seg_input).
Ground truth at 192: depth resized by F.interpolate(bilinear, antialias=True) (normalised 0..1,
/ 20 cm); masks resized the same way from 0/255 and thresholded at 127.5.

Training (seeded: torch.manual_seed and torch.Generator from --seed; torch.set_num_threads(--threads,
default 2); torch's CPU kernels are deterministic for a given thread count, so a rerun with the
same commands and --threads gives the same weights on this machine):
  depth   DepthEstimator (lesionseg_ref.build({"arch": "depthnet"}), default metadata).
          A. The EncDec alone, in train mode (BatchNorm batch statistics; eval afterwards), on the
             two kinds of 96 x 96 input the estimator feeds it: the whole 192 image resized to 96
             (F.interpolate bilinear, align_corners False, as the estimator does) against the
             depth 2x2-averaged to 96, and random 96 x 96 crops of the 192 image against the same
             crop of the depth; each batch half of each. Augmentation: flips, 90-degree turns
             (depth is unchanged by both), brightness/contrast/colour jitter on the image.
             Loss: L1 + L1 of the x and y finite differences (edges of folds and polyps).
             AdamW (weight decay 1e-4), one-cycle cosine learning rate.
          B. The refinement head (EncDec frozen, eval mode): "fused" of the whole estimator is
             computed once per training frame (no gradient through the EncDec), then
             conv1..conv3 are trained on clamp(fused + 0.25 tanh(refine), 0, 1) at 192 with the
             same loss, flips/turns applied to image, fused and depth together.
          The blob: F16, tools/export.py write_safetensors / cast_floats / blob_metadata.
  seg     The depth blob is read back (F16 weights widened to F32, as the C reader does) and run
          (eval) on every train/val frame: segnet trains on the depth the pipeline will give it.
          SegNet (default metadata) on cat(normalised image, depth), flips/turns (image, depth and
          mask together), colour jitter (image only), loss = cross-entropy of the 2-class
          log-softmax + (1 - soft Dice of the lesion channel over the batch). Adam. First on
          random 96 x 96 crops (4x cheaper; the network is fully convolutional
          and its attention is local, so crops teach the same function), half of them centred on
          lesion pixels, then on whole 192 frames; each phase with its own warm-up and cosine decay
          (--lr, --lr-full). Every --val-every steps: mean Dice on val;
          the best state is kept and exported.
  eval    From the blobs only (F16 weights widened, modules built by lesionseg_ref from the
          blobs' own metadata). Synthetic test (seed 5000, 50 frames): per-frame Dice of the
          lesion mask at the frame's 256 x 256 (network probability resized bilinear to 256,
          lesion where > 0.5, i.e. the argmax; also at 192 against the resized mask), mean
          Dice, pixel precision and recall (pooled over all frames); a frame where both masks
          are empty has Dice 1 (one where only one is empty has Dice 0). Depth: abs-rel =
          mean |p - g| / g and RMSE in cm over all pixels at 256 (g clipped at 20 cm like p).
          SimCol3D (../shared/data/simcol3d-depth, 7 frames, RGB of the RGBA frame, 475 px):
          abs-rel and RMSE (cm) raw and median-scaled (p * median(g) / median(p) per frame).
          Kvasir-SEG (../shared/data/kvasir-seg-sample, 5 images, masks thresholded at 128):
          Dice at the image's own size. The networks have seen only synthetic frames: these two
          real/other-domain sets say how far that carries, no more.

RESULTS - the shipped blobs (depthnet 2026.12.01.1, segnet 2026.12.01.2) came from these commands, run in the
repository root with Debian's /usr/bin/python3 (torch 1.13). The frames of a seed do not depend on
--count/--start/--jobs, so generating in chunks of 100 (as was done, to keep partial progress)
gives the same files:
    tools/lesionseg_synth.py build/lesionseg_data/train --seed 1 --count 1000 --jobs 2
    tools/lesionseg_synth.py build/lesionseg_data/val --seed 2 --count 100 --jobs 2
    tools/lesionseg_synth.py build/lesionseg_data/test --seed 5000 --count 50 --jobs 2
    tools/train_lesionseg.py cache
    tools/train_lesionseg.py depth --threads 1 --steps-a 500 --batch-a 8 --steps-b 150 --batch-b 4 \
        --refine-frames 300
    tools/train_lesionseg.py seg --threads 1 --steps-crop 1000 --steps-full 200 --batch-crop 12 \
        --batch-full 4 --val-every 200
    cp build/lesionseg_work/seg.pt build/lesionseg_work/seg_stage1.pt
    tools/train_lesionseg.py seg --threads 1 --resume build/lesionseg_work/seg_stage1.pt \
        --steps-crop 0 --steps-full 500 --batch-full 4 --lr 5e-4 --val-every 100
    tools/train_lesionseg.py eval --threads 1
The machine (2 cores) was shared with other jobs at a load of 7-12 throughout, so the step counts
are small and --threads 1 was used: there, two OpenMP threads spent about 4x the CPU time per
step for a slower step. Wall times under that load: frames ~27 min (1150 frames, 2 processes),
cache 3 min, depth 14 min (A 9.5 min at ~1.1 s/step, fused maps + B 5 min), seg 14 min to run
the depth blob on 1100 frames, then stage 1 59 min (~2.5-3.5 s/step), stage 2 26 min; eval 46 s.
Validation (seed 2, 100 frames) mean Dice: stage 1 0.27 / 0.43 / 0.68 / 0.70 / 0.72 / 0.75 at
steps 200 .. 1200 (the crop phase ends at 1000; its schedule left the full-frame phase a tiny
learning rate, hence stage 2), stage 2 0.755 / 0.763 / 0.773 / 0.822 / 0.811 at 100 .. 500: the
step-400 state (0.822) is the shipped one. A third run from it (per-frame soft Dice,
--dice frame, lr 2e-4, 300 steps) reached 0.777 / 0.820 / 0.821 and did not beat it, so nothing of
it was shipped. Depth: val L1 of the normalised depth 0.0395 after A, 0.0366 after B (0.73 cm).
F16 blobs vs the F32 states: val mean Dice 0.82229 vs 0.82227, test 0.8054 vs 0.8053, depth
maps within 1e-4.

Held-out test (seed 5000) and the real/other-domain checks, all from the blobs:
    synthetic test, 50 frames (8 without polyp)   mean Dice 0.805 at 256 px (0.806 at 192 px),
                                                  median 0.954; 0.792 on the 42 frames with a
                                                  polyp; 7 of 8 empty frames predicted empty;
                                                  pixel precision 0.962, recall 0.895
                                                  depth abs-rel 0.409 (median frame 0.264; the
                                                  mean is pulled up by frames whose wall is within
                                                  ~1 cm), RMSE 1.17 cm
    SimCol3D, 7 frames                            abs-rel 0.289, RMSE 1.56 cm raw; median-scaled
                                                  0.216, 1.33 cm (median ratio g/p ~1.26)
    Kvasir-SEG sample, 5 images                   mean Dice 0.325 (0.21, 0.00, 0.26, 0.68, 0.47)
The misses on the synthetic test are small polyps (under 2 % of the frame: 8 frames with Dice
< 0.6). Kvasir-SEG: the networks never saw a real frame, the polyps there fill 7-32 % of the
image and look unlike the generator's; the figure is a domain-gap measurement, not a result.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export          # noqa: E402
import lesionseg_ref as ref  # noqa: E402

MODEL_VERSION = "2026.12.01.1"
INPUT = 192
MEAN = torch.tensor(export.IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(export.IMAGENET_STD).view(1, 3, 1, 1)
DEPTH_SCALE = 65280.0
HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "data")
INTENDED_USE = ("demo model trained on synthetic colonoscopy frames only (tools/lesionseg_synth.py): "
                "it has seen no real patient image; not for diagnosis")


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# ---------------------------------------------------------------- preprocessing

def resize_u8(img, size=INPUT):
    """HWC uint8 RGB -> (3, size, size) uint8: torchvision's antialiased bilinear resize of a uint8
    tensor (float math, rounded back), what ops/preprocess.c computes for resize_mode squash."""
    t = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)
    return TF.resize(t, [size, size], InterpolationMode.BILINEAR, antialias=True)


def normalize(x8):
    """(N, 3, H, W) uint8 (or float 0..255) -> float32 normalised with ImageNet mean/std."""
    return (x8.float() / 255 - MEAN) / STD


def resize_map(m, size=INPUT):
    """(N, 1, H, W) float -> size x size, bilinear with antialias (ground truth, not network input)."""
    return F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def load_set(folder, count=None):
    """The generator's PNGs -> dict of uint8 frames (N,3,192,192), depth 0..1 (N,1,192,192) float32,
    mask (N,1,192,192) uint8 0/1, plus the 256 px originals for scoring."""
    with open(os.path.join(folder, "index.json")) as f:
        index = json.load(f)
    ims = index["images"][:count] if count else index["images"]
    x8, dep, msk, full = [], [], [], []
    for im in ims:
        name = os.path.join(folder, im["file"][:-4])
        rgb = np.asarray(Image.open(name + ".png").convert("RGB"))
        d = np.asarray(Image.open(name + "_depth.png"), dtype=np.float32) / DEPTH_SCALE
        m = (np.asarray(Image.open(name + "_mask.png")) > 127).astype(np.float32)
        x8.append(resize_u8(rgb))
        dep.append(resize_map(torch.from_numpy(d)[None, None])[0])
        msk.append((resize_map(torch.from_numpy(m)[None, None])[0] > 0.5).to(torch.uint8))
        full.append((rgb, d, m))
    return {"x8": torch.stack(x8), "depth": torch.stack(dep), "mask": torch.stack(msk), "full": full,
            "index": ims}


def cache_path(data, split):
    return os.path.join(data, f"cache_{split}.pt")


def get_set(data, split):
    p = cache_path(data, split)
    if os.path.exists(p):
        return torch.load(p)
    s = load_set(os.path.join(data, split))
    s = {k: v for k, v in s.items() if k != "full"}
    torch.save(s, p)
    return s


# ---------------------------------------------------------------- augmentation

def dihedral(ts, k, flip):
    """The same flip + k quarter turns of every (N, C, H, W) tensor in ts."""
    out = []
    for t in ts:
        if flip:
            t = t.flip(-1)
        out.append(torch.rot90(t, k, (-2, -1)) if k else t)
    return out


def color_jitter(x, gen):
    """x (N,3,H,W) float in 0..1: per-frame brightness, contrast, per-channel gain, saturation."""
    n = x.shape[0]
    r = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    b = 0.75 + 0.5 * r(n, 1, 1, 1)
    c = 0.75 + 0.5 * r(n, 1, 1, 1)
    g = 0.9 + 0.2 * r(n, 3, 1, 1)
    s = 0.7 + 0.6 * r(n, 1, 1, 1)
    m = x.mean((1, 2, 3), keepdim=True)
    x = (x - m) * c + m
    x = x * b * g
    gray = x.mean(1, keepdim=True)
    x = gray + (x - gray) * s
    return x.clamp(0, 1)


def grad_loss(p, g):
    return ((p[..., :, 1:] - p[..., :, :-1]) - (g[..., :, 1:] - g[..., :, :-1])).abs().mean() + \
           ((p[..., 1:, :] - p[..., :-1, :]) - (g[..., 1:, :] - g[..., :-1, :])).abs().mean()


def depth_loss(p, g):
    return (p - g).abs().mean() + grad_loss(p, g)


def cosine_lr(opt, base, step, total, warm=50):
    lr = base * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0)))
    for pg in opt.param_groups:
        pg["lr"] = lr
    return lr


# ---------------------------------------------------------------- blobs

def read_blob(path):
    """-> (state_dict, metadata) of a blob written by export.write_safetensors: F16/F32 widened to
    float32 (as the C reader does), I64 (BatchNorm's num_batches_tracked) as int64."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    meta = head.pop("__metadata__", {})
    dt = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    sd = {}
    for k, v in head.items():
        a = np.frombuffer(raw, dt[v["dtype"]], offset=8 + n + v["data_offsets"][0],
                          count=int(np.prod(v["shape"], dtype=np.int64))).reshape(v["shape"])
        sd[k] = torch.from_numpy(a.astype(np.int64 if v["dtype"] == "I64" else np.float32))
    return sd, meta


def load_blob(path):
    sd, meta = read_blob(path)
    m = ref.build(meta)
    m.load_state_dict(sd, strict=True)
    return m.eval(), meta


def write_blob(path, model, arch, labels, extra):
    c = model.c
    meta = export.blob_metadata(arch, len(labels), labels, INPUT, export.IMAGENET_MEAN, export.IMAGENET_STD,
                                MODEL_VERSION, "squash", **extra)
    meta.update({k: v for k, v in ref.metadata(c).items() if k not in ("input_size",)})
    meta["intended_use"] = INTENDED_USE
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    export.write_safetensors(path, export.cast_floats(model.state_dict(), "f16"), meta)
    size = os.path.getsize(path)
    log(f"wrote {path}: {size} bytes")
    if size > 10 * 1024 * 1024:
        raise SystemExit(f"{path}: {size} bytes, over the 10 MB budget of a demo blob")


def training_data(data, a, what):
    idx = {}
    for split in ("train", "val"):
        with open(os.path.join(data, split, "index.json")) as f:
            j = json.load(f)
        idx[split] = {"seed": j["seed"], "count": len(j["images"])}
    return json.dumps({"generator": "tools/lesionseg_synth.py", "generator_version": j["version"],
                       "train": idx["train"], "val": idx["val"], "held_out_test_seed": 5000,
                       "trainer": f"tools/train_lesionseg.py {what}", "seed": a.seed})


# ---------------------------------------------------------------- depth

def depth_forward_batches(model, x8, bs=16, key="depth"):
    """The estimator (eval) on uint8 frames in batches -> stages[key] (N, 1, 192, 192)."""
    out = []
    with torch.no_grad():
        for i in range(0, x8.shape[0], bs):
            st = {}
            d = model(normalize(x8[i:i + bs]), st)
            out.append(st[key] if key != "depth" else d)
    return torch.cat(out)


def cmd_depth(a):
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    tr, va = get_set(a.data, "train"), get_set(a.data, "val")
    os.makedirs(a.work, exist_ok=True)
    model = ref.build({"arch": "depthnet"})
    ed = model.encdec
    N = tr["x8"].shape[0]
    P = int(model.c["patch_size"])
    S = int(model.c["global_size"])
    apath = os.path.join(a.work, "encdec.pt")
    if a.resume_encdec and os.path.exists(apath):
        ed.load_state_dict(torch.load(apath))
        log("EncDec from", apath)
    else:
        opt = torch.optim.AdamW(ed.parameters(), lr=a.lr_a, weight_decay=1e-4)
        ed.train()
        t0 = time.time()
        run = 0.0
        for step in range(a.steps_a):
            lr = cosine_lr(opt, a.lr_a, step, a.steps_a)
            ii = torch.randint(0, N, (a.batch_a,), generator=gen)
            x = tr["x8"][ii].float() / 255
            d = tr["depth"][ii]
            k, fl = int(torch.randint(0, 4, (1,), generator=gen)), bool(torch.randint(0, 2, (1,), generator=gen))
            x, d = dihedral([x, d], k, fl)
            x = (color_jitter(x, gen) - MEAN) / STD
            h = a.batch_a // 2
            xg = F.interpolate(x[:h], size=(S, S), mode="bilinear", align_corners=False)
            dg = F.avg_pool2d(d[:h], INPUT // S)
            oy = torch.randint(0, INPUT - P + 1, (a.batch_a - h,), generator=gen)
            ox = torch.randint(0, INPUT - P + 1, (a.batch_a - h,), generator=gen)
            xc = torch.stack([x[h + j, :, oy[j]:oy[j] + P, ox[j]:ox[j] + P] for j in range(a.batch_a - h)])
            dc = torch.stack([d[h + j, :, oy[j]:oy[j] + P, ox[j]:ox[j] + P] for j in range(a.batch_a - h)])
            pred = ed(torch.cat([xg, xc]))
            loss = depth_loss(pred, torch.cat([dg, dc]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            run = 0.98 * run + 0.02 * loss.item() if step else loss.item()
            if step % 50 == 0 or step == a.steps_a - 1:
                log(f"depth A step {step}/{a.steps_a} loss {run:.4f} lr {lr:.2e} ({time.time() - t0:.0f} s)")
        torch.save(ed.state_dict(), apath)
    model.eval()
    for p in ed.parameters():
        p.requires_grad_(False)
    # B: the refinement head on the frozen estimator's "fused"
    t0 = time.time()
    nb = min(N, a.refine_frames)
    fused = depth_forward_batches(model, tr["x8"][:nb], key="fused")
    vfused = depth_forward_batches(model, va["x8"], key="fused")
    log(f"fused maps of {nb} + {va['x8'].shape[0]} frames in {time.time() - t0:.0f} s; "
        f"val L1 of fused {((vfused - va['depth']).abs().mean()):.4f}")
    r = model.refine
    opt = torch.optim.Adam(r.parameters(), lr=a.lr_b)
    rs = float(model.c["refine_scale"])

    def refine_out(x, fu):
        h = F.leaky_relu(r["norm1"](r["conv1"](torch.cat([x, fu], 1))), 0.2)
        h = F.leaky_relu(r["norm2"](r["conv2"](h)), 0.2)
        return torch.clamp(fu + rs * torch.tanh(r["conv3"](h)), 0, 1)

    for step in range(a.steps_b):
        cosine_lr(opt, a.lr_b, step, a.steps_b, warm=20)
        ii = torch.randint(0, nb, (a.batch_b,), generator=gen)
        k, fl = int(torch.randint(0, 4, (1,), generator=gen)), bool(torch.randint(0, 2, (1,), generator=gen))
        x, fu, d = dihedral([normalize(tr["x8"][ii]), fused[ii], tr["depth"][ii]], k, fl)
        loss = depth_loss(refine_out(x, fu), d)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == a.steps_b - 1:
            log(f"depth B step {step}/{a.steps_b} loss {loss.item():.4f}")
    model.eval()
    with torch.no_grad():
        vd = torch.cat([refine_out(normalize(va["x8"][i:i + 16]), vfused[i:i + 16]) for i in range(0, len(vfused), 16)])
    log(f"val L1 fused {((vfused - va['depth']).abs().mean()):.4f} -> refined {((vd - va['depth']).abs().mean()):.4f} "
        f"(x 20 cm); B in {time.time() - t0:.0f} s")
    torch.save(model.state_dict(), os.path.join(a.work, "depth.pt"))
    path = os.path.join(a.out_dir, "lesionseg_depth_demo.safetensors")
    write_blob(path, model, "depthnet", ["depth"], {"training_data": training_data(a.data, a, "depth")})


# ---------------------------------------------------------------- segmentation

def soft_dice_loss(prob, target, per_frame=False, eps=1.0):
    """1 - soft Dice over the batch, or its mean over the frames (per_frame: the score's own
    per-frame Dice, where any lesion probability on a frame without lesion costs up to 1)."""
    if per_frame:
        inter = (prob * target).flatten(1).sum(1)
        return (1 - (2 * inter + eps) / (prob.flatten(1).sum(1) + target.flatten(1).sum(1) + eps)).mean()
    inter = (prob * target).sum()
    return 1 - (2 * inter + eps) / (prob.sum() + target.sum() + eps)


def dice(pred, gt):
    """Binary masks (bool arrays): 2|A n B| / (|A| + |B|), 1 when both are empty."""
    s = pred.sum() + gt.sum()
    return 1.0 if s == 0 else float(2 * (pred & gt).sum() / s)


def seg_val(model, x, d, mask, bs=16):
    model.eval()
    ds = []
    with torch.no_grad():
        for i in range(0, x.shape[0], bs):
            p = model(ref.seg_input(normalize(x[i:i + bs]), d[i:i + bs]))[:, 1] > 0.5
            for j in range(p.shape[0]):
                ds.append(dice(p[j].numpy(), mask[i + j, 0].numpy().astype(bool)))
    model.train()
    return float(np.mean(ds))


def cmd_seg(a):
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed + 1)
    tr, va = get_set(a.data, "train"), get_set(a.data, "val")
    dpath = os.path.join(a.out_dir, "lesionseg_depth_demo.safetensors")
    dcache = os.path.join(a.work, "seg_depth.pt")
    if os.path.exists(dcache) and os.path.getmtime(dcache) > os.path.getmtime(dpath):
        trd, vad = torch.load(dcache)
    else:
        t0 = time.time()
        dm, _ = load_blob(dpath)
        trd, vad = depth_forward_batches(dm, tr["x8"]), depth_forward_batches(dm, va["x8"])
        torch.save((trd, vad), dcache)
        log(f"depth of {len(trd)} + {len(vad)} frames from {dpath} in {time.time() - t0:.0f} s")
    model = ref.build({"arch": "segnet"})
    if a.resume:
        model.load_state_dict(torch.load(a.resume))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    N = tr["x8"].shape[0]
    total = a.steps_crop + a.steps_full
    best, best_state, t0, run = -1.0, None, time.time(), 0.0
    if a.resume:   # the state it starts from is the one to beat
        best = seg_val(model, va["x8"], vad, va["mask"])
        best_state = {k: t.clone() for k, t in model.state_dict().items()}
        log(f"resumed from {a.resume}: val mean Dice {best:.4f}")
    lesion_frames = [i for i in range(N) if tr["mask"][i].any()]
    for step in range(total):
        crop = step < a.steps_crop   # each phase has its own warm-up and cosine decay
        lr = cosine_lr(opt, a.lr, step, a.steps_crop) if crop else \
            cosine_lr(opt, a.lr_full, step - a.steps_crop, a.steps_full, warm=20)
        bs = a.batch_crop if crop else a.batch_full
        ii = torch.randint(0, N, (bs,), generator=gen)
        if crop:   # half the crops centred on a random lesion pixel of a frame with lesion
            for j in range(bs // 2):
                ii[j] = lesion_frames[int(torch.randint(0, len(lesion_frames), (1,), generator=gen))]
        x, d, m = tr["x8"][ii].float() / 255, trd[ii], tr["mask"][ii].float()
        if crop:
            C = a.crop
            xc, dc, mc = [], [], []
            for j in range(bs):
                if j < bs // 2:
                    yy, xx = torch.nonzero(m[j, 0], as_tuple=True)
                    q = int(torch.randint(0, len(yy), (1,), generator=gen))
                    cy = int(yy[q]) - C // 2 + int(torch.randint(-C // 4, C // 4 + 1, (1,), generator=gen))
                    cx = int(xx[q]) - C // 2 + int(torch.randint(-C // 4, C // 4 + 1, (1,), generator=gen))
                    oy, ox = min(max(cy, 0), INPUT - C), min(max(cx, 0), INPUT - C)
                else:
                    oy, ox = (int(v) for v in torch.randint(0, INPUT - C + 1, (2,), generator=gen))
                xc.append(x[j, :, oy:oy + C, ox:ox + C])
                dc.append(d[j, :, oy:oy + C, ox:ox + C])
                mc.append(m[j, :, oy:oy + C, ox:ox + C])
            x, d, m = torch.stack(xc), torch.stack(dc), torch.stack(mc)
        k, fl = int(torch.randint(0, 4, (1,), generator=gen)), bool(torch.randint(0, 2, (1,), generator=gen))
        x, d, m = dihedral([x, d, m], k, fl)
        x = (color_jitter(x, gen) - MEAN) / STD
        st = {}
        model(ref.seg_input(x, d), st)
        logits = st["logits"]
        loss = F.cross_entropy(logits, m[:, 0].long()) + \
            soft_dice_loss(torch.softmax(logits, 1)[:, 1], m[:, 0], a.dice == "frame")
        opt.zero_grad()
        loss.backward()
        opt.step()
        run = 0.98 * run + 0.02 * loss.item() if step else loss.item()
        if step % 50 == 0:
            log(f"seg step {step}/{total} ({'crop' if crop else 'full'}) loss {run:.4f} lr {lr:.2e} ({time.time() - t0:.0f} s)")
        if (step + 1) % a.val_every == 0 or step == total - 1:
            v = seg_val(model, va["x8"], vad, va["mask"])
            log(f"seg step {step + 1}: val mean Dice {v:.4f}")
            if v > best:
                best, best_state = v, {k: t.clone() for k, t in model.state_dict().items()}
                torch.save(best_state, os.path.join(a.work, "seg.pt"))
    model.load_state_dict(best_state)
    model.eval()
    log(f"best val mean Dice {best:.4f}; {time.time() - t0:.0f} s")
    path = os.path.join(a.out_dir, "lesionseg_seg_demo.safetensors")
    write_blob(path, model, "segnet", ["background", "lesion"], {"training_data": training_data(a.data, a, "seg")})


# ---------------------------------------------------------------- eval

def prep_image(rgb):
    return normalize(resize_u8(rgb)[None])


def up(t, h, w):
    return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)


def depth_metrics(p, g):
    """p, g in cm, same shape: abs-rel, RMSE (cm)."""
    return float(np.mean(np.abs(p - g) / g)), float(np.sqrt(np.mean((p - g) ** 2)))


def cmd_eval(a):
    dpath = os.path.join(a.out_dir, "lesionseg_depth_demo.safetensors")
    spath = os.path.join(a.out_dir, "lesionseg_seg_demo.safetensors")
    dm, dmeta = load_blob(dpath)
    sm, smeta = load_blob(spath)
    for meta in (dmeta, smeta):
        if meta["resize_mode"] != "squash" or int(meta["input_size"]) != INPUT or \
                json.loads(meta["mean"]) != export.IMAGENET_MEAN or json.loads(meta["std"]) != export.IMAGENET_STD:
            raise SystemExit("blob preprocessing metadata differs from what this script feeds")
    res = {"blobs": {p: {"sha256": __import__("hashlib").sha256(open(p, "rb").read()).hexdigest(),
                         "bytes": os.path.getsize(p), "model_version": m["model_version"]}
                     for p, m in ((dpath, dmeta), (spath, smeta))}}

    def run(rgb):
        x = prep_image(rgb)
        with torch.no_grad():
            d = dm(x)
            s = sm(ref.seg_input(x, d))
        return d, s[:, 1:2]

    # synthetic held-out test
    test = os.path.join(a.data, "test")
    with open(os.path.join(test, "index.json")) as f:
        tj = json.load(f)
    if tj["seed"] != 5000:
        raise SystemExit(f"{test}: seed {tj['seed']}, the held-out test set is seed 5000")
    frames = []
    tp = fp = fn = 0
    absrel, rmse = [], []
    for im in tj["images"][:50]:
        name = os.path.join(test, im["file"][:-4])
        rgb = np.asarray(Image.open(name + ".png").convert("RGB"))
        g = np.asarray(Image.open(name + "_depth.png"), dtype=np.float32) / DEPTH_SCALE * 20
        gm = np.asarray(Image.open(name + "_mask.png")) > 127
        d, p = run(rgb)
        H, W = gm.shape
        pm = up(p, H, W)[0, 0].numpy() > 0.5
        gm192 = (resize_map(torch.from_numpy(gm.astype(np.float32))[None, None])[0, 0] > 0.5).numpy()
        pd = up(d, H, W)[0, 0].numpy() * 20
        ar, rm = depth_metrics(pd, g)
        absrel.append(ar)
        rmse.append(rm)
        tp += int((pm & gm).sum())
        fp += int((pm & ~gm).sum())
        fn += int((~pm & gm).sum())
        frames.append({"file": im["file"], "polyps": im["polyp_count"], "lesion_fraction": im["lesion_fraction"],
                       "dice": round(dice(pm, gm), 4), "dice_192": round(dice(p[0, 0].numpy() > 0.5, gm192), 4),
                       "pred_fraction": round(float(pm.mean()), 5), "depth_absrel": round(ar, 4),
                       "depth_rmse_cm": round(rm, 3)})
    dices = [f["dice"] for f in frames]
    res["synthetic_test"] = {
        "seed": 5000, "frames": len(frames), "mean_dice": round(float(np.mean(dices)), 4),
        "median_dice": round(float(np.median(dices)), 4),
        "mean_dice_192": round(float(np.mean([f["dice_192"] for f in frames])), 4),
        "mean_dice_with_polyp": round(float(np.mean([f["dice"] for f in frames if f["polyps"]])), 4),
        "empty_frames": sum(1 for f in frames if not f["polyps"]),
        "empty_frames_correct": sum(1 for f in frames if not f["polyps"] and f["dice"] == 1.0),
        "precision": round(tp / max(tp + fp, 1), 4), "recall": round(tp / max(tp + fn, 1), 4),
        "depth_absrel": round(float(np.mean(absrel)), 4), "depth_rmse_cm": round(float(np.mean(rmse)), 3),
        "per_frame": frames}
    # SimCol3D
    sc = os.path.join(SHARED, "simcol3d-depth")
    rows = []
    for i in range(7):
        rgb = np.asarray(Image.open(os.path.join(sc, f"FrameBuffer_{i:04d}.png")).convert("RGB"))
        g = np.asarray(Image.open(os.path.join(sc, f"Depth_{i:04d}.png")), dtype=np.float32) / DEPTH_SCALE * 20
        d, _ = run(rgb)
        pd = up(d, *g.shape)[0, 0].numpy() * 20
        ar, rm = depth_metrics(pd, g)
        ps = pd * np.median(g) / max(np.median(pd), 1e-6)
        ars, rms = depth_metrics(ps, g)
        rows.append({"frame": i, "absrel": round(ar, 4), "rmse_cm": round(rm, 3), "absrel_median_scaled": round(ars, 4),
                     "rmse_cm_median_scaled": round(rms, 3), "median_ratio": round(float(np.median(g) / np.median(pd)), 3)})
    res["simcol3d"] = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0] if k != "frame"}
    res["simcol3d"]["per_frame"] = rows
    # Kvasir-SEG
    kv = os.path.join(SHARED, "kvasir-seg-sample")
    rows = []
    for fn_ in sorted(os.listdir(os.path.join(kv, "images"))):
        rgb = np.asarray(Image.open(os.path.join(kv, "images", fn_)).convert("RGB"))
        gm = np.asarray(Image.open(os.path.join(kv, "masks", fn_)).convert("L")) > 127
        _, p = run(rgb)
        pm = up(p, *gm.shape)[0, 0].numpy() > 0.5
        rows.append({"image": fn_, "dice": round(dice(pm, gm), 4), "gt_fraction": round(float(gm.mean()), 4),
                     "pred_fraction": round(float(pm.mean()), 4)})
    res["kvasir_seg"] = {"mean_dice": round(float(np.mean([r["dice"] for r in rows])), 4), "per_image": rows}
    os.makedirs(a.work, exist_ok=True)
    with open(os.path.join(a.work, "eval.json"), "w") as f:
        json.dump(res, f, indent=1)
    st, s3, kq = res["synthetic_test"], res["simcol3d"], res["kvasir_seg"]
    kdice = ", ".join(f"{r['dice']:.2f}" for r in kq["per_image"])
    md = ["| set | metric | value |", "|---|---|---|",
          f"| synthetic test (seed 5000, {st['frames']} frames, {st['empty_frames']} without polyp) | mean Dice (256 px) | {st['mean_dice']:.3f} |",
          f"| | median Dice | {st['median_dice']:.3f} |",
          f"| | mean Dice at 192 px | {st['mean_dice_192']:.3f} |",
          f"| | mean Dice, frames with polyp | {st['mean_dice_with_polyp']:.3f} |",
          f"| | empty frames predicted empty | {st['empty_frames_correct']} / {st['empty_frames']} |",
          f"| | pixel precision / recall | {st['precision']:.3f} / {st['recall']:.3f} |",
          f"| | depth abs-rel / RMSE | {st['depth_absrel']:.3f} / {st['depth_rmse_cm']:.2f} cm |",
          f"| SimCol3D (7 frames) | depth abs-rel / RMSE, raw | {s3['absrel']:.3f} / {s3['rmse_cm']:.2f} cm |",
          f"| | depth abs-rel / RMSE, median-scaled | {s3['absrel_median_scaled']:.3f} / {s3['rmse_cm_median_scaled']:.2f} cm |",
          f"| Kvasir-SEG sample (5 images) | mean Dice | {kq['mean_dice']:.3f} ({kdice}) |"]
    with open(os.path.join(a.work, "eval.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


# ---------------------------------------------------------------- main

def cmd_cache(a):
    for split in ("train", "val"):
        t0 = time.time()
        p = cache_path(a.data, split)
        if os.path.exists(p):
            os.remove(p)
        s = get_set(a.data, split)
        log(f"{split}: {s['x8'].shape[0]} frames cached in {time.time() - t0:.0f} s; "
            f"{int(sum(bool(m.any()) for m in s['mask']))} with lesion")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("cache", "depth", "seg", "eval"):
        p = sub.add_parser(name)
        p.add_argument("--data", default="build/lesionseg_data")
        p.add_argument("--work", default="build/lesionseg_work")
        p.add_argument("--out-dir", default="weights", help="where the blobs are written / read")
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--threads", type=int, default=2)
        if name == "depth":
            p.add_argument("--steps-a", type=int, default=500)
            p.add_argument("--batch-a", type=int, default=8)
            p.add_argument("--lr-a", type=float, default=2e-3)
            p.add_argument("--steps-b", type=int, default=150)
            p.add_argument("--batch-b", type=int, default=4)
            p.add_argument("--lr-b", type=float, default=2e-3)
            p.add_argument("--refine-frames", type=int, default=300)
            p.add_argument("--resume-encdec", action="store_true", help="reuse WORK/encdec.pt (skip A)")
        if name == "seg":
            p.add_argument("--steps-crop", type=int, default=1000)
            p.add_argument("--steps-full", type=int, default=500)
            p.add_argument("--batch-crop", type=int, default=12)
            p.add_argument("--batch-full", type=int, default=4)
            p.add_argument("--crop", type=int, default=96)
            p.add_argument("--lr", type=float, default=2e-3, help="the crop phase's peak learning rate")
            p.add_argument("--lr-full", type=float, default=5e-4, help="the full-frame phase's peak learning rate")
            p.add_argument("--val-every", type=int, default=100)
            p.add_argument("--resume", help="start from this state_dict")
            p.add_argument("--dice", choices=("batch", "frame"), default="batch",
                           help="soft Dice of the whole batch, or the mean of per-frame soft Dice")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    log(f"{a.cmd}: " + " ".join(sys.argv[1:]))
    {"cache": cmd_cache, "depth": cmd_depth, "seg": cmd_seg, "eval": cmd_eval}[a.cmd](a)


if __name__ == "__main__":
    main()
