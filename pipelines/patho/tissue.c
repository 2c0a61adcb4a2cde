/* pipelines/patho/tissue.c - grey level, Otsu's threshold, tissue fraction (see tissue.h). */
#include "pipelines/patho/tissue.h"

#include <math.h>
#include <string.h>

static inline uint8_t gray_of(const uint8_t *p) {
    return (uint8_t)((19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 32768u) >> 16);
}

void mi_patho_gray(uint8_t *gray, const uint8_t *rgb, int64_t npix) {
    for (int64_t i = 0; i < npix; i++) gray[i] = gray_of(rgb + 3 * i);
}

void mi_patho_gray_histogram(int64_t hist[256], const uint8_t *rgb, int64_t npix) {
    memset(hist, 0, 256 * sizeof *hist);
    for (int64_t i = 0; i < npix; i++) hist[gray_of(rgb + 3 * i)]++;
}

/* patho_ref.otsu, term by term: w0, s0 are cumulative sums of counts and count*value (exact in
 * float64: below 2^53 for any image we read), w1 = N - w0, s1 = S - s0, and
 *     var = w0 * w1 * (s0/w0 - s1/w1)**2
 * evaluated in numpy's order ((w0*w1) * d*d, each operation rounded once; -ffp-contract=off keeps
 * the compiler from fusing). The classes that would divide by zero (numpy's non-finite values,
 * set to -1 there) are skipped. So the threshold is equal, not merely close. */
mi_status mi_patho_otsu(const int64_t hist[256], int *t) {
    double total = 0, stotal = 0;
    int only = -1;
    for (int v = 0; v < 256; v++) {
        if (hist[v] < 0) return MI_FAIL(MI_ERR_ARG, "Otsu: histogram bin %d has a negative count", v);
        total += (double)hist[v];
        stotal += (double)hist[v] * v;
        if (hist[v] > 0) only = only == -1 ? v : -2;
    }
    if (total == 0) return MI_FAIL(MI_ERR_ARG, "Otsu: the histogram is empty (no pixels)");
    if (only >= 0) {            /* one grey value: every var is non-finite; patho_ref gives it */
        *t = only;
        return MI_OK;
    }
    double w0 = 0, s0 = 0, best = -1;
    int arg = 0;
    for (int v = 0; v < 256; v++) {
        w0 += (double)hist[v];
        s0 += (double)hist[v] * v;
        const double w1 = total - w0, s1 = stotal - s0;
        if (w0 == 0 || w1 == 0) continue;
        const double d = s0 / w0 - s1 / w1;
        const double var = w0 * w1 * (d * d);
        if (var > best) {       /* strictly greater: the first maximum, as np.argmax */
            best = var;
            arg = v;
        }
    }
    *t = arg;
    return MI_OK;
}

double mi_patho_tissue_ratio(const int64_t hist[256], int t) {
    int64_t n = 0, in = 0;
    for (int v = 0; v < 256; v++) {
        n += hist[v];
        if (v <= t) in += hist[v];
    }
    return n > 0 ? (double)in / (double)n : 0.0;
}
