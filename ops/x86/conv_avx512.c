/* ops/x86/conv_avx512.c - AVX-512F micro-kernels of the packed convolution GEMM (ops/gemm.h,
 * ops/gemm.c). Reference: mi_conv_forward_ref / mi_deconv_forward_ref; tests:
 * tests/test_conv.c (every case runs on every ISA the CPU has, against torch and the reference,
 * and memcmp across 1, 2 and 4 threads).
 *
 * Tile: MR = 14 output channels x NR = 32 pixels = 28 zmm accumulators, 2 zmm for the B row; the
 * 14 weights of a k step are broadcast from memory (vbroadcastss), each into two FMAs. Per k:
 * 28 FMAs against 2 vector loads + 14 broadcast loads, so the two FMA ports, not the load ports,
 * are the limit. Each accumulator is c = fma(a, b, c) over k in order, starting from 0 (or from
 * the partial sums of the previous K block), then + bias, + residual, relu: the same sequence
 * whatever the tile's position or row count, hence thread-count independent bits.
 * run_t is the same tile turned around for small maps (ops/conv.c, chan_lanes_win): 14 pixels
 * broadcast from the packed input x 32 output channels on the lanes. Its epilogue transposes the
 * tile in registers where the 14 pixels are consecutive in y (every direct and Winograd layer), so
 * that each channel's row is one masked store; elsewhere (a transposed convolution's stride
 * phases) it scatters each pixel's 32 channels to their NCHW rows (64-bit indices: any map size).
 * Either tile reads its pixel operand packed or in place (ops/gemm.c decides per panel: row k at
 * p->koff[k] from the panel's start, or k * p->lds where the rows are evenly spaced; run_t's
 * pixels there may also be 2 floats apart, a 1x1 stride-2 layer reading x itself).
 * Measured alone in L1: 97 % of the FMA peak for run (kc = 256), 86 % for run_t with the
 * scatters. The transposed epilogue took layer4's 512 -> 2048 1x1 layers (7x7, + residual) from
 * 0.70-0.78 to 0.63-0.67 ms at one thread (5 rounds in turns); for 4 pixels or fewer (the 2-tile
 * panels of a 7x7 map's Winograd blocks) the scatters stay, as the transposes cost more. */
#include "ops/gemm.h"

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
/* The pixel operand read in place from a map written layers before (mi_gemm.src_far), PFB_K k
 * steps ahead: its rows lie a map's plane apart (12 KB at 56x56), past the stride the L1
 * prefetcher follows, and the first pass over them comes from L3 or memory. On the 2-core Xeon
 * (AVX-512, 241 GFLOP/s FMA peak per core) ResNet-50's 1x1 layers reading the block's input in
 * place (pixels on the lanes, every channel panel) took 0.80-0.90 of the time at one thread, its
 * 1x1 stride-2 layers (channels on the lanes) 0.89, its other 1x1 layers of layer3-4 0.97
 * (bench_layers, paired medians of 20 forward passes alternating in one process); 4 steps ahead
 * gained less, 8 and 16 the same. */
#define PFB_K 16
#define MC 504   /* 36 panels: the A block (504 x 256 floats, 516 KB) stays in L2 */
/* The table's tuning (ops/gemm.h), measured on ResNet-50 at one thread (bench_layers, in turns,
 * 2 cores of an AMD EPYC Zen 5 with AVX-512: 227 GFLOP/s FMA peak per core, 34 GB/s from memory):
 *   - F(4x4) needs 32 tiles: on the 14x14 maps (16 tiles) its 36-point weights (9.4 MB for 256 x
 *     256 channels, 4x the direct ones) stream from memory for half-empty 32-column panels;
 *     F(2x2) there (49 tiles, 4.2 MB) took layer3's 3x3 layers from 1.17 to 0.89 ms each.
 *   - No burst of L2 prefetches for the next weight panel before each tile (prefetch_a 1): the
 *     bursts stalled on fill buffers (5.7 % of the perf samples on the prefetch); without them
 *     every Winograd layer was 8-10 % faster and the forward pass 44.1-44.8 -> 43.4-43.6 ms. (The
 *     AVX2 kernels, on the same machine: no difference either way.) Spread over the k loop
 *     instead, one line every 4 k steps (prefetch_a 2), and only where a group's weights pass
 *     1 MB (they come from L3 or memory): layer4's layers 5-7 % faster, the forward pass
 *     46.4 -> 45.6 ms (medians of 8 rounds in turns); for every weight size it cost layer1-3's
 *     Winograd layers 2-4 %. */
