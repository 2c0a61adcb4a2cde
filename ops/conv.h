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
#include "cpu.h"

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
     * wherever the layer allows it (mi_conv_wino_ok). The reference path ignores it. */
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
} mi_conv;

/* A 2-D descriptor: square kernel k, stride s, padding p, dilation 1. */
mi_conv_desc mi_conv2d_desc(int64_t cin, int64_t cout, int64_t k, int64_t s, int64_t p, int64_t groups);
/* A 3-D descriptor: cubic kernel k, stride s, padding p, dilation 1. */
mi_conv_desc mi_conv3d_desc(int64_t cin, int64_t cout, int64_t k, int64_t s, int64_t p, int64_t groups);

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
 * y must not overlap x or residual; workspace is 64-byte aligned, mi_conv_workspace() bytes. */
void      mi_conv_forward(const mi_conv *c, mi_tensor *y, const mi_tensor *x,
                          const mi_tensor *residual, mi_act act, void *workspace);

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

/* ---- Internal to ops/conv*.c and ops/x86/conv_*.c: the packed GEMM behind both layers. ----
 * C[m][q] = sum_k A[m][k] * B[k][q] per group. A is the weight matrix pre-packed in panels of MR
 * rows ([panel][k][MR], zero rows past M); row k of B is a contiguous run of a source buffer from
 * src + koff[k] (the padded, stride-phase-split input: see ops/conv.c). The columns q walk a grid
 * of gd x gh x gw pixels of which od x oh x ow (the corner) are real outputs. */
typedef struct { int64_t off; uint32_t mask; } mi_conv_seg;  /* columns c in mask -> y[off + c] */

typedef struct {
    int64_t      kc;           /* depth of this K block */
    const float *a;            /* [kc][MR] packed weights */
    const float *b;            /* [kc][NR] packed input, 64-byte aligned */
    float       *acc;          /* [MR][NR] partial sums: read unless first, written unless last */
    int          first, last, relu;
    float       *y;            /* output row of the tile's first channel; rows ldy apart */
    const float *res;          /* residual, same layout as y, or NULL */
    int64_t      ldy;
    const float *bias;         /* [mr] or NULL; run_t: [nch] */
    int          nseg;         /* runs of tile columns that are real outputs */
    const mi_conv_seg *seg;
    /* run_t only (channels on lanes): a is [kc][16] pixels, b is [kc][NR] weights; tile row i is
     * pixel i, stored at y[lane*ldy + pix[i]]; nch lanes are real channels */
    const int64_t *pix;
    int          nch;
} mi_conv_ukr_args;

typedef struct {
    int mr, nr, kc, mc;        /* register tile, K block, rows per M chunk (multiple of mr) */
    void (*run)(const mi_conv_ukr_args *a, int mr);  /* mr <= MR valid rows */
    /* B panel: dst[k][0..NR) = src[koff[k] + 0..nr), zeros past nr (the grid's last panel) */
    void (*pack)(float *dst, const float *src, const int64_t *koff, int64_t kc, int nr);
    /* dst[j] = src[j*stride] for j < n, reading src[0..avail) only (the phase planes' rows) */
    void (*strided)(float *dst, const float *src, int64_t n, int64_t stride, int64_t avail);
    /* Channels on the lanes (NULL where the ISA has none): tiles of mr <= MR pixels x NR output
     * channels; pack_t fills dst[k][0..16) with the panel's pixels: lanes in run[r].mask from
     * src + koff[k] + run[r].off + lane, zeros elsewhere. */
    void (*run_t)(const mi_conv_ukr_args *a, int mr);
    void (*pack_t)(float *dst, const float *src, const int64_t *koff, int64_t kc,
                   const mi_conv_seg *run, int nrun);
    /* Winograd F(2x2, 3x3) and F(4x4, 3x3) transforms of one row of tw tiles (the contracts of
     * mi_conv_wino2_in_ref ... below, bit for bit); NULL: those scalar ones. */
    void (*wino2_in)(float *v, int64_t vs, const float *rows, int64_t rowlen, int64_t tw);
    void (*wino2_out)(float *y, const float *res, const float *m, int64_t ms, int64_t tw, int64_t ow,
                      int nrows, float bias, int relu);
    void (*wino4_in)(float *v, int64_t vs, const float *rows, int64_t rowlen, int64_t tw);
    void (*wino4_out)(float *y, const float *res, const float *m, int64_t ms, int64_t tw, int64_t ow,
                      int nrows, float bias, int relu);
} mi_conv_ukr;

/* NULL for MI_ISA_REF and where no fast kernel exists. */
const mi_conv_ukr *mi_conv_ukr_for(mi_isa isa);
#if defined(__x86_64__)
extern const mi_conv_ukr mi_conv_ukr_avx2, mi_conv_ukr_avx512;
#endif

typedef struct {
    int64_t groups, M, K;      /* per group */
    const float *apack;        /* [groups][ceil(M/MR)][K][MR] */
    const float *src;          /* B source; group g starts at src + g*src_gstride */
    int64_t src_gstride;
    const int64_t *koff;       /* [K] */
    int64_t gd, gh, gw;        /* grid of columns (gd == od) */
    int64_t od, oh, ow;        /* real outputs; y rows are od*oh*ow long */
    float *y;                  /* [groups*M][od*oh*ow] */
    const float *res;          /* same layout as y, or NULL */
    const float *bias;         /* [groups*M] or NULL */
    int relu;
    int chan_lanes;            /* apack is for run_t: [groups][ceil(M/NR)][K][NR] */
    /* chan_lanes only, optional: real output (t0, t1, t2) goes to y[c*ldy + ymap[0] + t0*ymap[1]
     * + t1*ymap[2] + t2*ymap[3]] (a transposed convolution's stride phase); ldy 0 means a dense y
     * of od*oh*ow per channel and ymap is ignored. */
    int64_t ldy, ymap[4];
} mi_conv_gemm;

