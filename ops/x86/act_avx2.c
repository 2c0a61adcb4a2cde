/* ops/x86/act_avx2.c - AVX2 ReLU, PReLU and add+PReLU. Reference: ops/act.c (mi_relu_ref,
 * mi_prelu_ref, mi_add_prelu_ref);
 * test: tests/test_ops.c (act_fast_equals_ref: memcmp over tail sizes; act_threads_same_bits).
 * Both are selects, not arithmetic rounding differently, so they equal the reference bit for bit:
 * ReLU zeroes lanes where x < 0 (ordered compare, so NaN passes through like `x < 0 ? 0 : x`);
 * PReLU picks x where x > 0 else a*x (one multiply, like the reference). */
#include "ops/act.h"
#include "ops/cpu.h"

#include <immintrin.h>
#include <math.h>

#define PAR_MIN 32768

static void relu_blocks(float *y, const float *x, int64_t b0, int64_t b1) {
    const __m256 zero = _mm256_setzero_ps();
    for (int64_t b = b0; b < b1; b++) {
        __m256 v = _mm256_loadu_ps(x + 8 * b);
        _mm256_storeu_ps(y + 8 * b, _mm256_andnot_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ), v));
    }
}

void mi_relu_avx2(float *y, const float *x, int64_t n) {
    const int64_t nb = n / 8;
    const int nt = mi_threads();
    if (nt == 1 || n <= PAR_MIN) relu_blocks(y, x, 0, nb);   /* not even a team of one (ops/cpu.h) */
    else {
        #pragma omp parallel for num_threads(nt) schedule(static)
        for (int t = 0; t < nt; t++) relu_blocks(y, x, t * nb / nt, (t + 1) * nb / nt);
    }
    for (int64_t i = nb * 8; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];  /* the reference's expression */
}

static void prelu_row(float *y, const float *x, float a, int64_t n) {
    const __m256 va = _mm256_set1_ps(a), zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(y + i, _mm256_blendv_ps(_mm256_mul_ps(v, va), v,
                                                 _mm256_cmp_ps(v, zero, _CMP_GT_OQ)));
    }
    for (; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : a * x[i];
}

void mi_prelu_avx2(float *y, const float *x, const float *slope, int64_t nslope, int64_t N,
                   int64_t C, int64_t inner) {
    MI_ASSERT(nslope == 1 || nslope == C);
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (N * C * inner > PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            prelu_row(y + (n * C + c) * inner, x + (n * C + c) * inner, slope[nslope == 1 ? 0 : c], inner);
}

/* mi_add_prelu_ref's sum (one rounding) then prelu_row's select: the same bits. */
static void add_prelu_row(float *y, const float *x, const float *r, float a, int64_t n) {
    const __m256 va = _mm256_set1_ps(a), zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(r + i));
        _mm256_storeu_ps(y + i, _mm256_blendv_ps(_mm256_mul_ps(v, va), v,
                                                 _mm256_cmp_ps(v, zero, _CMP_GT_OQ)));
    }
    for (; i < n; i++) {
        const float s = x[i] + r[i];
        y[i] = s > 0.0f ? s : a * s;
    }
}

