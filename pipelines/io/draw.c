/* pipelines/io/draw.c - see draw.h. */
#include "pipelines/io/draw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wconversion"
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

void mi_draw_fill(mi_image *im, int x0, int y0, int w, int h, const uint8_t rgb[3]) {
    for (int y = y0 < 0 ? 0 : y0; y < y0 + h && y < im->h; y++)
        for (int x = x0 < 0 ? 0 : x0; x < x0 + w && x < im->w; x++)
            memcpy(im->px + ((size_t)y * im->w + x) * 3, rgb, 3);
}

void mi_draw_rect(mi_image *im, int x0, int y0, int x1, int y1, int thick, const uint8_t rgb[3]) {
    const int w = x1 - x0 + 1, h = y1 - y0 + 1;
    mi_draw_fill(im, x0, y0, w, thick, rgb);
    mi_draw_fill(im, x0, y1 - thick + 1, w, thick, rgb);
    mi_draw_fill(im, x0, y0, thick, h, rgb);
    mi_draw_fill(im, x1 - thick + 1, y0, thick, h, rgb);
}

void mi_draw_line(mi_image *im, int x0, int y0, int x1, int y1, int thick, const uint8_t rgb[3]) {
    const int dx = abs(x1 - x0), dy = abs(y1 - y0), n = dx > dy ? dx : dy;
    for (int i = 0; i <= n; i++) {   /* n + 1 samples along the longer axis: no gaps */
        const int x = n ? x0 + (x1 - x0) * i / n : x0, y = n ? y0 + (y1 - y0) * i / n : y0;
        mi_draw_fill(im, x - thick / 2, y - thick / 2, thick, thick, rgb);
    }
}

void mi_draw_dot(mi_image *im, int x, int y, int r, const uint8_t rgb[3]) {
    mi_draw_fill(im, x - r, y - r, 2 * r + 1, 2 * r + 1, rgb);
}

/* The font covers printable ASCII only and indexes its table by the byte: anything else (a
 * label from a server, UTF-8) is drawn and measured as '?'. */
static void ascii_copy(char *buf, size_t cap, const char *s) {
    snprintf(buf, cap, "%s", s);
    for (char *p = buf; *p; p++) if (*p < 32 || *p > 126) *p = '?';
}

int mi_draw_text_width(const char *s) {
    char buf[160];
    ascii_copy(buf, sizeof buf, s);
    return stb_easy_font_width(buf);
}

int mi_draw_text(mi_image *im, int x, int y, int scale, int max_w, const char *s, const uint8_t rgb[3]) {
    char vbuf[60000];   /* ~270 quads per 64 characters: far more than one line needs */
    char buf[160];
    ascii_copy(buf, sizeof buf, s);
    int nq = stb_easy_font_print(0, 0, buf, NULL, vbuf, sizeof vbuf), right = 0;
    for (int q = 0; q < nq; q++) {
        const float *v0 = (const float *)(vbuf + (size_t)q * 64), *v2 = (const float *)(vbuf + (size_t)q * 64 + 32);
        int qx0 = (int)v0[0] * scale, qy0 = (int)v0[1] * scale, qx1 = (int)(v2[0] + 0.5f) * scale,
            qy1 = (int)(v2[1] + 0.5f) * scale;
        if (qx1 > max_w) qx1 = max_w;
        if (qx1 > qx0 && qy1 > qy0) mi_draw_fill(im, x + qx0, y + qy0, qx1 - qx0, qy1 - qy0, rgb);
        if (qx1 > right) right = qx1;
    }
    return right;
}
