/* nn/rcnn.c - torchvision's FasterRCNN (eval mode) on a ResNet C4 or FPN backbone. The forward
 * below follows GeneralizedRCNN.forward step by step: transform, backbone (+ FPN), rpn,
 * roi_heads, transform.postprocess; each step names the torchvision function whose arithmetic
 * it repeats.
 *
 * Every size a step allocates is its maximum (pre/post-NMS top-n, detections per image), never a
 * count that depends on the data: the session's plan is made once, before any image is seen. */
#include "nn/rcnn.h"

#include "nn/layers.h"
#include "nn/resnet.h"
#include "ops/mathf.h"
#include "ops/act.h"
#include "ops/box.h"
#include "ops/linear.h"
#include "ops/nms.h"
#include "ops/pool.h"
#include "ops/resize.h"
#include "ops/roi.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FPN_MAPS 4   /* at most: the FPN's maps from layer1..layer4; LastLevelMaxPool adds one */

/* level l's feature map name in torchvision's OrderedDict (and in our marks): the returned
 * layers' maps '0'.., then 'pool' */
static const char *map_name(const mi_rcnn_config *cfg, int l) {
    static const char *const names[FPN_MAPS] = { "0", "1", "2", "3" };
    return cfg->fpn && l == cfg->fpn_maps ? "pool" : names[l];
}

struct mi_rcnn {
    mi_rcnn_config cfg;
    mi_resnet   *backbone;
    int64_t      feat_c;                        /* channels of the maps the RPN and RoIs read */
    mi_conv      fpn_inner[FPN_MAPS], fpn_layer[FPN_MAPS];   /* FeaturePyramidNetwork */
    /* RPNHead, shared by the levels; one packing per level, each for that map's size */
    mi_conv      rpn_conv[MI_RCNN_MAX_LEVELS], rpn_cls[MI_RCNN_MAX_LEVELS], rpn_bbox[MI_RCNN_MAX_LEVELS];
    nn_linear    fc6, fc7, cls, bbox;           /* TwoMLPHead + FastRCNNPredictor */
    int          num_classes;
};

/* ---- configuration from metadata ---------------------------------------------------------- */

static mi_status meta_int(const mi_weights *w, const char *key, long long lo, long long hi, int *v) {
    long long x;
    if (!mi_weights_meta(w, key)) return MI_OK;  /* torchvision's default stays */
    mi_status st = mi_weights_meta_int(w, key, lo, hi, &x);
    if (!st) *v = (int)x;
    return st;
}

static mi_status meta_prob_d(const mi_weights *w, const char *key, double *v) {
    double x;
    if (!mi_weights_meta(w, key)) return MI_OK;
    mi_status st = mi_weights_meta_double(w, key, &x);
    if (st) return st;
    if (!(x >= 0 && x <= 1))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata '%s' = %g, expected a number in [0, 1]", w->path, key, x);
    *v = x;
    return MI_OK;
}

static mi_status meta_prob(const mi_weights *w, const char *key, float *v) {
    double x = *v;
    mi_status st = meta_prob_d(w, key, &x);
    *v = (float)x;   /* score thresholds: torch compares a float tensor with the scalar as a float */
    return st;
}

/* A JSON array of n1 numbers, or (pairs) of n1 [a, b] arrays; *n gets the count. */
static mi_status meta_numbers(const mi_weights *w, const char *key, float *out, int max, bool pairs, int *n) {
    const char *v = mi_weights_meta(w, key);
    cJSON *a = cJSON_Parse(v);
    int k = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
    bool ok = k >= 1 && k <= max;
    for (int i = 0; ok && i < k; i++) {
        const cJSON *x = cJSON_GetArrayItem(a, i);
        for (int j = 0; ok && j < (pairs ? 2 : 1); j++) {
            const cJSON *y = pairs ? (cJSON_IsArray(x) && cJSON_GetArraySize(x) == 2 ? cJSON_GetArrayItem(x, j) : NULL) : x;
            ok = cJSON_IsNumber(y) && y->valuedouble > 0 && y->valuedouble < 1e5;
            if (ok) out[i * (pairs ? 2 : 1) + j] = (float)y->valuedouble;
        }
    }
    cJSON_Delete(a);
    if (!ok)
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata '%s' = '%.60s' is not a JSON array of 1..%d %s", w->path,
                       key, v, max, pairs ? "[width, height] pairs of positive numbers" : "positive numbers");
    *n = k;
    return MI_OK;
}

/* FPN 'anchor_sizes': one entry per level, each a positive number (torchvision's ((32,), (64,),
 * ...)) or an array of positive numbers, as many on every level (the RPN head is shared, so every
 * level has the same anchors per position). */
static mi_status fpn_anchor_sizes(const mi_weights *w, float sizes[MI_RCNN_MAX_LEVELS][MI_RCNN_MAX_ANCHORS],
                                  int nlevels, int *per_level) {
    const char *v = mi_weights_meta(w, "anchor_sizes");
    cJSON *a = cJSON_Parse(v);
    bool ok = cJSON_IsArray(a) && cJSON_GetArraySize(a) == nlevels;
    int m = -1;
    for (int l = 0; ok && l < nlevels; l++) {
        const cJSON *e = cJSON_GetArrayItem(a, l);
        const int n = cJSON_IsArray(e) ? cJSON_GetArraySize(e) : 1;
        ok = n >= 1 && n <= MI_RCNN_MAX_ANCHORS && (m < 0 || n == m);
        m = n;
        for (int i = 0; ok && i < n; i++) {
            const cJSON *y = cJSON_IsArray(e) ? cJSON_GetArrayItem(e, i) : e;
            ok = cJSON_IsNumber(y) && y->valuedouble > 0 && y->valuedouble < 1e5;
            if (ok) sizes[l][i] = (float)y->valuedouble;
        }
    }
    cJSON_Delete(a);
    if (!ok)
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'anchor_sizes' = '%.60s' is not a JSON array of %d levels (the "
                       "returned layers' maps and 'pool'), each a positive number or an array of 1..%d positive "
                       "numbers (as many on every level)", w->path, v, nlevels, MI_RCNN_MAX_ANCHORS);
    *per_level = m;
    return MI_OK;
}

/* FPN 'returned_layers': torchvision's returned_layers, a JSON array of 1..4 ResNet layer numbers
 * in 1..4, increasing (IntermediateLayerGetter returns them in the body's order, and the
 * pyramid's maps '0'.. follow that order). */
