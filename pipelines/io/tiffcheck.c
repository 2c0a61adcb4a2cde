/* pipelines/io/tiffcheck.c - see tiffcheck.h for what is refused and why.
 *
 * Two passes, because the two readers OpenSlide uses see different things. Its own directory
 * parser (openslide-decode-tifflike.c) keeps every entry of every directory and later allocates
 * count x type size for the values it asks for; libtiff ignores an entry whose count is wrong for
 * its tag ("Incorrect count for YResolution; tag ignored"), so only a walk of the raw entries can
 * see what that parser will allocate. libtiff, which OpenSlide decodes tiles with, is the one to
 * ask about tiles and strips: it knows which tag holds them, their types and their number.
 *
 * Cost: the raw pass reads the directories only (one pread of each); the libtiff pass reads the
 * directories again plus their tile offset and byte-count arrays, never pixel data. Measured
 * (best of 20, page cache warm, the shared 2-core box): CMU-1-Small-Region.svs (1.9 MB, 4
 * directories, 130 tiles) 0.25 ms of a 6.4 ms mi_slide_open; a 50 000 x 50 000 generic-TIFF
 * pyramid (245 MB, 9 directories, 51 285 tiles) 3.3 ms of 7.0 ms. */
#include "pipelines/io/tiffcheck.h"
#include "pipelines/io/slide.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tiffio.h>

/* "9971615728 bytes (9.3 GiB)": exact for the auditor, readable at a glance */
static const char *bytes_str(char *buf, size_t n, double b) {
    if (b >= 0x1p30) snprintf(buf, n, "%.0f bytes (%.1f GiB)", b, b / 0x1p30);
    else if (b >= 0x1p20) snprintf(buf, n, "%.0f bytes (%.1f MiB)", b, b / 0x1p20);
    else snprintf(buf, n, "%.0f bytes", b);
    return buf;
}

/* ---- raw directory entries ------------------------------------------------------------------ */

typedef struct {
    int         fd;
    const char *path;
    uint64_t    size;  /* the file's */
    bool        be, big;
} raw;

static uint64_t rd(const uint8_t *p, int n, bool be) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[be ? i : n - 1 - i] << (8 * (n - 1 - i));
    return v;
}

static bool read_at(const raw *r, void *buf, size_t n, uint64_t off) {
    for (size_t got = 0; got < n;) {
        ssize_t k = pread(r->fd, (uint8_t *)buf + got, n - got, (off_t)(off + got));
        if (k <= 0) return false;
        got += (size_t)k;
    }
    return true;
}

/* bytes per value of a TIFF field type, 0 for a type TIFF does not define (OpenSlide refuses
 * those itself, before allocating) */
static unsigned type_size(unsigned type) {
    static const uint8_t size[19] = { 0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4, 0, 0, 8, 8, 8 };
    return type < sizeof size ? size[type] : 0;
}

static mi_status check_raw_dir(const raw *r, int d, uint64_t off, uint64_t *next) {
    const unsigned cw = r->big ? 8 : 2, ew = r->big ? 20 : 12, ow = r->big ? 8 : 4;  /* count, entry, offset */
    uint8_t head[8];
    if (off < 8 || off > r->size || r->size - off < cw || !read_at(r, head, cw, off))
        return MI_FAIL(MI_ERR_FORMAT, "%s: TIFF directory %d is at offset %" PRIu64 ", outside the %" PRIu64
                       "-byte file", r->path, d, off, r->size);
    const uint64_t n = rd(head, (int)cw, r->be);
    /* tags are 16-bit and unique within a directory */
    if (n > 65535 || (r->size - off - cw) / ew < n || (r->size - off - cw - n * ew) < ow)
        return MI_FAIL(MI_ERR_FORMAT, "%s: TIFF directory %d at offset %" PRIu64 " lists %" PRIu64
                       " entries, which do not fit in the %" PRIu64 "-byte file", r->path, d, off, n, r->size);
    const size_t len = (size_t)(n * ew + ow);
    uint8_t *e = malloc(len);
    if (!e) return MI_FAIL(MI_ERR_NOMEM, "%s: cannot allocate %zu bytes for TIFF directory %d", r->path, len, d);
    if (!read_at(r, e, len, off + cw)) {
        free(e);
        return MI_FAIL(MI_ERR_IO, "%s: cannot read TIFF directory %d at offset %" PRIu64, r->path, d, off);
    }
    mi_status st = MI_OK;
    for (uint64_t i = 0; i < n && st == MI_OK; i++) {
        const uint8_t *p = e + i * ew;
        const unsigned tag = (unsigned)rd(p, 2, r->be), type = (unsigned)rd(p + 2, 2, r->be);
        const uint64_t count = rd(p + 4, r->big ? 8 : 4, r->be), voff = rd(p + (r->big ? 12 : 8), (int)ow, r->be);
        const unsigned ts = type_size(type);
        if (!ts) continue;
        char b[64];
        if (count > r->size / ts)  /* also keeps count * ts from overflowing */
            st = MI_FAIL(MI_ERR_FORMAT, "%s: TIFF directory %d, tag %u: %" PRIu64 " values of type %u claim %s, "
                         "more than the %" PRIu64 "-byte file", r->path, d, tag, count, type,
                         bytes_str(b, sizeof b, (double)count * ts), r->size);
        else if (count * ts > ow && (voff > r->size || count * ts > r->size - voff))
            st = MI_FAIL(MI_ERR_FORMAT, "%s: TIFF directory %d, tag %u: %s of values at offset %" PRIu64
                         " run past the end of the %" PRIu64 "-byte file", r->path, d, tag,
                         bytes_str(b, sizeof b, (double)(count * ts)), voff, r->size);
    }
    *next = rd(e + n * ew, (int)ow, r->be);
    free(e);
    return st;
}

