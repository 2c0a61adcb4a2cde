/* pipelines/assist/quality.c - the frame quality rule of quality.h, in integers.
 *
 * Luma is kept as Y1000 = 299 R + 587 G + 114 B (BT.601 scaled by 1000: exact, 0..255000), the
 * blocks as sums of it (k^2 Y1000, at most 255000 x 163^2), the Sobel responses as integer sums
 * of those, and every total in int64 (below 2^52 for the largest frame), so the only rounding is
 * the final division of each mean. */
#include "pipelines/assist/quality.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Defaults, calibrated on the real colonoscopy clip of ../shared/data (endoscopy-video-misc, its
 * 260 x 195 inset, every frame), the 995 Kvasir-SEG photos and blurred copies of both; the
 * measured distributions are in docs/assist.md ("Frame quality"). */
void mi_quality_defaults(mi_quality_thresholds *t) {
    t->luma_lo = 30.0;
    t->luma_hi = 220.0;
    t->sobel_min = 8.0;
    t->glare_level = 235;
    t->glare_max_frac = 0.15;
}

mi_status mi_quality_check_thresholds(const mi_quality_thresholds *t) {
    if (!(t->luma_lo >= 0 && t->luma_lo <= 255))
        return MI_FAIL(MI_ERR_ARG, "quality: luma_lo %g is outside 0..255", t->luma_lo);
    if (!(t->luma_hi >= t->luma_lo && t->luma_hi <= 255))
        return MI_FAIL(MI_ERR_ARG, "quality: luma_hi %g is outside luma_lo (%g)..255", t->luma_hi, t->luma_lo);
    if (!(t->sobel_min >= 0 && t->sobel_min <= 1020))
        return MI_FAIL(MI_ERR_ARG, "quality: sobel_min %g is outside 0..1020", t->sobel_min);
    if (t->glare_level < 0 || t->glare_level > 255)
        return MI_FAIL(MI_ERR_ARG, "quality: glare_level %d is outside 0..255", t->glare_level);
    if (!(t->glare_max_frac >= 0 && t->glare_max_frac <= 1))
        return MI_FAIL(MI_ERR_ARG, "quality: glare_max_frac %g is outside 0..1", t->glare_max_frac);
    return MI_OK;
}

/* Y1000 of one row added into acc (the block row being summed; NULL for the rows below the last
 * whole block); returns the row's luma sum and adds its near-white pixels to *glare. Columns past
 * the last whole block count in the sums but not in acc. */
static int64_t luma_row(int64_t *acc, const uint8_t *p, int w, int k, int glare_level, int64_t *glare) {
    int64_t sum = 0, g = 0;
    const int bw = w / k * k;
    for (int x = 0; x < w; x++, p += 3) {
        const int32_t y = 299 * p[0] + 587 * p[1] + 114 * p[2];
        sum += y;
        if (acc && x < bw) acc[x / k] += y;
        int mn = p[0] < p[1] ? p[0] : p[1];
        mn = mn < p[2] ? mn : p[2];
        g += mn >= glare_level;
    }
    *glare += g;
    return sum;
}

/* |Sobel x| and |Sobel y| summed along the interior of the middle row b, a above, c below */
static void sobel_row(const int64_t *a, const int64_t *b, const int64_t *c, int w, int64_t *sx, int64_t *sy) {
    int64_t ax = 0, ay = 0;
    for (int x = 1; x + 1 < w; x++) {
        const int64_t gx = (a[x + 1] + 2 * b[x + 1] + c[x + 1]) - (a[x - 1] + 2 * b[x - 1] + c[x - 1]);
        const int64_t gy = (c[x - 1] + 2 * c[x] + c[x + 1]) - (a[x - 1] + 2 * a[x] + a[x + 1]);
        ax += gx < 0 ? -gx : gx;
        ay += gy < 0 ? -gy : gy;
    }
    *sx += ax;
    *sy += ay;
}

mi_status mi_quality_measure(const uint8_t *rgb, int w, int h, size_t stride, const mi_quality_thresholds *t,
                             mi_quality *q) {
    memset(q, 0, sizeof *q);
    mi_status st = mi_quality_check_thresholds(t);
    if (st) return st;
    if (w < 1 || h < 1 || w > (1 << 15) || h > (1 << 15) || stride < (size_t)w * 3)
        return MI_FAIL(MI_ERR_ARG, "quality: a %dx%d frame with a row stride of %zu bytes", w, h, stride);
    const int k = (w < h ? w : h) / 200 > 1 ? (w < h ? w : h) / 200 : 1;
    const int bw = w / k, bh = h / k;   /* the block-averaged frame */
    q->block = k;
    /* three block rows in rotation: block row j lives in slot j % 3 */
    int64_t *rows = calloc((size_t)bw * 3, sizeof *rows);
    if (!rows) return MI_FAIL(MI_ERR_NOMEM, "quality: out of memory for a %dx%d frame", w, h);

    int64_t sum = 0, glare = 0, sx = 0, sy = 0;
    for (int y = 0; y < h; y++) {
        const int j = y / k;
        int64_t *acc = rows + (size_t)(j % 3) * bw;
        if (j >= bh) acc = NULL;
        else if (y % k == 0) memset(acc, 0, (size_t)bw * sizeof *acc);
        sum += luma_row(acc, rgb + (size_t)y * stride, w, k, t->glare_level, &glare);
        if (acc && y % k == k - 1 && j >= 2)
            sobel_row(rows + (size_t)((j - 2) % 3) * bw, rows + (size_t)((j - 1) % 3) * bw, acc, bw, &sx, &sy);
    }
    free(rows);

    const double n = (double)w * h;
    q->mean_luma = (double)sum / (1000.0 * n);
    q->glare_frac = (double)glare / n;
    if (bw >= 3 && bh >= 3) {
        /* block sums are k^2 times the block means */
        const double inner = 1000.0 * (double)k * (double)k * (double)(bw - 2) * (double)(bh - 2);
        q->sobel_x = (double)sx / inner;
        q->sobel_y = (double)sy / inner;
    }

    char *r = q->reason;
    const size_t rn = sizeof q->reason;
    if (w < 3 || h < 3)
        snprintf(r, rn, "too small: %dx%d pixels, the quality rule needs at least 3x3", w, h);
    else if (q->mean_luma < t->luma_lo)
        snprintf(r, rn, "too dark: mean luma %.1f < %.1f", q->mean_luma, t->luma_lo);
    else if (q->mean_luma > t->luma_hi)
        snprintf(r, rn, "too bright: mean luma %.1f > %.1f", q->mean_luma, t->luma_hi);
    else if (q->sobel_x < t->sobel_min && q->sobel_y < t->sobel_min)
        snprintf(r, rn, "blurred: mean |Sobel x| %.2f and mean |Sobel y| %.2f < %.2f", q->sobel_x, q->sobel_y,
                 t->sobel_min);
    else if (q->sobel_x < t->sobel_min)
        snprintf(r, rn, "blurred: mean |Sobel x| %.2f < %.2f", q->sobel_x, t->sobel_min);
    else if (q->sobel_y < t->sobel_min)
        snprintf(r, rn, "blurred: mean |Sobel y| %.2f < %.2f", q->sobel_y, t->sobel_min);
    else if (q->glare_frac > t->glare_max_frac)
        snprintf(r, rn, "glare/foreign matter: %.1f%% near-white pixels > %.1f%%", 100.0 * q->glare_frac,
                 100.0 * t->glare_max_frac);
    q->judged = r[0] == 0;
    return MI_OK;
}
