/* ops/conv_winograd.c - 3x3, stride-1, dilation-1 2-D convolutions by Winograd's minimal filtering
 * (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), in two sizes:
 *   F(2x2, 3x3): each 2x2 output tile from a 4x4 input tile, 16 multiplications per channel pair
 *                and tile instead of 36 (2.25x fewer);
 *   F(4x4, 3x3): each 4x4 output tile from a 6x6 input tile, 36 instead of 144 (4x fewer).
 *     Y = A^T [ sum over input channels of U ⊙ V ] A,   U = G g G^T,   V = B^T d B
 *   F(2x2, 3x3):  B^T = | 1  0 -1  0 |   G = | 1    0    0  |   A^T = | 1  1  1  0 |
 *                       | 0  1  1  0 |       | 1/2  1/2  1/2|         | 0  1 -1 -1 |
 *                       | 0 -1  1  0 |       | 1/2 -1/2  1/2|
 *                       | 0  1  0 -1 |       | 0    0    1  |
 *   F(4x4, 3x3):  B^T = | 4  0 -5  0  1  0 |   G = | 1/4    0     0   |   A^T = | 1  1  1  1  1  0 |
 *                       | 0 -4 -4  1  1  0 |       | -1/6 -1/6  -1/6  |         | 0  1 -1  2 -2  0 |
 *                       | 0  4 -4 -1  1  0 |       | -1/6  1/6  -1/6  |         | 0  1  1  4  4  0 |
 *                       | 0 -2 -1  2  1  0 |       | 1/24  1/12  1/6  |         | 0  1 -1  8 -8  1 |
 *                       | 0  2 -1 -2  1  0 |       | 1/24 -1/12  1/6  |
 *                       | 0  4  0 -5  0  1 |       | 0     0     1    |
 * The sum over input channels, for each point of the transformed tile, is a GEMM U[pt] (cout x
 * cin) x V[pt] (cin x tiles): the packed GEMM of ops/conv.c runs them all as groups, so the
 * micro-kernels, the threading and the determinism argument are those of the direct path. U is
 * computed once at init in float64 and rounded once; B^T and A^T are small integers, so the
 * transforms add a few roundings per output (F(4x4)'s larger constants amplify them). Measured
 * against torch in float64 (tests/test_conv.c, every 3x3 stride-1 case with the algorithm forced
 * each way; the MAXREL lines): max error 7.3e-7 of max|y| direct, 4.6e-7 F(2x2), 5.8e-6 F(4x4),
 * under the test's 2e-5; ResNet-50's logits stay within 1.1e-6 of torchvision's (bar: 1e-4).
 *
 * Per block of tiles of one image (geom() below says which), by one thread: (1) input
 * transform x -> V[group][pt][cin][tile], (2) the GEMMs V -> Mb[group][pt][cout][tile], (3) output
 * transform Mb -> y with bias, residual and activation. Threads take whole blocks and the GEMM's
 * accumulation order does not depend on how its columns are grouped, so every value is computed
 * the same way whatever the thread count. The transforms of a row of tiles (or of its part in a
 * block) are the ukr's wino2_* / wino4_* (SIMD) or the scalar *_ref below, which give the same
 * bits.
 * Chosen by ops/conv.c (mi_conv_desc.algo, or by size once the input size is known). */
#include "ops/conv_internal.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define MI_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MI_MAX(a, b) ((a) > (b) ? (a) : (b))
#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))
#define ROUND64(n) (((n) + 63) / 64 * 64)

int mi_conv_wino_ok(const mi_conv_desc *d) {
    return d->sp == 2 && d->k[1] == 3 && d->k[2] == 3 && d->stride[1] == 1 && d->stride[2] == 1 &&
           d->dil[1] == 1 && d->dil[2] == 1;
}

