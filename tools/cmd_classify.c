/* tools/cmd_classify.c - `medinfer classify`: images or .npy tensors through a classifier blob,
 * one JSON object per input on stdout (JSON Lines), printed as soon as its batch is done, so an
 * error on a later input never loses an earlier result. The work is the library's (mi_classify);
 * this file reads inputs, keeps the audit trail and prints. */
#include "tools/cli.h"
#include "nn/model.h"
#include "pipelines/io/image.h"
#include "pipelines/trust/trust.h"
#include "weights/sha256.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char usage[] =
    "usage: medinfer classify --model M.safetensors [--topk K] [--threads N] [--batch B] [--logits]\n"
    "                         INPUT...\n"
    "  INPUT   PNG/JPEG/BMP (resized and normalized as the blob's metadata says: shorter side to\n"
    "          'resize' (default input_size*256/224), center crop input_size, mean/std; with\n"
    "          resize_mode squash, straight to input_size x input_size), or a\n"
    "          float32 .npy already preprocessed, shape (3,H,W) or (1,3,H,W), any H x W\n"
    "  --topk K      classes to report (default 5)\n"
    "  --threads N   worker threads (default 0: all cores); results are identical for any N\n"
    "  --batch B     inputs per forward pass, 1..256 (default 8)\n"
    "  --logits      also print every logit (9 significant digits)\n"
    MI_TRUST_USAGE
    "exit: 0 all inputs classified, 1 a model or input could not be read (message names it),\n"
    "      2 usage; refusals of an untrusted blob and audit failures: see docs/trust.md\n";

typedef struct {
    mi_model   *m;
    mi_session *s;             /* for the current input shape */
    int64_t     h, w;          /* of the inputs in x */
    int         topk, batch, threads;
    bool        logits;
    cJSON      *model;         /* provenance block, same for every result */
    const char *audit;
    mi_trust_info trust;
} classifier;

static cJSON *num9(double v) {
    char s[32];
    snprintf(s, sizeof s, "%.9g", v);
    return cJSON_CreateRaw(s);
}

/* One input as a malloc'd [3, h, w] tensor; NULL (message printed, naming the file) when it
 * cannot be used. */
static float *load_input(const classifier *c, const char *path, int64_t *h, int64_t *w) {
    size_t n = strlen(path);
    if (n > 4 && !strcasecmp(path + n - 4, ".npy")) {
        float *data;
        int nd;
        int64_t sh[5];
        if (mi_npy_load(path, &data, &nd, sh) != MI_OK) return mi_cli_error("classify"), NULL;
        const int64_t *chw = nd == 3 ? sh : nd == 4 && sh[0] == 1 ? sh + 1 : NULL;
        if (!chw || chw[0] != 3) {
            char s[96];
            fprintf(stderr, "medinfer classify: %s: tensor shape %s is not (3,H,W) or (1,3,H,W)\n", path,
                    mi_shape_str(s, sizeof s, nd, sh));
            free(data);
            return NULL;
        }
        for (int64_t i = 0; i < 3 * chw[1] * chw[2]; i++)
            if (!isfinite(data[i])) {
                fprintf(stderr, "medinfer classify: %s: value %lld (channel %lld, y %lld, x %lld) is %s; "
                        "an input tensor must be finite\n", path, (long long)i, (long long)(i / (chw[1] * chw[2])),
                        (long long)(i / chw[2] % chw[1]), (long long)(i % chw[2]), isnan(data[i]) ? "NaN" : "infinite");
                free(data);
                return NULL;
            }
        *h = chw[1];
        *w = chw[2];
        return data;
    }
    const mi_preprocess_spec *p = mi_model_preprocess(c->m);
    mi_image img;
    if (mi_image_load(&img, path) != MI_OK) return mi_cli_error("classify"), NULL;
    float *x = malloc((size_t)3 * p->crop * p->crop * sizeof *x);
    mi_status st = x ? mi_preprocess_rgb8(img.px, img.w, img.h, (size_t)img.w * 3, p, x)
                     : MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path);
    mi_image_free(&img);
    if (st) {
        fprintf(stderr, "medinfer classify: %s: %s\n", path, mi_last_error());
        free(x);
        return NULL;
    }
    *h = *w = p->crop;
    return x;
}

