/* nn/layers.c - shared loaders and forward steps (nn/layers.h). */
#include "nn/layers.h"

#include "ops/act.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/resize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t kvol(const mi_conv_desc *d) { return d->k[0] * d->k[1] * d->k[2]; }

/* "<prefix>.<part>" into buf; MI_ERR_ARG when it does not fit (a name from our own code) */
static mi_status tensor_name(char *buf, size_t n, const char *prefix, const char *part) {
    if ((size_t)snprintf(buf, n, "%s.%s", prefix, part) >= n)
        return MI_FAIL(MI_ERR_ARG, "layer name '%.64s...' too long", prefix);
    return MI_OK;
}

/* A weight of the given shape (1 + sp dims after [a, b]), as an F32 view into the blob. */
static mi_status get_weight(const mi_weights *w, const char *layer, int64_t a, int64_t b,
                            const mi_conv_desc *d, mi_tensor *out) {
    char name[192];
    mi_status st = tensor_name(name, sizeof name, layer, "weight");
    if (st) return st;
    int64_t shape[MI_MAX_DIMS] = { a, b };
    for (int i = 0; i < d->sp; i++) shape[2 + i] = d->k[3 - d->sp + i];
    return mi_weights_get(w, name, 2 + d->sp, shape, out);
}

static mi_status get_vector(const mi_weights *w, const char *layer, const char *part, int64_t n,
                            mi_tensor *out) {
    char name[192];
    mi_status st = tensor_name(name, sizeof name, layer, part);
    if (st) return st;
    return mi_weights_get(w, name, 1, &n, out);
}

/* Folds (when bn is given), packs for d->in_size and drops the unpacked copy. */
static mi_status init_conv(mi_conv *c, const mi_weights *w, const char *conv, const mi_conv_desc *d,
                           const mi_tensor *weight, const float *bias, const mi_tensor *bn, double eps) {
    mi_status st = mi_conv_check_desc(d, conv);
    if (st) return st;
    int64_t per_out = d->cin / d->groups * kvol(d);
    float *fw = malloc((size_t)(d->cout * per_out) * sizeof *fw), *fb = calloc((size_t)d->cout, sizeof *fb);
    if (!fw || !fb) {
        free(fw);
        free(fb);
        return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory loading '%s'", w->path, conv);
    }
    memcpy(fw, weight->data, (size_t)(d->cout * per_out) * sizeof *fw);
    if (bias) memcpy(fb, bias, (size_t)d->cout * sizeof *fb);
    if (bn) mi_fold_batchnorm(fw, fb, bn[0].data, bn[1].data, bn[2].data, bn[3].data, eps, d->cout, per_out);
    st = mi_conv_init(c, d, fw, fb, conv);
    free(fw);
    free(fb);
    if (st == MI_OK) mi_conv_release_source(c);
    return st;
}

mi_status nn_load_conv(mi_conv *c, const mi_weights *w, const char *conv, const mi_conv_desc *d,
                       bool has_bias) {
    memset(c, 0, sizeof *c);
    mi_tensor wt, b;
    mi_status st = mi_conv_check_desc(d, conv);
    if (st || (st = get_weight(w, conv, d->cout, d->cin / d->groups, d, &wt))) return st;
    if (has_bias && (st = get_vector(w, conv, "bias", d->cout, &b))) return st;
    return init_conv(c, w, conv, d, &wt, has_bias ? b.data : NULL, NULL, 0);
}

mi_status nn_load_conv_bn(mi_conv *c, const mi_weights *w, const char *conv, const char *bn,
                          const mi_conv_desc *d, double eps) {
    memset(c, 0, sizeof *c);
    mi_tensor wt, p[4];
    static const char *part[4] = { "weight", "bias", "running_mean", "running_var" };
    mi_status st = mi_conv_check_desc(d, conv);
    if (st || (st = get_weight(w, conv, d->cout, d->cin / d->groups, d, &wt))) return st;
    for (int i = 0; i < 4; i++)
        if ((st = get_vector(w, bn, part[i], d->cout, &p[i]))) return st;
    return init_conv(c, w, conv, d, &wt, NULL, p, eps);
}

