/* ops/conv.c - convolution 2-D / 3-D: the scalar reference (the spec), and the fast path that
 * turns a layer into the packed GEMM of ops/gemm.c (micro-kernels in ops/x86/conv_avx2.c and
 * conv_avx512.c), with the layout and algorithm chosen per layer.
 *
 * Layout decision: activations stay NCHW (NCDHW) at the API and inside the kernels.
 *   The GEMM is C[cout][pixel] = W[cout][cin*k] x B[cin*k][pixel]. In NCHW a row of B for one
 *   (cin, tap) is a contiguous run of the (padded) input, so packing B is a 128-byte copy per row,
 *   never a gather, and one output channel's pixels are contiguous, so a tile with pixels on the
 *   vector lanes stores whole vectors into y and reads the residual the same way. Pixels on the
 *   lanes waste lanes where a map is small (7x7 = 49 pixels fill 64 lanes); there both SIMD paths
 *   turn the tile around (channels on the lanes, pixels broadcast, transposed stores), which is
 *   what NHWC would give, without a layout change at every boundary with the other ops (pooling,
 *   resize, the pipelines' NCHW tensors, the PyTorch fixtures). mi_conv_desc.in_size or
 *   mi_conv_prepare() lets init choose per layer (choose() below).
 *   Measured here (bench/bench_conv.c; 2 cores of a Sapphire Rapids shared with other jobs, best
 *   of repeated runs): FMA peak 93-96 GFLOP/s per core with AVX2, 175-178 with AVX-512. The
 *   micro-kernels alone, data in L1: 90 % (AVX2 6x16), 97 % (AVX-512 14x32). All 53 ResNet-50
 *   convolutions at 1 thread: 57-58 ms = 140-144 GFLOP/s = 79-81 % of the AVX-512 peak (3x3 80 %,
 *   1x1 79 %, stem 77 %); AVX2 alone 111 ms = 74 GFLOP/s = 77 % of its peak (3x3 77 %). The
 *   channels-on-lanes tiles cut the 7x7-map layers by 15-20 % (AVX2: up to 1.6x) and the 14x14
 *   3x3 layers by 8 %. What is left: packing and phase planes (~10 % of the perf samples), tile
 *   epilogues, and the memory traffic of the K = 64 1x1 layers at 56x56.
 *   Padding and stride: the input is copied once per forward into zero-padded planes, one per
 *   stride phase (space-to-depth: plane (a,b) holds x[i*s+a][j*s+b]), so every convolution becomes
 *   a stride-1 correlation on planes of width P = OW + (k-1)*dil/s. The GEMM then runs over a grid
 *   of OH x P columns (P - OW garbage columns per row, 2-4 % extra work for ResNet-50 shapes at 56,
 *   28 and 112 wide) whose B rows are contiguous; the micro-kernel's masked stores drop the
 *   garbage columns (channels-on-lanes tiles enumerate real pixels only). A 1x1 stride-1
 *   unpadded convolution reads x itself (no copy), and so does a 3x3 stride-2 layer whose input a
 *   1x1 layer wrote padded (mi_conv_forward_padded_out / _in: a bottleneck's first two layers). A
 *   2-D stride-1 padded layer copies its padded input per block of output rows instead, each
 *   block by one thread (conv_row_blocks()); a batch of several images of the other layers is
 *   split by image (conv_forward_gemm()).
 *
 *   3x3 stride-1 layers: once the input size is known (in_size or mi_conv_prepare), choose()
 *   below sends them to Winograd F(4x4, 3x3) or F(2x2, 3x3) (ops/conv_winograd.c), whose
 *   transformed-domain products are the same packed GEMM with the tile points as groups. In
 *   ResNet-50 at 2 threads it cut the 3x3 layers from 13.8-14.1 to 10.4-10.6 ms (bench_conv) and
 *   the forward pass by ~4-5 ms; mi_conv_desc.algo forces either algorithm (the tests run both).
 *
 * Depthwise 2-D layers (groups == cin == cout) skip the GEMM, whose tiles would have one row per
 * group: ops/conv_dw.c runs them row by row on its own kernels, the reference's bits.
 *
 * Determinism: the GEMM splits output tiles only, never K (ops/gemm.c), and the phase planes are
 * copies, so the bits are the same for any thread count.
 * Tests: tests/test_conv.c against tests/ref_conv.py (torch.nn.functional.conv2d/conv3d). */
#include "ops/conv_internal.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

#define MI_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MI_MAX(a, b) ((a) > (b) ? (a) : (b))
#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))
#define ROUND64(n) (((n) + 63) / 64 * 64)

mi_conv_desc mi_conv2d_desc(int64_t cin, int64_t cout, int64_t k, int64_t s, int64_t p, int64_t groups) {
    return (mi_conv_desc){ .sp = 2, .cin = cin, .cout = cout, .groups = groups,
                           .k = { 1, k, k }, .stride = { 1, s, s }, .pad = { 0, p, p }, .dil = { 1, 1, 1 } };
}

mi_conv_desc mi_conv3d_desc(int64_t cin, int64_t cout, int64_t k, int64_t s, int64_t p, int64_t groups) {
    return (mi_conv_desc){ .sp = 3, .cin = cin, .cout = cout, .groups = groups,
                           .k = { k, k, k }, .stride = { s, s, s }, .pad = { p, p, p }, .dil = { 1, 1, 1 } };
}

int mi_conv_max_threads(void) { return mi_thread_limit(); }  /* scratch is sized once, at load */

void mi_conv_spatial_in(const mi_conv_desc *d, const mi_tensor *x, int64_t in[3]) {
    in[0] = d->sp == 3 ? x->shape[2] : 1;
    in[1] = x->shape[x->ndim - 2];
    in[2] = x->shape[x->ndim - 1];
}

static int64_t conv_out_len(const mi_conv_desc *d, int i, int64_t in) {
    int64_t span = d->dil[i] * (d->k[i] - 1) + 1;
    return in + 2 * d->pad[i] < span ? 0 : (in + 2 * d->pad[i] - span) / d->stride[i] + 1;
}

/* Shared by mi_conv and mi_deconv: every field positive (pad >= 0), groups divide both. */
mi_status mi_conv_check_desc(const mi_conv_desc *d, const char *name) {
    if (d->sp != 2 && d->sp != 3)
        return MI_FAIL(MI_ERR_ARG, "%s: %d spatial dimensions, expected 2 or 3", name, d->sp);
    if (d->cin <= 0 || d->cout <= 0 || d->groups <= 0 || d->cin % d->groups || d->cout % d->groups)
        return MI_FAIL(MI_ERR_ARG, "%s: channels %lld -> %lld do not split into %lld groups", name,
                       (long long)d->cin, (long long)d->cout, (long long)d->groups);
    for (int i = 3 - d->sp; i < 3; i++)
        if (d->k[i] < 1 || d->stride[i] < 1 || d->pad[i] < 0 || d->dil[i] < 1)
            return MI_FAIL(MI_ERR_ARG, "%s: kernel %lld, stride %lld, padding %lld, dilation %lld "
                           "in dimension %d, expected k, stride, dilation >= 1 and padding >= 0", name,
                           (long long)d->k[i], (long long)d->stride[i], (long long)d->pad[i],
                           (long long)d->dil[i], i);
    if (d->sp == 2 && (d->k[0] != 1 || d->stride[0] != 1 || d->pad[0] != 0 || d->dil[0] != 1))
        return MI_FAIL(MI_ERR_ARG, "%s: a 2-D layer needs k=1, stride=1, pad=0, dil=1 in index 0", name);
    return MI_OK;
}

