/* tests/test_conv.c - convolution and transposed convolution (ops/conv.c, ops/conv_transpose.c,
 * ops/conv_winograd.c, the packed GEMM ops/gemm.c, ops/x86/conv_avx2.c, ops/x86/conv_avx512.c,
 * ops/arm/conv_neon.c, ops/conv_portable.c).
 *
 * 1. Every case of tests/ref_conv.py (torch in float64) through the reference and through every
 *    fast path this CPU has (mi_conv_init_isa), so one run covers ref, the portable C kernels
 *    (ops/conv_portable.c, on every CPU), neon (ops/arm/conv_neon.c, under qemu by make
 *    test-arm), avx2 and avx512, each GEMM
 *    orientation forced in turn (pixels or channels on the vector lanes, mi_conv_desc.lanes), and
 *    each algorithm (direct; Winograd F(2x2, 3x3) and F(4x4, 3x3) on the 3x3 stride-1 cases,
 *    mi_conv_desc.algo);
 *    MI_ISA caps what mi_conv_init picks (env_caps_isa); MI_ISA=portable forces the portable
 *    kernels (env_forces_portable).
 *    Tolerance: |ours - torch| <= 2e-5 * max|torch| + 1e-5 * |torch| (fp32 sums of up to 2700
 *    terms, FMA on the fast paths). Measured max |ours - torch| / max|torch| over all cases and
 *    ISAs: 8.8e-7 (reference), 7.3e-7 (avx2, avx512), Winograd F(2x2) 4.6e-7, F(4x4) 5.8e-6:
 *    the MAXREL lines it prints. The portable kernels' direct sums (multiply, then add, in the
 *    reference's k order) measured the reference's 8.8e-7; neon (under qemu) avx2's figures.
 * 2. Fast path against the reference on tails: Cout 1..17, 29, 33 and pixel counts 1, 3, 4, 5, 7,
 *    8, 15, 16, 17, 31, 33, 47, 49, 67 (1x1, 3x3 padded direct and Winograd, 3x3 stride 2, 1x1
 *    stride 2 with output rows of 13, 14 and 28 pixels: with channels on the lanes AVX-512 reads
 *    rows of whole panels in place, the others from phase planes), same tolerance; channels on
 *    the lanes give the bits of pixels on the lanes (memcmp).
 *    Each case with a residual runs again with the output in the residual's own tensor: the same
 *    bits (memcmp).
 * 3. Bit-identical output for 1, 2 and 4 threads (memcmp), fast paths, Winograd and transposed.
 * 4. Bad shapes and descriptors: MI_ERR_SHAPE / MI_ERR_ARG with a message naming the layer.
 * 5. The SIMD Winograd transforms give the scalar ones' bits (memcmp) on every row length and edge;
 *    a kernel table's run_stream (weights fetched further ahead) gives its run's bits, and its
 *    panels read in place (in_place) the bits of packed ones, its strided copy the plain loop's.
 * 6. mi_conv_prepare picks the algorithm and orientation for the input size.
 * 7. Depthwise 2-D layers (ops/conv_dw.c, on every fast ISA) equal the reference bit for bit over a
 *    sweep of widths, heights, strides, padding, kernel sizes and dilation, with residual, ReLU,
 *    NaN and Inf inputs and an infinite weight; their torch cases are in (1), where they measure
 *    the reference's error. */
#include "tests/mi_test.h"
#include "ops/conv.h"
#include "ops/conv_internal.h"   /* the kernel table and the scalar Winograd transforms */

#include <math.h>
#include <string.h>
#include <omp.h>
#include <unistd.h>

#define ATOL_REL 2e-5   /* times max|reference| */
#define RTOL 1e-5

enum { P_KIND, P_SP, P_CIN, P_COUT, P_G, P_K, P_S = 8, P_P = 11, P_D = 14, P_OP = 17, P_BIAS = 20,
       P_RES, P_RELU, P_N, P_SIZE };

static double max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
    return m;
}

static int wino_m(int algo) { return algo == MI_CONV_WINOGRAD2 ? 2 : algo == MI_CONV_WINOGRAD4 ? 4 : 0; }
static const char *algo_name(int algo) {
    return algo == MI_CONV_WINOGRAD2 ? "winograd F(2x2,3x3)" : algo == MI_CONV_WINOGRAD4 ? "winograd F(4x4,3x3)" : "direct";
}

/* Whether this build and CPU run isa's GEMM path, and it is not the same kernels as a lower ISA's
 * (NEON without ops/arm/ kernels is the portable table again): the ISAs each sweep covers. */
static int fast_isa_distinct(mi_isa isa) {
    if (isa == MI_ISA_REF || isa > mi_cpu_isa() || !mi_gemm_ukr_for(isa)) return 0;
    for (mi_isa lo = MI_ISA_PORTABLE; lo < isa; lo++)
        if (mi_gemm_ukr_for(lo) == mi_gemm_ukr_for(isa)) return 0;
    return 1;
}

/* Runs case i of the fixture on the given ISA (ref: the reference function itself); returns the
 * max error relative to max|torch|. */
static double run_case(const mi_weights *w, int i, mi_isa isa, int lanes, int algo) {
    char nm[32];
    snprintf(nm, sizeof nm, "c%d.p", i);
    const mi_tensor pt = mi_fixture_tensor(w, nm);
    float p[32];
    memcpy(p, pt.data, sizeof(float) * (size_t)mi_tensor_numel(&pt));
    mi_conv_desc d = { .sp = (int)p[P_SP], .cin = (int64_t)p[P_CIN], .cout = (int64_t)p[P_COUT],
                       .groups = (int64_t)p[P_G], .lanes = lanes, .algo = algo };
    for (int j = 0; j < 3; j++) {
        d.k[j] = (int64_t)p[P_K + j];
        d.stride[j] = (int64_t)p[P_S + j];
        d.pad[j] = (int64_t)p[P_P + j];
        d.dil[j] = (int64_t)p[P_D + j];
    }
    snprintf(nm, sizeof nm, "c%d.x", i);
    mi_tensor x = mi_fixture_tensor(w, nm);
    snprintf(nm, sizeof nm, "c%d.w", i);
    const mi_tensor wt = mi_fixture_tensor(w, nm);
    snprintf(nm, sizeof nm, "c%d.y", i);
    const mi_tensor yref = mi_fixture_tensor(w, nm);
    mi_tensor bt = { 0 }, rt = { 0 };
    snprintf(nm, sizeof nm, "c%d.b", i);
    if (p[P_BIAS]) bt = mi_fixture_tensor(w, nm);
    snprintf(nm, sizeof nm, "c%d.res", i);
    if (p[P_RES]) rt = mi_fixture_tensor(w, nm);
    const mi_act act = p[P_RELU] ? MI_ACT_RELU : MI_ACT_NONE;
    snprintf(nm, sizeof nm, "case%d", i);

    mi_tensor y = mi_tensor_view(NULL, yref.ndim, yref.shape, "y");
    y.data = mi_alloc_aligned((size_t)mi_tensor_numel(&y) * sizeof(float));
    int64_t os[MI_MAX_DIMS];
    void *ws = NULL;
    if (p[P_KIND] == 0) {
        mi_conv c;
        ck_assert_msg(mi_conv_init_isa(&c, &d, wt.data, p[P_BIAS] ? bt.data : NULL, nm, isa) == MI_OK,
                      "%s", mi_last_error());
        ck_assert_int_eq(mi_conv_out_shape(&c, &x, os), MI_OK);
        for (int j = 0; j < y.ndim; j++) ck_assert_int_eq(os[j], y.shape[j]);
        ws = mi_alloc_aligned(mi_conv_workspace(&c, &x));
        if (c.path != MI_ISA_REF && !c.dw) ck_assert_int_eq(c.wino, wino_m(algo));
        if (isa == MI_ISA_REF) mi_conv_forward_ref(&c, &y, &x, p[P_RES] ? &rt : NULL, act);
        else mi_conv_forward(&c, &y, &x, p[P_RES] ? &rt : NULL, act, ws);
        if (p[P_RES]) {   /* the residual added in place (the output is the residual's tensor): the same bits */
            const size_t bytes = (size_t)mi_tensor_numel(&y) * sizeof(float);
            mi_tensor z = y;
            z.data = mi_alloc_aligned(bytes);
            memcpy(z.data, rt.data, bytes);
            if (isa == MI_ISA_REF) mi_conv_forward_ref(&c, &z, &x, &z, act);
            else mi_conv_forward(&c, &z, &x, &z, act, ws);
            ck_assert_msg(!memcmp(z.data, y.data, bytes), "case %d on %s, lanes %d, algo %d: the residual in "
                          "place differs", i, mi_isa_name(isa), lanes, algo);
            mi_free_aligned(z.data);
        }
        mi_conv_free(&c);
    } else {
        mi_deconv_desc dd = { .d = d };
        for (int j = 0; j < 3; j++) dd.out_pad[j] = (int64_t)p[P_OP + j];
        mi_deconv c;
        ck_assert_msg(mi_deconv_init_isa(&c, &dd, wt.data, p[P_BIAS] ? bt.data : NULL, nm, isa) == MI_OK,
                      "%s", mi_last_error());
        ck_assert_int_eq(mi_deconv_out_shape(&c, &x, os), MI_OK);
        for (int j = 0; j < y.ndim; j++) ck_assert_int_eq(os[j], y.shape[j]);
        ws = mi_alloc_aligned(mi_deconv_workspace(&c, &x));
        if (isa == MI_ISA_REF) mi_deconv_forward_ref(&c, &y, &x, p[P_RES] ? &rt : NULL, act);
        else mi_deconv_forward(&c, &y, &x, p[P_RES] ? &rt : NULL, act, ws);
        mi_deconv_free(&c);
    }
    const int64_t n = mi_tensor_numel(&y);
    const double scale = max_abs(yref.data, n) + 1e-30;
    char what[64];
    snprintf(what, sizeof what, "case %d on %s, lanes %d, algo %d", i, mi_isa_name(isa), lanes, algo);
    const double err = mi_assert_close(y.data, yref.data, n, ATOL_REL * scale, RTOL, what);
    mi_free_aligned(ws);
    mi_free_aligned(y.data);
    return err / scale;
}

