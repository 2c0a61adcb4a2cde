/* tests/test_patho_steps.c - pipelines/patho tissue, stain and graph steps against
 * tools/patho_ref.py (fixtures from tests/ref_patho_steps.py): synthetic images, the real H&E
 * tiles of ../shared/data/wsi-he/tiles (read here with mi_image_load; skipped visibly when
 * absent), random features. Then degenerate input: every refusal names what is wrong.
 *
 * Bounds (what numpy and this C can differ by, and why):
 *   gray, Otsu threshold, tissue ratio: equal (integer arithmetic; Otsu's float64 expression in
 *   numpy's order).
 *   Macenko HE and maxC: 1e-6 relative to the largest entry (numpy's covariance goes through BLAS
 *   and LAPACK's eigh, ours through plain sums and Jacobi: the last bits differ).
 *   Normalized pixels (Macenko and Reinhard): each within 1 grey level and at least 99.9% equal:
 *   the float64 values before rounding differ in the last bits (BLAS order, libm exp/pow/log
 *   results), so a value within that of a .5 rounds the other way.
 *   Reinhard mean/std: 1e-9 relative. Similarity: 1e-12 absolute. Adjacency, top-K: equal.
 * Measured (x86-64, gcc 12, numpy 1.24 on Debian's reference BLAS): Macenko HE 2.6e-15 and maxC
 * 8.5e-15 relative, Reinhard statistics 1.1e-15, similarity 5.6e-16; every normalized pixel equal
 * (10.9 M Macenko and 12.5 M Reinhard values over the 12 real tiles, and all synthetic ones). The
 * bounds stay looser than that because another BLAS or libm (FMA kernels, SIMD exp) may move a
 * value across a .5. The test prints the figures ("MEASURED" lines). */
#include "tests/mi_test.h"
#include "pipelines/io/image.h"
#include "pipelines/patho/graph.h"
#include "pipelines/patho/stain.h"
#include "pipelines/patho/tissue.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- fixture access: raw tensors of a given dtype ------------------------------------------ */

static const void *raw(const mi_weights *w, const char *key, mi_dtype dt, int64_t *numel) {
    const mi_blob_tensor *t = mi_weights_find(w, key);
    ck_assert_msg(t != NULL, "fixture tensor '%s' is missing", key);
    ck_assert_msg(t->dtype == dt, "fixture tensor '%s' has dtype %s", key, mi_dtype_name(t->dtype));
    ck_assert_msg((uintptr_t)t->data % mi_dtype_size(dt) == 0, "fixture tensor '%s' is misaligned", key);
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    if (numel) *numel = n;
    return t->data;
}
static const double *f64(const mi_weights *w, const char *key) { return raw(w, key, MI_F64, NULL); }
static int64_t i64(const mi_weights *w, const char *key) { return *(const int64_t *)raw(w, key, MI_I64, NULL); }

static cJSON *meta_list(const mi_weights *w, const char *key) {
    cJSON *a = cJSON_Parse(mi_weights_meta(w, key));
    ck_assert_msg(cJSON_IsArray(a), "fixture metadata '%s' is not a list", key);
    return a;
}

/* pixels equal within 1, and the fraction equal; accumulates over a test */
typedef struct { int64_t n, exact, over1; int maxd; } px_stats;

static void compare_px(px_stats *ps, const uint8_t *got, const uint8_t *ref, int64_t n, const char *what) {
    int64_t exact = 0;
    int maxd = 0;
    for (int64_t i = 0; i < n; i++) {
        const int d = abs((int)got[i] - (int)ref[i]);
        exact += d == 0;
        maxd = d > maxd ? d : maxd;
        ps->over1 += d > 1;
    }
    ps->n += n;
    ps->exact += exact;
    ps->maxd = maxd > ps->maxd ? maxd : ps->maxd;
    printf("  %-58s %8lld values, %.5f%% equal, max diff %d\n", what, (long long)n, 100.0 * exact / n, maxd);
    ck_assert_msg(maxd <= 1, "%s: a value differs by %d grey levels", what, maxd);
    ck_assert_msg(exact >= 0.999 * n, "%s: only %.4f%% of the values equal", what, 100.0 * exact / n);
}

