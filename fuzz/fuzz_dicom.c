/* fuzz/fuzz_dicom.c - the DICOM reader (pipelines/io/dicom.cc: our checks, then DCMTK's parser
 * and its JPEG, JPEG-LS and RLE decoders) on bytes in memory.
 *
 * DCMTK itself is not instrumented (Debian's build), so coverage guidance sees only our side of
 * the calls; ASan still sees every read of our buffers and every allocation, which is where a
 * header claiming more than the bytes hold would show. */
#include "fuzz/fuzz.h"
#include "pipelines/io/dicom.h"
#include "pipelines/io/image.h"

#include <string.h>

#define NAME "fuzz.dcm"

static volatile unsigned sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mi_dicom_image img;
    if (mi_dicom_load_memory(&img, data, size, NAME) != MI_OK) {
        FUZZ_CHECK(strstr(mi_last_error(), NAME) != NULL, "message does not name the file: %s", mi_last_error());
        FUZZ_CHECK(img.gray == NULL, "refused, yet pixels");
        return 0;
    }
    FUZZ_CHECK(mi_dicom_sniff(data, size), "decoded bytes that do not sniff as DICOM");
    FUZZ_CHECK(img.gray && img.w > 0 && img.h > 0 && img.w <= MI_IMAGE_MAX_SIDE &&
               img.h <= MI_IMAGE_MAX_SIDE, "decoded %dx%d", img.w, img.h);
    FUZZ_CHECK(img.frames >= 1 && img.nregions >= 0 && img.nregions <= MI_DICOM_MAX_REGIONS,
               "frames %d, regions %d", img.frames, img.nregions);
    FUZZ_CHECK(memchr(img.photometric, 0, sizeof img.photometric) && memchr(img.modality, 0, sizeof img.modality) &&
               memchr(img.transfer_syntax, 0, sizeof img.transfer_syntax), "unterminated string");
    /* every decoded byte is readable (ASan) */
    unsigned acc = 0;
    for (size_t i = 0; i < (size_t)img.w * img.h; i++) acc += img.gray[i];
    sink = acc;
    const mi_dicom_region *r = mi_dicom_mmode_region(&img);
    FUZZ_CHECK(!r || r->spatial_format == MI_DICOM_REGION_MMODE, "M-mode region of format %d", r->spatial_format);
    mi_dicom_free(&img);
    return 0;
}
