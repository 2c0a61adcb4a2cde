/* ops/error.c - the thread-local last error behind MI_FAIL and mi_last_error(). */
#include "medinfer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char     last_msg[1024];
static _Thread_local char     last_where[128];

/* Formatted aside first: callers that add context pass mi_last_error() itself as an argument
 * ("%s: input %s: %s"), and vsnprintf into the buffer it is reading garbles the message. */
mi_status mi_fail_at(mi_status code, const char *src, int line, const char *fmt, ...) {
    char msg[sizeof last_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_msg, msg, sizeof msg);
    snprintf(last_where, sizeof last_where, "%s:%d", src, line);
    return code;
}

const char *mi_last_error(void) { return last_msg; }
const char *mi_last_error_where(void) { return last_where; }

const char *mi_status_name(mi_status s) {
    switch (s) {
    case MI_OK: return "ok";
    case MI_ERR_IO: return "io error";
    case MI_ERR_FORMAT: return "format error";
    case MI_ERR_SHAPE: return "shape error";
    case MI_ERR_ARG: return "invalid argument";
    case MI_ERR_NOMEM: return "out of memory";
    case MI_ERR_UNSUPPORTED: return "unsupported";
    case MI_ERR_SECURITY: return "security error";
    }
    return "unknown error";
}

void mi_assert_fail(const char *expr, const char *src, int line, const char *fmt, ...) {
    fprintf(stderr, "medinfer: internal error at %s:%d: %s: ", src, line, expr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}