size_t mi_conv_wino_pack(const mi_gemm_ukr *u, float *apack, const float *w, const mi_conv_desc *d,
                         int m, int chan_lanes) {
    const int64_t G = d->groups, cig = d->cin / G, cog = d->cout / G, al = m + 2, npt = al * al;
    size_t (*pack)(const mi_gemm_ukr *, float *, const float *, int64_t, int64_t, int64_t) =
        chan_lanes ? mi_gemm_pack_a_t : mi_gemm_pack_a;
    if (!apack) return pack(u, NULL, NULL, G * npt, cog, cig);
    static const double G2[4][3] = { { 1, 0, 0 }, { .5, .5, .5 }, { .5, -.5, .5 }, { 0, 0, 1 } };
    static const double G4[6][3] = { { 1. / 4, 0, 0 }, { -1. / 6, -1. / 6, -1. / 6 },
                                     { -1. / 6, 1. / 6, -1. / 6 }, { 1. / 24, 1. / 12, 1. / 6 },
                                     { 1. / 24, -1. / 12, 1. / 6 }, { 0, 0, 1 } };
    const double (*Gm)[3] = m == 4 ? G4 : G2;
    /* U[g][pt][co][ci] = (G w G^T)[pt], the A matrices of the GEMMs of each group */
    float *U = malloc((size_t)(G * npt * cog * cig) * sizeof(float));
    if (!U) return 0;
    for (int64_t g = 0; g < G; g++)
        for (int64_t co = 0; co < cog; co++)
            for (int64_t ci = 0; ci < cig; ci++) {
                const float *k = w + ((g * cog + co) * cig + ci) * 9;
                double t[6][3];   /* G g */
                for (int i = 0; i < al; i++)
                    for (int b = 0; b < 3; b++)
                        t[i][b] = Gm[i][0] * k[b] + Gm[i][1] * k[3 + b] + Gm[i][2] * k[6 + b];
                for (int i = 0; i < al; i++)
                    for (int j = 0; j < al; j++)
                        U[((g * npt + i * al + j) * cog + co) * cig + ci] =
                            (float)(t[i][0] * Gm[j][0] + t[i][1] * Gm[j][1] + t[i][2] * Gm[j][2]);
            }
    size_t n = pack(u, apack, U, G * npt, cog, cig);
    free(U);
    return n;
}

typedef struct {
    int m, al, npt;                    /* output tile m x m, input tile al x al = npt points */
    int64_t H, W, OH, OW, TH, TW, T;   /* input, output, tiles */
    int64_t ph, pw, rowlen;            /* padding; floats of one padded input row of tiles */
    int64_t rb, nb, tb;                /* tile rows per block (0: T / nb tiles), blocks per image,
                                        * most tiles in a block */
    int64_t cut;                       /* -1, or the block of rb rows that is cut into two of rb / 2
                                        * (blocks cut and cut + 1; those after it move up by one) */
} wino_geom;

/* Work is split into blocks of rb tile rows of one image, each taken through all three stages by
 * one thread: its transformed input and products (npt x (cin + cout) floats per tile) stay in the
 * thread's cache, and no thread waits for another between the stages (on a loaded machine a
 * barrier costs a scheduler time slice: the per-image stages of the first version paid ~1000
 * barriers per depthnet forward at 2 threads). A block has >= 16 tiles where the map has them
 * (the GEMM's panels are 16 wide), else as many tile rows as keep its buffers within ~256 KB, and
 * an image gives >= 4 blocks where that leaves >= 16 tiles each.
 * Every block streams all of the layer's transformed weights U. Where the blocks of a batch are
 * few and do not divide among the threads, their count may move to the nearest multiple of the
 * thread count that keeps >= 16 tiles a block (the larger first; the smaller only down to half),
 * each block then being tiles [b*T/nb, (b+1)*T/nb) in row-major order, which may start and end
 * inside a tile row. It moves only where that shortens the busiest thread's GEMM, counted in
 * panels of 16 tiles (a block's GEMM costs whole panels: 25 tiles cost what 28 do): at batch 1 on
 * 2 threads ResNet-50's 28 x 28 and 14 x 14 maps go from 3 blocks to 2 (measured alone, 2
 * threads: 0.56 -> 0.53 ms, 0.56 -> 0.47), while its 56 x 56 maps keep their 7 blocks of two tile
 * rows, 4 for one thread and 3 for the other: 8 blocks of 24-25 tiles cost each thread 4 blocks'
 * GEMM all the same, and more transform passes for the rows they cut (0.59-0.63 ms against
 * 0.44-0.45, alone, 3 rounds in turns); where the kernels have a half-width tile their middle
 * block is cut in two instead (geom()'s last step). Only where no such count exists (a 7 x 7 map's 16 tiles are one block) do all
 * threads share a block, with barriers between the stages (block_all_threads): such a block
 * crosses cores twice and took longer on 2 threads than one thread alone took for a block.
 * The split depends on the shapes and the thread count only; each output is computed the same
 * way whatever block or thread it falls in. */
