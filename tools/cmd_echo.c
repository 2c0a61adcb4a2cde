/* tools/cmd_echo.c - `medinfer echo`: M-mode images (PNG/JPEG or DICOM) to wall thicknesses,
 * volumes and ejection fraction. The work is pipelines/echo's; this file reads the inputs and
 * their calibration, keeps the audit trail and writes the report and pictures. The report is
 * written whole at the end, also when an input failed: every result computed is kept. */
#include "tools/cli.h"
#include "nn/model.h"
#include "pipelines/echo/echo.h"
#include "pipelines/io/dicom.h"
#include "pipelines/io/image.h"
#include "pipelines/trust/trust.h"
#include "weights/sha256.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "usage: medinfer echo --detector D.safetensors --points P.safetensors [options] IMAGE...\n"
    "  IMAGE   an M-mode echocardiogram: DICOM (the M-mode ultrasound region is cropped and its\n"
    "          physical deltas calibrate the measures), or PNG/JPEG (uncalibrated unless told)\n"
    "  --mm-per-px V    depth scale (overrides the DICOM's); without one: pixel measures, no EF\n"
    "  --s-per-px V     time scale (overrides the DICOM's); gives the heart rate\n"
    "  --min-score P    minimum cycle detection score (default: the detector blob's, else 0.5)\n"
    "  --out FILE       the JSON report (default: stdout)\n"
    "  --annotate DIR   write DIR/<image name>.echo.png: box, points, calipers, numbers\n"
    "  --threads N      worker threads (default 0: all cores); results are identical for any N\n"
    "  --quiet          no summary lines on stderr\n"
    MI_TRUST_USAGE
    "exit: 0 every image measured, 1 an image or model could not be read (message names it),\n"
    "      2 usage, 4 no cardiac cycle found, or its wall points out of order, in some image (see\n"
    "      its result); trust and audit\n"
    "      refusals: see docs/trust.md. The report always holds every result computed.\n";

#define MIN_SIDE 32   /* smaller than any strip that can show one cardiac cycle */

typedef struct {
    mi_echo      *e;
    double        mm_per_px, s_per_px;
    const char   *annotate, *audit;
    bool          quiet;
    mi_trust_info det_trust, pts_trust;
    cJSON        *results;
} echo_cli;

/* "x.dcm" or the DICOM preamble: the DICOM reader; anything else goes to stb_image */
static bool is_dicom(const char *path) {
    FILE *f = fopen(path, "rb");
    unsigned char b[132];
    size_t n = f ? fread(b, 1, sizeof b, f) : 0;
    if (f) fclose(f);
    return mi_dicom_sniff(b, n);
}

typedef struct {
    uint8_t *gray;
    int      w, h, off_x, off_y;    /* the M-mode region's place in the file's pixels */
    mi_echo_calibration cal;
    const char *format;
} input;

static mi_status load(const echo_cli *c, const char *path, input *in) {
    memset(in, 0, sizeof *in);
    mi_status st;
    if (is_dicom(path)) {
        mi_dicom_image d;
        if ((st = mi_dicom_load(&d, path))) return st;
        in->format = "dicom";
        const mi_dicom_region *r = mi_dicom_mmode_region(&d);
        int x0 = 0, y0 = 0, x1 = d.w - 1, y1 = d.h - 1;
        if (r && r->x0 >= 0 && r->y0 >= 0 && r->x1 < d.w && r->y1 < d.h && r->x1 > r->x0 && r->y1 > r->y0) {
            x0 = r->x0, y0 = r->y0, x1 = r->x1, y1 = r->y1;   /* region bounds are inclusive */
            if (r->unit_y == MI_DICOM_UNIT_CM && r->delta_y > 0)
                in->cal.mm_per_px = r->delta_y * 10.0, in->cal.depth_source = MI_ECHO_CAL_DICOM;
            if (r->unit_x == MI_DICOM_UNIT_SECONDS && r->delta_x > 0)
                in->cal.s_per_px = r->delta_x, in->cal.time_source = MI_ECHO_CAL_DICOM;
        }
        in->w = x1 - x0 + 1, in->h = y1 - y0 + 1, in->off_x = x0, in->off_y = y0;
        in->gray = malloc((size_t)in->w * in->h);
        if (!in->gray) {
            mi_dicom_free(&d);
            return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path);
        }
        for (int y = 0; y < in->h; y++) memcpy(in->gray + (size_t)y * in->w, d.gray + (size_t)(y0 + y) * d.w + x0, (size_t)in->w);
        mi_dicom_free(&d);
    } else {
        mi_image img;
        if ((st = mi_image_load(&img, path))) return st;
        in->format = "image";
        in->w = img.w, in->h = img.h;
        in->gray = malloc((size_t)img.w * img.h);
        if (!in->gray) {
            mi_image_free(&img);
            return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path);
        }
        for (size_t i = 0; i < (size_t)img.w * img.h; i++) {   /* ITU-R BT.601 luma; grey stays as it is */
            const uint8_t *p = img.px + 3 * i;
            in->gray[i] = (uint8_t)((299 * p[0] + 587 * p[1] + 114 * p[2] + 500) / 1000);
        }
        mi_image_free(&img);
    }
    if (c->mm_per_px > 0) in->cal.mm_per_px = c->mm_per_px, in->cal.depth_source = MI_ECHO_CAL_OPTION;
    if (c->s_per_px > 0) in->cal.s_per_px = c->s_per_px, in->cal.time_source = MI_ECHO_CAL_OPTION;
    if (in->w < MIN_SIDE || in->h < MIN_SIDE) {
        free(in->gray);
        in->gray = NULL;
        return MI_FAIL(MI_ERR_FORMAT, "%s: the M-mode image is %dx%d pixels; at least %dx%d are needed to show a "
                       "cardiac cycle", path, in->w, in->h, MIN_SIDE, MIN_SIDE);
    }
    return MI_OK;
}

