/* dsn.h - RFC 3464 delivery status notifications (see dsn.c). */
#ifndef SR_DSN_H
#define SR_DSN_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "envelope.h"

/* One recipient to report. */
struct dsn_rcpt {
    const struct env_rcpt *rcpt;
    const char *status;     /* "5.1.1" */
    const char *diag;       /* the reply, e.g. "550 5.1.1 <x>: Recipient address rejected" */
};

struct dsn_req {
    const char *qid;
    const char *hostname;   /* reporting MTA */
    const char *remote_mta; /* downstream host, or NULL */
    const struct envelope *env;
    time_t arrival;
    const char *action;     /* "failed" or "delayed" */
    const char *reason;     /* "expired" wording for the text part, or NULL */
    const struct dsn_rcpt *rcpts;
    size_t nrcpts;
    /* The original message content. */
    ssize_t (*pread)(void *ctx, void *buf, size_t len, off_t off);
    void *ctx;
    off_t size;
    size_t full_limit;      /* return the full message up to this size unless RET=HDRS */
};

/*
 * Build the notification message (headers and body, CRLF line ends) into
 * a malloc'd buffer. Returns 0 and sets out and outlen, or -1 (no memory,
 * read error). The caller sends it from <> to env->sender; none is due for
 * a null sender (the caller checks), nor for recipients with NOTIFY
 * without FAILURE (resp. DELAY) — see dsn_wanted().
 */
int dsn_build(const struct dsn_req *req, char **out, size_t *outlen);
/* Does the recipient want a notice for this action ("failed"/"delayed")? */
int dsn_wanted(const struct env_rcpt *r, const char *action);

#endif
