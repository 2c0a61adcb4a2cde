/* ops/x86/linear_avx2.c - AVX2+FMA linear and matmul. References: ops/linear.c (mi_linear_ref,
 * mi_matmul_ref); tests: tests/test_ops.c (linear_* and matmul_* cases).
 *
 * linear: y[r,o] = dot(x[r,:], w[o,:]) + b[o]. Every dot product runs the same fixed sequence
 * whatever the batch, block or thread: two 8-lane FMA accumulators over 16-float steps (a0 on
 * the first 8 floats of each step, a1 on the last 8), one more 8-float step into a0, the two
 * added, a fixed horizontal sum, then the scalar tail (multiply, add) and the bias.
 * Two ways through that sequence, the same bits:
 *   - one row (a classifier's single image): memory-bound on the weights (fc 2048->1000 reads
 *     8 MB), so each weight row is streamed once;
 *   - two rows or more (a batch, a detector's box head: 300 RoIs x 12544 -> 1024): cache-blocked
 *     like a GEMM. (From 2 to 7 rows it once streamed too, each weight row met by up to 4 input
 *     rows in L1; measured at one thread, blocked was 2-4x faster for every shape tried: 2 x
 *     2048 -> 1000 0.51 -> 0.13 ms, 7 x 12544 -> 1024 9.6 -> 3.0, 7 x 50176 -> 1024 (the ResNet-50
 *     detector's fc6 with 7 proposals) 36 -> 14; at one row the two are within 10 %.)
 *     A work item is a block of rows x a block of outputs; the sum over `in` is cut into K
 *     blocks, the accumulators of every (row, output) pair of the item parked in a buffer
 *     between them. In a K block the x rows of a register tile stay in L1 while the item's
 *     weight block, in L2, passes by. The echo detector's fc6 (300 x 12544 -> 256) at one
 *     thread: 98 ms streamed (all 15 MB of x read once per output), 34 ms blocked (best of 6
 *     in turns); in L1 the tile runs at ~74 % of the FMA peak, streaming its weights from L2
 *     costs ~20 % more (measured by pinning them). mi_linear_blocked is that driver for any
 *     ISA's register tile: with AVX-512 the tile of ops/x86/linear_avx512.c, the same bits.
 *
 * matmul: vectorized over the columns of C only, blocked over rows and k; every element is
 * accumulated over k in order with a multiply then an add (no FMA), exactly like the reference,
 * so the bits are equal. */
#include "ops/linear.h"
#include "ops/cpu.h"

#include <immintrin.h>
#include <omp.h>

/* Below this many multiply-adds (~5 us on one core) one thread beats two, whose region costs a
   wake-up and a barrier: the GCN's layers on a 64-node graph (64 x 64 -> 64, 262144) took 47 us
   a forward at 2 threads and 30 at 1; ResNet-18's fc (512 x 1000) still splits. */
#define PAR_MIN_FLOPS (1 << 18)

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* lanes i + i+4 */
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                        /* (0+2), (1+3) */
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* The end of one dot product's sequence, from its accumulators after the last 16-float step at
   i = in rounded down to 16. */
static inline float finish(__m256 a0, __m256 a1, const float *xr, const float *wo, int64_t i,
                           int64_t in, const float *bias) {
    if (i + 8 <= in) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xr + i), _mm256_loadu_ps(wo + i), a0);
        i += 8;
    }
    float s = hsum8(_mm256_add_ps(a0, a1));
    for (int64_t t = i; t < in; t++) s += xr[t] * wo[t];
    return bias ? s + *bias : s;
}

/* R rows of x (R = 1..4, a constant after inlining) against one weight row wo: (in). */
static inline __attribute__((always_inline)) void dot_rows(float *y, int64_t ystride,
                                                           const float *x, int64_t in,
                                                           const float *wo, const float *bias, int R) {
    __m256 a0[4], a1[4];
    for (int r = 0; r < R; r++) { a0[r] = _mm256_setzero_ps(); a1[r] = _mm256_setzero_ps(); }
    int64_t i = 0;
    for (; i + 16 <= in; i += 16) {
        const __m256 w0 = _mm256_loadu_ps(wo + i), w1 = _mm256_loadu_ps(wo + i + 8);
        for (int r = 0; r < R; r++) {
            a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * in + i), w0, a0[r]);
            a1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * in + i + 8), w1, a1[r]);
        }
    }
    for (int r = 0; r < R; r++) y[r * ystride] = finish(a0[r], a1[r], x + r * in, wo, i, in, bias);
}

