/* tools/cmd_lesionseg.c - `medinfer lesionseg`: colour endoscopy images, folders of them and
 * videos to lesion masks, overlays, colour-mapped depth and a JSON report with the lesion's
 * connected components. The work is pipelines/lesionseg's; this file finds the inputs, keeps the
 * audit trail and writes the report and pictures. Every input gets an entry in the report, also
 * when it could not be used, and the report is written whole at the end: nothing computed is
 * lost because a later input was bad. */
#include "tools/cli.h"
#include "nn/model.h"
#include "ops/cpu.h"
#include "pipelines/lesionseg/lesionseg.h"
#include "pipelines/trust/trust.h"
#include "weights/sha256.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <libavutil/log.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_DEPTH "weights/lesionseg_depth_demo.safetensors"
#define DEFAULT_SEG   "weights/lesionseg_seg_demo.safetensors"
#define DEFAULT_EVERY 5
#define DEFAULT_MAX_COMPONENTS 100

static const char usage[] =
    "usage: medinfer lesionseg [options] IMAGE|FOLDER|VIDEO...\n"
    "  IMAGE   a colour endoscopy image: PNG, JPEG or BMP (told by its content, not its name)\n"
    "  FOLDER  its PNG/JPEG/BMP files (by extension, sorted by name; not its subfolders); other\n"
    "          files are listed in the report as skipped\n"
    "  VIDEO   MP4/MOV, MKV/WebM, AVI or MPEG-TS: every K-th frame is segmented\n"
    "  --depth-model B   depth blob (default " DEFAULT_DEPTH ")\n"
    "  --seg-model B     segmentation blob (default " DEFAULT_SEG ")\n"
    "  --out-dir DIR     write DIR/<stem>_mask.png, _overlay.png, _depth.png per image and\n"
    "                    DIR/<stem>_overlay.mp4 per video (without it: the report only)\n"
    "  --out FILE        the JSON report (default: stdout)\n"
    "  --every K         segment every K-th video frame, the first included (default 5)\n"
    "  --video-out F.mp4 the overlaid frames of the one VIDEO given, at its fps / K\n"
    "  --max-components N  components listed per image or frame, largest first (default 100;\n"
    "                    components_total counts them all)\n"
    "  --truth DIR       compare each image's mask with a known one (validation, demo): the\n"
    "                    first of DIR/<stem>_mask.png, <stem>.png, <stem>.jpg, <file name>;\n"
    "                    Dice and IoU in the report\n"
    "  --threads N       worker threads (default 0: all cores); results are identical for any N\n"
    "  --quiet           no progress or summary lines on stderr\n"
    MI_TRUST_USAGE
    "exit: 0 every input segmented, 1 an input or model could not be used (the message names it;\n"
    "      the report has an entry with status \"error\" for each such input, and every other\n"
    "      input's result), 2 usage; trust and audit refusals: see docs/trust.md.\n";

typedef struct {
    char *path;
    int   kind;                    /* mi_lesionseg_kind by content; -1: could not be read */
} input;

typedef struct {
    mi_lesionseg *l;
    const char   *out_dir, *video_out, *audit, *truth;
    int           ncompared;       /* images compared with a reference mask, and their Dice sum */
    double        dice_sum;
    bool          quiet, progress;
    int           every, max_components;
    mi_trust_info depth_trust, seg_trust;
    cJSON        *results, *thresholds;
    char        **stems;           /* output names taken so far in this run */
    int           nstems;
    const char   *current;
} les_cli;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static const char *base_name(const char *p) { const char *s = strrchr(p, '/'); return s ? s + 1 : p; }

/* The file name without its extension, made unique within the run (two inputs a.png and a.jpg,
 * or the same name in two folders, must not overwrite each other's pictures): the first keeps
 * the stem, the next get _2, _3, ... */
