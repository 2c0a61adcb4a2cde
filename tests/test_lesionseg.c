/* tests/test_lesionseg.c - the depth estimator ("depthnet") and the depth-guided U-Net ("segnet")
 * through the public API against tools/lesionseg_ref.py (tests/ref_lesionseg.py: random weights,
 * BatchNorm statistics and the InstanceNorm / GroupNorm affine parameters randomized, each module
 * built from the metadata its blob carries). Every stage the reference names is compared in the
 * order the network computes it, through the session's capture hook, so the first failure names
 * the first stage that diverges. Tolerance: max|d| <= 1e-4 * max|ref| per stage (the measured
 * ratios are printed; fp32 convolutions summed in another order, FMA in the GEMM, polynomial
 * sigmoid / softmax on AVX2). Also: the same bits for 1 and 2 threads and for an item alone or in
 * a batch; refusals of bad blobs and inputs that name the file and what is wrong. */
#include "tests/mi_test.h"
#include "medinfer.h"
#include "ops/cpu.h"

#include <math.h>
#include <string.h>
#include <time.h>

#define MAX_STAGES 32

/* how many decoder stages a reference has under `prefix` ("global.dec." -> L + 1) */
static int count_prefixed(const mi_weights *ref, const char *prefix) {
    int n = 0;
    char name[32];
    for (;; n++) {
        snprintf(name, sizeof name, "%s%d", prefix, n);
        if (!mi_weights_find(ref, name)) return n;
    }
}

/* the stages of DepthEstimator.forward (and of the EncDec on the patch batch), in computing order */
static int depth_stages(char names[MAX_STAGES][24], const mi_weights *ref) {
    const int L = count_prefixed(ref, "global.dec.") - 1;
    int n = 0;
    for (int i = L; i >= 0; i--) snprintf(names[n++], 24, "global.dec.%d", i);
    static const char *mid[] = { "global", "global_up", "local.input" };
    for (int k = 0; k < 3; k++) snprintf(names[n++], 24, "%s", mid[k]);
    for (int i = L; i >= 0; i--) snprintf(names[n++], 24, "local.dec.%d", i);
    static const char *end[] = { "local.encdec", "local", "fused", "refine", "depth" };
    for (int k = 0; k < 5; k++) snprintf(names[n++], 24, "%s", end[k]);
    return n;
}

/* the stages of SegNet.forward, in computing order */
static int seg_stages(char names[MAX_STAGES][24], const mi_weights *ref) {
    const int L = count_prefixed(ref, "enc.") - 1;
    int n = 0;
    for (int l = 0; l <= L; l++) {
        snprintf(names[n++], 24, "att.%d", l);
        snprintf(names[n++], 24, "enc.%d", l);
    }
    for (int j = 0; j < L; j++) snprintf(names[n++], 24, "dec.%d", j);
    snprintf(names[n++], 24, "logits");
    snprintf(names[n++], 24, "seg");
    return n;
}

static bool is_depth(const char *name) { return !strncmp(name, "depth", 5); }

