/* fuzz/fuzz_safetensors.c - the blob reader on arbitrary bytes: mi_weights_open_memory (the
 * validation mi_weights_open runs on the file it read), then what the loaders read from an open
 * blob: every tensor's bytes and F32 view, every metadata key the engine and the pipelines
 * parse with the bounds they parse it with (nn/model.c, nn/rcnn.c's detector configuration,
 * pipelines/endoqc/endoqc.c with its whole site metadata, pipelines/echo's keys), each parser on
 * every other key too, and the preprocessing spec.
 *
 * Promises checked beyond the sanitizers: a refusal names the input; an accepted blob's tensors
 * tile its data section, each with exactly dtype size x shape bytes, and the F32 views of
 * non-empty ones are aligned. */
#include "fuzz/fuzz.h"
#include "weights/safetensors.h"
#include "pipelines/io/image.h"
#include "pipelines/endoqc/endoqc.h"
#include "nn/rcnn.h"

#include <string.h>

#define NAME "fuzz.safetensors"

static volatile float sink;  /* keeps the reads of every element */

static void read_tensors(const mi_weights *w) {
    size_t covered = 0, data_size = w->size - w->data_start;
    for (int i = 0; i < w->ntensors; i++) {
        const mi_blob_tensor *t = &w->tensors[i];
        FUZZ_CHECK(mi_weights_find(w, t->name) != NULL, "tensor '%s' not found by name", t->name);
        FUZZ_CHECK(t->begin <= t->end && t->end <= data_size, "'%s' [%zu, %zu) outside %zu bytes",
                   t->name, t->begin, t->end, data_size);
        size_t esize = mi_dtype_size(t->dtype), n = 1;
        for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];  /* checked at open */
        FUZZ_CHECK(t->end - t->begin == n * esize, "'%s' holds %zu bytes for %zu elements of %zu",
                   t->name, t->end - t->begin, n, esize);
        covered += t->end - t->begin;
        const unsigned char *raw = t->data;
        unsigned acc = 0;
        for (size_t k = 0; k < t->end - t->begin; k++) acc += raw[k];
        sink = (float)acc;
        mi_tensor x;
        if (mi_weights_get(w, t->name, -1, NULL, &x) == MI_OK) {
            /* an empty tensor's view is never read and may point anywhere in the blob */
            FUZZ_CHECK(n == 0 || (uintptr_t)x.data % 4 == 0, "'%s' F32 view misaligned", t->name);
            float s = 0;
            for (int64_t k = 0; k < mi_tensor_numel(&x); k++) s += x.data[k];
            sink = s;
        } else {
            FUZZ_CHECK(t->f32 == NULL, "'%s' has an F32 view that mi_weights_get refuses", t->name);
        }
    }
    FUZZ_CHECK(covered == data_size, "tensors cover %zu of %zu data bytes", covered, data_size);
}

