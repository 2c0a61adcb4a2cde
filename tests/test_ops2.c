/* tests/test_ops2.c - the ops of the depth-guided lesion segmentation networks: pad (ops/pad.c),
 * leaky_relu, elu, tanh (ops/act.c), group_norm (ops/norm.c), mul_spatial and argmax_channels
 * (ops/elementwise.c), against PyTorch (fixtures from tests/ref_ops2.py), each SIMD kernel against
 * its reference over tail sizes, and the same bits for 1, 2 and 4 threads.
 *
 * Every comparison is NaN- and Inf-aware: NaN exactly where the expected value is NaN, an infinity
 * the same infinity, and a bound on the finite elements. Tolerances, with the max error measured
 * on x86-64 (gcc 12, torch 1.13 CPU, fixed seeds; the REPORT lines print them), the reference and
 * the dispatched path alike unless said:
 *   pad, leaky_relu, mul_spatial, argmax: exact (bits; argmax the same index).
 *   elu against torch float32: 1.5e-7*|alpha| absolute or 2 ulp (measured 6.0e-8: torch 1.13
 *   computes exp(x) - 1, which near 0 keeps only the bits of x that survive beside 1, e.g.
 *   elu(-1e-5) = -1.0014e-5); against float64 expm1 rounded once: 1 ulp (libm expm1f; measured 1).
 *   tanh against torch float32: 2 ulp (measured 1.2e-7 = 2 ulp); against torch float64 rounded:
 *   2 ulp (glibc's tanhf; measured 2).
 *   The AVX2 elu and tanh (polynomials, not libm): 4 ulp from torch float64 (measured 2 and 1)
 *   and from the references (measured 2 and 2, act_fast_vs_ref); leaky_relu, group_norm,
 *   mul_spatial and argmax on AVX2: the references' bits (memcmp). The NEON kernels (aarch64,
 *   under qemu by `make test-arm`) are held to the same: elu and tanh 2 and 1 ulp from the
 *   references and from torch float64 (measured), the rest the references' bits.
 *   group_norm against torch float32: 2e-5 relative plus an absolute bound the fixture computes per
 *   case, 2e-5 + 4 ulp of the group's largest |x| / sqrt(var + eps) x max|gamma|: torch keeps its
 *   moments in float32 and loses that much (measured 7.2e-7 on ordinary groups, 1.7e-5 on
 *   one-value instance-norm groups where 1/sqrt(eps) = 316 scales it, 1.8e-3 at 1e4 +- 1);
 *   against torch float64 rounded: 2 ulp or 1e-12 x the largest output (measured 0 ulp: the
 *   double statistics give the correctly rounded result on every case). Where torch's float32
 *   overflows (values near 1e30: NaN everywhere) only float64 is the reference; a group holding
 *   NaN or Inf is NaN, as in torch.
 * elu(-0) is -0 here (expm1(-0) = -0) and +0 in torch (exp(-0) - 1); the comparisons count
 * them equal. */
#include "tests/mi_test.h"
#include "ops/act.h"
#include "ops/cpu.h"
#include "ops/elementwise.h"
#include "ops/norm.h"
#include "ops/pad.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* ---- helpers --------------------------------------------------------------------------- */

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

static float *nan_f(int64_t n) {   /* unwritten elements fail every comparison */
    float *p = alloc_f(n);
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

static float *random_f(int64_t n, uint64_t seed) {
    float *p = alloc_f(n);
    mi_fill_random(p, n, seed);
    return p;
}

static void report(const char *what, double err) { printf("REPORT max |err| %-40s %.3g\n", what, err); }

/* Distance in representable floats (0 for equal values, also +0 / -0). */
static double ulps(float a, float b) {
    if (a == b) return 0;
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    const int64_t la = ia < 0 ? (int64_t)INT32_MIN - ia : ia, lb = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
    return (double)llabs(la - lb);
}

/* Checks got against want: NaN exactly where want is NaN, the same infinity where want has one,
 * and on finite elements |d| <= atol + rtol*|want| OR ulps(d) <= max_ulp. Prints the first
 * offence and fails; returns the max |d| (finite elements), *worst_ulp the max ulp distance. */
static double check_close(const float *got, const float *want, int64_t n, double atol, double rtol,
                          double max_ulp, const char *what, double *worst_ulp) {
    double worst = 0, wu = 0;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const float g = got[i], w = want[i];
        bool ok;
        if (isnan(w) || isnan(g)) ok = isnan(w) && isnan(g);
        else if (isinf(w) || isinf(g)) ok = g == w;
        else {
            const double d = fabs((double)g - (double)w), u = ulps(g, w);
            if (d > worst) worst = d;
            if (u > wu) wu = u;
            ok = d <= atol + rtol * fabs((double)w) || u <= max_ulp;
        }
        if (!ok && !bad++)
            fprintf(stderr, "%s: [%lld] %.9g vs expected %.9g (atol %g, rtol %g, %g ulp)\n", what,
                    (long long)i, g, w, atol, rtol, max_ulp);
    }
    ck_assert_msg(!bad, "%s: %lld of %lld elements out of bounds (see above)", what, (long long)bad, (long long)n);
    if (worst_ulp) *worst_ulp = fmax(*worst_ulp, wu);
    return worst;
}

