/* tools/cmd_model.c - `medinfer model keygen|sign|verify|hwcode|update|rollback`: signed blobs
 * and their updates (pipelines/trust/, docs/trust.md). */
#include "tools/cli.h"
#include "pipelines/trust/trust.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: medinfer model keygen --out PREFIX [--comment TEXT]   writes PREFIX.key, PREFIX.pub\n"
    "       medinfer model sign --key PREFIX.key M.safetensors    writes M.safetensors.sig\n"
    "       medinfer model verify [--pubkey K] M.safetensors\n"
    "       medinfer model hwcode [--explain]                     this machine's hardware code\n"
    "       medinfer model update --server URL --model-dir DIR [--pubkey K] [--stall-timeout S] [--quiet]\n"
    "       medinfer model rollback --model-dir DIR [--pubkey K]\n"
    "\n"
    "K is a public-key file (default: $MEDINFER_TRUST, else " MI_TRUST_DEFAULT_STORE " if present).\n"
    "Exit codes: 0 ok, 1 bad input, 2 usage, 10 untrusted blob, 20 server error, 21 download\n"
    "incomplete, 22 SHA-256/size mismatch, 23 signature, 24 not newer, 25 hardware not authorized,\n"
    "26 install error, 27 no previous model, 28 blob/manifest mismatch, 29 model dir busy.\n"
    "See docs/trust.md.\n";

static int usage(int rc) {
    fputs(USAGE, rc ? stderr : stdout);
    return rc;
}

/* Options of the form --name VALUE; positional arguments collected in order. */
typedef struct {
    const char *out, *comment, *key, *server, *dir, *stall;
    bool explain, quiet;
    mi_trust_opts trust;
    const char *pos[4];
    int npos;
} args;

static int parse(args *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    struct { const char *name; const char **slot; } opts[] = {
        { "--out", &a->out }, { "--comment", &a->comment }, { "--key", &a->key },
        { "--server", &a->server }, { "--model-dir", &a->dir }, { "--stall-timeout", &a->stall },
    };
    for (int i = 2; i < argc; i++) {
        int r = mi_trust_opt(&a->trust, argc, argv, &i);
        if (r < 0) return -1;
        if (r) continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
        if (!strcmp(argv[i], "--explain")) { a->explain = true; continue; }
        if (!strcmp(argv[i], "--quiet")) { a->quiet = true; continue; }
        bool found = false;
        for (size_t k = 0; k < sizeof opts / sizeof *opts && !found; k++)
            if (!strcmp(argv[i], opts[k].name)) {
                if (i + 1 >= argc) { fprintf(stderr, "medinfer model: %s needs a value\n", argv[i]); return -1; }
                *opts[k].slot = argv[++i];
                found = true;
            }
        if (found) continue;
        if (argv[i][0] == '-' || a->npos == 4) {
            fprintf(stderr, "medinfer model: unexpected argument '%s'\n", argv[i]);
            return -1;
        }
        a->pos[a->npos++] = argv[i];
    }
    return 0;
}

static int keygen(const args *a) {
    if (!a->out || a->npos) return usage(MI_EXIT_USAGE);
    char id[17];
    if (mi_keygen(a->out, a->comment, id) != MI_OK) return mi_cli_error("model keygen");
    printf("key id %s: secret key %s.key (keep it offline), public key %s.pub\n", id, a->out, a->out);
    return MI_EXIT_OK;
}

static int sign(const args *a) {
    if (!a->key || a->npos != 1) return usage(MI_EXIT_USAGE);
    mi_signature s;
    if (mi_sign_blob(a->key, a->pos[0], &s) != MI_OK) return mi_cli_error("model sign");
    printf("%s.sig: key %s, model_version %s, sha256 %s\n", a->pos[0], s.key_id, s.model_version, s.sha256);
    return MI_EXIT_OK;
}

