/* nn/vnet.c - tools/vnet_ref.py's VNet: residual stages of 5x5(x5) "same" convolutions each
 * followed by a PReLU, the stage input added and one more PReLU; 2x2(x2) stride-2 convolutions
 * down, 2x2(x2) stride-2 transposed convolutions up, each followed by a PReLU; the skip concatenated
 * after the up-sampled map; a 1x1(x1) head and a softmax over its 2 channels; and on the bottleneck
 * global average pool -> Linear -> ReLU ('features') -> Linear ('tile_logits').
 *
 * What is fused, and why it is exact:
 *   - The PReLU after a convolution runs in place on the convolution's output (mi_prelu with
 *     y == x): the same arithmetic as torch's separate module, no second buffer.
 *   - A stage's out_act(x + residual) is one pass, mi_add_prelu: the sum rounded once, then the
 *     PReLU select, the bits of an add followed by a PReLU. The input stage adds the input
 *     replicated across channels (channel c reads input channel c % in_channels, what
 *     x.repeat(...)[:, :width] builds) without building the replicated tensor.
 *   - The residual cannot go into the convolution's epilogue as in nn/resnet.c: the last conv's
 *     PReLU comes before the add.
 * When a session keeps an intermediate result that an in-place step would overwrite (it asked for
 * a conv's raw output by name), that step writes a new tensor instead, so every kept output holds
 * what its name says. */
#include "nn/vnet.h"

#include "nn/layers.h"
#include "ops/act.h"
#include "ops/elementwise.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int       n;
    mi_conv   conv[MI_VNET_MAX_CONVS];
    nn_prelu  act[MI_VNET_MAX_CONVS], out_act;
    char      name[32];                  /* "enc.2", "dec.0" */
} res_stage;

struct mi_vnet {
    mi_vnet_config cfg;
    res_stage  enc[MI_VNET_MAX_LEVELS + 1], dec[MI_VNET_MAX_LEVELS];
    mi_conv    down[MI_VNET_MAX_LEVELS];
    nn_prelu   down_act[MI_VNET_MAX_LEVELS];
    mi_deconv  up[MI_VNET_MAX_LEVELS];
    nn_prelu   up_act[MI_VNET_MAX_LEVELS];
    mi_conv    head;
    nn_linear  fc, cls;
};

/* ---- configuration ------------------------------------------------------------------------ */

/* an integer key, or the default when the blob does not have it */
static mi_status meta_int(const mi_weights *w, const char *key, long long lo, long long hi, int *v) {
    if (!mi_weights_meta(w, key)) return MI_OK;
    long long x;
    mi_status st = mi_weights_meta_int(w, key, lo, hi, &x);
    if (st == MI_OK) *v = (int)x;
    return st;
}

