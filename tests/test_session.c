/* tests/test_session.c - the model/session split of include/medinfer.h: sessions on several host
 * threads sharing one model (also built with ThreadSanitizer by `make check`), per-session thread
 * counts that leave the host's OpenMP settings alone, activation memory by liveness, the capture
 * and stage hooks, the plan of a measure walk against the run that follows it, and a residual
 * added in place only where no kept output is overwritten. */
#include "tests/mi_test.h"
#include "medinfer.h"
#include "ops/tensor.h"

#include <omp.h>
#include <pthread.h>
#include <string.h>

typedef struct {
    const mi_model *m;
    const float    *x;
    int             threads, repeat;
    float           logits[2 * 26];
    mi_status       st;
} worker;

static void *work(void *p) {
    worker *w = p;
    mi_session *s;
    if ((w->st = mi_session_create(&s, w->m, (int64_t[4]){ 2, 3, 64, 96 }, w->threads))) return NULL;
    for (int i = 0; i < w->repeat && !w->st; i++) w->st = mi_session_run(s, w->x);
    if (!w->st) memcpy(w->logits, mi_session_output(s, "logits", NULL), sizeof w->logits);
    mi_session_destroy(s);
    return NULL;
}

/* ThreadSanitizer cannot see libgomp's own synchronization, so a TSan build (make check) gives
 * each session one OpenMP thread: what it checks is the sharing of the model between host
 * threads. The normal build runs the sessions with 1 and 2 OpenMP threads. */
#ifdef MI_TSAN
#define SECOND_THREADS 1
#else
#define SECOND_THREADS 2
#endif

/* Two host threads, each with its own session on one shared model, give the bits one session
 * alone gives. */
START_TEST(sessions_share_a_model_across_threads)
{
    mi_model *m = mi_fixture_model("resnet18_rand.safetensors");
    float *x = malloc(2 * 3 * 64 * 96 * sizeof *x);
    mi_fill_random(x, 2 * 3 * 64 * 96, 7);
    worker alone = { m, x, 1, 1, { 0 }, MI_OK };
    work(&alone);
    ck_assert_msg(alone.st == MI_OK, "%s", mi_last_error());
    worker w[2] = { { m, x, 1, 3, { 0 }, MI_OK }, { m, x, SECOND_THREADS, 3, { 0 }, MI_OK } };
    pthread_t t[2];
    for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
    for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(w[i].st, MI_OK);
        ck_assert_msg(!memcmp(w[i].logits, alone.logits, sizeof alone.logits), "thread %d differs", i);
    }
    free(x);
    mi_model_close(m);
}
END_TEST

#ifndef MI_TSAN   /* these run OpenMP teams, which TSan cannot follow */
/* A model opened from bytes in memory (freed right after) runs like the file, and bad bytes are
 * refused in the name the caller gave them. */
START_TEST(model_from_memory)
{
    char path[512];
    snprintf(path, sizeof path, "%s/resnet18_rand.safetensors", mi_fixtures());
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n);
    ck_assert_uint_eq(fread(buf, 1, n, f), n);
    fclose(f);
    mi_model *a = mi_fixture_model("resnet18_rand.safetensors"), *b;
    ck_assert_msg(mi_model_open_memory(&b, buf, n, "r18 from memory") == MI_OK, "%s", mi_last_error());
    memset(buf, 0, n);
    free(buf);
    ck_assert_str_eq(mi_model_sha256(a), mi_model_sha256(b));
    ck_assert_str_eq(mi_model_path(b), "r18 from memory");
    float x[3 * 40 * 40], la[26];
    mi_fill_random(x, 3 * 40 * 40, 3);
    mi_session *s;
    ck_assert_int_eq(mi_session_create(&s, a, (int64_t[4]){ 1, 3, 40, 40 }, 0), MI_OK);
    ck_assert_int_eq(mi_session_run(s, x), MI_OK);
    memcpy(la, mi_session_output(s, "logits", NULL), sizeof la);
    mi_session_destroy(s);
    ck_assert_int_eq(mi_session_create(&s, b, (int64_t[4]){ 1, 3, 40, 40 }, 0), MI_OK);
    ck_assert_int_eq(mi_session_run(s, x), MI_OK);
    ck_assert(!memcmp(la, mi_session_output(s, "logits", NULL), sizeof la));
    mi_session_destroy(s);
    mi_model_close(a);
    mi_model_close(b);
    const char junk[] = "not a blob at all";
    ck_assert_int_ne(mi_model_open_memory(&b, junk, sizeof junk, "upload.bin"), MI_OK);
    ck_assert_ptr_null(b);
    ck_assert_msg(strstr(mi_last_error(), "upload.bin") != NULL, "%s", mi_last_error());
}
END_TEST

