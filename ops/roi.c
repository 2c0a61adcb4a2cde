/* ops/roi.c - RoIAlign and RoIPool forward (see roi.h), torchvision 0.14's CPU kernels
 * (csrc/ops/cpu/roi_align_kernel.cpp, roi_align_common.h, roi_pool_kernel.cpp) expression for
 * expression: the same float casts (int * float products, the double 1. - ly), the same sum order
 * per bin, the same treatment of samples outside the map (weights 0 at position 0, so a non-finite
 * feature at (0, 0) poisons such bins in torch and here alike).
 *
 * mi_roi_align_ref computes every output element on its own; mi_roi_align precomputes a RoI's
 * sample positions and weights once per thread, as torchvision's pre_calc does, and runs (RoI,
 * channel block) pairs in parallel. Each output element is summed by
 * one thread in one order, so both give the same bits for any thread count (tests/test_detect.c
 * compares them with memcmp). */
#include "ops/roi.h"
#include "ops/cpu.h"
#include "ops/roi_cl.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Adaptive sampling takes ceil(roi size / bin count) samples per side; torchvision converts that
   to int unchecked. Past this many per side a RoI is refused rather than overflowing. */
#define MAX_GRID 32768.0f
/* RoIPool rounds scaled coordinates to int: refuse those that would not fit, with room for the
   kernel's end - start + 1 */
#define MAX_POOL_COORD 536870912.0f

/* ---- validation ------------------------------------------------------------------------------ */

static mi_status check_args(const char *op, mi_tensor *y, const mi_tensor *x, const float (*rois)[5], int64_t k,
                            const mi_roi_desc *d) {
    char b1[96], b2[96];
    if (x->ndim != 4 || x->dtype != MI_F32 || !mi_tensor_is_contiguous(x))
        return MI_FAIL(MI_ERR_SHAPE, "%s: input '%s' has shape %s, expected contiguous F32 (N, C, H, W)", op,
                       x->name, mi_shape_str(b1, sizeof b1, x->ndim, x->shape));
    if (d->out_h < 1 || d->out_w < 1 || !isfinite(d->spatial_scale))
        return MI_FAIL(MI_ERR_ARG, "%s of '%s': output %lldx%lld, spatial scale %g, expected sizes >= 1 "
                       "and a finite scale", op, x->name, (long long)d->out_h, (long long)d->out_w,
                       (double)d->spatial_scale);
    if (k < 0) return MI_FAIL(MI_ERR_ARG, "%s of '%s': %lld RoIs", op, x->name, (long long)k);
    int64_t want[4] = { k, x->shape[1], d->out_h, d->out_w };
    if (y->ndim != 4 || y->dtype != MI_F32 || !mi_tensor_is_contiguous(y) || y->shape[0] != want[0]
        || y->shape[1] != want[1] || y->shape[2] != want[2] || y->shape[3] != want[3])
        return MI_FAIL(MI_ERR_SHAPE, "%s of '%s': output '%s' has shape %s, expected %s", op, x->name, y->name,
                       mi_shape_str(b1, sizeof b1, y->ndim, y->shape), mi_shape_str(b2, sizeof b2, 4, want));
    for (int64_t r = 0; r < k; r++) {
        for (int i = 0; i < 5; i++)
            if (!isfinite(rois[r][i]))
                return MI_FAIL(MI_ERR_ARG, "%s of '%s': RoI %lld has a non-finite value %g at %d", op, x->name,
                               (long long)r, (double)rois[r][i], i);
        /* the kernel truncates the batch index to int */
        if (!(rois[r][0] > -1.0f && rois[r][0] < (float)x->shape[0]))
            return MI_FAIL(MI_ERR_ARG, "%s of '%s': RoI %lld has batch index %g, expected [0, %lld)", op,
                           x->name, (long long)r, (double)rois[r][0], (long long)x->shape[0]);
    }
    return MI_OK;
}

/* ---- RoIAlign -------------------------------------------------------------------------------- */

typedef struct {
    int64_t batch;
    float start_h, start_w, bin_h, bin_w, count;
    int grid_h, grid_w;
} roi_geom;

