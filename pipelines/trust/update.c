/* pipelines/trust/update.c - `medinfer model update` and `rollback`: a signed, versioned model
 * fetched with libcurl and switched in atomically (docs/trust.md, "Model directory", "Updates").
 *
 * The model directory keeps each installed version in its own folder and selects one with a
 * symlink, so that a blob and its signature change together in a single rename:
 *
 *     DIR/model.safetensors      -> current/model.safetensors      (what commands load)
 *     DIR/model.safetensors.sig  -> current/model.safetensors.sig
 *     DIR/current                -> versions/2026.11.2-Ab12Cd
 *     DIR/previous               -> versions/2026.11.1-Xy34Zw      (for rollback)
 *     DIR/staged                 -> versions/2026.12.1-Pq56Rs      (verified, not yet in use)
 *     DIR/rejected               -> versions/2026.12.0-Mn78Op      (failed its self-check)
 *     DIR/versions/.incoming-*   a download in progress: nothing links to it, never loaded
 *     DIR/.lock                  flock()ed by update and rollback
 *
 * Order of an update: everything that can refuse (manifest, version, hardware, size, SHA-256,
 * blob validity, signature) happens before the first change to what `current` means; the
 * switch itself is rename(2) of a symlink, followed by an fsync of the directory.
 *
 * A staged update (the endoqc model-quality loop) stops after the download and its checks: the
 * verified blob gets `staged`, which no command loads. The caller then runs its own self-check
 * and either activates it (it becomes `current`, the old one `previous`) or rejects it (it
 * becomes `rejected`, with the reason in its folder's selfcheck.json, and is not staged again
 * while the server keeps offering that version). */
#include "pipelines/trust/trust.h"
#include "pipelines/trust/trust_internal.h"
#include "weights/sha256.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST_MAX (1 << 20)
#define DIR_MAX 900          /* model dir path length; every buffer below has room for it */

/* snprintf for paths and names whose bounds DIR_MAX guarantees (not analysed for truncation) */
__attribute__((format(printf, 3, 4)))
static void pathf(char *out, size_t cap, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    vsnprintf(out, cap, f, ap);
    va_end(ap);
}
#define MANIFEST_FORMAT "medinfer-manifest-v1"

/* ---- versions -------------------------------------------------------------------------------- */

static bool parse_part(const char **s, unsigned long long *v) {
    const char *p = *s;
    if (*p < '0' || *p > '9') return false;
    *v = 0;
    for (int n = 0; *p >= '0' && *p <= '9'; p++, n++) {
        if (n == 18) return false;  /* keeps *v far from overflow */
        *v = *v * 10 + (unsigned long long)(*p - '0');
    }
    *s = p;
    return true;
}

static bool version_valid(const char *v) {
    unsigned long long x;
    if (!parse_part(&v, &x)) return false;
    while (*v == '.') {
        v++;
        if (!parse_part(&v, &x)) return false;
    }
    return *v == 0;
}

mi_status mi_version_compare(const char *a, const char *b, int *cmp) {
    if (!version_valid(a)) return MI_FAIL(MI_ERR_FORMAT, "model_version '%.63s' is not dotted decimal (e.g. 2026.11.2)", a);
    if (!version_valid(b)) return MI_FAIL(MI_ERR_FORMAT, "model_version '%.63s' is not dotted decimal (e.g. 2026.11.2)", b);
    *cmp = 0;
    while (*a || *b) {
        unsigned long long x = 0, y = 0;
        if (*a) { parse_part(&a, &x); if (*a == '.') a++; }
        if (*b) { parse_part(&b, &y); if (*b == '.') b++; }
        if (x != y) { *cmp = x < y ? -1 : 1; return MI_OK; }
    }
    return MI_OK;
}

/* ---- the model directory ------------------------------------------------------------------------ */

typedef struct {
    const char *dir;
    int         lock_fd;
    char        current[512], previous[512];   /* link targets, "" when absent */
    char        staged[512], rejected[512];
} mdir;

static void path_in(char *out, size_t cap, const char *dir, const char *name) {
    snprintf(out, cap, "%s/%s", dir, name);
}

static void read_link(const char *dir, const char *name, char *out, size_t cap) {
    char p[1100];
    path_in(p, sizeof p, dir, name);
    ssize_t n = readlink(p, out, cap - 1);
    out[n > 0 ? n : 0] = 0;
}

