/*
 * scheduler.c - the deferred queue's scheduler: runs, backoff, probes,
 * expiry, and what follows each delivery attempt.
 *
 * Public calls: sched_start, sched_stop, sched_now, sched_dsn_queued,
 * sched_pump, queue_kick.
 *
 * Scheduling follows Postfix: every queue_run_delay the index is walked
 * and messages whose next attempt is due are delivered, at most
 * max_parallel at a time, through the delivery hook (the same module as
 * first attempts). After a temporary failure the next attempt is
 * now + clamp(age, minimal_backoff_time, maximal_backoff_time); the time
 * is also stored as the file's mtime, so a restart reschedules 100,000
 * messages from one readdir and one stat each, without reading them.
 * While the downstream is down, one message is tried per probe_interval
 * instead of the whole due list; the first success flushes everything at
 * once (queue_kick from the daemon's recovery callback). There is one
 * timer for runs and one for probes, never one per message.
 *
 * After a restart the downstream's state is unknown and the stored
 * next-attempt times belong to the old process: a queue that starts with
 * mail probes at once (the oldest message, alone) and, when that attempt
 * delivers anything, flushes everything, due or not; when it fails at the
 * connection the daemon marks the downstream down and the usual probes
 * (and any live message relayed) bring the flush.
 *
 * After an attempt: delivered recipients are marked done (fdatasync)
 * before the file goes, permanent failures get an RFC 3464 DSN (queued
 * durably before they are marked), a message past maximal_queue_lifetime
 * (bounce_queue_lifetime for the null sender) is returned to its sender;
 * held messages never expire. All file work after an attempt runs in a
 * worker job that holds a reference to the configuration the attempt
 * started with; the loop keeps only the index entry.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "queue_file.h"
#include "queue_int.h"
#include "qwrite.h"
#include "scheduler.h"

/* One delivery attempt from the queue. */
struct qdelivery {
    struct queue *q;
    struct qent *e;
    struct sr_config *cfg; /* held for the attempt and its file work */
    struct queue_entry *qe;
    struct relay_job job;
    struct relay_rcpt_result *res;
    time_t now;
    /* Decided on the loop, carried out in the worker. */
    int expired;
    int remove;        /* every recipient finished */
    char *dsn;         /* DSN message to queue first, or NULL */
    int delay_warning; /* the DSN is a delay warning, not a bounce */
    size_t dsnlen;
    char dsn_id[QID_LEN + 1];
    time_t next;
    int del_after, hold_after; /* the administrator's verb, carried out by the worker */
    int err;                   /* worker's errno, 0 ok */
    int start_probe;           /* the attempt that tells whether the downstream is back */
};

static void queue_scan(struct queue *q, int force);

static const struct sr_config *
cfg(const struct queue *q)
{
    return q->h.config(q->h.ctx);
}

static time_t
id_arrival(const char *id)
{
    unsigned long long us = strtoull(id, NULL, 16);
    return (time_t)(us / 1000000u);
}

void
sched_now(struct queue *q, const char *id)
{
    struct qent *e = qindex_add(&q->ix, id, 0, 0, id_arrival(id));
    if (e)
        qindex_due_push(&q->ix, e, 0);
    else
        log_warnx("%s: out of memory for the queue index; scheduled at the next start", id);
}

void
sched_dsn_queued(struct queue *q, const char *of, const char *dsn_id, const char *kind)
{
    log_info("%s: sender %s notification: %s", of, kind, dsn_id);
    sched_now(q, dsn_id);
}

static time_t
backoff(const struct sr_config *c, time_t arrival, time_t now)
{
    time_t age = now - arrival;
    if (age < c->queue.minimal_backoff_time)
        age = (time_t)c->queue.minimal_backoff_time;
    if (age > c->queue.maximal_backoff_time)
        age = (time_t)c->queue.maximal_backoff_time;
    return now + age;
}

static void
qdelivery_free(struct qdelivery *qd)
{
    if (qd->qe)
        queue_entry_free(qd->qe);
    if (qd->cfg)
        qd->q->h.config_unref(qd->q->h.ctx, qd->cfg);
    free(qd->res);
    free(qd->dsn);
    free(qd);
}

static ssize_t
qe_pread(void *ctx, void *buf, size_t len, off_t off)
{
    return queue_file_read_content(ctx, buf, len, off);
}

