/* pipelines/lesionseg/lesionseg.h - depth-guided lesion segmentation of colour endoscopy images
 * and videos: where the lesion is, how large, and how far from the camera.
 *
 *   RGB image (original w x h) -> squash to R x R + normalize (the depth blob's preprocessing)
 *   -> depthnet: depth / depth_max_cm, (1, 1, R, R) -> cat(image, depth): (1, 4, R, R)
 *   -> segnet: lesion probabilities, (1, 2, R, R) softmax or (1, 1, R, R) sigmoid
 *   -> both maps up-sampled to w x h (bilinear, align_corners=False: torch's F.interpolate)
 *   -> mask at the original size: argmax (ties: background) or p >= mask_threshold
 *   -> 8-connected components: box, area, mean probability, mean depth in cm.
 *
 * The two networks are tools/lesionseg_ref.py's, run by the engine through include/medinfer.h;
 * everything after them is here. docs/lesionseg.md says the rest. */
#ifndef MI_LESIONSEG_H
#define MI_LESIONSEG_H

#include "medinfer.h"
#include "pipelines/io/image.h"

#include <stdbool.h>
#include <stdint.h>

/* What the pipeline takes. Below MIN_SIDE an image carries too little to be squashed up to the
 * network's input and mean anything; above MAX_PIXELS the full-size maps (about 30 bytes a
 * pixel: probabilities, depth, mask, labels, three pictures) would need more than half a
 * gigabyte - far more than any endoscope frame (a 4K frame is 8.3 megapixels). */
#define MI_LESIONSEG_MIN_SIDE   32
#define MI_LESIONSEG_MAX_PIXELS (16ll << 20)
/* A still image file larger than this is not read into memory (a 16-megapixel PNG of noise is
 * about 50 MB). */
#define MI_LESIONSEG_MAX_FILE   (256ll << 20)

typedef struct {
    int  threads;                  /* 0: all cores; results are identical for any number */
} mi_lesionseg_opts;

typedef struct mi_lesionseg mi_lesionseg;

/* Takes both models over (also on failure; the caller has verified and opened them): a depth
 * estimator (arch "depthnet") and a segmenter (arch "segnet"). The two must preprocess alike
 * (input_size, resize_mode, mean, std): the segmenter sees the same normalized image. Errors
 * name the blob(s) and what is wrong. */
mi_status mi_lesionseg_open(mi_lesionseg **l, mi_model *depth, mi_model *seg, const mi_lesionseg_opts *o);
void      mi_lesionseg_close(mi_lesionseg *l);
const mi_model *mi_lesionseg_depth_model(const mi_lesionseg *l);
const mi_model *mi_lesionseg_seg_model(const mi_lesionseg *l);
/* The settings in force: preprocessing, the mask rule and threshold, depth scale, colour map,
 * limits (cJSON *). */
struct cJSON *mi_lesionseg_settings_json(const mi_lesionseg *l);
double    mi_lesionseg_depth_max_cm(const mi_lesionseg *l);

typedef struct {
    int     box[4];                /* x0, y0, x1, y1 in original pixels, end exclusive */
    int64_t area;                  /* pixels */
    int64_t first;                 /* its first pixel in raster order (y * w + x) */
    double  mean_prob;             /* mean lesion probability over its pixels */
    double  mean_depth_cm;         /* mean depth over its pixels, cm */
} mi_lesion_component;

typedef struct {
    int      w, h;
    float   *prob;                 /* w*h lesion probability at the original size */
    float   *depth;                /* w*h depth / depth_max_cm at the original size, 0..1 */
    uint8_t *mask;                 /* w*h, 1 lesion, 0 not */
    int64_t  area;                 /* mask pixels */
    double   area_pct;             /* of w*h */
    double   mean_prob;            /* over the mask; NaN when it is empty */
    double   depth_cm_min, depth_cm_mean, depth_cm_max;   /* over the whole image */
    mi_lesion_component *comps;    /* largest first; ties: the one starting first in raster order */
    int      ncomps;
    double   ms_pre, ms_depth, ms_seg, ms_post;           /* wall-clock times of the steps */
} mi_lesionseg_result;

/* Checks a w x h image against the limits above; `name` names it in the message. */
mi_status mi_lesionseg_check_size(const char *name, int w, int h);

/* One RGB image (w x h, rows `stride` bytes apart): fills r (free it with
 * mi_lesionseg_result_free, also after a failure). Errors only for what could not run (size,
 * memory, a network's non-finite output); no lesion is a result. */
mi_status mi_lesionseg_run(mi_lesionseg *l, const uint8_t *rgb, int w, int h, size_t stride, mi_lesionseg_result *r);
void      mi_lesionseg_result_free(mi_lesionseg_result *r);

/* ---- the steps after the networks (post.c), on their own for the tests ----
 * probs: (C, R, R) of the segmenter (C 2: softmax, channel 1 lesion; C 1: sigmoid); depth01:
 * (R, R). Fills r->prob, r->depth, r->mask, the statistics and the components (not the times);
 * r must be zeroed or hold an earlier result, which is freed first.
 * The mask: p1 > p0 (torch.argmax: a tie goes to the first channel, background) for C 2,
 * p >= threshold for C 1. */
