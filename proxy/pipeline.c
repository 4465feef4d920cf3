/*
 * pipeline.c - what happens to a message once its final dot arrived:
 * verdict -> action -> delivery attempt -> answer to the upstream.
 *
 * Public calls: msg_tx_new, pipeline_start.
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
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "counter.h"
#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "msglog.h"
#include "notice.h"
#include "pipeline.h"
#include "qstore.h"
#include "queue.h"
#include "rewrite.h"
#include "scan.h"
#include "spool.h"
#include "wpool.h"

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
    tx->t_received = clock_mono();
    tx->cfg = services_config_acquire(&d->svc);
    tx->result = "unscanned";
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
    free(tx->rcptv);
    if (tx->scanned)
        scan_result_free(&tx->sjob.result);
    services_config_release(tx->cfg);
    free(tx);
    d->ntx--;
    services_idle(&d->svc);
}

/* Seconds the message spent waiting for and in the scanner. */
static double
scan_wait(const struct msg_tx *tx)
{
    return tx->scanned ? tx->sjob.wait_time + tx->sjob.run_time : 0.0;
}

/* The downstream's queue ID from "250 2.0.0 Ok: queued as 4F1A..." */
static void
downstream_id(const char *text, char *out, size_t len)
{
    const char *q = text ? strstr(text, "queued as ") : NULL;
    out[0] = '\0';
    if (q == NULL)
        return;
    q += 10;
    size_t n = strcspn(q, " ,;)");
    snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), q);
}

/* One row in the message log (the writer thread does the SQLite work). */
static void
log_row(const struct msg_tx *tx, const char *reply)
{
    struct daemon *d = tx->d;
    if (d->msglog == NULL)
        return;
    const char *rcpts[tx->env->nrcpt ? tx->env->nrcpt : 1];
    for (size_t i = 0; i < tx->env->nrcpt; i++)
        rcpts[i] = tx->env->rcpt[i].addr;
    const struct scan_result *sr = tx->scanned ? &tx->sjob.result : NULL;
    const struct relay_rcpt_result *ok = NULL;
    for (size_t i = 0; i < tx->env->nrcpt && tx->res; i++)
        if (tx->res[i].cls == RELAY_OK && tx->res[i].code) {
            ok = &tx->res[i];
            break;
        }
    char delays[96], dsn[16] = "", did[64];
    snprintf(delays, sizeof(delays), "%.2f/%.2f/%.2f/%.2f", tx->t_received - tx->t_begin,
             scan_wait(tx) + tx->job.t_wait, tx->job.t_conn, tx->job.t_xfer);
    if (strlen(reply) > 8 && reply[3] == ' ' && reply[5] == '.')
        snprintf(dsn, sizeof(dsn), "%.*s", (int)strcspn(reply + 4, " "), reply + 4);
    downstream_id(ok ? ok->text : NULL, did, sizeof(did));
    struct msglog_row row = {
        .time = (int64_t)tx->env->arrival,
        .client = tx->client,
        .sender = tx->env->sender ? tx->env->sender : "",
        .rcpts = rcpts,
        .nrcpt = tx->env->nrcpt,
        .message_id = sr ? sr->message_id : NULL,
        .subject = sr ? sr->subject : NULL,
        .size = tx->size,
        .verdict = tx->result,
        .action = tx->outcome ? tx->outcome : "relayed",
        .virus = sr ? sr->virus : NULL,
        .rule = sr ? sr->rule : NULL,
        .score = sr && sr->has_score ? sr->score : 0,
        .delay = clock_mono() - tx->t_begin,
        .delays = delays,
        .relay = tx->job.relay_name[0] ? tx->job.relay_name : NULL,
        .dsn = dsn,
        .status = reply,
        .downstream_id = did[0] ? did : NULL,
    };
    snprintf(row.id, sizeof(row.id), "%s", tx->qid);
    msglog_append(d->msglog, &row);
}

