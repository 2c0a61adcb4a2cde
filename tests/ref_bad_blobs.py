"""tests/ref_bad_blobs.py OUT - the bad-blob corpus: files that are not valid medinfer blobs, each
wrong in exactly one way, written into OUT/bad_blobs/ for tests/test_bad_blobs.c (C API: status +
message) and tests/test_bad_blobs.sh (CLI: non-zero exit naming the file, never a crash).

  bad_*.safetensors   the reader itself must refuse these (mi_weights_open, `medinfer inspect`)
  arch_*.safetensors  well-formed files with resnet18 metadata whose tensors do not fit the
                      network (missing, wrong shape, integer dtype): opening succeeds, loading the
                      network (mi_weights_get, `medinfer classify`) must fail
Also ok.safetensors / ok_resnet18.safetensors (the good files they were made from) and
ok.png (an image for `classify`)."""
import json
import os
import struct

import torch

import mi_ref

d = os.path.join(mi_ref.out_dir(), "bad_blobs")
os.makedirs(d, exist_ok=True)
for f in os.listdir(d):  # a renamed case must not linger
    os.remove(os.path.join(d, f))


def put(name, data):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def blob(header, data=b"", pad=True, hlen=None):
    """Raw safetensors bytes from a header (dict, or JSON text/bytes written as is)."""
    h = header if isinstance(header, bytes) else (
        header.encode() if isinstance(header, str) else json.dumps(header).encode())
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h) if hlen is None else hlen) + h + data


META = {"arch": "test", "num_classes": "3", "labels": json.dumps(["a", "b", "c"]),
        "input_size": "8", "mean": "[0.5, 0.5, 0.5]", "std": "[0.25, 0.25, 0.25]"}
A = torch.arange(6, dtype=torch.float32).reshape(2, 3)
B = torch.ones(4, dtype=torch.float32)
DATA = A.numpy().tobytes() + B.numpy().tobytes()                   # 24 + 16 bytes


def good(meta=None, **over):
    """The header of ok.safetensors with entries replaced (over) or metadata changed."""
    h = {"__metadata__": dict(META, **(meta or {})),
         "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
         "b": {"dtype": "F32", "shape": [4], "data_offsets": [24, 40]}}
    for k, v in over.items():
        if v is None:
            del h[k]
        else:
            h[k] = v
    return h


ok = blob(good(), DATA)
put("ok.safetensors", ok)
# resize_mode: squash with 'resize' left out or equal to input_size, and crop stated explicitly
put("ok_squash.safetensors", blob(good({"resize_mode": "squash"}), DATA))
put("ok_squash_resize.safetensors", blob(good({"resize_mode": "squash", "resize": "8"}), DATA))
put("ok_crop.safetensors", blob(good({"resize_mode": "crop"}), DATA))

# --- the container -------------------------------------------------------------------------------
put("bad_empty.safetensors", b"")
put("bad_tiny.safetensors", b"\x10\x00\x00")                       # < 8 bytes
put("bad_truncated_header.safetensors", ok[:30])                  # cut inside the JSON
put("bad_truncated_data.safetensors", ok[:-10])                   # cut inside tensor 'b'
put("bad_hlen_beyond_file.safetensors", blob(good(), DATA, hlen=len(ok) - 7))
put("bad_hlen_absurd.safetensors", struct.pack("<Q", 0xFFFFFFFFFFFFFFF0) + ok[8:])
put("bad_hlen_too_small.safetensors", struct.pack("<Q", 1) + ok[8:])
put("bad_json.safetensors", blob('{"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]', DATA))
put("bad_json_nul.safetensors", blob(b'{"a":\x00{}}', DATA))
put("bad_json_trailing.safetensors", blob(json.dumps(good()) + '{"x": 1}', DATA))
put("bad_json_deep.safetensors", blob("[" * 100000 + "]" * 100000))   # recursion, not a stack overflow
put("bad_json_not_object.safetensors", blob("[1, 2, 3]", DATA))
put("bad_json_string.safetensors", blob('"just a string"'))