void mi_add_prelu_avx2(float *y, const float *x, const float *r, int64_t Cr, const float *slope,
                       int64_t nslope, int64_t N, int64_t C, int64_t inner) {
    MI_ASSERT(nslope == 1 || nslope == C);
    MI_ASSERT(Cr >= 1 && Cr <= C);
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (N * C * inner > PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            add_prelu_row(y + (n * C + c) * inner, x + (n * C + c) * inner, r + (n * Cr + c % Cr) * inner,
                          slope[nslope == 1 ? 0 : c], inner);
}

/* ---- exp-based activations: sigmoid, softmax, log_softmax ----------------------------------
 * References: mi_sigmoid_ref, mi_softmax_ref, mi_log_softmax_ref (ops/act.c); tests:
 * tests/test_ops.c (softmax_matches_torch, act_exp_fast_vs_ref). Not the reference's bits: exp8
 * below is a polynomial (Cephes expf: 2^n * p(r), |r| <= ln2/2, about 1 ulp) where the reference
 * calls libm's expf, and sums run in 8 lanes. Tails use masked loads so every element, wherever it
 * falls, goes through the same lane arithmetic: the bits do not depend on threads or blocking.
 * log_softmax subtracts in the reference's order, (x - m) - log(s): x - m is exact near the max,
 * so the result does not round at the magnitude of the logits.
 *
 * Worst |error| on any output element, measured by tests/test_ops.c (act_extreme_fast_vs_ref,
 * act_extreme_matches_torch: rows and columns, gcc 12, torch 1.13), against the reference / torch:
 *   logits              softmax           log_softmax       sigmoid
 *   +-1e-30..1e-45      0 / 0             0 / 0             0 / 0
 *   near +-1e4          1.8e-7 / 1.8e-7   4.8e-7 / 4.8e-7   4.2e-39 / 4.2e-39
 *   near +-1e5, +-1e6   1.2e-7 / 1.2e-7   9.5e-7 / 9.5e-7   4.2e-39 / 4.2e-39
 *   spread 1e4, 1e6     0 / 0             0 / 0             4.2e-39 / 4.2e-39
 *   +-FLT_MAX           0 / 0             0 / 0             4.2e-39 / 4.2e-39
 *   one above by 1e4    0 / 0             0 / 0             6.0e-8 / 6.0e-8
 *   equal logits        0 / 0             0 / 0             4.2e-39 / 4.2e-39
 *   NaN, +-Inf rows     1.5e-8 / 3.0e-8   0 / 7.4e-9        6.0e-8 / 1.2e-7
 * NaN and Inf land where torch puts them in every case. The 9.5e-7 of log_softmax is one ulp of
 * outputs in [-16, -8]: log(s) differs from the reference's in its last bit (polynomial exp, lane
 * sums), so an output of magnitude >= 16 can differ by about its own ulp (>= 1.9e-6): the 1e-6
 * bound holds on outputs above -8, and on these rows, not on every output beyond.
 * Before the reordering, the same rows gave 4.9e-4 (1e4), 3.8e-3 (1e5), 3.1e-2 (1e6) and 3.6
 * (37 equal logits at 1e6 or FLT_MAX, where m + log(s) rounds back to m). The 4.2e-39 of sigmoid
 * is exp8 overflowing to Inf from x = 88.03 (its 2^n is built in the exponent field, n = 128 is
 * Inf): sigmoid(x <= -88.03) is 0 where libm's gives a subnormal. relu, prelu: bit for bit. */

/* exp(x) for x in [-87.33, 88.02]; 0 below (so exp(-inf) = 0, as softmax over masked logits
 * needs), NaN stays NaN; Inf above 88.03 (libm is finite up to 88.72), which only sigmoid of a
 * very negative x reaches, where 1/(1+Inf) = 0 is within 4.2e-39 of the exact value. softmax
 * calls it on x - max <= 0 only. */
static inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.336544f), hi = _mm256_set1_ps(88.3762626647949f);
    const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(lo, _mm256_min_ps(hi, x));      /* operand order keeps NaN */
    const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i n = _mm256_cvtps_epi32(fx);          /* -126..128; 128 only at the clamp */
    const __m256 pow2n = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, pow2n));
}

/* lanes [0, n) set, n in 0..8 */
static inline __m256i lane_mask(int64_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}

/* The first n of 8 lanes of v to p: a plain store for a whole vector, pieces of 4, 2 and 1 for
 * a tail (vmaskmovps to memory is slow on some cores, AMD Zen among them). */
static inline void store_n(float *p, int64_t n, __m256 v) {
    if (n >= 8) {
        _mm256_storeu_ps(p, v);
        return;
    }
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

void mi_sigmoid_avx2(float *y, const float *x, int64_t n) {
    const int64_t nb = (n + 7) / 8;
    const __m256 one = _mm256_set1_ps(1.0f);
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN / 8) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        const int64_t left = n - 8 * b;
        const __m256i m = lane_mask(left < 8 ? left : 8);
        const __m256 v = _mm256_maskload_ps(x + 8 * b, m);
        const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), v));
        store_n(y + 8 * b, left, _mm256_div_ps(one, _mm256_add_ps(one, e)));
    }
}

static inline float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* One contiguous row (inner == 1): x, y: (dim). Vectorized along the row. */
static void softmax_row(float *y, const float *x, int64_t dim, int log_out) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 vm = ninf, nan = _mm256_setzero_ps();
    for (int64_t d = 0; d < dim; d += 8) {
        const __m256i k = lane_mask(dim - d < 8 ? dim - d : 8);
        const __m256 v = _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + d, k), _mm256_castsi256_ps(k));
        vm = _mm256_max_ps(vm, v);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    const float m = _mm256_movemask_ps(nan) ? NAN : hmax8(vm);   /* NaN anywhere: NaN out, as ref */
    const __m256 vmax = _mm256_set1_ps(m);
    __m256 vs = _mm256_setzero_ps();
    for (int64_t d = 0; d < dim; d += 8) {
        const __m256i k = lane_mask(dim - d < 8 ? dim - d : 8);
        const __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(x + d, k), vmax)),
                                       _mm256_castsi256_ps(k));
        vs = _mm256_add_ps(vs, e);
        if (!log_out) _mm256_maskstore_ps(y + d, k, e);
    }
    const float s = hsum8(vs);
    if (log_out) {
        /* (x - m) - log(s), the reference's and torch's order: x - m is exact for the logits that
         * matter (near the max), where m + log(s) would round at the magnitude of m (2^-4 at 1e6) */
        const __m256 ls = _mm256_set1_ps(logf(s));
        for (int64_t d = 0; d < dim; d += 8) {
            const __m256i k = lane_mask(dim - d < 8 ? dim - d : 8);
            _mm256_maskstore_ps(y + d, k, _mm256_sub_ps(_mm256_sub_ps(_mm256_maskload_ps(x + d, k), vmax), ls));
        }
    } else {
        const __m256 vsum = _mm256_set1_ps(s);
        for (int64_t d = 0; d < dim; d += 8) {
            const __m256i k = lane_mask(dim - d < 8 ? dim - d : 8);
            _mm256_maskstore_ps(y + d, k, _mm256_div_ps(_mm256_maskload_ps(y + d, k), vsum));
        }
    }
}

