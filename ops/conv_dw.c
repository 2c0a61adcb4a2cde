/* ops/conv_dw.c - depthwise 2-D convolution (groups == cin == cout: one input channel, one filter,
 * one output channel per group), any kernel, stride, padding and dilation, with the fused
 * epilogue y = act(conv(x) + bias + residual). MobileNet-style blocks and the attention branches
 * of the lesion segmentation networks use it.
 *
 * Why not the packed GEMM: per group it would be a 1 x k*k by k*k x pixels product, a GEMM with
 * one row, where the GEMM's packing and tiles are pure overhead; so ops/conv.c sends these layers
 * here (mi_conv.dw) on every ISA but ref.
 *
 * Each output row of each plane is one work item. Its interior columns (those whose k taps all
 * fall inside the input row) go to an interior kernel, the columns at its left and right edges
 * (some taps in the padding) to an edge kernel: the AVX2 ones (ops/x86/conv_dw_avx2.c) on
 * MI_ISA_AVX2 and above, the NEON ones (ops/arm/conv_dw_neon.c) on MI_ISA_NEON (aarch64), the
 * portable C ones below on every other ISA. Input rows wholly in the top or bottom padding are
 * left out of the row's taps altogether.
 *
 * Bits: every output is the reference's sum (mi_conv_forward_ref): from 0.0f, for kh then kw in
 * order, skipping the taps outside the input, s = s + x*w as a multiply then an add (no FMA,
 * -ffp-contract=off), then + bias, + residual, then the ReLU select. The kernels keep one
 * accumulator per output column and add the taps in that same order, so the fast path equals the
 * reference bit for bit (tests/test_conv.c memcmps them over a sweep of widths, strides, padding,
 * kernel sizes and dilation, and across 1, 2 and 4 threads), NaN and Inf included: a skipped tap
 * never becomes a product with a zero, so a non-finite weight meets only the inputs the reference
 * gives it.
 *
 * Measured here (a throwaway program, not in the tree: 3x3, padding 1, bias and ReLU, 1 thread,
 * CPU time of the best of 50 runs, 5 for the reference, on a 2-core AMD EPYC shared with other
 * jobs, gcc 12):
 *   input            stride   reference   portable         AVX2
 *   (1, 64, 96, 96)    1      15-18 ms    5.5 ms (3x)      0.81 ms (19-22x)
 *   (1, 64, 96, 96)    2      3.8 ms      1.9 ms (2x)      0.26 ms (15x)
 *   (1, 256, 48, 48)   1      15.9 ms     6.3 ms (2.5x)    1.24 ms (13x)
 *   (1, 256, 48, 48)   2      3.9-4.2 ms  2.0 ms (2x)      0.37-0.50 ms (8-11x)
 * The short rows of a 48-wide map spend more of their time in the edge blocks (two per row,
 * whatever its width). */
#include "ops/conv_internal.h"

#include <string.h>

#define MI_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MI_MAX(a, b) ((a) > (b) ? (a) : (b))
#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))
#define FLOOR_DIV(a, b) ((a) >= 0 ? (a) / (b) : -((-(a) + (b) - 1) / (b)))

int mi_conv_dw_ok(const mi_conv_desc *d) {
    return d->sp == 2 && d->groups == d->cin && d->cout == d->cin;
}

static inline float epilogue(float s, float bias, const float *res, int relu) {
    float v = s + bias;
    if (res) v += *res;
    if (relu) v = v < 0.0f ? 0.0f : v;
    return v;
}

/* Written for the vectorizer: a block of BLK columns keeps its accumulators in a local array,
 * each tap a loop over the block's columns (contiguous for stride 1; a whole block has a constant
 * count, which GCC vectorizes at -O2), so the k*k taps of one column still arrive in (kh, kw)
 * order. */
#define BLK 16

void mi_conv_dw_interior_portable(const mi_dw_row *r, float *y, const float *res, int64_t j0, int64_t n) {
    const int64_t k = r->k, s = r->s, d = r->d;
    for (int64_t b = j0; b < j0 + n; b += BLK) {   /* n <= 0: nothing */
        const int64_t m = MI_MIN(BLK, j0 + n - b);
        float acc[BLK];
        for (int64_t j = 0; j < BLK; j++) acc[j] = 0.0f;
        for (int64_t kh = r->kh_lo; kh < r->kh_hi; kh++) {
            const float *xr = r->x + (r->ih0 + kh * r->dh) * r->W + b * s - r->pw;
            for (int64_t kw = 0; kw < k; kw++) {
                const float wv = r->w[kh * k + kw], *xp = xr + kw * d;
                if (s == 1 && m == BLK)
                    for (int64_t j = 0; j < BLK; j++) acc[j] = acc[j] + xp[j] * wv;
                else if (s == 1)
                    for (int64_t j = 0; j < m; j++) acc[j] = acc[j] + xp[j] * wv;
                else
                    for (int64_t j = 0; j < m; j++) acc[j] = acc[j] + xp[j * s] * wv;
            }
        }
        for (int64_t j = 0; j < m; j++) y[b + j] = epilogue(acc[j], r->bias, res ? res + b + j : NULL, r->relu);
    }
}

