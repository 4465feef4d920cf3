/* queue_file.h - the deferred queue on disk (see queue_file.c). */
#ifndef SR_QUEUE_FILE_H
#define SR_QUEUE_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "envelope.h"
#include "qid.h"

struct spool;

/*
 * Layout under queue_directory:
 *   tmp/       files being written; anything here at start-up was never
 *              acknowledged and is removed
 *   deferred/  complete queue files, one per message, named by queue ID
 *   hold/      held messages (moved here by hold, back by release)
 * A queue file is the envelope in text records, then the content bytes
 * (as scanned and rewritten, ready to send). Per-recipient state, reason,
 * attempts and next-attempt time live in fixed-width fields that are
 * updated in place with pwrite, so marking a recipient done never rewrites
 * the content.
 */

enum queue_where { QUEUE_DEFERRED = 0, QUEUE_HOLD = 1 };

struct queue_entry {
    char id[QID_LEN + 1];
    enum queue_where where;
    struct envelope *env;   /* recipients carry state and last reason */
    int attempts;
    time_t next_attempt;    /* 0: as soon as possible */
    time_t last_attempt;
    off_t content_offset;   /* where the content starts in the file */
    off_t content_size;
    int fd;                 /* open read-write, or -1 when loaded for listing only */
    off_t *rcpt_offsets;    /* private: where each recipient's fields are */
    off_t meta_offset;      /* private: where attempts/next/last are */
};

/* Create the folders; 0 ok, -1 error (errno). */
int queue_dir_init(const char *qdir);
/* Remove files left in tmp/ (never acknowledged); returns how many. */
int queue_dir_cleanup(const char *qdir);

/*
 * Write a new queue file crash-safely: tmp/ID, write envelope, prefix
 * (headers to add, may be NULL) and body, fsync, rename to deferred/ID,
 * fsync deferred/. Only recipients in state RCPT_PENDING or RCPT_DEFERRED
 * are written (as pending). Blocking: run it off the event loop.
 * Refuses with ENOSPC when the file system would have less than
 * min_free bytes left. 0 ok; -1 with errno set and nothing left behind.
 */
int queue_file_create(const char *qdir, const char *id, const struct envelope *env,
                      const char *prefix, size_t prefixlen, struct spool *body,
                      int64_t min_free);

/* Load a queue file by ID (looked up in deferred/ then hold/). NULL + errno. */
struct queue_entry *queue_file_load(const char *qdir, const char *id, int open_rw);
void queue_entry_free(struct queue_entry *qe);

/* Update one recipient's state and reason in place; fdatasync when durable. 0/-1. */
int queue_file_set_rcpt(struct queue_entry *qe, size_t idx, enum rcpt_state st,
                        const char *reason, int durable);
/* Update attempts, last and next attempt time in place. 0/-1. */
int queue_file_set_meta(struct queue_entry *qe, int attempts, time_t last, time_t next);
/* Read content bytes (pread from content_offset). */
ssize_t queue_file_read_content(struct queue_entry *qe, void *buf, size_t len, off_t off);

/* Remove a message (delivered, bounced or deleted). 0/-1. */
int queue_file_remove(const char *qdir, const char *id);
/* Move between deferred/ and hold/. 0/-1 (ENOENT when not there). */
int queue_file_hold(const char *qdir, const char *id);
int queue_file_release(const char *qdir, const char *id);

/*
 * Move many IDs from one folder to the other: every rename, then one fsync
 * of each folder. errs[i] is 0 or the errno of ids[i] (a failed folder sync
 * fails every moved one, which stays moved). Blocking. Returns how many
 * were moved, -1 when the folder sync failed.
 */
int queue_file_move_batch(const char *qdir, const char *const *ids, size_t n,
                          enum queue_where from, enum queue_where to, int *errs);

/* Call cb for every complete queue file ID in deferred/ and hold/. Returns count or -1. */
int queue_dir_scan(const char *qdir, void (*cb)(void *arg, const char *id, enum queue_where w),
                   void *arg);

#endif
