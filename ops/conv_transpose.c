/* ops/conv_transpose.c - transposed convolution 2-D / 3-D (torch.nn.ConvTranspose2d/3d: stride,
 * padding, output_padding, dilation, groups, bias) with the fused epilogue act(. + bias + residual).
 * V-Net's up-convolutions (k = 2, stride 2) are the main user.
 *
 * torch's definition, a scatter: input i, tap k add x[i]*w[k] to output o = i*s - p + k*dil.
 * The reference gathers instead (for each o, every (i, k) with i*s = o + p - k*dil), which is the
 * same sum per output and needs no atomics.
 * The fast path splits the output by stride phase r = o mod s (per dimension). In phase r only the
 * taps with (r + p - k*dil) divisible by s contribute, each reading input t + (r + p - k*dil)/s for
 * output o = r + s*t: a stride-1 correlation over a zero-padded copy of the input with a per-tap
 * offset. That is exactly the GEMM of ops/conv.c (contiguous B rows, weights packed per phase at
 * init) with channels on the vector lanes, whose tiles store each pixel of the phase straight to
 * its strided place in y with bias, residual and activation (mi_gemm.ymap); an ISA without
 * such tiles writes a phase buffer that is then scattered to y.
 * For k = s (V-Net) every phase has one tap per dimension and the GEMM is a plain 1x1 convolution.
 * Tests: tests/test_conv.c against tests/ref_conv.py (torch conv_transpose2d/3d). */
#include "ops/conv_internal.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

#define MI_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MI_MAX(a, b) ((a) > (b) ? (a) : (b))
#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))
#define ROUND64(n) (((n) + 63) / 64 * 64)
#define MAXK 64   /* taps per dimension on the fast path (larger kernels use the reference) */

mi_deconv_desc mi_deconv2d_desc(int64_t cin, int64_t cout, int64_t k, int64_t s, int64_t p,
                                int64_t op, int64_t groups) {
    return (mi_deconv_desc){ .d = mi_conv2d_desc(cin, cout, k, s, p, groups), .out_pad = { 0, op, op } };
}

mi_deconv_desc mi_deconv3d_desc(int64_t cin, int64_t cout, int64_t k, int64_t s, int64_t p,
                                int64_t op, int64_t groups) {
    return (mi_deconv_desc){ .d = mi_conv3d_desc(cin, cout, k, s, p, groups), .out_pad = { op, op, op } };
}

static int64_t kvol(const mi_conv_desc *d) { return d->k[0] * d->k[1] * d->k[2]; }

static int64_t deconv_out_len(const mi_deconv_desc *dd, int i, int64_t in) {
    const mi_conv_desc *d = &dd->d;
    return (in - 1) * d->stride[i] - 2 * d->pad[i] + d->dil[i] * (d->k[i] - 1) + dd->out_pad[i] + 1;
}

/* Taps of dimension i that reach output phase r, and the input offset of each. */
static int phase_taps(const mi_conv_desc *d, int i, int64_t r, int64_t *tap, int64_t *off) {
    int n = 0;
    for (int64_t k = 0; k < d->k[i]; k++) {
        const int64_t q = r + d->pad[i] - k * d->dil[i];
        if (q % d->stride[i] == 0) { tap[n] = k; off[n] = q / d->stride[i]; n++; }
    }
    return n;
}

static int64_t nphases(const mi_conv_desc *d) { return d->stride[0] * d->stride[1] * d->stride[2]; }

/* Floats of packed weights of phase ph (all groups), for the ukr u. */
/* Channels on the lanes where the ISA has them (each phase's tiles then store straight into y),
 * except for a kernel equal to the stride without padding: there every phase is a whole 1x1
 * product whose tiles, with pixels on the lanes, store dense vectors into a buffer that one pass
 * scatters (deconv_direct()); with channels on the lanes each of them went to y value by value
 * through the stride (the segnet's 32 -> 16 up-convolution at 96x96: 2.4 ms). */
