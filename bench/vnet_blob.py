"""bench/vnet_blob.py OUT - a random-weight V-Net blob for the benchmark: tools/vnet_ref.py's
DEFAULTS (vnet2d, RGB, width 16, enc_convs [1, 2, 3, 3, 3], dec_convs [3, 3, 2, 1], 512 x 512
tiles), seeded, PReLU slopes drawn per channel, written by tools/export.py's writer."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import export  # noqa: E402
import vnet_ref  # noqa: E402

torch.manual_seed(0)
meta = vnet_ref.metadata(vnet_ref.config({}))
meta["model_version"] = "bench-1"
m = vnet_ref.build(meta).eval()
with torch.no_grad():
    g = torch.Generator().manual_seed(1)
    for name, p in m.named_parameters():
        if "act" in name:
            p.copy_(torch.rand(p.shape, generator=g) * 0.5)
export.write_safetensors(sys.argv[1], m.state_dict(), meta)
