/* ops/x86/conv_avx512.c - AVX-512F micro-kernel of the packed convolution GEMM (ops/conv.c,
 * mi_conv_gemm_run). Reference: mi_conv_forward_ref / mi_deconv_forward_ref; tests:
 * tests/test_conv.c (every case runs on every ISA the CPU has, against torch and the reference,
 * and memcmp across 1, 2 and 4 threads).
 *
 * Tile: MR = 14 output channels x NR = 32 pixels = 28 zmm accumulators, 2 zmm for the B row; the
 * 14 weights of a k step are broadcast from memory into the FMAs (embedded {1to16}). Per k step:
 * 28 FMAs against 2 vector loads + 14 broadcast loads, so the two FMA ports, not the load ports,
 * are the limit. Each accumulator is c = fma(a, b, c) over k in order, starting from 0 (or from
 * the partial sums of the previous K block), then + bias, + residual, relu: the same sequence
 * whatever the tile's position or row count, hence thread-count independent bits.
 * run_t is the same tile turned around for small maps (ops/conv.c, want_chan_lanes): 14 pixels
 * broadcast from the packed input x 32 output channels on the lanes, the epilogue scattering each
 * pixel's 32 channels to their NCHW rows (64-bit indices: any map size). Measured alone in L1:
 * 97 % of the FMA peak for run (kc = 256), 86 % for run_t (its scatters included). */
#include "../conv.h"

#include <immintrin.h>

#define MR 14
#define NR 32
#define KC 256   /* B panel 32 KB stays in L1 (48 KB) while A streams from L2 */
/* Weight prefetch distance in k steps (4 KB ahead with channels on the lanes, 1.8 KB with
 * pixels): a forward pass reads each layer's packed weights once, from L3 or memory, and the
 * hardware prefetchers alone leave the first pass over each K block latency-bound (ResNet-50,
 * 1 thread: -9 %; distances 8..64 measured, 32..64 best; an extra prefetcht1 further ahead gave
 * nothing more). */
#define PF_K 32
#define MC 504   /* 36 panels: the A block (504 x 256 floats, 516 KB) stays in L2 */

/* M rows (constant after inlining) of A with row stride ASTR; T: channels on the lanes. */
static inline __attribute__((always_inline)) void tile(const mi_conv_ukr_args *p, const int M,
                                                       const int ASTR, const int T) {
    __m512 c0[MR], c1[MR];
    if (p->first) {
        #pragma GCC unroll 14
        for (int i = 0; i < M; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    } else {
        #pragma GCC unroll 14
        for (int i = 0; i < M; i++) {
            c0[i] = _mm512_load_ps(p->acc + i * NR);
            c1[i] = _mm512_load_ps(p->acc + i * NR + 16);
        }
    }
    const float *a = p->a, *b = p->b;
    for (int64_t k = 0; k < p->kc; k++) {
        /* the weight stream, PF_K k steps ahead (later passes over the block: L1/L2 hits) */
        if (T) {
            _mm_prefetch((const char *)(b + PF_K * NR), _MM_HINT_T0);
            _mm_prefetch((const char *)(b + PF_K * NR + 16), _MM_HINT_T0);
        } else {
            _mm_prefetch((const char *)(a + PF_K * ASTR), _MM_HINT_T0);
        }
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        #pragma GCC unroll 14
        for (int i = 0; i < M; i++) {
            const __m512 ai = _mm512_set1_ps(a[i]);
            c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
        }
        a += ASTR;
        b += NR;
    }
    if (!p->last) {
        #pragma GCC unroll 14
        for (int i = 0; i < M; i++) {
            _mm512_store_ps(p->acc + i * NR, c0[i]);
            _mm512_store_ps(p->acc + i * NR + 16, c1[i]);
        }
        return;
    }
    const __m512 zero = _mm512_setzero_ps();
    if (T) {
        /* tile row i = pixel pix[i] of nch channels: lane l goes to y[l*ldy + pix[i]] */
        const int nch = p->nch;
        const __mmask16 m0 = (__mmask16)(nch >= 16 ? 0xffff : (1u << nch) - 1u);
        const __mmask16 m1 = (__mmask16)(nch >= 32 ? 0xffff : nch > 16 ? (1u << (nch - 16)) - 1u : 0u);
        __m512 bv0 = zero, bv1 = zero;
        if (p->bias) {
            bv0 = _mm512_maskz_loadu_ps(m0, p->bias);
            bv1 = _mm512_maskz_loadu_ps(m1, p->bias + 16);
        }
        int64_t lane[32];
        for (int l = 0; l < 32; l++) lane[l] = l * p->ldy;
        __m512i ix[4];
        __mmask8 mk[4];
        for (int q = 0; q < 4; q++) {
            ix[q] = _mm512_loadu_si512(lane + 8 * q);
            mk[q] = (__mmask8)(((uint32_t)m0 | (uint32_t)m1 << 16) >> (8 * q));
        }
        #pragma GCC unroll 14
        for (int i = 0; i < M; i++) {
            __m512 v[2] = { _mm512_add_ps(c0[i], bv0), _mm512_add_ps(c1[i], bv1) };
            if (p->res) {
                const float *rr = p->res + p->pix[i];
                for (int h = 0; h < 2; h++) {
                    __m256 lo = _mm512_mask_i64gather_ps(_mm256_setzero_ps(), mk[2 * h], ix[2 * h], rr, 4);
                    __m256 hi = _mm512_mask_i64gather_ps(_mm256_setzero_ps(), mk[2 * h + 1], ix[2 * h + 1], rr, 4);
                    v[h] = _mm512_add_ps(v[h], _mm512_castpd_ps(_mm512_insertf64x4(
                               _mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1)));
                }
            }
            float *yp = p->y + p->pix[i];
            for (int h = 0; h < 2; h++) {
                if (p->relu) v[h] = _mm512_max_ps(v[h], zero);
                _mm512_mask_i64scatter_ps(yp, mk[2 * h], ix[2 * h], _mm512_castps512_ps256(v[h]), 4);
                _mm512_mask_i64scatter_ps(yp, mk[2 * h + 1], ix[2 * h + 1],
                                          _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v[h]), 1)), 4);
            }
        }
        return;
    }
    #pragma GCC unroll 14
    for (int i = 0; i < M; i++) {
        __m512 v0 = c0[i], v1 = c1[i];
        if (p->bias) {
            const __m512 bv = _mm512_set1_ps(p->bias[i]);
            v0 = _mm512_add_ps(v0, bv);
            v1 = _mm512_add_ps(v1, bv);
        }
        float *yr = p->y + i * p->ldy;
        if (p->res) {
            const float *rr = p->res + i * p->ldy;
            __m512 r0 = zero, r1 = zero;
            for (int s = 0; s < p->nseg; s++) {
                const uint32_t m = p->seg[s].mask;
                r0 = _mm512_mask_loadu_ps(r0, (__mmask16)m, rr + p->seg[s].off);
                r1 = _mm512_mask_loadu_ps(r1, (__mmask16)(m >> 16), rr + p->seg[s].off + 16);
            }
            v0 = _mm512_add_ps(v0, r0);
            v1 = _mm512_add_ps(v1, r1);
        }
        if (p->relu) {
            v0 = _mm512_max_ps(v0, zero);
            v1 = _mm512_max_ps(v1, zero);
        }
        for (int s = 0; s < p->nseg; s++) {
            const uint32_t m = p->seg[s].mask;
            _mm512_mask_storeu_ps(yr + p->seg[s].off, (__mmask16)m, v0);
            _mm512_mask_storeu_ps(yr + p->seg[s].off + 16, (__mmask16)(m >> 16), v1);
        }
    }
}

