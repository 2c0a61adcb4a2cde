/* ops/linear.h - fully connected layer (torch.nn.functional.linear) and a plain matmul.
 *
 * Float32, contiguous, row-major. The public functions dispatch to AVX2 when
 * mi_cpu_isa() >= MI_ISA_AVX2 (x86-64; mi_linear's cache-blocked path to AVX-512 when the CPU has
 * it, the same bits), to NEON when mi_cpu_isa() >= MI_ISA_NEON (aarch64); the *_ref functions are
 * the spec. */
#ifndef MI_LINEAR_H
#define MI_LINEAR_H

#include "ops/tensor.h"

/* y = x · wᵀ + b, as torch.nn.functional.linear(x, w, b).
 * x: (n, in)  w: (out, in), torch's nn.Linear.weight layout  b: (out) or NULL  y: (n, out).
 * The AVX2 and NEON paths reduce over `in` in 8- and 4-wide FMA lanes: not the reference's bits
 * (tolerance in tests/test_ops.c), but one fixed order per output, so the same bits for any n and
 * thread count. */
void mi_linear(float *y, const float *x, const float *w, const float *b, int64_t n, int64_t in,
               int64_t out);

/* C = A · B.  A: (M, K)  B: (K, N)  C: (M, N), C not aliasing A or B.
 * Each C[m, j] is summed over k in increasing order (multiply, then add): the AVX2 and NEON paths
 * vectorize over j only, so they equal the reference bit for bit. */
void mi_matmul(float *C, const float *A, const float *B, int64_t M, int64_t K, int64_t N);

/* The same C as mi_matmul, bit for bit, with A's zero entries skipped: for a graph's normalized
 * adjacency (a GCN's Â, mostly zeros) the work follows the edges, not K. Skipping is exact: a
 * skipped term is ±0 (0 times a finite B), and a sum that starts at +0 never becomes -0 by
 * round-to-nearest addition, so adding ±0 leaves every partial sum as it is. When B holds an
 * infinity or NaN (0 · inf is NaN) it runs mi_matmul itself. AVX2 only; elsewhere mi_matmul. */
void mi_matmul_skip_zeros(float *C, const float *A, const float *B, int64_t M, int64_t K, int64_t N);

void mi_linear_ref(float *y, const float *x, const float *w, const float *b, int64_t n, int64_t in,
                   int64_t out);
void mi_matmul_ref(float *C, const float *A, const float *B, int64_t M, int64_t K, int64_t N);
#if defined(__x86_64__)
void mi_linear_avx2(float *y, const float *x, const float *w, const float *b, int64_t n,
                    int64_t in, int64_t out);
void mi_linear_avx512(float *y, const float *x, const float *w, const float *b, int64_t n,
                      int64_t in, int64_t out);
/* The cache-blocked linear of ops/x86/linear_avx2.c with another ISA's register tile: tile adds
 * the 16-float steps [k0, k1) of R <= rt rows of x and O <= ot weight rows into acc[r][o][16]
 * (rows accs floats apart; lanes 0-7 the first 8 floats of each step, lanes 8-15 the last 8),
 * each lane one FMA per step in order, which is what makes its bits the AVX2 tile's. */
typedef struct {
    void (*tile)(float *acc, int64_t accs, const float *x, const float *w, int64_t in, int64_t k0,
                 int64_t k1, int R, int O);
    int rt, ot;
} mi_linear_tiles;
void mi_linear_blocked(float *y, const float *x, const float *w, const float *b, int64_t n,
                       int64_t in, int64_t out, const mi_linear_tiles *t);
void mi_matmul_avx2(float *C, const float *A, const float *B, int64_t M, int64_t K, int64_t N);
void mi_matmul_skip_zeros_avx2(float *C, const float *A, const float *B, int64_t M, int64_t K, int64_t N);
#elif defined(__aarch64__)
void mi_linear_neon(float *y, const float *x, const float *w, const float *b, int64_t n,
                    int64_t in, int64_t out);
void mi_matmul_neon(float *C, const float *A, const float *B, int64_t M, int64_t K, int64_t N);
#endif

#endif
