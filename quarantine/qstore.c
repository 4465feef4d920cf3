/*
 * qstore.c - the quarantine store. Each message is one gzip file
 * <state>/quarantine/YYYYMMDD/<ID>.gz (UTC day of its quarantine time);
 * the index is <state>/quarantine.db (SQLite, WAL, incremental
 * auto-vacuum). Bodies never go into SQLite.
 *
 * Public calls: qstore_open, qstore_close, qstore_check, qstore_put,
 * qstore_put_many, qstore_query, qstore_get, qstore_open_message,
 * qmsg_read, qmsg_close, qstore_copy_message, qstore_set_state,
 * qstore_delete, qstore_purge, qstore_purger_start/set/stop, qstore_usage.
 *
 * Durability. A put writes the file under a temporary name (".ID.tmp"),
 * fsyncs it, renames it into place, fsyncs the folder (lib/safefile.c's
 * safe_write, the queue's too), and only then
 * inserts the row: a crash leaves at worst a file without a row, which
 * qstore_check removes (the message was never acknowledged as stored).
 * The purge deletes rows first (committed), then unlinks the files: a
 * crash in between leaves files without rows, removed the same way. A
 * delete marks the row first, then unlinks. So the index never claims a
 * message that a check would not find, and no file outlives its row for
 * longer than until the next check.
 *
 * Space. The used bytes (compressed file sizes) and the file count are
 * kept by triggers in q_usage, so the quota check costs one row read. The
 * purge removes one message at a time, oldest first, in transactions of
 * at most PURGE_TXN rows, each followed by an incremental vacuum and a
 * passive checkpoint, so neither the index file nor the folder grows in a
 * steady state and no lock is held for long.
 *
 * Threads. One connection, one mutex: every statement runs under qs->mu;
 * compression, fsync and unlink run outside it. All calls are thread-safe
 * and all of them block (disk, SQLite): never call them from the event loop.
 * Memory is bounded per put (64 KB in, 64 KB out, zlib's state: about
 * 400 KB, kept in a free list of at most GZ_KEEP for the next puts).
 * qstore_purger_start runs qstore_purge from a thread of its own.
 *
 * Return convention: 0 / -1 with errno (or counts >= 0 / -1), as each
 * prototype says; failures are logged with the message ID. Out of memory
 * fails the one call.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "fileio.h"
#include "log.h"
#include "mime.h"
#include "qdb.h"
#include "textfold.h"
#include "qstore.h"
#include "safefile.h"
#include "spool.h"

#define IO_CHUNK (64 * 1024)
#define PURGE_TXN 500
#define GZ_LEVEL 6
#define GZ_KEEP 8 /* idle compressors kept */

static const char *const reason_names[] = {"virus", "encrypted", "limit", "policy", "spam"};
static const char *const state_names[] = {"held", "released", "deleted"};

const char *
qreason_name(enum qreason r)
{
    return (unsigned)r < sizeof(reason_names) / sizeof(reason_names[0]) ? reason_names[r] : "?";
}

int
qreason_parse(const char *s)
{
    for (size_t i = 0; i < sizeof(reason_names) / sizeof(reason_names[0]); i++)
        if (strcmp(s, reason_names[i]) == 0)
            return (int)i;
    return -1;
}

const char *
qstate_name(enum qstate s)
{
    return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

int
qstate_parse(const char *s)
{
    for (size_t i = 0; i < sizeof(state_names) / sizeof(state_names[0]); i++)
        if (strcmp(s, state_names[i]) == 0)
            return (int)i;
    return -1;
}

static const char qstore_schema[] =
    "CREATE TABLE IF NOT EXISTS q("
    " n INTEGER PRIMARY KEY,"
    " id TEXT NOT NULL UNIQUE,"
    " day INTEGER NOT NULL,"
    " time INTEGER NOT NULL,"
    " client TEXT, sender TEXT, sender_key TEXT, recipients TEXT,"
    " hdr_from TEXT, subject TEXT, subject_key TEXT, message_id TEXT,"
    " size INTEGER NOT NULL DEFAULT 0, stored_size INTEGER NOT NULL DEFAULT 0,"
    " reason INTEGER NOT NULL, rule TEXT, virus TEXT, score REAL NOT NULL DEFAULT 0,"
    " state INTEGER NOT NULL DEFAULT 0, state_time INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS q_time ON q(time);"
    "CREATE INDEX IF NOT EXISTS q_sender ON q(sender_key, time);"
    "CREATE INDEX IF NOT EXISTS q_subject ON q(subject_key);"
    "CREATE INDEX IF NOT EXISTS q_reason ON q(reason, time);"
    "CREATE INDEX IF NOT EXISTS q_rule ON q(rule, time);"
    "CREATE TABLE IF NOT EXISTS q_rcpt(n INTEGER NOT NULL, addr_key TEXT NOT NULL,"
    " PRIMARY KEY(n, addr_key)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS q_rcpt_addr ON q_rcpt(addr_key, n);"
    "CREATE TABLE IF NOT EXISTS q_usage(k INTEGER PRIMARY KEY CHECK (k = 0),"
    " bytes INTEGER NOT NULL, files INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO q_usage VALUES(0, 0, 0);"
    "CREATE TRIGGER IF NOT EXISTS q_usage_ins AFTER INSERT ON q BEGIN"
    " UPDATE q_usage SET bytes = bytes + NEW.stored_size, files = files + (NEW.stored_size > 0)"
    " WHERE k = 0; END;"
    "CREATE TRIGGER IF NOT EXISTS q_usage_del AFTER DELETE ON q BEGIN"
    " UPDATE q_usage SET bytes = bytes - OLD.stored_size, files = files - (OLD.stored_size > 0)"
    " WHERE k = 0; END;"
    "CREATE TRIGGER IF NOT EXISTS q_usage_upd AFTER UPDATE OF stored_size ON q BEGIN"
    " UPDATE q_usage SET bytes = bytes + NEW.stored_size - OLD.stored_size,"
    " files = files + (NEW.stored_size > 0) - (OLD.stored_size > 0) WHERE k = 0; END;";

#define Q_COLS                                                                                     \
    "n, id, time, client, sender, recipients, hdr_from, subject, message_id, size, reason,"        \
    " rule, virus, score, state, stored_size, state_time, day"

/* A compressor kept for reuse. */
struct gz {
    struct gz *next;
    z_stream zs;
    unsigned char in[IO_CHUNK], out[IO_CHUNK];
};

/* Prepared statements, all used under qs->mu. */
enum {
    ST_INSERT,
    ST_RCPT,
    ST_GET_LOC, /* id -> n, day, state, stored_size */
    ST_SET_STATE,
    ST_DELETE_MARK,
    ST_OLDEST_AGE,
    ST_OLDEST_FILE,
    ST_DEL_Q,
    ST_DEL_RCPT,
    ST_USAGE,
    ST_LIVE_ROWS,
    ST_MISSING,
    ST_OLDEST_KEPT,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_INSERT] = "INSERT INTO q(id, day, time, client, sender, sender_key, recipients, "
                  "hdr_from, subject, subject_key, message_id, size, stored_size, reason, rule, "
                  "virus, score, state, state_time) "
                  "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
                  "?16, ?17, 0, ?3)",
    [ST_RCPT] = "INSERT OR IGNORE INTO q_rcpt(n, addr_key) VALUES(?1, ?2)",
    [ST_GET_LOC] = "SELECT n, day, state, stored_size FROM q WHERE id = ?1",
    [ST_SET_STATE] = "UPDATE q SET state = ?2, state_time = ?3 WHERE id = ?1 AND state != 2",
    [ST_DELETE_MARK] = "UPDATE q SET state = 2, state_time = ?2, stored_size = 0 WHERE n = ?1",
    [ST_OLDEST_AGE] = "SELECT n, id, day, stored_size FROM q WHERE time < ?1 "
                      "ORDER BY time, n LIMIT ?2",
    [ST_OLDEST_FILE] = "SELECT n, id, day, stored_size FROM q WHERE stored_size > 0 "
                       "ORDER BY time, n LIMIT ?1",
    [ST_DEL_Q] = "DELETE FROM q WHERE n = ?1",
    [ST_DEL_RCPT] = "DELETE FROM q_rcpt WHERE n = ?1",
    [ST_USAGE] = "SELECT bytes, files FROM q_usage WHERE k = 0",
    [ST_LIVE_ROWS] = "SELECT n, id, day FROM q WHERE state != 2 AND n > ?1 ORDER BY n LIMIT 1000",
    [ST_MISSING] = "SELECT state, day FROM q WHERE id = ?1",
    [ST_OLDEST_KEPT] = "SELECT MIN(time) FROM q WHERE stored_size > 0",
};

