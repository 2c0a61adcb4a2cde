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

# Half-precision and F64 storage (tools/export.py --dtype): every F16 and BF16 bit pattern, and
# doubles that round, overflow and underflow; expected F32 values computed by torch's .float().
bits = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
h16, b16 = bits.view(torch.float16), bits.view(torch.bfloat16)
f64 = torch.tensor([0.0, -0.0, 0.1, -1.0 / 3, 1e300, -1e300, 1e-320, 3.4028235677973366e38,
                    float("inf"), float("nan"), 2.0 ** -149, 2.0 ** -150 * 1.5], dtype=torch.float64)
mi_ref.export.write_safetensors(os.path.join(d, "weights_half.safetensors"),
                                {"h16": h16, "b16": b16, "f64": f64,
                                 "odd": torch.tensor([1.5, -2.0, 65504.0], dtype=torch.float16),
                                 "n": torch.tensor(7, dtype=torch.int64),
                                 "u": torch.tensor([1, 2, 3], dtype=torch.uint8)},
                                {"arch": "test"})
mi_ref.save("weights_half_expect.safetensors", {"h16": h16.float(), "b16": b16.float(), "f64": f64.float()})

# The exporter's command line with --dtype f16, on a real architecture
r18 = os.path.join(d, "weights_r18_f16.safetensors")
mi_ref.export.main(["--arch", "resnet18", "--random", "--seed", "3", "--num-classes", "3",
                    "--dtype", "f16", "--out", r18])
sd = mi_ref.export.random_model("resnet18", 3, 3).state_dict()
mi_ref.save("weights_r18_f16_expect.safetensors",
            {k: sd[k].half().float() for k in ("conv1.weight", "fc.weight", "fc.bias", "bn1.running_var")})


def unaligned_writer(path):
    """An unpadded header (data starts at an odd byte) and a U8 tensor of 3 bytes first: every
    later tensor sits at an offset that is not a multiple of its element size."""
    u, f, n = bytes([9, 8, 7]), torch.arange(5, dtype=torch.float32) / 4, torch.tensor([-5, 6])
    header = {"u": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
              "f": {"dtype": "F32", "shape": [5], "data_offsets": [3, 23]},
              "n": {"dtype": "I64", "shape": [2], "data_offsets": [23, 39]},
              "h": {"dtype": "F16", "shape": [2], "data_offsets": [39, 43]}}
    h = json.dumps(header).encode()
    h += b" " * ((-(8 + len(h)) % 8) + 1)
    data = u + f.numpy().tobytes() + n.numpy().tobytes() + torch.tensor([0.5, -3.0]).half().numpy().tobytes()
    with open(path, "wb") as fp:
        fp.write(struct.pack("<Q", len(h)) + h + data)


unaligned_writer(os.path.join(d, "weights_unaligned.safetensors"))
