/*
 * msglog.c - the message log: one row per message in <state>/messages.db
 * (SQLite, WAL, incremental auto-vacuum), hourly totals and per-day
 * virus and sender counts kept next to it, so statistics cost the same
 * whatever the number of rows.
 *
 * Public calls: msglog_open, msglog_open_ro, msglog_close, msglog_append, msglog_admin_row,
 * msglog_flush, msglog_set_retention, msglog_counters, msglog_purge, msglog_query, msglog_stats,
 * msglog_top, msglog_path.
 *
 * Writing. msglog_append copies the row into one allocation and pushes it
 * on a bounded queue under a mutex held for a pointer push: it never
 * touches SQLite, so the event loop never waits for the disk. When the
 * queue is full (or malloc fails) the row is dropped and counted. One
 * writer thread owns the write connection: it waits up to batch_ms for
 * batch_max rows, then writes them in one transaction (row, recipients,
 * aggregates). With opts.retention it also purges old rows itself every
 * purge_interval, PURGE_TXN rows per transaction between batches.
 *
 * Reading. Queries and statistics use a second, read-only connection
 * (WAL readers do not block the writer nor wait for it), under its own
 * mutex. msglog_open_ro opens only that one (the CLI).
 *
 * Searching. Keys are folded by textfold (lib/textfold.h): sender_key,
 * subject_key and the per-recipient rows in msg_rcpt; exact address and ID lookups use
 * indexes; globs use SQLite GLOB on the folded key (an index range when
 * the pattern starts with a literal).
 *
 * Schema. Each row carries the verdict's deciding rule (column rule,
 * filter msglog_filter.rule). A database written before that column
 * existed gets it on the writable open (ALTER TABLE, then its index); a
 * read-only open of one not yet migrated reads rule as NULL.
 *
 * Failures are logged; a failed batch is counted (failed) and dropped, the
 * writer goes on with the next one.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "msglog.h"
#include "qdb.h"
#include "qstore.h"
#include "textfold.h"

#define PURGE_TXN 500
#define WRITER_CACHE_KB "32768" /* page cache of the writer connection */

static const char msglog_schema[] =
    "CREATE TABLE IF NOT EXISTS msg("
    " n INTEGER PRIMARY KEY, time INTEGER NOT NULL, qid TEXT NOT NULL,"
    " client TEXT, sender TEXT, sender_key TEXT, recipients TEXT,"
    " message_id TEXT, subject TEXT, subject_key TEXT, size INTEGER NOT NULL DEFAULT 0,"
    " verdict TEXT, action TEXT, virus TEXT, score REAL NOT NULL DEFAULT 0,"
    " delay REAL NOT NULL DEFAULT 0, delays TEXT, relay TEXT, dsn TEXT, status TEXT,"
    " downstream_id TEXT, rule TEXT);"
    "CREATE INDEX IF NOT EXISTS msg_time ON msg(time);"
    "CREATE INDEX IF NOT EXISTS msg_sender ON msg(sender_key, time);"
    "CREATE INDEX IF NOT EXISTS msg_qid ON msg(qid);"
    "CREATE INDEX IF NOT EXISTS msg_mid ON msg(message_id);"
    "CREATE INDEX IF NOT EXISTS msg_subject ON msg(subject_key);"
    "CREATE TABLE IF NOT EXISTS msg_rcpt(n INTEGER NOT NULL, addr_key TEXT NOT NULL,"
    " PRIMARY KEY(n, addr_key)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS msg_rcpt_addr ON msg_rcpt(addr_key, n);"
    "CREATE TABLE IF NOT EXISTS stat_hour(hour INTEGER PRIMARY KEY,"
    " messages INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0,"
    " clean INTEGER NOT NULL DEFAULT 0, virus INTEGER NOT NULL DEFAULT 0,"
    " spam INTEGER NOT NULL DEFAULT 0, policy INTEGER NOT NULL DEFAULT 0,"
    " quarantined INTEGER NOT NULL DEFAULT 0, deferred INTEGER NOT NULL DEFAULT 0,"
    " bounced INTEGER NOT NULL DEFAULT 0, rejected INTEGER NOT NULL DEFAULT 0,"
    " discarded INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS stat_virus(day INTEGER NOT NULL, name TEXT NOT NULL,"
    " n INTEGER NOT NULL, PRIMARY KEY(day, name)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS stat_sender(day INTEGER NOT NULL, sender TEXT NOT NULL,"
    " n INTEGER NOT NULL, PRIMARY KEY(day, sender)) WITHOUT ROWID;";

#define MSG_COLS                                                                                   \
    "n, time, qid, client, sender, recipients, message_id, subject, size, verdict, action,"        \
    " virus, score, delay, delays, relay, dsn, status, downstream_id"
