/*
 * queue_glue.c - what the daemon hands the deferred queue (queue/queue.h):
 * the table of struct queue_hooks.
 *
 * Public calls: queue_glue_open, queue_glue_close.
 *
 * submit/down/remote_name go to the relay module (the SMTP client that
 * also makes first attempts); run goes to a worker pool of two threads
 * ("sr-queue", lib/wpool) owned here: custody writes, post-delivery
 * updates, admin verb batches, so they never wait behind scans or
 * quarantine work; config/config_ref/config_unref and idle are the
 * daemon's services (lib/services); stopping is the shutdown flag. The
 * relay's recovery callback kicks the queue. One instance per process.
 */
#include <stdio.h>
#include <stdlib.h>

#include "daemon.h"
#include "metrics.h"
#include "queue.h"
#include "queue_glue.h"
#include "relay.h"
#include "services.h"
#include "wpool.h"

static struct wpool *glue_pool;

/* A queue delivery attempt, seen on its way back (metrics), then handed to the queue. */
struct watched_job {
    struct daemon *d;
    void (*done)(struct relay_job *job, void *arg);
    void *arg;
};

static void
watched_done(struct relay_job *job, void *arg)
{
    struct watched_job *w = arg;
    int n[3] = {0, 0, 0};
    for (size_t i = 0; job->res && i < job->env->nrcpt; i++) {
        enum rcpt_state st = job->env->rcpt[i].state;
        if ((st == RCPT_PENDING || st == RCPT_DEFERRED) && (int)job->res[i].cls >= 0 &&
            (int)job->res[i].cls < 3)
            n[job->res[i].cls]++;
    }
    metrics_relay(w->d->metrics, 1, n[RELAY_OK], n[RELAY_TEMP], n[RELAY_PERM]);
    job->done = w->done;
    job->arg = w->arg;
    free(w);
    job->done(job, job->arg);
}

static int
h_submit(void *ctx, struct relay_job *job)
{
    struct daemon *d = ctx;
    struct watched_job *w = malloc(sizeof(*w));
    if (w) {
        w->d = d;
        w->done = job->done;
        w->arg = job->arg;
        job->done = watched_done;
        job->arg = w;
    }
    int rc = relay_submit(d->relay, job);
    if (rc < 0 && w) {
        job->done = w->done;
        job->arg = w->arg;
        free(w);
    }
    return rc;
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

/* A queue job on the pool: the queue's done wants "cancelled", the pool gives a status. */
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
glue_done(void *arg, int status)
{
    struct glue_job *g = arg;
    void (*done)(void *, int) = g->done;
    void *a = g->arg;
    free(g);
    done(a, status == WPOOL_CANCELLED);
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
    if (wpool_call(glue_pool, glue_work, glue_done, g) < 0) {
        free(g);
        return -1;
    }
    return 0;
}

static const struct sr_config *
h_config(void *ctx)
{
    struct daemon *d = ctx;
    return services_config(&d->svc);
}

static struct sr_config *
h_config_ref(void *ctx)
{
    struct daemon *d = ctx;
    return services_config_acquire(&d->svc);
}

static void
h_config_unref(void *ctx, struct sr_config *cfg)
{
    (void)ctx;
    services_config_release(cfg);
}

static void
h_idle(void *ctx)
{
    struct daemon *d = ctx;
    services_idle(&d->svc);
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
    glue_pool = wpool_new(d->base, "sr-queue", 2, 0, err, errlen);
    if (glue_pool == NULL)
        return -1;
    d->queue = queue_new(d->base, &h, err, errlen);
    if (d->queue == NULL) {
        wpool_free(glue_pool);
        glue_pool = NULL;
        return -1;
    }
    relay_set_recovery_cb(d->relay, recovery_cb, d);
    return 0;
}

void
queue_glue_close(struct daemon *d)
{
    wpool_free(glue_pool); /* queued jobs: done(arg, cancelled) frees what they held */
    glue_pool = NULL;
    queue_free(d->queue);
    d->queue = NULL;
}
