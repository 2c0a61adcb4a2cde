/* pipelines/trust/trust.h - trusted models: detached Ed25519 signatures over a blob's SHA-256
 * and model_version (libsodium), the trust store, the hardware code, signed and versioned
 * updates with rollback (libcurl), and a hash-chained, append-only audit trail (SQLite).
 * File formats, the update protocol and the exit codes are specified in docs/trust.md.
 *
 * How an inference command uses it (classify, endoqc, ...): two lines in the option loop, one
 * check after the model is opened, one append before the report is written:
 *
 *     mi_trust_opts trust = {0};
 *     for (int i = 1; i < argc; i++) {
 *         int r = mi_trust_opt(&trust, argc, argv, &i);      // --pubkey K, --audit DB
 *         if (r < 0) return MI_EXIT_USAGE;
 *         if (r) continue;
 *         ...the command's own options...
 *     }
 *     mi_weights w;  ...mi_weights_open(&w, model_path)...    // the bytes that will run
 *     mi_trust_info ti;
 *     mi_status st = mi_trust_check_weights(&w, trust.pubkey, &ti);
 *     if (st != MI_OK) return mi_trust_cli_fail("classify", st);   // exit 10 when refused
 *     ...mi_model_open_weights(&m, &w): the network and the metadata only after the check...
 *     ...inference...
 *     if (trust.audit) {
 *         mi_audit_row row = { .command = "classify", .input_sha256 = input_hex,
 *                              .thresholds_json = "{\"min_prob\":0.5}",
 *                              .result_json = "{\"label\":\"polyp\",\"prob\":0.93}" };
 *         mi_audit_row_model(&row, &ti);
 *         if (mi_audit_append(trust.audit, &row) != MI_OK) return mi_audit_cli_fail("classify");
 *     }
 *     ...write the report...
 *
 * Append the audit row before writing the report, so that no result leaves the program without
 * its record. Every function returns mi_status with the reason in mi_last_error(); none exits. */
#ifndef MI_TRUST_H
#define MI_TRUST_H

#include "medinfer.h"
#include "weights/safetensors.h"

#include <stdbool.h>

/* ---- exit codes ---------------------------------------------------------------------------
 * Distinct per refusal so scripts and cron jobs can tell them apart; tools/cli.h keeps 0-2 and
 * leaves 10-39 to this list. Every refusal leaves the installed model untouched. */
typedef enum {
    MI_TRUST_EXIT_UNTRUSTED   = 10, /* a key is configured and the blob is unsigned, mis-signed,
                                       signed by an untrusted key, or the trust store is unreadable */
    MI_TRUST_EXIT_SERVER      = 20, /* update: server unreachable, HTTP error, malformed manifest */
    MI_TRUST_EXIT_TRUNCATED   = 21, /* update: download incomplete (fewer bytes than promised) */
    MI_TRUST_EXIT_HASH        = 22, /* update: downloaded bytes' SHA-256 or size != manifest's */
    MI_TRUST_EXIT_SIGNATURE   = 23, /* update: no trusted key, or the signature does not verify */
    MI_TRUST_EXIT_NOT_NEWER   = 24, /* update: server's model_version is older than installed */
    MI_TRUST_EXIT_HARDWARE    = 25, /* update: this machine's hardware code is not authorized */
    MI_TRUST_EXIT_INSTALL     = 26, /* update/rollback: local file system error while installing */
    MI_TRUST_EXIT_NO_PREVIOUS = 27, /* rollback: no previous model kept */
    MI_TRUST_EXIT_MISMATCH    = 28, /* update: blob is not a valid blob or disagrees with manifest */
    MI_TRUST_EXIT_BUSY        = 29, /* update/rollback: another one holds DIR/.lock */
    MI_TRUST_EXIT_AUDIT_BROKEN = 30, /* audit verify: rows edited, deleted or inserted */
    MI_TRUST_EXIT_AUDIT_IO    = 31, /* audit DB cannot be opened, written, or is not an audit DB */
} mi_trust_exit;

/* ---- keys, trust store, signatures ---------------------------------------------------------- */
#define MI_TRUST_MAX_KEYS 32
#define MI_TRUST_DEFAULT_STORE "/etc/medinfer/trusted.pub"

typedef struct {
    unsigned char pk[32];
    char          key_id[17];    /* first 16 hex chars of SHA-256(pk) */
} mi_trust_key;

typedef struct {
    int          n;              /* 0: no key configured (nothing is checked) */
    mi_trust_key keys[MI_TRUST_MAX_KEYS];
    char         source[600];    /* "--pubkey PATH", "MEDINFER_TRUST=PATH", the default path, "none" */
} mi_trust_store;

/* Reads a public-key file (one "ed25519 KEYID HEX [comment]" per line, '#' comments). */
mi_status mi_trust_store_load(mi_trust_store *s, const char *path);
/* The configured store: pubkey_opt when non-NULL and non-empty, else $MEDINFER_TRUST when set
 * and non-empty, else MI_TRUST_DEFAULT_STORE when that file exists, else none (s->n == 0).
 * A store that is named but unreadable or empty is an error (MI_ERR_SECURITY): fail closed. */
