/* pipelines/patho/tissue.h - which tiles hold tissue: grey level, Otsu's threshold, the tissue
 * fraction. tools/patho_ref.py (gray, otsu, tissue_ratio) is the spec; these give its numbers
 * exactly (integer arithmetic, and float64 in the order numpy evaluates Otsu's expression).
 *
 * Pure functions of their arguments: no global state, no allocation, safe to call from several
 * threads at once on different tiles. Images are RGB8, 3 bytes per pixel, contiguous. */
#ifndef MI_PATHO_TISSUE_H
#define MI_PATHO_TISSUE_H

#include "medinfer.h"

#include <stdint.h>

/* PIL's "L" conversion (ITU-R 601-2 luma in 16-bit fixed point):
 * gray = (19595 R + 38470 G + 7471 B + 2^15) >> 16.  gray: npix bytes. */
void mi_patho_gray(uint8_t *gray, const uint8_t *rgb, int64_t npix);

/* hist[v] = number of pixels whose gray is v, straight from RGB (no grey image needed). */
void mi_patho_gray_histogram(int64_t hist[256], const uint8_t *rgb, int64_t npix);

/* Otsu's threshold ("A threshold selection method from gray-level histograms", 1979) on a
 * 256-bin histogram: the t maximizing the between-class variance of {gray <= t} and {gray > t},
 * the first such t on a tie; an image of one grey value gives that value (tissue is gray <= t).
 * MI_ERR_ARG for an empty histogram (no pixels, or a negative count). */
mi_status mi_patho_otsu(const int64_t hist[256], int *t);

/* Fraction of the pixels with gray <= t (0 for an empty histogram). */
double mi_patho_tissue_ratio(const int64_t hist[256], int t);

#endif