static void compare(const char *what, const mi_captured *c, int i, const mi_tensor *want) {
    const char *stage = c->names[i];
    ck_assert_msg(c->data[i] != NULL, "%s: stage '%s' was not produced", what, stage);
    ck_assert_msg(c->ndim[i] == want->ndim, "%s %s: %d dims, lesionseg_ref %d", what, stage, c->ndim[i], want->ndim);
    for (int d = 0; d < want->ndim; d++)
        ck_assert_msg(c->shape[i][d] == want->shape[d], "%s %s: dim %d is %lld, lesionseg_ref %lld", what, stage, d,
                      (long long)c->shape[i][d], (long long)want->shape[d]);
    double maxref = 0;
    for (int64_t j = 0; j < mi_tensor_numel(want); j++) maxref = fmax(maxref, fabs(want->data[j]));
    double err = mi_assert_close(c->data[i], want->data, mi_tensor_numel(want), 1e-4 * maxref, 0, stage);
    const double ratio = err / (maxref > 0 ? maxref : 1);
    printf("%-10s %-14s max|ref| %-10.4g max|d| %-10.3g (%.2e of max|ref|) isa %s\n", what, stage, maxref, err, ratio,
           mi_isa_name(mi_cpu_isa()));
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void parity(const char *name) {
    char path[64], names[MAX_STAGES][24];
    const char *stage[MAX_STAGES];
    snprintf(path, sizeof path, "%s_ref.safetensors", name);
    mi_weights r;
    mi_fixture_open(&r, path);
    mi_tensor in = mi_fixture_tensor(&r, "input");
    snprintf(path, sizeof path, "%s_rand.safetensors", name);
    mi_model *m = mi_fixture_model(path);
    ck_assert_str_eq(mi_model_arch(m), is_depth(name) ? "depthnet" : "segnet");
    ck_assert_int_eq(mi_model_input_channels(m), (int)in.shape[1]);
    ck_assert_int_eq(mi_model_num_classes(m), is_depth(name) ? 1 : 2);
    const int n = is_depth(name) ? depth_stages(names, &r) : seg_stages(names, &r);
    for (int i = 0; i < n; i++) stage[i] = names[i];
    /* one thread: same_bits() shows 2 give the same bits, and 2 OpenMP threads on a loaded
     * 2-core machine take many times longer */
    mi_session *s;
    ck_assert_msg(mi_session_create(&s, m, in.shape, 1) == MI_OK, "%s", mi_last_error());
    mi_captured c = { .names = stage, .n = n };
    mi_session_set_capture(s, mi_capture, &c);
    double t0 = now();
    ck_assert_msg(mi_session_run(s, in.data) == MI_OK, "%s", mi_last_error());
    printf("%-10s input %lldx%lldx%lldx%lld: %.1f ms, arena %.1f MB\n", name, (long long)in.shape[0],
           (long long)in.shape[1], (long long)in.shape[2], (long long)in.shape[3], 1e3 * (now() - t0),
           mi_session_arena_bytes(s) / 1e6);
    for (int i = 0; i < n; i++) {   /* in order: the first failure names the first stage that diverges */
        mi_tensor want = mi_fixture_tensor(&r, stage[i]);
        compare(name, &c, i, &want);
    }
    /* the one default output is the last stage, bit for bit */
    const char *out = is_depth(name) ? "depth" : "seg";
    ck_assert_int_eq(mi_session_output_count(s), 1);
    int64_t shape[4];
    const float *got = mi_session_output(s, out, shape);
    const int i = mi_captured_index(&c, out);
    ck_assert_ptr_nonnull(got);
    for (int d = 0; d < 4; d++) ck_assert_int_eq(shape[d], c.shape[i][d]);
    ck_assert_int_eq(memcmp(got, c.data[i], (size_t)c.numel[i] * sizeof(float)), 0);
    mi_captured_free(&c);
    mi_session_destroy(s);
    mi_model_close(m);
    mi_weights_close(&r);
}

START_TEST(depth_matches_lesionseg_ref)
{
    parity("depth_a");
    parity("depth_b");
    parity("depth_c");
}
END_TEST

START_TEST(seg_matches_lesionseg_ref)
{
    parity("seg_a");
    parity("seg_b");
    parity("seg_c");
    parity("seg_d");
}
END_TEST

/* the DEFAULTS at 192 x 192 */
START_TEST(default_size_matches_lesionseg_ref)
{
    parity("depth_full");
    parity("seg_full");
}
END_TEST

/* 1 and 2 threads give the same bits, and the last item alone (mi_session_run_n on a session of
 * one) the same bits as in the batch: for the depth network that is patch rows k*N + n of another
 * N. Every stage is kept as an output, so in-place steps are checked to leave them alone. */
static void same_bits(const char *name) {
    char path[64], names[MAX_STAGES][24];
    const char *stage[MAX_STAGES];
    snprintf(path, sizeof path, "%s_ref.safetensors", name);
    mi_weights r;
    mi_fixture_open(&r, path);
    mi_tensor in = mi_fixture_tensor(&r, "input");
    snprintf(path, sizeof path, "%s_rand.safetensors", name);
    mi_model *m = mi_fixture_model(path);
    const int n = is_depth(name) ? depth_stages(names, &r) : seg_stages(names, &r);
    for (int i = 0; i < n; i++) stage[i] = names[i];
    const char *out = is_depth(name) ? "depth" : "seg";
    float *got[2];
    int64_t numel = 0, shape[4];
    for (int t = 0; t < 2; t++) {
        mi_session *s;
        ck_assert_msg(mi_session_create_outputs(&s, m, in.shape, t + 1, stage, n) == MI_OK, "%s", mi_last_error());
        ck_assert_int_eq(mi_session_run(s, in.data), MI_OK);
        mi_captured c = { .names = stage, .n = n };   /* with everything kept, each output is its stage */
        for (int i = 0; i < n; i++) {
            const float *o = mi_session_output(s, stage[i], shape);
            ck_assert_msg(o != NULL, "%s: output '%s' missing", name, stage[i]);
            mi_capture(&c, stage[i], o, 4, shape);
            mi_tensor want = mi_fixture_tensor(&r, stage[i]);
            mi_assert_close(c.data[i], want.data, mi_tensor_numel(&want), 1e-3, 1e-3, stage[i]);
        }
        const float *o = mi_session_output(s, out, shape);
        numel = shape[0] * shape[1] * shape[2] * shape[3];
        got[t] = malloc((size_t)numel * sizeof(float));
        memcpy(got[t], o, (size_t)numel * sizeof(float));
        mi_captured_free(&c);
        mi_session_destroy(s);
    }
    ck_assert_msg(!memcmp(got[0], got[1], (size_t)numel * sizeof(float)), "%s: 1 vs 2 threads differ", name);
    const int64_t N = in.shape[0], per = mi_tensor_numel(&in) / N, n1 = numel / N;
    mi_tensor one = in;
    one.shape[0] = 1;
    mi_session *s;
    ck_assert_msg(mi_session_create(&s, m, one.shape, 1) == MI_OK, "%s", mi_last_error());
    ck_assert_int_eq(mi_session_run_n(s, in.data + (N - 1) * per, 1), MI_OK);
    ck_assert_msg(!memcmp(mi_session_output(s, out, NULL), got[0] + (N - 1) * n1, (size_t)n1 * sizeof(float)),
                  "%s %s: the last item alone differs from it in the batch", name, out);
    mi_session_destroy(s);
    free(got[0]);
    free(got[1]);
    mi_model_close(m);
    mi_weights_close(&r);
}

START_TEST(same_bits_any_threads_and_batch)
{
    same_bits("depth_a");
    same_bits("seg_a");
    same_bits("seg_b");
}
END_TEST

/* mi_model_open on a bad blob fails with `code`, naming the file and each of `words` */
static void refused(const char *file, mi_status code, const char *w1, const char *w2) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", mi_fixtures(), file);
    mi_model *m = (mi_model *)1;
    mi_status st = mi_model_open(&m, path);
    const char *e = mi_last_error();
    printf("%-32s -> %s\n", file, e);
    ck_assert_msg(st == code, "%s: status %s, expected %s (%s)", file, mi_status_name(st), mi_status_name(code), e);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(e, file), "%s: the message does not name the file: %s", file, e);
    ck_assert_msg(!w1 || strstr(e, w1), "%s: the message does not say '%s': %s", file, w1, e);
    ck_assert_msg(!w2 || strstr(e, w2), "%s: the message does not say '%s': %s", file, w2, e);
}