static mi_status fpn_returned_layers(const mi_weights *w, mi_rcnn_config *r) {
    const char *v = mi_weights_meta(w, "returned_layers");
    cJSON *a = cJSON_Parse(v);
    const int k = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
    bool ok = k >= 1 && k <= FPN_MAPS;
    for (int i = 0; ok && i < k; i++) {
        const cJSON *x = cJSON_GetArrayItem(a, i);
        /* the range first: casting 1e309 (inf) or NaN to int is undefined */
        ok = cJSON_IsNumber(x) && x->valuedouble >= 1 && x->valuedouble <= 4 &&
             x->valuedouble == (double)(int)x->valuedouble && (i == 0 || (int)x->valuedouble > r->returned[i - 1]);
        if (ok) r->returned[i] = (int)x->valuedouble;
    }
    cJSON_Delete(a);
    if (!ok)
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'returned_layers' = '%.60s' is not a JSON array of 1..4 "
                       "increasing ResNet layer numbers in 1..4 (e.g. [1, 2, 3, 4] or [2, 3, 4])", w->path, v);
    r->fpn_maps = k;
    return MI_OK;
}

mi_status mi_rcnn_config_from_blob(mi_rcnn_config *r, const mi_weights *w, int in_channels) {
    mi_status st;
    memset(r, 0, sizeof *r);
    const char *arch = mi_weights_meta(w, "arch");
    r->fpn = arch && !strcmp(arch, "fasterrcnn_fpn");
    r->fpn_maps = FPN_MAPS, r->fpn_channels = 256;
    for (int i = 0; i < FPN_MAPS; i++) r->returned[i] = i + 1;   /* resnet_fpn_backbone's [1, 2, 3, 4] */
    if (!r->fpn && (mi_weights_meta(w, "returned_layers") || mi_weights_meta(w, "fpn_channels")))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'returned_layers' and 'fpn_channels' configure a feature pyramid; "
                       "arch '%.32s' has none (fasterrcnn_fpn has)", w->path, arch ? arch : "(none)");
    if (r->fpn && mi_weights_meta(w, "returned_layers") && (st = fpn_returned_layers(w, r))) return st;
    if (r->fpn && (st = meta_int(w, "fpn_channels", 1, 4096, &r->fpn_channels))) return st;
    r->nlevels = r->fpn ? r->fpn_maps + 1 : 1;
    if (in_channels < 1 || in_channels > MI_RCNN_MAX_CHANNELS)
        return MI_FAIL(MI_ERR_ARG, "%s: %d input channels, 1..%d supported", w->path, in_channels, MI_RCNN_MAX_CHANNELS);
    r->in_c = in_channels;
    r->min_size = 800, r->max_size = 1333;
    r->pre_nms = 1000, r->post_nms = 1000, r->rpn_nms = 0.7, r->rpn_score = 0.0f;
    r->roi_out = 7, r->roi_sampling = 2, r->roi_scale0 = 224, r->roi_level0 = 4;
    r->box_score = 0.05f, r->box_nms = 0.5, r->dets = 100;
    r->bn_eps = 1e-5;
    if ((st = meta_int(w, "min_size", 1, 8192, &r->min_size)) || (st = meta_int(w, "max_size", 1, 8192, &r->max_size)) ||
        (st = meta_int(w, "rpn_pre_nms_top_n", 1, 100000, &r->pre_nms)) ||
        (st = meta_int(w, "rpn_post_nms_top_n", 1, 100000, &r->post_nms)) ||
        (st = meta_prob_d(w, "rpn_nms_thresh", &r->rpn_nms)) || (st = meta_prob(w, "rpn_score_thresh", &r->rpn_score)) ||
        (st = meta_int(w, "roi_output_size", 1, 64, &r->roi_out)) ||
        (st = meta_int(w, "roi_sampling_ratio", -1, 64, &r->roi_sampling)) ||
        (st = meta_int(w, "roi_canonical_scale", 1, 65536, &r->roi_scale0)) ||
        (st = meta_int(w, "roi_canonical_level", 0, 64, &r->roi_level0)) ||
        (st = meta_prob(w, "box_score_thresh", &r->box_score)) || (st = meta_prob_d(w, "box_nms_thresh", &r->box_nms)) ||
        (st = meta_int(w, "box_detections_per_img", 1, 100000, &r->dets)) ||
        (st = meta_prob_d(w, "bn_eps", &r->bn_eps)))
        return st;
    /* image_mean / image_std: one per input channel, torchvision's ImageNet values by default */
    static const float imagenet_mean[3] = { 0.485f, 0.456f, 0.406f }, imagenet_std[3] = { 0.229f, 0.224f, 0.225f };
    for (int c = 0; c < r->in_c; c++) r->mean[c] = imagenet_mean[c % 3], r->std[c] = imagenet_std[c % 3];
    if (mi_weights_meta(w, "image_mean") && (st = mi_weights_meta_floats(w, "image_mean", r->mean, r->in_c))) return st;
    if (mi_weights_meta(w, "image_std") && (st = mi_weights_meta_floats(w, "image_std", r->std, r->in_c))) return st;
    for (int c = 0; c < r->in_c; c++)
        if (!(r->std[c] > 0))
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'image_std' has %g, expected > 0", w->path, r->std[c]);
    float ratios[MI_RCNN_MAX_ANCHORS] = { 0.5f, 1.0f, 2.0f };
    int nr = 3;
    if (r->fpn) {   /* AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5) */
        if (mi_weights_meta(w, "anchors"))
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'anchors' ((w, h) boxes at one level) is for fasterrcnn_c4; "
                           "a fasterrcnn_fpn takes 'anchor_sizes' per level and 'anchor_ratios'", w->path);
        float sizes[MI_RCNN_MAX_LEVELS][MI_RCNN_MAX_ANCHORS] = { { 32 }, { 64 }, { 128 }, { 256 }, { 512 } };
        int ns = 1;
        /* torchvision's default sizes are five levels; AnchorGenerator refuses them for fewer maps */
        if (!mi_weights_meta(w, "anchor_sizes") && r->nlevels != MI_RCNN_MAX_LEVELS)
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'anchor_sizes' is missing: returned_layers gives %d feature "
                           "maps, torchvision's default anchor sizes are for %d", w->path, r->nlevels,
                           MI_RCNN_MAX_LEVELS);
        if (mi_weights_meta(w, "anchor_sizes") && (st = fpn_anchor_sizes(w, sizes, r->nlevels, &ns))) return st;
        if (mi_weights_meta(w, "anchor_ratios") &&
            (st = meta_numbers(w, "anchor_ratios", ratios, MI_RCNN_MAX_ANCHORS, false, &nr)))
            return st;
        if (ns * nr > MI_RCNN_MAX_ANCHORS)
            return MI_FAIL(MI_ERR_FORMAT, "%s: %d anchor sizes x %d ratios per level is more than %d anchors per "
                           "position", w->path, ns, nr, MI_RCNN_MAX_ANCHORS);
        for (int l = 0; l < r->nlevels; l++) mi_anchor_cells(r->cell[l], sizes[l], ns, ratios, nr);
        r->ncell = ns * nr;
        return MI_OK;
    }
    /* anchors: given (w, h) boxes, or the product of sizes and aspect ratios */
    if (mi_weights_meta(w, "anchors")) {
        float wh[MI_RCNN_MAX_ANCHORS][2];
        if ((st = meta_numbers(w, "anchors", &wh[0][0], MI_RCNN_MAX_ANCHORS, true, &r->ncell))) return st;
        mi_anchor_cells_wh(r->cell[0], (const float (*)[2])wh, r->ncell);
    } else {
        float sizes[MI_RCNN_MAX_ANCHORS] = { 32, 64, 128, 256, 512 };
        int ns = 5;
        if (mi_weights_meta(w, "anchor_sizes") && (st = meta_numbers(w, "anchor_sizes", sizes, MI_RCNN_MAX_ANCHORS, false, &ns)))
            return st;
        if (mi_weights_meta(w, "anchor_ratios") && (st = meta_numbers(w, "anchor_ratios", ratios, MI_RCNN_MAX_ANCHORS, false, &nr)))
            return st;
        if (ns * nr > MI_RCNN_MAX_ANCHORS)
            return MI_FAIL(MI_ERR_FORMAT, "%s: %d anchor sizes x %d ratios is more than %d anchors per position",
                           w->path, ns, nr, MI_RCNN_MAX_ANCHORS);
        mi_anchor_cells(r->cell[0], sizes, ns, ratios, nr);
        r->ncell = ns * nr;
    }
    return MI_OK;
}

