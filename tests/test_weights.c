/* tests/test_weights.c - the safetensors reader on good files (ours and an independent writer's),
 * from a file and from memory, metadata parsers, SHA-256 vectors. The bad-blob corpus is
 * tests/test_bad_blobs.sh. */
#include "tests/mi_test.h"
#include "weights/sha256.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

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

/* F16/BF16 are widened exactly: every bit pattern equals torch's .float() bit for bit (NaNs:
 * NaN with the same sign); F64 rounds to nearest, overflowing to inf like torch. */
START_TEST(half_and_double_become_f32)
{
    mi_weights w, e;
    mi_fixture_open(&w, "weights_half.safetensors");
    mi_fixture_open(&e, "weights_half_expect.safetensors");
    static const char *names[] = { "h16", "b16", "f64" };
    for (int i = 0; i < 3; i++) {
        mi_tensor got, want = mi_fixture_tensor(&e, names[i]);
        ck_assert_int_eq(mi_weights_get(&w, names[i], 1, want.shape, &got), MI_OK);
        ck_assert_ptr_eq(got.data, mi_weights_find(&w, names[i])->f32);
        ck_assert_int_eq((uintptr_t)got.data % 4, 0);
        for (int64_t k = 0; k < want.shape[0]; k++) {
            uint32_t a, b;
            memcpy(&a, &got.data[k], 4);
            memcpy(&b, &want.data[k], 4);
            if (isnan(want.data[k]))
                ck_assert_msg(isnan(got.data[k]) && signbit(got.data[k]) == signbit(want.data[k]),
                              "%s[%lld]: 0x%08x, expected a NaN like 0x%08x", names[i], (long long)k, a, b);
            else
                ck_assert_msg(a == b, "%s[%lld]: 0x%08x, expected 0x%08x", names[i], (long long)k, a, b);
        }
    }
    mi_tensor t;
    int64_t three = 3;
    ck_assert_int_eq(mi_weights_get(&w, "odd", 1, &three, &t), MI_OK);  /* 6 bytes: the next is off 8 */
    ck_assert(t.data[0] == 1.5f && t.data[1] == -2.0f && t.data[2] == 65504.0f);
    ck_assert_int_eq(mi_weights_get(&w, "n", -1, NULL, &t), MI_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "'n' has dtype I64, expected F32"));
    ck_assert_int_eq(mi_weights_get(&w, "u", -1, NULL, &t), MI_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "weights_half.safetensors: tensor 'u' has dtype U8"));
    /* the writer lays tensors out largest element first: the I64 one sits 8-aligned in the map */
    const mi_blob_tensor *n = mi_weights_find(&w, "n");
    ck_assert_int_eq((uintptr_t)n->data % 8, 0);
    ck_assert_int_eq(*(const int64_t *)n->data, 7);
    mi_weights_close(&w);
    mi_weights_close(&e);
}
END_TEST

/* tools/export.py --arch resnet18 --random --dtype f16: half the bytes, same values as torch's
 * .half().float() of the same random model. */
START_TEST(export_py_f16_blob)
{
    mi_weights w, e;
    mi_fixture_open(&w, "weights_r18_f16.safetensors");
    mi_fixture_open(&e, "weights_r18_f16_expect.safetensors");
    ck_assert_int_eq(mi_weights_find(&w, "layer4.1.conv2.weight")->dtype, MI_F16);
    ck_assert_int_eq(mi_weights_find(&w, "bn1.num_batches_tracked")->dtype, MI_I64);
    ck_assert_uint_lt(w.size, 11689512u * 2 + 100000u);  /* resnet18 with 3 classes: 11.2M params */
    static const char *names[] = { "conv1.weight", "fc.weight", "fc.bias", "bn1.running_var" };
    for (int i = 0; i < 4; i++) {
        mi_tensor got, want = mi_fixture_tensor(&e, names[i]);
        ck_assert_int_eq(mi_weights_get(&w, names[i], want.ndim, want.shape, &got), MI_OK);
        ck_assert_int_eq(memcmp(got.data, want.data, (size_t)mi_tensor_numel(&want) * 4), 0);
    }
    ck_assert_str_eq(mi_weights_meta(&w, "arch"), "resnet18");
    mi_weights_close(&w);
    mi_weights_close(&e);
}
END_TEST

