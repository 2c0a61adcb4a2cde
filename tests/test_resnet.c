/* tests/test_resnet.c - ResNet-18 / ResNet-50 through the public API against torchvision
 * (tests/ref_resnet.py): random weights and BN statistics, blobs written by an independent
 * safetensors writer with torchvision's names. Every named stage is compared in order through
 * the session's capture hook, so the first failure names the first stage that diverges.
 * Tolerance: max|d| <= 1e-4 * max|ref| per stage (measured maxima are printed).
 * Also: any input H x W, the C2-C5 backbone, identical bits for 1, 2 and 4 threads and for a
 * batch against its items alone, and refusals that name what is wrong. */
#include "tests/mi_test.h"
#include "medinfer.h"
#include "ops/cpu.h"

#include <math.h>
#include <string.h>

/* max|d| <= 1e-4 * max|ref|; prints the measured ratio */
static void compare(const char *what, const char *stage, const float *got, const int64_t *shape, int ndim,
                    const mi_tensor *want) {
    ck_assert_msg(got != NULL, "%s: stage '%s' was not produced", what, stage);
    ck_assert_int_eq(ndim, want->ndim);
    for (int d = 0; d < ndim; d++)
        ck_assert_msg(shape[d] == want->shape[d], "%s %s: dim %d is %lld, torchvision %lld", what, stage, d,
                      (long long)shape[d], (long long)want->shape[d]);
    double maxref = 0, err = 0;
    for (int64_t j = 0; j < mi_tensor_numel(want); j++) maxref = fmax(maxref, fabs(want->data[j]));
    err = mi_assert_close(got, want->data, mi_tensor_numel(want), 1e-4 * maxref, 0, stage);
    printf("%-22s %-12s max|ref| %-10.4g max|d| %-10.3g (%.2e of max|ref|) isa %s\n", what, stage, maxref,
           err, err / maxref, mi_isa_name(mi_cpu_isa()));
}

static void parity(const char *arch) {
    static const char *const stage[] = { "stem", "layer1", "layer2", "layer3", "layer4", "pool", "fc" };
    char name[64];
    snprintf(name, sizeof name, "%s_ref.safetensors", arch);
    mi_weights r;
    mi_fixture_open(&r, name);
    mi_tensor in = mi_fixture_tensor(&r, "input");
    snprintf(name, sizeof name, "%s_rand.safetensors", arch);
    mi_model *m = mi_fixture_model(name);
    ck_assert_str_eq(mi_model_arch(m), arch);
    mi_session *s;
    ck_assert_msg(mi_session_create(&s, m, in.shape, 0) == MI_OK, "%s", mi_last_error());
    mi_captured c = { .names = stage, .n = 7 };
    mi_session_set_capture(s, mi_capture, &c);
    ck_assert_msg(mi_session_run(s, in.data) == MI_OK, "%s", mi_last_error());
    for (int i = 0; i < 7; i++) {   /* in order: the first failure names the first stage that diverges */
        mi_tensor want = mi_fixture_tensor(&r, stage[i]);
        compare(arch, stage[i], c.data[i], c.shape[i], c.ndim[i], &want);
    }
    /* the "logits" output is the fc stage, bit for bit */
    int64_t shape[4];
    const float *logits = mi_session_output(s, "logits", shape);
    ck_assert_ptr_nonnull(logits);
    ck_assert(shape[0] == in.shape[0] && shape[1] == mi_model_num_classes(m) && shape[2] == 1 && shape[3] == 1);
    ck_assert_int_eq(memcmp(logits, c.data[6], (size_t)c.numel[6] * sizeof(float)), 0);
    mi_captured_free(&c);
    mi_session_destroy(s);
    mi_model_close(m);
    mi_weights_close(&r);
}

START_TEST(resnet18_matches_torchvision) { parity("resnet18"); }
END_TEST
START_TEST(resnet50_matches_torchvision) { parity("resnet50"); }
END_TEST

/* A non-square input, which torchvision accepts: ResNet-50 (1, 3, 256, 320) logits, and every
 * C2-C5 feature map on the way. */
