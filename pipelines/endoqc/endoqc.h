/* pipelines/endoqc/endoqc.h - gastroscopy video completeness QC, as a library.
 *
 *   video --decode--> RGB work frames (shorter side max(160, input size), times from timestamps)
 *         --dark frames dropped--> --average-hash dedup against the last dup_window kept frames-->
 *         kept frames --every k-th--> batched ResNet site classification
 *         --targeted re-sampling of incomplete groups (second decode pass over a time window)-->
 *         per-site evidence --min_frames/min_prob--> seen sites --site_threshold--> verdict
 *
 * Decoding, the dark test and dedup run on a thread of their own, ahead of the network, and hand
 * it the frames to classify through a bounded queue (feed.h; opts.decode_thread): the report is
 * the same either way, since nothing the network says changes which frames are kept.
 *
 * Memory is bounded by design: no frame is held beyond the current classification batch except
 * the best frame of each site (a thumbnail for the contact sheet) and the decoder's queue of at
 * most two batches of frames to classify (4.3 MB at 720p with the default batch of 8). What is kept per kept frame is a
 * 24-byte record (timestamp, class, probability); the dedup window holds 64-bit hashes only (with
 * dup_window 0, "all", one per kept frame).
 * Re-sampling needs pixels of frames that were kept but not classified: rather than spooling them,
 * a second decode pass seeks to the window (the keyframe before it) and classifies exactly those
 * frames again found by their timestamps. That costs decoding the window twice, which is cheap next
 * to classification, and keeps memory independent of the video's length.
 *
 * Labels, the preset site order and the site groups to re-sample come from the blob's metadata
 * (labels, site_order, site_groups); so do the verdict defaults (endoqc_min_frames,
 * endoqc_min_prob, endoqc_site_threshold), which options override. Preprocessing (resize_mode,
 * resize, crop, mean, std) and the softmax are the ones `medinfer classify` uses, so one blob
 * gives one answer. */
#ifndef MI_ENDOQC_H
#define MI_ENDOQC_H

#include "medinfer.h"
#include "pipelines/io/video.h"
#include "pipelines/io/image.h"
#include "weights/safetensors.h"
#include "pipelines/trust/trust.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

#define MI_ENDOQC_MAX_SITES  64
#define MI_ENDOQC_MAX_GROUPS 8
#define MI_ENDOQC_MAX_BATCH  256   /* frames per network call */
#define MI_ENDOQC_LABEL_MAX  64    /* a label is 1..63 bytes */
#define MI_ENDOQC_GROUP_MAX  32    /* a group name is 1..31 bytes */

typedef struct {
    int    every;          /* classify every k-th kept frame (default 3) */
    int    hash_size;      /* average hash of hash_size x hash_size cells, 2..8 (default 8: 64 bits) */
    double dup_threshold;  /* drop a frame more similar than this to a recent kept frame (0.90) */
    int    dup_window;     /* how many recent kept frames it is compared with (32; 0: all of them) */
    int    dark_level;     /* mean luma 0..255 below which a frame shows nothing (16; 0: off) */
    int    min_frames;     /* frames that must agree for a site to count; <= 0: metadata, else 2 */
    double min_prob;       /* softmax probability a frame needs to count; < 0: metadata, else 0.5 */
    int    site_threshold; /* incomplete when distinct sites <= this; < 0: metadata, else 22 */
    bool   resample;       /* targeted re-sampling of incomplete site groups (default on) */
    bool   progress;       /* a progress line on stderr */
    bool   keep_thumbs;    /* keep each site's best frame for a contact sheet */
    bool   decode_thread;  /* decode (and dedup) on a thread of its own, ahead of the network
                              (default on; off: one thread, for debugging - the report is the same) */
    const char *known_sha256;  /* the video's SHA-256 when the caller already has it, else NULL */
} mi_endoqc_opts;

void mi_endoqc_opts_default(mi_endoqc_opts *o);

/* What a site classifier's metadata says about its sites:
 *   labels                 JSON array of the class names (class index -> site label)
 *   site_order             JSON array: the labels in the guideline's preset order (default: labels)
 *   site_groups            JSON object: group name -> array of labels, re-sampled when incomplete;
 *                          without the key, each standard group (sites.h) whose labels the blob
 *                          has, and a warning naming what is missing; {} turns re-sampling off
 *   endoqc_min_frames, endoqc_min_prob, endoqc_site_threshold   the verdict defaults
 * The metadata is outside input even in a signed blob (a signature says who made it, not that it
 * is well-formed), so every count, length and index is bounded and repeats are refused. */
