/* pipelines/echo/echo.c - the M-mode measurement: detector, crop, point regressor, measures.
 * The arithmetic of whitening and cropping is the training side's (tools/echo_ref.py); any
 * change here must be made there too, or the networks see inputs they were not trained on. */
#include "pipelines/echo/echo.h"

#include "nn/model.h"
#include "ops/resize.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mi_echo {
    mi_model   *det, *pts;
    mi_session *det_s, *pts_s;
    int         det_w, det_h;      /* the image size det_s was made for */
    int         S;                 /* the regressor's input side */
    float       min_score;
    double      margin;            /* double, as the training side's Python computes the crop */
    int         threads;
};

void mi_echo_whiten(float *x, const uint8_t *gray, int64_t n) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = (float)gray[i] / 255.0f;
        sum += x[i];
    }
    const float mean = (float)(sum / (double)n);
    for (int64_t i = 0; i < n; i++) sq += ((double)x[i] - mean) * ((double)x[i] - mean);
    float sd = (float)sqrt(sq / (double)n);
    if (!(sd > 1e-6f)) sd = 1e-6f;     /* a flat image stays flat instead of dividing by zero */
    for (int64_t i = 0; i < n; i++) x[i] = (x[i] - mean) / sd;
}

double mi_echo_teichholz(double d_cm) { return d_cm > 0 ? 7.0 / (2.4 + d_cm) * d_cm * d_cm * d_cm : 0; }

static mi_status need_role(const mi_model *m, const char *role) {
    const char *r = mi_model_meta(m, "echo_role"), *wh = mi_model_meta(m, "whiten");
    if (!r || strcmp(r, role))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata echo_role is '%s', expected '%s'", mi_model_path(m), r ? r : "(none)",
                       role);
    if (!wh || strcmp(wh, "zscore"))
        return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: metadata whiten is '%s'; this pipeline whitens by 'zscore' only",
                       mi_model_path(m), wh ? wh : "(none)");
    return MI_OK;
}

static mi_status meta_unit(const mi_model *m, const char *key, double dflt, double lo, double hi, double *out) {
    const mi_weights *w = mi_model_weights(m);
    double d = dflt;
    mi_status st = mi_weights_meta(w, key) ? mi_weights_meta_double(w, key, &d) : MI_OK;
    if (st) return st;
    if (!(d >= lo && d <= hi))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata %s = %g, expected a number in [%g, %g]", mi_model_path(m), key, d, lo, hi);
    *out = d;
    return MI_OK;
}

mi_status mi_echo_open(mi_echo **out, mi_model *detector, mi_model *points, const mi_echo_opts *o) {
    *out = NULL;
    mi_echo *e = calloc(1, sizeof *e);
    if (!e) {
        mi_model_close(detector);
        mi_model_close(points);
        return MI_FAIL(MI_ERR_NOMEM, "echo: out of memory");
    }
    e->det = detector;
    e->pts = points;
    e->threads = o->threads;
    mi_status st;
    if ((st = need_role(e->det, "cycle_detector")) || (st = need_role(e->pts, "keypoints"))) goto fail;
    if (strcmp(mi_model_arch(e->det), "fasterrcnn_c4") || mi_model_input_channels(e->det) != 1) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: a cycle detector must be a one-channel fasterrcnn_c4, not a %d-channel %s",
                     mi_model_path(e->det), mi_model_input_channels(e->det), mi_model_arch(e->det));
        goto fail;
    }
    if (mi_model_num_classes(e->pts) != 16 || mi_model_input_channels(e->pts) != 1) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: a point regressor has 16 outputs (8 points) and one input channel, not %d "
                     "and %d", mi_model_path(e->pts), mi_model_num_classes(e->pts), mi_model_input_channels(e->pts));
        goto fail;
    }
    double min_score;
    if ((st = meta_unit(e->det, "echo_min_score", 0.5, 0, 1, &min_score)) ||
        (st = meta_unit(e->pts, "crop_margin", 0.2, 0, 2, &e->margin)))
        goto fail;
    e->min_score = (float)min_score;
    if (o->min_score >= 0) e->min_score = o->min_score;
    e->S = mi_model_input_size(e->pts);
    if ((st = mi_session_create(&e->pts_s, e->pts, (int64_t[4]){ 1, 1, e->S, e->S }, e->threads))) goto fail;
    *out = e;
    return MI_OK;
