/* weights/safetensors.c - see safetensors.h. Everything read from the file is checked here, so
 * that nothing downstream ever has to trust file bytes. */
#include "weights/safetensors.h"
#include "weights/sha256.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER (100u << 20)  /* the spec's own limit on the JSON header */

static const struct { const char *name; mi_dtype t; } dtypes[] = {
    { "F32", MI_F32 }, { "F64", MI_F64 }, { "F16", MI_F16 }, { "BF16", MI_BF16 }, { "I64", MI_I64 },
    { "I32", MI_I32 }, { "I16", MI_I16 }, { "I8", MI_I8 }, { "U8", MI_U8 }, { "BOOL", MI_BOOL },
};

static int by_name(const void *a, const void *b) {
    return strcmp((*(mi_blob_tensor *const *)a)->name, (*(mi_blob_tensor *const *)b)->name);
}

static int by_begin(const void *a, const void *b) {
    const mi_blob_tensor *x = *(mi_blob_tensor *const *)a, *y = *(mi_blob_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static mi_status parse_tensor(mi_weights *w, const cJSON *e, mi_blob_tensor *t, size_t data_size) {
    const char *path = w->path;
    if (strlen(e->string) >= sizeof t->name)
        return MI_FAIL(MI_ERR_FORMAT, "%s: tensor name '%.40s...' is longer than %zu bytes", path,
                       e->string, sizeof t->name - 1);
    snprintf(t->name, sizeof t->name, "%s", e->string);
    if (!cJSON_IsObject(e))
        return MI_FAIL(MI_ERR_FORMAT, "%s: tensor '%s' header entry is not an object", path, t->name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return MI_FAIL(MI_ERR_FORMAT, "%s: tensor '%s' needs string 'dtype', array 'shape' and "
                       "two 'data_offsets'", path, t->name);
    size_t i, ndt = sizeof dtypes / sizeof *dtypes;
    for (i = 0; i < ndt && strcmp(dtypes[i].name, dt->valuestring); i++) {}
    if (i == ndt)
        return MI_FAIL(MI_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%s'", path, t->name, dt->valuestring);
    t->dtype = dtypes[i].t;
    int nd = cJSON_GetArraySize(sh);
    if (nd > MI_MAX_DIMS)
        return MI_FAIL(MI_ERR_FORMAT, "%s: tensor '%s' has %d dimensions, at most %d supported",
                       path, t->name, nd, MI_MAX_DIMS);
    t->ndim = nd;
    size_t bytes = mi_dtype_size(t->dtype);
    for (int d = 0; d < nd; d++) {
        const cJSON *v = cJSON_GetArrayItem(sh, d);
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > 9.0e15 ||
            v->valuedouble != floor(v->valuedouble))
            return MI_FAIL(MI_ERR_FORMAT, "%s: tensor '%s' dimension %d is not a non-negative integer",
                           path, t->name, d);
        t->shape[d] = (int64_t)v->valuedouble;
        if (mi_mul_overflows(bytes, (size_t)t->shape[d], &bytes))
            return MI_FAIL(MI_ERR_FORMAT, "%s: tensor '%s' byte size overflows", path, t->name);
    }
    if (!cJSON_IsNumber(cJSON_GetArrayItem(off, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(off, 1)))
        return MI_FAIL(MI_ERR_FORMAT, "%s: tensor '%s' data_offsets are not two numbers", path, t->name);
    double b = cJSON_GetArrayItem(off, 0)->valuedouble, en = cJSON_GetArrayItem(off, 1)->valuedouble;
    if (!(b >= 0) || !(en >= b) || b != floor(b) || en != floor(en) || en > (double)data_size)
        return MI_FAIL(MI_ERR_FORMAT, "%s: tensor '%s' data_offsets [%.0f, %.0f] lie outside the "
                       "%zu-byte data section", path, t->name, b, en, data_size);
    t->begin = (size_t)b;
    t->end = (size_t)en;
    if (t->end - t->begin != bytes)
        return MI_FAIL(MI_ERR_FORMAT, "%s: tensor '%s' has %zu data bytes, its dtype %s and shape "
                       "need %zu", path, t->name, t->end - t->begin, dt->valuestring, bytes);
    return MI_OK;
}

static mi_status parse_metadata(mi_weights *w, const cJSON *m) {
    if (!cJSON_IsObject(m))
        return MI_FAIL(MI_ERR_FORMAT, "%s: __metadata__ is not an object", w->path);
    if (w->meta_keys)  /* a second copy would also overrun the arrays sized for the first */
        return MI_FAIL(MI_ERR_FORMAT, "%s: __metadata__ appears twice", w->path);
    int n = cJSON_GetArraySize(m);
    w->meta_keys = calloc((size_t)n + 1, sizeof(char *));
    w->meta_vals = calloc((size_t)n + 1, sizeof(char *));
    if (!w->meta_keys || !w->meta_vals) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", w->path);
    const cJSON *e;
    cJSON_ArrayForEach(e, m) {
        if (!cJSON_IsString(e))
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata '%s' is not a string (safetensors "
                           "metadata maps strings to strings)", w->path, e->string);
        w->meta_keys[w->nmeta] = strdup(e->string);
        w->meta_vals[w->nmeta] = strdup(e->valuestring);
        if (!w->meta_keys[w->nmeta] || !w->meta_vals[w->nmeta++])
            return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", w->path);
    }
    return MI_OK;
}

static mi_status parse_header(mi_weights *w, const char *json, size_t len, size_t data_size) {
    /* cJSON skips NUL like a space; JSON text never holds one (strings escape it as \u0000) */
    const char *nul = memchr(json, 0, len);
    if (nul)
        return MI_FAIL(MI_ERR_FORMAT, "%s: header is not valid JSON (NUL byte at byte %td of %zu)",
                       w->path, nul - json, len);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (!root)
        return MI_FAIL(MI_ERR_FORMAT, "%s: header is not valid JSON (near byte %td of %zu)", w->path,
                       cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - json : 0, len);
    /* Only whitespace may pad the header after the JSON (the spec pads with spaces; serde_json
     * in the reference reader rejects anything else), so a concatenated or corrupt header fails. */
    for (const char *p = end; p && p < json + len; p++)
        if (!*p || !strchr(" \t\r\n", *p)) {
            cJSON_Delete(root);
            return MI_FAIL(MI_ERR_FORMAT, "%s: header is not valid JSON (trailing bytes after the "
                           "object at byte %td of %zu)", w->path, p - json, len);
        }
    mi_status st = MI_OK;
    mi_blob_tensor **order = NULL;
    if (!cJSON_IsObject(root)) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: header is JSON but not an object", w->path);
        goto done;
    }
    int n = cJSON_GetArraySize(root);
    w->tensors = calloc((size_t)n + 1, sizeof *w->tensors);
    order = calloc((size_t)n + 1, sizeof *order);
    if (!w->tensors || !order) { st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", w->path); goto done; }
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (!strcmp(e->string, "__metadata__")) {
            if ((st = parse_metadata(w, e)) != MI_OK) goto done;
            continue;
        }
        mi_blob_tensor *t = &w->tensors[w->ntensors];
        if ((st = parse_tensor(w, e, t, data_size)) != MI_OK) goto done;
        order[w->ntensors++] = t;
    }
    /* JSON allows a key twice and cJSON keeps both. Sorted, so a huge header costs n log n. */
    qsort(order, (size_t)w->ntensors, sizeof *order, by_name);
    for (int i = 1; i < w->ntensors; i++)
        if (!strcmp(order[i]->name, order[i - 1]->name)) {
            st = MI_FAIL(MI_ERR_FORMAT, "%s: tensor '%s' appears twice", w->path, order[i]->name);
            goto done;
        }
    /* The spec: the data section is exactly covered, no overlap, no hole. */
    qsort(order, (size_t)w->ntensors, sizeof *order, by_begin);
    size_t at = 0;
    for (int i = 0; i < w->ntensors; i++) {
        if (order[i]->begin < at) {
            st = MI_FAIL(MI_ERR_FORMAT, "%s: tensor '%s' bytes [%zu, %zu) overlap tensor '%s'", w->path,
                         order[i]->name, order[i]->begin, order[i]->end, order[i - 1]->name);
            goto done;
        }
        if (order[i]->begin > at) {
            st = MI_FAIL(MI_ERR_FORMAT, "%s: data bytes [%zu, %zu) before tensor '%s' belong to no "
                         "tensor", w->path, at, order[i]->begin, order[i]->name);
            goto done;
        }
        at = order[i]->end;
    }
    if (at != data_size)
        st = MI_FAIL(MI_ERR_FORMAT, "%s: data section has %zu bytes but tensors cover %zu", w->path,
                     data_size, at);
done:
    free(order);
    cJSON_Delete(root);
    return st;
}

/* IEEE binary16 -> binary32, exact for every input: subnormals are normalized, inf stays inf,
 * NaN keeps sign and payload (as torch's fp16_ieee_to_fp32_value does). */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
    if (e == 0x1f)
        bits = sign | 0x7f800000u | m << 13;
    else if (e != 0)
        bits = sign | (e + 112) << 23 | m << 13;          /* rebias 15 -> 127 */
    else if (m == 0)
        bits = sign;
    else {                                                 /* subnormal: m * 2^-24 */
        int shift = 0;
        while (!(m & 0x400)) { m <<= 1; shift++; }
        bits = sign | (uint32_t)(113 - shift) << 23 | (m & 0x3ff) << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* bfloat16 is the top half of a binary32: exact by construction. */
static float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static bool is_converted(mi_dtype t) { return t == MI_F16 || t == MI_BF16 || t == MI_F64; }

/* Gives every tensor an aligned pointer and every floating tensor an F32 view. Bytes of a tensor
 * whose offset is not a multiple of its element size (an unpadded header, or a writer that
 * does not order tensors by alignment) are copied; F16/BF16 are widened exactly and F64 is
 * rounded to nearest like torch's .float(). All of it lives in one block freed at close. */
static mi_status own_tensors(mi_weights *w) {
    const unsigned char *data = w->map + w->data_start;
    size_t need = 0, at = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < w->ntensors; i++) {
            mi_blob_tensor *t = &w->tensors[i];
            size_t esize = mi_dtype_size(t->dtype), n = (t->end - t->begin) / esize;
            const unsigned char *src = data + t->begin;
            bool misaligned = (uintptr_t)src % esize != 0;
            /* n*4 <= 2*(file size): cannot overflow */
            size_t bytes = is_converted(t->dtype) ? n * 4 : misaligned ? t->end - t->begin : 0;
            if (pass == 0) { need += (bytes + MI_ALIGN - 1) / MI_ALIGN * MI_ALIGN; continue; }
            t->data = src;
            t->f32 = t->dtype == MI_F32 || (is_converted(t->dtype) && !n) ? (const float *)src : NULL;
            if (!bytes) continue;  /* aligned, or empty (its view is never read) */
            unsigned char *dst = (unsigned char *)w->aligned_copy + at;
            at += (bytes + MI_ALIGN - 1) / MI_ALIGN * MI_ALIGN;
            if (!is_converted(t->dtype)) {
                memcpy(dst, src, bytes);
                t->data = dst;
                if (t->dtype == MI_F32) t->f32 = (const float *)dst;
                continue;
            }
            float *f = (float *)dst;
            for (size_t k = 0; k < n; k++) {
                const unsigned char *p = src + k * esize;
                if (t->dtype == MI_F64) {
                    double d;
                    memcpy(&d, p, 8);
                    f[k] = (float)d;
                } else {
                    uint16_t h = (uint16_t)(p[0] | p[1] << 8);
                    f[k] = t->dtype == MI_F16 ? f16_to_f32(h) : bf16_to_f32(h);
                }
            }
            t->f32 = f;
        }
        if (pass == 0 && need) {
            w->aligned_copy = mi_alloc_aligned(need);
            if (!w->aligned_copy)
                return MI_FAIL(MI_ERR_NOMEM, "%s: cannot allocate %zu bytes for converted tensors",
                               w->path, need);
        }
    }
    return MI_OK;
}

/* The metadata keys that tools/export.py writes and the pipelines read are checked at open, so
 * a blob with NaN in 'mean' or a malformed 'labels' fails `medinfer inspect` and every loader the
 * same way, before anything computes with it. Keys the engine does not know are left alone. */
static mi_status check_known_metadata(const mi_weights *w) {
    static const char *ints[] = { "num_classes", "input_size", "resize" };
    long long v, num_classes = -1, input_size = 224, resize = -1;
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        if (!mi_weights_meta(w, ints[i])) continue;
        mi_status st = mi_weights_meta_int(w, ints[i], 1, 1 << 20, &v);
        if (st) return st;
        if (i == 0) num_classes = v;
        if (i == 1) input_size = v;
        if (i == 2) resize = v;
    }
    /* how images reach input_size (ops/preprocess.c): Resize + CenterCrop, or Resize((S, S)),
     * which leaves no room for a 'resize' of its own (input_size defaults to 224 as in nn/model.c) */
    const char *mode = mi_weights_meta(w, "resize_mode");
    if (mode && strcmp(mode, "crop") && strcmp(mode, "squash"))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'resize_mode' = '%.40s' is not 'crop' or 'squash'", w->path,
                       mode);
    if (mode && !strcmp(mode, "squash") && resize >= 0 && resize != input_size)
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'resize' = %lld, but 'resize_mode' squash resizes straight to "
                       "input_size %lld x %lld (leave 'resize' out or make it %lld)", w->path, resize, input_size,
                       input_size, input_size);
    static const char *vecs[] = { "mean", "std" };
    for (size_t i = 0; i < 2; i++) {
        const char *s = mi_weights_meta(w, vecs[i]);
        if (!s) continue;
        cJSON *a = cJSON_Parse(s);  /* NaN and Infinity are not JSON: they fail here */
        int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0;
        bool ok = n >= 1 && n <= 4;
        for (int k = 0; ok && k < n; k++) {
            const cJSON *x = cJSON_GetArrayItem(a, k);
            ok = cJSON_IsNumber(x) && isfinite(x->valuedouble) && fabs(x->valuedouble) < 3.0e38 &&
                 (i == 0 || x->valuedouble > 0);
        }
        cJSON_Delete(a);
        if (!ok)
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata '%s' = '%.60s' is not a JSON array of 1 to 4 "
                           "finite numbers%s", w->path, vecs[i], s, i ? ", all > 0" : "");
    }
    /* a detector's score threshold chosen on validation images (the endoscopy assistant's default) */
    const char *thr = mi_weights_meta(w, "score_threshold");
    if (thr) {
        char *end;
        const double v = strtod(thr, &end);
        if (end == thr || *end || !(v >= 0 && v <= 1))
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'score_threshold' = '%.40s' is not a number in [0, 1]", w->path, thr);
    }
    if (mi_weights_meta(w, "labels")) {
        char **labels;
        int n;
        mi_status st = mi_weights_meta_strings(w, "labels", &labels, &n);
        if (st) return st;
        if (num_classes >= 0 && n != num_classes) {
            mi_strings_free(labels, n);
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'labels' has %d names, 'num_classes' is %lld",
                           w->path, n, num_classes);
        }
        /* a detector's classes that raise an alert (the endoscopy assistant): each one of the labels */
        if (mi_weights_meta(w, "high_risk_labels")) {
            char **risk;
            int nr;
            if ((st = mi_weights_meta_strings(w, "high_risk_labels", &risk, &nr))) {
                mi_strings_free(labels, n);
                return st;
            }
            for (int i = 0; i < nr && !st; i++) {
                bool known = false;
                for (int j = 0; j < n && !known; j++) known = !strcmp(risk[i], labels[j]);
                if (!known)
                    st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'high_risk_labels' names '%.60s', which is not one of "
                                 "'labels'", w->path, risk[i]);
            }
            mi_strings_free(risk, nr);
        }
        mi_strings_free(labels, n);
        if (st) return st;
    } else if (mi_weights_meta(w, "high_risk_labels")) {
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'high_risk_labels' without 'labels' to name", w->path);
    }
    return MI_OK;
}