struct qstore {
    char *root;   /* <state>/quarantine */
    char *dbpath; /* <state>/quarantine.db */
    unsigned flags;
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    pthread_mutex_t mu;
    uint64_t last_gen;  /* last generated ID (microseconds), under mu */
    struct gz *gz_free; /* idle compressors, under mu */
    int gz_nfree;

    /* Purger thread. */
    pthread_t purger;
    int purger_running;
    int purger_stop;
    pthread_mutex_t pmu;
    pthread_cond_t pcv;
    int64_t p_retention, p_quota, p_interval;
    int p_kick; /* qstore_purger_set: run a pass now */

    /* The quota is cutting retention short (qstore_quota_cut), under mu. */
    int quota_cut;
    int64_t quota_cut_oldest;
};

/*
 * Helpers.
 */

static int
valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n >= QSTORE_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
            return 0;
    }
    return 1;
}

/* YYYYMMDD of t in UTC. */
static long
utc_day(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL)
        return 19700101;
    return (long)(tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
}

static void
day_dir(const struct qstore *qs, long day, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%08ld", qs->root, day);
}

static void
msg_path(const struct qstore *qs, long day, const char *id, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%08ld/%s.gz", qs->root, day, id);
}

static void
stmt_reset(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/*
 * Open and close.
 */

struct qstore *
qstore_open(const char *state_dir, unsigned flags, char *err, size_t errlen)
{
    struct qstore *qs = calloc(1, sizeof(*qs));
    size_t n = strlen(state_dir) + 32;

    if (qs == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    qs->flags = flags;
    pthread_mutex_init(&qs->mu, NULL);
    pthread_mutex_init(&qs->pmu, NULL);
    pthread_cond_init(&qs->pcv, NULL);
    qs->root = malloc(n);
    qs->dbpath = malloc(n);
    if (qs->root == NULL || qs->dbpath == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    snprintf(qs->root, n, "%s/quarantine", state_dir);
    snprintf(qs->dbpath, n, "%s/quarantine.db", state_dir);

    if (!(flags & QSTORE_RDONLY)) {
        if (mkdir(state_dir, 0750) < 0 && errno != EEXIST) {
            snprintf(err, errlen, "%s: %s", state_dir, strerror(errno));
            goto fail;
        }
        if (mkdir(qs->root, 0750) < 0 && errno != EEXIST) {
            snprintf(err, errlen, "%s: %s", qs->root, strerror(errno));
            goto fail;
        }
    }
    qs->db = qdb_open(qs->dbpath, flags & QSTORE_RDONLY, flags & QSTORE_NOSYNC, qstore_schema, err,
                      errlen);
    if (qs->db == NULL)
        goto fail;
    if (!(flags & QSTORE_RDONLY)) {
        for (int i = 0; i < ST_COUNT; i++) {
            if ((qs->st[i] = qdb_prepare(qs->db, stmt_sql[i])) == NULL) {
                snprintf(err, errlen, "%s: %s", qs->dbpath, sqlite3_errmsg(qs->db));
                goto fail;
            }
        }
    } else {
        /* Only what the read paths use; the others stay NULL. */
        static const int ro[] = {ST_GET_LOC, ST_USAGE};
        for (size_t i = 0; i < sizeof(ro) / sizeof(ro[0]); i++) {
            if ((qs->st[ro[i]] = qdb_prepare(qs->db, stmt_sql[ro[i]])) == NULL) {
                snprintf(err, errlen, "%s: %s", qs->dbpath, sqlite3_errmsg(qs->db));
                goto fail;
            }
        }
    }
    return qs;

fail:
    qstore_close(qs);
    return NULL;
}

void
qstore_close(struct qstore *qs)
{
    if (qs == NULL)
        return;
    qstore_purger_stop(qs);
    while (qs->gz_free) {
        struct gz *g = qs->gz_free;
        qs->gz_free = g->next;
        deflateEnd(&g->zs);
        free(g);
    }
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(qs->st[i]);
    if (qs->db)
        sqlite3_close(qs->db);
    pthread_mutex_destroy(&qs->mu);
    pthread_mutex_destroy(&qs->pmu);
    pthread_cond_destroy(&qs->pcv);
    free(qs->root);
    free(qs->dbpath);
    free(qs);
}

const char *
qstore_db_path(const struct qstore *qs)
{
    return qs->dbpath;
}

const char *
qstore_dir_path(const struct qstore *qs)
{
    return qs->root;
}

/*
 * Storing a message.
 */

/* Read the next chunk of the source at *off; bytes, 0 at end, -1 error. */
static ssize_t
source_read(const struct qsource *src, void *buf, size_t len, off_t *off)
{
    ssize_t k;
    switch (src->kind) {
    case QSRC_MEM:
        if ((size_t)*off >= src->len)
            return 0;
        k = (ssize_t)(src->len - (size_t)*off < len ? src->len - (size_t)*off : len);
        memcpy(buf, (const char *)src->mem + *off, (size_t)k);
        break;
    case QSRC_FD:
        do
            k = pread(src->fd, buf, len, *off);
        while (k < 0 && errno == EINTR);
        break;
    case QSRC_SPOOL:
        k = spool_pread(src->spool, buf, len, *off);
        break;
    default:
        errno = EINVAL;
        return -1;
    }
    if (k > 0)
        *off += k;
    return k;
}


/*
 * Compressors (zlib state plus buffers, about 400 KB) are kept for reuse
 * in a small free list: a put costs no large allocation after the first.
 */

static struct gz *
gz_get(struct qstore *qs)
{
    struct gz *g;
    pthread_mutex_lock(&qs->mu);
    if ((g = qs->gz_free) != NULL) {
        qs->gz_free = g->next;
        qs->gz_nfree--;
    }
    pthread_mutex_unlock(&qs->mu);
    if (g != NULL) {
        if (deflateReset(&g->zs) == Z_OK)
            return g;
        deflateEnd(&g->zs);
        free(g);
    }
    if ((g = calloc(1, sizeof(*g))) == NULL)
        return NULL;
    /* windowBits 15 + 16: a gzip wrapper (gunzip/zcat read the files). */
    if (deflateInit2(&g->zs, GZ_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(g);
        return NULL;
    }
    return g;
}

static void
gz_put(struct qstore *qs, struct gz *g)
{
    pthread_mutex_lock(&qs->mu);
    if (qs->gz_nfree < GZ_KEEP) {
        g->next = qs->gz_free;
        qs->gz_free = g;
        qs->gz_nfree++;
        g = NULL;
    }
    pthread_mutex_unlock(&qs->mu);
    if (g != NULL) {
        deflateEnd(&g->zs);
        free(g);
    }
}

/* Compress the source into fd; counts raw bytes into *raw. 0 / -1 errno. */
static int
gzip_to_fd(struct qstore *qs, const struct qsource *src, int fd, int64_t *raw)
{
    struct gz *g = gz_get(qs);
    off_t off = 0;
    int rc = -1, flush;

    if (g == NULL) {
        errno = ENOMEM;
        return -1;
    }
    *raw = 0;
    do {
        ssize_t k = source_read(src, g->in, IO_CHUNK, &off);
        if (k < 0)
            goto done;
        *raw += k;
        flush = k == 0 ? Z_FINISH : Z_NO_FLUSH;
        g->zs.next_in = g->in;
        g->zs.avail_in = (uInt)k;
        do {
            g->zs.next_out = g->out;
            g->zs.avail_out = IO_CHUNK;
            if (deflate(&g->zs, flush) == Z_STREAM_ERROR) {
                errno = EIO;
                goto done;
            }
            if (write_full(fd, g->out, IO_CHUNK - g->zs.avail_out) < 0)
                goto done;
        } while (g->zs.avail_out == 0);
    } while (flush != Z_FINISH);
    rc = 0;

done:
    gz_put(qs, g);
    return rc;
}

/* Decoded From/Subject/Message-ID of the source, when the caller left them out. */
struct hdrs {
    struct mime_msg *m;
    char *buf; /* a copy for sources that are not contiguous in memory */
};

static int
hdrs_parse(const struct qsource *src, struct hdrs *h)
{
    char err[256];
    memset(h, 0, sizeof(*h));
    if (src->kind == QSRC_MEM) {
        h->m = mime_parse_mem(src->mem, src->len, 0, 0, err, sizeof(err));
    } else if (src->kind == QSRC_FD) {
        h->m = mime_parse_fd(src->fd, 0, 0, err, sizeof(err));
    } else if (src->kind == QSRC_SPOOL) {
        const char *mem = spool_memory(src->spool);
        if (mem != NULL)
            h->m = mime_parse_mem(mem, (size_t)spool_size(src->spool), 0, 0, err, sizeof(err));
        else
            h->m = mime_parse_fd(spool_fd(src->spool), 0, 0, err, sizeof(err));
    }
    return h->m ? 0 : -1;
}

struct staged {
    char id[QSTORE_ID_MAX];
    long day;
    int64_t time, size, stored;
    const char *hdr_from, *subject, *message_id;
    struct hdrs h;
    int have_file;
};

static void
gen_id(struct qstore *qs, char *id)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000;
    pthread_mutex_lock(&qs->mu);
    if (now <= qs->last_gen)
        now = qs->last_gen + 1;
    qs->last_gen = now;
    pthread_mutex_unlock(&qs->mu);
    snprintf(id, QSTORE_ID_MAX, "%014llX", (unsigned long long)now);
}

/* What safe_write puts in a quarantine file: the message, gzip'd; its sizes. */
struct qs_fill {
    struct qstore *qs;
    const struct qsource *src;
    int64_t *raw;
    struct stat sb;
};

static int
qs_fill(int fd, void *arg)
{
    struct qs_fill *f = arg;
    if (gzip_to_fd(f->qs, f->src, fd, f->raw) < 0 || fstat(fd, &f->sb) < 0)
        return -1;
    return 0;
}

/* The file stage of a put: compressed, synced, renamed into place (lib/safefile). */
static int
stage_file(struct qstore *qs, const struct qmeta *m, const struct qsource *src, struct staged *sg)
{
    char dir[PATH_MAX], tmp[PATH_MAX], fin[PATH_MAX];
    int e;
    struct qs_fill f = {.qs = qs, .src = src, .raw = &sg->size};

    memset(sg, 0, sizeof(*sg));
    if (m->id[0] == '\0')
        gen_id(qs, sg->id);
    else if (valid_id(m->id))
        snprintf(sg->id, sizeof(sg->id), "%s", m->id);
    else {
        log_warnx("quarantine: invalid message ID \"%.40s\"", m->id);
        errno = EINVAL;
        return -1;
    }
    sg->time = m->time ? m->time : (int64_t)time(NULL);
    sg->day = utc_day(sg->time);
    sg->hdr_from = m->hdr_from;
    sg->subject = m->subject;
    sg->message_id = m->message_id;
    if (m->hdr_from == NULL || m->subject == NULL || m->message_id == NULL) {
        if (hdrs_parse(src, &sg->h) == 0) {
            if (sg->hdr_from == NULL)
                sg->hdr_from = mime_from(sg->h.m);
            if (sg->subject == NULL)
                sg->subject = mime_subject(sg->h.m);
            if (sg->message_id == NULL)
                sg->message_id = mime_message_id(sg->h.m);
        }
    }

    day_dir(qs, sg->day, dir, sizeof(dir));
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, sg->id) >= sizeof(tmp)) {
        e = ENAMETOOLONG;
        goto fail_noclose;
    }
    msg_path(qs, sg->day, sg->id, fin, sizeof(fin));

    /* SAFE_MKDIR: the purge may remove an empty day folder between mkdir and open. */
    if (safe_write(tmp, fin, dir, 0640, SAFE_MKDIR | ((qs->flags & QSTORE_NOSYNC) ? SAFE_NOSYNC : 0),
                   qs_fill, &f) < 0) {
        e = errno;
        log_warn("%s: quarantine: cannot store %s", sg->id, fin);
        goto fail_noclose;
    }
    if (m->size > 0)
        sg->size = m->size;
    sg->stored = (int64_t)f.sb.st_size;
    sg->have_file = 1;
    return 0;

fail_noclose:
    if (sg->h.m)
        mime_free(sg->h.m);
    sg->h.m = NULL;
    errno = e;
    return -1;
}

static void
staged_drop(struct qstore *qs, struct staged *sg, int unlink_file)
{
    char fin[PATH_MAX];
    if (unlink_file && sg->have_file) {
        msg_path(qs, sg->day, sg->id, fin, sizeof(fin));
        unlink(fin);
    }
    if (sg->h.m)
        mime_free(sg->h.m);
    sg->h.m = NULL;
}

/* Insert one row (under mu, inside a transaction). 0 / -1 errno. */
static int
insert_row(struct qstore *qs, const struct qmeta *m, struct staged *sg)
{
    sqlite3_stmt *st = qs->st[ST_INSERT];
    char *skey = textfold(m->sender ? m->sender : "");
    char *subkey = textfold(sg->subject ? sg->subject : "");
    char *rcpts = qjoin(m->rcpts, m->nrcpt, '\n');
    int rc = -1, k;

    if (skey == NULL || subkey == NULL || rcpts == NULL) {
        errno = ENOMEM;
        goto done;
    }
    qdb_bind_text(st, 1, sg->id);
    sqlite3_bind_int64(st, 2, sg->day);
    sqlite3_bind_int64(st, 3, sg->time);
    qdb_bind_text(st, 4, m->client);
    qdb_bind_text(st, 5, m->sender ? m->sender : "");
    qdb_bind_text(st, 6, skey);
    qdb_bind_text(st, 7, rcpts);
    qdb_bind_text(st, 8, sg->hdr_from);
    qdb_bind_text(st, 9, sg->subject ? sg->subject : "");
    qdb_bind_text(st, 10, subkey);
    qdb_bind_text(st, 11, sg->message_id);
    sqlite3_bind_int64(st, 12, sg->size);
    sqlite3_bind_int64(st, 13, sg->stored);
    sqlite3_bind_int(st, 14, (int)m->reason);
    qdb_bind_text(st, 15, m->rule);
    qdb_bind_text(st, 16, m->virus);
    sqlite3_bind_double(st, 17, m->score);
    k = sqlite3_step(st);
    stmt_reset(st);
    if (k != SQLITE_DONE) {
        errno = (k == SQLITE_CONSTRAINT_UNIQUE) ? EEXIST : (k == SQLITE_FULL ? ENOSPC : EIO);
        if (errno != EEXIST)
            log_warnx("%s: quarantine index: insert: %s", sg->id, sqlite3_errmsg(qs->db));
        goto done;
    }
    sqlite3_int64 n = sqlite3_last_insert_rowid(qs->db);
    st = qs->st[ST_RCPT];
    for (size_t i = 0; i < m->nrcpt; i++) {
        char *ak = textfold(m->rcpts[i]);
        if (ak == NULL) {
            errno = ENOMEM;
            goto done;
        }
        sqlite3_bind_int64(st, 1, n);
        qdb_bind_text(st, 2, ak);
        k = sqlite3_step(st);
        stmt_reset(st);
        free(ak);
        if (k != SQLITE_DONE) {
            errno = EIO;
            log_warnx("%s: quarantine index: recipient: %s", sg->id, sqlite3_errmsg(qs->db));
            goto done;
        }
    }
    rc = 0;
done:
    free(skey);
    free(subkey);
    free(rcpts);
    return rc;
}

/* Is the ID in the index already? 1 yes, 0 no, -1 error (under mu). */
static int
id_exists(struct qstore *qs, const char *id)
{
    sqlite3_stmt *st = qs->st[ST_GET_LOC];
    qdb_bind_text(st, 1, id);
    int k = sqlite3_step(st);
    stmt_reset(st);
    return k == SQLITE_ROW ? 1 : k == SQLITE_DONE ? 0 : -1;
}

int
qstore_put_many(struct qstore *qs, const struct qmeta *metas, const struct qsource *srcs, size_t n)
{
    struct staged *sg;
    size_t staged = 0, i;
    int rc = -1, e = 0;

    if (qs->flags & QSTORE_RDONLY) {
        errno = EROFS;
        return -1;
    }
    if ((sg = calloc(n ? n : 1, sizeof(*sg))) == NULL) {
        errno = ENOMEM;
        return -1;
    }

    /* Refuse a known ID before writing a file that would replace its file. */
    for (i = 0; i < n; i++) {
        if (metas[i].id[0] == '\0')
            continue;
        pthread_mutex_lock(&qs->mu);
        int k = id_exists(qs, metas[i].id);
        pthread_mutex_unlock(&qs->mu);
        if (k != 0) {
            e = k > 0 ? EEXIST : EIO;
            goto done;
        }
    }

    /* Files first, outside the lock. */
    for (staged = 0; staged < n; staged++) {
        if (stage_file(qs, &metas[staged], &srcs[staged], &sg[staged]) < 0) {
            e = errno;
            goto done;
        }
    }

    /* Then the rows, in one transaction. */
    pthread_mutex_lock(&qs->mu);
    if (qdb_exec(qs->db, "BEGIN IMMEDIATE", "begin") < 0) {
        pthread_mutex_unlock(&qs->mu);
        e = EIO;
        goto done;
    }
    for (i = 0; i < n; i++) {
        if (insert_row(qs, &metas[i], &sg[i]) < 0) {
            e = errno;
            qdb_exec(qs->db, "ROLLBACK", "rollback");
            pthread_mutex_unlock(&qs->mu);
            goto done;
        }
    }
    if (qdb_exec(qs->db, "COMMIT", "commit") < 0) {
        e = EIO;
        qdb_exec(qs->db, "ROLLBACK", "rollback");
        pthread_mutex_unlock(&qs->mu);
        goto done;
    }
    pthread_mutex_unlock(&qs->mu);
    rc = 0;

done:
    for (i = 0; i < staged; i++)
        staged_drop(qs, &sg[i], rc < 0);
    free(sg);
    if (rc < 0)
        errno = e;
    return rc;
}

int
qstore_put(struct qstore *qs, const struct qmeta *meta, const struct qsource *src, char *id_out)
{
    struct staged sg;
    int e;

    if (qs->flags & QSTORE_RDONLY) {
        errno = EROFS;
        return -1;
    }
    if (meta->id[0] != '\0') {
        pthread_mutex_lock(&qs->mu);
        int k = id_exists(qs, meta->id);
        pthread_mutex_unlock(&qs->mu);
        if (k != 0) {
            errno = k > 0 ? EEXIST : EIO;
            return -1;
        }
    }
    if (stage_file(qs, meta, src, &sg) < 0)
        return -1;
    pthread_mutex_lock(&qs->mu);
    if (qdb_exec(qs->db, "BEGIN IMMEDIATE", "begin") < 0) {
        e = EIO;
        goto fail;
    }
    if (insert_row(qs, meta, &sg) < 0) {
        e = errno;
        qdb_exec(qs->db, "ROLLBACK", "rollback");
        goto fail;
    }
    if (qdb_exec(qs->db, "COMMIT", "commit") < 0) {
        e = EIO;
        qdb_exec(qs->db, "ROLLBACK", "rollback");
        goto fail;
    }
    pthread_mutex_unlock(&qs->mu);
    if (id_out)
        snprintf(id_out, QSTORE_ID_MAX, "%s", sg.id);
    staged_drop(qs, &sg, 0);
    return 0;

fail:
    pthread_mutex_unlock(&qs->mu);
    staged_drop(qs, &sg, 1);
    errno = e;
    return -1;
}

/*
 * Queries.
 */

void
qfilter_init(struct qfilter *f)
{
    memset(f, 0, sizeof(*f));
    f->reason = -1;
    f->state = -1;
}

/* Fill m from a row of Q_COLS and call cb; the recipients are split. */
/* The caller's callback, for qdb_each_row. */
struct row_ctx {
    int (*cb)(void *, const struct qmeta *);
    void *arg;
};

static int
row_callback(sqlite3_stmt *st, void *ctx, int *stop)
{
    int (*cb)(void *, const struct qmeta *) = ((struct row_ctx *)ctx)->cb;
    void *arg = ((struct row_ctx *)ctx)->arg;
    struct qmeta m;
    char **rcpts = NULL;
    size_t nrcpt = 0;

    memset(&m, 0, sizeof(m));
    snprintf(m.id, sizeof(m.id), "%s", qdb_text(st, 1));
    m.time = sqlite3_column_int64(st, 2);
    m.client = qdb_text(st, 3);
    m.sender = qdb_text(st, 4);
    if (qsplit(qdb_text(st, 5), '\n', &rcpts, &nrcpt) < 0)
        return -1;
    m.rcpts = (const char *const *)rcpts;
    m.nrcpt = nrcpt;
    m.hdr_from = qdb_text(st, 6);
    m.subject = qdb_text(st, 7);
    m.message_id = qdb_text(st, 8);
    m.size = sqlite3_column_int64(st, 9);
    m.reason = (enum qreason)sqlite3_column_int(st, 10);
    m.rule = qdb_text(st, 11);
    m.virus = qdb_text(st, 12);
    m.score = sqlite3_column_double(st, 13);
    m.state = (enum qstate)sqlite3_column_int(st, 14);
    m.stored_size = sqlite3_column_int64(st, 15);
    m.state_time = sqlite3_column_int64(st, 16);
    *stop = cb(arg, &m);
    free(rcpts);
    return 0;
}

long
qstore_query(struct qstore *qs, const struct qfilter *f,
             int (*cb)(void *arg, const struct qmeta *m), void *arg)
{
    char sql[1024];
    size_t len = 0;
    char *keys[3] = {NULL, NULL, NULL}; /* sender, recipient, subject (folded) */
    sqlite3_stmt *st = NULL;
    long rows = -1;
    int idx = 1;

#define ADD(...) len += (size_t)snprintf(sql + len, sizeof(sql) - len, __VA_ARGS__)
    ADD("SELECT " Q_COLS " FROM q WHERE 1");
    if (f->id)
        ADD(" AND id = ?%d", idx++);
    if (qdb_add_key_filters(sql, sizeof(sql), &len, &idx, "q_rcpt", f->sender, f->recipient,
                            f->subject, keys) < 0)
        goto done;
    if (f->reason >= 0)
        ADD(" AND reason = ?%d", idx++);
    if (f->rule)
        ADD(" AND rule = ?%d", idx++);
    if (f->since)
        ADD(" AND time >= ?%d", idx++);
    if (f->until)
        ADD(" AND time < ?%d", idx++);
    if (f->state >= 0)
        ADD(" AND state = ?%d", idx++);
    else if (f->state == -1)
        ADD(" AND state != 2");
    ADD(" ORDER BY time DESC, n DESC");
    if (f->limit > 0)
        ADD(" LIMIT ?%d", idx++);
#undef ADD

    pthread_mutex_lock(&qs->mu);
    if (sqlite3_prepare_v2(qs->db, sql, -1, &st, NULL) != SQLITE_OK) {
        log_warnx("quarantine index: query: %s", sqlite3_errmsg(qs->db));
        pthread_mutex_unlock(&qs->mu);
        goto done;
    }
    idx = 1;
    if (f->id)
        qdb_bind_text(st, idx++, f->id);
    for (int i = 0; i < 3; i++)
        if (keys[i])
            qdb_bind_text(st, idx++, keys[i]);
    if (f->reason >= 0)
        sqlite3_bind_int(st, idx++, f->reason);
    if (f->rule)
        qdb_bind_text(st, idx++, f->rule);
    if (f->since)
        sqlite3_bind_int64(st, idx++, f->since);
    if (f->until)
        sqlite3_bind_int64(st, idx++, f->until);
    if (f->state >= 0)
        sqlite3_bind_int(st, idx++, f->state);
    if (f->limit > 0)
        sqlite3_bind_int64(st, idx++, f->limit);

    struct row_ctx rc = {cb, arg};
    rows = qdb_each_row(qs->db, st, row_callback, &rc, "quarantine index: query");
    pthread_mutex_unlock(&qs->mu);

done:
    for (int i = 0; i < 3; i++)
        free(keys[i]);
    return rows;
}

int
qstore_get(struct qstore *qs, const char *id, int (*cb)(void *arg, const struct qmeta *m),
           void *arg)
{
    struct qfilter f;
    qfilter_init(&f);
    f.id = id;
    f.state = -2;
    f.limit = 1;
    long k = qstore_query(qs, &f, cb, arg);
    return k < 0 ? -1 : k > 0;
}

int
qstore_usage(struct qstore *qs, int64_t *bytes, long *count)
{
    sqlite3_stmt *st = qs->st[ST_USAGE];
    int rc = -1;
    pthread_mutex_lock(&qs->mu);
    if (sqlite3_step(st) == SQLITE_ROW) {
        if (bytes)
            *bytes = sqlite3_column_int64(st, 0);
        if (count)
            *count = (long)sqlite3_column_int64(st, 1);
        rc = 0;
    }
    stmt_reset(st);
    pthread_mutex_unlock(&qs->mu);
    return rc;
}

int
qstore_stats(struct qstore *qs, int64_t now, struct qstats *out)
{
    static const char sum_sql[] = "SELECT COUNT(*), COALESCE(SUM(stored_size), 0), "
                                  "COALESCE(SUM(size), 0), MIN(time), MAX(time) "
                                  "FROM q WHERE stored_size > 0";
    static const char day_sql[] = "SELECT (time - ?1) / 86400 AS k, COUNT(*), SUM(stored_size), "
                                  "SUM(size) FROM q WHERE stored_size > 0 AND time >= ?1 "
                                  "AND time < ?2 GROUP BY k";
    sqlite3_stmt *st = NULL;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (now == 0)
        now = (int64_t)time(NULL);
    /* QSTATS_DAYS whole days ending with today (UTC). */
    int64_t first = (now / 86400 - (QSTATS_DAYS - 1)) * 86400;
    for (int i = 0; i < QSTATS_DAYS; i++)
        out->day[i].start = first + (int64_t)i * 86400;
    pthread_mutex_lock(&qs->mu);
    if (sqlite3_prepare_v2(qs->db, sum_sql, -1, &st, NULL) != SQLITE_OK)
        goto out;
    if (sqlite3_step(st) == SQLITE_ROW) {
        out->messages = (long)sqlite3_column_int64(st, 0);
        out->bytes = sqlite3_column_int64(st, 1);
        out->size = sqlite3_column_int64(st, 2);
        out->oldest = sqlite3_column_int64(st, 3);
        out->newest = sqlite3_column_int64(st, 4);
    }
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(qs->db, day_sql, -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, first);
    sqlite3_bind_int64(st, 2, first + QSTATS_DAYS * 86400);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t k = sqlite3_column_int64(st, 0);
        if (k < 0 || k >= QSTATS_DAYS)
            continue;
        out->day[k].messages = (long)sqlite3_column_int64(st, 1);
        out->day[k].bytes = sqlite3_column_int64(st, 2);
        out->day[k].size = sqlite3_column_int64(st, 3);
    }
    rc = 0;
out:
    if (rc < 0)
        log_warnx("quarantine index: stats: %s", sqlite3_errmsg(qs->db));
    sqlite3_finalize(st);
    pthread_mutex_unlock(&qs->mu);
    return rc;
}

