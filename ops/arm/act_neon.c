/* ops/arm/act_neon.c - AArch64 ASIMD activations: ReLU, PReLU, add+PReLU, leaky ReLU (the
 * references' bits), and sigmoid, softmax, log_softmax, ELU, tanh (the AVX2 kernels' polynomials).
 * References: ops/act.c (mi_*_ref); the AVX2 kernels they mirror: ops/x86/act_avx2.c. Tests:
 * tests/test_ops.c (act_fast_equals_ref, act_exp_fast_vs_ref, act_extreme_fast_vs_ref,
 * act_threads_same_bits) and tests/test_ops2.c (act_fast_vs_ref), under qemu-user by
 * `make test-arm`.
 *
 * ReLU, PReLU, add+PReLU and leaky ReLU are selects and one multiply (the add of add+PReLU rounded
 * once before the select), like the references: bit for bit. ReLU keeps x where !(x < 0) - an
 * ordered compare, so NaN and -0 pass through as `x < 0 ? 0 : x` passes them (vmaxq_f32 would
 * turn -0 into +0 and quiet a signalling NaN); the others take x where x > 0, else the product.
 *
 * The exp-based ones take the AVX2 kernels' Cephes polynomials operation for operation: each
 * fused multiply-add of the AVX2 code is a vfmaq_f32 / vfmsq_f32 here (both round once), the
 * round to nearest even is vrndnq_f32, the clamps keep NaN (FMIN/FMAX return a NaN operand as
 * _mm256_min_ps(hi, x) does), so every lane value equals the AVX2 one; only the reductions of
 * softmax along a row run in 4 lanes instead of 8 (checked once with a throwaway program: over
 * the 460 000 values of tests/test_ops2.c's sweep, sigmoid, ELU, tanh and softmax over columns
 * gave the AVX2 kernels' bits under qemu-aarch64; softmax along rows differed in the last bits,
 * from the sums). Bounds, as the AVX2 ones (tests): sigmoid and softmax within 1e-6 absolute of
 * the references, log_softmax 1e-5 absolute + 1e-6 relative on random rows and 1e-6 absolute on
 * the extreme-range rows; ELU and tanh within 4 ulp of the references. Measured under qemu-aarch64 (the "max |err|" and REPORT lines of the tests): sigmoid
 * 1.2e-7, softmax 1.2e-7, log_softmax 1.9e-6 from the references on random rows, at most 1.2e-7
 * and 9.5e-7 on the extreme-range rows (4.2e-39 for sigmoid where exp overflows, as on AVX2);
 * ELU 2 ulp, tanh 1 ulp over the sweep of 460 000 values. A partial last vector goes through a
 * 4-float buffer, so every element takes the same lane arithmetic wherever it falls: the same
 * bits for any thread count. */
#include "ops/act.h"
#include "ops/cpu.h"

#include <arm_neon.h>
#include <math.h>

#define PAR_MIN 32768

/* lanes [0, m) of p, `fill` in the others; m in 1..4 */
static inline float32x4_t load_part(const float *p, int64_t m, float fill) {
    float t[4] = { fill, fill, fill, fill };
    for (int64_t i = 0; i < m; i++) t[i] = p[i];
    return vld1q_f32(t);
}

static inline void store_part(float *p, int64_t m, float32x4_t v) {
    float t[4];
    vst1q_f32(t, v);
    for (int64_t i = 0; i < m; i++) p[i] = t[i];
}

static inline float32x4_t relu4(float32x4_t v) {
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(v), vcltq_f32(v, vdupq_n_f32(0.0f))));
}

/* x > 0 ? x : a*x */
static inline float32x4_t prelu4(float32x4_t v, float32x4_t a) {
    return vbslq_f32(vcgtq_f32(v, vdupq_n_f32(0.0f)), v, vmulq_f32(v, a));
}

