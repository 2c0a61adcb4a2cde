/* pipelines/assist/request.c - parsing of what the diagnosis server receives (request.h).
 * Input here is hostile: every length is bounded before it is copied, numbers are parsed whole,
 * and images are checked on their header before stb_image decodes them. */
#include "pipelines/assist/request.h"

#include "weights/sha256.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tokens ---------------------------------------------------------------------------------- */

#define TOKEN_MIN 16
#define TOKEN_MAX 256
#define TOKENS_MAX 4096
#define TOKEN_FILE_MAX (1 << 20)

static bool token_char(int c) { return c > 0x20 && c < 0x7f; }

static void sha256(const void *p, size_t n, uint8_t d[32]) {
    mi_sha256_ctx c;
    mi_sha256_init(&c);
    mi_sha256_update(&c, p, n);
    mi_sha256_final(&c, d);
}

/* next whitespace-separated word of [p, end) on one line: *p advanced past it */
static size_t word(const char **p, const char *end, const char **w) {
    while (*p < end && (**p == ' ' || **p == '\t' || **p == '\r')) (*p)++;
    *w = *p;
    while (*p < end && **p != ' ' && **p != '\t' && **p != '\r') (*p)++;
    return (size_t)(*p - *w);
}

mi_status mi_assist_tokens_parse(mi_assist_tokens *out, const char *text, size_t n, const char *name) {
    out->t = NULL;
    out->n = 0;
    if (n > TOKEN_FILE_MAX) return MI_FAIL(MI_ERR_FORMAT, "%s: %zu bytes, more than a token file's %d", name, n, TOKEN_FILE_MAX);
    int cap = 0, line = 0;
    const char *p = text, *end = text + n;
    mi_status st = MI_OK;
    while (p < end) {
        line++;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *hash = memchr(p, '#', (size_t)(eol - p));
        const char *stop = hash ? hash : eol, *q = p, *f[4];
        size_t len[4];
        int nf = 0;
        while (nf < 4 && (len[nf] = word(&q, stop, &f[nf])) > 0) nf++;
        p = eol + (eol < end);
        if (nf == 0) continue;
        if (nf != 3) {
            st = MI_FAIL(MI_ERR_FORMAT, "%s:%d: expected TOKEN ROLE NAME, found %d field%s", name, line, nf, nf == 1 ? "" : "s");
            goto fail;
        }
        for (size_t i = 0; i < len[0]; i++)
            if (!token_char((unsigned char)f[0][i])) {
                st = MI_FAIL(MI_ERR_FORMAT, "%s:%d: the token has a byte 0x%02x outside printable ASCII", name, line,
                             (unsigned char)f[0][i]);
                goto fail;
            }
        if (len[0] < TOKEN_MIN || len[0] > TOKEN_MAX) {
            st = MI_FAIL(MI_ERR_FORMAT, "%s:%d: the token has %zu characters, expected %d..%d", name, line, len[0],
                         TOKEN_MIN, TOKEN_MAX);
            goto fail;
        }
        mi_assist_role role;
        if (len[1] == 8 && !memcmp(f[1], "terminal", 8)) role = MI_ASSIST_TERMINAL;
        else if (len[1] == 11 && !memcmp(f[1], "workstation", 11)) role = MI_ASSIST_WORKSTATION;
        else {
            st = MI_FAIL(MI_ERR_FORMAT, "%s:%d: role '%.*s' is neither terminal nor workstation", name, line,
                         (int)(len[1] > 40 ? 40 : len[1]), f[1]);
            goto fail;
        }
        if (!mi_assist_valid_id(f[2], len[2])) {
            st = MI_FAIL(MI_ERR_FORMAT, "%s:%d: name '%.*s' is not 1..63 of A-Z a-z 0-9 . _ -", name, line,
                         (int)(len[2] > 40 ? 40 : len[2]), f[2]);
            goto fail;
        }
        if (out->n == TOKENS_MAX) {
            st = MI_FAIL(MI_ERR_FORMAT, "%s:%d: more than %d tokens", name, line, TOKENS_MAX);
            goto fail;
        }
        if (out->n == cap) {
            cap = cap ? 2 * cap : 16;
            mi_assist_token *t = realloc(out->t, (size_t)cap * sizeof *t);
            if (!t) {
                st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", name);
                goto fail;
            }
            out->t = t;
        }
        mi_assist_token *t = &out->t[out->n];
        sha256(f[0], len[0], t->digest);
        t->role = role;
        memcpy(t->name, f[2], len[2]);
        t->name[len[2]] = 0;
        for (int i = 0; i < out->n; i++) {
            if (!memcmp(out->t[i].digest, t->digest, 32)) {
                st = MI_FAIL(MI_ERR_FORMAT, "%s:%d: the same token is given twice (also for '%s')", name, line, out->t[i].name);
                goto fail;
            }
            if (role == MI_ASSIST_TERMINAL && out->t[i].role == MI_ASSIST_TERMINAL && !strcmp(out->t[i].name, t->name)) {
                st = MI_FAIL(MI_ERR_FORMAT, "%s:%d: terminal '%s' has a second token", name, line, t->name);
                goto fail;
            }
        }
        out->n++;
    }
    if (out->n == 0) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: no token in the file (one TOKEN ROLE NAME per line)", name);
        goto fail;
    }
    return MI_OK;
