/* queue.h - the deferred queue: custody, queue_inject, scheduler, admin verbs (see queue.c). */
#ifndef SR_QUEUE_H
#define SR_QUEUE_H

#include <stddef.h>

#include "delivery.h"
#include "envelope.h"

struct event_base;
struct spool;
struct sr_config;
struct queue;

/*
 * What the daemon hands the queue: delivery and a few services. Every
 * call is made on the event loop thread. ctx is passed back unchanged.
 */
struct queue_hooks {
    void *ctx;
    /* Start a delivery attempt; job->done runs later on the loop, never
     * from inside submit. 0 ok, -1 no memory. */
    int (*submit)(void *ctx, struct relay_job *job);
    /* 1 while the downstream does not answer (the queue probes instead). */
    int (*down)(void *ctx);
    /* The downstream's name for DSNs ("Remote-MTA"), or NULL. */
    const char *(*remote_name)(void *ctx);
    /*
     * Run work(arg) off the loop, then done(arg, 0) on the loop; when the
     * daemon stops before the work ran, done(arg, 1) instead (the work did
     * not run: the queue only frees what the job held). Never done from
     * inside run. 0 queued, -1 refused (no memory, stopping).
     */
    int (*run)(void *ctx, void (*work)(void *arg), void (*done)(void *arg, int cancelled),
               void *arg);
    /* The configuration now in force; valid until the current loop callback returns. */
    const struct sr_config *(*config)(void *ctx);
    /* The configuration now in force, kept valid until config_unref (across reloads). */
    struct sr_config *(*config_ref)(void *ctx);
    void (*config_unref)(void *ctx, struct sr_config *cfg);
    /* Something finished: the daemon may be able to exit (shutdown). */
    void (*idle)(void *ctx);
    /* 1 once the daemon is shutting down: start no new deliveries. */
    int (*stopping)(void *ctx);
};

/* Open the queue: create folders, remove unfinished files, schedule the rest. NULL + err. */
struct queue *queue_new(struct event_base *base, const struct queue_hooks *hooks, char *err,
                        size_t errlen);
/* Free the index and timers; run jobs must be finished or dropped by the daemon first. */
void queue_free(struct queue *q);

/* Called on the loop when a write asked of the queue is done: rc 0 or -1 with err (errno). */
typedef void (*queue_done_fn)(void *arg, int rc, int err);

/*
 * Take custody (custody.c): write the message durably with the recipients
 * in RCPT_DEFERRED state as pending, the RCPT_BOUNCED ones handed to a
 * DSN. cb(arg, 0, 0) once it is on disk, cb(arg, -1, errno) when it could
 * not be written (nothing left behind). env and body stay valid until cb.
 */
void queue_enter(struct queue *q, const char *qid, const struct envelope *env, const char *prefix,
                 size_t prefixlen, struct spool *body, queue_done_fn cb, void *arg);

/*
 * First attempt ended with some recipients refused permanently and others
 * delivered: queue the DSN for the refused ones durably, then cb(arg, 0, 0)
 * (also when none is due), or cb(arg, -1, errno). env and body stay valid
 * until cb.
 */
void queue_bounce_now(struct queue *q, const char *qid, const struct envelope *env,
                      const struct relay_rcpt_result *res, struct spool *body, queue_done_fn cb,
                      void *arg);

/*
 * The one way into the queue for a new message (DSNs, quarantine releases,
 * notices): a new queue ID, the file written crash-safely (prefix, may be
 * NULL, before the body; refused with ENOSPC under queue.min_free_space),
 * then scheduled for delivery now. cb(arg, 0, 0, id) or cb(arg, -1, errno,
 * NULL) on the loop. env and body stay valid until cb. The recipients in
 * RCPT_PENDING or RCPT_DEFERRED state are queued.
 */
void queue_inject(struct queue *q, const struct envelope *env, const char *prefix,
                  size_t prefixlen, struct spool *body,
                  void (*cb)(void *arg, int rc, int err, const char *id), void *arg);

/* The downstream answers again: deliver everything due now. */
void queue_kick(struct queue *q);

/*
 * Administrator verbs (qctl.c): flush, delete, hold, release, requeue, for
 * queue IDs or ALL (flush also with no ID). File work runs off the loop in
 * batches, index changes on the loop in bounded slices; verbs run one
 * after the other. out(arg, line) gets the data lines, then done(arg, ok,
 * summary) once (possibly before queue_control returns, for a bad
 * request). ids are copied.
 */
void queue_control(struct queue *q, const char *verb, char **ids, int n,
                   void (*out)(void *arg, const char *line),
                   void (*done)(void *arg, int ok, const char *msg), void *arg);

/* Writes, deliveries or admin verbs still running (shutdown waits for them). */
int queue_busy(const struct queue *q);

/* Counts for `scanrelay status`. */
void queue_counts(const struct queue *q, size_t *deferred, size_t *held, size_t *active);

#endif
