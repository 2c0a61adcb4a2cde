/* nn/segnet.c - tools/lesionseg_ref.py's SegNet: a U-Net (two 3x3 conv + BN + ReLU per level, 2x2
 * max-pool down, 2x2 stride-2 transposed convolutions up, skip first in the concatenation) whose
 * encoder maps are weighted by attention from the depth channel: a depth stem and, per level
 * below the first, a depthwise-separable stride-2 block keep a depth feature map at the
 * encoder's scale; a 1x1 convolution and a sigmoid of it (spatial: one channel, broadcast over
 * the encoder's channels) or of its spatial mean (channel: one weight per channel and image)
 * give W, and the map becomes F * W or F * (1 + W).
 *
 * What is fused, and why it is exact:
 *   - Every BatchNorm is folded into its convolution at load (float64) and the ReLU after it runs
 *     in the convolution's epilogue, as nn/resnet.c does.
 *   - The depthwise 3x3 stride-2 convolution is a grouped mi_conv (groups = channels).
 *   - sigmoid, 1 + W and F * W run in place on the tensor before them unless the session keeps
 *     that tensor by name. 1 + W is its own rounded step before the product, as torch evaluates
 *     f * (1 + wt): F * (1 + W) is not F + F * W in float32. */
#include "nn/segnet.h"

#include "nn/layers.h"
#include "ops/act.h"
#include "ops/elementwise.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_L MI_SEGNET_MAX_LEVELS

typedef struct { mi_conv c0, c1; } double_conv;

struct mi_segnet {
    mi_segnet_config cfg;
    double_conv enc[MAX_L + 1], dec[MAX_L];
    mi_conv     dstem, ddown_dw[MAX_L], ddown_pw[MAX_L], att[MAX_L + 1], head;
    mi_deconv   up[MAX_L];
};

/* ---- configuration ------------------------------------------------------------------------ */

static mi_status meta_int(const mi_weights *w, const char *key, long long lo, long long hi, int *v) {
    if (!mi_weights_meta(w, key)) return MI_OK;
    long long x;
    mi_status st = mi_weights_meta_int(w, key, lo, hi, &x);
    if (st == MI_OK) *v = (int)x;
    return st;
}

/* a key that must be one of two words: *second = (value == b) */
static mi_status meta_word(const mi_weights *w, const char *key, const char *a, const char *b, bool *second) {
    const char *v = mi_weights_meta(w, key);
    if (!v) return MI_OK;
    if (strcmp(v, a) && strcmp(v, b))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata '%s' = '%.32s' is not '%s' or '%s'", w->path, key, v, a, b);
    *second = !strcmp(v, b);
    return MI_OK;
}

mi_status mi_segnet_config_from_blob(mi_segnet_config *c, const mi_weights *w) {
    static const mi_segnet_config defaults = {   /* tools/lesionseg_ref.py SEG_DEFAULTS */
        .input_size = 192, .in_channels = 3, .levels = 4, .widths = { 16, 32, 64, 128, 256 }, .depth_channels = 8,
        .channel_attention = false, .attention_residual = false, .sigmoid = false, .mask_threshold = 0.5f };
    *c = defaults;
    const char *arch = mi_weights_meta(w, "arch");
    if (!arch || strcmp(arch, "segnet"))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'arch' = '%.32s' is not 'segnet'", w->path,
                       arch ? arch : "(missing)");
    mi_status st;
    int residual = 0;
    if ((st = meta_int(w, "input_size", 1, 16384, &c->input_size)) ||
        (st = meta_int(w, "in_channels", 1, 1024, &c->in_channels)) ||
        (st = meta_int(w, "depth_channels", 1, 4096, &c->depth_channels)) ||
        (st = meta_int(w, "attention_residual", 0, 1, &residual)) ||
        (st = meta_word(w, "attention", "spatial", "channel", &c->channel_attention)) ||
        (st = meta_word(w, "output", "softmax", "sigmoid", &c->sigmoid)))
        return st;
    c->attention_residual = residual;
    if (mi_weights_meta(w, "mask_threshold")) {
        double t;
        if ((st = mi_weights_meta_double(w, "mask_threshold", &t))) return st;
        if (!(t >= 0 && t <= 1))
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'mask_threshold' = %g is not a probability in [0, 1]",
                           w->path, t);
        c->mask_threshold = (float)t;
    }
    if (mi_weights_meta(w, "widths")) {
        int n;
        if ((st = mi_weights_meta_ints(w, "widths", 1, 4096, c->widths, MAX_L + 1, &n))) return st;
        if (n < 2)
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'widths' has %d level, expected 2..%d (level 0 .. the "
                           "bottleneck)", w->path, n, MAX_L + 1);
        c->levels = n - 1;
    }
    if (c->input_size % (1 << c->levels))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'input_size' = %d is not a multiple of 2^%d = %d (the "
                       "network down-samples %d times)", w->path, c->input_size, c->levels, 1 << c->levels,
                       c->levels);
    return MI_OK;
}