static int64_t kvol(const mi_conv_desc *d) { return d->k[0] * d->k[1] * d->k[2]; }
static void choose(const mi_conv_desc *d, const mi_gemm_ukr *u, int *wino, int *chan_lanes);

/* Packed weights for the fast path in the chosen algorithm and orientation (sets c->wino and
 * c->chan_lanes); NULL: no memory. */
static void *pack_weights(mi_conv *c, const mi_gemm_ukr *u, int wino, int chan_lanes) {
    const mi_conv_desc *d = &c->d;
    const int64_t cog = d->cout / d->groups, K = d->cin / d->groups * kvol(d);
    size_t (*pack)(const mi_gemm_ukr *, float *, const float *, int64_t, int64_t, int64_t) =
        chan_lanes ? mi_gemm_pack_a_t : mi_gemm_pack_a;
    const size_t n = wino ? mi_conv_wino_pack(u, NULL, c->weight, d, wino, chan_lanes)
                          : pack(u, NULL, c->weight, d->groups, cog, K);
    float *p = mi_alloc_aligned(n * sizeof(float));
    if (p && wino && !mi_conv_wino_pack(u, p, c->weight, d, wino, chan_lanes)) {
        mi_free_aligned(p);
        p = NULL;
    } else if (p && !wino) {
        pack(u, p, c->weight, d->groups, cog, K);
    }
    if (p) {
        c->wino = wino;
        c->chan_lanes = chan_lanes;
    }
    return p;
}

mi_status mi_conv_prepare(mi_conv *c, const mi_tensor *x) {
    int64_t os[MI_MAX_DIMS];
    mi_status st = mi_conv_out_shape(c, x, os);
    if (st != MI_OK) return st;
    mi_conv_spatial_in(&c->d, x, c->d.in_size);
    const mi_gemm_ukr *u = mi_gemm_ukr_for((mi_isa)c->path);
    /* released: keep the packing; depthwise: one packing serves every size */
    if (c->path == MI_ISA_REF || !u || !c->weight || c->dw) return MI_OK;
    int wino, chan;
    choose(&c->d, u, &wino, &chan);
    if (wino == c->wino && chan == c->chan_lanes) return MI_OK;
    void *p = pack_weights(c, u, wino, chan);
    if (!p) return MI_FAIL(MI_ERR_NOMEM, "%s: cannot allocate packed weights", c->name);
    mi_free_aligned(c->packed);
    c->packed = p;
    return MI_OK;
}

mi_status mi_conv_init(mi_conv *c, const mi_conv_desc *d, const float *weight, const float *bias,
                       const char *name) {
    return mi_conv_init_isa(c, d, weight, bias, name, mi_cpu_isa());
}

mi_status mi_conv_init_isa(mi_conv *c, const mi_conv_desc *d, const float *weight, const float *bias,
                           const char *name, mi_isa isa) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name ? name : "conv");
    mi_status st = mi_conv_check_desc(d, c->name);
    if (st != MI_OK) return st;
    c->d = *d;
    int64_t cig = d->cin / d->groups, cog = d->cout / d->groups, K = cig * kvol(d);
    size_t nw = (size_t)(d->cout * K);
    c->weight = mi_alloc_aligned(nw * sizeof(float));
    c->bias = mi_alloc_aligned((size_t)d->cout * sizeof(float));
    if (!c->weight || !c->bias) goto nomem;
    memcpy(c->weight, weight, nw * sizeof(float));
    if (bias) memcpy(c->bias, bias, (size_t)d->cout * sizeof(float));
    else memset(c->bias, 0, (size_t)d->cout * sizeof(float));

    if (isa > mi_cpu_isa()) isa = mi_cpu_isa();
    const mi_gemm_ukr *u = mi_gemm_ukr_for(isa);
    c->path = MI_ISA_REF;
    /* Depthwise layers (one channel in, one out per group) have no GEMM worth packing: the 2-D
     * ones run ops/conv_dw.c's row kernels, the 3-D ones the reference. */
    int small_stride = 1;
    for (int i = 0; i < 3; i++) small_stride &= d->stride[i] <= 64;
    if (u && mi_conv_dw_ok(d)) {
        if (!(c->packed = mi_alloc_aligned(nw * sizeof(float)))) goto nomem;
        memcpy(c->packed, c->weight, nw * sizeof(float));
        c->dw = 1;
        c->path = isa;
    } else if (u && !(cig == 1 && cog == 1) && small_stride) {
        int wino, chan;
        choose(d, u, &wino, &chan);
        if (!(c->packed = pack_weights(c, u, wino, chan))) goto nomem;
        c->path = isa;
    }
    return MI_OK;
nomem:
    mi_conv_free(c);
    return MI_FAIL(MI_ERR_NOMEM, "%s: cannot allocate %lld weights", name ? name : "conv",
                   (long long)nw);
}

void mi_conv_release_source(mi_conv *c) {
    if (c->path == MI_ISA_REF || !c->packed) return;  /* the reference reads c->weight */
    mi_free_aligned(c->weight);
    c->weight = NULL;
}

void mi_conv_free(mi_conv *c) {
    mi_free_aligned(c->weight);
    mi_free_aligned(c->bias);
    mi_free_aligned(c->packed);
    c->weight = c->bias = NULL;
    c->packed = NULL;
}

mi_status mi_conv_check_input(const mi_conv_desc *d, const char *name, const mi_tensor *x,
                              int64_t in[3]) {
    char buf[96];
    if (x->ndim != d->sp + 2)
        return MI_FAIL(MI_ERR_SHAPE, "%s: input '%s' has shape %s, expected %d dimensions (N, C, %s)",
                       name, x->name, mi_shape_str(buf, sizeof buf, x->ndim, x->shape), d->sp + 2,
                       d->sp == 3 ? "D, H, W" : "H, W");
    if (x->shape[1] != d->cin)
        return MI_FAIL(MI_ERR_SHAPE, "%s: input '%s' has shape %s, expected %lld channels", name,
                       x->name, mi_shape_str(buf, sizeof buf, x->ndim, x->shape), (long long)d->cin);
    mi_conv_spatial_in(d, x, in);
    return MI_OK;
}

mi_status mi_conv_out_shape(const mi_conv *c, const mi_tensor *x, int64_t out[MI_MAX_DIMS]) {
    const mi_conv_desc *d = &c->d;
    char buf[96];
    int64_t in[3];
    mi_status st = mi_conv_check_input(d, c->name, x, in);
    if (st != MI_OK) return st;
    out[0] = x->shape[0];
    out[1] = d->cout;
    for (int i = 3 - d->sp; i < 3; i++) {
        int64_t o = conv_out_len(d, i, in[i]);
        if (o < 1 || in[i] < 1)
            return MI_FAIL(MI_ERR_SHAPE, "%s: input '%s' has shape %s, too small for kernel %lld "
                           "(dilation %lld, padding %lld): expected at least %lld", c->name, x->name,
                           mi_shape_str(buf, sizeof buf, x->ndim, x->shape), (long long)d->k[i],
                           (long long)d->dil[i], (long long)d->pad[i],
                           (long long)MI_MAX(1, d->dil[i] * (d->k[i] - 1) + 1 - 2 * d->pad[i]));
        out[2 + i - (3 - d->sp)] = o;
    }
    return MI_OK;
}

/* Our bug if a caller got here with shapes that do not match (load-time checks use out_shape).
 * Shared with ops/conv_transpose.c: st and os are what the layer's out_shape() returned. */