#define CASES(T, ASTR) \
    switch (mr) { \
    case 14: tile(p, 14, ASTR, T); break; \
    case 13: tile(p, 13, ASTR, T); break; \
    case 12: tile(p, 12, ASTR, T); break; \
    case 11: tile(p, 11, ASTR, T); break; \
    case 10: tile(p, 10, ASTR, T); break; \
    case 9: tile(p, 9, ASTR, T); break; \
    case 8: tile(p, 8, ASTR, T); break; \
    case 7: tile(p, 7, ASTR, T); break; \
    case 6: tile(p, 6, ASTR, T); break; \
    case 5: tile(p, 5, ASTR, T); break; \
    case 4: tile(p, 4, ASTR, T); break; \
    case 3: tile(p, 3, ASTR, T); break; \
    case 2: tile(p, 2, ASTR, T); break; \
    default: tile(p, 1, ASTR, T); break; \
    }

/* pixels on the lanes: mr output channels (rows of packed weights, MR apart) x 32 pixels */
static void run(const mi_conv_ukr_args *p, int mr) { CASES(0, MR) }
/* channels on the lanes: mr pixels (rows of the pixel pack, 16 apart) x 32 output channels */
static void run_t(const mi_conv_ukr_args *p, int mr) { CASES(1, 16) }

/* dst[k][0..16): the panel's pixels, run by run (masked loads merge them), zeros elsewhere. */
static void pack_t(float *dst, const float *src, const int64_t *koff, int64_t kc,
                   const mi_conv_seg *run, int nrun) {
    for (int64_t k = 0; k < kc; k++) {
        const float *s = src + koff[k];
        __m512 v = _mm512_setzero_ps();
        for (int r = 0; r < nrun; r++) v = _mm512_mask_loadu_ps(v, (__mmask16)run[r].mask, s + run[r].off);
        _mm512_store_ps(dst + k * 16, v);
    }
}

static void pack(float *dst, const float *src, const int64_t *koff, int64_t kc, int nr) {
    if (nr == NR) {
        for (int64_t k = 0; k < kc; k++) {
            const float *s = src + koff[k];
            /* the next panel's rows: 2 lines each, one of ~kc streams the hardware cannot track */
            _mm_prefetch((const char *)(s + NR), _MM_HINT_T0);
            _mm_prefetch((const char *)(s + NR + 16), _MM_HINT_T0);
            _mm512_store_ps(dst + k * NR, _mm512_loadu_ps(s));
            _mm512_store_ps(dst + k * NR + 16, _mm512_loadu_ps(s + 16));
        }
        return;
    }
    const __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1u);
    const __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xffff : nr > 16 ? (1u << (nr - 16)) - 1u : 0u);
    for (int64_t k = 0; k < kc; k++) {
        const float *s = src + koff[k];
        _mm512_store_ps(dst + k * NR, _mm512_maskz_loadu_ps(m0, s));
        _mm512_store_ps(dst + k * NR + 16, _mm512_maskz_loadu_ps(m1, s + 16));
    }
}

/* Stride 2 (every stride-2 layer of ResNet and V-Net): 32 floats in, the 16 even ones out. */
static void strided(float *dst, const float *src, int64_t n, int64_t stride, int64_t avail) {
    int64_t j = 0;
    if (stride == 2) {
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        for (; j + 16 <= n && 2 * (j + 16) <= avail; j += 16)
            _mm512_storeu_ps(dst + j, _mm512_permutex2var_ps(_mm512_loadu_ps(src + 2 * j), even,
                                                             _mm512_loadu_ps(src + 2 * j + 16)));
    }
    for (; j < n; j++) dst[j] = src[j * stride];
}

const mi_conv_ukr mi_conv_ukr_avx512 = { MR, NR, KC, MC, run, pack, strided, run_t, pack_t };
