#!/usr/bin/python3
"""tools/echo_synth.py - seeded synthetic M-mode echocardiography strips with ground truth.

    tools/echo_synth.py --seed N --count K --out DIR [--start I]

Study i of seed N is drawn from numpy's default_rng([N, i]) alone, so a study does not depend on
--count or on the other studies (seed 1 study 7 is always the same picture). Per study NAME =
echo_sSEED_IIIII it writes
  NAME.png   the 8-bit grey strip (H 240-320, W 480-800)
  NAME.dcm   the same pixels as a DICOM US image (MONOCHROME2, 8 bit) with one Sequence of
             Ultrasound Regions item: RegionSpatialFormat 2 (M-mode), the region covering the
             strip, PhysicalUnitsX 4 (s), PhysicalUnitsY 3 (cm), PhysicalDeltaX/Y = s/px, cm/px
  NAME.json  ground truth (below)
and DIR/boxes.csv (image_w,image_h,x1,y1,x2,y2: one row per labeled cycle, for tools/anchors.py).

Physiology (per study): heart rate 50-110 bpm, LVIDd 38-62 mm, fractional shortening FS 12-45 %
(EF from about 25 to 80 %), IVSd and LVPWd 6-13 mm with systolic thickening 25-60 %. The LV
dimension D(t) over a beat: ED at t = 0 (maximal D), a fast cosine-shaped contraction to ES
(minimal D) in Ts = 0.30 s - 1.5 ms per bpm above 70 (+-0.02 s), rapid early filling to ~80 %
of the stroke, slow diastasis, then the atrial kick back to the ED dimension at the next ED.
The septum takes 25-45 % of the shortening (it moves down in systole), the posterior wall the
rest (it moves up); wall thickness follows the shortening linearly from diastolic to systolic.
Each beat differs from the study's mean by <= 3 % (period, LVIDd, LVIDs, wall thicknesses).
Look: chest wall bands at the top, the RV free wall and the dark RV cavity above the septum, the
dark LV cavity, a bright pericardium line directly below the posterior wall (its upper edge is
the epicardium = point 4), dim tissue below; horizontally streaked speckle (tissue moves along
the time axis), overall gain and row-wise gain (TGC) variation, depth attenuation, noise floor,
occasional faint mitral/chordal echoes in the LV cavity.

Scales: the depth scale is chosen so that the heart (chest wall to pericardium) fills 55-85 % of
the strip height, which with these hearts and heights gives 0.28-1.04 mm/px (mostly 0.4-0.8; a
finer scale such as 0.15-0.30 mm/px cannot fit a 75-140 mm deep heart into 240-320 rows); the
time scale is chosen
so that 1-3 complete ED-to-ED cycles are visible with a partial cycle at each edge (the first ED
10-70 % of a period after the left edge, the right edge 10-70 % of a period after the last ED),
kept within 0.003-0.010 s/px (drawn again otherwise).

Image coordinates: pixel column i covers [i, i+1) and shows time (i + 0.5) * s_per_px; row j
covers [j, j+1) and shows depth (j + 0.5) * mm_per_px. A time t is at x = t / s_per_px, a depth
z at y = z / mm_per_px (continuous coordinates, as the points and boxes are given).

Ground truth per complete cycle k (ED_k to ED_k+1):
  points  8 [x, y]: ED (x = ED_k) septum outer (top of the IVS band), septum inner, posterior
          wall inner (endocardium), posterior wall outer (epicardium); the same 4 at ES
  box     [x1, y1, x2, y2] = [x(ED_k), min over the cycle of the septum top - 2 mm,
          x(ED_k+1), max over the cycle of the epicardium + 2 mm] (the box margin is 2 mm in
          depth and none in time), clipped to the image
  IVSd LVIDd LVPWd IVSs LVIDs LVPWs (mm, from the points' y and mm_per_px), EDV ESV (mL,
  Teichholz V = 7 / (2.4 + D) * D^3 with D in cm), EF = (EDV - ESV) / EDV and FS =
  (LVIDd - LVIDs) / LVIDd (percent).

Used by tools/train_echo.py (which calls make_study() in memory) and for examples/echo/.
Needs numpy and PIL; pydicom (Debian python3-pydicom) for the .dcm files.
"""
import argparse
import json
import math
import os

import numpy as np

GT_MARGIN_MM = 2.0           # the cycle box's margin in depth (none in time)


