/* ops/x86/conv_dw_avx2.c - the AVX2 row kernel of the depthwise 2-D convolution (ops/conv_dw.c;
 * contract: mi_dw_row_fn in ops/conv_internal.h). Reference: mi_conv_forward_ref; test:
 * tests/test_conv.c (depthwise_equals_reference: memcmp over widths, heights, strides, padding,
 * kernel sizes, dilation, residual, ReLU, NaN/Inf inputs and an infinite weight; the depthwise
 * shapes of same_bits_for_1_2_4_threads).
 *
 * Eight output columns per vector. Each accumulator takes its column's taps in (kh, kw) order as
 * _mm256_add_ps(acc, _mm256_mul_ps(x, w)) - a multiply, then an add, never an FMA - from zero,
 * then + bias, + residual and the ReLU select: the scalar reference's operations in its order,
 * so the same bits. That order makes each accumulator one chain of dependent adds, so the kernel
 * keeps up to four chains in flight: the interior 32 columns at a time, its last columns (whole
 * vectors and a masked one) in one group, the left and right edge blocks of a row together.
 * Stride 2 takes the even columns of 15 floats with two loads and two shuffles, never reading
 * past the last column a lane needs; masked loads and stores past the row's last column.
 *
 * Edges (columns with taps in the padding): the block's input columns that exist lie in a window
 * of 24 columns of the row, loaded as three vectors; lane i of tap kw picks its column by permutes
 * and blends, and the product is ANDed with the lanes where the reference has that tap. A
 * skipped tap so adds +0.0, which leaves the accumulator as it was (one that starts at +0.0 and
 * adds rounded products is never -0.0) whatever the weight - even Inf, where 0*Inf would be NaN.
 * (A copy into a zero-filled buffer read back by 8-wide loads stalled on store forwarding and
 * took twice the time.) Rows narrower than the window, wider kernels and other strides run the
 * portable kernels of ops/conv_dw.c, whose arithmetic is the same. */
#include "ops/conv_internal.h"

#include <immintrin.h>

#define MI_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MI_MAX(a, b) ((a) > (b) ? (a) : (b))

/* lanes [0, n) set, n in 0..8 */
static inline __m256i lane_mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* p[0], p[S], ..., p[7S] for S = 1 or 2; reads p[0 .. 7S] only */
static inline __attribute__((always_inline)) __m256 load_cols(const float *p, const int S) {
    if (S == 1) return _mm256_loadu_ps(p);
    const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 7);     /* p0..p7, p7..p14 */
    const __m256 t = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 2, 0));    /* p0 p2 p8 p10 | p4 p6 p12 p14 */
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* The same columns for the lanes i < m only (masked loads: nothing past p[S*(m-1)] is read);
 * the other lanes 0 */
static inline __attribute__((always_inline)) __m256 load_cols_masked(const float *p, int64_t m, const int S) {
    if (S == 1) return _mm256_maskload_ps(p, lane_mask(m));
    const int64_t last = 2 * (m - 1);   /* the highest offset a lane needs */
    const __m256 a = _mm256_maskload_ps(p, lane_mask(MI_MIN(8, last + 1)));
    const __m256 b = _mm256_maskload_ps(p + 7, lane_mask(last >= 7 ? last - 6 : 0));
    const __m256 t = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* + bias, + residual (a separate rounding, as in the reference), ReLU; m < 8: masked */
static inline __attribute__((always_inline)) void store(const mi_dw_row *r, float *y, const float *res, __m256 acc,
                                                        int64_t m) {
    const int full = m == 8;
    __m256 v = _mm256_add_ps(acc, _mm256_set1_ps(r->bias));
    if (res) v = _mm256_add_ps(v, full ? _mm256_loadu_ps(res) : _mm256_maskload_ps(res, lane_mask(m)));
    if (r->relu) v = _mm256_andnot_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ), v);  /* v < 0 ? 0 : v */
    if (full) _mm256_storeu_ps(y, v);
    else _mm256_maskstore_ps(y, lane_mask(m), v);
}

/* Interior columns from j: V full vectors, then (T) one vector of mt < 8 masked columns; S the
 * stride. V, T, S are constants after inlining. */
