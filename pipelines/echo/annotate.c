/* pipelines/echo/annotate.c - the picture a sonographer checks: the M-mode image with the cycle
 * box, the eight wall points joined by calipers at end-diastole and end-systole, and the numbers
 * in a panel below the image (never over the data). */
#include "pipelines/echo/echo.h"

#include "pipelines/io/draw.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define PANEL 78

static int px(float v) { return (int)lrintf(v); }

mi_status mi_echo_annotate(const char *png_path, const uint8_t *gray, int w, int h, const mi_echo_result *r,
                           const char *title) {
    static const uint8_t yellow[3] = { 250, 210, 40 }, green[3] = { 80, 230, 110 }, cyan[3] = { 70, 200, 250 },
                         white[3] = { 235, 235, 235 }, dim[3] = { 160, 160, 168 }, red[3] = { 245, 90, 80 },
                         bg[3] = { 20, 20, 24 };
    mi_image im;
    const int cw = w < 420 ? 420 : w;
    mi_status st = mi_image_alloc(&im, cw, h + PANEL);
    if (st) return st;
    mi_draw_fill(&im, 0, 0, im.w, im.h, bg);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) memset(im.px + ((size_t)y * im.w + x) * 3, gray[(size_t)y * w + x], 3);
    char line[256];
    if (r->found) {
        mi_draw_rect(&im, px(r->box[0]), px(r->box[1]), px(r->box[2]), px(r->box[3]), 2, yellow);
        snprintf(line, sizeof line, "cycle p=%.2f", r->score);
        mi_draw_text(&im, px(r->box[0]) + 4, px(r->box[1]) + 4, 1, w, line, yellow);
        for (int phase = 0; phase < 2; phase++) {
            const uint8_t *col = phase ? cyan : green;
            const float (*p)[2] = (const float (*)[2])r->pts + 4 * phase;
            for (int k = 0; k < 3; k++) mi_draw_line(&im, px(p[k][0]), px(p[k][1]), px(p[k + 1][0]), px(p[k + 1][1]), 1, col);
            for (int k = 0; k < 4; k++) mi_draw_dot(&im, px(p[k][0]), px(p[k][1]), 2, col);
            mi_draw_text(&im, px(p[0][0]) + 3, px(p[0][1]) - 12, 1, w, phase ? "ES" : "ED", col);
        }
    }
    const int y0 = h + 6;
    const bool depth = r->cal.mm_per_px > 0;
    if (!r->found) {
        snprintf(line, sizeof line, "no cardiac cycle found (best score %.2f)", r->score);
        mi_draw_text(&im, 6, y0, 2, im.w - 12, line, red);
    } else if (depth && r->ordered) {
        snprintf(line, sizeof line, "EF %.1f %% (%s)", r->ef, r->ef_abnormal ? (r->ef < 50 ? "LOW" : "HIGH") : "normal");
        mi_draw_text(&im, 6, y0, 2, im.w - 12, line, r->ef_abnormal ? red : green);
    } else {
        if (r->ordered) snprintf(line, sizeof line, "FS %.1f %%  uncalibrated: no volumes, no EF", r->fs);
        else snprintf(line, sizeof line, "wall points out of order: no FS, volumes or EF");
        mi_draw_text(&im, 6, y0, 2, im.w - 12, line, r->ordered ? yellow : red);
    }
    if (r->found) {
        line[0] = 0;
        if (depth && r->ordered)
            snprintf(line, sizeof line, "EDV %.0f mL  ESV %.0f mL  FS %.1f %%", r->edv, r->esv, r->fs);
        if (r->cal.s_per_px > 0 && isfinite(r->heart_rate))
            snprintf(line + strlen(line), sizeof line - strlen(line), "%sHR %.0f /min", line[0] ? "  " : "", r->heart_rate);
        mi_draw_text(&im, 6, y0 + 22, 1, im.w - 12, line, white);
        const double *v = depth ? r->len_mm : r->len_px;
        snprintf(line, sizeof line, "IVSd %.1f  LVIDd %.1f  LVPWd %.1f  |  IVSs %.1f  LVIDs %.1f  LVPWs %.1f %s", v[0], v[1],
                 v[2], v[3], v[4], v[5], depth ? "mm" : "px");
        mi_draw_text(&im, 6, y0 + 36, 1, im.w - 12, line, white);
    }
    mi_draw_text(&im, 6, y0 + 54, 1, im.w - 12, title, dim);
    st = mi_image_write_png(png_path, &im);
    mi_image_free(&im);
    return st;
}
