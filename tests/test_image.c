/* tests/test_image.c - pipelines/io: stb_image decoding, the torchvision classifier transform
 * (mi_image_preprocess and mi_preprocess_rgb8, in crop and in squash mode) and .npy, against
 * tests/ref_image.py.
 *
 * Exactness is checked on identical input pixels: PNG/BMP fixtures carry PIL's decode, which stb
 * must reproduce byte for byte; for JPEGs (decoders differ in their last bits) and the real photos
 * in ../shared/data, the pixels stb decoded are dumped as .npy and torchvision is run on those.
 * Tolerance: 0. Our transform equals torch 1.13's scalar CPU kernel bit for bit (measured max
 * |diff| 0 on every fixture and every shared image). Against torch's default AVX2 dispatch, FMA
 * contraction in its resize moves a few resized pixels by one uint8 step, i.e. 1/255/std ~ 0.0175
 * after Normalize; that is bounded and reported by preprocess_vs_torch_dispatch. */
#include "tests/mi_test.h"
#include "pipelines/io/image.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

static const float MEAN[3] = { 0.485f, 0.456f, 0.406f }, STD[3] = { 0.229f, 0.224f, 0.225f };
static const int CONFIGS[][2] = { { 256, 224 }, { 37, 32 }, { 32, 28 }, { 20, 24 }, { 64, 64 }, { 7, 5 }, { 1, 1 } };
enum { NCONFIGS = sizeof CONFIGS / sizeof *CONFIGS };
static const int RESIZES[][2] = { { 17, 29 }, { 80, 11 }, { 3, 3 } };
static const int SQUASH[] = { 224, 64, 45, 24, 7, 1 };   /* tests/ref_image.py SQUASH */
enum { NSQUASH = sizeof SQUASH / sizeof *SQUASH };

static const char *EXACT[] = { "noise_rgb.png", "tall.bmp", "grey.png", "rgba.png", "palette.png",
                               "tiny.png", "wide.png" };
static const char *JPEGS[] = { "photo.jpg", "photo_444.jpg", "progressive.jpg", "grey.jpg" };
enum { NEXACT = sizeof EXACT / sizeof *EXACT, NJPEGS = sizeof JPEGS / sizeof *JPEGS };

static void fixture_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/image/%s", mi_fixtures(), name);
}

/* The pixels tests/ref_image.py decoded with PIL, as an mi_image (px owned by the caller). */
static mi_image fixture_pixels(const mi_weights *ref) {
    const mi_blob_tensor *t = mi_weights_find(ref, "pixels");
    ck_assert_ptr_nonnull(t);
    ck_assert(t->dtype == MI_U8 && t->ndim == 3 && t->shape[2] == 3);
    mi_image img;
    ck_assert_int_eq(mi_image_alloc(&img, (int)t->shape[1], (int)t->shape[0]), MI_OK);
    memcpy(img.px, t->data, (size_t)img.w * img.h * 3);
    return img;
}

static void open_ref(mi_weights *w, const char *image, const char *suffix) {
    char name[256];
    snprintf(name, sizeof name, "image/%s%s.safetensors", image, suffix);
    mi_fixture_open(w, name);
}

START_TEST(decodes_like_pil)
{
    char path[1024];
    for (int i = 0; i < NEXACT + NJPEGS; i++) {
        const char *name = i < NEXACT ? EXACT[i] : JPEGS[i - NEXACT];
        mi_weights ref;
        open_ref(&ref, name, "");
        mi_image pil = fixture_pixels(&ref), img;
        fixture_path(path, sizeof path, name);
        ck_assert_msg(mi_image_load(&img, path) == MI_OK, "%s", mi_last_error());
        ck_assert_int_eq(img.w, pil.w);
        ck_assert_int_eq(img.h, pil.h);
        size_t n = (size_t)img.w * img.h * 3;
        int max = 0;
        double sum = 0;
        for (size_t k = 0; k < n; k++) {
            int d = abs(img.px[k] - pil.px[k]);
            max = d > max ? d : max;
            sum += d;
        }
        if (i < NEXACT)  /* lossless: the file's pixels, whoever decodes them */
            ck_assert_msg(max == 0, "%s: stb_image and PIL differ by up to %d", name, max);
        else {           /* JPEG: IDCT and chroma upsampling differ between stb and libjpeg-turbo */
            printf("%s: stb_image vs PIL (libjpeg-turbo): max |diff| %d, mean %.3f\n", name, max, sum / n);
            ck_assert_msg(max <= 8 && sum / n < 0.5, "%s: stb vs PIL max %d mean %.3f", name, max, sum / n);
        }
        mi_image_free(&img);
        mi_image_free(&pil);
        mi_weights_close(&ref);
    }
}
END_TEST

