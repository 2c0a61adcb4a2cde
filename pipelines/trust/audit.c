/* pipelines/trust/audit.c - the audit trail: one SQLite row per result, each row's hash covering
 * its fields and the previous row's hash (docs/trust.md, "Audit trail").
 *
 * Triggers make UPDATE and DELETE fail for honest tools; the chain is what catches the rest: an
 * edited row no longer matches its hash, a deleted one leaves a gap in seq (AUTOINCREMENT never
 * reuses numbers, and sqlite_sequence remembers the highest one), an inserted one breaks the
 * link. A keyless chain cannot stop someone who rewrites every later row too, nor see rows cut
 * from the end once sqlite_sequence is edited as well: for that, record the head that `audit
 * verify` prints somewhere else and pass it back with --expect-head. */
#include "pipelines/trust/trust.h"
#include "pipelines/trust/trust_internal.h"
#include "pipelines/io/outside_db.h"
#include "ops/cpu.h"
#include "weights/sha256.h"

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"
#define NFIELDS 12

static const char *SCHEMA =
    "CREATE TABLE IF NOT EXISTS audit_log ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, command TEXT NOT NULL,"
    " input_sha256 TEXT NOT NULL, model_name TEXT NOT NULL, model_version TEXT NOT NULL,"
    " blob_sha256 TEXT NOT NULL, key_id TEXT NOT NULL, engine_version TEXT NOT NULL,"
    " build TEXT NOT NULL, isa TEXT NOT NULL, thresholds TEXT NOT NULL, result TEXT NOT NULL,"
    " prev_hash TEXT NOT NULL, row_hash TEXT NOT NULL);"
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log"
    " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log"
    " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;";

/* Column order of the hash and of every SELECT below: seq, then these, then prev_hash. */
static const char *COLS = "seq, time, command, input_sha256, model_name, model_version, blob_sha256,"
                          " key_id, engine_version, build, isa, thresholds, result, prev_hash, row_hash";

/* SHA-256 of "medinfer-audit-v1\n" then, for seq, the 12 fields and prev_hash in that order,
 * "<byte length>:<bytes>\n": length-prefixed, so no two different rows encode alike. */
static void row_hash(long long seq, const char *const f[NFIELDS], const char *prev, char hex[65]) {
    mi_sha256_ctx c;
    char num[32];
    uint8_t d[32];
    mi_sha256_init(&c);
    mi_sha256_update(&c, "medinfer-audit-v1\n", 18);
    snprintf(num, sizeof num, "%lld", seq);
    for (int i = -1; i <= NFIELDS; i++) {
        const char *s = i < 0 ? num : i == NFIELDS ? prev : f[i];
        char len[32];
        int n = snprintf(len, sizeof len, "%zu:", strlen(s));
        mi_sha256_update(&c, len, (size_t)n);
        mi_sha256_update(&c, s, strlen(s));
        mi_sha256_update(&c, "\n", 1);
    }
    mi_sha256_final(&c, d);
    mi_hex(d, 32, hex);
}

static mi_status db_fail(sqlite3 *db, const char *path, const char *doing) {
    mi_status st = MI_FAIL(MI_ERR_IO, "%s: %s: %s", path, doing, db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return st;
}

static bool json_ok(const char *s) {
    cJSON *j = cJSON_Parse(s);
    cJSON_Delete(j);
    return j != NULL;
}

void mi_audit_row_model(mi_audit_row *row, const mi_trust_info *t) {
    row->model_name = t->model_name;
    row->model_version = t->model_version;
    row->blob_sha256 = t->blob_sha256;
    row->key_id = t->key_id;
}

/* highest seq ever used: max(seq) and sqlite_sequence, so a deleted tail is never reused */
static long long last_seq(sqlite3 *db, char prev[65]) {
    long long seq = 0;
    snprintf(prev, 65, ZERO_HASH);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, "SELECT seq, row_hash FROM audit_log ORDER BY seq DESC LIMIT 1", -1, &q, NULL) == SQLITE_OK) {
        if (sqlite3_step(q) == SQLITE_ROW) {
            seq = sqlite3_column_int64(q, 0);
            const unsigned char *h = sqlite3_column_text(q, 1);
            snprintf(prev, 65, "%s", h ? (const char *)h : "");
        }
        sqlite3_finalize(q);
    }
    return seq;
}

/* the highest seq sqlite_sequence remembers for audit_log: 0 when none, -1 when unreadable */
static long long sequence_seq(sqlite3 *db) {
    long long s = 0;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, "SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'", -1, &q, NULL) == SQLITE_OK) {
        const int rc = sqlite3_step(q);
        s = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : rc == SQLITE_DONE ? 0 : -1;
        sqlite3_finalize(q);
    }
    return s;
}

