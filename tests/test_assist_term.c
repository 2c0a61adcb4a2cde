/* tests/test_assist_term.c - the capture terminal's pure parts (pipelines/assist/terminal.h):
 * triggers frame by frame, the server's answer read and refused, the overlay's pixels, and the
 * way tests/test_assist_term.sh finds boxes in an overlaid MP4 (decoded by our FFmpeg reader).
 *
 * `test_assist_term --count VIDEO` is that finder as a tool for the shell test: one line per
 * decoded frame, "INDEX GREEN YELLOW RED" (pixels near the box, fault and banner colours). */
#include "tests/mi_test.h"
#include "pipelines/assist/terminal.h"
#include "pipelines/io/video.h"

#include <libavutil/log.h>
#include <string.h>
#include <unistd.h>

/* a frame of one flat grey, or with a bright square at (x, y): what a moving scope changes */
static void fill_frame(uint8_t *px, int w, int h, int grey, int sx, int sy) {
    memset(px, grey, (size_t)w * h * 3);
    if (sx < 0) return;
    for (int y = sy; y < sy + 16 && y < h; y++)
        for (int x = sx; x < sx + 16 && x < w; x++) memset(px + ((size_t)y * w + x) * 3, 250, 3);
}

START_TEST(auto_every_k_only_when_free)
{
    mi_trigger_config c = { .auto_k = 3 };
    mi_trigger t;
    mi_trigger_init(&t, &c);
    uint8_t px[64 * 48 * 3];
    fill_frame(px, 64, 48, 100, -1, 0);
    /* free: frames 0, 3, 6; busy on 7..9 (one in flight), free again on 10: it goes at once */
    const bool free_at[12] = { 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1 };
    const mi_trigger_kind want[12] = { MI_TRIG_AUTO, 0, 0, MI_TRIG_AUTO, 0, 0, MI_TRIG_AUTO, 0, 0, 0, MI_TRIG_AUTO, 0 };
    for (int i = 0; i < 12; i++)
        ck_assert_msg(mi_trigger_step(&t, i, px, 64, 48, NULL, free_at[i]) == want[i], "frame %d", i);
}
END_TEST

START_TEST(freeze_once_per_still_stretch)
{
    mi_trigger_config c = { .freeze = true, .freeze_eps = 0.5, .freeze_n = 4 };
    mi_trigger t;
    mi_trigger_init(&t, &c);
    uint8_t px[64 * 48 * 3];
    int fired = 0, at[4];
    for (int i = 0; i < 40; i++) {
        /* moving 0..9, still 10..24, moving 25..29, still 30..39 */
        const bool moving = i < 10 || (i >= 25 && i < 30);
        fill_frame(px, 64, 48, 90, moving ? (i * 5) % 48 : 20, 10);
        if (mi_trigger_step(&t, i, px, 64, 48, NULL, true) == MI_TRIG_FREEZE) at[fired++ < 4 ? fired - 1 : 3] = i;
    }
    ck_assert_int_eq(fired, 2);
    /* frame 10 is the first still one (its difference to 9 is the last move): 11..14 are 4 still */
    ck_assert_int_eq(at[0], 14);
    ck_assert_int_eq(at[1], 34);
}
END_TEST

START_TEST(freeze_while_busy_waits_for_the_answer)
{
    mi_trigger_config c = { .freeze = true, .freeze_eps = 0.5, .freeze_n = 2, .auto_k = 1 };
    mi_trigger t;
    mi_trigger_init(&t, &c);
    uint8_t px[32 * 32 * 3];
    fill_frame(px, 32, 32, 120, -1, 0);
    ck_assert(mi_trigger_step(&t, 0, px, 32, 32, NULL, true) == MI_TRIG_AUTO);
    for (int i = 1; i <= 5; i++) ck_assert(mi_trigger_step(&t, i, px, 32, 32, NULL, false) == MI_TRIG_NONE);
    /* the freeze completed at frame 2 while busy: it goes first once free, and only once */
    ck_assert(mi_trigger_step(&t, 6, px, 32, 32, NULL, true) == MI_TRIG_FREEZE);
    ck_assert(mi_trigger_step(&t, 7, px, 32, 32, NULL, true) == MI_TRIG_AUTO);
}
END_TEST

