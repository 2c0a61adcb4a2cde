"""tests/ref_ops.py - PyTorch references for the non-convolution ops, read by tests/test_ops.c.

Randomized shapes from a fixed seed (odd sizes, padding, stride 2, dilation, ceil_mode,
count_include_pad both ways, align_corners both ways, 2-D and 3-D), computed with
torch.nn.functional. Case i of a file has tensors "<i>.x", "<i>.p" (the parameters as floats,
all small integers or exactly representable scales) and the expected outputs; metadata "cases"
gives the count."""
import random

import torch
import torch.nn.functional as F

import mi_ref

rng = random.Random(1234)
torch.manual_seed(1234)


def save_cases(name, cases):
    t = {}
    for i, c in enumerate(cases):
        for k, v in c.items():
            t["%d.%s" % (i, k)] = v if torch.is_tensor(v) else torch.tensor(v, dtype=torch.float32)
    mi_ref.save(name, t, {"cases": str(len(cases))})


def randn(*shape, scale=1.0):
    return torch.randn(*shape) * scale


# ---- pooling: p = [sp, k0,k1,k2, s0,s1,s2, p0,p1,p2, d0,d1,d2, ceil, count_include_pad]
def pool_case(sp, x, k, s, p, d, ceil, cip):
    full = lambda v: [1] * (3 - sp) + list(v) if sp == 2 else list(v)  # noqa: E731
    kk, ss, pp, dd = full(k), full(s), ([0] if sp == 2 else []) + list(p), full(d)
    par = [float(sp)] + kk + ss + pp + dd + [float(ceil), float(cip)]
    mp = F.max_pool2d if sp == 2 else F.max_pool3d
    ap = F.avg_pool2d if sp == 2 else F.avg_pool3d
    c = {"x": x, "p": par, "max": mp(x, k, s, p, d, ceil_mode=ceil)}
    if all(v == 1 for v in d):
        c["avg"] = ap(x, k, s, p, ceil_mode=ceil, count_include_pad=cip)
    return c


