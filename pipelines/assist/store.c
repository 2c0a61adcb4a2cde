/* pipelines/assist/store.c - the findings database (store.h).
 *
 * Each table is its own chain, built like the audit log's (pipelines/trust/audit.c): a row's
 * row_hash is SHA-256 of "medinfer-assist-v1\n", the table name, its seq, every field and the
 * previous row's hash, each as "<byte length>:<bytes>\n" (so no two different rows encode
 * alike). Integers are hashed as %lld, reals as %.17g (which SQLite's 8-byte REAL gives back
 * exactly), text as is, the thumbnail blob as its SHA-256 in hex. A row whose stored type differs
 * from the column's (text where a real was) fails verification too. Triggers stop UPDATE and
 * DELETE by honest tools; the chain, the seq gaps and sqlite_sequence catch the rest, except a
 * rewrite of every later row: keep the heads --verify-db prints elsewhere for that. */
#include "pipelines/assist/store.h"
#include "pipelines/io/outside_db.h"

#include "weights/sha256.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

struct mi_assist_store {
    sqlite3        *db;
    char           *path;
    pthread_mutex_t mu;
};

/* ---- the tables, their columns and how each is hashed ---------------------------------------- */

typedef struct { const char *name; char type; } column;   /* type: i integer, d real, s text, b blob */

enum { T_EXAMS, T_FINDINGS, T_EVENTS, NTABLES };
static const char *const TABLE[NTABLES] = { "exams", "findings", "events" };
static const column EXAM_COLS[] = {
    { "exam_id", 's' }, { "terminal", 's' }, { "patient_id", 's' }, { "exam_number", 's' },
    { "age", 'i' }, { "sex", 's' }, { "opened", 's' }, { "opened_by", 's' },
};
static const column FINDING_COLS[] = {
    { "exam_id", 's' }, { "terminal", 's' }, { "timestamp_ms", 'i' }, { "received", 's' },
    { "trigger", 's' }, { "type", 's' }, { "score", 'd' }, { "probs", 's' }, { "box", 's' },
    { "high_risk", 'i' }, { "model_arch", 's' }, { "model_version", 's' }, { "model_sha256", 's' },
    { "thumbnail", 'b' },
};
static const column EVENT_COLS[] = {
    { "time", 's' }, { "kind", 's' }, { "exam_id", 's' }, { "terminal", 's' }, { "finding_id", 'i' },
    { "detail", 's' },
};
static const column *const COLS[NTABLES] = { EXAM_COLS, FINDING_COLS, EVENT_COLS };
static const int NCOLS[NTABLES] = { 8, 14, 6 };
#define MAXCOLS 14

static const char *SCHEMA =
    "CREATE TABLE IF NOT EXISTS exams ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, exam_id TEXT NOT NULL UNIQUE, terminal TEXT NOT NULL,"
    " patient_id TEXT NOT NULL, exam_number TEXT NOT NULL, age INTEGER NOT NULL, sex TEXT NOT NULL,"
    " opened TEXT NOT NULL, opened_by TEXT NOT NULL, prev_hash TEXT NOT NULL, row_hash TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS findings ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, exam_id TEXT NOT NULL, terminal TEXT NOT NULL,"
    " timestamp_ms INTEGER NOT NULL, received TEXT NOT NULL, trigger TEXT NOT NULL, type TEXT NOT NULL,"
    " score REAL NOT NULL, probs TEXT NOT NULL, box TEXT NOT NULL, high_risk INTEGER NOT NULL,"
    " model_arch TEXT NOT NULL, model_version TEXT NOT NULL, model_sha256 TEXT NOT NULL,"
    " thumbnail BLOB NOT NULL, prev_hash TEXT NOT NULL, row_hash TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS events ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, kind TEXT NOT NULL, exam_id TEXT NOT NULL,"
    " terminal TEXT NOT NULL, finding_id INTEGER NOT NULL, detail TEXT NOT NULL,"
    " prev_hash TEXT NOT NULL, row_hash TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS exams_terminal ON exams(terminal, seq);"
    "CREATE INDEX IF NOT EXISTS findings_exam ON findings(exam_id, seq);"
    "CREATE INDEX IF NOT EXISTS events_exam ON events(exam_id, kind);"
    "CREATE TRIGGER IF NOT EXISTS exams_no_update BEFORE UPDATE ON exams BEGIN SELECT RAISE(ABORT, 'exams is append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS exams_no_delete BEFORE DELETE ON exams BEGIN SELECT RAISE(ABORT, 'exams is append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS findings_no_update BEFORE UPDATE ON findings BEGIN SELECT RAISE(ABORT, 'findings is append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS findings_no_delete BEFORE DELETE ON findings BEGIN SELECT RAISE(ABORT, 'findings is append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;";