mi_status mi_trust_store_resolve(mi_trust_store *s, const char *pubkey_opt);

typedef struct {
    char          key_id[17];
    char          sha256[65];         /* of the whole blob file, lowercase hex */
    char          model_version[64];  /* the blob's __metadata__ model_version */
    unsigned char sig[64];            /* Ed25519 over mi_signature_message() */
} mi_signature;

/* The exact signed bytes: "medinfer-signature-v1\nsha256: <hex>\nmodel-version: <v>\n".
 * Returns the length, or -1 when model_version is not 1-63 printable non-space ASCII chars. */
int mi_signature_message(char *buf, size_t cap, const char *sha256, const char *model_version);
mi_status mi_signature_parse(const char *text, const char *what, mi_signature *out);
mi_status mi_signature_read(const char *sig_path, mi_signature *out);
void      mi_signature_format(const mi_signature *s, char *buf, size_t cap);  /* needs 512 bytes */
/* Writes sig_path atomically (temporary file, fsync, rename, fsync of the directory). */
mi_status mi_signature_write(const char *sig_path, const mi_signature *s);
/* Checks s against the store for a blob with this sha256 and model_version; `what` (the blob's
 * path) names the blob in the error. MI_ERR_SECURITY with the reason when it does not verify. */
mi_status mi_signature_verify(const mi_trust_store *store, const mi_signature *s,
                              const char *sha256, const char *model_version, const char *what);

/* `medinfer model keygen`: PREFIX.key (mode 0600) and PREFIX.pub; refuses to overwrite either.
 * key_id gets the new key's id. */
mi_status mi_keygen(const char *prefix, const char *comment, char key_id[17]);
/* `medinfer model sign`: writes BLOB.sig; the blob must open and carry model_version. */
mi_status mi_sign_blob(const char *secret_key_path, const char *blob_path, mi_signature *out);

/* ---- checking a blob before use -------------------------------------------------------------- */
typedef struct {
    bool key_configured;   /* a trust store applies (see mi_trust_store_resolve) */
    bool verified;         /* the blob's signature verified against it */
    char key_id[17];       /* the signing key's id when verified, else "none" */
    char source[600];      /* where the trust store came from, "none" when not configured */
    char blob_sha256[65];
    char model_version[64];/* "" when the blob has none */
    char model_name[128];  /* metadata "name", else "arch", else "" */
} mi_trust_info;

/* The blob as loaded (w->sha256 is of the bytes read into the reader's own copy, so what is
 * checked is what runs). With no key configured: MI_OK, verified = false, key_id "none". With a
 * key: MI_OK only when <w->path>.sig exists and verifies for w's SHA-256 and model_version;
 * otherwise MI_ERR_SECURITY naming the blob and the reason (unsigned, other blob, other version,
 * untrusted key, forged). */
mi_status mi_trust_check_weights(const mi_weights *w, const char *pubkey_opt, mi_trust_info *out);
/* Same, opening and closing the blob itself. */
mi_status mi_trust_check(const char *blob_path, const char *pubkey_opt, mi_trust_info *out);

/* ---- hardware code ----------------------------------------------------------------------------
 * "XXXX-XXXX-XXXX-XXXX": the first 64 bits of SHA-256("medinfer-hwcode-v1\n" machine-id "\n"
 * cpu-identity "\n"), uppercase hex. machine-id: /etc/machine-id (else /var/lib/dbus/machine-id);
 * cpu-identity: x86 CPUID vendor, leaf-1 signature and brand string; aarch64 MIDR_EL1. */
mi_status mi_hwcode(char code[20]);
/* The two inputs, for `medinfer model hwcode --explain`. */
mi_status mi_hwcode_inputs(char *machine_id, size_t mcap, char *cpu_id, size_t ccap);
/* Codes compare case-insensitively and ignoring '-'. */
bool mi_hwcode_equal(const char *a, const char *b);

/* ---- versions, updates, rollback --------------------------------------------------------------- */
/* model_version is dotted decimal ("2026.11.2"); missing trailing parts count as 0.
 * *cmp < 0, 0, > 0 as a is older, equal, newer than b. MI_ERR_FORMAT for anything else. */
mi_status mi_version_compare(const char *a, const char *b, int *cmp);

/* Model directory: DIR/model.safetensors (+ .sig) is what commands load; see docs/trust.md. */
#define MI_MODEL_FILE "model.safetensors"
/* Beside a rejected staged model: why it was not activated (the caller's text, usually JSON). */
#define MI_SELFCHECK_FILE "selfcheck.json"

typedef struct {
    const char *server;      /* base URL (manifest at URL/manifest.json) or the manifest's URL */
    const char *model_dir;
    const char *pubkey;      /* NULL: $MEDINFER_TRUST / default store; an update needs a key */
    long        stall_s;     /* abort when no byte arrives for this long; 0: 60 s */
    bool        quiet;
    bool        stage;       /* verify into DIR/staged instead of making it current */
} mi_update_opts;

