/* tools/endoqc_synth.c - `medinfer endoqc-synth`: a seeded synthetic gastroscopy video, and the
 * training frames for the demo site classifier, from one renderer.
 *
 * No clinical video may be shipped, so the demo and the tests use this: 26 visually distinct
 * synthetic "sites" (one colour of seven x one mucosal pattern of four: folds as stripes, spots,
 * rings around the lumen, a vessel mesh), each with a dark lumen and the endoscope's circular
 * field of view and light fall-off, visited in the guideline order (pipelines/endoqc/sites.c) along a slowly
 * drifting, zooming, rotating camera path. Between sites the view cross-fades. Seeded events make
 * it behave like a real recording: frozen stretches (exact duplicate frames), motion-blur bursts,
 * and dark frames (the tip against the wall). --skip leaves sites out (an incomplete exam);
 * --brief passes sites quickly (few distinct frames: what every-k-th sampling can miss).
 *
 * --dump writes what the classifier sees instead: random poses of each site through the same
 * renderer and the same area-averaging down-scale as the decoder (pipelines/io/video.c), as PPM
 * crops plus labels.csv, for tools/train_sites.py. */
#include "tools/cli.h"
#include "pipelines/io/video.h"
#include "pipelines/endoqc/sites.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NSITES MI_ENDOQC_NSITES

/* ---- seeded randomness (xorshift64*, identical on every platform) -------------------------- */
typedef struct { uint64_t s; } rng;
static uint64_t rng_next(rng *r) {
    r->s ^= r->s >> 12; r->s ^= r->s << 25; r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}
static double rng_unif(rng *r) { return (double)(rng_next(r) >> 11) / 9007199254740992.0; }
static double rng_range(rng *r, double a, double b) { return a + (b - a) * rng_unif(r); }

/* ---- how each site looks ------------------------------------------------------------------ */
typedef struct {
    float base[3];      /* mucosa colour */
    int   pattern;      /* 0 stripes (folds), 1 spots, 2 rings about the lumen, 3 vessel mesh */
    float freq, angle;  /* pattern frequency (per view height) and direction */
    float lx, ly, lr;   /* lumen centre and radius, in site coordinates */
    float fold;         /* direction of the large fold shading (what an 8x8 hash mostly sees) */
} site_look;

static void site_look_init(site_look *s, int i) {
    static const float palette[7][3] = {
        {0.95f, 0.50f, 0.52f}, {0.96f, 0.66f, 0.30f}, {0.88f, 0.84f, 0.36f}, {0.46f, 0.80f, 0.44f},
        {0.36f, 0.76f, 0.86f}, {0.46f, 0.50f, 0.96f}, {0.78f, 0.44f, 0.90f},
    };
    memcpy(s->base, palette[i / 4], sizeof s->base);
    s->pattern = i % 4;
    s->freq = 4.0f + (float)((i * 7) % 5);
    s->angle = 0.7f * (float)i;
    s->lx = 0.28f * cosf(2.4f * (float)i);
    s->ly = 0.22f * sinf(2.4f * (float)i);
    s->lr = 0.17f + 0.03f * (float)(i % 3);
    s->fold = 1.3f * (float)i + 0.5f;
}

typedef struct {
    float cu, cv, zoom, rot;   /* camera: view centre in site coordinates, scale, rotation */
    float bright, blur;        /* global brightness, box-blur radius in render pixels */
} pose;

