/* pipelines/assist/terminal_net.c - see terminal_net.h. */
#include "pipelines/assist/terminal_net.h"

#include <curl/curl.h>
#include <microhttpd.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_REPLY (4u << 20)   /* a frame answer is a few kB; findings of a long exam well under this */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void mi_http_reply_free(mi_http_reply *r) {
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

typedef struct { mi_http_reply *r; bool over; } sink;

static size_t on_body(char *p, size_t size, size_t nmemb, void *user) {
    sink *s = user;
    const size_t n = size * nmemb;
    if (s->r->len + n > MAX_REPLY) { s->over = true; return 0; }   /* 0 aborts the transfer */
    char *b = realloc(s->r->body, s->r->len + n + 1);
    if (!b) return 0;
    memcpy(b + s->r->len, p, n);
    s->r->len += n;
    b[s->r->len] = 0;
    s->r->body = b;
    return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *user) {
    mi_http_reply *r = user;
    const size_t n = size * nmemb;
    if (n > 12 && !strncasecmp(p, "Retry-After:", 12)) r->retry_after_s = strtol(p + 12, NULL, 10);
    return n;
}

/* One transfer on h (set up by the caller with URL and method); fills r. */
static void perform(CURL *h, mi_http_reply *r, const char *token, long timeout_ms, bool fresh,
                    struct curl_slist *extra) {
    memset(r, 0, sizeof *r);
    char auth[600];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token ? token : "");
    struct curl_slist *hdr = curl_slist_append(extra, auth);
    sink s = { r, false };
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);   /* threads: no SIGALRM for timeouts */
    /* after a failure the kept connection may be to a server that is gone: start over */
    curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, fresh ? 1L : 0L);
    char err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->code);
    if (cc != CURLE_OK) {
        r->timed_out = cc == CURLE_OPERATION_TIMEDOUT;
        snprintf(r->error, sizeof r->error, "%s", s.over ? "answer larger than 4 MiB" : err[0] ? err : curl_easy_strerror(cc));
        r->code = 0;
        mi_http_reply_free(r);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(hdr);
}

void mi_http_get(mi_http_reply *r, const char *url, const char *token, long timeout_ms) {
    CURL *h = curl_easy_init();
    if (!h) {
        memset(r, 0, sizeof *r);
        snprintf(r->error, sizeof r->error, "out of memory");
        return;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    perform(h, r, token, timeout_ms, true, NULL);
    curl_easy_cleanup(h);
}

/* ---- frame client ---- */

struct mi_assist_client {
    char            server[512], token[512];
    long            timeout_ms;
    pthread_t       thread;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    bool            stop, pending, busy, done, fresh;
    /* the request being sent */
    char            exam_id[128], trigger[16], ctype[32];
    int64_t         frame, t_ms;
    uint8_t        *body;
    size_t          len;
    double          t_submit;
    mi_req_result   result;
};

static void *client_main(void *arg) {
    mi_assist_client *c = arg;
    CURL *h = curl_easy_init();
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->stop && !c->pending) pthread_cond_wait(&c->cv, &c->mu);
        if (c->stop) break;
        c->pending = false;
        pthread_mutex_unlock(&c->mu);

        mi_req_result res;
        memset(&res, 0, sizeof res);
        snprintf(res.exam_id, sizeof res.exam_id, "%s", c->exam_id);
        res.frame = c->frame;
        res.t_ms = c->t_ms;
        res.trigger = c->trigger[0] == 'p' ? "pedal" : c->trigger[0] == 'f' ? "freeze" : "auto";
        char url[1024], *exam = h ? curl_easy_escape(h, c->exam_id, 0) : NULL;
        snprintf(url, sizeof url, "%s/v1/frames?exam=%s&timestamp_ms=%lld&trigger=%s", c->server,
                 exam ? exam : "", (long long)c->t_ms, res.trigger);
        curl_free(exam);
        if (!h) {
            snprintf(res.reply.error, sizeof res.reply.error, "cannot start libcurl");
        } else {
            char ct[64];
            snprintf(ct, sizeof ct, "Content-Type: %s", c->ctype);
            struct curl_slist *hdr = curl_slist_append(NULL, ct);
            /* no "Expect: 100-continue": it costs a round trip (or a 1 s wait) per frame */
            hdr = curl_slist_append(hdr, "Expect:");
            curl_easy_setopt(h, CURLOPT_URL, url);
            curl_easy_setopt(h, CURLOPT_POST, 1L);
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, (const char *)c->body);
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->len);
            perform(h, &res.reply, c->token, c->timeout_ms, c->fresh, hdr);
        }
        res.state = res.reply.code >= 200 && res.reply.code < 300 ? MI_REQ_ANSWER : MI_REQ_FAILED;
        res.rtt_ms = now_ms() - c->t_submit;

        pthread_mutex_lock(&c->mu);
        free(c->body);
        c->body = NULL;
        c->fresh = res.reply.code == 0;
        c->result = res;
        c->done = true;
        c->busy = false;
    }
    pthread_mutex_unlock(&c->mu);
    curl_easy_cleanup(h);
    return NULL;
}

