/* tests/test_fpn.c - the FPN Faster R-CNN (arch fasterrcnn_fpn) through the public API against
 * torchvision itself (tests/ref_fpn.py): fasterrcnn_resnet50_fpn(weights=None,
 * weights_backbone=None), FasterRCNN(resnet_fpn_backbone('resnet18')) and the assistant's small
 * shape (BackboneWithFPN on resnet18 with returned_layers [1, 2, 3], 32 channels, F16 weights),
 * random weights, norm statistics and biases. Stage by stage through the capture hook, so the
 * first failure names the first stage that diverges.
 *
 * Tolerances (the maxima measured on x86-64 AVX2 are printed by each run):
 *   transform, the ResNet stages C2..C5, the FPN maps '0'..'pool', the RPN head's objectness and
 *   deltas per level, the pooled RoIs, box features, class logits, box regression:
 *     max|d| <= 1e-4 * max|ref| of the stage.
 *   the LevelMapper's level of every RoI: exact.
 *   proposals per image: the same set (each of torchvision's boxes matched by one of ours), boxes
 *     within 1e-3 px. Proposals are compared as sets: their order only matters between equal
 *     scores on different levels, where torchvision's order is an accident of an unstable sort
 *     (ops/nms.h); the rows of the later stages are compared through the matching.
 *   detections per image: the same count, labels and order, boxes within 1e-3 px and scores within
 *     1e-5; inside a run of torchvision scores within 1e-5 of each other any order is accepted (a
 *     tie at the precision two engines share), between runs the order is exact. Each detection's
 *     class probabilities (mi_detection.probs, the softmax row of its proposal) within 1e-5 of
 *     torchvision's pred_scores row, probs[label] == score exactly, summing to 1 within 1e-5.
 * The discrete decisions between these stages (top-k per level, NMS, thresholds, the LevelMapper's
 * floor, the post-NMS and detections-per-image cuts) are made on values that two correct float32
 * engines compute a few ulps apart; tests/ref_fpn.py replays each decision on torchvision's values
 * and uses only seeds where none can flip within error bounds of one to three times the largest
 * errors measured here (its docstring has them), so "the same set" is a fair demand.
 * Also: the same bits for 1, 2 and 4 threads, each image alone equals it in a batch, stages kept
 * by name, and the metadata refusals. */
#include "tests/mi_test.h"
#include "medinfer.h"
#include "ops/cpu.h"

#include <math.h>
#include <string.h>

#define BOX_TOL 1e-3      /* px */
#define SCORE_TOL 1e-5

static double max_abs(const mi_tensor *t) {
    double m = 0;
    for (int64_t j = 0; j < mi_tensor_numel(t); j++) m = fmax(m, fabs(t->data[j]));
    return m;
}

static void report(const char *what, const char *stage, double maxref, double err) {
    printf("%-4s %-22s max|ref| %-10.4g max|d| %-10.3g (%.2e of max|ref|) isa %s\n", what, stage, maxref, err,
           err / (maxref > 0 ? maxref : 1), mi_isa_name(mi_cpu_isa()));
}

/* a captured stage of torchvision's shape, within 1e-4 * max|ref| */
static void compare_stage(const char *what, const mi_captured *c, const char *stage, const mi_weights *r) {
    int i = mi_captured_index(c, stage);
    mi_tensor want = mi_fixture_tensor(r, stage);
    ck_assert_msg(i >= 0 && c->data[i] != NULL, "%s: stage '%s' was not produced", what, stage);
    ck_assert_int_eq(c->ndim[i], want.ndim);
    for (int d = 0; d < want.ndim; d++)
        ck_assert_msg(c->shape[i][d] == want.shape[d], "%s %s: dim %d is %lld, torchvision %lld", what, stage, d,
                      (long long)c->shape[i][d], (long long)want.shape[d]);
    const double maxref = max_abs(&want);
    const double err = mi_assert_close(c->data[i], want.data, mi_tensor_numel(&want), 1e-4 * maxref, 0, stage);
    report(what, stage, maxref, err);
}

/* rows of a captured stage, ours[row[j]] against torchvision's row j, within 1e-4 * max|ref| or
 * exactly */