void mi_conv_check_io(mi_status st, const int64_t *os, const mi_tensor *y, const mi_tensor *x,
                      const mi_tensor *res, bool res_is_y_ok) {
    if (st != MI_OK) mi_assert_fail("out_shape(x) == MI_OK", __FILE__, __LINE__, "%s", mi_last_error());
    MI_ASSERT_EQ(y->ndim, x->ndim);
    for (int i = 0; i < y->ndim; i++) MI_ASSERT_EQ(y->shape[i], os[i]);
    MI_ASSERT(mi_tensor_is_contiguous(x) && mi_tensor_is_contiguous(y));
    if (res) {
        MI_ASSERT(mi_tensor_same_shape(res, y) && mi_tensor_is_contiguous(res));
        const size_t n = (size_t)mi_tensor_numel(y);
        MI_ASSERT((res_is_y_ok && res->data == y->data) || res->data + n <= y->data || y->data + n <= res->data);
    }
}

static void check_io(const mi_conv *c, const mi_tensor *y, const mi_tensor *x, const mi_tensor *res) {
    int64_t os[MI_MAX_DIMS];
    mi_conv_check_io(mi_conv_out_shape(c, x, os), os, y, x, res, true);
}

/* The reference: for every output, sum over (ci, kd, kh, kw) in that order with a multiply then
 * an add, then + bias, + residual, then the activation. torch's conv2d/conv3d semantics. */
void mi_conv_forward_ref(const mi_conv *c, mi_tensor *y, const mi_tensor *x,
                         const mi_tensor *residual, mi_act act) {
    check_io(c, y, x, residual);
    MI_ASSERT(c->weight != NULL);  /* not after mi_conv_release_source */
    const mi_conv_desc *d = &c->d;
    int64_t in[3], out[3];
    mi_conv_spatial_in(d, x, in);
    for (int i = 0; i < 3; i++) out[i] = conv_out_len(d, i, in[i]);
    const int64_t N = x->shape[0], cig = d->cin / d->groups, cog = d->cout / d->groups;
    const int64_t IP = in[0] * in[1] * in[2], OP = out[0] * out[1] * out[2], K = cig * kvol(d);
    const float *xd = x->data, *rd = residual ? residual->data : NULL;
    float *yd = y->data;
    #pragma omp parallel for collapse(2) schedule(static) num_threads(mi_threads())
    for (int64_t n = 0; n < N; n++)
        for (int64_t co = 0; co < d->cout; co++) {
            const float *w = c->weight + co * K;                           /* [cig][kd][kh][kw] */
            const float *xg = xd + (n * d->cin + co / cog * cig) * IP;     /* [cig][D][H][W] */
            for (int64_t o = 0; o < OP; o++) {
                const int64_t od = o / (out[1] * out[2]), oh = o / out[2] % out[1], ow = o % out[2];
                float s = 0.0f;
                for (int64_t ci = 0; ci < cig; ci++)
                    for (int64_t kd = 0; kd < d->k[0]; kd++) {
                        const int64_t id = od * d->stride[0] - d->pad[0] + kd * d->dil[0];
                        if (id < 0 || id >= in[0]) continue;
                        for (int64_t kh = 0; kh < d->k[1]; kh++) {
                            const int64_t ih = oh * d->stride[1] - d->pad[1] + kh * d->dil[1];
                            if (ih < 0 || ih >= in[1]) continue;
                            for (int64_t kw = 0; kw < d->k[2]; kw++) {
                                const int64_t iw = ow * d->stride[2] - d->pad[2] + kw * d->dil[2];
                                if (iw < 0 || iw >= in[2]) continue;
                                s += xg[((ci * in[0] + id) * in[1] + ih) * in[2] + iw] *
                                     w[((ci * d->k[0] + kd) * d->k[1] + kh) * d->k[2] + kw];
                            }
                        }
                    }
                const int64_t yi = (n * d->cout + co) * OP + o;
                float v = s + c->bias[co];
                if (rd) v += rd[yi];
                if (act == MI_ACT_RELU) v = v < 0.0f ? 0.0f : v;
                yd[yi] = v;
            }
        }
}

/* ---- the fast convolution: phase-split padded input, then the GEMM ---- */

typedef struct {
    int64_t in[3], out[3], plane[3];   /* input, output, phase-plane extents (D, H, W) */
    int64_t slot[3][64];               /* phase a -> plane slot in dimension i, -1 unused */
    int64_t nslot[3], slots, PL;       /* slots per dimension, per channel, floats per plane */
    int64_t K, src_floats;             /* GEMM depth per group; floats of the phase buffer */
    int direct;                        /* 1x1, stride 1, no padding: B rows are rows of x */
} conv_geom;

static int geom_init_in(conv_geom *G, const mi_conv_desc *d, const int64_t in[3]) {
    for (int i = 0; i < 3; i++) G->in[i] = in[i];
    G->direct = 1;
    G->slots = 1;
    G->PL = 1;
    for (int i = 0; i < 3; i++) {
        const int64_t s = d->stride[i];
        if (s > 64) return 0;
        G->out[i] = conv_out_len(d, i, G->in[i]);
        G->plane[i] = G->out[i] + (d->k[i] - 1) * d->dil[i] / s;
        for (int64_t a = 0; a < s; a++) G->slot[i][a] = -1;
        for (int64_t k = 0; k < d->k[i]; k++) G->slot[i][k * d->dil[i] % s] = 0;
        G->nslot[i] = 0;
        for (int64_t a = 0; a < s; a++)
            if (G->slot[i][a] >= 0) G->slot[i][a] = G->nslot[i]++;
        G->slots *= G->nslot[i];
        G->PL *= G->plane[i];
        if (d->k[i] != 1 || s != 1 || d->pad[i] != 0) G->direct = 0;
    }
    G->K = d->cin / d->groups * kvol(d);
    /* Slack past the last plane: the garbage columns of the last rows read up to this far. */
    const int64_t slack = (G->plane[1] - G->out[1] + 1) * G->plane[2] + 64;
    G->src_floats = G->direct ? 0 : d->cin * G->slots * G->PL + slack;
    return 1;
}

/* Pixels on the lanes (run) compute ceil(grid/NR)*NR columns per output channel, the grid
 * including the P - OW garbage columns per row; channels on the lanes (run_t) compute exactly the
 * P real pixels but round channels up to 16, take u->chan_k_pct % of run's time per k step and
 * pay u->chan_pixel_k k-steps per pixel beyond it (the pixel gather, the transposed stores),
 * both fitted per ISA to layers measured both ways round (its table). On ResNet-50 channels win
 * on the 7x7 and 14x14 maps, pixels on everything at 56x56 and above. */
static int chan_lanes_win(const mi_gemm_ukr *u, int64_t grid, int64_t P, int64_t K, int64_t cog) {
    const double cost_pix = (double)(CEIL_DIV(grid, u->nr) * u->nr) * (double)(K + 8);
    const double cost_chan = (double)P * ((double)K * u->chan_k_pct / 100.0 + u->chan_pixel_k) *
                             (double)(CEIL_DIV(cog, 16) * 16) / (double)cog;
    return cost_chan < 0.97 * cost_pix;
}