static inline __attribute__((always_inline)) void block(const mi_dw_row *r, float *y, const float *res, int64_t j,
                                                        const int V, const int T, int64_t mt, const int S) {
    __m256 acc[4];
    #pragma GCC unroll 4
    for (int v = 0; v < V + T; v++) acc[v] = _mm256_setzero_ps();
    for (int64_t kh = r->kh_lo; kh < r->kh_hi; kh++) {
        const float *xr = r->x + (r->ih0 + kh * r->dh) * r->W + j * S - r->pw, *w = r->w + kh * r->k;
        for (int64_t kw = 0; kw < r->k; kw++) {
            const __m256 wv = _mm256_broadcast_ss(w + kw);
            const float *xp = xr + kw * r->d;
            #pragma GCC unroll 4
            for (int v = 0; v < V; v++) acc[v] = _mm256_add_ps(acc[v], _mm256_mul_ps(load_cols(xp + 8 * S * v, S), wv));
            if (T) acc[V] = _mm256_add_ps(acc[V], _mm256_mul_ps(load_cols_masked(xp + 8 * S * V, mt, S), wv));
        }
    }
    #pragma GCC unroll 4
    for (int v = 0; v < V + T; v++)
        store(r, y + j + 8 * v, res ? res + j + 8 * v : NULL, acc[v], v < V ? 8 : mt);
}

/* interior columns [j0, j1) (inside [c0, c1)) */
static inline __attribute__((always_inline)) void interior(const mi_dw_row *r, float *y, const float *res, int64_t j0,
                                                           int64_t j1, const int S) {
    int64_t j = j0;
    for (; j + 32 <= j1; j += 32) block(r, y, res, j, 4, 0, 0, S);
    const int64_t left = j1 - j, v = left / 8, mt = left % 8;
    /* the rest in one group: up to three whole vectors and a masked one */
    if (mt) {
        if (v == 0) block(r, y, res, j, 0, 1, mt, S);
        else if (v == 1) block(r, y, res, j, 1, 1, mt, S);
        else if (v == 2) block(r, y, res, j, 2, 1, mt, S);
        else block(r, y, res, j, 3, 1, mt, S);
    } else {
        if (v == 1) block(r, y, res, j, 1, 0, 0, S);
        else if (v == 2) block(r, y, res, j, 2, 0, 0, S);
        else if (v == 3) block(r, y, res, j, 3, 0, 0, S);
    }
}

/* ---- edges ---- */

#define WIN 24     /* window of input columns an edge block reads: three vectors */
#define K_MAX 16   /* widest kernel the edge blocks take */
#define NB_MAX 2   /* edge blocks computed together */

