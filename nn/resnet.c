/* nn/resnet.c - torchvision.models.resnet18 / resnet50 (torchvision 0.14, "v1.5": the stride of
 * a Bottleneck is on its 3x3 conv2). Each *_forward mirrors the torch module's forward(), with
 * BatchNorm folded into the preceding conv at load and ReLU / residual add fused into the conv's
 * epilogue. */
#include "resnet.h"

#include "../ops/conv.h"
#include "../ops/cpu.h"
#include "../ops/linear.h"
#include "../ops/pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    mi_conv conv1, conv2, conv3, down;  /* conv3 only in a Bottleneck */
    bool    has_down;
} block;

enum { A_STEM, A_L1, A_L2, A_L3, A_L4, A_POOL, A_FC, A_COUNT };
static const char *act_names[A_COUNT] = { "stem", "layer1", "layer2", "layer3", "layer4", "pool", "fc" };

struct mi_resnet {
    mi_weights w;
    char       arch[16];
    bool       bottleneck;
    int        depth[4];
    mi_conv    stem;
    block     *blocks;            /* layer1..layer4 blocks, in order */
    int        nblocks;
    const float *fc_w, *fc_b;     /* [num_classes, feat], [num_classes]: read from the blob */
    int        num_classes, feat, input_size, max_batch;
    char     **labels;
    int        nlabels;
    float      mean[3], std[3];
    mi_arena   arena;             /* every activation and the conv workspace, sized at load */
    float     *buf[5];            /* ping, pong, t1, t2, identity: max_batch x largest activation */
    float     *stage_out[A_COUNT];
    void      *workspace;
    size_t     workspace_size;
    mi_tensor  act[A_COUNT];
};

/* conv + BN loaded as one folded conv: "<conv>.weight" and "<bn>.{weight,bias,running_mean,running_var}".
 * in_hw: the square input the layer will see, so it is packed once, for that size, and the
 * unpacked copy freed at once (peak memory stays near one copy of the weights). */
static mi_status load_conv_bn(mi_resnet *m, mi_conv *c, const char *conv, const char *bn, int64_t cin,
                              int64_t cout, int64_t k, int64_t stride, int64_t pad, int64_t in_hw) {
    char name[160];
    mi_tensor w, g, b, mean, var;
    const int64_t wshape[4] = { cout, cin, k, k }, cshape[1] = { cout };
    mi_status st;
    snprintf(name, sizeof name, "%s.weight", conv);
    if ((st = mi_weights_get(&m->w, name, 4, wshape, &w))) return st;
    const char *part[4] = { "weight", "bias", "running_mean", "running_var" };
    mi_tensor *dst[4] = { &g, &b, &mean, &var };
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s", bn, part[i]);
        if ((st = mi_weights_get(&m->w, name, 1, cshape, dst[i]))) return st;
    }
    int64_t per_out = cin * k * k;
    float *fw = malloc((size_t)(cout * per_out) * sizeof *fw), *fb = calloc((size_t)cout, sizeof *fb);
    if (!fw || !fb) {
        free(fw); free(fb);
        return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory folding '%s'", m->w.path, conv);
    }
    memcpy(fw, w.data, (size_t)(cout * per_out) * sizeof *fw);
    mi_fold_batchnorm(fw, fb, g.data, b.data, mean.data, var.data, 1e-5, cout, per_out); /* torch's BN eps */
    mi_conv_desc d = mi_conv2d_desc(cin, cout, k, stride, pad, 1);
    d.in_size[1] = d.in_size[2] = in_hw;
    st = mi_conv_init(c, &d, fw, fb, conv);
    free(fw);
    free(fb);
    if (st == MI_OK) mi_conv_release_source(c);
    return st;
}

static int64_t out_hw(int64_t hw, int64_t k, int64_t s, int64_t p) { return (hw + 2 * p - k) / s + 1; }

