/* tests/test_layers.c - the shared loaders and steps of nn/layers.c against torch modules
 * (tests/ref_layers.py): each layer is read from a blob by its state_dict names and run in an
 * nn_ctx the way a network runs it (a measure walk, the arena, a run walk). Also the names and
 * shapes a loader reports when the blob does not fit. Tolerance 1e-5 * max|ref| + 1e-6. */
#include "tests/mi_test.h"
#include "nn/layers.h"

#include <math.h>
#include <string.h>

typedef mi_tensor (*step_fn)(nn_ctx *c, const void *layer, const mi_tensor *x);

/* Runs one step as a network would: measure, place, run. Returns the output (arena-owned). */
static mi_tensor run_step(nn_ctx *c, unsigned char **arena, step_fn f, const void *layer, const mi_tensor *x) {
    const char *const want[] = { "out" };
    nn_ctx_measure(c, want, 1);
    mi_tensor y = f(c, layer, x);
    nn_mark(c, "out", &y);
    ck_assert_msg(nn_ctx_finish(c) == MI_OK, "%s", mi_last_error());
    *arena = mi_alloc_aligned(nn_ctx_arena_bytes(c) + 1);
    nn_ctx_run(c, *arena);
    y = f(c, layer, x);
    nn_mark(c, "out", &y);
    ck_assert_int_eq(c->next, c->nplan);
    return y;
}

static void check(const char *what, step_fn f, const void *layer, const mi_weights *ref, const char *in_name) {
    mi_tensor x = mi_fixture_tensor(ref, in_name), want = mi_fixture_tensor(ref, what);
    nn_ctx c = { 0 };
    unsigned char *arena = NULL;
    mi_tensor y = run_step(&c, &arena, f, layer, &x);
    double maxref = 0;
    for (int64_t i = 0; i < mi_tensor_numel(&want); i++) maxref = fmax(maxref, fabs(want.data[i]));
    mi_assert_close_t(&y, &want, 1e-5 * maxref + 1e-6, 0);
    nn_ctx_free(&c);
    mi_free_aligned(arena);
}

static mi_tensor conv_step(nn_ctx *c, const void *l, const mi_tensor *x) { return nn_conv(c, l, x, NULL, MI_ACT_NONE); }
static mi_tensor deconv_step(nn_ctx *c, const void *l, const mi_tensor *x) { return nn_deconv(c, l, x, NULL, MI_ACT_NONE); }
static mi_tensor linear_step(nn_ctx *c, const void *l, const mi_tensor *x) { return nn_linear_fwd(c, l, x); }
static mi_tensor prelu_step(nn_ctx *c, const void *l, const mi_tensor *x) { return nn_prelu_fwd(c, l, x); }

START_TEST(loaders_match_torch_modules)
{
    mi_weights w, ref;
    mi_fixture_open(&w, "layers.safetensors");
    mi_fixture_open(&ref, "layers_ref.safetensors");
    mi_conv cv;
    mi_conv_desc d = mi_conv2d_desc(4, 6, 3, 2, 1, 2);
    ck_assert_msg(nn_load_conv(&cv, &w, "conv", &d, true) == MI_OK, "%s", mi_last_error());
    check("conv", conv_step, &cv, &ref, "x");
    mi_conv_free(&cv);
    d = mi_conv2d_desc(4, 8, 3, 1, 1, 1);
    ck_assert_msg(nn_load_conv_bn(&cv, &w, "cb", "bn", &d, 1e-5) == MI_OK, "%s", mi_last_error());
    check("cb", conv_step, &cv, &ref, "x");
    mi_conv_free(&cv);
    d = mi_conv3d_desc(2, 4, 3, 1, 1, 1);
    ck_assert_msg(nn_load_conv_bn(&cv, &w, "c3", "bn3", &d, 1e-5) == MI_OK, "%s", mi_last_error());
    check("c3", conv_step, &cv, &ref, "x3");
    mi_conv_free(&cv);
    mi_deconv dc;
    mi_deconv_desc dd = mi_deconv2d_desc(4, 3, 2, 2, 0, 0, 1);
    ck_assert_msg(nn_load_deconv(&dc, &w, "up", &dd, true) == MI_OK, "%s", mi_last_error());
    check("up", deconv_step, &dc, &ref, "x");
    mi_deconv_free(&dc);
    nn_linear l;
    ck_assert_msg(nn_load_linear(&l, &w, "fc", 24, 5, true) == MI_OK, "%s", mi_last_error());
    check("fc", linear_step, &l, &ref, "v");
    ck_assert_msg(nn_load_linear(&l, &w, "proj", 24, 7, false) == MI_OK, "%s", mi_last_error());
    check("proj", linear_step, &l, &ref, "v");
    nn_prelu p;
    ck_assert_msg(nn_load_prelu(&p, &w, "act", 4) == MI_OK, "%s", mi_last_error());
    ck_assert_int_eq(p.n, 4);
    check("act", prelu_step, &p, &ref, "x");
    ck_assert_msg(nn_load_prelu(&p, &w, "act1", 4) == MI_OK, "%s", mi_last_error());
    ck_assert_int_eq(p.n, 1);
    check("act1", prelu_step, &p, &ref, "x");
    mi_weights_close(&w);
    mi_weights_close(&ref);
}
END_TEST

