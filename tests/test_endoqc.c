/* tests/test_endoqc.c - the pieces of `medinfer endoqc` that need no network run: the FFmpeg
 * video reader/writer (times from timestamps, seeking, a truncated file read as far as it goes,
 * damage the decoder conceals - the same on every read -, the real H.264 clip in ../shared/data),
 * the decoder thread of endoqc (order, errors, an early stop), the drift rule's
 * boundaries, the site metadata of a blob (corpus from tests/ref_endoqc_meta.py), the missing-site
 * lists in the report and the database, and the shipped demo blob's version. End-to-end runs with
 * the demo blob are tests/test_endoqc*.sh. */
#include "tests/mi_test.h"
#include "pipelines/io/video.h"
#include "pipelines/endoqc/endoqc.h"
#include "pipelines/endoqc/feed.h"
#include "pipelines/trust/trust.h"

#include <dirent.h>
#include <libavformat/avformat.h>
#include <libavutil/log.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEMO_BLOB "weights/endoqc_sites_demo.safetensors"

/* A 10 fps clip whose frame i is grey level 10*i plus a fine noise texture (so the frames are
 * big enough that a truncation falls well inside the data, and a frame read back says which it is). */
static void write_ramp(const char *path, int n) {
    mi_video_writer *vw;
    ck_assert_msg(mi_video_writer_open(&vw, path, 64, 48, 10, 18) == MI_OK, "%s", mi_last_error());
    uint8_t px[64 * 48 * 3];
    for (int i = 0; i < n; i++) {
        for (size_t j = 0; j < sizeof px; j++) px[j] = (uint8_t)(10 * i + ((j * 2654435761u + (size_t)i * 97u) >> 7 & 15));
        ck_assert_int_eq(mi_video_writer_add(vw, px), MI_OK);
    }
    ck_assert_msg(mi_video_writer_close(vw) == MI_OK, "%s", mi_last_error());
}

static void tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "/tmp/mi_test_endoqc_%d_%s", (int)getpid(), name);
}

START_TEST(video_times_come_from_timestamps)
{
    char path[256];
    tmp_path(path, sizeof path, "ramp.mp4");
    write_ramp(path, 20);
    mi_video *v;
    ck_assert_msg(mi_video_open(&v, path, 24) == MI_OK, "%s", mi_last_error());
    const mi_video_info *in = mi_video_get_info(v);
    ck_assert_str_eq(in->codec, "h264");
    ck_assert_int_eq(in->width, 64);
    ck_assert_msg(in->fps > 9.9 && in->fps < 10.1, "fps %g", in->fps);
    ck_assert_int_eq(in->duration_ms, 2000);
    mi_video_frame f;
    bool got;
    int n = 0;
    while (mi_video_read(v, &f, &got) == MI_OK && got) {
        ck_assert_int_eq(f.t_ms, 100 * n);          /* 10 fps: 0, 100, 200 ... ms */
        ck_assert_int_eq(f.w, 32);                  /* shorter side 48 -> 24, aspect kept */
        ck_assert_int_eq(f.h, 24);
        ck_assert_msg(abs(f.px[3 * (12 * 32 + 16)] - 10 * n - 8) <= 8, "frame %d grey %d", n, f.px[3 * (12 * 32 + 16)]);
        n++;
    }
    ck_assert_int_eq(n, 20);
    ck_assert_str_eq(mi_video_damage(v), "");
    ck_assert(!mi_video_truncated(v));
    /* a second pass from 1.25 s starts at the keyframe before and reaches frame 13 by its time */
    ck_assert_int_eq(mi_video_seek_ms(v, 1250), MI_OK);
    bool found = false;
    while (mi_video_read(v, &f, &got) == MI_OK && got && !found)
        if (f.t_ms == 1300) { found = true; ck_assert_msg(abs(f.px[3 * (12 * 32 + 16)] - 138) <= 8, "re-read frame 13"); }
    ck_assert(found);
    mi_video_close(v);
    unlink(path);
}
END_TEST

START_TEST(truncated_video_is_read_as_far_as_it_goes)
{
    char path[256], cut[256];
    tmp_path(path, sizeof path, "full.mp4");
    tmp_path(cut, sizeof cut, "cut.mp4");
    write_ramp(path, 50);
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    f = fopen(cut, "wb");
    fwrite(buf, 1, n * 6 / 10, f);   /* the index is at the front (faststart), the tail is gone */
    fclose(f);
    mi_video *v;
    ck_assert_msg(mi_video_open(&v, cut, 0) == MI_OK, "%s", mi_last_error());
    mi_video_frame fr;
    bool got;
    int frames = 0;
    while (mi_video_read(v, &fr, &got) == MI_OK && got) frames++;
    ck_assert_msg(frames > 5 && frames < 50, "%d frames", frames);
    ck_assert(mi_video_truncated(v));
    ck_assert_msg(strstr(mi_video_damage(v), "truncated") != NULL, "damage: '%s'", mi_video_damage(v));
    ck_assert_int_lt(mi_video_last_ms(v), 4900);
    mi_video_close(v);
    unlink(path);
    unlink(cut);
}
END_TEST