/* Input D, H, W of x (D = 1 for 2-D). */
void mi_conv_spatial_in(const mi_conv_desc *d, const mi_tensor *x, int64_t in[3]);
/* MI_ERR_SHAPE naming the layer unless x is (N, cin, [D,] H, W); then in = its D, H, W. Shared by
 * mi_conv_out_shape and mi_deconv_out_shape. */
mi_status mi_conv_check_input(const mi_conv_desc *d, const char *name, const mi_tensor *x,
                              int64_t in[3]);
/* MI_ERR_ARG naming the layer unless sp, channels, groups, k, stride, pad, dil are valid. */
mi_status mi_conv_check_desc(const mi_conv_desc *d, const char *name);
/* Asserts y, x and residual fit a layer whose out_shape() gave (st, os): our bug if not. */
void   mi_conv_check_io(mi_status st, const int64_t *os, const mi_tensor *y, const mi_tensor *x,
                        const mi_tensor *res);
int    mi_conv_max_threads(void);   /* mi_thread_limit(): the threads workspaces are sized for */
typedef struct { int64_t ngrid, npan, mpan, mcp, nmc, nj, jper, items; } mi_conv_plan;
/* The split of a GEMM into work items (depends on nthreads; the results do not), and one item
 * run by the calling thread with its own mi_conv_gemm_ws(u, 1) bytes of scratch. */
void   mi_conv_gemm_plan(const mi_conv_ukr *u, const mi_conv_gemm *g, int nthreads, mi_conv_plan *pl);
void   mi_conv_gemm_item(const mi_conv_ukr *u, const mi_conv_gemm *g, const mi_conv_plan *pl,
                         int64_t item, void *thread_ws);
/* Scratch of mi_conv_gemm_run for nthreads threads, and the run itself (threads split the output
 * tiles only, never K, so the bits do not depend on nthreads). */
size_t mi_conv_gemm_ws(const mi_conv_ukr *u, int nthreads);
void   mi_conv_gemm_run(const mi_conv_ukr *u, const mi_conv_gemm *g, void *ws, int nthreads);
/* Packs w ([groups][M][K] row-major) into apack (the mi_conv_gemm layout); with apack NULL only
 * returns the number of floats needed. */
size_t mi_conv_pack_a(const mi_conv_ukr *u, float *apack, const float *w, int64_t groups,
                      int64_t M, int64_t K);
/* The same in run_t's layout: panels of NR output channels. */
size_t mi_conv_pack_a_t(const mi_conv_ukr *u, float *apack, const float *w, int64_t groups,
                        int64_t M, int64_t K);

/* Winograd F(m x m, 3x3), m = 2 or 4 (ops/conv_winograd.c). ok: the layer is 2-D, 3x3, stride 1,
 * dilation 1. pack: the (m+2)^2 transformed weight matrices per group, packed as mi_conv_pack_a(_t)
 * packs G*(m+2)^2 groups (apack NULL: the float count; 0: out of memory). ws: workspace bytes for
 * an H x W input and nt threads. forward: mi_conv_forward's contract for a layer packed by pack
 * (c->wino = m). */
int    mi_conv_wino_ok(const mi_conv_desc *d);
size_t mi_conv_wino_pack(const mi_conv_ukr *u, float *apack, const float *w, const mi_conv_desc *d,
                         int m, int chan_lanes);
size_t mi_conv_wino_ws(const mi_conv_ukr *u, const mi_conv_desc *d, int m, int64_t H, int64_t W,
                       int nt);
void   mi_conv_wino_forward(const mi_conv *c, const mi_conv_ukr *u, mi_tensor *y, const mi_tensor *x,
                            const mi_tensor *res, mi_act act, void *workspace);
/* Input transform of a row of tw tiles: rows holds the m+2 zero-padded input rows the tiles span
 * (rowlen floats apart, each readable up to MI_WINO_ROWLEN(tw) floats; tile q starts at column
 * m*q); writes point pt of V = B^T d B of tile q to v[pt*vs + q]. */
#define MI_WINO_ROWLEN(tw) ((((tw) + 15) / 16 * 16) * 4 + 64)
void   mi_conv_wino2_in_ref(float *v, int64_t vs, const float *rows, int64_t rowlen, int64_t tw);
void   mi_conv_wino4_in_ref(float *v, int64_t vs, const float *rows, int64_t rowlen, int64_t tw);
/* Output transform of a row of tw tiles: m[pt*ms + q] is point pt of tile q; writes A^T m A +
 * bias (+ res, the same layout as y), then max(., 0) if relu, to the nrows (1..m) output rows
 * y[r*ow + m*q + k] that exist (m*q + k < ow). */
void   mi_conv_wino2_out_ref(float *y, const float *res, const float *m, int64_t ms, int64_t tw,
                             int64_t ow, int nrows, float bias, int relu);
void   mi_conv_wino4_out_ref(float *y, const float *res, const float *m, int64_t ms, int64_t tw,
                             int64_t ow, int nrows, float bias, int relu);

#endif
