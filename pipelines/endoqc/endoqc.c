/* pipelines/endoqc/endoqc.c - decode, dedup, sample, classify, re-sample, decide (see endoqc.h). */
#include "pipelines/endoqc/endoqc.h"
#include "pipelines/endoqc/feed.h"
#include "pipelines/endoqc/sites.h"
#include "nn/model.h"
#include "ops/cpu.h"
#include "ops/preprocess.h"
#include "weights/sha256.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define THUMB 160   /* contact-sheet thumbnail side: readable, and 26 of them are 2 MB */

struct mi_endoqc_model {
    mi_model   *net;
    mi_session *sess;             /* (batch, 3, S, S) */
    char   path[512];
    int    batch;
    mi_preprocess_spec pre;   /* resize_mode, resize, crop (the network's input size), mean, std */
    mi_endoqc_sites    s;
    float *x;                     /* (batch, 3, S, S) */
    mi_class_score *top;          /* (batch): each frame's most probable site */
};

void mi_endoqc_opts_default(mi_endoqc_opts *o) {
    *o = (mi_endoqc_opts){ .every = 3, .hash_size = 8, .dup_threshold = 0.90, .dup_window = 32,
                           .dark_level = 16, .min_frames = 0, .min_prob = -1, .site_threshold = -1,
                           .resample = true, .progress = false, .keep_thumbs = true, .decode_thread = true,
                           .known_sha256 = NULL };
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* bounded copy (snprintf would do, but gcc cannot prove src and dst distinct inside one result) */
static void set_str(char *dst, size_t n, const char *src) {
    size_t l = strlen(src);
    if (l >= n) l = n - 1;
    memmove(dst, src, l);
    dst[l] = 0;
}

/* ---- the site metadata ------------------------------------------------------------------- */

static int label_index(const mi_endoqc_sites *s, const char *name) {
    for (int i = 0; i < s->nsites; i++)
        if (!strcmp(s->labels[i], name)) return i;
    return -1;
}

/* A name that is copied into fixed fields and printed on the verdict line: 1..cap-1 bytes, no
 * control characters (a newline or an escape sequence in a label could forge that line). */
static const char *name_problem(const char *v, size_t cap) {
    size_t n = strlen(v);
    if (n == 0) return "is empty";
    if (n >= cap) return "is too long";
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return "contains a control character";
    return NULL;
}

/* A metadata string as an error message shows it: at most 80 bytes, control characters as \xNN,
 * so that a hostile label can neither flood nor forge the terminal. */
static const char *shown(char buf[100], const char *v) {
    size_t n = 0;
    buf[0] = 0;
    for (const unsigned char *p = (const unsigned char *)v; *p && n < 80; p++)
        n += (size_t)snprintf(buf + n, 100 - n, *p < 0x20 || *p == 0x7f ? "\\x%02x" : "%c", *p);
    if (strlen(v) > 80 && n < 96) snprintf(buf + n, 100 - n, "...");
    return buf;
}

/* Parses metadata key `key` as JSON of the given kind; trailing bytes after the value are an
 * error too (cJSON_Parse alone would ignore them). */
static mi_status parse_meta_json(const mi_weights *w, const char *key, bool object, cJSON **out) {
    *out = NULL;
    const char *v = mi_weights_meta(w, key);
    cJSON *j = v ? cJSON_ParseWithOpts(v, NULL, true) : NULL;
    if (!(object ? cJSON_IsObject(j) : cJSON_IsArray(j))) {
        cJSON_Delete(j);
        return MI_FAIL(MI_ERR_FORMAT, "%s: metadata '%s' is %s", w->path, key,
                       !v ? "missing" : object ? "not a JSON object" : "not a JSON array");
    }
    *out = j;
    return MI_OK;
}

/* labels = ["oesophagus", ...]: one distinct name per class */
static mi_status parse_labels(mi_endoqc_sites *s, const mi_weights *w) {
    cJSON *a;
    mi_status st = parse_meta_json(w, "labels", false, &a);
    if (st) return st;
    int n = cJSON_GetArraySize(a);
    if (n < 2 || n > MI_ENDOQC_MAX_SITES) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'labels' names %d classes; a site classifier has 2..%d",
                     w->path, n, MI_ENDOQC_MAX_SITES);
        goto done;
    }
    long long nc;
    if (mi_weights_meta(w, "num_classes") &&
        ((st = mi_weights_meta_int(w, "num_classes", 1, MI_ENDOQC_MAX_SITES, &nc)) != MI_OK || nc != n)) {
        if (st == MI_OK) st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'labels' has %d names, 'num_classes' is %lld", w->path, n, nc);
        goto done;
    }
    const cJSON *x;
    int i = 0;
    cJSON_ArrayForEach(x, a) {
        const char *why = !cJSON_IsString(x) ? "is not a string" : name_problem(x->valuestring, MI_ENDOQC_LABEL_MAX);
        if (!why && label_index(s, x->valuestring) >= 0) why = "is repeated";
        if (why) {
            char b[100];
            st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'labels' entry %d '%s' %s (labels are 1..%d bytes, distinct)",
                         w->path, i + 1, shown(b, cJSON_IsString(x) ? x->valuestring : ""), why, MI_ENDOQC_LABEL_MAX - 1);
            goto done;
        }
        set_str(s->labels[i], sizeof s->labels[i], x->valuestring);
        s->order[i] = s->pos_of_cls[i] = i;
        s->nsites = ++i;
    }
done:
    cJSON_Delete(a);
    return st;
}

/* site_order = the labels in preset order, each exactly once */
static mi_status parse_order(mi_endoqc_sites *s, const mi_weights *w) {
    cJSON *a;
    mi_status st = parse_meta_json(w, "site_order", false, &a);
    if (st) return st;
    if (cJSON_GetArraySize(a) != s->nsites) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'site_order' has %d names for %d classes", w->path,
                     cJSON_GetArraySize(a), s->nsites);
        goto done;
    }
    bool used[MI_ENDOQC_MAX_SITES] = {0};
    const cJSON *x;
    int i = 0;
    cJSON_ArrayForEach(x, a) {
        int c = cJSON_IsString(x) ? label_index(s, x->valuestring) : -1;
        if (c < 0 || used[c]) {
            char b[100];
            st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'site_order' entry %d '%s' is %s", w->path, i + 1,
                         shown(b, cJSON_IsString(x) ? x->valuestring : "(not a string)"),
                         c < 0 ? "not one of the labels" : "repeated");
            goto done;
        }
        used[c] = true;
        s->order[i] = c;
        s->pos_of_cls[c] = i++;
    }
