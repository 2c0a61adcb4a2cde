/* ops/gemm.h - the packed GEMM that runs every fast convolution (direct, transposed, Winograd),
 * and the per-ISA table of its micro-kernels. Internal to ops/: included by ops/gemm.c,
 * ops/conv*.c, ops/x86/conv_*.c, ops/arm/conv_neon.c, ops/conv_portable.c and tests/test_conv.c; a network includes ops/conv.h only.
 *
 * A header of its own because it is a GEMM, not a layer: it knows panels, tiles and work items,
 * never kernel sizes, strides or padding. Each convolution reduces itself to it (ops/conv.c over
 * a phase-split copy of the input, ops/conv_transpose.c once per output phase,
 * ops/conv_winograd.c with the tile points as groups), so this header needs cpu.h alone. What the
 * convolution files share beyond the GEMM is in ops/conv_internal.h.
 *
 * C[m][q] = sum_k A[m][k] * B[k][q] per group. A is the weight matrix pre-packed in panels of MR
 * rows ([panel][k][MR], zero rows past M); row k of B is a contiguous run of a source buffer from
 * src + koff[k]. The columns q walk a grid of gd x gh x gw pixels of which od x oh x ow (the
 * corner) are real outputs: the grid's extra columns are a convolution's padded-row garbage,
 * computed and dropped at the store. */
#ifndef MI_GEMM_H
#define MI_GEMM_H

#include "ops/cpu.h"
#include "ops/tensor.h"

typedef struct { int64_t off; uint32_t mask; } mi_gemm_seg;  /* columns c in mask -> y[off + c] */

typedef struct {
    int64_t      kc;           /* depth of this K block */
    const float *a;            /* [kc][MR] packed weights */
    const float *b;            /* [kc][NR] packed input, 64-byte aligned */
    float       *acc;          /* [MR][NR] partial sums: read unless first, written unless last */
    int          first, last, relu;
    float       *y;            /* output row of the tile's first channel; rows ldy apart */
    const float *res;          /* residual, same layout as y, or NULL */
    int64_t      ldy;
    const float *bias;         /* [mr] or NULL; run_t: [nch] */
    int          nseg;         /* runs of tile columns that are real outputs */
    const mi_gemm_seg *seg;
    /* run_t only (channels on lanes): a is [kc][16] pixels, b is [kc][NR] weights; tile row i is
     * pixel i, stored at y[lane*ldy + pix[i]]; nch lanes are real channels */
    const int64_t *pix;
    int          nch;
    /* pf_n lines of 16 floats from pf (weights a later tile reads) for the kernel to bring into
     * L2 while it runs, spread over its k loop (the table's prefetch_a == 2) */
    const float *pf;
    int64_t      pf_n;
    /* NULL: the pixel operand (run's b, run_t's a) is a packed panel; else it is read in place
     * (tables with in_place), its row k at b + koff[k] (run) or a + koff[k] (run_t), and where
     * lds > 0, koff[k] == k * lds (the kernel steps by lds: run_t's broadcasts, addressed from a
     * pointer loaded per k step, cost 2-3 % on the 1x1 layers) */
    const int64_t *koff;
    int64_t      lds;
    int          src_far;   /* mi_gemm.src_far: fetch the in-place pixel operand ahead (lds > 0) */
} mi_gemm_ukr_args;

/* The lines a tile's epilogue will read (residual) and write (y), requested by the micro-kernel
 * before its last k loop so that they arrive while it runs; n is the tile's rows (pixels on the
 * lanes) or pixels (channels on the lanes). Each output channel is a row of its own, ldy floats
 * apart, so a tile touches one stream per channel: more than the hardware prefetchers follow, and
 * in a forward pass these lines sit in L3 or memory (the residual was written layers earlier).
 * With the AVX2 kernel's plain-vector epilogue and longer weight prefetch, ResNet-50 at one
 * thread went 96.0 -> 93.9 ms (bench_layers, in turns). Touches no value: the bits do not change. */