START_TEST(not_a_video_is_an_error_naming_the_file)
{
    char path[256];
    tmp_path(path, sizeof path, "text.mp4");
    FILE *f = fopen(path, "w");
    fputs("hello", f);
    fclose(f);
    mi_video *v;
    ck_assert_int_ne(mi_video_open(&v, path, 0), MI_OK);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), path));
    ck_assert_int_eq(mi_video_open(&v, "/nonexistent/x.mp4", 0), MI_ERR_IO);
    unlink(path);
}
END_TEST

/* src's packets copied into dst (MP4) with the container's pixel aspect ratio set to sar: the
 * 'pasp' box, which a file can state as anything from 1/2^31 to 2^31 */
static void remux_with_sar(const char *src, const char *dst, AVRational sar) {
    AVFormatContext *in = NULL, *out = NULL;
    ck_assert_int_eq(avformat_open_input(&in, src, NULL, NULL), 0);
    ck_assert_int_ge(avformat_find_stream_info(in, NULL), 0);
    ck_assert_int_ge(avformat_alloc_output_context2(&out, NULL, "mp4", dst), 0);
    AVStream *is = in->streams[0], *os = avformat_new_stream(out, NULL);
    ck_assert_int_ge(avcodec_parameters_copy(os->codecpar, is->codecpar), 0);
    os->codecpar->codec_tag = 0;
    os->codecpar->sample_aspect_ratio = os->sample_aspect_ratio = sar;
    os->time_base = is->time_base;
    ck_assert_int_ge(avio_open(&out->pb, dst, AVIO_FLAG_WRITE), 0);
    ck_assert_int_ge(avformat_write_header(out, NULL), 0);
    AVPacket *pkt = av_packet_alloc();
    while (av_read_frame(in, pkt) >= 0) {
        av_packet_rescale_ts(pkt, is->time_base, os->time_base);
        pkt->stream_index = 0;
        ck_assert_int_ge(av_interleaved_write_frame(out, pkt), 0);
    }
    ck_assert_int_ge(av_write_trailer(out), 0);
    av_packet_free(&pkt);
    avio_closep(&out->pb);
    avformat_free_context(out);
    avformat_close_input(&in);
}

/* A pixel aspect ratio no display has (1/2^31: the resized frame's long side would not fit an
 * int) is read as square pixels; a plausible one (2/1, anamorphic) is honoured. */
START_TEST(absurd_pixel_aspect_ratio_is_square)
{
    char path[256], odd[256];
    tmp_path(path, sizeof path, "sar.mp4");
    tmp_path(odd, sizeof odd, "sar_odd.mp4");
    write_ramp(path, 3);
    static const struct { AVRational sar; int w, h; } c[] = {
        { { 1, 2147483647 }, 32, 24 }, { { 2147483647, 1 }, 32, 24 }, { { 2, 1 }, 64, 24 } };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        remux_with_sar(path, odd, c[i].sar);
        mi_video *v;
        ck_assert_msg(mi_video_open(&v, odd, 24) == MI_OK, "%s", mi_last_error());
        mi_video_frame f;
        bool got;
        ck_assert_int_eq(mi_video_read(v, &f, &got), MI_OK);
        ck_assert(got);
        ck_assert_msg(f.w == c[i].w && f.h == c[i].h, "sar %d/%d: %dx%d, expected %dx%d", c[i].sar.num,
                      c[i].sar.den, f.w, f.h, c[i].w, c[i].h);
        mi_video_close(v);
    }
    unlink(path);
    unlink(odd);
}
END_TEST

