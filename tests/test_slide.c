/* tests/test_slide.c - pipelines/io/slide.c against what openslide-python returns and numpy area
 * averages of it (tests/ref_slide.py writes every fixture, in <fixtures>/slide/).
 *
 * Tolerances. Reads that copy a level (ds equal to the level's downsample) must be byte-exact:
 * the same OpenSlide decode, the same ARGB -> RGB integers. Area-averaged reads may differ from
 * numpy by one level per channel, and rarely: both sum the same float64 products, in a different
 * order, so a value within an ulp of a .5 rounding boundary can round either way (measured counts
 * are printed). Level choice is checked exactly: each level of pyramid.tif holds different noise. */
#include "tests/mi_test.h"
#include "pipelines/io/slide.h"

#include <math.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

static void fixture(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/slide/%s", mi_fixtures(), name); }

static uint8_t *load_raw(const char *name, size_t want) {
    char path[1024];
    fixture(path, sizeof path, name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "fixture %s missing (run tests/ref_slide.py)", path);
    uint8_t *b = malloc(want + 1);
    size_t got = fread(b, 1, want + 1, f);
    fclose(f);
    ck_assert_msg(got == want, "%s: %zu bytes, expected %zu", path, got, want);
    return b;
}

static mi_slide *open_fixture(const char *name) {
    char path[1024];
    fixture(path, sizeof path, name);
    mi_slide *s;
    ck_assert_msg(mi_slide_open(&s, path) == MI_OK, "%s", mi_last_error());
    return s;
}

/* max |a-b| over n bytes; *ndiff gets how many differ */
static int maxdiff(const uint8_t *a, const uint8_t *b, size_t n, size_t *ndiff) {
    int m = 0;
    *ndiff = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs(a[i] - b[i]);
        m = d > m ? d : m;
        *ndiff += d != 0;
    }
    return m;
}

static const char *cmu_path(void) {
    static char path[1024];
    const char *d = mi_shared_data("wsi-he/CMU-1-Small-Region.svs");
    if (!d) return NULL;
    snprintf(path, sizeof path, "%s", d);
    return path;
}

/* the table in tests/ref_slide.py */
static const struct { const char *name; int64_t x0, y0; double ds; int w, h; bool edge; } CMU_CASES[] = {
    { "l0", 1000, 1500, 1.0, 300, 200, false },
    { "ds2", 101, 203, 2.0, 257, 190, false },
    { "ds35", 7, 11, 3.5, 211, 173, false },
    { "edge", 2100, 2900, 1.0, 256, 256, true },
    { "edge_ds3", 2000, 2800, 3.0, 100, 90, true },
    { "neg", -37, -20, 1.0, 100, 80, true },
    { "bands", 0, 0, 8.25, 269, 485, true },  /* read in two bands of output rows */
};

START_TEST(cmu_info)
{
    const char *p = cmu_path();
    if (!p) MI_SKIP("../shared/data/wsi-he/CMU-1-Small-Region.svs absent");
    mi_slide *s;
    ck_assert_msg(mi_slide_open(&s, p) == MI_OK, "%s", mi_last_error());
    const mi_slide_info *in = mi_slide_get_info(s);
    ck_assert(in->w == 2220 && in->h == 2967 && in->levels == 1);
    ck_assert_str_eq(in->vendor, "aperio");
    ck_assert_double_eq_tol(in->mpp_x, 0.499, 1e-12);
    ck_assert_double_eq_tol(in->mpp_y, 0.499, 1e-12);
    ck_assert_str_eq(in->mpp_source, "openslide.mpp-x/-y");
    mi_slide_close(s);
}
END_TEST

