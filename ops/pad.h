/* ops/pad.h - torch.nn.functional.pad of an (N, C, H, W) tensor on its last two dims: constant
 * zero, reflect and replicate, the modes a network pads with before a convolution whose own
 * padding is zeros only.
 *
 * pad = { left, right, top, bottom }, torch's order for the last two dims (W first). Reflect
 * mirrors about the edge sample without repeating it (x[-1] = x[1]), replicate repeats the edge.
 * A pure copy: y holds bits of x (or zeros), so there is no rounding and no fast path to differ
 * from; each output row is written by one thread. */
#ifndef MI_PAD_H
#define MI_PAD_H

#include "ops/tensor.h"

typedef enum { MI_PAD_ZERO = 0, MI_PAD_REFLECT, MI_PAD_REPLICATE } mi_pad_mode;

/* Output shape (N, C, top+H+bottom, left+W+right). MI_ERR_SHAPE naming x->name when x is not 4-D
 * or (reflect, replicate) has an empty plane; MI_ERR_ARG when a pad is < 0, (reflect) a pad is
 * >= the side it mirrors, the mode is unknown, or the output size overflows - what torch refuses,
 * and nothing it accepts. */
mi_status mi_pad_out_shape(const mi_tensor *x, const int64_t pad[4], mi_pad_mode mode,
                           int64_t out[MI_MAX_DIMS]);
/* y: contiguous, mi_pad_out_shape's shape, not overlapping x. */
void      mi_pad2d(mi_tensor *y, const mi_tensor *x, const int64_t pad[4], mi_pad_mode mode);

#endif