/* Answer the upstream (if still there) and end the transaction. */
static void
tx_finish(struct msg_tx *tx, const char *reply)
{
    const char *action = tx->outcome ? tx->outcome : tx->action ? tx->action : "relayed";
    metrics_message(tx->d->metrics, tx->result ? tx->result : "unscanned", action, tx->size,
                    tx->outcome ? 0 : tx->size, clock_mono() - tx->t_begin,
                    tx->scanned ? tx->sjob.run_time : -1);
    if (tx->scanned && tx->sjob.result.rule)
        metrics_rule_hit(tx->d->metrics, tx->sjob.result.rule);
    log_row(tx, reply);
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

/* ", virus=NAME, rule=RULE, score=S, part=LOCATION" when the verdict found something. */
struct details {
    char s[600];
};

static struct details
verdict_details(const struct msg_tx *tx)
{
    struct details d = {""};
    if (!tx->scanned)
        return d;
    const struct scan_result *r = &tx->sjob.result;
    size_t o = 0;
    if (r->virus)
        o += (size_t)snprintf(d.s + o, sizeof(d.s) - o, ", virus=%.200s", r->virus);
    if (r->rule && o < sizeof(d.s))
        o += (size_t)snprintf(d.s + o, sizeof(d.s) - o, ", rule=%.60s", r->rule);
    if (r->has_score && o < sizeof(d.s))
        o += (size_t)snprintf(d.s + o, sizeof(d.s) - o, ", score=%.2f", r->score);
    if (r->location && o < sizeof(d.s))
        snprintf(d.s + o, sizeof(d.s) - o, ", part=%.300s", r->location);
    return d;
}

/* One line per recipient for an outcome decided by the verdict (no delivery). */
static void
log_verdict(struct msg_tx *tx, const char *action, const char *dsn, const char *status,
            const char *text)
{
    double now = clock_mono();
    tx->outcome = action;
    for (size_t i = 0; i < tx->env->nrcpt; i++)
        log_info("%s: from=<%s>, to=<%s>, size=%lld, client=%s, result=%s%s, action=%s, "
                 "relay=none, delay=%.2f, delays=%.2f/%.2f/0/0, dsn=%s, status=%s (%s)",
                 tx->qid, tx->env->sender ? tx->env->sender : "", tx->env->rcpt[i].addr,
                 (long long)tx->size, tx->client, tx->result, verdict_details(tx).s, action,
                 now - tx->t_begin, tx->t_received - tx->t_begin,
                 scan_wait(tx), dsn, status, text);
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
    double now = clock_mono();
    double a = tx->t_received - tx->t_begin;
    for (size_t i = 0; i < tx->env->nrcpt; i++) {
        const struct relay_rcpt_result *r = &tx->res[i];
        if ((int)r->cls != cls)
            continue;
        log_info("%s: from=<%s>, to=<%s>, size=%lld, client=%s, result=%s%s, action=%s, "
                 "relay=%s, delay=%.2f, delays=%.2f/%.2f/%.2f/%.2f, dsn=%s, status=%s (%s)",
                 tx->qid, tx->env->sender ? tx->env->sender : "", tx->env->rcpt[i].addr,
                 (long long)tx->size, tx->client, tx->result, verdict_details(tx).s,
                 tx->action ? tx->action : action,
                 tx->job.relay_name[0] ? tx->job.relay_name : "none", now - tx->t_begin, a,
                 scan_wait(tx) + tx->job.t_wait, tx->job.t_conn, tx->job.t_xfer,
                 r->dsn[0] ? r->dsn : "4.0.0", status, text ? text : r->text);
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
        counter_inc(tx->d->cnt.deferred);
        tx->outcome = "deferred";
        snprintf(reply, sizeof(reply), "250 2.0.0 Ok: queued as %s (deferred: downstream "
                 "unavailable, held in the scanrelay queue)", tx->qid);
    } else {
        const struct relay_rcpt_result *r = first_of(tx, RELAY_TEMP);
        log_warnx("%s: cannot enter the deferred queue: %s; upstream keeps the message",
                  tx->qid, strerror(err));
        pipeline_log(tx, RELAY_TEMP, "rejected", "deferred", r ? r->text : "");
        tx->outcome = "rejected";
        if (err == ENOSPC || err == EDQUOT)
            snprintf(reply, sizeof(reply), "452 4.3.1 Insufficient system storage");
        else
            snprintf(reply, sizeof(reply), "451 4.3.0 Error: queue file write error");
    }
    tx_finish(tx, reply);
}

/* Partial delivery: the DSN for the refused recipients is queued (or not). */
static void
bounce_done(void *arg, int rc, int err)
{
    struct msg_tx *tx = arg;
    char reply[700];
    if (rc < 0) {
        /* The upstream keeps the message: at worst a duplicate for the others. */
        tx->outcome = "rejected";
        snprintf(reply, sizeof(reply), "%s",
                 err == ENOSPC || err == EDQUOT
                     ? "452 4.3.1 Insufficient system storage"
                     : "451 4.3.0 Error: cannot queue the delivery status notification");
    } else {
        const struct relay_rcpt_result *r = first_of(tx, RELAY_OK);
        snprintf(reply, sizeof(reply), "250 2.0.0 Ok: queued as %s (relayed: %.500s)", tx->qid,
                 r ? r->text : "");
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
    metrics_relay(d->metrics, 0, nok, ntemp, nperm);
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
            queue_enter(d->queue, tx->qid, tx->env, tx->prefix, tx->prefixlen, tx->body,
                            custody_done, tx);
            return;
        }
        const struct relay_rcpt_result *r = first_of(tx, RELAY_TEMP);
        char reply[700];
        pipeline_log(tx, RELAY_TEMP, "rejected", "deferred", NULL);
        counter_inc(d->cnt.deferred);
        tx->outcome = "rejected";
        snprintf(reply, sizeof(reply), "451 %s Downstream unavailable: %.500s",
                 r->code ? "4.4.0" : "4.4.1", r->text);
        tx_finish(tx, reply);
        return;
    }
    if (nok) {
        char reply[700];
        const struct relay_rcpt_result *r = first_of(tx, RELAY_OK);
        counter_inc(d->cnt.relayed);
        if (nperm)
            counter_inc(d->cnt.bounced);
        if (nperm && d->queue) {
            /* The DSN for the refused ones must be on disk before the 250. */
            queue_bounce_now(d->queue, tx->qid, tx->env, tx->res, tx->body, bounce_done, tx);
            return;
        }
        snprintf(reply, sizeof(reply), "250 2.0.0 Ok: queued as %s (relayed: %.500s)", tx->qid,
                 r->text);
        tx_finish(tx, reply);
        return;
    }
    /* Every recipient refused permanently: pass the downstream's reply back. */
    pipeline_log(tx, RELAY_PERM, "rejected", "bounced", NULL);
    tx->outcome = "bounced";
    counter_inc(d->cnt.rejected);
    tx_finish(tx, tx->job.perm_reply[0] ? tx->job.perm_reply
                                        : "554 5.0.0 Error: rejected by the downstream server");
}

