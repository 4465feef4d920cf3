/*
 * wpool.c - the worker pool: a set of named threads, a bounded FIFO
 * of jobs, and one completion path back to the libevent loop. The scan
 * pool (scan/scan_pool.c) and the daemon's side work (quarantine writes,
 * strip rewrites, queue file updates, admin verbs) are instances of it.
 *
 * Public calls: wpool_new, wpool_submit, wpool_call, wpool_queued,
 * wpool_running, wpool_pending, wpool_threads, wpool_resize,
 * wpool_set_max_pending, wpool_free.
 *
 * wpool_resize() (loop thread, a reload) starts more threads at once or
 * lowers the count: a thread over the count leaves when it is idle (never
 * in the middle of a job) and is joined by the next resize or by
 * wpool_free.
 *
 * wpool_submit() (loop thread) appends a job under the pool's mutex and
 * signals a worker; it never blocks, and refuses (EAGAIN) when max_pending
 * jobs already wait. A worker runs job->work, then appends the job to the
 * done list; when that list goes from empty to non-empty it writes one
 * byte to a pipe. The loop's read event on the pipe takes the whole list
 * and calls each job's done, in completion order, on the loop thread: the
 * loop never waits for a job and needs no evthread locking.
 *
 * Shutdown (wpool_free, loop thread): running jobs finish and complete
 * with WPOOL_DONE; queued jobs complete with WPOOL_CANCELLED without
 * running; the threads are joined.
 *
 * Owns its threads, the pipe and its event; jobs belong to the caller
 * (wpool_call's wrappers belong to the pool). Failures: wpool_new returns
 * NULL with a message; submit returns -1 with errno; nothing here exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "clock.h"
#include "wpool.h"

struct wpool {
    struct event_base *base;
    char name[16];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct wslot **slots; /* every thread started and not yet joined */
    int nslots;
    int nthreads;         /* threads wanted (wpool_resize) */
    int nlive;            /* threads running their loop */
    size_t max_pending;
    struct wpool_job *qhead, *qtail; /* waiting */
    size_t nqueued;
    size_t nrunning;
    struct wpool_job *dhead, *dtail; /* done, not yet delivered */
    size_t npending;                 /* loop thread only: accepted, done not called */
    int stopping;
    int wake[2];
    struct event *wake_ev;
};

/* A thread of the pool: joined by wpool_free, or reused by a resize once it exited. */
struct wslot {
    struct wpool *p;
    pthread_t t;
    int exited; /* left its loop after a shrink: join it */
};

/* A job of wpool_call. */
struct wcall {
    struct wpool_job job;
    void (*work)(void *);
    void (*done)(void *, int);
};