/* A forward convolution (not transposed) that Winograd can run. */
static int case_is_winograd(const mi_weights *w, int i) {
    char nm[32];
    snprintf(nm, sizeof nm, "c%d.p", i);
    const float *p = mi_fixture_tensor(w, nm).data;
    mi_conv_desc d = { .sp = (int)p[P_SP] };
    for (int j = 0; j < 3; j++) {
        d.k[j] = (int64_t)p[P_K + j];
        d.stride[j] = (int64_t)p[P_S + j];
        d.dil[j] = (int64_t)p[P_D + j];
    }
    return p[P_KIND] == 0 && mi_conv_wino_ok(&d);
}

/* One check per ISA (a loop test: _i indexes isas), so an ISA this CPU (or MI_ISA) lacks is
 * counted as a skip by tests/run.sh, not as a pass. */
START_TEST(matches_torch_on_every_isa)
{
    static const mi_isa isas[] = { MI_ISA_REF, MI_ISA_PORTABLE, MI_ISA_NEON, MI_ISA_AVX2, MI_ISA_AVX512 };
    const int k = _i;
    if (isas[k] > mi_cpu_isa()) MI_SKIP("%s not available (CPU or MI_ISA)", mi_isa_name(isas[k]));
    if (isas[k] != MI_ISA_REF && !fast_isa_distinct(isas[k]))
        MI_SKIP("%s: no kernels of its own in this build", mi_isa_name(isas[k]));
    mi_weights w;
    mi_fixture_open(&w, "conv_cases.safetensors");
    long long ncases;
    ck_assert_int_eq(mi_weights_meta_int(&w, "cases", 1, 10000, &ncases), MI_OK);
    for (int lanes = 1; lanes <= (isas[k] == MI_ISA_REF ? 1 : 2); lanes++)
        for (int algo = MI_CONV_DIRECT; algo <= (isas[k] == MI_ISA_REF ? MI_CONV_DIRECT : MI_CONV_WINOGRAD4); algo++) {
            double worst = 0;
            int ran = 0;
            for (int i = 0; i < ncases; i++) {
                if (wino_m(algo) && !case_is_winograd(&w, i)) continue;
                worst = fmax(worst, run_case(&w, i, isas[k], lanes, algo));
                ran++;
            }
            printf("MAXREL %s lanes %d %s: %.3g over %d cases\n", mi_isa_name(isas[k]), lanes,
                   algo_name(algo), worst, ran);
            if (wino_m(algo)) ck_assert_int_ge(ran, 4);
        }
    mi_weights_close(&w);
}
END_TEST

/* A conv with random weights and input; y from the given ISA (threads as set). */
typedef struct { mi_conv c; mi_tensor x, y, r; void *ws; } rig;

static void rig_init(rig *g, mi_conv_desc d, int64_t h, int64_t wd, mi_isa isa, int res, uint64_t seed) {
    if (isa == MI_ISA_REF) d.lanes = 0;
    int64_t K = d.cin / d.groups * d.k[0] * d.k[1] * d.k[2];
    float *wt = mi_alloc_aligned((size_t)(d.cout * K) * sizeof(float)), *b = mi_alloc_aligned((size_t)d.cout * sizeof(float));
    mi_fill_random(wt, d.cout * K, seed);
    mi_fill_random(b, d.cout, seed + 1);
    ck_assert_msg(mi_conv_init_isa(&g->c, &d, wt, b, "rig", isa) == MI_OK, "%s", mi_last_error());
    if (g->c.path != MI_ISA_REF && !g->c.dw && d.algo)   /* forced: the algorithm under test really runs */
        ck_assert_int_eq(g->c.wino, mi_conv_wino_ok(&d) ? wino_m(d.algo) : 0);
    mi_free_aligned(wt);
    mi_free_aligned(b);
    int64_t xs[4] = { 1, d.cin, h, wd }, os[MI_MAX_DIMS];
    g->x = mi_tensor_view(NULL, 4, xs, "x");
    g->x.data = mi_alloc_aligned((size_t)mi_tensor_numel(&g->x) * sizeof(float));
    mi_fill_random(g->x.data, mi_tensor_numel(&g->x), seed + 2);
    ck_assert_int_eq(mi_conv_out_shape(&g->c, &g->x, os), MI_OK);
    g->y = mi_tensor_view(NULL, 4, os, "y");
    g->r = mi_tensor_view(NULL, 4, os, "res");
    g->y.data = mi_alloc_aligned((size_t)mi_tensor_numel(&g->y) * sizeof(float));
    g->r.data = res ? mi_alloc_aligned((size_t)mi_tensor_numel(&g->y) * sizeof(float)) : NULL;
    if (res) mi_fill_random(g->r.data, mi_tensor_numel(&g->y), seed + 3);
    g->ws = mi_alloc_aligned(mi_conv_workspace(&g->c, &g->x));
}

static void rig_run(rig *g) {
    memset(g->y.data, 0xff, (size_t)mi_tensor_numel(&g->y) * sizeof(float));  /* NaN: catches holes */
    mi_conv_forward(&g->c, &g->y, &g->x, g->r.data ? &g->r : NULL, MI_ACT_RELU, g->ws);
}

static void rig_free(rig *g) {
    mi_conv_free(&g->c);
    mi_free_aligned(g->x.data);
    mi_free_aligned(g->y.data);
    mi_free_aligned(g->r.data);
    mi_free_aligned(g->ws);
}

START_TEST(fast_matches_reference_on_tails)
{
    static const int couts[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 29, 33 };
    static const int pix[] = { 1, 3, 4, 5, 7, 8, 15, 16, 17, 31, 33, 47, 49, 67 };
    int ran = 0, bits = 0;
    for (mi_isa isa = MI_ISA_PORTABLE; isa <= mi_cpu_isa(); isa++) {
        if (!fast_isa_distinct(isa)) continue;
        for (int lanes = 1; lanes <= 2; lanes++)
        for (int shape = 0; shape < 6; shape++)   /* 3, 4: shape 1 by Winograd F(2x2), F(4x4) */
            for (size_t ci = 0; ci < sizeof couts / sizeof *couts; ci++)
                for (size_t pi = 0; pi < sizeof pix / sizeof *pix; pi++) {
                    /* 1x1 over a 1 x n row; 3x3 pad 1 over n x 3; 3x3 stride 2 over (2n) x 5; 1x1
                     * stride 2 over n rows 26, 27, 28 or 56 wide */
                    static const int64_t s2w[] = { 26, 27, 28, 56 };
                    const int n = pix[pi], co = couts[ci], cin = 3 + (int)(ci + pi) % 11;
                    mi_conv_desc d = shape == 0 ? mi_conv2d_desc(cin, co, 1, 1, 0, 1)
                                   : shape == 2 ? mi_conv2d_desc(cin, co, 3, 2, 1, 1)
                                   : shape == 5 ? mi_conv2d_desc(cin, co, 1, 2, 0, 1)
                                                : mi_conv2d_desc(cin, co, 3, 1, 1, 1);
                    d.lanes = lanes;
                    d.algo = shape == 3 ? MI_CONV_WINOGRAD2 : shape == 4 ? MI_CONV_WINOGRAD4 : MI_CONV_DIRECT;
                    /* Winograd: n x 3 and 3 x n (tile rows and columns cut by the map's edge) */
                    const int64_t h = shape == 0 ? 1 : shape == 2 ? 2 * n : shape >= 3 && pi % 2 ? 3 : n;
                    const int64_t wd = shape == 0 ? n : shape == 2 ? 5 : shape == 5 ? s2w[pi % 4]
                                     : shape >= 3 && pi % 2 ? n : 3;
                    rig f, r;
                    rig_init(&f, d, h, wd, isa, (int)pi & 1, 7 + ci * 31 + pi);
                    rig_init(&r, d, h, wd, MI_ISA_REF, (int)pi & 1, 7 + ci * 31 + pi);
                    rig_run(&f);
                    mi_conv_forward_ref(&r.c, &r.y, &r.x, r.r.data ? &r.r : NULL, MI_ACT_RELU);
                    const int64_t nn = mi_tensor_numel(&r.y);
                    char what[96];
                    snprintf(what, sizeof what, "%s lanes %d shape %d cout %d pixels %d", mi_isa_name(isa),
                             lanes, shape, co, n);
                    mi_assert_close(f.y.data, r.y.data, nn, ATOL_REL * (max_abs(r.y.data, nn) + 1e-30), RTOL, what);
                    if (lanes == 2 && f.c.chan_lanes) {   /* the same FMAs and epilogue either way round */
                        rig p;
                        d.lanes = 1;
                        rig_init(&p, d, h, wd, isa, (int)pi & 1, 7 + ci * 31 + pi);
                        rig_run(&p);
                        ck_assert_int_eq(p.c.chan_lanes, 0);
                        ck_assert_msg(!memcmp(p.y.data, f.y.data, (size_t)nn * sizeof(float)),
                                      "%s: channels on the lanes differ from pixels on the lanes", what);
                        rig_free(&p);
                        bits++;
                    }
                    rig_free(&f);
                    rig_free(&r);
                    ran++;
                }
    }
    if (!ran) MI_SKIP("no fast convolution path on this CPU");
    ck_assert_int_gt(bits, 0);
}
END_TEST

