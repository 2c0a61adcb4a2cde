/* ops/x86/elementwise_avx2.c - AVX2 add, mul, add+ReLU, per-channel add/mul, per-pixel mul,
 * argmax over channels. References: ops/elementwise.c (mi_*_ref); tests: tests/test_ops.c
 * (elementwise_fast_equals_ref), tests/test_ops2.c (elementwise_fast_equals_ref): memcmp over
 * tail sizes and thread counts. One add or multiply per element, as in the reference, and the
 * ReLU as a select (x < 0 -> 0, NaN kept): the same bits. */
#include "ops/elementwise.h"
#include "ops/cpu.h"

#include <immintrin.h>
#include <stdint.h>

#define PAR_MIN 32768

static inline __m256 relu8(__m256 s) {
    return _mm256_andnot_ps(_mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_LT_OQ), s);
}

/* y = a OP b over n floats, split into 8-float blocks across threads, scalar tail. */
#define BINARY(name, VEXPR, SEXPR)                                                               \
    void name(float *y, const float *a, const float *b, int64_t n) {                             \
        const int64_t nb = n / 8;                                                                \
        _Pragma("omp parallel for num_threads(mi_threads()) if (n > PAR_MIN) schedule(static)")  \
        for (int64_t k = 0; k < nb; k++) {                                                       \
            const __m256 va = _mm256_loadu_ps(a + 8 * k), vb = _mm256_loadu_ps(b + 8 * k);       \
            _mm256_storeu_ps(y + 8 * k, VEXPR);                                                  \
        }                                                                                        \
        for (int64_t i = nb * 8; i < n; i++) { const float s = SEXPR; y[i] = s; }                \
    }

BINARY(mi_add_avx2, _mm256_add_ps(va, vb), a[i] + b[i])
BINARY(mi_mul_avx2, _mm256_mul_ps(va, vb), a[i] * b[i])
BINARY(mi_add_relu_avx2, relu8(_mm256_add_ps(va, vb)), a[i] + b[i] < 0.0f ? 0.0f : a[i] + b[i])

/* y[n,c,:] = x[n,c,:] OP v[c] */
#define CHANNEL(name, VOP, SOP)                                                                  \
    void name(float *y, const float *x, const float *v, int64_t N, int64_t C, int64_t inner) {   \
        _Pragma("omp parallel for collapse(2) num_threads(mi_threads()) if (N * C * inner > PAR_MIN) schedule(static)") \
        for (int64_t n = 0; n < N; n++)                                                          \
            for (int64_t c = 0; c < C; c++) {                                                    \
                const float *xp = x + (n * C + c) * inner;                                       \
                float *yp = y + (n * C + c) * inner;                                             \
                const float s = v[c];                                                            \
                const __m256 vs = _mm256_set1_ps(s);                                             \
                int64_t i = 0;                                                                   \
                for (; i + 8 <= inner; i += 8) _mm256_storeu_ps(yp + i, VOP(_mm256_loadu_ps(xp + i), vs)); \
                for (; i < inner; i++) yp[i] = xp[i] SOP s;                                      \
            }                                                                                    \
    }

CHANNEL(mi_add_channel_avx2, _mm256_add_ps, +)
CHANNEL(mi_mul_channel_avx2, _mm256_mul_ps, *)

/* y[n,c,:] = x[n,c,:] * w[n,:]: one multiply per element, as mi_mul_spatial_ref */
void mi_mul_spatial_avx2(float *y, const float *x, const float *w, int64_t N, int64_t C, int64_t inner) {
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (N * C * inner > PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            const float *xp = x + (n * C + c) * inner, *wp = w + n * inner;
            float *yp = y + (n * C + c) * inner;
            int64_t i = 0;
            for (; i + 8 <= inner; i += 8) _mm256_storeu_ps(yp + i, _mm256_mul_ps(_mm256_loadu_ps(xp + i), _mm256_loadu_ps(wp + i)));
            for (; i < inner; i++) yp[i] = xp[i] * wp[i];
        }
}

/* argmax over channels, eight pixels per vector: a lane takes channel c where x > best, or where
 * x is NaN and best is not (the first NaN wins and stays, as in mi_argmax_channels_ref); indices
 * are integers, so the result is the reference's. Tail pixels: masked loads and stores. */
void mi_argmax_channels_avx2(int32_t *idx, const float *x, int64_t N, int64_t C, int64_t inner) {
    MI_ASSERT(C >= 1 && C <= INT32_MAX);
    const int64_t nb = (inner + 7) / 8;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (N * C * inner > PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t b = 0; b < nb; b++) {
            const int64_t i = 8 * b, left = inner - i;
            const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left < 8 ? left : 8)), lane);
            const float *xp = x + n * C * inner + i;
            __m256 best = _mm256_maskload_ps(xp, m);
            __m256i bi = _mm256_setzero_si256();
            for (int64_t c = 1; c < C; c++) {
                const __m256 v = _mm256_maskload_ps(xp + c * inner, m);
                const __m256 take = _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ),
                                                 _mm256_andnot_ps(_mm256_cmp_ps(best, best, _CMP_UNORD_Q),
                                                                  _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
                best = _mm256_blendv_ps(best, v, take);
                bi = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(bi),
                                                          _mm256_castsi256_ps(_mm256_set1_epi32((int)c)), take));
            }
            _mm256_maskstore_epi32(idx + n * inner + i, m, bi);
        }
}
