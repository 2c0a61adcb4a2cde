/* ops/x86/linear_avx512.c - the register tile of mi_linear's cache-blocked path (many rows: a
 * detector's box head) in 16-float vectors. The driver, the streaming path for few rows and every
 * dot product's sequence are ops/x86/linear_avx2.c's: there each 16-float step of `in` is two
 * 8-lane FMAs, into a0 (the step's first 8 floats) and a1 (its last 8); here one 16-lane FMA whose
 * lanes are a0's and a1's, so each lane runs the same FMAs in the same order and the bits are
 * the AVX2 path's. With twice the lanes and twice the registers the tile is 6 rows x 4 outputs
 * (24 accumulators, 4 weight vectors and 1 x vector of the 32): per 24 FMAs it reads 4 weight
 * vectors from L2 and 6 x vectors from L1. Measured at one thread against the AVX2 tile (4 x 3
 * of 8 lanes), best of repeated runs in turns: 40 RoIs x 50176 -> 1024 (the ResNet-50 detector's
 * fc6) 63 -> 37 ms, 300 x 12544 -> 256 27 -> 15 ms (110-130 GFLOP/s); 4 x 6 and 8 x 3 tiles of
 * 16 lanes gave 73-110 and 79-104 GFLOP/s (the weights' L2 traffic per FMA: 16 and 8 bytes, 11
 * for 6 x 4, the x rows' L1 traffic the other way round).
 * Test: tests/test_ops.c (linear_avx512_same_bits_as_avx2). */
#include "ops/linear.h"

#include <immintrin.h>

#define RT 6
#define OT 4

/* acc[r][o][16] += the 16-float steps [k0, k1) of R rows of x against O weight rows of w */
static inline __attribute__((always_inline)) void tile(float *acc, int64_t accs, const float *x,
                                                       const float *w, int64_t in, int64_t k0,
                                                       int64_t k1, int R, int O) {
    __m512 a[RT][OT];
    _Pragma("GCC unroll 6") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int o = 0; o < O; o++) a[r][o] = _mm512_load_ps(acc + r * accs + o * 16);
    for (int64_t i = k0; i < k1; i += 16) {
        __m512 wv[OT];
        _Pragma("GCC unroll 4") for (int o = 0; o < O; o++) wv[o] = _mm512_loadu_ps(w + o * in + i);
        _Pragma("GCC unroll 6") for (int r = 0; r < R; r++) {
            const __m512 xv = _mm512_loadu_ps(x + r * in + i);
            _Pragma("GCC unroll 4") for (int o = 0; o < O; o++) a[r][o] = _mm512_fmadd_ps(xv, wv[o], a[r][o]);
        }
    }
    _Pragma("GCC unroll 6") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int o = 0; o < O; o++) _mm512_store_ps(acc + r * accs + o * 16, a[r][o]);
}

#define T(R, O) case (R) * 8 + (O): tile(acc, accs, x, w, in, k0, k1, R, O); break;
#define TR(R) T(R, 1) T(R, 2) T(R, 3) T(R, 4)
static void tile_any(float *acc, int64_t accs, const float *x, const float *w, int64_t in,
                     int64_t k0, int64_t k1, int R, int O) {
    switch (R * 8 + O) {
    TR(1) TR(2) TR(3) TR(4) TR(5) TR(6)
    default: break;
    }
}
#undef TR
#undef T

void mi_linear_avx512(float *y, const float *x, const float *w, const float *b, int64_t n,
                      int64_t in, int64_t out) {
    static const mi_linear_tiles t = { .tile = tile_any, .rt = RT, .ot = OT };
    mi_linear_blocked(y, x, w, b, n, in, out, &t);
}