static inline __attribute__((always_inline)) void mi_gemm_prefetch_epilogue(const mi_gemm_ukr_args *p,
                                                                             int n, int chan_lanes) {
    const int64_t ldy = p->ldy;
    if (chan_lanes) {   /* pixels pix[0 .. n) of nch channels: the first and the last */
        for (int l = 0; l < p->nch; l++) {
            __builtin_prefetch(p->y + l * ldy + p->pix[0], 1);
            __builtin_prefetch(p->y + l * ldy + p->pix[n - 1], 1);
            if (p->res) {
                __builtin_prefetch(p->res + l * ldy + p->pix[0]);
                __builtin_prefetch(p->res + l * ldy + p->pix[n - 1]);
            }
        }
        return;
    }
    for (int s = 0; s < p->nseg; s++) {   /* each run's first and last real column, every row */
        const uint32_t m = p->seg[s].mask;
        const int64_t lo = p->seg[s].off + __builtin_ctz(m), hi = p->seg[s].off + 31 - __builtin_clz(m);
        for (int i = 0; i < n; i++) {
            __builtin_prefetch(p->y + i * ldy + lo, 1);
            __builtin_prefetch(p->y + i * ldy + hi, 1);
            if (p->res) {
                __builtin_prefetch(p->res + i * ldy + lo);
                __builtin_prefetch(p->res + i * ldy + hi);
            }
        }
    }
}

/* One ISA's kernels. Besides the GEMM's own (run, pack, run_t, pack_t) it carries those of the
 * convolutions' input and output stages (strided, wino*), so that one lookup picks an ISA's whole
 * fast path. */
typedef struct {
    int mr, nr, kc, mc;        /* register tile, K block, rows per M chunk (multiple of mr) */
    /* K up to which a GEMM with pixels / channels on the lanes runs as one K block rather than in
     * blocks of kc (0: kc), except a 1x1 stride-2 layer read in place (mi_gemm.pxs == 2) */
    int kone_pix, kone_chan;
    void (*run)(const mi_gemm_ukr_args *a, int mr);  /* mr <= MR valid rows */
    /* run for a GEMM whose weights (all groups) pass L2, so that in a forward pass they come from
     * L3 or memory: the same values, the weights fetched further ahead (NULL: run) */
    void (*run_stream)(const mi_gemm_ukr_args *a, int mr);
    /* B panel: dst[k][0..NR) = src[koff[k] + 0..nr), zeros past nr (the grid's last panel) */
    void (*pack)(float *dst, const float *src, const int64_t *koff, int64_t kc, int nr);
    /* dst[j] = src[j*stride] for j < n, reading src[0..avail) only (ops/conv.c's phase planes) */
    void (*strided)(float *dst, const float *src, int64_t n, int64_t stride, int64_t avail);
    /* Channels on the lanes (NULL where the ISA has none): tiles of mr <= MR pixels x NR output
     * channels; pack_t fills dst[k][0..16) with the panel's pixels: lanes in run[r].mask from
     * src + koff[k] + run[r].off + lane, zeros elsewhere. */
    void (*run_t)(const mi_gemm_ukr_args *a, int mr);
    void (*pack_t)(float *dst, const float *src, const int64_t *koff, int64_t kc,
                   const mi_gemm_seg *run, int nrun);
    /* Winograd F(2x2, 3x3) and F(4x4, 3x3) transforms of one row of tw tiles (the contracts of
     * mi_conv_wino2_in_ref ... in ops/conv_internal.h, bit for bit); NULL: those scalar ones. */
    void (*wino2_in)(float *v, int64_t vs, const float *rows, int64_t rowlen, int64_t tw);
    void (*wino2_out)(float *y, const float *res, const float *m, int64_t ms, int64_t tw, int64_t ow,
                      int64_t ldy, int nrows, float bias, int relu);
    void (*wino4_in)(float *v, int64_t vs, const float *rows, int64_t rowlen, int64_t tw);
    void (*wino4_out)(float *y, const float *res, const float *m, int64_t ms, int64_t tw, int64_t ow,
                      int64_t ldy, int nrows, float bias, int relu);
    /* Choices that follow the ISA's speed against the memory's, measured per ISA (the files of
     * the kernels say where): Winograd F(4x4) only on maps of at least wino4_min_tiles 4x4 tiles
     * (ops/conv.c, choose()); prefetch_a: the next weight panel is fetched into L2 while the
     * current one runs, 1: by mi_gemm_item before each tile, 2: by the kernel, a line every few k
     * steps (mi_gemm_ukr_args.pf), and only for weights larger than L2; channels on the lanes
     * against pixels (ops/conv.c, chan_lanes_win): chan_k_pct, run_t's time per k step in % of
     * run's, and chan_pixel_k, what run_t costs per pixel beyond its k loop, in k steps. */
    int wino4_min_tiles, prefetch_a, chan_pixel_k, chan_k_pct;
    /* 1: run and run_t read a panel in place where mi_gemm_item passes them koff */
    int in_place;
    /* run_t on a panel read in place (koff, lds > 0 or not) whose pixels lie 2 floats apart in a row
     * (mi_gemm.pxs; NULL where the table has none). Its own function, so that run_t's code stays
     * as it was: with the stride-2 cases inside run_t, layer3's Winograd layers of ResNet-50 (run_t
     * in place) ran 5-6 % slower at 1 and 2 threads. */
    void (*run_t_s2)(const mi_gemm_ukr_args *a, int mr);
    /* pack_t for those pixels (where the table has run_t_s2): lanes in run[r].mask from
     * src + koff[k] + 2 * (run[r].off + lane), zeros elsewhere */
    void (*pack_t_s2)(float *dst, const float *src, const int64_t *koff, int64_t kc,
                      const mi_gemm_seg *run, int nrun);
    /* run for a tile whose real columns all lie in its first 16 (a grid's last panel, a narrow
     * block): those columns' values, computed by the same FMAs in the same order, the other half
     * left alone (NULL: run) */
    void (*run16)(const mi_gemm_ukr_args *a, int mr);
} mi_gemm_ukr;