mi_status nn_load_deconv(mi_deconv *c, const mi_weights *w, const char *name,
                         const mi_deconv_desc *d, bool has_bias) {
    memset(c, 0, sizeof *c);
    mi_tensor wt, b;
    mi_status st = mi_conv_check_desc(&d->d, name);
    if (st || (st = get_weight(w, name, d->d.cin, d->d.cout / d->d.groups, &d->d, &wt))) return st;
    if (has_bias && (st = get_vector(w, name, "bias", d->d.cout, &b))) return st;
    return mi_deconv_init(c, d, wt.data, has_bias ? b.data : NULL, name);
}

mi_status nn_load_linear(nn_linear *l, const mi_weights *w, const char *name, int64_t in,
                         int64_t out, bool has_bias) {
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->in = in;
    l->out = out;
    char t[192];
    mi_tensor v;
    const int64_t shape[2] = { out, in };
    mi_status st = tensor_name(t, sizeof t, name, "weight");
    if (st || (st = mi_weights_get(w, t, 2, shape, &v))) return st;
    l->weight = v.data;
    if (has_bias) {
        if ((st = get_vector(w, name, "bias", out, &v))) return st;
        l->bias = v.data;
    }
    return MI_OK;
}

mi_status nn_load_prelu(nn_prelu *p, const mi_weights *w, const char *name, int64_t channels) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    char t[192];
    mi_status st = tensor_name(t, sizeof t, name, "weight");
    if (st) return st;
    const mi_blob_tensor *bt = mi_weights_find(w, t);
    int64_t n = bt && bt->ndim == 1 && bt->shape[0] == 1 ? 1 : channels;  /* nn.PReLU() or (C) */
    mi_tensor v;
    if ((st = mi_weights_get(w, t, 1, &n, &v))) return st;
    p->n = n;
    p->slope = v.data;
    return MI_OK;
}

mi_status nn_load_group_norm(nn_group_norm *g, const mi_weights *w, const char *name, int64_t C,
                             int64_t G, double eps) {
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    if (C < 1 || G < 1 || C % G)
        return MI_FAIL(MI_ERR_ARG, "%s: '%s' has %lld channels, which do not split into %lld groups", w->path,
                       name, (long long)C, (long long)G);
    g->C = C;
    g->G = G;
    g->eps = eps;
    mi_tensor v;
    mi_status st = get_vector(w, name, "weight", C, &v);
    if (st) return st;
    g->gamma = v.data;
    if ((st = get_vector(w, name, "bias", C, &v))) return st;
    g->beta = v.data;
    return MI_OK;
}

/* ---- steps ---------------------------------------------------------------------------------- */

static mi_tensor empty(void) { return (mi_tensor){ 0 }; }

mi_tensor nn_conv(nn_ctx *c, const mi_conv *cv, const mi_tensor *x, const mi_tensor *residual,
                  mi_act act) {
    int64_t shape[MI_MAX_DIMS];
    if (!nn_ok(c)) return empty();
    if (nn_fail(c, mi_conv_out_shape(cv, x, shape))) return empty();
    mi_tensor y = nn_alloc(c, x->ndim, shape, cv->name);
    void *ws = nn_scratch(c, mi_conv_workspace(cv, x));
    if (nn_ok(c) && nn_compute(c)) mi_conv_forward(cv, &y, x, residual, act, ws);
    nn_scratch_free(c, ws);
    nn_mark(c, cv->name, &y);
    return y;
}

