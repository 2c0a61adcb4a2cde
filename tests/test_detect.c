/* tests/test_detect.c - the detection ops (ops/box.h, nms.h, roi.h) against torchvision 0.14 /
 * torch 1.13 (fixtures from tests/ref_detect.py), mi_roi_align against mi_roi_align_ref bit for bit
 * at 1, 2 and 4 threads, and the MI_ERR_ARG cases.
 *
 * Tolerances, with the max error measured on x86-64 (gcc 12, torch 1.13 CPU, fixed seeds):
 *   anchor cells, (w, h) cells, grid anchors, clip, remove_small: exact (0).
 *   decode, encode: exact (0 ulps). They use replicas of torch's SLEEF exp and log; with glibc's
 *   expf and logf instead, decode was 8 ulps off (a 1-ulp exp, then a corner from a cancellation)
 *   and encode 2 ulps.
 *   NMS, batched NMS (both paths), top-k without ties: the same indices in the same order, exact.
 *   Where torch's order among equal values is not defined (torch.topk, and the final unstable
 *   sort of batched NMS above 1000 boxes), the same values and the same kept set, with ties in
 *   ascending index order as ops/nms.h specifies.
 *   RoIAlign (reference and fast path): exact (0) against torch, and bit-identical to each other;
 *   over pyramid levels, bit-identical to each level pooled alone.
 *   RoIPool: exact (0). */
#include "tests/mi_test.h"
#include "ops/box.h"
#include "ops/cpu.h"
#include "ops/nms.h"
#include "ops/roi.h"

#include <math.h>
#include <string.h>

/* ---- fixture helpers ------------------------------------------------------------------- */

static int ncases(const mi_weights *w, const char *kind) {
    long long n;
    ck_assert_int_eq(mi_weights_meta_int(w, kind, 1, 10000, &n), MI_OK);
    return (int)n;
}

static mi_tensor ct(const mi_weights *w, const char *kind, int i, const char *key) {
    char name[64];
    snprintf(name, sizeof name, "%s.%d.%s", kind, i, key);
    return mi_fixture_tensor(w, name);
}

static void *alloc_b(size_t n) {
    void *p = mi_alloc_aligned(n ? n : 1);
    ck_assert_ptr_nonnull(p);
    return p;
}

static void report(const char *what, double err) { printf("max err %-34s %.3g\n", what, err); }

/* Distance in representable floats (0: same value; +0 and -0 count as the same). */
static int64_t ulp_dist(float a, float b) {
    if (a == b) return 0;
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b) ? 0 : INT64_MAX;
    int32_t ia, ib;
    memcpy(&ia, &a, 4);  memcpy(&ib, &b, 4);
    int64_t oa = ia < 0 ? (int64_t)INT32_MIN - ia : ia, ob = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
    return oa > ob ? oa - ob : ob - oa;
}

static int64_t assert_ulps(const float *a, const float *b, int64_t n, int64_t max_ulp, const char *what) {
    int64_t worst = 0, at = -1;
    for (int64_t i = 0; i < n; i++) {
        int64_t d = ulp_dist(a[i], b[i]);
        if (d > worst) { worst = d; at = i; }
    }
    ck_assert_msg(worst <= max_ulp, "%s: %lld ulps at %lld (%.9g vs torch %.9g)", what, (long long)worst,
                  (long long)at, at >= 0 ? (double)a[at] : 0.0, at >= 0 ? (double)b[at] : 0.0);
    return worst;
}

/* keep[0..m) equals the fixture's index list exactly (indices are stored as floats) */
static void assert_same_indices(const int64_t *keep, int64_t m, const mi_tensor *ref, const char *what, int i) {
    int64_t n = mi_tensor_numel(ref);
    ck_assert_msg(m == n, "%s case %d: %lld indices, torch %lld", what, i, (long long)m, (long long)n);
    for (int64_t j = 0; j < n; j++)
        ck_assert_msg(keep[j] == (int64_t)ref->data[j], "%s case %d: position %lld is %lld, torch %lld", what, i,
                      (long long)j, (long long)keep[j], (long long)ref->data[j]);
}

