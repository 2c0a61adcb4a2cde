/* tests/test_parsers.c - the in-memory entry points of the parsers of outside bytes (the ones
 * fuzz/ drives): each gives what its file counterpart gives for the same bytes and names the
 * input by the name it is given; and the bugs fuzzing found, each pinned by a small input
 * (the inputs that found them are in fuzz/corpus/, replayed by tests/test_fuzz_replay.sh). */
#include "tests/mi_test.h"
#include "pipelines/assist/store.h"
#include "pipelines/io/image.h"
#include "pipelines/trust/trust_internal.h"

#include <ftw.h>
#include <sqlite3.h>
#include <stb/stb_image_write.h>
#include <string.h>
#include <unistd.h>

static char tmp[64];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb, (void)flag, (void)f;
    return remove(p);
}
static void setup(void) {
    snprintf(tmp, sizeof tmp, "/tmp/mi_parsers_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
}
static void teardown(void) { nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* The whole file, malloc'd with exactly its size. */
static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = malloc(*n ? *n : 1);
    ck_assert_uint_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

START_TEST(npy_memory_equals_file)
{
    char path[128];
    snprintf(path, sizeof path, "%s/x.npy", tmp);
    const float x[6] = { 1, -2, 3.5f, 0, 1e-3f, -7 };
    const int64_t shape[2] = { 2, 3 };
    ck_assert_int_eq(mi_npy_save(path, x, 2, shape), MI_OK);
    size_t n;
    unsigned char *b = slurp(path, &n);
    float *a, *m;
    int nda, ndm;
    int64_t sa[5], sm[5];
    ck_assert_int_eq(mi_npy_load(path, &a, &nda, sa), MI_OK);
    ck_assert_int_eq(mi_npy_load_memory(b, n, "x.npy", &m, &ndm, sm), MI_OK);
    ck_assert_int_eq(nda, 2);
    ck_assert_int_eq(ndm, 2);
    ck_assert(sm[0] == 2 && sm[1] == 3 && sa[0] == 2 && sa[1] == 3);
    ck_assert_int_eq(memcmp(a, x, sizeof x), 0);
    ck_assert_int_eq(memcmp(m, x, sizeof x), 0);
    free(a);
    free(m);
    /* one data byte short: refused by both with the same reason, each naming its input */
    ck_assert_int_eq(mi_npy_load_memory(b, n - 1, "cut.npy", &m, &ndm, sm), MI_ERR_FORMAT);
    ck_assert_ptr_null(m);
    ck_assert_int_eq(ndm, 0);
    ck_assert_str_eq(mi_last_error(), "cut.npy: .npy shape [2,3] needs 24 data bytes, the file has 23");
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n - 1, f);
    fclose(f);
    ck_assert_int_eq(mi_npy_load(path, &a, &nda, sa), MI_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "x.npy: .npy shape [2,3] needs 24 data bytes, the file has 23"));
    /* a version 2 preamble cut inside its 4-byte header length */
    ck_assert_int_eq(mi_npy_load_memory("\x93NUMPY\x02\x00\x10\x00\x00", 11, NULL, &m, &ndm, sm), MI_ERR_FORMAT);
    ck_assert_str_eq(mi_last_error(), "(memory): .npy file ends inside its preamble");
    free(b);
}
END_TEST

START_TEST(image_memory_equals_file)
{
    char png[128], jpg[128];
    snprintf(png, sizeof png, "%s/x.png", tmp);
    snprintf(jpg, sizeof jpg, "%s/x.jpg", tmp);
    mi_image src, a, m;
    ck_assert_int_eq(mi_image_alloc(&src, 7, 5), MI_OK);
    for (int i = 0; i < 7 * 5 * 3; i++) src.px[i] = (uint8_t)(i * 37);
    ck_assert_int_eq(mi_image_write_png(png, &src), MI_OK);
    ck_assert(stbi_write_jpg(jpg, 7, 5, 3, src.px, 90));
    for (int k = 0; k < 2; k++) {
        const char *path = k ? jpg : png;
        size_t n;
        unsigned char *b = slurp(path, &n);
        int w, h;
        ck_assert_int_eq(mi_image_info_memory(b, n, "x", &w, &h), MI_OK);
        ck_assert(w == 7 && h == 5);
        ck_assert_int_eq(mi_image_load(&a, path), MI_OK);
        ck_assert_int_eq(mi_image_load_memory(&m, b, n, "x"), MI_OK);
        ck_assert(a.w == 7 && a.h == 5 && m.w == 7 && m.h == 5);
        ck_assert_int_eq(memcmp(a.px, m.px, 7 * 5 * 3), 0);
        if (!k) ck_assert_int_eq(memcmp(m.px, src.px, 7 * 5 * 3), 0);  /* PNG is lossless */
        mi_image_free(&a);
        mi_image_free(&m);
        free(b);
    }
    mi_image_free(&src);
    ck_assert_int_eq(mi_image_load_memory(&m, "", 0, "empty.png"), MI_ERR_FORMAT);
    ck_assert_str_eq(mi_last_error(), "empty.png: 0 bytes is not the size of an image we decode");
}
END_TEST

