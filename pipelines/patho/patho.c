/* pipelines/patho/patho.c - one slide, streamed: the order of the steps is in patho.h.
 *
 * Determinism: tiles are read and normalised in parallel, but everything that combines tiles
 * (the top-K keeper, the probability map, the counters) runs on one thread in grid order, and the
 * V-Net gives every item of a batch the same bits whatever the batch and the thread count. */
#include "pipelines/patho/patho.h"

#include "nn/gcn.h"
#include "nn/model.h"
#include "pipelines/io/slide.h"
#include "pipelines/patho/graph.h"
#include "pipelines/patho/stain.h"
#include "pipelines/patho/tissue.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct mi_patho {
    mi_model   *vnet;
    mi_gcn     *gcn;
    /* settings in force */
    double      mpp, slide_mpp, tissue_ratio, edge_threshold, lesion_threshold;
    int         tile, top_k, batch, threads, thumb_side, tissue_gray;
    mi_patho_otsu_scope otsu;
    mi_patho_stain stain;
    char        edge_metric[16], edge_compare[16];
    mi_sim_metric metric;
    mi_adj_compare compare;
    int         feat;                        /* feature vector length */
    float       mean[3], std[3];
    mi_macenko  macenko_ref;
    mi_reinhard reinhard_ref;
    bool        have_macenko, have_reinhard;
    void      (*progress)(void *, int64_t, int64_t);
    void       *user;
};

const mi_model *mi_patho_vnet(const mi_patho *p) { return p->vnet; }
const mi_weights *mi_patho_gcn(const mi_patho *p) { return mi_gcn_weights(p->gcn); }

void mi_patho_close(mi_patho *p) {
    if (!p) return;
    mi_gcn_close(p->gcn);
    mi_model_close(p->vnet);
    free(p);
}

/* a number from the V-Net blob's metadata, or def when absent */
static mi_status meta_double(const mi_model *m, const char *key, double lo, double hi, double def, double *out) {
    const mi_weights *w = mi_model_weights(m);
    double d = def;
    mi_status st = mi_weights_meta(w, key) ? mi_weights_meta_double(w, key, &d) : MI_OK;
    if (st) return st;
    if (!(d >= lo && d <= hi))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata '%s' = %g, expected a number in [%g, %g]", mi_model_path(m), key,
                       d, lo, hi);
    *out = d;
    return MI_OK;
}

/* numbers of a JSON list, nested lists read row by row ([[a, b], [c, d]] gives a, b, c, d) */
static int flatten(const cJSON *a, double *out, int n, int k) {
    for (const cJSON *e = a ? a->child : NULL; e && k >= 0; e = e->next) {
        if (cJSON_IsArray(e)) k = flatten(e, out, n, k);
        else if (cJSON_IsNumber(e) && isfinite(e->valuedouble) && k < n) out[k++] = e->valuedouble;
        else k = -1;
    }
    return k;
}

/* n numbers from the V-Net blob's metadata, a JSON list (a 3x2 matrix as 3 lists of 2); *have
 * false when absent */
static mi_status meta_list(const mi_model *m, const char *key, int n, double *out, bool *have) {
    const char *v = mi_model_meta(m, key);
    *have = false;
    if (!v) return MI_OK;
    cJSON *a = cJSON_Parse(v);
    const bool ok = cJSON_IsArray(a) && flatten(a, out, n, 0) == n;
    cJSON_Delete(a);
    if (!ok) return MI_FAIL(MI_ERR_FORMAT, "%s: metadata '%s' must be a JSON list of %d finite numbers",
                            mi_model_path(m), key, n);
    *have = true;
    return MI_OK;
}