START_TEST(real_h264_clip_decodes)
{
    const char *dir = mi_shared_data("endoscopy-video-misc");
    if (!dir) MI_SKIP("../shared/data/endoscopy-video-misc not present");
    char path[1024];
    snprintf(path, sizeof path, "%s/simcol_example_result_real.mp4", dir);
    mi_video *v;
    ck_assert_msg(mi_video_open(&v, path, 160) == MI_OK, "%s", mi_last_error());
    const mi_video_info *in = mi_video_get_info(v);
    ck_assert_str_eq(in->codec, "h264");
    ck_assert_int_eq(in->width, 1920);
    ck_assert_int_eq(in->height, 1080);
    mi_video_frame f;
    bool got;
    int64_t n = 0, prev = -1;
    long long sum = 0;
    while (mi_video_read(v, &f, &got) == MI_OK && got) {
        ck_assert_int_gt(f.t_ms, prev);             /* presentation order, increasing times */
        prev = f.t_ms;
        ck_assert_int_eq(f.h, 160);
        ck_assert_int_eq(f.w, 284);                 /* 16:9 */
        sum += f.px[3 * (80 * 284 + 142) + 1];
        n++;
    }
    ck_assert_int_eq(n, 576);
    ck_assert_msg(prev > 18500 && prev < 19100, "last frame at %lld ms", (long long)prev);
    ck_assert_str_eq(mi_video_damage(v), "");
    ck_assert(sum > 0);                              /* real pixels, not a black stream */
    mi_video_close(v);
}
END_TEST

START_TEST(drift_rule_boundaries)
{
    /* the rule: alert when the incomplete share exceeds 20 %; update when the reference shares
     * differ by more than 5 points. "Exceeds" and "more than" are strict. */
    mi_endoqc_drift d = { .batch_exams = 10, .batch_incomplete = 2, .alert = 0.20, .tolerance = 0.05 };
    mi_endoqc_drift_decide(&d);
    ck_assert(!d.alerted);                           /* exactly 20 %: no alert */
    d.batch_incomplete = 3;
    mi_endoqc_drift_decide(&d);
    ck_assert(d.alerted);
    ck_assert(!d.model_update_required);            /* alerted, but no reference run yet */
    d.reference_run = true;
    d.ref_exams = 20;
    d.ref_labelled_incomplete = 4;                   /* 20 % */
    d.ref_predicted_incomplete = 5;                  /* 25 %: exactly 5 points */
    mi_endoqc_drift_decide(&d);
    ck_assert(!d.model_update_required);
    d.ref_predicted_incomplete = 6;                  /* 30 %: 10 points */
    mi_endoqc_drift_decide(&d);
    ck_assert(d.model_update_required);
    d.ref_predicted_incomplete = 2;                  /* 10 %: 10 points the other way */
    mi_endoqc_drift_decide(&d);
    ck_assert(d.model_update_required);
    ck_assert_double_eq_tol(d.ref_labelled_share, 0.20, 1e-12);
    ck_assert_double_eq_tol(d.ref_predicted_share, 0.10, 1e-12);
    d.batch_exams = 0;                               /* an empty batch never alerts */
    d.batch_incomplete = 0;
    d.reference_run = false;
    mi_endoqc_drift_decide(&d);
    ck_assert(!d.alerted && !d.model_update_required);
    /* a batch under the minimum is not judged: 1 incomplete of 1 (100 %) does not alert */
    mi_endoqc_drift dm = { .batch_exams = 1, .batch_incomplete = 1, .min_exams = 20, .alert = 0.20, .tolerance = 0.05 };
    mi_endoqc_drift_decide(&dm);
    ck_assert(!dm.judged && !dm.alerted);
    dm.batch_exams = 20;
    dm.batch_incomplete = 5;                         /* 25 % of 20: judged and alerted */
    mi_endoqc_drift_decide(&dm);
    ck_assert(dm.judged && dm.alerted);
    dm.batch_exams = 19;                             /* one short of the minimum */
    mi_endoqc_drift_decide(&dm);
    ck_assert(!dm.judged && !dm.alerted);
}
END_TEST

START_TEST(selfcheck_rule)
{
    /* the staged model is activated only with a complete comparison and accuracy >= the bar */
    mi_endoqc_selfcheck s = { .ref_exams = 4, .staged_evaluated = 4, .staged_agree = 3, .current_evaluated = 4,
                              .current_agree = 3, .min_accuracy = -1 };
    mi_endoqc_selfcheck_decide(&s);
    ck_assert(s.complete && s.activate);             /* equal to the current model: at least as good */
    ck_assert_str_eq(s.bar_source, "current model");
    s.staged_agree = 2;
    mi_endoqc_selfcheck_decide(&s);
    ck_assert(!s.activate);
    ck_assert_msg(strstr(s.reason, "2/4 = 0.5000 < the bar 0.7500"), "%s", s.reason);
    s.min_accuracy = 0.5;                            /* the manifest's bar replaces the comparison */
    mi_endoqc_selfcheck_decide(&s);
    ck_assert(s.activate);
    ck_assert_str_eq(s.bar_source, "manifest");
    s.min_accuracy = 0.51;
    mi_endoqc_selfcheck_decide(&s);
    ck_assert(!s.activate);
    s.min_accuracy = -1;
    s.staged_agree = 4;
    s.staged_evaluated = 3;                          /* one reference exam failed: no decision */
    mi_endoqc_selfcheck_decide(&s);
    ck_assert(!s.complete && !s.activate);
    ck_assert_msg(strstr(s.reason, "not evaluated completely"), "%s", s.reason);
    s.staged_evaluated = 4;
    s.ref_exams = s.current_evaluated = s.current_agree = s.staged_agree = s.staged_evaluated = 0;
    mi_endoqc_selfcheck_decide(&s);                  /* no reference set: never activated */
    ck_assert(!s.activate);
}
END_TEST

