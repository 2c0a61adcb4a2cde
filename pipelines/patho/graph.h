/* pipelines/patho/graph.h - from tile results to the slide's graph: a bounded keeper of the K
 * best-scoring tiles, the similarity of their feature vectors, and the adjacency the GCN reads
 * (nn/gcn.h). tools/patho_ref.py (top_k, pearson, cosine, adjacency) is the spec: the keeper and
 * the adjacency give its results exactly, the similarities agree to float64 rounding.
 *
 * No global state and no allocation: the keeper lives in memory the caller sizes with
 * mi_patho_topk_bytes (so a slide of any number of tiles costs K feature vectors, not one per
 * tile), and the similarity takes scratch sized by mi_patho_similarity_scratch. */
#ifndef MI_PATHO_GRAPH_H
#define MI_PATHO_GRAPH_H

#include "medinfer.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- top-K keeper ----------------------------------------------------------------------------
 * Streams (score, index, feature vector of f floats) and keeps the k items of largest score,
 * ties going to the smaller index: the order patho_ref.top_k sorts by, (-score, index). That is a
 * total order on distinct indices, so the kept set and its order do not depend on the order
 * items arrive in: tiles may be pushed as threads finish them. One keeper is not thread-safe
 * (push under the caller's lock, or keep one per thread and merge by pushing one into another).
 * A min-heap of the k best (the worst at the root), O(log k) a push; features are copied once
 * into a slot and never move. */
typedef struct {
    int64_t  k, f;       /* capacity, feature length */
    int64_t  n;          /* items held, <= k */
    int64_t  seen;       /* items pushed */
    float   *score;      /* [k], by slot */
    int64_t *index;      /* [k], by slot */
    float   *feat;       /* [k * f], by slot */
    int32_t *heap;       /* [k] slots; after mi_patho_topk_sort, slots in rank order */
    bool     sorted;
} mi_patho_topk;

#define MI_PATHO_TOPK_MAX (1 << 20)   /* k and f each: far above any graph nn/gcn.h accepts */

/* Bytes of memory for a keeper of k items of f floats; 0 when k or f is not in
 * 1..MI_PATHO_TOPK_MAX (f may be 0: scores only). */
size_t mi_patho_topk_bytes(int64_t k, int64_t f);
/* mem: bytes >= mi_patho_topk_bytes(k, f), aligned for int64_t (malloc's is), owned by the caller
 * and used until the keeper is done with. MI_ERR_ARG naming what is wrong. */
mi_status mi_patho_topk_init(mi_patho_topk *t, int64_t k, int64_t f, void *mem, size_t bytes);
/* feat: f floats (may be NULL when f is 0). A NaN score is refused (MI_ERR_ARG: it has no place
 * in the order; patho_ref's sort would give an order that depends on where it is); a score of
 * ±inf is ordered as usual. Refused too after mi_patho_topk_sort. */
mi_status mi_patho_topk_push(mi_patho_topk *t, float score, int64_t index, const float *feat);
/* Puts the kept items in rank order (score descending, ties by ascending index) and returns how
 * many there are: min(k, items pushed). Then mi_patho_topk_item(t, r) is rank r. */
int64_t mi_patho_topk_sort(mi_patho_topk *t);
/* Rank r (0 = best) after mi_patho_topk_sort: its score and index, and its feature vector (f
 * floats, inside the keeper's memory); NULL when r is out of range or the keeper is not sorted. */
const float *mi_patho_topk_item(const mi_patho_topk *t, int64_t r, float *score, int64_t *index);
/* The kept features in rank order, as one (n, f) row-major matrix for mi_patho_similarity and
 * the GCN: rows copied into out (n * f floats). Returns n, or -1 when not sorted. */
int64_t mi_patho_topk_features(const mi_patho_topk *t, float *out);

/* ---- similarity and adjacency ---------------------------------------------------------------- */
typedef enum { MI_SIM_PEARSON, MI_SIM_COSINE } mi_sim_metric;
typedef enum { MI_ADJ_GE, MI_ADJ_ABS_GE } mi_adj_compare;

/* "pearson" | "cosine", "ge" | "abs_ge" (patho_ref's names); MI_ERR_ARG naming the word. */
mi_status mi_sim_metric_parse(const char *s, mi_sim_metric *m);
mi_status mi_adj_compare_parse(const char *s, mi_adj_compare *c);

/* doubles of scratch for mi_patho_similarity on k rows of f: k * f + k */
size_t mi_patho_similarity_scratch(int64_t k, int64_t f);

/* s: (k, k) float64 similarity of the rows of feat (k, f) float32, computed in float64:
 * cosine(i, j) = <f_i, f_j> / (|f_i| |f_j|); pearson: the same on rows minus their mean. A row of
 * zero norm (for pearson: a constant row) has similarity 0 with every row, itself included.
 * Symmetric by construction. MI_ERR_ARG for k < 1, f < 1, or a non-finite feature (naming its
 * row and column: NaN would otherwise make its row silently 0 and inf a row of NaN). */
mi_status mi_patho_similarity(double *s, const float *feat, int64_t k, int64_t f, mi_sim_metric metric,
                              double *scratch);

/* a: (k, k) float32, 1 where s >= t (MI_ADJ_GE) or |s| >= t (MI_ADJ_ABS_GE) off the diagonal,
 * 0 elsewhere (the GCN adds its own self loops when its metadata says so). MI_ERR_ARG for a NaN t
 * or k < 1. */
mi_status mi_patho_adjacency(float *a, const double *s, int64_t k, mi_adj_compare compare, double t);

#endif
