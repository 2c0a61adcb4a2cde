/* tools/cmd_endoqc.c - `medinfer endoqc`: gastroscopy video completeness QC (docs/endoqc.md).
 *
 *   medinfer endoqc [options] VIDEO          one exam: JSON report on stdout or --out
 *   medinfer endoqc --batch LIST [options]   every video of LIST into the --db results database,
 *                                            drift check, batch summary JSON on stdout or --out */
#include "tools/cli.h"
#include "tools/endoqc_loop.h"
#include "pipelines/endoqc/endoqc.h"
#include "pipelines/trust/trust.h"
#include "ops/cpu.h"
#include "weights/sha256.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <libavutil/log.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MODEL "weights/endoqc_sites_demo.safetensors"
/* Below this many evaluated exams a batch's incomplete share is not judged for drift: at 20 and
 * the default 20 % alert it takes 5 incomplete exams, not one unlucky morning's first. */
#define DEFAULT_MIN_EXAMS 20

typedef struct { char *path; int label; } entry;   /* label: -1 none, 0 complete, 1 incomplete */

typedef struct {
    const char *model, *out, *sheet, *batch, *db, *reference;
    const char *model_dir, *update_server;  /* the model-quality loop (endoqc_loop.h) */
    double drift_alert, drift_tolerance;   /* percent */
    int infer_batch, threads, drift_min_exams;
    bool quiet, db_given, audit_failed, check_updates;
    mi_trust_opts trust;
    endoqc_model_ctx cur;                  /* the model exams run with */
    mi_endoqc_opts o;
    /* for the loop's reference runs */
    entry *refs;
    int nref;
    mi_endoqc_db *dbh;
    const char *batch_id;
} cli;

static void usage(FILE *f) {
    fprintf(f,
        "usage: medinfer endoqc [options] VIDEO            one exam: JSON report\n"
        "       medinfer endoqc --batch LIST [options]     many exams into a results database\n\n"
        "  --model M            site classifier blob (default " DEFAULT_MODEL ")\n"
        "  --out FILE           write the JSON there instead of stdout\n"
        "  --contact-sheet PNG  best frame per site, grey boxes for missing ones (with --batch: a\n"
        "                       directory, one VIDEO-NAME.png per exam)\n"
        "  --every K            classify every K-th kept frame (default 3)\n"
        "  --min-frames N       frames that must agree for a site to count (default: blob\n"
        "                       metadata endoqc_min_frames, else 2)\n"
        "  --min-prob P         probability each of them needs (metadata endoqc_min_prob, else 0.5)\n"
        "  --site-threshold N   incomplete when distinct sites <= N (metadata\n"
        "                       endoqc_site_threshold, else 22 of 26)\n"
        "  --dup-threshold S    drop frames more similar than S to a recent kept one (default 0.90)\n"
        "  --dup-window N|all   recent kept frames compared with (default 32; all or 0: every\n"
        "                       kept frame, as the method compares any two images)\n"
        "  --hash-size N        average hash of NxN cells, 2..8 (default 8)\n"
        "  --dark-level L       mean luma below which a frame is dark and skipped (default 16, 0 off)\n"
        "  --no-resample        no targeted re-sampling of missing fundus/antrum groups\n"
        "  --infer-batch N      frames per network call, 1..256 (default 8)\n"
        "  --threads N          CPU threads (default: all cores)\n"
        "  --no-decode-thread   decode on the network's thread, not ahead of it (slower; the\n"
        "                       report is the same: for debugging and measuring)\n"
        "  --batch LIST         text file, one video path per line (relative to LIST's folder)\n"
        "  --db FILE            results database (default endoqc.sqlite with --batch)\n"
        "  --reference CSV      labelled reference set: video path,complete|incomplete\n"
        "  --drift-alert PCT    run the reference set when the batch's incomplete share exceeds\n"
        "                       PCT percent (default 20)\n"
        "  --drift-tolerance PT model update required when predicted and labelled incomplete\n"
        "                       shares of the reference set differ by more than PT points (default 5)\n"
        "  --drift-min-exams N  judge the incomplete share only for batches of at least N\n"
        "                       evaluated exams (default %d)\n"
        "  --model-dir DIR      run DIR/model.safetensors (a model dir kept by `medinfer model`)\n"
        "  --update-server URL  the model-quality loop (needs --model-dir and --reference): before\n"
        "                       the batch, and once more when it drifts, stage a newer signed model\n"
        "                       from URL and activate it only if it agrees with the reference\n"
        "                       labels at least as well as the current one (docs/endoqc.md)\n"
        "  --check-updates      the same check before a single exam\n"
        "  --quiet              no progress on stderr\n"
        MI_TRUST_USAGE
        "\nexit status: 0 done, 1 a video or the model could not be used, 2 usage,\n"
        "3 model update required (drift, and no better model was activated), 10 untrusted model,\n"
        "31 audit database error\n", DEFAULT_MIN_EXAMS);
}

