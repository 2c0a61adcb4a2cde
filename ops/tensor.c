/* ops/tensor.c - tensor views and the arena. */
#include "ops/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

size_t mi_dtype_size(mi_dtype t) {
    switch (t) {
    case MI_F64: case MI_I64: return 8;
    case MI_F32: case MI_I32: return 4;
    case MI_F16: case MI_BF16: case MI_I16: return 2;
    case MI_I8: case MI_U8: case MI_BOOL: return 1;
    }
    return 0;
}

const char *mi_dtype_name(mi_dtype t) {
    static const char *names[] = { "F32", "F64", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL" };
    return (unsigned)t < sizeof names / sizeof *names ? names[t] : "?";
}

mi_tensor mi_tensor_view(float *data, int ndim, const int64_t *shape, const char *name) {
    MI_ASSERT(ndim >= 0 && ndim <= MI_MAX_DIMS);
    mi_tensor t = { .data = data, .dtype = MI_F32, .ndim = ndim };
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t.shape[i] = shape[i];
        t.stride[i] = s;
        s *= shape[i];
    }
    snprintf(t.name, sizeof t.name, "%s", name ? name : "");
    return t;
}

int64_t mi_tensor_numel(const mi_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

bool mi_tensor_is_contiguous(const mi_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

bool mi_tensor_same_shape(const mi_tensor *a, const mi_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

/* all exponent bits set: an infinity or a NaN; in blocks of 8, which GCC's -O2 vectorizes */
bool mi_all_finite(const float *v, int64_t n) {
    uint32_t bad = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint32_t u[8];
        memcpy(u, v + i, sizeof u);
        for (int l = 0; l < 8; l++) bad |= (u[l] & 0x7f800000u) == 0x7f800000u;
    }
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], sizeof u);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    return !bad;
}

const char *mi_shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

/* Blocks of 2 MB and more (a session's arena, a layer's packed weights) start on a 2 MB boundary
 * and ask the kernel for 2 MB pages (MADV_HUGEPAGE; only a hint, ignored where transparent huge
 * pages are off). A 1x1 layer reads its input's rows a plane apart and a forward pass walks
 * ~100 MB of weights: with 4 KB pages every such row is a TLB miss, and which L2 sets a buffer
 * falls in changes from process to process. On the 2-core Xeon (AVX-512; transparent huge pages
 * "madvise") ResNet-50's forward pass took 0.957 of the time at one thread and 0.955 at two
 * (medians of 6 process pairs in turns), its peak RSS 278 -> 288 MB; the lesion networks and the
 * ResNet-50 detector even or faster (4 and 3 pairs). The buffer a weights file is read into is
 * not asked (weights/safetensors.c says why). */
#define HUGE_BYTES ((size_t)2 << 20)

void *mi_alloc_aligned(size_t bytes) {
    void *p = NULL;
    size_t rounded = (bytes + MI_ALIGN - 1) / MI_ALIGN * MI_ALIGN;
#if defined(MADV_HUGEPAGE)
    if (rounded >= HUGE_BYTES) {
        rounded = (rounded + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES;
        if (posix_memalign(&p, HUGE_BYTES, rounded) != 0) return NULL;
        madvise(p, rounded, MADV_HUGEPAGE);   /* a hint: its failure changes nothing */
        return p;
    }
#endif
    if (posix_memalign(&p, MI_ALIGN, rounded ? rounded : MI_ALIGN) != 0) return NULL;
    return p;
}

void mi_free_aligned(void *p) { free(p); }

mi_status mi_arena_init(mi_arena *a, size_t bytes) {
    memset(a, 0, sizeof *a);
    a->base = mi_alloc_aligned(bytes);
    if (!a->base) return MI_FAIL(MI_ERR_NOMEM, "cannot allocate a %zu-byte arena", bytes);
    a->size = bytes;
    return MI_OK;
}

void mi_arena_free(mi_arena *a) {
    mi_free_aligned(a->base);
    memset(a, 0, sizeof *a);
}

void *mi_arena_alloc(mi_arena *a, size_t bytes) {
    size_t rounded = (bytes + MI_ALIGN - 1) / MI_ALIGN * MI_ALIGN;
    if (rounded < bytes || rounded > a->size - a->used) return NULL;
    void *p = a->base + a->used;
    a->used += rounded;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

void mi_arena_reset(mi_arena *a) { a->used = 0; }

mi_tensor mi_arena_tensor(mi_arena *a, int ndim, const int64_t *shape, const char *name) {
    mi_tensor t = mi_tensor_view(NULL, ndim, shape, name);
    t.data = mi_arena_alloc(a, (size_t)mi_tensor_numel(&t) * sizeof(float));
    return t;
}
