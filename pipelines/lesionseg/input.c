/* pipelines/lesionseg/input.c - what a file is, and the still images the pipeline accepts.
 *
 * Files are told apart by their first bytes, never by their names: a PNG saved as .jpg is still
 * segmented, and a text file named .png gets "not an image" rather than a decoder's complaint.
 * A still image is read once into memory; its hash, header checks and decoding all use those
 * bytes, so what is hashed in the report is what was segmented. */
#include "pipelines/lesionseg/lesionseg.h"

#include "weights/sha256.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool at(const unsigned char *b, size_t n, size_t off, const char *sig, size_t len) {
    return n >= off + len && !memcmp(b + off, sig, len);
}

mi_lesionseg_kind mi_lesionseg_sniff(const void *head, size_t n, const char **what) {
    const unsigned char *b = head;
    const char *dummy;
    if (!what) what = &dummy;
    *what = "";
    size_t ff = 0;
    while (ff < n && b[ff] == 0xFF) ff++;
    if (at(b, n, 0, "\x89PNG\r\n\x1a\n", 8) || (ff > 0 && ff < n && b[ff] == 0xD8) || at(b, n, 0, "BM", 2))
        return MI_LESIONSEG_IMAGE;   /* the signatures pipelines/io/image.c lets through to stb_image */
    /* ISO base media (MP4, MOV, 3GP): a box size, then one of the top-level box types */
    static const char *const boxes[] = { "ftyp", "moov", "mdat", "wide", "free", "skip" };
    for (size_t i = 0; i < sizeof boxes / sizeof *boxes; i++)
        if (at(b, n, 4, boxes[i], 4)) return MI_LESIONSEG_VIDEO;
    if (at(b, n, 0, "\x1a\x45\xdf\xa3", 4) || (at(b, n, 0, "RIFF", 4) && at(b, n, 8, "AVI ", 4)))
        return MI_LESIONSEG_VIDEO;   /* Matroska / WebM, AVI */
    if (n > 188 && b[0] == 0x47 && b[188] == 0x47) return MI_LESIONSEG_VIDEO;   /* MPEG transport stream */
    if (at(b, n, 0, "II*\0", 4) || at(b, n, 0, "MM\0*", 4)) *what = "a TIFF image";
    else if (at(b, n, 0, "GIF8", 4)) *what = "a GIF image";
    else if (at(b, n, 0, "RIFF", 4) && at(b, n, 8, "WEBP", 4)) *what = "a WebP image";
    else if (at(b, n, 0, "\0\0\0\x0cjP  ", 8) || at(b, n, 0, "\xff\x4f\xff\x51", 4)) *what = "a JPEG 2000 image";
    else if (at(b, n, 128, "DICM", 4)) *what = "a DICOM file";
    else if (at(b, n, 0, "%PDF", 4)) *what = "a PDF document";
    return MI_LESIONSEG_OTHER;
}

static mi_status read_all(const char *path, unsigned char **buf, size_t *n) {
    *buf = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return MI_FAIL(MI_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    mi_status st = MI_OK;
    if (fstat(fileno(f), &sb) != 0) st = MI_FAIL(MI_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode)) st = MI_FAIL(MI_ERR_IO, "%s: not a regular file", path);
    else if (sb.st_size == 0) st = MI_FAIL(MI_ERR_FORMAT, "%s: empty file (0 bytes)", path);
    else if (sb.st_size > MI_LESIONSEG_MAX_FILE)
        st = MI_FAIL(MI_ERR_UNSUPPORTED, "%s: %lld bytes; still images up to %lld bytes are read", path,
                     (long long)sb.st_size, MI_LESIONSEG_MAX_FILE);
    else if (!(*buf = malloc((size_t)sb.st_size)))
        st = MI_FAIL(MI_ERR_NOMEM, "%s: cannot allocate %lld bytes", path, (long long)sb.st_size);
    else if ((*n = fread(*buf, 1, (size_t)sb.st_size, f)) != (size_t)sb.st_size)
        st = MI_FAIL(MI_ERR_IO, "%s: read %zu of %lld bytes", path, *n, (long long)sb.st_size);
    fclose(f);
    if (st) {
        free(*buf);
        *buf = NULL;
        *n = 0;
    }
    return st;
}