/* The chain as OpenSlide's parser follows it: from the header, each directory's next offset,
 * until 0. Only the main chain: neither reader follows SubIFDs or EXIF directories at open. */
static mi_status check_raw(raw *r, const uint8_t hdr[16]) {
    uint64_t off = r->big ? rd(hdr + 8, 8, r->be) : rd(hdr + 4, 4, r->be);
    uint64_t seen[MI_TIFF_MAX_DIRS];
    for (int d = 0; off != 0; d++) {
        if (d == MI_TIFF_MAX_DIRS)
            return MI_FAIL(MI_ERR_FORMAT, "%s: more than %d TIFF directories", r->path, MI_TIFF_MAX_DIRS);
        for (int k = 0; k < d; k++)
            if (seen[k] == off)
                return MI_FAIL(MI_ERR_FORMAT, "%s: TIFF directory %d at offset %" PRIu64 " is directory %d again "
                               "(the chain loops)", r->path, d, off, k);
        seen[d] = off;
        mi_status st = check_raw_dir(r, d, off, &off);
        if (st != MI_OK) return st;
    }
    return MI_OK;
}

/* ---- tiles and strips, through libtiff ------------------------------------------------------ */

typedef struct { char msg[256]; bool failed; } tiff_said;

/* This handle's errors: the first is kept for our message, none reaches stderr or the global
 * handlers (returning 1 stops libtiff from calling those). */
static int on_error(TIFF *t, void *user, const char *module, const char *fmt, va_list ap) {
    (void)t;
    tiff_said *s = user;
    if (!s->failed) {
        char m[200];
        vsnprintf(m, sizeof m, fmt, ap);
        snprintf(s->msg, sizeof s->msg, "%s: %s", module ? module : "libtiff", m);
        s->failed = true;
    }
    return 1;
}

/* Warnings (an entry with a wrong count, an unknown tag) are for OpenSlide's own libtiff calls to
 * print, as they did before this check. */
static int on_warning(TIFF *t, void *user, const char *module, const char *fmt, va_list ap) {
    (void)t, (void)user, (void)module, (void)fmt, (void)ap;
    return 1;
}

