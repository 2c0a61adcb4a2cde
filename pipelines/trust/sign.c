/* pipelines/trust/sign.c - keys, the trust store, detached signatures (libsodium Ed25519), and
 * the check every model-loading command runs. Formats: docs/trust.md. */
#include "pipelines/trust/trust.h"
#include "pipelines/trust/trust_internal.h"
#include "weights/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIG_MAGIC "medinfer-signature-v1"

static mi_status sodium_ready(void) {
    /* sodium_init is idempotent and thread-safe; -1 means no usable randomness source */
    if (sodium_init() < 0) return MI_FAIL(MI_ERR_UNSUPPORTED, "libsodium failed to initialize");
    return MI_OK;
}

static void key_id_of(const unsigned char pk[32], char id[17]) {
    char hex[65];
    mi_sha256_hex(pk, 32, hex);
    memcpy(id, hex, 16);
    id[16] = 0;
}

mi_status mi_trust_read_small(const char *path, char *buf, size_t cap, const char *what) {
    FILE *f = fopen(path, "rb");
    if (!f) return MI_FAIL(MI_ERR_IO, "%s %s: cannot open: %s", what, path, strerror(errno));
    size_t n = fread(buf, 1, cap - 1, f);
    int big = n == cap - 1 && fgetc(f) != EOF, err = ferror(f);
    fclose(f);
    if (err) return MI_FAIL(MI_ERR_IO, "%s %s: read error", what, path);
    if (big) return MI_FAIL(MI_ERR_FORMAT, "%s %s: larger than %zu bytes", what, path, cap - 1);
    buf[n] = 0;
    if (strlen(buf) != n) return MI_FAIL(MI_ERR_FORMAT, "%s %s: contains NUL bytes", what, path);
    return MI_OK;
}

static bool is_hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return s[n] == 0;
}

static bool hex_decode(const char *hex, unsigned char *out, size_t n) {
    size_t got = 0;
    return strlen(hex) == 2 * n && is_hex(hex, 2 * n) &&
           sodium_hex2bin(out, n, hex, 2 * n, NULL, &got, NULL) == 0 && got == n;
}

/* ---- trust store ------------------------------------------------------------------------------- */

mi_status mi_trust_store_load(mi_trust_store *s, const char *path) {
    mi_status st = sodium_ready();
    if (st) return st;
    s->n = 0;
    char text[16384];
    if ((st = mi_trust_read_small(path, text, sizeof text, "trust store"))) return st;
    int lineno = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        while (*line == ' ' || *line == '\t') line++;
        if (!*line || *line == '#' || *line == '\r') continue;
        char kind[16], id[32], hex[80];
        if (sscanf(line, "%15s %31s %79s", kind, id, hex) != 3 || strcmp(kind, "ed25519"))
            return MI_FAIL(MI_ERR_SECURITY, "trust store %s line %d: expected \"ed25519 KEYID HEX\"",
                           path, lineno);
        if (s->n == MI_TRUST_MAX_KEYS)
            return MI_FAIL(MI_ERR_SECURITY, "trust store %s: more than %d keys", path, MI_TRUST_MAX_KEYS);
        mi_trust_key *k = &s->keys[s->n];
        if (!hex_decode(hex, k->pk, 32))
            return MI_FAIL(MI_ERR_SECURITY, "trust store %s line %d: key is not 64 lowercase hex chars",
                           path, lineno);
        key_id_of(k->pk, k->key_id);
        /* the id is derived, but written down too so that a human can match files by eye; a
           mismatch means the line was edited by hand and is not trusted */
        if (strcmp(id, k->key_id))
            return MI_FAIL(MI_ERR_SECURITY, "trust store %s line %d: key id %s does not match the key (%s)",
                           path, lineno, id, k->key_id);
        s->n++;
    }
    if (s->n == 0) return MI_FAIL(MI_ERR_SECURITY, "trust store %s: no keys", path);
    return MI_OK;
}

mi_status mi_trust_store_resolve(mi_trust_store *s, const char *pubkey_opt) {
    s->n = 0;
    const char *env = getenv("MEDINFER_TRUST");
    const char *path = NULL;
    if (pubkey_opt && *pubkey_opt) {
        path = pubkey_opt;
        snprintf(s->source, sizeof s->source, "--pubkey %s", path);
    } else if (env && *env) {
        path = env;
        snprintf(s->source, sizeof s->source, "MEDINFER_TRUST=%s", path);
    } else if (access(MI_TRUST_DEFAULT_STORE, F_OK) == 0) {
        path = MI_TRUST_DEFAULT_STORE;
        snprintf(s->source, sizeof s->source, "%s", path);
    } else {
        snprintf(s->source, sizeof s->source, "none");
        return MI_OK;
    }
    mi_status st = mi_trust_store_load(s, path);
    if (st == MI_OK) return MI_OK;
    /* a named store that cannot be used must refuse, never fall back to "no key" */
    s->n = 0;
    char from[700];
    snprintf(from, sizeof from, "trust store from %s: ", s->source);
    return mi_trust_rewrap(MI_ERR_SECURITY, from);
}