static void
start_delivery(struct msg_tx *tx)
{
    struct relay_job *j = &tx->job;
    j->qid = tx->qid;
    j->retry = 0;
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

/*
 * The scan stage: verdict and action.
 */

/* Header lines of the verdict (X-Virus-Scanned, X-Virus-Status) as one CRLF block. */
static int
set_prefix(struct msg_tx *tx)
{
    const struct scan_result *r = &tx->sjob.result;
    size_t n = 0;
    for (size_t i = 0; i < r->nheaders; i++)
        n += strlen(r->headers[i]) + 2;
    free(tx->prefix);
    tx->prefix = NULL;
    tx->prefixlen = 0;
    if (n == 0)
        return 0;
    char *p = malloc(n + 1);
    if (p == NULL)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        size_t l = strlen(r->headers[i]);
        memcpy(p + o, r->headers[i], l);
        memcpy(p + o + l, "\r\n", 2);
        o += l + 2;
    }
    p[o] = '\0';
    tx->prefix = p;
    tx->prefixlen = o;
    return 0;
}

/* The verdict's notice kind (notice.h). */
static unsigned
notice_kind(enum scan_kind k)
{
    switch (k) {
    case SCAN_VIRUS:
        return NOTICE_VIRUS;
    case SCAN_SPAM:
        return NOTICE_SPAM;
    case SCAN_LIMIT:
        return NOTICE_LIMIT;
    case SCAN_ENCRYPTED:
        return NOTICE_ENCRYPTED;
    case SCAN_ERROR:
        return NOTICE_ERROR;
    default:
        return NOTICE_POLICY;
    }
}

/*
 * Notices about the verdict (notify {} and the rule's own notify), once
 * its action is decided; before a strip replaces the body (the original
 * may be attached).
 */
