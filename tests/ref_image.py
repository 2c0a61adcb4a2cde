"""tests/ref_image.py OUT - fixtures for tests/test_image.c: small test images and, for each, the
output of torchvision's classifier transform computed from the same decoded pixels.

    Resize(resize, BILINEAR, antialias=True) -> CenterCrop(crop) -> ToTensor -> Normalize(mean, std)

and, for blobs with resize_mode squash, the transform of a model trained on whole frames:

    Resize((S, S), BILINEAR, antialias=True) -> ToTensor -> Normalize(mean, std)

applied to the pixels as a uint8 tensor [3, H, W] (what mi_preprocess_rgb8 implements; ToTensor
of a uint8 image is x / 255 in float32). Images are written with PIL; the pixels stored beside
each are PIL's decode, which for PNG and BMP is the file's exact content, so the C test first checks
that stb_image decodes the same pixels, then that our transform equals this one. JPEG decoders
differ in their last bits, so for JPEGs (and the real photos in ../shared/data) the C test dumps the
pixels stb_image decoded as .npy and runs this script in --transform mode on them:

    ref_image.py --transform DIR   for each DIR/X.npy ([H, W, 3] float32 of uint8 values) writes
                                   DIR/X.<resize>_<crop>.npy for every (resize, crop) in CONFIGS
                                   and DIR/X.sq<S>.npy for every S in SQUASH

torch is forced onto its scalar CPU kernels (ATEN_CPU_CAPABILITY=default, read when torch loads):
the AVX2 build contracts some multiply-adds of the antialiased resize into FMAs, which moves about
one resized pixel in 10^5 by one uint8 step. The default dispatch's output is written too
(*_dispatch.safetensors, from a child process), and the C test states how far we are from it."""
import json
import os
import subprocess
import sys

DISPATCH = "--dispatch" in sys.argv
if not DISPATCH:
    os.environ["ATEN_CPU_CAPABILITY"] = "default"
sys.argv = [a for a in sys.argv if a != "--dispatch"]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision import transforms as T  # noqa: E402
from torchvision.transforms import InterpolationMode  # noqa: E402
from torchvision.transforms import functional as F  # noqa: E402

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
# (resize, crop): the ImageNet ratio at small sizes, crop larger than the resized image (zero
# padding), odd leftovers (half-to-even crop offsets), upscaling, and 1x1
CONFIGS = [(256, 224), (37, 32), (32, 28), (20, 24), (64, 64), (7, 5), (1, 1)]
# explicit (w, h) targets for mi_image_resize_aa: both directions, aspect not kept
RESIZES = [(17, 29), (80, 11), (3, 3)]
# squash sizes S (Resize((S, S))): against the fixtures below (wider 53x37, 301x19, 120x90;
# taller 41x97, 5x7; square 50x50) each S upscales, downscales, or does one per axis (53x37 -> 45:
# width down, height up; 41x97 -> 64: width up, height down); 224 is the clinical input size
SQUASH = [224, 64, 45, 24, 7, 1]


def transform(px, resize, crop):
    """px: uint8 [H, W, 3] numpy -> float32 [3, crop, crop] torch."""
    t = torch.from_numpy(np.ascontiguousarray(px)).permute(2, 0, 1).contiguous()
    t = T.Resize(resize, interpolation=InterpolationMode.BILINEAR, antialias=True)(t)
    t = T.CenterCrop(crop)(t)
    t = t.float().div(255)  # ToTensor on uint8 (convert_image_dtype: the same division)
    return T.Normalize(MEAN, STD)(t)


def squash(px, size):
    """px: uint8 [H, W, 3] numpy -> float32 [3, size, size] torch: Resize((size, size)), no crop."""
    t = torch.from_numpy(np.ascontiguousarray(px)).permute(2, 0, 1).contiguous()
    t = T.Resize((size, size), interpolation=InterpolationMode.BILINEAR, antialias=True)(t)
    return T.Normalize(MEAN, STD)(t.float().div(255))


def resize_only(px, w, h):
    t = torch.from_numpy(np.ascontiguousarray(px)).permute(2, 0, 1).contiguous()
    return F.resize(t, [h, w], interpolation=InterpolationMode.BILINEAR, antialias=True).permute(1, 2, 0)


def transform_dir(d):
    for f in sorted(os.listdir(d)):
        if not f.endswith(".npy") or f.count(".") != 1:
            continue
        a = np.load(os.path.join(d, f))
        px = a.astype(np.uint8)
        assert (px == a).all(), f"{f}: not uint8 values"
        for resize, crop in CONFIGS:
            np.save(os.path.join(d, f"{f[:-4]}.{resize}_{crop}.npy"), transform(px, resize, crop).numpy())
        for size in SQUASH:
            np.save(os.path.join(d, f"{f[:-4]}.sq{size}.npy"), squash(px, size).numpy())