done:
    cJSON_Delete(a);
    return st;
}

/* site_groups = {"fundus": ["fundus_gc", ...], "antrum": [...]}: at most MI_ENDOQC_MAX_GROUPS
 * distinct names, each a non-empty list of distinct labels (a repeat would count one site twice) */
static mi_status parse_groups(mi_endoqc_sites *s, const mi_weights *w) {
    cJSON *root;
    mi_status st = parse_meta_json(w, "site_groups", true, &root);
    if (st) return st;
    const cJSON *g;
    cJSON_ArrayForEach(g, root) {
        const char *why = name_problem(g->string, MI_ENDOQC_GROUP_MAX);
        for (int k = 0; !why && k < s->ngroups; k++)
            if (!strcmp(s->gname[k], g->string)) why = "is repeated";
        if (why) {
            char b[100];
            st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'site_groups': group name '%s' %s (names are 1..%d bytes, distinct)",
                         w->path, shown(b, g->string), why, MI_ENDOQC_GROUP_MAX - 1);
            goto done;
        }
        if (s->ngroups == MI_ENDOQC_MAX_GROUPS) {
            st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'site_groups' has more than %d groups", w->path, MI_ENDOQC_MAX_GROUPS);
            goto done;
        }
        if (!cJSON_IsArray(g) || cJSON_GetArraySize(g) < 1) {
            st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'site_groups' group '%s' is not a non-empty array of labels", w->path, g->string);
            goto done;
        }
        int k = s->ngroups;
        bool in[MI_ENDOQC_MAX_SITES] = {0};
        const cJSON *x;
        cJSON_ArrayForEach(x, g) {
            int c = cJSON_IsString(x) ? label_index(s, x->valuestring) : -1;
            if (c < 0 || in[c]) {
                char b[100];
                st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'site_groups' group '%s' %s '%s'%s", w->path, g->string,
                             c < 0 ? "names" : "repeats", shown(b, cJSON_IsString(x) ? x->valuestring : "(not a string)"),
                             c < 0 ? ", which is not one of the labels" : "");
                goto done;
            }
            in[c] = true;
            s->gmember[k][s->gsize[k]++] = s->pos_of_cls[c];   /* at most nsites: no repeats */
        }
        set_str(s->gname[k], sizeof s->gname[k], g->string);
        s->ngroups++;
    }
done:
    cJSON_Delete(root);
    return st;
}

/* No site_groups key: a blob trained on the guideline's sites still gets its fundus and antrum
 * re-sampled. A group is applied only whole (a partial group would re-sample a window that is not
 * the group's); one that cannot be is named in the warning, with the first label missing. */
static void standard_groups(mi_endoqc_sites *s) {
    s->groups_source = "standard";
    size_t used = 0;
    for (int g = 0; g < MI_ENDOQC_NSTD_GROUPS; g++) {
        const mi_endoqc_std_group *sg = &mi_endoqc_std_groups[g];
        int k = s->ngroups, missing = -1;
        for (int i = 0; i < 4 && missing < 0; i++) {
            int c = label_index(s, sg->members[i]);
            if (c < 0) missing = i;
            else s->gmember[k][i] = s->pos_of_cls[c];
        }
        if (missing < 0) {
            s->gsize[k] = 4;
            set_str(s->gname[k], sizeof s->gname[k], sg->name);
            s->ngroups++;
        } else if (used < sizeof s->groups_warning) {
            char b[100];
            used += (size_t)snprintf(s->groups_warning + used, sizeof s->groups_warning - used,
                                     "%sno '%s' re-sampling: the blob has no site_groups and no label '%s'",
                                     used ? "; " : "", sg->name, shown(b, sg->members[missing]));
        }
    }
}

mi_status mi_endoqc_sites_from_blob(mi_endoqc_sites *s, const mi_weights *w) {
    memset(s, 0, sizeof *s);
    mi_status st;
    if ((st = parse_labels(s, w)) != MI_OK) return st;
    if (mi_weights_meta(w, "site_order") && (st = parse_order(s, w)) != MI_OK) return st;
    s->groups_source = "metadata";
    if (mi_weights_meta(w, "site_groups")) {
        if ((st = parse_groups(s, w)) != MI_OK) return st;
    } else standard_groups(s);
    long long v;
    s->min_frames = 2;
    s->min_prob = 0.5;
    s->site_threshold = s->nsites - 4;   /* 22 of 26 */
    if ((s->meta_min_frames = mi_weights_meta(w, "endoqc_min_frames") != NULL)) {
        if ((st = mi_weights_meta_int(w, "endoqc_min_frames", 1, 1000000, &v)) != MI_OK) return st;
        s->min_frames = (int)v;
    }
    if ((s->meta_threshold = mi_weights_meta(w, "endoqc_site_threshold") != NULL)) {
        if ((st = mi_weights_meta_int(w, "endoqc_site_threshold", 0, s->nsites, &v)) != MI_OK) return st;
        s->site_threshold = (int)v;
    }
    if ((s->meta_min_prob = mi_weights_meta(w, "endoqc_min_prob") != NULL)) {
        if ((st = mi_weights_meta_double(w, "endoqc_min_prob", &s->min_prob)) != MI_OK) return st;
        if (!(s->min_prob >= 0 && s->min_prob <= 1))
            return MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'endoqc_min_prob' %g is not in [0, 1]", w->path, s->min_prob);
    }
    return MI_OK;
}

/* ---- the model --------------------------------------------------------------------------- */

/* Work frames have a shorter side of max(THUMB, resize) pixels: a bound on resize bounds them. */
#define MAX_RESIZE 4096