/* ---- boxes ----------------------------------------------------------------------------- */

START_TEST(anchor_cells_match_torchvision)
{
    mi_weights w;
    mi_fixture_open(&w, "detect_box.safetensors");
    for (int i = 0; i < ncases(&w, "cells"); i++) {
        mi_tensor sz = ct(&w, "cells", i, "sizes"), ra = ct(&w, "cells", i, "ratios"), ref = ct(&w, "cells", i, "cell");
        int ns = (int)sz.shape[0], nr = (int)ra.shape[0];
        float (*cell)[4] = alloc_b((size_t)(ns * nr) * sizeof *cell);
        mi_anchor_cells(cell, sz.data, ns, ra.data, nr);
        mi_assert_close(&cell[0][0], ref.data, ns * nr * 4, 0, 0, "anchor cells");
        mi_free_aligned(cell);
    }
    mi_tensor wh = ct(&w, "cells_wh", 0, "wh"), ref = ct(&w, "cells_wh", 0, "cell");
    int n = (int)wh.shape[0];
    float (*cell)[4] = alloc_b((size_t)n * sizeof *cell);
    mi_anchor_cells_wh(cell, (const float (*)[2])wh.data, n);
    mi_assert_close(&cell[0][0], ref.data, n * 4, 0, 0, "anchor cells (w, h)");
    mi_free_aligned(cell);
    mi_weights_close(&w);
}
END_TEST

/* Half-to-even, not half-away: -1.5 and 2.5 are where torch.round and roundf part ways. */
START_TEST(anchor_cells_round_half_even)
{
    const float wh[2][2] = { { 3.0f, 5.0f }, { 5.0f, 1.0f } };
    float cell[2][4];
    mi_anchor_cells_wh(cell, wh, 2);
    ck_assert(cell[0][0] == -2.0f && cell[0][1] == -2.0f && cell[0][2] == 2.0f && cell[0][3] == 2.0f);
    ck_assert(cell[1][0] == -2.0f && cell[1][1] == -0.0f && cell[1][2] == 2.0f && cell[1][3] == 0.0f);
}
END_TEST

START_TEST(anchor_grid_matches_torchvision)
{
    mi_weights w;
    mi_fixture_open(&w, "detect_box.safetensors");
    for (int i = 0; i < ncases(&w, "grid"); i++) {
        mi_tensor p = ct(&w, "grid", i, "p"), cell = ct(&w, "grid", i, "cell"), ref = ct(&w, "grid", i, "anchors");
        int64_t gh = (int64_t)p.data[0], gw = (int64_t)p.data[1], sh = (int64_t)p.data[2], sw = (int64_t)p.data[3];
        int nc = (int)cell.shape[0];
        ck_assert_int_eq(mi_tensor_numel(&ref), gh * gw * nc * 4);
        float (*out)[4] = alloc_b((size_t)(gh * gw * nc) * sizeof *out);
        mi_anchor_grid(out, (const float (*)[4])cell.data, nc, gh, gw, sh, sw);
        mi_assert_close(&out[0][0], ref.data, gh * gw * nc * 4, 0, 0, "grid anchors");
        mi_free_aligned(out);
    }
    mi_weights_close(&w);
}
END_TEST