static double rel_err(const double *a, const double *b, int n) {
    double m = 0, e = 0;
    for (int i = 0; i < n; i++) {
        m = fmax(m, fabs(b[i]));
        e = fmax(e, fabs(a[i] - b[i]));
    }
    return m > 0 ? e / m : e;
}

typedef struct { px_stats mk, rh; double he_err, maxc_err, rh_err; int images; } img_stats;

/* every step on one image against the reference entries "<c>.*" */
static void check_image(img_stats *s, const mi_weights *w, const char *c, const uint8_t *rgb, int64_t npix) {
    char key[256], what[256];
    s->images++;
    /* tissue */
    uint8_t *gray = malloc((size_t)npix), *out = malloc((size_t)npix * 3);
    mi_patho_gray(gray, rgb, npix);
    int64_t n;
    snprintf(key, sizeof key, "%s.gray", c);
    const uint8_t *g_ref = raw(w, key, MI_U8, &n);
    ck_assert_int_eq(n, npix);
    ck_assert_msg(!memcmp(gray, g_ref, (size_t)npix), "%s: gray differs", c);
    int64_t hist[256];
    mi_patho_gray_histogram(hist, rgb, npix);
    int t;
    ck_assert_int_eq(mi_patho_otsu(hist, &t), MI_OK);
    snprintf(key, sizeof key, "%s.otsu", c);
    ck_assert_msg(t == i64(w, key), "%s: Otsu %d, reference %lld", c, t, (long long)i64(w, key));
    snprintf(key, sizeof key, "%s.ratio", c);
    ck_assert_msg(mi_patho_tissue_ratio(hist, t) == *f64(w, key), "%s: tissue ratio %.17g, reference %.17g",
                  c, mi_patho_tissue_ratio(hist, t), *f64(w, key));

    /* Macenko */
    const size_t sb = mi_patho_macenko_scratch_bytes(npix);
    void *scratch = malloc(sb);
    mi_macenko ref = { .status = MI_STAIN_OK };
    memcpy(ref.he, f64(w, "ref.he"), sizeof ref.he);
    memcpy(ref.max_c, f64(w, "ref.maxc"), sizeof ref.max_c);
    mi_macenko fit;
    memset(out, 0, (size_t)npix * 3);
    ck_assert_int_eq(mi_patho_macenko_normalize(out, rgb, npix, &ref, scratch, sb, &fit), MI_OK);
    snprintf(key, sizeof key, "%s.mk_status", c);
    ck_assert_msg((int64_t)fit.status == i64(w, key), "%s: Macenko status %d, reference %lld", c,
                  (int)fit.status, (long long)i64(w, key));
    if (fit.status == MI_STAIN_OK) {
        snprintf(key, sizeof key, "%s.he", c);
        const double e = rel_err(&fit.he[0][0], f64(w, key), 6);
        snprintf(key, sizeof key, "%s.maxc", c);
        const double em = rel_err(fit.max_c, f64(w, key), 2);
        ck_assert_msg(e <= 1e-6 && em <= 1e-6, "%s: Macenko HE off by %.3g, maxC by %.3g (relative)", c, e, em);
        s->he_err = fmax(s->he_err, e);
        s->maxc_err = fmax(s->maxc_err, em);
        snprintf(key, sizeof key, "%s.mk_norm", c);
        snprintf(what, sizeof what, "%s Macenko", c);
        compare_px(&s->mk, out, raw(w, key, MI_U8, NULL), npix * 3, what);
    }

    /* Reinhard */
    mi_reinhard rf, rref;
    ck_assert_int_eq(mi_patho_reinhard_fit(&rf, rgb, npix), MI_OK);
    snprintf(key, sizeof key, "%s.rh_fit", c);
    const double e = rel_err(rf.mean, f64(w, key), 3), es = rel_err(rf.std, f64(w, key) + 3, 3);
    ck_assert_msg(e <= 1e-9 && es <= 1e-9, "%s: Reinhard mean off by %.3g, std by %.3g (relative)", c, e, es);
    s->rh_err = fmax(s->rh_err, fmax(e, es));
    memcpy(rref.mean, f64(w, "ref.rh"), sizeof rref.mean);
    memcpy(rref.std, f64(w, "ref.rh") + 3, sizeof rref.std);
    ck_assert_int_eq(mi_patho_reinhard_normalize(out, rgb, npix, &rref), MI_OK);
    snprintf(key, sizeof key, "%s.rh_norm", c);
    snprintf(what, sizeof what, "%s Reinhard", c);
    compare_px(&s->rh, out, raw(w, key, MI_U8, NULL), npix * 3, what);
    free(scratch);
    free(gray);
    free(out);
}

