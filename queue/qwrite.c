/*
 * qwrite.c - the queue's two ways of making a message: a DSN built from a
 * queued or spooled message, and a new queue file written crash-safely.
 *
 * Public calls: qwrite_dsn_build (on the loop), qwrite_message,
 * qwrite_dsn, qwrite_set_time (blocking: in worker jobs).
 *
 * Every new queue file, whoever asks (custody, DSNs, queue_inject), is
 * written by qwrite_message through queue_file_create: temp name, fsync,
 * rename, directory fsync. The configuration is passed in by the caller,
 * which holds a reference to it for the job's lifetime. 0 / -1 with errno;
 * nothing is left behind on failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "dsn.h"
#include "queue_file.h"
#include "qwrite.h"
#include "spool.h"

#define DSN_FULL_LIMIT 50000

int
qwrite_dsn_build(const struct sr_config *cfg, const char *remote_mta, const char *qid,
                 const struct envelope *env, time_t arrival, const struct qwrite_dsn_rcpts *r,
                 const char *reason, ssize_t (*pread)(void *, void *, size_t, off_t), void *ctx,
                 off_t size, char **out, size_t *outlen)
{
    size_t n = r->n;
    struct dsn_rcpt rc[n ? n : 1];
    size_t k = 0;
    /* reason "delayed": a delay warning (RFC 3464 Action: delayed). */
    const char *action = reason && strcmp(reason, "delayed") == 0 ? "delayed" : "failed";
    if (strcmp(action, "delayed") == 0)
        reason = NULL;

    *out = NULL;
    *outlen = 0;
    if (env->sender == NULL || env->sender[0] == '\0')
        return 0; /* never bounce a bounce */
    for (size_t i = 0; i < n; i++) {
        if (!dsn_wanted(&env->rcpt[r->which[i]], action))
            continue;
        rc[k].rcpt = &env->rcpt[r->which[i]];
        rc[k].diag = r->diag[i];
        rc[k].status = r->status[i];
        k++;
    }
    if (k == 0)
        return 0;
    struct dsn_req req = {
        .qid = qid,
        .hostname = cfg->hostname,
        .remote_mta = remote_mta,
        .env = env,
        .arrival = arrival,
        .action = action,
        .reason = reason,
        .rcpts = rc,
        .nrcpts = k,
        .pread = pread,
        .ctx = ctx,
        .size = size,
        .full_limit = DSN_FULL_LIMIT,
    };
    return dsn_build(&req, out, outlen);
}

void
qwrite_set_time(const char *qdir, const char *id, int held, time_t t)
{
    char path[4096];
    struct timespec ts[2] = {{t, 0}, {t, 0}};
    snprintf(path, sizeof(path), "%s/%s/%s", qdir, held ? "hold" : "deferred", id);
    utimensat(AT_FDCWD, path, ts, 0);
}

int
qwrite_message(const char *qdir, const char *id, const struct envelope *env, const char *prefix,
               size_t prefixlen, struct spool *body, int64_t min_free, time_t next)
{
    if (queue_file_create(qdir, id, env, prefix, prefixlen, body, min_free) < 0)
        return -1;
    if (next > 0)
        qwrite_set_time(qdir, id, 0, next);
    return 0;
}

int
qwrite_dsn(const char *qdir, const char *spool_dir, const char *id, const char *to,
           const char *msg, size_t len)
{
    struct envelope *e = envelope_new();
    struct spool *sp = spool_new(len + 1, spool_dir);
    int rc = -1, err = ENOMEM;
    if (e && sp && envelope_set_sender(e, "") == 0 && envelope_add_rcpt(e, to, NULL, 0) >= 0 &&
        spool_write(sp, msg, len) == 0) {
        e->arrival = time(NULL);
        rc = qwrite_message(qdir, id, e, NULL, 0, sp, 0, 0);
        err = errno;
    }
    envelope_free(e);
    spool_free(sp);
    errno = err;
    return rc;
}
