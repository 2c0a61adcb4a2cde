/* ops/pool.c - scalar references for pooling (see pool.h), and the dispatch.
 *
 * Index math follows PyTorch 1.13's CPU kernels (aten/src/ATen/native/Pool.h, cpu/MaxPoolKernel.cpp,
 * cpu/AvgPoolKernel.cpp, AdaptiveAveragePooling*.cpp): a 2-D pool is run as a 3-D pool with
 * depth 1 (k = 1, stride 1, pad 0), which performs the same additions in the same order. */
#include "ops/pool.h"
#include "ops/cpu.h"

#include <math.h>
#include <stdio.h>

#define PAR_MIN 16384

mi_pool_desc mi_pool2d_desc(int64_t k, int64_t s, int64_t p) {
    return (mi_pool_desc){ .sp = 2, .k = { 1, k, k }, .stride = { 1, s, s }, .pad = { 0, p, p },
                           .dil = { 1, 1, 1 }, .ceil_mode = false, .count_include_pad = true };
}

/* The descriptor with a 2-D pool's depth entries made neutral. */
static mi_pool_desc full3(const mi_pool_desc *d) {
    mi_pool_desc e = *d;
    if (d->sp == 2) { e.k[0] = 1; e.stride[0] = 1; e.pad[0] = 0; e.dil[0] = 1; }
    return e;
}

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

/* torch's pooling_output_shape */
static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t dil, bool ceil_mode) {
    int64_t o = floor_div(in + 2 * p - dil * (k - 1) - 1 + (ceil_mode ? s - 1 : 0), s) + 1;
    if (ceil_mode && (o - 1) * s >= in + p) o--;
    return o;
}

mi_status mi_pool_out_shape(const mi_pool_desc *d, const mi_tensor *x, int64_t out[MI_MAX_DIMS]) {
    char buf[96];
    if (d->sp != 2 && d->sp != 3)
        return MI_FAIL(MI_ERR_ARG, "pooling of '%s': sp = %d, expected 2 or 3", x->name, d->sp);
    if (x->ndim != d->sp + 2)
        return MI_FAIL(MI_ERR_SHAPE, "pooling input '%s' has shape %s, expected %d dims (N, C, %s)",
                       x->name, mi_shape_str(buf, sizeof buf, x->ndim, x->shape), d->sp + 2,
                       d->sp == 2 ? "H, W" : "D, H, W");
    const mi_pool_desc e = full3(d);
    out[0] = x->shape[0];
    out[1] = x->shape[1];
    for (int i = 3 - d->sp; i < 3; i++) {
        if (e.k[i] < 1 || e.stride[i] < 1 || e.dil[i] < 1 || e.pad[i] < 0 || e.pad[i] > e.k[i] / 2)
            return MI_FAIL(MI_ERR_ARG, "pooling of '%s': kernel %lld, stride %lld, pad %lld, dilation "
                           "%lld on spatial dim %d; expected k, stride, dilation >= 1 and 0 <= pad <= k/2",
                           x->name, (long long)e.k[i], (long long)e.stride[i], (long long)e.pad[i],
                           (long long)e.dil[i], i - (3 - d->sp));
        int64_t in = x->shape[2 + i - (3 - d->sp)];
        int64_t o = out_size(in, e.k[i], e.stride[i], e.pad[i], e.dil[i], e.ceil_mode);
        if (o < 1)
            return MI_FAIL(MI_ERR_SHAPE, "pooling input '%s' has shape %s: spatial size %lld is too "
                           "small for kernel %lld, dilation %lld, pad %lld (output would be %lld)",
                           x->name, mi_shape_str(buf, sizeof buf, x->ndim, x->shape), (long long)in,
                           (long long)e.k[i], (long long)e.dil[i], (long long)e.pad[i], (long long)o);
        out[2 + i - (3 - d->sp)] = o;
    }
    return MI_OK;
}

/* Sizes as (planes, D, H, W) whatever the rank; asserts the shapes agree with the descriptor. */
typedef struct { int64_t planes, in[3], out[3]; } geom;

static geom geometry(const mi_tensor *y, const mi_tensor *x, int sp) {
    MI_ASSERT(x->ndim == sp + 2 && y->ndim == sp + 2);
    MI_ASSERT(mi_tensor_is_contiguous(x) && mi_tensor_is_contiguous(y));
    MI_ASSERT_EQ(y->shape[0], x->shape[0]);
    MI_ASSERT_EQ(y->shape[1], x->shape[1]);
    geom g = { .planes = x->shape[0] * x->shape[1], .in = { 1, 1, 1 }, .out = { 1, 1, 1 } };
    for (int i = 0; i < sp; i++) {
        g.in[3 - sp + i] = x->shape[2 + i];
        g.out[3 - sp + i] = y->shape[2 + i];
    }
    return g;
}

