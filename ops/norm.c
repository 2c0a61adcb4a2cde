/* ops/norm.c - BatchNorm folded into the preceding convolution, in float64 (torch's eval-mode
 * batch_norm: y = (x - mean) / sqrt(var + eps) * gamma + beta); GroupNorm / InstanceNorm from the
 * activations (ops/norm.h).
 *
 * GroupNorm: torch 1.13 (aten/src/ATen/native/cpu/group_norm_kernel.cpp) keeps float moments and
 * applies y = x*scale + bias in float; here the two passes (mean, then the mean of squared
 * deviations, not E[x^2] - mean^2, which cancels when the mean is large against the spread) and
 * the element-wise (x - mean) * (rstd*gamma) + beta run in double and round once, so a value
 * near FLT_MAX squares without overflow and the result is within an ulp of exact; torch's is
 * within a few (tests/test_ops2.c states the measured difference). The AVX2 and NEON kernels
 * (ops/x86/norm_avx2.c, ops/arm/norm_neon.c) do the same operations in the same order: the same
 * bits. */
#include "ops/conv.h"
#include "ops/norm.h"
#include "ops/cpu.h"

#include <math.h>

void mi_fold_batchnorm(float *w, float *b, const float *gamma, const float *beta,
                       const float *mean, const float *var, double eps, int64_t cout,
                       int64_t per_out) {
    for (int64_t o = 0; o < cout; o++) {
        double s = (double)gamma[o] / sqrt((double)var[o] + eps);
        for (int64_t i = 0; i < per_out; i++) w[o * per_out + i] = (float)((double)w[o * per_out + i] * s);
        b[o] = (float)(((double)b[o] - (double)mean[o]) * s + (double)beta[o]);
    }
}

/* The fixed order of both sums: element i of the group into partial sum i % 8, the eight
 * combined as a tree. In double it changes nothing that matters; it is the order the AVX2 and
 * NEON kernels (ops/x86/norm_avx2.c, ops/arm/norm_neon.c) keep in their lanes, so all give the
 * same bits. */
double mi_sum8_tree(const double s[8]) {
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

void mi_group_norm_ref(float *y, const float *x, const float *gamma, const float *beta, int64_t N,
                       int64_t C, int64_t G, int64_t inner, double eps) {
    MI_ASSERT(G >= 1 && C % G == 0 && inner >= 0);
    const int64_t cg = C / G, cnt = cg * inner;
    /* one (n, group) per iteration: its reduction stays on one thread, in index order */
    #pragma omp parallel for num_threads(mi_threads()) if (N * C * inner > 32768) schedule(static)
    for (int64_t ng = 0; ng < N * G; ng++) {
        const float *xg = x + ng * cnt;
        float *yg = y + ng * cnt;
        double s[8] = { 0 }, q[8] = { 0 };
        for (int64_t i = 0; i < cnt; i++) s[i % 8] += (double)xg[i];
        const double mean = mi_sum8_tree(s) / (double)cnt;
        for (int64_t i = 0; i < cnt; i++) {
            const double d = (double)xg[i] - mean;
            q[i % 8] += d * d;
        }
        const double rstd = 1.0 / sqrt(mi_sum8_tree(q) / (double)cnt + eps);
        for (int64_t j = 0; j < cg; j++) {
            const int64_t c = ng % G * cg + j;
            const double a = gamma ? rstd * (double)gamma[c] : rstd, b = beta ? (double)beta[c] : 0.0;
            for (int64_t i = j * inner; i < (j + 1) * inner; i++) yg[i] = (float)(((double)xg[i] - mean) * a + b);
        }
    }
}

void mi_group_norm(float *y, const float *x, const float *gamma, const float *beta, int64_t N, int64_t C,
                   int64_t G, int64_t inner, double eps) {
#if defined(__x86_64__)
    if (mi_cpu_isa() >= MI_ISA_AVX2) { mi_group_norm_avx2(y, x, gamma, beta, N, C, G, inner, eps); return; }
#elif defined(__aarch64__)
    if (mi_cpu_isa() >= MI_ISA_NEON) { mi_group_norm_neon(y, x, gamma, beta, N, C, G, inner, eps); return; }
#endif
    mi_group_norm_ref(y, x, gamma, beta, N, C, G, inner, eps);
}