fail:
    mi_assist_tokens_free(out);
    return st;
}

mi_status mi_assist_tokens_load(mi_assist_tokens *out, const char *path) {
    out->t = NULL;
    out->n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return MI_FAIL(MI_ERR_IO, "%s: cannot open the token file: %s", path, strerror(errno));
    char *buf = malloc(TOKEN_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t n = fread(buf, 1, TOKEN_FILE_MAX + 1, f);
    int err = ferror(f);
    fclose(f);
    mi_status st = err ? MI_FAIL(MI_ERR_IO, "%s: cannot read the token file", path)
                       : mi_assist_tokens_parse(out, buf, n, path);
    free(buf);
    return st;
}

void mi_assist_tokens_free(mi_assist_tokens *t) {
    free(t->t);
    t->t = NULL;
    t->n = 0;
}

const mi_assist_token *mi_assist_tokens_check(const mi_assist_tokens *t, const char *authorization) {
    if (!authorization) return NULL;
    const char *p = authorization;
    while (*p == ' ') p++;
    if (strncasecmp(p, "Bearer ", 7)) return NULL;
    p += 7;
    while (*p == ' ') p++;
    size_t n = 0;
    while (token_char((unsigned char)p[n]) && n <= TOKEN_MAX) n++;
    for (size_t i = n; p[i]; i++)
        if (p[i] != ' ' && p[i] != '\t') return NULL;
    if (n < TOKEN_MIN || n > TOKEN_MAX) return NULL;
    uint8_t d[32];
    sha256(p, n, d);
    /* every entry is compared in full, and the match is selected without a branch on secret
       bytes, so the time taken does not tell how much of a guess was right */
    const mi_assist_token *found = NULL;
    for (int i = 0; i < t->n; i++) {
        unsigned diff = 0;
        for (int k = 0; k < 32; k++) diff |= (unsigned)(d[k] ^ t->t[i].digest[k]);
        const uintptr_t mask = (uintptr_t)0 - (uintptr_t)(diff == 0);
        found = (const mi_assist_token *)(((uintptr_t)&t->t[i] & mask) | ((uintptr_t)found & ~mask));
    }
    return found;
}

bool mi_assist_tokens_has_terminal(const mi_assist_tokens *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (t->t[i].role == MI_ASSIST_TERMINAL && !strcmp(t->t[i].name, name)) return true;
    return false;
}

/* ---- request target ---------------------------------------------------------------------------- */

bool mi_assist_valid_id(const char *s, size_t n) {
    if (n < 1 || n >= MI_ASSIST_ID_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-') return false;
    return !(n <= 2 && s[0] == '.' && (n == 1 || s[1] == '.'));  /* "." and ".." are not names */
}

static const struct { const char *name, *method; } ROUTES[MI_ASSIST_R_COUNT] = {
    [MI_ASSIST_R_NONE] = { "other", NULL },
    [MI_ASSIST_R_METRICS] = { "/metrics", "GET" },
    [MI_ASSIST_R_EXAMS] = { "/v1/exams", "POST" },
    [MI_ASSIST_R_EXAM_CURRENT] = { "/v1/exams/current", "GET" },
    [MI_ASSIST_R_EXAM] = { "/v1/exams/{id}", "GET" },
    [MI_ASSIST_R_EXAM_CLOSE] = { "/v1/exams/{id}/close", "POST" },
    [MI_ASSIST_R_EXAM_FINDINGS] = { "/v1/exams/{id}/findings", "GET" },
    [MI_ASSIST_R_FRAMES] = { "/v1/frames", "POST" },
    [MI_ASSIST_R_THUMBNAIL] = { "/v1/findings/{fid}/thumbnail", "GET" },
};

const char *mi_assist_route_name(mi_assist_route r) {
    return r > MI_ASSIST_R_NONE && r < MI_ASSIST_R_COUNT ? ROUTES[r].name : "other";
}

const char *mi_assist_route_method(mi_assist_route r) {
    return r > MI_ASSIST_R_NONE && r < MI_ASSIST_R_COUNT ? ROUTES[r].method : NULL;
}

/* path == lit exactly */
static bool is(const char *path, size_t n, const char *lit) { return n == strlen(lit) && !memcmp(path, lit, n); }

void mi_assist_route_target(const char *target, mi_assist_target *t) {
    memset(t, 0, sizeof *t);
    const char *q = strchr(target, '?');
    const size_t n = q ? (size_t)(q - target) : strlen(target);
    t->query = q ? q + 1 : NULL;
    const char *p = target;
    if (is(p, n, "/metrics")) t->route = MI_ASSIST_R_METRICS;
    else if (is(p, n, "/v1/exams")) t->route = MI_ASSIST_R_EXAMS;
    else if (is(p, n, "/v1/exams/current")) t->route = MI_ASSIST_R_EXAM_CURRENT;
    else if (is(p, n, "/v1/frames")) t->route = MI_ASSIST_R_FRAMES;
    else {
        /* /v1/exams/{id}[/close|/findings], /v1/findings/{fid}/thumbnail */
        static const struct { const char *prefix, *suffix; mi_assist_route r; } withid[] = {
            { "/v1/exams/", "", MI_ASSIST_R_EXAM },
            { "/v1/exams/", "/close", MI_ASSIST_R_EXAM_CLOSE },
            { "/v1/exams/", "/findings", MI_ASSIST_R_EXAM_FINDINGS },
            { "/v1/findings/", "/thumbnail", MI_ASSIST_R_THUMBNAIL },
        };
        for (size_t i = 0; i < sizeof withid / sizeof *withid; i++) {
            const size_t a = strlen(withid[i].prefix), b = strlen(withid[i].suffix);
            if (n <= a + b || memcmp(p, withid[i].prefix, a) || memcmp(p + n - b, withid[i].suffix, b)) continue;
            const size_t idn = n - a - b;
            if (!mi_assist_valid_id(p + a, idn)) continue;
            memcpy(t->id, p + a, idn);
            t->id[idn] = 0;
            t->route = withid[i].r;
            break;
        }
    }
}

const char *mi_assist_trigger_name(mi_assist_trigger t) {
    return t == MI_ASSIST_FREEZE ? "freeze" : t == MI_ASSIST_PEDAL ? "pedal" : "auto";
}

static int hexval(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* percent-decodes [s, s+n) into out (cap bytes with the NUL); false when malformed, too long,
   or decoding to a control byte */
static bool decode(const char *s, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '+') c = ' ';
        else if (c == '%') {
            if (i + 2 >= n) return false;
            int h = hexval((unsigned char)s[i + 1]), l = hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0) return false;
            c = h * 16 + l;
            i += 2;
        }
        if (c < 0x20 || c == 0x7f || o + 1 >= cap) return false;
        out[o++] = (char)c;
    }
    out[o] = 0;
    return true;
}