/* ---- loading ------------------------------------------------------------------------------ */

static mi_status find2(const mi_weights *w, const char *name, int64_t *rows, int64_t *cols) {
    const mi_blob_tensor *t = mi_weights_find(w, name);
    if (!t) return MI_FAIL(MI_ERR_SHAPE, "%s: tensor '%s' is missing", w->path, name);
    if (t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 1)
        return MI_FAIL(MI_ERR_SHAPE, "%s: tensor '%s' must be 2-D", w->path, name);
    *rows = t->shape[0];
    *cols = t->shape[1];
    return MI_OK;
}

/* RPNHead (rpn.head.conv.0.0, cls_logits, bbox_pred) packed for level l's map of fh x fw */
static mi_status load_rpn_head(mi_rcnn *r, const mi_weights *w, int l, int64_t fh, int64_t fw) {
    const int64_t A = r->cfg.ncell;
    mi_conv_desc d = mi_conv2d_desc(r->feat_c, r->feat_c, 3, 1, 1, 1);
    d.in_size[1] = fh, d.in_size[2] = fw;
    mi_status st = nn_load_conv(&r->rpn_conv[l], w, "rpn.head.conv.0.0", &d, true);
    if (st) return st;
    d = mi_conv2d_desc(r->feat_c, A, 1, 1, 0, 1);
    d.in_size[1] = fh, d.in_size[2] = fw;
    if ((st = nn_load_conv(&r->rpn_cls[l], w, "rpn.head.cls_logits", &d, true))) return st;
    d = mi_conv2d_desc(r->feat_c, 4 * A, 1, 1, 0, 1);
    d.in_size[1] = fh, d.in_size[2] = fw;
    return nn_load_conv(&r->rpn_bbox[l], w, "rpn.head.bbox_pred", &d, true);
}

static int64_t conv_out(int64_t n, int64_t k, int64_t s, int64_t p) { return (n + 2 * p - k) / s + 1; }

/* BackboneWithFPN (resnet_fpn_backbone, or _resnet_fpn_extractor with returned_layers and
 * out_channels: the body up to the last returned layer, LastLevelMaxPool) and the RPN head per level,
 * packed for the padded batch of an rh x rw resized image. Returned layer L has (64 | 256) << (L - 1)
 * channels, as _resnet_fpn_extractor computes in_channels_list. The blob must hold exactly that
 * model: torchvision's load_state_dict would refuse a pyramid or a body of another depth too. */
static mi_status load_fpn(mi_rcnn *r, const mi_weights *w, const char *bb, int64_t rh, int64_t rw) {
    const int k = r->cfg.fpn_maps, last = r->cfg.returned[k - 1];
    const int64_t ph = (rh + 31) / 32 * 32, pw = (rw + 31) / 32 * 32;
    mi_status st = mi_resnet_load_eps(&r->backbone, w, bb, "backbone.body.", last, false, ph, pw, r->cfg.bn_eps);
    if (st) return st;
    if (mi_resnet_in_channels(r->backbone) != r->cfg.in_c)
        return MI_FAIL(MI_ERR_SHAPE, "%s: backbone conv1 has an unexpected input", w->path);
    char name[64];
    if (last < 4) {
        snprintf(name, sizeof name, "backbone.body.layer%d.0.conv1.weight", last + 1);
        if (mi_weights_find(w, name))
            return MI_FAIL(MI_ERR_SHAPE, "%s: tensor '%s' is present, but metadata 'returned_layers' ends at layer%d "
                           "(the body has no layer after it)", w->path, name, last);
    }
    const char *inner0 = "backbone.fpn.inner_blocks.0.0.weight";
    const mi_blob_tensor *t = mi_weights_find(w, inner0);
    if (!t)
        return MI_FAIL(MI_ERR_SHAPE, "%s: tensor '%s' is missing (a fasterrcnn_fpn has a feature pyramid)", w->path,
                       inner0);
    if (t->ndim != 4 || t->shape[0] != r->cfg.fpn_channels)
        return MI_FAIL(MI_ERR_SHAPE, "%s: tensor '%s' must be [%d, in, 1, 1] (metadata 'fpn_channels' %d%s)", w->path,
                       inner0, r->cfg.fpn_channels, r->cfg.fpn_channels,
                       mi_weights_meta(w, "fpn_channels") ? "" : ", torchvision's default");
    snprintf(name, sizeof name, "backbone.fpn.inner_blocks.%d.0.weight", k);
    if (k < FPN_MAPS && mi_weights_find(w, name))
        return MI_FAIL(MI_ERR_SHAPE, "%s: tensor '%s' is present, but metadata 'returned_layers' gives %d pyramid "
                       "map%s", w->path, name, k, k == 1 ? "" : "s");
    r->feat_c = r->cfg.fpn_channels;
    /* every stage's output size (layer1 at stride 4), then the returned ones' and 'pool' */
    int64_t sh[5], sw[5], h[MI_RCNN_MAX_LEVELS] = { 0 }, wd[MI_RCNN_MAX_LEVELS] = { 0 };
    sh[1] = conv_out(conv_out(ph, 7, 2, 3), 3, 2, 1), sw[1] = conv_out(conv_out(pw, 7, 2, 3), 3, 2, 1);
    for (int i = 2; i <= 4; i++) sh[i] = conv_out(sh[i - 1], 3, 2, 1), sw[i] = conv_out(sw[i - 1], 3, 2, 1);
    for (int i = 0; i < k; i++) h[i] = sh[r->cfg.returned[i]], wd[i] = sw[r->cfg.returned[i]];
    h[k] = conv_out(h[k - 1], 1, 2, 0), wd[k] = conv_out(wd[k - 1], 1, 2, 0);
    const int64_t c_last = mi_resnet_out_channels(r->backbone);   /* layer `last`'s */
    for (int i = 0; i < k; i++) {
        mi_conv_desc d = mi_conv2d_desc(c_last >> (last - r->cfg.returned[i]), r->feat_c, 1, 1, 0, 1);
        d.in_size[1] = h[i], d.in_size[2] = wd[i];
        snprintf(name, sizeof name, "backbone.fpn.inner_blocks.%d.0", i);
        if ((st = nn_load_conv(&r->fpn_inner[i], w, name, &d, true))) return st;
        d = mi_conv2d_desc(r->feat_c, r->feat_c, 3, 1, 1, 1);
        d.in_size[1] = h[i], d.in_size[2] = wd[i];
        snprintf(name, sizeof name, "backbone.fpn.layer_blocks.%d.0", i);
        if ((st = nn_load_conv(&r->fpn_layer[i], w, name, &d, true))) return st;
    }
    for (int l = 0; l <= k; l++)
        if ((st = load_rpn_head(r, w, l, h[l], wd[l]))) return st;
    return MI_OK;
}