/* The rule column, or NULL in a database written before it existed (read-only). */
#define MSG_RULE_COL ", rule"
#define MSG_NO_RULE_COL ", NULL AS rule"

enum {
    W_INSERT,
    W_RCPT,
    W_HOUR,
    W_VIRUS,
    W_SENDER,
    W_OLDEST,
    W_DEL_MSG,
    W_DEL_RCPT,
    W_DEL_HOUR,
    W_DEL_VIRUS,
    W_DEL_SENDER,
    W_COUNT
};

static const char *const wsql[W_COUNT] = {
    [W_INSERT] = "INSERT INTO msg(time, qid, client, sender, sender_key, recipients, "
                 "message_id, subject, subject_key, size, verdict, action, virus, score, delay, "
                 "delays, relay, dsn, status, downstream_id, rule) VALUES(?1, ?2, ?3, ?4, ?5, ?6, "
                 "?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
    [W_RCPT] = "INSERT OR IGNORE INTO msg_rcpt(n, addr_key) VALUES(?1, ?2)",
    [W_HOUR] = "INSERT INTO stat_hour(hour, messages, bytes, clean, virus, spam, policy, "
               "quarantined, deferred, bounced, rejected, discarded) "
               "VALUES(?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
               "ON CONFLICT(hour) DO UPDATE SET messages = messages + 1, bytes = bytes + ?2, "
               "clean = clean + ?3, virus = virus + ?4, spam = spam + ?5, policy = policy + ?6, "
               "quarantined = quarantined + ?7, deferred = deferred + ?8, "
               "bounced = bounced + ?9, rejected = rejected + ?10, discarded = discarded + ?11",
    [W_VIRUS] = "INSERT INTO stat_virus(day, name, n) VALUES(?1, ?2, 1) "
                "ON CONFLICT(day, name) DO UPDATE SET n = n + 1",
    [W_SENDER] = "INSERT INTO stat_sender(day, sender, n) VALUES(?1, ?2, 1) "
                 "ON CONFLICT(day, sender) DO UPDATE SET n = n + 1",
    [W_OLDEST] = "SELECT n FROM msg WHERE time < ?1 ORDER BY time, n LIMIT ?2",
    [W_DEL_MSG] = "DELETE FROM msg WHERE n = ?1",
    [W_DEL_RCPT] = "DELETE FROM msg_rcpt WHERE n = ?1",
    [W_DEL_HOUR] = "DELETE FROM stat_hour WHERE hour < ?1",
    [W_DEL_VIRUS] = "DELETE FROM stat_virus WHERE day < ?1",
    [W_DEL_SENDER] = "DELETE FROM stat_sender WHERE day < ?1",
};

/* A queued row: the struct, the recipient pointers and the strings in one block. */
struct item {
    struct item *next;
    struct msglog_row row;
};

struct msglog {
    char *path;
    struct msglog_opts o;
    int rdonly;

    /* Write side: wdb and ws[] belong to the writer thread (and msglog_purge under wmu). */
    sqlite3 *wdb;
    sqlite3_stmt *ws[W_COUNT];
    pthread_mutex_t wmu;

    /* Read side. */
    sqlite3 *rdb;
    pthread_mutex_t rmu;
    int has_rule; /* msg has the rule column (an old read-only database may not) */

    /* The queue. */
    pthread_mutex_t qmu;
    pthread_cond_t qcv; /* writer waits for rows */
    pthread_cond_t fcv; /* flushers wait for written_seq */
    struct item *head, *tail;
    size_t count;
    int stop;
    int flush_waiters;
    uint64_t appended_seq, written_seq;
    struct msglog_counters ctr;

    pthread_t writer;
    int writer_running;
};

/*
 * Open and close.
 */

static void *writer_main(void *arg);

/* 1 if table msg has column col, 0 if not, -1 on error. */
static int
has_column(sqlite3 *db, const char *col)
{
    sqlite3_stmt *st = NULL;
    int found = 0, rc;

    if (sqlite3_prepare_v2(db, "PRAGMA table_info(msg)", -1, &st, NULL) != SQLITE_OK)
        return -1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (strcmp(qdb_text(st, 1), col) == 0)
            found = 1;
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? found : -1;
}

/*
 * Schema changes since the first version, applied to a database that
 * predates them (writable open only): the rule column (the deciding rule
 * of the verdict) and its index.
 */
static int
migrate(sqlite3 *db)
{
    int r = has_column(db, "rule");

    if (r < 0)
        return -1;
    if (r == 0 && qdb_exec(db, "ALTER TABLE msg ADD COLUMN rule TEXT", "add column rule") < 0)
        return -1;
    return qdb_exec(db, "CREATE INDEX IF NOT EXISTS msg_rule ON msg(rule, time)", "rule index");
}