typedef struct {
    int  exit_code;          /* 0 installed or up to date, else an mi_trust_exit */
    bool installed;          /* false when up to date or refused */
    char installed_version[64]; /* before the update; "" when none */
    char offered_version[64];
    char hwcode[20];
    /* stage mode: the offered version is staged (now or by an earlier run) at staged_blob, or
     * it was rejected by an earlier self-check on this machine (rejected_reason: its record) */
    bool staged, rejected_before;
    char staged_blob[1100];
    char rejected_reason[2048];
    double min_accuracy;     /* the manifest's min_reference_accuracy, -1 when it gives none */
} mi_update_result;

/* Fetches the manifest, compares versions, checks the hardware code, downloads to a temporary
 * file in the model dir, checks size, SHA-256, blob validity and signature, then switches the
 * current model atomically and keeps the previous one. On any refusal the installed model is
 * untouched; r->exit_code says which refusal, mi_last_error() why. */
mi_status mi_model_update(const mi_update_opts *o, mi_update_result *r);
/* Makes the kept previous model current again (and the current one previous). When a key is
 * configured the previous blob must still verify. *exit_code as for update. */
mi_status mi_model_rollback(const char *model_dir, const char *pubkey, int *exit_code,
                            char version[64]);
/* Stage mode's two endings. Activate: the staged model (which must still verify when a key is
 * configured) becomes current and the current one previous. Reject: the staged model becomes
 * DIR/rejected with `record` written beside it; a later stage-mode update offering the same
 * version reports rejected_before instead of staging it again. *exit_code as for update
 * (27 when nothing is staged). */
mi_status mi_model_activate_staged(const char *model_dir, const char *pubkey, int *exit_code,
                                   char version[64]);
mi_status mi_model_reject_staged(const char *model_dir, const char *record, int *exit_code);

/* ---- audit trail ---------------------------------------------------------------------------------- */
typedef struct {
    const char *command;         /* "classify" */
    const char *input_sha256;    /* of the input file; "" when there is none (never the path:
                                    file names can carry patient identity) */
    const char *model_name, *model_version, *blob_sha256, *key_id;  /* mi_audit_row_model() */
    const char *thresholds_json; /* JSON text; NULL: "{}" */
    const char *result_json;     /* JSON text, the result summary; NULL: "{}" */
    /* NULL: filled in by mi_audit_append (MI_VERSION, git hash of the build, ISA in use) */
    const char *engine_version, *build, *isa;
} mi_audit_row;

/* Points the model fields of row at t's. */
void mi_audit_row_model(mi_audit_row *row, const mi_trust_info *t);
/* Appends one row (creating the DB and table on first use) in one IMMEDIATE transaction, so
 * concurrent writers serialize; the row's hash covers its fields and the previous row's hash. */
mi_status mi_audit_append(const char *db_path, const mi_audit_row *row);

typedef struct {
    long long rows;          /* rows checked */
    long long head_seq;      /* last row's seq, 0 when empty */
    char      head_hash[65]; /* last row's hash; record it elsewhere to detect tail truncation */
    long long bad_seq;       /* first row found wrong, 0 when intact */
    bool      intact;
} mi_audit_report;

/* Walks the chain. MI_OK with out->intact false and the reason in mi_last_error() when rows were
 * edited, deleted or inserted; expect_head ("SEQ:HASH" printed by an earlier verify, or NULL)
 * also catches rows deleted from the end. An error status means the DB could not be read. */
mi_status mi_audit_verify(const char *db_path, const char *expect_head, mi_audit_report *out);
/* The same on a copy of an audit DB in memory (n bytes of an SQLite file, read in place and not
 * retained); `name` (NULL: "(memory)") names it in messages. */
mi_status mi_audit_verify_memory(const void *data, size_t n, const char *name, const char *expect_head,
                                 mi_audit_report *out);

/* The git hash the library was built from ("unknown" outside a git checkout). */
const char *mi_build_git(void);

/* ---- CLI helpers ------------------------------------------------------------------------------------ */
typedef struct {
    const char *pubkey;      /* --pubkey K */
    const char *audit;       /* --audit DB */
} mi_trust_opts;

/* If argv[*i] is --pubkey or --audit (also --pubkey=K form), stores the value, advances *i past
 * it and returns 1; returns 0 for any other argument; -1 (message printed) when the value is
 * missing. */
int mi_trust_opt(mi_trust_opts *o, int argc, char **argv, int *i);
/* The usage lines for those two options, for a command's --help. */
#define MI_TRUST_USAGE \
    "  --pubkey K     trusted public key file; refuses blobs not signed by it\n" \
    "                 (default: $MEDINFER_TRUST, else " MI_TRUST_DEFAULT_STORE " if present)\n" \
    "  --audit DB     append a hash-chained record of the result to SQLite DB\n"
/* Prints "medinfer <cmd>: <last error>" and returns MI_TRUST_EXIT_UNTRUSTED for MI_ERR_SECURITY,
 * else 1 (MI_EXIT_FAIL). */
int mi_trust_cli_fail(const char *cmd, mi_status st);
/* Prints "medinfer <cmd>: audit: <last error>" and returns MI_TRUST_EXIT_AUDIT_IO. */
int mi_audit_cli_fail(const char *cmd);

#endif