/* output o of every row */
static void linear_output(float *y, const float *x, const float *w, const float *b, int64_t n,
                          int64_t in, int64_t out, int64_t o) {
    const float *wo = w + o * in;
    const float *bias = b ? b + o : NULL;
    int64_t r = 0;
    for (; r + 4 <= n; r += 4) dot_rows(y + r * out + o, out, x + r * in, in, wo, bias, 4);
    switch (n - r) {
    case 3: dot_rows(y + r * out + o, out, x + r * in, in, wo, bias, 3); break;
    case 2: dot_rows(y + r * out + o, out, x + r * in, in, wo, bias, 2); break;
    case 1: dot_rows(y + r * out + o, out, x + r * in, in, wo, bias, 1); break;
    default: break;
    }
}

/* One row of x against OS weight rows at once, each dot product's own sequence (dot_rows' with
 * R = 1): OS weight streams in flight rather than one. ResNet-50's fc (2048 -> 1000, 8 MB of
 * weights, mostly from memory) on the 2-core Xeon with AVX-512: 0.69 -> 0.54 ms at one thread,
 * 0.37 -> 0.28 at two (paired medians of 20 forward passes alternating in one process); 8 streams
 * of 16 lanes (AVX-512) gave the same, a software prefetch 2 KB ahead nothing more. */
#define OS 4
static void dot_outs(float *y, const float *x, const float *w, const float *b, int64_t in, int64_t o0) {
    __m256 a0[OS], a1[OS];
    for (int o = 0; o < OS; o++) { a0[o] = _mm256_setzero_ps(); a1[o] = _mm256_setzero_ps(); }
    const float *wo = w + o0 * in;
    int64_t i = 0;
    for (; i + 16 <= in; i += 16) {
        const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
        #pragma GCC unroll 4
        for (int o = 0; o < OS; o++) {
            a0[o] = _mm256_fmadd_ps(x0, _mm256_loadu_ps(wo + o * in + i), a0[o]);
            a1[o] = _mm256_fmadd_ps(x1, _mm256_loadu_ps(wo + o * in + i + 8), a1[o]);
        }
    }
    for (int o = 0; o < OS; o++) y[o0 + o] = finish(a0[o], a1[o], x, wo + o * in, i, in, b ? b + o0 + o : NULL);
}

static void outputs(float *y, const float *x, const float *w, const float *b, int64_t n, int64_t in, int64_t out,
                    int64_t o0, int64_t o1) {
    int64_t o = o0;
    if (n == 1)
        for (; o + OS <= o1; o += OS) dot_outs(y, x, w, b, in, o);
    for (; o < o1; o++) linear_output(y, x, w, b, n, in, out, o);
}

static void linear_rows(float *y, const float *x, const float *w, const float *b, int64_t n,
                        int64_t in, int64_t out) {
    const int nt = mi_threads();
    if (nt == 1 || n * in * out <= PAR_MIN_FLOPS)   /* not even a team of one (ops/cpu.h) */
        outputs(y, x, w, b, n, in, out, 0, out);
    else {
        #pragma omp parallel num_threads(nt)
        {
            const int t = omp_get_thread_num(), T = omp_get_num_threads();
            outputs(y, x, w, b, n, in, out, t * out / T, (t + 1) * out / T);
        }
    }
}

/* ---- the cache-blocked path ---- */
#define KB 512          /* floats of `in` per K block (a multiple of 16): a tile's x rows, 8 KB, in L1 */
#define RT 4            /* register tile: RT rows x OT outputs, one half (a0 or a1) at a time: */
#define OT 3            /* 12 accumulators, 3 weight vectors and 1 x vector in the 16 registers */
#define RC 96           /* rows per work item, at most (blocks are cut evenly) */
#define OC 48           /* outputs per work item, at most: a K block's weights, 96 KB, in L2 */
#define BLOCKED_MIN_ROWS 2   /* one row streams (see the top of the file) */
#define ACC_FLOATS ((size_t)RC * OC * 16)   /* per thread: [row][output][a0 | a1] */

/* acc[r][o] (rows accs floats apart) += the 16-float steps of [k0, k1) of rows x (R of them) and
   weight rows w (O of them), a0's half then a1's. The unroll pragmas matter: at -O2 GCC left
   these loops rolled and the accumulators on the stack, at a third of the speed. */