/* Every fixture (JPEGs too: the input is PIL's decode, stored in the fixture) and every config. */
START_TEST(preprocess_equals_torchvision)
{
    for (int i = 0; i < NEXACT + NJPEGS; i++) {
        const char *name = i < NEXACT ? EXACT[i] : JPEGS[i - NEXACT];
        mi_weights ref;
        open_ref(&ref, name, "");
        mi_image img = fixture_pixels(&ref);
        for (int k = 0; k < NCONFIGS; k++) {
            int resize = CONFIGS[k][0], crop = CONFIGS[k][1];
            char key[64], what[128];
            snprintf(key, sizeof key, "pre_%d_%d", resize, crop);
            snprintf(what, sizeof what, "%s resize %d crop %d", name, resize, crop);
            mi_tensor want = mi_fixture_tensor(&ref, key);
            float *out = malloc((size_t)3 * crop * crop * sizeof *out);
            ck_assert_msg(mi_image_preprocess(&img, resize, crop, MEAN, STD, out) == MI_OK, "%s", mi_last_error());
            mi_assert_close(out, want.data, 3 * crop * crop, 0.0, 0.0, what);
            free(out);
        }
        mi_image_free(&img);
        mi_weights_close(&ref);
    }
}
END_TEST

/* resize_mode squash through the public entry point: a spec as mi_model_preprocess gives it. */
static mi_status squash_rgb8(const mi_image *img, int size, float *out) {
    mi_preprocess_spec p = { .resize = size, .crop = size, .resize_mode = MI_RESIZE_SQUASH };
    memcpy(p.mean, MEAN, sizeof p.mean);
    memcpy(p.std, STD, sizeof p.std);
    return mi_preprocess_rgb8(img->px, img->w, img->h, (size_t)img->w * 3, &p, out);
}

/* resize_mode squash = torchvision Resize((S, S)) -> ToTensor -> Normalize on the same pixels:
 * every fixture (wider, taller, square; grey, RGBA, palette and JPEG sources), each S upscaling,
 * downscaling, or one of each per axis. Tolerance 0, as for the crop path above. */
START_TEST(squash_equals_torchvision)
{
    double max = 0;
    int n = 0;
    for (int i = 0; i < NEXACT + NJPEGS; i++) {
        const char *name = i < NEXACT ? EXACT[i] : JPEGS[i - NEXACT];
        mi_weights ref;
        open_ref(&ref, name, "");
        mi_image img = fixture_pixels(&ref);
        for (int k = 0; k < NSQUASH; k++) {
            const int S = SQUASH[k];
            char key[64], what[128];
            snprintf(key, sizeof key, "squash_%d", S);
            snprintf(what, sizeof what, "%s (%dx%d) squashed to %dx%d", name, img.w, img.h, S, S);
            mi_tensor want = mi_fixture_tensor(&ref, key);
            ck_assert(want.shape[0] == 3 && want.shape[1] == S && want.shape[2] == S);
            float *out = malloc((size_t)3 * S * S * sizeof *out);
            ck_assert_msg(squash_rgb8(&img, S, out) == MI_OK, "%s", mi_last_error());
            double m = mi_assert_close(out, want.data, 3 * S * S, 0.0, 0.0, what);
            max = m > max ? m : max;
            n++;
            free(out);
        }
        mi_image_free(&img);
        mi_weights_close(&ref);
    }
    printf("squash: %d image x size cases equal torchvision Resize((S, S)), max |diff| %g\n", n, max);
}
END_TEST

