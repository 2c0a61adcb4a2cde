/* pipelines/io/slide.h - whole-slide images through OpenSlide (SVS, NDPI, MRXS, pyramidal tiled
 * TIFF, ... whatever the installed OpenSlide reads), and plain PNG/JPEG/BMP through
 * pipelines/io/image.h when OpenSlide does not recognise the file.
 *
 * Coordinates are level-0 pixels. A read asks for out_w x out_h RGB8 pixels of the level-0
 * rectangle that starts at integer (x0, y0) with `ds` level-0 pixels per output pixel on both axes:
 * output pixel (i, j) shows the level-0 square [x0 + i*ds, x0 + (i+1)*ds) x [y0 + j*ds, ...).
 *
 * Memory: an open OpenSlide slide holds its level table and OpenSlide's own tile cache (32 MiB in
 * OpenSlide 3.4.1, one per handle), whatever the slide's size. Each read or thumbnail call holds,
 * besides the caller's output, at most MI_SLIDE_READ_PIXELS * 4 bytes of pixels at the chosen
 * level plus out_w * 56 bytes of sums, freed before it returns; OpenSlide decodes whole tiles, at
 * most MI_SLIDE_MAX_TILE_SIDE^2 * 4 bytes each (a file claiming larger ones is refused at open).
 * The PNG/JPEG path keeps the whole decoded image (w*h*3 bytes) for the life of the handle; such
 * images are bounded by MI_IMAGE_MAX_PIXELS.
 *
 * Threads: one open slide may be read from any number of threads at once (OpenSlide handles are
 * thread-safe; the rest is read-only after open). There is no global state. After OpenSlide
 * reports an error on a handle (a corrupt tile, say), every later read of it fails too. */
#ifndef MI_IO_SLIDE_H
#define MI_IO_SLIDE_H

#include "medinfer.h"
#include "pipelines/io/image.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct mi_slide mi_slide;

#define MI_SLIDE_MAX_LEVELS   32            /* 2^31 downsample: any real pyramid fits */
#define MI_SLIDE_MAX_SIDE     (1ll << 31)   /* level-0 width or height; real slides are < 2^18 */
#define MI_SLIDE_MAX_OUT_SIDE (1 << 15)     /* out_w, out_h of one read */
#define MI_SLIDE_MAX_OUT_PIXELS (1 << 24)   /* out_w * out_h of one read */
#define MI_SLIDE_READ_PIXELS  (1 << 23)     /* level pixels one call holds at a time (32 MiB) */
#define MI_SLIDE_MIN_DS       (1.0 / 64)    /* ds range of a read: below 1 magnifies level 0 */
#define MI_SLIDE_MAX_DS       (1 << 20)
#define MI_SLIDE_MAX_COORD    (1ll << 40)   /* |x0|, |y0| */
#define MI_SLIDE_MAX_THUMB    4096          /* thumbnail max_side */
#define MI_SLIDE_MAX_TILE_SIDE 8192         /* a level's tiles (OpenSlide decodes one whole) */
/* microns per pixel accepted from a file (outside: unknown): 10 nm to 0.1 mm covers every scanner
 * objective and macro image; anything else is a unit mix-up or garbage */
#define MI_SLIDE_MPP_MIN      0.01
#define MI_SLIDE_MPP_MAX      100.0

typedef struct {
    int64_t w, h;                            /* level-0 size */
    int     levels;                          /* >= 1; level 0 is the finest */
    int64_t level_w[MI_SLIDE_MAX_LEVELS];
    int64_t level_h[MI_SLIDE_MAX_LEVELS];
    double  level_ds[MI_SLIDE_MAX_LEVELS];   /* level-0 pixels per level pixel (1 for level 0) */
    double  mpp_x, mpp_y;                    /* level-0 microns per pixel; 0 = unknown */
    char    vendor[32];                      /* OpenSlide's "aperio", "generic-tiff", ...;
                                                "png", "jpeg" or "bmp" for the stb path */
    char    mpp_source[192];                 /* where mpp came from, or why it is unknown */
} mi_slide_info;

