#!/usr/bin/python3
"""tools/patho_eval.py - score a `medinfer patho` report against synthetic ground truth.

    tools/patho_eval.py GT_DIR REPORT.json [--min-accuracy 0.9] [--json]

An independent scorer: it shares no code with medinfer, tools/patho_synth.py or
tools/train_patho.py, and needs the standard library only.

GT_DIR holds the sidecars NAME.json of tools/patho_synth.py ("class": the label string,
"class_index", "labels": the four labels in order). REPORT.json may be
  {"results": [REPORT, ...]}     (medinfer's layout, and tools/train_patho.py run's)
  [REPORT, ...]                  a list of per-slide reports
  {PATH: REPORT, ...}            per-slide reports keyed by input path
  REPORT                         a single slide's report
where a REPORT names its slide by "input" (or "slide", "path", "file", or the key it is stored
under) and gives "class" (a label string, or an integer index into the labels) and optionally
"probabilities" (a list in label order, or an object label -> p; then, when "class" is missing,
the class is the most probable one). A slide is matched to NAME.json by its file name without
directory and extension (NAME.tif -> NAME.json). A report without a class (an error, "no tissue")
counts as wrong.

Printed: N (reports matched to a sidecar), accuracy, the 4x4 confusion matrix (rows: truth,
columns: reported; a column "none" for reports without a class), per-class recall, and the
sidecars of GT_DIR the report does not mention (they are not counted).
Exit status: 0 when accuracy >= --min-accuracy, 1 below it (or nothing matched), 2 on unusable
input (unreadable files, a report naming a slide without a sidecar, an unknown class label).
"""
import argparse
import json
import os
import sys


def fail(msg):
    print(f"patho_eval.py: {msg}", file=sys.stderr)
    sys.exit(2)


def stem(path):
    return os.path.splitext(os.path.basename(str(path)))[0]


def reports(doc):
    """-> [(input path, report dict)] from any of the accepted layouts"""
    if isinstance(doc, dict) and isinstance(doc.get("results"), list):
        doc = doc["results"]
    if isinstance(doc, list):
        out = []
        for r in doc:
            if not isinstance(r, dict):
                fail(f"a report entry is {type(r).__name__}, not an object")
            name = next((r[k] for k in ("input", "slide", "path", "file") if isinstance(r.get(k), str)), None)
            if name is None:
                fail(f"a report names no slide (no input/slide/path/file): {json.dumps(r)[:120]}")
            out.append((name, r))
        return out
    if isinstance(doc, dict):
        if any(isinstance(doc.get(k), str) for k in ("input", "slide", "path", "file")) and \
                ("class" in doc or "probabilities" in doc or "status" in doc):
            return reports([doc])
        return [(k, v) for k, v in doc.items() if isinstance(v, dict)]
    fail("the report is neither an object nor a list")


def reported_class(r, labels):
    """-> index into labels, or None (no class reported)"""
    c = r.get("class")
    if isinstance(c, dict):                       # {"label": ..., "index": ...}
        c = c.get("label", c.get("index"))
    if c is None:
        p = r.get("probabilities")
        if isinstance(p, dict) and p:
            c = max(p, key=lambda k: p[k])
        elif isinstance(p, list) and p:
            c = max(range(len(p)), key=lambda i: p[i])
    if c is None:
        return None
    if isinstance(c, int) and not isinstance(c, bool):
        if not 0 <= c < len(labels):
            fail(f"class index {c} is outside the {len(labels)} labels")
        return c
    low = [lab.lower() for lab in labels]
    if str(c).lower() not in low:
        fail(f"unknown class label {c!r} (labels: {labels})")
    return low.index(str(c).lower())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gt_dir")
    ap.add_argument("report")
    ap.add_argument("--min-accuracy", type=float, default=0.9)
    ap.add_argument("--json", action="store_true", help="print the numbers as JSON too")
    a = ap.parse_args(argv)

    gt = {}
    try:
        for f in sorted(os.listdir(a.gt_dir)):
            if f.endswith(".json"):
                d = json.load(open(os.path.join(a.gt_dir, f)))
                if isinstance(d, dict) and "class" in d and "labels" in d:
                    gt[stem(f)] = d
        doc = json.load(open(a.report))
    except (OSError, ValueError) as e:
        fail(str(e))
    if not gt:
        fail(f"{a.gt_dir}: no sidecars (NAME.json with class and labels)")
    labels = next(iter(gt.values()))["labels"]
    k = len(labels)
    conf = [[0] * (k + 1) for _ in range(k)]
    seen = set()
    for name, r in reports(doc):
        s = stem(name)
        if s not in gt:
            fail(f"report for {name}: no sidecar {s}.json in {a.gt_dir}")
        if s in seen:
            fail(f"two reports for {s}")
        seen.add(s)
        truth = labels.index(gt[s]["class"])
        c = reported_class(r, labels)
        conf[truth][k if c is None else c] += 1
    n = sum(map(sum, conf))
    correct = sum(conf[i][i] for i in range(k))
    acc = correct / n if n else 0.0
    width = max(len(lab) for lab in labels)
    print(f"N {n}, correct {correct}, accuracy {acc:.3f}")
    print("confusion (rows: truth, columns: reported " + ", ".join(f"{i} {lab}" for i, lab in enumerate(labels)) + ", none)")
    print(" " * (width + 2) + "".join(f"{i:>6}" for i in range(k)) + "  none")
    for i, lab in enumerate(labels):
        print(f"{lab:>{width}}  " + "".join(f"{v:>6}" for v in conf[i][:k]) + f"{conf[i][k]:>6}")
    recall = {lab: (conf[i][i] / sum(conf[i]) if sum(conf[i]) else None) for i, lab in enumerate(labels)}
    print("recall: " + ", ".join(f"{lab} {v:.2f}" if v is not None else f"{lab} -" for lab, v in recall.items()))
    missing = sorted(set(gt) - seen)
    if missing:
        print(f"not in the report ({len(missing)}): " + " ".join(missing))
    if a.json:
        print(json.dumps({"n": n, "correct": correct, "accuracy": acc, "labels": labels,
                          "confusion": conf, "recall": recall, "missing": missing}))
    sys.exit(0 if n and acc >= a.min_accuracy else 1)


if __name__ == "__main__":
    main()
