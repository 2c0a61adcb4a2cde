/* bench/bench_conv.c - the convolution kernels against the machine's own FMA peak.
 *
 *   bench_conv [--json FILE] [--quick] [--threads 1,2]
 *
 * (a) FMA peak: a loop of 12 (ymm) / 24 (zmm) independent FMA chains per thread, AVX2 and
 *     AVX-512 (when the CPU has them), 1 and 2 threads, in GFLOP/s (an FMA counts 2 flops).
 * (b) Every convolution of ResNet-50 (torchvision v1.5, batch 1, 224x224) through mi_conv_forward
 *     with the ISA of mi_cpu_isa() (cap it with MI_ISA=ref|avx2|avx512) and the epilogue the
 *     network uses (relu; residual + relu on conv3), at each thread count: median of repeated runs
 *     per shape, times the number of times ResNet-50 runs that shape; GFLOP/s per kind (7x7 stem,
 *     1x1, 3x3) and in total, and the share of the measured peak of that ISA at that thread count.
 *     These run the direct GEMM (mi_conv_desc.algo = MI_CONV_DIRECT): the kernels against the
 *     peak. The 3x3 stride-1 shapes run again with the algorithm the network picks (Winograd,
 *     ops/conv_winograd.c), reported as "as run" times; their GFLOP/s count the direct FLOPs.
 * Prints a table; --json writes one line of JSON with these keys:
 *   isa                     "avx512" | "avx2" | "ref": the kernels measured
 *   peak_gflops             {"avx2_1t", "avx2_2t", "avx512_1t", "avx512_2t"} (absent: no such ISA)
 *   layers[]                {name, kind, count, cin, cout, k, stride, in_hw, out_hw, gflop (one
 *                            run), ms_<T>t (median of one run), best_ms_<T>t (fastest run),
 *                            gflops_<T>t (of the median), and where the network runs the shape
 *                            by Winograd: winograd_m (2 or 4), as_run_ms_<T>t (median)}
 *   summary                 {"<T>t": {"stem"|"1x1"|"3x3"|"total": {ms, gflop, gflops, share}}}
 *                           from the medians; ms = time of all ResNet-50 convs of that kind
 *                           (count included); share = gflops / peak_gflops[<isa>_<T>t]
 *   summary_best            the same from each shape's fastest run (the cores are shared with
 *                           other work here: best is closer to what the kernels do alone)
 *   resnet50_conv_ms_<T>t, resnet50_conv_best_ms_<T>t
 *                           all 53 convolutions of one ResNet-50 forward, milliseconds
 *   resnet50_conv_as_run_ms_<T>t
 *                           the same with each shape run as the network runs it (medians) */
#include "ops/conv.h"

#include <immintrin.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define PEAK_ITERS 20000000L

__attribute__((target("avx2,fma"), noinline)) static float fma_chains_avx2(long iters) {
    __m256 c[12], a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) c[i] = _mm256_set1_ps((float)i);
    for (long n = 0; n < iters; n++) {
        #pragma GCC unroll 12
        for (int i = 0; i < 12; i++) c[i] = _mm256_fmadd_ps(c[i], a, b);
    }
    __m256 s = c[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, c[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0];
}

__attribute__((target("avx512f"), noinline)) static float fma_chains_avx512(long iters) {
    __m512 c[24], a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 24; i++) c[i] = _mm512_set1_ps((float)i);
    for (long n = 0; n < iters; n++) {
        #pragma GCC unroll 24
        for (int i = 0; i < 24; i++) c[i] = _mm512_fmadd_ps(c[i], a, b);
    }
    __m512 s = c[0];
    for (int i = 1; i < 24; i++) s = _mm512_add_ps(s, c[i]);
    return _mm512_reduce_add_ps(s);
}

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* GFLOP/s of nt threads each running the chains: the sum over threads of flops / the thread's own
 * CPU time (the cores are shared with other work here; CPU time counts only the cycles we got),
 * best of 12 repetitions of ~10 ms (a busy neighbour makes single runs read low). */