mi_tensor nn_conv_add_into(nn_ctx *c, const mi_conv *cv, const mi_tensor *x, const mi_tensor *residual,
                           mi_act act) {
    int64_t shape[MI_MAX_DIMS];
    if (!nn_ok(c)) return empty();
    if (nn_fail(c, mi_conv_out_shape(cv, x, shape))) return empty();
    mi_tensor y = mi_tensor_view(residual->data, x->ndim, shape, cv->name);
    /* Not with channels on the lanes: there two threads split a map's pixels at runs of 14, so
     * each channel row has a cache line both write, and read-modify-writing the residual there
     * took ResNet-50's 256 -> 1024 layers (14 x 14) 7-16 % longer at 2 threads (alone: 0.33 ->
     * 0.37-0.39 ms), while its pixels-on-lanes layers (runs of 32, whole lines) gained 5-8 %. */
    if (cv->chan_lanes || !mi_tensor_same_shape(&y, residual) || !nn_take(c, residual)) {
        y = nn_conv(c, cv, x, residual, act);
        nn_free(c, residual);
        return y;
    }
    void *ws = nn_scratch(c, mi_conv_workspace(cv, x));
    if (nn_ok(c) && nn_compute(c)) mi_conv_forward(cv, &y, x, &y, act, ws);
    nn_scratch_free(c, ws);
    nn_mark(c, cv->name, &y);
    return y;
}

/* The padded map (N, C, H + 1, W + 1) is allocated whichever way the step runs, so that the walk
 * the arena was planned by stays the same when a capture hook comes or goes: with one, or where
 * the map is a kept output, it holds the plain map at its start, handed out and marked as usual. */
mi_tensor nn_conv_padded_out(nn_ctx *c, const mi_conv *cv, const mi_tensor *x, mi_act act, bool *padded) {
    int64_t shape[MI_MAX_DIMS];
    *padded = false;
    if (!nn_ok(c)) return empty();
    if (nn_fail(c, mi_conv_out_shape(cv, x, shape))) return empty();
    const int64_t ps[4] = { shape[0], shape[1], shape[2] + 1, shape[3] + 1 };
    mi_tensor yp = nn_alloc(c, 4, ps, cv->name);
    *padded = !c->capture && !nn_wants(c, cv->name);
    mi_tensor y = *padded ? yp : mi_tensor_view(yp.data, x->ndim, shape, cv->name);
    void *ws = nn_scratch(c, mi_conv_workspace(cv, x));
    if (nn_ok(c) && nn_compute(c)) {
        if (*padded) mi_conv_forward_padded_out(cv, &y, x, act, ws);
        else mi_conv_forward(cv, &y, x, NULL, act, ws);
    }
    nn_scratch_free(c, ws);
    if (!*padded) nn_mark(c, cv->name, &y);
    else nn_mark_stage(c, cv->name, x->ndim, shape);
    return y;
}

/* The same steps as nn_conv on the plain map (its output, its scratch), so either way fits the plan */
mi_tensor nn_conv_padded_in(nn_ctx *c, const mi_conv *cv, const mi_tensor *x, bool padded, mi_act act) {
    int64_t shape[MI_MAX_DIMS];
    if (!padded) return nn_conv(c, cv, x, NULL, act);
    if (!nn_ok(c)) return empty();
    mi_tensor plain = *x;
    plain.shape[2]--;
    plain.shape[3]--;
    if (nn_fail(c, mi_conv_out_shape(cv, &plain, shape))) return empty();
    mi_tensor y = nn_alloc(c, x->ndim, shape, cv->name);
    void *ws = nn_scratch(c, mi_conv_workspace(cv, &plain));
    if (nn_ok(c) && nn_compute(c)) mi_conv_forward_padded_in(cv, &y, x, act, ws);
    nn_scratch_free(c, ws);
    nn_mark(c, cv->name, &y);
    return y;
}

mi_tensor nn_deconv(nn_ctx *c, const mi_deconv *cv, const mi_tensor *x, const mi_tensor *residual,
                    mi_act act) {
    int64_t shape[MI_MAX_DIMS];
    if (!nn_ok(c)) return empty();
    if (nn_fail(c, mi_deconv_out_shape(cv, x, shape))) return empty();
    mi_tensor y = nn_alloc(c, x->ndim, shape, cv->name);
    void *ws = nn_scratch(c, mi_deconv_workspace(cv, x));
    if (nn_ok(c) && nn_compute(c)) mi_deconv_forward(cv, &y, x, residual, act, ws);
    nn_scratch_free(c, ws);
    nn_mark(c, cv->name, &y);
    return y;
}