/* One hash-chained audit row per result (pipelines/trust): input hash, model, summary. */
static bool audit(const classifier *c, const char *path, const cJSON *top) {
    char sha[65] = "";
    if (mi_sha256_file(path, sha) != 0) {
        fprintf(stderr, "medinfer classify: %s: cannot read to hash it for the audit trail\n", path);
        return false;
    }
    cJSON *th = cJSON_CreateObject();
    cJSON_AddNumberToObject(th, "topk", c->topk);
    char *thresholds = cJSON_PrintUnformatted(th), *result = cJSON_PrintUnformatted(top);
    mi_audit_row row = { .command = "classify", .input_sha256 = sha, .thresholds_json = thresholds,
                         .result_json = result };
    mi_audit_row_model(&row, &c->trust);
    mi_status st = thresholds && result ? mi_audit_append(c->audit, &row)
                                        : MI_FAIL(MI_ERR_NOMEM, "out of memory writing the audit row");
    free(thresholds);
    free(result);
    cJSON_Delete(th);
    return st == MI_OK;
}

/* Prints one result, after its audit row is written: MI_EXIT_OK, or the audit failure's code
 * (the result is then withheld). */
static int report(const classifier *c, const char *path, const mi_class_score *top, int k,
                  const float *logits, int nc) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", path);
    cJSON *t = cJSON_AddArrayToObject(o, "top");
    for (int j = 0; j < k; j++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "label", top[j].label);
        cJSON_AddNumberToObject(e, "index", top[j].index);
        cJSON_AddItemToObject(e, "probability", num9(top[j].probability));
        cJSON_AddItemToArray(t, e);
    }
    if (c->logits) {
        cJSON *l = cJSON_AddArrayToObject(o, "logits");
        for (int i = 0; i < nc; i++) cJSON_AddItemToArray(l, num9(logits[i]));
    }
    cJSON_AddItemReferenceToObject(o, "model", c->model);
    int rc = MI_EXIT_OK;
    if (c->audit && !audit(c, path, t)) rc = mi_audit_cli_fail("classify");
    char *s = rc == MI_EXIT_OK ? cJSON_PrintUnformatted(o) : NULL;
    if (s) {
        puts(s);
        fflush(stdout);
    }
    free(s);
    cJSON_Delete(o);
    return rc;
}

/* Classifies the n inputs in x (all h x w); failed counts the inputs that got no result.
 * Returns MI_EXIT_OK or an audit failure's code (which stops the command). */
static int run_batch(classifier *c, const float *x, const char **names, int n, int *failed) {
    const int nc = mi_model_num_classes(c->m), k = c->topk < nc ? c->topk : nc;
    mi_class_score *top = malloc((size_t)n * k * sizeof *top);
    float *logits = malloc((size_t)n * nc * sizeof *logits);
    int rc = MI_EXIT_OK;
    if (!top || !logits) {
        fprintf(stderr, "medinfer classify: out of memory\n");
        *failed += n;
    } else {
        mi_status st = mi_classify(c->s, x, n, k, top, logits);
        if (st && st != MI_ERR_FORMAT) {   /* the batch did not run */
            mi_cli_error("classify");
            *failed += n;
        }
        for (int i = 0; !(st && st != MI_ERR_FORMAT) && rc == MI_EXIT_OK && i < n; i++) {
            if (top[(size_t)i * k].index < 0) {
                fprintf(stderr, "medinfer classify: %s: the logits are not finite (weights in %s contain "
                        "NaN/Inf?)\n", names[i], mi_model_path(c->m));
                (*failed)++;
                continue;
            }
            rc = report(c, names[i], top + (size_t)i * k, k, logits + (size_t)i * nc, nc);
        }
    }
    free(top);
    free(logits);
    return rc;
}

/* The session for (batch, 3, h, w), made when the input shape changes. */
static bool session_for(classifier *c, int64_t h, int64_t w) {
    if (c->s && c->h == h && c->w == w) return true;
    mi_session_destroy(c->s);
    c->s = NULL;
    c->h = h;
    c->w = w;
    return mi_session_create(&c->s, c->m, (int64_t[4]){ c->batch, 3, h, w }, c->threads) == MI_OK;
}

