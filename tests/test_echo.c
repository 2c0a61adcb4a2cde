/* tests/test_echo.c - the M-mode pipeline's library (pipelines/echo): whitening and the
 * regressor's crop against the training side's own functions (tools/train_echo.py, fixtures from
 * tests/ref_echo.py), the whole pipeline on random weights against torchvision + PyTorch, the
 * measures (Teichholz, EF, FS, flags) on known values, and the report's fields with and without
 * a calibration.
 * Tolerances: whitening and crops 1e-6 absolute (measured 0: the same float operations); the
 * pipeline's box within 1e-3 px and score within 1e-5; points within 1e-3 px. */
#include "tests/mi_test.h"
#include "medinfer.h"
#include "nn/model.h"
#include "pipelines/echo/echo.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

static uint8_t *fixture_image(const mi_weights *r, int *w, int *h) {
    mi_tensor img = mi_fixture_tensor(r, "image");
    *h = (int)img.shape[0], *w = (int)img.shape[1];
    uint8_t *g = malloc((size_t)*w * *h);
    for (int64_t i = 0; i < (int64_t)*w * *h; i++) g[i] = (uint8_t)img.data[i];
    return g;
}

START_TEST(whiten_and_crop_match_training)
{
    mi_weights r;
    mi_fixture_open(&r, "echo_ref.safetensors");
    int w, h;
    uint8_t *g = fixture_image(&r, &w, &h);
    float *x = malloc((size_t)w * h * sizeof *x);
    mi_echo_whiten(x, g, (int64_t)w * h);
    mi_tensor want = mi_fixture_tensor(&r, "whiten");
    double e = mi_assert_close(x, want.data, (int64_t)w * h, 1e-6, 0, "whiten");
    printf("whiten max|d| %.3g\n", e);
    long long nb;
    ck_assert_int_eq(mi_weights_meta_int(&r, "boxes", 1, 100, &nb), MI_OK);
    float crop[64 * 64];
    for (int i = 0; i < nb; i++) {
        char k[32];
        snprintf(k, sizeof k, "box.%d", i);
        mi_tensor box = mi_fixture_tensor(&r, k);
        snprintf(k, sizeof k, "win.%d", i);
        mi_tensor win = mi_fixture_tensor(&r, k);
        snprintf(k, sizeof k, "crop.%d", i);
        mi_tensor c = mi_fixture_tensor(&r, k);
        int roi[4];
        ck_assert_int_eq(mi_echo_crop(g, w, h, box.data, 0.2, 64, crop, roi), MI_OK);
        for (int q = 0; q < 4; q++)
            ck_assert_msg(roi[q] == (int)win.data[q], "box %d: window %d is %d, training %d", i, q, roi[q], (int)win.data[q]);
        e = mi_assert_close(crop, c.data, 64 * 64, 1e-6, 0, k);
        printf("crop %d window %d,%d,%d,%d max|d| %.3g\n", i, roi[0], roi[1], roi[2], roi[3], e);
    }
    /* a box wholly outside the image has no crop */
    int roi[4];
    ck_assert_int_eq(mi_echo_crop(g, w, h, (float[4]){ 400, 10, 500, 50 }, 0.2, 64, crop, roi), MI_ERR_ARG);
    free(x);
    free(g);
    mi_weights_close(&r);
}
END_TEST

static mi_echo *open_random(float min_score) {
    mi_echo *e;
    mi_echo_opts o = { .min_score = min_score, .threads = 1 };
    ck_assert_msg(mi_echo_open(&e, mi_fixture_model("echo_det_rand.safetensors"),
                               mi_fixture_model("echo_pts_rand.safetensors"), &o) == MI_OK, "%s", mi_last_error());
    return e;
}