static void *
worker_main(void *arg)
{
    struct wslot *slot = arg;
    struct wpool *p = slot->p;

    pthread_setname_np(pthread_self(), p->name);
    for (;;) {
        struct wpool_job *job;
        int wake;

        pthread_mutex_lock(&p->mu);
        while (!p->stopping && p->qhead == NULL && p->nlive <= p->nthreads)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stopping) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        if (p->nlive > p->nthreads) {
            /* Shrunk: one thread too many leaves (after its job, never during one). */
            p->nlive--;
            slot->exited = 1;
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

        double t0 = clock_mono();
        job->wait_time = t0 - job->t_submit_;
        job->work(job);
        job->status = WPOOL_DONE;
        job->run_time = clock_mono() - t0;

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

/* Complete one job on the loop thread. */
static void
complete(struct wpool *p, struct wpool_job *job)
{
    job->next_ = NULL;
    p->npending--;
    job->done(job);
}

/* Deliver finished jobs on the loop thread. */
static void
deliver(struct wpool *p)
{
    struct wpool_job *job, *next;

    pthread_mutex_lock(&p->mu);
    job = p->dhead;
    p->dhead = p->dtail = NULL;
    pthread_mutex_unlock(&p->mu);
    for (; job; job = next) {
        next = job->next_;
        complete(p, job);
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

struct wpool *
wpool_new(struct event_base *base, const char *name, int nthreads, size_t max_pending, char *err,
          size_t errlen)
{
    struct wpool *p = calloc(1, sizeof(*p));
    int rc;

    if (p == NULL) {
        snprintf(err, errlen, "%s pool: out of memory", name);
        return NULL;
    }
    if (nthreads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = n > 0 ? (int)n : 1;
    }
    p->base = base;
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->max_pending = max_pending;
    p->wake[0] = p->wake[1] = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pipe2(p->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(err, errlen, "%s pool: pipe: %s", name, strerror(errno));
        goto bad;
    }
    p->wake_ev = event_new(base, p->wake[0], EV_READ | EV_PERSIST, wake_cb, p);
    if (p->wake_ev == NULL || event_add(p->wake_ev, NULL) < 0) {
        snprintf(err, errlen, "%s pool: cannot add the wake-up event", name);
        goto bad;
    }
    if ((rc = wpool_resize(p, nthreads)) != 0) {
        snprintf(err, errlen, "%s pool: cannot start thread %d: %s", name, p->nthreads + 1,
                 strerror(rc));
        goto bad;
    }
    return p;

bad:
    wpool_free(p);
    return NULL;
}

int
wpool_submit(struct wpool *p, struct wpool_job *job)
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
    job->status = WPOOL_DONE;
    job->wait_time = job->run_time = 0;
    job->next_ = NULL;
    job->t_submit_ = clock_mono();
    if (p->qtail)
        p->qtail->next_ = job;
    else
        p->qhead = job;
    p->qtail = job;
    p->nqueued++;
    p->npending++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

static void
call_work(struct wpool_job *job)
{
    struct wcall *c = (struct wcall *)job;
    c->work(job->arg);
}

static void
call_done(struct wpool_job *job)
{
    struct wcall *c = (struct wcall *)job;
    void (*done)(void *, int) = c->done;
    void *arg = job->arg;
    int status = job->status;
    free(c);
    done(arg, status);
}

int
wpool_call(struct wpool *p, void (*work)(void *arg), void (*done)(void *arg, int status), void *arg)
{
    struct wcall *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        errno = ENOMEM;
        return -1;
    }
    c->work = work;
    c->done = done;
    c->job.work = call_work;
    c->job.done = call_done;
    c->job.arg = arg;
    if (wpool_submit(p, &c->job) < 0) {
        int e = errno;
        free(c);
        errno = e;
        return -1;
    }
    return 0;
}

size_t
wpool_queued(struct wpool *p)
{
    size_t n;
    pthread_mutex_lock(&p->mu);
    n = p->nqueued;
    pthread_mutex_unlock(&p->mu);
    return n;
}

size_t
wpool_running(struct wpool *p)
{
    size_t n;
    pthread_mutex_lock(&p->mu);
    n = p->nrunning;
    pthread_mutex_unlock(&p->mu);
    return n;
}

size_t
wpool_pending(const struct wpool *p)
{
    return p ? p->npending : 0;
}

int
wpool_threads(const struct wpool *p)
{
    return p->nthreads;
}

void
wpool_set_max_pending(struct wpool *p, size_t max_pending)
{
    pthread_mutex_lock(&p->mu);
    p->max_pending = max_pending;
    pthread_mutex_unlock(&p->mu);
}

int
wpool_resize(struct wpool *p, int nthreads)
{
    int rc = 0;

    if (nthreads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = n > 0 ? (int)n : 1;
    }

    /* Join the threads that left after an earlier shrink. */
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->nslots;) {
        if (p->slots[i]->exited) {
            struct wslot *w = p->slots[i];
            p->slots[i] = p->slots[--p->nslots];
            pthread_mutex_unlock(&p->mu);
            pthread_join(w->t, NULL);
            free(w);
            pthread_mutex_lock(&p->mu);
        } else {
            i++;
        }
    }
    /* Fewer: the extra threads leave when they are idle. */
    p->nthreads = nthreads;
    pthread_cond_broadcast(&p->cv);
    int start = nthreads - p->nlive;
    pthread_mutex_unlock(&p->mu);

    /* More: start them (only the loop thread touches slots outside the lock). */
    for (int i = 0; i < start; i++) {
        struct wslot **ns = realloc(p->slots, (size_t)(p->nslots + 1) * sizeof(*ns));
        struct wslot *w = ns ? calloc(1, sizeof(*w)) : NULL;
        if (ns)
            p->slots = ns;
        if (w == NULL) {
            rc = ENOMEM;
            break;
        }
        w->p = p;
        pthread_mutex_lock(&p->mu);
        p->nlive++;
        pthread_mutex_unlock(&p->mu);
        if ((rc = pthread_create(&w->t, NULL, worker_main, w)) != 0) {
            pthread_mutex_lock(&p->mu);
            p->nlive--;
            pthread_mutex_unlock(&p->mu);
            free(w);
            break;
        }
        p->slots[p->nslots++] = w;
    }
    if (rc != 0) {
        pthread_mutex_lock(&p->mu);
        p->nthreads = p->nlive;
        pthread_mutex_unlock(&p->mu);
    }
    return rc;
}

void
wpool_free(struct wpool *p)
{
    struct wpool_job *queued, *next;

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
    for (int i = 0; i < p->nslots; i++) {
        pthread_join(p->slots[i]->t, NULL);
        free(p->slots[i]);
    }

    /* Finished jobs first, then the cancelled ones. */
    deliver(p);
    for (; queued; queued = next) {
        next = queued->next_;
        queued->status = WPOOL_CANCELLED;
        complete(p, queued);
    }

    if (p->wake_ev)
        event_free(p->wake_ev);
    if (p->wake[0] >= 0)
        close(p->wake[0]);
    if (p->wake[1] >= 0)
        close(p->wake[1]);
    free(p->slots);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
