/* tests/test_patho.c - the pathology pipeline's own steps: lesion regions traced from the
 * probability map (pipelines/patho/regions.c) and their GeoJSON. */
#include "mi_test.h"
#include "pipelines/patho/regions.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

/* twice the signed area of a ring (positive: clockwise on the screen, y down) */
static int64_t area2(const mi_ring *r) {
    int64_t a = 0;
    for (int i = 0; i < r->n; i++) {
        const int j = (i + 1) % r->n;
        a += (int64_t)r->xy[2 * i] * r->xy[2 * j + 1] - (int64_t)r->xy[2 * j] * r->xy[2 * i + 1];
    }
    return a;
}

/* even-odd crossing test of the point (px, py) against one ring */
static bool inside(const mi_ring *r, double px, double py) {
    bool in = false;
    for (int i = 0, j = r->n - 1; i < r->n; j = i++) {
        const double xi = r->xy[2 * i], yi = r->xy[2 * i + 1], xj = r->xy[2 * j], yj = r->xy[2 * j + 1];
        if ((yi > py) != (yj > py) && px < (xj - xi) * (py - yi) / (yj - yi) + xi) in = !in;
    }
    return in;
}

static void trace(const float *map, int w, int h, float thr, int max, mi_region **r, int *n, int *dropped) {
    ck_assert_int_eq(mi_regions_trace(map, w, h, thr, max, r, n, dropped), MI_OK);
}

START_TEST(one_pixel_and_a_ring_with_a_hole) {
    const float one[9] = { 0, 0, 0, 0, 0.9f, 0, 0, 0, 0 };
    mi_region *r;
    int n, dropped;
    trace(one, 3, 3, 0.5f, 10, &r, &n, &dropped);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(r[0].nrings, 1);
    ck_assert_int_eq(r[0].rings[0].n, 4);
    const int32_t sq[8] = { 1, 1, 2, 1, 2, 2, 1, 2 };    /* clockwise on the screen from the top-left */
    ck_assert_mem_eq(r[0].rings[0].xy, sq, sizeof sq);
    ck_assert_int_eq(r[0].pixels, 1);
    ck_assert_double_eq_tol(r[0].p_max, 0.9, 1e-6);
    mi_regions_free(r, n);

    const float ring[16] = { 1, 1, 1, 0,
                             1, 0, 1, 0,
                             1, 1, 1, 0,
                             0, 0, 0, 0 };
    trace(ring, 4, 4, 0.5f, 10, &r, &n, &dropped);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(r[0].nrings, 2);
    ck_assert_int_eq(area2(&r[0].rings[0]), 18);       /* 3x3 outer */
    ck_assert_int_eq(area2(&r[0].rings[1]), -2);       /* the hole, anticlockwise */
    ck_assert_int_eq(r[0].pixels, 8);
    mi_regions_free(r, n);
}
END_TEST

START_TEST(diagonal_pixels_are_separate_regions) {
    /* two saddles: four pixels touching only at corners, and NaN (not analysed) between */
    const float m[9] = { 1, 0, 1, 0, 1, NAN, 1, 0, 1 };
    mi_region *r;
    int n, dropped;
    trace(m, 3, 3, 0.5f, 10, &r, &n, &dropped);
    ck_assert_int_eq(n, 5);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(r[i].nrings, 1);
        ck_assert_int_eq(area2(&r[i].rings[0]), 2);
    }
    mi_regions_free(r, n);
    /* max_regions keeps the largest, in the order of their first pixel */
    const float m2[10] = { 1, 0, 1, 1, 1, 0, 1, 0, 0, 1 };
    trace(m2, 10, 1, 0.5f, 2, &r, &n, &dropped);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(dropped, 2);
    ck_assert_int_eq(r[0].pixels, 1);                  /* of the three single pixels, the first */
    ck_assert_int_eq(r[0].rings[0].xy[0], 0);
    ck_assert_int_eq(r[1].pixels, 3);
    mi_regions_free(r, n);
    trace(m2, 10, 1, 2.0f, 2, &r, &n, &dropped);         /* nothing above the threshold */
    ck_assert_int_eq(n, 0);
    ck_assert_ptr_null(r);
}
END_TEST

/* On random maps every pixel centre is inside its own region's polygon (outer minus holes) and
 * outside every other region's, and the polygons' areas add up to the pixel counts. */