mi_status mi_audit_append(const char *db_path, const mi_audit_row *r) {
    if (!r->command || !*r->command) return MI_FAIL(MI_ERR_ARG, "%s: audit row without a command", db_path);
    const char *th = r->thresholds_json ? r->thresholds_json : "{}";
    const char *res = r->result_json ? r->result_json : "{}";
    if (!json_ok(th)) return MI_FAIL(MI_ERR_ARG, "%s: thresholds are not valid JSON: %.60s", db_path, th);
    if (!json_ok(res)) return MI_FAIL(MI_ERR_ARG, "%s: result is not valid JSON: %.60s", db_path, res);

    char when[40];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000);

    const char *f[NFIELDS] = {
        when, r->command, r->input_sha256 ? r->input_sha256 : "",
        r->model_name ? r->model_name : "", r->model_version ? r->model_version : "",
        r->blob_sha256 ? r->blob_sha256 : "", r->key_id ? r->key_id : "none",
        r->engine_version ? r->engine_version : MI_VERSION, r->build ? r->build : mi_build_git(),
        r->isa ? r->isa : mi_isa_name(mi_cpu_isa()), th, res,
    };

    sqlite3 *db = NULL;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        return db_fail(db, db_path, "cannot open");
    sqlite3_busy_timeout(db, 10000);  /* other processes appending: wait for them, in turn */
    char *err = NULL;
    /* IMMEDIATE takes the write lock before reading the head, so two writers cannot both link
       to the same previous row */
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &err) != SQLITE_OK) {
        sqlite3_free(err);
        return db_fail(db, db_path, "cannot lock for writing");
    }
    if (sqlite3_exec(db, SCHEMA, NULL, NULL, &err) != SQLITE_OK) {
        mi_status st = MI_FAIL(MI_ERR_IO, "%s: not a medinfer audit DB, or not writable: %s", db_path, err);
        sqlite3_free(err);
        sqlite3_close(db);  /* closing rolls the transaction back */
        return st;
    }
    char prev[65], hash[65];
    long long seq = last_seq(db, prev), s2 = sequence_seq(db);
    seq = (s2 > seq ? s2 : seq) + 1;
    row_hash(seq, f, prev, hash);

    char sql[512];
    snprintf(sql, sizeof sql, "INSERT INTO audit_log (%s) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", COLS);
    sqlite3_stmt *ins;
    if (sqlite3_prepare_v2(db, sql, -1, &ins, NULL) != SQLITE_OK) return db_fail(db, db_path, "cannot prepare insert");
    sqlite3_bind_int64(ins, 1, seq);
    for (int i = 0; i < NFIELDS; i++) sqlite3_bind_text(ins, i + 2, f[i], -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, NFIELDS + 2, prev, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, NFIELDS + 3, hash, -1, SQLITE_STATIC);
    int rc = sqlite3_step(ins);
    sqlite3_finalize(ins);
    if (rc != SQLITE_DONE) return db_fail(db, db_path, "cannot insert the audit row");
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, &err) != SQLITE_OK) {
        sqlite3_free(err);
        return db_fail(db, db_path, "cannot commit the audit row");
    }
    if (sqlite3_close(db) != SQLITE_OK) return MI_FAIL(MI_ERR_IO, "%s: close failed", db_path);
    return MI_OK;
}

/* expect_head "SEQ:HASH" (or NULL: none) into *seq (0: none) and hash */
static mi_status parse_head(const char *expect_head, long long *want_seq, char want_hash[65]) {
    *want_seq = 0;
    want_hash[0] = 0;
    if (expect_head && (sscanf(expect_head, "%lld:%64s", want_seq, want_hash) != 2 || *want_seq < 0 ||
                        strlen(want_hash) != 64))
        return MI_FAIL(MI_ERR_ARG, "expected head '%s' is not SEQ:HASH (as `medinfer audit verify` prints it)", expect_head);
    return MI_OK;
}

/* The walk of mi_audit_verify on an open DB, which it closes; db_path names it in messages.
 * The file is someone else's until verified (pipelines/io/outside_db.h: an audit_log that is a
 * view kept `audit verify` busy forever on a 512-byte file), so audit_log must be an ordinary
 * table and no value may exceed 16 MiB (a row holds hashes, versions and a JSON summary). */
