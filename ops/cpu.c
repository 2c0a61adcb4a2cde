/* ops/cpu.c - feature detection and ISA choice, once per process. */
#include "ops/cpu.h"
#include "medinfer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <omp.h>
#include <pthread.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
static void detect(mi_cpu_features *f) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    bool osxsave = c & bit_OSXSAVE, fma = c & bit_FMA, avx = c & bit_AVX;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    bool ymm = (xcr0 & 0x6) == 0x6, zmm = (xcr0 & 0xe6) == 0xe6;
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f->avx2_fma = avx && fma && ymm && (b & bit_AVX2);
        /* the *_avx512.c files are compiled with F, VL, BW and DQ (every AVX-512 core since
         * Skylake-SP has all four), so all four must be there */
        f->avx512f = f->avx2_fma && zmm && (b & bit_AVX512F) && (b & bit_AVX512VL) &&
                     (b & bit_AVX512BW) && (b & bit_AVX512DQ);
    }
    unsigned regs[12];
    if ((unsigned)__get_cpuid_max(0x80000000, NULL) >= 0x80000004u) {
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002 + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
        memcpy(f->brand, regs, 48);
        f->brand[48] = 0;
    }
}
#elif defined(__aarch64__)
static void detect(mi_cpu_features *f) { f->neon = true; snprintf(f->brand, sizeof f->brand, "aarch64"); }
#else
static void detect(mi_cpu_features *f) { (void)f; }
#endif

static mi_cpu_features features;
static mi_isa isa;
static int default_threads;
/* Per calling thread, so that two sessions on two host threads each keep their own count and the
 * host's OpenMP state (omp_set_num_threads) is never touched: every parallel region of the engine
 * names its team size with num_threads(mi_threads()), evaluated by the thread that enters it. */
static _Thread_local int threads;
static char bad_isa[64];   /* an MI_ISA value that names no ISA ("" when none) */

static void init(void) {
    detect(&features);
    isa = features.avx512f ? MI_ISA_AVX512 : features.avx2_fma ? MI_ISA_AVX2
        : features.neon ? MI_ISA_NEON : MI_ISA_PORTABLE;
    const char *want = getenv("MI_ISA");
    if (want && *want) {
        static const mi_isa all[] = { MI_ISA_REF, MI_ISA_PORTABLE, MI_ISA_NEON, MI_ISA_AVX2, MI_ISA_AVX512 };
        bool known = false;
        for (size_t i = 0; i < sizeof all / sizeof *all && !known; i++)
            if (!strcasecmp(want, mi_isa_name(all[i]))) {
                known = true;
                if (all[i] < isa) isa = all[i];
            }
        /* a typo must not quietly mean "no cap": remembered for mi_cpu_check_env, and the ISA
         * stays what the CPU supports */
        if (!known) snprintf(bad_isa, sizeof bad_isa, "%s", want);
    }
    /* MI_EXACT: the bits of every other CPU (docs/arm.md). What is left below this ceiling is
     * plain C compiled without FMA contraction, whose summation order does not depend on the
     * ISA, and ops/mathf.c instead of libm. Any value but "" and "0" turns it on. */
    const char *exact = getenv("MI_EXACT");
    if (exact && *exact && strcmp(exact, "0") && isa > MI_ISA_PORTABLE) isa = MI_ISA_PORTABLE;
    default_threads = omp_get_num_procs();
}

static void once(void) {
    static pthread_once_t done = PTHREAD_ONCE_INIT;
    pthread_once(&done, init);
}

const mi_cpu_features *mi_cpu(void) { once(); return &features; }
mi_isa mi_cpu_isa(void) { once(); return isa; }

const char *mi_isa_name(mi_isa i) {
    static const char *n[] = { "ref", "portable", "neon", "avx2", "avx512" };
    return n[i];
}

mi_status mi_cpu_check_env(void) {
    once();
    if (!bad_isa[0]) return MI_OK;
    return MI_FAIL(MI_ERR_ARG, "MI_ISA='%s' is not an ISA; accepted: ref, portable, neon, avx2, avx512 (a ceiling; unset "
                   "for the best this CPU has)", bad_isa);
}

int mi_thread_limit(void) {
    int procs = omp_get_num_procs();
    return procs * 2 > 4 ? procs * 2 : 4;
}

void mi_set_threads(int n) {
    once();
    threads = n <= 0 ? 0 : n < mi_thread_limit() ? n : mi_thread_limit();
}

int mi_threads(void) { once(); return threads > 0 ? threads : default_threads; }
