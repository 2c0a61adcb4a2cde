/* ops/box.c - anchors, the box coder, clipping and small-box removal (see box.h).
 *
 * Each expression is torchvision 0.14's, operation for operation and in its order
 * (models/detection/anchor_utils.py, models/detection/_utils.py BoxCoder, ops/boxes.py), because
 * an anchor or box that differs in its last bit can flip an NMS decision downstream. The build's
 * -ffp-contract=off keeps a*b + c from becoming one fma, which torch does not do either. */
#include "ops/box.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* 2^q for q in the normal range, built from its bits as SLEEF's vpow2i does */
static float pow2i(int q) {
    uint32_t b = (uint32_t)(q + 127) << 23;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* torch.exp on float: ATen's Vectorized<float>::exp is SLEEF's expf_u10 (Sleef_expf8_u10 on AVX2,
 * the same polynomial on AVX-512 and NEON), which differs from glibc's expf in the last bit for
 * about one input in ten; a 1-ulp wider box then rounds the corners apart by up to 8 ulps. This
 * is SLEEF's xexpf step by step: its vmla is a fused multiply-add in the FMA builds torch uses,
 * hence the explicit fmaf (which -ffp-contract=off leaves alone). Measured equal to torch.exp on
 * 310 000 inputs in [-105, 100] (tests/test_detect.c checks decode against BoxCoder). */
static float torch_expf(float d) {
    if (isnan(d)) return d;
    if (d < -104.0f) return 0.0f;
    if (d > 100.0f) return INFINITY;
    int q = (int)rintf(d * 1.442695040888963407359924681001892137426645954152985934135449406931f);
    float s = fmaf((float)q, -0.693145751953125f, d);
    s = fmaf((float)q, -1.428606765330187045e-06f, s);
    float u = 0.000198527617612853646278381f;
    u = fmaf(u, s, 0.00139304355252534151077271f);
    u = fmaf(u, s, 0.00833336077630519866943359f);
    u = fmaf(u, s, 0.0416664853692054748535156f);
    u = fmaf(u, s, 0.166666671633720397949219f);
    u = fmaf(u, s, 0.5f);
    u = 1.0f + fmaf(s * s, u, s);
    return u * pow2i(q >> 1) * pow2i(q - (q >> 1));   /* vldexp2: two steps, as SLEEF scales */
}

/* torch.log on float: SLEEF's logf_u10 (xlogf_u1), for the same reason as torch_expf. Its
 * double-float steps are SLEEF's FMA versions of dfadd2, dfmul, dfdiv and dfadd; checked equal to
 * torch.log on 301 000 inputs from 1e-38 to 1e30. */
typedef struct { float x, y; } f2;   /* x + y, |y| below half an ulp of x */

static uint32_t bits_of(float f) { uint32_t b; memcpy(&b, &f, sizeof b); return b; }
static float of_bits(uint32_t b) { float f; memcpy(&f, &b, sizeof f); return f; }
static f2 df_add2(float x, float y) { float s = x + y, v = s - x; return (f2){ s, (x - (s - v)) + (y - v) }; }
static f2 df_mul(f2 x, float y) { float s = x.x * y; return (f2){ s, fmaf(x.y, y, fmaf(x.x, y, -s)) }; }
static f2 df_div(f2 n, f2 d) {
    float t = 1.0f / d.x, s = n.x * t;
    float u = fmaf(t, n.x, -s), v = fmaf(-d.y, t, fmaf(-d.x, t, 1.0f));
    return (f2){ s, fmaf(s, v, fmaf(n.y, t, u)) };
}
static f2 df_add_f2(f2 x, f2 y) { float s = x.x + y.x; return (f2){ s, (((x.x - s) + y.x) + x.y) + y.y }; }
static f2 df_add_f(f2 x, float y) { float s = x.x + y; return (f2){ s, ((x.x - s) + y) + x.y }; }

static float torch_logf(float d) {
    if (isnan(d) || d < 0.0f) return NAN;
    if (d == 0.0f) return -INFINITY;
    if (isinf(d)) return INFINITY;
    bool tiny = d < 1.17549435e-38f;                  /* subnormal: scale by 2^64 first */
    if (tiny) d = d * 18446744073709551616.0f;
    int e = (int)((bits_of(d * (1.0f / 0.75f)) >> 23) & 0xff) - 0x7f;
    float m = of_bits(bits_of(d) - ((uint32_t)e << 23));   /* d / 2^e, in [0.75, 1.5) */
    if (tiny) e -= 64;
    f2 s = df_mul((f2){ 0.69314718246459960938f, -1.904654323148236017e-09f }, (float)e);
    f2 x = df_div(df_add2(-1.0f, m), df_add2(1.0f, m));
    float x2 = x.x * x.x;
    float t = 0.3027294874e+0f;
    t = fmaf(t, x2, 0.3996108174e+0f);
    t = fmaf(t, x2, 0.6666694880e+0f);
    s = df_add_f2(s, (f2){ x.x * 2.0f, x.y * 2.0f });
    s = df_add_f(s, x2 * x.x * t);
    return s.x + s.y;
}

void mi_anchor_cells(float (*cell)[4], const float *sizes, int nsizes, const float *ratios, int nratios) {
    for (int r = 0; r < nratios; r++) {
        float h_ratio = sqrtf(ratios[r]);
        float w_ratio = 1.0f / h_ratio;
        for (int s = 0; s < nsizes; s++) {   /* (w_ratios[:, None] * scales[None, :]).view(-1) */
            float ws = w_ratio * sizes[s], hs = h_ratio * sizes[s];
            float *a = cell[r * nsizes + s];
            /* stack([-ws, -hs, ws, hs]) / 2, then torch.round: half to even, which rintf is in
               the default rounding mode */
            a[0] = rintf(-ws / 2.0f);  a[1] = rintf(-hs / 2.0f);
            a[2] = rintf(ws / 2.0f);   a[3] = rintf(hs / 2.0f);
        }
    }
}

void mi_anchor_cells_wh(float (*cell)[4], const float (*wh)[2], int n) {
    for (int i = 0; i < n; i++) {
        cell[i][0] = rintf(-wh[i][0] / 2.0f);  cell[i][1] = rintf(-wh[i][1] / 2.0f);
        cell[i][2] = rintf(wh[i][0] / 2.0f);   cell[i][3] = rintf(wh[i][1] / 2.0f);
    }
}

void mi_anchor_grid(float (*out)[4], const float (*cell)[4], int ncell, int64_t grid_h, int64_t grid_w,
                    int64_t stride_h, int64_t stride_w) {
    for (int64_t y = 0; y < grid_h; y++)
        for (int64_t x = 0; x < grid_w; x++) {
            /* shifts are int32 in torchvision (arange(int32) * stride), converted to float when
               added to the float cell anchors */
            float sx = (float)(int32_t)(x * stride_w), sy = (float)(int32_t)(y * stride_h);
            float (*o)[4] = out + (y * grid_w + x) * ncell;
            for (int a = 0; a < ncell; a++) {
                o[a][0] = sx + cell[a][0];  o[a][1] = sy + cell[a][1];
                o[a][2] = sx + cell[a][2];  o[a][3] = sy + cell[a][3];
            }
        }
}

mi_box_coder mi_box_coder_default(float wx, float wy, float ww, float wh) {
    /* math.log(1000.0 / 16) in double (written out: no C library's log is asked), then float as
     * torch.clamp casts its bound */
    return (mi_box_coder){ wx, wy, ww, wh, (float)4.135166556742356 };
}

/* torch.clamp(v, max=m): NaN stays NaN (fminf would drop it) */
static float clamp_max(float v, float m) { return v > m ? m : v; }

void mi_box_decode(float (*out)[4], const float (*rel)[4], const float (*ref)[4], int64_t n,
                   const mi_box_coder *bc) {
    for (int64_t i = 0; i < n; i++) {
        float widths = ref[i][2] - ref[i][0], heights = ref[i][3] - ref[i][1];
        float ctr_x = ref[i][0] + 0.5f * widths, ctr_y = ref[i][1] + 0.5f * heights;
        float dx = rel[i][0] / bc->wx, dy = rel[i][1] / bc->wy;
        float dw = rel[i][2] / bc->ww, dh = rel[i][3] / bc->wh;
        dw = clamp_max(dw, bc->clip);
        dh = clamp_max(dh, bc->clip);
        float pred_ctr_x = dx * widths + ctr_x, pred_ctr_y = dy * heights + ctr_y;
        float pred_w = torch_expf(dw) * widths, pred_h = torch_expf(dh) * heights;
        float c_to_c_h = 0.5f * pred_h, c_to_c_w = 0.5f * pred_w;
        out[i][0] = pred_ctr_x - c_to_c_w;  out[i][1] = pred_ctr_y - c_to_c_h;
        out[i][2] = pred_ctr_x + c_to_c_w;  out[i][3] = pred_ctr_y + c_to_c_h;
    }
}

void mi_box_encode(float (*rel)[4], const float (*gt)[4], const float (*ref)[4], int64_t n,
                   const mi_box_coder *bc) {
    for (int64_t i = 0; i < n; i++) {   /* encode_boxes: ex = the proposals (ref), gt = the targets */
        float ex_widths = ref[i][2] - ref[i][0], ex_heights = ref[i][3] - ref[i][1];
        float ex_ctr_x = ref[i][0] + 0.5f * ex_widths, ex_ctr_y = ref[i][1] + 0.5f * ex_heights;
        float gt_widths = gt[i][2] - gt[i][0], gt_heights = gt[i][3] - gt[i][1];
        float gt_ctr_x = gt[i][0] + 0.5f * gt_widths, gt_ctr_y = gt[i][1] + 0.5f * gt_heights;
        rel[i][0] = bc->wx * (gt_ctr_x - ex_ctr_x) / ex_widths;
        rel[i][1] = bc->wy * (gt_ctr_y - ex_ctr_y) / ex_heights;
        rel[i][2] = bc->ww * torch_logf(gt_widths / ex_widths);
        rel[i][3] = bc->wh * torch_logf(gt_heights / ex_heights);
    }
}

/* Tensor.clamp(min=0, max=hi): NaN stays NaN */
static float clamp01(float v, float hi) { return v < 0.0f ? 0.0f : (v > hi ? hi : v); }

void mi_box_clip(float (*b)[4], int64_t n, float h, float w) {
    for (int64_t i = 0; i < n; i++) {
        b[i][0] = clamp01(b[i][0], w);  b[i][1] = clamp01(b[i][1], h);
        b[i][2] = clamp01(b[i][2], w);  b[i][3] = clamp01(b[i][3], h);
    }
}

int64_t mi_box_remove_small(int64_t *keep, const float (*b)[4], int64_t n, float min_size) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        float ws = b[i][2] - b[i][0], hs = b[i][3] - b[i][1];
        if (ws >= min_size && hs >= min_size) keep[m++] = i;
    }
    return m;
}
