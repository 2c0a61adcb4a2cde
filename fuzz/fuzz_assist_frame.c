/* fuzz/fuzz_assist_frame.c - a frame body as POST /v1/frames receives it: the type check against
 * the Content-Type (the first input byte: odd says image/png, even image/jpeg), the header and
 * size limits before decoding (mi_assist_check_frame), stb_image's decode, and the quality rule
 * on the pixels (pipelines/assist/quality.c). Frames are limited to 256 pixels a side and 2^16
 * in all here, as fuzz_image limits what it decodes: stb's time grows with the claimed size.
 * Promises: a frame passes the checks only within the limits, decodes to the size its header
 * said, and its quality metrics lie in their ranges with a reason exactly when not judged; every
 * refusal names the frame. */
#include "fuzz/fuzz.h"
#include "pipelines/assist/quality.h"
#include "pipelines/assist/request.h"

#include <string.h>

#define SIDE 256
#define PIXELS (1 << 16)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const mi_assist_image_type type = data[0] & 1 ? MI_ASSIST_IMG_PNG : MI_ASSIST_IMG_JPEG;
    data++, size--;
    int w, h;
    if (mi_assist_check_frame(data, size, type, SIDE, PIXELS, &w, &h) != MI_OK) {
        FUZZ_CHECK(strstr(mi_last_error(), "frame"), "message does not name the frame: %s", mi_last_error());
        return 0;
    }
    FUZZ_CHECK(w >= 1 && h >= 1 && w <= SIDE && h <= SIDE && w * h <= PIXELS, "%dx%d passed", w, h);
    mi_image img;
    if (mi_assist_decode_frame(&img, data, size, type, SIDE, PIXELS) != MI_OK) {
        FUZZ_CHECK(strstr(mi_last_error(), "frame"), "message does not name the frame: %s", mi_last_error());
        FUZZ_CHECK(img.px == NULL, "refused, yet pixels");
        return 0;
    }
    FUZZ_CHECK(img.w == w && img.h == h, "decoded %dx%d, header said %dx%d", img.w, img.h, w, h);
    mi_quality_thresholds t;
    mi_quality_defaults(&t);
    mi_quality q;
    FUZZ_CHECK(mi_quality_measure(img.px, img.w, img.h, (size_t)img.w * 3, &t, &q) == MI_OK, "%s", mi_last_error());
    FUZZ_CHECK(q.mean_luma >= 0 && q.mean_luma <= 255 && q.sobel_x >= 0 && q.sobel_x <= 1020 && q.sobel_y >= 0 &&
               q.sobel_y <= 1020 && q.glare_frac >= 0 && q.glare_frac <= 1, "metrics out of range");
    FUZZ_CHECK(q.judged == (q.reason[0] == 0), "judged %d with reason '%s'", q.judged, q.reason);
    mi_image_free(&img);
    return 0;
}