typedef struct {
    int    nsites;                                         /* = classes, 2..MI_ENDOQC_MAX_SITES */
    char   labels[MI_ENDOQC_MAX_SITES][MI_ENDOQC_LABEL_MAX]; /* by class index */
    int    order[MI_ENDOQC_MAX_SITES];       /* class index of each preset-order position */
    int    pos_of_cls[MI_ENDOQC_MAX_SITES];  /* its inverse */
    int    ngroups;
    char   gname[MI_ENDOQC_MAX_GROUPS][MI_ENDOQC_GROUP_MAX];
    int    gsize[MI_ENDOQC_MAX_GROUPS];
    int    gmember[MI_ENDOQC_MAX_GROUPS][MI_ENDOQC_MAX_SITES];  /* preset positions, no repeats */
    const char *groups_source;               /* "metadata" | "standard" (no site_groups key) */
    char   groups_warning[256];              /* "" unless a standard group could not be applied */
    bool   meta_min_frames, meta_min_prob, meta_threshold;      /* given by the metadata */
    int    min_frames, site_threshold;       /* metadata values, else 2 and nsites - 4 */
    double min_prob;                         /* metadata value, else 0.5 */
} mi_endoqc_sites;

/* Reads the metadata above from an open blob; needs no network (a fuzz harness calls it on any
 * blob the reader accepts). Errors name the blob, the key and the offending value. */
mi_status mi_endoqc_sites_from_blob(mi_endoqc_sites *s, const mi_weights *w);

/* The site classifier and what its metadata says about the sites. Open once, run many videos.
 * batch: frames per network call, 1..MI_ENDOQC_MAX_BATCH. The blob's signature is checked (as
 * mi_trust_check_weights with pubkey; ti receives the result, may be NULL) on the bytes the network
 * was loaded from, before its endoqc metadata is read at all: a blob the configured trust store
 * refuses is refused with MI_ERR_SECURITY, whatever its metadata holds. */
typedef struct mi_endoqc_model mi_endoqc_model;
mi_status mi_endoqc_model_open(mi_endoqc_model **out, const char *blob, int batch, const char *pubkey,
                               mi_trust_info *ti);
void      mi_endoqc_model_close(mi_endoqc_model *m);
const char *mi_endoqc_model_sha256(const mi_endoqc_model *m);
const mi_weights *mi_endoqc_model_weights(const mi_endoqc_model *m);   /* for trust checks */
const mi_endoqc_sites *mi_endoqc_model_sites(const mi_endoqc_model *m);

typedef struct {
    char     label[MI_ENDOQC_LABEL_MAX];
    int      cls;           /* the network's class index */
    int      frames;        /* classified frames with argmax here and prob >= min_prob */
    int      frames_resampled;  /* of which found by re-sampling */
    int64_t  first_ms, last_ms, best_ms;  /* -1 when frames == 0 */
    float    best_prob;
    bool     seen;          /* frames >= min_frames */
    mi_image thumb;         /* best frame, square centre crop of the work frame (keep_thumbs) */
} mi_endoqc_site;

typedef struct {
    char    group[MI_ENDOQC_GROUP_MAX];
    bool    triggered;       /* some site of the group was not seen after plain sampling */
    char    anchor_before[MI_ENDOQC_LABEL_MAX], anchor_after[MI_ENDOQC_LABEL_MAX];   /* "" when none */
    int64_t from_ms, to_ms;
    int     candidates;      /* kept, not yet classified frames in the window */
    int     classified;
    int     nrecovered;
    char    recovered[MI_ENDOQC_MAX_SITES][MI_ENDOQC_LABEL_MAX];   /* sites of the group seen only after it */
} mi_endoqc_resample;

typedef struct {
    /* input */
    char          video[1024], video_sha256[65];
    int64_t       video_bytes;
    mi_video_info info;
    /* decoding: how far it got */
    bool    decode_complete;       /* whole stream decoded without damage */
    bool    truncated;
    int64_t decoded_until_ms, bad_packets, damaged_frames;
    char    damage[720];
    /* frame counts */
    int64_t decoded, dark, duplicates, kept, classified, classified_resample;
    /* sites, in the preset order */
    int              nsites;
    mi_endoqc_site   sites[MI_ENDOQC_MAX_SITES];
    int              distinct;
    bool             complete;
    int              nresample;
    mi_endoqc_resample resample[MI_ENDOQC_MAX_GROUPS];
    /* what decided it */
    mi_endoqc_opts opts;            /* after metadata defaults were applied */
    char threshold_source[3][16];   /* min_frames, min_prob, site_threshold: option|metadata|default */
    char groups_source[16];         /* where the re-sampling groups came from: metadata|standard */
    char groups_warning[256];       /* "" unless a standard group could not be applied */
    /* model */
    char model_path[512], model_arch[32], model_version[64], model_sha256[65];
    int  input_size, batch;
    mi_resize_mode resize_mode;     /* how frames were brought to input_size (the blob's) */
    /* time per stage, ms */
    double t_decode, t_dedup, t_preprocess, t_classify, t_resample, t_hash_file, t_total;
    double t_decode_wait;   /* first pass: the network's thread waiting for decoded frames */
} mi_endoqc_result;

/* Runs the whole QC on one video. On a damaged video it still returns MI_OK with what decoded
 * (r->decode_complete false, r->damage says why); errors are for unusable input (cannot open,
 * no video stream) or resources, and name the file. */