/* A PNG header claiming w x h pixels (stb_image reads the size without the data). */
static size_t png_header(unsigned char *b, uint32_t w, uint32_t h) {
    static const unsigned char sig[16] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R' };
    memcpy(b, sig, 16);
    for (int i = 0; i < 4; i++) {
        b[16 + i] = (unsigned char)(w >> (24 - 8 * i));
        b[20 + i] = (unsigned char)(h >> (24 - 8 * i));
    }
    const unsigned char rest[9] = { 8, 0, 0, 0, 0, 0, 0, 0, 0 };  /* 8-bit grey, CRC unchecked */
    memcpy(b + 24, rest, 9);
    return 33;
}

/* Sizes are refused from the header, before stb_image allocates the image. */
START_TEST(image_size_bounds)
{
    unsigned char b[64];
    mi_image img;
    int w, h;
    size_t n = png_header(b, 40000, 20);
    ck_assert_int_eq(mi_image_load_memory(&img, b, n, "wide.png"), MI_ERR_UNSUPPORTED);
    ck_assert_str_eq(mi_last_error(), "wide.png: 40000x20 pixels, at most 32768x32768 and 268435456 pixels supported");
    ck_assert_ptr_null(img.px);
    n = png_header(b, 20000, 20000);
    ck_assert_int_eq(mi_image_info_memory(b, n, "big.png", &w, &h), MI_ERR_UNSUPPORTED);
    n = png_header(b, 32768, 8192);  /* on both bounds: passes the header checks */
    ck_assert_int_eq(mi_image_info_memory(b, n, "edge.png", &w, &h), MI_OK);
    ck_assert(w == 32768 && h == 8192);
}
END_TEST

/* stb_image 2.27 writes past its Huffman table for a DHT segment whose 16 code counts add up to
 * more than 256, and decodes scans with tables never defined (found by fuzz_image: out-of-bounds
 * write in stbi_info and in decoding; its assertion aborting the process). Refused before stb
 * reads them: in the header, after fill bytes, in a second table of a segment, between scans. */
START_TEST(jpeg_huffman_tables)
{
    unsigned char b[600] = { 0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x13, 0x00, 0xFF, 0xFF };  /* 510 codes */
    mi_image img;
    int w, h;
    ck_assert_int_eq(mi_image_info_memory(b, 19, "dht.jpg", &w, &h), MI_ERR_FORMAT);
    ck_assert_str_eq(mi_last_error(), "dht.jpg: JPEG is corrupt (a Huffman table with more than 256 codes)");
    ck_assert_int_eq(mi_image_load_memory(&img, b, sizeof b, "dht.jpg"), MI_ERR_FORMAT);
    const unsigned char two[] = { 0xFF, 0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x26, 0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                  0, 0, 0, 0, 0, 0, 0x05, 0x10, 0x80, 0x81 };
    ck_assert_int_eq(mi_image_info_memory(two, sizeof two, "two.jpg", &w, &h), MI_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "more than 256 codes"));
    /* DC and AC table 0 with one code each, a scan using them, scan data holding FF 00, then a
       bad table (the FF C4 in the APP0 body is skipped with the segment, as stb skips it) */
    const unsigned char scan[] = { 0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x06, 0xFF, 0xC4, 0x00, 0x00,
                                   0xFF, 0xC4, 0x00, 0x26, 0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                   0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                   0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00,
                                   0x12, 0xFF, 0x00, 0x34, 0xFF, 0xC4, 0x00, 0x13, 0x10, 0x80, 0x80, 0x80 };
    ck_assert_int_eq(mi_image_info_memory(scan, sizeof scan - 8, "scan.jpg", &w, &h), MI_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "scan.jpg: not an image stb_image can read"));  /* passed ours */
    ck_assert_int_eq(mi_image_info_memory(scan, sizeof scan, "scan.jpg", &w, &h), MI_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "more than 256 codes"));
    /* a scan naming AC table 1, which no DHT defined */
    unsigned char undef[sizeof scan - 8];
    memcpy(undef, scan, sizeof undef);
    undef[56] = 0x01;  /* the scan's table selector byte */
    ck_assert_int_eq(mi_image_info_memory(undef, sizeof undef, "undef.jpg", &w, &h), MI_ERR_FORMAT);
    ck_assert_str_eq(mi_last_error(), "undef.jpg: JPEG is corrupt (a scan uses a Huffman table the file has not defined)");
}
END_TEST

