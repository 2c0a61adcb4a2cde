/* pipelines/assist/request.h - everything the diagnosis server reads from the network, parsed
 * without libmicrohttpd: the token file and the Authorization header, the request target (path
 * and query), the exam JSON body and the frame image body. server.c calls these with what MHD
 * hands it; fuzz/fuzz_assist_*.c call them with raw bytes. Every refusal is an mi_status with a
 * one-sentence message in mi_last_error() that the server sends back as {"error": ...}. */
#ifndef MI_ASSIST_REQUEST_H
#define MI_ASSIST_REQUEST_H

#include "medinfer.h"
#include "pipelines/io/image.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MI_ASSIST_ID_MAX 64       /* exam IDs, terminal names: 1..63 of [A-Za-z0-9._-] */
#define MI_ASSIST_TEXT_MAX 128    /* patient_id, exam_number: 1..127 printable characters */

/* ---- tokens ------------------------------------------------------------------------------------
 * The token file: one "TOKEN ROLE NAME" per line, '#' starts a comment, blank lines ignored.
 * TOKEN: 16..256 printable non-space ASCII characters; ROLE: terminal (NAME is the terminal's ID)
 * or workstation (NAME names it in logs). Only the tokens' SHA-256 are kept, and a presented
 * token is compared with every one of them in constant time. */
typedef enum { MI_ASSIST_TERMINAL = 1, MI_ASSIST_WORKSTATION = 2 } mi_assist_role;

typedef struct {
    uint8_t        digest[32];
    mi_assist_role role;
    char           name[MI_ASSIST_ID_MAX];
} mi_assist_token;

typedef struct {
    mi_assist_token *t;
    int              n;
} mi_assist_tokens;

/* Errors name `name` (the file) and the line. A token given twice, or a terminal named twice,
 * is refused. At least one token. */
mi_status mi_assist_tokens_parse(mi_assist_tokens *out, const char *text, size_t n, const char *name);
mi_status mi_assist_tokens_load(mi_assist_tokens *out, const char *path);
void      mi_assist_tokens_free(mi_assist_tokens *t);
/* The token an Authorization header value ("Bearer <token>") presents; NULL when the header is
 * absent, malformed or names no token. */
const mi_assist_token *mi_assist_tokens_check(const mi_assist_tokens *t, const char *authorization);
bool mi_assist_tokens_has_terminal(const mi_assist_tokens *t, const char *name);

/* ---- request target ------------------------------------------------------------------------------ */
typedef enum {
    MI_ASSIST_R_NONE = 0,          /* no such resource: 404 */
    MI_ASSIST_R_METRICS,           /* GET  /metrics */
    MI_ASSIST_R_EXAMS,             /* POST /v1/exams */
    MI_ASSIST_R_EXAM_CURRENT,      /* GET  /v1/exams/current */
    MI_ASSIST_R_EXAM,              /* GET  /v1/exams/{id} */
    MI_ASSIST_R_EXAM_CLOSE,        /* POST /v1/exams/{id}/close */
    MI_ASSIST_R_EXAM_FINDINGS,     /* GET  /v1/exams/{id}/findings */
    MI_ASSIST_R_FRAMES,            /* POST /v1/frames */
    MI_ASSIST_R_THUMBNAIL,         /* GET  /v1/findings/{fid}/thumbnail */
    MI_ASSIST_R_COUNT
} mi_assist_route;

typedef struct {
    mi_assist_route route;
    char            id[MI_ASSIST_ID_MAX];  /* {id} or {fid}, "" for routes without one */
    const char     *query;                 /* into the target after '?', NULL when none */
} mi_assist_target;

/* Splits a request target "/path?query" (as sent, not decoded) and routes the path. The route is
 * MI_ASSIST_R_NONE for any path not listed above, including one whose {id} is not 1..63 of
 * [A-Za-z0-9._-]. */
void mi_assist_route_target(const char *target, mi_assist_target *t);
/* The route's template ("/v1/exams/{id}"), for metrics labels; "other" for R_NONE. */
const char *mi_assist_route_name(mi_assist_route r);
/* The one method the route takes ("GET" or "POST"), for 405 and its Allow header. */
const char *mi_assist_route_method(mi_assist_route r);
bool        mi_assist_valid_id(const char *s, size_t n);

typedef enum { MI_ASSIST_AUTO = 0, MI_ASSIST_FREEZE, MI_ASSIST_PEDAL } mi_assist_trigger;
const char *mi_assist_trigger_name(mi_assist_trigger t);

typedef struct {
    char              exam[MI_ASSIST_ID_MAX];
    long long         timestamp_ms;         /* 0 .. 2^53 - 1 */
    mi_assist_trigger trigger;
} mi_assist_frame_query;

/* "exam=ID&timestamp_ms=N&trigger=auto|freeze|pedal" (percent-encoding and '+' decoded, any
 * order, each exactly once, nothing else). query may be NULL (no '?'). */
mi_status mi_assist_parse_frame_query(const char *query, mi_assist_frame_query *q);

/* ---- bodies -------------------------------------------------------------------------------------- */
typedef struct {
    char terminal[MI_ASSIST_ID_MAX];
    char patient_id[MI_ASSIST_TEXT_MAX];
    char exam_number[MI_ASSIST_TEXT_MAX];
    int  age;                 /* 0..150 */
    char sex;                 /* 'F', 'M' or 'O' */
} mi_assist_exam_req;

/* POST /v1/exams's body: a JSON object with exactly the fields terminal, patient_id,
 * exam_number (strings), age (a whole number 0..150) and sex ("F", "M" or "O"). The terminal is
 * only checked for its spelling here (server: that it is in the token file). */
mi_status mi_assist_parse_exam(const char *body, size_t n, mi_assist_exam_req *e);

typedef enum { MI_ASSIST_IMG_NONE = 0, MI_ASSIST_IMG_JPEG, MI_ASSIST_IMG_PNG } mi_assist_image_type;
/* image/jpeg or image/png (case-insensitive, parameters after ';' ignored); NONE otherwise
 * (NULL included): 415. */
mi_assist_image_type mi_assist_content_type(const char *content_type);

/* The frame body: the bytes must be of the type the Content-Type says (by their signature),
 * within max_side x max_side and max_pixels (checked on the header, before decoding), then
 * decoded to RGB8 (img, mi_image_free). */
mi_status mi_assist_decode_frame(mi_image *img, const void *data, size_t n, mi_assist_image_type type,
                                 int max_side, long long max_pixels);
/* Only the checks before decoding (signature, header, size limits): what the server does before
 * a frame is queued. *w, *h get the size. */
mi_status mi_assist_check_frame(const void *data, size_t n, mi_assist_image_type type, int max_side,
                                long long max_pixels, int *w, int *h);

#endif
