/*
 * qbackup.c - "scanrelay backup DIR": a consistent copy of the quarantine
 * (index and store) and the message log of a state folder, taken while
 * the daemon runs.
 *
 * Public call: qbackup_run(state_dir, dest, stats, err, errlen).
 *
 * dest must not exist or be an empty folder; afterwards it is itself a
 * state folder (quarantine.db, quarantine/YYYYMMDD/ID.gz, messages.db):
 * point state_directory at it, or copy its contents into one, to restore.
 *
 * Consistency. Each database is copied with SQLite's online backup API
 * (sqlite3_backup_step(-1): all pages in one read transaction, so the copy
 * is the database as of one moment, whatever the daemon's writers do;
 * WAL lets them go on meanwhile). The quarantine files are copied after
 * the index, for the rows of that copy that have a file (held, released).
 * Files are written once and never changed, so a copied file is the one
 * the row names; a file purged or deleted between the index copy and its
 * own copy is missing: the copy's start-up check (qstore_check) then marks
 * its row deleted, as the daemon's own check would. Files quarantined
 * after the index copy have no row in it and are not copied.
 *
 * Knows the store's layout (quarantine.db table q: id, day, state;
 * files quarantine/%08ld/ID.gz), which qstore.c defines.
 * Copies are fsync'd (files, folders) before qbackup_run returns.
 * Returns 0, or -1 with a message in err (dest may hold a partial copy).
 * Blocks: a command-line call.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "fileio.h"
#include "qbackup.h"
#include "qstore.h"

#define BUSY_TRIES 600 /* 100 ms apart: a writer holding the database for a minute */

static int
fsync_path(const char *path, int dir)
{
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* An empty or missing folder becomes dest; anything else is refused. */
static int
make_dest(const char *dest, char *err, size_t errlen)
{
    if (mkdir(dest, 0750) == 0)
        return 0;
    if (errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", dest, strerror(errno));
        return -1;
    }
    DIR *d = opendir(dest);
    if (d == NULL) {
        snprintf(err, errlen, "%s: %s", dest, strerror(errno));
        return -1;
    }
    struct dirent *de;
    int empty = 1;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            empty = 0;
    closedir(d);
    if (!empty) {
        snprintf(err, errlen, "%s: not empty (a backup goes into a new or empty folder)", dest);
        return -1;
    }
    return 0;
}

/* src -> dst with the online backup API. 1 copied, 0 no src, -1 error. */
static int
copy_db(const char *src, const char *dst, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(src, &sb) < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", src, strerror(errno));
        return -1;
    }
    sqlite3 *from = NULL, *to = NULL;
    int rc = -1;
    if (sqlite3_open_v2(src, &from, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", src, from ? sqlite3_errmsg(from) : "cannot open");
        goto out;
    }
    sqlite3_busy_timeout(from, 5000);
    if (sqlite3_open_v2(dst, &to, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", dst, to ? sqlite3_errmsg(to) : "cannot open");
        goto out;
    }
    sqlite3_backup *b = sqlite3_backup_init(to, "main", from, "main");
    if (b == NULL) {
        snprintf(err, errlen, "%s: backup: %s", src, sqlite3_errmsg(to));
        goto out;
    }
    int k, tries = 0;
    while ((k = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || k == SQLITE_LOCKED) {
        if (++tries > BUSY_TRIES)
            break;
        sqlite3_sleep(100);
    }
    int fk = sqlite3_backup_finish(b);
    if (k != SQLITE_DONE || fk != SQLITE_OK) {
        snprintf(err, errlen, "%s: backup: %s", src, sqlite3_errstr(k != SQLITE_DONE ? k : fk));
        goto out;
    }
    /* The copy in one file (no -wal left), on disk. */
    if (sqlite3_exec(to, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: checkpoint: %s", dst, sqlite3_errmsg(to));
        goto out;
    }
    rc = 1;
out:
    if (to && sqlite3_close(to) != SQLITE_OK && rc == 1) {
        snprintf(err, errlen, "%s: close failed", dst);
        rc = -1;
    }
    if (from)
        sqlite3_close(from);
    if (rc == 1 && fsync_path(dst, 0) < 0) {
        snprintf(err, errlen, "%s: fsync: %s", dst, strerror(errno));
        rc = -1;
    }
    return rc;
}

/* One file; 1 copied, 0 src missing, -1 error. *bytes += its size. */
static int
copy_file(const char *src, const char *dst, int64_t *bytes, char *err, size_t errlen)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", src, strerror(errno));
        return -1;
    }
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (out < 0) {
        snprintf(err, errlen, "%s: %s", dst, strerror(errno));
        close(in);
        return -1;
    }
    char buf[64 * 1024];
    ssize_t n;
    int rc = 1;
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        if (write_full(out, buf, (size_t)n) < 0) {
            snprintf(err, errlen, "%s: %s", dst, strerror(errno));
            rc = -1;
            break;
        }
        *bytes += n;
    }
    if (n < 0 && rc == 1) {
        snprintf(err, errlen, "%s: %s", src, strerror(errno));
        rc = -1;
    }
    if (rc == 1 && fsync(out) < 0) {
        snprintf(err, errlen, "%s: fsync: %s", dst, strerror(errno));
        rc = -1;
    }
    close(out);
    close(in);
    return rc;
}

/* A day folder of the copy, once its files are in. */
static void
fsync_day(const char *root, long day)
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof(dir), "%s/%08ld", root, day) < (int)sizeof(dir))
        fsync_path(dir, 1);
}

