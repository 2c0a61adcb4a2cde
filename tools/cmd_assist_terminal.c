/* tools/cmd_assist_terminal.c - `medinfer assist-terminal`: the capture terminal beside an
 * endoscope. Reads the video, picks target frames (pedal, freeze, automatic), drops frames the
 * quality rule would refuse, sends one frame at a time to the diagnosis server and draws its
 * answer on the frames shown after it; writes the overlaid MP4, an events log and serves the
 * live web view. The network work runs on threads of its own (pipelines/assist/terminal_net.h):
 * the video loop never waits for the server. docs/assist.md, "Terminal". */
#include "tools/cli.h"
#include "pipelines/assist/quality.h"
#include "pipelines/assist/terminal.h"
#include "pipelines/assist/terminal_net.h"
#include "pipelines/io/video.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libavutil/log.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

/* Defaults; the freeze and quality ones are calibrated on the real clip (docs/assist.md). */
#define DEFAULT_SIZE        480
#define DEFAULT_AUTO_K      5
#define DEFAULT_FREEZE_EPS  0.5
#define DEFAULT_FREEZE_N    8
#define DEFAULT_TIMEOUT_MS  1000
#define DEFAULT_HOLD_MS     500
#define JPEG_QUALITY        90
#define BACKOFF_MIN_MS      200
#define BACKOFF_MAX_MS      1000
#define WEB_FRAME_MS        100    /* the web view's frame at most this often */
#define SIDE_PERIOD_MS      1000   /* exam and findings refresh */

static const char usage[] =
    "usage: medinfer assist-terminal --server URL (--token T | --token-file F) --source SRC [options]\n"
    "       medinfer assist-terminal --calibrate --source SRC [--crop X,Y,W,H] [--size N] [--duration S]\n"
    "  --server URL      the diagnosis server, e.g. http://127.0.0.1:8080\n"
    "  --token T         this terminal's bearer token; --token-file F reads it from F (the first\n"
    "                    word of its first line that is not empty or a # comment)\n"
    "  --source SRC      a video file, a numbered image sequence (dir/%04d.png, see --fps), a V4L2\n"
    "                    device (/dev/videoN) or a network stream FFmpeg opens (rtsp://, http://, udp://)\n"
    "  --exam ID         the exam (default: the server's open exam for this terminal, asked again\n"
    "                    every second, so a new exam opened at the workstation is followed)\n"
    "  --trigger LIST    comma-separated: auto[:K] (a target at least every K-th frame, default K 5),\n"
    "                    freeze, pedal (default auto:5,freeze,pedal); pedal and freeze go before auto\n"
    "  --freeze-eps E    freeze: mean |luma change| of consecutive frames (32x32 cell means, 0..255)\n"
    "                    below E (default 0.5) ...\n"
    "  --freeze-frames N ... for N consecutive frames (default 8); one target per freeze\n"
    "  --pedal-fifo PATH a pedal as a FIFO: each line written to it is one press (created if absent)\n"
    "                    (also: Enter on stdin, or any key when stdin is a terminal; POST /pedal on --web)\n"
    "  --timeout-ms N    no answer within N ms: fault shown, next target after a back-off (default 1000)\n"
    "  --hold-ms N       an answer stays on the frames for N ms of video, or until the next (default 500)\n"
    "  --out F.mp4       the overlaid video, at the source's frame rate\n"
    "  --log F.jsonl     one JSON line per trigger, drop, request, answer, timeout and failure\n"
    "  --web PORT        the live web view on 127.0.0.1:PORT (0: any free port, printed on stderr)\n"
    "  --web-bind ADDR   listen on ADDR instead of 127.0.0.1\n"
    "  --web-port-file F write the web view's port to F once listening\n"
    "  --size N          frames shown and sent scaled to N pixels on the shorter side (default 480;\n"
    "                    0 keeps the decoded size)\n"
    "  --fps F           frame rate of an image sequence or asked of a device (default 25 / the device's)\n"
    "  --realtime        play a file at its frame rate (default for files and image sequences)\n"
    "  --no-realtime     as fast as frames decode (default for devices and network streams)\n"
    "  --duration S      stop after S seconds of video\n"
    "  --linger S        with --web: keep the web view up S seconds after the source ends (SIGINT or\n"
    "                    SIGTERM end it sooner); the MP4 and the summary are complete by then\n"
    "  --crop X,Y,W,H    use only this rectangle of the decoded frame (a capture card's picture\n"
    "                    around the endoscope's image), before --size scales it\n"
    "  --calibrate       no server: one JSON line per frame on stdout with the freeze measure and the\n"
    "                    quality rule's measures, to choose thresholds for a scope (docs/assist.md)\n"
    "  --quiet           no summary line on stderr\n"
    "  --luma-lo V --luma-hi V --sobel-min V --glare-level N --glare-max F\n"
    "                    frames outside these are not sent (defaults 30, 220, 8, 235, 0.15: the\n"
    "                    server's, pipelines/assist/quality.h; set both sides alike)\n"
    "Summary (JSON) on stdout at the end.\n"
    "exit: 0 the source played to its end or --duration, 1 the source could not be read, 2 usage.\n";

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* nanosleep, not usleep: a gap of over 71 minutes between two frames' timestamps is more
 * microseconds than usleep's 32-bit argument holds */
static void sleep_ms(double ms) {
    const struct timespec ts = { .tv_sec = (time_t)(ms / 1e3), .tv_nsec = (long)(fmod(ms, 1e3) * 1e6) };
    nanosleep(&ts, NULL);
}

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) { (void)sig; stop_requested = 1; }

/* ---- state shared with the side thread (exam lookup, findings) ---- */

typedef struct {
    pthread_mutex_t mu;
    pthread_t       thread;
    bool            stop, follow_current, have_thread;
    char            server[512], token[512];
    long            timeout_ms;
    char            exam_id[128], exam_number[64], terminal[64];
    char            exam_note[160];    /* why there is no exam, when there is none */
    mi_assist_web  *web;
} side_state;

static void side_set_exam(side_state *s, const cJSON *exam) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(exam, "exam_id");
    const cJSON *num = cJSON_GetObjectItemCaseSensitive(exam, "exam_number");
    const cJSON *term = cJSON_GetObjectItemCaseSensitive(exam, "terminal");
    pthread_mutex_lock(&s->mu);
    if (cJSON_IsString(id)) snprintf(s->exam_id, sizeof s->exam_id, "%s", id->valuestring);
    if (cJSON_IsString(num)) snprintf(s->exam_number, sizeof s->exam_number, "%s", num->valuestring);
    if (cJSON_IsString(term)) snprintf(s->terminal, sizeof s->terminal, "%s", term->valuestring);
    s->exam_note[0] = 0;
    pthread_mutex_unlock(&s->mu);
}