START_TEST(pipeline_matches_pytorch)
{
    mi_weights r;
    mi_fixture_open(&r, "echo_ref.safetensors");
    int w, h;
    uint8_t *g = fixture_image(&r, &w, &h);
    mi_echo *e = open_random(0);
    mi_echo_result res;
    mi_echo_calibration cal = { .mm_per_px = 0.25, .s_per_px = 0.005, .depth_source = MI_ECHO_CAL_OPTION,
                                .time_source = MI_ECHO_CAL_OPTION };
    ck_assert_msg(mi_echo_run(e, g, w, h, &cal, &res) == MI_OK, "%s", mi_last_error());
    ck_assert(res.found);
    mi_tensor box = mi_fixture_tensor(&r, "pipeline.box"), score = mi_fixture_tensor(&r, "pipeline.score"),
              pts = mi_fixture_tensor(&r, "pipeline.points");
    double eb = mi_assert_close(res.box, box.data, 4, 1e-3, 0, "box");
    ck_assert_msg(fabsf(res.score - score.data[0]) <= 1e-5f, "score %g, torchvision %g", res.score, score.data[0]);
    double ep = mi_assert_close(&res.pts[0][0], pts.data, 16, 1e-3, 0, "points");
    printf("pipeline: box max|d| %.3g px, score %g vs %g, points max|d| %.3g px\n", eb, res.score, score.data[0], ep);
    /* the same image again (a cached session) gives the same bits */
    mi_echo_result again;
    ck_assert_int_eq(mi_echo_run(e, g, w, h, &cal, &again), MI_OK);
    ck_assert(!memcmp(again.pts, res.pts, sizeof res.pts) && !memcmp(again.box, res.box, sizeof res.box));
    mi_echo_close(e);
    /* at the blob's own minimum score (0.5) a random detector finds no cycle: a result, not an error */
    e = open_random(-1);
    ck_assert_float_eq(mi_echo_min_score(e), 0.5f);
    if (score.data[0] < 0.5f) {
        ck_assert_int_eq(mi_echo_run(e, g, w, h, &cal, &res), MI_OK);
        ck_assert(!res.found);
        ck_assert_float_eq(res.score, score.data[0]);
    }
    mi_echo_close(e);
    free(g);
    mi_weights_close(&r);
}
END_TEST

/* The measures from points placed by hand: 0.5 mm/px, LVIDd 50 mm, LVIDs 30 mm. */
static mi_echo_result by_hand(double mm_per_px) {
    mi_echo_result r = { .found = true, .box = { 100, 20, 300, 220 }, .score = 0.9f };
    const float y[8] = { 40, 60, 160, 180, 35, 60, 120, 145 };
    for (int k = 0; k < 8; k++) r.pts[k][0] = k < 4 ? 100.0f : 160.0f, r.pts[k][1] = y[k];
    r.cal.mm_per_px = mm_per_px;
    r.cal.s_per_px = 0.004;
    r.cal.depth_source = mm_per_px > 0 ? MI_ECHO_CAL_DICOM : MI_ECHO_CAL_NONE;
    r.cal.time_source = MI_ECHO_CAL_DICOM;
    mi_echo_measure(&r);
    return r;
}

START_TEST(measures_teichholz_ef)
{
    ck_assert_double_eq_tol(mi_echo_teichholz(5.0), 7.0 / 7.4 * 125.0, 1e-12);
    ck_assert_double_eq(mi_echo_teichholz(0), 0);
    mi_echo_result r = by_hand(0.5);
    ck_assert_double_eq_tol(r.len_mm[MI_ECHO_IVSD], 10.0, 1e-9);
    ck_assert_double_eq_tol(r.len_mm[MI_ECHO_LVIDD], 50.0, 1e-9);
    ck_assert_double_eq_tol(r.len_mm[MI_ECHO_LVPWD], 10.0, 1e-9);
    ck_assert_double_eq_tol(r.len_mm[MI_ECHO_IVSS], 12.5, 1e-9);
    ck_assert_double_eq_tol(r.len_mm[MI_ECHO_LVIDS], 30.0, 1e-9);
    ck_assert_double_eq_tol(r.len_mm[MI_ECHO_LVPWS], 12.5, 1e-9);
    const double edv = 7.0 / 7.4 * 125.0, esv = 7.0 / 5.4 * 27.0;
    ck_assert_double_eq_tol(r.edv, edv, 1e-9);
    ck_assert_double_eq_tol(r.esv, esv, 1e-9);
    ck_assert_double_eq_tol(r.ef, 100.0 * (edv - esv) / edv, 1e-9);   /* 70.4 %: above the normal range */
    ck_assert(r.ef_abnormal);
    ck_assert_double_eq_tol(r.fs, 40.0, 1e-9);
    ck_assert_double_eq_tol(r.cycle_s, 0.8, 1e-9);
    ck_assert_double_eq_tol(r.heart_rate, 75.0, 1e-9);
    ck_assert(r.ordered);
    /* points out of order (ES posterior-wall inner above the septum): no FS, volumes, EF */
    r.pts[6][1] = 50;
    mi_echo_measure(&r);
    ck_assert(!r.ordered && isnan(r.ef) && isnan(r.edv) && isnan(r.fs) && !r.ef_abnormal);
}
END_TEST

