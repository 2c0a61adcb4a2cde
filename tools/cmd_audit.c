/* tools/cmd_audit.c - `medinfer audit verify DB [--expect-head SEQ:HASH]`: walks the hash chain
 * of an audit DB written by --audit (pipelines/trust/audit.c, docs/trust.md). */
#include "tools/cli.h"
#include "pipelines/trust/trust.h"

#include <stdio.h>
#include <string.h>

static int usage(int rc) {
    fputs("usage: medinfer audit verify DB [--expect-head SEQ:HASH]\n"
          "  checks every row of an audit DB written by --audit against the hash chain; prints the\n"
          "  head (SEQ:HASH) to keep elsewhere, so that rows cut from the end are caught next time.\n"
          "Exit codes: 0 intact, 30 rows edited, deleted or inserted, 31 DB unreadable.\n", rc ? stderr : stdout);
    return rc;
}

int cmd_audit(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) return usage(0);
    if (argc < 3 || strcmp(argv[1], "verify")) return usage(MI_EXIT_USAGE);
    const char *db = NULL, *head = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--expect-head") && i + 1 < argc) head = argv[++i];
        else if (argv[i][0] != '-' && !db) db = argv[i];
        else return usage(MI_EXIT_USAGE);
    }
    if (!db) return usage(MI_EXIT_USAGE);
    mi_audit_report rep;
    mi_status st = mi_audit_verify(db, head, &rep);
    if (st == MI_ERR_ARG) { fprintf(stderr, "medinfer audit: %s\n", mi_last_error()); return MI_EXIT_USAGE; }
    if (st != MI_OK) return mi_audit_cli_fail("audit verify");
    if (!rep.intact) {
        fprintf(stderr, "medinfer audit verify: TAMPERED: %s\n", mi_last_error());
        return MI_TRUST_EXIT_AUDIT_BROKEN;
    }
    printf("%s: %lld rows intact\nhead %lld:%s\n", db, rep.rows, rep.head_seq, rep.head_hash);
    return MI_EXIT_OK;
}