/* The per-RoI part of roi_align_forward_kernel_impl; false when the adaptive grid is too large. */
static bool align_geom(roi_geom *g, const float *roi, const mi_roi_desc *d) {
    g->batch = (int64_t)(int)roi[0];
    float offset = d->aligned ? 0.5f : 0.0f;
    float s = d->spatial_scale;
    g->start_w = roi[1] * s - offset;
    g->start_h = roi[2] * s - offset;
    float end_w = roi[3] * s - offset, end_h = roi[4] * s - offset;
    float roi_w = end_w - g->start_w, roi_h = end_h - g->start_h;
    if (!d->aligned) {                    /* malformed RoIs forced to 1x1 */
        roi_w = roi_w < 1.0f ? 1.0f : roi_w;
        roi_h = roi_h < 1.0f ? 1.0f : roi_h;
    }
    g->bin_h = roi_h / (float)d->out_h;
    g->bin_w = roi_w / (float)d->out_w;
    if (d->sampling_ratio > 0) {
        g->grid_h = g->grid_w = d->sampling_ratio;
    } else {
        float gh = ceilf(roi_h / (float)d->out_h), gw = ceilf(roi_w / (float)d->out_w);
        if (!(gh <= MAX_GRID && gw <= MAX_GRID)) return false;   /* also catches inf and NaN */
        /* negative (an aligned RoI with x2 < x1): no samples; floored at -MAX_GRID before the
         * cast, which -inf would make undefined */
        g->grid_h = (int)fmaxf(gh, -MAX_GRID);  g->grid_w = (int)fmaxf(gw, -MAX_GRID);
    }
    int n = g->grid_h * g->grid_w;
    g->count = (float)(n > 1 ? n : 1);
    return true;
}

typedef mi_roi_sample sample;

/* pre_calc_for_bilinear_interpolate for one sample point (iy, ix) of bin (ph, pw) */
static sample align_sample(const roi_geom *g, int64_t H, int64_t W, int64_t ph, int64_t pw, int iy, int ix) {
    float y = g->start_h + (float)(int)ph * g->bin_h + ((float)iy + 0.5f) * g->bin_h / (float)g->grid_h;
    float x = g->start_w + (float)(int)pw * g->bin_w + ((float)ix + 0.5f) * g->bin_w / (float)g->grid_w;
    sample s = { { 0, 0, 0, 0 }, { 0.0f, 0.0f, 0.0f, 0.0f } };
    /* outside the map; written as a negation so that a NaN lands here too (the kernel would
       convert it to int) */
    if (!((double)y >= -1.0 && y <= (float)H && (double)x >= -1.0 && x <= (float)W)) return s;
    if (y <= 0) y = 0;
    if (x <= 0) x = 0;
    int64_t y_low = (int)y, x_low = (int)x, y_high, x_high;
    if (y_low >= H - 1) { y_high = y_low = H - 1; y = (float)y_low; } else y_high = y_low + 1;
    if (x_low >= W - 1) { x_high = x_low = W - 1; x = (float)x_low; } else x_high = x_low + 1;
    float ly = y - (float)y_low, lx = x - (float)x_low;
    float hy = (float)(1. - (double)ly), hx = (float)(1. - (double)lx);   /* T hy = 1. - ly */
    s.pos[0] = y_low * W + x_low;   s.pos[1] = y_low * W + x_high;
    s.pos[2] = y_high * W + x_low;  s.pos[3] = y_high * W + x_high;
    s.w[0] = hy * hx;  s.w[1] = hy * lx;  s.w[2] = ly * hx;  s.w[3] = ly * lx;
    return s;
}

/* output_val += w1*v1 + w2*v2 + w3*v3 + w4*v4, left to right */
static inline float add_sample(float acc, const sample *s, const float *in) {
    return acc + (s->w[0] * in[s->pos[0]] + s->w[1] * in[s->pos[1]] + s->w[2] * in[s->pos[2]]
                  + s->w[3] * in[s->pos[3]]);
}

static mi_status grid_error(const mi_tensor *x, int64_t r, const float *roi) {
    return MI_FAIL(MI_ERR_ARG, "roi_align of '%s': RoI %lld (%g, %g, %g, %g) needs an adaptive sampling grid "
                   "over %g per side", x->name, (long long)r, (double)roi[1], (double)roi[2], (double)roi[3],
                   (double)roi[4], (double)MAX_GRID);
}

