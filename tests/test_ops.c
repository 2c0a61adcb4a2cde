/* tests/test_ops.c - every non-convolution op (ops/act, pool, resize, elementwise, linear, graph):
 * the scalar reference and the dispatched fast path against PyTorch (fixtures from
 * tests/ref_ops.py), each SIMD kernel (AVX2 on x86-64, NEON on aarch64 under `make test-arm`)
 * against its reference over every length 1..67 (the sweeps quadratic in it, softmax and matmul,
 * over 1,3,4,5,7,8,12,15,16,17,20,31,67; memcmp where no reduction is reordered; NaN, Inf and -0
 * among the inputs), and the same bits for 1, 2 and 4 threads.
 *
 * Tolerances against torch (|a-b| <= atol + rtol*|b|), with the max error measured on x86-64
 * (gcc 12, torch 1.13 CPU, fixed seeds), reference path / AVX2 path:
 *   relu, prelu, add, mul, add_relu, per-channel add/mul, concat, max pool, nearest: exact (0 / 0).
 *   avg pool: atol 1e-6 (0: torch sums the window in the same order).
 *   adaptive and global avg pool: atol 1e-6 (8.9e-8: torch's mean sums pairwise).
 *   sigmoid: atol 1e-6 (6.0e-8 / 6.0e-8).
 *   softmax: atol 2e-6 (3.0e-8 / 4.8e-7: the AVX2 path sums a 1000-wide row in 8 lanes).
 *   log_softmax: atol 1e-5, rtol 1e-6 (2.4e-7 / 3.8e-6, on values near -300).
 *   bilinear / trilinear: atol 1e-6 (2.4e-7: weights and indices match torch's, probed one-hot;
 *   its lerp rounds differently in the last bit).
 *   linear (in up to 2048): atol 1e-5, rtol 1e-5 (0: torch's generic BLAS sums in our order /
 *   4.8e-6: 8-lane FMA sums).  matmul: atol 1e-5, rtol 1e-5 (0 / 0).
 *   Kipf normalization, with and without self loops: atol 1e-6 (4.5e-8); graph conv: atol 1e-5, rtol 1e-5 (2.4e-7 / 3.0e-7).
 * AVX2 against the reference where the order differs: sigmoid atol 1e-6 (1.2e-7), softmax
 * atol 2e-6 (1.2e-7), log_softmax atol 1e-5 rtol 1e-6 (1.9e-6), linear atol/rtol 1e-5.
 * NEON (ops/arm/, measured under qemu-aarch64) is held to the same bounds: against the reference
 * sigmoid 1.2e-7, softmax 1.2e-7, log_softmax 1.9e-6 (its exp is AVX2's lane for lane, its row
 * sums 4-lane); against torch, as the dispatched path there, sigmoid 6.0e-8, softmax 4.8e-7,
 * log_softmax 3.8e-6, linear 5.0e-6; the others bit for bit.
 * Extreme ranges (act_extreme_*): absolute bounds per element, measured errors in
 * ops/x86/act_avx2.c. */
#include "tests/mi_test.h"
#include "ops/act.h"
#include "ops/cpu.h"
#include "ops/elementwise.h"
#include "ops/graph.h"
#include "ops/linear.h"
#include "ops/pool.h"
#include "ops/resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The SIMD kernels the sweeps below hold against the references: FAST(mi_relu) is mi_relu_avx2
 * on x86-64 and mi_relu_neon on aarch64, FAST_NAME names it in the messages. They are called
 * directly, whatever MI_ISA says. */
#if defined(__x86_64__)
#define MI_TEST_SIMD 1
#define FAST(fn) fn##_avx2
#define FAST_NAME "avx2"
#elif defined(__aarch64__)
#define MI_TEST_SIMD 1
#define FAST(fn) fn##_neon
#define FAST_NAME "neon"
#endif

#if defined(MI_TEST_SIMD)   /* every block size and remainder of the 8- and 4-lane kernels */
static const int64_t TAILS[] = { 1, 3, 4, 5, 7, 8, 12, 15, 16, 17, 20, 31, 67 };
#define NTAILS ((int)(sizeof TAILS / sizeof *TAILS))
#define NLENS 67   /* the sweeps that are not quadratic in it take every length 1..67 */
#endif

/* ---- fixture helpers ------------------------------------------------------------------- */

static int ncases(const mi_weights *w) {
    long long n;
    ck_assert_int_eq(mi_weights_meta_int(w, "cases", 1, 10000, &n), MI_OK);
    return (int)n;
}

static mi_tensor ct(const mi_weights *w, int i, const char *key) {
    char name[64];
    snprintf(name, sizeof name, "%d.%s", i, key);
    return mi_fixture_tensor(w, name);
}

static bool has(const mi_weights *w, int i, const char *key) {
    char name[64];
    snprintf(name, sizeof name, "%d.%s", i, key);
    return mi_weights_find(w, name) != NULL;
}

static float *alloc_f(int64_t n) {
    float *p = mi_alloc_aligned((size_t)(n > 0 ? n : 1) * sizeof(float));
    ck_assert_ptr_nonnull(p);
    return p;
}

/* A fresh output tensor shaped like ref, filled with NaN so unwritten elements fail. */
static mi_tensor out_like(const mi_tensor *ref) {
    mi_tensor t = mi_tensor_view(alloc_f(mi_tensor_numel(ref)), ref->ndim, ref->shape, ref->name);
    for (int64_t i = 0; i < mi_tensor_numel(&t); i++) t.data[i] = NAN;
    return t;
}

static float *random_f(int64_t n, uint64_t seed) {
    float *p = alloc_f(n);
    mi_fill_random(p, n, seed);
    return p;
}

/* Whether this CPU runs the FAST kernels: AVX2+FMA on x86-64; ASIMD is in every AArch64 CPU. */
static bool simd(void) {
#if defined(__x86_64__)
    return mi_cpu()->avx2_fma;
#elif defined(__aarch64__)
    return mi_cpu()->neon;
#else
    return false;
#endif
}
#define SIMD_SKIP() do { if (!simd()) MI_SKIP("no SIMD kernels (AVX2+FMA, NEON) on this CPU"); } while (0)

static void report(const char *what, double err) { printf("max |err| %-28s %.3g\n", what, err); }

static void assert_same_bits(const float *a, const float *b, int64_t n, const char *what, int64_t size) {
    ck_assert_msg(memcmp(a, b, (size_t)n * sizeof(float)) == 0, "%s (size %lld): differs from the "
                  "reference bit for bit", what, (long long)size);
}

/* Runs f at 1, 2 and 4 threads; the outputs must be the same bits. */
typedef void (*run_fn)(const void *ctx, float *out);
static void check_threads(run_fn f, const void *ctx, int64_t n, const char *what) {
    float *r1 = alloc_f(n), *rt = alloc_f(n);
    mi_set_threads(1);
    f(ctx, r1);
    for (int t = 2; t <= 4; t *= 2) {
        mi_set_threads(t);
        memset(rt, 0xff, (size_t)n * sizeof(float));
        f(ctx, rt);
        ck_assert_msg(memcmp(r1, rt, (size_t)n * sizeof(float)) == 0, "%s: %d threads differ from 1", what, t);
    }
    mi_set_threads(0);
    mi_free_aligned(r1);
    mi_free_aligned(rt);
}

/* ---- activations ----------------------------------------------------------------------- */

START_TEST(act_matches_torch)
{
    mi_weights w;
    mi_fixture_open(&w, "ops_act.safetensors");
    mi_tensor x = mi_fixture_tensor(&w, "x"), x8 = mi_fixture_tensor(&w, "x8");
    mi_tensor relu = mi_fixture_tensor(&w, "relu"), sig = mi_fixture_tensor(&w, "sigmoid");
    mi_tensor sc = mi_fixture_tensor(&w, "slope_c"), s1 = mi_fixture_tensor(&w, "slope_1");
    mi_tensor pc = mi_fixture_tensor(&w, "prelu_c"), p1 = mi_fixture_tensor(&w, "prelu_1");
    const int64_t n = mi_tensor_numel(&x), N = x.shape[0], C = x.shape[1], inner = x.shape[2] * x.shape[3];
    mi_tensor y = out_like(&x);

    mi_relu_ref(y.data, x.data, n);                          mi_assert_close_t(&y, &relu, 0, 0);
    mi_relu(y.data, x.data, n);                              mi_assert_close_t(&y, &relu, 0, 0);
    memcpy(y.data, x.data, (size_t)n * sizeof(float));
    mi_relu_(&y);                                            mi_assert_close_t(&y, &relu, 0, 0);
    mi_prelu_ref(y.data, x.data, sc.data, C, N, C, inner);   mi_assert_close_t(&y, &pc, 0, 0);
    mi_prelu(y.data, x.data, sc.data, C, N, C, inner);       mi_assert_close_t(&y, &pc, 0, 0);
    mi_prelu_ref(y.data, x.data, s1.data, 1, N, C, inner);   mi_assert_close_t(&y, &p1, 0, 0);
    mi_prelu(y.data, x.data, s1.data, 1, N, C, inner);       mi_assert_close_t(&y, &p1, 0, 0);
    mi_sigmoid(y.data, x8.data, n);
    report("sigmoid", mi_assert_close(y.data, sig.data, n, 1e-6, 0, "sigmoid"));

    const float nan_in[3] = { NAN, -1.0f, 2.0f };   /* torch.relu(nan) is nan */
    float nan_out[3];
    mi_relu_ref(nan_out, nan_in, 3);
    ck_assert(isnan(nan_out[0]) && nan_out[1] == 0.0f && nan_out[2] == 2.0f);
    mi_relu(nan_out, nan_in, 3);
    ck_assert(isnan(nan_out[0]) && nan_out[1] == 0.0f && nan_out[2] == 2.0f);
    mi_free_aligned(y.data);
    mi_weights_close(&w);
}
END_TEST

