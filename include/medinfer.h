/* medinfer - the public C API: the only header an integrator includes.
 *
 *   mi_model    weights + packed layers of one blob; read-only after open, shared by threads
 *   mi_session  one per caller thread: input shape, arena, thread count, named outputs
 *
 *       mi_model *m;    mi_model_open(&m, "resnet50.safetensors");
 *       mi_session *s;  mi_session_create(&s, m, (int64_t[4]){1, 3, 224, 224}, 0);
 *       mi_preprocess_rgb8(rgb, w, h, w * 3, mi_model_preprocess(m), x);   (torchvision-exact)
 *       mi_session_run(s, x);
 *       const float *logits = mi_session_output(s, "logits", shape);
 *
 * Everything that can fail because of input or resources returns mi_status; the one-sentence
 * reason (naming the file, the thing, expected vs found) is in mi_last_error(), per thread. The
 * library never calls exit() and never asserts on file bytes. Results are bit-identical for any
 * thread count. */
#ifndef MEDINFER_H
#define MEDINFER_H

#include <stddef.h>
#include <stdint.h>

#define MI_VERSION "0.2.0"

/* What the shared library exports; everything else in it is hidden. */
#if defined(__GNUC__)
#define MI_API __attribute__((visibility("default")))
#else
#define MI_API
#endif

typedef enum {
    MI_OK = 0,
    MI_ERR_IO,          /* cannot open / read / write a file */
    MI_ERR_FORMAT,      /* bytes on disk are not what the format says */
    MI_ERR_SHAPE,       /* a tensor has the wrong shape or dtype */
    MI_ERR_ARG,         /* a caller passed an invalid argument */
    MI_ERR_NOMEM,       /* allocation failed */
    MI_ERR_UNSUPPORTED, /* valid, but not something this engine does */
    MI_ERR_SECURITY,    /* signature / trust failure */
} mi_status;

