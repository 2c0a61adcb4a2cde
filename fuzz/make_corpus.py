#!/usr/bin/python3
"""fuzz/make_corpus.py [--bin build/medinfer] - write the seed corpora fuzz/corpus/<harness>/.

A few small valid inputs per parser, for libFuzzer to mutate from, plus inputs that each
reach one refusal. Run once by hand and commit the result (`make fuzz` and `make test` only read
the corpora); regression inputs for fixed bugs are added to the same directories by hand and
are not written here. Blobs come from tools/export.py's writer, .npy files from numpy, images
from PIL, DICOM files from tests/ref_dicom.py, audit DBs from `medinfer inspect --audit` itself
(so their hash chains are the real ones), with SQLite pages of 512 bytes to keep them small.

Needs python3-torch (tools/export.py imports it), python3-numpy, python3-pil, python3-pydicom
and dcmtk (tests/ref_dicom.py), and a built medinfer. The audit rows carry the time they were
written, so a rerun changes those files.
"""
import argparse
import io
import json
import os
import sqlite3
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import export  # noqa: E402  (tools/export.py: the blob writer users run)

OUT = os.path.join(ROOT, "fuzz", "corpus")


def put(harness, name, data):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def blob_bytes(tensors, meta):
    with tempfile.TemporaryDirectory() as t:
        p = os.path.join(t, "b.safetensors")
        export.write_safetensors(p, tensors, meta)
        return open(p, "rb").read()


def raw_blob(header, data=b"", pad=True):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


SITES = ["esophagus", "cardia", "fundus", "antrum"]
META = {"arch": "resnet18", "format_version": "1", "model_version": "2026.11.2",
        "created": "2026-11-02T10:00:00Z", "num_classes": "4", "labels": json.dumps(SITES),
        "input_size": "32", "resize": "37", "mean": "[0.485, 0.456, 0.406]",
        "std": "[0.229, 0.224, 0.225]", "site_order": json.dumps(SITES[::-1]),
        "site_groups": json.dumps({"upper": SITES[:2], "stomach": SITES[2:]}),
        "endoqc_min_frames": "2", "endoqc_site_threshold": "3", "endoqc_min_prob": "0.5"}


