/* delivery.h - what the deferred queue hands to the delivery module and gets back (see queue.c). */
#ifndef SR_DELIVERY_H
#define SR_DELIVERY_H

#include <stddef.h>
#include <sys/types.h>

#include "envelope.h"

/*
 * The types that cross the boundary between queue/ and whoever delivers
 * (proxy/relay.c implements them for the SMTP client; the pipeline uses
 * the same job for first attempts). queue/ never includes proxy/.
 */

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
    int retry;                    /* a retry from the deferred queue: yields to first attempts */

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

#endif