# --- tensor entries ------------------------------------------------------------------------------
put("bad_dtype_unknown.safetensors",
    blob(good(a={"dtype": "F17", "shape": [2, 3], "data_offsets": [0, 24]}), DATA))
put("bad_dtype_not_string.safetensors",
    blob(good(a={"dtype": 32, "shape": [2, 3], "data_offsets": [0, 24]}), DATA))
put("bad_entry_not_object.safetensors", blob(good(a=[0, 24]), DATA))
put("bad_entry_no_offsets.safetensors", blob(good(a={"dtype": "F32", "shape": [2, 3]}), DATA))
put("bad_shape_negative.safetensors",
    blob(good(a={"dtype": "F32", "shape": [-2, -3], "data_offsets": [0, 24]}), DATA))
put("bad_shape_fraction.safetensors",
    blob(good(a={"dtype": "F32", "shape": [2.5, 3], "data_offsets": [0, 24]}), DATA))
put("bad_shape_too_many_dims.safetensors",
    blob(good(a={"dtype": "F32", "shape": [1, 1, 1, 2, 1, 3], "data_offsets": [0, 24]}), DATA))
put("bad_shape_overflow.safetensors",
    blob(good(a={"dtype": "F32", "shape": [2 ** 40, 2 ** 40, 2 ** 40], "data_offsets": [0, 24]}), DATA))
