/* fuzz/fuzz_image.c - still-image decoding (pipelines/io/image.c: our header checks, then
 * stb_image) and the classifier preprocessing (ops/preprocess.c) on what it decodes,
 * downscaling and upscaling, with the crop inside and larger than the resized image, and in
 * squash mode (Resize((S, S))).
 *
 * Decoding costs stb_image time in proportion to the pixels the header claims (a JPEG cut short
 * is decoded as zeros), so images that pass the library's checks (mi_image_info_memory) but are
 * larger than FUZZ_MAX_PIXELS are not decoded: a few of them would take most of the run. Their
 * checks have run by then, and refused headers are still passed to mi_image_load_memory. Run
 * with a small -max_len (fuzz/run.sh: 4096). */
#include "fuzz/fuzz.h"
#include "pipelines/io/image.h"

#include <string.h>

#define NAME "fuzz.img"
#define FUZZ_MAX_PIXELS (1 << 16)

static volatile float sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int w, h;
    if (mi_image_info_memory(data, size, NAME, &w, &h) == MI_OK) {
        FUZZ_CHECK(w > 0 && h > 0 && w <= MI_IMAGE_MAX_SIDE && h <= MI_IMAGE_MAX_SIDE &&
                   (long long)w * h <= MI_IMAGE_MAX_PIXELS, "header %dx%d accepted", w, h);
        if ((long long)w * h > FUZZ_MAX_PIXELS) return 0;
    }
    mi_image img;
    if (mi_image_load_memory(&img, data, size, NAME) != MI_OK) {
        FUZZ_CHECK(strstr(mi_last_error(), NAME) != NULL, "message does not name the image: %s", mi_last_error());
        FUZZ_CHECK(img.px == NULL, "refused, yet pixels");
        return 0;
    }
    FUZZ_CHECK(img.px && img.w > 0 && img.h > 0 && (long long)img.w * img.h <= FUZZ_MAX_PIXELS,
               "decoded %dx%d", img.w, img.h);
    /* every decoded byte is readable (ASan) */
    unsigned acc = 0;
    for (size_t i = 0; i < (size_t)img.w * img.h * 3; i++) acc += img.px[i];
    sink = (float)acc;

    static const struct { int resize, crop; } sizes[] = { { 12, 10 }, { 7, 9 }, { 1, 1 }, { 33, 5 } };
    const float mean[3] = { 0.485f, 0.456f, 0.406f }, std[3] = { 0.229f, 0.224f, 0.225f };
    static float out[3 * 10 * 10];  /* the largest crop */
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int crop = sizes[k].crop;
        FUZZ_CHECK(mi_image_preprocess(&img, sizes[k].resize, crop, mean, std, out) == MI_OK,
                   "preprocess %d/%d of %dx%d: %s", sizes[k].resize, crop, img.w, img.h, mi_last_error());
        /* uint8 in, so every output lies in [(0 - mean)/std, (1 - mean)/std] */
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < crop * crop; i++) {
                float v = out[c * crop * crop + i];
                FUZZ_CHECK(v >= (0 - mean[c]) / std[c] - 1e-5f && v <= (1 - mean[c]) / std[c] + 1e-5f,
                           "preprocess %d/%d channel %d pixel %d = %g", sizes[k].resize, crop, c, i, v);
            }
    }
    /* resize_mode squash (Resize((S, S)), no crop): one size down or up per axis */
    static const int squash[] = { 10, 3 };
    for (size_t k = 0; k < sizeof squash / sizeof *squash; k++) {
        const int S = squash[k];
        mi_preprocess_spec p = { .resize = S, .crop = S, .resize_mode = MI_RESIZE_SQUASH };
        memcpy(p.mean, mean, sizeof p.mean);
        memcpy(p.std, std, sizeof p.std);
        FUZZ_CHECK(mi_preprocess_rgb8(img.px, img.w, img.h, (size_t)img.w * 3, &p, out) == MI_OK,
                   "squash to %d of %dx%d: %s", S, img.w, img.h, mi_last_error());
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < S * S; i++) {
                float v = out[c * S * S + i];
                FUZZ_CHECK(v >= (0 - mean[c]) / std[c] - 1e-5f && v <= (1 - mean[c]) / std[c] + 1e-5f,
                           "squash %d channel %d pixel %d = %g", S, c, i, v);
            }
    }
    mi_image_free(&img);
    return 0;
}