static void check_out_shape(const mi_tensor *y, const mi_tensor *x, const mi_pool_desc *d) {
    int64_t want[MI_MAX_DIMS];
    mi_status st = mi_pool_out_shape(d, x, want);
    MI_ASSERT(st == MI_OK);   /* callers size y with mi_pool_out_shape first */
    for (int i = 0; i < x->ndim; i++) MI_ASSERT_EQ(y->shape[i], want[i]);
}

void mi_max_pool_check_2d(const mi_tensor *y, const mi_tensor *x, const mi_pool_desc *d) {
    MI_ASSERT(y->ndim == 4 && mi_tensor_is_contiguous(x) && mi_tensor_is_contiguous(y));
    check_out_shape(y, x, d);
}

void mi_max_pool_ref(mi_tensor *y, const mi_tensor *x, const mi_pool_desc *d) {
    check_out_shape(y, x, d);
    const geom g = geometry(y, x, d->sp);
    const mi_pool_desc e = full3(d);
    const int64_t ID = g.in[0], IH = g.in[1], IW = g.in[2], OD = g.out[0], OH = g.out[1], OW = g.out[2];
    #pragma omp parallel for num_threads(mi_threads()) if (g.planes * OD * OH * OW > PAR_MIN) schedule(static)
    for (int64_t p = 0; p < g.planes; p++) {
        const float *xp = x->data + p * ID * IH * IW;
        float *yp = y->data + p * OD * OH * OW;
        for (int64_t od = 0; od < OD; od++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    /* window start/end, then the start stepped by dilation into the input */
                    int64_t d0 = od * e.stride[0] - e.pad[0], h0 = oh * e.stride[1] - e.pad[1],
                            w0 = ow * e.stride[2] - e.pad[2];
                    int64_t d1 = d0 + (e.k[0] - 1) * e.dil[0] + 1, h1 = h0 + (e.k[1] - 1) * e.dil[1] + 1,
                            w1 = w0 + (e.k[2] - 1) * e.dil[2] + 1;
                    if (d1 > ID) d1 = ID;
                    if (h1 > IH) h1 = IH;
                    if (w1 > IW) w1 = IW;
                    while (d0 < 0) d0 += e.dil[0];
                    while (h0 < 0) h0 += e.dil[1];
                    while (w0 < 0) w0 += e.dil[2];
                    float m = -INFINITY;
                    for (int64_t id = d0; id < d1; id += e.dil[0])
                        for (int64_t ih = h0; ih < h1; ih += e.dil[1])
                            for (int64_t iw = w0; iw < w1; iw += e.dil[2]) {
                                const float v = xp[(id * IH + ih) * IW + iw];
                                if (v > m || isnan(v)) m = v;
                            }
                    yp[(od * OH + oh) * OW + ow] = m;
                }
    }
}

void mi_max_pool(mi_tensor *y, const mi_tensor *x, const mi_pool_desc *d) {
#if defined(__x86_64__)
    if (mi_cpu_isa() >= MI_ISA_AVX512 && mi_max_pool_avx512(y, x, d)) return;
    if (mi_cpu_isa() >= MI_ISA_AVX2) { mi_max_pool_avx2(y, x, d); return; }
#elif defined(__aarch64__)
    if (mi_cpu_isa() >= MI_ISA_NEON) { mi_max_pool_neon(y, x, d); return; }
#endif
    mi_max_pool_ref(y, x, d);
}

