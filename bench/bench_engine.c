/* bench/bench_engine.c - latency of one ResNet blob, batch 1, in this process:
 *   bench_engine MODEL THREADS ITERS   ->  one JSON line:
 *   {"arch","threads","isa","iters","median_ms","p90_ms","min_ms","peak_rss_mb"}
 * bench/bench.py runs it once per configuration (so peak RSS is per configuration) and puts the
 * numbers beside PyTorch's from the same run. */
#include "../nn/resnet.h"
#include "../ops/cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: bench_engine MODEL THREADS ITERS\n");
        return 2;
    }
    int threads = atoi(argv[2]), iters = atoi(argv[3]);
    if (iters < 1) iters = 1;
    mi_set_threads(threads);
    mi_resnet *m;
    if (mi_resnet_open(&m, argv[1], 1) != MI_OK) {
        fprintf(stderr, "bench_engine: %s\n", mi_last_error());
        return 1;
    }
    int s = mi_resnet_input_size(m), nc = mi_resnet_num_classes(m);
    float *x = malloc(sizeof(float) * 3 * s * s), *y = malloc(sizeof(float) * nc);
    uint32_t r = 1;
    for (int i = 0; i < 3 * s * s; i++) x[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    for (int i = 0; i < 5; i++) mi_resnet_forward(m, x, 1, y);  /* warm caches, page in weights */
    double *t = malloc(sizeof(double) * iters);
    for (int i = 0; i < iters; i++) {
        double t0 = now_ms();
        mi_resnet_forward(m, x, 1, y);
        t[i] = now_ms() - t0;
    }
    qsort(t, iters, sizeof *t, cmp);
    /* VmHWM of this address space: ru_maxrss would also count the parent's peak when the
     * parent (a Python with PyTorch loaded) is bigger, since Linux carries it across exec */
    double hwm_kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf kB", &hwm_kb) == 1) break;
    if (f) fclose(f);
    printf("{\"arch\":\"%s\",\"threads\":%d,\"isa\":\"%s\",\"iters\":%d,\"median_ms\":%.3f,"
           "\"p90_ms\":%.3f,\"min_ms\":%.3f,\"peak_rss_mb\":%.1f}\n", mi_resnet_arch(m), mi_threads(),
           mi_isa_name(mi_cpu_isa()), iters, t[iters / 2], t[(iters * 9) / 10 < iters ? (iters * 9) / 10 : iters - 1],
           t[0], hwm_kb / 1024.0);
    free(t); free(x); free(y);
    mi_resnet_close(m);
    return 0;
}
