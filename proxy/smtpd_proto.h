/* smtpd_proto.h - the inbound SMTP protocol engine, no I/O (see smtpd_proto.c). */
#ifndef SR_SMTPD_PROTO_H
#define SR_SMTPD_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "envelope.h"

enum smtpd_state {
    SMTPD_S_GREETING = 0, /* greeting not yet sent */
    SMTPD_S_HELO,         /* waiting for HELO/EHLO */
    SMTPD_S_IDLE,         /* no transaction */
    SMTPD_S_MAIL,         /* MAIL accepted, collecting RCPT */
    SMTPD_S_DATA,         /* receiving the body */
    SMTPD_S_WAIT,         /* body complete, waiting for the verdict/delivery reply */
    SMTPD_S_QUIT,         /* closing: no more input is processed */
};

struct smtpd_limits {
    size_t max_command_length;
    size_t max_recipients;
    size_t max_commands;
    size_t max_errors;
    int64_t max_message_size;
    int xforward_allowed;   /* client may send XFORWARD */
    const char *hostname;
};

/* What the protocol engine asks of its session. */
struct smtpd_proto_ops {
    /* Bytes to send to the client (complete reply lines). */
    void (*output)(void *arg, const char *buf, size_t len);
    /* DATA accepted: prepare a body store. 0 ok, -1 refuse (451 4.3.0). */
    int (*data_begin)(void *arg);
    /* Unstuffed body bytes. 0 ok, -1 store failed (errno; ENOSPC -> 452 4.3.1). */
    int (*data_chunk)(void *arg, const char *buf, size_t len);
    /* Body complete and within limits: the session decides the reply later with
     * smtpd_proto_tx_done(). Input processing pauses until then. */
    void (*data_end)(void *arg, struct envelope *env, int64_t size);
    /* The transaction was aborted (RSET, QUIT, too big, store error...): drop the body. */
    void (*data_abort)(void *arg);
    /* Close the connection after pending output is flushed. */
    void (*close)(void *arg);
};

struct smtpd_proto {
    enum smtpd_state state;
    const struct smtpd_limits *lim;
    const struct smtpd_proto_ops *ops;
    void *arg;
    struct envelope *env;    /* the current transaction */
    char *helo;              /* HELO/EHLO argument */
    int esmtp;
    char *line;              /* partial command line */
    size_t linelen;
    int line_overflow;       /* discarding the rest of a too-long line */
    size_t ncommands, nerrors;
    /* DATA scanner */
    int data_state;          /* see smtpd_proto.c */
    int data_last_cr;        /* the previous body byte was CR */
    int64_t data_size;       /* unstuffed bytes */
    int data_too_big;
    int data_error;          /* errno of a failed data_chunk, 0 none */
    int xforward_allowed;    /* from lim, may be overridden per client */
    /* client facts */
    char client_addr[64];
    char client_port[8];
};

/* Set up (fresh allocations checked; -1 on no memory). */
int smtpd_proto_init(struct smtpd_proto *p, const struct smtpd_limits *lim,
                     const struct smtpd_proto_ops *ops, void *arg, const char *client_addr,
                     int client_port);
void smtpd_proto_free(struct smtpd_proto *p);

/* Send the 220 greeting. */
void smtpd_proto_greet(struct smtpd_proto *p);

/*
 * Consume client bytes in any chunking; returns how many were consumed.
 * Less than len means: paused (S_WAIT) or closing (S_QUIT); keep the rest
 * and feed it again after smtpd_proto_tx_done().
 */
size_t smtpd_proto_feed(struct smtpd_proto *p, const char *buf, size_t len);

/*
 * The session's answer to the completed transaction: a full reply line
 * without CRLF (e.g. "250 2.0.0 Ok: queued as X"). Resets the transaction
 * and the XFORWARD attributes.
 */
void smtpd_proto_tx_done(struct smtpd_proto *p, const char *reply);

/* Say 421 with the text and close (timeouts, shutdown, overload). */
void smtpd_proto_shutdown(struct smtpd_proto *p, const char *reply);

#endif