static mi_status settings(mi_patho *p, const mi_patho_opts *o) {
    const mi_model *m = p->vnet;
    const char *path = mi_model_path(m);
    mi_status st;
    double d;
    bool have;
    if (strcmp(mi_model_arch(m), "vnet2d"))
        return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: arch '%s' is not a 2-D V-Net (vnet2d)", path, mi_model_arch(m));
    if ((st = meta_double(m, "mpp", 0.05, 100, 0.5, &p->mpp))) return st;
    if (o->mpp > 0) p->mpp = o->mpp;
    p->slide_mpp = o->slide_mpp;
    if ((st = meta_double(m, "tile_size", 16, 4096, 512, &d))) return st;
    p->tile = o->tile > 0 ? o->tile : (int)d;
    if ((st = meta_double(m, "tissue_ratio", 0, 1, 0.70, &p->tissue_ratio))) return st;
    if (o->tissue_ratio > 0) p->tissue_ratio = o->tissue_ratio;
    p->otsu = o->otsu;
    p->tissue_gray = o->tissue_gray;
    /* stain references: both methods' are optional, the chosen one's is required */
    double he[6];
    if ((st = meta_list(m, "stain_he", 6, he, &p->have_macenko))) return st;
    if (p->have_macenko && (st = meta_list(m, "stain_max_c", 2, p->macenko_ref.max_c, &have))) return st;
    p->have_macenko = p->have_macenko && have;
    for (int i = 0; i < 6; i++) p->macenko_ref.he[i / 2][i % 2] = he[i];    /* 3x2, row-major as JSON nests it */
    p->macenko_ref.status = MI_STAIN_OK;
    if ((st = meta_list(m, "reinhard_mean", 3, p->reinhard_ref.mean, &p->have_reinhard))) return st;
    if (p->have_reinhard && (st = meta_list(m, "reinhard_std", 3, p->reinhard_ref.std, &have))) return st;
    p->have_reinhard = p->have_reinhard && have;
    p->stain = o->stain;
    if (p->stain == MI_PATHO_STAIN_DEFAULT) {
        const char *s = mi_model_meta(m, "stain");
        p->stain = !s || !strcmp(s, "macenko") ? MI_PATHO_STAIN_MACENKO : !strcmp(s, "reinhard") ? MI_PATHO_STAIN_REINHARD
                 : !strcmp(s, "none") ? MI_PATHO_STAIN_NONE : MI_PATHO_STAIN_DEFAULT;
        if (p->stain == MI_PATHO_STAIN_DEFAULT)
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'stain' = '%.20s' is not macenko, reinhard or none", path, s);
    }
    if (p->stain == MI_PATHO_STAIN_MACENKO && !p->have_macenko)
        return MI_FAIL(MI_ERR_FORMAT, "%s: Macenko normalization needs the reference stains in metadata 'stain_he' "
                       "(3x2) and 'stain_max_c' (2)", path);
    if (p->stain == MI_PATHO_STAIN_REINHARD && !p->have_reinhard)
        return MI_FAIL(MI_ERR_FORMAT, "%s: Reinhard normalization needs metadata 'reinhard_mean' and 'reinhard_std'", path);
    double ms[3];
    static const float imean[3] = { 0.485f, 0.456f, 0.406f }, istd[3] = { 0.229f, 0.224f, 0.225f };
    memcpy(p->mean, imean, sizeof imean);
    memcpy(p->std, istd, sizeof istd);
    if ((st = meta_list(m, "mean", 3, ms, &have))) return st;
    for (int c = 0; have && c < 3; c++) p->mean[c] = (float)ms[c];
    if ((st = meta_list(m, "std", 3, ms, &have))) return st;
    for (int c = 0; have && c < 3; c++) {
        if (!(ms[c] > 0)) return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'std' must be positive", path);
        p->std[c] = (float)ms[c];
    }
    /* graph settings live with the GCN */
    const mi_weights *g = mi_gcn_weights(p->gcn);
    long long k = 10;
    if (mi_weights_meta(g, "top_k") && (st = mi_weights_meta_int(g, "top_k", 1, 4096, &k))) return st;
    p->top_k = o->top_k > 0 ? o->top_k : (int)k;
    const char *em = o->edge_metric ? o->edge_metric : mi_weights_meta(g, "edge_metric");
    const char *ec = o->edge_compare ? o->edge_compare : mi_weights_meta(g, "edge_compare");
    snprintf(p->edge_metric, sizeof p->edge_metric, "%s", em ? em : "pearson");
    snprintf(p->edge_compare, sizeof p->edge_compare, "%s", ec ? ec : "ge");
    if (mi_sim_metric_parse(p->edge_metric, &p->metric))
        return MI_FAIL(MI_ERR_ARG, "%s: edge metric '%s' is not pearson or cosine", g->path, p->edge_metric);
    if (mi_adj_compare_parse(p->edge_compare, &p->compare))
        return MI_FAIL(MI_ERR_ARG, "%s: edge comparison '%s' is not ge or abs_ge", g->path, p->edge_compare);
    p->edge_threshold = 0.5;
    if (mi_weights_meta(g, "edge_threshold") && (st = mi_weights_meta_double(g, "edge_threshold", &p->edge_threshold)))
        return st;
    if (!isnan(o->edge_threshold)) p->edge_threshold = o->edge_threshold;
    if (!(p->edge_threshold >= -1 && p->edge_threshold <= 1))
        return MI_FAIL(MI_ERR_ARG, "%s: edge threshold %g is outside [-1, 1]", g->path, p->edge_threshold);
    p->lesion_threshold = o->lesion_threshold > 0 ? o->lesion_threshold : 0.5;
    p->batch = o->batch > 0 ? o->batch : 4;
    p->threads = o->threads;
    p->thumb_side = o->thumb_side > 0 ? o->thumb_side : 2048;
    p->progress = o->progress;
    p->user = o->user;
    return MI_OK;
}

