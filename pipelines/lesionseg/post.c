/* pipelines/lesionseg/post.c - from the networks' R x R maps to the mask and its components at
 * the original image size.
 *
 * The mask is taken after up-sampling, not before: thresholding at R x R and scaling the mask up
 * would give staircase edges of w/R pixels, while the up-sampled probabilities place the edge
 * between the network's pixels where the probabilities cross. Up-sampling is torch's
 * F.interpolate(mode="bilinear", align_corners=False) by output size (ops/resize.c reproduces its
 * index math and arithmetic), so a PyTorch user who up-samples the same outputs gets the same
 * mask. Every output pixel is computed by one thread and the sums run in raster order: the
 * result does not depend on the thread count. */
#include "pipelines/lesionseg/lesionseg.h"

#include "ops/resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* (C, R, R) -> (C, h, w), bilinear, align_corners false */
static void upsample(float *dst, const float *src, int C, int R, int w, int h) {
    mi_tensor x = mi_tensor_view((float *)src, 4, (int64_t[4]){ 1, C, R, R }, "lesionseg.net_out");
    mi_tensor y = mi_tensor_view(dst, 4, (int64_t[4]){ 1, C, h, w }, "lesionseg.upsampled");
    mi_resize_linear(&y, &x, false, NULL);
}

typedef struct {
    mi_lesion_component c;
    double p_sum, d_sum;
} acc;

static int by_area(const void *a, const void *b) {
    const mi_lesion_component *x = a, *y = b;
    if (x->area != y->area) return x->area > y->area ? -1 : 1;
    return x->first < y->first ? -1 : x->first > y->first;
}

mi_status mi_lesionseg_components(const uint8_t *mask, const float *prob, const float *depth01, int w, int h,
                                  double depth_max_cm, mi_lesion_component **comps, int *n) {
    *comps = NULL;
    *n = 0;
    const int64_t N = (int64_t)w * h;
    int32_t *queue = malloc((size_t)N * sizeof *queue);
    uint8_t *seen = calloc((size_t)N, 1);
    acc *a = NULL;
    int na = 0, cap = 0;
    mi_status st = MI_OK;
    if (!queue || !seen) {
        st = MI_FAIL(MI_ERR_NOMEM, "lesionseg: out of memory labelling a %dx%d mask", w, h);
        goto done;
    }
    for (int64_t s = 0; s < N; s++) {
        if (!mask[s] || seen[s]) continue;
        if (na == cap) {
            cap = cap ? 2 * cap : 64;
            acc *p = realloc(a, (size_t)cap * sizeof *p);
            if (!p) {
                st = MI_FAIL(MI_ERR_NOMEM, "lesionseg: out of memory for %d components", cap);
                goto done;
            }
            a = p;
        }
        acc *c = &a[na++];
        memset(c, 0, sizeof *c);
        c->c.first = s;
        c->c.box[0] = w, c->c.box[1] = h;
        int64_t qh = 0, qt = 0;
        queue[qt++] = (int32_t)s;
        seen[s] = 1;
        while (qh < qt) {   /* breadth first from the first pixel: the same order on every run */
            const int32_t p = queue[qh++];
            const int x = p % w, y = p / w;
            c->c.area++;
            c->p_sum += prob[p];
            c->d_sum += depth01[p];
            if (x < c->c.box[0]) c->c.box[0] = x;
            if (y < c->c.box[1]) c->c.box[1] = y;
            if (x + 1 > c->c.box[2]) c->c.box[2] = x + 1;
            if (y + 1 > c->c.box[3]) c->c.box[3] = y + 1;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {   /* 8-connected: diagonal neighbours join */
                    const int nx = x + dx, ny = y + dy;
                    if ((!dx && !dy) || nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                    const int32_t q = ny * w + nx;
                    if (mask[q] && !seen[q]) seen[q] = 1, queue[qt++] = q;
                }
        }
    }
    if (na) {
        mi_lesion_component *out = malloc((size_t)na * sizeof *out);
        if (!out) {
            st = MI_FAIL(MI_ERR_NOMEM, "lesionseg: out of memory for %d components", na);
            goto done;
        }
        for (int i = 0; i < na; i++) {
            out[i] = a[i].c;
            out[i].mean_prob = a[i].p_sum / (double)a[i].c.area;
            out[i].mean_depth_cm = a[i].d_sum / (double)a[i].c.area * depth_max_cm;
        }
        qsort(out, (size_t)na, sizeof *out, by_area);
        *comps = out;
        *n = na;
    }
done:
    free(queue);
    free(seen);
    free(a);
    return st;
}

mi_status mi_lesionseg_postprocess(const float *probs, int C, const float *depth01, int R, int w, int h,
                                   float threshold, double depth_max_cm, mi_lesionseg_result *r) {
    mi_lesionseg_result_free(r);
    r->w = w, r->h = h;
    if (C != 1 && C != 2) return MI_FAIL(MI_ERR_ARG, "lesionseg: %d probability channels, expected 1 or 2", C);
    const size_t N = (size_t)w * h;
    r->prob = malloc((size_t)C * N * sizeof *r->prob);
    r->depth = malloc(N * sizeof *r->depth);
    r->mask = malloc(N);
    if (!r->prob || !r->depth || !r->mask)
        return MI_FAIL(MI_ERR_NOMEM, "lesionseg: out of memory for the %dx%d maps", w, h);
    upsample(r->prob, probs, C, R, w, h);
    upsample(r->depth, depth01, 1, R, w, h);
    if (C == 2) {
        const float *p0 = r->prob, *p1 = r->prob + N;
        for (size_t i = 0; i < N; i++) r->mask[i] = p1[i] > p0[i];
        memmove(r->prob, p1, N * sizeof *r->prob);   /* keep the lesion channel only */
        float *shrunk = realloc(r->prob, N * sizeof *r->prob);
        if (shrunk) r->prob = shrunk;
    } else {
        for (size_t i = 0; i < N; i++) r->mask[i] = r->prob[i] >= threshold;
    }
    double psum = 0, dsum = 0;
    float dmin = INFINITY, dmax = -INFINITY;
    for (size_t i = 0; i < N; i++) {
        if (r->mask[i]) r->area++, psum += r->prob[i];
        dsum += r->depth[i];
        if (r->depth[i] < dmin) dmin = r->depth[i];
        if (r->depth[i] > dmax) dmax = r->depth[i];
    }
    r->area_pct = 100.0 * (double)r->area / (double)N;
    r->mean_prob = r->area ? psum / (double)r->area : NAN;
    r->depth_cm_min = dmin * depth_max_cm;
    r->depth_cm_mean = dsum / (double)N * depth_max_cm;
    r->depth_cm_max = dmax * depth_max_cm;
    return mi_lesionseg_components(r->mask, r->prob, r->depth, w, h, depth_max_cm, &r->comps, &r->ncomps);
}
