/* tests/test_assist_det.c - the shipped demo lesion detector (weights/assist_det_demo.safetensors)
 * through the public API on held-out synthetic frames (tests/ref_assist_det.py: one frame per
 * class that the blob's validation figures say it detects, seed 5000, 320 x 320, chosen from the
 * truth and those figures alone):
 *   - it finds each frame's lesion: a detection scoring at least the blob's score_threshold (the
 *     one chosen on validation frames) with the lesion's class and IoU >= 0.5 with its box;
 *   - medinfer and PyTorch (tools/rcnn_ref.build of the blob's metadata, its F16 weights) agree:
 *     every detection scoring >= CMP_MIN on either side has a partner on the other with the same
 *     label, box within BOX_TOL px, score within SCORE_TOL and class probabilities
 *     (mi_detection.probs) within SCORE_TOL; detections nearer the box head's 0.05 threshold may
 *     exist on one side only (a trained model's decisions there sit a few ulps apart);
 *   - the same bits with 1 and 2 threads.
 * The measured differences are printed by each run. */
#include "tests/mi_test.h"
#include "medinfer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BLOB "weights/assist_det_demo.safetensors"
#define CMP_MIN 0.1f
#define BOX_TOL 2e-3     /* px of a 320 x 320 frame; measured <= 3.1e-5 (AVX2, portable, ref) */
#define SCORE_TOL 2e-5   /* measured <= 1.4e-6 (scores and probabilities) */

static double iou(const float *a, const float *b) {
    const double ix = fmax(0, fmin(a[2], b[2]) - fmax(a[0], b[0])), iy = fmax(0, fmin(a[3], b[3]) - fmax(a[1], b[1]));
    const double u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy;
    return u > 0 ? ix * iy / u : 0;
}

static double box_diff(const float *a, const float *b) {
    double d = 0;
    for (int q = 0; q < 4; q++) d = fmax(d, fabs(a[q] - b[q]));
    return d;
}

/* ours against torchvision's rows (boxes wb, scores ws, labels wl, probs wp), both ways */
static void agree(int k, const mi_detection *det, int count, const mi_tensor *wb, const mi_tensor *ws,
                  const mi_tensor *wl, const mi_tensor *wp, int nc, double worst[3]) {
    const int64_t n = ws->shape[0];
    for (int64_t j = 0; j < n; j++) {            /* every torchvision detection worth comparing */
        if (ws->data[j] < CMP_MIN) continue;
        int best = -1;
        double bd = INFINITY;
        for (int i = 0; i < count; i++)
            if (det[i].label == (int)wl->data[j] && box_diff(det[i].box, wb->data + j * 4) < bd)
                bd = box_diff(det[i].box, wb->data + j * 4), best = i;
        ck_assert_msg(best >= 0 && bd <= BOX_TOL, "frame %d: torchvision's detection %lld (label %d, score %.5f) has "
                      "no partner within %g px (nearest %.3g)", k, (long long)j, (int)wl->data[j], ws->data[j],
                      BOX_TOL, bd);
        const double ds = fabs(det[best].score - ws->data[j]);
        ck_assert_msg(ds <= SCORE_TOL, "frame %d detection %lld: score %.6f, torchvision %.6f", k, (long long)j,
                      det[best].score, ws->data[j]);
        double dp = 0;
        for (int c = 0; c < nc; c++) dp = fmax(dp, fabs(det[best].probs[c] - wp->data[j * nc + c]));
        ck_assert_msg(dp <= SCORE_TOL, "frame %d detection %lld: class probabilities off by %.3g", k, (long long)j,
                      dp);
        worst[0] = fmax(worst[0], bd), worst[1] = fmax(worst[1], ds), worst[2] = fmax(worst[2], dp);
    }
    for (int i = 0; i < count; i++) {            /* and ours the other way */
        if (det[i].score < CMP_MIN + SCORE_TOL) continue;
        bool found = false;
        for (int64_t j = 0; j < n && !found; j++)
            found = (int)wl->data[j] == det[i].label && box_diff(det[i].box, wb->data + j * 4) <= BOX_TOL;
        ck_assert_msg(found, "frame %d: our detection %d (label %d, score %.5f) is not torchvision's", k, i,
                      det[i].label, det[i].score);
    }
}