mi_status mi_vnet_config_from_blob(mi_vnet_config *c, const mi_weights *w) {
    static const mi_vnet_config defaults = {   /* tools/vnet_ref.py DEFAULTS */
        .dims = 2, .in_channels = 3, .width = 16, .levels = 4, .enc_convs = { 1, 2, 3, 3, 3 },
        .dec_convs = { 3, 3, 2, 1 }, .feature_dim = 64, .num_classes = 4, .input_size = 512 };
    *c = defaults;
    const char *arch = mi_weights_meta(w, "arch");
    if (!arch || (strcmp(arch, "vnet2d") && strcmp(arch, "vnet3d")))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'arch' = '%.32s' is not a V-Net (vnet2d, vnet3d)", w->path,
                       arch ? arch : "(missing)");
    c->dims = arch[4] == '3' ? 3 : 2;
    mi_status st;
    int n = c->levels + 1;
    if ((st = meta_int(w, "in_channels", 1, 1024, &c->in_channels)) || (st = meta_int(w, "width", 1, 4096, &c->width)) ||
        (st = meta_int(w, "feature_dim", 1, 65536, &c->feature_dim)) ||
        (st = meta_int(w, "num_classes", 1, 1000000, &c->num_classes)) ||
        (st = meta_int(w, "input_size", 1, 16384, &c->input_size)))
        return st;
    if (mi_weights_meta(w, "enc_convs") &&
        (st = mi_weights_meta_ints(w, "enc_convs", 1, MI_VNET_MAX_CONVS, c->enc_convs, MI_VNET_MAX_LEVELS + 1, &n)))
        return st;
    if (n < 2)
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'enc_convs' has %d stage, expected 2..%d (level 0 .. the "
                       "bottleneck)", w->path, n, MI_VNET_MAX_LEVELS + 1);
    c->levels = n - 1;
    if (mi_weights_meta(w, "dec_convs")) {
        int nd;
        if ((st = mi_weights_meta_ints(w, "dec_convs", 1, MI_VNET_MAX_CONVS, c->dec_convs, MI_VNET_MAX_LEVELS, &nd)))
            return st;
        if (nd != c->levels)
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'dec_convs' has %d stages, expected %d (one per "
                           "down-sampling of 'enc_convs')", w->path, nd, c->levels);
    } else if (c->levels != defaults.levels) {
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'dec_convs' is missing; the default has %d stages, "
                       "'enc_convs' needs %d", w->path, defaults.levels, c->levels);
    }
    if (c->width < c->in_channels)
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'width' = %d is less than 'in_channels' = %d", w->path,
                       c->width, c->in_channels);
    if ((long long)c->width << c->levels > 65536)
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'width' = %d doubled %d times is %lld channels, more than "
                       "65536", w->path, c->width, c->levels, (long long)c->width << c->levels);
    if (c->input_size % (1 << c->levels))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'input_size' = %d is not a multiple of 2^%d = %d (the "
                       "network down-samples %d times)", w->path, c->input_size, c->levels, 1 << c->levels, c->levels);
    return MI_OK;
}

/* ---- loading ------------------------------------------------------------------------------ */

/* a "same" 5x5(x5), a 2x2(x2) stride-2 or a 1x1(x1) convolution for `side`-sided inputs */
static mi_conv_desc desc(const mi_vnet_config *c, int64_t cin, int64_t cout, int64_t k, int64_t s, int64_t p,
                         int64_t side) {
    mi_conv_desc d = c->dims == 2 ? mi_conv2d_desc(cin, cout, k, s, p, 1) : mi_conv3d_desc(cin, cout, k, s, p, 1);
    for (int i = 3 - c->dims; i < 3; i++) d.in_size[i] = side;
    return d;
}

static mi_status load_stage(const mi_vnet_config *c, const mi_weights *w, res_stage *s, const char *name,
                            int n, int64_t cin, int64_t cout, int64_t side) {
    char t[64];
    mi_status st;
    s->n = n;
    snprintf(s->name, sizeof s->name, "%s", name);
    for (int i = 0; i < n; i++) {
        snprintf(t, sizeof t, "%s.convs.%d", name, i);
        mi_conv_desc d = desc(c, i == 0 ? cin : cout, cout, 5, 1, 2, side);
        if ((st = nn_load_conv(&s->conv[i], w, t, &d, true))) return st;
        snprintf(t, sizeof t, "%s.act.%d", name, i);
        if ((st = nn_load_prelu(&s->act[i], w, t, cout))) return st;
    }
    snprintf(t, sizeof t, "%s.out_act", name);
    return nn_load_prelu(&s->out_act, w, t, cout);
}

