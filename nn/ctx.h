/* nn/ctx.h - the context a network's forward() runs in: one topology walk for planning and for
 * running, activation memory by liveness, named outputs and the capture hook.
 *
 * A network has a single forward(ctx, x). A session calls it twice over its life:
 *   measure: ctx->measure is true; every nn_* step checks shapes, records the size of its
 *            output and scratch and when each is taken and given back, and returns without
 *            touching data. nn_ctx_finish then gives every allocation its offset in one arena
 *            (allocations alive at the same time never overlap).
 *   run:     the same walk for real. Allocation k takes the offset the measure walk recorded
 *            for allocation k, so planning and running cannot disagree: a run that asks for
 *            more than was planned, or for allocations in another order, is our bug (asserted).
 * Both walks make the same calls in the same order because the code is the same; a smaller
 * batch (mi_session_run_n) only makes every request smaller.
 *
 * The forward frees what it no longer reads (nn_free), as PyTorch's reference counting would.
 * Tensors that are outputs the session keeps are pinned: nn_free leaves them alone, so they are
 * still there after the walk. */
#ifndef MI_NN_CTX_H
#define MI_NN_CTX_H

#include "medinfer.h"
#include "ops/tensor.h"

#include <stdbool.h>

/* allocation k of the walk: where it goes in the arena, how big, and the moments (a counter of
 * allocations and frees) it is taken and given back */
typedef struct { size_t off, size; int64_t t0, t1; } nn_slot;

typedef struct {
    char      name[64];
    mi_tensor t;              /* data set by the run walk */
} nn_output_slot;

typedef struct nn_ctx {
    bool      measure;
    mi_status status;         /* first failure of a measure walk; MI_OK on a run */
    /* measure: the plan being recorded and the allocations live at this point of the walk */
    nn_slot  *plan;
    int       nplan, plan_cap;
    int64_t   clock;
    size_t    peak;
    struct nn_live { int slot; bool pinned; } *live;
    int       nlive, live_cap;
    /* run: the arena, and the index of the next allocation */
    unsigned char *base;
    int       next;
    /* outputs the session keeps, in the order the walk produced them */
    const char *const *want;
    int       nwant;
    nn_output_slot *outs;
    int       nouts, outs_cap;
    /* nn_take's answers, recorded by the measure walk and replayed by the runs in the same order */
    bool     *takes;
    int       ntakes, takes_cap, next_take;
    mi_capture_fn capture;
    void     *user;
    mi_stage_fn stage;
    void     *stage_user;
} nn_ctx;

/* Starts a measure walk (want: the output names to keep), and the run walks after it. */
void      nn_ctx_measure(nn_ctx *c, const char *const *want, int nwant);
void      nn_ctx_run(nn_ctx *c, unsigned char *arena);
void      nn_ctx_free(nn_ctx *c);
/* Ends the measure walk: places every allocation in the arena. Returns the walk's first failure,
 * else MI_OK; then nn_ctx_arena_bytes is the arena size. */
mi_status nn_ctx_finish(nn_ctx *c);
size_t    nn_ctx_arena_bytes(const nn_ctx *c);

/* A fresh (N, C, ...) tensor from the arena, named for messages. During a measure walk .data is
 * a stand-in that must not be dereferenced. */
mi_tensor nn_alloc(nn_ctx *c, int ndim, const int64_t *shape, const char *name);
/* bytes of scratch for one step; nn_scratch_free right after the step */
void     *nn_scratch(nn_ctx *c, size_t bytes);
void      nn_scratch_free(nn_ctx *c, void *p);
/* The tensor's block may be reused (no effect on a pinned output or a tensor the arena does not
 * own, such as the caller's input). */
void      nn_free(nn_ctx *c, const mi_tensor *t);

/* true when the step may write over t, which it then consumes (the caller no longer frees it):
 * an arena tensor that is not a kept output. The measure walk decides, the runs replay its
 * answers, so both walks allocate alike. */
bool      nn_take(nn_ctx *c, const mi_tensor *t);

/* Records a failure during the measure walk (the first one wins) and returns it. */
mi_status nn_fail(nn_ctx *c, mi_status st);
/* true while the walk should go on: no failure so far */
static inline bool nn_ok(const nn_ctx *c) { return c->status == MI_OK; }
/* true when the step must compute (a run walk) */
static inline bool nn_compute(const nn_ctx *c) { return !c->measure; }

/* A named result: passed to the capture and stage hooks, and kept as an output when the session
 * wants that name (pinned). */
void      nn_mark(nn_ctx *c, const char *name, const mi_tensor *t);
/* A named result that only exists in another form (a padded map): its name and plain shape to
 * the stage hook alone */
void      nn_mark_stage(nn_ctx *c, const char *name, int ndim, const int64_t *shape);
/* true when the session keeps this output: lets a network skip what nobody reads (the head of a
 * classifier used as a backbone) */
bool      nn_wants(const nn_ctx *c, const char *name);

#endif
