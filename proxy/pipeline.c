/*
 * pipeline.c - what happens to a message once its final dot arrived:
 * verdict -> action -> delivery attempt -> answer to the upstream.
 *
 * Public calls: msg_tx_new, pipeline_start, pipeline_now.
 *
 * The first delivery attempt uses the same relay module as every retry
 * from the deferred queue. The answer follows the SPEC.md rule: 250 only
 * when the downstream accepted the message or it is safely in our queue.
 *   all recipients accepted            -> 250 2.0.0 Ok: queued as QID
 *   some accepted, the others 5xx      -> 250; the refused ones are logged
 *                                          as bounced (a DSN follows when
 *                                          the queue module is present)
 *   all 5xx                            -> the downstream's 5xx, as it came
 *   any 4xx / no connection / timeout  -> custody in the deferred queue and
 *                                          250 when a queue is configured,
 *                                          451 4.4.x otherwise
 * One log line per message (and per distinct outcome) in the Postfix style.
 *
 * Ownership: a msg_tx owns its envelope, body spool and prefix and frees
 * itself after calling done (which the session may have cleared).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "log.h"
#include "pipeline.h"
#include "queue_mgr.h"
#include "spool.h"

double
pipeline_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct msg_tx *
msg_tx_new(struct daemon *d, const char *qid, struct envelope *env, struct spool *body,
           int64_t size, const char *client, double t_begin)
{
    struct msg_tx *tx = calloc(1, sizeof(*tx));
    if (tx == NULL)
        return NULL;
    tx->res = calloc(env->nrcpt ? env->nrcpt : 1, sizeof(*tx->res));
    if (tx->res == NULL) {
        free(tx);
        return NULL;
    }
    tx->d = d;
    snprintf(tx->qid, sizeof(tx->qid), "%s", qid);
    tx->env = env;
    tx->body = body;
    tx->size = size;
    snprintf(tx->client, sizeof(tx->client), "%s", client);
    tx->t_begin = t_begin;
    tx->t_received = pipeline_now();
    d->ntx++;
    return tx;
}

static void
msg_tx_free(struct msg_tx *tx)
{
    struct daemon *d = tx->d;
    envelope_free(tx->env);
    spool_free(tx->body);
    free(tx->prefix);
    free(tx->res);
    free(tx);
    d->ntx--;
    daemon_check_exit(d);
}

/* Answer the upstream (if still there) and end the transaction. */
static void
tx_finish(struct msg_tx *tx, const char *reply)
{
    if (tx->done)
        tx->done(tx, reply, tx->arg);
    msg_tx_free(tx);
}

static ssize_t
body_pread(void *ctx, void *buf, size_t len, off_t off)
{
    return spool_pread(ctx, buf, len, off);
}

/* First result of a class, for dsn= and status text. */
static const struct relay_rcpt_result *
first_of(const struct msg_tx *tx, int cls)
{
    for (size_t i = 0; i < tx->env->nrcpt; i++)
        if ((int)tx->res[i].cls == cls)
            return &tx->res[i];
    return NULL;
}

/*
 * Postfix-style log lines for the recipients of one class: one line per
 * recipient (as Postfix does), so `grep 'to=<x>'` finds every outcome;
 * a single-recipient message gets exactly one line.
 */
static void
pipeline_log(const struct msg_tx *tx, int cls, const char *action, const char *status,
             const char *text)
{
    double now = pipeline_now();
    double a = tx->t_received - tx->t_begin;
    for (size_t i = 0; i < tx->env->nrcpt; i++) {
        const struct relay_rcpt_result *r = &tx->res[i];
        if ((int)r->cls != cls)
            continue;
        log_info("%s: from=<%s>, to=<%s>, size=%lld, client=%s, result=%s, action=%s, "
                 "relay=%s, delay=%.2f, delays=%.2f/%.2f/%.2f/%.2f, dsn=%s, status=%s (%s)",
                 tx->qid, tx->env->sender ? tx->env->sender : "", tx->env->rcpt[i].addr,
                 (long long)tx->size, tx->client,
                 tx->d->cfg->scan.enabled ? "clean" : "unscanned", action,
                 tx->job.relay_name[0] ? tx->job.relay_name : "none", now - tx->t_begin, a,
                 tx->job.t_wait, tx->job.t_conn, tx->job.t_xfer, r->dsn[0] ? r->dsn : "4.0.0",
                 status, text ? text : r->text);
    }
}

