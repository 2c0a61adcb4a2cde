/* nn/gcn.c - the slide-level graph convolutional network (see gcn.h; tools/gcn_ref.py is the spec). */
#include "nn/gcn.h"

#include "nn/layers.h"
#include "ops/act.h"
#include "ops/graph.h"
#include "ops/linear.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mi_gcn {
    mi_weights w;
    int64_t    in_dim;
    int        num_classes, nlayers;
    int64_t    dims[MI_GCN_MAX_LAYERS + 1];   /* dims[0] = in_dim, dims[i + 1] = hidden[i] */
    nn_linear  layers[MI_GCN_MAX_LAYERS], out;
    bool       self_loops, readout_max;
    char     **labels;
};

/* gcn_ref.DEFAULTS["labels"]: used only when a blob has 4 classes and no labels, as gcn_ref.config
 * would */
static const char *const DEFAULT_LABELS[4] = {
    "negative", "low-grade intraepithelial neoplasia", "high-grade intraepithelial neoplasia",
    "invasive carcinoma",
};

int64_t           mi_gcn_in_dim(const mi_gcn *g) { return g->in_dim; }
int               mi_gcn_num_classes(const mi_gcn *g) { return g->num_classes; }
const mi_weights *mi_gcn_weights(const mi_gcn *g) { return &g->w; }
const char *mi_gcn_label(const mi_gcn *g, int i) {
    return i >= 0 && i < g->num_classes ? g->labels[i] : NULL;
}

void mi_gcn_close(mi_gcn *g) {
    if (!g) return;
    mi_strings_free(g->labels, g->num_classes);
    mi_weights_close(&g->w);
    free(g);
}

/* "hidden": a JSON list of at most MI_GCN_MAX_LAYERS integer widths in 1..MI_GCN_MAX_WIDTH */
static mi_status parse_hidden(mi_gcn *g, const char *path, const char *v) {
    cJSON *a = cJSON_Parse(v);
    int k = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
    bool ok = k >= 0 && k <= MI_GCN_MAX_LAYERS;
    for (int i = 0; ok && i < k; i++) {
        const cJSON *x = cJSON_GetArrayItem(a, i);
        ok = cJSON_IsNumber(x) && x->valuedouble >= 1 && x->valuedouble <= MI_GCN_MAX_WIDTH &&
             x->valuedouble == floor(x->valuedouble);
        if (ok) g->dims[i + 1] = (int64_t)x->valuedouble;
    }
    cJSON_Delete(a);
    if (!ok)
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'hidden' = '%.60s' is not a JSON list of at most "
                       "%d integer widths in [1, %d]", path, v, MI_GCN_MAX_LAYERS, MI_GCN_MAX_WIDTH);
    g->nlayers = k;
    return MI_OK;
}

static mi_status parse_meta(mi_gcn *g) {
    const mi_weights *w = &g->w;
    const char *path = w->path, *v;
    mi_status st;
    if (!(v = mi_weights_meta(w, "arch")))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'arch' is missing (expected \"gcn\")", path);
    if (strcmp(v, "gcn"))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'arch' is '%.40s', expected 'gcn'", path, v);
    long long x = 64;
    if (mi_weights_meta(w, "in_dim") && (st = mi_weights_meta_int(w, "in_dim", 1, MI_GCN_MAX_WIDTH, &x)))
        return st;
    g->in_dim = g->dims[0] = x;
    g->nlayers = 2;
    g->dims[1] = 64;
    g->dims[2] = 32;
    if ((v = mi_weights_meta(w, "hidden")) && (st = parse_hidden(g, path, v))) return st;
    x = 4;
    if (mi_weights_meta(w, "num_classes") && (st = mi_weights_meta_int(w, "num_classes", 1, 1 << 20, &x)))
        return st;
    g->num_classes = (int)x;
    g->self_loops = true;
    if ((v = mi_weights_meta(w, "self_loops"))) {
        if (!strcmp(v, "true")) g->self_loops = true;
        else if (!strcmp(v, "false")) g->self_loops = false;
        else return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'self_loops' = '%.40s' is not \"true\" or "
                            "\"false\"", path, v);
    }
    g->readout_max = false;
    if ((v = mi_weights_meta(w, "readout"))) {
        if (!strcmp(v, "max")) g->readout_max = true;
        else if (strcmp(v, "mean"))
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'readout' = '%.40s' is not \"mean\" or \"max\"",
                           path, v);
    }
    if (mi_weights_meta(w, "labels")) {
        char **labels;
        int n;
        if ((st = mi_weights_meta_strings(w, "labels", &labels, &n))) return st;
        if (n != g->num_classes) {
            mi_strings_free(labels, n);
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'labels' has %d names for %d classes", path, n,
                           g->num_classes);
        }
        g->labels = labels;
    } else {
        if (g->num_classes != 4)
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'labels' is missing (the default names are "
                           "for 4 classes, this GCN has %d)", path, g->num_classes);
        if (!(g->labels = calloc(5, sizeof *g->labels)))
            return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory for labels", path);
        for (int i = 0; i < 4; i++)
            if (!(g->labels[i] = strdup(DEFAULT_LABELS[i])))
                return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory for labels", path);
    }
    return MI_OK;
}