/* A PNG's size from its IHDR chunk (always the first), which stb_image does not report when it
 * exceeds its own limits ("unknown image type"): the size is what is wrong, and the message
 * should say so. false when the bytes hold no IHDR. */
static bool png_header_size(const unsigned char *b, size_t n, uint32_t *w, uint32_t *h) {
    if (n < 24 || memcmp(b, "\x89PNG\r\n\x1a\n", 8) || memcmp(b + 12, "IHDR", 4)) return false;
    *w = (uint32_t)b[16] << 24 | (uint32_t)b[17] << 16 | (uint32_t)b[18] << 8 | b[19];
    *h = (uint32_t)b[20] << 24 | (uint32_t)b[21] << 16 | (uint32_t)b[22] << 8 | b[23];
    return true;
}

mi_status mi_lesionseg_load_image_memory(const void *data, size_t n, const char *name, mi_image *img) {
    memset(img, 0, sizeof *img);
    const unsigned char *buf = data;
    const char *what;
    int w, h, ch;
    uint32_t pw, ph;
    mi_status st;
    mi_lesionseg_kind k = mi_lesionseg_sniff(buf, n, &what);
    if (png_header_size(buf, n, &pw, &ph) && (uint64_t)pw * ph > (uint64_t)MI_LESIONSEG_MAX_PIXELS)
        return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: %ux%u pixels (%.1f megapixels) in its PNG header; at most %lld pixels "
                       "(%.1f megapixels) are segmented at the original size", name, pw, ph, (double)pw * ph / 1048576.0,
                       MI_LESIONSEG_MAX_PIXELS, (double)MI_LESIONSEG_MAX_PIXELS / 1048576.0);
    if (k == MI_LESIONSEG_VIDEO) return MI_FAIL(MI_ERR_FORMAT, "%s: a video, not a still image", name);
    if (k != MI_LESIONSEG_IMAGE)
        return MI_FAIL(MI_ERR_FORMAT, "%s: %s; this pipeline reads PNG, JPEG and BMP images and MP4, MOV, MKV, WebM, "
                       "AVI and MPEG-TS videos", name, *what ? what : "neither an image nor a video it can read");
    if ((st = mi_image_info_memory(buf, n, name, &w, &h)) || (st = mi_lesionseg_check_size(name, w, h))) return st;
    if ((ch = mi_image_channels_memory(buf, n)) == 1 || ch == 2)
        return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: a grey image (%d channel%s in the file); the lesion networks were "
                       "trained on colour endoscopy images and need RGB", name, ch, ch == 1 ? "" : "s with alpha");
    if ((st = mi_image_load_memory(img, buf, n, name))) return st;
    /* an RGB file may still hold a grey picture (R = G = B everywhere): the same mismatch */
    const size_t np = (size_t)img->w * img->h;
    size_t i = 0;
    while (i < np && img->px[3 * i] == img->px[3 * i + 1] && img->px[3 * i] == img->px[3 * i + 2]) i++;
    if (i == np) {
        mi_image_free(img);
        return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: every pixel is grey (R = G = B); the lesion networks were trained on "
                       "colour endoscopy images", name);
    }
    return MI_OK;
}

mi_status mi_lesionseg_load_image(const char *path, mi_image *img, char *sha256) {
    memset(img, 0, sizeof *img);
    if (sha256) sha256[0] = 0;
    unsigned char *buf;
    size_t n;
    mi_status st = read_all(path, &buf, &n);
    if (st) return st;
    if (sha256) mi_sha256_hex(buf, n, sha256);
    st = mi_lesionseg_load_image_memory(buf, n, path, img);
    free(buf);
    return st;
}