mi_status mi_lesionseg_postprocess(const float *probs, int C, const float *depth01, int R, int w, int h,
                                   float threshold, double depth_max_cm, mi_lesionseg_result *r);
/* 8-connected components of mask (w x h) with their statistics, ordered as in the result. */
mi_status mi_lesionseg_components(const uint8_t *mask, const float *prob, const float *depth01, int w, int h,
                                  double depth_max_cm, mi_lesion_component **comps, int *n);

/* ---- pictures (render.c) ---- */
/* The turbo colour map (Google, 2019; matplotlib's table rounded to 8 bits) at t in [0, 1]. */
void      mi_turbo(float t, uint8_t rgb[3]);
/* dst (w x h RGB, tightly packed) = the image with the mask filled semi-transparently and its
 * contour (1 pixel wide, 2 from 600 pixels on the longer side) drawn over it. */
void      mi_lesionseg_overlay(uint8_t *dst, const uint8_t *rgb, size_t stride, const mi_lesionseg_result *r);
/* The mask as an 8-bit grey PNG (0 / 255), the overlay and the colour-mapped depth (turbo,
 * 0 cm .. depth_max_cm; near is the dark blue end) as RGB PNGs, all at the original size. */
mi_status mi_lesionseg_write_mask(const char *path, const mi_lesionseg_result *r);
mi_status mi_lesionseg_write_overlay(const char *path, const uint8_t *rgb, size_t stride, const mi_lesionseg_result *r);
mi_status mi_lesionseg_write_depth(const char *path, const mi_lesionseg_result *r);

/* ---- report (report.c) ---- */
/* The result's fields (cJSON object): width, height, lesion {area_px, area_pct, mean_prob},
 * depth_cm {min, mean, max}, components_total and the first max_components components. */
struct cJSON *mi_lesionseg_result_json(const mi_lesionseg_result *r, int max_components);
/* A report number: 6 significant digits, null when not finite. */
struct cJSON *mi_lesionseg_number(double v);

/* ---- inputs (input.c) ---- */
typedef enum { MI_LESIONSEG_IMAGE, MI_LESIONSEG_VIDEO, MI_LESIONSEG_OTHER } mi_lesionseg_kind;
/* What the first bytes of a file are: a PNG, JPEG or BMP image; a video container (MP4/MOV,
 * Matroska/WebM, AVI, MPEG-TS) FFmpeg reads; or something else, which *what (when not NULL)
 * names when it is a format we recognise ("a TIFF image", "a GIF image", "a DICOM file") and
 * sets to "" otherwise. By content, never by the file name. */
mi_lesionseg_kind mi_lesionseg_sniff(const void *head, size_t n, const char **what);
/* Reads and decodes one still image, refusing (MI_ERR_FORMAT / MI_ERR_UNSUPPORTED, naming the
 * file) what the pipeline cannot take: unreadable, empty, truncated, not PNG/JPEG/BMP, grey in the
 * file or grey in every pixel (the networks were trained on colour endoscopy images), sides
 * below MI_LESIONSEG_MIN_SIDE or more than MI_LESIONSEG_MAX_PIXELS (checked from the header,
 * before decoding). sha256 (65 bytes) gets the file's hash when not NULL, also on refusal when
 * the file could be read (else ""). */
mi_status mi_lesionseg_load_image(const char *path, mi_image *img, char *sha256);
/* The same checks and decoding on n bytes in memory (not retained); name stands for the file in
 * messages. */
mi_status mi_lesionseg_load_image_memory(const void *data, size_t n, const char *name, mi_image *img);

/* ---- reference masks (truth.c): how far a result is from a known outline ---- */
/* A reference mask as a w x h 0/1 array (*mask malloc'd): any PNG, JPEG or BMP of exactly that
 * size, lesion where the mean of its channels is >= 128 (Kvasir-SEG's JPEG masks carry
 * compression noise around 0 and 255). */
mi_status mi_lesionseg_truth_load(const char *path, int w, int h, uint8_t **mask);
/* Dice 2|A n B| / (|A| + |B|) and IoU |A n B| / |A u B| of two 0/1 masks of n pixels; both 1
 * when both masks are empty. */
void      mi_lesionseg_overlap(const uint8_t *a, const uint8_t *b, size_t n, double *dice, double *iou);

/* ---- videos (video.c) ---- */
typedef struct {
    int         every;             /* segment every K-th decoded frame (1: all) */
    const char *video_out;         /* NULL: no video written */
    void (*progress)(void *user, int64_t frames_read, int64_t segmented);
    void       *user;
} mi_lesionseg_video_opts;

/* One video: every `every`-th frame (the first included) at its coded size is segmented; with
 * video_out its overlay goes into an MP4 at fps / every (rounded, at least 1) frames a second,
 * padded with black to even sides as H.264 needs. *out gets the video's result object (cJSON
 * *): container, codec, size, fps, the frames with their times and components, how decoding
 * ended. Errors only when nothing could be made of the file (not a video, no frame, memory,
 * video_out not writable); damage after some frames is reported in *out ("decode_complete":
 * false, "damage") and *damaged is set. */
mi_status mi_lesionseg_video(mi_lesionseg *l, const char *path, const mi_lesionseg_video_opts *o,
                             int max_components, struct cJSON **out, bool *damaged);

#endif
