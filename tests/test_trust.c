/* tests/test_trust.c - pipelines/trust at the C API: version order, hardware codes, the exact
 * signed message and .sig format, sign/check with the trust store from --pubkey and
 * MEDINFER_TRUST, a staged update's activation and rejection in a model dir, the audit chain
 * (edits and deletes found by row), the option helper.
 * Updates against a live server are tests/test_trust.sh. */
#include "tests/mi_test.h"
#include "pipelines/trust/trust.h"

#include <ftw.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sqlite3.h>
#include <string.h>
#include <unistd.h>

static char tmp[64];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb, (void)flag, (void)f;
    return remove(p);
}
static void setup(void) {
    snprintf(tmp, sizeof tmp, "/tmp/mi_trust_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    unsetenv("MEDINFER_TRUST");
}
static void teardown(void) { nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* A minimal valid safetensors: one F32 tensor of 4 values, the given model_version. */
static void write_blob(const char *path, const char *version, float x) {
    char h[256];
    int n = snprintf(h, sizeof h, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                     "\"__metadata__\":{\"arch\":\"tiny\",\"model_version\":\"%s\"}}", version);
    while (n % 8) h[n++] = ' ';
    uint64_t len = (uint64_t)n;
    float d[4] = { x, 1, 2, 3 };
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(&len, 8, 1, f);  /* little-endian hosts only, like the reader's tests */
    fwrite(h, 1, (size_t)n, f);
    fwrite(d, 4, 4, f);
    fclose(f);
}

START_TEST(version_order)
{
    static const struct { const char *a, *b; int cmp; } v[] = {
        { "1.0.0", "1.0.0", 0 }, { "1.2", "1.2.0", 0 }, { "1.10.0", "1.9.9", 1 },
        { "2026.11.2", "2026.11.10", -1 }, { "0.0.1", "0", 1 }, { "3", "2.99", 1 },
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        int c = 99;
        ck_assert_int_eq(mi_version_compare(v[i].a, v[i].b, &c), MI_OK);
        ck_assert_msg((c > 0) - (c < 0) == v[i].cmp, "%s vs %s: %d", v[i].a, v[i].b, c);
    }
    static const char *bad[] = { "", "1..2", "1.2.", ".1", "1.0-rc1", "v1", "1234567890123456789" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int c;
        ck_assert_msg(mi_version_compare(bad[i], "1", &c) == MI_ERR_FORMAT, "'%s' accepted", bad[i]);
    }
}
END_TEST

START_TEST(hardware_code)
{
    char a[20], b[20];
    if (mi_hwcode(a) != MI_OK) MI_SKIP("no machine-id here: %s", mi_last_error());
    ck_assert_int_eq(mi_hwcode(b), MI_OK);
    ck_assert_str_eq(a, b);
    ck_assert_int_eq(strlen(a), 19);
    for (int i = 0; i < 19; i++)
        ck_assert(i % 5 == 4 ? a[i] == '-' : (a[i] >= '0' && a[i] <= '9') || (a[i] >= 'A' && a[i] <= 'F'));
    ck_assert(mi_hwcode_equal("ABCD-0123-4567-89EF", "abcd0123456789ef"));
    ck_assert(!mi_hwcode_equal("ABCD-0123-4567-89EF", "ABCD-0123-4567-89E"));
    ck_assert(!mi_hwcode_equal("ABCD-0123-4567-89EF", "ABCD-0123-4567-89EE"));
}
END_TEST

START_TEST(signature_format)
{
    char msg[256];
    const char *sha = "39c857967550f877cc04c993accbbe3f82441cf910f3ff8b0c0d927cd5da4e58";
    int n = mi_signature_message(msg, sizeof msg, sha, "2026.11.2");
    ck_assert_str_eq(msg, "medinfer-signature-v1\nsha256: 39c857967550f877cc04c993accbbe3f82441cf910f3ff8b0c0d927cd5da4e58"
                          "\nmodel-version: 2026.11.2\n");
    ck_assert_int_eq(n, (int)strlen(msg));
    ck_assert_int_eq(mi_signature_message(msg, sizeof msg, sha, "has space"), -1);
    ck_assert_int_eq(mi_signature_message(msg, sizeof msg, sha, ""), -1);

    mi_signature s = { .key_id = "0123456789abcdef", .model_version = "1.2.3" }, t;
    memcpy(s.sha256, sha, 65);
    for (int i = 0; i < 64; i++) s.sig[i] = (unsigned char)(i * 5);
    char text[512];
    mi_signature_format(&s, text, sizeof text);
    ck_assert_int_eq(mi_signature_parse(text, "t", &t), MI_OK);
    ck_assert_str_eq(t.key_id, s.key_id);
    ck_assert_str_eq(t.sha256, s.sha256);
    ck_assert_str_eq(t.model_version, s.model_version);
    ck_assert_int_eq(memcmp(t.sig, s.sig, 64), 0);
    /* every line is required, in order, and nothing may follow */
    char bad[600];
    snprintf(bad, sizeof bad, "%sextra\n", text);
    ck_assert_int_eq(mi_signature_parse(bad, "t", &t), MI_ERR_SECURITY);
    snprintf(bad, sizeof bad, "%s", text);
    memcpy(strstr(bad, "ed25519"), "ed25518", 7);
    ck_assert_int_eq(mi_signature_parse(bad, "t", &t), MI_ERR_SECURITY);
    ck_assert_int_eq(mi_signature_parse("medinfer-signature-v1\n", "t", &t), MI_ERR_SECURITY);
}
END_TEST

START_TEST(sign_and_check)
{
    char key[128], blob[128], other[128], pub[160], sig[160];
    snprintf(key, sizeof key, "%s/k", tmp);
    snprintf(pub, sizeof pub, "%s/k.pub", tmp);
    snprintf(other, sizeof other, "%s/o", tmp);
    snprintf(blob, sizeof blob, "%s/m.safetensors", tmp);
    snprintf(sig, sizeof sig, "%s/m.safetensors.sig", tmp);
    char id[17], oid[17];
    ck_assert_int_eq(mi_keygen(key, "test", id), MI_OK);
    ck_assert_int_eq(mi_keygen(other, NULL, oid), MI_OK);
    ck_assert_int_ne(mi_keygen(key, NULL, oid), MI_OK);  /* never overwrites */
    write_blob(blob, "1.0.0", 0.5f);

    mi_trust_info ti;
    if (access(MI_TRUST_DEFAULT_STORE, F_OK) != 0) {  /* no key anywhere: loads, marked unchecked */
        ck_assert_int_eq(mi_trust_check(blob, NULL, &ti), MI_OK);
        ck_assert(!ti.key_configured && !ti.verified);
        ck_assert_str_eq(ti.key_id, "none");
    }
    ck_assert_int_eq(mi_trust_check(blob, pub, &ti), MI_ERR_SECURITY);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "unsigned"));
    ck_assert_ptr_nonnull(strstr(mi_last_error(), blob));

    char k2[160];
    snprintf(k2, sizeof k2, "%s.key", key);
    mi_signature s;
    ck_assert_int_eq(mi_sign_blob(k2, blob, &s), MI_OK);
    ck_assert_str_eq(s.key_id, id);
    ck_assert_int_eq(mi_trust_check(blob, pub, &ti), MI_OK);
    ck_assert(ti.verified);
    ck_assert_str_eq(ti.key_id, id);
    ck_assert_str_eq(ti.model_version, "1.0.0");
    ck_assert_str_eq(ti.model_name, "tiny");

    setenv("MEDINFER_TRUST", pub, 1);                 /* the env store, without --pubkey */
    ck_assert_int_eq(mi_trust_check(blob, NULL, &ti), MI_OK);
    ck_assert_ptr_nonnull(strstr(ti.source, "MEDINFER_TRUST"));
    char opub[160];
    snprintf(opub, sizeof opub, "%s.pub", other);
    ck_assert_int_eq(mi_trust_check(blob, opub, &ti), MI_ERR_SECURITY);  /* --pubkey wins */
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "not in the trust store"));

    write_blob(blob, "1.0.0", 0.25f);                 /* same version, other weights */
    ck_assert_int_eq(mi_trust_check(blob, NULL, &ti), MI_ERR_SECURITY);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "SHA-256"));
    write_blob(blob, "1.0.1", 0.5f);                  /* other version */
    ck_assert_int_eq(mi_trust_check(blob, NULL, &ti), MI_ERR_SECURITY);
    unsetenv("MEDINFER_TRUST");
}
END_TEST

