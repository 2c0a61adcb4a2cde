/* pipelines/assist/server.c - libmicrohttpd glue, the frame queue and workers, metrics.
 *
 * Threads: MHD runs one thread per connection (bounded by max_connections, so a flood of
 * connections is refused at accept, not given threads). A connection's thread does the cheap
 * work itself - routing, the token, the query, the exam's owner, the body (up to max_body), the
 * image header - and answers every refusal at once; a frame that passes is put in a bounded
 * queue (full: 503 + Retry-After, nothing kept) and the thread waits until a worker has decoded
 * it, judged its quality, run the detector and committed the findings. Memory is bounded by
 * max_connections x max_body for bodies plus the workers' sessions; nothing grows with load.
 *
 * Status codes are decided in this order: 404 (no such resource), 405 (other method), 401 (no
 * or unknown token), 403 (wrong role), 413 (Content-Length over max_body), 415, 400 (query),
 * 404/403/409 (the exam: unknown / another terminal's / closed), then the body: 413 when it
 * grows past max_body without a Content-Length, 400 when it does not parse. */
#include "pipelines/assist/server.h"

#include "ops/cpu.h"
#include "pipelines/assist/analyze.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- metrics ------------------------------------------------------------------------------------- */

static const int CODES[] = { 200, 201, 400, 401, 403, 404, 405, 409, 413, 415, 500, 503 };
enum { NCODES = sizeof CODES / sizeof *CODES };
static const double BUCKETS[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
enum { NBUCKETS = sizeof BUCKETS / sizeof *BUCKETS };

typedef enum {
    REJ_UNAUTHORIZED, REJ_FORBIDDEN, REJ_NOT_FOUND, REJ_METHOD, REJ_TOO_LARGE, REJ_MEDIA_TYPE, REJ_BAD_REQUEST,
    REJ_CONFLICT, REJ_QUEUE_FULL, REJ_SHUTTING_DOWN, REJ_INTERNAL, NREJ
} reject_reason;
static const char *const REJ_NAME[NREJ] = { "unauthorized", "forbidden", "not_found", "method_not_allowed", "too_large",
                                            "unsupported_media_type", "bad_request", "conflict", "queue_full",
                                            "shutting_down", "internal_error" };

typedef struct {
    unsigned long long count[NBUCKETS + 1];   /* per bucket (not cumulative); last: +Inf */
    double sum;
    unsigned long long n;
} histogram;

static void observe(histogram *h, double v) {
    int b = 0;
    while (b < NBUCKETS && v > BUCKETS[b]) b++;
    h->count[b]++;
    h->sum += v;
    h->n++;
}

typedef struct {
    pthread_mutex_t mu;
    unsigned long long requests[MI_ASSIST_R_COUNT][NCODES + 1];   /* last: any other code */
    unsigned long long rejects[NREJ];
    unsigned long long frames_judged, frames_not_judged, lesions, findings, alerts;
    histogram request_s, inference_s, queue_wait_s;
} metrics;

/* ---- server state --------------------------------------------------------------------------------- */

typedef struct job job;

struct mi_assist_server {
    struct MHD_Daemon      *d;
    const mi_model         *model;
    const mi_assist_tokens *tokens;
    mi_assist_store        *store;
    mi_assist_server_opts   o;
    bool                    high_risk[MI_ASSIST_MAX_CLASSES];
    int                     num_classes;
    int                     port;

    /* the frame queue: a ring of job pointers */
    pthread_mutex_t qmu;
    pthread_cond_t  qcond;        /* a job was queued, or stop */
    job           **ring;
    int             head, count;
    int             busy;         /* workers running a job */
    bool            quit;         /* workers exit once the queue is empty */
    pthread_t      *threads;
    int             nthreads;

    atomic_int      inflight;     /* requests between their first handler call and completion */
    atomic_bool     stopping;
    metrics         m;
};

struct job {
    /* in */
    mi_assist_server *srv;
    const uint8_t    *body;
    size_t            body_n;
    mi_assist_image_type type;
    mi_assist_frame_query q;
    char              terminal[MI_ASSIST_ID_MAX];
    double            t_request, t_queued;
    /* out */
    pthread_mutex_t   mu;
    pthread_cond_t    cond;
    bool              done;
    int               code;
    char             *json;       /* the whole response body */
};

/* one request, from the URI callback to the completion callback */
typedef struct {
    mi_assist_server *srv;
    char             *target;     /* as sent: path?query */
    mi_assist_target  t;
    bool              started, counted;
    char              method[16];
    const mi_assist_token *who;
    double            t0;
    /* the body */
    uint8_t          *body;
    size_t            body_n, body_cap, discarded;
    bool              too_large;
    mi_assist_image_type type;
    mi_assist_frame_query q;
    /* what was answered */
    int               code;
    reject_reason     reject;
    bool              rejected;
} request;

/* ---- responses ------------------------------------------------------------------------------------- */

/* The answer goes into the metrics as it is queued, not when libmicrohttpd reports the connection
 * completed (after the bytes left): a client that reads /metrics as soon as its answer arrived
 * must find that answer counted. */
static void count_answer(const request *r) {
    metrics *m = &r->srv->m;
    const double dt = now_s() - r->t0;
    int k = NCODES;
    for (int i = 0; i < NCODES; i++)
        if (CODES[i] == r->code) k = i;
    pthread_mutex_lock(&m->mu);
    m->requests[r->t.route][k]++;
    observe(&m->request_s, dt);
    if (r->rejected) m->rejects[r->reject]++;
    pthread_mutex_unlock(&m->mu);
}

static enum MHD_Result send_body(request *r, struct MHD_Connection *c, int code, const char *ctype, void *body, size_t n,
                                 bool must_free) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (!resp) {
        if (must_free) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (code == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"medinfer-assist\"");
    if (code == 503) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", r->srv->o.retry_after_s);
        MHD_add_response_header(resp, "Retry-After", ra);
    }
    if (code == 405) MHD_add_response_header(resp, "Allow", mi_assist_route_method(r->t.route));
    if (atomic_load(&r->srv->stopping)) MHD_add_response_header(resp, "Connection", "close");
    r->code = code;
    count_answer(r);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)code, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_json(request *r, struct MHD_Connection *c, int code, cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return MHD_NO;
    return send_body(r, c, code, "application/json", s, strlen(s), true);
}