typedef struct {
    long long   i;
    double      d;
    const char *s;
    const void *b;
    size_t      bn;
} value;

static void put(mi_sha256_ctx *c, const char *s, size_t n) {
    char len[32];
    int k = snprintf(len, sizeof len, "%zu:", n);
    mi_sha256_update(c, len, (size_t)k);
    mi_sha256_update(c, s, n);
    mi_sha256_update(c, "\n", 1);
}

static void row_hash(int table, long long seq, const value *v, const char *prev, char hex[65]) {
    mi_sha256_ctx c;
    char num[40];
    uint8_t d[32];
    mi_sha256_init(&c);
    mi_sha256_update(&c, "medinfer-assist-v1\n", 19);
    put(&c, TABLE[table], strlen(TABLE[table]));
    snprintf(num, sizeof num, "%lld", seq);
    put(&c, num, strlen(num));
    for (int k = 0; k < NCOLS[table]; k++) {
        switch (COLS[table][k].type) {
        case 'i': snprintf(num, sizeof num, "%lld", v[k].i); put(&c, num, strlen(num)); break;
        case 'd': snprintf(num, sizeof num, "%.17g", v[k].d); put(&c, num, strlen(num)); break;
        case 's': put(&c, v[k].s, strlen(v[k].s)); break;
        default: {
            char h[65];
            mi_sha256_hex(v[k].b, v[k].bn, h);
            put(&c, h, 64);
        }
        }
    }
    put(&c, prev, strlen(prev));
    mi_sha256_final(&c, d);
    mi_hex(d, 32, hex);
}

void mi_assist_now_iso(char out[32]) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static mi_status db_error(mi_assist_store *s, const char *doing) {
    return MI_FAIL(MI_ERR_IO, "%s: %s: %s", s->path, doing, sqlite3_errmsg(s->db));
}

/* the highest seq the table ever used (max(seq), or sqlite_sequence after a deleted tail) and
   the last row's hash */
static long long table_head(sqlite3 *db, int table, char prev[65]) {
    char sql[160];
    long long seq = 0, sq = 0;
    snprintf(prev, 65, ZERO_HASH);
    snprintf(sql, sizeof sql, "SELECT seq, row_hash FROM %s ORDER BY seq DESC LIMIT 1", TABLE[table]);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK) {
        if (sqlite3_step(q) == SQLITE_ROW) {
            seq = sqlite3_column_int64(q, 0);
            const unsigned char *h = sqlite3_column_text(q, 1);
            snprintf(prev, 65, "%s", h ? (const char *)h : "");
        }
        sqlite3_finalize(q);
    }
    if (sqlite3_prepare_v2(db, "SELECT seq FROM sqlite_sequence WHERE name = ?", -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, TABLE[table], -1, SQLITE_STATIC);
        if (sqlite3_step(q) == SQLITE_ROW) sq = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
    }
    return sq > seq ? sq : seq;
}

