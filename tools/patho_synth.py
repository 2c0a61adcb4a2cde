#!/usr/bin/python3
"""tools/patho_synth.py - seeded synthetic H&E gastric biopsy slides with ground truth.

    tools/patho_synth.py --seed N --count K --out DIR [--start I] [--size PX] [--quality Q]

Slide i of seed N is drawn from numpy's default_rng([N, i]) alone, so a slide does not depend on
--count or on the other slides. Its class is i % 4 (so any 4 consecutive indices are balanced):
  0 negative, 1 low-grade intraepithelial neoplasia (LGIN), 2 high-grade intraepithelial
  neoplasia (HGIN), 3 invasive carcinoma
Per slide NAME = patho_sSEED_IIIII it writes
  NAME.tif        pyramidal tiled TIFF, level 0 PX x PX (default 6144) at 0.5 um/px
  NAME_mask.png   the lesion mask (1 bit, 255 = lesion) at 1.0 um/px (level 0 / 2), all 0 for
                  negative slides
  NAME.json       the sidecar: class, class_index, seed, index, mpp, size, mask, mask_mpp,
                  lesion_fraction (of the tissue), tissue_fraction (of the slide),
                  lesion_polygons (level-0 pixel [x, y] rings, traced on the mask at 4 um/px,
                  for GeoJSON comparisons; the mask is the truth), and the drawn stain
                  parameters.

The TIFF is written by libvips (`vips tiffsave --tile --pyramid --compression jpeg`, tiles
256 x 256, JPEG quality Q (default 80), Debian libvips-tools): every level is a full-resolution
tiled image in the main IFD chain (no SubIFDs), each half the size of the one before, down to
one tile, so OpenSlide opens it as "generic-tiff" with downsamples 1, 2, 4, 8, ... exactly (the
level-0 side is a multiple of 512, so level 2 - 2.0 um/px, the demo pipeline's target - has
exactly side/4 pixels and a whole grid of 128-px tiles). Resolution tags: XResolution =
YResolution = 20000 per centimetre (ResolutionUnit 3), i.e. 0.5 um/px. OpenSlide 3.4.1 reports
NO openslide.mpp-x / mpp-y for generic TIFF; it passes the tags on as properties
tiff.XResolution = "20000", tiff.YResolution = "20000", tiff.ResolutionUnit = "centimeter", from
which a reader computes mpp = 10000 / 20000 = 0.5 (checked with python3-openslide 1.2.0 on
libopenslide 3.4.1).

How a slide is drawn. The picture is composed at 1.0 um/px as two stain concentration maps
(hematoxylin H, eosin E), turned into colour by Beer-Lambert with the slide's own stain vectors,
blurred (optics), given sensor noise, and enlarged 2x (bicubic) to level 0; libvips makes the
lower levels by 2x2 averaging.
  tissue      1-3 biopsy fragments (noisy ellipses) covering 38-60 % of the glass; the rest is
              white glass (light of 236-250 per channel, slightly tinted per slide)
  stroma      lamina propria: pale pink, fibrous texture, fibroblasts (elongated pale nuclei),
              lymphocytes (small round dark nuclei) at a per-slide density, and in half of all
              slides (any class) 1-2 lymphoid aggregates: dense sheets of small dark nuclei, a
              deliberate look-alike of crowded lesions so that "dark and nucleus-rich" alone does
              not decide
  normal      oval glands 40-70 um across on a jittered grid, pale mucinous cytoplasm, a lumen,
  glands      one row of small oval nuclei at the base, long axis perpendicular to the basement
              membrane (polarity)
  lesion      1-2 blobs inside the tissue, 18-40 % of its area (absent in negative slides):
   LGIN       crowded but regular tubular glands (about 2.2 x as long as wide), all nearly
              parallel on a regular lattice with thin stroma between them, smooth outlines, an
              open lumen, amphophilic cytoplasm; pencil-shaped elongated nuclei in a dense
              palisade at the base (slightly pseudostratified), perpendicular to the membrane,
              with a band of apical cytoplasm between them and the lumen
   HGIN       back-to-back irregular gland complexes (a gland with 1-3 branches budding off it,
              ragged outlines), cribriform (3-6 punched-out round lumina) or with slit lumina;
              large round pleomorphic dark nuclei scattered through the whole epithelium up to
              the lumina at random orientation (loss of polarity)
   carcinoma  no regular glands: desmoplastic (pinker, streaky) stroma infiltrated by irregular
              cords and nests of 2-16 cells and single cells with very large, irregular, very
              dark nuclei, densely packed
Per-slide stain variation (independent of the class): each stain vector moved from Ruifrok &
Johnston's (H 0.65/0.70/0.29, E 0.07/0.99/0.11) by N(0, 0.07) per component, each stain's amount
scaled by U(0.65, 1.35), section thickness varying +-10 % over the slide, glass tint, blur sigma
0.5-1.1 um. Lesions differ from normal tissue by nuclear size, shape, orientation, density and
gland architecture, all local: a lesion is 18-40 % of the tissue, and the per-slide stain amounts
vary more than the lesion changes the slide's mean colour.

Versions (the sidecar's "generator"): v1 drew LGIN and HGIN too alike at the demo pipeline's
2 um/px (same gland sizes and lumina, nuclei differing mainly below 2 um); v2 redraws only those
two lesions (the functions lgin_glands, draw_lgin_gland, hgin_glands, draw_hgin_gland). The
random stream up to the lesion glands is v1's, so negative and invasive-carcinoma slides are
the same pixels, masks and sidecars (but for "generator") as v1's for the same seed and index.

Speed: about 6-10 s per 6144 px slide on one core; a 6144 px slide is about 4-7 MB.
The demo slides in examples/patho/ and the training set of tools/train_patho.py come from here
(see their docs for seeds). Needs numpy, PIL, skimage and the `vips` program; python3-openslide
only for --check.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

LABELS = ["negative", "low-grade intraepithelial neoplasia", "high-grade intraepithelial neoplasia",
          "invasive carcinoma"]
MPP0 = 0.5                      # level 0
RENDER_MPP = 1.0                # the picture is composed at this scale (= level 1)
H_REF = np.array([0.65, 0.70, 0.29])
E_REF = np.array([0.07, 0.99, 0.11])
VERSION = "2"

Image.MAX_IMAGE_PIXELS = None


def smooth_noise(rng, h, w, cy, cx):
    """unit-variance noise with about cy x cx independent cells over an h x w field"""
    g = rng.standard_normal((cy, cx)).astype(np.float32)
    a = np.asarray(Image.fromarray(g, "F").resize((w, h), Image.BICUBIC))
    return (a - a.mean()) / (a.std() + 1e-6)


def ellipse_poly(cx, cy, a, b, ang, n=14, wiggle=0.0, rng=None):
    """(N,) parameters -> (N, n, 2) vertices of rotated ellipses, optionally with a ragged edge"""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)[None, :]
    r = np.ones((len(cx), n))
    if wiggle:
        r = r + wiggle * rng.uniform(-1, 1, (len(cx), n))
    x = a[:, None] * np.cos(t) * r
    y = b[:, None] * np.sin(t) * r
    c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
    return np.stack([cx[:, None] + c * x - s * y, cy[:, None] + s * x + c * y], -1)


def draw_polys(draw, polys, values):
    for p, v in zip(polys, values):
        draw.polygon([tuple(q) for q in p], fill=int(v))


class Canvas:
    """The stain maps at RENDER_MPP: struct labels, nuclear hematoxylin (x100), masks."""
    STROMA, EPI, LUMEN, DYSEPI, CARCYTO = 0, 1, 2, 3, 4

    def __init__(self, n):
        self.n = n
        self.struct = Image.new("L", (n, n), 0)
        self.nuc = Image.new("L", (n, n), 0)
        self.ds = ImageDraw.Draw(self.struct)
        self.dn = ImageDraw.Draw(self.nuc)

    def nuclei(self, rng, cx, cy, a, b, ang, h, wiggle=0.12, tissue=None):
        if len(cx) == 0:
            return
        cx, cy = np.asarray(cx, float), np.asarray(cy, float)
        keep = (cx >= 0) & (cy >= 0) & (cx < self.n) & (cy < self.n)
        if tissue is not None:
            ix, iy = cx.clip(0, self.n - 1).astype(int), cy.clip(0, self.n - 1).astype(int)
            keep &= tissue[iy, ix]
        idx = np.nonzero(keep)[0]
        if len(idx) == 0:
            return
        pick = lambda v: np.broadcast_to(np.asarray(v, float), cx.shape)[idx]  # noqa: E731
        polys = ellipse_poly(cx[idx], cy[idx], pick(a), pick(b), pick(ang), n=10, wiggle=wiggle, rng=rng)
        draw_polys(self.dn, polys, np.clip(pick(h) * 100, 1, 255))


def gland_nuclei(rng, g):
    """nuclei of one normal gland g = (cx, cy, a, b, ang): one basal row, perpendicular to the membrane"""
    cx, cy, a, b, ang = g
    per = 2 * np.pi * np.sqrt((a * a + b * b) / 2)
    n = int(per / rng.uniform(6.0, 7.5))
    rho = rng.normal(0.86, 0.03, n)
    sa, sb, h = rng.normal(3.3, 0.3, n), rng.normal(2.3, 0.2, n), rng.normal(0.85, 0.08, n)
    t = rng.uniform(0, 2 * np.pi) + np.arange(n) * 2 * np.pi / max(n, 1) + rng.normal(0, 0.05, n)
    lx, ly = a * rho * np.cos(t), b * rho * np.sin(t)
    c, s = np.cos(ang), np.sin(ang)
    x, y = cx + c * lx - s * ly, cy + s * lx + c * ly
    radial = np.arctan2(y - cy, x - cx)
    o = radial + rng.normal(0, 0.15, n)
    return x, y, sa, sb, o, h


def lgin_glands(rng, n, where):
    """LGIN: crowded but regular tubular glands, all about parallel, on a regular lattice with thin
    stroma between them -> [(cx, cy, a, b, ang)] (a along the tube)"""
    ang0 = rng.uniform(0, np.pi)
    b0 = rng.uniform(17, 21)
    a0 = b0 * rng.uniform(2.0, 2.5)
    gap = rng.uniform(6, 10)
    su, sv = 2 * a0 + gap, 2 * b0 + gap
    r = 0.75 * n
    u, v = np.meshgrid(np.arange(-r, r, su), np.arange(-r, r, sv))
    u = u + (np.round(v / sv).astype(int) % 2) * su / 2          # brick pattern
    u, v = u.ravel(), v.ravel()
    c, s = np.cos(ang0), np.sin(ang0)
    x, y = n / 2 + c * u - s * v, n / 2 + s * u + c * v
    out = []
    for px, py in zip(x, y):
        jx, jy = rng.uniform(-0.06, 0.06, 2) * (su, sv)
        px, py = px + c * jx - s * jy, py + s * jx + c * jy
        ix, iy = int(px), int(py)
        if 0 <= ix < n and 0 <= iy < n and where[iy, ix]:
            out.append((px, py, a0 * rng.uniform(0.92, 1.08), b0 * rng.uniform(0.92, 1.08),
                        ang0 + rng.normal(0, 0.06)))
    return out


def draw_lgin_gland(cv, rng, g):
    """a smooth tube of amphophilic epithelium, an open lumen, and a palisade of pencil-shaped
    nuclei at the base, perpendicular to the basement membrane -> its nuclei"""
    cx, cy, a, b, ang = g
    one = np.array([cx]), np.array([cy]), np.array([a]), np.array([b]), np.array([ang])
    cv.ds.polygon([tuple(q) for q in ellipse_poly(*one, n=32, wiggle=0.03, rng=rng)[0]], fill=Canvas.DYSEPI)
    sa_m = rng.uniform(4.0, 4.6)
    d = 2 * sa_m + 4                                   # nuclei, then a band of apical cytoplasm
    lum = ellipse_poly(*one[:2], np.array([a - d]), np.array([b - d]), one[4], n=24, wiggle=0.04, rng=rng)[0]
    cv.ds.polygon([tuple(q) for q in lum], fill=Canvas.LUMEN)
    per = 2 * np.pi * np.sqrt((a * a + b * b) / 2)
    k = int(per / rng.uniform(2.8, 3.3))
    t = np.arange(k) * 2 * np.pi / k + rng.normal(0, 0.02, k)
    nx, ny = b * np.cos(t), a * np.sin(t)              # outward normal in the gland's frame
    nn_ = np.hypot(nx, ny)
    nx, ny = nx / nn_, ny / nn_
    sa = rng.normal(sa_m, 0.35, k)
    depth = sa + 1.2 + np.abs(rng.normal(0, 0.8, k))   # basal, a little pseudostratified
    lx, ly = a * np.cos(t) - nx * depth, b * np.sin(t) - ny * depth
    c, s = np.cos(ang), np.sin(ang)
    x, y = cx + c * lx - s * ly, cy + s * lx + c * ly
    o = ang + np.arctan2(ny, nx) + rng.normal(0, 0.08, k)
    return x, y, sa, rng.normal(1.5, 0.12, k), o, rng.normal(1.2, 0.08, k), 0.08


def hgin_glands(rng, n, where):
    """HGIN: back-to-back irregular gland complexes, each a main gland with 1-3 branches budding
    off it -> [[(cx, cy, a, b, ang), ...]] (the main ellipse first)"""
    out = []
    for p in jittered_grid(rng, n, rng.uniform(46, 54), 0.3):
        ix, iy = int(np.clip(p[0], 0, n - 1)), int(np.clip(p[1], 0, n - 1))
        if not where[iy, ix]:
            continue
        a = rng.uniform(19, 27)
        parts = [(p[0], p[1], a, a * rng.uniform(0.6, 0.95), rng.uniform(0, np.pi))]
        for _ in range(rng.integers(1, 4)):
            phi = rng.uniform(0, 2 * np.pi)
            ba = a * rng.uniform(0.45, 0.7)
            dist = a * rng.uniform(0.8, 1.05)
            parts.append((p[0] + dist * np.cos(phi), p[1] + dist * np.sin(phi), ba, ba * rng.uniform(0.45, 0.7),
                          phi + rng.normal(0, 0.3)))
        out.append(parts)
    return out


def draw_hgin_gland(cv, rng, parts):
    """ragged epithelium of a branching complex; cribriform (several punched-out lumina) or slit
    lumina; large, round, dark, pleomorphic nuclei through the whole epithelium up to the lumen,
    at any orientation (loss of polarity) -> its nuclei"""
    P = np.array(parts)
    polys = ellipse_poly(P[:, 0], P[:, 1], P[:, 2], P[:, 3], P[:, 4], n=20, wiggle=0.16, rng=rng)
    draw_polys(cv.ds, polys, np.full(len(P), Canvas.DYSEPI))
    cx, cy, a, b, ang = parts[0]
    holes = np.zeros((0, 3))
    if rng.random() < 0.6:                              # cribriform
        m = rng.integers(3, 7)
        rr, tt = np.sqrt(rng.uniform(0, 0.5, m)), rng.uniform(0, 2 * np.pi, m)
        lr = rng.uniform(3.5, 6.5, m)
        hx, hy = cx + a * rr * np.cos(tt), cy + b * rr * np.sin(tt)
        lp = ellipse_poly(hx, hy, lr, lr * rng.uniform(0.75, 1, m), rng.uniform(0, np.pi, m), n=10, wiggle=0.15,
                          rng=rng)
        holes = np.stack([hx, hy, lr], 1)
    else:                                               # slit lumina, one per part
        lp = ellipse_poly(P[:, 0], P[:, 1], P[:, 2] * rng.uniform(0.3, 0.5, len(P)),
                          P[:, 3] * rng.uniform(0.12, 0.22, len(P)), P[:, 4], n=12, wiggle=0.3, rng=rng)
    draw_polys(cv.ds, lp, np.full(len(lp), Canvas.LUMEN))
    xs, ys = [], []
    for px, py, pa, pb, pang in parts:
        k = int(0.4 * pa * pb / rng.uniform(16, 20))
        rho, t = np.sqrt(rng.uniform(0.0, 0.85, k)), rng.uniform(0, 2 * np.pi, k)
        lx, ly = pa * rho * np.cos(t), pb * rho * np.sin(t)
        c, s = np.cos(pang), np.sin(pang)
        xs.append(px + c * lx - s * ly)
        ys.append(py + s * lx + c * ly)
    x, y = np.concatenate(xs), np.concatenate(ys)
    for hx, hy, lr in holes:                            # nuclei reach the lumina, do not fill them
        ok = np.hypot(x - hx, y - hy) > lr + 3.0
        x, y = x[ok], y[ok]
    x, y = np.concatenate(xs), np.concatenate(ys)
    k = len(x)
    sa = rng.uniform(4.2, 6.0, k)
    return x, y, sa, sa / rng.uniform(1.0, 1.3, k), rng.uniform(0, np.pi, k), rng.normal(1.35, 0.15, k), 0.25


def jittered_grid(rng, n, spacing, jitter=0.3):
    ys = np.arange(spacing / 2, n, spacing * 0.866)
    pts = []
    for k, y in enumerate(ys):
        xs = np.arange((k % 2) * spacing / 2 + spacing / 4, n, spacing)
        pts.append(np.stack([xs, np.full_like(xs, y)], 1))
    p = np.concatenate(pts)
    return p + rng.uniform(-jitter, jitter, p.shape) * spacing


def make_slide(seed, index, size=6144):
    """-> dict(rgb level-1 uint8 (n, n, 3), mask bool (n, n), info dict); n = size / 2"""
    rng = np.random.default_rng([seed, index])
    cls = index % 4
    n = size // 2
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)

    # tissue: 1-3 fragments, noisy edges, kept off the slide border
    f = np.full((n, n), np.inf, np.float32)
    for _ in range(rng.integers(1, 4)):
        cx, cy = rng.uniform(0.3, 0.7, 2) * n
        A, B = rng.uniform(0.26, 0.44) * n, rng.uniform(0.15, 0.26) * n
        th = rng.uniform(0, np.pi)
        u = ((xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)) / A
        v = (-(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)) / B
        f = np.minimum(f, np.sqrt(u * u + v * v))
    f += 0.22 * smooth_noise(rng, n, n, 10, 10)
    edge = np.minimum(np.minimum(xx, yy), np.minimum(n - 1 - xx, n - 1 - yy)) / n
    f[edge < 0.03] = np.inf
    thr = 1.0
    frac = np.count_nonzero(f < thr) / f.size
    if frac < 0.38 or frac > 0.60:
        thr = float(np.quantile(f[np.isfinite(f)], min(0.99, np.clip(frac, 0.38, 0.60) * f.size /
                                                        np.count_nonzero(np.isfinite(f)))))
    tissue = f < thr
    deep = f < 0.8 * thr                   # glands and lesions keep off the fragment edges

    # lesion: 1-2 blobs holding 18-40 % of the tissue
    lesion = np.zeros((n, n), bool)
    lesion_q = 0.0
    if cls:
        cand = np.flatnonzero(f.ravel() < 0.6 * thr)
        g = np.full((n, n), np.inf, np.float32)
        for _ in range(rng.integers(1, 3)):
            c = cand[rng.integers(len(cand))]
            cy0, cx0 = divmod(int(c), n)
            g = np.minimum(g, np.hypot(xx - cx0, yy - cy0) / n)
        g += 0.06 * smooth_noise(rng, n, n, 14, 14)
        lesion_q = rng.uniform(0.18, 0.40)
        lesion = tissue & (g <= np.quantile(g[tissue], lesion_q))
    del xx, yy

    cv = Canvas(n)
    tissue_img = Image.fromarray(tissue.astype(np.uint8) * 255)
    fibre_axis = rng.integers(2)

    # lymphoid aggregates (any class): the look-alike of a crowded lesion
    aggs = []
    if rng.random() < 0.5:
        for _ in range(rng.integers(1, 3)):
            cand = np.flatnonzero(deep.ravel() & ~lesion.ravel())
            if len(cand) == 0:
                break
            cy0, cx0 = divmod(int(cand[rng.integers(len(cand))]), n)
            aggs.append((cx0, cy0, rng.uniform(70, 160)))

    # glands: a normal grid outside the lesion; a denser, lesion-typed grid inside it
    kind = {1: "lgin", 2: "hgin"}.get(cls)
    spacing = rng.uniform(68, 80)
    glands = []
    for p in jittered_grid(rng, n, spacing):
        ix, iy = int(np.clip(p[0], 0, n - 1)), int(np.clip(p[1], 0, n - 1))
        if deep[iy, ix] and not lesion[iy, ix] and \
                all(np.hypot(p[0] - ax, p[1] - ay) > r + 25 for ax, ay, r in aggs):
            a = rng.uniform(20, 33)
            glands.append(("normal", p[0], p[1], a, a * rng.uniform(0.6, 0.95), rng.uniform(0, np.pi)))
    nuc_all = []
    for kd, cx, cy, a, b, ang in glands:
        one = np.array([cx]), np.array([cy]), np.array([a]), np.array([b]), np.array([ang])
        outer = ellipse_poly(*one, n=24, wiggle=0.05, rng=rng)[0]
        cv.ds.polygon([tuple(q) for q in outer], fill=Canvas.EPI)
        li = rng.uniform(0.35, 0.5)
        rng.uniform(0.3, 0.45), rng.uniform(0.15, 0.3)   # unused: v1 drew them, v2 keeps its stream
        inner = ellipse_poly(np.array([cx]), np.array([cy]), np.array([a * li]), np.array([b * li]),
                             np.array([ang]), n=16, wiggle=0.1, rng=rng)[0]
        cv.ds.polygon([tuple(q) for q in inner], fill=Canvas.LUMEN)
        nuc_all.append(gland_nuclei(rng, (cx, cy, a, b, ang)))
    where = lesion & tissue
    if kind == "lgin":
        for g in lgin_glands(rng, n, where):
            nuc_all.append(draw_lgin_gland(cv, rng, g))
    elif kind == "hgin":
        for parts in hgin_glands(rng, n, where):
            nuc_all.append(draw_hgin_gland(cv, rng, parts))

    # carcinoma: cords, nests and single cells infiltrating the lesion's stroma
    if cls == 3:
        cand = np.flatnonzero(lesion.ravel())
        area = len(cand)
        n_groups = int(area / rng.uniform(900, 1300))
        xs, ys = [], []
        for _ in range(n_groups):
            cy0, cx0 = divmod(int(cand[rng.integers(len(cand))]), n)
            k = rng.integers(1, 17)
            steps = rng.normal(0, 1, (k, 2))
            d = rng.uniform(0, np.pi)
            steps += 1.3 * np.array([np.cos(d), np.sin(d)])         # cords have a direction
            steps = steps / np.linalg.norm(steps, axis=1, keepdims=True) * rng.uniform(7, 10, (k, 1))
            pts = np.array([cx0, cy0]) + np.cumsum(steps, 0)
            xs.append(pts[:, 0])
            ys.append(pts[:, 1])
        x, y = np.concatenate(xs), np.concatenate(ys)
        ix, iy = x.clip(0, n - 1).astype(int), y.clip(0, n - 1).astype(int)
        ok = lesion[iy, ix]
        x, y = x[ok], y[ok]
        r = rng.uniform(5.5, 8.0, len(x))
        cyto = ellipse_poly(x, y, r, r * rng.uniform(0.7, 1.0, len(x)), rng.uniform(0, np.pi, len(x)),
                            n=10, wiggle=0.2, rng=rng)
        draw_polys(cv.ds, cyto, np.full(len(x), Canvas.CARCYTO))
        sa = rng.uniform(4.0, 6.5, len(x))
        nuc_all.append((x + rng.normal(0, 1, len(x)), y + rng.normal(0, 1, len(x)), sa,
                        sa / rng.uniform(1.0, 1.6, len(x)), rng.uniform(0, np.pi, len(x)),
                        rng.normal(1.6, 0.2, len(x))))

    # stroma nuclei: fibroblasts and lymphocytes (drawn first: epithelial nuclei go on top)
    struct = np.asarray(cv.struct)
    tarea = np.count_nonzero(tissue)
    lym_density = 1.0 / rng.uniform(250, 800)
    m = int(tarea * lym_density)
    x, y = rng.uniform(0, n, m), rng.uniform(0, n, m)
    ix, iy = x.astype(int), y.astype(int)
    ok = (struct[iy, ix] == Canvas.STROMA) | (struct[iy, ix] == Canvas.CARCYTO)
    r = rng.normal(2.6, 0.3, m)
    cv.nuclei(rng, x[ok], y[ok], r[ok], r[ok] * 0.9, rng.uniform(0, np.pi, m)[ok],
              rng.normal(1.3, 0.12, m)[ok], tissue=tissue)
    m = int(tarea / rng.uniform(700, 1100))
    x, y = rng.uniform(0, n, m), rng.uniform(0, n, m)
    ix, iy = x.astype(int), y.astype(int)
    ok = struct[iy, ix] == Canvas.STROMA
    base = 0.0 if fibre_axis == 0 else np.pi / 2
    cv.nuclei(rng, x[ok], y[ok], rng.normal(5.0, 0.6, m)[ok], rng.normal(1.4, 0.15, m)[ok],
              base + rng.normal(0, 0.35, m)[ok], rng.normal(0.8, 0.1, m)[ok], tissue=tissue)
    for ax, ay, rad in aggs:                                     # dense lymphoid sheets
        m = int(np.pi * rad * rad / rng.uniform(30, 45))
        t, rr = rng.uniform(0, 2 * np.pi, m), rad * np.sqrt(rng.uniform(0, 1, m))
        rr *= 1 + 0.15 * np.sin(3 * t + rng.uniform(0, 6))
        r = rng.normal(2.6, 0.3, m)
        cv.nuclei(rng, ax + rr * np.cos(t), ay + rr * np.sin(t), r, r * 0.9, rng.uniform(0, np.pi, m),
                  rng.normal(1.35, 0.12, m), tissue=tissue)
    for x, y, sa, sb, o, h, *wig in nuc_all:
        wig = wig[0] if wig else 0.12 if len(sa) and sa.mean() < 4 else 0.25
        cv.nuclei(rng, x, y, sa, sb, o, h, wiggle=wig, tissue=tissue)

    # concentrations
    struct = np.asarray(cv.struct)
    nuc = np.asarray(cv.nuc).astype(np.float32) / 100
    fib = smooth_noise(rng, n, n, *((n // 6, n // 40) if fibre_axis else (n // 40, n // 6)))
    fine = smooth_noise(rng, n, n, n // 2, n // 2)
    H = np.full((n, n), 0.07, np.float32)
    E = 0.55 * (1 + 0.25 * fib)
    if cls == 3:                                              # desmoplasia: pinker, streakier
        E = np.where(lesion, 0.65 * (1 + 0.35 * fib), E)
    for lab, h, e in ((Canvas.EPI, 0.10, 0.22), (Canvas.LUMEN, 0.05, 0.12),
                      (Canvas.DYSEPI, 0.17, 0.36), (Canvas.CARCYTO, 0.20, 0.40)):
        sel = struct == lab
        H[sel], E[sel] = h, e
    E = E * (1 + 0.08 * fine)
    isn = nuc > 0
    H = np.where(isn, nuc * (1 + 0.18 * fine), H)
    E = np.where(isn, 0.12, E)
    thick = 1 + 0.10 * smooth_noise(rng, n, n, 6, 6)
    H = np.where(tissue, H * thick, 0).astype(np.float32)
    E = np.where(tissue, E * thick, 0).astype(np.float32)
    del nuc, fib, fine, thick

    hv = np.abs(H_REF + rng.normal(0, 0.07, 3))
    ev = np.abs(E_REF + rng.normal(0, 0.07, 3))
    hv, ev = hv / np.linalg.norm(hv), ev / np.linalg.norm(ev)
    sh, se = rng.uniform(0.65, 1.35), rng.uniform(0.65, 1.35)
    glass = rng.uniform(236, 250) + rng.normal(0, 2.5, 3)
    blur = rng.uniform(0.5, 1.1)
    rgb = np.empty((n, n, 3), np.uint8)
    for ch in range(3):
        od = (sh * hv[ch]) * H + (se * ev[ch]) * E
        rgb[..., ch] = np.clip(glass[ch] * np.exp(-od), 0, 255).astype(np.uint8)
    del H, E
    img = Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(blur))
    rgb = np.asarray(img).astype(np.float32)
    rgb += rng.standard_normal(rgb.shape, dtype=np.float32) * 2.0
    rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)

    info = {"class": LABELS[cls], "class_index": cls, "seed": seed, "index": index,
            "tissue_fraction": round(float(tarea) / (n * n), 4),
            "lesion_fraction": round(float(np.count_nonzero(lesion)) / max(tarea, 1), 4),
            "lymphoid_aggregates": len(aggs),
            "stain": {"hematoxylin": [round(float(v), 4) for v in hv],
                      "eosin": [round(float(v), 4) for v in ev],
                      "amount_h": round(float(sh), 4), "amount_e": round(float(se), 4),
                      "glass": [round(float(v), 2) for v in glass], "blur_um": round(float(blur), 3)}}
    return {"rgb": rgb, "mask": lesion, "info": info}


def lesion_polygons(mask, level0_per_px):
    """rings in level-0 pixels, traced at 4 um/px on the mask (level0_per_px: level-0 px per mask px)"""
    from skimage import measure
    k = 4
    n = mask.shape[0] // k
    small = mask[:n * k, :n * k].reshape(n, k, n, k).mean((1, 3)) >= 0.5
    rings = []
    for c in measure.find_contours(np.pad(small, 1).astype(np.float32), 0.5):
        c = measure.approximate_polygon(c, 0.75)
        if len(c) < 4:
            continue
        s = k * level0_per_px
        rings.append([[round(float((p[1] - 1 + 0.5) * s), 1), round(float((p[0] - 1 + 0.5) * s), 1)] for p in c])
    return rings


def write_slide(path_tif, rgb_level1, quality=80):
    """level 1 (1 um/px) -> level 0 by 2x bicubic -> vips pyramidal tiled JPEG TIFF at 0.5 um/px"""
    up = Image.fromarray(rgb_level1).resize((rgb_level1.shape[1] * 2, rgb_level1.shape[0] * 2), Image.BICUBIC)
    with tempfile.TemporaryDirectory(prefix="patho_synth_") as tmp:
        ppm = os.path.join(tmp, "level0.ppm")
        up.save(ppm)
        del up
        px_per_mm = str(1000.0 / MPP0)
        subprocess.run(["vips", "tiffsave", ppm, path_tif, "--tile", "--tile-width", "256",
                        "--tile-height", "256", "--pyramid", "--compression", "jpeg", "--Q", str(quality),
                        "--xres", px_per_mm, "--yres", px_per_mm, "--resunit", "cm"], check=True)


def check(path_tif, size):
    """OpenSlide sees a generic TIFF with the levels and the resolution we meant"""
    import openslide
    assert openslide.OpenSlide.detect_format(path_tif) == "generic-tiff", path_tif
    s = openslide.OpenSlide(path_tif)
    assert s.dimensions == (size, size), s.dimensions
    assert s.level_count >= 3 and abs(s.level_downsamples[2] - 4.0) < 1e-9, s.level_downsamples
    p = s.properties
    assert p.get("tiff.ResolutionUnit") == "centimeter" and float(p["tiff.XResolution"]) == 20000.0, dict(p)
    return {"levels": s.level_count, "mpp_x_openslide": p.get("openslide.mpp-x"),
            "mpp_from_tiff_tags": 10000.0 / float(p["tiff.XResolution"])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--start", type=int, default=0, help="first slide index (default 0)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=6144, help="level-0 side in pixels, a multiple of 512")
    ap.add_argument("--quality", type=int, default=80, help="JPEG quality of the tiles")
    ap.add_argument("--check", action="store_true", help="open each slide with OpenSlide afterwards")
    a = ap.parse_args(argv)
    if a.size % 512 or a.size < 1024:
        ap.error("--size must be a multiple of 512, at least 1024")
    os.makedirs(a.out, exist_ok=True)
    for i in range(a.start, a.start + a.count):
        name = f"patho_s{a.seed}_{i:05d}"
        s = make_slide(a.seed, i, a.size)
        tif = os.path.join(a.out, name + ".tif")
        write_slide(tif, s["rgb"], a.quality)
        Image.fromarray(s["mask"]).save(os.path.join(a.out, name + "_mask.png"), optimize=True)
        info = {"slide": name + ".tif", **s["info"], "mpp": MPP0, "size": [a.size, a.size],
                "mask": name + "_mask.png", "mask_mpp": RENDER_MPP,
                "labels": LABELS, "generator": f"tools/patho_synth.py v{VERSION}",
                "lesion_polygons": lesion_polygons(s["mask"], RENDER_MPP / MPP0)}
        with open(os.path.join(a.out, name + ".json"), "w") as fh:
            json.dump(info, fh, indent=1)
        msg = f"{name}: {info['class']}, lesion {info['lesion_fraction']:.2f} of tissue"
        if a.check:
            msg += f", {check(tif, a.size)}"
        print(msg, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