/* Renders site s seen from pose p into rgb (rw x rh), as float then quantized by the caller. */
static void render_site(float *out, int rw, int rh, const site_look *s, const pose *p) {
    const float twopi = 6.2831853f, cr = cosf(p->rot), sr = sinf(p->rot);
    #pragma omp parallel for schedule(static)
    for (int y = 0; y < rh; y++) {
        for (int x = 0; x < rw; x++) {
            float sx = ((float)x + 0.5f - 0.5f * (float)rw) / (float)rh;
            float sy = ((float)y + 0.5f - 0.5f * (float)rh) / (float)rh;
            float rs2 = (sx * sx + sy * sy) / (0.47f * 0.47f);  /* 1 at the edge of the field of view */
            float *o = out + ((size_t)y * rw + x) * 3;
            if (rs2 > 1.0f) { o[0] = o[1] = o[2] = 0; continue; }
            float u = p->cu + p->zoom * (cr * sx - sr * sy), v = p->cv + p->zoom * (sr * sx + cr * sy);
            float q;
            switch (s->pattern) {
            case 0: q = 0.5f + 0.5f * sinf(twopi * s->freq * (u * cosf(s->angle) + v * sinf(s->angle))); break;
            case 1: {
                float gu = u * s->freq - floorf(u * s->freq) - 0.5f, gv = v * s->freq - floorf(v * s->freq) - 0.5f;
                q = expf(-(gu * gu + gv * gv) * 14.0f);
                break;
            }
            case 2: q = 0.5f + 0.5f * sinf(twopi * s->freq * sqrtf((u - s->lx) * (u - s->lx) + (v - s->ly) * (v - s->ly)));
                    break;
            default: q = fabsf(sinf(twopi * s->freq * u) * sinf(twopi * s->freq * 0.8f * v)); break;
            }
            float d = sqrtf((u - s->lx) * (u - s->lx) + (v - s->ly) * (v - s->ly));
            float t = (d - 0.6f * s->lr) / (0.8f * s->lr);
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            float lumen = 0.10f + 0.90f * t * t * (3 - 2 * t);
            float fold = 0.72f + 0.28f * sinf(twopi * 0.9f * (u * cosf(s->fold) + v * sinf(s->fold)));
            float light = p->bright * (1.08f - 0.40f * rs2) * lumen * fold * (0.45f + 0.55f * q);
            for (int c = 0; c < 3; c++) o[c] = s->base[c] * light;
        }
    }
}

static void box_blur(float *img, float *tmp, int w, int h, int r) {
    if (r <= 0) return;
    for (int pass = 0; pass < 2; pass++) {   /* horizontal into tmp, then vertical back */
        const float *src = pass ? tmp : img;
        float *dst = pass ? img : tmp;
        #pragma omp parallel for schedule(static)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                float acc[3] = {0, 0, 0};
                int n = 0;
                for (int k = -r; k <= r; k++) {
                    int xx = pass ? x : x + k, yy = pass ? y + k : y;
                    if (xx < 0 || xx >= w || yy < 0 || yy >= h) continue;
                    const float *p = src + ((size_t)yy * w + xx) * 3;
                    acc[0] += p[0]; acc[1] += p[1]; acc[2] += p[2];
                    n++;
                }
                float *o = dst + ((size_t)y * w + x) * 3;
                o[0] = acc[0] / n; o[1] = acc[1] / n; o[2] = acc[2] / n;
            }
    }
}

/* float [0,1] -> RGB8 with seeded sensor noise (amplitude in 1/255 units) */
static void quantize(uint8_t *px, const float *f, size_t n, uint64_t seed, float noise) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        h ^= h >> 31; h *= 0xBF58476D1CE4E5B9ull; h ^= h >> 29;
        float z = ((float)(h & 0xffff) / 65535.0f - 0.5f) * 2.0f * noise;
        float v = f[i] * 255.0f + (f[i] > 0 ? z : 0);
        px[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f);
    }
}

/* ---- the camera path ---------------------------------------------------------------------- */
typedef struct {
    int    w, h, fps, crf, rw, rh;
    double dwell_s, brief_s, transit_s;
    bool   skip[NSITES], brief[NSITES], events;
    uint64_t seed;
    /* --duration: exact frame counts instead of dwell_s. dwell_frames[i] frames at site i, frozen
     * stretches included (they replace frames rather than add to them), so the video has exactly
     * the frames asked for. NULL: dwell_s varied by the seed, frozen frames added on top. */
    const int *dwell_frames;
} synth_opts;

typedef struct { float a0, b0, ph[4], sp; } wander;   /* per-site seeded camera wander */

static pose pose_at(const wander *wd, double t, float speed) {
    pose p;
    /* two incommensurate sines per axis: the camera never rests for long, as a real one does not */
    float a = (float)(speed * t);
    p.cu = wd->a0 + 0.20f * sinf(0.55f * a + wd->ph[0]) + 0.08f * sinf(1.70f * a + wd->ph[2]);
    p.cv = wd->b0 + 0.16f * sinf(0.47f * a + wd->ph[1]) + 0.07f * sinf(1.30f * a + wd->ph[3]);
    p.zoom = 1.0f + 0.22f * sinf(0.35f * a + wd->ph[2]);
    p.rot = 0.40f * sinf(0.29f * a + wd->ph[3]);
    p.bright = 1.0f;
    p.blur = 0;
    return p;
}

typedef struct {
    mi_video_writer *vw;
    const synth_opts *o;
    float *fa, *fb, *tmp;       /* render-size float frames: site A, site B (cross-fade), scratch */
    uint8_t *small, *big;       /* quantized render-size frame, and at the output size */
    int64_t nframes;
    rng r;
} renderer;

