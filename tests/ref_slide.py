"""tests/ref_slide.py OUT - fixtures for tests/test_slide.c (pipelines/io/slide.c), in OUT/slide/.

What OpenSlide itself returns, through openslide-python, converted to RGB the way its deep-zoom
generator does (argb2rgba, then PIL's composite on a white background), and numpy area averages
of those pixels, the plain way (a weight matrix per axis, float64, rounded half up):

  pyramid.tif        800x600, 3 levels (downsample 1, 2, 4), tiled, deflate (lossless, so every
                     level's pixels are known exactly), resolution 20000 px/cm = 0.5 um/px, written
                     by tifffile as pages (OpenSlide 3.4.1 does not read SubIFD pyramids). Each
                     level holds different noise, so a read shows which level it came from.
  pyramid_l<k>.rgb   that level's pixels, raw RGB8
  vips_inch.tif      the same level 0 through `vips tiffsave --pyramid` with the resolution in
                     pixels per inch (mpp 0.5 again); checks the inch branch and vips's layout
  nores.tif          tifffile's default resolution (1 per unit "none"): mpp unknown
  bad_tile.tif       pyramid.tif with level 0's first tile overwritten (a decode error)
  small.png          97x61 noise (PIL)
  argb.bin / argb_rgb.bin   every (alpha, value) pair as premultiplied ARGB, and its RGB
                     through openslide-python's _convert + PIL composite
  cmu_<case>.rgb     reads of ../shared/data/wsi-he/CMU-1-Small-Region.svs (when present), see
                     CMU_CASES; the C test has the same table
  text.svs           a text file named like a slide
  claim_*.tif        small tiled TIFFs (64x48, 16x16 tiles: 12 tiles, 4 per row) patched to claim
                     more than they hold, each refused by pipelines/io/tiffcheck.c before OpenSlide
                     opens it (see claims() for the numbers the C test expects in the messages)
"""
import struct
import ctypes
import math
import os
import subprocess
import sys

import numpy as np
import openslide
import tifffile
from openslide import lowlevel
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
CMU = os.path.join(os.environ.get("MI_SHARED_DATA") or os.path.join(HERE, "..", "..", "shared", "data"),
                   "wsi-he", "CMU-1-Small-Region.svs")
# name: (x0, y0, ds, out_w, out_h)  - level 0 is the only level of this slide
CMU_CASES = {
    "l0": (1000, 1500, 1.0, 300, 200),
    "ds2": (101, 203, 2.0, 257, 190),
    "ds35": (7, 11, 3.5, 211, 173),
    "edge": (2100, 2900, 1.0, 256, 256),
    "edge_ds3": (2000, 2800, 3.0, 100, 90),
    "neg": (-37, -20, 1.0, 100, 80),
    "thumb256": (0, 0, 2967 / 256, 192, 256),
    # 2221 level columns: more rows than one read holds, so the C side works in two bands
    "bands": (0, 0, 8.25, 269, 485),
}


def to_rgb(rgba):
    """openslide.deepzoom's composite on a background (white here)."""
    bg = Image.new("RGB", rgba.size, (255, 255, 255))
    return np.asarray(Image.composite(rgba, bg, rgba))


def weights(n_out, r, n_src):
    w = np.zeros((n_out, n_src))
    for o in range(n_out):
        a, b = o * r, (o + 1) * r
        for k in range(math.floor(a), min(math.ceil(b), n_src)):
            w[o, k] = min(k + 1, b) - max(k, a)
    return w


def area(img, r, out_w, out_h):
    """img [H, W, 3] uint8 whose pixel (0, 0) is the read's origin; r source px per output px."""
    wy, wx = weights(out_h, r, img.shape[0]), weights(out_w, r, img.shape[1])
    s = np.stack([wy @ img[:, :, c].astype(np.float64) @ wx.T for c in range(3)], -1)
    s /= wy.sum(1)[:, None, None] * wx.sum(1)[None, :, None]
    return np.clip(np.floor(s + 0.5), 0, 255).astype(np.uint8)


def cmu(d):
    if not os.path.exists(CMU):
        print(f"ref_slide.py: {CMU} absent, no CMU fixtures", file=sys.stderr)
        return
    s = openslide.OpenSlide(CMU)
    for name, (x0, y0, ds, w, h) in CMU_CASES.items():
        if ds == 1:
            px = to_rgb(s.read_region((x0, y0), 0, (w, h)))
        else:
            src = to_rgb(s.read_region((x0, y0), 0, (math.ceil(w * ds) + 1, math.ceil(h * ds) + 1)))
            px = area(src, ds, w, h)
        assert px.shape == (h, w, 3)
        px.tofile(os.path.join(d, f"cmu_{name}.rgb"))