START_TEST(softmax_matches_torch)
{
    mi_weights w;
    mi_fixture_open(&w, "ops_softmax.safetensors");
    double e1 = 0, e2 = 0;
    for (int i = 0; i < ncases(&w); i++) {
        mi_tensor x = ct(&w, i, "x"), p = ct(&w, i, "p"), sm = ct(&w, i, "softmax"), lsm = ct(&w, i, "log_softmax");
        mi_tensor y = out_like(&sm);
        mi_softmax(y.data, x.data, (int64_t)p.data[0], (int64_t)p.data[1], (int64_t)p.data[2]);
        e1 = fmax(e1, mi_assert_close(y.data, sm.data, mi_tensor_numel(&y), 2e-6, 0, sm.name));
        mi_log_softmax(y.data, x.data, (int64_t)p.data[0], (int64_t)p.data[1], (int64_t)p.data[2]);
        e2 = fmax(e2, mi_assert_close(y.data, lsm.data, mi_tensor_numel(&y), 1e-5, 1e-6, lsm.name));
        /* in place gives the same result */
        memcpy(y.data, x.data, (size_t)mi_tensor_numel(&x) * sizeof(float));
        mi_softmax(y.data, y.data, (int64_t)p.data[0], (int64_t)p.data[1], (int64_t)p.data[2]);
        mi_assert_close(y.data, sm.data, mi_tensor_numel(&y), 2e-6, 0, "softmax in place");
        mi_free_aligned(y.data);
    }
    report("softmax", e1);
    report("log_softmax", e2);
    mi_weights_close(&w);
}
END_TEST

START_TEST(act_fast_equals_ref)
{
    SIMD_SKIP();
#if defined(MI_TEST_SIMD)
    for (int t = 0; t < NLENS; t++)
        for (int64_t C = 1; C <= 3; C += 2) {
            const int64_t inner = t + 1, N = 2, n = N * C * inner;
            float *x = random_f(n, 100 + t), *slope = random_f(C, 7), *a = alloc_f(n), *b = alloc_f(n);
            x[0] = -0.0f;
            if (n > 2) {
                x[n / 2] = NAN;
                x[n - 1] = -INFINITY;
            }
            mi_relu_ref(a, x, n);  FAST(mi_relu)(b, x, n);  assert_same_bits(a, b, n, "relu", n);
            mi_prelu_ref(a, x, slope, C, N, C, inner);  FAST(mi_prelu)(b, x, slope, C, N, C, inner);
            assert_same_bits(a, b, n, "prelu per channel", inner);
            mi_prelu_ref(a, x, slope, 1, N, C, inner);  FAST(mi_prelu)(b, x, slope, 1, N, C, inner);
            assert_same_bits(a, b, n, "prelu single slope", inner);
            /* add+prelu: the reference is mi_add then mi_prelu, bit for bit; the residual either
             * of the same channels or one channel repeated (the V-Net input stage) */
            float *r = random_f(n, 200 + t), *s = alloc_f(n);
            for (int64_t Cr = 1; Cr <= C; Cr += C - 1 > 0 ? C - 1 : 1) {
                for (int64_t k = 0; k < N; k++)
                    for (int64_t c = 0; c < C; c++)
                        mi_add_ref(s + (k * C + c) * inner, x + (k * C + c) * inner, r + (k * Cr + c % Cr) * inner, inner);
                mi_prelu_ref(s, s, slope, C, N, C, inner);
                mi_add_prelu_ref(a, x, r, Cr, slope, C, N, C, inner);
                assert_same_bits(s, a, n, "add_prelu ref vs add then prelu", inner);
                FAST(mi_add_prelu)(b, x, r, Cr, slope, C, N, C, inner);
                assert_same_bits(a, b, n, "add_prelu", inner);
            }
            mi_free_aligned(r); mi_free_aligned(s);
            mi_free_aligned(x); mi_free_aligned(slope); mi_free_aligned(a); mi_free_aligned(b);
        }
#endif
}
END_TEST

START_TEST(act_exp_fast_vs_ref)
{
    SIMD_SKIP();
#if defined(MI_TEST_SIMD)
    double es = 0, em = 0, el = 0;
    for (int t = 0; t < NTAILS; t++)
        for (int u = 0; u < NTAILS; u += 2) {
            /* dim and inner both over tail sizes: the row path (inner 1) and the column path */
            const int64_t outer = 2, dim = TAILS[t], inner = u == 0 ? 1 : TAILS[u], n = outer * dim * inner;
            float *x = random_f(n, (uint64_t)(t * 31 + u)), *r = alloc_f(n), *f = alloc_f(n);
            for (int64_t i = 0; i < n; i++) x[i] *= 30.0f;
            mi_sigmoid_ref(r, x, n);  FAST(mi_sigmoid)(f, x, n);
            es = fmax(es, mi_assert_close(f, r, n, 1e-6, 0, "sigmoid " FAST_NAME " vs ref"));
            mi_softmax_ref(r, x, outer, dim, inner);  FAST(mi_softmax)(f, x, outer, dim, inner);
            em = fmax(em, mi_assert_close(f, r, n, 2e-6, 0, "softmax " FAST_NAME " vs ref"));
            mi_log_softmax_ref(r, x, outer, dim, inner);  FAST(mi_log_softmax)(f, x, outer, dim, inner);
            el = fmax(el, mi_assert_close(f, r, n, 1e-5, 1e-6, "log_softmax " FAST_NAME " vs ref"));
            mi_free_aligned(x); mi_free_aligned(r); mi_free_aligned(f);
        }
    report("sigmoid " FAST_NAME " vs ref", es);
    report("softmax " FAST_NAME " vs ref", em);
    report("log_softmax " FAST_NAME " vs ref", el);
    /* masked logits (-inf) get exactly 0; a NaN makes its whole row NaN, in both paths */
    const float xm[6] = { 1.0f, -INFINITY, 2.0f, NAN, 0.0f, 1.0f };
    float a[6], b[6];
    mi_softmax_ref(a, xm, 2, 3, 1);
    FAST(mi_softmax)(b, xm, 2, 3, 1);
    ck_assert(a[1] == 0.0f && b[1] == 0.0f);
    for (int i = 3; i < 6; i++) ck_assert(isnan(a[i]) && isnan(b[i]));
#endif
}
END_TEST

/* ---- activations at extreme ranges ------------------------------------------------------
 * Fixture ops_act_extreme (tests/ref_ops.py): per case one (outer, dim, inner) tensor of a kind
 * (below), laid out once as rows (inner 1) and once as columns (inner 19), and torch's softmax,
 * log_softmax, sigmoid, relu, prelu and leaky_relu of it. Every path (the references, the SIMD
 * kernels called directly, the dispatched entry points) is held to an absolute bound on each
 * output element, whatever the largest value of the row: a relative bound hides an error of
 * 1e-3 on a log-probability of -0.4 next to a logit of 1e6. NaN must be NaN where torch has NaN
 * and only there; an infinity must be the same infinity. */
static const char *const EXTREME_KINDS[] = { "denormal", "1e4", "1e5", "1e6", "spread1e4", "spread1e6",
                                             "fmax", "dominant", "equal", "special" };

/* Max |got - want| over finite elements; *bad is set (and the first offence printed) when NaN or
 * Inf differ in place or sign, or a finite error exceeds atol. */
static double extreme_err(const float *got, const float *want, int64_t n, double atol, const char *what,
                          const char *kind, bool *bad) {
    double worst = 0;
    bool printed = false;
    for (int64_t i = 0; i < n; i++) {
        const float g = got[i], w = want[i];
        bool ok;
        if (isnan(w) || isnan(g)) ok = isnan(w) && isnan(g);
        else if (isinf(w) || isinf(g)) ok = g == w;
        else {
            const double d = fabs((double)g - (double)w);
            if (d > worst) worst = d;
            ok = d <= atol;
        }
        if (!ok && !printed) {
            fprintf(stderr, "%s on %s: [%lld] %.9g vs %.9g (atol %g)\n", what, kind, (long long)i, g, w, atol);
            printed = true;
        }
        if (!ok) *bad = true;
    }
    return worst;
}