/* ---- loading ------------------------------------------------------------------------------ */

/* torchvision-style "<seq>.0" conv (no bias) + "<seq>.1" BatchNorm2d, folded */
static mi_status conv_bn(const mi_weights *w, mi_conv *cv, const char *seq, int64_t cin, int64_t cout, int64_t k,
                         int64_t s, int64_t groups, int64_t side) {
    char cn[64], bn[64];
    snprintf(cn, sizeof cn, "%s.0", seq);
    snprintf(bn, sizeof bn, "%s.1", seq);
    mi_conv_desc d = mi_conv2d_desc(cin, cout, k, s, k / 2, groups);
    d.in_size[1] = d.in_size[2] = side;
    return nn_load_conv_bn(cv, w, cn, bn, &d, 1e-5);   /* torch's BatchNorm2d eps */
}

/* DoubleConv "<name>.0", "<name>.1" */
static mi_status load_double(const mi_weights *w, double_conv *dc, const char *name, int64_t cin, int64_t cout,
                             int64_t side) {
    char t[48];
    mi_status st;
    snprintf(t, sizeof t, "%s.0", name);
    if ((st = conv_bn(w, &dc->c0, t, cin, cout, 3, 1, 1, side))) return st;
    snprintf(t, sizeof t, "%s.1", name);
    return conv_bn(w, &dc->c1, t, cout, cout, 3, 1, 1, side);
}

/* a 1x1 convolution with bias */
static mi_status conv1x1(const mi_weights *w, mi_conv *cv, const char *name, int64_t cin, int64_t cout,
                         int64_t side) {
    mi_conv_desc d = mi_conv2d_desc(cin, cout, 1, 1, 0, 1);
    d.in_size[1] = d.in_size[2] = side;
    return nn_load_conv(cv, w, name, &d, true);
}