static inline __attribute__((always_inline)) void tile(float *acc, int64_t accs, const float *x,
                                                       const float *w, int64_t in, int64_t k0,
                                                       int64_t k1, int R, int O) {
    for (int h = 0; h < 2; h++) {
        __m256 a[RT][OT];
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
            _Pragma("GCC unroll 4") for (int o = 0; o < O; o++) a[r][o] = _mm256_load_ps(acc + r * accs + o * 16 + h * 8);
        for (int64_t i = k0 + h * 8; i < k1; i += 16) {
            __m256 wv[OT];
            _Pragma("GCC unroll 4") for (int o = 0; o < O; o++) wv[o] = _mm256_loadu_ps(w + o * in + i);
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
                const __m256 xv = _mm256_loadu_ps(x + r * in + i);
                _Pragma("GCC unroll 4") for (int o = 0; o < O; o++) a[r][o] = _mm256_fmadd_ps(xv, wv[o], a[r][o]);
            }
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
            _Pragma("GCC unroll 4") for (int o = 0; o < O; o++) _mm256_store_ps(acc + r * accs + o * 16 + h * 8, a[r][o]);
    }
}

#define TILE(R, O) tile(acc, accs, x, w, in, k0, k1, R, O)
static void tile_any(float *acc, int64_t accs, const float *x, const float *w, int64_t in,
                     int64_t k0, int64_t k1, int R, int O) {
    switch (R * 4 + O) {
    case 4 * 4 + 3: TILE(4, 3); break;   case 4 * 4 + 2: TILE(4, 2); break;   case 4 * 4 + 1: TILE(4, 1); break;
    case 3 * 4 + 3: TILE(3, 3); break;   case 3 * 4 + 2: TILE(3, 2); break;   case 3 * 4 + 1: TILE(3, 1); break;
    case 2 * 4 + 3: TILE(2, 3); break;   case 2 * 4 + 2: TILE(2, 2); break;   case 2 * 4 + 1: TILE(2, 1); break;
    case 1 * 4 + 3: TILE(1, 3); break;   case 1 * 4 + 2: TILE(1, 2); break;   case 1 * 4 + 1: TILE(1, 1); break;
    default: break;
    }
}
#undef TILE

/* Rows [r0, r1) x outputs [o0, o1) of y, with acc (ACC_FLOATS, 64-byte aligned) as scratch, in
 * register tiles of up to t->rt rows x t->ot outputs. */
static void linear_item(float *y, const float *x, const float *w, const float *b, int64_t in,
                        int64_t out, int64_t r0, int64_t r1, int64_t o0, int64_t o1, float *acc,
                        const mi_linear_tiles *t) {
    const int64_t nr = r1 - r0, no = o1 - o0, accs = no * 16, n16 = in / 16 * 16;
    for (int64_t i = 0; i < nr * accs; i++) acc[i] = 0.0f;
    for (int64_t k0 = 0; k0 < n16; k0 += KB) {
        const int64_t k1 = k0 + KB < n16 ? k0 + KB : n16;
        for (int64_t r = 0; r < nr; r += t->rt) {
            const int R = (int)(nr - r < t->rt ? nr - r : t->rt);
            for (int64_t o = 0; o < no; o += t->ot)
                t->tile(acc + r * accs + o * 16, accs, x + (r0 + r) * in, w + (o0 + o) * in, in, k0, k1,
                        R, (int)(no - o < t->ot ? no - o : t->ot));
        }
    }
    for (int64_t r = 0; r < nr; r++)
        for (int64_t o = 0; o < no; o++) {
            const float *a = acc + r * accs + o * 16;
            y[(r0 + r) * out + o0 + o] = finish(_mm256_load_ps(a), _mm256_load_ps(a + 8), x + (r0 + r) * in,
                                                w + (o0 + o) * in, n16, in, b ? b + o0 + o : NULL);
        }
}

void mi_linear_blocked(float *y, const float *x, const float *w, const float *b, int64_t n,
                       int64_t in, int64_t out, const mi_linear_tiles *t) {
    const int nt = mi_threads();
    float *acc = n >= BLOCKED_MIN_ROWS ? mi_alloc_aligned((size_t)nt * ACC_FLOATS * sizeof(float)) : NULL;
    if (!acc) {   /* few rows, or no memory for the accumulators: the same bits, streamed */
        linear_rows(y, x, w, b, n, in, out);
        return;
    }
    /* Blocks cut evenly (rows i * n / nrc ..), as many row blocks as make the item count a multiple
       of the thread count where the rows allow: equal shares for the static split (300 RoIs in
       blocks of 96 left one thread 192 rows and the other 108). */
    int64_t nrc = (n + RC - 1) / RC;
    const int64_t noc = (out + OC - 1) / OC;
    while ((nrc * noc) % nt && nrc < n / t->rt) nrc++;
#define ITEM(it, tid) linear_item(y, x, w, b, in, out, (it) / noc * n / nrc, ((it) / noc + 1) * n / nrc, \
                                  (it) % noc * out / noc, ((it) % noc + 1) * out / noc,            \
                                  acc + (size_t)(tid) * ACC_FLOATS, t)
    if (nt == 1 || n * in * out <= PAR_MIN_FLOPS)   /* not even a team of one (ops/cpu.h) */
        for (int64_t it = 0; it < nrc * noc; it++) ITEM(it, 0);
    else {
        #pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t it = 0; it < nrc * noc; it++) ITEM(it, omp_get_thread_num());
    }
