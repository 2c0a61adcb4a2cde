/* pipelines/lesionseg/lesionseg.c - the two networks in turn: one preprocessing for both (the
 * depth blob's squash + normalize), the depth map appended to the normalized image as a fourth
 * channel exactly as tools/lesionseg_ref.py's seg_input() does, then post.c at the original size.
 * Any change to what the networks are fed must be made in tools/lesionseg_ref.py (and the
 * training) too, or they see inputs they were not trained on. */
#include "pipelines/lesionseg/lesionseg.h"

#include "nn/model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct mi_lesionseg {
    mi_model   *depth, *seg;
    mi_session *ds, *ss;
    int         R;                 /* both networks' input side */
    int         seg_channels;      /* 2 softmax, 1 sigmoid */
    float       threshold;         /* sigmoid only */
    double      depth_max_cm;
    float      *x, *x4;            /* (3, R, R) normalized image; (4, R, R) the segmenter's input */
};

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static mi_status meta_number(const mi_model *m, const char *key, double dflt, double lo, double hi, double *out) {
    const mi_weights *w = mi_model_weights(m);
    double d = dflt;
    mi_status st = mi_weights_meta(w, key) ? mi_weights_meta_double(w, key, &d) : MI_OK;
    if (st) return st;
    if (!(d >= lo && d <= hi))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata %s = %g, expected a number in [%g, %g]", mi_model_path(m), key, d, lo,
                       hi);
    *out = d;
    return MI_OK;
}

static const char *resize_mode_name(mi_resize_mode m) { return m == MI_RESIZE_SQUASH ? "squash" : "crop"; }

/* The segmenter sees the image the depth network saw: same size, same normalization. */
static mi_status same_preprocessing(const mi_model *d, const mi_model *s) {
    const mi_preprocess_spec *a = mi_model_preprocess(d), *b = mi_model_preprocess(s);
    char what[160] = "";
    if (a->crop != b->crop)
        snprintf(what, sizeof what, "input_size %d and %d", a->crop, b->crop);
    else if (a->resize_mode != b->resize_mode)
        snprintf(what, sizeof what, "resize_mode %s and %s", resize_mode_name(a->resize_mode),
                 resize_mode_name(b->resize_mode));
    else
        for (int c = 0; c < 3 && !what[0]; c++)
            if (a->mean[c] != b->mean[c] || a->std[c] != b->std[c])
                snprintf(what, sizeof what, "channel %d mean/std %g/%g and %g/%g", c, a->mean[c], a->std[c], b->mean[c],
                         b->std[c]);
    if (what[0])
        return MI_FAIL(MI_ERR_FORMAT, "%s and %s preprocess differently (%s): the segmenter must see the image the "
                       "depth network saw; use blobs trained together", mi_model_path(d), mi_model_path(s), what);
    return MI_OK;
}

mi_status mi_lesionseg_open(mi_lesionseg **out, mi_model *depth, mi_model *seg, const mi_lesionseg_opts *o) {
    *out = NULL;
    mi_lesionseg *l = calloc(1, sizeof *l);
    if (!l) {
        mi_model_close(depth);
        mi_model_close(seg);
        return MI_FAIL(MI_ERR_NOMEM, "lesionseg: out of memory");
    }
    l->depth = depth;
    l->seg = seg;
    mi_status st = MI_OK;
    if (strcmp(mi_model_arch(depth), "depthnet")) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: arch '%s', expected a depth estimator ('depthnet')", mi_model_path(depth),
                     mi_model_arch(depth));
        goto fail;
    }
    if (strcmp(mi_model_arch(seg), "segnet")) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: arch '%s', expected a lesion segmenter ('segnet')", mi_model_path(seg),
                     mi_model_arch(seg));
        goto fail;
    }
    const mi_preprocess_spec *p = mi_model_preprocess(depth);
    if (p->resize_mode != MI_RESIZE_SQUASH) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: resize_mode '%s'; the lesion networks take the whole image squashed to "
                     "input_size x input_size ('squash')", mi_model_path(depth), resize_mode_name(p->resize_mode));
        goto fail;
    }
    if ((st = same_preprocessing(depth, seg))) goto fail;
    double in_ch = 3, thr = 0.5;
    const char *head = mi_model_meta(seg, "output");
    if ((st = meta_number(seg, "in_channels", 3, 0, 1e6, &in_ch))) goto fail;
    if (in_ch != 3) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: in_channels %g; this pipeline feeds RGB images (3) plus the depth map",
                     mi_model_path(seg), in_ch);
        goto fail;
    }
    if (head && strcmp(head, "softmax") && strcmp(head, "sigmoid")) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata output '%s', expected 'softmax' or 'sigmoid'", mi_model_path(seg), head);
        goto fail;
    }
    l->seg_channels = head && !strcmp(head, "sigmoid") ? 1 : 2;
    if ((st = meta_number(seg, "mask_threshold", 0.5, 0, 1, &thr))) goto fail;
    l->threshold = (float)thr;
    if ((st = meta_number(depth, "depth_max_cm", 20, 1e-3, 1e4, &l->depth_max_cm))) goto fail;
    l->R = p->crop;
    const int R = l->R;
    if ((st = mi_session_create(&l->ds, depth, (int64_t[4]){ 1, 3, R, R }, o->threads))) goto fail;
    if ((st = mi_session_create(&l->ss, seg, (int64_t[4]){ 1, 4, R, R }, o->threads))) goto fail;
    l->x = malloc((size_t)7 * R * R * sizeof *l->x);
    if (!l->x) {
        st = MI_FAIL(MI_ERR_NOMEM, "lesionseg: out of memory for %dx%d inputs", R, R);
        goto fail;
    }
    l->x4 = l->x + (size_t)3 * R * R;
    *out = l;
    return MI_OK;
