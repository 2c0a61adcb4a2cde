/* ops/linear.c - scalar references for linear and matmul (see linear.h), and the dispatch.
 * Threads split over outputs (rows of y / C), never over the sum over `in` / K. */
#include "ops/linear.h"
#include "ops/cpu.h"

#define PAR_MIN_FLOPS 65536

void mi_linear_ref(float *y, const float *x, const float *w, const float *b, int64_t n, int64_t in,
                   int64_t out) {
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (n * in * out > PAR_MIN_FLOPS) schedule(static)
    for (int64_t r = 0; r < n; r++)
        for (int64_t o = 0; o < out; o++) {
            const float *xr = x + r * in, *wo = w + o * in;
            float s = 0.0f;
            for (int64_t i = 0; i < in; i++) s += xr[i] * wo[i];
            y[r * out + o] = b ? s + b[o] : s;
        }
}

void mi_linear(float *y, const float *x, const float *w, const float *b, int64_t n, int64_t in,
               int64_t out) {
#if defined(__x86_64__)
    if (mi_cpu_isa() >= MI_ISA_AVX512) { mi_linear_avx512(y, x, w, b, n, in, out); return; }
    if (mi_cpu_isa() >= MI_ISA_AVX2) { mi_linear_avx2(y, x, w, b, n, in, out); return; }
#elif defined(__aarch64__)
    if (mi_cpu_isa() >= MI_ISA_NEON) { mi_linear_neon(y, x, w, b, n, in, out); return; }
#endif
    mi_linear_ref(y, x, w, b, n, in, out);
}

void mi_matmul_ref(float *C, const float *A, const float *B, int64_t M, int64_t K, int64_t N) {
    #pragma omp parallel for num_threads(mi_threads()) if (M * K * N > PAR_MIN_FLOPS) schedule(static)
    for (int64_t m = 0; m < M; m++) {
        float *c = C + m * N;
        for (int64_t j = 0; j < N; j++) c[j] = 0.0f;
        for (int64_t k = 0; k < K; k++) {
            const float a = A[m * K + k];
            const float *bk = B + k * N;
            for (int64_t j = 0; j < N; j++) c[j] = c[j] + a * bk[j];
        }
    }
}

void mi_matmul_skip_zeros(float *C, const float *A, const float *B, int64_t M, int64_t K, int64_t N) {
#if defined(__x86_64__)
    if (mi_cpu_isa() >= MI_ISA_AVX2 && mi_all_finite(B, K * N)) {
        mi_matmul_skip_zeros_avx2(C, A, B, M, K, N);
        return;
    }
#endif
    mi_matmul(C, A, B, M, K, N);
}

void mi_matmul(float *C, const float *A, const float *B, int64_t M, int64_t K, int64_t N) {
#if defined(__x86_64__)
    if (mi_cpu_isa() >= MI_ISA_AVX2) { mi_matmul_avx2(C, A, B, M, K, N); return; }
#elif defined(__aarch64__)
    if (mi_cpu_isa() >= MI_ISA_NEON) { mi_matmul_neon(C, A, B, M, K, N); return; }
#endif
    mi_matmul_ref(C, A, B, M, K, N);
}