#undef ITEM
    mi_free_aligned(acc);
}

void mi_linear_avx2(float *y, const float *x, const float *w, const float *b, int64_t n,
                    int64_t in, int64_t out) {
    static const mi_linear_tiles t = { .tile = tile_any, .rt = RT, .ot = OT };
    mi_linear_blocked(y, x, w, b, n, in, out, &t);
}

/* Rows m .. m + R - 1 (R = 1 or 2, a constant after inlining) of C, columns j .. j + 31, over
   k in [k0, k1): R x 4 accumulators, each summed over k in order with a multiply then an add,
   taken from C (zeros when k0 is 0) and put back, which rounds nothing. */
static inline __attribute__((always_inline)) void mm_rows32(float *C, const float *A, const float *B,
                                                            int64_t m, int64_t j, int64_t k0, int64_t k1,
                                                            int64_t K, int64_t N, int R) {
    __m256 c[2][4];
    _Pragma("GCC unroll 2") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int v = 0; v < 4; v++)
            c[r][v] = k0 ? _mm256_loadu_ps(C + (m + r) * N + j + 8 * v) : _mm256_setzero_ps();
    for (int64_t k = k0; k < k1; k++) {
        const float *bk = B + k * N + j;
        const __m256 b0 = _mm256_loadu_ps(bk), b1 = _mm256_loadu_ps(bk + 8);
        const __m256 b2 = _mm256_loadu_ps(bk + 16), b3 = _mm256_loadu_ps(bk + 24);
        _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) {
            const __m256 ak = _mm256_set1_ps(A[(m + r) * K + k]);
            c[r][0] = _mm256_add_ps(c[r][0], _mm256_mul_ps(ak, b0));
            c[r][1] = _mm256_add_ps(c[r][1], _mm256_mul_ps(ak, b1));
            c[r][2] = _mm256_add_ps(c[r][2], _mm256_mul_ps(ak, b2));
            c[r][3] = _mm256_add_ps(c[r][3], _mm256_mul_ps(ak, b3));
        }
    }
    _Pragma("GCC unroll 2") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int v = 0; v < 4; v++) _mm256_storeu_ps(C + (m + r) * N + j + 8 * v, c[r][v]);
}

/* Rows per work item and rows of B per block: a block's 32-column strips (16 KB each) stay in L1
   while every row of the item passes over them, two rows at a time (eight independent add
   chains). Row by row over all of B, the GCN's 1024 x 1024 by 64 product took 3.5-3.7 ms at one
   thread; blocked, 2.5-3.2 (in turns; 1.9 -> 1.7 at two). */
#define MM_ROWS 16
#define MM_KB 128

void mi_matmul_avx2(float *C, const float *A, const float *B, int64_t M, int64_t K, int64_t N) {
    const int64_t items = (M + MM_ROWS - 1) / MM_ROWS;
    #pragma omp parallel for num_threads(mi_threads()) if (M * K * N > PAR_MIN_FLOPS) schedule(static)
    for (int64_t it = 0; it < items; it++) {
        const int64_t m0 = it * MM_ROWS, m1 = m0 + MM_ROWS < M ? m0 + MM_ROWS : M;
        const int64_t j = N / 32 * 32;
        for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += MM_KB) {
            const int64_t k1 = k0 + MM_KB < K ? k0 + MM_KB : K;
            for (int64_t jb = 0; jb < j; jb += 32) {
                int64_t m = m0;
                for (; m + 2 <= m1; m += 2) mm_rows32(C, A, B, m, jb, k0, k1, K, N, 2);
                if (m < m1) mm_rows32(C, A, B, m, jb, k0, k1, K, N, 1);
            }
        }
        for (int64_t m = m0; m < m1; m++) {
            const float *a = A + m * K;
            float *c = C + m * N;
            int64_t jj = j;
            for (; jj + 8 <= N; jj += 8) {
                __m256 c0 = _mm256_setzero_ps();
                for (int64_t k = 0; k < K; k++)
                    c0 = _mm256_add_ps(c0, _mm256_mul_ps(_mm256_set1_ps(a[k]), _mm256_loadu_ps(B + k * N + jj)));
                _mm256_storeu_ps(c + jj, c0);
            }
            for (; jj < N; jj++) {           /* tail columns: the reference's expression */
                float s = 0.0f;
                for (int64_t k = 0; k < K; k++) s = s + a[k] * B[k * N + jj];
                c[jj] = s;
            }
        }
    }
}