/* the result in the file's pixels: the region's offset added back */
static void to_file_pixels(mi_echo_result *r, int dx, int dy) {
    for (int i = 0; i < 4; i += 2) r->box[i] += (float)dx, r->box[i + 1] += (float)dy;
    for (int i = 0; i < 4; i += 2) r->roi[i] += dx, r->roi[i + 1] += dy;
    for (int k = 0; k < 8; k++) r->pts[k][0] += (float)dx, r->pts[k][1] += (float)dy;
}

static cJSON *model_json(const mi_model *m) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", mi_model_path(m));
    cJSON_AddStringToObject(o, "arch", mi_model_arch(m));
    cJSON_AddStringToObject(o, "model_version", mi_model_version(m));
    cJSON_AddStringToObject(o, "sha256", mi_model_sha256(m));
    return o;
}

static bool audit(const echo_cli *c, const char *sha, const cJSON *res) {
    cJSON *th = cJSON_CreateObject(), *sum = cJSON_CreateObject();
    cJSON_AddNumberToObject(th, "min_score", mi_echo_min_score(c->e));
    cJSON_AddNumberToObject(th, "crop_margin", mi_echo_crop_margin(c->e));
    static const char *const keep[] = { "status", "cycle", "measures", "ef_flag", "calibration" };
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(res, keep[i]);
        if (v) cJSON_AddItemToObject(sum, keep[i], cJSON_Duplicate(v, true));
    }
    cJSON *pm = cJSON_AddObjectToObject(sum, "points_model");   /* the row's model is the detector */
    cJSON_AddStringToObject(pm, "model_version", c->pts_trust.model_version);
    cJSON_AddStringToObject(pm, "sha256", c->pts_trust.blob_sha256);
    cJSON_AddStringToObject(pm, "key_id", c->pts_trust.key_id);
    char *t = cJSON_PrintUnformatted(th), *s = cJSON_PrintUnformatted(sum);
    mi_audit_row row = { .command = "echo", .input_sha256 = sha, .thresholds_json = t, .result_json = s };
    mi_audit_row_model(&row, &c->det_trust);
    mi_status st = t && s ? mi_audit_append(c->audit, &row) : MI_FAIL(MI_ERR_NOMEM, "out of memory writing the audit row");
    free(t);
    free(s);
    cJSON_Delete(th);
    cJSON_Delete(sum);
    return st == MI_OK;
}

/* One image: its result joins c->results (an error result when it could not be measured).
 * Returns the exit code it contributes. */