/* relu is `v < 0 ? 0 : v` on every path: a NaN that reaches an output stays NaN (a vector max
 * with the operands one way round would turn it into 0 and hide a corrupt input). The direct
 * paths, both orientations, with and without a residual: the outputs whose window holds the NaN
 * are NaN in the reference, and exactly those are NaN in the fast path. */
START_TEST(relu_keeps_nan)
{
    const mi_conv_desc shapes[] = { mi_conv2d_desc(8, 20, 1, 1, 0, 1), mi_conv2d_desc(8, 20, 3, 1, 1, 1),
                                    mi_conv2d_desc(8, 20, 3, 2, 1, 1) };
    int ran = 0;
    for (mi_isa isa = MI_ISA_PORTABLE; isa <= mi_cpu_isa(); isa++) {
        if (!fast_isa_distinct(isa)) continue;
        for (int lanes = 1; lanes <= 2; lanes++)
            for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
                for (int res = 0; res <= 1; res++) {
                    mi_conv_desc d = shapes[si];
                    d.lanes = lanes;
                    d.algo = MI_CONV_DIRECT;
                    rig f, r;
                    rig_init(&f, d, 9, 21, isa, res, 5 + si);
                    rig_init(&r, d, 9, 21, MI_ISA_REF, res, 5 + si);
                    f.x.data[3 * 9 * 21 + 4 * 21 + 17] = r.x.data[3 * 9 * 21 + 4 * 21 + 17] = NAN;
                    rig_run(&f);
                    mi_conv_forward_ref(&r.c, &r.y, &r.x, r.r.data ? &r.r : NULL, MI_ACT_RELU);
                    int64_t nan_ref = 0;
                    for (int64_t i = 0; i < mi_tensor_numel(&r.y); i++) {
                        nan_ref += isnan(r.y.data[i]) != 0;
                        ck_assert_msg(!isnan(r.y.data[i]) == !isnan(f.y.data[i]),
                                      "%s lanes %d shape %zu residual %d: output %lld is %g, the reference's %g",
                                      mi_isa_name(isa), lanes, si, res, (long long)i, f.y.data[i], r.y.data[i]);
                    }
                    ck_assert_int_gt(nan_ref, 0);
                    rig_free(&f);
                    rig_free(&r);
                    ran++;
                }
    }
    if (!ran) MI_SKIP("no fast convolution path on this CPU");
}
END_TEST

START_TEST(same_bits_for_1_2_4_threads)
{
    const mi_conv_desc shapes[] = {
        mi_conv2d_desc(64, 128, 3, 1, 1, 1),   /* several M chunks and pixel panels */
        mi_conv2d_desc(3, 64, 7, 2, 3, 1),     /* stem */
        mi_conv2d_desc(300, 40, 3, 1, 1, 1),   /* K blocks */
        mi_conv2d_desc(256, 512, 1, 2, 0, 1),  /* downsample */
        mi_conv2d_desc(48, 40, 1, 2, 0, 1),    /* downsample with output rows of 28: read in place */
        mi_conv2d_desc(24, 36, 3, 1, 1, 3),    /* grouped */
        mi_conv2d_desc(48, 40, 3, 1, 2, 2),    /* grouped, padding 2 (Winograd) */
        mi_conv2d_desc(32, 32, 3, 1, 1, 32),   /* depthwise (ops/conv_dw.c) */
        mi_conv2d_desc(24, 24, 5, 2, 2, 24),   /* depthwise, stride 2 */
        mi_conv2d_desc(16, 24, 3, 2, 1, 1),    /* stride 2: a block of output rows per thread */
        mi_conv2d_desc(24, 36, 3, 2, 1, 3),    /* the same, grouped */
        mi_conv2d_desc(512, 8, 3, 2, 1, 1),    /* 6 output rows: blocks at 2 threads, not at 4; each
                                                  block's buffer larger than the GEMM scratch */
        mi_conv2d_desc(192, 192, 3, 1, 1, 1),  /* Winograd: one block at one thread (weights that
                                                  outweigh the map), two at more */
        mi_conv2d_desc(32, 32, 3, 1, 1, 1),    /* F(4x4), pixels on the lanes: 5 blocks of two tile
                                                  rows, at 2 threads the middle one cut in two */
    };
    static const int64_t hw[][2] = { { 20, 21 }, { 45, 38 }, { 9, 10 }, { 14, 14 }, { 57, 56 }, { 11, 13 }, { 15, 8 },
                                     { 37, 75 }, { 41, 67 }, { 29, 31 }, { 19, 22 }, { 11, 400 }, { 10, 10 },
                                     { 40, 40 } };
    const int saved = mi_threads();
    for (mi_isa isa = MI_ISA_REF; isa <= mi_cpu_isa(); isa++) {
        if (isa != MI_ISA_REF && !fast_isa_distinct(isa)) continue;
        for (int lanes = 1; lanes <= 2; lanes++)
        for (int algo = MI_CONV_DIRECT; algo <= MI_CONV_WINOGRAD4; algo++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            if (wino_m(algo) && (isa == MI_ISA_REF || !mi_conv_wino_ok(&shapes[s]))) continue;
            float *first = NULL;
            int64_t n = 0;
            for (int t = 1; t <= 4; t *= 2) {
                mi_set_threads(t);   /* before rig_init: the workspace covers t threads */
                rig g;
                mi_conv_desc d = shapes[s];
                d.lanes = lanes;
                d.algo = algo;
                rig_init(&g, d, hw[s][0], hw[s][1], isa, 1, 100 + s);
                rig_run(&g);
                n = mi_tensor_numel(&g.y);
                if (!first) {
                    first = malloc((size_t)n * sizeof(float));
                    memcpy(first, g.y.data, (size_t)n * sizeof(float));
                } else {
                    ck_assert_msg(memcmp(first, g.y.data, (size_t)n * sizeof(float)) == 0,
                                  "%s lanes %d algo %d shape %zu: %d threads differ from 1",
                                  mi_isa_name(isa), lanes, algo, s, t);
                }
                rig_free(&g);
            }
            free(first);
        }
        /* transposed: V-Net up-convolution and an overlapping one */
        const mi_deconv_desc dd[] = { mi_deconv3d_desc(32, 16, 2, 2, 0, 0, 1), mi_deconv2d_desc(40, 24, 3, 2, 1, 1, 1) };
        for (int s = 0; s < 2; s++) {
            const mi_conv_desc *d = &dd[s].d;
            int64_t xs[5] = { 1, d->cin, 5, 6, 7 }, os[MI_MAX_DIMS], kv = d->k[0] * d->k[1] * d->k[2];
            if (d->sp == 2) { xs[2] = 13; xs[3] = 11; }
            float *wt = malloc((size_t)(d->cin * d->cout * kv) * sizeof(float));
            mi_fill_random(wt, d->cin * d->cout * kv, 5);
            mi_tensor x = mi_tensor_view(malloc((size_t)(d->cin * 13 * 11 * 7) * sizeof(float)), d->sp + 2, xs, "x");
            mi_fill_random(x.data, mi_tensor_numel(&x), 6);
            float *first = NULL;
            for (int t = 1; t <= 4; t *= 2) {
                mi_set_threads(t);
                mi_deconv c;
                ck_assert_int_eq(mi_deconv_init_isa(&c, &dd[s], wt, NULL, "up", isa), MI_OK);
                ck_assert_int_eq(mi_deconv_out_shape(&c, &x, os), MI_OK);
                mi_tensor y = mi_tensor_view(NULL, x.ndim, os, "y");
                const int64_t n = mi_tensor_numel(&y);
                y.data = malloc((size_t)n * sizeof(float));
                void *ws = mi_alloc_aligned(mi_deconv_workspace(&c, &x));
                mi_deconv_forward(&c, &y, &x, NULL, MI_ACT_RELU, ws);
                if (!first) first = y.data;
                else {
                    ck_assert_msg(memcmp(first, y.data, (size_t)n * sizeof(float)) == 0,
                                  "%s transposed %d: %d threads differ from 1", mi_isa_name(isa), s, t);
                    free(y.data);
                }
                mi_free_aligned(ws);
                mi_deconv_free(&c);
            }
            free(first);
            free(x.data);
            free(wt);
        }
    }
    mi_set_threads(saved);
}
END_TEST

/* d (a Winograd form) on an h x w input of isa at 1, 2 and 4 threads: the output at one thread
 * against the direct convolution's within tolerance, the others memcmp against it; with blocks,
 * the Winograd blocks per image expected at 1, 2 and 4 threads. */
static void winograd_threads_agree(mi_isa isa, mi_conv_desc d, int64_t h, int64_t w, uint64_t seed,
                                   const int64_t *blocks) {
    const int saved = mi_threads();
    mi_conv_desc dd = d;
    dd.algo = MI_CONV_DIRECT;
    dd.lanes = 0;
    mi_set_threads(2);
    rig r;
    rig_init(&r, dd, h, w, isa, 1, seed);
    rig_run(&r);
    const int64_t n = mi_tensor_numel(&r.y);
    float *first = NULL;
    for (int t = 1, i = 0; t <= 4; t *= 2, i++) {
        mi_set_threads(t);   /* before rig_init: the workspace covers t threads */
        rig g;
        rig_init(&g, d, h, w, isa, 1, seed);
        if (blocks) ck_assert_int_eq(mi_conv_wino_blocks(&g.c, 1, h, w, t), blocks[i]);
        rig_run(&g);
        char what[64];
        snprintf(what, sizeof what, "%s, %d threads", mi_isa_name(isa), t);
        if (!first) {
            first = malloc((size_t)n * sizeof(float));
            memcpy(first, g.y.data, (size_t)n * sizeof(float));
            mi_assert_close(g.y.data, r.y.data, n, ATOL_REL * max_abs(r.y.data, n), RTOL, what);
        } else {
            ck_assert_msg(memcmp(first, g.y.data, (size_t)n * sizeof(float)) == 0, "%s differ from 1", what);
        }
        rig_free(&g);
    }
    free(first);
    rig_free(&r);
    mi_set_threads(saved);
}