/* mi_matmul_skip_zeros (ops/linear.h): row m of C over the k where A[m, k] != 0, in increasing
   order, each term a multiply then an add as in the reference. A row's nonzero k are listed SCAN
   at a time, then the columns of C are swept in strips of NV vectors over the list; between two
   lists a strip's sums are parked in C (loads and stores round nothing). The list is made without
   a branch per element (a bit loop over 10 % random nonzeros mispredicted most of its branches and
   took half the time): each 8 floats' nonzero mask selects, from a table, the permutation that
   packs their indices to the front; all 8 are stored and the count advances by the popcount. */
#define SCAN 1024

/* lut[mask]: the positions of mask's set bits, in increasing order, 4 bits each from the bottom */
static void pack_table(uint32_t lut[256]) {
    for (unsigned m = 0; m < 256; m++) {
        uint32_t v = 0;
        for (unsigned b = 0, p = 0; b < 8; b++)
            if (m >> b & 1) v |= b << (4 * p++);
        lut[m] = v;
    }
}

/* idx (room for k1 - k0 + 8) <- the k in [k0, k1) with a[k] != 0 (a NaN included); their count */
static int scan_nonzero(int32_t *idx, const float *a, int64_t k0, int64_t k1, const uint32_t lut[256]) {
    const __m256 zero = _mm256_setzero_ps();
    const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28), nib = _mm256_set1_epi32(15);
    int n = 0;
    int64_t k = k0;
    for (; k + 8 <= k1; k += 8) {
        const unsigned m = ~(unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(a + k), zero, _CMP_EQ_OQ)) & 0xffu;
        const __m256i pos = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)lut[m]), shifts), nib);
        _mm256_storeu_si256((__m256i *)(idx + n), _mm256_add_epi32(pos, _mm256_set1_epi32((int)k)));
        n += __builtin_popcount(m);
    }
    for (; k < k1; k++)
        if (a[k] != 0.0f) idx[n++] = (int32_t)k;
    return n;
}

/* columns j .. j + 8 NV - 1 of c over the n listed k, NV a constant after inlining; first: the
   sums start at zero, else from what c holds */
static inline __attribute__((always_inline)) void skip_strip(float *c, const float *a, const float *B, int64_t N,
                                                             const int32_t *idx, int n, int first, int64_t j,
                                                             int NV) {
    __m256 acc[8];
    _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)
        acc[v] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(c + j + 8 * v);
    for (int e = 0; e < n; e++) {
        const __m256 ak = _mm256_set1_ps(a[idx[e]]);
        const float *bk = B + (int64_t)idx[e] * N + j;
        _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)
            acc[v] = _mm256_add_ps(acc[v], _mm256_mul_ps(ak, _mm256_loadu_ps(bk + 8 * v)));
    }
    _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++) _mm256_storeu_ps(c + j + 8 * v, acc[v]);
}

static void skip_zeros_row(float *c, const float *a, const float *B, int64_t K, int64_t N, const uint32_t lut[256]) {
    int32_t idx[SCAN + 8];
    for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += SCAN) {
        const int n = K ? scan_nonzero(idx, a, k0, k0 + SCAN < K ? k0 + SCAN : K, lut) : 0, first = k0 == 0;
        int64_t j = 0;
        for (; j + 64 <= N; j += 64) skip_strip(c, a, B, N, idx, n, first, j, 8);
        for (; j + 8 <= N; j += 8) skip_strip(c, a, B, N, idx, n, first, j, 1);
        for (; j < N; j++) {   /* tail columns: the reference's expression */
            float s = first ? 0.0f : c[j];
            for (int e = 0; e < n; e++) s = s + a[idx[e]] * B[(int64_t)idx[e] * N + j];
            c[j] = s;
        }
    }
}

void mi_matmul_skip_zeros_avx2(float *C, const float *A, const float *B, int64_t M, int64_t K, int64_t N) {
    uint32_t lut[256];
    pack_table(lut);
    const int nt = mi_threads();
    if (nt == 1 || M * K * N <= PAR_MIN_FLOPS)   /* not even a team of one (ops/cpu.h) */
        for (int64_t m = 0; m < M; m++) skip_zeros_row(C + m * N, A + m * K, B, K, N, lut);
    else {
        #pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t m = 0; m < M; m++) skip_zeros_row(C + m * N, A + m * K, B, K, N, lut);
    }
}