mi_status mi_endoqc_model_open(mi_endoqc_model **out, const char *blob, int batch, const char *pubkey,
                               mi_trust_info *ti) {
    *out = NULL;
    if (batch < 1 || batch > MI_ENDOQC_MAX_BATCH)
        return MI_FAIL(MI_ERR_ARG, "%s: a batch of %d frames; endoqc classifies 1..%d frames per network call",
                       blob, batch, MI_ENDOQC_MAX_BATCH);
    mi_endoqc_model *m = calloc(1, sizeof *m);
    if (!m) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", blob);
    snprintf(m->path, sizeof m->path, "%s", blob);
    m->batch = batch;
    /* the bytes checked are the bytes that run, and nothing beyond the safetensors header (not
     * the network, not the endoqc metadata) is read before they pass */
    mi_weights bytes;
    mi_trust_info local;
    mi_status st = mi_weights_open(&bytes, blob);
    if (st == MI_OK && (st = mi_trust_check_weights(&bytes, pubkey, ti ? ti : &local)) != MI_OK)
        mi_weights_close(&bytes);
    if (st == MI_OK) st = mi_model_open_weights(&m->net, &bytes);
    if (st != MI_OK) { free(m); return st; }
    const mi_weights *w = mi_model_weights(m->net);
    if ((st = mi_endoqc_sites_from_blob(&m->s, w)) != MI_OK) goto fail;
    if (m->s.nsites != mi_model_num_classes(m->net)) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'labels' names %d sites, the network has %d classes", blob,
                     m->s.nsites, mi_model_num_classes(m->net));
        goto fail;
    }
    /* the transform `medinfer classify` applies to this blob, resize default included */
    if ((st = mi_preprocess_spec_from_blob(&m->pre, w)) != MI_OK) goto fail;
    if (m->pre.crop != mi_model_input_size(m->net)) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'input_size' %d differs from the network's %d", blob,
                     m->pre.crop, mi_model_input_size(m->net));
        goto fail;
    }
    if (m->pre.resize < m->pre.crop || m->pre.resize > MAX_RESIZE) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'resize' %d is not in [input_size %d, %d]", blob, m->pre.resize,
                     m->pre.crop, MAX_RESIZE);
        goto fail;
    }
    size_t xs, S = (size_t)m->pre.crop;
    if (mi_mul_overflows((size_t)batch * 3 * S, S * sizeof(float), &xs)) { st = MI_FAIL(MI_ERR_ARG, "batch %d too large", batch); goto fail; }
    if ((st = mi_session_create(&m->sess, m->net, (int64_t[4]){ batch, 3, m->pre.crop, m->pre.crop }, 0))) goto fail;
    m->x = malloc(xs);
    m->top = malloc((size_t)batch * sizeof *m->top);
    if (!m->x || !m->top) { st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory for a batch of %d", blob, batch); goto fail; }
    *out = m;
    return MI_OK;
fail:
    mi_endoqc_model_close(m);
    return st;
}

void mi_endoqc_model_close(mi_endoqc_model *m) {
    if (!m) return;
    mi_session_destroy(m->sess);
    mi_model_close(m->net);
    free(m->x);
    free(m->top);
    free(m);
}

const char *mi_endoqc_model_sha256(const mi_endoqc_model *m) { return mi_model_sha256(m->net); }
const mi_weights *mi_endoqc_model_weights(const mi_endoqc_model *m) { return mi_model_weights(m->net); }
const mi_endoqc_sites *mi_endoqc_model_sites(const mi_endoqc_model *m) { return &m->s; }

/* ---- one run ----------------------------------------------------------------------------- */

typedef struct {
    int64_t pts, t_ms;
    float   prob;
    int16_t cls;          /* -1 until classified */
} kept_rec;

typedef struct {
    mi_endoqc_model *m;
    mi_endoqc_result *r;
    const mi_endoqc_opts *o;
    mi_video *v;
    kept_rec *kept;
    size_t nkept, capkept;
    int     n;                       /* frames in the current batch */
    size_t  rec[MI_ENDOQC_MAX_BATCH]; /* their kept_rec indices (m->batch <= MI_ENDOQC_MAX_BATCH) */
    uint8_t *crops;                  /* their THUMB x THUMB crops (keep_thumbs) */
    bool    resampling;
    mi_endoqc_feed *feed;            /* the decoder thread of the pass under way, or NULL */
} run_ctx;

/* Average hash: hs x hs cell means of BT.601 luma, bit set where the cell is brighter than the
 * mean of the cells. Taken over the centre square (what the classifier sees): the black side
 * bars of a wide recording are the same in every frame and would only dilute the hash. Also
 * returns the square's mean luma (the dark-frame test). */
static uint64_t ahash(const uint8_t *px, int w, int h, int hs, double *mean_luma) {
    int s = w < h ? w : h, x0 = (w - s) / 2, y0 = (h - s) / 2;
    uint64_t sum[64] = {0}, cnt[64] = {0}, total = 0;
    for (int y = 0; y < s; y++) {
        const uint8_t *p = px + ((size_t)(y0 + y) * w + x0) * 3;
        int cy = y * hs / s;
        for (int x = 0; x < s; x++, p += 3) {
            unsigned g = (77u * p[0] + 150u * p[1] + 29u * p[2]) >> 8;
            int c = cy * hs + x * hs / s;
            sum[c] += g;
            cnt[c]++;
            total += g;
        }
    }
    *mean_luma = (double)total / ((double)s * s);
    double avg[64], mean = 0;
    for (int i = 0; i < hs * hs; i++) { avg[i] = cnt[i] ? (double)sum[i] / cnt[i] : 0; mean += avg[i]; }
    mean /= hs * hs;
    uint64_t bits = 0;
    for (int i = 0; i < hs * hs; i++)
        if (avg[i] > mean) bits |= 1ull << i;
    return bits;
}

static void progress(run_ctx *c, int64_t t_ms, bool final) {
    static double last = 0;
    double t = now_ms();
    if (!c->o->progress || (!final && t - last < 250)) return;
    last = t;
    const mi_endoqc_result *r = c->r;
    const char *name = strrchr(r->video, '/') ? strrchr(r->video, '/') + 1 : r->video;
    fprintf(stderr, "\rendoqc %s: %s %6.1f / %.1f s  decoded %lld  kept %lld  classified %lld   %s", name,
            c->resampling ? "re-sampling" : "decoding", t_ms / 1000.0, r->info.duration_ms / 1000.0,
            (long long)r->decoded, (long long)r->kept, (long long)(r->classified + r->classified_resample),
            final ? "\n" : "");
    fflush(stderr);
}

