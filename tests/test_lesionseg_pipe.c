/* tests/test_lesionseg_pipe.c - pipelines/lesionseg after the networks, against torch and scipy
 * (tests/ref_lesionseg_pipe.py, lesionseg_post.safetensors): the up-sampling to the original size
 * (F.interpolate bilinear, align_corners=False), the mask (argmax with ties to background;
 * sigmoid >= threshold), the 8-connected components with their boxes, areas, mean probability and
 * mean depth, at 61 x 97 and 23 x 37 from 16 x 16. Also: the same bytes for 1 and 2 threads, the
 * file sniffing, the size limits and the turbo colour map's ends.
 *
 * Tolerances: the up-sampled maps equal torch's to 1e-6 (ops/resize.c reproduces its arithmetic;
 * measured 0); masks equal except where |p1 - p0| < 1e-6 (none here but the constructed tie, which
 * must be background); component means to 1e-5 relative (float sums in a different order). */
#include "tests/mi_test.h"
#include "ops/cpu.h"
#include "pipelines/lesionseg/lesionseg.h"

#include <math.h>
#include <string.h>

static const struct { const char *tag; int w, h; } SIZES[] = { { "a", 97, 61 }, { "b", 37, 23 } };

static const float *tensor(const mi_weights *w, const char *name) { return mi_fixture_tensor(w, name).data; }

static void check_case(const mi_weights *f, const char *tag, int w, int h, int C) {
    char name[64];
    const int R = 16;
    mi_lesionseg_result r = { 0 };
    const float *probs = tensor(f, C == 2 ? "probs2" : "probs1"), *depth = tensor(f, "depth");
    ck_assert_int_eq(mi_lesionseg_postprocess(probs, C, depth, R, w, h, 0.4f, 20.0, &r), MI_OK);
    snprintf(name, sizeof name, "%s.prob%d", tag, C);
    mi_assert_close(r.prob, tensor(f, name), (int64_t)w * h, 1e-6, 0, name);
    snprintf(name, sizeof name, "%s.depth", tag);
    mi_assert_close(r.depth, tensor(f, name), (int64_t)w * h, 1e-6, 0, name);
    snprintf(name, sizeof name, "%s.mask%d", tag, C);
    const float *mask = tensor(f, name);
    int64_t area = 0;
    for (int64_t i = 0; i < (int64_t)w * h; i++) {
        ck_assert_msg(r.mask[i] == (mask[i] > 0.5f), "%s: pixel (%lld, %lld) is %d, torch says %g", name,
                      (long long)(i % w), (long long)(i / w), r.mask[i], mask[i]);
        area += r.mask[i];
    }
    ck_assert_int_eq(r.area, area);
    snprintf(name, sizeof name, "%s.comps%d", tag, C);
    mi_tensor comps = mi_fixture_tensor(f, name);
    ck_assert_int_eq(r.ncomps, comps.shape[0]);
    for (int k = 0; k < r.ncomps; k++) {
        const float *e = comps.data + 7 * k;
        const mi_lesion_component *c = &r.comps[k];
        for (int j = 0; j < 4; j++) ck_assert_int_eq(c->box[j], (int)e[j]);
        ck_assert_int_eq(c->area, (int64_t)e[4]);
        ck_assert_msg(fabs(c->mean_prob - e[5]) <= 1e-5 * fabs(e[5]) + 1e-6, "%s[%d] mean prob %g vs %g", name, k,
                      c->mean_prob, e[5]);
        ck_assert_msg(fabs(c->mean_depth_cm - e[6]) <= 1e-5 * fabs(e[6]) + 1e-6, "%s[%d] mean depth %g vs %g", name, k,
                      c->mean_depth_cm, e[6]);
    }
    mi_lesionseg_result_free(&r);
}

START_TEST(softmax_and_sigmoid_match_torch)
{
    mi_weights f;
    mi_fixture_open(&f, "lesionseg_post.safetensors");
    for (size_t i = 0; i < sizeof SIZES / sizeof *SIZES; i++) {
        check_case(&f, SIZES[i].tag, SIZES[i].w, SIZES[i].h, 2);
        check_case(&f, SIZES[i].tag, SIZES[i].w, SIZES[i].h, 1);
    }
    mi_weights_close(&f);
}
END_TEST

/* the constructed block of equal logits: p0 == p1 there, and a tie is background */
START_TEST(tie_is_background)
{
    mi_weights f;
    mi_fixture_open(&f, "lesionseg_post.safetensors");
    const float *p = tensor(&f, "probs2");
    ck_assert(p[3 * 16 + 10] == p[256 + 3 * 16 + 10]);
    mi_lesionseg_result r = { 0 };
    ck_assert_int_eq(mi_lesionseg_postprocess(p, 2, tensor(&f, "depth"), 16, 16, 16, 0.5f, 20.0, &r), MI_OK);
    for (int y = 2; y < 6; y++)
        for (int x = 9; x < 13; x++) ck_assert_int_eq(r.mask[y * 16 + x], 0);
    mi_lesionseg_result_free(&r);
    mi_weights_close(&f);
}
END_TEST