static mi_status load(mi_vnet *v, const mi_weights *w) {
    const mi_vnet_config *c = &v->cfg;
    const int L = c->levels;
    mi_status st;
    char t[64];
    int64_t ch[MI_VNET_MAX_LEVELS + 1] = { 0 };
    for (int l = 0; l <= L; l++) ch[l] = (int64_t)c->width << l;
    for (int l = 0; l <= L; l++) {
        const int64_t side = c->input_size >> l;
        snprintf(t, sizeof t, "enc.%d", l);
        if ((st = load_stage(c, w, &v->enc[l], t, c->enc_convs[l], l ? ch[l] : c->in_channels, ch[l], side)))
            return st;
        if (l == L) break;
        snprintf(t, sizeof t, "down.%d.conv", l);
        mi_conv_desc d = desc(c, ch[l], ch[l + 1], 2, 2, 0, side);
        if ((st = nn_load_conv(&v->down[l], w, t, &d, true))) return st;
        snprintf(t, sizeof t, "down.%d.act", l);
        if ((st = nn_load_prelu(&v->down_act[l], w, t, ch[l + 1]))) return st;
    }
    int64_t out = ch[L];
    for (int j = 0; j < L; j++) {
        const int l = L - 1 - j;
        const int64_t side = c->input_size >> l;
        mi_deconv_desc d = c->dims == 2 ? mi_deconv2d_desc(out, ch[l], 2, 2, 0, 0, 1)
                                        : mi_deconv3d_desc(out, ch[l], 2, 2, 0, 0, 1);
        for (int i = 3 - c->dims; i < 3; i++) d.d.in_size[i] = side / 2;
        snprintf(t, sizeof t, "up.%d.conv", j);
        if ((st = nn_load_deconv(&v->up[j], w, t, &d, true))) return st;
        snprintf(t, sizeof t, "up.%d.act", j);
        if ((st = nn_load_prelu(&v->up_act[j], w, t, ch[l]))) return st;
        snprintf(t, sizeof t, "dec.%d", j);
        if ((st = load_stage(c, w, &v->dec[j], t, c->dec_convs[j], 2 * ch[l], 2 * ch[l], side))) return st;
        out = 2 * ch[l];
    }
    mi_conv_desc hd = desc(c, out, 2, 1, 1, 0, c->input_size);
    if ((st = nn_load_conv(&v->head, w, "head", &hd, true)) ||
        (st = nn_load_linear(&v->fc, w, "fc", ch[L], c->feature_dim, true)) ||
        (st = nn_load_linear(&v->cls, w, "cls", c->feature_dim, c->num_classes, true)))
        return st;
    return MI_OK;
}

void mi_vnet_free(mi_vnet *v) {
    if (!v) return;
    for (int l = 0; l <= MI_VNET_MAX_LEVELS; l++)
        for (int i = 0; i < MI_VNET_MAX_CONVS; i++) mi_conv_free(&v->enc[l].conv[i]);
    for (int j = 0; j < MI_VNET_MAX_LEVELS; j++) {
        for (int i = 0; i < MI_VNET_MAX_CONVS; i++) mi_conv_free(&v->dec[j].conv[i]);
        mi_conv_free(&v->down[j]);
        mi_deconv_free(&v->up[j]);
    }
    mi_conv_free(&v->head);
    free(v);
}

mi_status mi_vnet_load(mi_vnet **out, const mi_weights *w) {
    *out = NULL;
    mi_vnet *v = calloc(1, sizeof *v);   /* zeroed: freeing a layer never loaded is a no-op */
    if (!v) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", w->path);
    mi_status st = mi_vnet_config_from_blob(&v->cfg, w);
    if (st == MI_OK) st = load(v, w);
    if (st) {
        mi_vnet_free(v);
        return st;
    }
    *out = v;
    return MI_OK;
}

const mi_vnet_config *mi_vnet_get_config(const mi_vnet *v) { return &v->cfg; }

/* ---- forward ------------------------------------------------------------------------------ */

static int64_t inner_of(const mi_tensor *t) { return mi_tensor_numel(t) / (t->shape[0] * t->shape[1]); }

/* y = prelu(x [+ r]) as a new result named `name`: in place on x, unless the session keeps x
 * under x_name (then into a new tensor, leaving x as it was). r: (N, Cr, spatial), Cr dividing
 * into x's channels as mi_add_prelu reads it; NULL for a plain PReLU. */