static mi_status load(mi_segnet *s, const mi_weights *w) {
    const mi_segnet_config *c = &s->cfg;
    const int L = c->levels, dc = c->depth_channels, R = c->input_size;
    const int *wd = c->widths;
    mi_status st;
    char t[48];
    if ((st = conv_bn(w, &s->dstem, "dstem", 1, dc, 3, 1, 1, R))) return st;
    for (int l = 0; l <= L; l++) {
        const int side = R >> l;
        snprintf(t, sizeof t, "enc.%d", l);
        if ((st = load_double(w, &s->enc[l], t, l ? wd[l - 1] : c->in_channels, wd[l], side))) return st;
        if (l) {
            snprintf(t, sizeof t, "ddown.%d.0", l - 1);          /* depthwise 3x3 stride 2 */
            if ((st = conv_bn(w, &s->ddown_dw[l - 1], t, dc, dc, 3, 2, dc, side * 2))) return st;
            snprintf(t, sizeof t, "ddown.%d.1", l - 1);          /* pointwise */
            if ((st = conv_bn(w, &s->ddown_pw[l - 1], t, dc, dc, 1, 1, 1, side))) return st;
        }
        snprintf(t, sizeof t, "att.%d", l);
        if ((st = conv1x1(w, &s->att[l], t, dc, c->channel_attention ? wd[l] : 1, c->channel_attention ? 1 : side)))
            return st;
        /* the stage "att.<l>" is the sigmoid of this layer, which has the same state_dict name:
         * the layer's own result goes by another, so that a session keeping "att.<l>" keeps W */
        snprintf(s->att[l].name, sizeof s->att[l].name, "att.%d.conv", l);
    }
    for (int j = 0; j < L; j++) {
        const int l = L - 1 - j;
        mi_deconv_desc d = mi_deconv2d_desc(wd[l + 1], wd[l], 2, 2, 0, 0, 1);
        d.d.in_size[1] = d.d.in_size[2] = R >> (l + 1);
        snprintf(t, sizeof t, "up.%d", j);
        if ((st = nn_load_deconv(&s->up[j], w, t, &d, true))) return st;
        snprintf(t, sizeof t, "dec.%d", j);
        if ((st = load_double(w, &s->dec[j], t, 2 * wd[l], wd[l], R >> l))) return st;
    }
    return conv1x1(w, &s->head, "head", wd[0], c->sigmoid ? 1 : 2, R);
}

void mi_segnet_free(mi_segnet *s) {
    if (!s) return;
    for (int l = 0; l <= MAX_L; l++) {
        mi_conv_free(&s->enc[l].c0);
        mi_conv_free(&s->enc[l].c1);
        mi_conv_free(&s->att[l]);
    }
    for (int j = 0; j < MAX_L; j++) {
        mi_conv_free(&s->dec[j].c0);
        mi_conv_free(&s->dec[j].c1);
        mi_conv_free(&s->ddown_dw[j]);
        mi_conv_free(&s->ddown_pw[j]);
        mi_deconv_free(&s->up[j]);
    }
    mi_conv_free(&s->dstem);
    mi_conv_free(&s->head);
    free(s);
}

mi_status mi_segnet_load(mi_segnet **out, const mi_weights *w) {
    *out = NULL;
    mi_segnet *s = calloc(1, sizeof *s);   /* zeroed: freeing a layer never loaded is a no-op */
    if (!s) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", w->path);
    mi_status st = mi_segnet_config_from_blob(&s->cfg, w);
    if (st == MI_OK) st = load(s, w);
    if (st) {
        mi_segnet_free(s);
        return st;
    }
    *out = s;
    return MI_OK;
}

const mi_segnet_config *mi_segnet_get_config(const mi_segnet *s) { return &s->cfg; }

/* ---- forward ------------------------------------------------------------------------------ */

static mi_tensor empty(void) { return (mi_tensor){ 0 }; }

static bool input_ok(const mi_segnet *s, nn_ctx *c, const mi_tensor *x) {
    const mi_segnet_config *g = &s->cfg;
    if (x->ndim != 4 || x->shape[1] != g->in_channels + 1) {
        char sh[96];
        nn_fail(c, MI_FAIL(MI_ERR_SHAPE, "a segnet takes (N, %d, H, W) inputs (%d image channels, then the depth "
                           "map), not %s", g->in_channels + 1, g->in_channels,
                           mi_shape_str(sh, sizeof sh, x->ndim, x->shape)));
        return false;
    }
    const int64_t m = (int64_t)1 << g->levels;
    for (int d = 2; d < 4; d++)
        if (x->shape[d] < m || x->shape[d] % m) {
            nn_fail(c, MI_FAIL(MI_ERR_SHAPE, "side %lld (dim %d) is not a positive multiple of 2^%d = %lld: this "
                               "segnet down-samples %d times", (long long)x->shape[d], d, g->levels, (long long)m,
                               g->levels));
            return false;
        }
    return true;
}