/* Edge blocks j[b] (m[b] <= 8 columns each), NB of them at once (independent chains). */
static inline __attribute__((always_inline)) void edges(const mi_dw_row *r, float *y, const float *res,
                                                        const int64_t *jb, const int64_t *mb, const int NB, const int S) {
    const __m256i laneS = _mm256_setr_epi32(0, S, 2 * S, 3 * S, 4 * S, 5 * S, 6 * S, 7 * S);
    __m256i rel[NB_MAX][K_MAX];
    __m256 ok[NB_MAX][K_MAX], hi1[NB_MAX][K_MAX], hi2[NB_MAX][K_MAX], acc[NB_MAX];
    int64_t base[NB_MAX];
    for (int b = 0; b < NB; b++) {
        const int64_t col0 = jb[b] * S - r->pw;
        base[b] = MI_MAX((int64_t)0, MI_MIN(col0, r->W - WIN));
        /* lane i of tap kw: input column c = col0 + kw*d + S*i, at rel = c - base in the window;
         * the same for every kh */
        for (int64_t kw = 0; kw < r->k; kw++) {
            const __m256i c = _mm256_add_epi32(_mm256_set1_epi32((int)(col0 + kw * r->d)), laneS);
            rel[b][kw] = _mm256_sub_epi32(c, _mm256_set1_epi32((int)base[b]));
            ok[b][kw] = _mm256_castsi256_ps(_mm256_and_si256(
                _mm256_and_si256(_mm256_cmpgt_epi32(c, _mm256_set1_epi32(-1)), _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r->W), c)),
                lane_mask(mb[b])));
            hi1[b][kw] = _mm256_castsi256_ps(_mm256_cmpgt_epi32(rel[b][kw], _mm256_set1_epi32(7)));
            hi2[b][kw] = _mm256_castsi256_ps(_mm256_cmpgt_epi32(rel[b][kw], _mm256_set1_epi32(15)));
        }
        acc[b] = _mm256_setzero_ps();
    }
    for (int64_t kh = r->kh_lo; kh < r->kh_hi; kh++) {
        const float *xr = r->x + (r->ih0 + kh * r->dh) * r->W, *w = r->w + kh * r->k;
        __m256 v0[NB_MAX], v1[NB_MAX], v2[NB_MAX];
        for (int b = 0; b < NB; b++) {
            v0[b] = _mm256_loadu_ps(xr + base[b]);
            v1[b] = _mm256_loadu_ps(xr + base[b] + 8);
            v2[b] = _mm256_loadu_ps(xr + base[b] + 16);
        }
        for (int64_t kw = 0; kw < r->k; kw++) {
            const __m256 wv = _mm256_broadcast_ss(w + kw);
            for (int b = 0; b < NB; b++) {
                __m256 xv = _mm256_blendv_ps(_mm256_permutevar8x32_ps(v0[b], rel[b][kw]),
                                             _mm256_permutevar8x32_ps(v1[b], rel[b][kw]), hi1[b][kw]);
                xv = _mm256_blendv_ps(xv, _mm256_permutevar8x32_ps(v2[b], rel[b][kw]), hi2[b][kw]);
                acc[b] = _mm256_add_ps(acc[b], _mm256_and_ps(_mm256_mul_ps(xv, wv), ok[b][kw]));
            }
        }
    }
    for (int b = 0; b < NB; b++) store(r, y + jb[b], res ? res + jb[b] : NULL, acc[b], mb[b]);
}

/* The columns [0, lo) and [hi, ow) in blocks of 8, two at a time. */
static inline __attribute__((always_inline)) void all_edges(const mi_dw_row *r, float *y, const float *res, int64_t lo,
                                                            int64_t hi, const int S) {
    int64_t jb[NB_MAX], mb[NB_MAX];
    int nb = 0;
    for (int side = 0; side < 2; side++) {
        const int64_t a = side ? hi : 0, e = side ? r->ow : lo;
        for (int64_t j = a; j < e; j += 8) {
            jb[nb] = j;
            mb[nb] = MI_MIN(8, e - j);
            if (++nb == NB_MAX) {
                edges(r, y, res, jb, mb, 2, S);
                nb = 0;
            }
        }
    }
    if (nb) edges(r, y, res, jb, mb, 1, S);
}

void mi_conv_dw_row_avx2(const mi_dw_row *r, float *y, const float *res) {
    /* column numbers go through 32-bit lanes; the window must fit the row and the block's span */
    const int window = (r->s == 1 || r->s == 2) && r->W >= WIN && r->W < INT32_MAX / 4 &&
                       r->ow * r->s < INT32_MAX / 4 && r->pw < INT32_MAX / 4 && r->k <= K_MAX &&
                       (r->k - 1) * r->d + 7 * r->s < WIN;
    if (!window) {
        mi_conv_dw_edge_portable(r, y, res, 0, r->c0);
        mi_conv_dw_edge_portable(r, y, res, r->c1, r->ow - r->c1);
        if (r->s == 1) interior(r, y, res, r->c0, r->c1, 1);
        else if (r->s == 2) interior(r, y, res, r->c0, r->c1, 2);
        else mi_conv_dw_interior_portable(r, y, res, r->c0, r->c1 - r->c0);
        return;
    }
    /* An edge block costs the same for 1 column as for 8 (its masks take any column), so the
     * edges take whole blocks of 8, interior columns included: [0, lo) and [hi, ow) */
    const int64_t lo = r->c0 ? MI_MIN(r->c1, (r->c0 + 7) / 8 * 8) : 0;
    const int64_t hi = r->ow > r->c1 ? MI_MAX(lo, r->ow - (r->ow - r->c1 + 7) / 8 * 8) : r->ow;
    if (r->s == 1) {
        all_edges(r, y, res, lo, hi, 1);
        interior(r, y, res, lo, hi, 1);
    } else {
        all_edges(r, y, res, lo, hi, 2);
        interior(r, y, res, lo, hi, 2);
    }
}