/* A 1x1 stride-2 unpadded 2-D layer whose output rows are whole panels of run_t (u->mr pixels):
 * with channels on the lanes the GEMM reads x in place, each panel's pixels 2 floats apart in a
 * row of x (mi_gemm.pxs), and no phase plane is built; the same values meet the same FMAs in the
 * same order, so the bits are those of the phase planes. Alone, in turns, AVX-512 on the 2-core
 * Zen 5 (ms, 1 / 2 threads; phase planes with the orientation the cost model picked, then in
 * place): ResNet-50's 256 -> 512 at 56x56 1.09 / 0.66 -> 1.00 / 0.54 (it had pixels on the lanes,
 * whose planes cost 7 % at one thread and 15 % at two), 512 -> 1024 at 28x28 1.07 / 0.62 -> 1.03 /
 * 0.54; ResNet-18's 64 -> 128 at 56x56 0.088 / 0.074 -> 0.078 / 0.044, 128 -> 256 at 28x28
 * 0.087 / 0.062 -> 0.067 / 0.040; in ResNet-50 (bench_layers, medians of 3 runs in turns) its
 * two such layers 1.13 / 0.70 -> 1.02 / 0.57 and 1.10 / 0.72 -> 1.01 / 0.60. So such a layer
 * always takes channels on the lanes. */
static int strided_in_place(const mi_conv_desc *d, const mi_gemm_ukr *u, int64_t ow) {
    return u->run_t_s2 && u->in_place && d->sp == 2 && d->k[1] == 1 && d->k[2] == 1 && d->stride[1] == 2 &&
           d->stride[2] == 2 && d->pad[1] == 0 && d->pad[2] == 0 && ow % u->mr == 0;
}

/* Winograd where the layer allows it and it pays. Measured one layer at a time (min CPU time of
 * interleaved runs, 1 thread, AVX2 on a 2-core AMD EPYC shared with other jobs), on the shapes of
 * ResNet-18/50 and of the lesion networks (nn/depthnet.c, nn/segnet.c):
 *   - Few channels do not amortize the transforms, and the transformed input and products of a
 *     large map (36 points x channels x tiles, twice) outgrow the caches: 16 -> 16 at 192x192
 *     3.2 ms direct vs 5.8 F(4x4); 32 -> 16 at 192 7.1 vs 9.2; 16 -> 32 at 96 1.5 vs 2.2;
 *     32 -> 32 at 96 2.8 vs 2.9; 32 -> 64 at 48 1.25 vs 1.39; from 64 input channels Winograd
 *     wins (64 -> 32 at 96: 6.0 vs 6.7; 64 -> 64 at 48: 2.0 vs 2.5).
 *   - F(4x4) beats F(2x2) down to 12x12 maps (9 tiles of 4x4) and up to 256 x 256 channels:
 *     256 -> 256 at 12: 2.0 vs 2.2 ms; at 14 (ResNet-50): 1.9 vs 2.3; 256 -> 128 at 24: 3.4 vs 4.1;
 *     128 -> 128 at 12 (batch 9): 4.0 vs 4.3.
 *   - F(2x2) beats direct on maps of 6x6 and 7x7 (9 or more tiles of 2x2): 256 -> 256 at 6,
 *     batch 9: 4.7-5.3 vs 5.4-6.4 ms; 512 -> 512 at 7 (ResNet's last stage): 4.1 vs 4.9.
 * (On the Sapphire Rapids with AVX-512 that first tuned this, F(4x4) was kept to 128 x 128
 * channels and 32 tiles and the 7x7 maps direct.) With AVX-512 the GEMM runs twice as fast and
 * the transformed weights' streaming counts for more: its table raises F(4x4)'s least tile count
 * (mi_gemm_ukr.wino4_min_tiles, ops/x86/conv_avx512.c). */
#define WINO_MIN_CIN 64
#define WINO_MIN_COUT 32
#define WINO_MIN_TILES 9
#define WINO4_MAX_CH2 (256 * 256)

static void choose(const mi_conv_desc *d, const mi_gemm_ukr *u, int *wino, int *chan_lanes) {
    const int64_t cig = d->cin / d->groups, cog = d->cout / d->groups;
    int64_t in[3] = { d->sp == 3 ? d->in_size[0] : 1, d->in_size[1], d->in_size[2] };
    conv_geom G;
    const int known = in[0] > 0 && in[1] > 0 && in[2] > 0 && geom_init_in(&G, d, in) &&
                      G.out[0] * G.out[1] * G.out[2] > 0;
    int64_t tiles[5] = { 0 };   /* by output tile size m */
    for (int m = 2; known && m <= 4; m += 2) tiles[m] = CEIL_DIV(G.out[1], m) * CEIL_DIV(G.out[2], m);
    *wino = 0;
    if (mi_conv_wino_ok(d) && d->algo == MI_CONV_WINOGRAD2) *wino = 2;
    else if (mi_conv_wino_ok(d) && d->algo == MI_CONV_WINOGRAD4) *wino = 4;
    else if (mi_conv_wino_ok(d) && d->algo == MI_CONV_AUTO && known && cig >= WINO_MIN_CIN && cog >= WINO_MIN_COUT)
        *wino = cig * cog <= WINO4_MAX_CH2 && tiles[4] >= MI_MAX(WINO_MIN_TILES, u->wino4_min_tiles) ? 4
              : tiles[2] >= WINO_MIN_TILES ? 2 : 0;
    if (!u->run_t || d->lanes == 1) *chan_lanes = 0;
    else if (d->lanes == 2) *chan_lanes = 1;
    else if (!known || cog < 16) *chan_lanes = 0;
    else if (*wino) {   /* the GEMM runs on one block of tiles at a time (ops/conv_winograd.c) */
        const int64_t tb = mi_conv_wino_block_tiles(d, *wino, in[1], in[2]);
        *chan_lanes = chan_lanes_win(u, tb, tb, cig, cog);
    }
    else if (strided_in_place(d, u, G.out[2])) *chan_lanes = 1;
    else {
        const int64_t P = G.out[0] * G.out[1] * G.out[2];
        *chan_lanes = chan_lanes_win(u, G.direct ? P : G.out[0] * G.plane[1] * G.plane[2], P,
                                     cig * kvol(d), cog);
    }
}

static int geom_init(conv_geom *G, const mi_conv_desc *d, const mi_tensor *x) {
    int64_t in[3];
    mi_conv_spatial_in(d, x, in);
    return geom_init_in(G, d, in);
}

/* koff, the threads' shares of a GEMM's items (conv_forward_gemm), GEMM scratch per thread, then
 * phase buffers. With one image the threads share one
 * (built together, then the GEMM split between them); with several each thread takes whole
 * images (conv_forward_gemm), in a buffer of its own: n images need min(n, threads) buffers. */
typedef struct { size_t koff, gemm, src; } conv_ws_parts;

/* Blocks of output rows (2-D, stride 1, padded): each thread takes a block of rows of one image,
 * copies the padded input rows it reads (its rows and the kernel's halo) into a buffer of its
 * own and runs every GEMM item of the block: its buffer stays in cache (the padded copy of a
 * whole 32-channel 192x192 map is 4.8 MB), and no thread waits for another inside the layer (on a
 * machine shared with other work each barrier can cost a scheduler time slice). rb rows per block:
 * a buffer of ~256 KB, and >= 4 blocks per image where the map has the rows. Depends on the shapes
 * only; every output is computed the same way whatever block or thread it falls in. */
#define ROW_BLOCK_FLOATS (64 * 1024)

static int row_blocks(const mi_conv_desc *d, const conv_geom *G) {
    return d->sp == 2 && d->stride[1] == 1 && d->stride[2] == 1 && !G->direct;
}

