/* wpool.h - one worker-pool implementation: threads, a bounded queue, completions on the loop (see
 * wpool.c). */
#ifndef SR_WPOOL_H
#define SR_WPOOL_H

#include <stddef.h>

struct event_base;
struct wpool;
struct wpool_job;

enum wpool_status {
    WPOOL_DONE = 0,      /* work ran */
    WPOOL_CANCELLED = -2 /* the pool shut down before the job ran; work did not run */
};

/*
 * A job, owned by the caller, who keeps it alive until done has run
 * (done may free it). work runs in a pool thread, done on the loop thread
 * with job->status set, exactly once per accepted job.
 */
struct wpool_job {
    void (*work)(struct wpool_job *job);
    void (*done)(struct wpool_job *job);
    void *arg;

    /* Out (valid in done). */
    int status;       /* enum wpool_status */
    double wait_time; /* seconds queued */
    double run_time;  /* seconds in work */

    /* Private. */
    struct wpool_job *next_;
    double t_submit_;
};

/*
 * name: the threads' name (top -H, ps -L), at most 15 characters.
 * nthreads 0: one per core. max_pending: jobs waiting for a thread before
 * submit refuses (0: unbounded). NULL with err on failure.
 */
struct wpool *wpool_new(struct event_base *base, const char *name, int nthreads, size_t max_pending,
                        char *err, size_t errlen);

/*
 * Queue a job; never blocks. 0 queued (done will run on the loop thread,
 * never from inside this call); -1 refused with errno EAGAIN (max_pending
 * jobs wait) or ESHUTDOWN (the pool is stopping).
 */
int wpool_submit(struct wpool *p, struct wpool_job *job);

/*
 * The same with a job the pool allocates: work(arg) in a thread, then
 * done(arg, status) on the loop. 0 queued, -1 with errno (ENOMEM too).
 */
int wpool_call(struct wpool *p, void (*work)(void *arg), void (*done)(void *arg, int status),
               void *arg);

/* Jobs waiting, jobs running, jobs accepted whose done has not run yet, threads. */
size_t wpool_queued(struct wpool *p);
size_t wpool_running(struct wpool *p);
size_t wpool_pending(const struct wpool *p);
int wpool_threads(const struct wpool *p);

/*
 * Change the number of threads (loop thread; 0: one per core). More start
 * at once; when fewer, the extra ones leave as they become idle (a running
 * job always finishes). 0 ok, or an errno value when a thread could not be
 * started (the pool keeps the threads it has).
 */
int wpool_resize(struct wpool *p, int nthreads);
/* A reload: jobs waiting before submit refuses (0: unbounded). Loop thread. */
void wpool_set_max_pending(struct wpool *p, size_t max_pending);
/*
 * Shut down from the loop thread. The one rule: running jobs finish and
 * their done runs (WPOOL_DONE); queued jobs are not run and their done
 * runs with WPOOL_CANCELLED; then the threads are joined and the pool
 * freed. NULL is ignored.
 */
void wpool_free(struct wpool *p);

#endif