static mi_status load_block(mi_resnet *m, block *bl, const char *p, int64_t inplanes, int64_t planes,
                            int64_t stride, int64_t hw) {
    char cn[96], bn[96];
    mi_status st;
    int64_t out = m->bottleneck ? planes * 4 : planes;
#define CONV_BN(dst, i, ci, co, k, s, pd, in) \
    (snprintf(cn, sizeof cn, "%s.conv%d", p, i), snprintf(bn, sizeof bn, "%s.bn%d", p, i), \
     load_conv_bn(m, dst, cn, bn, ci, co, k, s, pd, in))
    const int64_t o = out_hw(hw, 3, stride, 1);
    if (m->bottleneck) {  /* torchvision Bottleneck: 1x1 -> 3x3 (stride) -> 1x1 (x4) */
        if ((st = CONV_BN(&bl->conv1, 1, inplanes, planes, 1, 1, 0, hw))) return st;
        if ((st = CONV_BN(&bl->conv2, 2, planes, planes, 3, stride, 1, hw))) return st;
        if ((st = CONV_BN(&bl->conv3, 3, planes, out, 1, 1, 0, o))) return st;
    } else {              /* torchvision BasicBlock: 3x3 (stride) -> 3x3 */
        if ((st = CONV_BN(&bl->conv1, 1, inplanes, planes, 3, stride, 1, hw))) return st;
        if ((st = CONV_BN(&bl->conv2, 2, planes, planes, 3, 1, 1, o))) return st;
    }
#undef CONV_BN
    bl->has_down = stride != 1 || inplanes != out;
    if (bl->has_down) {
        snprintf(cn, sizeof cn, "%s.downsample.0", p);
        snprintf(bn, sizeof bn, "%s.downsample.1", p);
        if ((st = load_conv_bn(m, &bl->down, cn, bn, inplanes, out, 1, stride, 0, hw))) return st;
    }
    return MI_OK;
}

static void free_convs(mi_resnet *m) {
    mi_conv_free(&m->stem);
    for (int i = 0; m->blocks && i < m->nblocks; i++) {
        mi_conv_free(&m->blocks[i].conv1);
        mi_conv_free(&m->blocks[i].conv2);
        mi_conv_free(&m->blocks[i].conv3);
        mi_conv_free(&m->blocks[i].down);
    }
}

void mi_resnet_close(mi_resnet *m) {
    if (!m) return;
    free_convs(m);
    free(m->blocks);
    mi_strings_free(m->labels, m->nlabels);
    mi_arena_free(&m->arena);
    mi_weights_close(&m->w);
    free(m);
}

static const mi_pool_desc stem_pool = { .sp = 2, .k = { 1, 3, 3 }, .stride = { 1, 2, 2 },
                                        .pad = { 0, 1, 1 }, .dil = { 1, 1, 1 } };

/* Walks the network's shapes for an input of n x 3 x S x S: checks that every layer fits and
 * finds the largest activation and the largest conv workspace. */
static mi_status plan(mi_resnet *m, int64_t n, size_t *max_act, size_t *max_ws) {
    int64_t shape[MI_MAX_DIMS] = { n, 3, m->input_size, m->input_size }, out[MI_MAX_DIMS];
    mi_tensor x = mi_tensor_view(NULL, 4, shape, "input");
    mi_status st;
    *max_act = *max_ws = 0;
#define STEP(conv) do { \
        size_t ws = mi_conv_workspace((conv), &x); if (ws > *max_ws) *max_ws = ws; \
        if ((st = mi_conv_out_shape((conv), &x, out))) return st; \
        x = mi_tensor_view(NULL, 4, out, (conv)->name); \
        if ((size_t)mi_tensor_numel(&x) > *max_act) *max_act = (size_t)mi_tensor_numel(&x); \
    } while (0)
    STEP(&m->stem);
    if ((st = mi_pool_out_shape(&stem_pool, &x, out))) return st;
    x = mi_tensor_view(NULL, 4, out, "maxpool");
    for (int i = 0; i < m->nblocks; i++) {
        block *b = &m->blocks[i];
        mi_tensor in = x;
        STEP(&b->conv1);
        STEP(&b->conv2);
        if (m->bottleneck) STEP(&b->conv3);
        if (b->has_down) { mi_tensor y = x; x = in; STEP(&b->down); x = y; }
    }