def images():
    """name -> (PIL image, format, save options); seeded noise and gradients, the hardest inputs
    for rounding, in the modes stb_image converts (grey, RGBA, palette)."""
    from PIL import Image
    g = np.random.default_rng(0)

    def rgb(w, h):
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 7 % 256], -1)
        noise = g.integers(-40, 41, size=(h, w, 3))
        return np.clip(base + noise, 0, 255).astype(np.uint8)

    return {
        "noise_rgb.png": (Image.fromarray(rgb(53, 37)), "PNG", {}),
        "tall.bmp": (Image.fromarray(rgb(41, 97)), "BMP", {}),
        "grey.png": (Image.fromarray(rgb(60, 45)[:, :, 0]), "PNG", {}),
        "rgba.png": (Image.fromarray(np.concatenate([rgb(50, 50), g.integers(0, 256, (50, 50, 1), np.uint8)], -1)), "PNG", {}),
        "palette.png": (Image.fromarray(rgb(30, 20)).quantize(16), "PNG", {}),
        "tiny.png": (Image.fromarray(rgb(5, 7)), "PNG", {}),
        "wide.png": (Image.fromarray(rgb(301, 19)), "PNG", {}),
        "photo.jpg": (Image.fromarray(rgb(120, 90)), "JPEG", {"quality": 90}),
        "photo_444.jpg": (Image.fromarray(rgb(64, 48)), "JPEG", {"quality": 95, "subsampling": 0}),
        "progressive.jpg": (Image.fromarray(rgb(77, 61)), "JPEG", {"quality": 80, "progressive": True}),
        "grey.jpg": (Image.fromarray(rgb(40, 33)[:, :, 1]), "JPEG", {"quality": 85}),
    }


def main(out):
    import mi_ref
    from PIL import Image
    d = os.path.join(out, "image")
    os.makedirs(d, exist_ok=True)
    meta = {"mean": json.dumps(MEAN), "std": json.dumps(STD), "configs": json.dumps(CONFIGS),
            "resizes": json.dumps(RESIZES), "squash": json.dumps(SQUASH)}
    for name, (im, fmt, opts) in images().items():
        path = os.path.join(d, name)
        if not DISPATCH:
            im.save(path, fmt, **opts)
        px = np.array(Image.open(path).convert("RGB"))  # PIL's decode: exact for PNG and BMP
        t = {"pixels": torch.from_numpy(px)}
        for resize, crop in CONFIGS:
            t[f"pre_{resize}_{crop}"] = transform(px, resize, crop)
        for size in SQUASH:
            t[f"squash_{size}"] = squash(px, size)
        for w, h in RESIZES:
            t[f"resize_{w}x{h}"] = resize_only(px, w, h)
        mi_ref.export.write_safetensors(os.path.join(d, name + (".dispatch" if DISPATCH else "") + ".safetensors"),
                                        t, meta)
    if DISPATCH:
        return
    # files that are not images, or not whole ones
    png = open(os.path.join(d, "noise_rgb.png"), "rb").read()
    jpg = open(os.path.join(d, "photo.jpg"), "rb").read()
    bmp = open(os.path.join(d, "tall.bmp"), "rb").read()
    for name, data in {"truncated.png": png[:len(png) // 2], "truncated.jpg": jpg[:len(jpg) * 2 // 3],
                       "truncated.bmp": bmp[:-7], "headers_only.bmp": bmp[:100],
                       "empty.png": b"", "text.jpg": b"this is not a JPEG\n" * 10,
                       "bad_header.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4}.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    # .npy files for mi_npy_load: good ones from numpy itself (format versions 1 and 2) ...
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 8
    np.save(os.path.join(d, "good_v1.npy"), a)
    with open(os.path.join(d, "good_v2.npy"), "wb") as f:
        np.lib.format.write_array(f, a, version=(2, 0))
    np.save(os.path.join(d, "good_scalar.npy"), np.float32(2.5))
    np.save(os.path.join(d, "good_empty.npy"), np.zeros((0, 3), np.float32))
    # ... and bad ones, each wrong in one way
    np.save(os.path.join(d, "bad_f8.npy"), a.astype(np.float64))
    np.save(os.path.join(d, "bad_big_endian.npy"), a.astype(">f4"))
    np.save(os.path.join(d, "bad_fortran.npy"), np.asfortranarray(a))
    v1 = open(os.path.join(d, "good_v1.npy"), "rb").read()
    bad = {"bad_truncated.npy": v1[:-5], "bad_extra.npy": v1 + b"\0\0\0\0", "bad_magic.npy": b"\x93NUMPZ" + v1[6:],
           "bad_version.npy": v1[:6] + b"\x07\x00" + v1[8:], "bad_hlen.npy": v1[:8] + b"\xff\xff" + v1[10:],
           "bad_tiny.npy": v1[:7], "bad_shape.npy": v1.replace(b"(2, 3, 4)", b"(2, x, 4)"),
           "bad_header.npy": v1.replace(b"'descr'", b"'dtype'")}
    for name, data in bad.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    # torch's vectorized kernels, for the record (a fresh process: the capability is read at load)
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    subprocess.run([sys.executable, os.path.abspath(__file__), out, "--dispatch"], env=env, check=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--transform":
        transform_dir(sys.argv[2])
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        main(sys.argv[1] if len(sys.argv) > 1 else "build/fixtures")