/* 8 (or fewer, masked) neighbouring columns of stride `inner`: x, y at column i of (dim, inner).
 * Each lane is one column, reduced over d in order: max, sum of exp, then divide. `full` is a
 * constant after inlining: plain loads for whole blocks, masked ones for the tail only (the
 * lane arithmetic is the same either way). */
static inline __attribute__((always_inline)) __m256 ld(const float *p, __m256i k, int full) {
    return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, k);
}
static inline __attribute__((always_inline)) void st(float *p, __m256i k, __m256 v, int full) {
    if (full) _mm256_storeu_ps(p, v); else _mm256_maskstore_ps(p, k, v);
}

static inline __attribute__((always_inline)) void softmax_cols(float *y, const float *x, int64_t dim,
                                                               int64_t inner, __m256i k, int log_out,
                                                               int full) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    for (int64_t d = 0; d < dim; d++) {
        const __m256 v = ld(x + d * inner, k, full);
        m = _mm256_blendv_ps(m, v, _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    }
    __m256 s = _mm256_setzero_ps();
    for (int64_t d = 0; d < dim; d++) {
        const __m256 e = exp8(_mm256_sub_ps(ld(x + d * inner, k, full), m));
        s = _mm256_add_ps(s, e);
        if (!log_out) st(y + d * inner, k, e, full);
    }
    if (log_out) {
        float sl[8], ls[8];
        _mm256_storeu_ps(sl, s);
        for (int j = 0; j < 8; j++) ls[j] = logf(sl[j]);   /* once per column: libm is fine */
        const __m256 vls = _mm256_loadu_ps(ls);   /* (x - m) - log(s), as in softmax_row */
        for (int64_t d = 0; d < dim; d++)
            st(y + d * inner, k, _mm256_sub_ps(_mm256_sub_ps(ld(x + d * inner, k, full), m), vls), full);
    } else {
        for (int64_t d = 0; d < dim; d++) st(y + d * inner, k, _mm256_div_ps(ld(y + d * inner, k, full), s), full);
    }
}

static void softmax_avx2_any(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner,
                             int log_out) {
    if (inner == 1) {
        #pragma omp parallel for num_threads(mi_threads()) if (outer * dim > PAR_MIN / 8) schedule(static)
        for (int64_t o = 0; o < outer; o++) softmax_row(y + o * dim, x + o * dim, dim, log_out);
        return;
    }
    const int64_t nb = (inner + 7) / 8;
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (outer * dim * inner > PAR_MIN / 8) schedule(static)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t b = 0; b < nb; b++) {
            const int64_t i = 8 * b, left = inner - i;
            float *yo = y + o * dim * inner + i;
            const float *xo = x + o * dim * inner + i;
            if (left >= 8) {
                if (log_out) softmax_cols(yo, xo, dim, inner, lane_mask(8), 1, 1);
                else softmax_cols(yo, xo, dim, inner, lane_mask(8), 0, 1);
            } else softmax_cols(yo, xo, dim, inner, lane_mask(left), log_out, 0);
        }
}

void mi_softmax_avx2(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner) {
    softmax_avx2_any(y, x, outer, dim, inner, 0);
}

void mi_log_softmax_avx2(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner) {
    softmax_avx2_any(y, x, outer, dim, inner, 1);
}

/* ---- leaky_relu, elu, tanh ------------------------------------------------------------------
 * References: mi_leaky_relu_ref, mi_elu_ref, mi_tanh_ref (ops/act.c); tests: tests/test_ops2.c
 * (act_fast_vs_ref over tail sizes and edge values, act_matches_torch, act_threads_same_bits).
 * leaky_relu is prelu_row's select and one multiply: the reference's bits. elu and tanh are
 * polynomials with FMA, not libm's expm1f / tanhf: the tests hold them to 4 ulp of the references
 * (measured 2 and 2 over 460 000 values from 1e-40 to 1e4 in magnitude, both signs, and the tail
 * sizes; 2 and 1 ulp from torch's float64 values), NaN, +-Inf, +-0 and subnormals where the
 * references put them. Tails use masked loads and stores, so every element goes through the same
 * lane arithmetic whatever the thread count. On (1, 64, 96, 96), 1 thread, here: leaky_relu
 * 0.36 -> 0.06 ms, elu 4.0 -> 0.77 ms, tanh 8.3 -> 1.3 ms. */

