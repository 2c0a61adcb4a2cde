#!/usr/bin/python3
"""tools/eval_kvasir_det.py - score the Kvasir-SEG polyp detector on the 100 test images of the
fixed split (tools/kvasir_seg_split.tsv), twice: with PyTorch from the blob, and from the answers of
`medinfer assist-server` running the same blob; then the difference between the two.

    tools/eval_kvasir_det.py [--model weights/assist_det_kvasir.safetensors] [--bin build/medinfer]
                             [--json F] [--md F] [--threads 1] [--split test|val]

The test images are read only here, after training; the score threshold is the blob's metadata
'score_threshold', chosen on the validation images by tools/train_kvasir_det.py.

(a) PyTorch. The blob is read by tools/export.py's safetensors reader (F16 widened to F32, as the C
    reader does) into tools/rcnn_ref.build(metadata) (torchvision's FasterRCNN; the module both
    sides must share, as it defines the architecture), in eval mode. Input: the JPEG decoded by
    PIL to RGB, /255, at its own size (the model's GeneralizedRCNNTransform resizes it).
(b) C. One `medinfer assist-server` process with the blob, a throw-away token file and database,
    --score-threshold 0.05 (the detector's own box_score_thresh: every detection it makes, so that
    AP sees the whole ranked list) and the frame-quality rule opened wide (luma 0..255, no Sobel
    minimum, glare up to 100 %: the model is scored on every image; how many images the default
    rule would refuse is counted separately from the answers' 'quality' values). Each test JPEG
    is posted as it is on disk to POST /v1/frames (--same-pixels: the PNG of PIL's decoding, so
    that the two sides see the same pixels and only the networks are compared); the answer's lesions (box, score) are the C
    detections. Nothing here reads the pipeline's code.
(c) The difference of every figure, and per image the largest box-corner difference (pixels of the
    original image) and score difference between detections paired by IoU >= 0.9.

Scores, the same function for both: AP@0.5 (all-point interpolated precision-recall area, as VOC
2010+ and COCO's AP at one IoU), each truth box of kavsir_bboxes.json matched at most once, best
scores first; recall and precision at IoU 0.5 among the detections scoring at least the threshold;
the images with at least one truth box found ("polyp found") at that threshold.
"""
import argparse
import io
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import export    # noqa: E402  (the safetensors reader)
import rcnn_ref  # noqa: E402  (the architecture only)

SHARED = os.path.join(ROOT, "..", "shared", "data")
SPLIT = os.path.join(HERE, "kvasir_seg_split.tsv")
DEFAULT_BLOB = os.path.join(ROOT, "weights", "assist_det_kvasir.safetensors")


def read_split(path=SPLIT):
    with open(path) as f:
        return dict(line.rstrip("\n").split("\t") for line in f if line.strip())


def truth_boxes(data):
    """-> {id: [[x1, y1, x2, y2], ...]} from kavsir_bboxes.json (pixels of the original image)."""
    with open(os.path.join(data, "kavsir_bboxes.json")) as f:
        j = json.load(f)
    return {i: [[float(b["xmin"]), float(b["ymin"]), float(b["xmax"]), float(b["ymax"])] for b in v["bbox"]]
            for i, v in j.items()}


def image_path(data, i):
    """Kvasir-SEG image of id i: the full set, or the sample folder that holds the five left out of it."""
    p = os.path.join(data, "kvasir-seg-full", "images", i + ".jpg")
    return p if os.path.exists(p) else os.path.join(data, "kvasir-seg-sample", "images", i + ".jpg")


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / u if u > 0 else 0.0


def match(dets, truth, thr=0.0):
    """-> [(score, true positive?)] of the detections scoring >= thr, best first, each truth box
    matched at most once, at IoU >= 0.5"""
    rows, used = [], set()
    for box, s in sorted(dets, key=lambda d: -d[1]):
        if s < thr:
            continue
        best, bi = 0.5, -1
        for k, t in enumerate(truth):
            v = iou(box, t)
            if k not in used and v >= best:
                best, bi = v, k
        if bi >= 0:
            used.add(bi)
        rows.append((s, bi >= 0))
    return rows