static void assert_same_bits(const void *a, const void *b, size_t bytes, const char *what) {
    ck_assert_msg(memcmp(a, b, bytes) == 0, "%s: not the same bits", what);
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

/* ---- pad ------------------------------------------------------------------------------- */

START_TEST(pad_matches_torch)
{
    mi_weights w;
    mi_fixture_open(&w, "ops2_pad.safetensors");
    for (int i = 0; i < ncases(&w); i++) {
        mi_tensor x = ct(&w, i, "x"), p = ct(&w, i, "p"), ref = ct(&w, i, "y");
        const mi_pad_mode mode = (mi_pad_mode)p.data[0];
        const int64_t pad[4] = { (int64_t)p.data[1], (int64_t)p.data[2], (int64_t)p.data[3], (int64_t)p.data[4] };
        int64_t os[MI_MAX_DIMS];
        ck_assert_msg(mi_pad_out_shape(&x, pad, mode, os) == MI_OK, "case %d: %s", i, mi_last_error());
        for (int d = 0; d < 4; d++) ck_assert_int_eq(os[d], ref.shape[d]);
        mi_tensor y = mi_tensor_view(nan_f(mi_tensor_numel(&ref)), 4, os, "y");
        mi_pad2d(&y, &x, pad, mode);
        char what[64];
        snprintf(what, sizeof what, "pad case %d (mode %d)", i, (int)mode);
        assert_same_bits(y.data, ref.data, (size_t)mi_tensor_numel(&ref) * sizeof(float), what);   /* NaN, Inf copied */
        mi_free_aligned(y.data);
    }
    mi_weights_close(&w);
}
END_TEST

START_TEST(pad_rejects_bad_input)
{
    float buf[2 * 3 * 4 * 5] = { 0 };
    int64_t s4[4] = { 2, 3, 4, 5 }, s3[3] = { 3, 4, 5 }, s0[4] = { 1, 3, 0, 5 }, os[MI_MAX_DIMS];
    mi_tensor x = mi_tensor_view(buf, 4, s4, "enc2.out"), x3 = mi_tensor_view(buf, 3, s3, "flat");
    mi_tensor x0 = mi_tensor_view(buf, 4, s0, "empty");
    const int64_t ok[4] = { 4, 4, 3, 3 }, neg[4] = { 1, -1, 0, 0 }, wide[4] = { 5, 0, 0, 0 }, tall[4] = { 0, 0, 0, 4 };
    ck_assert_int_eq(mi_pad_out_shape(&x, ok, MI_PAD_REFLECT, os), MI_OK);
    ck_assert_int_eq(os[2], 10);
    ck_assert_int_eq(os[3], 13);
    ck_assert_int_eq(mi_pad_out_shape(&x3, ok, MI_PAD_ZERO, os), MI_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "'flat': shape [3,4,5], expected 4 dimensions"));
    ck_assert_int_eq(mi_pad_out_shape(&x, neg, MI_PAD_ZERO, os), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "'enc2.out': -1 right, expected >= 0"));
    /* reflect: a pad as wide as the side has no sample to mirror; torch refuses it too */
    ck_assert_int_eq(mi_pad_out_shape(&x, wide, MI_PAD_REFLECT, os), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "5 left, expected less than the width 5"));
    ck_assert_int_eq(mi_pad_out_shape(&x, tall, MI_PAD_REFLECT, os), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "4 bottom, expected less than the height 4"));
    ck_assert_int_eq(mi_pad_out_shape(&x, wide, MI_PAD_REPLICATE, os), MI_OK);
    ck_assert_int_eq(mi_pad_out_shape(&x, wide, MI_PAD_ZERO, os), MI_OK);
    ck_assert_int_eq(mi_pad_out_shape(&x, ok, (mi_pad_mode)7, os), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "mode 7"));
    ck_assert_int_eq(mi_pad_out_shape(&x0, ok, MI_PAD_REPLICATE, os), MI_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "'empty'"));
    ck_assert_int_eq(mi_pad_out_shape(&x0, ok, MI_PAD_ZERO, os), MI_OK);   /* zeros only, as torch */
    const int64_t huge[4] = { INT64_MAX - 2, 0, 0, 0 }, big[4] = { (int64_t)1 << 40, 0, (int64_t)1 << 40, 0 };
    ck_assert_int_eq(mi_pad_out_shape(&x, huge, MI_PAD_ZERO, os), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "overflows"));
    ck_assert_int_eq(mi_pad_out_shape(&x, big, MI_PAD_REPLICATE, os), MI_ERR_ARG);
}
END_TEST