/* appends one row to a table's chain, inside the caller's transaction; *seq_out its seq */
static mi_status append(mi_assist_store *s, int table, const value *v, long long *seq_out) {
    char prev[65], hash[65], sql[512];
    const long long seq = table_head(s->db, table, prev) + 1;
    row_hash(table, seq, v, prev, hash);
    int n = snprintf(sql, sizeof sql, "INSERT INTO %s (seq", TABLE[table]);
    for (int k = 0; k < NCOLS[table]; k++) n += snprintf(sql + n, sizeof sql - n, ", %s", COLS[table][k].name);
    n += snprintf(sql + n, sizeof sql - n, ", prev_hash, row_hash) VALUES (?");
    for (int k = 0; k < NCOLS[table] + 2; k++) n += snprintf(sql + n, sizeof sql - n, ", ?");
    snprintf(sql + n, sizeof sql - n, ")");
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) return db_error(s, "cannot prepare an insert");
    sqlite3_bind_int64(q, 1, seq);
    for (int k = 0; k < NCOLS[table]; k++) {
        switch (COLS[table][k].type) {
        case 'i': sqlite3_bind_int64(q, k + 2, v[k].i); break;
        case 'd': sqlite3_bind_double(q, k + 2, v[k].d); break;
        case 's': sqlite3_bind_text(q, k + 2, v[k].s, -1, SQLITE_STATIC); break;
        default: sqlite3_bind_blob(q, k + 2, v[k].b, (int)v[k].bn, SQLITE_STATIC);
        }
    }
    sqlite3_bind_text(q, NCOLS[table] + 2, prev, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, NCOLS[table] + 3, hash, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return db_error(s, "cannot insert a row");
    if (seq_out) *seq_out = seq;
    return MI_OK;
}

static mi_status begin(mi_assist_store *s) {
    /* IMMEDIATE: the write lock before reading the heads, so nothing links to a stale head */
    return sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? MI_OK
                                                                                : db_error(s, "cannot begin a transaction");
}

static mi_status commit(mi_assist_store *s, mi_status st) {
    if (st) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return st;
    }
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        st = db_error(s, "cannot commit");
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return st;
}

mi_status mi_assist_store_open(mi_assist_store **out, const char *path) {
    *out = NULL;
    mi_assist_store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path);
    }
    pthread_mutex_init(&s->mu, NULL);
    mi_status st = MI_OK;
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        st = MI_FAIL(MI_ERR_IO, "%s: cannot open the findings database: %s", path,
                     s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 10000);
    sqlite3_db_config(s->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
    char *err = NULL;
    /* a database holding other tables is someone else's (an audit log given by mistake): adding
       ours to it would mix two records */
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                                  " AND name NOT IN ('exams', 'findings', 'events') LIMIT 1", -1, &q, NULL) != SQLITE_OK) {
        st = MI_FAIL(MI_ERR_IO, "%s: not a medinfer findings database: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    if (sqlite3_step(q) == SQLITE_ROW) {
        st = MI_FAIL(MI_ERR_IO, "%s: not a medinfer findings database (it has a table '%s')", path,
                     (const char *)sqlite3_column_text(q, 0));
        sqlite3_finalize(q);
        goto fail;
    }
    sqlite3_finalize(q);
    /* WAL: readers do not block the writer; FULL: the WAL is synced at every commit, so a
       committed finding survives a crash or a power cut, not only a killed process */
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, &err) != SQLITE_OK ||
        sqlite3_exec(s->db, SCHEMA, NULL, NULL, &err) != SQLITE_OK) {
        st = MI_FAIL(MI_ERR_IO, "%s: not a medinfer findings database, or not writable: %s", path, err ? err : "?");
        sqlite3_free(err);
        goto fail;
    }
    if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode", -1, &q, NULL) == SQLITE_OK) {
        const bool wal = sqlite3_step(q) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(q, 0), "wal");
        sqlite3_finalize(q);
        if (!wal) {
            st = MI_FAIL(MI_ERR_IO, "%s: the database cannot use a write-ahead log (a network file system?)", path);
            goto fail;
        }
    }
    *out = s;
    return MI_OK;
fail:
    mi_assist_store_close(s);
    return st;
}

void mi_assist_store_close(mi_assist_store *s) {
    if (!s) return;
    if (s->db) sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s->path);
    free(s);
}

/* ---- exams -------------------------------------------------------------------------------------- */

static const char *EXAM_SELECT =
    "SELECT e.exam_id, e.terminal, e.patient_id, e.exam_number, e.age, e.sex, e.opened,"
    " (SELECT time FROM events v WHERE v.exam_id = e.exam_id AND v.kind = 'exam_closed' ORDER BY seq LIMIT 1)"
    " FROM exams e ";