START_TEST(finds_lesions_and_matches_pytorch)
{
    mi_weights r;
    mi_fixture_open(&r, "assist_det_ref.safetensors");
    mi_model *m;
    ck_assert_msg(mi_model_open(&m, BLOB) == MI_OK, "%s", mi_last_error());
    ck_assert_str_eq(mi_model_arch(m), "fasterrcnn_fpn");
    const int nc = mi_model_num_classes(m);
    ck_assert_int_eq(nc, 5);
    const char *thr_s = mi_model_meta(m, "score_threshold");
    ck_assert_ptr_nonnull(thr_s);
    const float thr = strtof(thr_s, NULL);
    ck_assert(thr > 0 && thr < 1);
    mi_session *s;
    ck_assert_msg(mi_session_create(&s, m, (int64_t[4]){ 1, 3, 320, 320 }, 1) == MI_OK, "%s", mi_last_error());
    double worst[3] = { 0, 0, 0 };
    int frames = 0;
    for (int k = 0;; k++, frames++) {
        char key[32];
        snprintf(key, sizeof key, "input.%d", k);
        if (!mi_weights_find(&r, key)) break;
        mi_tensor x = mi_fixture_tensor(&r, key);
        ck_assert_int_eq(mi_session_run(s, x.data), MI_OK);
        mi_detection det[64];
        const int count = mi_session_detections(s, 0, det, 64);
        ck_assert_int_ge(count, 0);
        ck_assert_int_le(count, 64);
        snprintf(key, sizeof key, "truth.%d", k);
        mi_tensor t = mi_fixture_tensor(&r, key);
        const int label = (int)t.data[4];
        /* the lesion, found */
        int hit = -1;
        for (int i = 0; i < count && hit < 0; i++)
            if (det[i].score >= thr && det[i].label == label && iou(det[i].box, t.data) >= 0.5) hit = i;
        ck_assert_msg(hit >= 0, "frame %d: no detection >= %.2f of '%s' with IoU >= 0.5 (best: label %d score %.3f)", k,
                      thr, mi_model_label(m, label), count ? det[0].label : -1, count ? det[0].score : 0.0f);
        printf("frame %d: '%s' found, score %.3f, IoU %.3f, probs", k, mi_model_label(m, label), det[hit].score,
               iou(det[hit].box, t.data));
        double sum = 0;
        for (int c = 0; c < nc; c++) printf(" %.3f", det[hit].probs[c]), sum += det[hit].probs[c];
        printf("\n");
        ck_assert(fabs(sum - 1) <= 1e-5);
        ck_assert(det[hit].probs[label] == det[hit].score);
        /* PyTorch's answer */
        mi_tensor wb, ws, wl, wp;
        snprintf(key, sizeof key, "boxes.%d", k), wb = mi_fixture_tensor(&r, key);
        snprintf(key, sizeof key, "scores.%d", k), ws = mi_fixture_tensor(&r, key);
        snprintf(key, sizeof key, "labels.%d", k), wl = mi_fixture_tensor(&r, key);
        snprintf(key, sizeof key, "probs.%d", k), wp = mi_fixture_tensor(&r, key);
        agree(k, det, count, &wb, &ws, &wl, &wp, nc, worst);
    }
    ck_assert_int_ge(frames, 2);
    printf("%d frames; medinfer vs PyTorch, detections scoring >= %.2f: max|d| box %.3g px, score %.3g, class "
           "probabilities %.3g\n", frames, CMP_MIN, worst[0], worst[1], worst[2]);
    /* the same bits on 2 threads */
    mi_session *s2;
    ck_assert_int_eq(mi_session_create(&s2, m, (int64_t[4]){ 1, 3, 320, 320 }, 2), MI_OK);
    mi_tensor x = mi_fixture_tensor(&r, "input.0");
    ck_assert_int_eq(mi_session_run(s, x.data), MI_OK);
    ck_assert_int_eq(mi_session_run(s2, x.data), MI_OK);
    int64_t sh1[4], sh2[4];
    const float *d1 = mi_session_output(s, "detections", sh1), *d2 = mi_session_output(s2, "detections", sh2);
    const float *p1 = mi_session_output(s, "detections.probs", NULL), *p2 = mi_session_output(s2, "detections.probs", NULL);
    ck_assert(d1 && d2 && p1 && p2 && !memcmp(sh1, sh2, sizeof sh1));
    ck_assert(!memcmp(d1, d2, (size_t)(sh1[1] * 6) * sizeof(float)));
    ck_assert(!memcmp(p1, p2, (size_t)(sh1[1] * nc) * sizeof(float)));
    mi_session_destroy(s2);
    mi_session_destroy(s);
    mi_model_close(m);
    mi_weights_close(&r);
}
END_TEST

/* The blob says what it is and what it is for, in the keys the assistant reads. */
START_TEST(blob_metadata)
{
    mi_model *m;
    ck_assert_msg(mi_model_open(&m, BLOB) == MI_OK, "%s", mi_last_error());
    static const char *const labels[] = { "__background__", "adenomatous polyp", "non-adenomatous polyp", "ulcer",
                                          "other" };
    for (int c = 0; c < 5; c++) ck_assert_str_eq(mi_model_label(m, c), labels[c]);
    ck_assert_str_eq(mi_model_meta(m, "high_risk_labels"), "[\"adenomatous polyp\", \"ulcer\"]");
    ck_assert_str_eq(mi_model_meta(m, "intended_use"), "demo model trained on synthetic frames only; not for diagnosis");
    ck_assert_ptr_nonnull(mi_model_meta(m, "model_version"));
    ck_assert_ptr_nonnull(mi_model_meta(m, "training_data"));
    ck_assert_str_eq(mi_model_meta(m, "returned_layers"), "[1, 2, 3]");
    mi_model_close(m);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("assist_det");
    TCase *t = tcase_create("assist_det");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, finds_lesions_and_matches_pytorch);
    tcase_add_test(t, blob_metadata);
    suite_add_tcase(s, t);
    return s;
}

MI_TEST_MAIN(suite)