def scores(preds, truths, thr):
    """preds, truths: per image [(box, score)] and [box]. -> dict of the figures above."""
    rows = sorted((r for d, t in zip(preds, truths) for r in match(d, t)), key=lambda r: -r[0])
    npos = sum(len(t) for t in truths)
    tp = np.cumsum([r[1] for r in rows]) if rows else np.zeros(0)
    fp = np.cumsum([not r[1] for r in rows]) if rows else np.zeros(0)
    mrec = np.concatenate([[0], tp / max(npos, 1), [1]])
    mpre = np.concatenate([[0], tp / np.maximum(tp + fp, 1e-9), [0]])
    for k in range(len(mpre) - 2, -1, -1):
        mpre[k] = max(mpre[k], mpre[k + 1])
    k = np.where(mrec[1:] != mrec[:-1])[0]
    ap = float(np.sum((mrec[k + 1] - mrec[k]) * mpre[k + 1]))
    hit = fa = found = 0
    for d, t in zip(preds, truths):
        m = match(d, t, thr)
        hit += sum(ok for _, ok in m)
        fa += sum(not ok for _, ok in m)
        found += any(ok for _, ok in m)
    return {"images": len(truths), "truth_boxes": npos, "ap50": round(ap, 4), "score_threshold": thr,
            "recall50": round(hit / max(npos, 1), 4), "precision50": round(hit / max(hit + fa, 1), 4),
            "false_positives": fa, "images_polyp_found": found}


def best_threshold(preds, truths):
    """The one of 0.05, 0.10, ..., 0.95 with the highest F1 at IoU 0.5 (the lowest such on a tie)."""
    best, best_f1 = 0.5, -1.0
    for thr in [round(0.05 * k, 2) for k in range(1, 20)]:
        s = scores(preds, truths, thr)
        f1 = 2 * s["recall50"] * s["precision50"] / max(s["recall50"] + s["precision50"], 1e-9)
        if f1 > best_f1 + 1e-12:
            best, best_f1 = thr, f1
    return best


def load_model(path):
    sd, meta = export.read_safetensors(path)
    m = rcnn_ref.build(meta)
    m.load_state_dict(sd)
    return m.eval(), meta


def torch_predict(m, rgb):
    x = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1) / 255
    with torch.no_grad():
        r = m([x])[0]
    return [(b, float(s)) for b, s in zip(r["boxes"].tolist(), r["scores"].tolist())]


class Server:
    """medinfer assist-server on a free port, with its own tokens and database in a temp dir."""

    def __init__(self, bin_, blob, threads, tmp, score_threshold=0.05, log=None):
        """score_threshold None: the server's default (the blob's metadata); log: its stderr there"""
        self.tok = secrets.token_hex(16)
        ws = secrets.token_hex(16)
        with open(os.path.join(tmp, "tokens"), "w") as f:
            f.write(f"{ws} workstation WS-EVAL\n{self.tok} terminal EVAL-1\n")
        os.chmod(os.path.join(tmp, "tokens"), 0o600)
        pf = os.path.join(tmp, "port")
        cmd = [bin_, "assist-server", "--model", blob, "--tokens", os.path.join(tmp, "tokens"),
               "--db", os.path.join(tmp, "f.sqlite"), "--port", "0", "--port-file", pf, "--workers", "1",
               "--threads", str(threads), "--quiet", "--luma-lo", "0", "--luma-hi", "255", "--sobel-min", "0",
               "--glare-max", "1"]
        if score_threshold is not None:
            cmd += ["--score-threshold", str(score_threshold)]
        self.log = open(log, "w") if log else None
        self.p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)
        for _ in range(600):
            if os.path.exists(pf) or self.p.poll() is not None:
                break
            time.sleep(0.05)
        if not os.path.exists(pf):
            raise SystemExit(f"assist-server did not start (exit {self.p.poll()})")
        self.url = f"http://127.0.0.1:{open(pf).read().strip()}"
        exam = self.post("/v1/exams", json.dumps({"terminal": "EVAL-1", "patient_id": "KVASIR-EVAL", "exam_number": "1",
                                    "age": 0, "sex": "O"}).encode(),
                         "application/json", ws)
        self.exam = exam["exam_id"]

    def post(self, path, body, ctype, token=None):
        rq = urllib.request.Request(self.url + path, data=body, method="POST",
                                    headers={"Authorization": f"Bearer {token or self.tok}", "Content-Type": ctype})
        with urllib.request.urlopen(rq, timeout=120) as r:
            return json.loads(r.read())

    def detect(self, jpeg_path, n, same_pixels=False):
        """same_pixels: post the PNG of PIL's decoding instead of the JPEG file"""
        if same_pixels:
            buf = io.BytesIO()
            Image.open(jpeg_path).convert("RGB").save(buf, "PNG")
            body, ctype = buf.getvalue(), "image/png"
        else:
            with open(jpeg_path, "rb") as f:
                body, ctype = f.read(), "image/jpeg"
        a = self.post(f"/v1/frames?exam={self.exam}&timestamp_ms={n}&trigger=pedal", body, ctype)
        if not a["judged"]:
            raise SystemExit(f"{jpeg_path}: not judged with the quality rule opened wide: {a['reason']}")
        return [(d["box"], float(d["score"])) for d in a["lesions"]], a["quality"]

    def close(self):
        self.p.terminate()
        self.p.wait(timeout=30)
        if self.log:
            self.log.close()