/* Winograd blocks of tile rows that do not divide among the threads, one short, with half-width
 * GEMM tiles (run16): at 2 threads the middle block is cut in two, one half for each thread. A map
 * that takes it (32 -> 32, F(4x4), pixels on the lanes, 40 x 40: 5 blocks of two tile rows, 6 at
 * 2 threads; 4 at 4, evened by geom()), its output against torch (the forced direct path's) and
 * the same bits at 1, 2, 4. */
START_TEST(winograd_cut_block)
{
    int ran = 0;
    for (mi_isa isa = MI_ISA_PORTABLE; isa <= mi_cpu_isa(); isa++) {
        const mi_gemm_ukr *u = mi_gemm_ukr_for(isa);
        if (!u || !u->run16 || !fast_isa_distinct(isa)) continue;
        mi_conv_desc d = mi_conv2d_desc(32, 32, 3, 1, 1, 1);
        d.algo = MI_CONV_WINOGRAD4;
        d.lanes = 1;
        winograd_threads_agree(isa, d, 40, 40, 78, (const int64_t[3]){ 5, 6, 4 });
        ran++;
    }
    if (!ran) MI_SKIP("no kernel table with run16 on this CPU");
}
END_TEST

/* Winograd whose transformed weights outgrow the last-level cache (here 800 -> 800 channels,
 * F(2x2): 41 MB) takes its map in a few large blocks, as many as a multiple of the thread count,
 * that may start and end inside a tile row (289 tiles: 2 blocks at 1 and 2 threads, 4 at 4):
 * the same bits for 1, 2 and 4 threads, and the direct convolution's result within tolerance.
 * The fast ISAs only (the scalar reference would take seconds at this size). */
START_TEST(winograd_large_weights_in_large_blocks)
{
    int ran = 0;
    for (mi_isa isa = MI_ISA_PORTABLE; isa <= mi_cpu_isa(); isa++) {
        if (!fast_isa_distinct(isa)) continue;
        mi_conv_desc d = mi_conv2d_desc(800, 800, 3, 1, 1, 1);
        d.algo = MI_CONV_WINOGRAD2;
        winograd_threads_agree(isa, d, 34, 34, 77, NULL);
        ran++;
    }
    if (!ran) MI_SKIP("no fast convolution path on this CPU");
}
END_TEST

/* Depthwise 2-D (ops/conv_dw.c) against the reference, bit for bit (memcmp): widths 1-17, 31,
 * 40 and 67 (the AVX2 kernel's 32-column blocks, its last group of whole and masked vectors, its
 * windowed edges from width 24; the NEON kernel's 16-column blocks, its last whole vectors and
 * 1-3 portable columns, its windowed edges from width 16, its stride-2 loads that stop at the
 * row's end), heights 1-9, stride 1, 2 and 3, padding 0, 1, 2 and 9, kernels
 * 3 and 5, dilation 1 and 2, residual and ReLU
 * on and off, on every fast ISA, with a NaN and an Inf in the input and, once per shape, an
 * infinite weight (the border taps the reference skips must be skipped, not multiplied by a zero). */
START_TEST(depthwise_equals_reference)
{
    static const int widths[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 31, 40, 67 };
    int ran = 0, skipped = 0;
    for (mi_isa isa = MI_ISA_PORTABLE; isa <= mi_cpu_isa(); isa++) {
        if (!fast_isa_distinct(isa)) continue;
        for (size_t wi = 0; wi < sizeof widths / sizeof *widths; wi++)
            for (int v = 0; v < 3 * 4 * 2 * 2 * 4; v++) {
                static const int pads[4] = { 0, 1, 2, 9 };   /* 9: more than one edge block per side */
                const int s = 1 + v % 3, p = pads[v / 3 % 4], k = v / 12 % 2 ? 5 : 3, dil = 1 + v / 24 % 2,
                          flags = v / 48;
                const int64_t C = 3, W = widths[wi], H = 1 + (int64_t)(wi * 5 + (size_t)v) % 9;
                mi_conv_desc d = mi_conv2d_desc(C, C, k, s, p, C);
                d.dil[1] = d.dil[2] = dil;
                const int64_t nw = C * k * k, xs[4] = { 2, C, H, W };
                float *wt = mi_alloc_aligned((size_t)nw * sizeof(float)), b[3] = { 0.5f, -0.25f, 0.125f };
                mi_fill_random(wt, nw, (uint64_t)v);
                if (flags == 3) wt[0] = INFINITY;   /* tap (0, 0) of channel 0 */
                mi_conv f, r;
                ck_assert_int_eq(mi_conv_init_isa(&f, &d, wt, b, "dw", isa), MI_OK);
                ck_assert_int_eq(mi_conv_init_isa(&r, &d, wt, b, "dw", MI_ISA_REF), MI_OK);
                ck_assert_int_eq(f.dw, 1);
                ck_assert_int_eq(r.dw, 0);
                mi_free_aligned(wt);
                mi_tensor x = mi_tensor_view(NULL, 4, xs, "x");
                int64_t os[MI_MAX_DIMS];
                if (mi_conv_out_shape(&f, &x, os) != MI_OK) {   /* the kernel does not fit the map */
                    mi_conv_free(&f);
                    mi_conv_free(&r);
                    skipped++;
                    continue;
                }
                const int64_t n = os[0] * os[1] * os[2] * os[3];
                x.data = mi_alloc_aligned((size_t)(2 * C * H * W) * sizeof(float));
                mi_fill_random(x.data, 2 * C * H * W, 1000 + (uint64_t)v);
                if (flags == 2 && H * W > 2) {
                    x.data[H * W / 2] = NAN;
                    x.data[C * H * W + 1] = -INFINITY;
                }
                mi_tensor ya = mi_tensor_view(mi_alloc_aligned((size_t)n * sizeof(float)), 4, os, "y");
                mi_tensor yb = mi_tensor_view(mi_alloc_aligned((size_t)n * sizeof(float)), 4, os, "y");
                mi_tensor res = mi_tensor_view(mi_alloc_aligned((size_t)n * sizeof(float)), 4, os, "res");
                mi_fill_random(res.data, n, 77 + (uint64_t)v);
                const mi_tensor *rp = flags & 1 ? &res : NULL;
                const mi_act act = v % 2 ? MI_ACT_RELU : MI_ACT_NONE;
                ck_assert_int_eq(mi_conv_workspace(&f, &x), 0);
                memset(ya.data, 0xff, (size_t)n * sizeof(float));
                memset(yb.data, 0x7f, (size_t)n * sizeof(float));
                mi_conv_forward_ref(&r, &ya, &x, rp, act);
                mi_conv_forward(&f, &yb, &x, rp, act, NULL);
                ck_assert_msg(memcmp(ya.data, yb.data, (size_t)n * sizeof(float)) == 0,
                              "%s depthwise W %lld H %lld k %d stride %d pad %d dil %d flags %d relu %d: not the "
                              "reference's bits", mi_isa_name(isa), (long long)W, (long long)H, k, s, p, dil, flags,
                              act == MI_ACT_RELU);
                mi_free_aligned(x.data);
                mi_free_aligned(ya.data);
                mi_free_aligned(yb.data);
                mi_free_aligned(res.data);
                mi_conv_free(&f);
                mi_conv_free(&r);
                ran++;
            }
    }
    printf("depthwise sweep: %d shapes equal the reference bit for bit, %d too small for the kernel\n", ran, skipped);
    if (!ran) MI_SKIP("no fast convolution path on this CPU");
}
END_TEST

/* A depthwise layer stays on its path through mi_conv_prepare (no GEMM repacking) and after
 * mi_conv_release_source; MI_ISA_REF keeps it on the reference. */
START_TEST(depthwise_prepare_release)
{
    const mi_conv_desc d = mi_conv2d_desc(16, 16, 3, 2, 1, 16);
    float wt[16 * 9], b[16];
    mi_fill_random(wt, 16 * 9, 1);
    mi_fill_random(b, 16, 2);
    mi_conv f, r;
    ck_assert_int_eq(mi_conv_init_isa(&r, &d, wt, b, "dw", MI_ISA_REF), MI_OK);
    ck_assert_int_eq(r.path, MI_ISA_REF);
    ck_assert_int_eq(r.dw, 0);
    ck_assert_int_eq(mi_conv_init(&f, &d, wt, b, "dw"), MI_OK);
    if (f.path == MI_ISA_REF) {
        mi_conv_free(&f);
        mi_conv_free(&r);
        MI_SKIP("MI_ISA=ref: no fast path");
    }
    int64_t xs[4] = { 1, 16, 29, 45 }, os[MI_MAX_DIMS];
    mi_tensor x = mi_tensor_view(mi_alloc_aligned(16 * 29 * 45 * sizeof(float)), 4, xs, "x");
    mi_fill_random(x.data, 16 * 29 * 45, 3);
    ck_assert_int_eq(mi_conv_prepare(&f, &x), MI_OK);
    ck_assert_int_eq(f.dw, 1);
    ck_assert_int_eq(f.wino, 0);
    mi_conv_release_source(&f);
    ck_assert_ptr_null(f.weight);
    ck_assert_int_eq(mi_conv_out_shape(&f, &x, os), MI_OK);
    const int64_t n = os[1] * os[2] * os[3];
    mi_tensor ya = mi_tensor_view(mi_alloc_aligned((size_t)n * sizeof(float)), 4, os, "y");
    mi_tensor yb = mi_tensor_view(mi_alloc_aligned((size_t)n * sizeof(float)), 4, os, "y");
    mi_conv_forward_ref(&r, &ya, &x, NULL, MI_ACT_RELU);
    mi_conv_forward(&f, &yb, &x, NULL, MI_ACT_RELU, NULL);
    ck_assert(memcmp(ya.data, yb.data, (size_t)n * sizeof(float)) == 0);
    mi_free_aligned(x.data);
    mi_free_aligned(ya.data);
    mi_free_aligned(yb.data);
    mi_conv_free(&f);
    mi_conv_free(&r);
}
END_TEST