enum { EX_REF, EX_FAST, EX_DISPATCH, EX_PATHS };
#if defined(MI_TEST_SIMD)
static const char *const EX_PATH_NAME[EX_PATHS] = { "ref", FAST_NAME, "dispatch" };
#else
static const char *const EX_PATH_NAME[EX_PATHS] = { "ref", "simd", "dispatch" };
#endif

/* Runs one activation of one path; false when the path does not exist on this CPU. */
static bool ex_run(int path, int op, float *y, const float *x, const float *slope, int64_t outer,
                   int64_t dim, int64_t inner) {
    static const float leak = 0.01f;
    const int64_t n = outer * dim * inner;
    switch (path) {
    case EX_REF:
        switch (op) {
        case 0: mi_softmax_ref(y, x, outer, dim, inner); break;
        case 1: mi_log_softmax_ref(y, x, outer, dim, inner); break;
        case 2: mi_sigmoid_ref(y, x, n); break;
        case 3: mi_relu_ref(y, x, n); break;
        case 4: mi_prelu_ref(y, x, slope, dim, outer, dim, inner); break;
        default: mi_prelu_ref(y, x, &leak, 1, outer, dim, inner); break;
        }
        return true;
    case EX_FAST:
#if defined(MI_TEST_SIMD)
        if (!simd()) return false;
        switch (op) {
        case 0: FAST(mi_softmax)(y, x, outer, dim, inner); break;
        case 1: FAST(mi_log_softmax)(y, x, outer, dim, inner); break;
        case 2: FAST(mi_sigmoid)(y, x, n); break;
        case 3: FAST(mi_relu)(y, x, n); break;
        case 4: FAST(mi_prelu)(y, x, slope, dim, outer, dim, inner); break;
        default: FAST(mi_prelu)(y, x, &leak, 1, outer, dim, inner); break;
        }
        return true;
#else
        return false;
#endif
    default:
        switch (op) {
        case 0: mi_softmax(y, x, outer, dim, inner); break;
        case 1: mi_log_softmax(y, x, outer, dim, inner); break;
        case 2: mi_sigmoid(y, x, n); break;
        case 3: mi_relu(y, x, n); break;
        case 4: mi_prelu(y, x, slope, dim, outer, dim, inner); break;
        default: mi_prelu(y, x, &leak, 1, outer, dim, inner); break;
        }
        return true;
    }
}

#define EX_OPS 6
static const char *const EX_OP_NAME[EX_OPS] = { "softmax", "log_softmax", "sigmoid", "relu", "prelu", "leaky_relu" };
static const char *const EX_OP_KEY[EX_OPS] = { "softmax", "log_softmax", "sigmoid", "relu", "prelu", "leaky" };
/* Against torch: relu, prelu and leaky_relu are one select and one multiply, as in torch: exact.
 * sigmoid, softmax: 1e-6 absolute. log_softmax: 1e-6 absolute, the bar the SIMD kernels are
 * held to against the reference below (our exp and torch's differ in the last bit, and the
 * outputs of the extreme rows are moderate wherever they are not exact). */
static const double EX_ATOL_TORCH[EX_OPS] = { 1e-6, 1e-6, 1e-6, 0, 0, 0 };

START_TEST(act_extreme_matches_torch)
{
    mi_weights w;
    mi_fixture_open(&w, "ops_act_extreme.safetensors");
    bool bad = false;
    for (int i = 0; i < ncases(&w); i++) {
        mi_tensor x = ct(&w, i, "x"), p = ct(&w, i, "p"), slope = ct(&w, i, "slope");
        const int64_t outer = (int64_t)p.data[0], dim = (int64_t)p.data[1], inner = (int64_t)p.data[2];
        const int64_t n = outer * dim * inner;
        const char *kind = EXTREME_KINDS[i / 2];
        float *y = alloc_f(n);
        for (int op = 0; op < EX_OPS; op++) {
            mi_tensor want = ct(&w, i, EX_OP_KEY[op]);
            for (int path = 0; path < EX_PATHS; path++) {
                for (int64_t j = 0; j < n; j++) y[j] = 12345.0f;   /* unwritten elements fail */
                if (!ex_run(path, op, y, x.data, slope.data, outer, dim, inner)) continue;
                char what[64];
                snprintf(what, sizeof what, "%s %s %s", EX_OP_NAME[op], EX_PATH_NAME[path], inner == 1 ? "rows" : "cols");
                const double e = extreme_err(y, want.data, n, EX_ATOL_TORCH[op], what, kind, &bad);
                printf("extreme vs torch %-28s %-10s max |err| %.3g\n", what, kind, e);
            }
        }
        mi_free_aligned(y);
    }
    mi_weights_close(&w);
    ck_assert_msg(!bad, "an activation differs from torch at an extreme range (see above)");
}
END_TEST

/* The SIMD kernels against the scalar reference on the same tensors: relu, prelu and leaky_relu
 * bit for bit; softmax, log_softmax and sigmoid within 1e-6 absolute on every element, NaN and
 * Inf in the same places. */
START_TEST(act_extreme_fast_vs_ref)
{
    SIMD_SKIP();
    mi_weights w;
    mi_fixture_open(&w, "ops_act_extreme.safetensors");
    bool bad = false;
    for (int i = 0; i < ncases(&w); i++) {
        mi_tensor x = ct(&w, i, "x"), p = ct(&w, i, "p"), slope = ct(&w, i, "slope");
        const int64_t outer = (int64_t)p.data[0], dim = (int64_t)p.data[1], inner = (int64_t)p.data[2];
        const int64_t n = outer * dim * inner;
        const char *kind = EXTREME_KINDS[i / 2];
        float *r = alloc_f(n), *f = alloc_f(n);
        for (int op = 0; op < EX_OPS; op++) {
            ex_run(EX_REF, op, r, x.data, slope.data, outer, dim, inner);
            ex_run(EX_FAST, op, f, x.data, slope.data, outer, dim, inner);
            char what[64];
            snprintf(what, sizeof what, "%s %s %s", EX_OP_NAME[op], EX_PATH_NAME[EX_FAST], inner == 1 ? "rows" : "cols");
            if (op >= 3) assert_same_bits(r, f, n, what, n);
            const double e = extreme_err(f, r, n, 1e-6, what, kind, &bad);
            printf("extreme %s vs ref %-25s %-10s max |err| %.3g\n", EX_PATH_NAME[EX_FAST], what, kind, e);
        }
        mi_free_aligned(r);
        mi_free_aligned(f);
    }
    mi_weights_close(&w);
    ck_assert_msg(!bad, "a SIMD activation differs from the reference at an extreme range (see above)");
}
END_TEST

typedef struct { const float *x, *s; int64_t n, outer, dim, inner; } act_ctx;
static void run_relu(const void *c, float *y) { const act_ctx *a = c; mi_relu(y, a->x, a->n); }
static void run_prelu(const void *c, float *y) { const act_ctx *a = c; mi_prelu(y, a->x, a->s, 8, 4, 8, a->n / 32); }
static void run_add_prelu(const void *c, float *y) {
    const act_ctx *a = c;
    mi_add_prelu(y, a->x, a->x, 2, a->s, 8, 4, 8, a->n / 32);   /* the residual's 2 channels in turn */
}
static void run_sigmoid(const void *c, float *y) { const act_ctx *a = c; mi_sigmoid(y, a->x, a->n); }
static void run_softmax(const void *c, float *y) { const act_ctx *a = c; mi_softmax(y, a->x, a->outer, a->dim, a->inner); }
static void run_log_softmax(const void *c, float *y) { const act_ctx *a = c; mi_log_softmax(y, a->x, a->outer, a->dim, a->inner); }

START_TEST(act_threads_same_bits)
{
    const int64_t n = 32 * 4099;  /* above every parallel threshold, odd per-thread split */
    float *x = random_f(n, 3), *s = random_f(8, 4);
    act_ctx c = { x, s, n, 5, 1000, 1 };   /* 5 x 1000 logits: past the row-wise softmax's 4096 */
    check_threads(run_relu, &c, n, "relu");
    check_threads(run_prelu, &c, n, "prelu");
    check_threads(run_add_prelu, &c, n, "add_prelu");
    check_threads(run_sigmoid, &c, n, "sigmoid");
    check_threads(run_softmax, &c, 5000, "softmax over logits");
    c = (act_ctx){ x, s, n, 2, 5, 4099 };
    check_threads(run_softmax, &c, 2 * 5 * 4099, "softmax over channels");
    check_threads(run_log_softmax, &c, 2 * 5 * 4099, "log_softmax over channels");
    mi_free_aligned(x); mi_free_aligned(s);
}
END_TEST

/* ---- pooling --------------------------------------------------------------------------- */

static mi_pool_desc desc_from(const mi_tensor *p) {
    const float *v = p->data;
    mi_pool_desc d = { .sp = (int)v[0] };
    for (int i = 0; i < 3; i++) {
        d.k[i] = (int64_t)v[1 + i];
        d.stride[i] = (int64_t)v[4 + i];
        d.pad[i] = (int64_t)v[7 + i];
        d.dil[i] = (int64_t)v[10 + i];
    }
    d.ceil_mode = v[13] != 0;
    d.count_include_pad = v[14] != 0;
    return d;
}

