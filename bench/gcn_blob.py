"""bench/gcn_blob.py OUT - a random-weight GCN blob for the benchmark: tools/gcn_ref.py's DEFAULTS
(64 node features, graph-conv layers of 64 and 32, 4 classes, self loops, mean readout), torch's
default initialisation under seed 0, written by tools/export.py's writer."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import export  # noqa: E402
import gcn_ref  # noqa: E402

torch.manual_seed(0)
meta = gcn_ref.metadata(gcn_ref.config({}))
meta["model_version"] = "bench-1"
export.write_safetensors(sys.argv[1], gcn_ref.build(meta).state_dict(), meta)
