/* tools/endoqc_loop.h - the model-quality loop of `medinfer endoqc` (docs/endoqc.md,
 * "Model-quality loop"): ask the update server for a newer model, stage it verified but unused,
 * run the labelled reference set through it and through the current model, and activate it only
 * when it agrees with the labels at least as well (or as well as the manifest's bar); otherwise
 * keep the current model and set the staged one aside with the reason. Every step is an audit row
 * (with --audit) and an entry in the JSON the caller puts into its summary. */
#ifndef MI_ENDOQC_LOOP_H
#define MI_ENDOQC_LOOP_H

#include "pipelines/endoqc/endoqc.h"
#include "pipelines/trust/trust.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

/* A loaded site classifier and what its trust check said. */
typedef struct {
    mi_endoqc_model *m;
    mi_trust_info    ti;
    char             path[1100];
} endoqc_model_ctx;

/* Runs the labelled reference set through mc, storing its rows under `role`; adds one item per
 * exam to items; counts the exams evaluated and those whose verdict equals the label. */
typedef void (*endoqc_refs_fn)(void *ctx, const endoqc_model_ctx *mc, const char *role, cJSON *items,
                               int *evaluated, int *agree);

typedef struct {
    const char    *server, *model_dir, *pubkey, *audit;
    int            infer_batch, ref_exams;
    bool           quiet;
    endoqc_refs_fn run_refs;
    void          *ctx;
} endoqc_loop_opts;

/* One pass: check, stage, self-check, activate or reject. `trigger` ("before batch", "drift",
 * "before exam") is recorded. On activation cur is reopened on the new model and *activated is
 * set. Returns the pass as a JSON object ({"trigger", "outcome", "steps": [...]}), NULL only when
 * out of memory. *audit_failed is set when an audit row could not be written (the pass stops
 * there: nothing is activated without its record). */
cJSON *endoqc_loop_run(const endoqc_loop_opts *lo, const char *trigger, endoqc_model_ctx *cur,
                       bool *activated, bool *audit_failed);

#endif