/* The two modes are different transforms (a squash is not a crop of anything), and a spec that
 * contradicts itself is refused rather than half-applied. */
START_TEST(squash_spec_arguments)
{
    mi_weights ref;
    open_ref(&ref, "noise_rgb.png", "");   /* 53 x 37 */
    mi_image img = fixture_pixels(&ref);
    float sq[3 * 24 * 24], cr[3 * 24 * 24];
    ck_assert_int_eq(squash_rgb8(&img, 24, sq), MI_OK);
    ck_assert_int_eq(mi_image_preprocess(&img, 24, 24, MEAN, STD, cr), MI_OK);
    ck_assert_int_ne(memcmp(sq, cr, sizeof sq), 0);
    mi_preprocess_spec p = { .resize = 27, .crop = 24, .resize_mode = MI_RESIZE_SQUASH };
    memcpy(p.mean, MEAN, sizeof p.mean);
    memcpy(p.std, STD, sizeof p.std);
    ck_assert_int_eq(mi_preprocess_rgb8(img.px, img.w, img.h, (size_t)img.w * 3, &p, sq), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "squash resizes straight to crop 24 x 24, but resize is 27"));
    p.resize = 24;
    p.resize_mode = (mi_resize_mode)7;
    ck_assert_int_eq(mi_preprocess_rgb8(img.px, img.w, img.h, (size_t)img.w * 3, &p, sq), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "resize_mode 7 is neither"));
    /* a spec written before the field existed (designated, zero for the rest) is crop mode */
    mi_preprocess_spec old = { .resize = 24, .crop = 24 };
    memcpy(old.mean, MEAN, sizeof old.mean);
    memcpy(old.std, STD, sizeof old.std);
    ck_assert_int_eq(old.resize_mode, MI_RESIZE_CROP);
    ck_assert_int_eq(mi_preprocess_rgb8(img.px, img.w, img.h, (size_t)img.w * 3, &old, sq), MI_OK);
    ck_assert_int_eq(memcmp(sq, cr, sizeof sq), 0);
    mi_image_free(&img);
    mi_weights_close(&ref);
}
END_TEST

START_TEST(resize_equals_torchvision)
{
    for (int i = 0; i < NEXACT; i++) {
        mi_weights ref;
        open_ref(&ref, EXACT[i], "");
        mi_image img = fixture_pixels(&ref), out;
        for (size_t k = 0; k < sizeof RESIZES / sizeof *RESIZES; k++) {
            int w = RESIZES[k][0], h = RESIZES[k][1];
            char key[64];
            snprintf(key, sizeof key, "resize_%dx%d", w, h);
            const mi_blob_tensor *want = mi_weights_find(&ref, key);
            ck_assert_ptr_nonnull(want);
            ck_assert_int_eq(mi_image_resize_aa(&out, &img, w, h), MI_OK);
            ck_assert_msg(memcmp(out.px, want->data, (size_t)w * h * 3) == 0, "%s %s differs", EXACT[i], key);
            mi_image_free(&out);
        }
        /* the same size: torchvision returns the image itself */
        ck_assert_int_eq(mi_image_resize_aa(&out, &img, img.w, img.h), MI_OK);
        ck_assert_int_eq(memcmp(out.px, img.px, (size_t)img.w * img.h * 3), 0);
        mi_image_free(&out);
        mi_image_free(&img);
        mi_weights_close(&ref);
    }
    int w, h;
    mi_resize_shorter_size(500, 375, 256, &w, &h);   /* int(256 * 500 / 375) = 341 */
    ck_assert(w == 341 && h == 256);
    mi_resize_shorter_size(332, 500, 256, &w, &h);   /* int(256 * 500 / 332) = 385 */
    ck_assert(w == 256 && h == 385);
    mi_resize_shorter_size(7, 7, 3, &w, &h);
    ck_assert(w == 3 && h == 3);
}
END_TEST

