/* pipelines/assist/terminal_net.h - the terminal's two network ends: the client of the diagnosis
 * server (libcurl, on a thread of its own, so the video never waits for the network) and the
 * local web view (libmicrohttpd). */
#ifndef MI_ASSIST_TERMINAL_NET_H
#define MI_ASSIST_TERMINAL_NET_H

#include "medinfer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- HTTP helpers ---- */

typedef struct {
    long    code;          /* HTTP status; 0 when no answer came (connection refused, timeout) */
    bool    timed_out;
    char   *body;          /* NUL-terminated, malloc'd; NULL when none */
    size_t  len;
    long    retry_after_s; /* Retry-After of a 503, else 0 */
    char    error[256];    /* libcurl's words when code is 0 */
} mi_http_reply;
void mi_http_reply_free(mi_http_reply *r);

/* One GET with the bearer token; fresh: a new connection rather than a kept one. Answers bodies
 * of at most 4 MiB (more is a failure). Never fails as a call: the reply says what happened. */
void mi_http_get(mi_http_reply *r, const char *url, const char *token, long timeout_ms);

/* ---- the frame client: one request in flight ---- */

typedef struct mi_assist_client mi_assist_client;

typedef enum { MI_REQ_NONE = 0, MI_REQ_ANSWER, MI_REQ_FAILED } mi_req_state;

typedef struct {
    mi_req_state  state;
    char          exam_id[128];/* the exam the frame was sent for */
    int64_t       frame;       /* the frame index the request carried */
    int64_t       t_ms;        /* its timestamp */
    const char   *trigger;
    double        rtt_ms;      /* submit to answer, wall clock */
    mi_http_reply reply;       /* owned by the caller after poll: mi_http_reply_free */
} mi_req_result;

/* server: base URL ("http://127.0.0.1:8080"); timeout_ms bounds each request from submit to
 * answer (connect included). */
mi_status mi_assist_client_start(mi_assist_client **c, const char *server, const char *token, long timeout_ms);
void      mi_assist_client_stop(mi_assist_client *c);   /* waits for a request in flight to end */
/* Hands one frame (body: an encoded JPEG, content_type "image/jpeg"; the client takes ownership
 * of body) to the client thread. false when a request is still in flight: the caller keeps the
 * one-in-flight rule by asking mi_assist_client_busy() first; a false here is its bug. */
bool mi_assist_client_post(mi_assist_client *c, const char *exam_id, int64_t frame, int64_t t_ms,
                           const char *trigger, uint8_t *body, size_t len, const char *content_type);
bool mi_assist_client_busy(mi_assist_client *c);
/* The finished request, if one finished since the last poll: true and *r filled. */
bool mi_assist_client_poll(mi_assist_client *c, mi_req_result *r);

/* ---- the web view ---- */

typedef struct mi_assist_web mi_assist_web;

/* Listens on 127.0.0.1 (bind: another address) port (0 = any free one; mi_assist_web_port says
 * which). Serves / (the page), /latest.jpg (the last overlaid frame), /findings.json (the exam's
 * findings as the server gave them), /thumb/{id} (a finding's thumbnail), /status.json (counters,
 * fault) and POST /pedal. */
mi_status mi_assist_web_start(mi_assist_web **w, const char *bind, int port);
int       mi_assist_web_port(const mi_assist_web *w);
void      mi_assist_web_stop(mi_assist_web *w);
/* Replaces what the pages show (copies; called by the terminal's loop and its findings thread). */
void mi_assist_web_set_frame(mi_assist_web *w, const uint8_t *jpeg, size_t len);
void mi_assist_web_set_findings(mi_assist_web *w, const char *json);
void mi_assist_web_set_status(mi_assist_web *w, const char *json);
/* GET /thumb/{finding id} on the page is answered with the server's thumbnail of that finding,
 * fetched with this token (which never reaches the browser); without this call: 404. */
mi_status mi_assist_web_set_server(mi_assist_web *w, const char *server, const char *token, long timeout_ms);
/* Pedal presses posted since the last call (the count, reset to 0). */
int  mi_assist_web_take_pedal(mi_assist_web *w);

#endif