static mi_status emit(renderer *R, const float *f, int repeat) {
    const synth_opts *o = R->o;
    size_t n = (size_t)o->rw * o->rh * 3;
    quantize(R->small, f, n, o->seed * 1000003u + (uint64_t)R->nframes, 3.0f);
    const uint8_t *px = R->small;
    if (o->rw != o->w || o->rh != o->h) {
        mi_status st = mi_rgb_resize(R->big, o->w, o->h, R->small, o->rw, o->rh);
        if (st != MI_OK) return st;
        px = R->big;
    }
    for (int i = 0; i < repeat; i++) {   /* a frozen stretch: the very same frame again */
        mi_status st = mi_video_writer_add(R->vw, px);
        if (st != MI_OK) return st;
        R->nframes++;
    }
    return MI_OK;
}

static void render_pose(renderer *R, float *out, const site_look *s, pose p) {
    render_site(out, R->o->rw, R->o->rh, s, &p);
    if (p.blur > 0) box_blur(out, R->tmp, R->o->rw, R->o->rh, (int)p.blur);
}

static mi_status render_video(const char *path, const synth_opts *o, FILE *truth) {
    renderer R = { .o = o, .r = { o->seed * 0x9E3779B97F4A7C15ull + 0x1234567ull } };
    size_t n = (size_t)o->rw * o->rh * 3;
    R.fa = malloc(n * sizeof(float));
    R.fb = malloc(n * sizeof(float));
    R.tmp = malloc(n * sizeof(float));
    R.small = malloc(n);
    R.big = malloc((size_t)o->w * o->h * 3);
    mi_status st = MI_OK;
    if (!R.fa || !R.fb || !R.tmp || !R.small || !R.big) { st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path); goto done; }
    if ((st = mi_video_writer_open(&R.vw, path, o->w, o->h, o->fps, o->crf)) != MI_OK) goto done;
    if (truth) fprintf(truth, "site,label,rendered,first_ms,last_ms,frozen_frames\n");

    site_look looks[NSITES];
    wander wd[NSITES];
    for (int i = 0; i < NSITES; i++) {
        site_look_init(&looks[i], i);
        wd[i].a0 = (float)rng_range(&R.r, -0.12, 0.12);   /* inside the poses the classifier trained on */
        wd[i].b0 = (float)rng_range(&R.r, -0.12, 0.12);
        for (int k = 0; k < 4; k++) wd[i].ph[k] = (float)rng_range(&R.r, 0, 6.2831853);
    }
    int prev = -1;
    pose prev_pose = {0};
    for (int i = 0; i < NSITES && st == MI_OK; i++) {
        if (o->skip[i]) {
            if (truth) fprintf(truth, "%d,%s,0,-1,-1,0\n", i + 1, mi_endoqc_site_names[i]);
            continue;
        }
        double dwell = o->brief[i] ? o->brief_s : o->dwell_s * rng_range(&R.r, 0.85, 1.15);
        float speed = o->brief[i] ? 8.0f : 4.0f;   /* passing quickly: the view changes fast */
        int nd = (int)(dwell * o->fps + 0.5), nt = prev < 0 ? 0 : (int)(o->transit_s * o->fps + 0.5);
        if (o->dwell_frames) nd = o->dwell_frames[i];
        /* cross-fade from where the camera left the previous site */
        for (int f = 0; f < nt && st == MI_OK; f++) {
            float a = (float)(f + 1) / (float)(nt + 1);
            render_pose(&R, R.fa, &looks[prev], prev_pose);
            pose pb = pose_at(&wd[i], 0, speed);
            render_pose(&R, R.fb, &looks[i], pb);
            float dip = 1.0f - 0.5f * sinf(3.14159265f * a);   /* the view swings: light dips */
            for (size_t k = 0; k < n; k++) R.fa[k] = dip * ((1 - a) * R.fa[k] + a * R.fb[k]);
            st = emit(&R, R.fa, 1);
        }
        int64_t first = R.nframes;
        /* seeded events inside the dwell: one frozen stretch, one blur burst, one dark burst */
        int freeze_at = -1, freeze_len = 0, blur_at = -1, blur_len = 0, dark_at = -1, dark_len = 0;
        if (o->events && !o->brief[i]) {
            if (rng_unif(&R.r) < 0.4) { freeze_at = (int)(rng_range(&R.r, 0.2, 0.8) * nd); freeze_len = (int)(rng_range(&R.r, 0.8, 2.0) * o->fps); }
            if (rng_unif(&R.r) < 0.35) { blur_at = (int)(rng_range(&R.r, 0.1, 0.8) * nd); blur_len = (int)(0.4 * o->fps); }
            if (rng_unif(&R.r) < 0.3) { dark_at = (int)(rng_range(&R.r, 0.1, 0.8) * nd); dark_len = (int)(rng_range(&R.r, 0.25, 0.6) * o->fps); }
        }
        pose p = {0};
        int frozen = 0;
        for (int f = 0; f < nd && st == MI_OK;) {
            p = pose_at(&wd[i], (double)f / o->fps, speed);
            if (f >= blur_at && f < blur_at + blur_len) p.blur = 2.0f + (float)(f - blur_at) / 3.0f;
            if (f >= dark_at && f < dark_at + dark_len) p.bright = 0.05f;
            render_pose(&R, R.fa, &looks[i], p);
            int repeat = f == freeze_at ? 1 + freeze_len : 1;
            if (o->dwell_frames && repeat > nd - f) repeat = nd - f;
            frozen += repeat - 1;
            st = emit(&R, R.fa, repeat);
            f += o->dwell_frames ? repeat : 1;
        }
        int64_t last = R.nframes - 1;
        if (truth)
            fprintf(truth, "%d,%s,1,%lld,%lld,%d\n", i + 1, mi_endoqc_site_names[i],
                    (long long)(first * 1000 / o->fps), (long long)(last * 1000 / o->fps), frozen);
        prev = i;
        prev_pose = p;
        prev_pose.blur = 0;
        prev_pose.bright = 1;
    }
    mi_status cst = mi_video_writer_close(R.vw);
    if (st == MI_OK) st = cst;
