/* pipelines/endoqc/feed.c - the decoder thread and its bounded queue (see feed.h).
 *
 * One mutex, two condition variables. The decoder waits while the ring of records is full, or
 * while a frame needs pixels and every slot is taken; the caller waits while the ring is empty.
 * A slot handed to the caller returns to the free list at the caller's next call, so the frame
 * being preprocessed (or sitting in a batch being classified) is never overwritten. */
#include "pipelines/endoqc/feed.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    mi_feed_item it;
    int slot;                      /* -1: no pixels */
} rec;

struct mi_endoqc_feed {
    mi_video      *v;
    mi_feed_select select;
    void          *arg;
    bool           threaded;
    /* decoder side (the caller's when unthreaded); read by the caller only after the join */
    int64_t decoded;
    double  t_read, t_select;
    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t  more, room;   /* a record was queued / a record or a slot was freed */
    rec      *ring;
    int       cap, head, n;
    uint8_t **px;                 /* slots */
    size_t   *px_cap;
    int      *free_slot, nfree, nslots;
    int       held;               /* the slot the caller holds, -1 when none */
    bool      done;
    atomic_bool stop;             /* set under mu; also read between frames, to stop mid-skip */
    bool      waiting;            /* the decoder waits for room */
    mi_status end_st;             /* with end_msg/end_where: how the decoder's stream ended */
    char      end_msg[1024], end_where[128];
    pthread_t th;
    bool      started;
    /* caller side */
    double    t_wait;
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The next frame the selector keeps, or the end (*got false), or an error; its pixels are the
 * reader's (valid until the next read). */
static mi_status produce(mi_endoqc_feed *q, mi_feed_item *it, mi_feed_pick *pick, bool *got) {
    for (;;) {
        /* a caller that stopped early waits for this thread: not for the rest of a long window
         * of skipped frames */
        if (atomic_load_explicit(&q->stop, memory_order_relaxed)) { *got = false; return MI_OK; }
        double t0 = now_ms();
        mi_status st = mi_video_read(q->v, &it->f, got);
        double t1 = now_ms();
        q->t_read += t1 - t0;
        if (st != MI_OK || !*got) { *got = false; return st; }
        q->decoded++;
        it->tag = 0;
        st = q->select(q->arg, &it->f, pick, &it->tag);
        q->t_select += now_ms() - t1;
        if (st != MI_OK || *pick == MI_FEED_END) { *got = false; return st; }
        if (*pick == MI_FEED_SKIP) continue;
        it->decoded = q->decoded;
        if (*pick == MI_FEED_RECORD) it->f.px = NULL;
        return MI_OK;
    }
}

/* under mu: the decoder's stream is over (st MI_OK: its end) */
static void finish_locked(mi_endoqc_feed *q, mi_status st) {
    q->done = true;
    q->end_st = st;
    if (st != MI_OK) {
        snprintf(q->end_msg, sizeof q->end_msg, "%s", mi_last_error());
        snprintf(q->end_where, sizeof q->end_where, "%s", mi_last_error_where());
    }
    pthread_cond_broadcast(&q->more);
}

static void *decoder_main(void *arg) {
    mi_endoqc_feed *q = arg;
    for (;;) {
        mi_feed_item it;
        mi_feed_pick pick;
        bool got;
        mi_status st = produce(q, &it, &pick, &got);
        pthread_mutex_lock(&q->mu);
        if (st != MI_OK || !got) { finish_locked(q, st); break; }
        bool pixels = pick == MI_FEED_PIXELS;
        while (!q->stop && (q->n == q->cap || (pixels && q->nfree == 0))) {
            q->waiting = true;
            pthread_cond_wait(&q->room, &q->mu);
        }
        q->waiting = false;
        if (q->stop) break;
        int slot = pixels ? q->free_slot[--q->nfree] : -1;
        pthread_mutex_unlock(&q->mu);
        if (pixels) {   /* the copy runs outside the lock: the slot is this thread's until queued */
            size_t need = (size_t)it.f.w * it.f.h * 3;
            if (need > q->px_cap[slot]) {
                uint8_t *p = realloc(q->px[slot], need);
                if (!p) {
                    st = MI_FAIL(MI_ERR_NOMEM, "out of memory for a queued %dx%d frame", it.f.w, it.f.h);
                    pthread_mutex_lock(&q->mu);
                    q->free_slot[q->nfree++] = slot;
                    finish_locked(q, st);
                    break;
                }
                q->px[slot] = p;
                q->px_cap[slot] = need;
            }
            memcpy(q->px[slot], it.f.px, need);
            it.f.px = q->px[slot];
        }
        pthread_mutex_lock(&q->mu);
        q->ring[(q->head + q->n) % q->cap] = (rec){ it, slot };
        q->n++;
        pthread_cond_signal(&q->more);
        pthread_mutex_unlock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

static void feed_free(mi_endoqc_feed *q) {
    if (!q) return;
    for (int i = 0; q->px && i < q->nslots; i++) free(q->px[i]);
    free(q->px);
    free(q->px_cap);
    free(q->free_slot);
    free(q->ring);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->more);
    pthread_cond_destroy(&q->room);
    free(q);
}

mi_status mi_endoqc_feed_start(mi_endoqc_feed **out, mi_video *v, bool threaded, int slots, int records,
                               mi_feed_select select, void *arg) {
    *out = NULL;
    MI_ASSERT(slots >= 1 && records >= 1);
    mi_endoqc_feed *q = calloc(1, sizeof *q);
    if (!q) return MI_FAIL(MI_ERR_NOMEM, "out of memory for the decoder queue");
    q->v = v;
    q->select = select;
    q->arg = arg;
    q->threaded = threaded;
    q->held = -1;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->more, NULL);
    pthread_cond_init(&q->room, NULL);
    if (threaded) {
        q->cap = records;
        q->nslots = q->nfree = slots;
        q->ring = malloc((size_t)records * sizeof *q->ring);
        q->px = calloc((size_t)slots, sizeof *q->px);
        q->px_cap = calloc((size_t)slots, sizeof *q->px_cap);
        q->free_slot = malloc((size_t)slots * sizeof *q->free_slot);
        if (!q->ring || !q->px || !q->px_cap || !q->free_slot) {
            feed_free(q);
            return MI_FAIL(MI_ERR_NOMEM, "out of memory for the decoder queue (%d frames)", slots);
        }
        for (int i = 0; i < slots; i++) q->free_slot[i] = slots - 1 - i;
        int e = pthread_create(&q->th, NULL, decoder_main, q);
        if (e != 0) {
            feed_free(q);
            return MI_FAIL(MI_ERR_NOMEM, "cannot start the decoder thread: %s", strerror(e));
        }
        q->started = true;
    }
    *out = q;
    return MI_OK;
}

/* The decoder's error, raised again on this thread with its own message and origin. */
static mi_status raise_again(const mi_endoqc_feed *q) {
    char src[128];
    int line = 0;
    snprintf(src, sizeof src, "%s", q->end_where);
    char *colon = strrchr(src, ':');
    if (colon) { line = atoi(colon + 1); *colon = 0; }
    return mi_fail_at(q->end_st, src, line, "%s", q->end_msg);
}

mi_status mi_endoqc_feed_next(mi_endoqc_feed *q, mi_feed_item *it, bool *got) {
    *got = false;
    if (!q->threaded) {
        mi_feed_pick pick;
        return produce(q, it, &pick, got);
    }
    double t0 = now_ms();
    pthread_mutex_lock(&q->mu);
    if (q->held >= 0) {
        q->free_slot[q->nfree++] = q->held;
        q->held = -1;
        pthread_cond_signal(&q->room);
    }
    while (q->n == 0 && !q->done) pthread_cond_wait(&q->more, &q->mu);
    mi_status st = MI_OK;
    if (q->n > 0) {
        rec *r = &q->ring[q->head];
        *it = r->it;
        q->held = r->slot;
        q->head = (q->head + 1) % q->cap;
        q->n--;
        *got = true;
        pthread_cond_signal(&q->room);
    } else if (q->end_st != MI_OK) st = raise_again(q);
    pthread_mutex_unlock(&q->mu);
    q->t_wait += now_ms() - t0;
    return st;
}

bool mi_endoqc_feed_decoding(mi_endoqc_feed *q) {
    if (!q || !q->threaded) return false;
    pthread_mutex_lock(&q->mu);
    bool busy = !q->done && !q->waiting;
    pthread_mutex_unlock(&q->mu);
    return busy;
}

int64_t mi_endoqc_feed_stop(mi_endoqc_feed *q, double *t_read, double *t_select, double *t_wait) {
    if (!q) return 0;
    if (q->started) {
        pthread_mutex_lock(&q->mu);
        q->stop = true;
        pthread_cond_broadcast(&q->room);
        pthread_mutex_unlock(&q->mu);
        pthread_join(q->th, NULL);
    }
    int64_t n = q->decoded;
    if (t_read) *t_read += q->t_read;
    if (t_select) *t_select += q->t_select;
    if (t_wait) *t_wait += q->t_wait;
    feed_free(q);
    return n;
}