static mi_status load(mi_rcnn *r, const mi_weights *w, int64_t in_h, int64_t in_w) {
    const char *bb = mi_weights_meta(w, "backbone");
    if (!bb) return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'backbone' is missing (resnet18, resnet50)", w->path);
    const mi_blob_tensor *c1 = mi_weights_find(w, "backbone.body.conv1.weight");
    mi_status st = mi_rcnn_config_from_blob(&r->cfg, w, c1 && c1->ndim == 4 && c1->shape[1] == 1 ? 1 : 3);
    if (st) return st;
    /* the backbone sees the resized image: pack its convolutions for that size */
    int64_t rh, rw;
    mi_rcnn_resized_size(r->cfg.min_size, r->cfg.max_size, in_h, in_w, &rh, &rw);
    rh = rh > 0 ? rh : 1, rw = rw > 0 ? rw : 1;
    if (r->cfg.fpn) {
        if ((st = load_fpn(r, w, bb, rh, rw))) return st;
    } else {
        if ((st = mi_resnet_load_eps(&r->backbone, w, bb, "backbone.body.", 3, false, rh, rw, r->cfg.bn_eps)))
            return st;
        if (mi_resnet_in_channels(r->backbone) != r->cfg.in_c)
            return MI_FAIL(MI_ERR_SHAPE, "%s: backbone conv1 has an unexpected input", w->path);
        r->feat_c = mi_resnet_out_channels(r->backbone);
        const int64_t fh = (rh + 15) / 16, fw = (rw + 15) / 16;
        if ((st = load_rpn_head(r, w, 0, fh, fw))) return st;
    }
    int64_t rep, in6, nc, nb, in_cls, in_box;
    if ((st = find2(w, "roi_heads.box_head.fc6.weight", &rep, &in6)) ||
        (st = find2(w, "roi_heads.box_predictor.cls_score.weight", &nc, &in_cls)) ||
        (st = find2(w, "roi_heads.box_predictor.bbox_pred.weight", &nb, &in_box)))
        return st;
    const int64_t pooled = r->feat_c * r->cfg.roi_out * r->cfg.roi_out;
    if (in6 != pooled)
        return MI_FAIL(MI_ERR_SHAPE, "%s: tensor 'roi_heads.box_head.fc6.weight' has %lld inputs, expected %lld "
                       "(%lld channels x %d x %d RoI bins)", w->path, (long long)in6, (long long)pooled,
                       (long long)r->feat_c, r->cfg.roi_out, r->cfg.roi_out);
    if (nc < 2 || nc > 10000 || nb != 4 * nc)
        return MI_FAIL(MI_ERR_SHAPE, "%s: box predictor has %lld classes and %lld box outputs, expected >= 2 "
                       "classes (background included) and 4 outputs per class", w->path, (long long)nc, (long long)nb);
    r->num_classes = (int)nc;
    if ((st = nn_load_linear(&r->fc6, w, "roi_heads.box_head.fc6", pooled, rep, true)) ||
        (st = nn_load_linear(&r->fc7, w, "roi_heads.box_head.fc7", rep, rep, true)) ||
        (st = nn_load_linear(&r->cls, w, "roi_heads.box_predictor.cls_score", rep, nc, true)) ||
        (st = nn_load_linear(&r->bbox, w, "roi_heads.box_predictor.bbox_pred", rep, 4 * nc, true)))
        return st;
    if (mi_weights_meta(w, "num_classes")) {
        long long v;
        if ((st = mi_weights_meta_int(w, "num_classes", 0, 1000000, &v))) return st;
        if (v != nc)
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata num_classes = %lld but the box predictor has %lld classes",
                           w->path, v, (long long)nc);
    }
    return MI_OK;
}

mi_status mi_rcnn_load(mi_rcnn **out, const mi_weights *w, int64_t in_h, int64_t in_w) {
    *out = NULL;
    if (in_h < 1 || in_w < 1 || in_h > 65536 || in_w > 65536)
        return MI_FAIL(MI_ERR_ARG, "%s: input size %lldx%lld outside 1..65536", w->path, (long long)in_h,
                       (long long)in_w);
    mi_rcnn *r = calloc(1, sizeof *r);
    if (!r) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", w->path);
    mi_status st = load(r, w, in_h, in_w);
    if (st) {
        mi_rcnn_free(r);
        return st;
    }
    *out = r;
    return MI_OK;
}

void mi_rcnn_free(mi_rcnn *r) {
    if (!r) return;
    mi_resnet_free(r->backbone);
    for (int i = 0; i < FPN_MAPS; i++) {
        mi_conv_free(&r->fpn_inner[i]);
        mi_conv_free(&r->fpn_layer[i]);
    }
    for (int l = 0; l < MI_RCNN_MAX_LEVELS; l++) {
        mi_conv_free(&r->rpn_conv[l]);
        mi_conv_free(&r->rpn_cls[l]);
        mi_conv_free(&r->rpn_bbox[l]);
    }
    free(r);
}

int mi_rcnn_num_classes(const mi_rcnn *r) { return r->num_classes; }
int mi_rcnn_in_channels(const mi_rcnn *r) { return r->cfg.in_c; }
int mi_rcnn_max_detections(const mi_rcnn *r) { return r->cfg.dets; }

/* ---- forward ------------------------------------------------------------------------------ */

static mi_tensor empty(void) { return (mi_tensor){ 0 }; }

