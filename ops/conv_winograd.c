/* ops/conv_winograd.c - 3x3, stride-1, dilation-1 2-D convolutions by Winograd's minimal filtering
 * F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
 *
 * Each 2x2 output tile is computed from the 4x4 input tile d around it:
 *     Y = A^T [ sum over input channels of U ⊙ V ] A,   U = G g G^T (4x4),   V = B^T d B (4x4)
 *     B^T = | 1  0 -1  0 |    G = | 1    0    0  |    A^T = | 1  1  1  0 |
 *           | 0  1  1  0 |        | 1/2  1/2  1/2|          | 0  1 -1 -1 |
 *           | 0 -1  1  0 |        | 1/2 -1/2  1/2|
 *           | 0  1  0 -1 |        | 0    0    1  |
 * 16 multiplications per channel pair and tile instead of 36. The sum over input channels, for
 * each of the 16 points of the 4x4 tile, is a GEMM U[pt] (cout x cin) x V[pt] (cin x tiles): the
 * packed GEMM of ops/conv.c runs all 16 as groups, so the micro-kernels, the threading and the
 * determinism argument are those of the direct path. U is computed once at init in float64 and
 * rounded once; B^T and A^T only add and subtract, so the transforms add a few roundings per
 * output and the result stays within ~1e-6 of the direct sum (tests/test_conv.c checks every fast
 * case against torch in float64 and the reference, with the algorithm forced both ways).
 *
 * Per image: (1) input transform x -> V[group][pt][cin][tile], (2) the 16 GEMMs V -> Mb[group][pt]
 * [cout][tile], (3) output transform Mb -> y with bias, residual and activation. The transforms
 * split channels x tile rows between threads and the GEMM splits output tiles only, so every
 * value is computed the same way whatever the thread count.
 * Chosen by ops/conv.c (mi_conv_desc.algo, or a cost estimate when the input size is known). */
#include "conv.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define MI_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))
#define ROUND64(n) (((n) + 63) / 64 * 64)
#define NPT 16   /* points of the 4x4 transformed tile */

int mi_conv_wino_ok(const mi_conv_desc *d) {
    return d->sp == 2 && d->k[1] == 3 && d->k[2] == 3 && d->stride[1] == 1 && d->stride[2] == 1 &&
           d->dil[1] == 1 && d->dil[2] == 1;
}

size_t mi_conv_wino_pack(const mi_conv_ukr *u, float *apack, const float *w, const mi_conv_desc *d,
                         int chan_lanes) {
    const int64_t G = d->groups, cig = d->cin / G, cog = d->cout / G;
    size_t (*pack)(const mi_conv_ukr *, float *, const float *, int64_t, int64_t, int64_t) =
        chan_lanes ? mi_conv_pack_a_t : mi_conv_pack_a;
    if (!apack) return pack(u, NULL, NULL, G * NPT, cog, cig);
    /* U[g][pt][co][ci] = (G w G^T)[pt], the A matrices of the 16 GEMMs of each group */
    float *U = malloc((size_t)(G * NPT * cog * cig) * sizeof(float));
    if (!U) return 0;
    static const double Gm[4][3] = { { 1, 0, 0 }, { .5, .5, .5 }, { .5, -.5, .5 }, { 0, 0, 1 } };
    for (int64_t g = 0; g < G; g++)
        for (int64_t co = 0; co < cog; co++)
            for (int64_t ci = 0; ci < cig; ci++) {
                const float *k = w + ((g * cog + co) * cig + ci) * 9;
                double t[4][3];   /* G g */
                for (int i = 0; i < 4; i++)
                    for (int b = 0; b < 3; b++)
                        t[i][b] = Gm[i][0] * k[b] + Gm[i][1] * k[3 + b] + Gm[i][2] * k[6 + b];
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++)
                        U[((g * NPT + i * 4 + j) * cog + co) * cig + ci] =
                            (float)(t[i][0] * Gm[j][0] + t[i][1] * Gm[j][1] + t[i][2] * Gm[j][2]);
            }
    size_t n = pack(u, apack, U, G * NPT, cog, cig);
    free(U);
    return n;
}

typedef struct {
    int64_t H, W, OH, OW, TH, TW, T;   /* input, output, tiles (2x2 outputs each) */
    int64_t ph, pw, rowlen;            /* padding; floats of one padded input row of tiles */
} wino_geom;

static void geom(wino_geom *g, const mi_conv_desc *d, int64_t H, int64_t W) {
    g->H = H;
    g->W = W;
    g->ph = d->pad[1];
    g->pw = d->pad[2];
    g->OH = H + 2 * g->ph - 2;
    g->OW = W + 2 * g->pw - 2;
    g->TH = CEIL_DIV(g->OH, 2);
    g->TW = CEIL_DIV(g->OW, 2);
    g->T = g->TH * g->TW;
    g->rowlen = MI_WINO_ROWLEN(g->TW);
}

/* the workspace: koff [cig], V [G][16][cig][T], Mb [G][16][cog][T], GEMM scratch, then per
 * thread 4 zero-padded input rows */
static size_t ws_parts(const mi_conv_ukr *u, const mi_conv_desc *d, const wino_geom *g, int nt,
                       size_t part[4]) {
    part[0] = ROUND64((size_t)(d->cin / d->groups) * sizeof(int64_t));
    part[1] = ROUND64((size_t)(NPT * d->cin * g->T) * sizeof(float));
    part[2] = ROUND64((size_t)(NPT * d->cout * g->T) * sizeof(float));
    part[3] = mi_conv_gemm_ws(u, nt);
    return part[0] + part[1] + part[2] + part[3] + (size_t)nt * 4 * (size_t)g->rowlen * sizeof(float);
}