START_TEST(cmu_reads_match_openslide_python)
{
    const char *p = cmu_path();
    if (!p) MI_SKIP("../shared/data/wsi-he/CMU-1-Small-Region.svs absent");
    mi_slide *s;
    ck_assert_msg(mi_slide_open(&s, p) == MI_OK, "%s", mi_last_error());
    for (size_t i = 0; i < sizeof CMU_CASES / sizeof *CMU_CASES; i++) {
        size_t n = (size_t)CMU_CASES[i].w * CMU_CASES[i].h * 3;
        char name[64];
        snprintf(name, sizeof name, "cmu_%s.rgb", CMU_CASES[i].name);
        uint8_t *want = load_raw(name, n), *got = malloc(n);
        bool edge = !CMU_CASES[i].edge;
        ck_assert_msg(mi_slide_read(s, CMU_CASES[i].x0, CMU_CASES[i].y0, CMU_CASES[i].ds, CMU_CASES[i].w,
                                    CMU_CASES[i].h, got, &edge) == MI_OK, "%s", mi_last_error());
        ck_assert_msg(edge == CMU_CASES[i].edge, "%s: edge %d", name, edge);
        size_t nd;
        int m = maxdiff(got, want, n, &nd);
        printf("%s: max |diff| %d, %zu of %zu values differ\n", name, m, nd, n);
        if (CMU_CASES[i].ds == 1) ck_assert_msg(m == 0, "%s: not byte-exact (max %d)", name, m);
        else ck_assert_msg(m <= 1 && nd * 1000 <= n, "%s: max %d, %zu differ", name, m, nd);
        free(want);
        free(got);
    }
    /* the part of an edge tile outside the slide is white */
    uint8_t px[64 * 64 * 3];
    bool edge = false;
    ck_assert_int_eq(mi_slide_read(s, 2200, 2950, 1.0, 64, 64, px, &edge), MI_OK);
    ck_assert(edge);
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++)
            if (2200 + x >= 2220 || 2950 + y >= 2967)
                ck_assert(px[(y * 64 + x) * 3] == 255 && px[(y * 64 + x) * 3 + 1] == 255 && px[(y * 64 + x) * 3 + 2] == 255);
    ck_assert_int_eq(mi_slide_read(s, 0, 0, 1.0, 2220, 2967, NULL, NULL), MI_ERR_ARG);  /* no buffer */
    ck_assert_int_eq(mi_slide_read(s, 2156, 2903, 1.0, 64, 64, px, &edge), MI_OK);       /* touches the corner */
    ck_assert(!edge);
    mi_slide_close(s);
}
END_TEST

START_TEST(cmu_thumbnail)
{
    const char *p = cmu_path();
    if (!p) MI_SKIP("../shared/data/wsi-he/CMU-1-Small-Region.svs absent");
    mi_slide *s;
    ck_assert_msg(mi_slide_open(&s, p) == MI_OK, "%s", mi_last_error());
    mi_image t;
    double ds;
    ck_assert_msg(mi_slide_thumbnail(s, 256, &t, &ds) == MI_OK, "%s", mi_last_error());
    ck_assert(t.w == 192 && t.h == 256);
    ck_assert_double_eq(ds, 2967.0 / 256);
    size_t n = (size_t)t.w * t.h * 3, nd;
    uint8_t *want = load_raw("cmu_thumb256.rgb", n);
    int m = maxdiff(t.px, want, n, &nd);
    printf("thumbnail 256: max |diff| %d, %zu of %zu values differ\n", m, nd, n);
    ck_assert_msg(m <= 1 && nd * 1000 <= n, "thumbnail: max %d, %zu differ", m, nd);
    free(want);
    mi_image_free(&t);
    mi_slide_close(s);
}
END_TEST

/* Two threads reading one handle: each gets what a lone read gives. */
typedef struct { mi_slide *s; int64_t x0; uint8_t *px; mi_status st; } job;
static void *read_job(void *arg) {
    job *j = arg;
    for (int k = 0; k < 8 && j->st == MI_OK; k++)
        j->st = mi_slide_read(j->s, j->x0, 300 + 64 * k, 2.0, 128, 128, j->px + (size_t)k * 128 * 128 * 3, NULL);
    return NULL;
}