/* A copy of path with n bytes flipped in its middle third: the container stays readable, the
 * decoder meets damaged slices. */
static void flip_bytes(const char *path, const char *out, int n) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    static uint8_t buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert_int_gt(len, 3000);
    for (int i = 0; i < n; i++) buf[len / 3 + (size_t)i * (len / 3 / (size_t)n)] ^= 0x55;
    f = fopen(out, "wb");
    fwrite(buf, 1, len, f);
    fclose(f);
}

START_TEST(concealed_decoding_errors_are_damage)
{
    char path[256], bad[256];
    tmp_path(path, sizeof path, "clean.mp4");
    tmp_path(bad, sizeof bad, "flipped.mp4");
    write_ramp(path, 50);
    flip_bytes(path, bad, 30);
    mi_video *v;
    mi_video_frame f;
    bool got;
    /* read four times: the count of concealed frames and their pixels must not depend on timing
     * (with FFmpeg's frame threads the count varied from run to run, 0 included) */
    int64_t damaged0 = -1;
    uint64_t sum0 = 0;
    for (int run = 0; run < 4; run++) {
        ck_assert_msg(mi_video_open(&v, bad, 0) == MI_OK, "%s", mi_last_error());
        int frames = 0;
        uint64_t sum = 14695981039346656037ull;   /* FNV-1a over every pixel of every frame */
        while (mi_video_read(v, &f, &got) == MI_OK && got) {
            frames++;
            for (size_t i = 0; i < (size_t)f.w * f.h * 3; i++) sum = (sum ^ f.px[i]) * 1099511628211ull;
        }
        /* the decoder conceals and goes on: every frame comes out, but not as recorded */
        ck_assert_int_gt(frames, 40);
        ck_assert_msg(mi_video_damaged_frames(v) > 0, "flipped bytes went unnoticed (damage '%s')", mi_video_damage(v));
        ck_assert_msg(strstr(mi_video_damage(v), "decoded with errors concealed by the decoder (first at "),
                      "damage: '%s'", mi_video_damage(v));
        ck_assert(!mi_video_truncated(v));
        if (run == 0) { damaged0 = mi_video_damaged_frames(v); sum0 = sum; }
        ck_assert_msg(mi_video_damaged_frames(v) == damaged0, "read %d: %lld damaged frames, read 0: %lld", run,
                      (long long)mi_video_damaged_frames(v), (long long)damaged0);
        ck_assert_msg(sum == sum0, "read %d: other pixels than read 0", run);
        mi_video_close(v);
    }
    /* the clean original says nothing */
    ck_assert_int_eq(mi_video_open(&v, path, 0), MI_OK);
    while (mi_video_read(v, &f, &got) == MI_OK && got) {}
    ck_assert_int_eq(mi_video_damaged_frames(v), 0);
    ck_assert_str_eq(mi_video_damage(v), "");
    mi_video_close(v);
    unlink(path);
    unlink(bad);
}
END_TEST

/* The decoder thread (pipelines/endoqc/feed.h): what the caller receives, in order, with a queue
 * far smaller than the stream, is what it receives reading on its own thread; an error on the
 * decoder thread reaches the caller after every frame before it, with the decoder's message; and
 * a caller that stops early gets its thread back. */
typedef struct { int fail_at, seen; } feed_sel;

static mi_status feed_pick_test(void *arg, const mi_video_frame *f, mi_feed_pick *pick, int64_t *tag) {
    feed_sel *s = arg;
    if (s->seen++ == s->fail_at) return MI_FAIL(MI_ERR_FORMAT, "frame %lld refused", (long long)f->index);
    *tag = f->index;
    *pick = f->index % 3 == 2 ? MI_FEED_SKIP : f->index % 3 == 1 ? MI_FEED_RECORD : MI_FEED_PIXELS;
    return MI_OK;
}

