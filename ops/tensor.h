/* ops/tensor.h - mi_tensor (a view: shape, strides, dtype, data) and the arena that owns memory.
 *
 * Activations are float32, contiguous, PyTorch order N, C, [D,] H, W, so tests index like torch.
 * A forward pass never calls malloc: a network sizes its arena at load and carves tensors from it. */
#ifndef MI_TENSOR_H
#define MI_TENSOR_H

#include "medinfer.h"

#include <stdbool.h>

#define MI_MAX_DIMS 5
#define MI_ALIGN 64

typedef enum { MI_F32, MI_F64, MI_F16, MI_BF16, MI_I64, MI_I32, MI_I16, MI_I8, MI_U8, MI_BOOL } mi_dtype;

typedef struct {
    float   *data;                /* 64-byte aligned when arena-owned; the blob reader's for weights */
    mi_dtype dtype;               /* MI_F32 for activations */
    int      ndim;
    int64_t  shape[MI_MAX_DIMS];
    int64_t  stride[MI_MAX_DIMS]; /* in elements, not bytes */
    char     name[64];            /* "layer1.0.conv1": appears in every error about it */
} mi_tensor;

size_t      mi_dtype_size(mi_dtype t);
const char *mi_dtype_name(mi_dtype t);  /* safetensors spelling: "F32", "I64", ... */

/* A contiguous view over data with the given shape (ndim <= MI_MAX_DIMS). */
mi_tensor mi_tensor_view(float *data, int ndim, const int64_t *shape, const char *name);
int64_t   mi_tensor_numel(const mi_tensor *t);
bool      mi_tensor_is_contiguous(const mi_tensor *t);
bool      mi_tensor_same_shape(const mi_tensor *a, const mi_tensor *b);
/* No infinity or NaN among v[0 .. n). Branch-free (a test and branch per element took as long as
 * normalizing a 1024-node graph). */
bool      mi_all_finite(const float *v, int64_t n);
/* "[1,64,56,56]" into buf; returns buf */
const char *mi_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

/* Bump allocator over one 64-byte-aligned block. mi_arena_reset() frees everything at once. */
typedef struct {
    unsigned char *base;
    size_t size, used, peak;
} mi_arena;

mi_status mi_arena_init(mi_arena *a, size_t bytes);
void      mi_arena_free(mi_arena *a);
void     *mi_arena_alloc(mi_arena *a, size_t bytes);   /* NULL when full; 64-byte aligned */
void      mi_arena_reset(mi_arena *a);
/* A tensor carved from the arena; .data == NULL when the arena is full. */
mi_tensor mi_arena_tensor(mi_arena *a, int ndim, const int64_t *shape, const char *name);

/* 64-byte aligned heap block (for packed weights owned by a layer) */
void *mi_alloc_aligned(size_t bytes);
void  mi_free_aligned(void *p);

#endif