/* DIR/versions/NAME/model.safetensors with this version, signed by key (unless NULL) */
static void version_folder(const char *dir, const char *name, const char *version, const char *key) {
    char p[256];
    snprintf(p, sizeof p, "%s/versions", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/versions/%s", dir, name);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/versions/%s/" MI_MODEL_FILE, dir, name);
    write_blob(p, version, (float)strlen(version));
    mi_signature s;
    if (key) ck_assert_int_eq(mi_sign_blob(key, p, &s), MI_OK);
}

static void link_to(const char *dir, const char *name, const char *target) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    unlink(p);
    ck_assert_int_eq(symlink(target, p), 0);
}

static bool link_is(const char *dir, const char *name, const char *target) {
    char p[256], t[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    ssize_t n = readlink(p, t, sizeof t - 1);
    if (n < 0) return target == NULL;
    t[n] = 0;
    return target && !strcmp(t, target);
}

START_TEST(staged_activate_reject)
{
    /* the two endings of a staged update, on a model dir built by hand (no server needed) */
    char key[128], k2[160], pub[160], dir[128], blob[200], v[64];
    snprintf(key, sizeof key, "%s/k", tmp);
    snprintf(k2, sizeof k2, "%s/k.key", tmp);
    snprintf(pub, sizeof pub, "%s/k.pub", tmp);
    snprintf(dir, sizeof dir, "%s/models", tmp);
    snprintf(blob, sizeof blob, "%s/" MI_MODEL_FILE, dir);
    char id[17];
    ck_assert_int_eq(mi_keygen(key, NULL, id), MI_OK);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    version_folder(dir, "1.0.0-a", "1.0.0", k2);
    link_to(dir, "current", "versions/1.0.0-a");
    link_to(dir, MI_MODEL_FILE, "current/" MI_MODEL_FILE);
    link_to(dir, MI_MODEL_FILE ".sig", "current/" MI_MODEL_FILE ".sig");
    int code = 0;
    ck_assert_int_ne(mi_model_activate_staged(dir, pub, &code, v), MI_OK);
    ck_assert_int_eq(code, MI_TRUST_EXIT_NO_PREVIOUS);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "no staged model"));

    version_folder(dir, "2.0.0-b", "2.0.0", k2);
    link_to(dir, "staged", "versions/2.0.0-b");           /* reject: set aside with its record */
    ck_assert_int_eq(mi_model_reject_staged(dir, "{\"reason\": \"1/3 < 2/3\"}\n", &code), MI_OK);
    ck_assert(link_is(dir, "rejected", "versions/2.0.0-b") && link_is(dir, "staged", NULL));
    ck_assert(link_is(dir, "current", "versions/1.0.0-a"));
    char rec[200], p[256];
    snprintf(p, sizeof p, "%s/versions/2.0.0-b/" MI_SELFCHECK_FILE, dir);
    FILE *f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(rec, sizeof rec, f));
    fclose(f);
    ck_assert_ptr_nonnull(strstr(rec, "1/3 < 2/3"));

    version_folder(dir, "4.0.0-d", "4.0.0", NULL);       /* unsigned */
    link_to(dir, "staged", "versions/4.0.0-d");           /* a staged blob that no longer verifies */
    ck_assert_msg(mi_model_activate_staged(dir, pub, &code, v) == MI_ERR_SECURITY, "%s", mi_last_error());
    ck_assert_int_eq(code, MI_TRUST_EXIT_UNTRUSTED);
    ck_assert(link_is(dir, "current", "versions/1.0.0-a"));

    version_folder(dir, "3.0.0-c", "3.0.0", k2);
    link_to(dir, "staged", "versions/3.0.0-c");           /* activate: current and previous move */
    ck_assert_int_eq(mi_model_activate_staged(dir, pub, &code, v), MI_OK);
    ck_assert_str_eq(v, "3.0.0");
    ck_assert(link_is(dir, "current", "versions/3.0.0-c") && link_is(dir, "previous", "versions/1.0.0-a"));
    ck_assert(link_is(dir, "staged", NULL) && link_is(dir, "rejected", "versions/2.0.0-b"));
    mi_trust_info ti;
    ck_assert_int_eq(mi_trust_check(blob, pub, &ti), MI_OK);
    ck_assert_str_eq(ti.model_version, "3.0.0");
    snprintf(p, sizeof p, "%s/versions/4.0.0-d", dir);    /* linked by nothing: swept */
    ck_assert_int_ne(access(p, F_OK), 0);

    /* stopped after the second rename: staged == current is dropped by the next locked call */
    link_to(dir, "staged", "versions/3.0.0-c");
    ck_assert_int_ne(mi_model_reject_staged(dir, "{}", &code), MI_OK);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "no staged model"));
    ck_assert(link_is(dir, "staged", NULL) && link_is(dir, "current", "versions/3.0.0-c"));
    ck_assert(link_is(dir, "rejected", "versions/2.0.0-b"));
}
END_TEST