START_TEST(box_coder_matches_torchvision)
{
    mi_weights w;
    mi_fixture_open(&w, "detect_box.safetensors");
    int64_t worst_dec = 0, worst_enc = 0;
    for (int i = 0; i < ncases(&w, "decode"); i++) {
        mi_tensor wt = ct(&w, "decode", i, "w"), ref = ct(&w, "decode", i, "ref"), rel = ct(&w, "decode", i, "rel");
        mi_tensor out = ct(&w, "decode", i, "out"), clip = ct(&w, "decode", i, "clip");
        mi_box_coder bc = mi_box_coder_default(wt.data[0], wt.data[1], wt.data[2], wt.data[3]);
        ck_assert_float_eq(bc.clip, clip.data[0]);
        int64_t n = ref.shape[0];
        float (*o)[4] = alloc_b((size_t)n * sizeof *o);
        mi_box_decode(o, (const float (*)[4])rel.data, (const float (*)[4])ref.data, n, &bc);
        int64_t u = assert_ulps(&o[0][0], out.data, n * 4, 0, "decode");
        worst_dec = u > worst_dec ? u : worst_dec;

        mi_tensor ewt = ct(&w, "encode", i, "w"), eref = ct(&w, "encode", i, "ref"), gt = ct(&w, "encode", i, "gt");
        mi_tensor erel = ct(&w, "encode", i, "rel");
        bc = mi_box_coder_default(ewt.data[0], ewt.data[1], ewt.data[2], ewt.data[3]);
        mi_box_encode(o, (const float (*)[4])gt.data, (const float (*)[4])eref.data, n, &bc);
        u = assert_ulps(&o[0][0], erel.data, n * 4, 0, "encode");
        worst_enc = u > worst_enc ? u : worst_enc;
        mi_free_aligned(o);
    }
    report("decode (ulps)", (double)worst_dec);
    report("encode (ulps)", (double)worst_enc);
    mi_weights_close(&w);
}
END_TEST

START_TEST(clip_and_small_match_torchvision)
{
    mi_weights w;
    mi_fixture_open(&w, "detect_box.safetensors");
    mi_tensor sz = ct(&w, "clip", 0, "size"), b = ct(&w, "clip", 0, "boxes"), ref = ct(&w, "clip", 0, "out");
    int64_t n = b.shape[0];
    float (*o)[4] = alloc_b((size_t)n * sizeof *o);
    memcpy(o, b.data, (size_t)n * sizeof *o);
    mi_box_clip(o, n, sz.data[0], sz.data[1]);
    mi_assert_close(&o[0][0], ref.data, n * 4, 0, 0, "clip");
    mi_free_aligned(o);

    for (int i = 0; i < ncases(&w, "small"); i++) {
        mi_tensor ms = ct(&w, "small", i, "min_size"), sb = ct(&w, "small", i, "boxes"), keep = ct(&w, "small", i, "keep");
        int64_t *k = alloc_b((size_t)sb.shape[0] * sizeof *k);
        int64_t m = mi_box_remove_small(k, (const float (*)[4])sb.data, sb.shape[0], ms.data[0]);
        assert_same_indices(k, m, &keep, "remove_small", i);
        mi_free_aligned(k);
    }
    mi_weights_close(&w);
}
END_TEST

/* ---- NMS, top-k ------------------------------------------------------------------------ */

START_TEST(nms_matches_torchvision)
{
    mi_weights w;
    mi_fixture_open(&w, "detect_nms.safetensors");
    int ties = 0;
    for (int i = 0; i < ncases(&w, "nms"); i++) {
        mi_tensor b = ct(&w, "nms", i, "boxes"), s = ct(&w, "nms", i, "scores"), thr = ct(&w, "nms", i, "thr");
        mi_tensor keep = ct(&w, "nms", i, "keep");
        int64_t n = b.shape[0];
        for (int64_t j = 1; j < n; j++) ties += s.data[j] == s.data[j - 1];
        int64_t *k = alloc_b((size_t)n * sizeof *k);
        void *scratch = alloc_b(mi_nms_scratch_bytes(n));
        int64_t m = mi_nms(k, (const float (*)[4])b.data, s.data, n, thr.data[0], scratch);
        assert_same_indices(k, m, &keep, "nms", i);
        mi_free_aligned(k);
        mi_free_aligned(scratch);
    }
    ck_assert_msg(ties > 100, "the fixture should exercise equal scores (%d adjacent ties)", ties);
    mi_weights_close(&w);
}
END_TEST

/* keep has descending scores with equal scores in ascending index order */
static void assert_tie_rule(const int64_t *keep, int64_t m, const float *v, const char *what, int i) {
    for (int64_t j = 1; j < m; j++) {
        float a = v[keep[j - 1]], b = v[keep[j]];
        ck_assert_msg(a > b || (a == b && keep[j - 1] < keep[j]), "%s case %d: positions %lld, %lld out of order",
                      what, i, (long long)(j - 1), (long long)j);
    }
}