static mi_status check_dir(TIFF *t, tiff_said *said, const char *path, int d, uint64_t size) {
    const bool tiled = TIFFIsTiled(t);
    const char *what = tiled ? "tile" : "strip";
    if (tiled) {
        uint32_t tw = 0, th = 0;
        TIFFGetField(t, TIFFTAG_TILEWIDTH, &tw);
        TIFFGetField(t, TIFFTAG_TILELENGTH, &th);
        if (tw > MI_SLIDE_MAX_TILE_SIDE || th > MI_SLIDE_MAX_TILE_SIDE)
            return MI_FAIL(MI_ERR_FORMAT, "%s: TIFF directory %d has %" PRIu32 "x%" PRIu32 "-pixel tiles, "
                           "expected at most %d per side", path, d, tw, th, MI_SLIDE_MAX_TILE_SIDE);
    }
    const uint32_t n = tiled ? TIFFNumberOfTiles(t) : TIFFNumberOfStrips(t);
    /* each needs an offset of at least 2 bytes in the file: this bounds the loop below for a
     * directory that claims a giant image of tiny tiles */
    if (n > size / 2 + 1)
        return MI_FAIL(MI_ERR_FORMAT, "%s: TIFF directory %d has %" PRIu32 " %ss, more than the %" PRIu64
                       "-byte file can list", path, d, n, what, size);
    for (uint32_t i = 0; i < n; i++) {
        int e1 = 0, e2 = 0;
        const uint64_t off = TIFFGetStrileOffsetWithErr(t, i, &e1), cnt = TIFFGetStrileByteCountWithErr(t, i, &e2);
        if (e1 || e2)
            return MI_FAIL(MI_ERR_FORMAT, "%s: TIFF directory %d: libtiff cannot read the offset or byte count of "
                           "%s %" PRIu32 ": %s", path, d, what, i, said->failed ? said->msg : "(no message)");
        char b[64];
        /* OpenSlide allocates a tile's byte count to read it raw; strips are read by libtiff,
         * which never allocates past the file (NDPI keeps a whole level in one strip) */
        if (tiled && cnt > MI_TIFF_MAX_TILE_BYTES)
            return MI_FAIL(MI_ERR_FORMAT, "%s: tile %" PRIu32 " of TIFF directory %d claims %s at offset %" PRIu64
                           " in a %" PRIu64 "-byte file (at most %d MiB per tile)", path, i, d,
                           bytes_str(b, sizeof b, (double)cnt), off, size, MI_TIFF_MAX_TILE_BYTES >> 20);
        if (cnt > 0 && (off > size || cnt > size - off))
            return MI_FAIL(MI_ERR_FORMAT, "%s: %s %" PRIu32 " of TIFF directory %d claims %s at offset %" PRIu64
                           " in a %" PRIu64 "-byte file", path, what, i, d, bytes_str(b, sizeof b, (double)cnt), off,
                           size);
    }
    return MI_OK;
}

static mi_status check_libtiff(const char *path, uint64_t size) {
    tiff_said said = { .failed = false };
    TIFFOpenOptions *o = TIFFOpenOptionsAlloc();
    if (!o) return MI_FAIL(MI_ERR_NOMEM, "%s: cannot allocate libtiff options", path);
    /* libtiff's own allocations for this check stay below what we let a tile be */
    TIFFOpenOptionsSetMaxSingleMemAlloc(o, MI_TIFF_MAX_TILE_BYTES);
    TIFFOpenOptionsSetErrorHandlerExtR(o, on_error, &said);
    TIFFOpenOptionsSetWarningHandlerExtR(o, on_warning, &said);
    TIFF *t = TIFFOpenExt(path, "r", o);
    TIFFOpenOptionsFree(o);
    if (!t)
        return MI_FAIL(MI_ERR_FORMAT, "%s: libtiff cannot read TIFF directory 0: %s", path,
                       said.failed ? said.msg : "(no message)");
    mi_status st = MI_OK;
    int d = 0;
    for (;;) {
        if ((st = check_dir(t, &said, path, d, size)) != MI_OK) break;
        if (!TIFFReadDirectory(t)) {
            /* 0 is also the end of the chain; only a message tells them apart. OpenSlide reads
             * the same directories through the same libtiff, so it would fail there too. */
            if (said.failed)
                st = MI_FAIL(MI_ERR_FORMAT, "%s: libtiff cannot read TIFF directory %d: %s", path, d + 1, said.msg);
            break;
        }
        if (++d == MI_TIFF_MAX_DIRS) {
            st = MI_FAIL(MI_ERR_FORMAT, "%s: more than %d TIFF directories", path, MI_TIFF_MAX_DIRS);
            break;
        }
    }
    TIFFClose(t);
    return st;
}

mi_status mi_tiff_check(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return MI_FAIL(MI_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    uint8_t hdr[16] = { 0 };
    raw r = { .fd = fd, .path = path };
    mi_status st = MI_OK;
    if (fstat(fd, &sb) != 0) {
        st = MI_FAIL(MI_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    r.size = (uint64_t)sb.st_size;
    if (r.size < 8 || !read_at(&r, hdr, r.size < 16 ? 8 : 16, 0)) goto done;  /* not a TIFF: not ours */
    r.be = hdr[0] == 'M';
    if (!((hdr[0] == 'I' && hdr[1] == 'I') || (hdr[0] == 'M' && hdr[1] == 'M'))) goto done;
    const unsigned version = (unsigned)rd(hdr + 2, 2, r.be);
    if (version == 43) {
        /* a BigTIFF header with another offset size: OpenSlide refuses it without allocating */
        if (r.size < 16 || rd(hdr + 4, 2, r.be) != 8 || rd(hdr + 6, 2, r.be) != 0) goto done;
        r.big = true;
    } else if (version != 42 || r.size >= (1ull << 32))
        goto done;
    if ((st = check_raw(&r, hdr)) == MI_OK) st = check_libtiff(path, r.size);
done:
    close(fd);
    return st;
}
