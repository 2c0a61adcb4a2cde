/* pipelines/io/draw.h - drawing on a decoded RGB image (pipelines/io/image.h) for the pictures
 * the pipelines write: filled rectangles, outlines, lines, dots and ASCII text (stb_easy_font, a
 * public-domain vector font of axis-aligned quads). Everything is clipped to the image. */
#ifndef MI_IO_DRAW_H
#define MI_IO_DRAW_H

#include "pipelines/io/image.h"

void mi_draw_fill(mi_image *im, int x0, int y0, int w, int h, const uint8_t rgb[3]);
/* the outline of [x0, x1] x [y0, y1], `thick` pixels inwards */
void mi_draw_rect(mi_image *im, int x0, int y0, int x1, int y1, int thick, const uint8_t rgb[3]);
/* a straight line from (x0, y0) to (x1, y1), `thick` pixels wide */
void mi_draw_line(mi_image *im, int x0, int y0, int x1, int y1, int thick, const uint8_t rgb[3]);
/* a filled square dot of side 2r+1 centred on (x, y) */
void mi_draw_dot(mi_image *im, int x, int y, int r, const uint8_t rgb[3]);
/* text at (x, y), scaled by an integer, clipped to max_w pixels from x; characters outside
 * printable ASCII are drawn as '?'. Returns the width drawn. */
int  mi_draw_text(mi_image *im, int x, int y, int scale, int max_w, const char *s, const uint8_t rgb[3]);
/* width in pixels of s at scale 1 */
int  mi_draw_text_width(const char *s);

#endif
