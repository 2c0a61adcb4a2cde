#!/usr/bin/python3
"""tools/lesionseg_synth.py - seeded synthetic colonoscopy frames with ground-truth depth and polyp masks,
the training data of the demo networks of tools/lesionseg_ref.py (tools/train_lesionseg.py).

    tools/lesionseg_synth.py OUTDIR --seed S --count N [--start I] [--size 256] [--jobs J] [--sheet PNG]

Image i of seed S is drawn from numpy's default_rng([S, i]) alone, so it does not depend on --count,
--start, --jobs or the other images. Per image (NNNN = i, zero-padded to 4 digits) it writes
  NNNN.png        the frame, 8-bit RGB, size x size
  NNNN_depth.png  z-depth (distance along the optical axis, not along the ray) in SimCol3D's
                  convention: 16-bit grey, value = round(min(depth_cm, 20) / 20 * 65280), so
                  value / 255 / 256 is the depth normalised to 0..1 that the depth network outputs
                  (../shared/data/simcol3d-depth/PROVENANCE.md); 65280 = 20 cm or beyond (far lumen)
  NNNN_mask.png   8-bit grey, 255 where the pixel's ray meets a polyp before the wall, else 0
and OUTDIR/index.json: {"generator", "version", "seed", "size", "images": [per image: file, seed,
index, polyp_count, lesion_fraction, render params]} (merged with an index.json already there, so
several --start ranges can fill one folder).

Seeds (a convention of tools/train_lesionseg.py, kept here so that nobody breaks it): seed 1 is
the training set, seed 2 the validation set (used to pick checkpoints and thresholds), seed 5000
the held-out test set: it is never used in training or for choosing anything, only to report.

The scene, in centimetres (world z runs along the colon, the camera sits near z = 0):
  tube        centre line (bx(z), by(z)): two sinusoids per axis, amplitudes 0-2.5 cm, wavelengths
              18-60 cm (gentle bends). The wall is at radial distance W(z, theta) from the centre
              line, measured in the z = const plane (exact for a straight tube, a slightly
              elliptic section where it bends):
                W = R(z) (1 + e2 cos 2(theta - a) + e3 cos 3(theta - b)) - folds(z, theta)
              R(z) = R0 (1 + 0.15 sin(...)) with R0 in 1.2-3.0 cm; e3 gives the triangular
              section of the transverse colon. Haustral folds: ring ridges every 1.6-4 cm
              (random), Gaussian profile in z (width 0.3-0.55 cm), height 0.08-0.3 R0, modulated
              around the ring by (1 - m/2 + m/2 cos 3(theta - phi)) so some folds are partial.
              W and the centre line are tabulated on a 0.01 cm grid in z (linear interpolation).
  camera      pinhole, field of view 100-120 deg (square image), at z = 0 off the centre line by
              up to 0.55 R0 (kept >= 0.3 cm inside the wall), its axis turned from the centre-line
              tangent by |N(0, 30 deg)| (20 % of frames 45-85 deg: looking at the wall, the lumen
              out of view), random roll.
  marching    g(p) = rho(p) - W(z, theta) < 0 inside the lumen. Every ray marches with steps of
              0.33 * (-g) (a sphere-tracing bound for |grad g| <= 3, which the folds keep to
              but for rare steep ones), at least max(0.02 cm, 0.003 t); the first step with g >= 0
              is refined by 7 bisections, all rays at once. Rays still inside at z-depth 20.5 cm
              are far lumen: depth 20 cm (the clip), shaded as a surface at 25 cm.
  polyps      0-3 per frame (P = 0.15, 0.50, 0.25, 0.10, fewer when a placement fails). Each is
              anchored at the wall point seen at a random pixel whose wall z-depth is 1.5-10 cm
              (no farther than the distance at which it still spans >= 5 px radius; 25 % of
              anchors within 24 px of the image edge). Radius r 0.3-1.5 cm (at most 0.55 R0).
              Sessile (80 %): an ellipsoid (semi-axes r along the wall, 0.55-1.1 r along the
              normal) whose centre is sunk 0-0.6 r into the wall, plus 0-3 smaller lobes
              (0.35-0.6 r) around it; pedunculated (20 %): a head of radius r on a stalk (3
              overlapping ellipsoids 0.3 r thick) standing 1-1.8 r off the wall. Every part stays
              >= 1 cm from the camera. Ray-ellipsoid intersections are
              analytic; mask = pixels whose first hit is a polyp. A polyp that ends up with fewer
              than 40 visible pixels (hidden behind a fold) is dropped before shading. Anchors
              lie no farther along the ray than 4.5 x the near wall (3rd percentile of the wall
              distances): with the 1/d^2 light and the auto-exposure, farther ones would be too
              dark for anyone to outline.
  shading     point light at the camera: linear = albedo * cos(incidence) / d^2 with d the ray
              length, normals tilted by the gradient of a solid noise (bump mapping: fine relief
              of the wall, granular polyp surfaces; the geometry, depth and mask stay smooth),
              times a screen-space ambient occlusion from the depth map (darkens what lies behind
              fold edges); auto-exposure: the 97th percentile of the luminance maps to 0.9-1.7;
              plus Blinn-Phong specular highlights (light = view direction, shininess 40-150)
              masked by a "wetness" noise, and small glints.
              Tone curve 1 - exp(-x), gamma 1/1.4, vignetting, colour/brightness/saturation
              jitter per frame, Gaussian blur 0.4-1.1 px, sensor noise 1-4 / 255, and in 30 % of
              frames the black octagonal border of Kvasir-SEG's frames (mask 0 there; depth keeps
              the geometry).
  texture     solid (3-D) value noise evaluated at the hit point, so textures stick to surfaces:
              mucosa pink-red to orange (base albedo per frame), low-frequency blotches, vessels
              (ridged noise: thin dark red/purple lines) and a fine granular texture. Polyps:
              the mucosa colour pushed redder or paler by 8-30 % (so colour alone does not
              separate them: the spread of mucosa colours between frames is larger), fewer
              vessels, a granular pit pattern (high-frequency cellular noise), 40 % with a
              reddened or whitish cap.

One 256 x 256 frame takes about 0.35 s of CPU here (numpy, one core; --jobs 2 for two).
Solid noise: random values on a 64^3 lattice (wrapping), smoothstep-weighted trilinear blend.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
from PIL import Image, ImageFilter

GENERATOR = "tools/lesionseg_synth.py"
VERSION = 1
DEPTH_MAX_CM = 20.0
DEPTH_SCALE = 65280            # SimCol3D: png / 255 / 256 = depth / 20 cm
Z0, Z1, DZ = -40.0, 80.0, 0.01  # tube tables: z range and grid step (cm)
SEED_TRAIN, SEED_VAL, SEED_TEST = 1, 2, 5000


# ---------------------------------------------------------------- noise

class Noise:
    """Solid value noise: random values on a 64^3 integer lattice (wrapping), interpolated with a
    smoothstep-weighted trilinear blend."""

    def __init__(self, rng):
        self.grid = rng.random(64 ** 3).astype(np.float32)

    def value(self, p, freq, offset=0.0):
        """Smooth noise in [0, 1] at points p (N, 3) (lattice spacing 1 / freq)."""
        q = p * np.float32(freq) + np.float32(offset)
        fl = np.floor(q)
        f = q - fl
        f = f * f * (3 - 2 * f)
        i = fl.astype(np.intp)
        ix, iy, iz = (np.ascontiguousarray(i[:, k]) for k in range(3))
        X = ((ix & 63) << 12, ((ix + 1) & 63) << 12)
        Y = ((iy & 63) << 6, ((iy + 1) & 63) << 6)
        Z = (iz & 63, (iz + 1) & 63)
        fx, fy, fz = (np.ascontiguousarray(f[:, k]) for k in range(3))
        G = self.grid
        out = []
        for x in X:
            yz = []
            for y in Y:
                xy = x + y
                v0, v1 = np.take(G, xy + Z[0]), np.take(G, xy + Z[1])
                yz.append(v0 + (v1 - v0) * fz)
            out.append(yz[0] + (yz[1] - yz[0]) * fy)
        return out[0] + (out[1] - out[0]) * fx

    def fbm(self, p, freq, octaves, offset=0.0):
        s, amp, tot = 0, 1.0, 0.0
        for o in range(octaves):
            s = s + amp * self.value(p, freq * 2 ** o, offset + 17.3 * o)
            tot += amp
            amp *= 0.5
        return s / tot


def smoothstep(a, b, x):
    t = np.clip((x - a) / (b - a), 0, 1)
    return t * t * (3 - 2 * t)


def gauss_blur2d(a, sigma):
    """Separable Gaussian blur of a float map (edge-replicated)."""
    r = max(1, int(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    p = np.pad(a, r, mode="edge")
    h = sum(k[j] * p[:, j:j + a.shape[1]] for j in range(2 * r + 1))
    return sum(k[j] * h[j:j + a.shape[0], :] for j in range(2 * r + 1))


# ---------------------------------------------------------------- tube

class Tube:
    def __init__(self, rng):
        z = np.arange(Z0, Z1 + DZ, DZ)
        self.z = z
        cl = []
        for _ in range(2):   # bx, by
            c = np.zeros_like(z)
            for _ in range(2):
                c += rng.uniform(0, 2.5) * np.sin(2 * np.pi * z / rng.uniform(18, 60) + rng.uniform(0, 2 * np.pi))
            cl.append(c)
        self.R0 = R0 = rng.uniform(1.2, 3.0)
        R = R0 * (1 + 0.15 * np.sin(2 * np.pi * z / rng.uniform(8, 25) + rng.uniform(0, 2 * np.pi)))
        e2, a2 = rng.uniform(0, 0.12), rng.uniform(0, np.pi)
        e3, a3 = rng.uniform(0, 0.15) * (rng.random() < 0.6), rng.uniform(0, 2 * np.pi / 3)
        A0 = R.copy()
        A2c, A2s = R * e2 * np.cos(2 * a2), R * e2 * np.sin(2 * a2)
        A3c, A3s = R * e3 * np.cos(3 * a3), R * e3 * np.sin(3 * a3)
        spacing = rng.uniform(1.6, 4.0)
        folds = []
        zk = Z0 + rng.uniform(0, spacing)
        while zk < Z1:
            h = R0 * rng.uniform(0.08, 0.3)
            w = rng.uniform(0.3, 0.55)
            m, phi = rng.uniform(0, 1), rng.uniform(0, 2 * np.pi)
            lo, hi = int((zk - 4 * w - Z0) / DZ), int((zk + 4 * w - Z0) / DZ) + 1
            lo, hi = max(lo, 0), min(hi, len(z))
            G = h * np.exp(-(((z[lo:hi] - zk) / w) ** 2))
            A0[lo:hi] -= G * (1 - m / 2)
            A3c[lo:hi] -= G * m / 2 * np.cos(3 * phi)
            A3s[lo:hi] -= G * m / 2 * np.sin(3 * phi)
            folds.append(round(float(zk), 2))
            zk += spacing * rng.uniform(0.75, 1.25)
        self.cols = np.stack([cl[0], cl[1], A0, A2c, A2s, A3c, A3s]).astype(np.float32)   # (7, nz)
        self.dcols = np.diff(self.cols, axis=1, append=self.cols[:, -1:])
        self.params = {"R0_cm": round(R0, 3), "ellipticity": round(e2, 3), "triangularity": round(float(e3), 3),
                       "fold_spacing_cm": round(spacing, 2), "fold_count_near": sum(-2 < f < 20 for f in folds)}

    def lookup(self, z):
        """The 7 tables (bx, by, A0, A2c, A2s, A3c, A3s) at z, linearly interpolated: (7, N)."""
        u = np.clip(z, Z0, Z1 - 2 * DZ).astype(np.float32) * np.float32(1 / DZ) - np.float32(Z0 / DZ)
        fl = np.floor(u)
        i = fl.astype(np.intp)
        return np.take(self.cols, i, axis=1) + np.take(self.dcols, i, axis=1) * (u - fl)

    def g(self, p):
        """rho - W: negative inside the lumen."""
        bx, by, A0, A2c, A2s, A3c, A3s = self.lookup(p[:, 2])
        dx, dy = p[:, 0] - bx, p[:, 1] - by
        rho = np.sqrt(dx * dx + dy * dy) + np.float32(1e-9)
        c, s = dx / rho, dy / rho
        cc, ss = c * c, s * s
        c2, s2 = cc + cc - 1, (s + s) * c
        c3, s3 = c * (4 * cc - 3), s * (3 - 4 * ss)
        return rho - (A0 + A2c * c2 + A2s * s2 + A3c * c3 + A3s * s3)

    def march(self, o, d, tmax):
        """First t in [0, tmax] with g(o + t d) >= 0, for unit rays d (N, 3) from o (3,) and their
        limits tmax (N,); inf if none."""
        n = d.shape[0]
        o32, d = o[None, :].astype(np.float32), d.astype(np.float32)
        hit = np.full(n, np.inf)
        act = np.arange(n)
        ta = np.zeros(n, np.float32)
        ga = np.full(n, self.g(o32)[0])
        brackets = []
        while act.size:
            prev = ta
            ta = ta + np.maximum(np.float32(-0.33) * ga, np.maximum(np.float32(0.02), np.float32(0.003) * ta))
            ga = self.g(o32 + ta[:, None] * d[act])
            crossed = ga >= 0
            if crossed.any():
                brackets.append((act[crossed], prev[crossed], ta[crossed]))
            keep = ~crossed & (ta < tmax[act])
            act, ta, ga = act[keep], ta[keep], ga[keep]
        if brackets:   # refine every crossing at once: 7 bisections, 0.02 / 128 cm
            idx, lo, hi = (np.concatenate(v) for v in zip(*brackets))
            dd = d[idx]
            for _ in range(7):
                mid = 0.5 * (lo + hi)
                inside = self.g(o32 + mid[:, None] * dd) < 0
                lo, hi = np.where(inside, mid, lo), np.where(inside, hi, mid)
            hit[idx] = 0.5 * (lo + hi)
        return hit

    def normal(self, p):
        """Unit gradient of g (points out of the lumen)."""
        e = 0.005
        gr = np.stack([self.g(p + e * ax) - self.g(p - e * ax) for ax in np.eye(3)], 1)
        return gr / (np.linalg.norm(gr, axis=1, keepdims=True) + 1e-12)


# ---------------------------------------------------------------- polyps

def ellipsoid_hit(o, d, c, frame, axes):
    """Ray (o (3,), d (N,3)) against an ellipsoid centre c, orthonormal rows frame (3,3), semi-axes
    axes (3,). Returns t (inf on a miss or behind the camera) and the unit outward normal (N,3)."""
    oc = (o - c) @ frame.T / axes
    dl = d @ frame.T / axes
    a = (dl * dl).sum(1)
    b = (dl @ oc)
    cc = oc @ oc - 1
    disc = b * b - a * cc
    t = np.full(d.shape[0], np.inf)
    ok = disc > 0
    sq = np.sqrt(np.where(ok, disc, 0))
    t0 = (-b - sq) / a
    t1 = (-b + sq) / a
    tt = np.where(t0 > 1e-4, t0, np.where(t1 > 1e-4, t1, np.inf))
    t[ok] = tt[ok]
    pl = oc[None, :] + np.where(np.isfinite(t), t, 0)[:, None] * dl
    nw = (pl / axes) @ frame
    nw /= np.linalg.norm(nw, axis=1, keepdims=True) + 1e-12
    return t, nw


def tangent_frame(n, rng):
    a = np.array([1.0, 0, 0]) if abs(n[0]) < 0.9 else np.array([0, 1.0, 0])
    t1 = np.cross(n, a)
    t1 /= np.linalg.norm(t1)
    t2 = np.cross(n, t1)
    ang = rng.uniform(0, 2 * np.pi)
    t1, t2 = np.cos(ang) * t1 + np.sin(ang) * t2, -np.sin(ang) * t1 + np.cos(ang) * t2
    return t1, t2


def make_polyp(rng, anchor, n_out, r):
    """A list of ellipsoids (centre, frame, axes) for one polyp at wall point anchor, n_out = wall
    normal out of the lumen."""
    n_in = -n_out
    t1, t2 = tangent_frame(n_in, rng)
    frame = np.stack([n_in, t1, t2])
    parts = []
    if rng.random() < 0.8:
        kind = "sessile"
        hn = r * rng.uniform(0.55, 1.1)
        c = anchor - n_in * r * rng.uniform(0, 0.6)
        parts.append((c, frame, np.array([hn, r * rng.uniform(0.85, 1.15), r])))
        for _ in range(rng.integers(0, 4)):
            ang = rng.uniform(0, 2 * np.pi)
            rl = r * rng.uniform(0.35, 0.6)
            cl = c + (np.cos(ang) * t1 + np.sin(ang) * t2) * r * rng.uniform(0.45, 0.8) + n_in * hn * rng.uniform(0, 0.4)
            parts.append((cl, frame, np.array([rl, rl, rl])))
    else:
        kind = "pedunculated"
        rs = 0.3 * r
        L = r * rng.uniform(1.0, 1.8)
        tilt = (t1 * rng.normal(0, 0.3) + t2 * rng.normal(0, 0.3))
        axis = n_in + tilt
        axis /= np.linalg.norm(axis)
        sa1, sa2 = tangent_frame(axis, rng)
        sframe = np.stack([axis, sa1, sa2])
        for k in range(3):
            parts.append((anchor + axis * L * (k + 0.5) / 3, sframe, np.array([L / 3, rs, rs])))
        parts.append((anchor + axis * (L + 0.6 * r), frame, np.array([r * 0.9, r, r * rng.uniform(0.85, 1.1)])))
    return {"kind": kind, "radius_cm": round(float(r), 3), "parts": parts}


# ---------------------------------------------------------------- camera

def rot_towards(v, ang, az, rng):
    """v turned by ang radians towards azimuth az (around v)."""
    t1, t2 = tangent_frame(v, rng)
    w = np.cos(az) * t1 + np.sin(az) * t2
    return np.cos(ang) * v + np.sin(ang) * w


# ---------------------------------------------------------------- one frame

def render(seed, index, size=256, polyps=True):
    """polyps=False: the same frame without polyps (the draw is still made, so every other random
    choice stays as it is); tools/assist_synth.py pastes its own lesions on such frames."""
    rng = np.random.default_rng([seed, index])
    S = size
    tube = Tube(rng)
    noise = Noise(rng)
    fov = rng.uniform(100, 120)
    focal = (S / 2) / math.tan(math.radians(fov) / 2)
    # camera position: off the centre line, inside the wall by >= 0.3 cm
    bx, by = tube.lookup(np.array([0.0]))[:2, 0]
    cam = None
    for frac in (rng.uniform(0, 0.55), 0.3, 0.1, 0.0):
        a = rng.uniform(0, 2 * np.pi)
        p = np.array([bx + frac * tube.R0 * np.cos(a), by + frac * tube.R0 * np.sin(a), 0.0])
        if tube.g(p[None])[0] < -0.3:
            cam, off = p, frac
            break
    if cam is None:
        cam, off = np.array([bx, by, 0.0]), 0.0
    e = 0.01
    b1 = tube.lookup(np.array([e]))[:2, 0]
    b0 = tube.lookup(np.array([-e]))[:2, 0]
    tang = np.array([(b1[0] - b0[0]) / (2 * e), (b1[1] - b0[1]) / (2 * e), 1.0])
    tang /= np.linalg.norm(tang)
    wall_view = rng.random() < 0.2
    ang = math.radians(rng.uniform(45, 85) if wall_view else min(abs(rng.normal(0, 30)), 85))
    fwd = rot_towards(tang, ang, rng.uniform(0, 2 * np.pi), rng)
    right, up = tangent_frame(fwd, rng)   # random roll
    ys, xs = np.mgrid[0:S, 0:S]
    xn = (xs.ravel() + 0.5 - S / 2) / focal
    yn = -(ys.ravel() + 0.5 - S / 2) / focal
    raylen = np.sqrt(xn * xn + yn * yn + 1)
    d = (xn[:, None] * right + yn[:, None] * up + fwd) / raylen[:, None]

    t_wall = tube.march(cam, d, (DEPTH_MAX_CM + 0.5) * raylen)   # farther: clipped to 20 cm anyway
    zdepth_wall = np.where(np.isfinite(t_wall), t_wall / raylen, np.inf)

    # polyps
    u = rng.random()
    want = 0 if u < 0.15 or not polyps else 1 if u < 0.65 else 2 if u < 0.9 else 3
    polyps = []
    finite = np.isfinite(t_wall)
    # anchors no farther than 4.5 x the near wall: with the light's 1/d^2 and the auto-exposure, a
    # polyp beyond that would be too dark to see (a label nobody could draw)
    t_near = np.percentile(t_wall[finite], 3) if finite.any() else 1.0
    edge = np.minimum(np.minimum(xs, ys), np.minimum(S - 1 - xs, S - 1 - ys)).ravel()
    for _ in range(want):
        for _attempt in range(6):
            r_guess = rng.uniform(0.3, min(1.5, 0.55 * tube.R0))   # the polyp's radius
            dmax = min(10.0, r_guess * focal / 5)
            ok = finite & (zdepth_wall >= 1.5) & (zdepth_wall <= dmax) & (t_wall <= 4.5 * t_near)
            if rng.random() < 0.25:
                ok &= edge < 24
            cand = np.flatnonzero(ok)
            if cand.size == 0:
                continue
            k = cand[rng.integers(cand.size)]
            anchor = cam + t_wall[k] * d[k]
            n_out = tube.normal(anchor[None])[0]
            p = make_polyp(rng, anchor, n_out, r_guess)
            # the camera stays >= 1 cm from every part (no polyp filling the lens)
            if any(np.linalg.norm(cam - c) - ax.max() < 1.0 for c, fr, ax in p["parts"]):
                continue
            p["anchor_depth_cm"] = round(float(zdepth_wall[k]), 2)
            p["anchor_px"] = [int(k % S), int(k // S)]
            polyps.append(p)
            break

    def polyp_hits(plist):
        t_p = np.full(S * S, np.inf)
        n_p = np.zeros((S * S, 3))
        who = np.full(S * S, -1)
        for j, p in enumerate(plist):
            for c, fr, ax in p["parts"]:
                t, nw = ellipsoid_hit(cam, d, c, fr, ax)
                better = t < t_p
                t_p[better], n_p[better], who[better] = t[better], nw[better], j
        return t_p, n_p, who

    t_p, n_p, who = polyp_hits(polyps)
    on_polyp = t_p < t_wall
    counts = [int(np.sum(on_polyp & (who == j))) for j in range(len(polyps))]
    if any(c < 40 for c in counts):
        polyps = [p for p, c in zip(polyps, counts) if c >= 40]
        t_p, n_p, who = polyp_hits(polyps)
        on_polyp = t_p < t_wall

    t = np.where(on_polyp, t_p, t_wall)
    hitfin = np.isfinite(t)
    tt = np.where(hitfin, t, (DEPTH_MAX_CM + 5) * raylen)   # beyond 20.5 cm: far lumen
    P = cam + tt[:, None] * d
    Pf = P.astype(np.float32)
    nrm = np.zeros((S * S, 3))
    wall_px = hitfin & ~on_polyp
    nrm[wall_px] = -tube.normal(P[wall_px])          # into the lumen, towards the camera
    nrm[on_polyp] = n_p[on_polyp]
    nrm[~hitfin] = -d[~hitfin]
    # bump mapping: the gradient of a solid noise tilts the normals (fine wall relief, polyp
    # granularity); the mask and depth keep the smooth geometry
    bump_w = rng.uniform(0.15, 0.4)
    pfreq = rng.uniform(9, 16)
    e = 0.02
    def bump(pts, freq, off):
        b0 = noise.value(pts, freq, off)
        return np.stack([(noise.value(pts + np.float32(e) * ax, freq, off) - b0) / e for ax in np.eye(3, dtype=np.float32)], 1)
    gw = bump(Pf[wall_px], 3.0, 21.0)
    nrm[wall_px] -= bump_w * 0.08 * gw
    if on_polyp.any():
        gp = bump(Pf[on_polyp], pfreq, 31.0)
        nrm[on_polyp] -= rng.uniform(0.012, 0.03) * gp
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-12
    cosi = np.clip(-(nrm * d).sum(1), 0, 1)
    zdepth = np.minimum(tt / raylen, DEPTH_MAX_CM)

    # albedo: mucosa
    hue = rng.uniform(0, 1)                           # 0 pink-red .. 1 orange (SimCol3D-like)
    base = np.array([0.88, 0.30 + 0.22 * hue, 0.27 + 0.03 * hue]) * rng.uniform(0.85, 1.05)
    base *= np.exp(rng.normal(0, 0.06, 3))
    blot = noise.fbm(Pf, 0.6, 2) - 0.5
    alb = base[None, :] * (1 + 0.4 * blot[:, None] * np.array([0.5, 1.0, 1.0]))
    ridge = 1 - np.abs(2 * noise.fbm(Pf, rng.uniform(1.2, 2.0), 2, 3.1) - 1)
    ridge2 = 1 - np.abs(2 * noise.fbm(Pf, rng.uniform(3.0, 5.0), 2, 7.7) - 1)
    vess = np.maximum(smoothstep(0.93, 0.985, ridge), 0.6 * smoothstep(0.95, 0.99, ridge2))
    vess *= rng.uniform(0.2, 0.7)
    grain = noise.value(Pf, 25.0, 1.3) - 0.5
    # polyp albedo
    pflags = []
    pid = np.where(on_polyp, who, -1)
    for j, p in enumerate(polyps):
        m = pid == j
        shift = rng.uniform(0.08, 0.3) * (1 if rng.random() < 0.55 else -1)   # + redder, - paler
        if shift > 0:
            pc = base * np.array([1.0, 1 - shift, 1 - 0.8 * shift])
        else:
            pc = base + (-shift) * (np.array([0.95, 0.78, 0.72]) - base)
        Pm = Pf[m]
        cell = noise.value(Pm, pfreq, 11.0)
        pits = smoothstep(0.55, 0.8, cell) - 0.6 * smoothstep(0.25, 0.08, cell)
        palb = pc[None, :] * (1 + 0.22 * pits[:, None] + 0.15 * (noise.fbm(Pm, 1.5, 2, 5.0)[:, None] - 0.5))
        cap = "none"
        if rng.random() < 0.4:
            # the top of the bump (height along the main part's normal) reddened or whitish
            c0, fr0, ax0 = p["parts"][-1] if p["kind"] == "pedunculated" else p["parts"][0]
            h = ((Pm - c0) @ fr0[0]) / ax0[0]
            top = smoothstep(0.3, 0.9, h + 0.3 * (noise.value(Pm, 3.0, 2.0) - 0.5))[:, None]
            cap = "red" if rng.random() < 0.5 else "white"
            capc = np.array([0.8, 0.2, 0.2]) if cap == "red" else np.array([0.95, 0.85, 0.82])
            palb = palb * (1 - 0.5 * top) + 0.5 * top * capc
        alb[m] = palb
        vess[m] *= 0.25
        pflags.append({"color_shift": round(float(shift), 3), "cap": cap})
    vcol = np.array([0.6, 0.3, 0.5])
    alb = alb * (1 - vess[:, None] * (1 - vcol)[None, :])
    alb *= (1 + 0.1 * grain)[:, None]

    # lighting: point light at the camera, auto-exposure on the 97th percentile
    dist = tt
    lin = alb * (cosi / np.maximum(dist, 0.3) ** 2)[:, None]
    zimg = zdepth.reshape(S, S)
    blur = gauss_blur2d(zimg, 6.0 * S / 256)
    ao = np.clip((zimg - blur) / (0.3 * blur + 1e-6), 0, 1).ravel()
    lin *= (1 - 0.65 * ao)[:, None]
    expo = rng.uniform(0.9, 1.7) / max(np.percentile(lin.mean(1), 97), 1e-6)
    lin *= expo
    shin = rng.uniform(40, 150)
    wet = smoothstep(0.4, 0.7, noise.fbm(Pf, 2.0, 2, 9.0))
    spec = rng.uniform(0.6, 1.5) * wet * cosi ** shin * np.minimum(expo / np.maximum(dist, 0.3) ** 2, 3)
    glint = smoothstep(0.88, 0.95, noise.value(Pf, 9.0, 4.4)) * smoothstep(0.6, 0.9, cosi) * (dist < 8)
    lin = lin + (spec + 2.0 * glint)[:, None] * np.array([1.0, 0.98, 0.96])
    img = 1 - np.exp(-lin)
    img = img ** (1 / 1.4)
    img = img.reshape(S, S, 3)
    rr = ((xs + 0.5 - S / 2) ** 2 + (ys + 0.5 - S / 2) ** 2) / (S / 2) ** 2 / 2
    vig = rng.uniform(0.15, 0.5)
    img *= (1 - vig * rr ** 1.2)[:, :, None]
    gray = img.mean(2, keepdims=True)
    sat = rng.uniform(0.85, 1.3)
    img = gray + sat * (img - gray)
    img *= np.exp(rng.normal(0, 0.05, 3))[None, None, :] * math.exp(rng.normal(0, 0.1))
    im8 = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    blur_px = rng.uniform(0.4, 1.1) * S / 256
    im8 = im8.filter(ImageFilter.GaussianBlur(blur_px))
    arr = np.asarray(im8).astype(np.float32)
    sig = rng.uniform(1, 4)
    arr += rng.normal(0, sig, arr.shape).astype(np.float32)
    mask = on_polyp.reshape(S, S)
    octagon = rng.random() < 0.3
    if octagon:
        cut = rng.uniform(0.18, 0.3) * S
        inside = (xs + ys >= cut) & ((S - 1 - xs) + ys >= cut) & (xs + (S - 1 - ys) >= cut) & \
                 ((S - 1 - xs) + (S - 1 - ys) >= cut)
        arr *= inside[:, :, None]
        mask = mask & inside
    arr = np.clip(arr + 0.5, 0, 255).astype(np.uint8)
    dpng = np.round(zimg / DEPTH_MAX_CM * DEPTH_SCALE).astype(np.uint16)
    info = {"seed": int(seed), "index": int(index), "polyp_count": len(polyps),
            "lesion_fraction": round(float(mask.mean()), 5),
            "params": {"fov_deg": round(fov, 2), "camera_offset_R0": round(float(off), 3),
                       "view_angle_deg": round(math.degrees(ang), 1), "wall_view": bool(wall_view),
                       "exposure": round(float(expo), 2), "mucosa_hue": round(hue, 3), "octagon": bool(octagon),
                       "blur_px": round(blur_px, 2), "noise_sigma": round(sig, 2), **tube.params,
                       "polyps": [{"kind": p["kind"], "radius_cm": p["radius_cm"], "anchor_depth_cm": p["anchor_depth_cm"],
                                   "anchor_px": p["anchor_px"], **(f or {})} for p, f in
                                  zip(polyps, pflags)]}}
    return arr, dpng, (mask * 255).astype(np.uint8), info


def write_one(args):
    out, seed, i, size = args
    img, dep, mask, info = render(seed, i, size)
    name = f"{i:04d}"
    Image.fromarray(img).save(os.path.join(out, name + ".png"))
    Image.fromarray(dep).save(os.path.join(out, name + "_depth.png"))
    Image.fromarray(mask).save(os.path.join(out, name + "_mask.png"))
    info["file"] = name + ".png"
    return info


def contact_sheet(out, seed, indices, size, path):
    """Frame, depth (grey, near = bright) and mask overlay of each index, one row each."""
    rows = []
    for i in indices:
        img, dep, mask, _ = render(seed, i, size)
        dn = (255 * (1 - dep.astype(np.float32) / DEPTH_SCALE)).astype(np.uint8)
        ov = img.copy()
        ov[mask > 0] = (0.5 * ov[mask > 0] + [0, 127, 0]).astype(np.uint8)
        rows.append(np.concatenate([img, np.stack([dn] * 3, 2), ov], 1))
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--sheet", help="also write a contact sheet of the first 6 frames to this PNG")
    a = ap.parse_args(argv)
    if a.count < 0 or a.start < 0 or a.size < 32:
        ap.error("count and start must be >= 0, size >= 32")
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
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
    index = {"generator": GENERATOR, "version": VERSION, "seed": a.seed, "size": a.size,
             "images": [old[k] for k in sorted(old)]}
    with open(ipath, "w") as f:
        json.dump(index, f, indent=1)
    if a.sheet:
        contact_sheet(a.out, a.seed, range(a.start, a.start + min(6, a.count)), a.size, a.sheet)
    n = len(infos)
    empty = sum(im["polyp_count"] == 0 for im in infos)
    print(f"{n} frames (seed {a.seed}, {a.start}..{a.start + n - 1}) in {time.time() - t0:.1f} s; "
          f"{empty} without polyp, mean lesion fraction "
          f"{np.mean([im['lesion_fraction'] for im in infos]) if infos else 0:.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
