/* medinfer - public C API of the engine core (ops/, nn/, weights/).
 *
 * Everything that can fail because of input or resources returns mi_status; the one-sentence
 * reason (naming the file, the thing, expected vs found) is in mi_last_error(). The library never
 * calls exit() and never asserts on file bytes. MI_ASSERT is for our own bugs only. */
#ifndef MEDINFER_H
#define MEDINFER_H

#include <stddef.h>
#include <stdint.h>

#define MI_VERSION "0.1.0"

typedef enum {
    MI_OK = 0,
    MI_ERR_IO,          /* cannot open / read / write a file */
    MI_ERR_FORMAT,      /* bytes on disk are not what the format says */
    MI_ERR_SHAPE,       /* a tensor has the wrong shape or dtype */
    MI_ERR_ARG,         /* a caller passed an invalid argument */
    MI_ERR_NOMEM,       /* allocation failed */
    MI_ERR_UNSUPPORTED, /* valid, but not something this engine does */
    MI_ERR_SECURITY,    /* signature / trust failure */
} mi_status;

/* Records code + message + where (file:line) for mi_last_error(); returns code. Thread-local. */
mi_status mi_fail_at(mi_status code, const char *src, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define MI_FAIL(code, ...) mi_fail_at((code), __FILE__, __LINE__, __VA_ARGS__)
const char *mi_last_error(void);        /* "" when none */
const char *mi_last_error_where(void);  /* "ops/conv.c:123" */
const char *mi_status_name(mi_status s);

/* Our bugs, not bad input: always on, prints both sides and aborts. */
void mi_assert_fail(const char *expr, const char *src, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));
#define MI_ASSERT(c) do { if (!(c)) mi_assert_fail(#c, __FILE__, __LINE__, " "); } while (0)
#define MI_ASSERT_EQ(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
    if (a_ != b_) mi_assert_fail(#a " == " #b, __FILE__, __LINE__, "%lld != %lld", a_, b_); } while (0)

/* true when a*b overflows size_t (sizes read from files go through this) */
static inline int mi_mul_overflows(size_t a, size_t b, size_t *out) {
    return __builtin_mul_overflow(a, b, out);
}

#endif
