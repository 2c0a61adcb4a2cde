/* tests/test_dicom.c - pipelines/io/dicom.cc (DCMTK) on the files tests/ref_dicom.py writes.
 *
 * Lossless files must give the grey bytes ref_dicom.py computed from the source pixels (X.gray)
 * exactly; JPEG baseline within a stated tolerance; 16-bit VOI windowing within one grey level
 * (DCMTK evaluates the PS3.3 linear function in its own arithmetic). Every refused file is
 * checked for its status and for a message that names the file and the fault, both from disk
 * and from memory. */
#include "tests/mi_test.h"
#include "pipelines/io/dicom.h"

#include <stdint.h>
#include <string.h>

static const char *fixture(const char *name) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/dicom/%s", mi_fixtures(), name);
    return path;
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s missing (run `make test` so tests/ref_dicom.py writes it)", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    *n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    ck_assert_int_eq(*n, (size_t)len);
    return buf;
}

/* Loads X.dcm from disk and from memory (the two must agree) and compares with X.gray:
   max |diff| must be <= tol; returns the mean |diff|. */
static double check_pixels(const char *name, int tol, mi_dicom_image *img) {
    char dcm[256], gray[256];
    snprintf(dcm, sizeof dcm, "%s.dcm", name);
    snprintf(gray, sizeof gray, "%s.gray", name);
    size_t n, ng;
    uint8_t *bytes = read_all(fixture(dcm), &n), *want = read_all(fixture(gray), &ng);
    ck_assert_msg(mi_dicom_load(img, fixture(dcm)) == MI_OK, "%s", mi_last_error());
    ck_assert_int_eq((size_t)img->w * img->h, ng);
    mi_dicom_image mem;
    ck_assert_msg(mi_dicom_load_memory(&mem, bytes, n, dcm) == MI_OK, "%s", mi_last_error());
    ck_assert_int_eq(mem.w, img->w);
    ck_assert_int_eq(mem.h, img->h);
    ck_assert_msg(memcmp(mem.gray, img->gray, ng) == 0, "%s: file and memory decode differ", name);
    int max = 0;
    double sum = 0;
    for (size_t i = 0; i < ng; i++) {
        int d = abs(img->gray[i] - want[i]);
        max = d > max ? d : max;
        sum += d;
    }
    ck_assert_msg(max <= tol, "%s: max |diff| %d vs the source pixels (pixel 0: %d vs %d), allowed %d", name,
                  max, img->gray[0], want[0], tol);
    mi_dicom_free(&mem);
    free(bytes);
    free(want);
    return sum / ng;
}

START_TEST(mmode_native_exact_with_regions)
{
    mi_dicom_image img;
    check_pixels("us_mmode", 0, &img);
    ck_assert_int_eq(img.w, 48);
    ck_assert_int_eq(img.h, 40);
    ck_assert_int_eq(img.bits_stored, 8);
    ck_assert_int_eq(img.frames, 1);
    ck_assert_str_eq(img.photometric, "MONOCHROME2");
    ck_assert_str_eq(img.modality, "US");
    ck_assert_str_eq(img.transfer_syntax, "1.2.840.10008.1.2.1");
    ck_assert_int_eq(img.nregions, 2);
    ck_assert_int_eq(img.regions[0].spatial_format, MI_DICOM_REGION_2D);
    const mi_dicom_region *r = mi_dicom_mmode_region(&img);
    ck_assert_ptr_eq(r, &img.regions[1]);
    ck_assert_int_eq(r->spatial_format, MI_DICOM_REGION_MMODE);
    ck_assert_int_eq(r->x0, 2);
    ck_assert_int_eq(r->y0, 16);
    ck_assert_int_eq(r->x1, 45);
    ck_assert_int_eq(r->y1, 39);
    ck_assert_int_eq(r->unit_x, MI_DICOM_UNIT_SECONDS);
    ck_assert_int_eq(r->unit_y, MI_DICOM_UNIT_CM);
    ck_assert(r->delta_x == 0.004);  /* FD: the file's double, bit for bit */
    ck_assert(r->delta_y == 0.05);
    mi_dicom_free(&img);
    ck_assert_ptr_null(img.gray);
    mi_dicom_free(&img);  /* twice is harmless */
}
END_TEST