/* Everything after the bytes are in memory, shared by the file and the memory entry points:
 * w->map, w->size and w->path are set. On failure w is closed (a borrowed map is left alone). */
static mi_status open_bytes(mi_weights *w) {
    const char *path = w->path;
    mi_status st = MI_OK;
    if (w->size < 8) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: %zu bytes, too short for safetensors", path, w->size);
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | w->map[i];
    if (hlen > w->size - 8) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: header length %llu exceeds file size %zu", path,
                     (unsigned long long)hlen, w->size);
        goto fail;
    }
    if (hlen > MAX_HEADER || hlen < 2) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: header length %llu is outside [2, %u]", path,
                     (unsigned long long)hlen, MAX_HEADER);
        goto fail;
    }
    w->data_start = 8 + (size_t)hlen;
    if ((st = parse_header(w, (const char *)w->map + 8, (size_t)hlen, w->size - w->data_start)) != MI_OK)
        goto fail;
    if ((st = check_known_metadata(w)) != MI_OK) goto fail;
    if ((st = own_tensors(w)) != MI_OK) goto fail;
    mi_sha256_hex(w->map, w->size, w->sha256);
    return MI_OK;
fail:
    mi_weights_close(w);
    return st;
}

/* The file is read into anonymous memory rather than mapped, so that the bytes hashed, verified
 * and run can no longer change under the reader: a private mapping shows what another process
 * writes to the file in every page not yet copied (test_weights: open_file_is_a_copy). The open
 * reads every byte anyway (the SHA-256), so nothing is loaded that a mapping would not have
 * touched. Anonymous memory also gets 2 MB pages where the kernel gives them unasked
 * (transparent_hugepage "always"), which a layer that reads its weights in place can use: the
 * ResNet-50 detector's fc6 (205 MB, rows 200 KB apart) took 15-52 ms a pass through a fresh
 * file's 4 KB pages and 16 ms from anonymous memory. Asking for them (MADV_HUGEPAGE) made the
 * same detector's whole forward pass slower and erratic on that machine (480-580 ms against
 * 300-430 in turns), so it is not asked. */
