/* weights/safetensors.h - the blob reader: safetensors (8-byte LE header length, JSON header,
 * raw LE data) read whole into memory and validated in full before anything reads a tensor.
 *
 * Validation (each failure names the file and what is wrong): header length within the file,
 * JSON object, known dtypes, shapes of non-negative ints whose byte size matches data_offsets,
 * offsets inside the data section, not overlapping and leaving no holes (as the spec demands),
 * __metadata__ a string->string object. Metadata number parsers reject NaN/Inf, and the keys the
 * engine reads (num_classes, input_size, resize, resize_mode, mean, std, labels) are checked at
 * open.
 *
 * Floating tensors may be stored as F32, F16, BF16 or F64 (tools/export.py --dtype): each gets an
 * F32 view at open, F16/BF16 widened exactly, F64 rounded to nearest (torch's .float()). */
#ifndef MI_SAFETENSORS_H
#define MI_SAFETENSORS_H

#include "ops/tensor.h"

typedef struct {
    char        name[128];
    mi_dtype    dtype;
    int         ndim;
    int64_t     shape[MI_MAX_DIMS];
    size_t      begin, end;     /* byte offsets into the data section */
    const void *data;           /* raw bytes: into the map, or into aligned_copy when the file's
                                   offset is not a multiple of the element size (F16/BF16/F64
                                   raw bytes are not copied: read them through f32) */
    const float *f32;           /* F32 view of a floating tensor (== data for F32, a converted
                                   copy in aligned_copy for F16/BF16/F64); NULL for integers */
} mi_blob_tensor;

typedef struct {
    char            path[512];  /* the file, or the name given to mi_weights_open_memory */
    unsigned char  *map;        /* whole file: our read-only copy (an anonymous mapping), or the
                                   caller's bytes when borrowed */
    size_t          size;
    size_t          data_start; /* 8 + header length */
    int             ntensors;
    mi_blob_tensor *tensors;
    int             nmeta;
    char          **meta_keys, **meta_vals;
    void           *aligned_copy; /* owned: copies of misaligned tensors, F32 conversions */
    char            sha256[65];   /* of the whole file, computed at open */
    bool            borrowed;     /* map belongs to the caller (mi_weights_open_memory) */
} mi_weights;

mi_status mi_weights_open(mi_weights *w, const char *path);
/* The same reader and checks on a blob already in memory (embedded in a binary, received over a
 * socket, decrypted). The bytes are borrowed, not copied: they must stay valid and unchanged until
 * mi_weights_close(w), because tensors point into them (except the F32 views of F16/BF16/F64
 * tensors and copies of misaligned ones, which w owns). `name` (NULL: "(memory)") stands in for
 * the path in w->path and in every error message; w->sha256 is of the bytes. */
mi_status mi_weights_open_memory(mi_weights *w, const void *data, size_t size, const char *name);
void      mi_weights_close(mi_weights *w);

const mi_blob_tensor *mi_weights_find(const mi_weights *w, const char *name);
/* A floating tensor (stored F32, F16, BF16 or F64) that must exist with exactly this shape
 * (ndim < 0: any shape), as an F32 view owned by w (valid until mi_weights_close). */
mi_status mi_weights_get(const mi_weights *w, const char *name, int ndim, const int64_t *shape,
                         mi_tensor *out);

const char *mi_weights_meta(const mi_weights *w, const char *key);     /* NULL when absent */
/* Parsers for metadata values; a missing key returns MI_ERR_FORMAT naming file and key,
 * unless a default is given through the *_or variants. */
mi_status mi_weights_meta_int(const mi_weights *w, const char *key, long long lo, long long hi,
                              long long *out);
mi_status mi_weights_meta_floats(const mi_weights *w, const char *key, float *out, int n);
mi_status mi_weights_meta_double(const mi_weights *w, const char *key, double *out);
/* JSON array of 1..max integers, each in [lo, hi] ("[1, 2, 3, 3]"); *n gets the count. */
mi_status mi_weights_meta_ints(const mi_weights *w, const char *key, long long lo, long long hi,
                               int *out, int max, int *n);
/* JSON array of strings; *out is an array of n malloc'd strings (free with mi_strings_free) */
mi_status mi_weights_meta_strings(const mi_weights *w, const char *key, char ***out, int *n);
void      mi_strings_free(char **s, int n);

#endif