/* Each metadata parser on one key; the result only has to be a status (and valid output). */
static void parse_as_everything(const mi_weights *w, const char *key) {
    long long v;
    double d;
    float f[4];
    char **s;
    int n;
    mi_weights_meta_int(w, key, 0, 1 << 20, &v);
    mi_weights_meta_double(w, key, &d);
    for (int k = 1; k <= 4; k++) mi_weights_meta_floats(w, key, f, k);
    if (mi_weights_meta_strings(w, key, &s, &n) == MI_OK) {
        for (int i = 0; i < n; i++) sink = (float)strlen(s[i]);
        mi_strings_free(s, n);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mi_weights w;
    if (mi_weights_open_memory(&w, data, size, NAME) != MI_OK) {
        FUZZ_CHECK(strstr(mi_last_error(), NAME) != NULL, "message does not name the blob: %s", mi_last_error());
        return 0;
    }
    read_tensors(&w);

    /* the engine and the pipelines, with their own bounds */
    long long v, input = 224;
    double d;
    float f[3];
    char **s;
    int n;
    if (mi_weights_meta_int(&w, "input_size", 32, 4096, &v) == MI_OK) input = v;  /* nn/resnet.c */
    mi_weights_meta_floats(&w, "mean", f, 3);
    mi_weights_meta_floats(&w, "std", f, 3);
    mi_weights_meta_int(&w, "num_classes", 1, 1000000, &v);
    if (mi_weights_meta_strings(&w, "labels", &s, &n) == MI_OK) mi_strings_free(s, n);
    mi_weights_meta_int(&w, "resize", input, 4096, &v);                            /* endoqc */
    if (mi_weights_meta_strings(&w, "site_order", &s, &n) == MI_OK) mi_strings_free(s, n);
    mi_weights_meta_int(&w, "endoqc_min_frames", 1, 1000000, &v);
    mi_weights_meta_int(&w, "endoqc_site_threshold", 0, 26, &v);
    mi_weights_meta_double(&w, "endoqc_min_prob", &d);
    mi_endoqc_sites sites;                                      /* endoqc's own reading of them */
    if (mi_endoqc_sites_from_blob(&sites, &w) == MI_OK)
        FUZZ_CHECK(sites.nsites >= 2 && sites.nsites <= MI_ENDOQC_MAX_SITES && sites.ngroups <= MI_ENDOQC_MAX_GROUPS,
                   "%d sites, %d groups", sites.nsites, sites.ngroups);
    else
        FUZZ_CHECK(strstr(mi_last_error(), NAME) != NULL, "site metadata refusal does not name the blob: %s",
                   mi_last_error());
    mi_preprocess_spec spec;                                                       /* classify */
    if (mi_preprocess_spec_from_blob(&spec, &w) == MI_OK) {
        FUZZ_CHECK(spec.crop >= 1 && spec.resize >= 1 && spec.std[0] > 0 && spec.std[1] > 0 && spec.std[2] > 0,
                   "spec crop %d resize %d", spec.crop, spec.resize);
        FUZZ_CHECK(spec.resize_mode == MI_RESIZE_CROP ||
                   (spec.resize_mode == MI_RESIZE_SQUASH && spec.resize == spec.crop),
                   "spec resize_mode %d with resize %d, crop %d", (int)spec.resize_mode, spec.resize, spec.crop);
    } else {
        FUZZ_CHECK(strstr(mi_last_error(), NAME) != NULL, "preprocessing refusal does not name the blob: %s",
                   mi_last_error());
    }
    mi_rcnn_config rc;                                                            /* detectors */
    for (int ch = 1; ch <= 3; ch += 2)
        if (mi_rcnn_config_from_blob(&rc, &w, ch) == MI_OK)
            FUZZ_CHECK(rc.ncell >= 1 && rc.ncell <= MI_RCNN_MAX_ANCHORS && rc.min_size >= 1 && rc.std[0] > 0,
                       "%d anchors, min_size %d", rc.ncell, rc.min_size);
        else
            FUZZ_CHECK(strstr(mi_last_error(), NAME) != NULL, "detector metadata refusal does not name the blob: %s",
                       mi_last_error());
    mi_weights_meta_double(&w, "echo_min_score", &d);                             /* echo */
    mi_weights_meta_double(&w, "crop_margin", &d);
    static const char *text[] = { "arch", "model_version", "name", "format_version", "created", "site_groups",
                                  "backbone", "whiten", "echo_role" };
    for (size_t i = 0; i < sizeof text / sizeof *text; i++) {
        const char *t = mi_weights_meta(&w, text[i]);
        if (t) sink = (float)strlen(t);
    }
    for (int i = 0; i < w.nmeta; i++) parse_as_everything(&w, w.meta_keys[i]);
    parse_as_everything(&w, "no such key");
    FUZZ_CHECK(strlen(w.sha256) == 64, "sha256 '%s'", w.sha256);
    mi_weights_close(&w);
    return 0;
}
