/* pipelines/endoqc/sheet.c - the contact sheet: the photo-documentation page of an exam.
 *
 * One cell per site in the preset order, 7 per row: the site's best frame (highest probability
 * among the frames that counted) with its number, label, probability and time; a grey box marked
 * MISSING where the site was not seen. A header line carries the video, verdict and model.
 * Text is drawn with stb_easy_font (a public-domain vector font of axis-aligned quads). */
#include "pipelines/endoqc/endoqc.h"

#include <stdio.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wconversion"
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

#define COLS   7
#define CELL_W 192
#define THUMB_S 160
#define CELL_H (THUMB_S + 34)
#define MARGIN 8
#define HEADER 44

static void fill(mi_image *im, int x0, int y0, int w, int h, const uint8_t rgb[3]) {
    for (int y = y0 < 0 ? 0 : y0; y < y0 + h && y < im->h; y++)
        for (int x = x0 < 0 ? 0 : x0; x < x0 + w && x < im->w; x++)
            memcpy(im->px + ((size_t)y * im->w + x) * 3, rgb, 3);
}

/* text at (x, y), scaled by an integer, clipped to max_w pixels */
static void text(mi_image *im, int x, int y, int scale, int max_w, const char *s, const uint8_t rgb[3]) {
    static char vbuf[60000];   /* ~270 quads per 64 characters: far more than one line needs */
    char buf[160];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *p = buf; *p; p++) if (*p < 32 || *p > 126) *p = '?';   /* the font covers ASCII only */
    int nq = stb_easy_font_print(0, 0, buf, NULL, vbuf, sizeof vbuf);
    for (int q = 0; q < nq; q++) {
        const float *v0 = (const float *)(vbuf + (size_t)q * 64), *v2 = (const float *)(vbuf + (size_t)q * 64 + 32);
        int qx0 = (int)v0[0] * scale, qy0 = (int)v0[1] * scale, qx1 = (int)(v2[0] + 0.5f) * scale,
            qy1 = (int)(v2[1] + 0.5f) * scale;
        if (qx1 > max_w) qx1 = max_w;
        if (qx1 > qx0 && qy1 > qy0) fill(im, x + qx0, y + qy0, qx1 - qx0, qy1 - qy0, rgb);
    }
}

mi_status mi_endoqc_contact_sheet(const mi_endoqc_result *r, const char *png_path) {
    static const uint8_t bg[3] = {24, 24, 28}, white[3] = {235, 235, 235}, grey[3] = {110, 110, 116},
                         dim[3] = {170, 170, 176}, green[3] = {90, 220, 120}, red[3] = {240, 90, 80};
    int rows = (r->nsites + COLS - 1) / COLS;
    mi_image im;
    mi_status st = mi_image_alloc(&im, MARGIN + COLS * (CELL_W + MARGIN), HEADER + rows * (CELL_H + MARGIN) + MARGIN);
    if (st != MI_OK) return st;
    fill(&im, 0, 0, im.w, im.h, bg);
    char line[256];
    const char *name = strrchr(r->video, '/') ? strrchr(r->video, '/') + 1 : r->video;
    snprintf(line, sizeof line, "%.120s: %s, %d of %d sites", name, r->complete ? "COMPLETE" : "INCOMPLETE",
             r->distinct, r->nsites);
    text(&im, MARGIN, 8, 2, im.w - 2 * MARGIN, line, r->complete ? green : red);
    snprintf(line, sizeof line, "medinfer %s endoqc  model %s %s (sha256 %.12s)  min %d frames at p >= %.2f, "
             "incomplete at <= %d sites", MI_VERSION, r->model_arch, r->model_version, r->model_sha256,
             r->opts.min_frames, r->opts.min_prob, r->opts.site_threshold);
    text(&im, MARGIN, 30, 1, im.w - 2 * MARGIN, line, dim);
    for (int i = 0; i < r->nsites; i++) {
        const mi_endoqc_site *s = &r->sites[i];
        int cx = MARGIN + (i % COLS) * (CELL_W + MARGIN), cy = HEADER + (i / COLS) * (CELL_H + MARGIN);
        int tx = cx + (CELL_W - THUMB_S) / 2;
        if (s->seen && s->thumb.px && s->thumb.w == THUMB_S && s->thumb.h == THUMB_S) {
            for (int y = 0; y < THUMB_S; y++)
                memcpy(im.px + ((size_t)(cy + y) * im.w + tx) * 3, s->thumb.px + (size_t)y * THUMB_S * 3, THUMB_S * 3);
        } else {
            fill(&im, tx, cy, THUMB_S, THUMB_S, grey);
            char word[16];
            snprintf(word, sizeof word, "%s", s->seen ? "SEEN" : "MISSING");
            int tw = 2 * stb_easy_font_width(word);
            text(&im, tx + (THUMB_S - tw) / 2, cy + THUMB_S / 2 - 8, 2, THUMB_S, word, s->seen ? white : bg);
        }
        snprintf(line, sizeof line, "%d %s", i + 1, s->label);
        text(&im, cx + 2, cy + THUMB_S + 4, 1, CELL_W - 4, line, s->seen ? white : red);
        if (s->frames > 0)
            snprintf(line, sizeof line, "p %.2f at %.1f s, %d frame%s", s->best_prob, s->best_ms / 1000.0, s->frames,
                     s->frames == 1 ? "" : "s");
        else
            snprintf(line, sizeof line, "not seen");
        text(&im, cx + 2, cy + THUMB_S + 18, 1, CELL_W - 4, line, s->seen ? dim : red);
    }
    st = mi_image_write_png(png_path, &im);
    mi_image_free(&im);
    return st;
}