mi_status mi_patho_open(mi_patho **out, mi_model *vnet, mi_weights *gcn, const mi_patho_opts *o) {
    *out = NULL;
    mi_patho *p = calloc(1, sizeof *p);
    if (!p) {
        mi_model_close(vnet);
        mi_weights_close(gcn);
        return MI_FAIL(MI_ERR_NOMEM, "out of memory");
    }
    p->vnet = vnet;
    mi_status st = mi_gcn_open_weights(&p->gcn, gcn);
    if (!st) st = settings(p, o);
    if (!st) {
        /* the V-Net's feature vector is the GCN's node */
        const char *fd = mi_model_meta(vnet, "feature_dim");
        p->feat = fd ? atoi(fd) : 64;
        if (mi_gcn_in_dim(p->gcn) != p->feat)
            st = MI_FAIL(MI_ERR_SHAPE, "%s: the GCN takes %lld features per node, the V-Net %s gives %d",
                         mi_patho_gcn(p)->path, (long long)mi_gcn_in_dim(p->gcn), mi_model_path(vnet), p->feat);
        else if (mi_gcn_num_classes(p->gcn) > MI_PATHO_MAX_CLASSES)
            st = MI_FAIL(MI_ERR_UNSUPPORTED, "%s: %d classes, at most %d", mi_patho_gcn(p)->path, mi_gcn_num_classes(p->gcn),
                         MI_PATHO_MAX_CLASSES);
    }
    if (st) {
        mi_patho_close(p);
        return st;
    }
    *out = p;
    return MI_OK;
}

static const char *stain_name(mi_patho_stain s) {
    return s == MI_PATHO_STAIN_MACENKO ? "macenko" : s == MI_PATHO_STAIN_REINHARD ? "reinhard" : "none";
}

cJSON *mi_patho_settings_json(const mi_patho *p) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "mpp", p->mpp);
    cJSON_AddNumberToObject(o, "tile_size", p->tile);
    cJSON_AddNumberToObject(o, "tissue_ratio", p->tissue_ratio);
    cJSON_AddStringToObject(o, "otsu", p->tissue_gray > 0 ? "fixed" : p->otsu == MI_PATHO_OTSU_TILE ? "tile" : "thumbnail");
    if (p->tissue_gray > 0) cJSON_AddNumberToObject(o, "tissue_gray", p->tissue_gray);
    cJSON_AddStringToObject(o, "stain", stain_name(p->stain));
    cJSON_AddNumberToObject(o, "top_k", p->top_k);
    cJSON_AddStringToObject(o, "edge_metric", p->edge_metric);
    cJSON_AddStringToObject(o, "edge_compare", p->edge_compare);
    cJSON_AddNumberToObject(o, "edge_threshold", p->edge_threshold);
    cJSON_AddNumberToObject(o, "lesion_threshold", p->lesion_threshold);
    cJSON_AddNumberToObject(o, "batch", p->batch);
    cJSON_AddNumberToObject(o, "thumbnail_side", p->thumb_side);
    if (p->slide_mpp > 0) cJSON_AddNumberToObject(o, "slide_mpp", p->slide_mpp);
    return o;
}

