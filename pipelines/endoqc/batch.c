/* pipelines/endoqc/batch.c - the results database and the drift rule (see endoqc.h).
 *
 * Crash safety: WAL journal with synchronous=FULL, and each exam's row is its own transaction,
 * committed before the next video is opened. A batch killed mid-way therefore loses only the exam
 * it was working on; rerunning the same list finds the finished ones (same video bytes, same
 * model, same settings) and skips them. Rows are append-only (triggers refuse UPDATE/DELETE): a
 * rerun with another model or settings adds rows beside the old ones, it never replaces them. */
#include "pipelines/endoqc/endoqc.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct mi_endoqc_db {
    sqlite3 *db;
    char     path[512];
};

static const char *SCHEMA =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=FULL;"
    "CREATE TABLE IF NOT EXISTS exams("
    "  id INTEGER PRIMARY KEY,"
    "  batch_id TEXT NOT NULL,"
    "  role TEXT NOT NULL,"              /* exam | reference | single */
    "  created TEXT NOT NULL,"
    "  video_path TEXT NOT NULL,"
    "  video_sha256 TEXT NOT NULL,"
    "  model_sha256 TEXT NOT NULL,"
    "  model_version TEXT NOT NULL,"
    "  engine_version TEXT NOT NULL,"
    "  settings TEXT NOT NULL,"
    "  verdict TEXT NOT NULL,"           /* complete | incomplete */
    "  distinct_sites INTEGER NOT NULL,"
    "  total_sites INTEGER NOT NULL,"
    "  missing_sites TEXT NOT NULL,"     /* JSON array of labels */
    "  decode_complete INTEGER NOT NULL,"
    "  decoded_until_ms INTEGER NOT NULL,"
    "  report_json TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS exams_done ON exams(video_sha256, model_sha256, settings);"
    "CREATE TABLE IF NOT EXISTS batches("
    "  id INTEGER PRIMARY KEY,"
    "  batch_id TEXT NOT NULL,"
    "  created TEXT NOT NULL,"
    "  list_path TEXT NOT NULL,"
    "  exams INTEGER NOT NULL,"
    "  incomplete INTEGER NOT NULL,"
    "  incomplete_share REAL NOT NULL,"
    "  drift_alert REAL NOT NULL,"
    "  alerted INTEGER NOT NULL,"
    "  reference_run INTEGER NOT NULL,"
    "  ref_exams INTEGER NOT NULL,"
    "  ref_labelled_share REAL,"
    "  ref_predicted_share REAL,"
    "  drift_tolerance REAL NOT NULL,"
    "  model_update_required INTEGER NOT NULL,"
    "  summary_json TEXT NOT NULL);"
    "CREATE TRIGGER IF NOT EXISTS exams_append_only_u BEFORE UPDATE ON exams"
    "  BEGIN SELECT RAISE(ABORT, 'endoqc results are append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS exams_append_only_d BEFORE DELETE ON exams"
    "  BEGIN SELECT RAISE(ABORT, 'endoqc results are append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS batches_append_only_u BEFORE UPDATE ON batches"
    "  BEGIN SELECT RAISE(ABORT, 'endoqc results are append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS batches_append_only_d BEFORE DELETE ON batches"
    "  BEGIN SELECT RAISE(ABORT, 'endoqc results are append-only'); END;";

mi_status mi_endoqc_db_open(mi_endoqc_db **out, const char *path) {
    *out = NULL;
    mi_endoqc_db *d = calloc(1, sizeof *d);
    if (!d) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path);
    snprintf(d->path, sizeof d->path, "%s", path);
    if (sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        mi_status st = MI_FAIL(MI_ERR_IO, "%s: cannot open the results database: %s", path,
                               d->db ? sqlite3_errmsg(d->db) : "out of memory");
        mi_endoqc_db_close(d);
        return st;
    }
    sqlite3_busy_timeout(d->db, 10000);   /* another batch writing at the same moment: wait */
    char *err = NULL;
    if (sqlite3_exec(d->db, SCHEMA, NULL, NULL, &err) != SQLITE_OK) {
        mi_status st = MI_FAIL(MI_ERR_FORMAT, "%s: not an endoqc results database: %s", path, err ? err : "?");
        sqlite3_free(err);
        mi_endoqc_db_close(d);
        return st;
    }
    *out = d;
    return MI_OK;
}