static char *unique_stem(les_cli *c, const char *path) {
    const char *b = base_name(path), *dot = strrchr(b, '.');
    size_t n = dot && dot > b ? (size_t)(dot - b) : strlen(b);
    char stem[512];
    snprintf(stem, sizeof stem, "%.*s", (int)(n < 400 ? n : 400), b);
    char cand[600];
    snprintf(cand, sizeof cand, "%s", stem);
    for (int k = 2;; k++) {
        bool taken = false;
        for (int i = 0; i < c->nstems && !taken; i++) taken = !strcmp(c->stems[i], cand);
        if (!taken) break;
        snprintf(cand, sizeof cand, "%s_%d", stem, k);
    }
    char **s = realloc(c->stems, (size_t)(c->nstems + 1) * sizeof *s);
    char *copy = strdup(cand);
    if (!s || !copy) {
        free(copy);
        if (s) c->stems = s;
        return NULL;
    }
    c->stems = s;
    c->stems[c->nstems++] = copy;
    return copy;
}

static cJSON *model_json(const mi_model *m, const mi_trust_info *t) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", mi_model_path(m));
    cJSON_AddStringToObject(o, "arch", mi_model_arch(m));
    cJSON_AddStringToObject(o, "model_version", mi_model_version(m));
    cJSON_AddStringToObject(o, "sha256", mi_model_sha256(m));
    cJSON_AddStringToObject(o, "key_id", t->key_id);
    return o;
}

static cJSON *error_entry(les_cli *c, const char *path, const char *kind) {
    cJSON *res = cJSON_CreateObject();
    cJSON_AddItemToArray(c->results, res);
    cJSON_AddStringToObject(res, "input", path);
    cJSON_AddStringToObject(res, "kind", kind);
    return res;
}

/* The input's entry says it failed and why (also after a result was computed: pictures that
 * could not be written are a failure of that input). Returns the exit code it contributes. */
static int fail_entry(cJSON *res, const char *why) {
    fprintf(stderr, "medinfer lesionseg: %s\n", why);
    if (cJSON_GetObjectItemCaseSensitive(res, "status"))
        cJSON_ReplaceItemInObjectCaseSensitive(res, "status", cJSON_CreateString("error"));
    else
        cJSON_AddStringToObject(res, "status", "error");
    cJSON_AddStringToObject(res, "error", why);
    return MI_EXIT_FAIL;
}

/* The audit row of one input: the segmenter is the row's model, the depth model goes in the
 * result. Withdraws the result from the report when the row cannot be written. */
static bool audit(les_cli *c, const char *sha, cJSON *res) {
    if (!c->audit) return true;
    cJSON *sum = cJSON_CreateObject();
    static const char *const keep[] = { "kind", "status", "width", "height", "lesion", "components_total", "components",
                                        "frames_segmented", "frames_with_lesion", "max_area_pct", "decode_complete" };
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(res, keep[i]);
        if (v) cJSON_AddItemToObject(sum, keep[i], cJSON_Duplicate(v, true));
    }
    cJSON *dm = cJSON_AddObjectToObject(sum, "depth_model");
    cJSON_AddStringToObject(dm, "model_version", c->depth_trust.model_version);
    cJSON_AddStringToObject(dm, "sha256", c->depth_trust.blob_sha256);
    cJSON_AddStringToObject(dm, "key_id", c->depth_trust.key_id);
    char *t = cJSON_PrintUnformatted(c->thresholds), *s = cJSON_PrintUnformatted(sum);
    mi_audit_row row = { .command = "lesionseg", .input_sha256 = sha, .thresholds_json = t, .result_json = s };
    mi_audit_row_model(&row, &c->seg_trust);
    mi_status st = t && s ? mi_audit_append(c->audit, &row) : MI_FAIL(MI_ERR_NOMEM, "out of memory writing the audit row");
    free(t);
    free(s);
    cJSON_Delete(sum);
    if (st) cJSON_DeleteItemFromArray(c->results, cJSON_GetArraySize(c->results) - 1);   /* withheld: not on record */
    return st == MI_OK;
}