/* One round: the exam (current, or the one given), then its findings for the web view. */
static void side_round(side_state *s) {
    char url[1024], exam[128];
    mi_http_reply r;
    pthread_mutex_lock(&s->mu);
    snprintf(exam, sizeof exam, "%s", s->exam_id);
    pthread_mutex_unlock(&s->mu);
    if (s->follow_current) snprintf(url, sizeof url, "%s/v1/exams/current", s->server);
    else snprintf(url, sizeof url, "%s/v1/exams/%s", s->server, exam);
    mi_http_get(&r, url, s->token, s->timeout_ms);
    cJSON *j = r.code == 200 && r.body ? cJSON_Parse(r.body) : NULL;
    if (cJSON_IsObject(j) && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "exam_id"))) {
        side_set_exam(s, j);
    } else if (s->follow_current) {
        pthread_mutex_lock(&s->mu);
        if (r.code == 404) s->exam_id[0] = 0;   /* closed at the workstation: stop sending */
        snprintf(s->exam_note, sizeof s->exam_note, "%s", r.code == 404 ? "no open exam for this terminal"
                 : r.code ? "exam lookup refused" : "server unreachable");
        pthread_mutex_unlock(&s->mu);
    }
    cJSON_Delete(j);
    mi_http_reply_free(&r);

    pthread_mutex_lock(&s->mu);
    snprintf(exam, sizeof exam, "%s", s->exam_id);
    pthread_mutex_unlock(&s->mu);
    if (!s->web || !exam[0]) return;
    snprintf(url, sizeof url, "%s/v1/exams/%s/findings", s->server, exam);
    mi_http_get(&r, url, s->token, s->timeout_ms);
    /* re-printed from the parse: the page gets JSON whatever the server sent */
    j = r.code == 200 && r.body ? cJSON_Parse(r.body) : NULL;
    if (cJSON_IsObject(j)) {
        char *txt = cJSON_PrintUnformatted(j);
        if (txt) mi_assist_web_set_findings(s->web, txt);
        free(txt);
    }
    cJSON_Delete(j);
    mi_http_reply_free(&r);
}

static void *side_main(void *arg) {
    side_state *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        bool stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop) break;
        double t0 = now_ms();
        side_round(s);
        while (now_ms() - t0 < SIDE_PERIOD_MS) {
            pthread_mutex_lock(&s->mu);
            stop = s->stop;
            pthread_mutex_unlock(&s->mu);
            if (stop) break;
            usleep(20000);
        }
    }
    return NULL;
}

/* ---- events log ---- */

typedef struct { FILE *f; } event_log;

static cJSON *event(const char *kind, int64_t frame, int64_t t_ms) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "event", kind);
    cJSON_AddNumberToObject(e, "frame", (double)frame);
    cJSON_AddNumberToObject(e, "t_ms", (double)t_ms);
    return e;
}

static void emit(event_log *l, cJSON *e) {
    if (l->f) {
        char *s = cJSON_PrintUnformatted(e);
        if (s) { fprintf(l->f, "%s\n", s); fflush(l->f); }
        free(s);
    }
    cJSON_Delete(e);
}

/* ---- pedal inputs ---- */

typedef struct {
    int  fifo_fd;
    bool stdin_on, stdin_tty;
    int  stdin_flags;        /* to restore: the descriptor is shared with the shell that started us */
    struct termios saved;
} pedal_in;

/* Presses waiting on stdin and the FIFO (never blocks). */
static int pedal_read(pedal_in *p) {
    int n = 0;
    char buf[256];
    if (p->stdin_on) {
        ssize_t k;
        while ((k = read(0, buf, sizeof buf)) > 0)
            for (ssize_t i = 0; i < k; i++) n += p->stdin_tty ? 1 : buf[i] == '\n';
        if (k == 0) p->stdin_on = false;   /* EOF (stdin is /dev/null or closed): nothing more */
    }
    if (p->fifo_fd >= 0) {
        ssize_t k;
        while ((k = read(p->fifo_fd, buf, sizeof buf)) > 0)
            for (ssize_t i = 0; i < k; i++) n += buf[i] == '\n';
    }
    return n;
}

/* ---- JPEG in memory ---- */

typedef struct { uint8_t *p; size_t n, cap; bool failed; } membuf;

static void mem_write(void *ctx, void *data, int size) {
    membuf *m = ctx;
    if (m->failed || size <= 0) return;
    if (m->n + (size_t)size > m->cap) {
        size_t cap = (m->n + (size_t)size) * 2;
        uint8_t *q = realloc(m->p, cap);
        if (!q) { m->failed = true; return; }
        m->p = q;
        m->cap = cap;
    }
    memcpy(m->p + m->n, data, (size_t)size);
    m->n += (size_t)size;
}

static bool encode_jpeg(membuf *m, const uint8_t *rgb, int w, int h) {
    memset(m, 0, sizeof *m);
    if (!stbi_write_jpg_to_func(mem_write, m, w, h, 3, rgb, JPEG_QUALITY) || m->failed) {
        free(m->p);
        memset(m, 0, sizeof *m);
        return false;
    }
    return true;
}

/* ---- options ---- */

typedef struct {
    const char *server, *token, *token_file, *source, *exam, *trigger, *pedal_fifo, *out, *log;
    const char *web_bind, *web_port_file;
    int   web_port;            /* -1: no web view */
    int   size, timeout_ms, hold_ms, realtime;   /* realtime -1: by source kind */
    mi_quality_thresholds quality;               /* what is dropped before sending */
    double fps, duration_s, linger_s;
    mi_trigger_config trig;
    bool  quiet, calibrate;
    int   crop[4];             /* x, y, w, h in decoded pixels; w 0: the whole frame */
} opts;

