/* qstore.h - the quarantine store: gzip files plus a SQLite index (see qstore.c). */
#ifndef SR_QSTORE_H
#define SR_QSTORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct spool;
struct qstore;

#define QSTORE_ID_MAX 32 /* IDs are queue IDs: 14 uppercase hex digits (up to 31 accepted) */

enum qreason {
    QREASON_VIRUS = 0,
    QREASON_ENCRYPTED,
    QREASON_LIMIT,
    QREASON_POLICY,
    QREASON_SPAM,
};
enum qstate {
    QSTATE_HELD = 0,
    QSTATE_RELEASED,
    QSTATE_DELETED,
};
/* "virus", "encrypted"... and back; parse returns -1 for an unknown name. */
const char *qreason_name(enum qreason r);
int qreason_parse(const char *s);
const char *qstate_name(enum qstate s);
int qstate_parse(const char *s);

/*
 * One quarantined message. On qstore_put the caller fills it (strings may
 * be NULL = unknown; hdr_from, subject and message_id NULL are taken from
 * the message itself through scan/mime.h); in query results everything is
 * filled and valid during the callback only.
 */
struct qmeta {
    char id[QSTORE_ID_MAX];   /* the queue ID the daemon gave; "" on put: generated */
    int64_t time;             /* quarantined at, seconds since the epoch (0: now) */
    const char *client;       /* "name[addr]" */
    const char *sender;       /* envelope sender, "" for <> */
    const char *const *rcpts; /* envelope recipients */
    size_t nrcpt;
    const char *hdr_from; /* decoded header From (UTF-8) */
    const char *subject;  /* decoded Subject (UTF-8) */
    const char *message_id;
    int64_t size; /* message bytes (0 on put: counted while storing) */
    enum qreason reason;
    const char *rule;  /* policy rule or limit name, or NULL */
    const char *virus; /* virus names, ", " separated, or NULL */
    double score;      /* spam score (0 when not scored) */
    enum qstate state; /* put: always stored as held */
    /* Filled in results only: */
    int64_t stored_size; /* compressed bytes on disk (0 once deleted) */
    int64_t state_time;  /* last state change */
};

/* Where qstore_put reads the message from (all bytes, from offset 0). */
enum qsource_kind { QSRC_MEM = 0, QSRC_FD, QSRC_SPOOL };
struct qsource {
    enum qsource_kind kind;
    const void *mem; /* QSRC_MEM */
    size_t len;
    int fd;              /* QSRC_FD: read with pread from 0 to EOF (regular file) */
    struct spool *spool; /* QSRC_SPOOL */
};

enum qstore_flags {
    QSTORE_RDONLY = 0x01, /* the CLI: read the index, never write (no check, no create) */
    QSTORE_NOSYNC = 0x02, /* tests and benches: no fsync (never in the daemon) */
};

/*
 * Open the store of a state directory: files under <state_dir>/quarantine/,
 * index <state_dir>/quarantine.db (created when missing unless RDONLY).
 * NULL with a message in err. Blocks (SQLite, mkdir): start-up only.
 */
struct qstore *qstore_open(const char *state_dir, unsigned flags, char *err, size_t errlen);
/* Stops the purger thread if one runs, closes the index. */
void qstore_close(struct qstore *qs);

/*
 * Start-up repair: temp files removed, files without a row (crash between
 * rename and insert: never acknowledged) or whose row is deleted unlinked,
 * rows of held/released messages without a file marked deleted, empty day
 * folders removed. Counts into *fixed (may be NULL). 0 ok, -1 error.
 * Blocks (a stat per row, a readdir per day): before serving, or off loop.
 */
int qstore_check(struct qstore *qs, long *fixed);

/*
 * Store one message: gzip (streaming, 64 KB buffers) into
 * quarantine/YYYYMMDD/<ID>.gz (UTC day of meta->time) under a temporary
 * name, fsync, rename, fsync the folder, then insert the index row.
 * id_out (QSTORE_ID_MAX bytes, may be NULL) receives the ID used.
 * 0 ok; -1 error with errno (EEXIST: ID already stored, ENOSPC, EIO,
 * ENOMEM, EINVAL: bad ID) and nothing left behind.
 * Blocks (compression, fsync, SQLite): call from a scan thread or a worker,
 * never from the event loop. Thread-safe.
 */
int qstore_put(struct qstore *qs, const struct qmeta *meta, const struct qsource *src,
               char *id_out);
/* Same for n messages with one index transaction (imports, tests, benches). */
int qstore_put_many(struct qstore *qs, const struct qmeta *metas, const struct qsource *srcs,
                    size_t n);

/*
 * Query filters; zero-initialize and set what you need. Address filters
 * compare case-folded; with a glob character (* ? [) they are shell globs.
 * subject is always a shell glob on the folded decoded subject (see
 * lib/textfold.h for the folding). Results come newest first.
 */
