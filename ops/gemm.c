/* ops/gemm.c - the packed-GEMM driver that direct, transposed and Winograd convolution share
 * (ops/conv.c, ops/conv_transpose.c, ops/conv_winograd.c; the contract is in ops/gemm.h), and the
 * lookup of the per-ISA micro-kernels (ops/x86/conv_avx2.c, conv_avx512.c, ops/arm/conv_neon.c;
 * ops/conv_portable.c for every other ISA). BLIS-style blocking:
 * weights packed once at load in panels of the register tile, B packed per work item and K block
 * into panels that stay in L2 while each weight micro-panel, in L1, meets all of them; kernel
 * tables with in_place read B's panels where they lie instead, where that measured faster
 * (mi_gemm_item).
 *
 * Two orientations of the same tile: pixels on the vector lanes (run: panels of NR grid columns
 * x MR output channels, garbage columns masked at the store) or output channels on the lanes
 * (run_t: MR real pixels x NR channels, transposed stores); the caller picks one per layer (the
 * measurements at the top of ops/conv.c).
 *
 * Determinism: threads split output tiles (channel chunks x pixel panels) only; every output is
 * accumulated over K in one fixed order (K blocks in order, k in order inside a block) by the same
 * micro-kernel whatever the split, so the bits are the same for any thread count.
 * Tests: tests/test_conv.c (every convolution on every ISA against torch and the reference, and
 * memcmp across 1, 2 and 4 threads). */
#include "ops/gemm.h"

#include <omp.h>

#define MI_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MI_MAX(a, b) ((a) > (b) ? (a) : (b))
#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))
#define ROUND64(n) (((n) + 63) / 64 * 64)

const mi_gemm_ukr *mi_gemm_ukr_for(mi_isa isa) {
    switch (isa) {
    case MI_ISA_PORTABLE: return &mi_gemm_ukr_portable;
#if defined(__x86_64__)
    case MI_ISA_AVX512: return &mi_gemm_ukr_avx512;
    case MI_ISA_AVX2: return &mi_gemm_ukr_avx2;
#endif
#if defined(__aarch64__)
    case MI_ISA_NEON: return &mi_gemm_ukr_neon;
#endif
    default: return NULL;
    }
}

static size_t pack_panels(int64_t MR, float *apack, const float *w, int64_t groups, int64_t M, int64_t K) {
    const int64_t mpan = CEIL_DIV(M, MR);
    if (!apack) return (size_t)(groups * mpan * K * MR);
    for (int64_t g = 0; g < groups; g++)
        for (int64_t p = 0; p < mpan; p++)
            for (int64_t k = 0; k < K; k++)
                for (int64_t i = 0; i < MR; i++) {
                    const int64_t m = p * MR + i;
                    apack[((g * mpan + p) * K + k) * MR + i] = m < M ? w[(g * M + m) * K + k] : 0.0f;
                }
    return (size_t)(groups * mpan * K * MR);
}

size_t mi_gemm_pack_a(const mi_gemm_ukr *u, float *apack, const float *w, int64_t groups,
                      int64_t M, int64_t K) {
    return pack_panels(u->mr, apack, w, groups, M, K);
}

size_t mi_gemm_pack_a_t(const mi_gemm_ukr *u, float *apack, const float *w, int64_t groups,
                        int64_t M, int64_t K) {
    return pack_panels(u->nr, apack, w, groups, M, K);
}

/* Pixel panels per work item: their packed B rows (JMAX x KC x NR floats) sit in L2 while each
 * weight micro-panel, in L1, meets all of them, so the weights stream from memory once per item. */
#define JMAX_PIX 8    /* pixels on the lanes: 8 x 32 pixels */
#define JMAX_CHAN 16  /* channels on the lanes: 16 x 14 pixels */
#define CAP_CHAN 16   /* channel panels (of NR) per item */
#define PIX_MAJOR_MAX_W (512 * 1024)   /* weights (floats) each thread may read whole */
/* Measured alone at one thread (AVX-512, Zen 5, medians in turns; the 1x1 layers, read in place
 * then only where B's rows were evenly spaced): 1x1 layers of 5 and 10
 * channel panels read in place 4-11 % faster than packed (the packing was 8-16 % of their perf
 * samples: the rows of a map in L3, copied at little memory parallelism), of 19 and 36 panels
 * (64 -> 256, 128 -> 512 with the residual) even to 3 % slower. */
