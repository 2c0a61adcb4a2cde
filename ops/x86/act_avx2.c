/* ops/x86/act_avx2.c - AVX2 ReLU and PReLU. Reference: ops/act.c (mi_relu_ref, mi_prelu_ref);
 * test: tests/test_ops.c (relu_prelu_fast_equals_ref: memcmp over tail sizes and threads).
 * Both are selects, not arithmetic rounding differently, so they equal the reference bit for bit:
 * ReLU zeroes lanes where x < 0 (ordered compare, so NaN passes through like `x < 0 ? 0 : x`);
 * PReLU picks x where x > 0 else a*x (one multiply, like the reference). */
#include "../act.h"
#include "../cpu.h"

#include <immintrin.h>

#define PAR_MIN 32768

void mi_relu_avx2(float *y, const float *x, int64_t n) {
    const int64_t nb = n / 8;
    const __m256 zero = _mm256_setzero_ps();
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        __m256 v = _mm256_loadu_ps(x + 8 * b);
        _mm256_storeu_ps(y + 8 * b, _mm256_andnot_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ), v));
    }
    for (int64_t i = nb * 8; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];  /* the reference's expression */
}

static void prelu_row(float *y, const float *x, float a, int64_t n) {
    const __m256 va = _mm256_set1_ps(a), zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(y + i, _mm256_blendv_ps(_mm256_mul_ps(v, va), v,
                                                 _mm256_cmp_ps(v, zero, _CMP_GT_OQ)));
    }
    for (; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : a * x[i];
}

void mi_prelu_avx2(float *y, const float *x, const float *slope, int64_t nslope, int64_t N,
                   int64_t C, int64_t inner) {
    MI_ASSERT(nslope == 1 || nslope == C);
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (N * C * inner > PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            prelu_row(y + (n * C + c) * inner, x + (n * C + c) * inner, slope[nslope == 1 ? 0 : c], inner);
}
