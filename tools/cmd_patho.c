/* tools/cmd_patho.c - `medinfer patho`: whole-slide images (or PNG/JPEG) to a gastric biopsy class,
 * the tiles behind it, a heat-map and the suspected lesion regions for QuPath. The work is
 * pipelines/patho's; this file reads the options, keeps the audit trail and writes the report
 * and pictures. The report is written whole at the end, also when a slide failed: every result
 * computed is kept. */
#include "tools/cli.h"
#include "nn/model.h"
#include "pipelines/patho/patho.h"
#include "pipelines/trust/trust.h"
#include "weights/sha256.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "usage: medinfer patho --vnet V.safetensors --gcn G.safetensors [options] SLIDE...\n"
    "  SLIDE   a whole-slide image OpenSlide reads (SVS, NDPI, MRXS, pyramidal TIFF, ...) or a\n"
    "          PNG/JPEG image\n"
    "  --mpp M              microns per pixel to analyse at (default: the V-Net blob's)\n"
    "  --slide-mpp M        level-0 microns per pixel of a file that does not say (PNG/JPEG);\n"
    "                       without it such a file is taken to be at the analysis mpp\n"
    "  --tile N             tile side in pixels at that mpp (default: the blob's, else 512)\n"
    "  --tissue-ratio R     keep a tile with at least this share of tissue (default 0.70)\n"
    "  --otsu thumbnail|tile  Otsu's tissue threshold from the slide thumbnail (default) or\n"
    "                       from each tile\n"
    "  --tissue-gray G      grey level 1-255 at or below which a pixel is tissue (instead of Otsu)\n"
    "  --stain macenko|reinhard|none   stain normalization (default: the blob's, else macenko)\n"
    "  --top-k K            graph nodes: the K tiles of highest lesion score (default: the GCN\n"
    "                       blob's, else 10)\n"
    "  --edge-metric pearson|cosine, --edge-compare ge|abs_ge, --edge-threshold T\n"
    "                       an edge joins two tiles whose feature similarity (or its absolute\n"
    "                       value) is at least T (defaults: the GCN blob's, else pearson ge 0.5)\n"
    "  --lesion-threshold P lesion probability that outlines a region (default 0.5)\n"
    "  --out FILE           the JSON report (default: stdout)\n"
    "  --heatmap DIR        write DIR/<slide name>.heatmap.png\n"
    "  --geojson DIR        write DIR/<slide name>.geojson (QuPath: File > Import objects)\n"
    "  --tiles DIR          write DIR/<slide name>.tiles.csv: every analysed tile and its score\n"
    "  --batch N            tiles per network run, per thread (default 4)\n"
    "  --threads N          worker threads (default 0: all cores); results are identical for any N\n"
    "  --quiet              no progress or summary on stderr\n"
    MI_TRUST_USAGE
    "exit: 0 every slide classified, 1 a slide or model could not be read (message names it),\n"
    "      2 usage, 4 a slide had no tile with enough tissue; trust and audit refusals: see\n"
    "      docs/trust.md. The report always holds every result computed.\n";

typedef struct {
    mi_patho     *p;
    const char   *heatmap, *geojson, *tiles, *audit, *note;
    bool          quiet;
    mi_trust_info vnet_trust, gcn_trust;
    cJSON        *results;
    const char   *current;
} patho_cli;

static void progress(void *user, int64_t done, int64_t total) {
    const patho_cli *c = user;
    fprintf(stderr, "\rmedinfer patho: %s: %lld/%lld tiles", c->current, (long long)done, (long long)total);
    if (done == total) fputc('\n', stderr);
}

static cJSON *blob_json(const char *path, const char *arch, const char *version, const char *sha) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", path);
    cJSON_AddStringToObject(o, "arch", arch);
    cJSON_AddStringToObject(o, "model_version", version);
    cJSON_AddStringToObject(o, "sha256", sha);
    return o;
}