#define IN_PLACE_MPAN 12
/* Items a thread, by shares (mi_gemm_run_shares): with two threads the cores of the 2-core Zen 5
 * differed by ~5 % on the same work (one or the other, by the host's state), and a static split
 * left the faster one waiting at every layer's end. ResNet-50 at 2 threads, its direct 1x1 layers
 * (rdtsc per thread, means per layer): work 618 / 650 kcycles, the faster thread waiting 31-39,
 * statically; 626 / 630-636 with waits of ~15 by shares; the forward pass 22.8-23.2 -> 22.4-22.6
 * ms in the host's busy state (5 of 6 rounds in turns, the sixth +0.8 %), ResNet-18 even, one
 * thread unchanged. Only pixel-major plans with pixels on the lanes are cut finer: cutting the
 * channels-on-lanes plans (more M chunks, each reading its panels' pixels again) made ResNet-50's
 * layer3 1x1 layers 4-9 % slower and its 512 -> 512 stride-2 layer 21 %. */
#define SHARE_ITEMS 16
#define SPREAD_MIN_W (256 * 1024)      /* weights (floats) past L2: prefetch_a == 2 fetches them, and
                                        * as many in all take run_stream */

static size_t gemm_b_floats(const mi_gemm_ukr *u) {
    return MI_MAX((size_t)MI_MAX(u->kc, u->kone_pix) * JMAX_PIX * u->nr,
                  (size_t)MI_MAX(u->kc, u->kone_chan) * JMAX_CHAN * 16);
}

static size_t gemm_acc_floats(const mi_gemm_ukr *u) {
    return (size_t)u->mr * u->nr * (size_t)MI_MAX(JMAX_PIX * (u->mc / u->mr), JMAX_CHAN * CAP_CHAN);
}

static size_t gemm_ws_per_thread(const mi_gemm_ukr *u) {
    return ROUND64(gemm_b_floats(u) * sizeof(float)) + ROUND64(gemm_acc_floats(u) * sizeof(float));
}

size_t mi_gemm_ws(const mi_gemm_ukr *u, int nthreads) {
    return gemm_ws_per_thread(u) * (size_t)nthreads;
}

/* Column runs of grid columns [q0, q0+nr) that are real outputs, as y offsets (see mi_gemm_seg). */
static int make_segs(mi_gemm_seg *seg, const mi_gemm *g, int64_t q0, int nr) {
    const int64_t yw = g->yw ? g->yw : g->ow;
    MI_ASSERT(!g->yw || g->od == 1);
    if (g->gh == g->oh && g->gw == g->ow && yw == g->ow) {  /* dense grid and y: one run */
        seg[0].off = q0;
        seg[0].mask = nr >= 32 ? 0xffffffffu : (1u << nr) - 1u;
        return 1;
    }
    int n = 0;
    int64_t qw = q0 % g->gw, r = q0 / g->gw, qh = r % g->gh, qd = r / g->gh;
    for (int c = 0; c < nr;) {
        const int run = (int)MI_MIN(g->gw - qw, (int64_t)(nr - c));
        if (qh < g->oh && qw < g->ow) {
            const int len = (int)MI_MIN((int64_t)run, g->ow - qw);
            seg[n].off = (qd * g->oh + qh) * yw + qw - c;
            seg[n].mask = (len >= 32 ? 0xffffffffu : (1u << len) - 1u) << c;
            n++;
        }
        c += run;
        qw = 0;
        if (++qh == g->gh) { qh = 0; qd++; }
    }
    return n;
}

