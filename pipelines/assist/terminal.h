/* pipelines/assist/terminal.h - the parts of `medinfer assist-terminal` that are pure functions
 * of their inputs, so tests can drive them frame by frame: target-frame triggers (pedal, freeze,
 * automatic), the diagnosis server's answer read into a struct, and the overlay drawn on the
 * frame being shown. The network client and the web view are terminal_net.h. */
#ifndef MI_ASSIST_TERMINAL_H
#define MI_ASSIST_TERMINAL_H

#include "pipelines/io/image.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- triggers ---- */

typedef enum { MI_TRIG_NONE = 0, MI_TRIG_AUTO, MI_TRIG_FREEZE, MI_TRIG_PEDAL } mi_trigger_kind;
const char *mi_trigger_name(mi_trigger_kind k);   /* "auto", "freeze", "pedal" (the server's words) */

typedef struct {
    bool   pedal, freeze;   /* which triggers are on; auto is on when auto_k > 0 */
    int    auto_k;          /* automatic: at least every k-th frame (k frames after the last target) */
    double freeze_eps;      /* freeze: mean |luma difference| of consecutive frames, 0..255, below */
    int    freeze_n;        /* ... for this many consecutive frames */
} mi_trigger_config;

/* The luma a freeze is measured on: the frame averaged over MI_FREEZE_GRID x MI_FREEZE_GRID
 * cells. Averaging first makes the measure blind to sensor noise and compression flicker, which
 * move single pixels, not a cell's mean; a moving endoscope changes whole cells. */
#define MI_FREEZE_GRID 32

typedef struct {
    mi_trigger_config cfg;
    float   prev[MI_FREEZE_GRID * MI_FREEZE_GRID];
    bool    have_prev;
    int     still;          /* consecutive frames below eps so far */
    bool    freeze_sent;    /* this freeze has had its one target */
    bool    freeze_due;     /* reached N while busy: the first free frame of the same freeze goes */
    int64_t last_target;    /* frame index of the last target, -1 none */
    double  last_mad;       /* the last frame's measure, for logs and calibration */
} mi_trigger;

void mi_trigger_init(mi_trigger *t, const mi_trigger_config *cfg);
/* Mean |difference| of the cell means of two consecutive frames' luma (BT.601), 0..255. */
void mi_freeze_cells(const uint8_t *rgb, int w, int h, float cells[MI_FREEZE_GRID * MI_FREEZE_GRID]);
/* Feeds frame `index` (RGB8, w*h*3). pedal: presses waiting (taken, one per call, only when the
 * trigger fires pedal). free_to_send: no request is in flight (and the client is not backing off):
 * the one-in-flight rule, so a busy terminal picks no target and a freeze that completes while busy
 * is kept for the first free frame while the scene stays still. Priority: pedal, freeze, auto.
 * Returns the trigger this frame is a target of, or MI_TRIG_NONE. */
mi_trigger_kind mi_trigger_step(mi_trigger *t, int64_t index, const uint8_t *rgb, int w, int h,
                                int *pedal, bool free_to_send);

/* ---- the server's answer to POST /v1/frames ---- */

#define MI_ASSIST_MAX_LESIONS 16   /* drawn per frame; an answer with more keeps its 16 best */
typedef struct {
    char   type[64];
    float  score;
    float  box[4];          /* x1, y1, x2, y2 in the posted image's pixels */
    bool   high_risk;       /* the server's per-lesion flag (false when it does not say) */
} mi_assist_lesion;

typedef struct {
    char    exam_id[64], terminal[64], trigger[16];
    int64_t timestamp_ms;
    bool    judged, high_risk;
    char    reason[200];    /* why the server did not judge the frame; "" when judged */
    int     n;              /* lesions kept, <= MI_ASSIST_MAX_LESIONS */
    int     n_total;        /* lesions in the answer */
    mi_assist_lesion les[MI_ASSIST_MAX_LESIONS];
    char    model_version[64];
    double  server_ms;      /* timing_ms.total, -1 when absent */
} mi_assist_answer;

/* Reads an answer body (n bytes, not NUL-terminated). Every field the contract names is checked
 * for its JSON type; boxes must be 4 finite numbers. Errors say which field is wrong. */
mi_status mi_assist_answer_parse(mi_assist_answer *a, const char *body, size_t n);

/* ---- overlay ---- */

/* Colours the tests look for in decoded frames and screenshots: each is far from tissue colours
 * (reds, pinks, browns) and from each other even after H.264 or JPEG. */
extern const uint8_t MI_OVERLAY_BOX_RGB[3];     /* lesion box: green */
extern const uint8_t MI_OVERLAY_ALERT_RGB[3];   /* high-risk banner: red */
extern const uint8_t MI_OVERLAY_FAULT_RGB[3];   /* no answer / server unreachable: yellow */

typedef struct {
    const char *exam_id;     /* NULL or "": "no open exam" */
    const char *terminal;
    const char *exam_number;
    int64_t     t_ms;        /* the frame's time in the source */
    const mi_assist_answer *answer;  /* the result being held on screen, or NULL */
    float       scale_x, scale_y;    /* answer boxes are in the posted frame's pixels; x this */
    const char *fault;       /* NULL, or what is wrong ("no answer in 500 ms", "server unreachable") */
    const char *status;      /* NULL, or a one-line note (frame not judged: reason, quality drop) */
} mi_overlay_info;

/* Draws boxes with label and probability, exam info, the high-risk banner and the fault
 * indicator on im. Only exam id, terminal and exam number are shown: never patient data. */
void mi_overlay_draw(mi_image *im, const mi_overlay_info *o);

/* Pixels of im within tol (per channel) of rgb: the tests' box and banner detector. */
int64_t mi_overlay_count_rgb(const uint8_t *px, int w, int h, const uint8_t rgb[3], int tol);

#endif
