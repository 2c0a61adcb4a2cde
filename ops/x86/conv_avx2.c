/* ops/x86/conv_avx2.c - AVX2+FMA micro-kernels of the packed convolution GEMM (ops/gemm.h,
 * ops/gemm.c). Reference: mi_conv_forward_ref / mi_deconv_forward_ref; tests:
 * tests/test_conv.c (every case runs on every ISA the CPU has, against torch and the reference,
 * and memcmp across 1, 2 and 4 threads).
 *
 * Tile: MR = 6 output channels x NR = 16 pixels = 12 ymm accumulators, 2 ymm for the B row, one
 * for the broadcast weight (15 of 16 registers): 12 FMAs per k step against 2 loads + 6 broadcasts.
  * Each accumulator is c = fma(a, b, c) over k in order from 0 (or from the previous K block's
 * partial sums), then + bias, + residual, relu: the same sequence for every tile and thread.
 * run_t turns the tile around for small maps (ops/conv.c, chan_lanes_win): 6 pixels broadcast x
 * 16 output channels on the lanes, stored through the stack (AVX2 has no scatter). Measured in L1:
 * 90 % of the FMA peak for run (kc = 256); on ResNet-50's 7x7 layers run_t is 1.2-1.6x faster. */
#include "ops/gemm.h"

#include <immintrin.h>

#define MR 6
#define NR 16
#define KC 256   /* B panel 16 KB in L1, A block in L2 */
/* Weight prefetch distance in k steps: the packed weights are read once per forward pass, from
 * L3 or memory (see conv_avx512.c). 2 KB ahead with channels on the lanes (16 weights per step);
 * 3 KB with pixels (6 per step): 768 B left the Winograd F(2x2) layers of ResNet-50's last stage,
 * whose 16 MB of transformed weights each meet only 16 tiles, waiting on memory (in the network,
 * one thread: 2.8 -> 2.5 ms per layer; no gain from 4 KB with channels). Those layers, and every
 * GEMM whose weights pass L2, now take run_stream and its longer distance (below). */
#define PF_K_CHAN 32
#define PF_K_PIX 128
/* run_stream, pixels on the lanes, for a GEMM whose weights pass L2 (ops/gemm.c): 12 KB ahead,
 * two weight panels of a K block, past the next 4 KB page. On a 2-core AMD EPYC Zen 3 VM (one
 * core streams 15-17 GB/s from memory), bench_layers against 128, in turns, medians of 8 rounds
 * at one thread: ResNet-50's five 14x14 3x3 layers (F(4x4), 9.4 MB of weights each) 9.62 -> 8.05
 * ms, its two 7x7 (F(2x2), 16.8 MB) 5.48 -> 4.93, the forward pass 98.8 -> 96.1 ms, every other
 * group of layers within 3 %; at 2 threads (6 rounds) 6.47 -> 5.53 and 3.64 -> 3.20 ms; ResNet-18
 * at one thread 38.4 -> 36.3 ms. As the one distance for every layer it cost those whose weights
 * stay in cache 1-3 %, and read from the arguments inside the k loop it cost the 64 -> 256 1x1
 * layers 4-10 %: hence a kernel of its own. */
#define PF_K_PIX_STREAM 512
#define MC 504   /* 84 panels of 6 rows */

/* lanes of 8 selected by bits of m (bit i -> lane i) */
static inline __m256i lanes(uint32_t m) {
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)(m & 0xff)), sel), sel);
}

/* v's lanes selected by m (bit i -> lane i) to p. vmaskmovps to memory is slow on some cores
 * (measured on AMD Zen: over half of the Winograd input transform's time even when it stored the
 * tails only), so a whole vector is one plain store, and a run of lanes s .. s+n-1 (the tails, and
 * the real columns of a GEMM tile) is moved down to lane 0 and stored in pieces of 4, 2 and 1.
 * Other masks (not a single run) keep vmaskmovps. */