typedef struct { mi_tensor x; int64_t pad[4]; mi_pad_mode mode; int64_t os[MI_MAX_DIMS]; } pad_ctx;
static void run_pad(const void *c, float *out) {
    const pad_ctx *p = c;
    mi_tensor y = mi_tensor_view(out, 4, p->os, "y");
    mi_pad2d(&y, &p->x, p->pad, p->mode);
}

START_TEST(pad_threads_same_bits)
{
    int64_t xs[4] = { 2, 7, 61, 67 };
    pad_ctx c = { .x = mi_tensor_view(random_f(2 * 7 * 61 * 67, 9), 4, xs, "x"), .pad = { 3, 1, 2, 5 } };
    for (int m = 0; m < 3; m++) {
        c.mode = (mi_pad_mode)m;
        ck_assert_int_eq(mi_pad_out_shape(&c.x, c.pad, c.mode, c.os), MI_OK);
        check_threads(run_pad, &c, c.os[0] * c.os[1] * c.os[2] * c.os[3], "pad");
    }
    mi_free_aligned(c.x.data);
}
END_TEST

/* ---- leaky_relu, elu, tanh -------------------------------------------------------------- */

enum { A_LEAKY, A_ELU, A_TANH, A_OPS };
static const char *const A_NAME[A_OPS] = { "leaky_relu", "elu", "tanh" };

/* The SIMD kernels the sweeps below hold against the references: FAST(mi_elu) is mi_elu_avx2 on
 * x86-64 and mi_elu_neon on aarch64 (ops/arm/, run under qemu by `make test-arm`), FAST_NAME names
 * it in the messages. They are called directly, whatever MI_ISA says. */
#if defined(__x86_64__)
#define MI_TEST_SIMD 1
#define FAST(fn) fn##_avx2
#define FAST_NAME "avx2"
#elif defined(__aarch64__)
#define MI_TEST_SIMD 1
#define FAST(fn) fn##_neon
#define FAST_NAME "neon"
#endif

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

#if defined(MI_TEST_SIMD)   /* the SIMD kernels' tail sweeps: every length 1..67, across their 4-, 8- and 16-float blocks */
#define NLENS 67
#endif

/* path 0: the reference, 1: the dispatched entry point, 2: the SIMD kernel (false if none) */
static bool act_run(int path, int op, float *y, const float *x, float a, int64_t n) {
    switch (path) {
    case 0:
        if (op == A_LEAKY) mi_leaky_relu_ref(y, x, a, n);
        else if (op == A_ELU) mi_elu_ref(y, x, a, n);
        else mi_tanh_ref(y, x, n);
        return true;
    case 1:
        if (op == A_LEAKY) mi_leaky_relu(y, x, a, n);
        else if (op == A_ELU) mi_elu(y, x, a, n);
        else mi_tanh(y, x, n);
        return true;
    default:
#if defined(MI_TEST_SIMD)
        if (!simd()) return false;
        if (op == A_LEAKY) FAST(mi_leaky_relu)(y, x, a, n);
        else if (op == A_ELU) FAST(mi_elu)(y, x, a, n);
        else FAST(mi_tanh)(y, x, n);
        return true;
#else
        return false;
#endif
    }
}