static void
notify_verdict(struct msg_tx *tx, const char *action, int quarantined)
{
    const struct scan_result *r = &tx->sjob.result;
    if (tx->d->notifier == NULL || !tx->scanned || r->kind == SCAN_CLEAN)
        return;
    const char *rcpts[tx->env->nrcpt ? tx->env->nrcpt : 1];
    for (size_t i = 0; i < tx->env->nrcpt; i++)
        rcpts[i] = tx->env->rcpt[i].addr;
    const struct scan_finding *f =
        r->deciding >= 0 && (size_t)r->deciding < r->nfindings ? &r->findings[r->deciding] : NULL;
    struct notice_event ev = {
        .qid = tx->qid,
        .sender = tx->env->sender ? tx->env->sender : "",
        .rcpts = rcpts,
        .nrcpts = tx->env->nrcpt,
        .subject = r->subject,
        .kind = notice_kind(r->kind),
        .quarantined = quarantined,
        .quarantine_id = quarantined ? tx->qid : NULL,
        .virus = r->virus,
        .rule = r->rule,
        .name = f ? f->name : NULL,
        .location = r->location,
        .action = action,
        .has_score = r->has_score,
        .score = r->score,
        .rule_notify = r->notify,
        .origin = &tx->origin,
        .pread = body_pread,
        .ctx = tx->body,
        .size = spool_size(tx->body),
    };
    notice_verdict(tx->d->notifier, &ev);
}

/* Side jobs (the side pool, sr-work; never behind scans): strip rewrite and quarantine copy. */
struct side_job {
    struct wpool_job job;
    struct msg_tx *tx;
    struct spool *out;
    int rc, err;
    char path[4096];
};

static void
strip_work(struct wpool_job *job)
{
    struct side_job *sj = job->arg;
    struct msg_tx *tx = sj->tx;
    const struct scan_result *r = &tx->sjob.result;
    const char *const *lines = (const char *const *)r->headers;
    struct rewrite_strip_part parts[r->nstrips ? r->nstrips : 1];

    log_set_id(tx->qid);

    for (size_t i = 0; i < r->nstrips; i++) {
        parts[i].raw_begin = r->strips[i].raw_begin;
        parts[i].raw_end = r->strips[i].raw_end;
        parts[i].filename = r->strips[i].filename;
        parts[i].reason = r->strips[i].reason;
    }
    sj->out = spool_new((size_t)tx->cfg->body_memory_limit, tx->cfg->state_directory);
    if (sj->out == NULL) {
        sj->rc = -1;
        sj->err = ENOMEM;
    } else {
        struct rewrite_io in = rewrite_io_spool(tx->body), out = rewrite_io_spool(sj->out);
        sj->rc = rewrite_message(&in, lines, r->nheaders, parts, r->nstrips, &out);
        sj->err = sj->rc < 0 ? errno : 0;
    }
    log_set_id(NULL);
}

/* Reason of the quarantine, for the index. */
static enum qreason
quarantine_reason(const struct scan_result *r)
{
    switch (r->kind) {
    case SCAN_VIRUS:
        return QREASON_VIRUS;
    case SCAN_ENCRYPTED:
        return QREASON_ENCRYPTED;
    case SCAN_LIMIT:
        return QREASON_LIMIT;
    case SCAN_SPAM:
        return QREASON_SPAM;
    default:
        return QREASON_POLICY;
    }
}

/* The quarantine store (side pool thread): the message as received, gzip'd, indexed. */
static void
quarantine_work(struct wpool_job *job)
{
    struct side_job *sj = job->arg;
    struct msg_tx *tx = sj->tx;
    const struct scan_result *r = &tx->sjob.result;
    const char *rcpts[tx->env->nrcpt ? tx->env->nrcpt : 1];

    log_set_id(tx->qid);

    for (size_t i = 0; i < tx->env->nrcpt; i++)
        rcpts[i] = tx->env->rcpt[i].addr;
    struct qmeta m = {
        .time = (int64_t)tx->env->arrival,
        .client = tx->client,
        .sender = tx->env->sender ? tx->env->sender : "",
        .rcpts = rcpts,
        .nrcpt = tx->env->nrcpt,
        .hdr_from = r->hdr_from,
        .subject = r->subject,
        .message_id = r->message_id,
        .size = tx->size,
        .reason = quarantine_reason(r),
        .rule = r->rule,
        .score = r->has_score ? r->score : 0,
        .virus = r->virus,
        .state = QSTATE_HELD,
    };
    snprintf(m.id, sizeof(m.id), "%s", tx->qid);
    struct qsource src = {.kind = QSRC_SPOOL, .spool = tx->body};
    sj->rc = qstore_put(tx->d->qstore, &m, &src, NULL);
    sj->err = sj->rc < 0 ? errno : 0;
    log_set_id(NULL);
}