static inline void store_lanes(float *p, uint32_t m, __m256 v) {
    m &= 0xffu;
    if (m == 0xffu) {
        _mm256_storeu_ps(p, v);
        return;
    }
    if (!m) return;
    const int s = __builtin_ctz(m), n = __builtin_popcount(m);
    if (m != ((1u << n) - 1u) << s) {
        _mm256_maskstore_ps(p, lanes(m), v);
        return;
    }
    if (s) v = _mm256_permutevar8x32_ps(v, _mm256_add_epi32(_mm256_set1_epi32(s), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    p += s;
    __m128 h = _mm256_castps256_ps128(v);
    if (n & 4) {
        _mm_storeu_ps(p, h);
        h = _mm256_extractf128_ps(v, 1);
        p += 4;
    }
    if (n & 2) {
        _mm_storel_pi((__m64 *)p, h);
        h = _mm_movehl_ps(h, h);
        p += 2;
    }
    if (n & 1) _mm_store_ss(p, h);
}

/* r[0..7] := its transpose (r[i] lane l -> r[l] lane i) */
static inline void transpose8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* run_t's epilogue when the tile's M pixels are consecutive in y (pix[i] = pix[0] + i): the
 * 6 x 16 tile (+ bias, through the stack as below) transposed in registers, each channel's M
 * values stored as one run, with the same operations per value as the scalar epilogue
 * (+ residual, then v < 0 ? 0 : v, which keeps -0 and NaN as the scalar code does). Not inlined:
 * the accumulators of the k loop stay in registers. */
static __attribute__((noinline)) void tile_t_store_run(const mi_gemm_ukr_args *p, int M, const float buf[MR][16]) {
    const __m256 zero = _mm256_setzero_ps();
    const uint32_t pm = (1u << M) - 1u;
    const __m256i pmask = lanes(pm);
    const int64_t pix0 = p->pix[0], ldy = p->ldy;
    const float *const res = p->res;
    float *const y = p->y;
    const int relu = p->relu, nch = p->nch;
    #pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256 r[8];
        #pragma GCC unroll 8
        for (int i = 0; i < 8; i++) r[i] = i < M ? _mm256_load_ps(buf[i] + 8 * h) : zero;
        transpose8(r);
        #pragma GCC unroll 8
        for (int l = 0; l < 8; l++) {
            if (8 * h + l >= nch) break;
            const int64_t o = (8 * h + l) * ldy + pix0;
            __m256 v = r[l];
            if (res) v = _mm256_add_ps(v, _mm256_maskload_ps(res + o, pmask));
            if (relu) v = _mm256_blendv_ps(v, zero, _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
            store_lanes(y + o, pm, v);
        }
    }
}

/* M rows (constant after inlining) of A with row stride ASTR; T: channels on the lanes; PF: the
 * weight prefetch distance in k steps. */
static inline __attribute__((always_inline)) void tile(const mi_gemm_ukr_args *p, const int M,
                                                       const int ASTR, const int T, const int PF) {
    __m256 c0[MR], c1[MR];
    if (p->first) {
        #pragma GCC unroll 6
        for (int i = 0; i < M; i++) c0[i] = c1[i] = _mm256_setzero_ps();
    } else {
        #pragma GCC unroll 6
        for (int i = 0; i < M; i++) {
            c0[i] = _mm256_load_ps(p->acc + i * NR);
            c1[i] = _mm256_load_ps(p->acc + i * NR + 8);
        }
    }
    if (p->last) mi_gemm_prefetch_epilogue(p, M, T);
    const float *a = p->a, *b = p->b;
    for (int64_t k = 0; k < p->kc; k++) {
        /* the weight stream, ahead (later passes over the block: L1/L2 hits) */
        _mm_prefetch((const char *)(T ? b + PF * NR : a + PF * ASTR), _MM_HINT_T0);
        const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        #pragma GCC unroll 6
        for (int i = 0; i < M; i++) {
            const __m256 ai = _mm256_broadcast_ss(a + i);
            c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
        }
        a += ASTR;
        b += NR;
    }
    if (!p->last) {
        #pragma GCC unroll 6
        for (int i = 0; i < M; i++) {
            _mm256_store_ps(p->acc + i * NR, c0[i]);
            _mm256_store_ps(p->acc + i * NR + 8, c1[i]);
        }
        return;
    }
    const __m256 zero = _mm256_setzero_ps();
    if (T) {
        /* tile row i = pixel pix[i] of nch channels: lane l goes to y[l*ldy + pix[i]]; no
         * scatter in AVX2, so the tile goes through the stack, then + residual, relu, in C */
        const int nch = p->nch;
        const uint32_t all = nch >= 16 ? 0xffffu : (1u << nch) - 1u;
        __m256 bv0 = zero, bv1 = zero;
        if (p->bias) {
            bv0 = _mm256_maskload_ps(p->bias, lanes(all));
            bv1 = _mm256_maskload_ps(p->bias + 8, lanes(all >> 8));
        }
        float buf[MR][16] __attribute__((aligned(32)));
        #pragma GCC unroll 6
        for (int i = 0; i < M; i++) {
            _mm256_store_ps(buf[i], _mm256_add_ps(c0[i], bv0));
            _mm256_store_ps(buf[i] + 8, _mm256_add_ps(c1[i], bv1));
        }
        int consecutive = 1;   /* the tile's pixels are one run: each channel's M values are too */
        for (int i = 1; i < M; i++) consecutive &= p->pix[i] == p->pix[0] + i;
        if (consecutive) {
            tile_t_store_run(p, M, buf);
            return;
        }
        for (int l = 0; l < nch; l++) {
            float *yl = p->y + l * p->ldy;
            const float *rl = p->res ? p->res + l * p->ldy : NULL;
            for (int i = 0; i < M; i++) {
                float v = buf[i][l];
                if (rl) v += rl[p->pix[i]];
                if (p->relu) v = v < 0.0f ? 0.0f : v;
                yl[p->pix[i]] = v;
            }
        }
        return;
    }
    /* all 16 columns real, in one run (every tile but a map's last, or a row's end in a padded
     * grid): plain loads and stores, the same values as the masked ones */
    const int dense = p->nseg == 1 && p->seg[0].mask == 0xffffu;
    #pragma GCC unroll 6
    for (int i = 0; i < M; i++) {
        __m256 v0 = c0[i], v1 = c1[i];
        if (p->bias) {
            const __m256 bv = _mm256_broadcast_ss(p->bias + i);
            v0 = _mm256_add_ps(v0, bv);
            v1 = _mm256_add_ps(v1, bv);
        }
        float *yr = p->y + i * p->ldy;
        if (p->res) {
            const float *rr = p->res + i * p->ldy;
            __m256 r0 = zero, r1 = zero;
            if (dense) {
                r0 = _mm256_loadu_ps(rr + p->seg[0].off);
                r1 = _mm256_loadu_ps(rr + p->seg[0].off + 8);
            }
            for (int s = 0; s < (dense ? 0 : p->nseg); s++) {   /* runs are disjoint: OR merges them */
                const uint32_t m = p->seg[s].mask;
                r0 = _mm256_or_ps(r0, _mm256_maskload_ps(rr + p->seg[s].off, lanes(m)));
                r1 = _mm256_or_ps(r1, _mm256_maskload_ps(rr + p->seg[s].off + 8, lanes(m >> 8)));
            }
            v0 = _mm256_add_ps(v0, r0);
            v1 = _mm256_add_ps(v1, r1);
        }
        if (p->relu) {
            /* zero first: max returns its second operand on NaN, so relu is v < 0 ? 0 : v
             * (NaN stays NaN) on every path of this file */
            v0 = _mm256_max_ps(zero, v0);
            v1 = _mm256_max_ps(zero, v1);
        }
        if (dense) {
            _mm256_storeu_ps(yr + p->seg[0].off, v0);
            _mm256_storeu_ps(yr + p->seg[0].off + 8, v1);
        }
        for (int s = 0; s < (dense ? 0 : p->nseg); s++) {
            const uint32_t m = p->seg[s].mask;
            store_lanes(yr + p->seg[s].off, m, v0);
            store_lanes(yr + p->seg[s].off + 8, m >> 8, v1);
        }
    }
}

#define CASES(T, ASTR, PF) \
    switch (mr) { \
    case 6: tile(p, 6, ASTR, T, PF); break; \
    case 5: tile(p, 5, ASTR, T, PF); break; \
    case 4: tile(p, 4, ASTR, T, PF); break; \
    case 3: tile(p, 3, ASTR, T, PF); break; \
    case 2: tile(p, 2, ASTR, T, PF); break; \
    default: tile(p, 1, ASTR, T, PF); break; \
    }

/* pixels on the lanes: mr output channels (rows of packed weights, MR apart) x 16 pixels */
static void run(const mi_gemm_ukr_args *p, int mr) { CASES(0, MR, PF_K_PIX) }
static void run_stream(const mi_gemm_ukr_args *p, int mr) { CASES(0, MR, PF_K_PIX_STREAM) }
/* channels on the lanes: mr pixels (rows of the pixel pack, 16 apart) x 16 output channels */
static void run_t(const mi_gemm_ukr_args *p, int mr) { CASES(1, 16, PF_K_CHAN) }

/* dst[k][0..8): the panel's (at most MR = 6) pixels, run by run, zeros elsewhere; the kernel
 * reads lanes 0..5 of each 16-float row only. */
static void pack_t(float *dst, const float *src, const int64_t *koff, int64_t kc,
                   const mi_gemm_seg *run, int nrun) {
    for (int64_t k = 0; k < kc; k++) {
        const float *s = src + koff[k];
        __m256 v = _mm256_setzero_ps();
        for (int r = 0; r < nrun; r++) {
            const __m256i m = lanes(run[r].mask);
            v = _mm256_blendv_ps(v, _mm256_maskload_ps(s + run[r].off, m), _mm256_castsi256_ps(m));
        }
        _mm256_store_ps(dst + k * 16, v);
    }
}

static void pack(float *dst, const float *src, const int64_t *koff, int64_t kc, int nr) {
    if (nr == NR) {
        for (int64_t k = 0; k < kc; k++) {
            const float *s = src + koff[k];
            _mm_prefetch((const char *)(s + NR), _MM_HINT_T0);   /* the next panel's row */
            _mm256_store_ps(dst + k * NR, _mm256_loadu_ps(s));
            _mm256_store_ps(dst + k * NR + 8, _mm256_loadu_ps(s + 8));
        }
        return;
    }
    const __m256i m0 = lanes((1u << nr) - 1u), m1 = lanes(((1u << nr) - 1u) >> 8);
    for (int64_t k = 0; k < kc; k++) {
        const float *s = src + koff[k];
        _mm256_store_ps(dst + k * NR, _mm256_maskload_ps(s, m0));
        _mm256_store_ps(dst + k * NR + 8, _mm256_maskload_ps(s + 8, m1));
    }
}

/* Stride 2 (every stride-2 layer of ResNet and V-Net): 16 floats in, the 8 even ones out. */
static void strided(float *dst, const float *src, int64_t n, int64_t stride, int64_t avail) {
    int64_t j = 0;
    if (stride == 2)
        for (; j + 8 <= n && 2 * (j + 8) <= avail; j += 8) {
            const __m256 e = _mm256_shuffle_ps(_mm256_loadu_ps(src + 2 * j), _mm256_loadu_ps(src + 2 * j + 8),
                                               _MM_SHUFFLE(2, 0, 2, 0));   /* a0 a2 b0 b2 | a4 a6 b4 b6 */
            _mm256_storeu_ps(dst + j, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e),
                                                                             _MM_SHUFFLE(3, 1, 2, 0))));
        }
    for (; j < n; j++) dst[j] = src[j * stride];
}

