/* nn/model.c - mi_model (a blob's network, read-only once open) and mi_session (one caller's
 * input shape, arena, threads and outputs): the public API of include/medinfer.h.
 *
 * The split follows ncnn's Net / Extractor: everything a run only reads (packed weights,
 * metadata) is in the model, everything a run writes is in the session, so sessions on several
 * threads can share one model without locks. */
#include "nn/model.h"

#include "nn/depthnet.h"
#include "nn/rcnn.h"
#include "nn/segnet.h"
#include "nn/resnet.h"
#include "nn/vnet.h"
#include "ops/cpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- architectures ------------------------------------------------------------------------ */

static const char *const classifier_outputs[] = { "logits" };
static const char *const backbone_outputs[] = { "features.C2", "features.C3", "features.C4", "features.C5" };

/* A torchvision ResNet blob is a classifier when it has 'fc.weight', else a C2-C5 backbone. */
static mi_status resnet_load(void **net, const mi_weights *w, const char *arch, int64_t in_h,
                             int64_t in_w, int *num_classes, int *channels,
                             const char *const **outputs, int *noutputs) {
    mi_resnet *r;
    bool head = mi_weights_find(w, "fc.weight") != NULL;
    mi_status st = mi_resnet_load(&r, w, arch, "", 4, head, in_h, in_w);
    if (st) return st;
    *net = r;
    *num_classes = mi_resnet_num_classes(r);
    *channels = mi_resnet_in_channels(r);
    *outputs = head ? classifier_outputs : backbone_outputs;
    *noutputs = head ? 1 : 4;
    return MI_OK;
}

static mi_tensor resnet_forward(const void *net, nn_ctx *c, const mi_tensor *x) {
    return mi_resnet_forward(net, c, x);
}

static void resnet_free(void *net) { mi_resnet_free(net); }

static const char *const detector_outputs[] = { "detections", "detections.count", "detections.probs" };

/* A detector (fasterrcnn_c4 or fasterrcnn_fpn; nn/rcnn.c reads which from 'arch') is packed for
 * an image its transform resizes to min_size square. */
static mi_status rcnn_load(void **net, const mi_weights *w, const char *arch, int64_t in_h, int64_t in_w,
                           int *num_classes, int *channels, const char *const **outputs, int *noutputs) {
    (void)arch, (void)in_h, (void)in_w;
    long long side = 800;
    if (mi_weights_meta(w, "min_size")) {
        mi_status st = mi_weights_meta_int(w, "min_size", 1, 8192, &side);
        if (st) return st;
    }
    mi_rcnn *r;
    mi_status st = mi_rcnn_load(&r, w, side, side);
    if (st) return st;
    *net = r;
    *num_classes = mi_rcnn_num_classes(r);
    *channels = mi_rcnn_in_channels(r);
    *outputs = detector_outputs;
    *noutputs = 3;
    return MI_OK;
}

static mi_tensor rcnn_forward(const void *net, nn_ctx *c, const mi_tensor *x) { return mi_rcnn_forward(net, c, x); }
static void rcnn_free(void *net) { mi_rcnn_free(net); }

static const char *const vnet_outputs[] = { "seg", "features", "tile_logits" };

/* The V-Net reads its whole configuration, input_size included (default 512), from the blob. */
static mi_status vnet_load(void **net, const mi_weights *w, const char *arch, int64_t in_h, int64_t in_w,
                           int *num_classes, int *channels, const char *const **outputs, int *noutputs) {
    (void)arch, (void)in_h, (void)in_w;
    mi_vnet *v;
    mi_status st = mi_vnet_load(&v, w);
    if (st) return st;
    *net = v;
    *num_classes = mi_vnet_get_config(v)->num_classes;
    *channels = mi_vnet_get_config(v)->in_channels;
    *outputs = vnet_outputs;
    *noutputs = 3;
    return MI_OK;
}

static mi_tensor vnet_forward(const void *net, nn_ctx *c, const mi_tensor *x) { return mi_vnet_forward(net, c, x); }
static void vnet_free(void *net) { mi_vnet_free(net); }

static const char *const depthnet_outputs[] = { "depth" };

/* The depth estimator reads its whole configuration, input_size included (default 192), from the
 * blob, and takes that size only. One class: the depth map, in (0, 1) of depth_max_cm. */