void mi_rcnn_resized_size(int min_size, int max_size, int64_t h, int64_t w, int64_t *oh, int64_t *ow) {
    const float mn = (float)(h < w ? h : w), mx = (float)(h > w ? h : w);
    /* torch evaluates python_float / tensor as tensor.reciprocal() * python_float, both in float32:
     * min_size / mn rounded once differs in the last bit for some sizes (1070, 475), and then the
     * floor below lands one pixel off (1070 x 1348 at 160: 160 rows, not 159) */
    const float a = (1.0f / mn) * (float)min_size, b = (1.0f / mx) * (float)max_size;
    const double s = (double)(a < b ? a : b);
    *oh = (int64_t)floor((double)h * s);
    *ow = (int64_t)floor((double)w * s);
}

/* GeneralizedRCNNTransform: normalize, resize (bilinear, align_corners=False, the scale
 * recomputed from the sizes), batch_images (zero padding to a multiple of 32). */
static mi_tensor transform(const mi_rcnn *r, nn_ctx *c, const mi_tensor *x, int64_t oh, int64_t ow) {
    const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    mi_tensor nx = nn_alloc(c, 4, x->shape, "transform.normalize");
    if (nn_ok(c) && nn_compute(c))
        for (int64_t n = 0; n < N; n++)
            for (int64_t ch = 0; ch < C; ch++) {
                const float *s = x->data + (n * C + ch) * H * W;
                float *d = nx.data + (n * C + ch) * H * W;
                const float m = r->cfg.mean[ch], sd = r->cfg.std[ch];
                for (int64_t i = 0; i < H * W; i++) d[i] = (s[i] - m) / sd;   /* (image - mean) / std */
            }
    const int64_t rs_shape[4] = { N, C, oh, ow };
    mi_tensor rs = nn_alloc(c, 4, rs_shape, "transform.resize");
    if (nn_ok(c) && nn_compute(c)) mi_resize_linear(&rs, &nx, false, NULL);
    nn_free(c, &nx);
    const int64_t ph = (oh + 31) / 32 * 32, pw = (ow + 31) / 32 * 32;
    const int64_t pad_shape[4] = { N, C, ph, pw };
    mi_tensor img = nn_alloc(c, 4, pad_shape, "transform");
    if (nn_ok(c) && nn_compute(c)) {
        memset(img.data, 0, (size_t)mi_tensor_numel(&img) * sizeof(float));
        for (int64_t p = 0; p < N * C; p++)
            for (int64_t y = 0; y < oh; y++)
                memcpy(img.data + (p * ph + y) * pw, rs.data + (p * oh + y) * ow, (size_t)ow * sizeof(float));
    }
    nn_free(c, &rs);
    nn_mark(c, "transform", &img);
    return img;
}

/* The next `bytes` of a step's scratch, each piece aligned for any element type. */
#define CARVE_ALIGN 64
static void *carve(unsigned char **p, size_t bytes) {
    void *at = *p;
    *p += (bytes + CARVE_ALIGN - 1) / CARVE_ALIGN * CARVE_ALIGN;
    return at;
}

static float sigmoidf(float x) { return 1.0f / (1.0f + mi_expf(-x)); }

/* One level of one image as the RPN sees it: obj (A, h, w) logits, del (4A, h, w) deltas, and
 * the level's anchors in (y, x, a) order, hw = h * w positions. */
typedef struct {
    const float *obj, *del;
    const float (*anchors)[4];
    int64_t hw;
} rpn_level;

/* RegionProposalNetwork.filter_proposals for one image: per level, the top pre_nms_top_n anchors
 * by objectness (_get_top_n_idx), decoded; then over all levels together: clip, remove small,
 * score threshold, NMS per level (batched_nms with the level as category), keep post_nms_top_n. */
static int64_t propose(const mi_rcnn *r, const rpn_level *lv, int nl, int64_t oh, int64_t ow, float (*out)[4],
                       unsigned char *scratch) {
    const int64_t A = r->cfg.ncell;
    const mi_box_coder bc = mi_box_coder_default(1.0f, 1.0f, 1.0f, 1.0f);
    int64_t most = 0, cand = 0;
    for (int l = 0; l < nl; l++) {
        const int64_t total = lv[l].hw * A;
        most = total > most ? total : most;
        cand += total < r->cfg.pre_nms ? total : r->cfg.pre_nms;
    }
    float *logit = carve(&scratch, (size_t)most * sizeof(float));   /* one level, (y, x, a) order */
    int64_t *idx = carve(&scratch, (size_t)r->cfg.pre_nms * sizeof(int64_t));
    float (*box)[4] = carve(&scratch, (size_t)cand * sizeof *box);
    float *score = carve(&scratch, (size_t)cand * sizeof(float));
    int64_t *keep = carve(&scratch, (size_t)cand * sizeof(int64_t));
    int64_t *level = carve(&scratch, (size_t)cand * sizeof(int64_t));
    void *work = scratch;
    int64_t m = 0;
    for (int l = 0; l < nl; l++) {
        const int64_t hw = lv[l].hw, total = hw * A, k = total < r->cfg.pre_nms ? total : r->cfg.pre_nms;
        for (int64_t a = 0; a < A; a++)
            for (int64_t p = 0; p < hw; p++) logit[p * A + a] = lv[l].obj[a * hw + p];
        mi_topk(idx, logit, total, k, work);
        for (int64_t i = 0; i < k; i++, m++) {
            const int64_t j = idx[i], p = j / A, a = j % A;
            float rel[1][4];
            for (int q = 0; q < 4; q++) rel[0][q] = lv[l].del[(a * 4 + q) * hw + p];
            mi_box_decode((float (*)[4])box[m], (const float (*)[4])rel, &lv[l].anchors[j], 1, &bc);
            score[m] = sigmoidf(logit[j]);
            level[m] = l;
        }
    }
    mi_box_clip(box, m, (float)oh, (float)ow);
    int64_t n = mi_box_remove_small(keep, (const float (*)[4])box, m, 1e-3f);
    m = 0;
    for (int64_t i = 0; i < n; i++)                          /* compact, then score >= threshold */
        if (score[keep[i]] >= r->cfg.rpn_score) {
            memmove(box[m], box[keep[i]], sizeof box[0]);
            score[m] = score[keep[i]];
            level[m++] = level[keep[i]];
        }
    n = mi_batched_nms(keep, (const float (*)[4])box, score, level, m, r->cfg.rpn_nms, work);
    if (n > r->cfg.post_nms) n = r->cfg.post_nms;
    for (int64_t i = 0; i < n; i++) memcpy(out[i], box[keep[i]], sizeof out[0]);
    return n;
}