START_TEST(cmu_concurrent_reads)
{
    const char *p = cmu_path();
    if (!p) MI_SKIP("../shared/data/wsi-he/CMU-1-Small-Region.svs absent");
    mi_slide *s;
    ck_assert_msg(mi_slide_open(&s, p) == MI_OK, "%s", mi_last_error());
    const size_t n = (size_t)8 * 128 * 128 * 3;
    job jobs[2] = { { s, 100, malloc(n), MI_OK }, { s, 900, malloc(n), MI_OK } };
    pthread_t th[2];
    for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, read_job, &jobs[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(jobs[i].st, MI_OK);
        job alone = { s, jobs[i].x0, malloc(n), MI_OK };
        read_job(&alone);
        ck_assert_int_eq(memcmp(alone.px, jobs[i].px, n), 0);
        free(alone.px);
        free(jobs[i].px);
    }
    mi_slide_close(s);
}
END_TEST

START_TEST(pyramid_levels_and_mpp)
{
    mi_slide *s = open_fixture("pyramid.tif");
    const mi_slide_info *in = mi_slide_get_info(s);
    ck_assert_str_eq(in->vendor, "generic-tiff");
    ck_assert(in->levels == 3 && in->w == 800 && in->h == 600);
    for (int k = 0; k < 3; k++)
        ck_assert(in->level_w[k] == 800 >> k && in->level_h[k] == 600 >> k && in->level_ds[k] == (double)(1 << k));
    ck_assert_double_eq_tol(in->mpp_x, 0.5, 1e-12);  /* 20000 px per centimeter */
    ck_assert_double_eq_tol(in->mpp_y, 0.5, 1e-12);
    ck_assert_str_eq(in->mpp_source, "tiff.XResolution/YResolution per centimeter");

    /* level choice: the coarsest level at or below ds, within 1e-3 */
    static const struct { double ds; int level; } choice[] = {
        { 0.5, 0 }, { 1, 0 }, { 1.99, 0 }, { 1.999, 1 }, { 2, 1 }, { 3.9, 1 }, { 4, 2 }, { 100, 2 } };
    for (size_t i = 0; i < sizeof choice / sizeof *choice; i++)
        ck_assert_msg(mi_slide_level_for_ds(s, choice[i].ds) == choice[i].level, "ds %g", choice[i].ds);

    /* ds equal to a level's downsample: that level's pixels, exactly */
    for (int k = 0; k < 3; k++) {
        char name[32];
        snprintf(name, sizeof name, "pyramid_l%d.rgb", k);
        int lw = 800 >> k, lh = 600 >> k;
        uint8_t *lv = load_raw(name, (size_t)lw * lh * 3), got[40 * 30 * 3];
        const int lx = 17, ly = 9;  /* level coordinates */
        ck_assert_int_eq(mi_slide_read(s, (int64_t)lx << k, (int64_t)ly << k, (double)(1 << k), 40, 30, got, NULL), MI_OK);
        for (int y = 0; y < 30; y++)
            ck_assert_msg(memcmp(got + y * 40 * 3, lv + ((size_t)(ly + y) * lw + lx) * 3, 40 * 3) == 0, "level %d row %d", k, y);
        free(lv);
    }
    /* ds 3 from level 1 (r = 1.5): 2x2 output from 3x3 level-1 pixels, weights 1, 0.5 */
    uint8_t *l1 = load_raw("pyramid_l1.rgb", 400 * 300 * 3), got[2 * 2 * 3];
    ck_assert_int_eq(mi_slide_read(s, 40, 20, 3.0, 2, 2, got, NULL), MI_OK);  /* level-1 origin (20, 10) */
    for (int oy = 0; oy < 2; oy++)
        for (int ox = 0; ox < 2; ox++)
            for (int c = 0; c < 3; c++) {
                double sum = 0;
                for (int j = 0; j < 3; j++)
                    for (int i = 0; i < 3; i++) {
                        double wy = (oy == 0) ? (j == 0 ? 1 : j == 1 ? 0.5 : 0) : (j == 1 ? 0.5 : j == 2 ? 1 : 0);
                        double wx = (ox == 0) ? (i == 0 ? 1 : i == 1 ? 0.5 : 0) : (i == 1 ? 0.5 : i == 2 ? 1 : 0);
                        sum += wy * wx * l1[((size_t)(10 + j) * 400 + 20 + i) * 3 + c];
                    }
                int want = (int)floor(sum / 2.25 + 0.5);
                ck_assert_msg(got[(oy * 2 + ox) * 3 + c] == want, "(%d,%d,%d): %d vs %d", ox, oy, c,
                              got[(oy * 2 + ox) * 3 + c], want);
            }
    free(l1);
    /* thumbnail of longer side 200: level 2 is exactly that, so a copy of it */
    mi_image t;
    double ds;
    ck_assert_int_eq(mi_slide_thumbnail(s, 200, &t, &ds), MI_OK);
    ck_assert(t.w == 200 && t.h == 150 && ds == 4);
    uint8_t *l2 = load_raw("pyramid_l2.rgb", 200 * 150 * 3);
    ck_assert_int_eq(memcmp(t.px, l2, 200 * 150 * 3), 0);
    mi_image_free(&t);
    free(l2);
    /* 150: still from level 2 (the coarsest with >= 150 px on its longer side) */
    ck_assert_int_eq(mi_slide_thumbnail(s, 150, &t, &ds), MI_OK);
    ck_assert(t.w == 150 && t.h == 113 && fabs(ds - 800.0 / 150) < 1e-12);
    mi_image_free(&t);
    mi_slide_close(s);

    s = open_fixture("vips_inch.tif");
    in = mi_slide_get_info(s);
    ck_assert(in->levels == 4 && in->level_ds[3] == 8);
    ck_assert_double_eq_tol(in->mpp_x, 0.5, 1e-12);  /* 50800 px per inch */
    ck_assert_str_eq(in->mpp_source, "tiff.XResolution/YResolution per inch");
    mi_slide_close(s);

    s = open_fixture("nores.tif");
    in = mi_slide_get_info(s);
    ck_assert(in->mpp_x == 0 && in->mpp_y == 0);
    ck_assert_msg(strstr(in->mpp_source, "'none'") != NULL, "%s", in->mpp_source);
    mi_slide_close(s);
}
END_TEST