static mi_status dir_open(mdir *d, const char *dir, bool create, int *exit_code) {
    memset(d, 0, sizeof *d);
    d->dir = dir;
    d->lock_fd = -1;
    *exit_code = MI_TRUST_EXIT_INSTALL;
    if (create && mkdir(dir, 0755) != 0 && errno != EEXIST)
        return MI_FAIL(MI_ERR_IO, "model dir %s: cannot create: %s", dir, strerror(errno));
    char p[1100];
    path_in(p, sizeof p, dir, ".lock");
    d->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (d->lock_fd < 0) return MI_FAIL(MI_ERR_IO, "model dir %s: cannot open %s: %s", dir, p, strerror(errno));
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        *exit_code = MI_TRUST_EXIT_BUSY;
        close(d->lock_fd);
        d->lock_fd = -1;
        return MI_FAIL(MI_ERR_IO, "model dir %s: another update or rollback is running (%s is locked)", dir, p);
    }
    path_in(p, sizeof p, dir, "versions");
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return MI_FAIL(MI_ERR_IO, "model dir %s: cannot create %s: %s", dir, p, strerror(errno));
    read_link(dir, "current", d->current, sizeof d->current);
    read_link(dir, "previous", d->previous, sizeof d->previous);
    read_link(dir, "staged", d->staged, sizeof d->staged);
    read_link(dir, "rejected", d->rejected, sizeof d->rejected);
    /* an activation stopped after switching `current` but before dropping `staged` */
    if (d->staged[0] && !strcmp(d->staged, d->current)) {
        path_in(p, sizeof p, dir, "staged");
        unlink(p);
        d->staged[0] = 0;
    }
    *exit_code = 0;
    return MI_OK;
}

static void dir_close(mdir *d) {
    if (d->lock_fd >= 0) close(d->lock_fd);  /* releases the flock */
    d->lock_fd = -1;
}

/* Removes one version folder: only the two names we write, then rmdir (left alone if anything
 * else is in it, so nothing we did not put there is ever deleted). */
static void remove_version(const char *vdir) {
    static const char *names[] = { MI_MODEL_FILE, MI_MODEL_FILE ".sig", MI_SELFCHECK_FILE };
    char p[1200];
    for (int i = 0; i < 3; i++) {
        pathf(p, sizeof p, "%s/%s", vdir, names[i]);
        unlink(p);
    }
    rmdir(vdir);
}

/* Version folders that no link (current, previous, staged, rejected) points at, and downloads
 * left by a killed update (we hold the lock, so no download is in progress). */
static void sweep(const mdir *d) {
    char vd[1100], p[1400], rel[600];
    path_in(vd, sizeof vd, d->dir, "versions");
    DIR *dh = opendir(vd);
    if (!dh) return;
    for (struct dirent *e; (e = readdir(dh));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(rel, sizeof rel, "versions/%s", e->d_name);
        if (!strcmp(rel, d->current) || !strcmp(rel, d->previous) || !strcmp(rel, d->staged) ||
            !strcmp(rel, d->rejected))
            continue;
        snprintf(p, sizeof p, "%s/%s", vd, e->d_name);
        remove_version(p);
    }
    closedir(dh);
}

/* DIR/name -> target, replacing any existing entry in one rename. */
static mi_status set_link(const char *dir, const char *name, const char *target) {
    char tmp[1100], p[1100];
    snprintf(tmp, sizeof tmp, "%s/.%s.new", dir, name);
    path_in(p, sizeof p, dir, name);
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, p) != 0) {
        int e = errno;
        unlink(tmp);
        return MI_FAIL(MI_ERR_IO, "%s: cannot point it at %s: %s", p, target, strerror(e));
    }
    return MI_OK;
}

/* DIR/model.safetensors(.sig) must be the symlinks into current/. A model dir set up by hand
 * (a plain file) has its blob kept as a version folder first, so that it becomes `previous`. */
static mi_status adopt_plain_model(mdir *d, char *kept, size_t cap) {
    kept[0] = 0;
    char p[1100], link[256];
    path_in(p, sizeof p, d->dir, MI_MODEL_FILE);
    ssize_t n = readlink(p, link, sizeof link - 1);
    if (n > 0) link[n] = 0;
    if (n > 0 && !strcmp(link, "current/" MI_MODEL_FILE)) return MI_OK;
    struct stat sb;
    if (stat(p, &sb) != 0) return MI_OK;  /* nothing installed (or a dangling link) */
    char tmpl[1100];
    snprintf(tmpl, sizeof tmpl, "%s/versions/adopted-XXXXXX", d->dir);
    if (!mkdtemp(tmpl)) return MI_FAIL(MI_ERR_IO, "%s: cannot create a version folder: %s", tmpl, strerror(errno));
    static const char *names[] = { MI_MODEL_FILE, MI_MODEL_FILE ".sig" };
    for (int i = 0; i < 2; i++) {
        char src[1100], dst[1300];
        path_in(src, sizeof src, d->dir, names[i]);
        snprintf(dst, sizeof dst, "%s/%s", tmpl, names[i]);
        if (i == 1 && access(src, F_OK) != 0) continue;  /* an unsigned model has no .sig */
        if (linkat(AT_FDCWD, src, AT_FDCWD, dst, AT_SYMLINK_FOLLOW) != 0) {
            int e = errno;
            remove_version(tmpl);
            return MI_FAIL(MI_ERR_IO, "%s: cannot keep the installed model as the previous one (%s)%s", src,
                           strerror(e), e == EXDEV ? ": it is on another file system than the model dir" : "");
        }
    }
    mi_status st = mi_trust_fsync_dir(tmpl);
    if (st) return st;
    snprintf(kept, cap, "versions/%s", strrchr(tmpl, '/') + 1);
    return MI_OK;
}

static mi_status point_model_links(const char *dir) {
    mi_status st = set_link(dir, MI_MODEL_FILE ".sig", "current/" MI_MODEL_FILE ".sig");
    if (st == MI_OK) st = set_link(dir, MI_MODEL_FILE, "current/" MI_MODEL_FILE);
    return st;
}

