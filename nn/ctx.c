/* nn/ctx.c - the measure and run walks of nn/ctx.h. */
#include "nn/ctx.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* During a measure walk a tensor's data is a stand-in naming its allocation, FAKE_BASE + 64 * k
 * for allocation k: never dereferenced (no step computes in a measure walk), non-null, and mapped
 * back to its allocation by nn_free. Integer arithmetic, not pointer arithmetic on NULL. */
#define FAKE_BASE ((uintptr_t)1 << 40)

static size_t round_up(size_t n) { return (n + MI_ALIGN - 1) / MI_ALIGN * MI_ALIGN; }

void nn_ctx_measure(nn_ctx *c, const char *const *want, int nwant) {
    nn_ctx_free(c);
    c->measure = true;
    c->want = want;
    c->nwant = nwant;
}

/* Offsets for the recorded allocations, greedy by size (the arena planner of TFLite and others):
 * largest first, each at the lowest offset where it overlaps no already placed allocation that is
 * alive at the same time. First fit in walk order fragments badly (a ResNet-50 batch needs a third
 * more); this stays within a few percent of the largest live set. Deterministic: the plan depends
 * on the network and the input shape only. */
static int by_size_desc(const void *a, const void *b, void *p) {
    const nn_slot *s = p;
    int i = *(const int *)a, j = *(const int *)b;
    return s[i].size < s[j].size ? 1 : s[i].size > s[j].size ? -1 : i - j;
}

static int by_off(const void *a, const void *b, void *p) {
    const nn_slot *s = p;
    int i = *(const int *)a, j = *(const int *)b;
    return s[i].off < s[j].off ? -1 : s[i].off > s[j].off ? 1 : i - j;
}

static mi_status place(nn_ctx *c) {
    int n = c->nplan, *order = malloc((size_t)(n ? n : 1) * sizeof *order),
        *near = malloc((size_t)(n ? n : 1) * sizeof *near);
    if (!order || !near) {
        free(order);
        free(near);
        return MI_FAIL(MI_ERR_NOMEM, "out of memory planning a session");
    }
    for (int i = 0; i < n; i++) order[i] = i;
    qsort_r(order, (size_t)n, sizeof *order, by_size_desc, c->plan);
    c->peak = 0;
    for (int a = 0; a < n; a++) {
        nn_slot *s = &c->plan[order[a]];
        int m = 0;
        for (int b = 0; b < a; b++) {      /* placed, and alive at some moment s is */
            const nn_slot *o = &c->plan[order[b]];
            if (o->t0 < s->t1 && s->t0 < o->t1) near[m++] = order[b];
        }
        qsort_r(near, (size_t)m, sizeof *near, by_off, c->plan);
        size_t off = 0;
        for (int k = 0; k < m; k++) {
            const nn_slot *o = &c->plan[near[k]];
            if (o->off >= off + s->size) break;
            if (o->off + o->size > off) off = o->off + o->size;
        }
        s->off = off;
        if (off + s->size > c->peak) c->peak = off + s->size;
    }
    free(order);
    free(near);
    return MI_OK;
}

void nn_ctx_run(nn_ctx *c, unsigned char *arena) {
    c->measure = false;
    c->base = arena;
    c->next = 0;
    c->nouts = 0;
    c->next_take = 0;
}

void nn_ctx_free(nn_ctx *c) {
    free(c->plan);
    free(c->live);
    free(c->outs);
    free(c->takes);
    mi_capture_fn cap = c->capture;
    mi_stage_fn stage = c->stage;
    void *user = c->user, *stage_user = c->stage_user;
    memset(c, 0, sizeof *c);
    c->capture = cap;
    c->user = user;
    c->stage = stage;
    c->stage_user = stage_user;
}

mi_status nn_ctx_finish(nn_ctx *c) {
    if (c->status == MI_OK) {
        for (int i = 0; i < c->nlive; i++) c->plan[c->live[i].slot].t1 = c->clock + 1;  /* to the end */
        nn_fail(c, place(c));
    }
    return c->status;
}

size_t nn_ctx_arena_bytes(const nn_ctx *c) { return c->peak; }

mi_status nn_fail(nn_ctx *c, mi_status st) {
    if (c->status == MI_OK) c->status = st;
    return c->status;
}

static bool grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return true;
    int n = *cap ? *cap * 2 : 16;
    while (n < need) n *= 2;
    void *q = realloc(*p, (size_t)n * elem);
    if (!q) return false;
    *p = q;
    *cap = n;
    return true;
}

