/*
 * queue_mgr.c - custody and the deferred queue's scheduler.
 *
 * Public calls: queue_mgr_new, queue_mgr_free, queue_mgr_enter,
 * queue_mgr_bounce_now, queue_mgr_kick, queue_mgr_control,
 * queue_mgr_counts.
 *
 * Custody: when the first delivery attempt fails temporarily, the
 * pipeline calls queue_mgr_enter; a worker thread (lib/wpool, "sr-work") writes the
 * queue file crash-safely (queue_file_create: temp name, fsync, rename,
 * directory fsync), plus first the DSN for recipients already refused
 * permanently, and only then does the upstream get its 250.
 *
 * Scheduling follows Postfix: every queue_run_delay the queue is scanned
 * and messages whose next attempt is due are delivered, at most
 * max_parallel at a time, through the same relay module as first
 * attempts. After a temporary failure the next attempt is
 * now + clamp(age, minimal_backoff_time, maximal_backoff_time); the time
 * is also stored as the file's mtime, so a restart reschedules 100,000
 * messages from one readdir and one stat each, without reading them.
 * While the downstream is down, one message is tried per probe_interval
 * instead of the whole due list; the first success flushes everything
 * at once (queue_mgr_kick from the relay's recovery callback). There is
 * one timer for runs and one for probes, never one per message.
 *
 * After an attempt: delivered recipients are marked done (fdatasync)
 * before the file goes, permanent failures get an RFC 3464 DSN (queued
 * durably before they are marked), a message past maximal_queue_lifetime
 * (bounce_queue_lifetime for the null sender) is returned to its sender;
 * held messages never expire. All file work after an attempt runs in
 * the worker thread; the loop keeps only a small index entry per message.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"
#include "dsn.h"
#include "log.h"
#include "queue_file.h"
#include "queue_mgr.h"
#include "relay.h"
#include "spool.h"
#include "wpool.h"

#define DSN_FULL_LIMIT 50000

struct qent {
    char id[QID_LEN + 1];
    unsigned held : 1, active : 1, due : 1, del_after : 1, hold_after : 1;
    unsigned warned : 1;      /* delay warning sent (this run of the daemon) */
    time_t next;
    time_t arrival;
    size_t idx;          /* position in q->ents */
    struct qent *due_next, *due_prev; /* the due list, in order */
};

struct queue_mgr {
    struct daemon *d;
    char *qdir;
    struct qent **ents;
    size_t n, cap;
    struct qent *due_head, *due_tail;
    size_t nheld;
    int nactive;
    int flushing;        /* a flush ignores the "downstream down" pacing */
    struct wpool *wp;    /* "sr-work": file writes and updates */
    struct event *run_ev, *probe_ev;
};

/* One delivery attempt from the queue. */
struct qdelivery {
    struct queue_mgr *q;
    struct qent *e;
    struct queue_entry *qe;
    struct relay_job job;
    struct relay_rcpt_result *res;
    time_t now;
    /* Decided on the loop, carried out in the worker. */
    int expired;
    int remove;          /* every recipient finished */
    char *dsn;           /* DSN message to queue first, or NULL */
    int delay_warning;   /* the DSN is a delay warning, not a bounce */
    size_t dsnlen;
    char dsn_id[QID_LEN + 1];
    time_t next;
    int err;             /* worker's errno, 0 ok */
    struct sr_config *cfg; /* the configuration the attempt started with (a reference) */
};

static void queue_pump(struct queue_mgr *q, int probe);

/*
 * The index.
 */
static time_t
id_arrival(const char *id)
{
    unsigned long long us = strtoull(id, NULL, 16);
    return (time_t)(us / 1000000u);
}

static struct qent *
ent_add(struct queue_mgr *q, const char *id, int held, time_t next, time_t arrival)
{
    if (q->n == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 1024;
        struct qent **ne = realloc(q->ents, nc * sizeof(*ne));
        if (ne == NULL)
            return NULL;
        q->ents = ne;
        q->cap = nc;
    }
    struct qent *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->held = held ? 1 : 0;
    e->next = next;
    e->arrival = arrival;
    e->idx = q->n;
    q->ents[q->n++] = e;
    if (held)
        q->nheld++;
    return e;
}