START_TEST(batched_nms_matches_torchvision)
{
    mi_weights w;
    mi_fixture_open(&w, "detect_nms.safetensors");
    int sides[2] = { 0, 0 };
    for (int i = 0; i < ncases(&w, "batched"); i++) {
        mi_tensor b = ct(&w, "batched", i, "boxes"), s = ct(&w, "batched", i, "scores"), ix = ct(&w, "batched", i, "idx");
        mi_tensor thr = ct(&w, "batched", i, "thr"), keep = ct(&w, "batched", i, "keep");
        bool distinct = ct(&w, "batched", i, "distinct").data[0] != 0;
        bool vanilla = ct(&w, "batched", i, "vanilla").data[0] != 0;
        int64_t n = b.shape[0];
        sides[vanilla]++;
        int64_t *idx = alloc_b((size_t)n * sizeof *idx), *k = alloc_b((size_t)n * sizeof *k);
        for (int64_t j = 0; j < n; j++) idx[j] = (int64_t)ix.data[j];
        void *scratch = alloc_b(mi_batched_nms_scratch_bytes(n));
        int64_t m = mi_batched_nms(k, (const float (*)[4])b.data, s.data, idx, n, thr.data[0], scratch);
        if (distinct || !vanilla) {
            assert_same_indices(k, m, &keep, "batched_nms", i);
        } else {
            /* torch's final sort is unstable: the same kept set and score sequence, our tie order */
            int64_t nk = mi_tensor_numel(&keep);
            ck_assert_int_eq(m, nk);
            unsigned char *in_ref = alloc_b((size_t)n);
            memset(in_ref, 0, (size_t)n);
            for (int64_t j = 0; j < nk; j++) in_ref[(int64_t)keep.data[j]] = 1;
            for (int64_t j = 0; j < m; j++) {
                ck_assert_msg(in_ref[k[j]], "batched_nms case %d: kept %lld, torch did not", i, (long long)k[j]);
                ck_assert(s.data[k[j]] == s.data[(int64_t)keep.data[j]]);
            }
            assert_tie_rule(k, m, s.data, "batched_nms", i);
            mi_free_aligned(in_ref);
        }
        mi_free_aligned(idx);
        mi_free_aligned(k);
        mi_free_aligned(scratch);
    }
    ck_assert_msg(sides[0] >= 4 && sides[1] >= 4, "both sides of the 1000-box switch: %d, %d", sides[0], sides[1]);
    mi_weights_close(&w);
}
END_TEST

START_TEST(topk_matches_torch)
{
    mi_weights w;
    mi_fixture_open(&w, "detect_nms.safetensors");
    for (int i = 0; i < ncases(&w, "topk"); i++) {
        mi_tensor v = ct(&w, "topk", i, "v"), vals = ct(&w, "topk", i, "vals"), ref = ct(&w, "topk", i, "idx");
        int64_t n = v.shape[0], k = (int64_t)ct(&w, "topk", i, "k").data[0];
        bool distinct = ct(&w, "topk", i, "distinct").data[0] != 0;
        int64_t *idx = alloc_b((size_t)k * sizeof *idx);
        void *scratch = alloc_b(mi_topk_scratch_bytes(n));
        mi_topk(idx, v.data, n, k, scratch);
        for (int64_t j = 0; j < k; j++)
            ck_assert_msg(v.data[idx[j]] == vals.data[j], "topk case %d: value %lld differs", i, (long long)j);
        if (distinct) assert_same_indices(idx, k, &ref, "topk", i);
        assert_tie_rule(idx, k, v.data, "topk", i);
        mi_free_aligned(idx);
        mi_free_aligned(scratch);
    }
    mi_weights_close(&w);
}
END_TEST

/* Scores all equal, boxes all the same: the first index survives (a stable sort), and duplicates
   with IoU exactly 1 are suppressed for any threshold below 1, not at 1. */