/* inp[:, :cin] and inp[:, cin:cin+1] as two contiguous tensors */
static void split_input(nn_ctx *c, const mi_tensor *x, int64_t cin, mi_tensor *img, mi_tensor *dep) {
    const int64_t N = x->shape[0], H = x->shape[2], W = x->shape[3];
    const int64_t si[4] = { N, cin, H, W }, sd[4] = { N, 1, H, W };
    *img = nn_ok(c) ? nn_alloc(c, 4, si, "input.image") : empty();
    *dep = nn_ok(c) ? nn_alloc(c, 4, sd, "input.depth") : empty();
    if (nn_ok(c) && nn_compute(c))
        for (int64_t n = 0; n < N; n++) {
            const float *src = x->data + n * (cin + 1) * H * W;
            memcpy(img->data + n * cin * H * W, src, (size_t)(cin * H * W) * sizeof(float));
            memcpy(dep->data + n * H * W, src + cin * H * W, (size_t)(H * W) * sizeof(float));
        }
    nn_mark(c, "input.image", img);
    nn_mark(c, "input.depth", dep);
}

/* 1 + W, rounded once per element */
static mi_tensor one_plus(nn_ctx *c, const mi_tensor *wt, bool in_place, const char *name) {
    if (!nn_ok(c)) return empty();
    mi_tensor y = *wt;
    if (!in_place) y = nn_alloc(c, wt->ndim, wt->shape, name);
    snprintf(y.name, sizeof y.name, "%s", name);
    if (nn_ok(c) && nn_compute(c))
        for (int64_t i = 0; i < mi_tensor_numel(wt); i++) y.data[i] = 1.0f + wt->data[i];
    nn_mark(c, name, &y);
    return y;
}

/* F * W: W (N, 1, h, w) broadcast over F's channels, or (N, C, 1, 1) one weight per channel and
 * image */
static mi_tensor weigh(nn_ctx *c, const mi_tensor *f, const mi_tensor *wt, bool channel, bool in_place,
                       const char *name) {
    if (!nn_ok(c)) return empty();
    mi_tensor y = *f;
    if (!in_place) y = nn_alloc(c, f->ndim, f->shape, name);
    snprintf(y.name, sizeof y.name, "%s", name);
    if (nn_ok(c) && nn_compute(c)) {
        const int64_t N = f->shape[0], C = f->shape[1], inner = f->shape[2] * f->shape[3];
        if (!channel) {
            mi_mul_spatial(y.data, f->data, wt->data, N, C, inner);
        } else {
            for (int64_t n = 0; n < N; n++)
                mi_mul_channel(y.data + n * C * inner, f->data + n * C * inner, wt->data + n * C, 1, C, inner);
        }
    }
    nn_mark(c, name, &y);
    return y;
}

