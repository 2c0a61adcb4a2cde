/* tools/endoqc_loop.c - the model-quality loop of `medinfer endoqc` (see endoqc_loop.h).
 *
 * What can change the model a hospital runs is exactly three library calls, in this order:
 * mi_model_update with stage set (the same checks as `medinfer model update`: manifest, version,
 * hardware code, size, SHA-256, signature; the blob lands in DIR/staged, which nothing loads),
 * then mi_model_activate_staged or mi_model_reject_staged. Between them the staged blob is
 * opened like any model (its signature is checked again on the bytes that run) and the labelled
 * reference set goes through it. A machine stopped at any point keeps running the current model:
 * staging never touches `current`, activation is one symlink rename (docs/trust.md). */
#include "tools/endoqc_loop.h"
#include "tools/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void say(const endoqc_loop_opts *lo, const char *fmt, const char *a, const char *b) {
    if (lo->quiet) return;
    fputs("endoqc model check: ", stderr);
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
}

/* The step's audit row, model fields from ti. false (and the error in mi_last_error) when it
 * could not be written. */
static bool audit_step(const endoqc_loop_opts *lo, const mi_trust_info *ti, const cJSON *step) {
    if (!lo->audit) return true;
    char *res = cJSON_PrintUnformatted(step);
    if (!res) { MI_FAIL(MI_ERR_NOMEM, "out of memory for an audit row"); return false; }
    mi_audit_row row = { .command = "endoqc-model-update", .input_sha256 = "", .result_json = res };
    mi_audit_row_model(&row, ti);
    mi_status st = mi_audit_append(lo->audit, &row);
    free(res);
    return st == MI_OK;
}

static cJSON *add_step(cJSON *steps, const char *name, const char *outcome) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddItemToArray(steps, s);
    cJSON_AddStringToObject(s, "step", name);
    cJSON_AddStringToObject(s, "outcome", outcome);
    return s;
}

static void finish(cJSON *pass, const char *outcome, const endoqc_model_ctx *cur) {
    cJSON_AddStringToObject(pass, "outcome", outcome);
    cJSON_AddStringToObject(pass, "active_model_version", cur->ti.model_version);
    cJSON_AddStringToObject(pass, "active_model_sha256", cur->ti.blob_sha256);
}

static cJSON *selfcheck_json(const mi_endoqc_selfcheck *s) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "reference_exams", s->ref_exams);
    cJSON_AddNumberToObject(j, "staged_evaluated", s->staged_evaluated);
    cJSON_AddNumberToObject(j, "staged_agree", s->staged_agree);
    cJSON_AddNumberToObject(j, "staged_accuracy", s->staged_accuracy);
    cJSON_AddNumberToObject(j, "current_evaluated", s->current_evaluated);
    cJSON_AddNumberToObject(j, "current_agree", s->current_agree);
    cJSON_AddNumberToObject(j, "current_accuracy", s->current_accuracy);
    cJSON_AddNumberToObject(j, "bar", s->bar);
    cJSON_AddStringToObject(j, "bar_source", s->bar_source);
    cJSON_AddBoolToObject(j, "activate", s->activate);
    cJSON_AddStringToObject(j, "reason", s->reason);
    return j;
}

/* Sets the staged model aside with its record; the step says whether that worked. */
static bool reject(const endoqc_loop_opts *lo, const mi_trust_info *ti, cJSON *steps, const char *version,
                   const char *why, const cJSON *detail, bool *audit_failed) {
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "model_version", version);
    cJSON_AddStringToObject(rec, "reason", why);
    if (detail) cJSON_AddItemToObject(rec, "selfcheck", cJSON_Duplicate(detail, true));
    char *text = cJSON_Print(rec);
    cJSON_Delete(rec);
    int code = 0;
    mi_status st = text ? mi_model_reject_staged(lo->model_dir, text, &code) : MI_FAIL(MI_ERR_NOMEM, "out of memory");
    free(text);
    cJSON *s = add_step(steps, "reject", st == MI_OK ? "rejected" : "error");
    cJSON_AddStringToObject(s, "model_version", version);
    cJSON_AddStringToObject(s, "reason", why);
    if (st != MI_OK) cJSON_AddStringToObject(s, "error", mi_last_error());
    if (!audit_step(lo, ti, s)) *audit_failed = true;
    say(lo, "staged model %s set aside: %s", version, why);
    return st == MI_OK;
}

