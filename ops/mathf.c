/* ops/mathf.c - see ops/mathf.h. Each function works in double, where a short polynomial is
 * accurate to ~1e-15 relative, far below float's 6e-8, so the single rounding to float at the
 * end decides the result; floor, ldexp and frexp are exact, so no step depends on the library. */
#include "ops/mathf.h"

#include <math.h>

static const double LN2_HI = 6.93147180369123816490e-01;  /* ln 2, top 32 bits: k * LN2_HI is exact */
static const double LN2_LO = 1.90821492927058770002e-10;  /* ln 2 - LN2_HI */
static const double LOG2E = 1.44269504088896338700e+00;

/* e^r - 1 for |r| <= 0.35 (ln 2 / 2 and a margin): Taylor to r^13, the next term below 1e-16
 * relative. Horner from the smallest term. */
static double expm1_small(double r) {
    double p = 1.0 / 6227020800.0;                  /* 1/13! */
    static const double inv[] = { 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0,
                                  1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0,
                                  1.0 / 6.0, 0.5, 1.0 };
    for (int i = 0; i < 12; i++) p = p * r + inv[i];
    return p * r;
}

/* e^x in double for x in float's range: e^x = 2^k e^r, r = x - k ln 2 */
static double exp_d(double x) {
    const double k = floor(x * LOG2E + 0.5);
    const double r = (x - k * LN2_HI) - k * LN2_LO;
    return ldexp(1.0 + expm1_small(r), (int)k);
}

/* to float, overflowing to inf explicitly: C leaves the conversion of a double beyond float's
 * range undefined. 0x1.ffffffp127 is halfway from FLT_MAX to 2^128, where rounding goes up. */
static float to_float(double d) { return d >= 0x1.ffffffp127 ? INFINITY : (float)d; }

float mi_expf(float x) {
    if (x != x) return x;
    if (x > 89.0f) return INFINITY;                 /* e^88.73 is already past FLT_MAX */
    if (x < -104.0f) return 0.0f;                   /* below half the smallest subnormal */
    return to_float(exp_d(x));
}

float mi_expm1f(float x) {
    if (x != x) return x;
    if (x > 89.0f) return INFINITY;
    if (x < -18.0f) return -1.0f;                   /* e^-18 < 2^-25: -1 + it rounds to -1 */
    if (fabs(x) <= 0.35) return (float)expm1_small(x);
    return to_float(exp_d(x) - 1.0);                /* |e^x - 1| >= 0.29: no cancellation */
}

float mi_tanhf(float x) {
    if (x != x || x == 0.0f) return x;              /* NaN; +-0 keeps its sign, as tanhf and torch */
    const double a = fabs((double)x);
    if (a > 10.0) return x > 0 ? 1.0f : -1.0f;      /* 1 - tanh(10) < 2^-25 */
    /* tanh a = t / (t + 2), t = e^(2a) - 1: accurate for small a because t is */
    const double t = a <= 0.175 ? expm1_small(2.0 * a) : exp_d(2.0 * a) - 1.0;
    const double y = t / (t + 2.0);
    return (float)copysign(y, (double)x);         /* tanh(-0) is -0 */
}

float mi_logf(float x) {
    if (x != x || x == INFINITY) return x;
    if (x < 0.0f) return NAN;
    if (x == 0.0f) return -INFINITY;
    int e;
    double m = frexp(x, &e);                        /* x = m 2^e, m in [0.5, 1): exact */
    if (m < 0.70710678118654752440) { m *= 2.0; e--; }
    /* log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716: the odd series to s^21 */
    const double s = (m - 1.0) / (m + 1.0), s2 = s * s;
    double p = 1.0 / 21.0;
    for (int i = 19; i >= 1; i -= 2) p = p * s2 + 1.0 / i;
    return (float)((double)e * LN2_HI + ((double)e * LN2_LO + 2.0 * s * p));
}
