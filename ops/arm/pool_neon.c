/* ops/arm/pool_neon.c - AArch64 ASIMD 2-D max pooling: ops/x86/pool_avx2.c in four lanes.
 * Reference: ops/pool.c (mi_max_pool_ref); tests: tests/test_ops.c (max_pool_fast_equals_ref,
 * memcmp over tail widths, ceil mode and NaN; pool_threads_same_bits), under qemu-user by
 * `make test-arm`.
 *
 * Covers 2-D pools with dilation 1 and stride 1 or 2 (ResNet's 3x3/s2 stem, U-Net's 2x2/s2);
 * anything else calls the reference. Blocks of 8, then 4 outputs whose windows (and, at stride 2,
 * the odd float after the last even one that vld2q_f32 reads to de-interleave) lie inside the row
 * are vectorized; border columns run the reference's scalar loop. Candidates are visited in the
 * reference's order (rows, then columns) with its exact update `if (v > m || isnan(v)) m = v` as
 * a select, so the bits are equal. */
#include "ops/pool.h"
#include "ops/cpu.h"

#include <arm_neon.h>
#include <math.h>

#define PAR_MIN 16384

/* p[0], p[S], p[2S], p[3S] for S = 1 or 2 (S = 2 reads p[0..7]) */
static inline __attribute__((always_inline)) float32x4_t load_cols(const float *p, const int S) {
    return S == 1 ? vld1q_f32(p) : vld2q_f32(p).val[0];
}

static inline float32x4_t take_max(float32x4_t m, float32x4_t v) {
    const uint32x4_t take = vorrq_u32(vcgtq_f32(v, m), vmvnq_u32(vceqq_f32(v, v)));
    return vbslq_f32(take, v, m);
}

/* One output row of one plane: the input rows [h0, h1) of plane xp, output columns [0, OW). */
static inline __attribute__((always_inline)) void pool_row(float *yr, const float *xp, int64_t IW, int64_t OW,
                                                           int64_t h0, int64_t h1, int64_t kw, int64_t pw,
                                                           const int S) {
    int64_t ow = 0;
    while (ow < OW) {
        const int64_t w0 = ow * S - pw;
        /* the last float a block of 8 (4) outputs loads */
        const int64_t last8 = (ow + 7) * S - pw + (kw - 1) + (S - 1), last4 = last8 - 4 * S;
        if (w0 >= 0 && ow + 8 <= OW && last8 < IW) {
            float32x4_t m0 = vdupq_n_f32(-INFINITY), m1 = m0;
            for (int64_t ih = h0; ih < h1; ih++)
                for (int64_t j = 0; j < kw; j++) {
                    const float *p = xp + ih * IW + w0 + j;
                    m0 = take_max(m0, load_cols(p, S));
                    m1 = take_max(m1, load_cols(p + 4 * S, S));
                }
            vst1q_f32(yr + ow, m0);
            vst1q_f32(yr + ow + 4, m1);
            ow += 8;
            continue;
        }
        if (w0 >= 0 && ow + 4 <= OW && last4 < IW) {
            float32x4_t m = vdupq_n_f32(-INFINITY);
            for (int64_t ih = h0; ih < h1; ih++)
                for (int64_t j = 0; j < kw; j++) m = take_max(m, load_cols(xp + ih * IW + w0 + j, S));
            vst1q_f32(yr + ow, m);
            ow += 4;
            continue;
        }
        int64_t a = w0, b = w0 + kw;   /* one border output: the reference's loop */
        if (b > IW) b = IW;
        if (a < 0) a = 0;
        float m = -INFINITY;
        for (int64_t ih = h0; ih < h1; ih++)
            for (int64_t iw = a; iw < b; iw++) {
                const float v = xp[ih * IW + iw];
                if (v > m || isnan(v)) m = v;
            }
        yr[ow] = m;
        ow++;
    }
}

void mi_max_pool_neon(mi_tensor *y, const mi_tensor *x, const mi_pool_desc *d) {
    if (d->sp != 2 || d->dil[1] != 1 || d->dil[2] != 1 || d->stride[2] < 1 || d->stride[2] > 2) {
        mi_max_pool_ref(y, x, d);
        return;
    }
    mi_max_pool_check_2d(y, x, d);
    const int64_t planes = x->shape[0] * x->shape[1], IH = x->shape[2], IW = x->shape[3];
    const int64_t OH = y->shape[2], OW = y->shape[3];
    const int64_t kh = d->k[1], kw = d->k[2], sh = d->stride[1], sw = d->stride[2];
    const int64_t ph = d->pad[1], pw = d->pad[2];
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (planes * OH * OW > PAR_MIN) schedule(static)
    for (int64_t p = 0; p < planes; p++)
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *xp = x->data + p * IH * IW;
            float *yr = y->data + (p * OH + oh) * OW;
            int64_t h0 = oh * sh - ph, h1 = h0 + kh;
            if (h1 > IH) h1 = IH;
            if (h0 < 0) h0 = 0;
            if (sw == 1) pool_row(yr, xp, IW, OW, h0, h1, kw, pw, 1);
            else pool_row(yr, xp, IW, OW, h0, h1, kw, pw, 2);
        }
}