size_t mi_conv_wino_ws(const mi_conv_ukr *u, const mi_conv_desc *d, int64_t H, int64_t W, int nt) {
    wino_geom g;
    size_t part[4];
    geom(&g, d, H, W);
    return ws_parts(u, d, &g, nt, part);
}

void mi_conv_wino_in_ref(float *v, int64_t vs, const float *rows, int64_t rowlen, int64_t tw) {
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

void mi_conv_wino_out_ref(float *y, const float *res, const float *m, int64_t ms, int64_t tw,
                          int64_t ow, int nrows, float bias, int relu) {
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
                const int64_t i = a * ow + 2 * q + b;
                float v = o[b] + bias;
                if (res) v += res[i];
                if (relu) v = v > 0.0f ? v : 0.0f;   /* as the SIMD max(v, 0) */
                y[i] = v;
            }
        }
    }
}

/* V of channel c, tile row r: rows 2r-ph .. 2r-ph+3 of x, zero-padded into buf, transformed. */
static void input_row(const mi_conv_ukr *u, float *V, const float *xc, const wino_geom *g, int64_t r,
                      int64_t vstride, float *buf) {
    memset(buf, 0, (size_t)(4 * g->rowlen) * sizeof(float));
    for (int i = 0; i < 4; i++) {
        const int64_t ih = 2 * r - g->ph + i, n = 2 * g->TW + 2;
        if (ih < 0 || ih >= g->H) continue;
        const int64_t lo = MI_MIN(n, g->pw), hi = MI_MIN(n, g->pw + g->W);   /* b[u] = x[ih][u - pw] */
        if (hi > lo) memcpy(buf + i * g->rowlen + lo, xc + ih * g->W, (size_t)(hi - lo) * sizeof(float));
    }
    (u->wino_in ? u->wino_in : mi_conv_wino_in_ref)(V + r * g->TW, vstride, buf, g->rowlen, g->TW);
}

void mi_conv_wino_forward(const mi_conv *c, const mi_conv_ukr *u, mi_tensor *y, const mi_tensor *x,
                          const mi_tensor *res, mi_act act, void *workspace) {
    const mi_conv_desc *d = &c->d;
    const int64_t G = d->groups, cig = d->cin / G, cog = d->cout / G;
    wino_geom g;
    geom(&g, d, x->shape[2], x->shape[3]);
    MI_ASSERT(g.OH == y->shape[2] && g.OW == y->shape[3] && workspace != NULL);
    const int nt = mi_threads();
    size_t part[4];
    ws_parts(u, d, &g, nt, part);
    unsigned char *ws = workspace;
    int64_t *koff = (int64_t *)ws;
    float *V = (float *)(ws + part[0]), *Mb = (float *)(ws + part[0] + part[1]);
    unsigned char *gws = ws + part[0] + part[1] + part[2];
    float *rows = (float *)(gws + part[3]);
    for (int64_t k = 0; k < cig; k++) koff[k] = k * g.T;
    const size_t per_thread = mi_conv_gemm_ws(u, 1);
    #pragma omp parallel num_threads(nt)
    {
        const int tid = omp_get_thread_num();
        float *buf = rows + (size_t)tid * 4 * (size_t)g.rowlen;
        for (int64_t n = 0; n < x->shape[0]; n++) {
            const float *xn = x->data + n * d->cin * g.H * g.W;
            float *yn = y->data + n * d->cout * g.OH * g.OW;
            const float *rn = res ? res->data + n * d->cout * g.OH * g.OW : NULL;
            #pragma omp for schedule(static)
            for (int64_t it = 0; it < d->cin * g.TH; it++) {
                const int64_t ch = it / g.TH, gi = ch / cig, ci = ch % cig;
                input_row(u, V + (gi * NPT * cig + ci) * g.T, xn + ch * g.H * g.W, &g, it % g.TH,
                          cig * g.T, buf);
            }
            mi_conv_gemm gm = {
                .groups = G * NPT, .M = cog, .K = cig, .apack = c->packed, .src = V,
                .src_gstride = cig * g.T, .koff = koff, .gd = 1, .gh = 1, .gw = g.T, .od = 1, .oh = 1,
                .ow = g.T, .y = Mb, .chan_lanes = c->chan_lanes,
            };
            mi_conv_plan pl;
            mi_conv_gemm_plan(u, &gm, nt, &pl);
            #pragma omp for schedule(dynamic, 1)
            for (int64_t it = 0; it < pl.items; it++)
                mi_conv_gemm_item(u, &gm, &pl, it, gws + per_thread * (size_t)tid);
            #pragma omp for schedule(static)
            for (int64_t it = 0; it < d->cout * g.TH; it++) {
                const int64_t co = it / g.TH, gi = co / cog, m = co % cog;
                const int64_t r = it % g.TH, o = co * g.OH * g.OW + 2 * r * g.OW;
                (u->wino_out ? u->wino_out : mi_conv_wino_out_ref)(
                    yn + o, rn ? rn + o : NULL, Mb + (gi * NPT * cog + m) * g.T + r * g.TW, cog * g.T,
                    g.TW, g.OW, (int)MI_MIN(2, g.OH - 2 * r), c->bias[co], act == MI_ACT_RELU);
            }
        }
    }
}