#define WINO4_MIN_TILES 32
/* Channels on the lanes cost ~32 k steps per pixel beyond the FMAs (packing, the transposed
 * epilogue): with 32 rather than the 40 of the scattering epilogue this file had before, layer3's
 * 256 -> 1024 1x1 layers (14x14, + residual) turn to channels, 0.63 -> 0.605-0.613 ms at one
 * thread, and no other ResNet-50 layer changes orientation. */
#define CHAN_PIXEL_K 32
/* K run as one block up to 512 (pixels on the lanes) and 1024 (channels): no partial sums parked
 * between blocks, and each weight panel one stream. On the 2-core Xeon (AVX-512, 241 GFLOP/s FMA
 * peak per core), ResNet-50 (paired medians of 20 passes alternating in one process): its layer4
 * 3x3 layers (Winograd F(2x2), K 512) 0.89 of the time at 1 and 2 threads, its 512 -> 2048 layers
 * 0.94-0.95, its layer2 512 -> 128 and layer3 1024 -> 256 layers 0.95-0.97, the forward pass
 * 0.986 at one thread and 0.976 at two; K 2048 as one block too gained another 1-2 % on layer4's
 * 2048 -> 512 layers only. Its 512 -> 1024 stride-2 layer (read in place) in one block of 512 took
 * 7 % longer, so those keep kc. */
#define KONE_PIX 512
#define KONE_CHAN 1024

/* r[j] lane i = r[i] lane j, in four rounds of interleaves: 32-bit pairs, 64-bit pairs, then
 * 128-bit lanes twice. */
static inline __attribute__((always_inline)) void transpose16(__m512 r[16]) {
    __m512 a[16], b[16];
    #pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        a[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        a[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    #pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {   /* b[4k + c], 128-bit lane L: rows 4k..4k+3 of column 4L + c */
        const __m512d a0 = _mm512_castps_pd(a[4 * k]), a1 = _mm512_castps_pd(a[4 * k + 1]);
        const __m512d a2 = _mm512_castps_pd(a[4 * k + 2]), a3 = _mm512_castps_pd(a[4 * k + 3]);
        b[4 * k] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        b[4 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        b[4 * k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        b[4 * k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    #pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        const __m512 e0 = _mm512_shuffle_f32x4(b[c], b[4 + c], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512 e1 = _mm512_shuffle_f32x4(b[c], b[4 + c], _MM_SHUFFLE(3, 1, 3, 1));
        const __m512 f0 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512 f1 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], _MM_SHUFFLE(3, 1, 3, 1));
        r[c] = _mm512_shuffle_f32x4(e0, f0, _MM_SHUFFLE(2, 0, 2, 0));
        r[4 + c] = _mm512_shuffle_f32x4(e1, f1, _MM_SHUFFLE(2, 0, 2, 0));
        r[8 + c] = _mm512_shuffle_f32x4(e0, f0, _MM_SHUFFLE(3, 1, 3, 1));
        r[12 + c] = _mm512_shuffle_f32x4(e1, f1, _MM_SHUFFLE(3, 1, 3, 1));
    }
}

/* The channels-on-lanes epilogue where the tile's m pixels are consecutive in y (pix[i] =
 * pix[0] + i): the tile (row i = pixel i, NR channels; through the stack) turned around 16
 * channels at a time into one vector of m pixels per channel, so that each channel's row of y is
 * one masked load and store rather than a gather and a scatter per pixel. The same additions in
 * the same order as the scattering path: + bias (0 without one), + residual, relu. Not inlined:
 * the transposes' registers would push the k loop's accumulators onto the stack. Its loops are
 * unrolled whole and the arguments read once: left to GCC -O2, transpose16's rounds went through
 * the stack and each channel's store reloaded p's fields; unrolled, alone at one thread in turns,
 * layer3's 256 -> 1024 1x1 layers (+ residual) took 0.936 of the time, layer4's 512 -> 2048
 * 0.950, layer3's 3x3 (Winograd) 0.957, and ResNet-50 0.97 at 1 and 2 threads (12 rounds). */
