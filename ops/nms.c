/* ops/nms.c - NMS, batched NMS and top-k (see nms.h), with torchvision 0.14's orderings.
 *
 * mi_nms is torchvision/csrc/ops/cpu/nms_kernel.cpp: areas (x2-x1)*(y2-y1) first, boxes visited
 * in the order of scores.sort(stable=true, descending=true), IoU as inter / (area_i + area_j -
 * inter) in float, suppression when IoU > threshold. The kernel compares the float IoU with a
 * double threshold; ours is a float, which decides the same way unless the caller's threshold
 * rounded up when it became a float (see nms.h).
 *
 * Sorting here is a stable merge sort, descending with NaN first as torch sorts. torch.topk and
 * the final sort(descending=True) of _batched_nms_vanilla are not stable on CPU (libstdc++
 * partial_sort / nth_element / introsort under the hood), so among equal values their order is
 * an accident of those algorithms; ours puts equal values in ascending index order, which the
 * tests check and which agrees with torch whenever the values are distinct.
 *
 * No allocation: the caller's scratch holds the index arrays. */
#include "ops/nms.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

/* ---- scratch layout ---------------------------------------------------------------------- */

static size_t round_up(size_t b) { return (b + 63) & ~(size_t)63; }

/* Carves n elements of size sz from *p, 64-byte aligned. */
static void *carve(unsigned char **p, int64_t n, size_t sz) {
    void *r = *p;
    *p += round_up((size_t)(n > 0 ? n : 0) * sz);
    return r;
}

/* ---- stable merge sort of indices -------------------------------------------------------- */

/* true when a must come before b (ties: false both ways, so the merge keeps the earlier run first) */
typedef bool (*before_fn)(int64_t a, int64_t b, const void *ctx);

static bool score_before(int64_t a, int64_t b, const void *ctx) {   /* descending, NaN first */
    const float *s = ctx;
    return s[a] > s[b] || (isnan(s[a]) && !isnan(s[b]));
}

/* Sorts idx[0..n) stably; tmp has room for n. Bottom-up, ping-ponging between the two arrays. */
static void merge_sort(int64_t *idx, int64_t *tmp, int64_t n, before_fn before, const void *ctx) {
    int64_t *src = idx, *dst = tmp;
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) dst[o++] = before(src[j], src[i], ctx) ? src[j++] : src[i++];
            while (i < mid) dst[o++] = src[i++];
            while (j < hi) dst[o++] = src[j++];
        }
        int64_t *t = src; src = dst; dst = t;
    }
    if (src != idx) memcpy(idx, src, (size_t)n * sizeof *idx);
}

/* ---- NMS ----------------------------------------------------------------------------------- */

size_t mi_nms_scratch_bytes(int64_t n) {
    return 2 * round_up((size_t)(n > 0 ? n : 0) * sizeof(int64_t)) + round_up((size_t)(n > 0 ? n : 0) * sizeof(float))
         + round_up((size_t)(n > 0 ? n : 0)) + 64;
}

int64_t mi_nms(int64_t *keep, const float (*boxes)[4], const float *scores, int64_t n, double iou_thresh,
               void *scratch) {
    if (n <= 0) return 0;
    unsigned char *p = (unsigned char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    int64_t *order = carve(&p, n, sizeof(int64_t)), *tmp = carve(&p, n, sizeof(int64_t));
    float *areas = carve(&p, n, sizeof(float));
    unsigned char *suppressed = carve(&p, n, 1);

    for (int64_t i = 0; i < n; i++) {
        areas[i] = (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]);
        order[i] = i;
        suppressed[i] = 0;
    }
    merge_sort(order, tmp, n, score_before, scores);

    int64_t nkeep = 0;
    for (int64_t oi = 0; oi < n; oi++) {
        int64_t i = order[oi];
        if (suppressed[i]) continue;
        keep[nkeep++] = i;
        float ix1 = boxes[i][0], iy1 = boxes[i][1], ix2 = boxes[i][2], iy2 = boxes[i][3], iarea = areas[i];
        for (int64_t oj = oi + 1; oj < n; oj++) {
            int64_t j = order[oj];
            if (suppressed[j]) continue;
            /* std::max / std::min: max(a, b) is (a < b) ? b : a, which decides NaN like the kernel */
            float xx1 = ix1 < boxes[j][0] ? boxes[j][0] : ix1;
            float yy1 = iy1 < boxes[j][1] ? boxes[j][1] : iy1;
            float xx2 = boxes[j][2] < ix2 ? boxes[j][2] : ix2;
            float yy2 = boxes[j][3] < iy2 ? boxes[j][3] : iy2;
            float w = 0.0f < xx2 - xx1 ? xx2 - xx1 : 0.0f;
            float h = 0.0f < yy2 - yy1 ? yy2 - yy1 : 0.0f;
            float inter = w * h;
            float ovr = inter / (iarea + areas[j] - inter);
            if (ovr > iou_thresh) suppressed[j] = 1;
        }
    }
    return nkeep;
}