/* Entered the queue (or failed to): answer. */
static void
custody_done(void *arg, int rc, int err)
{
    struct msg_tx *tx = arg;
    char reply[256];

    if (rc == 0) {
        pipeline_log(tx, RELAY_TEMP, "deferred", "deferred", NULL);
        tx->d->stat_deferred++;
        snprintf(reply, sizeof(reply), "250 2.0.0 Ok: queued as %s (deferred: downstream "
                 "unavailable, held in the scanrelay queue)", tx->qid);
    } else {
        const struct relay_rcpt_result *r = first_of(tx, RELAY_TEMP);
        log_warnx("%s: cannot enter the deferred queue: %s; upstream keeps the message",
                  tx->qid, strerror(err));
        pipeline_log(tx, RELAY_TEMP, "rejected", "deferred", r ? r->text : "");
        if (err == ENOSPC || err == EDQUOT)
            snprintf(reply, sizeof(reply), "452 4.3.1 Insufficient system storage");
        else
            snprintf(reply, sizeof(reply), "451 4.3.0 Error: queue file write error");
    }
    tx_finish(tx, reply);
}

/* The first delivery attempt is over: decide the answer. */
static void
relay_done(struct relay_job *job, void *arg)
{
    struct msg_tx *tx = arg;
    struct daemon *d = tx->d;
    int nok = 0, ntemp = 0, nperm = 0;
    (void)job;

    for (size_t i = 0; i < tx->env->nrcpt; i++) {
        switch (tx->res[i].cls) {
        case RELAY_OK:
            nok++;
            break;
        case RELAY_TEMP:
            ntemp++;
            break;
        case RELAY_PERM:
            nperm++;
            break;
        }
    }
    if (nok)
        pipeline_log(tx, RELAY_OK, "relayed", "sent", NULL);
    if (nperm && (nok || ntemp))
        pipeline_log(tx, RELAY_PERM, "bounced", "bounced", NULL);

    /* Temporary failures: custody. */
    if (ntemp) {
        if (d->queue) {
            for (size_t i = 0; i < tx->env->nrcpt; i++) {
                struct env_rcpt *r = &tx->env->rcpt[i];
                r->state = tx->res[i].cls == RELAY_OK     ? RCPT_DONE
                           : tx->res[i].cls == RELAY_PERM ? RCPT_BOUNCED
                                                          : RCPT_DEFERRED;
                envelope_set_reason(r, tx->res[i].text);
            }
            queue_mgr_enter(d->queue, tx->qid, tx->env, tx->prefix, tx->prefixlen, tx->body,
                            custody_done, tx);
            return;
        }
        const struct relay_rcpt_result *r = first_of(tx, RELAY_TEMP);
        char reply[700];
        pipeline_log(tx, RELAY_TEMP, "rejected", "deferred", NULL);
        d->stat_deferred++;
        snprintf(reply, sizeof(reply), "451 %s Downstream unavailable: %.500s",
                 r->code ? "4.4.0" : "4.4.1", r->text);
        tx_finish(tx, reply);
        return;
    }
    if (nok) {
        char reply[700];
        const struct relay_rcpt_result *r = first_of(tx, RELAY_OK);
        d->stat_relayed++;
        if (nperm)
            d->stat_bounced++;
        if (nperm && d->queue)
            queue_mgr_bounce_now(d->queue, tx->qid, tx->env, tx->res, tx->body);
        snprintf(reply, sizeof(reply), "250 2.0.0 Ok: queued as %s (relayed: %.500s)", tx->qid,
                 r->text);
        tx_finish(tx, reply);
        return;
    }
    /* Every recipient refused permanently: pass the downstream's reply back. */
    pipeline_log(tx, RELAY_PERM, "rejected", "bounced", NULL);
    d->stat_rejected++;
    tx_finish(tx, tx->job.perm_reply[0] ? tx->job.perm_reply
                                        : "554 5.0.0 Error: rejected by the downstream server");
}

static void
start_delivery(struct msg_tx *tx)
{
    struct relay_job *j = &tx->job;
    j->qid = tx->qid;
    j->env = tx->env;
    j->prefix = tx->prefix;
    j->prefixlen = tx->prefixlen;
    j->body.pread = body_pread;
    j->body.ctx = tx->body;
    j->body.size = spool_size(tx->body);
    j->done = relay_done;
    j->arg = tx;
    j->res = tx->res;
    relay_submit(tx->d->relay, j);
}

void
pipeline_start(struct msg_tx *tx)
{
    tx->d->stat_received++;
    /* The scan stage (verdict and action) slots in here; without it the
     * message goes straight to delivery. */
    start_delivery(tx);
}
