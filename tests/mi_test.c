/* tests/mi_test.c - see mi_test.h */
#include "tests/mi_test.h"
#include "medinfer.h"

#include <math.h>
#include <string.h>
#include <sys/stat.h>

const char *mi_fixtures(void) {
    const char *d = getenv("MI_FIXTURES");
    return d && *d ? d : MI_FIXTURES;
}

const char *mi_shared_data(const char *sub) {
    static char path[1024];
    const char *root = getenv("MI_SHARED_DATA");
    snprintf(path, sizeof path, "%s/%s", root && *root ? root : "../shared/data", sub);
    struct stat sb;
    return stat(path, &sb) == 0 ? path : NULL;
}

void mi_fixture_open(mi_weights *w, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", mi_fixtures(), name);
    mi_status st = mi_weights_open(w, path);
    ck_assert_msg(st == MI_OK, "fixture %s: %s (run `make test` so tests/ref_*.py write it)", path,
                  mi_last_error());
}

void mi_capture(void *user, const char *name, const float *data, int ndim, const int64_t *shape) {
    mi_captured *c = user;
    int i = mi_captured_index(c, name);
    if (i < 0) return;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    free(c->data[i]);
    c->data[i] = malloc((size_t)n * sizeof(float));
    ck_assert_ptr_nonnull(c->data[i]);
    memcpy(c->data[i], data, (size_t)n * sizeof(float));
    c->numel[i] = n;
    c->ndim[i] = ndim;
    for (int d = 0; d < ndim && d < MI_MAX_DIMS; d++) c->shape[i][d] = shape[d];
}

int mi_captured_index(const mi_captured *c, const char *name) {
    for (int i = 0; i < c->n && i < MI_CAPTURE_MAX; i++)
        if (!strcmp(c->names[i], name)) return i;
    return -1;
}

void mi_captured_free(mi_captured *c) {
    for (int i = 0; i < c->n && i < MI_CAPTURE_MAX; i++) free(c->data[i]);
}

mi_tensor mi_fixture_tensor(const mi_weights *w, const char *name) {
    mi_tensor t;
    mi_status st = mi_weights_get(w, name, -1, NULL, &t);
    ck_assert_msg(st == MI_OK, "%s", mi_last_error());
    return t;
}

double mi_assert_close_(const float *a, const float *b, int64_t n, double atol, double rtol,
                        const char *what, const char *file, int line) {
    double max_abs = 0, max_rel = 0;
    int64_t worst = -1, nbad = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= atol + rtol * fabs((double)b[i]))) {  /* NaN counts as bad */
            if (worst < 0 || !(d <= max_abs)) worst = i;
            nbad++;
        }
        if (d > max_abs || d != d) max_abs = d;
        double r = d / (fabs((double)b[i]) + 1e-12);
        if (r > max_rel) max_rel = r;
    }
    if (nbad) {
        fprintf(stderr, "%s:%d: %s: %lld of %lld elements differ (atol %g, rtol %g): max abs %g, "
                "max rel %g, worst at flat index %lld: %.9g vs ref %.9g\n", file, line, what,
                (long long)nbad, (long long)n, atol, rtol, max_abs, max_rel, (long long)worst,
                a[worst], b[worst]);
        for (int64_t i = 0; i < 5 && i < n; i++) fprintf(stderr, "  [%lld] %.9g vs %.9g\n", (long long)i, a[i], b[i]);
        ck_abort_msg("%s: not close to the reference (max abs %g)", what, max_abs);
    }
    return max_abs;
}

void mi_fill_random(float *x, int64_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
}

struct mi_model *mi_fixture_model(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", mi_fixtures(), name);
    mi_model *m;
    ck_assert_msg(mi_model_open(&m, path) == MI_OK, "%s", mi_last_error());
    return m;
}