static void feed_run(const char *path, bool threaded, int fail_at, int stop_after, int64_t tags[40],
                     int grey[40], int *n, mi_status *st, char msg[256]) {
    mi_video *v;
    ck_assert_msg(mi_video_open(&v, path, 24) == MI_OK, "%s", mi_last_error());
    feed_sel sel = { fail_at, 0 };
    mi_endoqc_feed *q;
    ck_assert_int_eq(mi_endoqc_feed_start(&q, v, threaded, 2, 3, feed_pick_test, &sel), MI_OK);
    *n = 0;
    mi_feed_item it;
    bool got;
    while ((*st = mi_endoqc_feed_next(q, &it, &got)) == MI_OK && got && *n < stop_after) {
        ck_assert_int_lt(*n, 40);
        tags[*n] = it.tag;
        ck_assert_int_eq(it.decoded, it.f.index + 1);
        grey[*n] = it.f.px ? it.f.px[3 * (12 * 32 + 16)] : -1;
        (*n)++;
    }
    snprintf(msg, 256, "%s", *st == MI_OK ? "" : mi_last_error());
    mi_endoqc_feed_stop(q, NULL, NULL, NULL);
    mi_video_close(v);
}

START_TEST(decoder_thread_keeps_order_and_errors)
{
    char path[256];
    tmp_path(path, sizeof path, "feed.mp4");
    write_ramp(path, 25);
    int64_t tags[2][40];
    int grey[2][40], n[2];
    mi_status st[2];
    char msg[2][256];
    for (int fail = 0; fail < 2; fail++) {
        for (int threaded = 0; threaded < 2; threaded++)
            feed_run(path, threaded, fail ? 13 : -1, 1000, tags[threaded], grey[threaded], &n[threaded],
                     &st[threaded], msg[threaded]);
        /* frames 0..24, every third skipped; with the error at the 14th frame read (index 13),
         * the 9 records before it and then the error */
        ck_assert_int_eq(n[1], fail ? 9 : 17);
        ck_assert_int_eq(n[0], n[1]);
        for (int i = 0; i < n[1]; i++) {
            ck_assert_int_eq(tags[1][i], tags[0][i]);
            ck_assert_int_eq(tags[1][i], i / 2 * 3 + i % 2);
            ck_assert_int_eq(grey[1][i], grey[0][i]);
            ck_assert_int_eq(grey[1][i] < 0, tags[1][i] % 3 == 1);
        }
        ck_assert_int_eq(st[1], fail ? MI_ERR_FORMAT : MI_OK);
        ck_assert_int_eq(st[0], st[1]);
        ck_assert_str_eq(msg[1], fail ? "frame 13 refused" : "");
        ck_assert_str_eq(msg[0], msg[1]);
    }
    /* a caller that stops after 2 records, the decoder blocked on its full queue */
    feed_run(path, true, -1, 2, tags[1], grey[1], &n[1], &st[1], msg[1]);
    ck_assert_int_eq(n[1], 2);
    unlink(path);
}
END_TEST

START_TEST(empty_file_and_directory_say_so)
{
    char path[256], dir[256];
    tmp_path(path, sizeof path, "empty.mp4");
    tmp_path(dir, sizeof dir, "dir.mp4");
    FILE *f = fopen(path, "w");
    fclose(f);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    mi_video *v;
    char want[300];
    ck_assert_int_ne(mi_video_open(&v, path, 0), MI_OK);
    snprintf(want, sizeof want, "%s: empty file (0 bytes)", path);
    ck_assert_str_eq(mi_last_error(), want);
    ck_assert_int_ne(mi_video_open(&v, dir, 0), MI_OK);
    snprintf(want, sizeof want, "%s: is a directory, not a video file", dir);
    ck_assert_str_eq(mi_last_error(), want);
    ck_assert_int_eq(mi_video_open(&v, "/nonexistent/x.mp4", 0), MI_ERR_IO);
    ck_assert_str_eq(mi_last_error(), "/nonexistent/x.mp4: no such file");
    unlink(path);
    rmdir(dir);
}
END_TEST

/* ---- site metadata ------------------------------------------------------------------------- */

static void meta_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/endoqc_meta/%s", mi_fixtures(), name);
}