static void merge(cJSON *dst, cJSON *src) {   /* src's fields after dst's, src freed */
    for (cJSON *it = src->child; it;) {
        cJSON *next = it->next;
        cJSON_AddItemToObject(dst, it->string, cJSON_DetachItemViaPointer(src, it));
        it = next;
    }
    cJSON_Delete(src);
}

/* The reference mask of an input under --truth: the first candidate that exists and is not the
 * input itself (DIR may be the images' own folder). "" when there is none. */
static void truth_path(const les_cli *c, const char *input, char *out, size_t cap) {
    const char *b = base_name(input), *dot = strrchr(b, '.');
    const int n = dot && dot > b ? (int)(dot - b) : (int)strlen(b);
    static const char *const fmt[] = { "%s/%.*s_mask.png", "%s/%.*s.png", "%s/%.*s.jpg", "%s/%.*s" };
    struct stat in, sb;
    const bool have_in = stat(input, &in) == 0;
    for (size_t k = 0; k < sizeof fmt / sizeof *fmt; k++) {
        if (k < 3) snprintf(out, cap, fmt[k], c->truth, n, b);
        else snprintf(out, cap, fmt[k], c->truth, (int)strlen(b), b);
        if (stat(out, &sb) == 0 && S_ISREG(sb.st_mode) && !(have_in && sb.st_dev == in.st_dev && sb.st_ino == in.st_ino))
            return;
    }
    out[0] = 0;
}

/* --truth: Dice and IoU against the reference mask into the result. Returns the exit code it
 * contributes: a reference that exists but cannot be used is a failed input of its own. */
static int compare_truth(les_cli *c, const char *path, const mi_lesionseg_result *r, cJSON *res) {
    char tp[4096], why[1200];
    truth_path(c, path, tp, sizeof tp);
    cJSON *tj = cJSON_AddObjectToObject(res, "truth");
    if (!tp[0]) {
        cJSON_AddNullToObject(tj, "path");
        cJSON_AddStringToObject(tj, "note", "no reference mask found");
        return MI_EXIT_OK;
    }
    cJSON_AddStringToObject(tj, "path", tp);
    uint8_t *ref;
    if (mi_lesionseg_truth_load(tp, r->w, r->h, &ref)) {
        snprintf(why, sizeof why, "%s: --truth: %s", path, mi_last_error());
        fprintf(stderr, "medinfer lesionseg: %s\n", why);
        cJSON_AddStringToObject(tj, "error", why);
        return MI_EXIT_FAIL;
    }
    double dice, iou;
    mi_lesionseg_overlap(r->mask, ref, (size_t)r->w * r->h, &dice, &iou);
    free(ref);
    cJSON_AddItemToObject(tj, "dice", mi_lesionseg_number(dice));
    cJSON_AddItemToObject(tj, "iou", mi_lesionseg_number(iou));
    c->ncompared++;
    c->dice_sum += dice;
    return MI_EXIT_OK;
}

