/* queue_glue.h - the daemon's side of the deferred queue: its hooks (see queue_glue.c). */
#ifndef SR_QUEUE_GLUE_H
#define SR_QUEUE_GLUE_H

#include <stddef.h>

struct daemon;
struct sr_config;

/* Open the queue (queue/) with the hooks below and set d->queue. 0, -1 + err. */
int queue_glue_open(struct daemon *d, char *err, size_t errlen);
/* Stop its worker threads (queued work dropped) and free it. */
void queue_glue_close(struct daemon *d);
/* A reference to the configuration now in force, valid until unref (also across reloads). */
const struct sr_config *queue_glue_config_ref(struct daemon *d);
void queue_glue_config_unref(struct daemon *d, const struct sr_config *cfg);

#endif
