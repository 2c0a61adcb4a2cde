/* fuzz/fuzz_audit.c - the audit-log verifier (pipelines/trust/audit.c) on arbitrary bytes as an
 * SQLite database: mi_audit_verify_memory, which runs the walk of mi_audit_verify on the bytes
 * in place (sqlite3_deserialize, read-only; nothing touches the disk). Promises: a refusal names
 * the database; the same bytes read again get the same answer (status, report and message: it
 * depends on the file alone); a chain found intact verifies again, intact, against the head it
 * reported. */
#include "fuzz/fuzz.h"
#include "pipelines/trust/trust.h"

#include <string.h>

#define NAME "fuzz.db"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mi_audit_report r, again;
    char msg[1024];
    const mi_status st = mi_audit_verify_memory(data, size, NAME, NULL, &r);
    snprintf(msg, sizeof msg, "%s", st == MI_OK && r.intact ? "" : mi_last_error());
    FUZZ_CHECK(!*msg || strstr(msg, NAME) != NULL, "a refusal or tampering reported without naming the DB: %s", msg);
    const mi_status st2 = mi_audit_verify_memory(data, size, NAME, NULL, &again);
    FUZZ_CHECK(st2 == st && !memcmp(&again, &r, sizeof r) && !strcmp(st2 == MI_OK && again.intact ? "" : mi_last_error(), msg),
               "read again, a different answer: status %d then %d, intact %d then %d, \"%s\" then \"%s\"", st, st2, r.intact,
               again.intact, msg, mi_last_error());
    if (st != MI_OK) return 0;
    FUZZ_CHECK(r.intact ? r.bad_seq == 0 : r.bad_seq > 0, "intact %d, bad_seq %lld", r.intact, r.bad_seq);
    if (!r.intact || r.rows == 0) return 0;
    FUZZ_CHECK(strlen(r.head_hash) == 64 && r.head_seq == r.rows, "head %lld:%s after %lld rows",
               r.head_seq, r.head_hash, r.rows);
    char head[128];
    snprintf(head, sizeof head, "%lld:%s", r.head_seq, r.head_hash);
    FUZZ_CHECK(mi_audit_verify_memory(data, size, NAME, head, &again) == MI_OK && again.intact &&
               again.rows == r.rows, "intact chain does not verify against its own head %s: %s", head,
               mi_last_error());
    return 0;
}
