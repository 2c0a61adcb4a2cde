"""bench/torch_rcnn_latency.py BLOB THREADS ITERS H W [INPUT.f32] - torchvision's FasterRCNN
latency (eval, no_grad, batch 1, one H x W image) for a medinfer detector blob: the model is built
from the blob's metadata by tools/rcnn_ref.py and loaded with the blob's own weights, so both
engines run the same network; INPUT.f32 (little-endian float32, the image) is the image the other
engines are timed on (a detector's work depends on it), else uniform random in [0, 1). Prints one
JSON line like torch_latency.py's."""
import json
import os
import struct
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import rcnn_ref  # noqa: E402
from peak_rss import peak_rss_mb  # noqa: E402

DT = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def read_blob(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    meta = head.pop("__metadata__", {})
    sd = {k: torch.from_numpy(np.frombuffer(raw, DT[v["dtype"]], offset=8 + n + v["data_offsets"][0],
                                            count=int(np.prod(v["shape"]))).reshape(v["shape"]).copy()).float()
          if v["dtype"] != "I64" else torch.tensor(0) for k, v in head.items()}
    return sd, meta


blob, threads, iters, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
sd, meta = read_blob(blob)
m = rcnn_ref.build(meta).eval()
m.load_state_dict(sd)
shape = (1, int(meta.get("input_channels", 3)), h, w)
x = (torch.from_numpy(np.fromfile(sys.argv[6], "<f4").reshape(shape)) if len(sys.argv) > 6 else
     torch.rand(*shape))
with torch.no_grad():
    for _ in range(3):
        m(list(x))
    t = []
    for _ in range(iters):
        t0 = time.perf_counter()
        m(list(x))
        t.append((time.perf_counter() - t0) * 1e3)
t.sort()
print(json.dumps({"arch": "fasterrcnn_c4", "threads": threads, "mode": "eager", "iters": iters, "batch": 1,
                  "median_ms": t[len(t) // 2], "p90_ms": t[min(len(t) - 1, len(t) * 9 // 10)], "min_ms": t[0],
                  "peak_rss_mb": peak_rss_mb(), "torch": torch.__version__}))
