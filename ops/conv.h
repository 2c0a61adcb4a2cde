/* ops/conv.h - convolution 2-D / 3-D (any kernel, stride, padding, dilation, groups, bias) with a
 * fused epilogue y = act(conv(x) + bias + residual), and its transposed form.
 *
 * Layout: activations NCHW / NCDHW (see the comment at the top of ops/conv.c for why).
 * Weights are PyTorch's [Cout, Cin/groups, kD, kH, kW]; mi_conv_init copies and pre-packs them for
 * the ISA chosen at start-up, so a forward pass only reads. BatchNorm is folded before init with
 * mi_fold_batchnorm (float64). */
#ifndef MI_CONV_H
#define MI_CONV_H

#include "tensor.h"

typedef enum { MI_ACT_NONE = 0, MI_ACT_RELU } mi_act;

/* Spatial parameters are in D, H, W order; a 2-D convolution has sp = 2 and uses [1], [2]
 * (index 0 is k = 1, stride = 1, pad = 0, dil = 1). */
typedef struct {
    int     sp;                         /* 2 or 3 spatial dimensions */
    int64_t cin, cout, groups;
    int64_t k[3], stride[3], pad[3], dil[3];
} mi_conv_desc;

typedef struct {
    mi_conv_desc d;
    char   name[64];
    float *weight;   /* [cout, cin/groups, k...], owned */
    float *bias;     /* [cout], owned; zeros when the layer has none */
    void  *packed;   /* ISA-specific packed weights, owned (NULL: reference path) */
    int    path;     /* which kernel forward() uses; set by init from shape and ISA */
} mi_conv;

/* A 2-D descriptor: square kernel k, stride s, padding p, dilation 1. */
mi_conv_desc mi_conv2d_desc(int64_t cin, int64_t cout, int64_t k, int64_t s, int64_t p, int64_t groups);

mi_status mi_conv_init(mi_conv *c, const mi_conv_desc *d, const float *weight, const float *bias,
                       const char *name);
void      mi_conv_free(mi_conv *c);

/* Output shape for an input shape (N, C, [D,] H, W); MI_ERR_SHAPE when C or sizes do not fit. */
mi_status mi_conv_out_shape(const mi_conv *c, const mi_tensor *x, int64_t out_shape[MI_MAX_DIMS]);
/* Bytes of scratch forward() needs for this input size (all threads together). */
size_t    mi_conv_workspace(const mi_conv *c, const mi_tensor *x);
/* y = act(conv(x) + bias [+ residual]); y and residual have the output shape. No allocation. */
void      mi_conv_forward(const mi_conv *c, mi_tensor *y, const mi_tensor *x,
                          const mi_tensor *residual, mi_act act, void *workspace);

/* The scalar reference: the spec every fast path is tested against. Same contract. */
void      mi_conv_forward_ref(const mi_conv *c, mi_tensor *y, const mi_tensor *x,
                              const mi_tensor *residual, mi_act act);

/* w'[o] = w[o] * gamma[o]/sqrt(var[o]+eps); b'[o] = (b[o]-mean[o]) * gamma[o]/sqrt(var[o]+eps) + beta[o],
 * computed in float64 and rounded once. w: [cout, per_out] in place; b: [cout] in place (b may
 * start as zeros). */
void      mi_fold_batchnorm(float *w, float *b, const float *gamma, const float *beta,
                            const float *mean, const float *var, double eps, int64_t cout,
                            int64_t per_out);

#endif