static int64_t block_rows(const mi_conv_desc *d, const conv_geom *G) {
    const int64_t per_row = d->cin * G->plane[2], quarter = CEIL_DIV(G->out[1], 4);
    int64_t rb = ROW_BLOCK_FLOATS / per_row;
    if (rb > quarter) rb = quarter;
    return rb < 1 ? 1 : rb;
}

/* floats per channel of a block's buffer: its rows and the halo */
static int64_t block_plane(const mi_conv_desc *d, const conv_geom *G) {
    return (block_rows(d, G) + (d->k[1] - 1) * d->dil[1]) * G->plane[2];
}

/* Blocks of output rows for one image of a strided 2-D layer on several threads: thread t takes
 * rows [t*OH/nt, (t+1)*OH/nt), builds the rows of every phase plane they read (its rows and the
 * kernel's halo, hp plane rows) into a buffer of its own and runs the block's GEMM alone, so that
 * no thread waits for another and each reads the part of x it wrote in the layer before. Shared
 * phases (built by all threads, a barrier, then the GEMM split) scaled 1.55x on 2 threads where
 * whole images scale 2.0x (ResNet-50's 128 -> 128 3x3 stride-2 layer alone: 1.44 -> 0.92 ms per
 * image, against 0.71 with two images); with blocks, alone at 2 threads in turns, its 3x3
 * stride-2 layers went 1.09-1.14 -> 0.85-0.87 ms (128 channels) and 1.28-1.34 -> 0.83-0.85 (256),
 * in the network 1.06 -> 0.96 (layer3.0.conv2, medians of 8 rounds), and ResNet-18 at 2 threads
 * 11.6 -> 11.0 ms. Every thread reads all the weights, which in a forward pass come from memory:
 * only up to PHASE_BLOCK_MAX_W floats, and not for 1x1 layers, whose phases (a strided copy) cost
 * little to share: ResNet-50's stride-2 1x1 layers took 7-14 % longer with blocks. */
#define PHASE_BLOCK_MAX_W (768 * 1024)

static int64_t phase_halo(const mi_conv_desc *d) { return (d->k[1] - 1) * d->dil[1] / d->stride[1]; }

/* One thread takes two blocks, one after the other, where the weights stay in L2 for the second
 * (up to PHASE_BLOCK_MAX_W1 floats): each block's phase rows are then read back from L2 rather
 * than the whole image's from L3. On the 2-core Xeon (AVX-512) ResNet-50's 128 -> 128 stride-2
 * layer took 0.956 of the time and ResNet-18's 64 -> 128 one 0.953 (bench_layers, paired medians
 * of 20-30 forward passes alternating in one process); four blocks gained less (0.962), and
 * ResNet-50's 256 -> 256 layer (590 K weight floats, read twice from memory) took 1.04-1.10. */
#define PHASE_BLOCK_MAX_W1 (256 * 1024)

/* How many blocks of output rows (0: none, the whole image's phases) */
static int phase_blocks(const mi_conv_desc *d, const conv_geom *G, int64_t n, int nt) {
    const int64_t w = (d->cout / d->groups) * G->K;
    if (d->sp != 2 || G->direct || (d->stride[1] == 1 && d->stride[2] == 1) || d->k[1] * d->k[2] == 1 || n != 1)
        return 0;
    if (nt > 1) return G->out[1] >= 2 * nt && w <= PHASE_BLOCK_MAX_W ? nt : 0;
    return G->out[1] >= 4 && w <= PHASE_BLOCK_MAX_W1 ? 2 : 0;
}

/* floats per phase plane of a block's buffer: its rows (at most those of 2 threads' blocks) and the
 * halo */
static int64_t phase_block_plane(const mi_conv_desc *d, const conv_geom *G) {
    return (CEIL_DIV(G->out[1], 2) + phase_halo(d)) * G->plane[2];
}

static conv_ws_parts ws_parts(const mi_conv *c, const conv_geom *G) {
    const mi_gemm_ukr *u = mi_gemm_ukr_for((mi_isa)c->path);
    /* + slack: the garbage columns of a block's last row and its last panel read past the end */
    size_t src = row_blocks(&c->d, G) ? (size_t)(c->d.cin * block_plane(&c->d, G) + G->plane[2] + 64)
                                      : (size_t)G->src_floats;
    if (phase_blocks(&c->d, G, 1, 2)) {   /* the larger of the two layouts: n and nt decide at run time */
        const size_t blk = (size_t)(c->d.cin * G->slots * phase_block_plane(&c->d, G) +
                                    (phase_halo(&c->d) + 1) * G->plane[2] + 64);
        src = src > blk ? src : blk;
    }
    return (conv_ws_parts){ ROUND64((size_t)G->K * sizeof(int64_t)), ROUND64(mi_gemm_ws(u, 1)),
                            ROUND64(src * sizeof(float)) };
}

static size_t conv_ws(const mi_conv *c, const conv_geom *G, int nthreads, int64_t n) {
    const conv_ws_parts p = ws_parts(c, G);
    /* phase blocks at any thread count up to nthreads: 2 threads take them on the fewest rows */
    const int blocks = nthreads > 1 && phase_blocks(&c->d, G, n, 2);
    const int bufs = row_blocks(&c->d, G) || n > 1 || blocks ? nthreads : 1;
    return p.koff + sizeof(mi_gemm_share) * (size_t)nthreads + p.gemm * (size_t)nthreads + p.src * (size_t)bufs;
}

size_t mi_conv_workspace(const mi_conv *c, const mi_tensor *x) {
    conv_geom G;
    if (c->path == MI_ISA_REF || c->dw || !geom_init(&G, &c->d, x)) return 0;   /* x: checked by caller */
    if (c->wino)
        return mi_conv_wino_ws(mi_gemm_ukr_for((mi_isa)c->path), &c->d, c->wino, G.in[1], G.in[2],
                               mi_conv_max_threads());
    return conv_ws(c, &G, mi_conv_max_threads(), x->shape[0]);
}

/* Fills the stride-phase planes of one image: plane (ci, phase a) [j0][j1][j2] holds the padded
 * input at (j*s + a - pad), zero outside. Only phases that some tap reads are built. Rows
 * (j0 * P[1] + j1) [r0, r1) only, row r at (r - r0) * P[2] of planes PL floats apart. */
static void phases_of(const mi_gemm_ukr *u, float *dst, const float *x, const mi_conv_desc *d,
                      const conv_geom *G, int64_t ci, int64_t r0, int64_t r1, int64_t PL);

/* shared: inside a parallel region, the threads split the channels (an omp for, ending with a
 * barrier); else the calling thread builds them all. */
static void build_phases(const mi_gemm_ukr *u, float *dst, const float *x, const mi_conv_desc *d,
                         const conv_geom *G, int shared) {
    const int64_t rows = G->plane[0] * G->plane[1];
    if (!shared) {
        for (int64_t ci = 0; ci < d->cin; ci++) phases_of(u, dst, x, d, G, ci, 0, rows, G->PL);
        return;
    }
    #pragma omp for schedule(static)
    for (int64_t ci = 0; ci < d->cin; ci++) phases_of(u, dst, x, d, G, ci, 0, rows, G->PL);
}