START_TEST(site_metadata_corpus_is_refused_by_name)
{
    char dir[1024];
    meta_path(dir, sizeof dir, "");
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "%s: no corpus (tests/ref_endoqc_meta.py writes it)", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "bad_", 4)) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s%s", dir, e->d_name);
        mi_weights w;
        ck_assert_msg(mi_weights_open(&w, path) == MI_OK, "the reader must accept %s: %s", path, mi_last_error());
        const char *expect = mi_weights_meta(&w, "test_expect");
        ck_assert_msg(expect != NULL, "%s has no test_expect", path);
        mi_endoqc_sites s;
        mi_status st = mi_endoqc_sites_from_blob(&s, &w);
        ck_assert_msg(st == MI_ERR_FORMAT, "%s: accepted (status %d)", e->d_name, st);
        ck_assert_msg(strstr(mi_last_error(), path) == mi_last_error(), "%s: message does not start with the file: %s",
                      e->d_name, mi_last_error());
        ck_assert_msg(strstr(mi_last_error(), expect) != NULL, "%s:\n  got  %s\n  want %s", e->d_name,
                      mi_last_error(), expect);
        mi_weights_close(&w);
        n++;
    }
    closedir(d);
    ck_assert_int_ge(n, 30);
}
END_TEST

static void open_meta(mi_weights *w, const char *name) {
    char path[1024];
    meta_path(path, sizeof path, name);
    ck_assert_msg(mi_weights_open(w, path) == MI_OK, "%s", mi_last_error());
}

START_TEST(site_metadata_is_read)
{
    mi_weights w;
    mi_endoqc_sites s;
    open_meta(&w, "ok.safetensors");
    ck_assert_msg(mi_endoqc_sites_from_blob(&s, &w) == MI_OK, "%s", mi_last_error());
    ck_assert_int_eq(s.nsites, 8);
    ck_assert_str_eq(s.labels[2], "fundus_a");
    /* ORDER: oesophagus cardia antrum_a antrum_b bulb duodenum fundus_a fundus_b */
    static const int order[8] = { 0, 1, 4, 5, 6, 7, 2, 3 };
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(s.order[i], order[i]);
        ck_assert_int_eq(s.pos_of_cls[order[i]], i);
    }
    ck_assert_int_eq(s.ngroups, 2);
    ck_assert_str_eq(s.gname[0], "fundus");
    ck_assert_int_eq(s.gsize[0], 2);
    ck_assert_int_eq(s.gmember[0][0], 6);        /* preset positions, not class indices */
    ck_assert_int_eq(s.gmember[0][1], 7);
    ck_assert_str_eq(s.gname[1], "antrum");
    ck_assert_int_eq(s.gmember[1][0], 2);
    ck_assert(s.meta_min_frames && s.meta_min_prob && s.meta_threshold);
    ck_assert_int_eq(s.min_frames, 3);
    ck_assert_double_eq(s.min_prob, 0.25);
    ck_assert_int_eq(s.site_threshold, 5);
    mi_weights_close(&w);

    open_meta(&w, "ok_defaults.safetensors");
    ck_assert_msg(mi_endoqc_sites_from_blob(&s, &w) == MI_OK, "%s", mi_last_error());
    ck_assert_int_eq(s.ngroups, 0);
    ck_assert_int_eq(s.order[5], 5);
    ck_assert(!s.meta_min_frames && !s.meta_min_prob && !s.meta_threshold);
    ck_assert_int_eq(s.min_frames, 2);
    ck_assert_double_eq(s.min_prob, 0.5);
    ck_assert_int_eq(s.site_threshold, 4);       /* nsites - 4, as 22 of 26 */
    ck_assert_str_eq(s.groups_source, "standard");   /* no standard label: nothing applies, and it says so */
    ck_assert_msg(strstr(s.groups_warning, "no 'fundus' re-sampling") && strstr(s.groups_warning, "'fundus_gc'")
                  && strstr(s.groups_warning, "no 'antrum' re-sampling"), "%s", s.groups_warning);
    mi_weights_close(&w);

    open_meta(&w, "ok_odd_labels.safetensors");
    ck_assert_msg(mi_endoqc_sites_from_blob(&s, &w) == MI_OK, "%s", mi_last_error());
    ck_assert_str_eq(s.labels[0], "say \"ah\"");
    ck_assert_str_eq(s.labels[1], "back\\slash");
    ck_assert_int_eq(strlen(s.labels[2]), 63);
    ck_assert_int_eq(s.gsize[0], 3);
    mi_weights_close(&w);

    open_meta(&w, "ok_max_groups.safetensors");
    ck_assert_msg(mi_endoqc_sites_from_blob(&s, &w) == MI_OK, "%s", mi_last_error());
    ck_assert_int_eq(s.ngroups, MI_ENDOQC_MAX_GROUPS);
    mi_weights_close(&w);

    /* labels in this order: ... 2-5 antrum_gc..lc, 6-7 duodenum, 8-11 fundus_gc..lc */
    open_meta(&w, "ok_std_groups.safetensors");
    ck_assert_msg(mi_endoqc_sites_from_blob(&s, &w) == MI_OK, "%s", mi_last_error());
    ck_assert_str_eq(s.groups_source, "standard");
    ck_assert_str_eq(s.groups_warning, "");
    ck_assert_int_eq(s.ngroups, 2);
    ck_assert_str_eq(s.gname[0], "fundus");
    ck_assert_str_eq(s.gname[1], "antrum");
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(s.gmember[0][i], 8 + i);
        ck_assert_int_eq(s.gmember[1][i], 2 + i);
    }
    mi_weights_close(&w);

    open_meta(&w, "ok_std_no_fundus_lc.safetensors");   /* a group applies whole or not at all */
    ck_assert_msg(mi_endoqc_sites_from_blob(&s, &w) == MI_OK, "%s", mi_last_error());
    ck_assert_int_eq(s.ngroups, 1);
    ck_assert_str_eq(s.gname[0], "antrum");
    ck_assert_str_eq(s.groups_warning, "no 'fundus' re-sampling: the blob has no site_groups and no label 'fundus_lc'");
    mi_weights_close(&w);

    open_meta(&w, "ok_std_empty_groups.safetensors");   /* an explicit {} turns re-sampling off */
    ck_assert_msg(mi_endoqc_sites_from_blob(&s, &w) == MI_OK, "%s", mi_last_error());
    ck_assert_int_eq(s.ngroups, 0);
    ck_assert_str_eq(s.groups_source, "metadata");
    ck_assert_str_eq(s.groups_warning, "");
    mi_weights_close(&w);
}
END_TEST