START_TEST(png_is_one_level)
{
    mi_slide *s = open_fixture("small.png");
    const mi_slide_info *in = mi_slide_get_info(s);
    ck_assert(in->w == 97 && in->h == 61 && in->levels == 1 && in->mpp_x == 0 && in->mpp_y == 0);
    ck_assert_str_eq(in->vendor, "png");
    char path[1024];
    fixture(path, sizeof path, "small.png");
    mi_image img;
    ck_assert_int_eq(mi_image_load(&img, path), MI_OK);
    uint8_t got[100 * 64 * 3];
    bool edge;
    ck_assert_int_eq(mi_slide_read(s, 0, 0, 1.0, 97, 61, got, &edge), MI_OK);
    ck_assert(!edge);
    ck_assert_int_eq(memcmp(got, img.px, 97 * 61 * 3), 0);
    /* ds 2 at (-1, 3): a 2x2 box mean, the first column half outside (white) */
    ck_assert_int_eq(mi_slide_read(s, -1, 3, 2.0, 50, 30, got, &edge), MI_OK);
    ck_assert(edge);
    for (int oy = 0; oy < 30; oy++)
        for (int ox = 0; ox < 50; ox++)
            for (int c = 0; c < 3; c++) {
                int sum = 0;
                for (int j = 0; j < 2; j++)
                    for (int i = 0; i < 2; i++) {
                        int x = -1 + 2 * ox + i, y = 3 + 2 * oy + j;
                        sum += x < 0 || x >= 97 || y >= 61 ? 255 : img.px[((size_t)y * 97 + x) * 3 + c];
                    }
                ck_assert_int_eq(got[(oy * 50 + ox) * 3 + c], (sum * 2 + 4) / 8);  /* half up */
            }
    mi_image t;
    double ds;
    ck_assert_int_eq(mi_slide_thumbnail(s, 1000, &t, &ds), MI_OK);  /* never enlarged */
    ck_assert(t.w == 97 && t.h == 61 && ds == 1 && !memcmp(t.px, img.px, 97 * 61 * 3));
    mi_image_free(&t);
    mi_image_free(&img);
    mi_slide_close(s);
}
END_TEST