mi_status mi_assist_client_start(mi_assist_client **out, const char *server, const char *token, long timeout_ms) {
    *out = NULL;
    if (strlen(server) >= 400 || strlen(token) >= 500) return MI_FAIL(MI_ERR_ARG, "server URL or token too long");
    mi_assist_client *c = calloc(1, sizeof *c);
    if (!c) return MI_FAIL(MI_ERR_NOMEM, "out of memory");
    snprintf(c->server, sizeof c->server, "%s", server);
    size_t n = strlen(c->server);
    while (n && c->server[n - 1] == '/') c->server[--n] = 0;   /* "http://h:p/" and "http://h:p" alike */
    snprintf(c->token, sizeof c->token, "%s", token);
    c->timeout_ms = timeout_ms;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&c->thread, NULL, client_main, c) != 0) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c);
        return MI_FAIL(MI_ERR_NOMEM, "cannot start the client thread");
    }
    *out = c;
    return MI_OK;
}

void mi_assist_client_stop(mi_assist_client *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    if (c->done) mi_http_reply_free(&c->result.reply);
    free(c->body);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

bool mi_assist_client_busy(mi_assist_client *c) {
    pthread_mutex_lock(&c->mu);
    bool b = c->busy || c->done;   /* an answer not yet polled still counts: it is the one in flight */
    pthread_mutex_unlock(&c->mu);
    return b;
}

bool mi_assist_client_post(mi_assist_client *c, const char *exam_id, int64_t frame, int64_t t_ms,
                           const char *trigger, uint8_t *body, size_t len, const char *content_type) {
    pthread_mutex_lock(&c->mu);
    if (c->busy || c->done) {
        pthread_mutex_unlock(&c->mu);
        free(body);
        return false;
    }
    snprintf(c->exam_id, sizeof c->exam_id, "%s", exam_id);
    snprintf(c->trigger, sizeof c->trigger, "%s", trigger);
    snprintf(c->ctype, sizeof c->ctype, "%s", content_type);
    c->frame = frame;
    c->t_ms = t_ms;
    c->body = body;
    c->len = len;
    c->t_submit = now_ms();
    c->busy = c->pending = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return true;
}

bool mi_assist_client_poll(mi_assist_client *c, mi_req_result *r) {
    pthread_mutex_lock(&c->mu);
    bool got = c->done;
    if (got) {
        *r = c->result;   /* the body moves to the caller */
        memset(&c->result, 0, sizeof c->result);
        c->done = false;
    }
    pthread_mutex_unlock(&c->mu);
    return got;
}

/* ---- web view ---- */

struct mi_assist_web {
    struct MHD_Daemon *d;
    int             port;
    pthread_mutex_t mu;
    pthread_cond_t  frame_cv;    /* signalled with each new frame, and at stop */
    unsigned long   frame_seq;
    bool            stopping;
    uint8_t        *jpeg;
    size_t          jpeg_len;
    char           *findings, *status;
    int             pedal;
    char            server[512], token[512];   /* for thumbnails; server "" until set */
    long            timeout_ms;
};

/* The page: the overlaid stream as a JPEG polled every 100 ms (no long-lived connection, so a
 * screenshot or a reload never hangs on a stream) and the findings table, refreshed each 2 s. */
static const char PAGE[] =
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>medinfer assist terminal</title>\n"
    "<style>body{background:#111;color:#ddd;font:14px sans-serif;margin:8px}"
    "#v{display:block;width:100%;max-width:960px;height:auto;border:1px solid #333}"
    "table{border-collapse:collapse;margin-top:8px}td,th{padding:2px 8px;border-bottom:1px solid #333;text-align:left}"
    ".hr{color:#f44;font-weight:bold}#st{margin:4px 0}</style></head>\n<body>\n"
    "<img id=\"v\" src=\"/latest.jpg\" alt=\"live overlay\">\n<div id=\"st\"></div>\n"
    "<button onclick=\"fetch('/pedal',{method:'POST'})\">pedal</button>\n"
    "<h3>Findings of this exam</h3>\n<table><thead><tr><th>time</th><th>type</th><th>score</th>"
    "<th>high risk</th><th>box</th><th></th></tr></thead><tbody id=\"f\"></tbody></table>\n"
    "<script>\n"
    "const v=document.getElementById('v');let n=0;\n"
    "function next(){const i=new Image();i.onload=()=>{v.src=i.src;setTimeout(next,100)};"
    "i.onerror=()=>setTimeout(next,500);i.src='/latest.jpg?'+(n++)}\n"
    "function esc(s){return String(s).replace(/[&<>\"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','\"':'&quot;'}[c]))}\n"
    "function fmt(ms){const s=ms/1000;return Math.floor(s/60)+':'+(s%60).toFixed(1).padStart(4,'0')}\n"
    "async function findings(){try{const r=await fetch('/findings.json');const j=await r.json();"
    "const b=document.getElementById('f');b.innerHTML='';"
    "for(const f of (j.findings||[])){const t=document.createElement('tr');"
    "t.innerHTML='<td>'+fmt(f.timestamp_ms)+'</td><td>'+esc(f.type)+'</td><td>'+Number(f.score).toFixed(2)+"
    "'</td><td class=\"'+(f.high_risk?'hr':'')+'\">'+(f.high_risk?'yes':'no')+'</td><td>'+esc((f.box||[]).map(x=>Math.round(x)).join(', '))+"
    "'</td><td><img height=\"48\" alt=\"\" src=\"/thumb/'+Number(f.id)+'\"></td>';"
    "b.appendChild(t)}}catch(e){}"
    "try{const r=await fetch('/status.json');const s=await r.json();"
    "document.getElementById('st').textContent='exam '+(s.exam_id||'-')+' | sent '+s.sent+' | answered '+s.answered+"
    "' | failed '+s.failed+(s.fault?' | FAULT: '+s.fault:'')}catch(e){}setTimeout(findings,2000)}\n"
    "next();findings();\n</script>\n</body></html>\n";

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *ctype, const void *data,
                             size_t len, enum MHD_ResponseMemoryMode mode) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)data, mode);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_copy(mi_assist_web *w, struct MHD_Connection *conn, const char *ctype,
                                  const void *src, size_t len, const char *none) {
    /* a copy taken under the lock: the loop replaces the frame 25 times a second */
    void *copy = len ? malloc(len) : NULL;
    if (copy) memcpy(copy, src, len);
    pthread_mutex_unlock(&w->mu);
    if (!copy) return reply(conn, len ? 500 : 404, "application/json", none, strlen(none), MHD_RESPMEM_PERSISTENT);
    return reply(conn, 200, ctype, copy, len, MHD_RESPMEM_MUST_FREE);
}

