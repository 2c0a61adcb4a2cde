/* tools/cmd_classify.c - `medinfer classify`: images or .npy tensors through a ResNet blob, one
 * JSON object per input on stdout (JSON Lines), printed as soon as its batch is done, so an
 * error on a later input never loses an earlier result. */
#include "cli.h"
#include "../nn/resnet.h"
#include "../ops/act.h"
#include "../ops/cpu.h"
#include "io/image.h"
#include "trust/trust.h"
#include "../weights/sha256.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: medinfer classify --model M.safetensors [--topk K] [--threads N] [--batch B] [--logits]\n"
    "                         INPUT...\n"
    "  INPUT   PNG/JPEG/BMP (resized and normalized as the blob's metadata says: shorter side to\n"
    "          'resize' (default input_size*256/224), center crop input_size, mean/std), or a\n"
    "          float32 .npy already preprocessed, shape (3,S,S) or (1,3,S,S)\n"
    "  --topk K      classes to report (default 5)\n"
    "  --threads N   worker threads (default: all cores); results are identical for any N\n"
    "  --batch B     images per forward pass (default 8)\n"
    "  --logits      also print every logit (9 significant digits)\n"
    MI_TRUST_USAGE
    "exit: 0 all inputs classified, 1 a model or input could not be read (message names it),\n"
    "      2 usage; refusals of an untrusted blob and audit failures: see docs/trust.md\n";

typedef struct {
    mi_resnet *m;
    int        topk, size;
    bool       logits;
    mi_preprocess_spec pre;
    cJSON     *model;  /* provenance block, same for every result */
    const char *audit;
    mi_trust_info trust;
} classifier;

static int by_prob_desc(const void *a, const void *b, void *p) {
    const float *prob = p;
    int i = *(const int *)a, j = *(const int *)b;
    return prob[i] < prob[j] ? 1 : prob[i] > prob[j] ? -1 : i - j;  /* ties: lower index first */
}

static cJSON *num9(double v) {
    char s[32];
    snprintf(s, sizeof s, "%.9g", v);
    return cJSON_CreateRaw(s);
}

/* Loads one input into dst ([3, S, S]); false (message printed) when it cannot. */
static bool load_input(const classifier *c, const char *path, float *dst) {
    size_t n = strlen(path);
    int64_t plane = (int64_t)c->size * c->size;
    if (n > 4 && !strcasecmp(path + n - 4, ".npy")) {
        float *data;
        int nd;
        int64_t sh[5];
        if (mi_npy_load(path, &data, &nd, sh) != MI_OK) return mi_cli_error("classify"), false;
        bool ok = (nd == 3 && sh[0] == 3 && sh[1] == c->size && sh[2] == c->size) ||
                  (nd == 4 && sh[0] == 1 && sh[1] == 3 && sh[2] == c->size && sh[3] == c->size);
        if (ok) memcpy(dst, data, (size_t)(3 * plane) * sizeof *dst);
        else fprintf(stderr, "medinfer classify: %s: tensor shape does not match the model input "
                     "(3,%d,%d) or (1,3,%d,%d)\n", path, c->size, c->size, c->size, c->size);
        free(data);
        return ok;
    }
    mi_image img;
    if (mi_image_load(&img, path) != MI_OK) return mi_cli_error("classify"), false;
    mi_status st = mi_image_preprocess(&img, c->pre.resize, c->pre.crop, c->pre.mean, c->pre.std, dst);
    mi_image_free(&img);
    return st == MI_OK || (mi_cli_error("classify"), false);
}

/* One hash-chained audit row per result (pipelines/trust): input hash, model, summary. */
static bool audit(const classifier *c, const char *path, const cJSON *top) {
    char sha[65] = "";
    if (mi_sha256_file(path, sha) != 0) {
        fprintf(stderr, "medinfer classify: %s: cannot read to hash it for the audit trail\n", path);
        return false;
    }
    char thresholds[64];
    snprintf(thresholds, sizeof thresholds, "{\"topk\":%d}", c->topk);
    char *result = cJSON_PrintUnformatted(top);
    mi_audit_row row = { .command = "classify", .input_sha256 = sha, .thresholds_json = thresholds,
                         .result_json = result };
    mi_audit_row_model(&row, &c->trust);
    mi_status st = mi_audit_append(c->audit, &row);
    free(result);
    return st == MI_OK || (mi_audit_cli_fail("classify"), false);
}

