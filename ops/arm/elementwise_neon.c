/* ops/arm/elementwise_neon.c - AArch64 ASIMD add, mul, add+ReLU, per-channel add/mul, per-pixel
 * mul, argmax over channels: ops/x86/elementwise_avx2.c in four lanes. References:
 * ops/elementwise.c (mi_*_ref); tests: tests/test_ops.c and tests/test_ops2.c
 * (elementwise_fast_equals_ref: memcmp over tail sizes, in place; elementwise_threads_same_bits),
 * under qemu-user by `make test-arm`. One add or multiply per element, as in the reference, and
 * the ReLU as a select (x < 0 -> 0, NaN and -0 kept): the same bits. */
#include "ops/elementwise.h"
#include "ops/cpu.h"

#include <arm_neon.h>
#include <math.h>
#include <stdint.h>

#define PAR_MIN 32768

static inline float32x4_t relu4(float32x4_t s) {
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(s), vcltq_f32(s, vdupq_n_f32(0.0f))));
}

/* y = a OP b over n floats, split into 16-float blocks across threads, then 4-float steps and a
 * scalar tail in the reference's expression. */
#define BINARY(name, VEXPR, SEXPR)                                                               \
    void name(float *y, const float *a, const float *b, int64_t n) {                             \
        const int64_t nb = n / 16;                                                               \
        _Pragma("omp parallel for num_threads(mi_threads()) if (n > PAR_MIN) schedule(static)")  \
        for (int64_t k = 0; k < nb; k++)                                                         \
            for (int u = 0; u < 16; u += 4) {                                                    \
                const float32x4_t va = vld1q_f32(a + 16 * k + u), vb = vld1q_f32(b + 16 * k + u); \
                vst1q_f32(y + 16 * k + u, VEXPR);                                                \
            }                                                                                    \
        int64_t i = nb * 16;                                                                     \
        for (; i + 4 <= n; i += 4) {                                                             \
            const float32x4_t va = vld1q_f32(a + i), vb = vld1q_f32(b + i);                      \
            vst1q_f32(y + i, VEXPR);                                                             \
        }                                                                                        \
        for (; i < n; i++) { const float s = SEXPR; y[i] = s; }                                  \
    }

BINARY(mi_add_neon, vaddq_f32(va, vb), a[i] + b[i])
BINARY(mi_mul_neon, vmulq_f32(va, vb), a[i] * b[i])
BINARY(mi_add_relu_neon, relu4(vaddq_f32(va, vb)), a[i] + b[i] < 0.0f ? 0.0f : a[i] + b[i])

/* y[n,c,:] = x[n,c,:] OP v[c] */
#define CHANNEL(name, VOP, SOP)                                                                  \
    void name(float *y, const float *x, const float *v, int64_t N, int64_t C, int64_t inner) {   \
        _Pragma("omp parallel for collapse(2) num_threads(mi_threads()) if (N * C * inner > PAR_MIN) schedule(static)") \
        for (int64_t n = 0; n < N; n++)                                                          \
            for (int64_t c = 0; c < C; c++) {                                                    \
                const float *xp = x + (n * C + c) * inner;                                       \
                float *yp = y + (n * C + c) * inner;                                             \
                const float s = v[c];                                                            \
                const float32x4_t vs = vdupq_n_f32(s);                                           \
                int64_t i = 0;                                                                   \
                for (; i + 8 <= inner; i += 8) {                                                 \
                    const float32x4_t x0 = vld1q_f32(xp + i), x1 = vld1q_f32(xp + i + 4);        \
                    vst1q_f32(yp + i, VOP(x0, vs));                                              \
                    vst1q_f32(yp + i + 4, VOP(x1, vs));                                          \
                }                                                                                \
                for (; i + 4 <= inner; i += 4) vst1q_f32(yp + i, VOP(vld1q_f32(xp + i), vs));    \
                for (; i < inner; i++) yp[i] = xp[i] SOP s;                                      \
            }                                                                                    \
    }

CHANNEL(mi_add_channel_neon, vaddq_f32, +)
CHANNEL(mi_mul_channel_neon, vmulq_f32, *)