void mi_endoqc_db_close(mi_endoqc_db *d) {
    if (!d) return;
    sqlite3_close(d->db);
    free(d);
}

mi_status mi_endoqc_db_find(mi_endoqc_db *d, const char *video_sha256, const char *model_sha256,
                            const char *settings, int64_t *id, bool *complete, int *distinct,
                            cJSON **missing) {
    *id = 0;
    *complete = false;
    *distinct = 0;
    *missing = NULL;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db, "SELECT id, verdict, distinct_sites, missing_sites FROM exams WHERE video_sha256=? AND model_sha256=? "
                           "AND settings=? ORDER BY id DESC LIMIT 1", -1, &s, NULL) != SQLITE_OK)
        return MI_FAIL(MI_ERR_IO, "%s: %s", d->path, sqlite3_errmsg(d->db));
    sqlite3_bind_text(s, 1, video_sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, model_sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, settings, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    mi_status st = MI_OK;
    if (rc == SQLITE_ROW) {
        int64_t row = sqlite3_column_int64(s, 0);
        const char *verdict = (const char *)sqlite3_column_text(s, 1), *ms = (const char *)sqlite3_column_text(s, 3);
        /* the file is outside input too: a row written by another program must still be a list of labels */
        cJSON *a = ms ? cJSON_ParseWithOpts(ms, NULL, true) : NULL;
        bool ok = cJSON_IsArray(a);
        const cJSON *x;
        cJSON_ArrayForEach(x, a) ok = ok && cJSON_IsString(x);
        if (!ok || !verdict) {
            cJSON_Delete(a);
            st = MI_FAIL(MI_ERR_FORMAT, "%s: exams row %lld: %s", d->path, (long long)row,
                         verdict ? "missing_sites is not a JSON array of labels" : "no verdict");
        } else {
            *id = row;
            *complete = !strcmp(verdict, "complete");
            *distinct = sqlite3_column_int(s, 2);
            *missing = a;
        }
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return MI_FAIL(MI_ERR_IO, "%s: %s", d->path, sqlite3_errmsg(d->db));
    return st;
}

static void utc_now(char *buf, size_t n) {
    time_t t = time(NULL);
    struct tm tmv;
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tmv));
}

mi_status mi_endoqc_db_add_exam(mi_endoqc_db *d, const char *batch_id, const char *role,
                                const mi_endoqc_result *r, const char *settings, const char *json,
                                int64_t *id) {
    char when[32];
    cJSON *list = mi_endoqc_missing_sites(r);
    char *missing = list ? cJSON_PrintUnformatted(list) : NULL;
    cJSON_Delete(list);
    if (!missing) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory for the missing sites of %s", d->path, r->video);
    utc_now(when, sizeof when);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db,
            "INSERT INTO exams(batch_id, role, created, video_path, video_sha256, model_sha256, model_version,"
            " engine_version, settings, verdict, distinct_sites, total_sites, missing_sites, decode_complete,"
            " decoded_until_ms, report_json) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", -1, &s, NULL) != SQLITE_OK) {
        free(missing);
        return MI_FAIL(MI_ERR_IO, "%s: %s", d->path, sqlite3_errmsg(d->db));
    }
    int k = 1;
    sqlite3_bind_text(s, k++, batch_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, k++, role, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, k++, when, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, k++, r->video, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, k++, r->video_sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, k++, r->model_sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, k++, r->model_version, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, k++, MI_VERSION, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, k++, settings, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, k++, r->complete ? "complete" : "incomplete", -1, SQLITE_STATIC);
    sqlite3_bind_int(s, k++, r->distinct);
    sqlite3_bind_int(s, k++, r->nsites);
    sqlite3_bind_text(s, k++, missing, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, k++, r->decode_complete);
    sqlite3_bind_int64(s, k++, r->decoded_until_ms);
    sqlite3_bind_text(s, k++, json, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);   /* autocommit: one exam, one durable transaction */
    sqlite3_finalize(s);
    free(missing);
    if (rc != SQLITE_DONE) return MI_FAIL(MI_ERR_IO, "%s: cannot store the result of %s: %s", d->path, r->video, sqlite3_errmsg(d->db));
    if (id) *id = sqlite3_last_insert_rowid(d->db);
    return MI_OK;
}

