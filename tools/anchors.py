#!/usr/bin/python3
"""tools/anchors.py - adaptive Faster R-CNN anchors from labeled boxes.

    tools/anchors.py BOXES.csv --min-size A --max-size B [--blob IN.safetensors --out OUT.safetensors]

BOXES.csv has a header and rows image_w,image_h,x1,y1,x2,y2 (tools/echo_synth.py writes one).
Each box is scaled as torchvision's GeneralizedRCNNTransform resizes its image:
scale = min(A / min(h, w), B / max(h, w)). The anchors are three [length, width] boxes (length =
x extent, width = y extent, in pixels of the resized network input):
    [[min length, min width], [mean length, mean width], [max length, max width]]
printed as JSON. With --blob, the JSON is also written as metadata "anchors" of a copy of the blob
(tools/blob_meta.py: tensors and data unchanged), to --out (default: the blob itself).
Standard library only."""
import argparse
import csv
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def anchors(rows, min_size, max_size):
    L, Wd = [], []
    for w, h, x1, y1, x2, y2 in rows:
        s = min(min_size / min(h, w), max_size / max(h, w))
        L.append((x2 - x1) * s)
        Wd.append((y2 - y1) * s)
    if not L:
        raise SystemExit("anchors.py: no boxes")
    r = lambda v: round(v, 2)
    return [[r(min(L)), r(min(Wd))], [r(sum(L) / len(L)), r(sum(Wd) / len(Wd))], [r(max(L)), r(max(Wd))]]


def read_boxes(path):
    with open(path, newline="") as f:
        rd = csv.DictReader(f)
        return [tuple(float(row[k]) for k in ("image_w", "image_h", "x1", "y1", "x2", "y2")) for row in rd]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("boxes")
    ap.add_argument("--min-size", type=float, required=True)
    ap.add_argument("--max-size", type=float, required=True)
    ap.add_argument("--blob")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    js = json.dumps(anchors(read_boxes(a.boxes), a.min_size, a.max_size))
    print(js)
    if a.blob:
        sys.path.insert(0, HERE)
        import blob_meta
        blob_meta.main([a.blob, a.out or a.blob, "--set", "anchors=" + js])
    elif a.out:
        raise SystemExit("anchors.py: --out needs --blob")


if __name__ == "__main__":
    main()