START_TEST(bad_shapes_name_the_layer)
{
    float w[16 * 8 * 9] = { 0 };
    mi_conv c;
    mi_conv_desc d = mi_conv2d_desc(8, 16, 3, 1, 0, 1);
    ck_assert_int_eq(mi_conv_init(&c, &d, w, NULL, "layer9.conv2"), MI_OK);
    int64_t os[MI_MAX_DIMS];
    int64_t s1[4] = { 1, 7, 10, 10 }, s2[3] = { 8, 10, 10 }, s3[4] = { 1, 8, 2, 10 };
    mi_tensor x1 = mi_tensor_view(NULL, 4, s1, "x"), x2 = mi_tensor_view(NULL, 3, s2, "x"),
              x3 = mi_tensor_view(NULL, 4, s3, "x");
    ck_assert_int_eq(mi_conv_out_shape(&c, &x1, os), MI_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "layer9.conv2"));
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "[1,7,10,10], expected 8 channels"));
    ck_assert_int_eq(mi_conv_out_shape(&c, &x2, os), MI_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "expected 4 dimensions"));
    ck_assert_int_eq(mi_conv_out_shape(&c, &x3, os), MI_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "layer9.conv2: input 'x' has shape [1,8,2,10], too small"));
    mi_conv_free(&c);

    mi_conv_desc bad = mi_conv2d_desc(8, 16, 3, 1, 0, 3);
    ck_assert_int_eq(mi_conv_init(&c, &bad, w, NULL, "stem"), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "stem: channels 8 -> 16 do not split into 3 groups"));
    bad = mi_conv2d_desc(8, 16, 3, 0, 0, 1);
    ck_assert_int_eq(mi_conv_init(&c, &bad, w, NULL, "stem"), MI_ERR_ARG);

    mi_deconv t;
    mi_deconv_desc td = mi_deconv2d_desc(8, 16, 2, 2, 0, 2, 1);   /* output_padding 2 >= stride 2 */
    ck_assert_int_eq(mi_deconv_init(&t, &td, w, NULL, "up3"), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "up3: output padding 2"));
    td = mi_deconv2d_desc(8, 16, 2, 2, 0, 0, 1);
    ck_assert_int_eq(mi_deconv_init(&t, &td, w, NULL, "up3"), MI_OK);
    ck_assert_int_eq(mi_deconv_out_shape(&t, &x1, os), MI_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "up3: input 'x' has shape [1,7,10,10], expected 8 channels"));
    mi_deconv_free(&t);
}
END_TEST

/* mi_conv_prepare: repacks for the input size (on a SIMD path: Winograd F(4x4) for a 3x3 layer
 * on a map of >= 9 4x4 tiles, F(2x2) with fewer, direct with fewer than 64 input channels,
 * channels on the lanes for a stride-2 layer with a 6x6 output and for a 1x1 stride-2 one whose
 * output rows the table reads in place), same results as the reference; a bad shape is refused
 * with the layer's name. */
START_TEST(prepare_repacks_for_the_input_size)
{
    const mi_conv_desc descs[] = { mi_conv2d_desc(96, 64, 3, 1, 1, 1), mi_conv2d_desc(96, 64, 3, 2, 1, 1),
                                   mi_conv2d_desc(64, 48, 3, 1, 1, 1), mi_conv2d_desc(32, 48, 3, 1, 1, 1),
                                   mi_conv2d_desc(40, 24, 1, 2, 0, 1) };
    static const int64_t hw[][2] = { { 7, 6 }, { 12, 11 }, { 30, 29 }, { 30, 29 }, { 9, 56 } };
    static const int wino[] = { 2, 0, 4, 0, 0 };
    for (int k = 0; k < 5; k++) {
        rig f, r;
        rig_init(&f, descs[k], hw[k][0], hw[k][1], mi_cpu_isa(), 1, 11);
        rig_init(&r, descs[k], hw[k][0], hw[k][1], MI_ISA_REF, 1, 11);
        ck_assert_int_eq(f.c.chan_lanes, 0);
        ck_assert_int_eq(f.c.wino, 0);
        ck_assert_int_eq(mi_conv_prepare(&f.c, &f.x), MI_OK);
        const mi_gemm_ukr *u = mi_gemm_ukr_for((mi_isa)f.c.path);
        if (u) ck_assert_int_eq(f.c.wino, wino[k]);
        if (u && u->run_t && k == 1) ck_assert_int_eq(f.c.chan_lanes, 1);
        if (u && u->run_t_s2 && k == 4) ck_assert_int_eq(f.c.chan_lanes, 28 % u->mr == 0);
        ck_assert_int_eq(mi_conv_prepare(&f.c, &f.x), MI_OK);   /* idempotent */
        mi_free_aligned(f.ws);   /* sized before prepare chose the algorithm */
        f.ws = mi_alloc_aligned(mi_conv_workspace(&f.c, &f.x));
        rig_run(&f);
        mi_conv_forward_ref(&r.c, &r.y, &r.x, &r.r, MI_ACT_RELU);
        const int64_t n = mi_tensor_numel(&r.y);
        mi_assert_close(f.y.data, r.y.data, n, ATOL_REL * max_abs(r.y.data, n), RTOL, "prepared");
        int64_t bad[4] = { 1, descs[k].cin - 1, hw[k][0], hw[k][1] };
        mi_tensor xb = mi_tensor_view(NULL, 4, bad, "x");
        ck_assert_int_eq(mi_conv_prepare(&f.c, &xb), MI_ERR_SHAPE);
        ck_assert_ptr_nonnull(strstr(mi_last_error(), "rig: input 'x' has shape [1,"));
        ck_assert_ptr_nonnull(strstr(mi_last_error(), "channels"));
        rig_free(&f);
        rig_free(&r);
    }
}
END_TEST

/* The SIMD transforms against the scalar ones, bit for bit, for F(2x2) and F(4x4): every tail of
 * a vector, rows cut by the map's right edge, 1..m output rows further apart than their width
 * (the gaps must stay untouched), residual, relu. */
typedef void (*wino_in_fn)(float *, int64_t, const float *, int64_t, int64_t);
typedef void (*wino_out_fn)(float *, const float *, const float *, int64_t, int64_t, int64_t, int64_t, int, float,
                            int);

START_TEST(winograd_transforms_match_scalar)
{
    int ran = 0;
    for (mi_isa isa = MI_ISA_PORTABLE; isa <= mi_cpu_isa(); isa++) {
        const mi_gemm_ukr *u = mi_gemm_ukr_for(isa);
        if (!u || !fast_isa_distinct(isa)) continue;
        for (int m = 2; m <= 4; m += 2) {
            const wino_in_fn in = m == 2 ? u->wino2_in : u->wino4_in, in_ref = m == 2 ? mi_conv_wino2_in_ref : mi_conv_wino4_in_ref;
            const wino_out_fn out = m == 2 ? u->wino2_out : u->wino4_out, out_ref = m == 2 ? mi_conv_wino2_out_ref : mi_conv_wino4_out_ref;
            if (!in || !out) continue;
            const int al = m + 2, npt = al * al;
            for (int64_t tw = 1; tw <= 37; tw++) {
                const int64_t rowlen = MI_WINO_ROWLEN(tw), vs = tw + 5;
                float *rows = mi_alloc_aligned((size_t)(al * rowlen) * sizeof(float));
                float *a = mi_alloc_aligned((size_t)(npt * vs) * sizeof(float));
                float *b = mi_alloc_aligned((size_t)(npt * vs) * sizeof(float));
                mi_fill_random(rows, al * rowlen, (uint64_t)tw);
                memset(a, 0x7f, (size_t)(npt * vs) * sizeof(float));   /* the gaps must stay untouched */
                memset(b, 0x7f, (size_t)(npt * vs) * sizeof(float));
                in_ref(a, vs, rows, rowlen, tw);
                in(b, vs, rows, rowlen, tw);
                ck_assert_msg(!memcmp(a, b, (size_t)(npt * vs) * sizeof(float)), "%s F(%dx%d) in, tw %lld",
                              mi_isa_name(isa), m, m, (long long)tw);
                for (int64_t ow = m * tw - m + 1; ow <= m * tw; ow++)
                    for (int nrows = 1; nrows <= m; nrows++)
                        for (int v = 0; v < 4; v++) {
                            const int res = v & 1, relu = v >> 1;
                            const int64_t ldy = ow + 3;   /* rows further apart than the width: a block's part of a row */
                            const size_t ny = (size_t)(m * ldy + 64);
                            float *r = mi_alloc_aligned(ny * sizeof(float));
                            float *ya = mi_alloc_aligned(ny * sizeof(float)), *yb = mi_alloc_aligned(ny * sizeof(float));
                            mi_fill_random(r, (int64_t)ny, (uint64_t)(ow + 7 * v));
                            memset(ya, 0x7f, ny * sizeof(float));
                            memset(yb, 0x7f, ny * sizeof(float));
                            out_ref(ya, res ? r : NULL, a, vs, tw, ow, ldy, nrows, 0.25f, relu);
                            out(yb, res ? r : NULL, a, vs, tw, ow, ldy, nrows, 0.25f, relu);
                            ck_assert_msg(!memcmp(ya, yb, ny * sizeof(float)), "%s F(%dx%d) out, tw %lld ow %lld rows %d variant %d",
                                          mi_isa_name(isa), m, m, (long long)tw, (long long)ow, nrows, v);
                            mi_free_aligned(r);
                            mi_free_aligned(ya);
                            mi_free_aligned(yb);
                            ran++;
                        }
                mi_free_aligned(rows);
                mi_free_aligned(a);
                mi_free_aligned(b);
            }
        }
    }
    if (!ran) MI_SKIP("no SIMD Winograd transforms on this CPU");
}
END_TEST