static void crop_thumb(uint8_t *dst, const mi_video_frame *f) {
    int s = f->w < f->h ? f->w : f->h, x0 = (f->w - s) / 2, y0 = (f->h - s) / 2;
    if (s == THUMB) {
        for (int y = 0; y < s; y++) memcpy(dst + (size_t)y * s * 3, f->px + ((size_t)(y0 + y) * f->w + x0) * 3, (size_t)s * 3);
        return;
    }
    uint8_t *tmp = malloc((size_t)s * s * 3);
    if (!tmp) { memset(dst, 0, THUMB * THUMB * 3); return; }   /* a black thumbnail, not a failed exam */
    for (int y = 0; y < s; y++) memcpy(tmp + (size_t)y * s * 3, f->px + ((size_t)(y0 + y) * f->w + x0) * 3, (size_t)s * 3);
    if (mi_rgb_resize(dst, THUMB, THUMB, tmp, s, s) != MI_OK) memset(dst, 0, THUMB * THUMB * 3);
    free(tmp);
}

static mi_status flush_batch(run_ctx *c) {
    if (c->n == 0) return MI_OK;
    mi_endoqc_model *m = c->m;
    mi_endoqc_result *r = c->r;
    double t0 = now_ms();
    /* Threads for the network: the calling thread's count (--threads; default all cores) less
     * one while the decoder thread is decoding beside it, all of them while it waits for room in
     * its queue or is done - so that the two together never ask for more cores than given, and
     * no core idles in the classification-bound stretches (the worst case's re-sampling, where
     * the decoder is mostly ahead). Measured on the 2-core machine, bench/bench_endoqc.sh first
     * pass / worst case under other jobs' load (load average 5-10), a network of
     *   2 threads whatever the decoder does:  311 s / 867 s, 132 / 360 CPU-s
     *   1 thread  whatever the decoder does:  154 s / 446 s,  69 / 181 CPU-s
     * (an OpenMP team with a preempted thread stalls at the next barrier, where libgomp spins:
     * twice the CPU for the same work). Results do not depend on the thread count, only the time. */
    const int threads = mi_threads();
    const bool beside = threads > 1 && mi_endoqc_feed_decoding(c->feed);
    if (beside) mi_set_threads(threads - 1);
    /* the most probable site, as `medinfer classify` ranks them (softmax; ties: lower index) */
    mi_status st = mi_classify(m->sess, m->x, c->n, 1, m->top, NULL);
    if (beside) mi_set_threads(threads);
    r->t_classify += now_ms() - t0;
    if (st != MI_OK && st != MI_ERR_FORMAT) return st;
    for (int i = 0; i < c->n; i++) {
        const int best = m->top[i].index;
        const float p = m->top[i].probability;
        if (best < 0)
            return MI_FAIL(MI_ERR_FORMAT, "%s: the network gives a non-finite probability for the frame at %.1f s "
                           "(weights in %s contain NaN/Inf?)", r->video, c->kept[c->rec[i]].t_ms / 1000.0, m->path);
        kept_rec *k = &c->kept[c->rec[i]];
        k->cls = (int16_t)best;
        k->prob = p;
        if (c->resampling) r->classified_resample++; else r->classified++;
        if (p < c->r->opts.min_prob) continue;
        mi_endoqc_site *s = &r->sites[m->s.pos_of_cls[best]];
        s->frames++;
        if (c->resampling) s->frames_resampled++;
        if (s->first_ms < 0 || k->t_ms < s->first_ms) s->first_ms = k->t_ms;
        if (k->t_ms > s->last_ms) s->last_ms = k->t_ms;
        if (p > s->best_prob) {
            s->best_prob = p;
            s->best_ms = k->t_ms;
            if (c->o->keep_thumbs) {
                if (!s->thumb.px && mi_image_alloc(&s->thumb, THUMB, THUMB) != MI_OK) continue;
                memcpy(s->thumb.px, c->crops + (size_t)i * THUMB * THUMB * 3, THUMB * THUMB * 3);
            }
        }
    }
    c->n = 0;
    return MI_OK;
}

static mi_status add_to_batch(run_ctx *c, const mi_video_frame *f, size_t rec) {
    mi_endoqc_model *m = c->m;
    double t0 = now_ms();
    /* the torchvision transform a hospital's model was trained with, applied to the work frame
     * (whose shorter side is already >= resize): Resize(resize) + CenterCrop(S), or, for a model
     * trained on whole frames, Resize((S, S)); then Normalize */
    const mi_preprocess_spec *pp = &m->pre;
    mi_status st = mi_preprocess_rgb8(f->px, f->w, f->h, (size_t)f->w * 3, pp,
                                      m->x + (size_t)c->n * 3 * pp->crop * pp->crop);
    if (st != MI_OK) return st;
    if (c->o->keep_thumbs) crop_thumb(c->crops + (size_t)c->n * THUMB * THUMB * 3, f);
    c->r->t_preprocess += now_ms() - t0;
    c->rec[c->n++] = rec;
    return c->n == m->batch ? flush_batch(c) : MI_OK;
}

static mi_status push_kept(run_ctx *c, const mi_video_frame *f) {
    if (c->nkept == c->capkept) {
        size_t cap = c->capkept ? 2 * c->capkept : 1024;
        kept_rec *p = realloc(c->kept, cap * sizeof *p);
        if (!p) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory after %zu kept frames", c->r->video, c->nkept);
        c->kept = p;
        c->capkept = cap;
    }
    c->kept[c->nkept++] = (kept_rec){ f->pts, f->t_ms, 0, -1 };
    return MI_OK;
}

/* The first pass's picks, made on the decoder thread (feed.h): dark frames and near-duplicates
 * are skipped; a kept frame becomes a record, every k-th one with its pixels for the network.
 * tag: the kept frame's ordinal. */
typedef struct {
    const mi_endoqc_opts *o;
    const char *video;
    uint64_t *ring;                  /* the dedup window's hashes */
    size_t    cap, nring, head;
    double    max_dist;
    int64_t   dark, duplicates, kept;
} first_sel;

