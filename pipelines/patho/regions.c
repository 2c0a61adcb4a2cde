/* pipelines/patho/regions.c - lesion probability map -> regions -> GeoJSON.
 *
 * Outlines follow pixel edges, so a polygon covers exactly the map pixels of its region (no
 * smoothing to argue about at audit). Every boundary edge is directed with its region pixel on
 * the right (y down): a pixel's own outline runs clockwise on the screen. Edges meet at a grid
 * corner in pairs, except where two region pixels touch only at that corner (a saddle): there the
 * walk turns right, which keeps it with the pixel it came along, so that diagonal neighbours, which
 * 4-connectivity makes separate regions, get separate outlines. Each closed walk is then one ring
 * of one region; the sign of its area says outer (clockwise) or hole. */
#include "pipelines/patho/regions.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { E, S, W, N };                                      /* directions, clockwise on the screen */
static const int DX[4] = { 1, 0, -1, 0 }, DY[4] = { 0, 1, 0, -1 };

typedef struct {
    int64_t pixels, first;
    double  p_sum, p_max;
    int     out;                                          /* index in the output, -1: dropped */
} comp;

void mi_regions_free(mi_region *r, int n) {
    for (int i = 0; r && i < n; i++) {
        for (int k = 0; k < r[i].nrings; k++) free(r[i].rings[k].xy);
        free(r[i].rings);
    }
    free(r);
}

/* 4-connected components of fg; labels[i] = component + 1, 0 for background */
static int label(const uint8_t *fg, const float *map, int w, int h, int32_t *labels, int32_t *queue,
                 comp **comps) {
    int n = 0, cap = 0;
    *comps = NULL;
    for (int64_t s = 0; s < (int64_t)w * h; s++) {
        if (!fg[s] || labels[s]) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            comp *c = realloc(*comps, (size_t)cap * sizeof *c);
            if (!c) return -1;
            *comps = c;
        }
        comp *c = &(*comps)[n++];
        *c = (comp){ .first = s, .out = -1 };
        int64_t qh = 0, qt = 0;
        queue[qt++] = (int32_t)s;
        labels[s] = n;
        while (qh < qt) {
            const int32_t p = queue[qh++];
            const int x = p % w, y = p / w;
            c->pixels++;
            c->p_sum += map[p];
            if (map[p] > c->p_max) c->p_max = map[p];
            for (int d = 0; d < 4; d++) {
                const int nx = x + DX[d], ny = y + DY[d];
                if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                const int32_t q = ny * w + nx;
                if (fg[q] && !labels[q]) labels[q] = n, queue[qt++] = q;
            }
        }
    }
    return n;
}

static int by_size(const void *a, const void *b) {
    const comp *x = *(comp *const *)a, *y = *(comp *const *)b;
    if (x->pixels != y->pixels) return x->pixels > y->pixels ? -1 : 1;
    return x->first < y->first ? -1 : x->first > y->first;
}

static mi_status add_ring(mi_region *r, const int32_t *xy, int n) {
    mi_ring *rings = realloc(r->rings, (size_t)(r->nrings + 1) * sizeof *rings);
    if (!rings) return MI_FAIL(MI_ERR_NOMEM, "regions: out of memory");
    r->rings = rings;
    int32_t *copy = malloc((size_t)n * 2 * sizeof *copy);
    if (!copy) return MI_FAIL(MI_ERR_NOMEM, "regions: out of memory");
    memcpy(copy, xy, (size_t)n * 2 * sizeof *copy);
    rings[r->nrings++] = (mi_ring){ copy, n };
    return MI_OK;
}

