/* examples/embed.c - medinfer from your own program: open a blob, preprocess an image exactly as
 * the model was trained, run it, print the top five classes.
 *
 *   cc embed.c $(pkg-config --cflags --libs medinfer stb) -o embed
 *   ./embed model.safetensors image.png
 *
 * Decoding the image is the caller's business (here stb_image); everything after the RGB pixels
 * is the library's. */
#include <medinfer.h>
#include <stb_image.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: embed MODEL IMAGE\n");
        return 2;
    }
    mi_model *m = NULL;
    mi_session *s = NULL;
    int w, h, rc = 1;
    unsigned char *rgb = stbi_load(argv[2], &w, &h, NULL, 3);
    const mi_preprocess_spec *p;
    float *x = NULL;
    mi_class_score top[5];
    if (!rgb) {
        fprintf(stderr, "%s: %s\n", argv[2], stbi_failure_reason());
        return 1;
    }
    if (mi_model_open(&m, argv[1]) != MI_OK) goto fail;
    p = mi_model_preprocess(m);
    x = malloc(sizeof(float) * 3 * p->crop * p->crop);
    if (!x || mi_preprocess_rgb8(rgb, w, h, (size_t)w * 3, p, x) != MI_OK) goto fail;
    if (mi_session_create(&s, m, (int64_t[4]){ 1, 3, p->crop, p->crop }, 0) != MI_OK) goto fail;
    int k = mi_model_num_classes(m) < 5 ? mi_model_num_classes(m) : 5;
    if (mi_classify(s, x, 1, k, top, NULL) != MI_OK) goto fail;
    for (int i = 0; i < k; i++)
        printf("%d %.9g %s\n", top[i].index, top[i].probability, top[i].label);
    rc = 0;
fail:
    if (rc) fprintf(stderr, "embed: %s\n", mi_last_error());
    mi_session_destroy(s);
    mi_model_close(m);
    free(x);
    stbi_image_free(rgb);
    return rc;
}
