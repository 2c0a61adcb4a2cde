/* ops/act.h - activations: ReLU, PReLU, leaky ReLU, ELU, sigmoid, tanh, softmax and log-softmax
 * along one dim.
 *
 * Float32, contiguous. Pointers name their shape; y may equal x (in place) everywhere.
 * Each public function dispatches to its AVX2 kernel when mi_cpu_isa() >= MI_ISA_AVX2 (x86-64) or
 * to its NEON kernel when mi_cpu_isa() >= MI_ISA_NEON (aarch64); the *_ref functions are the spec
 * (tests/test_ops.c and tests/test_ops2.c compare both with PyTorch, and the kernels with them). */
#ifndef MI_ACT_H
#define MI_ACT_H

#include "ops/tensor.h"

/* torch.relu: y = x < 0 ? 0 : x (NaN stays NaN, as in torch).  x, y: (n) */
void mi_relu(float *y, const float *x, int64_t n);
void mi_relu_(mi_tensor *x);                          /* in place on a contiguous tensor */

/* torch.nn.functional.prelu: y = x > 0 ? x : slope[c]*x over dim 1.  x, y: (N, C, inner);
 * slope: (C), or (1) when nslope == 1 (one shared slope, nn.PReLU() default). */
void mi_prelu(float *y, const float *x, const float *slope, int64_t nslope, int64_t N, int64_t C,
              int64_t inner);

/* y = prelu(x + r): a residual add and the PReLU after it in one pass (the V-Net stage's
 * out_act(x + residual)); the sum is rounded once, then the select above, so the bits equal
 * mi_add followed by mi_prelu. x, y: (N, C, inner); r: (N, Cr, inner), channel c of y adding
 * channel c % Cr of r (Cr == C: an ordinary residual; Cr < C: the input channels repeated in
 * turn, as the V-Net's first stage adds its input). slope as mi_prelu. y may equal x, not r. */
void mi_add_prelu(float *y, const float *x, const float *r, int64_t Cr, const float *slope,
                  int64_t nslope, int64_t N, int64_t C, int64_t inner);

/* torch.sigmoid: y = 1 / (1 + exp(-x)).  x, y: (n) */
void mi_sigmoid(float *y, const float *x, int64_t n);

/* torch.nn.functional.leaky_relu: y = x > 0 ? x : x*slope (NaN stays NaN).  x, y: (n) */
void mi_leaky_relu(float *y, const float *x, float slope, int64_t n);
/* torch.nn.functional.elu: y = x > 0 ? x : alpha*expm1(x) (NaN stays NaN, -inf gives -alpha).
 * x, y: (n) */
void mi_elu(float *y, const float *x, float alpha, int64_t n);
/* torch.tanh.  x, y: (n) */
void mi_tanh(float *y, const float *x, int64_t n);

/* torch.softmax / log_softmax along the middle dim of x viewed as (outer, dim, inner):
 * dim = C, inner = H*W for softmax over channels of an NCHW map; inner = 1 for logits.
 * Numerically stable (max subtracted first). x, y: (outer, dim, inner) */
void mi_softmax(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner);
void mi_log_softmax(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner);

/* References and kernels, called directly by tests. Same contracts as above. */
void mi_relu_ref(float *y, const float *x, int64_t n);
void mi_prelu_ref(float *y, const float *x, const float *slope, int64_t nslope, int64_t N,
                  int64_t C, int64_t inner);
void mi_add_prelu_ref(float *y, const float *x, const float *r, int64_t Cr, const float *slope,
                      int64_t nslope, int64_t N, int64_t C, int64_t inner);
void mi_sigmoid_ref(float *y, const float *x, int64_t n);                /* mi_expf (ops/mathf.h) */
void mi_leaky_relu_ref(float *y, const float *x, float slope, int64_t n);
void mi_elu_ref(float *y, const float *x, float alpha, int64_t n);     /* mi_expm1f */
void mi_tanh_ref(float *y, const float *x, int64_t n);                   /* mi_tanhf */
void mi_softmax_ref(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner);
void mi_log_softmax_ref(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner);
#if defined(__x86_64__)
void mi_relu_avx2(float *y, const float *x, int64_t n);          /* == mi_relu_ref bit for bit */
void mi_prelu_avx2(float *y, const float *x, const float *slope, int64_t nslope, int64_t N,
                   int64_t C, int64_t inner);                    /* == mi_prelu_ref bit for bit */
void mi_add_prelu_avx2(float *y, const float *x, const float *r, int64_t Cr, const float *slope,
                       int64_t nslope, int64_t N, int64_t C, int64_t inner); /* == the _ref's bits */
/* A polynomial exp and 8-lane sums: within a few ulp of the references, not their bits; the
 * same bits for any thread count. Within 1e-6 absolute of the references on logits up to 1e6
 * and FLT_MAX (worst errors per range in ops/x86/act_avx2.c). There is no AVX-512 activation
 * kernel: at MI_ISA_AVX512 these AVX2 kernels run. */
void mi_sigmoid_avx2(float *y, const float *x, int64_t n);
void mi_softmax_avx2(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner);
void mi_log_softmax_avx2(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner);
void mi_leaky_relu_avx2(float *y, const float *x, float slope, int64_t n);  /* == the _ref's bits */
/* Polynomials (Cephes tanhf; a Taylor expm1 near 0, the exp of softmax below -0.5): within 4 ulp
 * of libm's expm1f / tanhf (tests/test_ops2.c), not their bits; the same bits for any thread
 * count. */
void mi_elu_avx2(float *y, const float *x, float alpha, int64_t n);
void mi_tanh_avx2(float *y, const float *x, int64_t n);
#elif defined(__aarch64__)
/* ops/arm/act_neon.c: the same contracts as the AVX2 kernels above, the same bits where those are
 * the references' bits (relu, prelu, add_prelu, leaky_relu); the exp-based ones take the AVX2
 * polynomials operation for operation (the same lane values), with 4-lane sums: within the
 * bounds the AVX2 ones are held to (1e-6 absolute; 4 ulp for elu and tanh); the same bits for
 * any thread count. */
void mi_relu_neon(float *y, const float *x, int64_t n);
void mi_prelu_neon(float *y, const float *x, const float *slope, int64_t nslope, int64_t N,
                   int64_t C, int64_t inner);
void mi_add_prelu_neon(float *y, const float *x, const float *r, int64_t Cr, const float *slope,
                       int64_t nslope, int64_t N, int64_t C, int64_t inner);
void mi_leaky_relu_neon(float *y, const float *x, float slope, int64_t n);
void mi_sigmoid_neon(float *y, const float *x, int64_t n);
void mi_softmax_neon(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner);
void mi_log_softmax_neon(float *y, const float *x, int64_t outer, int64_t dim, int64_t inner);
void mi_elu_neon(float *y, const float *x, float alpha, int64_t n);
void mi_tanh_neon(float *y, const float *x, int64_t n);
#endif

#endif