static __attribute__((noinline)) void store_rows(const mi_gemm_ukr_args *p, int m, const float *tile) {
    const __mmask16 mk = (__mmask16)((1u << m) - 1u);
    const __m512 zero = _mm512_setzero_ps();
    const float *const bias = p->bias, *const res = p->res;
    float *const y = p->y;
    const int64_t ldy = p->ldy, pix0 = p->pix[0];
    const int relu = p->relu, nch = p->nch;
    for (int ch0 = 0; ch0 < nch; ch0 += 16) {
        __m512 r[16];
        #pragma GCC unroll 16
        for (int i = 0; i < 16; i++) r[i] = i < m ? _mm512_load_ps(tile + i * NR + ch0) : zero;
        transpose16(r);
        const int n = nch - ch0 < 16 ? nch - ch0 : 16;
        #pragma GCC unroll 16
        for (int l = 0; l < 16; l++) {
            if (l >= n) break;
            const int64_t at = (int64_t)(ch0 + l) * ldy + pix0;
            __m512 v = _mm512_add_ps(r[l], bias ? _mm512_set1_ps(bias[ch0 + l]) : zero);
            if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, res + at));
            if (relu) v = _mm512_max_ps(zero, v);
            _mm512_mask_storeu_ps(y + at, mk, v);
        }
    }
}

/* M rows (constant after inlining) of A with row stride ASTR; T: channels on the lanes; IP: the
 * pixel operand (b, or a with T) read in place, row k at p->koff[k] from it (1) or k * p->lds
 * (2), else packed (0); PS: with T, the pixels PS floats apart in a row (2: a 1x1 stride-2
 * layer's input read in place, run_t_s2); H: pixels on the lanes, the tile's first 16 columns only
 * (run16), the other half neither loaded, computed nor stored. */