void mi_gemm_split(const mi_gemm_ukr *u, const mi_gemm *g, int nthreads, mi_gemm_plan *pl) {
    const int MR = u->mr, NR = u->nr;
    MI_ASSERT(g->K > 0 && NR <= 32 && MR <= 16);
    /* panels: pixels x channels = NR x MR, or MR x NR with channels on the lanes */
    const int64_t pw = g->chan_lanes ? MR : NR, ph = g->chan_lanes ? NR : MR;
    pl->ngrid = g->chan_lanes ? g->od * g->oh * g->ow : g->gd * g->gh * g->gw;
    pl->npan = CEIL_DIV(pl->ngrid, pw);
    pl->mpan = CEIL_DIV(g->M, ph);
    /* Work items: group x chunk of M panels x run of pixel panels. The split only decides who
     * computes a tile, never how, so it may follow the thread count. */
    /* Pixel runs of up to JMAX panels (the weights stream once per run), M chunks as few as keep
     * the A block in L2. Small layers give fewer items than threads: then split M first (each
     * chunk repacks the run's B, so chunks keep >= 4 panels: the packing stays a few % of the
     * work), then the pixel runs (each streams the chunk's weights again), but not where the
     * chunks already divide among the threads: there a run split made each thread stream its
     * chunk's weights once per run, and ResNet-50 at 2 threads spent 0.04 ms more on each layer4
     * 2048 -> 512 layer (7x7: 2 chunks x 2 runs of 4 MB of weights, against 2 chunks), 0.01-0.03
     * on each layer3 256 -> 1024 (2-core Zen 5; forward pass 0.989-0.993 of the time without the
     * run split, paired medians of 80 passes alternating in one process, three runs; 4 chunks of one
     * run instead, 1.005-1.009 of that). And while there are few items, make their count a
     * multiple of the thread count. With channels on the lanes M
     * is split into as many chunks as threads, not twice as many: pack_t gathers each pixel row
     * from its own phase-plane row, and ResNet-50's 512 -> 512 stride-2 layer (4 pixel panels,
     * 16 channel panels) spent 15 % of its perf samples at 2 threads repacking them for 4 chunks
     * (alone, 2 threads, in turns: 2 chunks 0.946 of 4; the other channels-on-lanes layers of
     * ResNet-50 within 1 % either way). */
    const int64_t jmax = g->chan_lanes ? JMAX_CHAN : JMAX_PIX, T = nthreads, G = g->groups;
    int64_t nj = CEIL_DIV(pl->npan, jmax);
    const int64_t cap = g->chan_lanes ? CAP_CHAN : (int64_t)(u->mc / MR);
    int64_t nmc = CEIL_DIV(pl->mpan, cap);
    const int64_t want = g->chan_lanes ? T : 2 * T;
    if (T > 1 && G * nmc * nj < want)
        nmc = MI_MAX(nmc, MI_MIN(CEIL_DIV(want, G * nj), MI_MAX((int64_t)1, pl->mpan / 4)));
    if (T > 1 && G * nmc * nj < 2 * T && (G * nmc) % T) nj = MI_MIN(pl->npan, CEIL_DIV(2 * T, G * nmc));
    if (T > 1 && G * nmc * nj < 4 * T && (G * nmc * nj) % T && G * nj == 1)
        nmc = MI_MIN(pl->mpan, CEIL_DIV(nmc, T) * T);
    /* Runs and chunks are cut evenly (panels i * npan / nj ..), so that items differ by at most one
     * panel, and there are as many runs as make the item count a multiple of the thread count: the
     * threads take equal shares (a layer's last round is not one thread's alone while the other
     * waits at the barrier; layer1's 1x1 layers were 25 runs of 8 panels, 13 for one thread and
     * 12 for the other). */
    while (T > 1 && (G * nmc * nj) % T && nj < pl->npan) nj++;
    /* Where the weights are small and the pixel panels many, each thread takes every channel of
     * its own part of the map instead: consecutive items (a static schedule's share) are one
     * pixel run's chunks, so a thread reads the part of the map it wrote in the layer before
     * (Winograd blocks and the 1x1 layers split the same way), rather than lines another core
     * holds. Not where, with channels on the lanes, the weights are over 4 times the input the
     * layer reads (M > 4 x pixels, twice that for a stride-2 layer read in place): there a thread
     * reads the small input whole and half the weights. On the 2-core Xeon (AVX-512, 2 threads)
     * ResNet-50's layer3 256 -> 1024 layers (14x14, + residual) took 0.92-0.95 of the time, the
     * forward pass 0.993 (paired medians of 30 passes alternating in one process); splitting
     * channels wherever M > K made its 512 -> 1024 stride-2 layer 6 % slower, and wherever
     * channels are on the lanes its 1024 -> 256 layers 1-3 %. */
    pl->pix_major = T > 1 && G == 1 && g->M * g->K <= PIX_MAJOR_MAX_W && pl->npan >= 4 * T &&
                    !(g->chan_lanes && g->M > 4 * pl->ngrid * (g->pxs == 2 ? 2 : 1));
    if (pl->pix_major) {
        nmc = CEIL_DIV(pl->mpan, cap);
        nj = CEIL_DIV(CEIL_DIV(pl->npan, jmax), T) * T;
    }
    /* By shares: pixel-major runs cut to about SHARE_ITEMS a thread */
    if (T > 1 && g->shares && pl->pix_major && !g->chan_lanes)
        nj = MI_MIN(pl->npan, MI_MAX(nj, CEIL_DIV(SHARE_ITEMS * T, G * nmc)));
    pl->nmc = nmc;
    pl->nj = nj;
    pl->items = g->groups * nmc * nj;
}

