/* fuzz/fuzz_assist_db.c - `assist-server --verify-db` (pipelines/assist/store.c) on arbitrary
 * bytes as an SQLite database, read in place (mi_assist_store_verify_memory, sqlite3_deserialize
 * read-only). Promises: a refusal names the database; an intact verdict reports row counts and
 * heads that agree ("N:" + 64 hex digits, "0:" for an empty table); the same bytes read again get
 * the same answer (status, verdict, heads and message: it depends on the file alone). */
#include "fuzz/fuzz.h"
#include "pipelines/assist/store.h"

#include <string.h>

#define NAME "fuzz.sqlite"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mi_assist_verify_report r, again;
    char msg[1024];
    const mi_status st = mi_assist_store_verify_memory(data, size, NAME, &r);
    snprintf(msg, sizeof msg, "%s", st == MI_OK && r.intact ? "" : mi_last_error());
    FUZZ_CHECK(!*msg || strstr(msg, NAME) != NULL, "a refusal or tampering reported without naming the DB: %s", msg);
    for (int t = 0; st == MI_OK && r.intact && t < 3; t++) {
        long long n = -1;
        char hash[80] = "";
        const int k = sscanf(r.head[t], "%lld:%79s", &n, hash);
        FUZZ_CHECK(n == r.rows[t] && (n == 0 ? k == 1 : k == 2 && strlen(hash) == 64), "table %d: %lld rows, head %s", t,
                   r.rows[t], r.head[t]);
    }
    const mi_status st2 = mi_assist_store_verify_memory(data, size, NAME, &again);
    FUZZ_CHECK(st2 == st && again.intact == r.intact && !memcmp(again.head, r.head, sizeof r.head) &&
               !strcmp(st2 == MI_OK && again.intact ? "" : mi_last_error(), msg),
               "read again, a different answer: status %d then %d, intact %d then %d, \"%s\" then \"%s\"", st, st2, r.intact,
               again.intact, msg, mi_last_error());
    return 0;
}
