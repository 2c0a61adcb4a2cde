/* ops/conv.h - convolution 2-D / 3-D (any kernel, stride, padding, dilation, groups, bias) with a
 * fused epilogue y = act(conv(x) + bias + residual), and its transposed form. Depthwise 2-D
 * layers (groups == cin == cout) have a fast path of their own (ops/conv_dw.c) that gives the
 * reference's bits; the others run the packed GEMM (or Winograd) within a stated tolerance.
 *
 * Layout: activations NCHW / NCDHW (see the comment at the top of ops/conv.c for why).
 * Weights are PyTorch's [Cout, Cin/groups, kD, kH, kW]; mi_conv_init copies and pre-packs them for
 * the ISA chosen at start-up, so a forward pass only reads. BatchNorm is folded before init with
 * mi_fold_batchnorm (float64).
 * This is all a network needs; the packed GEMM behind the fast paths and what the convolution
 * files share are internal to ops/ (ops/gemm.h, ops/conv_internal.h). */
#ifndef MI_CONV_H
#define MI_CONV_H

#include "ops/tensor.h"
#include "ops/cpu.h"

typedef enum { MI_ACT_NONE = 0, MI_ACT_RELU } mi_act;

/* Spatial parameters are in D, H, W order; a 2-D convolution has sp = 2 and uses [1], [2]
 * (index 0 is k = 1, stride = 1, pad = 0, dil = 1). */
typedef struct {
    int     sp;                         /* 2 or 3 spatial dimensions */
    int64_t cin, cout, groups;
    int64_t k[3], stride[3], pad[3], dil[3];
    /* Optional, for speed only: the input D, H, W the layer will see (0: unknown), from which
     * init picks the GEMM orientation (pixels or output channels on the vector lanes; see
     * ops/conv.c). Any input size still works. lanes forces it: 0 auto, 1 pixels, 2 channels. */
    int64_t in_size[3];
    int     lanes;
    /* The algorithm of the fast path: MI_CONV_AUTO (Winograd for 3x3 stride-1 2-D layers where
     * in_size says it pays, ops/conv.c), MI_CONV_DIRECT, or Winograd F(2x2, 3x3) / F(4x4, 3x3)
     * wherever the layer allows it (2-D, 3x3, stride 1, dilation 1); the reference ignores it. */
    int     algo;
} mi_conv_desc;

enum { MI_CONV_AUTO = 0, MI_CONV_DIRECT, MI_CONV_WINOGRAD2, MI_CONV_WINOGRAD4 };

typedef struct {
    mi_conv_desc d;
    char   name[64];
    float *weight;   /* [cout, cin/groups, k...], owned */
    float *bias;     /* [cout], owned; zeros when the layer has none */
    void  *packed;   /* ISA-specific packed weights, owned (NULL: reference path) */
    int    path;     /* which kernel forward() uses; set by init from shape and ISA (an mi_isa) */
    int    chan_lanes; /* 1: output channels on the vector lanes (packed for run_t) */
    int    wino;       /* m of Winograd F(m x m, 3x3) (2 or 4; packed holds the transformed
                        * weights), 0: direct */
    int    dw;         /* 1: depthwise 2-D (groups == cin == cout) on its own kernels
                        * (ops/conv_dw.c; packed holds a copy of the weights), not the GEMM */
} mi_conv;

/* A 2-D descriptor: square kernel k, stride s, padding p, dilation 1. */
mi_conv_desc mi_conv2d_desc(int64_t cin, int64_t cout, int64_t k, int64_t s, int64_t p, int64_t groups);
/* A 3-D descriptor: cubic kernel k, stride s, padding p, dilation 1. */
mi_conv_desc mi_conv3d_desc(int64_t cin, int64_t cout, int64_t k, int64_t s, int64_t p, int64_t groups);

/* MI_ERR_ARG naming the layer unless sp, channels, groups, k, stride, pad, dil are valid (init
 * checks it too; a loader calls it before reading weights whose shape follows from d). */
mi_status mi_conv_check_desc(const mi_conv_desc *d, const char *name);

mi_status mi_conv_init(mi_conv *c, const mi_conv_desc *d, const float *weight, const float *bias,
                       const char *name);
/* The same for a given ISA (capped at mi_cpu_isa()): lets one process test every kernel. */
mi_status mi_conv_init_isa(mi_conv *c, const mi_conv_desc *d, const float *weight, const float *bias,
                           const char *name, mi_isa isa);
void      mi_conv_free(mi_conv *c);
/* Optional, at load, for speed: tells the layer the input shape it will see (as in_size does at
 * init) and repacks its weights if another GEMM orientation suits that size better. Checks the
 * shape like mi_conv_out_shape. Call it before sizing the workspace. */
mi_status mi_conv_prepare(mi_conv *c, const mi_tensor *x);
/* Optional, after the last mi_conv_prepare: frees the unpacked copy of the weights when the fast
 * path holds packed ones, halving a network's weight memory. The layer then keeps its packing and
 * mi_conv_forward_ref may no longer be called on it. No effect on the reference path. */
void      mi_conv_release_source(mi_conv *c);