mi_status mi_roi_align_ref(mi_tensor *y, const mi_tensor *x, const float (*rois)[5], int64_t k,
                           const mi_roi_desc *d) {
    mi_status st = check_args("roi_align", y, x, rois, k, d);
    if (st != MI_OK) return st;
    int64_t C = x->shape[1], H = x->shape[2], W = x->shape[3];
    for (int64_t r = 0; r < k; r++) {
        roi_geom g;
        if (!align_geom(&g, rois[r], d)) return grid_error(x, r, rois[r]);
        for (int64_t c = 0; c < C; c++) {
            const float *in = x->data + (g.batch * C + c) * H * W;
            for (int64_t ph = 0; ph < d->out_h; ph++)
                for (int64_t pw = 0; pw < d->out_w; pw++) {
                    float acc = 0.0f;
                    for (int iy = 0; iy < g.grid_h; iy++)
                        for (int ix = 0; ix < g.grid_w; ix++) {
                            sample s = align_sample(&g, H, W, ph, pw, iy, ix);
                            acc = add_sample(acc, &s, in);
                        }
                    y->data[((r * C + c) * d->out_h + ph) * d->out_w + pw] = acc / g.count;
                }
        }
    }
    return MI_OK;
}

/* Channels per parallel task: few enough that one RoI still spreads over the threads. */
#define CBLOCK 32   /* the channels-last block (ops/roi_cl.h) takes 32 channels */
/* Samples kept on a thread's stack (24 KiB at 48 bytes each): a whole RoI's when they fit (7x7
   bins of 2x2 samples are 196), computed once per RoI and thread, as torchvision's pre_calc; else
   one bin row's, or, for longer rows, none: sample by sample, as the reference does. Computing
   them per block of 16 channels instead cost the echo detector's 300 RoIs x 256 channels about
   as much as the interpolation itself. */
#define MAX_SAMPLES 512

typedef struct {
    sample s[MAX_SAMPLES];
    int64_t roi;               /* whose samples s holds when whole; -1: none */
} sample_cache;

/* Channels c0..c1 of RoI r (geometry g, on the map x) into y_roi: (C, OH, OW) of that RoI. */
static void align_block(float *y_roi, const mi_tensor *x, const roi_geom *g, int64_t r, int64_t c0,
                        int64_t c1, int64_t OH, int64_t OW, sample_cache *cache) {
    const int64_t C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int gh = g->grid_h > 0 ? g->grid_h : 0, gw = g->grid_w > 0 ? g->grid_w : 0;
    int64_t per_bin = (int64_t)gh * gw;
    const bool whole = per_bin * OH * OW <= MAX_SAMPLES, by_row = per_bin * OW <= MAX_SAMPLES;
    if (whole && cache->roi != r) {
        int64_t t = 0;
        for (int64_t ph = 0; ph < OH; ph++)
            for (int64_t pw = 0; pw < OW; pw++)
                for (int iy = 0; iy < gh; iy++)
                    for (int ix = 0; ix < gw; ix++) cache->s[t++] = align_sample(g, H, W, ph, pw, iy, ix);
        cache->roi = r;
    }
    for (int64_t ph = 0; ph < OH; ph++) {
        const sample *row = whole ? cache->s + ph * OW * per_bin : cache->s;
        if (!whole && by_row) {
            cache->roi = -1;
            int64_t t = 0;
            for (int64_t pw = 0; pw < OW; pw++)
                for (int iy = 0; iy < gh; iy++)
                    for (int ix = 0; ix < gw; ix++) cache->s[t++] = align_sample(g, H, W, ph, pw, iy, ix);
        }
        for (int64_t c = c0; c < c1; c++) {
            const float *in = x->data + (g->batch * C + c) * H * W;
            float *out = y_roi + (c * OH + ph) * OW;
            for (int64_t pw = 0; pw < OW; pw++) {
                float acc = 0.0f;
                if (by_row) {
                    const sample *s = row + pw * per_bin;
                    for (int64_t t = 0; t < per_bin; t++) acc = add_sample(acc, &s[t], in);
                } else {
                    for (int iy = 0; iy < gh; iy++)
                        for (int ix = 0; ix < gw; ix++) {
                            sample s = align_sample(g, H, W, ph, pw, iy, ix);
                            acc = add_sample(acc, &s, in);
                        }
                }
                out[pw] = acc / g->count;
            }
        }
    }
}