/* A session's thread count is its own: the host's OpenMP default is what it was. */
START_TEST(session_threads_leave_host_openmp_alone)
{
    omp_set_num_threads(3);
    mi_model *m = mi_fixture_model("resnet18_rand.safetensors");
    mi_session *s;
    ck_assert_int_eq(mi_session_create(&s, m, (int64_t[4]){ 1, 3, 32, 32 }, 1), MI_OK);
    float x[3 * 32 * 32];
    mi_fill_random(x, 3 * 32 * 32, 1);
    ck_assert_int_eq(mi_session_run(s, x), MI_OK);
    ck_assert_int_eq(omp_get_max_threads(), 3);
    mi_session_destroy(s);
    mi_model_close(m);
}
END_TEST

/* Activation memory by liveness: ResNet-50 at batch 8, 224 x 224. Sizing every buffer to the
 * largest activation (the engine before sessions) took 263,737,920 bytes; the bar is a third. */
START_TEST(resnet50_batch8_arena_by_liveness)
{
    mi_model *m = mi_fixture_model("resnet50_rand.safetensors");
    mi_session *s;
    ck_assert_int_eq(mi_session_create(&s, m, (int64_t[4]){ 8, 3, 224, 224 }, 0), MI_OK);
    size_t bytes = mi_session_arena_bytes(s);
    printf("resnet50 batch 8 arena: %zu bytes (%.1f %% of 263737920)\n", bytes, 100.0 * bytes / 263737920.0);
    ck_assert_msg(bytes <= 263737920 / 3, "arena %zu bytes", bytes);
    /* no less than the two widest tensors a conv reads and writes at once (8 x 256 x 56 x 56 in
     * and out of layer1's last conv): the plan is not cheating */
    ck_assert_uint_ge(bytes, 2 * (size_t)8 * 256 * 56 * 56 * 4);
    mi_session_destroy(s);
    mi_model_close(m);
}
END_TEST

typedef struct { int calls, convs; bool saw_first, saw_logits; } seen;

static void count(void *user, const char *name, const float *data, int ndim, const int64_t *shape) {
    seen *s = user;
    s->calls++;
    s->convs += strstr(name, "conv") != NULL;
    s->saw_first |= !strcmp(name, "layer1.0.conv1") && ndim == 4 && shape[1] == 64 && data != NULL;
    s->saw_logits |= !strcmp(name, "logits") && ndim == 2 && shape[1] == 26;
}

/* The capture hook sees every conv by its state_dict name and the outputs; off again with NULL. */
START_TEST(capture_hook_names_every_layer)
{
    mi_model *m = mi_fixture_model("resnet18_rand.safetensors");
    mi_session *s;
    ck_assert_int_eq(mi_session_create(&s, m, (int64_t[4]){ 1, 3, 32, 48 }, 0), MI_OK);
    float x[3 * 32 * 48];
    mi_fill_random(x, 3 * 32 * 48, 2);
    seen n = { 0 };
    mi_session_set_capture(s, count, &n);
    ck_assert_int_eq(mi_session_run(s, x), MI_OK);
    ck_assert_int_eq(n.convs, 17);          /* conv1 + 8 blocks x 2 (downsamples are not "conv") */
    ck_assert(n.saw_first && n.saw_logits);
    int calls = n.calls;
    mi_session_set_capture(s, NULL, NULL);
    ck_assert_int_eq(mi_session_run(s, x), MI_OK);
    ck_assert_int_eq(n.calls, calls);
    mi_session_destroy(s);
    mi_model_close(m);
}
END_TEST

/* ResNet-50's stride-2 bottlenecks at 224 x 224 (layer2.0, layer3.0, whose conv2 output rows are
 * whole panels, and layer4.0, whose panels span two rows) have conv1 write its map padded and
 * conv2 read it in place where no capture hook or kept output needs conv1's plain map
 * (nn_conv_padded_out); with a hook they run the plain way. The kept outputs and the logits are
 * the same bits both ways, at 1 and 2 threads, for a batch of two. */