/* One still image. Returns the exit code it contributes. */
static int one_image(les_cli *c, const char *path) {
    cJSON *res = error_entry(c, path, "image");
    mi_image img;
    char sha[65], why[1200];
    const double t0 = now_ms();
    mi_status st = mi_lesionseg_load_image(path, &img, sha);
    if (sha[0]) cJSON_AddStringToObject(res, "input_sha256", sha);
    if (st) return fail_entry(res, mi_last_error());
    const double t1 = now_ms();
    mi_lesionseg_result r;
    if ((st = mi_lesionseg_run(c->l, img.px, img.w, img.h, (size_t)img.w * 3, &r))) {
        snprintf(why, sizeof why, "%s: %s", path, mi_last_error());
        mi_lesionseg_result_free(&r);
        mi_image_free(&img);
        return fail_entry(res, why);
    }
    cJSON_AddStringToObject(res, "status", "ok");
    merge(res, mi_lesionseg_result_json(&r, c->max_components));
    int rc = c->truth ? compare_truth(c, path, &r, res) : MI_EXIT_OK;
    if (!audit(c, sha, res)) {
        mi_lesionseg_result_free(&r);
        mi_image_free(&img);
        return mi_audit_cli_fail("lesionseg");
    }
    /* the pictures only after the record: nothing leaves the program unrecorded */
    const double t2 = now_ms();
    if (c->out_dir) {
        char *stem = unique_stem(c, path);
        cJSON *outs = cJSON_AddObjectToObject(res, "outputs");
        static const char *const kind[3] = { "mask", "overlay", "depth" };
        bool written = stem != NULL;
        for (int k = 0; k < 3 && written; k++) {
            char file[4096];
            snprintf(file, sizeof file, "%s/%s_%s.png", c->out_dir, stem, kind[k]);
            st = k == 0 ? mi_lesionseg_write_mask(file, &r)
               : k == 1 ? mi_lesionseg_write_overlay(file, img.px, (size_t)img.w * 3, &r)
                        : mi_lesionseg_write_depth(file, &r);
            if (st) {
                snprintf(why, sizeof why, "%s: %s", path, mi_last_error());
                rc = fail_entry(res, why);
                written = false;
            } else {
                cJSON_AddStringToObject(outs, kind[k], file);
            }
        }
        if (!stem) {
            snprintf(why, sizeof why, "%s: out of memory naming the outputs", path);
            rc = fail_entry(res, why);
        }
    } else {
        cJSON_AddNullToObject(res, "outputs");
    }
    const double t3 = now_ms();
    cJSON *t = cJSON_AddObjectToObject(res, "timing_ms");
    cJSON_AddItemToObject(t, "decode", mi_lesionseg_number(t1 - t0));
    cJSON_AddItemToObject(t, "preprocess", mi_lesionseg_number(r.ms_pre));
    cJSON_AddItemToObject(t, "depth", mi_lesionseg_number(r.ms_depth));
    cJSON_AddItemToObject(t, "seg", mi_lesionseg_number(r.ms_seg));
    cJSON_AddItemToObject(t, "post", mi_lesionseg_number(r.ms_post));
    cJSON_AddItemToObject(t, "write", mi_lesionseg_number(t3 - t2));
    if (!c->quiet) {
        char dice[64] = "";
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(res, "truth"), "dice");
        if (cJSON_IsRaw(d)) snprintf(dice, sizeof dice, "; Dice %.3f against the reference", strtod(d->valuestring, NULL));
        if (r.area)
            fprintf(stderr, "medinfer lesionseg: %s: lesion %.2f %% of %dx%d (%d component%s, mean p %.2f)%s\n", path,
                    r.area_pct, r.w, r.h, r.ncomps, r.ncomps == 1 ? "" : "s", r.mean_prob, dice);
        else
            fprintf(stderr, "medinfer lesionseg: %s: no lesion pixel (%dx%d)%s\n", path, r.w, r.h, dice);
    }
    mi_lesionseg_result_free(&r);
    mi_image_free(&img);
    return rc;
}

static void video_progress(void *user, int64_t read, int64_t done) {
    const les_cli *c = user;
    fprintf(stderr, "\rmedinfer lesionseg: %s: %lld frames read, %lld segmented", c->current, (long long)read,
            (long long)done);
}

