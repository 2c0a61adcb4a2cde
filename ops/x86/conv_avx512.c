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
 * whatever the tile's position or row count, hence thread-count independent bits. */
#include "../conv.h"

#include <immintrin.h>

#define MR 14
#define NR 32
#define KC 256   /* B panel 32 KB stays in L1 (48 KB) while A streams from L2 */
#define MC 504   /* 36 panels: the A block (504 x 256 floats, 516 KB) stays in L2 */

static inline __attribute__((always_inline)) void tile(const mi_conv_ukr_args *p, const int M) {
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
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        #pragma GCC unroll 14
        for (int i = 0; i < M; i++) {
            const __m512 ai = _mm512_set1_ps(a[i]);
            c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
        }
        a += MR;
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

static void run(const mi_conv_ukr_args *p, int mr) {
    switch (mr) {
    case 14: tile(p, 14); break;
    case 13: tile(p, 13); break;
    case 12: tile(p, 12); break;
    case 11: tile(p, 11); break;
    case 10: tile(p, 10); break;
    case 9: tile(p, 9); break;
    case 8: tile(p, 8); break;
    case 7: tile(p, 7); break;
    case 6: tile(p, 6); break;
    case 5: tile(p, 5); break;
    case 4: tile(p, 4); break;
    case 3: tile(p, 3); break;
    case 2: tile(p, 2); break;
    default: tile(p, 1); break;
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

const mi_conv_ukr mi_conv_ukr_avx512 = { MR, NR, KC, MC, run, pack, strided };