static void copy_text(char *dst, size_t cap, sqlite3_stmt *q, int col) {
    const unsigned char *t = sqlite3_column_text(q, col);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static void read_exam(sqlite3_stmt *q, mi_assist_exam *e) {
    memset(e, 0, sizeof *e);
    copy_text(e->exam_id, sizeof e->exam_id, q, 0);
    copy_text(e->terminal, sizeof e->terminal, q, 1);
    copy_text(e->patient_id, sizeof e->patient_id, q, 2);
    copy_text(e->exam_number, sizeof e->exam_number, q, 3);
    e->age = sqlite3_column_int(q, 4);
    const unsigned char *sex = sqlite3_column_text(q, 5);
    e->sex = sex && sex[0] ? (char)sex[0] : 'O';
    copy_text(e->opened, sizeof e->opened, q, 6);
    copy_text(e->closed, sizeof e->closed, q, 7);
}

/* the row the WHERE clause (one text parameter) selects first */
static mi_status exam_where(mi_assist_store *s, const char *where, const char *arg, bool *found, mi_assist_exam *e) {
    char sql[768];
    snprintf(sql, sizeof sql, "%s%s", EXAM_SELECT, where);
    sqlite3_stmt *q;
    *found = false;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) return db_error(s, "cannot read the exams");
    sqlite3_bind_text(q, 1, arg, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *found = true;
        read_exam(q, e);
    }
    sqlite3_finalize(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? MI_OK : db_error(s, "cannot read the exams");
}

static mi_status get_exam(mi_assist_store *s, const char *id, bool *found, mi_assist_exam *e) {
    return exam_where(s, "WHERE e.exam_id = ?1", id, found, e);
}

static mi_status current_exam(mi_assist_store *s, const char *terminal, bool *found, mi_assist_exam *e) {
    /* opening an exam closes the terminal's previous one, so its open exam is its newest */
    mi_status st = exam_where(s, "WHERE e.terminal = ?1 ORDER BY e.seq DESC LIMIT 1", terminal, found, e);
    if (!st && *found && e->closed[0]) *found = false;
    return st;
}

static mi_status close_event(mi_assist_store *s, const mi_assist_exam *e, const char *by, const char *why, char when[32]) {
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "by", by);
    cJSON_AddStringToObject(d, "reason", why);
    char *detail = cJSON_PrintUnformatted(d);
    cJSON_Delete(d);
    if (!detail) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", s->path);
    mi_assist_now_iso(when);
    value v[6] = { { .s = when }, { .s = "exam_closed" }, { .s = e->exam_id }, { .s = e->terminal }, { .i = 0 }, { .s = detail } };
    mi_status st = append(s, T_EVENTS, v, NULL);
    free(detail);
    return st;
}

mi_status mi_assist_store_open_exam(mi_assist_store *s, const mi_assist_exam_req *r, const char *by, mi_assist_exam *out) {
    pthread_mutex_lock(&s->mu);
    mi_status st = begin(s);
    if (st) goto done;
    char prev[65], when[32];
    const long long seq = table_head(s->db, T_EXAMS, prev) + 1;
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) rnd = (uint32_t)time(NULL) * 2654435761u;
    memset(out, 0, sizeof *out);
    /* unguessable beyond its sequence number, so an ID seen once says nothing about others */
    snprintf(out->exam_id, sizeof out->exam_id, "E%06lld-%08x", seq, rnd);
    snprintf(out->terminal, sizeof out->terminal, "%s", r->terminal);
    snprintf(out->patient_id, sizeof out->patient_id, "%s", r->patient_id);
    snprintf(out->exam_number, sizeof out->exam_number, "%s", r->exam_number);
    out->age = r->age;
    out->sex = r->sex;
    bool found;
    mi_assist_exam old;
    if ((st = current_exam(s, r->terminal, &found, &old))) goto rollback;
    if (found) {
        char why[128];
        snprintf(why, sizeof why, "superseded by exam %s", out->exam_id);
        if ((st = close_event(s, &old, by, why, when))) goto rollback;
    }
    mi_assist_now_iso(out->opened);
    const char sex[2] = { r->sex, 0 };
    value v[8] = { { .s = out->exam_id }, { .s = out->terminal }, { .s = out->patient_id }, { .s = out->exam_number },
                   { .i = out->age }, { .s = sex }, { .s = out->opened }, { .s = by } };
    st = append(s, T_EXAMS, v, NULL);