static const char *base_name(const char *p) { const char *s = strrchr(p, '/'); return s ? s + 1 : p; }

static int write_text(const char *path, const char *text) {
    if (!path) { fputs(text, stdout); fputc('\n', stdout); return fflush(stdout) == 0 ? 0 : -1; }
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);   /* never leave a half-written report behind */
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    int bad = fputs(text, f) < 0 || fputc('\n', f) < 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) { remove(tmp); return -1; }
    return 0;
}

/* Appends the exam's audit row (when --audit is given). Nothing of the exam may leave the program
 * before this returned 0: report, --out file, verdict line, contact sheet, database row. */
static int audit_exam(cli *c, const endoqc_model_ctx *mc, const mi_endoqc_result *r) {
    if (!c->trust.audit) return 0;
    cJSON *th = cJSON_CreateObject(), *res = cJSON_CreateObject();
    cJSON_AddNumberToObject(th, "min_frames", r->opts.min_frames);
    cJSON_AddNumberToObject(th, "min_prob", r->opts.min_prob);
    cJSON_AddNumberToObject(th, "site_threshold", r->opts.site_threshold);
    cJSON_AddNumberToObject(th, "every", r->opts.every);
    cJSON_AddNumberToObject(th, "dup_threshold", r->opts.dup_threshold);
    cJSON_AddNumberToObject(th, "dup_window", r->opts.dup_window);
    cJSON_AddStringToObject(th, "site_rule", mi_endoqc_site_rule(&r->opts));
    cJSON_AddStringToObject(th, "site_groups_source", r->groups_source);
    cJSON_AddStringToObject(res, "verdict", r->complete ? "complete" : "incomplete");
    cJSON_AddNumberToObject(res, "distinct_sites", r->distinct);
    cJSON *missing = mi_endoqc_missing_sites(r);
    if (missing) cJSON_AddItemToObject(res, "missing_sites", missing);
    cJSON_AddBoolToObject(res, "decode_complete", r->decode_complete);
    char *ths = cJSON_PrintUnformatted(th), *ress = missing ? cJSON_PrintUnformatted(res) : NULL;
    cJSON_Delete(th);
    cJSON_Delete(res);
    mi_status st;
    if (!ths || !ress) st = MI_FAIL(MI_ERR_NOMEM, "out of memory for the audit row of %s", r->video);
    else {
        mi_audit_row row = { .command = "endoqc", .input_sha256 = r->video_sha256, .thresholds_json = ths,
                             .result_json = ress };
        mi_audit_row_model(&row, &mc->ti);
        st = mi_audit_append(c->trust.audit, &row);
    }
    free(ths);
    free(ress);
    return st == MI_OK ? 0 : -1;
}

/* "exam.mp4: INCOMPLETE, 19 of 26 sites seen; missing: fundus_gc, ..." on stderr */
static void summary_line(const mi_endoqc_result *r) {
    fprintf(stderr, "endoqc %s: %s, %d of %d sites seen; missing: ", base_name(r->video),
            r->complete ? "COMPLETE" : "INCOMPLETE", r->distinct, r->nsites);
    int n = 0;
    for (int i = 0; i < r->nsites; i++)
        if (!r->sites[i].seen) fprintf(stderr, "%s%s", n++ ? ", " : "", r->sites[i].label);
    fprintf(stderr, "%s\n", n ? "" : "none");
}