fail:
    mi_echo_close(e);
    return st;
}

void mi_echo_close(mi_echo *e) {
    if (!e) return;
    mi_session_destroy(e->det_s);
    mi_session_destroy(e->pts_s);
    mi_model_close(e->det);
    mi_model_close(e->pts);
    free(e);
}

const mi_model *mi_echo_detector(const mi_echo *e) { return e->det; }
const mi_model *mi_echo_points(const mi_echo *e) { return e->pts; }
float mi_echo_min_score(const mi_echo *e) { return e->min_score; }
double mi_echo_crop_margin(const mi_echo *e) { return e->margin; }

void mi_echo_measure(mi_echo_result *r) {
    const float (*p)[2] = (const float (*)[2])r->pts;
    for (int phase = 0; phase < 2; phase++) {
        const float *y1 = p[4 * phase], *y2 = p[4 * phase + 1], *y3 = p[4 * phase + 2], *y4 = p[4 * phase + 3];
        r->len_px[3 * phase + 0] = (double)y2[1] - y1[1];   /* IVS */
        r->len_px[3 * phase + 1] = (double)y3[1] - y2[1];   /* LVID */
        r->len_px[3 * phase + 2] = (double)y4[1] - y3[1];   /* LVPW */
    }
    /* the four points of each phase must go down the image in order: otherwise a length is
     * negative and no volume or fraction computed from them means anything */
    r->ordered = true;
    for (int i = 0; i < MI_ECHO_NLEN; i++) r->ordered &= r->len_px[i] > 0;
    const double dd = r->len_px[MI_ECHO_LVIDD], ds = r->len_px[MI_ECHO_LVIDS];
    r->fs = r->ordered ? 100.0 * (dd - ds) / dd : NAN;
    r->edv = r->esv = r->ef = NAN;
    r->ef_abnormal = false;
    for (int i = 0; i < MI_ECHO_NLEN; i++) r->len_mm[i] = r->cal.mm_per_px > 0 ? r->len_px[i] * r->cal.mm_per_px : NAN;
    if (r->cal.mm_per_px > 0 && r->ordered) {
        r->edv = mi_echo_teichholz(r->len_mm[MI_ECHO_LVIDD] / 10.0);
        r->esv = mi_echo_teichholz(r->len_mm[MI_ECHO_LVIDS] / 10.0);
        r->ef = 100.0 * (r->edv - r->esv) / r->edv;
        r->ef_abnormal = r->ef < 50.0 || r->ef > 70.0;
    }
    r->cycle_s = r->heart_rate = NAN;
    if (r->cal.s_per_px > 0 && r->box[2] > r->box[0]) {
        r->cycle_s = ((double)r->box[2] - r->box[0]) * r->cal.s_per_px;
        r->heart_rate = 60.0 / r->cycle_s;
    }
}

/* the detector's session for a w x h image, made when the size changes */
static mi_status detector_session(mi_echo *e, int w, int h) {
    if (e->det_s && e->det_w == w && e->det_h == h) return MI_OK;
    mi_session_destroy(e->det_s);
    e->det_s = NULL;
    mi_status st = mi_session_create(&e->det_s, e->det, (int64_t[4]){ 1, 1, h, w }, e->threads);
    if (!st) e->det_w = w, e->det_h = h;
    return st;
}