static int use_chan_lanes(const mi_gemm_ukr *u, const mi_conv_desc *d) {
    int kernel_is_stride = 1;
    for (int i = 0; i < 3; i++) kernel_is_stride &= d->k[i] == d->stride[i] && d->pad[i] == 0 && d->dil[i] == 1;
    return u->run_t != NULL && !kernel_is_stride;
}

static size_t phase_pack_size(const mi_gemm_ukr *u, const mi_conv_desc *d, int64_t ph) {
    const int64_t r[3] = { ph / (d->stride[1] * d->stride[2]), ph / d->stride[2] % d->stride[1], ph % d->stride[2] };
    int64_t tap[MAXK], off[MAXK], K = d->cin / d->groups;
    for (int i = 0; i < 3; i++) K *= phase_taps(d, i, r[i], tap, off);
    return K ? (use_chan_lanes(u, d) ? mi_gemm_pack_a_t : mi_gemm_pack_a)(u, NULL, NULL, d->groups, d->cout / d->groups, K) : 0;
}

mi_status mi_deconv_init(mi_deconv *c, const mi_deconv_desc *d, const float *weight,
                         const float *bias, const char *name) {
    return mi_deconv_init_isa(c, d, weight, bias, name, mi_cpu_isa());
}

mi_status mi_deconv_init_isa(mi_deconv *c, const mi_deconv_desc *dd, const float *weight,
                             const float *bias, const char *name, mi_isa isa) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name ? name : "deconv");
    const mi_conv_desc *d = &dd->d;
    mi_status st = mi_conv_check_desc(d, c->name);
    if (st != MI_OK) return st;
    for (int i = 0; i < 3; i++)
        if (dd->out_pad[i] < 0 || (dd->out_pad[i] >= d->stride[i] && dd->out_pad[i] >= d->dil[i]))
            return MI_FAIL(MI_ERR_ARG, "%s: output padding %lld in dimension %d, expected >= 0 and "
                           "smaller than stride %lld or dilation %lld", c->name, (long long)dd->out_pad[i],
                           i, (long long)d->stride[i], (long long)d->dil[i]);
    c->d = *dd;
    const int64_t cig = d->cin / d->groups, cog = d->cout / d->groups, kv = kvol(d);
    const size_t nw = (size_t)(d->cin * cog * kv);
    c->weight = mi_alloc_aligned(nw * sizeof(float));
    c->bias = mi_alloc_aligned((size_t)d->cout * sizeof(float));
    if (!c->weight || !c->bias) goto nomem;
    memcpy(c->weight, weight, nw * sizeof(float));
    if (bias) memcpy(c->bias, bias, (size_t)d->cout * sizeof(float));
    else memset(c->bias, 0, (size_t)d->cout * sizeof(float));

    if (isa > mi_cpu_isa()) isa = mi_cpu_isa();
    const mi_gemm_ukr *u = mi_gemm_ukr_for(isa);
    c->path = MI_ISA_REF;
    int fits = nphases(d) <= 4096;
    for (int i = 0; i < 3; i++) fits &= d->k[i] <= MAXK;
    if (!u || !fits || (cig == 1 && cog == 1)) return MI_OK;

    size_t total = 0, most = 0;   /* packed floats of all phases; the largest unpacked A */
    for (int64_t ph = 0; ph < nphases(d); ph++) {
        total += phase_pack_size(u, d, ph);
        const int64_t r[3] = { ph / (d->stride[1] * d->stride[2]), ph / d->stride[2] % d->stride[1], ph % d->stride[2] };
        int64_t tap[MAXK], off[MAXK], K = cig;
        for (int i = 0; i < 3; i++) K *= phase_taps(d, i, r[i], tap, off);
        most = MI_MAX(most, (size_t)(d->cout * K));
    }
    float *a = mi_alloc_aligned(MI_MAX(most, (size_t)1) * sizeof(float));   /* [groups][cog][K] */
    if (!(c->packed = mi_alloc_aligned(MI_MAX(total, (size_t)1) * sizeof(float))) || !a) {
        mi_free_aligned(a);
        goto nomem;
    }
    float *dst = c->packed;
    for (int64_t ph = 0; ph < nphases(d); ph++) {
        const int64_t r[3] = { ph / (d->stride[1] * d->stride[2]), ph / d->stride[2] % d->stride[1], ph % d->stride[2] };
        int64_t tap[3][MAXK], off[3][MAXK], nt[3];
        for (int i = 0; i < 3; i++) nt[i] = phase_taps(d, i, r[i], tap[i], off[i]);
        const int64_t K = cig * nt[0] * nt[1] * nt[2];
        if (!K) continue;
        /* A[g][m][(ci, j0, j1, j2)] = W[g*cig + ci][m][tap0[j0]][tap1[j1]][tap2[j2]] */
        for (int64_t g = 0; g < d->groups; g++)
            for (int64_t m = 0; m < cog; m++)
                for (int64_t ci = 0, k = 0; ci < cig; ci++)
                    for (int64_t j0 = 0; j0 < nt[0]; j0++)
                        for (int64_t j1 = 0; j1 < nt[1]; j1++)
                            for (int64_t j2 = 0; j2 < nt[2]; j2++, k++)
                                a[(g * cog + m) * K + k] =
                                    c->weight[((g * cig + ci) * cog + m) * kv +
                                              (tap[0][j0] * d->k[1] + tap[1][j1]) * d->k[2] + tap[2][j2]];
        dst += (use_chan_lanes(u, d) ? mi_gemm_pack_a_t : mi_gemm_pack_a)(u, dst, a, d->groups, cog, K);
    }
    mi_free_aligned(a);
    c->path = isa;
    c->chan_lanes = use_chan_lanes(u, d);
    return MI_OK;