/* ---- HTTP ----------------------------------------------------------------------------------------- */

typedef struct {
    char  *data;
    size_t n, cap;
} membuf;

static size_t mem_write(char *p, size_t sz, size_t nm, void *u) {
    membuf *m = u;
    size_t n = sz * nm;
    if (m->n + n + 1 > m->cap) return 0;  /* larger than any manifest: refuse */
    memcpy(m->data + m->n, p, n);
    m->n += n;
    m->data[m->n] = 0;
    return n;
}

typedef struct {
    int        fd;
    curl_off_t got, limit;
    bool       over;
    int        werr;
    bool       progress;
} sink;

static size_t sink_write(char *p, size_t sz, size_t nm, void *u) {
    sink *s = u;
    size_t n = sz * nm;
    if (s->got + (curl_off_t)n > s->limit) { s->over = true; return 0; }
    for (size_t off = 0; off < n;) {
        ssize_t k = write(s->fd, p + off, n - off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) { s->werr = k < 0 ? errno : ENOSPC; return 0; }
        off += (size_t)k;
    }
    s->got += (curl_off_t)n;
    return n;
}

static int progress_cb(void *u, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    (void)dltotal, (void)ultotal, (void)ulnow;
    const sink *s = u;
    fprintf(stderr, "\rmedinfer: downloading %3d%%", s->limit ? (int)(dlnow * 100 / s->limit) : 0);
    return 0;
}

static CURL *easy(const char *url, long stall_s, char *errbuf) {
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    errbuf[0] = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);          /* HTTP >= 400 is an error, not a body */
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");  /* never file://, ftp://, ... */
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);      /* a stalled server ends the transfer */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, stall_s > 0 ? stall_s : 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "medinfer/" MI_VERSION);
    return c;
}

static const char *curl_why(CURLcode rc, const char *errbuf) {
    return errbuf[0] ? errbuf : curl_easy_strerror(rc);
}

/* ---- the manifest ------------------------------------------------------------------------------ */

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void mi_manifest_free(mi_manifest *m) {
    cJSON_Delete(m->json);
    m->json = NULL;
    m->hardware = NULL;
}

mi_status mi_manifest_parse(mi_manifest *m, const char *text, size_t n, const char *url) {
    memset(m, 0, sizeof *m);
    /* The whole body is the object: a NUL (which cJSON would skip like a space) or anything but
       whitespace after the object means a damaged or concatenated response, not a manifest. */
    const char *nul = memchr(text, 0, n), *end = NULL;
    if (nul) return MI_FAIL(MI_ERR_FORMAT, "manifest %s: NUL byte at byte %td of %zu", url, nul - text, n);
    m->json = cJSON_ParseWithLengthOpts(text, n, &end, false);
    if (!cJSON_IsObject(m->json)) return MI_FAIL(MI_ERR_FORMAT, "manifest %s: not a JSON object", url);
    for (const char *p = end; p && p < text + n; p++)
        if (!strchr(" \t\r\n", *p))
            return MI_FAIL(MI_ERR_FORMAT, "manifest %s: bytes after the JSON object (at byte %td of %zu)",
                           url, p - text, n);
    const char *fmt = jstr(m->json, "format");
    if (fmt && strcmp(fmt, MANIFEST_FORMAT))
        return MI_FAIL(MI_ERR_FORMAT, "manifest %s: format '%.40s', expected '" MANIFEST_FORMAT "'", url, fmt);
    static const char *req[] = { "model", "model_version", "released", "blob_url", "sha256", "key_id", "signature" };
    const char *v[7];
    for (int i = 0; i < 7; i++)
        if (!(v[i] = jstr(m->json, req[i])))
            return MI_FAIL(MI_ERR_FORMAT, "manifest %s: \"%s\" is missing or not a string", url, req[i]);
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(m->json, "size");
    if (!cJSON_IsNumber(size) || !(size->valuedouble >= 1 && size->valuedouble <= 9.0e15) ||
        size->valuedouble != (double)(long long)size->valuedouble)
        return MI_FAIL(MI_ERR_FORMAT, "manifest %s: \"size\" must be the blob's byte count", url);
    m->size = (long long)size->valuedouble;
    m->min_accuracy = -1;
    const cJSON *acc = cJSON_GetObjectItemCaseSensitive(m->json, "min_reference_accuracy");
    if (acc && !(cJSON_IsNumber(acc) && acc->valuedouble >= 0 && acc->valuedouble <= 1))
        return MI_FAIL(MI_ERR_FORMAT, "manifest %s: \"min_reference_accuracy\" must be a number in [0, 1]", url);
    if (acc) m->min_accuracy = acc->valuedouble;
    m->hardware = cJSON_GetObjectItemCaseSensitive(m->json, "hardware");
    if (!cJSON_IsArray(m->hardware))
        return MI_FAIL(MI_ERR_FORMAT, "manifest %s: \"hardware\" must be an array of hardware codes", url);
    if (strlen(v[0]) >= sizeof m->model || strlen(v[2]) >= sizeof m->released || strlen(v[3]) >= sizeof m->blob_url)
        return MI_FAIL(MI_ERR_FORMAT, "manifest %s: a field is too long", url);
    snprintf(m->model, sizeof m->model, "%s", v[0]);
    snprintf(m->released, sizeof m->released, "%s", v[2]);
    snprintf(m->blob_url, sizeof m->blob_url, "%s", v[3]);
    /* the signature fields are checked by the same parser as a .sig file */
    char sigtext[1024];
    snprintf(sigtext, sizeof sigtext, "medinfer-signature-v1\nalgorithm: ed25519\nkey-id: %.20s\nsha256: %.70s\n"
             "model-version: %.70s\nsignature: %.130s\n", v[5], v[4], v[1], v[6]);
    char what[1100];
    pathf(what, sizeof what, "manifest %s", url);
    if (mi_signature_parse(sigtext, what, &m->sig)) return mi_trust_rewrap(MI_ERR_FORMAT, "");
    if (!version_valid(m->sig.model_version))
        return MI_FAIL(MI_ERR_FORMAT, "manifest %s: model_version '%s' is not dotted decimal", url, m->sig.model_version);
    return MI_OK;
}

