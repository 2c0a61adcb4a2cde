/* fuzz/fuzz_lesionseg.c - what `medinfer lesionseg` makes of a file's bytes before any network
 * sees them (pipelines/lesionseg/input.c): the content sniffing (image, video or other), the PNG
 * header size check, the size and colour refusals, and stb_image behind them; then, on what it
 * accepts, the pictures' code on a made-up result of the image's size (overlay with its contour
 * walk at the borders, the mask's components).
 *
 * An accepted image must be colour (not R = G = B everywhere) and within the pipeline's limits;
 * a refusal must name the input. As in fuzz_image.c, headers larger than FUZZ_MAX_PIXELS are
 * checked but not decoded (stb_image's time grows with the pixels claimed). */
#include "fuzz/fuzz.h"
#include "pipelines/lesionseg/lesionseg.h"

#include <stdlib.h>
#include <string.h>

#define NAME "fuzz.les"
#define FUZZ_MAX_PIXELS (1 << 16)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *what = NULL;
    mi_lesionseg_kind k = mi_lesionseg_sniff(data, size, &what);
    FUZZ_CHECK(what != NULL && (k == MI_LESIONSEG_OTHER || !*what), "kind %d with name '%s'", (int)k, what);
    int w, h;
    if (k == MI_LESIONSEG_IMAGE && mi_image_info_memory(data, size, NAME, &w, &h) == MI_OK &&
        (long long)w * h > FUZZ_MAX_PIXELS)
        return 0;
    mi_image img;
    if (mi_lesionseg_load_image_memory(data, size, NAME, &img) != MI_OK) {
        FUZZ_CHECK(strstr(mi_last_error(), NAME) != NULL, "message does not name the input: %s", mi_last_error());
        FUZZ_CHECK(img.px == NULL, "refused, yet pixels");
        return 0;
    }
    FUZZ_CHECK(k == MI_LESIONSEG_IMAGE, "accepted bytes sniffed as %d", (int)k);
    FUZZ_CHECK(img.w >= MI_LESIONSEG_MIN_SIDE && img.h >= MI_LESIONSEG_MIN_SIDE &&
               (long long)img.w * img.h <= MI_LESIONSEG_MAX_PIXELS, "accepted %dx%d", img.w, img.h);
    const size_t n = (size_t)img.w * img.h;
    size_t colour = 0;
    for (size_t i = 0; i < n; i++) colour += img.px[3 * i] != img.px[3 * i + 1] || img.px[3 * i] != img.px[3 * i + 2];
    FUZZ_CHECK(colour > 0, "accepted a grey %dx%d image", img.w, img.h);
    /* a result of the image's size whose mask is the image's red channel's top bit */
    mi_lesionseg_result r = { .w = img.w, .h = img.h };
    r.mask = malloc(n);
    r.prob = malloc(n * sizeof *r.prob);
    r.depth = malloc(n * sizeof *r.depth);
    uint8_t *ov = malloc(3 * n);
    if (r.mask && r.prob && r.depth && ov) {
        for (size_t i = 0; i < n; i++) {
            r.mask[i] = img.px[3 * i] >> 7;
            r.prob[i] = img.px[3 * i + 1] / 255.0f;
            r.depth[i] = img.px[3 * i + 2] / 255.0f;
        }
        mi_lesionseg_overlay(ov, img.px, (size_t)img.w * 3, &r);
        for (size_t i = 0; i < n; i++)
            if (!r.mask[i]) FUZZ_CHECK(!memcmp(ov + 3 * i, img.px + 3 * i, 3), "overlay changed pixel %zu outside the mask", i);
        mi_lesion_component *c;
        int nc;
        if (mi_lesionseg_components(r.mask, r.prob, r.depth, img.w, img.h, 20.0, &c, &nc) == MI_OK) {
            int64_t area = 0, mask = 0;
            for (int i = 0; i < nc; i++) {
                FUZZ_CHECK(c[i].box[0] >= 0 && c[i].box[0] < c[i].box[2] && c[i].box[2] <= img.w && c[i].box[1] >= 0 &&
                           c[i].box[1] < c[i].box[3] && c[i].box[3] <= img.h, "component %d box outside", i);
                FUZZ_CHECK(i == 0 || c[i].area <= c[i - 1].area, "components out of order at %d", i);
                area += c[i].area;
            }
            for (size_t i = 0; i < n; i++) mask += r.mask[i];
            FUZZ_CHECK(area == mask, "components cover %lld pixels, the mask %lld", (long long)area, (long long)mask);
            free(c);
        }
    }
    free(ov);
    mi_lesionseg_result_free(&r);
    mi_image_free(&img);
    return 0;
}