/* The ISA's own kernels (ops/x86/, ops/arm/); the portable ones (ops/conv_portable.c) for
 * MI_ISA_PORTABLE; NULL for MI_ISA_REF and for an ISA this build cannot run (NEON on x86, AVX on
 * aarch64). A CPU with none of these ISAs runs at MI_ISA_PORTABLE (ops/cpu.c). */
const mi_gemm_ukr *mi_gemm_ukr_for(mi_isa isa);
extern const mi_gemm_ukr mi_gemm_ukr_portable;
#if defined(__x86_64__)
extern const mi_gemm_ukr mi_gemm_ukr_avx2, mi_gemm_ukr_avx512;
#endif
#if defined(__aarch64__)
extern const mi_gemm_ukr mi_gemm_ukr_neon;
#endif

typedef struct {
    int64_t groups, M, K;      /* per group */
    const float *apack;        /* [groups][ceil(M/MR)][K][MR] */
    const float *src;          /* B source; group g starts at src + g*src_gstride */
    int64_t src_gstride;
    const int64_t *koff;       /* [K] */
    int64_t gd, gh, gw;        /* grid of columns (gd == od) */
    int64_t od, oh, ow;        /* real outputs; y rows are od*oh*ow long */
    float *y;                  /* [groups*M][od*oh*ow] */
    const float *res;          /* same layout as y, or NULL */
    const float *bias;         /* [groups*M] or NULL */
    int relu;
    int chan_lanes;            /* apack is for run_t: [groups][ceil(M/NR)][K][NR] */
    /* Optional: ldy, the distance of y's channels (0: od*oh*ow, a dense y); with pixels on the
     * lanes real output (t0, t1, t2) of channel c goes to y[c*ldy + (t0*oh + t1)*ow + t2] (a block
     * of rows of a larger map), with chan_lanes to y[c*ldy + ymap[0] + t0*ymap[1] + t1*ymap[2] +
     * t2*ymap[3]] (a transposed convolution's stride phase); ymap is ignored when ldy is 0. */
    int64_t ldy, ymap[4];
    /* Optional, pixels on the lanes, 2-D (od == 1), with ldy: the distance of y's rows (0: ow),
     * so that a map is written inside a padded one (chan_lanes: ymap[2] says it) */
    int64_t yw;
    /* Optional, for speed: > 0 where koff[k] == k * lds for every k (a 1x1 stride-1 layer's
     * input, Winograd's transformed tiles) */
    int64_t lds;
    /* Optional, channels on the lanes only (tables with run_t_s2): 2 where grid column q lies
     * at src + 2q (a stride-2 layer's input read in place: gw is the input's width); a panel that
     * is one run of the grid is read in place, one of several (its pixels on two output rows or
     * more) packed by pack_t_s2 (0: q at src + q) */
    int64_t pxs;
    /* Optional: the distance of group g's y (and res) from group g - 1's (0: M rows, M * ldy) */
    int64_t ygs;
    /* Optional: 1 where the caller runs the items by shares (mi_gemm_run_shares): the split makes
     * them small enough for the end of a share to move to another thread */
    int shares;
    /* Optional: 1 where src is a map written layers before, read in place with lds > 0 (a 1x1
     * layer's input): the kernels fetch its rows a few k steps ahead, as they lie too far apart
     * for the hardware to follow and in L3 or memory on the first pass */
    int src_far;
} mi_gemm;

