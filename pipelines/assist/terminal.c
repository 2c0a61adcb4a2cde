/* pipelines/assist/terminal.c - see terminal.h. */
#include "pipelines/assist/terminal.h"
#include "pipelines/io/draw.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *mi_trigger_name(mi_trigger_kind k) {
    switch (k) {
    case MI_TRIG_AUTO:   return "auto";
    case MI_TRIG_FREEZE: return "freeze";
    case MI_TRIG_PEDAL:  return "pedal";
    default:             return "none";
    }
}

void mi_trigger_init(mi_trigger *t, const mi_trigger_config *cfg) {
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->last_target = -1;
    t->last_mad = -1;
}

void mi_freeze_cells(const uint8_t *rgb, int w, int h, float cells[MI_FREEZE_GRID * MI_FREEZE_GRID]) {
    const int G = MI_FREEZE_GRID;
    for (int cy = 0; cy < G; cy++)
        for (int cx = 0; cx < G; cx++) {
            /* cell bounds by integer division: every pixel in exactly one cell, for any size */
            const int x0 = cx * w / G, x1 = (cx + 1) * w / G, y0 = cy * h / G, y1 = (cy + 1) * h / G;
            double sum = 0;
            int64_t n = 0;
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++) {
                    const uint8_t *p = rgb + ((size_t)y * w + x) * 3;
                    sum += 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
                    n++;
                }
            cells[cy * G + cx] = n ? (float)(sum / (double)n) : 0.f;
        }
}

mi_trigger_kind mi_trigger_step(mi_trigger *t, int64_t index, const uint8_t *rgb, int w, int h,
                                int *pedal, bool free_to_send) {
    const mi_trigger_config *c = &t->cfg;
    if (c->freeze) {
        float cells[MI_FREEZE_GRID * MI_FREEZE_GRID];
        mi_freeze_cells(rgb, w, h, cells);
        if (t->have_prev) {
            double sum = 0;
            for (int i = 0; i < MI_FREEZE_GRID * MI_FREEZE_GRID; i++) sum += fabs((double)cells[i] - t->prev[i]);
            t->last_mad = sum / (MI_FREEZE_GRID * MI_FREEZE_GRID);
            if (t->last_mad < c->freeze_eps) {
                if (++t->still >= c->freeze_n && !t->freeze_sent) t->freeze_due = true;
            } else {   /* the scope moved: the next still stretch is a new freeze */
                t->still = 0;
                t->freeze_sent = t->freeze_due = false;
            }
        }
        memcpy(t->prev, cells, sizeof cells);
        t->have_prev = true;
    }
    if (!free_to_send) return MI_TRIG_NONE;
    mi_trigger_kind k = MI_TRIG_NONE;
    if (c->pedal && pedal && *pedal > 0) {
        (*pedal)--;
        k = MI_TRIG_PEDAL;
    } else if (c->freeze && t->freeze_due) {
        t->freeze_due = false;
        t->freeze_sent = true;
        k = MI_TRIG_FREEZE;
    } else if (c->auto_k > 0 && (t->last_target < 0 || index - t->last_target >= c->auto_k)) {
        k = MI_TRIG_AUTO;
    }
    if (k != MI_TRIG_NONE) t->last_target = index;
    return k;
}

/* ---- answers ---- */

static mi_status want_string(const cJSON *o, const char *key, char *dst, size_t cap, bool required) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    dst[0] = 0;
    if (!v || cJSON_IsNull(v)) {
        if (required) return MI_FAIL(MI_ERR_FORMAT, "server answer: no \"%s\"", key);
        return MI_OK;
    }
    if (!cJSON_IsString(v)) return MI_FAIL(MI_ERR_FORMAT, "server answer: \"%s\" is not a string", key);
    snprintf(dst, cap, "%s", v->valuestring);
    return MI_OK;
}

static int by_score_desc(const void *a, const void *b) {
    const mi_assist_lesion *x = a, *y = b;
    return (x->score < y->score) - (x->score > y->score);
}