/* every tensor in the blob must be one this GCN reads: a leftover layers.<i> means the metadata
 * describes a different network than the weights */
static mi_status check_no_extra(const mi_gcn *g) {
    for (int t = 0; t < g->w.ntensors; t++) {
        const char *name = g->w.tensors[t].name;
        bool known = !strcmp(name, "out.weight") || !strcmp(name, "out.bias");
        for (int i = 0; !known && i < g->nlayers; i++) {
            char wn[32], bn[32];
            snprintf(wn, sizeof wn, "layers.%d.weight", i);
            snprintf(bn, sizeof bn, "layers.%d.bias", i);
            known = !strcmp(name, wn) || !strcmp(name, bn);
        }
        if (!known)
            return MI_FAIL(MI_ERR_FORMAT, "%s: tensor '%s' is not part of a GCN with %d graph layers "
                           "(metadata 'hidden')", g->w.path, name, g->nlayers);
    }
    return MI_OK;
}

mi_status mi_gcn_open(mi_gcn **out, const char *path) {
    *out = NULL;
    mi_weights w;
    mi_status st = mi_weights_open(&w, path);
    return st ? st : mi_gcn_open_weights(out, &w);
}

mi_status mi_gcn_open_weights(mi_gcn **out, mi_weights *w) {
    *out = NULL;
    mi_gcn *g = calloc(1, sizeof *g);
    if (!g) {
        mi_status st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", w->path);
        mi_weights_close(w);
        return st;
    }
    g->w = *w;
    memset(w, 0, sizeof *w);
    mi_status st;
    if ((st = parse_meta(g))) goto fail;
    for (int i = 0; i < g->nlayers; i++) {
        char name[32];
        snprintf(name, sizeof name, "layers.%d", i);
        if ((st = nn_load_linear(&g->layers[i], &g->w, name, g->dims[i], g->dims[i + 1], true))) goto fail;
    }
    if ((st = nn_load_linear(&g->out, &g->w, "out", g->dims[g->nlayers], g->num_classes, true))) goto fail;
    if ((st = check_no_extra(g))) goto fail;
    *out = g;
    return MI_OK;
fail:
    mi_gcn_close(g);
    return st;
}

/* ---- scratch ----------------------------------------------------------------------------
 * Regions in floats, each starting on a 64-byte boundary from the scratch base: Â (n*n), the
 * degrees (n), t (n * widest layer: H·Wᵀ + b before the product with Â), one output per layer
 * (kept, so every stage can be read after the forward), the readout. */
enum { R_AHAT, R_DINV, R_T, R_LAYER0 };
#define NREGIONS (R_LAYER0 + MI_GCN_MAX_LAYERS + 1)

static uint64_t round16(uint64_t f) { return (f + 15) & ~(uint64_t)15; }

/* offsets in floats; returns the total in floats, 0 when n is out of range */
static uint64_t layout(const mi_gcn *g, int64_t n, uint64_t off[NREGIONS]) {
    if (n < 1 || n > MI_GCN_MAX_NODES) return 0;
    uint64_t at = 0, widest = 0, un = (uint64_t)n;
    for (int i = 1; i <= g->nlayers; i++) widest = (uint64_t)g->dims[i] > widest ? (uint64_t)g->dims[i] : widest;
    off[R_AHAT] = at;  at += round16(un * un);
    off[R_DINV] = at;  at += round16(un);
    off[R_T]    = at;  at += round16(un * widest);
    for (int i = 0; i < g->nlayers; i++) {
        off[R_LAYER0 + i] = at;
        at += round16(un * (uint64_t)g->dims[i + 1]);
    }
    off[R_LAYER0 + g->nlayers] = at;   /* the readout */
    at += round16((uint64_t)g->dims[g->nlayers]);
    return at;   /* at most 4096^2 + 17 * 4096 * 65536 floats: no overflow in 64 bits */
}

size_t mi_gcn_scratch_bytes(const mi_gcn *g, int64_t n) {
    uint64_t off[NREGIONS], f = layout(g, n, off);
    return f == 0 || f > SIZE_MAX / sizeof(float) ? 0 : (size_t)(f * sizeof(float));
}