static void
due_unlink(struct queue_mgr *q, struct qent *e)
{
    if (!e->due)
        return;
    if (e->due_prev)
        e->due_prev->due_next = e->due_next;
    else
        q->due_head = e->due_next;
    if (e->due_next)
        e->due_next->due_prev = e->due_prev;
    else
        q->due_tail = e->due_prev;
    e->due = 0;
    e->due_next = e->due_prev = NULL;
}

static void
ent_remove(struct queue_mgr *q, struct qent *e)
{
    due_unlink(q, e);
    if (e->held)
        q->nheld--;
    size_t i = e->idx;
    q->ents[i] = q->ents[--q->n];
    q->ents[i]->idx = i;
    free(e);
}

static struct qent *
ent_find(struct queue_mgr *q, const char *id)
{
    for (size_t i = 0; i < q->n; i++)
        if (strcmp(q->ents[i]->id, id) == 0)
            return q->ents[i];
    return NULL;
}

static void
due_push(struct queue_mgr *q, struct qent *e, int front)
{
    if (e->due || e->active || e->held)
        return;
    e->due = 1;
    if (front) {
        e->due_prev = NULL;
        e->due_next = q->due_head;
        if (q->due_head)
            q->due_head->due_prev = e;
        else
            q->due_tail = e;
        q->due_head = e;
    } else {
        e->due_next = NULL;
        e->due_prev = q->due_tail;
        if (q->due_tail)
            q->due_tail->due_next = e;
        else
            q->due_head = e;
        q->due_tail = e;
    }
}

/* A complete queue file to deliver as soon as possible (the caller pumps). */
static void
schedule_now(struct queue_mgr *q, const char *id)
{
    struct qent *e = ent_add(q, id, 0, 0, id_arrival(id));
    if (e)
        due_push(q, e, 0);
}

/* A DSN (kind "non-delivery" or "delay") about message "of" is on disk. */
static void
dsn_queued(struct queue_mgr *q, const char *of, const char *dsn_id, const char *kind)
{
    log_info("%s: sender %s notification: %s", of, kind, dsn_id);
    schedule_now(q, dsn_id);
}

static time_t
backoff(const struct queue_mgr *q, time_t arrival, time_t now)
{
    const struct sr_config_queue *c = &services_config(&q->d->svc)->queue;
    time_t age = now - arrival;
    if (age < c->minimal_backoff_time)
        age = (time_t)c->minimal_backoff_time;
    if (age > c->maximal_backoff_time)
        age = (time_t)c->maximal_backoff_time;
    return now + age;
}

/* Record the next attempt as the file's mtime (read back at start-up). */
static void
set_file_time(const char *qdir, const char *id, int held, time_t t)
{
    char path[4096];
    struct timespec ts[2] = {{t, 0}, {t, 0}};
    snprintf(path, sizeof(path), "%s/%s/%s", qdir, held ? "hold" : "deferred", id);
    utimensat(AT_FDCWD, path, ts, 0);
}

/*
 * DSN messages enter the queue like any other message.
 */