/* Runs one exam and makes its report; writes nothing (the audit row goes first). */
static mi_status exam(cli *c, mi_endoqc_model *m, const char *video, const char *sha, bool sheet,
                      mi_endoqc_result *r, char **json) {
    mi_endoqc_opts o = c->o;
    o.known_sha256 = sha;
    o.keep_thumbs = sheet;
    mi_status st = mi_endoqc_run(m, video, &o, r);
    *json = NULL;
    if (st != MI_OK) return st;
    if (!(*json = mi_endoqc_report_json(r))) return MI_FAIL(MI_ERR_NOMEM, "out of memory for the report");
    return MI_OK;
}

static int run_single(cli *c, const char *video) {
    mi_endoqc_model *m = c->cur.m;
    mi_endoqc_result *r = calloc(1, sizeof *r);
    if (!r) return mi_cli_error("endoqc");
    char *json;
    mi_status st = exam(c, m, video, NULL, c->sheet != NULL, r, &json);
    int rc = MI_EXIT_OK;
    if (st != MI_OK) rc = mi_cli_error("endoqc");
    else if (audit_exam(c, &c->cur, r) != 0) rc = mi_audit_cli_fail("endoqc");   /* no record: no result */
    else if (c->sheet && mi_endoqc_contact_sheet(r, c->sheet) != MI_OK) rc = mi_cli_error("endoqc");
    else {
        if (c->dbh) {
            char settings[256];
            mi_endoqc_settings(m, &c->o, settings, sizeof settings);
            if (mi_endoqc_db_add_exam(c->dbh, "single", "single", r, settings, json, NULL) != MI_OK)
                rc = mi_cli_error("endoqc");
        }
        if (write_text(c->out, json) != 0) {
            fprintf(stderr, "medinfer endoqc: %s: cannot write the report: %s\n", c->out ? c->out : "stdout", strerror(errno));
            rc = MI_EXIT_FAIL;
        }
        if (!c->quiet) summary_line(r);
        if (!r->decode_complete && !c->quiet)
            fprintf(stderr, "medinfer endoqc: %s: %s; the report covers the first %.1f s\n", video,
                    r->damage[0] ? r->damage : "no frame decoded", r->decoded_until_ms / 1000.0);
    }
    free(json);
    mi_endoqc_result_free(r);
    free(r);
    return rc;
}

/* ---- batch ------------------------------------------------------------------------------- */

/* Lines of a list (or CSV "path,label"); relative paths are taken from the list's folder. */
static int read_list(const char *list, bool csv, entry **out, int *n) {
    FILE *f = fopen(list, "r");
    if (!f) { fprintf(stderr, "medinfer endoqc: %s: cannot open: %s\n", list, strerror(errno)); return -1; }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", list);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0; else dir[0] = 0;
    char line[2048];
    int cap = 0, lineno = 0;
    *out = NULL;
    *n = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        size_t l = strlen(s);
        while (l && (s[l - 1] == '\n' || s[l - 1] == '\r' || s[l - 1] == ' ')) s[--l] = 0;
        if (!*s || *s == '#') continue;
        int label = -1;
        if (csv) {
            char *comma = strrchr(s, ',');
            const char *lab = comma ? comma + 1 : "";
            while (*lab == ' ') lab++;
            if (!strcmp(lab, "complete")) label = 0;
            else if (!strcmp(lab, "incomplete")) label = 1;
            else if (*n == 0 && lineno == 1) continue;   /* a header line */
            else {
                fprintf(stderr, "medinfer endoqc: %s:%d: label '%s' is neither complete nor incomplete\n", list, lineno, lab);
                fclose(f);
                return -1;
            }
            *comma = 0;
        }
        if (*n == cap) { cap = cap ? 2 * cap : 16; entry *p = realloc(*out, cap * sizeof *p); if (!p) { fclose(f); return -1; } *out = p; }
        size_t need = strlen(dir) + strlen(s) + 1;
        char *p = malloc(need);
        if (!p) { fclose(f); return -1; }
        snprintf(p, need, "%s%s", s[0] == '/' ? "" : dir, s);
        (*out)[(*n)++] = (entry){ p, label };
    }
    fclose(f);
    return 0;
}

static void free_list(entry *e, int n) { for (int i = 0; i < n; i++) free(e[i].path); free(e); }