/*
 * Reading a message back.
 */

struct qmsg {
    gzFile gz;
    int eof;
};

/* Locate a stored message: 1 found (path filled), 0 unknown/deleted, -1 error. */
static int
locate(struct qstore *qs, const char *id, char *path, size_t len)
{
    sqlite3_stmt *st = qs->st[ST_GET_LOC];
    int rc;

    if (!valid_id(id))
        return 0;
    pthread_mutex_lock(&qs->mu);
    qdb_bind_text(st, 1, id);
    int k = sqlite3_step(st);
    if (k == SQLITE_ROW) {
        long day = (long)sqlite3_column_int64(st, 1);
        int state = sqlite3_column_int(st, 2);
        rc = state == QSTATE_DELETED ? 0 : 1;
        if (rc)
            msg_path(qs, day, id, path, len);
    } else {
        rc = k == SQLITE_DONE ? 0 : -1;
    }
    stmt_reset(st);
    pthread_mutex_unlock(&qs->mu);
    return rc;
}

struct qmsg *
qstore_open_message(struct qstore *qs, const char *id)
{
    char path[PATH_MAX];
    struct qmsg *m;
    int fd, k = locate(qs, id, path, sizeof(path));

    if (k <= 0) {
        errno = k == 0 ? ENOENT : EIO;
        return NULL;
    }
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return NULL;
    if ((m = calloc(1, sizeof(*m))) == NULL) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    if ((m->gz = gzdopen(fd, "rb")) == NULL) {
        close(fd);
        free(m);
        errno = ENOMEM;
        return NULL;
    }
    gzbuffer(m->gz, IO_CHUNK);
    return m;
}

