/* pipelines/io/slide.c - whole-slide images (OpenSlide) and the PNG/JPEG fallback (stb, through
 * pipelines/io/image.c); see slide.h for the coordinate model, memory and threads.
 *
 * Resampling. A read at ds from a level of downsample d (d <= ds) is an area average: output
 * pixel i covers [i*r, (i+1)*r) in level pixels (r = ds/d, counted from the read's origin), and is
 * the mean of the level pixels under it, each weighted by the fraction of it inside (the first and
 * last partly, those between whole). This is PIL's Image.reduce / OpenCV's INTER_AREA for integer
 * r, generalised to fractional r, and it is what tests/ref_slide.py computes in numpy. Sums are in
 * double; the result is rounded half up.
 *
 * Origins. OpenSlide takes integer level-0 coordinates and places a read at level coordinate
 * x/d itself, so every read here starts at an integer level-0 coordinate and our arithmetic
 * counts level pixels from there: for the usual power-of-two pyramids (generic TIFF, NDPI, MRXS)
 * that is exact; for downsamples like Aperio's 4.0007 OpenSlide shifts the level's pixels by a
 * fraction of a pixel, the same for anyone who reads through it.
 *
 * Bands. A read holds at most MI_SLIDE_READ_PIXELS level pixels: the output is produced in bands
 * of rows, each from its own openslide_read_region whose rows start at the integer level-0
 * coordinate at or above the band's first output row. Level rows that straddle two bands are read
 * by both and each band takes only its share of them, so banding does not change the result. */
#include "pipelines/io/slide.h"
#include "pipelines/io/tiffcheck.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openslide.h>

struct mi_slide {
    char         *path;
    openslide_t  *osr;       /* NULL on the stb path */
    mi_image      img;       /* the decoded PNG/JPEG/BMP on the stb path */
    mi_slide_info info;
};

/* A level's downsample "equals" or "is below" ds within this relative tolerance: scanners write
 * level sizes rounded to whole pixels, so their downsamples are a hair off the nominal 4, 16, ... */
#define DS_TOL 1e-3

/* ---- properties ---------------------------------------------------------------------------- */

/* A number that is the whole of s (no leading or trailing junk; C locale decimal point, as
 * OpenSlide writes them with g_ascii_dtostr), finite and > 0. */
static bool parse_positive(const char *s, double *v) {
    if (!s || !*s) return false;
    for (const char *p = s; *p; p++)  /* strtod would also take hex, "inf", "nan", spaces */
        if (!strchr("0123456789.eE+-", *p)) return false;
    char *end = NULL;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || *end || errno == ERANGE || !isfinite(x) || !(x > 0)) return false;
    *v = x;
    return true;
}

static bool mpp_sane(double m) { return m >= MI_SLIDE_MPP_MIN && m <= MI_SLIDE_MPP_MAX; }

static void say(char *source, size_t n, const char *fmt, const char *a, const char *b) {
    if (source && n) snprintf(source, n, fmt, a ? a : "", b ? b : "");
}

