/* ops/roi_cl.h - the inner block of mi_roi_align on a channels-last map (ops/roi.c), internal to
 * ops/: one source compiled twice, for the baseline ISA in ops/roi.c and with AVX2 in
 * ops/x86/roi_avx2.c (GCC's vector extensions: 8 floats per operation, as two SSE or one AVX
 * instruction). Each lane computes the scalar expression of ops/roi.c's add_sample for its
 * channel - multiplies, then adds left to right, no FMA (-ffp-contract=off) - so every path gives
 * mi_roi_align_ref's bits (tests/test_detect.c, memcmp). */
#ifndef MI_ROI_CL_H
#define MI_ROI_CL_H

#include <stdint.h>
#include <string.h>

/* One bilinear sample: the map offsets of its 4 corners and their weights (ops/roi.c). */
typedef struct { int64_t pos[4]; float w[4]; } mi_roi_sample;

/* Bins [0, nbins) of one RoI for channels c0 .. c0 + 31 of a channels-last map whose channel
 * c0 at pixel p is base[p * Cp] (Cp a multiple of 32, zeros past the real channels): each bin
 * sums its per_bin samples s[bin * per_bin ..] and divides by count; the nc <= 32 real channels
 * go to y_roi[(c0 + c) * nbins + bin]. */
void mi_roi_align_cl_block_base(float *y_roi, const float *base, int64_t Cp, int64_t c0, int64_t nc,
                                int64_t nbins, const mi_roi_sample *s, int64_t per_bin, float count);
#if defined(__x86_64__)
void mi_roi_align_cl_block_avx2(float *y_roi, const float *base, int64_t Cp, int64_t c0, int64_t nc,
                                int64_t nbins, const mi_roi_sample *s, int64_t per_bin, float count);
#endif

typedef float mi_roi_v8 __attribute__((vector_size(32)));

static inline void mi_roi_align_cl_block(float *y_roi, const float *base, int64_t Cp, int64_t c0,
                                         int64_t nc, int64_t nbins, const mi_roi_sample *s,
                                         int64_t per_bin, float count) {
    for (int64_t b = 0; b < nbins; b++) {
        mi_roi_v8 acc[4];
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) acc[j] = (mi_roi_v8){ 0 };
        for (int64_t t = 0; t < per_bin; t++, s++) {
            const float *q0 = base + s->pos[0] * Cp, *q1 = base + s->pos[1] * Cp;
            const float *q2 = base + s->pos[2] * Cp, *q3 = base + s->pos[3] * Cp;
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {   /* rolled, acc went to the stack */
                mi_roi_v8 v0, v1, v2, v3;
                memcpy(&v0, q0 + 8 * j, sizeof v0);  memcpy(&v1, q1 + 8 * j, sizeof v1);
                memcpy(&v2, q2 + 8 * j, sizeof v2);  memcpy(&v3, q3 + 8 * j, sizeof v3);
                acc[j] = acc[j] + (s->w[0] * v0 + s->w[1] * v1 + s->w[2] * v2 + s->w[3] * v3);
            }
        }
        float o[32];
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
            const mi_roi_v8 q = acc[j] / count;
            memcpy(o + 8 * j, &q, sizeof q);
        }
        for (int64_t c = 0; c < nc; c++) y_roi[(c0 + c) * nbins + b] = o[c];
    }
}

#endif