static int exam_failed(cli *c, cJSON *item, const char *video, int idx, int total) {
    cJSON_AddStringToObject(item, "status", "failed");
    cJSON_AddStringToObject(item, "error", mi_last_error());
    if (!c->quiet) fprintf(stderr, "[%d/%d] %s: failed: %s\n", idx, total, video, mi_last_error());
    return -1;
}

/* One video of a batch: reuse a stored result (resume) or run it, audit it, store it. 1 incomplete,
 * 0 complete, -1 failed. Adds an item to arr. */
static int batch_one(cli *c, const endoqc_model_ctx *mc, mi_endoqc_db *db, const char *batch_id, const char *role,
                     const char *video, int idx, int total, cJSON *arr) {
    mi_endoqc_model *m = mc->m;
    cJSON *item = cJSON_CreateObject();
    cJSON_AddItemToArray(arr, item);
    cJSON_AddStringToObject(item, "video", video);
    char sha[65], settings[256];
    mi_endoqc_settings(m, &c->o, settings, sizeof settings);
    if (mi_video_check_path(video) != MI_OK) return exam_failed(c, item, video, idx, total);
    if (mi_sha256_file(video, sha) != 0) {
        MI_FAIL(MI_ERR_IO, "%s: cannot read: %s", video, strerror(errno));
        return exam_failed(c, item, video, idx, total);
    }
    cJSON_AddStringToObject(item, "sha256", sha);
    int64_t id;
    bool complete;
    int distinct;
    cJSON *missing = NULL;
    if (mi_endoqc_db_find(db, sha, mi_endoqc_model_sha256(m), settings, &id, &complete, &distinct, &missing) != MI_OK)
        return exam_failed(c, item, video, idx, total);
    const char *status = "resumed";
    if (!id) {
        mi_endoqc_result *r = calloc(1, sizeof *r);
        char *json = NULL, sheet[1200];
        if (c->sheet) snprintf(sheet, sizeof sheet, "%s/%s.png", c->sheet, base_name(video));
        mi_status st = r ? exam(c, m, video, sha, c->sheet != NULL, r, &json)
                         : MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", video);
        /* the audit row first: an exam whose record cannot be written is not stored or shown */
        if (st == MI_OK && audit_exam(c, mc, r) != 0) {
            char why[1024];
            snprintf(why, sizeof why, "%s", mi_last_error());
            st = MI_FAIL(MI_ERR_IO, "audit: %s", why);
            c->audit_failed = true;
        }
        /* the sheet before the row: a stored row is a finished exam, and a rerun would not redo it */
        if (st == MI_OK && c->sheet) st = mi_endoqc_contact_sheet(r, sheet);
        if (st == MI_OK) st = mi_endoqc_db_add_exam(db, batch_id, role, r, settings, json, &id);
        if (st == MI_OK) {
            complete = r->complete;
            distinct = r->distinct;
            missing = mi_endoqc_missing_sites(r);
            status = "done";
        }
        free(json);
        if (r) mi_endoqc_result_free(r);
        free(r);
        if (st != MI_OK) return exam_failed(c, item, video, idx, total);
    }
    cJSON_AddStringToObject(item, "status", status);
    cJSON_AddNumberToObject(item, "id", (double)id);
    cJSON_AddStringToObject(item, "verdict", complete ? "complete" : "incomplete");
    cJSON_AddNumberToObject(item, "distinct_sites", distinct);
    cJSON_AddItemToObject(item, "missing_sites", missing ? missing : cJSON_CreateArray());
    if (!c->quiet)
        fprintf(stderr, "[%d/%d] %s%s%s: %s, %d sites%s\n", idx, total, strcmp(role, "exam") ? role : "",
                strcmp(role, "exam") ? " " : "",
                base_name(video), complete ? "complete" : "INCOMPLETE", distinct,
                !strcmp(status, "resumed") ? " (stored result)" : "");
    return complete ? 0 : 1;
}