static int parse_trigger(const char *s, mi_trigger_config *t) {
    t->pedal = t->freeze = false;
    t->auto_k = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!strcmp(tok, "pedal")) t->pedal = true;
        else if (!strcmp(tok, "freeze")) t->freeze = true;
        else if (!strcmp(tok, "auto")) t->auto_k = DEFAULT_AUTO_K;
        else if (!strncmp(tok, "auto:", 5)) {
            if (mi_cli_int("assist-terminal", "--trigger auto:K", tok + 5, 1, 100000, &t->auto_k)) return -1;
        } else {
            fprintf(stderr, "medinfer assist-terminal: --trigger '%s': unknown trigger '%s' (auto[:K], freeze, pedal)\n", s, tok);
            return -1;
        }
    }
    if (!t->pedal && !t->freeze && !t->auto_k) {
        fprintf(stderr, "medinfer assist-terminal: --trigger '%s': names no trigger\n", s);
        return -1;
    }
    return 0;
}

static int read_token_file(const char *path, char *out, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "medinfer assist-terminal: --token-file %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[1024];
    out[0] = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || !*p) continue;
        size_t n = strcspn(p, " \t\r\n");
        if (n >= cap) break;
        memcpy(out, p, n);
        out[n] = 0;
        break;
    }
    fclose(f);
    if (!out[0]) {
        fprintf(stderr, "medinfer assist-terminal: --token-file %s: no token in it (or one over %zu bytes)\n", path, cap - 1);
        return -1;
    }
    return 0;
}

static int parse_opts(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->web_port = -1;
    o->size = DEFAULT_SIZE;
    o->timeout_ms = DEFAULT_TIMEOUT_MS;
    o->hold_ms = DEFAULT_HOLD_MS;
    o->realtime = -1;
    o->trigger = "auto:5,freeze,pedal";
    o->trig.freeze_eps = DEFAULT_FREEZE_EPS;
    o->trig.freeze_n = DEFAULT_FREEZE_N;
    mi_quality_defaults(&o->quality);
    const char *C = "assist-terminal";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define VAL() do { if (!v) { fprintf(stderr, "medinfer %s: %s needs a value\n", C, a); return -1; } i++; } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(usage, stdout); return 1; }
        else if (!strcmp(a, "--server")) { VAL(); o->server = v; }
        else if (!strcmp(a, "--token")) { VAL(); o->token = v; }
        else if (!strcmp(a, "--token-file")) { VAL(); o->token_file = v; }
        else if (!strcmp(a, "--source")) { VAL(); o->source = v; }
        else if (!strcmp(a, "--exam")) { VAL(); o->exam = v; }
        else if (!strcmp(a, "--trigger")) { VAL(); o->trigger = v; }
        else if (!strcmp(a, "--pedal-fifo")) { VAL(); o->pedal_fifo = v; }
        else if (!strcmp(a, "--out")) { VAL(); o->out = v; }
        else if (!strcmp(a, "--log")) { VAL(); o->log = v; }
        else if (!strcmp(a, "--web-bind")) { VAL(); o->web_bind = v; }
        else if (!strcmp(a, "--web-port-file")) { VAL(); o->web_port_file = v; }
        else if (!strcmp(a, "--web")) { VAL(); if (mi_cli_int(C, a, v, 0, 65535, &o->web_port)) return -1; }
        else if (!strcmp(a, "--size")) { VAL(); if (mi_cli_int(C, a, v, 0, 4320, &o->size)) return -1; }
        else if (!strcmp(a, "--timeout-ms")) { VAL(); if (mi_cli_int(C, a, v, 1, 600000, &o->timeout_ms)) return -1; }
        else if (!strcmp(a, "--hold-ms")) { VAL(); if (mi_cli_int(C, a, v, 0, 600000, &o->hold_ms)) return -1; }
        else if (!strcmp(a, "--freeze-frames")) { VAL(); if (mi_cli_int(C, a, v, 1, 100000, &o->trig.freeze_n)) return -1; }
        else if (!strcmp(a, "--freeze-eps")) { VAL(); if (mi_cli_double(C, a, v, 0, 255, &o->trig.freeze_eps)) return -1; }
        else if (!strcmp(a, "--fps")) { VAL(); if (mi_cli_double(C, a, v, 0.1, 1000, &o->fps)) return -1; }
        else if (!strcmp(a, "--duration")) { VAL(); if (mi_cli_double(C, a, v, 0.001, 1e7, &o->duration_s)) return -1; }
        else if (!strcmp(a, "--linger")) { VAL(); if (mi_cli_double(C, a, v, 0, 1e7, &o->linger_s)) return -1; }
        else if (!strcmp(a, "--luma-lo")) { VAL(); if (mi_cli_double(C, a, v, 0, 255, &o->quality.luma_lo)) return -1; }
        else if (!strcmp(a, "--luma-hi")) { VAL(); if (mi_cli_double(C, a, v, 0, 255, &o->quality.luma_hi)) return -1; }
        else if (!strcmp(a, "--sobel-min")) { VAL(); if (mi_cli_double(C, a, v, 0, 1020, &o->quality.sobel_min)) return -1; }
        else if (!strcmp(a, "--glare-max")) { VAL(); if (mi_cli_double(C, a, v, 0, 1, &o->quality.glare_max_frac)) return -1; }
        else if (!strcmp(a, "--glare-level")) {
            int n;
            VAL();
            if (mi_cli_int(C, a, v, 0, 255, &n)) return -1;
            o->quality.glare_level = n;
        }
        else if (!strcmp(a, "--realtime")) o->realtime = 1;
        else if (!strcmp(a, "--no-realtime")) o->realtime = 0;
        else if (!strcmp(a, "--quiet")) o->quiet = true;
        else if (!strcmp(a, "--calibrate")) o->calibrate = true;
        else if (!strcmp(a, "--crop")) {
            VAL();
            char *end;
            const char *p = v;
            for (int k = 0; k < 4; k++) {
                errno = 0;
                long x = strtol(p, &end, 10);
                if (errno || end == p || x < 0 || x > 32768 || (k >= 2 && x < 8) || *end != (k < 3 ? ',' : 0)) {
                    fprintf(stderr, "medinfer %s: --crop '%s': expected X,Y,W,H in pixels (W, H >= 8)\n", C, v);
                    return -1;
                }
                o->crop[k] = (int)x;
                p = end + 1;
            }
        }
        else { fprintf(stderr, "medinfer %s: unknown option '%s'\n", C, a); return -1; }
