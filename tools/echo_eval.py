#!/usr/bin/python3
"""tools/echo_eval.py - score a `medinfer echo` report against synthetic ground truth.

    tools/echo_eval.py GT_DIR REPORT.json [--max-ef-mae 5] [--json]

An independent scorer: it shares no code with medinfer, tools/echo_synth.py or
tools/train_echo.py, and needs the standard library only.

GT_DIR holds NAME.json ground-truth files (tools/echo_synth.py's format: "cycles", each with
"box" [x1, y1, x2, y2] and the measures in mm and percent). REPORT.json is medinfer's report:
    {"results": [{"input": PATH, "status": "ok" | "no_cycle" | ...,
                  "cycle": {"box": [x1, y1, x2, y2], "score": p}, "points": [[x, y] x 8],
                  "measures": {"EF": {"value": 61.3, "unit": "%"},
                               "LVIDd": {"value": 48.1, "unit": "mm"}, ...}}]}
Each result is matched to its study by the input's basename (NAME.png or NAME.dcm -> NAME.json);
the reported box is compared with the GT cycle it overlaps most (highest IoU), and that cycle's
EF, LVIDd and LVIDs are the truth for this result.

Printed: N (results matched to a study), how many were "ok", the detection rate (results whose
box has IoU >= 0.5 with a GT cycle, over N: a result without a box counts as missed), the EF MAE
in percentage points and the mean |LVIDd| and |LVIDs| errors in mm (over the "ok" results with
the measure), and the studies of GT_DIR the report does not mention.
Exit status: 0 when the EF MAE is <= --max-ef-mae, 1 when it is larger or no result had an EF,
2 on unusable input (unreadable files, a result whose study has no GT JSON).
"""
import argparse
import json
import os
import sys


def box_iou(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def measure(result, name):
    m = (result.get("measures") or {}).get(name)
    if isinstance(m, dict):
        m = m.get("value")
    return float(m) if isinstance(m, (int, float)) else None


def mean(v):
    return sum(v) / len(v) if v else float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gt_dir")
    ap.add_argument("report")
    ap.add_argument("--max-ef-mae", type=float, default=5.0, help="pass limit, percentage points (5)")
    ap.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    a = ap.parse_args(argv)

    try:
        with open(a.report) as f:
            results = json.load(f)["results"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"echo_eval.py: {a.report}: {e}", file=sys.stderr)
        return 2

    seen, n, n_ok, detected = set(), 0, 0, 0
    ef_err, dd_err, ds_err = [], [], []
    for r in results:
        base = os.path.splitext(os.path.basename(str(r.get("input", ""))))[0]
        gt_path = os.path.join(a.gt_dir, base + ".json")
        try:
            with open(gt_path) as f:
                cycles = json.load(f)["cycles"]
        except (OSError, ValueError, KeyError) as e:
            print(f"echo_eval.py: {r.get('input')}: no ground truth ({gt_path}: {e})", file=sys.stderr)
            return 2
        seen.add(base)
        n += 1
        box = (r.get("cycle") or {}).get("box")
        if not (isinstance(box, list) and len(box) == 4) or not cycles:
            continue
        ious = [box_iou(box, c["box"]) for c in cycles]
        best = max(range(len(cycles)), key=lambda i: ious[i])
        detected += ious[best] >= 0.5
        if r.get("status") != "ok":
            continue
        n_ok += 1
        gt = cycles[best]
        for name, errs in (("EF", ef_err), ("LVIDd", dd_err), ("LVIDs", ds_err)):
            v = measure(r, name)
            if v is not None:
                errs.append(abs(v - gt[name]))

    missing = sorted(os.path.splitext(f)[0] for f in os.listdir(a.gt_dir)
                     if f.endswith(".json") and os.path.splitext(f)[0] not in seen
                     and f != os.path.basename(a.report))
    scores = {"N": n, "ok": n_ok, "detection_rate_iou50": detected / n if n else float("nan"),
              "ef_mae_pp": mean(ef_err), "ef_n": len(ef_err),
              "lvidd_mae_mm": mean(dd_err), "lvids_mae_mm": mean(ds_err),
              "not_in_report": len(missing), "max_ef_mae_pp": a.max_ef_mae}
    passed = bool(ef_err) and scores["ef_mae_pp"] <= a.max_ef_mae
    scores["pass"] = passed
    if a.json:
        print(json.dumps(scores))
    else:
        print(f"N {n} (ok {n_ok}); detection rate (IoU >= 0.5) {scores['detection_rate_iou50']:.3f}")
        print(f"EF MAE {scores['ef_mae_pp']:.2f} pp over {len(ef_err)}; |LVIDd| {scores['lvidd_mae_mm']:.2f} mm, "
              f"|LVIDs| {scores['lvids_mae_mm']:.2f} mm")
        if missing:
            print(f"{len(missing)} GT studies not in the report (e.g. {missing[0]})")
        print(("PASS" if passed else "FAIL") + f": EF MAE limit {a.max_ef_mae} pp")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