static mi_status depthnet_load(void **net, const mi_weights *w, const char *arch, int64_t in_h, int64_t in_w,
                               int *num_classes, int *channels, const char *const **outputs, int *noutputs) {
    (void)arch, (void)in_h, (void)in_w;
    mi_depthnet *d;
    mi_status st = mi_depthnet_load(&d, w);
    if (st) return st;
    *net = d;
    *num_classes = 1;
    *channels = 3;
    *outputs = depthnet_outputs;
    *noutputs = 1;
    return MI_OK;
}

static mi_tensor depthnet_forward(const void *net, nn_ctx *c, const mi_tensor *x) {
    return mi_depthnet_forward(net, c, x);
}
static void depthnet_free(void *net) { mi_depthnet_free(net); }

static const char *const segnet_outputs[] = { "seg" };

/* The depth-guided U-Net: the image channels and the depth map in; two classes (background,
 * lesion) whether its output is a 2-channel softmax or a 1-channel sigmoid of the lesion. */
static mi_status segnet_load(void **net, const mi_weights *w, const char *arch, int64_t in_h, int64_t in_w,
                             int *num_classes, int *channels, const char *const **outputs, int *noutputs) {
    (void)arch, (void)in_h, (void)in_w;
    mi_segnet *s;
    mi_status st = mi_segnet_load(&s, w);
    if (st) return st;
    *net = s;
    *num_classes = 2;
    *channels = mi_segnet_get_config(s)->in_channels + 1;
    *outputs = segnet_outputs;
    *noutputs = 1;
    return MI_OK;
}

static mi_tensor segnet_forward(const void *net, nn_ctx *c, const mi_tensor *x) { return mi_segnet_forward(net, c, x); }
static void segnet_free(void *net) { mi_segnet_free(net); }

#define ARCH_NAMES "resnet18, resnet50, fasterrcnn_c4, fasterrcnn_fpn, vnet2d, vnet3d, depthnet, segnet"
static const nn_arch archs[] = {
    { "resnet18", resnet_load, resnet_forward, resnet_free, 2, 0 },
    { "resnet50", resnet_load, resnet_forward, resnet_free, 2, 0 },
    { "fasterrcnn_c4", rcnn_load, rcnn_forward, rcnn_free, 2, 0 },
    { "fasterrcnn_fpn", rcnn_load, rcnn_forward, rcnn_free, 2, 0 },
    { "vnet2d", vnet_load, vnet_forward, vnet_free, 2, 512 },
    { "vnet3d", vnet_load, vnet_forward, vnet_free, 3, 512 },
    { "depthnet", depthnet_load, depthnet_forward, depthnet_free, 2, 192 },
    { "segnet", segnet_load, segnet_forward, segnet_free, 2, 192 },
};

/* ---- model -------------------------------------------------------------------------------- */

struct mi_model {
    mi_weights        w;
    void             *bytes;         /* mi_model_open_memory's copy of the blob, owned */
    const nn_arch    *arch;
    void             *net;
    int               num_classes, channels;
    const char *const *outputs;      /* the default outputs of a session */
    int               noutputs;
    char            **labels;        /* num_classes names: metadata 'labels' or "class_<i>" */
    int               nlabels;
    mi_preprocess_spec pre;
};

static const float imagenet_mean[3] = { 0.485f, 0.456f, 0.406f }, imagenet_std[3] = { 0.229f, 0.224f, 0.225f };

#define MAX_SIZE (1 << 14)

/* 'resize_mode': absent or "crop" (Resize + CenterCrop), "squash" (Resize((S, S))). The reader
 * checks the same at open (weights/safetensors.c); this is the definition the commands use. */
static mi_status resize_mode_from_blob(const mi_weights *w, mi_resize_mode *mode) {
    const char *v = mi_weights_meta(w, "resize_mode");
    *mode = MI_RESIZE_CROP;
    if (!v || !strcmp(v, "crop")) return MI_OK;
    if (!strcmp(v, "squash")) {
        *mode = MI_RESIZE_SQUASH;
        return MI_OK;
    }
    return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'resize_mode' = '%.40s' is not 'crop' or 'squash'", w->path, v);
}

/* Squash resizes straight to S x S: a 'resize' that says otherwise contradicts it. */
static mi_status squash_resize_check(const mi_weights *w, long long resize, long long input_size) {
    if (resize == input_size) return MI_OK;
    return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'resize' = %lld, but 'resize_mode' squash resizes straight to "
                   "input_size %lld x %lld (leave 'resize' out or make it %lld)", w->path, resize, input_size,
                   input_size, input_size);
}

