#!/usr/bin/python3
"""tools/kvasir_split.py - the fixed train / validation / test split of Kvasir-SEG, written down.

    tools/kvasir_split.py [--data ../shared/data] [--out tools/kvasir_seg_split.tsv] [--check]

The 1000 Kvasir-SEG images (995 in kvasir-seg-full, 5 in kvasir-seg-sample) are split by file name,
not by a random seed alone, so the list itself is the record: tools/kvasir_seg_split.tsv, one
"<id>\t<split>" line per image, sorted by id. The rules:
  - the five images of kvasir-seg-sample are test images (other tests and the docs already show
    them);
  - the seven near-duplicate pairs that kvasir-seg-full/PROVENANCE.md lists (frames of one polyp
    under two ids) go together, so no polyp is on both sides of a split;
  - the remaining images, as units (a pair is one unit), are taken in the order of
    SHA-256("kvasir-seg split v1:" + id of the unit's first member): test is filled to 100 images,
    then validation to 100, the rest (800) is train.
The test images are never used to train, to choose a checkpoint, a hyper-parameter or a threshold;
the training scripts read this file and refuse to train on a test id. --check recomputes the split
and compares it with the file (exit 1 on any difference); the SHA-256 of the file goes into every
blob trained on it.
"""
import argparse
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SALT = "kvasir-seg split v1:"
SAMPLE = ["cju0qkwl35piu0993l0dewei2", "cju0qoxqj9q6s0835b43399p4", "cju0qx73cjw570799j4n5cjze",
          "cju0roawvklrq0799vmjorwfv", "cju0rx1idathl0835detmsp84"]
PAIRS = [("cju30bmab08bi0835mvlr6e0r", "cju77k828z46w0871r0avuoo9"),
         ("cju886ryxnsl50801r93jai7q", "cju8amfdtqi4x09871tygrgqe"),
         ("cju76lsehyia10987u54vn8rb", "cju772304yw5t0818vbw8kkjf"),
         ("cju5fydrud94708507vo6oy21", "cju7avvi51iox0817ym55y6tt"),
         ("cju1hhj6mxfp90835n3wofrap", "cju3x9lttikfb0818a0g104zn"),
         ("cju43b8daly4408170e5ev06g", "cju8bbznkrf5g0871jncffynk"),
         ("cju43c92lm5cj0755lorsorfg", "cju83ipu3jwpx0801z5pvguf8")]
TEST, VAL = 100, 100


def ids_in(folder):
    return sorted(f[:-4] for f in os.listdir(os.path.join(folder, "images")) if f.endswith(".jpg"))


def split(all_ids):
    """-> {id: 'train' | 'val' | 'test'} by the rules of the module docstring."""
    ids = set(all_ids)
    missing = [i for p in PAIRS for i in p if i not in ids] + [i for i in SAMPLE if i not in ids]
    if missing:
        raise SystemExit(f"kvasir_split: ids named by the rules are not in the data: {missing}")
    out = {i: "test" for i in SAMPLE}
    paired = {i for p in PAIRS for i in p}
    units = [list(p) for p in PAIRS] + [[i] for i in sorted(ids - paired - set(SAMPLE))]
    units.sort(key=lambda u: hashlib.sha256((SALT + u[0]).encode()).hexdigest())
    counts = {"test": len(SAMPLE), "val": 0}
    for u in units:
        if counts["test"] + len(u) <= TEST:
            s = "test"
        elif counts["val"] + len(u) <= VAL:
            s = "val"
        else:
            s = "train"
        counts[s] = counts.get(s, 0) + len(u)
        for i in u:
            out[i] = s
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(HERE, "kvasir_seg_split.tsv"))
    ap.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    a = ap.parse_args()
    full, sample = os.path.join(a.data, "kvasir-seg-full"), os.path.join(a.data, "kvasir-seg-sample")
    all_ids = ids_in(full) + ids_in(sample)
    if len(all_ids) != len(set(all_ids)) or len(all_ids) != 1000:
        raise SystemExit(f"kvasir_split: expected 1000 distinct ids in {full} and {sample}, found {len(set(all_ids))}")
    s = split(all_ids)
    text = "".join(f"{i}\t{s[i]}\n" for i in sorted(s))
    counts = {k: sum(1 for v in s.values() if v == k) for k in ("train", "val", "test")}
    if a.check:
        old = open(a.out).read()
        if old != text:
            print(f"kvasir_split: {a.out} differs from the split the rules give", file=sys.stderr)
            return 1
        print(f"kvasir_split: {a.out} matches the rules ({counts})")
        return 0
    with open(a.out, "w") as f:
        f.write(text)
    print(f"kvasir_split: wrote {a.out}: {counts}, sha256 {hashlib.sha256(text.encode()).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
