/* tests/test_vnet.c - the V-Net (2-D and 3-D) through the public API against tools/vnet_ref.py
 * (tests/ref_vnet.py: random weights and per-channel PReLU slopes, the module built from the
 * metadata the blob carries). Every stage vnet_ref.forward names is compared in the order the
 * network computes it, through the session's capture hook, so the first failure names the first
 * stage that diverges. Tolerance: max|d| <= 1e-4 * max|ref| per stage (measured ratios printed).
 * Also: the same bits for 1 and 2 threads and for an item alone or in a batch; refusals of bad
 * blobs and inputs that name the file and what is wrong. */
#include "tests/mi_test.h"
#include "medinfer.h"
#include "ops/cpu.h"

#include <math.h>
#include <string.h>

#define MAX_STAGES 32

/* the stages of vnet_ref.forward for a network of `levels` down-samplings, in computing order */
static int stage_names(char names[MAX_STAGES][16], const char *out[MAX_STAGES], int levels) {
    int n = 0;
    for (int l = 0; l <= levels; l++) {
        if (l) snprintf(names[n++], 16, "down.%d", l - 1);
        snprintf(names[n++], 16, "enc.%d", l);
    }
    for (int j = 0; j < levels; j++) {
        snprintf(names[n++], 16, "up.%d", j);
        snprintf(names[n++], 16, "dec.%d", j);
    }
    snprintf(names[n++], 16, "seg");
    snprintf(names[n++], 16, "features");
    snprintf(names[n++], 16, "tile_logits");
    for (int i = 0; i < n; i++) out[i] = names[i];
    return n;
}

static int levels_of(const mi_weights *ref) {
    int l = 0;
    char name[16];
    do snprintf(name, sizeof name, "enc.%d", ++l);
    while (mi_weights_find(ref, name));
    return l - 1;
}

static void compare(const char *what, const mi_captured *c, int i, const mi_tensor *want) {
    const char *stage = c->names[i];
    ck_assert_msg(c->data[i] != NULL, "%s: stage '%s' was not produced", what, stage);
    ck_assert_msg(c->ndim[i] == want->ndim, "%s %s: %d dims, vnet_ref %d", what, stage, c->ndim[i], want->ndim);
    for (int d = 0; d < want->ndim; d++)
        ck_assert_msg(c->shape[i][d] == want->shape[d], "%s %s: dim %d is %lld, vnet_ref %lld", what, stage, d,
                      (long long)c->shape[i][d], (long long)want->shape[d]);
    double maxref = 0;
    for (int64_t j = 0; j < mi_tensor_numel(want); j++) maxref = fmax(maxref, fabs(want->data[j]));
    double err = mi_assert_close(c->data[i], want->data, mi_tensor_numel(want), 1e-4 * maxref, 0, stage);
    printf("%-10s %-12s max|ref| %-10.4g max|d| %-10.3g (%.2e of max|ref|) isa %s\n", what, stage, maxref, err,
           err / (maxref > 0 ? maxref : 1), mi_isa_name(mi_cpu_isa()));
}

static mi_session *session(const mi_model *m, const mi_tensor *in, int threads) {
    mi_session *s;
    ck_assert_msg(mi_session_create_nd(&s, m, in->ndim, in->shape, threads, NULL, 0) == MI_OK, "%s",
                  mi_last_error());
    return s;
}

static void parity(const char *name) {
    char path[64], names[MAX_STAGES][16];
    const char *stage[MAX_STAGES];
    snprintf(path, sizeof path, "%s_ref.safetensors", name);
    mi_weights r;
    mi_fixture_open(&r, path);
    mi_tensor in = mi_fixture_tensor(&r, "input");
    snprintf(path, sizeof path, "%s_rand.safetensors", name);
    mi_model *m = mi_fixture_model(path);
    ck_assert_int_eq(mi_model_spatial_dims(m), in.ndim - 2);
    ck_assert_int_eq(mi_model_input_channels(m), (int)in.shape[1]);
    const int n = stage_names(names, stage, levels_of(&r));
    mi_session *s = session(m, &in, 0);
    mi_captured c = { .names = stage, .n = n };
    mi_session_set_capture(s, mi_capture, &c);
    ck_assert_msg(mi_session_run(s, in.data) == MI_OK, "%s", mi_last_error());
    for (int i = 0; i < n; i++) {   /* in order: the first failure names the first stage that diverges */
        mi_tensor want = mi_fixture_tensor(&r, stage[i]);
        compare(name, &c, i, &want);
    }
    /* the outputs are the captured stages, bit for bit; a 5-D "seg" only through the _nd getter */
    static const char *const outs[3] = { "seg", "features", "tile_logits" };
    ck_assert_int_eq(mi_session_output_count(s), 3);
    for (int k = 0; k < 3; k++) {
        const int i = mi_captured_index(&c, outs[k]);
        int64_t shape[5];
        int ndim = 0;
        const float *got = mi_session_output_nd(s, outs[k], shape, &ndim);
        ck_assert_ptr_nonnull(got);
        ck_assert_int_eq(ndim, c.ndim[i]);
        for (int d = 0; d < 5; d++) ck_assert_int_eq(shape[d], d < ndim ? c.shape[i][d] : 1);
        ck_assert_int_eq(memcmp(got, c.data[i], (size_t)c.numel[i] * sizeof(float)), 0);
        if (ndim == 5) ck_assert_ptr_null(mi_session_output(s, outs[k], shape));
        else           ck_assert_ptr_eq(mi_session_output(s, outs[k], shape), got);
    }
    mi_captured_free(&c);
    mi_session_destroy(s);
    mi_model_close(m);
    mi_weights_close(&r);
}