/* The map channels last, (N, H, W, Cp) with Cp = C rounded up to CBLOCK (zeros past C), so that
   each sample's 4 corners are 4 runs of channels for mi_roi_align_cl_block (ops/roi_cl.h). NULL
   when there is no memory for it (the channel-first blocks then run). */
static float *channels_last(const mi_tensor *x) {
    const int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
    const int64_t Cp = (C + CBLOCK - 1) / CBLOCK * CBLOCK;
    float *t = mi_alloc_aligned((size_t)(N * HW * Cp) * sizeof(float));
    if (!t) return NULL;
    #pragma omp parallel for collapse(2) schedule(static) num_threads(mi_threads()) if (N * HW * Cp > 65536)
    for (int64_t n = 0; n < N; n++)
        for (int64_t p = 0; p < HW; p++)
            for (int64_t c = 0; c < Cp; c++)
                t[(n * HW + p) * Cp + c] = c < C ? x->data[(n * C + c) * HW + p] : 0.0f;
    return t;
}

void mi_roi_align_cl_block_base(float *y_roi, const float *base, int64_t Cp, int64_t c0, int64_t nc,
                                int64_t nbins, const mi_roi_sample *s, int64_t per_bin, float count) {
    mi_roi_align_cl_block(y_roi, base, Cp, c0, nc, nbins, s, per_bin, count);
}

/* RoI r's channels [c0, c0 + CBLOCK) from map x (channels last in xt, or NULL). */
static void align_task(float *y_roi, const mi_tensor *x, const float *xt, const roi_geom *g, int64_t r,
                       int64_t c0, int64_t OH, int64_t OW, sample_cache *cache) {
    const int64_t C = x->shape[1], c1 = c0 + CBLOCK < C ? c0 + CBLOCK : C;
    const int64_t per_bin = (int64_t)(g->grid_h > 0 ? g->grid_h : 0) * (g->grid_w > 0 ? g->grid_w : 0);
    if (!xt || per_bin * OH * OW > MAX_SAMPLES) {
        align_block(y_roi, x, g, r, c0, c1, OH, OW, cache);
        return;
    }
    if (cache->roi != r) {
        int64_t t = 0;
        for (int64_t ph = 0; ph < OH; ph++)
            for (int64_t pw = 0; pw < OW; pw++)
                for (int iy = 0; iy < g->grid_h; iy++)
                    for (int ix = 0; ix < g->grid_w; ix++)
                        cache->s[t++] = align_sample(g, x->shape[2], x->shape[3], ph, pw, iy, ix);
        cache->roi = r;
    }
    const int64_t HW = x->shape[2] * x->shape[3], Cp = (C + CBLOCK - 1) / CBLOCK * CBLOCK;
    void (*block)(float *, const float *, int64_t, int64_t, int64_t, int64_t, const mi_roi_sample *, int64_t,
                  float) = mi_roi_align_cl_block_base;
#if defined(__x86_64__)
    if (mi_cpu_isa() >= MI_ISA_AVX2) block = mi_roi_align_cl_block_avx2;
#endif
    block(y_roi, xt + g->batch * HW * Cp + c0, Cp, c0, c1 - c0, OH * OW, cache->s, per_bin, g->count);
}

/* mi_roi_align and mi_roi_align_levels after their checks: RoI r from x[level[r]] (level NULL:
   x[0]) at scales[...]. Channels last pays when the bins outnumber the map's pixels (a detector's
   hundreds of RoIs); a few RoIs on a large map read it channel-first, where they are. */