static void
log_attempt(struct qdelivery *qd, size_t i, const char *status)
{
    const struct relay_rcpt_result *r = &qd->res[i];
    log_info("%s: to=<%s>, relay=%s, delay=%.0f, delays=0/%.2f/%.2f/%.2f, dsn=%s, status=%s (%s)",
             qd->e->id, qd->qe->env->rcpt[i].addr,
             qd->job.relay_name[0] ? qd->job.relay_name : "none",
             difftime(qd->now, qd->e->arrival), qd->job.t_wait, qd->job.t_conn, qd->job.t_xfer,
             r->dsn, status, r->text);
}

/* Worker: carry out the file changes decided on the loop. */
static void
finish_work(void *arg)
{
    struct qdelivery *qd = arg;
    struct queue *q = qd->q;
    const struct envelope *env = qd->qe->env;

    qd->err = 0;
    if (qd->dsn &&
        qwrite_dsn(q->qdir, qd->cfg->state_directory, qd->dsn_id, env->sender, qd->dsn,
                   qd->dsnlen) < 0) {
        qd->err = errno;
        /* Without the DSN on disk the message must stay: try again later. */
        qd->remove = 0;
        free(qd->dsn);
        qd->dsn = NULL;
        qd->next = qd->now + (time_t)qd->cfg->queue.minimal_backoff_time;
    }
    if (qd->remove || qd->del_after) {
        if (queue_file_remove(q->qdir, qd->e->id) < 0 && errno != ENOENT)
            qd->err = errno;
        return;
    }
    int any_final = 0;
    for (size_t i = 0; i < env->nrcpt; i++) {
        enum rcpt_state st = env->rcpt[i].state;
        if (st == RCPT_DONE || (st == RCPT_BOUNCED && qd->dsn_id[0] && qd->dsn))
            any_final = 1;
    }
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct env_rcpt *r = &env->rcpt[i];
        if (qd->res[i].code == 0 && qd->res[i].text[0] == '\0')
            continue; /* not tried */
        enum rcpt_state st = r->state;
        if (st == RCPT_BOUNCED && qd->dsn == NULL && qd->err)
            st = RCPT_DEFERRED; /* the DSN could not be queued: keep it */
        queue_file_set_rcpt(qd->qe, i, st, qd->res[i].text, 0);
    }
    if (any_final)
        fdatasync(qd->qe->fd);
    queue_file_set_meta(qd->qe, qd->qe->attempts + 1, qd->now, qd->next);
    qwrite_set_time(q->qdir, qd->e->id, 0, qd->next);
    if (qd->hold_after && queue_file_hold(q->qdir, qd->e->id) < 0)
        qd->hold_after = 0;
}

static void
finish_done(void *arg, int cancelled)
{
    struct qdelivery *qd = arg;
    struct queue *q = qd->q;
    struct qent *e = qd->e;

    if (cancelled) {
        /* Stopping: the file stays as it was and is tried again at the next start. */
        e->active = 0;
        qdelivery_free(qd);
        queue_job_done(q, 1);
        return;
    }
    if (qd->err)
        log_warnx("%s: queue file update: %s", e->id, strerror(qd->err));
    if (qd->dsn)
        sched_dsn_queued(q, e->id, qd->dsn_id, qd->delay_warning ? "delay" : "non-delivery");
    e->active = 0;
    if (qd->remove) {
        log_info("%s: removed", e->id);
        qindex_remove(&q->ix, e);
    } else if (e->del_after) {
        /* Asked while the attempt ran: done by the worker, or here when asked late. */
        if (!qd->del_after)
            queue_file_remove(q->qdir, e->id);
        log_info("%s: removed (deleted by the administrator)", e->id);
        qindex_remove(&q->ix, e);
    } else {
        e->next = qd->next;
        if (e->hold_after && (qd->hold_after || queue_file_hold(q->qdir, e->id) == 0)) {
            qindex_set_held(&q->ix, e, 1);
            log_info("%s: held", e->id);
        }
    }
    qdelivery_free(qd);
    queue_job_done(q, 0);
    sched_pump(q, 0);
}