START_TEST(nms_ties_keep_index_order)
{
    float b[6][4], s[6];
    for (int i = 0; i < 6; i++) { b[i][0] = 1; b[i][1] = 2; b[i][2] = 5; b[i][3] = 9; s[i] = 0.5f; }
    s[4] = 0.75f;
    int64_t keep[6];
    unsigned char scratch[4096];
    ck_assert_uint_le(mi_nms_scratch_bytes(6), sizeof scratch);
    ck_assert_int_eq(mi_nms(keep, (const float (*)[4])b, s, 6, 0.5f, scratch), 1);
    ck_assert_int_eq(keep[0], 4);
    s[4] = 0.5f;
    ck_assert_int_eq(mi_nms(keep, (const float (*)[4])b, s, 6, 0.99f, scratch), 1);
    ck_assert_int_eq(keep[0], 0);
    ck_assert_int_eq(mi_nms(keep, (const float (*)[4])b, s, 6, 1.0f, scratch), 6);
    for (int i = 0; i < 6; i++) ck_assert_int_eq(keep[i], i);
    ck_assert_int_eq(mi_nms(keep, (const float (*)[4])b, s, 0, 0.5f, scratch), 0);
}
END_TEST

/* ---- RoIAlign, RoIPool ----------------------------------------------------------------- */

typedef struct { const mi_tensor *x; const float (*rois)[5]; int64_t k; mi_roi_desc d; } roi_case;

static mi_tensor out_tensor(int64_t k, int64_t C, const mi_roi_desc *d) {
    int64_t shape[4] = { k, C, d->out_h, d->out_w };
    mi_tensor y = mi_tensor_view(alloc_b((size_t)(k * C * d->out_h * d->out_w + 1) * sizeof(float)), 4, shape, "y");
    for (int64_t i = 0; i < mi_tensor_numel(&y); i++) y.data[i] = NAN;
    return y;
}

START_TEST(roi_align_matches_torchvision)
{
    mi_weights w;
    mi_fixture_open(&w, "detect_roi.safetensors");
    double worst_ref = 0, worst_fast = 0;
    for (int i = 0; i < ncases(&w, "align"); i++) {
        mi_tensor x = ct(&w, "align", i, "x"), r = ct(&w, "align", i, "rois"), p = ct(&w, "align", i, "p");
        mi_tensor ref = ct(&w, "align", i, "y");
        mi_roi_desc d = { (int64_t)p.data[0], (int64_t)p.data[1], p.data[2], (int)p.data[3], p.data[4] != 0 };
        int64_t k = r.shape[0], n = mi_tensor_numel(&ref);
        char what[64];
        snprintf(what, sizeof what, "roi_align case %d", i);
        mi_tensor y = out_tensor(k, x.shape[1], &d), y2 = out_tensor(k, x.shape[1], &d);
        ck_assert_int_eq(mi_roi_align_ref(&y, &x, (const float (*)[5])r.data, k, &d), MI_OK);
        double e = mi_assert_close(y.data, ref.data, n, 0, 0, what);
        worst_ref = e > worst_ref ? e : worst_ref;
        for (int t = 1; t <= 4; t *= 2) {
            mi_set_threads(t);
            memset(y2.data, 0xff, (size_t)n * sizeof(float));
            ck_assert_int_eq(mi_roi_align(&y2, &x, (const float (*)[5])r.data, k, &d), MI_OK);
            ck_assert_msg(memcmp(y.data, y2.data, (size_t)n * sizeof(float)) == 0,
                          "%s: mi_roi_align at %d threads differs from mi_roi_align_ref", what, t);
        }
        mi_set_threads(0);
        e = mi_assert_close(y2.data, ref.data, n, 0, 0, what);
        worst_fast = e > worst_fast ? e : worst_fast;
        mi_free_aligned(y.data);
        mi_free_aligned(y2.data);
    }
    report("roi_align ref", worst_ref);
    report("roi_align", worst_fast);
    mi_weights_close(&w);
}
END_TEST

