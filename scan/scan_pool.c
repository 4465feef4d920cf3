/*
 * scan_pool.c - a fixed pool of scan threads with a bounded job queue;
 * finished jobs come back to the libevent loop.
 *
 * scan_pool_submit() (loop thread) appends a job to the queue under the
 * pool's mutex and signals a worker; it never blocks and refuses a job
 * (EAGAIN) when max_pending jobs already wait. A worker takes a reference
 * to the current engine (engine_holder_get), sets the job's log ID (every
 * log line of the thread then carries the queue ID), runs scan_message
 * (or the job's own work function), drops the reference and the ID, and appends the job to
 * the done list. When that list goes from empty to non-empty it writes
 * one byte to a pipe; the loop's read event on the pipe drains it, takes
 * the whole list and calls each job's done callback, in completion order,
 * on the loop thread. So the loop never waits for a scan, and needs no
 * evthread locking setup.
 *
 * The pool owns its threads, the pipe and its event; jobs belong to the
 * caller. scan_pool_free() waits for the running jobs, cancels the queued
 * ones (done with SCAN_JOB_CANCELLED) and joins the threads.
 * Failures: scan_pool_new returns NULL with a message; submit returns -1
 * with errno; nothing here exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "engine.h"
#include "log.h"
#include "scan_pool.h"

struct scan_pool {
    struct event_base *base;
    struct engine_holder *holder;
    const struct sr_config *cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t *threads;
    int nthreads;
    size_t max_pending;
    struct scan_job *qhead, *qtail; /* waiting */
    size_t nqueued;
    size_t nrunning;
    struct scan_job *dhead, *dtail; /* done, not yet delivered */
    int stopping;
    int wake[2];
    struct event *wake_ev;
};

static double
now_mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Run one job in a worker thread. */
static void
run_job(struct scan_pool *p, struct scan_job *job)
{
    const struct sr_config *cfg = job->cfg ? job->cfg : p->cfg;
    struct sr_engine *e = p->holder ? engine_holder_get(p->holder) : NULL;
    double t0 = now_mono();
    int rc;

    job->wait_time = t0 - job->t_submit_;
    log_set_id(job->log_id);
    if (job->work) {
        job->work(job, e);
        job->status = SCAN_JOB_DONE;
    } else if (e == NULL) {
        job->status = SCAN_JOB_FAILED;
    } else {
        if (job->data)
            rc = scan_message(e, cfg, job->data, job->len, job->nrcpts, &job->result);
        else
            rc = scan_message_fd(e, cfg, job->fd, job->nrcpts, &job->result);
        job->status = rc == 0 ? SCAN_JOB_DONE : SCAN_JOB_FAILED;
    }
    engine_unref(e);
    log_set_id(NULL);
    job->run_time = now_mono() - t0;
}

static void *
worker_main(void *arg)
{
    struct scan_pool *p = arg;

    pthread_setname_np(pthread_self(), "sr-scan"); /* top -H, ps -L */

    for (;;) {
        struct scan_job *job;
        int wake;

        pthread_mutex_lock(&p->mu);
        while (!p->stopping && p->qhead == NULL)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stopping) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        job = p->qhead;
        p->qhead = job->next_;
        if (p->qhead == NULL)
            p->qtail = NULL;
        p->nqueued--;
        p->nrunning++;
        pthread_mutex_unlock(&p->mu);

        run_job(p, job);

        /* Hand it to the loop; wake it only on the first of a batch. */
        pthread_mutex_lock(&p->mu);
        p->nrunning--;
        job->next_ = NULL;
        wake = p->dhead == NULL;
        if (p->dtail)
            p->dtail->next_ = job;
        else
            p->dhead = job;
        p->dtail = job;
        if (p->stopping)
            pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (wake) {
            ssize_t w;
            do
                w = write(p->wake[1], "", 1);
            while (w < 0 && errno == EINTR);
            /* EAGAIN: the pipe is full of wake-ups already. */
        }
    }
}