/* The files of the copied index's held and released rows. 0 / -1. */
static int
copy_store(const char *state_dir, const char *dest, struct qbackup_stats *st, char *err,
           size_t errlen)
{
    char db[PATH_MAX], root[PATH_MAX];
    snprintf(db, sizeof(db), "%s/quarantine.db", dest);
    snprintf(root, sizeof(root), "%s/quarantine", dest);
    if (mkdir(root, 0750) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", root, strerror(errno));
        return -1;
    }
    sqlite3 *c = NULL;
    sqlite3_stmt *q = NULL;
    int rc = -1;
    long lastday = -1;
    if (sqlite3_open_v2(db, &c, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c, "SELECT id, day FROM q WHERE state IN (?, ?) ORDER BY day", -1, &q,
                           NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", db, c ? sqlite3_errmsg(c) : "cannot open");
        goto out;
    }
    sqlite3_bind_int(q, 1, QSTATE_HELD);
    sqlite3_bind_int(q, 2, QSTATE_RELEASED);
    int k;
    while ((k = sqlite3_step(q)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(q, 0);
        long day = (long)sqlite3_column_int64(q, 1);
        char from[PATH_MAX], dir[PATH_MAX], to[PATH_MAX + 64];
        if (id == NULL || strchr(id, '/') || id[0] == '.')
            continue; /* not a name qstore writes */
        if (snprintf(from, sizeof(from), "%s/quarantine/%08ld/%s.gz", state_dir, day, id) >=
                (int)sizeof(from) ||
            snprintf(dir, sizeof(dir), "%s/%08ld", root, day) >= (int)sizeof(dir) ||
            snprintf(to, sizeof(to), "%s/%s.gz", dir, id) >= (int)sizeof(to)) {
            snprintf(err, errlen, "%s: path too long", dest);
            goto out;
        }
        if (day != lastday) {
            if (lastday >= 0)
                fsync_day(root, lastday);
            if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
                snprintf(err, errlen, "%s: %s", dir, strerror(errno));
                goto out;
            }
            lastday = day;
        }
        int c1 = copy_file(from, to, &st->bytes, err, errlen);
        if (c1 < 0)
            goto out;
        if (c1 == 0)
            st->gone++;
        else
            st->files++;
    }
    if (k != SQLITE_DONE) {
        snprintf(err, errlen, "%s: %s", db, sqlite3_errmsg(c));
        goto out;
    }
    if (lastday >= 0)
        fsync_day(root, lastday);
    fsync_path(root, 1);
    rc = 0;
out:
    sqlite3_finalize(q);
    if (c)
        sqlite3_close(c);
    return rc;
}

int
qbackup_run(const char *state_dir, const char *dest, struct qbackup_stats *st, char *err,
            size_t errlen)
{
    char src[PATH_MAX], dst[PATH_MAX];
    memset(st, 0, sizeof(*st));
    if (make_dest(dest, err, errlen) < 0)
        return -1;

    /* The quarantine: index first, then the files its rows name. */
    snprintf(src, sizeof(src), "%s/quarantine.db", state_dir);
    snprintf(dst, sizeof(dst), "%s/quarantine.db", dest);
    int k = copy_db(src, dst, err, errlen);
    if (k < 0)
        return -1;
    st->quarantine_db = k;
    if (k == 1) {
        if (copy_store(state_dir, dest, st, err, errlen) < 0)
            return -1;
        /* Rows whose file went away during the copy: marked deleted. */
        if (st->gone > 0) {
            struct qstore *qs = qstore_open(dest, 0, err, errlen);
            if (qs == NULL)
                return -1;
            int ck = qstore_check(qs, NULL);
            qstore_close(qs);
            if (ck < 0) {
                snprintf(err, errlen, "%s: the check of the copied quarantine failed", dest);
                return -1;
            }
        }
    }

    /* The message log. */
    snprintf(src, sizeof(src), "%s/messages.db", state_dir);
    snprintf(dst, sizeof(dst), "%s/messages.db", dest);
    k = copy_db(src, dst, err, errlen);
    if (k < 0)
        return -1;
    st->messages_db = k;
    if (fsync_path(dest, 1) < 0) {
        snprintf(err, errlen, "%s: fsync: %s", dest, strerror(errno));
        return -1;
    }
    return 0;
}