/* The loop's reference runs: every labelled reference exam through mc (endoqc_refs_fn). */
static void run_refs(void *ctx, const endoqc_model_ctx *mc, const char *role, cJSON *items, int *evaluated,
                     int *agree) {
    cli *c = ctx;
    *evaluated = *agree = 0;
    /* a model on trial writes no contact sheet: the sheets show what the current model saw */
    const char *sheet = c->sheet;
    if (mc != &c->cur) c->sheet = NULL;
    for (int i = 0; i < c->nref; i++) {
        int v = batch_one(c, mc, c->dbh, c->batch_id, role, c->refs[i].path, i + 1, c->nref, items);
        cJSON_AddStringToObject(cJSON_GetArrayItem(items, cJSON_GetArraySize(items) - 1), "label",
                                c->refs[i].label ? "incomplete" : "complete");
        if (v < 0) continue;
        (*evaluated)++;
        *agree += v == c->refs[i].label;
    }
    c->sheet = sheet;
}

/* One pass of the model-quality loop when it is on; adds it to passes. true when a new model is
 * now active. */
static bool model_check(cli *c, const char *trigger, cJSON *passes) {
    if (!c->update_server) return false;
    endoqc_loop_opts lo = { .server = c->update_server, .model_dir = c->model_dir, .pubkey = c->trust.pubkey,
                            .audit = c->trust.audit, .infer_batch = c->infer_batch, .ref_exams = c->nref,
                            .quiet = c->quiet, .run_refs = run_refs, .ctx = c };
    bool activated = false, audit_failed = false;
    cJSON *pass = endoqc_loop_run(&lo, trigger, &c->cur, &activated, &audit_failed);
    if (audit_failed) c->audit_failed = true;
    if (pass) cJSON_AddItemToArray(passes, pass);
    return activated;
}

static void batch_id_now(char *id, size_t n) {
    time_t now = time(NULL);
    struct tm tmv;
    size_t k = strftime(id, n, "%Y%m%dT%H%M%SZ", gmtime_r(&now, &tmv));
    snprintf(id + k, n - k, "-%d", (int)getpid());
}