/* Build the DSN for the given recipients; 0 ok (or none due), -1 error. */
static int
make_dsn(struct queue_mgr *q, const char *qid, const struct envelope *env, time_t arrival,
         const int *which, const char **diag, const char **status, size_t n, const char *reason,
         ssize_t (*pread)(void *, void *, size_t, off_t), void *ctx, off_t size, char **out,
         size_t *outlen)
{
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
        if (!dsn_wanted(&env->rcpt[which[i]], action))
            continue;
        rc[k].rcpt = &env->rcpt[which[i]];
        rc[k].diag = diag[i];
        rc[k].status = status[i];
        k++;
    }
    if (k == 0)
        return 0;
    struct dsn_req req = {
        .qid = qid,
        .hostname = services_config(&q->d->svc)->hostname,
        .remote_mta = relay_name(q->d->relay),
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

/* Worker side: write a DSN message as a queue file (null sender, to the sender). */
static int
write_dsn(struct queue_mgr *q, const struct sr_config *cfg, const char *dsn_id, const char *to,
          const char *msg, size_t len)
{
    struct envelope *e = envelope_new();
    struct spool *sp = spool_new(len + 1, cfg->state_directory);
    int rc = -1, err = ENOMEM;
    if (e && sp && envelope_set_sender(e, "") == 0 && envelope_add_rcpt(e, to, NULL, 0) >= 0 &&
        spool_write(sp, msg, len) == 0) {
        e->arrival = time(NULL);
        rc = queue_file_create(q->qdir, dsn_id, e, NULL, 0, sp, 0);
        err = errno;
    }
    envelope_free(e);
    spool_free(sp);
    errno = err;
    return rc;
}

/*
 * Custody.
 */
struct custody {
    struct queue_mgr *q;
    char qid[QID_LEN + 1];
    const struct envelope *env;
    const char *prefix;
    size_t prefixlen;
    struct spool *body;
    char *dsn;
    size_t dsnlen;
    char dsn_id[QID_LEN + 1];
    int rc, err;
    time_t next;
    void (*cb)(void *, int, int);
    void *arg;
    struct sr_config *cfg; /* the configuration the job started with (a reference) */
};

static void
custody_work(void *arg)
{
    struct custody *c = arg;
    if (c->dsn && write_dsn(c->q, c->cfg, c->dsn_id, c->env->sender, c->dsn, c->dsnlen) < 0) {
        c->rc = -1;
        c->err = errno;
        return;
    }
    c->rc = queue_file_create(c->q->qdir, c->qid, c->env, c->prefix, c->prefixlen, c->body,
                              c->cfg->queue.min_free_space);
    c->err = c->rc < 0 ? errno : 0;
    if (c->rc < 0 && c->dsn)
        queue_file_remove(c->q->qdir, c->dsn_id); /* the bounce goes with the message */
    if (c->rc == 0)
        set_file_time(c->q->qdir, c->qid, 0, c->next);
}

static void
custody_done(void *arg, int status)
{
    struct custody *c = arg;
    struct queue_mgr *q = c->q;
    services_config_release(c->cfg);
    if (status == WPOOL_CANCELLED) {
        /* The daemon is going away: nothing was written, nobody to tell. */
        free(c->dsn);
        free(c);
        return;
    }
    if (c->rc == 0) {
        ent_add(q, c->qid, 0, c->next, c->env->arrival ? c->env->arrival : time(NULL));
        if (c->dsn)
            dsn_queued(q, c->qid, c->dsn_id, "non-delivery");
    }
    c->cb(c->arg, c->rc, c->err);
    free(c->dsn);
    free(c);
    queue_pump(q, 0);
}

static ssize_t
spool_pread_cb(void *ctx, void *buf, size_t len, off_t off)
{
    return spool_pread(ctx, buf, len, off);
}

void
queue_mgr_enter(struct queue_mgr *q, const char *qid, const struct envelope *env,
                const char *prefix, size_t prefixlen, struct spool *body,
                void (*cb)(void *arg, int rc, int err), void *arg)
{
    struct custody *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        cb(arg, -1, ENOMEM);
        return;
    }
    c->q = q;
    snprintf(c->qid, sizeof(c->qid), "%s", qid);
    c->env = env;
    c->prefix = prefix;
    c->prefixlen = prefixlen;
    c->body = body;
    c->cb = cb;
    c->arg = arg;
    c->cfg = services_config_acquire(&q->d->svc);
    c->next = time(NULL) + (time_t)c->cfg->queue.minimal_backoff_time;

    /* Recipients already refused permanently get their DSN with the custody. */
    size_t nb = 0;
    int which[env->nrcpt ? env->nrcpt : 1];
    const char *diag[env->nrcpt ? env->nrcpt : 1], *status[env->nrcpt ? env->nrcpt : 1];
    char st[env->nrcpt ? env->nrcpt : 1][16];
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
    if (nb && make_dsn(q, qid, env, env->arrival, which, diag, status, nb, NULL, spool_pread_cb,
                       body, spool_size(body), &c->dsn, &c->dsnlen) < 0)
        log_warnx("%s: cannot build the non-delivery notification", qid);
    if (c->dsn)
        qid_next(c->dsn_id);
    if (wpool_call(q->wp, custody_work, custody_done, c) < 0) {
        services_config_release(c->cfg);
        free(c->dsn);
        free(c);
        cb(arg, -1, ENOMEM);
    }
}

