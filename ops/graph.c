/* ops/graph.c - dense graph convolution and Kipf normalization (see graph.h). */
#include "ops/graph.h"
#include "ops/cpu.h"
#include "ops/linear.h"

#include <math.h>

/* Both normalizations: loop = 1.0f adds Kipf's I, loop = 0.0f leaves A as it is. The diagonal term
 * is added in float32 before the degree is summed, as tools/gcn_ref.normalize_adjacency does
 * (a + eye, then the float64 row sum, rounded once to float32). */
static void normalize(float *a_hat, float *dinv, const float *a, int64_t n, float loop) {
    MI_ASSERT(a_hat != a);
    #pragma omp parallel for num_threads(mi_threads()) if (n * n > 65536) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        double deg = 0.0;
        for (int64_t j = 0; j < n; j++) deg += (double)(a[i * n + j] + (i == j ? loop : 0.0f));
        const float d = (float)deg;
        dinv[i] = d > 0.0f ? (float)(1.0 / sqrt((double)d)) : 0.0f;
    }
    #pragma omp parallel for num_threads(mi_threads()) if (n * n > 65536) schedule(static)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            const float aij = a[i * n + j] + (i == j ? loop : 0.0f);
            a_hat[i * n + j] = dinv[i] * aij * dinv[j];   /* GCNConv's dinv[row] * w * dinv[col] */
        }
}

void mi_graph_normalize(float *a_hat, float *dinv, const float *a, int64_t n) {
    normalize(a_hat, dinv, a, n, 1.0f);
}

void mi_graph_normalize_no_loops(float *a_hat, float *dinv, const float *a, int64_t n) {
    normalize(a_hat, dinv, a, n, 0.0f);
}

/* y[i, :] += b: one add per element, the same in both paths */
static void add_bias(float *y, const float *b, int64_t n, int64_t f) {
    if (!b) return;
    #pragma omp parallel for num_threads(mi_threads()) if (n * f > 65536) schedule(static)
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < f; o++) y[i * f + o] += b[o];
}

void mi_graph_conv(float *y, const float *a_hat, const float *x, const float *w, const float *b,
                   int64_t n, int64_t f_in, int64_t f_out, float *t) {
    MI_ASSERT(y != t && y != x);
    mi_linear(t, x, w, NULL, n, f_in, f_out);
    mi_matmul(y, a_hat, t, n, n, f_out);
    add_bias(y, b, n, f_out);
}

void mi_graph_conv_ref(float *y, const float *a_hat, const float *x, const float *w, const float *b,
                       int64_t n, int64_t f_in, int64_t f_out, float *t) {
    MI_ASSERT(y != t && y != x);
    mi_linear_ref(t, x, w, NULL, n, f_in, f_out);
    mi_matmul_ref(y, a_hat, t, n, n, f_out);
    add_bias(y, b, n, f_out);
}