/* Output shape for an input shape (N, C, [D,] H, W); MI_ERR_SHAPE when C or sizes do not fit. */
mi_status mi_conv_out_shape(const mi_conv *c, const mi_tensor *x, int64_t out_shape[MI_MAX_DIMS]);
/* Bytes of scratch forward() needs for this input size, all threads together (sized for
 * mi_thread_limit() threads, which mi_set_threads never exceeds). 0 on the reference path. */
size_t    mi_conv_workspace(const mi_conv *c, const mi_tensor *x);
/* y = act(conv(x) + bias [+ residual]); y and residual have the output shape. No allocation.
 * y must not overlap x; residual may be y itself (every path reads an output's residual before it
 * writes that output, and no other output reads it: a network adds a residual it no longer needs
 * in place, sparing the traffic of a second map), or lie apart from it. workspace is 64-byte
 * aligned, mi_conv_workspace() bytes. */
void      mi_conv_forward(const mi_conv *c, mi_tensor *y, const mi_tensor *x,
                          const mi_tensor *residual, mi_act act, void *workspace);

/* A 1x1 stride-1 layer followed by a 3x3 stride-2 one (a bottleneck's first two convolutions):
 * the first writes its map inside a padded one, yp (N, C, H + 1, W + 1: a zero row on top and a
 * zero column on the left, which it writes too), and the second reads yp in place, pixels 2
 * floats apart (a panel whose pixels lie on more than one output row packed straight from yp),
 * instead of copying its input into stride-phase planes; an even map never reads the padding at
 * its bottom or right. The same values meet the same FMAs in the same order: the bits
 * of mi_conv_forward. _ok: the fast path can take the layer (the second with input x, H x W);
 * workspace: mi_conv_workspace() for the unpadded input. */
int       mi_conv_padded_out_ok(const mi_conv *c);
int       mi_conv_padded_in_ok(const mi_conv *c, const mi_tensor *x);
void      mi_conv_forward_padded_out(const mi_conv *c, mi_tensor *yp, const mi_tensor *x, mi_act act,
                                     void *workspace);
void      mi_conv_forward_padded_in(const mi_conv *c, mi_tensor *y, const mi_tensor *xp, mi_act act,
                                    void *workspace);

/* The scalar reference: the spec every fast path is tested against. Same contract. */
void      mi_conv_forward_ref(const mi_conv *c, mi_tensor *y, const mi_tensor *x,
                              const mi_tensor *residual, mi_act act);

/* Transposed convolution (torch.nn.ConvTranspose2d/3d): the same descriptor (stride, pad, dil,
 * groups as torch names them) plus output_padding; weights are PyTorch's [cin, cout/groups, k...].
 * Output size per dimension: (in - 1)*stride - 2*pad + dil*(k - 1) + out_pad + 1. The fast path
 * splits the output into its stride phases; each phase is a stride-1 correlation over the input
 * run by the same packed GEMM as mi_conv (ops/conv_transpose.c). */
typedef struct {
    mi_conv_desc d;
    int64_t out_pad[3];                 /* D, H, W; each < stride or < dil, as torch demands */
} mi_deconv_desc;

typedef struct {
    mi_deconv_desc d;
    char   name[64];
    float *weight;   /* [cin, cout/groups, k...], owned */
    float *bias;     /* [cout], owned; zeros when the layer has none */
    void  *packed;   /* packed weights of every output phase, owned (NULL: reference path) */
    int    path;     /* mi_isa of the kernel forward() uses */
    int    chan_lanes; /* 1: packed for run_t, each phase written straight into y */
} mi_deconv;

/* 2-D / 3-D descriptors: square/cubic kernel k, stride s, padding p, output padding op, dil 1. */
mi_deconv_desc mi_deconv2d_desc(int64_t cin, int64_t cout, int64_t k, int64_t s, int64_t p,
                                int64_t op, int64_t groups);
mi_deconv_desc mi_deconv3d_desc(int64_t cin, int64_t cout, int64_t k, int64_t s, int64_t p,
                                int64_t op, int64_t groups);
mi_status mi_deconv_init(mi_deconv *c, const mi_deconv_desc *d, const float *weight,
                         const float *bias, const char *name);
mi_status mi_deconv_init_isa(mi_deconv *c, const mi_deconv_desc *d, const float *weight,
                             const float *bias, const char *name, mi_isa isa);
void      mi_deconv_free(mi_deconv *c);
mi_status mi_deconv_out_shape(const mi_deconv *c, const mi_tensor *x, int64_t out_shape[MI_MAX_DIMS]);
size_t    mi_deconv_workspace(const mi_deconv *c, const mi_tensor *x);
void      mi_deconv_forward(const mi_deconv *c, mi_tensor *y, const mi_tensor *x,
                            const mi_tensor *residual, mi_act act, void *workspace);
void      mi_deconv_forward_ref(const mi_deconv *c, mi_tensor *y, const mi_tensor *x,
                                const mi_tensor *residual, mi_act act);

/* w'[o] = w[o] * gamma[o]/sqrt(var[o]+eps); b'[o] = (b[o]-mean[o]) * gamma[o]/sqrt(var[o]+eps) + beta[o],
 * computed in float64 and rounded once. w: [cout, per_out] in place; b: [cout] in place (b may
 * start as zeros). */
void      mi_fold_batchnorm(float *w, float *b, const float *gamma, const float *beta,
                            const float *mean, const float *var, double eps, int64_t cout,
                            int64_t per_out);

#endif
