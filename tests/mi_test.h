/* tests/mi_test.h - shared helpers for the Check tests: closeness with a useful report,
 * fixtures written by the PyTorch references (tests/ref_*.py), visible skips. */
#ifndef MI_TEST_H
#define MI_TEST_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "ops/tensor.h"
#include "weights/safetensors.h"

#ifndef MI_FIXTURES
#define MI_FIXTURES "build/fixtures"
#endif

/* Directory of fixtures: $MI_FIXTURES or the build default. */
const char *mi_fixtures(void);
/* ../shared/data/<sub> when present, else NULL (the caller then MI_SKIPs). */
const char *mi_shared_data(const char *sub);

/* Opens <fixtures>/<name>; fails the test (with mi_last_error) when it cannot. */
void mi_fixture_open(mi_weights *w, const char *name);
/* The model <fixtures>/<name> (mi_model_close it); fails the test when it cannot be opened. */
struct mi_model *mi_fixture_model(const char *name);
/* F32 tensor from an open fixture; fails the test when missing. */
mi_tensor mi_fixture_tensor(const mi_weights *w, const char *name);

/* |a-b| <= atol + rtol*|b| everywhere; on failure prints name, shape, max abs/rel error, worst
 * index and the first five pairs, then fails the test. Returns max |a-b|. */
double mi_assert_close_(const float *a, const float *b, int64_t n, double atol, double rtol,
                        const char *what, const char *file, int line);
#define mi_assert_close(a, b, n, atol, rtol, what) \
    mi_assert_close_((a), (b), (n), (atol), (rtol), (what), __FILE__, __LINE__)
#define mi_assert_close_t(act, ref, atol, rtol) do { \
    ck_assert_msg(mi_tensor_same_shape((act), (ref)), "%s: shape differs from reference", (ref)->name); \
    mi_assert_close_((act)->data, (ref)->data, mi_tensor_numel(ref), (atol), (rtol), (ref)->name, __FILE__, __LINE__); \
} while (0)

/* A skip Check cannot express: tests/run.sh counts these lines as skipped. */
#define MI_SKIP(...) do { printf("MI-SKIP: %s: ", __func__); printf(__VA_ARGS__); printf("\n"); \
    fflush(stdout); return; } while (0)

/* A session capture hook (mi_session_set_capture) keeping copies of the named stages a test asks
 * for: set names and n, pass mi_capture and the struct, read data[i] (NULL when the stage was not
 * produced), then mi_captured_free. */
#define MI_CAPTURE_MAX 32
typedef struct {
    const char *const *names;
    int         n;
    float      *data[MI_CAPTURE_MAX];
    int64_t     numel[MI_CAPTURE_MAX], shape[MI_CAPTURE_MAX][MI_MAX_DIMS];
    int         ndim[MI_CAPTURE_MAX];
} mi_captured;
void mi_capture(void *user, const char *name, const float *data, int ndim, const int64_t *shape);
int  mi_captured_index(const mi_captured *c, const char *name);   /* -1 when not asked for */
void mi_captured_free(mi_captured *c);

/* Deterministic pseudo-random floats in [-1, 1) for kernel-vs-reference tests. */
void mi_fill_random(float *x, int64_t n, uint64_t seed);

/* main() running one suite, so every tests/test_*.c is its own binary. */
#define MI_TEST_MAIN(suite_fn) \
    int main(void) { \
        SRunner *sr = srunner_create(suite_fn()); \
        srunner_run_all(sr, CK_NORMAL); \
        int nf = srunner_ntests_failed(sr); \
        srunner_free(sr); \
        return nf ? EXIT_FAILURE : EXIT_SUCCESS; \
    }

#endif