def safetensors():
    g = torch.Generator().manual_seed(0)
    t = {"conv1.weight": torch.randn(2, 3, 1, 1, generator=g), "fc.bias": torch.randn(4, generator=g),
         "h16": torch.randn(3, generator=g).half(), "b16": torch.randn(2, generator=g).bfloat16(),
         "f64": torch.randn(2, generator=g).double(), "bn.num_batches_tracked": torch.tensor(7),
         "mask": torch.tensor([True, False, True]), "u": torch.arange(5, dtype=torch.uint8)}
    put("safetensors", "ok_all_dtypes", blob_bytes(t, META))
    put("safetensors", "ok_no_metadata", blob_bytes({"a": torch.ones(2, 2)}, None))
    put("safetensors", "ok_empty_and_scalar",
        blob_bytes({"e": torch.zeros(0, 3), "s": torch.tensor(2.5), "e16": torch.zeros(0).half()},
                   {"arch": "test"}))
    put("safetensors", "ok_metadata_only", blob_bytes({}, {"arch": "x", "num_classes": "1",
                                                           "labels": "[\"only\"]"}))
    # a detector's configuration (nn/rcnn.c) and the echo pipeline's keys
    put("safetensors", "ok_detector_meta", blob_bytes({}, {
        "arch": "fasterrcnn_c4", "backbone": "resnet18", "min_size": "256", "max_size": "800",
        "image_mean": "[0.0]", "image_std": "[1.0]", "anchors": "[[40, 100], [60.5, 150], [90, 200]]",
        "rpn_pre_nms_top_n": "600", "rpn_post_nms_top_n": "300", "rpn_nms_thresh": "0.7",
        "rpn_score_thresh": "0.0", "box_score_thresh": "0.05", "box_nms_thresh": "0.5",
        "box_detections_per_img": "100", "roi_output_size": "7", "roi_sampling_ratio": "2",
        "echo_role": "cycle_detector", "whiten": "zscore", "echo_min_score": "0.5", "crop_margin": "0.2"}))
    put("safetensors", "ok_detector_sizes_ratios", blob_bytes({}, {
        "arch": "fasterrcnn_c4", "anchor_sizes": "[32, 64, 128]", "anchor_ratios": "[0.5, 1, 2]",
        "image_mean": "[0.485, 0.456, 0.406]", "image_std": "[0.229, 0.224, 0.225]"}))
    put("safetensors", "ok_detector_fpn", blob_bytes({}, {
        "arch": "fasterrcnn_fpn", "backbone": "resnet18", "anchor_sizes": "[[32, 40], [64, 80], [128, 160], "
        "[256, 320], [512, 640]]", "anchor_ratios": "[0.5, 1, 2]", "roi_canonical_scale": "112",
        "roi_canonical_level": "4", "bn_eps": "0.0", "min_size": "512", "max_size": "640"}))
    # a smaller pyramid: returned_layers and fpn_channels, as many anchor levels as maps + 'pool'
    put("safetensors", "ok_detector_fpn_returned", blob_bytes({}, {
        "arch": "fasterrcnn_fpn", "backbone": "resnet18", "returned_layers": "[1, 2, 3]", "fpn_channels": "64",
        "anchor_sizes": "[[12, 20], [28, 40], [56, 80], [112, 160]]", "anchor_ratios": "[0.5, 1, 2]",
        "min_size": "224", "max_size": "224", "high_risk_labels": "[\"adenomatous polyp\", \"ulcer\"]"}))
    put("safetensors", "ok_detector_score_threshold", blob_bytes({}, {
        "arch": "fasterrcnn_fpn", "num_classes": "2", "labels": "[\"__background__\", \"polyp\"]",
        "high_risk_labels": "[\"polyp\"]", "score_threshold": "0.7"}))
    put("safetensors", "bad_detector_score_threshold", blob_bytes({}, {
        "arch": "fasterrcnn_fpn", "num_classes": "2", "score_threshold": "0.7x"}))
    put("safetensors", "bad_detector_fpn_returned", blob_bytes({}, {
        "arch": "fasterrcnn_fpn", "backbone": "resnet18", "returned_layers": "[3, 3.5]", "fpn_channels": "0"}))
    # numbers beyond int (1e309 parses as inf): refused before any cast to an integer
    put("safetensors", "bad_detector_huge_numbers", blob_bytes({}, {
        "arch": "fasterrcnn_fpn", "returned_layers": "[1e309]", "fpn_channels": "1e309",
        "min_size": "-1e309", "anchor_sizes": "[[1e309]]", "roi_sampling_ratio": "1e19"}))
    # unpadded header: the tensors start at odd offsets and are copied to aligned memory
    put("safetensors", "ok_unaligned", raw_blob(
        {"u": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
         "f": {"dtype": "F32", "shape": [2], "data_offsets": [3, 11]},
         "h": {"dtype": "F16", "shape": [1], "data_offsets": [11, 13]}},
        b"\x09\x08\x07" + struct.pack("<2f", 0.25, -1.0) + struct.pack("<e", 0.5), pad=False))
    put("safetensors", "bad_overlap", raw_blob(
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8)))
    put("safetensors", "bad_hole", raw_blob(
        {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8)))
    put("safetensors", "bad_duplicate", raw_blob(
        b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
        b'"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', bytes(8)))
    put("safetensors", "bad_labels_count", blob_bytes({"a": torch.ones(1)}, dict(META, num_classes="5")))
    put("safetensors", "bad_mean_nan", blob_bytes({"a": torch.ones(1)}, {"mean": "[NaN, 0, 0]"}))
    # resize_mode: squash (Resize((S, S)); 'resize' absent or equal to input_size), crop stated,
    # an unknown mode, and squash contradicted by a 'resize' of its own
    no_resize = {k: v for k, v in META.items() if k != "resize"}
    put("safetensors", "ok_resize_mode_squash", blob_bytes({}, dict(no_resize, resize_mode="squash")))
    put("safetensors", "ok_resize_mode_squash_resize", blob_bytes({}, dict(META, resize_mode="squash", resize="32")))
    put("safetensors", "ok_resize_mode_crop", blob_bytes({}, dict(META, resize_mode="crop")))
    put("safetensors", "bad_resize_mode_unknown", blob_bytes({}, dict(META, resize_mode="stretch")))
    put("safetensors", "bad_resize_mode_squash_resize", blob_bytes({}, dict(META, resize_mode="squash")))
    put("safetensors", "bad_header_length", struct.pack("<Q", 1 << 40) + b"{}")