/* A file whose tensors start at offsets that are no multiple of their element size (unpadded
 * header, U8 first): the reader hands out aligned copies, so no kernel reads misaligned floats. */
START_TEST(reads_unaligned_tensors)
{
    mi_weights w;
    mi_fixture_open(&w, "weights_unaligned.safetensors");
    ck_assert_int_ne(w.data_start % 4, 0);
    mi_tensor f, h;
    ck_assert_int_eq(mi_weights_get(&w, "f", -1, NULL, &f), MI_OK);
    ck_assert_int_eq((uintptr_t)f.data % 4, 0);
    for (int i = 0; i < 5; i++) ck_assert(f.data[i] == (float)i / 4);
    const mi_blob_tensor *n = mi_weights_find(&w, "n");
    ck_assert_int_eq((uintptr_t)n->data % 8, 0);
    ck_assert(((const int64_t *)n->data)[0] == -5 && ((const int64_t *)n->data)[1] == 6);
    ck_assert_int_eq(mi_weights_get(&w, "h", -1, NULL, &h), MI_OK);
    ck_assert(h.data[0] == 0.5f && h.data[1] == -3.0f);
    const unsigned char *u = mi_weights_find(&w, "u")->data;
    ck_assert(u[0] == 9 && u[2] == 7);
    mi_weights_close(&w);
}
END_TEST

/* A small blob built here, byte for byte: an F32 [2,2] tensor, an F16 [2] one, metadata. */
static size_t tiny_blob(unsigned char *out) {
    char h[256];
    int n = snprintf(h, sizeof h, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                     "\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[16,20]},\"__metadata__\":"
                     "{\"arch\":\"tiny\",\"num_classes\":\"2\",\"labels\":\"[\\\"a\\\",\\\"b\\\"]\"}}");
    while (n % 8) h[n++] = ' ';
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(out + 8, h, (size_t)n);
    const float w[4] = { 1.0f, -2.5f, 0.25f, 3.0f };
    const uint16_t half[2] = { 0x3c00, 0xc000 };  /* 1.0, -2.0 */
    memcpy(out + 8 + n, w, 16);
    memcpy(out + 8 + n + 16, half, 4);
    return 8 + (size_t)n + 20;
}

static void check_tiny(const mi_weights *w) {
    mi_tensor t;
    int64_t s2[2] = { 2, 2 }, s1[1] = { 2 };
    ck_assert_int_eq(mi_weights_get(w, "w", 2, s2, &t), MI_OK);
    ck_assert(t.data[0] == 1.0f && t.data[1] == -2.5f && t.data[2] == 0.25f && t.data[3] == 3.0f);
    ck_assert_int_eq(mi_weights_get(w, "h", 1, s1, &t), MI_OK);
    ck_assert(t.data[0] == 1.0f && t.data[1] == -2.0f);
    long long nc;
    ck_assert_int_eq(mi_weights_meta_int(w, "num_classes", 1, 10, &nc), MI_OK);
    ck_assert_int_eq(nc, 2);
}

/* mi_weights_open_memory runs the same reader as mi_weights_open: same tensors, metadata and
 * SHA-256 as the file with the same bytes; errors name the given name; the bytes are borrowed
 * (aligned F32 tensors point into them, misaligned ones are copied) and left alone by close. */