static mi_status read_whole(mi_weights *w, int fd) {
    unsigned char *p = mmap(NULL, w->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return MI_FAIL(MI_ERR_NOMEM, "%s: cannot allocate %zu bytes to read it into: %s", w->path, w->size,
                       strerror(errno));
    for (size_t got = 0; got < w->size;) {
        const ssize_t r = read(fd, p + got, w->size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            mi_status st = r < 0 ? MI_FAIL(MI_ERR_IO, "%s: read failed after %zu of %zu bytes: %s", w->path, got,
                                           w->size, strerror(errno))
                                 : MI_FAIL(MI_ERR_IO, "%s: the file ended after %zu of its %zu bytes (it changed "
                                           "while being read)", w->path, got, w->size);
            munmap(p, w->size);
            return st;
        }
        got += (size_t)r;
    }
    mprotect(p, w->size, PROT_READ);   /* read-only from here on, as the file is to us */
    w->map = p;
    return MI_OK;
}

mi_status mi_weights_open(mi_weights *w, const char *path) {
    memset(w, 0, sizeof *w);
    snprintf(w->path, sizeof w->path, "%s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return MI_FAIL(MI_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return MI_FAIL(MI_ERR_IO, "%s: not a regular file", path);
    }
    w->size = (size_t)sb.st_size;
    /* a shorter file is refused by open_bytes (and mmap cannot give 0 bytes) */
    mi_status st = w->size >= 8 ? read_whole(w, fd) : MI_OK;
    close(fd);
    return st ? st : open_bytes(w);
}

mi_status mi_weights_open_memory(mi_weights *w, const void *data, size_t size, const char *name) {
    memset(w, 0, sizeof *w);
    snprintf(w->path, sizeof w->path, "%s", name ? name : "(memory)");
    if (!data && size) return MI_FAIL(MI_ERR_ARG, "%s: NULL data of %zu bytes", w->path, size);
    w->map = (unsigned char *)data;  /* never written: the reader only reads it, like its own copy */
    w->size = size;
    w->borrowed = true;
    return open_bytes(w);
}

void mi_weights_close(mi_weights *w) {
    if (w->map && !w->borrowed) munmap(w->map, w->size);
    for (int i = 0; i < w->nmeta; i++) { free(w->meta_keys[i]); free(w->meta_vals[i]); }
    free(w->meta_keys);
    free(w->meta_vals);
    free(w->tensors);
    mi_free_aligned(w->aligned_copy);
    char path[sizeof w->path];
    memcpy(path, w->path, sizeof path);
    memset(w, 0, sizeof *w);
    memcpy(w->path, path, sizeof path);  /* errors after close still name the file */
}

const mi_blob_tensor *mi_weights_find(const mi_weights *w, const char *name) {
    for (int i = 0; i < w->ntensors; i++)
        if (!strcmp(w->tensors[i].name, name)) return &w->tensors[i];
    return NULL;
}

mi_status mi_weights_get(const mi_weights *w, const char *name, int ndim, const int64_t *shape,
                         mi_tensor *out) {
    const mi_blob_tensor *t = mi_weights_find(w, name);
    char a[96], b[96];
    if (!t) return MI_FAIL(MI_ERR_SHAPE, "%s: tensor '%s' is missing", w->path, name);
    if (!t->f32)
        return MI_FAIL(MI_ERR_SHAPE, "%s: tensor '%s' has dtype %s, expected F32 (or F16, BF16, F64)",
                       w->path, name, mi_dtype_name(t->dtype));
    bool ok = ndim < 0 || t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
    if (!ok)
        return MI_FAIL(MI_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", w->path, name,
                       mi_shape_str(a, sizeof a, t->ndim, t->shape), mi_shape_str(b, sizeof b, ndim, shape));
    *out = mi_tensor_view((float *)t->f32, t->ndim, t->shape, name);
    return MI_OK;
}

const char *mi_weights_meta(const mi_weights *w, const char *key) {
    for (int i = 0; i < w->nmeta; i++)
        if (!strcmp(w->meta_keys[i], key)) return w->meta_vals[i];
    return NULL;
}

static mi_status need_meta(const mi_weights *w, const char *key, const char **v) {
    *v = mi_weights_meta(w, key);
    return *v ? MI_OK : MI_FAIL(MI_ERR_FORMAT, "%s: metadata '%s' is missing", w->path, key);
}

mi_status mi_weights_meta_double(const mi_weights *w, const char *key, double *out) {
    const char *v;
    mi_status st = need_meta(w, key, &v);
    if (st) return st;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end || errno || !isfinite(d))
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata '%s' = '%.40s' is not a finite number", w->path, key, v);
    *out = d;
    return MI_OK;
}