ssize_t
qmsg_read(struct qmsg *m, void *buf, size_t len)
{
    int errnum;
    if (m->eof)
        return 0;
    if (len > INT_MAX)
        len = INT_MAX;
    int k = gzread(m->gz, buf, (unsigned)len);
    if (k < 0 || (k == 0 && (gzerror(m->gz, &errnum), errnum != Z_OK && errnum != Z_STREAM_END))) {
        errno = EIO;
        return -1;
    }
    if (k == 0)
        m->eof = 1;
    return k;
}

void
qmsg_close(struct qmsg *m)
{
    if (m == NULL)
        return;
    gzclose_r(m->gz);
    free(m);
}

int
qstore_copy_message(struct qstore *qs, const char *id, int fd)
{
    struct qmsg *m = qstore_open_message(qs, id);
    unsigned char *buf;
    ssize_t k;
    int rc = -1;

    if (m == NULL)
        return -1;
    if ((buf = malloc(IO_CHUNK)) == NULL) {
        qmsg_close(m);
        errno = ENOMEM;
        return -1;
    }
    while ((k = qmsg_read(m, buf, IO_CHUNK)) > 0)
        if (write_full(fd, buf, (size_t)k) < 0)
            break;
    if (k == 0)
        rc = 0;
    int e = errno;
    free(buf);
    qmsg_close(m);
    errno = e;
    return rc;
}