START_TEST(monochrome1_16bit_minmax_inverted)
{
    mi_dicom_image img;
    check_pixels("mono1_16", 1, &img);
    ck_assert_int_eq(img.bits_stored, 12);
    ck_assert_str_eq(img.photometric, "MONOCHROME1");
    ck_assert_int_eq(img.gray[0], 255);  /* the smallest value is white in MONOCHROME1 */
    ck_assert_int_eq(img.gray[1], 0);
    ck_assert_int_eq(img.nregions, 0);
    ck_assert_ptr_null(mi_dicom_mmode_region(&img));
    ck_assert_str_eq(img.modality, "OT");
    mi_dicom_free(&img);
}
END_TEST

START_TEST(voi_window_16bit)
{
    mi_dicom_image img;
    check_pixels("mono2_16_window", 1, &img);
    mi_dicom_free(&img);
}
END_TEST

START_TEST(rgb_to_luma_exact)
{
    mi_dicom_image img;
    check_pixels("rgb", 0, &img);
    ck_assert_str_eq(img.photometric, "RGB");
    mi_dicom_free(&img);
}
END_TEST

START_TEST(lossless_compressed_exact)
{
    static const struct { const char *name, *ts; } files[] = {
        { "rle", "1.2.840.10008.1.2.5" }, { "jpegls", "1.2.840.10008.1.2.4.80" },
        { "smooth_native", "1.2.840.10008.1.2.1" },
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        mi_dicom_image img;
        check_pixels(files[i].name, 0, &img);
        ck_assert_str_eq(img.transfer_syntax, files[i].ts);
        mi_dicom_free(&img);
    }
}
END_TEST

/* quality 90 baseline of a smooth picture: a few grey levels at most, below one on average */
START_TEST(jpeg_baseline_within_tolerance)
{
    mi_dicom_image img;
    double mean = check_pixels("jpeg_baseline", 6, &img);
    printf("jpeg_baseline: mean |diff| %.3f\n", mean);
    ck_assert_msg(mean < 1.0, "jpeg_baseline: mean |diff| %.3f", mean);
    ck_assert_str_eq(img.transfer_syntax, "1.2.840.10008.1.2.4.50");
    mi_dicom_free(&img);
    mean = check_pixels("jpeg_rgb", 8, &img);  /* YBR_FULL_422: chroma subsampled too */
    printf("jpeg_rgb: mean |diff| %.3f\n", mean);
    ck_assert_msg(mean < 1.5, "jpeg_rgb: mean |diff| %.3f", mean);
    ck_assert_str_eq(img.photometric, "YBR_FULL_422");
    mi_dicom_free(&img);
}
END_TEST

START_TEST(multiframe_gives_frame0)
{
    mi_dicom_image img;
    check_pixels("multiframe", 0, &img);
    ck_assert_int_eq(img.frames, 3);
    ck_assert_int_eq(img.w, 30);
    ck_assert_int_eq(img.h, 20);
    mi_dicom_free(&img);
}
END_TEST

/* Each refused file: status, and a message naming the file and containing `what`. */
static void refused(const char *name, mi_status want, const char *what) {
    mi_dicom_image img;
    const char *path = fixture(name);
    memset(&img, 0xAB, sizeof img);
    mi_status st = mi_dicom_load(&img, path);
    const char *msg = mi_last_error();
    ck_assert_msg(st == want, "%s: status %s, want %s (%s)", name, mi_status_name(st), mi_status_name(want), msg);
    ck_assert_msg(strstr(msg, path) && strstr(msg, what), "%s: message \"%s\" lacks \"%s\"", name, msg, what);
    printf("%s\n", msg);
    ck_assert_ptr_null(img.gray);

    size_t n;
    uint8_t *bytes = read_all(path, &n);
    st = mi_dicom_load_memory(&img, bytes, n, name);
    msg = mi_last_error();
    ck_assert_msg(st == want, "%s (memory): status %s, want %s (%s)", name, mi_status_name(st),
                  mi_status_name(want), msg);
    ck_assert_msg(strstr(msg, name) && strstr(msg, what), "%s (memory): message \"%s\" lacks \"%s\"", name, msg,
                  what);
    ck_assert_ptr_null(img.gray);
    mi_dicom_free(&img);
    free(bytes);
}

