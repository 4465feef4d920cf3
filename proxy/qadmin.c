/*
 * qadmin.c - the daemon's side of `scanrelay quarantine release|delete`.
 *
 * Both read or change the quarantine store, which blocks (gzip, SQLite,
 * fsync), so that work runs in the daemon's admin worker thread and the
 * answer comes back on the loop. A release reads the stored message and
 * its envelope (or the recipients given) in the worker, hands them to
 * queue_inject on the loop (the one way into the deferred queue: a new
 * queue ID, written crash-safely behind an X-Quarantine-Released header,
 * scheduled at once), then marks the store entry released in the worker:
 * delivery goes through the deferred queue, so a release while the
 * downstream is down waits there like any message. Each request holds a
 * reference to the configuration it started with. Each release and delete
 * gets a row in the message log (verdict "admin", action "released" or
 * "deleted", the quarantine ID as its ID; not counted in the statistics).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "msglog.h"
#include "qadmin.h"
#include "qid.h"
#include "qstore.h"
#include "queue.h"
#include "services.h"
#include "spool.h"
#include "wpool.h"

struct qreq {
    struct daemon *d;
    int release;
    int stage;              /* release: 0 reading, 1 marking the store */
    struct envelope *env;   /* release: the copy's envelope and content */
    struct spool *sp;
    char prefix[160];
    size_t prefixlen;
    char id[QSTORE_ID_MAX];
    char **args;            /* release: recipients; delete: IDs */
    int nargs;
    char new_id[QID_LEN + 1];
    int ok;
    char msg[512];
    qadmin_done_fn done;
    void *arg;
    struct sr_config *cfg;  /* the configuration the request started with (a reference) */
};

static void
qreq_free(struct qreq *r)
{
    envelope_free(r->env);
    spool_free(r->sp);
    for (int i = 0; i < r->nargs; i++)
        free(r->args[i]);
    free(r->args);
    services_config_release(r->cfg);
    free(r);
}

/* The stored envelope, copied out of the index row. */
static int
meta_cb(void *arg, const struct qmeta *m)
{
    struct envelope *env = arg;
    if (envelope_set_sender(env, m->sender ? m->sender : "") < 0)
        return 1;
    for (size_t i = 0; i < m->nrcpt; i++)
        if (envelope_add_rcpt(env, m->rcpts[i], NULL, 0) < 0)
            return 1;
    env->arrival = (time_t)m->time;
    return 0;
}