/* torch's default dispatch (AVX2 here) fuses some of the resize's multiply-adds: a handful of
 * resized pixels land one uint8 step away, so the bound is one step after Normalize. */
START_TEST(preprocess_vs_torch_dispatch)
{
    const double step = 1.0 / 255.0 / 0.224 + 1e-6;
    long long ndiff = 0, n = 0;
    double max = 0;
    for (int i = 0; i < NEXACT + NJPEGS; i++) {
        const char *name = i < NEXACT ? EXACT[i] : JPEGS[i - NEXACT];
        mi_weights ref, vec;
        open_ref(&ref, name, "");
        open_ref(&vec, name, ".dispatch");
        mi_image img = fixture_pixels(&ref);
        for (int k = 0; k < NCONFIGS; k++) {
            int resize = CONFIGS[k][0], crop = CONFIGS[k][1];
            char key[64];
            snprintf(key, sizeof key, "pre_%d_%d", resize, crop);
            mi_tensor want = mi_fixture_tensor(&vec, key);
            float *out = malloc((size_t)3 * crop * crop * sizeof *out);
            ck_assert_int_eq(mi_image_preprocess(&img, resize, crop, MEAN, STD, out), MI_OK);
            double m = mi_assert_close(out, want.data, 3 * crop * crop, step, 0.0, key);
            max = m > max ? m : max;
            for (int j = 0; j < 3 * crop * crop; j++) ndiff += out[j] != want.data[j];
            n += 3 * crop * crop;
            free(out);
        }
        for (int k = 0; k < NSQUASH; k++) {
            const int S = SQUASH[k];
            char key[64];
            snprintf(key, sizeof key, "squash_%d", S);
            mi_tensor want = mi_fixture_tensor(&vec, key);
            float *out = malloc((size_t)3 * S * S * sizeof *out);
            ck_assert_int_eq(squash_rgb8(&img, S, out), MI_OK);
            double m = mi_assert_close(out, want.data, 3 * S * S, step, 0.0, key);
            max = m > max ? m : max;
            for (int j = 0; j < 3 * S * S; j++) ndiff += out[j] != want.data[j];
            n += 3 * S * S;
            free(out);
        }
        mi_image_free(&img);
        mi_weights_close(&ref);
        mi_weights_close(&vec);
    }
    printf("vs torch default dispatch: %lld of %lld values differ, max |diff| %.6f (one uint8 step "
           "is %.6f)\n", ndiff, n, max, step);
    ck_assert_msg(ndiff * 1000 <= n, "%lld of %lld values differ from torch's dispatch", ndiff, n);
}
END_TEST

/* Decode with stb, dump the pixels, run torchvision on exactly those (ref_image.py --transform),
 * compare. Returns the number of images compared, -1 when Python/torch cannot run. */
