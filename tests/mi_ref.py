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


def write_independent(path, tensors, metadata):
    """A second safetensors writer, spelled out from the spec and sharing no code with
    tools/export.py, laid out the way the `safetensors` library lays files out: tensors ordered
    by dtype alignment then name, default json separators, header padded with spaces so the data
    starts 8-aligned. Used so that a bug shared by our writer and our reader cannot hide."""
    import json
    import struct
    spell = {torch.float32: "F32", torch.int64: "I64"}
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header, chunks, at = {"__metadata__": metadata}, [], 0
    for k in order:
        raw = tensors[k].detach().contiguous().numpy().tobytes()
        header[k] = {"dtype": spell[tensors[k].dtype], "shape": list(tensors[k].shape),
                     "data_offsets": [at, at + len(raw)]}
        chunks.append(raw)
        at += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-(8 + len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))
