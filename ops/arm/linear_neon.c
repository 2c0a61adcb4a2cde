/* ops/arm/linear_neon.c - AArch64 ASIMD linear and matmul: ops/x86/linear_avx2.c in four lanes.
 * References: ops/linear.c (mi_linear_ref, mi_matmul_ref); tests: tests/test_ops.c
 * (linear_matmul_fast_vs_ref over tail sizes, linear_matches_torch, linear_threads_same_bits),
 * under qemu-user by `make test-arm`.
 *
 * linear: y[r,o] = dot(x[r,:], w[o,:]) + b[o]. Memory-bound at small batch (fc 2048->1000 reads
 * 8 MB of weights), so each weight row is streamed once and reused for up to 4 input rows while
 * it sits in L1. Every dot product runs the same fixed sequence whatever the row block or thread:
 * four 4-lane vfmaq_f32 accumulators over 16-float steps, 4-float steps into the first, the four
 * added as (a0 + a1) + (a2 + a3), FADDV, then the scalar tail (multiply, add) and the bias. Not
 * the reference's bits (a fused multiply-add, another order): within the AVX2 kernel's
 * tolerance of it (1e-5 absolute and relative), and a row's bits do not depend on its batch.
 *
 * matmul: vectorized over the columns of C only; every element is accumulated over k in order
 * with a multiply then an add (vmulq_f32, vaddq_f32; no vfmaq_f32), exactly like the reference,
 * so the bits are equal. */
#include "ops/linear.h"
#include "ops/cpu.h"

#include <arm_neon.h>

#define PAR_MIN_FLOPS 65536

/* R rows of x (R = 1..4, a constant after inlining) against one weight row wo: (in). */
static inline __attribute__((always_inline)) void dot_rows(float *y, int64_t ystride,
                                                           const float *x, int64_t in,
                                                           const float *wo, const float *bias, const int R) {
    float32x4_t a0[4], a1[4], a2[4], a3[4];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) a0[r] = a1[r] = a2[r] = a3[r] = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 16 <= in; i += 16) {
        const float32x4_t w0 = vld1q_f32(wo + i), w1 = vld1q_f32(wo + i + 4);
        const float32x4_t w2 = vld1q_f32(wo + i + 8), w3 = vld1q_f32(wo + i + 12);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const float *xr = x + r * in + i;
            a0[r] = vfmaq_f32(a0[r], vld1q_f32(xr), w0);
            a1[r] = vfmaq_f32(a1[r], vld1q_f32(xr + 4), w1);
            a2[r] = vfmaq_f32(a2[r], vld1q_f32(xr + 8), w2);
            a3[r] = vfmaq_f32(a3[r], vld1q_f32(xr + 12), w3);
        }
    }
    for (; i + 4 <= in; i += 4) {
        const float32x4_t w0 = vld1q_f32(wo + i);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) a0[r] = vfmaq_f32(a0[r], vld1q_f32(x + r * in + i), w0);
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0[r], a1[r]), vaddq_f32(a2[r], a3[r])));
        for (int64_t t = i; t < in; t++) s += x[r * in + t] * wo[t];
        y[r * ystride] = bias ? s + *bias : s;
    }
}

void mi_linear_neon(float *y, const float *x, const float *w, const float *b, int64_t n,
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

void mi_matmul_neon(float *C, const float *A, const float *B, int64_t M, int64_t K, int64_t N) {
    #pragma omp parallel for num_threads(mi_threads()) if (M * K * N > PAR_MIN_FLOPS) schedule(static)
    for (int64_t m = 0; m < M; m++) {
        const float *a = A + m * K;
        float *c = C + m * N;
        int64_t j = 0;
        for (; j + 16 <= N; j += 16) {   /* 4 accumulators per row: C's 16 columns stay in registers */
            float32x4_t c0 = vdupq_n_f32(0.0f), c1 = c0, c2 = c0, c3 = c0;
            for (int64_t k = 0; k < K; k++) {
                const float32x4_t ak = vdupq_n_f32(a[k]);
                const float *bk = B + k * N + j;
                c0 = vaddq_f32(c0, vmulq_f32(ak, vld1q_f32(bk)));
                c1 = vaddq_f32(c1, vmulq_f32(ak, vld1q_f32(bk + 4)));
                c2 = vaddq_f32(c2, vmulq_f32(ak, vld1q_f32(bk + 8)));
                c3 = vaddq_f32(c3, vmulq_f32(ak, vld1q_f32(bk + 12)));
            }
            vst1q_f32(c + j, c0);     vst1q_f32(c + j + 4, c1);
            vst1q_f32(c + j + 8, c2); vst1q_f32(c + j + 12, c3);
        }
        for (; j + 4 <= N; j += 4) {
            float32x4_t c0 = vdupq_n_f32(0.0f);
            for (int64_t k = 0; k < K; k++) c0 = vaddq_f32(c0, vmulq_f32(vdupq_n_f32(a[k]), vld1q_f32(B + k * N + j)));
            vst1q_f32(c + j, c0);
        }
        for (; j < N; j++) {             /* tail columns: the reference's expression */
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++) s = s + a[k] * B[k * N + j];
            c[j] = s;
        }
    }
}