START_TEST(argb_conversion_equals_openslide_python)
{
    uint8_t *argb = load_raw("argb.bin", 65536 * 4), *want = load_raw("argb_rgb.bin", 65536 * 3);
    uint32_t *v = malloc(65536 * 4);
    for (int i = 0; i < 65536; i++)  /* the file is little-endian uint32 */
        v[i] = argb[4 * i] | argb[4 * i + 1] << 8 | argb[4 * i + 2] << 16 | (uint32_t)argb[4 * i + 3] << 24;
    uint8_t *rgb = malloc(65536 * 3);
    mi_slide_argb_to_rgb(rgb, v, 65536);
    ck_assert_int_eq(memcmp(rgb, want, 65536 * 3), 0);
    mi_slide_argb_to_rgb((uint8_t *)v, v, 65536);  /* in place */
    ck_assert_int_eq(memcmp(v, want, 65536 * 3), 0);
    free(argb);
    free(want);
    free(v);
    free(rgb);
}
END_TEST

static void expect_open_error(const char *path, const char *what) {
    mi_slide *s = (mi_slide *)&s;
    mi_status st = mi_slide_open(&s, path);
    ck_assert_msg(st != MI_OK && s == NULL, "%s opened", path);
    ck_assert_msg(strstr(mi_last_error(), path) && (!what || strstr(mi_last_error(), what)), "%s: '%s'", path,
                  mi_last_error());
    printf("%s\n", mi_last_error());
}

START_TEST(bad_files)
{
    char path[1024];
    expect_open_error("/nonexistent/slide.svs", "No such file");
    fixture(path, sizeof path, "text.svs");
    expect_open_error(path, "not a slide OpenSlide reads");
    fixture(path, sizeof path, "");
    expect_open_error(path, "directory");
    /* a tile that does not decode: OpenSlide's message, with the file's name; other tiles of the
     * handle fail from then on too (OpenSlide keeps the error), which the header says */
    mi_slide *s = open_fixture("bad_tile.tif");
    uint8_t px[8 * 8 * 3];
    ck_assert_int_eq(mi_slide_read(s, 300, 300, 1.0, 8, 8, px, NULL), MI_OK);
    ck_assert_int_eq(mi_slide_read(s, 0, 0, 1.0, 8, 8, px, NULL), MI_ERR_FORMAT);
    ck_assert_msg(strstr(mi_last_error(), "bad_tile.tif") && strstr(mi_last_error(), "OpenSlide cannot read"), "%s",
                  mi_last_error());
    printf("%s\n", mi_last_error());
    ck_assert_int_eq(mi_slide_read(s, 300, 300, 1.0, 8, 8, px, NULL), MI_ERR_FORMAT);
    mi_slide_close(s);
    const char *p = cmu_path();
    if (!p) MI_SKIP("../shared/data/wsi-he/CMU-1-Small-Region.svs absent: no truncated SVS");
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    static uint8_t head[1 << 20];
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    ck_assert(n == sizeof head);
    /* the SVS's first directory is at 1 275 950, after level 0's tiles: every cut loses it, and
     * pipelines/io/tiffcheck.c says so before OpenSlide is asked */
    char tmp[] = "/tmp/mi_test_slide_XXXXXX";
    for (size_t cut = 64; cut <= n; cut *= 16) {
        int fd = mkstemp(tmp);
        ck_assert(fd >= 0 && write(fd, head, cut) == (ssize_t)cut);
        close(fd);
        char want[96];
        snprintf(want, sizeof want, "TIFF directory 0 is at offset 1275950, outside the %zu-byte file", cut);
        expect_open_error(tmp, want);
        unlink(tmp);
        strcpy(tmp, "/tmp/mi_test_slide_XXXXXX");
    }
}
END_TEST