static void
side_done(struct wpool_job *job)
{
    struct side_job *sj = job->arg;
    struct msg_tx *tx = sj->tx;
    const struct scan_result *r = &tx->sjob.result;
    char reply[700];
    (void)job;

    if (job->work == strip_work) {
        if (job->status != WPOOL_DONE || sj->rc < 0) {
            log_warnx("%s: cannot strip the message: %s", tx->qid,
                      sj->err ? strerror(sj->err) : "cancelled");
            spool_free(sj->out);
            log_verdict(tx, "rejected", "4.3.0", "deferred", "strip failed");
            tx_finish(tx, "451 4.3.0 Error: cannot rewrite the message, try again later");
        } else {
            spool_free(tx->body);
            tx->body = sj->out;
            free(tx->prefix); /* the rewrite put the headers in */
            tx->prefix = NULL;
            tx->prefixlen = 0;
            tx->action = "stripped";
            start_delivery(tx);
        }
    } else {
        if (job->status != WPOOL_DONE || sj->rc < 0) {
            log_warnx("%s: cannot quarantine the message: %s", tx->qid,
                      sj->err ? strerror(sj->err) : "cancelled");
            log_verdict(tx, "rejected", "4.3.0", "deferred", "quarantine failed");
            tx_finish(tx, sj->err == ENOSPC ? "452 4.3.1 Insufficient system storage"
                                            : "451 4.3.0 Error: cannot quarantine, try again later");
        } else {
            log_verdict(tx, "quarantined", "2.7.0", "quarantined", r->reason ? r->reason : "");
            notify_verdict(tx, "quarantined", 1);
            counter_inc(tx->d->cnt.quarantined);
            snprintf(reply, sizeof(reply), "250 2.7.0 Ok: quarantined as %s (%.500s)", tx->qid,
                     r->reason ? r->reason : "policy");
            tx_finish(tx, reply);
        }
    }
    free(sj);
}

static void
side_start(struct msg_tx *tx, void (*work)(struct wpool_job *))
{
    struct side_job *sj = calloc(1, sizeof(*sj));
    if (sj == NULL) {
        log_verdict(tx, "rejected", "4.3.0", "deferred", "out of memory");
        tx_finish(tx, "451 4.3.0 Error: out of memory, try again later");
        return;
    }
    sj->tx = tx;
    sj->job.work = work;
    sj->job.done = side_done;
    sj->job.arg = sj;
    if (wpool_submit(tx->d->side_pool, &sj->job) < 0) {
        free(sj);
        log_verdict(tx, "rejected", "4.3.2", "deferred", "scanner busy");
        tx_finish(tx, "421 4.3.2 Error: scanner overloaded, try again later");
    }
}

static void
scan_done(struct scan_job *job, void *arg)
{
    struct msg_tx *tx = arg;
    struct scan_result *r = &job->result;
    char reply[700];

    if (job->status == SCAN_JOB_CANCELLED) {
        log_verdict(tx, "rejected", "4.3.0", "deferred", "scanner shut down");
        tx_finish(tx, "451 4.3.0 Error: shutting down, try again later");
        return;
    }
    tx->scanned = 1;
    tx->result = r->result ? r->result : scan_result_word(r->kind);
    if (set_prefix(tx) < 0) {
        log_verdict(tx, "rejected", "4.3.0", "deferred", "out of memory");
        tx_finish(tx, "451 4.3.0 Error: out of memory, try again later");
        return;
    }
    const char *why = r->reason ? r->reason : tx->result;
    switch (r->action) {
    case SR_ACTION_DELIVER:
        start_delivery(tx);
        return;
    case SR_ACTION_TAG:
        tx->action = "tagged";
        notify_verdict(tx, "tagged", 0);
        start_delivery(tx);
        return;
    case SR_ACTION_STRIP:
        notify_verdict(tx, "stripped", 0);
        side_start(tx, strip_work);
        return;
    case SR_ACTION_QUARANTINE:
        side_start(tx, quarantine_work);
        return;
    case SR_ACTION_DISCARD:
        log_verdict(tx, "discarded", "2.7.0", "discarded", why);
        notify_verdict(tx, "discarded", 0);
        counter_inc(tx->d->cnt.discarded);
        snprintf(reply, sizeof(reply), "250 2.7.0 Ok: discarded as %s (%.500s)", tx->qid, why);
        tx_finish(tx, reply);
        return;
    case SR_ACTION_REJECT:
        log_verdict(tx, "rejected", "5.7.1", "rejected", why);
        notify_verdict(tx, "rejected", 0);
        counter_inc(tx->d->cnt.rejected);
        snprintf(reply, sizeof(reply), "554 5.7.1 Rejected: %.500s", why);
        tx_finish(tx, reply);
        return;
    case SR_ACTION_DEFER:
    default:
        log_verdict(tx, "rejected", "4.3.0", "deferred", why);
        notify_verdict(tx, "deferred", 0);
        snprintf(reply, sizeof(reply), "451 4.3.0 Error: message could not be scanned (%.400s), "
                 "try again later", why);
        tx_finish(tx, reply);
        return;
    }
}

