/* bench/bench_util.h - what the bench programs that time a forward in their own process share:
 * a monotonic clock, an ordering of doubles for qsort, and the process's peak resident memory. */
#ifndef MI_BENCH_UTIL_H
#define MI_BENCH_UTIL_H

#include <stdio.h>
#include <time.h>

static inline double bench_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* VmHWM of this address space, MB: ru_maxrss would also count the parent's peak when the parent
 * (a Python with PyTorch loaded) is bigger, since Linux carries it across exec. */
static inline double bench_peak_rss_mb(void) {
    double hwm_kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf kB", &hwm_kb) == 1) break;
    if (f) fclose(f);
    return hwm_kb / 1024.0;
}

#endif