START_TEST(act_matches_torch)
{
    mi_weights w;
    mi_fixture_open(&w, "ops2_act.safetensors");
    double e[A_OPS][2] = { { 0 } }, u64[A_OPS][2] = { { 0 } }, e64[A_OPS][2] = { { 0 } };
    for (int i = 0; i < ncases(&w); i++) {
        mi_tensor x = ct(&w, i, "x"), p = ct(&w, i, "p");
        const float a = p.data[0];
        const int64_t n = mi_tensor_numel(&x);
        float *y = alloc_f(n);
        for (int path = 0; path < 3; path++)
            for (int op = 0; op < A_OPS; op++) {
                for (int64_t j = 0; j < n; j++) y[j] = 12345.0f;
                if (!act_run(path, op, y, x.data, a, n)) continue;
                char what[64];
                snprintf(what, sizeof what, "%s case %d path %d", A_NAME[op], i, path);
                const int pk = path ? 1 : 0;   /* the SIMD kernel's figures join the dispatched path's */
                if (op == A_LEAKY) {
                    /* one select, one multiply: exact, NaN where torch has NaN (0 * -inf) */
                    e[op][pk] = fmax(e[op][pk], check_close(y, ct(&w, i, "leaky").data, n, 0, 0, 0, what, NULL));
                } else {
                    const mi_tensor t32 = ct(&w, i, op == A_ELU ? "elu" : "tanh");
                    const mi_tensor t64 = ct(&w, i, op == A_ELU ? "elu64" : "tanh64");
                    const double atol32 = op == A_ELU ? 1.5e-7 * fabs(a) : 0;
                    double u32 = 0;
                    e[op][pk] = fmax(e[op][pk], check_close(y, t32.data, n, atol32, 0, 2, what, &u32));
                    /* against the correctly rounded float64 result: 1 ulp for libm, the SIMD
                     * kernels' bound when they are the dispatched path */
                    const double max_ulp64 = path == 0 || (path == 1 && mi_cpu_isa() <= MI_ISA_PORTABLE) ? 2 : 4;
                    e64[op][pk] = fmax(e64[op][pk], check_close(y, t64.data, n, 0, 0, max_ulp64, what, &u64[op][pk]));
                }
            }
        mi_free_aligned(y);
    }
    for (int op = 0; op < A_OPS; op++)
        for (int pk = 0; pk < 2; pk++) {
            char what[64];
            snprintf(what, sizeof what, "%s %s vs torch", A_NAME[op], pk ? "dispatch" : "ref");
            report(what, e[op][pk]);
            if (op != A_LEAKY) {
                snprintf(what, sizeof what, "%s %s vs float64 (abs)", A_NAME[op], pk ? "dispatch" : "ref");
                report(what, e64[op][pk]);
                snprintf(what, sizeof what, "%s %s vs float64 (ulp)", A_NAME[op], pk ? "dispatch" : "ref");
                report(what, u64[op][pk]);
            }
        }
    /* in place gives the same bits */
    const int64_t n = 1003;
    float *x = random_f(n, 5), *a = alloc_f(n), *b = alloc_f(n);
    for (int op = 0; op < A_OPS; op++) {
        for (int64_t j = 0; j < n; j++) b[j] = x[j] * 4.0f;
        act_run(1, op, a, b, 0.3f, n);
        act_run(1, op, b, b, 0.3f, n);
        assert_same_bits(a, b, (size_t)n * sizeof(float), A_NAME[op]);
    }
    mi_free_aligned(x); mi_free_aligned(a); mi_free_aligned(b);
    mi_weights_close(&w);
}
END_TEST

typedef struct { const float *x; int64_t n; int op; } act_ctx;
static void run_act(const void *c, float *y) { const act_ctx *a = c; act_run(1, a->op, y, a->x, 0.7f, a->n); }
static void run_act_ref(const void *c, float *y) { const act_ctx *a = c; act_run(0, a->op, y, a->x, 0.7f, a->n); }

START_TEST(act_threads_same_bits)
{
    const int64_t n = 32 * 4099 + 5;   /* above every parallel threshold, odd split and tail */
    float *x = random_f(n, 3);
    for (int64_t i = 0; i < n; i++) x[i] *= 6.0f;
    for (int op = 0; op < A_OPS; op++) {
        act_ctx c = { x, n, op };
        check_threads(run_act, &c, n, A_NAME[op]);
        check_threads(run_act_ref, &c, n, A_NAME[op]);
    }
    mi_free_aligned(x);
}
END_TEST