/* Winograd F(2x2, 3x3) transforms (ops/conv_winograd.c), 8 tiles per vector: the same
 * operations in the same order as mi_conv_wino2_in_ref / mi_conv_wino2_out_ref, lane by lane.
 * Every fixed-count loop of the transforms (and of tile_t_store_run) is unrolled whole: at -O2
 * GCC kept them as loops over arrays on the stack. ResNet-50 at one thread on the Zen 5 machine
 * with MI_ISA=avx2 (bench_layers, 8 rounds in turns): layer1's F(4x4) layers 0.878 of the time,
 * layer2's 0.956, layer3's F(2x2) 0.974, the forward pass 0.985. */
static inline uint32_t first_bits(int64_t n) { return n >= 8 ? 0xffu : n > 0 ? (1u << n) - 1u : 0u; }
static inline __m256i first_n(int64_t n) { return lanes(first_bits(n)); }

/* even (sel 2,0,2,0) or odd (3,1,3,1) elements of the 16 floats at b */
#define DEINTERLEAVE(b, sel) _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd( \
    _mm256_shuffle_ps(_mm256_loadu_ps(b), _mm256_loadu_ps((b) + 8), sel)), _MM_SHUFFLE(3, 1, 2, 0)))

static void wino2_in(float *v, int64_t vs, const float *rows, int64_t rowlen, int64_t tw) {
    for (int64_t q = 0; q < tw; q += 8) {
        __m256 d[4][4], t[4][4];   /* d[i][j]: element (i, j) of 8 tiles */
        #pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const float *b = rows + i * rowlen + 2 * q;
            d[i][0] = DEINTERLEAVE(b, _MM_SHUFFLE(2, 0, 2, 0));
            d[i][1] = DEINTERLEAVE(b, _MM_SHUFFLE(3, 1, 3, 1));
            d[i][2] = DEINTERLEAVE(b + 2, _MM_SHUFFLE(2, 0, 2, 0));
            d[i][3] = DEINTERLEAVE(b + 2, _MM_SHUFFLE(3, 1, 3, 1));
        }
        #pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            t[0][j] = _mm256_sub_ps(d[0][j], d[2][j]);
            t[1][j] = _mm256_add_ps(d[1][j], d[2][j]);
            t[2][j] = _mm256_sub_ps(d[2][j], d[1][j]);
            t[3][j] = _mm256_sub_ps(d[1][j], d[3][j]);
        }
        const uint32_t mk = first_bits(tw - q);
        #pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            store_lanes(v + (i * 4 + 0) * vs + q, mk, _mm256_sub_ps(t[i][0], t[i][2]));
            store_lanes(v + (i * 4 + 1) * vs + q, mk, _mm256_add_ps(t[i][1], t[i][2]));
            store_lanes(v + (i * 4 + 2) * vs + q, mk, _mm256_sub_ps(t[i][2], t[i][1]));
            store_lanes(v + (i * 4 + 3) * vs + q, mk, _mm256_sub_ps(t[i][1], t[i][3]));
        }
    }
}