START_TEST(pool_matches_torch)
{
    mi_weights w;
    mi_fixture_open(&w, "ops_pool.safetensors");
    double emax = 0, eavg = 0;
    int navg = 0;
    for (int i = 0; i < ncases(&w); i++) {
        mi_tensor x = ct(&w, i, "x"), p = ct(&w, i, "p"), mx = ct(&w, i, "max");
        mi_pool_desc d = desc_from(&p);
        int64_t shape[MI_MAX_DIMS];
        ck_assert_msg(mi_pool_out_shape(&d, &x, shape) == MI_OK, "case %d: %s", i, mi_last_error());
        for (int k = 0; k < x.ndim; k++) ck_assert_int_eq(shape[k], mx.shape[k]);
        mi_tensor y = out_like(&mx);
        mi_max_pool_ref(&y, &x, &d);
        emax = fmax(emax, mi_assert_close(y.data, mx.data, mi_tensor_numel(&mx), 0, 0, mx.name));
        mi_max_pool(&y, &x, &d);
        emax = fmax(emax, mi_assert_close(y.data, mx.data, mi_tensor_numel(&mx), 0, 0, mx.name));
        if (has(&w, i, "avg")) {
            mi_tensor av = ct(&w, i, "avg");
            mi_avg_pool(&y, &x, &d);
            eavg = fmax(eavg, mi_assert_close(y.data, av.data, mi_tensor_numel(&av), 1e-6, 0, av.name));
            navg++;
        }
        mi_free_aligned(y.data);
    }
    ck_assert_int_ge(navg, 10);
    report("max pool", emax);
    report("avg pool", eavg);
    mi_weights_close(&w);
}
END_TEST

START_TEST(pool_rejects_bad_input)
{
    float buf[2 * 3 * 4 * 4] = { 0 };
    int64_t s4[4] = { 2, 3, 4, 4 }, s3[3] = { 3, 4, 4 }, out[MI_MAX_DIMS];
    mi_tensor x = mi_tensor_view(buf, 4, s4, "layer.in");
    mi_pool_desc d = mi_pool2d_desc(3, 2, 1);
    ck_assert_int_eq(mi_pool_out_shape(&d, &x, out), MI_OK);
    ck_assert_int_eq(out[2], 2);
    d.k[1] = d.k[2] = 7;  /* 4 + 2 - 7 < 0: output empty, as torch refuses */
    ck_assert_int_eq(mi_pool_out_shape(&d, &x, out), MI_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "layer.in"));
    d = mi_pool2d_desc(3, 2, 2);  /* pad > k/2 */
    ck_assert_int_eq(mi_pool_out_shape(&d, &x, out), MI_ERR_ARG);
    d = mi_pool2d_desc(3, 0, 1);
    ck_assert_int_eq(mi_pool_out_shape(&d, &x, out), MI_ERR_ARG);
    d = mi_pool2d_desc(3, 2, 1);
    mi_tensor x3 = mi_tensor_view(buf, 3, s3, "flat");
    ck_assert_int_eq(mi_pool_out_shape(&d, &x3, out), MI_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "[3,4,4]"));
}
END_TEST

START_TEST(adaptive_pool_matches_torch)
{
    mi_weights w;
    mi_fixture_open(&w, "ops_adaptive.safetensors");
    double ea = 0, eg = 0;
    for (int i = 0; i < ncases(&w); i++) {
        mi_tensor x = ct(&w, i, "x"), ref = ct(&w, i, "y");
        mi_tensor y = out_like(&ref);
        mi_adaptive_avg_pool(&y, &x);
        ea = fmax(ea, mi_assert_close(y.data, ref.data, mi_tensor_numel(&ref), 1e-6, 0, ref.name));
        bool global = true;
        for (int k = 2; k < ref.ndim; k++) global = global && ref.shape[k] == 1;
        if (global) {
            mi_global_avg_pool(&y, &x);
            eg = fmax(eg, mi_assert_close(y.data, ref.data, mi_tensor_numel(&ref), 1e-6, 0, "global avg pool"));
        }
        mi_free_aligned(y.data);
    }
    report("adaptive avg pool", ea);
    report("global avg pool", eg);
    mi_weights_close(&w);
}
END_TEST

START_TEST(max_pool_fast_equals_ref)
{
    SIMD_SKIP();
#if defined(MI_TEST_SIMD)
    static const int64_t kp[][3] = { { 3, 2, 1 }, { 2, 2, 0 }, { 3, 1, 1 }, { 1, 2, 0 }, { 5, 2, 2 }, { 4, 1, 0 } };
    for (size_t c = 0; c < sizeof kp / sizeof *kp; c++)
        for (int t = 0; t < NLENS; t++)
            for (int ceil = 0; ceil < 2; ceil++) {
                const int64_t W = (t + 1) * kp[c][1] + kp[c][0] + 3;  /* t + 1 or more output columns */
                int64_t xs[4] = { 2, 3, 9, W }, ys[MI_MAX_DIMS];
                mi_pool_desc d = mi_pool2d_desc(kp[c][0], kp[c][1], kp[c][2]);
                d.ceil_mode = ceil;
                mi_tensor x = mi_tensor_view(random_f(2 * 3 * 9 * W, (uint64_t)(t * 10 + c)), 4, xs, "x");
                x.data[5] = NAN;  /* NaN propagates the same way in both */
                x.data[W + 7] = NAN;
                /* which of several NaNs, and which of +0 and -0, a window keeps: NaNs with
                 * different payloads in neighbouring rows and columns, and a plane of zeros of
                 * both signs */
                for (int k = 0; k < 6; k++) {
                    const uint32_t bits = 0x7fc00001u + (uint32_t)k;
                    memcpy(&x.data[9 * W + (k % 2) * W + 3 + k], &bits, sizeof bits);
                }
                for (int64_t i = 0; i < 9 * W; i++) x.data[2 * 9 * W + i] = i % 3 ? 0.0f : -0.0f;
                ck_assert_int_eq(mi_pool_out_shape(&d, &x, ys), MI_OK);
                mi_tensor a = mi_tensor_view(NULL, 4, ys, "ref"), b = a;
                a.data = alloc_f(mi_tensor_numel(&a));
                b.data = alloc_f(mi_tensor_numel(&b));
                mi_max_pool_ref(&a, &x, &d);
                FAST(mi_max_pool)(&b, &x, &d);
                assert_same_bits(a.data, b.data, mi_tensor_numel(&a), "max pool", W);
                mi_free_aligned(x.data); mi_free_aligned(a.data); mi_free_aligned(b.data);
            }
#endif
}
END_TEST

/* The AVX-512 stem pool (3x3, stride 2, padding 1): every width from 1 to 70 (its first, middle
 * and last 16-column blocks, the columns past the last full window) and heights 1 to 6, both
 * rounding modes, with NaNs of different payloads side by side and a plane of zeros of both
 * signs (which candidate a window keeps), bit for bit against the reference; any other pool is
 * left to the AVX2 kernel. */
#if defined(__x86_64__)
/* x pooled by the reference and by the AVX-512 kernel, the same bits; frees x */
static void pool_avx512_case(mi_tensor *x, const mi_pool_desc *d, const char *what, int64_t id) {
    int64_t ys[MI_MAX_DIMS];
    ck_assert_int_eq(mi_pool_out_shape(d, x, ys), MI_OK);
    mi_tensor a = mi_tensor_view(NULL, 4, ys, "ref"), b = a;
    a.data = alloc_f(mi_tensor_numel(&a));
    b.data = alloc_f(mi_tensor_numel(&b));
    mi_max_pool_ref(&a, x, d);
    ck_assert_int_eq(mi_max_pool_avx512(&b, x, d), 1);
    assert_same_bits(a.data, b.data, mi_tensor_numel(&a), what, id);
    mi_free_aligned(x->data); mi_free_aligned(a.data); mi_free_aligned(b.data);
}
#endif

