/* ops/resize.h - torch.nn.functional.interpolate: mode "nearest" (2-D and 3-D), "bilinear"
 * (2-D) and "trilinear" (3-D), align_corners true or false, by output size or by scale factor.
 *
 * x, y: contiguous (N, C, H, W) or (N, C, D, H, W); the output size is y's shape. `scale` is
 * interpolate's scale_factor per spatial dim (D, H, W order for 5-D, H, W for 4-D), or NULL when
 * the call gave a size. As in torch (recompute_scale_factor unset), a given scale factor is what
 * the index math uses (1/scale), not in/out; with align_corners = true it is ignored.
 * Index math is PyTorch 1.13's (aten/src/ATen/native/UpSample.h): nearest takes
 * min(floor(o * s), in-1) in float, s = 1/scale or in/out (out == in and out == 2*in exact);
 * linear takes src = s*(o+0.5)-0.5, in double from a float s, clamped at 0 (align_corners: s*o,
 * s = (in-1)/(out-1)), i0 = floor(src), i1 = min(i0+1, in-1), weights 1-l, l.
 * Each output is computed by one thread. */
#ifndef MI_RESIZE_H
#define MI_RESIZE_H

#include "ops/tensor.h"

/* Output shape of interpolate(x, scale_factor=scale): floor(in * scale) per spatial dim.
 * MI_ERR_SHAPE when x is not 4-D or 5-D, MI_ERR_ARG when a scale is <= 0 or an output is empty. */
mi_status mi_resize_out_shape(const mi_tensor *x, const double *scale, int64_t out[MI_MAX_DIMS]);

void mi_resize_nearest(mi_tensor *y, const mi_tensor *x, const double *scale);
/* bilinear for 4-D x, trilinear for 5-D x */
void mi_resize_linear(mi_tensor *y, const mi_tensor *x, bool align_corners, const double *scale);

#endif
