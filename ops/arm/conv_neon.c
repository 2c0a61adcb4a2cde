/* ops/arm/conv_neon.c - AArch64 ASIMD micro-kernels of the packed convolution GEMM (ops/gemm.h,
 * ops/gemm.c). ASIMD is part of every AArch64 CPU, so mi_cpu_isa() is MI_ISA_NEON on all of
 * them. Reference: mi_conv_forward_ref / mi_deconv_forward_ref; tests: tests/test_conv.c (the
 * torch cases, the tail sweeps against the reference and the 1/2/4-thread memcmp, under
 * qemu-user by `make test-arm`).
 *
 * Tile: MR = 8 output channels x NR = 12 pixels = 24 q-register accumulators, 3 for the B row, the
 * broadcast weight in a fourth (of 32 registers): 24 FMAs per k step against 3 loads + 8
 * broadcasts. Each accumulator is c = vfmaq_f32(c, b, a) - a fused multiply-add - over k in
 * order from 0 (or from the previous K block's partial sums), then + bias, + residual, then
 * v < 0 ? 0 : v: the same sequence for every tile and thread, so the bits do not depend on the
 * thread count. run_t turns the tile around for small maps (ops/conv.c, chan_lanes_win): 8
 * pixels broadcast x 12 output channels on the lanes. Both store through a small buffer with
 * the masked (or scattered) columns written in C. No performance figures yet: this has only run
 * under qemu, whose times measure nothing. */
#include "ops/gemm.h"

#include <arm_neon.h>

#define MR 8
#define NR 12
#define NV (NR / 4)   /* q registers per tile row */
#define TR 16         /* floats per row of the pixel pack with channels on the lanes (ops/gemm.c) */
#define KC 256        /* B panel 12 KB in L1, A block in L2 */
#define MC 504        /* 63 panels of 8 rows */

/* M rows (constant after inlining) of A with row stride ASTR; T: channels on the lanes. */
static inline __attribute__((always_inline)) void tile(const mi_gemm_ukr_args *p, const int M,
                                                       const int ASTR, const int T) {
    float32x4_t c0[MR], c1[MR], c2[MR];   /* columns 0-3, 4-7, 8-11 of row i */
    if (p->first) {
        #pragma GCC unroll 8
        for (int i = 0; i < M; i++) c0[i] = c1[i] = c2[i] = vdupq_n_f32(0.0f);
    } else {
        #pragma GCC unroll 8
        for (int i = 0; i < M; i++) {
            c0[i] = vld1q_f32(p->acc + i * NR);
            c1[i] = vld1q_f32(p->acc + i * NR + 4);
            c2[i] = vld1q_f32(p->acc + i * NR + 8);
        }
    }
    if (p->last) mi_gemm_prefetch_epilogue(p, M, T);
    const float *a = p->a, *b = p->b;
    for (int64_t k = 0; k < p->kc; k++) {
        const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8);
        #pragma GCC unroll 8
        for (int i = 0; i < M; i++) {
            const float32x4_t ai = vdupq_n_f32(a[i]);
            c0[i] = vfmaq_f32(c0[i], b0, ai);
            c1[i] = vfmaq_f32(c1[i], b1, ai);
            c2[i] = vfmaq_f32(c2[i], b2, ai);
        }
        a += ASTR;
        b += NR;
    }
    float *out = p->last ? NULL : p->acc;
    float buf[MR][NR];
    if (!out) out = &buf[0][0];
    #pragma GCC unroll 8
    for (int i = 0; i < M; i++) {
        vst1q_f32(out + i * NR, c0[i]);
        vst1q_f32(out + i * NR + 4, c1[i]);
        vst1q_f32(out + i * NR + 8, c2[i]);
    }
    if (!p->last) return;
    if (T) {
        /* tile row i = pixel pix[i] of nch channels: column l goes to y[l*ldy + pix[i]] */
        for (int l = 0; l < p->nch; l++) {
            float *yl = p->y + l * p->ldy;
            const float *rl = p->res ? p->res + l * p->ldy : NULL;
            const float bl = p->bias ? p->bias[l] : 0.0f;
            for (int i = 0; i < M; i++) {
                float v = buf[i][l] + bl;
                if (rl) v += rl[p->pix[i]];
                if (p->relu) v = v < 0.0f ? 0.0f : v;
                yl[p->pix[i]] = v;
            }
        }
        return;
    }
    for (int i = 0; i < M; i++) {
        float *yr = p->y + i * p->ldy;
        const float *rr = p->res ? p->res + i * p->ldy : NULL;
        const float bi = p->bias ? p->bias[i] : 0.0f;
        for (int s = 0; s < p->nseg; s++) {   /* column j of the tile -> y[off + j] */
            const uint32_t m = p->seg[s].mask;
            const int64_t off = p->seg[s].off;
            if (m == (1u << NR) - 1u) {   /* a whole row: vector epilogue, same operations */
                const float32x4_t bv = vdupq_n_f32(bi), zero = vdupq_n_f32(0.0f);
                for (int v = 0; v < NV; v++) {
                    float32x4_t o = vaddq_f32(vld1q_f32(buf[i] + 4 * v), bv);
                    if (rr) o = vaddq_f32(o, vld1q_f32(rr + off + 4 * v));
                    /* v < 0 ? 0 : v, lane by lane (vmaxq would turn NaN into 0) */
                    if (p->relu) o = vbslq_f32(vcltq_f32(o, zero), zero, o);
                    vst1q_f32(yr + off + 4 * v, o);
                }
                continue;
            }
            for (int j = 0; j < NR; j++) {
                if (!(m >> j & 1u)) continue;
                float v = buf[i][j] + bi;
                if (rr) v += rr[off + j];
                if (p->relu) v = v < 0.0f ? 0.0f : v;
                yr[off + j] = v;
            }
        }
    }
}

