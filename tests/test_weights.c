/* tests/test_weights.c - the safetensors reader on good files (ours and an independent writer's),
 * metadata parsers, SHA-256 vectors. The bad-blob corpus is tests/test_bad_blobs.sh. */
#include "mi_test.h"
#include "../weights/sha256.h"

#include <string.h>

START_TEST(sha256_known_vectors)
{
    static const struct { const char *msg, *hex; } v[] = {
        { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
        { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
        { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
    };
    char hex[65];
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        mi_sha256_hex(v[i].msg, strlen(v[i].msg), hex);
        ck_assert_str_eq(hex, v[i].hex);
    }
    /* streamed in odd pieces == one shot */
    char big[1000];
    for (int i = 0; i < 1000; i++) big[i] = (char)(i * 7);
    mi_sha256_ctx c;
    uint8_t d[32];
    char hex2[65];
    mi_sha256_init(&c);
    for (int at = 0, step = 1; at < 1000; at += step, step = step * 3 % 97 + 1)
        mi_sha256_update(&c, big + at, (size_t)(at + step > 1000 ? 1000 - at : step));
    mi_sha256_final(&c, d);
    mi_hex(d, 32, hex2);
    mi_sha256_hex(big, 1000, hex);
    ck_assert_str_eq(hex, hex2);
}
END_TEST

START_TEST(reads_export_py_blob)
{
    mi_weights w;
    mi_fixture_open(&w, "weights_basic.safetensors");
    mi_tensor a;
    int64_t shape[2] = { 3, 5 };
    ck_assert_int_eq(mi_weights_get(&w, "a", 2, shape, &a), MI_OK);
    shape[1] = 4;
    ck_assert_int_eq(mi_weights_get(&w, "a", 2, shape, &a), MI_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "'a' has shape [3,5], expected [3,4]"));
    ck_assert_int_eq(mi_weights_get(&w, "n", -1, NULL, &a), MI_ERR_SHAPE);   /* I64, not F32 */
    ck_assert_int_eq(mi_weights_get(&w, "zz", -1, NULL, &a), MI_ERR_SHAPE);  /* missing */
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "'zz' is missing"));

    ck_assert_str_eq(mi_weights_meta(&w, "arch"), "test");
    long long n;
    ck_assert_int_eq(mi_weights_meta_int(&w, "num_classes", 1, 100, &n), MI_OK);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(mi_weights_meta_int(&w, "num_classes", 4, 100, &n), MI_ERR_FORMAT);
    float mean[3];
    ck_assert_int_eq(mi_weights_meta_floats(&w, "mean", mean, 3), MI_OK);
    ck_assert(mean[0] == 0.5f && mean[1] == 0.25f && mean[2] == 0.125f);
    ck_assert_int_eq(mi_weights_meta_floats(&w, "mean", mean, 2), MI_ERR_FORMAT);
    char **labels;
    int nl;
    ck_assert_int_eq(mi_weights_meta_strings(&w, "labels", &labels, &nl), MI_OK);
    ck_assert_int_eq(nl, 3);
    ck_assert_str_eq(labels[2], "z");
    mi_strings_free(labels, nl);
    ck_assert_int_eq(strlen(w.sha256), 64);
    char hex[65];
    ck_assert_int_eq(mi_sha256_file(w.path, hex), 0);
    ck_assert_str_eq(hex, w.sha256);
    mi_weights_close(&w);
}
END_TEST

START_TEST(reads_independent_writer)
{
    mi_weights w, e;
    mi_fixture_open(&w, "weights_independent.safetensors");
    mi_fixture_open(&e, "weights_expect.safetensors");
    mi_tensor wt, bt, wa = mi_fixture_tensor(&e, "a"), ba = mi_fixture_tensor(&e, "b");
    ck_assert_int_eq(mi_weights_get(&w, "layer.weight", 2, wa.shape, &wt), MI_OK);
    ck_assert_int_eq(mi_weights_get(&w, "layer.bias", 1, ba.shape, &bt), MI_OK);
    ck_assert_int_eq(memcmp(wt.data, wa.data, 15 * sizeof(float)), 0);
    ck_assert_int_eq(memcmp(bt.data, ba.data, 7 * sizeof(float)), 0);
    ck_assert_ptr_nonnull(mi_weights_find(&w, "bn.num_batches_tracked"));
    ck_assert_str_eq(mi_weights_meta(&w, "format"), "pt");
    mi_weights_close(&w);
    mi_weights_close(&e);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("weights");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, sha256_known_vectors);
    tcase_add_test(tc, reads_export_py_blob);
    tcase_add_test(tc, reads_independent_writer);
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(suite)
