/* queue_glue.h - the daemon's side of the deferred queue: its hooks (see queue_glue.c). */
#ifndef SR_QUEUE_GLUE_H
#define SR_QUEUE_GLUE_H

#include <stddef.h>

struct daemon;

/* Open the queue (queue/) with the hooks below and set d->queue. 0, -1 + err. */
int queue_glue_open(struct daemon *d, char *err, size_t errlen);
/* Stop its worker pool (queued jobs cancelled, their done told so) and free the queue. */
void queue_glue_close(struct daemon *d);

#endif