/* stb_image sizes a PNG's data buffer by the IDAT lengths the file declares before reading them:
 * a 300-byte file declaring a 2 GB chunk cost a 2 GB allocation (found by fuzz_image). Every
 * chunk up to IEND must lie in the file; IEND's own CRC may be missing, as stb accepts. */
START_TEST(png_chunk_lengths)
{
    char path[128];
    snprintf(path, sizeof path, "%s/x.png", tmp);
    mi_image src, img;
    ck_assert_int_eq(mi_image_alloc(&src, 9, 4), MI_OK);
    ck_assert_int_eq(mi_image_write_png(path, &src), MI_OK);
    mi_image_free(&src);
    size_t n;
    unsigned char *b = slurp(path, &n);
    size_t idat = 8;
    while (memcmp(b + idat + 4, "IDAT", 4)) idat += 12 + ((size_t)b[idat] << 24 | b[idat + 1] << 16 | b[idat + 2] << 8 | b[idat + 3]);
    ck_assert_int_eq(mi_image_load_memory(&img, b, n - 4, "no-iend-crc.png"), MI_OK);
    mi_image_free(&img);
    ck_assert_int_eq(mi_image_load_memory(&img, b, n - 13, "cut.png"), MI_ERR_FORMAT);  /* IDAT's CRC missing */
    char want[160];
    snprintf(want, sizeof want, "cut.png: cannot decode 9x4 image: PNG is truncated (the chunk at byte %zu declares", idat);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), want));
    b[idat] = 0x7E;  /* declares 2 GB */
    ck_assert_int_eq(mi_image_load_memory(&img, b, n, "big.png"), MI_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "PNG is truncated"));
    free(b);
}
END_TEST

/* Only PNG, JPEG and BMP reach stb_image: its PNM reader (like the others) in stb 2.27 has faults,
 * e.g. a signed overflow reading a header width of 2222222222222222 (found by fuzz_image). */
START_TEST(image_formats_we_take)
{
    static const struct { const char *bytes; size_t n; } other[] = {
        { "P62222222222222222 1 255\n", 25 },                   /* PNM */
        { "GIF89a\x01\x00\x01\x00\x00\x00\x00;", 14 },     /* GIF */
        { "\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01\x00\x18\x00\x01\x02\x03", 21 },  /* TGA */
        { "8BPS\x00\x01", 6 },                                     /* PSD */
    };
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        int w, h;
        mi_image img;
        ck_assert_int_eq(mi_image_info_memory(other[i].bytes, other[i].n, "x", &w, &h), MI_ERR_FORMAT);
        ck_assert_str_eq(mi_last_error(), "x: not an image stb_image can read (not PNG, JPEG or BMP)");
        ck_assert_int_eq(mi_image_load_memory(&img, other[i].bytes, other[i].n, "x"), MI_ERR_FORMAT);
    }
}
END_TEST

#define MANIFEST "{\"format\": \"medinfer-manifest-v1\", \"model\": \"sites\", \"model_version\": \"2026.11.3\"," \
    " \"released\": \"2026-11-20\", \"blob_url\": \"../b/m.safetensors\", \"size\": 123," \
    " \"sha256\": \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"," \
    " \"key_id\": \"0123456789abcdef\", \"signature\": \"" \
    "abababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababab" \
    "\", \"hardware\": [\"0A1B-2C3D-4E5F-6A7B\"]}"

/* The manifest parser reads exactly n bytes (no NUL terminator needed) and nothing else may
 * follow the object: a NUL or a second document means the body is not the manifest. */
