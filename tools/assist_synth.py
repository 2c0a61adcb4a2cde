#!/usr/bin/python3
"""tools/assist_synth.py - seeded synthetic endoscopy frames with pasted lesions of four classes and
their boxes: the training and test data of the endoscopy assistant's demo detector
(tools/train_assist_det.py), and short frame sequences for the assistant's end-to-end tests.

    tools/assist_synth.py OUTDIR --seed S --count N [--start I] [--size 320] [--jobs J] [--sheet PNG]
    tools/assist_synth.py OUTDIR --video --seed S [--index I] [--frames 200] [--size 320] [--lesions 2]
                          [--hold 15]

Frames. Frame i of seed S depends on (S, i) alone (not on --count, --start or --jobs): the
background is tools/lesionseg_synth.py's frame (S, i) rendered without its polyps (the colon tube,
its folds, mucosa texture, lighting, blur, noise, 30 % with the octagonal black border), and the
lesions are drawn from numpy's default_rng([S, i, 1]). Per frame: 20 % none, else 1 (65 %) or 2
lesions, classes equally likely, boxes not overlapping. Files (NNNN = i, zero-padded to 4 digits):
  NNNN.png      8-bit RGB, size x size
  index.json    {"generator", "version", "seed", "size", "labels", "images": [per frame: file, seed,
                index, "lesions": [{"label", "label_index", "box": [x1, y1, x2, y2], "kind"}]]},
                merged with an index.json already there (several --start ranges fill one folder).
Boxes are in pixels, torchvision's convention: x1, y1 the top-left corner of the first pixel, x2, y2
the bottom-right corner of the last pixel whose lesion coverage is >= 0.5 (so a 1-pixel lesion at
(3, 4) is [3, 4, 4, 5]); lesions cut by the image edge are clipped to it (at least 60 % of every
lesion lies inside).

Video (--video). One sequence, drawn from default_rng([S, I, 2]): the background is
lesionseg_synth's frame (S, I) rendered at 3 x size without polyps, the lesions are pasted on it,
and the camera is a size x size window that drifts over it along a serpentine path (left to right
along the top third, down, right to left, down, left to right along the bottom third), at constant
speed but for --hold frames of standstill (a "freeze") when the window is centred on each lesion.
The lesions (--lesions, 0-3) sit at evenly spaced points of the path (tenths 2.5, 5, 7.5 of it for
three), so they enter the view, stay, and leave, with lesion-free stretches before, between and
after. Each frame gets its own sensor noise (sigma 1 / 255) so that no two are identical. Files:
  NNNN.png      frame N of the sequence (N from 0), 8-bit RGB, size x size
  truth.json    {"generator", "version", "seed", "index", "size", "frames", "fps": 25, "labels",
                "lesions": [{"id", "label", "label_index", "kind", "frames": [first, last] (the
                frames where >= 50 % of it is in view), "frames_any": [first, last] (any part in
                view)}], "per_frame": [{"frame", "window": [x, y] (its top-left corner in the
                3 x size background), "lesions": [{"id", "label", "label_index", "box",
                "visible"}]}]}
                per_frame lists a lesion in the frames where >= 50 % of its area is in view
                ("visible" = that fraction), its box clipped to the frame.
tools/assist_synth.py OUT --video ... then `ffmpeg -framerate 25 -i OUT/%04d.png ... clip.mp4`
makes a video for medinfer assist-terminal.

Seeds (a convention of tools/train_assist_det.py): seed 1 is the training set, seed 2 the
validation set (checkpoints and the score threshold are chosen on it), seed 5000 the held-out
test set (used once, to report).

Lesions. Each is drawn as an albedo map, a height map (for shading with the light at the camera:
darker where the surface slopes away, a specular glint on wet tops) and a coverage map, in a
sprite around its centre; its colour is relative to the local mucosa colour and brightness (the
background blurred at the lesion's scale), so it sits in the frame's lighting. Sizes are radii in
fractions of the frame size.
  adenomatous polyp      reddish (mucosa x [1, 0.6-0.8, 0.6-0.8]), lobulated (a dome and 2-4
                         overlapping lobes), a tubular (elongated pits along one direction) or villous
                         (finger-like fronds) surface pattern, sessile (70 %) or on a stalk (a
                         mucosa-coloured neck 1.2-2 r long behind the head); r 0.06-0.15.
  non-adenomatous polyp  small (r 0.035-0.075), pale (mucosa blended 45-70 % towards a whitish
                         pink), smooth (no pattern), flat (low dome, soft edge).
  ulcer                  a depressed white-yellow fibrin base (patchy), inside a red rim
                         (mucosa x [1.1, 0.5, 0.5]) 20-35 % of r wide, irregular outline;
                         r 0.05-0.13.
  other                  a blood clot (dark red to black-red, irregular, glossy; 50 %) or a
                         diverticulum opening (a dark elliptic hole fading to black, under a paler
                         rim); r 0.035-0.09.
The looks differ the way the real classes do; only the colour and pattern statistics matter for
the demo, not anatomical truth. One 256 x 256 frame takes about 0.5 s here (the background).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lesionseg_synth  # noqa: E402

GENERATOR = "tools/assist_synth.py"
VERSION = 1
LABELS = ["__background__", "adenomatous polyp", "non-adenomatous polyp", "ulcer", "other"]
HIGH_RISK = ["adenomatous polyp", "ulcer"]
SEED_TRAIN, SEED_VAL, SEED_TEST = 1, 2, 5000


def smoothstep(a, b, x):
    t = np.clip((x - a) / (b - a), 0, 1)
    return t * t * (3 - 2 * t)


def noise2(rng, h, w, cells):
    """Smooth 2-D value noise in [0, 1], (h, w): a cells x cells random grid upsampled bicubically."""
    g = rng.random((cells, cells)).astype(np.float32)
    im = Image.fromarray(g, mode="F").resize((w, h), Image.BICUBIC)
    return np.clip(np.asarray(im), 0, 1)


def blur(a, sigma):
    if a.ndim == 3:
        return np.stack([lesionseg_synth.gauss_blur2d(a[:, :, k], sigma) for k in range(a.shape[2])], 2)
    return lesionseg_synth.gauss_blur2d(a, sigma)


def luma(rgb):
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


# ---------------------------------------------------------------- sprites

def sprite(rng, cls, r):
    """One lesion of class cls (1..4) with radius r px, in a square sprite of half-size n around its
    centre. Returns (alpha, albedo (relative to the local mucosa: 1 = mucosa), absolute (bool mask of
    pixels whose albedo is an absolute colour instead), height, gloss, pale, kind)."""
    n = int(math.ceil(3.2 * r)) + 2
    yy, xx = np.mgrid[-n:n + 1, -n:n + 1].astype(np.float32)
    H = W = 2 * n + 1
    ang = np.arctan2(yy, xx)
    rad = np.hypot(xx, yy)

    def wobbly_disc(cx, cy, rr, amp, ax=1.0, rot=0.0):
        """signed distance (negative inside, px) of a disc with a noisy outline, optional ellipse"""
        c, s = math.cos(rot), math.sin(rot)
        u = ((xx - cx) * c + (yy - cy) * s) / ax
        v = -(xx - cx) * s + (yy - cy) * c
        a = np.arctan2(v, u)
        k = rng.integers(3, 7)
        wob = sum(rng.uniform(0, amp) * np.cos(j * a + rng.uniform(0, 6.3)) for j in range(2, 2 + k))
        return np.hypot(u, v) - rr * (1 + wob)

    albedo = np.ones((H, W, 3), np.float32)
    absolute = np.zeros((H, W), bool)
    gloss = np.full((H, W), 0.5, np.float32)
    pale = np.zeros((H, W), np.float32)   # blend of the colour towards a whitish pink
    if cls == 1:   # adenomatous polyp
        stalked = rng.random() < 0.3
        kind = ("pedunculated" if stalked else "sessile") + ("-villous" if rng.random() < 0.4 else "-tubular")
        lobes = [(0.0, 0.0, r)]
        for _ in range(rng.integers(2, 5)):
            a, d = rng.uniform(0, 2 * math.pi), rng.uniform(0.35, 0.6) * r
            lobes.append((d * math.cos(a), d * math.sin(a), rng.uniform(0.45, 0.7) * r))
        height = np.zeros((H, W), np.float32)
        sd = np.full((H, W), 1e9, np.float32)
        for cx, cy, rr in lobes:
            s = wobbly_disc(cx, cy, rr, 0.06)
            sd = np.minimum(sd, s)
            d = np.clip(-s / rr, 0, 1)   # 0 at the outline, 1 at the lobe's centre
            height = np.maximum(height, np.sqrt(1 - (1 - d) ** 2) * rr * 0.8)
        if stalked:
            a = rng.uniform(0, 2 * math.pi)
            L = rng.uniform(1.2, 2.0) * r
            u = xx * math.cos(a) + yy * math.sin(a)
            v = -xx * math.sin(a) + yy * math.cos(a)
            neck = np.maximum(np.abs(v) - 0.3 * r * (1 + 0.3 * u / L), np.maximum(-u, u - L))
            neck_h = np.clip(-neck / (0.3 * r), 0, 1) * 0.35 * r
            under = neck_h > height
            height = np.maximum(height, neck_h)
            sd = np.minimum(sd, neck)
            albedo[under] = np.array([1.05, 0.92, 0.92])
        alpha = smoothstep(1.5, -1.5, sd)
        red = np.array([1.0, rng.uniform(0.6, 0.8), rng.uniform(0.6, 0.8)], np.float32) * rng.uniform(0.8, 1.0)
        head = ~absolute if not stalked else ~under
        # surface pattern: tubular = elongated pits along one direction, villous = finger-like fronds
        th = rng.uniform(0, math.pi)
        warp = noise2(rng, H, W, max(3, int(W / 6))) * 2 * math.pi
        freq = rng.uniform(0.55, 0.8) if kind.endswith("tubular") else rng.uniform(0.9, 1.3)
        u = (xx * math.cos(th) + yy * math.sin(th)) * (freq * 6.0 / max(r, 4) * 2)
        if kind.endswith("tubular"):
            pat = np.abs(np.sin(u + 1.5 * warp))
            pat = smoothstep(0.15, 0.6, pat)          # dark thin grooves between long ridges
        else:
            v = (-xx * math.sin(th) + yy * math.cos(th)) * (freq * 6.0 / max(r, 4))
            pat = smoothstep(0.2, 0.8, 0.5 + 0.5 * np.sin(u + warp) * np.cos(0.5 * v + warp))
        shade = 0.72 + 0.4 * pat
        albedo[head] = red * shade[head][:, None]
        height += (pat - 0.5) * 0.06 * r
        gloss[:] = rng.uniform(0.5, 1.0)
    elif cls == 2:   # non-adenomatous (hyperplastic) polyp
        kind = "hyperplastic"
        sd = wobbly_disc(0, 0, r, 0.05, ax=rng.uniform(1.0, 1.4), rot=rng.uniform(0, math.pi))
        alpha = smoothstep(2.0, -2.0, sd)
        height = np.clip(-sd / r, 0, 1) ** 0.7 * 0.3 * r
        pale[:] = rng.uniform(0.45, 0.7) * np.clip(-sd / 3, 0, 1)
        albedo *= (1 + 0.04 * (noise2(rng, H, W, 6) - 0.5))[:, :, None]
        gloss[:] = rng.uniform(0.3, 0.6)
    elif cls == 3:   # ulcer
        kind = "ulcer"
        base_r = r * rng.uniform(0.65, 0.8)
        sd = wobbly_disc(0, 0, base_r, 0.12, ax=rng.uniform(1.0, 1.5), rot=rng.uniform(0, math.pi))
        rim_w = rng.uniform(0.2, 0.35) * r
        alpha = smoothstep(rim_w + 2, rim_w - 2, sd)
        inside = smoothstep(1.5, -1.5, sd)
        rim = np.clip(1 - np.abs(sd) / rim_w, 0, 1) * (1 - inside)
        fib = 1.35 * np.array([1.0, 0.93, rng.uniform(0.55, 0.75)], np.float32)
        patch = noise2(rng, H, W, max(4, int(W / 5)))
        fib_c = fib[None, None, :] * (0.85 + 0.3 * patch)[:, :, None]
        absolute = inside > 0.5
        redrim = np.array([1.1, 0.5, 0.5], np.float32)
        albedo = (1 - rim[:, :, None]) + rim[:, :, None] * redrim
        albedo[absolute] = fib_c[absolute]
        height = -0.25 * r * inside + 0.06 * r * rim
        gloss[:] = 0.3
    else:   # other: blood clot or diverticulum opening
        if rng.random() < 0.5:
            kind = "blood clot"
            sd = wobbly_disc(0, 0, r, 0.08, ax=rng.uniform(1.0, 1.8), rot=rng.uniform(0, math.pi))
            alpha = smoothstep(1.5, -1.5, sd)
            dark = rng.uniform(0.15, 0.45)
            clot = np.array([0.55, 0.04, 0.05], np.float32) * dark / 0.3
            mott = noise2(rng, H, W, max(4, int(W / 4)))
            albedo = np.broadcast_to(clot, (H, W, 3)) * (0.6 + 0.8 * mott)[:, :, None]
            absolute[:] = True
            height = np.clip(-sd / r, 0, 1) ** 0.5 * 0.3 * r
            gloss[:] = 1.5
        else:
            kind = "diverticulum"
            axr = rng.uniform(1.0, 1.6)
            sd = wobbly_disc(0, 0, r, 0.04, ax=axr, rot=rng.uniform(0, math.pi))
            hole = smoothstep(1.5, -0.6 * r, sd)
            rimz = np.clip(1 - np.abs(sd - 0.15 * r) / (0.25 * r), 0, 1)
            alpha = smoothstep(0.35 * r, 0.1 * r, sd)
            albedo = (1 - hole[:, :, None] * 0.97) * (1 + 0.15 * rimz[:, :, None])
            height = 0.1 * r * rimz - 0.3 * r * hole
            gloss[:] = 0.4
    return alpha.astype(np.float32), albedo.astype(np.float32), absolute, height.astype(np.float32), \
        gloss.astype(np.float32), pale, kind


def paste(img, rng, cls, cx, cy, r):
    """Paste one lesion centred at (cx, cy) on img (float 0..1, H x W x 3, changed in place).
    Returns its box (torchvision convention, clipped) and the lesion's kind, or None when less than
    60 % of it would lie inside."""
    alpha, albedo, absolute, height, gloss, pale, kind = sprite(rng, cls, r)
    n = alpha.shape[0] // 2
    Hh, Ww = img.shape[:2]
    x0, y0 = int(round(cx)) - n, int(round(cy)) - n
    sx0, sy0 = max(0, -x0), max(0, -y0)
    sx1, sy1 = min(alpha.shape[1], Ww - x0), min(alpha.shape[0], Hh - y0)
    if sx1 <= sx0 or sy1 <= sy0:
        return None
    full = float((alpha >= 0.5).sum())
    a = alpha[sy0:sy1, sx0:sx1]
    if full == 0 or (a >= 0.5).sum() < 0.6 * full:
        return None
    region = img[y0 + sy0:y0 + sy1, x0 + sx0:x0 + sx1]
    # the local mucosa: colour and brightness blurred at the lesion's scale
    local = blur(region, max(1.0, r / 2))
    lum = np.maximum(luma(local), 1e-3)
    chroma = local / lum[:, :, None]
    alb = albedo[sy0:sy1, sx0:sx1]
    absm = absolute[sy0:sy1, sx0:sx1]
    col = np.where(absm[:, :, None], alb, chroma * alb)
    pl = pale[sy0:sy1, sx0:sx1, None]
    col = col * (1 - pl) + pl * np.array([1.12, 1.02, 1.02], np.float32)
    # light at the camera: Lambert on the height map's slopes, a glint on tops
    h = height
    gy, gx = np.gradient(h)
    cosi = 1 / np.sqrt(1 + gx * gx + gy * gy)
    cosi = cosi[sy0:sy1, sx0:sx1]
    spec = (cosi ** 60) * gloss[sy0:sy1, sx0:sx1] * 0.5
    spec *= smoothstep(0.3, 0.7, noise2(rng, sy1 - sy0, sx1 - sx0, 5))
    out = lum[:, :, None] * col * (0.35 + 0.65 * cosi)[:, :, None] + spec[:, :, None] * np.array([1.0, 0.98, 0.96])
    region[:] = region * (1 - a[:, :, None]) + np.clip(out, 0, 1) * a[:, :, None]
    ys, xs = np.nonzero(a >= 0.5)
    box = [int(xs.min() + x0 + sx0), int(ys.min() + y0 + sy0), int(xs.max() + x0 + sx0 + 1),
           int(ys.max() + y0 + sy0 + 1)]
    return box, kind


RADIUS = {1: (0.06, 0.15), 2: (0.035, 0.075), 3: (0.05, 0.13), 4: (0.035, 0.09)}


def place(img, rng, cls, S, taken, lo=None, hi=None):
    """Try to paste a lesion of class cls where the frame is lit (not in the black border or the far
    lumen) and away from the boxes in taken; returns (box, kind) or None."""
    lum = luma(img)
    H, W = lum.shape
    lo = lo if lo is not None else (0, 0)
    hi = hi if hi is not None else (W, H)
    for _ in range(12):
        r = rng.uniform(*RADIUS[cls]) * S
        cx, cy = rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1])
        ix, iy = int(min(max(cx, 0), W - 1)), int(min(max(cy, 0), H - 1))
        y0, y1 = max(0, iy - int(r)), min(H, iy + int(r) + 1)
        x0, x1 = max(0, ix - int(r)), min(W, ix + int(r) + 1)
        if lum[y0:y1, x0:x1].mean() < 0.2 or lum[y0:y1, x0:x1].min() < 0.03:
            continue
        if any(cx + 1.6 * r > b[0] - 4 and cx - 1.6 * r < b[2] + 4 and cy + 1.6 * r > b[1] - 4 and
               cy - 1.6 * r < b[3] + 4 for b in taken):
            continue
        trial = img.copy()
        st = rng.bit_generator.state
        got = paste(trial, rng, cls, cx, cy, r)
        if got is None:
            continue
        if any(got[0][0] < b[2] and b[0] < got[0][2] and got[0][1] < b[3] and b[1] < got[0][3] for b in taken):
            rng.bit_generator.state = st
            continue
        img[:] = trial
        return got
    return None


def finish(img, rng, sigma):
    arr = img * 255 + rng.normal(0, sigma, img.shape)
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


def frame(seed, index, size=320):
    """The frame (S, i): (uint8 H x W x 3, info)."""
    bg = lesionseg_synth.render(seed, index, size, polyps=False)[0]
    rng = np.random.default_rng([seed, index, 1])
    img = bg.astype(np.float32) / 255
    u = rng.random()
    want = 0 if u < 0.2 else 1 if u < 0.2 + 0.8 * 0.65 else 2
    lesions, taken = [], []
    for _ in range(want):
        cls = int(rng.integers(1, 5))
        got = place(img, rng, cls, size, taken)
        if got is None:
            continue
        taken.append(got[0])
        lesions.append({"label": LABELS[cls], "label_index": cls, "box": got[0], "kind": got[1]})
    return finish(img, rng, 0.6), {"seed": int(seed), "index": int(index), "lesions": lesions}


def write_one(args):
    out, seed, i, size = args
    img, info = frame(seed, i, size)
    name = f"{i:04d}.png"
    Image.fromarray(img).save(os.path.join(out, name))
    info["file"] = name
    return info


def contact_sheet(out, infos, size, path, cols=4):
    from PIL import ImageDraw
    tiles = []
    for info in infos:
        im = Image.open(os.path.join(out, info["file"])).convert("RGB")
        d = ImageDraw.Draw(im)
        for les in info["lesions"]:
            d.rectangle(les["box"], outline=(0, 255, 0))
            d.text((les["box"][0] + 2, les["box"][1] + 2), les["label"][:12], fill=(0, 255, 0))
        tiles.append(np.asarray(im))
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + cols], 1) for i in range(0, len(tiles), cols)]
    Image.fromarray(np.concatenate(rows, 0)).save(path)


# ---------------------------------------------------------------- video

def serpentine(S, frames, stops, hold):
    """Window top-left corners (x, y) in a 3S x 3S background, frame by frame: three rows of 2S
    (y = 0, S, 2S) joined by S steps down, at constant speed, standing still for hold frames at the
    path fractions in stops."""
    L = 8.0 * S
    moving = frames - hold * len(stops)
    if moving < 2:
        raise ValueError(f"--frames {frames}: too few for {len(stops)} holds of {hold} frames")
    path = []   # path fraction of each frame
    k, pos = 0, 0
    while len(path) < frames:
        s = pos / (moving - 1)
        if k < len(stops) and s >= stops[k]:
            path += [stops[k]] * min(hold, frames - len(path))
            k += 1
            continue
        path.append(min(s, 1.0))
        pos += 1

    def at(s):
        d = s * L
        segs = [((0, 0), (2 * S, 0)), ((2 * S, 0), (2 * S, S)), ((2 * S, S), (0, S)), ((0, S), (0, 2 * S)),
                ((0, 2 * S), (2 * S, 2 * S))]
        for (ax, ay), (bx, by) in segs:
            ln = abs(bx - ax) + abs(by - ay)
            if d <= ln:
                t = d / ln
                return ax + t * (bx - ax), ay + t * (by - ay)
            d -= ln
        return 2.0 * S, 2.0 * S
    return [tuple(int(round(v)) for v in at(s)) for s in path], at


def video(out, seed, index, size, frames, nles, hold):
    S = size
    B = 3 * S
    bg = lesionseg_synth.render(seed, index, B, polyps=False)[0]
    rng = np.random.default_rng([seed, index, 2])
    img = bg.astype(np.float32) / 255
    stops = [(k + 1) / (nles + 1) for k in range(nles)]
    wins, at = serpentine(S, frames, stops, hold)
    lesions, taken = [], []
    for k, st in enumerate(stops):
        cls = int(rng.integers(1, 5))
        wx, wy = at(st)
        c = (wx + S / 2, wy + S / 2)
        got = place(img, rng, cls, S, taken, lo=(c[0] - 0.2 * S, c[1] - 0.2 * S), hi=(c[0] + 0.2 * S, c[1] + 0.2 * S))
        if got is None:
            continue
        taken.append(got[0])
        lesions.append({"id": len(lesions), "label": LABELS[cls], "label_index": cls, "kind": got[1],
                        "box_background": got[0]})
    per_frame = []
    for f, (wx, wy) in enumerate(wins):
        rows = []
        for les in lesions:
            b = les["box_background"]
            cx1, cy1 = max(b[0], wx), max(b[1], wy)
            cx2, cy2 = min(b[2], wx + S), min(b[3], wy + S)
            if cx2 <= cx1 or cy2 <= cy1:
                continue
            vis = (cx2 - cx1) * (cy2 - cy1) / ((b[2] - b[0]) * (b[3] - b[1]))
            les.setdefault("_any", []).append(f)
            if vis >= 0.5:
                les.setdefault("_half", []).append(f)
                rows.append({"id": les["id"], "label": les["label"], "label_index": les["label_index"],
                             "box": [cx1 - wx, cy1 - wy, cx2 - wx, cy2 - wy], "visible": round(vis, 3)})
        per_frame.append({"frame": f, "window": [wx, wy], "lesions": rows})
        frng = np.random.default_rng([seed, index, 3, f])
        crop = img[wy:wy + S, wx:wx + S]
        Image.fromarray(finish(crop, frng, 1.0)).save(os.path.join(out, f"{f:04d}.png"))
    for les in lesions:
        a, h = les.pop("_any", []), les.pop("_half", [])
        les["frames_any"] = [a[0], a[-1]] if a else None
        les["frames"] = [h[0], h[-1]] if h else None
    truth = {"generator": GENERATOR, "version": VERSION, "seed": seed, "index": index, "size": S,
             "frames": frames, "fps": 25, "labels": LABELS, "lesions": lesions, "per_frame": per_frame}
    with open(os.path.join(out, "truth.json"), "w") as fp:
        json.dump(truth, fp, indent=1)
    return truth


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--count", type=int, default=None)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--sheet", help="also write a contact sheet (boxes drawn) of the first 16 frames")
    ap.add_argument("--video", action="store_true", help="write one frame sequence (see above)")
    ap.add_argument("--index", type=int, default=0, help="--video: which sequence of the seed")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--lesions", type=int, default=2)
    ap.add_argument("--hold", type=int, default=15)
    a = ap.parse_args(argv)
    if a.size < 64:
        ap.error("--size must be >= 64")
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    if a.video:
        if not 0 <= a.lesions <= 3 or a.frames < 1 or a.hold < 0:
            ap.error("--lesions must be 0-3, --frames >= 1, --hold >= 0")
        try:
            t = video(a.out, a.seed, a.index, a.size, a.frames, a.lesions, a.hold)
        except ValueError as e:
            ap.error(str(e))
        print(f"{a.frames} frames in {time.time() - t0:.1f} s; lesions: " +
              ", ".join(f"{les['label']} frames {les['frames']}" for les in t["lesions"]), file=sys.stderr)
        return
    if a.count is None or a.count < 0 or a.start < 0:
        ap.error("--count N (>= 0) is required without --video; --start must be >= 0")
    jobs = [(a.out, a.seed, i, a.size) for i in range(a.start, a.start + a.count)]
    if a.jobs > 1:
        import multiprocessing
        with multiprocessing.Pool(a.jobs) as pool:
            infos = pool.map(write_one, jobs, chunksize=4)
    else:
        infos = [write_one(j) for j in jobs]
    ipath = os.path.join(a.out, "index.json")
    old = {}
    if os.path.exists(ipath):
        with open(ipath) as f:
            prev = json.load(f)
        if prev.get("seed") == a.seed and prev.get("size") == a.size and prev.get("version") == VERSION:
            old = {im["index"]: im for im in prev["images"]}
    old.update({im["index"]: im for im in infos})
    index = {"generator": GENERATOR, "version": VERSION, "seed": a.seed, "size": a.size, "labels": LABELS,
             "images": [old[k] for k in sorted(old)]}
    with open(ipath, "w") as f:
        json.dump(index, f, indent=1)
    if a.sheet:
        contact_sheet(a.out, infos[:16], a.size, a.sheet)
    counts = [0] * len(LABELS)
    for im in infos:
        for les in im["lesions"]:
            counts[les["label_index"]] += 1
    print(f"{len(infos)} frames (seed {a.seed}) in {time.time() - t0:.1f} s; "
          f"{sum(not im['lesions'] for im in infos)} without lesion; per class " +
          ", ".join(f"{LABELS[k]} {counts[k]}" for k in range(1, len(LABELS))), file=sys.stderr)


if __name__ == "__main__":
    main()