static mi_status select_first(void *arg, const mi_video_frame *f, mi_feed_pick *pick, int64_t *tag) {
    first_sel *d = arg;
    const mi_endoqc_opts *o = d->o;
    double luma;
    uint64_t h = ahash(f->px, f->w, f->h, o->hash_size, &luma);
    bool dup = false;
    if (luma < o->dark_level) d->dark++;
    else {
        for (size_t i = 0; i < d->nring && !dup; i++) dup = __builtin_popcountll(h ^ d->ring[i]) < d->max_dist;
        if (dup) d->duplicates++;
    }
    *pick = MI_FEED_SKIP;
    if (luma < o->dark_level || dup) return MI_OK;
    if (o->dup_window > 0) {
        d->ring[d->head] = h;   /* the oldest kept hash leaves the window */
        d->head = (d->head + 1) % d->cap;
        if (d->nring < d->cap) d->nring++;
    } else {
        if (d->nring == d->cap) {
            uint64_t *p = realloc(d->ring, 2 * d->cap * sizeof *d->ring);
            if (!p) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory after %zu kept frames", d->video, d->nring);
            d->ring = p;
            d->cap *= 2;
        }
        d->ring[d->nring++] = h;
    }
    *tag = d->kept++;
    *pick = *tag % o->every == 0 ? MI_FEED_PIXELS : MI_FEED_RECORD;
    return MI_OK;
}

/* Frames the decoder may hold ready beyond the one being preprocessed: two batches, so that it
 * decodes the whole next batch while the network classifies this one (feed.h: 16 frames, 4.3 MB
 * at 720p with the default batch of 8), and records for the kept frames between them. */
static int feed_slots(const mi_endoqc_model *m) { return 2 * m->batch; }
#define FEED_RECORDS 1024

/* First pass: everything streams through once; decoding, the dark test and dedup run ahead on
 * the decoder thread (o->decode_thread), the network on this one. */
static mi_status first_pass(run_ctx *c) {
    const mi_endoqc_opts *o = c->o;
    mi_endoqc_result *r = c->r;
    /* window 0 compares with every kept frame: the hashes grow with the kept frames (8 bytes
     * each, beside their 24-byte records), the comparisons with their square */
    first_sel d = { .o = o, .video = r->video, .cap = o->dup_window ? (size_t)o->dup_window : 1024 };
    int bits = o->hash_size * o->hash_size;
    /* similarity > threshold  <=>  hamming distance < bits * (1 - threshold) */
    d.max_dist = bits * (1.0 - o->dup_threshold);
    if (!(d.ring = malloc(d.cap * sizeof *d.ring))) return MI_FAIL(MI_ERR_NOMEM, "out of memory");
    mi_endoqc_feed *q;
    mi_status st = mi_endoqc_feed_start(&q, c->v, o->decode_thread, feed_slots(c->m), FEED_RECORDS, select_first, &d);
    if (st != MI_OK) { free(d.ring); return st; }
    c->feed = q;
    for (;;) {
        mi_feed_item it;
        bool got;
        st = mi_endoqc_feed_next(q, &it, &got);
        if (st != MI_OK || !got) break;
        r->decoded = it.decoded;
        progress(c, it.f.t_ms, false);
        if ((st = push_kept(c, &it.f)) != MI_OK) break;
        r->kept++;
        if (it.f.px && (st = add_to_batch(c, &it.f, c->nkept - 1)) != MI_OK) break;
    }
    c->feed = NULL;
    r->decoded = mi_endoqc_feed_stop(q, &r->t_decode, &r->t_dedup, &r->t_decode_wait);
    r->dark = d.dark;
    r->duplicates = d.duplicates;
    free(d.ring);
    if (st == MI_OK) st = flush_batch(c);
    return st;
}

/* A re-sampling window's picks, on the decoder thread: the kept frames of [from, to] not
 * classified yet, found by timestamp, on a private copy of their records (the network's thread
 * writes the originals meanwhile). The stream ends exactly where a reader on one thread would
 * stop, so the reader is left where it was before (frames without timestamps take their time from
 * the frame before, also across a seek). tag: the kept record's index. */
typedef struct {
    struct { int64_t t_ms, pts; bool taken; } *k;   /* kept[lo..nkept) */
    size_t  lo, n, j;
    int64_t to_ms;
} window_sel;

static mi_status select_window(void *arg, const mi_video_frame *f, mi_feed_pick *pick, int64_t *tag) {
    window_sel *w = arg;
    *pick = MI_FEED_END;
    if (f->t_ms > w->to_ms) return MI_OK;
    while (w->j < w->n && w->k[w->j].t_ms < f->t_ms) w->j++;
    if (w->j == w->n || w->k[w->j].t_ms > w->to_ms) return MI_OK;
    *pick = MI_FEED_SKIP;
    if (w->k[w->j].t_ms != f->t_ms || w->k[w->j].pts != f->pts || w->k[w->j].taken) return MI_OK;
    w->k[w->j].taken = true;   /* a second frame with the same time is not this one */
    *tag = (int64_t)(w->lo + w->j);
    *pick = MI_FEED_PIXELS;
    return MI_OK;
}

/* Second pass over [from, to]: classify the kept frames not classified yet, found by timestamp. */
static mi_status resample_window(run_ctx *c, mi_endoqc_resample *rs) {
    size_t lo = 0;
    while (lo < c->nkept && c->kept[lo].t_ms < rs->from_ms) lo++;
    for (size_t j = lo; j < c->nkept && c->kept[j].t_ms <= rs->to_ms; j++) rs->candidates += c->kept[j].cls < 0;
    if (rs->candidates == 0) return MI_OK;
    int64_t before = c->r->classified_resample;
    window_sel w = { .lo = lo, .n = c->nkept - lo, .to_ms = rs->to_ms };
    if (!(w.k = malloc(w.n * sizeof *w.k)))
        return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory for %zu kept frames", c->r->video, w.n);
    for (size_t j = 0; j < w.n; j++) {
        const kept_rec *k = &c->kept[lo + j];
        w.k[j].t_ms = k->t_ms;
        w.k[j].pts = k->pts;
        w.k[j].taken = k->cls >= 0;
    }
    c->resampling = true;
    mi_endoqc_feed *q = NULL;
    mi_status st = mi_video_seek_ms(c->v, rs->from_ms);
    if (st == MI_OK) st = mi_endoqc_feed_start(&q, c->v, c->o->decode_thread, feed_slots(c->m), FEED_RECORDS, select_window, &w);
    c->feed = q;
    while (st == MI_OK) {
        mi_feed_item it;
        bool got;
        st = mi_endoqc_feed_next(q, &it, &got);
        if (st != MI_OK || !got) break;
        progress(c, it.f.t_ms, false);
        c->kept[it.tag].cls = 0;   /* taken */
        st = add_to_batch(c, &it.f, (size_t)it.tag);
    }
    c->feed = NULL;
    mi_endoqc_feed_stop(q, &c->r->t_decode, NULL, NULL);
    free(w.k);
    if (st == MI_OK) st = flush_batch(c);
    c->resampling = false;
    rs->classified = (int)(c->r->classified_resample - before);
    return st;
}

