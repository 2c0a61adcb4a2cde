/* pipelines/trust/util.c - durable file writes, error re-wrapping, the CLI helpers of trust.h. */
#include "pipelines/trust/trust.h"
#include "pipelines/trust/trust_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

mi_status mi_trust_rewrap(mi_status code, const char *prefix) {
    char why[1024];
    snprintf(why, sizeof why, "%s", mi_last_error());
    return MI_FAIL(code, "%s%s", prefix, why);
}

mi_status mi_trust_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return MI_FAIL(MI_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    int rc = fsync(fd), e = errno;
    close(fd);
    /* some file systems (tmpfs on old kernels) reject fsync on a directory: nothing to flush */
    if (rc != 0 && e != EINVAL) return MI_FAIL(MI_ERR_IO, "%s: fsync: %s", dir, strerror(e));
    return MI_OK;
}

mi_status mi_trust_write_atomic(const char *path, const void *data, size_t n, mode_t mode) {
    char dir[1024], base[1024], tmp[2200];
    snprintf(dir, sizeof dir, "%s", path);
    snprintf(base, sizeof base, "%s", path);
    const char *d = dirname(dir), *b = basename(base);
    snprintf(tmp, sizeof tmp, "%s/.%s.XXXXXX", d, b);
    int fd = mkstemp(tmp);
    if (fd < 0) return MI_FAIL(MI_ERR_IO, "%s: cannot create a temporary file: %s", path, strerror(errno));
    const char *p = data;
    size_t left = n;
    bool ok = true;
    while (ok && left) {
        ssize_t k = write(fd, p, left);
        if (k < 0 && errno == EINTR) continue;
        ok = k > 0;
        if (ok) { p += k; left -= (size_t)k; }
    }
    ok = ok && fchmod(fd, mode) == 0 && fsync(fd) == 0;
    int e = errno;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        if (ok) e = errno;
        unlink(tmp);
        return MI_FAIL(MI_ERR_IO, "%s: cannot write: %s", path, strerror(e));
    }
    return mi_trust_fsync_dir(d);
}

int mi_trust_opt(mi_trust_opts *o, int argc, char **argv, int *i) {
    static const char *names[] = { "--pubkey", "--audit" };
    const char **slot[] = { &o->pubkey, &o->audit };
    const char *a = argv[*i];
    for (int k = 0; k < 2; k++) {
        size_t n = strlen(names[k]);
        if (strncmp(a, names[k], n)) continue;
        if (a[n] == '=') { *slot[k] = a + n + 1; return 1; }
        if (a[n]) continue;
        if (*i + 1 >= argc || !argv[*i + 1][0]) {
            fprintf(stderr, "medinfer: %s needs a value\n", names[k]);
            return -1;
        }
        *slot[k] = argv[++*i];
        return 1;
    }
    return 0;
}

int mi_trust_cli_fail(const char *cmd, mi_status st) {
    fprintf(stderr, "medinfer %s: %s\n", cmd, mi_last_error());
    return st == MI_ERR_SECURITY ? MI_TRUST_EXIT_UNTRUSTED : 1;
}

int mi_audit_cli_fail(const char *cmd) {
    fprintf(stderr, "medinfer %s: audit: %s\n", cmd, mi_last_error());
    return MI_TRUST_EXIT_AUDIT_IO;
}