START_TEST(batch_is_bounded)
{
    /* checked before the blob is even opened: the per-batch records are MI_ENDOQC_MAX_BATCH long */
    mi_endoqc_model *m = (mi_endoqc_model *)1;
    ck_assert_int_eq(mi_endoqc_model_open(&m, DEMO_BLOB, MI_ENDOQC_MAX_BATCH + 1, NULL, NULL), MI_ERR_ARG);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(mi_last_error(), "a batch of 257 frames; endoqc classifies 1..256 frames per network call"),
                  "%s", mi_last_error());
    ck_assert_int_eq(mi_endoqc_model_open(&m, DEMO_BLOB, 0, NULL, NULL), MI_ERR_ARG);
    ck_assert_int_eq(mi_endoqc_model_open(&m, DEMO_BLOB, 100000, NULL, NULL), MI_ERR_ARG);
}
END_TEST

/* ---- missing-site lists ---------------------------------------------------------------------- */

/* 64 sites, none seen, with 63-byte labels full of what JSON must escape */
static void odd_result(mi_endoqc_result *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->video, sizeof r->video, "exam \"1\".mp4");
    memset(r->video_sha256, 'a', 64);
    memset(r->model_sha256, 'b', 64);
    r->nsites = MI_ENDOQC_MAX_SITES;
    for (int i = 0; i < r->nsites; i++) {
        char *l = r->sites[i].label;
        for (int k = 0; k < 63; k++) l[k] = "\"\\x/"[(i + k) % 4];
        l[0] = (char)('A' + i % 26);
        l[1] = (char)('0' + i / 26);
        l[63] = 0;
        r->sites[i].first_ms = r->sites[i].last_ms = r->sites[i].best_ms = -1;
    }
    r->sites[5].seen = true;                      /* one seen: the list is not just every label */
    r->distinct = 1;
}

static void assert_missing(const cJSON *a, const mi_endoqc_result *r) {
    ck_assert_msg(cJSON_IsArray(a), "not an array");
    ck_assert_int_eq(cJSON_GetArraySize(a), r->nsites - 1);
    int k = 0;
    for (int i = 0; i < r->nsites; i++) {
        if (r->sites[i].seen) continue;
        const cJSON *x = cJSON_GetArrayItem(a, k++);
        ck_assert_msg(cJSON_IsString(x) && !strcmp(x->valuestring, r->sites[i].label), "entry %d", k - 1);
    }
}