static void align_run(mi_tensor *y, const mi_tensor *const *x, const float *scales, int nlevels,
                      const int *level, const float (*rois)[5], int64_t k, const mi_roi_desc *d) {
    const int64_t C = x[0]->shape[1], OH = d->out_h, OW = d->out_w, ncb = (C + CBLOCK - 1) / CBLOCK;
    float *xt[MI_ROI_MAX_LEVELS] = { NULL };
    for (int l = 0; l < nlevels; l++)
        if (k * OH * OW >= x[l]->shape[0] * x[l]->shape[2] * x[l]->shape[3]) xt[l] = channels_last(x[l]);
    #pragma omp parallel num_threads(mi_threads()) if (k * C * OH * OW > 4096)
    {
        sample_cache cache = { .roi = -1 };
        #pragma omp for collapse(2) schedule(static)
        for (int64_t r = 0; r < k; r++)
            for (int64_t cb = 0; cb < ncb; cb++) {
                const int l = level ? level[r] : 0;
                float *yr = y->data + r * C * OH * OW;
                if (l < 0 || l >= nlevels) {   /* torchvision's result stays zeros there */
                    const int64_t c0 = cb * CBLOCK, c1 = c0 + CBLOCK < C ? c0 + CBLOCK : C;
                    for (int64_t i = c0 * OH * OW; i < c1 * OH * OW; i++) yr[i] = 0.0f;
                    continue;
                }
                mi_roi_desc dl = *d;
                dl.spatial_scale = scales[l];
                roi_geom g;
                align_geom(&g, rois[r], &dl);
                align_task(yr, x[l], xt[l], &g, r, cb * CBLOCK, OH, OW, &cache);
            }
    }
    for (int l = 0; l < nlevels; l++) mi_free_aligned(xt[l]);
}

mi_status mi_roi_align(mi_tensor *y, const mi_tensor *x, const float (*rois)[5], int64_t k,
                       const mi_roi_desc *d) {
    mi_status st = check_args("roi_align", y, x, rois, k, d);
    if (st != MI_OK) return st;
    for (int64_t r = 0; r < k; r++) {     /* refuse before any thread starts */
        roi_geom g;
        if (!align_geom(&g, rois[r], d)) return grid_error(x, r, rois[r]);
    }
    align_run(y, &x, &d->spatial_scale, 1, NULL, rois, k, d);
    return MI_OK;
}

/* ---- RoIAlign over pyramid levels ------------------------------------------------------------ */

/* The maps agree in N and C; every RoI names a level, or none (< 0 or >= nlevels); each level's
   RoIs pass check_args on that level's map. */
static mi_status check_levels(mi_tensor *y, const mi_tensor *const *x, const float *scales, int nlevels,
                              const int *level, const float (*rois)[5], int64_t k, const mi_roi_desc *d) {
    if (nlevels < 1 || nlevels > MI_ROI_MAX_LEVELS)
        return MI_FAIL(MI_ERR_ARG, "roi_align_levels: %d levels, expected 1..%d", nlevels, MI_ROI_MAX_LEVELS);
    mi_roi_desc dl = *d;
    for (int l = 0; l < nlevels; l++) {
        dl.spatial_scale = scales[l];
        mi_status st = check_args("roi_align_levels", y, x[l], rois, k, &dl);
        if (st != MI_OK) return st;
        if (x[l]->shape[0] != x[0]->shape[0] || x[l]->shape[1] != x[0]->shape[1])
            return MI_FAIL(MI_ERR_SHAPE, "roi_align_levels: level %d map '%s' has %lld images of %lld channels, "
                           "level 0 '%s' %lld of %lld", l, x[l]->name, (long long)x[l]->shape[0],
                           (long long)x[l]->shape[1], x[0]->name, (long long)x[0]->shape[0],
                           (long long)x[0]->shape[1]);
    }
    for (int64_t r = 0; r < k; r++) {
        if (level[r] < 0 || level[r] >= nlevels) continue;
        dl.spatial_scale = scales[level[r]];
        roi_geom g;
        if (!align_geom(&g, rois[r], &dl)) return grid_error(x[level[r]], r, rois[r]);
    }
    return MI_OK;
}

mi_status mi_roi_align_levels(mi_tensor *y, const mi_tensor *const *x, const float *scales, int nlevels,
                              const int *level, const float (*rois)[5], int64_t k, const mi_roi_desc *d) {
    mi_status st = check_levels(y, x, scales, nlevels, level, rois, k, d);
    if (st != MI_OK) return st;
    align_run(y, x, scales, nlevels, level, rois, k, d);
    return MI_OK;
}

