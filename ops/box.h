/* ops/box.h - boxes as torchvision's detection code handles them: anchors, the box coder, clipping
 * and removing small boxes. A box is 4 floats (x1, y1, x2, y2) in pixels; arrays of boxes are
 * contiguous [n][4]. Every function does its float arithmetic in the order torchvision writes
 * it (torchvision 0.14: models/detection/anchor_utils.py, _utils.py BoxCoder, ops/boxes.py), so
 * results match to the last bit. torch.exp and torch.log are SLEEF's on x86 (AVX2, AVX-512) and
 * ARM, and differ from glibc's expf/logf in the last bit for about one input in ten; the coder
 * uses replicas of SLEEF's, so it matches torch on those builds (a torch running its scalar
 * fallback, with no SIMD, uses libm and can differ by a few ulps). */
#ifndef MI_BOX_H
#define MI_BOX_H

#include <stdint.h>

/* AnchorGenerator.generate_anchors for one size set and aspect-ratio set: for each ratio r (outer)
 * and size s (inner, as torchvision's view(-1) orders them) h_ratio = sqrt(r), w_ratio = 1/h_ratio,
 * ws = w_ratio*s, hs = h_ratio*s, anchor = round([-ws, -hs, ws, hs] / 2) (round half to even, as
 * torch.round). Writes nsizes*nratios cell anchors to cell[][4]. */
void mi_anchor_cells(float (*cell)[4], const float *sizes, int nsizes, const float *ratios, int nratios);
/* The same rounding for anchors given directly as (w, h): round([-w, -h, w, h] / 2). */
void mi_anchor_cells_wh(float (*cell)[4], const float (*wh)[2], int n);

/* AnchorGenerator.grid_anchors for one feature map of grid_h x grid_w with strides (stride_h,
 * stride_w) = (image_h / grid_h, image_w / grid_w) in integer division, as torchvision takes them:
 * anchor[(y * grid_w + x) * ncell + a] = cell[a] + (x*stride_w, y*stride_h, x*stride_w, y*stride_h).
 * out: grid_h*grid_w*ncell boxes. */
void mi_anchor_grid(float (*out)[4], const float (*cell)[4], int ncell, int64_t grid_h, int64_t grid_w,
                    int64_t stride_h, int64_t stride_w);

/* BoxCoder(weights, bbox_xform_clip).decode_single: for each i, box i of ref (anchors or
 * proposals) moved by the 4 deltas rel[i] (dx/wx, dy/wy, clamp(dw/ww, max=clip), clamp(dh/wh,
 * max=clip)); out may not alias. torchvision's default clip is log(1000/16). */
typedef struct { float wx, wy, ww, wh, clip; } mi_box_coder;
mi_box_coder mi_box_coder_default(float wx, float wy, float ww, float wh);   /* clip = log(1000/16) */
void mi_box_decode(float (*out)[4], const float (*rel)[4], const float (*ref)[4], int64_t n,
                   const mi_box_coder *bc);
/* BoxCoder.encode_single: the deltas that move ref[i] onto gt[i] (training targets; used by the
 * tests and by anyone who trains against this coder). */
void mi_box_encode(float (*rel)[4], const float (*gt)[4], const float (*ref)[4], int64_t n,
                   const mi_box_coder *bc);

/* ops.clip_boxes_to_image: x to [0, w], y to [0, h], in place. */
void mi_box_clip(float (*b)[4], int64_t n, float h, float w);
/* ops.remove_small_boxes: writes the indices i (ascending) with x2-x1 >= min_size and
 * y2-y1 >= min_size to keep; returns their count. */
int64_t mi_box_remove_small(int64_t *keep, const float (*b)[4], int64_t n, float min_size);

#endif
