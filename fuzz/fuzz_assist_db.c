/* fuzz/fuzz_assist_db.c - `assist-server --verify-db` (pipelines/assist/store.c) on arbitrary
 * bytes as an SQLite database, read in place (mi_assist_store_verify_memory, sqlite3_deserialize
 * read-only). Promises: a refusal names the database; an intact verdict reports row counts and
 * heads that agree ("N:" + 64 hex digits, "0:" for an empty table); a database found intact is
 * found intact again. */
#include "fuzz/fuzz.h"
#include "pipelines/assist/store.h"

#include <string.h>

#define NAME "fuzz.sqlite"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mi_assist_verify_report r, again;
    if (mi_assist_store_verify_memory(data, size, NAME, &r) != MI_OK) {
        FUZZ_CHECK(strstr(mi_last_error(), NAME) != NULL, "message does not name the DB: %s", mi_last_error());
        return 0;
    }
    if (!r.intact) {
        FUZZ_CHECK(strstr(mi_last_error(), NAME) != NULL, "tampering reported without naming the DB: %s", mi_last_error());
        return 0;
    }
    for (int t = 0; t < 3; t++) {
        long long n = -1;
        char hash[80] = "";
        const int k = sscanf(r.head[t], "%lld:%79s", &n, hash);
        FUZZ_CHECK(n == r.rows[t] && (n == 0 ? k == 1 : k == 2 && strlen(hash) == 64), "table %d: %lld rows, head %s", t,
                   r.rows[t], r.head[t]);
    }
    FUZZ_CHECK(mi_assist_store_verify_memory(data, size, NAME, &again) == MI_OK && again.intact &&
               !memcmp(again.head, r.head, sizeof r.head), "an intact database does not verify again: %s", mi_last_error());
    return 0;
}