void mi_leaky_relu_avx2(float *y, const float *x, float slope, int64_t n) {
    const int64_t nb = n / 8;
    const __m256 va = _mm256_set1_ps(slope), zero = _mm256_setzero_ps();
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        const __m256 v = _mm256_loadu_ps(x + 8 * b);
        _mm256_storeu_ps(y + 8 * b, _mm256_blendv_ps(_mm256_mul_ps(v, va), v, _mm256_cmp_ps(v, zero, _CMP_GT_OQ)));
    }
    for (int64_t i = nb * 8; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : x[i] * slope;
}

/* expm1(x) for x <= 0 (and NaN). Above -0.5 the Taylor series to x^9/9! (truncation below 0.12
 * ulp of the result there), summed as x + x^2*(1/2 + x*(1/6 + ...)) so that the leading x is
 * exact and near 0 the result is x itself; from -0.5 down exp8(x) - 1, where exp(x) <= 0.61 and
 * the difference loses nothing; below -87.3 exp8 gives 0 and this -1, libm's rounded value. */
static inline __m256 expm1_neg8(__m256 x) {
    __m256 p = _mm256_set1_ps(2.7557319e-6f);                          /* 1/9! */
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(2.4801587e-5f));         /* 1/8! */
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.9841270e-4f));         /* 1/7! */
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.3888889e-3f));         /* 1/6! */
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(8.3333333e-3f));         /* 1/5! */
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(4.1666667e-2f));         /* 1/4! */
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.6666667e-1f));         /* 1/3! */
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(0.5f));
    /* x == 0: x itself, so that -0 stays -0 (the polynomial would add +0 to it) */
    const __m256 small = _mm256_blendv_ps(_mm256_fmadd_ps(_mm256_mul_ps(x, x), p, x), x,
                                          _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_EQ_OQ));
    const __m256 big = _mm256_sub_ps(exp8(x), _mm256_set1_ps(1.0f));
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(x, _mm256_set1_ps(-0.5f), _CMP_GT_OQ));
}

void mi_elu_avx2(float *y, const float *x, float alpha, int64_t n) {
    const int64_t nb = (n + 7) / 8;
    const __m256 va = _mm256_set1_ps(alpha), zero = _mm256_setzero_ps();
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN / 8) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        const int64_t left = n - 8 * b;
        const __m256i m = lane_mask(left < 8 ? left : 8);
        const __m256 v = _mm256_maskload_ps(x + 8 * b, m);
        const __m256 neg = _mm256_mul_ps(va, expm1_neg8(_mm256_min_ps(zero, v)));   /* min returns its second operand, NaN */
        const __m256 pos = _mm256_cmp_ps(v, zero, _CMP_GT_OQ);
        store_n(y + 8 * b, left, _mm256_blendv_ps(neg, v, pos));
    }
}

/* tanh as Cephes' tanhf: below |x| = 0.625 the odd polynomial x + x^3*P(x^2) (its coefficients),
 * above 1 - 2/(exp(2|x|) + 1) with x's sign; exp8 overflows to Inf from |x| = 44, where the
 * result is 1 exactly as it should be. NaN stays NaN (exp8 keeps it, the comparisons are false),
 * -0 stays -0. */
void mi_tanh_avx2(float *y, const float *x, int64_t n) {
    const int64_t nb = (n + 7) / 8;
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f);
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN / 8) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        const int64_t left = n - 8 * b;
        const __m256i m = lane_mask(left < 8 ? left : 8);
        const __m256 v = _mm256_maskload_ps(x + 8 * b, m);
        const __m256 a = _mm256_andnot_ps(sign, v);                        /* |x| */
        const __m256 z = _mm256_mul_ps(v, v);
        __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
        const __m256 small = _mm256_blendv_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, z), v, v), v,   /* +-0: itself */
                                              _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_EQ_OQ));
        const __m256 e = exp8(_mm256_add_ps(a, a));
        const __m256 big = _mm256_or_ps(_mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(e, one))),
                                        _mm256_and_ps(sign, v));             /* |tanh| with x's sign */
        store_n(y + 8 * b, left, _mm256_blendv_ps(big, small, _mm256_cmp_ps(a, _mm256_set1_ps(0.625f), _CMP_LT_OQ)));
    }
}