/*
 * State changes.
 */

int
qstore_set_state(struct qstore *qs, const char *id, enum qstate st, int64_t now)
{
    if (st == QSTATE_DELETED)
        return qstore_delete(qs, id, now);
    if (qs->flags & QSTORE_RDONLY) {
        errno = EROFS;
        return -1;
    }
    sqlite3_stmt *s = qs->st[ST_SET_STATE];
    pthread_mutex_lock(&qs->mu);
    qdb_bind_text(s, 1, id);
    sqlite3_bind_int(s, 2, (int)st);
    sqlite3_bind_int64(s, 3, now ? now : (int64_t)time(NULL));
    int k = sqlite3_step(s);
    stmt_reset(s);
    int changed = sqlite3_changes(qs->db);
    pthread_mutex_unlock(&qs->mu);
    if (k != SQLITE_DONE) {
        log_warnx("%s: quarantine index: set state: %s", id, sqlite3_errmsg(qs->db));
        errno = EIO;
        return -1;
    }
    return changed > 0;
}

int
qstore_delete(struct qstore *qs, const char *id, int64_t now)
{
    sqlite3_stmt *st;
    char path[PATH_MAX];
    int rc = 0, k;

    if (qs->flags & QSTORE_RDONLY) {
        errno = EROFS;
        return -1;
    }
    if (!valid_id(id))
        return 0;
    pthread_mutex_lock(&qs->mu);
    st = qs->st[ST_GET_LOC];
    qdb_bind_text(st, 1, id);
    k = sqlite3_step(st);
    if (k == SQLITE_ROW && sqlite3_column_int(st, 2) != QSTATE_DELETED) {
        sqlite3_int64 n = sqlite3_column_int64(st, 0);
        msg_path(qs, (long)sqlite3_column_int64(st, 1), id, path, sizeof(path));
        stmt_reset(st);
        st = qs->st[ST_DELETE_MARK];
        sqlite3_bind_int64(st, 1, n);
        sqlite3_bind_int64(st, 2, now ? now : (int64_t)time(NULL));
        k = sqlite3_step(st);
        rc = k == SQLITE_DONE ? 1 : -1;
    } else if (k != SQLITE_ROW && k != SQLITE_DONE) {
        rc = -1;
    }
    stmt_reset(st);
    if (rc < 0)
        log_warnx("%s: quarantine index: delete: %s", id, sqlite3_errmsg(qs->db));
    pthread_mutex_unlock(&qs->mu);

    /* Row first, then the file: a crash in between is repaired by qstore_check. */
    if (rc == 1 && unlink(path) < 0 && errno != ENOENT)
        log_warn("%s: quarantine: cannot remove %s", id, path);
    if (rc < 0)
        errno = EIO;
    return rc;
}

