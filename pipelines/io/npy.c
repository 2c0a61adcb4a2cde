/* pipelines/io/npy.c - NumPy .npy files of float32 (reference tensors from Python, dumps for it).
 *
 * Format (numpy/lib/format.py): "\x93NUMPY", major, minor, header length (2 bytes LE in version
 * 1, 4 bytes in 2 and 3), then a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 224, 224), }
 * padded with spaces and a newline, then the raw data. Only what numpy writes for a C-order
 * little-endian float32 array is accepted; everything else is refused naming the file. */
#include "pipelines/io/image.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_NPY_HEADER 65535u  /* numpy itself writes version 1 headers (< 64 KiB) when it can */

/* Finds 'key': in the header dict and returns a pointer to its value (spaces skipped). */
static const char *dict_value(const char *h, const char *key) {
    char q[32];
    snprintf(q, sizeof q, "'%s'", key);
    const char *p = strstr(h, q);
    if (!p) return NULL;
    p += strlen(q);
    while (*p == ' ') p++;
    if (*p++ != ':') return NULL;
    while (*p == ' ') p++;
    return p;
}

static mi_status parse_header(const char *path, const char *h, int *ndim, int64_t shape[5]) {
    const char *d = dict_value(h, "descr"), *f = dict_value(h, "fortran_order"), *s = dict_value(h, "shape");
    if (h[0] != '{' || !d || !f || !s)
        return MI_FAIL(MI_ERR_FORMAT, "%s: .npy header is not a dict with 'descr', 'fortran_order' "
                       "and 'shape': %.80s", path, h);
    if (strncmp(d, "'<f4'", 5) != 0) {
        int n = 0;
        while (d[n] && d[n] != ',' && d[n] != '}' && n < 40) n++;
        return MI_FAIL(MI_ERR_FORMAT, "%s: .npy dtype is %.*s, expected '<f4' (little-endian float32)",
                       path, n, d);
    }
    if (strncmp(f, "False", 5) != 0)
        return MI_FAIL(MI_ERR_FORMAT, "%s: .npy array is in Fortran order, expected C order", path);
    if (*s++ != '(') return MI_FAIL(MI_ERR_FORMAT, "%s: .npy 'shape' is not a tuple", path);
    *ndim = 0;
    for (;;) {
        while (*s == ' ') s++;
        if (*s == ')') break;
        if (!isdigit((unsigned char)*s))
            return MI_FAIL(MI_ERR_FORMAT, "%s: .npy 'shape' holds something other than integers", path);
        if (*ndim == 5) return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: .npy array has more than 5 dimensions", path);
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || v > (1ll << 40))
            return MI_FAIL(MI_ERR_FORMAT, "%s: .npy dimension %d is too large", path, *ndim);
        shape[(*ndim)++] = v;
        s = end;
        while (*s == ' ') s++;
        if (*s == ',') s++;
        else if (*s != ')') return MI_FAIL(MI_ERR_FORMAT, "%s: .npy 'shape' is not a tuple of integers", path);
    }
    return MI_OK;
}

/* The preamble: pre holds the file's first min(size, 12) bytes. Gives where the header starts
 * (*at) and its length, checked to lie inside the file. */
