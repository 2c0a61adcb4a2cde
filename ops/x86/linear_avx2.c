/* ops/x86/linear_avx2.c - AVX2+FMA linear and matmul. References: ops/linear.c (mi_linear_ref,
 * mi_matmul_ref); tests: tests/test_ops.c (linear_* and matmul_* cases).
 *
 * linear: y[r,o] = dot(x[r,:], w[o,:]) + b[o]. Memory-bound at small batch (fc 2048->1000 reads
 * 8 MB of weights), so each weight row is streamed once and reused for up to 4 input rows while
 * it sits in L1. Every dot product runs the same fixed sequence whatever the row block or thread:
 * two 8-lane FMA accumulators over 16-float steps, one more 8-float step into the first, the two
 * added, a fixed horizontal sum, then the scalar tail (multiply, add) and the bias.
 *
 * matmul: vectorized over the columns of C only; every element is accumulated over k in order
 * with a multiply then an add (no FMA), exactly like the reference, so the bits are equal. */
#include "ops/linear.h"
#include "ops/cpu.h"

#include <immintrin.h>

#define PAR_MIN_FLOPS 65536

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* lanes i + i+4 */
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                        /* (0+2), (1+3) */
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* R rows of x (R = 1..4, a constant after inlining) against one weight row wo: (in). */
static inline __attribute__((always_inline)) void dot_rows(float *y, int64_t ystride,
                                                           const float *x, int64_t in,
                                                           const float *wo, const float *bias, int R) {
    __m256 a0[4], a1[4];
    for (int r = 0; r < R; r++) { a0[r] = _mm256_setzero_ps(); a1[r] = _mm256_setzero_ps(); }
    int64_t i = 0;
    for (; i + 16 <= in; i += 16) {
        const __m256 w0 = _mm256_loadu_ps(wo + i), w1 = _mm256_loadu_ps(wo + i + 8);
        for (int r = 0; r < R; r++) {
            a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * in + i), w0, a0[r]);
            a1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * in + i + 8), w1, a1[r]);
        }
    }
    if (i + 8 <= in) {
        const __m256 w0 = _mm256_loadu_ps(wo + i);
        for (int r = 0; r < R; r++) a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * in + i), w0, a0[r]);
        i += 8;
    }
    for (int r = 0; r < R; r++) {
        float s = hsum8(_mm256_add_ps(a0[r], a1[r]));
        for (int64_t t = i; t < in; t++) s += x[r * in + t] * wo[t];
        y[r * ystride] = bias ? s + *bias : s;
    }
}

void mi_linear_avx2(float *y, const float *x, const float *w, const float *b, int64_t n,
                    int64_t in, int64_t out) {
    #pragma omp parallel for num_threads(mi_threads()) if (n * in * out > PAR_MIN_FLOPS) schedule(static)
    for (int64_t o = 0; o < out; o++) {
        const float *wo = w + o * in;
        const float *bias = b ? b + o : NULL;
        int64_t r = 0;
        for (; r + 4 <= n; r += 4) dot_rows(y + r * out + o, out, x + r * in, in, wo, bias, 4);
        switch (n - r) {
        case 3: dot_rows(y + r * out + o, out, x + r * in, in, wo, bias, 3); break;
        case 2: dot_rows(y + r * out + o, out, x + r * in, in, wo, bias, 2); break;
        case 1: dot_rows(y + r * out + o, out, x + r * in, in, wo, bias, 1); break;
        default: break;
        }
    }
}

void mi_matmul_avx2(float *C, const float *A, const float *B, int64_t M, int64_t K, int64_t N) {
    #pragma omp parallel for num_threads(mi_threads()) if (M * K * N > PAR_MIN_FLOPS) schedule(static)
    for (int64_t m = 0; m < M; m++) {
        const float *a = A + m * K;
        float *c = C + m * N;
        int64_t j = 0;
        for (; j + 32 <= N; j += 32) {   /* 4 accumulators per row: C's 32 columns stay in registers */
            __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
            for (int64_t k = 0; k < K; k++) {
                const __m256 ak = _mm256_set1_ps(a[k]);
                const float *bk = B + k * N + j;
                c0 = _mm256_add_ps(c0, _mm256_mul_ps(ak, _mm256_loadu_ps(bk)));
                c1 = _mm256_add_ps(c1, _mm256_mul_ps(ak, _mm256_loadu_ps(bk + 8)));
                c2 = _mm256_add_ps(c2, _mm256_mul_ps(ak, _mm256_loadu_ps(bk + 16)));
                c3 = _mm256_add_ps(c3, _mm256_mul_ps(ak, _mm256_loadu_ps(bk + 24)));
            }
            _mm256_storeu_ps(c + j, c0);      _mm256_storeu_ps(c + j + 8, c1);
            _mm256_storeu_ps(c + j + 16, c2); _mm256_storeu_ps(c + j + 24, c3);
        }
        for (; j + 8 <= N; j += 8) {
            __m256 c0 = _mm256_setzero_ps();
            for (int64_t k = 0; k < K; k++)
                c0 = _mm256_add_ps(c0, _mm256_mul_ps(_mm256_set1_ps(a[k]), _mm256_loadu_ps(B + k * N + j)));
            _mm256_storeu_ps(c + j, c0);
        }
        for (; j < N; j++) {             /* tail columns: the reference's expression */
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++) s = s + a[k] * B[k * N + j];
            c[j] = s;
        }
    }
}
