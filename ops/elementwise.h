/* ops/elementwise.h - add, mul (same shape, per-channel or per-pixel broadcast), add+ReLU fused
 * (the ResNet residual), concatenation along any dim (torch.cat), argmax over channels.
 *
 * Float32, contiguous. y may equal an input everywhere except in concat. Every AVX2 and NEON
 * kernel does the reference's one rounding per element, so fast and reference paths are the
 * same bits. */
#ifndef MI_ELEMENTWISE_H
#define MI_ELEMENTWISE_H

#include "ops/tensor.h"

/* y = a + b, y = a * b, y = relu(a + b) (relu as torch: s < 0 ? 0 : s).  a, b, y: (n) */
void mi_add(float *y, const float *a, const float *b, int64_t n);
void mi_mul(float *y, const float *a, const float *b, int64_t n);
void mi_add_relu(float *y, const float *a, const float *b, int64_t n);
/* In place on tensors of the same shape: y += x;  y = relu(y + x). */
void mi_add_(mi_tensor *y, const mi_tensor *x);
void mi_add_relu_(mi_tensor *y, const mi_tensor *x);

/* Broadcast over dim 1, torch's x + b.view(1, C, 1, ...) and x * s.view(1, C, 1, ...).
 * x, y: (N, C, inner)  b, s: (C) */
void mi_add_channel(float *y, const float *x, const float *b, int64_t N, int64_t C, int64_t inner);
void mi_mul_channel(float *y, const float *x, const float *s, int64_t N, int64_t C, int64_t inner);

/* y[n,c,i] = x[n,c,i] * w[n,i]: a one-channel map broadcast over the channels (spatial
 * attention, torch's x * w.view(N, 1, H, W)).  x, y: (N, C, inner)  w: (N, inner). y may equal x. */
void mi_mul_spatial(float *y, const float *x, const float *w, int64_t N, int64_t C, int64_t inner);

/* torch.argmax(x, dim=1): idx[n,i] = the first channel holding the maximum of x[n,:,i]; a NaN
 * counts as the maximum (the first NaN wins), as in torch; -0 and +0 tie (the first wins).
 * x: (N, C, inner), C >= 1  idx: (N, inner) */
void mi_argmax_channels(int32_t *idx, const float *x, int64_t N, int64_t C, int64_t inner);

/* torch.cat along the middle dim of (outer, size_i, inner) views:
 * xs[i]: (outer, sizes[i], inner)  y: (outer, sum(sizes), inner), not aliasing any xs[i]. */
void mi_concat(float *y, const float *const *xs, const int64_t *sizes, int nx, int64_t outer,
               int64_t inner);
/* Tensor form: out = shape of torch.cat(xs, dim). MI_ERR_SHAPE (naming the tensor, expected vs
 * found) when ranks or the other dims differ; MI_ERR_ARG for a bad dim or nx < 1. */
mi_status mi_concat_out_shape(int64_t out[MI_MAX_DIMS], const mi_tensor *const *xs, int nx, int dim);
void      mi_concat_t(mi_tensor *y, const mi_tensor *const *xs, int nx, int dim);

void mi_add_ref(float *y, const float *a, const float *b, int64_t n);
void mi_mul_ref(float *y, const float *a, const float *b, int64_t n);
void mi_add_relu_ref(float *y, const float *a, const float *b, int64_t n);
void mi_add_channel_ref(float *y, const float *x, const float *b, int64_t N, int64_t C, int64_t inner);
void mi_mul_channel_ref(float *y, const float *x, const float *s, int64_t N, int64_t C, int64_t inner);
void mi_mul_spatial_ref(float *y, const float *x, const float *w, int64_t N, int64_t C, int64_t inner);
void mi_argmax_channels_ref(int32_t *idx, const float *x, int64_t N, int64_t C, int64_t inner);
#if defined(__x86_64__)
void mi_add_avx2(float *y, const float *a, const float *b, int64_t n);
void mi_mul_avx2(float *y, const float *a, const float *b, int64_t n);
void mi_add_relu_avx2(float *y, const float *a, const float *b, int64_t n);
void mi_add_channel_avx2(float *y, const float *x, const float *b, int64_t N, int64_t C, int64_t inner);
void mi_mul_channel_avx2(float *y, const float *x, const float *s, int64_t N, int64_t C, int64_t inner);
void mi_mul_spatial_avx2(float *y, const float *x, const float *w, int64_t N, int64_t C, int64_t inner);
void mi_argmax_channels_avx2(int32_t *idx, const float *x, int64_t N, int64_t C, int64_t inner);
#elif defined(__aarch64__)
/* ops/arm/elementwise_neon.c: the references' bits, as the AVX2 ones */
void mi_add_neon(float *y, const float *a, const float *b, int64_t n);
void mi_mul_neon(float *y, const float *a, const float *b, int64_t n);
void mi_add_relu_neon(float *y, const float *a, const float *b, int64_t n);
void mi_add_channel_neon(float *y, const float *x, const float *b, int64_t N, int64_t C, int64_t inner);
void mi_mul_channel_neon(float *y, const float *x, const float *s, int64_t N, int64_t C, int64_t inner);
void mi_mul_spatial_neon(float *y, const float *x, const float *w, int64_t N, int64_t C, int64_t inner);
void mi_argmax_channels_neon(int32_t *idx, const float *x, int64_t N, int64_t C, int64_t inner);
#endif

#endif