static double peak(int zmm, int nt) {
    const long iters = PEAK_ITERS / (zmm ? 8 : 4);
    const double flops = (double)iters * (zmm ? 24 * 16 : 12 * 8) * 2;
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 12; rep++) {
        double g = 0;
        #pragma omp parallel num_threads(nt) reduction(+ : g)
        {
            double t0 = cpu_s(), w0 = now_s();
            float r = zmm ? fma_chains_avx512(iters) : fma_chains_avx2(iters);
            double c = cpu_s() - t0, w = now_s() - w0;
            g = flops / (c < w ? c : w) / 1e9;
            #pragma omp critical
            sink += r;
        }
        if (g > best) best = g;
    }
    (void)sink;
    return best;
}

typedef struct {
    const char *name, *kind;
    int count, cin, cout, k, s, hw;    /* hw: input height = width */
    int residual;                      /* conv3 of a bottleneck: + identity, relu */
    int relu;
} layer;

/* torchvision resnet50: stride on the 3x3 (v1.5); counts = how often a forward runs the shape. */
static const layer L[] = {
    { "conv1", "stem", 1, 3, 64, 7, 2, 224, 0, 1 },
    { "layer1.0.conv1", "1x1", 1, 64, 64, 1, 1, 56, 0, 1 },
    { "layer1.x.conv1", "1x1", 2, 256, 64, 1, 1, 56, 0, 1 },
    { "layer1.x.conv2", "3x3", 3, 64, 64, 3, 1, 56, 0, 1 },
    { "layer1.x.conv3", "1x1", 3, 64, 256, 1, 1, 56, 1, 1 },
    { "layer1.0.downsample", "1x1", 1, 64, 256, 1, 1, 56, 0, 0 },
    { "layer2.0.conv1", "1x1", 1, 256, 128, 1, 1, 56, 0, 1 },
    { "layer2.0.conv2", "3x3", 1, 128, 128, 3, 2, 56, 0, 1 },
    { "layer2.x.conv3", "1x1", 4, 128, 512, 1, 1, 28, 1, 1 },
    { "layer2.0.downsample", "1x1", 1, 256, 512, 1, 2, 56, 0, 0 },
    { "layer2.x.conv1", "1x1", 3, 512, 128, 1, 1, 28, 0, 1 },
    { "layer2.x.conv2", "3x3", 3, 128, 128, 3, 1, 28, 0, 1 },
    { "layer3.0.conv1", "1x1", 1, 512, 256, 1, 1, 28, 0, 1 },
    { "layer3.0.conv2", "3x3", 1, 256, 256, 3, 2, 28, 0, 1 },
    { "layer3.x.conv3", "1x1", 6, 256, 1024, 1, 1, 14, 1, 1 },
    { "layer3.0.downsample", "1x1", 1, 512, 1024, 1, 2, 28, 0, 0 },
    { "layer3.x.conv1", "1x1", 5, 1024, 256, 1, 1, 14, 0, 1 },
    { "layer3.x.conv2", "3x3", 5, 256, 256, 3, 1, 14, 0, 1 },
    { "layer4.0.conv1", "1x1", 1, 1024, 512, 1, 1, 14, 0, 1 },
    { "layer4.0.conv2", "3x3", 1, 512, 512, 3, 2, 14, 0, 1 },
    { "layer4.x.conv3", "1x1", 3, 512, 2048, 1, 1, 7, 1, 1 },
    { "layer4.0.downsample", "1x1", 1, 1024, 2048, 1, 2, 14, 0, 0 },
    { "layer4.x.conv1", "1x1", 2, 2048, 512, 1, 1, 7, 0, 1 },
    { "layer4.x.conv2", "3x3", 2, 512, 512, 3, 1, 7, 0, 1 },
};
#define NL ((int)(sizeof L / sizeof *L))
static const char *KINDS[] = { "stem", "1x1", "3x3", "total" };

static void fill(float *x, size_t n, unsigned s) {
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((s >> 8) / 16777216.0 * 2 - 1) * 0.1f;
    }
}