static int through_torch(const char *dir, const char *const *files, int nfiles) {
    char tmp[] = "/tmp/mi_test_image_XXXXXX", path[2048], cmd[4096];
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    mi_image *imgs = calloc((size_t)nfiles, sizeof *imgs);
    for (int i = 0; i < nfiles; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        ck_assert_msg(mi_image_load(&imgs[i], path) == MI_OK, "%s", mi_last_error());
        size_t n = (size_t)imgs[i].w * imgs[i].h * 3;
        float *f = malloc(n * sizeof *f);
        for (size_t k = 0; k < n; k++) f[k] = imgs[i].px[k];
        int64_t shape[3] = { imgs[i].h, imgs[i].w, 3 };
        snprintf(path, sizeof path, "%s/img%03d.npy", tmp, i);
        ck_assert_msg(mi_npy_save(path, f, 3, shape) == MI_OK, "%s", mi_last_error());
        free(f);
    }
    const char *py = getenv("PYTHON");
    snprintf(cmd, sizeof cmd, "\"%s\" tests/ref_image.py --transform %s >%s/log 2>&1",
             py && *py ? py : "python3", tmp, tmp);
    int rc = system(cmd);
    int compared = 0;
    for (int i = 0; rc == 0 && i < nfiles; i++) {
        for (int k = 0; k < NCONFIGS; k++) {
            int resize = CONFIGS[k][0], crop = CONFIGS[k][1];
            float *want;
            int nd;
            int64_t sh[5];
            snprintf(path, sizeof path, "%s/img%03d.%d_%d.npy", tmp, i, resize, crop);
            ck_assert_msg(mi_npy_load(path, &want, &nd, sh) == MI_OK, "%s", mi_last_error());
            ck_assert(nd == 3 && sh[0] == 3 && sh[1] == crop && sh[2] == crop);
            float *out = malloc((size_t)3 * crop * crop * sizeof *out);
            ck_assert_msg(mi_image_preprocess(&imgs[i], resize, crop, MEAN, STD, out) == MI_OK, "%s", mi_last_error());
            char what[512];
            snprintf(what, sizeof what, "%s/%s resize %d crop %d", dir, files[i], resize, crop);
            mi_assert_close(out, want, 3 * crop * crop, 0.0, 0.0, what);
            free(out);
            free(want);
        }
        for (int k = 0; k < NSQUASH; k++) {
            const int S = SQUASH[k];
            float *want;
            int nd;
            int64_t sh[5];
            snprintf(path, sizeof path, "%s/img%03d.sq%d.npy", tmp, i, S);
            ck_assert_msg(mi_npy_load(path, &want, &nd, sh) == MI_OK, "%s", mi_last_error());
            ck_assert(nd == 3 && sh[0] == 3 && sh[1] == S && sh[2] == S);
            float *out = malloc((size_t)3 * S * S * sizeof *out);
            ck_assert_msg(squash_rgb8(&imgs[i], S, out) == MI_OK, "%s", mi_last_error());
            char what[512];
            snprintf(what, sizeof what, "%s/%s (%dx%d) squashed to %dx%d", dir, files[i], imgs[i].w, imgs[i].h, S, S);
            mi_assert_close(out, want, 3 * S * S, 0.0, 0.0, what);
            free(out);
            free(want);
        }
        compared++;
    }
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "tail -n 3 %s/log", tmp);
        if (system(cmd)) {}
    }
    for (int i = 0; i < nfiles; i++) mi_image_free(&imgs[i]);
    free(imgs);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd)) {}
    return rc == 0 ? compared : -1;
}

START_TEST(jpeg_pixels_through_torchvision)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/image", mi_fixtures());
    if (through_torch(dir, JPEGS, NJPEGS) < 0) MI_SKIP("cannot run tests/ref_image.py --transform (PyTorch?)");
}
END_TEST

/* Lists the images (.jpeg/.jpg/.png) of a ../shared/data folder; returns how many. */
static int list_images(const char *dir, char names[][256], int max) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls -1 '%s' | grep -iE '\\.(jpe?g|png)$'", dir);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    int n = 0;
    while (n < max && fgets(names[n], 256, p)) {
        names[n][strcspn(names[n], "\n")] = 0;
        n++;
    }
    pclose(p);
    return n;
}

START_TEST(shared_images_through_torchvision)
{
    static const char *sets[] = { "imagenet-samples", "kvasir-v2-onepercls" };
    int total = 0;
    for (int s = 0; s < 2; s++) {
        const char *d = mi_shared_data(sets[s]);
        if (!d) MI_SKIP("../shared/data/%s is absent", sets[s]);
        char dir[1024], names[64][256];
        const char *files[64];
        snprintf(dir, sizeof dir, "%s", d);
        int n = list_images(dir, names, 64);
        ck_assert_int_gt(n, 0);
        for (int i = 0; i < n; i++) files[i] = names[i];
        int got = through_torch(dir, files, n);
        if (got < 0) MI_SKIP("cannot run tests/ref_image.py --transform (PyTorch?)");
        total += got;
    }
    printf("shared data: %d real images equal torchvision's transforms (crop and squash) of the same pixels\n", total);
}
END_TEST