#define CASES(T, ASTR) \
    switch (mr) { \
    case 8: tile(p, 8, ASTR, T); break; \
    case 7: tile(p, 7, ASTR, T); break; \
    case 6: tile(p, 6, ASTR, T); break; \
    case 5: tile(p, 5, ASTR, T); break; \
    case 4: tile(p, 4, ASTR, T); break; \
    case 3: tile(p, 3, ASTR, T); break; \
    case 2: tile(p, 2, ASTR, T); break; \
    default: tile(p, 1, ASTR, T); break; \
    }

/* pixels on the lanes: mr output channels (rows of packed weights, MR apart) x NR pixels */
static void run(const mi_gemm_ukr_args *p, int mr) { CASES(0, MR) }
/* channels on the lanes: mr pixels (rows of the pixel pack, TR apart) x NR output channels */
static void run_t(const mi_gemm_ukr_args *p, int mr) { CASES(1, TR) }

static void pack(float *dst, const float *src, const int64_t *koff, int64_t kc, int nr) {
    if (nr == NR) {
        for (int64_t k = 0; k < kc; k++) {
            const float *s = src + koff[k];
            vst1q_f32(dst + k * NR, vld1q_f32(s));
            vst1q_f32(dst + k * NR + 4, vld1q_f32(s + 4));
            vst1q_f32(dst + k * NR + 8, vld1q_f32(s + 8));
        }
        return;
    }
    for (int64_t k = 0; k < kc; k++) {
        const float *s = src + koff[k];
        float *d = dst + k * NR;
        for (int j = 0; j < nr; j++) d[j] = s[j];
        for (int j = nr; j < NR; j++) d[j] = 0.0f;
    }
}

/* dst[k][0..TR): the panel's (at most MR) pixels, run by run, zeros elsewhere. */
static void pack_t(float *dst, const float *src, const int64_t *koff, int64_t kc,
                   const mi_gemm_seg *run, int nrun) {
    for (int64_t k = 0; k < kc; k++) {
        const float *s = src + koff[k];
        float *d = dst + k * TR;
        for (int j = 0; j < TR; j++) d[j] = 0.0f;
        for (int r = 0; r < nrun; r++)
            for (int j = 0; j < MR; j++)
                if (run[r].mask >> j & 1u) d[j] = s[run[r].off + j];
    }
}

/* Stride 2 (every stride-2 layer of ResNet and V-Net): vld2q splits 8 floats into even and odd. */
static void strided(float *dst, const float *src, int64_t n, int64_t stride, int64_t avail) {
    int64_t j = 0;
    if (stride == 2)
        for (; j + 4 <= n && 2 * (j + 4) <= avail; j += 4) vst1q_f32(dst + j, vld2q_f32(src + 2 * j).val[0]);
    for (; j < n; j++) dst[j] = src[j * stride];
}

const mi_gemm_ukr mi_gemm_ukr_neon = { .mr = MR, .nr = NR, .kc = KC, .mc = MC, .run = run, .pack = pack,
                                       .strided = strided, .run_t = run_t, .pack_t = pack_t,
                                       .wino4_min_tiles = 9, .prefetch_a = 1, .chan_pixel_k = 40,
                                       .chan_k_pct = 100 };
