/* ops/arm/norm_neon.c - AArch64 ASIMD GroupNorm / InstanceNorm. Reference: mi_group_norm_ref
 * (ops/norm.c); tests: tests/test_ops2.c (group_norm_fast_equals_ref: memcmp over group sizes and
 * tails, in place, a NaN group; group_norm_matches_torch; group_norm_threads_same_bits), under
 * qemu-user by `make test-arm`.
 *
 * The reference's operations in its order, so its bits (as ops/x86/norm_avx2.c): both sums in
 * double, element i of the group into partial sum i % 8 - here the two lanes of each of four
 * float64x2 accumulators, elements (0,1), (2,3), (4,5), (6,7) of every 8 - then the group's last
 * < 8 elements added one by one to their partial sums, the eight combined by mi_sum8_tree. Then
 * (x - mean) * a + b per element in double, a multiply then an add (vmulq_f64, vaddq_f64; no
 * vfmaq_f64), rounded once to float by FCVTN (round to nearest, as the reference's cast). */
#include "ops/norm.h"
#include "ops/cpu.h"

#include <arm_neon.h>
#include <math.h>

/* 8 floats of p widened: elements (0,1), (2,3), (4,5), (6,7) */
static inline void load8_f64(const float *p, float64x2_t v[4]) {
    const float32x4_t lo = vld1q_f32(p), hi = vld1q_f32(p + 4);
    v[0] = vcvt_f64_f32(vget_low_f32(lo));
    v[1] = vcvt_high_f64_f32(lo);
    v[2] = vcvt_f64_f32(vget_low_f32(hi));
    v[3] = vcvt_high_f64_f32(hi);
}

static inline void spill(double s[8], const float64x2_t v[4]) {
    for (int k = 0; k < 4; k++) vst1q_f64(s + 2 * k, v[k]);
}

void mi_group_norm_neon(float *y, const float *x, const float *gamma, const float *beta, int64_t N,
                        int64_t C, int64_t G, int64_t inner, double eps) {
    MI_ASSERT(G >= 1 && C % G == 0 && inner >= 0);
    const int64_t cg = C / G, cnt = cg * inner, full = cnt / 8 * 8;
    #pragma omp parallel for num_threads(mi_threads()) if (N * C * inner > 32768) schedule(static)
    for (int64_t ng = 0; ng < N * G; ng++) {
        const float *xg = x + ng * cnt;
        float *yg = y + ng * cnt;
        float64x2_t acc[4], v[4];
        double s[8], q[8];
        for (int k = 0; k < 4; k++) acc[k] = vdupq_n_f64(0.0);
        for (int64_t i = 0; i < full; i += 8) {   /* lane pair k holds elements i + 2k, i + 2k + 1 */
            load8_f64(xg + i, v);
            for (int k = 0; k < 4; k++) acc[k] = vaddq_f64(acc[k], v[k]);
        }
        spill(s, acc);
        for (int64_t i = full; i < cnt; i++) s[i % 8] += (double)xg[i];
        const double mean = mi_sum8_tree(s) / (double)cnt;
        const float64x2_t vm = vdupq_n_f64(mean);
        for (int k = 0; k < 4; k++) acc[k] = vdupq_n_f64(0.0);
        for (int64_t i = 0; i < full; i += 8) {
            load8_f64(xg + i, v);
            for (int k = 0; k < 4; k++) {
                const float64x2_t d = vsubq_f64(v[k], vm);
                acc[k] = vaddq_f64(acc[k], vmulq_f64(d, d));
            }
        }
        spill(q, acc);
        for (int64_t i = full; i < cnt; i++) {
            const double d = (double)xg[i] - mean;
            q[i % 8] += d * d;
        }
        const double rstd = 1.0 / sqrt(mi_sum8_tree(q) / (double)cnt + eps);
        for (int64_t j = 0; j < cg; j++) {
            const int64_t c = ng % G * cg + j;
            const double a = gamma ? rstd * (double)gamma[c] : rstd, b = beta ? (double)beta[c] : 0.0;
            const float64x2_t va = vdupq_n_f64(a), vb = vdupq_n_f64(b);
            const float *xc = xg + j * inner;
            float *yc = yg + j * inner;
            int64_t i = 0;
            for (; i + 4 <= inner; i += 4) {
                const float32x4_t xv = vld1q_f32(xc + i);
                const float64x2_t lo = vaddq_f64(vmulq_f64(vsubq_f64(vcvt_f64_f32(vget_low_f32(xv)), vm), va), vb);
                const float64x2_t hi = vaddq_f64(vmulq_f64(vsubq_f64(vcvt_high_f64_f32(xv), vm), va), vb);
                vst1q_f32(yc + i, vcvt_high_f32_f64(vcvt_f32_f64(lo), hi));
            }
            for (; i < inner; i++) yc[i] = (float)(((double)xc[i] - mean) * a + b);
        }
    }
}