done:
    free(R.fa); free(R.fb); free(R.tmp); free(R.small); free(R.big);
    return st;
}

/* ---- training frames ---------------------------------------------------------------------- */
static mi_status write_ppm(const char *path, const uint8_t *px, int w, int h) {
    FILE *f = fopen(path, "wb");
    if (!f) return MI_FAIL(MI_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    fprintf(f, "P6\n%d %d\n255\n", w, h);
    size_t n = fwrite(px, 1, (size_t)w * h * 3, f);
    if (fclose(f) != 0 || n != (size_t)w * h * 3) return MI_FAIL(MI_ERR_IO, "%s: write failed", path);
    return MI_OK;
}

static mi_status dump_frames(const char *dir, const synth_opts *o, int per_site, int crop) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return MI_FAIL(MI_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    int ws = crop, ww = (int)((double)o->rw * crop / o->rh + 0.5);   /* the decoder's work size */
    size_t n = (size_t)o->rw * o->rh * 3;
    float *f = malloc(n * sizeof(float)), *tmp = malloc(n * sizeof(float));
    uint8_t *q = malloc(n), *work = malloc((size_t)ww * ws * 3), *c = malloc((size_t)crop * crop * 3);
    char path[1024];
    snprintf(path, sizeof path, "%s/labels.csv", dir);
    FILE *csv = fopen(path, "w");
    mi_status st = MI_OK;
    if (!f || !tmp || !q || !work || !c) { st = MI_FAIL(MI_ERR_NOMEM, "out of memory"); goto done; }
    if (!csv) { st = MI_FAIL(MI_ERR_IO, "%s: cannot create: %s", path, strerror(errno)); goto done; }
    fprintf(csv, "file,site,label\n");
    rng r = { o->seed * 0x9E3779B97F4A7C15ull + 99 };
    renderer R = { .o = o, .tmp = tmp };
    for (int i = 0; i < NSITES && st == MI_OK; i++) {
        site_look look;
        site_look_init(&look, i);
        for (int k = 0; k < per_site && st == MI_OK; k++) {
            pose p = { (float)rng_range(&r, -0.4, 0.4), (float)rng_range(&r, -0.35, 0.35),
                       (float)rng_range(&r, 0.75, 1.3), (float)rng_range(&r, -0.45, 0.45),
                       (float)rng_range(&r, 0.55, 1.25), 0 };
            if (rng_unif(&r) < 0.3) p.blur = (float)(1 + (int)(rng_unif(&r) * 4));
            render_pose(&R, f, &look, p);
            quantize(q, f, n, rng_next(&r), 3.0f);
            if ((st = mi_rgb_resize(work, ww, ws, q, o->rw, o->rh)) != MI_OK) break;
            int x0 = (ww - crop) / 2;
            for (int y = 0; y < crop; y++) memcpy(c + (size_t)y * crop * 3, work + ((size_t)y * ww + x0) * 3, (size_t)crop * 3);
            snprintf(path, sizeof path, "%s/s%02d_%04d.ppm", dir, i + 1, k);
            st = write_ppm(path, c, crop, crop);
            fprintf(csv, "s%02d_%04d.ppm,%d,%s\n", i + 1, k, i, mi_endoqc_site_names[i]);
        }
    }
done:
    if (csv) fclose(csv);
    free(f); free(tmp); free(q); free(work); free(c);
    return st;
}

/* "17-20,3" or "fundus,1" -> flags; 1-based guideline numbers, or the site-group names (fundus, antrum) */
static int parse_sites(const char *s, bool *flags) {
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        if (n == 6 && !strncmp(s, "fundus", 6)) for (int i = 16; i < 20; i++) flags[i] = true;
        else if (n == 6 && !strncmp(s, "antrum", 6)) for (int i = 2; i < 6; i++) flags[i] = true;
        else {
            char *end;
            long a = strtol(s, &end, 10), b = a;
            if (end == s) return -1;
            if (*end == '-') { const char *t = end + 1; b = strtol(t, &end, 10); if (end == t) return -1; }
            if (end != s + n || a < 1 || b > NSITES || a > b) return -1;
            for (long i = a; i <= b; i++) flags[i - 1] = true;
        }
        s += n + (comma != NULL);
    }
    return 0;
}