/* ---- batched NMS ----------------------------------------------------------------------------- */

/* torchvision switches on boxes.numel() > 4000 on CPU */
#define VANILLA_MIN_BOXES 1000

size_t mi_batched_nms_scratch_bytes(int64_t n) {
    size_t m = (size_t)(n > 0 ? n : 0);
    /* shifted or gathered boxes, gathered scores, class order + its sort buffer, kept list,
       keep mask, then one NMS's scratch */
    return round_up(m * 4 * sizeof(float)) + round_up(m * sizeof(float)) + 3 * round_up(m * sizeof(int64_t))
         + round_up(m) + mi_nms_scratch_bytes(n) + 64;
}

typedef struct { const int64_t *idx; } class_ctx;

static bool class_before(int64_t a, int64_t b, const void *ctx) {
    const int64_t *idx = ((const class_ctx *)ctx)->idx;
    return idx[a] < idx[b];
}

/* _batched_nms_coordinate_trick: every box moved by idx * (boxes.max() + 1), then one NMS */
static int64_t batched_trick(int64_t *keep, const float (*boxes)[4], const float *scores, const int64_t *idx,
                             int64_t n, double iou_thresh, float (*shifted)[4], void *nms_scratch) {
    float maxc = boxes[0][0];
    for (int64_t i = 0; i < n; i++)       /* Tensor.max(): NaN wins */
        for (int c = 0; c < 4; c++)
            if (boxes[i][c] > maxc || isnan(boxes[i][c])) { maxc = boxes[i][c]; if (isnan(maxc)) goto done; }
done:;
    float span = maxc + 1.0f;
    for (int64_t i = 0; i < n; i++) {
        float off = (float)idx[i] * span;
        for (int c = 0; c < 4; c++) shifted[i][c] = boxes[i][c] + off;
    }
    return mi_nms(keep, (const float (*)[4])shifted, scores, n, iou_thresh, nms_scratch);
}

/* _batched_nms_vanilla: NMS per category on its boxes in index order, then the kept indices in
   ascending order sorted by descending score */
static int64_t batched_vanilla(int64_t *keep, const float (*boxes)[4], const float *scores, const int64_t *idx,
                               int64_t n, double iou_thresh, unsigned char *p) {
    float (*gb)[4] = carve(&p, n, 4 * sizeof(float));
    float *gs = carve(&p, n, sizeof(float));
    int64_t *cls = carve(&p, n, sizeof(int64_t)), *tmp = carve(&p, n, sizeof(int64_t));
    int64_t *kept = carve(&p, n, sizeof(int64_t));
    unsigned char *mask = carve(&p, n, 1);
    void *nms_scratch = p;

    for (int64_t i = 0; i < n; i++) { cls[i] = i; mask[i] = 0; }
    class_ctx cc = { idx };
    merge_sort(cls, tmp, n, class_before, &cc);   /* categories grouped, indices ascending within */
    for (int64_t g = 0; g < n;) {
        int64_t e = g;
        while (e < n && idx[cls[e]] == idx[cls[g]]) e++;
        for (int64_t t = g; t < e; t++) {
            memcpy(gb[t - g], boxes[cls[t]], sizeof gb[0]);
            gs[t - g] = scores[cls[t]];
        }
        int64_t m = mi_nms(kept, (const float (*)[4])gb, gs, e - g, iou_thresh, nms_scratch);
        for (int64_t t = 0; t < m; t++) mask[cls[g + kept[t]]] = 1;
        g = e;
    }
    int64_t nkeep = 0;
    for (int64_t i = 0; i < n; i++)
        if (mask[i]) keep[nkeep++] = i;
    merge_sort(keep, tmp, nkeep, score_before, scores);
    return nkeep;
}

int64_t mi_batched_nms(int64_t *keep, const float (*boxes)[4], const float *scores, const int64_t *idx,
                       int64_t n, double iou_thresh, void *scratch) {
    if (n <= 0) return 0;
    unsigned char *p = (unsigned char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    if (n > VANILLA_MIN_BOXES) return batched_vanilla(keep, boxes, scores, idx, n, iou_thresh, p);
    float (*shifted)[4] = carve(&p, n, 4 * sizeof(float));
    return batched_trick(keep, boxes, scores, idx, n, iou_thresh, shifted, p);
}

/* ---- top-k ------------------------------------------------------------------------------------ */

size_t mi_topk_scratch_bytes(int64_t n) {
    return 2 * round_up((size_t)(n > 0 ? n : 0) * sizeof(int64_t)) + 64;
}

void mi_topk(int64_t *idx, const float *v, int64_t n, int64_t k, void *scratch) {
    if (n <= 0 || k <= 0) return;
    unsigned char *p = (unsigned char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    int64_t *order = carve(&p, n, sizeof(int64_t)), *tmp = carve(&p, n, sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) order[i] = i;
    merge_sort(order, tmp, n, score_before, v);
    memcpy(idx, order, (size_t)(k < n ? k : n) * sizeof *idx);
}