mi_tensor nn_max_pool(nn_ctx *c, const mi_pool_desc *d, const mi_tensor *x, const char *name) {
    int64_t shape[MI_MAX_DIMS];
    if (!nn_ok(c)) return empty();
    mi_status st = mi_pool_out_shape(d, x, shape);
    if (st) {
        nn_fail(c, MI_FAIL(st, "%s: %s", name, mi_last_error()));
        return empty();
    }
    mi_tensor y = nn_alloc(c, x->ndim, shape, name);
    if (nn_ok(c) && nn_compute(c)) mi_max_pool(&y, x, d);
    nn_mark(c, name, &y);
    return y;
}

mi_tensor nn_global_avg_pool(nn_ctx *c, const mi_tensor *x, const char *name) {
    if (!nn_ok(c)) return empty();
    int64_t shape[MI_MAX_DIMS] = { x->shape[0], x->shape[1], 1, 1, 1 };
    mi_tensor y = nn_alloc(c, x->ndim, shape, name);
    if (nn_ok(c) && nn_compute(c)) mi_global_avg_pool(&y, x);
    nn_mark(c, name, &y);
    return y;
}

mi_tensor nn_linear_fwd(nn_ctx *c, const nn_linear *l, const mi_tensor *x) {
    if (!nn_ok(c)) return empty();
    int64_t feat = x->ndim >= 2 ? mi_tensor_numel(x) / x->shape[0] : 0;
    if (feat != l->in) {
        char s[96];
        mi_shape_str(s, sizeof s, x->ndim, x->shape);
        nn_fail(c, MI_FAIL(MI_ERR_SHAPE, "%s: input %s has %lld features per item, expected %lld",
                           l->name, s, (long long)feat, (long long)l->in));
        return empty();
    }
    const int64_t shape[2] = { x->shape[0], l->out };
    mi_tensor y = nn_alloc(c, 2, shape, l->name);
    if (nn_ok(c) && nn_compute(c)) mi_linear(y.data, x->data, l->weight, l->bias, x->shape[0], l->in, l->out);
    nn_mark(c, l->name, &y);
    return y;
}

mi_tensor nn_prelu_fwd(nn_ctx *c, const nn_prelu *p, const mi_tensor *x) {
    if (!nn_ok(c)) return empty();
    if (x->ndim < 2 || (p->n != 1 && x->shape[1] != p->n)) {
        nn_fail(c, MI_FAIL(MI_ERR_SHAPE, "%s: input has %lld channels, the layer %lld", p->name,
                           (long long)(x->ndim >= 2 ? x->shape[1] : 0), (long long)p->n));
        return empty();
    }
    mi_tensor y = nn_alloc(c, x->ndim, x->shape, p->name);
    if (nn_ok(c) && nn_compute(c)) {
        int64_t N = x->shape[0], C = x->shape[1], inner = mi_tensor_numel(x) / (N * C);
        mi_prelu(y.data, x->data, p->slope, p->n, N, C, inner);
    }
    nn_mark(c, p->name, &y);
    return y;
}

/* the result of an elementwise step: x itself (renamed) or a fresh tensor of its shape */
static mi_tensor same_shape(nn_ctx *c, const mi_tensor *x, bool in_place, const char *name) {
    if (!in_place) return nn_alloc(c, x->ndim, x->shape, name);
    mi_tensor y = *x;
    snprintf(y.name, sizeof y.name, "%s", name);
    return y;
}

mi_tensor nn_act_fwd(nn_ctx *c, nn_act act, float param, const mi_tensor *x, bool in_place, const char *name) {
    if (!nn_ok(c)) return empty();
    mi_tensor y = same_shape(c, x, in_place, name);
    if (nn_ok(c) && nn_compute(c)) {
        const int64_t n = mi_tensor_numel(x);
        switch (act) {
        case NN_ELU:        mi_elu(y.data, x->data, param, n); break;
        case NN_LEAKY_RELU: mi_leaky_relu(y.data, x->data, param, n); break;
        case NN_TANH:       mi_tanh(y.data, x->data, n); break;
        case NN_SIGMOID:    mi_sigmoid(y.data, x->data, n); break;
        }
    }
    nn_mark(c, name, &y);
    return y;
}

