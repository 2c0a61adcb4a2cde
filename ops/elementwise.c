/* ops/elementwise.c - scalar references for the elementwise ops (see elementwise.h), the
 * dispatch, and concatenation (pure copies: memcpy is already the fast path). */
#include "ops/elementwise.h"
#include "ops/cpu.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define PAR_MIN 32768

#if defined(__x86_64__)
#define DISPATCH(fn, ...) do { if (mi_cpu_isa() >= MI_ISA_AVX2) { fn##_avx2(__VA_ARGS__); return; } \
                               fn##_ref(__VA_ARGS__); } while (0)
#elif defined(__aarch64__)
#define DISPATCH(fn, ...) do { if (mi_cpu_isa() >= MI_ISA_NEON) { fn##_neon(__VA_ARGS__); return; } \
                               fn##_ref(__VA_ARGS__); } while (0)
#else
#define DISPATCH(fn, ...) fn##_ref(__VA_ARGS__)
#endif

void mi_add_ref(float *y, const float *a, const float *b, int64_t n) {
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void mi_mul_ref(float *y, const float *a, const float *b, int64_t n) {
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}

void mi_add_relu_ref(float *y, const float *a, const float *b, int64_t n) {
    #pragma omp parallel for num_threads(mi_threads()) if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float s = a[i] + b[i];
        y[i] = s < 0.0f ? 0.0f : s;
    }
}

void mi_add_channel_ref(float *y, const float *x, const float *b, int64_t N, int64_t C, int64_t inner) {
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (N * C * inner > PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < inner; i++) y[(n * C + c) * inner + i] = x[(n * C + c) * inner + i] + b[c];
}

void mi_mul_channel_ref(float *y, const float *x, const float *s, int64_t N, int64_t C, int64_t inner) {
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (N * C * inner > PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < inner; i++) y[(n * C + c) * inner + i] = x[(n * C + c) * inner + i] * s[c];
}

void mi_mul_spatial_ref(float *y, const float *x, const float *w, int64_t N, int64_t C, int64_t inner) {
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (N * C * inner > PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < inner; i++) y[(n * C + c) * inner + i] = x[(n * C + c) * inner + i] * w[n * inner + i];
}

/* torch's reduction keeps the first index of the greatest value and lets a NaN win over anything
 * and stay (aten/src/ATen/native/SharedReduceOps.h, greater_or_nan): once best is NaN, stop. */
void mi_argmax_channels_ref(int32_t *idx, const float *x, int64_t N, int64_t C, int64_t inner) {
    MI_ASSERT(C >= 1 && C <= INT32_MAX);
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (N * C * inner > PAR_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < inner; i++) {
            const float *xp = x + n * C * inner + i;
            float best = xp[0];
            int32_t bi = 0;
            for (int64_t c = 1; c < C && !isnan(best); c++) {
                const float v = xp[c * inner];
                if (v > best || isnan(v)) { best = v; bi = (int32_t)c; }
            }
            idx[n * inner + i] = bi;
        }
}

void mi_add(float *y, const float *a, const float *b, int64_t n) { DISPATCH(mi_add, y, a, b, n); }
void mi_mul(float *y, const float *a, const float *b, int64_t n) { DISPATCH(mi_mul, y, a, b, n); }
void mi_add_relu(float *y, const float *a, const float *b, int64_t n) { DISPATCH(mi_add_relu, y, a, b, n); }
void mi_add_channel(float *y, const float *x, const float *b, int64_t N, int64_t C, int64_t inner) {
    DISPATCH(mi_add_channel, y, x, b, N, C, inner);
}
void mi_mul_channel(float *y, const float *x, const float *s, int64_t N, int64_t C, int64_t inner) {
    DISPATCH(mi_mul_channel, y, x, s, N, C, inner);
}

void mi_mul_spatial(float *y, const float *x, const float *w, int64_t N, int64_t C, int64_t inner) {
    DISPATCH(mi_mul_spatial, y, x, w, N, C, inner);
}
void mi_argmax_channels(int32_t *idx, const float *x, int64_t N, int64_t C, int64_t inner) {
    DISPATCH(mi_argmax_channels, idx, x, N, C, inner);
}