/* One micro-kernel tile's operands for comparing two kernels on it: a (with room for what the
 * prefetch reaches), b, bias, a residual, and for each kernel its partial sums and outputs. */
typedef struct { int64_t kc, ldy; float *a, *b, *bias, *res, *acc[2], *y[2]; } tile_rig;

static void tile_rig_init(tile_rig *r, const mi_gemm_ukr *u) {
    r->kc = 37;
    r->ldy = 3 * u->nr + 5;
    r->a = mi_alloc_aligned((size_t)(r->kc * u->mr + 4096) * sizeof(float));
    r->b = mi_alloc_aligned((size_t)(r->kc * u->nr) * sizeof(float));
    r->bias = mi_alloc_aligned((size_t)u->mr * sizeof(float));
    r->res = mi_alloc_aligned((size_t)(u->mr * r->ldy) * sizeof(float));
    for (int i = 0; i < 2; i++) {
        r->acc[i] = mi_alloc_aligned((size_t)(u->mr * u->nr) * sizeof(float));
        r->y[i] = mi_alloc_aligned((size_t)(u->mr * r->ldy) * sizeof(float));
    }
    mi_fill_random(r->a, r->kc * u->mr + 4096, 1);
    mi_fill_random(r->b, r->kc * u->nr, 2);
    mi_fill_random(r->bias, u->mr, 3);
    mi_fill_random(r->res, u->mr * r->ldy, 4);
}

/* the same random partial sums for both kernels, outputs set to a pattern neither writes */
static void tile_rig_reset(tile_rig *r, const mi_gemm_ukr *u, uint64_t seed) {
    mi_fill_random(r->acc[0], u->mr * u->nr, seed);
    memcpy(r->acc[1], r->acc[0], (size_t)(u->mr * u->nr) * sizeof(float));
    for (int i = 0; i < 2; i++) memset(r->y[i], 0x7f, (size_t)(u->mr * r->ldy) * sizeof(float));
}

static void tile_rig_free(tile_rig *r) {
    mi_free_aligned(r->a);
    mi_free_aligned(r->b);
    mi_free_aligned(r->bias);
    mi_free_aligned(r->res);
    for (int i = 0; i < 2; i++) {
        mi_free_aligned(r->acc[i]);
        mi_free_aligned(r->y[i]);
    }
}

/* A kernel table's run_stream (the micro-kernel for weights that stream from memory: only the
 * prefetch differs) against its run, bit for bit: every row count, first / middle / last K block,
 * bias, residual, relu, a partial run of columns. */
START_TEST(run_stream_equals_run)
{
    int ran = 0;
    for (mi_isa isa = MI_ISA_PORTABLE; isa <= mi_cpu_isa(); isa++) {
        const mi_gemm_ukr *u = mi_gemm_ukr_for(isa);
        if (!u || !u->run_stream || !fast_isa_distinct(isa)) continue;
        tile_rig r;
        tile_rig_init(&r, u);
        const int64_t kc = r.kc, ldy = r.ldy;
        float *a = r.a, *b = r.b, *bias = r.bias, *res = r.res, *acc0 = r.acc[0], *acc1 = r.acc[1], *y0 = r.y[0], *y1 = r.y[1];
        for (int mr = 1; mr <= u->mr; mr++)
            for (int v = 0; v < 12; v++) {
                const int step = v % 3, first = step == 0, last = step == 2, cols = v & 4 ? u->nr - 3 : u->nr;
                const mi_gemm_seg seg = { .off = 2, .mask = cols >= 32 ? 0xffffffffu : (1u << cols) - 1u };
                tile_rig_reset(&r, u, (uint64_t)(10 + v));
                mi_gemm_ukr_args p = { .kc = kc, .a = a, .b = b, .acc = acc0, .first = first, .last = last,
                                       .relu = v >= 6, .y = y0, .res = v & 8 ? NULL : res, .ldy = ldy,
                                       .bias = v & 1 ? bias : NULL, .nseg = 1, .seg = &seg };
                u->run(&p, mr);
                p.acc = acc1;
                p.y = y1;
                u->run_stream(&p, mr);
                ck_assert_msg(!memcmp(acc0, acc1, (size_t)(u->mr * u->nr) * sizeof(float)) &&
                              !memcmp(y0, y1, (size_t)(u->mr * ldy) * sizeof(float)),
                              "%s: run_stream differs from run, %d rows, variant %d", mi_isa_name(isa), mr, v);
                ran++;
            }
        tile_rig_free(&r);
    }
    if (!ran) MI_SKIP("no kernel table with run_stream on this CPU");
}
END_TEST

/* run16 against run on tiles whose real columns are the first 16 or fewer, bit for bit: y, and the
 * partial sums of those columns (the other half is run16's to leave alone); every row count, with
 * and without bias, residual, relu, as a first, middle and last K block. */
START_TEST(run16_equals_run)
{
    int ran = 0;
    for (mi_isa isa = MI_ISA_PORTABLE; isa <= mi_cpu_isa(); isa++) {
        const mi_gemm_ukr *u = mi_gemm_ukr_for(isa);
        if (!u || !u->run16 || !fast_isa_distinct(isa)) continue;
        tile_rig r;
        tile_rig_init(&r, u);
        const int64_t kc = r.kc, ldy = r.ldy;
        float *a = r.a, *b = r.b, *bias = r.bias, *res = r.res, *acc0 = r.acc[0], *acc1 = r.acc[1], *y0 = r.y[0], *y1 = r.y[1];
        for (int mr = 1; mr <= u->mr; mr++)
            for (int v = 0; v < 24; v++) {
                const int step = v % 3, first = step == 0, last = step == 2, cols = v & 16 ? 16 : v & 4 ? 11 : 1;
                const mi_gemm_seg seg = { .off = 2, .mask = (1u << cols) - 1u };
                tile_rig_reset(&r, u, (uint64_t)(10 + v));
                mi_gemm_ukr_args p = { .kc = kc, .a = a, .b = b, .acc = acc0, .first = first, .last = last,
                                       .relu = v & 2, .y = y0, .res = v & 8 ? NULL : res, .ldy = ldy,
                                       .bias = v & 1 ? bias : NULL, .nseg = 1, .seg = &seg };
                u->run(&p, mr);
                p.acc = acc1;
                p.y = y1;
                u->run16(&p, mr);
                for (int i = 0; i < mr; i++)
                    ck_assert_msg(!memcmp(acc0 + i * u->nr, acc1 + i * u->nr, 16 * sizeof(float)),
                                  "%s: run16's partial sums differ from run's, row %d of %d, variant %d",
                                  mi_isa_name(isa), i, mr, v);
                ck_assert_msg(!memcmp(y0, y1, (size_t)(u->mr * ldy) * sizeof(float)),
                              "%s: run16 differs from run, %d rows, variant %d", mi_isa_name(isa), mr, v);
                ran++;
            }
        tile_rig_free(&r);
    }
    if (!ran) MI_SKIP("no kernel table with run16 on this CPU");
}
END_TEST

/* MI_ISA caps what mi_conv_init picks (Check forks each test, so the child reads it fresh). */
/* A kernel table's strided copy (ops/conv.c's phase planes) against the plain loop, bit for bit:
 * every length up to 70, strides 2 and 3, the source exactly as long as the copy reads (a read
 * past it shows under ASan) and longer. */
START_TEST(strided_copy_matches_scalar)
{
    int ran = 0;
    for (mi_isa isa = MI_ISA_PORTABLE; isa <= mi_cpu_isa(); isa++) {
        const mi_gemm_ukr *u = mi_gemm_ukr_for(isa);
        if (!u || !u->strided || !fast_isa_distinct(isa)) continue;
        for (int64_t s = 2; s <= 3; s++)
            for (int64_t n = 1; n <= 70; n++)
                for (int64_t extra = 0; extra <= 40; extra += 20) {
                    const int64_t avail = (n - 1) * s + 1 + extra;
                    float *src = malloc((size_t)avail * sizeof(float)), *dst = malloc((size_t)(n + 1) * sizeof(float));
                    mi_fill_random(src, avail, (uint64_t)(n * 7 + s));
                    dst[n] = 42.0f;
                    u->strided(dst, src, n, s, avail);
                    for (int64_t j = 0; j < n; j++)
                        ck_assert_msg(!memcmp(&dst[j], &src[j * s], sizeof(float)), "%s: strided n %lld stride %lld: "
                                      "element %lld", mi_isa_name(isa), (long long)n, (long long)s, (long long)j);
                    ck_assert_msg(dst[n] == 42.0f, "%s: strided n %lld wrote past its end", mi_isa_name(isa), (long long)n);
                    free(src);
                    free(dst);
                    ran++;
                }
    }
    if (!ran) MI_SKIP("no kernel table with a strided copy on this CPU");
}
END_TEST