/* The SIMD kernels against the references: leaky_relu bit for bit; elu and tanh within 4 ulp of
 * the references (measured: see the REPORT lines; AVX2 2 and 2 on this sweep), NaN, Inf and
 * the sign of zero where the reference has them, on every tail size and on a dense sweep of
 * 2 x 230 000 values from 1e-40 to 1e4 in magnitude. */
START_TEST(act_fast_vs_ref)
{
    SIMD_SKIP();
#if defined(MI_TEST_SIMD)
    const int64_t n = 2 * 230000;
    float *x = alloc_f(n), *r = alloc_f(n), *f = alloc_f(n);
    for (int64_t i = 0; i < n / 2; i++) {   /* magnitudes 10^(-40 + 44 i / (n/2)), both signs */
        x[2 * i] = (float)pow(10.0, -40.0 + 44.0 * (double)i / (double)(n / 2));
        x[2 * i + 1] = -x[2 * i];
    }
    static const float edge[] = { NAN, INFINITY, -INFINITY, 0.0f, -0.0f, FLT_MAX, -FLT_MAX, 0.625f, -0.625f,
                                  0.5f, -0.5f, 44.0f, -44.0f, 88.5f, -88.5f, -87.4f, 1e-45f, -1e-45f };
    memcpy(x, edge, sizeof edge);
    double worst[A_OPS] = { 0 };
    for (int op = 0; op < A_OPS; op++)
        for (int k = 0; k < 2; k++) {
            const float a = k ? 0.5f : 1.0f;
            act_run(0, op, r, x, a, n);
            act_run(2, op, f, x, a, n);
            char what[64];
            snprintf(what, sizeof what, "%s " FAST_NAME " vs ref, sweep", A_NAME[op]);
            if (op == A_LEAKY) assert_same_bits(r, f, (size_t)n * sizeof(float), what);
            check_close(f, r, n, 0, 0, 4, what, &worst[op]);
            /* the sign of zero too; one assertion after the loop, as Check records every one it
             * passes (a write each: 2.8 million of them took seconds, minutes under qemu) */
            int64_t first_bad = -1;
            for (int64_t i = 0; i < n && first_bad < 0; i++)
                if (r[i] == 0.0f && f[i] == 0.0f && signbit(r[i]) != signbit(f[i])) first_bad = i;
            ck_assert_msg(first_bad < 0, "%s: -0 at %lld", what, (long long)first_bad);
        }
    for (int t = 0; t < NLENS; t++) {   /* each tail length, in place and not */
        const int64_t m = t + 1;
        float *xt = random_f(m, 40 + t), *yr = alloc_f(m), *yf = alloc_f(m);
        for (int64_t i = 0; i < m; i++) xt[i] *= 5.0f;
        for (int op = 0; op < A_OPS; op++) {
            act_run(0, op, yr, xt, 0.3f, m);
            memcpy(yf, xt, (size_t)m * sizeof(float));
            act_run(2, op, yf, yf, 0.3f, m);
            char what[64];
            snprintf(what, sizeof what, "%s " FAST_NAME " vs ref, %lld elements", A_NAME[op], (long long)m);
            if (op == A_LEAKY) assert_same_bits(yr, yf, (size_t)m * sizeof(float), what);
            check_close(yf, yr, m, 0, 0, 4, what, &worst[op]);
        }
        mi_free_aligned(xt); mi_free_aligned(yr); mi_free_aligned(yf);
    }
    for (int op = 0; op < A_OPS; op++) {
        char what[64];
        snprintf(what, sizeof what, "%s " FAST_NAME " vs ref (ulp)", A_NAME[op]);
        report(what, worst[op]);
    }
    mi_free_aligned(x); mi_free_aligned(r); mi_free_aligned(f);
#endif
}
END_TEST

/* ---- group_norm ------------------------------------------------------------------------ */

typedef void (*gn_fn)(float *, const float *, const float *, const float *, int64_t, int64_t, int64_t, int64_t, double);