void mi_relu_neon(float *y, const float *x, int64_t n) {
    const int64_t nb = n / 16;
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        const float *xp = x + 16 * b;
        float *yp = y + 16 * b;
        const float32x4_t v0 = vld1q_f32(xp), v1 = vld1q_f32(xp + 4), v2 = vld1q_f32(xp + 8), v3 = vld1q_f32(xp + 12);
        vst1q_f32(yp, relu4(v0));
        vst1q_f32(yp + 4, relu4(v1));
        vst1q_f32(yp + 8, relu4(v2));
        vst1q_f32(yp + 12, relu4(v3));
    }
    int64_t i = nb * 16;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, relu4(vld1q_f32(x + i)));
    for (; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];   /* the reference's expression */
}

static void prelu_row(float *y, const float *x, float a, int64_t n) {
    const float32x4_t va = vdupq_n_f32(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float32x4_t v0 = vld1q_f32(x + i), v1 = vld1q_f32(x + i + 4);
        vst1q_f32(y + i, prelu4(v0, va));
        vst1q_f32(y + i + 4, prelu4(v1, va));
    }
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, prelu4(vld1q_f32(x + i), va));
    for (; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : a * x[i];
}

void mi_prelu_neon(float *y, const float *x, const float *slope, int64_t nslope, int64_t N,
                   int64_t C, int64_t inner) {
    MI_ASSERT(nslope == 1 || nslope == C);
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (N * C * inner > PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            prelu_row(y + (n * C + c) * inner, x + (n * C + c) * inner, slope[nslope == 1 ? 0 : c], inner);
}

/* mi_add_prelu_ref's sum (one rounding) then prelu_row's select: the same bits. */
static void add_prelu_row(float *y, const float *x, const float *r, float a, int64_t n) {
    const float32x4_t va = vdupq_n_f32(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float32x4_t s0 = vaddq_f32(vld1q_f32(x + i), vld1q_f32(r + i));
        const float32x4_t s1 = vaddq_f32(vld1q_f32(x + i + 4), vld1q_f32(r + i + 4));
        vst1q_f32(y + i, prelu4(s0, va));
        vst1q_f32(y + i + 4, prelu4(s1, va));
    }
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, prelu4(vaddq_f32(vld1q_f32(x + i), vld1q_f32(r + i)), va));
    for (; i < n; i++) {
        const float s = x[i] + r[i];
        y[i] = s > 0.0f ? s : a * s;
    }
}

void mi_add_prelu_neon(float *y, const float *x, const float *r, int64_t Cr, const float *slope,
                       int64_t nslope, int64_t N, int64_t C, int64_t inner) {
    MI_ASSERT(nslope == 1 || nslope == C);
    MI_ASSERT(Cr >= 1 && Cr <= C);
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (N * C * inner > PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            add_prelu_row(y + (n * C + c) * inner, x + (n * C + c) * inner, r + (n * Cr + c % Cr) * inner,
                          slope[nslope == 1 ? 0 : c], inner);
}

void mi_leaky_relu_neon(float *y, const float *x, float slope, int64_t n) {
    const int64_t nb = n / 16;
    const float32x4_t va = vdupq_n_f32(slope);
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        const float *xp = x + 16 * b;
        float *yp = y + 16 * b;
        const float32x4_t v0 = vld1q_f32(xp), v1 = vld1q_f32(xp + 4), v2 = vld1q_f32(xp + 8), v3 = vld1q_f32(xp + 12);
        vst1q_f32(yp, prelu4(v0, va));
        vst1q_f32(yp + 4, prelu4(v1, va));
        vst1q_f32(yp + 8, prelu4(v2, va));
        vst1q_f32(yp + 12, prelu4(v3, va));
    }
    int64_t i = nb * 16;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, prelu4(vld1q_f32(x + i), va));
    for (; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : x[i] * slope;
}

/* ---- exp-based: sigmoid, softmax, log_softmax, elu, tanh ------------------------------------ */

/* exp8 of ops/x86/act_avx2.c in four lanes: exp(x) for x in [-87.33, 88.02], 0 below, NaN kept,
 * Inf from 88.03 (only sigmoid of a very negative x gets there, where 1/(1+Inf) = 0 is within
 * 4.2e-39 of exact). fx is integral, so the conversion's rounding mode does not matter; a NaN
 * converts to 0 here (INT_MIN on x86), and NaN * 2^0 is NaN all the same. */
