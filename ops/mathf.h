/* ops/mathf.h - exp, log, expm1 and tanh for float, the same bits on every CPU and C library.
 *
 * libm's expf is not one function: glibc picks an FMA variant on x86-64 at load time, and other C
 * libraries round differently, so a network run through libm could differ in its last bits
 * between the x86 PC and the ARM box that must agree with it (MI_EXACT, docs/arm.md). These
 * are written in plain double arithmetic - operations IEEE 754 defines to the bit, evaluated in
 * a fixed order (-ffp-contract=off: no fused multiply-add), then rounded to float once - so every
 * compiler and CPU gives the same result. Accuracy: within 1 ulp of the exact value over the
 * whole float range (tests/test_exact.c sweeps it against double libm); NaN in, NaN out; the
 * limits (overflow to inf, underflow through the subnormals to 0) are those of the exact value.
 * The scalar references of the activations, softmax and box decoding use these. */
#ifndef MI_MATHF_H
#define MI_MATHF_H

float mi_expf(float x);
float mi_logf(float x);
float mi_expm1f(float x);
float mi_tanhf(float x);

#endif
