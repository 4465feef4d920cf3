/* qdb.h - SQLite and text helpers shared by qstore.c and msglog.c (see qdb.c). */
#ifndef SR_QDB_H
#define SR_QDB_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

/*
 * Open a database. Writable: created when missing, auto_vacuum=INCREMENTAL
 * set before the first table, WAL, synchronous NORMAL (OFF with nosync),
 * busy_timeout, journal_size_limit, then schema (idempotent SQL) executed.
 * Read-only: SQLITE_OPEN_READONLY and busy_timeout; a missing file is an
 * error (errno ENOENT). NULL with err on failure.
 */
sqlite3 *qdb_open(const char *path, int rdonly, int nosync, const char *schema, char *err,
                  size_t errlen);
/* Execute SQL without results; 0 ok, -1 error (logged with what). */
int qdb_exec(sqlite3 *db, const char *sql, const char *what);
/* Prepare or log; NULL on error. */
sqlite3_stmt *qdb_prepare(sqlite3 *db, const char *sql);
/* Free pages back to the file system (incremental vacuum), then a passive checkpoint. */
void qdb_shrink(sqlite3 *db);
/*
 * Step st to its end, calling row(st, ctx, &stop) for each row (it returns
 * -1 on error, and may set stop). Finalizes st. Returns the rows handed
 * out, or -1 (an SQLite error is logged as "what: message").
 */
/*
 * Append the sender / recipient / subject conditions both stores share to
 * a "... WHERE 1" query at sql+*len: sender_key and, through rcpt_table,
 * addr_key compare folded (GLOB when the pattern has * ? [), subject_key
 * always GLOB. Placeholders are numbered from *idx; keys[0..2] receive the
 * folded values to bind in that order (NULL where absent; the caller frees
 * them). 0 ok, -1 out of memory.
 */
int qdb_add_key_filters(char *sql, size_t cap, size_t *len, int *idx, const char *rcpt_table,
                        const char *sender, const char *recipient, const char *subject,
                        char *keys[3]);
long qdb_each_row(sqlite3 *db, sqlite3_stmt *st, int (*row)(sqlite3_stmt *, void *, int *),
                  void *ctx, const char *what);

/* 1 if s holds a glob metacharacter (* ? [). */
int qglob_has_meta(const char *s);

/* Text column as a C string ("" for NULL). */
const char *qdb_text(sqlite3_stmt *st, int col);
/* Bind s (NULL as SQL NULL) as static text. */
int qdb_bind_text(sqlite3_stmt *st, int idx, const char *s);

/* Join strings with sep into a malloc'd text; NULL when out of memory. */
char *qjoin(const char *const *v, size_t n, char sep);
/* Split a copy of s at sep; *out is an array of n pointers into the same
   allocation (free(*out) frees all). -1 when out of memory. */
int qsplit(const char *s, char sep, char ***out, size_t *n);
/* The SQLite library in use ("3.40.1"). */
const char *qdb_sqlite_version(void);

#endif
