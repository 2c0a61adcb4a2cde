/* tests/test_assist_request.c - the diagnosis server's request parsing (pipelines/assist/
 * request.c): the token file and the Authorization check, routing, the frame query, the exam
 * body, Content-Type and frame bodies, each refusal with its message pinned. The findings
 * database's chain (store.c) is checked here too, on a database written and then edited, and on
 * databases written from the documented definition by another implementation. */
#include "tests/mi_test.h"
#include "pipelines/assist/request.h"
#include "pipelines/assist/store.h"

#include <sqlite3.h>
#include <string.h>
#include <unistd.h>

#define TOKENS "# comment\n\nt1-token-0123456789abcdef terminal T1   # trailing comment\n" \
               "  ws-token-0123456789abcdef\tworkstation WS\r\n"

static void parse_fails(const char *text, const char *msg) {
    mi_assist_tokens t;
    ck_assert_int_eq(mi_assist_tokens_parse(&t, text, strlen(text), "tok.txt"), MI_ERR_FORMAT);
    ck_assert_msg(strstr(mi_last_error(), msg), "'%s': got '%s'", msg, mi_last_error());
    ck_assert(t.t == NULL && t.n == 0);
}

START_TEST(token_file)
{
    mi_assist_tokens t;
    ck_assert_int_eq(mi_assist_tokens_parse(&t, TOKENS, strlen(TOKENS), "tok.txt"), MI_OK);
    ck_assert_int_eq(t.n, 2);
    ck_assert_str_eq(t.t[0].name, "T1");
    ck_assert_int_eq(t.t[0].role, MI_ASSIST_TERMINAL);
    ck_assert_str_eq(t.t[1].name, "WS");
    ck_assert_int_eq(t.t[1].role, MI_ASSIST_WORKSTATION);
    ck_assert(mi_assist_tokens_has_terminal(&t, "T1") && !mi_assist_tokens_has_terminal(&t, "WS"));
    ck_assert_ptr_eq(mi_assist_tokens_check(&t, "Bearer t1-token-0123456789abcdef"), &t.t[0]);
    ck_assert_ptr_eq(mi_assist_tokens_check(&t, "bearer  ws-token-0123456789abcdef "), &t.t[1]);
    ck_assert_ptr_null(mi_assist_tokens_check(&t, NULL));
    ck_assert_ptr_null(mi_assist_tokens_check(&t, "Bearer t1-token-0123456789abcdeF"));
    ck_assert_ptr_null(mi_assist_tokens_check(&t, "Bearer t1-token-0123456789abcde"));    /* a prefix */
    ck_assert_ptr_null(mi_assist_tokens_check(&t, "Bearer t1-token-0123456789abcdefX"));  /* longer */
    ck_assert_ptr_null(mi_assist_tokens_check(&t, "Basic t1-token-0123456789abcdef"));
    ck_assert_ptr_null(mi_assist_tokens_check(&t, "Bearer t1-token-0123456789abcdef extra"));
    mi_assist_tokens_free(&t);

    parse_fails("", "no token");
    parse_fails("# only a comment\n", "no token");
    parse_fails("t1-token-0123456789abcdef terminal\n", "tok.txt:1: expected TOKEN ROLE NAME, found 2 fields");
    parse_fails("\nt1-token-0123456789abcdef terminal T1 extra\n", "tok.txt:2: expected TOKEN ROLE NAME");
    parse_fails("short terminal T1\n", "tok.txt:1: the token has 5 characters, expected 16..256");
    parse_fails("t1-token-0123456789abcdef doctor T1\n", "role 'doctor' is neither terminal nor workstation");
    parse_fails("t1-token-0123456789abcdef terminal T/1\n", "name 'T/1' is not 1..63");
    parse_fails("t1-token-0123456789abcdef terminal T1\nt1-token-0123456789abcdef workstation W\n",
                "tok.txt:2: the same token is given twice (also for 'T1')");
    parse_fails("t1-token-0123456789abcdef terminal T1\nt2-token-0123456789abcdef terminal T1\n",
                "tok.txt:2: terminal 'T1' has a second token");
    parse_fails("t1-token-0123456789\x01" "abcdef terminal T1\n", "outside printable ASCII");
    ck_assert_int_eq(mi_assist_tokens_load(&t, "/nonexistent/tokens"), MI_ERR_IO);
    ck_assert(strstr(mi_last_error(), "/nonexistent/tokens"));
}
END_TEST

