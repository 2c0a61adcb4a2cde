#!/usr/bin/python3
"""tools/export.py - write a medinfer weight blob (safetensors + metadata) from PyTorch.

    # your own trained model (a state_dict saved with torch.save, or a whole pickled module)
    tools/export.py --arch resnet50 --state-dict model.pt --labels labels.json \
        --input-size 224 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 \
        --model-version 2026.11.1 --out model.safetensors
    # random weights of a supported arch (tests, benchmarks); BatchNorm statistics are
    # randomized too so that folding BN into the convolution is exercised
    tools/export.py --arch resnet18 --random --seed 0 --num-classes 26 --out r18.safetensors
    # half the size: floating tensors stored as F16 (or BF16); the C reader widens them to F32
    tools/export.py --arch resnet18 --random --dtype f16 --out r18_f16.safetensors
    # a model trained on whole images scaled to the input size, aspect not kept
    # (transforms.Resize((224, 224)) instead of Resize(256) + CenterCrop(224))
    tools/export.py --arch resnet18 --state-dict model.pt --resize-mode squash --out model.safetensors
    # the networks of depth-guided lesion segmentation (tools/lesionseg_ref.py), configured by
    # --input-size and --meta KEY=VALUE of that module's keys; the blob carries the whole
    # configuration, labels ["depth"] or ["background", "lesion"] and resize_mode squash by default
    tools/export.py --arch segnet --state-dict seg.pt --meta widths=[16,32,64,128] --out seg.safetensors

Preprocessing metadata: --resize-mode says how images were brought to --input-size in training,
and medinfer feeds them the same way. crop (what the engine assumes when the key is absent, and
what is written then: nothing) is torchvision Resize(resize) + CenterCrop(input_size), with
resize from --meta resize=N or round(input_size * 256 / 224); squash is Resize((input_size,
input_size)), which leaves no room for a resize of its own (--meta resize must then be left out or
equal input_size). Both with bilinear interpolation and antialias, then Normalize(--mean, --std).

The safetensors format is written by hand (8-byte little-endian header length, JSON header
padded with spaces to a multiple of 8, raw little-endian tensor bytes), so the `safetensors`
Python package is not needed. Tensor names are the module's own state_dict names. Tensor data
is laid out by element size, largest first (as the `safetensors` library does), so that every
tensor starts at a multiple of its element size.
"""
import argparse
import datetime
import json
import struct
import sys

import torch

DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
          torch.uint8: "U8", torch.bool: "BOOL"}
STORE_DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
FORMAT_VERSION = "1"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
RESIZE_MODES = ("crop", "squash")


def write_safetensors(path, tensors, metadata=None):
    """tensors: name -> torch.Tensor (any supported dtype); metadata: str -> str."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):  # header in name order, for people reading it
        if tensors[name].dtype not in DTYPES:
            raise ValueError(f"{name}: dtype {tensors[name].dtype} has no safetensors spelling")
        header[name] = None
    for name in sorted(tensors, key=lambda k: (-tensors[k].element_size(), k)):
        t = tensors[name].detach().cpu().contiguous()
        raw = t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise ValueError(f"metadata values must be strings: {bad}")
        header["__metadata__"] = dict(metadata)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)



def read_safetensors(path):
    """-> (name -> float32 tensor, metadata) of a blob write_safetensors wrote: F32 as stored,
    F16 and F64 converted to float32 (as the C reader widens F16); I64 (BatchNorm's
    num_batches_tracked, which load_state_dict expects back) kept as int64."""
    import numpy as np
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    meta = head.pop("__metadata__", {})
    dt = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64}
    sd = {k: torch.from_numpy(np.frombuffer(raw, dt[v["dtype"]], offset=8 + n + v["data_offsets"][0],
                                            count=int(np.prod(v["shape"]))).reshape(v["shape"])
                              .astype(np.int64 if v["dtype"] == "I64" else np.float32))
          for k, v in head.items()}
    return sd, meta

def cast_floats(tensors, dtype):
    """Floating tensors to the storage dtype ('f32', 'f16', 'bf16'); integer ones unchanged."""
    to, out = STORE_DTYPES[dtype], {}
    for k, v in tensors.items():
        out[k] = v.to(to) if v.is_floating_point() else v
        if v.is_floating_point() and (out[k].isinf() & v.isfinite()).any():  # F16 tops out at 65504
            raise ValueError(f"{k}: values beyond the range of {dtype}; export with --dtype f32")
    return out


def blob_metadata(arch, num_classes, labels=None, input_size=224, mean=None, std=None,
                  model_version="0.0.0", resize_mode=None, **extra):
    """resize_mode None writes no 'resize_mode' key (the engine reads that as crop)."""
    labels = labels or [f"class_{i}" for i in range(num_classes)]
    if len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels for {num_classes} classes")
    if resize_mode is not None and resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode '{resize_mode}' is not one of {', '.join(RESIZE_MODES)}")
    if resize_mode == "squash" and "resize" in extra and str(extra["resize"]) != str(input_size):
        raise ValueError(f"resize {extra['resize']} with resize_mode squash, which resizes straight to "
                         f"input_size {input_size} x {input_size}: leave resize out or make it {input_size}")
    meta = {"arch": arch, "format_version": FORMAT_VERSION, "model_version": model_version,
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "num_classes": str(num_classes), "labels": json.dumps(labels),
            "input_size": str(input_size),
            "mean": json.dumps(mean or IMAGENET_MEAN), "std": json.dumps(std or IMAGENET_STD)}
    if resize_mode is not None:
        meta["resize_mode"] = resize_mode
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return meta


def randomize_batchnorm(module, gen):
    """Non-trivial running statistics and affine parameters, so BN folding is really tested."""
    for m in module.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


LESIONSEG_ARCHS = {"depthnet": ["depth"], "segnet": ["background", "lesion"]}   # and their labels


def lesionseg_config(arch, meta):
    """tools/lesionseg_ref.py's full configuration of a depthnet / segnet from metadata strings."""
    import lesionseg_ref
    try:
        return lesionseg_ref.config({**meta, "arch": arch})
    except (ValueError, TypeError, KeyError) as e:
        raise SystemExit(f"export.py: {arch}: {e}")