static inline __attribute__((always_inline)) void tile(const mi_gemm_ukr_args *p, const int M,
                                                       const int ASTR, const int T, const int IP,
                                                       const int PS, const int H) {
    __m512 c0[MR], c1[MR];
    if (p->first) {
        #pragma GCC unroll 14
        for (int i = 0; i < M; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    } else {
        #pragma GCC unroll 14
        for (int i = 0; i < M; i++) {
            c0[i] = _mm512_load_ps(p->acc + i * NR);
            c1[i] = H ? _mm512_setzero_ps() : _mm512_load_ps(p->acc + i * NR + 16);
        }
    }
    /* With a residual and pixels on the lanes, the epilogue's lines one per k step (entry q: row
     * q/4's first or last column, q odd, of y or of res, q & 2) rather than all 56 at the start,
     * which left the k loop waiting on fill buffers: layer1's and layer2.0's 1x1 layers with a
     * residual 6-12 % faster at one thread (ResNet-50, medians of 10 rounds in turns). For the
     * other tiles the burst stays: spread, it was no faster, and with channels on the lanes
     * (32 rows of y, fetched across a long k loop whose weights stream through L1) slower. */
    const int spread = !T && p->nseg == 1 && p->res;
    int npf = 0, q = 0;
    int64_t lo = 0, hi = 0;
    if (p->last && !spread) mi_gemm_prefetch_epilogue(p, M, T);
    else if (p->last) {
        npf = 4 * M;
        lo = p->seg[0].off + __builtin_ctz(p->seg[0].mask), hi = p->seg[0].off + 31 - __builtin_clz(p->seg[0].mask);
    }
#define EPI_LINE(q) (((q) & 2 ? p->res : p->y) + ((q) >> 2) * p->ldy + ((q) & 1 ? hi : lo))
    const float *a = p->a, *b = p->b;
    const float *pf = p->pf;
    int64_t pfl = p->pf_n;
    /* The slice of the next weight panel: a line every 4 k steps, or where the slice is at least
     * twice what that covers (few pixel panels share it: the 7x7 maps' 1-4), every 2, every one
     * or two per step, so that the whole slice (up to 2 kc lines) is fetched. At one line per 4 steps alone, a tile
     * of layer4's layers left half its slice or more to the demand misses of the next panel:
     * ResNet-50's layer4 3x3 (F(2x2)) layers took 0.938 of the time at one thread and 0.945 at
     * two, its 1x1 layers 0.97-0.99 at two (bench_layers, 8-10 rounds). Slices just over a
     * quarter of kc (layer3's 14x14 maps split between 2 threads: 74 lines) fetched whole at one
     * line every 2 steps made layer3 2-4 % slower. */
    const int64_t pfmask = pfl * 2 < p->kc ? 3 : pfl * 2 == p->kc ? 1 : 0;
    const int pf2 = pfl > p->kc;
    const float *const px = T ? a : b;   /* in place: the pixel operand's base */
    const int64_t *const ko = p->koff;
    const int64_t lds = p->lds;
    const int64_t pfbo = p->src_far ? PFB_K * lds : 0;
    if (IP == 2 && T) a = px + ko[0];
    if (IP == 2 && !T) b = px + ko[0];
    for (int64_t k = 0; k < p->kc; k++) {
        if (q < npf) {
            _mm_prefetch((const char *)EPI_LINE(q), _MM_HINT_T0);
            q++;
        }
        if (pfl > 0 && !(k & pfmask)) {
            _mm_prefetch((const char *)pf, _MM_HINT_T1);
            pf += 16;
            pfl--;
            if (pf2 && pfl > 0) {
                _mm_prefetch((const char *)pf, _MM_HINT_T1);
                pf += 16;
                pfl--;
            }
        }
        /* the weight stream, PF_K k steps ahead (later passes over the block: L1/L2 hits) */
        if (T) {
            _mm_prefetch((const char *)(b + PF_K * NR), _MM_HINT_T0);
            _mm_prefetch((const char *)(b + PF_K * NR + 16), _MM_HINT_T0);
            if (IP == 2 && pfbo) {   /* the first and the last pixel's lines */
                _mm_prefetch((const char *)(a + pfbo), _MM_HINT_T0);
                _mm_prefetch((const char *)(a + pfbo + PS * (M - 1)), _MM_HINT_T0);
            }
        } else {
            _mm_prefetch((const char *)(a + PF_K * ASTR), _MM_HINT_T0);
            if (IP == 2 && pfbo) {
                _mm_prefetch((const char *)(b + pfbo), _MM_HINT_T0);
                if (!H) _mm_prefetch((const char *)(b + pfbo + 16), _MM_HINT_T0);
            }
        }
        if (IP == 1 && T) a = px + ko[k];
        if (IP == 1 && !T) b = px + ko[k];
        const __m512 b0 = _mm512_loadu_ps(b), b1 = H ? _mm512_setzero_ps() : _mm512_loadu_ps(b + 16);
        #pragma GCC unroll 14
        for (int i = 0; i < M; i++) {
            const __m512 ai = _mm512_set1_ps(a[PS * i]);
            c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
            if (!H) c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
        }
        if (!(IP && T)) a += ASTR;
        if (!(IP && !T)) b += NR;
        if (IP == 2 && T) a += lds;
        if (IP == 2 && !T) b += lds;
    }
    for (; q < npf; q++) _mm_prefetch((const char *)EPI_LINE(q), _MM_HINT_T0);
#undef EPI_LINE
    if (!p->last) {
        #pragma GCC unroll 14
        for (int i = 0; i < M; i++) {
            _mm512_store_ps(p->acc + i * NR, c0[i]);
            if (!H) _mm512_store_ps(p->acc + i * NR + 16, c1[i]);
        }
        return;
    }
    const __m512 zero = _mm512_setzero_ps();
    if (T && M > 4 && p->pix[M - 1] - p->pix[0] == M - 1) {   /* fewer: the scatters cost less */
        float t[MR * NR] __attribute__((aligned(64)));
        #pragma GCC unroll 14
        for (int i = 0; i < M; i++) {
            _mm512_store_ps(t + i * NR, c0[i]);
            _mm512_store_ps(t + i * NR + 16, c1[i]);
        }
        store_rows(p, M, t);
        return;
    }
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
                if (p->relu) v[h] = _mm512_max_ps(zero, v[h]);
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
            if (!H) v1 = _mm512_add_ps(v1, bv);
        }
        float *yr = p->y + i * p->ldy;
        if (p->res) {
            const float *rr = p->res + i * p->ldy;
            __m512 r0 = zero, r1 = zero;
            for (int s = 0; s < p->nseg; s++) {
                const uint32_t m = p->seg[s].mask;
                r0 = _mm512_mask_loadu_ps(r0, (__mmask16)m, rr + p->seg[s].off);
                if (!H) r1 = _mm512_mask_loadu_ps(r1, (__mmask16)(m >> 16), rr + p->seg[s].off + 16);
            }
            v0 = _mm512_add_ps(v0, r0);
            if (!H) v1 = _mm512_add_ps(v1, r1);
        }
        if (p->relu) {
            /* zero first: max returns its second operand on NaN, so relu is v < 0 ? 0 : v
             * (NaN stays NaN) on every path of this file */
            v0 = _mm512_max_ps(zero, v0);
            if (!H) v1 = _mm512_max_ps(zero, v1);
        }
        for (int s = 0; s < p->nseg; s++) {
            const uint32_t m = p->seg[s].mask;
            _mm512_mask_storeu_ps(yr + p->seg[s].off, (__mmask16)m, v0);
            if (!H) _mm512_mask_storeu_ps(yr + p->seg[s].off + 16, (__mmask16)(m >> 16), v1);
        }
    }
}