mi_status mi_weights_meta_int(const mi_weights *w, const char *key, long long lo, long long hi,
                              long long *out) {
    const char *v;
    mi_status st = need_meta(w, key, &v);
    if (st) return st;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi)
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata '%s' = '%.40s' is not an integer in [%lld, %lld]",
                       w->path, key, v, lo, hi);
    *out = x;
    return MI_OK;
}

mi_status mi_weights_meta_floats(const mi_weights *w, const char *key, float *out, int n) {
    const char *v;
    mi_status st = need_meta(w, key, &v);
    if (st) return st;
    cJSON *a = cJSON_Parse(v);  /* NaN and Infinity are not JSON: they fail here */
    bool ok = cJSON_IsArray(a) && cJSON_GetArraySize(a) == n;
    for (int i = 0; ok && i < n; i++) {
        const cJSON *x = cJSON_GetArrayItem(a, i);
        ok = cJSON_IsNumber(x) && isfinite(x->valuedouble) && fabs(x->valuedouble) < 3.0e38;
        if (ok) out[i] = (float)x->valuedouble;
    }
    cJSON_Delete(a);
    return ok ? MI_OK : MI_FAIL(MI_ERR_FORMAT, "%s: metadata '%s' = '%.60s' is not a JSON array of "
                                "%d finite numbers", w->path, key, v, n);
}

