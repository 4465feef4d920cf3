/*
 * qadmin.c - the daemon's side of `scanrelay quarantine release|delete`.
 *
 * Both read or change the quarantine store, which blocks (gzip, SQLite,
 * fsync), so the work runs in the daemon's side-work pool (sr-work) and
 * the answer comes back on the loop. Each request holds a reference to
 * the configuration it started with (a reload may replace the current
 * one). A release builds a new queue file
 * (queue_file_create: crash-safe) holding the stored message behind an
 * X-Quarantine-Released header, with the original envelope or the
 * recipients given, marks the store entry released and hands the queue
 * file to the scheduler: delivery goes through the deferred queue, so a
 * release while the downstream is down waits there like any message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "log.h"
#include "qadmin.h"
#include "qid.h"
#include "qstore.h"
#include "queue_file.h"
#include "queue_mgr.h"
#include "spool.h"
#include "wpool.h"

struct qreq {
    struct daemon *d;
    int release;
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
    char date[64], prefix[160];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
    int plen = snprintf(prefix, sizeof(prefix), "X-Quarantine-Released: %s by scanrelay\r\n", date);
    env->arrival = now;
    if (queue_file_create(r->cfg->queue_directory, r->new_id, env, prefix, (size_t)plen, sp,
                          r->cfg->queue.min_free_space) < 0) {
        snprintf(r->msg, sizeof(r->msg), "%s: cannot queue the released copy: %s", r->id,
                 strerror(errno));
        goto out;
    }
    qstore_set_state(d->qstore, r->id, QSTATE_RELEASED, 0);
    r->ok = 1;
    snprintf(r->msg, sizeof(r->msg), "%s: released as %s to %zu recipient%s", r->id, r->new_id,
             env->nrcpt, env->nrcpt == 1 ? "" : "s");
out:
    if (m)
        qmsg_close(m);
    spool_free(sp);
    envelope_free(env);
}

static void
delete_work(void *arg)
{
    struct qreq *r = arg;
    int done = 0, missing = 0;
    for (int i = 0; i < r->nargs; i++) {
        int rc = qstore_delete(r->d->qstore, r->args[i], 0);
        if (rc > 0)
            done++;
        else
            missing++;
    }
    r->ok = done > 0 || r->nargs == 0;
    snprintf(r->msg, sizeof(r->msg), "%d message%s deleted%s", done, done == 1 ? "" : "s",
             missing ? " (some IDs were not in the quarantine)" : "");
}

static void
req_done(void *arg, int status)
{
    struct qreq *r = arg;
    if (status == WPOOL_CANCELLED) {
        r->ok = 0;
        snprintf(r->msg, sizeof(r->msg), "shutting down");
    }
    if (r->release && r->ok) {
        log_info("%s: released from the quarantine as %s", r->id, r->new_id);
        if (r->d->queue)
            queue_mgr_adopt(r->d->queue, r->new_id);
    } else if (!r->release) {
        log_info("quarantine delete: %s", r->msg);
    }
    r->done(r->arg, r->ok, r->msg);
    qreq_free(r);
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
    qid_next(r->new_id);
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