START_TEST(group_norm_matches_torch)
{
    mi_weights w;
    mi_fixture_open(&w, "ops2_group_norm.safetensors");
    static const gn_fn fns[2] = { mi_group_norm_ref, mi_group_norm };
    double e32[2] = { 0 }, e64[2] = { 0 }, u64[2] = { 0 };
    for (int i = 0; i < ncases(&w); i++) {
        mi_tensor x = ct(&w, i, "x"), p = ct(&w, i, "p"), y32 = ct(&w, i, "y"), y64 = ct(&w, i, "y64");
        const int64_t N = (int64_t)p.data[0], C = (int64_t)p.data[1], G = (int64_t)p.data[2], inner = (int64_t)p.data[3];
        const bool affine = p.data[4] != 0;
        const double eps = p.data[5];
        const float *gamma = affine ? ct(&w, i, "gamma").data : NULL, *beta = affine ? ct(&w, i, "beta").data : NULL;
        const int64_t n = mi_tensor_numel(&x);
        double scale = 0;
        for (int64_t j = 0; j < n; j++) if (isfinite(y64.data[j])) scale = fmax(scale, fabs(y64.data[j]));
        float *y = nan_f(n), *yi = alloc_f(n);
        for (int f = 0; f < 2; f++) {
            char what[64];
            snprintf(what, sizeof what, "group_norm case %d %s", i, f ? "dispatch" : "ref");
            fns[f](y, x.data, gamma, beta, N, C, G, inner, eps);
            /* torch float32 overflows on the squares of values near 1e30 (NaN where float64 is
             * finite): there only float64 is the reference */
            bool overflowed = false;
            for (int64_t j = 0; j < n; j++) overflowed |= isnan(y32.data[j]) && !isnan(y64.data[j]);
            if (!overflowed)
                e32[f] = fmax(e32[f], check_close(y, y32.data, n, p.data[6], 2e-5, 0, what, NULL));
            e64[f] = fmax(e64[f], check_close(y, y64.data, n, 1e-12 * scale, 0, 2, what, &u64[f]));
            if (has(&w, i, "inorm"))   /* InstanceNorm2d: the same op with G == C */
                check_close(y, ct(&w, i, "inorm").data, n, 2e-5, 2e-5, 0, what, NULL);
            memcpy(yi, x.data, (size_t)n * sizeof(float));   /* in place: the same bits */
            fns[f](yi, yi, gamma, beta, N, C, G, inner, eps);
            assert_same_bits(y, yi, (size_t)n * sizeof(float), "group_norm in place");
        }
        mi_free_aligned(y);
        mi_free_aligned(yi);
    }
    report("group_norm ref vs torch float32", e32[0]);
    report("group_norm dispatch vs torch float32", e32[1]);
    report("group_norm ref vs float64 (abs)", e64[0]);
    report("group_norm dispatch vs float64 (abs)", e64[1]);
    report("group_norm ref vs float64 (ulp)", u64[0]);
    report("group_norm dispatch vs float64 (ulp)", u64[1]);
    mi_weights_close(&w);

    /* one value per group (torch's functional refuses it as a training batch): variance 0,
     * so y = beta exactly; and no affine: y = 0 */
    const float xv[3] = { 5.0f, -FLT_MAX, 1e-40f }, gv[3] = { 2.0f, 3.0f, 4.0f }, bv[3] = { 0.5f, -1.0f, 0.0f };
    float yv[3];
    for (int f = 0; f < 2; f++) {
        fns[f](yv, xv, gv, bv, 1, 3, 3, 1, 1e-5);
        ck_assert(yv[0] == 0.5f && yv[1] == -1.0f && yv[2] == 0.0f);
        fns[f](yv, xv, NULL, NULL, 1, 3, 3, 1, 1e-5);
        ck_assert(yv[0] == 0.0f && yv[1] == 0.0f && yv[2] == 0.0f);
    }
}
END_TEST

typedef struct { const float *x, *g, *b; int64_t N, C, G, inner; int ref; } gn_ctx;
static void run_gn(const void *c, float *y) {
    const gn_ctx *g = c;
    (g->ref ? mi_group_norm_ref : mi_group_norm)(y, g->x, g->g, g->b, g->N, g->C, g->G, g->inner, 1e-5);
}

START_TEST(group_norm_threads_same_bits)
{
    const int64_t N = 2, C = 48, inner = 37 * 29;
    float *x = random_f(N * C * inner, 1), *g = random_f(C, 2), *b = random_f(C, 3);
    for (int ref = 0; ref < 2; ref++)
        for (int64_t G = 1; G <= C; G *= 4) {   /* 1, 4, 16 groups */
            gn_ctx c = { x, g, b, N, C, G, inner, ref };
            check_threads(run_gn, &c, N * C * inner, ref ? "group_norm ref" : "group_norm");
        }
    gn_ctx c = { x, g, b, N, C, C, inner, 0 };   /* instance norm */
    check_threads(run_gn, &c, N * C * inner, "instance norm");
    mi_free_aligned(x); mi_free_aligned(g); mi_free_aligned(b);
}
END_TEST