/* One video. Returns the exit code it contributes. */
static int one_video(les_cli *c, const char *path) {
    cJSON *res = error_entry(c, path, "video");
    char sha[65], why[9000];   /* room for the path and both names of a failed rename */
    if (mi_sha256_file(path, sha) != 0) {
        snprintf(why, sizeof why, "%s: cannot read: %s", path, strerror(errno));
        return fail_entry(res, why);
    }
    cJSON_AddStringToObject(res, "input_sha256", sha);
    /* the overlay video is written under a temporary name and renamed once the audit row is in */
    char final[4096] = "", tmp[4200] = "";
    if (c->video_out) snprintf(final, sizeof final, "%s", c->video_out);
    else if (c->out_dir) {
        char *stem = unique_stem(c, path);
        if (!stem) {
            snprintf(why, sizeof why, "%s: out of memory naming the outputs", path);
            return fail_entry(res, why);
        }
        snprintf(final, sizeof final, "%s/%s_overlay.mp4", c->out_dir, stem);
    }
    if (final[0]) snprintf(tmp, sizeof tmp, "%s.part.mp4", final);
    mi_lesionseg_video_opts vo = { .every = c->every, .video_out = final[0] ? tmp : NULL };
    if (c->progress) vo.progress = video_progress, vo.user = c;
    c->current = path;
    cJSON *v = NULL;
    bool damaged = false;
    mi_status st = mi_lesionseg_video(c->l, path, &vo, c->max_components, &v, &damaged);
    if (c->progress) fputc('\n', stderr);
    if (st) {
        if (tmp[0]) remove(tmp);
        return fail_entry(res, mi_last_error());
    }
    cJSON_AddStringToObject(res, "status", damaged ? "partial" : "ok");
    merge(res, v);
    if (final[0]) cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(res, "video_out"), "path",
                                                         cJSON_CreateString(final));
    if (!audit(c, sha, res)) {
        if (tmp[0]) remove(tmp);
        return mi_audit_cli_fail("lesionseg");
    }
    int rc = MI_EXIT_OK;
    if (tmp[0] && rename(tmp, final) != 0) {
        snprintf(why, sizeof why, "%s: cannot rename %s to %s: %s", path, tmp, final, strerror(errno));
        rc = fail_entry(res, why);
    }
    if (damaged) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(res, "damage");
        fprintf(stderr, "medinfer lesionseg: %s: %s; the report covers the frames decoded before it\n", path,
                cJSON_IsString(d) ? d->valuestring : "damaged");
        rc = MI_EXIT_FAIL;
    }
    if (!c->quiet) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(res, "frames_segmented"),
                    *wl = cJSON_GetObjectItemCaseSensitive(res, "frames_with_lesion");
        fprintf(stderr, "medinfer lesionseg: %s: %d frames segmented (every %d), %d with a lesion%s%s\n", path,
                n ? n->valueint : 0, c->every, wl ? wl->valueint : 0, final[0] ? "; overlay video " : "",
                final[0] ? final : "");
    }
    return rc;
}

static bool image_ext(const char *name) {
    const char *dot = strrchr(name, '.');
    static const char *const ext[] = { ".png", ".jpg", ".jpeg", ".bmp" };
    for (size_t i = 0; dot && i < sizeof ext / sizeof *ext; i++)
        if (!strcasecmp(dot, ext[i])) return true;
    return false;
}

/* Why a file in a folder is not taken (by its name: a folder is a list of images). */
static const char *skip_reason(const char *name) {
    const char *dot = strrchr(name, '.');
    static const char *const tiff[] = { ".tif", ".tiff" }, *const video[] = { ".mp4", ".mov", ".mkv", ".webm", ".avi", ".ts" };
    for (size_t i = 0; dot && i < 2; i++)
        if (!strcasecmp(dot, tiff[i])) return "TIFF: stb_image does not read TIFF; convert it to PNG";
    for (size_t i = 0; dot && i < sizeof video / sizeof *video; i++)
        if (!strcasecmp(dot, video[i])) return "a video: folders are read for their images; give a video on the command line";
    return "not a PNG, JPEG or BMP file name";
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

typedef struct { input *v; int n, cap; } input_list;

static int push(input_list *l, const char *path, int kind) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        input *p = realloc(l->v, (size_t)l->cap * sizeof *p);
        if (!p) return -1;
        l->v = p;
    }
    if (!(l->v[l->n].path = strdup(path))) return -1;
    l->v[l->n++].kind = kind;
    return 0;
}