/* Deliver finished jobs on the loop thread. */
static void
deliver(struct scan_pool *p)
{
    struct scan_job *job, *next;

    pthread_mutex_lock(&p->mu);
    job = p->dhead;
    p->dhead = p->dtail = NULL;
    pthread_mutex_unlock(&p->mu);
    for (; job; job = next) {
        next = job->next_;
        job->next_ = NULL;
        job->done_(job, job->done_arg_);
    }
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
    char buf[256];
    (void)what;

    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    deliver(arg);
}

struct scan_pool *
scan_pool_new(struct event_base *base, struct engine_holder *holder, const struct sr_config *cfg,
              int nthreads, int max_pending, char *err, size_t errlen)
{
    struct scan_pool *p = calloc(1, sizeof(*p));
    int rc;

    if (p == NULL) {
        snprintf(err, errlen, "scan pool: out of memory");
        return NULL;
    }
    if (nthreads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = n > 0 ? (int)n : 1;
    }
    p->base = base;
    p->holder = holder;
    p->cfg = cfg;
    p->max_pending = max_pending > 0 ? (size_t)max_pending : 0;
    p->wake[0] = p->wake[1] = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pipe2(p->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(err, errlen, "scan pool: pipe: %s", strerror(errno));
        goto bad;
    }
    p->wake_ev = event_new(base, p->wake[0], EV_READ | EV_PERSIST, wake_cb, p);
    if (p->wake_ev == NULL || event_add(p->wake_ev, NULL) < 0) {
        snprintf(err, errlen, "scan pool: cannot add the wake-up event");
        goto bad;
    }
    p->threads = calloc((size_t)nthreads, sizeof(pthread_t));
    if (p->threads == NULL) {
        snprintf(err, errlen, "scan pool: out of memory");
        goto bad;
    }
    for (int i = 0; i < nthreads; i++) {
        if ((rc = pthread_create(&p->threads[i], NULL, worker_main, p)) != 0) {
            snprintf(err, errlen, "scan pool: cannot start thread %d: %s", i + 1, strerror(rc));
            goto bad;
        }
        p->nthreads++;
    }
    return p;

bad:
    scan_pool_free(p);
    return NULL;
}

int
scan_pool_submit(struct scan_pool *p, struct scan_job *job, scan_done_fn done, void *arg)
{
    pthread_mutex_lock(&p->mu);
    if (p->stopping) {
        pthread_mutex_unlock(&p->mu);
        errno = ESHUTDOWN;
        return -1;
    }
    if (p->max_pending && p->nqueued >= p->max_pending) {
        pthread_mutex_unlock(&p->mu);
        errno = EAGAIN;
        return -1;
    }
    memset(&job->result, 0, sizeof(job->result));
    job->status = SCAN_JOB_DONE;
    job->wait_time = job->run_time = 0;
    job->done_ = done;
    job->done_arg_ = arg;
    job->next_ = NULL;
    job->t_submit_ = now_mono();
    if (p->qtail)
        p->qtail->next_ = job;
    else
        p->qhead = job;
    p->qtail = job;
    p->nqueued++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

size_t
scan_pool_queued(struct scan_pool *p)
{
    size_t n;
    pthread_mutex_lock(&p->mu);
    n = p->nqueued;
    pthread_mutex_unlock(&p->mu);
    return n;
}

size_t
scan_pool_running(struct scan_pool *p)
{
    size_t n;
    pthread_mutex_lock(&p->mu);
    n = p->nrunning;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int
scan_pool_threads(const struct scan_pool *p)
{
    return p->nthreads;
}

void
scan_pool_free(struct scan_pool *p)
{
    struct scan_job *queued, *next;

    if (p == NULL)
        return;

    /* Stop: take the waiting jobs, let the running ones finish. */
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    queued = p->qhead;
    p->qhead = p->qtail = NULL;
    p->nqueued = 0;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);

    /* Finished jobs first, then the cancelled ones. */
    if (p->wake_ev)
        deliver(p);
    for (; queued; queued = next) {
        next = queued->next_;
        queued->next_ = NULL;
        queued->status = SCAN_JOB_CANCELLED;
        queued->done_(queued, queued->done_arg_);
    }

    if (p->wake_ev)
        event_free(p->wake_ev);
    if (p->wake[0] >= 0)
        close(p->wake[0]);
    if (p->wake[1] >= 0)
        close(p->wake[1]);
    free(p->threads);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