static void synth_usage(FILE *f) {
    fprintf(f,
        "usage: medinfer endoqc-synth --out VIDEO.mp4 [options]     a synthetic gastroscopy video\n"
        "       medinfer endoqc-synth --dump DIR [--per-site N]     classifier training frames\n\n"
        "  --seed N          everything random follows from it (default 1)\n"
        "  --size WxH        video size (default 384x288; even numbers)\n"
        "  --fps N           frame rate (default 25)\n"
        "  --dwell S         seconds at each site (default 4.0; varied +-15%% by the seed)\n"
        "  --duration S      instead of --dwell: a video of exactly S seconds, the sites sharing it\n"
        "                    evenly (frozen stretches included)\n"
        "  --skip LIST       sites never shown, 1-based guideline numbers: 17-20,3 or fundus/antrum\n"
        "  --brief LIST      sites passed quickly (--brief-s seconds each, default 0.6)\n"
        "  --no-events       no frozen stretches, blur or dark frames\n"
        "  --truth CSV       what was rendered where: site, label, rendered, first_ms, last_ms,\n"
        "                    frozen_frames (exact repeats of the frame before)\n"
        "  --crf N           x264 quality (default 23)\n"
        "  --per-site N      --dump: frames per site (default 150)\n"
        "  --crop N          --dump: crop size as the decoder's work image has it (default 160)\n");
}

/* A number in [lo, hi], all of v (no atoi: "25x" or "" must not quietly become 25 or 0). */
static bool parse_num(const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) return false;
    *out = x;
    return true;
}

static bool parse_int(const char *v, int lo, int hi, int *out) {
    double x;
    if (!parse_num(v, lo, hi, &x) || x != (int)x) return false;
    *out = (int)x;
    return true;
}

/* --duration: frames per site so that the video has exactly round(duration * fps) frames: the
 * transitions and brief passes as usual, what is left shared evenly by the other shown sites. */
static int plan_duration(synth_opts *o, double duration, int dwell_frames[NSITES]) {
    int64_t total = (int64_t)(duration * o->fps + 0.5), fixed = 0;
    int shown = 0, normal = 0;
    for (int i = 0; i < NSITES; i++) {
        if (o->skip[i]) continue;
        if (shown++) fixed += (int64_t)(o->transit_s * o->fps + 0.5);
        if (o->brief[i]) fixed += (int64_t)(o->brief_s * o->fps + 0.5);
        else normal++;
    }
    /* at least half a second per site: fewer frames could not show a site at all */
    int64_t min_dwell = (o->fps + 1) / 2, need = fixed + normal * min_dwell;
    if (normal == 0 || total < need) {
        fprintf(stderr, "medinfer endoqc-synth: --duration %g: %s\n", duration, normal == 0
                ? "every site is skipped or brief; use --dwell" : "too short for the sites shown");
        if (normal) fprintf(stderr, "  %d sites with transitions and brief passes need at least %.1f s at %d fps\n",
                            shown, (double)need / o->fps, o->fps);
        return -1;
    }
    int64_t rest = total - fixed;
    for (int i = 0, k = 0; i < NSITES; i++)
        dwell_frames[i] = o->skip[i] ? 0
                        : o->brief[i] ? (int)(o->brief_s * o->fps + 0.5)   /* as without --duration */
                        : (int)(rest / normal + (k++ < rest % normal));
    o->dwell_frames = dwell_frames;
    return 0;
}

