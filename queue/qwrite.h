/* qwrite.h - building DSNs and writing new queue files for the queue's modules (see qwrite.c). */
#ifndef SR_QWRITE_H
#define SR_QWRITE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "envelope.h"

struct spool;
struct sr_config;

/* Which recipients of env a DSN reports, with their diagnostic and status. */
struct qwrite_dsn_rcpts {
    const int *which;
    const char **diag;
    const char **status;
    size_t n;
};

/*
 * Build the DSN (reason NULL: bounce; "expired": bounce after the lifetime;
 * "delayed": delay warning) into a malloc'd *out. *out stays NULL when none
 * is due (null sender, NOTIFY). 0 ok, -1 no memory or read error.
 */
int qwrite_dsn_build(const struct sr_config *cfg, const char *remote_mta, const char *qid,
                     const struct envelope *env, time_t arrival, const struct qwrite_dsn_rcpts *r,
                     const char *reason, ssize_t (*pread)(void *, void *, size_t, off_t),
                     void *ctx, off_t size, char **out, size_t *outlen);

/* Worker: a new queue file (queue_file_create), its mtime set to next when next > 0. 0/-1 errno. */
int qwrite_message(const char *qdir, const char *id, const struct envelope *env,
                   const char *prefix, size_t prefixlen, struct spool *body, int64_t min_free,
                   time_t next);
/* Worker: a DSN message as a queue file, from <> to "to". 0/-1 errno. */
int qwrite_dsn(const char *qdir, const char *spool_dir, const char *id, const char *to,
               const char *msg, size_t len);
/* Record the next attempt as the file's mtime (read back at start-up). */
void qwrite_set_time(const char *qdir, const char *id, int held, time_t t);

#endif