/* ---- update ------------------------------------------------------------------------------------ */

static mi_status refuse(mi_update_result *r, int code, mi_status st) {
    r->exit_code = code;
    return st;
}

/* Downloads url into DIR/versions/.incoming-XXXXXX/model.safetensors; *vdir gets the folder. */
static mi_status download(const mi_update_opts *o, const mi_manifest *m, const char *url, char *vdir,
                          size_t cap, mi_update_result *r) {
    snprintf(vdir, cap, "%s/versions/.incoming-XXXXXX", o->model_dir);
    if (!mkdtemp(vdir))
        return refuse(r, MI_TRUST_EXIT_INSTALL, MI_FAIL(MI_ERR_IO, "%s: cannot create: %s", vdir, strerror(errno)));
    char blob[1200];
    snprintf(blob, sizeof blob, "%s/" MI_MODEL_FILE, vdir);
    sink s = { .fd = open(blob, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644), .limit = m->size,
               .progress = isatty(2) && !o->quiet };
    if (s.fd < 0)
        return refuse(r, MI_TRUST_EXIT_INSTALL, MI_FAIL(MI_ERR_IO, "%s: cannot create: %s", blob, strerror(errno)));
    char errbuf[CURL_ERROR_SIZE];
    CURL *c = easy(url, o->stall_s, errbuf);
    if (!c) { close(s.fd); return refuse(r, MI_TRUST_EXIT_SERVER, MI_FAIL(MI_ERR_NOMEM, "curl_easy_init failed")); }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)m->size);
    if (s.progress) {
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress_cb);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, &s);
    }
    CURLcode rc = curl_easy_perform(c);
    if (s.progress) fputc('\n', stderr);
    curl_easy_cleanup(c);
    bool synced = fsync(s.fd) == 0;
    int e = errno;
    synced = close(s.fd) == 0 && synced;
    if (s.over || rc == CURLE_FILESIZE_EXCEEDED)
        return refuse(r, MI_TRUST_EXIT_HASH, MI_FAIL(MI_ERR_SECURITY, "%s: server sent more than the manifest's %lld bytes",
                                                     url, m->size));
    if (s.werr)
        return refuse(r, MI_TRUST_EXIT_INSTALL, MI_FAIL(MI_ERR_IO, "%s: write failed: %s", blob, strerror(s.werr)));
    if (rc == CURLE_PARTIAL_FILE || ((rc == CURLE_RECV_ERROR || rc == CURLE_OPERATION_TIMEDOUT) && s.got > 0))
        return refuse(r, MI_TRUST_EXIT_TRUNCATED, MI_FAIL(MI_ERR_IO, "%s: download incomplete after %lld of %lld bytes: %s",
                                                          url, (long long)s.got, m->size, curl_why(rc, errbuf)));
    if (rc != CURLE_OK)
        return refuse(r, MI_TRUST_EXIT_SERVER, MI_FAIL(MI_ERR_IO, "%s: %s", url, curl_why(rc, errbuf)));
    if (s.got < m->size)
        return refuse(r, MI_TRUST_EXIT_TRUNCATED, MI_FAIL(MI_ERR_IO, "%s: download incomplete: %lld of %lld bytes",
                                                          url, (long long)s.got, m->size));
    if (!synced)
        return refuse(r, MI_TRUST_EXIT_INSTALL, MI_FAIL(MI_ERR_IO, "%s: fsync failed: %s", blob, strerror(e)));
    return MI_OK;
}

