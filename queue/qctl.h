/* qctl.h - the queue's administrator verbs, internal calls (queue_control is in queue.h; see qctl.c). */
#ifndef SR_QCTL_H
#define SR_QCTL_H

#include <event2/util.h>

struct queue;

/* Event callback (arg: the queue): continue the verb at the head of the list. */
void qctl_resume(evutil_socket_t fd, short what, void *arg);
/* Drop every verb not finished (teardown; their done is not called). */
void qctl_free_all(struct queue *q);

#endif