static void phases_of(const mi_gemm_ukr *u, float *dst, const float *x, const mi_conv_desc *d,
                      const conv_geom *G, int64_t ci, int64_t r0, int64_t r1, int64_t PL) {
    const int64_t *in = G->in, *P = G->plane;
    for (int64_t a0 = 0; a0 < d->stride[0]; a0++) {
        if (G->slot[0][a0] < 0) continue;
        for (int64_t a1 = 0; a1 < d->stride[1]; a1++) {
            if (G->slot[1][a1] < 0) continue;
            for (int64_t a2 = 0; a2 < d->stride[2]; a2++) {
                if (G->slot[2][a2] < 0) continue;
                const int64_t slot = (G->slot[0][a0] * G->nslot[1] + G->slot[1][a1]) * G->nslot[2] + G->slot[2][a2];
                float *pl = dst + (ci * G->slots + slot) * PL;
                const int64_t s2 = d->stride[2], p2 = d->pad[2];
                /* columns j2 with 0 <= j2*s2 + a2 - p2 < in[2] */
                const int64_t lo = MI_MIN(P[2], MI_MAX((int64_t)0, CEIL_DIV(p2 - a2, s2)));
                const int64_t hi = MI_MAX(lo, MI_MIN(P[2], CEIL_DIV(in[2] + p2 - a2, s2)));
                for (int64_t j0 = r0 / P[1]; j0 < P[0] && j0 * P[1] < r1; j0++) {
                    const int64_t id = j0 * d->stride[0] + a0 - d->pad[0];
                    for (int64_t j1 = j0 * P[1] < r0 ? r0 - j0 * P[1] : 0; j1 < P[1] && j0 * P[1] + j1 < r1; j1++) {
                        float *row = pl + (j0 * P[1] + j1 - r0) * P[2];
                        const int64_t ih = j1 * d->stride[1] + a1 - d->pad[1];
                        if (id < 0 || id >= in[0] || ih < 0 || ih >= in[1]) {
                            memset(row, 0, (size_t)P[2] * sizeof(float));
                            continue;
                        }
                        const float *xr = x + ((ci * in[0] + id) * in[1] + ih) * in[2] + a2 - p2;
                        /* the few padding columns inline: a call per row for them was a third of
                         * this copy on maps 7 to 28 wide */
                        for (int64_t j = 0; j < lo; j++) row[j] = 0.0f;
                        if (s2 == 1) memcpy(row + lo, xr + lo, (size_t)(hi - lo) * sizeof(float));
                        else if (hi > lo) u->strided(row + lo, xr + lo * s2, hi - lo, s2, in[2] - (lo * s2 + a2 - p2));
                        for (int64_t j = hi; j < P[2]; j++) row[j] = 0.0f;
                    }
                }
            }
        }
    }
}

#define PAR_MIN_MACS (1 << 20)

/* koff[(ci, kd, kh, kw)]: where row k of B starts in a buffer of phase planes PL floats apart
 * (a whole image's, or a block's rows: then kd is 0); for a stride-1 layer the one plane is the
 * padded input. */
static void phase_koff(const mi_conv_desc *d, const conv_geom *G, int64_t PL, int64_t *koff) {
    for (int64_t ci = 0, k = 0; ci < d->cin / d->groups; ci++)
        for (int64_t kd = 0; kd < d->k[0]; kd++)
            for (int64_t kh = 0; kh < d->k[1]; kh++)
                for (int64_t kw = 0; kw < d->k[2]; kw++, k++) {
                    const int64_t t[3] = { kd * d->dil[0], kh * d->dil[1], kw * d->dil[2] };
                    const int64_t slot = (G->slot[0][t[0] % d->stride[0]] * G->nslot[1] +
                                          G->slot[1][t[1] % d->stride[1]]) * G->nslot[2] +
                                         G->slot[2][t[2] % d->stride[2]];
                    koff[k] = (ci * G->slots + slot) * PL +
                              (t[0] / d->stride[0] * G->plane[1] + t[1] / d->stride[1]) * G->plane[2] +
                              t[2] / d->stride[2];
                }
}

/* The row-block path (row_blocks() above). Each block's buffer holds, per input channel, the
 * padded input rows r0 .. r0 + rows + halo - 1 (zero outside x), block_plane() floats apart. */
static void conv_row_blocks(const mi_conv *c, const mi_gemm_ukr *u, mi_tensor *y, const mi_tensor *x,
                            const mi_tensor *residual, mi_act act, const conv_geom *G, int64_t *koff,
                            unsigned char *gws, conv_ws_parts wp, unsigned char *srcs, int nt, int64_t macs) {
    const mi_conv_desc *d = &c->d;
    const int64_t cig = d->cin / d->groups, IH = G->in[1], IW = G->in[2], OH = G->out[1], OW = G->out[2];
    const int64_t PW = G->plane[2], rb = block_rows(d, G), BP = block_plane(d, G), halo = (d->k[1] - 1) * d->dil[1];
    const int64_t nb = CEIL_DIV(OH, rb), N = x->shape[0], IP = IH * IW, OP = OH * OW;
    phase_koff(d, G, BP, koff);
    /* columns j with 0 <= j - pad < IW: [lo, hi) of each buffer row */
    const int64_t pw = d->pad[2], lo = MI_MIN(PW, pw), hi = MI_MAX(lo, MI_MIN(PW, IW + pw));
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (macs >= PAR_MIN_MACS)
    for (int64_t it = 0; it < N * nb; it++) {
        const int tid = omp_get_thread_num();
        float *src = (float *)(srcs + wp.src * (size_t)tid);
        const int64_t n = it / nb, r0 = it % nb * rb, rows = MI_MIN(rb, OH - r0);
        const float *xn = x->data + n * d->cin * IP;
        for (int64_t ci = 0; ci < d->cin; ci++)
            for (int64_t j = 0; j < BP / PW; j++) {
                float *row = src + ci * BP + j * PW;
                const int64_t ih = r0 + j - d->pad[1];
                if (j >= rows + halo || ih < 0 || ih >= IH) {
                    memset(row, 0, (size_t)PW * sizeof(float));
                    continue;
                }
                memset(row, 0, (size_t)lo * sizeof(float));
                memcpy(row + lo, xn + (ci * IH + ih) * IW + lo - pw, (size_t)(hi - lo) * sizeof(float));
                memset(row + hi, 0, (size_t)(PW - hi) * sizeof(float));
            }
        memset(src + d->cin * BP, 0, (size_t)(PW + 64) * sizeof(float));
        mi_gemm g = {
            .groups = d->groups, .M = d->cout / d->groups, .K = G->K, .apack = c->packed, .src = src,
            .src_gstride = cig * BP, .koff = koff, .gd = 1, .gh = rows, .gw = PW, .od = 1, .oh = rows, .ow = OW,
            .y = y->data + n * d->cout * OP + r0 * OW,
            .res = residual ? residual->data + n * d->cout * OP + r0 * OW : NULL, .bias = c->bias,
            .relu = act == MI_ACT_RELU, .chan_lanes = c->chan_lanes, .ldy = OP, .ymap = { 0, 0, OW, 1 },
        };
        mi_gemm_plan pl;
        mi_gemm_split(u, &g, 1, &pl);
        for (int64_t i = 0; i < pl.items; i++) mi_gemm_item(u, &g, &pl, i, gws + wp.gemm * (size_t)tid);
    }
}

/* The phase-block path (phase_blocks() above): nb blocks of output rows, thread t taking blocks
 * t, t + nt, .. (one each on several threads). A block's buffer holds, per input channel and
 * phase, plane rows r0 .. r1 + hp - 1 (phase_block_plane() floats apart), then zeros that its last
 * rows' garbage columns may read. */
