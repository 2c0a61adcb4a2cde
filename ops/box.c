/* ops/box.c - anchors, the box coder, clipping and small-box removal (see box.h).
 *
 * Each expression is torchvision 0.14's, operation for operation and in its order
 * (models/detection/anchor_utils.py, models/detection/_utils.py BoxCoder, ops/boxes.py), because
 * an anchor or box that differs in its last bit can flip an NMS decision downstream. The build's
 * -ffp-contract=off keeps a*b + c from becoming one fma, which torch does not do either. */
#include "ops/box.h"

#include <math.h>

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
    /* math.log(1000.0 / 16) in double, then float as torch.clamp casts its bound */
    return (mi_box_coder){ wx, wy, ww, wh, (float)log(1000.0 / 16) };
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
        float pred_w = expf(dw) * widths, pred_h = expf(dh) * heights;
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
        rel[i][2] = bc->ww * logf(gt_widths / ex_widths);
        rel[i][3] = bc->wh * logf(gt_heights / ex_heights);
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