static bool audit(const patho_cli *c, const char *sha, const cJSON *res) {
    cJSON *th = mi_patho_settings_json(c->p), *sum = cJSON_CreateObject();
    static const char *const keep[] = { "status", "class", "probabilities", "top_tiles" };
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(res, keep[i]);
        if (v) cJSON_AddItemToObject(sum, keep[i], cJSON_Duplicate(v, true));
    }
    cJSON *gm = cJSON_AddObjectToObject(sum, "gcn_model");   /* the row's model is the V-Net */
    cJSON_AddStringToObject(gm, "model_version", c->gcn_trust.model_version);
    cJSON_AddStringToObject(gm, "sha256", c->gcn_trust.blob_sha256);
    cJSON_AddStringToObject(gm, "key_id", c->gcn_trust.key_id);
    char *t = cJSON_PrintUnformatted(th), *s = cJSON_PrintUnformatted(sum);
    mi_audit_row row = { .command = "patho", .input_sha256 = sha, .thresholds_json = t, .result_json = s };
    mi_audit_row_model(&row, &c->vnet_trust);
    mi_status st = t && s ? mi_audit_append(c->audit, &row) : MI_FAIL(MI_ERR_NOMEM, "out of memory writing the audit row");
    free(t);
    free(s);
    cJSON_Delete(th);
    cJSON_Delete(sum);
    return st == MI_OK;
}

/* every analysed tile, in grid order; scores with 9 significant digits (float's round trip is
 * all they carry beyond the double sum) */
static int write_tiles(const char *path, const mi_patho_result *r) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "col,row,x,y,size,score,p_mean,tissue,edge,tile_class\n");
    for (int64_t i = 0; i < r->tiles_kept; i++) {
        const mi_patho_tile *t = &r->tiles[i];
        fprintf(f, "%d,%d,%lld,%lld,%.0f,%.9g,%.9g,%.6f,%d,%s\n", t->col, t->row, (long long)t->x, (long long)t->y,
                r->tile_l0, t->score, t->p_mean, t->tissue, t->edge, t->tile_class >= 0 && t->tile_class < r->nclasses
                ? r->labels[t->tile_class] : "");
    }
    const bool bad = ferror(f) != 0;
    return fclose(f) == 0 && !bad ? 0 : -1;
}

/* One slide: its result joins c->results (an error result when it could not be analysed).
 * Returns the exit code it contributes. */
