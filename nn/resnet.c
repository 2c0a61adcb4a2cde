/* nn/resnet.c - torchvision.models.resnet18 / resnet50 (torchvision 0.14, "v1.5": the stride of
 * a Bottleneck is on its 3x3 conv2). Each *_forward mirrors the torch module's forward(), with
 * BatchNorm folded into the preceding conv at load and ReLU / residual add fused into the conv's
 * epilogue. */
#include "nn/resnet.h"

#include "nn/layers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    mi_conv conv1, conv2, conv3, down;  /* conv3 only in a Bottleneck */
    bool    has_down;
} block;

struct mi_resnet {
    bool      bottleneck;
    int       depth[4], stages, in_channels;
    mi_conv   stem;
    block    *blocks;            /* layer1..layer4 blocks, in order */
    int       nblocks;
    bool      head;
    nn_linear fc;
    int       feat;              /* channels of the last stage: 512 or 2048 (layer4), 256 or 1024 (layer3) */
    double    bn_eps;            /* of every BatchNorm folded at load */
};

static const mi_pool_desc stem_pool = { .sp = 2, .k = { 1, 3, 3 }, .stride = { 1, 2, 2 },
                                        .pad = { 0, 1, 1 }, .dil = { 1, 1, 1 } };

static int64_t out_size(int64_t n, int64_t k, int64_t s, int64_t p) { return (n + 2 * p - k) / s + 1; }

/* "<prefix><conv>" and "<prefix><bn>" as one folded conv, packed for an in_h x in_w input */
static mi_status conv_bn(const mi_resnet *r, const mi_weights *w, mi_conv *c, const char *prefix,
                         const char *conv, const char *bn, int64_t cin, int64_t cout, int64_t k, int64_t s,
                         int64_t p, const int64_t in[2]) {
    char cn[160], bnn[160];
    snprintf(cn, sizeof cn, "%s%s", prefix, conv);
    snprintf(bnn, sizeof bnn, "%s%s", prefix, bn);
    mi_conv_desc d = mi_conv2d_desc(cin, cout, k, s, p, 1);
    d.in_size[1] = in[0];
    d.in_size[2] = in[1];
    return nn_load_conv_bn(c, w, cn, bnn, &d, r->bn_eps);
}

/* layer<l>.<j>: in is its input H, W, and becomes its output's */
static mi_status load_block(const mi_resnet *r, const mi_weights *w, block *b, const char *prefix,
                            int l, int j, int64_t inplanes, int64_t planes, int64_t stride, int64_t in[2]) {
    char n[6][48];
    const int64_t out = r->bottleneck ? planes * 4 : planes;
    const int64_t o[2] = { out_size(in[0], 3, stride, 1), out_size(in[1], 3, stride, 1) };
    for (int i = 0; i < 3; i++) {
        snprintf(n[2 * i], sizeof n[0], "layer%d.%d.conv%d", l + 1, j, i + 1);
        snprintf(n[2 * i + 1], sizeof n[0], "layer%d.%d.bn%d", l + 1, j, i + 1);
    }
    mi_status st;
    if (r->bottleneck) {  /* torchvision Bottleneck: 1x1 -> 3x3 (stride) -> 1x1 (x4) */
        if ((st = conv_bn(r, w, &b->conv1, prefix, n[0], n[1], inplanes, planes, 1, 1, 0, in)) ||
            (st = conv_bn(r, w, &b->conv2, prefix, n[2], n[3], planes, planes, 3, stride, 1, in)) ||
            (st = conv_bn(r, w, &b->conv3, prefix, n[4], n[5], planes, out, 1, 1, 0, o)))
            return st;
    } else {              /* torchvision BasicBlock: 3x3 (stride) -> 3x3 */
        if ((st = conv_bn(r, w, &b->conv1, prefix, n[0], n[1], inplanes, planes, 3, stride, 1, in)) ||
            (st = conv_bn(r, w, &b->conv2, prefix, n[2], n[3], planes, planes, 3, 1, 1, o)))
            return st;
    }
    b->has_down = stride != 1 || inplanes != out;
    if (b->has_down) {
        snprintf(n[0], sizeof n[0], "layer%d.%d.downsample.0", l + 1, j);
        snprintf(n[1], sizeof n[0], "layer%d.%d.downsample.1", l + 1, j);
        if ((st = conv_bn(r, w, &b->down, prefix, n[0], n[1], inplanes, out, 1, stride, 0, in))) return st;
    }
    in[0] = o[0];
    in[1] = o[1];
    return MI_OK;
}

void mi_resnet_free(mi_resnet *r) {
    if (!r) return;
    mi_conv_free(&r->stem);
    for (int i = 0; r->blocks && i < r->nblocks; i++) {
        mi_conv_free(&r->blocks[i].conv1);
        mi_conv_free(&r->blocks[i].conv2);
        mi_conv_free(&r->blocks[i].conv3);
        mi_conv_free(&r->blocks[i].down);
    }
    free(r->blocks);
    free(r);
}