static inline float32x4_t exp4(float32x4_t x) {
    const float32x4_t lo = vdupq_n_f32(-87.336544f), hi = vdupq_n_f32(88.3762626647949f);
    const uint32x4_t under = vcltq_f32(x, lo);
    x = vmaxq_f32(lo, vminq_f32(hi, x));
    const float32x4_t fx = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(x, fx, vdupq_n_f32(0.693359375f));     /* x - fx*c, one rounding */
    r = vfmsq_f32(r, fx, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    const int32x4_t n = vcvtnq_s32_f32(fx);                           /* -126..128; 128 only at the clamp */
    const float32x4_t pow2n = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n, vdupq_n_s32(127)), 23));
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(vmulq_f32(p, pow2n)), under));
}

static inline float32x4_t sigmoid4(float32x4_t v) {
    const float32x4_t one = vdupq_n_f32(1.0f);
    return vdivq_f32(one, vaddq_f32(one, exp4(vsubq_f32(vdupq_n_f32(0.0f), v))));
}

void mi_sigmoid_neon(float *y, const float *x, int64_t n) {
    const int64_t nb = n / 4;
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN / 8) schedule(static)
    for (int64_t b = 0; b < nb; b++) vst1q_f32(y + 4 * b, sigmoid4(vld1q_f32(x + 4 * b)));
    if (n > nb * 4) store_part(y + nb * 4, n - nb * 4, sigmoid4(load_part(x + nb * 4, n - nb * 4, 0.0f)));
}

/* One contiguous row (inner == 1): x, y: (dim). The max and the sum in four lanes, then FMAXV and
 * FADDV (a fixed order). FMAX returns NaN when either operand is NaN, so a NaN anywhere makes
 * the max NaN and the whole row NaN, as in the reference. Lanes past the row hold -inf for the
 * max and add +0.0 to the sum. */
static void softmax_row(float *y, const float *x, int64_t dim, int log_out) {
    const int64_t full = dim / 4 * 4, rest = dim - full;
    float32x4_t vm = vdupq_n_f32(-INFINITY);
    for (int64_t d = 0; d < full; d += 4) vm = vmaxq_f32(vm, vld1q_f32(x + d));
    if (rest) vm = vmaxq_f32(vm, load_part(x + full, rest, -INFINITY));
    const float m = vmaxvq_f32(vm);
    const float32x4_t vmax = vdupq_n_f32(m);
    float32x4_t vs = vdupq_n_f32(0.0f);
    for (int64_t d = 0; d < full; d += 4) {
        const float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + d), vmax));
        vs = vaddq_f32(vs, e);
        if (!log_out) vst1q_f32(y + d, e);
    }
    if (rest) {
        const uint32x4_t k = vcltq_u32((uint32x4_t){ 0, 1, 2, 3 }, vdupq_n_u32((uint32_t)rest));
        const float32x4_t e = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(
            exp4(vsubq_f32(load_part(x + full, rest, 0.0f), vmax))), k));
        vs = vaddq_f32(vs, e);
        if (!log_out) store_part(y + full, rest, e);
    }
    const float s = vaddvq_f32(vs);
    if (log_out) {
        /* (x - m) - log(s), the reference's order (act_avx2.c says why) */
        const float32x4_t ls = vdupq_n_f32(logf(s));
        for (int64_t d = 0; d < full; d += 4) vst1q_f32(y + d, vsubq_f32(vsubq_f32(vld1q_f32(x + d), vmax), ls));
        if (rest) store_part(y + full, rest, vsubq_f32(vsubq_f32(load_part(x + full, rest, 0.0f), vmax), ls));
    } else {
        const float32x4_t vsum = vdupq_n_f32(s);
        for (int64_t d = 0; d < full; d += 4) vst1q_f32(y + d, vdivq_f32(vld1q_f32(y + d), vsum));
        if (rest) store_part(y + full, rest, vdivq_f32(load_part(y + full, rest, 1.0f), vsum));
    }
}