START_TEST(random_maps_are_covered_exactly) {
    enum { w = 37, h = 29 };
    static float map[w * h];
    for (int trial = 0; trial < 20; trial++) {
        mi_fill_random(map, w * h, 1000 + trial);
        const float thr = -0.6f + 0.06f * trial;           /* sparse to dense */
        mi_region *r;
        int n, dropped;
        trace(map, w, h, thr, 1 << 20, &r, &n, &dropped);
        ck_assert_int_eq(dropped, 0);
        int64_t total = 0;
        for (int i = 0; i < n; i++) {
            int64_t a = 0;
            for (int k = 0; k < r[i].nrings; k++) a += area2(&r[i].rings[k]);
            ck_assert_int_eq(a, 2 * r[i].pixels);
            total += r[i].pixels;
        }
        int64_t fg = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                const bool on = map[y * w + x] >= thr;
                fg += on;
                int hits = 0;
                for (int i = 0; i < n; i++) {
                    bool in = false;
                    for (int k = 0; k < r[i].nrings; k++) in ^= inside(&r[i].rings[k], x + 0.5, y + 0.5);
                    hits += in;
                }
                ck_assert_msg(hits == (on ? 1 : 0), "trial %d pixel (%d, %d): in %d regions", trial, x, y, hits);
            }
        ck_assert_int_eq(total, fg);
        mi_regions_free(r, n);
    }
}
END_TEST

START_TEST(geojson_is_in_level0_pixels_inside_the_slide) {
    const float m[6] = { 0.2f, 0.8f, 0.9f, 0, 0.7f, 0 };
    mi_region *r;
    int n, dropped;
    trace(m, 3, 2, 0.5f, 10, &r, &n, &dropped);
    ck_assert_int_eq(n, 1);
    const uint8_t col[3] = { 200, 0, 0 };
    /* a map of 3 x 2 pixels over a 250 x 160 slide: the last column and row are partial */
    cJSON *g = mi_regions_geojson(r, n, 100, 100, 250, 160, 0.5, "invasive carcinoma", col);
    ck_assert_str_eq(cJSON_GetObjectItem(g, "type")->valuestring, "FeatureCollection");
    cJSON *f = cJSON_GetArrayItem(cJSON_GetObjectItem(g, "features"), 0);
    cJSON *p = cJSON_GetObjectItem(f, "properties");
    ck_assert_str_eq(cJSON_GetObjectItem(p, "objectType")->valuestring, "annotation");
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(p, "classification"), "name")->valuestring,
                     "invasive carcinoma");
    cJSON *ring = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(f, "geometry"), "coordinates"), 0);
    const int nv = cJSON_GetArraySize(ring);
    ck_assert_int_eq(nv, 7);                              /* 6 corners of the L, closed */
    for (int i = 0; i < nv; i++) {
        cJSON *pt = cJSON_GetArrayItem(ring, i);
        const double x = cJSON_GetArrayItem(pt, 0)->valuedouble, y = cJSON_GetArrayItem(pt, 1)->valuedouble;
        ck_assert(x >= 0 && x <= 250 && y >= 0 && y <= 160);
    }
    cJSON *first = cJSON_GetArrayItem(ring, 0), *last = cJSON_GetArrayItem(ring, nv - 1);
    ck_assert(cJSON_Compare(first, last, true));
    ck_assert_double_eq(cJSON_GetArrayItem(first, 0)->valuedouble, 100);
    cJSON *ms = cJSON_GetObjectItem(p, "measurements");
    ck_assert_double_eq(cJSON_GetObjectItem(ms, "area_px")->valuedouble, 30000);
    ck_assert_double_eq(cJSON_GetObjectItem(ms, "area_um2")->valuedouble, 7500);
    cJSON_Delete(g);
    mi_regions_free(r, n);
}
END_TEST

int main(void) {
    Suite *s = suite_create("patho");
    TCase *tc = tcase_create("regions");
    tcase_add_test(tc, one_pixel_and_a_ring_with_a_hole);
    tcase_add_test(tc, diagonal_pixels_are_separate_regions);
    tcase_add_test(tc, random_maps_are_covered_exactly);
    tcase_add_test(tc, geojson_is_in_level0_pixels_inside_the_slide);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
