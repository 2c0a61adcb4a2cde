/* pipelines/endoqc/feed.h - endoqc's decoder thread: frames are decoded, and picked, ahead of the
 * network, through a bounded queue.
 *
 *   decoder thread:  mi_video_read -> select(frame) -> skip | record | record + pixels -> queue
 *   caller:          mi_endoqc_feed_next -> the records in decode order, then the end or the error
 *
 * Why the picking runs on the decoder thread too: of the 7,500 frames of the 5-minute bench video
 * only ~840 are kept and ~280 classified. If every decoded frame crossed the queue, the decoder
 * could run ahead of a classification (0.3 s for a batch of 8 ResNet-50 frames, ~220 decoded
 * frames) only with ~220 work frames queued (59 MB at 720p); when only the frames the network
 * will see carry pixels, 2 x batch of them let the decoder decode the whole next batch while the
 * current one is classified. The selector is sequential state over the frames in decode order
 * (dark test, average hash, the dedup window, every k-th kept frame) that depends on nothing the
 * network says, so it gives the same answers on either thread.
 *
 * Memory: `slots` frames of pixels (at 720p with a 224 model the work frame is 398x224 RGB,
 * 267,456 bytes: 16 slots = 4.3 MB) plus `records` records of 64 bytes, whatever the video's length.
 *
 * Errors: a failed read or selection ends the stream after the records before it, which the
 * caller receives first; mi_endoqc_feed_next then returns the decoder's status with its message
 * in the caller's mi_last_error(), as if the caller had read the frames itself. */
#ifndef MI_ENDOQC_FEED_H
#define MI_ENDOQC_FEED_H

#include "pipelines/io/video.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    MI_FEED_SKIP,     /* the caller never sees this frame */
    MI_FEED_RECORD,   /* its times and tag only (f.px NULL) */
    MI_FEED_PIXELS,   /* with its pixels */
    MI_FEED_END,      /* the caller would stop reading at this frame: the stream ends before it */
} mi_feed_pick;

/* Runs on the decoder thread (or the caller's, unthreaded) for every frame in decode order. A
 * status other than MI_OK ends the stream with that error. */
typedef mi_status (*mi_feed_select)(void *arg, const mi_video_frame *f, mi_feed_pick *pick, int64_t *tag);

typedef struct {
    mi_video_frame f;     /* f.px: the pixels for MI_FEED_PIXELS, else NULL; valid until the next call */
    int64_t tag;          /* what the selector set */
    int64_t decoded;      /* frames read by this feed up to and including this one */
} mi_feed_item;

typedef struct mi_endoqc_feed mi_endoqc_feed;

/* Starts reading v from where it stands. threaded false: no thread, no copies; each
 * mi_endoqc_feed_next reads on the caller's thread (the same picks, one frame at a time).
 * v and arg belong to the feed until mi_endoqc_feed_stop. */
mi_status mi_endoqc_feed_start(mi_endoqc_feed **out, mi_video *v, bool threaded, int slots, int records,
                               mi_feed_select select, void *arg);

/* The next record in decode order. *got false: the end (MI_OK), or the decoder's error. */
mi_status mi_endoqc_feed_next(mi_endoqc_feed *q, mi_feed_item *it, bool *got);

/* Whether the decoder thread is at work now (not waiting for room in the queue, not finished): the
 * caller then has one core less for itself. Always false unthreaded. */
bool mi_endoqc_feed_decoding(mi_endoqc_feed *q);

/* Stops the decoder thread where it is and joins it (the caller may stop before the end). Adds
 * the time spent reading, in selection and - on the caller's side - waiting for the queue, in ms;
 * returns the frames read. */
int64_t mi_endoqc_feed_stop(mi_endoqc_feed *q, double *t_read, double *t_select, double *t_wait);

#endif