static void compare_rows(const char *what, const mi_captured *c, const char *stage, const mi_weights *r,
                         const int64_t *row, bool exact) {
    int i = mi_captured_index(c, stage);
    ck_assert_msg(i >= 0 && c->data[i] != NULL, "%s: stage '%s' was not produced", what, stage);
    mi_tensor want = mi_fixture_tensor(r, stage);
    const int64_t rows = want.shape[0], len = mi_tensor_numel(&want) / (rows ? rows : 1);
    ck_assert_int_le(rows, c->shape[i][0]);
    const double maxref = max_abs(&want), tol = exact ? 0 : 1e-4 * maxref;
    double err = 0;
    for (int64_t j = 0; j < rows; j++)
        err = fmax(err, mi_assert_close(c->data[i] + row[j] * len, want.data + j * len, len, tol, 0, stage));
    report(what, stage, maxref, err);
}

/* proposals of image n: torchvision's boxes each matched by one of ours (nearest unused, within
 * BOX_TOL in every coordinate); row[j] = our global row of torchvision's global row j */
static double match_proposals(const char *what, const float *ours, int64_t count, const mi_tensor *want,
                              int64_t our_base, int64_t *row, double *rel) {
    ck_assert_msg(count == want->shape[0], "%s: %lld proposals, torchvision %lld", what, (long long)count,
                  (long long)want->shape[0]);
    bool used[4096] = { false };
    ck_assert_int_le(count, 4096);
    double worst = 0;
    for (int64_t j = 0; j < count; j++) {
        int64_t best_i = -1;
        double best = INFINITY;
        for (int64_t i = 0; i < count; i++) {
            if (used[i]) continue;
            double d = 0;
            for (int q = 0; q < 4; q++) d = fmax(d, fabs(ours[i * 4 + q] - want->data[j * 4 + q]));
            if (d < best) best = d, best_i = i;
        }
        ck_assert_msg(best <= BOX_TOL, "%s: torchvision's proposal %lld (%.6g, %.6g, %.6g, %.6g) has no match within "
                      "%g px (nearest %.3g px)", what, (long long)j, want->data[j * 4], want->data[j * 4 + 1],
                      want->data[j * 4 + 2], want->data[j * 4 + 3], BOX_TOL, best);
        used[best_i] = true;
        row[j] = our_base + best_i;
        worst = fmax(worst, best);
        const float *b = want->data + j * 4;
        *rel = fmax(*rel, best / fmax(1.0, fmax(b[2] - b[0], b[3] - b[1])));
    }
    return worst;
}

/* detections of image n against torchvision's, ties within SCORE_TOL in any order */
static void compare_detections(const char *name, const mi_session *s, const mi_weights *r, int64_t n) {
    char kb[32], ks[32], kl[32], kp[32];
    snprintf(kb, sizeof kb, "boxes.%lld", (long long)n);
    snprintf(ks, sizeof ks, "scores.%lld", (long long)n);
    snprintf(kl, sizeof kl, "labels.%lld", (long long)n);
    snprintf(kp, sizeof kp, "probs.%lld", (long long)n);
    mi_tensor wb = mi_fixture_tensor(r, kb), ws = mi_fixture_tensor(r, ks), wl = mi_fixture_tensor(r, kl);
    mi_tensor wp = mi_fixture_tensor(r, kp);
    const int nc = (int)wp.shape[1];
    ck_assert_int_eq(nc, mi_model_num_classes(mi_session_model(s)));
    mi_detection det[256];
    int count = mi_session_detections(s, (int)n, det, 256);
    ck_assert_msg(count == ws.shape[0], "%s image %lld: %d detections, torchvision %lld", name, (long long)n, count,
                  (long long)ws.shape[0]);
    ck_assert_int_ge(count, 10);
    double dbox = 0, dscore = 0, dprob = 0;
    int ties = 0;
    for (int g0 = 0, g1; g0 < count; g0 = g1) {
        for (g1 = g0 + 1; g1 < count && ws.data[g1 - 1] - ws.data[g1] <= SCORE_TOL; g1++) ties++;
        bool used[256] = { false };
        for (int i = g0; i < g1; i++) {          /* ours i is one of torchvision's g0..g1-1 */
            int match = -1;
            double best = INFINITY;
            for (int j = g0; j < g1; j++) {
                if (used[j] || det[i].label != (int)wl.data[j]) continue;
                double d = 0;
                for (int q = 0; q < 4; q++) d = fmax(d, fabs(det[i].box[q] - wb.data[j * 4 + q]));
                if (d < best) best = d, match = j;
            }
            ck_assert_msg(match >= 0, "%s image %lld detection %d (label %d, score %.7g): torchvision has no such "
                          "detection at this rank (label %d, score %.7g)", name, (long long)n, i, det[i].label,
                          det[i].score, (int)wl.data[i], ws.data[i]);
            used[match] = true;
            dbox = fmax(dbox, best);
            dscore = fmax(dscore, fabs(det[i].score - ws.data[match]));
            ck_assert_msg(det[i].probs != NULL, "%s image %lld detection %d: no class probabilities", name,
                          (long long)n, i);
            ck_assert_msg(det[i].probs[det[i].label] == det[i].score, "%s image %lld detection %d: probs[%d] = %.9g, "
                          "score %.9g", name, (long long)n, i, det[i].label, det[i].probs[det[i].label], det[i].score);
            double sum = 0;
            for (int k = 0; k < nc; k++) {
                sum += det[i].probs[k];
                dprob = fmax(dprob, fabs(det[i].probs[k] - wp.data[match * nc + k]));
            }
            ck_assert_msg(fabs(sum - 1) <= 1e-5, "%s image %lld detection %d: probabilities sum to %.9g", name,
                          (long long)n, i, sum);
        }
    }
    ck_assert_msg(dbox <= BOX_TOL, "%s image %lld: boxes off by %.3g px", name, (long long)n, dbox);
    ck_assert_msg(dscore <= SCORE_TOL, "%s image %lld: scores off by %.3g", name, (long long)n, dscore);
    ck_assert_msg(dprob <= SCORE_TOL, "%s image %lld: class probabilities off by %.3g", name, (long long)n, dprob);
    printf("%-4s detections.%lld           %d, same order and labels (%d adjacent score ties within %g), max|d| box "
           "%.3g px, score %.3g, class probabilities %.3g\n", name, (long long)n, count, ties, SCORE_TOL, dbox, dscore,
           dprob);
}