static void report(const img_stats *s, const char *set) {
    printf("MEASURED %s (%d images): Macenko HE rel %.2e, maxC rel %.2e; Reinhard stats rel %.2e\n", set,
           s->images, s->he_err, s->maxc_err, s->rh_err);
    printf("MEASURED %s: Macenko pixels %.5f%% equal (%lld values), max diff %d; Reinhard %.5f%% equal "
           "(%lld values), max diff %d\n", set, s->mk.n ? 100.0 * s->mk.exact / s->mk.n : 100.0,
           (long long)s->mk.n, s->mk.maxd, s->rh.n ? 100.0 * s->rh.exact / s->rh.n : 100.0,
           (long long)s->rh.n, s->rh.maxd);
}

START_TEST(synthetic_images_match_reference)
{
    mi_weights w;
    mi_fixture_open(&w, "patho_steps.safetensors");
    cJSON *cases = meta_list(&w, "cases");
    img_stats s = { 0 };
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        char key[256];
        snprintf(key, sizeof key, "%s.rgb", c->valuestring);
        int64_t n;
        const uint8_t *rgb = raw(&w, key, MI_U8, &n);
        check_image(&s, &w, c->valuestring, rgb, n / 3);
    }
    report(&s, "synthetic");
    cJSON_Delete(cases);
    mi_weights_close(&w);
}
END_TEST

START_TEST(real_tiles_match_reference)
{
    const char *dir = mi_shared_data("wsi-he/tiles");
    if (!dir) MI_SKIP("../shared/data/wsi-he/tiles is absent");
    char dirbuf[1024];
    snprintf(dirbuf, sizeof dirbuf, "%s", dir);
    mi_weights w;
    mi_fixture_open(&w, "patho_steps.safetensors");
    cJSON *tiles = meta_list(&w, "tiles");
    if (cJSON_GetArraySize(tiles) == 0) {
        cJSON_Delete(tiles);
        mi_weights_close(&w);
        MI_SKIP("the fixtures were written without the real tiles (rerun tests/ref_patho_steps.py)");
    }
    img_stats s = { 0 };
    const cJSON *t;
    cJSON_ArrayForEach(t, tiles) {
        char path[1400], name[300];
        snprintf(path, sizeof path, "%s/%s", dirbuf, t->valuestring);
        snprintf(name, sizeof name, "tile:%s", t->valuestring);
        mi_image img;
        ck_assert_msg(mi_image_load(&img, path) == MI_OK, "%s", mi_last_error());
        const clock_t t0 = clock();
        check_image(&s, &w, name, img.px, (int64_t)img.w * img.h);
        printf("  %s: %dx%d, all steps %.0f ms\n", t->valuestring, img.w, img.h,
               1e3 * (double)(clock() - t0) / CLOCKS_PER_SEC);
        mi_image_free(&img);
    }
    report(&s, "real tiles");
    cJSON_Delete(tiles);
    mi_weights_close(&w);
}
END_TEST

/* ---- graph steps ------------------------------------------------------------------------------ */

