/* pipelines/patho/graph.c - top-K keeper, feature similarity, adjacency (see graph.h). */
#include "pipelines/patho/graph.h"

#include <math.h>
#include <string.h>

/* ---- top-K keeper ---------------------------------------------------------------------------- */

size_t mi_patho_topk_bytes(int64_t k, int64_t f) {
    if (k < 1 || k > MI_PATHO_TOPK_MAX || f < 0 || f > MI_PATHO_TOPK_MAX) return 0;
    /* index (8 bytes), score and heap slot (4 each) and f floats a slot: at most 2^20 * (16 +
     * 2^22) bytes, well inside size_t on 64-bit hosts; checked for 32-bit ones */
    const uint64_t b = (uint64_t)k * (16 + 4 * (uint64_t)f);
    return b > SIZE_MAX ? 0 : (size_t)b;
}

mi_status mi_patho_topk_init(mi_patho_topk *t, int64_t k, int64_t f, void *mem, size_t bytes) {
    memset(t, 0, sizeof *t);
    const size_t need = mi_patho_topk_bytes(k, f);
    if (!need)
        return MI_FAIL(MI_ERR_ARG, "top-K keeper: k = %lld, f = %lld, expected k in 1..%d and f in 0..%d",
                       (long long)k, (long long)f, MI_PATHO_TOPK_MAX, MI_PATHO_TOPK_MAX);
    if (!mem || bytes < need)
        return MI_FAIL(MI_ERR_ARG, "top-K keeper: %zu bytes for k = %lld, f = %lld, %zu needed",
                       mem ? bytes : 0, (long long)k, (long long)f, need);
    if ((uintptr_t)mem % sizeof(int64_t))
        return MI_FAIL(MI_ERR_ARG, "top-K keeper: memory not aligned to 8 bytes");
    t->k = k;
    t->f = f;
    t->index = mem;
    t->score = (float *)(t->index + k);
    t->heap = (int32_t *)(t->score + k);
    t->feat = (float *)(t->heap + k);
    return MI_OK;
}

/* slot a ranks below slot b: lower score, or equal score and larger index */
static inline bool worse(const mi_patho_topk *t, int32_t a, int32_t b) {
    return t->score[a] < t->score[b] || (t->score[a] == t->score[b] && t->index[a] > t->index[b]);
}

static void sift_down(mi_patho_topk *t, int64_t i, int64_t n) {
    int32_t *h = t->heap;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && worse(t, h[c + 1], h[c])) c++;
        if (!worse(t, h[c], h[i])) return;
        int32_t s = h[c]; h[c] = h[i]; h[i] = s;
        i = c;
    }
}

mi_status mi_patho_topk_push(mi_patho_topk *t, float score, int64_t index, const float *feat) {
    if (isnan(score))
        return MI_FAIL(MI_ERR_ARG, "top-K keeper: item %lld has a NaN score", (long long)index);
    if (t->sorted)
        return MI_FAIL(MI_ERR_ARG, "top-K keeper: item %lld pushed after the keeper was sorted", (long long)index);
    if (t->f > 0 && !feat)
        return MI_FAIL(MI_ERR_ARG, "top-K keeper: item %lld has no feature vector", (long long)index);
    t->seen++;
    int32_t slot;
    if (t->n < t->k) {
        slot = (int32_t)t->n;
        t->score[slot] = score;
        t->index[slot] = index;
        int64_t i = t->n++;
        t->heap[i] = slot;
        while (i > 0 && worse(t, t->heap[i], t->heap[(i - 1) / 2])) {   /* sift up */
            int64_t p = (i - 1) / 2;
            int32_t s = t->heap[p]; t->heap[p] = t->heap[i]; t->heap[i] = s;
            i = p;
        }
    } else {
        slot = t->heap[0];
        const bool better = score > t->score[slot] || (score == t->score[slot] && index < t->index[slot]);
        if (!better) return MI_OK;
        t->score[slot] = score;
        t->index[slot] = index;
        sift_down(t, 0, t->n);
    }
    if (t->f > 0) memcpy(t->feat + (int64_t)slot * t->f, feat, (size_t)t->f * sizeof(float));
    return MI_OK;
}

int64_t mi_patho_topk_sort(mi_patho_topk *t) {
    if (!t->sorted) {
        /* heapsort: the worst goes to the end each time, so the array ends best first */
        for (int64_t end = t->n - 1; end > 0; end--) {
            int32_t s = t->heap[0]; t->heap[0] = t->heap[end]; t->heap[end] = s;
            sift_down(t, 0, end);
        }
        t->sorted = true;
    }
    return t->n;
}