nomem:
    mi_deconv_free(c);
    return MI_FAIL(MI_ERR_NOMEM, "%s: cannot allocate %lld weights", c->name, (long long)nw);
}

void mi_deconv_free(mi_deconv *c) {
    mi_free_aligned(c->weight);
    mi_free_aligned(c->bias);
    mi_free_aligned(c->packed);
    c->weight = c->bias = NULL;
    c->packed = NULL;
}

mi_status mi_deconv_out_shape(const mi_deconv *c, const mi_tensor *x, int64_t out[MI_MAX_DIMS]) {
    const mi_conv_desc *d = &c->d.d;
    char buf[96];
    int64_t in[3];
    mi_status st = mi_conv_check_input(d, c->name, x, in);
    if (st != MI_OK) return st;
    out[0] = x->shape[0];
    out[1] = d->cout;
    for (int i = 3 - d->sp; i < 3; i++) {
        const int64_t o = deconv_out_len(&c->d, i, in[i]);
        if (in[i] < 1 || o < 1)
            return MI_FAIL(MI_ERR_SHAPE, "%s: input '%s' has shape %s, which gives an output of %lld in "
                           "dimension %d (padding %lld), expected at least 1", c->name, x->name,
                           mi_shape_str(buf, sizeof buf, x->ndim, x->shape), (long long)o, i,
                           (long long)d->pad[i]);
        out[2 + i - (3 - d->sp)] = o;
    }
    return MI_OK;
}

static void check_io(const mi_deconv *c, const mi_tensor *y, const mi_tensor *x, const mi_tensor *res) {
    int64_t os[MI_MAX_DIMS];
    mi_conv_check_io(mi_deconv_out_shape(c, x, os), os, y, x, res, false);
}

/* The reference: for every output o, the sum over (ci, kd, kh, kw) in that order of x[i]*w[k]
 * for the i with i*s = o + p - k*dil (multiply, then add), then + bias, + residual, activation. */
