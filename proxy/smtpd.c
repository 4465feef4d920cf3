/*
 * smtpd.c - inbound SMTP sessions: the I/O around the protocol engine.
 *
 * One struct smtpd_session per client connection, driven by a libevent
 * bufferevent. Input is fed to smtpd_proto (the state machine); its output
 * goes to the bufferevent; its body bytes go to a spool (memory, then an
 * unnamed file); a complete message becomes a struct msg_tx handed to the
 * pipeline, and reading pauses until the pipeline answers.
 *
 * Limits here: total sessions (421 4.3.2 when full), idle time (421 4.4.2),
 * the input high-water mark (the kernel's buffers hold the rest, so a fast
 * client cannot make us buffer a body in memory).
 *
 * Teardown is one function, session_free(). A session is never freed while
 * its code is still on the stack: callbacks set flags and free at their
 * end. A message in flight when its client vanishes finishes on its own
 * (msg_tx->done is cleared); a body still being received is dropped with
 * the spool, which never had a name on disk.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "clock.h"
#include "daemon.h"
#include "log.h"
#include "pipeline.h"
#include "smtpd.h"
#include "smtpd_proto.h"
#include "spool.h"

#define INPUT_HIGH (64 * 1024)

struct smtpd_session {
    struct daemon *d;
    struct bufferevent *bev;
    struct smtpd_proto proto;
    struct spool *body;
    char qid[QID_LEN + 1];
    char addr[INET6_ADDRSTRLEN];
    int port;
    double t_begin;
    struct msg_tx *tx;   /* in flight, or NULL */
    int closing;         /* close once output is flushed */
    int in_callback;     /* our code is on the stack: defer free */
    int dead;            /* free at the end of the current callback */
    struct smtpd_session *next, *prev;
};

static void session_free(struct smtpd_session *s);
static void session_input(struct smtpd_session *s);
static void session_maybe_free(struct smtpd_session *s);
static void ops_close(void *arg);

/*
 * Protocol engine callbacks.
 */
static void
ops_output(void *arg, const char *buf, size_t len)
{
    struct smtpd_session *s = arg;
    bufferevent_write(s->bev, buf, len);
}

static int
ops_data_begin(void *arg)
{
    struct smtpd_session *s = arg;
    const struct sr_config *cfg = services_config(&s->d->svc);

    s->body = spool_new((size_t)cfg->body_memory_limit, cfg->state_directory);
    if (s->body == NULL)
        return -1;
    qid_next(s->qid);
    s->t_begin = clock_mono();
    return 0;
}

static int
ops_data_chunk(void *arg, const char *buf, size_t len)
{
    struct smtpd_session *s = arg;
    if (spool_write(s->body, buf, len) < 0) {
        log_warn("%s: cannot store message body from %s", s->qid, s->addr);
        return -1;
    }
    return 0;
}

static void
ops_data_abort(void *arg)
{
    struct smtpd_session *s = arg;
    spool_free(s->body);
    s->body = NULL;
}

static void
tx_done(struct msg_tx *tx, const char *reply, void *arg)
{
    struct smtpd_session *s = arg;
    (void)tx;
    s->tx = NULL;
    s->in_callback++;
    smtpd_proto_tx_done(&s->proto, reply);
    if (strncmp(reply, "421", 3) == 0) {
        /* Overload: the reply said we close. */
        s->proto.state = SMTPD_S_QUIT;
        ops_close(s);
    } else if (s->d->shutting_down && s->proto.state == SMTPD_S_IDLE)
        smtpd_proto_shutdown(&s->proto, "421 4.3.2 Service shutting down, closing connection");
    if (!s->closing) {
        bufferevent_enable(s->bev, EV_READ);
        session_input(s); /* pipelined commands may be waiting */
    }
    s->in_callback--;
    session_maybe_free(s);
}

static void
ops_data_end(void *arg, struct envelope *env, int64_t size)
{
    struct smtpd_session *s = arg;
    struct daemon *d = s->d;
    char client[320];

    bufferevent_disable(s->bev, EV_READ);
    const char *name = env->xforward[XF_NAME] ? env->xforward[XF_NAME] : "unknown";
    const char *addr = env->xforward[XF_ADDR] ? env->xforward[XF_ADDR] : s->addr;
    snprintf(client, sizeof(client), "%.200s[%.64s]", name, addr);
    env->arrival = time(NULL);

    struct msg_tx *tx = msg_tx_new(d, s->qid, env, s->body, size, client, s->t_begin);
    s->body = NULL;
    if (tx == NULL) {
        log_warnx("%s: out of memory for the transaction from %s", s->qid, s->addr);
        smtpd_proto_tx_done(&s->proto, "451 4.3.0 Error: out of memory, try again later");
        bufferevent_enable(s->bev, EV_READ);
        return;
    }
    tx->done = tx_done;
    tx->arg = s;
    s->tx = tx;
    pipeline_start(tx);
}

static void
ops_close(void *arg)
{
    struct smtpd_session *s = arg;
    s->closing = 1;
    bufferevent_disable(s->bev, EV_READ);
}

