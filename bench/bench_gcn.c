/* bench/bench_gcn.c - latency of the slide-classification GCN (nn/gcn.h) on one graph, in this
 * process:
 *   bench_gcn MODEL NODES THREADS ITERS   ->  one JSON line:
 *   {"arch","nodes","threads","isa","iters","median_ms","p90_ms","min_ms","scratch_mb","peak_rss_mb"}
 * The graph: NODES nodes of uniform features in [-0.5, 0.5) and a symmetric 0/1 adjacency (an edge
 * between about one pair in ten, none on the diagonal), as tools/patho_ref.adjacency gives; a dense
 * forward's work does not depend on which edges there are. One forward is Â from the adjacency,
 * every layer, the readout and the classifier (mi_gcn_forward), scratch allocated once before.
 * Warm-up: 5 runs. bench/bench.py runs it beside PyTorch's and ONNX Runtime's forward of the same
 * module (tools/gcn_ref.py) on a graph of the same size. */
#include "bench/bench_util.h"
#include "nn/gcn.h"
#include "ops/cpu.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: bench_gcn MODEL NODES THREADS ITERS\n");
        return 2;
    }
    const int64_t n = atoll(argv[2]);
    const int threads = atoi(argv[3]), iters = atoi(argv[4]) < 1 ? 1 : atoi(argv[4]);
    mi_gcn *g;
    if (mi_gcn_open(&g, argv[1]) != MI_OK) {
        fprintf(stderr, "bench_gcn: %s\n", mi_last_error());
        return 1;
    }
    mi_set_threads(threads);
    const int64_t f = mi_gcn_in_dim(g);
    const size_t bytes = mi_gcn_scratch_bytes(g, n);
    float *x = malloc(sizeof(float) * (size_t)(n * f)), *adj = malloc(sizeof(float) * (size_t)(n * n));
    float *logits = malloc(sizeof(float) * (size_t)mi_gcn_num_classes(g));
    void *scratch = bytes ? mi_alloc_aligned(bytes) : NULL;
    double *t = malloc(sizeof(double) * (size_t)iters);
    if (!x || !adj || !logits || !scratch || !t) {
        fprintf(stderr, "bench_gcn: %lld nodes: no memory (or not 1..%d nodes)\n", (long long)n, MI_GCN_MAX_NODES);
        return 1;
    }
    uint32_t r = 1;
#define NEXT() ((r = r * 1664525u + 1013904223u) >> 8)
    for (int64_t i = 0; i < n * f; i++) x[i] = (float)NEXT() / 16777216.0f - 0.5f;
    for (int64_t i = 0; i < n; i++) {
        adj[i * n + i] = 0.0f;
        for (int64_t j = i + 1; j < n; j++) adj[i * n + j] = adj[j * n + i] = NEXT() % 10 == 0 ? 1.0f : 0.0f;
    }
    for (int i = 0; i < 5; i++)
        if (mi_gcn_forward(g, x, adj, n, scratch, bytes, logits, NULL) != MI_OK) {
            fprintf(stderr, "bench_gcn: %s\n", mi_last_error());
            return 1;
        }
    for (int i = 0; i < iters; i++) {
        double t0 = bench_now_ms();
        mi_gcn_forward(g, x, adj, n, scratch, bytes, logits, NULL);
        t[i] = bench_now_ms() - t0;
    }
    qsort(t, (size_t)iters, sizeof *t, bench_cmp_double);
    printf("{\"arch\":\"gcn\",\"nodes\":%lld,\"threads\":%d,\"isa\":\"%s\",\"iters\":%d,\"median_ms\":%.4f,"
           "\"p90_ms\":%.4f,\"min_ms\":%.4f,\"scratch_mb\":%.2f,\"peak_rss_mb\":%.1f}\n", (long long)n,
           mi_threads(), mi_isa_name(mi_cpu_isa()), iters, t[iters / 2],
           t[(iters * 9) / 10 < iters ? (iters * 9) / 10 : iters - 1], t[0], bytes / 1048576.0, bench_peak_rss_mb());
    free(t);
    mi_free_aligned(scratch);
    free(logits);
    free(adj);
    free(x);
    mi_gcn_close(g);
    return 0;
}