static mi_status verify_db(sqlite3 *db, const char *db_path, long long want_seq, const char *want_hash,
                           mi_audit_report *out) {
    if (mi_outside_db_guard(db, 1 << 24) != SQLITE_OK) return db_fail(db, db_path, "cannot read");
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_log'"
                           " AND sql NOT LIKE 'CREATE VIRTUAL%'", -1, &q, NULL) != SQLITE_OK)
        return db_fail(db, db_path, "not a medinfer audit DB");  /* "file is not a database" */
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_ROW) {
        if (rc != SQLITE_DONE) return db_fail(db, db_path, "not a medinfer audit DB");
        sqlite3_close(db);
        return MI_FAIL(MI_ERR_IO, "%s: not a medinfer audit DB (no audit_log table)", db_path);
    }
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT %s FROM audit_log ORDER BY seq", COLS);
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
        return db_fail(db, db_path, "not a medinfer audit DB (no audit_log table)");

    /* one read transaction for the walk and sqlite_sequence: a consistent snapshot even while
       other processes append */
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    char prev[65] = ZERO_HASH, hash[65];
    long long expect = 1;
    bool found_head = want_seq == 0;
    rc = SQLITE_DONE;
    out->intact = true;
    while (out->intact && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        long long seq = sqlite3_column_int64(q, 0);
        const char *f[NFIELDS + 2];
        for (int i = 0; i < NFIELDS + 2; i++) {
            const unsigned char *t = sqlite3_column_text(q, i + 1);
            f[i] = t ? (const char *)t : "";
        }
        if (seq != expect) {
            out->intact = false;
            out->bad_seq = expect;
            MI_FAIL(MI_ERR_SECURITY, "%s: rows %lld..%lld are missing (deleted)", db_path, expect, seq - 1);
            break;
        }
        if (strcmp(f[NFIELDS], prev)) {
            out->intact = false;
            out->bad_seq = seq;
            MI_FAIL(MI_ERR_SECURITY, "%s: row %lld does not link to row %lld (a row was replaced or inserted)",
                    db_path, seq, seq - 1);
            break;
        }
        row_hash(seq, f, prev, hash);
        if (strcmp(hash, f[NFIELDS + 1])) {
            out->intact = false;
            out->bad_seq = seq;
            MI_FAIL(MI_ERR_SECURITY, "%s: row %lld (%s, %s) was edited: its contents do not match its hash",
                    db_path, seq, f[0], f[1]);
            break;
        }
        if (seq == want_seq) {
            found_head = true;
            if (strcmp(hash, want_hash)) {
                out->intact = false;
                out->bad_seq = seq;
                MI_FAIL(MI_ERR_SECURITY, "%s: row %lld's hash differs from the recorded head (rows rewritten)",
                        db_path, seq);
                break;
            }
        }
        snprintf(prev, sizeof prev, "%s", hash);
        out->rows++;
        out->head_seq = seq;
        expect = seq + 1;
    }
    sqlite3_finalize(q);
    if (out->intact && rc != SQLITE_DONE) {
        out->intact = false;
        return db_fail(db, db_path, "read error");
    }
    const long long s2 = sequence_seq(db);
    if (out->intact && s2 < 0) {
        out->intact = false;
        return db_fail(db, db_path, "cannot read sqlite_sequence");
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    if (!out->intact) return MI_OK;
    snprintf(out->head_hash, sizeof out->head_hash, "%s", prev);
    if (s2 > out->head_seq) {
        out->intact = false;
        out->bad_seq = out->head_seq + 1;
        MI_FAIL(MI_ERR_SECURITY, "%s: rows %lld..%lld were deleted from the end (sqlite_sequence reached %lld)",
                db_path, out->head_seq + 1, s2, s2);
    } else if (!found_head) {
        out->intact = false;
        out->bad_seq = want_seq;
        MI_FAIL(MI_ERR_SECURITY, "%s: recorded head row %lld is gone (rows deleted from the end)", db_path, want_seq);
    }
    return MI_OK;
}

mi_status mi_audit_verify(const char *db_path, const char *expect_head, mi_audit_report *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->head_hash, sizeof out->head_hash, ZERO_HASH);
    long long want_seq;
    char want_hash[65];
    mi_status st = parse_head(expect_head, &want_seq, want_hash);
    if (st) return st;
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return db_fail(db, db_path, "cannot open");
    sqlite3_busy_timeout(db, 10000);
    return verify_db(db, db_path, want_seq, want_hash, out);
}

mi_status mi_audit_verify_memory(const void *data, size_t n, const char *name, const char *expect_head,
                                 mi_audit_report *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->head_hash, sizeof out->head_hash, ZERO_HASH);
    if (!name) name = "(memory)";
    long long want_seq;
    char want_hash[65];
    mi_status st = parse_head(expect_head, &want_seq, want_hash);
    if (st) return st;
    if ((!data && n) || n > (size_t)INT64_MAX) return MI_FAIL(MI_ERR_ARG, "%s: no database bytes", name);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        return db_fail(db, name, "cannot open");
    /* READONLY and neither FREEONCLOSE nor RESIZEABLE: SQLite reads the caller's bytes in place
       and never writes or frees them */
    if (sqlite3_deserialize(db, "main", (unsigned char *)data, (sqlite3_int64)n, (sqlite3_int64)n,
                            SQLITE_DESERIALIZE_READONLY) != SQLITE_OK)
        return db_fail(db, name, "cannot open");
    return verify_db(db, name, want_seq, want_hash, out);
}