static void conv_phase_blocks(const mi_conv *c, const mi_gemm_ukr *u, mi_tensor *y, const mi_tensor *x,
                              const mi_tensor *residual, mi_act act, const conv_geom *G, int64_t *koff,
                              unsigned char *gws, conv_ws_parts wp, unsigned char *srcs, int nt, int nb) {
    const mi_conv_desc *d = &c->d;
    const int64_t cig = d->cin / d->groups, OH = G->out[1], OW = G->out[2], OP = OH * OW, PW = G->plane[2];
    const int64_t hp = phase_halo(d), BPL = phase_block_plane(d, G);
    phase_koff(d, G, BPL, koff);
    #pragma omp parallel num_threads(nt)
    for (int b = omp_get_thread_num(); b < nb; b += nt) {
        const int t = omp_get_thread_num();
        const int64_t r0 = b * OH / nb, rows = (b + 1) * OH / nb - r0;
        float *src = (float *)(srcs + wp.src * (size_t)t);
        for (int64_t ci = 0; ci < d->cin; ci++) {
            phases_of(u, src, x->data, d, G, ci, r0, r0 + rows + hp, BPL);
            for (int64_t s = 0; s < G->slots; s++)   /* rows past a shorter block's */
                memset(src + (ci * G->slots + s) * BPL + (rows + hp) * PW, 0,
                       (size_t)(BPL - (rows + hp) * PW) * sizeof(float));
        }
        memset(src + d->cin * G->slots * BPL, 0, (size_t)((hp + 1) * PW + 64) * sizeof(float));
        mi_gemm g = {
            .groups = d->groups, .M = d->cout / d->groups, .K = G->K, .apack = c->packed, .src = src,
            .src_gstride = cig * G->slots * BPL, .koff = koff, .gd = 1, .gh = rows, .gw = PW, .od = 1, .oh = rows,
            .ow = OW, .y = y->data + r0 * OW, .res = residual ? residual->data + r0 * OW : NULL, .bias = c->bias,
            .relu = act == MI_ACT_RELU, .chan_lanes = c->chan_lanes, .ldy = OP, .ymap = { 0, 0, OW, 1 },
        };
        mi_gemm_plan pl;
        mi_gemm_split(u, &g, 1, &pl);
        for (int64_t i = 0; i < pl.items; i++) mi_gemm_item(u, &g, &pl, i, gws + wp.gemm * (size_t)t);
    }
}

/* The GEMM of image n: B from the phase buffer src, or x itself where the layer reads it in place
 * (own; s2: a stride-2 layer's pixels 2 floats apart). pad_out: y is padded by a row on top and a
 * column on the left (mi_conv_forward_padded_out), the outputs inside. */
static mi_gemm image_gemm(const mi_conv *c, const conv_geom *G, mi_tensor *y, const mi_tensor *x,
                          const mi_tensor *residual, mi_act act, const int64_t *koff, const float *src,
                          int own, int s2, int pad_out, int64_t n) {
    const mi_conv_desc *d = &c->d;
    const int64_t cig = d->cin / d->groups, IP = G->in[0] * G->in[1] * G->in[2];
    const int64_t OP = G->out[0] * G->out[1] * G->out[2];
    mi_gemm g = {
        .groups = d->groups, .M = d->cout / d->groups, .K = G->K, .apack = c->packed,
        .src = own ? x->data + n * d->cin * IP : src, .src_gstride = own ? cig * IP : cig * G->slots * G->PL,
        .koff = koff, .gd = G->out[0], .gh = G->direct ? G->out[1] : G->plane[1],
        .gw = G->direct ? G->out[2] : s2 ? G->in[2] : G->plane[2], .od = G->out[0], .oh = G->out[1], .ow = G->out[2],
        .y = y->data + n * d->cout * OP, .res = residual ? residual->data + n * d->cout * OP : NULL,
        .bias = c->bias, .relu = act == MI_ACT_RELU, .chan_lanes = c->chan_lanes,
        .lds = own && kvol(d) == 1 ? IP : 0, .pxs = s2 ? 2 : 0, .src_far = own,
    };
    if (pad_out) {
        const int64_t YW = G->out[2] + 1, YP = (G->out[1] + 1) * YW;
        g.y = y->data + n * d->cout * YP + YW + 1;
        g.ldy = YP;
        g.yw = YW;
        g.ymap[2] = YW;
        g.ymap[3] = 1;
    }
    return g;
}

/* Image n by the calling thread alone: its phases into src (unless read in place), every item */
static void one_image(const mi_conv *c, const mi_gemm_ukr *u, const conv_geom *G, mi_tensor *y, const mi_tensor *x,
                      const mi_tensor *residual, mi_act act, const int64_t *koff, float *src, int own, int s2,
                      int pad_out, int64_t n, void *gws) {
    if (!own) build_phases(u, src, x->data + n * c->d.cin * G->in[0] * G->in[1] * G->in[2], &c->d, G, 0);
    const mi_gemm g = image_gemm(c, G, y, x, residual, act, koff, src, own, s2, pad_out, n);
    mi_gemm_plan pl;
    mi_gemm_split(u, &g, 1, &pl);
    for (int64_t it = 0; it < pl.items; it++) mi_gemm_item(u, &g, &pl, it, gws);
}

/* pad_out: see image_gemm(); pad_in: a stride-2 layer reads x in place with every tap inside it
 * (mi_conv_forward_padded_in: c has no padding, x is padded) */