mi_status mi_regions_trace(const float *map, int w, int h, float threshold, int max_regions,
                           mi_region **regions, int *nregions, int *dropped) {
    *regions = NULL;
    *nregions = *dropped = 0;
    if (w < 1 || h < 1 || (int64_t)w * h > (1 << 26) || max_regions < 0)
        return MI_FAIL(MI_ERR_ARG, "regions: a %dx%d map (at most 2^26 pixels) or max_regions %d", w, h, max_regions);
    const int64_t np = (int64_t)w * h, nv = (int64_t)(w + 1) * (h + 1);
    uint8_t *fg = malloc((size_t)np), *edges = calloc((size_t)nv, 1), *used = calloc((size_t)nv, 1);
    int32_t *labels = calloc((size_t)np, sizeof *labels), *queue = malloc((size_t)np * sizeof *queue);
    int32_t *xy = NULL;
    comp *comps = NULL, **order = NULL;
    mi_region *out = NULL;
    int nout = 0;
    mi_status st = MI_OK;
    if (!fg || !edges || !used || !labels || !queue) {
        st = MI_FAIL(MI_ERR_NOMEM, "regions: out of memory for a %dx%d map", w, h);
        goto done;
    }
    for (int64_t i = 0; i < np; i++) fg[i] = map[i] >= threshold;   /* NaN: false */
    const int nc = label(fg, map, w, h, labels, queue, &comps);
    if (nc < 0) {
        st = MI_FAIL(MI_ERR_NOMEM, "regions: out of memory");
        goto done;
    }
    /* the largest max_regions components, returned in the order of their first pixel */
    if (nc > 0 && !(order = malloc((size_t)nc * sizeof *order))) {
        st = MI_FAIL(MI_ERR_NOMEM, "regions: out of memory");
        goto done;
    }
    for (int i = 0; i < nc; i++) order[i] = &comps[i];
    if (nc > 0) qsort(order, (size_t)nc, sizeof *order, by_size);
    const int keep = nc < max_regions ? nc : max_regions;
    for (int i = 0; i < keep; i++) order[i]->out = 0;
    for (int i = 0; i < nc; i++)
        if (comps[i].out == 0) comps[i].out = nout++;
    *dropped = nc - keep;
    if (nout > 0 && !(out = calloc((size_t)nout, sizeof *out))) {
        st = MI_FAIL(MI_ERR_NOMEM, "regions: out of memory");
        goto done;
    }
    for (int i = 0; i < nc; i++)
        if (comps[i].out >= 0) {
            mi_region *r = &out[comps[i].out];
            r->pixels = comps[i].pixels;
            r->p_mean = comps[i].p_sum / (double)comps[i].pixels;
            r->p_max = comps[i].p_max;
        }
    /* boundary edges of kept pixels: the side towards a pixel outside the region, directed
     * clockwise around the pixel; edges[v] holds the directions leaving grid corner v */
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const int32_t l = labels[(int64_t)y * w + x];
            if (!l || comps[l - 1].out < 0) continue;
            const int W1 = w + 1;
            if (y == 0 || !fg[(int64_t)(y - 1) * w + x]) edges[(int64_t)y * W1 + x] |= 1 << E;
            if (x == w - 1 || !fg[(int64_t)y * w + x + 1]) edges[(int64_t)y * W1 + x + 1] |= 1 << S;
            if (y == h - 1 || !fg[(int64_t)(y + 1) * w + x]) edges[(int64_t)(y + 1) * W1 + x + 1] |= 1 << W;
            if (x == 0 || !fg[(int64_t)y * w + x - 1]) edges[(int64_t)(y + 1) * W1 + x] |= 1 << N;
        }
    /* a ring has at most as many corners as the map has edges */
    int64_t cap = 0;
    for (int64_t v = 0; v < nv; v++) cap += __builtin_popcount(edges[v]);
    if (cap > 0 && !(xy = malloc((size_t)(cap + 1) * 2 * sizeof *xy))) {
        st = MI_FAIL(MI_ERR_NOMEM, "regions: out of memory");
        goto done;
    }
    for (int64_t v0 = 0; v0 < nv; v0++)
        for (int d0 = 0; d0 < 4; d0++) {
            if (!(edges[v0] & ~used[v0] & (1 << d0))) continue;
            const int x0 = (int)(v0 % (w + 1)), y0 = (int)(v0 / (w + 1));
            /* the pixel on the right of the first edge names the region */
            const int px = d0 == E ? x0 : d0 == S ? x0 - 1 : d0 == W ? x0 - 1 : x0;
            const int py = d0 == E ? y0 : d0 == S ? y0 : d0 == W ? y0 - 1 : y0 - 1;
            mi_region *r = &out[comps[labels[(int64_t)py * w + px] - 1].out];
            int n = 0, x = x0, y = y0, d = d0, prev = -1;
            int64_t area2 = 0;
            for (;;) {
                const int64_t v = (int64_t)y * (w + 1) + x;
                used[v] |= (uint8_t)(1 << d);
                if (d != prev) xy[2 * n] = x, xy[2 * n + 1] = y, n++;     /* a corner */
                prev = d;
                const int nx = x + DX[d], ny = y + DY[d];
                area2 += (int64_t)x * ny - (int64_t)nx * y;
                x = nx, y = ny;
                const int64_t nvx = (int64_t)y * (w + 1) + x;
                int next = -1;
                for (int t = 1; t >= -1 && next < 0; t--) {             /* right, straight, left */
                    const int c = (d + 4 + t) & 3;
                    if (edges[nvx] & (1 << c)) next = c;
                }
                if (nvx == v0 && next == d0) break;
                MI_ASSERT(next >= 0 && !(used[nvx] & (1 << next)));    /* every corner joins edges in pairs */
                d = next;
            }
            if (d0 == prev && n > 1) {           /* the start was mid-side: not a corner */
                memmove(xy, xy + 2, (size_t)(n - 1) * 2 * sizeof *xy);
                n--;
            }
            /* a region's outer ring is met first in scan order (its first pixel's top edge) */
            MI_ASSERT((area2 > 0) == (r->nrings == 0));
            if ((st = add_ring(r, xy, n))) goto done;
        }
    *regions = out;
    *nregions = nout;
    out = NULL;
