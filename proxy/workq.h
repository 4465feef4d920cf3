/* workq.h - blocking work off the event loop, completions back on it (see workq.c). */
#ifndef SR_WORKQ_H
#define SR_WORKQ_H

struct event_base;
struct workq;

/* Threads that run work(arg); done(arg) then runs on the loop thread. NULL on failure. */
struct workq *workq_new(struct event_base *base, int nthreads);
/* 0 ok, -1 no memory. */
int workq_submit(struct workq *wq, void (*work)(void *arg), void (*done)(void *arg), void *arg);
/* Number of items not yet completed. */
int workq_pending(const struct workq *wq);
/* Waits for running work, drops queued work (their done is not called). */
void workq_free(struct workq *wq);

#endif