/* Steps after the download; the incoming folder is removed by the caller on refusal. */
static mi_status check_and_install(const mi_update_opts *o, mdir *d, const mi_manifest *m, const char *url,
                                   const mi_trust_store *store, const char *vdir, mi_update_result *r) {
    char blob[1200], hex[65];
    snprintf(blob, sizeof blob, "%s/" MI_MODEL_FILE, vdir);
    if (mi_sha256_file(blob, hex) != 0)
        return refuse(r, MI_TRUST_EXIT_INSTALL, MI_FAIL(MI_ERR_IO, "%s: cannot read back the download", blob));
    if (strcmp(hex, m->sig.sha256))
        return refuse(r, MI_TRUST_EXIT_HASH, MI_FAIL(MI_ERR_SECURITY, "%s: downloaded blob's SHA-256 is %s, the manifest says %s",
                                                     url, hex, m->sig.sha256));
    mi_weights w;
    mi_status st = mi_weights_open(&w, blob);
    if (st) return refuse(r, MI_TRUST_EXIT_MISMATCH, mi_trust_rewrap(MI_ERR_FORMAT, "downloaded blob is not valid: "));
    const char *bv = mi_weights_meta(&w, "model_version"), *bn = mi_weights_meta(&w, "name");
    char blob_version[64], blob_name[128];
    snprintf(blob_version, sizeof blob_version, "%s", bv ? bv : "");
    snprintf(blob_name, sizeof blob_name, "%s", bn ? bn : "");
    mi_weights_close(&w);
    if (blob_name[0] && strcmp(blob_name, m->model))
        return refuse(r, MI_TRUST_EXIT_MISMATCH, MI_FAIL(MI_ERR_SECURITY, "%s: the blob is model '%s', the manifest says '%s'",
                                                         url, blob_name, m->model));
    /* the signature covers the blob's own version; a manifest that names another one is lying
       about what it offers (an old signed blob replayed as new) */
    if (strcmp(blob_version, m->sig.model_version))
        return refuse(r, MI_TRUST_EXIT_MISMATCH, MI_FAIL(MI_ERR_SECURITY, "%s: the blob's model_version is '%s', the manifest says %s",
                                                         url, blob_version, m->sig.model_version));
    if (mi_signature_verify(store, &m->sig, hex, blob_version, url))
        return refuse(r, MI_TRUST_EXIT_SIGNATURE, mi_trust_rewrap(MI_ERR_SECURITY, ""));

    char sigp[1300];
    snprintf(sigp, sizeof sigp, "%s/" MI_MODEL_FILE ".sig", vdir);
    if ((st = mi_signature_write(sigp, &m->sig)) || (st = mi_trust_fsync_dir(vdir)))
        return refuse(r, MI_TRUST_EXIT_INSTALL, st);

    /* from here on, each step leaves a consistent directory if the machine stops after it */
    char kept[600] = "", final[1100], rel[600], vd[1100];
    if (!o->stage && (st = adopt_plain_model(d, kept, sizeof kept))) return refuse(r, MI_TRUST_EXIT_INSTALL, st);
    snprintf(final, sizeof final, "%s/versions/%s-%s", o->model_dir, m->sig.model_version,
             strrchr(vdir, '-') + 1);
    path_in(vd, sizeof vd, o->model_dir, "versions");
    if (rename(vdir, final) != 0)
        return refuse(r, MI_TRUST_EXIT_INSTALL, MI_FAIL(MI_ERR_IO, "%s: cannot rename to %s: %s", vdir, final, strerror(errno)));
    if ((st = mi_trust_fsync_dir(vd))) { rename(final, vdir); return refuse(r, MI_TRUST_EXIT_INSTALL, st); }
    snprintf(rel, sizeof rel, "versions/%s", strrchr(final, '/') + 1);
    if (o->stage) {
        if ((st = set_link(o->model_dir, "staged", rel)) || (st = mi_trust_fsync_dir(o->model_dir))) {
            rename(final, vdir);
            return refuse(r, MI_TRUST_EXIT_INSTALL, st);
        }
        pathf(d->staged, sizeof d->staged, "%s", rel);
        pathf(r->staged_blob, sizeof r->staged_blob, "%s/" MI_MODEL_FILE, final);
        r->staged = true;
        r->exit_code = 0;
        return MI_OK;
    }
    const char *prev = kept[0] ? kept : d->current;
    if (prev[0] && (st = set_link(o->model_dir, "previous", prev))) { rename(final, vdir); return refuse(r, MI_TRUST_EXIT_INSTALL, st); }
    if ((st = set_link(o->model_dir, "current", rel)) || (st = point_model_links(o->model_dir)) ||
        (st = mi_trust_fsync_dir(o->model_dir)))
        return refuse(r, MI_TRUST_EXIT_INSTALL, st);
    if (prev[0]) pathf(d->previous, sizeof d->previous, "%s", prev);
    pathf(d->current, sizeof d->current, "%s", rel);
    r->installed = true;
    r->exit_code = 0;
    return MI_OK;
}

