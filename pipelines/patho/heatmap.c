/* pipelines/patho/heatmap.c - the picture a pathologist looks at first: the slide thumbnail with
 * the lesion probability laid over it where tiles were analysed, the top-K tiles outlined and
 * ranked, and the slide's class with its probabilities in a band above. */
#include "pipelines/patho/patho.h"

#include "pipelines/io/draw.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* a perceptually ordered blue -> yellow -> red ramp (5 stops, linear between) */
static void ramp(float p, uint8_t rgb[3]) {
    static const float stops[5][3] = { { 49, 54, 149 }, { 116, 173, 209 }, { 254, 224, 144 },
                                       { 244, 109, 67 }, { 165, 0, 38 } };
    p = p < 0 ? 0 : p > 1 ? 1 : p;
    const float f = p * 4;
    const int i = f >= 4 ? 3 : (int)f;
    const float t = f - (float)i;
    for (int c = 0; c < 3; c++) rgb[c] = (uint8_t)lrintf(stops[i][c] + t * (stops[i + 1][c] - stops[i][c]));
}

mi_status mi_patho_heatmap(const char *png, const mi_patho_result *r, const char *title, const char *note) {
    const int tw = r->thumb.w, th = r->thumb.h, band = 44, legend = 16;
    mi_image im;
    mi_status st = mi_image_alloc(&im, tw < 360 ? 360 : tw, th + band + legend);
    if (st) return st;
    static const uint8_t white[3] = { 255, 255, 255 }, black[3] = { 0, 0, 0 }, grey[3] = { 90, 90, 90 },
                         green[3] = { 0, 150, 60 };
    mi_draw_fill(&im, 0, 0, im.w, im.h, white);
    for (int y = 0; y < th; y++)
        for (int x = 0; x < tw; x++) {
            const uint8_t *s = r->thumb.px + 3 * ((size_t)y * tw + x);
            uint8_t *d = im.px + 3 * ((size_t)(y + band) * im.w + x);
            const float p = r->map && y < r->map_h && x < r->map_w ? r->map[(size_t)y * r->map_w + x] : NAN;
            if (isnan(p)) {
                memcpy(d, s, 3);
                continue;
            }
            uint8_t c[3];
            ramp(p, c);
            const float a = 0.35f + 0.4f * p;       /* tissue stays visible under low probability */
            for (int k = 0; k < 3; k++) d[k] = (uint8_t)lrintf((1 - a) * s[k] + a * c[k]);
        }
    /* the top-K tiles, ranked; thumbnail pixels per level-0 pixel on each axis */
    const double sx = 1 / r->map_ds, sy = sx;
    for (int i = r->ntop - 1; i >= 0; i--) {
        const mi_patho_tile *t = &r->top[i];
        const int x0 = (int)floor((double)t->x * sx), y0 = (int)floor((double)t->y * sy) + band;
        const int x1 = (int)ceil((double)(t->x + r->tile_l0) * sx) - 1, y1 = (int)ceil((double)(t->y + r->tile_l0) * sy) - 1 + band;
        mi_draw_rect(&im, x0, y0, x1, y1, 1, i == 0 ? black : green);
        char n[12];
        snprintf(n, sizeof n, "%d", i + 1);
        mi_draw_text(&im, x0 + 2, y0 + 2, 1, x1 - x0, n, black);
    }
    char line[256];
    mi_draw_text(&im, 4, 3, 1, im.w - 8, title, grey);
    if (!r->classified)
        snprintf(line, sizeof line, "no tissue tile: no class");
    else
        snprintf(line, sizeof line, "%s  p=%.2f", r->labels[r->cls], r->probs[r->cls]);
    mi_draw_text(&im, 4, 14, 2, im.w - 8, line, black);
    if (note && *note) mi_draw_text(&im, 4, 33, 1, im.w - 8, note, grey);
    /* legend: the ramp from p = 0 to 1 */
    const int ly = th + band + 3, lw = im.w / 2 < 200 ? im.w / 2 : 200;
    for (int x = 0; x < lw; x++) {
        uint8_t c[3];
        ramp((float)x / (float)(lw - 1), c);
        mi_draw_fill(&im, 40 + x, ly, 1, 10, c);
    }
    mi_draw_text(&im, 4, ly + 2, 1, 36, "p=0", grey);
    mi_draw_text(&im, 44 + lw, ly + 2, 1, 60, "p=1 lesion", grey);
    st = mi_image_write_png(png, &im);
    mi_image_free(&im);
    return st;
}