/* panels, chunks, runs, items; pix_major: item i is run i / nmc, chunk i % nmc (else run i % nj) */
typedef struct { int64_t ngrid, npan, mpan, nmc, nj, items; int pix_major; } mi_gemm_plan;
/* The split of a GEMM into work items (depends on nthreads; the results do not), and one item
 * run by the calling thread with its own mi_gemm_ws(u, 1) bytes of scratch: for callers that
 * run the items inside a parallel region of their own. */
void   mi_gemm_split(const mi_gemm_ukr *u, const mi_gemm *g, int nthreads, mi_gemm_plan *pl);
void   mi_gemm_item(const mi_gemm_ukr *u, const mi_gemm *g, const mi_gemm_plan *pl, int64_t item,
                    void *thread_ws);
/* A team's shares of a plan's items, one per thread: thread t first takes, in order, the items of
 * its own contiguous share (the part of the map it wrote in the layer before, where the plan is
 * pixel-major), then the last items still left in the others' shares, so that a thread the
 * machine slows down leaves the end of its share to the others. Which thread computes an item
 * never changes how, so the bits do not depend on it. init before the team starts (or behind a
 * barrier); the items are done when every thread has returned from mi_gemm_run_shares. */
typedef struct { uint64_t range __attribute__((aligned(64))); } mi_gemm_share;  /* next | end << 32 */
void mi_gemm_shares_init(mi_gemm_share *sh, int64_t items, int nthreads);
int64_t mi_gemm_run_shares(const mi_gemm_ukr *u, const mi_gemm *g, const mi_gemm_plan *pl, mi_gemm_share *sh,
                           int nthreads, int tid, void *thread_ws);   /* the items this thread ran */
/* Scratch of mi_gemm_run for nthreads threads, and the run itself (threads split the output
 * tiles only, never K, so the bits do not depend on nthreads). */
size_t mi_gemm_ws(const mi_gemm_ukr *u, int nthreads);
void   mi_gemm_run(const mi_gemm_ukr *u, const mi_gemm *g, void *ws, int nthreads);
/* Packs w ([groups][M][K] row-major) into apack (the mi_gemm layout); with apack NULL only
 * returns the number of floats needed. */
size_t mi_gemm_pack_a(const mi_gemm_ukr *u, float *apack, const float *w, int64_t groups,
                      int64_t M, int64_t K);
/* The same in run_t's layout: panels of NR output channels. */
size_t mi_gemm_pack_a_t(const mi_gemm_ukr *u, float *apack, const float *w, int64_t groups,
                        int64_t M, int64_t K);

#endif
