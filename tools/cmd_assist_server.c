/* tools/cmd_assist_server.c - `medinfer assist-server`: the diagnosis server of the endoscopy
 * assistant (pipelines/assist/server.c, docs/assist.md), and `--verify-db DB`, the check of its
 * findings database's hash chains. */
#include "tools/cli.h"

#include "nn/model.h"
#include "pipelines/assist/analyze.h"
#include "pipelines/assist/server.h"
#include "pipelines/trust/trust.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *usage =
    "usage: medinfer assist-server --model BLOB --tokens FILE --db FINDINGS.sqlite [options]\n"
    "       medinfer assist-server --verify-db FINDINGS.sqlite\n"
    "  The diagnosis server of the endoscopy assistant: terminals post frames, the server judges\n"
    "  their quality, runs the detector, stores findings (SQLite, hash-chained) and answers with\n"
    "  lesions, probabilities and boxes. HTTP/1.1 + JSON; docs/assist.md has the API.\n"
    "  --model BLOB          detector blob (fasterrcnn_fpn or fasterrcnn_c4)\n"
    "  --tokens FILE         bearer tokens: one 'TOKEN terminal|workstation NAME' per line\n"
    "  --db FILE             findings database (created if absent)\n"
    "  --port N              TCP port (default 8750; 0: any free port, printed)\n"
    "  --bind ADDR           address to listen on (default 127.0.0.1)\n"
    "  --port-file PATH      write the port there once listening\n"
    "  --workers N           inference workers (default: the cores)\n"
    "  --threads N           OpenMP threads per worker (default: cores / workers, at least 1)\n"
    "  --queue N             frames waiting for a worker before 503 (default 2 x workers)\n"
    "  --max-connections N   open connections (default 64)\n"
    "  --max-body BYTES      largest request body (default 8388608); larger: 413\n"
    "  --max-side N          largest frame side in pixels (default 4096)\n"
    "  --thumbnail-side N    findings' thumbnails, longer side in pixels (default 160)\n"
    "  --score-threshold P   lesions below are not reported (default: the blob's metadata\n"
    "                        score_threshold, chosen on validation images; else 0.5)\n"
    "  --alert-threshold P   a high-risk lesion at or above raises an alert (default 0.8)\n"
    "  --luma-lo V --luma-hi V --sobel-min V --glare-level N --glare-max F\n"
    "                        frame quality thresholds (defaults 30, 220, 8, 235, 0.15)\n"
    "  --quiet               no per-request log lines on stderr\n"
    "  --pubkey K            trusted public key file; refuses blobs not signed by it\n"
    "                        (default: $MEDINFER_TRUST, else " MI_TRUST_DEFAULT_STORE " if present)\n"
    "  Stops on SIGINT or SIGTERM after answering the requests in flight.\n"
    "Exit codes: 0 stopped cleanly or database intact, 1 cannot start (message says why), 2 usage,\n"
    "  10 untrusted blob, 30 database tampered with, 31 database unreadable.\n";

static int verify(const char *db) {
    mi_assist_verify_report r;
    if (mi_assist_store_verify(db, &r)) {
        fprintf(stderr, "medinfer assist-server: %s\n", mi_last_error());
        return MI_TRUST_EXIT_AUDIT_IO;
    }
    if (!r.intact) {
        fprintf(stderr, "medinfer assist-server --verify-db: TAMPERED: %s\n", mi_last_error());
        return MI_TRUST_EXIT_AUDIT_BROKEN;
    }
    printf("%s: intact: %lld exams, %lld findings, %lld events\n", db, r.rows[0], r.rows[1], r.rows[2]);
    printf("heads: exams %s findings %s events %s\n", r.head[0], r.head[1], r.head[2]);
    return MI_EXIT_OK;
}