static struct msglog *
log_new(const char *path)
{
    struct msglog *log = calloc(1, sizeof(*log));
    if (log == NULL)
        return NULL;
    if ((log->path = strdup(path)) == NULL) {
        free(log);
        return NULL;
    }
    pthread_mutex_init(&log->wmu, NULL);
    pthread_mutex_init(&log->rmu, NULL);
    pthread_mutex_init(&log->qmu, NULL);
    pthread_cond_init(&log->qcv, NULL);
    pthread_cond_init(&log->fcv, NULL);
    return log;
}

struct msglog *
msglog_open(const char *path, const struct msglog_opts *opts, char *err, size_t errlen)
{
    struct msglog *log = log_new(path);
    if (log == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (opts)
        log->o = *opts;
    if (log->o.queue_max == 0)
        log->o.queue_max = 20000;
    if (log->o.batch_max == 0)
        log->o.batch_max = 1000;
    if (log->o.batch_ms <= 0)
        log->o.batch_ms = 200;
    if (log->o.purge_interval <= 0)
        log->o.purge_interval = 60;

    if ((log->wdb = qdb_open(path, 0, log->o.nosync, msglog_schema, err, errlen)) == NULL)
        goto fail;
    if (migrate(log->wdb) < 0) {
        snprintf(err, errlen, "%s: cannot bring the schema up to date: %s", path,
                 sqlite3_errmsg(log->wdb));
        goto fail;
    }
    /* Six indexes take rows at random places: keep their hot pages in memory. */
    qdb_exec(log->wdb, "PRAGMA cache_size=-" WRITER_CACHE_KB, "cache_size");
    for (int i = 0; i < W_COUNT; i++) {
        if ((log->ws[i] = qdb_prepare(log->wdb, wsql[i])) == NULL) {
            snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(log->wdb));
            goto fail;
        }
    }
    if ((log->rdb = qdb_open(path, 1, 0, NULL, err, errlen)) == NULL)
        goto fail;
    log->has_rule = 1;
    if ((errno = pthread_create(&log->writer, NULL, writer_main, log)) != 0) {
        snprintf(err, errlen, "cannot start the message log writer: %s", strerror(errno));
        goto fail;
    }
    log->writer_running = 1;
    return log;

fail:
    msglog_close(log);
    return NULL;
}