static mi_status parse_preamble(const char *path, const unsigned char *pre, size_t size, size_t *at,
                                size_t *hlen) {
    if (size < 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
        return MI_FAIL(MI_ERR_FORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", path);
    if (pre[6] < 1 || pre[6] > 3)
        return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: .npy format version %d.%d, expected 1.0 to 3.0", path,
                       pre[6], pre[7]);
    if (pre[6] == 1) {
        *hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
        *at = 10;
    } else {
        if (size < 12) return MI_FAIL(MI_ERR_FORMAT, "%s: .npy file ends inside its preamble", path);
        *hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
        *at = 12;
    }
    if (*hlen > size - *at || *hlen > (1u << 24))
        return MI_FAIL(MI_ERR_FORMAT, "%s: .npy header length %zu exceeds the %zu-byte file", path, *hlen, size);
    return MI_OK;
}

/* The header dict (h: hlen bytes and a NUL) and the data size it implies, which must be exactly
 * the `avail` bytes that follow it. */
static mi_status parse_dict(const char *path, const char *h, size_t hlen, size_t avail, int *ndim,
                            int64_t shape[5], size_t *bytes) {
    if (strlen(h) != hlen) return MI_FAIL(MI_ERR_FORMAT, "%s: .npy header contains a NUL byte", path);
    mi_status st = parse_header(path, h, ndim, shape);
    if (st) return st;
    size_t n = 1;
    for (int d = 0; d < *ndim; d++)
        if (mi_mul_overflows(n, (size_t)shape[d], &n)) return MI_FAIL(MI_ERR_FORMAT, "%s: .npy shape overflows", path);
    if (mi_mul_overflows(n, sizeof(float), bytes) || *bytes != avail) {
        char sh[96];
        return MI_FAIL(MI_ERR_FORMAT, "%s: .npy shape %s needs %zu data bytes, the file has %zu", path,
                       mi_shape_str(sh, sizeof sh, *ndim, shape), n * sizeof(float), avail);
    }
    return MI_OK;
}

mi_status mi_npy_load(const char *path, float **data, int *ndim, int64_t shape[5]) {
    *data = NULL;
    *ndim = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return MI_FAIL(MI_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    mi_status st = MI_OK;
    char *h = NULL;
    struct stat sb;
    unsigned char pre[12];
    if (fstat(fileno(fp), &sb) != 0) {
        st = MI_FAIL(MI_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = MI_FAIL(MI_ERR_IO, "%s: %s", path, S_ISDIR(sb.st_mode) ? "is a directory, not a .npy file" : "not a regular file");
        goto done;
    }
    if (sb.st_size == 0) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: empty file (0 bytes)", path);
        goto done;
    }
    size_t size = (size_t)sb.st_size, npre = size < 12 ? size : 12, hlen, at, bytes;
    if (fread(pre, 1, npre, fp) != npre) { st = MI_FAIL(MI_ERR_IO, "%s: short read", path); goto done; }
    if ((st = parse_preamble(path, pre, size, &at, &hlen)) != MI_OK) goto done;
    h = malloc(hlen + 1);
    if (!h) { st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path); goto done; }
    if (fseek(fp, (long)at, SEEK_SET) != 0 || fread(h, 1, hlen, fp) != hlen) {
        st = MI_FAIL(MI_ERR_IO, "%s: short read", path);
        goto done;
    }
    h[hlen] = 0;
    if ((st = parse_dict(path, h, hlen, size - at - hlen, ndim, shape, &bytes)) != MI_OK) goto done;
    *data = malloc(bytes ? bytes : 1);
    if (!*data) { st = MI_FAIL(MI_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, bytes); goto done; }
    if (fread(*data, 1, bytes, fp) != bytes) {
        st = MI_FAIL(MI_ERR_IO, "%s: short read of the data", path);
        free(*data);
        *data = NULL;
    }
done:
    if (st) *ndim = 0;
    free(h);
    fclose(fp);
    return st;
}

mi_status mi_npy_load_memory(const void *buf, size_t size, const char *name, float **data, int *ndim,
                             int64_t shape[5]) {
    *data = NULL;
    *ndim = 0;
    if (!name) name = "(memory)";
    if (!buf && size) return MI_FAIL(MI_ERR_ARG, "%s: NULL data of %zu bytes", name, size);
    const unsigned char *b = buf;
    size_t hlen, at, bytes;
    mi_status st = parse_preamble(name, b, size, &at, &hlen);
    if (st) return st;
    char *h = malloc(hlen + 1);  /* the dict parser reads a C string */
    if (!h) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", name);
    memcpy(h, b + at, hlen);
    h[hlen] = 0;
    st = parse_dict(name, h, hlen, size - at - hlen, ndim, shape, &bytes);
    free(h);
    if (st) { *ndim = 0; return st; }
    if (!(*data = malloc(bytes ? bytes : 1))) {
        *ndim = 0;
        return MI_FAIL(MI_ERR_NOMEM, "%s: cannot allocate %zu bytes", name, bytes);
    }
    memcpy(*data, b + at + hlen, bytes);
    return MI_OK;
}

mi_status mi_npy_save(const char *path, const float *data, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > 5) return MI_FAIL(MI_ERR_ARG, "%s: %d dimensions, at most 5", path, ndim);
    char h[256];
    int k = snprintf(h, sizeof h, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t n = 1;
    for (int d = 0; d < ndim; d++) {
        k += snprintf(h + k, sizeof h - (size_t)k, "%s%lld", d ? ", " : "", (long long)shape[d]);
        n *= (size_t)shape[d];
    }
    k += snprintf(h + k, sizeof h - (size_t)k, "%s), }", ndim == 1 ? "," : "");  /* numpy: (5,) */
    int total = (10 + k + 1 + 63) / 64 * 64;  /* numpy aligns the data to 64 bytes */
    int pad = total - 10 - k - 1;
    unsigned char pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                              (unsigned char)((total - 10) & 0xff), (unsigned char)((total - 10) >> 8) };
    FILE *fp = fopen(path, "wb");
    if (!fp) return MI_FAIL(MI_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    bool ok = fwrite(pre, 1, 10, fp) == 10 && fwrite(h, 1, (size_t)k, fp) == (size_t)k &&
              fprintf(fp, "%*s\n", pad, "") == pad + 1 && fwrite(data, sizeof(float), n, fp) == n;
    ok = (fclose(fp) == 0) && ok;
    return ok ? MI_OK : MI_FAIL(MI_ERR_IO, "%s: write failed: %s", path, strerror(errno));
}