static int one(echo_cli *c, const char *path) {
    cJSON *res = cJSON_CreateObject();
    cJSON_AddItemToArray(c->results, res);
    cJSON_AddStringToObject(res, "input", path);
    char sha[65] = "";
    if (mi_sha256_file(path, sha) != 0) {
        fprintf(stderr, "medinfer echo: %s: cannot read it (%s)\n", path, strerror(errno));
        cJSON_AddStringToObject(res, "status", "error");
        cJSON_AddStringToObject(res, "error", "cannot read the file");
        return MI_EXIT_FAIL;
    }
    cJSON_AddStringToObject(res, "input_sha256", sha);
    input in;
    mi_echo_result r;
    mi_status st = load(c, path, &in);
    if (!st) st = mi_echo_run(c->e, in.gray, in.w, in.h, &in.cal, &r);
    if (st) {
        fprintf(stderr, "medinfer echo: %s\n", mi_last_error());
        cJSON_AddStringToObject(res, "status", "error");
        cJSON_AddStringToObject(res, "error", mi_last_error());
        free(in.gray);
        return MI_EXIT_FAIL;
    }
    cJSON_AddStringToObject(res, "format", in.format);
    cJSON *reg = cJSON_AddArrayToObject(res, "region");   /* the pixels measured, in the file's pixels */
    const int rv[4] = { in.off_x, in.off_y, in.off_x + in.w, in.off_y + in.h };
    for (int i = 0; i < 4; i++) cJSON_AddItemToArray(reg, cJSON_CreateNumber(rv[i]));
    char title[256];
    snprintf(title, sizeof title, "medinfer %s echo  detector %s  points %s", MI_VERSION,
             mi_model_version(mi_echo_detector(c->e)), mi_model_version(mi_echo_points(c->e)));
    int rc = r.found && r.ordered ? MI_EXIT_OK : MI_EXIT_NO_FINDING;
    if (c->annotate) {
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        char png[4096];
        snprintf(png, sizeof png, "%s/%s.echo.png", c->annotate, base);
        if (mi_echo_annotate(png, in.gray, in.w, in.h, &r, title)) {
            fprintf(stderr, "medinfer echo: %s\n", mi_last_error());
            rc = MI_EXIT_FAIL;
        } else {
            cJSON_AddStringToObject(res, "annotated", png);
        }
    }
    free(in.gray);
    to_file_pixels(&r, in.off_x, in.off_y);
    cJSON *o = mi_echo_result_json(&r);
    for (cJSON *it = o->child; it;) {   /* move the result's fields after the input's identity */
        cJSON *next = it->next;
        cJSON_AddItemToObject(res, it->string, cJSON_DetachItemViaPointer(o, it));
        it = next;
    }
    cJSON_Delete(o);
    if (c->audit && !audit(c, sha, res)) {
        cJSON_DeleteItemFromArray(c->results, cJSON_GetArraySize(c->results) - 1);   /* withheld: not on record */
        return mi_audit_cli_fail("echo");
    }
    if (!c->quiet) {
        if (!r.found)
            fprintf(stderr, "medinfer echo: %s: no cardiac cycle found (best score %.2f)\n", path, r.score);
        else if (!r.ordered)
            fprintf(stderr, "medinfer echo: %s: the wall points are out of order; no measures to trust (cycle p=%.2f)\n",
                    path, r.score);
        else if (isfinite(r.ef))
            fprintf(stderr, "medinfer echo: %s: EF %.1f %%%s, LVIDd %.1f mm, LVIDs %.1f mm (cycle p=%.2f)\n", path, r.ef,
                    r.ef_abnormal ? " (outside 50-70 %)" : "", r.len_mm[MI_ECHO_LVIDD], r.len_mm[MI_ECHO_LVIDS], r.score);
        else
            fprintf(stderr, "medinfer echo: %s: FS %.1f %%, uncalibrated: pixel measures only (cycle p=%.2f)\n", path,
                    r.fs, r.score);
    }
    return rc;
}

/* verify, then parse: the bytes checked are the bytes that run */
static mi_status open_model(const char *path, const char *pubkey, mi_trust_info *t, mi_model **m, int *rc) {
    mi_weights w;
    mi_status st = mi_weights_open(&w, path);
    if (st) return *rc = mi_cli_error("echo"), st;
    if ((st = mi_trust_check_weights(&w, pubkey, t))) {
        mi_weights_close(&w);
        return *rc = mi_trust_cli_fail("echo", st), st;
    }
    if ((st = mi_model_open_weights(m, &w))) return *rc = mi_cli_error("echo"), st;
    return MI_OK;
}