struct msglog *
msglog_open_ro(const char *path, char *err, size_t errlen)
{
    struct msglog *log = log_new(path);
    if (log == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    log->rdonly = 1;
    if ((log->rdb = qdb_open(path, 1, 0, NULL, err, errlen)) == NULL) {
        int e = errno;
        msglog_close(log);
        errno = e;
        return NULL;
    }
    log->has_rule = has_column(log->rdb, "rule") == 1;
    return log;
}

void
msglog_close(struct msglog *log)
{
    if (log == NULL)
        return;
    if (log->writer_running) {
        pthread_mutex_lock(&log->qmu);
        log->stop = 1;
        pthread_cond_broadcast(&log->qcv);
        pthread_mutex_unlock(&log->qmu);
        pthread_join(log->writer, NULL);
    }
    while (log->head) {
        struct item *it = log->head;
        log->head = it->next;
        free(it);
    }
    for (int i = 0; i < W_COUNT; i++)
        sqlite3_finalize(log->ws[i]);
    if (log->wdb)
        sqlite3_close(log->wdb);
    if (log->rdb)
        sqlite3_close(log->rdb);
    pthread_mutex_destroy(&log->wmu);
    pthread_mutex_destroy(&log->rmu);
    pthread_mutex_destroy(&log->qmu);
    pthread_cond_destroy(&log->qcv);
    pthread_cond_destroy(&log->fcv);
    free(log->path);
    free(log);
}

const char *
msglog_path(const struct msglog *log)
{
    return log->path;
}

/*
 * Appending (any thread, never blocks on SQLite).
 */

static size_t
slen(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Copy s into *p (advancing it); NULL stays NULL. */
static const char *
scopy(char **p, const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = *p;
    memcpy(d, s, n);
    *p += n;
    return d;
}

static struct item *
item_copy(const struct msglog_row *r)
{
    size_t need = sizeof(struct item) + r->nrcpt * sizeof(char *);
    need += slen(r->client) + slen(r->sender) + slen(r->message_id) + slen(r->subject) +
            slen(r->verdict) + slen(r->action) + slen(r->virus) + slen(r->delays) + slen(r->relay) +
            slen(r->dsn) + slen(r->status) + slen(r->downstream_id) + slen(r->rule);
    for (size_t i = 0; i < r->nrcpt; i++)
        need += slen(r->rcpts[i]) + (r->rcpts[i] == NULL);
    struct item *it = malloc(need);
    if (it == NULL)
        return NULL;
    it->next = NULL;
    it->row = *r;
    it->row.id[sizeof(it->row.id) - 1] = '\0';
    const char **rv = (const char **)(it + 1);
    char *p = (char *)(rv + r->nrcpt);
    for (size_t i = 0; i < r->nrcpt; i++)
        rv[i] = scopy(&p, r->rcpts[i] ? r->rcpts[i] : "");
    it->row.rcpts = rv;
    it->row.client = scopy(&p, r->client);
    it->row.sender = scopy(&p, r->sender);
    it->row.message_id = scopy(&p, r->message_id);
    it->row.subject = scopy(&p, r->subject);
    it->row.verdict = scopy(&p, r->verdict);
    it->row.action = scopy(&p, r->action);
    it->row.virus = scopy(&p, r->virus);
    it->row.delays = scopy(&p, r->delays);
    it->row.relay = scopy(&p, r->relay);
    it->row.dsn = scopy(&p, r->dsn);
    it->row.status = scopy(&p, r->status);
    it->row.downstream_id = scopy(&p, r->downstream_id);
    it->row.rule = scopy(&p, r->rule);
    return it;
}

void
msglog_admin_row(struct msglog_row *row, const struct qmeta *m, const char *action,
                 const char *status)
{
    memset(row, 0, sizeof(*row));
    snprintf(row->id, sizeof(row->id), "%s", m->id);
    row->time = (int64_t)time(NULL);
    row->client = m->client;
    row->sender = m->sender;
    row->rcpts = m->rcpts;
    row->nrcpt = m->nrcpt;
    row->message_id = m->message_id;
    row->subject = m->subject;
    row->size = m->size;
    row->verdict = "admin";
    row->action = action;
    row->virus = m->virus;
    row->rule = m->rule;
    row->status = status;
}

int
msglog_append(struct msglog *log, const struct msglog_row *row)
{
    struct item *it = NULL;

    if (!log->rdonly) {
        pthread_mutex_lock(&log->qmu);
        int full = log->count >= log->o.queue_max || log->stop;
        pthread_mutex_unlock(&log->qmu);
        if (!full)
            it = item_copy(row);
    }
    pthread_mutex_lock(&log->qmu);
    if (it == NULL || log->count >= log->o.queue_max || log->stop) {
        log->ctr.dropped++;
        pthread_mutex_unlock(&log->qmu);
        free(it);
        return -1;
    }
    if (log->tail)
        log->tail->next = it;
    else
        log->head = it;
    log->tail = it;
    log->count++;
    log->appended_seq++;
    log->ctr.appended++;
    /* Wake the writer for the first row of a batch and for a full batch only. */
    if (log->count == 1 || log->count == log->o.batch_max)
        pthread_cond_signal(&log->qcv);
    pthread_mutex_unlock(&log->qmu);
    return 0;
}

void
msglog_set_retention(struct msglog *log, int64_t retention)
{
    pthread_mutex_lock(&log->qmu);
    log->o.retention = retention;
    pthread_cond_broadcast(&log->qcv);
    pthread_mutex_unlock(&log->qmu);
}

int
msglog_flush(struct msglog *log)
{
    if (log->rdonly || !log->writer_running)
        return 0;
    pthread_mutex_lock(&log->qmu);
    uint64_t target = log->appended_seq;
    log->flush_waiters++;
    pthread_cond_broadcast(&log->qcv);
    while (log->written_seq < target)
        pthread_cond_wait(&log->fcv, &log->qmu);
    log->flush_waiters--;
    pthread_mutex_unlock(&log->qmu);
    return 0;
}

void
msglog_counters(struct msglog *log, struct msglog_counters *c)
{
    pthread_mutex_lock(&log->qmu);
    *c = log->ctr;
    pthread_mutex_unlock(&log->qmu);
}

/*
 * The writer.
 */

static void
wreset(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static int
is(const char *s, const char *word)
{
    return s != NULL && strcmp(s, word) == 0;
}

/* One row into the open transaction; 0 / -1. */
static int
write_row(struct msglog *log, const struct msglog_row *r)
{
    sqlite3_stmt *st = log->ws[W_INSERT];
    char *skey = textfold(r->sender), *subkey = textfold(r->subject);
    char *rcpts = qjoin(r->rcpts, r->nrcpt, '\n');
    int rc = -1, k;

    if (skey == NULL || subkey == NULL || rcpts == NULL)
        goto done;
    sqlite3_bind_int64(st, 1, r->time);
    qdb_bind_text(st, 2, r->id);
    qdb_bind_text(st, 3, r->client);
    qdb_bind_text(st, 4, r->sender ? r->sender : "");
    qdb_bind_text(st, 5, skey);
    qdb_bind_text(st, 6, rcpts);
    qdb_bind_text(st, 7, r->message_id);
    qdb_bind_text(st, 8, r->subject ? r->subject : "");
    qdb_bind_text(st, 9, subkey);
    sqlite3_bind_int64(st, 10, r->size);
    qdb_bind_text(st, 11, r->verdict);
    qdb_bind_text(st, 12, r->action);
    qdb_bind_text(st, 13, r->virus);
    sqlite3_bind_double(st, 14, r->score);
    sqlite3_bind_double(st, 15, r->delay);
    qdb_bind_text(st, 16, r->delays);
    qdb_bind_text(st, 17, r->relay);
    qdb_bind_text(st, 18, r->dsn);
    qdb_bind_text(st, 19, r->status);
    qdb_bind_text(st, 20, r->downstream_id);
    qdb_bind_text(st, 21, r->rule);
    k = sqlite3_step(st);
    wreset(st);
    if (k != SQLITE_DONE)
        goto done;
    sqlite3_int64 n = sqlite3_last_insert_rowid(log->wdb);

    st = log->ws[W_RCPT];
    for (size_t i = 0; i < r->nrcpt; i++) {
        char *ak = textfold(r->rcpts[i]);
        if (ak == NULL)
            goto done;
        sqlite3_bind_int64(st, 1, n);
        qdb_bind_text(st, 2, ak);
        k = sqlite3_step(st);
        wreset(st);
        free(ak);
        if (k != SQLITE_DONE)
            goto done;
    }

    /* Aggregates (administrator actions such as quarantine releases are not mail). */
    if (is(r->verdict, "admin")) {
        rc = 0;
        goto done;
    }
    st = log->ws[W_HOUR];
    sqlite3_bind_int64(st, 1, r->time / 3600);
    sqlite3_bind_int64(st, 2, r->size);
    sqlite3_bind_int(st, 3, is(r->verdict, "clean"));
    sqlite3_bind_int(st, 4, is(r->verdict, "virus"));
    sqlite3_bind_int(st, 5, is(r->verdict, "spam"));
    sqlite3_bind_int(st, 6, is(r->verdict, "policy"));
    sqlite3_bind_int(st, 7, is(r->action, "quarantined"));
    sqlite3_bind_int(st, 8, is(r->action, "deferred"));
    sqlite3_bind_int(st, 9, is(r->action, "bounced"));
    sqlite3_bind_int(st, 10, is(r->action, "rejected"));
    sqlite3_bind_int(st, 11, is(r->action, "discarded"));
    k = sqlite3_step(st);
    wreset(st);
    if (k != SQLITE_DONE)
        goto done;
    if (r->virus && r->virus[0]) {
        st = log->ws[W_VIRUS];
        sqlite3_bind_int64(st, 1, r->time / 86400);
        qdb_bind_text(st, 2, r->virus);
        k = sqlite3_step(st);
        wreset(st);
        if (k != SQLITE_DONE)
            goto done;
    }
    st = log->ws[W_SENDER];
    sqlite3_bind_int64(st, 1, r->time / 86400);
    qdb_bind_text(st, 2, skey);
    k = sqlite3_step(st);
    wreset(st);
    if (k != SQLITE_DONE)
        goto done;
    rc = 0;

done:
    if (rc < 0)
        log_warnx("%s: message log: %s", r->id, sqlite3_errmsg(log->wdb));
    free(skey);
    free(subkey);
    free(rcpts);
    return rc;
}

/* One batch in one transaction (under wmu); 0 / -1. */
static int
write_batch(struct msglog *log, struct item *list)
{
    int rc = 0;
    pthread_mutex_lock(&log->wmu);
    if (qdb_exec(log->wdb, "BEGIN IMMEDIATE", "begin") < 0) {
        pthread_mutex_unlock(&log->wmu);
        return -1;
    }
    for (struct item *it = list; it; it = it->next) {
        if (write_row(log, &it->row) < 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && qdb_exec(log->wdb, "COMMIT", "commit") < 0)
        rc = -1;
    if (rc < 0)
        qdb_exec(log->wdb, "ROLLBACK", "rollback");
    pthread_mutex_unlock(&log->wmu);
    return rc;
}

static void
add_ms(struct timespec *ts, long ms)
{
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *
writer_main(void *arg)
{
    struct msglog *log = arg;
    time_t next_purge = time(NULL);

    pthread_setname_np(pthread_self(), "sr-msglog"); /* top -H, ps -L */

    pthread_mutex_lock(&log->qmu);
    for (;;) {
        /* Wait for rows (or the next purge). */
        while (log->count == 0 && !log->stop) {
            if (log->o.retention > 0 && time(NULL) >= next_purge)
                break;
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            add_ms(&until, 1000);
            pthread_cond_timedwait(&log->qcv, &log->qmu, &until);
        }
        if (log->count == 0 && log->stop)
            break;

        /* Give a batch up to batch_ms to fill, unless someone waits. */
        if (log->count > 0 && log->count < log->o.batch_max && !log->stop && !log->flush_waiters) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            add_ms(&until, log->o.batch_ms);
            while (log->count < log->o.batch_max && !log->stop && !log->flush_waiters)
                if (pthread_cond_timedwait(&log->qcv, &log->qmu, &until) == ETIMEDOUT)
                    break;
        }

        /* Take up to batch_max rows. */
        struct item *list = log->head, *last = NULL;
        size_t n = 0;
        for (struct item *it = log->head; it && n < log->o.batch_max; it = it->next) {
            last = it;
            n++;
        }
        if (n > 0) {
            log->head = last->next;
            if (log->head == NULL)
                log->tail = NULL;
            last->next = NULL;
            log->count -= n;
        }
        int64_t retention = log->o.retention; /* msglog_set_retention changes it under qmu */
        pthread_mutex_unlock(&log->qmu);

        int rc = 0;
        if (n > 0)
            rc = write_batch(log, list);
        while (list) {
            struct item *it = list;
            list = it->next;
            free(it);
        }

        /* Retention, one slice between batches. */
        long purged = 0;
        if (retention > 0 && time(NULL) >= next_purge) {
            purged = msglog_purge(log, 0, retention, PURGE_TXN);
            if (purged < PURGE_TXN)
                next_purge = time(NULL) + (time_t)log->o.purge_interval;
        }

        pthread_mutex_lock(&log->qmu);
        if (n > 0) {
            log->written_seq += n;
            log->ctr.batches++;
            if (rc == 0)
                log->ctr.written += n;
            else
                log->ctr.failed += n;
            pthread_cond_broadcast(&log->fcv);
        }
        if (purged > 0)
            log->ctr.purged += (uint64_t)purged;
    }
    pthread_mutex_unlock(&log->qmu);
    return NULL;
}

/*
 * Retention.
 */

long
msglog_purge(struct msglog *log, int64_t now, int64_t retention, long max_batch)
{
    long done = 0;
    sqlite3_int64 ids[PURGE_TXN];

    if (log->rdonly || log->wdb == NULL) {
        errno = EROFS;
        return -1;
    }
    if (retention <= 0)
        return 0;
    if (max_batch <= 0)
        max_batch = PURGE_TXN;
    if (now == 0)
        now = (int64_t)time(NULL);
    int64_t cutoff = now - retention;

    while (done < max_batch) {
        long want = max_batch - done < PURGE_TXN ? max_batch - done : PURGE_TXN;
        size_t nv = 0;
        int k, bad = 0;

        pthread_mutex_lock(&log->wmu);
        if (qdb_exec(log->wdb, "BEGIN IMMEDIATE", "begin") < 0) {
            pthread_mutex_unlock(&log->wmu);
            return done > 0 ? done : -1;
        }
        sqlite3_stmt *st = log->ws[W_OLDEST];
        sqlite3_bind_int64(st, 1, cutoff);
        sqlite3_bind_int64(st, 2, want);
        while ((k = sqlite3_step(st)) == SQLITE_ROW && nv < (size_t)want)
            ids[nv++] = sqlite3_column_int64(st, 0);
        wreset(st);
        for (size_t i = 0; i < nv && !bad; i++) {
            sqlite3_stmt *d1 = log->ws[W_DEL_RCPT], *d2 = log->ws[W_DEL_MSG];
            sqlite3_bind_int64(d1, 1, ids[i]);
            sqlite3_bind_int64(d2, 1, ids[i]);
            bad = sqlite3_step(d1) != SQLITE_DONE || sqlite3_step(d2) != SQLITE_DONE;
            wreset(d1);
            wreset(d2);
        }
        if (!bad && nv < (size_t)want) {
            /* Last slice: the aggregates of whole hours and days before the cutoff. */
            static const int agg[] = {W_DEL_HOUR, W_DEL_VIRUS, W_DEL_SENDER};
            static const int64_t unit[] = {3600, 86400, 86400};
            for (size_t i = 0; i < 3 && !bad; i++) {
                st = log->ws[agg[i]];
                sqlite3_bind_int64(st, 1, cutoff / unit[i]);
                bad = sqlite3_step(st) != SQLITE_DONE;
                wreset(st);
            }
        }
        if (bad || qdb_exec(log->wdb, "COMMIT", "commit") < 0) {
            log_warnx("message log: purge: %s", sqlite3_errmsg(log->wdb));
            qdb_exec(log->wdb, "ROLLBACK", "rollback");
            pthread_mutex_unlock(&log->wmu);
            return done > 0 ? done : -1;
        }
        if (nv > 0)
            qdb_shrink(log->wdb);
        pthread_mutex_unlock(&log->wmu);
        done += (long)nv;
        if ((long)nv < want)
            break;
    }
    return done;
}

/*
 * Queries.
 */

/* The caller's callback, for qdb_each_row. */
struct row_ctx {
    int (*cb)(void *, const struct msglog_row *);
    void *arg;
};

static int
row_from_stmt(sqlite3_stmt *st, void *ctx, int *stop)
{
    int (*cb)(void *, const struct msglog_row *) = ((struct row_ctx *)ctx)->cb;
    void *arg = ((struct row_ctx *)ctx)->arg;
    struct msglog_row r;
    char **rcpts = NULL;
    size_t nrcpt = 0;

    memset(&r, 0, sizeof(r));
    r.time = sqlite3_column_int64(st, 1);
    snprintf(r.id, sizeof(r.id), "%s", qdb_text(st, 2));
    r.client = qdb_text(st, 3);
    r.sender = qdb_text(st, 4);
    if (qsplit(qdb_text(st, 5), '\n', &rcpts, &nrcpt) < 0)
        return -1;
    r.rcpts = (const char *const *)rcpts;
    r.nrcpt = nrcpt;
    r.message_id = qdb_text(st, 6);
    r.subject = qdb_text(st, 7);
    r.size = sqlite3_column_int64(st, 8);
    r.verdict = qdb_text(st, 9);
    r.action = qdb_text(st, 10);
    r.virus = qdb_text(st, 11);
    r.score = sqlite3_column_double(st, 12);
    r.delay = sqlite3_column_double(st, 13);
    r.delays = qdb_text(st, 14);
    r.relay = qdb_text(st, 15);
    r.dsn = qdb_text(st, 16);
    r.status = qdb_text(st, 17);
    r.downstream_id = qdb_text(st, 18);
    r.rule = sqlite3_column_type(st, 19) == SQLITE_NULL ? NULL : qdb_text(st, 19);
    *stop = cb(arg, &r);
    free(rcpts);
    return 0;
}

long
msglog_query(struct msglog *log, const struct msglog_filter *f,
             int (*cb)(void *arg, const struct msglog_row *r), void *arg)
{
    char sql[1024];
    size_t len = 0;
    char *keys[3] = {NULL, NULL, NULL};
    sqlite3_stmt *st = NULL;
    long rows = -1;
    int idx = 1;

#define ADD(...) len += (size_t)snprintf(sql + len, sizeof(sql) - len, __VA_ARGS__)
    if (f->rule && !log->has_rule)
        return 0; /* no row of an old database names a rule */
    ADD("SELECT " MSG_COLS "%s FROM msg WHERE 1", log->has_rule ? MSG_RULE_COL : MSG_NO_RULE_COL);
    if (f->id)
        ADD(" AND qid = ?%d", idx++);
    if (f->message_id)
        ADD(" AND message_id = ?%d", idx++);
    if (qdb_add_key_filters(sql, sizeof(sql), &len, &idx, "msg_rcpt", f->sender, f->recipient,
                            f->subject, keys) < 0)
        goto done;
    if (f->verdict)
        ADD(" AND verdict = ?%d", idx++);
    if (f->action)
        ADD(" AND action = ?%d", idx++);
    if (f->rule)
        ADD(" AND rule = ?%d", idx++);
    if (f->since)
        ADD(" AND time >= ?%d", idx++);
    if (f->until)
        ADD(" AND time < ?%d", idx++);
    ADD(" ORDER BY time DESC, n DESC");
    if (f->limit > 0)
        ADD(" LIMIT ?%d", idx++);
#undef ADD

    pthread_mutex_lock(&log->rmu);
    if (sqlite3_prepare_v2(log->rdb, sql, -1, &st, NULL) != SQLITE_OK) {
        log_warnx("message log: query: %s", sqlite3_errmsg(log->rdb));
        pthread_mutex_unlock(&log->rmu);
        goto done;
    }
    idx = 1;
    if (f->id)
        qdb_bind_text(st, idx++, f->id);
    if (f->message_id)
        qdb_bind_text(st, idx++, f->message_id);
    for (int i = 0; i < 3; i++)
        if (keys[i])
            qdb_bind_text(st, idx++, keys[i]);
    if (f->verdict)
        qdb_bind_text(st, idx++, f->verdict);
    if (f->action)
        qdb_bind_text(st, idx++, f->action);
    if (f->rule)
        qdb_bind_text(st, idx++, f->rule);
    if (f->since)
        sqlite3_bind_int64(st, idx++, f->since);
    if (f->until)
        sqlite3_bind_int64(st, idx++, f->until);
    if (f->limit > 0)
        sqlite3_bind_int64(st, idx++, f->limit);

    struct row_ctx rc = {cb, arg};
    rows = qdb_each_row(log->rdb, st, row_from_stmt, &rc, "message log: query");
    pthread_mutex_unlock(&log->rmu);

done:
    for (int i = 0; i < 3; i++)
        free(keys[i]);
    return rows;
}

/* Start of the local day holding t. */
static int64_t
local_day_start(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (localtime_r(&tt, &tm) == NULL)
        return t - t % 86400;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_isdst = -1;
    return (int64_t)mktime(&tm);
}

long
msglog_stats(struct msglog *log, int64_t since, int64_t until, int by_day,
             int (*cb)(void *arg, const struct msglog_stat *s), void *arg)
{
    static const char sql[] =
        "SELECT hour, messages, bytes, clean, virus, spam, policy, quarantined, deferred, "
        "bounced, rejected, discarded FROM stat_hour WHERE hour >= ?1 AND hour < ?2 "
        "ORDER BY hour";
    sqlite3_stmt *st = NULL;
    struct msglog_stat cur;
    long periods = 0;
    int have = 0, stop = 0, k;

    pthread_mutex_lock(&log->rmu);
    if (sqlite3_prepare_v2(log->rdb, sql, -1, &st, NULL) != SQLITE_OK) {
        log_warnx("message log: stats: %s", sqlite3_errmsg(log->rdb));
        pthread_mutex_unlock(&log->rmu);
        return -1;
    }
    sqlite3_bind_int64(st, 1, since / 3600);
    sqlite3_bind_int64(st, 2, (until + 3599) / 3600);
    memset(&cur, 0, sizeof(cur));
    while (!stop && (k = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t hstart = sqlite3_column_int64(st, 0) * 3600;
        int64_t pstart = by_day ? local_day_start(hstart) : hstart;
        if (have && pstart != cur.start) {
            periods++;
            stop = cb(arg, &cur);
            memset(&cur, 0, sizeof(cur));
            have = 0;
            if (stop)
                break;
        }
        cur.start = pstart;
        have = 1;
        int64_t *f[] = {&cur.messages, &cur.bytes,    &cur.clean,       &cur.virus,
                        &cur.spam,     &cur.policy,   &cur.quarantined, &cur.deferred,
                        &cur.bounced,  &cur.rejected, &cur.discarded};
        for (int i = 0; i < 11; i++)
            *f[i] += sqlite3_column_int64(st, i + 1);
    }
    if (have && !stop) {
        periods++;
        cb(arg, &cur);
    }
    if (!stop && k != SQLITE_DONE && k != SQLITE_ROW) {
        log_warnx("message log: stats: %s", sqlite3_errmsg(log->rdb));
        periods = -1;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&log->rmu);
    return periods;
}

long
msglog_top(struct msglog *log, int which, int64_t since, int64_t until, int n,
           int (*cb)(void *arg, const struct msglog_top *t), void *arg)
{
    static const char vsql[] = "SELECT name, SUM(n) AS c FROM stat_virus WHERE day >= ?1 AND "
                               "day < ?2 GROUP BY name ORDER BY c DESC, name LIMIT ?3";
    static const char ssql[] = "SELECT sender, SUM(n) AS c FROM stat_sender WHERE day >= ?1 "
                               "AND day < ?2 GROUP BY sender ORDER BY c DESC, sender LIMIT ?3";
    static const char rsql[] = "SELECT rule, COUNT(*) AS c FROM msg WHERE time >= ?1 AND "
                               "time < ?2 AND rule IS NOT NULL AND rule != '' AND verdict != "
                               "'admin' GROUP BY rule ORDER BY c DESC, rule LIMIT ?3";
    sqlite3_stmt *st = NULL;
    long got = 0;
    int k;

    pthread_mutex_lock(&log->rmu);
    if (sqlite3_prepare_v2(log->rdb, which == 2 ? rsql : which ? ssql : vsql, -1, &st, NULL) !=
        SQLITE_OK) {
        log_warnx("message log: top: %s", sqlite3_errmsg(log->rdb));
        pthread_mutex_unlock(&log->rmu);
        return -1;
    }
    if (which == 2) {
        sqlite3_bind_int64(st, 1, since);
        sqlite3_bind_int64(st, 2, until);
    } else {
        sqlite3_bind_int64(st, 1, since / 86400);
        sqlite3_bind_int64(st, 2, (until + 86399) / 86400);
    }
    sqlite3_bind_int(st, 3, n > 0 ? n : 10);
    while ((k = sqlite3_step(st)) == SQLITE_ROW) {
        struct msglog_top t = {qdb_text(st, 0), sqlite3_column_int64(st, 1)};
        got++;
        if (cb(arg, &t))
            break;
    }
    if (k != SQLITE_ROW && k != SQLITE_DONE) {
        log_warnx("message log: top: %s", sqlite3_errmsg(log->rdb));
        got = -1;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&log->rmu);
    return got;
}
