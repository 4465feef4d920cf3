/* pipeline.h - what happens to a received message: verdict, action, delivery, answer (see pipeline.c). */
#ifndef SR_PIPELINE_H
#define SR_PIPELINE_H

#include <stdint.h>

#include "envelope.h"
#include "notice.h"
#include "policy.h"
#include "qid.h"
#include "relay.h"
#include "scan_pool.h"

struct daemon;
struct spool;

struct msg_tx {
    struct daemon *d;
    char qid[QID_LEN + 1];
    struct envelope *env;      /* owned */
    struct spool *body;        /* owned: the message as received, unstuffed */
    int64_t size;
    char client[320];          /* NAME[ADDR] for the log */
    double t_begin;            /* DATA accepted */
    double t_received;         /* final dot */
    char *prefix;              /* header lines to add, owned */
    size_t prefixlen;
    struct sr_config *cfg; /* the configuration this message started with (a reference) */
    struct scan_job sjob;      /* the scan; sjob.result is the verdict */
    struct policy_run prun;    /* the policy rules' checker, when cfg has rules */
    struct scan_checker pchk;
    struct scan_opts sopts;
    const char **rcptv;        /* owned: the recipients for prun */
    int scanned;               /* sjob.result is valid */
    const char *result;        /* log result=: unscanned, clean, virus, policy, error */
    const char *action;        /* what the verdict did, for the log */
    const char *outcome;       /* for the message log: relayed, deferred, quarantined, ... */
    struct notice_origin origin; /* bulk/list sender, notice mark (notice_inspect) */
    struct relay_job job;
    struct relay_rcpt_result *res;
    /* The session's callback with the reply line(s) to send upstream.
     * NULL when the session went away: the transaction finishes alone. */
    void (*done)(struct msg_tx *tx, const char *reply, void *arg);
    void *arg;
    char reply[4200];
};

/* New transaction taking ownership of env and body; NULL on no memory. */
struct msg_tx *msg_tx_new(struct daemon *d, const char *qid, struct envelope *env,
                          struct spool *body, int64_t size, const char *client, double t_begin);
/* Run it; done() is called later, exactly once, from the event loop; then the tx frees itself. */
void pipeline_start(struct msg_tx *tx);

#endif