/* the stages compared, in order: a case of k pyramid maps from returned layers 1..k has the
 * ResNet's C2..C<k+1>, fpn.0..fpn.<k-1>, fpn.pool and the RPN head's outputs per map; the last 7
 * are compared through the proposals' matching */
static const char *const stage4[] = {
    "transform", "features.C2", "features.C3", "features.C4", "features.C5",
    "fpn.0", "fpn.1", "fpn.2", "fpn.3", "fpn.pool",
    "rpn.objectness.0", "rpn.objectness.1", "rpn.objectness.2", "rpn.objectness.3", "rpn.objectness.pool",
    "rpn.deltas.0", "rpn.deltas.1", "rpn.deltas.2", "rpn.deltas.3", "rpn.deltas.pool",
    "proposals", "proposals.count", "box_roi_pool", "box_roi_pool.level", "box_features", "class_logits",
    "box_regression" };
static const char *const stage3[] = {
    "transform", "features.C2", "features.C3", "features.C4",
    "fpn.0", "fpn.1", "fpn.2", "fpn.pool",
    "rpn.objectness.0", "rpn.objectness.1", "rpn.objectness.2", "rpn.objectness.pool",
    "rpn.deltas.0", "rpn.deltas.1", "rpn.deltas.2", "rpn.deltas.pool",
    "proposals", "proposals.count", "box_roi_pool", "box_roi_pool.level", "box_features", "class_logits",
    "box_regression" };

static void parity(const char *name, const char *const *stage, int nstage) {
    const int nbefore = nstage - 7;   /* transform .. rpn.deltas.pool */
    char path[64];
    snprintf(path, sizeof path, "fpn_%s_ref.safetensors", name);
    mi_weights r;
    mi_fixture_open(&r, path);
    mi_tensor in = mi_fixture_tensor(&r, "input");
    snprintf(path, sizeof path, "fpn_%s.safetensors", name);
    mi_model *m = mi_fixture_model(path);
    ck_assert_str_eq(mi_model_arch(m), "fasterrcnn_fpn");
    mi_session *s;
    ck_assert_msg(mi_session_create(&s, m, in.shape, 0) == MI_OK, "%s", mi_last_error());
    mi_captured c = { .names = stage, .n = nstage };
    mi_session_set_capture(s, mi_capture, &c);
    ck_assert_msg(mi_session_run(s, in.data) == MI_OK, "%s", mi_last_error());

    for (int i = 0; i < nbefore; i++) compare_stage(name, &c, stage[i], &r);
    /* proposals, image by image, as sets */
    const int pi = mi_captured_index(&c, "proposals"), ci = mi_captured_index(&c, "proposals.count");
    const int64_t N = in.shape[0], P = c.shape[pi][1];
    static int64_t row[4096];
    int64_t rows = 0;
    for (int64_t n = 0; n < N; n++) {
        char key[32], what[48];
        snprintf(key, sizeof key, "proposals.%lld", (long long)n);
        snprintf(what, sizeof what, "%s image %lld", name, (long long)n);
        mi_tensor want = mi_fixture_tensor(&r, key);
        ck_assert_int_le(rows + want.shape[0], 4096);
        double rel = 0;
        double d = match_proposals(what, c.data[pi] + n * P * 4, (int64_t)c.data[ci][n], &want, rows, row + rows, &rel);
        printf("%-4s proposals.%lld            %lld boxes, the same set, max|d| %.3g px (%.2g of the box's longer "
               "side)\n", name, (long long)n, (long long)want.shape[0], d, rel);
        rows += want.shape[0];
    }
    /* the RoI stages on the rows that exist, through the matching */
    compare_rows(name, &c, "box_roi_pool.level", &r, row, true);
    compare_rows(name, &c, "box_roi_pool", &r, row, false);
    compare_rows(name, &c, "box_features", &r, row, false);
    compare_rows(name, &c, "class_logits", &r, row, false);
    compare_rows(name, &c, "box_regression", &r, row, false);
    for (int64_t n = 0; n < N; n++) compare_detections(name, s, &r, n);
    mi_captured_free(&c);
    mi_session_destroy(s);
    mi_model_close(m);
    mi_weights_close(&r);
}

