/* pipelines/io/outside_db.c - the guards on a connection to an outside SQLite file. */
#include "pipelines/io/outside_db.h"

#include <stddef.h>

int mi_outside_db_guard(sqlite3 *db, int max_value_bytes) {
    int rc = sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_limit(db, SQLITE_LIMIT_LENGTH, max_value_bytes);
    return sqlite3_exec(db, "PRAGMA cell_size_check = ON", NULL, NULL, NULL);
}