static int run_batch(cli *c) {
    entry *list = NULL;
    int n = 0, rc = MI_EXIT_OK;
    if (read_list(c->batch, false, &list, &n) != 0) return MI_EXIT_FAIL;
    if (c->sheet && mkdir(c->sheet, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "medinfer endoqc: %s: cannot create: %s\n", c->sheet, strerror(errno));
        free_list(list, n);
        return MI_EXIT_FAIL;
    }
    mi_endoqc_db *db = c->dbh;
    char batch_id[64];
    batch_id_now(batch_id, sizeof batch_id);
    c->batch_id = batch_id;

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "schema", "medinfer.endoqc.batch/2");
    cJSON_AddStringToObject(root, "batch_id", batch_id);
    cJSON_AddStringToObject(root, "list", c->batch);
    cJSON_AddStringToObject(root, "db", c->db);
    cJSON *passes = cJSON_CreateArray();
    model_check(c, "before batch", passes);
    /* the model every exam of this batch is judged by (a drift pass may change it afterwards) */
    char batch_model[sizeof c->cur.path], batch_sha[65], batch_version[64];
    snprintf(batch_model, sizeof batch_model, "%s", c->cur.path);
    snprintf(batch_sha, sizeof batch_sha, "%s", c->cur.ti.blob_sha256);
    snprintf(batch_version, sizeof batch_version, "%s", c->cur.ti.model_version);
    char settings[256];
    mi_endoqc_settings(c->cur.m, &c->o, settings, sizeof settings);

    cJSON *exams = cJSON_AddArrayToObject(root, "exams");
    mi_endoqc_drift d = { .alert = c->drift_alert / 100, .tolerance = c->drift_tolerance / 100,
                          .min_exams = c->drift_min_exams };
    int failed = 0;
    for (int i = 0; i < n; i++) {
        int v = batch_one(c, &c->cur, db, batch_id, "exam", list[i].path, i + 1, n, exams);
        if (v < 0) { failed++; continue; }
        d.batch_exams++;
        d.batch_incomplete += v;
    }
    mi_endoqc_drift_decide(&d);
    cJSON *refarr = NULL;
    if (d.alerted && c->nref > 0) {
        refarr = cJSON_CreateArray();
        int agree = 0;
        for (int i = 0; i < c->nref; i++) {
            int v = batch_one(c, &c->cur, db, batch_id, "reference", c->refs[i].path, i + 1, c->nref, refarr);
            cJSON *it = cJSON_GetArrayItem(refarr, i);
            cJSON_AddStringToObject(it, "label", c->refs[i].label ? "incomplete" : "complete");
            if (v < 0) { failed++; continue; }
            d.ref_exams++;
            d.ref_labelled_incomplete += c->refs[i].label;
            d.ref_predicted_incomplete += v;
            agree += v == c->refs[i].label;
        }
        d.ref_agree = agree;
        d.reference_run = d.ref_exams > 0;
        mi_endoqc_drift_decide(&d);
    }
    bool updated = d.model_update_required && model_check(c, "drift", passes);
    cJSON *ct = cJSON_AddObjectToObject(root, "counts");
    cJSON_AddNumberToObject(ct, "exams", n);
    cJSON_AddNumberToObject(ct, "evaluated", d.batch_exams);
    cJSON_AddNumberToObject(ct, "incomplete", d.batch_incomplete);
    cJSON_AddNumberToObject(ct, "failed", failed);
    cJSON *dj = cJSON_AddObjectToObject(root, "drift");
    cJSON_AddNumberToObject(dj, "incomplete_share", d.batch_share);
    cJSON_AddNumberToObject(dj, "alert", d.alert);
    cJSON_AddNumberToObject(dj, "min_exams", d.min_exams);
    cJSON_AddBoolToObject(dj, "judged", d.judged);
    cJSON_AddBoolToObject(dj, "alerted", d.alerted);
    if (c->reference) cJSON_AddStringToObject(dj, "reference", c->reference);
    else cJSON_AddNullToObject(dj, "reference");
    cJSON_AddBoolToObject(dj, "reference_run", d.reference_run);
    cJSON_AddNumberToObject(dj, "reference_exams", d.ref_exams);
    if (d.reference_run) {
        cJSON_AddNumberToObject(dj, "reference_labelled_share", d.ref_labelled_share);
        cJSON_AddNumberToObject(dj, "reference_predicted_share", d.ref_predicted_share);
        cJSON_AddNumberToObject(dj, "reference_agreement", (double)d.ref_agree / d.ref_exams);
    } else {
        cJSON_AddNullToObject(dj, "reference_labelled_share");
        cJSON_AddNullToObject(dj, "reference_predicted_share");
        cJSON_AddNullToObject(dj, "reference_agreement");
    }
    cJSON_AddNumberToObject(dj, "tolerance", d.tolerance);
    if (refarr) cJSON_AddItemToObject(dj, "reference_exams_detail", refarr);
    cJSON_AddBoolToObject(root, "model_update_required", d.model_update_required);
    cJSON *mu = cJSON_AddObjectToObject(root, "model_update");
    cJSON_AddBoolToObject(mu, "loop", c->update_server != NULL);
    cJSON_AddBoolToObject(mu, "activated_after_drift", updated);
    cJSON_AddStringToObject(mu, "active_model_version", c->cur.ti.model_version);
    cJSON_AddStringToObject(mu, "active_model_sha256", c->cur.ti.blob_sha256);
    cJSON_AddItemToObject(mu, "passes", passes);
    cJSON *p = cJSON_AddObjectToObject(root, "provenance");
    cJSON_AddStringToObject(p, "engine", "medinfer");
    cJSON_AddStringToObject(p, "engine_version", MI_VERSION);
    cJSON_AddStringToObject(p, "model", batch_model);
    cJSON_AddStringToObject(p, "model_version", batch_version);
    cJSON_AddStringToObject(p, "model_sha256", batch_sha);
    cJSON_AddStringToObject(p, "settings", settings);
    char *json = cJSON_Print(root);
    cJSON_Delete(root);
    if (!json || mi_endoqc_db_add_batch(db, batch_id, c->batch, &d, json) != MI_OK) rc = mi_cli_error("endoqc");
    if (json && write_text(c->out, json) != 0) {
        fprintf(stderr, "medinfer endoqc: %s: cannot write the summary: %s\n", c->out ? c->out : "stdout", strerror(errno));
        rc = MI_EXIT_FAIL;
    }
    if (!c->quiet) {
        if (!d.judged)
            fprintf(stderr, "endoqc batch %s: %d of %d exams incomplete; drift not judged (fewer than %d exams)\n",
                    batch_id, d.batch_incomplete, d.batch_exams, d.min_exams);
        else
            fprintf(stderr, "endoqc batch %s: %d of %d exams incomplete (%.0f%%, alert above %.0f%%)%s\n", batch_id,
                    d.batch_incomplete, d.batch_exams, 100 * d.batch_share, 100 * d.alert,
                    d.alerted && !d.reference_run ? (c->reference ? "; no reference exam could be run" : "; no --reference set to check drift against") : "");
        if (d.reference_run)
            fprintf(stderr, "endoqc drift: reference set %d exams, labelled incomplete %.0f%%, predicted %.0f%%: %s\n",
                    d.ref_exams, 100 * d.ref_labelled_share, 100 * d.ref_predicted_share,
                    !d.model_update_required ? "within tolerance"
                    : updated ? "model updated (this batch was judged by the previous model; rerun the list to judge it again)"
                    : "MODEL UPDATE REQUIRED");
    }
    free(json);
    free_list(list, n);
    if (rc == MI_EXIT_OK && failed) rc = MI_EXIT_FAIL;
    if (d.model_update_required && !updated) rc = MI_EXIT_MODEL_UPDATE;   /* the louder signal wins */
    if (c->audit_failed) rc = MI_TRUST_EXIT_AUDIT_IO;          /* results were withheld: louder still */
    return rc;
}