START_TEST(manifest_from_bytes)
{
    const char *url = "https://u.example/models/manifest.json";
    char text[sizeof MANIFEST + 16];
    size_t n = strlen(MANIFEST);
    memcpy(text, MANIFEST "{\"x\": 1}", n + 8);  /* a second object after n, not terminated */
    mi_manifest m;
    ck_assert_int_eq(mi_manifest_parse(&m, text, n, url), MI_OK);
    ck_assert_str_eq(m.sig.model_version, "2026.11.3");
    ck_assert_int_eq(m.size, 123);
    char blob[256];
    ck_assert_int_eq(mi_manifest_blob_url(url, m.blob_url, blob, sizeof blob), MI_OK);
    ck_assert_str_eq(blob, "https://u.example/b/m.safetensors");
    mi_manifest_free(&m);
    memcpy(text + n, " \r\n\t", 4);
    ck_assert_int_eq(mi_manifest_parse(&m, text, n + 4, url), MI_OK);
    mi_manifest_free(&m);
    memcpy(text + n, "\n{\"x\": 1}", 9);
    ck_assert_int_eq(mi_manifest_parse(&m, text, n + 9, url), MI_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "manifest https://u.example/models/manifest.json: bytes after the JSON object"));
    mi_manifest_free(&m);
    text[n] = 0;
    ck_assert_int_eq(mi_manifest_parse(&m, text, n + 1, url), MI_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), ": NUL byte at byte"));
    mi_manifest_free(&m);
}
END_TEST

/* The audit verifier on the DB's bytes gives the file's verdict, reads the bytes in place
 * without changing them, and finds an edit made to them. */
START_TEST(audit_verify_memory_equals_file)
{
    char db[128];
    snprintf(db, sizeof db, "%s/a.db", tmp);
    mi_audit_row row = { .command = "classify", .input_sha256 = "ab", .result_json = "{\"label\":\"polyp\"}" };
    for (int i = 0; i < 3; i++) ck_assert_int_eq(mi_audit_append(db, &row), MI_OK);
    size_t n;
    unsigned char *b = slurp(db, &n), *copy = malloc(n);
    memcpy(copy, b, n);
    mi_audit_report f, m;
    ck_assert_int_eq(mi_audit_verify(db, NULL, &f), MI_OK);
    ck_assert_int_eq(mi_audit_verify_memory(b, n, "copy.db", NULL, &m), MI_OK);
    ck_assert(f.intact && m.intact && f.rows == 3 && m.rows == 3 && m.head_seq == 3);
    ck_assert_str_eq(m.head_hash, f.head_hash);
    ck_assert_int_eq(memcmp(b, copy, n), 0);
    char head[96];
    snprintf(head, sizeof head, "3:%s", m.head_hash);
    ck_assert_int_eq(mi_audit_verify_memory(b, n, "copy.db", head, &m), MI_OK);
    ck_assert(m.intact);
    /* "polyp" -> "polyq" in the stored bytes of every row: the first one no longer matches its hash */
    for (size_t i = 0; i + 5 <= n; i++)
        if (!memcmp(b + i, "polyp", 5)) b[i + 4] = 'q';
    ck_assert_int_eq(mi_audit_verify_memory(b, n, "copy.db", NULL, &m), MI_OK);
    ck_assert(!m.intact && m.bad_seq == 1);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "copy.db: row 1 ("));
    ck_assert_int_eq(mi_audit_verify_memory("not a database", 14, "junk.db", NULL, &m), MI_ERR_IO);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "junk.db: "));
    free(b);
    free(copy);
}
END_TEST

static void make_db(const char *path, const char *sql) {
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    char *err = NULL;
    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK, "%s", err);
    sqlite3_close(db);
}

#define AUDIT_COLS(result) "seq INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT, command TEXT, input_sha256 TEXT," \
    " model_name TEXT, model_version TEXT, blob_sha256 TEXT, key_id TEXT, engine_version TEXT, build TEXT," \
    " isa TEXT, thresholds TEXT, " result ", prev_hash TEXT, row_hash TEXT"

/* An audit DB is someone else's file until verified, and its schema is SQL that SQLite runs
 * (found while writing fuzz_audit): an audit_log view that recurses forever (verify never
 * returned), a generated column of 900 MB per row (0.9 GB of memory per row read). Both are
 * refused at once, from a file and from memory. */
