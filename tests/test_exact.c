/* tests/test_exact.c - MI_EXACT: the same output bits on x86-64 and aarch64.
 *
 * The whole program runs with MI_EXACT=1 (set before the engine first looks at the CPU). It checks
 *   - ops/mathf.c against double-precision libm over a sweep of float bit patterns: within 1 ulp
 *     (the C library's double functions are accurate to well under a float ulp, so this bounds
 *     our error, not theirs), and the special values;
 *   - ResNet-18 (tests/ref_resnet.py's random blob and input) and the depth and segmentation
 *     networks (tests/ref_lesionseg.py's small configurations) in exact mode: at the portable
 *     ceiling, identical bits for 1 and 2 threads, within 1e-4 * max|ref| of PyTorch;
 *   - across machines: with MI_EXACT_BITS=FILE, their outputs (and the logits' softmax) are
 *     written to FILE when it does not exist and compared byte for byte when it does. `make test-arm` writes it
 *     on x86 and compares under qemu-aarch64. */
#include "tests/mi_test.h"
#include "medinfer.h"
#include "ops/act.h"
#include "ops/cpu.h"
#include "ops/mathf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* distance in ulps between two finite floats of the same sign, or 0/1 across zero */
static int64_t ulps(float a, float b) {
    if (a == b) return 0;
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    if (ia < 0) ia = INT32_MIN - ia;
    if (ib < 0) ib = INT32_MIN - ib;
    return llabs((long long)ia - ib);
}

typedef struct {
    const char *name;
    float (*f)(float);
    double (*ref)(double);
} fn;

START_TEST(mathf_within_one_ulp_of_libm)
{
    const fn fns[] = { { "exp", mi_expf, exp }, { "expm1", mi_expm1f, expm1 }, { "tanh", mi_tanhf, tanh },
                       { "log", mi_logf, log } };
    for (size_t k = 0; k < sizeof fns / sizeof *fns; k++) {
        int64_t worst = 0, n = 0;
        float at = 0;
        /* every 4099th bit pattern: both signs, subnormals to the largest finite */
        for (uint64_t u = 0; u < 0x100000000ull; u += 4099) {
            uint32_t b = (uint32_t)u;
            float x;
            memcpy(&x, &b, 4);
            if (!isfinite(x)) continue;
            const double r = fns[k].ref((double)x);
            const float want = fabs(r) >= 0x1.ffffffp127 ? copysignf(INFINITY, (float)r) : (float)r;
            const float got = fns[k].f(x);
            if (isnan(want)) {
                ck_assert_msg(isnan(got), "%s(%a) = %a, libm NaN", fns[k].name, x, got);
                continue;
            }
            if (isinf(want) || isinf(got)) {
                ck_assert_msg(got == want, "%s(%a) = %a, libm %a", fns[k].name, x, got, want);
                continue;
            }
            const int64_t d = ulps(got, want);
            if (d > worst) worst = d, at = x;
            n++;
        }
        printf("mi_%sf: %lld finite arguments, worst %lld ulp (at %a)\n", fns[k].name, (long long)n,
               (long long)worst, at);
        ck_assert_msg(worst <= 1, "mi_%sf is %lld ulp from libm at %a", fns[k].name, (long long)worst, at);
    }
    /* the limits and the special values */
    ck_assert(mi_expf(INFINITY) == INFINITY && mi_expf(-INFINITY) == 0.0f && isnan(mi_expf(NAN)));
    ck_assert(mi_expf(88.8f) == INFINITY && mi_expf(-104.5f) == 0.0f && mi_expf(0.0f) == 1.0f);
    ck_assert(mi_expf(-100.0f) > 0.0f);                         /* a subnormal, not flushed */
    ck_assert(mi_expm1f(-INFINITY) == -1.0f && mi_expm1f(0.0f) == 0.0f && isnan(mi_expm1f(NAN)));
    ck_assert(mi_expm1f(1e-30f) == 1e-30f && signbit(mi_expm1f(-0.0f)));
    ck_assert(mi_tanhf(INFINITY) == 1.0f && mi_tanhf(-INFINITY) == -1.0f && isnan(mi_tanhf(NAN)));
    ck_assert(mi_tanhf(1e-30f) == 1e-30f && mi_tanhf(-20.0f) == -1.0f && signbit(mi_tanhf(-0.0f)));
    ck_assert(mi_logf(0.0f) == -INFINITY && mi_logf(1.0f) == 0.0f && isnan(mi_logf(-1.0f)) && isnan(mi_logf(NAN)));
    ck_assert(mi_logf(INFINITY) == INFINITY && isfinite(mi_logf(0x1p-149f)));
}
END_TEST

/* output `name` of the model on x, on `threads` threads, copied; n: its element count */
static float *run_net(mi_model *m, const mi_tensor *x, int threads, const char *name, int64_t *n) {
    mi_session *s;
    ck_assert_msg(mi_session_create_outputs(&s, m, x->shape, threads, &name, 1) == MI_OK, "%s", mi_last_error());
    ck_assert_msg(mi_session_run(s, x->data) == MI_OK, "%s", mi_last_error());
    int64_t shape[4];
    const float *l = mi_session_output(s, name, shape);
    ck_assert_ptr_nonnull(l);
    *n = shape[0] * shape[1] * shape[2] * shape[3];
    float *copy = malloc((size_t)*n * sizeof *copy);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, l, (size_t)*n * sizeof *copy);
    mi_session_destroy(s);
    return copy;
}