START_TEST(max_pool_avx512_equals_ref)
{
#if defined(__x86_64__)
    if (mi_cpu_isa() < MI_ISA_AVX512) MI_SKIP("no AVX-512 on this CPU");
    int64_t ran = 0;
    for (int64_t W = 1; W <= 70; W++)
        for (int64_t H = 1; H <= 6; H++)
            for (int ceil = 0; ceil < 2; ceil++) {
                int64_t xs[4] = { 1, 3, H, W };
                mi_pool_desc d = mi_pool2d_desc(3, 2, 1);
                d.ceil_mode = ceil;
                mi_tensor x = mi_tensor_view(random_f(3 * H * W, (uint64_t)(W * 8 + H)), 4, xs, "x");
                for (int k = 0; k < 6 && k < H * W; k++) {
                    const uint32_t bits = 0x7fc00001u + (uint32_t)k;
                    memcpy(&x.data[(k * 7) % (H * W)], &bits, sizeof bits);
                }
                for (int64_t i = 0; i < H * W; i++) x.data[2 * H * W + i] = i % 3 ? 0.0f : -0.0f;
                pool_avx512_case(&x, &d, "max pool avx512", W * 100 + H);
                ran++;
            }
    ck_assert_int_eq(ran, 70 * 6 * 2);
    /* rows wider than the kernel's column block (8 vectors of 16 outputs: 256 input columns) */
    static const int64_t wide[] = { 255, 256, 257, 258, 290, 513 };
    for (int i = 0; i < 6; i++) {
        int64_t xs[4] = { 1, 2, 5, wide[i] };
        const mi_pool_desc d = mi_pool2d_desc(3, 2, 1);
        mi_tensor x = mi_tensor_view(random_f(2 * 5 * wide[i], (uint64_t)wide[i]), 4, xs, "x");
        x.data[3 * wide[i] + 250] = NAN;
        pool_avx512_case(&x, &d, "max pool avx512, wide rows", wide[i]);
    }
    int64_t xs[4] = { 1, 1, 8, 8 }, ys[4] = { 1, 1, 4, 4 };
    mi_tensor x = mi_tensor_view(NULL, 4, xs, "x"), y = mi_tensor_view(NULL, 4, ys, "y");
    const mi_pool_desc other = mi_pool2d_desc(2, 2, 0);
    ck_assert_int_eq(mi_max_pool_avx512(&y, &x, &other), 0);
#else
    MI_SKIP("x86-64 only");
#endif
}
END_TEST

typedef struct { mi_tensor x; mi_pool_desc d; int64_t ys[MI_MAX_DIMS]; int which; } pool_ctx;
static void run_pool(const void *c, float *out) {
    const pool_ctx *p = c;
    mi_tensor y = mi_tensor_view(out, p->x.ndim, p->ys, "y");
    if (p->which == 0) mi_max_pool(&y, &p->x, &p->d);
    else if (p->which == 1) mi_avg_pool(&y, &p->x, &p->d);
    else if (p->which == 2) mi_adaptive_avg_pool(&y, &p->x);
    else mi_global_avg_pool(&y, &p->x);
}

/* Each kernel splits among threads only past 16384 outputs (inputs for the global pool): the
 * maps are sized past that, so that more threads do split the work. */
START_TEST(pool_threads_same_bits)
{
    int64_t xs[4] = { 2, 33, 45, 31 };
    pool_ctx c = { .x = mi_tensor_view(random_f(2 * 33 * 45 * 31, 9), 4, xs, "x"), .d = mi_pool2d_desc(3, 2, 1) };
    ck_assert_int_eq(mi_pool_out_shape(&c.d, &c.x, c.ys), MI_OK);
    const int64_t n = 2 * 33 * c.ys[2] * c.ys[3];
    ck_assert_int_gt(n, 16384);
    check_threads(run_pool, &c, n, "max pool");
    c.which = 1;
    c.d.count_include_pad = false;
    check_threads(run_pool, &c, n, "avg pool");
    c.which = 3;
    c.ys[2] = 1; c.ys[3] = 1;
    check_threads(run_pool, &c, 2 * 33, "global avg pool");
    mi_free_aligned(c.x.data);
    int64_t as[4] = { 2, 300, 29, 31 };
    c.x = mi_tensor_view(random_f(2 * 300 * 29 * 31, 10), 4, as, "x");
    c.which = 2;
    c.ys[0] = 2; c.ys[1] = 300; c.ys[2] = 5; c.ys[3] = 6;
    check_threads(run_pool, &c, 2 * 300 * 30, "adaptive avg pool");
    mi_free_aligned(c.x.data);
}
END_TEST

/* ---- resize ---------------------------------------------------------------------------- */

START_TEST(resize_matches_torch)
{
    mi_weights w;
    mi_fixture_open(&w, "ops_resize.safetensors");
    double en = 0, el = 0;
    for (int i = 0; i < ncases(&w); i++) {
        mi_tensor x = ct(&w, i, "x"), p = ct(&w, i, "p"), ref = ct(&w, i, "y");
        const bool linear = p.data[0] != 0, ac = p.data[1] != 0, by_scale = p.data[2] != 0;
        double scale[3];
        for (int k = 0; k < x.ndim - 2; k++) scale[k] = p.data[3 + k];
        if (by_scale) {  /* our output size for a scale factor is torch's */
            int64_t shape[MI_MAX_DIMS];
            ck_assert_int_eq(mi_resize_out_shape(&x, scale, shape), MI_OK);
            for (int k = 0; k < x.ndim; k++) ck_assert_int_eq(shape[k], ref.shape[k]);
        }
        mi_tensor y = out_like(&ref);
        if (linear) {
            mi_resize_linear(&y, &x, ac, by_scale ? scale : NULL);
            el = fmax(el, mi_assert_close(y.data, ref.data, mi_tensor_numel(&ref), 1e-6, 0, ref.name));
        } else {
            mi_resize_nearest(&y, &x, by_scale ? scale : NULL);
            en = fmax(en, mi_assert_close(y.data, ref.data, mi_tensor_numel(&ref), 0, 0, ref.name));
        }
        mi_free_aligned(y.data);
    }
    report("nearest", en);
    report("bilinear/trilinear", el);
    double bad[2] = { 0.0, 2.0 };
    int64_t out[MI_MAX_DIMS];
    mi_tensor x = ct(&w, 0, "x");
    ck_assert_int_eq(mi_resize_out_shape(&x, bad, out), MI_ERR_ARG);
    mi_weights_close(&w);
}
END_TEST

typedef struct { mi_tensor x; int64_t ys[MI_MAX_DIMS]; int linear; } resize_ctx;
static void run_resize(const void *c, float *out) {
    const resize_ctx *r = c;
    mi_tensor y = mi_tensor_view(out, r->x.ndim, r->ys, "y");
    if (r->linear) mi_resize_linear(&y, &r->x, false, NULL);
    else mi_resize_nearest(&y, &r->x, NULL);
}

START_TEST(resize_threads_same_bits)
{
    int64_t xs[5] = { 1, 3, 7, 19, 23 };
    resize_ctx c = { .x = mi_tensor_view(random_f(3 * 7 * 19 * 23, 11), 5, xs, "x"), .ys = { 1, 3, 13, 41, 300 } };
    const int64_t n = 3 * 13 * 41 * 300;
    check_threads(run_resize, &c, n, "nearest 3-D");
    c.linear = 1;
    check_threads(run_resize, &c, n, "trilinear");
    int64_t xs2[4] = { 2, 5, 37, 41 };   /* 2-D, output wider than one column table (CHUNK) */
    resize_ctx d = { .x = mi_tensor_view(random_f(2 * 5 * 37 * 41, 12), 4, xs2, "x"), .ys = { 2, 5, 29, 1500 } };
    check_threads(run_resize, &d, 2 * 5 * 29 * 1500, "nearest 2-D");
    d.linear = 1;
    check_threads(run_resize, &d, 2 * 5 * 29 * 1500, "bilinear");
    mi_free_aligned(d.x.data);
    mi_free_aligned(c.x.data);
}
END_TEST

/* ---- elementwise ----------------------------------------------------------------------- */