#undef VAL
    }
    if (o->calibrate) {
        if (!o->source) { fprintf(stderr, "medinfer %s: --calibrate needs --source\n", C); return -1; }
        if (parse_trigger("freeze", &o->trig)) return -1;
        return 0;
    }
    if (!o->server || !o->source || (!o->token == !o->token_file)) {
        fprintf(stderr, "medinfer %s: --server, --source and one of --token / --token-file are required\n", C);
        return -1;
    }
    if (strncmp(o->server, "http://", 7) && strncmp(o->server, "https://", 8)) {
        fprintf(stderr, "medinfer %s: --server '%s': expected an http:// or https:// URL\n", C, o->server);
        return -1;
    }
    if (o->exam && (!o->exam[0] || strlen(o->exam) >= 100)) {
        fprintf(stderr, "medinfer %s: --exam '%s': expected an exam id of 1 to 99 characters\n", C, o->exam);
        return -1;
    }
    if (parse_trigger(o->trigger, &o->trig)) return -1;
    return 0;
}

static bool live_source(const char *src) {
    return !strncmp(src, "/dev/", 5) || (strstr(src, "://") && strncmp(src, "file://", 7));
}

static void add_quality(cJSON *e, const mi_video_frame *fr, const mi_quality_thresholds *th) {
    mi_quality q;
    if (mi_quality_measure(fr->px, fr->w, fr->h, (size_t)fr->w * 3, th, &q) != MI_OK) return;
    cJSON_AddNumberToObject(e, "luma", round(q.mean_luma * 100) / 100);
    cJSON_AddNumberToObject(e, "sobel_x", round(q.sobel_x * 100) / 100);
    cJSON_AddNumberToObject(e, "sobel_y", round(q.sobel_y * 100) / 100);
    cJSON_AddNumberToObject(e, "glare", round(q.glare_frac * 1e4) / 1e4);
    cJSON_AddBoolToObject(e, "judged", q.judged);
    if (!q.judged) cJSON_AddStringToObject(e, "reason", q.reason);
}

/* The frame the terminal works on: the --crop rectangle of the decoded frame, scaled so its
 * shorter side is --size. Without --crop the decoder scales (cheaper). */
typedef struct { uint8_t *crop, *scaled; size_t crop_cap, scaled_cap; } frame_bufs;

static mi_status prepare_frame(const opts *o, mi_video_frame *fr, frame_bufs *b) {
    if (!o->crop[2]) return MI_OK;
    const int x = o->crop[0], y = o->crop[1], w = o->crop[2], h = o->crop[3];
    if (x + w > fr->w || y + h > fr->h)
        return MI_FAIL(MI_ERR_ARG, "--crop %d,%d,%d,%d: outside the %dx%d frame", x, y, w, h, fr->w, fr->h);
    size_t need = (size_t)w * h * 3;
    if (need > b->crop_cap) {
        uint8_t *p = realloc(b->crop, need);
        if (!p) return MI_FAIL(MI_ERR_NOMEM, "out of memory for a %dx%d crop", w, h);
        b->crop = p;
        b->crop_cap = need;
    }
    for (int r = 0; r < h; r++)
        memcpy(b->crop + (size_t)r * w * 3, fr->px + ((size_t)(y + r) * fr->w + x) * 3, (size_t)w * 3);
    fr->px = b->crop;
    fr->w = w;
    fr->h = h;
    if (o->size <= 0) return MI_OK;
    int ow = w <= h ? o->size : (int)lround((double)w * o->size / h);
    int oh = w <= h ? (int)lround((double)h * o->size / w) : o->size;
    need = (size_t)ow * oh * 3;
    if (need > b->scaled_cap) {
        uint8_t *p = realloc(b->scaled, need);
        if (!p) return MI_FAIL(MI_ERR_NOMEM, "out of memory for a %dx%d frame", ow, oh);
        b->scaled = p;
        b->scaled_cap = need;
    }
    mi_status st = mi_rgb_resize(b->scaled, ow, oh, b->crop, w, h);
    if (st != MI_OK) return st;
    fr->px = b->scaled;
    fr->w = ow;
    fr->h = oh;
    return MI_OK;
}

/* --calibrate: the measures the thresholds are set on, one line per frame, no server. */
static int calibrate(const opts *o) {
    const char *C = "assist-terminal";
    mi_video *vid = NULL;
    frame_bufs fb = { 0 };
    int rc = MI_EXIT_OK;
    if (mi_video_open_source(&vid, o->source, o->crop[2] ? 0 : o->size, o->fps) != MI_OK) return mi_cli_error(C);
    mi_trigger trig;
    mi_trigger_init(&trig, &o->trig);
    int64_t t0 = -1;
    for (;;) {
        mi_video_frame fr;
        bool got;
        if (mi_video_read(vid, &fr, &got) != MI_OK) { rc = mi_cli_error(C); break; }
        if (!got) break;
        if (t0 < 0) t0 = fr.t_ms;
        const int64_t t = fr.t_ms - t0;
        if (o->duration_s > 0 && t >= (int64_t)(o->duration_s * 1000)) break;
        if (prepare_frame(o, &fr, &fb) != MI_OK) { rc = mi_cli_error(C); break; }
        mi_trigger_kind k = mi_trigger_step(&trig, fr.index, fr.px, fr.w, fr.h, NULL, true);
        cJSON *e = event("frame", fr.index, t);
        cJSON_AddNumberToObject(e, "w", fr.w);
        cJSON_AddNumberToObject(e, "h", fr.h);
        if (trig.last_mad >= 0) cJSON_AddNumberToObject(e, "mad", round(trig.last_mad * 1e4) / 1e4);
        cJSON_AddNumberToObject(e, "still", trig.still);
        if (k == MI_TRIG_FREEZE) cJSON_AddBoolToObject(e, "freeze", true);
        add_quality(e, &fr, &o->quality);
        char *txt = cJSON_PrintUnformatted(e);
        if (txt) printf("%s\n", txt);
        free(txt);
        cJSON_Delete(e);
    }
    mi_video_close(vid);
    free(fb.crop);
    free(fb.scaled);
    return rc;
}