mi_status mi_slide_parse_mpp(const char *mpp_x, const char *mpp_y, const char *xres, const char *yres,
                             const char *res_unit, double *out_mpp_x, double *out_mpp_y,
                             char *source, size_t n) {
    *out_mpp_x = *out_mpp_y = 0;
    double mx, my;
    if (mpp_x || mpp_y) {  /* the scanner's own statement wins over TIFF tags */
        if (!mpp_x || !mpp_y) {
            say(source, n, "openslide.mpp-x '%s' / openslide.mpp-y '%s': one of them is missing", mpp_x, mpp_y);
            return MI_FAIL(MI_ERR_FORMAT, "openslide.mpp-x '%s' / openslide.mpp-y '%s': one of them is missing",
                           mpp_x ? mpp_x : "", mpp_y ? mpp_y : "");
        }
        if (!parse_positive(mpp_x, &mx) || !parse_positive(mpp_y, &my) || !mpp_sane(mx) || !mpp_sane(my)) {
            say(source, n, "openslide.mpp-x '%.40s' / openslide.mpp-y '%.40s' is not a microns-per-pixel "
                "value in [0.01, 100]", mpp_x, mpp_y);
            return MI_FAIL(MI_ERR_FORMAT, "openslide.mpp-x '%.40s' / openslide.mpp-y '%.40s' is not a "
                           "microns-per-pixel value in [%g, %g]", mpp_x, mpp_y, MI_SLIDE_MPP_MIN, MI_SLIDE_MPP_MAX);
        }
        *out_mpp_x = mx;
        *out_mpp_y = my;
        say(source, n, "openslide.mpp-x/-y%s%s", NULL, NULL);
        return MI_OK;
    }
    if (!xres && !yres) {
        say(source, n, "unknown: the file states no resolution%s%s", NULL, NULL);
        return MI_OK;
    }
    /* TIFF: pixels per ResolutionUnit. Unit "none" (TIFF's default, what a writer leaves when it
     * knows no physical size) or anything else says nothing about microns. */
    double um_per_unit;
    if (res_unit && !strcmp(res_unit, "centimeter")) um_per_unit = 1e4;
    else if (res_unit && !strcmp(res_unit, "inch")) um_per_unit = 25400;
    else {
        say(source, n, "unknown: tiff.ResolutionUnit is '%.40s'%s, not centimeter or inch",
            res_unit ? res_unit : "(absent)", NULL);
        return MI_OK;
    }
    double rx, ry;
    if (!xres || !yres || !parse_positive(xres, &rx) || !parse_positive(yres, &ry) ||
        !mpp_sane(um_per_unit / rx) || !mpp_sane(um_per_unit / ry)) {
        say(source, n, "tiff.XResolution '%.40s' / tiff.YResolution '%.40s' gives no microns-per-pixel "
            "value in [0.01, 100]", xres, yres);
        return MI_FAIL(MI_ERR_FORMAT, "tiff.XResolution '%.40s' / tiff.YResolution '%.40s' (per %s) gives no "
                       "microns-per-pixel value in [%g, %g]", xres ? xres : "", yres ? yres : "", res_unit,
                       MI_SLIDE_MPP_MIN, MI_SLIDE_MPP_MAX);
    }
    *out_mpp_x = um_per_unit / rx;
    *out_mpp_y = um_per_unit / ry;
    say(source, n, "tiff.XResolution/YResolution per %s%s", res_unit, NULL);
    return MI_OK;
}

/* ---- pixels -------------------------------------------------------------------------------- */

/* PIL's exact division by 255 with rounding (libImaging's DIV255), as its paste-with-mask uses. */
static inline unsigned div255(unsigned v) {
    unsigned t = v + 128;
    return ((t >> 8) + t) >> 8;
}

void mi_slide_argb_to_rgb(uint8_t *rgb, const uint32_t *argb, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t v = argb[i];  /* read before rgb[3i..3i+2] may overwrite it (in place) */
        unsigned a = v >> 24, c[3] = { (v >> 16) & 255, (v >> 8) & 255, v & 255 };
        for (int k = 0; k < 3; k++) {
            unsigned o;
            if (a == 255) o = c[k];
            else if (a == 0) o = 255;
            else {
                /* argb2rgba un-premultiplies into a uint8_t: a premultiplied value above its alpha
                 * (corrupt data) wraps there, and so here; then the composite on white. */
                unsigned u = (255 * c[k] / a) & 255;
                o = div255(255 * (255 - a) + u * a);
            }
            rgb[3 * i + k] = (uint8_t)o;
        }
    }
}

/* w x h level pixels whose first one is at level coordinate (x/d, y/d) (x, y level-0, integers),
 * as RGB8 into buf (w*h*4 bytes, used as ARGB first). Outside the slide: white. */
static mi_status fetch(const mi_slide *s, int level, int64_t x, int64_t y, int64_t w, int64_t h, uint8_t *buf) {
    if (s->osr) {
        uint32_t *argb = (uint32_t *)(void *)buf;
        openslide_read_region(s->osr, argb, x, y, level, w, h);
        const char *err = openslide_get_error(s->osr);
        if (err)
            return MI_FAIL(MI_ERR_FORMAT, "%s: OpenSlide cannot read level %d at (%lld, %lld) size %lldx%lld: %s",
                           s->path, level, (long long)x, (long long)y, (long long)w, (long long)h, err);
        mi_slide_argb_to_rgb(buf, argb, (size_t)(w * h));
        return MI_OK;
    }
    const mi_image *im = &s->img;  /* one level: level 0 */
    for (int64_t j = 0; j < h; j++) {
        uint8_t *row = buf + (size_t)(j * w) * 3;
        int64_t sy = y + j;
        if (sy < 0 || sy >= im->h) { memset(row, 255, (size_t)w * 3); continue; }
        for (int64_t i = 0; i < w; i++) {
            int64_t sx = x + i;
            if (sx < 0 || sx >= im->w) { row[3 * i] = row[3 * i + 1] = row[3 * i + 2] = 255; continue; }
            memcpy(row + 3 * i, im->px + ((size_t)sy * im->w + (size_t)sx) * 3, 3);
        }
    }
    return MI_OK;
}

