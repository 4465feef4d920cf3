/*
 * qdb.c - what the quarantine index and the message log share: opening a
 * SQLite database the way both want it (WAL, incremental auto-vacuum,
 * busy timeout, bounded WAL file), shrinking it after deletes, and the
 * folding of searchable text.
 *
 * Public calls: qdb_open, qdb_exec, qdb_prepare, qdb_shrink,
 * qglob_has_meta, qdb_text, qdb_bind_text, qjoin, qsplit.
 *
 * Folding. Keys and patterns go through the same function, textfold()
 * of lib/textfold.h (NFKC, then Unicode case folding), so a glob compares
 * folded against folded with SQLite's GLOB (UTF-8 aware: ? is one
 * character).
 *
 * Failures return -1 or NULL and log through log.h; out of memory is
 * reported, never fatal here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "qdb.h"
#include "textfold.h"

#define QDB_BUSY_MS 5000
#define QDB_WAL_LIMIT (16 * 1024 * 1024)

int
qdb_exec(sqlite3 *db, const char *sql, const char *what)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_warnx("%s: %s: %s", sqlite3_db_filename(db, "main"), what,
                  msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

sqlite3_stmt *
qdb_prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        log_warnx("%s: cannot prepare \"%.60s...\": %s", sqlite3_db_filename(db, "main"), sql,
                  sqlite3_errmsg(db));
        return NULL;
    }
    return st;
}

static int
pragma_int(sqlite3 *db, const char *sql, long long *out)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

sqlite3 *
qdb_open(const char *path, int rdonly, int nosync, const char *schema, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int flags = rdonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    long long av = 0;

    flags |= SQLITE_OPEN_NOMUTEX; /* each handle is used under its owner's mutex */
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        if (rc == SQLITE_CANTOPEN)
            errno = ENOENT;
        snprintf(err, errlen, "%s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, QDB_BUSY_MS);
    sqlite3_extended_result_codes(db, 1);
    if (rdonly) {
        /* Fail now, not at the first query, when it is no database. */
        if (pragma_int(db, "PRAGMA schema_version", &av) < 0) {
            snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
            sqlite3_close(db);
            errno = EIO;
            return NULL;
        }
        return db;
    }

    /*
     * auto_vacuum only takes effect before the first table is created;
     * an older file without it is reported (it still works, it just does
     * not shrink: "VACUUM" once converts it).
     */
    char sql[256];
    if (qdb_exec(db, "PRAGMA auto_vacuum=INCREMENTAL", "auto_vacuum") < 0 ||
        qdb_exec(db, "PRAGMA journal_mode=WAL", "journal_mode") < 0)
        goto fail;
    snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s; PRAGMA journal_size_limit=%d;",
             nosync ? "OFF" : "NORMAL", QDB_WAL_LIMIT);
    if (qdb_exec(db, sql, "pragmas") < 0)
        goto fail;
    if (schema && qdb_exec(db, schema, "schema") < 0)
        goto fail;
    if (pragma_int(db, "PRAGMA auto_vacuum", &av) == 0 && av != 2)
        log_warnx("%s: created without incremental auto-vacuum; run VACUUM once to convert", path);
    return db;

fail:
    snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
    sqlite3_close(db);
    errno = EIO;
    return NULL;
}

void
qdb_shrink(sqlite3 *db)
{
    long long freelist = 0;
    if (pragma_int(db, "PRAGMA freelist_count", &freelist) == 0 && freelist > 0)
        qdb_exec(db, "PRAGMA incremental_vacuum", "incremental_vacuum");
    /* The file is truncated when the WAL is copied back: do it now. */
    sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
}

int
qglob_has_meta(const char *s)
{
    return s != NULL && strpbrk(s, "*?[") != NULL;
}

const char *
qdb_text(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? (const char *)t : "";
}

int
qdb_bind_text(sqlite3_stmt *st, int idx, const char *s)
{
    if (s == NULL)
        return sqlite3_bind_null(st, idx);
    return sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC);
}

char *
qjoin(const char *const *v, size_t n, char sep)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(v[i] ? v[i] : "") + 1;
    char *out = malloc(len), *p = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(v[i] ? v[i] : "");
        if (i > 0)
            *p++ = sep;
        memcpy(p, v[i] ? v[i] : "", k);
        p += k;
    }
    *p = '\0';
    return out;
}

int
qsplit(const char *s, char sep, char ***out, size_t *n)
{
    size_t len = strlen(s), cnt = 0;
    if (len > 0) {
        cnt = 1;
        for (const char *p = s; *p; p++)
            cnt += *p == sep;
    }
    char **v = malloc((cnt + 1) * sizeof(char *) + len + 1);
    if (v == NULL)
        return -1;
    char *text = (char *)(v + cnt + 1);
    memcpy(text, s, len + 1);
    size_t i = 0;
    if (cnt > 0) {
        v[i++] = text;
        for (char *p = text; *p; p++) {
            if (*p == sep) {
                *p = '\0';
                v[i++] = p + 1;
            }
        }
    }
    v[i] = NULL;
    *out = v;
    *n = cnt;
    return 0;
}

long
qdb_each_row(sqlite3 *db, sqlite3_stmt *st, int (*row)(sqlite3_stmt *, void *, int *), void *ctx,
             const char *what)
{
    long rows = 0;
    int k = SQLITE_DONE, stop = 0;

    while (!stop && (k = sqlite3_step(st)) == SQLITE_ROW) {
        if (row(st, ctx, &stop) < 0) {
            rows = -1;
            break;
        }
        rows++;
    }
    if (rows >= 0 && !stop && k != SQLITE_DONE) {
        log_warnx("%s: %s", what, sqlite3_errmsg(db));
        rows = -1;
    }
    sqlite3_finalize(st);
    return rows;
}

int
qdb_add_key_filters(char *sql, size_t cap, size_t *len, int *idx, const char *rcpt_table,
                    const char *sender, const char *recipient, const char *subject,
                    char *keys[3])
{
#define ADD(...) *len += (size_t)snprintf(sql + *len, cap - *len, __VA_ARGS__)
    if (sender) {
        if ((keys[0] = textfold(sender)) == NULL)
            return -1;
        ADD(" AND sender_key %s ?%d", qglob_has_meta(sender) ? "GLOB" : "=", (*idx)++);
    }
    if (recipient) {
        if ((keys[1] = textfold(recipient)) == NULL)
            return -1;
        ADD(" AND n IN (SELECT n FROM %s WHERE addr_key %s ?%d)", rcpt_table,
            qglob_has_meta(recipient) ? "GLOB" : "=", (*idx)++);
    }
    if (subject) {
        if ((keys[2] = textfold(subject)) == NULL)
            return -1;
        ADD(" AND subject_key GLOB ?%d", (*idx)++);
    }
#undef ADD
    return 0;
}

const char *
qdb_sqlite_version(void)
{
    return sqlite3_libversion();
}