/* ---- signatures ----------------------------------------------------------------------------------- */

static bool version_ok(const char *v) {
    size_t n = strlen(v);
    if (n == 0 || n > 63) return false;
    for (size_t i = 0; i < n; i++)
        if (v[i] <= ' ' || v[i] > '~') return false;
    return true;
}

int mi_signature_message(char *buf, size_t cap, const char *sha256, const char *model_version) {
    if (!version_ok(model_version) || strlen(sha256) != 64) return -1;
    int n = snprintf(buf, cap, SIG_MAGIC "\nsha256: %s\nmodel-version: %s\n", sha256, model_version);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

void mi_signature_format(const mi_signature *s, char *buf, size_t cap) {
    char sig[129];
    sodium_bin2hex(sig, sizeof sig, s->sig, 64);
    snprintf(buf, cap, SIG_MAGIC "\nalgorithm: ed25519\nkey-id: %s\nsha256: %s\nmodel-version: %s\nsignature: %s\n",
             s->key_id, s->sha256, s->model_version, sig);
}

/* One "name: value" line; returns the value (in place) or NULL. */
static char *field(char **cursor, const char *name) {
    char *line = *cursor, *nl = strchr(line, '\n');
    if (!nl) return NULL;
    *nl = 0;
    *cursor = nl + 1;
    size_t n = strlen(name);
    if (strncmp(line, name, n) || line[n] != ':' || line[n + 1] != ' ') return NULL;
    return line + n + 2;
}

mi_status mi_signature_parse(const char *text, const char *what, mi_signature *out) {
    char buf[1024];
    if (strlen(text) >= sizeof buf) return MI_FAIL(MI_ERR_SECURITY, "%s: signature too long", what);
    strcpy(buf, text);
    char *c = buf, *magic = c, *nl = strchr(c, '\n');
    if (!nl) return MI_FAIL(MI_ERR_SECURITY, "%s: not a medinfer signature", what);
    *nl = 0;
    c = nl + 1;
    if (strcmp(magic, SIG_MAGIC))
        return MI_FAIL(MI_ERR_SECURITY, "%s: first line is \"%.40s\", expected \"" SIG_MAGIC "\"", what, magic);
    static const char *names[] = { "algorithm", "key-id", "sha256", "model-version", "signature" };
    char *v[5];
    for (int i = 0; i < 5; i++)
        if (!(v[i] = field(&c, names[i])))
            return MI_FAIL(MI_ERR_SECURITY, "%s: line %d should be \"%s: ...\"", what, i + 2, names[i]);
    if (*c) return MI_FAIL(MI_ERR_SECURITY, "%s: unexpected text after the signature line", what);
    if (strcmp(v[0], "ed25519"))
        return MI_FAIL(MI_ERR_SECURITY, "%s: algorithm %.20s, only ed25519 is accepted", what, v[0]);
    if (strlen(v[1]) != 16 || !is_hex(v[1], 16))
        return MI_FAIL(MI_ERR_SECURITY, "%s: key-id is not 16 lowercase hex chars", what);
    if (strlen(v[2]) != 64 || !is_hex(v[2], 64))
        return MI_FAIL(MI_ERR_SECURITY, "%s: sha256 is not 64 lowercase hex chars", what);
    if (!version_ok(v[3]))
        return MI_FAIL(MI_ERR_SECURITY, "%s: model-version is not 1-63 printable characters", what);
    if (!hex_decode(v[4], out->sig, 64))
        return MI_FAIL(MI_ERR_SECURITY, "%s: signature is not 128 lowercase hex chars", what);
    snprintf(out->key_id, sizeof out->key_id, "%s", v[1]);
    snprintf(out->sha256, sizeof out->sha256, "%s", v[2]);
    snprintf(out->model_version, sizeof out->model_version, "%s", v[3]);
    return MI_OK;
}

mi_status mi_signature_read(const char *sig_path, mi_signature *out) {
    char text[1024];
    mi_status st = mi_trust_read_small(sig_path, text, sizeof text, "signature");
    if (st) return mi_trust_rewrap(MI_ERR_SECURITY, "");
    return mi_signature_parse(text, sig_path, out);
}

mi_status mi_signature_write(const char *sig_path, const mi_signature *s) {
    char text[512];
    mi_signature_format(s, text, sizeof text);
    return mi_trust_write_atomic(sig_path, text, strlen(text), 0644);
}

mi_status mi_signature_verify(const mi_trust_store *store, const mi_signature *s,
                              const char *sha256, const char *model_version, const char *what) {
    mi_status st = sodium_ready();
    if (st) return st;
    if (!model_version || !*model_version)
        return MI_FAIL(MI_ERR_SECURITY, "%s: blob has no model_version metadata, so no signature can cover it", what);
    if (strcmp(s->sha256, sha256))
        return MI_FAIL(MI_ERR_SECURITY, "%s: signature is for a blob with SHA-256 %.16s..., this blob's is %.16s... "
                       "(blob modified, or the signature belongs to another blob)", what, s->sha256, sha256);
    if (strcmp(s->model_version, model_version))
        return MI_FAIL(MI_ERR_SECURITY, "%s: signature is for model_version %s, the blob says %s",
                       what, s->model_version, model_version);
    const mi_trust_key *k = NULL;
    for (int i = 0; i < store->n && !k; i++)
        if (!strcmp(store->keys[i].key_id, s->key_id)) k = &store->keys[i];
    if (!k)
        return MI_FAIL(MI_ERR_SECURITY, "%s: signed by key %s, which is not in the trust store (%s)",
                       what, s->key_id, store->source);
    /* the message is rebuilt from the blob's own values, never from the signature file's */
    char msg[256];
    int n = mi_signature_message(msg, sizeof msg, sha256, model_version);
    if (n < 0) return MI_FAIL(MI_ERR_SECURITY, "%s: model_version '%.63s' cannot be signed", what, model_version);
    if (crypto_sign_verify_detached(s->sig, (const unsigned char *)msg, (unsigned long long)n, k->pk) != 0)
        return MI_FAIL(MI_ERR_SECURITY, "%s: signature does not verify with trusted key %s (signature altered or forged)",
                       what, k->key_id);
    return MI_OK;
}

/* ---- keygen and sign ----------------------------------------------------------------------------- */

static mi_status write_new(const char *path, const char *text, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return MI_FAIL(MI_ERR_IO, "%s: %s", path, errno == EEXIST ? "exists; refusing to overwrite a key" : strerror(errno));
    size_t n = strlen(text);
    bool ok = write(fd, text, n) == (ssize_t)n && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok) { unlink(path); return MI_FAIL(MI_ERR_IO, "%s: write failed", path); }
    return MI_OK;
}