struct qfilter {
    const char *id;
    const char *sender;
    const char *recipient;
    const char *subject; /* glob */
    int reason;          /* enum qreason, or -1 = any */
    const char *rule;
    int64_t since, until; /* time range, 0 = open; since <= time < until */
    int state;            /* enum qstate, -1 = held and released (not deleted), -2 = any */
    long limit;           /* rows, 0 = no limit */
};
/* A filter that matches everything not deleted. */
void qfilter_init(struct qfilter *f);

/*
 * Run a query; cb gets each row (valid during the call) and returns 0 to go
 * on, non-zero to stop. Returns rows seen (>= 0) or -1 on error.
 * Blocks (SQLite read): off the event loop. Thread-safe.
 */
long qstore_query(struct qstore *qs, const struct qfilter *f,
                  int (*cb)(void *arg, const struct qmeta *m), void *arg);

/*
 * One message's meta by ID: cb called once. 1 found, 0 not found, -1 error.
 */
int qstore_get(struct qstore *qs, const char *id, int (*cb)(void *arg, const struct qmeta *m),
               void *arg);

/*
 * Read a stored message back (decompressed, the bytes as quarantined).
 * qstore_open_message: NULL with errno ENOENT when the ID is unknown or
 * deleted, EIO/ENOMEM otherwise. qmsg_read: bytes read, 0 at end, -1
 * error (a corrupt/truncated file is an error, never a short message).
 * qstore_copy_message writes it all to fd; 0 ok, -1 error. Block on disk.
 */
struct qmsg;
struct qmsg *qstore_open_message(struct qstore *qs, const char *id);
ssize_t qmsg_read(struct qmsg *m, void *buf, size_t len);
void qmsg_close(struct qmsg *m);
int qstore_copy_message(struct qstore *qs, const char *id, int fd);

/*
 * State changes. qstore_set_state records released (file kept until the
 * retention purge, so it can be released again) or held. qstore_delete
 * marks the row deleted (kept for the record until the retention purge,
 * stored_size 0) and unlinks the file. 1 done, 0 no such ID (or already
 * deleted), -1 error. Block (SQLite write): off the event loop.
 */
int qstore_set_state(struct qstore *qs, const char *id, enum qstate st, int64_t now);
int qstore_delete(struct qstore *qs, const char *id, int64_t now);

/*
 * Retention: remove messages older than now - retention (0 = no age limit)
 * and, oldest first, as many as needed to bring the compressed bytes on
 * disk to quota_bytes (0 = no quota), one message at a time, at most
 * max_batch (<= 0: 500) messages in one call, in transactions of <= 500
 * rows; each transaction is followed by PRAGMA incremental_vacuum so the
 * index file shrinks as it goes, and emptied day folders are removed.
 * Returns messages removed (== max_batch: call again), -1 on error.
 * Blocks: run it from a background thread (see qstore_purger_start) or a
 * worker; it holds the store lock one transaction at a time.
 */
long qstore_purge(struct qstore *qs, int64_t now, int64_t retention, int64_t quota_bytes,
                  long max_batch);

/*
 * A background purger thread: every interval seconds (and once at start),
 * qstore_purge in slices of 500 until done, with a short pause between
 * slices. Stopped by qstore_purger_stop or qstore_close. 0 ok, -1 error.
 */
int qstore_purger_start(struct qstore *qs, int64_t retention, int64_t quota_bytes,
                        int64_t interval);
/* A reload: new limits for the running purger, which makes a pass at once. Any thread. */
void qstore_purger_set(struct qstore *qs, int64_t retention, int64_t quota_bytes);
void qstore_purger_stop(struct qstore *qs);
/*
 * 1 while the quota is cutting retention short: the last purge removed, to
 * fit the quota, mail younger than the retention; *oldest_kept (may be
 * NULL) is then the arrival time of the oldest mail kept (0: none kept at
 * all). 0 once a purge
 * finds the store under half of the quota (or no quota or retention).
 * Thread-safe.
 */
int qstore_quota_cut(struct qstore *qs, int64_t *oldest_kept);

/* Compressed bytes on disk and messages with a file (held or released). */
int qstore_usage(struct qstore *qs, int64_t *bytes, long *count);

/*
 * `scanrelay quarantine stats`: the messages with a file (held or
 * released), their compressed bytes on disk and original bytes, the
 * oldest and newest arrival (0 when empty), and the same per UTC day for
 * the QSTATS_DAYS days ending today (day[QSTATS_DAYS - 1]). 0 or -1.
 * Blocks (SQLite read, one pass over the rows).
 */
#define QSTATS_DAYS 14
struct qstats {
    long messages;
    int64_t bytes, size;
    int64_t oldest, newest;
    struct {
        int64_t start; /* the day's first second (UTC) */
        long messages;
        int64_t bytes, size;
    } day[QSTATS_DAYS];
};
int qstore_stats(struct qstore *qs, int64_t now, struct qstats *out);
/* Paths (for tests and messages): the index file and the files' root. */
const char *qstore_db_path(const struct qstore *qs);
const char *qstore_dir_path(const struct qstore *qs);

#endif