START_TEST(pedal_before_freeze_before_auto)
{
    mi_trigger_config c = { .pedal = true, .freeze = true, .freeze_eps = 0.5, .freeze_n = 1, .auto_k = 1 };
    mi_trigger t;
    mi_trigger_init(&t, &c);
    uint8_t px[32 * 32 * 3];
    fill_frame(px, 32, 32, 120, -1, 0);
    int pedal = 2;
    ck_assert(mi_trigger_step(&t, 0, px, 32, 32, &pedal, true) == MI_TRIG_PEDAL);
    ck_assert(mi_trigger_step(&t, 1, px, 32, 32, &pedal, true) == MI_TRIG_PEDAL);   /* freeze due: waits */
    ck_assert_int_eq(pedal, 0);
    ck_assert(mi_trigger_step(&t, 2, px, 32, 32, &pedal, true) == MI_TRIG_FREEZE);
    ck_assert(mi_trigger_step(&t, 3, px, 32, 32, &pedal, true) == MI_TRIG_AUTO);
    pedal = 1;   /* a press while busy is kept, not lost */
    ck_assert(mi_trigger_step(&t, 4, px, 32, 32, &pedal, false) == MI_TRIG_NONE);
    ck_assert(mi_trigger_step(&t, 5, px, 32, 32, &pedal, true) == MI_TRIG_PEDAL);
    mi_trigger_config off = { .auto_k = 1 };   /* pedal not enabled: presses are not taken */
    mi_trigger_init(&t, &off);
    pedal = 1;
    ck_assert(mi_trigger_step(&t, 0, px, 32, 32, &pedal, true) == MI_TRIG_AUTO);
    ck_assert_int_eq(pedal, 1);
}
END_TEST

static const char ANSWER[] =
    "{\"exam_id\": \"e-7\", \"terminal\": \"T1\", \"timestamp_ms\": 1234, \"trigger\": \"pedal\", \"judged\": true,"
    " \"reason\": null, \"high_risk\": true, \"finding_ids\": [4],"
    " \"lesions\": [{\"type\": \"ulcer\", \"score\": 0.55, \"probs\": {}, \"box\": [200, 10, 230, 50], \"high_risk\": true},"
    "  {\"type\": \"adenomatous polyp\", \"score\": 0.91, \"probs\": {}, \"box\": [10.5, 20, 110, 140.25]}],"
    " \"model\": {\"arch\": \"fasterrcnn_fpn\", \"model_version\": \"2026.12.01.1\", \"sha256\": \"ab\"},"
    " \"timing_ms\": {\"total\": 84.5}}";

START_TEST(answer_read)
{
    mi_assist_answer a;
    ck_assert_int_eq(mi_assist_answer_parse(&a, ANSWER, strlen(ANSWER)), MI_OK);
    ck_assert_str_eq(a.exam_id, "e-7");
    ck_assert_str_eq(a.terminal, "T1");
    ck_assert_str_eq(a.trigger, "pedal");
    ck_assert_int_eq(a.timestamp_ms, 1234);
    ck_assert(a.judged && a.high_risk);
    ck_assert_str_eq(a.reason, "");
    ck_assert_int_eq(a.n, 2);
    ck_assert_str_eq(a.les[0].type, "adenomatous polyp");   /* best first */
    ck_assert(!a.les[0].high_risk && a.les[1].high_risk);    /* per lesion, when the server says */
    ck_assert(a.les[0].box[0] == 10.5f && a.les[0].box[3] == 140.25f);
    ck_assert_str_eq(a.model_version, "2026.12.01.1");
    ck_assert(a.server_ms == 84.5);

    /* more lesions than drawn: the best MI_ASSIST_MAX_LESIONS, in order */
    char big[8192];
    int n = snprintf(big, sizeof big, "{\"exam_id\": \"x\", \"judged\": true, \"lesions\": [");
    for (int i = 0; i < 20; i++)
        n += snprintf(big + n, sizeof big - n, "%s{\"type\": \"t%d\", \"score\": %g, \"box\": [0, 0, 1, 1]}",
                      i ? ", " : "", i, (i * 7 % 20) / 20.0);
    snprintf(big + n, sizeof big - n, "]}");
    ck_assert_int_eq(mi_assist_answer_parse(&a, big, strlen(big)), MI_OK);
    ck_assert_int_eq(a.n_total, 20);
    ck_assert_int_eq(a.n, MI_ASSIST_MAX_LESIONS);
    ck_assert(a.les[0].score == 0.95f);
    ck_assert(a.les[MI_ASSIST_MAX_LESIONS - 1].score == 0.2f);   /* 0.0 .. 0.15 left out */
}
END_TEST

