/* ops/roi.h - RoIAlign and RoIPool as torchvision.ops defines them (roi_align_kernel.cpp,
 * roi_pool_kernel.cpp in torchvision 0.14), forward only.
 *
 * x: (N, C, H, W) features. rois: [k][5] = (batch index, x1, y1, x2, y2) in image pixels, scaled
 * by spatial_scale onto the feature map. y: (k, C, out_h, out_w). Each output element is computed
 * by one thread in torchvision's order, so results are the same bits for any thread count. */
#ifndef MI_ROI_H
#define MI_ROI_H

#include "ops/tensor.h"

typedef struct {
    int64_t out_h, out_w;
    float   spatial_scale;
    int     sampling_ratio;   /* <= 0: adaptive, ceil(roi size / output size) samples per bin */
    bool    aligned;          /* true: pixel centres at half-integers (a -0.5 shift) */
} mi_roi_desc;

/* A batch index outside [0, N) after truncation toward zero (as the kernel converts it: -0.5 is
 * image 0) or a non-finite value in a RoI gives MI_ERR_ARG (torchvision would read out of
 * bounds), as do out_h or out_w < 1 and, where torchvision's int conversions would overflow, an
 * adaptive sampling grid over 32768 per side (RoIAlign) or a scaled coordinate beyond +-2^29
 * (RoIPool). x not (N, C, H, W) F32 contiguous, or y not (k, C, out_h, out_w): MI_ERR_SHAPE. The
 * rest computes as torchvision does, empty bins giving 0. */
mi_status mi_roi_align(mi_tensor *y, const mi_tensor *x, const float (*rois)[5], int64_t k,
                       const mi_roi_desc *d);
/* RoIPool: max over each bin of the rounded RoI; empty bins give 0. sampling_ratio and aligned
 * are ignored. */
mi_status mi_roi_pool(mi_tensor *y, const mi_tensor *x, const float (*rois)[5], int64_t k,
                      const mi_roi_desc *d);

mi_status mi_roi_align_ref(mi_tensor *y, const mi_tensor *x, const float (*rois)[5], int64_t k,
                           const mi_roi_desc *d);

/* MultiScaleRoIAlign's pooling (torchvision/ops/poolers.py _multiscale_roi_align): RoI r is
 * pooled from the map x[level[r]] at scales[level[r]] (the other fields of d apply to every
 * level) into row r of y, (k, C, out_h, out_w). A RoI whose level is outside 0..nlevels-1 gets a
 * zero row, as torchvision's zero-initialised result keeps it. The maps agree in N and C; each
 * is checked, and each RoI against its map, as mi_roi_align checks them (a RoI is checked against
 * every map, so a batch index must exist in all of them). Rows are computed exactly as
 * mi_roi_align computes them on that level alone, so the results are the same bits as pooling
 * each level's RoIs separately, for any thread count; mi_roi_align_levels_ref does that, RoI by
 * RoI, with mi_roi_align_ref. */
#define MI_ROI_MAX_LEVELS 16
mi_status mi_roi_align_levels(mi_tensor *y, const mi_tensor *const *x, const float *scales, int nlevels,
                              const int *level, const float (*rois)[5], int64_t k, const mi_roi_desc *d);
mi_status mi_roi_align_levels_ref(mi_tensor *y, const mi_tensor *const *x, const float *scales, int nlevels,
                                  const int *level, const float (*rois)[5], int64_t k, const mi_roi_desc *d);

#endif