static int classify_all(classifier *c, char **inputs, int ninputs) {
    float *x = NULL;
    size_t xcap = 0;
    const char **names = malloc((size_t)c->batch * sizeof *names);
    int failed = 0, rc = MI_EXIT_OK, n = 0;
    if (!names) return fprintf(stderr, "medinfer classify: out of memory\n"), MI_EXIT_FAIL;
    for (int i = 0; rc == MI_EXIT_OK && i <= ninputs; i++) {
        int64_t h = 0, w = 0;
        float *in = i < ninputs ? load_input(c, inputs[i], &h, &w) : NULL;
        if (i < ninputs && !in) {
            failed++;
            continue;
        }
        /* the batch so far goes when it is full, the shape changes or the inputs end */
        if (n > 0 && (!in || n == c->batch || h != c->h || w != c->w)) {
            rc = run_batch(c, x, names, n, &failed);
            n = 0;
        }
        if (!in) continue;
        const size_t per = (size_t)3 * h * w;
        if (!session_for(c, h, w)) {
            fprintf(stderr, "medinfer classify: %s: %s\n", inputs[i], mi_last_error());
            failed++;
            free(in);
            continue;
        }
        if ((size_t)(n + 1) * per > xcap) {
            float *p = realloc(x, (size_t)c->batch * per * sizeof *x);
            if (!p) {
                fprintf(stderr, "medinfer classify: %s: out of memory\n", inputs[i]);
                failed++;
                free(in);
                continue;
            }
            x = p;
            xcap = (size_t)c->batch * per;
        }
        memcpy(x + (size_t)n * per, in, per * sizeof *x);
        names[n++] = inputs[i];
        free(in);
    }
    free(x);
    free(names);
    return rc != MI_EXIT_OK ? rc : failed ? MI_EXIT_FAIL : MI_EXIT_OK;
}

int cmd_classify(int argc, char **argv) {
    classifier c = { .topk = 5, .batch = 8 };
    mi_trust_opts trust = { 0 };
    const char *model = NULL;
    char **inputs = malloc((size_t)argc * sizeof *inputs);
    int ninputs = 0;
    if (!inputs) return fprintf(stderr, "medinfer classify: out of memory\n"), MI_EXIT_FAIL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int tr = mi_trust_opt(&trust, argc, argv, &i), bad = 0;
        if (tr < 0) bad = 1;
        else if (tr) continue;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            free(inputs);
            return MI_EXIT_OK;
        } else if (!strcmp(a, "--logits")) c.logits = true;
        else if (a[0] != '-' || !strcmp(a, "-")) inputs[ninputs++] = argv[i];
        else if (!strcmp(a, "--model") || !strcmp(a, "--topk") || !strcmp(a, "--threads") || !strcmp(a, "--batch")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "medinfer classify: %s needs a value\n", a);
                bad = 1;
            } else {
                const char *v = argv[++i];
                if (!strcmp(a, "--model")) model = v;
                else if (!strcmp(a, "--topk")) bad = mi_cli_int("classify", a, v, 1, 1000000, &c.topk);
                else if (!strcmp(a, "--threads")) bad = mi_cli_int("classify", a, v, 0, 4096, &c.threads);
                else bad = mi_cli_int("classify", a, v, 1, 256, &c.batch);
            }
        } else {
            fprintf(stderr, "medinfer classify: unknown option %s\n", a);
            bad = 1;
        }
        if (bad) {
            fputs(usage, stderr);
            free(inputs);
            return MI_EXIT_USAGE;
        }
    }
    if (!model || ninputs == 0) {
        fprintf(stderr, "medinfer classify: %s\n", !model ? "--model is required" : "no INPUT given");
        fputs(usage, stderr);
        free(inputs);
        return MI_EXIT_USAGE;
    }
    c.audit = trust.audit;
    if (c.batch > ninputs) c.batch = ninputs;

    /* Verify, then parse: a blob is checked against the trust store before anything beyond its
     * safetensors header is read, and the bytes checked are the bytes that run. */
    mi_weights w;
    if (mi_weights_open(&w, model) != MI_OK) {
        free(inputs);
        return mi_cli_error("classify");
    }
    mi_status st = mi_trust_check_weights(&w, trust.pubkey, &c.trust);
    if (st != MI_OK) {
        mi_weights_close(&w);
        free(inputs);
        return mi_trust_cli_fail("classify", st);
    }
    if (mi_model_open_weights(&c.m, &w) != MI_OK) {
        free(inputs);
        return mi_cli_error("classify");
    }
    if (mi_model_num_classes(c.m) < 1) {
        fprintf(stderr, "medinfer classify: %s: a %s backbone without a classification head\n", model,
                mi_model_arch(c.m));
        mi_model_close(c.m);
        free(inputs);
        return MI_EXIT_FAIL;
    }
    c.model = cJSON_CreateObject();
    cJSON_AddStringToObject(c.model, "arch", mi_model_arch(c.m));
    cJSON_AddStringToObject(c.model, "model_version", mi_model_version(c.m));
    cJSON_AddStringToObject(c.model, "sha256", mi_model_sha256(c.m));
    int rc = classify_all(&c, inputs, ninputs);
    cJSON_Delete(c.model);
    mi_session_destroy(c.s);
    mi_model_close(c.m);
    free(inputs);
    return rc;
}