static void decide(mi_endoqc_result *r) {
    r->distinct = 0;
    for (int i = 0; i < r->nsites; i++) {
        r->sites[i].seen = r->sites[i].frames >= r->opts.min_frames;
        r->distinct += r->sites[i].seen;
    }
    r->complete = r->distinct > r->opts.site_threshold;
}

/* Targeted re-sampling: for each group with an unseen site, the window between the nearest sites
 * before and after the group (preset order) that have any agreeing frame. The window is taken
 * wide, from the first frame of the site before to the last of the site after: a misplaced anchor
 * frame only widens it (more frames classified), it never hides the group. */
static mi_status resample_groups(run_ctx *c) {
    mi_endoqc_model *m = c->m;
    mi_endoqc_result *r = c->r;
    int64_t end = r->decoded_until_ms;
    const mi_endoqc_sites *ms = &m->s;
    for (int g = 0; g < ms->ngroups; g++) {
        mi_endoqc_resample *rs = &r->resample[r->nresample++];
        set_str(rs->group, sizeof rs->group, ms->gname[g]);
        decide(r);
        int lo = ms->nsites, hi = -1;
        bool seen_before[MI_ENDOQC_MAX_SITES];
        for (int k = 0; k < ms->gsize[g]; k++) {
            int p = ms->gmember[g][k];
            if (!r->sites[p].seen) rs->triggered = true;
            if (p < lo) lo = p;
            if (p > hi) hi = p;
        }
        for (int i = 0; i < r->nsites; i++) seen_before[i] = r->sites[i].seen;
        rs->from_ms = 0;
        rs->to_ms = end;
        for (int p = lo - 1; p >= 0; p--)
            if (r->sites[p].frames > 0) { rs->from_ms = r->sites[p].first_ms; set_str(rs->anchor_before, sizeof rs->anchor_before, r->sites[p].label); break; }
        for (int p = hi + 1; p < r->nsites; p++)
            if (r->sites[p].frames > 0) { rs->to_ms = r->sites[p].last_ms; set_str(rs->anchor_after, sizeof rs->anchor_after, r->sites[p].label); break; }
        if (rs->to_ms < rs->from_ms) { int64_t t = rs->from_ms; rs->from_ms = rs->to_ms; rs->to_ms = t; }
        if (!rs->triggered || !r->opts.resample) continue;
        double t0 = now_ms();
        double td = r->t_decode, tc = r->t_classify, tp = r->t_preprocess;
        mi_status st = resample_window(c, rs);
        /* re-sampling time is reported on its own; the stage timers count the first pass only */
        r->t_resample += now_ms() - t0;
        r->t_decode = td; r->t_classify = tc; r->t_preprocess = tp;
        if (st != MI_OK) return st;
        decide(r);
        for (int k = 0; k < ms->gsize[g]; k++) {
            int p = ms->gmember[g][k];
            if (r->sites[p].seen && !seen_before[p])
                set_str(rs->recovered[rs->nrecovered++], 64, r->sites[p].label);
        }
    }
    return MI_OK;
}

/* Options <= 0 / < 0 take the blob's metadata value, else the built-in default. */
static void resolve(const mi_endoqc_model *m, mi_endoqc_opts *o, char source[3][16]) {
    const mi_endoqc_sites *s = &m->s;
    snprintf(source[0], 16, "%s", o->min_frames > 0 ? "option" : s->meta_min_frames ? "metadata" : "default");
    snprintf(source[1], 16, "%s", o->min_prob >= 0 ? "option" : s->meta_min_prob ? "metadata" : "default");
    snprintf(source[2], 16, "%s", o->site_threshold >= 0 ? "option" : s->meta_threshold ? "metadata" : "default");
    if (o->min_frames <= 0) o->min_frames = s->min_frames;
    if (o->min_prob < 0) o->min_prob = s->min_prob;
    if (o->site_threshold < 0) o->site_threshold = s->site_threshold;
}

const char *mi_endoqc_site_rule(const mi_endoqc_opts *o) {
    return o->min_frames == 1 && o->min_prob == 0 ? "method" : "agreement";
}

/* A setting added later is appended only when it differs from what earlier versions did, so that
 * their rows still resume: squash resizing (crop appends nothing), the standard groups (earlier, a
 * blob without site_groups re-sampled nothing). */
void mi_endoqc_settings(const mi_endoqc_model *m, const mi_endoqc_opts *in, char *buf, size_t n) {
    mi_endoqc_opts o = *in;
    char source[3][16];
    resolve(m, &o, source);
    snprintf(buf, n, "every=%d hash=%d dup=%.4f window=%d dark=%d min_frames=%d min_prob=%.4f threshold=%d "
             "resample=%d resize=%d input=%d%s%s", o.every, o.hash_size, o.dup_threshold, o.dup_window, o.dark_level,
             o.min_frames, o.min_prob, o.site_threshold, o.resample, m->pre.resize, m->pre.crop,
             m->pre.resize_mode == MI_RESIZE_SQUASH ? " resize_mode=squash" : "",
             strcmp(m->s.groups_source, "standard") || m->s.ngroups == 0 ? "" : " groups=standard");
}