/* Records code + message + where (file:line) for mi_last_error(); returns code. Thread-local. */
MI_API mi_status mi_fail_at(mi_status code, const char *src, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define MI_FAIL(code, ...) mi_fail_at((code), __FILE__, __LINE__, __VA_ARGS__)
MI_API const char *mi_last_error(void);        /* "" when none */
MI_API const char *mi_last_error_where(void);  /* "ops/conv.c:123" */
MI_API const char *mi_status_name(mi_status s);

/* Our bugs, not bad input: always on, prints both sides and aborts. */
MI_API void mi_assert_fail(const char *expr, const char *src, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));
#define MI_ASSERT(c) do { if (!(c)) mi_assert_fail(#c, __FILE__, __LINE__, " "); } while (0)
#define MI_ASSERT_EQ(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
    if (a_ != b_) mi_assert_fail(#a " == " #b, __FILE__, __LINE__, "%lld != %lld", a_, b_); } while (0)

/* true when a*b overflows size_t (sizes read from files go through this) */
static inline int mi_mul_overflows(size_t a, size_t b, size_t *out) {
    return __builtin_mul_overflow(a, b, out);
}

/* ---- models ---------------------------------------------------------------------------------
 * A blob (safetensors, see README) is opened by the network its metadata 'arch' names: resnet18,
 * resnet50, fasterrcnn_c4 and fasterrcnn_fpn (detectors: torchvision's FasterRCNN on a ResNet C4
 * backbone, or on a ResNet with a feature pyramid as fasterrcnn_resnet50_fpn), vnet2d,
 * vnet3d (the V-Net of tools/vnet_ref.py, for tiles or volumes: outputs "seg" (N, 2, [D,] H, W)
 * softmax probabilities, channel 1 = lesion; "features" (N, feature_dim); "tile_logits"
 * (N, num_classes)), depthnet and segnet (the depth estimator and the depth-guided U-Net of
 * tools/lesionseg_ref.py: "depth" (N, 1, R, R) in (0, 1) from (N, 3, R, R) images of the blob's
 * input_size only; "seg" (N, 2, H, W) softmax, channel 1 = lesion, or (N, 1, H, W) sigmoid, from
 * (N, in_channels + 1, H, W), the depth map last). Every tensor is checked for presence and
 * shape, BatchNorm is folded into the convolutions (float64) and the weights are packed for the
 * CPU, once. The model is then read-only: any number of sessions on any threads may use it at
 * once. */
typedef struct mi_model mi_model;

MI_API mi_status mi_model_open(mi_model **m, const char *path);
/* The same from a blob in memory (embedded, received, decrypted): the bytes are copied, so the
 * caller's buffer may be freed at once; name (NULL: "(memory)") stands for the path in messages
 * and in mi_model_path. */
MI_API mi_status mi_model_open_memory(mi_model **m, const void *data, size_t size, const char *name);
MI_API void      mi_model_close(mi_model *m);   /* after every session on it is destroyed */

MI_API const char *mi_model_arch(const mi_model *m);           /* "resnet50" */
MI_API const char *mi_model_version(const mi_model *m);        /* metadata model_version, or "" */
MI_API const char *mi_model_sha256(const mi_model *m);         /* of the whole blob, hex */
MI_API const char *mi_model_path(const mi_model *m);
/* Any metadata value as the blob stores it (a string); NULL when absent. */
MI_API const char *mi_model_meta(const mi_model *m, const char *key);
/* Classes of the head (0: a backbone without one) and their labels (metadata 'labels', else
 * "class_<i>"); NULL outside 0..num_classes-1. */
MI_API int         mi_model_num_classes(const mi_model *m);
MI_API const char *mi_model_label(const mi_model *m, int i);
/* The input size the blob was trained for (metadata input_size; the weights are packed for it)
 * and its channels; any other H x W the architecture accepts also works. */
MI_API int         mi_model_input_size(const mi_model *m);
MI_API int         mi_model_input_channels(const mi_model *m);
/* 2: the network takes (N, C, H, W) inputs; 3: (N, C, D, H, W) volumes (vnet3d), whose sessions
 * are made with mi_session_create_nd. */
MI_API int         mi_model_spatial_dims(const mi_model *m);

/* ---- preprocessing ---------------------------------------------------------------------------
 * The transform a classifier was trained with, on decoded 8-bit RGB pixels, bit for bit torch's
 * scalar kernel (bilinear, antialias=True, rounded back to uint8 as torchvision does), one of:
 *   MI_RESIZE_CROP    Resize(resize) -> CenterCrop(crop) -> ToTensor -> Normalize(mean, std)
 *                     (the shorter side to `resize`, aspect kept, then the centre crop x crop)
 *   MI_RESIZE_SQUASH  Resize((crop, crop)) -> ToTensor -> Normalize(mean, std)
 *                     (straight to crop x crop, aspect not kept, nothing cut off; resize == crop)
 * A model must be fed the way it was trained; the blob says which (metadata 'resize_mode'). */
typedef enum {
    MI_RESIZE_CROP = 0,  /* zero: a spec initialised without the field keeps this behaviour */
    MI_RESIZE_SQUASH = 1,
} mi_resize_mode;

typedef struct {
    int   resize;        /* crop mode: the shorter side is resized to this; squash: == crop */
    int   crop;          /* the output is crop x crop: the network's input size */
    float mean[3], std[3];
    /* Appended after the fields above, which keep their offsets: a designated or zero
     * initialiser that leaves it out gets MI_RESIZE_CROP, the only behaviour before it. A
     * program that fills its own spec and was compiled against a medinfer.h without this field
     * must be recompiled (the library reads it); one that passes mi_model_preprocess()'s pointer
     * needs nothing. */
    mi_resize_mode resize_mode;
} mi_preprocess_spec;

/* What the blob's metadata asks for: crop = input_size; resize_mode = 'resize_mode' ("crop",
 * the default, or "squash"); resize = 'resize' if present, else round(input_size * 256 / 224) in
 * crop mode and input_size in squash mode (where a 'resize' other than input_size is refused at
 * open); mean/std (ImageNet's when absent). */
MI_API const mi_preprocess_spec *mi_model_preprocess(const mi_model *m);
/* rgb: h rows of w RGB pixels, `stride` bytes apart. out: [3, crop, crop] float32. MI_ERR_ARG for
 * a resize_mode outside the enum, or squash with resize != crop. */
MI_API mi_status mi_preprocess_rgb8(const uint8_t *rgb, int w, int h, size_t stride,
                                    const mi_preprocess_spec *p, float *out);

/* ---- sessions --------------------------------------------------------------------------------
 * One per caller thread. The input shape (N, C, H, W) is fixed at creation and may be any H x W
 * the network accepts; creation walks the network once without data to size one arena for the
 * activations (by liveness: a buffer is reused once nothing reads it) and the kernels' scratch,
 * so a run never allocates. threads: OpenMP threads of this session's runs (0: what the calling
 * thread uses, all cores unless it said otherwise); it touches neither the host's OpenMP settings
 * nor other sessions. */
typedef struct mi_session mi_session;

MI_API mi_status mi_session_create(mi_session **s, const mi_model *m, const int64_t in_shape[4],
                                   int threads);
/* The same, keeping the named outputs given instead of the model's default ones ("logits" for a
 * classifier; "features.C2" .. "features.C5" for a backbone, which a classifier also offers). */
MI_API mi_status mi_session_create_outputs(mi_session **s, const mi_model *m,
                                           const int64_t in_shape[4], int threads,
                                           const char *const *outputs, int noutputs);
/* The same for an input of ndim dims, mi_model_spatial_dims + 2: (N, C, H, W) or (N, C, D, H, W)
 * (every side 1..65536). outputs NULL: the model's default ones. With ndim 4 it is
 * mi_session_create_outputs. */
MI_API mi_status mi_session_create_nd(mi_session **s, const mi_model *m, int ndim,
                                      const int64_t *in_shape, int threads,
                                      const char *const *outputs, int noutputs);
MI_API void      mi_session_destroy(mi_session *s);
MI_API const mi_model *mi_session_model(const mi_session *s);

/* x: the input, in_shape (4 or 5 dims), float32, contiguous. Non-finite values are refused (MI_ERR_ARG naming
 * the position). mi_session_run_n runs the first n <= N items only. */
MI_API mi_status mi_session_run(mi_session *s, const float *x);
MI_API mi_status mi_session_run_n(mi_session *s, const float *x, int64_t n);

/* An output of the last run: its data (valid until the next run or destroy) and shape, padded
 * with 1s to 4 dims (logits: n, classes, 1, 1); NULL for a name the session does not keep, and
 * for a 5-D output (a volume's "seg"), which mi_session_output_nd gives. */
MI_API const float *mi_session_output(const mi_session *s, const char *name, int64_t shape[4]);
/* The same for outputs of up to 5 dims: shape padded with 1s to 5, *ndim the output's own rank
 * (shape, ndim may be NULL). */
MI_API const float *mi_session_output_nd(const mi_session *s, const char *name, int64_t shape[5],
                                         int *ndim);
MI_API int          mi_session_output_count(const mi_session *s);
MI_API const char  *mi_session_output_name(const mi_session *s, int i);
/* Bytes of the session's arena: activations and scratch together. */
MI_API size_t       mi_session_arena_bytes(const mi_session *s);

/* Called during a run with every named intermediate result, in the order computed: each layer by
 * its state_dict name ("layer1.0.conv1"), the stages ("stem", "layer1", ..., "pool", "fc") and
 * the outputs. data is valid during the call only. For stage-by-stage comparisons and debugging;
 * NULL turns it off. */
typedef void (*mi_capture_fn)(void *user, const char *name, const float *data, int ndim,
                              const int64_t *shape);
MI_API void mi_session_set_capture(mi_session *s, mi_capture_fn fn, void *user);
/* Called at the same points as the capture hook, with each result's name and shape but not its
 * values: for timing a run stage by stage. A capture hook needs every layer's map in plain form,
 * so the network then takes its plain paths (a ResNet bottleneck's padded map, which its stride-2
 * convolution reads in place, is not built); with this hook the run is the one without a hook.
 * NULL turns it off. */
typedef void (*mi_stage_fn)(void *user, const char *name, int ndim, const int64_t *shape);
MI_API void mi_session_set_stage_hook(mi_session *s, mi_stage_fn fn, void *user);

/* ---- classification --------------------------------------------------------------------------
 * Runs the session on n items and gives, per item, its k most probable classes (softmax of the
 * logits; ties: lower index first), 1 <= k <= num_classes. top: [n][k]; logits: [n][num_classes]
 * or NULL. An item whose logits are not all finite gets index -1 in its k entries, the others
 * are still ranked, and the call returns MI_ERR_FORMAT naming the first such item. */
typedef struct {
    int         index;
    float       probability;
    const char *label;          /* mi_model_label(index) */
} mi_class_score;

MI_API mi_status mi_classify(mi_session *s, const float *x, int64_t n, int k, mi_class_score *top,
                             float *logits);

/* ---- detection --------------------------------------------------------------------------------
 * A detector's session keeps "detections" (N, D, 6), "detections.count" (N, 1) and
 * "detections.probs" (N, D, num_classes); this reads them for batch item n of the last run: up to
 * cap detections, best first in torchvision's order, boxes in the pixels of the session's input
 * (x1, y1, x2, y2; x to the right, y down), labels indexing mi_model_label (0 is the background and
 * never returned). Returns how many detections the item has (possibly more than cap), or -1 when
 * the session is not a detector's, has not run, or n is not a batch item.
 * probs: the detection's class probabilities, mi_model_num_classes values indexed like the labels
 * (background 0 included, summing to 1): the box head's softmax for the proposal the detection
 * was decoded from (torchvision's postprocess_detections computes that row, then keeps one class
 * per candidate box, so score == probs[label]). A different class's value is what the detector
 * thinks of that class at this place, not the score of another detection. Valid until the
 * session's next run or destroy; NULL when the session was created with outputs that leave out
 * "detections.probs". */
typedef struct {
    float        box[4];
    float        score;
    int          label;
    const float *probs;
} mi_detection;

MI_API int mi_session_detections(const mi_session *s, int n, mi_detection *out, int cap);

#endif