/* {"error": msg}; counts the refusal */
static enum MHD_Result send_error(request *r, struct MHD_Connection *c, int code, reject_reason why, const char *msg) {
    r->rejected = true;
    r->reject = why;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", msg);
    return send_json(r, c, code, j);
}

/* ---- the workers ----------------------------------------------------------------------------------- */

static double ms(double s) { return round(s * 1e4) / 10.0; }   /* seconds -> ms, 0.1 ms steps */
static double round_to(double v, double step) { return round(v / step) * step; }

static cJSON *model_json(const mi_model *m) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "arch", mi_model_arch(m));
    cJSON_AddStringToObject(j, "model_version", mi_model_version(m));
    cJSON_AddStringToObject(j, "sha256", mi_model_sha256(m));
    return j;
}

static cJSON *probs_json(const mi_model *m, const mi_assist_lesion *l, int nc) {
    cJSON *p = cJSON_CreateObject();
    for (int k = 0; k < nc; k++) cJSON_AddNumberToObject(p, mi_model_label(m, k), round_to(l->probs[k], 1e-6));
    return p;
}

static cJSON *box_json(const mi_assist_lesion *l) {
    cJSON *b = cJSON_CreateArray();
    for (int k = 0; k < 4; k++) cJSON_AddItemToArray(b, cJSON_CreateNumber(round_to(l->box[k], 0.01)));
    return b;
}

static void job_error(job *jb, int code, const char *msg) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", msg);
    jb->json = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    jb->code = code;
}