START_TEST(elementwise_matches_torch)
{
    mi_weights w;
    mi_fixture_open(&w, "ops_elementwise.safetensors");
    mi_tensor a = mi_fixture_tensor(&w, "a"), b = mi_fixture_tensor(&w, "b");
    mi_tensor cb = mi_fixture_tensor(&w, "cb"), cs = mi_fixture_tensor(&w, "cs");
    mi_tensor add = mi_fixture_tensor(&w, "add"), mul = mi_fixture_tensor(&w, "mul");
    mi_tensor add_relu = mi_fixture_tensor(&w, "add_relu");
    mi_tensor add_ch = mi_fixture_tensor(&w, "add_channel"), mul_ch = mi_fixture_tensor(&w, "mul_channel");
    const int64_t n = mi_tensor_numel(&a), N = a.shape[0], C = a.shape[1], inner = a.shape[2] * a.shape[3];
    mi_tensor y = out_like(&a);
    for (int fast = 0; fast < 2; fast++) {
        if (fast) mi_add(y.data, a.data, b.data, n); else mi_add_ref(y.data, a.data, b.data, n);
        mi_assert_close_t(&y, &add, 0, 0);
        if (fast) mi_mul(y.data, a.data, b.data, n); else mi_mul_ref(y.data, a.data, b.data, n);
        mi_assert_close_t(&y, &mul, 0, 0);
        if (fast) mi_add_relu(y.data, a.data, b.data, n); else mi_add_relu_ref(y.data, a.data, b.data, n);
        mi_assert_close_t(&y, &add_relu, 0, 0);
        if (fast) mi_add_channel(y.data, a.data, cb.data, N, C, inner);
        else mi_add_channel_ref(y.data, a.data, cb.data, N, C, inner);
        mi_assert_close_t(&y, &add_ch, 0, 0);
        if (fast) mi_mul_channel(y.data, a.data, cs.data, N, C, inner);
        else mi_mul_channel_ref(y.data, a.data, cs.data, N, C, inner);
        mi_assert_close_t(&y, &mul_ch, 0, 0);
    }
    memcpy(y.data, a.data, (size_t)n * sizeof(float));
    mi_add_(&y, &b);       mi_assert_close_t(&y, &add, 0, 0);
    memcpy(y.data, a.data, (size_t)n * sizeof(float));
    mi_add_relu_(&y, &b);  mi_assert_close_t(&y, &add_relu, 0, 0);
    mi_free_aligned(y.data);

    for (int dim = 0; dim <= 4; dim++) {  /* dim 4 stands for the 5-D channel concat */
        char name[32];
        const mi_tensor *xs[3];
        mi_tensor parts[3];
        int np = dim == 4 ? 2 : 3;
        for (int j = 0; j < np; j++) {
            if (dim == 4) snprintf(name, sizeof name, "cat5d.%d", j);
            else snprintf(name, sizeof name, "cat%d.%d", dim, j);
            parts[j] = mi_fixture_tensor(&w, name);
            xs[j] = &parts[j];
        }
        if (dim == 4) snprintf(name, sizeof name, "cat5d"); else snprintf(name, sizeof name, "cat%d", dim);
        mi_tensor ref = mi_fixture_tensor(&w, name);
        int64_t shape[MI_MAX_DIMS];
        const int cdim = dim == 4 ? 1 : dim;
        ck_assert_int_eq(mi_concat_out_shape(shape, xs, np, cdim), MI_OK);
        for (int k = 0; k < ref.ndim; k++) ck_assert_int_eq(shape[k], ref.shape[k]);
        mi_tensor yc = out_like(&ref);
        mi_concat_t(&yc, xs, np, cdim);
        mi_assert_close_t(&yc, &ref, 0, 0);
        if (dim == 1) {  /* a mismatch in another dim is an input error naming the tensor */
            int64_t out[MI_MAX_DIMS];
            mi_tensor bad = parts[1];
            bad.shape[2] -= 1;
            snprintf(bad.name, sizeof bad.name, "skip.2");
            const mi_tensor *bx[2] = { &parts[0], &bad };
            ck_assert_int_eq(mi_concat_out_shape(out, bx, 2, 1), MI_ERR_SHAPE);
            ck_assert_ptr_nonnull(strstr(mi_last_error(), "skip.2"));
            ck_assert_int_eq(mi_concat_out_shape(out, bx, 2, 4), MI_ERR_ARG);
        }
        mi_free_aligned(yc.data);
    }
    mi_weights_close(&w);
}
END_TEST

START_TEST(elementwise_fast_equals_ref)
{
    SIMD_SKIP();
#if defined(MI_TEST_SIMD)
    for (int t = 0; t < NLENS; t++) {
        const int64_t inner = t + 1, N = 2, C = 3, n = N * C * inner;
        float *a = random_f(n, 200 + t), *b = random_f(n, 300 + t), *v = random_f(C, 5);
        float *r = alloc_f(n), *f = alloc_f(n);
        for (int64_t i = 0; i < n; i++) {   /* NaN, Inf and -0 (ReLU must keep -0 + -0 = -0) */
            if (i % 7 == 3) a[i] = NAN;
            if (i % 11 == 5) b[i] = INFINITY;
            if (i % 13 == 6) a[i] = b[i] = -0.0f;
        }
        v[1] = -INFINITY;
        mi_add_ref(r, a, b, n);       FAST(mi_add)(f, a, b, n);       assert_same_bits(r, f, n, "add", n);
        mi_mul_ref(r, a, b, n);       FAST(mi_mul)(f, a, b, n);       assert_same_bits(r, f, n, "mul", n);
        mi_add_relu_ref(r, a, b, n);  FAST(mi_add_relu)(f, a, b, n);  assert_same_bits(r, f, n, "add_relu", n);
        mi_add_channel_ref(r, a, v, N, C, inner);  FAST(mi_add_channel)(f, a, v, N, C, inner);
        assert_same_bits(r, f, n, "add_channel", inner);
        mi_mul_channel_ref(r, a, v, N, C, inner);  FAST(mi_mul_channel)(f, a, v, N, C, inner);
        assert_same_bits(r, f, n, "mul_channel", inner);
        memcpy(f, a, (size_t)n * sizeof(float));   /* in place, as mi_add_relu_ uses it */
        FAST(mi_add_relu)(f, f, b, n);
        mi_add_relu_ref(r, a, b, n);
        assert_same_bits(r, f, n, "add_relu in place", n);
        mi_free_aligned(a); mi_free_aligned(b); mi_free_aligned(v); mi_free_aligned(r); mi_free_aligned(f);
    }
#endif
}
END_TEST

typedef struct { const float *a, *b, *v; int64_t n; int op; } ew_ctx;
static void run_ew(const void *c, float *y) {
    const ew_ctx *e = c;
    switch (e->op) {
    case 0: mi_add(y, e->a, e->b, e->n); break;
    case 1: mi_mul(y, e->a, e->b, e->n); break;
    case 2: mi_add_relu(y, e->a, e->b, e->n); break;
    case 3: mi_add_channel(y, e->a, e->v, 4, 16, e->n / 64); break;
    default: mi_mul_channel(y, e->a, e->v, 4, 16, e->n / 64); break;
    }
}

START_TEST(elementwise_threads_same_bits)
{
    const int64_t n = 64 * 1031;
    float *a = random_f(n, 1), *b = random_f(n, 2), *v = random_f(16, 3);
    static const char *names[] = { "add", "mul", "add_relu", "add_channel", "mul_channel" };
    for (int op = 0; op < 5; op++) {
        ew_ctx c = { a, b, v, n, op };
        check_threads(run_ew, &c, n, names[op]);
    }
    mi_free_aligned(a); mi_free_aligned(b); mi_free_aligned(v);
}
END_TEST

/* ---- linear, matmul -------------------------------------------------------------------- */

START_TEST(linear_matches_torch)
{
    mi_weights w;
    mi_fixture_open(&w, "ops_linear.safetensors");
    double er = 0, ef = 0;
    for (int i = 0; i < ncases(&w); i++) {
        mi_tensor x = ct(&w, i, "x"), wt = ct(&w, i, "w"), p = ct(&w, i, "p"), ref = ct(&w, i, "y");
        const float *b = has(&w, i, "b") ? ct(&w, i, "b").data : NULL;
        const int64_t n = (int64_t)p.data[0], in = (int64_t)p.data[1], out = (int64_t)p.data[2];
        ck_assert_int_eq(p.data[3] != 0, b != NULL);
        mi_tensor y = out_like(&ref);
        mi_linear_ref(y.data, x.data, wt.data, b, n, in, out);
        er = fmax(er, mi_assert_close(y.data, ref.data, n * out, 1e-5, 1e-5, ref.name));
        mi_linear(y.data, x.data, wt.data, b, n, in, out);
        ef = fmax(ef, mi_assert_close(y.data, ref.data, n * out, 1e-5, 1e-5, ref.name));
        mi_free_aligned(y.data);
    }
    report("linear ref", er);
    report("linear fast", ef);
    mi_weights_close(&w);
}
END_TEST

/* mi_linear's AVX-512 register tile against the AVX2 one, bit for bit: rows around the
 * streaming/blocked boundary and every part of the 4- and 6-row tiles, outputs around the 3- and
 * 4-output tiles (each remainder), `in`
 * with every tail step and over several K blocks, and a detector's box-head shape (smaller). */
START_TEST(linear_avx512_same_bits_as_avx2)
{
#if defined(__x86_64__)
    if (mi_cpu_isa() < MI_ISA_AVX512) MI_SKIP("no AVX-512 on this CPU");
    static const int64_t shapes[][3] = {   /* rows, in, out */
        { 1, 37, 13 }, { 2, 1037, 50 }, { 7, 1037, 50 }, { 8, 16, 1 }, { 9, 23, 7 }, { 13, 600, 11 }, { 17, 1029, 13 },
        { 12, 200, 6 }, { 20, 64, 14 }, { 101, 1037, 50 }, { 64, 4099, 97 },
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t rows = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        float *x = random_f(rows * in, 40 + s), *w = random_f(out * in, 50 + s), *b = random_f(out, 60 + s);
        float *a = alloc_f(rows * out), *v = alloc_f(rows * out);
        for (int bias = 0; bias < 2; bias++) {
            mi_linear_avx2(a, x, w, bias ? b : NULL, rows, in, out);
            mi_linear_avx512(v, x, w, bias ? b : NULL, rows, in, out);
            assert_same_bits(a, v, rows * out, "linear avx512 vs avx2", rows * 100000 + in);
        }
        mi_free_aligned(x); mi_free_aligned(w); mi_free_aligned(b); mi_free_aligned(a); mi_free_aligned(v);
    }
#else
    MI_SKIP("x86-64 only");
#endif
}
END_TEST