def npy():
    def save(name, a, version=None):
        f = io.BytesIO()
        if version:
            np.lib.format.write_array(f, a, version=version)
        else:
            np.save(f, a)
        put("npy", name, f.getvalue())
    x = np.arange(3 * 4 * 4, dtype="<f4").reshape(3, 4, 4) / 7
    save("ok_chw", x)
    save("ok_nchw_v2", x[None], version=(2, 0))
    save("ok_v3", x[:, :2, :2], version=(3, 0))
    save("ok_scalar", np.float32(1.5).reshape(()))
    save("ok_1d", np.array([1, 2, 3], dtype="<f4"))
    save("ok_empty", np.zeros((0, 2), dtype="<f4"))
    save("bad_float64", x.astype("<f8"))
    save("bad_big_endian", x.astype(">f4"))
    save("bad_fortran", np.asfortranarray(x))
    save("bad_int", np.arange(4, dtype="<i4"))


def image():
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    def save(name, im, fmt, **kw):
        f = io.BytesIO()
        im.save(f, fmt, **kw)
        put("image", name, f.getvalue())
        return f.getvalue()
    save("ok_rgb.png", rgb, "PNG")
    save("ok_grey.png", rgb.convert("L"), "PNG")
    save("ok_rgba.png", rgb.convert("RGBA"), "PNG")
    save("ok_palette.png", rgb.convert("P"), "PNG")
    save("ok_1x1.png", rgb.crop((0, 0, 1, 1)), "PNG")
    save("ok_strip_1x40.png", Image.fromarray(rng.integers(0, 256, (40, 1, 3), dtype=np.uint8)), "PNG")
    jpg = save("ok.jpg", rgb, "JPEG", quality=90)
    save("ok_progressive.jpg", rgb, "JPEG", progressive=True)
    save("ok_grey.jpg", rgb.convert("L"), "JPEG")
    save("ok_5x3.bmp", rgb.crop((0, 0, 5, 3)), "BMP")        # rows padded to 4 bytes
    save("ok_palette.bmp", rgb.convert("P"), "BMP")
    save("bad_format.gif", rgb, "GIF")                      # stb_image reads these; we do not
    save("bad_format.ppm", rgb, "PPM")
    save("bad_format.tga", rgb, "TGA")
    put("image", "bad_truncated.jpg", jpg[:len(jpg) * 2 // 3])
    bmp = open(os.path.join(OUT, "image", "ok_5x3.bmp"), "rb").read()
    put("image", "bad_truncated.bmp", bmp[:-7])
    # headers claiming more pixels than we decode (but not more than stb_image's own limit, so
    # that ours is what refuses them), before anything is decoded
    f = io.BytesIO()
    Image.new("L", (1, 1)).save(f, "PNG")
    for name, w, h in (("bad_too_wide.png", 40000, 20), ("bad_too_many_pixels.png", 30000, 30000)):
        png = bytearray(f.getvalue())
        png[16:24] = struct.pack(">II", w, h)
        put("image", name, bytes(png))


def lesionseg():
    """fuzz_lesionseg: what `medinfer lesionseg` accepts (colour, 32 x 32 and up) and one input
    per refusal; the first bytes of a video; a PNG header beyond its pixel limit."""
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (33, 40, 3), dtype=np.uint8))
    def save(name, im, fmt, **kw):
        f = io.BytesIO()
        im.save(f, fmt, **kw)
        put("lesionseg", name, f.getvalue())
        return f.getvalue()
    png = save("ok_rgb_40x33.png", rgb, "PNG")
    save("ok_40x33.jpg", rgb, "JPEG", quality=80)
    save("ok_40x33.bmp", rgb, "BMP")
    save("bad_grey.png", rgb.convert("L"), "PNG")
    save("bad_grey_in_rgb.png", rgb.convert("L").convert("RGB"), "PNG")
    save("bad_small_20x33.png", rgb.crop((0, 0, 20, 33)), "PNG")
    save("bad_format.gif", rgb, "GIF")
    put("lesionseg", "bad_truncated.png", png[:len(png) // 2])
    big = bytearray(png)
    big[16:24] = struct.pack(">II", 5000, 4000)   # within stb_image's limits, beyond the pipeline's
    put("lesionseg", "bad_header_5000x4000.png", bytes(big))
    put("lesionseg", "bad_video_head.mp4", b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41")
    put("lesionseg", "bad_text.txt", b"not an image\n")


HEX64 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SIG128 = "ab" * 64


def manifest():
    m = {"format": "medinfer-manifest-v1", "model": "sites", "model_version": "2026.11.3",
         "released": "2026-11-20", "blob_url": "../blobs/sites-2026.11.3.safetensors", "size": 23466,
         "sha256": HEX64, "key_id": "0123456789abcdef", "signature": SIG128,
         "hardware": ["0A1B-2C3D-4E5F-6A7B", "ffff0000ffff0000"]}
    put("manifest", "ok_relative_url.json", json.dumps(m, indent=1).encode())
    put("manifest", "ok_absolute_url.json",
        json.dumps(dict(m, blob_url="https://cdn.example.org/b/x.safetensors", hardware=[])).encode())
    put("manifest", "bad_version.json", json.dumps(dict(m, model_version="2026.x")).encode())
    put("manifest", "bad_missing_sha256.json", json.dumps({k: v for k, v in m.items() if k != "sha256"}).encode())
    put("manifest", "bad_size.json", json.dumps(dict(m, size=1.5)).encode())
    put("manifest", "ok_min_accuracy.json", json.dumps(dict(m, min_reference_accuracy=0.9)).encode())
    put("manifest", "bad_min_accuracy.json", json.dumps(dict(m, min_reference_accuracy=1.5)).encode())
    put("manifest", "bad_trailing.json", json.dumps(m).encode() + b"\n{}")
    put("manifest", "ok.sig", ("medinfer-signature-v1\nalgorithm: ed25519\nkey-id: 0123456789abcdef\n"
                               f"sha256: {HEX64}\nmodel-version: 2026.11.3\nsignature: {SIG128}\n").encode())


def audit(medinfer):
    blob = os.path.join(OUT, "safetensors", "ok_metadata_only")
    with tempfile.TemporaryDirectory() as t:
        def db(name, rows, sql=None):
            p = os.path.join(t, name)
            c = sqlite3.connect(p)  # 512-byte pages: three small tables in a few KiB
            c.executescript("PRAGMA page_size = 512; CREATE TABLE t(x); DROP TABLE t;")
            c.close()
            for _ in range(rows):
                subprocess.run([medinfer, "inspect", "--audit", p, blob], check=True,
                               stdout=subprocess.DEVNULL, env=dict(os.environ, MEDINFER_TRUST=""))
            c = sqlite3.connect(p)
            if sql:
                c.executescript(sql)
            c.commit()
            c.execute("VACUUM")
            c.close()
            put("audit", name, open(p, "rb").read())
        db("ok_three_rows.db", 3)
        db("ok_one_row.db", 1)
        db("bad_edited.db", 3, "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET result = '{}' WHERE seq = 2;")
        db("bad_deleted.db", 3, "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 2;")
        db("bad_tail_cut.db", 2, "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 2;")
        db("bad_relinked.db", 2, "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET prev_hash = row_hash WHERE seq = 2;")
        p = os.path.join(t, "other.db")
        c = sqlite3.connect(p)
        c.executescript("PRAGMA page_size = 512; CREATE TABLE results(seq INTEGER PRIMARY KEY, r TEXT);"
                        "INSERT INTO results(r) VALUES ('x');")
        c.close()
        put("audit", "bad_not_audit.db", open(p, "rb").read())
    put("audit", "bad_not_sqlite", b"SQLite format 2\x00" + bytes(100))


def dicom():
    """The DICOM test fixtures (tests/ref_dicom.py: pydicom, DCMTK's encoders), the small ones:
    each pixel layout and transfer syntax the reader decodes, and one file per refusal."""
    with tempfile.TemporaryDirectory() as t:
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "ref_dicom.py"), t], check=True,
                       stdout=subprocess.DEVNULL)
        for name in ("us_mmode", "mono1_16", "mono2_16_window", "rgb", "jpeg_baseline", "jpeg_rgb", "rle",
                     "jpegls", "multiframe"):
            put("dicom", f"ok_{name}.dcm", open(os.path.join(t, "dicom", name + ".dcm"), "rb").read())
        for name in ("no_pixels", "cmyk", "huge", "zero_rows", "short_pixels", "jpeg2000", "cut_in_pixels"):
            put("dicom", f"bad_{name}.dcm", open(os.path.join(t, "dicom", name + ".dcm"), "rb").read())


