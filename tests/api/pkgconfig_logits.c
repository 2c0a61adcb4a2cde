/* tests/api/pkgconfig_logits.c - what an integrator's first program looks like, built by
 * tests/test_embed.sh against the installed tree with pkg-config only: a blob, a raw float32
 * (1, 3, H, W) input, every logit printed with 9 significant digits, as `classify --logits`. */
#include <medinfer.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 5) return 2;
    int64_t shape[4] = { 1, 3, atoi(argv[3]), atoi(argv[4]) }, out[4];
    size_t n = (size_t)(3 * shape[2] * shape[3]);
    float *x = malloc(n * sizeof *x);
    FILE *f = fopen(argv[2], "rb");
    if (!x || !f || fread(x, sizeof *x, n, f) != n) return 1;
    fclose(f);
    mi_model *m;
    mi_session *s;
    if (mi_model_open(&m, argv[1]) || mi_session_create(&s, m, shape, 0) || mi_session_run(s, x)) {
        fprintf(stderr, "%s\n", mi_last_error());
        return 1;
    }
    const float *logits = mi_session_output(s, "logits", out);
    for (int64_t i = 0; i < out[1]; i++) printf("%.9g\n", logits[i]);
    mi_session_destroy(s);
    mi_model_close(m);
    free(x);
    return 0;
}