/* Runs <net>_rand on <net>_ref's input at 1 and 2 threads: the same bits, within 1e-4 * max|ref|
 * of PyTorch's `stage`. Returns the output; *n its length. */
static float *exact_net(const char *net, const char *out, const char *stage, int64_t *n) {
    char path[96];
    snprintf(path, sizeof path, "%s_ref.safetensors", net);
    mi_weights r;
    mi_fixture_open(&r, path);
    mi_tensor in = mi_fixture_tensor(&r, "input"), want = mi_fixture_tensor(&r, stage);
    snprintf(path, sizeof path, "%s_rand.safetensors", net);
    mi_model *m = mi_fixture_model(path);
    int64_t n2;
    float *a = run_net(m, &in, 1, out, n), *b = run_net(m, &in, 2, out, &n2);
    ck_assert_int_eq(*n, n2);
    ck_assert_int_eq(*n, mi_tensor_numel(&want));
    ck_assert_msg(!memcmp(a, b, (size_t)*n * sizeof *a), "%s exact mode: 1 and 2 threads differ", net);
    double maxref = 0;
    for (int64_t i = 0; i < *n; i++) maxref = fmax(maxref, fabs(want.data[i]));
    double err = mi_assert_close(a, want.data, *n, 1e-4 * maxref, 0, net);
    printf("exact (isa %s): %s '%s' max|d| from PyTorch %.3g (%.2e of max|ref|)\n", mi_isa_name(mi_cpu_isa()), net,
           out, err, err / maxref);
    free(b);
    mi_model_close(m);
    mi_weights_close(&r);
    return a;
}

START_TEST(networks_same_bits_everywhere)
{
    ck_assert_msg(mi_cpu_isa() <= MI_ISA_PORTABLE, "MI_EXACT=1 left the ISA at %s", mi_isa_name(mi_cpu_isa()));
    int64_t n, nd, ns;
    float *l1 = exact_net("resnet18", "logits", "fc", &n);
    /* the lesion-segmentation pair (tests/ref_lesionseg.py): ELU, tanh, sigmoid, softmax */
    float *depth = exact_net("depth_a", "depth", "depth", &nd), *seg = exact_net("seg_a", "seg", "seg", &ns);
    /* the softmax runs the reference with mi_expf / mi_logf: part of what must agree */
    mi_model *m = mi_fixture_model("resnet18_rand.safetensors");
    const int64_t classes = mi_model_num_classes(m), batch = n / classes;
    mi_model_close(m);
    float *out = malloc((size_t)(n * 3 + nd + ns) * sizeof *out);
    ck_assert_ptr_nonnull(out);
    memcpy(out, l1, (size_t)n * sizeof *out);
    mi_softmax(out + n, l1, batch, classes, 1);
    mi_log_softmax(out + 2 * n, l1, batch, classes, 1);
    memcpy(out + 3 * n, depth, (size_t)nd * sizeof *out);
    memcpy(out + 3 * n + nd, seg, (size_t)ns * sizeof *out);
    free(depth);
    free(seg);
    const size_t bytes = (size_t)(n * 3 + nd + ns) * sizeof *out;
    const char *path = getenv("MI_EXACT_BITS");
    if (path && *path) {
        FILE *f = fopen(path, "rb");
        if (!f) {
            ck_assert_msg((f = fopen(path, "wb")) != NULL, "%s: cannot create", path);
            ck_assert_int_eq(fwrite(out, 1, bytes, f), bytes);
            ck_assert_int_eq(fclose(f), 0);
            printf("exact: %zu bytes of outputs written to %s\n", bytes, path);
        } else {
            unsigned char *theirs = malloc(bytes + 1);
            ck_assert_ptr_nonnull(theirs);
            const size_t got = fread(theirs, 1, bytes + 1, f);
            fclose(f);
            ck_assert_msg(got == bytes, "%s: %zu bytes, expected %zu", path, got, bytes);
            size_t first = 0;
            while (first < bytes && theirs[first] == ((unsigned char *)out)[first]) first++;
            ck_assert_msg(first == bytes, "%s: differs from this machine's exact-mode output at byte %zu (value %zu: "
                          "ResNet-18 logits, softmax, log-softmax 0..%lld, depth to %lld, seg to %lld)", path, first,
                          first / 4, (long long)n * 3, (long long)(n * 3 + nd), (long long)(n * 3 + nd + ns));
            printf("exact: every output identical to %s (%zu bytes)\n", path, bytes);
            free(theirs);
        }
    }
    free(out);
    free(l1);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("exact");
    TCase *tc = tcase_create("exact");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, mathf_within_one_ulp_of_libm);
    tcase_add_test(tc, networks_same_bits_everywhere);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    setenv("MI_EXACT", "1", 1);   /* before the engine first reads the CPU */
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
