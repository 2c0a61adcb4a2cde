/* ops/arm/conv_dw_neon.c - the AArch64 ASIMD row kernel of the depthwise 2-D convolution
 * (ops/conv_dw.c; contract: mi_dw_row_fn in ops/conv_internal.h), ops/x86/conv_dw_avx2.c in four
 * lanes. Reference: mi_conv_forward_ref; test: tests/test_conv.c (depthwise_equals_reference:
 * memcmp over widths, heights, strides, padding, kernel sizes, dilation, residual, ReLU, NaN/Inf
 * inputs and an infinite weight, on every fast ISA; the depthwise shapes of
 * same_bits_for_1_2_4_threads), under qemu-user by `make test-arm`.
 *
 * Four output columns per vector. Each accumulator takes its column's taps in (kh, kw) order as
 * vaddq_f32(acc, vmulq_f32(x, w)) - a multiply, then an add, never vfmaq_f32 - from zero, then
 * + bias, + residual and the ReLU select: the scalar reference's operations in its order, so the
 * same bits. The interior runs 16 columns (four independent chains) at a time, then its last
 * whole vectors in one group; its last 1-3 columns run the portable interior kernel, whose
 * arithmetic is the same. Stride 2 takes the even columns with vld2q_f32, which reads one float
 * past the last column lane 3 needs; where that float is past the row (the row's last interior
 * block), two overlapping loads and a permute read exactly the columns the lanes need.
 *
 * Edges (columns with taps in the padding), in blocks of 4 columns: the input columns a block
 * can touch lie in a window of 16 columns of the row, four q registers; lane i of tap kw picks its
 * column with TBL (vqtbl4q_u8), and the product is ANDed with the lanes where the reference has
 * that tap. A skipped tap so adds +0.0, which leaves the accumulator as it was (one that starts at
 * +0.0 and adds rounded products is never -0.0) whatever the weight - even Inf, where 0*Inf would
 * be NaN. Rows narrower than the window and kernels whose four columns span more than it (a
 * 7-wide kernel at dilation 2, say) run the portable edge kernel of ops/conv_dw.c with this
 * interior; other strides run the portable kernels throughout. */
#include "ops/conv_internal.h"

#include <arm_neon.h>

#define MI_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MI_MAX(a, b) ((a) > (b) ? (a) : (b))

#define WIN 16     /* input columns an edge block reads: four vectors */

/* p[0], p[S], p[2S], p[3S] for S = 1 or 2. S = 2 reads p[0..7] unless `tight`, then p[0..6]. */
static inline __attribute__((always_inline)) float32x4_t load_cols(const float *p, const int S, const int tight) {
    if (S == 1) return vld1q_f32(p);
    if (!tight) return vld2q_f32(p).val[0];
    const float32x4_t a = vld1q_f32(p), b = vld1q_f32(p + 3);   /* p0..p3, p3..p6 */
    return vuzp1q_f32(a, vextq_f32(b, b, 1));                   /* even lanes of p0..p3, p4 p5 p6 p3 */
}

/* + bias, + residual (a separate rounding, as in the reference), ReLU; m < 4: the first m lanes */
static inline __attribute__((always_inline)) void store(const mi_dw_row *r, float *y, const float *res,
                                                        float32x4_t acc, int64_t m) {
    float32x4_t v = vaddq_f32(acc, vdupq_n_f32(r->bias));
    if (m == 4) {
        if (res) v = vaddq_f32(v, vld1q_f32(res));
        if (r->relu) v = vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(v), vcltq_f32(v, vdupq_n_f32(0.0f))));
        vst1q_f32(y, v);
        return;
    }
    float t[4];
    vst1q_f32(t, v);
    for (int64_t i = 0; i < m; i++) {   /* the reference's epilogue on the sum plus bias */
        float u = t[i];
        if (res) u += res[i];
        if (r->relu) u = u < 0.0f ? 0.0f : u;
        y[i] = u;
    }
}

/* V (1..4) vectors of interior columns from j; V, S, tight are constants after inlining. */
static inline __attribute__((always_inline)) void block(const mi_dw_row *r, float *y, const float *res, int64_t j,
                                                        const int V, const int S, const int tight) {
    float32x4_t acc[4];
    #pragma GCC unroll 4
    for (int v = 0; v < V; v++) acc[v] = vdupq_n_f32(0.0f);
    for (int64_t kh = r->kh_lo; kh < r->kh_hi; kh++) {
        const float *xr = r->x + (r->ih0 + kh * r->dh) * r->W + j * S - r->pw, *w = r->w + kh * r->k;
        for (int64_t kw = 0; kw < r->k; kw++) {
            const float32x4_t wv = vdupq_n_f32(w[kw]);
            const float *xp = xr + kw * r->d;
            #pragma GCC unroll 4
            for (int v = 0; v < V; v++) acc[v] = vaddq_f32(acc[v], vmulq_f32(load_cols(xp + 4 * S * v, S, tight), wv));
        }
    }
    #pragma GCC unroll 4
    for (int v = 0; v < V; v++) store(r, y + j + 4 * v, res ? res + j + 4 * v : NULL, acc[v], 4);
}

/* V vectors from j at stride S; at stride 2 the loads stay inside the row */
static inline __attribute__((always_inline)) void block_s(const mi_dw_row *r, float *y, const float *res, int64_t j,
                                                          const int V, const int S) {
    /* the float after the last column lane 3 of the last vector needs, which vld2q_f32 reads */
    if (S == 2 && (j + 4 * V - 1) * 2 - r->pw + (r->k - 1) * r->d + 1 >= r->W) block(r, y, res, j, V, 2, 1);
    else block(r, y, res, j, V, S, 0);
}