/* The SIMD kernel keeps the reference's order of operations: the same bits (memcmp) for group
 * sizes over every tail of its 8-element blocks, channels per group 1-3, with and without affine,
 * in place, and with a NaN group. */
START_TEST(group_norm_fast_equals_ref)
{
    SIMD_SKIP();
#if defined(MI_TEST_SIMD)
    for (int t = 0; t < NLENS; t++)
        for (int64_t cg = 1; cg <= 3; cg++)
            for (int64_t G = 1; G <= 2; G++) {
                const int64_t N = 2, C = cg * G, inner = t + 1, n = N * C * inner;
                float *x = random_f(n, (uint64_t)(t * 100 + cg * 10 + G)), *g = random_f(C, 1), *b = random_f(C, 2);
                float *r = alloc_f(n), *f = alloc_f(n);
                for (int64_t i = 0; i < n; i++) x[i] = x[i] * 3.0f + 7.0f;
                if (t == 3) x[n - 1] = NAN;
                for (int affine = 0; affine < 2; affine++) {
                    mi_group_norm_ref(r, x, affine ? g : NULL, affine ? b : NULL, N, C, G, inner, 1e-5);
                    FAST(mi_group_norm)(f, x, affine ? g : NULL, affine ? b : NULL, N, C, G, inner, 1e-5);
                    assert_same_bits(r, f, (size_t)n * sizeof(float), "group_norm " FAST_NAME);
                    memcpy(f, x, (size_t)n * sizeof(float));
                    FAST(mi_group_norm)(f, f, affine ? g : NULL, affine ? b : NULL, N, C, G, inner, 1e-5);
                    assert_same_bits(r, f, (size_t)n * sizeof(float), "group_norm " FAST_NAME " in place");
                }
                mi_free_aligned(x); mi_free_aligned(g); mi_free_aligned(b); mi_free_aligned(r); mi_free_aligned(f);
            }
#endif
}
END_TEST

/* ---- mul_spatial, argmax_channels ----------------------------------------------------- */

START_TEST(mul_spatial_argmax_match_torch)
{
    mi_weights w;
    mi_fixture_open(&w, "ops2_elementwise.safetensors");
    for (int i = 0; i < ncases(&w); i++) {
        mi_tensor x = ct(&w, i, "x"), wt = ct(&w, i, "w"), ref = ct(&w, i, "y"), q = ct(&w, i, "q");
        mi_tensor am = ct(&w, i, "argmax"), amx = ct(&w, i, "argmax_x");
        const int64_t N = x.shape[0], C = x.shape[1], inner = x.shape[2] * x.shape[3], n = mi_tensor_numel(&x);
        float *y = nan_f(n);
        int32_t *idx = mi_alloc_aligned((size_t)(N * inner) * sizeof(int32_t));
        for (int f = 0; f < 2; f++) {
            char what[64];
            snprintf(what, sizeof what, "mul_spatial case %d %s", i, f ? "dispatch" : "ref");
            if (f) mi_mul_spatial(y, x.data, wt.data, N, C, inner);
            else mi_mul_spatial_ref(y, x.data, wt.data, N, C, inner);
            check_close(y, ref.data, n, 0, 0, 0, what, NULL);   /* inf * 0 and NaN where torch has them */
            memcpy(y, x.data, (size_t)n * sizeof(float));
            mi_mul_spatial(y, y, wt.data, N, C, inner);          /* in place */
            check_close(y, ref.data, n, 0, 0, 0, "mul_spatial in place", NULL);
            for (int k = 0; k < 2; k++) {
                const mi_tensor *src = k ? &x : &q, *want = k ? &amx : &am;
                for (int64_t j = 0; j < N * inner; j++) idx[j] = -7;
                if (f) mi_argmax_channels(idx, src->data, N, C, inner);
                else mi_argmax_channels_ref(idx, src->data, N, C, inner);
                for (int64_t j = 0; j < N * inner; j++)
                    ck_assert_msg(idx[j] == (int32_t)want->data[j], "argmax case %d %s %s at %lld: %d, torch %d", i,
                                  k ? "x" : "ties/NaN", f ? "dispatch" : "ref", (long long)j, idx[j], (int)want->data[j]);
            }
        }
        mi_free_aligned(y);
        mi_free_aligned(idx);
    }
    mi_weights_close(&w);
}
END_TEST

