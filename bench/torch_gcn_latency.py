"""bench/torch_gcn_latency.py BLOB NODES THREADS ITERS MODE - PyTorch's latency for a medinfer GCN
blob: tools/gcn_ref.py's module built from the blob's metadata and loaded with the blob's own
weights, on a graph of NODES nodes like bench_gcn's (uniform features in [-0.5, 0.5), a symmetric
0/1 adjacency with an edge between about one pair in ten, none on the diagonal). MODE: eager |
optimize_for_inference (the traced module; scripting refuses forward's optional stage dict).
One forward is what medinfer's is: Â from the adjacency, the layers, the readout, the logits.
Prints one JSON line like torch_latency.py's. Warm-up: 5 runs."""
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import export  # noqa: E402
import gcn_ref  # noqa: E402
from peak_rss import peak_rss_mb  # noqa: E402


def graph(meta, n, seed=0):
    """The bench's graph for a blob's GCN: (features, adjacency), float32."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, int(gcn_ref.config(meta)["in_dim"]), generator=g) - 0.5
    a = (torch.rand(n, n, generator=g) < 0.1).float().triu(1)
    return x, a + a.t()


def main():
    blob, n, threads, iters, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    torch.set_num_threads(threads)
    sd, meta = export.read_safetensors(blob)
    m = gcn_ref.build(meta).eval()
    m.load_state_dict(sd)
    x, a = graph(meta, n)
    with torch.no_grad():
        if mode == "optimize_for_inference":
            m = torch.jit.optimize_for_inference(torch.jit.trace(m, (x, a)))
        elif mode != "eager":
            raise SystemExit(f"unknown mode {mode}")
        for _ in range(5):
            m(x, a)
        t = []
        for _ in range(iters):
            t0 = time.perf_counter()
            m(x, a)
            t.append((time.perf_counter() - t0) * 1e3)
    t.sort()
    print(json.dumps({"arch": "gcn", "nodes": n, "threads": threads, "mode": mode, "iters": iters,
                      "median_ms": t[len(t) // 2], "p90_ms": t[min(len(t) - 1, len(t) * 9 // 10)],
                      "min_ms": t[0], "peak_rss_mb": peak_rss_mb(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
