/* ops/graph.h - graph convolution on a dense adjacency (Kipf & Welling 2017, "Semi-supervised
 * classification with graph convolutional networks"; torch_geometric's GCNConv on a dense graph).
 *
 *     Y = Â · (X · Wᵀ) + b
 *
 * W uses torch's nn.Linear layout [f_out, f_in] (GCNConv.lin.weight), so X·Wᵀ is mi_linear and
 * the product with Â is mi_matmul_skip_zeros (the work follows the graph's edges; mi_matmul's bits):
 * both fast paths, both split over output rows. Computing X·Wᵀ
 * first is what GCNConv does and is the cheaper order when f_out <= f_in. */
#ifndef MI_GRAPH_H
#define MI_GRAPH_H

#include "ops/tensor.h"

/* Â = D^-1/2 (A + I) D^-1/2 with D_ii = sum_j (A + I)_ij (row sums; for the symmetric A of an
 * undirected graph these equal GCNConv's in-degrees). A node whose degree is 0 (possible only
 * with negative weights) gets D^-1/2 = 0, as GCNConv masks inf to 0. Self loops already in A are
 * added to, not replaced (Kipf's A + I; GCNConv's add_remaining_self_loops would keep them).
 * a: (n, n)  a_hat: (n, n), may not alias a  dinv: (n) receives the diagonal of D^-1/2.
 * Degrees are summed in float64 and rounded once. */
void mi_graph_normalize(float *a_hat, float *dinv, const float *a, int64_t n);
/* Â = D^-1/2 A D^-1/2 with D_ii = sum_j A_ij: the same without self loops (a GCN whose graph
 * already has the edges it wants, tools/gcn_ref.py with self_loops false). A node with no edges
 * has degree 0 and gets D^-1/2 = 0: its row and column of Â are 0, so a graph convolution gives
 * it nothing from its neighbours, not even its own features. */
void mi_graph_normalize_no_loops(float *a_hat, float *dinv, const float *a, int64_t n);

/* y = a_hat · (x · wᵀ) + b.  a_hat: (n, n)  x: (n, f_in)  w: (f_out, f_in)  b: (f_out) or NULL
 * t: (n, f_out) scratch  y: (n, f_out); y aliases neither t nor x. */
void mi_graph_conv(float *y, const float *a_hat, const float *x, const float *w, const float *b,
                   int64_t n, int64_t f_in, int64_t f_out, float *t);
/* The same through the scalar references only (mi_linear_ref, mi_matmul_ref). */
void mi_graph_conv_ref(float *y, const float *a_hat, const float *x, const float *w, const float *b,
                       int64_t n, int64_t f_in, int64_t f_out, float *t);

#endif
