/* metrics.h - labelled counters, histograms and the Prometheus /metrics listener (see metrics.c). */
#ifndef SR_METRICS_H
#define SR_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct daemon;
struct evbuffer;
struct metrics;

/* Start-up: never NULL. metrics_free closes the listener too; NULL is ignored. */
struct metrics *metrics_new(struct daemon *d);
void metrics_free(struct metrics *m);

/*
 * Loop thread. One finished transaction: its result (clean, virus, ...)
 * and action (relayed, deferred, discarded, ...), bytes received and
 * bytes accepted downstream, seconds from MAIL to the answer, seconds of
 * scanning (< 0: not scanned).
 */
void metrics_message(struct metrics *m, const char *result, const char *action, int64_t bytes_in,
                     int64_t bytes_out, double delay, double scan_seconds);
/* Loop thread. Recipients of one delivery attempt by outcome; queue: a retry from the queue. */
void metrics_relay(struct metrics *m, int queue, int nsent, int ndeferred, int nbounced);
/* Loop thread. A message released from the quarantine. */
void metrics_quarantine_release(struct metrics *m);
/* Any thread. A policy rule decided (or matched) a message. */
void metrics_rule_hit(struct metrics *m, const char *rule);

/*
 * The quarantine's usage, refreshed off the loop every 10 s (and at once
 * by metrics_refresh_now at start-up, which blocks): bytes and messages.
 */
void metrics_refresh_now(struct metrics *m);
void metrics_quarantine_usage(const struct metrics *m, int64_t *bytes, long *count);

/*
 * Open, move or close the HTTP listener to match addr ("" or NULL: none).
 * Loop thread. 0 ok, -1 with err (the old listener stays).
 */
int metrics_listen(struct metrics *m, const char *addr, char *err, size_t errlen);

/* The Prometheus text exposition of everything (what GET /metrics answers). */
void metrics_render(struct metrics *m, struct evbuffer *out);

#endif
