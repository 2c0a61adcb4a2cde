/* nn/classify.c - mi_classify: a session's logits to the k most probable classes per item, the
 * one definition `medinfer classify`, endoqc and integrators share. */
#include "nn/model.h"

#include "ops/act.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static int by_prob_desc(const void *a, const void *b, void *p) {
    const float *prob = p;
    int i = *(const int *)a, j = *(const int *)b;
    return prob[i] < prob[j] ? 1 : prob[i] > prob[j] ? -1 : i - j;  /* ties: lower index first */
}

mi_status mi_classify(mi_session *s, const float *x, int64_t n, int k, mi_class_score *top,
                      float *logits) {
    const mi_model *m = mi_session_model(s);
    const int nc = mi_model_num_classes(m);
    if (k < 1 || k > nc)
        return MI_FAIL(MI_ERR_ARG, "%s: top-%d of %d classes", mi_model_path(m), k, nc);
    mi_status st = mi_session_run_n(s, x, n);
    if (st) return st;
    const float *l = mi_session_output(s, "logits", NULL);
    if (!l) return MI_FAIL(MI_ERR_ARG, "%s: the session keeps no 'logits' output", mi_model_path(m));
    float *prob = malloc((size_t)nc * sizeof *prob);
    int *idx = malloc((size_t)nc * sizeof *idx);
    if (!prob || !idx) {
        free(prob);
        free(idx);
        return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory for %d classes", mi_model_path(m), nc);
    }
    int64_t bad = -1;
    for (int64_t r = 0; r < n; r++) {
        bool finite = true;
        for (int i = 0; i < nc; i++) finite &= isfinite(l[r * nc + i]) != 0;
        if (!finite) {  /* no ranking of garbage: this item's entries say so, the others go on */
            for (int j = 0; j < k; j++) top[r * k + j] = (mi_class_score){ -1, NAN, NULL };
            if (bad < 0) bad = r;
            continue;
        }
        mi_softmax(prob, l + r * nc, 1, nc, 1);
        for (int i = 0; i < nc; i++) idx[i] = i;
        qsort_r(idx, (size_t)nc, sizeof *idx, by_prob_desc, prob);
        for (int j = 0; j < k; j++)
            top[r * k + j] = (mi_class_score){ idx[j], prob[idx[j]], mi_model_label(m, idx[j]) };
    }
    if (logits) memcpy(logits, l, (size_t)(n * nc) * sizeof *logits);
    free(prob);
    free(idx);
    if (bad >= 0)
        return MI_FAIL(MI_ERR_FORMAT, "%s: item %lld has non-finite logits (weights with NaN/Inf?)",
                       mi_model_path(m), (long long)bad);
    return MI_OK;
}
