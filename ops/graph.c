/* ops/graph.c - dense graph convolution and Kipf normalization (see graph.h). */
#include "ops/graph.h"
#include "ops/cpu.h"
#include "ops/linear.h"

#include <math.h>

/* Both normalizations: loop = 1.0f adds Kipf's I, loop = 0.0f leaves A as it is. The diagonal term
 * is added in float32 before the degree is summed, as tools/gcn_ref.normalize_adjacency does
 * (a + eye, then the float64 row sum, rounded once to float32). The row sum runs in four float64
 * partial sums (column j into sum j % 4, added as (s0 + s1) + (s2 + s3)): one chain of 4096
 * dependent adds was most of the time of a 1024-node graph's normalization; a 0/1 or integer
 * adjacency sums exactly in any order, so the degrees are torch's whatever the order.
 * degree_row: dinv[i] from row i of a. */
static void degree_row(float *dinv, const float *a, int64_t n, float loop, int64_t i) {
    const float *ai = a + i * n;
    double s[4] = { 0.0, 0.0, 0.0, 0.0 };
    const int64_t g = i / 4 * 4;   /* the group of four holding the diagonal */
    int64_t j = 0;
    for (; j < g; j += 4)
        for (int l = 0; l < 4; l++) s[l] += (double)ai[j + l];
    for (; j + 4 <= n && j <= g; j += 4)
        for (int l = 0; l < 4; l++) s[l] += (double)(ai[j + l] + (i == j + l ? loop : 0.0f));
    for (; j + 4 <= n; j += 4)
        for (int l = 0; l < 4; l++) s[l] += (double)ai[j + l];
    for (; j < n; j++) s[j % 4] += (double)(ai[j] + (i == j ? loop : 0.0f));
    const float d = (float)((s[0] + s[1]) + (s[2] + s[3]));
    dinv[i] = d > 0.0f ? (float)(1.0 / sqrt((double)d)) : 0.0f;
}

/* row i of Â: GCNConv's dinv[row] * w * dinv[col]; blocks of 8 for GCC's -O2 to vectorize */
static void scale_row(float *a_hat, const float *dinv, const float *a, int64_t n, float loop, int64_t i) {
    const float *ai = a + i * n;
    float *hi = a_hat + i * n;
    const float di = dinv[i];
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) hi[j + l] = di * ai[j + l] * dinv[j + l];
    for (; j < n; j++) hi[j] = di * ai[j] * dinv[j];
    hi[i] = di * (ai[i] + loop) * dinv[i];
}

static void normalize(float *a_hat, float *dinv, const float *a, int64_t n, float loop) {
    MI_ASSERT(a_hat != a);
    const int nt = mi_threads();
    if (nt == 1 || n * n <= 65536) {   /* not even a team of one (ops/cpu.h) */
        for (int64_t i = 0; i < n; i++) degree_row(dinv, a, n, loop, i);
        for (int64_t i = 0; i < n; i++) scale_row(a_hat, dinv, a, n, loop, i);
        return;
    }
    #pragma omp parallel num_threads(nt)
    {
        #pragma omp for schedule(static)
        for (int64_t i = 0; i < n; i++) degree_row(dinv, a, n, loop, i);
        /* the for's barrier: every row reads all of dinv */
        #pragma omp for schedule(static)
        for (int64_t i = 0; i < n; i++) scale_row(a_hat, dinv, a, n, loop, i);
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
    mi_matmul_skip_zeros(y, a_hat, t, n, n, f_out);
    add_bias(y, b, n, f_out);
}

void mi_graph_conv_ref(float *y, const float *a_hat, const float *x, const float *w, const float *b,
                       int64_t n, int64_t f_in, int64_t f_out, float *t) {
    MI_ASSERT(y != t && y != x);
    mi_linear_ref(t, x, w, NULL, n, f_in, f_out);
    mi_matmul_ref(y, a_hat, t, n, n, f_out);
    add_bias(y, b, n, f_out);
}
