/* ops/act.c - scalar references for the activations (see act.h), and the dispatch.
 *
 * Threads split over independent outputs only; softmax's reduction over `dim` is done by one
 * thread in a fixed order, so results are the same bits for any thread count.
 *
 * Worst |error| against torch on any output element (tests/test_ops.c, act_extreme_matches_torch,
 * rows and columns): softmax 6.0e-8 on logits near +-1e4..1e6, 3.0e-8 on NaN/Inf rows;
 * log_softmax 4.8e-7 near 1e4..1e6, 7.4e-9 on NaN/Inf rows; sigmoid 6.0e-8 (one logit 1e4 above the
 * rest), 1.2e-7 (NaN/Inf rows); 0 on subnormals, logits spread over 1e4..1e6, +-FLT_MAX, equal
 * logits; relu, prelu, leaky (prelu with one slope): 0 everywhere. NaN and Inf where torch has
 * them. leaky_relu: exact; elu: 6.0e-8 (torch 1.13 computes exp(x) - 1, this expm1); tanh - tests/test_ops2.c.
 * exp, log, expm1, tanh are ops/mathf.c's, not libm's: the same bits on every CPU (MI_EXACT). */
#include "ops/act.h"
#include "ops/mathf.h"
#include "ops/cpu.h"

#include <math.h>

/* Below this many elements a parallel region costs more than it saves. */
#define PAR_MIN 32768

void mi_relu_ref(float *y, const float *x, int64_t n) {
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

void mi_relu(float *y, const float *x, int64_t n) {
#if defined(__x86_64__)
    if (mi_cpu_isa() >= MI_ISA_AVX2) { mi_relu_avx2(y, x, n); return; }
#elif defined(__aarch64__)
    if (mi_cpu_isa() >= MI_ISA_NEON) { mi_relu_neon(y, x, n); return; }
#endif
    mi_relu_ref(y, x, n);
}

void mi_relu_(mi_tensor *x) {
    MI_ASSERT(mi_tensor_is_contiguous(x));
    mi_relu(x->data, x->data, mi_tensor_numel(x));
}

void mi_prelu_ref(float *y, const float *x, const float *slope, int64_t nslope, int64_t N,
                  int64_t C, int64_t inner) {
    MI_ASSERT(nslope == 1 || nslope == C);
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (N * C * inner > PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            const float a = slope[nslope == 1 ? 0 : c];
            const float *xp = x + (n * C + c) * inner;
            float *yp = y + (n * C + c) * inner;
            for (int64_t i = 0; i < inner; i++) yp[i] = xp[i] > 0.0f ? xp[i] : a * xp[i];
        }
}

void mi_prelu(float *y, const float *x, const float *slope, int64_t nslope, int64_t N, int64_t C,
              int64_t inner) {
#if defined(__x86_64__)
    if (mi_cpu_isa() >= MI_ISA_AVX2) { mi_prelu_avx2(y, x, slope, nslope, N, C, inner); return; }
#elif defined(__aarch64__)
    if (mi_cpu_isa() >= MI_ISA_NEON) { mi_prelu_neon(y, x, slope, nslope, N, C, inner); return; }
#endif
    mi_prelu_ref(y, x, slope, nslope, N, C, inner);
}

void mi_add_prelu_ref(float *y, const float *x, const float *r, int64_t Cr, const float *slope,
                      int64_t nslope, int64_t N, int64_t C, int64_t inner) {
    MI_ASSERT(nslope == 1 || nslope == C);
    MI_ASSERT(Cr >= 1 && Cr <= C);
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (N * C * inner > PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            const float a = slope[nslope == 1 ? 0 : c];
            const float *xp = x + (n * C + c) * inner, *rp = r + (n * Cr + c % Cr) * inner;
            float *yp = y + (n * C + c) * inner;
            for (int64_t i = 0; i < inner; i++) {
                const float s = xp[i] + rp[i];
                yp[i] = s > 0.0f ? s : a * s;
            }
        }
}

void mi_add_prelu(float *y, const float *x, const float *r, int64_t Cr, const float *slope,
                  int64_t nslope, int64_t N, int64_t C, int64_t inner) {
#if defined(__x86_64__)
    if (mi_cpu_isa() >= MI_ISA_AVX2) { mi_add_prelu_avx2(y, x, r, Cr, slope, nslope, N, C, inner); return; }
#elif defined(__aarch64__)
    if (mi_cpu_isa() >= MI_ISA_NEON) { mi_add_prelu_neon(y, x, r, Cr, slope, nslope, N, C, inner); return; }
#endif
    mi_add_prelu_ref(y, x, r, Cr, slope, nslope, N, C, inner);
}

void mi_sigmoid_ref(float *y, const float *x, int64_t n) {
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN / 8) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + mi_expf(-x[i]));
}

