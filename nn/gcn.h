/* nn/gcn.h - the graph convolutional network that classifies a slide from the graph of its
 * top-scoring tiles (tools/gcn_ref.py is the spec; Kipf & Welling, "Semi-supervised
 * classification with graph convolutional networks", ICLR 2017).
 *
 *     Â = D^-1/2 (A + I) D^-1/2   (self_loops true)   or   D^-1/2 A D^-1/2   (false)
 *     H_0 = X;  H_i+1 = ReLU(Â · (H_i · W_iᵀ + b_i))
 *     r = mean or max of H_L over the nodes;  logits = r · W_outᵀ + b_out;  probs = softmax
 *
 * Note the bias sits inside the product with Â, as gcn_ref.GCN.forward writes it
 * (a_hat @ lin(h)); with self loops Â's rows do not sum to 1, so this is not the same network as
 * Â·H·Wᵀ + b (ops/graph.h's mi_graph_conv) and the two must not be swapped.
 *
 * An internal API for pipelines/patho (not behind mi_session): the model is opened once and is
 * read-only afterwards, so threads may share it; each forward runs in scratch memory the caller
 * sizes with mi_gcn_scratch_bytes and owns, and never allocates. Results are the same bits for
 * any thread count (mi_linear and mi_matmul split over outputs, never over a reduction). */
#ifndef MI_NN_GCN_H
#define MI_NN_GCN_H

#include "weights/safetensors.h"

/* Graphs are the top-K tiles of one slide: K is a few hundred. Â is dense (n*n floats, 64 MiB at
 * the bound), so the bound keeps a forward's memory known before a slide is read. */
#define MI_GCN_MAX_NODES  4096
#define MI_GCN_MAX_LAYERS 16
#define MI_GCN_MAX_WIDTH  65536   /* in_dim and each hidden width */

typedef struct mi_gcn mi_gcn;

/* Opens and validates a blob written with tools/gcn_ref.metadata. Metadata (missing keys take
 * gcn_ref.DEFAULTS, as gcn_ref.config does; every tensor shape is then checked against them):
 *   arch "gcn" (required), in_dim (default 64), hidden JSON list of widths (default [64, 32], at
 *   most MI_GCN_MAX_LAYERS), num_classes (default 4), labels JSON list of num_classes names
 *   (default: gcn_ref's four gastric classes, only when num_classes is 4), self_loops "true" |
 *   "false" (default true), readout "mean" | "max" (default "mean").
 * Tensors layers.<i>.weight [hidden[i], in] and .bias, out.weight [num_classes, hidden[-1]] and
 * .bias; any other tensor is refused (a blob whose metadata and weights disagree). Every error
 * names the file and the key or tensor. */
mi_status mi_gcn_open(mi_gcn **g, const char *path);
/* The same from a blob already open (and, where the caller has a trust policy, already verified:
 * the bytes checked are the bytes that run). Takes *w over (it is zeroed), also on failure. */
mi_status mi_gcn_open_weights(mi_gcn **g, mi_weights *w);
void      mi_gcn_close(mi_gcn *g);

int64_t            mi_gcn_in_dim(const mi_gcn *g);
int                mi_gcn_num_classes(const mi_gcn *g);
const char        *mi_gcn_label(const mi_gcn *g, int i);    /* NULL when i is out of range */
/* The open blob: its metadata (model_version, ...) and sha256 for the pipeline's provenance. */
const mi_weights  *mi_gcn_weights(const mi_gcn *g);

/* Bytes of scratch a forward on n nodes needs (Â, the degrees, one buffer per layer, the
 * readout); 0 when n is not in 1..MI_GCN_MAX_NODES. Allocate once for the largest n expected
 * (the requirement grows with n) and reuse; mi_alloc_aligned memory is best for the kernels. */
size_t mi_gcn_scratch_bytes(const mi_gcn *g, int64_t n);

/* x: (n, in_dim) node features, adj: (n, n) dense adjacency (tools/patho_ref.adjacency gives 0/1,
 * symmetric, zero diagonal; any finite weights are accepted), both float32 row-major.
 * logits, probs: (num_classes) each; probs may be NULL. scratch: scratch_bytes >=
 * mi_gcn_scratch_bytes(g, n), aligned at least for float. Refuses (MI_ERR_ARG, naming what) n out of range, too little
 * scratch, and a non-finite feature or adjacency entry (which would otherwise spread NaN through
 * Â to every node). */
mi_status mi_gcn_forward(const mi_gcn *g, const float *x, const float *adj, int64_t n,
                         void *scratch, size_t scratch_bytes, float *logits, float *probs);

/* After a forward on n nodes with this scratch: the stage as gcn_ref.GCN.forward's `stages` names
 * it ("a_hat" (n, n), "layers.<i>" (n, hidden[i]), "readout" (1, width)), shape filled; NULL for
 * an unknown name. For tests and for inspecting a result, not needed to classify. */
const float *mi_gcn_stage(const mi_gcn *g, const void *scratch, int64_t n, const char *stage,
                          int64_t shape[2]);

#endif