static size_t propose_scratch(const mi_rcnn *r, const int64_t *hw, int nl) {
    const int64_t A = r->cfg.ncell, P = r->cfg.pre_nms;
    int64_t most = 0, cand = 0;
    for (int l = 0; l < nl; l++) {
        most = hw[l] * A > most ? hw[l] * A : most;
        cand += hw[l] * A < P ? hw[l] * A : P;
    }
    size_t work = mi_topk_scratch_bytes(most);
    if (mi_batched_nms_scratch_bytes(cand) > work) work = mi_batched_nms_scratch_bytes(cand);
    return (size_t)most * sizeof(float) + (size_t)P * sizeof(int64_t) +
           (size_t)cand * (sizeof(int64_t) * 2 + sizeof(float) * 5) + work + 7 * CARVE_ALIGN;
}

/* RoIHeads.postprocess_detections + GeneralizedRCNNTransform.postprocess for one image: decode
 * every class's box from each proposal (weights 10, 10, 5, 5), softmax scores, clip, drop the
 * background, score > threshold, remove small (1e-2), NMS per class, keep detections_per_img,
 * scale back to the input's pixels. Writes rows (x1, y1, x2, y2, score, label) to det and each row's
 * proposal's softmax row (nc values) to probs: postprocess_detections flattens the scores per
 * class, so a detection's score is one entry of that row, and the row is what the detector thinks
 * of every class at that place. */
static int64_t detect(const mi_rcnn *r, const float *logits, const float *reg, const float (*props)[4], int64_t K,
                      int64_t oh, int64_t ow, int64_t H, int64_t W, float (*det)[6], float *probs,
                      unsigned char *scratch) {
    const int64_t nc = r->num_classes, cand = K * (nc - 1);
    const mi_box_coder bc = mi_box_coder_default(10.0f, 10.0f, 5.0f, 5.0f);
    float *prob = carve(&scratch, (size_t)K * nc * sizeof(float));
    float (*box)[4] = carve(&scratch, (size_t)cand * sizeof *box);
    float *score = carve(&scratch, (size_t)cand * sizeof(float));
    int64_t *label = carve(&scratch, (size_t)cand * sizeof(int64_t));
    int64_t *keep = carve(&scratch, (size_t)cand * sizeof(int64_t));
    int64_t *from = carve(&scratch, (size_t)cand * sizeof(int64_t));   /* the proposal of each candidate */
    void *work = scratch;
    mi_softmax(prob, logits, K, nc, 1);
    int64_t m = 0;
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 1; j < nc; j++) {
            const float p = prob[k * nc + j];
            if (!(p > r->cfg.box_score)) continue;
            mi_box_decode(&box[m], (const float (*)[4])(reg + (k * nc + j) * 4), &props[k], 1, &bc);
            score[m] = p;
            from[m] = k;
            label[m++] = j;
        }
    mi_box_clip(box, m, (float)oh, (float)ow);   /* clipping commutes with the score filter: boxes only */
    int64_t n = mi_box_remove_small(keep, (const float (*)[4])box, m, 1e-2f);
    for (int64_t i = 0; i < n; i++) {
        memmove(box[i], box[keep[i]], sizeof box[0]);
        score[i] = score[keep[i]];
        label[i] = label[keep[i]];
        from[i] = from[keep[i]];
    }
    n = mi_batched_nms(keep, (const float (*)[4])box, score, label, n, r->cfg.box_nms, work);
    if (n > r->cfg.dets) n = r->cfg.dets;
    /* transform.resize_boxes: ratios float32(original) / float32(resized) */
    const float rw = (float)W / (float)ow, rh = (float)H / (float)oh;
    for (int64_t i = 0; i < n; i++) {
        const float *b = box[keep[i]];
        det[i][0] = b[0] * rw, det[i][1] = b[1] * rh, det[i][2] = b[2] * rw, det[i][3] = b[3] * rh;
        det[i][4] = score[keep[i]];
        det[i][5] = (float)label[keep[i]];
        memcpy(probs + i * nc, prob + from[keep[i]] * nc, (size_t)nc * sizeof(float));
    }
    return n;
}

static size_t detect_scratch(const mi_rcnn *r, int64_t K) {
    const int64_t nc = r->num_classes, cand = K * (nc - 1);
    return (size_t)K * nc * sizeof(float) + (size_t)cand * (5 * sizeof(float) + 3 * sizeof(int64_t)) +
           mi_batched_nms_scratch_bytes(cand) + 6 * CARVE_ALIGN;
}

/* MultiScaleRoIAlign's scale for one feature map: 2^round(log2(feature / image)) per side, which
 * must agree (torchvision asserts it). */
static float roi_scale(int64_t feat, int64_t img) { return exp2f(roundf(log2f((float)feat / (float)img))); }

/* MultiScaleRoIAlign's _infer_scale as torchvision 0.14 computes it for the FPN's maps: from the
 * heights alone (possible_scales[0]), float(feature) / float(image) in double, then log2 in float32
 * and torch.round (half to even). */
static float fpn_scale(int64_t feat, int64_t img) {
    return exp2f(rintf(log2f((float)((double)feat / (double)img))));
}

/* LevelMapper for one box: floor(level0 + log2(sqrt(area) / scale0) + 1e-6) in float32, in torch's
 * order (canonical level 4, scale 224 by default), clamped to [k_min, k_max], less k_min.
 * torch.log2 is SLEEF's log2f in the vector body of the loop and std::log2 in its tail; both are
 * within an ulp of glibc's log2f here, and the floor only moves when the sum sits within an ulp of
 * an integer. */
static int fpn_level(const mi_rcnn *r, const float *b, int k_min, int k_max) {
    const float area = (b[2] - b[0]) * (b[3] - b[1]);                    /* box_area */
    const float s0 = (float)r->cfg.roi_scale0, l0 = (float)r->cfg.roi_level0;
    float t = floorf((l0 + log2f(sqrtf(area) / s0)) + 1e-6f);
    t = t < (float)k_min ? (float)k_min : t > (float)k_max ? (float)k_max : t;   /* torch.clamp */
    return (int)t - k_min;
}

/* BackboneWithFPN.forward: the ResNet body up to the last returned layer; FeaturePyramidNetwork.forward
 * from the top (k returned maps, C_0..C_k-1): inner = inner_blocks[k-1](C_k-1), P_k-1 =
 * layer_blocks[k-1](inner), then for i = k-2 .. 0 inner = inner_blocks[i](C_i) + interpolate(inner,
 * size of C_i, nearest) (the addition done in the lateral conv's epilogue: conv + bias, then +
 * top-down, torch's order), P_i = layer_blocks[i](inner); LastLevelMaxPool: 'pool' =
 * max_pool2d(P_k-1, 1, 2, 0). Writes the k + 1 maps to p. */