mi_status mi_assist_parse_frame_query(const char *query, mi_assist_frame_query *q) {
    memset(q, 0, sizeof *q);
    bool have[3] = { false, false, false };
    static const char *const keys[3] = { "exam", "timestamp_ms", "trigger" };
    const char *p = query ? query : "";
    while (*p) {
        const char *amp = strchr(p, '&');
        const size_t n = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (n == 0) {           /* "a=1&&b=2": an empty pair is nothing */
            p += amp ? 1 : 0;
            continue;
        }
        if (!eq)
            return MI_FAIL(MI_ERR_ARG, "query parameter '%.*s' has no value (expected exam=ID&timestamp_ms=N&trigger=auto|freeze|pedal)",
                           (int)(n > 40 ? 40 : n), p);
        char key[32], val[MI_ASSIST_ID_MAX];
        if (!decode(p, (size_t)(eq - p), key, sizeof key))
            return MI_FAIL(MI_ERR_ARG, "query parameter '%.*s' is not one of exam, timestamp_ms, trigger",
                           (int)((eq - p) > 40 ? 40 : (eq - p)), p);
        int k = -1;
        for (int i = 0; i < 3; i++)
            if (!strcmp(key, keys[i])) k = i;
        if (k < 0) return MI_FAIL(MI_ERR_ARG, "query parameter '%s' is not one of exam, timestamp_ms, trigger", key);
        if (have[k]) return MI_FAIL(MI_ERR_ARG, "query parameter '%s' is given twice", key);
        have[k] = true;
        const size_t vn = n - (size_t)(eq + 1 - p);
        if (!decode(eq + 1, vn, val, sizeof val))
            return MI_FAIL(MI_ERR_ARG, "query parameter '%s' has a malformed or over-long value", key);
        if (k == 0) {
            if (!mi_assist_valid_id(val, strlen(val)))
                return MI_FAIL(MI_ERR_ARG, "query parameter 'exam' = '%s' is not an exam ID (1..63 of A-Z a-z 0-9 . _ -)", val);
            strcpy(q->exam, val);
        } else if (k == 1) {
            char *e;
            errno = 0;
            long long v = strtoll(val, &e, 10);
            if (!val[0] || *e || errno || v < 0 || v > 9007199254740991LL || !isdigit((unsigned char)val[0]))
                return MI_FAIL(MI_ERR_ARG, "query parameter 'timestamp_ms' = '%s' is not a whole number of milliseconds 0..2^53-1", val);
            q->timestamp_ms = v;
        } else {
            if (!strcmp(val, "auto")) q->trigger = MI_ASSIST_AUTO;
            else if (!strcmp(val, "freeze")) q->trigger = MI_ASSIST_FREEZE;
            else if (!strcmp(val, "pedal")) q->trigger = MI_ASSIST_PEDAL;
            else return MI_FAIL(MI_ERR_ARG, "query parameter 'trigger' = '%s' is not auto, freeze or pedal", val);
        }
        p += n + (amp ? 1 : 0);
    }
    for (int i = 0; i < 3; i++)
        if (!have[i])
            return MI_FAIL(MI_ERR_ARG, "query parameter '%s' is missing (expected exam=ID&timestamp_ms=N&trigger=auto|freeze|pedal)",
                           keys[i]);
    return MI_OK;
}