static void wino2_out(float *y, const float *res, const float *m, int64_t ms, int64_t tw, int64_t ow,
                     int64_t ldy, int nrows, float bias, int relu) {
    const __m256 bv = _mm256_set1_ps(bias), zero = _mm256_setzero_ps();
    for (int64_t q = 0; q < tw; q += 8) {
        const __m256i mk = first_n(tw - q);
        __m256 s[2][4];
        #pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m256 m0 = _mm256_maskload_ps(m + j * ms + q, mk);
            const __m256 m1 = _mm256_maskload_ps(m + (4 + j) * ms + q, mk);
            const __m256 m2 = _mm256_maskload_ps(m + (8 + j) * ms + q, mk);
            const __m256 m3 = _mm256_maskload_ps(m + (12 + j) * ms + q, mk);
            s[0][j] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
            s[1][j] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
        }
        const int64_t n = ow - 2 * q;   /* output columns left in the row from this tile */
        const __m256i k0 = first_n(n), k1 = first_n(n - 8);
        const uint32_t b0 = first_bits(n), b1 = first_bits(n - 8);
        for (int a = 0; a < nrows; a++) {
            const __m256 o0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s[a][0], s[a][1]), s[a][2]), bv);
            const __m256 o1 = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(s[a][1], s[a][2]), s[a][3]), bv);
            const __m256 ul = _mm256_unpacklo_ps(o0, o1), uh = _mm256_unpackhi_ps(o0, o1);
            __m256 v0 = _mm256_permute2f128_ps(ul, uh, 0x20), v1 = _mm256_permute2f128_ps(ul, uh, 0x31);
            float *yr = y + a * ldy + 2 * q;
            if (res) {
                const float *rr = res + a * ldy + 2 * q;
                v0 = _mm256_add_ps(v0, _mm256_maskload_ps(rr, k0));
                v1 = _mm256_add_ps(v1, _mm256_maskload_ps(rr + 8, k1));
            }
            if (relu) {
                v0 = _mm256_max_ps(zero, v0);
                v1 = _mm256_max_ps(zero, v1);
            }
            store_lanes(yr, b0, v0);
            store_lanes(yr + 8, b1, v1);
        }
    }
}