static void fpn_forward(const mi_rcnn *r, nn_ctx *c, const mi_tensor *img, mi_tensor p[MI_RCNN_MAX_LEVELS]) {
    const int k = r->cfg.fpn_maps;
    mi_tensor f[5] = { 0 }, C[FPN_MAPS];
    const int last = r->cfg.returned[k - 1];
    mi_resnet_forward_feats(r->backbone, c, img, f);
    for (int s = 0, i = 0; s <= last; s++) {   /* the stem and the stages the pyramid does not take */
        if (i < k && s == r->cfg.returned[i]) C[i++] = f[s];
        else nn_free(c, &f[s]);
    }
    mi_tensor inner = nn_conv(c, &r->fpn_inner[k - 1], &C[k - 1], NULL, MI_ACT_NONE);
    nn_free(c, &C[k - 1]);
    p[k - 1] = nn_conv(c, &r->fpn_layer[k - 1], &inner, NULL, MI_ACT_NONE);
    for (int i = k - 2; i >= 0; i--) {
        if (!nn_ok(c)) return;
        const int64_t ts[4] = { inner.shape[0], inner.shape[1], C[i].shape[2], C[i].shape[3] };
        mi_tensor td = nn_alloc(c, 4, ts, "fpn.top_down");
        if (nn_ok(c) && nn_compute(c)) mi_resize_nearest(&td, &inner, NULL);   /* size=, mode="nearest" */
        nn_free(c, &inner);
        inner = nn_conv(c, &r->fpn_inner[i], &C[i], &td, MI_ACT_NONE);
        nn_free(c, &td);
        nn_free(c, &C[i]);
        p[i] = nn_conv(c, &r->fpn_layer[i], &inner, NULL, MI_ACT_NONE);
    }
    nn_free(c, &inner);
    const mi_pool_desc lastpool = mi_pool2d_desc(1, 2, 0);
    p[k] = nn_max_pool(c, &lastpool, &p[k - 1], "fpn.pool");
    for (int l = 0; l <= k; l++) {
        char name[16];
        snprintf(name, sizeof name, "fpn.%s", map_name(&r->cfg, l));
        nn_mark(c, name, &p[l]);
    }
}