static void
delivery_done(struct relay_job *job, void *arg)
{
    struct qdelivery *qd = arg;
    struct queue *q = qd->q;
    struct envelope *env = qd->qe->env;
    const struct sr_config_queue *c = &qd->cfg->queue;
    int ntemp = 0;
    (void)job;

    qd->now = time(NULL);
    int start_probe = qd->start_probe, any_ok = 0;
    int null_sender = env->sender == NULL || env->sender[0] == '\0';
    time_t lifetime = (time_t)(null_sender ? c->bounce_queue_lifetime : c->maximal_queue_lifetime);
    for (size_t i = 0; i < env->nrcpt; i++)
        if ((env->rcpt[i].state == RCPT_PENDING || env->rcpt[i].state == RCPT_DEFERRED) &&
            qd->res[i].cls == RELAY_TEMP)
            ntemp++;
    qd->expired = ntemp && qd->now - qd->e->arrival >= lifetime;

    /*
     * Per recipient: log, new state, DSN list.
     */
    size_t nb = 0;
    int which[env->nrcpt ? env->nrcpt : 1];
    const char *diag[env->nrcpt ? env->nrcpt : 1], *status[env->nrcpt ? env->nrcpt : 1];
    int remaining = 0;
    for (size_t i = 0; i < env->nrcpt; i++) {
        struct env_rcpt *r = &env->rcpt[i];
        if (r->state != RCPT_PENDING && r->state != RCPT_DEFERRED)
            continue;
        switch (qd->res[i].cls) {
        case RELAY_OK:
            any_ok = 1;
            log_attempt(qd, i, "sent");
            r->state = RCPT_DONE;
            break;
        case RELAY_PERM:
            log_attempt(qd, i, "bounced");
            r->state = RCPT_BOUNCED;
            which[nb] = (int)i;
            diag[nb] = qd->res[i].text;
            status[nb] = qd->res[i].dsn;
            nb++;
            break;
        case RELAY_TEMP:
            if (qd->expired) {
                log_attempt(qd, i, "expired, returned to sender");
                r->state = RCPT_BOUNCED;
                which[nb] = (int)i;
                diag[nb] = qd->res[i].text;
                snprintf(qd->res[i].dsn, sizeof(qd->res[i].dsn), "4.4.7");
                status[nb] = qd->res[i].dsn;
                nb++;
            } else {
                log_attempt(qd, i, "deferred");
                r->state = RCPT_DEFERRED;
                remaining++;
            }
            break;
        }
    }
    const char *remote = q->h.remote_name(q->h.ctx);
    struct qwrite_dsn_rcpts rr = {which, diag, status, nb};
    if (nb && qwrite_dsn_build(qd->cfg, remote, qd->e->id, env, qd->e->arrival, &rr,
                               qd->expired ? "expired" : NULL, qe_pread, qd->qe,
                               qd->qe->content_size, &qd->dsn, &qd->dsnlen) < 0)
        log_warnx("%s: cannot build the non-delivery notification", qd->e->id);
    /*
     * Delay warning (delay_warning_time, off by default): once per message
     * and daemon run, for the recipients still deferred that want one.
     */
    if (qd->dsn == NULL && remaining && c->delay_warning_time > 0 && !qd->e->warned &&
        qd->now - qd->e->arrival >= c->delay_warning_time) {
        size_t nd = 0;
        for (size_t i = 0; i < env->nrcpt; i++) {
            if (env->rcpt[i].state != RCPT_DEFERRED)
                continue;
            which[nd] = (int)i;
            diag[nd] = qd->res[i].text;
            status[nd] = qd->res[i].dsn;
            nd++;
        }
        struct qwrite_dsn_rcpts rd = {which, diag, status, nd};
        if (nd && qwrite_dsn_build(qd->cfg, remote, qd->e->id, env, qd->e->arrival, &rd,
                                   "delayed", qe_pread, qd->qe, qd->qe->content_size, &qd->dsn,
                                   &qd->dsnlen) < 0)
            log_warnx("%s: cannot build the delay warning", qd->e->id);
        qd->e->warned = 1;
        qd->delay_warning = qd->dsn != NULL;
    }
    if (qd->dsn)
        qid_next(qd->dsn_id);
    qd->remove = remaining == 0;
    qd->next = backoff(qd->cfg, qd->e->arrival, qd->now);
    qd->del_after = qd->e->del_after;
    qd->hold_after = qd->e->hold_after && !qd->remove && !qd->del_after;
    /* The delivery slot is free now; the entry stays active until its file is updated. */
    q->nactive--;
    if (start_probe) {
        /* The start-up probe is over: the downstream answered, or the relay now says down. */
        q->start_probe = 0;
        if (any_ok) {
            log_info("queue: the downstream accepts mail: delivering the whole queue");
            queue_scan(q, 1);
        }
    }
    if (queue_run(q, finish_work, finish_done, qd) < 0) {
        /* Out of memory: leave the file as it is; it is retried later. */
        qd->remove = qd->del_after = qd->hold_after = 0;
        qd->err = ENOMEM;
        q->njobs++; /* finish_done counts it out */
        finish_done(qd, 0);
        return;
    }
    sched_pump(q, 0);
}