mi_status mi_endoqc_run(mi_endoqc_model *m, const char *video, const mi_endoqc_opts *o_in, mi_endoqc_result *r) {
    memset(r, 0, sizeof *r);
    double t_start = now_ms();
    mi_endoqc_opts o = *o_in;
    if (o.every < 1 || o.hash_size < 2 || o.hash_size > 8 || o.dup_window < 0 || !(o.dup_threshold >= 0 && o.dup_threshold <= 1))
        return MI_FAIL(MI_ERR_ARG, "endoqc: invalid options (every %d, hash %d, window %d, threshold %g)",
                       o.every, o.hash_size, o.dup_window, o.dup_threshold);
    resolve(m, &o, r->threshold_source);
    r->opts = o;
    snprintf(r->video, sizeof r->video, "%s", video);
    const mi_weights *w = mi_model_weights(m->net);
    snprintf(r->model_path, sizeof r->model_path, "%s", m->path);
    snprintf(r->model_arch, sizeof r->model_arch, "%s", mi_model_arch(m->net));
    snprintf(r->model_version, sizeof r->model_version, "%s", mi_weights_meta(w, "model_version") ? mi_weights_meta(w, "model_version") : "");
    snprintf(r->model_sha256, sizeof r->model_sha256, "%s", w->sha256);
    set_str(r->groups_source, sizeof r->groups_source, m->s.groups_source);
    set_str(r->groups_warning, sizeof r->groups_warning, m->s.groups_warning);
    r->input_size = m->pre.crop;
    r->resize_mode = m->pre.resize_mode;
    r->batch = m->batch;
    r->nsites = m->s.nsites;
    for (int i = 0; i < m->s.nsites; i++) {
        mi_endoqc_site *s = &r->sites[i];
        set_str(s->label, sizeof s->label, m->s.labels[m->s.order[i]]);
        s->cls = m->s.order[i];
        s->first_ms = s->last_ms = s->best_ms = -1;
    }

    double t0 = now_ms();
    mi_status st = mi_video_check_path(video);   /* "empty file", "is a directory": before hashing */
    if (st != MI_OK) return st;
    struct stat sb;
    if (stat(video, &sb) != 0) return MI_FAIL(MI_ERR_IO, "%s: %s", video, strerror(errno));
    r->video_bytes = sb.st_size;
    if (o.known_sha256) snprintf(r->video_sha256, sizeof r->video_sha256, "%.64s", o.known_sha256);
    else if (mi_sha256_file(video, r->video_sha256) != 0) return MI_FAIL(MI_ERR_IO, "%s: cannot read: %s", video, strerror(errno));
    r->t_hash_file = now_ms() - t0;

    run_ctx c = { .m = m, .r = r, .o = &o };
    /* work frames: shorter side max(160, S): the classifier's Resize(S) starts from at least S,
     * and thumbnails for the contact sheet stay 160 px whatever the model's input size */
    st = mi_video_open(&c.v, video, m->pre.resize > THUMB ? m->pre.resize : THUMB);
    if (st != MI_OK) return st;
    r->info = *mi_video_get_info(c.v);
    if (o.keep_thumbs && !(c.crops = malloc((size_t)m->batch * THUMB * THUMB * 3))) {
        st = MI_FAIL(MI_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = first_pass(&c)) != MI_OK) goto done;
    r->decoded_until_ms = mi_video_last_ms(c.v);
    r->bad_packets = mi_video_bad_packets(c.v);
    r->damaged_frames = mi_video_damaged_frames(c.v);
    r->truncated = mi_video_truncated(c.v);
    snprintf(r->damage, sizeof r->damage, "%s", mi_video_damage(c.v));
    r->decode_complete = !r->damage[0] && !r->truncated && r->decoded > 0;
    r->info = *mi_video_get_info(c.v);
    st = resample_groups(&c);
    decide(r);
    progress(&c, r->decoded_until_ms, true);
done:
    mi_video_close(c.v);
    free(c.kept);
    free(c.crops);
    r->t_total = now_ms() - t_start;
    return st;
}

void mi_endoqc_result_free(mi_endoqc_result *r) {
    for (int i = 0; i < r->nsites; i++) mi_image_free(&r->sites[i].thumb);
}

/* ---- the JSON report --------------------------------------------------------------------- */

cJSON *mi_endoqc_missing_sites(const mi_endoqc_result *r) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < r->nsites; i++)
        if (!r->sites[i].seen && !cJSON_AddItemToArray(a, cJSON_CreateString(r->sites[i].label))) {
            cJSON_Delete(a);
            return NULL;
        }
    return a;
}

static cJSON *ms_or_null(int64_t ms) { return ms < 0 ? cJSON_CreateNull() : cJSON_CreateNumber((double)ms); }