#define WINO_BLOCK_FLOATS (64 * 1024)
#define WINO_BLOCK_MIN_TILES 16
/* Transformed weights past this many bytes (the last-level cache of the 2-core AMD EPYC that
 * measured it) come from memory once per block: such a layer takes fewer, larger blocks, of up
 * to WINO_STREAM_TILES tiles (the GEMM's widest work item, 8 panels of 32), as many as a multiple
 * of the thread count, where that leaves >= 16 tiles a block. The ResNet-50 detector's RPN head
 * (1024 -> 1024 at 30 x 40, F(2x2): 67 MB) had 15 blocks of one tile row, 1 GB from memory a
 * forward; in 2 blocks, medians of 4 rounds in turns, 84 -> 74 ms at one thread and 41-43 -> 31-36
 * at two. ResNet's own layers (at most 512 x 512: 16.8 MB) keep the blocks above. */
#define WINO_U_STREAM_BYTES (32.0 * 1024 * 1024)
#define WINO_STREAM_TILES 256

/* GEMM panels of 16 tiles on the thread with most blocks, for nb blocks an image */
static int64_t busiest(int64_t T, int64_t N, int64_t nb, int nt) {
    return CEIL_DIV(N * nb, nt) * CEIL_DIV(CEIL_DIV(T, nb), WINO_BLOCK_MIN_TILES);
}

/* narrow: the most tiles a GEMM panel may have to run the half-width tile (0: no such tile) */
static void geom(wino_geom *g, const mi_conv_desc *d, int m, int64_t N, int64_t H, int64_t W, int nt,
                 bool stream, int64_t narrow) {
    g->m = m;
    g->cut = -1;
    g->al = m + 2;
    g->npt = g->al * g->al;
    g->H = H;
    g->W = W;
    g->ph = d->pad[1];
    g->pw = d->pad[2];
    g->OH = H + 2 * g->ph - 2;
    g->OW = W + 2 * g->pw - 2;
    g->TH = CEIL_DIV(g->OH, m);
    g->TW = CEIL_DIV(g->OW, m);
    g->T = g->TH * g->TW;
    g->rowlen = MI_WINO_ROWLEN(g->TW);
    const int64_t per_row = g->TW * g->npt * (d->cin + d->cout);
    const int64_t rb_cache = WINO_BLOCK_FLOATS / per_row, rb_par = CEIL_DIV(g->TH, 4);
    const int64_t rb_min = CEIL_DIV(WINO_BLOCK_MIN_TILES, g->TW);
    int64_t rb = rb_cache < rb_par ? rb_cache : rb_par;
    if (rb < rb_min) rb = rb_min;
    rb = rb < 1 ? 1 : rb > g->TH ? g->TH : rb;
    g->rb = rb;
    g->nb = CEIL_DIV(g->TH, rb);
    g->tb = rb * g->TW;
    /* At one thread, a map whose transformed weights U outweigh twice its whole transformed input
     * and products (V, Mb) is one block: U then streams once rather than once per block, and what
     * of V and Mb L2 cannot hold comes back from L3. ResNet-50's layer3 3x3 layers (F(2x2),
     * 256 x 256 channels on 14 x 14: U 4.2 MB, 49 tiles, three blocks before) took 0.93-0.99 of
     * the time, the forward pass 0.989-0.996 (2-core Zen 5, paired in one process, four runs); its
     * layer2 ones (F(4x4), 128 x 128 on 28 x 28), which this leaves in blocks, were even to 3 %
     * slower as one block. */
    if (nt == 1 && g->T <= WINO_STREAM_TILES &&
        (double)d->cin * (double)(d->cout / d->groups) >= 2.0 * (double)(d->cin + d->cout) * (double)g->T) {
        g->rb = g->TH;
        g->nb = 1;
        g->tb = g->T;
        return;
    }
    if (stream && (double)g->npt * (double)d->cin * (double)(d->cout / d->groups) * sizeof(float) > WINO_U_STREAM_BYTES) {
        int64_t nb = CEIL_DIV(g->T, WINO_STREAM_TILES);
        while ((N * nb) % nt) nb++;
        if (nb < g->nb && g->T / nb >= WINO_BLOCK_MIN_TILES) {
            g->rb = 0;
            g->nb = nb;
            g->tb = CEIL_DIV(g->T, nb);
            g->rowlen += 4 * g->TW;   /* a block may start inside a row: the transform reads from column m*q */
            return;
        }
    }
    if (nt > 1 && N * g->nb < 4 * nt && (N * g->nb) % nt) {
        int64_t up = g->nb + 1, down = g->nb - 1;
        while ((N * up) % nt) up++;
        while (2 * down >= g->nb && (N * down) % nt) down--;
        if (2 * down < g->nb) down = 0;   /* at most twice the tiles a block (the workspace's size) */
        const int64_t nb = g->T / up >= WINO_BLOCK_MIN_TILES ? up : down;
        if (nb > 0 && busiest(g->T, N, nb, nt) < busiest(g->T, N, g->nb, nt)) {
            g->rb = 0;
            g->nb = nb;
            g->tb = CEIL_DIV(g->T, g->nb);
            g->rowlen += 4 * g->TW;   /* a block may start inside a row: the transform reads from column m*q */
        }
    }
    /* An odd number of row blocks at 2 threads: the middle one is cut in two, a half for each
     * thread, where a half is narrow (at most narrow tiles: its GEMM runs a half-width tile,
     * mi_gemm_ukr.run16, for half the FMAs of a whole one). ResNet-50's 56 x 56 maps (7 blocks of
     * 28 tiles, 4 for one thread and 3 for the other) become 3 and a half each: their 3x3 layers
     * 0.042-0.046 ms less each, the forward pass 0.990-0.994 of the time (2-core Zen 5, paired
     * medians of 60-100 passes alternating in one process; in the machine's slow state 0.003-0.022
     * less each). */
    if (narrow && N == 1 && nt == 2 && g->rb >= 2 && g->rb % 2 == 0 && g->nb % 2 && g->rb / 2 * g->TW <= narrow) {
        g->cut = g->nb / 2;
        g->nb++;
    }
}

