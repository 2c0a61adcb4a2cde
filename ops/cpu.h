/* ops/cpu.h - CPU feature detection, the ISA the kernels run on, the thread count.
 *
 * Detection runs once, on first use: it reads CPUID/XGETBV and applies MI_ISA=ref|portable|neon|avx2|avx512 (a
 * ceiling, never above what the CPU and OS support) and MI_EXACT=1 (the portable ceiling: results
 * identical bit for bit between x86-64 and aarch64, docs/arm.md). Each ops module dispatches on mi_cpu_isa()
 * itself (a conv layer decides once, at init), so adding an ISA (NEON) touches only the modules
 * that have a kernel for it; everything else runs its scalar reference. */
#ifndef MI_CPU_H
#define MI_CPU_H

#include "medinfer.h"

#include <stdbool.h>
#include <stdint.h>

/* Ordered as ceilings: MI_ISA=portable keeps every SIMD kernel off but the convolutions on the
 * packed GEMM's portable C micro-kernels (ops/conv_portable.c); MI_ISA=ref forces every
 * reference. A CPU with none of NEON, AVX2, AVX-512 runs at MI_ISA_PORTABLE. */
typedef enum { MI_ISA_REF = 0, MI_ISA_PORTABLE, MI_ISA_NEON, MI_ISA_AVX2, MI_ISA_AVX512 } mi_isa;

typedef struct {
    bool avx2_fma;  /* AVX2 + FMA3, and the OS saves ymm state */
    bool avx512f;   /* AVX-512 F+VL+BW+DQ, and the OS saves zmm state */
    bool neon;
    char brand[64];
} mi_cpu_features;

const mi_cpu_features *mi_cpu(void);
mi_isa      mi_cpu_isa(void);           /* the ISA the kernels were chosen for */
const char *mi_isa_name(mi_isa isa);
/* MI_ERR_ARG naming MI_ISA, its value and the accepted ones when MI_ISA is set to something that
 * is not an ISA name (the ISA then stays what the CPU supports); programs call it at start-up. */
mi_status   mi_cpu_check_env(void);

/* Threads used by the OpenMP regions the calling thread enters; results never depend on it. The
 * count belongs to the calling thread only (a session sets it around its run), and the host's
 * OpenMP settings are left alone. Per-thread scratch is sized at load for mi_thread_limit()
 * threads, so mi_set_threads clamps to it: max(4, 2 x cores) - more would only oversubscribe, and
 * 4 lets a 2-core machine test 1/2/4. */
/* A parallel region costs even when it runs on one thread: libgomp ends every region with a
 * futex wake, a system call (~0.5 us on a VM; 9 regions were 12 % of a 64-node GCN forward).
 * Ops that are tiny at some sizes test mi_threads() and their size and then call the loop
 * directly ("not even a team of one"), rather than through a parallel's if clause. */
void mi_set_threads(int n);             /* n <= 0: all cores */
int  mi_threads(void);
int  mi_thread_limit(void);

#endif