mi_status mi_endoqc_db_add_batch(mi_endoqc_db *d, const char *batch_id, const char *list_path,
                                 const mi_endoqc_drift *x, const char *summary_json) {
    char when[32];
    utc_now(when, sizeof when);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db,
            "INSERT INTO batches(batch_id, created, list_path, exams, incomplete, incomplete_share, drift_alert,"
            " alerted, reference_run, ref_exams, ref_labelled_share, ref_predicted_share, drift_tolerance,"
            " model_update_required, summary_json) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", -1, &s, NULL) != SQLITE_OK)
        return MI_FAIL(MI_ERR_IO, "%s: %s", d->path, sqlite3_errmsg(d->db));
    int k = 1;
    sqlite3_bind_text(s, k++, batch_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, k++, when, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, k++, list_path, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, k++, x->batch_exams);
    sqlite3_bind_int(s, k++, x->batch_incomplete);
    sqlite3_bind_double(s, k++, x->batch_share);
    sqlite3_bind_double(s, k++, x->alert);
    sqlite3_bind_int(s, k++, x->alerted);
    sqlite3_bind_int(s, k++, x->reference_run);
    sqlite3_bind_int(s, k++, x->ref_exams);
    if (x->reference_run) {
        sqlite3_bind_double(s, k++, x->ref_labelled_share);
        sqlite3_bind_double(s, k++, x->ref_predicted_share);
    } else {
        sqlite3_bind_null(s, k++);
        sqlite3_bind_null(s, k++);
    }
    sqlite3_bind_double(s, k++, x->tolerance);
    sqlite3_bind_int(s, k++, x->model_update_required);
    sqlite3_bind_text(s, k++, summary_json, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) return MI_FAIL(MI_ERR_IO, "%s: cannot store the batch summary: %s", d->path, sqlite3_errmsg(d->db));
    return MI_OK;
}

void mi_endoqc_drift_decide(mi_endoqc_drift *d) {
    d->batch_share = d->batch_exams > 0 ? (double)d->batch_incomplete / d->batch_exams : 0;
    d->judged = d->batch_exams > 0 && d->batch_exams >= d->min_exams;
    d->alerted = d->judged && d->batch_share > d->alert + 1e-12;
    d->model_update_required = false;
    if (d->reference_run && d->ref_exams > 0) {
        d->ref_labelled_share = (double)d->ref_labelled_incomplete / d->ref_exams;
        d->ref_predicted_share = (double)d->ref_predicted_incomplete / d->ref_exams;
        /* "more than 5 points": 0.25 vs 0.20 is exactly 5 points, not more (1e-9 absorbs rounding) */
        d->model_update_required = fabs(d->ref_predicted_share - d->ref_labelled_share) > d->tolerance + 1e-9;
    }
}

void mi_endoqc_selfcheck_decide(mi_endoqc_selfcheck *s) {
    s->staged_accuracy = s->staged_evaluated > 0 ? (double)s->staged_agree / s->staged_evaluated : 0;
    s->current_accuracy = s->current_evaluated > 0 ? (double)s->current_agree / s->current_evaluated : 0;
    s->bar_source = s->min_accuracy >= 0 ? "manifest" : "current model";
    s->bar = s->min_accuracy >= 0 ? s->min_accuracy : s->current_accuracy;
    s->complete = s->ref_exams > 0 && s->staged_evaluated == s->ref_exams && s->current_evaluated == s->ref_exams;
    /* equal counts compare exactly; 1e-9 only absorbs the rounding of a manifest's decimal bar */
    s->activate = s->complete && s->staged_accuracy >= s->bar - 1e-9;
    if (!s->complete)
        snprintf(s->reason, sizeof s->reason, "the reference set was not evaluated completely (%d of %d exams by the "
                 "staged model, %d by the current one): nothing to compare", s->staged_evaluated, s->ref_exams,
                 s->current_evaluated);
    else
        snprintf(s->reason, sizeof s->reason, "reference accuracy %d/%d = %.4f %s the bar %.4f (%s)", s->staged_agree,
                 s->ref_exams, s->staged_accuracy, s->activate ? ">=" : "<", s->bar, s->bar_source);
}