#define CASES(T, ASTR, IP, PS, H) \
    switch (mr) { \
    case 14: tile(p, 14, ASTR, T, IP, PS, H); break; \
    case 13: tile(p, 13, ASTR, T, IP, PS, H); break; \
    case 12: tile(p, 12, ASTR, T, IP, PS, H); break; \
    case 11: tile(p, 11, ASTR, T, IP, PS, H); break; \
    case 10: tile(p, 10, ASTR, T, IP, PS, H); break; \
    case 9: tile(p, 9, ASTR, T, IP, PS, H); break; \
    case 8: tile(p, 8, ASTR, T, IP, PS, H); break; \
    case 7: tile(p, 7, ASTR, T, IP, PS, H); break; \
    case 6: tile(p, 6, ASTR, T, IP, PS, H); break; \
    case 5: tile(p, 5, ASTR, T, IP, PS, H); break; \
    case 4: tile(p, 4, ASTR, T, IP, PS, H); break; \
    case 3: tile(p, 3, ASTR, T, IP, PS, H); break; \
    case 2: tile(p, 2, ASTR, T, IP, PS, H); break; \
    default: tile(p, 1, ASTR, T, IP, PS, H); break; \
    }

/* pixels on the lanes: mr output channels (rows of packed weights, MR apart) x 32 pixels */
static void run(const mi_gemm_ukr_args *p, int mr) {
    if (!p->koff) { CASES(0, MR, 0, 1, 0) } else if (p->lds > 0) { CASES(0, MR, 2, 1, 0) } else { CASES(0, MR, 1, 1, 0) }
}
/* the same for a panel whose real columns are its first 16 (mi_gemm_ukr.run16): half the FMAs */
static void run16(const mi_gemm_ukr_args *p, int mr) {
    if (!p->koff) { CASES(0, MR, 0, 1, 1) } else if (p->lds > 0) { CASES(0, MR, 2, 1, 1) } else { CASES(0, MR, 1, 1, 1) }
}
/* channels on the lanes: mr pixels (rows of the pixel pack, 16 apart) x 32 output channels */
static void run_t(const mi_gemm_ukr_args *p, int mr) {
    if (!p->koff) { CASES(1, 16, 0, 1, 0) } else if (p->lds > 0) { CASES(1, 16, 2, 1, 0) } else { CASES(1, 16, 1, 1, 0) }
}
/* the same, read in place (rows evenly spaced, lds, or at koff), the pixels 2 floats apart in a
 * row of x */
static void run_t_s2(const mi_gemm_ukr_args *p, int mr) {
    if (p->lds > 0) { CASES(1, 16, 2, 2, 0) } else { CASES(1, 16, 1, 2, 0) }
}

/* dst[k][0..16): the panel's pixels, run by run (masked loads merge them), zeros elsewhere. */
static void pack_t(float *dst, const float *src, const int64_t *koff, int64_t kc,
                   const mi_gemm_seg *run, int nrun) {
    for (int64_t k = 0; k < kc; k++) {
        const float *s = src + koff[k];
        __m512 v = _mm512_setzero_ps();
        for (int r = 0; r < nrun; r++) v = _mm512_mask_loadu_ps(v, (__mmask16)run[r].mask, s + run[r].off);
        _mm512_store_ps(dst + k * 16, v);
    }
}

/* pack_t's stride-2 form, for the panels of a map read in place that are not one run: each run's
 * pixels are the even floats of the 32 its 16 lanes span, loaded under masks that read its own
 * pixels only. */
static void pack_t_s2(float *dst, const float *src, const int64_t *koff, int64_t kc,
                      const mi_gemm_seg *run, int nrun) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    __mmask16 lo[16], hi[16];   /* lane l's float 2l: bit 2l of the first 16 floats, or 2l - 16 */
    for (int r = 0; r < nrun; r++) {
        uint32_t a = 0, b = 0;
        for (int l = 0; l < 8; l++) {
            a |= (run[r].mask >> l & 1u) << (2 * l);
            b |= (run[r].mask >> (l + 8) & 1u) << (2 * l);
        }
        lo[r] = (__mmask16)a;
        hi[r] = (__mmask16)b;
    }
    for (int64_t k = 0; k < kc; k++) {
        const float *s = src + koff[k];
        __m512 v = _mm512_setzero_ps();
        for (int r = 0; r < nrun; r++) {
            const float *p = s + 2 * run[r].off;
            const __m512 e = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(lo[r], p), even,
                                                    _mm512_maskz_loadu_ps(hi[r], p + 16));
            v = _mm512_mask_mov_ps(v, (__mmask16)run[r].mask, e);
        }
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

static inline __mmask16 first_n(int64_t n) { return (__mmask16)(n >= 16 ? 0xffff : n <= 0 ? 0 : (1u << n) - 1u); }

