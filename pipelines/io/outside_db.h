/* pipelines/io/outside_db.h - the guards on an SQLite connection to a file someone else may have
 * written or damaged (the findings database and the audit log, when they are verified).
 *
 * Such a file's schema is SQL that SQLite runs and its pages are bytes SQLite trusts unless told
 * otherwise: a table that is a view can be an endless recursive query, a generated column can
 * build a gigabyte per row, and a cell that claims to run past its page makes SQLite read the
 * memory beyond it, so that one damaged file got a different verdict from run to run (where the
 * page buffers lay in memory decided between "malformed", rows missing, and which rows). */
#ifndef MI_IO_OUTSIDE_DB_H
#define MI_IO_OUTSIDE_DB_H

#include <sqlite3.h>

/* On an open connection, before anything is read: schema SQL may call only functions without
 * side effects (trusted_schema off), no value may exceed max_value_bytes, and every cell is
 * checked against its page when the page is read (a page that fails is corrupt, every time).
 * SQLITE_OK, or SQLite's code (its message in sqlite3_errmsg). */
int mi_outside_db_guard(sqlite3 *db, int max_value_bytes);

#endif
