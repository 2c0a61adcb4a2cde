/* fuzz/fuzz_audit.c - the audit-log verifier (pipelines/trust/audit.c) on arbitrary bytes as an
 * SQLite database: mi_audit_verify_memory, which runs the walk of mi_audit_verify on the bytes
 * in place (sqlite3_deserialize, read-only; nothing touches the disk). A chain found intact must
 * verify again, intact, against the head it reported; a refusal must name the database. */
#include "fuzz/fuzz.h"
#include "pipelines/trust/trust.h"

#include <string.h>

#define NAME "fuzz.db"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mi_audit_report r, again;
    if (mi_audit_verify_memory(data, size, NAME, NULL, &r) != MI_OK) {
        FUZZ_CHECK(strstr(mi_last_error(), NAME) != NULL, "message does not name the DB: %s", mi_last_error());
        return 0;
    }
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