/* Floats from one point of V or Mb to the next: a point's n floats rounded up to an odd number of
 * cache lines, so that the points fall in different sets of the L1. Each transform call touches
 * the same lines of all 16 or 36 points; a whole number of pages apart they share one set (12
 * ways), as in ResNet-50's layer4 3x3 layers (16 tiles x 512 channels: 32 KB a point), whose input
 * and output stages then missed L1 on every point. Padded, in the network (minimum of 6 rounds in
 * turns, ms): layer4.1 / 4.2 conv2 1.084 / 1.078 -> 1.008 / 0.979 at one thread, 0.647 / 0.623 ->
 * 0.625 / 0.611 at two; the other Winograd layers, whose points already spread over 4-8 sets,
 * within 3 % either way. Values and order of operations are unchanged. */
static int64_t point_stride(int64_t n) { return (CEIL_DIV(n, 16) | 1) * 16; }

/* the workspace: koff [cig] (shared), then per thread: V [G][npt] points of [cig][tb] (point_stride
 * apart), Mb [G][npt] points of [cog][tb], GEMM scratch, al zero-padded input rows */
static size_t per_thread_parts(const mi_gemm_ukr *u, const mi_conv_desc *d, const wino_geom *g,
                               size_t part[4]) {
    const int64_t G = d->groups;
    part[0] = ROUND64((size_t)(G * g->npt * point_stride(d->cin / G * g->tb)) * sizeof(float));
    part[1] = ROUND64((size_t)(G * g->npt * point_stride(d->cout / G * g->tb)) * sizeof(float));
    part[2] = ROUND64(mi_gemm_ws(u, 1));
    part[3] = ROUND64((size_t)(g->al * g->rowlen) * sizeof(float));
    return part[0] + part[1] + part[2] + part[3];
}

static size_t koff_bytes(const mi_conv_desc *d) { return ROUND64((size_t)(d->cin / d->groups) * sizeof(int64_t)); }

/* geom()'s narrow for a packed layer: the tiles a half-width GEMM tile takes (run16, pixels on the lanes) */
static int64_t half_tile(const mi_conv *c, const mi_gemm_ukr *u) { return u->run16 && !c->chan_lanes ? 16 : 0; }

int64_t mi_conv_wino_blocks(const mi_conv *c, int64_t N, int64_t H, int64_t W, int nt) {
    wino_geom g;
    geom(&g, &c->d, c->wino, N, H, W, nt, true, half_tile(c, mi_gemm_ukr_for((mi_isa)c->path)));
    return g.nb;
}

int64_t mi_conv_wino_block_tiles(const mi_conv_desc *d, int m, int64_t H, int64_t W) {
    wino_geom g;
    geom(&g, d, m, 1, H, W, 1, true, 0);
    return g.tb;
}

/* For the largest blocks geom() gives for any batch and thread count: rb rows, or about T / nb
 * tiles with nb at least half the blocks of one thread's split; or, for weights that stream, the
 * blocks of one image at one thread (more images or threads only make them more). */