static const struct smtpd_proto_ops session_ops = {
    .output = ops_output,
    .data_begin = ops_data_begin,
    .data_chunk = ops_data_chunk,
    .data_end = ops_data_end,
    .data_abort = ops_data_abort,
    .close = ops_close,
};

/*
 * I/O callbacks.
 */

/* Free at the end of a callback once flagged and flushed. */
static void
session_maybe_free(struct smtpd_session *s)
{
    if (s->in_callback)
        return;
    if (s->dead || (s->closing && evbuffer_get_length(bufferevent_get_output(s->bev)) == 0))
        session_free(s);
}

static void
session_input(struct smtpd_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);

    s->in_callback++;
    while (!s->closing && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t used = smtpd_proto_feed(&s->proto, v.iov_base, v.iov_len);
        evbuffer_drain(in, used);
        if (used < v.iov_len)
            break; /* paused (waiting for a verdict) or closing */
    }
    s->in_callback--;
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
    struct smtpd_session *s = arg;
    (void)bev;
    session_input(s);
    session_maybe_free(s);
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
    struct smtpd_session *s = arg;
    (void)bev;
    session_maybe_free(s);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtpd_session *s = arg;
    (void)bev;

    if (what & BEV_EVENT_TIMEOUT) {
        if (s->proto.state == SMTPD_S_WAIT)
            return;
        log_info("timeout after %s from %s",
                 s->proto.state == SMTPD_S_DATA ? "DATA" : "command", s->addr);
        s->in_callback++;
        smtpd_proto_shutdown(&s->proto, "421 4.4.2 Error: timeout exceeded");
        s->in_callback--;
        bufferevent_set_timeouts(s->bev, NULL, NULL);
        session_maybe_free(s);
        return;
    }
    /* EOF or error: the client is gone. */
    if (s->proto.state == SMTPD_S_DATA)
        log_info("lost connection after DATA from %s (%lld bytes received)", s->addr,
                 (long long)s->proto.data_size);
    s->dead = 1;
    session_maybe_free(s);
}

static void
session_free(struct smtpd_session *s)
{
    struct daemon *d = s->d;

    if (s->tx) {
        /* The message is in flight: let it finish without us. */
        s->tx->done = NULL;
        s->tx->arg = NULL;
        s->tx = NULL;
    }
    spool_free(s->body);
    smtpd_proto_free(&s->proto);
    if (s->bev)
        bufferevent_free(s->bev);
    if (s->prev)
        s->prev->next = s->next;
    else
        d->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    d->nsessions--;
    free(s);
    services_idle(&d->svc);
}

/* Refuse a connection with one line and close. */
static void
refuse(int fd, const char *line)
{
    ssize_t w = send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    close(fd);
}

void
smtpd_accept(struct daemon *d, int fd, const struct sockaddr *sa, int salen)
{
    struct smtpd_session *s;
    (void)salen;

    if (d->shutting_down) {
        refuse(fd, "421 4.3.2 Service shutting down\r\n");
        return;
    }
    if (d->nsessions >= services_config(&d->svc)->max_connections) {
        log_warnx("too many connections (max_connections = %lld), refusing a client",
                  (long long)services_config(&d->svc)->max_connections);
        refuse(fd, "421 4.3.2 Service busy: too many connections, try again later\r\n");
        return;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        refuse(fd, "421 4.3.0 Error: out of memory\r\n");
        return;
    }
    s->d = d;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, s->addr, sizeof(s->addr));
        s->port = ntohs(sin->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, s->addr, sizeof(s->addr));
        s->port = ntohs(sin6->sin6_port);
    } else {
        snprintf(s->addr, sizeof(s->addr), "unknown");
    }
    s->bev = bufferevent_socket_new(d->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (s->bev == NULL) {
        free(s);
        refuse(fd, "421 4.3.0 Error: out of memory\r\n");
        return;
    }
    if (smtpd_proto_init(&s->proto, &d->lim, &session_ops, s, s->addr, s->port) < 0) {
        bufferevent_free(s->bev);
        free(s);
        return;
    }
    s->proto.xforward_allowed = cidr_match(d->xfnets, d->nxfnets, sa);

    s->next = d->sessions;
    if (d->sessions)
        d->sessions->prev = s;
    d->sessions = s;
    d->nsessions++;

    bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
    bufferevent_setwatermark(s->bev, EV_READ, 0, INPUT_HIGH);
    struct timeval tv = {services_config(&d->svc)->smtpd_timeout, 0};
    bufferevent_set_timeouts(s->bev, &tv, &tv);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    smtpd_proto_greet(&s->proto);
}

void
smtpd_shutdown_all(struct daemon *d)
{
    struct smtpd_session *s, *n;
    for (s = d->sessions; s; s = n) {
        n = s->next;
        enum smtpd_state st = s->proto.state;
        if (st == SMTPD_S_DATA || st == SMTPD_S_WAIT || st == SMTPD_S_MAIL)
            continue; /* finishes its transaction first */
        s->in_callback++;
        smtpd_proto_shutdown(&s->proto, "421 4.3.2 Service shutting down, closing connection");
        s->in_callback--;
        session_maybe_free(s);
    }
}