const float *mi_patho_topk_item(const mi_patho_topk *t, int64_t r, float *score, int64_t *index) {
    if (!t->sorted || r < 0 || r >= t->n) return NULL;
    const int32_t slot = t->heap[r];
    if (score) *score = t->score[slot];
    if (index) *index = t->index[slot];
    return t->feat + (int64_t)slot * t->f;
}

int64_t mi_patho_topk_features(const mi_patho_topk *t, float *out) {
    if (!t->sorted) return -1;
    for (int64_t r = 0; r < t->n && t->f > 0; r++)
        memcpy(out + r * t->f, t->feat + (int64_t)t->heap[r] * t->f, (size_t)t->f * sizeof(float));
    return t->n;
}

/* ---- similarity and adjacency ---------------------------------------------------------------- */

mi_status mi_sim_metric_parse(const char *s, mi_sim_metric *m) {
    if (s && !strcmp(s, "pearson")) *m = MI_SIM_PEARSON;
    else if (s && !strcmp(s, "cosine")) *m = MI_SIM_COSINE;
    else return MI_FAIL(MI_ERR_ARG, "similarity metric '%.40s' is not \"pearson\" or \"cosine\"", s ? s : "(null)");
    return MI_OK;
}

mi_status mi_adj_compare_parse(const char *s, mi_adj_compare *c) {
    if (s && !strcmp(s, "ge")) *c = MI_ADJ_GE;
    else if (s && !strcmp(s, "abs_ge")) *c = MI_ADJ_ABS_GE;
    else return MI_FAIL(MI_ERR_ARG, "adjacency comparison '%.40s' is not \"ge\" or \"abs_ge\"", s ? s : "(null)");
    return MI_OK;
}

size_t mi_patho_similarity_scratch(int64_t k, int64_t f) {
    return k > 0 && f > 0 && (uint64_t)k <= SIZE_MAX / 8 / ((uint64_t)f + 1) ? (size_t)(k * f + k) : 0;
}

/* patho_ref.cosine on rows already in float64 (centred for pearson). A constant float32 row
 * centres to exact zeros whatever the summation order: its sum of f copies is exact in float64
 * (24-bit values, f < 2^29) and so is the division back, which is what makes the zero-variance
 * rule agree with numpy's. */
mi_status mi_patho_similarity(double *s, const float *feat, int64_t k, int64_t f, mi_sim_metric metric,
                              double *scratch) {
    if (k < 1 || f < 1 || !mi_patho_similarity_scratch(k, f))
        return MI_FAIL(MI_ERR_ARG, "similarity: %lld rows of %lld features, expected at least 1 of 1",
                       (long long)k, (long long)f);
    for (int64_t i = 0; i < k * f; i++)
        if (!isfinite(feat[i]))
            return MI_FAIL(MI_ERR_ARG, "similarity: feature [%lld][%lld] is %s", (long long)(i / f),
                           (long long)(i % f), isnan(feat[i]) ? "NaN" : "infinite");
    double *x = scratch, *norm = scratch + k * f;
    for (int64_t i = 0; i < k; i++) {
        const float *fi = feat + i * f;
        double *xi = x + i * f, mean = 0;
        if (metric == MI_SIM_PEARSON) {
            for (int64_t j = 0; j < f; j++) mean += (double)fi[j];
            mean /= (double)f;
        }
        double q = 0;
        for (int64_t j = 0; j < f; j++) {
            xi[j] = (double)fi[j] - mean;
            q += xi[j] * xi[j];
        }
        norm[i] = sqrt(q);
    }
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = i; j < k; j++) {
            double v = 0;
            if (norm[i] > 0 && norm[j] > 0) {
                const double *xi = x + i * f, *xj = x + j * f;
                double d = 0;
                for (int64_t c = 0; c < f; c++) d += xi[c] * xj[c];
                v = d / (norm[i] * norm[j]);   /* numpy: (f @ f.T) / np.outer(n, n) */
            }
            s[i * k + j] = s[j * k + i] = v;
        }
    return MI_OK;
}

mi_status mi_patho_adjacency(float *a, const double *s, int64_t k, mi_adj_compare compare, double t) {
    if (k < 1) return MI_FAIL(MI_ERR_ARG, "adjacency: %lld nodes, expected at least 1", (long long)k);
    if (isnan(t)) return MI_FAIL(MI_ERR_ARG, "adjacency: the threshold is NaN");
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++) {
            const double v = compare == MI_ADJ_ABS_GE ? fabs(s[i * k + j]) : s[i * k + j];
            a[i * k + j] = i != j && v >= t ? 1.0f : 0.0f;
        }
    return MI_OK;
}
