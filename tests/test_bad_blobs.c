/* tests/test_bad_blobs.c - the bad-blob corpus (tests/ref_bad_blobs.py) at the C API: every file
 * is refused with the right mi_status and one sentence that names the file and the problem.
 * The same files go through the CLI in tests/test_bad_blobs.sh. */
#include "tests/mi_test.h"

#include <dirent.h>
#include <string.h>

static const struct { const char *file; mi_status st; const char *why; } bad[] = {
    /* the container */
    { "bad_empty",                  MI_ERR_FORMAT, "0 bytes, too short for safetensors" },
    { "bad_tiny",                   MI_ERR_FORMAT, "3 bytes, too short for safetensors" },
    { "bad_truncated_header",       MI_ERR_FORMAT, "exceeds file size 30" },
    { "bad_truncated_data",         MI_ERR_FORMAT, "tensor 'b' data_offsets [24, 40] lie outside the 30-byte data section" },
    { "bad_hlen_beyond_file",       MI_ERR_FORMAT, "header length 337 exceeds file size 344" },
    { "bad_hlen_absurd",            MI_ERR_FORMAT, "header length 18446744073709551600 exceeds file size" },
    { "bad_hlen_too_small",         MI_ERR_FORMAT, "header length 1 is outside [2," },
    { "bad_json",                   MI_ERR_FORMAT, "header is not valid JSON" },
    { "bad_json_nul",               MI_ERR_FORMAT, "header is not valid JSON (NUL byte" },
    { "bad_json_trailing",          MI_ERR_FORMAT, "header is not valid JSON (trailing bytes" },
    { "bad_json_deep",              MI_ERR_FORMAT, "header is not valid JSON" },
    { "bad_json_not_object",        MI_ERR_FORMAT, "header is JSON but not an object" },
    { "bad_json_string",            MI_ERR_FORMAT, "header is JSON but not an object" },
    /* tensor entries */
    { "bad_dtype_unknown",          MI_ERR_FORMAT, "tensor 'a' has unknown dtype 'F17'" },
    { "bad_dtype_not_string",       MI_ERR_FORMAT, "tensor 'a' needs string 'dtype'" },
    { "bad_entry_not_object",       MI_ERR_FORMAT, "tensor 'a' header entry is not an object" },
    { "bad_entry_no_offsets",       MI_ERR_FORMAT, "two 'data_offsets'" },
    { "bad_shape_negative",         MI_ERR_FORMAT, "tensor 'a' dimension 0 is not a non-negative integer" },
    { "bad_shape_fraction",         MI_ERR_FORMAT, "tensor 'a' dimension 0 is not a non-negative integer" },
    { "bad_shape_too_many_dims",    MI_ERR_FORMAT, "tensor 'a' has 6 dimensions, at most 5" },
    { "bad_shape_overflow",         MI_ERR_FORMAT, "tensor 'a' byte size overflows" },
    { "bad_nbytes",                 MI_ERR_FORMAT, "tensor 'a' has 20 data bytes, its dtype F32 and shape need 24" },
    { "bad_offsets_outside",        MI_ERR_FORMAT, "tensor 'b' data_offsets [1000, 1016] lie outside the 40-byte data section" },
    { "bad_offsets_negative",       MI_ERR_FORMAT, "tensor 'a' data_offsets [-8, 16] lie outside" },
    { "bad_offsets_reversed",       MI_ERR_FORMAT, "tensor 'b' data_offsets [40, 24] lie outside" },
    { "bad_offsets_not_numbers",    MI_ERR_FORMAT, "tensor 'b' data_offsets are not two numbers" },
    { "bad_overlap",                MI_ERR_FORMAT, "tensor 'b' bytes [16, 32) overlap tensor 'a'" },
    { "bad_hole",                   MI_ERR_FORMAT, "data bytes [24, 32) before tensor 'b' belong to no tensor" },
    { "bad_extra_data",             MI_ERR_FORMAT, "data section has 56 bytes but tensors cover 40" },
    { "bad_name_too_long",          MI_ERR_FORMAT, "is longer than 127 bytes" },
    { "bad_duplicate_tensor",       MI_ERR_FORMAT, "tensor 'b' appears twice" },
    { "bad_duplicate_metadata",     MI_ERR_FORMAT, "__metadata__ appears twice" },
    /* metadata */
    { "bad_meta_not_object",        MI_ERR_FORMAT, "__metadata__ is not an object" },
    { "bad_meta_not_string",        MI_ERR_FORMAT, "metadata 'num_classes' is not a string" },
    { "bad_meta_mean_nan",          MI_ERR_FORMAT, "metadata 'mean' = '[NaN, 0.5, 0.5]' is not a JSON array of 1 to 4 finite numbers" },
    { "bad_meta_std_infinity",      MI_ERR_FORMAT, "metadata 'std' = '[0.25, Infinity, 0.25]' is not" },
    { "bad_meta_std_zero",          MI_ERR_FORMAT, "metadata 'std' = '[0.25, 0, 0.25]' is not a JSON array of 1 to 4 finite numbers, all > 0" },
    { "bad_meta_mean_huge",         MI_ERR_FORMAT, "metadata 'mean' = '[1e999, 0.5, 0.5]' is not" },
    { "bad_meta_mean_not_array",    MI_ERR_FORMAT, "metadata 'mean' = '0.5' is not" },
    { "bad_meta_num_classes_nan",   MI_ERR_FORMAT, "metadata 'num_classes' = 'NaN' is not an integer" },
    { "bad_meta_num_classes_inf",   MI_ERR_FORMAT, "metadata 'num_classes' = 'inf' is not an integer" },
    { "bad_meta_num_classes_zero",  MI_ERR_FORMAT, "metadata 'num_classes' = '0' is not an integer in [1," },
    { "bad_meta_input_size_float",  MI_ERR_FORMAT, "metadata 'input_size' = '224.5' is not an integer" },
    { "bad_meta_labels_not_array",  MI_ERR_FORMAT, "metadata 'labels' is not a JSON array of strings" },
    { "bad_meta_labels_not_json",   MI_ERR_FORMAT, "metadata 'labels' is not a JSON array of strings" },
    { "bad_meta_labels_numbers",    MI_ERR_FORMAT, "metadata 'labels' is not a JSON array of strings" },
    { "bad_meta_labels_count",      MI_ERR_FORMAT, "metadata 'labels' has 2 names, 'num_classes' is 3" },
    { "bad_meta_high_risk_unknown", MI_ERR_FORMAT, "metadata 'high_risk_labels' names 'ulcer', which is not one of 'labels'" },
    { "bad_meta_high_risk_not_array", MI_ERR_FORMAT, "metadata 'high_risk_labels' is not a JSON array of strings" },
    { "bad_meta_high_risk_no_labels", MI_ERR_FORMAT, "metadata 'high_risk_labels' without 'labels' to name" },
    { "bad_meta_score_threshold_range", MI_ERR_FORMAT, "metadata 'score_threshold' = '1.5' is not a number in [0, 1]" },
    { "bad_meta_score_threshold_text", MI_ERR_FORMAT, "metadata 'score_threshold' = '0.5 ' is not a number in [0, 1]" },
    { "bad_meta_resize_mode_unknown", MI_ERR_FORMAT, "metadata 'resize_mode' = 'stretch' is not 'crop' or 'squash'" },
    { "bad_meta_resize_mode_case",  MI_ERR_FORMAT, "metadata 'resize_mode' = 'Squash' is not 'crop' or 'squash'" },
    { "bad_meta_resize_mode_squash_resize", MI_ERR_FORMAT,
      "metadata 'resize' = 9, but 'resize_mode' squash resizes straight to input_size 8 x 8 (leave 'resize' out or make it 8)" },
    { "bad_meta_resize_mode_squash_default", MI_ERR_FORMAT,
      "metadata 'resize' = 256, but 'resize_mode' squash resizes straight to input_size 224 x 224" },
};
enum { NBAD = sizeof bad / sizeof *bad };