/* A loader names the file, the tensor, and expected against found. */
START_TEST(loaders_name_what_does_not_fit)
{
    mi_weights w;
    mi_fixture_open(&w, "layers.safetensors");
    mi_conv cv;
    mi_conv_desc d = mi_conv2d_desc(4, 6, 5, 1, 2, 2);   /* the blob's conv is 3x3 */
    ck_assert_int_eq(nn_load_conv(&cv, &w, "conv", &d, true), MI_ERR_SHAPE);
    ck_assert_msg(strstr(mi_last_error(), "layers.safetensors: tensor 'conv.weight' has shape [6,2,3,3], "
                         "expected [6,2,5,5]") != NULL, "%s", mi_last_error());
    d = mi_conv2d_desc(4, 8, 3, 1, 1, 1);
    ck_assert_int_ne(nn_load_conv_bn(&cv, &w, "cb", "bn_missing", &d, 1e-5), MI_OK);
    ck_assert_msg(strstr(mi_last_error(), "'bn_missing.weight'") != NULL, "%s", mi_last_error());
    ck_assert_int_ne(nn_load_conv(&cv, &w, "cb", &d, true), MI_OK);   /* cb has no bias */
    ck_assert_msg(strstr(mi_last_error(), "'cb.bias'") != NULL, "%s", mi_last_error());
    nn_linear l;
    ck_assert_int_eq(nn_load_linear(&l, &w, "fc", 25, 5, true), MI_ERR_SHAPE);
    ck_assert_msg(strstr(mi_last_error(), "tensor 'fc.weight' has shape [5,24], expected [5,25]") != NULL, "%s",
                  mi_last_error());
    nn_prelu p;
    ck_assert_int_eq(nn_load_prelu(&p, &w, "act", 3), MI_ERR_SHAPE);
    /* a step whose input does not fit records the failure in the measure walk, naming the layer */
    ck_assert_int_eq(nn_load_linear(&l, &w, "fc", 24, 5, true), MI_OK);
    nn_ctx c = { 0 };
    nn_ctx_measure(&c, NULL, 0);
    mi_tensor x = mi_tensor_view(NULL, 2, (int64_t[]){ 3, 23 }, "v");
    nn_linear_fwd(&c, &l, &x);
    ck_assert_int_eq(nn_ctx_finish(&c), MI_ERR_SHAPE);
    ck_assert_msg(strstr(mi_last_error(), "fc: input [3,23] has 23 features per item, expected 24") != NULL, "%s",
                  mi_last_error());
    nn_ctx_free(&c);
    mi_weights_close(&w);
}
END_TEST

/* Liveness: two tensors alive at once never share bytes, and a freed one is reused. */
START_TEST(arena_reuses_freed_memory)
{
    nn_ctx c = { 0 };
    nn_ctx_measure(&c, NULL, 0);
    const int64_t big[2] = { 1, 1000 }, small[2] = { 1, 100 };
    mi_tensor a = nn_alloc(&c, 2, big, "a"), b = nn_alloc(&c, 2, small, "b");
    nn_free(&c, &a);
    mi_tensor d = nn_alloc(&c, 2, big, "d");      /* may take a's place */
    nn_free(&c, &b);
    nn_free(&c, &d);
    ck_assert_int_eq(nn_ctx_finish(&c), MI_OK);
    ck_assert_uint_eq(nn_ctx_arena_bytes(&c), 4032 + 448);   /* two 64-byte-rounded blocks, not three */
    ck_assert(c.plan[0].off != c.plan[1].off && c.plan[1].off != c.plan[2].off);
    nn_ctx_free(&c);
}
END_TEST

/* A 1x1 conv then a 3x3 stride-2 one, as a ResNet bottleneck's conv1 and conv2, walked as a
 * network walks them; the hooks' record of (name, shape) in t->seen. */
typedef struct { mi_conv c1, c2; bool has_path; char seen[256]; } pair_step;