mi_tensor nn_group_norm_fwd(nn_ctx *c, const nn_group_norm *g, const mi_tensor *x, bool in_place) {
    if (!nn_ok(c)) return empty();
    if (x->ndim < 3 || x->shape[1] != g->C) {
        nn_fail(c, MI_FAIL(MI_ERR_SHAPE, "%s: input has %lld channels, the layer %lld", g->name,
                           (long long)(x->ndim >= 2 ? x->shape[1] : 0), (long long)g->C));
        return empty();
    }
    mi_tensor y = same_shape(c, x, in_place, g->name);
    if (nn_ok(c) && nn_compute(c)) {
        const int64_t N = x->shape[0], inner = mi_tensor_numel(x) / (N * g->C);
        mi_group_norm(y.data, x->data, g->gamma, g->beta, N, g->C, g->G, inner, g->eps);
    }
    nn_mark(c, g->name, &y);
    return y;
}

mi_tensor nn_pad(nn_ctx *c, const mi_tensor *x, const int64_t pad[4], mi_pad_mode mode, const char *name) {
    int64_t shape[MI_MAX_DIMS];
    if (!nn_ok(c) || nn_fail(c, mi_pad_out_shape(x, pad, mode, shape))) return empty();
    mi_tensor y = nn_alloc(c, 4, shape, name);
    if (nn_ok(c) && nn_compute(c)) mi_pad2d(&y, x, pad, mode);
    nn_mark(c, name, &y);
    return y;
}

static bool is_4d(nn_ctx *c, const mi_tensor *x, const char *step) {
    if (x->ndim == 4) return true;
    char s[96];
    nn_fail(c, MI_FAIL(MI_ERR_SHAPE, "%s: input '%s' has shape %s, expected (N, C, H, W)", step, x->name,
                       mi_shape_str(s, sizeof s, x->ndim, x->shape)));
    return false;
}

mi_tensor nn_resize_bilinear(nn_ctx *c, const mi_tensor *x, int64_t h, int64_t w, const char *name) {
    if (!nn_ok(c) || !is_4d(c, x, name)) return empty();
    if (h < 1 || w < 1) {
        nn_fail(c, MI_FAIL(MI_ERR_ARG, "%s: resize to %lld x %lld", name, (long long)h, (long long)w));
        return empty();
    }
    const int64_t shape[4] = { x->shape[0], x->shape[1], h, w };
    mi_tensor y = nn_alloc(c, 4, shape, name);
    if (nn_ok(c) && nn_compute(c)) mi_resize_linear(&y, x, false, NULL);
    nn_mark(c, name, &y);
    return y;
}

mi_tensor nn_resize_nearest(nn_ctx *c, const mi_tensor *x, const double scale[2], const char *name) {
    int64_t shape[MI_MAX_DIMS];
    if (!nn_ok(c) || !is_4d(c, x, name) || nn_fail(c, mi_resize_out_shape(x, scale, shape))) return empty();
    mi_tensor y = nn_alloc(c, 4, shape, name);
    if (nn_ok(c) && nn_compute(c)) mi_resize_nearest(&y, x, scale);
    nn_mark(c, name, &y);
    return y;
}

mi_tensor nn_concat(nn_ctx *c, const mi_tensor *const *xs, int nx, const char *name) {
    int64_t shape[MI_MAX_DIMS];
    if (!nn_ok(c) || nn_fail(c, mi_concat_out_shape(shape, xs, nx, 1))) return empty();
    mi_tensor y = nn_alloc(c, xs[0]->ndim, shape, name);
    if (nn_ok(c) && nn_compute(c)) mi_concat_t(&y, xs, nx, 1);
    nn_mark(c, name, &y);
    return y;
}