/* the kind of a file by its first bytes; -1 when it cannot be read (its entry then says why) */
static int kind_of(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    unsigned char b[512];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    return (int)mi_lesionseg_sniff(b, n, NULL);
}

/* A folder's images, sorted by name, into l; every other entry into skipped. */
static int expand_dir(const char *dir, input_list *l, cJSON *skipped) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    char **names = NULL;
    int n = 0, cap = 0, rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;   /* ".", "..", and hidden files (editor and OS litter) */
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **p = realloc(names, (size_t)cap * sizeof *p);
            if (!p) { rc = -1; break; }
            names = p;
        }
        if (!(names[n] = strdup(e->d_name))) { rc = -1; break; }
        n++;
    }
    closedir(d);
    if (n) qsort(names, (size_t)n, sizeof *names, by_name);
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", names[i]);
        struct stat sb;
        const char *why = NULL;
        if (stat(path, &sb) != 0) why = "cannot be read";
        else if (S_ISDIR(sb.st_mode)) why = "a folder: subfolders are not read";
        else if (!image_ext(names[i])) why = skip_reason(names[i]);
        if (why) {
            cJSON *s = cJSON_CreateObject();
            cJSON_AddStringToObject(s, "input", path);
            cJSON_AddStringToObject(s, "reason", why);
            cJSON_AddItemToArray(skipped, s);
        } else if (rc == 0 && push(l, path, kind_of(path))) {
            rc = -1;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

static void free_inputs(input_list *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i].path);
    free(l->v);
}

/* verify, then parse: the bytes checked are the bytes that run */
static mi_status open_model(const char *path, const char *pubkey, mi_trust_info *t, mi_model **m, int *rc) {
    mi_weights w;
    mi_status st = mi_weights_open(&w, path);
    if (st) return *rc = mi_cli_error("lesionseg"), st;
    if ((st = mi_trust_check_weights(&w, pubkey, t))) {
        mi_weights_close(&w);
        return *rc = mi_trust_cli_fail("lesionseg", st), st;
    }
    if ((st = mi_model_open_weights(m, &w))) return *rc = mi_cli_error("lesionseg"), st;
    return MI_OK;
}