/* A new attempt's state: the file loaded read-write, a config reference. NULL when not. */
static struct qdelivery *
qdelivery_new(struct queue *q, struct qent *e)
{
    struct qdelivery *qd = calloc(1, sizeof(*qd));
    if (qd == NULL)
        return NULL;
    qd->q = q;
    qd->e = e;
    qd->qe = queue_file_load(q->qdir, e->id, 1);
    if (qd->qe == NULL) {
        int err = errno;
        free(qd);
        errno = err;
        return NULL;
    }
    qd->cfg = q->h.config_ref(q->h.ctx);
    return qd;
}

/*
 * While the downstream is down, messages past their lifetime are returned
 * at the queue run without an attempt (as Postfix does for a dead
 * destination): every pending recipient fails with its last reason.
 */
static void
expire_start(struct queue *q, struct qent *e)
{
    const struct sr_config_queue *c = &cfg(q)->queue;
    struct qdelivery *qd = qdelivery_new(q, e);
    if (qd == NULL)
        return;
    if (qd->qe->where == QUEUE_HOLD) {
        qdelivery_free(qd);
        return;
    }
    struct envelope *env = qd->qe->env;
    int null_sender = env->sender == NULL || env->sender[0] == '\0';
    time_t lifetime = (time_t)(null_sender ? c->bounce_queue_lifetime : c->maximal_queue_lifetime);
    qd->res = calloc(env->nrcpt ? env->nrcpt : 1, sizeof(*qd->res));
    if (qd->res == NULL || time(NULL) - e->arrival < lifetime) {
        qdelivery_free(qd);
        return;
    }
    for (size_t i = 0; i < env->nrcpt; i++) {
        struct relay_rcpt_result *r = &qd->res[i];
        r->cls = RELAY_TEMP;
        snprintf(r->dsn, sizeof(r->dsn), "4.4.1");
        snprintf(r->text, sizeof(r->text), "%s",
                 env->rcpt[i].reason && env->rcpt[i].reason[0] ? env->rcpt[i].reason
                                                                : "downstream unavailable");
    }
    snprintf(qd->job.relay_name, sizeof(qd->job.relay_name), "none");
    qindex_due_unlink(&q->ix, e);
    e->active = 1;
    q->nactive++;
    delivery_done(&qd->job, qd);
}

static void
delivery_start(struct queue *q, struct qent *e, int start_probe)
{
    struct qdelivery *qd = qdelivery_new(q, e);
    if (qd == NULL) {
        if (errno == ENOENT) {
            log_info("%s: removed (the queue file is gone)", e->id);
            qindex_remove(&q->ix, e);
        } else if (errno != ENOMEM) {
            log_warnx("%s: cannot read the queue file: %s; left in place, not scheduled", e->id,
                      strerror(errno));
            qindex_remove(&q->ix, e);
        }
        return;
    }
    if (qd->qe->where == QUEUE_HOLD) {
        qindex_set_held(&q->ix, e, 1);
        qdelivery_free(qd);
        return;
    }
    qd->res = calloc(qd->qe->env->nrcpt ? qd->qe->env->nrcpt : 1, sizeof(*qd->res));
    if (qd->res == NULL) {
        qdelivery_free(qd);
        return;
    }
    e->active = 1;
    q->nactive++;
    qd->start_probe = start_probe;
    struct relay_job *j = &qd->job;
    j->qid = e->id;
    j->retry = 1;
    j->env = qd->qe->env;
    j->body.pread = qe_pread;
    j->body.ctx = qd->qe;
    j->body.size = qd->qe->content_size;
    j->done = delivery_done;
    j->arg = qd;
    j->res = qd->res;
    if (q->h.submit(q->h.ctx, j) < 0) {
        e->active = 0;
        q->nactive--;
        qdelivery_free(qd);
        if (start_probe)
            q->start_probe = 0;
    }
}

void
sched_pump(struct queue *q, int probe)
{
    if (q->h.stopping(q->h.ctx))
        return;
    int down = (q->h.down(q->h.ctx) || q->start_probe) && !q->flushing;
    while (q->ix.due_head && q->nactive < cfg(q)->queue.max_parallel) {
        if (down && (!probe || q->nactive > 0))
            break;
        struct qent *e = q->ix.due_head;
        qindex_due_unlink(&q->ix, e);
        delivery_start(q, e, probe && q->start_probe);
        probe = 0;
    }
    if (q->ix.due_head == NULL)
        q->flushing = 0;
}

