/* ops/resize.c - nearest and (bi/tri)linear resizing, the scalar reference (see resize.h).
 *
 * 2-D shares the 3-D loops with depth 1. Each output element's arithmetic follows torch's order:
 * the outermost dim's lerp of the inner lerps, lerp = t0*w0 + t1*w1. The per-column index and
 * weight table lives on each thread's stack (CHUNK columns at a time; built once per thread when
 * the output is at most CHUNK wide), so the op needs no workspace. */
#include "ops/resize.h"
#include "ops/cpu.h"

#include <math.h>

#define PAR_MIN 16384
#define CHUNK 1024   /* columns per stack table: 24 KiB of lerp */

mi_status mi_resize_out_shape(const mi_tensor *x, const double *scale, int64_t out[MI_MAX_DIMS]) {
    char buf[96];
    if (x->ndim != 4 && x->ndim != 5)
        return MI_FAIL(MI_ERR_SHAPE, "resize input '%s' has shape %s, expected 4 or 5 dims",
                       x->name, mi_shape_str(buf, sizeof buf, x->ndim, x->shape));
    out[0] = x->shape[0];
    out[1] = x->shape[1];
    for (int i = 2; i < x->ndim; i++) {
        const double s = scale[i - 2];
        const double o = floor((double)x->shape[i] * s);
        if (!(s > 0.0) || !(o >= 1.0 && o <= (double)INT32_MAX))   /* NaN and inf fail too */
            return MI_FAIL(MI_ERR_ARG, "resize of '%s' %s: scale factor %g on spatial dim %d gives "
                           "an empty output or one over 2^31", x->name, mi_shape_str(buf, sizeof buf, x->ndim, x->shape),
                           s, i - 2);
        out[i] = (int64_t)o;
    }
    return MI_OK;
}

/* torch's compute_scales_value<float> */
static float scale_value(const double *scale, int dim, int64_t in, int64_t out) {
    return scale && scale[dim] > 0.0 ? (float)(1.0 / scale[dim]) : (float)in / (float)out;
}

/* torch's nearest_idx */
static int64_t nearest_index(int64_t o, int64_t in, int64_t out, float s) {
    if (out == in) return o;
    if (out == 2 * in) return o >> 1;
    const int64_t i = (int64_t)floorf((float)o * s);
    return i < in - 1 ? i : in - 1;
}

typedef struct { int64_t i0, i1; float l0, l1; } lerp;

/* torch's area_pixel_compute_scale<float> */
static float linear_ratio(const double *scale, int dim, int64_t in, int64_t out, bool align_corners) {
    if (align_corners) return out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
    return scale_value(scale, dim, in, out);
}

/* torch's compute_source_index_and_lambda + guard_index_and_lambda. The ratio is a float, but the
 * source index is formed and split in double (torch promotes it through its 0.5 literals), and
 * only the weight is rounded to float: probing torch 1.13 shows e.g. 13 -> 5 giving weights
 * 2.4e-7 / 0.99999976 at output 2, which float arithmetic (6.0 exactly) would not. */
static lerp linear_index(int64_t o, int64_t in, int64_t out, float ratio, bool align_corners) {
    if (out == in) return (lerp){ o, o, 1.0f, 0.0f };
    double src = align_corners ? (double)ratio * (double)o : (double)ratio * ((double)o + 0.5) - 0.5;
    if (!align_corners && src < 0.0) src = 0.0;
    int64_t i0 = (int64_t)floor(src);
    if (i0 > in - 1) i0 = in - 1;
    double l = src - (double)i0;
    l = l < 0.0 ? 0.0 : l > 1.0 ? 1.0 : l;
    const float l1 = (float)l;
    return (lerp){ i0, i0 + (i0 < in - 1 ? 1 : 0), 1.0f - l1, l1 };
}

typedef struct { int64_t planes, in[3], out[3]; int sp; } geom;

static geom geometry(const mi_tensor *y, const mi_tensor *x) {
    MI_ASSERT(x->ndim == 4 || x->ndim == 5);
    MI_ASSERT(y->ndim == x->ndim);
    MI_ASSERT(mi_tensor_is_contiguous(x) && mi_tensor_is_contiguous(y));
    MI_ASSERT_EQ(y->shape[0], x->shape[0]);
    MI_ASSERT_EQ(y->shape[1], x->shape[1]);
    geom g = { .planes = x->shape[0] * x->shape[1], .in = { 1, 1, 1 }, .out = { 1, 1, 1 }, .sp = x->ndim - 2 };
    for (int i = 0; i < g.sp; i++) {
        g.in[3 - g.sp + i] = x->shape[2 + i];
        g.out[3 - g.sp + i] = y->shape[2 + i];
        MI_ASSERT(g.in[3 - g.sp + i] >= 1 && g.out[3 - g.sp + i] >= 1);
    }
    return g;
}