def pyramid(d):
    g = np.random.default_rng(7)
    levels = [g.integers(0, 256, (600 // f, 800 // f, 3), dtype=np.uint8) for f in (1, 2, 4)]
    opts = dict(tile=(128, 128), photometric="rgb", compression="zlib")
    with tifffile.TiffWriter(os.path.join(d, "pyramid.tif")) as t:
        for k, lv in enumerate(levels):
            t.write(lv, subfiletype=1 if k else 0, resolution=(20000 / 2**k, 20000 / 2**k),
                    resolutionunit="CENTIMETER", **opts)
    for k, lv in enumerate(levels):
        lv.tofile(os.path.join(d, f"pyramid_l{k}.rgb"))
    s = openslide.OpenSlide(os.path.join(d, "pyramid.tif"))
    assert s.level_count == 3 and s.level_downsamples == (1.0, 2.0, 4.0), s.level_downsamples
    for k, lv in enumerate(levels):  # OpenSlide returns the file's pixels
        assert (to_rgb(s.read_region((0, 0), k, lv.shape[1::-1])) == lv).all()
    # the inch variant through vips (pixels per mm on its command line, 2000 = 0.5 um/px)
    Image.fromarray(levels[0]).save(os.path.join(d, "pyramid_l0.png"))
    subprocess.run(["vips", "tiffsave", os.path.join(d, "pyramid_l0.png"), os.path.join(d, "vips_inch.tif"),
                    "--tile", "--pyramid", "--compression", "deflate", "--tile-width", "128", "--tile-height",
                    "128", "--xres", "2000", "--yres", "2000", "--resunit", "inch"], check=True)
    with tifffile.TiffWriter(os.path.join(d, "nores.tif")) as t:
        t.write(levels[1], **opts)
    # the same pyramid with level 0's first tile overwritten: opens, then fails to decode there
    data = bytearray(open(os.path.join(d, "pyramid.tif"), "rb").read())
    with tifffile.TiffFile(os.path.join(d, "pyramid.tif")) as t:
        off, n = t.pages[0].dataoffsets[0], t.pages[0].databytecounts[0]
    data[off:off + n] = b"\xff" * n
    open(os.path.join(d, "bad_tile.tif"), "wb").write(data)


def claims(d):
    """Small TIFFs that claim too much, patched in place after tifffile wrote them: the value is
    found through tifffile's record of where each tag's value lies."""
    img = np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8)

    def write(name, patch, **kw):
        path = os.path.join(d, name)
        tifffile.imwrite(path, img, tile=(16, 16), photometric="rgb", compression="zlib", **kw)
        data = bytearray(open(path, "rb").read())
        with tifffile.TiffFile(path) as t:
            bo = t.byteorder
            tags = t.pages[0].tags
            patch(data, bo, tags)
        open(path, "wb").write(data)

    def counts(data, bo, tags, i, v, big=False):
        """TileByteCounts with element i set to v, as a LONG (LONG8) array appended to the file
        (tifffile writes SHORTs for tiles this small)"""
        t = tags["TileByteCounts"]
        n = len(t.value)
        vals = list(t.value)
        vals[i] = v
        while len(data) % 8:
            data.append(0)
        off = len(data)
        data += struct.pack(bo + ("Q" if big else "I") * n, *vals)
        struct.pack_into(bo + "H", data, t.offset + 2, 16 if big else 4)
        struct.pack_into(bo + ("Q" if big else "I"), data, t.offset + (12 if big else 8), off)

    # the shape libFuzzer found: YResolution's count says 1 246 451 966 RATIONALs (9.97 GB)
    def yres_count(data, bo, tags):
        t = tags["YResolution"]
        struct.pack_into(bo + "I", data, t.offset + 4, 1246451966)
    write("claim_value_count.tif", yres_count, resolution=(20000, 20000), resolutionunit="CENTIMETER")
    # tile 3's byte count 0xF0000000 (3.75 GiB), the most a classic TIFF's LONG holds
    write("claim_tile_bytes.tif", lambda data, bo, tags: counts(data, bo, tags, 3, 0xF0000000))
    # BigTIFF, big-endian: tile 3 claims 9 GB
    write("claim_tile_bytes_big.tif", lambda data, bo, tags: counts(data, bo, tags, 3, 9 << 30, big=True),
          bigtiff=True, byteorder=">")
    # tile 5 claims 100 000 bytes: within the per-tile bound, past the end of the file
    write("claim_past_end.tif", lambda data, bo, tags: counts(data, bo, tags, 5, 100000))
    # 65552-pixel-wide tiles (the width libFuzzer's input had)
    write("claim_tile_side.tif",
          lambda data, bo, tags: struct.pack_into(bo + "I", data, tags["TileWidth"].valueoffset, 65552))


def argb(d):
    a, c = np.meshgrid(np.arange(256, dtype=np.uint32), np.arange(256, dtype=np.uint32), indexing="ij")
    v = (a << 24) | (c << 16) | ((255 - c) << 8) | (c // 2)   # every value, and values above alpha
    v = v.ravel().astype("<u4")
    v.tofile(os.path.join(d, "argb.bin"))
    buf = (len(v) * ctypes.c_uint32)(*v.tolist())   # what lowlevel.read_region hands it
    rgba = lowlevel._load_image(buf, (256, 256))
    to_rgb(rgba).tofile(os.path.join(d, "argb_rgb.bin"))


def main(out):
    d = os.path.join(out, "slide")
    os.makedirs(d, exist_ok=True)
    pyramid(d)
    claims(d)
    argb(d)
    g = np.random.default_rng(3)
    Image.fromarray(g.integers(0, 256, (61, 97, 3), dtype=np.uint8)).save(os.path.join(d, "small.png"))
    with open(os.path.join(d, "text.svs"), "w") as f:
        f.write("this is a text file, not a slide\n" * 20)
    cmu(d)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/fixtures")