size_t mi_conv_wino_ws(const mi_gemm_ukr *u, const mi_conv_desc *d, int m, int64_t H, int64_t W,
                       int nt) {
    wino_geom g, s;
    size_t part[4];
    geom(&g, d, m, 1, H, W, 1, false, 0);
    geom(&s, d, m, 1, H, W, 1, true, 0);
    if (nt > 1) {
        g.tb = MI_MAX(g.tb, CEIL_DIV(g.T, CEIL_DIV(g.nb, 2)));
        g.rowlen += 4 * g.TW;
    }
    g.tb = MI_MAX(g.tb, s.tb);
    g.rowlen = MI_MAX(g.rowlen, s.rowlen);
    return koff_bytes(d) + (size_t)nt * per_thread_parts(u, d, &g, part);
}

void mi_conv_wino2_in_ref(float *v, int64_t vs, const float *rows, int64_t rowlen, int64_t tw) {
    const float *b0 = rows, *b1 = rows + rowlen, *b2 = rows + 2 * rowlen, *b3 = rows + 3 * rowlen;
    for (int64_t q = 0; q < tw; q++) {
        const int64_t u = 2 * q;
        float t[4][4];   /* B^T d */
        for (int j = 0; j < 4; j++) {
            t[0][j] = b0[u + j] - b2[u + j];
            t[1][j] = b1[u + j] + b2[u + j];
            t[2][j] = b2[u + j] - b1[u + j];
            t[3][j] = b1[u + j] - b3[u + j];
        }
        for (int i = 0; i < 4; i++) {   /* (B^T d) B */
            v[(i * 4 + 0) * vs + q] = t[i][0] - t[i][2];
            v[(i * 4 + 1) * vs + q] = t[i][1] + t[i][2];
            v[(i * 4 + 2) * vs + q] = t[i][2] - t[i][1];
            v[(i * 4 + 3) * vs + q] = t[i][1] - t[i][3];
        }
    }
}

void mi_conv_wino2_out_ref(float *y, const float *res, const float *m, int64_t ms, int64_t tw,
                          int64_t ow, int64_t ldy, int nrows, float bias, int relu) {
    for (int64_t q = 0; q < tw; q++) {
        float s[2][4];   /* A^T m */
        for (int j = 0; j < 4; j++) {
            const float m0 = m[j * ms + q], m1 = m[(4 + j) * ms + q];
            const float m2 = m[(8 + j) * ms + q], m3 = m[(12 + j) * ms + q];
            s[0][j] = m0 + m1 + m2;
            s[1][j] = m1 - m2 - m3;
        }
        for (int a = 0; a < nrows; a++) {   /* (A^T m) A */
            const float o[2] = { s[a][0] + s[a][1] + s[a][2], s[a][1] - s[a][2] - s[a][3] };
            for (int b = 0; b < 2 && 2 * q + b < ow; b++) {
                const int64_t i = a * ldy + 2 * q + b;
                float v = o[b] + bias;
                if (res) v += res[i];
                if (relu) v = v > 0.0f ? v : 0.0f;   /* as the SIMD max(v, 0) */
                y[i] = v;
            }
        }
    }
}

/* F(4x4, 3x3)'s 1-D transforms: t = B^T d (6 -> 6) and s = A^T m (6 -> 4); the SIMD versions
 * (bt6, at6 in ops/x86/) do the same operations in the same order. */