static void same_shape(const mi_tensor *y, const mi_tensor *x) {
    MI_ASSERT(mi_tensor_same_shape(y, x));
    MI_ASSERT(mi_tensor_is_contiguous(y) && mi_tensor_is_contiguous(x));
}

void mi_add_(mi_tensor *y, const mi_tensor *x) {
    same_shape(y, x);
    mi_add(y->data, y->data, x->data, mi_tensor_numel(y));
}

void mi_add_relu_(mi_tensor *y, const mi_tensor *x) {
    same_shape(y, x);
    mi_add_relu(y->data, y->data, x->data, mi_tensor_numel(y));
}

void mi_concat(float *y, const float *const *xs, const int64_t *sizes, int nx, int64_t outer,
               int64_t inner) {
    int64_t total = 0;
    for (int i = 0; i < nx; i++) total += sizes[i];
    #pragma omp parallel for num_threads(mi_threads()) if (outer * total * inner > PAR_MIN) schedule(static)
    for (int64_t o = 0; o < outer; o++) {
        float *yo = y + o * total * inner;
        for (int i = 0; i < nx; i++) {
            const size_t n = (size_t)(sizes[i] * inner);
            if (n) memcpy(yo, xs[i] + o * (int64_t)n, n * sizeof(float));
            yo += n;
        }
    }
}

mi_status mi_concat_out_shape(int64_t out[MI_MAX_DIMS], const mi_tensor *const *xs, int nx, int dim) {
    if (nx < 1) return MI_FAIL(MI_ERR_ARG, "concat of %d tensors, expected at least 1", nx);
    const mi_tensor *a = xs[0];
    if (dim < 0 || dim >= a->ndim)
        return MI_FAIL(MI_ERR_ARG, "concat of '%s' along dim %d, expected 0..%d", a->name, dim, a->ndim - 1);
    for (int d = 0; d < a->ndim; d++) out[d] = a->shape[d];
    out[dim] = 0;
    char sa[96], sb[96];
    for (int i = 0; i < nx; i++) {
        const mi_tensor *t = xs[i];
        bool ok = t->ndim == a->ndim;
        for (int d = 0; ok && d < a->ndim; d++) ok = d == dim || t->shape[d] == a->shape[d];
        if (!ok)
            return MI_FAIL(MI_ERR_SHAPE, "concat along dim %d: '%s' has shape %s, expected the shape of "
                           "'%s' %s except in dim %d", dim, t->name, mi_shape_str(sa, sizeof sa, t->ndim, t->shape),
                           a->name, mi_shape_str(sb, sizeof sb, a->ndim, a->shape), dim);
        out[dim] += t->shape[dim];
    }
    return MI_OK;
}

void mi_concat_t(mi_tensor *y, const mi_tensor *const *xs, int nx, int dim) {
    int64_t want[MI_MAX_DIMS];
    MI_ASSERT(nx >= 1 && nx <= 64);   /* sizes below live on the stack */
    MI_ASSERT(mi_concat_out_shape(want, xs, nx, dim) == MI_OK);  /* callers check shapes at load */
    MI_ASSERT(y->ndim == xs[0]->ndim && mi_tensor_is_contiguous(y));
    for (int d = 0; d < y->ndim; d++) MI_ASSERT_EQ(y->shape[d], want[d]);
    int64_t outer = 1, inner = 1, sizes[64];
    const float *ptrs[64];
    for (int d = 0; d < dim; d++) outer *= y->shape[d];
    for (int d = dim + 1; d < y->ndim; d++) inner *= y->shape[d];
    for (int i = 0; i < nx; i++) {
        MI_ASSERT(mi_tensor_is_contiguous(xs[i]));
        sizes[i] = xs[i]->shape[dim];
        ptrs[i] = xs[i]->data;
    }
    mi_concat(y->data, ptrs, sizes, nx, outer, inner);
}