static mi_status load(mi_resnet *r, const mi_weights *w, const char *arch, const char *prefix,
                      int stages, bool head, int64_t in_h, int64_t in_w, double bn_eps) {
    static const int d18[4] = { 2, 2, 2, 2 }, d50[4] = { 3, 4, 6, 3 };
    if (!strcmp(arch, "resnet18")) memcpy(r->depth, d18, sizeof d18);
    else if (!strcmp(arch, "resnet50")) { memcpy(r->depth, d50, sizeof d50); r->bottleneck = true; }
    else return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: arch '%.32s' is not a ResNet this engine runs "
                        "(resnet18, resnet50)", w->path, arch);
    if (stages < 1 || stages > 4)
        return MI_FAIL(MI_ERR_ARG, "%s: a ResNet has 1 to 4 stages here, not %d", w->path, stages);
    if (stages < 4 && head)
        return MI_FAIL(MI_ERR_ARG, "%s: a ResNet cut at layer%d has no classification head", w->path, stages);
    if (!(bn_eps >= 0 && bn_eps <= 1))
        return MI_FAIL(MI_ERR_ARG, "%s: BatchNorm eps %g, expected a number in [0, 1]", w->path, bn_eps);
    r->bn_eps = bn_eps;
    r->stages = stages;
    r->feat = (r->bottleneck ? 256 : 64) << (stages - 1);
    /* conv1 decides the input channels: 3 for colour, 1 for a grey modality */
    char c1[96];
    snprintf(c1, sizeof c1, "%sconv1.weight", prefix);
    const mi_blob_tensor *t1 = mi_weights_find(w, c1);
    r->in_channels = t1 && t1->ndim == 4 && t1->shape[1] == 1 ? 1 : 3;
    mi_status st;
    int64_t in[2] = { in_h, in_w };
    if ((st = conv_bn(r, w, &r->stem, prefix, "conv1", "bn1", r->in_channels, 64, 7, 2, 3, in))) return st;
    in[0] = out_size(out_size(in[0], 7, 2, 3), 3, 2, 1);  /* after conv1 and maxpool */
    in[1] = out_size(out_size(in[1], 7, 2, 3), 3, 2, 1);
    for (int l = 0; l < stages; l++) r->nblocks += r->depth[l];
    if (!(r->blocks = calloc((size_t)r->nblocks, sizeof *r->blocks)))
        return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", w->path);
    int64_t inplanes = 64;
    for (int l = 0, i = 0; l < stages; l++)
        for (int j = 0; j < r->depth[l]; j++, i++) {
            const int64_t planes = 64 << l, stride = j == 0 && l > 0 ? 2 : 1;
            if ((st = load_block(r, w, &r->blocks[i], prefix, l, j, inplanes, planes, stride, in))) return st;
            inplanes = r->bottleneck ? planes * 4 : planes;
        }
    if ((r->head = head)) {
        char fc[96];
        snprintf(fc, sizeof fc, "%sfc.weight", prefix);
        const mi_blob_tensor *t = mi_weights_find(w, fc);
        if (!t) return MI_FAIL(MI_ERR_SHAPE, "%s: tensor '%s' is missing", w->path, fc);
        if (t->ndim != 2 || t->shape[0] < 1 || t->shape[0] > 1000000 || t->shape[1] != r->feat)
            return MI_FAIL(MI_ERR_SHAPE, "%s: tensor '%s' must be [num_classes, %d]", w->path, fc, r->feat);
        snprintf(fc, sizeof fc, "%sfc", prefix);
        if ((st = nn_load_linear(&r->fc, w, fc, r->feat, t->shape[0], true))) return st;
    }
    return MI_OK;
}

mi_status mi_resnet_load(mi_resnet **out, const mi_weights *w, const char *arch, const char *prefix,
                         int stages, bool head, int64_t in_h, int64_t in_w) {
    return mi_resnet_load_eps(out, w, arch, prefix, stages, head, in_h, in_w, 1e-5);  /* torch's BatchNorm2d eps */
}

mi_status mi_resnet_load_eps(mi_resnet **out, const mi_weights *w, const char *arch, const char *prefix,
                             int stages, bool head, int64_t in_h, int64_t in_w, double bn_eps) {
    *out = NULL;
    if (in_h < 1 || in_w < 1 || in_h > 65536 || in_w > 65536)
        return MI_FAIL(MI_ERR_ARG, "%s: input size %lldx%lld outside 1..65536", w->path,
                       (long long)in_h, (long long)in_w);
    mi_resnet *r = calloc(1, sizeof *r);
    if (!r) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", w->path);
    mi_status st = load(r, w, arch, prefix, stages, head, in_h, in_w, bn_eps);
    if (st) {
        mi_resnet_free(r);
        return st;
    }
    *out = r;
    return MI_OK;
}

