/* tools/cli.c - helpers shared by the subcommands. */
#include "tools/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int mi_cli_int(const char *cmd, const char *opt, const char *v, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "medinfer %s: %s '%s': expected a whole number in [%ld, %ld]\n", cmd, opt, v, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

int mi_cli_double(const char *cmd, const char *opt, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end || errno || !(d >= lo && d <= hi)) {
        fprintf(stderr, "medinfer %s: %s '%s': expected a number in [%g, %g]\n", cmd, opt, v, lo, hi);
        return -1;
    }
    *out = d;
    return 0;
}