/* y[n,c,:] = x[n,c,:] * w[n,:]: one multiply per element, as mi_mul_spatial_ref */
void mi_mul_spatial_neon(float *y, const float *x, const float *w, int64_t N, int64_t C, int64_t inner) {
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (N * C * inner > PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            const float *xp = x + (n * C + c) * inner, *wp = w + n * inner;
            float *yp = y + (n * C + c) * inner;
            int64_t i = 0;
            for (; i + 8 <= inner; i += 8) {
                const float32x4_t p0 = vmulq_f32(vld1q_f32(xp + i), vld1q_f32(wp + i));
                const float32x4_t p1 = vmulq_f32(vld1q_f32(xp + i + 4), vld1q_f32(wp + i + 4));
                vst1q_f32(yp + i, p0);
                vst1q_f32(yp + i + 4, p1);
            }
            for (; i + 4 <= inner; i += 4) vst1q_f32(yp + i, vmulq_f32(vld1q_f32(xp + i), vld1q_f32(wp + i)));
            for (; i < inner; i++) yp[i] = xp[i] * wp[i];
        }
}

/* argmax over channels, four pixels per vector: a lane takes channel c where x > best, or where
 * x is NaN and best is not (the first NaN wins and stays, as in mi_argmax_channels_ref); indices
 * are integers, so the result is the reference's. The pixels past the last whole vector of a
 * plane run the reference's loop. Work items are blocks of 16 pixels (four vectors kept in
 * flight: each lane's compare-and-select over c is one dependent chain). */
static inline __attribute__((always_inline)) void argmax_block(int32_t *idx, const float *xp, int64_t C,
                                                               int64_t inner, const int V) {
    float32x4_t best[4];
    uint32x4_t bi[4];
    #pragma GCC unroll 4
    for (int v = 0; v < V; v++) {
        best[v] = vld1q_f32(xp + 4 * v);
        bi[v] = vdupq_n_u32(0);
    }
    for (int64_t c = 1; c < C; c++) {
        const uint32x4_t vc = vdupq_n_u32((uint32_t)c);
        #pragma GCC unroll 4
        for (int v = 0; v < V; v++) {
            const float32x4_t x = vld1q_f32(xp + c * inner + 4 * v);
            /* v > best, or v NaN (v != v) and best not (best == best) */
            const uint32x4_t take = vorrq_u32(vcgtq_f32(x, best[v]),
                                              vbicq_u32(vceqq_f32(best[v], best[v]), vceqq_f32(x, x)));
            best[v] = vbslq_f32(take, x, best[v]);
            bi[v] = vbslq_u32(take, vc, bi[v]);
        }
    }
    #pragma GCC unroll 4
    for (int v = 0; v < V; v++) vst1q_s32(idx + 4 * v, vreinterpretq_s32_u32(bi[v]));
}

void mi_argmax_channels_neon(int32_t *idx, const float *x, int64_t N, int64_t C, int64_t inner) {
    MI_ASSERT(C >= 1 && C <= INT32_MAX);
    const int64_t nb = (inner + 15) / 16;
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (N * C * inner > PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t b = 0; b < nb; b++) {
            const int64_t i = 16 * b, left = inner - i < 16 ? inner - i : 16;
            const float *xp = x + n * C * inner + i;
            int32_t *ip = idx + n * inner + i;
            switch (left / 4) {
            case 4: argmax_block(ip, xp, C, inner, 4); break;
            case 3: argmax_block(ip, xp, C, inner, 3); break;
            case 2: argmax_block(ip, xp, C, inner, 2); break;
            case 1: argmax_block(ip, xp, C, inner, 1); break;
            default: break;
            }
            for (int64_t j = left / 4 * 4; j < left; j++) {   /* the reference's loop */
                const float *xj = xp + j;
                float best = xj[0];
                int32_t bj = 0;
                for (int64_t c = 1; c < C && !isnan(best); c++) {
                    const float v = xj[c * inner];
                    if (v > best || isnan(v)) { best = v; bj = (int32_t)c; }
                }
                ip[j] = bj;
            }
        }
}