START_TEST(graph_steps_match_reference)
{
    mi_weights w;
    mi_fixture_open(&w, "patho_steps.safetensors");
    int64_t n;
    const mi_blob_tensor *ft = mi_weights_find(&w, "g.feat");
    ck_assert_ptr_nonnull(ft);
    const int64_t K = ft->shape[0], F = ft->shape[1];
    const float *feat = raw(&w, "g.feat", MI_F32, &n);
    double *s = malloc((size_t)(K * K) * sizeof *s), *scr = malloc(mi_patho_similarity_scratch(K, F) * sizeof(double));
    float *a = malloc((size_t)(K * K) * sizeof *a);
    static const char *names[2] = { "g.pearson", "g.cosine" };
    double worst = 0;
    for (int m = 0; m < 2; m++) {
        ck_assert_int_eq(mi_patho_similarity(s, feat, K, F, m == 0 ? MI_SIM_PEARSON : MI_SIM_COSINE, scr), MI_OK);
        const double *ref = f64(&w, names[m]);
        for (int64_t i = 0; i < K * K; i++) {
            ck_assert_msg(fabs(s[i] - ref[i]) <= 1e-12, "%s[%lld][%lld]: %.17g, reference %.17g", names[m],
                          (long long)(i / K), (long long)(i % K), s[i], ref[i]);
            worst = fmax(worst, fabs(s[i] - ref[i]));
        }
        ck_assert(s[12 * K + 12] == (m == 0 ? 0.0 : ref[12 * K + 12]));   /* constant row */
        ck_assert(s[13 * K + 13] == 0.0 && s[13 * K + 2] == 0.0);          /* zero row */
    }
    printf("MEASURED similarity max |err| %.2e\n", worst);

    cJSON *adj = meta_list(&w, "adj");
    for (int i = 0; i < cJSON_GetArraySize(adj); i++) {
        const cJSON *c = cJSON_GetArrayItem(adj, i);
        mi_sim_metric m;
        mi_adj_compare cmp;
        ck_assert_int_eq(mi_sim_metric_parse(cJSON_GetArrayItem(c, 0)->valuestring, &m), MI_OK);
        ck_assert_int_eq(mi_adj_compare_parse(cJSON_GetArrayItem(c, 1)->valuestring, &cmp), MI_OK);
        ck_assert_int_eq(mi_patho_similarity(s, feat, K, F, m, scr), MI_OK);
        ck_assert_int_eq(mi_patho_adjacency(a, s, K, cmp, cJSON_GetArrayItem(c, 2)->valuedouble), MI_OK);
        char key[32];
        snprintf(key, sizeof key, "g.adj%d", i);
        ck_assert_msg(!memcmp(a, raw(&w, key, MI_F32, NULL), (size_t)(K * K) * sizeof *a), "%s differs", key);
    }
    cJSON_Delete(adj);

    /* top-K: every k, items pushed in order, reversed, and interleaved (the result must not depend
     * on arrival order) */
    const float *scores = raw(&w, "g.scores", MI_F32, NULL);
    cJSON *ks = meta_list(&w, "topk");
    const cJSON *kj;
    cJSON_ArrayForEach(kj, ks) {
        const int64_t k = (int64_t)kj->valuedouble;
        char key[32];
        snprintf(key, sizeof key, "g.top%lld", (long long)k);
        int64_t nref;
        const int64_t *ref = raw(&w, key, MI_I64, &nref);
        ck_assert_int_eq(nref, k < K ? k : K);
        const size_t bytes = mi_patho_topk_bytes(k, F);
        void *mem = malloc(bytes);
        float *rows = malloc((size_t)(K * F) * sizeof *rows);
        for (int order = 0; order < 3; order++) {
            mi_patho_topk t;
            ck_assert_int_eq(mi_patho_topk_init(&t, k, F, mem, bytes), MI_OK);
            for (int64_t j = 0; j < K; j++) {
                const int64_t i = order == 0 ? j : order == 1 ? K - 1 - j : (j * 17) % K;   /* 17 coprime to 40 */
                ck_assert_int_eq(mi_patho_topk_push(&t, scores[i], i, feat + i * F), MI_OK);
            }
            ck_assert_int_eq(mi_patho_topk_sort(&t), nref);
            for (int64_t r = 0; r < nref; r++) {
                float sc;
                int64_t idx;
                const float *fv = mi_patho_topk_item(&t, r, &sc, &idx);
                ck_assert_msg(idx == ref[r], "top-%lld (order %d) rank %lld: index %lld, reference %lld",
                              (long long)k, order, (long long)r, (long long)idx, (long long)ref[r]);
                ck_assert(sc == scores[idx] && !memcmp(fv, feat + idx * F, (size_t)F * sizeof *fv));
            }
            ck_assert_ptr_null(mi_patho_topk_item(&t, nref, NULL, NULL));
            ck_assert_int_eq(mi_patho_topk_features(&t, rows), nref);
            for (int64_t r = 0; r < nref; r++)
                ck_assert(!memcmp(rows + r * F, feat + ref[r] * F, (size_t)F * sizeof *rows));
            ck_assert_int_eq(mi_patho_topk_push(&t, 1.0f, 99, feat), MI_ERR_ARG);   /* after sort */
        }
        free(rows);
        free(mem);
    }
    cJSON_Delete(ks);
    free(s);
    free(scr);
    free(a);
    mi_weights_close(&w);
}
END_TEST

