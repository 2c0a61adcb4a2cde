"""tests/mi_ref.py - shared by the PyTorch reference scripts tests/ref_*.py: deterministic
seeds and fixture writing through tools/export.py's safetensors writer (read back by our loader)."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import export  # noqa: E402

torch.set_grad_enabled(False)
torch.use_deterministic_algorithms(True)


def out_dir():
    d = sys.argv[1] if len(sys.argv) > 1 else "build/fixtures"
    os.makedirs(d, exist_ok=True)
    return d


def save(name, tensors, metadata=None):
    """tensors: name -> tensor; floats are stored as F32."""
    t = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    export.write_safetensors(os.path.join(out_dir(), name), t, metadata)