/* TIFFs that claim more than they hold (tests/ref_slide.py claims()): refused by
 * pipelines/io/tiffcheck.c before openslide_open sees them, so OpenSlide never allocates what they
 * claim (the 9.97 GB of claim_value_count.tif is what its open asked malloc for). Each message
 * names the file, the directory, the entry or tile and the numbers. */
START_TEST(tiff_claims_refused_before_openslide)
{
    static const struct { const char *name, *want[3]; } cases[] = {
        { "claim_value_count.tif", { "TIFF directory 0, tag 283", "1246451966 values of type 5",
                                     "claim 9971615728 bytes (9.3 GiB), more than the 9700-byte file" } },
        { "claim_tile_bytes.tif", { "tile 3 of TIFF directory 0 claims 4026531840 bytes (3.8 GiB) at offset",
                                    "-byte file", "at most 256 MiB per tile" } },
        { "claim_tile_bytes_big.tif", { "tile 3 of TIFF directory 0 claims 9663676416 bytes (9.0 GiB)",
                                        "at most 256 MiB per tile", NULL } },
        { "claim_past_end.tif", { "tile 5 of TIFF directory 0 claims 100000 bytes at offset", "-byte file", NULL } },
        { "claim_tile_side.tif", { "TIFF directory 0 has 65552x16-pixel tiles, expected at most 8192 per side",
                                   NULL, NULL } },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[1024];
        fixture(path, sizeof path, cases[i].name);
        mi_slide *s = (mi_slide *)&s;
        ck_assert_msg(mi_slide_open(&s, path) == MI_ERR_FORMAT && s == NULL, "%s: %s", path, mi_last_error());
        ck_assert_msg(strstr(mi_last_error(), path), "%s", mi_last_error());
        for (int k = 0; k < 3 && cases[i].want[k]; k++)
            ck_assert_msg(strstr(mi_last_error(), cases[i].want[k]), "'%s' lacks '%s'", mi_last_error(), cases[i].want[k]);
        ck_assert_msg(strstr(mi_last_error_where(), "tiffcheck.c"), "%s: refused at %s", path, mi_last_error_where());
        printf("%s\n", mi_last_error());
    }
}
END_TEST

START_TEST(bad_arguments)
{
    mi_slide *s = open_fixture("pyramid.tif");
    uint8_t px[16 * 3];
    const double bad_ds[] = { 0, -1, NAN, INFINITY, 1e-9, 1e9 };
    for (size_t i = 0; i < sizeof bad_ds / sizeof *bad_ds; i++) {
        ck_assert_int_eq(mi_slide_read(s, 0, 0, bad_ds[i], 4, 4, px, NULL), MI_ERR_ARG);
        ck_assert_msg(strstr(mi_last_error(), "pyramid.tif") && strstr(mi_last_error(), "downsample"), "%s", mi_last_error());
    }
    const int bad_size[][2] = { { 0, 4 }, { 4, 0 }, { -1, 4 }, { 1 << 16, 1 }, { 8192, 8192 } };
    for (size_t i = 0; i < sizeof bad_size / sizeof *bad_size; i++)
        ck_assert_int_eq(mi_slide_read(s, 0, 0, 1, bad_size[i][0], bad_size[i][1], px, NULL), MI_ERR_ARG);
    ck_assert_int_eq(mi_slide_read(s, INT64_MIN, 0, 1, 4, 4, px, NULL), MI_ERR_ARG);
    ck_assert_int_eq(mi_slide_read(s, 0, (int64_t)1 << 50, 1, 4, 4, px, NULL), MI_ERR_ARG);
    /* one output row needing more level pixels than a read may hold */
    ck_assert_int_eq(mi_slide_read(s, 0, 0, 4096, 4096, 1, px, NULL), MI_ERR_ARG);
    ck_assert_msg(strstr(mi_last_error(), "per output row"), "%s", mi_last_error());
    /* far outside: white, flagged */
    bool edge = false;
    ck_assert_int_eq(mi_slide_read(s, -100000, 5, 2.0, 4, 4, px, &edge), MI_OK);
    ck_assert(edge && px[0] == 255 && px[47] == 255);
    mi_image t;
    ck_assert_int_eq(mi_slide_thumbnail(s, 0, &t, NULL), MI_ERR_ARG);
    ck_assert_int_eq(mi_slide_thumbnail(s, MI_SLIDE_MAX_THUMB + 1, &t, NULL), MI_ERR_ARG);
    mi_slide_close(s);
    mi_slide_close(NULL);
}
END_TEST