static int one(patho_cli *c, const char *path) {
    cJSON *res = cJSON_CreateObject();
    cJSON_AddItemToArray(c->results, res);
    cJSON_AddStringToObject(res, "input", path);
    char sha[65] = "";
    if (mi_sha256_file(path, sha) != 0) {
        fprintf(stderr, "medinfer patho: %s: cannot read it (%s)\n", path, strerror(errno));
        cJSON_AddStringToObject(res, "status", "error");
        cJSON_AddStringToObject(res, "error", "cannot read the file");
        return MI_EXIT_FAIL;
    }
    cJSON_AddStringToObject(res, "input_sha256", sha);
    c->current = path;
    mi_patho_result r;
    mi_status st = mi_patho_run(c->p, path, &r);
    if (st) {
        fprintf(stderr, "medinfer patho: %s\n", mi_last_error());
        cJSON_AddStringToObject(res, "status", "error");
        cJSON_AddStringToObject(res, "error", mi_last_error());
        return MI_EXIT_FAIL;
    }
    cJSON *o = mi_patho_result_json(&r);
    for (cJSON *it = o->child; it;) {   /* the result's fields after the input's identity */
        cJSON *next = it->next;
        cJSON_AddItemToObject(res, it->string, cJSON_DetachItemViaPointer(o, it));
        it = next;
    }
    cJSON_Delete(o);
    int rc = r.classified ? MI_EXIT_OK : MI_EXIT_NO_FINDING;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char file[4096];
    if (c->heatmap) {
        char title[256];
        snprintf(title, sizeof title, "medinfer %s patho  %s  V-Net %s  GCN %s", MI_VERSION, base,
                 mi_model_version(mi_patho_vnet(c->p)), c->gcn_trust.model_version);
        snprintf(file, sizeof file, "%s/%s.heatmap.png", c->heatmap, base);
        if (mi_patho_heatmap(file, &r, title, c->note)) {
            fprintf(stderr, "medinfer patho: %s\n", mi_last_error());
            rc = MI_EXIT_FAIL;
        } else {
            cJSON_AddStringToObject(res, "heatmap", file);
        }
    }
    if (c->geojson) {
        snprintf(file, sizeof file, "%s/%s.geojson", c->geojson, base);
        int nreg;
        if (mi_patho_geojson(c->p, file, &r, &nreg)) {
            fprintf(stderr, "medinfer patho: %s\n", mi_last_error());
            rc = MI_EXIT_FAIL;
        } else {
            cJSON_AddStringToObject(res, "geojson", file);
            cJSON_AddNumberToObject(res, "regions", nreg);
        }
    }
    if (c->tiles) {
        snprintf(file, sizeof file, "%s/%s.tiles.csv", c->tiles, base);
        if (write_tiles(file, &r)) {
            fprintf(stderr, "medinfer patho: %s: %s\n", file, strerror(errno));
            rc = MI_EXIT_FAIL;
        } else {
            cJSON_AddStringToObject(res, "tiles_csv", file);
        }
    }
    if (c->audit && !audit(c, sha, res)) {
        mi_patho_result_free(&r);
        cJSON_DeleteItemFromArray(c->results, cJSON_GetArraySize(c->results) - 1);   /* withheld: not on record */
        return mi_audit_cli_fail("patho");
    }
    if (!c->quiet) {
        if (!r.classified)
            fprintf(stderr, "medinfer patho: %s: no tile with enough tissue (%lld read); no class\n", path,
                    (long long)r.tiles_read);
        else
            fprintf(stderr, "medinfer patho: %s: %s (p=%.2f), %lld tissue tiles of %lld, %.1f tiles/s\n", path,
                    r.labels[r.cls], r.probs[r.cls], (long long)r.tiles_kept, (long long)r.tiles_total,
                    r.seconds > 0 ? r.tiles_read / r.seconds : 0);
    }
    mi_patho_result_free(&r);
    return rc;
}

static int one_of(const char *opt, const char *v, const char *const *names, int n, int *out) {
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i])) return *out = i, 0;
    fprintf(stderr, "medinfer patho: %s '%s': expected", opt, v);
    for (int i = 0; i < n; i++) fprintf(stderr, "%s %s", i ? "," : "", names[i]);
    fputc('\n', stderr);
    return -1;
}

static int open_dir(const char *opt, const char *dir) {
    if (dir && mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "medinfer patho: %s %s: %s\n", opt, dir, strerror(errno));
        return -1;
    }
    return 0;
}

