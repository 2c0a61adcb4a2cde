/* pipelines/endoqc/endoqc.c - decode, dedup, sample, classify, re-sample, decide (see endoqc.h). */
#include "endoqc.h"
#include "../../nn/model.h"
#include "../../weights/sha256.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define THUMB 160   /* contact-sheet thumbnail side: readable, and 26 of them are 2 MB */

struct mi_endoqc_model {
    mi_model   *net;
    mi_session *sess;   /* (batch, 3, S, S) */
    char   path[512];
    int    ncls, input, resize, batch;
    float  mean[3], std[3];
    char   labels[MI_ENDOQC_MAX_SITES][64];
    int    order[MI_ENDOQC_MAX_SITES];   /* class index of each preset-order position */
    int    pos_of_cls[MI_ENDOQC_MAX_SITES];
    int    ngroups;
    char   gname[MI_ENDOQC_MAX_GROUPS][32];
    int    gsize[MI_ENDOQC_MAX_GROUPS];
    int    gmember[MI_ENDOQC_MAX_GROUPS][MI_ENDOQC_MAX_SITES];  /* preset positions */
    bool   meta_min_frames, meta_min_prob, meta_threshold;
    long long min_frames, site_threshold;
    double min_prob;
    float *x, *logits;   /* batch buffers: (batch, 3, S, S) and (batch, ncls) */
};