static void corpus_path(char *buf, size_t n, const char *file, const char *ext) {
    snprintf(buf, n, "%s/bad_blobs/%s%s", mi_fixtures(), file, ext);
}

START_TEST(reader_refuses_bad_blob)
{
    char path[1024];
    corpus_path(path, sizeof path, bad[_i].file, ".safetensors");
    mi_weights w;
    mi_status st = mi_weights_open(&w, path);
    ck_assert_msg(st == bad[_i].st, "%s: status %s, expected %s (%s)", path, mi_status_name(st),
                  mi_status_name(bad[_i].st), mi_last_error());
    ck_assert_msg(strncmp(mi_last_error(), path, strlen(path)) == 0 && mi_last_error()[strlen(path)] == ':',
                  "message does not start with the file name: %s", mi_last_error());
    ck_assert_msg(strstr(mi_last_error(), bad[_i].why), "%s: message '%s' lacks '%s'", path,
                  mi_last_error(), bad[_i].why);
    /* a refused open leaves nothing to free, and closing it anyway is harmless */
    ck_assert_ptr_null(w.map);
    mi_weights_close(&w);
}
END_TEST

/* Every file in the corpus directory has a case here, so a case added to the generator without
 * an expectation fails instead of going untested; the good files it starts from do open. */
START_TEST(every_corpus_file_has_a_case)
{
    static const char *good[] = { "ok.safetensors", "ok_resnet18.safetensors", "ok.png",
        "ok_squash.safetensors", "ok_squash_resize.safetensors", "ok_crop.safetensors",
        "arch_missing_tensor.safetensors", "arch_wrong_shape.safetensors",
        "arch_wrong_dtype_i64.safetensors", "arch_wrong_dtype_bool.safetensors" };
    char path[1024];
    snprintf(path, sizeof path, "%s/bad_blobs", mi_fixtures());
    DIR *dir = opendir(path);
    ck_assert_msg(dir != NULL, "%s: run `make test` so tests/ref_bad_blobs.py writes it", path);
    int seen = 0;
    for (struct dirent *e; (e = readdir(dir)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        bool known = false;
        for (size_t i = 0; !known && i < sizeof good / sizeof *good; i++) known = !strcmp(e->d_name, good[i]);
        for (size_t i = 0; !known && i < NBAD; i++)
            known = !strncmp(e->d_name, bad[i].file, strlen(bad[i].file)) &&
                    !strcmp(e->d_name + strlen(bad[i].file), ".safetensors");
        ck_assert_msg(known, "%s/%s has no case in tests/test_bad_blobs.c", path, e->d_name);
        seen++;
    }
    closedir(dir);
    ck_assert_int_eq(seen, NBAD + (int)(sizeof good / sizeof *good));
    for (size_t i = 0; i < 2; i++) {
        corpus_path(path, sizeof path, good[i], "");
        mi_weights w;
        ck_assert_msg(mi_weights_open(&w, path) == MI_OK, "%s", mi_last_error());
        mi_weights_close(&w);
    }
}
END_TEST

START_TEST(not_a_file)
{
    mi_weights w;
    char path[1024];
    corpus_path(path, sizeof path, "does_not_exist", ".safetensors");
    ck_assert_int_eq(mi_weights_open(&w, path), MI_ERR_IO);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "does_not_exist.safetensors: cannot open: No such file"));
    snprintf(path, sizeof path, "%s/bad_blobs", mi_fixtures());
    ck_assert_int_eq(mi_weights_open(&w, path), MI_ERR_IO);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "bad_blobs: not a regular file"));
}
END_TEST

