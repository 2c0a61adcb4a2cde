/* ops/norm.c - BatchNorm folded into the preceding convolution, in float64 (torch's eval-mode
 * batch_norm: y = (x - mean) / sqrt(var + eps) * gamma + beta). */
#include "ops/conv.h"

#include <math.h>

void mi_fold_batchnorm(float *w, float *b, const float *gamma, const float *beta,
                       const float *mean, const float *var, double eps, int64_t cout,
                       int64_t per_out) {
    for (int64_t o = 0; o < cout; o++) {
        double s = (double)gamma[o] / sqrt((double)var[o] + eps);
        for (int64_t i = 0; i < per_out; i++) w[o * per_out + i] = (float)((double)w[o * per_out + i] * s);
        b[o] = (float)(((double)b[o] - (double)mean[o]) * s + (double)beta[o]);
    }
}
