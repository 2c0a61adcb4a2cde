/* pipelines/endoqc/sheet.c - the contact sheet: the photo-documentation page of an exam.
 *
 * One cell per site in the preset order, 7 per row: the site's best frame (highest probability
 * among the frames that counted) with its number, label, probability and time; a grey box marked
 * MISSING where the site was not seen. A header line carries the video, verdict and model.
 * Text is drawn by pipelines/io/draw.c. */
#include "pipelines/endoqc/endoqc.h"

#include "pipelines/io/draw.h"

#include <stdio.h>
#include <string.h>

#define COLS   7
#define CELL_W 192
#define THUMB_S 160
#define CELL_H (THUMB_S + 34)
#define MARGIN 8
#define HEADER 44

mi_status mi_endoqc_contact_sheet(const mi_endoqc_result *r, const char *png_path) {
    static const uint8_t bg[3] = {24, 24, 28}, white[3] = {235, 235, 235}, grey[3] = {110, 110, 116},
                         dim[3] = {170, 170, 176}, green[3] = {90, 220, 120}, red[3] = {240, 90, 80};
    int rows = (r->nsites + COLS - 1) / COLS;
    mi_image im;
    mi_status st = mi_image_alloc(&im, MARGIN + COLS * (CELL_W + MARGIN), HEADER + rows * (CELL_H + MARGIN) + MARGIN);
    if (st != MI_OK) return st;
    mi_draw_fill(&im, 0, 0, im.w, im.h, bg);
    char line[256];
    const char *name = strrchr(r->video, '/') ? strrchr(r->video, '/') + 1 : r->video;
    snprintf(line, sizeof line, "%.120s: %s, %d of %d sites", name, r->complete ? "COMPLETE" : "INCOMPLETE",
             r->distinct, r->nsites);
    mi_draw_text(&im, MARGIN, 8, 2, im.w - 2 * MARGIN, line, r->complete ? green : red);
    snprintf(line, sizeof line, "medinfer %s endoqc  model %s %s (sha256 %.12s)  min %d frames at p >= %.2f, "
             "incomplete at <= %d sites", MI_VERSION, r->model_arch, r->model_version, r->model_sha256,
             r->opts.min_frames, r->opts.min_prob, r->opts.site_threshold);
    mi_draw_text(&im, MARGIN, 30, 1, im.w - 2 * MARGIN, line, dim);
    for (int i = 0; i < r->nsites; i++) {
        const mi_endoqc_site *s = &r->sites[i];
        int cx = MARGIN + (i % COLS) * (CELL_W + MARGIN), cy = HEADER + (i / COLS) * (CELL_H + MARGIN);
        int tx = cx + (CELL_W - THUMB_S) / 2;
        if (s->seen && s->thumb.px && s->thumb.w == THUMB_S && s->thumb.h == THUMB_S) {
            for (int y = 0; y < THUMB_S; y++)
                memcpy(im.px + ((size_t)(cy + y) * im.w + tx) * 3, s->thumb.px + (size_t)y * THUMB_S * 3, THUMB_S * 3);
        } else {
            mi_draw_fill(&im, tx, cy, THUMB_S, THUMB_S, grey);
            char word[16];
            snprintf(word, sizeof word, "%s", s->seen ? "SEEN" : "MISSING");
            int tw = 2 * mi_draw_text_width(word);
            mi_draw_text(&im, tx + (THUMB_S - tw) / 2, cy + THUMB_S / 2 - 8, 2, THUMB_S, word, s->seen ? white : bg);
        }
        snprintf(line, sizeof line, "%d %s", i + 1, s->label);
        mi_draw_text(&im, cx + 2, cy + THUMB_S + 4, 1, CELL_W - 4, line, s->seen ? white : red);
        if (s->frames > 0)
            snprintf(line, sizeof line, "p %.2f at %.1f s, %d frame%s", s->best_prob, s->best_ms / 1000.0, s->frames,
                     s->frames == 1 ? "" : "s");
        else
            snprintf(line, sizeof line, "not seen");
        mi_draw_text(&im, cx + 2, cy + THUMB_S + 18, 1, CELL_W - 4, line, s->seen ? dim : red);
    }
    st = mi_image_write_png(png_path, &im);
    mi_image_free(&im);
    return st;
}