/* decode, judge, detect, store, answer */
static void run_job(mi_assist_server *s, mi_assist_detector *det, job *jb) {
    const double t_start = now_s();
    const mi_model *m = s->model;
    const int nc = s->num_classes;
    mi_image img = { 0 };
    mi_assist_lesion les[MI_ASSIST_MAX_LESIONS];
    int nl = 0;
    long long ids[MI_ASSIST_MAX_LESIONS];
    void *thumbs[MI_ASSIST_MAX_LESIONS] = { 0 };
    size_t thumb_n[MI_ASSIST_MAX_LESIONS] = { 0 };
    char *pj[MI_ASSIST_MAX_LESIONS] = { 0 }, *bj[MI_ASSIST_MAX_LESIONS] = { 0 };
    mi_quality q;
    double t_decode = 0, t_quality = 0, t_infer = 0, t_store = 0;

    mi_status st = mi_assist_decode_frame(&img, jb->body, jb->body_n, jb->type, s->o.max_side, s->o.max_pixels);
    t_decode = now_s() - t_start;
    if (st) {
        job_error(jb, 400, mi_last_error());
        return;
    }
    double t1 = now_s();
    if ((st = mi_quality_measure(img.px, img.w, img.h, (size_t)img.w * 3, &s->o.quality, &q))) {
        job_error(jb, 500, mi_last_error());
        goto done;
    }
    t_quality = now_s() - t1;
    if (q.judged) {
        const mi_assist_policy pol = { s->o.score_threshold, s->o.alert_threshold, s->high_risk };
        t1 = now_s();
        st = mi_assist_detect(det, &img, &pol, les, MI_ASSIST_MAX_LESIONS, &nl);
        t_infer = now_s() - t1;
        if (st) {
            job_error(jb, 500, mi_last_error());
            goto done;
        }
        pthread_mutex_lock(&s->m.mu);
        observe(&s->m.inference_s, t_infer);
        pthread_mutex_unlock(&s->m.mu);
    }
    /* findings: one per lesion, committed before anything is answered */
    t1 = now_s();
    mi_assist_finding f[MI_ASSIST_MAX_LESIONS];
    mi_image small = { 0 };
    if (nl > 0 && mi_assist_thumbnail_base(&small, &img, s->o.thumbnail_side)) {
        job_error(jb, 500, "out of memory preparing the thumbnails");
        goto done;
    }
    for (int i = 0; i < nl; i++) {
        cJSON *p = probs_json(m, &les[i], nc), *b = box_json(&les[i]);
        pj[i] = cJSON_PrintUnformatted(p);
        bj[i] = cJSON_PrintUnformatted(b);
        cJSON_Delete(p);
        cJSON_Delete(b);
        if (!pj[i] || !bj[i] || mi_assist_thumbnail(&small, img.w, img.h, &les[i], &thumbs[i], &thumb_n[i])) {
            mi_image_free(&small);
            job_error(jb, 500, "out of memory preparing the findings");
            goto done;
        }
        f[i] = (mi_assist_finding){
            .exam_id = jb->q.exam, .terminal = jb->terminal, .timestamp_ms = jb->q.timestamp_ms,
            .trigger = mi_assist_trigger_name(jb->q.trigger), .type = mi_model_label(m, les[i].label),
            .score = les[i].score, .probs_json = pj[i], .box_json = bj[i], .high_risk = les[i].high_risk,
            .model_arch = mi_model_arch(m), .model_version = mi_model_version(m), .model_sha256 = mi_model_sha256(m),
            .thumbnail = thumbs[i], .thumbnail_size = thumb_n[i],
        };
    }
    mi_image_free(&small);
    if ((st = mi_assist_store_add_findings(s->store, f, nl, ids))) {
        char msg[600];
        snprintf(msg, sizeof msg, "the findings could not be stored, nothing was recorded: %s", mi_last_error());
        job_error(jb, 500, msg);
        goto done;
    }
    t_store = now_s() - t1;

    cJSON *j = cJSON_CreateObject(), *arr = cJSON_CreateArray(), *fids = cJSON_CreateArray();
    bool high = false;
    cJSON_AddStringToObject(j, "exam_id", jb->q.exam);
    cJSON_AddStringToObject(j, "terminal", jb->terminal);
    cJSON_AddNumberToObject(j, "timestamp_ms", (double)jb->q.timestamp_ms);
    cJSON_AddStringToObject(j, "trigger", mi_assist_trigger_name(jb->q.trigger));
    cJSON_AddBoolToObject(j, "judged", q.judged);
    if (q.judged) cJSON_AddNullToObject(j, "reason");
    else cJSON_AddStringToObject(j, "reason", q.reason);
    cJSON *qj = cJSON_CreateObject();
    cJSON_AddNumberToObject(qj, "mean_luma", round_to(q.mean_luma, 0.01));
    cJSON_AddNumberToObject(qj, "sobel_x", round_to(q.sobel_x, 0.001));
    cJSON_AddNumberToObject(qj, "sobel_y", round_to(q.sobel_y, 0.001));
    cJSON_AddNumberToObject(qj, "glare_frac", round_to(q.glare_frac, 1e-5));
    cJSON_AddItemToObject(j, "quality", qj);
    for (int i = 0; i < nl; i++) {
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "type", mi_model_label(m, les[i].label));
        cJSON_AddNumberToObject(l, "score", round_to(les[i].score, 1e-6));
        cJSON_AddItemToObject(l, "probs", probs_json(m, &les[i], nc));
        cJSON_AddItemToObject(l, "box", box_json(&les[i]));
        cJSON_AddBoolToObject(l, "high_risk", les[i].high_risk);
        cJSON_AddNumberToObject(l, "finding_id", (double)ids[i]);
        cJSON_AddItemToArray(arr, l);
        cJSON_AddItemToArray(fids, cJSON_CreateNumber((double)ids[i]));
        high |= les[i].high_risk;
    }
    cJSON_AddItemToObject(j, "lesions", arr);
    cJSON_AddBoolToObject(j, "high_risk", high);
    cJSON_AddItemToObject(j, "finding_ids", fids);
    cJSON_AddItemToObject(j, "model", model_json(m));
    cJSON *tj = cJSON_CreateObject();
    cJSON_AddNumberToObject(tj, "queue", ms(t_start - jb->t_queued));
    cJSON_AddNumberToObject(tj, "decode", ms(t_decode));
    cJSON_AddNumberToObject(tj, "quality", ms(t_quality));
    cJSON_AddNumberToObject(tj, "inference", ms(t_infer));
    cJSON_AddNumberToObject(tj, "store", ms(t_store));
    cJSON_AddNumberToObject(tj, "total", ms(now_s() - jb->t_request));
    cJSON_AddItemToObject(j, "timing_ms", tj);
    jb->json = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    jb->code = jb->json ? 200 : 500;

    pthread_mutex_lock(&s->m.mu);
    if (q.judged) s->m.frames_judged++;
    else s->m.frames_not_judged++;
    s->m.lesions += (unsigned long long)nl;
    s->m.findings += (unsigned long long)nl;
    for (int i = 0; i < nl; i++) s->m.alerts += les[i].high_risk;
    pthread_mutex_unlock(&s->m.mu);
