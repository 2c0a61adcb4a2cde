"""tests/ref_layers.py - references for tests/test_layers.c: the shared loaders of nn/layers.c
read torch modules by their state_dict names and run them, one layer at a time.

A small module with one of each kind (Conv2d with bias and groups, Conv2d + BatchNorm2d,
Conv3d + BatchNorm3d, ConvTranspose2d, Linear with and without bias, PReLU per channel and shared),
random weights and BN statistics (seeded); the blob is written by the independent writer."""
import os

import torch

import mi_ref

d = mi_ref.out_dir()
torch.manual_seed(3)
nn = torch.nn
m = nn.Module()
m.conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=True)
m.cb = nn.Conv2d(4, 8, 3, padding=1, bias=False)
m.bn = nn.BatchNorm2d(8)
m.c3 = nn.Conv3d(2, 4, 3, padding=1, bias=False)
m.bn3 = nn.BatchNorm3d(4)
m.up = nn.ConvTranspose2d(4, 3, 2, stride=2, bias=True)
m.fc = nn.Linear(24, 5)
m.proj = nn.Linear(24, 7, bias=False)
m.act = nn.PReLU(4, init=0.1)
m.act1 = nn.PReLU()
mi_ref.export.randomize_batchnorm(m, torch.Generator().manual_seed(4))
with torch.no_grad():
    m.act.weight.copy_(torch.randn(4) * 0.3)
m.eval()
g = torch.Generator().manual_seed(5)
x = torch.randn(2, 4, 9, 7, generator=g)
x3 = torch.randn(1, 2, 5, 6, 4, generator=g)
v = torch.randn(3, 24, generator=g)
acts = {"x": x, "x3": x3, "v": v,
        "conv": m.conv(x), "cb": m.bn(m.cb(x)), "c3": m.bn3(m.c3(x3)), "up": m.up(x),
        "fc": m.fc(v), "proj": m.proj(v), "act": m.act(x), "act1": m.act1(x)}
mi_ref.write_independent(os.path.join(d, "layers.safetensors"), m.state_dict(),
                         {"arch": "layers-test"})
mi_ref.save("layers_ref.safetensors", acts)