#undef STEP
    if (x.shape[1] != m->feat)
        return MI_FAIL(MI_ERR_SHAPE, "%s: layer4 gives %lld features, fc expects %d", m->w.path,
                       (long long)x.shape[1], m->feat);
    return MI_OK;
}

static mi_status load(mi_resnet *m, const char *path, int max_batch) {
    mi_status st;
    if ((st = mi_weights_open(&m->w, path))) return st;
    const char *arch = mi_weights_meta(&m->w, "arch");
    if (!arch) return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'arch' is missing (expected resnet18 or resnet50)", path);
    static const int d18[4] = { 2, 2, 2, 2 }, d50[4] = { 3, 4, 6, 3 };
    if (!strcmp(arch, "resnet18")) memcpy(m->depth, d18, sizeof d18);
    else if (!strcmp(arch, "resnet50")) { memcpy(m->depth, d50, sizeof d50); m->bottleneck = true; }
    else return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: arch '%.32s' is not a ResNet this engine runs "
                        "(resnet18, resnet50)", path, arch);
    snprintf(m->arch, sizeof m->arch, "%s", arch);

    long long v = 224;
    if (mi_weights_meta(&m->w, "input_size") && (st = mi_weights_meta_int(&m->w, "input_size", 32, 4096, &v)))
        return st;
    m->input_size = (int)v;
    static const float imagenet_mean[3] = { 0.485f, 0.456f, 0.406f }, imagenet_std[3] = { 0.229f, 0.224f, 0.225f };
    memcpy(m->mean, imagenet_mean, sizeof m->mean);
    memcpy(m->std, imagenet_std, sizeof m->std);
    if (mi_weights_meta(&m->w, "mean") && (st = mi_weights_meta_floats(&m->w, "mean", m->mean, 3))) return st;
    if (mi_weights_meta(&m->w, "std") && (st = mi_weights_meta_floats(&m->w, "std", m->std, 3))) return st;
    for (int i = 0; i < 3; i++)
        if (!(m->std[i] > 0))
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'std' has a non-positive entry %g", path, m->std[i]);

    m->feat = m->bottleneck ? 2048 : 512;
    const mi_blob_tensor *fc = mi_weights_find(&m->w, "fc.weight");
    if (!fc) return MI_FAIL(MI_ERR_SHAPE, "%s: tensor 'fc.weight' is missing", path);
    if (fc->ndim != 2 || fc->shape[0] < 1 || fc->shape[0] > 1000000)
        return MI_FAIL(MI_ERR_SHAPE, "%s: tensor 'fc.weight' must be [num_classes, %d]", path, m->feat);
    m->num_classes = (int)fc->shape[0];
    mi_tensor t;
    int64_t fshape[2] = { m->num_classes, m->feat };
    if ((st = mi_weights_get(&m->w, "fc.weight", 2, fshape, &t))) return st;
    m->fc_w = t.data;
    if ((st = mi_weights_get(&m->w, "fc.bias", 1, fshape, &t))) return st;
    m->fc_b = t.data;
    if (mi_weights_meta(&m->w, "num_classes")) {
        if ((st = mi_weights_meta_int(&m->w, "num_classes", 1, 1000000, &v))) return st;
        if (v != m->num_classes)
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata num_classes = %lld but 'fc.weight' has %d rows",
                           path, v, m->num_classes);
    }
    if (mi_weights_meta(&m->w, "labels")) {
        if ((st = mi_weights_meta_strings(&m->w, "labels", &m->labels, &m->nlabels))) return st;
        if (m->nlabels != m->num_classes)
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'labels' has %d names for %d classes", path,
                           m->nlabels, m->num_classes);
    }

    if ((st = load_conv_bn(m, &m->stem, "conv1", "bn1", 3, 64, 7, 2, 3, m->input_size))) return st;
    int64_t hw = out_hw(out_hw(m->input_size, 7, 2, 3), 3, 2, 1);  /* after conv1 and maxpool */
    m->nblocks = m->depth[0] + m->depth[1] + m->depth[2] + m->depth[3];
    m->blocks = calloc((size_t)m->nblocks, sizeof *m->blocks);
    if (!m->blocks) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path);
    int64_t inplanes = 64;
    for (int l = 0, i = 0; l < 4; l++) {
        int64_t planes = 64 << l;
        for (int j = 0; j < m->depth[l]; j++, i++) {
            char p[32];
            snprintf(p, sizeof p, "layer%d.%d", l + 1, j);
            const int64_t stride = j == 0 && l > 0 ? 2 : 1;
            if ((st = load_block(m, &m->blocks[i], p, inplanes, planes, stride, hw))) return st;
            hw = out_hw(hw, 3, stride, 1);
            inplanes = m->bottleneck ? planes * 4 : planes;
        }
    }

    /* the arena: 5 working buffers of the largest activation, stage outputs, conv workspace */
    m->max_batch = max_batch;
    size_t max_act, max_ws;
    if ((st = plan(m, max_batch, &max_act, &max_ws))) return st;
    size_t stage[A_COUNT], total = 0;
    for (int i = 0; i < A_COUNT; i++) stage[i] = max_act;  /* no stage output is larger */
    stage[A_POOL] = (size_t)max_batch * (size_t)m->feat;
    stage[A_FC] = (size_t)max_batch * (size_t)m->num_classes;
    for (int i = 0; i < A_COUNT; i++) total += stage[i] * sizeof(float) + MI_ALIGN;
    total += 5 * (max_act * sizeof(float) + MI_ALIGN) + max_ws + MI_ALIGN;
    if ((st = mi_arena_init(&m->arena, total))) return st;
    for (int i = 0; i < 5; i++) m->buf[i] = mi_arena_alloc(&m->arena, max_act * sizeof(float));
    for (int i = 0; i < A_COUNT; i++) m->stage_out[i] = mi_arena_alloc(&m->arena, stage[i] * sizeof(float));
    m->workspace = mi_arena_alloc(&m->arena, max_ws ? max_ws : 1);
    m->workspace_size = max_ws;
    return MI_OK;
}

