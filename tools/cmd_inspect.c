/* tools/cmd_inspect.c - `medinfer inspect M.safetensors`: metadata, tensors, SHA-256. */
#include "cli.h"
#include "../weights/safetensors.h"

#include <stdio.h>
#include <string.h>

int mi_cli_error(const char *cmd) {
    fprintf(stderr, "medinfer %s: %s\n", cmd, mi_last_error());
    return MI_EXIT_FAIL;
}

int cmd_inspect(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: medinfer inspect M.safetensors\n");
        return argc == 2 && !strcmp(argv[1], "--help") ? 0 : MI_EXIT_USAGE;
    }
    mi_weights w;
    if (mi_weights_open(&w, argv[1]) != MI_OK) return mi_cli_error("inspect");
    printf("file:    %s\nsha256:  %s\nbytes:   %zu\nmetadata:\n", w.path, w.sha256, w.size);
    for (int i = 0; i < w.nmeta; i++) printf("  %s = %s\n", w.meta_keys[i], w.meta_vals[i]);
    printf("tensors: %d\n", w.ntensors);
    for (int i = 0; i < w.ntensors; i++) {
        char s[96];
        printf("  %-48s %-5s %s\n", w.tensors[i].name, mi_dtype_name(w.tensors[i].dtype),
               mi_shape_str(s, sizeof s, w.tensors[i].ndim, w.tensors[i].shape));
    }
    mi_weights_close(&w);
    return MI_EXIT_OK;
}