mi_status mi_preprocess_spec_from_blob(mi_preprocess_spec *p, const mi_weights *w) {
    long long input_size = 224, resize;
    mi_resize_mode mode;
    mi_status st;
    if (mi_weights_meta(w, "input_size") && (st = mi_weights_meta_int(w, "input_size", 1, MAX_SIZE, &input_size)))
        return st;
    if ((st = resize_mode_from_blob(w, &mode)) != MI_OK) return st;
    if (mi_weights_meta(w, "resize")) {
        if ((st = mi_weights_meta_int(w, "resize", 1, MAX_SIZE, &resize)) != MI_OK) return st;
        if (mode == MI_RESIZE_SQUASH && (st = squash_resize_check(w, resize, input_size)) != MI_OK) return st;
    } else if (mode == MI_RESIZE_SQUASH) {
        resize = input_size;
    } else {
        resize = (input_size * 256 + 112) / 224;  /* the ImageNet 256 -> 224 ratio; never a tie */
    }
    memcpy(p->mean, imagenet_mean, sizeof p->mean);
    memcpy(p->std, imagenet_std, sizeof p->std);
    if (mi_weights_meta(w, "mean") && (st = mi_weights_meta_floats(w, "mean", p->mean, 3))) return st;
    if (mi_weights_meta(w, "std") && (st = mi_weights_meta_floats(w, "std", p->std, 3))) return st;
    for (int c = 0; c < 3; c++)
        if (!(p->std[c] > 0))
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'std' has %g, expected > 0", w->path, p->std[c]);
    p->crop = (int)input_size;
    p->resize = (int)resize;
    p->resize_mode = mode;
    return MI_OK;
}

/* labels: metadata 'labels' (one per class) or generated "class_<i>" */
static mi_status load_labels(mi_model *m) {
    const char *path = m->w.path;
    mi_status st;
    if (mi_weights_meta(&m->w, "num_classes")) {
        long long v;
        if ((st = mi_weights_meta_int(&m->w, "num_classes", 0, 1000000, &v))) return st;
        if (v != m->num_classes)
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata num_classes = %lld but the network has %d classes",
                           path, v, m->num_classes);
    }
    if (mi_weights_meta(&m->w, "labels")) {
        if ((st = mi_weights_meta_strings(&m->w, "labels", &m->labels, &m->nlabels))) return st;
        if (m->nlabels != m->num_classes)
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'labels' has %d names for %d classes", path,
                           m->nlabels, m->num_classes);
        return MI_OK;
    }
    if (!(m->labels = calloc((size_t)m->num_classes + 1, sizeof *m->labels)))
        return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < m->num_classes; i++, m->nlabels++) {
        char s[32];
        snprintf(s, sizeof s, "class_%d", i);
        if (!(m->labels[i] = strdup(s))) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path);
    }
    return MI_OK;
}

mi_status mi_model_open_weights(mi_model **out, mi_weights *w) {
    *out = NULL;
    mi_model *m = calloc(1, sizeof *m);
    if (!m) {
        mi_weights_close(w);
        return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", w->path);
    }
    m->w = *w;
    memset(w, 0, sizeof *w);
    const char *path = m->w.path, *arch = mi_weights_meta(&m->w, "arch");
    mi_status st = mi_cpu_check_env();   /* an MI_ISA that names no ISA is refused, not ignored */
    if (st) goto fail;
    if (!arch) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'arch' is missing (the network to build: " ARCH_NAMES ")", path);
        goto fail;
    }
    for (size_t i = 0; i < sizeof archs / sizeof *archs; i++)
        if (!strcmp(arch, archs[i].arch)) m->arch = &archs[i];
    if (!m->arch) {
        st = MI_FAIL(MI_ERR_UNSUPPORTED, "%s: arch '%.32s' is not a network this engine runs (" ARCH_NAMES ")",
                     path, arch);
        goto fail;
    }
    if ((st = mi_preprocess_spec_from_blob(&m->pre, &m->w))) goto fail;
    if (m->arch->default_size && !mi_weights_meta(&m->w, "input_size")) {
        m->pre.crop = m->arch->default_size;
        if (m->pre.resize_mode == MI_RESIZE_SQUASH) {   /* squash follows the input size */
            long long r = m->pre.crop;
            if (mi_weights_meta(&m->w, "resize") && (st = mi_weights_meta_int(&m->w, "resize", 1, MAX_SIZE, &r)))
                goto fail;
            if ((st = squash_resize_check(&m->w, r, m->pre.crop))) goto fail;
            m->pre.resize = m->pre.crop;
        }
    }
    if ((st = m->arch->load(&m->net, &m->w, arch, m->pre.crop, m->pre.crop, &m->num_classes, &m->channels,
                            &m->outputs, &m->noutputs)))
        goto fail;
    if ((st = load_labels(m))) goto fail;
    *out = m;
    return MI_OK;