START_TEST(audit_verify_refuses_hostile_schema)
{
    static const struct { const char *name, *sql, *why; } dbs[] = {
        { "view.db", "CREATE VIEW audit_log AS WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r)"
          " SELECT x AS seq, '' AS time, '' AS command, '' AS input_sha256, '' AS model_name, '' AS model_version,"
          " '' AS blob_sha256, '' AS key_id, '' AS engine_version, '' AS build, '' AS isa, '' AS thresholds,"
          " '' AS result, '' AS prev_hash, '' AS row_hash FROM r ORDER BY x DESC;",
          "not a medinfer audit DB (no audit_log table)" },
        { "generated.db", "CREATE TABLE audit_log (" AUDIT_COLS("result GENERATED ALWAYS AS (zeroblob(900000000)) VIRTUAL") ");"
          "INSERT INTO audit_log (time) VALUES ('t');",
          "read error: string or blob too big" },
    };
    for (size_t i = 0; i < sizeof dbs / sizeof *dbs; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/%s", tmp, dbs[i].name);
        make_db(path, dbs[i].sql);
        mi_audit_report r;
        ck_assert_int_eq(mi_audit_verify(path, NULL, &r), MI_ERR_IO);
        ck_assert_msg(strstr(mi_last_error(), dbs[i].why) != NULL, "%s: %s", dbs[i].name, mi_last_error());
        size_t n;
        unsigned char *b = slurp(path, &n);
        ck_assert_int_eq(mi_audit_verify_memory(b, n, dbs[i].name, NULL, &r), MI_ERR_IO);
        ck_assert_msg(strstr(mi_last_error(), dbs[i].why) != NULL, "%s: %s", dbs[i].name, mi_last_error());
        free(b);
    }
}
END_TEST

/* A damaged page gets the same answer on every read. These files (found by fuzz_assist_db and
 * fuzz_audit) hold cells that overrun their pages; SQLite read them differently from run to run
 * (where its page buffers lay in memory decided between "malformed" and rows missing, a
 * tampering verdict, with a varying row number) until the verifiers turned on its cell size
 * check. Each is read 400 times from the file and 400 times from memory, SQLite's buffers moved
 * between reads: one answer, an error. Where the buffers land also depends on the process's
 * address layout, so without the check this fails in some runs, not all (4 of 10 here). */
static mi_status verify_any(const char *path, const void *b, size_t n) {
    const bool audit = strstr(path, "/audit/") != NULL;
    mi_assist_verify_report a;
    mi_audit_report r;
    if (b) return audit ? mi_audit_verify_memory(b, n, path, NULL, &r) : mi_assist_store_verify_memory(b, n, path, &a);
    return audit ? mi_audit_verify(path, NULL, &r) : mi_assist_store_verify(path, &a);
}

START_TEST(sqlite_verifiers_answer_damaged_pages_alike)
{
    static const char *const files[] = {
        "fuzz/corpus/assist_db/regress_cell_overrun_rows.sqlite",
        "fuzz/corpus/assist_db/regress_cell_overrun_schema.sqlite",
        "fuzz/corpus/audit/regress_cell_overrun_rows.db",
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        size_t n;
        unsigned char *b = slurp(files[i], &n);
        for (int from_memory = 0; from_memory < 2; from_memory++) {
            char first[1024];
            ck_assert_int_eq(verify_any(files[i], from_memory ? b : NULL, n), MI_ERR_IO);
            snprintf(first, sizeof first, "%s", mi_last_error());
            ck_assert_msg(strstr(first, "malformed") != NULL, "%s", first);
            for (int k = 1; k < 400; k++) {
                void *shift = malloc((size_t)k * 40);  /* SQLite's buffers elsewhere on each read */
                ck_assert_int_eq(verify_any(files[i], from_memory ? b : NULL, n), MI_ERR_IO);
                ck_assert_str_eq(mi_last_error(), first);
                free(shift);
            }
        }
        free(b);
    }
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("parsers");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, npy_memory_equals_file);
    tcase_add_test(tc, image_memory_equals_file);
    tcase_add_test(tc, image_size_bounds);
    tcase_add_test(tc, jpeg_huffman_tables);
    tcase_add_test(tc, image_formats_we_take);
    tcase_add_test(tc, png_chunk_lengths);
    tcase_add_test(tc, manifest_from_bytes);
    tcase_add_test(tc, audit_verify_memory_equals_file);
    tcase_add_test(tc, audit_verify_refuses_hostile_schema);
    tcase_add_test(tc, sqlite_verifiers_answer_damaged_pages_alike);
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(suite)