START_TEST(r50_fpn_matches_torchvision) { parity("r50", stage4, sizeof stage4 / sizeof *stage4); }
END_TEST
START_TEST(r18_fpn_matches_torchvision) { parity("r18", stage4, sizeof stage4 / sizeof *stage4); }
END_TEST
START_TEST(r18s_fpn_matches_torchvision) { parity("r18s", stage3, sizeof stage3 / sizeof *stage3); }
END_TEST

/* Same bits for 1, 2 and 4 threads, and each image of a batch of two equals it alone. */
START_TEST(same_bits_any_threads_and_batch)
{
    mi_weights r;
    mi_fixture_open(&r, "fpn_r18_ref.safetensors");
    mi_tensor in = mi_fixture_tensor(&r, "input");
    mi_model *m = mi_fixture_model("fpn_r18.safetensors");
    static const char *const outs[] = { "detections", "detections.count", "proposals", "proposals.count" };
    int64_t shape[4];
    float *out[3][2] = { { 0 } };
    int64_t numel[2] = { 0 };
    const int threads[3] = { 1, 2, 4 };
    for (int i = 0; i < 3; i++) {
        mi_session *s;
        ck_assert_int_eq(mi_session_create_outputs(&s, m, in.shape, threads[i], outs, 4), MI_OK);
        ck_assert_int_eq(mi_session_run(s, in.data), MI_OK);
        for (int o = 0; o < 2; o++) {
            const float *d = mi_session_output(s, outs[2 * o], shape);
            numel[o] = shape[0] * shape[1] * shape[2] * shape[3];
            out[i][o] = malloc((size_t)numel[o] * sizeof(float));
            memcpy(out[i][o], d, (size_t)numel[o] * sizeof(float));
        }
        mi_session_destroy(s);
    }
    for (int i = 1; i < 3; i++)
        for (int o = 0; o < 2; o++)
            ck_assert_msg(!memcmp(out[0][o], out[i][o], (size_t)numel[o] * sizeof(float)), "%s: 1 vs %d threads differ",
                          outs[2 * o], threads[i]);
    const int64_t one[4] = { 1, in.shape[1], in.shape[2], in.shape[3] }, per = one[1] * one[2] * one[3];
    mi_session *s1;
    ck_assert_int_eq(mi_session_create_outputs(&s1, m, one, 0, outs, 4), MI_OK);
    for (int64_t n = 0; n < 2; n++) {
        ck_assert_int_eq(mi_session_run(s1, in.data + n * per), MI_OK);
        for (int o = 0; o < 2; o++) {
            const float *d = mi_session_output(s1, outs[2 * o], shape);
            const int64_t item = shape[1] * shape[2] * shape[3];
            ck_assert_msg(!memcmp(d, out[0][o] + n * item, (size_t)item * sizeof(float)),
                          "%s: image %lld alone differs from it in a batch", outs[2 * o], (long long)n);
        }
    }
    mi_session_destroy(s1);
    for (int i = 0; i < 3; i++) free(out[i][0]), free(out[i][1]);
    mi_model_close(m);
    mi_weights_close(&r);
}
END_TEST

/* Metadata a fasterrcnn_fpn refuses, each naming the blob and the key (blobs of metadata only:
 * the configuration is read before any tensor); a small image; outputs by name. */