static mi_status fetch_manifest(const mi_update_opts *o, char *url, size_t ucap, mi_manifest *m) {
    size_t n = strlen(o->server);
    if (n > 5 && !strcmp(o->server + n - 5, ".json")) snprintf(url, ucap, "%s", o->server);
    else snprintf(url, ucap, "%.*s/manifest.json", (int)(n && o->server[n - 1] == '/' ? n - 1 : n), o->server);
    membuf mb = { .data = malloc(MANIFEST_MAX), .cap = MANIFEST_MAX };
    if (!mb.data) return MI_FAIL(MI_ERR_NOMEM, "manifest buffer");
    mb.data[0] = 0;
    char errbuf[CURL_ERROR_SIZE];
    CURL *c = easy(url, o->stall_s, errbuf);
    mi_status st = MI_OK;
    if (!c) st = MI_FAIL(MI_ERR_NOMEM, "curl_easy_init failed");
    else {
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &mb);
        CURLcode rc = curl_easy_perform(c);
        curl_easy_cleanup(c);
        if (rc == CURLE_WRITE_ERROR) st = MI_FAIL(MI_ERR_FORMAT, "manifest %s: larger than %d bytes", url, MANIFEST_MAX);
        else if (rc != CURLE_OK) st = MI_FAIL(MI_ERR_IO, "manifest %s: %s", url, curl_why(rc, errbuf));
        else st = mi_manifest_parse(m, mb.data, mb.n, url);
    }
    free(mb.data);
    return st;
}

mi_status mi_manifest_blob_url(const char *base, const char *rel, char *out, size_t cap) {
    CURLU *u = curl_url();
    char *s = NULL;
    mi_status st = MI_OK;
    /* setting a relative URL on a handle holding the manifest's URL resolves it like a browser */
    if (!u || curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK ||
        curl_url_set(u, CURLUPART_URL, rel, 0) != CURLUE_OK || curl_url_get(u, CURLUPART_URL, &s, 0) != CURLUE_OK)
        st = MI_FAIL(MI_ERR_FORMAT, "manifest %s: blob_url '%.200s' is not a valid URL", base, rel);
    else if (strlen(s) >= cap) st = MI_FAIL(MI_ERR_FORMAT, "manifest %s: blob_url too long", base);
    else snprintf(out, cap, "%s", s);
    curl_free(s);
    curl_url_cleanup(u);
    return st;
}

/* The model_version of DIR/<rel>/model.safetensors; "" when it cannot be read. */
static void link_version(const char *dir, const char *rel, char out[64]) {
    char p[1700];
    out[0] = 0;
    pathf(p, sizeof p, "%s/%s/" MI_MODEL_FILE, dir, rel);
    mi_weights w;
    if (mi_weights_open(&w, p) != MI_OK) return;
    const char *v = mi_weights_meta(&w, "model_version");
    snprintf(out, 64, "%s", v ? v : "");
    mi_weights_close(&w);
}

static mi_status staged_or_rejected(const mi_update_opts *o, const mdir *d, const char *offered,
                                    mi_update_result *r) {
    char v[64], p[1700];
    if (d->rejected[0]) {
        link_version(o->model_dir, d->rejected, v);
        if (!strcmp(v, offered)) {
            r->rejected_before = true;
            pathf(p, sizeof p, "%s/%s/" MI_SELFCHECK_FILE, o->model_dir, d->rejected);
            if (mi_trust_read_small(p, r->rejected_reason, sizeof r->rejected_reason, "self-check record") != MI_OK)
                snprintf(r->rejected_reason, sizeof r->rejected_reason, "(no readable record: %s)", mi_last_error());
            return MI_OK;
        }
    }
    if (d->staged[0]) {
        link_version(o->model_dir, d->staged, v);
        if (!strcmp(v, offered)) {
            pathf(r->staged_blob, sizeof r->staged_blob, "%s/%s/" MI_MODEL_FILE, o->model_dir, d->staged);
            r->staged = true;
        }
    }
    return MI_OK;
}

