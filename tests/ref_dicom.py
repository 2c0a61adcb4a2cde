"""tests/ref_dicom.py OUT - DICOM fixtures for tests/test_dicom.c in OUT/dicom/.

Files are written by pydicom (what a scanner's export looks like, not what our reader likes);
the compressed ones are the same pixels passed through DCMTK's own encoders (dcmcjpeg, dcmcrle,
dcmcjpls), so that the C test sees the exact source pixels beside each. For each good file X.dcm,
X.gray holds the grey bytes the reader must give (rows x columns, row-major), computed here from
the source pixels: identity for 8-bit MONOCHROME2, BT.601 luma rounded for RGB
((299 R + 587 G + 114 B + 500) / 1000, integers), the DICOM linear VOI function (PS3.3 C.11.2.1.2)
for 16-bit, inverted for MONOCHROME1. The bad files each break one thing the reader refuses.
Needs python3-pydicom, python3-numpy and DCMTK's command-line tools (Debian dcmtk)."""
import os
import subprocess
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

OUT = os.path.join(sys.argv[1], "dicom")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(7)
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"          # Ultrasound Image Storage
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"     # Ultrasound Multi-frame Image Storage
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"            # Secondary Capture
SR_DOC = "1.2.840.10008.5.1.4.1.1.88.11"          # Basic Text SR: no pixels by nature


def path(name):
    return os.path.join(OUT, name)


def dataset(sop_class=SC_IMAGE, ts=ExplicitVRLittleEndian, modality="OT"):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ts
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "Test^Dicom"
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    return ds


def image(ds, px, photometric, bits_stored=None, frames=None):
    """px: [rows, cols] or [rows, cols, 3] (or with a leading frame axis when frames is given)."""
    a = np.asarray(px)
    shape = a.shape[1:] if frames else a.shape
    ds.Rows, ds.Columns = shape[0], shape[1]
    ds.SamplesPerPixel = 3 if len(shape) == 3 else 1
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = a.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if frames:
        ds.NumberOfFrames = frames
    ds.PixelData = a.astype(a.dtype.newbyteorder("<")).tobytes()
    return ds


def save(ds, name, gray=None):
    ds.save_as(path(name), write_like_original=False)
    if gray is not None:
        np.asarray(gray, dtype=np.uint8).tofile(path(name[:-4] + ".gray"))


def region(fmt, x0, y0, x1, y1, ux, uy, dx, dy):
    r = Dataset()
    r.RegionSpatialFormat = fmt
    r.RegionDataType = 1
    r.RegionFlags = 0
    r.RegionLocationMinX0, r.RegionLocationMinY0 = x0, y0
    r.RegionLocationMaxX1, r.RegionLocationMaxY1 = x1, y1
    r.PhysicalUnitsXDirection, r.PhysicalUnitsYDirection = ux, uy
    r.PhysicalDeltaX, r.PhysicalDeltaY = dx, dy
    return r


def voi_linear(x, c, w):
    """PS3.3 C.11.2.1.2.1, output range 0..255, rounded."""
    x = x.astype(np.float64)
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255
    y = np.where(x <= c - 0.5 - (w - 1) / 2, 0, np.where(x > c - 0.5 + (w - 1) / 2, 255, y))
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def dcmtk(tool, src, dst, *opts):
    subprocess.run([tool, *opts, path(src), path(dst)], check=True)


# An echo M-mode export: a 2D sector on top, the M-mode strip below (x in seconds, y in cm).
mono8 = ((np.arange(48)[None, :] * 5 + np.arange(40)[:, None] * 3) % 256).astype(np.uint8)
mono8[10:20, 10:30] = rng.integers(0, 256, (10, 20), dtype=np.uint8)
ds = image(dataset(US_IMAGE, modality="US"), mono8, "MONOCHROME2")
ds.SequenceOfUltrasoundRegions = Sequence([
    region(1, 0, 0, 47, 14, 3, 3, 0.03, 0.03),
    region(2, 2, 16, 45, 39, 4, 3, 0.004, 0.05),
])
save(ds, "us_mmode.dcm", mono8)

# 12 bits in 16, MONOCHROME1, no VOI window: min-max, then inverted
mono16 = rng.integers(100, 4001, (24, 32), dtype=np.uint16)
mono16[0, 0], mono16[0, 1] = 100, 4000
lo, hi = int(mono16.min()), int(mono16.max())
save(image(dataset(), mono16, "MONOCHROME1", bits_stored=12), "mono1_16.dcm",
     255 - voi_linear(mono16, (lo + hi + 1) / 2, hi - lo + 1))