fail:
    mi_model_close(m);
    return st;
}

mi_status mi_model_open(mi_model **m, const char *path) {
    *m = NULL;
    mi_weights w;
    mi_status st = mi_weights_open(&w, path);
    return st ? st : mi_model_open_weights(m, &w);
}

mi_status mi_model_open_memory(mi_model **m, const void *data, size_t size, const char *name) {
    *m = NULL;
    if (!data && size) return MI_FAIL(MI_ERR_ARG, "%s: no bytes", name ? name : "(memory)");
    /* a copy, 64-byte aligned like a mapped file, so the caller's buffer may go at once */
    void *copy = mi_alloc_aligned(size ? size : 1);
    if (!copy) return MI_FAIL(MI_ERR_NOMEM, "%s: cannot copy %zu bytes", name ? name : "(memory)", size);
    if (size) memcpy(copy, data, size);
    mi_weights w;
    mi_status st = mi_weights_open_memory(&w, copy, size, name);
    if (st == MI_OK) st = mi_model_open_weights(m, &w);
    if (st != MI_OK) {
        mi_free_aligned(copy);
        return st;
    }
    (*m)->bytes = copy;
    return MI_OK;
}

void mi_model_close(mi_model *m) {
    if (!m) return;
    if (m->net) m->arch->free(m->net);
    mi_strings_free(m->labels, m->nlabels);
    mi_weights_close(&m->w);
    mi_free_aligned(m->bytes);
    free(m);
}

const mi_weights *mi_model_weights(const mi_model *m) { return &m->w; }
const char *mi_model_arch(const mi_model *m) { return m->arch->arch; }
const char *mi_model_path(const mi_model *m) { return m->w.path; }
const char *mi_model_sha256(const mi_model *m) { return m->w.sha256; }
const char *mi_model_meta(const mi_model *m, const char *key) { return mi_weights_meta(&m->w, key); }
int mi_model_spatial_dims(const mi_model *m) { return m->arch->spatial; }
int mi_model_num_classes(const mi_model *m) { return m->num_classes; }
int mi_model_input_size(const mi_model *m) { return m->pre.crop; }
int mi_model_input_channels(const mi_model *m) { return m->channels; }
const mi_preprocess_spec *mi_model_preprocess(const mi_model *m) { return &m->pre; }

const char *mi_model_version(const mi_model *m) {
    const char *v = mi_weights_meta(&m->w, "model_version");
    return v ? v : "";
}

const char *mi_model_label(const mi_model *m, int i) {
    return i >= 0 && i < m->num_classes ? m->labels[i] : NULL;
}

/* ---- session ------------------------------------------------------------------------------ */

struct mi_session {
    const mi_model *m;
    int             ndim;          /* of the input: 4, or 5 for a 3-D network */
    int64_t         in_shape[5];
    int             threads;
    char          **want;          /* the outputs it keeps (copies) */
    int             nwant;
    nn_ctx          ctx;
    unsigned char  *arena;
    size_t          arena_bytes;
    bool            ran;
};

void mi_session_destroy(mi_session *s) {
    if (!s) return;
    nn_ctx_free(&s->ctx);
    mi_free_aligned(s->arena);
    mi_strings_free(s->want, s->nwant);
    free(s);
}

/* The measure walk: checks every layer against the input shape and sizes the arena. */
static mi_status plan(mi_session *s) {
    mi_tensor x = mi_tensor_view(NULL, s->ndim, s->in_shape, "input");
    nn_ctx_measure(&s->ctx, (const char *const *)s->want, s->nwant);
    s->m->arch->forward(s->m->net, &s->ctx, &x);
    mi_status st = nn_ctx_finish(&s->ctx);
    if (st) {
        char shp[96];
        mi_shape_str(shp, sizeof shp, s->ndim, s->in_shape);
        return MI_FAIL(st, "%s: input %s: %s", s->m->w.path, shp, mi_last_error());
    }
    for (int i = 0; i < s->nwant; i++) {
        bool found = false;
        for (int j = 0; j < s->ctx.nouts; j++) found |= !strcmp(s->ctx.outs[j].name, s->want[i]);
        if (!found)
            return MI_FAIL(MI_ERR_ARG, "%s: a %s has no output '%s'", s->m->w.path, s->m->arch->arch, s->want[i]);
    }
    s->arena_bytes = nn_ctx_arena_bytes(&s->ctx);
    if (!(s->arena = mi_alloc_aligned(s->arena_bytes ? s->arena_bytes : 1)))
        return MI_FAIL(MI_ERR_NOMEM, "%s: cannot allocate a %zu-byte arena", s->m->w.path, s->arena_bytes);
    return MI_OK;
}