def build(arch, num_classes, meta=None):
    """meta: the metadata strings a network is configured by (depthnet, segnet)."""
    import torchvision
    if arch in ("resnet18", "resnet50"):
        return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    if arch in LESIONSEG_ARCHS:
        import lesionseg_ref
        return lesionseg_ref.build(lesionseg_config(arch, meta or {}))
    raise SystemExit(f"export.py: unknown arch '{arch}' (supported: resnet18, resnet50, {', '.join(LESIONSEG_ARCHS)})")


def random_model(arch, num_classes, seed, meta=None):
    torch.manual_seed(seed)
    m = build(arch, num_classes, meta)
    with torch.no_grad():
        randomize_batchnorm(m, torch.Generator().manual_seed(seed + 1))
    return m.eval()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", required=True)
    ap.add_argument("--out", required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--state-dict", help="torch.save'd state_dict or module")
    src.add_argument("--random", action="store_true", help="random weights (tests, benchmarks)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-classes", type=int)
    ap.add_argument("--labels", help="JSON file: array of class names")
    ap.add_argument("--input-size", type=int,
                    help="side of the network's input (default 224; depthnet, segnet: their module's 192)")
    ap.add_argument("--mean", default=",".join(map(str, IMAGENET_MEAN)))
    ap.add_argument("--std", default=",".join(map(str, IMAGENET_STD)))
    ap.add_argument("--model-version", default="0.0.0")
    ap.add_argument("--resize-mode", choices=RESIZE_MODES,
                    help="how training brought images to --input-size: crop = Resize(resize) + "
                         "CenterCrop(input_size) (the default; no key is written unless given), "
                         "squash = Resize((input_size, input_size)), aspect not kept")
    ap.add_argument("--dtype", choices=sorted(STORE_DTYPES), default="f32",
                    help="storage type of floating tensors (f16/bf16: half the size; read as F32)")
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                    help="extra metadata (repeatable), e.g. site groups for a pipeline")
    a = ap.parse_args(argv)

    labels = json.load(open(a.labels)) if a.labels else None
    extra = dict(kv.split("=", 1) for kv in a.meta)
    if "resize_mode" in extra:
        raise SystemExit("export.py: give the resize mode as --resize-mode, not --meta resize_mode=")
    input_size, resize_mode = a.input_size or 224, a.resize_mode
    if a.arch in LESIONSEG_ARCHS:
        # the module's whole configuration goes into the blob, which the engine builds it from;
        # its input is the image squashed to input_size (lesionseg_ref's docstring)
        if a.input_size:
            extra["input_size"] = str(a.input_size)
        extra = {k: v for k, v in extra.items() if k not in ("arch", "num_classes", "labels")}
        c = lesionseg_config(a.arch, extra)
        import lesionseg_ref
        extra.update(lesionseg_ref.metadata(c))
        del extra["arch"]
        input_size = int(extra.pop("input_size"))
        labels = labels or LESIONSEG_ARCHS[a.arch]
        resize_mode = resize_mode or "squash"
    if a.random:
        n = a.num_classes or (len(labels) if labels else 1000)
        state = random_model(a.arch, n, a.seed, extra).state_dict()
    else:
        obj = torch.load(a.state_dict, map_location="cpu")
        state = obj.state_dict() if isinstance(obj, torch.nn.Module) else obj
        fc = [k for k in state if k.endswith("fc.weight")]
        n = a.num_classes or (state[fc[0]].shape[0] if fc else len(labels or []))
        build(a.arch, n, extra).load_state_dict(state)  # refuses names or shapes that do not match the arch
    try:
        meta = blob_metadata(a.arch, n, labels, input_size, [float(x) for x in a.mean.split(",")],
                             [float(x) for x in a.std.split(",")], a.model_version, resize_mode, **extra)
    except ValueError as e:
        raise SystemExit(f"export.py: {e}")
    write_safetensors(a.out, cast_floats(state, a.dtype), meta)
    print(f"export.py: wrote {a.out}: {a.arch}, {len(state)} tensors, {n} classes, {a.dtype}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