int cmd_echo(int argc, char **argv) {
    echo_cli c = { 0 };
    mi_trust_opts trust = { 0 };
    mi_echo_opts o = { .min_score = -1 };
    const char *det = NULL, *pts = NULL, *out = NULL;
    char **inputs = malloc((size_t)argc * sizeof *inputs);
    int ninputs = 0;
    if (!inputs) return fprintf(stderr, "medinfer echo: out of memory\n"), MI_EXIT_FAIL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int tr = mi_trust_opt(&trust, argc, argv, &i), bad = 0;
        if (tr < 0) bad = 1;
        else if (tr) continue;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            free(inputs);
            return MI_EXIT_OK;
        } else if (!strcmp(a, "--quiet")) c.quiet = true;
        else if (a[0] != '-') inputs[ninputs++] = argv[i];
        else if (!strcmp(a, "--detector") || !strcmp(a, "--points") || !strcmp(a, "--out") || !strcmp(a, "--annotate") ||
                 !strcmp(a, "--mm-per-px") || !strcmp(a, "--s-per-px") || !strcmp(a, "--min-score") ||
                 !strcmp(a, "--threads")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "medinfer echo: %s needs a value\n", a);
                bad = 1;
            } else {
                const char *v = argv[++i];
                double d;
                if (!strcmp(a, "--detector")) det = v;
                else if (!strcmp(a, "--points")) pts = v;
                else if (!strcmp(a, "--out")) out = v;
                else if (!strcmp(a, "--annotate")) c.annotate = v;
                else if (!strcmp(a, "--mm-per-px")) bad = mi_cli_double("echo", a, v, 1e-4, 100, &c.mm_per_px);
                else if (!strcmp(a, "--s-per-px")) bad = mi_cli_double("echo", a, v, 1e-6, 10, &c.s_per_px);
                else if (!strcmp(a, "--min-score")) bad = mi_cli_double("echo", a, v, 0, 1, &d), o.min_score = (float)d;
                else bad = mi_cli_int("echo", a, v, 0, 4096, &o.threads);
            }
        } else {
            fprintf(stderr, "medinfer echo: unknown option %s\n", a);
            bad = 1;
        }
        if (bad) {
            fputs(usage, stderr);
            free(inputs);
            return MI_EXIT_USAGE;
        }
    }
    if (!det || !pts || ninputs == 0) {
        fprintf(stderr, "medinfer echo: %s\n", !det ? "--detector is required" : !pts ? "--points is required" : "no IMAGE given");
        fputs(usage, stderr);
        free(inputs);
        return MI_EXIT_USAGE;
    }
    if (c.annotate && mkdir(c.annotate, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "medinfer echo: --annotate %s: %s\n", c.annotate, strerror(errno));
        free(inputs);
        return MI_EXIT_FAIL;
    }
    c.audit = trust.audit;
    FILE *f = out ? fopen(out, "w") : stdout;   /* before any work: results must have somewhere to go */
    if (!f) {
        fprintf(stderr, "medinfer echo: --out %s: %s\n", out, strerror(errno));
        free(inputs);
        return MI_EXIT_FAIL;
    }
    int rc = MI_EXIT_OK;
    mi_model *dm = NULL, *pm = NULL;
    if (!open_model(det, trust.pubkey, &c.det_trust, &dm, &rc)) {
        if (open_model(pts, trust.pubkey, &c.pts_trust, &pm, &rc)) mi_model_close(dm);
        else if (mi_echo_open(&c.e, dm, pm, &o)) rc = mi_cli_error("echo");   /* it closed both */
    }
    if (!c.e) {
        if (out) fclose(f);
        free(inputs);
        return rc;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "command", "echo");
    cJSON *eng = cJSON_AddObjectToObject(doc, "engine");
    cJSON_AddStringToObject(eng, "version", MI_VERSION);
    cJSON_AddStringToObject(eng, "build", mi_build_git());
    cJSON *models = cJSON_AddObjectToObject(doc, "models");
    cJSON_AddItemToObject(models, "detector", model_json(mi_echo_detector(c.e)));
    cJSON_AddItemToObject(models, "points", model_json(mi_echo_points(c.e)));
    cJSON *set = cJSON_AddObjectToObject(doc, "settings");
    cJSON_AddNumberToObject(set, "min_score", mi_echo_min_score(c.e));
    cJSON_AddNumberToObject(set, "crop_margin", mi_echo_crop_margin(c.e));
    cJSON_AddStringToObject(set, "ef_normal_range", "50-70 %");
    c.results = cJSON_AddArrayToObject(doc, "results");
    bool failed = false, none = false;
    for (int i = 0; i < ninputs; i++) {
        int r = one(&c, inputs[i]);
        if (r == MI_EXIT_FAIL) failed = true;
        else if (r == MI_EXIT_NO_FINDING) none = true;
        else if (r != MI_EXIT_OK) {   /* an audit failure stops the command: no unrecorded results */
            rc = r;
            break;
        }
    }
    if (rc == MI_EXIT_OK) rc = failed ? MI_EXIT_FAIL : none ? MI_EXIT_NO_FINDING : MI_EXIT_OK;
    char *s = cJSON_Print(doc);
    if (!s || fputs(s, f) < 0 || fputc('\n', f) == EOF || (out ? fclose(f) : fflush(f)) != 0) {
        fprintf(stderr, "medinfer echo: cannot write the report to %s: %s\n", out ? out : "stdout", strerror(errno));
        rc = MI_EXIT_FAIL;
    }
    free(s);
    cJSON_Delete(doc);
    mi_echo_close(c.e);
    free(inputs);
    return rc;
}