/* ---- bodies ---------------------------------------------------------------------------------------- */

#define EXAM_BODY_MAX 4096

static mi_status text_field(const cJSON *o, const char *key, char *out, size_t cap, bool id) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return MI_FAIL(MI_ERR_ARG, "exam: field '%s' is missing", key);
    if (!cJSON_IsString(v)) return MI_FAIL(MI_ERR_ARG, "exam: field '%s' is not a string", key);
    const char *s = v->valuestring;
    const size_t n = strlen(s);
    if (id && !mi_assist_valid_id(s, n))
        return MI_FAIL(MI_ERR_ARG, "exam: '%s' is not 1..63 of A-Z a-z 0-9 . _ -", key);
    if (n < 1 || n >= cap) return MI_FAIL(MI_ERR_ARG, "exam: '%s' has %zu bytes, expected 1..%zu", key, n, cap - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return MI_FAIL(MI_ERR_ARG, "exam: '%s' contains a control character", key);
    memcpy(out, s, n + 1);
    return MI_OK;
}

mi_status mi_assist_parse_exam(const char *body, size_t n, mi_assist_exam_req *e) {
    memset(e, 0, sizeof *e);
    if (n == 0) return MI_FAIL(MI_ERR_ARG, "exam: the body is empty (expected a JSON object)");
    if (n > EXAM_BODY_MAX) return MI_FAIL(MI_ERR_ARG, "exam: the body has %zu bytes, more than %d", n, EXAM_BODY_MAX);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(body, n, &end, false);
    if (!j) {
        const size_t at = end && end >= body && end <= body + n ? (size_t)(end - body) : 0;
        return MI_FAIL(MI_ERR_ARG, "exam: the body is not valid JSON (error at byte %zu)", at);
    }
    /* only whitespace may follow the value */
    for (const char *p = end; p && p < body + n; p++)
        if (!isspace((unsigned char)*p)) {
            cJSON_Delete(j);
            return MI_FAIL(MI_ERR_ARG, "exam: the body has bytes after its JSON value (at byte %zu)", (size_t)(p - body));
        }
    mi_status st = MI_OK;
    if (!cJSON_IsObject(j)) {
        st = MI_FAIL(MI_ERR_ARG, "exam: the body is JSON but not an object");
        goto done;
    }
    static const char *const known[] = { "terminal", "patient_id", "exam_number", "age", "sex" };
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof *known; i++) ok |= it->string && !strcmp(it->string, known[i]);
        if (!ok) {
            char k[41];
            snprintf(k, sizeof k, "%s", it->string ? it->string : "");
            for (char *c = k; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == '"') *c = '?';
            st = MI_FAIL(MI_ERR_ARG, "exam: unknown field '%s' (expected terminal, patient_id, exam_number, age, sex)", k);
            goto done;
        }
        for (const cJSON *o = it->next; o; o = o->next)
            if (o->string && it->string && !strcmp(o->string, it->string)) {
                st = MI_FAIL(MI_ERR_ARG, "exam: field '%s' is given twice", it->string);
                goto done;
            }
    }
    if ((st = text_field(j, "terminal", e->terminal, sizeof e->terminal, true)) ||
        (st = text_field(j, "patient_id", e->patient_id, sizeof e->patient_id, false)) ||
        (st = text_field(j, "exam_number", e->exam_number, sizeof e->exam_number, false)))
        goto done;
    const cJSON *age = cJSON_GetObjectItemCaseSensitive(j, "age");
    if (!age) {
        st = MI_FAIL(MI_ERR_ARG, "exam: field 'age' is missing");
        goto done;
    }
    if (!cJSON_IsNumber(age) || !(age->valuedouble >= 0 && age->valuedouble <= 150) ||
        age->valuedouble != (double)(int)age->valuedouble) {
        st = MI_FAIL(MI_ERR_ARG, "exam: 'age' is not a whole number of years 0..150");
        goto done;
    }
    e->age = (int)age->valuedouble;
    const cJSON *sex = cJSON_GetObjectItemCaseSensitive(j, "sex");
    const char *s = cJSON_GetStringValue(sex);
    if (!sex) st = MI_FAIL(MI_ERR_ARG, "exam: field 'sex' is missing");
    else if (!s || strlen(s) != 1 || !strchr("FMO", s[0]))
        st = MI_FAIL(MI_ERR_ARG, "exam: 'sex' is not \"F\", \"M\" or \"O\"");
    else e->sex = s[0];