/* Four (or m < 4, through the buffer) neighbouring columns of stride `inner`: x, y at column i
 * of (dim, inner). Each lane is one column, reduced over d in order: the reference's max (take v
 * where v > m or v is NaN), the sum of exp, then the divide. `full` is a constant after
 * inlining. */
static inline __attribute__((always_inline)) float32x4_t ld(const float *p, int64_t m, int full) {
    return full ? vld1q_f32(p) : load_part(p, m, 0.0f);
}
static inline __attribute__((always_inline)) void st(float *p, int64_t m, float32x4_t v, int full) {
    if (full) vst1q_f32(p, v);
    else store_part(p, m, v);
}

static inline __attribute__((always_inline)) void softmax_cols(float *y, const float *x, int64_t dim,
                                                               int64_t inner, int64_t mlanes, int log_out,
                                                               int full) {
    float32x4_t m = vdupq_n_f32(-INFINITY);
    for (int64_t d = 0; d < dim; d++) {
        const float32x4_t v = ld(x + d * inner, mlanes, full);
        const uint32x4_t take = vorrq_u32(vcgtq_f32(v, m), vmvnq_u32(vceqq_f32(v, v)));
        m = vbslq_f32(take, v, m);
    }
    float32x4_t s = vdupq_n_f32(0.0f);
    for (int64_t d = 0; d < dim; d++) {
        const float32x4_t e = exp4(vsubq_f32(ld(x + d * inner, mlanes, full), m));
        s = vaddq_f32(s, e);
        if (!log_out) st(y + d * inner, mlanes, e, full);
    }
    if (log_out) {
        float sl[4], ls[4];
        vst1q_f32(sl, s);
        for (int j = 0; j < 4; j++) ls[j] = logf(sl[j]);   /* once per column: libm is fine */
        const float32x4_t vls = vld1q_f32(ls);
        for (int64_t d = 0; d < dim; d++)
            st(y + d * inner, mlanes, vsubq_f32(vsubq_f32(ld(x + d * inner, mlanes, full), m), vls), full);
    } else {
        for (int64_t d = 0; d < dim; d++) st(y + d * inner, mlanes, vdivq_f32(ld(y + d * inner, mlanes, full), s), full);
    }
}

static void softmax_neon_any(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner,
                             int log_out) {
    if (inner == 1) {
        #pragma omp parallel for num_threads(mi_threads()) if (outer * dim > PAR_MIN / 8) schedule(static)
        for (int64_t o = 0; o < outer; o++) softmax_row(y + o * dim, x + o * dim, dim, log_out);
        return;
    }
    const int64_t nb = (inner + 3) / 4;
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (outer * dim * inner > PAR_MIN / 8) schedule(static)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t b = 0; b < nb; b++) {
            const int64_t i = 4 * b, left = inner - i;
            float *yo = y + o * dim * inner + i;
            const float *xo = x + o * dim * inner + i;
            if (left >= 4) {
                if (log_out) softmax_cols(yo, xo, dim, inner, 4, 1, 1);
                else softmax_cols(yo, xo, dim, inner, 4, 0, 1);
            } else softmax_cols(yo, xo, dim, inner, left, log_out, 0);
        }
}

void mi_softmax_neon(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner) {
    softmax_neon_any(y, x, outer, dim, inner, 0);
}

void mi_log_softmax_neon(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner) {
    softmax_neon_any(y, x, outer, dim, inner, 1);
}

/* expm1_neg8 of ops/x86/act_avx2.c: expm1(x) for x <= 0 (and NaN); above -0.5 the Taylor series
 * to x^9/9! with the leading x exact (x itself at +-0), from -0.5 down exp4(x) - 1. */