int cmd_endoqc_synth(int argc, char **argv) {
    synth_opts o = { .w = 384, .h = 288, .fps = 25, .crf = 23, .dwell_s = 4.0, .brief_s = 0.6,
                     .transit_s = 0.5, .events = true, .seed = 1 };
    const char *out = NULL, *dump = NULL, *truth_path = NULL;
    double duration = 0, seed = 1;
    int per_site = 150, crop = 160;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool has = v != NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { synth_usage(stdout); return MI_EXIT_OK; }
        else if (!strcmp(a, "--no-events")) { o.events = false; continue; }
        if (!has) { fprintf(stderr, "medinfer endoqc-synth: %s needs a value\n", a); return MI_EXIT_USAGE; }
        i++;
        int bad = 0;
        if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--dump")) dump = v;
        else if (!strcmp(a, "--truth")) truth_path = v;
        else if (!strcmp(a, "--seed")) bad = !parse_num(v, 0, 9007199254740992.0, &seed) || seed != floor(seed);
        else if (!strcmp(a, "--size")) {
            char tail;
            bad = sscanf(v, "%dx%d%c", &o.w, &o.h, &tail) != 2 || o.w < 16 || o.h < 16 || o.w > 8192 || o.h > 8192 || (o.w | o.h) & 1;
        }
        else if (!strcmp(a, "--fps")) bad = !parse_int(v, 1, 240, &o.fps);
        else if (!strcmp(a, "--dwell")) bad = !parse_num(v, 0.04, 3600, &o.dwell_s);
        else if (!strcmp(a, "--duration")) bad = !parse_num(v, 0.04, 86400, &duration);
        else if (!strcmp(a, "--brief-s")) bad = !parse_num(v, 0.04, 3600, &o.brief_s);
        else if (!strcmp(a, "--crf")) bad = !parse_int(v, 0, 51, &o.crf);
        else if (!strcmp(a, "--per-site")) bad = !parse_int(v, 1, 1000000, &per_site);
        else if (!strcmp(a, "--crop")) bad = !parse_int(v, 16, 4096, &crop);
        else if (!strcmp(a, "--skip")) bad = parse_sites(v, o.skip);
        else if (!strcmp(a, "--brief")) bad = parse_sites(v, o.brief);
        else { fprintf(stderr, "medinfer endoqc-synth: unknown option %s\n", a); synth_usage(stderr); return MI_EXIT_USAGE; }
        if (bad) { fprintf(stderr, "medinfer endoqc-synth: bad value for %s: '%s'\n", a, v); return MI_EXIT_USAGE; }
    }
    o.seed = (uint64_t)seed;
    if (!out == !dump) { synth_usage(stderr); return MI_EXIT_USAGE; }
    /* render at most ~400 px wide and let the area/bilinear up-scale fill HD sizes: the
     * synthetic scenes have no finer detail, and rendering 720p per pixel would be the slowest
     * part of the benchmark */
    int div = 1;
    while (o.w / div > 400 && o.w % (2 * div) == 0 && o.h % (2 * div) == 0) div *= 2;
    o.rw = o.w / div;
    o.rh = o.h / div;
    if (dump) {
        if (dump_frames(dump, &o, per_site, crop) != MI_OK) return mi_cli_error("endoqc-synth");
        fprintf(stderr, "endoqc-synth: wrote %d frames per site (%dx%d) to %s\n", per_site, crop, crop, dump);
        return MI_EXIT_OK;
    }
    int dwell_frames[NSITES];
    if (duration > 0 && plan_duration(&o, duration, dwell_frames) != 0) return MI_EXIT_USAGE;
    FILE *truth = NULL;
    if (truth_path && !(truth = fopen(truth_path, "w"))) {
        fprintf(stderr, "medinfer endoqc-synth: %s: cannot create: %s\n", truth_path, strerror(errno));
        return MI_EXIT_FAIL;
    }
    mi_status st = render_video(out, &o, truth);
    if (truth) fclose(truth);
    if (st != MI_OK) return mi_cli_error("endoqc-synth");
    return MI_EXIT_OK;
}