done:
    cJSON_Delete(j);
    return st;
}

mi_assist_image_type mi_assist_content_type(const char *ct) {
    if (!ct) return MI_ASSIST_IMG_NONE;
    while (*ct == ' ' || *ct == '\t') ct++;
    size_t n = 0;
    while (ct[n] && ct[n] != ';' && ct[n] != ' ' && ct[n] != '\t') n++;
    for (size_t i = n; ct[i] && ct[i] != ';'; i++)
        if (ct[i] != ' ' && ct[i] != '\t') return MI_ASSIST_IMG_NONE;
    if (n == 10 && !strncasecmp(ct, "image/jpeg", 10)) return MI_ASSIST_IMG_JPEG;
    if (n == 9 && !strncasecmp(ct, "image/png", 9)) return MI_ASSIST_IMG_PNG;
    return MI_ASSIST_IMG_NONE;
}

mi_status mi_assist_check_frame(const void *data, size_t n, mi_assist_image_type type, int max_side,
                                long long max_pixels, int *w, int *h) {
    static const uint8_t png[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    const uint8_t *b = data;
    *w = *h = 0;
    if (n == 0) return MI_FAIL(MI_ERR_ARG, "frame: the body is empty");
    if (type == MI_ASSIST_IMG_PNG && (n < 8 || memcmp(b, png, 8)))
        return MI_FAIL(MI_ERR_ARG, "frame: Content-Type says image/png but the body does not start with the PNG signature");
    if (type == MI_ASSIST_IMG_JPEG && (n < 3 || b[0] != 0xff || b[1] != 0xd8 || b[2] != 0xff))
        return MI_FAIL(MI_ERR_ARG, "frame: Content-Type says image/jpeg but the body does not start with a JPEG SOI marker");
    if (type == MI_ASSIST_IMG_NONE) return MI_FAIL(MI_ERR_ARG, "frame: not image/jpeg or image/png");
    mi_status st = mi_image_info_memory(data, n, "frame", w, h);
    if (st) return MI_FAIL(MI_ERR_ARG, "%s", mi_last_error());
    if (*w > max_side || *h > max_side || (long long)*w * *h > max_pixels)
        return MI_FAIL(MI_ERR_ARG, "frame: %dx%d pixels, more than this server takes (%d per side, %lld in all)", *w, *h,
                       max_side, max_pixels);
    return MI_OK;
}

mi_status mi_assist_decode_frame(mi_image *img, const void *data, size_t n, mi_assist_image_type type,
                                 int max_side, long long max_pixels) {
    memset(img, 0, sizeof *img);
    int w, h;
    mi_status st = mi_assist_check_frame(data, n, type, max_side, max_pixels, &w, &h);
    if (st) return st;
    if ((st = mi_image_load_memory(img, data, n, "frame"))) return MI_FAIL(MI_ERR_ARG, "%s", mi_last_error());
    return MI_OK;
}