/* One work item: pixel panels [j0, j1) x channel panels [mp0, mp1) of group gi. For each K block
 * the item packs all its pixel panels, then runs every channel panel (weights in L1) against
 * each of them. Pixels on the lanes: panels of NR grid columns (garbage columns masked at the
 * store), channels of MR. Channels on the lanes: panels of MR real pixels, channels of NR. */
void mi_gemm_item(const mi_gemm_ukr *u, const mi_gemm *g, const mi_gemm_plan *pl, int64_t it,
                  void *thread_ws) {
    const int T = g->chan_lanes, MR = u->mr, NR = u->nr;
    const int64_t M = g->M, K = g->K, ldy = g->ldy ? g->ldy : g->od * g->oh * g->ow;
    const int64_t pw = T ? MR : NR, ph = T ? NR : MR, bw = T ? 16 : NR;   /* panel sizes, B row */
    float *bpan = thread_ws;
    float *acc = (float *)((unsigned char *)thread_ws + ROUND64(gemm_b_floats(u) * sizeof(float)));
    const int64_t gi = it / (pl->nmc * pl->nj), in = it % (pl->nmc * pl->nj);
    const int64_t mci = pl->pix_major ? in % pl->nmc : in / pl->nj, ji = pl->pix_major ? in / pl->nmc : in % pl->nj;
    const int64_t mp0 = mci * pl->mpan / pl->nmc, mp1 = (mci + 1) * pl->mpan / pl->nmc;
    const int64_t j0 = ji * pl->npan / pl->nj, j1 = (ji + 1) * pl->npan / pl->nj, nj = j1 - j0;
    const float *src = g->src + gi * g->src_gstride;
    const float *ag = g->apack + gi * pl->mpan * K * ph;
    MI_ASSERT(nj <= (T ? JMAX_CHAN : JMAX_PIX) && mp1 - mp0 <= (T ? CAP_CHAN : u->mc / MR));
    mi_gemm_seg seg[JMAX_CHAN > JMAX_PIX ? JMAX_CHAN : JMAX_PIX][32];
    int64_t pix[JMAX_CHAN][16];
    int nseg[JMAX_CHAN > JMAX_PIX ? JMAX_CHAN : JMAX_PIX], npx[JMAX_CHAN > JMAX_PIX ? JMAX_CHAN : JMAX_PIX];
    uint32_t cols[JMAX_PIX];   /* pixels on the lanes: the panel's real columns */
    for (int64_t j = j0; j < j1; j++) {
        const int64_t jj = j - j0;
        npx[jj] = (int)MI_MIN(pw, pl->ngrid - j * pw);
        if (!T) {
            nseg[jj] = make_segs(seg[jj], g, j * NR, npx[jj]);
            cols[jj] = 0;
            for (int s = 0; s < nseg[jj]; s++) cols[jj] |= seg[jj][s].mask;
            continue;
        }
        int n = 0;   /* output pixel p -> grid column q; runs of consecutive q for pack_t */
        for (int i = 0; i < npx[jj]; i++) {
            const int64_t p = j * MR + i, r = p / g->ow;
            const int64_t q = (r / g->oh * g->gh + r % g->oh) * g->gw + p % g->ow;
            pix[jj][i] = g->ldy ? g->ymap[0] + r / g->oh * g->ymap[1] + r % g->oh * g->ymap[2] +
                                  p % g->ow * g->ymap[3] : p;
            if (i && q == seg[jj][n - 1].off + i) seg[jj][n - 1].mask |= 1u << i;
            else seg[jj][n++] = (mi_gemm_seg){ .off = q - i, .mask = 1u << i };
        }
        nseg[jj] = n;
    }
    /* Panels the kernel reads in place, row k at src + koff[k] + the panel's offset, rather than
     * packed: with channels on the lanes each whose pixels are one run of the grid (the kernel
     * reads its npx real pixels only); with pixels on the lanes each whole one (a partial one
     * would read past the end of x), where the item has at most IN_PLACE_MPAN channel panels:
     * each channel panel reads the scattered rows again, while a packing is paid once per item. */
    const int in_place = u->in_place && (T || mp1 - mp0 <= IN_PLACE_MPAN);
#define IN_PLACE(jj) (in_place && (T ? nseg[jj] == 1 && seg[jj][0].mask == (1u << npx[jj]) - 1u : npx[jj] == NR))
    const int spread = u->prefetch_a == 2 && M * K >= SPREAD_MIN_W;
    void (*run)(const mi_gemm_ukr_args *, int) =
        u->run_stream && g->groups * M * K >= SPREAD_MIN_W ? u->run_stream : u->run;
    const int64_t KB = K <= (T ? u->kone_chan : u->kone_pix) && g->pxs != 2 ? K : u->kc;   /* see kone_* */
    for (int64_t k0 = 0; k0 < K; k0 += KB) {
        const int64_t kc = MI_MIN(KB, K - k0);
        for (int64_t jj = 0; jj < nj; jj++) {
            if (!nseg[jj] || IN_PLACE(jj)) continue;   /* garbage columns only, or read in place */
            float *bp = bpan + jj * kc * bw;
            if (T) (g->pxs == 2 ? u->pack_t_s2 : u->pack_t)(bp, src, g->koff + k0, kc, seg[jj], nseg[jj]);
            else u->pack(bp, src + (j0 + jj) * NR, g->koff + k0, kc, npx[jj]);
        }
        for (int64_t mp = mp0; mp < mp1; mp++) {
            /* The weights the next tiles need (the next channel panel's, or the next K block's
             * first), fetched into L2 in nj slices while this panel's, in L1, meet the item's
             * pixel panels. Each weight is read once per forward pass, mostly from memory: left
             * to the kernels' own prefetch (a few KB ahead) the first tile of every panel waited
             * on it (AVX2). AVX-512's kernels take their slice as an argument and spread it over
             * their k loop, and only where a group's weights pass L2 (spread): there a burst
             * stalled the core on fill buffers (the table's prefetch_a). */
            const int64_t kn = mp + 1 < mp1 ? k0 : k0 + kc;
            const float *wn = ag + ((mp + 1 < mp1 ? mp + 1 : mp0) * K + kn) * ph;
            const int64_t lines = (u->prefetch_a == 1 || spread) && kn < K ? CEIL_DIV(MI_MIN(KB, K - kn) * ph, 16) : 0;
            const int64_t per = CEIL_DIV(lines, nj);
            /* the fields every tile of this channel panel shares, set once: the kernels only read
             * their arguments, so each tile below stores just what differs */
            const int64_t row = gi * M + mp * ph, yoff = gi * (g->ygs ? g->ygs : M * ldy) + mp * ph * ldy;
            const float *w = ag + (mp * K + k0) * ph;
            const int rows = (int)MI_MIN(ph, M - mp * ph);
            mi_gemm_ukr_args a = {
                .kc = kc, .a = w, .b = w, .first = k0 == 0, .last = k0 + kc == K, .relu = g->relu,
                .y = g->y + yoff, .res = g->res ? g->res + yoff : NULL, .ldy = ldy,
                .bias = g->bias ? g->bias + row : NULL, .nch = rows, .lds = g->lds,
                .src_far = g->src_far,   /* used by the kernels only where they read in place with lds */
            };
            for (int64_t jj = 0; jj < nj; jj++) {
                const int64_t l0 = MI_MIN(lines, jj * per), l1 = MI_MIN(lines, (jj + 1) * per);
                if (u->prefetch_a == 1)
                    for (int64_t l = l0; l < l1; l++) __builtin_prefetch(wn + 16 * l, 0, 2);
                if (!nseg[jj]) continue;
                const float *b = !IN_PLACE(jj) ? bpan + jj * kc * bw
                                 : T ? src + (g->pxs == 2 ? 2 : 1) * seg[jj][0].off : src + (j0 + jj) * NR;
                a.koff = IN_PLACE(jj) ? g->koff + k0 : NULL;
                a.acc = acc + ((mp - mp0) * nj + jj) * MR * NR;
                a.pf = wn + 16 * l0;
                a.pf_n = spread ? l1 - l0 : 0;
                if (T) {
                    a.a = b;
                    a.pix = pix[jj];
                    (g->pxs == 2 && IN_PLACE(jj) ? u->run_t_s2 : u->run_t)(&a, npx[jj]);
                } else {
                    a.b = b;
                    a.nseg = nseg[jj];
                    a.seg = seg[jj];
                    (cols[jj] >> 16 || !u->run16 ? run : u->run16)(&a, rows);
                }
            }
        }
    }
#undef IN_PLACE
}