void mi_deconv_forward_ref(const mi_deconv *c, mi_tensor *y, const mi_tensor *x,
                           const mi_tensor *residual, mi_act act) {
    check_io(c, y, x, residual);
    const mi_conv_desc *d = &c->d.d;
    int64_t in[3], out[3];
    mi_conv_spatial_in(d, x, in);
    for (int i = 0; i < 3; i++) out[i] = d->sp == 2 && i == 0 ? 1 : deconv_out_len(&c->d, i, in[i]);
    const int64_t N = x->shape[0], cig = d->cin / d->groups, cog = d->cout / d->groups, kv = kvol(d);
    const int64_t IP = in[0] * in[1] * in[2], OP = out[0] * out[1] * out[2];
    const float *xd = x->data, *rd = residual ? residual->data : NULL;
    float *yd = y->data;
    #pragma omp parallel for collapse(2) schedule(static) num_threads(mi_threads())
    for (int64_t n = 0; n < N; n++)
        for (int64_t co = 0; co < d->cout; co++) {
            const int64_t g = co / cog, m = co % cog;
            for (int64_t o = 0; o < OP; o++) {
                const int64_t od = o / (out[1] * out[2]), oh = o / out[2] % out[1], ow = o % out[2];
                float s = 0.0f;
                for (int64_t ci = 0; ci < cig; ci++) {
                    const float *xc = xd + (n * d->cin + g * cig + ci) * IP;       /* [D][H][W] */
                    const float *w = c->weight + ((g * cig + ci) * cog + m) * kv;  /* [kd][kh][kw] */
                    for (int64_t kd = 0; kd < d->k[0]; kd++) {
                        const int64_t qd = od + d->pad[0] - kd * d->dil[0];
                        if (qd % d->stride[0] || qd < 0 || qd / d->stride[0] >= in[0]) continue;
                        for (int64_t kh = 0; kh < d->k[1]; kh++) {
                            const int64_t qh = oh + d->pad[1] - kh * d->dil[1];
                            if (qh % d->stride[1] || qh < 0 || qh / d->stride[1] >= in[1]) continue;
                            for (int64_t kw = 0; kw < d->k[2]; kw++) {
                                const int64_t qw = ow + d->pad[2] - kw * d->dil[2];
                                if (qw % d->stride[2] || qw < 0 || qw / d->stride[2] >= in[2]) continue;
                                s += xc[(qd / d->stride[0] * in[1] + qh / d->stride[1]) * in[2] + qw / d->stride[2]] *
                                     w[(kd * d->k[1] + kh) * d->k[2] + kw];
                            }
                        }
                    }
                }
                const int64_t yi = (n * d->cout + co) * OP + o;
                float v = s + c->bias[co];
                if (rd) v += rd[yi];
                if (act == MI_ACT_RELU) v = v < 0.0f ? 0.0f : v;
                yd[yi] = v;
            }
        }
}

/* ---- the fast path: one stride-1 correlation per output phase ---- */

typedef struct {
    int64_t r[3], T[3];                /* phase; outputs of the phase per dimension */
    int64_t nt[3], tap[3][MAXK], off[3][MAXK];
    int64_t PL[3], PW[3];              /* left zero padding and padded extent of the input copy */
    int64_t K, plane, src_floats;      /* GEMM depth; floats per padded channel; buffer floats */
} phase_geom;

static void phase_init(phase_geom *P, const mi_deconv *c, int64_t ph, const int64_t out[3]) {
    const mi_conv_desc *d = &c->d.d;
    P->r[0] = ph / (d->stride[1] * d->stride[2]);
    P->r[1] = ph / d->stride[2] % d->stride[1];
    P->r[2] = ph % d->stride[2];
    P->K = d->cin / d->groups;
    P->plane = 1;
    for (int i = 0; i < 3; i++) {
        P->T[i] = P->r[i] < out[i] ? CEIL_DIV(out[i] - P->r[i], d->stride[i]) : 0;
        P->nt[i] = phase_taps(d, i, P->r[i], P->tap[i], P->off[i]);
        P->K *= P->nt[i];
        int64_t lo = 0, hi = 0;
        for (int j = 0; j < P->nt[i]; j++) {
            lo = j ? MI_MIN(lo, P->off[i][j]) : P->off[i][j];
            hi = j ? MI_MAX(hi, P->off[i][j]) : P->off[i][j];
        }
        P->PL[i] = MI_MAX((int64_t)0, -lo);
        P->PW[i] = MI_MAX((int64_t)1, P->T[i] + hi + P->PL[i]);   /* t + off + PL < PW for t < T */
        P->plane *= P->PW[i];
    }
    /* slack: the garbage columns of the grid's last rows read past the last plane */
    P->src_floats = d->cin * P->plane + (P->PW[1] + 1) * P->PW[2] + 64;
}