done:
    mi_regions_free(out, nout);
    free(fg), free(edges), free(used), free(labels), free(queue), free(xy), free(comps), free(order);
    return st;
}

static cJSON *ring_json(const mi_ring *r, double sx, double sy, int64_t width, int64_t height) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i <= r->n; i++) {                        /* GeoJSON rings repeat the first vertex */
        const int k = i % r->n;
        double x = r->xy[2 * k] * sx, y = r->xy[2 * k + 1] * sy;
        x = x < 0 ? 0 : x > (double)width ? (double)width : x;
        y = y < 0 ? 0 : y > (double)height ? (double)height : y;
        cJSON *p = cJSON_CreateArray();
        cJSON_AddItemToArray(p, cJSON_CreateNumber(round(x * 100) / 100));
        cJSON_AddItemToArray(p, cJSON_CreateNumber(round(y * 100) / 100));
        cJSON_AddItemToArray(a, p);
    }
    return a;
}

cJSON *mi_regions_geojson(const mi_region *regions, int n, double ds_x, double ds_y, int64_t width,
                          int64_t height, double mpp, const char *class_name, const uint8_t color[3]) {
    cJSON *fc = cJSON_CreateObject();
    cJSON_AddStringToObject(fc, "type", "FeatureCollection");
    cJSON *features = cJSON_AddArrayToObject(fc, "features");
    for (int i = 0; i < n; i++) {
        const mi_region *r = &regions[i];
        cJSON *f = cJSON_CreateObject();
        cJSON_AddItemToArray(features, f);
        cJSON_AddStringToObject(f, "type", "Feature");
        cJSON *g = cJSON_AddObjectToObject(f, "geometry");
        cJSON_AddStringToObject(g, "type", "Polygon");
        cJSON *coords = cJSON_AddArrayToObject(g, "coordinates");
        for (int k = 0; k < r->nrings; k++) cJSON_AddItemToArray(coords, ring_json(&r->rings[k], ds_x, ds_y, width, height));
        cJSON *p = cJSON_AddObjectToObject(f, "properties");
        cJSON_AddStringToObject(p, "objectType", "annotation");
        char name[64];
        snprintf(name, sizeof name, "lesion %d", i + 1);
        cJSON_AddStringToObject(p, "name", name);
        cJSON *cl = cJSON_AddObjectToObject(p, "classification");
        cJSON_AddStringToObject(cl, "name", class_name);
        cJSON *col = cJSON_AddArrayToObject(cl, "color");
        for (int c = 0; c < 3; c++) cJSON_AddItemToArray(col, cJSON_CreateNumber(color[c]));
        cJSON *m = cJSON_AddObjectToObject(p, "measurements");
        const double area = (double)r->pixels * ds_x * ds_y;
        cJSON_AddNumberToObject(m, "area_px", round(area));
        if (mpp > 0) cJSON_AddNumberToObject(m, "area_um2", round(area * mpp * mpp));
        cJSON_AddNumberToObject(m, "lesion_probability_mean", round(r->p_mean * 1e4) / 1e4);
        cJSON_AddNumberToObject(m, "lesion_probability_max", round(r->p_max * 1e4) / 1e4);
    }
    return fc;
}
