/*
 * queue.c - the deferred queue, opened and closed.
 *
 * Public calls: queue_new, queue_free, queue_busy, queue_counts. The rest
 * of queue.h lives in custody.c (queue_enter, queue_bounce_now,
 * queue_inject), scheduler.c (queue_kick) and qctl.c (queue_control).
 *
 * The queue is every part of deferred delivery: the files (queue_file.c),
 * the index (qindex.c), the scheduler (scheduler.c), custody and
 * injection (custody.c), DSNs (dsn.c, qwrite.c) and the administrator's
 * verbs (qctl.c). It is handed everything else as struct queue_hooks:
 * delivery (submit, down, remote_name), blocking work off the loop with
 * its completion on the loop (run), configuration references (config,
 * config_ref, config_unref) and the daemon's hints (idle, stopping). It
 * includes nothing of proxy/. Calls go one way: queue.c -> custody.c,
 * qctl.c -> scheduler.c -> qwrite.c, qindex.c -> queue_file.c, dsn.c.
 *
 * queue_new fails (NULL, message in err) when the folder cannot be made
 * or read; everything after start-up logs its failures and carries on.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "qctl.h"
#include "queue_file.h"
#include "queue_int.h"
#include "scheduler.h"

struct queue *
queue_new(struct event_base *base, const struct queue_hooks *hooks, char *err, size_t errlen)
{
    struct queue *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    q->h = *hooks;
    q->base = base;
    qindex_init(&q->ix);
    const char *dir = q->h.config(q->h.ctx)->queue_directory;
    q->qdir = strdup(dir);
    if (q->qdir == NULL || queue_dir_init(q->qdir) < 0) {
        snprintf(err, errlen, "queue_directory %s: %s", dir, strerror(errno));
        free(q->qdir);
        free(q);
        return NULL;
    }
    int removed = queue_dir_cleanup(q->qdir);
    if (removed > 0)
        log_info("queue: removed %d unfinished queue file(s) (never acknowledged)", removed);
    q->op_ev = event_new(base, -1, 0, qctl_resume, q);
    if (q->op_ev == NULL) {
        snprintf(err, errlen, "queue: cannot start the scheduler");
        queue_free(q);
        return NULL;
    }
    if (sched_start(q, err, errlen) < 0) {
        queue_free(q);
        return NULL;
    }
    return q;
}

void
queue_free(struct queue *q)
{
    if (q == NULL)
        return;
    sched_stop(q);
    qctl_free_all(q);
    if (q->op_ev)
        event_free(q->op_ev);
    qindex_clear(&q->ix);
    free(q->qdir);
    free(q);
}

int
queue_busy(const struct queue *q)
{
    return q->njobs + q->nactive + (q->ops != NULL);
}

void
queue_counts(const struct queue *q, size_t *deferred, size_t *held, size_t *active)
{
    *deferred = q->ix.n - q->ix.nheld;
    *held = q->ix.nheld;
    *active = (size_t)q->nactive;
}