static void conv_forward_gemm(const mi_conv *c, mi_tensor *y, const mi_tensor *x,
                              const mi_tensor *residual, mi_act act, void *workspace, int pad_out, int pad_in) {
    const mi_conv_desc *d = &c->d;
    const mi_gemm_ukr *u = mi_gemm_ukr_for((mi_isa)c->path);
    conv_geom G;
    MI_ASSERT(geom_init(&G, d, x));
    MI_ASSERT(workspace != NULL);
    const int nt = mi_threads();
    unsigned char *ws = workspace;
    const conv_ws_parts wp = ws_parts(c, &G);
    int64_t *koff = (int64_t *)ws;
    /* koff, the threads' shares of the GEMM's items, GEMM scratch, phase buffers */
    unsigned char *gws = ws + wp.koff + sizeof(mi_gemm_share) * (size_t)nt, *srcs = gws + wp.gemm * (size_t)nt;
    const int64_t cig = d->cin / d->groups, IP = G.in[0] * G.in[1] * G.in[2];
    const int64_t OP = G.out[0] * G.out[1] * G.out[2], N = x->shape[0];
    const int64_t macs = N * OP * d->cout * G.K;
    MI_ASSERT(!pad_out || G.direct);
    if (row_blocks(d, &G)) {
        conv_row_blocks(c, u, y, x, residual, act, &G, koff, gws, wp, srcs, nt, macs);
        return;
    }
    const int nb = pad_in ? 0 : phase_blocks(d, &G, N, nt);
    if (nb && macs >= PAR_MIN_MACS) {
        conv_phase_blocks(c, u, y, x, residual, act, &G, koff, gws, wp, srcs, nt, nb);
        return;
    }
    /* a direct (1x1, stride 1, unpadded) layer reads x itself: row k is channel k; so does a 1x1
     * stride-2 one with channels on the lanes where its panels allow (grid column q = oh * IW + ow
     * at x + 2q), and a padded input (pad_in; row k = (ci, kh, kw) at tap (kh, kw) of channel ci) */
    const int s2 = pad_in || (c->chan_lanes && strided_in_place(d, u, G.out[2])), own = G.direct || s2;
    if (own)
        for (int64_t ci = 0, k = 0; ci < cig; ci++)
            for (int64_t kh = 0; kh < d->k[1]; kh++)
                for (int64_t kw = 0; kw < d->k[2]; kw++, k++) koff[k] = ci * IP + kh * G.in[2] + kw;
    else
        phase_koff(d, &G, G.PL, koff);
    /* Several images: each thread takes whole images (phases into its own buffer, then every GEMM
     * item of the image), dynamic, so that no thread waits for another inside the layer: on a
     * machine shared with other work each barrier can cost a scheduler time slice. One image: the
     * threads build its phases together, then take its GEMM's items by shares (ops/gemm.h): each
     * first its own part of the map, then what is left at the end of another's. The GEMM's items
     * only decide who computes a tile, never how, so every way gives the same bits. */
    const int per_image = N > 1 && nt > 1, by_shares = N == 1 && nt > 1;
    if (!own) {
        const int64_t used = d->cin * G.slots * G.PL;
        for (int t = 0; t < (per_image ? nt : 1); t++)
            memset((float *)(srcs + wp.src * (size_t)t) + used, 0, (size_t)(G.src_floats - used) * sizeof(float));
    }
    mi_gemm_share *shares = (mi_gemm_share *)(ws + wp.koff);
    mi_gemm g1 = { 0 };
    mi_gemm_plan pl1 = { 0 };
    if (by_shares) {
        g1 = image_gemm(c, &G, y, x, residual, act, koff, (float *)srcs, own, s2, pad_out, 0);
        g1.shares = 1;
        mi_gemm_split(u, &g1, nt, &pl1);
        mi_gemm_shares_init(shares, pl1.items, nt);
    }
    /* A layer of under ~1M multiply-adds (the segnet's 1x1 attention and head convolutions: tens
     * of microseconds) runs on the calling thread: waking a second thread costs more, and on a
     * machine shared with other work it can cost a scheduler time slice (3-10 ms measured). */
    #pragma omp parallel num_threads(nt) if (macs >= PAR_MIN_MACS)
    {
        const int tid = omp_get_thread_num();
        void *mine = gws + wp.gemm * (size_t)tid;
        #pragma omp for schedule(dynamic, 1) nowait
        for (int64_t n = 0; n < (per_image ? N : 0); n++)
            one_image(c, u, &G, y, x, residual, act, koff, (float *)(srcs + wp.src * (size_t)tid), own, s2,
                      pad_out, n, mine);
        /* One parallel region per call: fork/join costs microseconds, and on a shared machine a
         * thread that is not running stalls every barrier by a scheduler tick. */
        if (by_shares) {
            if (!own) build_phases(u, (float *)srcs, x->data, d, &G, 1);   /* omp for: ends with a barrier */
            mi_gemm_run_shares(u, &g1, &pl1, shares, nt, tid, mine);
        }
        for (int64_t n = 0; n < (per_image || by_shares ? 0 : N); n++)   /* one thread */
            one_image(c, u, &G, y, x, residual, act, koff, (float *)srcs, own, s2, pad_out, n, mine);
    }
}

void mi_conv_forward(const mi_conv *c, mi_tensor *y, const mi_tensor *x,
                     const mi_tensor *residual, mi_act act, void *workspace) {
    if (c->path == MI_ISA_REF) {
        mi_conv_forward_ref(c, y, x, residual, act);
        return;
    }
    check_io(c, y, x, residual);
    if (c->dw) mi_conv_dw_forward(c, y, x, residual, act);
    else if (c->wino) mi_conv_wino_forward(c, mi_gemm_ukr_for((mi_isa)c->path), y, x, residual, act, workspace);
    else conv_forward_gemm(c, y, x, residual, act, workspace, 0, 0);
}

/* ---- a 1x1 layer writing into a padded map, and a stride-2 layer reading it in place ----
 * The stride-2 layer then builds no phase rows: on the 2-core Xeon (AVX-512) ResNet-50's
 * layer2.0 and layer3.0 conv2 took 0.11-0.25 and 0.18-0.20 ms less at one thread and 0.14 and
 * 0.06 less at two, their conv1 (unaligned rows, runs cut at each row's end) 0.02-0.07 more; the
 * forward pass 0.992-0.995 of the time at one thread, 0.995-0.997 at two (nn/resnet.c with and
 * without a capture hook, which keeps the plain way, alternating in one process: paired medians
 * of 30-40 passes, three runs each). Where the output rows are not whole panels (a map narrower
 * than a panel, or rows that cut one), a panel's pixels are packed straight from the map
 * (pack_t_s2) rather than from phase rows: on the 2-core Zen 5 (AVX-512) ResNet-50's layer4.0
 * conv2 (7 x 7 out) took 1.26-1.35 ms against 1.45-1.54 at one thread and 0.84-1.09 against
 * 0.89-1.13 at two (medians of 30-40 passes, both ways alternating in one process, four runs). The
 * same packing for the 1x1 stride-2 layers, in place of their one phase plane, made layer4.0's
 * downsample 4-10 % slower, so those keep it (strided_in_place). */

int mi_conv_padded_out_ok(const mi_conv *c) {
    const mi_conv_desc *d = &c->d;
    return c->path != MI_ISA_REF && !c->dw && !c->wino && d->sp == 2 && d->k[1] == 1 && d->k[2] == 1 &&
           d->stride[1] == 1 && d->stride[2] == 1 && d->pad[1] == 0 && d->pad[2] == 0;
}

int mi_conv_padded_in_ok(const mi_conv *c, const mi_tensor *x) {
    const mi_conv_desc *d = &c->d;
    const mi_gemm_ukr *u = mi_gemm_ukr_for((mi_isa)c->path);
    int64_t os[MI_MAX_DIMS];
    return c->path != MI_ISA_REF && u && u->run_t_s2 && u->pack_t_s2 && u->in_place && !c->dw && !c->wino && c->chan_lanes &&
           d->sp == 2 && d->groups == 1 && x->ndim == 4 && d->k[1] == 3 && d->k[2] == 3 && d->stride[1] == 2 && d->stride[2] == 2 &&
           d->pad[1] == 1 && d->pad[2] == 1 && d->dil[1] == 1 && d->dil[2] == 1 &&
           x->shape[2] % 2 == 0 && x->shape[3] % 2 == 0 && mi_conv_out_shape(c, x, os) == MI_OK;
}

void mi_conv_forward_padded_out(const mi_conv *c, mi_tensor *yp, const mi_tensor *x, mi_act act,
                                void *workspace) {
    int64_t os[MI_MAX_DIMS];
    MI_ASSERT(mi_conv_padded_out_ok(c) && mi_conv_out_shape(c, x, os) == MI_OK);
    MI_ASSERT(yp->ndim == 4 && yp->shape[0] == os[0] && yp->shape[1] == os[1] && yp->shape[2] == os[2] + 1 &&
              yp->shape[3] == os[3] + 1);
    const int64_t H = yp->shape[2], W = yp->shape[3];
    for (int64_t p = 0; p < yp->shape[0] * yp->shape[1]; p++) {   /* the padding */
        float *pl = yp->data + p * H * W;
        memset(pl, 0, (size_t)W * sizeof(float));
        for (int64_t r = 1; r < H; r++) pl[r * W] = 0.0f;
    }
    conv_forward_gemm(c, yp, x, NULL, act, workspace, 1, 0);
}

void mi_conv_forward_padded_in(const mi_conv *c, mi_tensor *y, const mi_tensor *xp, mi_act act,
                               void *workspace) {
    mi_conv c0 = *c;   /* the padding is in xp: the same layer unpadded, over xp */
    c0.d.pad[1] = c0.d.pad[2] = 0;
    check_io(&c0, y, xp, NULL);
    conv_forward_gemm(&c0, y, xp, NULL, act, workspace, 0, 1);
}