int cmd_patho(int argc, char **argv) {
    patho_cli c = { .quiet = false };
    mi_trust_opts trust = { 0 };
    mi_patho_opts o = { .stain = MI_PATHO_STAIN_DEFAULT, .edge_threshold = NAN };
    const char *vnet = NULL, *gcn = NULL, *out = NULL;
    char **inputs = malloc((size_t)argc * sizeof *inputs);
    int ninputs = 0;
    if (!inputs) return fprintf(stderr, "medinfer patho: out of memory\n"), MI_EXIT_FAIL;
    static const char *const valued[] = { "--vnet", "--gcn", "--out", "--heatmap", "--geojson", "--tiles", "--mpp", "--slide-mpp",
                                          "--tile", "--tissue-ratio", "--otsu", "--tissue-gray", "--stain", "--top-k",
                                          "--edge-metric", "--edge-compare", "--edge-threshold", "--lesion-threshold",
                                          "--batch", "--threads" };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int tr = mi_trust_opt(&trust, argc, argv, &i), bad = 0, known = 0;
        if (tr < 0) bad = 1;
        else if (tr) continue;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            free(inputs);
            return MI_EXIT_OK;
        } else if (!strcmp(a, "--quiet")) c.quiet = true;
        else if (a[0] != '-') inputs[ninputs++] = argv[i];
        else {
            for (size_t k = 0; k < sizeof valued / sizeof *valued; k++) known |= !strcmp(a, valued[k]);
            if (!known) {
                fprintf(stderr, "medinfer patho: unknown option %s\n", a);
                bad = 1;
            } else if (i + 1 >= argc) {
                fprintf(stderr, "medinfer patho: %s needs a value\n", a);
                bad = 1;
            } else {
                const char *v = argv[++i];
                static const char *const otsu[] = { "thumbnail", "tile" }, *const stain[] = { "none", "macenko", "reinhard" };
                static const char *const metric[] = { "pearson", "cosine" }, *const cmp[] = { "ge", "abs_ge" };
                int e;
                if (!strcmp(a, "--vnet")) vnet = v;
                else if (!strcmp(a, "--gcn")) gcn = v;
                else if (!strcmp(a, "--out")) out = v;
                else if (!strcmp(a, "--heatmap")) c.heatmap = v;
                else if (!strcmp(a, "--geojson")) c.geojson = v;
                else if (!strcmp(a, "--tiles")) c.tiles = v;
                else if (!strcmp(a, "--mpp")) bad = mi_cli_double("patho", a, v, 0.05, 100, &o.mpp);
                else if (!strcmp(a, "--slide-mpp")) bad = mi_cli_double("patho", a, v, 0.05, 100, &o.slide_mpp);
                else if (!strcmp(a, "--tile")) bad = mi_cli_int("patho", a, v, 16, 4096, &o.tile);
                else if (!strcmp(a, "--tissue-ratio")) bad = mi_cli_double("patho", a, v, 0.001, 1, &o.tissue_ratio);
                else if (!strcmp(a, "--otsu")) bad = one_of(a, v, otsu, 2, &e), o.otsu = (mi_patho_otsu_scope)e;
                else if (!strcmp(a, "--tissue-gray")) bad = mi_cli_int("patho", a, v, 1, 255, &o.tissue_gray);
                else if (!strcmp(a, "--stain")) bad = one_of(a, v, stain, 3, &e), o.stain = (mi_patho_stain)e;
                else if (!strcmp(a, "--top-k")) bad = mi_cli_int("patho", a, v, 1, 4096, &o.top_k);
                else if (!strcmp(a, "--edge-metric")) bad = one_of(a, v, metric, 2, &e), o.edge_metric = v;
                else if (!strcmp(a, "--edge-compare")) bad = one_of(a, v, cmp, 2, &e), o.edge_compare = v;
                else if (!strcmp(a, "--edge-threshold")) bad = mi_cli_double("patho", a, v, -1, 1, &o.edge_threshold);
                else if (!strcmp(a, "--lesion-threshold")) bad = mi_cli_double("patho", a, v, 0.001, 1, &o.lesion_threshold);
                else if (!strcmp(a, "--batch")) bad = mi_cli_int("patho", a, v, 1, 256, &o.batch);
                else bad = mi_cli_int("patho", a, v, 0, 4096, &o.threads);
            }
        }
        if (bad) {
            fputs(usage, stderr);
            free(inputs);
            return MI_EXIT_USAGE;
        }
    }
    if (!vnet || !gcn || ninputs == 0) {
        fprintf(stderr, "medinfer patho: %s\n", !vnet ? "--vnet is required" : !gcn ? "--gcn is required" : "no SLIDE given");
        fputs(usage, stderr);
        free(inputs);
        return MI_EXIT_USAGE;
    }
    if (open_dir("--heatmap", c.heatmap) || open_dir("--geojson", c.geojson) || open_dir("--tiles", c.tiles)) {
        free(inputs);
        return MI_EXIT_FAIL;
    }
    c.audit = trust.audit;
    FILE *f = out ? fopen(out, "w") : stdout;   /* before any work: results must have somewhere to go */
    if (!f) {
        fprintf(stderr, "medinfer patho: --out %s: %s\n", out, strerror(errno));
        free(inputs);
        return MI_EXIT_FAIL;
    }
    if (!c.quiet && isatty(2)) o.progress = progress, o.user = &c;
    /* verify, then parse: the bytes checked are the bytes that run */
    int rc = MI_EXIT_OK;
    mi_weights vw = { 0 }, gw = { 0 };
    mi_model *vm = NULL;
    mi_status st = mi_weights_open(&vw, vnet);
    if (!st && (st = mi_trust_check_weights(&vw, trust.pubkey, &c.vnet_trust))) rc = mi_trust_cli_fail("patho", st);
    else if (!st && !(st = mi_weights_open(&gw, gcn)) && (st = mi_trust_check_weights(&gw, trust.pubkey, &c.gcn_trust)))
        rc = mi_trust_cli_fail("patho", st);
    else if (!st && !(st = mi_model_open_weights(&vm, &vw)))
        st = mi_patho_open(&c.p, vm, &gw, &o);   /* takes both over */
    if (st) {
        if (rc == MI_EXIT_OK) rc = mi_cli_error("patho");
        if (!vm) mi_weights_close(&vw);
        if (!c.p && !vm) mi_weights_close(&gw);
        if (out) fclose(f);
        free(inputs);
        return rc;
    }
    c.note = mi_model_meta(vm, "intended_use");
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "command", "patho");
    cJSON *eng = cJSON_AddObjectToObject(doc, "engine");
    cJSON_AddStringToObject(eng, "version", MI_VERSION);
    cJSON_AddStringToObject(eng, "build", mi_build_git());
    cJSON *models = cJSON_AddObjectToObject(doc, "models");
    cJSON_AddItemToObject(models, "vnet", blob_json(mi_model_path(vm), mi_model_arch(vm), mi_model_version(vm),
                                                    mi_model_sha256(vm)));
    const mi_weights *g = mi_patho_gcn(c.p);
    cJSON_AddItemToObject(models, "gcn", blob_json(g->path, "gcn", c.gcn_trust.model_version, c.gcn_trust.blob_sha256));
    if (c.note) cJSON_AddStringToObject(doc, "note", c.note);
    cJSON_AddItemToObject(doc, "settings", mi_patho_settings_json(c.p));
    c.results = cJSON_AddArrayToObject(doc, "results");
    bool failed = false, none = false;
    for (int i = 0; i < ninputs; i++) {
        int r = one(&c, inputs[i]);
        if (r == MI_EXIT_FAIL) failed = true;
        else if (r == MI_EXIT_NO_FINDING) none = true;
        else if (r != MI_EXIT_OK) {   /* an audit failure stops the command: no unrecorded results */
            rc = r;
            break;
        }
    }
    if (rc == MI_EXIT_OK) rc = failed ? MI_EXIT_FAIL : none ? MI_EXIT_NO_FINDING : MI_EXIT_OK;
    char *s = cJSON_Print(doc);
    if (!s || fputs(s, f) < 0 || fputc('\n', f) == EOF || (out ? fclose(f) : fflush(f)) != 0) {
        fprintf(stderr, "medinfer patho: cannot write the report to %s: %s\n", out ? out : "stdout", strerror(errno));
        rc = MI_EXIT_FAIL;
    }
    free(s);
    cJSON_Delete(doc);
    mi_patho_close(c.p);
    free(inputs);
    return rc;
}
