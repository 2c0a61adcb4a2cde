/* pipelines/patho/stain.h - stain normalization of H&E tiles, so the V-Net sees every slide in
 * one reference staining. tools/patho_ref.py is the spec (macenko_fit / macenko_normalize /
 * concentrations, reinhard_fit / reinhard_normalize); all arithmetic is float64 as there.
 *
 *   Macenko et al. 2009, "A method for normalizing histology slides for quantitative analysis":
 *   optical density OD = -ln((RGB + 1) / 240); pixels with every OD >= 0.15 are stained; the
 *   plane of the two largest eigenvectors of their OD covariance; the 1st and 99th percentile
 *   angles in that plane are the hematoxylin and eosin vectors (HE, 3x2, H first: the larger red
 *   OD); each pixel's concentrations by least squares; maxC = their 99th percentiles. Normalizing
 *   rescales a tile's concentrations to the reference maxC and re-colours with the reference HE.
 *
 *   Reinhard et al. 2001, "Color transfer between images": each channel of l-alpha-beta (log10
 *   LMS) shifted and scaled to the reference mean and standard deviation.
 *
 * Pure functions: no global state; Macenko's fit needs scratch the caller sizes with
 * mi_patho_macenko_scratch_bytes (two float64 per pixel, 4 MiB for 512x512) and may reuse for
 * every tile; nothing else allocates. Several threads may run on different tiles with their own
 * scratch. Images are RGB8, 3 bytes per pixel, contiguous. Pixels are guaranteed to agree with
 * numpy to one grey level: numpy's BLAS and libm may round differently in the last bit of
 * float64, and a value that lands at .5 can then round either way. Measured against numpy on
 * Debian's reference BLAS, every pixel of the real test tiles is equal (tests/test_patho_steps.c). */
#ifndef MI_PATHO_STAIN_H
#define MI_PATHO_STAIN_H

#include "medinfer.h"

#include <stdint.h>

typedef enum {
    MI_STAIN_OK = 0,
    MI_STAIN_TOO_LITTLE,   /* fewer than MI_MACENKO_MIN_PIXELS stained pixels (patho_ref: None) */
    MI_STAIN_DEGENERATE,   /* the two stain vectors coincide (a single-colour tile: numpy's solve
                              raises there) or a 99th percentile concentration is not > 0 (numpy
                              would divide by it): no usable fit, treat as unstained */
} mi_stain_status;

#define MI_MACENKO_MIN_PIXELS 100   /* patho_ref.macenko_fit's min_pixels */

typedef struct {
    mi_stain_status status;
    int64_t         stained;   /* pixels with every OD >= 0.15 */
    double          he[3][2];  /* rows R, G, B; columns hematoxylin, eosin */
    double          max_c[2];  /* 99th percentile concentration of H and of E */
} mi_macenko;

/* Scratch for mi_patho_macenko_fit / _normalize on npix pixels: 16 bytes a pixel. */
size_t mi_patho_macenko_scratch_bytes(int64_t npix);

/* Fits HE and maxC on a tile. MI_OK with fit->status saying whether the tile has a usable fit;
 * MI_ERR_ARG (naming what) for npix < 1 or too little scratch. */
mi_status mi_patho_macenko_fit(mi_macenko *fit, const uint8_t *rgb, int64_t npix, void *scratch,
                               size_t scratch_bytes);

/* out = the tile in the reference stains: concentrations from the tile's own fit (status
 * MI_STAIN_OK), scaled by ref->max_c / fit->max_c, re-coloured 240 * exp(-ref->he · c), rounded
 * half to even and clipped to 0..255. MI_ERR_ARG when fit or ref is not MI_STAIN_OK. out may
 * alias rgb (each pixel is read before it is written). */
mi_status mi_patho_macenko_apply(uint8_t *out, const uint8_t *rgb, int64_t npix, const mi_macenko *fit,
                                 const mi_macenko *ref);

/* Both, as patho_ref.macenko_normalize: *tile_fit (may be NULL) gets the tile's fit; when its
 * status is not MI_STAIN_OK, MI_OK is returned and out is left untouched (patho_ref's None: the
 * pipeline drops or keeps the tile as it is). */
mi_status mi_patho_macenko_normalize(uint8_t *out, const uint8_t *rgb, int64_t npix,
                                     const mi_macenko *ref, void *scratch, size_t scratch_bytes,
                                     mi_macenko *tile_fit);

typedef struct {
    double mean[3], std[3];    /* of l, alpha, beta over the tile (population std, numpy's) */
} mi_reinhard;

/* MI_ERR_ARG for npix < 1. */
mi_status mi_patho_reinhard_fit(mi_reinhard *fit, const uint8_t *rgb, int64_t npix);
/* out = rgb with the tile's own l-alpha-beta statistics moved to ref's (a channel of std 0 is
 * only shifted); clipped and rounded half to even. out may alias rgb. MI_ERR_ARG for npix < 1 or
 * a ref with a non-finite value. */
mi_status mi_patho_reinhard_normalize(uint8_t *out, const uint8_t *rgb, int64_t npix,
                                      const mi_reinhard *ref);

#endif
