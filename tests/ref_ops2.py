"""tests/ref_ops2.py - PyTorch references for the ops of the depth-guided lesion segmentation
networks (ops/pad.c, leaky_relu/elu/tanh in ops/act.c, group_norm in ops/norm.c, mul_spatial and
argmax_channels in ops/elementwise.c), read by tests/test_ops2.c.

Case i of a file has tensors "<i>.x", "<i>.p" (parameters as floats, exactly representable) and
the expected outputs; metadata "cases" gives the count. Where torch's float32 kernel is itself
inexact or overflows (ELU near 0 computes exp(x) - 1; GroupNorm of values near 1e30 squares them
in float), the case also carries the float64 result ("y64") that the C test holds us to tightly."""
import math
import random

import torch
import torch.nn.functional as F

import mi_ref

rng = random.Random(4321)
torch.manual_seed(4321)
nan, inf = float("nan"), float("inf")
FMAX = torch.finfo(torch.float32).max
FMIN = torch.finfo(torch.float32).tiny


def save_cases(name, cases):
    t = {}
    for i, c in enumerate(cases):
        for k, v in c.items():
            t["%d.%s" % (i, k)] = v if torch.is_tensor(v) else torch.tensor(v, dtype=torch.float32)
    mi_ref.save(name, t, {"cases": str(len(cases))})


def specials(n):
    """n values: random, then the edge values every activation must get right at its place."""
    x = torch.randn(n) * 3
    edge = torch.tensor([nan, inf, -inf, 0.0, -0.0, FMAX, -FMAX, FMIN, -FMIN, 1e-40, -1e-40, 1e-7,
                         -1e-7, 1e-5, -1e-5, 0.3, -0.3, 0.625, -0.625, 9.0, -9.0, 9.1, -9.1, 20.0,
                         -20.0, 88.0, -88.0, 89.0, -89.0, 1e30, -1e30, -17.0, -104.0])
    k = min(n, len(edge))
    perm = torch.randperm(n)[:k]
    x[perm] = edge[:k]
    return x


# ---- pad: p = [mode (0 zero, 1 reflect, 2 replicate), left, right, top, bottom]
MODES = {0: "constant", 1: "reflect", 2: "replicate"}
pad = []
for shape, mode, p in [((2, 3, 5, 7), 0, (1, 1, 1, 1)), ((2, 3, 5, 7), 1, (1, 1, 1, 1)),
                       ((2, 3, 5, 7), 2, (1, 1, 1, 1)), ((1, 2, 5, 7), 1, (6, 5, 4, 3)),   # reflect: side - 1
                       ((1, 2, 5, 7), 2, (9, 0, 0, 11)), ((1, 2, 5, 7), 0, (0, 3, 2, 0)),
                       ((1, 1, 1, 1), 2, (3, 2, 1, 4)), ((1, 1, 1, 1), 0, (2, 2, 2, 2)),    # 1x1 planes
                       ((1, 1, 1, 1), 1, (0, 0, 0, 0)), ((1, 3, 1, 9), 1, (4, 8, 0, 0)),
                       ((1, 3, 9, 1), 2, (5, 5, 3, 3)), ((1, 4, 2, 2), 1, (1, 1, 1, 1)),
                       ((1, 2, 17, 33), 1, (2, 2, 2, 2)), ((1, 2, 17, 33), 2, (3, 3, 3, 3)),
                       ((2, 5, 11, 13), 0, (0, 0, 0, 0)), ((1, 2, 3, 67), 1, (2, 66, 2, 1))]:
    x = torch.randn(*shape)
    x.view(-1)[:3] = torch.tensor([nan, inf, -FMAX])[:min(3, x.numel())]   # copied as they are
    pad.append({"x": x, "p": [float(mode)] + [float(v) for v in p], "y": F.pad(x, p, MODES[mode])})
save_cases("ops2_pad.safetensors", pad)

# ---- leaky_relu, elu, tanh: p = [slope or alpha]; every length a tail of the 8-lane kernels
def elu64(x, a):
    """ELU in float64 with expm1, rounded once: torch's own ELU (float32 and float64 alike)
    computes exp(x) - 1, which gives 0 for |x| below 1e-16."""
    x = x.double()
    return torch.where(x > 0, x, a * torch.expm1(x)).float()


act = []
for n, a in [(1, 0.01), (7, 0.2), (8, 1.0), (9, 0.5), (15, 2.0), (17, 0.0), (67, -0.5), (1003, 0.1), (40, 1.0)]:
    x = specials(n)
    x64 = x.double()
    act.append({"x": x, "p": [a], "leaky": F.leaky_relu(x, a), "elu": F.elu(x, a),
                "elu64": elu64(x, a), "tanh": torch.tanh(x), "tanh64": torch.tanh(x64).float()})
