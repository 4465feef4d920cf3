/* relay.h - delivery to the downstream MTA: SMTP client sessions and their cache (see relay.c). */
#ifndef SR_RELAY_H
#define SR_RELAY_H

#include <stddef.h>
#include <sys/types.h>

#include "envelope.h"

struct event_base;
struct relay;

/* Outcome class of one recipient (or the whole attempt). */
enum relay_class { RELAY_OK = 0, RELAY_TEMP, RELAY_PERM };

struct relay_rcpt_result {
    enum relay_class cls;
    int code;             /* reply code, 0 when no reply (connection level) */
    char dsn[16];         /* enhanced status "2.0.0" (derived when absent) */
    char text[512];       /* reply as received (first line), or our own description */
};

/* Where the message content comes from: a spool or a queue file. */
struct relay_body {
    ssize_t (*pread)(void *ctx, void *buf, size_t len, off_t off);
    void *ctx;
    off_t size;
};

struct relay_job {
    /* Input, owned by the caller for the job's lifetime. */
    const char *qid;
    const struct envelope *env;   /* recipients in RCPT_PENDING/RCPT_DEFERRED are tried */
    const char *prefix;           /* header lines to prepend (CRLF-terminated), or NULL */
    size_t prefixlen;
    struct relay_body body;
    void (*done)(struct relay_job *job, void *arg);
    void *arg;

    /* Output, valid in done(). res[i] corresponds to env->rcpt[i]. */
    struct relay_rcpt_result *res;
    int ntried;                   /* recipients attempted */
    char relay_name[128];         /* "127.0.0.1[127.0.0.1]:10026" */
    /* The reply to pass back upstream when the whole attempt failed with
     * 5xx (all lines as received, CRLF separated), else empty. */
    char perm_reply[4096];
    double t_wait, t_conn, t_xfer; /* seconds: queued for a connection, setup, transfer */

    /* Private. */
    struct relay_job *next;
    int retried;
    double t_start;
};

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
/* "127.0.0.1[127.0.0.1]:10026" */
const char *relay_name(const struct relay *r);
/* Called when a connection to the downstream succeeds after it had failed
 * (the queue flushes at once). */
void relay_set_recovery_cb(struct relay *r, void (*cb)(void *arg), void *arg);
/* Close idle connections (shutdown); jobs in progress continue. */
void relay_close_idle(struct relay *r);
void relay_free(struct relay *r);

#endif