def slide():
    """fuzz_slide: 'P' + property fields (see fuzz/fuzz_slide.c), and 'F' + a file: tiny tiled
    TIFFs that OpenSlide opens as generic-tiff (tifffile, one level and a pyramid; vips, JPEG
    tiles) and as aperio (an Aperio ImageDescription), a PNG, a cut TIFF and text."""
    import tifffile
    for name, fields in {"ok_mpp": "0.499\n0.499", "ok_tiff_cm": "~\n~\n20000\n20000\ncentimeter",
                         "ok_tiff_inch": "~\n~\n50800\n25400\ninch", "ok_unit_none": "~\n~\n1\n1\nnone",
                         "bad_mpp": "-1\nnan", "bad_one_mpp": "0.5", "bad_res": "~\n~\n0x10\n1e999\ncentimeter"}.items():
        put("slide", f"props_{name}", b"P" + fields.encode())
    y, x = np.mgrid[0:48, 0:64]
    rgb = np.stack([x * 4, y * 5, (x + y) * 2], -1).astype(np.uint8)
    opts = dict(tile=(16, 16), photometric="rgb", compression="zlib")

    def tiff(levels, **kw):
        b = io.BytesIO()
        with tifffile.TiffWriter(b) as t:
            for k, lv in enumerate(levels):
                t.write(lv, subfiletype=1 if k else 0, resolution=(20000 / 2**k, 20000 / 2**k),
                        resolutionunit="CENTIMETER", **opts, **(kw if k == 0 else {}))
        return b.getvalue()

    put("slide", "file_generic_1level.tif", b"F" + tiff([rgb]))
    pyr = tiff([rgb, rgb[::2, ::2], rgb[::4, ::4]])
    put("slide", "file_generic_pyramid.tif", b"F" + pyr)
    put("slide", "file_aperio.svs", b"F" + tiff([rgb], metadata=None, description="Aperio Image Library v10.0.50\r\n"
                                                "64x48 [0,0 64x48] (16x16) -|AppMag = 20|MPP = 0.4990"))
    put("slide", "file_cut.tif", b"F" + pyr[:len(pyr) // 2])
    with tempfile.TemporaryDirectory() as t:
        Image.fromarray(rgb).save(os.path.join(t, "in.png"))
        subprocess.run(["vips", "tiffsave", os.path.join(t, "in.png"), os.path.join(t, "out.tif"), "--tile",
                        "--pyramid", "--compression", "jpeg", "--Q", "50", "--tile-width", "16", "--tile-height", "16",
                        "--xres", "2000", "--yres", "2000"], check=True)
        put("slide", "file_vips_jpeg.tif", b"F" + open(os.path.join(t, "out.tif"), "rb").read())
    b = io.BytesIO()
    Image.fromarray(rgb[:8, :8]).save(b, "PNG")
    put("slide", "file_small.png", b"F" + b.getvalue())
    put("slide", "file_text", b"Fthis is not a slide\n")


TOKENS = (b"# terminals and the workstation\nt1-token-0123456789abcdef terminal T1\n"
          b"t2-token-0123456789abcdef terminal T2\nws-token-0123456789abcdef workstation WS\n")


def assist_http():
    """target \\n Authorization \\n Content-Type \\n token file (fuzz/fuzz_assist_http.c)"""
    def req(target, auth, ctype, tokens=TOKENS):
        return target.encode() + b"\n" + auth.encode() + b"\n" + ctype.encode() + b"\n" + tokens
    put("assist_http", "ok_frame", req("/v1/frames?exam=E000001-0a1b2c3d&timestamp_ms=1040&trigger=pedal",
                                       "Bearer t1-token-0123456789abcdef", "image/jpeg"))
    put("assist_http", "ok_encoded_query", req("/v1/frames?trigger=auto&timestamp_ms=0&exam=E%30%30_x.y-z",
                                               "bearer   ws-token-0123456789abcdef  ", "IMAGE/PNG; q=1"))
    put("assist_http", "ok_findings", req("/v1/exams/E000002-ffffffff/findings", "Bearer nope", "application/json"))
    put("assist_http", "ok_thumbnail", req("/v1/findings/12/thumbnail", "", ""))
    put("assist_http", "bad_query_twice", req("/v1/frames?exam=a&exam=b&timestamp_ms=1&trigger=auto", "Basic x", "text/plain"))
    put("assist_http", "bad_query_percent", req("/v1/frames?exam=%4&timestamp_ms=-1&trigger=auto", "", "image/jpeg"))
    put("assist_http", "bad_id_dotdot", req("/v1/exams/../close", "", ""))
    put("assist_http", "bad_tokens_short", req("/metrics", "", "", b"short terminal T1\n"))
    put("assist_http", "bad_tokens_role", req("/metrics", "", "", b"t1-token-0123456789abcdef doctor T1\n"))
    put("assist_http", "bad_tokens_twice", req("/metrics", "", "", TOKENS + b"t1-token-0123456789abcdef terminal T3\n"))


def assist_exam():
    """POST /v1/exams bodies (fuzz/fuzz_assist_exam.c)"""
    ok = {"terminal": "T1", "patient_id": "P-0001", "exam_number": "X-1", "age": 63, "sex": "F"}
    put("assist_exam", "ok", json.dumps(ok).encode())
    put("assist_exam", "ok_unicode", json.dumps({**ok, "patient_id": "M\u00fcller 7", "age": 0, "sex": "O"}).encode())
    put("assist_exam", "bad_missing_sex", json.dumps({k: v for k, v in ok.items() if k != "sex"}).encode())
    put("assist_exam", "bad_age", json.dumps({**ok, "age": 63.5}).encode())
    put("assist_exam", "bad_unknown_field", json.dumps({**ok, "name": "x"}).encode())
    put("assist_exam", "bad_truncated", json.dumps(ok).encode()[:30])
    put("assist_exam", "bad_trailing", json.dumps(ok).encode() + b" {}")
    put("assist_exam", "bad_twice", b'{"terminal": "T1", "terminal": "T2", "patient_id": "p", "exam_number": "1", "age": 1, "sex": "M"}')


def assist_frame():
    """frame bodies, first byte odd = image/png (fuzz/fuzz_assist_frame.c)"""
    rng = np.random.default_rng(0)
    for name, px in {"noise": rng.integers(40, 220, (24, 32, 3), dtype=np.uint8),
                     "dark": rng.integers(0, 10, (16, 16, 3), dtype=np.uint8),
                     "tiny": np.full((2, 2, 3), 200, np.uint8)}.items():
        for fmt, flag in (("PNG", b"\x01"), ("JPEG", b"\x00")):
            b = io.BytesIO()
            Image.fromarray(px).save(b, format=fmt)
            put("assist_frame", f"ok_{name}.{fmt.lower()}", flag + b.getvalue())
    b = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(b, format="PNG")
    put("assist_frame", "bad_png_as_jpeg", b"\x00" + b.getvalue())
    put("assist_frame", "bad_too_wide.png", b"\x01" + b.getvalue()[:16] + struct.pack(">II", 5000, 8) + b.getvalue()[24:])
    put("assist_frame", "bad_empty", b"\x01")


def assist_findings_db(path, rows, tamper=None):
    """A findings database as pipelines/assist/store.c writes it, built here from the definition in
    docs/assist.md ("Hash chain") with Python's hashlib and sqlite3, not with the C code: a corpus
    that the C verifier finds intact shows that both agree on the definition. rows: list of
    (table, {column: value}); tamper: SQL run afterwards (triggers dropped first)."""
    import hashlib
    cols = {"exams": ["exam_id", "terminal", "patient_id", "exam_number", "age", "sex", "opened", "opened_by"],
            "findings": ["exam_id", "terminal", "timestamp_ms", "received", "trigger", "type", "score", "probs", "box",
                         "high_risk", "model_arch", "model_version", "model_sha256", "thumbnail"],
            "events": ["time", "kind", "exam_id", "terminal", "finding_id", "detail"]}

    def enc(v):
        if isinstance(v, bytes):
            return hashlib.sha256(v).hexdigest().encode()
        if isinstance(v, float):
            return ("%.17g" % v).encode()
        return str(v).encode()

    if os.path.exists(path):
        os.remove(path)
    db = sqlite3.connect(path)
    db.execute("PRAGMA page_size=512")
    db.executescript("""
        CREATE TABLE exams (seq INTEGER PRIMARY KEY AUTOINCREMENT, exam_id TEXT NOT NULL UNIQUE, terminal TEXT NOT NULL,
          patient_id TEXT NOT NULL, exam_number TEXT NOT NULL, age INTEGER NOT NULL, sex TEXT NOT NULL,
          opened TEXT NOT NULL, opened_by TEXT NOT NULL, prev_hash TEXT NOT NULL, row_hash TEXT NOT NULL);
        CREATE TABLE findings (seq INTEGER PRIMARY KEY AUTOINCREMENT, exam_id TEXT NOT NULL, terminal TEXT NOT NULL,
          timestamp_ms INTEGER NOT NULL, received TEXT NOT NULL, trigger TEXT NOT NULL, type TEXT NOT NULL,
          score REAL NOT NULL, probs TEXT NOT NULL, box TEXT NOT NULL, high_risk INTEGER NOT NULL,
          model_arch TEXT NOT NULL, model_version TEXT NOT NULL, model_sha256 TEXT NOT NULL,
          thumbnail BLOB NOT NULL, prev_hash TEXT NOT NULL, row_hash TEXT NOT NULL);
        CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, kind TEXT NOT NULL,
          exam_id TEXT NOT NULL, terminal TEXT NOT NULL, finding_id INTEGER NOT NULL, detail TEXT NOT NULL,
          prev_hash TEXT NOT NULL, row_hash TEXT NOT NULL);
        CREATE TRIGGER findings_no_update BEFORE UPDATE ON findings BEGIN SELECT RAISE(ABORT, 'append-only'); END;
    """)
    prev, seq = {t: "0" * 64 for t in cols}, {t: 0 for t in cols}
    for table, row in rows:
        seq[table] += 1
        h = hashlib.sha256(b"medinfer-assist-v1\n")
        for part in [table.encode(), str(seq[table]).encode()] + [enc(row[c]) for c in cols[table]] + [prev[table].encode()]:
            h.update(b"%d:" % len(part) + part + b"\n")
        names = ["seq"] + cols[table] + ["prev_hash", "row_hash"]
        values = [seq[table]] + [row[c] for c in cols[table]] + [prev[table], h.hexdigest()]
        db.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", values)
        prev[table] = h.hexdigest()
    db.commit()
    if tamper:
        db.executescript("DROP TRIGGER findings_no_update;" + tamper)
        db.commit()
    db.execute("VACUUM")
    db.close()
    with open(path, "rb") as f:
        return f.read()


def assist_db():
    """findings databases for --verify-db (fuzz/fuzz_assist_db.c), written independently of the C"""
    exam = {"exam_id": "E000001-0a1b2c3d", "terminal": "T1", "patient_id": "P-1", "exam_number": "X-1", "age": 63,
            "sex": "F", "opened": "2026-12-01T17:00:00.000Z", "opened_by": "WS"}
    finding = {"exam_id": "E000001-0a1b2c3d", "terminal": "T1", "timestamp_ms": 1040, "received": "2026-12-01T17:00:01.000Z",
               "trigger": "pedal", "type": "ulcer", "score": 0.9123456789, "probs": '{"__background__":0.05,"ulcer":0.95}',
               "box": "[1.5,2,30,40.25]", "high_risk": 1, "model_arch": "fasterrcnn_fpn", "model_version": "1",
               "model_sha256": "ab" * 32, "thumbnail": b"\x89PNG\r\n\x1a\n-not-really"}
    alert = {"time": "2026-12-01T17:00:01.000Z", "kind": "alert", "exam_id": "E000001-0a1b2c3d", "terminal": "T1",
             "finding_id": 1, "detail": '{"type":"ulcer"}'}
    rows = [("exams", exam), ("findings", finding), ("events", alert),
            ("findings", dict(finding, timestamp_ms=2080, high_risk=0, score=0.6))]
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "f.sqlite")
        put("assist_db", "ok_two_findings.sqlite", assist_findings_db(p, rows))
        put("assist_db", "ok_empty.sqlite", assist_findings_db(p, []))
        put("assist_db", "bad_edited_score.sqlite", assist_findings_db(p, rows, "UPDATE findings SET score = 0.99 WHERE seq = 1"))
        put("assist_db", "bad_thumbnail.sqlite", assist_findings_db(p, rows, "UPDATE findings SET thumbnail = x'00' WHERE seq = 2"))
        put("assist_db", "bad_deleted_tail.sqlite", assist_findings_db(p, rows, "DELETE FROM findings WHERE seq = 2"))
        put("assist_db", "bad_other_terminal.sqlite",
            assist_findings_db(p, [("exams", exam), ("findings", dict(finding, terminal="T2", high_risk=0))]))
        put("assist_db", "bad_not_sqlite", b"SQLite format 3\0" + b"\xff" * 200)


def assist_answer():
    """Answers of the diagnosis server to POST /v1/frames as the terminal reads them
    (pipelines/assist/terminal.c): judged with lesions, not judged, and one per refusal."""
    les = [{"type": "adenomatous polyp", "score": 0.91, "probs": {"adenomatous polyp": 0.91, "ulcer": 0.05},
            "box": [10.5, 20, 110, 140.25]},
           {"type": "ulcer", "score": 0.55, "probs": {}, "box": [200, 10, 230, 50]}]
    a = {"exam_id": "e-7", "terminal": "T1", "timestamp_ms": 1234, "trigger": "auto", "judged": True,
         "reason": None, "lesions": les, "high_risk": True, "finding_ids": [4, 5],
         "model": {"arch": "fasterrcnn_fpn", "model_version": "2026.12.01.1", "sha256": "ab" * 32},
         "timing_ms": {"queue": 0.1, "decode": 2, "quality": 1, "inference": 80, "total": 84}}
    put("assist_answer", "ok_two_lesions.json", json.dumps(a).encode())
    put("assist_answer", "ok_not_judged.json", json.dumps(dict(a, judged=False, lesions=[], high_risk=False,
                                                               reason="too dark: mean luma 12.0 < 30.0")).encode())
    put("assist_answer", "ok_twenty_lesions.json",
        json.dumps(dict(a, lesions=[dict(les[0], score=i / 20) for i in range(20)])).encode())
    # a label that is not ASCII (UTF-8 from a server): the overlay's font covers ASCII only
    put("assist_answer", "ok_label_not_ascii.json",
        json.dumps(dict(a, lesions=[dict(les[0], type="l\u00e9sion \u00e9rosive \u2014 ulc\u00e8re")]),
                   ensure_ascii=False).encode())
    put("assist_answer", "bad_timestamp_range.json", json.dumps(dict(a, timestamp_ms=8.9e124)).encode())
    put("assist_answer", "bad_no_exam.json", json.dumps({k: v for k, v in a.items() if k != "exam_id"}).encode())
    put("assist_answer", "bad_box.json", json.dumps(dict(a, lesions=[dict(les[0], box=[1, 2, 3])])).encode())
    put("assist_answer", "bad_score.json", json.dumps(dict(a, lesions=[dict(les[0], score=1.5)])).encode())
    put("assist_answer", "bad_judged.json", json.dumps(dict(a, judged="yes")).encode())
    put("assist_answer", "bad_truncated.json", json.dumps(a).encode()[:100])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "medinfer"))
    ap.add_argument("--only", help="write only this harness's corpus (e.g. slide)")
    a = ap.parse_args()
    if a.only:
        globals()[a.only]()
        return
    safetensors()
    npy()
    image()
    manifest()
    audit(a.bin)
    dicom()
    slide()
    lesionseg()
    assist_http()
    assist_exam()
    assist_frame()
    assist_db()
    assist_answer()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"make_corpus.py: {OUT}: {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