/* A GEMM with its panels read in place (a table's in_place) and with them packed (the same table
 * with in_place off): the same bits, for each orientation; B's rows scattered through the source
 * (koff) or evenly (mi_gemm.lds), whole and partial panels, a grid with garbage columns (panels of channels-on-lanes
 * pixels that cross a row are packed, the others read in place), K blocks (K past every table's
 * kone_pix and kone_chan), two groups, few
 * and many channel panels per item, bias, residual, relu. The source is allocated to the last
 * float a row reads, so a read past it shows under ASan. */
START_TEST(in_place_equals_packed)
{
    int ran = 0;
    for (mi_isa isa = MI_ISA_PORTABLE; isa <= mi_cpu_isa(); isa++) {
        const mi_gemm_ukr *u = mi_gemm_ukr_for(isa);
        if (!u || !u->in_place || !fast_isa_distinct(isa)) continue;
        mi_gemm_ukr packed = *u;
        packed.in_place = 0;
        const int64_t shapes[][6] = {   /* M, K, groups, grid rows, grid columns, real columns */
            { 20, 1100, 2, 1, 103, 103 }, { 64, 64, 1, 4, 32, 32 }, { 200, 40, 1, 1, 65, 65 },
            { 45, 17, 2, 3, 17, 15 }, { 30, 50, 1, 5, 30, 28 },
        };
        for (int sh = 0; sh < 10; sh++)
            for (int t = 0; t < 2; t++) {
                const int even = sh >= 5;   /* rows evenly spaced, and mi_gemm.lds says so */
                const int64_t M = shapes[sh % 5][0], K = shapes[sh % 5][1], G = shapes[sh % 5][2];
                const int64_t H = shapes[sh % 5][3], GW = shapes[sh % 5][4], W = shapes[sh % 5][5], Q = H * GW, P = H * W;
                const int64_t span = (K - 1) * (Q + 5) + 4 + Q;   /* one group's source */
                const size_t na = t ? mi_gemm_pack_a_t(u, NULL, NULL, G, M, K) : mi_gemm_pack_a(u, NULL, NULL, G, M, K);
                float *w = mi_alloc_aligned((size_t)(G * M * K) * sizeof(float)), *ap = mi_alloc_aligned(na * sizeof(float));
                float *src = malloc((size_t)(G * span) * sizeof(float)), *bias = mi_alloc_aligned((size_t)(G * M) * sizeof(float));
                float *res = mi_alloc_aligned((size_t)(G * M * P) * sizeof(float));
                float *y0 = mi_alloc_aligned((size_t)(G * M * P) * sizeof(float)), *y1 = mi_alloc_aligned((size_t)(G * M * P) * sizeof(float));
                int64_t *koff = malloc((size_t)K * sizeof(int64_t));
                void *ws = mi_alloc_aligned(mi_gemm_ws(u, 2));
                mi_fill_random(w, G * M * K, 1);
                mi_fill_random(src, G * span, 2);
                mi_fill_random(bias, G * M, 3);
                mi_fill_random(res, G * M * P, 4);
                if (t) mi_gemm_pack_a_t(u, ap, w, G, M, K);
                else mi_gemm_pack_a(u, ap, w, G, M, K);
                for (int64_t k = 0; k < K; k++) koff[k] = k * (Q + 5) + (even ? 2 : (k * 7) % 5);
                mi_gemm g = { .groups = G, .M = M, .K = K, .apack = ap, .src = src, .src_gstride = span, .koff = koff,
                              .gd = 1, .gh = H, .gw = GW, .od = 1, .oh = H, .ow = W, .y = y0, .res = res, .bias = bias,
                              .relu = 1, .chan_lanes = t, .lds = even ? Q + 5 : 0 };
                mi_gemm_run(&packed, &g, ws, 2);
                g.y = y1;
                mi_gemm_run(u, &g, ws, 2);
                ck_assert_msg(!memcmp(y0, y1, (size_t)(G * M * P) * sizeof(float)),
                              "%s: in place differs from packed, M %lld K %lld grid %lld x %lld, lanes %d, lds %d",
                              mi_isa_name(isa), (long long)M, (long long)K, (long long)H, (long long)GW, t + 1, even);
                ran++;
                free(koff);
                mi_free_aligned(ws);
                mi_free_aligned(w);
                mi_free_aligned(ap);
                free(src);
                mi_free_aligned(bias);
                mi_free_aligned(res);
                mi_free_aligned(y0);
                mi_free_aligned(y1);
            }
    }
    if (!ran) MI_SKIP("no kernel table reads panels in place on this CPU");
}
END_TEST

/* A 1x1 layer writing into a padded map and a 3x3 stride-2 layer reading it in place
 * (mi_conv_forward_padded_out / _in) give the bits of the plain path: both orientations of the
 * first, square and oblong maps, 1 and 2 threads; the padding is written as zeros. The stride-2
 * layer's output rows are whole panels of 14 pixels (AVX-512's run_t) on the first three maps;
 * on the others its panels span two rows or more (7 x 7) or are cut by a row's end (5 x 9,
 * 10 x 20), and are packed from the map (pack_t_s2). */
START_TEST(padded_pair_equals_plain)
{
    const int saved = mi_threads();
    int ran = 0, fast_ran = 0;
    const int64_t maps[][2] = { { 28, 28 }, { 20, 56 }, { 56, 56 }, { 14, 14 }, { 10, 18 }, { 20, 40 } };
    const int nmaps = (int)(sizeof maps / sizeof maps[0]);
    for (mi_isa isa = MI_ISA_PORTABLE; isa <= mi_cpu_isa(); isa++) {
        const mi_gemm_ukr *u = mi_gemm_ukr_for(isa);
        if (!u || !fast_isa_distinct(isa)) continue;
        for (int m = 0; m < nmaps; m++)
            for (int lanes = 1; lanes <= 2; lanes++)
                for (int t = 1; t <= 2; t++) {
                    mi_set_threads(t);   /* before rig_init: the workspace covers t threads */
                    const int64_t H = maps[m][0], W = maps[m][1];
                    mi_conv_desc d1 = mi_conv2d_desc(24, 32, 1, 1, 0, 1), d2 = mi_conv2d_desc(32, 40, 3, 2, 1, 1);
                    d1.lanes = lanes;
                    d2.lanes = 2;
                    d1.in_size[1] = d2.in_size[1] = H;
                    d1.in_size[2] = d2.in_size[2] = W;
                    rig a, b;
                    rig_init(&a, d1, H, W, isa, 0, 50 + (uint64_t)m);
                    rig_init(&b, d2, H, W, isa, 0, 60 + (uint64_t)m);
                    rig_run(&a);
                    memcpy(b.x.data, a.y.data, (size_t)mi_tensor_numel(&a.y) * sizeof(float));
                    rig_run(&b);
                    ck_assert(mi_conv_padded_out_ok(&a.c));
                    const int fast = mi_conv_padded_in_ok(&b.c, &b.x);
                    if (u->run_t_s2)
                        ck_assert_msg(fast, "%s: the stride-2 layer does not take its padded input", mi_isa_name(isa));
                    const int64_t ps[4] = { 1, 32, H + 1, W + 1 };
                    mi_tensor yp = mi_tensor_view(NULL, 4, ps, "padded");
                    yp.data = mi_alloc_aligned((size_t)mi_tensor_numel(&yp) * sizeof(float));
                    memset(yp.data, 0xff, (size_t)mi_tensor_numel(&yp) * sizeof(float));   /* NaN: catches holes */
                    mi_conv_forward_padded_out(&a.c, &yp, &a.x, MI_ACT_RELU, a.ws);
                    for (int64_t c = 0; c < 32; c++)
                        for (int64_t r = 0; r <= H; r++)
                            for (int64_t q = 0; q <= W; q++) {
                                const float v = yp.data[(c * (H + 1) + r) * (W + 1) + q];
                                const float want = r && q ? a.y.data[(c * H + r - 1) * W + q - 1] : 0.0f;
                                ck_assert_msg(!memcmp(&v, &want, sizeof v),
                                              "%s: padded output differs at %lld,%lld,%lld, lanes %d, %d threads",
                                              mi_isa_name(isa), (long long)c, (long long)r, (long long)q, lanes, t);
                            }
                    if (fast) {
                        mi_tensor z = mi_tensor_view(NULL, 4, b.y.shape, "z");
                        z.data = mi_alloc_aligned((size_t)mi_tensor_numel(&z) * sizeof(float));
                        memset(z.data, 0xff, (size_t)mi_tensor_numel(&z) * sizeof(float));
                        mi_conv_forward_padded_in(&b.c, &z, &yp, MI_ACT_RELU, b.ws);
                        ck_assert_msg(!memcmp(z.data, b.y.data, (size_t)mi_tensor_numel(&z) * sizeof(float)),
                                      "%s: stride-2 layer on its padded input differs, map %lldx%lld, %d threads",
                                      mi_isa_name(isa), (long long)H, (long long)W, t);
                        mi_free_aligned(z.data);
                        fast_ran++;
                    }
                    mi_free_aligned(yp.data);
                    rig_free(&a);
                    rig_free(&b);
                    ran++;
                }
    }
    mi_set_threads(saved);
    printf("padded pair: %d cases, %d with the stride-2 layer reading in place\n", ran, fast_ran);
    if (!ran) MI_SKIP("no fast kernel table on this CPU");
}
END_TEST

/* A layer whose weights outweigh its map (ResNet-50's layer4 2048 -> 512 on 7x7) and whose M
 * chunks already divide among the threads is not cut into pixel runs as well: each run would
 * stream the chunk's weights again. 16 channel panels of the table's own height (one chunk's
 * worth, so that the threads' split makes the chunks), weights past what a thread reads whole,
 * 2 and 4 threads, each orientation the table has (pixels on the lanes where a chunk holds 16
 * panels): whole chunks of all the pixels for every thread. */
