#!/usr/bin/python3
"""tools/blob_meta.py - change a blob's __metadata__ and nothing else.

    tools/blob_meta.py IN.safetensors OUT.safetensors [--set KEY=VALUE]... [--del KEY]...

The tensor entries of the header and the whole data section are copied unchanged, byte for byte;
only the metadata strings differ. The header is written the way tools/export.py writes it
(compact JSON in the input's key order, padded with spaces to a multiple of 8 bytes, so every
tensor keeps its alignment), so the same input and options always give the same bytes.
IN and OUT may be the same file (it is replaced only when the new one is complete).

Used to restate the shipped demo blob's metadata without retraining it, and by the tests to make
blobs whose metadata is wrong in one way from a blob whose weights are real.
Needs the standard library only (no PyTorch)."""
import argparse
import json
import os
import struct
import sys


def read_blob(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise SystemExit(f"blob_meta.py: {path}: {len(data)} bytes, too short for safetensors")
    n = struct.unpack("<Q", data[:8])[0]
    if n > len(data) - 8:
        raise SystemExit(f"blob_meta.py: {path}: header length {n} exceeds the file")
    header = json.loads(data[8:8 + n])
    if not isinstance(header, dict):
        raise SystemExit(f"blob_meta.py: {path}: header is not a JSON object")
    return header, data[8 + n:]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inp", metavar="IN")
    ap.add_argument("out", metavar="OUT")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="set (or add) a metadata string; repeatable")
    ap.add_argument("--del", dest="delete", action="append", default=[], metavar="KEY",
                    help="remove a metadata key; repeatable")
    a = ap.parse_args(argv)

    header, data = read_blob(a.inp)
    meta = dict(header.get("__metadata__") or {})
    for kv in a.set:
        if "=" not in kv:
            raise SystemExit(f"blob_meta.py: --set {kv!r}: expected KEY=VALUE")
        k, v = kv.split("=", 1)
        meta[k] = v
    for k in a.delete:
        if k not in meta:
            raise SystemExit(f"blob_meta.py: --del {k}: {a.inp} has no such metadata key")
        del meta[k]
    header["__metadata__"] = meta      # keeps its place when it had one, else goes last
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)
    os.replace(tmp, a.out)
    print(f"blob_meta.py: wrote {a.out}: {len(meta)} metadata keys, data section unchanged "
          f"({len(data)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