/* F(4x4, 3x3): the 1-D transforms B^T (6 -> 6) and A^T (6 -> 4), in mi_conv_wino4_*_ref's order */
static inline void bt6(__m256 t[6], const __m256 d[6]) {
    const __m256 c2 = _mm256_set1_ps(2.0f), c4 = _mm256_set1_ps(4.0f), c5 = _mm256_set1_ps(5.0f);
    t[0] = _mm256_add_ps(_mm256_sub_ps(_mm256_mul_ps(c4, d[0]), _mm256_mul_ps(c5, d[2])), d[4]);
    t[1] = _mm256_sub_ps(_mm256_add_ps(d[3], d[4]), _mm256_mul_ps(c4, _mm256_add_ps(d[1], d[2])));
    t[2] = _mm256_add_ps(_mm256_sub_ps(d[4], d[3]), _mm256_mul_ps(c4, _mm256_sub_ps(d[1], d[2])));
    t[3] = _mm256_add_ps(_mm256_sub_ps(d[4], d[2]), _mm256_mul_ps(c2, _mm256_sub_ps(d[3], d[1])));
    t[4] = _mm256_sub_ps(_mm256_sub_ps(d[4], d[2]), _mm256_mul_ps(c2, _mm256_sub_ps(d[3], d[1])));
    t[5] = _mm256_add_ps(_mm256_sub_ps(_mm256_mul_ps(c4, d[1]), _mm256_mul_ps(c5, d[3])), d[5]);
}