/* A bin row too long for the fast path's stack buffer takes its per-sample route: still the same bits. */
START_TEST(roi_align_long_rows_equal_ref)
{
    int64_t shape[4] = { 2, 3, 40, 50 };
    mi_tensor x = mi_tensor_view(alloc_b(2 * 3 * 40 * 50 * sizeof(float)), 4, shape, "x");
    mi_fill_random(x.data, mi_tensor_numel(&x), 7);
    const float rois[3][5] = { { 1, -3.5f, 2.25f, 48.0f, 39.0f }, { 0, 0, 0, 50, 40 }, { 1, 10, 10, 10.5f, 30 } };
    mi_roi_desc d = { 14, 14, 1.0f, 0, true };       /* 14 bins, adaptive: 4x4 samples, 224 per row... */
    mi_roi_desc d2 = { 5, 30, 1.0f, 8, false };      /* ...and 8x8 samples x 30 bins = 1920 per row */
    const mi_roi_desc *ds[2] = { &d, &d2 };
    for (int j = 0; j < 2; j++) {
        mi_tensor y = out_tensor(3, 3, ds[j]), y2 = out_tensor(3, 3, ds[j]);
        ck_assert_int_eq(mi_roi_align_ref(&y, &x, rois, 3, ds[j]), MI_OK);
        ck_assert_int_eq(mi_roi_align(&y2, &x, rois, 3, ds[j]), MI_OK);
        ck_assert(memcmp(y.data, y2.data, (size_t)mi_tensor_numel(&y) * sizeof(float)) == 0);
        mi_free_aligned(y.data);
        mi_free_aligned(y2.data);
    }
    mi_free_aligned(x.data);
}
END_TEST

/* MultiScaleRoIAlign's pooling: four maps of a pyramid (strides 4..32 of a 64x96 image, C = 20
 * so channel blocks have a tail), RoIs on every level and on none (-1, 4: zero rows), in a mixed
 * order. mi_roi_align_levels equals the reference RoI by RoI, and each level's rows equal
 * mi_roi_align on that level's RoIs alone, bit for bit at 1, 2 and 4 threads. */
