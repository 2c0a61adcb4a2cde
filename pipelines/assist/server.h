/* pipelines/assist/server.h - the diagnosis server of the endoscopy assistant (docs/assist.md):
 * HTTP/1.1 + JSON on libmicrohttpd, one thread per connection (at most max_connections), a
 * bounded queue of frames in front of a pool of workers, each with its own session on the one
 * shared model, and the findings database (store.h). */
#ifndef MI_ASSIST_SERVER_H
#define MI_ASSIST_SERVER_H

#include "medinfer.h"
#include "pipelines/assist/quality.h"
#include "pipelines/assist/request.h"
#include "pipelines/assist/store.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *bind;              /* IPv4 or IPv6 address; NULL: 127.0.0.1 */
    int         port;              /* 0: any free one (mi_assist_server_port says which) */
    int         workers;           /* >= 1 */
    int         threads;           /* OpenMP threads per worker; 0: cores / workers, at least 1 */
    int         queue;             /* frames waiting for a worker, >= 1; more get 503 */
    int         max_connections;   /* open connections, >= 1; more are refused at accept */
    size_t      max_body;          /* bytes; a larger body gets 413 */
    int         max_side;          /* frame pixels per side */
    long long   max_pixels;        /* frame pixels in all */
    float       score_threshold, alert_threshold;
    int         thumbnail_side;    /* thumbnails' longer side, pixels */
    int         retry_after_s;     /* Retry-After of a 503 */
    int         timeout_s;         /* an idle connection is closed after this */
    mi_quality_thresholds quality;
    bool        log;               /* one line per request on stderr */
} mi_assist_server_opts;

/* The defaults documented in docs/assist.md (workers: the cores). */
void mi_assist_server_defaults(mi_assist_server_opts *o);

typedef struct mi_assist_server mi_assist_server;

/* Starts listening and the workers. The model, tokens and store must outlive the server. */
mi_status mi_assist_server_start(mi_assist_server **s, const mi_model *m, const mi_assist_tokens *tokens,
                                 mi_assist_store *store, const mi_assist_server_opts *o);
int       mi_assist_server_port(const mi_assist_server *s);
/* Graceful stop: no new connections, requests in flight (queued frames included) are answered
 * (waiting at most grace_s seconds), then the workers and the listener stop. */
void      mi_assist_server_stop(mi_assist_server *s, int grace_s);

#endif