START_TEST(vnet2d_matches_vnet_ref) { parity("vnet2d"); }
END_TEST
START_TEST(vnet3d_matches_vnet_ref) { parity("vnet3d"); }
END_TEST
/* width 8 from RGB: the input stage's residual cycles the 3 input channels */
START_TEST(vnet2d_width_not_multiple_of_channels) { parity("vnet2d_w8"); }
END_TEST

/* 1 and 2 threads give the same bits, and item 1 alone (mi_session_run_n on a session of one)
 * the same bits as in the batch. */
static void same_bits(const char *name) {
    char path[64];
    snprintf(path, sizeof path, "%s_ref.safetensors", name);
    mi_weights r;
    mi_fixture_open(&r, path);
    mi_tensor in = mi_fixture_tensor(&r, "input");
    snprintf(path, sizeof path, "%s_rand.safetensors", name);
    mi_model *m = mi_fixture_model(path);
    static const char *const outs[3] = { "seg", "features", "tile_logits" };
    float *got[2][3];
    int64_t numel[3];
    for (int t = 0; t < 2; t++) {
        mi_session *s = session(m, &in, t + 1);
        ck_assert_int_eq(mi_session_run(s, in.data), MI_OK);
        for (int k = 0; k < 3; k++) {
            int64_t shape[5];
            const float *o = mi_session_output_nd(s, outs[k], shape, NULL);
            numel[k] = shape[0] * shape[1] * shape[2] * shape[3] * shape[4];
            got[t][k] = malloc((size_t)numel[k] * sizeof(float));
            memcpy(got[t][k], o, (size_t)numel[k] * sizeof(float));
        }
        mi_session_destroy(s);
    }
    for (int k = 0; k < 3; k++)
        ck_assert_msg(!memcmp(got[0][k], got[1][k], (size_t)numel[k] * sizeof(float)), "%s %s: 1 vs 2 threads differ",
                      name, outs[k]);
    mi_tensor one = in;
    one.shape[0] = 1;
    mi_session *s = session(m, &one, 2);
    const int64_t per = mi_tensor_numel(&in) / in.shape[0];
    ck_assert_int_eq(mi_session_run_n(s, in.data + per, 1), MI_OK);
    for (int k = 0; k < 3; k++) {
        const int64_t n1 = numel[k] / in.shape[0];
        ck_assert_msg(!memcmp(mi_session_output_nd(s, outs[k], NULL, NULL), got[0][k] + n1, (size_t)n1 * sizeof(float)),
                      "%s %s: item 1 alone differs from it in the batch", name, outs[k]);
    }
    mi_session_destroy(s);
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 3; k++) free(got[t][k]);
    mi_model_close(m);
    mi_weights_close(&r);
}

START_TEST(same_bits_any_threads_and_batch)
{
    same_bits("vnet2d");
    same_bits("vnet3d");
}
END_TEST

/* mi_model_open on a bad blob fails with `code`, naming the file and each of `words` */
static void refused(const char *file, mi_status code, const char *w1, const char *w2) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", mi_fixtures(), file);
    mi_model *m = (mi_model *)1;
    mi_status st = mi_model_open(&m, path);
    const char *e = mi_last_error();
    printf("%-34s -> %s\n", file, e);
    ck_assert_msg(st == code, "%s: status %s, expected %s (%s)", file, mi_status_name(st), mi_status_name(code), e);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(e, file), "%s: the message does not name the file: %s", file, e);
    ck_assert_msg(!w1 || strstr(e, w1), "%s: the message does not say '%s': %s", file, w1, e);
    ck_assert_msg(!w2 || strstr(e, w2), "%s: the message does not say '%s': %s", file, w2, e);
}

