/* scheduler.h - when queued messages are tried, and what follows an attempt (see scheduler.c). */
#ifndef SR_SCHEDULER_H
#define SR_SCHEDULER_H

#include <stddef.h>

struct queue;

/* Read the queue folder into the index and start the run and probe timers. 0, -1 + err. */
int sched_start(struct queue *q, char *err, size_t errlen);
void sched_stop(struct queue *q);
/* A complete queue file to deliver as soon as possible (then call sched_pump). */
void sched_now(struct queue *q, const char *id);
/* A DSN (kind "non-delivery" or "delay") about message "of" is on disk: log and schedule it. */
void sched_dsn_queued(struct queue *q, const char *of, const char *dsn_id, const char *kind);
/* Start due deliveries within max_parallel; while the downstream is down, one probe. */
void sched_pump(struct queue *q, int probe);

#endif