START_TEST(roi_align_levels_equal_per_level)
{
    enum { L = 4, K = 37, C = 20 };
    mi_tensor maps[L];
    const mi_tensor *xs[L];
    const float scales[L] = { 0.25f, 0.125f, 0.0625f, 0.03125f };
    for (int l = 0; l < L; l++) {
        int64_t shape[4] = { 2, C, 16 >> l, 24 >> l };
        maps[l] = mi_tensor_view(alloc_b((size_t)(2 * C * shape[2] * shape[3]) * sizeof(float)), 4, shape, "fpn");
        mi_fill_random(maps[l].data, mi_tensor_numel(&maps[l]), 11 + (uint64_t)l);
        xs[l] = &maps[l];
    }
    float rois[K][5], unit[K * 4];
    int level[K];
    mi_fill_random(unit, K * 4, 5);
    for (int r = 0; r < K; r++) {
        float x1 = (unit[4 * r] + 1) * 40 - 8, y1 = (unit[4 * r + 1] + 1) * 28 - 6;
        rois[r][0] = (float)(r % 2);
        rois[r][1] = x1, rois[r][2] = y1;
        rois[r][3] = x1 + (unit[4 * r + 2] + 1) * 30, rois[r][4] = y1 + (unit[4 * r + 3] + 1) * 25;
        level[r] = (r * 7) % (L + 2) - 1;                      /* -1 .. 4 */
    }
    const mi_roi_desc descs[2] = { { 7, 7, 1.0f, 2, false }, { 3, 5, 1.0f, 0, false } };
    for (int j = 0; j < 2; j++) {
        const mi_roi_desc *d = &descs[j];
        mi_tensor y = out_tensor(K, C, d), y2 = out_tensor(K, C, d), y1 = out_tensor(K, C, d);
        const int64_t per = C * d->out_h * d->out_w, n = K * per;
        ck_assert_int_eq(mi_roi_align_levels_ref(&y, xs, scales, L, level, (const float (*)[5])rois, K, d), MI_OK);
        for (int r = 0; r < K; r++)
            if (level[r] < 0 || level[r] >= L)
                for (int64_t i = 0; i < per; i++) ck_assert(y.data[r * per + i] == 0.0f);
        for (int l = 0; l < L; l++) {                       /* each level's RoIs alone */
            float sel[K][5];
            int64_t m = 0;
            for (int r = 0; r < K; r++)
                if (level[r] == l) memcpy(sel[m++], rois[r], sizeof sel[0]);
            mi_roi_desc dl = *d;
            dl.spatial_scale = scales[l];
            y1.shape[0] = m;
            ck_assert_int_eq(mi_roi_align(&y1, xs[l], (const float (*)[5])sel, m, &dl), MI_OK);
            for (int r = 0, i = 0; r < K; r++)
                if (level[r] == l)
                    ck_assert_msg(!memcmp(y.data + r * per, y1.data + (i++) * per, (size_t)per * sizeof(float)),
                                  "desc %d: RoI %d differs from level %d pooled alone", j, r, l);
        }
        for (int t = 1; t <= 4; t *= 2) {
            mi_set_threads(t);
            memset(y2.data, 0xff, (size_t)n * sizeof(float));
            ck_assert_int_eq(mi_roi_align_levels(&y2, xs, scales, L, level, (const float (*)[5])rois, K, d), MI_OK);
            ck_assert_msg(!memcmp(y.data, y2.data, (size_t)n * sizeof(float)),
                          "desc %d: mi_roi_align_levels at %d threads differs from the reference", j, t);
        }
        mi_set_threads(0);
        mi_free_aligned(y.data);
        mi_free_aligned(y2.data);
        mi_free_aligned(y1.data);
    }
    /* refusals name the map: a level whose channels differ, a level count out of range */
    mi_roi_desc d = descs[0];
    mi_tensor y = out_tensor(K, C, &d);
    maps[2].shape[1] = C - 1;
    ck_assert_int_eq(mi_roi_align_levels(&y, xs, scales, L, level, (const float (*)[5])rois, K, &d), MI_ERR_SHAPE);
    maps[2].shape[1] = C;
    ck_assert_int_eq(mi_roi_align_levels(&y, xs, scales, 0, level, (const float (*)[5])rois, K, &d), MI_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(mi_last_error(), "0 levels"));
    mi_free_aligned(y.data);
    for (int l = 0; l < L; l++) mi_free_aligned(maps[l].data);
}
END_TEST

START_TEST(roi_pool_matches_torchvision)
{
    mi_weights w;
    mi_fixture_open(&w, "detect_roi.safetensors");
    for (int i = 0; i < ncases(&w, "pool"); i++) {
        mi_tensor x = ct(&w, "pool", i, "x"), r = ct(&w, "pool", i, "rois"), p = ct(&w, "pool", i, "p");
        mi_tensor ref = ct(&w, "pool", i, "y");
        mi_roi_desc d = { (int64_t)p.data[0], (int64_t)p.data[1], p.data[2], 0, false };
        int64_t k = r.shape[0];
        mi_tensor y = out_tensor(k, x.shape[1], &d);
        ck_assert_int_eq(mi_roi_pool(&y, &x, (const float (*)[5])r.data, k, &d), MI_OK);
        mi_assert_close(y.data, ref.data, mi_tensor_numel(&ref), 0, 0, "roi_pool");
        mi_free_aligned(y.data);
    }
    mi_weights_close(&w);
}
END_TEST

