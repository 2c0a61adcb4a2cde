"""tests/ref_weights.py - fixtures for tests/test_weights.c: a blob from tools/export.py, and the
same kind of file produced by an independent, hand-written safetensors writer that follows the
spec the way the `safetensors` library does (tensors ordered by dtype alignment then name,
header padded with spaces to 8 bytes, I64 scalars such as BatchNorm's num_batches_tracked)."""
import json
import os
import struct

import torch

import mi_ref

d = mi_ref.out_dir()
g = torch.Generator().manual_seed(7)
a = torch.randn(3, 5, generator=g)
b = torch.arange(7, dtype=torch.float32)
mi_ref.export.write_safetensors(os.path.join(d, "weights_basic.safetensors"),
                                {"a": a, "b": b, "n": torch.tensor(3, dtype=torch.int64)},
                                {"arch": "test", "labels": json.dumps(["x", "y", "z"]),
                                 "mean": "[0.5, 0.25, 0.125]", "num_classes": "3"})


def independent_writer(path, tensors, metadata):
    """Spelled out from the spec, deliberately not sharing code with tools/export.py."""
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header, data = {"__metadata__": metadata}, b""
    for k in order:
        raw = tensors[k].contiguous().numpy().tobytes()
        header[k] = {"dtype": {torch.float32: "F32", torch.int64: "I64"}[tensors[k].dtype],
                     "shape": list(tensors[k].shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()  # default separators: spaces, like the library
    h += b" " * (-(8 + len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


independent_writer(os.path.join(d, "weights_independent.safetensors"),
                   {"layer.weight": a, "layer.bias": b, "bn.num_batches_tracked": torch.tensor(5)},
                   {"format": "pt"})
# reference values for the C test
mi_ref.save("weights_expect.safetensors", {"a": a, "b": b})