/* Well-formed files that do not fit resnet18. The ResNet loader asks mi_weights_get for each
 * tensor with its expected shape, so these are the messages `medinfer classify` prints. */
START_TEST(resnet18_misfits)
{
    static const struct { const char *file, *tensor; int ndim; int64_t shape[4]; const char *why; } c[] = {
        { "arch_missing_tensor", "layer2.0.downsample.0.weight", 4, { 128, 64, 1, 1 },
          "tensor 'layer2.0.downsample.0.weight' is missing" },
        { "arch_wrong_shape", "layer1.0.conv1.weight", 4, { 64, 64, 3, 3 },
          "tensor 'layer1.0.conv1.weight' has shape [64,64,1,1], expected [64,64,3,3]" },
        { "arch_wrong_dtype_i64", "conv1.weight", 4, { 64, 3, 7, 7 },
          "tensor 'conv1.weight' has dtype I64, expected F32" },
        { "arch_wrong_dtype_bool", "fc.bias", 1, { 2 }, "tensor 'fc.bias' has dtype BOOL, expected F32" },
    };
    char path[1024], ok_path[1024];
    corpus_path(ok_path, sizeof ok_path, "ok_resnet18", ".safetensors");
    mi_weights ok;
    ck_assert_msg(mi_weights_open(&ok, ok_path) == MI_OK, "%s", mi_last_error());
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        corpus_path(path, sizeof path, c[i].file, ".safetensors");
        mi_weights w;
        mi_tensor t;
        ck_assert_msg(mi_weights_open(&w, path) == MI_OK, "%s", mi_last_error());
        ck_assert_str_eq(mi_weights_meta(&w, "arch"), "resnet18");
        ck_assert_int_eq(mi_weights_get(&w, c[i].tensor, c[i].ndim, c[i].shape, &t), MI_ERR_SHAPE);
        ck_assert_msg(strncmp(mi_last_error(), path, strlen(path)) == 0, "%s", mi_last_error());
        ck_assert_msg(strstr(mi_last_error(), c[i].why), "'%s' lacks '%s'", mi_last_error(), c[i].why);
        /* the good file it was made from has the tensor as expected (stored F16, read as F32) */
        ck_assert_msg(mi_weights_get(&ok, c[i].tensor, c[i].ndim, c[i].shape, &t) == MI_OK, "%s",
                      mi_last_error());
        mi_weights_close(&w);
    }
    mi_weights_close(&ok);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("bad_blobs");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);  /* resnet18_misfits reads five 22 MB blobs; slow under ASan */
    tcase_add_loop_test(tc, reader_refuses_bad_blob, 0, NBAD);
    tcase_add_test(tc, every_corpus_file_has_a_case);
    tcase_add_test(tc, not_a_file);
    tcase_add_test(tc, resnet18_misfits);
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(suite)