static int verify(const args *a) {
    if (a->npos != 1) return usage(MI_EXIT_USAGE);
    mi_trust_info ti;
    mi_status st = mi_trust_check(a->pos[0], a->trust.pubkey, &ti);
    if (st != MI_OK) return mi_trust_cli_fail("model verify", st);
    if (!ti.key_configured) {
        fprintf(stderr, "medinfer model verify: %s: no trusted public key (--pubkey, MEDINFER_TRUST or "
                MI_TRUST_DEFAULT_STORE "), nothing to verify against\n", a->pos[0]);
        return MI_TRUST_EXIT_UNTRUSTED;
    }
    printf("%s: signature ok: key %s (%s), model_version %s, sha256 %s\n", a->pos[0], ti.key_id, ti.source,
           ti.model_version, ti.blob_sha256);
    return MI_EXIT_OK;
}

static int hwcode(const args *a) {
    if (a->npos) return usage(MI_EXIT_USAGE);
    char code[20], mid[256], cpu[160];
    if (mi_hwcode(code) != MI_OK) return mi_cli_error("model hwcode");
    printf("%s\n", code);
    if (a->explain && mi_hwcode_inputs(mid, sizeof mid, cpu, sizeof cpu) == MI_OK)
        printf("  = first 64 bits of SHA-256(\"medinfer-hwcode-v1\\n\" machine-id \"\\n\" cpu \"\\n\")\n"
               "  machine-id: %s\n  cpu:        %s\n", mid, cpu);
    return MI_EXIT_OK;
}

static int update(const args *a) {
    if (!a->server || !a->dir || a->npos) return usage(MI_EXIT_USAGE);
    mi_update_opts o = { .server = a->server, .model_dir = a->dir, .pubkey = a->trust.pubkey,
                         .stall_s = a->stall ? atol(a->stall) : 0, .quiet = a->quiet };
    if (a->stall && o.stall_s <= 0) return usage(MI_EXIT_USAGE);
    mi_update_result r;
    mi_status st = mi_model_update(&o, &r);
    if (st != MI_OK) {
        fprintf(stderr, "medinfer model update: %s (installed model %s unchanged)\n", mi_last_error(),
                r.installed_version[0] ? r.installed_version : "none");
        return st == MI_ERR_ARG ? MI_EXIT_USAGE : r.exit_code ? r.exit_code : MI_EXIT_FAIL;
    }
    if (r.installed)
        printf("installed model_version %s in %s (previous: %s)\n", r.offered_version, a->dir,
               r.installed_version[0] ? r.installed_version : "none");
    else
        printf("up to date: model_version %s in %s\n", r.installed_version, a->dir);
    return MI_EXIT_OK;
}

static int rollback(const args *a) {
    if (!a->dir || a->npos) return usage(MI_EXIT_USAGE);
    int code = 0;
    char v[64];
    if (mi_model_rollback(a->dir, a->trust.pubkey, &code, v) != MI_OK) {
        fprintf(stderr, "medinfer model rollback: %s\n", mi_last_error());
        return code ? code : MI_EXIT_FAIL;
    }
    printf("rolled back: model_version %s is current in %s (rollback again to undo)\n", v, a->dir);
    return MI_EXIT_OK;
}

int cmd_model(int argc, char **argv) {
    static const struct { const char *name; int (*run)(const args *); } subs[] = {
        { "keygen", keygen }, { "sign", sign }, { "verify", verify },
        { "hwcode", hwcode }, { "update", update }, { "rollback", rollback },
    };
    if (argc < 2) return usage(MI_EXIT_USAGE);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return usage(0);
    args a;
    int p = parse(&a, argc, argv);
    if (p) return p > 0 ? usage(0) : MI_EXIT_USAGE;
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++)
        if (!strcmp(argv[1], subs[i].name)) return subs[i].run(&a);
    fprintf(stderr, "medinfer model: unknown subcommand '%s'\n", argv[1]);
    return usage(MI_EXIT_USAGE);
}
