/* fuzz/fuzz_assist_http.c - what the diagnosis server parses from a request's head and its token
 * file (pipelines/assist/request.c): the request target (route and {id}), the /v1/frames query,
 * the Authorization and Content-Type header values, and the token file.
 *
 * Input: up to four '\n'-separated parts - target, Authorization value, Content-Type value - and
 * the rest is a token file. Promises checked: a routed target has a valid {id} exactly when its
 * route takes one; a parsed query holds a valid exam ID, a timestamp in 0..2^53-1 and a known
 * trigger, and a refusal names a query parameter; a token file is accepted only with 1..4096
 * entries of valid names, and a refusal names the file; the Authorization check only ever
 * returns one of the file's entries. */
#include "fuzz/fuzz.h"
#include "pipelines/assist/request.h"

#include <string.h>

#define NAME "fuzz.tokens"

/* part k of data as a NUL-terminated copy; *rest: what follows the third '\n' */
static char *part(const uint8_t *data, size_t size, int k, size_t *off) {
    size_t start = *off, end = start;
    while (end < size && (k == 3 || data[end] != '\n')) end++;
    char *s = malloc(end - start + 1);
    if (!s) abort();
    memcpy(s, data + start, end - start);
    s[end - start] = 0;
    *off = end < size ? end + 1 : end;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t off = 0;
    char *target = part(data, size, 0, &off), *auth = part(data, size, 1, &off), *ctype = part(data, size, 2, &off);
    const size_t tok_off = off;

    mi_assist_target t;
    mi_assist_route_target(target, &t);
    FUZZ_CHECK(t.route >= MI_ASSIST_R_NONE && t.route < MI_ASSIST_R_COUNT, "route %d", (int)t.route);
    const bool with_id = t.route == MI_ASSIST_R_EXAM || t.route == MI_ASSIST_R_EXAM_CLOSE ||
                         t.route == MI_ASSIST_R_EXAM_FINDINGS || t.route == MI_ASSIST_R_THUMBNAIL;
    FUZZ_CHECK(with_id ? mi_assist_valid_id(t.id, strlen(t.id)) : t.id[0] == 0, "route %s with id '%s'",
               mi_assist_route_name(t.route), t.id);
    FUZZ_CHECK(t.route == MI_ASSIST_R_NONE || mi_assist_route_method(t.route), "a route without a method");

    mi_assist_frame_query q;
    if (mi_assist_parse_frame_query(t.query, &q) == MI_OK) {
        FUZZ_CHECK(mi_assist_valid_id(q.exam, strlen(q.exam)), "exam '%s' accepted", q.exam);
        FUZZ_CHECK(q.timestamp_ms >= 0 && q.timestamp_ms <= 9007199254740991LL, "timestamp %lld", q.timestamp_ms);
        FUZZ_CHECK(q.trigger >= MI_ASSIST_AUTO && q.trigger <= MI_ASSIST_PEDAL, "trigger %d", (int)q.trigger);
    } else {
        FUZZ_CHECK(strstr(mi_last_error(), "query parameter"), "message names no parameter: %s", mi_last_error());
    }

    mi_assist_image_type it = mi_assist_content_type(ctype);
    FUZZ_CHECK(it == MI_ASSIST_IMG_NONE || !strncasecmp(ctype + strspn(ctype, " \t"), "image/", 6), "'%s' taken as an image type", ctype);

    mi_assist_tokens tok;
    if (mi_assist_tokens_parse(&tok, (const char *)data + tok_off, size - tok_off, NAME) == MI_OK) {
        FUZZ_CHECK(tok.n >= 1 && tok.n <= 4096, "%d tokens", tok.n);
        for (int i = 0; i < tok.n; i++)
            FUZZ_CHECK(mi_assist_valid_id(tok.t[i].name, strlen(tok.t[i].name)) &&
                       (tok.t[i].role == MI_ASSIST_TERMINAL || tok.t[i].role == MI_ASSIST_WORKSTATION),
                       "entry %d: '%s' role %d", i, tok.t[i].name, (int)tok.t[i].role);
        const mi_assist_token *who = mi_assist_tokens_check(&tok, auth);
        FUZZ_CHECK(!who || (who >= tok.t && who < tok.t + tok.n), "a token outside the file");
        mi_assist_tokens_free(&tok);
    } else {
        FUZZ_CHECK(strstr(mi_last_error(), NAME), "message does not name the file: %s", mi_last_error());
        FUZZ_CHECK(tok.t == NULL && tok.n == 0, "refused, yet entries");
    }
    free(target);
    free(auth);
    free(ctype);
    return 0;
}