/* Stride 2 (every stride-2 layer of ResNet and V-Net): 32 floats in, the 16 even ones out; the
 * row's end by masks (masked-off lanes are not read), so that the 7- to 29-float rows of the
 * 14- to 56-wide maps take no scalar loop. */
static void strided(float *dst, const float *src, int64_t n, int64_t stride, int64_t avail) {
    if (stride != 2) {
        for (int64_t j = 0; j < n; j++) dst[j] = src[j * stride];
        return;
    }
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (int64_t j = 0; j < n; j += 16) {
        const int64_t left = avail - 2 * j;   /* floats of src readable from 2j */
        const __m512 a = _mm512_maskz_loadu_ps(first_n(left), src + 2 * j);
        const __m512 b = _mm512_maskz_loadu_ps(first_n(left - 16), src + 2 * j + 16);
        _mm512_mask_storeu_ps(dst + j, first_n(n - j), _mm512_permutex2var_ps(a, even, b));
    }
}

/* Winograd F(2x2, 3x3) transforms (ops/conv_winograd.c), 16 tiles per vector: the same
 * operations in the same order as mi_conv_wino2_in_ref / mi_conv_wino2_out_ref, lane by lane.
 * Every fixed-count loop of the transforms is unrolled whole (GCC -O2 otherwise kept them as
 * loops over arrays on the stack): alone at one thread, in turns, ResNet-50's F(4x4) layers took
 * 0.89 of the time (64 -> 64 at 56x56, 128 -> 128 at 28x28), its F(2x2) layers 0.965, and the
 * network 0.976-0.983 at 1 and 2 threads (10 rounds). */

static void wino2_in(float *v, int64_t vs, const float *rows, int64_t rowlen, int64_t tw) {
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    for (int64_t q = 0; q < tw; q += 16) {
        __m512 d[4][4], t[4][4];   /* d[i][j]: element (i, j) of 16 tiles */
        #pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const float *b = rows + i * rowlen + 2 * q;
            const __m512 l0 = _mm512_loadu_ps(b), h0 = _mm512_loadu_ps(b + 16);
            const __m512 l2 = _mm512_loadu_ps(b + 2), h2 = _mm512_loadu_ps(b + 18);
            d[i][0] = _mm512_permutex2var_ps(l0, ev, h0);
            d[i][1] = _mm512_permutex2var_ps(l0, od, h0);
            d[i][2] = _mm512_permutex2var_ps(l2, ev, h2);
            d[i][3] = _mm512_permutex2var_ps(l2, od, h2);
        }
        #pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            t[0][j] = _mm512_sub_ps(d[0][j], d[2][j]);
            t[1][j] = _mm512_add_ps(d[1][j], d[2][j]);
            t[2][j] = _mm512_sub_ps(d[2][j], d[1][j]);
            t[3][j] = _mm512_sub_ps(d[1][j], d[3][j]);
        }
        const __mmask16 mk = first_n(tw - q);
        #pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            _mm512_mask_storeu_ps(v + (i * 4 + 0) * vs + q, mk, _mm512_sub_ps(t[i][0], t[i][2]));
            _mm512_mask_storeu_ps(v + (i * 4 + 1) * vs + q, mk, _mm512_add_ps(t[i][1], t[i][2]));
            _mm512_mask_storeu_ps(v + (i * 4 + 2) * vs + q, mk, _mm512_sub_ps(t[i][2], t[i][1]));
            _mm512_mask_storeu_ps(v + (i * 4 + 3) * vs + q, mk, _mm512_sub_ps(t[i][1], t[i][3]));
        }
    }
}

static void wino2_out(float *y, const float *res, const float *m, int64_t ms, int64_t tw, int64_t ow,
                     int64_t ldy, int nrows, float bias, int relu) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    const __m512 bv = _mm512_set1_ps(bias), zero = _mm512_setzero_ps();
    for (int64_t q = 0; q < tw; q += 16) {
        const __mmask16 mk = first_n(tw - q);
        __m512 s[2][4];
        #pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m512 m0 = _mm512_maskz_loadu_ps(mk, m + j * ms + q);
            const __m512 m1 = _mm512_maskz_loadu_ps(mk, m + (4 + j) * ms + q);
            const __m512 m2 = _mm512_maskz_loadu_ps(mk, m + (8 + j) * ms + q);
            const __m512 m3 = _mm512_maskz_loadu_ps(mk, m + (12 + j) * ms + q);
            s[0][j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
            s[1][j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
        }
        const int64_t n = ow - 2 * q;   /* output columns left in the row from this tile */
        const __mmask16 k0 = first_n(n), k1 = first_n(n - 16 > 0 ? n - 16 : 0);
        for (int a = 0; a < nrows; a++) {
            const __m512 o0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[a][0], s[a][1]), s[a][2]), bv);
            const __m512 o1 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[a][1], s[a][2]), s[a][3]), bv);
            __m512 v0 = _mm512_permutex2var_ps(o0, lo, o1), v1 = _mm512_permutex2var_ps(o0, hi, o1);
            float *yr = y + a * ldy + 2 * q;
            if (res) {
                const float *rr = res + a * ldy + 2 * q;
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(k0, rr));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(k1, rr + 16));
            }
            if (relu) {
                v0 = _mm512_max_ps(zero, v0);
                v1 = _mm512_max_ps(zero, v1);
            }
            _mm512_mask_storeu_ps(yr, k0, v0);
            _mm512_mask_storeu_ps(yr + 16, k1, v1);
        }
    }
}