START_TEST(resnet50_non_square_input)
{
    static const char *const feat[] = { "features.C2", "features.C3", "features.C4", "features.C5", "logits" };
    mi_weights r;
    mi_fixture_open(&r, "resnet50_256x320_ref.safetensors");
    mi_tensor in = mi_fixture_tensor(&r, "input");
    mi_model *m = mi_fixture_model("resnet50_rand.safetensors");
    mi_session *s;
    ck_assert_msg(mi_session_create_outputs(&s, m, in.shape, 0, feat, 5) == MI_OK, "%s", mi_last_error());
    ck_assert_msg(mi_session_run(s, in.data) == MI_OK, "%s", mi_last_error());
    for (int i = 0; i < 5; i++) {
        int64_t shape[4];
        const float *got = mi_session_output(s, feat[i], shape);
        mi_tensor want = mi_fixture_tensor(&r, feat[i]);
        compare("resnet50 256x320", feat[i], got, shape, want.ndim, &want);
    }
    mi_session_destroy(s);
    mi_model_close(m);
    mi_weights_close(&r);
}
END_TEST

/* ResNet-18 as a backbone: a blob without the fc head opens as one, its sessions keep C2-C5 by
 * default, and they equal torchvision's IntermediateLayerGetter on a (2, 3, 96, 160) batch. */
START_TEST(resnet18_backbone_features)
{
    static const char *const feat[] = { "features.C2", "features.C3", "features.C4", "features.C5" };
    mi_weights r;
    mi_fixture_open(&r, "resnet18_96x160_ref.safetensors");
    mi_tensor in = mi_fixture_tensor(&r, "input");
    mi_model *m = mi_fixture_model("resnet18_backbone.safetensors");
    ck_assert_int_eq(mi_model_num_classes(m), 0);
    mi_session *s;
    ck_assert_msg(mi_session_create(&s, m, in.shape, 0) == MI_OK, "%s", mi_last_error());
    ck_assert_int_eq(mi_session_output_count(s), 4);
    ck_assert_msg(mi_session_run(s, in.data) == MI_OK, "%s", mi_last_error());
    ck_assert_ptr_null(mi_session_output(s, "logits", NULL));
    for (int i = 0; i < 4; i++) {
        ck_assert_str_eq(mi_session_output_name(s, i), feat[i]);
        int64_t shape[4];
        const float *got = mi_session_output(s, feat[i], shape);
        mi_tensor want = mi_fixture_tensor(&r, feat[i]);
        compare("resnet18 backbone", feat[i], got, shape, 4, &want);
    }
    mi_session_destroy(s);
    /* a classifier blob of the same weights gives the same logits torchvision does on this size */
    mi_model_close(m);
    m = mi_fixture_model("resnet18_rand.safetensors");
    ck_assert_msg(mi_session_create(&s, m, in.shape, 0) == MI_OK, "%s", mi_last_error());
    ck_assert_int_eq(mi_session_run(s, in.data), MI_OK);
    int64_t shape[4];
    const float *got = mi_session_output(s, "logits", shape);
    mi_tensor want = mi_fixture_tensor(&r, "logits");
    compare("resnet18 96x160", "logits", got, shape, 2, &want);
    mi_session_destroy(s);
    mi_model_close(m);
    mi_weights_close(&r);
}
END_TEST

START_TEST(same_bits_for_any_thread_count)
{
    mi_weights r;
    mi_fixture_open(&r, "resnet18_ref.safetensors");
    mi_tensor in = mi_fixture_tensor(&r, "input");
    mi_model *m = mi_fixture_model("resnet18_rand.safetensors");
    float out[3][2 * 26];
    const int threads[3] = { 1, 2, 4 };
    for (int i = 0; i < 3; i++) {
        mi_session *s;
        ck_assert_int_eq(mi_session_create(&s, m, in.shape, threads[i]), MI_OK);
        ck_assert_int_eq(mi_session_run(s, in.data), MI_OK);
        memcpy(out[i], mi_session_output(s, "logits", NULL), sizeof out[i]);
        mi_session_destroy(s);
    }
    ck_assert_msg(!memcmp(out[0], out[1], sizeof out[0]), "1 vs 2 threads differ");
    ck_assert_msg(!memcmp(out[0], out[2], sizeof out[0]), "1 vs 4 threads differ");
    /* a batch of two gives the same bits as each image alone, in a session of 1 and as the
     * first n = 1 of a session of 2 */
    mi_session *one, *two;
    ck_assert_int_eq(mi_session_create(&one, m, (int64_t[4]){ 1, 3, 224, 224 }, 0), MI_OK);
    ck_assert_int_eq(mi_session_create(&two, m, in.shape, 0), MI_OK);
    ck_assert_int_eq(mi_session_run(one, in.data + 3 * 224 * 224), MI_OK);
    ck_assert_msg(!memcmp(mi_session_output(one, "logits", NULL), out[0] + 26, 26 * sizeof(float)),
                  "batched result differs from single");
    ck_assert_int_eq(mi_session_run_n(two, in.data + 3 * 224 * 224, 1), MI_OK);
    int64_t shape[4];
    ck_assert_msg(!memcmp(mi_session_output(two, "logits", shape), out[0] + 26, 26 * sizeof(float)),
                  "a run of 1 in a session of 2 differs");
    ck_assert_int_eq(shape[0], 1);
    mi_session_destroy(one);
    mi_session_destroy(two);
    mi_model_close(m);
    mi_weights_close(&r);
}
END_TEST