mi_status mi_weights_meta_ints(const mi_weights *w, const char *key, long long lo, long long hi,
                               int *out, int max, int *n) {
    const char *v;
    mi_status st = need_meta(w, key, &v);
    if (st) return st;
    cJSON *a = cJSON_Parse(v);
    const int k = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
    bool ok = k >= 1 && k <= max;
    for (int i = 0; ok && i < k; i++) {
        const cJSON *x = cJSON_GetArrayItem(a, i);
        /* an integer: cJSON keeps every number as a double, and "1.5" or 1e300 is not one */
        ok = cJSON_IsNumber(x) && x->valuedouble >= (double)lo && x->valuedouble <= (double)hi &&
             x->valuedouble == (double)(long long)x->valuedouble;
        if (ok) out[i] = (int)x->valuedouble;
    }
    cJSON_Delete(a);
    if (!ok)
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata '%s' = '%.60s' is not a JSON array of 1..%d integers "
                       "in [%lld, %lld]", w->path, key, v, max, lo, hi);
    *n = k;
    return MI_OK;
}

void mi_strings_free(char **s, int n) {
    for (int i = 0; s && i < n; i++) free(s[i]);
    free(s);
}

mi_status mi_weights_meta_strings(const mi_weights *w, const char *key, char ***out, int *n) {
    const char *v;
    mi_status st = need_meta(w, key, &v);
    if (st) return st;
    cJSON *a = cJSON_Parse(v);
    int k = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
    char **s = k >= 0 ? calloc((size_t)k + 1, sizeof *s) : NULL;
    bool ok = s != NULL;
    for (int i = 0; ok && i < k; i++) {
        const cJSON *x = cJSON_GetArrayItem(a, i);
        ok = cJSON_IsString(x) && (s[i] = strdup(x->valuestring)) != NULL;
    }
    cJSON_Delete(a);
    if (!ok) {
        mi_strings_free(s, k);
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata '%s' is not a JSON array of strings", w->path, key);
    }
    *out = s;
    *n = k;
    return MI_OK;
}