/*
 * What the header says for notices: bulk or list mail, a notice mark.
 * A marked message small enough to be a notice of ours is read whole and
 * its mark verified (HMAC). Reads the spool on the loop: its first 64 KB,
 * and a marked message up to notice_max_size (notices are small).
 */
static void
inspect_origin(struct msg_tx *tx)
{
    struct notifier *n = tx->d->notifier;
    off_t size = spool_size(tx->body);
    size_t len = size > 65536 ? 65536 : (size_t)size;
    if (n == NULL || tx->cfg->notify.from[0] == '\0')
        return; /* notices off: nothing to recognise */
    char *buf = malloc(len + 1);
    if (buf == NULL || spool_pread(tx->body, buf, len, 0) != (ssize_t)len) {
        free(buf);
        return;
    }
    notice_inspect(n, buf, len, len == (size_t)size, &tx->origin);
    if (tx->origin.marked && len < (size_t)size && (size_t)size <= notice_max_size(n)) {
        char *all = realloc(buf, (size_t)size);
        if (all) {
            buf = all;
            if (spool_pread(tx->body, buf, (size_t)size, 0) == (ssize_t)size)
                notice_inspect(n, buf, (size_t)size, 1, &tx->origin);
        }
    }
    free(buf);
}

void
pipeline_start(struct msg_tx *tx)
{
    struct daemon *d = tx->d;
    counter_inc(d->cnt.received);
    if (d->scan_pool == NULL || !tx->cfg->scan.enabled) {
        start_delivery(tx);
        return;
    }
    inspect_origin(tx);
    if (tx->origin.ours) {
        /* One of our notices came back (content_filter): relayed as it is,
         * not scanned, never the subject of another notice. */
        tx->result = "notice";
        start_delivery(tx);
        return;
    }
    struct scan_job *j = &tx->sjob;
    j->data = spool_memory(tx->body);
    j->fd = j->data ? -1 : spool_fd(tx->body);
    j->len = (size_t)spool_size(tx->body);
    j->nrcpts = (int)tx->env->nrcpt;
    j->cfg = tx->cfg;
    const struct policy *pol = policy_of(tx->cfg);
    if (policy_nrules(pol) > 0) {
        tx->rcptv = calloc(tx->env->nrcpt + 1, sizeof(char *));
        if (tx->rcptv == NULL) {
            log_verdict(tx, "rejected", "4.3.0", "deferred", "out of memory");
            tx_finish(tx, "451 4.3.0 Error: out of memory, try again later");
            return;
        }
        for (size_t i = 0; i < tx->env->nrcpt; i++)
            tx->rcptv[i] = tx->env->rcpt[i].addr;
        tx->prun = (struct policy_run){pol, tx->env->sender ? tx->env->sender : "",
                                       tx->rcptv, tx->env->nrcpt, 0};
        tx->pchk = (struct scan_checker){"policy", policy_check, &tx->prun};
        tx->sopts = (struct scan_opts){&tx->pchk, 1, NULL, 0};
        j->opts = &tx->sopts;
    }
    snprintf(j->log_id, sizeof(j->log_id), "%s", tx->qid);
    if (scan_pool_submit(d->scan_pool, j, scan_done, tx) < 0) {
        int busy = errno == EAGAIN;
        log_verdict(tx, "rejected", "4.3.2", "deferred",
                    busy ? "too many messages waiting for a scan" : "shutting down");
        tx_finish(tx, busy ? "421 4.3.2 Error: scanner overloaded, try again later"
                           : "451 4.3.0 Error: shutting down, try again later");
    }
}