START_TEST(mpp_parsing)
{
    double x, y;
    char src[192];
    ck_assert_int_eq(mi_slide_parse_mpp("0.499", "0.5", NULL, NULL, NULL, &x, &y, src, sizeof src), MI_OK);
    ck_assert(x == 0.499 && y == 0.5);
    ck_assert_int_eq(mi_slide_parse_mpp(NULL, NULL, "20000", "10000", "centimeter", &x, &y, NULL, 0), MI_OK);
    ck_assert(x == 0.5 && y == 1.0);
    ck_assert_int_eq(mi_slide_parse_mpp(NULL, NULL, "50800", "50800", "inch", &x, &y, NULL, 0), MI_OK);
    ck_assert(x == 0.5 && y == 0.5);
    /* absent, or a unit that says nothing about length: unknown, not an error */
    ck_assert_int_eq(mi_slide_parse_mpp(NULL, NULL, NULL, NULL, NULL, &x, &y, src, sizeof src), MI_OK);
    ck_assert(x == 0 && y == 0);
    ck_assert_int_eq(mi_slide_parse_mpp(NULL, NULL, "1", "1", "none", &x, &y, src, sizeof src), MI_OK);
    ck_assert(x == 0 && y == 0);
    /* present but wrong: an error naming the property; mpp stays 0 */
    const char *bad[] = { "", "abc", "-0.5", "0", "nan", "inf", "0x1p-1", " 0.5", "0.5 ", "0.5um", "1e400",
                          "1e-400", "1000", "0.001", "0,5" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_msg(mi_slide_parse_mpp(bad[i], "0.5", NULL, NULL, NULL, &x, &y, src, sizeof src) == MI_ERR_FORMAT,
                      "'%s' accepted", bad[i]);
        ck_assert(x == 0 && y == 0 && strstr(mi_last_error(), "openslide.mpp-x"));
    }
    ck_assert_int_eq(mi_slide_parse_mpp("0.5", NULL, NULL, NULL, NULL, &x, &y, NULL, 0), MI_ERR_FORMAT);
    ck_assert_int_eq(mi_slide_parse_mpp(NULL, NULL, "20000", "abc", "centimeter", &x, &y, NULL, 0), MI_ERR_FORMAT);
    ck_assert_int_eq(mi_slide_parse_mpp(NULL, NULL, "1", "1", "centimeter", &x, &y, NULL, 0), MI_ERR_FORMAT);  /* 1 cm/px */
    ck_assert(strstr(mi_last_error(), "tiff.XResolution"));
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("slide");
    TCase *tc = tcase_create("slide");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, cmu_info);
    tcase_add_test(tc, cmu_reads_match_openslide_python);
    tcase_add_test(tc, cmu_thumbnail);
    tcase_add_test(tc, cmu_concurrent_reads);
    tcase_add_test(tc, pyramid_levels_and_mpp);
    tcase_add_test(tc, png_is_one_level);
    tcase_add_test(tc, argb_conversion_equals_openslide_python);
    tcase_add_test(tc, bad_files);
    tcase_add_test(tc, tiff_claims_refused_before_openslide);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, mpp_parsing);
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(suite)