/* F(4x4, 3x3): the 1-D transforms B^T (6 -> 6) and A^T (6 -> 4), in mi_conv_wino4_*_ref's order */
static inline void bt6(__m512 t[6], const __m512 d[6]) {
    const __m512 c2 = _mm512_set1_ps(2.0f), c4 = _mm512_set1_ps(4.0f), c5 = _mm512_set1_ps(5.0f);
    t[0] = _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(c4, d[0]), _mm512_mul_ps(c5, d[2])), d[4]);
    t[1] = _mm512_sub_ps(_mm512_add_ps(d[3], d[4]), _mm512_mul_ps(c4, _mm512_add_ps(d[1], d[2])));
    t[2] = _mm512_add_ps(_mm512_sub_ps(d[4], d[3]), _mm512_mul_ps(c4, _mm512_sub_ps(d[1], d[2])));
    t[3] = _mm512_add_ps(_mm512_sub_ps(d[4], d[2]), _mm512_mul_ps(c2, _mm512_sub_ps(d[3], d[1])));
    t[4] = _mm512_sub_ps(_mm512_sub_ps(d[4], d[2]), _mm512_mul_ps(c2, _mm512_sub_ps(d[3], d[1])));
    t[5] = _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(c4, d[1]), _mm512_mul_ps(c5, d[3])), d[5]);
}

static inline void at6(__m512 s[4], const __m512 m[6]) {
    const __m512 a = _mm512_add_ps(m[1], m[2]), b = _mm512_sub_ps(m[1], m[2]);
    const __m512 p = _mm512_add_ps(m[3], m[4]), n = _mm512_sub_ps(m[3], m[4]);
    s[0] = _mm512_add_ps(_mm512_add_ps(m[0], a), p);
    s[1] = _mm512_add_ps(b, _mm512_mul_ps(_mm512_set1_ps(2.0f), n));
    s[2] = _mm512_add_ps(a, _mm512_mul_ps(_mm512_set1_ps(4.0f), p));
    s[3] = _mm512_add_ps(_mm512_add_ps(b, _mm512_mul_ps(_mm512_set1_ps(8.0f), n)), m[5]);
}

static void wino4_in(float *v, int64_t vs, const float *rows, int64_t rowlen, int64_t tw) {
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    for (int64_t q = 0; q < tw; q += 16) {
        __m512 d[6][6], t[6][6];   /* d[j][i]: column j, row i of 16 tiles (tile k at 4(q+k)) */
        #pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            const float *b = rows + i * rowlen + 4 * q;
            const __m512 v0 = _mm512_loadu_ps(b), v1 = _mm512_loadu_ps(b + 16);
            const __m512 v2 = _mm512_loadu_ps(b + 32), v3 = _mm512_loadu_ps(b + 48);
            const __m512 e01 = _mm512_permutex2var_ps(v0, ev, v1), o01 = _mm512_permutex2var_ps(v0, od, v1);
            const __m512 e23 = _mm512_permutex2var_ps(v2, ev, v3), o23 = _mm512_permutex2var_ps(v2, od, v3);
            d[0][i] = _mm512_permutex2var_ps(e01, ev, e23);
            d[1][i] = _mm512_permutex2var_ps(o01, ev, o23);
            d[2][i] = _mm512_permutex2var_ps(e01, od, e23);
            d[3][i] = _mm512_permutex2var_ps(o01, od, o23);
            /* columns 4, 5 of tile k are columns 0, 1 of tile k+1 */
            d[4][i] = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(_mm512_set1_ps(b[64])),
                                                              _mm512_castps_si512(d[0][i]), 1));
            d[5][i] = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(_mm512_set1_ps(b[65])),
                                                              _mm512_castps_si512(d[1][i]), 1));
        }
        #pragma GCC unroll 6
        for (int j = 0; j < 6; j++) {   /* B^T d, column by column: t[j][k] = row k */
            __m512 c[6];
            bt6(c, d[j]);
            #pragma GCC unroll 6
            for (int k = 0; k < 6; k++) t[k][j] = c[k];
        }
        const __mmask16 mk = first_n(tw - q);
        #pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {   /* (B^T d) B, row by row */
            __m512 o[6];
            bt6(o, t[i]);
            #pragma GCC unroll 6
            for (int j = 0; j < 6; j++) _mm512_mask_storeu_ps(v + (i * 6 + j) * vs + q, mk, o[j]);
        }
    }
}