struct bounce_now {
    struct queue_mgr *q;
    char *dsn;
    size_t dsnlen;
    char dsn_id[QID_LEN + 1];
    char qid[QID_LEN + 1];
    char *to;
    int rc;
    void (*cb)(void *, int, int);
    void *arg;
    struct sr_config *cfg; /* the configuration the job started with (a reference) */
};

static void
bounce_now_work(void *arg)
{
    struct bounce_now *b = arg;
    b->rc = write_dsn(b->q, b->cfg, b->dsn_id, b->to, b->dsn, b->dsnlen);
    if (b->rc < 0)
        b->rc = -errno;
}

static void
bounce_now_done(void *arg, int status)
{
    struct bounce_now *b = arg;
    services_config_release(b->cfg);
    if (status == WPOOL_CANCELLED) {
        free(b->dsn);
        free(b->to);
        free(b);
        return;
    }
    if (b->rc == 0) {
        dsn_queued(b->q, b->qid, b->dsn_id, "non-delivery");
        queue_pump(b->q, 0);
    } else {
        log_warnx("%s: cannot queue the non-delivery notification: %s", b->qid,
                  strerror(-b->rc));
    }
    b->cb(b->arg, b->rc == 0 ? 0 : -1, b->rc == 0 ? 0 : -b->rc);
    free(b->dsn);
    free(b->to);
    struct daemon *d = b->q->d;
    free(b);
    services_idle(&d->svc);
}

void
queue_mgr_bounce_now(struct queue_mgr *q, const char *qid, const struct envelope *env,
                     const struct relay_rcpt_result *res, struct spool *body,
                     void (*cb)(void *arg, int rc, int err), void *arg)
{
    size_t nb = 0;
    int which[env->nrcpt ? env->nrcpt : 1];
    const char *diag[env->nrcpt ? env->nrcpt : 1], *status[env->nrcpt ? env->nrcpt : 1];
    for (size_t i = 0; i < env->nrcpt; i++) {
        if (res[i].cls != RELAY_PERM)
            continue;
        which[nb] = (int)i;
        diag[nb] = res[i].text;
        status[nb] = res[i].dsn;
        nb++;
    }
    char *dsn = NULL;
    size_t dsnlen = 0;
    if (nb && make_dsn(q, qid, env, env->arrival, which, diag, status, nb, NULL, spool_pread_cb,
                       body, spool_size(body), &dsn, &dsnlen) < 0) {
        log_warnx("%s: cannot build the non-delivery notification", qid);
        cb(arg, -1, ENOMEM);
        return;
    }
    if (dsn == NULL) {
        cb(arg, 0, 0); /* none due (null sender, NOTIFY) */
        return;
    }
    struct bounce_now *b = calloc(1, sizeof(*b));
    if (b == NULL || (b->to = strdup(env->sender)) == NULL) {
        free(b);
        free(dsn);
        log_warnx("%s: out of memory for the non-delivery notification", qid);
        cb(arg, -1, ENOMEM);
        return;
    }
    b->cb = cb;
    b->arg = arg;
    b->q = q;
    b->dsn = dsn;
    b->dsnlen = dsnlen;
    snprintf(b->qid, sizeof(b->qid), "%s", qid);
    qid_next(b->dsn_id);
    b->cfg = services_config_acquire(&q->d->svc);
    if (wpool_call(q->wp, bounce_now_work, bounce_now_done, b) < 0) {
        services_config_release(b->cfg);
        free(b->to);
        free(b->dsn);
        free(b);
        cb(arg, -1, ENOMEM);
    }
}

/*
 * Deliveries from the queue.
 */
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
    struct queue_mgr *q = qd->q;
    const struct envelope *env = qd->qe->env;

    qd->err = 0;
    if (qd->dsn && write_dsn(q, qd->cfg, qd->dsn_id, env->sender, qd->dsn, qd->dsnlen) < 0) {
        qd->err = errno;
        /* Without the DSN on disk the message must stay: try again later. */
        qd->remove = 0;
        free(qd->dsn);
        qd->dsn = NULL;
        qd->next = qd->now + (time_t)qd->cfg->queue.minimal_backoff_time;
    }
    if (qd->remove) {
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
    set_file_time(q->qdir, qd->e->id, qd->e->held, qd->next);
}