fail:
    mi_lesionseg_close(l);
    return st;
}

void mi_lesionseg_close(mi_lesionseg *l) {
    if (!l) return;
    mi_session_destroy(l->ds);
    mi_session_destroy(l->ss);
    mi_model_close(l->depth);
    mi_model_close(l->seg);
    free(l->x);
    free(l);
}

const mi_model *mi_lesionseg_depth_model(const mi_lesionseg *l) { return l->depth; }
const mi_model *mi_lesionseg_seg_model(const mi_lesionseg *l) { return l->seg; }
double mi_lesionseg_depth_max_cm(const mi_lesionseg *l) { return l->depth_max_cm; }

cJSON *mi_lesionseg_settings_json(const mi_lesionseg *l) {
    const mi_preprocess_spec *p = mi_model_preprocess(l->depth);
    cJSON *o = cJSON_CreateObject();
    cJSON *pre = cJSON_AddObjectToObject(o, "preprocessing");
    cJSON_AddNumberToObject(pre, "input_size", p->crop);
    cJSON_AddStringToObject(pre, "resize_mode", resize_mode_name(p->resize_mode));
    cJSON_AddStringToObject(pre, "resize", "bilinear, antialias (torchvision Resize), whole image, aspect not kept");
    cJSON *mean = cJSON_AddArrayToObject(pre, "mean"), *std = cJSON_AddArrayToObject(pre, "std");
    for (int c = 0; c < 3; c++) {
        cJSON_AddItemToArray(mean, mi_lesionseg_number(p->mean[c]));
        cJSON_AddItemToArray(std, mi_lesionseg_number(p->std[c]));
    }
    cJSON_AddStringToObject(o, "seg_output", l->seg_channels == 2 ? "softmax" : "sigmoid");
    if (l->seg_channels == 2) {
        cJSON_AddStringToObject(o, "mask_rule", "argmax of the up-sampled probabilities (ties: background)");
        cJSON_AddNullToObject(o, "mask_threshold");
    } else {
        cJSON_AddStringToObject(o, "mask_rule", "up-sampled probability >= mask_threshold");
        cJSON_AddItemToObject(o, "mask_threshold", mi_lesionseg_number(l->threshold));
    }
    cJSON_AddStringToObject(o, "upsampling", "bilinear, align_corners=false (torch F.interpolate), to the original size");
    cJSON_AddNumberToObject(o, "connectivity", 8);
    cJSON_AddStringToObject(o, "box_convention", "x0, y0, x1, y1 in original pixels, x1 and y1 exclusive");
    cJSON_AddItemToObject(o, "depth_max_cm", mi_lesionseg_number(l->depth_max_cm));
    cJSON *cm = cJSON_AddObjectToObject(o, "depth_colormap");
    cJSON_AddStringToObject(cm, "name", "turbo");
    cJSON_AddNumberToObject(cm, "min_cm", 0);
    cJSON_AddItemToObject(cm, "max_cm", mi_lesionseg_number(l->depth_max_cm));
    cJSON_AddStringToObject(cm, "near", "dark blue (0 cm)");
    cJSON_AddStringToObject(cm, "far", "dark red (depth_max_cm and beyond)");
    cJSON *lim = cJSON_AddObjectToObject(o, "limits");
    cJSON_AddNumberToObject(lim, "min_side", MI_LESIONSEG_MIN_SIDE);
    cJSON_AddNumberToObject(lim, "max_pixels", (double)MI_LESIONSEG_MAX_PIXELS);
    return o;
}