static mi_tensor prelu_step(nn_ctx *c, const nn_prelu *p, const mi_tensor *x, const char *x_name,
                            const mi_tensor *r, const char *name) {
    if (!nn_ok(c)) return (mi_tensor){ 0 };
    mi_tensor y = nn_wants(c, x_name) ? nn_alloc(c, x->ndim, x->shape, name) : *x;
    if (nn_ok(c) && nn_compute(c)) {
        const int64_t N = x->shape[0], C = x->shape[1], inner = inner_of(x);
        if (r) mi_add_prelu(y.data, x->data, r->data, r->shape[1], p->slope, p->n, N, C, inner);
        else   mi_prelu(y.data, x->data, p->slope, p->n, N, C, inner);
    }
    snprintf(y.name, sizeof y.name, "%s", name);
    nn_mark(c, name, &y);
    return y;
}

/* ResStage.forward(x, residual): n x prelu(conv), then out_act(h + residual). x and residual
 * stay the caller's; the result is a new tensor marked by the stage's name. */
static mi_tensor stage_forward(nn_ctx *c, const res_stage *s, const mi_tensor *x, const mi_tensor *residual) {
    mi_tensor h = *x;
    for (int i = 0; i < s->n; i++) {
        mi_tensor y = nn_conv(c, &s->conv[i], &h, NULL, MI_ACT_NONE);        /* conv(x) */
        mi_tensor a = prelu_step(c, &s->act[i], &y, s->conv[i].name, NULL, s->act[i].name);  /* act(...) */
        if (a.data != y.data) nn_free(c, &y);
        if (i > 0) nn_free(c, &h);
        h = a;
    }
    mi_tensor out = prelu_step(c, &s->out_act, &h, s->act[s->n - 1].name, residual, s->out_act.name);
    if (out.data != h.data) nn_free(c, &h);                                   /* out_act(x + residual) */
    nn_mark(c, s->name, &out);
    return out;
}

/* true when the session keeps a result whose name starts with one of the prefixes */
static bool wants_any(const nn_ctx *c, const char *const *prefix, int n) {
    for (int i = 0; i < c->nwant; i++)
        for (int k = 0; k < n; k++)
            if (!strncmp(c->want[i], prefix[k], strlen(prefix[k]))) return true;
    return false;
}

static bool input_ok(const mi_vnet *v, nn_ctx *c, const mi_tensor *x) {
    const mi_vnet_config *g = &v->cfg;
    const char *arch = g->dims == 2 ? "vnet2d" : "vnet3d";
    if (x->ndim != g->dims + 2 || x->shape[1] != g->in_channels) {
        nn_fail(c, MI_FAIL(MI_ERR_SHAPE, "a %s takes (N, %d, %s) inputs", arch, g->in_channels,
                           g->dims == 2 ? "H, W" : "D, H, W"));
        return false;
    }
    const int64_t m = (int64_t)1 << g->levels;
    for (int d = 2; d < x->ndim; d++)
        if (x->shape[d] < m || x->shape[d] % m) {
            nn_fail(c, MI_FAIL(MI_ERR_SHAPE, "side %lld (dim %d) is not a positive multiple of 2^%d = %lld: "
                               "this %s down-samples %d times", (long long)x->shape[d], d, g->levels,
                               (long long)m, arch, g->levels));
            return false;
        }
    return true;
}

/* pooled = bottleneck.mean(spatial); features = relu(fc(pooled)); tile_logits = cls(features) */
static void classify(const mi_vnet *v, nn_ctx *c, const mi_tensor *bottleneck) {
    mi_tensor pool = nn_global_avg_pool(c, bottleneck, "pool");
    mi_tensor fc = nn_linear_fwd(c, &v->fc, &pool);
    nn_free(c, &pool);
    mi_tensor feat = nn_ok(c) ? nn_alloc(c, 2, fc.shape, "features") : fc;
    if (nn_ok(c) && nn_compute(c)) mi_relu(feat.data, fc.data, mi_tensor_numel(&fc));
    nn_free(c, &fc);
    nn_mark(c, "features", &feat);
    mi_tensor logits = nn_linear_fwd(c, &v->cls, &feat);
    nn_mark(c, "tile_logits", &logits);
    nn_free(c, &feat);
    nn_free(c, &logits);
}