static inline void at6(__m256 s[4], const __m256 m[6]) {
    const __m256 a = _mm256_add_ps(m[1], m[2]), b = _mm256_sub_ps(m[1], m[2]);
    const __m256 p = _mm256_add_ps(m[3], m[4]), n = _mm256_sub_ps(m[3], m[4]);
    s[0] = _mm256_add_ps(_mm256_add_ps(m[0], a), p);
    s[1] = _mm256_add_ps(b, _mm256_mul_ps(_mm256_set1_ps(2.0f), n));
    s[2] = _mm256_add_ps(a, _mm256_mul_ps(_mm256_set1_ps(4.0f), p));
    s[3] = _mm256_add_ps(_mm256_add_ps(b, _mm256_mul_ps(_mm256_set1_ps(8.0f), n)), m[5]);
}

/* Two 128-bit halves: tile q+k's 4 floats at lo, tile q+k+4's at hi */
static inline __m256 halves(const float *lo, const float *hi) {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(lo)), _mm_loadu_ps(hi), 1);
}

/* Row i of 8 tiles as 6 vectors, d[j] lane k = r[4k + j]: four 4x4 transposes within the 128-bit
 * halves (tiles 0-3 | 4-7), columns 4 and 5 being columns 0 and 1 of the next tile. Loads and
 * shuffles only (gathers are slow on some x86 cores: ~40 % of this transform on AMD Zen); reads
 * r[0 .. 36). */