char *mi_endoqc_report_json(const mi_endoqc_result *r) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "schema", "medinfer.endoqc.report/1");
    cJSON *v = cJSON_AddObjectToObject(root, "video");
    cJSON_AddStringToObject(v, "path", r->video);
    cJSON_AddStringToObject(v, "sha256", r->video_sha256);
    cJSON_AddNumberToObject(v, "bytes", (double)r->video_bytes);
    cJSON_AddStringToObject(v, "container", r->info.container);
    cJSON_AddStringToObject(v, "codec", r->info.codec);
    cJSON_AddNumberToObject(v, "width", r->info.width);
    cJSON_AddNumberToObject(v, "height", r->info.height);
    cJSON_AddNumberToObject(v, "fps", round(r->info.fps * 1000) / 1000);
    cJSON_AddItemToObject(v, "duration_ms", ms_or_null(r->info.duration_ms));

    cJSON *d = cJSON_AddObjectToObject(root, "decode");
    cJSON_AddBoolToObject(d, "complete", r->decode_complete);
    cJSON_AddItemToObject(d, "decoded_until_ms", ms_or_null(r->decoded_until_ms));
    cJSON_AddBoolToObject(d, "truncated", r->truncated);
    cJSON_AddNumberToObject(d, "bad_packets", (double)r->bad_packets);
    cJSON_AddNumberToObject(d, "damaged_frames", (double)r->damaged_frames);
    if (r->damage[0]) cJSON_AddStringToObject(d, "damage", r->damage);
    else cJSON_AddNullToObject(d, "damage");

    cJSON *f = cJSON_AddObjectToObject(root, "frames");
    cJSON_AddNumberToObject(f, "decoded", (double)r->decoded);
    cJSON_AddNumberToObject(f, "dark", (double)r->dark);
    cJSON_AddNumberToObject(f, "duplicates", (double)r->duplicates);
    cJSON_AddNumberToObject(f, "kept", (double)r->kept);
    cJSON_AddNumberToObject(f, "classified", (double)r->classified);
    cJSON_AddNumberToObject(f, "classified_resampling", (double)r->classified_resample);

    cJSON *sites = cJSON_AddArrayToObject(root, "sites");
    for (int i = 0; i < r->nsites; i++) {
        const mi_endoqc_site *s = &r->sites[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "number", i + 1);
        cJSON_AddStringToObject(o, "label", s->label);
        cJSON_AddBoolToObject(o, "seen", s->seen);
        cJSON_AddNumberToObject(o, "frames", s->frames);
        cJSON_AddNumberToObject(o, "frames_resampled", s->frames_resampled);
        cJSON_AddItemToObject(o, "first_ms", ms_or_null(s->first_ms));
        cJSON_AddItemToObject(o, "last_ms", ms_or_null(s->last_ms));
        cJSON_AddItemToObject(o, "best_ms", ms_or_null(s->best_ms));
        if (s->frames) cJSON_AddNumberToObject(o, "best_prob", round(s->best_prob * 1e4) / 1e4);
        else cJSON_AddNullToObject(o, "best_prob");
        cJSON_AddItemToArray(sites, o);
    }
    cJSON *missing = mi_endoqc_missing_sites(r);
    if (!missing) { cJSON_Delete(root); return NULL; }
    cJSON_AddItemToObject(root, "missing_sites", missing);
    cJSON_AddNumberToObject(root, "distinct_sites", r->distinct);
    cJSON_AddNumberToObject(root, "total_sites", r->nsites);
    cJSON_AddStringToObject(root, "verdict", r->complete ? "complete" : "incomplete");

    cJSON *rs = cJSON_AddArrayToObject(root, "resampling");
    for (int i = 0; i < r->nresample; i++) {
        const mi_endoqc_resample *x = &r->resample[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "group", x->group);
        cJSON_AddBoolToObject(o, "needed", x->triggered);
        cJSON_AddBoolToObject(o, "run", x->triggered && r->opts.resample);
        if (x->anchor_before[0]) cJSON_AddStringToObject(o, "anchor_before", x->anchor_before);
        else cJSON_AddNullToObject(o, "anchor_before");
        if (x->anchor_after[0]) cJSON_AddStringToObject(o, "anchor_after", x->anchor_after);
        else cJSON_AddNullToObject(o, "anchor_after");
        cJSON_AddNumberToObject(o, "from_ms", (double)x->from_ms);
        cJSON_AddNumberToObject(o, "to_ms", (double)x->to_ms);
        cJSON_AddNumberToObject(o, "candidates", x->candidates);
        cJSON_AddNumberToObject(o, "classified", x->classified);
        cJSON *rec = cJSON_AddArrayToObject(o, "recovered");
        for (int k = 0; k < x->nrecovered; k++) cJSON_AddItemToArray(rec, cJSON_CreateString(x->recovered[k]));
        cJSON_AddItemToArray(rs, o);
    }

    cJSON *t = cJSON_AddObjectToObject(root, "timing_ms");
    cJSON_AddNumberToObject(t, "hash_file", round(r->t_hash_file));
    cJSON_AddNumberToObject(t, "decode", round(r->t_decode));
    cJSON_AddNumberToObject(t, "dedup", round(r->t_dedup));
    cJSON_AddNumberToObject(t, "decode_wait", round(r->t_decode_wait));
    cJSON_AddNumberToObject(t, "preprocess", round(r->t_preprocess));
    cJSON_AddNumberToObject(t, "classify", round(r->t_classify));
    cJSON_AddNumberToObject(t, "resample", round(r->t_resample));
    cJSON_AddNumberToObject(t, "total", round(r->t_total));
    if (r->decoded_until_ms > 0 && r->t_total > 0)
        cJSON_AddNumberToObject(t, "x_realtime", round(r->decoded_until_ms / r->t_total * 100) / 100);

    cJSON *p = cJSON_AddObjectToObject(root, "provenance");
    cJSON_AddStringToObject(p, "engine", "medinfer");
    cJSON_AddStringToObject(p, "engine_version", MI_VERSION);
    cJSON *mo = cJSON_AddObjectToObject(p, "model");
    cJSON_AddStringToObject(mo, "path", r->model_path);
    cJSON_AddStringToObject(mo, "arch", r->model_arch);
    cJSON_AddStringToObject(mo, "model_version", r->model_version);
    cJSON_AddStringToObject(mo, "sha256", r->model_sha256);
    cJSON_AddNumberToObject(mo, "input_size", r->input_size);
    cJSON_AddStringToObject(mo, "resize_mode", mi_resize_mode_name(r->resize_mode));
    cJSON_AddStringToObject(p, "input_sha256", r->video_sha256);
    cJSON *th = cJSON_AddObjectToObject(p, "thresholds");
    cJSON_AddNumberToObject(th, "min_frames", r->opts.min_frames);
    cJSON_AddNumberToObject(th, "min_prob", r->opts.min_prob);
    cJSON_AddNumberToObject(th, "site_threshold", r->opts.site_threshold);
    cJSON_AddNumberToObject(th, "every", r->opts.every);
    cJSON_AddNumberToObject(th, "hash_size", r->opts.hash_size);
    cJSON_AddNumberToObject(th, "dup_threshold", r->opts.dup_threshold);
    cJSON_AddNumberToObject(th, "dup_window", r->opts.dup_window);
    cJSON_AddNumberToObject(th, "dark_level", r->opts.dark_level);
    cJSON_AddBoolToObject(th, "resample", r->opts.resample);
    cJSON_AddNumberToObject(th, "batch", r->batch);
    char text[160];
    cJSON_AddStringToObject(th, "site_rule", mi_endoqc_site_rule(&r->opts));
    if (!strcmp(mi_endoqc_site_rule(&r->opts), "method"))
        snprintf(text, sizeof text, "a site is seen when it is the top class of any classified frame");
    else
        snprintf(text, sizeof text, "a site is seen when it is the top class of at least %d classified frame%s "
                 "at probability >= %g", r->opts.min_frames, r->opts.min_frames == 1 ? "" : "s", r->opts.min_prob);
    cJSON_AddStringToObject(th, "site_rule_text", text);
    if (r->opts.dup_window) snprintf(text, sizeof text, "the last %d kept frames", r->opts.dup_window);
    else snprintf(text, sizeof text, "every kept frame");
    cJSON_AddStringToObject(th, "dup_compared_with", text);
    cJSON_AddStringToObject(th, "site_groups_source", r->groups_source);
    if (r->groups_warning[0]) cJSON_AddStringToObject(th, "site_groups_warning", r->groups_warning);
    else cJSON_AddNullToObject(th, "site_groups_warning");
    cJSON *src = cJSON_AddObjectToObject(th, "source");
    cJSON_AddStringToObject(src, "min_frames", r->threshold_source[0]);
    cJSON_AddStringToObject(src, "min_prob", r->threshold_source[1]);
    cJSON_AddStringToObject(src, "site_threshold", r->threshold_source[2]);
    char when[32];
    time_t now = time(NULL);
    struct tm tmv;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tmv));
    cJSON_AddStringToObject(p, "created", when);

    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}
