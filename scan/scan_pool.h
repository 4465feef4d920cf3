/* scan_pool.h - the scan threads: a wpool instance whose jobs hold an engine reference (see scan_pool.c). */
#ifndef SR_SCAN_POOL_H
#define SR_SCAN_POOL_H

#include <stddef.h>

#include "scan.h"
#include "wpool.h"

struct event_base;
struct engine_holder;
struct sr_engine;
struct scan_pool;
struct scan_job;

/* Called on the event loop thread when a job is finished (or cancelled). */
typedef void (*scan_done_fn)(struct scan_job *job, void *arg);

enum scan_job_status {
    SCAN_JOB_DONE = 0,      /* result filled */
    SCAN_JOB_FAILED = -1,   /* scan_message returned -1: result reads SCAN_ERROR */
    SCAN_JOB_CANCELLED = -2 /* the pool shut down before the job ran; no result */
};

/*
 * A job, owned by the caller, who must keep it (and data, fd, cfg) alive
 * until its done callback has run; the callback may free it.
 */
struct scan_job {
    /* In. */
    const char *data; /* the message in memory, or NULL and: */
    int fd;           /* a file read from offset 0 (pread) */
    size_t len;
    int nrcpts;                  /* for the recipients rule */
    const struct sr_config *cfg; /* NULL: the pool's */
    const struct scan_opts *opts; /* extra checkers (scan_message_opts), or NULL */
    char log_id[32];             /* every log line of the job carries it (the queue ID); "" none */
    /* Other blocking work instead of a scan (tests, ...): runs in a pool
     * thread with a reference to the current engine. */
    void (*work)(struct scan_job *job, struct sr_engine *e);
    void *user;

    /* Out (valid in the done callback). */
    int status;                /* enum scan_job_status */
    struct scan_result result; /* free with scan_result_free */
    double wait_time;          /* seconds queued */
    double run_time;           /* seconds scanning */

    /* Private. */
    struct wpool_job wj_;
    struct scan_pool *pool_;
    scan_done_fn done_;
    void *done_arg_;
};

/*
 * nthreads 0: one per core. max_pending: jobs waiting for a thread before
 * submit refuses (0: unbounded). holder: the engine each job takes a
 * reference to when it starts (NULL only if every job has work set).
 * cfg: the configuration of jobs whose cfg is NULL (NULL: every job
 * carries its own, as the daemon's do: a reload may free any other).
 * Threads are named "sr-scan". Returns NULL with err.
 */
struct scan_pool *scan_pool_new(struct event_base *base, struct engine_holder *holder,
                                const struct sr_config *cfg, int nthreads, int max_pending,
                                char *err, size_t errlen);

/*
 * Queue a job; never blocks. 0 queued (done will be called on the loop
 * thread, never from inside this call), -1 refused: queue full (errno
 * EAGAIN: answer 421/451) or shutting down (ESHUTDOWN).
 */
int scan_pool_submit(struct scan_pool *p, struct scan_job *job, scan_done_fn done, void *arg);

/* Jobs waiting, jobs running, threads. */
size_t scan_pool_queued(struct scan_pool *p);
size_t scan_pool_running(struct scan_pool *p);
int scan_pool_threads(const struct scan_pool *p);
/* A reload: change the number of threads (wpool_resize); 0 or an errno value. */
int scan_pool_resize(struct scan_pool *p, int nthreads);
/* A reload: jobs waiting before submit refuses (0: unbounded). */
void scan_pool_set_max_pending(struct scan_pool *p, int max_pending);

/*
 * Shut down from the loop thread: waits for the running jobs (their done
 * callbacks are called), calls done with SCAN_JOB_CANCELLED for the
 * queued ones, joins the threads, frees the pool.
 */
void scan_pool_free(struct scan_pool *p);

#endif