mi_status mi_assist_answer_parse(mi_assist_answer *a, const char *body, size_t n) {
    memset(a, 0, sizeof *a);
    a->server_ms = -1;
    cJSON *root = cJSON_ParseWithLength(body, n);
    if (!root) return MI_FAIL(MI_ERR_FORMAT, "server answer: not JSON (%zu bytes)", n);
    mi_status st = MI_OK;
    if (!cJSON_IsObject(root)) { st = MI_FAIL(MI_ERR_FORMAT, "server answer: not a JSON object"); goto out; }
    if ((st = want_string(root, "exam_id", a->exam_id, sizeof a->exam_id, true)) != MI_OK) goto out;
    if (!a->exam_id[0]) { st = MI_FAIL(MI_ERR_FORMAT, "server answer: \"exam_id\" is empty"); goto out; }
    if ((st = want_string(root, "terminal", a->terminal, sizeof a->terminal, false)) != MI_OK) goto out;
    if ((st = want_string(root, "trigger", a->trigger, sizeof a->trigger, false)) != MI_OK) goto out;
    if ((st = want_string(root, "reason", a->reason, sizeof a->reason, false)) != MI_OK) goto out;
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(root, "timestamp_ms");
    if (ts && !cJSON_IsNumber(ts)) { st = MI_FAIL(MI_ERR_FORMAT, "server answer: \"timestamp_ms\" is not a number"); goto out; }
    if (ts && !(fabs(ts->valuedouble) < 9.2e18)) {   /* beyond int64 (or NaN): the cast would be undefined */
        st = MI_FAIL(MI_ERR_FORMAT, "server answer: \"timestamp_ms\" is out of range");
        goto out;
    }
    a->timestamp_ms = ts ? (int64_t)ts->valuedouble : -1;
    const cJSON *judged = cJSON_GetObjectItemCaseSensitive(root, "judged");
    if (!cJSON_IsBool(judged)) { st = MI_FAIL(MI_ERR_FORMAT, "server answer: \"judged\" is missing or not true/false"); goto out; }
    a->judged = cJSON_IsTrue(judged);
    const cJSON *hr = cJSON_GetObjectItemCaseSensitive(root, "high_risk");
    if (hr && !cJSON_IsBool(hr)) { st = MI_FAIL(MI_ERR_FORMAT, "server answer: \"high_risk\" is not true/false"); goto out; }
    a->high_risk = cJSON_IsTrue(hr);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (cJSON_IsObject(model) &&
        (st = want_string(model, "model_version", a->model_version, sizeof a->model_version, false)) != MI_OK) goto out;
    const cJSON *timing = cJSON_GetObjectItemCaseSensitive(root, "timing_ms");
    const cJSON *total = cJSON_IsObject(timing) ? cJSON_GetObjectItemCaseSensitive(timing, "total") : NULL;
    if (cJSON_IsNumber(total)) a->server_ms = total->valuedouble;

    const cJSON *les = cJSON_GetObjectItemCaseSensitive(root, "lesions");
    if (les && !cJSON_IsNull(les) && !cJSON_IsArray(les)) {
        st = MI_FAIL(MI_ERR_FORMAT, "server answer: \"lesions\" is not a list");
        goto out;
    }
    /* all are read and checked, the best MI_ASSIST_MAX_LESIONS kept: a running top-k in place */
    int i = 0;
    const cJSON *l;
    cJSON_ArrayForEach(l, les) {
        mi_assist_lesion x;
        memset(&x, 0, sizeof x);
        if (!cJSON_IsObject(l)) { st = MI_FAIL(MI_ERR_FORMAT, "server answer: lesions[%d] is not an object", i); goto out; }
        if ((st = want_string(l, "type", x.type, sizeof x.type, true)) != MI_OK) {
            st = MI_FAIL(MI_ERR_FORMAT, "server answer: lesions[%d] has no \"type\" string", i);
            goto out;
        }
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(l, "score");
        if (!cJSON_IsNumber(sc) || !(sc->valuedouble >= 0 && sc->valuedouble <= 1)) {
            st = MI_FAIL(MI_ERR_FORMAT, "server answer: lesions[%d] \"score\" is not a number in [0, 1]", i);
            goto out;
        }
        x.score = (float)sc->valuedouble;
        const cJSON *lhr = cJSON_GetObjectItemCaseSensitive(l, "high_risk");
        if (lhr && !cJSON_IsBool(lhr)) {
            st = MI_FAIL(MI_ERR_FORMAT, "server answer: lesions[%d] \"high_risk\" is not true/false", i);
            goto out;
        }
        x.high_risk = cJSON_IsTrue(lhr);
        const cJSON *box = cJSON_GetObjectItemCaseSensitive(l, "box");
        if (!cJSON_IsArray(box) || cJSON_GetArraySize(box) != 4) {
            st = MI_FAIL(MI_ERR_FORMAT, "server answer: lesions[%d] \"box\" is not a list of 4 numbers", i);
            goto out;
        }
        for (int j = 0; j < 4; j++) {
            const cJSON *v = cJSON_GetArrayItem(box, j);
            /* a box past 2^20 pixels is no box in any frame we show */
            if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1048576.0) {
                st = MI_FAIL(MI_ERR_FORMAT, "server answer: lesions[%d] \"box\"[%d] is not a finite pixel coordinate", i, j);
                goto out;
            }
            x.box[j] = (float)v->valuedouble;
        }
        if (a->n < MI_ASSIST_MAX_LESIONS) a->les[a->n++] = x;
        else if (x.score > a->les[MI_ASSIST_MAX_LESIONS - 1].score) a->les[MI_ASSIST_MAX_LESIONS - 1] = x;
        qsort(a->les, (size_t)a->n, sizeof *a->les, by_score_desc);
        i++;
    }
    a->n_total = i;
out:
    cJSON_Delete(root);
    return st;
}

/* ---- overlay ---- */

