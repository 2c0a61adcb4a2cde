/* fuzz/fuzz.h - what every harness in fuzz/ defines, and what drives it: libFuzzer in the
 * `make fuzz` build (clang -fsanitize=fuzzer), fuzz/replay.c in the normal build (`make test`
 * replays the committed corpora through it, any compiler, no libFuzzer needed).
 *
 * A harness returns 0 for every input. It aborts (and so fails both drivers) only when the code
 * under test broke a promise that the harness can see: an error without a message naming the
 * input, a success whose result contradicts the bytes. Sanitizers catch the rest. */
#ifndef MI_FUZZ_H
#define MI_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken promise: say which, then abort so that libFuzzer saves the input as a crash. */
#define FUZZ_CHECK(cond, ...) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: fuzz check failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); abort(); } } while (0)

#endif