START_TEST(matmul_matches_torch)
{
    mi_weights w;
    mi_fixture_open(&w, "ops_matmul.safetensors");
    double e = 0;
    for (int i = 0; i < ncases(&w); i++) {
        mi_tensor a = ct(&w, i, "a"), b = ct(&w, i, "b"), p = ct(&w, i, "p"), ref = ct(&w, i, "c");
        const int64_t M = (int64_t)p.data[0], K = (int64_t)p.data[1], N = (int64_t)p.data[2];
        mi_tensor c = out_like(&ref);
        mi_matmul_ref(c.data, a.data, b.data, M, K, N);
        e = fmax(e, mi_assert_close(c.data, ref.data, M * N, 1e-5, 1e-5, ref.name));
        mi_matmul(c.data, a.data, b.data, M, K, N);
        e = fmax(e, mi_assert_close(c.data, ref.data, M * N, 1e-5, 1e-5, ref.name));
        mi_free_aligned(c.data);
    }
    report("matmul", e);
    mi_weights_close(&w);
}
END_TEST

START_TEST(linear_matmul_fast_vs_ref)
{
    SIMD_SKIP();
#if defined(MI_TEST_SIMD)
    for (int t = 0; t < NLENS; t++)
        for (int64_t rows = 1; rows <= 6; rows++) {
            /* linear: in = tail size (the 16/8/scalar steps), rows 1..6 (4-row blocks + rest) */
            const int64_t in = t + 1, out = 13;
            float *x = random_f(rows * in, (uint64_t)(t * 7 + rows)), *w = random_f(out * in, 77);
            float *b = random_f(out, 78), *r = alloc_f(rows * out), *f = alloc_f(rows * out), *one = alloc_f(out);
            mi_linear_ref(r, x, w, b, rows, in, out);
            FAST(mi_linear)(f, x, w, b, rows, in, out);
            mi_assert_close(f, r, rows * out, 1e-5, 1e-5, "linear " FAST_NAME " vs ref");
            for (int64_t k = 0; k < rows; k++) {  /* a row's bits do not depend on its batch */
                FAST(mi_linear)(one, x + k * in, w, b, 1, in, out);
                assert_same_bits(one, f + k * out, out, "linear row alone vs in batch", in);
            }
            mi_linear_ref(r, x, w, NULL, rows, in, out);
            FAST(mi_linear)(f, x, w, NULL, rows, in, out);
            mi_assert_close(f, r, rows * out, 1e-5, 1e-5, "linear " FAST_NAME " vs ref, no bias");
            mi_free_aligned(x); mi_free_aligned(w); mi_free_aligned(b);
            mi_free_aligned(r); mi_free_aligned(f); mi_free_aligned(one);
        }
    {   /* many rows: the cache-blocked path (row and output blocks with remainders, K blocks, every
           tail step), still a row's bits alone */
        const int64_t rows = 101, in = 1037, out = 50;
        float *x = random_f(rows * in, 11), *w = random_f(out * in, 12), *b = random_f(out, 13);
        float *r = alloc_f(rows * out), *f = alloc_f(rows * out), *one = alloc_f(out);
        mi_linear_ref(r, x, w, b, rows, in, out);
        FAST(mi_linear)(f, x, w, b, rows, in, out);
        mi_assert_close(f, r, rows * out, 1e-4, 1e-5, "linear " FAST_NAME " vs ref, 101 rows");   /* in 1037: longer sums */
        for (int64_t k = 0; k < rows; k++) {
            FAST(mi_linear)(one, x + k * in, w, b, 1, in, out);
            assert_same_bits(one, f + k * out, out, "linear row alone vs in a batch of 101", in);
        }
        mi_free_aligned(x); mi_free_aligned(w); mi_free_aligned(b);
        mi_free_aligned(r); mi_free_aligned(f); mi_free_aligned(one);
    }
    for (int t = 0; t < NTAILS; t++)
        for (int u = 0; u < NTAILS; u += 3) {
            /* matmul: N = tail (32/8/scalar column steps), K varied: bit-identical */
            const int64_t M = 3, K = TAILS[u], N = TAILS[t] + (t % 2 ? 32 : 0);
            float *A = random_f(M * K, 5), *B = random_f(K * N, 6), *r = alloc_f(M * N), *f = alloc_f(M * N);
            mi_matmul_ref(r, A, B, M, K, N);
            FAST(mi_matmul)(f, A, B, M, K, N);
            assert_same_bits(r, f, M * N, "matmul", N);
            mi_free_aligned(A); mi_free_aligned(B); mi_free_aligned(r); mi_free_aligned(f);
        }
    {   /* matmul in row blocks with K blocks (a GCN layer's shape, smaller): an odd row count, K over
           three blocks, 32-column blocks then the 8-column and scalar tails - still the reference's bits */
        const int64_t M = 37, K = 300, N = 74;
        float *A = random_f(M * K, 8), *B = random_f(K * N, 9), *r = alloc_f(M * N), *f = alloc_f(M * N);
        mi_matmul_ref(r, A, B, M, K, N);
        FAST(mi_matmul)(f, A, B, M, K, N);
        assert_same_bits(r, f, M * N, "matmul 37x300x74", N);
        mi_free_aligned(A); mi_free_aligned(B); mi_free_aligned(r); mi_free_aligned(f);
    }
    {   /* matmul skipping A's zeros, the reference's bits: A mostly zeros (+0 and -0), a zero row, a
           dense row, a NaN; K in one list or two (1024 k at a time: the sums parked in C between
           them), a list ending in a scalar tail; columns in 64-wide strips, 8-wide ones and scalar
           tails. Then B with an infinity (0 * inf is NaN in the reference): the dispatcher takes
           the dense path, still the reference's bits. */
        const int64_t M = 9, Ks[] = { 300, 1100, 1100 }, Ns[] = { 75, 130, 5 };
        for (int s = 0; s < 3; s++) {
            const int64_t N = Ns[s], K = Ks[s];
            float *A = random_f(M * K, 21), *B = random_f(K * N, 22), *r = alloc_f(M * N), *f = alloc_f(M * N);
            for (int64_t i = 0; i < M * K; i++)
                if (i / K != 4 && (i * 2654435761u >> 8) % 8) A[i] = (i % 3) ? 0.0f : -0.0f;
            for (int64_t k = 0; k < K; k++) A[2 * K + k] = 0.0f;
            A[7 * K + 290] = NAN;
            mi_matmul_ref(r, A, B, M, K, N);
            mi_matmul_skip_zeros(f, A, B, M, K, N);   /* B finite: the AVX2 kernel where there is one */
            assert_same_bits(r, f, M * N, "matmul skipping zeros", N);
            /* one NaN per sum at most: where two meet, which payload wins depends on the operand
               order the compiler gives the reference's commutative add */
            A[7 * K + 290] = 0.5f;
            B[(K - 1) * N + N / 2] = INFINITY;   /* meets A[2][K-1] = 0 and others */
            mi_matmul_ref(r, A, B, M, K, N);
            mi_matmul_skip_zeros(f, A, B, M, K, N);
            assert_same_bits(r, f, M * N, "matmul skipping zeros, B with an infinity", N);
            mi_free_aligned(A); mi_free_aligned(B); mi_free_aligned(r); mi_free_aligned(f);
        }
    }
#endif
}
END_TEST

typedef struct { const float *x, *w, *b; int64_t n, in, out; } lin_ctx;
static void run_linear(const void *c, float *y) { const lin_ctx *l = c; mi_linear(y, l->x, l->w, l->b, l->n, l->in, l->out); }
static void run_linear_ref(const void *c, float *y) { const lin_ctx *l = c; mi_linear_ref(y, l->x, l->w, l->b, l->n, l->in, l->out); }
static void run_matmul(const void *c, float *y) { const lin_ctx *l = c; mi_matmul(y, l->x, l->w, l->n, l->in, l->out); }
static void run_matmul_skip(const void *c, float *y) {
    const lin_ctx *l = c;
    mi_matmul_skip_zeros(y, l->x, l->w, l->n, l->in, l->out);
}

START_TEST(linear_threads_same_bits)
{
    const int64_t n = 5, in = 2048, out = 1000;
    float *x = random_f(n * in, 1), *w = random_f(out * in, 2), *b = random_f(out, 3);
    lin_ctx c = { x, w, b, n, in, out };
    check_threads(run_linear, &c, n * out, "linear 2048->1000, batch 5");
    check_threads(run_linear_ref, &c, n * out, "linear reference");
    c = (lin_ctx){ x, w, b, 200, 40, 1000 };   /* the cache-blocked path: 3 x 21 work items */
    check_threads(run_linear, &c, 200 * 1000, "linear 40->1000, batch 200");
    c = (lin_ctx){ x, w, NULL, 37, 67, 113 };   /* 37 x 67 x 113: past the products' 2^18 threshold */
    check_threads(run_matmul, &c, 37 * 113, "matmul");
    for (int64_t i = 0; i < 37 * 67; i++)
        if (i % 5) x[i] = 0.0f;
    check_threads(run_matmul_skip, &c, 37 * 113, "matmul skipping zeros");
    mi_free_aligned(x); mi_free_aligned(w); mi_free_aligned(b);
}
END_TEST