START_TEST(refuses_bad_shapes_and_blobs)
{
    mi_model *m = mi_fixture_model("resnet18_rand.safetensors");
    mi_session *s;
    ck_assert_int_eq(mi_session_create(&s, m, (int64_t[4]){ 0, 3, 224, 224 }, 0), MI_ERR_ARG);
    ck_assert_int_eq(mi_session_create(&s, m, (int64_t[4]){ 1, 4, 224, 224 }, 0), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "input shape [1,4,224,224]: expected (N, 3, H, W)"));
    ck_assert_int_eq(mi_session_create_outputs(&s, m, (int64_t[4]){ 1, 3, 64, 64 }, 0,
                                               (const char *const[]){ "features.C6" }, 1), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "a resnet18 has no output 'features.C6'"));
    ck_assert_int_eq(mi_session_create(&s, m, (int64_t[4]){ 2, 3, 64, 64 }, 0), MI_OK);
    float x[1] = { 0 };
    ck_assert_int_eq(mi_session_run_n(s, x, 3), MI_ERR_ARG);
    ck_assert_int_eq(mi_session_run_n(s, x, 0), MI_ERR_ARG);
    ck_assert_ptr_null(mi_session_output(s, "logits", NULL));   /* nothing before a run */
    /* non-finite input is refused, naming where */
    float *big = calloc(2 * 3 * 64 * 64, sizeof *big);
    big[3 * 64 * 64 + 2 * 64 * 64 + 5 * 64 + 7] = NAN;
    ck_assert_int_eq(mi_session_run(s, big), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "input value at (n=1, c=2, y=5, x=7) is NaN"));
    free(big);
    mi_session_destroy(s);
    mi_model_close(m);
    /* a blob that is not a resnet50 although it says so: the first misshapen tensor is named with
     * what was expected and what was found */
    char blob[512];
    snprintf(blob, sizeof blob, "%s/resnet50_claims_18.safetensors", mi_fixtures());
    ck_assert_int_ne(mi_model_open(&m, blob), MI_OK);
    ck_assert_msg(strstr(mi_last_error(), "resnet50_claims_18.safetensors: tensor 'layer1.0.conv1.weight' has shape "
                         "[64,64,3,3], expected [64,64,1,1]") != NULL, "%s", mi_last_error());
    snprintf(blob, sizeof blob, "%s/weights_basic.safetensors", mi_fixtures());
    ck_assert_int_eq(mi_model_open(&m, blob), MI_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(mi_last_error(), "weights_basic.safetensors: arch 'test' is not a network this engine "
                         "runs (resnet18, resnet50, fasterrcnn_c4, fasterrcnn_fpn, vnet2d, vnet3d, depthnet, "
                         "segnet)") != NULL, "%s", mi_last_error());
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("resnet");
    TCase *tc = tcase_create("parity");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, resnet18_matches_torchvision);
    tcase_add_test(tc, resnet50_matches_torchvision);
    tcase_add_test(tc, resnet50_non_square_input);
    tcase_add_test(tc, resnet18_backbone_features);
    tcase_add_test(tc, same_bits_for_any_thread_count);
    tcase_add_test(tc, refuses_bad_shapes_and_blobs);
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(suite)