START_TEST(refuses_bad_depth_blobs)
{
    mi_model *ok = mi_fixture_model("depth_bad_ok_rand.safetensors");   /* what the bad ones were made from */
    ck_assert_str_eq(mi_model_arch(ok), "depthnet");
    ck_assert_int_eq(mi_model_input_size(ok), 64);
    ck_assert_str_eq(mi_model_label(ok, 0), "depth");
    mi_model_close(ok);
    refused("depth_bad_missing.safetensors", MI_ERR_SHAPE, "refine.norm2.bias", "missing");
    refused("depth_bad_missing_bn.safetensors", MI_ERR_SHAPE, "encdec.encoder.layer2.0.bn1.running_var", "missing");
    refused("depth_bad_shape.safetensors", MI_ERR_SHAPE, "encdec.up1.1.conv.weight", "[16,80,3,3]");
    refused("depth_bad_stride.safetensors", MI_ERR_FORMAT, "'patch_stride' = 20", "input_size - patch_size = 32");
    refused("depth_bad_stride_zero.safetensors", MI_ERR_FORMAT, "'patch_stride'", NULL);
    refused("depth_bad_global.safetensors", MI_ERR_FORMAT, "'global_size' = 40", "multiple of 2^4 = 16");
    refused("depth_bad_patch_big.safetensors", MI_ERR_FORMAT, "'patch_size' = 128", "'input_size' = 64");
    refused("depth_bad_stages.safetensors", MI_ERR_FORMAT, "'encoder_stages'", "[3, 4]");
    refused("depth_bad_dec_len.safetensors", MI_ERR_FORMAT, "'dec_channels' has 3 entries", "expected 4");
    refused("depth_bad_groups.safetensors", MI_ERR_FORMAT, "'refine_groups' = 3", "'refine_channels' = 8");
    refused("depth_bad_fuse.safetensors", MI_ERR_FORMAT, "'fuse_weights'", "2 finite numbers");
    refused("depth_bad_scale.safetensors", MI_ERR_FORMAT, "'refine_scale'", "big");
    refused("depth_bad_deep.safetensors", MI_ERR_FORMAT, "'global_size' = 32", "at least 64");
    refused("depth_bad_max_cm.safetensors", MI_ERR_FORMAT, "'depth_max_cm'", "> 0");
}
END_TEST