mi_tensor mi_segnet_forward(const mi_segnet *s, nn_ctx *c, const mi_tensor *x) {
    static const mi_pool_desc pool2 = { .sp = 2, .k = { 1, 2, 2 }, .stride = { 1, 2, 2 }, .pad = { 0, 0, 0 },
                                        .dil = { 1, 1, 1 } };
    const mi_segnet_config *g = &s->cfg;
    const int L = g->levels;
    if (!nn_ok(c) || (c->measure && !input_ok(s, c, x))) return empty();
    char name[32];
    mi_tensor img, dep, skip[MAX_L + 1];
    split_input(c, x, g->in_channels, &img, &dep);
    mi_tensor df = nn_conv(c, &s->dstem, &dep, NULL, MI_ACT_RELU);         /* dstem(d) */
    nn_free(c, &dep);
    mi_tensor f = img;
    for (int l = 0; l <= L; l++) {
        mi_tensor in = f;
        if (l) {
            snprintf(name, sizeof name, "enc.%d.pool", l);
            in = nn_max_pool(c, &pool2, &f, name);                         /* max_pool2d(f, 2) */
            mi_tensor t = nn_conv(c, &s->ddown_dw[l - 1], &df, NULL, MI_ACT_RELU);   /* ddown[l-1](df) */
            nn_free(c, &df);
            df = nn_conv(c, &s->ddown_pw[l - 1], &t, NULL, MI_ACT_RELU);
            nn_free(c, &t);
        }
        mi_tensor h = nn_conv(c, &s->enc[l].c0, &in, NULL, MI_ACT_RELU);  /* enc[l](f) */
        nn_free(c, &in);                                                   /* the pool, or the image */
        mi_tensor e = nn_conv(c, &s->enc[l].c1, &h, NULL, MI_ACT_RELU);
        nn_free(c, &h);
        /* wt = sigmoid(att[l](df or df.mean((2, 3), keepdim=True))) */
        mi_tensor a = df;
        if (g->channel_attention) {
            snprintf(name, sizeof name, "att.%d.mean", l);
            a = nn_global_avg_pool(c, &df, name);
        }
        mi_tensor wl = nn_conv(c, &s->att[l], &a, NULL, MI_ACT_NONE);
        if (g->channel_attention) nn_free(c, &a);
        snprintf(name, sizeof name, "att.%d", l);
        mi_tensor wt = nn_act_fwd(c, NN_SIGMOID, 0, &wl, !nn_wants(c, s->att[l].name), name);
        if (wt.data != wl.data) nn_free(c, &wl);
        if (g->attention_residual) {                                       /* 1 + wt */
            mi_tensor p = one_plus(c, &wt, !nn_wants(c, name), "att.plus1");
            if (p.data != wt.data) nn_free(c, &wt);
            wt = p;
        }
        snprintf(name, sizeof name, "enc.%d", l);
        f = weigh(c, &e, &wt, g->channel_attention, !nn_wants(c, s->enc[l].c1.name), name);   /* f * (1 +) wt */
        if (f.data != e.data) nn_free(c, &e);
        nn_free(c, &wt);
        skip[l] = f;
    }
    nn_free(c, &df);
    for (int j = 0; j < L; j++) {
        const int l = L - 1 - j;
        mi_tensor u = nn_deconv(c, &s->up[j], &f, NULL, MI_ACT_NONE);    /* up[j](f) */
        nn_free(c, &f);                                                    /* skip[L] the first time */
        const mi_tensor *parts[2] = { &skip[l], &u };                      /* cat([skip, up], 1) */
        snprintf(name, sizeof name, "dec.%d.cat", j);
        mi_tensor cat = nn_concat(c, parts, 2, name);
        nn_free(c, &u);
        nn_free(c, &skip[l]);
        mi_tensor h = nn_conv(c, &s->dec[j].c0, &cat, NULL, MI_ACT_RELU);  /* dec[j](cat) */
        nn_free(c, &cat);
        f = nn_conv(c, &s->dec[j].c1, &h, NULL, MI_ACT_RELU);
        nn_free(c, &h);
        snprintf(name, sizeof name, "dec.%d", j);
        nn_mark(c, name, &f);
    }
    mi_tensor logits = nn_conv(c, &s->head, &f, NULL, MI_ACT_NONE);
    nn_free(c, &f);
    nn_mark(c, "logits", &logits);
    const bool in_place = !nn_wants(c, "logits") && !nn_wants(c, s->head.name);
    if (g->sigmoid) return nn_act_fwd(c, NN_SIGMOID, 0, &logits, in_place, "seg");
    if (!nn_ok(c)) return empty();
    mi_tensor seg = in_place ? logits : nn_alloc(c, 4, logits.shape, "seg");
    snprintf(seg.name, sizeof seg.name, "seg");
    if (nn_ok(c) && nn_compute(c))                                         /* softmax(logits, 1) */
        mi_softmax(seg.data, logits.data, logits.shape[0], logits.shape[1], logits.shape[2] * logits.shape[3]);
    nn_mark(c, "seg", &seg);
    return seg;
}