cJSON *endoqc_loop_run(const endoqc_loop_opts *lo, const char *trigger, endoqc_model_ctx *cur,
                       bool *activated, bool *audit_failed) {
    *activated = false;
    cJSON *pass = cJSON_CreateObject();
    if (!pass) return NULL;
    cJSON_AddStringToObject(pass, "trigger", trigger);
    cJSON_AddStringToObject(pass, "server", lo->server);
    cJSON *steps = cJSON_AddArrayToObject(pass, "steps");

    /* 1. check and stage */
    mi_update_opts uo = { .server = lo->server, .model_dir = lo->model_dir, .pubkey = lo->pubkey,
                          .quiet = lo->quiet, .stage = true };
    mi_update_result ur;
    mi_status st = mi_model_update(&uo, &ur);
    const char *outcome = st != MI_OK ? "refused" : ur.rejected_before ? "rejected_earlier"
                        : ur.staged ? "staged" : "up_to_date";
    cJSON *s = add_step(steps, "check", outcome);
    cJSON_AddStringToObject(s, "installed_version", ur.installed_version);
    cJSON_AddStringToObject(s, "offered_version", ur.offered_version);
    cJSON_AddStringToObject(s, "hwcode", ur.hwcode);
    if (st != MI_OK) {
        cJSON_AddNumberToObject(s, "exit_code", ur.exit_code);
        cJSON_AddStringToObject(s, "error", mi_last_error());
    }
    if (ur.rejected_before) cJSON_AddStringToObject(s, "rejected_record", ur.rejected_reason);
    if (!audit_step(lo, &cur->ti, s)) {
        *audit_failed = true;
        finish(pass, "audit_failed", cur);
        return pass;
    }
    if (st != MI_OK) {
        char why[1024];
        snprintf(why, sizeof why, "%s", mi_last_error());
        say(lo, "%s (current model %s kept)", why, cur->ti.model_version);
        finish(pass, "refused", cur);
        return pass;
    }
    if (!ur.staged) {
        if (ur.rejected_before)
            say(lo, "%s is offered again; it failed its self-check here before, current model %s kept",
                ur.offered_version, cur->ti.model_version);
        finish(pass, outcome, cur);
        return pass;
    }
    say(lo, "%s staged (current %s); self-check on the reference set", ur.offered_version, cur->ti.model_version);

    /* 2. self-check: the staged blob opened as any model is (signature checked on what runs) */
    endoqc_model_ctx staged = { 0 };
    snprintf(staged.path, sizeof staged.path, "%s", ur.staged_blob);
    if ((st = mi_endoqc_model_open(&staged.m, staged.path, lo->infer_batch, lo->pubkey, &staged.ti)) != MI_OK) {
        char why[1200];
        snprintf(why, sizeof why, "the staged blob cannot be used as a site classifier: %s", mi_last_error());
        s = add_step(steps, "selfcheck", "unusable");
        cJSON_AddStringToObject(s, "error", why);
        if (!audit_step(lo, &cur->ti, s)) *audit_failed = true;
        else reject(lo, &cur->ti, steps, ur.offered_version, why, NULL, audit_failed);
        finish(pass, *audit_failed ? "audit_failed" : "rejected", cur);
        return pass;
    }
    mi_endoqc_selfcheck sc = { .ref_exams = lo->ref_exams, .min_accuracy = ur.min_accuracy };
    cJSON *items_new = cJSON_CreateArray(), *items_cur = cJSON_CreateArray();
    lo->run_refs(lo->ctx, &staged, "selfcheck", items_new, &sc.staged_evaluated, &sc.staged_agree);
    lo->run_refs(lo->ctx, cur, "reference", items_cur, &sc.current_evaluated, &sc.current_agree);
    mi_endoqc_model_close(staged.m);
    mi_endoqc_selfcheck_decide(&sc);
    cJSON *scj = selfcheck_json(&sc);
    s = add_step(steps, "selfcheck", sc.activate ? "passed" : sc.complete ? "failed" : "incomplete");
    cJSON_AddStringToObject(s, "model_version", ur.offered_version);
    cJSON_AddItemToObject(s, "result", scj);
    cJSON_AddItemToObject(s, "staged_exams", items_new);
    cJSON_AddItemToObject(s, "current_exams", items_cur);
    if (!audit_step(lo, &staged.ti, s)) {
        *audit_failed = true;
        finish(pass, "audit_failed", cur);
        return pass;
    }

    /* 3. activate, set aside, or (nothing to compare) leave it staged for the next pass */
    if (!sc.complete) {
        say(lo, "%s stays staged, not in use: %s", ur.offered_version, sc.reason);
        finish(pass, "kept_staged", cur);
        return pass;
    }
    if (!sc.activate) {
        char why[400];
        snprintf(why, sizeof why, "self-check failed: %s", sc.reason);
        bool ok = reject(lo, &staged.ti, steps, ur.offered_version, why, scj, audit_failed);
        finish(pass, *audit_failed ? "audit_failed" : ok ? "rejected" : "error", cur);
        return pass;
    }
    int code = 0;
    char version[64];
    st = mi_model_activate_staged(lo->model_dir, lo->pubkey, &code, version);
    s = add_step(steps, "activate", st == MI_OK ? "activated" : "error");
    cJSON_AddStringToObject(s, "model_version", ur.offered_version);
    cJSON_AddStringToObject(s, "previous_version", cur->ti.model_version);
    cJSON_AddStringToObject(s, "reason", sc.reason);
    if (st != MI_OK) {
        cJSON_AddStringToObject(s, "error", mi_last_error());
        if (!audit_step(lo, &cur->ti, s)) *audit_failed = true;
        finish(pass, "error", cur);
        return pass;
    }
    /* from here the model dir's current model is the new one: run it */
    endoqc_model_ctx next = { 0 };
    snprintf(next.path, sizeof next.path, "%s", cur->path);
    if ((st = mi_endoqc_model_open(&next.m, next.path, lo->infer_batch, lo->pubkey, &next.ti)) != MI_OK) {
        cJSON_AddStringToObject(s, "error", mi_last_error());
        if (!audit_step(lo, &staged.ti, s)) *audit_failed = true;
        finish(pass, "error", cur);
        return pass;
    }
    mi_endoqc_model_close(cur->m);
    *cur = next;
    *activated = true;
    if (!audit_step(lo, &cur->ti, s)) *audit_failed = true;
    say(lo, "%s activated: %s", ur.offered_version, sc.reason);
    finish(pass, "activated", cur);
    return pass;
}
