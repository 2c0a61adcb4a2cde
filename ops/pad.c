/* ops/pad.c - torch.nn.functional.pad on (N, C, H, W): zero, reflect, replicate (see pad.h).
 *
 * The source index of an output row or column outside the input, as torch 1.13 computes it
 * (aten/src/ATen/native/ReflectionPad.cpp, ReplicationPadding.cpp): reflect maps i < 0 to -i and
 * i >= n to 2(n-1) - i, one reflection being enough because pad < n; replicate clamps to [0, n-1].
 * Tests: tests/test_ops2.c (pad_matches_torch, pad_rejects_bad_input) against tests/ref_ops2.py. */
#include "ops/pad.h"
#include "ops/cpu.h"

#include <string.h>

#define PAR_MIN 32768

static const char *mode_name(mi_pad_mode m) {
    return m == MI_PAD_ZERO ? "zero" : m == MI_PAD_REFLECT ? "reflect" : m == MI_PAD_REPLICATE ? "replicate" : "?";
}

mi_status mi_pad_out_shape(const mi_tensor *x, const int64_t pad[4], mi_pad_mode mode,
                           int64_t out[MI_MAX_DIMS]) {
    char buf[96];
    if (mode != MI_PAD_ZERO && mode != MI_PAD_REFLECT && mode != MI_PAD_REPLICATE)
        return MI_FAIL(MI_ERR_ARG, "pad of '%s': mode %d, expected zero (0), reflect (1) or replicate (2)",
                       x->name, (int)mode);
    if (x->ndim != 4)
        return MI_FAIL(MI_ERR_SHAPE, "pad of '%s': shape %s, expected 4 dimensions (N, C, H, W)", x->name,
                       mi_shape_str(buf, sizeof buf, x->ndim, x->shape));
    static const char *const side[4] = { "left", "right", "top", "bottom" };
    for (int i = 0; i < 4; i++)
        if (pad[i] < 0)
            return MI_FAIL(MI_ERR_ARG, "%s pad of '%s': %lld %s, expected >= 0", mode_name(mode), x->name,
                           (long long)pad[i], side[i]);
    const int64_t H = x->shape[2], W = x->shape[3];
    if (mode != MI_PAD_ZERO && (H < 1 || W < 1))
        return MI_FAIL(MI_ERR_SHAPE, "%s pad of '%s': shape %s, expected H and W >= 1", mode_name(mode),
                       x->name, mi_shape_str(buf, sizeof buf, x->ndim, x->shape));
    if (mode == MI_PAD_REFLECT)
        for (int i = 0; i < 4; i++) {
            const int64_t n = i < 2 ? W : H;
            if (pad[i] >= n)
                return MI_FAIL(MI_ERR_ARG, "reflect pad of '%s' (shape %s): %lld %s, expected less than "
                               "the %s %lld", x->name, mi_shape_str(buf, sizeof buf, x->ndim, x->shape),
                               (long long)pad[i], side[i], i < 2 ? "width" : "height", (long long)n);
        }
    out[0] = x->shape[0];
    out[1] = x->shape[1];
    int64_t numel = 1;
    bool over = __builtin_add_overflow(H, pad[2], &out[2]) || __builtin_add_overflow(out[2], pad[3], &out[2]) ||
                __builtin_add_overflow(W, pad[0], &out[3]) || __builtin_add_overflow(out[3], pad[1], &out[3]);
    for (int d = 0; d < 4 && !over; d++) over = __builtin_mul_overflow(numel, out[d], &numel);
    if (over)
        return MI_FAIL(MI_ERR_ARG, "%s pad of '%s' (shape %s) by %lld, %lld, %lld, %lld: the output size "
                       "overflows", mode_name(mode), x->name, mi_shape_str(buf, sizeof buf, x->ndim, x->shape),
                       (long long)pad[0], (long long)pad[1], (long long)pad[2], (long long)pad[3]);
    return MI_OK;
}

/* Source index of padded position i (input coordinates, may be outside [0, n)); -1: a zero. */
static inline int64_t src_index(int64_t i, int64_t n, mi_pad_mode mode) {
    if (i >= 0 && i < n) return i;
    if (mode == MI_PAD_ZERO) return -1;
    if (mode == MI_PAD_REPLICATE) return i < 0 ? 0 : n - 1;
    return i < 0 ? -i : 2 * (n - 1) - i;
}

void mi_pad2d(mi_tensor *y, const mi_tensor *x, const int64_t pad[4], mi_pad_mode mode) {
    int64_t os[MI_MAX_DIMS];
    const mi_status st = mi_pad_out_shape(x, pad, mode, os);
    if (st != MI_OK) mi_assert_fail("mi_pad_out_shape(x) == MI_OK", __FILE__, __LINE__, "%s", mi_last_error());
    MI_ASSERT_EQ(y->ndim, 4);
    for (int d = 0; d < 4; d++) MI_ASSERT_EQ(y->shape[d], os[d]);
    MI_ASSERT(mi_tensor_is_contiguous(x) && mi_tensor_is_contiguous(y));
    const int64_t planes = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t OH = os[2], OW = os[3], left = pad[0], right = pad[1], top = pad[2];
    const size_t bytes_x = (size_t)(planes * H * W) * sizeof(float), bytes_y = (size_t)(planes * OH * OW) * sizeof(float);
    MI_ASSERT(bytes_x == 0 || bytes_y == 0 || (const char *)y->data >= (const char *)x->data + bytes_x ||
              (const char *)x->data >= (const char *)y->data + bytes_y);
    const float *xd = x->data;
    float *yd = y->data;
    #pragma omp parallel for collapse(2) num_threads(mi_threads()) if (planes * OH * OW > PAR_MIN) schedule(static)
    for (int64_t p = 0; p < planes; p++)
        for (int64_t oh = 0; oh < OH; oh++) {
            float *yr = yd + (p * OH + oh) * OW;
            const int64_t ih = src_index(oh - top, H, mode);
            if (ih < 0) {   /* zero mode, a row of padding */
                memset(yr, 0, (size_t)OW * sizeof(float));
                continue;
            }
            const float *xr = xd + (p * H + ih) * W;
            for (int64_t j = 0; j < left; j++) {
                const int64_t iw = src_index(j - left, W, mode);
                yr[j] = iw < 0 ? 0.0f : xr[iw];
            }
            if (W > 0) memcpy(yr + left, xr, (size_t)W * sizeof(float));
            for (int64_t j = 0; j < right; j++) {
                const int64_t iw = src_index(W + j, W, mode);
                yr[left + W + j] = iw < 0 ? 0.0f : xr[iw];
            }
        }
}