mi_tensor mi_vnet_forward(const mi_vnet *v, nn_ctx *c, const mi_tensor *x) {
    static const char *const dec_names[] = { "seg", "head", "up.", "dec." };
    static const char *const cls_names[] = { "pool", "fc", "cls", "features", "tile_logits" };
    const int L = v->cfg.levels;
    if (!nn_ok(c) || (c->measure && !input_ok(v, c, x))) return (mi_tensor){ 0 };
    mi_tensor skip[MI_VNET_MAX_LEVELS + 1];
    /* h = enc[0](x, x.repeat(...)[:, :width]) */
    mi_tensor h = stage_forward(c, &v->enc[0], x, x);
    for (int l = 1; l <= L; l++) {
        skip[l - 1] = h;
        mi_tensor y = nn_conv(c, &v->down[l - 1], &h, NULL, MI_ACT_NONE);
        mi_tensor d = prelu_step(c, &v->down_act[l - 1], &y, v->down[l - 1].name, NULL, v->down_act[l - 1].name);
        if (d.data != y.data) nn_free(c, &y);
        char name[32];
        snprintf(name, sizeof name, "down.%d", l - 1);
        nn_mark(c, name, &d);
        h = stage_forward(c, &v->enc[l], &d, &d);                /* enc[l](d, d) */
        nn_free(c, &d);
    }
    if (wants_any(c, cls_names, 5)) classify(v, c, &h);
    if (!wants_any(c, dec_names, 4)) {
        for (int l = 0; l < L; l++) nn_free(c, &skip[l]);
        return h;
    }
    for (int j = 0; j < L; j++) {
        const int l = L - 1 - j;
        char name[32];
        mi_tensor y = nn_deconv(c, &v->up[j], &h, NULL, MI_ACT_NONE);
        nn_free(c, &h);
        mi_tensor u = prelu_step(c, &v->up_act[j], &y, v->up[j].name, NULL, v->up_act[j].name);
        if (u.data != y.data) nn_free(c, &y);
        snprintf(name, sizeof name, "up.%d", j);
        nn_mark(c, name, &u);
        /* cat = torch.cat([u, skip], 1) */
        const mi_tensor *parts[2] = { &u, &skip[l] };
        int64_t shape[MI_MAX_DIMS];
        snprintf(name, sizeof name, "dec.%d.cat", j);
        if (nn_ok(c) && nn_fail(c, mi_concat_out_shape(shape, parts, 2, 1))) return (mi_tensor){ 0 };
        mi_tensor cat = nn_ok(c) ? nn_alloc(c, u.ndim, shape, name) : u;
        if (nn_ok(c) && nn_compute(c)) mi_concat_t(&cat, parts, 2, 1);
        nn_free(c, &u);
        nn_free(c, &skip[l]);
        h = stage_forward(c, &v->dec[j], &cat, &cat);            /* dec[j](cat, cat) */
        nn_free(c, &cat);
    }
    mi_tensor logits = nn_conv(c, &v->head, &h, NULL, MI_ACT_NONE);
    nn_free(c, &h);
    mi_tensor seg = nn_ok(c) && nn_wants(c, "head") ? nn_alloc(c, logits.ndim, logits.shape, "seg") : logits;
    if (nn_ok(c) && nn_compute(c))
        mi_softmax(seg.data, logits.data, logits.shape[0], logits.shape[1], inner_of(&logits));
    nn_mark(c, "seg", &seg);
    return seg;
}
