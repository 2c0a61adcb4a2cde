"""bench/torch_latency.py ARCH THREADS ITERS MODE [BATCH] - PyTorch's latency for one
configuration, in its own process so that peak RSS belongs to it. Prints one JSON line.

MODE: eager | channels_last | jit_freeze | optimize_for_inference (torch.jit.freeze + the oneDNN
rewrites), all under eval() and torch.inference_mode()/no_grad, batch 1 (or BATCH), 224x224,
random weights."""
import json
import sys
import time

import torch
import torchvision
from peak_rss import peak_rss_mb


arch, threads, iters, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
batch = int(sys.argv[5]) if len(sys.argv) > 5 else 1
torch.set_num_threads(threads)
m = getattr(torchvision.models, arch)(weights=None).eval()
x = torch.randn(batch, 3, 224, 224)
with torch.no_grad():
    if mode == "channels_last":
        m = m.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    elif mode == "jit_freeze":
        m = torch.jit.freeze(torch.jit.script(m))
    elif mode == "optimize_for_inference":
        m = torch.jit.optimize_for_inference(torch.jit.script(m))
    elif mode != "eager":
        raise SystemExit(f"unknown mode {mode}")
ctx = torch.no_grad if mode.startswith(("jit", "optimize")) else torch.inference_mode
with ctx():
    for _ in range(5):
        m(x)
    t = []
    for _ in range(iters):
        t0 = time.perf_counter()
        m(x)
        t.append((time.perf_counter() - t0) * 1e3)
t.sort()
print(json.dumps({"arch": arch, "threads": threads, "mode": mode, "iters": iters, "batch": batch,
                  "median_ms": t[len(t) // 2], "p90_ms": t[min(len(t) - 1, len(t) * 9 // 10)],
                  "min_ms": t[0], "peak_rss_mb": peak_rss_mb(),
                  "torch": torch.__version__}))
