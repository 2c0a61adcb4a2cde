"""tests/ref_conv.py - fixtures for tests/test_conv.c: convolutions and transposed convolutions
computed by torch.nn.functional.conv2d / conv3d / conv_transpose2d / conv_transpose3d in float64
(so the C test measures our float32 error, not torch's), with the fused epilogue
y = relu(conv(x) + bias + residual) where a case asks for it.

One file, conv_cases.safetensors: for case i the tensors ci.x, ci.w, ci.b (when it has a bias),
ci.res (when it has a residual), ci.y, and ci.p, the parameters as floats (exact small integers):
  [kind (0 conv, 1 transposed), sp, cin, cout, groups, k0, k1, k2, s0, s1, s2, p0, p1, p2,
   d0, d1, d2, op0, op1, op2, has_bias, has_res, relu, N, D, H, W]
Spatial parameters are D, H, W; a 2-D case has index 0 = (k 1, s 1, p 0, d 1, op 0) and D = 1.
Hand-picked cases cover odd sizes, padding, stride 2 and 3, groups (depthwise too, and wide
depthwise rows at the end), dilation,
3-D, output_padding, a ResNet stem, K longer than one K block; seeded random ones cover the rest."""
import random

import torch
import torch.nn.functional as F

import mi_ref

NPARAM = 27


def case(kind, sp, cin, cout, groups, k, s, p, d, op, bias, res, relu, n, size):
    """k, s, p, d, op: (D, H, W) triples; size: (D, H, W) of the input."""
    return dict(kind=kind, sp=sp, cin=cin, cout=cout, groups=groups, k=k, s=s, p=p, d=d, op=op,
                bias=bias, res=res, relu=relu, n=n, size=size)


def c2(cin, cout, k, s, p, hw, groups=1, d=1, bias=True, res=False, relu=True, n=1):
    t = lambda v: (1,) + (tuple(v) if isinstance(v, (tuple, list)) else (v, v))
    return case(0, 2, cin, cout, groups, t(k), t(s), (0,) + t(p)[1:], t(d), (0, 0, 0), bias, res, relu,
                n, t(hw))


def c3(cin, cout, k, s, p, dhw, groups=1, d=1, bias=True, res=False, relu=True, n=1):
    t = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)
    return case(0, 3, cin, cout, groups, t(k), t(s), t(p), t(d), (0, 0, 0), bias, res, relu, n, t(dhw))


def t2(cin, cout, k, s, p, op, hw, groups=1, d=1, bias=True, res=False, relu=False, n=1):
    c = c2(cin, cout, k, s, p, hw, groups, d, bias, res, relu, n)
    c.update(kind=1, op=(0, op, op))
    return c


def t3(cin, cout, k, s, p, op, dhw, groups=1, d=1, bias=True, res=False, relu=False, n=1):
    c = c3(cin, cout, k, s, p, dhw, groups, d, bias, res, relu, n)
    c.update(kind=1, op=(op, op, op))
    return c


CASES = [
    c2(16, 20, 3, 1, 1, (9, 11), res=True, n=2),       # odd sizes, batch 2, residual + relu
    c2(3, 64, 7, 2, 3, (33, 31)),                      # ResNet stem shape, smaller image
    c2(32, 33, 3, 2, 1, (15, 17), res=True),           # stride 2, Cout tail
    c2(32, 48, 1, 2, 0, (15, 17), bias=False, relu=False),  # downsample 1x1 stride 2
    c2(64, 64, 1, 1, 0, (7, 7), res=True),             # 1x1 on 7x7 (49 pixels: panel tail)
    c2(8, 12, 3, 1, 2, (5, 6), groups=4),              # grouped, padding 2
    c2(12, 12, 3, 1, 1, (10, 9), groups=12),           # depthwise
    c2(6, 12, 5, 2, 2, (11, 8), groups=6),             # depthwise, channel multiplier 2
    c2(10, 15, (2, 3), 2, (2, 1), (13, 14), d=(2, 3)), # dilation, non-square kernel and padding
    c2(300, 17, 3, 1, 1, (4, 5), res=True),            # K = 2700: several K blocks
    c2(5, 7, 1, 1, 0, (1, 1)),                         # one pixel
    c2(33, 29, 1, 1, 0, (3, 5), res=True),             # 15 pixels
    c2(7, 70, 3, 1, 1, (17, 17), relu=False),          # 289 pixels, M tail
    c2(40, 36, 3, 1, 0, (13, 10), res=True),           # 3x3 stride 1 unpadded: Winograd, odd rows
    c2(24, 20, 3, 1, 2, (7, 9), n=2),                  # 3x3 stride 1 padding 2: Winograd, batch 2
    c2(64, 96, 3, 1, 1, (14, 14), res=True),           # ResNet layer3-like: Winograd's 16 GEMMs
    c2(8, 24, 3, 1, 1, (17, 15), res=True),            # Winograd blocks that start inside a tile row
    c2(4, 9, 3, 3, 0, (10, 11)),                       # stride 3
    c3(6, 10, 3, 1, 1, (7, 5, 6), res=True),           # 3-D
    c3(6, 10, 2, 2, 0, (8, 6, 6)),                     # 3-D down-convolution (V-Net)
    c3(4, 8, 5, 1, 2, (6, 6, 6)),                      # 3-D 5x5x5 (V-Net)
    c3(4, 6, 3, 2, 1, (7, 6, 5), groups=2, d=(1, 2, 1)),  # 3-D grouped, dilated
    t2(16, 8, 2, 2, 0, 0, (5, 7), n=2),                # up-convolution k = s = 2
    t2(8, 6, 3, 2, 1, 1, (6, 5), res=True, relu=True), # output_padding, residual + relu
    t2(4, 6, 4, 3, 1, 2, (4, 5), groups=2),            # groups, stride 3, output_padding 2
    t2(6, 5, 3, 1, 1, 1, (6, 5), d=2),                 # dilation 2, output_padding < dilation
    t2(7, 9, 3, 1, 1, 0, (6, 5), res=True, relu=True), # stride 1
    t2(3, 4, 1, 3, 0, 2, (4, 4)),                      # phases without taps: bias only
    t2(6, 6, 3, 2, 1, 1, (5, 4), groups=6),            # depthwise transposed
    t2(64, 32, 2, 2, 0, 0, (17, 19), res=True, relu=True),
    t3(8, 4, 2, 2, 0, 0, (4, 3, 5)),                   # V-Net up-convolution
    t3(6, 5, 3, 2, 1, 1, (3, 4, 3), res=True, relu=True),
]