/* Decode + preprocess of the real images without Python: sizes, and values in Normalize's range. */
START_TEST(shared_images_decode)
{
    static const char *sets[] = { "imagenet-samples", "kvasir-v2-onepercls" };
    for (int s = 0; s < 2; s++) {
        const char *d = mi_shared_data(sets[s]);
        if (!d) MI_SKIP("../shared/data/%s is absent", sets[s]);
        char dir[1024], names[64][256], path[1400];
        snprintf(dir, sizeof dir, "%s", d);
        int n = list_images(dir, names, 64);
        static float out[3 * 224 * 224];
        for (int i = 0; i < n; i++) {
            mi_image img;
            snprintf(path, sizeof path, "%.1000s/%.255s", dir, names[i]);
            ck_assert_msg(mi_image_load(&img, path) == MI_OK, "%s", mi_last_error());
            ck_assert(img.w >= 64 && img.h >= 64);
            ck_assert_msg(mi_image_preprocess(&img, 256, 224, MEAN, STD, out) == MI_OK, "%s", mi_last_error());
            for (int k = 0; k < 3 * 224 * 224; k++)
                ck_assert_msg(out[k] >= -2.2f && out[k] <= 2.7f, "%s: value %g at %d", path, out[k], k);
            mi_image_free(&img);
        }
    }
}
END_TEST

START_TEST(bad_images)
{
    static const struct { const char *file; mi_status st; const char *why; } c[] = {
        { "truncated.png", MI_ERR_FORMAT, "cannot decode 53x37 image" },
        { "truncated.jpg", MI_ERR_FORMAT, "JPEG is truncated" },
        { "truncated.bmp", MI_ERR_FORMAT, "BMP is truncated (12075 bytes, its header needs 12082)" },
        { "headers_only.bmp", MI_ERR_FORMAT, "BMP is truncated (100 bytes, its header needs 12082)" },
        { "empty.png", MI_ERR_FORMAT, "empty.png: empty file (0 bytes)" },
        { "text.jpg", MI_ERR_FORMAT, "not an image stb_image can read" },
        { "bad_header.png", MI_ERR_FORMAT, "not an image stb_image can read" },
        { "missing.png", MI_ERR_IO, "cannot open: No such file" },
        { "", MI_ERR_IO, "is a directory, not an image file" },
    };
    char path[1024];
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        mi_image img;
        fixture_path(path, sizeof path, c[i].file);
        mi_status st = mi_image_load(&img, path);
        ck_assert_msg(st == c[i].st, "%s: %s, expected %s (%s)", path, mi_status_name(st),
                      mi_status_name(c[i].st), mi_last_error());
        ck_assert_msg(strncmp(mi_last_error(), path, strlen(path)) == 0, "does not name %s: %s", path, mi_last_error());
        ck_assert_msg(strstr(mi_last_error(), c[i].why), "'%s' lacks '%s'", mi_last_error(), c[i].why);
        ck_assert_ptr_null(img.px);
        mi_image_free(&img);
    }
}
END_TEST