static mi_status update_locked(const mi_update_opts *o, mdir *d, const mi_trust_store *store,
                               mi_update_result *r) {
    sweep(d);  /* leftovers of a killed update */
    char installed[1100];
    path_in(installed, sizeof installed, o->model_dir, MI_MODEL_FILE);
    char installed_name[128] = "";
    if (access(installed, F_OK) == 0) {
        mi_weights w;
        if (mi_weights_open(&w, installed) == MI_OK) {
            const char *v = mi_weights_meta(&w, "model_version");
            snprintf(r->installed_version, sizeof r->installed_version, "%s", v ? v : "0");
            const char *n = mi_weights_meta(&w, "name");
            snprintf(installed_name, sizeof installed_name, "%s", n ? n : "");
            mi_weights_close(&w);
        }
        /* an unreadable installed blob is replaced: no version of it can be trusted anyway */
    }

    char url[1100], blob_url[1100];
    mi_manifest m;
    memset(&m, 0, sizeof m);
    mi_status st = fetch_manifest(o, url, sizeof url, &m);
    if (st) { mi_manifest_free(&m); return refuse(r, MI_TRUST_EXIT_SERVER, st); }
    snprintf(r->offered_version, sizeof r->offered_version, "%s", m.sig.model_version);
    r->min_accuracy = m.min_accuracy;
    /* a model dir holds one model: a manifest for another one is a wrong URL, not an update */
    if (installed_name[0] && strcmp(installed_name, m.model)) {
        st = MI_FAIL(MI_ERR_SECURITY, "%s offers model '%s', the model dir holds '%s': refused", url, m.model, installed_name);
        mi_manifest_free(&m);
        return refuse(r, MI_TRUST_EXIT_MISMATCH, st);
    }
    if (r->installed_version[0]) {
        int cmp = 0;
        if (mi_version_compare(m.sig.model_version, r->installed_version, &cmp)) {
            mi_manifest_free(&m);
            return refuse(r, MI_TRUST_EXIT_NOT_NEWER, mi_trust_rewrap(MI_ERR_FORMAT, "cannot compare with the installed model: "));
        }
        if (cmp == 0) { mi_manifest_free(&m); r->exit_code = 0; return MI_OK; }  /* up to date */
        if (cmp < 0) {
            st = MI_FAIL(MI_ERR_SECURITY, "%s offers model_version %s, older than the installed %s: refused",
                         url, m.sig.model_version, r->installed_version);
            mi_manifest_free(&m);
            return refuse(r, MI_TRUST_EXIT_NOT_NEWER, st);
        }
    }
    bool authorized = false;
    const cJSON *h;
    cJSON_ArrayForEach(h, m.hardware) authorized |= cJSON_IsString(h) && mi_hwcode_equal(h->valuestring, r->hwcode);
    if (!authorized) {
        st = MI_FAIL(MI_ERR_SECURITY, "%s: this machine's hardware code %s is not among the %d authorized for %s %s",
                     url, r->hwcode, cJSON_GetArraySize(m.hardware), m.model, m.sig.model_version);
        mi_manifest_free(&m);
        return refuse(r, MI_TRUST_EXIT_HARDWARE, st);
    }
    /* a staged update offered again: already verified and staged, or already rejected here */
    if (o->stage && (st = staged_or_rejected(o, d, m.sig.model_version, r)) == MI_OK && (r->staged || r->rejected_before)) {
        mi_manifest_free(&m);
        return MI_OK;
    }
    if (st) { mi_manifest_free(&m); return refuse(r, MI_TRUST_EXIT_INSTALL, st); }
    if ((st = mi_manifest_blob_url(url, m.blob_url, blob_url, sizeof blob_url))) {
        mi_manifest_free(&m);
        return refuse(r, MI_TRUST_EXIT_SERVER, st);
    }
    char vdir[1100] = "";
    st = download(o, &m, blob_url, vdir, sizeof vdir, r);
    if (st == MI_OK) st = check_and_install(o, d, &m, blob_url, store, vdir, r);
    mi_manifest_free(&m);
    if (st && vdir[0]) remove_version(vdir);  /* refused: the download goes, nothing else changed */
    if (st == MI_OK) sweep(d);                 /* versions older than `previous` */
    return st;
}

mi_status mi_model_update(const mi_update_opts *o, mi_update_result *r) {
    memset(r, 0, sizeof *r);
    r->exit_code = MI_TRUST_EXIT_SERVER;
    r->min_accuracy = -1;
    if (!o->server || !*o->server || !o->model_dir || !*o->model_dir)
        return MI_FAIL(MI_ERR_ARG, "update needs a server URL and a model dir");
    if (strlen(o->model_dir) > DIR_MAX || strlen(o->server) > DIR_MAX)
        return MI_FAIL(MI_ERR_ARG, "model dir or server URL longer than %d characters", DIR_MAX);
    mi_trust_store store;
    mi_status st = mi_trust_store_resolve(&store, o->pubkey);
    if (st) return refuse(r, MI_TRUST_EXIT_SIGNATURE, st);
    if (store.n == 0)
        return refuse(r, MI_TRUST_EXIT_SIGNATURE,
                      MI_FAIL(MI_ERR_SECURITY, "an update needs a trusted public key (--pubkey, MEDINFER_TRUST or "
                              MI_TRUST_DEFAULT_STORE "): refusing to install what cannot be verified"));
    if ((st = mi_hwcode(r->hwcode))) return refuse(r, MI_TRUST_EXIT_HARDWARE, st);
    mdir d;
    if ((st = dir_open(&d, o->model_dir, true, &r->exit_code))) { dir_close(&d); return st; }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        dir_close(&d);
        return refuse(r, MI_TRUST_EXIT_SERVER, MI_FAIL(MI_ERR_UNSUPPORTED, "libcurl failed to initialize"));
    }
    st = update_locked(o, &d, &store, r);
    curl_global_cleanup();
    dir_close(&d);
    return st;
}

/* ---- rollback ---------------------------------------------------------------------------------- */

mi_status mi_model_rollback(const char *model_dir, const char *pubkey, int *exit_code, char version[64]) {
    version[0] = 0;
    *exit_code = MI_TRUST_EXIT_INSTALL;
    if (strlen(model_dir) > DIR_MAX) return MI_FAIL(MI_ERR_ARG, "model dir longer than %d characters", DIR_MAX);
    mdir d;
    mi_status st = dir_open(&d, model_dir, false, exit_code);
    if (st) { dir_close(&d); return st; }
    sweep(&d);  /* leftovers of a killed update */
    *exit_code = MI_TRUST_EXIT_NO_PREVIOUS;
    if (!d.previous[0] || !d.current[0]) {
        dir_close(&d);
        return MI_FAIL(MI_ERR_IO, "model dir %s: no previous model to roll back to", model_dir);
    }
    char blob[1700];
    snprintf(blob, sizeof blob, "%s/%s/" MI_MODEL_FILE, model_dir, d.previous);
    mi_trust_info ti;
    if ((st = mi_trust_check(blob, pubkey, &ti))) {
        *exit_code = st == MI_ERR_SECURITY ? MI_TRUST_EXIT_UNTRUSTED : MI_TRUST_EXIT_MISMATCH;
        dir_close(&d);
        return mi_trust_rewrap(st, "previous model is not usable, nothing changed: ");
    }
    /* current first: if the machine stops between the two, the rollback has happened */
    char old_current[512];
    snprintf(old_current, sizeof old_current, "%s", d.current);
    *exit_code = MI_TRUST_EXIT_INSTALL;
    if ((st = set_link(model_dir, "current", d.previous)) || (st = set_link(model_dir, "previous", old_current)) ||
        (st = point_model_links(model_dir)) || (st = mi_trust_fsync_dir(model_dir))) {
        dir_close(&d);
        return st;
    }
    snprintf(version, 64, "%s", ti.model_version);
    *exit_code = 0;
    dir_close(&d);
    return MI_OK;
}

