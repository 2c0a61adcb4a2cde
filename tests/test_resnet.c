/* tests/test_resnet.c - ResNet-18 / ResNet-50 against torchvision (tests/ref_resnet.py): random
 * weights and BN statistics, blob written by an independent safetensors writer with torchvision's
 * names. Every named stage is compared in order, so the first failure names the first stage that
 * diverges. Tolerance (the bar): max|d| <= 1e-4 * max|ref| per stage.
 * Then: identical bits for 1, 2 and 4 threads. */
#include "mi_test.h"
#include "../nn/resnet.h"
#include "../ops/cpu.h"

#include <math.h>
#include <string.h>

static void parity(const char *arch) {
    char blob[512], ref[64];
    snprintf(blob, sizeof blob, "%s/%s_rand.safetensors", mi_fixtures(), arch);
    snprintf(ref, sizeof ref, "%s_ref.safetensors", arch);
    mi_weights r;
    mi_fixture_open(&r, ref);
    mi_tensor in = mi_fixture_tensor(&r, "input");
    mi_resnet *m;
    ck_assert_msg(mi_resnet_open(&m, blob, (int)in.shape[0]) == MI_OK, "%s", mi_last_error());
    ck_assert_str_eq(mi_resnet_arch(m), arch);
    mi_tensor fc = mi_fixture_tensor(&r, "fc");
    float *logits = malloc((size_t)mi_tensor_numel(&fc) * sizeof *logits);
    ck_assert_int_eq(mi_resnet_forward(m, in.data, in.shape[0], logits), MI_OK);
    static const char *stage[] = { "stem", "layer1", "layer2", "layer3", "layer4", "pool", "fc" };
    for (int i = 0; i < 7; i++) {
        mi_tensor want = mi_fixture_tensor(&r, stage[i]);
        const mi_tensor *got = mi_resnet_activation(m, stage[i]);
        ck_assert_ptr_nonnull(got);
        double maxref = 0;
        for (int64_t j = 0; j < mi_tensor_numel(&want); j++) maxref = fmax(maxref, fabs(want.data[j]));
        double err = 0;
        mi_assert_close_t(got, &want, 1e-4 * maxref, 0);
        for (int64_t j = 0; j < mi_tensor_numel(&want); j++) err = fmax(err, fabs(got->data[j] - want.data[j]));
        printf("%s %-7s max|ref| %-10.4g max|d| %-10.3g (%.2e of max|ref|) isa %s\n", arch, stage[i],
               maxref, err, err / maxref, mi_isa_name(mi_cpu_isa()));
    }
    ck_assert_int_eq(memcmp(logits, mi_resnet_activation(m, "fc")->data,
                            (size_t)mi_tensor_numel(&fc) * sizeof *logits), 0);
    free(logits);
    mi_resnet_close(m);
    mi_weights_close(&r);
}

START_TEST(resnet18_matches_torchvision) { parity("resnet18"); }
END_TEST
START_TEST(resnet50_matches_torchvision) { parity("resnet50"); }
END_TEST

START_TEST(same_bits_for_any_thread_count)
{
    mi_weights r;
    mi_fixture_open(&r, "resnet18_ref.safetensors");
    mi_tensor in = mi_fixture_tensor(&r, "input");
    char blob[512];
    snprintf(blob, sizeof blob, "%s/resnet18_rand.safetensors", mi_fixtures());
    mi_resnet *m;
    ck_assert_msg(mi_resnet_open(&m, blob, 2) == MI_OK, "%s", mi_last_error());
    float out[3][2 * 26];
    const int threads[3] = { 1, 2, 4 };
    for (int i = 0; i < 3; i++) {
        mi_set_threads(threads[i]);
        ck_assert_int_eq(mi_resnet_forward(m, in.data, 2, out[i]), MI_OK);
    }
    ck_assert_msg(!memcmp(out[0], out[1], sizeof out[0]), "1 vs 2 threads differ");
    ck_assert_msg(!memcmp(out[0], out[2], sizeof out[0]), "1 vs 4 threads differ");
    /* a batch of two gives the same bits as each image alone */
    float one[26];
    ck_assert_int_eq(mi_resnet_forward(m, in.data + 3 * 224 * 224, 1, one), MI_OK);
    ck_assert_msg(!memcmp(one, out[0] + 26, sizeof one), "batched result differs from single");
    mi_set_threads(0);
    mi_resnet_close(m);
    mi_weights_close(&r);
}
END_TEST

START_TEST(refuses_bad_batch_and_blob)
{
    char blob[512];
    snprintf(blob, sizeof blob, "%s/resnet18_rand.safetensors", mi_fixtures());
    mi_resnet *m;
    ck_assert_int_eq(mi_resnet_open(&m, blob, 0), MI_ERR_ARG);
    ck_assert_int_eq(mi_resnet_open(&m, blob, 1), MI_OK);
    float x[1];
    ck_assert_int_eq(mi_resnet_forward(m, x, 2, x), MI_ERR_ARG);
    mi_resnet_close(m);
    /* a resnet18 blob is not a resnet50: the first missing/misshapen tensor is named */
    snprintf(blob, sizeof blob, "%s/weights_basic.safetensors", mi_fixtures());
    ck_assert_int_ne(mi_resnet_open(&m, blob, 1), MI_OK);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "weights_basic.safetensors"));
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("resnet");
    TCase *tc = tcase_create("parity");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, resnet18_matches_torchvision);
    tcase_add_test(tc, resnet50_matches_torchvision);
    tcase_add_test(tc, same_bits_for_any_thread_count);
    tcase_add_test(tc, refuses_bad_batch_and_blob);
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(suite)