/*
 * Retention.
 */

struct victim {
    sqlite3_int64 n;
    long day;
    char id[QSTORE_ID_MAX];
    int64_t stored;
};

/* Remove the day folders of the victims that are now empty (not today's). */
static void
prune_days(struct qstore *qs, const struct victim *v, size_t nv, int64_t now)
{
    char dir[PATH_MAX];
    long today = utc_day(now ? now : (int64_t)time(NULL)), last = -1;
    for (size_t i = 0; i < nv; i++) {
        if (v[i].day == last || v[i].day >= today)
            continue;
        last = v[i].day;
        day_dir(qs, v[i].day, dir, sizeof(dir));
        if (rmdir(dir) < 0 && errno != ENOTEMPTY && errno != EEXIST && errno != ENOENT)
            log_warn("quarantine: cannot remove %s", dir);
    }
}

/*
 * One transaction: pick up to want victims (age first, then quota), delete
 * their rows, commit; then unlink their files. Returns victims removed, -1.
 */
static long
purge_txn(struct qstore *qs, int64_t cutoff, int64_t quota, long want, int64_t now,
          long *by_quota)
{
    struct victim *v = calloc((size_t)want, sizeof(*v));
    size_t nv = 0;
    sqlite3_stmt *st;
    int k;

    if (v == NULL)
        return -1;
    pthread_mutex_lock(&qs->mu);
    if (qdb_exec(qs->db, "BEGIN IMMEDIATE", "begin") < 0)
        goto fail;

    /* By age. */
    if (cutoff > 0) {
        st = qs->st[ST_OLDEST_AGE];
        sqlite3_bind_int64(st, 1, cutoff);
        sqlite3_bind_int64(st, 2, want);
        while (nv < (size_t)want && (k = sqlite3_step(st)) == SQLITE_ROW) {
            v[nv].n = sqlite3_column_int64(st, 0);
            snprintf(v[nv].id, sizeof(v[nv].id), "%s", qdb_text(st, 1));
            v[nv].day = (long)sqlite3_column_int64(st, 2);
            v[nv].stored = sqlite3_column_int64(st, 3);
            nv++;
        }
        stmt_reset(st);
    }

    /* By size: the oldest files until the rest fits (victims by age count already). */
    if (quota > 0 && nv < (size_t)want) {
        int64_t used = 0;
        st = qs->st[ST_USAGE];
        if (sqlite3_step(st) == SQLITE_ROW)
            used = sqlite3_column_int64(st, 0);
        stmt_reset(st);
        for (size_t i = 0; i < nv; i++)
            used -= v[i].stored;
        if (used > quota) {
            st = qs->st[ST_OLDEST_FILE];
            sqlite3_bind_int64(st, 1, want); /* the first rows may be age victims */
            while (nv < (size_t)want && used > quota && (k = sqlite3_step(st)) == SQLITE_ROW) {
                sqlite3_int64 n = sqlite3_column_int64(st, 0);
                int dup = 0;
                for (size_t i = 0; i < nv && !dup; i++)
                    dup = v[i].n == n;
                if (dup)
                    continue;
                v[nv].n = n;
                snprintf(v[nv].id, sizeof(v[nv].id), "%s", qdb_text(st, 1));
                v[nv].day = (long)sqlite3_column_int64(st, 2);
                v[nv].stored = sqlite3_column_int64(st, 3);
                used -= v[nv].stored;
                nv++;
                (*by_quota)++;
            }
            stmt_reset(st);
        }
    }

    for (size_t i = 0; i < nv; i++) {
        sqlite3_stmt *d1 = qs->st[ST_DEL_RCPT], *d2 = qs->st[ST_DEL_Q];
        sqlite3_bind_int64(d1, 1, v[i].n);
        sqlite3_bind_int64(d2, 1, v[i].n);
        int k1 = sqlite3_step(d1), k2 = sqlite3_step(d2);
        stmt_reset(d1);
        stmt_reset(d2);
        if (k1 != SQLITE_DONE || k2 != SQLITE_DONE) {
            log_warnx("quarantine index: purge: %s", sqlite3_errmsg(qs->db));
            qdb_exec(qs->db, "ROLLBACK", "rollback");
            goto fail;
        }
    }
    if (qdb_exec(qs->db, "COMMIT", "commit") < 0) {
        qdb_exec(qs->db, "ROLLBACK", "rollback");
        goto fail;
    }
    if (nv > 0)
        qdb_shrink(qs->db);
    pthread_mutex_unlock(&qs->mu);

    /* Rows are gone: now the files, then emptied folders. */
    for (size_t i = 0; i < nv; i++) {
        char path[PATH_MAX];
        if (v[i].stored == 0)
            continue; /* deleted earlier: no file */
        msg_path(qs, v[i].day, v[i].id, path, sizeof(path));
        if (unlink(path) < 0 && errno != ENOENT)
            log_warn("%s: quarantine: cannot remove %s", v[i].id, path);
    }
    prune_days(qs, v, nv, now);
    free(v);
    return (long)nv;

fail:
    pthread_mutex_unlock(&qs->mu);
    free(v);
    return -1;
}