mi_tensor mi_rcnn_forward(const mi_rcnn *r, nn_ctx *c, const mi_tensor *x) {
    if (!nn_ok(c)) return empty();
    if (x->ndim != 4 || x->shape[1] != r->cfg.in_c) {
        nn_fail(c, MI_FAIL(MI_ERR_SHAPE, "detector: input must be (N, %d, H, W)", r->cfg.in_c));
        return empty();
    }
    const int64_t N = x->shape[0], H = x->shape[2], W = x->shape[3];
    int64_t oh, ow;
    mi_rcnn_resized_size(r->cfg.min_size, r->cfg.max_size, H, W, &oh, &ow);
    if (oh < 1 || ow < 1) {
        nn_fail(c, MI_FAIL(MI_ERR_SHAPE, "detector: a %lldx%lld image resizes to nothing", (long long)H, (long long)W));
        return empty();
    }
    /* transform and backbone: C4's one map, or the FPN's five */
    mi_tensor img = transform(r, c, x, oh, ow);
    const int64_t ph = img.shape[2], pw = img.shape[3];
    const int nl = r->cfg.nlevels;
    mi_tensor maps[MI_RCNN_MAX_LEVELS] = { 0 };
    if (r->cfg.fpn) {
        fpn_forward(r, c, &img, maps);
    } else {
        maps[0] = mi_resnet_forward(r->backbone, c, &img);
        nn_mark(c, "features", &maps[0]);
    }
    nn_free(c, &img);
    if (!nn_ok(c)) return empty();
    /* MultiScaleRoIAlign's scales and LevelMapper range (C4: the one map, whose two sides must agree) */
    const int nroi = r->cfg.fpn ? r->cfg.fpn_maps : 1;
    float scales[FPN_MAPS];
    int k_min = 0, k_max = 0;
    if (r->cfg.fpn) {
        for (int l = 0; l < nroi; l++) scales[l] = fpn_scale(maps[l].shape[2], oh);
        k_min = (int)-log2f(scales[0]), k_max = (int)-log2f(scales[nroi - 1]);
    } else {
        const int64_t fh = maps[0].shape[2], fw = maps[0].shape[3];
        scales[0] = roi_scale(fh, oh);
        if (scales[0] != roi_scale(fw, ow)) {
            nn_fail(c, MI_FAIL(MI_ERR_SHAPE, "detector: feature map %lldx%lld does not have one scale on a %lldx%lld "
                               "image", (long long)fh, (long long)fw, (long long)oh, (long long)ow));
            return empty();
        }
    }
    /* RPNHead on every level: relu(conv), then cls_logits and bbox_pred */
    const int64_t A = r->cfg.ncell;
    mi_tensor obj[MI_RCNN_MAX_LEVELS], del[MI_RCNN_MAX_LEVELS];
    int64_t hw[MI_RCNN_MAX_LEVELS], total = 0;
    for (int l = 0; l < nl; l++) {
        mi_tensor t = nn_conv(c, &r->rpn_conv[l], &maps[l], NULL, MI_ACT_RELU);
        obj[l] = nn_conv(c, &r->rpn_cls[l], &t, NULL, MI_ACT_NONE);
        del[l] = nn_conv(c, &r->rpn_bbox[l], &t, NULL, MI_ACT_NONE);
        nn_free(c, &t);
        if (!nn_ok(c)) return empty();
        char on[32] = "rpn.objectness", dn[32] = "rpn.deltas";
        if (r->cfg.fpn) {
            snprintf(on, sizeof on, "rpn.objectness.%s", map_name(&r->cfg, l));
            snprintf(dn, sizeof dn, "rpn.deltas.%s", map_name(&r->cfg, l));
        }
        nn_mark(c, on, &obj[l]);
        nn_mark(c, dn, &del[l]);
        hw[l] = maps[l].shape[2] * maps[l].shape[3];
        total += hw[l] * A;
    }
    if (r->cfg.fpn) nn_free(c, &maps[nroi]);   /* 'pool' feeds the RPN only */
    /* AnchorGenerator: strides from the padded batch, as image_list.tensors gives them */
    const int64_t P = r->cfg.post_nms, nmax = N * P;
    const int64_t prop_shape[3] = { N, P, 4 }, count_shape[2] = { N, 1 };
    mi_tensor props = nn_alloc(c, 3, prop_shape, "proposals");
    mi_tensor pcount = nn_alloc(c, 2, count_shape, "proposals.count");
    float (*anchors)[4] = nn_scratch(c, (size_t)total * sizeof *anchors);
    unsigned char *work = nn_scratch(c, propose_scratch(r, hw, nl));
    if (nn_ok(c) && nn_compute(c)) {
        rpn_level lv[MI_RCNN_MAX_LEVELS];
        for (int l = 0, at = 0; l < nl; at += (int)(hw[l] * A), l++) {
            const int64_t fh = maps[l].shape[2], fw = maps[l].shape[3];
            mi_anchor_grid(anchors + at, (const float (*)[4])r->cfg.cell[l], (int)A, fh, fw, ph / fh, pw / fw);
            lv[l].anchors = (const float (*)[4])(anchors + at);
            lv[l].hw = hw[l];
        }
        memset(props.data, 0, (size_t)mi_tensor_numel(&props) * sizeof(float));
        for (int64_t n = 0; n < N; n++) {
            for (int l = 0; l < nl; l++) {
                lv[l].obj = obj[l].data + n * A * hw[l];
                lv[l].del = del[l].data + n * 4 * A * hw[l];
            }
            pcount.data[n] = (float)propose(r, lv, nl, oh, ow, (float (*)[4])(props.data + n * P * 4), work);
        }
    }
    nn_scratch_free(c, work);
    nn_scratch_free(c, anchors);
    for (int l = nl - 1; l >= 0; l--) {
        nn_free(c, &del[l]);
        nn_free(c, &obj[l]);
    }
    nn_mark(c, "proposals", &props);
    nn_mark(c, "proposals.count", &pcount);
    /* MultiScaleRoIAlign: every image's proposals, image by image, each from its level's map */
    int64_t K = nmax;
    float (*rois)[5] = nn_scratch(c, (size_t)nmax * sizeof *rois);
    int *level = nn_scratch(c, (size_t)nmax * sizeof *level);
    const int64_t lshape[1] = { nmax };
    mi_tensor roi_level = nn_alloc(c, 1, lshape, "box_roi_pool.level");
    if (nn_ok(c) && nn_compute(c)) {
        K = 0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < (int64_t)pcount.data[n]; i++, K++) {
                rois[K][0] = (float)n;
                memcpy(&rois[K][1], props.data + (n * P + i) * 4, 4 * sizeof(float));
                level[K] = r->cfg.fpn ? fpn_level(r, &rois[K][1], k_min, k_max) : 0;
            }
        for (int64_t i = 0; i < nmax; i++) roi_level.data[i] = i < K ? (float)level[i] : 0.0f;
    }
    const int64_t R = r->cfg.roi_out, pooled_shape[4] = { nmax, r->feat_c, R, R };
    mi_tensor pooled = nn_alloc(c, 4, pooled_shape, "box_roi_pool");
    if (nn_ok(c) && nn_compute(c) && K > 0) {
        const mi_roi_desc d = { .out_h = R, .out_w = R, .spatial_scale = scales[0],
                                .sampling_ratio = r->cfg.roi_sampling, .aligned = false };
        mi_tensor y = pooled;
        y.shape[0] = K;
        mi_status st;
        if (r->cfg.fpn) {
            const mi_tensor *xs[FPN_MAPS];
            for (int l = 0; l < nroi; l++) xs[l] = &maps[l];
            st = mi_roi_align_levels(&y, xs, scales, nroi, level, (const float (*)[5])rois, K, &d);
        } else {
            st = mi_roi_align(&y, &maps[0], (const float (*)[5])rois, K, &d);
        }
        if (st) nn_fail(c, st);   /* proposals are clipped and finite: only our own bug gets here */
    }
    nn_scratch_free(c, level);
    nn_scratch_free(c, rois);
    for (int l = nroi - 1; l >= 0; l--) nn_free(c, &maps[l]);
    nn_mark(c, "box_roi_pool", &pooled);
    nn_mark(c, "box_roi_pool.level", &roi_level);
    nn_free(c, &roi_level);
    /* TwoMLPHead + FastRCNNPredictor on the K rows that exist */
    const int64_t rep = r->fc6.out, nc = r->num_classes;
    const int64_t s6[2] = { nmax, rep }, sc[2] = { nmax, nc }, sb[2] = { nmax, 4 * nc };
    mi_tensor h6 = nn_alloc(c, 2, s6, "roi_heads.box_head.fc6");
    if (nn_ok(c) && nn_compute(c) && K > 0) {
        mi_linear(h6.data, pooled.data, r->fc6.weight, r->fc6.bias, K, r->fc6.in, rep);
        mi_relu(h6.data, h6.data, K * rep);
    }
    nn_free(c, &pooled);
    mi_tensor h7 = nn_alloc(c, 2, s6, "roi_heads.box_head.fc7");
    if (nn_ok(c) && nn_compute(c) && K > 0) {
        mi_linear(h7.data, h6.data, r->fc7.weight, r->fc7.bias, K, rep, rep);
        mi_relu(h7.data, h7.data, K * rep);
    }
    nn_free(c, &h6);
    nn_mark(c, "box_features", &h7);
    mi_tensor logits = nn_alloc(c, 2, sc, "class_logits");
    mi_tensor reg = nn_alloc(c, 2, sb, "box_regression");
    if (nn_ok(c) && nn_compute(c) && K > 0) {
        mi_linear(logits.data, h7.data, r->cls.weight, r->cls.bias, K, rep, nc);
        mi_linear(reg.data, h7.data, r->bbox.weight, r->bbox.bias, K, rep, 4 * nc);
    }
    nn_free(c, &h7);
    nn_mark(c, "class_logits", &logits);
    nn_mark(c, "box_regression", &reg);
    /* postprocess_detections, transform.postprocess */
    const int64_t D = r->cfg.dets, det_shape[3] = { N, D, 6 }, prob_shape[3] = { N, D, nc };
    mi_tensor det = nn_alloc(c, 3, det_shape, "detections");
    mi_tensor dcount = nn_alloc(c, 2, count_shape, "detections.count");
    mi_tensor dprobs = nn_alloc(c, 3, prob_shape, "detections.probs");
    unsigned char *dwork = nn_scratch(c, detect_scratch(r, P));
    if (nn_ok(c) && nn_compute(c)) {
        memset(det.data, 0, (size_t)mi_tensor_numel(&det) * sizeof(float));
        memset(dprobs.data, 0, (size_t)mi_tensor_numel(&dprobs) * sizeof(float));
        for (int64_t n = 0, row = 0; n < N; n++) {
            const int64_t kn = (int64_t)pcount.data[n];
            dcount.data[n] = (float)detect(r, logits.data + row * nc, reg.data + row * 4 * nc,
                                           (const float (*)[4])(props.data + n * P * 4), kn, oh, ow, H, W,
                                           (float (*)[6])(det.data + n * D * 6), dprobs.data + n * D * nc, dwork);
            row += kn;
        }
    }
    nn_scratch_free(c, dwork);
    nn_free(c, &logits);
    nn_free(c, &reg);
    nn_free(c, &props);
    nn_free(c, &pcount);
    nn_mark(c, "detections", &det);
    nn_mark(c, "detections.count", &dcount);
    nn_mark(c, "detections.probs", &dprobs);
    return det;
}
