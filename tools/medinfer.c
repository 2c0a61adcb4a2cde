/* tools/medinfer.c - the `medinfer` command: dispatches to one subcommand per file (cmd_*.c). */
#include "tools/cli.h"
#include "ops/cpu.h"

#include <stdio.h>
#include <string.h>

static const struct { const char *name, *help; int (*run)(int, char **); } commands[] = {
    { "classify", "classify images or .npy tensors with a ResNet blob", cmd_classify },
    { "inspect", "print a blob's metadata, tensors and SHA-256", cmd_inspect },
    { "audit",   "verify the hash chain of an --audit database", cmd_audit },
#ifndef MI_STATIC_CLI   /* `make static` keeps the commands whose libraries link statically */
    { "model",   "sign, verify, update and roll back model blobs", cmd_model },
    { "endoqc",  "gastroscopy video completeness QC: verdict, missing sites, contact sheet", cmd_endoqc },
    { "endoqc-synth", "render a synthetic gastroscopy video (demo, tests, training)", cmd_endoqc_synth },
    { "echo",    "M-mode echocardiography: cardiac cycle, wall points, volumes, ejection fraction", cmd_echo },
    { "patho",   "gastric biopsy slides: tissue tiles, V-Net, tile graph, GCN class, heat-map, GeoJSON", cmd_patho },
    { "lesionseg", "endoscopy images and videos: depth-guided lesion masks, overlays, depth, components", cmd_lesionseg },
    { "assist-server", "endoscopy assistant's diagnosis server: frames in, lesions out, findings stored", cmd_assist_server },
    { "assist-terminal", "endoscopy capture terminal: target frames to the diagnosis server, overlays, MP4, web view", cmd_assist_terminal },
#endif
};

static void usage(FILE *f) {
    fprintf(f, "medinfer %s - neural-network inference for medical imaging\n\nusage: medinfer COMMAND [options]\n\n", MI_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n`medinfer COMMAND --help` for a command's options.\n");
}

int main(int argc, char **argv) {
    /* before anything runs: a mistyped MI_ISA would otherwise silently test the wrong kernels */
    if (mi_cpu_check_env() != MI_OK) {
        fprintf(stderr, "medinfer: %s\n", mi_last_error());
        return MI_EXIT_USAGE;
    }
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? MI_EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("medinfer %s\n", MI_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "medinfer: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return MI_EXIT_USAGE;
}