static inline void wino4_row(__m256 d[6], const float *r) {
    const __m256 a = halves(r, r + 16), b = halves(r + 4, r + 20), c = halves(r + 8, r + 24);
    const __m256 e = halves(r + 12, r + 28), f = halves(r + 16, r + 32);
    const __m256 ab0 = _mm256_unpacklo_ps(a, b), ab1 = _mm256_unpackhi_ps(a, b);
    const __m256 ce0 = _mm256_unpacklo_ps(c, e), ce1 = _mm256_unpackhi_ps(c, e);
    const __m256 bc0 = _mm256_unpacklo_ps(b, c), ef0 = _mm256_unpacklo_ps(e, f);
    d[0] = _mm256_shuffle_ps(ab0, ce0, _MM_SHUFFLE(1, 0, 1, 0));
    d[1] = _mm256_shuffle_ps(ab0, ce0, _MM_SHUFFLE(3, 2, 3, 2));
    d[2] = _mm256_shuffle_ps(ab1, ce1, _MM_SHUFFLE(1, 0, 1, 0));
    d[3] = _mm256_shuffle_ps(ab1, ce1, _MM_SHUFFLE(3, 2, 3, 2));
    d[4] = _mm256_shuffle_ps(bc0, ef0, _MM_SHUFFLE(1, 0, 1, 0));
    d[5] = _mm256_shuffle_ps(bc0, ef0, _MM_SHUFFLE(3, 2, 3, 2));
}

static void wino4_in(float *v, int64_t vs, const float *rows, int64_t rowlen, int64_t tw) {
    for (int64_t q = 0; q < tw; q += 8) {
        __m256 d[6][6], t[6][6];   /* d[j][i]: column j, row i of 8 tiles */
        #pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            __m256 r[6];
            wino4_row(r, rows + i * rowlen + 4 * q);   /* < MI_WINO_ROWLEN(tw): 4q + 36 <= 4 tw + 32 */
            #pragma GCC unroll 6
            for (int j = 0; j < 6; j++) d[j][i] = r[j];
        }
        #pragma GCC unroll 6
        for (int j = 0; j < 6; j++) {   /* B^T d, column by column */
            __m256 c[6];
            bt6(c, d[j]);
            #pragma GCC unroll 6
            for (int k = 0; k < 6; k++) t[k][j] = c[k];
        }
        const uint32_t mk = first_bits(tw - q);
        #pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {   /* (B^T d) B, row by row */
            __m256 o[6];
            bt6(o, t[i]);
            #pragma GCC unroll 6
            for (int j = 0; j < 6; j++) store_lanes(v + (i * 6 + j) * vs + q, mk, o[j]);
        }
    }
}