mi_status mi_resnet_open(mi_resnet **out, const char *path, int max_batch) {
    *out = NULL;
    if (max_batch < 1 || max_batch > 4096)
        return MI_FAIL(MI_ERR_ARG, "%s: max_batch %d outside [1, 4096]", path, max_batch);
    mi_resnet *m = calloc(1, sizeof *m);
    if (!m) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path);
    mi_status st = load(m, path, max_batch);
    if (st) {
        mi_resnet_close(m);
        return st;
    }
    *out = m;
    return MI_OK;
}

/* y = conv(x) with the fused epilogue; y's shape follows from x (checked at load by plan()). */
static mi_tensor conv(const mi_resnet *m, const mi_conv *c, float *dst, const mi_tensor *x,
                      const mi_tensor *residual, mi_act act) {
    int64_t shape[MI_MAX_DIMS];
    MI_ASSERT(mi_conv_out_shape(c, x, shape) == MI_OK);
    mi_tensor y = mi_tensor_view(dst, 4, shape, c->name);
    mi_conv_forward(c, &y, x, residual, act, m->workspace);
    return y;
}

/* torchvision BasicBlock.forward / Bottleneck.forward: out = relu(convs(x) + identity) */
static mi_tensor block_forward(mi_resnet *m, const block *b, const mi_tensor *x, float *dst) {
    mi_tensor t1 = conv(m, &b->conv1, m->buf[2], x, NULL, MI_ACT_RELU);          /* relu(bn1(conv1(x))) */
    mi_tensor identity = *x;
    if (b->has_down) identity = conv(m, &b->down, m->buf[4], x, NULL, MI_ACT_NONE); /* downsample(x) */
    if (!m->bottleneck)
        return conv(m, &b->conv2, dst, &t1, &identity, MI_ACT_RELU);             /* relu(bn2(conv2) + id) */
    mi_tensor t2 = conv(m, &b->conv2, m->buf[3], &t1, NULL, MI_ACT_RELU);        /* relu(bn2(conv2(out))) */
    return conv(m, &b->conv3, dst, &t2, &identity, MI_ACT_RELU);                 /* relu(bn3(conv3) + id) */
}