/* Opens path with OpenSlide, or, when OpenSlide does not recognise it, as a PNG/JPEG/BMP (one
 * level, mpp unknown: the caller supplies it). Errors name the file and carry OpenSlide's own
 * message; a file neither reads gives both reasons. A TIFF or BigTIFF is checked first
 * (pipelines/io/tiffcheck.h): one whose directories, values or tiles claim more than the file
 * holds is refused before OpenSlide, which would allocate what they claim, opens it. */
mi_status mi_slide_open(mi_slide **s, const char *path);
void      mi_slide_close(mi_slide *s);                    /* NULL is fine */
const mi_slide_info *mi_slide_get_info(const mi_slide *s);
const char *mi_slide_path(const mi_slide *s);

/* The level a read at ds uses: the coarsest whose downsample is <= ds (1e-3 relative tolerance,
 * so Aperio's 4.0007 serves ds 4); 0 when ds is below every level's. */
int mi_slide_level_for_ds(const mi_slide *s, double ds);

/* out_w x out_h RGB8 pixels (rgb: out_w*out_h*3 bytes, row-major) of the level-0 rectangle at
 * (x0, y0), ds level-0 pixels per output pixel (see top). Read from level
 * mi_slide_level_for_ds(ds): copied as is when that level's downsample equals ds (drift over the
 * whole output under half a pixel), otherwise area-averaged (box filter, fractional coverage).
 * Transparent pixels are composited on white; pixels outside the slide are white (255,255,255).
 * *edge (may be NULL) is set when any output pixel's square reaches outside the slide. Refuses
 * ds, sizes and coordinates outside the MI_SLIDE_* bounds, and reads that would need more than
 * MI_SLIDE_READ_PIXELS level pixels for one output row. */
mi_status mi_slide_read(const mi_slide *s, int64_t x0, int64_t y0, double ds, int out_w, int out_h,
                        uint8_t *rgb, bool *edge);

/* The whole slide, longer side max_side (1..MI_SLIDE_MAX_THUMB; a slide smaller than that is
 * returned at level-0 size, never enlarged), area-averaged from the coarsest level whose longer
 * side is still >= max_side. *ds (may be NULL) gets the level-0 pixels per thumbnail pixel, the
 * same on both axes: thumbnail pixel (i, j) covers the level-0 square that pixel of
 * mi_slide_read(s, 0, 0, *ds, ...) covers, from (i * *ds, j * *ds); the last row/column may reach
 * past the slide (white there). thumb: mi_image_free it. */
mi_status mi_slide_thumbnail(const mi_slide *s, int max_side, mi_image *thumb, double *ds);

/* Level-0 microns per pixel from a slide's string properties (any may be NULL = absent):
 * openslide.mpp-x/-y when present, else tiff.XResolution/YResolution in tiff.ResolutionUnit
 * ("centimeter" or "inch"; OpenSlide 3.4.1 reports no mpp for generic TIFFs, only these).
 * Pure: no I/O, no global state. Numbers must be the whole string, finite, positive and give mpp
 * in [MI_SLIDE_MPP_MIN, MI_SLIDE_MPP_MAX]. Returns MI_OK with *mpp_x = *mpp_y = 0 when nothing
 * gives a resolution, MI_ERR_FORMAT (both 0; the message names the property and its value) when a
 * property is present but malformed or out of range. source (may be NULL, n bytes) says which
 * properties were used or what was wrong. */
mi_status mi_slide_parse_mpp(const char *mpp_x, const char *mpp_y, const char *xres, const char *yres,
                             const char *res_unit, double *out_mpp_x, double *out_mpp_y,
                             char *source, size_t n);

/* OpenSlide's premultiplied ARGB (native-endian uint32) to RGB8 on white: the integers
 * openslide-python's argb2rgba (un-premultiply, 255*c/a truncated) followed by PIL's composite
 * on a white background (openslide.deepzoom) give. rgb may alias argb (converted in place). */
void mi_slide_argb_to_rgb(uint8_t *rgb, const uint32_t *argb, size_t n);

#endif