rollback:
    st = commit(s, st);
done:
    pthread_mutex_unlock(&s->mu);
    return st;
}

mi_status mi_assist_store_close_exam(mi_assist_store *s, const char *exam_id, const char *by, bool *found,
                                     mi_assist_exam *out) {
    pthread_mutex_lock(&s->mu);
    mi_status st = begin(s);
    if (st) goto done;
    if ((st = get_exam(s, exam_id, found, out)) || !*found || out->closed[0]) goto end;
    st = close_event(s, out, by, "closed by the workstation", out->closed);
end:
    st = commit(s, st);
done:
    pthread_mutex_unlock(&s->mu);
    return st;
}

mi_status mi_assist_store_get_exam(mi_assist_store *s, const char *exam_id, bool *found, mi_assist_exam *out) {
    pthread_mutex_lock(&s->mu);
    mi_status st = get_exam(s, exam_id, found, out);
    pthread_mutex_unlock(&s->mu);
    return st;
}

mi_status mi_assist_store_current_exam(mi_assist_store *s, const char *terminal, bool *found, mi_assist_exam *out) {
    pthread_mutex_lock(&s->mu);
    mi_status st = current_exam(s, terminal, found, out);
    pthread_mutex_unlock(&s->mu);
    return st;
}

cJSON *mi_assist_exam_json(const mi_assist_exam *e) {
    cJSON *j = cJSON_CreateObject();
    const char sex[2] = { e->sex, 0 };
    cJSON_AddStringToObject(j, "exam_id", e->exam_id);
    cJSON_AddStringToObject(j, "terminal", e->terminal);
    cJSON_AddStringToObject(j, "patient_id", e->patient_id);
    cJSON_AddStringToObject(j, "exam_number", e->exam_number);
    cJSON_AddNumberToObject(j, "age", e->age);
    cJSON_AddStringToObject(j, "sex", sex);
    cJSON_AddStringToObject(j, "opened", e->opened);
    cJSON_AddStringToObject(j, "status", e->closed[0] ? "closed" : "open");
    if (e->closed[0]) cJSON_AddStringToObject(j, "closed", e->closed);
    return j;
}

/* ---- findings ------------------------------------------------------------------------------------ */

mi_status mi_assist_store_add_findings(mi_assist_store *s, const mi_assist_finding *f, int n, long long *ids) {
    if (n == 0) return MI_OK;
    pthread_mutex_lock(&s->mu);
    mi_status st = begin(s);
    if (st) goto done;
    char when[32];
    mi_assist_now_iso(when);
    for (int i = 0; i < n && !st; i++) {
        value v[14] = {
            { .s = f[i].exam_id }, { .s = f[i].terminal }, { .i = f[i].timestamp_ms }, { .s = when },
            { .s = f[i].trigger }, { .s = f[i].type }, { .d = f[i].score }, { .s = f[i].probs_json },
            { .s = f[i].box_json }, { .i = f[i].high_risk }, { .s = f[i].model_arch }, { .s = f[i].model_version },
            { .s = f[i].model_sha256 }, { .b = f[i].thumbnail, .bn = f[i].thumbnail_size },
        };
        if ((st = append(s, T_FINDINGS, v, &ids[i])) || !f[i].high_risk) continue;
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "type", f[i].type);
        cJSON_AddNumberToObject(d, "score", f[i].score);
        cJSON_AddNumberToObject(d, "timestamp_ms", (double)f[i].timestamp_ms);
        char *detail = cJSON_PrintUnformatted(d);
        cJSON_Delete(d);
        if (!detail) {
            st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", s->path);
            break;
        }
        value e[6] = { { .s = when }, { .s = "alert" }, { .s = f[i].exam_id }, { .s = f[i].terminal }, { .i = ids[i] },
                       { .s = detail } };
        st = append(s, T_EVENTS, e, NULL);
        free(detail);
    }
    st = commit(s, st);
done:
    pthread_mutex_unlock(&s->mu);
    return st;
}

static cJSON *parsed_or_string(const char *s) {
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    return j ? j : cJSON_CreateString(s ? s : "");
}