/* The server's thumbnail of finding `id` (digits only: nothing else reaches the server's URL). */
static enum MHD_Result thumbnail(mi_assist_web *w, struct MHD_Connection *conn, const char *id) {
    static const char bad[] = "{\"error\": \"a finding id is a whole number\"}";
    static const char none[] = "{\"error\": \"no such thumbnail\"}";
    size_t n = strspn(id, "0123456789");
    if (n == 0 || n > 18 || id[n]) return reply(conn, 404, "application/json", bad, sizeof bad - 1, MHD_RESPMEM_PERSISTENT);
    char url[700], token[512];
    long timeout;
    pthread_mutex_lock(&w->mu);
    snprintf(url, sizeof url, "%s/v1/findings/%s/thumbnail", w->server, id);
    snprintf(token, sizeof token, "%s", w->token);
    timeout = w->timeout_ms;
    const bool have = w->server[0] != 0;
    pthread_mutex_unlock(&w->mu);
    if (!have) return reply(conn, 404, "application/json", none, sizeof none - 1, MHD_RESPMEM_PERSISTENT);
    mi_http_reply r;
    mi_http_get(&r, url, token, timeout);
    if (r.code != 200 || !r.body) {
        mi_http_reply_free(&r);
        return reply(conn, 404, "application/json", none, sizeof none - 1, MHD_RESPMEM_PERSISTENT);
    }
    return reply(conn, 200, "image/jpeg", r.body, r.len, MHD_RESPMEM_MUST_FREE);   /* r.body freed by MHD */
}