done:
    for (int i = 0; i < nl; i++) {
        free(thumbs[i]);
        free(pj[i]);
        free(bj[i]);
    }
    mi_image_free(&img);
}

static void *worker(void *arg) {
    mi_assist_server *s = arg;
    int threads = s->o.threads;
    if (threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cores > s->o.workers ? (int)(cores / s->o.workers) : 1;
    }
    /* the worker's other OpenMP regions (thumbnail scaling) keep to its share of the cores too */
    mi_set_threads(threads);
    mi_assist_detector det = { .model = s->model, .threads = threads };
    for (;;) {
        pthread_mutex_lock(&s->qmu);
        while (s->count == 0 && !s->quit) pthread_cond_wait(&s->qcond, &s->qmu);
        if (s->count == 0) {
            pthread_mutex_unlock(&s->qmu);
            break;
        }
        job *jb = s->ring[s->head];
        s->head = (s->head + 1) % s->o.queue;
        s->count--;
        s->busy++;
        pthread_mutex_unlock(&s->qmu);
        pthread_mutex_lock(&s->m.mu);
        observe(&s->m.queue_wait_s, now_s() - jb->t_queued);
        pthread_mutex_unlock(&s->m.mu);

        run_job(s, &det, jb);

        pthread_mutex_lock(&s->qmu);
        s->busy--;
        pthread_mutex_unlock(&s->qmu);
        pthread_mutex_lock(&jb->mu);
        jb->done = true;
        pthread_cond_signal(&jb->cond);
        pthread_mutex_unlock(&jb->mu);
    }
    mi_assist_detector_free(&det);
    return NULL;
}

/* queues the frame and waits for its answer; false when the queue is full */
static bool submit(mi_assist_server *s, job *jb) {
    pthread_mutex_lock(&s->qmu);
    if (s->count == s->o.queue || s->quit) {
        pthread_mutex_unlock(&s->qmu);
        return false;
    }
    jb->t_queued = now_s();
    s->ring[(s->head + s->count) % s->o.queue] = jb;
    s->count++;
    pthread_cond_signal(&s->qcond);
    pthread_mutex_unlock(&s->qmu);
    pthread_mutex_lock(&jb->mu);
    while (!jb->done) pthread_cond_wait(&jb->cond, &jb->mu);
    pthread_mutex_unlock(&jb->mu);
    return true;
}

/* ---- /metrics -------------------------------------------------------------------------------------- */

typedef struct {
    char  *p;
    size_t n, cap;
    bool   oom;
} text;

__attribute__((format(printf, 2, 3))) static void add(text *t, const char *fmt, ...) {
    if (t->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(t->p + t->n, t->cap - t->n, fmt, ap);
        va_end(ap);
        if (k < 0) {
            t->oom = true;
            return;
        }
        if ((size_t)k < t->cap - t->n) {
            t->n += (size_t)k;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)k + 1;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->oom = true;
            return;
        }
        t->p = p, t->cap = cap;
    }
}

