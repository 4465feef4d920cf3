/* queue_mgr.h - custody, the deferred queue's scheduler and its control actions (see queue_mgr.c). */
#ifndef SR_QUEUE_MGR_H
#define SR_QUEUE_MGR_H

#include <stddef.h>

#include "envelope.h"
#include "relay.h"

struct daemon;
struct spool;
struct queue_mgr;

/* Open the queue: create folders, remove unfinished files, schedule the rest. NULL + err. */
struct queue_mgr *queue_mgr_new(struct daemon *d, char *err, size_t errlen);
void queue_mgr_free(struct queue_mgr *q);

/*
 * Take custody: write the message durably (in a writer thread) with the
 * recipients in RCPT_DEFERRED state as pending, the RCPT_BOUNCED ones
 * handed to a DSN. cb(arg, 0, 0) once it is on disk, cb(arg, -1, errno)
 * when it could not be written (nothing left behind). env and body must
 * stay valid until cb.
 */
void queue_mgr_enter(struct queue_mgr *q, const char *qid, const struct envelope *env,
                     const char *prefix, size_t prefixlen, struct spool *body,
                     void (*cb)(void *arg, int rc, int err), void *arg);

/*
 * First attempt ended with some recipients refused permanently and others
 * delivered: queue the DSN for the refused ones durably, then cb(arg, 0, 0)
 * (also when no DSN is due), or cb(arg, -1, errno) when it could not be
 * written. env and body must stay valid until cb.
 */
void queue_mgr_bounce_now(struct queue_mgr *q, const char *qid, const struct envelope *env,
                          const struct relay_rcpt_result *res, struct spool *body,
                          void (*cb)(void *arg, int rc, int err), void *arg);

/* A complete queue file written by someone else (quarantine release): schedule it now. */
void queue_mgr_adopt(struct queue_mgr *q, const char *id);

/* The downstream answers again: deliver everything due now. */
void queue_mgr_kick(struct queue_mgr *q);

/*
 * Control-socket actions. verb: flush, delete, hold, release, requeue.
 * ids NULL/n=0 means all (flush) or is an error; "ALL" is accepted.
 * Writes data lines through out(); returns 0 ok, -1 with msg.
 */
int queue_mgr_control(struct queue_mgr *q, const char *verb, char **ids, int n,
                      void (*out)(void *arg, const char *line), void *arg, char *msg,
                      size_t msglen);

/* Writes or post-delivery updates still running (shutdown waits for them). */
int queue_mgr_busy(const struct queue_mgr *q);

/* Counts for `scanrelay status`. */
void queue_mgr_counts(const struct queue_mgr *q, size_t *deferred, size_t *held, size_t *active);

#endif
