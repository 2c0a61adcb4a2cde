/* tools/cmd_inspect.c - `medinfer inspect M.safetensors`: metadata, tensors, SHA-256. */
#include "tools/cli.h"
#include "weights/safetensors.h"
#include "pipelines/trust/trust.h"

#include <stdio.h>
#include <string.h>

int mi_cli_error(const char *cmd) {
    fprintf(stderr, "medinfer %s: %s\n", cmd, mi_last_error());
    return MI_EXIT_FAIL;
}

int cmd_inspect(int argc, char **argv) {
    mi_trust_opts trust = { 0 };  /* --pubkey K, --audit DB: see pipelines/trust/trust.h */
    const char *blob = NULL;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        int r = mi_trust_opt(&trust, argc, argv, &i);
        if (r) { bad = r < 0; continue; }
        bad = argv[i][0] == '-' || blob;
        blob = argv[i];
    }
    if (bad || !blob) {
        fprintf(stderr, "usage: medinfer inspect [--pubkey K] [--audit DB] M.safetensors\n" MI_TRUST_USAGE);
        return argc == 2 && !strcmp(argv[1], "--help") ? 0 : MI_EXIT_USAGE;
    }
    mi_weights w;
    if (mi_weights_open(&w, blob) != MI_OK) return mi_cli_error("inspect");
    mi_trust_info ti;  /* checks the bytes just read, so what is shown is what was verified */
    mi_status st = mi_trust_check_weights(&w, trust.pubkey, &ti);
    if (st != MI_OK) { mi_weights_close(&w); return mi_trust_cli_fail("inspect", st); }
    if (trust.audit) {
        char result[64];
        snprintf(result, sizeof result, "{\"tensors\":%d}", w.ntensors);
        mi_audit_row row = { .command = "inspect", .input_sha256 = "", .result_json = result };
        mi_audit_row_model(&row, &ti);
        if (mi_audit_append(trust.audit, &row) != MI_OK) { mi_weights_close(&w); return mi_audit_cli_fail("inspect"); }
    }
    printf("file:    %s\nsha256:  %s\nbytes:   %zu\nmetadata:\n", w.path, w.sha256, w.size);
    for (int i = 0; i < w.nmeta; i++) printf("  %s = %s\n", w.meta_keys[i], w.meta_vals[i]);
    printf("tensors: %d\n", w.ntensors);
    for (int i = 0; i < w.ntensors; i++) {
        char s[96];
        printf("  %-48s %-5s %s\n", w.tensors[i].name, mi_dtype_name(w.tensors[i].dtype),
               mi_shape_str(s, sizeof s, w.tensors[i].ndim, w.tensors[i].shape));
    }
    if (ti.verified) printf("signed:  key %s (%s)\n", ti.key_id, ti.source);
    mi_weights_close(&w);
    return MI_EXIT_OK;
}