START_TEST(missing_sites_are_json_whatever_the_labels)
{
    mi_endoqc_result *r = malloc(sizeof *r);
    odd_result(r);
    cJSON *a = mi_endoqc_missing_sites(r);
    assert_missing(a, r);
    cJSON_Delete(a);
    /* the report */
    char *json = mi_endoqc_report_json(r);
    ck_assert_ptr_nonnull(json);
    cJSON *doc = cJSON_Parse(json);
    ck_assert_msg(doc != NULL, "report is not JSON");
    assert_missing(cJSON_GetObjectItem(doc, "missing_sites"), r);
    cJSON_Delete(doc);
    /* the database: stored and found again, not cut at any length */
    char db_path[256];
    tmp_path(db_path, sizeof db_path, "missing.sqlite");
    unlink(db_path);
    mi_endoqc_db *db;
    ck_assert_msg(mi_endoqc_db_open(&db, db_path) == MI_OK, "%s", mi_last_error());
    int64_t id = 0, found;
    ck_assert_msg(mi_endoqc_db_add_exam(db, "b1", "exam", r, "settings", json, &id) == MI_OK, "%s", mi_last_error());
    bool complete;
    int distinct;
    cJSON *m = NULL;
    ck_assert_msg(mi_endoqc_db_find(db, r->video_sha256, r->model_sha256, "settings", &found, &complete, &distinct, &m) == MI_OK,
                  "%s", mi_last_error());
    ck_assert_int_eq(found, id);
    ck_assert_int_eq(distinct, 1);
    assert_missing(m, r);
    cJSON_Delete(m);
    /* nothing stored for other settings */
    ck_assert_int_eq(mi_endoqc_db_find(db, r->video_sha256, r->model_sha256, "other", &found, &complete, &distinct, &m), MI_OK);
    ck_assert_int_eq(found, 0);
    ck_assert_ptr_null(m);
    mi_endoqc_db_close(db);
    unlink(db_path);
    free(json);
    free(r);
}
END_TEST

/* ---- the shipped demo blob ------------------------------------------------------------------- */

START_TEST(demo_blob_version_can_be_updated)
{
    mi_weights w;
    ck_assert_msg(mi_weights_open(&w, DEMO_BLOB) == MI_OK, "%s", mi_last_error());
    const char *v = mi_weights_meta(&w, "model_version");
    ck_assert_ptr_nonnull(v);
    /* what `medinfer model update` does with the installed blob's version (pipelines/trust/update.c) */
    int cmp = 9;
    ck_assert_msg(mi_version_compare(v, v, &cmp) == MI_OK, "%s", mi_last_error());
    ck_assert_int_eq(cmp, 0);
    char newer[80];
    snprintf(newer, sizeof newer, "%s.1", v);
    ck_assert_int_eq(mi_version_compare(newer, v, &cmp), MI_OK);
    ck_assert_int_gt(cmp, 0);
    ck_assert_int_eq(mi_version_compare("2026.1", v, &cmp), MI_OK);
    ck_assert_int_lt(cmp, 0);
    /* classify and endoqc preprocess it as it was trained: crops resized straight to 64 px */
    ck_assert_str_eq(mi_weights_meta(&w, "resize"), "64");
    ck_assert_str_eq(mi_weights_meta(&w, "input_size"), "64");
    mi_endoqc_sites s;
    ck_assert_msg(mi_endoqc_sites_from_blob(&s, &w) == MI_OK, "%s", mi_last_error());
    ck_assert_int_eq(s.nsites, 26);
    ck_assert_int_eq(s.ngroups, 2);
    mi_weights_close(&w);
}
END_TEST

static Suite *suite(void) {
    av_log_set_level(AV_LOG_QUIET);
    Suite *s = suite_create("endoqc");
    TCase *tc = tcase_create("video");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, video_times_come_from_timestamps);
    tcase_add_test(tc, truncated_video_is_read_as_far_as_it_goes);
    tcase_add_test(tc, not_a_video_is_an_error_naming_the_file);
    tcase_add_test(tc, absurd_pixel_aspect_ratio_is_square);
    tcase_add_test(tc, real_h264_clip_decodes);
    tcase_add_test(tc, drift_rule_boundaries);
    tcase_add_test(tc, selfcheck_rule);
    tcase_add_test(tc, concealed_decoding_errors_are_damage);
    tcase_add_test(tc, decoder_thread_keeps_order_and_errors);
    tcase_add_test(tc, empty_file_and_directory_say_so);
    tcase_add_test(tc, site_metadata_corpus_is_refused_by_name);
    tcase_add_test(tc, site_metadata_is_read);
    tcase_add_test(tc, batch_is_bounded);
    tcase_add_test(tc, missing_sites_are_json_whatever_the_labels);
    tcase_add_test(tc, demo_blob_version_can_be_updated);
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(suite)