void mi_resize_nearest(mi_tensor *y, const mi_tensor *x, const double *scale) {
    const geom g = geometry(y, x);
    const int64_t ID = g.in[0], IH = g.in[1], IW = g.in[2], OD = g.out[0], OH = g.out[1], OW = g.out[2];
    const int off = 3 - g.sp;  /* scale[] is indexed by spatial dim of x, not by our D,H,W slot */
    const float sd = g.sp == 3 ? scale_value(scale, 0, ID, OD) : 1.0f;
    const float sh = scale_value(scale, 1 - off, IH, OH), sw = scale_value(scale, 2 - off, IW, OW);
    #pragma omp parallel num_threads(mi_threads()) if (g.planes * OD * OH * OW > PAR_MIN)
    {
        int64_t iw[CHUNK], have = -1;  /* column table of this thread, for columns [have, have+CHUNK) */
        #pragma omp for collapse(3) schedule(static)
        for (int64_t p = 0; p < g.planes; p++)
            for (int64_t od = 0; od < OD; od++)
                for (int64_t oh = 0; oh < OH; oh++) {
                    const int64_t id = nearest_index(od, ID, OD, sd), ih = nearest_index(oh, IH, OH, sh);
                    const float *xr = x->data + ((p * ID + id) * IH + ih) * IW;
                    float *yr = y->data + ((p * OD + od) * OH + oh) * OW;
                    for (int64_t c0 = 0; c0 < OW; c0 += CHUNK) {
                        const int64_t nc = OW - c0 < CHUNK ? OW - c0 : CHUNK;
                        if (have != c0) {
                            for (int64_t j = 0; j < nc; j++) iw[j] = nearest_index(c0 + j, IW, OW, sw);
                            have = c0;
                        }
                        for (int64_t j = 0; j < nc; j++) yr[c0 + j] = xr[iw[j]];
                    }
                }
    }
}

void mi_resize_linear(mi_tensor *y, const mi_tensor *x, bool align_corners, const double *scale) {
    const geom g = geometry(y, x);
    const int64_t ID = g.in[0], IH = g.in[1], IW = g.in[2], OD = g.out[0], OH = g.out[1], OW = g.out[2];
    const int off = 3 - g.sp;
    const float rd = g.sp == 3 ? linear_ratio(scale, 0, ID, OD, align_corners) : 0.0f;
    const float rh = linear_ratio(scale, 1 - off, IH, OH, align_corners);
    const float rw = linear_ratio(scale, 2 - off, IW, OW, align_corners);
    #pragma omp parallel num_threads(mi_threads()) if (g.planes * OD * OH * OW > PAR_MIN)
    {
        lerp lw[CHUNK];
        int64_t have = -1;
        #pragma omp for collapse(3) schedule(static)
        for (int64_t p = 0; p < g.planes; p++)
            for (int64_t od = 0; od < OD; od++)
                for (int64_t oh = 0; oh < OH; oh++) {
                    const lerp ld = linear_index(od, ID, OD, rd, align_corners);
                    const lerp lh = linear_index(oh, IH, OH, rh, align_corners);
                    const float *xp = x->data + p * ID * IH * IW;
                    const float *r00 = xp + (ld.i0 * IH + lh.i0) * IW, *r01 = xp + (ld.i0 * IH + lh.i1) * IW;
                    const float *r10 = xp + (ld.i1 * IH + lh.i0) * IW, *r11 = xp + (ld.i1 * IH + lh.i1) * IW;
                    float *yr = y->data + ((p * OD + od) * OH + oh) * OW;
                    for (int64_t c0 = 0; c0 < OW; c0 += CHUNK) {
                        const int64_t nc = OW - c0 < CHUNK ? OW - c0 : CHUNK;
                        if (have != c0) {
                            for (int64_t j = 0; j < nc; j++) lw[j] = linear_index(c0 + j, IW, OW, rw, align_corners);
                            have = c0;
                        }
                        if (g.sp == 2)   /* bilinear: lerp over H of the lerps over W */
                            for (int64_t j = 0; j < nc; j++) {
                                const lerp w = lw[j];
                                const float t0 = r00[w.i0] * w.l0 + r00[w.i1] * w.l1;
                                const float t1 = r01[w.i0] * w.l0 + r01[w.i1] * w.l1;
                                yr[c0 + j] = t0 * lh.l0 + t1 * lh.l1;
                            }
                        else             /* trilinear: over D of the lerps over H of those over W */
                            for (int64_t j = 0; j < nc; j++) {
                                const lerp w = lw[j];
                                const float t00 = r00[w.i0] * w.l0 + r00[w.i1] * w.l1;
                                const float t01 = r01[w.i0] * w.l0 + r01[w.i1] * w.l1;
                                const float t10 = r10[w.i0] * w.l0 + r10[w.i1] * w.l1;
                                const float t11 = r11[w.i0] * w.l0 + r11[w.i1] * w.l1;
                                const float t0 = t00 * lh.l0 + t01 * lh.l1, t1 = t10 * lh.l0 + t11 * lh.l1;
                                yr[c0 + j] = t0 * ld.l0 + t1 * ld.l1;
                            }
                    }
                }
    }
}
