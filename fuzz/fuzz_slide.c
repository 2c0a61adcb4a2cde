/* fuzz/fuzz_slide.c - the whole-slide reader (pipelines/io/slide.c): its property parsing, and
 * opening and reading through OpenSlide (or stb_image, for what OpenSlide does not claim).
 *
 * The first byte picks the target:
 *   'P'    the rest is up to five '\n'-separated fields, handed to mi_slide_parse_mpp as
 *          openslide.mpp-x, openslide.mpp-y, tiff.XResolution, tiff.YResolution,
 *          tiff.ResolutionUnit; a missing field, or one that starts with '~', is absent (NULL)
 *   other  the rest is a file: written to a memfd and opened by its /proc/self/fd path (OpenSlide
 *          takes only paths), then, when it opened, a level-0 read, a resampled read across the
 *          slide's far edge and, for small slides, a thumbnail
 *
 * OpenSlide, libtiff and libjpeg are Debian's builds (not instrumented): coverage guidance sees
 * our side of the calls; ASan still sees every read of our buffers. Like fuzz_image, bytes that
 * stb_image would decode at more than FUZZ_MAX_PIXELS are not opened: stb's time grows with the
 * pixels a header claims, and fuzz_image covers that decoder. */
#include "fuzz/fuzz.h"
#include "pipelines/io/slide.h"

#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FUZZ_MAX_PIXELS (1 << 16)

static volatile unsigned sink;

static void properties(const uint8_t *data, size_t size) {
    char buf[4096];
    if (size >= sizeof buf) size = sizeof buf - 1;
    memcpy(buf, data, size);
    buf[size] = 0;
    const char *f[5] = { NULL };
    char *p = buf;
    for (int i = 0; i < 5 && p; i++) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        f[i] = *p == '~' ? NULL : p;
        p = nl ? nl + 1 : NULL;
    }
    double x = -1, y = -1;
    char src[192];
    mi_status st = mi_slide_parse_mpp(f[0], f[1], f[2], f[3], f[4], &x, &y, src, sizeof src);
    FUZZ_CHECK(memchr(src, 0, sizeof src), "unterminated source");
    if (st != MI_OK) {
        FUZZ_CHECK(x == 0 && y == 0, "refused, yet mpp %g %g", x, y);
        FUZZ_CHECK(strstr(mi_last_error(), "openslide.mpp") || strstr(mi_last_error(), "tiff."),
                   "message names no property: %s", mi_last_error());
        return;
    }
    FUZZ_CHECK((x == 0 && y == 0) || (isfinite(x) && isfinite(y) && x >= MI_SLIDE_MPP_MIN && x <= MI_SLIDE_MPP_MAX &&
                                      y >= MI_SLIDE_MPP_MIN && y <= MI_SLIDE_MPP_MAX), "mpp %g %g", x, y);
}

static bool is_tiff(const uint8_t *d, size_t n) {
    return n >= 4 && ((d[0] == 'I' && d[1] == 'I') || (d[0] == 'M' && d[1] == 'M'));
}

static void slide(const uint8_t *data, size_t size) {
    int w, h;
    if (!is_tiff(data, size) && mi_image_info_memory(data, size, "fuzz", &w, &h) == MI_OK &&
        (long long)w * h > FUZZ_MAX_PIXELS)
        return;
    int fd = memfd_create("fuzz_slide", 0);
    if (fd < 0) abort();
    for (size_t off = 0; off < size;) {
        ssize_t n = write(fd, data + off, size - off);
        if (n <= 0) abort();
        off += (size_t)n;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    mi_slide *s = (mi_slide *)&s;
    if (mi_slide_open(&s, path) != MI_OK) {
        FUZZ_CHECK(s == NULL, "refused, yet a handle");
        FUZZ_CHECK(strstr(mi_last_error(), path) != NULL, "message does not name the file: %s", mi_last_error());
        close(fd);
        return;
    }
    const mi_slide_info *in = mi_slide_get_info(s);
    FUZZ_CHECK(in->levels >= 1 && in->levels <= MI_SLIDE_MAX_LEVELS && in->w >= 1 && in->h >= 1 &&
               in->w == in->level_w[0] && in->h == in->level_h[0] && in->level_ds[0] == 1,
               "levels %d, %lldx%lld", in->levels, (long long)in->w, (long long)in->h);
    for (int l = 1; l < in->levels; l++)
        FUZZ_CHECK(isfinite(in->level_ds[l]) && in->level_ds[l] >= in->level_ds[l - 1], "level %d ds %g", l, in->level_ds[l]);
    FUZZ_CHECK((in->mpp_x == 0) == (in->mpp_y == 0), "mpp %g %g", in->mpp_x, in->mpp_y);
    FUZZ_CHECK(memchr(in->vendor, 0, sizeof in->vendor) && memchr(in->mpp_source, 0, sizeof in->mpp_source),
               "unterminated string");
    uint8_t px[24 * 16 * 3];
    bool edge;
    unsigned acc = 0;
    if (mi_slide_read(s, 0, 0, 1.0, 24, 16, px, &edge) == MI_OK) {
        FUZZ_CHECK(edge == (in->w < 24 || in->h < 16), "edge %d for %lldx%lld", edge, (long long)in->w, (long long)in->h);
        for (size_t i = 0; i < sizeof px; i++) acc += px[i];
    } else
        FUZZ_CHECK(strstr(mi_last_error(), path) != NULL, "message does not name the file: %s", mi_last_error());
    double ds = in->w / 20.0 > 1.5 ? in->w / 20.0 : 1.5;
    if (mi_slide_read(s, in->w - 7, in->h / 2, ds, 24, 16, px, &edge) == MI_OK) {
        FUZZ_CHECK(edge, "a read across the right edge is not flagged");
        for (size_t i = 0; i < sizeof px; i++) acc += px[i];
    }
    if (in->w * in->h <= (1 << 20)) {
        mi_image t;
        if (mi_slide_thumbnail(s, 16, &t, &ds) == MI_OK) {
            FUZZ_CHECK(t.w >= 1 && t.h >= 1 && t.w <= 16 && t.h <= 16 && ds >= 1, "thumbnail %dx%d ds %g", t.w, t.h, ds);
            acc += t.px[(size_t)t.w * t.h * 3 - 1];
            mi_image_free(&t);
        }
    }
    sink = acc;
    mi_slide_close(s);
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    if (data[0] == 'P') properties(data + 1, size - 1);
    else slide(data + 1, size - 1);
    return 0;
}
