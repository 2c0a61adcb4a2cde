/* ops/pool.h - max / average pooling (torch.nn.functional.max_pool{2,3}d, avg_pool{2,3}d),
 * global and adaptive average pooling (adaptive_avg_pool{2,3}d), 2-D and 3-D.
 *
 * Activations are contiguous (N, C, H, W) or (N, C, D, H, W). Each output plane is computed by
 * one thread in torch's own order, so results are the same bits for any thread count. */
#ifndef MI_POOL_H
#define MI_POOL_H

#include "ops/tensor.h"

/* Spatial parameters in D, H, W order; a 2-D pool has sp = 2 and uses [1], [2] only (index 0 is
 * ignored), like mi_conv_desc. dil must be 1 for average pooling (torch's has no dilation).
 * ceil_mode and count_include_pad mean what they mean in torch (count_include_pad: avg only). */
typedef struct {
    int     sp;                         /* 2 or 3 spatial dimensions */
    int64_t k[3], stride[3], pad[3], dil[3];
    bool    ceil_mode, count_include_pad;
} mi_pool_desc;

/* A 2-D descriptor with torch's defaults: square kernel k, stride s, padding p, dilation 1,
 * floor mode, count_include_pad = true (e.g. ResNet's stem: mi_pool2d_desc(3, 2, 1)). */
mi_pool_desc mi_pool2d_desc(int64_t k, int64_t s, int64_t p);

/* Output shape (N, C, [Do,] Ho, Wo) for x, with torch's formula (floor or ceil mode, where in ceil
 * mode the last window must start inside the input or left padding). MI_ERR_ARG for a bad
 * descriptor (k, stride, dil < 1, pad < 0 or pad > k/2, as torch checks); MI_ERR_SHAPE when x
 * does not have sp+2 dims or the output would be empty. */
mi_status mi_pool_out_shape(const mi_pool_desc *d, const mi_tensor *x, int64_t out[MI_MAX_DIMS]);

/* y has mi_pool_out_shape's shape. Max: padding never wins (as torch, -inf), NaN propagates. */
void mi_max_pool(mi_tensor *y, const mi_tensor *x, const mi_pool_desc *d);
/* Average: divisor is the window clipped to input+padding (count_include_pad) or to the input. */
void mi_avg_pool(mi_tensor *y, const mi_tensor *x, const mi_pool_desc *d);

/* y: (N, C, 1, 1[, 1]) = mean of each plane of x (sum in index order, divided once). */
void mi_global_avg_pool(mi_tensor *y, const mi_tensor *x);
/* Output size taken from y's shape; window [floor(o*in/out), ceil((o+1)*in/out)) per dim,
 * as torch's adaptive_avg_pool, divided by each window extent in turn like torch does. */
void mi_adaptive_avg_pool(mi_tensor *y, const mi_tensor *x);

void mi_max_pool_ref(mi_tensor *y, const mi_tensor *x, const mi_pool_desc *d);
/* What the 2-D SIMD kernels below assume of their caller: y 4-D with mi_pool_out_shape's shape,
 * x and y contiguous (asserted). */
void mi_max_pool_check_2d(const mi_tensor *y, const mi_tensor *x, const mi_pool_desc *d);
#if defined(__x86_64__)
/* 2-D, dil 1, stride 1 or 2 vectorized over output columns; other shapes call the reference.
 * Equals mi_max_pool_ref bit for bit (NaN included). */
void mi_max_pool_avx2(mi_tensor *y, const mi_tensor *x, const mi_pool_desc *d);
/* ResNet's stem pool alone (2-D, 3x3, stride 2, padding 1, dilation 1, either rounding mode) in
 * AVX-512 (ops/x86/pool_avx512.c), mi_max_pool_ref's bits; returns 0 and touches nothing for any
 * other descriptor. */
int mi_max_pool_avx512(mi_tensor *y, const mi_tensor *x, const mi_pool_desc *d);
#elif defined(__aarch64__)
/* The same cover and contract in 4-lane NEON (ops/arm/pool_neon.c): mi_max_pool_ref's bits. */
void mi_max_pool_neon(mi_tensor *y, const mi_tensor *x, const mi_pool_desc *d);
#endif

#endif
