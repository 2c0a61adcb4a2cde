/* nn/ctx.c - the measure and run walks of nn/ctx.h. */
#include "ctx.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* During a measure walk a tensor's data is this address plus its offset: never dereferenced (no
 * step computes in a measure walk), non-null, and mapped back to its block by nn_free. Integer
 * arithmetic, not pointer arithmetic on NULL. */
#define FAKE_BASE ((uintptr_t)1 << 40)

static size_t round_up(size_t n) { return (n + MI_ALIGN - 1) / MI_ALIGN * MI_ALIGN; }

void nn_ctx_measure(nn_ctx *c, const char *const *want, int nwant) {
    nn_ctx_free(c);
    c->measure = true;
    c->want = want;
    c->nwant = nwant;
}

void nn_ctx_run(nn_ctx *c, unsigned char *arena) {
    c->measure = false;
    c->base = arena;
    c->next = 0;
    c->nouts = 0;
}

void nn_ctx_free(nn_ctx *c) {
    free(c->plan);
    free(c->live);
    free(c->outs);
    mi_capture_fn cap = c->capture;
    void *user = c->user;
    memset(c, 0, sizeof *c);
    c->capture = cap;
    c->user = user;
}

mi_status nn_ctx_status(const nn_ctx *c) { return c->status; }
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

/* First fit: the lowest offset where `size` bytes fit between the live blocks (kept sorted by
 * offset). Deterministic, so the plan depends on the network and the input shape only. */
static void *measure_alloc(nn_ctx *c, size_t size) {
    size = round_up(size ? size : 1);
    if (!grow((void **)&c->plan, &c->plan_cap, c->nplan + 1, sizeof *c->plan) ||
        !grow((void **)&c->live, &c->live_cap, c->nlive + 1, sizeof *c->live)) {
        nn_fail(c, MI_FAIL(MI_ERR_NOMEM, "out of memory planning a session"));
        return NULL;
    }
    size_t off = 0;
    int at = 0;
    for (; at < c->nlive; at++) {
        if (c->live[at].off >= off + size) break;
        size_t end = c->live[at].off + c->live[at].size;
        if (end > off) off = end;
    }
    memmove(&c->live[at + 1], &c->live[at], (size_t)(c->nlive - at) * sizeof *c->live);
    c->live[at] = (struct nn_live){ off, size, false };
    c->nlive++;
    c->plan[c->nplan++] = (nn_slot){ off, size };
    if (off + size > c->peak) c->peak = off + size;
    return (void *)(FAKE_BASE + off);
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
    if (!c->measure || !p) return;  /* a run takes its offsets from the plan: nothing to do */
    uintptr_t a = (uintptr_t)p;
    if (a < FAKE_BASE) return;
    for (int i = 0; i < c->nlive; i++)
        if (c->live[i].off == a - FAKE_BASE) {
            if (c->live[i].pinned) return;
            memmove(&c->live[i], &c->live[i + 1], (size_t)(c->nlive - i - 1) * sizeof *c->live);
            c->nlive--;
            return;
        }
}

void nn_scratch_free(nn_ctx *c, void *p) { release(c, p); }
void nn_free(nn_ctx *c, const mi_tensor *t) { release(c, t->data); }

bool nn_wants(const nn_ctx *c, const char *name) {
    for (int i = 0; i < c->nwant; i++)
        if (!strcmp(c->want[i], name)) return true;
    return false;
}

void nn_mark(nn_ctx *c, const char *name, const mi_tensor *t) {
    if (!nn_ok(c)) return;
    if (!c->measure && c->capture)
        c->capture(c->user, name, t->data, t->ndim, t->shape);
    if (!nn_wants(c, name)) return;
    if (c->measure) {
        for (int i = 0; i < c->nlive; i++)
            if ((uintptr_t)t->data >= FAKE_BASE && c->live[i].off == (uintptr_t)t->data - FAKE_BASE)
                c->live[i].pinned = true;
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
