/* ops/preprocess.c - the classifier input transform, bit for bit what torchvision 0.14 /
 * torch 1.13 compute on a uint8 image tensor [3, H, W]:
 *
 *   Resize(resize, BILINEAR, antialias=True)  torchvision/transforms/functional.py resize():
 *       shorter side -> resize, longer -> int(resize * long / short) (_compute_resized_output_size);
 *       the image is cast to float32, resized by torch's _upsample_bilinear2d_aa, then
 *       torch.round()ed (half to even) back to uint8 (functional_tensor.py _cast_squeeze_out).
 *   CenterCrop(crop)   offsets int(round((size - crop) / 2.0)) (half to even); zero padding when
 *                      the image is smaller than the crop (functional.py center_crop()).
 * or, for a model trained on whole frames scaled to the network's input (MI_RESIZE_SQUASH):
 *   Resize((crop, crop), BILINEAR, antialias=True)   the same kernel and rounding with both output
 *                      sides given, so each axis has its own scale; no crop. It is the crop path
 *                      with the resized size set to crop x crop, whose centre crop is the whole.
 *   ToTensor           x / 255 in float32.
 *   Normalize          (x - mean) / std in float32.
 *
 * torch's antialiased kernel (aten/src/ATen/native/cpu/UpSampleKernel.cpp,
 * HelperInterpBase::_compute_indices_weights_aa and basic_loop_aa_horizontal/vertical) is
 * separable: a horizontal pass over every input row into a float32 [C, H_in, W_out] buffer, then a
 * vertical pass. Per axis, with scale = in/out (float), the triangle filter's support is widened to
 * `scale` when downscaling, so each output sums ~2*scale+1 input pixels with normalized weights.
 * The float/double promotions of that code are reproduced term by term below, and each output
 * is the sequential float sum t0*w0 + t1*w1 + ... (no FMA: -ffp-contract=off). That equals torch's
 * scalar kernel (ATEN_CPU_CAPABILITY=default) bit for bit; torch's AVX2 build contracts some of the
 * terms into FMAs, which moves about one output in 10^5 by one uint8 step (tests/test_image.c). */
#include "ops/preprocess.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SIZE (1 << 14)  /* resize / crop: far beyond any network input */

/* _compute_resized_output_size: Python's int(size * long / short), an exactly rounded quotient
 * (both operands are exact in a double) truncated; the shorter side is w when w == h. */
static void resized_dims(int w, int h, int size, int64_t *ow, int64_t *oh) {
    int64_t s = w <= h ? w : h, l = w <= h ? h : w;
    int64_t nl = (int64_t)((double)((int64_t)size * l) / (double)s);
    *ow = w <= h ? size : nl;
    *oh = w <= h ? nl : size;
}

void mi_resize_shorter_size(int w, int h, int size, int *ow, int *oh) {
    int64_t lw, lh;
    resized_dims(w, h, size, &lw, &lh);
    *ow = lw > INT32_MAX ? INT32_MAX : (int)lw;
    *oh = lh > INT32_MAX ? INT32_MAX : (int)lh;
}

/* Taps of output indices [o0, o1) of one axis: first input index, count, normalized weights. */
typedef struct {
    int64_t *xmin, *xsize;
    float   *w;        /* (o1 - o0) x maxi */
    int      maxi;
} aa_axis;

static void aa_axis_free(aa_axis *a) {
    free(a->xmin);
    free(a->xsize);
    free(a->w);
}

/* HelperInterpBase::_compute_indices_weights_aa<float> with HelperInterpLinear::aa_filter. */
static mi_status aa_axis_init(aa_axis *a, int64_t in, int64_t out, int64_t o0, int64_t o1) {
    memset(a, 0, sizeof *a);
    const float scale = (float)in / (float)out;  /* area_pixel_compute_scale, align_corners=False */
    const float support = scale >= 1.0 ? (float)((2 * 0.5) * scale) : (float)(2 * 0.5);
    a->maxi = (int)ceilf(support) * 2 + 1;
    size_t n = (size_t)(o1 - o0);
    a->xmin = malloc(n * sizeof *a->xmin);
    a->xsize = malloc(n * sizeof *a->xsize);
    a->w = calloc(n * (size_t)a->maxi, sizeof *a->w);
    if (!a->xmin || !a->xsize || !a->w) {
        aa_axis_free(a);
        return MI_FAIL(MI_ERR_NOMEM, "cannot allocate resize weights for %lld outputs", (long long)n);
    }
    const float invscale = scale >= 1.0 ? (float)(1.0 / scale) : 1.0f;
    for (int64_t i = o0; i < o1; i++) {
        float *w = a->w + (i - o0) * a->maxi;
        const float center = (float)(scale * (i + 0.5));
        int64_t xmin = (int64_t)((double)(center - support) + 0.5);
        if (xmin < 0) xmin = 0;
        int64_t xmax = (int64_t)((double)(center + support) + 0.5);
        int64_t xsize = (xmax < in ? xmax : in) - xmin;
        xsize = xsize < 0 ? 0 : xsize > a->maxi ? a->maxi : xsize;  /* torch clamps this too */
        float total = 0.0f;
        for (int64_t j = 0; j < xsize; j++) {
            float x = (float)(((double)((float)(j + xmin) - center) + 0.5) * invscale);
            if (x < 0.0) x = -x;
            w[j] = x < 1.0 ? (float)(1.0 - x) : 0.0f;
            total += w[j];
        }
        if (total != 0.0f)
            for (int64_t j = 0; j < xsize; j++) w[j] /= total;
        a->xmin[i - o0] = xmin;
        a->xsize[i - o0] = xsize;
    }
    return MI_OK;
}