START_TEST(refuses_bad_seg_blobs)
{
    mi_model *ok = mi_fixture_model("seg_bad_ok_rand.safetensors");
    ck_assert_str_eq(mi_model_arch(ok), "segnet");
    ck_assert_int_eq(mi_model_input_channels(ok), 4);
    ck_assert_str_eq(mi_model_label(ok, 1), "lesion");
    mi_model_close(ok);
    refused("seg_bad_missing.safetensors", MI_ERR_SHAPE, "att.1.bias", "missing");
    refused("seg_bad_missing_bn.safetensors", MI_ERR_SHAPE, "ddown.0.0.1.running_mean", "missing");
    refused("seg_bad_shape.safetensors", MI_ERR_SHAPE, "up.0.weight", "[32,16,2,2]");
    refused("seg_bad_widths.safetensors", MI_ERR_FORMAT, "'widths' has 1 level", "expected 2..");
    refused("seg_bad_widths_json.safetensors", MI_ERR_FORMAT, "'widths'", "JSON array");
    refused("seg_bad_attention.safetensors", MI_ERR_FORMAT, "'attention' = 'both'", "'spatial' or 'channel'");
    refused("seg_bad_output.safetensors", MI_ERR_FORMAT, "'output' = 'logits'", "'softmax' or 'sigmoid'");
    refused("seg_bad_residual.safetensors", MI_ERR_FORMAT, "'attention_residual'", "[0, 1]");
    refused("seg_bad_input_size.safetensors", MI_ERR_FORMAT, "'input_size' = 66", "multiple of 2^2");
    refused("seg_bad_channels.safetensors", MI_ERR_FORMAT, "'in_channels'", NULL);
    refused("seg_bad_threshold.safetensors", MI_ERR_FORMAT, "'mask_threshold' = 1.5", "[0, 1]");
}
END_TEST