const float *mi_gcn_stage(const mi_gcn *g, const void *scratch, int64_t n, const char *stage,
                          int64_t shape[2]) {
    uint64_t off[NREGIONS];
    if (!layout(g, n, off)) return NULL;
    const float *s = scratch;
    if (!strcmp(stage, "a_hat")) {
        shape[0] = shape[1] = n;
        return s + off[R_AHAT];
    }
    if (!strcmp(stage, "readout")) {
        shape[0] = 1;
        shape[1] = g->dims[g->nlayers];
        return s + off[R_LAYER0 + g->nlayers];
    }
    for (int i = 0; i < g->nlayers; i++) {
        char name[32];
        snprintf(name, sizeof name, "layers.%d", i);
        if (!strcmp(stage, name)) {
            shape[0] = n;
            shape[1] = g->dims[i + 1];
            return s + off[R_LAYER0 + i];
        }
    }
    return NULL;
}

/* ---- forward ----------------------------------------------------------------------------- */

/* Tested over the whole array first, then element by element only to name the first offender. */
static mi_status check_finite(const float *v, int64_t rows, int64_t cols, const char *what) {
    const int64_t n = rows * cols;
    const bool bad = !mi_all_finite(v, n);
    for (int64_t i = 0; bad && i < n; i++)
        if (!isfinite(v[i]))
            return MI_FAIL(MI_ERR_ARG, "GCN input: %s[%lld][%lld] is %s", what, (long long)(i / cols),
                           (long long)(i % cols), isnan(v[i]) ? "NaN" : "infinite");
    return MI_OK;
}

mi_status mi_gcn_forward(const mi_gcn *g, const float *x, const float *adj, int64_t n,
                         void *scratch, size_t scratch_bytes, float *logits, float *probs) {
    if (n < 1 || n > MI_GCN_MAX_NODES)
        return MI_FAIL(MI_ERR_ARG, "GCN input: %lld nodes, expected 1 to %d", (long long)n, MI_GCN_MAX_NODES);
    const size_t need = mi_gcn_scratch_bytes(g, n);
    if (!scratch || scratch_bytes < need)
        return MI_FAIL(MI_ERR_ARG, "GCN input: %zu bytes of scratch for %lld nodes, %zu needed "
                       "(mi_gcn_scratch_bytes)", scratch ? scratch_bytes : 0, (long long)n, need);
    if ((uintptr_t)scratch % sizeof(float))
        return MI_FAIL(MI_ERR_ARG, "GCN input: scratch is not aligned for float (mi_alloc_aligned it)");
    mi_status st;
    if ((st = check_finite(x, n, g->in_dim, "x")) || (st = check_finite(adj, n, n, "adjacency")))
        return st;

    uint64_t off[NREGIONS];
    layout(g, n, off);
    float *s = scratch, *a_hat = s + off[R_AHAT], *dinv = s + off[R_DINV], *t = s + off[R_T];
    if (g->self_loops) mi_graph_normalize(a_hat, dinv, adj, n);                /* D^-1/2 (A+I) D^-1/2 */
    else               mi_graph_normalize_no_loops(a_hat, dinv, adj, n);       /* D^-1/2 A D^-1/2     */

    const float *h = x;
    for (int i = 0; i < g->nlayers; i++) {                     /* h = relu(a_hat @ lin(h)) */
        const nn_linear *l = &g->layers[i];
        float *y = s + off[R_LAYER0 + i];
        mi_linear(t, h, l->weight, l->bias, n, l->in, l->out);
        mi_matmul_skip_zeros(y, a_hat, t, n, n, l->out);   /* Â is mostly zeros */
        mi_relu(y, y, n * l->out);
        h = y;
    }

    /* readout over the nodes: h.mean(0) (summed in float64, one rounding) or h.max(0) */
    const int64_t f = g->dims[g->nlayers];
    float *r = s + off[R_LAYER0 + g->nlayers];
    for (int64_t j = 0; j < f; j++) {
        if (g->readout_max) {
            float m = h[j];
            for (int64_t i = 1; i < n; i++) m = h[i * f + j] > m ? h[i * f + j] : m;
            r[j] = m;
        } else {
            double acc = 0.0;
            for (int64_t i = 0; i < n; i++) acc += (double)h[i * f + j];
            r[j] = (float)(acc / (double)n);
        }
    }
    mi_linear(logits, r, g->out.weight, g->out.bias, 1, f, g->num_classes);
    if (probs) mi_softmax(probs, logits, 1, g->num_classes, 1);
    return MI_OK;
}