void mi_patho_result_free(mi_patho_result *r) {
    free(r->tiles);
    free(r->top);
    free(r->map);
    mi_image_free(&r->thumb);
    memset(r, 0, sizeof *r);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One tile's work before the network, done by one thread: read, tissue, stain, tensor. */
typedef struct {
    int64_t  x, y;
    int      col, row;
    bool     edge, keep, stain_fit;
    double   tissue;
    int      in_w, in_h;                 /* pixels inside the slide (from the top-left) */
    mi_status st;
    char     err[256];
} job;

typedef struct {
    mi_patho  *p;
    mi_slide  *slide;
    mi_patho_result *r;
    int        T, otsu;
    size_t     scratch_bytes;            /* the stain steps', per tile */
} run_ctx;

/* One thread's share of the work: a one-thread session and buffers for `batch` tiles. Tiles are
 * small and independent, so threads take whole tiles: many small parallel regions inside one
 * network run would leave threads waiting on each other, worst on a loaded machine. */
typedef struct {
    mi_session *sess;
    uint8_t   **rgb, **gray, **norm;
    void      **scratch;
    float      *x;                       /* the batch tensor */
    job        *jobs;
    int         nb, nk;                  /* tiles given, tiles kept (first in jobs) */
    mi_status   st;
    char        err[320];
} worker;

static void worker_free(worker *w, int batch) {
    mi_session_destroy(w->sess);
    for (int b = 0; b < batch; b++) {
        if (w->rgb) free(w->rgb[b]);
        if (w->gray) free(w->gray[b]);
        if (w->norm) free(w->norm[b]);
        if (w->scratch) free(w->scratch[b]);
    }
    free(w->rgb), free(w->gray), free(w->norm), free(w->scratch), free(w->x), free(w->jobs);
}

static mi_status worker_init(worker *w, const run_ctx *c, const char *path) {
    const int B = c->p->batch, T = c->T;
    const size_t n = (size_t)T * T;
    w->rgb = calloc((size_t)B, sizeof *w->rgb), w->gray = calloc((size_t)B, sizeof *w->gray);
    w->norm = calloc((size_t)B, sizeof *w->norm), w->scratch = calloc((size_t)B, sizeof *w->scratch);
    w->x = malloc((size_t)B * 3 * n * sizeof *w->x);
    w->jobs = calloc((size_t)B, sizeof *w->jobs);
    bool ok = w->rgb && w->gray && w->norm && w->scratch && w->x && w->jobs;
    for (int b = 0; ok && b < B; b++)
        ok = (w->rgb[b] = malloc(n * 3)) && (w->gray[b] = malloc(n)) && (w->norm[b] = malloc(n * 3)) &&
             (w->scratch[b] = malloc(c->scratch_bytes ? c->scratch_bytes : 1));
    if (!ok) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory for a batch of %d tiles of %d px", path, B, T);
    const int64_t shape[4] = { B, 3, T, T };
    static const char *const outs[] = { "seg", "features", "tile_logits" };
    return mi_session_create_outputs(&w->sess, c->p->vnet, shape, 1, outs, 3);
}

static void prepare(const run_ctx *c, worker *w, job *j, int slot) {
    const mi_patho *p = c->p;
    const int T = c->T;
    const int64_t n = (int64_t)T * T;
    uint8_t *rgb = w->rgb[slot], *gray = w->gray[slot];
    j->st = mi_slide_read(c->slide, j->x, j->y, c->r->ds, T, T, rgb, &j->edge);
    if (j->st) {
        snprintf(j->err, sizeof j->err, "%s", mi_last_error());
        return;
    }
    mi_patho_gray(gray, rgb, n);
    /* only the part inside the slide counts: the padding is white by construction */
    const double inx = ((double)c->r->width - (double)j->x) / c->r->ds, iny = ((double)c->r->height - (double)j->y) / c->r->ds;
    j->in_w = inx >= T ? T : inx < 1 ? 1 : (int)ceil(inx);
    j->in_h = iny >= T ? T : iny < 1 ? 1 : (int)ceil(iny);
    int64_t hist[256] = { 0 };
    for (int y = 0; y < j->in_h; y++)
        for (int x = 0; x < j->in_w; x++) hist[gray[(int64_t)y * T + x]]++;
    int t = c->otsu;
    if (p->tissue_gray <= 0 && p->otsu == MI_PATHO_OTSU_TILE) (void)mi_patho_otsu(hist, &t);   /* never empty */
    j->tissue = mi_patho_tissue_ratio(hist, t);
    j->keep = j->tissue >= p->tissue_ratio;
    if (!j->keep) return;
    const uint8_t *src = rgb;
    j->stain_fit = true;
    if (p->stain == MI_PATHO_STAIN_MACENKO) {
        mi_macenko fit;
        j->st = mi_patho_macenko_normalize(w->norm[slot], rgb, n, &p->macenko_ref, w->scratch[slot], c->scratch_bytes, &fit);
        /* a tissue tile whose stains cannot be separated is not one the network was trained on */
        j->stain_fit = fit.status == MI_STAIN_OK;
        j->keep = j->stain_fit;
        src = w->norm[slot];
    } else if (p->stain == MI_PATHO_STAIN_REINHARD) {
        j->st = mi_patho_reinhard_normalize(w->norm[slot], rgb, n, &p->reinhard_ref);
        src = w->norm[slot];
    }
    if (j->st) {
        snprintf(j->err, sizeof j->err, "%s", mi_last_error());
        return;
    }
    if (!j->keep) return;
    /* (x / 255 - mean) / std in float, as the training's tensors */
    float *x = w->x + (size_t)slot * 3 * n;
    for (int ch = 0; ch < 3; ch++)
        for (int64_t i = 0; i < n; i++) x[ch * n + i] = ((float)src[3 * i + ch] / 255.0f - p->mean[ch]) / p->std[ch];
}

/* the thumbnail's tissue share inside a tile's level-0 rectangle (pixel centres) */
static double thumb_tissue(const uint8_t *mask, int tw, int th, double sx, double sy, int64_t x0, int64_t y0, double side) {
    int ax = (int)ceil((double)x0 * sx - 0.5), bx = (int)ceil(((double)x0 + side) * sx - 0.5);
    int ay = (int)ceil((double)y0 * sy - 0.5), by = (int)ceil(((double)y0 + side) * sy - 0.5);
    ax = ax < 0 ? 0 : ax, ay = ay < 0 ? 0 : ay, bx = bx > tw ? tw : bx, by = by > th ? th : by;
    if (bx <= ax || by <= ay) {                      /* smaller than a thumbnail pixel: the one it is in */
        const int px = (int)((double)x0 * sx), py = (int)((double)y0 * sy);
        return px < tw && py < th ? mask[(size_t)py * tw + px] : 0;
    }
    int64_t n = 0;
    for (int y = ay; y < by; y++)
        for (int x = ax; x < bx; x++) n += mask[(size_t)y * tw + x];
    return (double)n / ((double)(bx - ax) * (by - ay));
}

/* The tile's lesion probability onto the map: every map pixel whose centre lies in the tile's
 * part of the slide gets the mean of the tile pixels its square overlaps (one pixel when the map
 * is finer than the tiles, several when it is coarser). */
static void paint(float *map, int tw, int th, double mds, const job *j, const float *pl, int T, double ds) {
    const double x1 = (double)j->x + j->in_w * ds, y1 = (double)j->y + j->in_h * ds;
    const int mx0 = (int)ceil((double)j->x / mds - 0.5), my0 = (int)ceil((double)j->y / mds - 0.5);
    for (int my = my0 < 0 ? 0 : my0; my < th && (my + 0.5) * mds < y1; my++)
        for (int mx = mx0 < 0 ? 0 : mx0; mx < tw && (mx + 0.5) * mds < x1; mx++) {
            int u0 = (int)floor((mx * mds - (double)j->x) / ds), u1 = (int)ceil(((mx + 1) * mds - (double)j->x) / ds);
            int v0 = (int)floor((my * mds - (double)j->y) / ds), v1 = (int)ceil(((my + 1) * mds - (double)j->y) / ds);
            u0 = u0 < 0 ? 0 : u0, v0 = v0 < 0 ? 0 : v0;
            u1 = u1 > j->in_w ? j->in_w : u1, v1 = v1 > j->in_h ? j->in_h : v1;
            double acc = 0;
            for (int v = v0; v < v1; v++)
                for (int u = u0; u < u1; u++) acc += pl[(int64_t)v * T + u];
            if (u1 > u0 && v1 > v0) map[(size_t)my * tw + mx] = (float)(acc / ((double)(u1 - u0) * (v1 - v0)));
        }
}

/* a worker's batch: each tile prepared, the kept ones moved to the front in order, one run */
static void work(const run_ctx *c, worker *w) {
    w->st = MI_OK;
    for (int b = 0; b < w->nb; b++) {
        job *j = &w->jobs[b];
        prepare(c, w, j, w->nk);           /* into the next free slot: kept tiles stay in front */
        if (j->st) {
            w->st = j->st;
            snprintf(w->err, sizeof w->err, "%s", j->err);
            return;
        }
        if (!j->keep) continue;
        if (w->nk != b) {
            job kept = *j;
            w->jobs[b] = w->jobs[w->nk];
            w->jobs[w->nk] = kept;
        }
        w->nk++;
    }
    if (w->nk > 0 && (w->st = mi_session_run_n(w->sess, w->x, w->nk)))
        snprintf(w->err, sizeof w->err, "%s", mi_last_error());
}

mi_status mi_patho_run(mi_patho *p, const char *path, mi_patho_result *r) {
    memset(r, 0, sizeof *r);
    const double t0 = now();
    mi_slide *slide = NULL;
    worker *workers = NULL;
    int nworkers = 0;
    mi_patho_topk top;
    void *topmem = NULL;
    run_ctx c = { .p = p, .r = r, .T = p->tile };
    float *feats = NULL, *adj = NULL;
    double *sim = NULL, *simscratch = NULL;
    void *gscratch = NULL;
    uint8_t *mask = NULL;
    int64_t cap_tiles = 0;
    mi_status st = mi_slide_open(&slide, path);
    if (st) return st;
    c.slide = slide;
    const mi_slide_info *info = mi_slide_get_info(slide);
    r->width = info->w, r->height = info->h, r->levels = info->levels;
    snprintf(r->vendor, sizeof r->vendor, "%s", info->vendor);
    if (info->mpp_x > 0) r->slide_mpp = info->mpp_x, r->mpp_source = "slide";
    else if (p->slide_mpp > 0) r->slide_mpp = p->slide_mpp, r->mpp_source = "option";
    else r->slide_mpp = p->mpp, r->mpp_source = "assumed";
    if (p->slide_mpp > 0 && info->mpp_x > 0 && fabs(p->slide_mpp - info->mpp_x) > 1e-9)
        r->slide_mpp = p->slide_mpp, r->mpp_source = "option";
    r->ds = p->mpp / r->slide_mpp;
    if (r->ds < 0.99) {
        st = MI_FAIL(MI_ERR_UNSUPPORTED, "%s: scanned at %.4g um/px, coarser than the %.4g um/px the model works at: "
                     "tiles would be up-sampled", path, r->slide_mpp, p->mpp);
        goto done;
    }
    const int T = p->tile;
    r->tile_l0 = T * r->ds;
    r->cols = (int)ceil((double)r->width / r->tile_l0);
    r->rows = (int)ceil((double)r->height / r->tile_l0);
    r->tiles_total = (int64_t)r->cols * r->rows;
    /* the thumbnail, its tissue mask and the map on its grid */
    double tds;
    if ((st = mi_slide_thumbnail(slide, p->thumb_side, &r->thumb, &tds))) goto done;
    const int tw = r->thumb.w, th = r->thumb.h;
    const int64_t tn = (int64_t)tw * th;
    mask = malloc((size_t)tn);
    r->map = malloc((size_t)tn * sizeof *r->map);
    if (!mask || !r->map) {
        st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory for a %dx%d thumbnail", path, tw, th);
        goto done;
    }
    r->map_w = tw, r->map_h = th, r->map_ds = tds;
    for (int64_t i = 0; i < tn; i++) r->map[i] = NAN;             /* not analysed */
    mi_patho_gray(mask, r->thumb.px, tn);
    int64_t hist[256] = { 0 };
    for (int64_t i = 0; i < tn; i++) hist[mask[i]]++;
    c.otsu = p->tissue_gray;
    if (p->tissue_gray <= 0 && (st = mi_patho_otsu(hist, &c.otsu))) goto done;
    r->otsu_threshold = c.otsu;
    for (int64_t i = 0; i < tn; i++) mask[i] = mask[i] <= c.otsu;
    const double sx = 1 / tds, sy = 1 / tds;          /* thumbnail pixel (i, j) starts at level 0 (i, j) * tds */
    /* a worker per thread, and the keeper of the K best tiles */
    const int B = p->batch, W = p->threads > 0 ? p->threads : omp_get_num_procs();
    const int64_t n = (int64_t)T * T;
    c.scratch_bytes = mi_patho_macenko_scratch_bytes(n);
    workers = calloc((size_t)W, sizeof *workers);
    feats = malloc((size_t)p->top_k * p->feat * sizeof *feats);
    if (!workers || !feats) {
        st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    nworkers = W;
    for (int w = 0; w < W; w++)
        if ((st = worker_init(&workers[w], &c, path))) goto done;
    const size_t topbytes = mi_patho_topk_bytes(p->top_k, p->feat);
    if (!(topmem = malloc(topbytes))) {
        st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory for the top-%d tiles", path, p->top_k);
        goto done;
    }
    if ((st = mi_patho_topk_init(&top, p->top_k, p->feat, topmem, topbytes))) goto done;
    /* the tiles in grid order, W batches of candidates at a time */
    int64_t next = 0;
    while (next < r->tiles_total) {
        int given = 0;
        for (int w = 0; w < W; w++) workers[w].nb = workers[w].nk = 0;
        for (; next < r->tiles_total && given < W * B; next++) {
            const int col = (int)(next % r->cols), row = (int)(next / r->cols);
            const int64_t x = (int64_t)llround(col * r->tile_l0), y = (int64_t)llround(row * r->tile_l0);
            /* background in the thumbnail is not decoded: half the minimum leaves room for the
             * thumbnail's coarser view of the tissue edge */
            if (p->tissue_gray <= 0 && p->otsu == MI_PATHO_OTSU_SLIDE &&
                thumb_tissue(mask, tw, th, sx, sy, x, y, r->tile_l0) < p->tissue_ratio / 2) {
                r->tiles_skipped++;
                continue;
            }
            worker *wk = &workers[given / B];
            wk->jobs[wk->nb++] = (job){ .x = x, .y = y, .col = col, .row = row };
            given++;
        }
        if (given == 0) break;
        const int busy = (given + B - 1) / B;
        #pragma omp parallel for num_threads(busy) schedule(static, 1)
        for (int w = 0; w < busy; w++) work(&c, &workers[w]);
        r->tiles_read += given;
        /* merge in grid order: worker w holds candidates w*B .. w*B+nb-1 */
        for (int w = 0; w < busy; w++) {
            worker *wk = &workers[w];
            if (wk->st) {
                st = MI_FAIL(wk->st, "%s", wk->err);
                goto done;
            }
            for (int b = 0; b < wk->nb; b++)
                r->stain_failed += wk->jobs[b].tissue >= p->tissue_ratio && !wk->jobs[b].stain_fit;
            if (wk->nk == 0) continue;
            int64_t s1[4], s2[4], s3[4];
            const float *seg = mi_session_output(wk->sess, "seg", s1);
            const float *f = mi_session_output(wk->sess, "features", s2);
            const float *tl = mi_session_output(wk->sess, "tile_logits", s3);
            const int ncls = (int)s3[1];
            for (int b = 0; b < wk->nk; b++) {
                const job *j = &wk->jobs[b];
                const float *pl = seg + ((size_t)b * 2 + 1) * n;       /* channel 1: lesion */
                double s = 0;
                for (int yy = 0; yy < j->in_h; yy++)
                    for (int xx = 0; xx < j->in_w; xx++) s += pl[(int64_t)yy * T + xx];
                paint(r->map, tw, th, tds, j, pl, T, r->ds);
                int cls = 0;
                for (int k = 1; k < ncls; k++)
                    if (tl[(size_t)b * ncls + k] > tl[(size_t)b * ncls + cls]) cls = k;
                if (r->tiles_kept == cap_tiles) {
                    cap_tiles = cap_tiles ? 2 * cap_tiles : 256;
                    mi_patho_tile *nt = realloc(r->tiles, (size_t)cap_tiles * sizeof *nt);
                    if (!nt) {
                        st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory for the tile list", path);
                        goto done;
                    }
                    r->tiles = nt;
                }
                const int64_t idx = r->tiles_kept++;
                r->tiles[idx] = (mi_patho_tile){ .x = j->x, .y = j->y, .col = j->col, .row = j->row, .score = s,
                                                 .p_mean = s / ((double)j->in_w * j->in_h), .tissue = j->tissue,
                                                 .edge = j->edge, .tile_class = cls };
                r->tiles_edge += j->edge;
                if ((st = mi_patho_topk_push(&top, (float)s, idx, f + (size_t)b * p->feat))) {
                    st = MI_FAIL(st, "%s: tile (%d, %d): %s", path, j->col, j->row, mi_last_error());
                    goto done;
                }
            }
        }
        if (p->progress) p->progress(p->user, next, r->tiles_total);
    }
    /* the graph of the K best tiles and its class */
    r->nclasses = mi_gcn_num_classes(p->gcn);
    for (int i = 0; i < r->nclasses; i++) r->labels[i] = mi_gcn_label(p->gcn, i);
    const int K = (int)mi_patho_topk_sort(&top);
    if (K > 0) {
        const size_t gbytes = mi_gcn_scratch_bytes(p->gcn, K);
        r->top = malloc((size_t)K * sizeof *r->top);
        sim = malloc((size_t)K * K * sizeof *sim);
        simscratch = malloc(mi_patho_similarity_scratch(K, p->feat) * sizeof *simscratch);
        adj = malloc((size_t)K * K * sizeof *adj);
        gscratch = malloc(gbytes);
        if (!r->top || !sim || !simscratch || !adj || !gscratch) {
            st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory for the graph", path);
            goto done;
        }
        for (int i = 0; i < K; i++) {
            float sc;
            int64_t idx;
            mi_patho_topk_item(&top, i, &sc, &idx);
            r->top[i] = r->tiles[idx];
        }
        r->ntop = K;
        mi_patho_topk_features(&top, feats);
        if ((st = mi_patho_similarity(sim, feats, K, p->feat, p->metric, simscratch)) ||
            (st = mi_patho_adjacency(adj, sim, K, p->compare, p->edge_threshold)))
            goto done;
        for (int i = 0; i < K; i++)
            for (int k = i + 1; k < K; k++) r->edges += adj[(size_t)i * K + k] != 0;
        if ((st = mi_gcn_forward(p->gcn, feats, adj, K, gscratch, gbytes, r->logits, r->probs))) goto done;
        r->cls = 0;
        for (int k = 1; k < r->nclasses; k++)
            if (r->probs[k] > r->probs[r->cls]) r->cls = k;
        r->classified = true;
    }
    r->seconds = now() - t0;
done:
    for (int w = 0; w < nworkers; w++) worker_free(&workers[w], p->batch);
    free(workers), free(topmem);
    free(feats), free(sim), free(simscratch), free(adj), free(gscratch), free(mask);
    mi_slide_close(slide);
    if (st) mi_patho_result_free(r);
    return st;
}