static void out_dims(const mi_deconv *c, const mi_tensor *x, int64_t in[3], int64_t out[3]) {
    mi_conv_spatial_in(&c->d.d, x, in);
    for (int i = 0; i < 3; i++) out[i] = c->d.d.sp == 2 && i == 0 ? 1 : deconv_out_len(&c->d, i, in[i]);
}

/* Kernel = stride and no padding (the up-convolutions of U-Net and V-Net): every phase is a 1x1
 * convolution of x itself, and all of them together are one loop of GEMM items (then one loop
 * of scatters when the tiles do not store into y themselves), instead of a parallel region per
 * phase: on a machine shared with other work each barrier can cost a scheduler time slice (the
 * segnet's four up-convolutions took 62 ms at 2 threads that way, 6 at 1). */
#define MAX_DIRECT_PHASES 8

static int direct_phases(const mi_deconv *c, const int64_t in[3], const int64_t out[3]) {
    const mi_conv_desc *d = &c->d.d;
    if (nphases(d) > MAX_DIRECT_PHASES) return 0;
    for (int64_t ph = 0; ph < nphases(d); ph++) {
        phase_geom P;
        phase_init(&P, c, ph, out);
        if (P.K != d->cin / d->groups) return 0;   /* one tap per dimension */
        for (int i = 0; i < 3; i++)
            if (P.PL[i] || P.PW[i] != in[i] || P.T[i] != in[i]) return 0;   /* at offset 0, x's size */
    }
    return 1;
}