long
qstore_purge(struct qstore *qs, int64_t now, int64_t retention, int64_t quota_bytes, long max_batch)
{
    long done = 0;
    int64_t cutoff;

    if (qs->flags & QSTORE_RDONLY) {
        errno = EROFS;
        return -1;
    }
    if (max_batch <= 0)
        max_batch = PURGE_TXN;
    if (now == 0)
        now = (int64_t)time(NULL);
    cutoff = retention > 0 ? now - retention : 0;
    if (cutoff <= 0 && quota_bytes <= 0)
        return 0;
    long by_quota = 0;
    while (done < max_batch) {
        long want = max_batch - done < PURGE_TXN ? max_batch - done : PURGE_TXN;
        long k = purge_txn(qs, cutoff, quota_bytes, want, now, &by_quota);
        if (k < 0)
            return done > 0 ? done : -1;
        done += k;
        if (k < want)
            break;
    }
    if (done > 0)
        log_info("quarantine: purged %ld message%s", done, done == 1 ? "" : "s");

    /*
     * Did the quota remove mail younger than the retention? Age victims go
     * first, so any quota victim with the oldest kept mail still inside the
     * retention (or nothing kept at all) means the quota decided. The state clears once the store
     * has room again (under half of the quota, e.g. after the quota was
     * raised) or the quota or retention is off: not at every pass that
     * happens to remove nothing, which would raise and clear in turn.
     */
    pthread_mutex_lock(&qs->mu);
    int64_t used = 0, oldest = 0;
    sqlite3_stmt *st = qs->st[ST_USAGE];
    if (sqlite3_step(st) == SQLITE_ROW)
        used = sqlite3_column_int64(st, 0);
    stmt_reset(st);
    st = qs->st[ST_OLDEST_KEPT];
    if (sqlite3_step(st) == SQLITE_ROW)
        oldest = sqlite3_column_int64(st, 0);
    stmt_reset(st);
    if (quota_bytes > 0 && retention > 0 && by_quota > 0 && (oldest == 0 || oldest > cutoff)) {
        qs->quota_cut = 1;
        qs->quota_cut_oldest = oldest;
    } else if (quota_bytes <= 0 || retention <= 0 || (by_quota == 0 && used <= quota_bytes / 2)) {
        qs->quota_cut = 0;
    }
    pthread_mutex_unlock(&qs->mu);
    return done;
}