def teichholz(d_mm):
    d = d_mm / 10.0
    return 7.0 / (2.4 + d) * d ** 3


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _shortening(t, period, ts):
    """contraction fraction c in [0, 1] (0 at ED, 1 at ES) at times t in [0, period)"""
    c = np.zeros_like(t)
    sys_ = t < ts
    c[sys_] = 0.5 - 0.5 * np.cos(np.pi * t[sys_] / ts)
    dia = ~sys_
    rest = period - ts
    k = min(1.0, rest / 0.40)
    te, ta = 0.16 * k, 0.11 * k                  # early filling, atrial kick durations
    td = t[dia] - ts
    recov = 0.80 * _smoothstep(td / te)                                   # E wave
    recov = recov + 0.05 * np.clip((td - te) / max(rest - te - ta, 1e-3), 0, 1)   # diastasis
    recov = recov + 0.15 * _smoothstep((td - (rest - ta)) / ta)            # A wave
    c[dia] = 1.0 - np.clip(recov, 0, 1)
    return c


def _box_blur_x(a, r):
    if r < 1:
        return a
    c = np.cumsum(np.pad(a, ((0, 0), (r + 1, r)), mode="edge"), axis=1)
    return (c[:, 2 * r + 1:] - c[:, :-2 * r - 1]) / (2 * r + 1)


def _box_blur_y(a, r):
    return _box_blur_x(a.T, r).T if r >= 1 else a