static void deconv_direct(const mi_deconv *c, const mi_gemm_ukr *u, mi_tensor *y, const mi_tensor *x,
                          const mi_tensor *residual, mi_act act, void *workspace, const int64_t in[3],
                          const int64_t out[3]) {
    const mi_conv_desc *d = &c->d.d;
    const int64_t np = nphases(d), N = x->shape[0], cig = d->cin / d->groups, cog = d->cout / d->groups;
    const int64_t IP = in[0] * in[1] * in[2], OP = out[0] * out[1] * out[2];
    unsigned char *ws = workspace;
    int64_t *koff = (int64_t *)ws;
    float *cbuf = (float *)(ws + ROUND64((size_t)cig * sizeof(int64_t)));   /* [phase][cout][IP] */
    unsigned char *gws = (unsigned char *)cbuf + ROUND64((size_t)(np * d->cout * IP) * sizeof(float));
    for (int64_t k = 0; k < cig; k++) koff[k] = k * IP;
    const int T = c->chan_lanes, nt = mi_threads();
    const size_t per_thread = mi_gemm_ws(u, 1);
    const size_t apan = (T ? mi_gemm_pack_a_t : mi_gemm_pack_a)(u, NULL, NULL, d->groups, cog, cig);
    #pragma omp parallel num_threads(nt)
    for (int64_t n = 0; n < N; n++) {
        const float *xn = x->data + n * d->cin * IP;
        const float *rn = residual ? residual->data + n * d->cout * OP : NULL;
        mi_gemm g[MAX_DIRECT_PHASES];
        mi_gemm_plan pl[MAX_DIRECT_PHASES];
        int64_t first[MAX_DIRECT_PHASES + 1] = { 0 };
        for (int64_t ph = 0; ph < np; ph++) {
            phase_geom P;
            phase_init(&P, c, ph, out);
            g[ph] = (mi_gemm){
                .groups = d->groups, .M = cog, .K = cig, .apack = (const float *)c->packed + ph * apan,
                .src = xn, .src_gstride = cig * IP, .koff = koff, .gd = in[0], .gh = in[1], .gw = in[2],
                .od = in[0], .oh = in[1], .ow = in[2],
                .y = T ? y->data + n * d->cout * OP : cbuf + ph * d->cout * IP, .res = T ? rn : NULL,
                .bias = T ? c->bias : NULL, .relu = T && act == MI_ACT_RELU, .chan_lanes = T, .ldy = T ? OP : 0,
                .ymap = { (P.r[0] * out[1] + P.r[1]) * out[2] + P.r[2], d->stride[0] * out[1] * out[2],
                          d->stride[1] * out[2], d->stride[2] },
            };
            mi_gemm_split(u, &g[ph], nt, &pl[ph]);
            first[ph + 1] = first[ph] + pl[ph].items;
        }
        void *mine = gws + per_thread * (size_t)omp_get_thread_num();
        #pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < first[np]; it++) {
            int64_t ph = 0;
            while (it >= first[ph + 1]) ph++;
            mi_gemm_item(u, &g[ph], &pl[ph], it - first[ph], mine);
        }
        if (T) continue;   /* written by the tiles */
        /* scatter each phase to y: o = r + s*t, with bias, residual, activation */
        #pragma omp for schedule(static)
        for (int64_t q = 0; q < np * d->cout; q++) {
            const int64_t ph = q / d->cout, co = q % d->cout;
            phase_geom P;
            phase_init(&P, c, ph, out);
            const float *cb = cbuf + q * IP, bias = c->bias[co];
            float *yc = y->data + (n * d->cout + co) * OP;
            const float *rc = residual ? residual->data + (n * d->cout + co) * OP : NULL;
            const int64_t s2 = d->stride[2];
            for (int64_t t0 = 0; t0 < P.T[0]; t0++)
                for (int64_t t1 = 0; t1 < P.T[1]; t1++) {   /* one row of the phase */
                    const int64_t o = ((P.r[0] + d->stride[0] * t0) * out[1] + P.r[1] + d->stride[1] * t1) * out[2] + P.r[2];
                    const float *cr = cb + (t0 * P.T[1] + t1) * P.T[2];
                    float *yr = yc + o;
                    const float *rr = rc ? rc + o : NULL;
                    for (int64_t t2 = 0; t2 < P.T[2]; t2++) {
                        float v = cr[t2] + bias;
                        if (rr) v += rr[s2 * t2];
                        if (act == MI_ACT_RELU) v = v < 0.0f ? 0.0f : v;
                        yr[s2 * t2] = v;
                    }
                }
        }
    }
}

size_t mi_deconv_workspace(const mi_deconv *c, const mi_tensor *x) {
    if (c->path == MI_ISA_REF) return 0;
    const mi_conv_desc *d = &c->d.d;
    const mi_gemm_ukr *u = mi_gemm_ukr_for((mi_isa)c->path);
    int64_t in[3], out[3];
    out_dims(c, x, in, out);
    if (direct_phases(c, in, out))
        return ROUND64((size_t)(d->cin / d->groups) * sizeof(int64_t)) +
               ROUND64((size_t)(nphases(d) * d->cout * in[0] * in[1] * in[2]) * sizeof(float)) +
               mi_gemm_ws(u, mi_conv_max_threads());
    size_t k = 1, src = 0, cbuf = 0;
    for (int64_t ph = 0; ph < nphases(d); ph++) {
        phase_geom P;
        phase_init(&P, c, ph, out);
        k = MI_MAX(k, (size_t)P.K);
        src = MI_MAX(src, (size_t)P.src_floats);
        cbuf = MI_MAX(cbuf, (size_t)(d->cout * P.T[0] * P.T[1] * P.T[2]));
    }
    return ROUND64(k * sizeof(int64_t)) + ROUND64(src * sizeof(float)) + ROUND64(cbuf * sizeof(float)) +
           mi_gemm_ws(u, mi_conv_max_threads());
}