const uint8_t MI_OVERLAY_BOX_RGB[3]   = { 0, 255, 0 };
const uint8_t MI_OVERLAY_ALERT_RGB[3] = { 255, 0, 0 };
const uint8_t MI_OVERLAY_FAULT_RGB[3] = { 255, 230, 0 };
static const uint8_t WHITE[3] = { 255, 255, 255 }, BLACK[3] = { 0, 0, 0 }, PANEL[3] = { 24, 24, 24 };

/* text on a dark panel, so it reads on any tissue; returns the panel's height */
static int label(mi_image *im, int x, int y, int scale, const char *s, const uint8_t fg[3], const uint8_t bg[3]) {
    const int tw = mi_draw_text_width(s) * scale, th = 12 * scale, pad = 2 * scale;
    if (x + tw + 2 * pad > im->w) x = im->w - tw - 2 * pad;
    if (x < 0) x = 0;
    if (y < 0) y = 0;
    mi_draw_fill(im, x, y, tw + 2 * pad, th, bg);
    mi_draw_text(im, x + pad, y + pad, scale, im->w - x - pad, s, fg);
    return th;
}

void mi_overlay_draw(mi_image *im, const mi_overlay_info *o) {
    /* sizes follow the frame: legible at 480 lines, not a wall of text at 1080 */
    const int scale = im->h >= 720 ? 3 : im->h >= 360 ? 2 : 1;
    const int thick = im->h >= 720 ? 4 : im->h >= 360 ? 3 : 2;
    char line[192];
    const mi_assist_answer *a = o->answer;
    if (a) {
        for (int i = 0; i < a->n; i++) {
            const mi_assist_lesion *l = &a->les[i];
            int x0 = (int)lrintf(l->box[0] * o->scale_x), y0 = (int)lrintf(l->box[1] * o->scale_y);
            int x1 = (int)lrintf(l->box[2] * o->scale_x), y1 = (int)lrintf(l->box[3] * o->scale_y);
            if (x1 - x0 < 2 * thick) x1 = x0 + 2 * thick;
            if (y1 - y0 < 2 * thick) y1 = y0 + 2 * thick;
            mi_draw_rect(im, x0, y0, x1, y1, thick, MI_OVERLAY_BOX_RGB);
            snprintf(line, sizeof line, "%s %.2f", l->type, l->score);
            int ly = y0 - 12 * scale - 1;
            label(im, x0, ly < 0 ? y1 + 1 : ly, scale, line, BLACK, MI_OVERLAY_BOX_RGB);
        }
    }
    /* exam info, top left: ids only, never patient data */
    const long long t = (long long)o->t_ms;
    if (o->exam_id && o->exam_id[0])
        snprintf(line, sizeof line, "exam %s%s%s | %s | %02lld:%02lld.%lld", o->exam_id,
                 o->exam_number && o->exam_number[0] ? " #" : "", o->exam_number ? o->exam_number : "",
                 o->terminal ? o->terminal : "?", t / 60000, t / 1000 % 60, t / 100 % 10);
    else
        snprintf(line, sizeof line, "no open exam | %s | %02lld:%02lld.%lld", o->terminal ? o->terminal : "?",
                 t / 60000, t / 1000 % 60, t / 100 % 10);
    int y = label(im, 0, 0, scale, line, WHITE, PANEL);
    if (o->fault && o->fault[0]) {
        snprintf(line, sizeof line, "FAULT: %s", o->fault);
        label(im, im->w, y + scale, scale, line, BLACK, MI_OVERLAY_FAULT_RGB);   /* right-aligned */
    }
    int bottom = im->h;
    if (a && a->high_risk && a->n > 0) {
        /* the most probable lesion the server flagged, else (a server that flags only the
         * answer) the most probable one */
        const mi_assist_lesion *h = &a->les[0];
        for (int i = 0; i < a->n; i++)
            if (a->les[i].high_risk) { h = &a->les[i]; break; }
        snprintf(line, sizeof line, "HIGH RISK: %s %.2f", h->type, h->score);
        const int bh = 16 * scale;
        bottom -= bh;
        mi_draw_fill(im, 0, bottom, im->w, bh, MI_OVERLAY_ALERT_RGB);
        mi_draw_text(im, 4 * scale, bottom + 2 * scale, scale, im->w - 8 * scale, line, WHITE);
    }
    if (o->status && o->status[0]) label(im, 0, bottom - 12 * scale, scale, o->status, WHITE, PANEL);
}

int64_t mi_overlay_count_rgb(const uint8_t *px, int w, int h, const uint8_t rgb[3], int tol) {
    int64_t n = 0;
    for (int64_t i = 0; i < (int64_t)w * h; i++) {
        const uint8_t *p = px + i * 3;
        if (abs(p[0] - rgb[0]) <= tol && abs(p[1] - rgb[1]) <= tol && abs(p[2] - rgb[2]) <= tol) n++;
    }
    return n;
}