/* ---- degenerate input: clear statuses, nothing undefined (run under ASan/UBSan too) -------------- */

START_TEST(degenerate_input_is_refused_clearly)
{
    int64_t hist[256] = { 0 };
    int t = -7;
    ck_assert_int_eq(mi_patho_otsu(hist, &t), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "histogram is empty"));
    ck_assert_int_eq(t, -7);
    ck_assert(mi_patho_tissue_ratio(hist, 100) == 0.0);
    hist[3] = -1;
    ck_assert_int_eq(mi_patho_otsu(hist, &t), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "bin 3 has a negative count"));

    /* Macenko: arguments, an all-white tile (too little stain), a single colour (degenerate) */
    uint8_t px[64 * 64 * 3], out[64 * 64 * 3];
    const int64_t np = 64 * 64;
    char scratch[16 * 64 * 64];
    mi_macenko fit, ref = { .status = MI_STAIN_OK, .he = { { 0.56, 0.22 }, { 0.72, 0.80 }, { 0.41, 0.56 } },
                            .max_c = { 1.97, 1.03 } };
    ck_assert_int_eq(mi_patho_macenko_fit(&fit, px, 0, scratch, sizeof scratch), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "0 pixels"));
    ck_assert_int_eq(mi_patho_macenko_fit(&fit, px, np, scratch, sizeof scratch - 1), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "bytes of scratch for 4096 pixels, 65536 needed"));
    memset(px, 255, sizeof px);
    memset(out, 7, sizeof out);
    ck_assert_int_eq(mi_patho_macenko_normalize(out, px, np, &ref, scratch, sizeof scratch, &fit), MI_OK);
    ck_assert_int_eq(fit.status, MI_STAIN_TOO_LITTLE);
    ck_assert_int_eq(fit.stained, 0);
    ck_assert_int_eq(out[0], 7);   /* untouched */
    ck_assert_int_eq(mi_patho_macenko_apply(out, px, np, &fit, &ref), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "the tile's fit is not usable"));
    for (int64_t i = 0; i < np; i++) { px[3 * i] = 120; px[3 * i + 1] = 40; px[3 * i + 2] = 150; }
    ck_assert_int_eq(mi_patho_macenko_fit(&fit, px, np, scratch, sizeof scratch), MI_OK);
    ck_assert_int_eq(fit.status, MI_STAIN_DEGENERATE);
    ck_assert_int_eq(fit.stained, np);
    mi_macenko bad_ref = ref;
    bad_ref.max_c[1] = NAN;
    for (int64_t i = 0; i < np; i++) px[3 * i + (i % 3)] = (uint8_t)(i % 97);   /* now varied */
    ck_assert_int_eq(mi_patho_macenko_fit(&fit, px, np, scratch, sizeof scratch), MI_OK);
    ck_assert_int_eq(fit.status, MI_STAIN_OK);
    ck_assert_int_eq(mi_patho_macenko_apply(out, px, np, &fit, &bad_ref), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "reference stains are not usable"));
    ck_assert_int_eq(mi_patho_macenko_apply(px, px, np, &fit, &ref), MI_OK);   /* in place */

    /* Reinhard: one colour (its std is 0 or rounding noise, as numpy's sequential mean leaves it;
     * either way every pixel maps to the same colour); a non-finite reference is refused */
    mi_reinhard rf, rref = { .mean = { 1.5, 0.01, -0.02 }, .std = { 0.2, 0.03, 0.01 } };
    memset(px, 200, sizeof px);
    ck_assert_int_eq(mi_patho_reinhard_fit(&rf, px, np), MI_OK);
    ck_assert(rf.std[0] < 1e-12 && rf.std[1] < 1e-12 && rf.std[2] < 1e-12);
    ck_assert_int_eq(mi_patho_reinhard_normalize(out, px, np, &rref), MI_OK);
    for (int64_t i = 1; i < np; i++) ck_assert(!memcmp(out, out + 3 * i, 3));
    ck_assert_int_eq(mi_patho_reinhard_fit(&rf, px, 0), MI_ERR_ARG);
    rref.std[2] = INFINITY;
    ck_assert_int_eq(mi_patho_reinhard_normalize(out, px, np, &rref), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "reference std[2] is not finite"));

    /* features: NaN / inf refused by position; K = 1; adjacency threshold NaN */
    float f[3 * 4] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
    double s[9], scr[16];
    float a[9];
    f[6] = NAN;
    ck_assert_int_eq(mi_patho_similarity(s, f, 3, 4, MI_SIM_PEARSON, scr), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "feature [1][2] is NaN"));
    f[6] = -INFINITY;
    ck_assert_int_eq(mi_patho_similarity(s, f, 3, 4, MI_SIM_COSINE, scr), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "feature [1][2] is infinite"));
    ck_assert_int_eq(mi_patho_similarity(s, f, 0, 4, MI_SIM_COSINE, scr), MI_ERR_ARG);
    ck_assert_int_eq(mi_patho_similarity(s, f, 1, 4, MI_SIM_PEARSON, scr), MI_OK);
    ck_assert(s[0] > 0.999999 && s[0] < 1.000001);
    ck_assert_int_eq(mi_patho_adjacency(a, s, 1, MI_ADJ_GE, 0.5), MI_OK);
    ck_assert(a[0] == 0.0f);   /* never a self edge */
    ck_assert_int_eq(mi_patho_adjacency(a, s, 1, MI_ADJ_GE, NAN), MI_ERR_ARG);
    mi_sim_metric m;
    mi_adj_compare c;
    ck_assert_int_eq(mi_sim_metric_parse("spearman", &m), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "'spearman' is not \"pearson\" or \"cosine\""));
    ck_assert_int_eq(mi_adj_compare_parse(NULL, &c), MI_ERR_ARG);

    /* top-K: bad sizes, NaN scores, k larger than the items, scores only (f = 0) */
    int64_t mem[64];
    mi_patho_topk tk;
    ck_assert_uint_eq(mi_patho_topk_bytes(0, 4), 0);
    ck_assert_int_eq(mi_patho_topk_init(&tk, 0, 4, mem, sizeof mem), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "k = 0"));
    ck_assert_int_eq(mi_patho_topk_init(&tk, 4, 4, mem, 10), MI_ERR_ARG);
    ck_assert_int_eq(mi_patho_topk_init(&tk, 5, 0, mem, sizeof mem), MI_OK);
    ck_assert_int_eq(mi_patho_topk_push(&tk, NAN, 3, NULL), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "item 3 has a NaN score"));
    ck_assert_int_eq(mi_patho_topk_push(&tk, 0.0f, 9, NULL), MI_OK);
    ck_assert_int_eq(mi_patho_topk_push(&tk, -0.0f, 2, NULL), MI_OK);   /* equal to 0: index decides */
    ck_assert_int_eq(mi_patho_topk_sort(&tk), 2);
    int64_t idx;
    mi_patho_topk_item(&tk, 0, NULL, &idx);
    ck_assert_int_eq(idx, 2);
    ck_assert_int_eq(mi_patho_topk_init(&tk, 2, 3, mem, sizeof mem), MI_OK);
    ck_assert_int_eq(mi_patho_topk_push(&tk, 1.0f, 0, NULL), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "no feature vector"));
    ck_assert_int_eq(mi_patho_topk_features(&tk, NULL), -1);   /* not sorted yet */
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("patho_steps");
    TCase *tc = tcase_create("patho_steps");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, synthetic_images_match_reference);
    tcase_add_test(tc, real_tiles_match_reference);
    tcase_add_test(tc, graph_steps_match_reference);
    tcase_add_test(tc, degenerate_input_is_refused_clearly);
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(suite)