/* Move every message whose time has come (or all, with force) to the due list. */
static void
queue_scan(struct queue *q, int force)
{
    time_t now = time(NULL);
    for (size_t i = 0; i < q->ix.n; i++) {
        struct qent *e = q->ix.ents[i];
        if (!e->due && (force || e->next <= now))
            qindex_due_push(&q->ix, e, 0);
    }
}

static void
run_cb(evutil_socket_t fd, short what, void *arg)
{
    struct queue *q = arg;
    (void)fd;
    (void)what;
    if (q->h.down(q->h.ctx) && !q->h.stopping(q->h.ctx)) {
        const struct sr_config_queue *c = &cfg(q)->queue;
        time_t shortest = (time_t)(c->maximal_queue_lifetime < c->bounce_queue_lifetime
                                       ? c->maximal_queue_lifetime
                                       : c->bounce_queue_lifetime);
        time_t now = time(NULL);
        /* Backwards: expiry removes entries by swapping in the last one. */
        for (size_t i = q->ix.n; i-- > 0;) {
            if (i >= q->ix.n)
                continue;
            struct qent *e = q->ix.ents[i];
            if (!e->held && !e->active && !e->admin && now - e->arrival >= shortest)
                expire_start(q, e);
        }
    }
    queue_scan(q, 0);
    sched_pump(q, 0);
}

static void
probe_cb(evutil_socket_t fd, short what, void *arg)
{
    struct queue *q = arg;
    (void)fd;
    (void)what;
    if (!q->h.down(q->h.ctx) && !q->start_probe)
        return;
    if (q->nactive > 0)
        return; /* an attempt is on its way: it is the probe */
    if (q->ix.due_head == NULL) {
        /* Nothing due: probe with the oldest deferred message anyway. */
        struct qent *oldest = NULL;
        for (size_t i = 0; i < q->ix.n; i++) {
            struct qent *e = q->ix.ents[i];
            if (!e->held && !e->active && !e->admin &&
                (oldest == NULL || strcmp(e->id, oldest->id) < 0))
                oldest = e;
        }
        if (oldest)
            qindex_due_push(&q->ix, oldest, 1);
    }
    sched_pump(q, 1);
}

void
queue_kick(struct queue *q)
{
    queue_scan(q, 1);
    sched_pump(q, 0);
}

/*
 * Start-up.
 */
static void
scan_cb(void *arg, const char *id, enum queue_where w)
{
    struct queue *q = arg;
    char path[4096];
    struct stat st;
    time_t next = 0;
    snprintf(path, sizeof(path), "%s/%s/%s", q->qdir, w == QUEUE_HOLD ? "hold" : "deferred", id);
    if (stat(path, &st) == 0)
        next = st.st_mtime;
    if (qindex_add(&q->ix, id, w == QUEUE_HOLD, next, id_arrival(id)) == NULL)
        log_warnx("%s: out of memory while reading the queue", id);
}

int
sched_start(struct queue *q, char *err, size_t errlen)
{
    const struct sr_config *c = cfg(q);
    if (queue_dir_scan(q->qdir, scan_cb, q) < 0) {
        snprintf(err, errlen, "queue_directory %s: %s", q->qdir, strerror(errno));
        return -1;
    }
    q->run_ev = event_new(q->base, -1, EV_PERSIST, run_cb, q);
    q->probe_ev = event_new(q->base, -1, EV_PERSIST, probe_cb, q);
    if (q->run_ev == NULL || q->probe_ev == NULL) {
        snprintf(err, errlen, "queue: cannot start the scheduler");
        return -1;
    }
    struct timeval rt = {c->queue.queue_run_delay, 0};
    struct timeval pt = {c->queue.probe_interval, 0};
    evtimer_add(q->run_ev, &rt);
    evtimer_add(q->probe_ev, &pt);
    if (q->ix.n)
        log_info("queue: %zu message(s) in the deferred queue, %zu held", q->ix.n - q->ix.nheld,
                 q->ix.nheld);
    /*
     * Mail left by the previous process: probe at once (the run then
     * sends what is due once the probe says the downstream is up).
     */
    if (q->ix.n > q->ix.nheld) {
        q->start_probe = 1;
        event_active(q->probe_ev, 0, 0);
    }
    event_active(q->run_ev, 0, 0);
    return 0;
}

void
sched_stop(struct queue *q)
{
    if (q->run_ev)
        event_free(q->run_ev);
    if (q->probe_ev)
        event_free(q->probe_ev);
    q->run_ev = q->probe_ev = NULL;
}
