/* ops/conv_internal.h - what ops/conv.c, ops/conv_transpose.c, ops/conv_winograd.c and
 * ops/conv_dw.c share beyond the packed GEMM (ops/gemm.h): the input and descriptor checks, the
 * thread count workspaces are sized for, the depthwise path's entry points and row kernels, and
 * the Winograd path's entry points with its scalar transforms (the contracts the SIMD ones of the
 * kernel table meet bit for bit). Internal to ops/: a network
 * includes ops/conv.h only; tests/test_conv.c includes this to pin the transforms.
 *
 * Apart from ops/gemm.h because these speak of layers (mi_conv_desc, mi_conv, tensors), which the
 * GEMM never sees. */
#ifndef MI_CONV_INTERNAL_H
#define MI_CONV_INTERNAL_H

#include "ops/conv.h"
#include "ops/gemm.h"

/* Input D, H, W of x (D = 1 for 2-D). */
void mi_conv_spatial_in(const mi_conv_desc *d, const mi_tensor *x, int64_t in[3]);
/* MI_ERR_SHAPE naming the layer unless x is (N, cin, [D,] H, W); then in = its D, H, W. Shared by
 * mi_conv_out_shape and mi_deconv_out_shape. */
mi_status mi_conv_check_input(const mi_conv_desc *d, const char *name, const mi_tensor *x,
                              int64_t in[3]);
/* Asserts y, x and residual fit a layer whose out_shape() gave (st, os): our bug if not. With
 * res_is_y_ok the residual may be y itself (mi_conv_forward's contract). */
void   mi_conv_check_io(mi_status st, const int64_t *os, const mi_tensor *y, const mi_tensor *x,
                        const mi_tensor *res, bool res_is_y_ok);
int    mi_conv_max_threads(void);   /* mi_thread_limit(): the threads workspaces are sized for */

/* Depthwise 2-D (ops/conv_dw.c): ok when groups == cin == cout and sp == 2; forward:
 * mi_conv_forward's contract for a layer with c->dw set (c->packed: the [C][kh][kw] weights).
 * One output row of one plane is an mi_dw_row. Output column j is, from 0.0f, for kh in
 * [kh_lo, kh_hi) then kw < k in order, skipping the taps whose input column j*s - pw + kw*d lies
 * outside [0, W), sum = sum + x[ih0 + kh*dh][j*s - pw + kw*d] * w[kh*k + kw] (a multiply, then an
 * add), then + bias, + res[j] (res may be NULL), then max(., 0) if relu: the bits of
 * mi_conv_forward_ref. A row kernel writes the row's ow columns; a column kernel the columns
 * [j0, j0 + n), where the interior one may assume that no tap is skipped (columns in [c0, c1)). */
typedef struct {
    const float *x;                /* the input plane, rows of W floats */
    int64_t W, ih0, kh_lo, kh_hi, dh;   /* tap kh reads input row ih0 + kh*dh; [kh_lo, kh_hi) exist */
    const float *w;                /* the plane's filter, [kh][k] */
    int64_t k, s, pw, d;           /* kernel width, stride, left padding, dilation along W */
    int64_t ow, c0, c1;            /* output columns; [c0, c1): every tap inside the row */
    float bias;
    int relu;
} mi_dw_row;
typedef void (*mi_dw_row_fn)(const mi_dw_row *r, float *y, const float *res);
int    mi_conv_dw_ok(const mi_conv_desc *d);
void   mi_conv_dw_forward(const mi_conv *c, mi_tensor *y, const mi_tensor *x, const mi_tensor *res,
                          mi_act act);
void   mi_conv_dw_row_portable(const mi_dw_row *r, float *y, const float *res);
void   mi_conv_dw_interior_portable(const mi_dw_row *r, float *y, const float *res, int64_t j0, int64_t n);
void   mi_conv_dw_edge_portable(const mi_dw_row *r, float *y, const float *res, int64_t j0, int64_t n);
#if defined(__x86_64__)
/* stride 1 and 2 in 8-lane vectors; other strides, and edges it cannot window, the portable ones */
void   mi_conv_dw_row_avx2(const mi_dw_row *r, float *y, const float *res);
#elif defined(__aarch64__)
/* stride 1 and 2 in 4-lane NEON vectors (ops/arm/conv_dw_neon.c); the rest the portable ones */
void   mi_conv_dw_row_neon(const mi_dw_row *r, float *y, const float *res);
#endif

/* Winograd F(m x m, 3x3), m = 2 or 4 (ops/conv_winograd.c). ok: the layer is 2-D, 3x3, stride 1,
 * dilation 1. pack: the (m+2)^2 transformed weight matrices per group, packed as mi_gemm_pack_a(_t)
 * packs G*(m+2)^2 groups (apack NULL: the float count; 0: out of memory). ws: workspace bytes for
 * an H x W input and nt threads. forward: mi_conv_forward's contract for a layer packed by pack
 * (c->wino = m). */
int    mi_conv_wino_ok(const mi_conv_desc *d);
size_t mi_conv_wino_pack(const mi_gemm_ukr *u, float *apack, const float *w, const mi_conv_desc *d,
                         int m, int chan_lanes);
/* Tiles of one block (the GEMM's columns per work item) for an H x W input: conv.c picks the
 * GEMM orientation for it. */
int64_t mi_conv_wino_block_tiles(const mi_conv_desc *d, int m, int64_t H, int64_t W);
/* Blocks per image that forward runs for a batch of N H x W inputs at nt threads */
int64_t mi_conv_wino_blocks(const mi_conv *c, int64_t N, int64_t H, int64_t W, int nt);
size_t mi_conv_wino_ws(const mi_gemm_ukr *u, const mi_conv_desc *d, int m, int64_t H, int64_t W,
                       int nt);
void   mi_conv_wino_forward(const mi_conv *c, const mi_gemm_ukr *u, mi_tensor *y, const mi_tensor *x,
                            const mi_tensor *res, mi_act act, void *workspace);
/* Input transform of a row of tw tiles: rows holds the m+2 zero-padded input rows the tiles span
 * (rowlen floats apart, each readable up to MI_WINO_ROWLEN(tw) floats; tile q starts at column
 * m*q); writes point pt of V = B^T d B of tile q to v[pt*vs + q]. */
#define MI_WINO_ROWLEN(tw) ((((tw) + 15) / 16 * 16) * 4 + 64)
void   mi_conv_wino2_in_ref(float *v, int64_t vs, const float *rows, int64_t rowlen, int64_t tw);
void   mi_conv_wino4_in_ref(float *v, int64_t vs, const float *rows, int64_t rowlen, int64_t tw);
/* Output transform of a row of tw tiles: m[pt*ms + q] is point pt of tile q; writes A^T m A +
 * bias (+ res, the same layout as y), then max(., 0) if relu, to the nrows (1..m) output rows
 * y[r*ldy + m*q + k] that exist (m*q + k < ow, with m*(tw-1) < ow <= m*tw; ldy >= ow, more where
 * the tiles are part of a row). */
void   mi_conv_wino2_out_ref(float *y, const float *res, const float *m, int64_t ms, int64_t tw,
                             int64_t ow, int64_t ldy, int nrows, float bias, int relu);
void   mi_conv_wino4_out_ref(float *y, const float *res, const float *m, int64_t ms, int64_t tw,
                             int64_t ow, int64_t ldy, int nrows, float bias, int relu);

#endif
