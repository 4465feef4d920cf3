/*
 * queue_glue.c - what the daemon hands the deferred queue (queue/queue.h):
 * the table of struct queue_hooks.
 *
 * Public calls: queue_glue_open, queue_glue_close, queue_glue_config_ref,
 * queue_glue_config_unref.
 *
 * submit/down/remote_name go to the relay module (the SMTP client that
 * also makes first attempts); run goes to a workq of two threads owned
 * here (custody writes, post-delivery updates, admin verb batches);
 * config_ref/config_unref count holds on the daemon's configuration, so a
 * reload retires the old one and frees it only when no transaction and
 * no hold uses it any more; idle is daemon_check_exit; stopping is the
 * shutdown flag. The relay's recovery callback kicks the queue. One
 * instance per process.
 */
#include <stdio.h>
#include <stdlib.h>

#include "daemon.h"
#include "queue.h"
#include "queue_glue.h"
#include "relay.h"
#include "workq.h"

static struct workq *glue_wq;

static int
h_submit(void *ctx, struct relay_job *job)
{
    struct daemon *d = ctx;
    return relay_submit(d->relay, job);
}

static int
h_down(void *ctx)
{
    struct daemon *d = ctx;
    return relay_down(d->relay);
}

static const char *
h_remote_name(void *ctx)
{
    struct daemon *d = ctx;
    return relay_name(d->relay);
}

/* A queue job on the workq: the workq's done has no status (it drops queued work at the end). */
struct glue_job {
    void (*work)(void *arg);
    void (*done)(void *arg, int cancelled);
    void *arg;
};

static void
glue_work(void *arg)
{
    struct glue_job *g = arg;
    g->work(g->arg);
}

static void
glue_done(void *arg)
{
    struct glue_job *g = arg;
    void (*done)(void *, int) = g->done;
    void *a = g->arg;
    free(g);
    done(a, 0);
}

static int
h_run(void *ctx, void (*work)(void *arg), void (*done)(void *arg, int cancelled), void *arg)
{
    (void)ctx;
    struct glue_job *g = malloc(sizeof(*g));
    if (g == NULL)
        return -1;
    g->work = work;
    g->done = done;
    g->arg = arg;
    if (workq_submit(glue_wq, glue_work, glue_done, g) < 0) {
        free(g);
        return -1;
    }
    return 0;
}

static const struct sr_config *
h_config(void *ctx)
{
    struct daemon *d = ctx;
    return d->cfg;
}

static const struct sr_config *
h_config_ref(void *ctx)
{
    return queue_glue_config_ref(ctx);
}

static void
h_config_unref(void *ctx, const struct sr_config *cfg)
{
    queue_glue_config_unref(ctx, cfg);
}

static void
h_idle(void *ctx)
{
    daemon_check_exit(ctx);
}

static int
h_stopping(void *ctx)
{
    struct daemon *d = ctx;
    return d->shutting_down;
}

static void
recovery_cb(void *arg)
{
    struct daemon *d = arg;
    if (d->queue)
        queue_kick(d->queue);
}

const struct sr_config *
queue_glue_config_ref(struct daemon *d)
{
    d->cfg_holds++;
    return d->cfg;
}

void
queue_glue_config_unref(struct daemon *d, const struct sr_config *cfg)
{
    if (cfg == NULL)
        return;
    d->cfg_holds--;
    daemon_release_configs(d);
}

int
queue_glue_open(struct daemon *d, char *err, size_t errlen)
{
    struct queue_hooks h = {
        .ctx = d,
        .submit = h_submit,
        .down = h_down,
        .remote_name = h_remote_name,
        .run = h_run,
        .config = h_config,
        .config_ref = h_config_ref,
        .config_unref = h_config_unref,
        .idle = h_idle,
        .stopping = h_stopping,
    };
    glue_wq = workq_new(d->base, 2);
    if (glue_wq == NULL) {
        snprintf(err, errlen, "queue: cannot start the worker threads");
        return -1;
    }
    d->queue = queue_new(d->base, &h, err, errlen);
    if (d->queue == NULL) {
        workq_free(glue_wq);
        glue_wq = NULL;
        return -1;
    }
    relay_set_recovery_cb(d->relay, recovery_cb, d);
    return 0;
}

void
queue_glue_close(struct daemon *d)
{
    workq_free(glue_wq); /* queued jobs are dropped with their holds */
    glue_wq = NULL;
    queue_free(d->queue);
    d->queue = NULL;
    d->cfg_holds = 0;
}