mi_status mi_endoqc_run(mi_endoqc_model *m, const char *video, const mi_endoqc_opts *o, mi_endoqc_result *r);
void      mi_endoqc_result_free(mi_endoqc_result *r);

/* The rule that made a site "seen", in words for the report: "method" when any classified frame
 * counts (min_frames 1, min_prob 0: the published method counts every classified site), else
 * "agreement" (min_frames frames at min_prob, the default's guard against one stray frame). */
const char *mi_endoqc_site_rule(const mi_endoqc_opts *o);

/* The JSON report (stable field names; docs/endoqc.md). malloc'd, NUL-terminated. */
char *mi_endoqc_report_json(const mi_endoqc_result *r);

/* The labels of the sites not seen, in preset order, as a JSON array (cJSON_Delete it; NULL when
 * out of memory): the one spelling of the list in the report, the audit row and the database. */
cJSON *mi_endoqc_missing_sites(const mi_endoqc_result *r);

/* One best frame per seen site in preset order, labelled; grey boxes for missing sites. */
mi_status mi_endoqc_contact_sheet(const mi_endoqc_result *r, const char *png_path);

/* ---- batch, database, drift (batch.c) ---------------------------------------------------- */

/* The drift rule: a batch of at least min_exams evaluated exams whose incomplete share exceeds
 * alert has the reference set run; a model update is required when the predicted incomplete
 * share on the references differs from their labelled share by more than tolerance (shares and
 * tolerance in 0..1). A smaller batch is not judged: one incomplete exam of one is not a trend. */
typedef struct {
    int    batch_exams, batch_incomplete, min_exams;
    double batch_share, alert;
    bool   judged;               /* batch_exams >= min_exams */
    bool   alerted;              /* judged and batch_share > alert */
    bool   reference_run;        /* the reference set was evaluated */
    int    ref_exams, ref_labelled_incomplete, ref_predicted_incomplete, ref_agree;
    double ref_labelled_share, ref_predicted_share, tolerance;
    bool   model_update_required;
} mi_endoqc_drift;

/* Fills the decision fields from the counts (pure; tests call it directly). */
void mi_endoqc_drift_decide(mi_endoqc_drift *d);

/* The self-check of a staged model: the labelled reference set run through the staged and the
 * current model. It is activated only when every reference exam was evaluated by both and its
 * agreement with the labels is at least the bar: the manifest's min_reference_accuracy when
 * the server gives one, else the current model's agreement on the same exams. */
typedef struct {
    int    ref_exams;                    /* labelled reference exams */
    int    staged_evaluated, staged_agree;
    int    current_evaluated, current_agree;
    double min_accuracy;                 /* the manifest's bar, < 0 when none */
    /* decided */
    double staged_accuracy, current_accuracy, bar;
    const char *bar_source;              /* "manifest" | "current model" */
    bool   complete;                     /* every reference exam evaluated by both */
    bool   activate;
    char   reason[256];
} mi_endoqc_selfcheck;

void mi_endoqc_selfcheck_decide(mi_endoqc_selfcheck *s);

typedef struct mi_endoqc_db mi_endoqc_db;
/* Opens or creates the results database (SQLite, WAL, full sync). Rows are append-only: triggers
 * refuse UPDATE and DELETE on exams and batches, so a result once written is never overwritten. */
mi_status mi_endoqc_db_open(mi_endoqc_db **out, const char *path);
void      mi_endoqc_db_close(mi_endoqc_db *db);
/* The id of an earlier row for this exact video content, model and settings, or 0: a rerun of an
 * interrupted batch skips those (resume). Its verdict, distinct count and missing sites come back
 * with it; *missing is a JSON array of strings (cJSON_Delete it), NULL when no row was found. */
mi_status mi_endoqc_db_find(mi_endoqc_db *db, const char *video_sha256, const char *model_sha256,
                            const char *settings, int64_t *id, bool *complete, int *distinct,
                            cJSON **missing);
/* One row per exam, in its own transaction: committed and synced before the next exam starts. */
mi_status mi_endoqc_db_add_exam(mi_endoqc_db *db, const char *batch_id, const char *role,
                                const mi_endoqc_result *r, const char *settings, const char *json,
                                int64_t *id);
mi_status mi_endoqc_db_add_batch(mi_endoqc_db *db, const char *batch_id, const char *list_path,
                                 const mi_endoqc_drift *d, const char *summary_json);
/* "every=3 hash=8 dup=0.9000 ... resize=64 input=64": the options after metadata defaults are
 * applied, and the preprocessing; what must match (with the video and model hashes) for an
 * earlier row to count as this exam's result. A squash-mode blob adds " resize_mode=squash";
 * crop mode adds nothing, so the keys of rows stored before the mode existed still match. */
void mi_endoqc_settings(const mi_endoqc_model *m, const mi_endoqc_opts *o, char *buf, size_t n);

#endif