static void note(pair_step *t, const char *name, int ndim, const int64_t *shape) {
    char s[64];
    const size_t k = strlen(t->seen);
    snprintf(t->seen + k, sizeof t->seen - k, "%s%s;", name, mi_shape_str(s, sizeof s, ndim, shape));
}
static void on_stage(void *user, const char *name, int ndim, const int64_t *shape) {
    note(user, name, ndim, shape);
}
static void on_capture(void *user, const char *name, const float *data, int ndim, const int64_t *shape) {
    ck_assert_ptr_nonnull(data);
    note(user, name, ndim, shape);
}

static mi_tensor pair_walk(nn_ctx *c, const pair_step *t, const mi_tensor *x, bool *padded) {
    *padded = false;
    mi_tensor m = t->has_path ? nn_conv_padded_out(c, &t->c1, x, MI_ACT_RELU, padded)
                              : nn_conv(c, &t->c1, x, NULL, MI_ACT_RELU);
    return nn_conv_padded_in(c, &t->c2, &m, *padded, MI_ACT_RELU);
}

/* A stage hook is told every named result, the padded one by its plain shape, and leaves the walk
 * as it is without a hook: conv1 writes its map padded and conv2 reads it in place (where this
 * ISA has that path). A capture hook needs the plain map, so the walk takes the plain way; the
 * hooks see the same names and shapes, and the output has the same bits every way. */
START_TEST(stage_hook_keeps_the_padded_map)
{
    pair_step t = { 0 };
    float w1[32 * 24], b1[32], w2[32 * 32 * 9], b2[32], x[24 * 16 * 16];
    mi_fill_random(w1, 32 * 24, 1);
    mi_fill_random(b1, 32, 2);
    mi_fill_random(w2, 32 * 32 * 9, 3);
    mi_fill_random(b2, 32, 4);
    mi_fill_random(x, 24 * 16 * 16, 5);
    const mi_conv_desc d1 = mi_conv2d_desc(24, 32, 1, 1, 0, 1);
    mi_conv_desc d2 = mi_conv2d_desc(32, 32, 3, 2, 1, 1);
    d2.lanes = 2;   /* channels on the lanes, as ResNet-50's stride-2 layers pick at their sizes */
    ck_assert_int_eq(mi_conv_init(&t.c1, &d1, w1, b1, "c1"), MI_OK);
    ck_assert_int_eq(mi_conv_init(&t.c2, &d2, w2, b2, "c2"), MI_OK);
    const mi_tensor xt = mi_tensor_view(x, 4, (int64_t[]){ 1, 24, 16, 16 }, "x");
    const mi_tensor mid = mi_tensor_view(NULL, 4, (int64_t[]){ 1, 32, 16, 16 }, "c1");
    t.has_path = mi_conv_padded_out_ok(&t.c1) && mi_conv_padded_in_ok(&t.c2, &mid);
    float first[32 * 8 * 8];
    for (int way = 0; way < 3; way++) {   /* no hook, a stage hook, a capture hook */
        nn_ctx c = { 0 };
        if (way == 1) c.stage = on_stage, c.stage_user = &t;
        if (way == 2) c.capture = on_capture, c.user = &t;
        t.seen[0] = 0;
        bool padded;
        nn_ctx_measure(&c, NULL, 0);
        pair_walk(&c, &t, &xt, &padded);
        ck_assert_int_eq(nn_ctx_finish(&c), MI_OK);
        unsigned char *arena = mi_alloc_aligned(nn_ctx_arena_bytes(&c) + 1);
        nn_ctx_run(&c, arena);
        const mi_tensor y = pair_walk(&c, &t, &xt, &padded);
        ck_assert_int_eq(padded, t.has_path && way < 2);
        ck_assert_str_eq(t.seen, way == 0 ? "" : "c1[1,32,16,16];c2[1,32,8,8];");
        ck_assert_int_eq(mi_tensor_numel(&y), 32 * 8 * 8);
        if (way == 0) memcpy(first, y.data, sizeof first);
        ck_assert_msg(!memcmp(first, y.data, sizeof first), "way %d: other bits", way);
        nn_ctx_free(&c);
        mi_free_aligned(arena);
    }
    mi_conv_free(&t.c1);
    mi_conv_free(&t.c2);
    if (!t.has_path) MI_SKIP("no in-place stride-2 path on this ISA: the hooks were checked on the plain walk");
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("layers");
    TCase *tc = tcase_create("layers");
    tcase_add_test(tc, loaders_match_torch_modules);
    tcase_add_test(tc, loaders_name_what_does_not_fit);
    tcase_add_test(tc, arena_reuses_freed_memory);
    tcase_add_test(tc, stage_hook_keeps_the_padded_map);
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(suite)