mi_status mi_session_create_nd(mi_session **out, const mi_model *m, int ndim, const int64_t *in_shape,
                               int threads, const char *const *outputs, int noutputs) {
    *out = NULL;
    const char *path = m->w.path;
    const int want_ndim = m->arch->spatial + 2;
    if (ndim != want_ndim || !in_shape)
        return MI_FAIL(MI_ERR_ARG, "%s: a %s takes %d-D inputs (N, C, %s), not %d-D", path, m->arch->arch,
                       want_ndim, want_ndim == 5 ? "D, H, W" : "H, W", in_shape ? ndim : 0);
    bool ok = in_shape[0] >= 1 && in_shape[0] <= 4096 && in_shape[1] == m->channels;
    for (int d = 2; d < ndim; d++) ok &= in_shape[d] >= 1 && in_shape[d] <= 65536;
    if (!ok) {
        char shp[96];
        mi_shape_str(shp, sizeof shp, ndim, in_shape);
        return MI_FAIL(MI_ERR_ARG, "%s: input shape %s: expected (N, %d, %s) with N in 1..4096 and %s "
                       "in 1..65536", path, shp, m->channels, ndim == 5 ? "D, H, W" : "H, W",
                       ndim == 5 ? "D, H, W" : "H, W");
    }
    if (noutputs < 0 || (noutputs > 0 && !outputs))
        return MI_FAIL(MI_ERR_ARG, "%s: %d outputs requested without names", path, noutputs);
    mi_session *s = calloc(1, sizeof *s);
    if (!s) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path);
    s->m = m;
    s->ndim = ndim;
    memcpy(s->in_shape, in_shape, (size_t)ndim * sizeof *in_shape);
    s->threads = threads;
    if (!outputs) {
        outputs = m->outputs;
        noutputs = m->noutputs;
    }
    mi_status st = MI_OK;
    if (!(s->want = calloc((size_t)noutputs + 1, sizeof *s->want))) st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; !st && i < noutputs; i++, s->nwant++)
        if (!outputs[i] || !(s->want[i] = strdup(outputs[i])))
            st = MI_FAIL(outputs[i] ? MI_ERR_NOMEM : MI_ERR_ARG, "%s: output name %d is %s", path, i,
                         outputs[i] ? "too much for memory" : "NULL");
    if (!st) st = plan(s);
    if (st) {
        mi_session_destroy(s);
        return st;
    }
    *out = s;
    return MI_OK;
}

mi_status mi_session_create_outputs(mi_session **s, const mi_model *m, const int64_t in_shape[4],
                                    int threads, const char *const *outputs, int noutputs) {
    return mi_session_create_nd(s, m, 4, in_shape, threads, outputs, noutputs);
}

mi_status mi_session_create(mi_session **s, const mi_model *m, const int64_t in_shape[4], int threads) {
    return mi_session_create_nd(s, m, 4, in_shape, threads, NULL, 0);
}

/* The first non-finite value of x (numel floats), as a position in the input shape. */
static mi_status check_finite(const mi_session *s, const float *x, int64_t n) {
    const bool vol = s->ndim == 5;
    const int64_t C = s->in_shape[1], D = vol ? s->in_shape[2] : 1, H = s->in_shape[s->ndim - 2],
                  W = s->in_shape[s->ndim - 1], total = n * C * D * H * W;
    if (mi_all_finite(x, total)) return MI_OK;   /* vectorized; the loop below names the first bad value */
    for (int64_t i = 0; i < total; i++)
        if (!isfinite(x[i])) {
            char z[32] = "";
            if (vol) snprintf(z, sizeof z, "z=%lld, ", (long long)(i / (H * W) % D));
            return MI_FAIL(MI_ERR_ARG, "%s: input value at (n=%lld, c=%lld, %sy=%lld, x=%lld) is %s; the "
                           "network takes finite numbers only", s->m->w.path, (long long)(i / (C * D * H * W)),
                           (long long)(i / (D * H * W) % C), z, (long long)(i / W % H), (long long)(i % W),
                           isnan(x[i]) ? "NaN" : "infinite");
        }
    return MI_OK;
}

