/* pipelines/assist/analyze.h - what a worker of the diagnosis server does with one decoded frame:
 * the quality rule, then the detector, then the lesions as the API reports and the findings
 * database stores them (with a thumbnail each). */
#ifndef MI_ASSIST_ANALYZE_H
#define MI_ASSIST_ANALYZE_H

#include "medinfer.h"
#include "pipelines/assist/quality.h"
#include "pipelines/io/image.h"

#include <stdbool.h>

#define MI_ASSIST_MAX_LESIONS 32
#define MI_ASSIST_MAX_CLASSES 64

/* One worker's detector: its own session on the shared model, remade when the frame size
 * changes (a terminal's frames keep their size, so this is once per terminal stream). */
typedef struct {
    const mi_model *model;
    int             threads;      /* OpenMP threads of this worker's runs */
    mi_session     *s;
    int             w, h;
} mi_assist_detector;

typedef struct {
    int    label;
    float  score;
    float  box[4];                       /* in the frame's pixels */
    float  probs[MI_ASSIST_MAX_CLASSES]; /* per label, background (0) included */
    bool   high_risk;
} mi_assist_lesion;

typedef struct {
    float       score_threshold;   /* lesions below are not reported */
    float       alert_threshold;   /* a high-risk label at or above this raises an alert */
    const bool *high_risk_label;   /* [num_classes] */
} mi_assist_policy;

/* The model's 'high_risk_labels' metadata (a JSON list of label names; absent: "adenomatous
 * polyp" and "ulcer" where the model has them) into flags[num_classes]. Refuses a name the model
 * has no label for. */
mi_status mi_assist_high_risk_labels(const mi_model *m, bool *flags, int cap);

/* The model's 'score_threshold' metadata (the one chosen on validation images when it was
 * trained) into *thr; *thr is left as it is when the model has none. Refuses a value that is not
 * a number in 0..1. */
mi_status mi_assist_model_score_threshold(const mi_model *m, float *thr);

/* Runs the detector on an RGB8 frame: up to cap lesions scoring >= score_threshold, best first.
 * *n gets how many. */
mi_status mi_assist_detect(mi_assist_detector *d, const mi_image *img, const mi_assist_policy *p,
                           mi_assist_lesion *out, int cap, int *n);
void      mi_assist_detector_free(mi_assist_detector *d);

/* The frame scaled (antialiased) to at most max_side pixels a side, once per frame: every
 * lesion's thumbnail is drawn on a copy of it (mi_image_free). */
mi_status mi_assist_thumbnail_base(mi_image *small, const mi_image *img, int max_side);
/* A JPEG (quality 90) of `small` with the lesion's box (in the pixels of the w x h frame it came
 * from) drawn, red for a high-risk one, yellow otherwise; *jpg malloc'd. */
mi_status mi_assist_thumbnail(const mi_image *small, int w, int h, const mi_assist_lesion *l, void **jpg, size_t *n);

#endif