static void wino4_out(float *y, const float *res, const float *m, int64_t ms, int64_t tw, int64_t ow,
                      int64_t ldy, int nrows, float bias, int relu) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    const __m512i q0 = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), q1 = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    const __m512 bv = _mm512_set1_ps(bias), zero = _mm512_setzero_ps();
    for (int64_t q = 0; q < tw; q += 16) {
        const __mmask16 mk = first_n(tw - q);
        __m512 s[4][6];
        #pragma GCC unroll 6
        for (int j = 0; j < 6; j++) {   /* A^T m, column by column */
            __m512 c[6], r[4];
            #pragma GCC unroll 6
            for (int i = 0; i < 6; i++) c[i] = _mm512_maskz_loadu_ps(mk, m + (i * 6 + j) * ms + q);
            at6(r, c);
            #pragma GCC unroll 4
            for (int k = 0; k < 4; k++) s[k][j] = r[k];
        }
        const int64_t n = ow - 4 * q;   /* output columns left in the row from this tile */
        __mmask16 k[4];
        #pragma GCC unroll 4
        for (int h = 0; h < 4; h++) k[h] = first_n(n - 16 * h > 0 ? n - 16 * h : 0);
        for (int r = 0; r < nrows; r++) {   /* (A^T m) A, + bias: o[c] = column c of 16 tiles */
            __m512 o[4];
            at6(o, s[r]);
            #pragma GCC unroll 4
            for (int c = 0; c < 4; c++) o[c] = _mm512_add_ps(o[c], bv);
            const __m512d p01l = _mm512_castps_pd(_mm512_permutex2var_ps(o[0], lo, o[1]));
            const __m512d p01h = _mm512_castps_pd(_mm512_permutex2var_ps(o[0], hi, o[1]));
            const __m512d p23l = _mm512_castps_pd(_mm512_permutex2var_ps(o[2], lo, o[3]));
            const __m512d p23h = _mm512_castps_pd(_mm512_permutex2var_ps(o[2], hi, o[3]));
            __m512 w[4] = {   /* 64 consecutive outputs: tiles 0-3, 4-7, 8-11, 12-15 */
                _mm512_castpd_ps(_mm512_permutex2var_pd(p01l, q0, p23l)),
                _mm512_castpd_ps(_mm512_permutex2var_pd(p01l, q1, p23l)),
                _mm512_castpd_ps(_mm512_permutex2var_pd(p01h, q0, p23h)),
                _mm512_castpd_ps(_mm512_permutex2var_pd(p01h, q1, p23h)),
            };
            float *yr = y + r * ldy + 4 * q;
            #pragma GCC unroll 4
            for (int h = 0; h < 4; h++) {
                if (res) w[h] = _mm512_add_ps(w[h], _mm512_maskz_loadu_ps(k[h], res + r * ldy + 4 * q + 16 * h));
                if (relu) w[h] = _mm512_max_ps(zero, w[h]);
                _mm512_mask_storeu_ps(yr + 16 * h, k[h], w[h]);
            }
        }
    }
}

const mi_gemm_ukr mi_gemm_ukr_avx512 = {
    .mr = MR, .nr = NR, .kc = KC, .mc = MC, .kone_pix = KONE_PIX, .kone_chan = KONE_CHAN, .run = run, .pack = pack, .strided = strided,
    .run_t = run_t, .pack_t = pack_t, .wino2_in = wino2_in, .wino2_out = wino2_out,
    .wino4_in = wino4_in, .wino4_out = wino4_out, .wino4_min_tiles = WINO4_MIN_TILES, .prefetch_a = 2,
    .chan_pixel_k = CHAN_PIXEL_K,
    .chan_k_pct = 100, .in_place = 1, .run_t_s2 = run_t_s2, .pack_t_s2 = pack_t_s2, .run16 = run16,
};