/* The reference's loop, column by column, out-of-range taps skipped. */
void mi_conv_dw_edge_portable(const mi_dw_row *r, float *y, const float *res, int64_t j0, int64_t n) {
    for (int64_t j = j0; j < j0 + n; j++) {
        const int64_t iw0 = j * r->s - r->pw;
        float s = 0.0f;
        for (int64_t kh = r->kh_lo; kh < r->kh_hi; kh++) {
            const float *xr = r->x + (r->ih0 + kh * r->dh) * r->W, *w = r->w + kh * r->k;
            for (int64_t kw = 0; kw < r->k; kw++) {
                const int64_t iw = iw0 + kw * r->d;
                if (iw < 0 || iw >= r->W) continue;
                s += xr[iw] * w[kw];
            }
        }
        y[j] = epilogue(s, r->bias, res ? res + j : NULL, r->relu);
    }
}

void mi_conv_dw_row_portable(const mi_dw_row *r, float *y, const float *res) {
    mi_conv_dw_edge_portable(r, y, res, 0, r->c0);
    mi_conv_dw_interior_portable(r, y, res, r->c0, r->c1 - r->c0);
    mi_conv_dw_edge_portable(r, y, res, r->c1, r->ow - r->c1);
}

void mi_conv_dw_forward(const mi_conv *c, mi_tensor *y, const mi_tensor *x, const mi_tensor *res, mi_act act) {
    const mi_conv_desc *d = &c->d;
    MI_ASSERT(c->dw && c->packed != NULL);
    const int64_t N = x->shape[0], C = d->cin, H = x->shape[2], W = x->shape[3];
    const int64_t OH = y->shape[2], OW = y->shape[3];
    const int64_t kh_n = d->k[1], k = d->k[2], sh = d->stride[1], sw = d->stride[2];
    const int64_t ph = d->pad[1], pw = d->pad[2], dh = d->dil[1], dwl = d->dil[2];
    mi_dw_row_fn row = mi_conv_dw_row_portable;
#if defined(__x86_64__)
    if (c->path >= MI_ISA_AVX2) row = mi_conv_dw_row_avx2;
#elif defined(__aarch64__)
    if (c->path >= MI_ISA_NEON) row = mi_conv_dw_row_neon;
#endif
    /* interior columns [c0, c1): every tap iw = ow*sw - pw + kw*dwl inside [0, W) */
    const int64_t c0 = MI_MIN(OW, CEIL_DIV(pw, sw));
    const int64_t c1 = MI_MAX(c0, MI_MIN(OW, FLOOR_DIV(W - 1 - (k - 1) * dwl + pw, sw) + 1));
    const float *wts = c->packed, *rd = res ? res->data : NULL;
    /* a parallel region costs more than a small layer */
    #pragma omp parallel for collapse(2) schedule(static) num_threads(mi_threads()) if (N * C * OH * OW * kh_n * k > 65536)
    for (int64_t p = 0; p < N * C; p++)
        for (int64_t oh = 0; oh < OH; oh++) {
            const int64_t ch = p % C, ih0 = oh * sh - ph;
            mi_dw_row r = { .x = x->data + p * H * W, .W = W, .ih0 = ih0, .dh = dh, .w = wts + ch * kh_n * k,
                            .k = k, .s = sw, .pw = pw, .d = dwl, .ow = OW, .c0 = c0, .c1 = c1,
                            .bias = c->bias[ch], .relu = act == MI_ACT_RELU };
            /* taps kh in [kh_lo, kh_hi) read input rows inside [0, H); most rows have all */
            if (ih0 >= 0 && ih0 + (kh_n - 1) * dh < H) {
                r.kh_lo = 0;
                r.kh_hi = kh_n;
            } else {
                r.kh_lo = MI_MIN(kh_n, MI_MAX((int64_t)0, CEIL_DIV(-ih0, dh)));
                r.kh_hi = MI_MAX(r.kh_lo, MI_MIN(kh_n, CEIL_DIV(H - ih0, dh)));
            }
            row(&r, y->data + (p * OH + oh) * OW, rd ? rd + (p * OH + oh) * OW : NULL);
        }
}
