/*
 * scan_pool.c - the scan threads ("sr-scan"): a thin layer over the
 * worker pool of lib/wpool.c that gives each job a reference to the
 * current engine for as long as it runs.
 *
 * Public calls: scan_pool_new, scan_pool_submit, scan_pool_queued,
 * scan_pool_running, scan_pool_threads, scan_pool_resize,
 * scan_pool_set_max_pending, scan_pool_free.
 *
 * A job takes a reference to the current engine (engine_holder_get) when
 * it starts, runs scan_message (or its own work function), and drops the
 * reference; its done callback runs on the loop thread through the pool's
 * one completion path. Bounded queue (max_pending: EAGAIN, the caller
 * answers 421/451) and the shutdown rule (running jobs finish, queued ones
 * complete with SCAN_JOB_CANCELLED) are the worker pool's.
 *
 * Owns the wpool instance; jobs, their data and configurations belong to
 * the caller. Failures: scan_pool_new returns NULL with a message; submit
 * returns -1 with errno; nothing here exits.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "log.h"
#include "scan_pool.h"
#include "wpool.h"

struct scan_pool {
    struct wpool *wp;
    struct engine_holder *holder;
    const struct sr_config *cfg;
};

/* Run one job in a pool thread. */
static void
run_job(struct wpool_job *wj)
{
    struct scan_job *job = wj->arg;
    struct scan_pool *p = job->pool_;
    const struct sr_config *cfg = job->cfg ? job->cfg : p->cfg;
    struct sr_engine *e = p->holder ? engine_holder_get(p->holder) : NULL;
    int rc;

    log_set_id(job->log_id); /* every log line of the job carries the queue ID */
    if (job->work) {
        job->work(job, e);
        job->status = SCAN_JOB_DONE;
    } else if (e == NULL) {
        job->status = SCAN_JOB_FAILED;
    } else {
        if (job->data)
            rc = scan_message_opts(e, cfg, job->data, job->len, job->nrcpts, job->opts,
                                   &job->result);
        else
            rc = scan_message_fd_opts(e, cfg, job->fd, job->nrcpts, job->opts, &job->result);
        job->status = rc == 0 ? SCAN_JOB_DONE : SCAN_JOB_FAILED;
    }
    engine_unref(e);
    log_set_id(NULL);
}

/* On the loop thread. */
static void
job_done(struct wpool_job *wj)
{
    struct scan_job *job = wj->arg;

    if (wj->status == WPOOL_CANCELLED)
        job->status = SCAN_JOB_CANCELLED;
    job->wait_time = wj->wait_time;
    job->run_time = wj->run_time;
    job->done_(job, job->done_arg_);
}

struct scan_pool *
scan_pool_new(struct event_base *base, struct engine_holder *holder, const struct sr_config *cfg,
              int nthreads, int max_pending, char *err, size_t errlen)
{
    struct scan_pool *p = calloc(1, sizeof(*p));

    if (p == NULL) {
        snprintf(err, errlen, "scan pool: out of memory");
        return NULL;
    }
    p->holder = holder;
    p->cfg = cfg;
    p->wp = wpool_new(base, "sr-scan", nthreads, max_pending > 0 ? (size_t)max_pending : 0, err,
                      errlen);
    if (p->wp == NULL) {
        free(p);
        return NULL;
    }
    return p;
}

int
scan_pool_submit(struct scan_pool *p, struct scan_job *job, scan_done_fn done, void *arg)
{
    memset(&job->result, 0, sizeof(job->result));
    memset(&job->wj_, 0, sizeof(job->wj_));
    job->status = SCAN_JOB_DONE;
    job->wait_time = job->run_time = 0;
    job->pool_ = p;
    job->done_ = done;
    job->done_arg_ = arg;
    job->wj_.work = run_job;
    job->wj_.done = job_done;
    job->wj_.arg = job;
    return wpool_submit(p->wp, &job->wj_);
}

size_t
scan_pool_queued(struct scan_pool *p)
{
    return wpool_queued(p->wp);
}

size_t
scan_pool_running(struct scan_pool *p)
{
    return wpool_running(p->wp);
}

int
scan_pool_threads(const struct scan_pool *p)
{
    return wpool_threads(p->wp);
}

int
scan_pool_resize(struct scan_pool *p, int nthreads)
{
    return wpool_resize(p->wp, nthreads);
}

void
scan_pool_set_max_pending(struct scan_pool *p, int max_pending)
{
    wpool_set_max_pending(p->wp, max_pending > 0 ? (size_t)max_pending : 0);
}

void
scan_pool_free(struct scan_pool *p)
{
    if (p == NULL)
        return;
    wpool_free(p->wp);
    free(p);
}