void mi_gemm_shares_init(mi_gemm_share *sh, int64_t items, int nthreads) {
    MI_ASSERT(items < ((int64_t)1 << 32));
    for (int t = 0; t < nthreads; t++) {
        const uint64_t lo = (uint64_t)(t * items / nthreads), hi = (uint64_t)((t + 1) * items / nthreads);
        __atomic_store_n(&sh[t].range, lo | hi << 32, __ATOMIC_RELAXED);
    }
}

/* the next item of a share from its front (its owner) or its back (another thread); -1: none left.
 * Relaxed: the claim only has to be unique; the items' outputs are published by the team's
 * barrier. */
static int64_t take(mi_gemm_share *sh, int back) {
    uint64_t v = __atomic_load_n(&sh->range, __ATOMIC_RELAXED);
    for (;;) {
        const uint64_t lo = v & 0xffffffffu, hi = v >> 32;
        if (lo >= hi) return -1;
        const uint64_t nv = back ? lo | (hi - 1) << 32 : v + 1;
        if (__atomic_compare_exchange_n(&sh->range, &v, nv, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            return (int64_t)(back ? hi - 1 : lo);
    }
}

int64_t mi_gemm_run_shares(const mi_gemm_ukr *u, const mi_gemm *g, const mi_gemm_plan *pl, mi_gemm_share *sh,
                           int nthreads, int tid, void *thread_ws) {
    int64_t ran = 0;
    for (int64_t i; (i = take(&sh[tid], 0)) >= 0; ran++) mi_gemm_item(u, g, pl, i, thread_ws);
    for (int d = 1; d < nthreads; d++)
        for (int64_t i; (i = take(&sh[(tid + d) % nthreads], 1)) >= 0; ran++) mi_gemm_item(u, g, pl, i, thread_ws);
    return ran;
}

void mi_gemm_run(const mi_gemm_ukr *u, const mi_gemm *g, void *ws, int nthreads) {
    mi_gemm_plan pl;
    mi_gemm_split(u, g, nthreads, &pl);
    const size_t per_thread = gemm_ws_per_thread(u);
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t it = 0; it < pl.items; it++)
        mi_gemm_item(u, g, &pl, it, (unsigned char *)ws + per_thread * (size_t)omp_get_thread_num());
}
