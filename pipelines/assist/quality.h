/* pipelines/assist/quality.h - should the detector judge this frame? The rule the terminal
 * applies before sending a frame and the server applies again before running the model (one
 * definition, so both say the same about the same pixels):
 *
 *   luma       Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601), per pixel
 *   exposure   mean Y within [luma_lo, luma_hi]                  else "too dark" / "too bright"
 *   sharpness  mean |Sobel x| and mean |Sobel y| of Y, each over the interior pixels (the
 *              3x3 kernels [-1 0 1; -2 0 2; -1 0 1] and its transpose), each >= sobel_min
 *                                                                else "blurred"
 *              Y is first averaged over k x k blocks, k = max(1, floor(min(w, h) / 200)) (the
 *              last w % k columns and h % k rows left out), so that the frame seen has a
 *              shorter side of 200..399 pixels: the steepness of an edge per pixel falls with
 *              the resolution, and without this a sharp 1080p frame would measure like a
 *              blurred 540p one.
 *   glare      the fraction of near-white pixels (min(R, G, B) >= glare_level: saturated in
 *              every channel, as specular reflections, bubbles, fluid and instruments are)
 *              <= glare_max_frac                                 else "glare/foreign matter"
 *
 * The first rule that fails gives the reason, in this order. Everything is computed in integers
 * (Y scaled by 1000 is exact), so the numbers do not depend on the compiler, the ISA or the
 * thread count, and tests/ref_assist_quality.py reproduces them with numpy to the last bit. */
#ifndef MI_ASSIST_QUALITY_H
#define MI_ASSIST_QUALITY_H

#include "medinfer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    double luma_lo, luma_hi;  /* mean luma bounds, 0..255 */
    double sobel_min;         /* minimum mean |Sobel x| and mean |Sobel y|, luma units (0..1020) */
    int    glare_level;       /* a pixel is near-white when min(R, G, B) >= this, 0..255 */
    double glare_max_frac;    /* largest allowed fraction of near-white pixels, 0..1 */
} mi_quality_thresholds;

/* The defaults, and how they were chosen, are in quality.c. */
void mi_quality_defaults(mi_quality_thresholds *t);
/* MI_ERR_ARG naming the field when a threshold is outside its range or lo > hi. */
mi_status mi_quality_check_thresholds(const mi_quality_thresholds *t);

typedef struct {
    double mean_luma;         /* 0..255 */
    double sobel_x, sobel_y;  /* mean |Sobel| of block-averaged luma over its interior pixels */
    int    block;             /* k, the side of the averaging blocks */
    double glare_frac;        /* fraction of near-white pixels, 0..1 */
    bool   judged;            /* every rule passed: the model may judge the frame */
    char   reason[160];       /* "" when judged, else e.g. "too dark: mean luma 12.0 < 30.0" */
} mi_quality;

/* rgb: h rows of w RGB8 pixels, `stride` bytes apart (stride >= 3 w), w and h 1..32768. A frame
 * smaller than 3 x 3 has no interior for the Sobel means (they are 0) and is not judged ("too
 * small: ..."). */
mi_status mi_quality_measure(const uint8_t *rgb, int w, int h, size_t stride, const mi_quality_thresholds *t,
                             mi_quality *q);

#endif
