/* pipelines/assist/analyze.c - the detector on one frame, and the finding's thumbnail. */
#include "pipelines/assist/analyze.h"

#include "pipelines/io/draw.h"

#include <cjson/cJSON.h>
#include <stb/stb_image_write.h>
#include <stdlib.h>
#include <string.h>

mi_status mi_assist_high_risk_labels(const mi_model *m, bool *flags, int cap) {
    const int nc = mi_model_num_classes(m);
    if (nc < 2 || nc > cap)
        return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: a detector with %d classes, expected 2..%d", mi_model_path(m), nc, cap);
    memset(flags, 0, (size_t)cap * sizeof *flags);
    const char *meta = mi_model_meta(m, "high_risk_labels");
    if (!meta) {
        for (int i = 1; i < nc; i++) {
            const char *l = mi_model_label(m, i);
            flags[i] = l && (!strcmp(l, "adenomatous polyp") || !strcmp(l, "ulcer"));
        }
        return MI_OK;
    }
    cJSON *j = cJSON_Parse(meta);
    mi_status st = MI_OK;
    if (!cJSON_IsArray(j)) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'high_risk_labels' is not a JSON list of label names", mi_model_path(m));
        goto done;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        const char *name = cJSON_GetStringValue(it);
        int k = -1;
        for (int i = 1; name && i < nc; i++)
            if (!strcmp(mi_model_label(m, i), name)) k = i;
        if (k < 0) {
            st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'high_risk_labels' names '%.60s', which is not one of the model's labels",
                         mi_model_path(m), name ? name : "(not a string)");
            goto done;
        }
        flags[k] = true;
    }
done:
    cJSON_Delete(j);
    return st;
}

mi_status mi_assist_model_score_threshold(const mi_model *m, float *thr) {
    const char *meta = mi_model_meta(m, "score_threshold");
    if (!meta) return MI_OK;
    char *end;
    const double v = strtod(meta, &end);
    if (end == meta || *end || !(v >= 0 && v <= 1))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'score_threshold' is '%.40s', not a number in 0..1", mi_model_path(m), meta);
    *thr = (float)v;
    return MI_OK;
}

void mi_assist_detector_free(mi_assist_detector *d) {
    mi_session_destroy(d->s);
    d->s = NULL;
    d->w = d->h = 0;
}

mi_status mi_assist_detect(mi_assist_detector *d, const mi_image *img, const mi_assist_policy *p,
                           mi_assist_lesion *out, int cap, int *n) {
    *n = 0;
    mi_status st;
    if (!d->s || d->w != img->w || d->h != img->h) {
        mi_assist_detector_free(d);
        if ((st = mi_session_create(&d->s, d->model, (int64_t[4]){ 1, 3, img->h, img->w }, d->threads))) return st;
        d->w = img->w, d->h = img->h;
    }
    /* torchvision's detectors take RGB in [0, 1] (ToTensor); the model normalizes and resizes
       inside, as GeneralizedRCNNTransform does */
    const size_t hw = (size_t)img->w * img->h;
    float *x = malloc(hw * 3 * sizeof *x);
    if (!x) return MI_FAIL(MI_ERR_NOMEM, "frame: out of memory for a %dx%d input", img->w, img->h);
    for (size_t i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) x[c * hw + i] = (float)img->px[3 * i + c] / 255.0f;
    st = mi_session_run(d->s, x);
    free(x);
    if (st) return st;

    mi_detection det[MI_ASSIST_MAX_LESIONS];
    const int nd = mi_session_detections(d->s, 0, det, MI_ASSIST_MAX_LESIONS);
    const int nc = mi_model_num_classes(d->model);
    for (int i = 0; i < nd && i < MI_ASSIST_MAX_LESIONS && *n < cap; i++) {
        if (det[i].score < p->score_threshold) continue;
        if (!det[i].probs)
            return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: the detector gives no per-detection class probabilities",
                           mi_model_path(d->model));
        mi_assist_lesion *l = &out[(*n)++];
        memset(l, 0, sizeof *l);
        l->label = det[i].label;
        l->score = det[i].score;
        memcpy(l->box, det[i].box, sizeof l->box);
        memcpy(l->probs, det[i].probs, (size_t)nc * sizeof *l->probs);
        l->high_risk = l->label > 0 && l->label < nc && p->high_risk_label[l->label] && l->score >= p->alert_threshold;
    }
    return MI_OK;
}

typedef struct {
    uint8_t *p;
    size_t   n, cap;
    bool     oom;
} membuf;

static void to_mem(void *ctx, void *data, int size) {
    membuf *b = ctx;
    if (b->oom || size <= 0) return;
    if (b->n + (size_t)size > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16384;
        while (cap < b->n + (size_t)size) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, data, (size_t)size);
    b->n += (size_t)size;
}

mi_status mi_assist_thumbnail_base(mi_image *small, const mi_image *img, int max_side) {
    const int side = img->w > img->h ? img->w : img->h;
    const double s = side > max_side ? (double)max_side / side : 1.0;
    int tw = (int)(img->w * s + 0.5), th = (int)(img->h * s + 0.5);
    return mi_image_resize_aa(small, img, tw < 1 ? 1 : tw, th < 1 ? 1 : th);
}

mi_status mi_assist_thumbnail(const mi_image *small, int w, int h, const mi_assist_lesion *l, void **jpg, size_t *n) {
    *jpg = NULL;
    *n = 0;
    mi_image t;
    mi_status st = mi_image_alloc(&t, small->w, small->h);
    if (st) return st;
    memcpy(t.px, small->px, (size_t)t.w * t.h * 3);
    static const uint8_t red[3] = { 255, 40, 40 }, yellow[3] = { 255, 220, 0 };
    const double sx = (double)t.w / w, sy = (double)t.h / h;
    mi_draw_rect(&t, (int)(l->box[0] * sx), (int)(l->box[1] * sy), (int)(l->box[2] * sx), (int)(l->box[3] * sy), 2,
                 l->high_risk ? red : yellow);
    membuf b = { 0 };
    /* JPEG: a 160-pixel frame of mucosa is ~5 KB and ~1 ms, PNG ~50 KB and ~20 ms per finding
     * (its deflate of camera noise), which every answer with a lesion waited for */
    const int ok = stbi_write_jpg_to_func(to_mem, &b, t.w, t.h, 3, t.px, 90);
    mi_image_free(&t);
    if (!ok || b.oom) {
        free(b.p);
        return MI_FAIL(MI_ERR_NOMEM, "thumbnail: cannot encode a %dx%d JPEG", small->w, small->h);
    }
    *jpg = b.p;
    *n = b.n;
    return MI_OK;
}