mi_status mi_echo_crop(const uint8_t *gray, int w, int h, const float box[4], double margin, int S, float *out,
                       int roi[4]) {
    const double bw = (double)box[2] - box[0], bh = (double)box[3] - box[1], m = margin;
    double fx0 = floor(box[0] - m * bw), fx1 = ceil(box[2] + m * bw), fy0 = floor(box[1] - m * bh), fy1 = ceil(box[3] + m * bh);
    fx0 = fx0 < 0 ? 0 : fx0, fy0 = fy0 < 0 ? 0 : fy0, fx1 = fx1 > w ? w : fx1, fy1 = fy1 > h ? h : fy1;
    if (!(fx1 - fx0 >= 1 && fy1 - fy0 >= 1)) return MI_FAIL(MI_ERR_ARG, "echo: the box lies outside the image");
    const int x0 = (int)fx0, y0 = (int)fy0, cw = (int)fx1 - x0, ch = (int)fy1 - y0;
    roi[0] = x0, roi[1] = y0, roi[2] = x0 + cw, roi[3] = y0 + ch;
    uint8_t *crop = malloc((size_t)cw * ch);
    float *cx = malloc((size_t)cw * ch * sizeof *cx);
    if (!crop || !cx) {
        free(crop);
        free(cx);
        return MI_FAIL(MI_ERR_NOMEM, "echo: out of memory for a %dx%d crop", cw, ch);
    }
    for (int y = 0; y < ch; y++) memcpy(crop + (size_t)y * cw, gray + (size_t)(y0 + y) * w + x0, (size_t)cw);
    mi_echo_whiten(cx, crop, (int64_t)cw * ch);
    mi_tensor src = mi_tensor_view(cx, 4, (int64_t[4]){ 1, 1, ch, cw }, "echo.crop");
    mi_tensor dst = mi_tensor_view(out, 4, (int64_t[4]){ 1, 1, S, S }, "echo.crop.resized");
    mi_resize_linear(&dst, &src, false, NULL);
    free(crop);
    free(cx);
    return MI_OK;
}

static float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

mi_status mi_echo_run(mi_echo *e, const uint8_t *gray, int w, int h, const mi_echo_calibration *cal,
                      mi_echo_result *r) {
    memset(r, 0, sizeof *r);
    r->cal = *cal;
    mi_status st = detector_session(e, w, h);
    if (st) return st;
    const int S = e->S;
    float *x = malloc((size_t)w * h * sizeof *x), *rx = malloc((size_t)S * S * sizeof *rx);
    if (!x || !rx) {
        st = MI_FAIL(MI_ERR_NOMEM, "echo: out of memory for a %dx%d image", w, h);
        goto done;
    }
    mi_echo_whiten(x, gray, (int64_t)w * h);
    if ((st = mi_session_run(e->det_s, x))) goto done;
    mi_detection d;
    const int n = mi_session_detections(e->det_s, 0, &d, 1);
    if (n < 1) goto done;                             /* no cycle: a result, not an error */
    r->score = d.score;
    memcpy(r->box, d.box, sizeof r->box);
    if (d.score < e->min_score) goto done;
    r->found = true;
    if (mi_echo_crop(gray, w, h, d.box, e->margin, S, rx, r->roi)) {   /* a degenerate box at the border */
        r->found = false;
        goto done;
    }
    const int x0 = r->roi[0], y0 = r->roi[1], cw = r->roi[2] - x0, ch = r->roi[3] - y0;
    if ((st = mi_session_run(e->pts_s, rx))) goto done;
    const float *o = mi_session_output(e->pts_s, "logits", NULL);
    for (int k = 0; k < 8; k++) {
        r->pts[k][0] = (float)(x0 + (double)sigmoid(o[2 * k]) * cw);
        r->pts[k][1] = (float)(y0 + (double)sigmoid(o[2 * k + 1]) * ch);
    }
    mi_echo_measure(r);
done:
    free(x);
    free(rx);
    return st;
}
