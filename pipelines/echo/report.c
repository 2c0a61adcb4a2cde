/* pipelines/echo/report.c - one M-mode result as JSON: stable field names, every length with its
 * unit, and nothing that needs a calibration the image did not have. */
#include "pipelines/echo/echo.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>

static const char *const len_name[MI_ECHO_NLEN] = { "IVSd", "LVIDd", "LVPWd", "IVSs", "LVIDs", "LVPWs" };

static const char *source_name(mi_echo_cal_source s) {
    return s == MI_ECHO_CAL_DICOM ? "dicom_ultrasound_region" : s == MI_ECHO_CAL_OPTION ? "option" : "none";
}

/* a number with 6 significant digits, or null when it is not one */
static cJSON *num(double v) {
    if (!isfinite(v)) return cJSON_CreateNull();
    char s[32];
    snprintf(s, sizeof s, "%.6g", v);
    return cJSON_CreateRaw(s);
}

static void measure(cJSON *m, const char *name, double v, const char *unit) {
    cJSON *o = cJSON_AddObjectToObject(m, name);
    cJSON_AddItemToObject(o, "value", num(v));
    cJSON_AddStringToObject(o, "unit", unit);
}

cJSON *mi_echo_result_json(const mi_echo_result *r) {
    cJSON *o = cJSON_CreateObject();
    const mi_echo_calibration *c = &r->cal;
    cJSON *cal = cJSON_AddObjectToObject(o, "calibration");
    cJSON_AddItemToObject(cal, "mm_per_px", num(c->mm_per_px > 0 ? c->mm_per_px : NAN));
    cJSON_AddItemToObject(cal, "s_per_px", num(c->s_per_px > 0 ? c->s_per_px : NAN));
    cJSON_AddStringToObject(cal, "depth_source", source_name(c->depth_source));
    cJSON_AddStringToObject(cal, "time_source", source_name(c->time_source));
    if (!r->found) {
        cJSON_AddStringToObject(o, "status", "no_cycle");
        cJSON_AddItemToObject(o, "best_score", num(r->score));
        cJSON_AddStringToObject(o, "note", "no complete cardiac cycle found at or above the minimum score");
        return o;
    }
    cJSON_AddStringToObject(o, "status", "ok");
    cJSON *cy = cJSON_AddObjectToObject(o, "cycle");
    cJSON *box = cJSON_AddArrayToObject(cy, "box");
    for (int i = 0; i < 4; i++) cJSON_AddItemToArray(box, num(r->box[i]));
    cJSON_AddItemToObject(cy, "score", num(r->score));
    cJSON *roi = cJSON_AddArrayToObject(cy, "crop");
    for (int i = 0; i < 4; i++) cJSON_AddItemToArray(roi, cJSON_CreateNumber(r->roi[i]));
    cJSON *pts = cJSON_AddArrayToObject(o, "points");
    for (int k = 0; k < 8; k++) {
        cJSON *p = cJSON_CreateArray();
        cJSON_AddItemToArray(p, num(r->pts[k][0]));
        cJSON_AddItemToArray(p, num(r->pts[k][1]));
        cJSON_AddItemToArray(pts, p);
    }
    cJSON *m = cJSON_AddObjectToObject(o, "measures");
    const bool depth = c->mm_per_px > 0;
    for (int i = 0; i < MI_ECHO_NLEN; i++)
        measure(m, len_name[i], depth ? r->len_mm[i] : r->len_px[i], depth ? "mm" : "px");
    measure(m, "FS", r->fs, "%");
    if (depth) {
        measure(m, "EDV", r->edv, "mL");
        measure(m, "ESV", r->esv, "mL");
        measure(m, "EF", r->ef, "%");
    }
    if (c->s_per_px > 0) {
        measure(m, "cycle_length", r->cycle_s, "s");
        measure(m, "heart_rate", r->heart_rate, "1/min");
    }
    if (depth && r->ordered)
        cJSON_AddStringToObject(o, "ef_flag", r->ef < 50 ? "low" : r->ef > 70 ? "high" : "normal");
    else
        cJSON_AddNullToObject(o, "ef_flag");
    if (!depth)
        cJSON_AddStringToObject(o, "note", "uncalibrated: no depth scale (no DICOM ultrasound region, no --mm-per-px), "
                                "so lengths are in pixels and no volumes or EF are given");
    if (!r->ordered)
        cJSON_AddStringToObject(o, "warning", "the wall points are out of order (a thickness or diameter <= 0): "
                                "no FS, volumes or EF; check the image");
    return o;
}