/* Records allocation k: its size and the moment it starts; nn_free records when it ends. */
static void *measure_alloc(nn_ctx *c, size_t size) {
    if (!grow((void **)&c->plan, &c->plan_cap, c->nplan + 1, sizeof *c->plan) ||
        !grow((void **)&c->live, &c->live_cap, c->nlive + 1, sizeof *c->live)) {
        nn_fail(c, MI_FAIL(MI_ERR_NOMEM, "out of memory planning a session"));
        return NULL;
    }
    const int k = c->nplan++;
    c->plan[k] = (nn_slot){ .size = round_up(size ? size : 1), .t0 = c->clock++ };
    c->live[c->nlive++] = (struct nn_live){ k, false };
    return (void *)(FAKE_BASE + (uintptr_t)k * MI_ALIGN);
}

static void *run_alloc(nn_ctx *c, size_t size) {
    MI_ASSERT(c->next < c->nplan);                      /* the run walk left the plan */
    const nn_slot *s = &c->plan[c->next++];
    MI_ASSERT(round_up(size ? size : 1) <= s->size);   /* ... or asks for more than planned */
    return c->base + s->off;
}

static void *alloc_bytes(nn_ctx *c, size_t bytes) {
    if (!nn_ok(c)) return NULL;
    return c->measure ? measure_alloc(c, bytes) : run_alloc(c, bytes);
}

/* the live entry of a measure-walk stand-in, or -1 (a tensor the arena does not own) */
static int live_index(const nn_ctx *c, const void *p) {
    uintptr_t a = (uintptr_t)p;
    if (!c->measure || a < FAKE_BASE || (a - FAKE_BASE) % MI_ALIGN) return -1;
    for (int i = 0; i < c->nlive; i++)
        if ((uintptr_t)c->live[i].slot == (a - FAKE_BASE) / MI_ALIGN) return i;
    return -1;
}

mi_tensor nn_alloc(nn_ctx *c, int ndim, const int64_t *shape, const char *name) {
    mi_tensor t = mi_tensor_view(NULL, ndim, shape, name);
    size_t bytes;
    if (mi_mul_overflows((size_t)mi_tensor_numel(&t), sizeof(float), &bytes)) {
        nn_fail(c, MI_FAIL(MI_ERR_ARG, "'%s': tensor too large", name));
        return t;
    }
    t.data = alloc_bytes(c, bytes);
    return t;
}

/* always a slot, even for 0 bytes, so that a smaller run makes the same allocations */
void *nn_scratch(nn_ctx *c, size_t bytes) { return alloc_bytes(c, bytes); }

static void release(nn_ctx *c, const void *p) {
    int i = live_index(c, p);            /* a run takes its offsets from the plan: nothing to do */
    if (i < 0 || c->live[i].pinned) return;
    c->plan[c->live[i].slot].t1 = c->clock++;
    c->live[i] = c->live[--c->nlive];
}

void nn_scratch_free(nn_ctx *c, void *p) { release(c, p); }

bool nn_take(nn_ctx *c, const mi_tensor *t) {
    if (!nn_ok(c)) return false;
    if (!c->measure) {
        MI_ASSERT(c->next_take < c->ntakes);   /* the run walk left the measure walk's steps */
        return c->takes[c->next_take++];
    }
    if (!grow((void **)&c->takes, &c->takes_cap, c->ntakes + 1, sizeof *c->takes)) {
        nn_fail(c, MI_FAIL(MI_ERR_NOMEM, "out of memory planning a session"));
        return false;
    }
    const int i = live_index(c, t->data);
    return c->takes[c->ntakes++] = i >= 0 && !c->live[i].pinned;
}
void nn_free(nn_ctx *c, const mi_tensor *t) { release(c, t->data); }

bool nn_wants(const nn_ctx *c, const char *name) {
    for (int i = 0; i < c->nwant; i++)
        if (!strcmp(c->want[i], name)) return true;
    return false;
}

void nn_mark_stage(nn_ctx *c, const char *name, int ndim, const int64_t *shape) {
    if (nn_ok(c) && !c->measure && c->stage) c->stage(c->stage_user, name, ndim, shape);
}

void nn_mark(nn_ctx *c, const char *name, const mi_tensor *t) {
    if (!nn_ok(c)) return;
    if (!c->measure && c->capture)
        c->capture(c->user, name, t->data, t->ndim, t->shape);
    nn_mark_stage(c, name, t->ndim, t->shape);
    if (!nn_wants(c, name)) return;
    if (c->measure) {
        int i = live_index(c, t->data);
        if (i >= 0) c->live[i].pinned = true;
        if (!grow((void **)&c->outs, &c->outs_cap, c->nouts + 1, sizeof *c->outs)) {
            nn_fail(c, MI_FAIL(MI_ERR_NOMEM, "out of memory planning a session"));
            return;
        }
    }
    MI_ASSERT(c->nouts < c->outs_cap);
    nn_output_slot *o = &c->outs[c->nouts++];
    snprintf(o->name, sizeof o->name, "%s", name);
    o->t = *t;
}
