/* ops/x86/pool_avx512.c - AVX-512 max pooling for ResNet's stem pool (3x3, stride 2, padding 1,
 * 2-D), 16 output columns at a time. Reference: ops/pool.c (mi_max_pool_ref); test:
 * tests/test_ops.c (max_pool_avx512_equals_ref, memcmp).
 *
 * The reference visits a window's candidates row by row, each row left to right, and keeps
 * m = v where v > m or v is NaN: the last NaN of the window if there is one, else the first of
 * its largest values (+0 and -0 compare equal, so the earlier of them). That choice is the same
 * whichever way the visits are grouped, as long as each step's left operand holds the earlier
 * candidates, so here each row's three columns are combined first, then the rows in order: two
 * steps deep instead of nine, for 16 outputs per vector. The AVX2 kernel (ops/x86/pool_avx2.c)
 * chains all nine and is bound by the chain's latency: on ResNet's stem output (64 x 112 x 112,
 * alone, best of 500 runs in turns) it takes 0.33-0.34 ms at one thread and 0.17 at two, this
 * kernel 0.175 and 0.09. Each input row's candidates are computed once for the two output rows
 * that share it: medians of 300 runs, in turns, 0.178 -> 0.144 ms at one thread, 0.129 -> 0.117 at
 * two; in ResNet-50 at one thread the pool went 0.21 -> 0.175 ms. */
#include "ops/pool.h"
#include "ops/cpu.h"

#include <immintrin.h>
#include <math.h>

#define PAR_MIN 16384

/* the reference's step: b (a later candidate) replaces a where b > a or b is NaN. max(b, a) is
 * already b where b > a and a elsewhere, ties and a NaN a included (vmaxps returns its second
 * operand where either is NaN), so only a NaN b is put back: one compare off the chain through a
 * instead of two and an or on it */
static inline __m512 step(__m512 a, __m512 b) {
    return _mm512_mask_mov_ps(_mm512_max_ps(b, a), _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q), b);
}

static inline __mmask16 first_n(int64_t n) { return (__mmask16)(n >= 16 ? 0xffff : n <= 0 ? 0 : (1u << n) - 1u); }

/* One output of row range [h0, h1), in the reference's loop. */
static float one(const float *xp, int64_t IW, int64_t h0, int64_t h1, int64_t ow) {
    int64_t a = 2 * ow - 1, b = a + 3;
    if (a < 0) a = 0;
    if (b > IW) b = IW;
    float m = -INFINITY;
    for (int64_t ih = h0; ih < h1; ih++)
        for (int64_t iw = a; iw < b; iw++) {
            const float v = xp[ih * IW + iw];
            if (v > m || isnan(v)) m = v;
        }
    return m;
}

/* Each output ow0 .. ow0+15's candidates in one row r of IW floats, combined left to right:
 * columns 2ow-1, 2ow, 2ow+1, of which those past the row are never a real output's (zeros) and
 * column -1 is padding (-inf, which a step never takes over a later candidate's bits). */
static inline __m512 row3(const float *r, int64_t IW, int64_t ow0, __m512i ev, __m512i od) {
    if (ow0 == 0) {   /* columns -1 .. 31: the odd ones moved up a lane behind -inf */
        const __m512 a = _mm512_maskz_loadu_ps(first_n(IW), r), b = _mm512_maskz_loadu_ps(first_n(IW - 16), r + 16);
        const __m512 odd = _mm512_permutex2var_ps(a, od, b);
        const __m512 left = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(odd),
                                                                    _mm512_castps_si512(_mm512_set1_ps(-INFINITY)), 15));
        return step(step(left, _mm512_permutex2var_ps(a, ev, b)), odd);
    }
    const int64_t w0 = 2 * ow0 - 1, avail = IW - w0;   /* floats of the row from w0 */
    const float *p = r + w0;
    const __m512 a = _mm512_maskz_loadu_ps(first_n(avail), p), b = _mm512_maskz_loadu_ps(first_n(avail - 16), p + 16);
    const __m512 a2 = _mm512_maskz_loadu_ps(first_n(avail - 2), p + 2);
    const __m512 b2 = _mm512_maskz_loadu_ps(first_n(avail - 18), p + 18);
    return step(step(_mm512_permutex2var_ps(a, ev, b), _mm512_permutex2var_ps(a, od, b)),
                _mm512_permutex2var_ps(a2, ev, b2));
}

int mi_max_pool_avx512(mi_tensor *y, const mi_tensor *x, const mi_pool_desc *d) {
    const int64_t *k = d->k, *s = d->stride, *p = d->pad, *dl = d->dil;
    if (d->sp != 2 || k[1] != 3 || k[2] != 3 || s[1] != 2 || s[2] != 2 || p[1] != 1 || p[2] != 1 || dl[1] != 1 ||
        dl[2] != 1)
        return 0;
    mi_max_pool_check_2d(y, x, d);
    const int64_t planes = x->shape[0] * x->shape[1], IH = x->shape[2], IW = x->shape[3];
    const int64_t OH = y->shape[2], OW = y->shape[3];
    /* outputs before `inner` have their last column (2ow+1) inside the row */
    const int64_t inner = OW < IW / 2 ? OW : IW / 2;
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    /* By planes, each plane row by row: row 2oh+1's candidates serve outputs oh and oh+1,
     * computed once (a third of the work) and combined in the same order as before. Columns in
     * blocks of up to 8 vectors, whose carried rows stay in registers. */
    #pragma omp parallel for num_threads(mi_threads()) if (planes * OH * OW > PAR_MIN) schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x->data + pl * IH * IW;
        float *yp = y->data + pl * OH * OW;
        for (int64_t ow0 = 0; ow0 < inner; ow0 += 8 * 16) {
            const int nv = (int)((inner - ow0 + 15) / 16 < 8 ? (inner - ow0 + 15) / 16 : 8);
            __m512 carry[8];   /* row 2oh-1's candidates, from output row oh-1 */
            for (int64_t oh = 0; oh < OH; oh++) {
                const int64_t h0 = oh * 2 - 1 < 0 ? 0 : oh * 2 - 1, h1 = oh * 2 + 2 > IH ? IH : oh * 2 + 2;
                for (int v = 0; v < nv; v++) {
                    const int64_t ow = ow0 + 16 * v;
                    __m512 m = _mm512_setzero_ps();
                    for (int64_t ih = h0; ih < h1; ih++) {
                        const __m512 row = ih == oh * 2 - 1 ? carry[v] : row3(xp + ih * IW, IW, ow, ev, od);
                        m = ih == h0 ? row : step(m, row);
                        if (ih == oh * 2 + 1) carry[v] = row;
                    }
                    _mm512_mask_storeu_ps(yp + oh * OW + ow, first_n(inner - ow), m);
                }
            }
        }
        for (int64_t oh = 0; oh < OH; oh++) {
            const int64_t h0 = oh * 2 - 1 < 0 ? 0 : oh * 2 - 1, h1 = oh * 2 + 2 > IH ? IH : oh * 2 + 2;
            for (int64_t ow = inner; ow < OW; ow++) yp[oh * OW + ow] = one(xp, IW, h0, h1, ow);
        }
    }
    return 1;
}
