"""bench/torch_vnet_latency.py BLOB THREADS ITERS BATCH MODE - PyTorch's latency for a medinfer
V-Net blob: tools/vnet_ref.py's module built from the blob's metadata and loaded with the blob's
own weights, so both engines run the same network on the same (BATCH, C, input_size, input_size)
input. MODE as in torch_latency.py: eager | channels_last | jit_freeze | optimize_for_inference;
the jit modes trace the module (its forward takes an optional dict, which scripting refuses).
Prints one JSON line like torch_latency.py's, plus tiles_per_s."""
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import export  # noqa: E402
import vnet_ref  # noqa: E402
from peak_rss import peak_rss_mb  # noqa: E402


blob, threads, iters, batch, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.set_num_threads(threads)
sd, meta = export.read_safetensors(blob)
c = vnet_ref.config(meta)
m = vnet_ref.build(meta).eval()
m.load_state_dict(sd)
side = int(c["input_size"])
shape = (batch, int(c["in_channels"])) + (side,) * (2 if c["arch"] == "vnet2d" else 3)
x = torch.rand(*shape, generator=torch.Generator().manual_seed(0)) - 0.5
with torch.no_grad():
    if mode == "channels_last":
        m = m.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    elif mode == "jit_freeze":
        m = torch.jit.freeze(torch.jit.trace(m, x))
    elif mode == "optimize_for_inference":
        m = torch.jit.optimize_for_inference(torch.jit.trace(m, x))
    elif mode != "eager":
        raise SystemExit(f"unknown mode {mode}")
ctx = torch.no_grad if mode.startswith(("jit", "optimize")) else torch.inference_mode
with ctx():
    for _ in range(1):   # one warm-up: a batch of 512 x 512 tiles takes seconds
        m(x)
    t = []
    for _ in range(iters):
        t0 = time.perf_counter()
        m(x)
        t.append((time.perf_counter() - t0) * 1e3)
t.sort()
print(json.dumps({"arch": c["arch"], "threads": threads, "mode": mode, "iters": iters, "batch": batch,
                  "median_ms": t[len(t) // 2], "p90_ms": t[min(len(t) - 1, len(t) * 9 // 10)],
                  "min_ms": t[0], "tiles_per_s": batch / (t[len(t) // 2] / 1e3),
                  "peak_rss_mb": peak_rss_mb(), "torch": torch.__version__}))
