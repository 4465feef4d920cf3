/*
 * custody.c - how a message enters the deferred queue.
 *
 * Public calls: queue_enter, queue_bounce_now, queue_inject.
 *
 * Custody: when the first delivery attempt fails temporarily, the
 * pipeline calls queue_enter; a worker job writes the queue file
 * crash-safely (qwrite_message: temp name, fsync, rename, directory
 * fsync), first the DSN for recipients already refused permanently, and
 * only then does the upstream get its 250. queue_bounce_now queues only
 * the DSN, when the first attempt delivered to some recipients and was
 * refused for others.
 *
 * queue_inject is the one way in for a new message made by the daemon
 * (quarantine releases, notices): a new queue ID, the same crash-safe
 * write in a worker job, then the scheduler takes it at once. DSNs built
 * by the queue itself use the same two halves (qwrite_dsn in the worker
 * job that is already running, sched_dsn_queued on the loop) so that a
 * DSN is on disk before the recipients it reports are marked.
 *
 * Every job holds a reference to the configuration it started with; the
 * caller's envelope and body must stay valid until the callback, which
 * always runs later on the loop, except for a failure to allocate or an
 * answer known at once (no DSN due).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "queue_file.h"
#include "queue_int.h"
#include "qwrite.h"
#include "scheduler.h"
#include "spool.h"

/* One write job: custody, bounce now or inject. */
struct qwrite_job {
    struct queue *q;
    struct sr_config *cfg; /* held for the job's lifetime */
    char qid[QID_LEN + 1]; /* the message written (custody, inject), or the one reported */
    const struct envelope *env;
    const char *prefix;
    size_t prefixlen;
    struct spool *body;      /* NULL: only the DSN is written */
    int64_t min_free;
    time_t next;
    char *dsn;               /* a DSN to write first, or NULL */
    size_t dsnlen;
    char dsn_id[QID_LEN + 1];
    int inject;              /* schedule qid now once written */
    int rc, err;
    queue_done_fn cb;
    void (*icb)(void *arg, int rc, int err, const char *id);
    void *arg;
};

static struct qwrite_job *
job_new(struct queue *q)
{
    struct qwrite_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    j->q = q;
    j->cfg = q->h.config_ref(q->h.ctx);
    return j;
}

static void
job_free(struct qwrite_job *j)
{
    j->q->h.config_unref(j->q->h.ctx, j->cfg);
    free(j->dsn);
    free(j);
}

static void
write_work(void *arg)
{
    struct qwrite_job *j = arg;
    struct queue *q = j->q;
    j->rc = 0;
    j->err = 0;
    if (j->dsn && qwrite_dsn(q->qdir, j->cfg->state_directory, j->dsn_id, j->env->sender, j->dsn,
                             j->dsnlen) < 0) {
        j->rc = -1;
        j->err = errno;
        return;
    }
    if (j->body == NULL)
        return;
    j->rc = qwrite_message(q->qdir, j->qid, j->env, j->prefix, j->prefixlen, j->body,
                           j->min_free, j->next);
    j->err = j->rc < 0 ? errno : 0;
    if (j->rc < 0 && j->dsn)
        queue_file_remove(q->qdir, j->dsn_id); /* the bounce goes with the message */
}

static void
write_done(void *arg, int cancelled)
{
    struct qwrite_job *j = arg;
    struct queue *q = j->q;
    if (cancelled) {
        /* The daemon is going away: nothing was written, nobody waits for it. */
        job_free(j);
        queue_job_done(q, 1);
        return;
    }
    if (j->rc == 0) {
        if (j->inject)
            sched_now(q, j->qid);
        else if (j->body)
            qindex_add(&q->ix, j->qid, 0, j->next, j->env->arrival ? j->env->arrival : time(NULL));
        if (j->dsn)
            sched_dsn_queued(q, j->qid, j->dsn_id, "non-delivery");
    } else if (j->body == NULL) {
        log_warnx("%s: cannot queue the non-delivery notification: %s", j->qid,
                  strerror(j->err));
    }
    if (j->icb)
        j->icb(j->arg, j->rc, j->err, j->rc == 0 ? j->qid : NULL);
    else
        j->cb(j->arg, j->rc, j->err);
    job_free(j);
    queue_job_done(q, 0);
    sched_pump(q, 0);
}

/* Submit; on failure answer ENOMEM now. */
static void
job_submit(struct qwrite_job *j)
{
    if (queue_run(j->q, write_work, write_done, j) == 0)
        return;
    if (j->icb)
        j->icb(j->arg, -1, ENOMEM, NULL);
    else
        j->cb(j->arg, -1, ENOMEM);
    job_free(j);
}

