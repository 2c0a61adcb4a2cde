/* pipelines/io/image.c - still images through stb_image / stb_image_write (Debian libstb-dev,
 * linked as -lstb). The file is read here, not by stb, so that a missing file, a directory and an
 * undecodable file each get their own message naming the file. */
#include "pipelines/io/image.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

static mi_status read_file(const char *path, unsigned char **buf, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return MI_FAIL(MI_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        int e = errno;
        fclose(f);
        return MI_FAIL(MI_ERR_IO, "%s: cannot read: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        fclose(f);
        return MI_FAIL(MI_ERR_IO, "%s: %s", path, S_ISDIR(sb.st_mode) ? "is a directory, not an image file" : "not a regular file");
    }
    if (sb.st_size == 0) {
        fclose(f);
        return MI_FAIL(MI_ERR_FORMAT, "%s: empty file (0 bytes)", path);
    }
    if (sb.st_size > INT_MAX) {  /* stb_image takes an int length */
        fclose(f);
        return MI_FAIL(MI_ERR_FORMAT, "%s: %lld bytes is not the size of an image we decode", path,
                       (long long)sb.st_size);
    }
    *n = (size_t)sb.st_size;
    *buf = malloc(*n);
    if (!*buf) {
        fclose(f);
        return MI_FAIL(MI_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, *n);
    }
    size_t got = fread(*buf, 1, *n, f);
    int err = ferror(f);
    fclose(f);
    if (got != *n) {
        free(*buf);
        *buf = NULL;
        return MI_FAIL(MI_ERR_IO, "%s: read %zu of %zu bytes%s%s", path, got, *n, err ? ": " : "",
                       err ? strerror(errno) : "");
    }
    return MI_OK;
}

/* Where a JPEG's first marker segment starts: after the SOI marker, which stb_image accepts after
 * any number of FF fill bytes. 0 when b is no JPEG. */
static size_t jpeg_start(const unsigned char *b, size_t n) {
    size_t i = 0;
    while (i < n && b[i] == 0xFF) i++;
    return i > 0 && i < n && b[i] == 0xD8 ? i + 1 : 0;
}

static unsigned byte_at(const unsigned char *b, size_t n, size_t i) { return i < n ? b[i] : 0; }

/* stb_image 2.27 (Debian 12's libstb) trusts a JPEG's Huffman tables twice over (2.28 checks
 * both): it builds a table without checking that its 16 code counts add up to at most 256 (ITU
 * T.81 B.2.4.2) and writes past the table when they do; and it decodes a scan with whatever
 * table slot the scan names, defined or not, reading an uninitialized table (garbage pixels,
 * reads out of bounds, or its own assertion aborting the process). So the file is walked first
 * the way stb_image walks it, from the byte after SOI at b[i]: marker segments by their length;
 * anything else (junk between segments, the entropy-coded data after a scan header) byte by
 * byte up to the next FF that is neither a fill byte, stuffing (FF 00) nor a restart marker,
 * which is where stb's decoder stops too. Bytes past the end read as 0, as stb's do. Returns
 * what is wrong, or NULL when stb_image may read the tables (or will refuse them itself). */
static const char *jpeg_huffman_fault(const unsigned char *b, size_t n, size_t i) {
    bool defined[2][4] = { { false } }, progressive = false;  /* [DC, AC][table id] */
    while (i < n) {
        if (b[i++] != 0xFF) continue;
        while (i < n && b[i] == 0xFF) i++;
        unsigned m = byte_at(b, n, i++);
        if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue;  /* no segment follows */
        if (m == 0xD9) break;                                              /* EOI */
        size_t len = byte_at(b, n, i) << 8 | byte_at(b, n, i + 1);
        if (m == 0xC0 || m == 0xC1 || m == 0xC2) progressive = m == 0xC2;  /* the SOFs stb takes */
        if (m == 0xC4) {  /* DHT: tables while the length lasts, running past it if counts say so */
            long left = (long)len - 2;
            for (size_t p = i + 2; left > 0;) {
                unsigned q = byte_at(b, n, p);
                long codes = 0;
                for (size_t k = 1; k <= 16; k++) codes += byte_at(b, n, p + k);
                if (codes > 256) return "a Huffman table with more than 256 codes";
                if (q >> 4 > 1 || (q & 15) > 3) return NULL;  /* stb refuses the table */
                defined[q >> 4][q & 15] = true;
                p += 17 + (size_t)codes;
                left -= 17 + codes;
            }
        }
        if (m == 0xDA) {  /* SOS: a DC table for DC scans, an AC table for AC ones, both in baseline */
            unsigned ns = byte_at(b, n, i + 2), ss = byte_at(b, n, i + 3 + 2 * ns);
            if (ns < 1 || ns > 4) return NULL;                /* stb refuses the scan */
            for (unsigned k = 0; k < ns; k++) {
                unsigned sel = byte_at(b, n, i + 4 + 2 * k), dc = sel >> 4, ac = sel & 15;
                if (dc > 3 || ac > 3) return NULL;
                if (((!progressive || ss == 0) && !defined[0][dc]) || ((!progressive || ss != 0) && !defined[1][ac]))
                    return "a scan uses a Huffman table the file has not defined";
            }
        }
        i += len;  /* past the segment (for SOS, its header: the scan data is skipped byte by byte) */
    }
    return NULL;
}

/* stb_image decodes a JPEG cut short without complaint (missing scan data reads as zeros), so a
 * partly transferred file would be classified as a grey smear. A JPEG must end with its EOI marker
 * (FF D9); some writers append padding or a second image after it, so search the tail. */
static bool jpeg_has_eoi(const unsigned char *b, size_t n) {
    size_t from = n > 4096 ? n - 4096 : 2;
    for (size_t i = n - 1; i > from; i--)
        if (b[i - 1] == 0xFF && b[i] == 0xD9) return true;
    return false;
}

static uint32_t le32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

/* stb_image reads a BMP cut short as zeros too. Uncompressed BMPs say how many bytes they need:
 * the pixel data offset plus |height| rows of (bpp * width) bits padded to 4 bytes. Returns the
 * bytes needed, or 0 when the header does not say (RLE, or too short for stb to accept anyway). */
static uint64_t bmp_bytes_needed(const unsigned char *b, size_t n) {
    if (n < 34 || b[0] != 'B' || b[1] != 'M') return 0;
    uint32_t off = le32(b + 10), hsize = le32(b + 14), comp = 0;
    int64_t w, h, bpp;
    if (hsize == 12) {                       /* OS/2 BITMAPCOREHEADER */
        w = b[18] | b[19] << 8;
        h = b[20] | b[21] << 8;
        bpp = b[24] | b[25] << 8;
    } else {                                 /* BITMAPINFOHEADER and its successors */
        w = (int32_t)le32(b + 18);
        h = (int32_t)le32(b + 22);
        bpp = b[28] | b[29] << 8;
        comp = le32(b + 30);
    }
    if (comp != 0 && comp != 3 && comp != 6) return 0;  /* BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS */
    if (w <= 0 || w > (1 << 24) || h == 0 || h < -(1 << 24) || h > (1 << 24) || bpp <= 0 || bpp > 32) return 0;
    return off + (uint64_t)((bpp * w + 31) / 32 * 4) * (uint64_t)(h < 0 ? -h : h);
}

static uint32_t be32(const unsigned char *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

/* stb_image grows a PNG's compressed-data buffer to the length each IDAT chunk declares before it
 * reads the chunk, so a 300-byte file declaring a 2 GB chunk costs a 2 GB allocation (found by
 * fuzz_image), and a PNG cut short is refused only after that. Every chunk up to IEND must lie
 * in the file (length, type, data, CRC). Returns the offset of the first one that does not, or
 * 0 when all do (or when they stop making sense before that: stb refuses such files itself). */
static size_t png_chunk_past_end(const unsigned char *b, size_t n) {
    for (size_t at = 8; at + 8 <= n;) {
        uint32_t len = be32(b + at);
        if (!memcmp(b + at + 4, "IEND", 4)) return 0;
        if (len > n - at - 8 || n - at - 8 - len < 4) return at;
        at += 12 + (size_t)len;
    }
    return 0;
}

mi_status mi_image_load(mi_image *img, const char *path) {
    memset(img, 0, sizeof *img);
    unsigned char *buf = NULL;
    size_t n = 0;
    mi_status st = read_file(path, &buf, &n);
    if (st) return st;
    st = mi_image_load_memory(img, buf, n, path);
    free(buf);
    return st;
}

mi_status mi_image_info_memory(const void *data, size_t n, const char *name, int *w, int *h) {
    const unsigned char *buf = data;
    *w = *h = 0;
    if (!name) name = "(memory)";
    if (!buf || n == 0 || n > INT_MAX)  /* stb_image takes an int length */
        return MI_FAIL(MI_ERR_FORMAT, "%s: %zu bytes is not the size of an image we decode", name, n);
    /* Only the formats we take (README): stb_image also reads GIF, PSD, PIC, PNM, HDR and TGA,
       no medical image comes to us that way, and their readers in stb 2.27 have faults fixed
       in 2.28 (fuzz_image hit a signed overflow in the PNM header parser within a minute). With
       these signatures stb's own format tests pick its PNG, JPEG or BMP reader, never another. */
    size_t jpeg = jpeg_start(buf, n);
    bool png = n >= 8 && !memcmp(buf, "\x89PNG\r\n\x1a\n", 8), bmp = n >= 2 && buf[0] == 'B' && buf[1] == 'M';
    if (!jpeg && !png && !bmp)
        return MI_FAIL(MI_ERR_FORMAT, "%s: not an image stb_image can read (not PNG, JPEG or BMP)", name);
    const char *fault = jpeg ? jpeg_huffman_fault(buf, n, jpeg) : NULL;  /* stbi_info reads tables too */
    if (fault) return MI_FAIL(MI_ERR_FORMAT, "%s: JPEG is corrupt (%s)", name, fault);
    int iw, ih, comp;
    if (!stbi_info_from_memory(buf, (int)n, &iw, &ih, &comp))
        return MI_FAIL(MI_ERR_FORMAT, "%s: not an image stb_image can read (%s)", name, stbi_failure_reason());
    /* checked before decoding: stb_image allocates the whole image first, so a few header bytes
       claiming 60000x60000 would cost gigabytes (and seconds of zeros from a truncated JPEG) */
    if (iw <= 0 || ih <= 0 || iw > MI_IMAGE_MAX_SIDE || ih > MI_IMAGE_MAX_SIDE ||
        (long long)iw * ih > MI_IMAGE_MAX_PIXELS)
        return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: %dx%d pixels, at most %dx%d and %lld pixels supported",
                       name, iw, ih, MI_IMAGE_MAX_SIDE, MI_IMAGE_MAX_SIDE, MI_IMAGE_MAX_PIXELS);
    if (jpeg && !jpeg_has_eoi(buf, n))
        return MI_FAIL(MI_ERR_FORMAT, "%s: JPEG is truncated (no end-of-image marker in its last bytes)", name);
    size_t cut = png ? png_chunk_past_end(buf, n) : 0;
    if (cut)  /* "cannot decode WxH image": what stb says of a cut PNG that it reaches the end of */
        return MI_FAIL(MI_ERR_FORMAT, "%s: cannot decode %dx%d image: PNG is truncated (the chunk at byte %zu "
                       "declares %u bytes, %zu follow)", name, iw, ih, cut, be32(buf + cut), n - cut - 8);
    uint64_t need = bmp_bytes_needed(buf, n);
    if (need > n)
        return MI_FAIL(MI_ERR_FORMAT, "%s: BMP is truncated (%zu bytes, its header needs %llu)", name, n,
                       (unsigned long long)need);
    *w = iw;
    *h = ih;
    return MI_OK;
}

int mi_image_channels_memory(const void *data, size_t n) {
    int w, h, comp;
    if (!data || n == 0 || n > INT_MAX || !stbi_info_from_memory(data, (int)n, &w, &h, &comp)) return 0;
    return comp;
}

mi_status mi_image_load_memory(mi_image *img, const void *data, size_t n, const char *name) {
    memset(img, 0, sizeof *img);
    if (!name) name = "(memory)";
    int w, h, comp;
    mi_status st = mi_image_info_memory(data, n, name, &w, &h);
    if (st) return st;
    img->px = stbi_load_from_memory(data, (int)n, &img->w, &img->h, &comp, 3);  /* grey, RGBA -> RGB */
    if (!img->px) {
        img->w = img->h = 0;
        return MI_FAIL(MI_ERR_FORMAT, "%s: cannot decode %dx%d image: %s", name, w, h, stbi_failure_reason());
    }
    if (img->w != w || img->h != h) {  /* the bound checked holds for what was decoded, not just said */
        st = MI_FAIL(MI_ERR_FORMAT, "%s: header says %dx%d pixels, decoded %dx%d", name, w, h, img->w, img->h);
        mi_image_free(img);
        return st;
    }
    return MI_OK;
}

mi_status mi_image_alloc(mi_image *img, int w, int h) {
    memset(img, 0, sizeof *img);
    if (w <= 0 || h <= 0 || (long long)w * h > MI_IMAGE_MAX_PIXELS)
        return MI_FAIL(MI_ERR_ARG, "image size %dx%d is outside 1..%lld pixels", w, h, MI_IMAGE_MAX_PIXELS);
    img->px = calloc((size_t)w * (size_t)h, 3);
    if (!img->px) return MI_FAIL(MI_ERR_NOMEM, "cannot allocate a %dx%d image", w, h);
    img->w = w;
    img->h = h;
    return MI_OK;
}

mi_status mi_image_write_png(const char *path, const mi_image *img) {
    if (!img->px || img->w <= 0 || img->h <= 0 || img->w > INT_MAX / 3)
        return MI_FAIL(MI_ERR_ARG, "%s: no image to write (%dx%d)", path, img->w, img->h);
    errno = 0;
    if (!stbi_write_png(path, img->w, img->h, 3, img->px, img->w * 3))
        return MI_FAIL(MI_ERR_IO, "%s: cannot write PNG: %s", path, errno ? strerror(errno) : "stb_image_write failed");
    return MI_OK;
}

mi_status mi_gray_write_png(const char *path, const uint8_t *px, int w, int h) {
    if (!px || w <= 0 || h <= 0 || (long long)w * h > MI_IMAGE_MAX_PIXELS)
        return MI_FAIL(MI_ERR_ARG, "%s: no grey image to write (%dx%d)", path, w, h);
    errno = 0;
    if (!stbi_write_png(path, w, h, 1, px, w))
        return MI_FAIL(MI_ERR_IO, "%s: cannot write PNG: %s", path, errno ? strerror(errno) : "stb_image_write failed");
    return MI_OK;
}

void mi_image_free(mi_image *img) {
    free(img->px);  /* stb_image allocates with malloc (STBI_MALLOC is not overridden in libstb) */
    memset(img, 0, sizeof *img);
}

mi_status mi_image_preprocess(const mi_image *img, int resize, int crop, const float mean[3],
                              const float std[3], float *out) {
    mi_preprocess_spec p = { .resize = resize, .crop = crop };
    for (int c = 0; c < 3; c++) {
        p.mean[c] = mean[c];
        p.std[c] = std[c];
    }
    return mi_preprocess_rgb8(img->px, img->w, img->h, (size_t)img->w * 3, &p, out);
}

mi_status mi_image_resize_aa(mi_image *dst, const mi_image *src, int ow, int oh) {
    memset(dst, 0, sizeof *dst);
    if (!src->px || src->w < 1 || src->h < 1)
        return MI_FAIL(MI_ERR_ARG, "resize of an empty %dx%d image", src->w, src->h);
    mi_status st = mi_image_alloc(dst, ow, oh);
    if (st) return st;
    if ((st = mi_resize_aa_rgb8(dst->px, ow, oh, src->px, src->w, src->h, (size_t)src->w * 3)))
        mi_image_free(dst);
    return st;
}