START_TEST(npy_reader)
{
    char path[1024];
    float *d;
    int nd;
    int64_t sh[5];
    static const char *good[] = { "good_v1.npy", "good_v2.npy" };
    for (int i = 0; i < 2; i++) {
        fixture_path(path, sizeof path, good[i]);
        ck_assert_msg(mi_npy_load(path, &d, &nd, sh) == MI_OK, "%s", mi_last_error());
        ck_assert(nd == 3 && sh[0] == 2 && sh[1] == 3 && sh[2] == 4);
        for (int k = 0; k < 24; k++) ck_assert(d[k] == k / 8.0f);
        free(d);
    }
    fixture_path(path, sizeof path, "good_scalar.npy");
    ck_assert_int_eq(mi_npy_load(path, &d, &nd, sh), MI_OK);
    ck_assert(nd == 0 && d[0] == 2.5f);
    free(d);
    fixture_path(path, sizeof path, "good_empty.npy");
    ck_assert_int_eq(mi_npy_load(path, &d, &nd, sh), MI_OK);
    ck_assert(nd == 2 && sh[0] == 0 && sh[1] == 3);
    free(d);

    static const struct { const char *file; const char *why; } bad[] = {
        { "bad_f8.npy", "dtype is '<f8', expected '<f4'" },
        { "bad_big_endian.npy", "dtype is '>f4', expected '<f4'" },
        { "bad_fortran.npy", "Fortran order" },
        { "bad_truncated.npy", "shape [2,3,4] needs 96 data bytes, the file has 91" },
        { "bad_extra.npy", "shape [2,3,4] needs 96 data bytes, the file has 100" },
        { "bad_magic.npy", "not a .npy file" },
        { "bad_version.npy", "format version 7.0" },
        { "bad_hlen.npy", "header length 65535 exceeds" },
        { "bad_tiny.npy", "not a .npy file" },
        { "bad_shape.npy", "'shape' holds something other than integers" },
        { "bad_header.npy", "not a dict with 'descr'" },
        { "missing.npy", "cannot open" },
        { "noise_rgb.png", "not a .npy file" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fixture_path(path, sizeof path, bad[i].file);
        d = (float *)&nd;  /* must come back NULL */
        ck_assert_msg(mi_npy_load(path, &d, &nd, sh) != MI_OK, "%s loaded", path);
        ck_assert_ptr_null(d);
        ck_assert_msg(strncmp(mi_last_error(), path, strlen(path)) == 0, "does not name %s: %s", path, mi_last_error());
        ck_assert_msg(strstr(mi_last_error(), bad[i].why), "'%s' lacks '%s'", mi_last_error(), bad[i].why);
    }

    /* our writer, read back (numpy reads it too: through_torch() hands it these files) */
    char tmp[] = "/tmp/mi_test_npy_XXXXXX";
    int fd = mkstemp(tmp);
    ck_assert_int_ge(fd, 0);
    close(fd);
    float v[6] = { 1, -2, 3.5f, INFINITY, 0, -0.0f };
    int64_t s1[1] = { 6 }, s2[2] = { 2, 3 };
    for (int k = 1; k <= 2; k++) {
        ck_assert_int_eq(mi_npy_save(tmp, v, k, k == 1 ? s1 : s2), MI_OK);
        ck_assert_int_eq(mi_npy_load(tmp, &d, &nd, sh), MI_OK);
        ck_assert_int_eq(nd, k);
        ck_assert_int_eq(memcmp(d, v, sizeof v), 0);
        free(d);
    }
    unlink(tmp);
}
END_TEST

START_TEST(png_roundtrip_and_arguments)
{
    mi_image img, back;
    ck_assert_int_eq(mi_image_alloc(&img, 13, 7), MI_OK);
    for (int k = 0; k < 13 * 7 * 3; k++) img.px[k] = (uint8_t)(k * 37);
    char tmp[] = "/tmp/mi_test_png_XXXXXX";
    int fd = mkstemp(tmp);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(mi_image_write_png(tmp, &img), MI_OK);
    ck_assert_msg(mi_image_load(&back, tmp) == MI_OK, "%s", mi_last_error());
    ck_assert(back.w == 13 && back.h == 7);
    ck_assert_int_eq(memcmp(back.px, img.px, 13 * 7 * 3), 0);
    mi_image_free(&back);
    unlink(tmp);
    ck_assert_int_eq(mi_image_write_png("/nonexistent-dir/x.png", &img), MI_ERR_IO);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "/nonexistent-dir/x.png: cannot write PNG"));

    float out[3 * 4 * 4], bad_std[3] = { 0.2f, 0.0f, 0.2f };
    ck_assert_int_eq(mi_image_preprocess(&img, 0, 4, MEAN, STD, out), MI_ERR_ARG);
    ck_assert_int_eq(mi_image_preprocess(&img, 4, 0, MEAN, STD, out), MI_ERR_ARG);
    ck_assert_int_eq(mi_image_preprocess(&img, 4, 4, MEAN, bad_std, out), MI_ERR_ARG);
    ck_assert_int_eq(mi_image_alloc(&back, 0, 5), MI_ERR_ARG);
    mi_image_free(&img);
    mi_image empty = { 0 };
    ck_assert_int_eq(mi_image_preprocess(&empty, 4, 4, MEAN, STD, out), MI_ERR_ARG);
}
END_TEST

