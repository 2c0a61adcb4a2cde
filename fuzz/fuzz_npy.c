/* fuzz/fuzz_npy.c - the .npy reader (pipelines/io/npy.c) on arbitrary bytes through
 * mi_npy_load_memory, which shares every check with mi_npy_load. An accepted array must be
 * exactly the bytes after its header: shape product x 4 == what is left, every float readable. */
#include "fuzz/fuzz.h"
#include "pipelines/io/image.h"

#include <string.h>

#define NAME "fuzz.npy"

static volatile float sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    float *x;
    int ndim;
    int64_t shape[5];
    if (mi_npy_load_memory(data, size, NAME, &x, &ndim, shape) != MI_OK) {
        FUZZ_CHECK(strstr(mi_last_error(), NAME) != NULL, "message does not name the file: %s", mi_last_error());
        FUZZ_CHECK(x == NULL && ndim == 0, "refused, yet data %p ndim %d", (void *)x, ndim);
        return 0;
    }
    FUZZ_CHECK(ndim >= 0 && ndim <= 5, "ndim %d", ndim);
    size_t n = 1;
    for (int d = 0; d < ndim; d++) {
        FUZZ_CHECK(shape[d] >= 0, "dimension %d is %lld", d, (long long)shape[d]);
        n *= (size_t)shape[d];
    }
    /* the data are the last n*4 bytes, after a preamble of at least 10 */
    FUZZ_CHECK(n * 4 <= size - 10 && !memcmp(x, data + size - n * 4, n * 4), "%zu floats are not the file's tail", n);
    float s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    sink = s;
    free(x);
    return 0;
}