static inline float32x4_t expm1_neg4(float32x4_t x) {
    float32x4_t p = vdupq_n_f32(2.7557319e-6f);                       /* 1/9! */
    p = vfmaq_f32(vdupq_n_f32(2.4801587e-5f), p, x);                  /* 1/8! */
    p = vfmaq_f32(vdupq_n_f32(1.9841270e-4f), p, x);                  /* 1/7! */
    p = vfmaq_f32(vdupq_n_f32(1.3888889e-3f), p, x);                  /* 1/6! */
    p = vfmaq_f32(vdupq_n_f32(8.3333333e-3f), p, x);                  /* 1/5! */
    p = vfmaq_f32(vdupq_n_f32(4.1666667e-2f), p, x);                  /* 1/4! */
    p = vfmaq_f32(vdupq_n_f32(1.6666667e-1f), p, x);                  /* 1/3! */
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, x);
    const float32x4_t small = vbslq_f32(vceqq_f32(x, vdupq_n_f32(0.0f)), x, vfmaq_f32(x, vmulq_f32(x, x), p));
    const float32x4_t big = vsubq_f32(exp4(x), vdupq_n_f32(1.0f));
    return vbslq_f32(vcgtq_f32(x, vdupq_n_f32(-0.5f)), small, big);
}

/* x > 0 ? x : alpha*expm1(x). FMIN(0, x) is NaN for a NaN x and -0 for -0, as _mm256_min_ps(0, x)
 * gives them. */
static inline float32x4_t elu4(float32x4_t v, float32x4_t va) {
    const float32x4_t zero = vdupq_n_f32(0.0f);
    const float32x4_t neg = vmulq_f32(va, expm1_neg4(vminq_f32(zero, v)));
    return vbslq_f32(vcgtq_f32(v, zero), v, neg);
}

void mi_elu_neon(float *y, const float *x, float alpha, int64_t n) {
    const int64_t nb = n / 4;
    const float32x4_t va = vdupq_n_f32(alpha);
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN / 8) schedule(static)
    for (int64_t b = 0; b < nb; b++) vst1q_f32(y + 4 * b, elu4(vld1q_f32(x + 4 * b), va));
    if (n > nb * 4) store_part(y + nb * 4, n - nb * 4, elu4(load_part(x + nb * 4, n - nb * 4, 0.0f), va));
}

/* Cephes tanhf as in mi_tanh_avx2: below |x| = 0.625 x + x^3*P(x^2) (+-0 itself), above
 * 1 - 2/(exp(2|x|) + 1) with x's sign; NaN stays NaN. */
static inline float32x4_t tanh4(float32x4_t v) {
    const uint32x4_t sign = vdupq_n_u32(0x80000000u);
    const float32x4_t one = vdupq_n_f32(1.0f), two = vdupq_n_f32(2.0f);
    const float32x4_t a = vabsq_f32(v);
    const float32x4_t z = vmulq_f32(v, v);
    float32x4_t p = vdupq_n_f32(-5.70498872745e-3f);
    p = vfmaq_f32(vdupq_n_f32(2.06390887954e-2f), p, z);
    p = vfmaq_f32(vdupq_n_f32(-5.37397155531e-2f), p, z);
    p = vfmaq_f32(vdupq_n_f32(1.33314422036e-1f), p, z);
    p = vfmaq_f32(vdupq_n_f32(-3.33332819422e-1f), p, z);
    const float32x4_t small = vbslq_f32(vceqq_f32(v, vdupq_n_f32(0.0f)), v, vfmaq_f32(v, vmulq_f32(p, z), v));
    const float32x4_t e = exp4(vaddq_f32(a, a));
    const float32x4_t mag = vsubq_f32(one, vdivq_f32(two, vaddq_f32(e, one)));
    const float32x4_t big = vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(mag),
                                                            vandq_u32(sign, vreinterpretq_u32_f32(v))));
    return vbslq_f32(vcltq_f32(a, vdupq_n_f32(0.625f)), small, big);
}

void mi_tanh_neon(float *y, const float *x, int64_t n) {
    const int64_t nb = n / 4;
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN / 8) schedule(static)
    for (int64_t b = 0; b < nb; b++) vst1q_f32(y + 4 * b, tanh4(vld1q_f32(x + 4 * b)));
    if (n > nb * 4) store_part(y + nb * 4, n - nb * 4, tanh4(load_part(x + nb * 4, n - nb * 4, 0.0f)));
}
