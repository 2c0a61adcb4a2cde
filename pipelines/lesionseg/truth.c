/* pipelines/lesionseg/truth.c - a result against a known outline: the reference masks of
 * labelled data (the synthetic generator's NNNN_mask.png, Kvasir-SEG's masks/<id>.jpg) and the
 * two overlap measures segmentation papers report. For validating a model on labelled images
 * and for the demo; never part of a clinical result. */
#include "pipelines/lesionseg/lesionseg.h"

#include <stdlib.h>

mi_status mi_lesionseg_truth_load(const char *path, int w, int h, uint8_t **mask) {
    *mask = NULL;
    mi_image img;
    mi_status st = mi_image_load(&img, path);
    if (st) return st;
    if (img.w != w || img.h != h) {
        st = MI_FAIL(MI_ERR_SHAPE, "%s: reference mask is %dx%d, the image %dx%d", path, img.w, img.h, w, h);
        mi_image_free(&img);
        return st;
    }
    const size_t n = (size_t)w * h;
    uint8_t *m = malloc(n);
    if (!m) {
        mi_image_free(&img);
        return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = img.px + 3 * i;
        m[i] = p[0] + p[1] + p[2] >= 3 * 128;
    }
    mi_image_free(&img);
    *mask = m;
    return MI_OK;
}

void mi_lesionseg_overlap(const uint8_t *a, const uint8_t *b, size_t n, double *dice, double *iou) {
    size_t both = 0, na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        na += a[i] != 0;
        nb += b[i] != 0;
        both += a[i] && b[i];
    }
    *dice = na + nb ? 2.0 * (double)both / (double)(na + nb) : 1.0;
    *iou = na + nb ? (double)both / (double)(na + nb - both) : 1.0;
}