void mi_endoqc_opts_default(mi_endoqc_opts *o) {
    *o = (mi_endoqc_opts){ .every = 3, .hash_size = 8, .dup_threshold = 0.90, .dup_window = 32,
                           .dark_level = 16, .min_frames = 0, .min_prob = -1, .site_threshold = -1,
                           .resample = true, .progress = false, .keep_thumbs = true, .known_sha256 = NULL };
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

static int label_index(const mi_endoqc_model *m, const char *name) {
    for (int i = 0; i < m->ncls; i++)
        if (!strcmp(m->labels[i], name)) return i;
    return -1;
}

/* site_groups = {"fundus": ["fundus_gc", ...], "antrum": [...]} */
static mi_status parse_groups(mi_endoqc_model *m, const char *json) {
    cJSON *root = cJSON_Parse(json);
    mi_status st = MI_OK;
    if (!cJSON_IsObject(root)) { st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata site_groups is not a JSON object", m->path); goto done; }
    const cJSON *g;
    cJSON_ArrayForEach(g, root) {
        if (m->ngroups == MI_ENDOQC_MAX_GROUPS) { st = MI_FAIL(MI_ERR_FORMAT, "%s: site_groups has more than %d groups", m->path, MI_ENDOQC_MAX_GROUPS); goto done; }
        if (!cJSON_IsArray(g) || cJSON_GetArraySize(g) < 1) { st = MI_FAIL(MI_ERR_FORMAT, "%s: site_groups.%s is not a non-empty array of labels", m->path, g->string); goto done; }
        int k = m->ngroups++;
        snprintf(m->gname[k], sizeof m->gname[k], "%s", g->string);
        const cJSON *s;
        cJSON_ArrayForEach(s, g) {
            int c = cJSON_IsString(s) ? label_index(m, s->valuestring) : -1;
            if (c < 0) { st = MI_FAIL(MI_ERR_FORMAT, "%s: site_groups.%s names '%s', which is not one of the labels", m->path, g->string, cJSON_IsString(s) ? s->valuestring : "(not a string)"); goto done; }
            m->gmember[k][m->gsize[k]++] = m->pos_of_cls[c];
        }
    }
done:
    cJSON_Delete(root);
    return st;
}

mi_status mi_endoqc_model_open(mi_endoqc_model **out, const char *blob, int batch) {
    *out = NULL;
    if (batch < 1) batch = 1;
    mi_endoqc_model *m = calloc(1, sizeof *m);
    if (!m) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", blob);
    snprintf(m->path, sizeof m->path, "%s", blob);
    mi_status st = mi_model_open(&m->net, blob);
    if (st != MI_OK) { free(m); return st; }
    m->ncls = mi_model_num_classes(m->net);
    m->input = mi_model_input_size(m->net);
    m->batch = batch;
    if ((st = mi_session_create(&m->sess, m->net, (int64_t[4]){ batch, 3, m->input, m->input }, 0))) goto fail;
    memcpy(m->mean, mi_model_preprocess(m->net)->mean, sizeof m->mean);
    memcpy(m->std, mi_model_preprocess(m->net)->std, sizeof m->std);
    /* A video frame's field of view is centred and fills the short side: Resize(S) + CenterCrop(S)
     * keeps all of it. A blob trained with torchvision's Resize(S*256/224) + CenterCrop(S) says so
     * in its metadata 'resize', and gets exactly that. */
    m->resize = m->input;
    long long rz;
    if (mi_weights_meta(mi_model_weights(m->net), "resize")) {
        if ((st = mi_weights_meta_int(mi_model_weights(m->net), "resize", m->input, 4096, &rz)) != MI_OK) goto fail;
        m->resize = (int)rz;
    }
    if (m->ncls < 2 || m->ncls > MI_ENDOQC_MAX_SITES) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: %d classes; a site classifier needs 2..%d", blob, m->ncls, MI_ENDOQC_MAX_SITES);
        goto fail;
    }
    for (int i = 0; i < m->ncls; i++) {
        const char *l = mi_model_label(m->net, i);
        snprintf(m->labels[i], sizeof m->labels[i], "%s", l ? l : "");
        if (!l || !*l) { st = MI_FAIL(MI_ERR_FORMAT, "%s: metadata 'labels' does not name class %d", blob, i); goto fail; }
        m->order[i] = i;
        m->pos_of_cls[i] = i;
    }
    const mi_weights *w = mi_model_weights(m->net);
    if (mi_weights_meta(w, "site_order")) {
        char **names = NULL;
        int n = 0;
        if ((st = mi_weights_meta_strings(w, "site_order", &names, &n)) != MI_OK) goto fail;
        bool used[MI_ENDOQC_MAX_SITES] = {0};
        if (n != m->ncls) st = MI_FAIL(MI_ERR_FORMAT, "%s: site_order has %d names for %d classes", blob, n, m->ncls);
        for (int i = 0; st == MI_OK && i < n; i++) {
            int c = label_index(m, names[i]);
            if (c < 0 || used[c]) st = MI_FAIL(MI_ERR_FORMAT, "%s: site_order entry %d '%s' is %s", blob, i + 1, names[i], c < 0 ? "not a label" : "repeated");
            else { used[c] = true; m->order[i] = c; m->pos_of_cls[c] = i; }
        }
        mi_strings_free(names, n);
        if (st != MI_OK) goto fail;
    }
    const char *g = mi_weights_meta(w, "site_groups");
    if (g && (st = parse_groups(m, g)) != MI_OK) goto fail;
    m->min_frames = 2;
    m->min_prob = 0.5;
    m->site_threshold = m->ncls - 4;   /* issue 3: 22 of 26 */
    if ((m->meta_min_frames = mi_weights_meta(w, "endoqc_min_frames") != NULL) &&
        (st = mi_weights_meta_int(w, "endoqc_min_frames", 1, 1000000, &m->min_frames)) != MI_OK) goto fail;
    if ((m->meta_threshold = mi_weights_meta(w, "endoqc_site_threshold") != NULL) &&
        (st = mi_weights_meta_int(w, "endoqc_site_threshold", 0, m->ncls, &m->site_threshold)) != MI_OK) goto fail;
    if ((m->meta_min_prob = mi_weights_meta(w, "endoqc_min_prob") != NULL)) {
        if ((st = mi_weights_meta_double(w, "endoqc_min_prob", &m->min_prob)) != MI_OK) goto fail;
        if (m->min_prob < 0 || m->min_prob > 1) { st = MI_FAIL(MI_ERR_FORMAT, "%s: endoqc_min_prob %g is not in [0, 1]", blob, m->min_prob); goto fail; }
    }
    size_t xs;
    if (mi_mul_overflows((size_t)batch * 3 * m->input, (size_t)m->input * sizeof(float), &xs)) { st = MI_FAIL(MI_ERR_ARG, "batch %d too large", batch); goto fail; }
    m->x = malloc(xs);
    m->logits = malloc((size_t)batch * m->ncls * sizeof(float));
    if (!m->x || !m->logits) { st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory for a batch of %d", blob, batch); goto fail; }
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
    free(m->logits);
    free(m);
}

const char *mi_endoqc_model_sha256(const mi_endoqc_model *m) { return mi_model_weights(m->net)->sha256; }
const mi_weights *mi_endoqc_model_weights(const mi_endoqc_model *m) { return mi_model_weights(m->net); }

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
    size_t  rec[256];                /* their kept_rec indices */
    uint8_t *crops;                  /* their THUMB x THUMB crops (keep_thumbs) */
    bool    resampling;
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
    mi_status st = mi_session_run_n(m->sess, m->x, c->n);
    r->t_classify += now_ms() - t0;
    if (st != MI_OK) return st;
    memcpy(m->logits, mi_session_output(m->sess, "logits", NULL), (size_t)c->n * m->ncls * sizeof *m->logits);
    for (int i = 0; i < c->n; i++) {
        const float *z = m->logits + (size_t)i * m->ncls;
        int best = 0;
        for (int k = 1; k < m->ncls; k++) if (z[k] > z[best]) best = k;
        double den = 0;
        for (int k = 0; k < m->ncls; k++) den += exp((double)z[k] - z[best]);
        float p = (float)(1.0 / den);
        kept_rec *k = &c->kept[c->rec[i]];
        k->cls = (int16_t)best;
        k->prob = p;
        if (c->resampling) r->classified_resample++; else r->classified++;
        if (p < c->r->opts.min_prob) continue;
        mi_endoqc_site *s = &r->sites[m->pos_of_cls[best]];
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
    /* the torchvision transform a hospital's model was trained with: Resize(resize) +
     * CenterCrop(S) of the work frame (whose shorter side is already >= resize), Normalize */
    mi_image img = { (uint8_t *)f->px, f->w, f->h };
    mi_status st = mi_image_preprocess(&img, m->resize, m->input, m->mean, m->std,
                                       m->x + (size_t)c->n * 3 * m->input * m->input);
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

/* First pass: everything streams through once. */
static mi_status first_pass(run_ctx *c) {
    const mi_endoqc_opts *o = c->o;
    mi_endoqc_result *r = c->r;
    uint64_t *ring = calloc((size_t)o->dup_window, sizeof *ring);
    if (!ring) return MI_FAIL(MI_ERR_NOMEM, "out of memory");
    int nring = 0, head = 0, bits = o->hash_size * o->hash_size;
    /* similarity > threshold  <=>  hamming distance < bits * (1 - threshold) */
    double max_dist = bits * (1.0 - o->dup_threshold);
    mi_status st = MI_OK;
    for (;;) {
        mi_video_frame f;
        bool got;
        double t0 = now_ms();
        st = mi_video_read(c->v, &f, &got);
        double t1 = now_ms();
        r->t_decode += t1 - t0;
        if (st != MI_OK || !got) break;
        r->decoded++;
        double luma;
        uint64_t h = ahash(f.px, f.w, f.h, o->hash_size, &luma);
        bool dup = false;
        if (luma < o->dark_level) r->dark++;
        else {
            for (int i = 0; i < nring && !dup; i++) dup = __builtin_popcountll(h ^ ring[i]) < max_dist;
            if (dup) r->duplicates++;
        }
        r->t_dedup += now_ms() - t1;
        progress(c, f.t_ms, false);
        if (luma < o->dark_level || dup) continue;
        ring[head] = h;   /* the oldest kept hash leaves the window */
        head = (head + 1) % o->dup_window;
        if (nring < o->dup_window) nring++;
        if ((st = push_kept(c, &f)) != MI_OK) break;
        r->kept++;
        if ((r->kept - 1) % o->every == 0 && (st = add_to_batch(c, &f, c->nkept - 1)) != MI_OK) break;
    }
    free(ring);
    if (st == MI_OK) st = flush_batch(c);
    return st;
}

/* Second pass over [from, to]: classify the kept frames not classified yet, found by timestamp. */
static mi_status resample_window(run_ctx *c, mi_endoqc_resample *rs) {
    size_t lo = 0;
    while (lo < c->nkept && c->kept[lo].t_ms < rs->from_ms) lo++;
    for (size_t j = lo; j < c->nkept && c->kept[j].t_ms <= rs->to_ms; j++) rs->candidates += c->kept[j].cls < 0;
    if (rs->candidates == 0) return MI_OK;
    int64_t before = c->r->classified_resample;
    c->resampling = true;
    mi_status st = mi_video_seek_ms(c->v, rs->from_ms);
    size_t j = lo;
    while (st == MI_OK) {
        mi_video_frame f;
        bool got;
        double t0 = now_ms();
        st = mi_video_read(c->v, &f, &got);
        c->r->t_decode += now_ms() - t0;
        if (st != MI_OK || !got || f.t_ms > rs->to_ms) break;
        progress(c, f.t_ms, false);
        while (j < c->nkept && c->kept[j].t_ms < f.t_ms) j++;
        if (j == c->nkept || c->kept[j].t_ms > rs->to_ms) break;
        if (c->kept[j].t_ms != f.t_ms || c->kept[j].pts != f.pts || c->kept[j].cls >= 0) continue;
        c->kept[j].cls = 0;   /* taken: a second frame with the same time is not this one */
        st = add_to_batch(c, &f, j);
    }
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

/* Issue 3, step 4: for each group with an unseen site, the window between the nearest sites
 * before and after the group (preset order) that have any agreeing frame. The window is taken
 * wide, from the first frame of the site before to the last of the site after: a misplaced anchor
 * frame only widens it (more frames classified), it never hides the group. */
static mi_status resample_groups(run_ctx *c) {
    mi_endoqc_model *m = c->m;
    mi_endoqc_result *r = c->r;
    int64_t end = r->decoded_until_ms;
    for (int g = 0; g < m->ngroups; g++) {
        mi_endoqc_resample *rs = &r->resample[r->nresample++];
        snprintf(rs->group, sizeof rs->group, "%s", m->gname[g]);
        decide(r);
        int lo = m->ncls, hi = -1;
        bool seen_before[MI_ENDOQC_MAX_SITES];
        for (int k = 0; k < m->gsize[g]; k++) {
            int p = m->gmember[g][k];
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
        for (int k = 0; k < m->gsize[g]; k++) {
            int p = m->gmember[g][k];
            if (r->sites[p].seen && !seen_before[p])
                set_str(rs->recovered[rs->nrecovered++], 64, r->sites[p].label);
        }
    }
    return MI_OK;
}

/* Options <= 0 / < 0 take the blob's metadata value, else the built-in default. */
static void resolve(const mi_endoqc_model *m, mi_endoqc_opts *o, char source[3][16]) {
    snprintf(source[0], 16, "%s", o->min_frames > 0 ? "option" : m->meta_min_frames ? "metadata" : "default");
    snprintf(source[1], 16, "%s", o->min_prob >= 0 ? "option" : m->meta_min_prob ? "metadata" : "default");
    snprintf(source[2], 16, "%s", o->site_threshold >= 0 ? "option" : m->meta_threshold ? "metadata" : "default");
    if (o->min_frames <= 0) o->min_frames = (int)m->min_frames;
    if (o->min_prob < 0) o->min_prob = m->min_prob;
    if (o->site_threshold < 0) o->site_threshold = (int)m->site_threshold;
}

void mi_endoqc_settings(const mi_endoqc_model *m, const mi_endoqc_opts *in, char *buf, size_t n) {
    mi_endoqc_opts o = *in;
    char source[3][16];
    resolve(m, &o, source);
    snprintf(buf, n, "every=%d hash=%d dup=%.4f window=%d dark=%d min_frames=%d min_prob=%.4f threshold=%d "
             "resample=%d resize=%d input=%d", o.every, o.hash_size, o.dup_threshold, o.dup_window, o.dark_level,
             o.min_frames, o.min_prob, o.site_threshold, o.resample, m->resize, m->input);
}

mi_status mi_endoqc_run(mi_endoqc_model *m, const char *video, const mi_endoqc_opts *o_in, mi_endoqc_result *r) {
    memset(r, 0, sizeof *r);
    double t_start = now_ms();
    mi_endoqc_opts o = *o_in;
    if (o.every < 1 || o.hash_size < 2 || o.hash_size > 8 || o.dup_window < 1 || !(o.dup_threshold >= 0 && o.dup_threshold <= 1))
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
    r->input_size = m->input;
    r->batch = m->batch;
    r->nsites = m->ncls;
    for (int i = 0; i < m->ncls; i++) {
        mi_endoqc_site *s = &r->sites[i];
        snprintf(s->label, sizeof s->label, "%s", m->labels[m->order[i]]);
        s->cls = m->order[i];
        s->first_ms = s->last_ms = s->best_ms = -1;
    }

    double t0 = now_ms();
    struct stat sb;
    if (stat(video, &sb) != 0) return MI_FAIL(MI_ERR_IO, "%s: no such file", video);
    r->video_bytes = sb.st_size;
    if (o.known_sha256) snprintf(r->video_sha256, sizeof r->video_sha256, "%.64s", o.known_sha256);
    else if (mi_sha256_file(video, r->video_sha256) != 0) return MI_FAIL(MI_ERR_IO, "%s: cannot read", video);
    r->t_hash_file = now_ms() - t0;

    run_ctx c = { .m = m, .r = r, .o = &o };
    /* work frames: shorter side max(160, S): the classifier's Resize(S) starts from at least S,
     * and thumbnails for the contact sheet stay 160 px whatever the model's input size */
    mi_status st = mi_video_open(&c.v, video, m->resize > THUMB ? m->resize : THUMB);
    if (st != MI_OK) return st;
    r->info = *mi_video_get_info(c.v);
    if (o.keep_thumbs && !(c.crops = malloc((size_t)m->batch * THUMB * THUMB * 3))) {
        st = MI_FAIL(MI_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = first_pass(&c)) != MI_OK) goto done;
    r->decoded_until_ms = mi_video_last_ms(c.v);
    r->bad_packets = mi_video_bad_packets(c.v);
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
    cJSON *missing = cJSON_CreateArray();
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
        if (!s->seen) cJSON_AddItemToArray(missing, cJSON_CreateString(s->label));
    }
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