START_TEST(refuses_bad_files)
{
    refused("no_pixels.dcm", MI_ERR_FORMAT, "no Pixel Data (7FE0,0010)");
    refused("cmyk.dcm", MI_ERR_UNSUPPORTED, "Photometric Interpretation \"CMYK\" is not supported");
    refused("huge.dcm", MI_ERR_UNSUPPORTED, "65535x65535 pixels");
    refused("zero_rows.dcm", MI_ERR_FORMAT, "2x0 pixels");
    refused("short_pixels.dcm", MI_ERR_FORMAT, "Pixel Data (7FE0,0010) is 100 bytes");
    refused("jpeg2000.dcm", MI_ERR_UNSUPPORTED, "transfer syntax 1.2.840.10008.1.2.4.90");
    refused("cut_in_pixels.dcm", MI_ERR_FORMAT, "truncated");
    refused("not_dicom.dcm", MI_ERR_FORMAT, "not a DICOM file");
}
END_TEST

START_TEST(io_errors_and_sniff)
{
    mi_dicom_image img;
    ck_assert_int_eq(mi_dicom_load(&img, "/nonexistent/x.dcm"), MI_ERR_IO);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "/nonexistent/x.dcm"));
    ck_assert_ptr_null(img.gray);

    size_t n;
    uint8_t *bytes = read_all(fixture("us_mmode.dcm"), &n);
    ck_assert(mi_dicom_sniff(bytes, n));
    ck_assert(!mi_dicom_sniff(bytes, 131));
    ck_assert(!mi_dicom_sniff(NULL, 0));
    ck_assert_int_eq(mi_dicom_load_memory(&img, bytes, 100, NULL), MI_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "(memory)"));
    free(bytes);
    bytes = read_all(fixture("not_dicom.dcm"), &n);
    ck_assert(!mi_dicom_sniff(bytes, n));
    free(bytes);
}
END_TEST

/* Every prefix of a good file: refused with a message naming it, or (past the pixels) decoded. */
START_TEST(every_truncation_is_refused_cleanly)
{
    size_t n;
    uint8_t *bytes = read_all(fixture("jpeg_baseline.dcm"), &n);
    for (size_t k = 0; k < n; k += 7) {
        uint8_t *cut = malloc(k ? k : 1);  /* its own allocation, so ASan sees any read past k */
        memcpy(cut, bytes, k);
        mi_dicom_image img;
        mi_status st = mi_dicom_load_memory(&img, cut, k, "cut.dcm");
        if (st != MI_OK) {
            ck_assert_msg(strstr(mi_last_error(), "cut.dcm") != NULL, "%zu bytes: %s", k, mi_last_error());
            ck_assert_ptr_null(img.gray);
        }
        mi_dicom_free(&img);
        free(cut);
    }
    free(bytes);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("dicom");
    TCase *tc = tcase_create("dicom");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, mmode_native_exact_with_regions);
    tcase_add_test(tc, monochrome1_16bit_minmax_inverted);
    tcase_add_test(tc, voi_window_16bit);
    tcase_add_test(tc, rgb_to_luma_exact);
    tcase_add_test(tc, lossless_compressed_exact);
    tcase_add_test(tc, jpeg_baseline_within_tolerance);
    tcase_add_test(tc, multiframe_gives_frame0);
    tcase_add_test(tc, refuses_bad_files);
    tcase_add_test(tc, io_errors_and_sniff);
    tcase_add_test(tc, every_truncation_is_refused_cleanly);
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(suite)