static void no_op(void *user, const char *name, const float *data, int ndim, const int64_t *shape) {
    (void)user, (void)name, (void)data, (void)ndim, (void)shape;
}

START_TEST(padded_bottleneck_same_bits_as_plain)
{
    mi_model *m = mi_fixture_model("resnet50_rand.safetensors");
    const int64_t shape[4] = { 2, 3, 224, 224 };
    float *x = malloc(2 * 3 * 224 * 224 * sizeof(float));
    mi_fill_random(x, 2 * 3 * 224 * 224, 7);
    const char *const outs[] = { "layer2.0.conv2", "layer3.0.conv2", "layer4.0.conv2", "logits" };
    const int64_t n[4] = { 2 * 128 * 28 * 28, 2 * 256 * 14 * 14, 2 * 512 * 7 * 7, 2 * mi_model_num_classes(m) };
    float *got[2][4];
    for (int t = 1; t <= 2; t++)
        for (int hook = 0; hook < 2; hook++) {
            mi_session *s;
            ck_assert_int_eq(mi_session_create_outputs(&s, m, shape, t, outs, 4), MI_OK);
            if (hook) mi_session_set_capture(s, no_op, NULL);
            ck_assert_int_eq(mi_session_run(s, x), MI_OK);
            for (int i = 0; i < 4; i++) {
                int64_t os[4];
                const float *o = mi_session_output(s, outs[i], os);
                ck_assert_ptr_nonnull(o);
                ck_assert_int_eq(os[0] * os[1] * os[2] * os[3], n[i]);
                if (t == 1) {
                    got[hook][i] = malloc((size_t)n[i] * sizeof(float));
                    memcpy(got[hook][i], o, (size_t)n[i] * sizeof(float));
                }
                ck_assert_msg(!memcmp(o, got[0][i], (size_t)n[i] * sizeof(float)), "%s differs: %d threads, hook %d",
                              outs[i], t, hook);
            }
            mi_session_destroy(s);
        }
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 4; i++) free(got[h][i]);
    free(x);
    mi_model_close(m);
}
END_TEST

/* The stage hook is told what the capture hook is given, by the same names and shapes in the same
 * order, where the network without a capture hook writes the stride-2 bottlenecks' conv1 maps
 * padded; the logits are the same bits with no hook, a stage hook and a capture hook, at 1 and 2
 * threads. */
typedef struct { char log[8192]; } stage_log;   /* ResNet-50 names ~70 results: ~2 KB */

static void log_stage(stage_log *l, const char *name, int ndim, const int64_t *shape) {
    char s[64];
    const size_t k = strlen(l->log);
    ck_assert_uint_lt(k + strlen(name) + sizeof s, sizeof l->log);
    snprintf(l->log + k, sizeof l->log - k, "%s%s;", name, mi_shape_str(s, sizeof s, ndim, shape));
}
static void on_stage(void *user, const char *name, int ndim, const int64_t *shape) {
    log_stage(user, name, ndim, shape);
}
static void on_capture(void *user, const char *name, const float *data, int ndim, const int64_t *shape) {
    ck_assert_ptr_nonnull(data);
    log_stage(user, name, ndim, shape);
}

START_TEST(stage_hook_names_what_capture_names)
{
    mi_model *m = mi_fixture_model("resnet50_rand.safetensors");
    const int64_t shape[4] = { 1, 3, 96, 64 };
    float x[3 * 96 * 64], logits[3][1000];
    mi_fill_random(x, 3 * 96 * 64, 11);
    ck_assert_int_eq(mi_model_num_classes(m), 1000);
    for (int t = 1; t <= 2; t++) {
        static stage_log seen[3];
        seen[1].log[0] = seen[2].log[0] = 0;
        for (int way = 0; way < 3; way++) {   /* no hook, a stage hook, a capture hook */
            mi_session *s;
            ck_assert_int_eq(mi_session_create(&s, m, shape, t), MI_OK);
            if (way == 1) mi_session_set_stage_hook(s, on_stage, &seen[1]);
            if (way == 2) mi_session_set_capture(s, on_capture, &seen[2]);
            ck_assert_int_eq(mi_session_run(s, x), MI_OK);
            memcpy(logits[way], mi_session_output(s, "logits", NULL), sizeof logits[way]);
            mi_session_destroy(s);
        }
        ck_assert_str_eq(seen[1].log, seen[2].log);
        static const char head[] = "conv1[1,64,48,32];stem[1,64,24,16];";
        ck_assert_msg(!strncmp(seen[1].log, head, strlen(head)), "%.60s", seen[1].log);
        ck_assert_ptr_nonnull(strstr(seen[1].log, ";layer2.0.conv1[1,128,24,16];layer2.0.conv2[1,128,12,8];"));
        ck_assert_msg(!memcmp(logits[0], logits[1], sizeof logits[0]), "%d threads: other logits with a stage hook", t);
        ck_assert_msg(!memcmp(logits[0], logits[2], sizeof logits[0]), "%d threads: other logits with a capture hook", t);
    }
    mi_model_close(m);
}
END_TEST