mi_status mi_keygen(const char *prefix, const char *comment, char key_id[17]) {
    mi_status st = sodium_ready();
    if (st) return st;
    if (comment && strpbrk(comment, "\n\r")) return MI_FAIL(MI_ERR_ARG, "key comment must be one line");
    unsigned char pk[32], sk[64];
    crypto_sign_keypair(pk, sk);
    key_id_of(pk, key_id);
    char pkhex[65], skhex[129], path_k[1024], path_p[1024], text[512];
    sodium_bin2hex(pkhex, sizeof pkhex, pk, 32);
    sodium_bin2hex(skhex, sizeof skhex, sk, 64);
    sodium_memzero(sk, sizeof sk);
    snprintf(path_k, sizeof path_k, "%s.key", prefix);
    snprintf(path_p, sizeof path_p, "%s.pub", prefix);
    if (access(path_p, F_OK) == 0) {
        sodium_memzero(skhex, sizeof skhex);
        return MI_FAIL(MI_ERR_IO, "%s: exists; refusing to overwrite a key", path_p);
    }
    snprintf(text, sizeof text, "# medinfer secret signing key: keep offline, never on an inference machine\n"
             "ed25519-secret %s %s\n", key_id, skhex);
    sodium_memzero(skhex, sizeof skhex);
    st = write_new(path_k, text, 0600);
    sodium_memzero(text, sizeof text);
    if (st) return st;
    snprintf(text, sizeof text, "ed25519 %s %s%s%s\n", key_id, pkhex, comment && *comment ? " " : "",
             comment ? comment : "");
    if ((st = write_new(path_p, text, 0644))) unlink(path_k);
    return st;
}