static void bt6(float t[6], const float d[6]) {
    t[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
    t[1] = (d[3] + d[4]) - 4.0f * (d[1] + d[2]);
    t[2] = (d[4] - d[3]) + 4.0f * (d[1] - d[2]);
    t[3] = (d[4] - d[2]) + 2.0f * (d[3] - d[1]);
    t[4] = (d[4] - d[2]) - 2.0f * (d[3] - d[1]);
    t[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
}

static void at6(float s[4], const float m[6]) {
    const float a = m[1] + m[2], b = m[1] - m[2], p = m[3] + m[4], n = m[3] - m[4];
    s[0] = m[0] + a + p;
    s[1] = b + 2.0f * n;
    s[2] = a + 4.0f * p;
    s[3] = b + 8.0f * n + m[5];
}

void mi_conv_wino4_in_ref(float *v, int64_t vs, const float *rows, int64_t rowlen, int64_t tw) {
    for (int64_t q = 0; q < tw; q++) {
        float t[6][6];   /* t[j] = B^T d of column j: (B^T d)^T */
        for (int j = 0; j < 6; j++) {
            float d[6];
            for (int i = 0; i < 6; i++) d[i] = rows[i * rowlen + 4 * q + j];
            bt6(t[j], d);
        }
        for (int i = 0; i < 6; i++) {   /* row i of (B^T d) B */
            float e[6], o[6];
            for (int j = 0; j < 6; j++) e[j] = t[j][i];
            bt6(o, e);
            for (int j = 0; j < 6; j++) v[(i * 6 + j) * vs + q] = o[j];
        }
    }
}

void mi_conv_wino4_out_ref(float *y, const float *res, const float *m, int64_t ms, int64_t tw,
                           int64_t ow, int64_t ldy, int nrows, float bias, int relu) {
    for (int64_t q = 0; q < tw; q++) {
        float s[6][4];   /* s[j] = A^T m of column j */
        for (int j = 0; j < 6; j++) {
            float c[6];
            for (int i = 0; i < 6; i++) c[i] = m[(i * 6 + j) * ms + q];
            at6(s[j], c);
        }
        for (int r = 0; r < nrows; r++) {   /* row r of (A^T m) A */
            float e[6], o[4];
            for (int j = 0; j < 6; j++) e[j] = s[j][r];
            at6(o, e);
            for (int k = 0; k < 4 && 4 * q + k < ow; k++) {
                const int64_t i = r * ldy + 4 * q + k;
                float v = o[k] + bias;
                if (res) v += res[i];
                if (relu) v = v > 0.0f ? v : 0.0f;   /* as the SIMD max(v, 0) */
                y[i] = v;
            }
        }
    }
}

/* V of channel c, tile row r: rows m*r-ph .. m*r-ph+al-1 of x, zero-padded into buf, transformed.
 * Only the columns that hold x are copied: the padding columns are the same for every row and
 * channel, so buf is zeroed once per block (zero_rows) and they stay zero; a row above or below
 * the map is zeroed where it falls. (Zeroing the whole buffer per call was a fifth of the
 * input stage's time in a ResNet-50 profile: rowlen is rounded up to 64 floats and more, twice
 * the copied width on a 56 x 56 map.) */
static void zero_rows(float *buf, const wino_geom *g) {
    memset(buf, 0, (size_t)(g->al * g->rowlen) * sizeof(float));
}

/* V of channel c for tiles [qa, qb) of tile row r (a block may hold part of a row), v[pt*vstride
 * + q - qa]: input columns m*qa .. m*qb+1 of rows m*r-ph .. m*r-ph+al-1, zero-padded in buf. */
static void input_row(const mi_gemm_ukr *u, float *V, const float *xc, const wino_geom *g, int64_t r,
                      int64_t qa, int64_t qb, int64_t vstride, float *buf) {
    const int64_t lo = MI_MAX(g->m * qa, g->pw), hi = MI_MIN(g->m * qb + 2, g->pw + g->W);
    for (int i = 0; hi > lo && i < g->al; i++) {
        const int64_t ih = g->m * r - g->ph + i;
        float *b = buf + i * g->rowlen;
        if (ih < 0 || ih >= g->H) memset(b + lo, 0, (size_t)(hi - lo) * sizeof(float));
        else memcpy(b + lo, xc + ih * g->W + lo - g->pw, (size_t)(hi - lo) * sizeof(float));   /* b[c] = x[ih][c - pw] */
    }
    void (*in)(float *, int64_t, const float *, int64_t, int64_t) =
        g->m == 4 ? (u->wino4_in ? u->wino4_in : mi_conv_wino4_in_ref)
                  : (u->wino2_in ? u->wino2_in : mi_conv_wino2_in_ref);
    in(V, vstride, buf + g->m * qa, g->rowlen, qb - qa);
}

/* What every block of one forward shares. */
typedef struct {
    const mi_conv *c;
    const mi_gemm_ukr *u;
    const wino_geom *g;
    const mi_tensor *x, *res;
    mi_tensor *y;
    int relu;
    const int64_t *koff;
} wino_run;

/* Tiles [t0, t1) of image n of block it. */
static void block_tiles(const wino_geom *g, int64_t it, int64_t *n, int64_t *t0, int64_t *t1) {
    const int64_t b = it % g->nb;
    *n = it / g->nb;
    if (g->cut >= 0 && b >= g->cut) {   /* the halves of the cut block, then the later blocks */
        const int64_t c0 = g->cut * g->tb, h = g->rb / 2 * g->TW;
        *t0 = b == g->cut ? c0 : b == g->cut + 1 ? c0 + h : (b - 1) * g->tb;
        *t1 = b == g->cut ? c0 + h : b == g->cut + 1 ? c0 + g->tb : MI_MIN(g->T, b * g->tb);
        return;
    }
    *t0 = g->rb ? b * g->tb : b * g->T / g->nb;
    *t1 = g->rb ? MI_MIN(g->T, *t0 + g->tb) : (b + 1) * g->T / g->nb;
}

/* (1) V[gi][pt][ci][tile - t0] of input channels [c0, c1) for the block's tiles; V rows are
 * g->tb apart, its points point_stride(cig * g->tb). */
static void stage_in(const wino_run *w, float *V, float *buf, int64_t it, int64_t c0, int64_t c1) {
    const mi_conv_desc *d = &w->c->d;
    const wino_geom *g = w->g;
    const int64_t cig = d->cin / d->groups, vs = point_stride(cig * g->tb);
    int64_t n, t0, t1;
    block_tiles(g, it, &n, &t0, &t1);
    const float *xn = w->x->data + n * d->cin * g->H * g->W;
    for (int64_t ch = c0; ch < c1; ch++)
        for (int64_t r = t0 / g->TW; r * g->TW < t1; r++) {
            const int64_t qa = MI_MAX(t0 - r * g->TW, 0), qb = MI_MIN(t1 - r * g->TW, g->TW);
            input_row(w->u, V + ch / cig * g->npt * vs + ch % cig * g->tb + r * g->TW + qa - t0,
                      xn + ch * g->H * g->W, g, r, qa, qb, vs, buf);
        }
}

/* (2) Mb[gi][pt][co][tile - t0] = U[gi][pt] V[gi][pt]: the block's GEMM (Mb's rows t1 - t0
 * apart, its points point_stride(cog * (t1 - t0))) */
static mi_gemm block_gemm(const wino_run *w, float *V, float *Mb, int64_t it) {
    const mi_conv_desc *d = &w->c->d;
    const wino_geom *g = w->g;
    int64_t n, t0, t1;
    block_tiles(g, it, &n, &t0, &t1);
    return (mi_gemm){
        .groups = d->groups * g->npt, .M = d->cout / d->groups, .K = d->cin / d->groups,
        .apack = w->c->packed, .src = V, .src_gstride = point_stride(d->cin / d->groups * g->tb),
        .koff = w->koff, .gd = 1, .gh = 1, .gw = t1 - t0, .od = 1, .oh = 1, .ow = t1 - t0, .y = Mb,
        .ygs = point_stride(d->cout / d->groups * (t1 - t0)), .chan_lanes = w->c->chan_lanes, .lds = g->tb,
    };
}

/* (3) y = A^T Mb A + bias (+ residual, relu) for output channels [c0, c1) of the block's tiles,
 * tile row by tile row (a part of a row: its output columns from m*qa) */
static void stage_out(const wino_run *w, const float *Mb, int64_t it, int64_t c0, int64_t c1) {
    const mi_conv *c = w->c;
    const mi_gemm_ukr *u = w->u;
    const mi_conv_desc *d = &c->d;
    const wino_geom *g = w->g;
    const int64_t cog = d->cout / d->groups;
    int64_t n, t0, t1;
    block_tiles(g, it, &n, &t0, &t1);
    const int64_t tb = t1 - t0, ms = point_stride(cog * tb);
    float *yn = w->y->data + n * d->cout * g->OH * g->OW;
    const float *rn = w->res ? w->res->data + n * d->cout * g->OH * g->OW : NULL;
    void (*out)(float *, const float *, const float *, int64_t, int64_t, int64_t, int64_t, int, float, int) =
        g->m == 4 ? (u->wino4_out ? u->wino4_out : mi_conv_wino4_out_ref)
                  : (u->wino2_out ? u->wino2_out : mi_conv_wino2_out_ref);
    for (int64_t co = c0; co < c1; co++)
        for (int64_t r = t0 / g->TW; r * g->TW < t1; r++) {
            const int64_t qa = MI_MAX(t0 - r * g->TW, 0), qb = MI_MIN(t1 - r * g->TW, g->TW);
            const int64_t gi = co / cog, mm = co % cog, o = co * g->OH * g->OW + g->m * (r * g->OW + qa);
            out(yn + o, rn ? rn + o : NULL, Mb + gi * g->npt * ms + mm * tb + r * g->TW + qa - t0, ms,
                qb - qa, MI_MIN(g->OW - g->m * qa, g->m * (qb - qa)), g->OW, (int)MI_MIN(g->m, g->OH - g->m * r),
                c->bias[co], w->relu);
        }
}

/* One block through the three stages by the calling thread alone, in its part of the workspace. */
static void block_alone(const wino_run *w, unsigned char *ws, const size_t part[4], int64_t it) {
    const mi_conv_desc *d = &w->c->d;
    const size_t per_thread = part[0] + part[1] + part[2] + part[3];
    unsigned char *mine = ws + per_thread * (size_t)omp_get_thread_num();
    float *V = (float *)mine, *Mb = (float *)(mine + part[0]), *buf = (float *)(mine + part[0] + part[1] + part[2]);
    zero_rows(buf, w->g);
    stage_in(w, V, buf, it, 0, d->cin);
    mi_gemm gm = block_gemm(w, V, Mb, it);
    mi_gemm_plan pl;
    mi_gemm_split(w->u, &gm, 1, &pl);
    for (int64_t i = 0; i < pl.items; i++) mi_gemm_item(w->u, &gm, &pl, i, mine + part[0] + part[1]);
    stage_out(w, Mb, it, 0, d->cout);
}

/* One block taken through the three stages by all nt threads, with two barriers: the input
 * transform split over channels, the GEMM over its items (which split the output tiles, never K),
 * the output transform over output channels. V and Mb are shared (the first thread's parts of the
 * workspace), the GEMM scratch and row buffer are each thread's own. Every value is computed by
 * the same operations as when one thread takes the whole block, so the bits do not change. */
static void block_all_threads(const wino_run *w, unsigned char *ws, const size_t part[4], int64_t it, int nt) {
    const mi_conv_desc *d = &w->c->d;
    const size_t per_thread = part[0] + part[1] + part[2] + part[3];
    float *V = (float *)ws, *Mb = (float *)(ws + part[0]);
    mi_gemm gm = block_gemm(w, V, Mb, it);
    mi_gemm_plan pl;
    mi_gemm_split(w->u, &gm, nt, &pl);
    #pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num();
        unsigned char *mine = ws + per_thread * (size_t)t;
        float *buf = (float *)(mine + part[0] + part[1] + part[2]);
        zero_rows(buf, w->g);
        stage_in(w, V, buf, it, t * d->cin / nt, (t + 1) * d->cin / nt);
        #pragma omp barrier
        #pragma omp for schedule(static)
        for (int64_t i = 0; i < pl.items; i++) mi_gemm_item(w->u, &gm, &pl, i, mine + part[0] + part[1]);
        stage_out(w, Mb, it, t * d->cout / nt, (t + 1) * d->cout / nt);
    }
}

void mi_conv_wino_forward(const mi_conv *c, const mi_gemm_ukr *u, mi_tensor *y, const mi_tensor *x,
                          const mi_tensor *res, mi_act act, void *workspace) {
    const mi_conv_desc *d = &c->d;
    const int64_t cig = d->cin / d->groups, N = x->shape[0];
    const int nt = mi_threads();
    wino_geom g;
    geom(&g, d, c->wino, N, x->shape[2], x->shape[3], nt, true, half_tile(c, u));
    MI_ASSERT(g.OH == y->shape[2] && g.OW == y->shape[3] && workspace != NULL);
    size_t part[4];
    per_thread_parts(u, d, &g, part);
    int64_t *koff = (int64_t *)workspace;
    for (int64_t k = 0; k < cig; k++) koff[k] = k * g.tb;   /* V rows of a block, tb apart */
    unsigned char *ws = (unsigned char *)workspace + koff_bytes(d);
    const wino_run w = { .c = c, .u = u, .g = &g, .x = x, .res = res, .y = y, .relu = act == MI_ACT_RELU,
                         .koff = koff };
    /* Fewer blocks than threads (a 7 x 7 map's one block): all threads share each. Otherwise each
     * block stays with one thread, also where they do not divide among the threads: a shared block
     * crosses cores twice, and on the 2-core Zen 5 the seventh block of a 56 x 56 map, shared, took
     * as long as three alone (64 -> 64 channels at 2 threads: 0.48-0.49 ms with it shared, 0.36-0.37
     * with the seven split 4 / 3, medians of 500 runs). */
    const int64_t nblk = N * g.nb, tail = nt > 1 && nblk < nt ? nblk : 0;
    for (int64_t it = nblk - tail; it < nblk; it++) block_all_threads(&w, ws, part, it, nt);
    /* Few blocks, balanced for the threads by geom(): each thread the same ones on every run, so a
     * map's rows stay with the core that wrote them (and a cut block's halves with a thread each).
     * Many: dynamic, so that a thread the machine's other work holds back leaves its blocks to the
     * others. */
    if (nblk - tail < 4 * nt || g.cut >= 0) {
        #pragma omp parallel for schedule(static) num_threads(nt) if (nblk > tail)
        for (int64_t it = 0; it < nblk - tail; it++) block_alone(&w, ws, part, it);
    } else {
        #pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
        for (int64_t it = 0; it < nblk - tail; it++) block_alone(&w, ws, part, it);
    }
}