# ELU and tanh across their ranges, dense near 0 where expm1 and tanh's small-argument branch matter
for scale in [1e-6, 1e-3, 0.3, 1.0, 4.0, 30.0]:
    x = torch.randn(4099) * scale
    act.append({"x": x, "p": [1.0], "leaky": F.leaky_relu(x, 1.0), "elu": F.elu(x), "elu64": elu64(x, 1.0),
                "tanh": torch.tanh(x), "tanh64": torch.tanh(x.double()).float()})
save_cases("ops2_act.safetensors", act)

# ---- group_norm: p = [N, C, G, inner, affine, eps, tolerance of torch float32]
gn = []
for N, C, G, H, W, affine, eps, kind in [
        (2, 8, 4, 5, 7, True, 1e-5, "randn"), (2, 6, 6, 1, 1, True, 1e-5, "randn"),   # instance norm, 1x1
        (1, 16, 1, 3, 3, False, 1e-5, "randn"), (2, 32, 8, 17, 19, True, 1e-5, "randn"),
        (2, 3, 3, 1, 1, False, 1e-5, "randn"), (1, 12, 3, 9, 11, True, 1e-6, "offset"),
        (1, 8, 2, 6, 5, True, 1e-3, "const"), (1, 8, 4, 4, 5, True, 1e-5, "big"),
        (1, 8, 4, 4, 5, True, 1e-5, "special"), (1, 64, 64, 7, 7, True, 1e-5, "randn"),
        (3, 10, 5, 1, 13, False, 1e-5, "randn"), (1, 4, 2, 67, 1, True, 1e-5, "tiny")]:
    x = torch.randn(N, C, H, W) * 2 + 0.5
    if kind == "offset":            # a mean far from 0 against the spread: E[x^2] - mean^2 would cancel
        x = 1e4 + torch.randn(N, C, H, W)
    if kind == "const":             # zero variance: y = beta exactly (torch: within its rounding)
        x = torch.full((N, C, H, W), 0.1)
    if kind == "big":               # squares overflow float32: torch float gives NaN, float64 does not
        x = torch.randn(N, C, H, W) * 1e30
    if kind == "tiny":
        x = torch.randn(N, C, H, W) * 1e-30
    if kind == "special":           # one NaN group, one Inf group, two finite groups
        x[0, 0, 1, 2] = nan
        x[0, 3, 0, 0] = inf
    gamma, beta = torch.randn(C), torch.randn(C)
    y = F.group_norm(x, G, gamma if affine else None, beta if affine else None, eps)
    y64 = F.group_norm(x.double(), G, gamma.double() if affine else None, beta.double() if affine else None, eps)
    # torch's float32 moments are off by a few ulp of the largest |x| of a group, which the
    # normalization scales by 1/sqrt(var + eps): its own error, the bound its float32 result is
    # held to (2e-5 and above; 1e4 +- 1 gets about 1e-2)
    xg = x.double().view(N, G, -1)
    lost = 4 * xg.abs().amax(2) * 2.0 ** -23 / (xg.var(2, unbiased=False) + eps).sqrt()
    lost = lost[torch.isfinite(lost)]
    gmax = gamma.abs().max().item() if affine else 1.0
    tol32 = 2e-5 + (lost.max().item() * gmax if lost.numel() else 0.0)
    c = {"x": x, "p": [float(N), float(C), float(G), float(H * W), float(affine), eps, tol32], "y": y,
         "y64": y64.float()}
    if affine:
        c.update(gamma=gamma, beta=beta)
    if G == C and H * W > 1:        # InstanceNorm2d is the same op (torch refuses a 1x1 plane)
        inorm = F.instance_norm(x, weight=gamma if affine else None, bias=beta if affine else None, eps=eps)
        c["inorm"] = inorm
    gn.append(c)
save_cases("ops2_group_norm.safetensors", gn)

# ---- mul_spatial: y = x * w.view(N, 1, H, W); argmax over dim 1 (as float: small integers)
ew = []
for shape in [(2, 3, 5, 7), (1, 1, 1, 1), (1, 64, 9, 11), (2, 5, 1, 17), (1, 7, 3, 67)]:
    N, C, H, W = shape
    x, w = torch.randn(*shape), torch.rand(N, 1, H, W)
    x.view(-1)[0] = inf
    w.view(-1)[0] = 0.0            # inf * 0 = NaN, as torch
    if w.numel() > 1:
        w.view(-1)[1] = nan
    q = torch.randint(-2, 3, shape).float()          # few levels: many ties, first index wins
    q.view(-1)[::11] = 0.0
    q.view(-1)[5::11] = -0.0                          # -0 ties with +0
    if C > 1:
        q[0, C - 1, 0, :] = nan                       # a NaN in the last channel wins
        q[0, 0, H - 1, :] = nan                       # a NaN in the first stays
        q[-1, :, 0, 0] = nan                          # all NaN: index 0
        q[0, 1 % C, H // 2, :] = inf
    ew.append({"x": x, "w": w.view(N, H, W), "y": x * w, "q": q, "argmax": torch.argmax(q, 1).float(),
               "argmax_x": torch.argmax(x, 1).float()})
save_cases("ops2_elementwise.safetensors", ew)
