/* msglog.h - the message log and its statistics in SQLite (see msglog.c). */
#ifndef SR_MSGLOG_H
#define SR_MSGLOG_H

#include <stddef.h>
#include <stdint.h>

struct msglog;

/*
 * One message (or one final outcome of a message). Strings may be NULL.
 * msglog_append copies everything; in query results the strings are valid
 * during the callback only. verdict: clean|virus|spam|policy|error|...;
 * action: relayed|deferred|quarantined|discarded|rejected|bounced|...
 * (free text, but the statistics count exactly these words).
 */
struct msglog_row {
    char id[32];        /* queue ID */
    int64_t time;       /* arrival, seconds since the epoch */
    const char *client; /* "name[addr]" */
    const char *sender; /* "" for <> */
    const char *const *rcpts;
    size_t nrcpt;
    const char *message_id;
    const char *subject; /* decoded UTF-8 */
    int64_t size;
    const char *verdict;
    const char *action;
    const char *virus;
    double score;
    double delay;              /* seconds in total */
    const char *delays;        /* "a/b/c" as in the log line */
    const char *relay;         /* "127.0.0.1[127.0.0.1]:10026" */
    const char *dsn;           /* "2.0.0" */
    const char *status;        /* "sent (250 2.0.0 Ok: queued as 4F1A...)" */
    const char *downstream_id; /* "4F1A..." */
    const char *rule;          /* the verdict's deciding rule ("virus", "file_size", ...) */
};

struct msglog_opts {
    size_t queue_max;       /* rows waiting for the writer; more are dropped (0: 20000) */
    size_t batch_max;       /* rows per transaction (0: 1000) */
    int batch_ms;           /* the writer waits this long to fill a batch (0: 200) */
    int64_t retention;      /* seconds; the writer thread purges older rows (0: never) */
    int64_t purge_interval; /* seconds between its purges (0: 60) */
    int nosync;             /* tests and benches: synchronous=OFF */
};

/*
 * Open (create) <path> for writing and start the writer thread. NULL with
 * a message in err. Blocks (SQLite): start-up only.
 */
struct msglog *msglog_open(const char *path, const struct msglog_opts *opts, char *err,
                           size_t errlen);
/* Open read-only for queries (the CLI); no thread. NULL with err. */
struct msglog *msglog_open_ro(const char *path, char *err, size_t errlen);
/* Writes what is queued, stops the writer, closes. Blocks (start-up/shutdown). */
void msglog_close(struct msglog *log);

/*
 * Queue one row for the writer and return at once: never touches SQLite,
 * takes a mutex for a pointer push only. 0 queued, -1 dropped (queue
 * full, no memory, read-only log); drops are counted. Any thread.
 */
int msglog_append(struct msglog *log, const struct msglog_row *row);
/*
 * The row of an administrator's action (action "released", "deleted";
 * verdict "admin", which the statistics leave out) on a quarantined
 * message, from its index entry; now as the time. Pointers into m.
 */
struct qmeta;
void msglog_admin_row(struct msglog_row *row, const struct qmeta *m, const char *action,
                      const char *status);
/* A reload: the writer's retention from now on (seconds, 0 never). Any thread. */
void msglog_set_retention(struct msglog *log, int64_t retention);
/* Wait until everything appended so far is committed (tests, shutdown). */
int msglog_flush(struct msglog *log);

struct msglog_counters {
    uint64_t appended, written, dropped, failed, purged, batches;
};
void msglog_counters(struct msglog *log, struct msglog_counters *c);

/*
 * Delete rows older than now - retention, at most max_batch (<= 0: 500)
 * per call in transactions of <= 500 rows, then PRAGMA incremental_vacuum.
 * Returns rows removed (== max_batch: call again), -1 on error. Blocks:
 * off the event loop (the writer thread does it by itself with
 * opts.retention). Statistics rows older than the retention go too.
 */
long msglog_purge(struct msglog *log, int64_t now, int64_t retention, long max_batch);

/*
 * Filters as in qstore.h: addresses case-folded (glob with * ? [), subject
 * a glob on the folded subject, exact id and message_id. Newest first.
 */
struct msglog_filter {
    const char *id;
    const char *message_id;
    const char *sender;
    const char *recipient;
    const char *subject;
    const char *verdict;
    const char *action;
    const char *rule;     /* exact deciding rule */
    int64_t since, until; /* 0 = open; since <= time < until */
    long limit;           /* 0 = no limit */
};
/* Rows seen (>= 0) or -1. Blocks (SQLite read). */
long msglog_query(struct msglog *log, const struct msglog_filter *f,
                  int (*cb)(void *arg, const struct msglog_row *r), void *arg);

/* Totals of one period. */
struct msglog_stat {
    int64_t start; /* period start (seconds since the epoch) */
    int64_t messages, bytes, clean, virus, spam, policy, quarantined, deferred, bounced, rejected,
        discarded;
};
/* One name and its count (top viruses, top senders). */
struct msglog_top {
    const char *name;
    int64_t count;
};

/*
 * Totals per hour (by_day 0) or per local day (by_day 1) for
 * [since, until), from the hourly aggregate the writer keeps (so the cost
 * does not depend on the number of rows). cb per period, oldest first,
 * periods without mail skipped. Returns periods or -1.
 */
long msglog_stats(struct msglog *log, int64_t since, int64_t until, int by_day,
                  int (*cb)(void *arg, const struct msglog_stat *s), void *arg);
/* Top n viruses (which = 0) or senders (which = 1) over whole UTC days
   overlapping [since, until), or deciding rules (which = 2: from the rows
   of [since, until), a scan of that range). Returns entries or -1.
   Rows with verdict "admin" (quarantine release, delete) count in none. */
long msglog_top(struct msglog *log, int which, int64_t since, int64_t until, int n,
                int (*cb)(void *arg, const struct msglog_top *t), void *arg);

const char *msglog_path(const struct msglog *log);

#endif