int cmd_lesionseg(int argc, char **argv) {
    les_cli c = { .every = DEFAULT_EVERY, .max_components = DEFAULT_MAX_COMPONENTS };
    mi_trust_opts trust = { 0 };
    mi_lesionseg_opts o = { 0 };
    const char *depth = DEFAULT_DEPTH, *seg = DEFAULT_SEG, *out = NULL;
    char **args = malloc((size_t)argc * sizeof *args);
    int nargs = 0;
    if (!args) return fprintf(stderr, "medinfer lesionseg: out of memory\n"), MI_EXIT_FAIL;
    static const char *const valued[] = { "--depth-model", "--seg-model", "--out-dir", "--out", "--every",
                                          "--video-out", "--max-components", "--truth", "--threads" };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int tr = mi_trust_opt(&trust, argc, argv, &i), bad = 0, known = 0;
        if (tr < 0) bad = 1;
        else if (tr) continue;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            free(args);
            return MI_EXIT_OK;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) c.quiet = true;
        else if (a[0] != '-') args[nargs++] = argv[i];
        else {
            for (size_t k = 0; k < sizeof valued / sizeof *valued; k++) known |= !strcmp(a, valued[k]);
            if (!known) {
                fprintf(stderr, "medinfer lesionseg: unknown option %s\n", a);
                bad = 1;
            } else if (i + 1 >= argc) {
                fprintf(stderr, "medinfer lesionseg: %s needs a value\n", a);
                bad = 1;
            } else {
                const char *v = argv[++i];
                if (!strcmp(a, "--depth-model")) depth = v;
                else if (!strcmp(a, "--seg-model")) seg = v;
                else if (!strcmp(a, "--out-dir")) c.out_dir = v;
                else if (!strcmp(a, "--out")) out = v;
                else if (!strcmp(a, "--video-out")) c.video_out = v;
                else if (!strcmp(a, "--truth")) c.truth = v;
                else if (!strcmp(a, "--every")) bad = mi_cli_int("lesionseg", a, v, 1, 100000, &c.every);
                else if (!strcmp(a, "--max-components")) bad = mi_cli_int("lesionseg", a, v, 0, 1000000, &c.max_components);
                else bad = mi_cli_int("lesionseg", a, v, 0, 4096, &o.threads);
            }
        }
        if (bad) {
            fputs(usage, stderr);
            free(args);
            return MI_EXIT_USAGE;
        }
    }
    if (nargs == 0) {
        fprintf(stderr, "medinfer lesionseg: no IMAGE, FOLDER or VIDEO given\n");
        fputs(usage, stderr);
        free(args);
        return MI_EXIT_USAGE;
    }
    /* the inputs, folders expanded, each told by its content */
    input_list in = { 0 };
    cJSON *skipped = cJSON_CreateArray();
    int nvideo = 0, rc = MI_EXIT_OK;
    for (int i = 0; i < nargs && rc == MI_EXIT_OK; i++) {
        struct stat sb;
        if (stat(args[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
            if (expand_dir(args[i], &in, skipped)) {
                fprintf(stderr, "medinfer lesionseg: %s: cannot list the folder: %s\n", args[i], strerror(errno));
                rc = MI_EXIT_FAIL;
            }
        } else if (push(&in, args[i], kind_of(args[i]))) {
            rc = MI_EXIT_FAIL;
        }
    }
    free(args);
    for (int i = 0; i < in.n; i++) nvideo += in.v[i].kind == MI_LESIONSEG_VIDEO;
    if (rc == MI_EXIT_OK && c.video_out && nvideo != 1) {
        fprintf(stderr, "medinfer lesionseg: --video-out names one file, for one VIDEO; %d videos given%s\n", nvideo,
                nvideo > 1 ? " (use --out-dir: each gets <stem>_overlay.mp4)" : "");
        rc = MI_EXIT_USAGE;
    }
    if (rc == MI_EXIT_OK && c.out_dir && mkdir(c.out_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "medinfer lesionseg: --out-dir %s: %s\n", c.out_dir, strerror(errno));
        rc = MI_EXIT_FAIL;
    }
    FILE *f = NULL;
    if (rc == MI_EXIT_OK && !(f = out ? fopen(out, "w") : stdout)) {   /* before any work: results need a place */
        fprintf(stderr, "medinfer lesionseg: --out %s: %s\n", out, strerror(errno));
        rc = MI_EXIT_FAIL;
    }
    mi_model *dm = NULL, *sm = NULL;
    if (rc == MI_EXIT_OK && !open_model(depth, trust.pubkey, &c.depth_trust, &dm, &rc)) {
        if (open_model(seg, trust.pubkey, &c.seg_trust, &sm, &rc)) mi_model_close(dm);
        else if (mi_lesionseg_open(&c.l, dm, sm, &o)) rc = mi_cli_error("lesionseg");   /* it closed both */
    }
    if (!c.l) {
        if (f && out) fclose(f);
        free_inputs(&in);
        cJSON_Delete(skipped);
        return rc;
    }
    if (o.threads > 0) mi_set_threads(o.threads);   /* the up-sampling after the networks too */
    av_log_set_level(c.quiet ? AV_LOG_QUIET : AV_LOG_FATAL);   /* video damage is summarized in the report */
    c.audit = trust.audit;
    c.progress = !c.quiet && isatty(2);
    const double t0 = now_ms();

    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "command", "lesionseg");
    cJSON *eng = cJSON_AddObjectToObject(doc, "engine");
    cJSON_AddStringToObject(eng, "version", MI_VERSION);
    cJSON_AddStringToObject(eng, "build", mi_build_git());
    cJSON *models = cJSON_AddObjectToObject(doc, "models");
    cJSON_AddItemToObject(models, "depth", model_json(mi_lesionseg_depth_model(c.l), &c.depth_trust));
    cJSON_AddItemToObject(models, "seg", model_json(mi_lesionseg_seg_model(c.l), &c.seg_trust));
    const char *note = mi_model_meta(mi_lesionseg_seg_model(c.l), "intended_use");
    if (!note) note = mi_model_meta(mi_lesionseg_depth_model(c.l), "intended_use");
    if (note) cJSON_AddStringToObject(doc, "note", note);
    cJSON *set = mi_lesionseg_settings_json(c.l);
    cJSON_AddNumberToObject(set, "every", c.every);
    cJSON_AddNumberToObject(set, "max_components", c.max_components);
    cJSON_AddItemToObject(doc, "settings", set);
    c.thresholds = set;
    c.results = cJSON_AddArrayToObject(doc, "results");
    bool failed = false;
    for (int i = 0; i < in.n; i++) {
        if (c.progress && in.n > 1) fprintf(stderr, "medinfer lesionseg: [%d/%d] %s\n", i + 1, in.n, in.v[i].path);
        int r;
        if (in.v[i].kind == MI_LESIONSEG_VIDEO) r = one_video(&c, in.v[i].path);
        else r = one_image(&c, in.v[i].path);   /* unreadable and unknown files get their message there */
        if (r == MI_EXIT_FAIL) failed = true;
        else if (r != MI_EXIT_OK) {   /* an audit failure stops the command: no unrecorded results */
            rc = r;
            break;
        }
    }
    if (rc == MI_EXIT_OK && failed) rc = MI_EXIT_FAIL;
    cJSON_AddItemToObject(doc, "skipped", skipped);
    int ok = 0, err = 0;
    for (cJSON *r = c.results->child; r; r = r->next) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(r, "status");
        if (cJSON_IsString(s) && !strcmp(s->valuestring, "ok")) ok++;
        else err++;
    }
    cJSON *sum = cJSON_AddObjectToObject(doc, "summary");
    cJSON_AddNumberToObject(sum, "inputs", in.n);
    cJSON_AddNumberToObject(sum, "ok", ok);
    cJSON_AddNumberToObject(sum, "not_ok", err);
    cJSON_AddNumberToObject(sum, "skipped", cJSON_GetArraySize(skipped));
    if (c.truth) {
        cJSON_AddNumberToObject(sum, "truth_compared", c.ncompared);
        cJSON_AddItemToObject(sum, "mean_dice", mi_lesionseg_number(c.ncompared ? c.dice_sum / c.ncompared : NAN));
    }
    cJSON *run = cJSON_AddObjectToObject(doc, "run");   /* how this run went; no result depends on it */
    cJSON_AddNumberToObject(run, "threads", o.threads > 0 ? o.threads : mi_threads());
    cJSON_AddItemToObject(run, "total_ms", mi_lesionseg_number(now_ms() - t0));
    if (!c.quiet && cJSON_GetArraySize(skipped))
        fprintf(stderr, "medinfer lesionseg: %d file%s in folders skipped (see \"skipped\" in the report)\n",
                cJSON_GetArraySize(skipped), cJSON_GetArraySize(skipped) == 1 ? "" : "s");
    char *s = cJSON_Print(doc);
    if (!s || fputs(s, f) < 0 || fputc('\n', f) == EOF || (out ? fclose(f) : fflush(f)) != 0) {
        fprintf(stderr, "medinfer lesionseg: cannot write the report to %s: %s\n", out ? out : "stdout", strerror(errno));
        rc = MI_EXIT_FAIL;
    }
    free(s);
    cJSON_Delete(doc);
    mi_lesionseg_close(c.l);
    for (int i = 0; i < c.nstems; i++) free(c.stems[i]);
    free(c.stems);
    free_inputs(&in);
    return rc;
}