static void *
purger_main(void *arg)
{
    struct qstore *qs = arg;

    pthread_setname_np(pthread_self(), "sr-purge"); /* top -H, ps -L */
    pthread_mutex_lock(&qs->pmu);
    while (!qs->purger_stop) {
        int64_t ret = qs->p_retention, quota = qs->p_quota;
        pthread_mutex_unlock(&qs->pmu);

        /* Slices of PURGE_TXN with a pause, until nothing is left to do. */
        for (;;) {
            long k = qstore_purge(qs, 0, ret, quota, PURGE_TXN);
            if (k < PURGE_TXN)
                break;
            pthread_mutex_lock(&qs->pmu);
            int stop = qs->purger_stop;
            pthread_mutex_unlock(&qs->pmu);
            if (stop)
                break;
            struct timespec pause = {0, 20 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }

        pthread_mutex_lock(&qs->pmu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)qs->p_interval;
        while (!qs->purger_stop && !qs->p_kick) {
            if (pthread_cond_timedwait(&qs->pcv, &qs->pmu, &until) == ETIMEDOUT)
                break;
        }
        qs->p_kick = 0;
    }
    pthread_mutex_unlock(&qs->pmu);
    return NULL;
}

int
qstore_purger_start(struct qstore *qs, int64_t retention, int64_t quota_bytes, int64_t interval)
{
    if (qs->flags & QSTORE_RDONLY || qs->purger_running) {
        errno = EINVAL;
        return -1;
    }
    qs->p_retention = retention;
    qs->p_quota = quota_bytes;
    qs->p_interval = interval > 0 ? interval : 60;
    qs->purger_stop = 0;
    if ((errno = pthread_create(&qs->purger, NULL, purger_main, qs)) != 0)
        return -1;
    qs->purger_running = 1;
    return 0;
}

void
qstore_purger_set(struct qstore *qs, int64_t retention, int64_t quota_bytes)
{
    pthread_mutex_lock(&qs->pmu);
    qs->p_retention = retention;
    qs->p_quota = quota_bytes;
    qs->p_kick = 1;
    pthread_cond_broadcast(&qs->pcv);
    pthread_mutex_unlock(&qs->pmu);
}

int
qstore_quota_cut(struct qstore *qs, int64_t *oldest_kept)
{
    pthread_mutex_lock(&qs->mu);
    int cut = qs->quota_cut;
    if (oldest_kept)
        *oldest_kept = cut ? qs->quota_cut_oldest : 0;
    pthread_mutex_unlock(&qs->mu);
    return cut;
}

void
qstore_purger_stop(struct qstore *qs)
{
    if (!qs->purger_running)
        return;
    pthread_mutex_lock(&qs->pmu);
    qs->purger_stop = 1;
    pthread_cond_broadcast(&qs->pcv);
    pthread_mutex_unlock(&qs->pmu);
    pthread_join(qs->purger, NULL);
    qs->purger_running = 0;
}

/*
 * Start-up check.
 */

static int
is_day_name(const char *s)
{
    if (strlen(s) != 8)
        return 0;
    for (int i = 0; i < 8; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* Files of one day folder: temp files and files without a live row go. */
static void
check_day(struct qstore *qs, long day, long *fixed)
{
    char dir[PATH_MAX], path[PATH_MAX];
    DIR *d;
    struct dirent *de;
    int entries = 0;

    day_dir(qs, day, dir, sizeof(dir));
    if ((d = opendir(dir)) == NULL) {
        log_warn("quarantine check: %s", dir);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        size_t len = strlen(name);
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        entries++;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
            continue;
        if (name[0] == '.' && len > 4 && strcmp(name + len - 4, ".tmp") == 0) {
            if (unlink(path) == 0) {
                (*fixed)++;
                entries--;
                log_info("quarantine check: removed incomplete %s", path);
            }
            continue;
        }
        if (len < 4 || strcmp(name + len - 3, ".gz") != 0 || len - 3 >= QSTORE_ID_MAX)
            continue; /* not ours: leave it */
        char id[QSTORE_ID_MAX];
        memcpy(id, name, len - 3);
        id[len - 3] = '\0';
        sqlite3_stmt *st = qs->st[ST_MISSING];
        pthread_mutex_lock(&qs->mu);
        qdb_bind_text(st, 1, id);
        int k = sqlite3_step(st);
        int orphan =
            k == SQLITE_DONE || (k == SQLITE_ROW && (sqlite3_column_int(st, 0) == QSTATE_DELETED ||
                                                     sqlite3_column_int64(st, 1) != day));
        stmt_reset(st);
        pthread_mutex_unlock(&qs->mu);
        if (orphan && unlink(path) == 0) {
            (*fixed)++;
            entries--;
            log_info("quarantine check: removed %s (no index entry)", path);
        }
    }
    closedir(d);
    if (entries == 0 && rmdir(dir) == 0)
        log_debug("quarantine check: removed empty %s", dir);
}

int
qstore_check(struct qstore *qs, long *fixed)
{
    long dummy = 0;
    DIR *d;
    struct dirent *de;
    sqlite3_int64 last = 0;
    int rc = 0;

    if (fixed == NULL)
        fixed = &dummy;
    *fixed = 0;
    if (qs->flags & QSTORE_RDONLY) {
        errno = EROFS;
        return -1;
    }

    /* Files without rows. */
    if ((d = opendir(qs->root)) == NULL) {
        log_warn("quarantine check: %s", qs->root);
        return -1;
    }
    long *days = NULL;
    size_t ndays = 0, cap = 0;
    while ((de = readdir(d)) != NULL) {
        if (!is_day_name(de->d_name))
            continue;
        if (ndays == cap) {
            cap = cap ? cap * 2 : 64;
            long *nd = realloc(days, cap * sizeof(*nd));
            if (nd == NULL) {
                rc = -1;
                break;
            }
            days = nd;
        }
        days[ndays++] = strtol(de->d_name, NULL, 10);
    }
    closedir(d);
    for (size_t i = 0; i < ndays; i++)
        check_day(qs, days[i], fixed);
    free(days);

    /* Rows without files: marked deleted, in slices of 1000 rows. */
    for (;;) {
        struct victim v[1000];
        size_t nv = 0, nmiss = 0;
        sqlite3_int64 miss[1000];
        sqlite3_stmt *st = qs->st[ST_LIVE_ROWS];

        pthread_mutex_lock(&qs->mu);
        sqlite3_bind_int64(st, 1, last);
        int k;
        while ((k = sqlite3_step(st)) == SQLITE_ROW && nv < 1000) {
            v[nv].n = sqlite3_column_int64(st, 0);
            snprintf(v[nv].id, sizeof(v[nv].id), "%s", qdb_text(st, 1));
            v[nv].day = (long)sqlite3_column_int64(st, 2);
            nv++;
        }
        stmt_reset(st);
        pthread_mutex_unlock(&qs->mu);
        if (k != SQLITE_DONE && k != SQLITE_ROW) {
            rc = -1;
            break;
        }
        if (nv == 0)
            break;
        last = v[nv - 1].n;
        for (size_t i = 0; i < nv; i++) {
            char path[PATH_MAX];
            struct stat sb;
            msg_path(qs, v[i].day, v[i].id, path, sizeof(path));
            if (stat(path, &sb) < 0 && errno == ENOENT) {
                log_info("quarantine check: %s: file missing, marked deleted", v[i].id);
                miss[nmiss++] = v[i].n;
            }
        }
        if (nmiss > 0) {
            pthread_mutex_lock(&qs->mu);
            qdb_exec(qs->db, "BEGIN IMMEDIATE", "begin");
            for (size_t i = 0; i < nmiss; i++) {
                st = qs->st[ST_DELETE_MARK];
                sqlite3_bind_int64(st, 1, miss[i]);
                sqlite3_bind_int64(st, 2, (int64_t)time(NULL));
                if (sqlite3_step(st) == SQLITE_DONE)
                    (*fixed)++;
                stmt_reset(st);
            }
            if (qdb_exec(qs->db, "COMMIT", "commit") < 0) {
                qdb_exec(qs->db, "ROLLBACK", "rollback");
                rc = -1;
            }
            pthread_mutex_unlock(&qs->mu);
        }
        if (nv < 1000)
            break;
    }
    return rc;
}