/* Median and fastest of repeated runs (~0.15 s per shape, 0.04 with quick; at least 5). */
static void time_conv(const mi_conv *c, mi_tensor *out, const mi_tensor *x, const mi_tensor *res,
                      mi_act act, void *ws, int quick, double *med, double *best) {
    double t0 = now_s();
    mi_conv_forward(c, out, x, res, act, ws);
    double once = now_s() - t0;
    int reps = (int)((quick ? 0.04 : 0.15) / (once > 1e-6 ? once : 1e-6));
    if (reps < 5) reps = 5;
    if (reps > 400) reps = 400;
    double *tt = malloc((size_t)reps * sizeof(double));
    for (int r = 0; r < reps; r++) {
        t0 = now_s();
        mi_conv_forward(c, out, x, res, act, ws);
        tt[r] = now_s() - t0;
    }
    qsort(tt, (size_t)reps, sizeof(double), cmp_d);
    *med = tt[reps / 2] * 1e3;
    *best = tt[0] * 1e3;
    free(tt);
}

int main(int argc, char **argv) {
    const char *json = NULL;
    int quick = 0, threads[4] = { 1, 2 }, nth = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            nth = sscanf(argv[++i], "%d,%d,%d,%d", &threads[0], &threads[1], &threads[2], &threads[3]);
            if (nth < 1) nth = 1;
        } else {
            fprintf(stderr, "usage: bench_conv [--json FILE] [--quick] [--threads 1,2]\n");
            return 2;
        }
    }
    const mi_cpu_features *f = mi_cpu();
    mi_isa isa = mi_cpu_isa();
    double pk[2][5] = { { 0 } };   /* [zmm][threads] */
    for (int z = 0; z < 2; z++)
        if (z ? f->avx512f : f->avx2_fma)
            for (int t = 1; t <= 2; t++) pk[z][t] = peak(z, t);
    printf("CPU %s, kernels: %s\n", f->brand, mi_isa_name(isa));
    printf("FMA peak GFLOP/s: avx2 %.1f (1t) %.1f (2t)   avx512 %.1f (1t) %.1f (2t)\n",
           pk[0][1], pk[0][2], pk[1][1], pk[1][2]);

    int maxt = 1;
    for (int i = 0; i < nth; i++) maxt = threads[i] > maxt ? threads[i] : maxt;
    mi_set_threads(maxt);
    /* One core per pool thread. Unpinned, after a stretch of 1-thread runs the scheduler of a
     * busy machine can wake the idle worker on the master's core, and every barrier then waits
     * for a scheduler tick (the 2-thread times become multiples of 4 ms). */
    const int ncpu = omp_get_num_procs();
    #pragma omp parallel num_threads(maxt)
    {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(omp_get_thread_num() % ncpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    double ms[NL][4], best[NL][4], as_run[NL][4], gflop[NL];
    size_t xmax = 0, ymax = 0, wsmax = 0;
    mi_conv conv[NL], net[NL];   /* direct; as the network runs it (used where it is Winograd) */
    for (int l = 0; l < NL; l++) {
        const layer *y = &L[l];
        mi_conv_desc d = mi_conv2d_desc(y->cin, y->cout, y->k, y->s, y->k / 2, 1);
        d.in_size[1] = d.in_size[2] = y->hw;   /* as nn/resnet.c does: init picks the orientation */
        size_t nw = (size_t)y->cout * y->cin * y->k * y->k;
        float *w = malloc(nw * sizeof(float)), *b = malloc((size_t)y->cout * sizeof(float));
        fill(w, nw, 1 + l);
        fill(b, y->cout, 100 + l);
        mi_status st = mi_conv_init(&net[l], &d, w, b, y->name);
        d.algo = MI_CONV_DIRECT;
        if (st != MI_OK || mi_conv_init(&conv[l], &d, w, b, y->name) != MI_OK) {
            fprintf(stderr, "%s\n", mi_last_error());
            return 1;
        }
        free(w);
        free(b);
        int64_t xs[4] = { 1, y->cin, y->hw, y->hw }, os[MI_MAX_DIMS];
        mi_tensor x = mi_tensor_view(NULL, 4, xs, "x");
        mi_conv_out_shape(&conv[l], &x, os);
        size_t ws = mi_conv_workspace(&conv[l], &x), xn = (size_t)mi_tensor_numel(&x);
        if (mi_conv_workspace(&net[l], &x) > ws) ws = mi_conv_workspace(&net[l], &x);
        size_t yn = (size_t)(os[1] * os[2] * os[3]);
        gflop[l] = 2.0 * yn * y->cin * y->k * y->k / 1e9;
        if (xn > xmax) xmax = xn;
        if (yn > ymax) ymax = yn;
        if (ws > wsmax) wsmax = ws;
    }
    float *xb = mi_alloc_aligned(xmax * 4), *yb = mi_alloc_aligned(ymax * 4), *rb = mi_alloc_aligned(ymax * 4);
    void *wsb = mi_alloc_aligned(wsmax + 64);
    fill(xb, xmax, 7);
    fill(rb, ymax, 8);
    for (int ti = 0; ti < nth; ti++) {
        mi_set_threads(threads[ti]);
        for (int l = 0; l < NL; l++) {
            const layer *y = &L[l];
            int64_t xs[4] = { 1, y->cin, y->hw, y->hw }, os[MI_MAX_DIMS];
            mi_tensor x = mi_tensor_view(xb, 4, xs, "x");
            mi_conv_out_shape(&conv[l], &x, os);
            mi_tensor out = mi_tensor_view(yb, 4, os, "y"), res = mi_tensor_view(rb, 4, os, "res");
            mi_act act = y->relu ? MI_ACT_RELU : MI_ACT_NONE;
            const mi_tensor *r = y->residual ? &res : NULL;
            double unused;
            time_conv(&conv[l], &out, &x, r, act, wsb, quick, &ms[l][ti], &best[l][ti]);
            as_run[l][ti] = ms[l][ti];
            if (net[l].wino) time_conv(&net[l], &out, &x, r, act, wsb, quick, &as_run[l][ti], &unused);
        }
    }

    const int z = isa == MI_ISA_AVX512 ? 1 : 0;
    double sum_ms[2][4][4] = { { { 0 } } }, sum_gf[4] = { 0 };   /* [median|best][kind][threads] */
    double sum_run[4][4] = { { 0 } };                            /* as run: [kind][threads] */
    for (int l = 0; l < NL; l++) {
        int k = !strcmp(L[l].kind, "stem") ? 0 : !strcmp(L[l].kind, "1x1") ? 1 : 2;
        sum_gf[k] += gflop[l] * L[l].count;
        sum_gf[3] += gflop[l] * L[l].count;
        for (int ti = 0; ti < nth; ti++)
            for (int b = 0; b < 2; b++) {
                sum_ms[b][k][ti] += (b ? best : ms)[l][ti] * L[l].count;
                sum_ms[b][3][ti] += (b ? best : ms)[l][ti] * L[l].count;
            }
        for (int ti = 0; ti < nth; ti++) {
            sum_run[k][ti] += as_run[l][ti] * L[l].count;
            sum_run[3][ti] += as_run[l][ti] * L[l].count;
        }
    }
    printf("\n%-20s %4s %5s %5s %2s %2s %4s %7s", "layer", "kind", "cin", "cout", "k", "s", "hw", "GFLOP");
    for (int ti = 0; ti < nth; ti++) printf("  %6s %6s %7s", "med ms", "best", "GFLOP/s");
    printf("   (x count; threads:");
    for (int ti = 0; ti < nth; ti++) printf(" %d", threads[ti]);
    printf("; GFLOP/s of the median)\n");
    for (int l = 0; l < NL; l++) {
        printf("%-20s %4s %5d %5d %2d %2d %4d %7.3f", L[l].name, L[l].kind, L[l].cin, L[l].cout, L[l].k,
               L[l].s, L[l].hw, gflop[l]);
        for (int ti = 0; ti < nth; ti++)
            printf("  %6.3f %6.3f %7.1f", ms[l][ti], best[l][ti], gflop[l] / ms[l][ti] * 1e3);
        printf("   x%d", L[l].count);
        if (net[l].wino) {
            printf("   as run (Winograd F(%dx%d)):", net[l].wino, net[l].wino);
            for (int ti = 0; ti < nth; ti++) printf(" %.3f ms", as_run[l][ti]);
        }
        printf("\n");
    }
    for (int b = 0; b < 2; b++) {
        printf("\nper kind, %s of each shape (all of one ResNet-50 forward):\n", b ? "best" : "median");
        for (int k = 0; k < 4; k++) {
            printf("  %-6s %6.3f GFLOP", KINDS[k], sum_gf[k]);
            for (int ti = 0; ti < nth; ti++) {
                double g = sum_gf[k] / sum_ms[b][k][ti] * 1e3, p = threads[ti] <= 2 ? pk[z][threads[ti]] : 0;
                printf("   %dt: %7.2f ms %6.1f GFLOP/s %5.1f%% of %s peak", threads[ti], sum_ms[b][k][ti], g,
                       p > 0 ? 100 * g / p : 0.0, z ? "avx512" : "avx2");
            }
            printf("\n");
        }
    }

    printf("\nas the network runs them (3x3 stride-1 by Winograd where it picks it; medians):\n");
    for (int k = 0; k < 4; k++) {
        printf("  %-6s", KINDS[k]);
        for (int ti = 0; ti < nth; ti++)
            printf("   %dt: %7.2f ms (direct: %7.2f ms)", threads[ti], sum_run[k][ti], sum_ms[0][k][ti]);
        printf("\n");
    }

    if (json) {
        FILE *o = fopen(json, "w");
        if (!o) { perror(json); return 1; }
        fprintf(o, "{\"isa\": \"%s\", \"peak_gflops\": {", mi_isa_name(isa));
        int first = 1;
        for (int zz = 0; zz < 2; zz++)
            for (int t = 1; t <= 2; t++)
                if (pk[zz][t] > 0) {
                    fprintf(o, "%s\"%s_%dt\": %.2f", first ? "" : ", ", zz ? "avx512" : "avx2", t, pk[zz][t]);
                    first = 0;
                }
        fprintf(o, "}, \"layers\": [");
        for (int l = 0; l < NL; l++) {
            fprintf(o, "%s{\"name\": \"%s\", \"kind\": \"%s\", \"count\": %d, \"cin\": %d, \"cout\": %d, "
                    "\"k\": %d, \"stride\": %d, \"in_hw\": %d, \"out_hw\": %d, \"gflop\": %.5f", l ? ", " : "",
                    L[l].name, L[l].kind, L[l].count, L[l].cin, L[l].cout, L[l].k, L[l].s, L[l].hw,
                    (L[l].hw + 2 * (L[l].k / 2) - L[l].k) / L[l].s + 1, gflop[l]);
            for (int ti = 0; ti < nth; ti++)
                fprintf(o, ", \"ms_%dt\": %.4f, \"best_ms_%dt\": %.4f, \"gflops_%dt\": %.2f", threads[ti],
                        ms[l][ti], threads[ti], best[l][ti], threads[ti], gflop[l] / ms[l][ti] * 1e3);
            if (net[l].wino) {
                fprintf(o, ", \"winograd_m\": %d", net[l].wino);
                for (int ti = 0; ti < nth; ti++) fprintf(o, ", \"as_run_ms_%dt\": %.4f", threads[ti], as_run[l][ti]);
            }
            fprintf(o, "}");
        }
        for (int b = 0; b < 2; b++) {
            fprintf(o, b ? ", \"summary_best\": {" : "], \"summary\": {");
            for (int ti = 0; ti < nth; ti++) {
                fprintf(o, "%s\"%dt\": {", ti ? ", " : "", threads[ti]);
                for (int k = 0; k < 4; k++) {
                    double g = sum_gf[k] / sum_ms[b][k][ti] * 1e3, p = threads[ti] <= 2 ? pk[z][threads[ti]] : 0;
                    fprintf(o, "%s\"%s\": {\"ms\": %.4f, \"gflop\": %.5f, \"gflops\": %.2f, \"share\": %.4f}",
                            k ? ", " : "", KINDS[k], sum_ms[b][k][ti], sum_gf[k], g, p > 0 ? g / p : 0.0);
                }
                fprintf(o, "}");
            }
            fprintf(o, "}");
        }
        for (int ti = 0; ti < nth; ti++)
            fprintf(o, ", \"resnet50_conv_ms_%dt\": %.4f, \"resnet50_conv_best_ms_%dt\": %.4f, "
                    "\"resnet50_conv_as_run_ms_%dt\": %.4f", threads[ti], sum_ms[0][3][ti], threads[ti],
                    sum_ms[1][3][ti], threads[ti], sum_run[3][ti]);
        fprintf(o, "}\n");
        fclose(o);
    }
    for (int l = 0; l < NL; l++) {
        mi_conv_free(&conv[l]);
        mi_conv_free(&net[l]);
    }
    mi_free_aligned(xb);
    mi_free_aligned(yb);
    mi_free_aligned(rb);
    mi_free_aligned(wsb);
    return 0;
}