int mi_resnet_num_classes(const mi_resnet *r) { return r->head ? (int)r->fc.out : 0; }
int mi_resnet_in_channels(const mi_resnet *r) { return r->in_channels; }
int mi_resnet_out_channels(const mi_resnet *r) { return r->feat; }

/* torchvision BasicBlock.forward / Bottleneck.forward: out = relu(convs(x) + identity). Consumes
 * x (frees it once nothing reads it) unless keep_x. The downsample runs first, so that x can go before the
 * block's wide last conv runs: the same arithmetic in another order, and a smaller peak. */
static mi_tensor block_forward(nn_ctx *c, const mi_resnet *r, const block *b, const mi_tensor *x,
                               bool keep_x) {
    mi_tensor identity = b->has_down ? nn_conv(c, &b->down, x, NULL, MI_ACT_NONE) : *x; /* downsample(x) */
    /* A stride-2 conv2 reads conv1's map in place, conv1 writing it padded (nn_conv_padded_out) */
    const int64_t mid[4] = { x->shape[0], b->conv1.d.cout, x->shape[2], x->shape[3] };
    const mi_tensor mid_shape = mi_tensor_view(NULL, 4, mid, "conv1");
    const bool pair = r->bottleneck && x->ndim == 4 && mi_conv_padded_out_ok(&b->conv1) &&
                      mi_conv_padded_in_ok(&b->conv2, &mid_shape);
    bool padded = false;
    mi_tensor out = pair ? nn_conv_padded_out(c, &b->conv1, x, MI_ACT_RELU, &padded)
                         : nn_conv(c, &b->conv1, x, NULL, MI_ACT_RELU);     /* relu(bn1(conv1(x))) */
    if (b->has_down && !keep_x) nn_free(c, x);
    const mi_conv *last = &b->conv2;
    if (r->bottleneck) {
        mi_tensor t = pair ? nn_conv_padded_in(c, &b->conv2, &out, padded, MI_ACT_RELU)
                           : nn_conv(c, &b->conv2, &out, NULL, MI_ACT_RELU); /* relu(bn2(conv2(out))) */
        nn_free(c, &out);
        out = t;
        last = &b->conv3;
    }
    /* relu(bn(conv) + identity), over the identity where nothing reads it afterwards (x itself
     * without a downsample) */
    const bool consume = b->has_down || !keep_x;
    mi_tensor y = consume ? nn_conv_add_into(c, last, &out, &identity, MI_ACT_RELU)
                          : nn_conv(c, last, &out, &identity, MI_ACT_RELU);
    nn_free(c, &out);
    return y;
}

/* The body up to the last stage; with feats, the stem's output and every stage's output are kept
 * for the caller (who frees them), else each is freed once the next step has read it. */
static mi_tensor body_forward(const mi_resnet *r, nn_ctx *c, const mi_tensor *x, mi_tensor *feats) {
    static const char *stage[4] = { "layer1", "layer2", "layer3", "layer4" };
    static const char *feature[4] = { "features.C2", "features.C3", "features.C4", "features.C5" };
    mi_tensor s = nn_conv(c, &r->stem, x, NULL, MI_ACT_RELU);   /* relu(bn1(conv1(x))) */
    mi_tensor cur = nn_max_pool(c, &stem_pool, &s, "stem");     /* maxpool */
    if (feats) feats[0] = s;
    else nn_free(c, &s);
    for (int l = 0, i = 0; l < r->stages; l++) {
        for (int j = 0; j < r->depth[l]; j++, i++) {
            /* the first block of a stage reads the previous stage's output, kept with feats */
            cur = block_forward(c, r, &r->blocks[i], &cur, feats && j == 0 && l > 0);
        }
        nn_mark(c, stage[l], &cur);
        nn_mark(c, feature[l], &cur);
        if (feats) feats[l + 1] = cur;
    }
    return cur;
}

mi_tensor mi_resnet_forward_feats(const mi_resnet *r, nn_ctx *c, const mi_tensor *x, mi_tensor feats[5]) {
    return body_forward(r, c, x, feats);
}

mi_tensor mi_resnet_forward(const mi_resnet *r, nn_ctx *c, const mi_tensor *x) {
    mi_tensor cur = body_forward(r, c, x, NULL);
    if (!r->head || !(nn_wants(c, "logits") || nn_wants(c, "fc") || nn_wants(c, "pool"))) return cur;
    mi_tensor pool = nn_global_avg_pool(c, &cur, "pool");       /* avgpool */
    nn_free(c, &cur);
    mi_tensor fc = nn_linear_fwd(c, &r->fc, &pool);             /* fc(flatten(x, 1)) */
    nn_free(c, &pool);
    nn_mark(c, "logits", &fc);
    return fc;
}