/* Outputs [x0,x1) x [y0,y1) of the (ow x oh) antialiased resize of src, as uint8 RGB rows of
 * (x1-x0) pixels. Only the input rows those outputs read are passed horizontally. */
/* src: h rows of w RGB pixels, stride bytes apart */
typedef struct { const uint8_t *px; int w, h; size_t stride; } rgb_src;

static mi_status resize_region(const rgb_src *src, int ow, int oh, int x0, int x1, int y0, int y1,
                               uint8_t *dst) {
    const int nx = x1 - x0, ny = y1 - y0;
    if (nx <= 0 || ny <= 0) return MI_OK;
    if (ow == src->w && oh == src->h) {  /* torchvision returns the image itself */
        for (int y = 0; y < ny; y++)
            memcpy(dst + (size_t)y * nx * 3, src->px + (size_t)(y + y0) * src->stride + (size_t)x0 * 3, (size_t)nx * 3);
        return MI_OK;
    }
    aa_axis ax, ay;
    mi_status st = aa_axis_init(&ax, src->w, ow, x0, x1);
    if (st) return st;
    if ((st = aa_axis_init(&ay, src->h, oh, y0, y1)) != MI_OK) {
        aa_axis_free(&ax);
        return st;
    }
    int64_t r0 = src->h, r1 = 0;
    for (int y = 0; y < ny; y++)
        if (ay.xsize[y] > 0) {
            if (ay.xmin[y] < r0) r0 = ay.xmin[y];
            if (ay.xmin[y] + ay.xsize[y] > r1) r1 = ay.xmin[y] + ay.xsize[y];
        }
    if (r1 < r0) r1 = r0;
    float *tmp = malloc(((size_t)(r1 - r0) * (size_t)nx * 3 + 1) * sizeof *tmp);  /* [r][x][c] */
    if (!tmp) {
        st = MI_FAIL(MI_ERR_NOMEM, "cannot allocate a %lldx%d resize buffer", (long long)(r1 - r0), nx);
        goto done;
    }
    /* horizontal: tmp[r][x][c] = sum_j src[r][xmin+j][c] * w[j]  (basic_loop_aa_horizontal) */
    for (int64_t r = r0; r < r1; r++)
        for (int x = 0; x < nx; x++) {
            const float *w = ax.w + (size_t)x * ax.maxi;
            const uint8_t *s = src->px + (size_t)r * src->stride + (size_t)ax.xmin[x] * 3;
            float *t = tmp + ((size_t)(r - r0) * nx + x) * 3;
            for (int c = 0; c < 3; c++) {
                float acc = ax.xsize[x] > 0 ? (float)s[c] * w[0] : 0.0f;
                for (int64_t j = 1; j < ax.xsize[x]; j++) acc += (float)s[j * 3 + c] * w[j];
                t[c] = acc;
            }
        }
    /* vertical, then torch.round (half to even: rintf in the default rounding mode) to uint8 */
    for (int y = 0; y < ny; y++) {
        const float *w = ay.w + (size_t)y * ay.maxi;
        for (int x = 0; x < nx; x++)
            for (int c = 0; c < 3; c++) {
                const float *t = tmp + ((size_t)(ay.xmin[y] - r0) * nx + x) * 3 + c;
                float acc = ay.xsize[y] > 0 ? t[0] * w[0] : 0.0f;
                for (int64_t j = 1; j < ay.xsize[y]; j++) acc += t[(size_t)j * nx * 3] * w[j];
                float v = rintf(acc);
                dst[((size_t)y * nx + x) * 3 + c] = (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
            }
    }
done:
    free(tmp);
    aa_axis_free(&ax);
    aa_axis_free(&ay);
    return st;
}

static mi_status check_src(const rgb_src *s) {
    if (!s->px || s->w < 1 || s->h < 1)
        return MI_FAIL(MI_ERR_ARG, "an empty %dx%d image cannot be preprocessed", s->w, s->h);
    if (s->stride < (size_t)s->w * 3)
        return MI_FAIL(MI_ERR_ARG, "row stride %zu bytes is shorter than a row of %d RGB pixels",
                       s->stride, s->w);
    return MI_OK;
}

mi_status mi_resize_aa_rgb8(uint8_t *dst, int ow, int oh, const uint8_t *src, int w, int h,
                            size_t stride) {
    const rgb_src s = { src, w, h, stride };
    mi_status st = check_src(&s);
    if (st) return st;
    if (ow < 1 || oh < 1 || ow > MAX_SIZE || oh > MAX_SIZE)
        return MI_FAIL(MI_ERR_ARG, "resize to %dx%d outside 1..%d per side", ow, oh, MAX_SIZE);
    return resize_region(&s, ow, oh, 0, ow, 0, oh, dst);
}

/* torchvision center_crop() on one axis of length n: pad before (floor half of the shortfall)
 * and the crop offset, int(round((n - crop) / 2.0)) with Python's half-to-even round. */
static void crop_axis(int64_t n, int crop, int64_t *pad, int64_t *off) {
    *pad = crop > n ? (crop - n) / 2 : 0;
    int64_t d = crop > n ? 0 : n - crop;
    *off = d % 2 == 0 ? d / 2 : (d / 2) % 2 == 0 ? d / 2 : d / 2 + 1;
}

const char *mi_resize_mode_name(mi_resize_mode m) {
    return m == MI_RESIZE_CROP ? "crop" : m == MI_RESIZE_SQUASH ? "squash" : "?";
}

mi_status mi_preprocess_rgb8(const uint8_t *rgb, int w, int h, size_t stride,
                             const mi_preprocess_spec *p, float *out) {
    const rgb_src src = { rgb, w, h, stride }, *img = &src;
    const int resize = p->resize, crop = p->crop;
    const float *mean = p->mean, *std = p->std;
    mi_status st = check_src(img);
    if (st) return st;
    if (resize < 1 || resize > MAX_SIZE || crop < 1 || crop > MAX_SIZE)
        return MI_FAIL(MI_ERR_ARG, "resize %d / crop %d outside 1..%d", resize, crop, MAX_SIZE);
    if (p->resize_mode != MI_RESIZE_CROP && p->resize_mode != MI_RESIZE_SQUASH)
        return MI_FAIL(MI_ERR_ARG, "resize_mode %d is neither MI_RESIZE_CROP nor MI_RESIZE_SQUASH",
                       (int)p->resize_mode);
    const bool squash = p->resize_mode == MI_RESIZE_SQUASH;
    if (squash && resize != crop)
        return MI_FAIL(MI_ERR_ARG, "resize_mode squash resizes straight to crop %d x %d, but resize is %d",
                       crop, crop, resize);
    for (int c = 0; c < 3; c++)
        if (!isfinite(mean[c]) || !isfinite(std[c]) || !(std[c] > 0))
            return MI_FAIL(MI_ERR_ARG, "normalization channel %d: mean %g, std %g (std must be > 0)",
                           c, mean[c], std[c]);
    int64_t lw = crop, lh = crop;   /* squash: Resize((crop, crop)), then a crop of the whole */
    if (!squash) resized_dims(img->w, img->h, resize, &lw, &lh);
    if (lw > INT32_MAX || lh > INT32_MAX)  /* a 1 x 10^8 strip: only the crop is computed, but */
        return MI_FAIL(MI_ERR_ARG, "resizing a %dx%d image to short side %d gives %lldx%lld, too "
                       "large", img->w, img->h, resize, (long long)lw, (long long)lh);
    int rw = (int)lw, rh = (int)lh;
    int64_t padx, offx, pady, offy;
    crop_axis(rw, crop, &padx, &offx);
    crop_axis(rh, crop, &pady, &offy);
    /* crop pixel o shows resized pixel o + off - pad; those outside [0, n) are padding (0) */
    int x0 = (int)(offx - padx < 0 ? 0 : offx - padx), x1 = (int)(crop + offx - padx < rw ? crop + offx - padx : rw);
    int y0 = (int)(offy - pady < 0 ? 0 : offy - pady), y1 = (int)(crop + offy - pady < rh ? crop + offy - pady : rh);
    uint8_t *px = malloc((size_t)(x1 - x0) * (size_t)(y1 - y0) * 3 + 1);
    if (!px) return MI_FAIL(MI_ERR_NOMEM, "cannot allocate a %dx%d crop", x1 - x0, y1 - y0);
    if ((st = resize_region(img, rw, rh, x0, x1, y0, y1, px)) != MI_OK) {
        free(px);
        return st;
    }
    const size_t plane = (size_t)crop * crop;
    for (int y = 0; y < crop; y++) {
        int64_t ry = y + offy - pady;
        for (int x = 0; x < crop; x++) {
            int64_t rx = x + offx - padx;
            bool in = ry >= y0 && ry < y1 && rx >= x0 && rx < x1;
            const uint8_t *p = in ? px + ((size_t)(ry - y0) * (size_t)(x1 - x0) + (size_t)(rx - x0)) * 3 : NULL;
            for (int c = 0; c < 3; c++) {
                float v = (float)(p ? p[c] : 0) / 255.0f;  /* ToTensor; then Normalize */
                out[c * plane + (size_t)y * crop + x] = (v - mean[c]) / std[c];
            }
        }
    }
    free(px);
    return MI_OK;
}