typedef struct { const float *out0, *out1; float *copy; size_t n; } block_outs;

static void block_out(void *user, const char *name, const float *data, int ndim, const int64_t *shape) {
    block_outs *b = user;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    if (!strcmp(name, "layer1.0.conv3")) {
        b->out0 = data;
        b->n = n;
        if (b->copy) memcpy(b->copy, data, n * sizeof(float));
    }
    if (!strcmp(name, "layer1.1.conv3")) b->out1 = data;
}

/* A bottleneck adds its identity in place, writing its last conv's output over it, where nothing
 * reads the identity afterwards: layer1.1's output takes layer1.0's place. Where the session keeps
 * layer1.0's output it is left alone, as it was produced; the logits are the same bits either
 * way. */
START_TEST(residual_in_place_spares_kept_outputs)
{
    mi_model *m = mi_fixture_model("resnet50_rand.safetensors");
    const int64_t shape[4] = { 1, 3, 128, 128 };
    float *x = malloc(3 * 128 * 128 * sizeof(float)), logits[2][26];
    mi_fill_random(x, 3 * 128 * 128, 5);
    mi_session *s;
    ck_assert_int_eq(mi_session_create(&s, m, shape, 0), MI_OK);
    block_outs b = { 0 };
    mi_session_set_capture(s, block_out, &b);
    ck_assert_int_eq(mi_session_run(s, x), MI_OK);
    ck_assert_msg(b.out0 && b.out0 == b.out1, "layer1.1's output is not in layer1.0's place");
    memcpy(logits[0], mi_session_output(s, "logits", NULL), sizeof logits[0]);
    mi_session_destroy(s);

    const char *const outs[] = { "layer1.0.conv3", "logits" };
    ck_assert_int_eq(mi_session_create_outputs(&s, m, shape, 0, outs, 2), MI_OK);
    b = (block_outs){ .copy = malloc((size_t)256 * 32 * 32 * sizeof(float)) };
    mi_session_set_capture(s, block_out, &b);
    ck_assert_int_eq(mi_session_run(s, x), MI_OK);
    ck_assert_int_eq(b.n, 256 * 32 * 32);
    ck_assert_ptr_ne(b.out0, b.out1);
    int64_t os[4];
    ck_assert(!memcmp(mi_session_output(s, "layer1.0.conv3", os), b.copy, b.n * sizeof(float)));
    memcpy(logits[1], mi_session_output(s, "logits", NULL), sizeof logits[1]);
    ck_assert(!memcmp(logits[0], logits[1], sizeof logits[0]));
    mi_session_destroy(s);
    free(b.copy);
    free(x);
    mi_model_close(m);
}
END_TEST
#endif

static Suite *suite(void) {
    Suite *s = suite_create("session");
    TCase *tc = tcase_create("api");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, sessions_share_a_model_across_threads);
#ifndef MI_TSAN
    tcase_add_test(tc, model_from_memory);
    tcase_add_test(tc, session_threads_leave_host_openmp_alone);
    tcase_add_test(tc, resnet50_batch8_arena_by_liveness);
    tcase_add_test(tc, padded_bottleneck_same_bits_as_plain);
    tcase_add_test(tc, capture_hook_names_every_layer);
    tcase_add_test(tc, stage_hook_names_what_capture_names);
    tcase_add_test(tc, residual_in_place_spares_kept_outputs);
#endif
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(suite)