void mi_deconv_forward(const mi_deconv *c, mi_tensor *y, const mi_tensor *x,
                       const mi_tensor *residual, mi_act act, void *workspace) {
    if (c->path == MI_ISA_REF) {
        mi_deconv_forward_ref(c, y, x, residual, act);
        return;
    }
    check_io(c, y, x, residual);
    MI_ASSERT(workspace != NULL);
    const mi_conv_desc *d = &c->d.d;
    const mi_gemm_ukr *u = mi_gemm_ukr_for((mi_isa)c->path);
    int64_t in[3], out[3];
    out_dims(c, x, in, out);
    if (direct_phases(c, in, out)) {
        deconv_direct(c, u, y, x, residual, act, workspace, in, out);
        return;
    }
    size_t kmax = 1, srcmax = 0;
    for (int64_t ph = 0; ph < nphases(d); ph++) {
        phase_geom P;
        phase_init(&P, c, ph, out);
        kmax = MI_MAX(kmax, (size_t)P.K);
        srcmax = MI_MAX(srcmax, (size_t)P.src_floats);
    }
    unsigned char *ws = workspace;
    int64_t *koff = (int64_t *)ws;
    float *src = (float *)(ws + ROUND64(kmax * sizeof(int64_t)));
    float *cbuf = (float *)((unsigned char *)src + ROUND64(srcmax * sizeof(float)));
    const int64_t N = x->shape[0], cig = d->cin / d->groups, cog = d->cout / d->groups;
    const int64_t IP = in[0] * in[1] * in[2], OP = out[0] * out[1] * out[2];
    size_t cbmax = 0;
    for (int64_t ph = 0; ph < nphases(d); ph++) {
        phase_geom P;
        phase_init(&P, c, ph, out);
        cbmax = MI_MAX(cbmax, (size_t)(d->cout * P.T[0] * P.T[1] * P.T[2]));
    }
    void *gws = (unsigned char *)cbuf + ROUND64(cbmax * sizeof(float));
    const size_t per_thread = mi_gemm_ws(u, 1);
    const int nt = mi_threads();
    const float *packed = c->packed;

    for (int64_t ph = 0; ph < nphases(d); ph++) {
        phase_geom P;
        phase_init(&P, c, ph, out);
        const int64_t TP = P.T[0] * P.T[1] * P.T[2];
        if (TP == 0) continue;
        const float *apack = packed;
        /* One tap per dimension at offset 0 (kernel = stride, no padding: V-Net's up-convolutions):
         * the phase reads x itself, as a 1x1 convolution would. */
        int direct = 1;
        for (int i = 0; i < 3; i++) direct &= P.PL[i] == 0 && P.PW[i] == in[i] && P.T[i] == in[i];
        if (P.K) {
            packed += (c->chan_lanes ? mi_gemm_pack_a_t : mi_gemm_pack_a)(u, NULL, NULL, d->groups, cog, P.K);
            for (int64_t ci = 0, k = 0; ci < cig; ci++)
                for (int64_t j0 = 0; j0 < P.nt[0]; j0++)
                    for (int64_t j1 = 0; j1 < P.nt[1]; j1++)
                        for (int64_t j2 = 0; j2 < P.nt[2]; j2++, k++)
                            koff[k] = ci * P.plane +
                                      ((P.off[0][j0] + P.PL[0]) * P.PW[1] + P.off[1][j1] + P.PL[1]) * P.PW[2] +
                                      P.off[2][j2] + P.PL[2];
            if (!direct)
                memset(src + d->cin * P.plane, 0, (size_t)(P.src_floats - d->cin * P.plane) * sizeof(float));
        }
        #pragma omp parallel num_threads(nt)
        for (int64_t n = 0; n < N; n++) {
            const float *xn = x->data + n * d->cin * IP;
            if (P.K) {
                /* zero-padded copy: src[ci][j0][j1][j2] = x[ci][j - PL], zero outside */
                #pragma omp for schedule(static)
                for (int64_t ci = 0; ci < (direct ? 0 : d->cin); ci++)
                    for (int64_t j0 = 0; j0 < P.PW[0]; j0++)
                        for (int64_t j1 = 0; j1 < P.PW[1]; j1++) {
                            float *row = src + ci * P.plane + (j0 * P.PW[1] + j1) * P.PW[2];
                            const int64_t i0 = j0 - P.PL[0], i1 = j1 - P.PL[1];
                            memset(row, 0, (size_t)P.PW[2] * sizeof(float));
                            if (i0 < 0 || i0 >= in[0] || i1 < 0 || i1 >= in[1]) continue;
                            const int64_t lo = P.PL[2], hi = MI_MIN(P.PW[2], P.PL[2] + in[2]);
                            if (hi > lo)
                                memcpy(row + lo, xn + ((ci * in[0] + i0) * in[1] + i1) * in[2],
                                       (size_t)(hi - lo) * sizeof(float));
                        }
                /* channels on the lanes: the tiles store the phase's pixels straight into y with
                 * bias, residual and activation; otherwise into cbuf, scattered below */
                const int T = c->chan_lanes;
                const float *rn = residual ? residual->data + n * d->cout * OP : NULL;
                mi_gemm g = {
                    .groups = d->groups, .M = cog, .K = P.K, .apack = apack, .src = direct ? xn : src,
                    .src_gstride = cig * P.plane, .koff = koff, .gd = P.T[0], .gh = P.PW[1],
                    .gw = P.PW[2], .od = P.T[0], .oh = P.T[1], .ow = P.T[2],
                    .y = T ? y->data + n * d->cout * OP : cbuf, .res = T ? rn : NULL,
                    .bias = T ? c->bias : NULL, .relu = T && act == MI_ACT_RELU, .chan_lanes = T,
                    .ldy = T ? OP : 0,
                    .ymap = { (P.r[0] * out[1] + P.r[1]) * out[2] + P.r[2], d->stride[0] * out[1] * out[2],
                              d->stride[1] * out[2], d->stride[2] },
                };
                mi_gemm_plan pl;
                mi_gemm_split(u, &g, nt, &pl);
                void *mine = (unsigned char *)gws + per_thread * (size_t)omp_get_thread_num();
                #pragma omp for schedule(dynamic, 1)
                for (int64_t it = 0; it < pl.items; it++) mi_gemm_item(u, &g, &pl, it, mine);
            }
            if (P.K && c->chan_lanes) continue;   /* written by the tiles */
            /* scatter the phase to y: o = r + s*t, with bias, residual, activation */
            #pragma omp for schedule(static)
            for (int64_t co = 0; co < d->cout; co++) {
                const float *cb = cbuf + co * TP;
                float *yc = y->data + (n * d->cout + co) * OP;
                const float *rc = residual ? residual->data + (n * d->cout + co) * OP : NULL;
                for (int64_t t0 = 0; t0 < P.T[0]; t0++)
                    for (int64_t t1 = 0; t1 < P.T[1]; t1++)
                        for (int64_t t2 = 0; t2 < P.T[2]; t2++) {
                            const int64_t o = ((P.r[0] + d->stride[0] * t0) * out[1] + P.r[1] + d->stride[1] * t1) * out[2] +
                                              P.r[2] + d->stride[2] * t2;
                            float v = (P.K ? cb[(t0 * P.T[1] + t1) * P.T[2] + t2] : 0.0f) + c->bias[co];
                            if (rc) v += rc[o];
                            if (act == MI_ACT_RELU) v = v < 0.0f ? 0.0f : v;
                            yc[o] = v;
                        }
            }
        }
    }
}