static mi_status load_secret(const char *path, unsigned char sk[64], char key_id[17]) {
    char text[1024];
    mi_status st = mi_trust_read_small(path, text, sizeof text, "secret key");
    if (st) return st;
    struct stat sb;
    if (stat(path, &sb) == 0 && (sb.st_mode & 077))
        fprintf(stderr, "medinfer: warning: secret key %s is readable by others (chmod 600 it)\n", path);
    st = MI_FAIL(MI_ERR_FORMAT, "secret key %s: expected a line \"ed25519-secret KEYID HEX\"", path);
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char kind[20], id[32], hex[160];
        if (line[0] == '#' || sscanf(line, "%19s %31s %159s", kind, id, hex) != 3) continue;
        if (strcmp(kind, "ed25519-secret") || !hex_decode(hex, sk, 64)) break;
        key_id_of(sk + 32, key_id);  /* libsodium's secret key is seed || public key */
        st = strcmp(id, key_id) ? MI_FAIL(MI_ERR_FORMAT, "secret key %s: key id %s does not match the key (%s)",
                                          path, id, key_id)
                                : MI_OK;
        sodium_memzero(hex, sizeof hex);
        break;
    }
    sodium_memzero(text, sizeof text);
    return st;
}

mi_status mi_sign_blob(const char *secret_key_path, const char *blob_path, mi_signature *out) {
    mi_status st = sodium_ready();
    if (st) return st;
    unsigned char sk[64];
    if ((st = load_secret(secret_key_path, sk, out->key_id))) return st;
    mi_weights w;
    if ((st = mi_weights_open(&w, blob_path))) { sodium_memzero(sk, sizeof sk); return st; }
    const char *v = mi_weights_meta(&w, "model_version");
    char msg[256];
    int n = v ? mi_signature_message(msg, sizeof msg, w.sha256, v) : -1;
    if (n < 0) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: model_version %s%s%s: a signature must cover a 1-63 character version",
                     blob_path, v ? "'" : "missing", v ? v : "", v ? "' is not valid" : "");
    } else {
        snprintf(out->sha256, sizeof out->sha256, "%s", w.sha256);
        snprintf(out->model_version, sizeof out->model_version, "%s", v);
        crypto_sign_detached(out->sig, NULL, (const unsigned char *)msg, (unsigned long long)n, sk);
    }
    sodium_memzero(sk, sizeof sk);
    mi_weights_close(&w);
    if (st) return st;
    char sig_path[1024];
    snprintf(sig_path, sizeof sig_path, "%s.sig", blob_path);
    return mi_signature_write(sig_path, out);
}

/* ---- the check before use ------------------------------------------------------------------------ */

mi_status mi_trust_check_weights(const mi_weights *w, const char *pubkey_opt, mi_trust_info *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->key_id, sizeof out->key_id, "none");
    snprintf(out->blob_sha256, sizeof out->blob_sha256, "%s", w->sha256);
    const char *v = mi_weights_meta(w, "model_version"), *name = mi_weights_meta(w, "name");
    if (!name) name = mi_weights_meta(w, "arch");
    snprintf(out->model_version, sizeof out->model_version, "%s", v ? v : "");
    snprintf(out->model_name, sizeof out->model_name, "%s", name ? name : "");
    mi_trust_store store;
    mi_status st = mi_trust_store_resolve(&store, pubkey_opt);
    snprintf(out->source, sizeof out->source, "%s", store.source);
    if (st) {
        char pre[600];
        snprintf(pre, sizeof pre, "%s: refused: ", w->path);
        return mi_trust_rewrap(MI_ERR_SECURITY, pre);
    }
    if (store.n == 0) return MI_OK;
    out->key_configured = true;
    char sig_path[1024];
    snprintf(sig_path, sizeof sig_path, "%s.sig", w->path);
    if (access(sig_path, F_OK) != 0)
        return MI_FAIL(MI_ERR_SECURITY, "%s: refused: unsigned (no %s) and a trusted key is configured (%s)",
                       w->path, sig_path, store.source);
    mi_signature sig;
    if ((st = mi_signature_read(sig_path, &sig)) ||
        (st = mi_signature_verify(&store, &sig, w->sha256, v, w->path)))
        return mi_trust_rewrap(MI_ERR_SECURITY, "refused: ");
    out->verified = true;
    snprintf(out->key_id, sizeof out->key_id, "%s", sig.key_id);
    return MI_OK;
}

mi_status mi_trust_check(const char *blob_path, const char *pubkey_opt, mi_trust_info *out) {
    mi_weights w;
    mi_status st = mi_weights_open(&w, blob_path);
    if (st) return st;
    st = mi_trust_check_weights(&w, pubkey_opt, out);
    mi_weights_close(&w);
    return st;
}