mi_status mi_assist_store_findings_json(mi_assist_store *s, const char *exam_id, cJSON **out) {
    *out = NULL;
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *q;
    mi_status st = MI_OK;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT seq, timestamp_ms, received, trigger, type, score, probs, box, high_risk, model_version"
                           " FROM findings WHERE exam_id = ? ORDER BY seq", -1, &q, NULL) != SQLITE_OK) {
        st = db_error(s, "cannot read the findings");
        goto done;
    }
    sqlite3_bind_text(q, 1, exam_id, -1, SQLITE_STATIC);
    cJSON *j = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    cJSON_AddStringToObject(j, "exam_id", exam_id);
    cJSON_AddItemToObject(j, "findings", arr);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        cJSON *f = cJSON_CreateObject();
        const long long id = sqlite3_column_int64(q, 0);
        char url[96];
        snprintf(url, sizeof url, "/v1/findings/%lld/thumbnail", id);
        cJSON_AddNumberToObject(f, "id", (double)id);
        cJSON_AddNumberToObject(f, "timestamp_ms", (double)sqlite3_column_int64(q, 1));
        cJSON_AddStringToObject(f, "received", (const char *)sqlite3_column_text(q, 2));
        cJSON_AddStringToObject(f, "trigger", (const char *)sqlite3_column_text(q, 3));
        cJSON_AddStringToObject(f, "type", (const char *)sqlite3_column_text(q, 4));
        cJSON_AddNumberToObject(f, "score", sqlite3_column_double(q, 5));
        cJSON_AddItemToObject(f, "probs", parsed_or_string((const char *)sqlite3_column_text(q, 6)));
        cJSON_AddItemToObject(f, "box", parsed_or_string((const char *)sqlite3_column_text(q, 7)));
        cJSON_AddBoolToObject(f, "high_risk", sqlite3_column_int(q, 8) != 0);
        cJSON_AddStringToObject(f, "model_version", (const char *)sqlite3_column_text(q, 9));
        cJSON_AddStringToObject(f, "thumbnail", url);
        cJSON_AddItemToArray(arr, f);
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) {
        cJSON_Delete(j);
        st = db_error(s, "cannot read the findings");
    } else *out = j;
done:
    pthread_mutex_unlock(&s->mu);
    return st;
}

mi_status mi_assist_store_thumbnail(mi_assist_store *s, long long fid, bool *found, char exam_id[MI_ASSIST_ID_MAX],
                                    void **png, size_t *n) {
    *found = false;
    *png = NULL;
    *n = 0;
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *q;
    mi_status st = MI_OK;
    if (sqlite3_prepare_v2(s->db, "SELECT exam_id, thumbnail FROM findings WHERE seq = ?", -1, &q, NULL) != SQLITE_OK) {
        st = db_error(s, "cannot read the findings");
        goto done;
    }
    sqlite3_bind_int64(q, 1, fid);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        copy_text(exam_id, MI_ASSIST_ID_MAX, q, 0);
        const int bn = sqlite3_column_bytes(q, 1);
        const void *b = sqlite3_column_blob(q, 1);
        if ((*png = malloc(bn > 0 ? (size_t)bn : 1))) {
            if (bn > 0) memcpy(*png, b, (size_t)bn);
            *n = (size_t)bn;
            *found = true;
        } else st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory for a thumbnail", s->path);
    } else if (rc != SQLITE_DONE) st = db_error(s, "cannot read the findings");
    sqlite3_finalize(q);
done:
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* ---- verification ---------------------------------------------------------------------------------- */

/* One table's walk on a read transaction: false (message set) at the first bad row. The file
 * is not trusted: the tables must be ordinary ones (not views: a recursive view never ends) and
 * values are bounded (SQLITE_LIMIT_LENGTH, set by the caller). */