START_TEST(roi_rejects_bad_input)
{
    int64_t shape[4] = { 2, 3, 8, 8 };
    mi_tensor x = mi_tensor_view(alloc_b(2 * 3 * 8 * 8 * sizeof(float)), 4, shape, "feat");
    mi_fill_random(x.data, mi_tensor_numel(&x), 3);
    mi_roi_desc d = { 2, 2, 0.5f, 2, true };
    mi_tensor y = out_tensor(1, 3, &d);
    typedef mi_status (*roi_fn)(mi_tensor *, const mi_tensor *, const float (*)[5], int64_t, const mi_roi_desc *);
    roi_fn fns[3] = { mi_roi_align, mi_roi_align_ref, mi_roi_pool };
    const float bad[][5] = {
        { -1, 0, 0, 4, 4 }, { 2, 0, 0, 4, 4 }, { 2.5f, 0, 0, 4, 4 }, { NAN, 0, 0, 4, 4 },
        { 0, NAN, 0, 4, 4 }, { 0, 0, INFINITY, 4, 4 }, { 0, 0, 0, -INFINITY, 4 }, { 1, 0, 0, 4, NAN },
    };
    for (int f = 0; f < 3; f++) {
        for (size_t j = 0; j < sizeof bad / sizeof *bad; j++) {
            ck_assert_msg(fns[f](&y, &x, &bad[j], 1, &d) == MI_ERR_ARG, "fn %d, roi %zu accepted", f, j);
            ck_assert(strstr(mi_last_error(), "feat") != NULL);
        }
        const float ok[2][5] = { { -0.5f, 0, 0, 4, 4 }, { 1.99f, 1, 1, 7, 7 } };   /* truncate to 0 and 1 */
        ck_assert_int_eq(fns[f](&y, &x, &ok[0], 1, &d), MI_OK);
        ck_assert_int_eq(fns[f](&y, &x, &ok[1], 1, &d), MI_OK);
        mi_tensor y2 = out_tensor(2, 3, &d);                          /* wrong number of RoIs */
        ck_assert_int_eq(fns[f](&y2, &x, ok, 1, &d), MI_ERR_SHAPE);
        mi_free_aligned(y2.data);
        mi_roi_desc z = d;
        z.out_w = 0;
        ck_assert_int_eq(fns[f](&y, &x, ok, 1, &z), MI_ERR_ARG);
    }
    /* an adaptive grid torchvision would overflow an int with */
    mi_roi_desc a = { 2, 2, 1.0f, 0, false };
    const float huge[1][5] = { { 0, -1e30f, 0, 1e30f, 4 } };
    ck_assert_int_eq(mi_roi_align(&y, &x, huge, 1, &a), MI_ERR_ARG);
    ck_assert_int_eq(mi_roi_align_ref(&y, &x, huge, 1, &a), MI_ERR_ARG);
    ck_assert_int_eq(mi_roi_pool(&y, &x, huge, 1, &a), MI_ERR_ARG);
    /* the same RoI with a fixed grid is fine: its samples all fall outside the map */
    a.sampling_ratio = 2;
    ck_assert_int_eq(mi_roi_align(&y, &x, huge, 1, &a), MI_OK);
    for (int j = 0; j < 3 * 2 * 2; j++) ck_assert(y.data[j] == 0.0f);
    mi_free_aligned(y.data);
    mi_free_aligned(x.data);
}
END_TEST

static Suite *detect_suite(void) {
    Suite *s = suite_create("detect");
    TCase *tc = tcase_create("detect");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, anchor_cells_match_torchvision);
    tcase_add_test(tc, anchor_cells_round_half_even);
    tcase_add_test(tc, anchor_grid_matches_torchvision);
    tcase_add_test(tc, box_coder_matches_torchvision);
    tcase_add_test(tc, clip_and_small_match_torchvision);
    tcase_add_test(tc, nms_matches_torchvision);
    tcase_add_test(tc, batched_nms_matches_torchvision);
    tcase_add_test(tc, topk_matches_torch);
    tcase_add_test(tc, nms_ties_keep_index_order);
    tcase_add_test(tc, roi_align_matches_torchvision);
    tcase_add_test(tc, roi_align_long_rows_equal_ref);
    tcase_add_test(tc, roi_align_levels_equal_per_level);
    tcase_add_test(tc, roi_pool_matches_torchvision);
    tcase_add_test(tc, roi_rejects_bad_input);
    suite_add_tcase(s, tc);
    return s;
}

MI_TEST_MAIN(detect_suite)
