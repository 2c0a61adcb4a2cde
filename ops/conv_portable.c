/* ops/conv_portable.c - the portable micro-kernels of the packed convolution GEMM (ops/gemm.h,
 * ops/gemm.c) in plain C11, for every CPU without kernels of its own (neither x86 with AVX2 nor
 * aarch64), and wherever MI_ISA=portable forces them (how CI tests them on x86). They give every ISA the
 * fast paths: packed GEMM, Winograd (with the scalar transforms of ops/conv_winograd.c: the
 * table's wino* are NULL) and transposed convolution.
 * Reference: mi_conv_forward_ref / mi_deconv_forward_ref; tests: tests/test_conv.c (the torch
 * cases, the tail sweeps and the 1/2/4-thread memcmp run on MI_ISA_PORTABLE like on AVX2).
 *
 * Written for the compiler's vectorizer, not with intrinsics: the register tile is a local
 * MR x NR array indexed only by constants once the fixed-count loops are unrolled (#pragma GCC
 * unroll), and its rows run over the NR contiguous columns of a packed row (pixels, or output
 * channels with channels on the lanes), so GCC 12 at -O2 keeps the tile in 8 four-lane registers
 * and does each k step as 8 vector multiplies and 8 adds (SSE2 on x86-64, ASIMD on aarch64; seen
 * in the assembly). MR = 4 x NR = 8 is what fits SSE2's 16 registers: at MR = 6 GCC spilled the
 * tile to the stack in two-lane pieces. The epilogue indexes the tile by run-time counts, so it
 * reads a copy in memory. The tile always computes all MR rows (rows past mr are packed as
 * zeros) and stores the mr real ones.
 * Arithmetic: c = c + a*b, a multiply then an add (no FMA: -ffp-contract=off), over k in order
 * from 0 (or from the previous K block's partial sums), then + bias, + residual, then
 * v < 0 ? 0 : v - the same sequence for every tile, so the bits do not depend on the thread
 * count. For a direct convolution the k order is the reference's (ci, kd, kh, kw) order. */
#include "ops/gemm.h"

#include <string.h>

#define MR 4
#define NR 8
#define TR 16    /* floats per row of the pixel pack with channels on the lanes (ops/gemm.c) */
#define KC 256   /* B panel 8 KB in L1, A block in L2 */
#define MC 504   /* 126 panels of 4 rows */

/* T: channels on the lanes (rows of the tile are pixels, columns output channels). */
static inline __attribute__((always_inline)) void tile(const mi_gemm_ukr_args *p, int mr, const int T) {
    const int ASTR = T ? TR : MR;   /* a rows: MR weights, or TR pixels */
    const float *restrict a = p->a, *restrict b = p->b;
    const float *restrict acc = p->acc;
    float c[MR][NR];
    #pragma GCC unroll 4
    for (int i = 0; i < MR; i++)
        #pragma GCC unroll 8
        for (int j = 0; j < NR; j++) c[i][j] = p->first ? 0.0f : acc[i * NR + j];
    for (int64_t k = 0; k < p->kc; k++) {
        float bk[NR];
        #pragma GCC unroll 8
        for (int j = 0; j < NR; j++) bk[j] = b[j];
        #pragma GCC unroll 4
        for (int i = 0; i < MR; i++) {
            const float ai = a[i];
            #pragma GCC unroll 8
            for (int j = 0; j < NR; j++) c[i][j] = c[i][j] + ai * bk[j];
        }
        a += ASTR;
        b += NR;
    }
    /* the tile leaves the registers here; the epilogue below indexes it by run-time counts */
    float buf[MR * NR];
    float *restrict out = p->last ? buf : p->acc;
    #pragma GCC unroll 4
    for (int i = 0; i < MR; i++)
        #pragma GCC unroll 8
        for (int j = 0; j < NR; j++) out[i * NR + j] = c[i][j];
    if (!p->last) return;
    if (T) {
        /* tile row i = pixel pix[i] of nch channels: column l goes to y[l*ldy + pix[i]] */
        for (int l = 0; l < p->nch; l++) {
            float *yl = p->y + l * p->ldy;
            const float *rl = p->res ? p->res + l * p->ldy : NULL;
            const float bl = p->bias ? p->bias[l] : 0.0f;
            for (int i = 0; i < mr; i++) {
                float v = buf[i * NR + l] + bl;
                if (rl) v += rl[p->pix[i]];
                if (p->relu) v = v < 0.0f ? 0.0f : v;
                yl[p->pix[i]] = v;
            }
        }
        return;
    }
    for (int i = 0; i < mr; i++) {
        float *yr = p->y + i * p->ldy;
        const float *rr = p->res ? p->res + i * p->ldy : NULL;
        const float bi = p->bias ? p->bias[i] : 0.0f;
        for (int s = 0; s < p->nseg; s++) {   /* column j of the tile -> y[off + j] */
            const uint32_t m = p->seg[s].mask;
            const int64_t off = p->seg[s].off;
            for (int j = 0; j < NR; j++) {
                if (!(m >> j & 1u)) continue;
                float v = buf[i * NR + j] + bi;
                if (rr) v += rr[off + j];
                if (p->relu) v = v < 0.0f ? 0.0f : v;
                yr[off + j] = v;
            }
        }
    }
}

/* pixels on the lanes: mr output channels (rows of packed weights, MR apart) x NR pixels */
static void run(const mi_gemm_ukr_args *p, int mr) { tile(p, mr, 0); }
/* channels on the lanes: mr pixels (rows of the pixel pack, TR apart) x NR output channels */
static void run_t(const mi_gemm_ukr_args *p, int mr) { tile(p, mr, 1); }

static void pack(float *restrict dst, const float *restrict src, const int64_t *koff, int64_t kc, int nr) {
    for (int64_t k = 0; k < kc; k++) {
        const float *s = src + koff[k];
        float *d = dst + k * NR;
        if (nr == NR) {
            for (int j = 0; j < NR; j++) d[j] = s[j];
        } else {
            for (int j = 0; j < nr; j++) d[j] = s[j];
            for (int j = nr; j < NR; j++) d[j] = 0.0f;
        }
    }
}

/* dst[k][0..TR): the panel's (at most MR) pixels, run by run, zeros elsewhere (the tile reads
 * lanes 0..MR-1, rows past the panel's pixels as zeros). */
static void pack_t(float *restrict dst, const float *restrict src, const int64_t *koff, int64_t kc,
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

static void strided(float *restrict dst, const float *restrict src, int64_t n, int64_t stride, int64_t avail) {
    (void)avail;   /* src[j*stride] for j < n lies below avail by the contract */
    for (int64_t j = 0; j < n; j++) dst[j] = src[j * stride];
}

const mi_gemm_ukr mi_gemm_ukr_portable = { .mr = MR, .nr = NR, .kc = KC, .mc = MC, .run = run,
                                           .pack = pack, .strided = strided, .run_t = run_t,
                                           .pack_t = pack_t, .wino4_min_tiles = 9, .prefetch_a = 1, .chan_pixel_k = 40,
                                           .chan_k_pct = 100 };