static mi_status verify_table(sqlite3 *db, const char *path, int table, mi_assist_verify_report *r) {
    char sql[512];
    sqlite3_stmt *q;
    snprintf(sql, sizeof sql, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '%s' AND sql NOT LIKE 'CREATE VIRTUAL%%'",
             TABLE[table]);
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
        return MI_FAIL(MI_ERR_IO, "%s: not a medinfer findings database: %s", path, sqlite3_errmsg(db));
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_ROW) return MI_FAIL(MI_ERR_IO, "%s: not a medinfer findings database (no %s table)", path, TABLE[table]);
    int n = snprintf(sql, sizeof sql, "SELECT seq");
    for (int k = 0; k < NCOLS[table]; k++) n += snprintf(sql + n, sizeof sql - n, ", %s", COLS[table][k].name);
    snprintf(sql + n, sizeof sql - n, ", prev_hash, row_hash FROM %s ORDER BY seq", TABLE[table]);
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
        return MI_FAIL(MI_ERR_IO, "%s: table %s lacks the expected columns: %s", path, TABLE[table], sqlite3_errmsg(db));
    char prev[65] = ZERO_HASH, hash[65];
    long long expect = 1;
    mi_status st = MI_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const long long seq = sqlite3_column_int64(q, 0);
        value v[MAXCOLS];
        memset(v, 0, sizeof v);
        const char *bad_type = NULL;
        for (int k = 0; k < NCOLS[table]; k++) {
            const int c = k + 1, t = sqlite3_column_type(q, c);
            switch (COLS[table][k].type) {
            case 'i': if (t != SQLITE_INTEGER) bad_type = COLS[table][k].name; v[k].i = sqlite3_column_int64(q, c); break;
            case 'd': if (t != SQLITE_FLOAT) bad_type = COLS[table][k].name; v[k].d = sqlite3_column_double(q, c); break;
            case 's': {
                if (t != SQLITE_TEXT) bad_type = COLS[table][k].name;
                const unsigned char *s = sqlite3_column_text(q, c);
                v[k].s = s ? (const char *)s : "";
                break;
            }
            default:
                if (t != SQLITE_BLOB) bad_type = COLS[table][k].name;
                v[k].b = sqlite3_column_blob(q, c);
                v[k].bn = (size_t)sqlite3_column_bytes(q, c);
            }
        }
        const unsigned char *ph = sqlite3_column_text(q, NCOLS[table] + 1), *rh = sqlite3_column_text(q, NCOLS[table] + 2);
        if (seq != expect) {
            st = MI_FAIL(MI_ERR_SECURITY, "%s: %s rows %lld..%lld are missing (deleted)", path, TABLE[table], expect, seq - 1);
            break;
        }
        if (bad_type) {
            st = MI_FAIL(MI_ERR_SECURITY, "%s: %s row %lld was edited: column %s holds another type", path, TABLE[table], seq,
                         bad_type);
            break;
        }
        if (!ph || strcmp((const char *)ph, prev)) {
            st = MI_FAIL(MI_ERR_SECURITY, "%s: %s row %lld does not link to row %lld (a row was replaced or inserted)", path,
                         TABLE[table], seq, seq - 1);
            break;
        }
        row_hash(table, seq, v, prev, hash);
        if (!rh || strcmp(hash, (const char *)rh)) {
            st = MI_FAIL(MI_ERR_SECURITY, "%s: %s row %lld was edited: its contents do not match its hash", path,
                         TABLE[table], seq);
            break;
        }
        memcpy(prev, hash, sizeof prev);
        expect++;
    }
    sqlite3_finalize(q);
    if (st) return st;
    if (rc != SQLITE_DONE) return MI_FAIL(MI_ERR_IO, "%s: cannot read table %s: %s", path, TABLE[table], sqlite3_errmsg(db));
    r->rows[table] = expect - 1;
    /* rows cut from the end: sqlite_sequence remembers the highest seq ever used */
    if (sqlite3_prepare_v2(db, "SELECT seq FROM sqlite_sequence WHERE name = ?", -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, TABLE[table], -1, SQLITE_STATIC);
        const int src = sqlite3_step(q);
        const long long top = src == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
        if (src != SQLITE_ROW && src != SQLITE_DONE)
            st = MI_FAIL(MI_ERR_IO, "%s: cannot read sqlite_sequence: %s", path, sqlite3_errmsg(db));
        sqlite3_finalize(q);
        if (st) return st;
        if (top > expect - 1)
            return MI_FAIL(MI_ERR_SECURITY, "%s: %s rows %lld..%lld are missing (deleted from the end)", path, TABLE[table],
                           expect, top);
    }
    snprintf(r->head[table], sizeof r->head[table], "%lld:%s", expect - 1, expect > 1 ? prev : "");
    return MI_OK;
}