/* session creation refuses `shape`, naming the blob and `what` */
static void bad_input(const mi_model *m, const int64_t shape[4], mi_status code, const char *what) {
    mi_session *s = (mi_session *)1;
    mi_status st = mi_session_create(&s, m, shape, 1);
    printf("%lldx%lldx%lldx%lld -> %s\n", (long long)shape[0], (long long)shape[1], (long long)shape[2],
           (long long)shape[3], mi_last_error());
    ck_assert_msg(st == code, "status %s, expected %s: %s", mi_status_name(st), mi_status_name(code), mi_last_error());
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), mi_model_path(m)));
    ck_assert_msg(strstr(mi_last_error(), what), "the message does not say '%s': %s", what, mi_last_error());
}

START_TEST(refuses_bad_inputs)
{
    mi_model *m = mi_fixture_model("depth_a_rand.safetensors");   /* input_size 64 */
    ck_assert_int_eq(mi_model_input_size(m), 64);
    bad_input(m, (int64_t[4]){ 1, 3, 96, 96 }, MI_ERR_SHAPE, "a depthnet takes (N, 3, 64, 64) inputs");
    bad_input(m, (int64_t[4]){ 1, 3, 64, 32 }, MI_ERR_SHAPE, "not [1,3,64,32]");
    bad_input(m, (int64_t[4]){ 1, 4, 64, 64 }, MI_ERR_ARG, "expected (N, 3, H, W)");
    /* an output the network does not have */
    mi_session *s;
    ck_assert_int_eq(mi_session_create_outputs(&s, m, (int64_t[4]){ 1, 3, 64, 64 }, 1, (const char *[]){ "seg" }, 1),
                     MI_ERR_ARG);
    mi_model_close(m);
    m = mi_fixture_model("seg_a_rand.safetensors");                /* 2 down-samplings, RGB + depth */
    bad_input(m, (int64_t[4]){ 1, 3, 64, 64 }, MI_ERR_ARG, "expected (N, 4, H, W)");
    bad_input(m, (int64_t[4]){ 1, 4, 64, 62 }, MI_ERR_SHAPE, "side 62 (dim 3) is not a positive multiple of 2^2");
    bad_input(m, (int64_t[4]){ 1, 4, 2, 64 }, MI_ERR_SHAPE, "side 2 (dim 2)");
    /* another size than the one packed for runs, and a NaN is refused before it */
    ck_assert_int_eq(mi_session_create(&s, m, (int64_t[4]){ 1, 4, 32, 16 }, 1), MI_OK);
    float x[4 * 32 * 16] = { 0 };
    x[3 * 32 * 16 + 5] = NAN;
    ck_assert_int_eq(mi_session_run(s, x), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "(n=0, c=3, y=0, x=5) is NaN"));
    x[3 * 32 * 16 + 5] = 0.5f;
    ck_assert_int_eq(mi_session_run(s, x), MI_OK);
    int64_t shape[4];
    ck_assert_ptr_nonnull(mi_session_output(s, "seg", shape));
    ck_assert_int_eq(shape[1], 2);
    ck_assert_int_eq(shape[3], 16);
    mi_session_destroy(s);
    mi_model_close(m);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("lesionseg");
    TCase *t = tcase_create("lesionseg");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, depth_matches_lesionseg_ref);
    tcase_add_test(t, seg_matches_lesionseg_ref);
    tcase_add_test(t, same_bits_any_threads_and_batch);
    tcase_add_test(t, refuses_bad_depth_blobs);
    tcase_add_test(t, refuses_bad_seg_blobs);
    tcase_add_test(t, refuses_bad_inputs);
    suite_add_tcase(s, t);
    /* apart, so that tests/test_isa.sh can leave it out (CK_RUN_CASE=lesionseg): the scalar
     * references take over a minute on it */
    TCase *full = tcase_create("full");
    tcase_set_timeout(full, 600);
    tcase_add_test(full, default_size_matches_lesionseg_ref);
    suite_add_tcase(s, full);
    return s;
}

MI_TEST_MAIN(suite)