mi_status mi_session_run_n(mi_session *s, const float *x, int64_t n) {
    if (n < 1 || n > s->in_shape[0])
        return MI_FAIL(MI_ERR_ARG, "%s: run of %lld items on a session made for 1..%lld", s->m->w.path,
                       (long long)n, (long long)s->in_shape[0]);
    if (!x) return MI_FAIL(MI_ERR_ARG, "%s: run without input", s->m->w.path);
    mi_status st = check_finite(s, x, n);
    if (st) return st;
    int64_t shape[5];
    memcpy(shape, s->in_shape, sizeof shape);
    shape[0] = n;
    mi_tensor in = mi_tensor_view((float *)x, s->ndim, shape, "input");
    const int saved = mi_threads();
    if (s->threads > 0) mi_set_threads(s->threads);
    nn_ctx_run(&s->ctx, s->arena);
    s->m->arch->forward(s->m->net, &s->ctx, &in);
    MI_ASSERT_EQ(s->ctx.next, s->ctx.nplan);     /* the run walked exactly the planned steps */
    if (s->threads > 0) mi_set_threads(saved);
    s->ran = true;
    return MI_OK;
}

mi_status mi_session_run(mi_session *s, const float *x) { return mi_session_run_n(s, x, s->in_shape[0]); }

const float *mi_session_output(const mi_session *s, const char *name, int64_t shape[4]) {
    for (int i = 0; s->ran && i < s->ctx.nouts; i++) {
        const mi_tensor *t = &s->ctx.outs[i].t;
        if (strcmp(s->ctx.outs[i].name, name) || t->ndim > 4) continue;
        for (int d = 0; shape && d < 4; d++) shape[d] = d < t->ndim ? t->shape[d] : 1;
        return t->data;
    }
    return NULL;
}

const float *mi_session_output_nd(const mi_session *s, const char *name, int64_t shape[5], int *ndim) {
    for (int i = 0; s->ran && i < s->ctx.nouts; i++) {
        const mi_tensor *t = &s->ctx.outs[i].t;
        if (strcmp(s->ctx.outs[i].name, name)) continue;
        for (int d = 0; shape && d < 5; d++) shape[d] = d < t->ndim ? t->shape[d] : 1;
        if (ndim) *ndim = t->ndim;
        return t->data;
    }
    return NULL;
}

int mi_session_detections(const mi_session *s, int n, mi_detection *out, int cap) {
    int64_t ds[4], cs[4];
    const float *det = mi_session_output(s, "detections", ds), *cnt = mi_session_output(s, "detections.count", cs);
    if (!det || !cnt || n < 0 || n >= ds[0] || cap < 0) return -1;
    int64_t ps[4];
    const float *probs = mi_session_output(s, "detections.probs", ps);
    if (probs && (ps[0] != ds[0] || ps[1] != ds[1])) probs = NULL;
    const int count = (int)cnt[n];
    for (int i = 0; out && i < count && i < cap; i++) {
        const float *d = det + ((int64_t)n * ds[1] + i) * 6;
        out[i] = (mi_detection){ .box = { d[0], d[1], d[2], d[3] }, .score = d[4], .label = (int)d[5],
                                 .probs = probs ? probs + ((int64_t)n * ps[1] + i) * ps[2] : NULL };
    }
    return count;
}

int mi_session_output_count(const mi_session *s) { return s->ctx.nouts; }
const char *mi_session_output_name(const mi_session *s, int i) {
    return i >= 0 && i < s->ctx.nouts ? s->ctx.outs[i].name : NULL;
}
size_t mi_session_arena_bytes(const mi_session *s) { return s->arena_bytes; }
const mi_model *mi_session_model(const mi_session *s) { return s->m; }

void mi_session_set_capture(mi_session *s, mi_capture_fn fn, void *user) {
    s->ctx.capture = fn;
    s->ctx.user = user;
}

void mi_session_set_stage_hook(mi_session *s, mi_stage_fn fn, void *user) {
    s->ctx.stage = fn;
    s->ctx.stage_user = user;
}
