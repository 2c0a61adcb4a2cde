#!/usr/bin/python3
"""tools/patho_ref.py - the pathology pipeline's steps outside the networks, in numpy: what
pipelines/patho computes in C, written the plain way. The tests compare the C with these; the
training (tools/train_patho.py) prepares its tiles and graphs with the same functions, so the
model learns on exactly what the pipeline will give it; tools/ fits the stain references here.

  gray(rgb)                 PIL's "L": (19595 R + 38470 G + 7471 B + 2^15) >> 16, uint8
  otsu(gray)                Otsu's threshold t on the 256-bin histogram (tissue: gray <= t);
                            the same t as skimage.filters.threshold_otsu on integer images
  tissue_ratio(gray, t)     fraction of pixels with gray <= t
  macenko_fit(rgb)          Macenko et al. 2009 (ISBI), "A method for normalizing histology
                            slides for quantitative analysis": stain matrix HE (3x2, columns
                            hematoxylin, eosin) and the 99th percentile concentrations maxC (2)
  macenko_normalize(rgb, HE_ref, maxC_ref)
  reinhard_fit(rgb)         Reinhard et al. 2001, "Color transfer between images": mean and std
                            of each channel in l-alpha-beta space (3 + 3)
  reinhard_normalize(rgb, mean_ref, std_ref)
  pearson(f) / cosine(f)    (K, K) similarity of the rows of f, float64; a row of zero variance
                            (zero norm) has similarity 0 with every row, itself included
  adjacency(f, metric, compare, t)   1 where sim >= t (compare "ge") or |sim| >= t ("abs_ge"),
                            off the diagonal; 0 elsewhere
  top_k(scores, k)          indices of the k largest scores, descending; ties by ascending index
All images are (H, W, 3) uint8 RGB. Float work is float64.
"""
import numpy as np

IO = 240.0        # Macenko's transmitted light intensity
ALPHA = 1.0       # percentile of the angle extremes
BETA = 0.15       # optical density below which a pixel is transparent (ignored when fitting)

# Reinhard's RGB -> LMS and back, and LMS (log10) -> l-alpha-beta
RGB2LMS = np.array([[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]])
LMS2RGB = np.array([[4.4679, -3.5873, 0.1193], [-1.2186, 2.3809, -0.1624], [0.0497, -0.2439, 1.2045]])
LMS2LAB = np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]) @ np.array([[1, 1, 1], [1, 1, -2], [1, -1, 0]])
LAB2LMS = np.array([[1, 1, 1], [1, 1, -1], [1, -2, 0]]) @ np.diag([np.sqrt(3) / 3, np.sqrt(6) / 6, np.sqrt(2) / 2])


def gray(rgb):
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16).astype(np.uint8)


def otsu(g):
    """Otsu's threshold of a uint8 image: the t maximizing the between-class variance of
    {g <= t} and {g > t}; the first such t on a tie. An image of one value gives that value."""
    hist = np.bincount(g.ravel(), minlength=256).astype(np.float64)
    values = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * values)
    s1 = s0[-1] - s0
    with np.errstate(divide="ignore", invalid="ignore"):
        var = w0 * w1 * (s0 / w0 - s1 / w1) ** 2
    var[~np.isfinite(var)] = -1
    if var.max() < 0:
        return int(g.ravel()[0])
    return int(np.argmax(var))


def tissue_ratio(g, t):
    return float(np.count_nonzero(g <= t)) / g.size


def _od(rgb):
    return -np.log((rgb.reshape(-1, 3).astype(np.float64) + 1) / IO)


def _percentile(x, p):
    return float(np.percentile(x, p))        # linear interpolation between order statistics


def _orient(v):
    """an eigenvector's sign: its component of largest magnitude positive"""
    return v if v[np.argmax(np.abs(v))] >= 0 else -v


def macenko_fit(rgb, min_pixels=100):
    """-> (HE (3, 2), maxC (2)), or None when fewer than min_pixels pixels are stained."""
    od = _od(rgb)
    odhat = od[np.all(od >= BETA, axis=1)]
    if odhat.shape[0] < min_pixels:
        return None
    _, vecs = np.linalg.eigh(np.cov(odhat.T))           # ascending eigenvalues
    e = np.stack([_orient(vecs[:, 1]), _orient(vecs[:, 2])], 1)
    t = odhat @ e
    phi = np.arctan2(t[:, 1], t[:, 0])
    lo, hi = _percentile(phi, ALPHA), _percentile(phi, 100 - ALPHA)
    v_lo = e @ np.array([np.cos(lo), np.sin(lo)])
    v_hi = e @ np.array([np.cos(hi), np.sin(hi)])
    he = np.stack([v_lo, v_hi], 1) if v_lo[0] > v_hi[0] else np.stack([v_hi, v_lo], 1)
    c = concentrations(he, od)
    return he, np.array([_percentile(c[0], 99), _percentile(c[1], 99)])


def concentrations(he, od):
    """least squares of od (N, 3) on the columns of he: (2, N), by the normal equations"""
    return np.linalg.solve(he.T @ he, he.T @ od.T)


def macenko_normalize(rgb, he_ref, maxc_ref):
    """-> the tile in the reference stains; None when the tile has too little stain to fit"""
    fit = macenko_fit(rgb)
    if fit is None:
        return None
    he, maxc = fit
    c = concentrations(he, _od(rgb)) * (np.asarray(maxc_ref) / maxc)[:, None]
    out = IO * np.exp(-np.asarray(he_ref) @ c)
    return np.clip(np.rint(out.T), 0, 255).astype(np.uint8).reshape(rgb.shape)


def _to_lab(rgb):
    lms = (rgb.reshape(-1, 3).astype(np.float64) + 1) @ RGB2LMS.T
    return np.log10(lms) @ LMS2LAB.T


def reinhard_fit(rgb):
    lab = _to_lab(rgb)
    return lab.mean(0), lab.std(0)


def reinhard_normalize(rgb, mean_ref, std_ref):
    lab = _to_lab(rgb)
    mean, std = lab.mean(0), lab.std(0)
    std = np.where(std > 0, std, 1.0)
    lab = (lab - mean) / std * np.asarray(std_ref) + np.asarray(mean_ref)
    out = (10.0 ** (lab @ LAB2LMS.T)) @ LMS2RGB.T - 1
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(rgb.shape)


def pearson(f):
    f = np.asarray(f, dtype=np.float64)
    return cosine(f - f.mean(1, keepdims=True))


def cosine(f):
    f = np.asarray(f, dtype=np.float64)
    n = np.sqrt((f * f).sum(1))
    ok = n > 0
    s = np.zeros((f.shape[0], f.shape[0]))
    s[np.ix_(ok, ok)] = (f[ok] @ f[ok].T) / np.outer(n[ok], n[ok])
    return s


def adjacency(f, metric="pearson", compare="ge", t=0.5):
    s = {"pearson": pearson, "cosine": cosine}[metric](f)
    a = (s >= t) if compare == "ge" else (np.abs(s) >= t)
    a = a.astype(np.float32)
    np.fill_diagonal(a, 0)
    return a


def top_k(scores, k):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return order[:k]