static void add_histogram(text *t, const char *name, const char *help, const histogram *h) {
    add(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    unsigned long long cum = 0;
    for (int b = 0; b < NBUCKETS; b++) {
        cum += h->count[b];
        add(t, "%s_bucket{le=\"%g\"} %llu\n", name, BUCKETS[b], cum);
    }
    cum += h->count[NBUCKETS];
    add(t, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, cum, name, h->sum, name, h->n);
}

static char *metrics_text(mi_assist_server *s, size_t *n) {
    text t = { malloc(8192), 0, 8192, false };
    if (!t.p) return NULL;
    pthread_mutex_lock(&s->qmu);
    const int depth = s->count, busy = s->busy;
    pthread_mutex_unlock(&s->qmu);
    pthread_mutex_lock(&s->m.mu);
    const metrics *m = &s->m;
    add(&t, "# HELP medinfer_assist_requests_total HTTP requests answered, by route and status code.\n"
            "# TYPE medinfer_assist_requests_total counter\n");
    for (int r = 0; r < MI_ASSIST_R_COUNT; r++)
        for (int c = 0; c <= NCODES; c++)
            if (m->requests[r][c]) {
                if (c < NCODES)
                    add(&t, "medinfer_assist_requests_total{path=\"%s\",code=\"%d\"} %llu\n", mi_assist_route_name(r), CODES[c],
                        m->requests[r][c]);
                else add(&t, "medinfer_assist_requests_total{path=\"%s\",code=\"other\"} %llu\n", mi_assist_route_name(r),
                         m->requests[r][c]);
            }
    add(&t, "# HELP medinfer_assist_rejects_total Requests refused, by reason.\n# TYPE medinfer_assist_rejects_total counter\n");
    for (int k = 0; k < NREJ; k++) add(&t, "medinfer_assist_rejects_total{reason=\"%s\"} %llu\n", REJ_NAME[k], m->rejects[k]);
    add_histogram(&t, "medinfer_assist_request_seconds", "Time from a request's headers to its answer.", &m->request_s);
    add_histogram(&t, "medinfer_assist_inference_seconds", "Detector time per judged frame.", &m->inference_s);
    add_histogram(&t, "medinfer_assist_queue_wait_seconds", "Time a frame waited for a worker.", &m->queue_wait_s);
    add(&t, "# HELP medinfer_assist_frames_total Frames answered, by whether the model judged them.\n"
            "# TYPE medinfer_assist_frames_total counter\n"
            "medinfer_assist_frames_total{judged=\"true\"} %llu\nmedinfer_assist_frames_total{judged=\"false\"} %llu\n",
        m->frames_judged, m->frames_not_judged);
    add(&t, "# HELP medinfer_assist_findings_total Findings stored.\n# TYPE medinfer_assist_findings_total counter\n"
            "medinfer_assist_findings_total %llu\n", m->findings);
    add(&t, "# HELP medinfer_assist_alerts_total High-risk findings (alert events).\n"
            "# TYPE medinfer_assist_alerts_total counter\nmedinfer_assist_alerts_total %llu\n", m->alerts);
    pthread_mutex_unlock(&s->m.mu);
    add(&t, "# HELP medinfer_assist_queue_depth Frames waiting for a worker.\n# TYPE medinfer_assist_queue_depth gauge\n"
            "medinfer_assist_queue_depth %d\n", depth);
    add(&t, "# HELP medinfer_assist_queue_capacity Frames the queue holds before answering 503.\n"
            "# TYPE medinfer_assist_queue_capacity gauge\nmedinfer_assist_queue_capacity %d\n", s->o.queue);
    add(&t, "# HELP medinfer_assist_workers_busy Workers running a frame.\n# TYPE medinfer_assist_workers_busy gauge\n"
            "medinfer_assist_workers_busy %d\n", busy);
    add(&t, "# HELP medinfer_assist_workers Workers.\n# TYPE medinfer_assist_workers gauge\nmedinfer_assist_workers %d\n",
        s->o.workers);
    add(&t, "# HELP medinfer_assist_requests_in_flight Requests received and not yet answered.\n"
            "# TYPE medinfer_assist_requests_in_flight gauge\nmedinfer_assist_requests_in_flight %d\n",
        atomic_load(&s->inflight));
    if (t.oom) {
        free(t.p);
        return NULL;
    }
    *n = t.n;
    return t.p;
}

/* ---- the handlers ---------------------------------------------------------------------------------- */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
    (void)c;
    mi_assist_server *s = cls;
    request *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->srv = s;
    r->target = strdup(uri ? uri : "");
    r->t0 = now_s();
    return r;
}

/* an exam a caller may see: the workstation any, a terminal only its own (403 otherwise) */
static enum MHD_Result exam_for(request *r, struct MHD_Connection *c, const char *id, mi_assist_exam *e, bool *ok) {
    *ok = false;
    bool found;
    if (mi_assist_store_get_exam(r->srv->store, id, &found, e)) return send_error(r, c, 500, REJ_INTERNAL, mi_last_error());
    char msg[200];
    if (!found) {
        snprintf(msg, sizeof msg, "no exam '%s'", id);
        return send_error(r, c, 404, REJ_NOT_FOUND, msg);
    }
    if (r->who->role == MI_ASSIST_TERMINAL && strcmp(e->terminal, r->who->name)) {
        snprintf(msg, sizeof msg, "exam '%s' belongs to another terminal", id);
        return send_error(r, c, 403, REJ_FORBIDDEN, msg);
    }
    *ok = true;
    return MHD_YES;
}

static bool role_ok(mi_assist_route route, mi_assist_role role) {
    switch (route) {
    case MI_ASSIST_R_EXAMS:
    case MI_ASSIST_R_EXAM_CLOSE: return role == MI_ASSIST_WORKSTATION;
    case MI_ASSIST_R_EXAM_CURRENT:
    case MI_ASSIST_R_FRAMES: return role == MI_ASSIST_TERMINAL;
    default: return true;
    }
}