/* Worker, first stage: the stored envelope (or the recipients given) and content. */
static void
release_work(void *arg)
{
    struct qreq *r = arg;
    struct daemon *d = r->d;
    struct envelope *env = envelope_new();
    struct spool *sp = NULL;
    struct qmsg *m = NULL;
    char buf[65536];

    r->ok = 0;
    if (env == NULL) {
        snprintf(r->msg, sizeof(r->msg), "%s: out of memory", r->id);
        return;
    }
    int found = qstore_get(d->qstore, r->id, meta_cb, env);
    if (found <= 0) {
        snprintf(r->msg, sizeof(r->msg), "%s: %s", r->id,
                 found == 0 ? "no such message in the quarantine" : "quarantine index error");
        goto out;
    }
    if (r->nargs > 0) {
        /* Explicit recipients replace the original ones. */
        struct envelope *e2 = envelope_new();
        if (e2 == NULL || envelope_set_sender(e2, env->sender) < 0) {
            envelope_free(e2);
            snprintf(r->msg, sizeof(r->msg), "%s: out of memory", r->id);
            goto out;
        }
        for (int i = 0; i < r->nargs; i++)
            envelope_add_rcpt(e2, r->args[i], NULL, 0);
        e2->arrival = env->arrival;
        envelope_free(env);
        env = e2;
    }
    if (env->nrcpt == 0) {
        snprintf(r->msg, sizeof(r->msg), "%s: no recipients to release to", r->id);
        goto out;
    }
    m = qstore_open_message(d->qstore, r->id);
    sp = spool_new((size_t)r->cfg->body_memory_limit, r->cfg->state_directory);
    if (m == NULL || sp == NULL) {
        snprintf(r->msg, sizeof(r->msg), "%s: cannot read the quarantined message: %s", r->id,
                 strerror(errno));
        goto out;
    }
    for (;;) {
        ssize_t n = qmsg_read(m, buf, sizeof(buf));
        if (n < 0 || (n > 0 && spool_write(sp, buf, (size_t)n) < 0)) {
            snprintf(r->msg, sizeof(r->msg), "%s: cannot read the quarantined message: %s",
                     r->id, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
    }
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
    r->prefixlen = (size_t)snprintf(r->prefix, sizeof(r->prefix),
                                    "X-Quarantine-Released: %s by scanrelay\r\n", date);
    env->arrival = now;
    r->env = env;
    r->sp = sp;
    env = NULL;
    sp = NULL;
    r->ok = 1;
out:
    if (m)
        qmsg_close(m);
    spool_free(sp);
    envelope_free(env);
}

/* A message-log row for an administrator's action on a quarantined message. */
struct admin_row {
    struct daemon *d;
    const char *action;
    const char *status;
};

static int
admin_row_cb(void *arg, const struct qmeta *m)
{
    struct admin_row *a = arg;
    struct msglog_row row;
    msglog_admin_row(&row, m, a->action, a->status);
    if (msglog_append(a->d->msglog, &row) < 0)
        log_warnx("%s: message log: the %s row was dropped", m->id, a->action);
    return 0;
}

static void
admin_row(struct daemon *d, const char *id, const char *action, const char *status)
{
    struct admin_row a = {d, action, status};
    if (d->msglog)
        qstore_get(d->qstore, id, admin_row_cb, &a);
}

/* Worker, second stage: the copy is queued; record the state in the store. */
static void
mark_work(void *arg)
{
    struct qreq *r = arg;
    char status[128];
    snprintf(status, sizeof(status), "released as %s to %zu recipient%s", r->new_id,
             r->env->nrcpt, r->env->nrcpt == 1 ? "" : "s");
    admin_row(r->d, r->id, "released", status);
    qstore_set_state(r->d->qstore, r->id, QSTATE_RELEASED, 0);
    snprintf(r->msg, sizeof(r->msg), "%s: released as %s to %zu recipient%s", r->id, r->new_id,
             r->env->nrcpt, r->env->nrcpt == 1 ? "" : "s");
}

static void
delete_work(void *arg)
{
    struct qreq *r = arg;
    int done = 0, missing = 0;
    for (int i = 0; i < r->nargs; i++) {
        int rc = qstore_delete(r->d->qstore, r->args[i], 0);
        if (rc > 0) {
            admin_row(r->d, r->args[i], "deleted", "deleted from the quarantine");
            done++;
        } else {
            missing++;
        }
    }
    r->ok = done > 0 || r->nargs == 0;
    snprintf(r->msg, sizeof(r->msg), "%d message%s deleted%s", done, done == 1 ? "" : "s",
             missing ? " (some IDs were not in the quarantine)" : "");
}

static void req_done(void *arg, int status);

/* Loop: queue_inject wrote the released copy (or could not). */
static void
inject_done(void *arg, int rc, int err, const char *id)
{
    struct qreq *r = arg;
    if (rc < 0) {
        r->ok = 0;
        snprintf(r->msg, sizeof(r->msg), "%s: cannot queue the released copy: %s", r->id,
                 strerror(err));
        req_done(r, WPOOL_DONE);
        return;
    }
    snprintf(r->new_id, sizeof(r->new_id), "%s", id);
    r->stage = 1;
    if (wpool_call(r->d->side_pool, mark_work, req_done, r) < 0) {
        mark_work(r); /* refused: mark it here rather than lose the state */
        req_done(r, WPOOL_DONE);
    }
}

static void
req_done(void *arg, int status)
{
    struct qreq *r = arg;
    if (status == WPOOL_CANCELLED) {
        /* The pool shut down before the work ran. */
        r->ok = 0;
        snprintf(r->msg, sizeof(r->msg), "shutting down");
    } else if (r->release && r->ok && r->stage == 0) {
        if (r->d->queue == NULL) {
            r->ok = 0;
            snprintf(r->msg, sizeof(r->msg), "%s: no queue", r->id);
        } else {
            queue_inject(r->d->queue, r->env, r->prefix, r->prefixlen, r->sp, inject_done, r);
            return;
        }
    }
    if (r->release && r->ok) {
        log_info("%s: released from the quarantine as %s", r->id, r->new_id);
        metrics_quarantine_release(r->d->metrics);
    } else if (!r->release) {
        log_info("quarantine delete: %s", r->msg);
    }
    r->done(r->arg, r->ok, r->msg);
    struct daemon *d = r->d;
    qreq_free(r);
    services_idle(&d->svc);
}

static struct qreq *
qreq_new(struct daemon *d, char **args, int n, qadmin_done_fn done, void *arg)
{
    struct qreq *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->d = d;
    r->cfg = services_config_acquire(&d->svc);
    r->done = done;
    r->arg = arg;
    r->args = calloc((size_t)n + 1, sizeof(char *));
    if (r->args == NULL) {
        qreq_free(r);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if ((r->args[i] = strdup(args[i])) == NULL) {
            qreq_free(r);
            return NULL;
        }
        r->nargs++;
    }
    return r;
}

void
qadmin_release(struct daemon *d, const char *id, char **addrs, int n, qadmin_done_fn done,
               void *arg)
{
    struct qreq *r = qreq_new(d, addrs, n, done, arg);
    if (r == NULL) {
        done(arg, 0, "out of memory");
        return;
    }
    r->release = 1;
    snprintf(r->id, sizeof(r->id), "%s", id);
    if (wpool_call(d->side_pool, release_work, req_done, r) < 0) {
        qreq_free(r);
        done(arg, 0, "out of memory");
    }
}

void
qadmin_delete(struct daemon *d, char **ids, int n, qadmin_done_fn done, void *arg)
{
    struct qreq *r = qreq_new(d, ids, n, done, arg);
    if (r == NULL) {
        done(arg, 0, "out of memory");
        return;
    }
    if (wpool_call(d->side_pool, delete_work, req_done, r) < 0) {
        qreq_free(r);
        done(arg, 0, "out of memory");
    }
}