/* Free a delivery and what it holds. */
static void
qdelivery_free(struct qdelivery *qd)
{
    if (qd->qe)
        queue_entry_free(qd->qe);
    services_config_release(qd->cfg);
    free(qd->res);
    free(qd->dsn);
    free(qd);
}

static void
finish_done(void *arg, int status)
{
    struct qdelivery *qd = arg;
    struct queue_mgr *q = qd->q;
    struct qent *e = qd->e;

    if (status == WPOOL_CANCELLED) {
        /* Shutting down: the file stays as it was and is retried at the next start. */
        e->active = 0;
        qdelivery_free(qd);
        return;
    }

    if (qd->err)
        log_warnx("%s: queue file update: %s", e->id, strerror(qd->err));
    if (qd->dsn)
        dsn_queued(q, e->id, qd->dsn_id, qd->delay_warning ? "delay" : "non-delivery");
    e->active = 0;
    if (qd->remove) {
        log_info("%s: removed", e->id);
        ent_remove(q, e);
    } else if (e->del_after) {
        queue_file_remove(q->qdir, e->id);
        log_info("%s: removed (deleted by the administrator)", e->id);
        ent_remove(q, e);
    } else {
        e->next = qd->next;
        if (e->hold_after && queue_file_hold(q->qdir, e->id) == 0) {
            e->held = 1;
            q->nheld++;
            log_info("%s: held", e->id);
        }
    }
    qdelivery_free(qd);
    services_idle(&q->d->svc);
    queue_pump(q, 0);
}

static void
delivery_done(struct relay_job *job, void *arg)
{
    struct qdelivery *qd = arg;
    struct queue_mgr *q = qd->q;
    struct envelope *env = qd->qe->env;
    const struct sr_config_queue *c = &qd->cfg->queue;
    int ntemp = 0;
    (void)job;

    qd->now = time(NULL);
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
    if (nb && make_dsn(q, qd->e->id, env, qd->e->arrival, which, diag, status, nb,
                       qd->expired ? "expired" : NULL, qe_pread, qd->qe, qd->qe->content_size,
                       &qd->dsn, &qd->dsnlen) < 0)
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
        if (nd && make_dsn(q, qd->e->id, env, qd->e->arrival, which, diag, status, nd,
                           "delayed", qe_pread, qd->qe, qd->qe->content_size, &qd->dsn,
                           &qd->dsnlen) < 0)
            log_warnx("%s: cannot build the delay warning", qd->e->id);
        qd->e->warned = 1;
        qd->delay_warning = qd->dsn != NULL;
    }
    if (qd->dsn)
        qid_next(qd->dsn_id);
    qd->remove = remaining == 0;
    qd->next = backoff(q, qd->e->arrival, qd->now);
    /* The delivery slot is free now; the entry stays active until its file is updated. */
    q->nactive--;
    if (wpool_call(q->wp, finish_work, finish_done, qd) < 0) {
        /* Out of memory: leave the file as it is; it is retried later. */
        qd->remove = 0;
        qd->err = ENOMEM;
        finish_done(qd, WPOOL_DONE);
        return;
    }
    queue_pump(q, 0);
}

/*
 * While the downstream is down, messages past their lifetime are returned
 * at the queue run without an attempt (as Postfix does for a dead
 * destination): every pending recipient fails with its last reason.
 */