START_TEST(open_memory_equals_open_file)
{
    unsigned char *buf = malloc(512 + 1);
    size_t n = tiny_blob(buf);
    char path[] = "/tmp/mi_weights_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, buf, n), (ssize_t)n);
    close(fd);
    mi_weights f, m;
    ck_assert_int_eq(mi_weights_open(&f, path), MI_OK);
    unlink(path);
    ck_assert_int_eq(mi_weights_open_memory(&m, buf, n, "tiny.safetensors"), MI_OK);
    ck_assert_str_eq(m.path, "tiny.safetensors");
    ck_assert_str_eq(m.sha256, f.sha256);
    ck_assert_int_eq(m.ntensors, f.ntensors);
    check_tiny(&f);
    check_tiny(&m);
    ck_assert_ptr_eq(mi_weights_find(&m, "w")->f32, (const float *)(buf + m.data_start));  /* borrowed */
    mi_weights_close(&f);
    mi_weights_close(&m);
    ck_assert_int_eq(buf[8], '{');  /* still ours: close neither unmapped nor freed it */

    /* one byte off: the F32 tensor is misaligned in the caller's buffer and gets an aligned copy */
    memmove(buf + 1, buf, n);
    ck_assert_int_eq(mi_weights_open_memory(&m, buf + 1, n, NULL), MI_OK);
    ck_assert_str_eq(m.path, "(memory)");
    ck_assert_int_eq((uintptr_t)mi_weights_find(&m, "w")->f32 % 4, 0);
    check_tiny(&m);
    mi_weights_close(&m);

    /* refusals name the blob by the given name */
    ck_assert_int_eq(mi_weights_open_memory(&m, buf + 1, n - 1, "cut.safetensors"), MI_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "cut.safetensors: tensor 'h' data_offsets [16, 20] lie outside"));
    ck_assert_int_eq(mi_weights_open_memory(&m, buf + 1, 7, "short.safetensors"), MI_ERR_FORMAT);
    ck_assert_str_eq(strstr(mi_last_error(), "short.safetensors"), "short.safetensors: 7 bytes, too short for safetensors");
    ck_assert_int_eq(mi_weights_open_memory(&m, NULL, 0, "none"), MI_ERR_FORMAT);
    ck_assert_int_eq(mi_weights_open_memory(&m, NULL, 64, "none"), MI_ERR_ARG);
    free(buf);

    /* a blob written by tools/export.py: the same through either door */
    mi_weights e;
    mi_fixture_open(&e, "weights_basic.safetensors");
    FILE *fp = fopen(e.path, "rb");
    ck_assert_ptr_nonnull(fp);
    buf = malloc(e.size);
    ck_assert_uint_eq(fread(buf, 1, e.size, fp), e.size);
    fclose(fp);
    ck_assert_int_eq(mi_weights_open_memory(&m, buf, e.size, "basic"), MI_OK);
    ck_assert_str_eq(m.sha256, e.sha256);
    ck_assert_int_eq(m.ntensors, e.ntensors);
    for (int i = 0; i < e.ntensors; i++) {
        const mi_blob_tensor *a = &e.tensors[i], *b = mi_weights_find(&m, a->name);
        ck_assert_ptr_nonnull(b);
        ck_assert_int_eq(memcmp(a->data, b->data, a->end - a->begin), 0);
    }
    ck_assert_str_eq(mi_weights_meta(&m, "labels"), mi_weights_meta(&e, "labels"));
    mi_weights_close(&m);
    mi_weights_close(&e);
    free(buf);
}
END_TEST

/* What mi_weights_open read is what runs, whatever happens to the file afterwards: another
 * process rewriting the blob in place (an update copied over it) changes neither the tensors nor
 * the SHA-256 an open model was verified with. (A private mapping of the file would show the new
 * bytes in every page not yet copied.) */
START_TEST(open_file_is_a_copy)
{
    unsigned char buf[512];
    const size_t n = tiny_blob(buf);
    char path[] = "/tmp/mi_weights_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, buf, n), (ssize_t)n);
    mi_weights f;
    ck_assert_int_eq(mi_weights_open(&f, path), MI_OK);
    char sha[sizeof f.sha256];
    memcpy(sha, f.sha256, sizeof sha);
    const float twos[4] = { 2.0f, 2.0f, 2.0f, 2.0f };   /* the F32 tensor's bytes, rewritten */
    ck_assert_int_eq(pwrite(fd, twos, sizeof twos, (off_t)f.data_start), (ssize_t)sizeof twos);
    close(fd);
    mi_weights g;
    ck_assert_int_eq(mi_weights_open(&g, path), MI_OK);   /* the file did change */
    ck_assert_str_ne(g.sha256, sha);
    mi_weights_close(&g);
    unlink(path);
    check_tiny(&f);
    ck_assert_str_eq(f.sha256, sha);
    mi_weights_close(&f);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("weights");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, sha256_known_vectors);
    tcase_add_test(tc, reads_export_py_blob);
    tcase_add_test(tc, reads_independent_writer);
    tcase_add_test(tc, half_and_double_become_f32);
    tcase_add_test(tc, export_py_f16_blob);
    tcase_add_test(tc, reads_unaligned_tensors);
    tcase_add_test(tc, open_memory_equals_open_file);
    tcase_add_test(tc, open_file_is_a_copy);
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(suite)
