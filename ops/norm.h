/* ops/norm.h - normalization computed at run time from the activations: GroupNorm, and with it
 * InstanceNorm (one channel per group). BatchNorm has no run-time op: its running statistics
 * are folded into the convolution before it at load (mi_fold_batchnorm, ops/conv.h). */
#ifndef MI_NORM_H
#define MI_NORM_H

#include "ops/tensor.h"

/* torch.nn.functional.group_norm over x viewed as (N, C, inner): G groups of C/G consecutive
 * channels; per (n, group) the mean and biased variance of its C/G*inner values, then
 * y = (x - mean) / sqrt(var + eps) * gamma[c] + beta[c]. gamma, beta: (C), NULL meaning 1 and 0
 * (affine=False). InstanceNorm2d is G == C (eps 1e-5, affine or not); GroupNorm(G, C) is the
 * module. y may equal x. C % G == 0 and G >= 1 are the caller's to check at load (asserted).
 * Statistics in double, summed in a fixed order (eight interleaved partial sums) by one thread
 * per (n, group), then each element in double, rounded once: the same bits for any thread count
 * and on every path; NaN or Inf in a group makes that group NaN, as in torch. */
void mi_group_norm(float *y, const float *x, const float *gamma, const float *beta, int64_t N, int64_t C,
                   int64_t G, int64_t inner, double eps);

/* The reference and the kernel, called directly by tests. Same contract; the same bits. */
void mi_group_norm_ref(float *y, const float *x, const float *gamma, const float *beta, int64_t N,
                       int64_t C, int64_t G, int64_t inner, double eps);
#if defined(__x86_64__)
void mi_group_norm_avx2(float *y, const float *x, const float *gamma, const float *beta, int64_t N,
                        int64_t C, int64_t G, int64_t inner, double eps);
#elif defined(__aarch64__)
void mi_group_norm_neon(float *y, const float *x, const float *gamma, const float *beta, int64_t N,
                        int64_t C, int64_t G, int64_t inner, double eps);
#endif
/* ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)): how both combine their eight partial sums
 * (element i of a group goes to s[i % 8]). */
double mi_sum8_tree(const double s[8]);

#endif