static ssize_t
spool_pread_cb(void *ctx, void *buf, size_t len, off_t off)
{
    return spool_pread(ctx, buf, len, off);
}

void
queue_enter(struct queue *q, const char *qid, const struct envelope *env, const char *prefix,
            size_t prefixlen, struct spool *body, queue_done_fn cb, void *arg)
{
    struct qwrite_job *j = job_new(q);
    if (j == NULL) {
        cb(arg, -1, ENOMEM);
        return;
    }
    snprintf(j->qid, sizeof(j->qid), "%s", qid);
    j->env = env;
    j->prefix = prefix;
    j->prefixlen = prefixlen;
    j->body = body;
    j->cb = cb;
    j->arg = arg;
    j->min_free = j->cfg->queue.min_free_space;
    j->next = time(NULL) + (time_t)j->cfg->queue.minimal_backoff_time;

    /* Recipients already refused permanently get their DSN with the custody. */
    size_t nb = 0, nr = env->nrcpt ? env->nrcpt : 1;
    int which[nr];
    const char *diag[nr], *status[nr];
    char st[nr][16];
    for (size_t i = 0; i < env->nrcpt; i++) {
        if (env->rcpt[i].state != RCPT_BOUNCED)
            continue;
        const char *reason = env->rcpt[i].reason ? env->rcpt[i].reason : "5.0.0 refused";
        snprintf(st[nb], sizeof(st[nb]), "5.0.0");
        /* "550 5.1.1 text": take the enhanced code when present. */
        const char *sp = strchr(reason, ' ');
        if (sp && sp[1] == '5' && sp[2] == '.')
            sscanf(sp + 1, "%15s", st[nb]);
        which[nb] = (int)i;
        diag[nb] = reason;
        status[nb] = st[nb];
        nb++;
    }
    struct qwrite_dsn_rcpts rr = {which, diag, status, nb};
    if (nb && qwrite_dsn_build(j->cfg, q->h.remote_name(q->h.ctx), qid, env, env->arrival, &rr,
                               NULL, spool_pread_cb, body, spool_size(body), &j->dsn,
                               &j->dsnlen) < 0)
        log_warnx("%s: cannot build the non-delivery notification", qid);
    if (j->dsn)
        qid_next(j->dsn_id);
    job_submit(j);
}

void
queue_bounce_now(struct queue *q, const char *qid, const struct envelope *env,
                 const struct relay_rcpt_result *res, struct spool *body, queue_done_fn cb,
                 void *arg)
{
    size_t nb = 0, nr = env->nrcpt ? env->nrcpt : 1;
    int which[nr];
    const char *diag[nr], *status[nr];
    for (size_t i = 0; i < env->nrcpt; i++) {
        if (res[i].cls != RELAY_PERM)
            continue;
        which[nb] = (int)i;
        diag[nb] = res[i].text;
        status[nb] = res[i].dsn;
        nb++;
    }
    struct qwrite_job *j = job_new(q);
    if (j == NULL) {
        log_warnx("%s: out of memory for the non-delivery notification", qid);
        cb(arg, -1, ENOMEM);
        return;
    }
    struct qwrite_dsn_rcpts rr = {which, diag, status, nb};
    if (nb && qwrite_dsn_build(j->cfg, q->h.remote_name(q->h.ctx), qid, env, env->arrival, &rr,
                               NULL, spool_pread_cb, body, spool_size(body), &j->dsn,
                               &j->dsnlen) < 0) {
        log_warnx("%s: cannot build the non-delivery notification", qid);
        job_free(j);
        cb(arg, -1, ENOMEM);
        return;
    }
    if (j->dsn == NULL) {
        job_free(j);
        cb(arg, 0, 0); /* none due (null sender, NOTIFY) */
        return;
    }
    snprintf(j->qid, sizeof(j->qid), "%s", qid);
    j->env = env;
    j->cb = cb;
    j->arg = arg;
    qid_next(j->dsn_id);
    job_submit(j);
}

void
queue_inject(struct queue *q, const struct envelope *env, const char *prefix, size_t prefixlen,
             struct spool *body, void (*cb)(void *arg, int rc, int err, const char *id),
             void *arg)
{
    struct qwrite_job *j = job_new(q);
    if (j == NULL) {
        cb(arg, -1, ENOMEM, NULL);
        return;
    }
    qid_next(j->qid);
    j->env = env;
    j->prefix = prefix;
    j->prefixlen = prefixlen;
    j->body = body;
    j->min_free = j->cfg->queue.min_free_space;
    j->inject = 1;
    j->icb = cb;
    j->arg = arg;
    job_submit(j);
}