START_TEST(refusals_and_outputs)
{
    static const struct { const char *blob, *says; } bad[] = {
        { "fpn_bad_anchors.safetensors", "'anchors'" },
        { "fpn_bad_levels.safetensors", "'anchor_sizes'" },
        { "fpn_bad_uneven.safetensors", "'anchor_sizes'" },
        { "fpn_bad_eps.safetensors", "'bn_eps'" },
        { "fpn_bad_returned.safetensors", "'returned_layers'" },
        { "fpn_bad_rhuge.safetensors", "'returned_layers'" },
        { "fpn_bad_rlevels.safetensors", "'anchor_sizes'" },
        { "fpn_bad_rmissing.safetensors", "'anchor_sizes' is missing" },
        { "fpn_bad_c4.safetensors", "'fpn_channels'" },
        /* tensors that disagree with the metadata: MI_ERR_SHAPE */
        { "fpn_bad_layer3.safetensors", "'backbone.body.layer3.0.conv1.weight' is present" },
        { "fpn_bad_channels.safetensors", "'fpn_channels' 48" },
        { "fpn_bad_extra.safetensors", "'backbone.fpn.inner_blocks.2.0.weight' is present" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", mi_fixtures(), bad[i].blob);
        mi_model *m;
        const mi_status want = strstr(bad[i].says, "present") || strstr(bad[i].says, " 48") ? MI_ERR_SHAPE
                                                                                              : MI_ERR_FORMAT;
        ck_assert_msg(mi_model_open(&m, path) == want, "%s: %s", bad[i].blob, mi_last_error());
        ck_assert_msg(strstr(mi_last_error(), bad[i].says) && strstr(mi_last_error(), bad[i].blob),
                      "%s: '%s' does not name %s and the blob", bad[i].blob, mi_last_error(), bad[i].says);
    }
    /* a detector's session answers for its items only */
    mi_model *m = mi_fixture_model("fpn_r18.safetensors");
    ck_assert_int_eq(mi_model_num_classes(m), 4);
    mi_session *s;
    ck_assert_int_eq(mi_session_create(&s, m, (int64_t[4]){ 1, 1, 64, 64 }, 1), MI_ERR_ARG);
    ck_assert_msg(mi_session_create(&s, m, (int64_t[4]){ 1, 3, 33, 47 }, 1) == MI_OK, "%s", mi_last_error());
    float x[3 * 33 * 47];
    mi_fill_random(x, 3 * 33 * 47, 3);
    ck_assert_int_eq(mi_session_run(s, x), MI_OK);
    ck_assert_int_ge(mi_session_detections(s, 0, NULL, 0), 0);
    ck_assert_int_eq(mi_session_detections(s, 1, NULL, 0), -1);
    mi_session_destroy(s);
    /* any stage can be kept by name (33x47 resizes to 160x227, padded to 160x256: 'pool' is 3x4),
     * a name the network does not have is refused */
    static const char *const keep[] = { "fpn.pool", "rpn.objectness.pool", "box_roi_pool.level" };
    ck_assert_msg(mi_session_create_outputs(&s, m, (int64_t[4]){ 1, 3, 33, 47 }, 1, keep, 3) == MI_OK, "%s",
                  mi_last_error());
    ck_assert_int_eq(mi_session_run(s, x), MI_OK);
    int64_t shape[4];
    ck_assert_ptr_nonnull(mi_session_output(s, "fpn.pool", shape));
    ck_assert(shape[0] == 1 && shape[1] == 256 && shape[2] == 3 && shape[3] == 4);
    ck_assert_ptr_nonnull(mi_session_output(s, "rpn.objectness.pool", shape));
    ck_assert(shape[1] == 6 && shape[2] == 3 && shape[3] == 4);   /* 2 sizes x 3 ratios */
    ck_assert_ptr_nonnull(mi_session_output(s, "box_roi_pool.level", shape));
    ck_assert_int_eq(shape[0], 100);                              /* post_nms_top_n rows */
    mi_session_destroy(s);
    static const char *const nosuch[] = { "fpn.5" };
    ck_assert_int_eq(mi_session_create_outputs(&s, m, (int64_t[4]){ 1, 3, 33, 47 }, 1, nosuch, 1), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "no output 'fpn.5'"));
    mi_model_close(m);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("fpn");
    TCase *t = tcase_create("fpn");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, r50_fpn_matches_torchvision);
    tcase_add_test(t, r18_fpn_matches_torchvision);
    tcase_add_test(t, r18s_fpn_matches_torchvision);
    tcase_add_test(t, same_bits_any_threads_and_batch);
    tcase_add_test(t, refusals_and_outputs);
    suite_add_tcase(s, t);
    return s;
}

MI_TEST_MAIN(suite)
