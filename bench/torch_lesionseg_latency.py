"""bench/torch_lesionseg_latency.py BLOB THREADS ITERS MODE - PyTorch's latency for a medinfer
depthnet or segnet blob: tools/lesionseg_ref.py's module built from the blob's metadata and loaded
with the blob's own weights, so both engines run the same network on the same (1, C, input_size,
input_size) input (depthnet: C = 3; segnet: in_channels + the depth map). MODE as in
torch_latency.py: eager | channels_last | jit_freeze | optimize_for_inference; the jit modes trace
the module (its forward takes an optional dict of stages, which scripting refuses; the trace
records the patch grid and the stitching loop as the fixed configuration runs them).
Prints one JSON line like torch_latency.py's."""
import json
import os
import sys
import time
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import export  # noqa: E402
import lesionseg_ref  # noqa: E402
from peak_rss import peak_rss_mb  # noqa: E402


def module_and_input(blob, batch=1):
    """The blob's module (eval) with the blob's weights, and an input uniform in [-0.5, 0.5), seed 0."""
    sd, meta = export.read_safetensors(blob)
    c = lesionseg_ref.config(meta)
    m = lesionseg_ref.build(meta).eval()
    m.load_state_dict(sd)
    ch = 3 if c["arch"] == "depthnet" else int(c["in_channels"]) + 1
    side = int(c["input_size"])
    x = torch.rand(batch, ch, side, side, generator=torch.Generator().manual_seed(0)) - 0.5
    return c, m, x


def main():
    blob, threads, iters, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(threads)
    c, m, x = module_and_input(blob)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
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
        for _ in range(5):
            m(x)
        t = []
        for _ in range(iters):
            t0 = time.perf_counter()
            m(x)
            t.append((time.perf_counter() - t0) * 1e3)
    t.sort()
    print(json.dumps({"arch": c["arch"], "threads": threads, "mode": mode, "iters": iters, "batch": 1,
                      "median_ms": t[len(t) // 2], "p90_ms": t[min(len(t) - 1, len(t) * 9 // 10)],
                      "min_ms": t[0], "peak_rss_mb": peak_rss_mb(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