mi_status mi_lesionseg_check_size(const char *name, int w, int h) {
    if (w < MI_LESIONSEG_MIN_SIDE || h < MI_LESIONSEG_MIN_SIDE)
        return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: %dx%d pixels; at least %dx%d are needed for a lesion to be segmented",
                       name, w, h, MI_LESIONSEG_MIN_SIDE, MI_LESIONSEG_MIN_SIDE);
    if ((long long)w * h > MI_LESIONSEG_MAX_PIXELS)
        return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: %dx%d pixels (%.1f megapixels); at most %lld pixels (%.1f megapixels) "
                       "are segmented at the original size", name, w, h, (double)w * h / 1048576.0,
                       MI_LESIONSEG_MAX_PIXELS, (double)MI_LESIONSEG_MAX_PIXELS / 1048576.0);
    return MI_OK;
}

/* A network whose output is not a number everywhere would turn into an arbitrary mask. */
static mi_status all_finite(const mi_model *m, const char *what, const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return MI_FAIL(MI_ERR_FORMAT, "%s: output '%s' is not finite at element %zu (weights with NaN/Inf?)",
                           mi_model_path(m), what, i);
    return MI_OK;
}

mi_status mi_lesionseg_run(mi_lesionseg *l, const uint8_t *rgb, int w, int h, size_t stride, mi_lesionseg_result *r) {
    memset(r, 0, sizeof *r);
    mi_status st = mi_lesionseg_check_size("lesionseg", w, h);
    if (st) return st;
    const int R = l->R;
    const size_t RR = (size_t)R * R;
    double t0 = now_ms();
    if ((st = mi_preprocess_rgb8(rgb, w, h, stride, mi_model_preprocess(l->depth), l->x))) return st;
    double t1 = now_ms();
    if ((st = mi_session_run(l->ds, l->x))) return st;
    int64_t shape[4];
    const float *d = mi_session_output(l->ds, "depth", shape);
    if (!d || shape[0] != 1 || shape[1] != 1 || shape[2] != R || shape[3] != R)
        return MI_FAIL(MI_ERR_SHAPE, "%s: no output 'depth' of shape (1, 1, %d, %d)", mi_model_path(l->depth), R, R);
    if ((st = all_finite(l->depth, "depth", d, RR))) return st;
    memcpy(l->x4, l->x, 3 * RR * sizeof *l->x4);    /* seg_input: cat([image, depth], 1) */
    memcpy(l->x4 + 3 * RR, d, RR * sizeof *l->x4);
    double t2 = now_ms();
    if ((st = mi_session_run(l->ss, l->x4))) return st;
    const float *s = mi_session_output(l->ss, "seg", shape);
    if (!s || shape[0] != 1 || shape[1] != l->seg_channels || shape[2] != R || shape[3] != R)
        return MI_FAIL(MI_ERR_SHAPE, "%s: no output 'seg' of shape (1, %d, %d, %d) (metadata output '%s')",
                       mi_model_path(l->seg), l->seg_channels, R, R, l->seg_channels == 2 ? "softmax" : "sigmoid");
    if ((st = all_finite(l->seg, "seg", s, RR * (size_t)l->seg_channels))) return st;
    /* the depth output is still valid: the depth session has not run again */
    double t3 = now_ms();
    st = mi_lesionseg_postprocess(s, l->seg_channels, d, R, w, h, l->threshold, l->depth_max_cm, r);
    double t4 = now_ms();
    r->ms_pre = t1 - t0, r->ms_depth = t2 - t1, r->ms_seg = t3 - t2, r->ms_post = t4 - t3;
    return st;
}

void mi_lesionseg_result_free(mi_lesionseg_result *r) {
    free(r->prob);
    free(r->depth);
    free(r->mask);
    free(r->comps);
    memset(r, 0, sizeof *r);
}