pool = [
    pool_case(2, randn(2, 3, 17, 17), (3, 3), (2, 2), (1, 1), (1, 1), False, True),   # ResNet stem
    pool_case(2, randn(1, 4, 36, 41), (3, 3), (2, 2), (1, 1), (1, 1), False, True),   # wide rows: SIMD
    pool_case(2, randn(1, 2, 19, 35), (2, 2), (2, 2), (0, 0), (1, 1), True, False),   # U-Net 2x2, ceil
    pool_case(2, randn(1, 3, 9, 40), (3, 3), (1, 1), (1, 1), (1, 1), False, False),
    pool_case(3, randn(1, 2, 7, 9, 11), (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), True, False),
]
while len(pool) < 45:
    sp = rng.choice([2, 2, 3])
    k = [rng.randint(1, 4) for _ in range(sp)]
    s = [rng.randint(1, 3) for _ in range(sp)]
    p = [rng.randint(0, kk // 2) for kk in k]
    d = [rng.choice([1, 1, 2]) for _ in range(sp)]
    shape = [rng.randint(1, 3), rng.randint(1, 4)] + [rng.randint(3, 11 if sp == 3 else 40) for _ in range(sp)]
    try:
        pool.append(pool_case(sp, randn(*shape), k, s, p, d, rng.random() < 0.5, rng.random() < 0.5))
    except RuntimeError:
        pass  # output would be empty: torch refuses, so do we (tested in C)
save_cases("ops_pool.safetensors", pool)

# adaptive / global average: p = output spatial size
adaptive = []
for sp, shape, out in [(2, (2, 3, 7, 7), (1, 1)), (2, (1, 5, 13, 10), (4, 3)), (2, (1, 2, 5, 6), (7, 9)),
                       (2, (2, 64, 7, 7), (1, 1)), (3, (1, 2, 6, 7, 9), (1, 1, 1)), (3, (1, 3, 5, 9, 4), (2, 4, 3))]:
    x = randn(*shape)
    y = F.adaptive_avg_pool2d(x, out) if sp == 2 else F.adaptive_avg_pool3d(x, out)
    adaptive.append({"x": x, "p": [float(v) for v in out], "y": y})
save_cases("ops_adaptive.safetensors", adaptive)

# ---- resize: p = [linear, align_corners, has_scale, scale...]; output size from "y"
resize = []
for shape, mode, ac, size, scale in [
        ((1, 2, 5, 7), "nearest", None, (10, 14), None), ((1, 2, 5, 7), "nearest", None, (13, 6), None),
        ((2, 3, 9, 8), "nearest", None, None, (1.5, 2.5)), ((1, 2, 9, 8), "nearest", None, None, (0.75, 0.5)),
        ((1, 2, 5, 7), "bilinear", False, (11, 20), None), ((1, 2, 5, 7), "bilinear", True, (11, 20), None),
        ((1, 3, 17, 13), "bilinear", False, (6, 5), None), ((1, 3, 17, 13), "bilinear", True, (6, 5), None),
        ((2, 2, 6, 9), "bilinear", False, None, (1.75, 2.0)), ((2, 2, 6, 9), "bilinear", True, None, (1.75, 2.0)),
        ((1, 2, 8, 8), "bilinear", False, None, (0.625, 3.0)), ((1, 1, 4, 300), "bilinear", False, (1, 517), None),
        ((1, 2, 3, 5), "bilinear", False, (2, 1100), None), ((1, 2, 2, 7), "nearest", None, (3, 2100), None),
        ((1, 2, 1, 1), "bilinear", True, (3, 4), None), ((1, 2, 5, 5), "bilinear", False, (5, 5), None),
        ((1, 2, 3, 4, 5), "nearest", None, (6, 7, 9), None), ((1, 2, 3, 4, 5), "nearest", None, None, (2.0, 1.5, 0.75)),
        ((1, 2, 3, 4, 5), "trilinear", False, (7, 8, 11), None), ((1, 2, 3, 4, 5), "trilinear", True, (7, 8, 11), None),
        ((1, 2, 6, 5, 7), "trilinear", False, None, (1.5, 2.0, 0.5)), ((1, 2, 6, 5, 7), "trilinear", True, None, (1.5, 2.0, 0.5))]:
    x = randn(*shape)
    kw = {"mode": mode}
    if ac is not None:
        kw["align_corners"] = ac
    y = F.interpolate(x, size=size, **kw) if size else F.interpolate(x, scale_factor=scale, **kw)
    sc = list(scale) if scale else [0.0] * (len(shape) - 2)
    resize.append({"x": x, "y": y, "p": [float(mode != "nearest"), float(bool(ac)), float(scale is not None)] + sc})
save_cases("ops_resize.safetensors", resize)

# ---- activations
act = []
for outer, dim, inner, amp in [(3, 1000, 1, 10.0), (2, 5, 37, 30.0), (1, 1, 7, 1.0), (4, 3, 1, 100.0), (1, 17, 67, 1.0)]:
    x = randn(outer, dim, inner, scale=amp)
    act.append({"x": x, "p": [float(outer), float(dim), float(inner)],
                "softmax": torch.softmax(x, 1), "log_softmax": torch.log_softmax(x, 1)})
save_cases("ops_softmax.safetensors", act)
x = randn(2, 5, 3, 7)
x[0, 0, 0, :3] = 0.0
slope_c, slope_1 = randn(5, scale=0.3), torch.tensor([0.25])
mi_ref.save("ops_act.safetensors", {"x": x, "relu": torch.relu(x), "sigmoid": torch.sigmoid(x * 8),
                                    "x8": x * 8, "slope_c": slope_c, "slope_1": slope_1,
                                    "prelu_c": F.prelu(x, slope_c), "prelu_1": F.prelu(x, slope_1)})

# ---- linear and matmul: p = [n, in, out, has_bias] / [M, K, N]
lin = []
for n, i, o, bias in [(1, 2048, 1000, True), (16, 2048, 130, True), (3, 67, 17, False), (5, 15, 3, True),
                      (7, 1, 5, True), (4, 8, 16, False), (2, 17, 1, True)]:
    x, w, b = randn(n, i), randn(o, i, scale=i ** -0.5), randn(o)
    c = {"x": x, "w": w, "p": [float(n), float(i), float(o), float(bias)],
         "y": F.linear(x, w, b if bias else None)}
    if bias:
        c["b"] = b
    lin.append(c)
save_cases("ops_linear.safetensors", lin)
mm = []
for m, k, n in [(5, 7, 67), (33, 17, 9), (1, 1, 1), (64, 64, 40), (3, 100, 35)]:
    a, b = randn(m, k), randn(k, n)
    mm.append({"a": a, "b": b, "p": [float(m), float(k), float(n)], "c": a @ b})
save_cases("ops_matmul.safetensors", mm)

# ---- elementwise and concat
a, b = randn(2, 3, 5, 7), randn(2, 3, 5, 7)
cb, cs = randn(3), randn(3)
cats = {}
parts = [randn(2, 3, 4, 5), randn(2, 3, 4, 5), randn(2, 3, 4, 5)]
for dim in range(4):
    ps = [p.narrow(dim, 0, p.shape[dim] - j) if p.shape[dim] - j > 0 else p for j, p in enumerate(parts)]
    for j, p in enumerate(ps):
        cats["cat%d.%d" % (dim, j)] = p.contiguous()
    cats["cat%d" % dim] = torch.cat(ps, dim)
v1, v2 = randn(1, 2, 3, 4, 5), randn(1, 5, 3, 4, 5)
cats.update({"cat5d.0": v1, "cat5d.1": v2, "cat5d": torch.cat([v1, v2], 1)})
mi_ref.save("ops_elementwise.safetensors", dict(
    a=a, b=b, add=a + b, mul=a * b, add_relu=torch.relu(a + b), cb=cb, cs=cs,
    add_channel=a + cb.view(1, 3, 1, 1), mul_channel=a * cs.view(1, 3, 1, 1), **cats))

# ---- graph convolution: Kipf normalization and Y = Â (X Wᵀ) + b, with plain torch ops; "a_hat_nl"
# is the normalization without self loops (D from A alone; the isolated node gets a zero row)
graph = []
for n, fi, fo, weighted, bias in [(23, 13, 7, False, True), (64, 32, 48, True, False), (1, 3, 2, False, True)]:
    adj = (torch.rand(n, n) < 0.15).float()
    adj = torch.triu(adj, 1)
    adj = adj + adj.t()
    if weighted:
        adj = adj * torch.rand(n, n).add(0.5)
        adj = (adj + adj.t()) / 2
    if n > 2:
        adj[2, :] = 0
        adj[:, 2] = 0  # an isolated node: degree 1 from the self loop only
    at = adj + torch.eye(n)
    dinv = at.sum(1).pow(-0.5)
    dinv[torch.isinf(dinv)] = 0
    a_hat = dinv.view(-1, 1) * at * dinv.view(1, -1)
    x, w, b = randn(n, fi), randn(fo, fi, scale=fi ** -0.5), randn(fo)
    y = a_hat @ (x @ w.t())
    if bias:
        y = y + b
    deg_nl = adj.double().sum(1).float()
    dinv_nl = torch.where(deg_nl > 0, deg_nl.pow(-0.5), torch.zeros_like(deg_nl))
    a_hat_nl = dinv_nl.view(-1, 1) * adj * dinv_nl.view(1, -1)
    c = {"a": adj, "a_hat": a_hat, "a_hat_nl": a_hat_nl, "x": x, "w": w, "y": y, "p": [float(n), float(fi), float(fo), float(bias)]}
    if bias:
        c["b"] = b
    graph.append(c)
save_cases("ops_graph.safetensors", graph)


# ---- activations at extreme ranges: every activation on one tensor per case, so the C test can
# run the reference and each SIMD path over it. NaN and Inf outputs are whatever torch gives.
# Last in the file, so its random draws leave the other fixtures' values as they were.
FMAX = torch.finfo(torch.float32).max
nan, inf = float("nan"), float("inf")


def extreme_rows(kind, rows, dim):
    x = torch.randn(rows, dim)
    if kind == "denormal":       # 1e-30 and below FLT_MIN (true subnormals), both signs
        return x * torch.tensor([1e-30, 1e-38, 1e-40, 1e-45])[torch.randint(0, 4, (rows, dim))]
    if kind in ("1e4", "1e5", "1e6"):    # logits bunched near a large offset: outputs near -log(dim)
        c = float(kind)
        return c * torch.sign(torch.randn(rows, 1)) + x * 3
    if kind in ("spread1e4", "spread1e6"):   # spread across the range: one logit dominates
        return x * (1e4 if kind == "spread1e4" else 1e6)
    if kind == "fmax":
        x = x * 1e37
        x[:, 0], x[:, 1] = FMAX, -FMAX
        x[1::2, 2] = -FMAX
        x[::3, 3] = FMAX * 0.75
        return x
    if kind == "dominant":       # one logit above the rest by 1e4
        x[torch.arange(rows), torch.randint(0, dim, (rows,))] += 1e4
        return x
    if kind == "equal":
        return torch.tensor([0.0, 7.0, -1e6, 1e6, FMAX, -FMAX, 1e-40, 88.5])[torch.arange(rows) % 8].view(-1, 1).expand(rows, dim).clone()
    if kind == "special":        # one non-finite pattern per row
        pats = [[nan], [inf], [-inf], [inf, inf], [-inf] * dim, [inf, -inf], [nan, inf], [-inf, 5.0],
                [inf] * dim, [-inf, -inf]]
        for r in range(rows):
            pat = pats[r % len(pats)]
            x[r, :len(pat)] = torch.tensor(pat)
            x[r] = x[r][torch.randperm(dim)]
        return x
    raise ValueError(kind)


extreme = []
for kind in ["denormal", "1e4", "1e5", "1e6", "spread1e4", "spread1e6", "fmax", "dominant", "equal", "special"]:
    # the same kind twice: logits in rows (inner 1, the row kernel) and over channels (the column kernel)
    for outer, dim, inner in [(10, 37, 1), (2, 10, 19)]:
        if inner == 1:
            x = extreme_rows(kind, outer, dim).view(outer, dim, 1)
        else:   # each (outer, inner) column is one row of the pattern
            x = extreme_rows(kind, outer * inner, dim).view(outer, inner, dim).transpose(1, 2).contiguous()
        slope = torch.randn(dim) * 0.3
        slope[0], slope[1] = 0.0, 2.0     # 0 * -inf is NaN in torch; 2 * -FLT_MAX overflows
        extreme.append({"x": x, "p": [float(outer), float(dim), float(inner)], "slope": slope,
                        "softmax": torch.softmax(x, 1), "log_softmax": torch.log_softmax(x, 1),
                        "sigmoid": torch.sigmoid(x), "relu": torch.relu(x), "prelu": F.prelu(x, slope),
                        "leaky": F.leaky_relu(x, 0.01)})
save_cases("ops_act_extreme.safetensors", extreme)