def default_rule_refuses(q):
    """The server's default frame-quality rule (docs/assist.md): the reason it would refuse, or None."""
    if q["mean_luma"] < 30:
        return "dark"
    if q["mean_luma"] > 220:
        return "bright"
    if min(q["sobel_x"], q["sobel_y"]) < 8:
        return "blurred"
    if q["glare_frac"] > 0.15:
        return "glare"
    return None


def compare(pt, c):
    """per image: the largest corner and score differences over detections paired at IoU >= 0.9,
    and the detections of either side with no pair"""
    worst_box = worst_score = 0.0
    unpaired = 0
    for dp, dc in zip(pt, c):
        used = set()
        for b, s in dp:
            k = max(range(len(dc)), key=lambda j: iou(b, dc[j][0]) if j not in used else -1, default=-1)
            if k < 0 or k in used or iou(b, dc[k][0]) < 0.9:
                unpaired += s >= 0.06   # a detection at the 0.05 cut may fall on either side of it
                continue
            used.add(k)
            worst_box = max(worst_box, max(abs(x - y) for x, y in zip(b, dc[k][0])))
            worst_score = max(worst_score, abs(s - dc[k][1]))
        unpaired += sum(1 for j, (_, s) in enumerate(dc) if j not in used and s >= 0.06)
    return {"max_box_corner_diff_px": round(worst_box, 3), "max_score_diff": round(worst_score, 5),
            "unpaired_detections_scoring_0.06_or_more": unpaired}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_BLOB)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "medinfer"), help='"none": PyTorch only')
    ap.add_argument("--data", default=SHARED)
    ap.add_argument("--split", default="test", choices=["test", "val"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--same-pixels", action="store_true",
                    help="post the PNG of PIL's decoding, not the JPEG: both sides see the same pixels")
    ap.add_argument("--json")
    ap.add_argument("--md")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    ids = sorted(i for i, s in read_split().items() if s == a.split)
    truth = truth_boxes(os.path.join(a.data, "kvasir-seg-full"))
    truths = [truth[i] for i in ids]
    m, meta = load_model(a.model)
    thr = float(meta["score_threshold"])
    t0 = time.time()
    pt = [torch_predict(m, Image.open(image_path(a.data, i)).convert("RGB")) for i in ids]
    out = {"model": os.path.relpath(a.model, ROOT), "model_version": meta["model_version"], "split": a.split,
           "c_input": "png of PIL's decoding" if a.same_pixels else "jpeg as on disk",
           "pytorch": scores(pt, truths, thr), "pytorch_seconds": round(time.time() - t0, 1)}
    if a.bin != "none":
        with tempfile.TemporaryDirectory() as tmp:
            srv = Server(a.bin, a.model, a.threads, tmp)
            try:
                t0 = time.time()
                got = [srv.detect(image_path(a.data, i), n, a.same_pixels) for n, i in enumerate(ids)]
                out["c_seconds"] = round(time.time() - t0, 1)
            finally:
                srv.close()
        c = [g[0] for g in got]
        out["c"] = scores(c, truths, thr)
        refused = [default_rule_refuses(g[1]) for g in got]
        out["c"]["default_quality_rule_refuses"] = {r: refused.count(r) for r in sorted(set(refused) - {None})}
        out["difference"] = {k: round(out["c"][k] - out["pytorch"][k], 4)
                             for k in ("ap50", "recall50", "precision50", "images_polyp_found")}
        out["difference"].update(compare(pt, c))
        out["per_image"] = [{"id": i, "truth": len(t), "c_found": sum(ok for _, ok in match(dc, t, thr)),
                             "pytorch_found": sum(ok for _, ok in match(dp, t, thr))}
                            for i, t, dc, dp in zip(ids, truths, c, pt)]
    print(json.dumps({k: v for k, v in out.items() if k != "per_image"}, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    if a.md:
        rows = [("AP@0.5", "ap50"), (f"recall at IoU 0.5, score >= {thr}", "recall50"),
                ("precision at IoU 0.5", "precision50"), ("images with a polyp found", "images_polyp_found"),
                ("false positives", "false_positives")]
        with open(a.md, "w") as f:
            f.write(f"| {a.split} split ({len(ids)} images, {out['pytorch']['truth_boxes']} boxes) | PyTorch | "
                    f"medinfer assist-server |\n|---|---|---|\n")
            for name, k in rows:
                f.write(f"| {name} | {out['pytorch'][k]} | {out.get('c', {}).get(k, '-')} |\n")


if __name__ == "__main__":
    main()