/* MI_ISA=portable, MI_EXACT=1 and MI_ISA=ref keep every op of this file on its reference (the
 * NEON and AVX2 kernels are above the portable ceiling): the dispatched entry points give the
 * references' bits even where the SIMD kernels do not (FMA sums, polynomial exp), which this
 * checks too, so the test cannot pass by the kernels happening to agree. */
START_TEST(isa_cap_keeps_references)
{
    const char *fork = getenv("CK_FORK");
    if (fork && !strcmp(fork, "no")) MI_SKIP("needs CK_FORK: the ISA is chosen once per process");
    static const char *const env[3][2] = { { "MI_ISA", "portable" }, { "MI_EXACT", "1" }, { "MI_ISA", "ref" } };
    setenv(env[_i][0], env[_i][1], 1);
    ck_assert_int_le(mi_cpu_isa(), MI_ISA_PORTABLE);
    const int64_t n = 4, in = 2048, out = 100, rows = 8, dim = 1000;
    float *x = random_f(n * in, 1), *w = random_f(out * in, 2), *b = random_f(out, 3);
    float *l = random_f(rows * dim, 4), *r = alloc_f(rows * dim), *f = alloc_f(rows * dim);
    for (int64_t i = 0; i < rows * dim; i++) l[i] *= 20.0f;
    int differs = 0;   /* how many of the SIMD kernels, called directly, are not the reference's bits */
    mi_linear_ref(r, x, w, b, n, in, out);
    mi_linear(f, x, w, b, n, in, out);
    assert_same_bits(r, f, n * out, "linear under the cap", in);
#if defined(MI_TEST_SIMD)
    if (simd()) { FAST(mi_linear)(f, x, w, b, n, in, out); differs += memcmp(r, f, (size_t)(n * out) * sizeof(float)) != 0; }
#endif
    mi_sigmoid_ref(r, l, rows * dim);
    mi_sigmoid(f, l, rows * dim);
    assert_same_bits(r, f, rows * dim, "sigmoid under the cap", rows * dim);
#if defined(MI_TEST_SIMD)
    if (simd()) { FAST(mi_sigmoid)(f, l, rows * dim); differs += memcmp(r, f, (size_t)(rows * dim) * sizeof(float)) != 0; }
#endif
    for (int lg = 0; lg < 2; lg++) {
        (lg ? mi_log_softmax_ref : mi_softmax_ref)(r, l, rows, dim, 1);
        (lg ? mi_log_softmax : mi_softmax)(f, l, rows, dim, 1);
        assert_same_bits(r, f, rows * dim, lg ? "log_softmax under the cap" : "softmax under the cap", dim);
#if defined(MI_TEST_SIMD)
        if (simd()) {
            (lg ? FAST(mi_log_softmax) : FAST(mi_softmax))(f, l, rows, dim, 1);
            differs += memcmp(r, f, (size_t)(rows * dim) * sizeof(float)) != 0;
        }
#endif
    }
    printf("isa cap %s=%s: isa %s, the references' bits; %d of 4 SIMD kernels differ from them\n", env[_i][0],
           env[_i][1], mi_isa_name(mi_cpu_isa()), differs);
    if (simd()) ck_assert_int_gt(differs, 0);
    mi_free_aligned(x); mi_free_aligned(w); mi_free_aligned(b);
    mi_free_aligned(l); mi_free_aligned(r); mi_free_aligned(f);
}
END_TEST

/* ---- graph convolution ----------------------------------------------------------------- */

START_TEST(graph_matches_torch)
{
    mi_weights w;
    mi_fixture_open(&w, "ops_graph.safetensors");
    double en = 0, ey = 0;
    for (int i = 0; i < ncases(&w); i++) {
        mi_tensor a = ct(&w, i, "a"), ah = ct(&w, i, "a_hat"), x = ct(&w, i, "x"), wt = ct(&w, i, "w");
        mi_tensor p = ct(&w, i, "p"), ref = ct(&w, i, "y");
        const float *b = has(&w, i, "b") ? ct(&w, i, "b").data : NULL;
        const int64_t n = (int64_t)p.data[0], fi = (int64_t)p.data[1], fo = (int64_t)p.data[2];
        float *a_hat = alloc_f(n * n), *dinv = alloc_f(n), *t = alloc_f(n * fo), *y = alloc_f(n * fo);
        float *y2 = alloc_f(n * fo);
        mi_graph_normalize(a_hat, dinv, a.data, n);
        en = fmax(en, mi_assert_close(a_hat, ah.data, n * n, 1e-6, 0, ah.name));
        mi_tensor ahn = ct(&w, i, "a_hat_nl");
        float *a_hat_nl = alloc_f(n * n);
        mi_graph_normalize_no_loops(a_hat_nl, dinv, a.data, n);
        en = fmax(en, mi_assert_close(a_hat_nl, ahn.data, n * n, 1e-6, 0, ahn.name));
        if (n > 2)   /* the isolated node: no self loop, so nothing at all */
            for (int64_t j = 0; j < n; j++) ck_assert(a_hat_nl[2 * n + j] == 0.0f && a_hat_nl[j * n + 2] == 0.0f);
        mi_free_aligned(a_hat_nl);
        mi_graph_conv_ref(y, a_hat, x.data, wt.data, b, n, fi, fo, t);
        ey = fmax(ey, mi_assert_close(y, ref.data, n * fo, 1e-5, 1e-5, ref.name));
        mi_graph_conv(y2, a_hat, x.data, wt.data, b, n, fi, fo, t);
        ey = fmax(ey, mi_assert_close(y2, ref.data, n * fo, 1e-5, 1e-5, ref.name));
        mi_free_aligned(a_hat); mi_free_aligned(dinv); mi_free_aligned(t); mi_free_aligned(y); mi_free_aligned(y2);
    }
    report("graph normalize", en);
    report("graph conv", ey);
    mi_weights_close(&w);
}
END_TEST

typedef struct { const float *a, *x, *w, *b; float *t; int64_t n, fi, fo; } graph_ctx;
static void run_graph(const void *c, float *y) {
    const graph_ctx *g = c;
    mi_graph_conv(y, g->a, g->x, g->w, g->b, g->n, g->fi, g->fo, g->t);
}

START_TEST(graph_threads_same_bits)
{
    const int64_t n = 301, fi = 67, fo = 33;
    float *a = random_f(n * n, 1), *a_hat = alloc_f(n * n), *dinv = alloc_f(n), *x = random_f(n * fi, 2);
    float *w = random_f(fo * fi, 3), *b = random_f(fo, 4), *t = alloc_f(n * fo);
    for (int64_t i = 0; i < n * n; i++) a[i] = a[i] > 0.8f ? 1.0f : 0.0f;
    mi_graph_normalize(a_hat, dinv, a, n);
    graph_ctx c = { a_hat, x, w, b, t, n, fi, fo };
    check_threads(run_graph, &c, n * fo, "graph conv");
    mi_free_aligned(a); mi_free_aligned(a_hat); mi_free_aligned(dinv); mi_free_aligned(x);
    mi_free_aligned(w); mi_free_aligned(b); mi_free_aligned(t);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, act_matches_torch);
    tcase_add_test(tc, softmax_matches_torch);
    tcase_add_test(tc, act_fast_equals_ref);
    tcase_add_test(tc, act_exp_fast_vs_ref);
    tcase_add_test(tc, act_threads_same_bits);
    tcase_add_test(tc, act_extreme_matches_torch);
    tcase_add_test(tc, act_extreme_fast_vs_ref);
    tcase_add_test(tc, pool_matches_torch);
    tcase_add_test(tc, pool_rejects_bad_input);
    tcase_add_test(tc, adaptive_pool_matches_torch);
    tcase_add_test(tc, max_pool_fast_equals_ref);
    tcase_add_test(tc, max_pool_avx512_equals_ref);
    tcase_add_test(tc, pool_threads_same_bits);
    tcase_add_test(tc, resize_matches_torch);
    tcase_add_test(tc, resize_threads_same_bits);
    tcase_add_test(tc, elementwise_matches_torch);
    tcase_add_test(tc, elementwise_fast_equals_ref);
    tcase_add_test(tc, elementwise_threads_same_bits);
    tcase_add_test(tc, linear_matches_torch);
    tcase_add_test(tc, matmul_matches_torch);
    tcase_add_test(tc, linear_matmul_fast_vs_ref);
    tcase_add_test(tc, linear_avx512_same_bits_as_avx2);
    tcase_add_test(tc, linear_threads_same_bits);
    tcase_add_loop_test(tc, isa_cap_keeps_references, 0, 3);
    tcase_add_test(tc, graph_matches_torch);
    tcase_add_test(tc, graph_threads_same_bits);
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(suite)
