/* tools/cli.h - shared by the subcommands of the `medinfer` CLI. */
#ifndef MI_CLI_H
#define MI_CLI_H

#include "medinfer.h"

/* Exit codes: documented in README.md; scripts depend on them. */
enum {
    MI_EXIT_OK = 0,
    MI_EXIT_FAIL = 1,      /* bad input file (blob, image, video): message names it */
    MI_EXIT_USAGE = 2,     /* bad command line */
    MI_EXIT_MODEL_UPDATE = 3, /* endoqc --batch: the drift check says the model needs updating */
    MI_EXIT_NO_FINDING = 4,   /* echo: no cycle found, or its points out of order, in an image;
                                 patho: no tile with enough tissue in a slide */
    /* 10-39: trust, update and audit refusals: pipelines/trust/trust.h, docs/trust.md */
};

int cmd_inspect(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_endoqc(int argc, char **argv);
int cmd_endoqc_synth(int argc, char **argv);
int cmd_echo(int argc, char **argv);
int cmd_patho(int argc, char **argv);
int cmd_lesionseg(int argc, char **argv);
int cmd_assist_server(int argc, char **argv);
int cmd_assist_terminal(int argc, char **argv);

/* Parses a whole decimal number in [lo, hi] (nothing else on the line); -1 with a message naming
 * the command, the option and the value otherwise. */
int mi_cli_int(const char *cmd, const char *opt, const char *v, long lo, long hi, int *out);
/* The same for a decimal number in [lo, hi] (NaN never is). */
int mi_cli_double(const char *cmd, const char *opt, const char *v, double lo, double hi, double *out);

/* Prints "medinfer <cmd>: <last error>" to stderr and returns MI_EXIT_FAIL. */
int mi_cli_error(const char *cmd);

#endif
