/* queue_int.h - the deferred queue's shared state, for queue/'s own modules only. */
#ifndef SR_QUEUE_INT_H
#define SR_QUEUE_INT_H

#include "qindex.h"
#include "queue.h"

struct event;
struct qctl_op;

struct queue {
    struct queue_hooks h;
    struct event_base *base;
    char *qdir;
    struct qindex ix;
    int nactive;  /* deliveries in progress */
    int njobs;    /* run() jobs not yet completed */
    int flushing; /* a flush ignores the "downstream down" pacing */
    int start_probe; /* started with mail: the downstream is unknown until one attempt ends */
    struct event *run_ev, *probe_ev;
    struct qctl_op *ops, *ops_tail; /* admin verbs, the first one running */
    struct event *op_ev;            /* next slice of the running verb */
};

/* Run work off the loop through the hooks, counted in q->njobs; done runs on the loop. 0/-1. */
static inline int
queue_run(struct queue *q, void (*work)(void *arg), void (*done)(void *arg, int cancelled),
          void *arg)
{
    if (q->h.run(q->h.ctx, work, done, arg) < 0)
        return -1;
    q->njobs++;
    return 0;
}

/* Call at the end of every done of a queue_run job (the daemon may exit now); cancelled: no hint. */
static inline void
queue_job_done(struct queue *q, int cancelled)
{
    q->njobs--;
    if (!cancelled)
        q->h.idle(q->h.ctx);
}

#endif