# 16 bits with a VOI window that clips both ends
ds = image(dataset(modality="CT"), mono16, "MONOCHROME2", bits_stored=12)
ds.WindowCenter, ds.WindowWidth = 2000, 1000
save(ds, "mono2_16_window.dcm", voi_linear(mono16, 2000, 1000))

rgb = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)


def luma(px):
    c = px.astype(np.int64)  # uint8 * 587 would wrap
    return ((299 * c[..., 0] + 587 * c[..., 1] + 114 * c[..., 2] + 500) // 1000).astype(np.uint8)


save(image(dataset(), rgb, "RGB"), "rgb.dcm", luma(rgb))

# Compressed by DCMTK from the 8-bit source: JPEG baseline (lossy: compared within a tolerance),
# RLE and JPEG-LS lossless (exact); and colour JPEG (stored YBR_FULL_422). +sr: dcmcjpeg would
# otherwise stretch the pixel range to 0..255 before compressing (its default +sp)
smooth = (128 + 100 * np.sin(np.arange(64)[None, :] / 7.0) * np.cos(np.arange(48)[:, None] / 5.0)).astype(np.uint8)
save(image(dataset(), smooth, "MONOCHROME2"), "smooth_native.dcm", smooth)
dcmtk("dcmcjpeg", "smooth_native.dcm", "jpeg_baseline.dcm", "+eb", "+q", "90", "+sr")
smooth.tofile(path("jpeg_baseline.gray"))
dcmtk("dcmcrle", "smooth_native.dcm", "rle.dcm")
smooth.tofile(path("rle.gray"))
dcmtk("dcmcjpls", "smooth_native.dcm", "jpegls.dcm")
smooth.tofile(path("jpegls.gray"))
rgb_smooth = np.stack([smooth, smooth[::-1], np.full_like(smooth, 90)], axis=-1)
save(image(dataset(), rgb_smooth, "RGB"), "rgb_smooth_native.dcm")
dcmtk("dcmcjpeg", "rgb_smooth_native.dcm", "jpeg_rgb.dcm", "+eb", "+q", "90", "+sr")
os.remove(path("rgb_smooth_native.dcm"))
luma(rgb_smooth).tofile(path("jpeg_rgb.gray"))

frames = np.stack([mono8[:20, :30], 255 - mono8[:20, :30], mono8[20:, 18:]])
save(image(dataset(US_MULTIFRAME, modality="US"), frames, "MONOCHROME2", frames=3), "multiframe.dcm",
     frames[0])

# --- refused ---
ds = dataset(SR_DOC, modality="SR")
ds.ContentDate = "20260101"
save(ds, "no_pixels.dcm")

ds = image(dataset(), np.zeros((4, 4, 3), np.uint8), "RGB")
ds.SamplesPerPixel = 4
ds.PhotometricInterpretation = "CMYK"  # retired in 2007; no reader should still guess at it
ds.PixelData = bytes(4 * 4 * 4)
save(ds, "cmyk.dcm")

ds = image(dataset(), np.zeros((2, 2), np.uint16), "MONOCHROME2")
ds.Rows, ds.Columns = 65535, 65535
ds.PixelData = bytes(16)
save(ds, "huge.dcm")

ds = image(dataset(), np.zeros((2, 2), np.uint8), "MONOCHROME2")
ds.Rows = 0
save(ds, "zero_rows.dcm")

ds = image(dataset(), mono8, "MONOCHROME2")
ds.PixelData = mono8.tobytes()[:100]
save(ds, "short_pixels.dcm")

# JPEG 2000 is a valid syntax DCMTK's free toolkit has no decoder for
ds = image(dataset(ts="1.2.840.10008.1.2.4.90"), np.zeros((8, 8), np.uint8), "MONOCHROME2")
ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
ds["PixelData"].is_undefined_length = True
ds["PixelData"].VR = "OB"
ds.is_little_endian, ds.is_implicit_VR = True, False
ds.save_as(path("jpeg2000.dcm"), write_like_original=True)

data = open(path("us_mmode.dcm"), "rb").read()
with open(path("cut_in_pixels.dcm"), "wb") as f:
    f.write(data[:len(data) - 700])  # inside the Pixel Data value

with open(path("not_dicom.dcm"), "wb") as f:
    f.write(b"This is a radiology report, not an image.\n" * 8)

# sanity: pydicom reads back what it wrote (the compressed ones are DCMTK's)
for name in ("us_mmode.dcm", "mono1_16.dcm", "rgb.dcm", "multiframe.dcm", "jpeg_baseline.dcm"):
    assert pydicom.dcmread(path(name)).Rows > 0, name
print("ref_dicom: wrote", OUT)