def make_study(rng):
    """One study from a numpy Generator: (uint8 image H x W, ground-truth dict without file names)."""
    H = int(rng.integers(240, 321))
    W = int(rng.integers(480, 801))
    hr = rng.uniform(50, 110)
    period = 60.0 / hr
    lvidd = rng.uniform(38, 62)
    fs = rng.uniform(0.12, 0.45)
    lvids = lvidd * (1 - fs)
    ivsd, lvpwd = rng.uniform(6, 13), rng.uniform(6, 13)
    ivss = ivsd * (1 + rng.uniform(0.25, 0.60))
    lvpws = lvpwd * (1 + rng.uniform(0.25, 0.60))
    ts = float(np.clip(0.30 - 0.0015 * (hr - 70) + rng.uniform(-0.02, 0.02), 0.20, 0.40))
    sept_share = rng.uniform(0.25, 0.45)
    chest = rng.uniform(6, 14)            # chest wall thickness, mm
    rvwall = rng.uniform(3, 5.5)
    rvcav = rng.uniform(10, 22)           # RV cavity at ED, mm
    peri = rng.uniform(2.0, 4.0)          # pericardium line thickness
    heart_depth = chest + rvwall + rvcav + ivsd + lvidd + lvpwd + peri + 4.0
    mm_per_px = heart_depth / (H * rng.uniform(0.55, 0.85))

    # time: n complete cycles, partial cycles at both edges, s/px in [0.003, 0.010]
    for _ in range(1000):
        n = int(rng.integers(1, 4))
        a, b = rng.uniform(0.1, 0.7, size=2)
        jit = 1 + rng.uniform(-0.03, 0.03, size=n + 3)
        periods = period * jit
        T = a * periods[0] + periods[1:n + 1].sum() + b * periods[n + 1]
        s_per_px = T / W
        if 0.003 <= s_per_px <= 0.010:
            break
    # beat boundaries (ED times); beat 0 starts before the strip
    ed = np.concatenate([[-(1 - a) * periods[0]], -(1 - a) * periods[0] + np.cumsum(periods)])
    # ed[j] is the ED starting beat j; beat j has period periods[j]; EDs inside: ed[1..n+1]
    nb = len(periods)
    bd = lvidd * (1 + rng.uniform(-0.02, 0.02, nb))
    bs = lvids * (1 + rng.uniform(-0.02, 0.02, nb))
    bivsd = ivsd * (1 + rng.uniform(-0.02, 0.02, nb)); bivss = ivss * (1 + rng.uniform(-0.02, 0.02, nb))
    bpwd = lvpwd * (1 + rng.uniform(-0.02, 0.02, nb)); bpws = lvpws * (1 + rng.uniform(-0.02, 0.02, nb))
    bts = ts * periods / period

    # per-time wall positions in mm, on a fine time grid (columns) and at label times
    top_lv = chest + rvwall + rvcav + ivsd       # septum inner edge depth at ED (mean)

    def walls(t):
        """septum top, septum inner, PW inner, PW outer (mm) and the contraction c at times t (s).
        Late in a beat the ED values ease into the next beat's, so the walls are continuous."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        j = np.clip(np.searchsorted(ed, t, side="right") - 1, 0, nb - 1)
        tau = t - ed[j]
        c = np.zeros_like(t)
        for jj in np.unique(j):
            m = j == jj
            c[m] = _shortening(np.clip(tau[m], 0, periods[jj] - 1e-9), periods[jj], bts[jj])
        jn = np.minimum(j + 1, nb - 1)
        f = _smoothstep((tau / periods[j] - 0.6) / 0.4) * (1 - c)
        d = bd[j] - (bd[j] - bs[j]) * c + (bd[jn] - bd[j]) * f
        ivs = bivsd[j] + (bivss[j] - bivsd[j]) * c + (bivsd[jn] - bivsd[j]) * f
        pw = bpwd[j] + (bpws[j] - bpwd[j]) * c + (bpwd[jn] - bpwd[j]) * f
        y2 = top_lv + sept_share * (lvidd - d)
        return y2 - ivs, y2, y2 + d, y2 + d + pw, c

    tcol = (np.arange(W) + 0.5) * s_per_px
    y1, y2, y3, y4, cc = walls(tcol)

    # RV free wall and chest wall move a little with the beat
    rv_top = chest + 1.5 * cc * rng.uniform(0.3, 1.0)
    rv_bot = rv_top + rvwall
    peri_bot = y4 + peri

    # ---- image ----------------------------------------------------------------------------
    f32 = np.float32
    z = ((np.arange(H) + 0.5) * mm_per_px)[:, None].astype(f32)     # depth of each row, mm
    px = f32(mm_per_px)
    y1, y2, y3, y4, cc = (v.astype(f32) for v in (y1, y2, y3, y4, cc))

    def band(top, bot):      # soft membership of rows in [top, bot) (mm), anti-aliased
        top = np.asarray(top, f32)
        bot = np.asarray(bot, f32)
        a = np.minimum(np.maximum((z - top) / px + f32(0.5), f32(0)), f32(1))
        return a * np.minimum(np.maximum((bot - z) / px + f32(0.5), f32(0)), f32(1))

    def edge(at, width):     # a bright thin line centred at depth `at`
        u = (z - np.asarray(at, f32)) / f32(max(width, 0.6 * mm_per_px))
        return np.exp(f32(-0.5) * u * u)

    I = np.zeros((H, W), f32)
    # chest wall: layered bright bands
    nl = int(rng.integers(3, 6))
    cuts = np.sort(rng.uniform(0, chest, nl))
    lay = 0.35 + 0.25 * np.sin(z / rng.uniform(1.0, 2.5) + rng.uniform(0, 6))
    I += band(0.0, rv_top) * np.clip(lay + 0.0, 0.1, 0.8)
    for cz in cuts:
        I += 0.35 * edge(cz + 0.3 * cc, rng.uniform(0.3, 0.8))
    I += band(rv_top, rv_bot) * rng.uniform(0.45, 0.7)                # RV free wall
    I += band(rv_bot, y1) * rng.uniform(0.02, 0.08)                   # RV cavity
    sept_lv = rng.uniform(0.30, 0.65)
    I += band(y1, y2) * sept_lv                                       # IVS
    I += 0.25 * edge(y1, 0.35) + 0.2 * edge(y2, 0.35)                 # endocardial borders
    lvcav = rng.uniform(0.01, 0.10)
    I += band(y2, y3) * lvcav                                         # LV cavity
    if rng.random() < 0.6:                                            # faint chordae / MV
        zc = y2 + (y3 - y2) * rng.uniform(0.55, 0.85)
        I += rng.uniform(0.05, 0.18) * edge(zc, 0.5) * band(y2 + 2, y3 - 2) * (1 - cc)
    pw_lv = rng.uniform(0.30, 0.6)
    I += band(y3, y4) * pw_lv                                         # posterior wall
    I += 0.2 * edge(y3, 0.35)
    I += band(y4, peri_bot) * rng.uniform(0.85, 1.0)                  # pericardium
    below = rng.uniform(0.12, 0.3)
    I += band(peri_bot, f32(1e9)) * f32(below) * np.exp(-(z - peri_bot) / f32(rng.uniform(15, 40)))

    # speckle streaked along time; different streak lengths per study
    rx = int(rng.integers(2, 7))
    sp = rng.rayleigh(1.0, size=(H, W))
    sp = _box_blur_x(_box_blur_x(sp, rx), rx)
    sp = _box_blur_y(sp, 1) if rng.random() < 0.5 else sp
    sp = sp / sp.mean()
    spk = rng.uniform(0.5, 1.0)
    I = I * (1 - spk + spk * sp ** rng.uniform(1.0, 1.8))
    # depth attenuation, gain, TGC, noise floor
    I = I * np.exp(-z * rng.uniform(0.0, 0.012))
    tgc = 1 + 0.15 * np.sin(z / rng.uniform(15, 40) + rng.uniform(0, 6))
    I = I * rng.uniform(0.75, 1.35) * tgc
    I = I + rng.uniform(0.0, 0.06) * rng.random((H, W))
    gamma = rng.uniform(0.7, 1.1)
    img = np.clip(np.clip(I, 0, 1) ** gamma * 255 + rng.normal(0, 2.0, (H, W)), 0, 255)
    img = np.round(img).astype(np.uint8)

    # ---- labels -----------------------------------------------------------------------------
    cycles = []
    for k in range(1, n + 1):          # complete beats k = 1..n: ED ed[k] to ed[k+1]
        t_ed, t_es, t_next = ed[k], ed[k] + bts[k], ed[k + 1]
        pe = walls([t_ed, t_es])
        tt = np.linspace(t_ed, t_next, 200)
        ya, _, _, yb, _ = walls(tt)
        pts = []
        for i_t, t in enumerate((t_ed, t_es)):
            for w in range(4):
                pts.append([t / s_per_px, pe[w][i_t] / mm_per_px])
        x1, x2 = t_ed / s_per_px, t_next / s_per_px
        by1 = max(0.0, (ya.min() - GT_MARGIN_MM) / mm_per_px)
        by2 = min(float(H), (yb.max() + GT_MARGIN_MM) / mm_per_px)
        m = {}
        for name, (a_, b_) in (("IVSd", (0, 1)), ("LVIDd", (1, 2)), ("LVPWd", (2, 3)),
                               ("IVSs", (4, 5)), ("LVIDs", (5, 6)), ("LVPWs", (6, 7))):
            m[name] = (pts[b_][1] - pts[a_][1]) * mm_per_px
        edv, esv = teichholz(m["LVIDd"]), teichholz(m["LVIDs"])
        m["EDV"], m["ESV"] = edv, esv
        m["EF"] = 100.0 * (edv - esv) / edv
        m["FS"] = 100.0 * (m["LVIDd"] - m["LVIDs"]) / m["LVIDd"]
        cyc = {"box": [round(v, 3) for v in (x1, by1, x2, by2)],
               "points": [[round(p[0], 3), round(p[1], 3)] for p in pts]}
        cyc.update({k_: round(float(v), 3) for k_, v in m.items()})
        cycles.append(cyc)
    gt = {"width": W, "height": H, "mm_per_px": mm_per_px, "s_per_px": s_per_px,
          "heart_rate_bpm": round(hr, 2), "cycles": cycles}
    return img, gt


def study(seed, index):
    return make_study(np.random.default_rng([seed, index]))


def write_dicom(path, img, s_per_px, mm_per_px, seed, index):
    import pydicom
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    sop_class = "1.2.840.10008.5.1.4.1.1.6.1"            # Ultrasound Image Storage
    ent = [f"medinfer-echo-synth {seed} {index}"]
    sop_inst = generate_uid(entropy_srcs=ent + ["sop"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_inst
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(entropy_srcs=["medinfer-echo-synth"])
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_inst
    ds.StudyInstanceUID = generate_uid(entropy_srcs=ent + ["study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=ent + ["series"])
    ds.Modality = "US"
    ds.PatientName = f"SYNTH^ECHO{seed}_{index}"
    ds.PatientID = f"SYN-{seed}-{index}"
    ds.StudyDate = ds.SeriesDate = "20261130"
    ds.Manufacturer = "medinfer echo_synth (synthetic)"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    H, W = img.shape
    ds.Rows, ds.Columns = H, W
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    r = Dataset()
    r.RegionSpatialFormat = 2         # M-mode
    r.RegionDataType = 1              # tissue
    r.RegionFlags = 0
    r.RegionLocationMinX0, r.RegionLocationMinY0 = 0, 0
    r.RegionLocationMaxX1, r.RegionLocationMaxY1 = W - 1, H - 1
    r.PhysicalUnitsXDirection = 4     # seconds
    r.PhysicalUnitsYDirection = 3     # cm
    r.PhysicalDeltaX = float(s_per_px)
    r.PhysicalDeltaY = float(mm_per_px / 10.0)
    r.ReferencePixelX0, r.ReferencePixelY0 = 0, 0
    ds.SequenceOfUltrasoundRegions = Sequence([r])
    ds.PixelData = np.ascontiguousarray(img).tobytes()
    ds.save_as(path, write_like_original=False)


def main(argv=None):
    from PIL import Image
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--start", type=int, default=0, help="first study index (default 0)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-dicom", action="store_true", help="PNG and JSON only")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    rows = []
    for i in range(a.start, a.start + a.count):
        img, gt = study(a.seed, i)
        name = f"echo_s{a.seed}_{i:05d}"
        Image.fromarray(img).save(os.path.join(a.out, name + ".png"), optimize=True)
        if not a.no_dicom:
            write_dicom(os.path.join(a.out, name + ".dcm"), img, gt["s_per_px"], gt["mm_per_px"], a.seed, i)
        out = {"image": name + ".png", "dicom": None if a.no_dicom else name + ".dcm"}
        out.update(gt)
        with open(os.path.join(a.out, name + ".json"), "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        for c in gt["cycles"]:
            rows.append(f"{gt['width']},{gt['height']}," + ",".join(f"{v:.3f}" for v in c["box"]))
    with open(os.path.join(a.out, "boxes.csv"), "w") as f:
        f.write("image_w,image_h,x1,y1,x2,y2\n")
        f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