START_TEST(answer_refusals_say_what)
{
    static const struct { const char *body, *msg; } bad[] = {
        { "{\"judged\": true}", "server answer: no \"exam_id\"" },
        { "{\"exam_id\": \"\", \"judged\": true}", "server answer: \"exam_id\" is empty" },
        { "{\"exam_id\": 3, \"judged\": true}", "server answer: \"exam_id\" is not a string" },
        { "{\"exam_id\": \"e\"}", "server answer: \"judged\" is missing or not true/false" },
        { "{\"exam_id\": \"e\", \"judged\": true, \"lesions\": {}}", "server answer: \"lesions\" is not a list" },
        { "{\"exam_id\": \"e\", \"judged\": true, \"lesions\": [{\"type\": \"u\", \"score\": 1.5, \"box\": [0,0,1,1]}]}",
          "server answer: lesions[0] \"score\" is not a number in [0, 1]" },
        { "{\"exam_id\": \"e\", \"judged\": true, \"lesions\": [{\"type\": \"u\", \"score\": 0.5, \"box\": [0,0,1]}]}",
          "server answer: lesions[0] \"box\" is not a list of 4 numbers" },
        { "{\"exam_id\": \"e\", \"judged\": true, \"lesions\": [{\"type\": \"u\", \"score\": 0.5, \"box\": [0,0,1,1e300]}]}",
          "server answer: lesions[0] \"box\"[3] is not a finite pixel coordinate" },
        { "{\"exam_id\": \"e\", \"judged\": true, \"lesions\": [{\"score\": 0.5, \"box\": [0,0,1,1]}]}",
          "server answer: lesions[0] has no \"type\" string" },
        { "{\"exam_id\": \"e\", \"judged\": true, \"lesions\": [{\"type\": \"u\", \"score\": 0.5, \"box\": [0,0,1,1], \"high_risk\": 1}]}",
          "server answer: lesions[0] \"high_risk\" is not true/false" },
        { "[1, 2]", "server answer: not a JSON object" },
        { "{\"exam_id\": \"e\", \"judg", "server answer: not JSON (22 bytes)" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        mi_assist_answer a;
        ck_assert_int_eq(mi_assist_answer_parse(&a, bad[i].body, strlen(bad[i].body)), MI_ERR_FORMAT);
        ck_assert_msg(strstr(mi_last_error(), bad[i].msg) != NULL, "case %zu: %s", i, mi_last_error());
    }
}
END_TEST

START_TEST(overlay_pixels)
{
    mi_image im;
    ck_assert_int_eq(mi_image_alloc(&im, 320, 240), MI_OK);
    mi_overlay_info o = { "e-7", "T1", "N42", 61500, NULL, 1.f, 1.f, NULL, NULL };
    memset(im.px, 128, (size_t)320 * 240 * 3);
    mi_overlay_draw(&im, &o);   /* no answer, no fault: exam info only */
    ck_assert_int_eq(mi_overlay_count_rgb(im.px, 320, 240, MI_OVERLAY_BOX_RGB, 40), 0);
    ck_assert_int_eq(mi_overlay_count_rgb(im.px, 320, 240, MI_OVERLAY_ALERT_RGB, 40), 0);
    ck_assert_int_eq(mi_overlay_count_rgb(im.px, 320, 240, MI_OVERLAY_FAULT_RGB, 40), 0);
    ck_assert_int_gt(mi_overlay_count_rgb(im.px, 320, 240, (const uint8_t[3]){ 255, 255, 255 }, 0), 50);

    mi_assist_answer a;
    ck_assert_int_eq(mi_assist_answer_parse(&a, ANSWER, strlen(ANSWER)), MI_OK);
    memset(im.px, 128, (size_t)320 * 240 * 3);
    o.answer = &a;
    o.scale_x = o.scale_y = 0.5f;   /* the answer's boxes are in a frame twice the size */
    mi_overlay_draw(&im, &o);
    /* the polyp's box [10.5, 20, 110, 140.25] at half size: outline of [5, 10] - [55, 70], 1 px inside */
    const uint8_t *p = im.px + ((size_t)40 * 320 + 5) * 3, *q = im.px + ((size_t)40 * 320 + 30) * 3;
    ck_assert(!memcmp(p, MI_OVERLAY_BOX_RGB, 3));   /* its left edge */
    ck_assert(q[0] == 128 && q[1] == 128);           /* its inside is the frame */
    ck_assert_int_gt(mi_overlay_count_rgb(im.px, 320, 240, MI_OVERLAY_ALERT_RGB, 0), 320 * 10);  /* banner */
    ck_assert_int_eq(mi_overlay_count_rgb(im.px, 320, 240, MI_OVERLAY_FAULT_RGB, 40), 0);

    o.answer = NULL;
    o.fault = "no answer in 500 ms";
    memset(im.px, 128, (size_t)320 * 240 * 3);
    mi_overlay_draw(&im, &o);
    ck_assert_int_gt(mi_overlay_count_rgb(im.px, 320, 240, MI_OVERLAY_FAULT_RGB, 0), 500);
    ck_assert_int_eq(mi_overlay_count_rgb(im.px, 320, 240, MI_OVERLAY_BOX_RGB, 40), 0);
    mi_image_free(&im);
}
END_TEST

/* The shell test's box finder on a video whose boxes we know: drawn on frames 5..9 of 15 only. */
START_TEST(boxes_found_in_decoded_mp4)
{
    av_log_set_level(AV_LOG_ERROR);   /* no x264 statistics in the test log */
    char path[] = "/tmp/mi_assist_boxXXXXXX.mp4";
    int fd = mkstemps(path, 4);
    ck_assert(fd >= 0);
    close(fd);
    mi_video_writer *vw;
    ck_assert_int_eq(mi_video_writer_open(&vw, path, 160, 120, 25, 23), MI_OK);
    mi_image im;
    ck_assert_int_eq(mi_image_alloc(&im, 160, 120), MI_OK);
    mi_assist_answer a;
    ck_assert_int_eq(mi_assist_answer_parse(&a, ANSWER, strlen(ANSWER)), MI_OK);
    a.high_risk = false;
    for (int i = 0; i < 15; i++) {
        for (int k = 0; k < 160 * 120; k++) {   /* tissue-like reds, changing per frame */
            im.px[k * 3] = (uint8_t)(150 + (k + i * 7) % 60);
            im.px[k * 3 + 1] = (uint8_t)(60 + k % 40);
            im.px[k * 3 + 2] = 50;
        }
        mi_overlay_info o = { "e-7", "T1", "", i * 40, i >= 5 && i <= 9 ? &a : NULL, 0.5f, 0.5f, NULL, NULL };
        mi_overlay_draw(&im, &o);
        ck_assert_int_eq(mi_video_writer_add(vw, im.px), MI_OK);
    }
    ck_assert_int_eq(mi_video_writer_close(vw), MI_OK);
    mi_image_free(&im);
    mi_video *v;
    ck_assert_int_eq(mi_video_open(&v, path, 0), MI_OK);
    int n = 0;
    for (;;) {
        mi_video_frame f;
        bool got;
        ck_assert_int_eq(mi_video_read(v, &f, &got), MI_OK);
        if (!got) break;
        int64_t g = mi_overlay_count_rgb(f.px, f.w, f.h, MI_OVERLAY_BOX_RGB, 60);
        if (f.index >= 5 && f.index <= 9) ck_assert_msg(g > 200, "frame %lld: %lld box pixels", (long long)f.index, (long long)g);
        else ck_assert_msg(g < 20, "frame %lld: %lld box pixels", (long long)f.index, (long long)g);
        n++;
    }
    ck_assert_int_eq(n, 15);
    mi_video_close(v);
    unlink(path);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("assist_term");
    TCase *t = tcase_create("terminal");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, auto_every_k_only_when_free);
    tcase_add_test(t, freeze_once_per_still_stretch);
    tcase_add_test(t, freeze_while_busy_waits_for_the_answer);
    tcase_add_test(t, pedal_before_freeze_before_auto);
    tcase_add_test(t, answer_read);
    tcase_add_test(t, answer_refusals_say_what);
    tcase_add_test(t, overlay_pixels);
    tcase_add_test(t, boxes_found_in_decoded_mp4);
    suite_add_tcase(s, t);
    return s;
}

static int count(const char *path) {
    mi_video *v;
    if (mi_video_open(&v, path, 0) != MI_OK) {
        fprintf(stderr, "test_assist_term --count: %s\n", mi_last_error());
        return 1;
    }
    for (;;) {
        mi_video_frame f;
        bool got;
        if (mi_video_read(v, &f, &got) != MI_OK || !got) break;
        printf("%lld %lld %lld %lld\n", (long long)f.index, (long long)mi_overlay_count_rgb(f.px, f.w, f.h, MI_OVERLAY_BOX_RGB, 60),
               (long long)mi_overlay_count_rgb(f.px, f.w, f.h, MI_OVERLAY_FAULT_RGB, 60),
               (long long)mi_overlay_count_rgb(f.px, f.w, f.h, MI_OVERLAY_ALERT_RGB, 60));
    }
    mi_video_close(v);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--count")) return count(argv[2]);
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
