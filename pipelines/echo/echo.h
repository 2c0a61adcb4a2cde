/* pipelines/echo/echo.h - M-mode echocardiography: from one M-mode image to the left ventricle's
 * wall thicknesses, diameters, Teichholz volumes and ejection fraction, without an ECG.
 *
 *   grey image -> whiten -> cycle detector (Faster R-CNN, adaptive anchors) -> the most probable
 *   cycle box -> crop with a margin -> whiten -> resize -> point regressor (ResNet-18, 16 outputs,
 *   sigmoid) -> 8 wall points -> measures.
 *
 * Points, in order: end-diastole (ED) septum outer edge, septum inner edge, posterior-wall inner
 * edge, posterior-wall outer edge; then the same four at end-systole (ES). Depth is y (down),
 * time is x (right). IVS = y2 - y1, LVID = y3 - y2, LVPW = y4 - y3 (diastole; 5..8 systole).
 * Teichholz: V = 7 / (2.4 + D) * D^3 with D in cm, V in mL; EF = (EDV - ESV) / EDV; FS = (LVIDd -
 * LVIDs) / LVIDd. docs/echo.md says the rest. */
#ifndef MI_ECHO_H
#define MI_ECHO_H

#include "medinfer.h"

#include <stdbool.h>
#include <stdint.h>

/* Whitening, as training does it (metadata whiten = "zscore"): g = p / 255; mean and population
 * std of g accumulated in double, rounded to float; x = (g - mean) / max(std, 1e-6) in float. */
void mi_echo_whiten(float *x, const uint8_t *gray, int64_t n);

/* The point regressor's input from a cycle box (image pixels): the box grown by margin * its size
 * on every side, floored/ceiled to whole pixels and clipped to the image (roi: x0, y0, x1, y1, end
 * exclusive), whitened, resized to S x S (bilinear, align_corners=False, as torch's interpolate by
 * size). out: S*S floats. MI_ERR_ARG when nothing of the box is inside the image. */
mi_status mi_echo_crop(const uint8_t *gray, int w, int h, const float box[4], double margin, int S, float *out,
                       int roi[4]);

/* Teichholz volume in mL of a diameter in cm; 0 for D <= 0. */
double mi_echo_teichholz(double d_cm);

typedef struct {
    float  min_score;               /* < 0: the detector blob's echo_min_score (default 0.5) */
    int    threads;                 /* 0: all cores */
} mi_echo_opts;

typedef enum { MI_ECHO_CAL_NONE, MI_ECHO_CAL_DICOM, MI_ECHO_CAL_OPTION } mi_echo_cal_source;

typedef struct {
    double mm_per_px, s_per_px;     /* 0 when unknown */
    mi_echo_cal_source depth_source, time_source;
} mi_echo_calibration;

enum { MI_ECHO_IVSD, MI_ECHO_LVIDD, MI_ECHO_LVPWD, MI_ECHO_IVSS, MI_ECHO_LVIDS, MI_ECHO_LVPWS, MI_ECHO_NLEN };

typedef struct {
    bool   found;                   /* false: no cycle at or above min_score */
    float  box[4], score;           /* cycle box, image pixels (score: the best box's, also when
                                       below min_score; 0 when there was none) */
    float  pts[8][2];               /* image pixels */
    int    roi[4];                  /* the crop the regressor saw: x0, y0, x1, y1 (end exclusive) */
    mi_echo_calibration cal;
    double len_px[MI_ECHO_NLEN];    /* wall thicknesses and diameters in pixels */
    double len_mm[MI_ECHO_NLEN];    /* the same in mm (when calibrated in depth) */
    bool   ordered;                 /* the points go down the image in order (every length > 0) */
    double fs;                      /* fractional shortening, % (needs no calibration) */
    double edv, esv, ef;            /* mL, mL, % (when calibrated in depth) */
    double cycle_s, heart_rate;     /* s, beats/min (when calibrated in time) */
    bool   ef_abnormal;             /* EF outside 50-70 % */
} mi_echo_result;

typedef struct mi_echo mi_echo;

/* Takes both models over (also on failure; the caller has verified and opened them): a detector
 * (metadata echo_role "cycle_detector") and a point regressor ("keypoints"). Errors name the
 * blob and what is wrong with it. */
mi_status mi_echo_open(mi_echo **e, mi_model *detector, mi_model *points, const mi_echo_opts *o);
void      mi_echo_close(mi_echo *e);
const mi_model *mi_echo_detector(const mi_echo *e);
const mi_model *mi_echo_points(const mi_echo *e);
float     mi_echo_min_score(const mi_echo *e);
double    mi_echo_crop_margin(const mi_echo *e);

/* One grey image (w x h, row-major) with its calibration: fills r. Errors only for what could
 * not run (memory, a network); "no cycle found" is a result (r->found = false), not an error. */
mi_status mi_echo_run(mi_echo *e, const uint8_t *gray, int w, int h, const mi_echo_calibration *cal,
                      mi_echo_result *r);
/* The measures of r from its points and calibration (used by mi_echo_run; exposed for tests). */
void      mi_echo_measure(mi_echo_result *r);

/* ---- outputs (report.c, annotate.c) ---- */
/* The result's JSON object (cJSON *): cycle, points, measures with units, calibration and its
 * source, the EF flag; the caller adds the input's identity. */
struct cJSON *mi_echo_result_json(const mi_echo_result *r);
/* The image (grey, w x h) with the box, the 8 points, the calipers and the numbers, as a PNG. */
mi_status mi_echo_annotate(const char *png_path, const uint8_t *gray, int w, int h, const mi_echo_result *r,
                           const char *title);

#endif