static int parse_num(const char *opt, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "medinfer endoqc: %s '%s': expected a number in [%g, %g]\n", opt, v, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

int cmd_endoqc(int argc, char **argv) {
    cli c = { .drift_alert = 20, .drift_tolerance = 5, .infer_batch = 8, .drift_min_exams = DEFAULT_MIN_EXAMS };
    mi_endoqc_opts_default(&c.o);
    const char *video = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int tr = mi_trust_opt(&c.trust, argc, argv, &i);
        if (tr < 0) return MI_EXIT_USAGE;
        if (tr) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return MI_EXIT_OK; }
        if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) { c.quiet = true; continue; }
        if (!strcmp(a, "--no-resample")) { c.o.resample = false; continue; }
        if (!strcmp(a, "--no-decode-thread")) { c.o.decode_thread = false; continue; }
        if (!strcmp(a, "--check-updates")) { c.check_updates = true; continue; }
        if (a[0] != '-') {
            if (video) { fprintf(stderr, "medinfer endoqc: one VIDEO per call (or --batch LIST)\n"); return MI_EXIT_USAGE; }
            video = a;
            continue;
        }
        if (i + 1 >= argc) { fprintf(stderr, "medinfer endoqc: %s needs a value\n", a); return MI_EXIT_USAGE; }
        const char *v = argv[++i];
        double x = 0;
        int bad = 0;
        if (!strcmp(a, "--model")) c.model = v;
        else if (!strcmp(a, "--out")) c.out = v;
        else if (!strcmp(a, "--contact-sheet")) c.sheet = v;
        else if (!strcmp(a, "--batch")) c.batch = v;
        else if (!strcmp(a, "--db")) { c.db = v; c.db_given = true; }
        else if (!strcmp(a, "--reference")) c.reference = v;
        else if (!strcmp(a, "--model-dir")) c.model_dir = v;
        else if (!strcmp(a, "--update-server")) c.update_server = v;
        else if (!strcmp(a, "--drift-min-exams")) { bad = parse_num(a, v, 1, 1e9, &x); c.drift_min_exams = (int)x; }
        else if (!strcmp(a, "--every")) { bad = parse_num(a, v, 1, 1e6, &x); c.o.every = (int)x; }
        else if (!strcmp(a, "--min-frames")) { bad = parse_num(a, v, 1, 1e6, &x); c.o.min_frames = (int)x; }
        else if (!strcmp(a, "--min-prob")) bad = parse_num(a, v, 0, 1, &c.o.min_prob);
        else if (!strcmp(a, "--site-threshold")) { bad = parse_num(a, v, 0, MI_ENDOQC_MAX_SITES, &x); c.o.site_threshold = (int)x; }
        else if (!strcmp(a, "--dup-threshold")) bad = parse_num(a, v, 0, 1, &c.o.dup_threshold);
        else if (!strcmp(a, "--dup-window")) {
            if (!strcmp(v, "all")) c.o.dup_window = 0;
            else { bad = parse_num(a, v, 0, 1e6, &x); c.o.dup_window = (int)x; }
        }
        else if (!strcmp(a, "--hash-size")) { bad = parse_num(a, v, 2, 8, &x); c.o.hash_size = (int)x; }
        else if (!strcmp(a, "--dark-level")) { bad = parse_num(a, v, 0, 255, &x); c.o.dark_level = (int)x; }
        else if (!strcmp(a, "--infer-batch")) { bad = parse_num(a, v, 1, MI_ENDOQC_MAX_BATCH, &x); c.infer_batch = (int)x; }
        else if (!strcmp(a, "--threads")) { bad = parse_num(a, v, 0, 4096, &x); c.threads = (int)x; }
        else if (!strcmp(a, "--drift-alert")) bad = parse_num(a, v, 0, 100, &c.drift_alert);
        else if (!strcmp(a, "--drift-tolerance")) bad = parse_num(a, v, 0, 100, &c.drift_tolerance);
        else { fprintf(stderr, "medinfer endoqc: unknown option %s\n", a); usage(stderr); return MI_EXIT_USAGE; }
        if (bad) return MI_EXIT_USAGE;
    }
    if (!video == !c.batch) { usage(stderr); return MI_EXIT_USAGE; }
    const char *why = NULL;
    if (c.model && c.model_dir) why = "--model and --model-dir name two models; give one";
    else if (c.update_server && !c.model_dir) why = "--update-server needs --model-dir (the model it updates)";
    else if (c.update_server && !c.reference) why = "--update-server needs --reference (a new model is used only after the labelled reference set checked it)";
    else if (c.check_updates && !c.update_server) why = "--check-updates needs --update-server";
    else if (c.update_server && video && !c.check_updates) why = "for a single exam the model check runs only with --check-updates";
    else if (c.reference && !c.batch && !c.check_updates) why = "--reference belongs to --batch (or to --check-updates)";
    if (why) { fprintf(stderr, "medinfer endoqc: %s\n", why); return MI_EXIT_USAGE; }
    if ((c.batch || c.update_server) && !c.db) c.db = "endoqc.sqlite";
    c.o.progress = !c.quiet && isatty(2);
    av_log_set_level(c.quiet ? AV_LOG_QUIET : AV_LOG_FATAL);   /* damage is summarized in the report */
    if (c.threads > 0) mi_set_threads(c.threads);

    if (c.model_dir) snprintf(c.cur.path, sizeof c.cur.path, "%s/" MI_MODEL_FILE, c.model_dir);
    else snprintf(c.cur.path, sizeof c.cur.path, "%s", c.model ? c.model : DEFAULT_MODEL);
    /* checks the signature of the loaded bytes before reading their endoqc metadata: exit 10 when
     * refused, 1 for a blob that cannot be used */
    mi_status st = mi_endoqc_model_open(&c.cur.m, c.cur.path, c.infer_batch, c.trust.pubkey, &c.cur.ti);
    if (st != MI_OK) return mi_trust_cli_fail("endoqc", st);
    const mi_endoqc_sites *ms = mi_endoqc_model_sites(c.cur.m);
    if (ms->groups_warning[0]) fprintf(stderr, "medinfer endoqc: warning: %s: %s\n", c.cur.path, ms->groups_warning);
    int rc = MI_EXIT_OK;
    if (c.reference && read_list(c.reference, true, &c.refs, &c.nref) != 0) rc = MI_EXIT_FAIL;
    else if (c.db && mi_endoqc_db_open(&c.dbh, c.db) != MI_OK) rc = mi_cli_error("endoqc");
    else if (c.batch) rc = run_batch(&c);
    else {
        cJSON *passes = cJSON_CreateArray();
        char batch_id[64];
        batch_id_now(batch_id, sizeof batch_id);
        c.batch_id = batch_id;
        if (c.check_updates) model_check(&c, "before exam", passes);
        cJSON_Delete(passes);   /* the pass is in the audit log and on stderr; the report names the model */
        rc = c.audit_failed ? MI_TRUST_EXIT_AUDIT_IO : run_single(&c, video);
    }
    mi_endoqc_db_close(c.dbh);
    free_list(c.refs, c.nref);
    mi_endoqc_model_close(c.cur.m);
    return rc;
}
