/* bench/bench_engine.c - latency of one blob through the public API, in this process:
 *   bench_engine MODEL THREADS ITERS [BATCH [H W [INPUT.f32]]]   ->  one JSON line:
 *   {"arch","threads","isa","batch","iters","median_ms","p90_ms","min_ms","arena_mb","peak_rss_mb"}
 * The input is (BATCH, the model's channels, H, W), H = W = the blob's input_size by default; for
 * a 3-D network (vnet3d) a (BATCH, C, S, S, S) volume, S = H. Its values: uniform in [-0.5, 0.5)
 * from a fixed generator, or INPUT.f32's (little-endian float32, exactly that many), which the
 * bench gives a detector: how much work it does depends on the image (the proposals that survive
 * NMS), so every engine must see the same one. Warm-up: 5 runs, 1 when ITERS < 5
 * (a V-Net batch of 512 x 512 tiles takes seconds).
 * bench/bench.py runs it once per configuration (so peak RSS is per configuration) and puts the
 * numbers beside PyTorch's from the same run. */
#include "bench/bench_util.h"
#include "medinfer.h"
#include "ops/cpu.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5 && argc != 7 && argc != 8) {
        fprintf(stderr, "usage: bench_engine MODEL THREADS ITERS [BATCH [H W [INPUT.f32]]]\n");
        return 2;
    }
    int threads = atoi(argv[2]), iters = atoi(argv[3]), batch = argc >= 5 ? atoi(argv[4]) : 1;
    if (iters < 1) iters = 1;
    mi_model *m;
    mi_session *sess;
    if (mi_model_open(&m, argv[1]) != MI_OK) {
        fprintf(stderr, "bench_engine: %s\n", mi_last_error());
        return 1;
    }
    const int h = argc >= 7 ? atoi(argv[5]) : mi_model_input_size(m), w = argc >= 7 ? atoi(argv[6]) : h;
    const int c = mi_model_input_channels(m), vol = mi_model_spatial_dims(m) == 3;
    const int64_t shape[5] = { batch, c, h, vol ? h : w, w };
    if (mi_session_create_nd(&sess, m, vol ? 5 : 4, vol ? shape : (int64_t[4]){ batch, c, h, w }, threads,
                             NULL, 0) != MI_OK) {
        fprintf(stderr, "bench_engine: %s\n", mi_last_error());
        return 1;
    }
    const size_t n = (size_t)batch * c * h * w * (vol ? h : 1);
    float *x = malloc(sizeof(float) * n);
    if (argc == 8) {
        FILE *f = fopen(argv[7], "rb");
        const size_t got = f ? fread(x, sizeof(float), n, f) : 0;
        const int extra = f ? fgetc(f) != EOF : 0;
        if (f) fclose(f);
        if (got != n || extra) {
            fprintf(stderr, "bench_engine: %s: expected exactly %zu float32 values\n", argv[7], n);
            return 1;
        }
    } else {
        uint32_t r = 1;
        for (size_t i = 0; i < n; i++) x[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    }
    for (int i = 0; i < (iters < 5 ? 1 : 5); i++) mi_session_run(sess, x);  /* warm caches, page in weights */
    double *t = malloc(sizeof(double) * iters);
    for (int i = 0; i < iters; i++) {
        double t0 = bench_now_ms();
        mi_session_run(sess, x);
        t[i] = bench_now_ms() - t0;
    }
    qsort(t, iters, sizeof *t, bench_cmp_double);
    printf("{\"arch\":\"%s\",\"threads\":%d,\"isa\":\"%s\",\"batch\":%d,\"iters\":%d,\"median_ms\":%.3f,"
           "\"p90_ms\":%.3f,\"min_ms\":%.3f,\"arena_mb\":%.1f,\"peak_rss_mb\":%.1f}\n", mi_model_arch(m),
           threads > 0 ? threads : mi_threads(), mi_isa_name(mi_cpu_isa()), batch, iters, t[iters / 2],
           t[(iters * 9) / 10 < iters ? (iters * 9) / 10 : iters - 1], t[0],
           mi_session_arena_bytes(sess) / 1048576.0, bench_peak_rss_mb());
    free(t);
    free(x);
    mi_session_destroy(sess);
    mi_model_close(m);
    return 0;
}