/* ---- staged updates: activate or reject ------------------------------------------------------- */

mi_status mi_model_activate_staged(const char *model_dir, const char *pubkey, int *exit_code, char version[64]) {
    version[0] = 0;
    *exit_code = MI_TRUST_EXIT_INSTALL;
    if (strlen(model_dir) > DIR_MAX) return MI_FAIL(MI_ERR_ARG, "model dir longer than %d characters", DIR_MAX);
    mdir d;
    mi_status st = dir_open(&d, model_dir, false, exit_code);
    if (st) { dir_close(&d); return st; }
    *exit_code = MI_TRUST_EXIT_NO_PREVIOUS;
    if (!d.staged[0]) {
        dir_close(&d);
        return MI_FAIL(MI_ERR_IO, "model dir %s: no staged model to activate", model_dir);
    }
    char blob[1700];
    pathf(blob, sizeof blob, "%s/%s/" MI_MODEL_FILE, model_dir, d.staged);
    mi_trust_info ti;
    if ((st = mi_trust_check(blob, pubkey, &ti))) {
        *exit_code = st == MI_ERR_SECURITY ? MI_TRUST_EXIT_UNTRUSTED : MI_TRUST_EXIT_MISMATCH;
        dir_close(&d);
        return mi_trust_rewrap(st, "staged model is not usable, nothing changed: ");
    }
    /* previous first, then current: a machine that stops between the two still runs the old
     * model (current), and the staged one is activated again by the next check */
    *exit_code = MI_TRUST_EXIT_INSTALL;
    char kept[600], staged[512], p[1100];
    pathf(staged, sizeof staged, "%s", d.staged);
    if ((st = adopt_plain_model(&d, kept, sizeof kept))) { dir_close(&d); return st; }
    const char *prev = kept[0] ? kept : d.current;
    if ((prev[0] && (st = set_link(model_dir, "previous", prev))) || (st = set_link(model_dir, "current", staged)) ||
        (st = point_model_links(model_dir)) || (st = mi_trust_fsync_dir(model_dir))) {
        dir_close(&d);
        return st;
    }
    path_in(p, sizeof p, model_dir, "staged");
    unlink(p);  /* if this is lost in a crash, dir_open drops a `staged` equal to `current` */
    if ((st = mi_trust_fsync_dir(model_dir))) { dir_close(&d); return st; }
    pathf(d.previous, sizeof d.previous, "%s", prev);
    pathf(d.current, sizeof d.current, "%s", staged);
    d.staged[0] = 0;
    sweep(&d);  /* the version before `previous` */
    snprintf(version, 64, "%s", ti.model_version);
    *exit_code = 0;
    dir_close(&d);
    return MI_OK;
}

mi_status mi_model_reject_staged(const char *model_dir, const char *record, int *exit_code) {
    *exit_code = MI_TRUST_EXIT_INSTALL;
    if (strlen(model_dir) > DIR_MAX) return MI_FAIL(MI_ERR_ARG, "model dir longer than %d characters", DIR_MAX);
    mdir d;
    mi_status st = dir_open(&d, model_dir, false, exit_code);
    if (st) { dir_close(&d); return st; }
    *exit_code = MI_TRUST_EXIT_NO_PREVIOUS;
    if (!d.staged[0]) {
        dir_close(&d);
        return MI_FAIL(MI_ERR_IO, "model dir %s: no staged model to reject", model_dir);
    }
    *exit_code = MI_TRUST_EXIT_INSTALL;
    char p[1700];
    pathf(p, sizeof p, "%s/%s/" MI_SELFCHECK_FILE, model_dir, d.staged);
    /* the record first: a `rejected` link always has its reason beside it */
    if ((st = mi_trust_write_atomic(p, record, strlen(record), 0644)) || (st = set_link(model_dir, "rejected", d.staged))) {
        dir_close(&d);
        return st;
    }
    path_in(p, sizeof p, model_dir, "staged");
    unlink(p);
    if ((st = mi_trust_fsync_dir(model_dir))) { dir_close(&d); return st; }
    pathf(d.rejected, sizeof d.rejected, "%s", d.staged);
    d.staged[0] = 0;
    sweep(&d);  /* an earlier rejected version */
    *exit_code = 0;
    dir_close(&d);
    return MI_OK;
}