START_TEST(routes)
{
    static const struct { const char *target; mi_assist_route r; const char *id, *query; } cases[] = {
        { "/metrics", MI_ASSIST_R_METRICS, "", NULL },
        { "/v1/exams", MI_ASSIST_R_EXAMS, "", NULL },
        { "/v1/exams/current", MI_ASSIST_R_EXAM_CURRENT, "", NULL },
        { "/v1/exams/E1-ab", MI_ASSIST_R_EXAM, "E1-ab", NULL },
        { "/v1/exams/E1-ab/close", MI_ASSIST_R_EXAM_CLOSE, "E1-ab", NULL },
        { "/v1/exams/E1/findings?x=1", MI_ASSIST_R_EXAM_FINDINGS, "E1", "x=1" },
        { "/v1/frames?exam=E1", MI_ASSIST_R_FRAMES, "", "exam=E1" },
        { "/v1/findings/17/thumbnail", MI_ASSIST_R_THUMBNAIL, "17", NULL },
        { "/v1/exams/", MI_ASSIST_R_NONE, "", NULL },
        { "/v1/exams/../close", MI_ASSIST_R_NONE, "", NULL },
        { "/v1/exams/a%2Fb", MI_ASSIST_R_NONE, "", NULL },
        { "/v1/exams/a/b", MI_ASSIST_R_NONE, "", NULL },
        { "/v1/frames/", MI_ASSIST_R_NONE, "", NULL },
        { "/V1/exams", MI_ASSIST_R_NONE, "", NULL },
        { "", MI_ASSIST_R_NONE, "", NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        mi_assist_target t;
        mi_assist_route_target(cases[i].target, &t);
        ck_assert_msg(t.route == cases[i].r, "%s: route %d", cases[i].target, (int)t.route);
        ck_assert_str_eq(t.id, cases[i].id);
        if (cases[i].query) ck_assert_str_eq(t.query, cases[i].query);
        else ck_assert_ptr_null(t.query);
    }
    ck_assert_str_eq(mi_assist_route_method(MI_ASSIST_R_FRAMES), "POST");
    ck_assert_str_eq(mi_assist_route_method(MI_ASSIST_R_EXAM), "GET");
    ck_assert_str_eq(mi_assist_route_name(MI_ASSIST_R_NONE), "other");
}
END_TEST

START_TEST(frame_query)
{
    mi_assist_frame_query q;
    ck_assert_int_eq(mi_assist_parse_frame_query("exam=E000001-0a1b2c3d&timestamp_ms=1040&trigger=pedal", &q), MI_OK);
    ck_assert_str_eq(q.exam, "E000001-0a1b2c3d");
    ck_assert_int_eq(q.timestamp_ms, 1040);
    ck_assert_int_eq(q.trigger, MI_ASSIST_PEDAL);
    ck_assert_int_eq(mi_assist_parse_frame_query("trigger=freeze&&timestamp_ms=9007199254740991&exam=%45%31", &q), MI_OK);
    ck_assert_str_eq(q.exam, "E1");
    ck_assert_int_eq(q.timestamp_ms, 9007199254740991LL);
    static const struct { const char *q, *msg; } bad[] = {
        { NULL, "query parameter 'exam' is missing" },
        { "exam=E1&trigger=auto", "query parameter 'timestamp_ms' is missing" },
        { "exam=E1&timestamp_ms=1", "query parameter 'trigger' is missing" },
        { "exam=E1&exam=E2&timestamp_ms=1&trigger=auto", "query parameter 'exam' is given twice" },
        { "exam=E1&timestamp_ms=1&trigger=auto&x=1", "query parameter 'x' is not one of" },
        { "exam&timestamp_ms=1&trigger=auto", "query parameter 'exam' has no value" },
        { "exam=E1&timestamp_ms=-1&trigger=auto", "'timestamp_ms' = '-1' is not a whole number" },
        { "exam=E1&timestamp_ms=1e3&trigger=auto", "'timestamp_ms' = '1e3' is not a whole number" },
        { "exam=E1&timestamp_ms=9007199254740992&trigger=auto", "is not a whole number of milliseconds" },
        { "exam=E1&timestamp_ms=+5&trigger=auto", "'timestamp_ms' = ' 5'" },
        { "exam=E1&timestamp_ms=1&trigger=always", "'trigger' = 'always' is not auto, freeze or pedal" },
        { "exam=E%2F1&timestamp_ms=1&trigger=auto", "'exam' = 'E/1' is not an exam ID" },
        { "exam=E%1&timestamp_ms=1&trigger=auto", "'exam' has a malformed or over-long value" },
        { "exam=E%0a&timestamp_ms=1&trigger=auto", "'exam' has a malformed or over-long value" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_int_eq(mi_assist_parse_frame_query(bad[i].q, &q), MI_ERR_ARG);
        ck_assert_msg(strstr(mi_last_error(), bad[i].msg), "%s: got '%s'", bad[i].q, mi_last_error());
    }
}
END_TEST

static void exam_fails(const char *body, const char *msg) {
    mi_assist_exam_req e;
    ck_assert_int_eq(mi_assist_parse_exam(body, strlen(body), &e), MI_ERR_ARG);
    ck_assert_msg(strstr(mi_last_error(), msg), "%s: got '%s'", body, mi_last_error());
}

START_TEST(exam_body)
{
    const char *ok = "{\"terminal\": \"T1\", \"patient_id\": \"P 1\", \"exam_number\": \"X-1\", \"age\": 63, \"sex\": \"F\"}\n";
    mi_assist_exam_req e;
    ck_assert_int_eq(mi_assist_parse_exam(ok, strlen(ok), &e), MI_OK);
    ck_assert_str_eq(e.terminal, "T1");
    ck_assert_str_eq(e.patient_id, "P 1");
    ck_assert_str_eq(e.exam_number, "X-1");
    ck_assert_int_eq(e.age, 63);
    ck_assert_int_eq(e.sex, 'F');
    exam_fails("", "the body is empty");
    exam_fails("{\"terminal\": ", "not valid JSON (error at byte");
    exam_fails("[1, 2]", "not an object");
    exam_fails("{} {}", "bytes after its JSON value");
    exam_fails("{\"terminal\": \"T1\"}", "field 'patient_id' is missing");
    exam_fails("{\"terminal\": 1}", "field 'terminal' is not a string");
    exam_fails("{\"terminal\": \"T 1\"}", "'terminal' is not 1..63");
    exam_fails("{\"terminal\": \"T1\", \"patient_id\": \"\", \"exam_number\": \"1\", \"age\": 1, \"sex\": \"F\"}",
               "'patient_id' has 0 bytes");
    exam_fails("{\"terminal\": \"T1\", \"patient_id\": \"a\\u0001\", \"exam_number\": \"1\", \"age\": 1, \"sex\": \"F\"}",
               "'patient_id' contains a control character");
    exam_fails("{\"terminal\": \"T1\", \"patient_id\": \"p\", \"exam_number\": \"1\", \"age\": 151, \"sex\": \"F\"}",
               "'age' is not a whole number of years 0..150");
    exam_fails("{\"terminal\": \"T1\", \"patient_id\": \"p\", \"exam_number\": \"1\", \"age\": 1.5, \"sex\": \"F\"}",
               "'age' is not a whole number");
    exam_fails("{\"terminal\": \"T1\", \"patient_id\": \"p\", \"exam_number\": \"1\", \"age\": 1, \"sex\": \"female\"}",
               "'sex' is not \"F\", \"M\" or \"O\"");
    exam_fails("{\"terminal\": \"T1\", \"patient_id\": \"p\", \"exam_number\": \"1\", \"age\": 1}", "field 'sex' is missing");
    exam_fails("{\"terminal\": \"T1\", \"name\": \"x\"}", "unknown field 'name'");
    exam_fails("{\"terminal\": \"T1\", \"terminal\": \"T2\"}", "field 'terminal' is given twice");
}
END_TEST

START_TEST(content_type_and_frames)
{
    ck_assert_int_eq(mi_assist_content_type("image/jpeg"), MI_ASSIST_IMG_JPEG);
    ck_assert_int_eq(mi_assist_content_type(" Image/PNG ; charset=x"), MI_ASSIST_IMG_PNG);
    ck_assert_int_eq(mi_assist_content_type("image/jpg"), MI_ASSIST_IMG_NONE);
    ck_assert_int_eq(mi_assist_content_type("image/jpeg2000"), MI_ASSIST_IMG_NONE);
    ck_assert_int_eq(mi_assist_content_type("image/jpeg x"), MI_ASSIST_IMG_NONE);
    ck_assert_int_eq(mi_assist_content_type(NULL), MI_ASSIST_IMG_NONE);

    /* a 3x2 PNG (written here by our own writer), then its header claiming more */
    mi_image img;
    ck_assert_int_eq(mi_image_alloc(&img, 3, 2), MI_OK);
    char path[] = "/tmp/mi_assist_frameXXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(mi_image_write_png(path, &img), MI_OK);
    mi_image_free(&img);
    uint8_t buf[4096];
    FILE *f = fopen(path, "rb");
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    unlink(path);
    int w, h;
    ck_assert_int_eq(mi_assist_check_frame(buf, n, MI_ASSIST_IMG_PNG, 16, 256, &w, &h), MI_OK);
    ck_assert(w == 3 && h == 2);
    ck_assert_int_eq(mi_assist_decode_frame(&img, buf, n, MI_ASSIST_IMG_PNG, 16, 256), MI_OK);
    ck_assert(img.w == 3 && img.h == 2);
    mi_image_free(&img);
    ck_assert_int_eq(mi_assist_check_frame(buf, n, MI_ASSIST_IMG_JPEG, 16, 256, &w, &h), MI_ERR_ARG);
    ck_assert(strstr(mi_last_error(), "Content-Type says image/jpeg but the body does not start with a JPEG SOI"));
    ck_assert_int_eq(mi_assist_check_frame(buf, n, MI_ASSIST_IMG_PNG, 2, 256, &w, &h), MI_ERR_ARG);
    ck_assert(strstr(mi_last_error(), "frame: 3x2 pixels, more than this server takes (2 per side, 256 in all)"));
    ck_assert_int_eq(mi_assist_check_frame(buf, n, MI_ASSIST_IMG_PNG, 16, 5, &w, &h), MI_ERR_ARG);
    ck_assert_int_eq(mi_assist_check_frame(buf, 0, MI_ASSIST_IMG_PNG, 16, 256, &w, &h), MI_ERR_ARG);
    ck_assert(strstr(mi_last_error(), "the body is empty"));
    ck_assert_int_eq(mi_assist_decode_frame(&img, buf, 30, MI_ASSIST_IMG_PNG, 16, 256), MI_ERR_ARG);
    ck_assert_ptr_null(img.px);
    ck_assert(strstr(mi_last_error(), "frame"));
}
END_TEST

static void edit(const char *db, const char *sql) {
    sqlite3 *d;
    ck_assert_int_eq(sqlite3_open(db, &d), SQLITE_OK);
    char *err = NULL;
    ck_assert_msg(sqlite3_exec(d, sql, NULL, NULL, &err) == SQLITE_OK, "%s: %s", sql, err ? err : "");
    sqlite3_close(d);
}

START_TEST(findings_chain)
{
    char dir[] = "/tmp/mi_assist_dbXXXXXX", db[256], cmd[600];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/f.sqlite", dir);
    mi_assist_store *s;
    ck_assert_int_eq(mi_assist_store_open(&s, db), MI_OK);
    mi_assist_exam_req r = { .terminal = "T1", .patient_id = "P", .exam_number = "1", .age = 50, .sex = 'M' };
    mi_assist_exam e1, e2, got;
    ck_assert_int_eq(mi_assist_store_open_exam(s, &r, "WS", &e1), MI_OK);
    ck_assert_int_eq(mi_assist_store_open_exam(s, &r, "WS", &e2), MI_OK);   /* closes e1 */
    bool found;
    ck_assert_int_eq(mi_assist_store_get_exam(s, e1.exam_id, &found, &got), MI_OK);
    ck_assert(found && got.closed[0]);
    ck_assert_int_eq(mi_assist_store_current_exam(s, "T1", &found, &got), MI_OK);
    ck_assert(found && !strcmp(got.exam_id, e2.exam_id));
    const uint8_t png[4] = { 1, 2, 3, 4 };
    mi_assist_finding f[2] = {
        { .exam_id = e2.exam_id, .terminal = "T1", .timestamp_ms = 40, .trigger = "auto", .type = "ulcer", .score = 0.9,
          .probs_json = "{}", .box_json = "[1,2,3,4]", .high_risk = true, .model_arch = "a", .model_version = "v",
          .model_sha256 = "s", .thumbnail = png, .thumbnail_size = 4 },
        { .exam_id = e2.exam_id, .terminal = "T1", .timestamp_ms = 80, .trigger = "auto", .type = "other", .score = 0.6,
          .probs_json = "{}", .box_json = "[1,2,3,4]", .high_risk = false, .model_arch = "a", .model_version = "v",
          .model_sha256 = "s", .thumbnail = png, .thumbnail_size = 4 },
    };
    long long ids[2];
    ck_assert_int_eq(mi_assist_store_add_findings(s, f, 2, ids), MI_OK);
    ck_assert(ids[0] == 1 && ids[1] == 2);
    void *t;
    size_t tn;
    char exam[MI_ASSIST_ID_MAX];
    ck_assert_int_eq(mi_assist_store_thumbnail(s, 2, &found, exam, &t, &tn), MI_OK);
    ck_assert(found && tn == 4 && !memcmp(t, png, 4) && !strcmp(exam, e2.exam_id));
    free(t);
    mi_assist_store_close(s);

    mi_assist_verify_report rep;
    ck_assert_int_eq(mi_assist_store_verify(db, &rep), MI_OK);
    ck_assert_msg(rep.intact, "%s", mi_last_error());
    ck_assert(rep.rows[0] == 2 && rep.rows[1] == 2 && rep.rows[2] == 2);   /* e1 closed, one alert */

    static const struct { const char *sql, *msg; } tamper[] = {
        { "DROP TRIGGER findings_no_update; UPDATE findings SET score = 0.95 WHERE seq = 1", "findings row 1 was edited" },
        { "DROP TRIGGER findings_no_update; UPDATE findings SET score = 'high' WHERE seq = 1", "column score holds another type" },
        { "DROP TRIGGER findings_no_update; UPDATE findings SET thumbnail = x'01020305' WHERE seq = 2", "findings row 2 was edited" },
        { "DROP TRIGGER exams_no_delete; DELETE FROM exams WHERE seq = 1", "exams rows 1..1 are missing" },
        { "DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq = 2", "events rows 2..2 are missing (deleted from the end)" },
        { "DROP TRIGGER findings_no_update; UPDATE findings SET prev_hash = row_hash WHERE seq = 2", "does not link" },
    };
    for (size_t i = 0; i < sizeof tamper / sizeof *tamper; i++) {
        char copy[300];
        snprintf(copy, sizeof copy, "%s/t%zu.sqlite", dir, i);
        snprintf(cmd, sizeof cmd, "cp %s %s", db, copy);
        ck_assert_int_eq(system(cmd), 0);
        edit(copy, tamper[i].sql);
        ck_assert_int_eq(mi_assist_store_verify(copy, &rep), MI_OK);
        ck_assert_msg(!rep.intact && strstr(mi_last_error(), tamper[i].msg), "%s: %s", tamper[i].sql, mi_last_error());
    }
    /* another program's database is not taken over */
    char other[300];
    snprintf(other, sizeof other, "%s/audit.sqlite", dir);
    edit(other, "CREATE TABLE audit_log (seq INTEGER)");
    ck_assert_int_eq(mi_assist_store_open(&s, other), MI_ERR_IO);
    ck_assert(strstr(mi_last_error(), "not a medinfer findings database (it has a table 'audit_log')"));
    char junk[300];
    snprintf(junk, sizeof junk, "%s/junk", dir);
    FILE *jf = fopen(junk, "w");
    fputs("not a database at all, just text that is long enough to be a header", jf);
    fclose(jf);
    ck_assert_int_eq(mi_assist_store_verify(junk, &rep), MI_ERR_IO);
    ck_assert(strstr(mi_last_error(), junk));
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* databases written by fuzz/make_corpus.py from docs/assist.md's definition of the chain, with
 * Python's hashlib and sqlite3: the C verifier agrees with the written definition */
START_TEST(independent_databases)
{
    static const struct { const char *file; int intact; const char *msg; } cases[] = {
        { "ok_two_findings.sqlite", 1, NULL },
        { "ok_empty.sqlite", 1, NULL },
        { "bad_edited_score.sqlite", 0, "findings row 1 was edited" },
        { "bad_thumbnail.sqlite", 0, "findings row 2 was edited" },
        { "bad_deleted_tail.sqlite", 0, "findings rows 2..2 are missing (deleted from the end)" },
        { "bad_other_terminal.sqlite", 0, "finding row 1 refers to an exam" },
        { "bad_not_sqlite", -1, "not a medinfer findings database" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[256];
        snprintf(path, sizeof path, "fuzz/corpus/assist_db/%s", cases[i].file);
        mi_assist_verify_report r;
        mi_status st = mi_assist_store_verify(path, &r);
        if (cases[i].intact < 0) {
            ck_assert_int_eq(st, MI_ERR_IO);
        } else {
            ck_assert_msg(st == MI_OK, "%s: %s", path, mi_last_error());
            ck_assert_msg(r.intact == (cases[i].intact == 1), "%s: intact %d: %s", path, r.intact, mi_last_error());
        }
        if (cases[i].msg) ck_assert_msg(strstr(mi_last_error(), cases[i].msg), "%s: %s", path, mi_last_error());
    }
    mi_assist_verify_report r;
    ck_assert_int_eq(mi_assist_store_verify("fuzz/corpus/assist_db/ok_two_findings.sqlite", &r), MI_OK);
    ck_assert(r.rows[0] == 1 && r.rows[1] == 2 && r.rows[2] == 1);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("assist_request");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, token_file);
    tcase_add_test(tc, routes);
    tcase_add_test(tc, frame_query);
    tcase_add_test(tc, exam_body);
    tcase_add_test(tc, content_type_and_frames);
    tcase_add_test(tc, findings_chain);
    tcase_add_test(tc, independent_databases);
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(suite)
