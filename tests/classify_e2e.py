"""tests/classify_e2e.py - run by tests/test_classify.sh (env MI_BIN = the medinfer binary).

Reference: torchvision resnet18 with random weights and BN statistics, exported by tools/export.py;
the image goes through torchvision's Resize(antialias) -> CenterCrop -> ToTensor-equivalent ->
Normalize on the same pixels the C side decodes (a BMP written here, so decoding is exact).
Tolerance on logits: max|d| <= 1e-4 * max|ref| (the engine's parity bar).

The same weights exported again by the export.py command line with --resize-mode squash: the
image then goes through Resize((64, 64)) (no crop) and the logits follow torchvision's for that
transform, not the crop's; without --resize-mode no key is written."""
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision.transforms.functional as TF

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import export  # noqa: E402

BIN = os.environ.get("MI_BIN", "build/medinfer")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def write_bmp(path, rgb):
    h, w, _ = rgb.shape
    row = (3 * w + 3) // 4 * 4
    data = bytearray()
    for y in range(h - 1, -1, -1):  # bottom-up rows, BGR
        line = rgb[y, :, ::-1].tobytes()
        data += line + b"\0" * (row - len(line))
    with open(path, "wb") as f:
        f.write(b"BM" + struct.pack("<IHHI", 54 + len(data), 0, 0, 54))
        f.write(struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(data), 2835, 2835, 0, 0))
        f.write(data)


def run(*args):
    p = subprocess.run([BIN, "classify", *args], capture_output=True, text=True)
    return p.returncode, [json.loads(l) for l in p.stdout.splitlines() if l.strip()], p.stderr