/* GET /stream.mjpg: multipart/x-mixed-replace, one JPEG part per new overlaid frame, for viewers
 * that take MJPEG (VLC, ffplay, an <img> in a browser). Each connection has its own thread, so
 * the reader may wait for the next frame; it wakes at least every 200 ms to notice a stop. */
typedef struct {
    mi_assist_web *w;
    unsigned long  seq;
    uint8_t       *part;
    size_t         len, off;
} mjpeg_reader;

static ssize_t mjpeg_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    mjpeg_reader *r = cls;
    mi_assist_web *w = r->w;
    if (r->off == r->len) {
        pthread_mutex_lock(&w->mu);
        while (!w->stopping && (w->frame_seq == r->seq || !w->jpeg)) {
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            t.tv_nsec += 200000000L;
            if (t.tv_nsec >= 1000000000L) t.tv_sec++, t.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&w->frame_cv, &w->mu, &t);
        }
        if (w->stopping) {
            pthread_mutex_unlock(&w->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        char head[128];
        const int hn = snprintf(head, sizeof head, "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %zu\r\n\r\n",
                                w->jpeg_len);
        uint8_t *p = realloc(r->part, (size_t)hn + w->jpeg_len + 2);
        if (!p) {
            pthread_mutex_unlock(&w->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        memcpy(p, head, (size_t)hn);
        memcpy(p + hn, w->jpeg, w->jpeg_len);
        memcpy(p + hn + w->jpeg_len, "\r\n", 2);
        r->part = p, r->len = (size_t)hn + w->jpeg_len + 2, r->off = 0, r->seq = w->frame_seq;
        pthread_mutex_unlock(&w->mu);
    }
    const size_t n = r->len - r->off < max ? r->len - r->off : max;
    memcpy(buf, r->part + r->off, n);
    r->off += n;
    return (ssize_t)n;
}

static void mjpeg_free(void *cls) {
    mjpeg_reader *r = cls;
    free(r->part);
    free(r);
}

static enum MHD_Result mjpeg_stream(mi_assist_web *w, struct MHD_Connection *conn) {
    mjpeg_reader *r = calloc(1, sizeof *r);
    if (!r) return MHD_NO;
    r->w = w;
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, mjpeg_read, r, mjpeg_free);
    if (!resp) {
        free(r);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "multipart/x-mixed-replace; boundary=frame");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **ctx) {
    (void)version;
    mi_assist_web *w = cls;
    static int first;
    if (*ctx == NULL) { *ctx = &first; return MHD_YES; }   /* headers only so far */
    if (*upload_size) { *upload_size = 0; return MHD_YES; } /* a pedal's body means nothing: dropped */
    (void)upload;
    const bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (!strcmp(url, "/pedal")) {
        if (strcmp(method, "POST")) {
            static const char m[] = "{\"error\": \"/pedal takes POST\"}";
            return reply(conn, 405, "application/json", m, sizeof m - 1, MHD_RESPMEM_PERSISTENT);
        }
        pthread_mutex_lock(&w->mu);
        w->pedal++;
        pthread_mutex_unlock(&w->mu);
        static const char ok[] = "{\"pedal\": true}";
        return reply(conn, 200, "application/json", ok, sizeof ok - 1, MHD_RESPMEM_PERSISTENT);
    }
    if (!get) {
        static const char m[] = "{\"error\": \"only GET, and POST to /pedal\"}";
        return reply(conn, 405, "application/json", m, sizeof m - 1, MHD_RESPMEM_PERSISTENT);
    }
    if (!strcmp(url, "/") || !strcmp(url, "/index.html"))
        return reply(conn, 200, "text/html; charset=utf-8", PAGE, sizeof PAGE - 1, MHD_RESPMEM_PERSISTENT);
    if (!strncmp(url, "/thumb/", 7)) return thumbnail(w, conn, url + 7);
    if (!strcmp(url, "/stream.mjpg")) return mjpeg_stream(w, conn);
    static const char noframe[] = "{\"error\": \"no frame shown yet\"}";
    static const char nothing[] = "{\"error\": \"nothing yet\"}";
    pthread_mutex_lock(&w->mu);
    if (!strcmp(url, "/latest.jpg")) return reply_copy(w, conn, "image/jpeg", w->jpeg, w->jpeg_len, noframe);
    if (!strcmp(url, "/findings.json"))
        return reply_copy(w, conn, "application/json", w->findings, w->findings ? strlen(w->findings) : 0, nothing);
    if (!strcmp(url, "/status.json"))
        return reply_copy(w, conn, "application/json", w->status, w->status ? strlen(w->status) : 0, nothing);
    pthread_mutex_unlock(&w->mu);
    static const char nf[] = "{\"error\": \"no such page\"}";
    return reply(conn, 404, "application/json", nf, sizeof nf - 1, MHD_RESPMEM_PERSISTENT);
}

mi_status mi_assist_web_start(mi_assist_web **out, const char *bind, int port) {
    *out = NULL;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, bind ? bind : "127.0.0.1", &sa.sin_addr) != 1)
        return MI_FAIL(MI_ERR_ARG, "web view: '%s' is not an IPv4 address", bind);
    mi_assist_web *w = calloc(1, sizeof *w);
    if (!w) return MI_FAIL(MI_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->frame_cv, NULL);
    /* a thread per connection: a few browsers at most, and a slow one never holds up another */
    w->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                            0, NULL, NULL, on_request, w, MHD_OPTION_SOCK_ADDR, &sa,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_CONNECTION_LIMIT, (unsigned)32,
                            MHD_OPTION_END);
    if (!w->d) {
        pthread_cond_destroy(&w->frame_cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return MI_FAIL(MI_ERR_IO, "web view: cannot listen on %s:%d (in use?)", bind ? bind : "127.0.0.1", port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(w->d, MHD_DAEMON_INFO_BIND_PORT);
    w->port = info ? info->port : port;
    *out = w;
    return MI_OK;
}

int mi_assist_web_port(const mi_assist_web *w) { return w->port; }

mi_status mi_assist_web_set_server(mi_assist_web *w, const char *server, const char *token, long timeout_ms) {
    if (strlen(server) >= sizeof w->server || strlen(token) >= sizeof w->token)
        return MI_FAIL(MI_ERR_ARG, "web view: server URL or token too long");
    pthread_mutex_lock(&w->mu);
    snprintf(w->server, sizeof w->server, "%s", server);
    snprintf(w->token, sizeof w->token, "%s", token);
    w->timeout_ms = timeout_ms;
    pthread_mutex_unlock(&w->mu);
    return MI_OK;
}

void mi_assist_web_stop(mi_assist_web *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);   /* open MJPEG streams end, so their threads can be joined */
    w->stopping = true;
    pthread_cond_broadcast(&w->frame_cv);
    pthread_mutex_unlock(&w->mu);
    MHD_stop_daemon(w->d);
    pthread_cond_destroy(&w->frame_cv);
    free(w->jpeg);
    free(w->findings);
    free(w->status);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

/* a copy, NUL-terminated so the JSON ones are strings */
static void set_buf(mi_assist_web *w, uint8_t **dst, size_t *dlen, const void *src, size_t len) {
    uint8_t *copy = malloc(len + 1);
    if (!copy) return;   /* out of memory: the page keeps showing the previous one */
    memcpy(copy, src, len);
    copy[len] = 0;
    pthread_mutex_lock(&w->mu);
    free(*dst);
    *dst = copy;
    if (dlen) *dlen = len;
    pthread_mutex_unlock(&w->mu);
}

void mi_assist_web_set_frame(mi_assist_web *w, const uint8_t *jpeg, size_t len) {
    set_buf(w, &w->jpeg, &w->jpeg_len, jpeg, len);
    pthread_mutex_lock(&w->mu);
    w->frame_seq++;
    pthread_cond_broadcast(&w->frame_cv);
    pthread_mutex_unlock(&w->mu);
}
void mi_assist_web_set_findings(mi_assist_web *w, const char *json) {
    set_buf(w, (uint8_t **)&w->findings, NULL, json, strlen(json));
}
void mi_assist_web_set_status(mi_assist_web *w, const char *json) {
    set_buf(w, (uint8_t **)&w->status, NULL, json, strlen(json));
}

int mi_assist_web_take_pedal(mi_assist_web *w) {
    pthread_mutex_lock(&w->mu);
    int n = w->pedal;
    w->pedal = 0;
    pthread_mutex_unlock(&w->mu);
    return n;
}
