/* pipelines/patho/report.c - a slide's result as JSON, and its lesion regions as GeoJSON. Field
 * names are stable: scripts read them (docs/patho.md lists them). */
#include "pipelines/patho/patho.h"
#include "pipelines/patho/regions.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double r6(double v) { return round(v * 1e6) / 1e6; }

static cJSON *tile_json(const mi_patho_tile *t, const mi_patho_result *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "x", (double)t->x);
    cJSON_AddNumberToObject(o, "y", (double)t->y);
    cJSON_AddNumberToObject(o, "size", round(r->tile_l0));
    cJSON_AddNumberToObject(o, "col", t->col);
    cJSON_AddNumberToObject(o, "row", t->row);
    cJSON_AddNumberToObject(o, "score", r6(t->score));
    cJSON_AddNumberToObject(o, "p_mean", r6(t->p_mean));
    cJSON_AddNumberToObject(o, "tissue", r6(t->tissue));
    cJSON_AddBoolToObject(o, "edge", t->edge);
    if (t->tile_class >= 0 && t->tile_class < r->nclasses)
        cJSON_AddStringToObject(o, "tile_class", r->labels[t->tile_class]);
    return o;
}

cJSON *mi_patho_result_json(const mi_patho_result *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", r->classified ? "classified" : "no_tissue");
    if (r->classified) {
        cJSON_AddStringToObject(o, "class", r->labels[r->cls]);
        cJSON_AddNumberToObject(o, "class_index", r->cls);
        cJSON *p = cJSON_AddObjectToObject(o, "probabilities");
        for (int i = 0; i < r->nclasses; i++) cJSON_AddNumberToObject(p, r->labels[i], r6(r->probs[i]));
    }
    cJSON *s = cJSON_AddObjectToObject(o, "slide");
    cJSON_AddStringToObject(s, "vendor", r->vendor);
    cJSON_AddNumberToObject(s, "width", (double)r->width);
    cJSON_AddNumberToObject(s, "height", (double)r->height);
    cJSON_AddNumberToObject(s, "levels", r->levels);
    cJSON_AddNumberToObject(s, "mpp", r6(r->slide_mpp));
    cJSON_AddStringToObject(s, "mpp_source", r->mpp_source);
    cJSON *t = cJSON_AddObjectToObject(o, "tiles");
    cJSON_AddNumberToObject(t, "downsample", r6(r->ds));
    cJSON_AddNumberToObject(t, "size_level0", r6(r->tile_l0));
    cJSON_AddNumberToObject(t, "cols", r->cols);
    cJSON_AddNumberToObject(t, "rows", r->rows);
    cJSON_AddNumberToObject(t, "total", (double)r->tiles_total);
    cJSON_AddNumberToObject(t, "skipped_by_thumbnail", (double)r->tiles_skipped);
    cJSON_AddNumberToObject(t, "read", (double)r->tiles_read);
    cJSON_AddNumberToObject(t, "tissue", (double)r->tiles_kept);
    cJSON_AddNumberToObject(t, "edge", (double)r->tiles_edge);
    cJSON_AddNumberToObject(t, "stain_fit_failed", (double)r->stain_failed);
    cJSON_AddNumberToObject(t, "otsu_threshold", r->otsu_threshold);
    if (r->seconds > 0) cJSON_AddNumberToObject(t, "per_second", round(r->tiles_read / r->seconds * 10) / 10);
    cJSON *top = cJSON_AddArrayToObject(o, "top_tiles");
    for (int i = 0; i < r->ntop; i++) cJSON_AddItemToArray(top, tile_json(&r->top[i], r));
    cJSON *g = cJSON_AddObjectToObject(o, "graph");
    cJSON_AddNumberToObject(g, "nodes", r->ntop);
    cJSON_AddNumberToObject(g, "edges", r->edges);
    return o;
}

mi_status mi_patho_geojson(const mi_patho *p, const char *path, const mi_patho_result *r, int *nregions) {
    *nregions = 0;
    cJSON *settings = mi_patho_settings_json(p);
    const double thr = cJSON_GetObjectItem(settings, "lesion_threshold")->valuedouble;
    cJSON_Delete(settings);
    mi_region *reg = NULL;
    int n = 0, dropped = 0;
    mi_status st = MI_OK;
    if (r->map && (st = mi_regions_trace(r->map, r->map_w, r->map_h, (float)thr, 1000, &reg, &n, &dropped)))
        return st;
    /* the regions carry the slide's class when it is a lesion class; on a slide classed negative
     * (or not classed) they are what the V-Net alone suspects */
    static const uint8_t colors[4][3] = { { 90, 160, 90 }, { 230, 180, 30 }, { 230, 100, 20 }, { 200, 0, 0 } };
    const bool lesion = r->classified && r->cls > 0;
    const char *name = lesion ? r->labels[r->cls] : "suspected lesion";
    const uint8_t *col = colors[lesion ? (r->cls < 4 ? r->cls : 3) : 1];
    cJSON *fc = mi_regions_geojson(reg, n, r->map_ds, r->map_ds, r->width,
                                   r->height, r->slide_mpp, name, col);
    mi_regions_free(reg, n);
    char *s = cJSON_PrintUnformatted(fc);
    cJSON_Delete(fc);
    FILE *f = s ? fopen(path, "w") : NULL;
    if (!s) st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory writing the regions", path);
    else if (!f || fputs(s, f) < 0 || fputc('\n', f) == EOF)
        st = MI_FAIL(MI_ERR_IO, "%s: cannot write the regions: %s", path, strerror(errno));
    if (f && fclose(f) != 0 && !st) st = MI_FAIL(MI_ERR_IO, "%s: cannot write the regions: %s", path, strerror(errno));
    free(s);
    if (!st) *nregions = n;
    return st;
}