/* The metadata a classifier blob carries drives the transform (tests/ref_bad_blobs.py's good
 * blob: input_size 8, mean 0.5, std 0.25; no 'resize', so round(8 * 256 / 224) = 9); what it
 * leaves out takes torchvision's ImageNet defaults. */
START_TEST(spec_from_blob)
{
    mi_weights w;
    mi_fixture_open(&w, "bad_blobs/ok.safetensors");
    mi_preprocess_spec p;
    ck_assert_msg(mi_preprocess_spec_from_blob(&p, &w) == MI_OK, "%s", mi_last_error());
    ck_assert_int_eq(p.crop, 8);
    ck_assert_int_eq(p.resize, 9);
    ck_assert(p.mean[2] == 0.5f && p.std[0] == 0.25f);
    mi_weights_close(&w);
    mi_fixture_open(&w, "bad_blobs/ok_resnet18.safetensors");   /* input_size 32 -> resize 37 */
    ck_assert_int_eq(mi_preprocess_spec_from_blob(&p, &w), MI_OK);
    ck_assert(p.crop == 32 && p.resize == 37 && p.mean[0] == 0.485f && p.std[2] == 0.225f);
    mi_weights_close(&w);
    ck_assert_int_eq(p.resize_mode, MI_RESIZE_CROP);   /* no 'resize_mode': crop */
    mi_weights_close(&w);
    mi_fixture_open(&w, "weights_basic.safetensors");   /* no input_size: torchvision's 224 / 256 */
    ck_assert_int_eq(mi_preprocess_spec_from_blob(&p, &w), MI_OK);
    ck_assert(p.crop == 224 && p.resize == 256 && p.mean[1] == 0.25f && p.std[0] == 0.229f);
    mi_weights_close(&w);
    /* resize_mode squash: resize is input_size, whether 'resize' is left out or states it */
    static const char *squash[] = { "bad_blobs/ok_squash.safetensors", "bad_blobs/ok_squash_resize.safetensors" };
    for (int i = 0; i < 2; i++) {
        mi_fixture_open(&w, squash[i]);
        ck_assert_msg(mi_preprocess_spec_from_blob(&p, &w) == MI_OK, "%s", mi_last_error());
        ck_assert(p.resize_mode == MI_RESIZE_SQUASH && p.crop == 8 && p.resize == 8);
        mi_weights_close(&w);
    }
    mi_fixture_open(&w, "bad_blobs/ok_crop.safetensors");   /* 'crop' stated: as if absent */
    ck_assert_int_eq(mi_preprocess_spec_from_blob(&p, &w), MI_OK);
    ck_assert(p.resize_mode == MI_RESIZE_CROP && p.crop == 8 && p.resize == 9);
    mi_weights_close(&w);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("image");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);  /* the torchvision runs start Python + torch */
    tcase_add_test(tc, decodes_like_pil);
    tcase_add_test(tc, preprocess_equals_torchvision);
    tcase_add_test(tc, squash_equals_torchvision);
    tcase_add_test(tc, squash_spec_arguments);
    tcase_add_test(tc, resize_equals_torchvision);
    tcase_add_test(tc, preprocess_vs_torch_dispatch);
    tcase_add_test(tc, jpeg_pixels_through_torchvision);
    tcase_add_test(tc, shared_images_through_torchvision);
    tcase_add_test(tc, shared_images_decode);
    tcase_add_test(tc, bad_images);
    tcase_add_test(tc, npy_reader);
    tcase_add_test(tc, png_roundtrip_and_arguments);
    tcase_add_test(tc, spec_from_blob);
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(suite)