/* Level pixels [floor(a), ceil(b)) under the output span [a, b) (level units): first index and
 * count; weight of index k is min(k+1, b) - max(k, a). */
static inline double overlap(int64_t k, double a, double b) {
    double lo = k > a ? (double)k : a, hi = (double)(k + 1) < b ? (double)(k + 1) : b;
    return hi > lo ? hi - lo : 0;
}

/* The read itself, from a given level. Arguments already checked. */
static mi_status read_level(const mi_slide *s, int level, int64_t x0, int64_t y0, double ds, int out_w,
                            int out_h, uint8_t *rgb) {
    const double d = s->info.level_ds[level], r = ds / d;
    const int longer = out_w > out_h ? out_w : out_h;

    /* The level is the output: copy, in bands of whole rows. Band origins y0 + oy*d are integer
     * level-0 coordinates only for an integer d (level 0, the usual power-of-two pyramids); any
     * other d is copied in one read when it fits, and resampled (to nearly the same) when not. */
    if (fabs(r - 1) * longer < 0.5 && fabs(r - 1) <= DS_TOL &&
        (d == floor(d) || (int64_t)out_w * out_h <= MI_SLIDE_READ_PIXELS)) {
        int64_t band = d == floor(d) ? MI_SLIDE_READ_PIXELS / out_w : out_h;
        if (band > out_h) band = out_h;
        uint8_t *buf = malloc((size_t)(band * out_w) * 4);
        if (!buf) return MI_FAIL(MI_ERR_NOMEM, "%s: cannot allocate a %dx%lld read", s->path, out_w, (long long)band);
        mi_status st = MI_OK;
        for (int64_t oy0 = 0; oy0 < out_h && st == MI_OK; oy0 += band) {
            const int64_t n = oy0 + band < out_h ? band : out_h - oy0;
            if ((st = fetch(s, level, x0, y0 + oy0 * (int64_t)d, out_w, n, buf)) == MI_OK)
                memcpy(rgb + (size_t)(oy0 * out_w) * 3, buf, (size_t)(n * out_w) * 3);
        }
        free(buf);
        return st;
    }

    /* Columns: [0, out_w*r) level pixels from x0, plus one for the last partial one. */
    const int64_t W = (int64_t)ceil(out_w * r) + 1;
    /* output rows per band so that its level rows (band*r, +2 for partial ones) fit */
    int64_t band = (int64_t)((MI_SLIDE_READ_PIXELS / (double)W - 3) / r);
    if (band < 1) band = 1;
    if (band > out_h) band = out_h;
    const int64_t Hmax = (int64_t)ceil(band * r) + 2;
    if ((double)W * Hmax > MI_SLIDE_READ_PIXELS)
        return MI_FAIL(MI_ERR_ARG, "%s: reading %dx%d at ds %g from level %d (downsample %g) needs %lld x %lld "
                       "level pixels per output row, more than the %d one read may hold", s->path, out_w, out_h,
                       ds, level, d, (long long)W, (long long)Hmax, MI_SLIDE_READ_PIXELS);
    uint8_t *buf = malloc((size_t)(W * Hmax) * 4);
    double *acc = malloc((size_t)out_w * 3 * sizeof *acc), *hsum = malloc((size_t)out_w * 3 * sizeof *hsum);
    double *wx = malloc((size_t)out_w * sizeof *wx);
    mi_status st = MI_OK;
    if (!buf || !acc || !hsum || !wx) {
        st = MI_FAIL(MI_ERR_NOMEM, "%s: cannot allocate %lld level pixels for a read", s->path, (long long)(W * Hmax));
        goto done;
    }
    for (int ox = 0; ox < out_w; ox++) {  /* horizontal weight sums: the same for every row */
        double a = ox * r, b = (ox + 1) * r, t = 0;
        for (int64_t k = (int64_t)floor(a); k < (int64_t)ceil(b); k++) t += overlap(k, a, b);
        wx[ox] = t;
    }
    for (int64_t oy0 = 0; oy0 < out_h; oy0 += band) {
        const int64_t oy1 = oy0 + band < out_h ? oy0 + band : out_h;
        const int64_t yr = (int64_t)floor(y0 + oy0 * ds);              /* this band's level-0 origin */
        int64_t H = (int64_t)ceil((y0 + oy1 * ds - yr) / d) + 1;
        if (H > Hmax) H = Hmax;  /* never by more than rounding: yr is less than a pixel above */
        if ((st = fetch(s, level, x0, yr, W, H, buf)) != MI_OK) goto done;
        for (int64_t oy = oy0; oy < oy1; oy++) {
            /* this output row in the band's level rows */
            const double a = (y0 + oy * ds - yr) / d, b = (y0 + (oy + 1) * ds - yr) / d;
            memset(acc, 0, (size_t)out_w * 3 * sizeof *acc);
            double wy = 0;
            for (int64_t k = (int64_t)floor(a); k < (int64_t)ceil(b) && k < H; k++) {
                const double w = overlap(k, a, b);
                if (w <= 0) continue;
                wy += w;
                const uint8_t *row = buf + (size_t)(k * W) * 3;
                for (int ox = 0; ox < out_w; ox++) {
                    const double xa = ox * r, xb = (ox + 1) * r;
                    double s0 = 0, s1 = 0, s2 = 0;
                    for (int64_t c = (int64_t)floor(xa); c < (int64_t)ceil(xb) && c < W; c++) {
                        const double f = overlap(c, xa, xb);
                        s0 += f * row[3 * c];
                        s1 += f * row[3 * c + 1];
                        s2 += f * row[3 * c + 2];
                    }
                    hsum[3 * ox] = s0;
                    hsum[3 * ox + 1] = s1;
                    hsum[3 * ox + 2] = s2;
                }
                for (int i = 0; i < 3 * out_w; i++) acc[i] += w * hsum[i];
            }
            uint8_t *out = rgb + (size_t)oy * out_w * 3;
            for (int ox = 0; ox < out_w; ox++) {
                const double norm = wy * wx[ox];
                for (int c = 0; c < 3; c++) {
                    double v = norm > 0 ? acc[3 * ox + c] / norm : 255;
                    v = floor(v + 0.5);
                    out[3 * ox + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
        }
    }
done:
    free(buf);
    free(acc);
    free(hsum);
    free(wx);
    return st;
}

/* ---- open, info ---------------------------------------------------------------------------- */

static mi_status open_image(mi_slide *s, const char *path, const char *openslide_said) {
    mi_status st = mi_image_load(&s->img, path);
    if (st != MI_OK) {
        /* mi_last_error already names the file; say that OpenSlide did not take it either */
        char why[512];
        snprintf(why, sizeof why, "%s", mi_last_error());
        return MI_FAIL(MI_ERR_FORMAT, "%s: not a slide OpenSlide reads (%s), nor a PNG/JPEG/BMP (%s)", path,
                       openslide_said, why);
    }
    unsigned char magic[4] = { 0 };
    FILE *f = fopen(path, "rb");
    if (f) {
        if (fread(magic, 1, sizeof magic, f) != sizeof magic) memset(magic, 0, sizeof magic);
        fclose(f);
    }
    const char *kind = magic[0] == 0x89 && magic[1] == 'P' ? "png" : magic[0] == 'B' && magic[1] == 'M' ? "bmp" : "jpeg";
    mi_slide_info *in = &s->info;
    snprintf(in->vendor, sizeof in->vendor, "%s", kind);
    in->w = in->level_w[0] = s->img.w;
    in->h = in->level_h[0] = s->img.h;
    in->level_ds[0] = 1;
    in->levels = 1;
    snprintf(in->mpp_source, sizeof in->mpp_source, "unknown: a %s image states no microns per pixel", kind);
    return MI_OK;
}

static mi_status open_openslide(mi_slide *s, const char *path) {
    mi_slide_info *in = &s->info;
    const char *err = openslide_get_error(s->osr);
    if (err) return MI_FAIL(MI_ERR_FORMAT, "%s: OpenSlide cannot open it: %s", path, err);
    const char *vendor = openslide_get_property_value(s->osr, OPENSLIDE_PROPERTY_NAME_VENDOR);
    snprintf(in->vendor, sizeof in->vendor, "%s", vendor ? vendor : "unknown");
    int32_t n = openslide_get_level_count(s->osr);
    if (n < 1 || n > MI_SLIDE_MAX_LEVELS)
        return MI_FAIL(MI_ERR_FORMAT, "%s: OpenSlide reports %d levels, expected 1..%d", path, (int)n, MI_SLIDE_MAX_LEVELS);
    in->levels = n;
    for (int32_t l = 0; l < n; l++) {
        int64_t w = -1, h = -1;
        openslide_get_level_dimensions(s->osr, l, &w, &h);
        double ds = openslide_get_level_downsample(s->osr, l);
        if (w < 1 || h < 1 || w > MI_SLIDE_MAX_SIDE || h > MI_SLIDE_MAX_SIDE)
            return MI_FAIL(MI_ERR_FORMAT, "%s: level %d is %lldx%lld pixels, expected 1..%lld per side", path, (int)l,
                           (long long)w, (long long)h, MI_SLIDE_MAX_SIDE);
        /* OpenSlide derives downsamples from level sizes; a level coarser than level 0 but
         * ordered before a finer one would break the level choice, so it is refused too */
        if (!isfinite(ds) || (l == 0 ? fabs(ds - 1) > 1e-9 : !(ds >= in->level_ds[l - 1])) || ds > 0x1p31)
            return MI_FAIL(MI_ERR_FORMAT, "%s: level %d has downsample %g, expected %s", path, (int)l, ds,
                           l == 0 ? "1" : "finite and not below the level before");
        /* OpenSlide decodes whole tiles (tile_w * tile_h * 4 bytes each, per reading thread): a
         * file claiming giant tiles would take the memory bound with it */
        for (int k = 0; k < 2; k++) {
            char key[64];
            snprintf(key, sizeof key, "openslide.level[%d].tile-%s", (int)l, k ? "height" : "width");
            const char *v = openslide_get_property_value(s->osr, key);
            double t;
            if (v && (!parse_positive(v, &t) || t > MI_SLIDE_MAX_TILE_SIDE))
                return MI_FAIL(MI_ERR_FORMAT, "%s: %s is %.40s, expected 1..%d", path, key, v, MI_SLIDE_MAX_TILE_SIDE);
        }
        in->level_w[l] = w;
        in->level_h[l] = h;
        in->level_ds[l] = l == 0 ? 1 : ds;
    }
    in->w = in->level_w[0];
    in->h = in->level_h[0];
    const char *p[5] = {
        openslide_get_property_value(s->osr, OPENSLIDE_PROPERTY_NAME_MPP_X),
        openslide_get_property_value(s->osr, OPENSLIDE_PROPERTY_NAME_MPP_Y),
        openslide_get_property_value(s->osr, "tiff.XResolution"),
        openslide_get_property_value(s->osr, "tiff.YResolution"),
        openslide_get_property_value(s->osr, "tiff.ResolutionUnit"),
    };
    /* A malformed resolution does not stop the slide from being read: mpp stays unknown (0) and
     * mpp_source says why, so the caller can ask for it instead of tiling at a wrong scale. */
    if (mi_slide_parse_mpp(p[0], p[1], p[2], p[3], p[4], &in->mpp_x, &in->mpp_y, in->mpp_source,
                           sizeof in->mpp_source) != MI_OK) {
        char why[sizeof in->mpp_source];
        snprintf(why, sizeof why, "%s", in->mpp_source);
        snprintf(in->mpp_source, sizeof in->mpp_source, "unknown: %.180s", why);
    }
    return MI_OK;
}

mi_status mi_slide_open(mi_slide **out, const char *path) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return MI_FAIL(MI_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return MI_FAIL(MI_ERR_IO, "%s: %s", path, S_ISDIR(sb.st_mode) ? "is a directory, not a slide file" : "not a regular file");
    mi_slide *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return MI_FAIL(MI_ERR_NOMEM, "%s: cannot allocate a slide handle", path);
    }
    /* OpenSlide allocates what a TIFF's directory entries claim while it opens the file, before
     * anything here could look at it: refuse those first (tiffcheck.h) */
    mi_status st = mi_tiff_check(path);
    if (st != MI_OK) {
        mi_slide_close(s);
        return st;
    }
    /* openslide_open returns NULL for a file no format driver claims (then it may be a plain
     * image), and a handle in error state for one it claims but cannot read. */
    s->osr = openslide_open(path);
    if (s->osr) st = open_openslide(s, path);
    else st = open_image(s, path, openslide_detect_vendor(path) ? "it recognises the format but not this file"
                                                               : "no format it knows");
    if (st != MI_OK) {
        mi_slide_close(s);
        return st;
    }
    *out = s;
    return MI_OK;
}

void mi_slide_close(mi_slide *s) {
    if (!s) return;
    if (s->osr) openslide_close(s->osr);
    mi_image_free(&s->img);
    free(s->path);
    free(s);
}

const mi_slide_info *mi_slide_get_info(const mi_slide *s) { return &s->info; }
const char *mi_slide_path(const mi_slide *s) { return s->path; }

int mi_slide_level_for_ds(const mi_slide *s, double ds) {
    int best = 0;
    for (int l = 1; l < s->info.levels; l++)
        if (s->info.level_ds[l] <= ds * (1 + DS_TOL)) best = l;
    return best;
}

/* ---- read, thumbnail ----------------------------------------------------------------------- */

static mi_status check_out(const mi_slide *s, int out_w, int out_h, const void *rgb) {
    if (!rgb) return MI_FAIL(MI_ERR_ARG, "%s: read into a NULL buffer", s->path);
    if (out_w < 1 || out_h < 1 || out_w > MI_SLIDE_MAX_OUT_SIDE || out_h > MI_SLIDE_MAX_OUT_SIDE ||
        (int64_t)out_w * out_h > MI_SLIDE_MAX_OUT_PIXELS)
        return MI_FAIL(MI_ERR_ARG, "%s: read of %dx%d pixels, expected 1..%d per side and at most %d in all", s->path,
                       out_w, out_h, MI_SLIDE_MAX_OUT_SIDE, MI_SLIDE_MAX_OUT_PIXELS);
    return MI_OK;
}

mi_status mi_slide_read(const mi_slide *s, int64_t x0, int64_t y0, double ds, int out_w, int out_h,
                        uint8_t *rgb, bool *edge) {
    if (edge) *edge = false;
    mi_status st = check_out(s, out_w, out_h, rgb);
    if (st) return st;
    if (!(ds >= MI_SLIDE_MIN_DS && ds <= MI_SLIDE_MAX_DS))  /* NaN fails too */
        return MI_FAIL(MI_ERR_ARG, "%s: downsample %g level-0 pixels per output pixel, expected %g..%d", s->path, ds,
                       MI_SLIDE_MIN_DS, MI_SLIDE_MAX_DS);
    if (x0 < -MI_SLIDE_MAX_COORD || x0 > MI_SLIDE_MAX_COORD || y0 < -MI_SLIDE_MAX_COORD || y0 > MI_SLIDE_MAX_COORD)
        return MI_FAIL(MI_ERR_ARG, "%s: read at (%lld, %lld), expected coordinates within +-%lld", s->path,
                       (long long)x0, (long long)y0, MI_SLIDE_MAX_COORD);
    if (edge)
        *edge = x0 < 0 || y0 < 0 || x0 + out_w * ds > (double)s->info.w || y0 + out_h * ds > (double)s->info.h;
    return read_level(s, mi_slide_level_for_ds(s, ds), x0, y0, ds, out_w, out_h, rgb);
}

mi_status mi_slide_thumbnail(const mi_slide *s, int max_side, mi_image *thumb, double *out_ds) {
    memset(thumb, 0, sizeof *thumb);
    if (out_ds) *out_ds = 0;
    if (max_side < 1 || max_side > MI_SLIDE_MAX_THUMB)
        return MI_FAIL(MI_ERR_ARG, "%s: thumbnail of longer side %d, expected 1..%d", s->path, max_side, MI_SLIDE_MAX_THUMB);
    const mi_slide_info *in = &s->info;
    const int64_t longer = in->w > in->h ? in->w : in->h;
    double ds = (double)longer / max_side;
    if (ds < 1) ds = 1;
    /* ceil, less a rounding hair: the longer side gives exactly max_side */
    int tw = (int)ceil(in->w / ds - 1e-9), th = (int)ceil(in->h / ds - 1e-9);
    tw = tw < 1 ? 1 : tw;
    th = th < 1 ? 1 : th;
    int level = 0;
    for (int l = 1; l < in->levels; l++)
        if ((in->level_w[l] > in->level_h[l] ? in->level_w[l] : in->level_h[l]) >= max_side) level = l;
    mi_status st = mi_image_alloc(thumb, tw, th);
    if (st) return MI_FAIL(st, "%s: thumbnail %dx%d: %s", s->path, tw, th, mi_last_error());
    if ((st = read_level(s, level, 0, 0, ds, tw, th, thumb->px)) != MI_OK) {
        mi_image_free(thumb);
        return st;
    }
    if (out_ds) *out_ds = ds;
    return MI_OK;
}