/* p-th percentile (nearest rank) of n values, sorted in place */
static int cmp_d(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static double pct(double *v, int n, double p) {
    if (n == 0) return -1;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int k = (int)ceil(p / 100.0 * n) - 1;
    return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

int cmd_assist_terminal(int argc, char **argv) {
    opts o;
    int pr = parse_opts(argc, argv, &o);
    if (pr) {
        if (pr < 0) fputs(usage, stderr);
        return pr > 0 ? MI_EXIT_OK : MI_EXIT_USAGE;
    }
    if (o.calibrate) return calibrate(&o);
    const char *C = "assist-terminal";
    char token[512];
    if (o.token_file) {
        if (read_token_file(o.token_file, token, sizeof token)) return MI_EXIT_USAGE;
    } else {
        if (strlen(o.token) >= sizeof token) { fprintf(stderr, "medinfer %s: --token too long\n", C); return MI_EXIT_USAGE; }
        snprintf(token, sizeof token, "%s", o.token);
    }
    av_log_set_level(AV_LOG_ERROR);

    int rc = MI_EXIT_OK;
    mi_video *vid = NULL;
    mi_video_writer *vw = NULL;
    mi_assist_client *cl = NULL;
    mi_assist_web *web = NULL;
    event_log log = { NULL };
    pedal_in ped = { .fifo_fd = -1, .stdin_flags = -1 };
    side_state side;
    memset(&side, 0, sizeof side);
    pthread_mutex_init(&side.mu, NULL);
    mi_image shown = { NULL, 0, 0 };
    frame_bufs fb = { 0 };
    double *rtts = NULL;
    int nrtt = 0, caprtt = 0;

    if (mi_video_open_source(&vid, o.source, o.crop[2] ? 0 : o.size, o.fps) != MI_OK) { rc = mi_cli_error(C); goto done; }
    const mi_video_info *vi = mi_video_get_info(vid);
    const bool realtime = o.realtime >= 0 ? o.realtime : !live_source(o.source);
    if (o.log && !(log.f = fopen(o.log, "w"))) {
        fprintf(stderr, "medinfer %s: --log %s: %s\n", C, o.log, strerror(errno));
        rc = MI_EXIT_FAIL;
        goto done;
    }
    if (o.pedal_fifo) {
        if (mkfifo(o.pedal_fifo, 0600) != 0 && errno != EEXIST) {
            fprintf(stderr, "medinfer %s: --pedal-fifo %s: %s\n", C, o.pedal_fifo, strerror(errno));
            rc = MI_EXIT_FAIL;
            goto done;
        }
        /* read-write: the FIFO stays open between writers, so a pedal program may come and go */
        if ((ped.fifo_fd = open(o.pedal_fifo, O_RDWR | O_NONBLOCK)) < 0) {
            fprintf(stderr, "medinfer %s: --pedal-fifo %s: %s\n", C, o.pedal_fifo, strerror(errno));
            rc = MI_EXIT_FAIL;
            goto done;
        }
    }
    if (o.trig.pedal) {
        ped.stdin_on = true;
        ped.stdin_tty = isatty(0);
        if (ped.stdin_tty && tcgetattr(0, &ped.saved) == 0) {
            struct termios t = ped.saved;
            t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);   /* one key, one press: no Enter needed */
            tcsetattr(0, TCSANOW, &t);
        } else {
            ped.stdin_tty = false;
        }
        ped.stdin_flags = fcntl(0, F_GETFL);
        if (ped.stdin_flags >= 0) fcntl(0, F_SETFL, ped.stdin_flags | O_NONBLOCK);
    }
    if (o.web_port >= 0) {
        if (mi_assist_web_start(&web, o.web_bind, o.web_port) != MI_OK) { rc = mi_cli_error(C); goto done; }
        if (!o.quiet) fprintf(stderr, "medinfer %s: web view on http://%s:%d/\n", C, o.web_bind ? o.web_bind : "127.0.0.1",
                              mi_assist_web_port(web));
        if (o.web_port_file) {
            FILE *pf = fopen(o.web_port_file, "w");
            if (!pf) {
                fprintf(stderr, "medinfer %s: --web-port-file %s: %s\n", C, o.web_port_file, strerror(errno));
                rc = MI_EXIT_FAIL;
                goto done;
            }
            fprintf(pf, "%d\n", mi_assist_web_port(web));
            fclose(pf);
        }
    }
    if (mi_assist_client_start(&cl, o.server, token, o.timeout_ms) != MI_OK) { rc = mi_cli_error(C); goto done; }
    snprintf(side.server, sizeof side.server, "%s", o.server);
    { size_t n = strlen(side.server); while (n && side.server[n - 1] == '/') side.server[--n] = 0; }
    snprintf(side.token, sizeof side.token, "%s", token);
    side.timeout_ms = o.timeout_ms;
    side.follow_current = !o.exam;
    side.web = web;
    if (web && mi_assist_web_set_server(web, side.server, token, o.timeout_ms) != MI_OK) { rc = mi_cli_error(C); goto done; }
    if (o.exam) snprintf(side.exam_id, sizeof side.exam_id, "%s", o.exam);
    else snprintf(side.exam_note, sizeof side.exam_note, "looking up the open exam");
    side_round(&side);   /* the exam before the first frame, when the server is there */
    if (pthread_create(&side.thread, NULL, side_main, &side) == 0) side.have_thread = true;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);

    mi_trigger trig;
    mi_trigger_init(&trig, &o.trig);
    const mi_quality_thresholds qth = o.quality;
    int64_t status_until_ms = -1;
    mi_assist_answer held;           /* the answer on screen */
    bool have_held = false;
    int64_t held_until_ms = -1;
    char fault[200] = "", status[200] = "";
    double backoff_ms = 0, next_send_ms = 0, last_web_ms = -1e9;
    int pedal = 0;
    int64_t frames = 0, targets[4] = { 0 }, sent = 0, answered = 0, timeouts = 0, failed = 0,
            not_judged = 0, alerts = 0, box_frames = 0, mismatched = 0;
    cJSON *drops = cJSON_CreateObject();
    double wall0 = now_ms();
    int64_t t0 = -1, last_t = 0;
    const int out_fps = vi->fps > 0 ? (int)lrint(vi->fps) : o.fps > 0 ? (int)lrint(o.fps) : 25;

    for (;;) {
        if (stop_requested) break;
        mi_video_frame fr;
        bool got;
        if (mi_video_read(vid, &fr, &got) != MI_OK) { rc = mi_cli_error(C); break; }
        if (!got) break;
        if (prepare_frame(&o, &fr, &fb) != MI_OK) { rc = mi_cli_error(C); break; }
        if (t0 < 0) t0 = fr.t_ms;
        const int64_t t = fr.t_ms - t0;
        last_t = t;
        if (o.duration_s > 0 && t >= (int64_t)(o.duration_s * 1000)) break;
        if (realtime) {
            double wait = wall0 + (double)t - now_ms();
            if (wait > 0) sleep_ms(wait);
        }
        frames++;

        /* the answer to the request in flight, if it came */
        mi_req_result res;
        if (mi_assist_client_poll(cl, &res)) {
            cJSON *e = event(res.state == MI_REQ_ANSWER ? "answer" : res.reply.timed_out ? "timeout" : "failure",
                             res.frame, res.t_ms);
            cJSON_AddNumberToObject(e, "shown_frame", (double)fr.index);
            cJSON_AddStringToObject(e, "trigger", res.trigger);
            cJSON_AddNumberToObject(e, "rtt_ms", round(res.rtt_ms * 10) / 10);
            bool ok = false;
            if (res.state == MI_REQ_ANSWER) {
                mi_assist_answer a;
                /* the exam the frame went to, not the current one: the workstation may have
                 * opened the next exam while the answer was on its way */
                const char *want = res.exam_id;
                if (mi_assist_answer_parse(&a, res.reply.body, res.reply.len) != MI_OK) {
                    cJSON_ReplaceItemInObject(e, "event", cJSON_CreateString("failure"));
                    cJSON_AddStringToObject(e, "error", mi_last_error());
                    snprintf(fault, sizeof fault, "unreadable answer");
                    failed++;
                } else {
                    cJSON_AddStringToObject(e, "exam_id", a.exam_id);
                    cJSON_AddBoolToObject(e, "judged", a.judged);
                    if (a.reason[0]) cJSON_AddStringToObject(e, "reason", a.reason);
                    cJSON_AddNumberToObject(e, "lesions", a.n_total);
                    cJSON_AddBoolToObject(e, "high_risk", a.high_risk);
                    cJSON *boxes = cJSON_AddArrayToObject(e, "boxes");
                    for (int i = 0; i < a.n; i++) {
                        cJSON *b = cJSON_CreateObject();
                        cJSON_AddStringToObject(b, "type", a.les[i].type);
                        cJSON_AddNumberToObject(b, "score", round(a.les[i].score * 1e4) / 1e4);
                        cJSON_AddItemToObject(b, "box", cJSON_CreateFloatArray(a.les[i].box, 4));
                        cJSON_AddItemToArray(boxes, b);
                    }
                    if (a.server_ms >= 0) cJSON_AddNumberToObject(e, "server_ms", a.server_ms);
                    cJSON *fids = cJSON_Parse(res.reply.body);
                    cJSON *fi = cJSON_DetachItemFromObjectCaseSensitive(fids, "finding_ids");
                    if (fi) cJSON_AddItemToObject(e, "finding_ids", fi);
                    cJSON_Delete(fids);
                    /* an answer for another exam is never drawn: that would show one patient's
                     * finding on another's video */
                    if (strcmp(a.exam_id, want)) {
                        cJSON_ReplaceItemInObject(e, "event", cJSON_CreateString("failure"));
                        cJSON_AddStringToObject(e, "error", "answer names another exam than the one sent");
                        snprintf(fault, sizeof fault, "answer for another exam");
                        mismatched++;
                        failed++;
                    } else {
                        ok = true;
                        answered++;
                        held = a;
                        have_held = true;
                        held_until_ms = t + o.hold_ms;
                        status[0] = 0;
                        status_until_ms = held_until_ms;
                        if (!a.judged) {
                            not_judged++;
                            snprintf(status, sizeof status, "not judged: %.150s", a.reason);
                        }
                        if (a.high_risk && a.n > 0) {
                            const mi_assist_lesion *h = &a.les[0];   /* as the banner says */
                            for (int i = 0; i < a.n; i++)
                                if (a.les[i].high_risk) { h = &a.les[i]; break; }
                            alerts++;
                            fprintf(stderr, "\a");
                            fprintf(stderr, "medinfer %s: HIGH RISK %s %.2f at %.1f s (exam %s)\n", C,
                                    h->type, h->score, res.t_ms / 1000.0, a.exam_id);
                        }
                    }
                }
            } else {
                if (res.reply.code) {
                    cJSON_AddNumberToObject(e, "http", (double)res.reply.code);
                    cJSON *ej = res.reply.body ? cJSON_Parse(res.reply.body) : NULL;
                    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(ej, "error");
                    cJSON_AddStringToObject(e, "error", cJSON_IsString(msg) ? msg->valuestring : "");
                    snprintf(fault, sizeof fault, "server answered %ld%s%s", res.reply.code,
                             cJSON_IsString(msg) ? ": " : "", cJSON_IsString(msg) ? msg->valuestring : "");
                    cJSON_Delete(ej);
                } else {
                    cJSON_AddStringToObject(e, "error", res.reply.error);
                    if (res.reply.timed_out) snprintf(fault, sizeof fault, "no answer in %d ms", o.timeout_ms);
                    else snprintf(fault, sizeof fault, "server unreachable");
                }
                if (res.reply.timed_out) timeouts++;
                else failed++;
            }
            if (ok) {
                fault[0] = 0;
                backoff_ms = 0;
                next_send_ms = 0;
                if (nrtt == caprtt) {
                    caprtt = caprtt ? 2 * caprtt : 256;
                    double *q = realloc(rtts, (size_t)caprtt * sizeof *q);
                    if (q) rtts = q; else caprtt = nrtt;
                }
                if (nrtt < caprtt) rtts[nrtt++] = res.rtt_ms;
            } else {
                /* back off, doubling; a 503's Retry-After is the least wait */
                backoff_ms = backoff_ms ? fmin(2 * backoff_ms, BACKOFF_MAX_MS) : BACKOFF_MIN_MS;
                double wait = fmax(backoff_ms, res.reply.retry_after_s * 1000.0);
                next_send_ms = now_ms() + wait;
                cJSON_AddNumberToObject(e, "retry_in_ms", round(wait));
                if (!o.quiet) fprintf(stderr, "medinfer %s: frame %lld: %s; retry in %.0f ms\n", C,
                                      (long long)res.frame, fault, wait);
            }
            emit(&log, e);
            mi_http_reply_free(&res.reply);
        }
        if (have_held && t > held_until_ms) have_held = false;

        /* target frame? */
        pedal += pedal_read(&ped);
        if (web) pedal += mi_assist_web_take_pedal(web);
        char exam[128], exam_number[64], terminal[64], note[160];
        pthread_mutex_lock(&side.mu);
        snprintf(exam, sizeof exam, "%s", side.exam_id);
        snprintf(exam_number, sizeof exam_number, "%s", side.exam_number);
        snprintf(terminal, sizeof terminal, "%s", side.terminal);
        snprintf(note, sizeof note, "%s", side.exam_note);
        pthread_mutex_unlock(&side.mu);
        /* an answer of the previous exam is not drawn once the next exam is open */
        if (have_held && strcmp(held.exam_id, exam)) have_held = false;
        const bool free_to_send = !mi_assist_client_busy(cl) && now_ms() >= next_send_ms;
        mi_trigger_kind k = mi_trigger_step(&trig, fr.index, fr.px, fr.w, fr.h, &pedal, free_to_send);
        if (k != MI_TRIG_NONE) {
            targets[k]++;
            cJSON *e = event("trigger", fr.index, t);
            cJSON_AddStringToObject(e, "trigger", mi_trigger_name(k));
            if (k == MI_TRIG_FREEZE) cJSON_AddNumberToObject(e, "mad", round(trig.last_mad * 1000) / 1000);
            emit(&log, e);
            membuf jb;
            mi_quality q;
            /* no exam: nothing is sent, whatever the frame looks like */
            q.judged = true;
            if (exam[0] && mi_quality_measure(fr.px, fr.w, fr.h, (size_t)fr.w * 3, &qth, &q) != MI_OK) {
                fprintf(stderr, "medinfer %s: frame %lld: %s\n", C, (long long)fr.index, mi_last_error());
                q.judged = false;
                snprintf(q.reason, sizeof q.reason, "unmeasurable: %s", mi_last_error());
            }
            if (!exam[0]) {
                cJSON *d = event("dropped", fr.index, t);
                cJSON_AddStringToObject(d, "trigger", mi_trigger_name(k));
                cJSON_AddStringToObject(d, "reason", note[0] ? note : "no open exam");
                emit(&log, d);
                cJSON *c = cJSON_GetObjectItemCaseSensitive(drops, "no exam");
                if (c) cJSON_SetNumberValue(c, c->valuedouble + 1);
                else cJSON_AddNumberToObject(drops, "no exam", 1);
            } else if (!q.judged) {
                /* counted by the rule's name, the part of the reason before its numbers */
                char key[64];
                snprintf(key, sizeof key, "%.*s", (int)strcspn(q.reason, ":"), q.reason);
                cJSON *d = event("dropped", fr.index, t);
                cJSON_AddStringToObject(d, "trigger", mi_trigger_name(k));
                cJSON_AddStringToObject(d, "reason", q.reason);
                emit(&log, d);
                cJSON *c = cJSON_GetObjectItemCaseSensitive(drops, key);
                if (c) cJSON_SetNumberValue(c, c->valuedouble + 1);
                else cJSON_AddNumberToObject(drops, key, 1);
                snprintf(status, sizeof status, "not sent: %.150s", q.reason);
                status_until_ms = t + o.hold_ms;
            } else if (!encode_jpeg(&jb, fr.px, fr.w, fr.h)) {
                fprintf(stderr, "medinfer %s: frame %lld: cannot encode it as JPEG (out of memory)\n", C, (long long)fr.index);
            } else {
                size_t len = jb.n;
                if (mi_assist_client_post(cl, exam, fr.index, t, mi_trigger_name(k), jb.p, len, "image/jpeg")) {
                    sent++;
                    cJSON *r = event("request", fr.index, t);
                    cJSON_AddStringToObject(r, "trigger", mi_trigger_name(k));
                    cJSON_AddStringToObject(r, "exam_id", exam);
                    cJSON_AddNumberToObject(r, "bytes", (double)len);
                    emit(&log, r);
                }
            }
        }

        /* the frame shown: a copy with the overlay */
        if (shown.w != fr.w || shown.h != fr.h) {
            mi_image_free(&shown);
            if (mi_image_alloc(&shown, fr.w, fr.h) != MI_OK) { rc = mi_cli_error(C); break; }
            if (o.out && !vw && mi_video_writer_open(&vw, o.out, fr.w & ~1, fr.h & ~1, out_fps, 23) != MI_OK) {
                rc = mi_cli_error(C);
                break;
            }
        }
        memcpy(shown.px, fr.px, (size_t)fr.w * fr.h * 3);
        char faultline[240] = "";
        if (fault[0]) snprintf(faultline, sizeof faultline, "%s%s", fault, mi_assist_client_busy(cl) ? "" : " (retrying)");
        else if (!exam[0] && note[0]) snprintf(faultline, sizeof faultline, "%s", note);   /* nothing can be sent */
        mi_overlay_info ov = { exam, terminal[0] ? terminal : NULL, exam_number, t, have_held ? &held : NULL,
                               1.f, 1.f, faultline[0] ? faultline : NULL, t <= status_until_ms && status[0] ? status : NULL };
        mi_overlay_draw(&shown, &ov);
        if (have_held && held.n > 0) box_frames++;
        if (vw) {
            mi_status st = MI_OK;
            if ((fr.w & 1) || (fr.h & 1)) {   /* H.264's 4:2:0 wants even sides: drop the odd row/column */
                mi_image ev;
                if ((st = mi_image_alloc(&ev, fr.w & ~1, fr.h & ~1)) == MI_OK) {
                    for (int y = 0; y < ev.h; y++)
                        memcpy(ev.px + (size_t)y * ev.w * 3, shown.px + (size_t)y * shown.w * 3, (size_t)ev.w * 3);
                    st = mi_video_writer_add(vw, ev.px);
                    mi_image_free(&ev);
                }
            } else {
                st = mi_video_writer_add(vw, shown.px);
            }
            if (st != MI_OK) { rc = mi_cli_error(C); break; }
        }
        if (web && now_ms() - last_web_ms >= WEB_FRAME_MS) {
            membuf jb;
            if (encode_jpeg(&jb, shown.px, shown.w, shown.h)) {
                mi_assist_web_set_frame(web, jb.p, jb.n);
                free(jb.p);
            }
            cJSON *s = cJSON_CreateObject();
            cJSON_AddStringToObject(s, "exam_id", exam);
            cJSON_AddStringToObject(s, "terminal", terminal);
            cJSON_AddNumberToObject(s, "frame", (double)fr.index);
            cJSON_AddNumberToObject(s, "sent", (double)sent);
            cJSON_AddNumberToObject(s, "answered", (double)answered);
            cJSON_AddNumberToObject(s, "failed", (double)(failed + timeouts));
            cJSON_AddStringToObject(s, "fault", fault);
            char *txt = cJSON_PrintUnformatted(s);
            if (txt) mi_assist_web_set_status(web, txt);
            free(txt);
            cJSON_Delete(s);
            last_web_ms = now_ms();
        }
    }
    if (rc == MI_EXIT_OK && mi_video_damage(vid)[0] && !o.quiet)
        fprintf(stderr, "medinfer %s: %s: %s\n", C, o.source, mi_video_damage(vid));

    /* the last request's answer, so the log has every request's end (the video is over: not drawn) */
    if (cl) {
        double until = now_ms() + o.timeout_ms + 200;
        while (mi_assist_client_busy(cl) && now_ms() < until) {
            mi_req_result res;
            if (mi_assist_client_poll(cl, &res)) {
                cJSON *e = event(res.state == MI_REQ_ANSWER ? "answer" : res.reply.timed_out ? "timeout" : "failure",
                                 res.frame, res.t_ms);
                cJSON_AddBoolToObject(e, "after_end", true);
                cJSON_AddNumberToObject(e, "rtt_ms", round(res.rtt_ms * 10) / 10);
                if (res.reply.code) cJSON_AddNumberToObject(e, "http", (double)res.reply.code);
                mi_assist_answer a;
                if (res.state == MI_REQ_ANSWER && mi_assist_answer_parse(&a, res.reply.body, res.reply.len) == MI_OK) {
                    cJSON_AddStringToObject(e, "exam_id", a.exam_id);
                    cJSON_AddNumberToObject(e, "lesions", a.n_total);
                    cJSON *body = cJSON_Parse(res.reply.body);
                    cJSON *fi = cJSON_DetachItemFromObjectCaseSensitive(body, "finding_ids");
                    if (fi) cJSON_AddItemToObject(e, "finding_ids", fi);
                    cJSON_Delete(body);
                    answered++;
                } else if (res.reply.timed_out) timeouts++;
                else failed++;
                emit(&log, e);
                mi_http_reply_free(&res.reply);
                break;
            }
            usleep(5000);
        }
    }

    {
        cJSON *sum = cJSON_CreateObject();
        pthread_mutex_lock(&side.mu);
        cJSON_AddStringToObject(sum, "exam_id", side.exam_id);
        cJSON_AddStringToObject(sum, "terminal", side.terminal);
        pthread_mutex_unlock(&side.mu);
        cJSON_AddStringToObject(sum, "source", o.source);
        cJSON_AddNumberToObject(sum, "frames", (double)frames);
        cJSON_AddNumberToObject(sum, "video_ms", (double)last_t);
        cJSON_AddNumberToObject(sum, "wall_ms", round(now_ms() - wall0));
        cJSON *tg = cJSON_AddObjectToObject(sum, "targets");
        for (int k = MI_TRIG_AUTO; k <= MI_TRIG_PEDAL; k++) cJSON_AddNumberToObject(tg, mi_trigger_name(k), (double)targets[k]);
        cJSON_AddNumberToObject(sum, "sent", (double)sent);
        cJSON_AddNumberToObject(sum, "answered", (double)answered);
        cJSON_AddNumberToObject(sum, "not_judged", (double)not_judged);
        cJSON_AddNumberToObject(sum, "timeouts", (double)timeouts);
        cJSON_AddNumberToObject(sum, "failed", (double)failed);
        cJSON_AddNumberToObject(sum, "answers_for_another_exam", (double)mismatched);
        cJSON_AddItemToObject(sum, "dropped", drops);
        drops = NULL;
        cJSON_AddNumberToObject(sum, "frames_with_boxes", (double)box_frames);
        cJSON_AddNumberToObject(sum, "alerts", (double)alerts);
        cJSON_AddNumberToObject(sum, "rtt_p50_ms", round(pct(rtts, nrtt, 50) * 10) / 10);
        cJSON_AddNumberToObject(sum, "rtt_p99_ms", round(pct(rtts, nrtt, 99) * 10) / 10);
        cJSON *th = cJSON_AddObjectToObject(sum, "settings");
        cJSON_AddStringToObject(th, "trigger", o.trigger);
        cJSON_AddNumberToObject(th, "freeze_eps", o.trig.freeze_eps);
        cJSON_AddNumberToObject(th, "freeze_frames", o.trig.freeze_n);
        cJSON_AddNumberToObject(th, "timeout_ms", o.timeout_ms);
        cJSON_AddNumberToObject(th, "hold_ms", o.hold_ms);
        cJSON_AddBoolToObject(th, "realtime", realtime);
        char *txt = cJSON_Print(sum);
        if (txt) printf("%s\n", txt);
        free(txt);
        cJSON_Delete(sum);
        fflush(stdout);
    }
    cJSON_Delete(drops);
    if (web && o.linger_s > 0 && rc == MI_EXIT_OK) {
        /* the recording is over and its MP4 complete; the page (last frame, findings, which the
         * side thread keeps fetching) stays up for a reviewer until the time is up or a signal */
        if (vw) {
            mi_status st = mi_video_writer_close(vw);
            vw = NULL;
            if (st != MI_OK) rc = mi_cli_error(C);
        }
        if (!o.quiet) fprintf(stderr, "medinfer %s: source ended; web view up for %g s more\n", C, o.linger_s);
        const double until = now_ms() + o.linger_s * 1000;
        while (!stop_requested && now_ms() < until) usleep(50000);
    }

done:
    if (side.have_thread) {
        pthread_mutex_lock(&side.mu);
        side.stop = true;
        pthread_mutex_unlock(&side.mu);
        pthread_join(side.thread, NULL);
    }
    mi_assist_client_stop(cl);
    if (vw && mi_video_writer_close(vw) != MI_OK && rc == MI_EXIT_OK) rc = mi_cli_error(C);
    mi_assist_web_stop(web);
    mi_video_close(vid);
    mi_image_free(&shown);
    free(fb.crop);
    free(fb.scaled);
    free(rtts);
    if (log.f) fclose(log.f);
    if (ped.fifo_fd >= 0) close(ped.fifo_fd);
    if (ped.stdin_tty) tcsetattr(0, TCSANOW, &ped.saved);
    if (o.trig.pedal && ped.stdin_flags >= 0) fcntl(0, F_SETFL, ped.stdin_flags);
    pthread_mutex_destroy(&side.mu);
    return rc;
}