/* everything decidable from the headers: true when the request may go on to its body */
static enum MHD_Result first_call(request *r, struct MHD_Connection *c, const char *method, bool *go_on) {
    mi_assist_server *s = r->srv;
    *go_on = false;
    char msg[300];
    if (atomic_load(&s->stopping)) return send_error(r, c, 503, REJ_SHUTTING_DOWN, "the server is shutting down");
    mi_assist_route_target(r->target, &r->t);
    if (r->t.route == MI_ASSIST_R_NONE) {
        snprintf(msg, sizeof msg, "no such resource");
        return send_error(r, c, 404, REJ_NOT_FOUND, msg);
    }
    if (strcmp(method, mi_assist_route_method(r->t.route))) {
        snprintf(msg, sizeof msg, "%.16s is not allowed here; %s is", method, mi_assist_route_method(r->t.route));
        return send_error(r, c, 405, REJ_METHOD, msg);
    }
    if (r->t.route != MI_ASSIST_R_METRICS) {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        if (!(r->who = mi_assist_tokens_check(s->tokens, auth)))
            return send_error(r, c, 401, REJ_UNAUTHORIZED,
                              auth ? "the bearer token is not valid" : "an Authorization: Bearer token is required");
        if (!role_ok(r->t.route, r->who->role)) {
            snprintf(msg, sizeof msg, "a %s may not use %s %s", r->who->role == MI_ASSIST_TERMINAL ? "terminal" : "workstation",
                     method, mi_assist_route_name(r->t.route));
            return send_error(r, c, 403, REJ_FORBIDDEN, msg);
        }
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        char *e;
        errno = 0;
        unsigned long long v = strtoull(cl, &e, 10);
        if (!errno && e != cl && v > s->o.max_body) {
            snprintf(msg, sizeof msg, "the body has %llu bytes, more than this server takes (%zu)", v, s->o.max_body);
            return send_error(r, c, 413, REJ_TOO_LARGE, msg);
        }
    }
    if (r->t.route == MI_ASSIST_R_FRAMES) {
        r->type = mi_assist_content_type(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type"));
        if (r->type == MI_ASSIST_IMG_NONE)
            return send_error(r, c, 415, REJ_MEDIA_TYPE, "a frame must be sent as Content-Type image/jpeg or image/png");
        if (mi_assist_parse_frame_query(r->t.query, &r->q)) return send_error(r, c, 400, REJ_BAD_REQUEST, mi_last_error());
        mi_assist_exam e;
        bool ok;
        enum MHD_Result ret = exam_for(r, c, r->q.exam, &e, &ok);
        if (!ok) return ret;
        if (e.closed[0]) {
            snprintf(msg, sizeof msg, "exam '%s' is closed", e.exam_id);
            return send_error(r, c, 409, REJ_CONFLICT, msg);
        }
    }
    *go_on = true;
    return MHD_YES;
}

static enum MHD_Result do_frame(request *r, struct MHD_Connection *c) {
    mi_assist_server *s = r->srv;
    int w, h;
    if (mi_assist_check_frame(r->body, r->body_n, r->type, s->o.max_side, s->o.max_pixels, &w, &h))
        return send_error(r, c, 400, REJ_BAD_REQUEST, mi_last_error());
    job jb = { .srv = s, .body = r->body, .body_n = r->body_n, .type = r->type, .q = r->q, .t_request = r->t0 };
    snprintf(jb.terminal, sizeof jb.terminal, "%s", r->who->name);
    pthread_mutex_init(&jb.mu, NULL);
    pthread_cond_init(&jb.cond, NULL);
    const bool queued = submit(s, &jb);
    pthread_mutex_destroy(&jb.mu);
    pthread_cond_destroy(&jb.cond);
    if (!queued)
        return send_error(r, c, 503, REJ_QUEUE_FULL, "every worker is busy and the queue is full; retry after the Retry-After seconds");
    if (!jb.json) return send_error(r, c, 500, REJ_INTERNAL, "out of memory building the answer");
    if (jb.code == 400) r->rejected = true, r->reject = REJ_BAD_REQUEST;
    if (jb.code == 500) r->rejected = true, r->reject = REJ_INTERNAL;
    return send_body(r, c, jb.code, "application/json", jb.json, strlen(jb.json), true);
}

static enum MHD_Result dispatch(request *r, struct MHD_Connection *c) {
    mi_assist_server *s = r->srv;
    mi_assist_exam e;
    bool ok, found;
    char msg[300];
    switch (r->t.route) {
    case MI_ASSIST_R_METRICS: {
        size_t n;
        char *t = metrics_text(s, &n);
        if (!t) return send_error(r, c, 500, REJ_INTERNAL, "out of memory");
        return send_body(r, c, 200, "text/plain; version=0.0.4; charset=utf-8", t, n, true);
    }
    case MI_ASSIST_R_EXAMS: {
        mi_assist_exam_req req;
        if (mi_assist_parse_exam((const char *)r->body, r->body_n, &req))
            return send_error(r, c, 400, REJ_BAD_REQUEST, mi_last_error());
        if (!mi_assist_tokens_has_terminal(s->tokens, req.terminal)) {
            snprintf(msg, sizeof msg, "exam: terminal '%s' is not in the token file", req.terminal);
            return send_error(r, c, 400, REJ_BAD_REQUEST, msg);
        }
        if (mi_assist_store_open_exam(s->store, &req, r->who->name, &e)) return send_error(r, c, 500, REJ_INTERNAL, mi_last_error());
        return send_json(r, c, 201, mi_assist_exam_json(&e));
    }
    case MI_ASSIST_R_EXAM_CLOSE:
        if (mi_assist_store_close_exam(s->store, r->t.id, r->who->name, &found, &e))
            return send_error(r, c, 500, REJ_INTERNAL, mi_last_error());
        if (!found) {
            snprintf(msg, sizeof msg, "no exam '%s'", r->t.id);
            return send_error(r, c, 404, REJ_NOT_FOUND, msg);
        }
        return send_json(r, c, 200, mi_assist_exam_json(&e));
    case MI_ASSIST_R_EXAM_CURRENT:
        if (mi_assist_store_current_exam(s->store, r->who->name, &found, &e))
            return send_error(r, c, 500, REJ_INTERNAL, mi_last_error());
        if (!found) {
            snprintf(msg, sizeof msg, "terminal '%s' has no open exam", r->who->name);
            return send_error(r, c, 404, REJ_NOT_FOUND, msg);
        }
        return send_json(r, c, 200, mi_assist_exam_json(&e));
    case MI_ASSIST_R_EXAM: {
        enum MHD_Result ret = exam_for(r, c, r->t.id, &e, &ok);
        return ok ? send_json(r, c, 200, mi_assist_exam_json(&e)) : ret;
    }
    case MI_ASSIST_R_EXAM_FINDINGS: {
        enum MHD_Result ret = exam_for(r, c, r->t.id, &e, &ok);
        if (!ok) return ret;
        cJSON *j;
        if (mi_assist_store_findings_json(s->store, e.exam_id, &j)) return send_error(r, c, 500, REJ_INTERNAL, mi_last_error());
        return send_json(r, c, 200, j);
    }
    case MI_ASSIST_R_THUMBNAIL: {
        char *end;
        errno = 0;
        long long fid = strtoll(r->t.id, &end, 10);
        void *png;
        size_t n;
        char exam[MI_ASSIST_ID_MAX];
        found = false;
        if (!errno && !*end && fid > 0 && mi_assist_store_thumbnail(s->store, fid, &found, exam, &png, &n))
            return send_error(r, c, 500, REJ_INTERNAL, mi_last_error());
        if (!found) {
            snprintf(msg, sizeof msg, "no finding '%s'", r->t.id);
            return send_error(r, c, 404, REJ_NOT_FOUND, msg);
        }
        enum MHD_Result ret = exam_for(r, c, exam, &e, &ok);
        if (!ok) {
            free(png);
            return ret;
        }
        return send_body(r, c, 200, "image/jpeg", png, n, true);
    }
    case MI_ASSIST_R_FRAMES: return do_frame(r, c);
    default: return send_error(r, c, 404, REJ_NOT_FOUND, "no such resource");
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_n, void **con_cls) {
    (void)cls, (void)url, (void)version;
    request *r = *con_cls;
    if (!r || !r->target) return MHD_NO;   /* out of memory in on_uri */
    if (!r->started) {
        r->started = true;
        r->counted = true;
        snprintf(r->method, sizeof r->method, "%s", method);
        atomic_fetch_add(&r->srv->inflight, 1);
        bool go_on;
        enum MHD_Result ret = first_call(r, c, method, &go_on);
        if (!go_on) return ret;
        return MHD_YES;
    }
    if (*upload_n) {
        const size_t n = *upload_n, max = r->srv->o.max_body;
        *upload_n = 0;
        if (r->too_large || r->body_n + n > max) {
            /* no Content-Length (chunked): keep reading into nothing, answer 413 at the end;
               a client that keeps streaming far past the limit is cut off */
            r->too_large = true;
            r->discarded += n;
            return r->discarded > 4 * max + (1u << 20) ? MHD_NO : MHD_YES;
        }
        if (r->body_n + n > r->body_cap) {
            size_t cap = r->body_cap ? r->body_cap : 65536;
            while (cap < r->body_n + n) cap *= 2;
            if (cap > max) cap = max;
            uint8_t *b = realloc(r->body, cap);
            if (!b) return MHD_NO;
            r->body = b, r->body_cap = cap;
        }
        memcpy(r->body + r->body_n, upload, n);
        r->body_n += n;
        return MHD_YES;
    }
    if (r->code) return MHD_YES;   /* answered already */
    if (r->too_large) {
        char msg[160];
        snprintf(msg, sizeof msg, "the body is larger than this server takes (%zu bytes)", r->srv->o.max_body);
        return send_error(r, c, 413, REJ_TOO_LARGE, msg);
    }
    return dispatch(r, c);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c;
    mi_assist_server *s = cls;
    request *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    const double dt = now_s() - r->t0;
    if (r->started) {
        if (s->o.log) {
            /* no query in the log: it holds nothing the route and the code do not say, and
               keeping patient-adjacent identifiers out of logs is simpler than arguing about them */
            char when[32];
            mi_assist_now_iso(when);
            const char *q = strchr(r->target, '?');
            size_t pn = q ? (size_t)(q - r->target) : strlen(r->target);
            fprintf(stderr, "%s assist-server: %s %.*s %d %.1f ms %s%s\n", when, r->method, (int)(pn > 200 ? 200 : pn),
                    r->target, r->code, dt * 1e3, r->who ? r->who->name : "-",
                    toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection ended early)");
        }
    }
    if (r->counted) atomic_fetch_sub(&s->inflight, 1);
    free(r->body);
    free(r->target);
    free(r);
}

/* ---- start and stop ---------------------------------------------------------------------------------- */

void mi_assist_server_defaults(mi_assist_server_opts *o) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    memset(o, 0, sizeof *o);
    o->bind = "127.0.0.1";
    o->workers = cores > 0 ? (int)cores : 1;
    o->queue = 2 * o->workers;
    o->max_connections = 64;
    o->max_body = 8u << 20;
    o->max_side = 4096;
    o->max_pixels = 4096ll * 4096;
    o->score_threshold = 0.5f;
    o->alert_threshold = 0.8f;
    o->thumbnail_side = 160;
    o->retry_after_s = 1;
    o->timeout_s = 30;
    o->log = true;
    mi_quality_defaults(&o->quality);
}

static void stop_workers(mi_assist_server *s) {
    pthread_mutex_lock(&s->qmu);
    s->quit = true;
    pthread_cond_broadcast(&s->qcond);
    pthread_mutex_unlock(&s->qmu);
    for (int i = 0; i < s->nthreads; i++) pthread_join(s->threads[i], NULL);
    s->nthreads = 0;
}

static void server_free(mi_assist_server *s) {
    free(s->threads);
    free(s->ring);
    pthread_mutex_destroy(&s->qmu);
    pthread_cond_destroy(&s->qcond);
    pthread_mutex_destroy(&s->m.mu);
    free(s);
}

mi_status mi_assist_server_start(mi_assist_server **out, const mi_model *m, const mi_assist_tokens *tokens,
                                 mi_assist_store *store, const mi_assist_server_opts *o) {
    *out = NULL;
    if (o->workers < 1 || o->queue < 1 || o->max_connections < 1 || o->max_body < 1)
        return MI_FAIL(MI_ERR_ARG, "workers, queue, connections and body size must each be at least 1");
    mi_status st = mi_quality_check_thresholds(&o->quality);
    if (st) return st;
    mi_assist_server *s = calloc(1, sizeof *s);
    if (!s) return MI_FAIL(MI_ERR_NOMEM, "out of memory starting the server");
    s->model = m, s->tokens = tokens, s->store = store, s->o = *o;
    if (!s->o.bind) s->o.bind = "127.0.0.1";
    pthread_mutex_init(&s->qmu, NULL);
    pthread_cond_init(&s->qcond, NULL);
    pthread_mutex_init(&s->m.mu, NULL);
    s->num_classes = mi_model_num_classes(m);
    if ((st = mi_assist_high_risk_labels(m, s->high_risk, MI_ASSIST_MAX_CLASSES))) goto fail;
    s->ring = calloc((size_t)o->queue, sizeof *s->ring);
    s->threads = calloc((size_t)o->workers, sizeof *s->threads);
    if (!s->ring || !s->threads) {
        st = MI_FAIL(MI_ERR_NOMEM, "out of memory starting the server");
        goto fail;
    }
    for (int i = 0; i < o->workers; i++) {
        if (pthread_create(&s->threads[i], NULL, worker, s)) {
            st = MI_FAIL(MI_ERR_NOMEM, "cannot start worker %d of %d", i + 1, o->workers);
            stop_workers(s);
            goto fail;
        }
        s->nthreads++;
    }

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, s->o.bind, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)o->port);
    } else if (inet_pton(AF_INET6, s->o.bind, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)o->port);
        flags |= MHD_USE_IPv6;
    } else {
        st = MI_FAIL(MI_ERR_ARG, "--bind '%s' is not an IPv4 or IPv6 address", s->o.bind);
        stop_workers(s);
        goto fail;
    }
    s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->timeout_s,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                            MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_END);
    if (!s->d) {
        st = MI_FAIL(MI_ERR_IO, "cannot listen on %s port %d (in use, or not this machine's address?)",
                     s->o.bind, o->port);
        stop_workers(s);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : o->port;
    *out = s;
    return MI_OK;
fail:
    server_free(s);
    return st;
}

int mi_assist_server_port(const mi_assist_server *s) { return s->port; }

void mi_assist_server_stop(mi_assist_server *s, int grace_s) {
    if (!s) return;
    atomic_store(&s->stopping, true);
    /* stop accepting; connections already open are answered 503 with Connection: close */
    MHD_socket ls = MHD_quiesce_daemon(s->d);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    const double until = now_s() + grace_s;
    while (atomic_load(&s->inflight) > 0 && now_s() < until) usleep(10000);
    stop_workers(s);
    MHD_stop_daemon(s->d);
    server_free(s);
}