/* the result's JSON as a reader sees it: printed, then parsed */
static cJSON *as_read(const mi_echo_result *r) {
    cJSON *o = mi_echo_result_json(r);
    char *s = cJSON_PrintUnformatted(o);
    cJSON *p = cJSON_Parse(s);
    ck_assert_ptr_nonnull(p);
    free(s);
    cJSON_Delete(o);
    return p;
}

START_TEST(report_with_and_without_calibration)
{
    mi_echo_result r = by_hand(0.5);
    cJSON *o = as_read(&r);
    const cJSON *m = cJSON_GetObjectItem(o, "measures");
    ck_assert_str_eq(cJSON_GetObjectItem(o, "status")->valuestring, "ok");
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(m, "LVIDd"), "unit")->valuestring, "mm");
    ck_assert_double_eq_tol(cJSON_GetObjectItem(cJSON_GetObjectItem(m, "EF"), "value")->valuedouble, r.ef, 1e-3);
    ck_assert_str_eq(cJSON_GetObjectItem(o, "ef_flag")->valuestring, "high");
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "calibration"), "depth_source")->valuestring,
                     "dicom_ultrasound_region");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(o, "points")), 8);
    cJSON_Delete(o);
    /* no depth scale: pixel lengths and FS, no volumes, no EF, and a note saying why */
    r = by_hand(0);
    o = as_read(&r);
    m = cJSON_GetObjectItem(o, "measures");
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(m, "LVIDd"), "unit")->valuestring, "px");
    ck_assert_double_eq_tol(cJSON_GetObjectItem(cJSON_GetObjectItem(m, "LVIDd"), "value")->valuedouble, 100.0, 1e-9);
    ck_assert_ptr_nonnull(cJSON_GetObjectItem(m, "FS"));
    ck_assert_ptr_null(cJSON_GetObjectItem(m, "EF"));
    ck_assert_ptr_null(cJSON_GetObjectItem(m, "EDV"));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(o, "ef_flag")));
    ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItem(o, "note")->valuestring, "uncalibrated"));
    cJSON_Delete(o);
    /* no cycle */
    r.found = false;
    o = as_read(&r);
    ck_assert_str_eq(cJSON_GetObjectItem(o, "status")->valuestring, "no_cycle");
    ck_assert_ptr_null(cJSON_GetObjectItem(o, "measures"));
    cJSON_Delete(o);
}
END_TEST

START_TEST(refuses_wrong_models)
{
    mi_echo *e;
    mi_echo_opts o = { .min_score = -1 };
    /* the two blobs swapped: each names itself and what it should have been */
    ck_assert_int_eq(mi_echo_open(&e, mi_fixture_model("echo_pts_rand.safetensors"),
                                  mi_fixture_model("echo_det_rand.safetensors"), &o), MI_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "echo_pts_rand.safetensors: metadata echo_role is 'keypoints', "
                                                  "expected 'cycle_detector'"));
    /* an RGB classifier is not a point regressor */
    ck_assert_int_eq(mi_echo_open(&e, mi_fixture_model("echo_det_rand.safetensors"),
                                  mi_fixture_model("resnet18_rand.safetensors"), &o), MI_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "resnet18_rand.safetensors: metadata echo_role is '(none)'"));
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("echo");
    TCase *t = tcase_create("echo");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, whiten_and_crop_match_training);
    tcase_add_test(t, pipeline_matches_pytorch);
    tcase_add_test(t, measures_teichholz_ef);
    tcase_add_test(t, report_with_and_without_calibration);
    tcase_add_test(t, refuses_wrong_models);
    suite_add_tcase(s, t);
    return s;
}

MI_TEST_MAIN(suite)