put("bad_nbytes.safetensors",                                      # shape says 24 bytes, offsets 20
    blob(good(a={"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]},
              b={"dtype": "F32", "shape": [5], "data_offsets": [20, 40]}), DATA))
put("bad_offsets_outside.safetensors",
    blob(good(b={"dtype": "F32", "shape": [4], "data_offsets": [1000, 1016]}), DATA))
put("bad_offsets_negative.safetensors",
    blob(good(a={"dtype": "F32", "shape": [2, 3], "data_offsets": [-8, 16]}), DATA))
put("bad_offsets_reversed.safetensors",
    blob(good(b={"dtype": "F32", "shape": [4], "data_offsets": [40, 24]}), DATA))
put("bad_offsets_not_numbers.safetensors",
    blob(good(b={"dtype": "F32", "shape": [4], "data_offsets": ["24", "40"]}), DATA))
put("bad_overlap.safetensors",                                     # b starts inside a
    blob(good(b={"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}), DATA[:32]))
put("bad_hole.safetensors",                                        # 8 bytes between a and b
    blob(good(b={"dtype": "F32", "shape": [4], "data_offsets": [32, 48]}), DATA[:24] + bytes(8) + DATA[24:]))
put("bad_extra_data.safetensors", blob(good(), DATA + bytes(16)))  # bytes after the last tensor
put("bad_name_too_long.safetensors",
    blob(good(a=None, **{"x" * 200: {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}), DATA))
# JSON allows a key twice (RFC 8259 says names SHOULD be unique); json.dumps cannot write it
text = json.dumps(good())
dup = '"b": {"dtype": "F32", "shape": [4], "data_offsets": [24, 40]}'
put("bad_duplicate_tensor.safetensors", blob(text[:-1] + ", " + dup + "}", DATA))
put("bad_duplicate_metadata.safetensors",
    blob(text[:-1] + ', "__metadata__": ' + json.dumps({"k%d" % i: "v" for i in range(9)}) + "}", DATA))

# --- metadata ------------------------------------------------------------------------------------
put("bad_meta_not_object.safetensors", blob(dict(good(), __metadata__=["arch", "test"]), DATA))
put("bad_meta_not_string.safetensors", blob(dict(good(), __metadata__=dict(META, num_classes=3)), DATA))
put("bad_meta_mean_nan.safetensors", blob(good({"mean": "[NaN, 0.5, 0.5]"}), DATA))
put("bad_meta_std_infinity.safetensors", blob(good({"std": "[0.25, Infinity, 0.25]"}), DATA))
put("bad_meta_std_zero.safetensors", blob(good({"std": "[0.25, 0, 0.25]"}), DATA))
put("bad_meta_mean_huge.safetensors", blob(good({"mean": "[1e999, 0.5, 0.5]"}), DATA))
put("bad_meta_mean_not_array.safetensors", blob(good({"mean": "0.5"}), DATA))
put("bad_meta_num_classes_nan.safetensors", blob(good({"num_classes": "NaN"}), DATA))
put("bad_meta_num_classes_inf.safetensors", blob(good({"num_classes": "inf"}), DATA))
put("bad_meta_num_classes_zero.safetensors", blob(good({"num_classes": "0", "labels": "[]"}), DATA))
put("bad_meta_input_size_float.safetensors", blob(good({"input_size": "224.5"}), DATA))
put("bad_meta_labels_not_array.safetensors", blob(good({"labels": '"a,b,c"'}), DATA))
put("bad_meta_labels_not_json.safetensors", blob(good({"labels": "a,b,c"}), DATA))
put("bad_meta_labels_numbers.safetensors", blob(good({"labels": "[1, 2, 3]"}), DATA))
put("bad_meta_labels_count.safetensors", blob(good({"labels": '["a", "b"]'}), DATA))
put("bad_meta_high_risk_unknown.safetensors", blob(good({"high_risk_labels": '["a", "ulcer"]'}), DATA))
put("bad_meta_high_risk_not_array.safetensors", blob(good({"high_risk_labels": '"a"'}), DATA))
put("bad_meta_high_risk_no_labels.safetensors",
    blob(good(__metadata__=dict({k: v for k, v in META.items() if k != "labels"}, high_risk_labels='["a"]')), DATA))
put("bad_meta_score_threshold_range.safetensors", blob(good({"score_threshold": "1.5"}), DATA))
put("bad_meta_score_threshold_text.safetensors", blob(good({"score_threshold": "0.5 "}), DATA))
put("bad_meta_resize_mode_unknown.safetensors", blob(good({"resize_mode": "stretch"}), DATA))
put("bad_meta_resize_mode_case.safetensors", blob(good({"resize_mode": "Squash"}), DATA))
put("bad_meta_resize_mode_squash_resize.safetensors",   # squash goes straight to input_size 8
    blob(good({"resize_mode": "squash", "resize": "9"}), DATA))
put("bad_meta_resize_mode_squash_default.safetensors",  # no input_size: 224, so 'resize' 256 contradicts
    blob(good(__metadata__=dict({k: v for k, v in META.items() if k != "input_size"},
                                resize_mode="squash", resize="256")), DATA))

# --- well-formed, but not a resnet18 ------------------------------------------------------------
torch.manual_seed(0)
r18 = mi_ref.export.random_model("resnet18", 2, 0).state_dict()
meta = mi_ref.export.blob_metadata("resnet18", 2, ["normal", "abnormal"], input_size=32)
half = mi_ref.export.cast_floats(r18, "f16")   # half the bytes: the loader reads F16 as well


def write(name, tensors):
    mi_ref.export.write_safetensors(os.path.join(d, name), tensors, meta)


write("ok_resnet18.safetensors", half)
write("arch_missing_tensor.safetensors",
      {k: v for k, v in half.items() if k != "layer2.0.downsample.0.weight"})
write("arch_wrong_shape.safetensors",
      dict(half, **{"layer1.0.conv1.weight": half["layer1.0.conv1.weight"][:, :, :1, :1].contiguous()}))
write("arch_wrong_dtype_i64.safetensors", dict(half, **{"conv1.weight": r18["conv1.weight"].long()}))
write("arch_wrong_dtype_bool.safetensors", dict(half, **{"fc.bias": r18["fc.bias"] > 0}))

# an image for `medinfer classify` (a plain PNG; written by hand, no imaging library needed)
import zlib  # noqa: E402


def png(w, h, rgb):
    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))
    raw = b"".join(b"\0" + bytes(rgb[(y * w + x) % len(rgb)] for x in range(w) for _ in range(3))
                   for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


put("ok.png", png(40, 36, [10, 200, 90, 30, 250]))