static void wino4_out(float *y, const float *res, const float *m, int64_t ms, int64_t tw, int64_t ow,
                      int64_t ldy, int nrows, float bias, int relu) {
    const __m256 bv = _mm256_set1_ps(bias), zero = _mm256_setzero_ps();
    for (int64_t q = 0; q < tw; q += 8) {
        const __m256i mk = first_n(tw - q);
        __m256 s[4][6];
        #pragma GCC unroll 6
        for (int j = 0; j < 6; j++) {   /* A^T m, column by column */
            __m256 c[6], r[4];
            #pragma GCC unroll 6
            for (int i = 0; i < 6; i++) c[i] = _mm256_maskload_ps(m + (i * 6 + j) * ms + q, mk);
            at6(r, c);
            #pragma GCC unroll 4
            for (int k = 0; k < 4; k++) s[k][j] = r[k];
        }
        const int64_t n = ow - 4 * q;   /* output columns left in the row from this tile */
        __m256i k[4];
        uint32_t kb[4];
        #pragma GCC unroll 4
        for (int h = 0; h < 4; h++) k[h] = lanes(kb[h] = first_bits(n - 8 * h));
        for (int r = 0; r < nrows; r++) {   /* (A^T m) A, + bias, then 8 tiles x 4 to 32 outputs */
            __m256 o[4];
            at6(o, s[r]);
            #pragma GCC unroll 4
            for (int c = 0; c < 4; c++) o[c] = _mm256_add_ps(o[c], bv);
            const __m256 t0 = _mm256_unpacklo_ps(o[0], o[1]), t1 = _mm256_unpackhi_ps(o[0], o[1]);
            const __m256 t2 = _mm256_unpacklo_ps(o[2], o[3]), t3 = _mm256_unpackhi_ps(o[2], o[3]);
            const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));   /* tiles 0 | 4 */
            const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));   /* tiles 1 | 5 */
            const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));   /* tiles 2 | 6 */
            const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));   /* tiles 3 | 7 */
            __m256 w[4] = { _mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u2, u3, 0x20),
                            _mm256_permute2f128_ps(u0, u1, 0x31), _mm256_permute2f128_ps(u2, u3, 0x31) };
            float *yr = y + r * ldy + 4 * q;
            #pragma GCC unroll 4
            for (int h = 0; h < 4; h++) {
                if (res) w[h] = _mm256_add_ps(w[h], _mm256_maskload_ps(res + r * ldy + 4 * q + 8 * h, k[h]));
                if (relu) w[h] = _mm256_max_ps(zero, w[h]);
                store_lanes(yr + 8 * h, kb[h], w[h]);
            }
        }
    }
}

/* Channels on the lanes against pixels (ops/conv.c, chan_lanes_win), fitted to one layer at a
 * time, both orientations in turns in one process (2-core AMD EPYC Zen 3 VM, 1 thread): run_t's
 * k step costs 112 % of run's and 30 k steps per pixel beyond it. With 100 % and 40 the model put
 * channels on the lanes where they were slower: ResNet-50's 128 -> 128 stride-2 3x3 at 56x56
 * (pixels 7-10 % faster, 3.5-4.5 % at 2 threads), the Faster R-CNN ResNet-50's 1024 -> 1024 1x1
 * at 15x15 (8 %) and 256 -> 256 stride-2 3x3 at 60x60 (9 %), V-Net's 5x5 layers at 128x128 and
 * 64x64 (1-15 %); every other layer of the shipped networks keeps its orientation, and a dozen
 * of them measured agree with the new model (among them 128 -> 256 1x1 at 6x6, where channels
 * win by 7 %, and 64 -> 32 1x1 at 5x5, where pixels win by 24 %). */
#define CHAN_K_PCT 112
#define CHAN_PIXEL_K 30

const mi_gemm_ukr mi_gemm_ukr_avx2 = { .mr = MR, .nr = NR, .kc = KC, .mc = MC, .run = run,
                                       .run_stream = run_stream, .pack = pack,
                                       .strided = strided, .run_t = run_t, .pack_t = pack_t,
                                       .wino2_in = wino2_in, .wino2_out = wino2_out,
                                       .wino4_in = wino4_in, .wino4_out = wino4_out,
                                       .wino4_min_tiles = 9, .prefetch_a = 1,
                                       .chan_pixel_k = CHAN_PIXEL_K, .chan_k_pct = CHAN_K_PCT };