static bool report(const classifier *c, const char *path, const float *logits) {
    int nc = mi_resnet_num_classes(c->m);
    for (int i = 0; i < nc; i++)
        if (!isfinite(logits[i])) {
            fprintf(stderr, "medinfer classify: %s: logit %d is not finite (weights in %s contain "
                    "NaN/Inf?)\n", path, i, mi_resnet_weights(c->m)->path);
            return false;
        }
    float *prob = malloc((size_t)nc * sizeof *prob);
    int *idx = malloc((size_t)nc * sizeof *idx);
    if (!prob || !idx) { free(prob); free(idx); return false; }
    mi_softmax(prob, logits, 1, nc, 1);
    for (int i = 0; i < nc; i++) idx[i] = i;
    qsort_r(idx, (size_t)nc, sizeof *idx, by_prob_desc, prob);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", path);
    cJSON *top = cJSON_AddArrayToObject(o, "top");
    for (int k = 0; k < c->topk && k < nc; k++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "label", mi_resnet_label(c->m, idx[k]));
        cJSON_AddNumberToObject(t, "index", idx[k]);
        cJSON_AddItemToObject(t, "probability", num9(prob[idx[k]]));
        cJSON_AddItemToArray(top, t);
    }
    if (c->logits) {
        cJSON *l = cJSON_AddArrayToObject(o, "logits");
        for (int i = 0; i < nc; i++) cJSON_AddItemToArray(l, num9(logits[i]));
    }
    cJSON_AddItemReferenceToObject(o, "model", c->model);
    bool ok = !c->audit || audit(c, path, top);
    char *s = cJSON_PrintUnformatted(o);
    puts(s);
    fflush(stdout);
    free(s);
    cJSON_Delete(o);
    free(prob);
    free(idx);
    return ok;
}

int cmd_classify(int argc, char **argv) {
    static const struct option opts[] = {
        { "model", required_argument, 0, 'm' }, { "topk", required_argument, 0, 'k' },
        { "threads", required_argument, 0, 't' }, { "batch", required_argument, 0, 'b' },
        { "logits", no_argument, 0, 'l' }, { "help", no_argument, 0, 'h' },
        { "pubkey", required_argument, 0, 'P' }, { "audit", required_argument, 0, 'A' }, { 0, 0, 0, 0 },
    };
    const char *model = NULL, *pubkey = NULL;
    classifier c = { .topk = 5 };
    int threads = 0, batch = 8, o;
    while ((o = getopt_long(argc, argv, "m:k:t:b:lh", opts, NULL)) != -1) {
        switch (o) {
        case 'm': model = optarg; break;
        case 'k': c.topk = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 'b': batch = atoi(optarg); break;
        case 'l': c.logits = true; break;
        case 'P': pubkey = optarg; break;
        case 'A': c.audit = optarg; break;
        case 'h': fputs(usage, stdout); return MI_EXIT_OK;
        default: fputs(usage, stderr); return MI_EXIT_USAGE;
        }
    }
    if (!model || optind >= argc || c.topk < 1 || threads < 0 || batch < 1 || batch > 256) {
        fputs(usage, stderr);
        return MI_EXIT_USAGE;
    }
    mi_set_threads(threads);
    int ninputs = argc - optind;
    if (batch > ninputs) batch = ninputs;
    if (mi_resnet_open(&c.m, model, batch) != MI_OK) return mi_cli_error("classify");

    const mi_weights *w = mi_resnet_weights(c.m);
    c.size = mi_resnet_input_size(c.m);
    mi_status st = mi_trust_check_weights(w, pubkey, &c.trust);  /* the bytes mapped are the ones checked */
    if (st != MI_OK) {
        mi_resnet_close(c.m);
        return mi_trust_cli_fail("classify", st);
    }
    if (mi_preprocess_spec_from_blob(&c.pre, w) != MI_OK) {
        mi_resnet_close(c.m);
        return mi_cli_error("classify");
    }
    c.model = cJSON_CreateObject();
    cJSON_AddStringToObject(c.model, "arch", mi_resnet_arch(c.m));
    const char *ver = mi_weights_meta(w, "model_version");
    cJSON_AddStringToObject(c.model, "model_version", ver ? ver : "");
    cJSON_AddStringToObject(c.model, "sha256", w->sha256);

    int nc = mi_resnet_num_classes(c.m);
    size_t per = (size_t)3 * c.size * c.size;
    float *x = malloc((size_t)batch * per * sizeof *x), *logits = malloc((size_t)batch * nc * sizeof *logits);
    const char **names = malloc((size_t)batch * sizeof *names);
    int failed = 0;
    if (!x || !logits || !names) {
        fprintf(stderr, "medinfer classify: out of memory\n");
        failed = 1;
    }
    for (int i = optind; !(!x || !logits || !names) && i < argc;) {
        int n = 0;
        for (; i < argc && n < batch; i++) {
            if (load_input(&c, argv[i], x + (size_t)n * per)) names[n++] = argv[i];
            else failed++;
        }
        if (n == 0) continue;
        if (mi_resnet_forward(c.m, x, n, logits) != MI_OK) {
            failed += n;
            mi_cli_error("classify");
            continue;
        }
        for (int k = 0; k < n; k++)
            if (!report(&c, names[k], logits + (size_t)k * nc)) failed++;
    }
    free(x);
    free(logits);
    free(names);
    cJSON_Delete(c.model);
    mi_resnet_close(c.m);
    return failed ? MI_EXIT_FAIL : MI_EXIT_OK;
}
