/* ops/x86/roi_avx2.c - ops/roi_cl.h's channels-last RoIAlign block compiled for AVX2 (one
 * instruction per 8 channels instead of two SSE ones). The same source as the baseline build,
 * so the same bits; reference and tests: see ops/roi_cl.h. */
#include "ops/roi_cl.h"

void mi_roi_align_cl_block_avx2(float *y_roi, const float *base, int64_t Cp, int64_t c0, int64_t nc,
                                int64_t nbins, const mi_roi_sample *s, int64_t per_bin, float count) {
    mi_roi_align_cl_block(y_roi, base, Cp, c0, nc, nbins, s, per_bin, count);
}