mi_status mi_roi_align_levels_ref(mi_tensor *y, const mi_tensor *const *x, const float *scales, int nlevels,
                                  const int *level, const float (*rois)[5], int64_t k, const mi_roi_desc *d) {
    mi_status st = check_levels(y, x, scales, nlevels, level, rois, k, d);
    if (st != MI_OK) return st;
    const int64_t per = y->shape[1] * y->shape[2] * y->shape[3];
    for (int64_t r = 0; r < k; r++) {   /* each RoI alone through the single-map reference */
        mi_tensor yr = *y;
        yr.data = y->data + r * per;
        yr.shape[0] = 1;
        if (level[r] < 0 || level[r] >= nlevels) {
            for (int64_t i = 0; i < per; i++) yr.data[i] = 0.0f;
            continue;
        }
        mi_roi_desc dl = *d;
        dl.spatial_scale = scales[level[r]];
        if ((st = mi_roi_align_ref(&yr, x[level[r]], &rois[r], 1, &dl)) != MI_OK) return st;
    }
    return MI_OK;
}

/* ---- RoIPool --------------------------------------------------------------------------------- */

static int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

mi_status mi_roi_pool(mi_tensor *y, const mi_tensor *x, const float (*rois)[5], int64_t k,
                      const mi_roi_desc *d) {
    mi_status st = check_args("roi_pool", y, x, rois, k, d);
    if (st != MI_OK) return st;
    for (int64_t r = 0; r < k; r++)
        for (int i = 1; i < 5; i++)
            if (!(fabsf(rois[r][i] * d->spatial_scale) <= MAX_POOL_COORD))
                return MI_FAIL(MI_ERR_ARG, "roi_pool of '%s': RoI %lld coordinate %g scales to %g, beyond "
                               "+-%g", x->name, (long long)r, (double)rois[r][i],
                               (double)(rois[r][i] * d->spatial_scale), (double)MAX_POOL_COORD);
    const int64_t C = x->shape[1], H = x->shape[2], W = x->shape[3], OH = d->out_h, OW = d->out_w;
    #pragma omp parallel for collapse(2) schedule(static) num_threads(mi_threads()) \
        if (k * C * OH * OW > 4096)
    for (int64_t r = 0; r < k; r++)
        for (int64_t c = 0; c < C; c++) {
            const float *roi = rois[r];
            int64_t batch = (int)roi[0];
            float s = d->spatial_scale;
            /* std::round on float: half away from zero, which roundf is */
            int start_w = (int)roundf(roi[1] * s), start_h = (int)roundf(roi[2] * s);
            int end_w = (int)roundf(roi[3] * s), end_h = (int)roundf(roi[4] * s);
            int roi_w = end_w - start_w + 1 > 1 ? end_w - start_w + 1 : 1;
            int roi_h = end_h - start_h + 1 > 1 ? end_h - start_h + 1 : 1;
            float bin_h = (float)roi_h / (float)OH, bin_w = (float)roi_w / (float)OW;
            const float *in = x->data + (batch * C + c) * H * W;
            for (int64_t ph = 0; ph < OH; ph++)
                for (int64_t pw = 0; pw < OW; pw++) {
                    int hstart = (int)floorf((float)(int)ph * bin_h), wstart = (int)floorf((float)(int)pw * bin_w);
                    int hend = (int)ceilf((float)(int)(ph + 1) * bin_h), wend = (int)ceilf((float)(int)(pw + 1) * bin_w);
                    hstart = clampi(hstart + start_h, 0, (int)H);  hend = clampi(hend + start_h, 0, (int)H);
                    wstart = clampi(wstart + start_w, 0, (int)W);  wend = clampi(wend + start_w, 0, (int)W);
                    bool empty = hend <= hstart || wend <= wstart;
                    float m = empty ? 0.0f : -FLT_MAX;
                    for (int h = hstart; h < hend; h++)
                        for (int w = wstart; w < wend; w++)
                            if (in[(int64_t)h * W + w] > m) m = in[(int64_t)h * W + w];
                    y->data[((r * C + c) * OH + ph) * OW + pw] = m;
                }
        }
    return MI_OK;
}