mi_status mi_resnet_forward(mi_resnet *m, const float *x, int64_t n, float *logits) {
    if (n < 1 || n > m->max_batch)
        return MI_FAIL(MI_ERR_ARG, "%s: batch of %lld images, the model was opened for 1..%d", m->w.path,
                       (long long)n, m->max_batch);
    const int64_t ishape[4] = { n, 3, m->input_size, m->input_size };
    mi_tensor in = mi_tensor_view((float *)x, 4, ishape, "input");

    /* stem: maxpool(relu(bn1(conv1(x)))) */
    mi_tensor s = conv(m, &m->stem, m->buf[0], &in, NULL, MI_ACT_RELU);
    int64_t shape[MI_MAX_DIMS];
    MI_ASSERT(mi_pool_out_shape(&stem_pool, &s, shape) == MI_OK);
    m->act[A_STEM] = mi_tensor_view(m->stage_out[A_STEM], 4, shape, "stem");
    mi_max_pool(&m->act[A_STEM], &s, &stem_pool);

    /* layer1..layer4: blocks ping-pong between buf[0] and buf[1]; a stage's last block writes
     * the stage output, so every named activation survives the forward pass */
    mi_tensor cur = m->act[A_STEM];
    for (int l = 0, i = 0; l < 4; l++)
        for (int j = 0; j < m->depth[l]; j++, i++) {
            bool last = j == m->depth[l] - 1;
            float *dst = last ? m->stage_out[A_L1 + l] : m->buf[j & 1];
            cur = block_forward(m, &m->blocks[i], &cur, dst);
            if (last) {
                m->act[A_L1 + l] = cur;
                snprintf(m->act[A_L1 + l].name, sizeof cur.name, "%s", act_names[A_L1 + l]);
            }
        }

    /* avgpool -> flatten -> fc */
    const int64_t pshape[4] = { n, m->feat, 1, 1 }, fshape[2] = { n, m->num_classes };
    m->act[A_POOL] = mi_tensor_view(m->stage_out[A_POOL], 4, pshape, "pool");
    mi_global_avg_pool(&m->act[A_POOL], &cur);
    m->act[A_FC] = mi_tensor_view(m->stage_out[A_FC], 2, fshape, "fc");
    mi_linear(m->act[A_FC].data, m->act[A_POOL].data, m->fc_w, m->fc_b, n, m->feat, m->num_classes);
    memcpy(logits, m->act[A_FC].data, (size_t)(n * m->num_classes) * sizeof *logits);
    return MI_OK;
}

const mi_weights *mi_resnet_weights(const mi_resnet *m) { return &m->w; }
const char *mi_resnet_arch(const mi_resnet *m) { return m->arch; }
int mi_resnet_num_classes(const mi_resnet *m) { return m->num_classes; }
int mi_resnet_input_size(const mi_resnet *m) { return m->input_size; }

const char *mi_resnet_label(const mi_resnet *m, int i) {
    static _Thread_local char fallback[32];
    if (i < 0 || i >= m->num_classes) return "?";
    if (m->labels) return m->labels[i];
    snprintf(fallback, sizeof fallback, "class_%d", i);
    return fallback;
}

void mi_resnet_norm(const mi_resnet *m, float mean[3], float std[3]) {
    memcpy(mean, m->mean, sizeof m->mean);
    memcpy(std, m->std, sizeof m->std);
}

const mi_tensor *mi_resnet_activation(const mi_resnet *m, const char *name) {
    for (int i = 0; i < A_COUNT; i++)
        if (!strcmp(name, act_names[i]) && m->act[i].data) return &m->act[i];
    return NULL;
}