static void count_rows(const char *db, const char *sql) {
    sqlite3 *h;
    ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
    char *err = NULL;
    ck_assert_msg(sqlite3_exec(h, sql, NULL, NULL, &err) == SQLITE_OK, "%s: %s", sql, err);
    sqlite3_close(h);
}

START_TEST(audit_chain)
{
    char db[128];
    snprintf(db, sizeof db, "%s/a.db", tmp);
    mi_trust_info ti = { .key_id = "none", .model_name = "m", .model_version = "1", .blob_sha256 = "ab" };
    for (int i = 0; i < 5; i++) {
        char res[64];
        snprintf(res, sizeof res, "{\"i\":%d}", i);
        mi_audit_row r = { .command = "classify", .input_sha256 = "cd", .result_json = res,
                           .thresholds_json = "{\"t\":0.5}" };
        mi_audit_row_model(&r, &ti);
        ck_assert_int_eq(mi_audit_append(db, &r), MI_OK);
    }
    mi_audit_row bad = { .command = "classify", .result_json = "{not json" };
    ck_assert_int_eq(mi_audit_append(db, &bad), MI_ERR_ARG);
    mi_audit_report rep;
    ck_assert_int_eq(mi_audit_verify(db, NULL, &rep), MI_OK);
    ck_assert(rep.intact);
    ck_assert_int_eq(rep.rows, 5);
    ck_assert_int_eq(rep.head_seq, 5);
    char head[80];
    snprintf(head, sizeof head, "%lld:%s", rep.head_seq, rep.head_hash);
    ck_assert_int_eq(mi_audit_verify(db, head, &rep), MI_OK);
    ck_assert(rep.intact);

    /* the triggers stop an honest UPDATE */
    sqlite3 *h;
    ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
    ck_assert_int_ne(sqlite3_exec(h, "UPDATE audit_log SET result = '{}' WHERE seq = 3", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);

    count_rows(db, "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET thresholds = '{\"t\":0.4}' WHERE seq = 3");
    ck_assert_int_eq(mi_audit_verify(db, NULL, &rep), MI_OK);
    ck_assert(!rep.intact);
    ck_assert_int_eq(rep.bad_seq, 3);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "row 3"));

    char db2[128];
    snprintf(db2, sizeof db2, "%s/b.db", tmp);
    for (int i = 0; i < 4; i++) {
        mi_audit_row r = { .command = "endoqc" };
        ck_assert_int_eq(mi_audit_append(db2, &r), MI_OK);
    }
    count_rows(db2, "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 2");
    ck_assert_int_eq(mi_audit_verify(db2, NULL, &rep), MI_OK);
    ck_assert(!rep.intact);
    ck_assert_int_eq(rep.bad_seq, 2);
    /* appending after a deletion does not reuse the number: the gap stays visible */
    mi_audit_row r = { .command = "endoqc" };
    ck_assert_int_eq(mi_audit_append(db2, &r), MI_OK);
    ck_assert_int_eq(mi_audit_verify(db2, NULL, &rep), MI_OK);
    ck_assert(!rep.intact);
}
END_TEST

START_TEST(option_helper)
{
    char *argv[] = { "classify", "--pubkey", "k.pub", "x.png", "--audit=a.db", "--pubkey" };
    mi_trust_opts o = { 0 };
    int i = 1;
    ck_assert_int_eq(mi_trust_opt(&o, 6, argv, &i), 1);
    ck_assert_int_eq(i, 2);
    ck_assert_str_eq(o.pubkey, "k.pub");
    i = 3;
    ck_assert_int_eq(mi_trust_opt(&o, 6, argv, &i), 0);
    i = 4;
    ck_assert_int_eq(mi_trust_opt(&o, 6, argv, &i), 1);
    ck_assert_str_eq(o.audit, "a.db");
    i = 5;
    ck_assert_int_eq(mi_trust_opt(&o, 6, argv, &i), -1);  /* value missing */
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("trust");
    TCase *t = tcase_create("trust");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, version_order);
    tcase_add_test(t, hardware_code);
    tcase_add_test(t, signature_format);
    tcase_add_test(t, sign_and_check);
    tcase_add_test(t, staged_activate_reject);
    tcase_add_test(t, audit_chain);
    tcase_add_test(t, option_helper);
    suite_add_tcase(s, t);
    return s;
}

MI_TEST_MAIN(suite)