/* the walk of both verifiers on an open connection, which it closes; path names it in messages */
static mi_status verify_db(sqlite3 *db, const char *path, mi_assist_verify_report *r) {
    sqlite3_busy_timeout(db, 10000);
    mi_status st = MI_OK;
    if (mi_outside_db_guard(db, 1 << 26) != SQLITE_OK || sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        st = MI_FAIL(MI_ERR_IO, "%s: cannot read: %s", path, sqlite3_errmsg(db));
        goto done;
    }
    for (int t = 0; t < NTABLES && !st; t++) st = verify_table(db, path, t, r);
    if (st == MI_ERR_SECURITY) {
        r->intact = false;
        st = MI_OK;
        goto done;
    }
    if (st) goto done;
    /* every finding and event belongs to an exam the exams table holds, and every alert to a
       finding: rows that chain correctly but point nowhere were written by something else */
    static const char *const orphans[] = {
        "SELECT 'finding', seq FROM findings f WHERE NOT EXISTS (SELECT 1 FROM exams e WHERE e.exam_id = f.exam_id AND e.terminal = f.terminal) LIMIT 1",
        "SELECT 'event', seq FROM events v WHERE NOT EXISTS (SELECT 1 FROM exams e WHERE e.exam_id = v.exam_id) LIMIT 1",
        "SELECT 'alert', seq FROM events v WHERE kind = 'alert' AND NOT EXISTS (SELECT 1 FROM findings f WHERE f.seq = v.finding_id AND f.high_risk = 1) LIMIT 1",
    };
    r->intact = true;
    for (size_t i = 0; i < sizeof orphans / sizeof *orphans; i++) {
        sqlite3_stmt *q;
        if (sqlite3_prepare_v2(db, orphans[i], -1, &q, NULL) != SQLITE_OK) {
            st = MI_FAIL(MI_ERR_IO, "%s: cannot read: %s", path, sqlite3_errmsg(db));
            break;
        }
        const int rc = sqlite3_step(q);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            st = MI_FAIL(MI_ERR_IO, "%s: cannot read: %s", path, sqlite3_errmsg(db));
        } else if (rc == SQLITE_ROW) {
            MI_FAIL(MI_ERR_SECURITY, "%s: %s row %lld refers to an exam or finding the database does not hold", path,
                    (const char *)sqlite3_column_text(q, 0), (long long)sqlite3_column_int64(q, 1));
            r->intact = false;
        }
        sqlite3_finalize(q);
        if (st || !r->intact) break;
    }
done:
    if (st) r->intact = false;
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    return st;
}

mi_status mi_assist_store_verify(const char *path, mi_assist_verify_report *r) {
    memset(r, 0, sizeof *r);
    sqlite3 *db = NULL;
    /* read-only: nothing is written; a WAL left by a killed server is still read */
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        mi_status st = MI_FAIL(MI_ERR_IO, "%s: cannot open: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return st;
    }
    return verify_db(db, path, r);
}

mi_status mi_assist_store_verify_memory(const void *data, size_t n, const char *name, mi_assist_verify_report *r) {
    memset(r, 0, sizeof *r);
    if (!name) name = "(memory)";
    if ((!data && n) || n > (size_t)INT64_MAX) return MI_FAIL(MI_ERR_ARG, "%s: no database bytes", name);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return MI_FAIL(MI_ERR_NOMEM, "%s: cannot open an in-memory database", name);
    }
    /* READONLY, neither FREEONCLOSE nor RESIZEABLE: SQLite reads the caller's bytes in place */
    if (sqlite3_deserialize(db, "main", (unsigned char *)data, (sqlite3_int64)n, (sqlite3_int64)n,
                            SQLITE_DESERIALIZE_READONLY) != SQLITE_OK) {
        mi_status st = MI_FAIL(MI_ERR_IO, "%s: cannot open: %s", name, sqlite3_errmsg(db));
        sqlite3_close(db);
        return st;
    }
    return verify_db(db, name, r);
}
