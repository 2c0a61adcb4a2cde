/* bench/bench_layers.c - where one forward's time goes, stage by stage, through the public API:
 *   bench_layers MODEL THREADS ITERS [H W]   ->  per stage: median ms, share of the forward, shape
 * A stage's time is the wall time since the previous stage was marked (mi_session_set_stage_hook's
 * hook is called as each named stage is written), so it includes whatever ran in between
 * (activations, copies). The stage hook, unlike a capture hook, leaves the network on the paths it
 * takes without a hook (a ResNet bottleneck's padded map read in place by its stride-2 conv2).
 * The input is random, (1, C, H, W), H = W = the blob's input_size by default. A tool for finding
 * the slow layer, not a benchmark: bench/bench.py's figures come from bench_engine. */
#include "medinfer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_STAGES 4096

typedef struct {
    int n, run, idx;
    double last;
    char name[MAX_STAGES][64], shape[MAX_STAGES][48];
    double *t;    /* [ITERS][MAX_STAGES] */
} prof;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void on_stage(void *user, const char *name, int ndim, const int64_t *shape) {
    prof *p = user;
    double t = now_ms();
    const int i = p->idx++;
    if (i < MAX_STAGES && p->run >= 0) {
        p->t[(size_t)p->run * MAX_STAGES + i] = t - p->last;
        if (p->run == 0) {
            snprintf(p->name[i], sizeof p->name[i], "%s", name);
            int k = 0;
            for (int d = 0; d < ndim && k < 40; d++) k += snprintf(p->shape[i] + k, sizeof p->shape[i] - k, "%s%lld", d ? "x" : "", (long long)shape[d]);
            p->n = i + 1;
        }
    }
    p->last = now_ms();
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: bench_layers MODEL THREADS ITERS [H W]\n");
        return 2;
    }
    int threads = atoi(argv[2]), iters = atoi(argv[3]);
    if (iters < 1) iters = 1;
    mi_model *m;
    mi_session *s;
    if (mi_model_open(&m, argv[1]) != MI_OK) {
        fprintf(stderr, "bench_layers: %s\n", mi_last_error());
        return 1;
    }
    const int h = argc == 6 ? atoi(argv[4]) : mi_model_input_size(m), w = argc == 6 ? atoi(argv[5]) : h;
    const int c = mi_model_input_channels(m);
    if (mi_session_create(&s, m, (int64_t[4]){ 1, c, h, w }, threads) != MI_OK) {
        fprintf(stderr, "bench_layers: %s\n", mi_last_error());
        return 1;
    }
    const size_t n = (size_t)c * h * w;
    float *x = malloc(sizeof(float) * n);
    uint32_t r = 1;
    for (size_t i = 0; i < n; i++) x[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    prof *p = calloc(1, sizeof *p);
    p->t = calloc((size_t)iters * MAX_STAGES, sizeof(double));
    p->run = -1;
    mi_session_set_stage_hook(s, on_stage, p);
    for (int i = 0; i < 3; i++) {   /* warm caches, page in weights */
        p->idx = 0;
        p->last = now_ms();
        mi_session_run(s, x);
    }
    double *tot = calloc(iters, sizeof(double));
    for (int it = 0; it < iters; it++) {
        p->run = it;
        double t0 = now_ms();
        p->idx = 0;
        p->last = t0;
        mi_session_run(s, x);
        tot[it] = now_ms() - t0;
    }
    qsort(tot, iters, sizeof *tot, cmp);
    const double total = tot[iters / 2];
    double *col = malloc(sizeof(double) * iters), sum = 0;
    printf("%-40s %9s %6s  %s\n", "stage", "median ms", "share", "shape");
    for (int i = 0; i < p->n; i++) {
        for (int it = 0; it < iters; it++) col[it] = p->t[(size_t)it * MAX_STAGES + i];
        qsort(col, iters, sizeof *col, cmp);
        sum += col[iters / 2];
        printf("%-40s %9.3f %5.1f%%  %s\n", p->name[i], col[iters / 2], 100 * col[iters / 2] / total, p->shape[i]);
    }
    printf("%-40s %9.3f (stages sum %.3f) at %d threads\n", "forward (median)", total, sum, threads);
    mi_session_destroy(s);
    mi_model_close(m);
    return 0;
}