START_TEST(weight_heavy_split_keeps_one_run)
{
    const mi_gemm_ukr *u = mi_gemm_ukr_for(mi_cpu_isa());
    if (!u) u = &mi_gemm_ukr_portable;
    int64_t koff[1] = { 0 };
    int ran = 0;
    for (int t = 0; t < 2; t++) {
        if (t ? !u->run_t : u->mc / u->mr < 16) continue;
        const int64_t M = 16 * (t ? u->nr : u->mr), K = 600 * 1024 / M + 1;
        for (int nt = 2; nt <= 4; nt += 2) {
            const mi_gemm g = { .groups = 1, .M = M, .K = K, .koff = koff, .gd = 1, .gh = 7, .gw = 7,
                                .od = 1, .oh = 7, .ow = 7, .chan_lanes = t, .lds = 49 };
            mi_gemm_plan pl;
            mi_gemm_split(u, &g, nt, &pl);
            ck_assert_msg(pl.nj == 1 && pl.items % nt == 0 && !pl.pix_major,
                          "lanes %d, %d threads: %lld runs, %lld chunks, %lld items", t + 1, nt, (long long)pl.nj,
                          (long long)pl.nmc, (long long)pl.items);
            ran++;
        }
    }
    if (!ran) MI_SKIP("the kernel table here has neither orientation such a split");
}
END_TEST

/* A GEMM run by shares (ops/gemm.h) in a team whose thread 0 starts only once the others are
 * done: they take the end of its share, every item runs once (the counts add up to the plan's),
 * thread 0 runs fewer than its share, and y has the bits of mi_gemm_run. Both orientations,
 * pixel-major and M-split plans, 2 and 4 threads. */
START_TEST(shares_take_the_end_of_a_late_share)
{
    const mi_gemm_ukr *u = mi_gemm_ukr_for(mi_cpu_isa());
    if (!u) u = &mi_gemm_ukr_portable;
    const int64_t shapes[][3] = { { 64, 128, 40 * 40 }, { 600, 96, 9 * 9 } };   /* M, K, pixels */
    for (int sh = 0; sh < 2; sh++)
        for (int t = 0; t < (u->run_t ? 2 : 1); t++)
            for (int nt = 2; nt <= 4; nt += 2) {
                const int64_t M = shapes[sh][0], K = shapes[sh][1], P = shapes[sh][2];
                const size_t na = t ? mi_gemm_pack_a_t(u, NULL, NULL, 1, M, K) : mi_gemm_pack_a(u, NULL, NULL, 1, M, K);
                float *w = mi_alloc_aligned((size_t)(M * K) * sizeof(float)), *ap = mi_alloc_aligned(na * sizeof(float));
                float *x = mi_alloc_aligned((size_t)(K * P) * sizeof(float)), *bias = mi_alloc_aligned((size_t)M * sizeof(float));
                float *y0 = mi_alloc_aligned((size_t)(M * P) * sizeof(float)), *y1 = mi_alloc_aligned((size_t)(M * P) * sizeof(float));
                int64_t *koff = malloc((size_t)K * sizeof(int64_t));
                void *ws = mi_alloc_aligned(mi_gemm_ws(u, nt));
                mi_fill_random(w, M * K, 1);
                mi_fill_random(x, K * P, 2);
                mi_fill_random(bias, M, 3);
                if (t) mi_gemm_pack_a_t(u, ap, w, 1, M, K);
                else mi_gemm_pack_a(u, ap, w, 1, M, K);
                for (int64_t k = 0; k < K; k++) koff[k] = k * P;
                mi_gemm g = { .groups = 1, .M = M, .K = K, .apack = ap, .src = x, .src_gstride = K * P, .koff = koff,
                              .gd = 1, .gh = 1, .gw = P, .od = 1, .oh = 1, .ow = P, .y = y0, .bias = bias, .relu = 1,
                              .chan_lanes = t, .lds = P };
                mi_gemm_run(u, &g, ws, 1);
                g.y = y1;
                g.shares = 1;
                for (int64_t i = 0; i < M * P; i++) y1[i] = NAN;
                mi_gemm_plan pl;
                mi_gemm_split(u, &g, nt, &pl);
                mi_gemm_share shares[4];
                mi_gemm_shares_init(shares, pl.items, nt);
                int64_t ran[4] = { 0 };
                int done = 0;
                #pragma omp parallel num_threads(nt)
                {
                    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
                    for (int w = 0; tid == 0 && w < 100000 && __atomic_load_n(&done, __ATOMIC_ACQUIRE) < team - 1; w++)
                        usleep(100);
                    ran[tid] = mi_gemm_run_shares(u, &g, &pl, shares, team, tid,
                                                  (unsigned char *)ws + mi_gemm_ws(u, 1) * (size_t)tid);
                    if (tid) __atomic_add_fetch(&done, 1, __ATOMIC_RELEASE);
                }
                ck_assert_int_eq(ran[0] + ran[1] + ran[2] + ran[3], pl.items);
                ck_assert_msg(ran[0] < pl.items / nt, "M %lld, lanes %d, %d threads: thread 0 ran %lld of %lld items, "
                              "none of its share taken", (long long)M, t + 1, nt, (long long)ran[0], (long long)pl.items);
                ck_assert_msg(!memcmp(y0, y1, (size_t)(M * P) * sizeof(float)),
                              "M %lld, lanes %d, %d threads: by shares differs from one thread", (long long)M, t + 1, nt);
                free(koff);
                mi_free_aligned(ws);
                mi_free_aligned(w);
                mi_free_aligned(ap);
                mi_free_aligned(x);
                mi_free_aligned(bias);
                mi_free_aligned(y0);
                mi_free_aligned(y1);
            }
}
END_TEST

START_TEST(env_caps_isa)
{
    const char *fork = getenv("CK_FORK");
    if (fork && !strcmp(fork, "no")) MI_SKIP("needs CK_FORK: the ISA is chosen once per process");
    setenv("MI_ISA", "avx2", 1);
    ck_assert_int_le(mi_cpu_isa(), MI_ISA_AVX2);
    rig f, r;
    rig_init(&f, mi_conv2d_desc(19, 23, 3, 1, 1, 1), 13, 9, mi_cpu_isa(), 1, 3);
    mi_conv_desc d = mi_conv2d_desc(19, 23, 3, 1, 1, 1);
    float *wt = mi_alloc_aligned(23 * 19 * 9 * sizeof(float));
    mi_fill_random(wt, 23 * 19 * 9, 3);
    mi_conv c;
    ck_assert_int_eq(mi_conv_init(&c, &d, wt, NULL, "capped"), MI_OK);
    ck_assert_int_le(c.path, MI_ISA_AVX2);
    mi_conv_free(&c);
    mi_free_aligned(wt);
    rig_init(&r, mi_conv2d_desc(19, 23, 3, 1, 1, 1), 13, 9, MI_ISA_REF, 1, 3);
    rig_run(&f);
    mi_conv_forward_ref(&r.c, &r.y, &r.x, &r.r, MI_ACT_RELU);
    const int64_t n = mi_tensor_numel(&r.y);
    mi_assert_close(f.y.data, r.y.data, n, ATOL_REL * max_abs(r.y.data, n), RTOL, "MI_ISA=avx2");
    rig_free(&f);
    rig_free(&r);
}
END_TEST

/* MI_ISA=portable: every fast convolution on the portable C micro-kernels (ops/conv_portable.c),
 * on any CPU - how CI checks them on x86. */
START_TEST(env_forces_portable)
{
    const char *fork = getenv("CK_FORK");
    if (fork && !strcmp(fork, "no")) MI_SKIP("needs CK_FORK: the ISA is chosen once per process");
    setenv("MI_ISA", "portable", 1);
    ck_assert_int_eq(mi_cpu_isa(), MI_ISA_PORTABLE);
    mi_conv_desc d = mi_conv2d_desc(19, 23, 3, 1, 1, 1);
    float *wt = mi_alloc_aligned(23 * 19 * 9 * sizeof(float));
    mi_fill_random(wt, 23 * 19 * 9, 3);
    mi_conv c;
    ck_assert_int_eq(mi_conv_init(&c, &d, wt, NULL, "portable"), MI_OK);
    ck_assert_int_eq(c.path, MI_ISA_PORTABLE);
    ck_assert_ptr_eq(mi_gemm_ukr_for((mi_isa)c.path), &mi_gemm_ukr_portable);
    mi_conv_free(&c);
    mi_free_aligned(wt);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, matches_torch_on_every_isa, 0, 5);
    tcase_add_test(tc, env_forces_portable);
    tcase_add_test(tc, fast_matches_reference_on_tails);
    tcase_add_test(tc, relu_keeps_nan);
    tcase_add_test(tc, same_bits_for_1_2_4_threads);
    tcase_add_test(tc, winograd_large_weights_in_large_blocks);
    tcase_add_test(tc, winograd_cut_block);
    tcase_add_test(tc, depthwise_equals_reference);
    tcase_add_test(tc, depthwise_prepare_release);
    tcase_add_test(tc, bad_shapes_name_the_layer);
    tcase_add_test(tc, prepare_repacks_for_the_input_size);
    tcase_add_test(tc, winograd_transforms_match_scalar);
    tcase_add_test(tc, run_stream_equals_run);
    tcase_add_test(tc, run16_equals_run);
    tcase_add_test(tc, in_place_equals_packed);
    tcase_add_test(tc, padded_pair_equals_plain);
    tcase_add_test(tc, shares_take_the_end_of_a_late_share);
    tcase_add_test(tc, weight_heavy_split_keeps_one_run);
    tcase_add_test(tc, strided_copy_matches_scalar);
    tcase_add_test(tc, env_caps_isa);
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(suite)
