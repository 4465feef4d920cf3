/* relay.h - delivery to the downstream MTA: SMTP client sessions and their cache (see relay.c). */
#ifndef SR_RELAY_H
#define SR_RELAY_H

#include <stddef.h>
#include <time.h>
#include <sys/types.h>

#include "delivery.h"
#include "envelope.h"

struct event_base;
struct relay;

/* Create the delivery module on an event base. NULL + err on a bad relay address. */
struct relay *relay_new(struct event_base *base, const char *relay_addr, const char *helo_name,
                        int max_conns, int connect_timeout, int cmd_timeout, int data_timeout,
                        int idle_time, char *err, size_t errlen);
/* Apply new settings (SIGHUP); existing idle connections are closed if the address changed. */
int relay_configure(struct relay *r, const char *relay_addr, const char *helo_name, int max_conns,
                    int connect_timeout, int cmd_timeout, int data_timeout, int idle_time,
                    char *err, size_t errlen);
/*
 * Start a delivery attempt; job->done is always called later from the
 * event loop (never from inside relay_submit). job->res must have room for
 * env->nrcpt results. 0 ok, -1 on no memory.
 */
int relay_submit(struct relay *r, struct relay_job *job);
/* Number of jobs waiting or in progress. */
int relay_busy(const struct relay *r);
/* 1 while the last connection attempt failed (until one succeeds). */
int relay_down(const struct relay *r);
/* While down: when it went down (seconds since the epoch); 0 while up. */
time_t relay_down_since(const struct relay *r);
/* "127.0.0.1[127.0.0.1]:10026" */
const char *relay_name(const struct relay *r);
/* Called when a connection to the downstream succeeds after it had failed
 * (the queue flushes at once). */
void relay_set_recovery_cb(struct relay *r, void (*cb)(void *arg), void *arg);
/* Close idle connections (shutdown); jobs in progress continue. */
void relay_close_idle(struct relay *r);
void relay_free(struct relay *r);

#endif