# Depthwise 2-D layers (ops/conv_dw.c) on rows wide enough for its vector blocks, with their
# tails, stride 1, 2 and 3, dilation, 5x5 and 7x7. After the random cases, so that adding them
# left the earlier cases' tensors as they were.
DEPTHWISE = [
    c2(16, 16, 3, 1, 1, (21, 40), groups=16, res=True),
    c2(8, 8, 3, 2, 1, (23, 37), groups=8, res=True, n=2),
    c2(6, 6, 5, 2, 2, (19, 35), groups=6, d=2),
    c2(4, 4, 5, 1, 4, (9, 33), groups=4, d=2, relu=False),
    c2(5, 5, 3, 1, 1, (1, 19), groups=5, bias=False),
    c2(3, 3, 7, 3, 3, (16, 50), groups=3, res=True),
]


def random_cases(rng, count):
    out = []
    while len(out) < count:
        kind, sp = rng.choice((0, 0, 1)), rng.choice((2, 2, 3))
        g = rng.choice((1, 1, 2, 3))
        cin, cout = g * rng.randint(1, 12), g * rng.randint(1, 12)
        if rng.random() < 0.15:
            cin = cout = g = rng.randint(2, 9)                       # depthwise
        k = [rng.choice((1, 2, 3, 5)) for _ in range(3)]
        s = [rng.choice((1, 1, 2, 3)) for _ in range(3)]
        d = [rng.choice((1, 1, 2)) for _ in range(3)]
        p = [rng.randint(0, (k[i] - 1) * d[i] // 2 + 1) for i in range(3)]
        op = [rng.randint(0, max(s[i], d[i]) - 1) for i in range(3)]
        size = [rng.randint(1, 9 if sp == 3 else 19) for _ in range(3)]
        if sp == 2:
            k[0], s[0], p[0], d[0], op[0], size[0] = 1, 1, 0, 1, 0, 1
        if kind == 0:
            op = [0, 0, 0]
            if any(size[i] + 2 * p[i] < d[i] * (k[i] - 1) + 1 for i in range(3)):
                continue
        elif any((size[i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1 < 1 for i in range(3)):
            continue
        out.append(case(kind, sp, cin, cout, g, tuple(k), tuple(s), tuple(p), tuple(d), tuple(op),
                        rng.random() < 0.8, rng.random() < 0.5, rng.random() < 0.5, rng.randint(1, 2),
                        tuple(size)))
    return out


def run(c, gen):
    sp, n = c["sp"], c["n"]
    dims = slice(3 - sp, 3)
    size = c["size"][dims]
    x = torch.randn((n, c["cin"]) + size, generator=gen, dtype=torch.float64)
    k = c["k"][dims]
    if c["kind"] == 0:
        w = torch.randn((c["cout"], c["cin"] // c["groups"]) + k, generator=gen, dtype=torch.float64)
    else:
        w = torch.randn((c["cin"], c["cout"] // c["groups"]) + k, generator=gen, dtype=torch.float64)
    # inputs rounded to float32 first: the C side sees exactly these values
    x, w = x.float().double(), w.float().double()
    b = torch.randn(c["cout"], generator=gen, dtype=torch.float64).float().double() if c["bias"] else None
    kw = dict(stride=c["s"][dims], padding=c["p"][dims], dilation=c["d"][dims], groups=c["groups"])
    if c["kind"] == 0:
        y = (F.conv2d if sp == 2 else F.conv3d)(x, w, b, **kw)
    else:
        y = (F.conv_transpose2d if sp == 2 else F.conv_transpose3d)(x, w, b, output_padding=c["op"][dims], **kw)
    t = {"x": x, "w": w}
    if b is not None:
        t["b"] = b
    if c["res"]:
        r = torch.randn(y.shape, generator=gen, dtype=torch.float64).float().double()
        y = y + r
        t["res"] = r
    if c["relu"]:
        y = torch.relu(y)
    t["y"] = y
    p = [c["kind"], sp, c["cin"], c["cout"], c["groups"], *c["k"], *c["s"], *c["p"], *c["d"], *c["op"],
         int(c["bias"]), int(c["res"]), int(c["relu"]), n, *c["size"]]
    assert len(p) == NPARAM
    t["p"] = torch.tensor(p, dtype=torch.float64)
    return t


def main():
    gen = torch.Generator().manual_seed(1234)
    cases = CASES + random_cases(random.Random(99), 40) + DEPTHWISE
    tensors = {}
    for i, c in enumerate(cases):
        for name, v in run(c, gen).items():
            tensors[f"c{i}.{name}"] = v
    mi_ref.save("conv_cases.safetensors", tensors, {"cases": str(len(cases)), "nparam": str(NPARAM)})


main()