static int write_port_file(const char *path, int port) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f)) {
        fprintf(stderr, "medinfer assist-server: cannot write %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    /* renamed into place so that a reader never sees a half-written number */
    if (rename(tmp, path)) {
        fprintf(stderr, "medinfer assist-server: cannot rename %s to %s: %s\n", tmp, path, strerror(errno));
        return -1;
    }
    return 0;
}

int cmd_assist_server(int argc, char **argv) {
    const char *C = "assist-server";
    mi_assist_server_opts o;
    mi_assist_server_defaults(&o);
    o.port = 8750;
    mi_trust_opts trust = { 0 };
    const char *model = NULL, *tokens = NULL, *db = NULL, *port_file = NULL, *verify_db = NULL;
    bool queue_set = false, score_set = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int tr = mi_trust_opt(&trust, argc, argv, &i), bad = 0;
        double d;
        int n;
        if (tr < 0) return MI_EXIT_USAGE;
        if (tr && trust.audit) {
            fprintf(stderr, "medinfer %s: --audit is not taken: the findings database (--db) is this server's audit trail\n", C);
            return MI_EXIT_USAGE;
        }
        if (tr) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return MI_EXIT_OK;
        }
        if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            o.log = false;
            continue;
        }
        static const char *const valued[] = {
            "--model", "--tokens", "--db", "--verify-db", "--bind", "--port-file", "--port", "--workers", "--threads",
            "--queue", "--max-connections", "--max-side", "--thumbnail-side", "--max-body", "--score-threshold",
            "--alert-threshold", "--luma-lo", "--luma-hi", "--sobel-min", "--glare-max", "--glare-level",
        };
        bool known = false;
        for (size_t k = 0; k < sizeof valued / sizeof *valued; k++) known |= !strcmp(a, valued[k]);
        if (a[0] != '-' || !known || !v) {
            fprintf(stderr, "medinfer %s: %s%s\n", C, a,
                    a[0] != '-' ? ": unexpected argument" : !known ? ": unknown option" : " needs a value");
            return MI_EXIT_USAGE;
        }
        i++;
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--tokens")) tokens = v;
        else if (!strcmp(a, "--db")) db = v;
        else if (!strcmp(a, "--verify-db")) verify_db = v;
        else if (!strcmp(a, "--bind")) o.bind = v;
        else if (!strcmp(a, "--port-file")) port_file = v;
        else if (!strcmp(a, "--port")) bad = mi_cli_int(C, a, v, 0, 65535, &o.port);
        else if (!strcmp(a, "--workers")) bad = mi_cli_int(C, a, v, 1, 1024, &o.workers);
        else if (!strcmp(a, "--threads")) bad = mi_cli_int(C, a, v, 1, 1024, &o.threads);
        else if (!strcmp(a, "--queue")) bad = mi_cli_int(C, a, v, 1, 100000, &o.queue), queue_set = true;
        else if (!strcmp(a, "--max-connections")) bad = mi_cli_int(C, a, v, 1, 10000, &o.max_connections);
        else if (!strcmp(a, "--max-side")) bad = mi_cli_int(C, a, v, 16, 32768, &o.max_side);
        else if (!strcmp(a, "--thumbnail-side")) bad = mi_cli_int(C, a, v, 16, 1024, &o.thumbnail_side);
        else if (!strcmp(a, "--max-body")) {
            if (!(bad = mi_cli_double(C, a, v, 1, 1 << 30, &d))) {
                if (d != (double)(long long)d) bad = -1, fprintf(stderr, "medinfer %s: --max-body %s is not a whole number of bytes\n", C, v);
                o.max_body = (size_t)d;
            }
        } else if (!strcmp(a, "--score-threshold")) {
            if (!(bad = mi_cli_double(C, a, v, 0, 1, &d))) o.score_threshold = (float)d, score_set = true;
        } else if (!strcmp(a, "--alert-threshold")) {
            if (!(bad = mi_cli_double(C, a, v, 0, 1, &d))) o.alert_threshold = (float)d;
        } else if (!strcmp(a, "--luma-lo")) bad = mi_cli_double(C, a, v, 0, 255, &o.quality.luma_lo);
        else if (!strcmp(a, "--luma-hi")) bad = mi_cli_double(C, a, v, 0, 255, &o.quality.luma_hi);
        else if (!strcmp(a, "--sobel-min")) bad = mi_cli_double(C, a, v, 0, 1020, &o.quality.sobel_min);
        else if (!strcmp(a, "--glare-max")) bad = mi_cli_double(C, a, v, 0, 1, &o.quality.glare_max_frac);
        else if (!strcmp(a, "--glare-level") && !(bad = mi_cli_int(C, a, v, 0, 255, &n))) o.quality.glare_level = n;
        if (bad) return MI_EXIT_USAGE;
    }
    if (verify_db) return verify(verify_db);
    if (!model || !tokens || !db) {
        fprintf(stderr, "medinfer %s: --model, --tokens and --db are required\n%s", C, usage);
        return MI_EXIT_USAGE;
    }
    if (!queue_set) o.queue = 2 * o.workers;
    if (mi_quality_check_thresholds(&o.quality)) {
        fprintf(stderr, "medinfer %s: %s\n", C, mi_last_error());
        return MI_EXIT_USAGE;
    }

    /* SIGINT and SIGTERM are taken by sigwait below, in this thread only: blocked before any
       thread starts, so every thread inherits the mask and none of them is interrupted */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);   /* a client gone mid-answer is MHD's to handle, not a reason to die */

    mi_assist_tokens tok;
    if (mi_assist_tokens_load(&tok, tokens)) return mi_cli_error(C);
    mi_weights w;
    mi_trust_info ti;
    mi_model *m = NULL;
    mi_status st;
    int rc = MI_EXIT_FAIL;
    if ((st = mi_weights_open(&w, model))) {
        mi_assist_tokens_free(&tok);
        return mi_cli_error(C);
    }
    if ((st = mi_trust_check_weights(&w, trust.pubkey, &ti))) {
        mi_weights_close(&w);
        mi_assist_tokens_free(&tok);
        return mi_trust_cli_fail(C, st);
    }
    if ((st = mi_model_open_weights(&m, &w))) {
        mi_assist_tokens_free(&tok);
        return mi_cli_error(C);
    }
    mi_assist_store *store = NULL;
    mi_assist_server *srv = NULL;
    if (strncmp(mi_model_arch(m), "fasterrcnn", 10)) {
        fprintf(stderr, "medinfer %s: %s: arch '%s' is not a detector (fasterrcnn_fpn or fasterrcnn_c4)\n", C, model,
                mi_model_arch(m));
        goto done;
    }
    if (!score_set && mi_assist_model_score_threshold(m, &o.score_threshold)) {
        rc = mi_cli_error(C);
        goto done;
    }
    if (mi_assist_store_open(&store, db) || mi_assist_server_start(&srv, m, &tok, store, &o)) {
        rc = mi_cli_error(C);
        goto done;
    }
    const int port = mi_assist_server_port(srv);
    if (port_file && write_port_file(port_file, port)) goto done;
    fprintf(stderr, "medinfer %s: listening on %s port %d: %s %s (%s), %d workers x %d threads, queue %d, score threshold %g, db %s\n",
            C, o.bind, port, mi_model_arch(m), mi_model_version(m), ti.verified ? "signature verified" : "unsigned", o.workers,
            o.threads ? o.threads : (int)(sysconf(_SC_NPROCESSORS_ONLN) / o.workers > 0 ? sysconf(_SC_NPROCESSORS_ONLN) / o.workers : 1),
            o.queue, o.score_threshold, db);
    printf("%d\n", port);
    fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "medinfer %s: %s: answering the requests in flight, then stopping\n", C, sig == SIGINT ? "SIGINT" : "SIGTERM");
    mi_assist_server_stop(srv, 30);
    srv = NULL;
    rc = MI_EXIT_OK;
    fprintf(stderr, "medinfer %s: stopped\n", C);
done:
    mi_assist_server_stop(srv, 0);
    mi_assist_store_close(store);
    mi_model_close(m);
    mi_assist_tokens_free(&tok);
    return rc;
}