START_TEST(same_bytes_for_any_thread_count)
{
    mi_weights f;
    mi_fixture_open(&f, "lesionseg_post.safetensors");
    mi_lesionseg_result r[2] = { { 0 } };
    for (int t = 0; t < 2; t++) {
        mi_set_threads(t + 1);
        ck_assert_int_eq(mi_lesionseg_postprocess(tensor(&f, "probs2"), 2, tensor(&f, "depth"), 16, 1003, 701, 0.5f,
                                                  20.0, &r[t]), MI_OK);
    }
    mi_set_threads(0);
    const size_t n = (size_t)1003 * 701;
    ck_assert(!memcmp(r[0].prob, r[1].prob, n * sizeof(float)));
    ck_assert(!memcmp(r[0].depth, r[1].depth, n * sizeof(float)));
    ck_assert(!memcmp(r[0].mask, r[1].mask, n));
    ck_assert_int_eq(r[0].ncomps, r[1].ncomps);
    ck_assert(!memcmp(r[0].comps, r[1].comps, (size_t)r[0].ncomps * sizeof *r[0].comps));
    for (int t = 0; t < 2; t++) mi_lesionseg_result_free(&r[t]);
    mi_weights_close(&f);
}
END_TEST

START_TEST(sniff_by_content)
{
    static const struct { const char *bytes; size_t n; mi_lesionseg_kind kind; const char *what; } cases[] = {
        { "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16, MI_LESIONSEG_IMAGE, "" },
        { "\xff\xd8\xff\xe0\0\x10JFIF", 10, MI_LESIONSEG_IMAGE, "" },
        { "BM6\0\0\0", 6, MI_LESIONSEG_IMAGE, "" },
        { "\0\0\0\x20" "ftypisom", 12, MI_LESIONSEG_VIDEO, "" },
        { "\x1a\x45\xdf\xa3\x9f", 5, MI_LESIONSEG_VIDEO, "" },
        { "RIFF\0\0\0\0AVI LIST", 16, MI_LESIONSEG_VIDEO, "" },
        { "RIFF\0\0\0\0WEBPVP8 ", 16, MI_LESIONSEG_OTHER, "a WebP image" },
        { "II*\0\x08\0\0\0", 8, MI_LESIONSEG_OTHER, "a TIFF image" },
        { "GIF89a", 6, MI_LESIONSEG_OTHER, "a GIF image" },
        { "not an image\n", 13, MI_LESIONSEG_OTHER, "" },
        { "", 0, MI_LESIONSEG_OTHER, "" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *what = NULL;
        ck_assert_int_eq(mi_lesionseg_sniff(cases[i].bytes, cases[i].n, &what), cases[i].kind);
        ck_assert_str_eq(what, cases[i].what);
    }
}
END_TEST

START_TEST(size_limits)
{
    ck_assert_int_eq(mi_lesionseg_check_size("x.png", MI_LESIONSEG_MIN_SIDE, 4096), MI_OK);
    ck_assert_int_eq(mi_lesionseg_check_size("x.png", 1, 1), MI_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "x.png: 1x1 pixels"));
    ck_assert_int_eq(mi_lesionseg_check_size("y.png", 5000, 4000), MI_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "y.png: 5000x4000"));
    ck_assert_int_eq(mi_lesionseg_check_size("z.png", 4096, 4096), MI_OK);
}
END_TEST

START_TEST(turbo_ends)
{
    uint8_t c[3];
    mi_turbo(0, c);       /* matplotlib: turbo(0) = (0.18995, 0.07176, 0.23217) */
    ck_assert(c[0] == 48 && c[1] == 18 && c[2] == 59);
    mi_turbo(1, c);       /* turbo(1) = (0.4796, 0.01583, 0.01055) */
    ck_assert(c[0] == 122 && c[1] == 4 && c[2] == 3);
    mi_turbo(NAN, c);
    ck_assert(c[0] == 48);
    mi_turbo(7, c);
    ck_assert(c[0] == 122);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("lesionseg_pipe");
    TCase *t = tcase_create("post");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, softmax_and_sigmoid_match_torch);
    tcase_add_test(t, tie_is_background);
    tcase_add_test(t, same_bytes_for_any_thread_count);
    tcase_add_test(t, sniff_by_content);
    tcase_add_test(t, size_limits);
    tcase_add_test(t, turbo_ends);
    suite_add_tcase(s, t);
    return s;
}

MI_TEST_MAIN(suite)