void mi_avg_pool(mi_tensor *y, const mi_tensor *x, const mi_pool_desc *d) {
    check_out_shape(y, x, d);
    const geom g = geometry(y, x, d->sp);
    const mi_pool_desc e = full3(d);
    for (int i = 0; i < 3; i++) MI_ASSERT_EQ(e.dil[i], 1);  /* torch's avg_pool has no dilation */
    const int64_t ID = g.in[0], IH = g.in[1], IW = g.in[2], OD = g.out[0], OH = g.out[1], OW = g.out[2];
    #pragma omp parallel for num_threads(mi_threads()) if (g.planes * OD * OH * OW > PAR_MIN) schedule(static)
    for (int64_t p = 0; p < g.planes; p++) {
        const float *xp = x->data + p * ID * IH * IW;
        float *yp = y->data + p * OD * OH * OW;
        for (int64_t od = 0; od < OD; od++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    int64_t d0 = od * e.stride[0] - e.pad[0], h0 = oh * e.stride[1] - e.pad[1],
                            w0 = ow * e.stride[2] - e.pad[2];
                    /* the window clipped to input + padding: count_include_pad's divisor */
                    int64_t d1 = d0 + e.k[0] < ID + e.pad[0] ? d0 + e.k[0] : ID + e.pad[0];
                    int64_t h1 = h0 + e.k[1] < IH + e.pad[1] ? h0 + e.k[1] : IH + e.pad[1];
                    int64_t w1 = w0 + e.k[2] < IW + e.pad[2] ? w0 + e.k[2] : IW + e.pad[2];
                    const int64_t padded = (d1 - d0) * (h1 - h0) * (w1 - w0);
                    if (d0 < 0) d0 = 0;
                    if (h0 < 0) h0 = 0;
                    if (w0 < 0) w0 = 0;
                    if (d1 > ID) d1 = ID;
                    if (h1 > IH) h1 = IH;
                    if (w1 > IW) w1 = IW;
                    float *o = yp + (od * OH + oh) * OW + ow;
                    if (d0 >= d1 || h0 >= h1 || w0 >= w1) { *o = 0.0f; continue; }  /* torch leaves 0 */
                    float s = 0.0f;
                    for (int64_t id = d0; id < d1; id++)
                        for (int64_t ih = h0; ih < h1; ih++)
                            for (int64_t iw = w0; iw < w1; iw++) s += xp[(id * IH + ih) * IW + iw];
                    const int64_t div = e.count_include_pad ? padded : (d1 - d0) * (h1 - h0) * (w1 - w0);
                    *o = s / (float)div;
                }
    }
}

void mi_global_avg_pool(mi_tensor *y, const mi_tensor *x) {
    MI_ASSERT(x->ndim == 4 || x->ndim == 5);
    const geom g = geometry(y, x, x->ndim - 2);
    MI_ASSERT(g.out[0] == 1 && g.out[1] == 1 && g.out[2] == 1);
    const int64_t n = g.in[0] * g.in[1] * g.in[2];
    #pragma omp parallel for num_threads(mi_threads()) if (g.planes * n > PAR_MIN) schedule(static)
    for (int64_t p = 0; p < g.planes; p++) {
        const float *xp = x->data + p * n;
        float s = 0.0f;
        for (int64_t i = 0; i < n; i++) s += xp[i];
        y->data[p] = s / (float)n;
    }
}

/* torch's start_index / end_index: floor(o*in/out) and ceil((o+1)*in/out) in integers */
static int64_t start_index(int64_t o, int64_t out, int64_t in) { return (o / out) * in + ((o % out) * in) / out; }
static int64_t end_index(int64_t o, int64_t out, int64_t in) { return 1 + ((o + 1) * in - 1) / out; }

void mi_adaptive_avg_pool(mi_tensor *y, const mi_tensor *x) {
    MI_ASSERT(x->ndim == 4 || x->ndim == 5);
    const geom g = geometry(y, x, x->ndim - 2);
    const int64_t ID = g.in[0], IH = g.in[1], IW = g.in[2], OD = g.out[0], OH = g.out[1], OW = g.out[2];
    MI_ASSERT(OD >= 1 && OH >= 1 && OW >= 1);
    #pragma omp parallel for num_threads(mi_threads()) if (g.planes * ID * IH * IW > PAR_MIN) schedule(static)
    for (int64_t p = 0; p < g.planes; p++) {
        const float *xp = x->data + p * ID * IH * IW;
        float *yp = y->data + p * OD * OH * OW;
        for (int64_t od = 0; od < OD; od++) {
            const int64_t d0 = start_index(od, OD, ID), d1 = end_index(od, OD, ID);
            for (int64_t oh = 0; oh < OH; oh++) {
                const int64_t h0 = start_index(oh, OH, IH), h1 = end_index(oh, OH, IH);
                for (int64_t ow = 0; ow < OW; ow++) {
                    const int64_t w0 = start_index(ow, OW, IW), w1 = end_index(ow, OW, IW);
                    float s = 0.0f;
                    for (int64_t id = d0; id < d1; id++)
                        for (int64_t ih = h0; ih < h1; ih++)
                            for (int64_t iw = w0; iw < w1; iw++) s += xp[(id * IH + ih) * IW + iw];
                    /* torch divides by each extent in turn (3-D: kd, kh, kw; 2-D: kh, kw) */
                    if (x->ndim == 5) s = s / (float)(d1 - d0);
                    yp[(od * OH + oh) * OW + ow] = s / (float)(h1 - h0) / (float)(w1 - w0);
                }
            }
        }
    }
}
