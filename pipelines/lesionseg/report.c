/* pipelines/lesionseg/report.c - one segmented image (or video frame) as JSON: stable field
 * names, every length in original pixels, every distance in cm, and numbers printed with 6
 * significant digits so that the same result prints the same text on every run. */
#include "pipelines/lesionseg/lesionseg.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>

cJSON *mi_lesionseg_number(double v) {
    if (!isfinite(v)) return cJSON_CreateNull();
    char s[32];
    snprintf(s, sizeof s, "%.6g", v);
    return cJSON_CreateRaw(s);
}

cJSON *mi_lesionseg_result_json(const mi_lesionseg_result *r, int max_components) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "width", r->w);
    cJSON_AddNumberToObject(o, "height", r->h);
    cJSON *les = cJSON_AddObjectToObject(o, "lesion");
    cJSON_AddNumberToObject(les, "area_px", (double)r->area);
    cJSON_AddItemToObject(les, "area_pct", mi_lesionseg_number(r->area_pct));
    cJSON_AddItemToObject(les, "mean_prob", mi_lesionseg_number(r->mean_prob));   /* null: no lesion pixel */
    cJSON *d = cJSON_AddObjectToObject(o, "depth_cm");
    cJSON_AddItemToObject(d, "min", mi_lesionseg_number(r->depth_cm_min));
    cJSON_AddItemToObject(d, "mean", mi_lesionseg_number(r->depth_cm_mean));
    cJSON_AddItemToObject(d, "max", mi_lesionseg_number(r->depth_cm_max));
    cJSON_AddNumberToObject(o, "components_total", r->ncomps);
    cJSON *cs = cJSON_AddArrayToObject(o, "components");
    for (int i = 0; i < r->ncomps && i < max_components; i++) {
        const mi_lesion_component *c = &r->comps[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddItemToArray(cs, j);
        cJSON *box = cJSON_AddArrayToObject(j, "box");
        for (int k = 0; k < 4; k++) cJSON_AddItemToArray(box, cJSON_CreateNumber(c->box[k]));
        cJSON_AddNumberToObject(j, "area_px", (double)c->area);
        cJSON_AddItemToObject(j, "area_pct", mi_lesionseg_number(100.0 * (double)c->area / ((double)r->w * r->h)));
        cJSON_AddItemToObject(j, "mean_prob", mi_lesionseg_number(c->mean_prob));
        cJSON_AddItemToObject(j, "mean_depth_cm", mi_lesionseg_number(c->mean_depth_cm));
    }
    return o;
}