START_TEST(refuses_bad_blobs)
{
    mi_model *ok = mi_fixture_model("vnet_bad_ok.safetensors");   /* what the bad ones were made from */
    ck_assert_str_eq(mi_model_arch(ok), "vnet2d");
    ck_assert_int_eq(mi_model_num_classes(ok), 2);
    ck_assert_int_eq(mi_model_input_size(ok), 16);
    mi_model_close(ok);
    refused("vnet_bad_missing.safetensors", MI_ERR_SHAPE, "dec.0.convs.0.bias", "missing");
    refused("vnet_bad_shape.safetensors", MI_ERR_SHAPE, "enc.1.convs.0.weight", "[12,12,5,5]");
    refused("vnet_bad_prelu.safetensors", MI_ERR_SHAPE, "up.0.act.weight", NULL);
    refused("vnet_bad_arch3d.safetensors", MI_ERR_SHAPE, "enc.0.convs.0.weight", "[6,3,5,5,5]");
    refused("vnet_bad_enc_json.safetensors", MI_ERR_FORMAT, "'enc_convs'", "JSON array");
    refused("vnet_bad_enc_zero.safetensors", MI_ERR_FORMAT, "'enc_convs'", "[1, 16]");
    refused("vnet_bad_enc_short.safetensors", MI_ERR_FORMAT, "'enc_convs'", "expected 2..");
    refused("vnet_bad_enc_float.safetensors", MI_ERR_FORMAT, "'enc_convs'", "integers");
    refused("vnet_bad_dec_len.safetensors", MI_ERR_FORMAT, "'dec_convs'", "expected 1");
    refused("vnet_bad_width.safetensors", MI_ERR_FORMAT, "'width'", "six");
    refused("vnet_bad_width_small.safetensors", MI_ERR_FORMAT, "'width' = 2", "'in_channels' = 3");
    refused("vnet_bad_channels.safetensors", MI_ERR_FORMAT, "'in_channels'", NULL);
    refused("vnet_bad_feature_dim.safetensors", MI_ERR_FORMAT, "'feature_dim'", NULL);
    refused("vnet_bad_input_size.safetensors", MI_ERR_FORMAT, "'input_size' = 17", "multiple of 2^1");
}
END_TEST

START_TEST(refuses_bad_inputs)
{
    mi_model *m = mi_fixture_model("vnet2d_rand.safetensors");   /* 3 down-samplings: sides % 8 */
    mi_session *s = (mi_session *)1;
    ck_assert_int_eq(mi_session_create(&s, m, (int64_t[4]){ 1, 3, 64, 90 }, 1), MI_ERR_SHAPE);
    ck_assert_ptr_null(s);
    printf("64x90 -> %s\n", mi_last_error());
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "vnet2d_rand.safetensors"));
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "side 90 (dim 3) is not a positive multiple of 2^3 = 8"));
    ck_assert_int_eq(mi_session_create(&s, m, (int64_t[4]){ 1, 3, 4, 8 }, 1), MI_ERR_SHAPE);
    ck_assert_int_eq(mi_session_create(&s, m, (int64_t[4]){ 1, 1, 64, 64 }, 1), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "expected (N, 3, H, W)"));
    ck_assert_int_eq(mi_session_create_nd(&s, m, 5, (int64_t[5]){ 1, 3, 8, 8, 8 }, 1, NULL, 0), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "a vnet2d takes 4-D inputs"));
    /* an output the network does not have */
    ck_assert_int_eq(mi_session_create_nd(&s, m, 4, (int64_t[4]){ 1, 3, 8, 8 }, 1, (const char *[]){ "logits" }, 1),
                     MI_ERR_ARG);
    mi_model_close(m);
    m = mi_fixture_model("vnet3d_rand.safetensors");
    ck_assert_int_eq(mi_model_spatial_dims(m), 3);
    ck_assert_int_eq(mi_session_create(&s, m, (int64_t[4]){ 1, 1, 16, 16 }, 1), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "a vnet3d takes 5-D inputs (N, C, D, H, W)"));
    ck_assert_int_eq(mi_session_create_nd(&s, m, 5, (int64_t[5]){ 1, 1, 10, 16, 16 }, 1, NULL, 0), MI_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "side 10 (dim 2)"));
    /* a session that keeps only the features runs the encoder and the classification branch */
    ck_assert_int_eq(mi_session_create_nd(&s, m, 5, (int64_t[5]){ 1, 1, 4, 8, 4 }, 1,
                                          (const char *[]){ "features" }, 1), MI_OK);
    float x[4 * 8 * 4] = { 0 };
    x[5] = NAN;
    ck_assert_int_eq(mi_session_run(s, x), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "(n=0, c=0, z=0, y=1, x=1) is NaN"));
    x[5] = 1;
    ck_assert_int_eq(mi_session_run(s, x), MI_OK);
    ck_assert_ptr_nonnull(mi_session_output_nd(s, "features", NULL, NULL));
    ck_assert_ptr_null(mi_session_output_nd(s, "seg", NULL, NULL));
    mi_session_destroy(s);
    mi_model_close(m);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("vnet");
    TCase *t = tcase_create("vnet");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, vnet2d_matches_vnet_ref);
    tcase_add_test(t, vnet3d_matches_vnet_ref);
    tcase_add_test(t, vnet2d_width_not_multiple_of_channels);
    tcase_add_test(t, same_bits_any_threads_and_batch);
    tcase_add_test(t, refuses_bad_blobs);
    tcase_add_test(t, refuses_bad_inputs);
    suite_add_tcase(s, t);
    return s;
}

MI_TEST_MAIN(suite)