static void
expire_start(struct queue_mgr *q, struct qent *e)
{
    const struct sr_config_queue *c = &services_config(&q->d->svc)->queue;
    struct qdelivery *qd = calloc(1, sizeof(*qd));
    if (qd == NULL)
        return;
    qd->q = q;
    qd->e = e;
    qd->qe = queue_file_load(q->qdir, e->id, 1);
    if (qd->qe == NULL || qd->qe->where == QUEUE_HOLD) {
        if (qd->qe)
            queue_entry_free(qd->qe);
        free(qd);
        return;
    }
    struct envelope *env = qd->qe->env;
    int null_sender = env->sender == NULL || env->sender[0] == '\0';
    time_t lifetime = (time_t)(null_sender ? c->bounce_queue_lifetime : c->maximal_queue_lifetime);
    qd->res = calloc(env->nrcpt ? env->nrcpt : 1, sizeof(*qd->res));
    if (qd->res == NULL || time(NULL) - e->arrival < lifetime) {
        queue_entry_free(qd->qe);
        free(qd->res);
        free(qd);
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
    qd->cfg = services_config_acquire(&q->d->svc);
    due_unlink(q, e);
    e->active = 1;
    q->nactive++;
    delivery_done(&qd->job, qd);
}

static void
delivery_start(struct queue_mgr *q, struct qent *e)
{
    struct qdelivery *qd = calloc(1, sizeof(*qd));
    if (qd == NULL)
        return;
    qd->q = q;
    qd->e = e;
    qd->qe = queue_file_load(q->qdir, e->id, 1);
    if (qd->qe == NULL) {
        if (errno == ENOENT) {
            log_info("%s: removed (the queue file is gone)", e->id);
        } else {
            log_warnx("%s: cannot read the queue file: %s; left in place, not scheduled", e->id,
                      strerror(errno));
        }
        ent_remove(q, e);
        free(qd);
        return;
    }
    if (qd->qe->where == QUEUE_HOLD) {
        e->held = 1;
        q->nheld++;
        queue_entry_free(qd->qe);
        free(qd);
        return;
    }
    qd->res = calloc(qd->qe->env->nrcpt ? qd->qe->env->nrcpt : 1, sizeof(*qd->res));
    if (qd->res == NULL) {
        queue_entry_free(qd->qe);
        free(qd);
        return;
    }
    e->active = 1;
    q->nactive++;
    qd->cfg = services_config_acquire(&q->d->svc);
    struct relay_job *j = &qd->job;
    j->qid = e->id;
    j->env = qd->qe->env;
    j->body.pread = qe_pread;
    j->body.ctx = qd->qe;
    j->body.size = qd->qe->content_size;
    j->done = delivery_done;
    j->arg = qd;
    j->res = qd->res;
    relay_submit(q->d->relay, j);
}

/* Start due deliveries within max_parallel; while the downstream is down,
 * only a probe (one message) at a time. */
static void
queue_pump(struct queue_mgr *q, int probe)
{
    struct daemon *d = q->d;
    if (d->shutting_down)
        return;
    int down = relay_down(d->relay) && !q->flushing;
    while (q->due_head && q->nactive < services_config(&d->svc)->queue.max_parallel) {
        if (down && (!probe || q->nactive > 0))
            break;
        struct qent *e = q->due_head;
        due_unlink(q, e);
        delivery_start(q, e);
        probe = 0;
    }
    if (q->due_head == NULL)
        q->flushing = 0;
}

/* Move every message whose time has come (or all, with force) to the due list. */
static void
queue_scan(struct queue_mgr *q, int force)
{
    time_t now = time(NULL);
    for (size_t i = 0; i < q->n; i++) {
        struct qent *e = q->ents[i];
        if (!e->held && !e->active && !e->due && (force || e->next <= now))
            due_push(q, e, 0);
    }
}

static void
run_cb(evutil_socket_t fd, short what, void *arg)
{
    struct queue_mgr *q = arg;
    (void)fd;
    (void)what;
    if (relay_down(q->d->relay) && !q->d->shutting_down) {
        const struct sr_config_queue *c = &services_config(&q->d->svc)->queue;
        time_t shortest = (time_t)(c->maximal_queue_lifetime < c->bounce_queue_lifetime
                                       ? c->maximal_queue_lifetime
                                       : c->bounce_queue_lifetime);
        time_t now = time(NULL);
        /* Backwards: expiry removes entries by swapping in the last one. */
        for (size_t i = q->n; i-- > 0;) {
            if (i >= q->n)
                continue;
            struct qent *e = q->ents[i];
            if (!e->held && !e->active && now - e->arrival >= shortest)
                expire_start(q, e);
        }
    }
    queue_scan(q, 0);
    queue_pump(q, 0);
}

static void
probe_cb(evutil_socket_t fd, short what, void *arg)
{
    struct queue_mgr *q = arg;
    (void)fd;
    (void)what;
    if (!relay_down(q->d->relay))
        return;
    if (q->due_head == NULL) {
        /* Nothing due: probe with the oldest deferred message anyway. */
        struct qent *oldest = NULL;
        for (size_t i = 0; i < q->n; i++) {
            struct qent *e = q->ents[i];
            if (!e->held && !e->active && (oldest == NULL || strcmp(e->id, oldest->id) < 0))
                oldest = e;
        }
        if (oldest)
            due_push(q, oldest, 1);
    }
    queue_pump(q, 1);
}

static void
recovery_cb(void *arg)
{
    queue_mgr_kick(arg);
}

void
queue_mgr_adopt(struct queue_mgr *q, const char *id)
{
    schedule_now(q, id);
    queue_pump(q, 0);
}

void
queue_mgr_kick(struct queue_mgr *q)
{
    queue_scan(q, 1);
    queue_pump(q, 0);
}

/*
 * Start-up.
 */
static void
scan_cb(void *arg, const char *id, enum queue_where w)
{
    struct queue_mgr *q = arg;
    char path[4096];
    struct stat st;
    time_t next = 0;
    snprintf(path, sizeof(path), "%s/%s/%s", q->qdir, w == QUEUE_HOLD ? "hold" : "deferred", id);
    if (stat(path, &st) == 0)
        next = st.st_mtime;
    if (ent_add(q, id, w == QUEUE_HOLD, next, id_arrival(id)) == NULL)
        log_warnx("%s: out of memory while reading the queue", id);
}

struct queue_mgr *
queue_mgr_new(struct daemon *d, char *err, size_t errlen)
{
    struct queue_mgr *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    q->d = d;
    q->qdir = strdup(services_config(&d->svc)->queue_directory);
    if (q->qdir == NULL || queue_dir_init(q->qdir) < 0) {
        snprintf(err, errlen, "queue_directory %s: %s", services_config(&d->svc)->queue_directory,
                 strerror(errno));
        free(q->qdir);
        free(q);
        return NULL;
    }
    int removed = queue_dir_cleanup(q->qdir);
    if (removed > 0)
        log_info("queue: removed %d unfinished queue file(s) (never acknowledged)", removed);
    if (queue_dir_scan(q->qdir, scan_cb, q) < 0) {
        snprintf(err, errlen, "queue_directory %s: %s", q->qdir, strerror(errno));
        free(q->qdir);
        free(q);
        return NULL;
    }
    q->wp = wpool_new(d->base, "sr-work", 2, 0, err, errlen);
    q->run_ev = event_new(d->base, -1, EV_PERSIST, run_cb, q);
    q->probe_ev = event_new(d->base, -1, EV_PERSIST, probe_cb, q);
    if (q->wp == NULL || q->run_ev == NULL || q->probe_ev == NULL) {
        snprintf(err, errlen, "queue: cannot start the scheduler");
        queue_mgr_free(q);
        return NULL;
    }
    struct timeval rt = {services_config(&d->svc)->queue.queue_run_delay, 0};
    struct timeval pt = {services_config(&d->svc)->queue.probe_interval, 0};
    evtimer_add(q->run_ev, &rt);
    evtimer_add(q->probe_ev, &pt);
    relay_set_recovery_cb(d->relay, recovery_cb, q);
    if (q->n)
        log_info("queue: %zu message(s) in the deferred queue, %zu held", q->n - q->nheld,
                 q->nheld);
    /* Messages whose time has come go out right away. */
    event_active(q->run_ev, 0, 0);
    return q;
}

void
queue_mgr_free(struct queue_mgr *q)
{
    if (q == NULL)
        return;
    wpool_free(q->wp);
    if (q->run_ev)
        event_free(q->run_ev);
    if (q->probe_ev)
        event_free(q->probe_ev);
    for (size_t i = 0; i < q->n; i++)
        free(q->ents[i]);
    free(q->ents);
    free(q->qdir);
    free(q);
}

/*
 * Control actions.
 */
static int
ctl_one(struct queue_mgr *q, const char *verb, struct qent *e,
        void (*out)(void *arg, const char *line), void *arg)
{
    char line[128];
    if (strcmp(verb, "flush") == 0 || strcmp(verb, "requeue") == 0) {
        if (e->held)
            return 0;
        e->next = 0;
        due_push(q, e, 0);
        snprintf(line, sizeof(line), "%s: scheduled", e->id);
    } else if (strcmp(verb, "delete") == 0) {
        if (e->active) {
            e->del_after = 1;
            snprintf(line, sizeof(line), "%s: will be deleted after the delivery in progress",
                     e->id);
        } else {
            if (queue_file_remove(q->qdir, e->id) < 0 && errno != ENOENT) {
                snprintf(line, sizeof(line), "%s: cannot delete: %s", e->id, strerror(errno));
                out(arg, line);
                return -1;
            }
            log_info("%s: removed (deleted by the administrator)", e->id);
            snprintf(line, sizeof(line), "%s: deleted", e->id);
            ent_remove(q, e);
        }
    } else if (strcmp(verb, "hold") == 0) {
        if (e->held)
            return 0;
        if (e->active) {
            e->hold_after = 1;
            snprintf(line, sizeof(line), "%s: will be held after the delivery in progress", e->id);
        } else {
            if (queue_file_hold(q->qdir, e->id) < 0) {
                snprintf(line, sizeof(line), "%s: cannot hold: %s", e->id, strerror(errno));
                out(arg, line);
                return -1;
            }
            due_unlink(q, e);
            e->held = 1;
            q->nheld++;
            log_info("%s: held", e->id);
            snprintf(line, sizeof(line), "%s: held", e->id);
        }
    } else { /* release */
        if (!e->held)
            return 0;
        if (queue_file_release(q->qdir, e->id) < 0) {
            snprintf(line, sizeof(line), "%s: cannot release: %s", e->id, strerror(errno));
            out(arg, line);
            return -1;
        }
        e->held = 0;
        e->hold_after = 0;
        q->nheld--;
        e->next = 0;
        due_push(q, e, 0);
        log_info("%s: released from hold", e->id);
        snprintf(line, sizeof(line), "%s: released", e->id);
    }
    out(arg, line);
    return 1;
}

int
queue_mgr_control(struct queue_mgr *q, const char *verb, char **ids, int n,
                  void (*out)(void *arg, const char *line), void *arg, char *msg, size_t msglen)
{
    int all = n == 0 || (n == 1 && strcmp(ids[0], "ALL") == 0);
    int done = 0, failed = 0;

    if (n == 0 && strcmp(verb, "flush") != 0) {
        snprintf(msg, msglen, "%s needs queue IDs or ALL", verb);
        return -1;
    }
    if (all) {
        /* Iterate backwards: delete swaps entries from the end. */
        for (size_t i = q->n; i-- > 0;) {
            if (i >= q->n)
                continue;
            int rc = ctl_one(q, verb, q->ents[i], out, arg);
            if (rc > 0)
                done++;
            else if (rc < 0)
                failed++;
        }
        if (strcmp(verb, "flush") == 0)
            q->flushing = 1;
    } else {
        for (int i = 0; i < n; i++) {
            struct qent *e = ent_find(q, ids[i]);
            if (e == NULL) {
                char line[128];
                snprintf(line, sizeof(line), "%.40s: no such message in the queue", ids[i]);
                out(arg, line);
                failed++;
                continue;
            }
            int rc = ctl_one(q, verb, e, out, arg);
            if (rc > 0)
                done++;
            else if (rc < 0)
                failed++;
        }
        if (strcmp(verb, "flush") == 0 || strcmp(verb, "requeue") == 0)
            q->flushing = 1;
    }
    queue_pump(q, 0);
    const char *past = strcmp(verb, "flush") == 0     ? "scheduled for delivery"
                       : strcmp(verb, "requeue") == 0 ? "requeued"
                       : strcmp(verb, "delete") == 0  ? "deleted"
                       : strcmp(verb, "hold") == 0    ? "held"
                                                      : "released";
    snprintf(msg, msglen, "%d message%s %s%s", done, done == 1 ? "" : "s", past,
             failed ? " (some IDs failed)" : "");
    return failed && !done ? -1 : 0;
}

int
queue_mgr_busy(const struct queue_mgr *q)
{
    return (int)wpool_pending(q->wp) + q->nactive;
}

void
queue_mgr_counts(const struct queue_mgr *q, size_t *deferred, size_t *held, size_t *active)
{
    *deferred = q->n - q->nheld;
    *held = q->nheld;
    *active = (size_t)q->nactive;
}