/* interior columns [j0, j1) (inside [c0, c1)) */
static inline __attribute__((always_inline)) void interior(const mi_dw_row *r, float *y, const float *res, int64_t j0,
                                                           int64_t j1, const int S) {
    int64_t j = j0;
    for (; j + 16 <= j1; j += 16) block_s(r, y, res, j, 4, S);
    const int64_t v = (j1 - j) / 4;
    if (v == 1) block_s(r, y, res, j, 1, S);
    else if (v == 2) block_s(r, y, res, j, 2, S);
    else if (v == 3) block_s(r, y, res, j, 3, S);
    j += 4 * v;
    if (j < j1) mi_conv_dw_interior_portable(r, y, res, j, j1 - j);
}

/* ---- edges ---- */

/* The m (1..4) columns from j, whichever of their taps exist. */
static inline __attribute__((always_inline)) void edge(const mi_dw_row *r, float *y, const float *res, int64_t j,
                                                       int64_t m, const int S) {
    static const int32_t lane_i[4] = { 0, 1, 2, 3 };
    const int32x4_t lane = vld1q_s32(lane_i);
    const int64_t col0 = j * S - r->pw;
    const int64_t base = MI_MAX((int64_t)0, MI_MIN(col0, r->W - WIN));
    const uint32x4_t live = vcltq_s32(lane, vdupq_n_s32((int32_t)m));
    uint8x16_t idx[WIN];
    uint32x4_t ok[WIN];
    /* lane i of tap kw: input column c = col0 + kw*d + S*i, byte 4*(c - base) + b of the window
     * (b = 0..3); kept where 0 <= c < W; TBL gives 0 for the others' out-of-window bytes */
    for (int64_t kw = 0; kw < r->k; kw++) {
        const int32x4_t c = vmlaq_n_s32(vdupq_n_s32((int32_t)(col0 + kw * r->d)), lane, S);
        const int32x4_t rel = vsubq_s32(c, vdupq_n_s32((int32_t)base));
        ok[kw] = vandq_u32(vandq_u32(vcgeq_s32(c, vdupq_n_s32(0)), vcltq_s32(c, vdupq_n_s32((int32_t)r->W))), live);
        idx[kw] = vreinterpretq_u8_u32(vmlaq_u32(vdupq_n_u32(0x03020100u), vreinterpretq_u32_s32(rel),
                                                 vdupq_n_u32(0x04040404u)));
    }
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t kh = r->kh_lo; kh < r->kh_hi; kh++) {
        const float *xr = r->x + (r->ih0 + kh * r->dh) * r->W + base, *w = r->w + kh * r->k;
        uint8x16x4_t win;
        win.val[0] = vreinterpretq_u8_f32(vld1q_f32(xr));
        win.val[1] = vreinterpretq_u8_f32(vld1q_f32(xr + 4));
        win.val[2] = vreinterpretq_u8_f32(vld1q_f32(xr + 8));
        win.val[3] = vreinterpretq_u8_f32(vld1q_f32(xr + 12));
        for (int64_t kw = 0; kw < r->k; kw++) {
            const float32x4_t xv = vreinterpretq_f32_u8(vqtbl4q_u8(win, idx[kw]));
            const float32x4_t p = vmulq_f32(xv, vdupq_n_f32(w[kw]));
            acc = vaddq_f32(acc, vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(p), ok[kw])));
        }
    }
    store(r, y + j, res ? res + j : NULL, acc, m);
}

/* The columns [0, lo) and [hi, ow) in blocks of 4. */
static inline __attribute__((always_inline)) void all_edges(const mi_dw_row *r, float *y, const float *res, int64_t lo,
                                                            int64_t hi, const int S) {
    for (int64_t j = 0; j < lo; j += 4) edge(r, y, res, j, MI_MIN(4, lo - j), S);
    for (int64_t j = hi; j < r->ow; j += 4) edge(r, y, res, j, MI_MIN(4, r->ow - j), S);
}

void mi_conv_dw_row_neon(const mi_dw_row *r, float *y, const float *res) {
    /* column numbers go through 32-bit lanes; the window must fit the row and a block's span */
    const int window = (r->s == 1 || r->s == 2) && r->W >= WIN && r->W < INT32_MAX / 4 &&
                       r->ow * r->s < INT32_MAX / 4 && r->pw < INT32_MAX / 4 &&
                       (r->k - 1) * r->d + 3 * r->s < WIN;
    if (!window) {
        mi_conv_dw_edge_portable(r, y, res, 0, r->c0);
        mi_conv_dw_edge_portable(r, y, res, r->c1, r->ow - r->c1);
        if (r->s == 1) interior(r, y, res, r->c0, r->c1, 1);
        else if (r->s == 2) interior(r, y, res, r->c0, r->c1, 2);
        else mi_conv_dw_interior_portable(r, y, res, r->c0, r->c1 - r->c0);
        return;
    }
    /* An edge block costs the same for 1 column as for 4, so the edges take whole blocks of 4,
     * interior columns included: [0, lo) and [hi, ow) */
    const int64_t lo = r->c0 ? MI_MIN(r->c1, (r->c0 + 3) / 4 * 4) : 0;
    const int64_t hi = r->ow > r->c1 ? MI_MAX(lo, r->ow - (r->ow - r->c1 + 3) / 4 * 4) : r->ow;
    if (r->s == 1) {
        all_edges(r, y, res, lo, hi, 1);
        interior(r, y, res, lo, hi, 1);
    } else {
        all_edges(r, y, res, lo, hi, 2);
        interior(r, y, res, lo, hi, 2);
    }
}