/* mul_spatial and argmax: the SIMD kernels give the references' bits on every tail, with NaN,
 * Inf and ties. */
START_TEST(elementwise_fast_equals_ref)
{
    SIMD_SKIP();
#if defined(MI_TEST_SIMD)
    for (int t = 0; t < NLENS; t++)
        for (int64_t C = 1; C <= 5; C += 2) {
            const int64_t N = 2, inner = t + 1, n = N * C * inner;
            float *x = random_f(n, 300 + t), *w = random_f(N * inner, 400 + t), *r = alloc_f(n), *f = alloc_f(n);
            int32_t *ir = mi_alloc_aligned((size_t)(N * inner) * sizeof(int32_t));
            int32_t *ifa = mi_alloc_aligned((size_t)(N * inner) * sizeof(int32_t));
            for (int64_t i = 0; i < n; i += 5) x[i] = roundf(x[i] * 2.0f);   /* ties */
            x[n / 2] = NAN;
            x[n - 1] = INFINITY;
            if (C > 1) x[inner] = NAN;   /* a NaN in channel 1 of pixel 0 */
            mi_mul_spatial_ref(r, x, w, N, C, inner);
            FAST(mi_mul_spatial)(f, x, w, N, C, inner);
            assert_same_bits(r, f, (size_t)n * sizeof(float), "mul_spatial " FAST_NAME);
            memcpy(f, x, (size_t)n * sizeof(float));
            FAST(mi_mul_spatial)(f, f, w, N, C, inner);
            assert_same_bits(r, f, (size_t)n * sizeof(float), "mul_spatial " FAST_NAME " in place");
            mi_argmax_channels_ref(ir, x, N, C, inner);
            FAST(mi_argmax_channels)(ifa, x, N, C, inner);
            assert_same_bits(ir, ifa, (size_t)(N * inner) * sizeof(int32_t), "argmax " FAST_NAME);
            mi_free_aligned(x); mi_free_aligned(w); mi_free_aligned(r); mi_free_aligned(f);
            mi_free_aligned(ir); mi_free_aligned(ifa);
        }
#endif
}
END_TEST

typedef struct { const float *x, *w; int64_t N, C, inner; int op; } ew_ctx;
static void run_ew(const void *c, float *y) {
    const ew_ctx *e = c;
    if (e->op == 0) mi_mul_spatial(y, e->x, e->w, e->N, e->C, e->inner);
    else if (e->op == 1) mi_mul_spatial_ref(y, e->x, e->w, e->N, e->C, e->inner);
    else if (e->op == 2) mi_argmax_channels((int32_t *)y, e->x, e->N, e->C, e->inner);
    else mi_argmax_channels_ref((int32_t *)y, e->x, e->N, e->C, e->inner);
}

START_TEST(elementwise_threads_same_bits)
{
    const int64_t N = 2, C = 9, inner = 4099;
    float *x = random_f(N * C * inner, 11), *wt = random_f(N * inner, 12);
    static const char *const names[] = { "mul_spatial", "mul_spatial ref", "argmax", "argmax ref" };
    for (int op = 0; op < 4; op++) {
        ew_ctx c = { x, wt, N, C, inner, op };
        check_threads(run_ew, &c, op < 2 ? N * C * inner : N * inner, names[op]);
    }
    mi_free_aligned(x); mi_free_aligned(wt);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("ops2");
    TCase *tc = tcase_create("ops2");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, pad_matches_torch);
    tcase_add_test(tc, pad_rejects_bad_input);
    tcase_add_test(tc, pad_threads_same_bits);
    tcase_add_test(tc, act_matches_torch);
    tcase_add_test(tc, act_fast_vs_ref);
    tcase_add_test(tc, act_threads_same_bits);
    tcase_add_test(tc, group_norm_matches_torch);
    tcase_add_test(tc, group_norm_fast_equals_ref);
    tcase_add_test(tc, group_norm_threads_same_bits);
    tcase_add_test(tc, mul_spatial_argmax_match_torch);
    tcase_add_test(tc, elementwise_fast_equals_ref);
    tcase_add_test(tc, elementwise_threads_same_bits);
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(suite)