void mi_leaky_relu_ref(float *y, const float *x, float slope, int64_t n) {
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : x[i] * slope;
}

/* expm1, not exp - 1: near 0 the difference of exp(x) and 1 would keep only the bits of x that
 * survive next to 1 (1e-5 would come out with 3 correct digits). */
void mi_elu_ref(float *y, const float *x, float alpha, int64_t n) {
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN / 8) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : alpha * mi_expm1f(x[i]);
}

void mi_tanh_ref(float *y, const float *x, int64_t n) {
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN / 8) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = mi_tanhf(x[i]);
}

/* One (outer, inner) column of length dim with stride inner: max, then exp(x - max) and its
 * sum in index order, then divide. log: y = (x - max) - log(sum), torch's order: x - max is exact
 * near the max, where max + log(sum) would round at the logits' magnitude. */
static void softmax_column(float *y, const float *x, int64_t dim, int64_t inner, int log_out) {
    float m = -INFINITY;
    for (int64_t d = 0; d < dim; d++)
        if (x[d * inner] > m || isnan(x[d * inner])) m = x[d * inner];
    float s = 0.0f;
    if (log_out) {
        for (int64_t d = 0; d < dim; d++) s += mi_expf(x[d * inner] - m);
        const float ls = mi_logf(s);
        for (int64_t d = 0; d < dim; d++) y[d * inner] = x[d * inner] - m - ls;
    } else {
        for (int64_t d = 0; d < dim; d++) { y[d * inner] = mi_expf(x[d * inner] - m); s += y[d * inner]; }
        for (int64_t d = 0; d < dim; d++) y[d * inner] /= s;
    }
}

static void softmax_any(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner,
                        int log_out) {
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (outer * dim * inner > PAR_MIN / 8) schedule(static)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++)
            softmax_column(y + o * dim * inner + i, x + o * dim * inner + i, dim, inner, log_out);
}

void mi_softmax_ref(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner) {
    softmax_any(y, x, outer, dim, inner, 0);
}

void mi_log_softmax_ref(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner) {
    softmax_any(y, x, outer, dim, inner, 1);
}

void mi_sigmoid(float *y, const float *x, int64_t n) {
#if defined(__x86_64__)
    if (mi_cpu_isa() >= MI_ISA_AVX2) { mi_sigmoid_avx2(y, x, n); return; }
#elif defined(__aarch64__)
    if (mi_cpu_isa() >= MI_ISA_NEON) { mi_sigmoid_neon(y, x, n); return; }
#endif
    mi_sigmoid_ref(y, x, n);
}

void mi_leaky_relu(float *y, const float *x, float slope, int64_t n) {
#if defined(__x86_64__)
    if (mi_cpu_isa() >= MI_ISA_AVX2) { mi_leaky_relu_avx2(y, x, slope, n); return; }
#elif defined(__aarch64__)
    if (mi_cpu_isa() >= MI_ISA_NEON) { mi_leaky_relu_neon(y, x, slope, n); return; }
#endif
    mi_leaky_relu_ref(y, x, slope, n);
}

void mi_elu(float *y, const float *x, float alpha, int64_t n) {
#if defined(__x86_64__)
    if (mi_cpu_isa() >= MI_ISA_AVX2) { mi_elu_avx2(y, x, alpha, n); return; }
#elif defined(__aarch64__)
    if (mi_cpu_isa() >= MI_ISA_NEON) { mi_elu_neon(y, x, alpha, n); return; }
#endif
    mi_elu_ref(y, x, alpha, n);
}

void mi_tanh(float *y, const float *x, int64_t n) {
#if defined(__x86_64__)
    if (mi_cpu_isa() >= MI_ISA_AVX2) { mi_tanh_avx2(y, x, n); return; }
#elif defined(__aarch64__)
    if (mi_cpu_isa() >= MI_ISA_NEON) { mi_tanh_neon(y, x, n); return; }
#endif
    mi_tanh_ref(y, x, n);
}

void mi_softmax(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner) {
#if defined(__x86_64__)
    if (mi_cpu_isa() >= MI_ISA_AVX2) { mi_softmax_avx2(y, x, outer, dim, inner); return; }
#elif defined(__aarch64__)
    if (mi_cpu_isa() >= MI_ISA_NEON) { mi_softmax_neon(y, x, outer, dim, inner); return; }
#endif
    mi_softmax_ref(y, x, outer, dim, inner);
}

void mi_log_softmax(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner) {
#if defined(__x86_64__)
    if (mi_cpu_isa() >= MI_ISA_AVX2) { mi_log_softmax_avx2(y, x, outer, dim, inner); return; }
#elif defined(__aarch64__)
    if (mi_cpu_isa() >= MI_ISA_NEON) { mi_log_softmax_neon(y, x, outer, dim, inner); return; }
#endif
    mi_log_softmax_ref(y, x, outer, dim, inner);
}