def main():
    tmp = tempfile.mkdtemp(prefix="mi_classify_")
    labels = [f"site {i}" for i in range(7)]
    model = export.random_model("resnet18", 7, seed=5)
    blob = os.path.join(tmp, "r18.safetensors")
    export.write_safetensors(blob, model.state_dict(),
                             export.blob_metadata("resnet18", 7, labels, 64, model_version="1.2.3"))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 64, 64, generator=g)
    npy = os.path.join(tmp, "x.npy")
    np.save(npy, x.numpy().astype("<f4"))
    rgb = (torch.rand(90, 120, 3, generator=g) * 255).round().to(torch.uint8).numpy()
    bmp = os.path.join(tmp, "img.bmp")
    write_bmp(bmp, rgb)
    with torch.no_grad():
        ref_npy = model(x)[0]
        t = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
        t = TF.center_crop(TF.resize(t, 73, antialias=True), 64)  # resize = round(64*256/224) = 73
        t = TF.normalize(t.float() / 255, export.IMAGENET_MEAN, export.IMAGENET_STD)
        ref_img = model(t[None])[0]

    rc, out, err = run("--model", blob, "--logits", "--topk", "3", "--threads", "1", npy, bmp)
    check(rc == 0 and len(out) == 2, f"classify exits 0 with two results (rc {rc}, {err.strip()})")
    if len(out) == 2:
        for res, ref, name in ((out[0], ref_npy, ".npy"), (out[1], ref_img, "image")):
            got = torch.tensor(res["logits"])
            d = (got - ref).abs().max().item()
            check(d <= 1e-4 * ref.abs().max().item(), f"{name} logits match torchvision (max|d| {d:.3g})")
            check(res["top"][0]["index"] == int(ref.argmax()), f"{name} top-1 is torchvision's")
            check(res["top"][0]["label"] == labels[int(ref.argmax())], f"{name} top-1 label from metadata")
            p = torch.softmax(ref, 0)[int(ref.argmax())].item()
            check(abs(res["top"][0]["probability"] - p) < 1e-5, f"{name} probability {p:.6f}")
            check(len(res["top"]) == 3, f"{name} --topk 3 gives 3 classes")
        sha = hashlib.sha256(open(blob, "rb").read()).hexdigest()
        check(out[0]["model"] == {"arch": "resnet18", "model_version": "1.2.3", "sha256": sha},
              "model provenance: arch, model_version, blob sha256")
        check(out[0]["file"] == npy, "file field names the input")

    one = subprocess.run([BIN, "classify", "--model", blob, "--logits", "--threads", "1", npy, bmp],
                         capture_output=True).stdout
    two = subprocess.run([BIN, "classify", "--model", blob, "--logits", "--threads", "2", "--batch", "1",
                          npy, bmp], capture_output=True).stdout
    check(one == two and one, "same bytes for 1 and 2 threads, batched or not")

    bad_img = os.path.join(tmp, "broken.bmp")
    open(bad_img, "wb").write(open(bmp, "rb").read()[:100])
    bad_npy = os.path.join(tmp, "wrong.npy")            # 4 channels: not an RGB input
    np.save(bad_npy, np.zeros((4, 32, 32), "<f4"))
    nan_npy = os.path.join(tmp, "nan.npy")              # non-finite input: refused, not classified
    a = np.zeros((3, 32, 32), "<f4")
    a[1, 2, 3] = np.nan
    np.save(nan_npy, a)
    inf_npy = os.path.join(tmp, "inf.npy")
    np.save(inf_npy, np.full((1, 3, 32, 32), np.inf, "<f4"))
    rc, out, err = run("--model", blob, bad_img, npy, bad_npy, nan_npy, inf_npy, os.path.join(tmp, "missing.png"))
    check(rc == 1, f"bad inputs give exit 1 (got {rc})")
    check(len(out) == 1 and out[0]["file"] == npy, "the good input's result is still printed")
    for f in (bad_img, bad_npy, nan_npy, inf_npy, "missing.png"):
        check(f in err, f"stderr names {os.path.basename(f)}")
    check("(channel 1, y 2, x 3) is NaN" in err, "the NaN is located")

    # ---- resize_mode squash: the same weights, exported by the command line users run --------
    labels_json = os.path.join(tmp, "labels.json")
    json.dump(labels, open(labels_json, "w"))
    common = ["--arch", "resnet18", "--random", "--seed", "5", "--labels", labels_json, "--input-size", "64",
              "--model-version", "1.2.3"]
    squash_blob, plain_blob = os.path.join(tmp, "squash.safetensors"), os.path.join(tmp, "plain.safetensors")
    export.main(common + ["--resize-mode", "squash", "--out", squash_blob])
    export.main(common + ["--out", plain_blob])
    meta = {p: json.loads(open(p, "rb").read()[8:8 + struct.unpack("<Q", open(p, "rb").read(8))[0]])["__metadata__"]
            for p in (squash_blob, plain_blob)}
    check(meta[squash_blob].get("resize_mode") == "squash", "export.py --resize-mode squash writes resize_mode")
    check("resize_mode" not in meta[plain_blob], "export.py without --resize-mode writes no resize_mode key")
    p = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools",
                                                     "export.py")] + common +
                       ["--resize-mode", "squash", "--meta", "resize=73", "--out", os.path.join(tmp, "x.safetensors")],
                       capture_output=True, text=True)
    check(p.returncode != 0 and "resize_mode squash" in p.stderr and not os.path.exists(os.path.join(tmp, "x.safetensors")),
          f"export.py refuses --resize-mode squash with a resize of its own ({p.stderr.strip()})")
    with torch.no_grad():
        t = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
        t = TF.resize(t, [64, 64], antialias=True)  # transforms.Resize((64, 64)): aspect not kept
        t = TF.normalize(t.float() / 255, export.IMAGENET_MEAN, export.IMAGENET_STD)
        ref_sq = model(t[None])[0]
    rc, out, err = run("--model", squash_blob, "--logits", "--threads", "1", bmp)
    check(rc == 0 and len(out) == 1, f"classify with a squash blob exits 0 (rc {rc}, {err.strip()})")
    if len(out) == 1:
        got = torch.tensor(out[0]["logits"])
        d = (got - ref_sq).abs().max().item()
        check(d <= 1e-4 * ref_sq.abs().max().item(), f"squash logits match torchvision Resize((64, 64)) (max|d| {d:.3g})")
        dc = (got - ref_img).abs().max().item()
        check(dc > 1e-2, f"squash logits differ from the crop-mode ones (max|d| {dc:.3g})")
    rc, out, err = run("--model", plain_blob, "--logits", "--threads", "1", bmp)
    if rc == 0 and len(out) == 1:
        d = (torch.tensor(out[0]["logits"]) - ref_img).abs().max().item()
        check(d <= 1e-4 * ref_img.abs().max().item(), f"a blob without resize_mode is crop mode (max|d| {d:.3g})")
    else:
        check(False, f"classify with the plain export exits 0 (rc {rc}, {err.strip()})")
    bad = os.path.join(tmp, "squash73.safetensors")
    with open(squash_blob, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["__metadata__"]["resize"] = "73"
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(bad, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data[8 + n:])
    rc, out, err = run("--model", bad, bmp)
    check(rc == 1 and not out and bad in err and "'resize_mode' squash" in err and "'resize' = 73" in err,
          f"a squash blob with resize 73 is refused naming the blob and the keys ({err.strip()})")

    rc, _, err = run("--model", os.path.join(tmp, "nope.safetensors"), npy)
    check(rc == 1 and "nope.safetensors" in err, "a missing blob is named, exit 1")
    rc, _, err = run(npy)
    check(rc == 2, "no --model is a usage error (exit 2)")
    print(f"{len(failures)} failed")
    sys.exit(1 if failures else 0)


main()
