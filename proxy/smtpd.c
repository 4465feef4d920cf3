/*
 * smtpd.c - inbound SMTP sessions: the I/O around the protocol engine.
 *
 * One struct smtpd_session per client connection, driven by a libevent
 * bufferevent. Input is fed to smtpd_proto (the state machine); its output
 * goes to the bufferevent; its body bytes go to a spool (memory, then an
 * unnamed file); a complete message becomes a struct msg_tx handed to the
 * pipeline, and reading pauses until the pipeline answers.
 *
 * Limits here: total sessions (421 4.3.2 when full; the refusals are
 * logged once, then counted and logged at most once a second), idle time
 * (smtpd_timeout, 421 4.4.2), deadlines that no trickle of bytes resets
 * (smtpd_command_deadline for each command line, counted from the end of
 * the previous command; in DATA that plus the bytes received divided by
 * smtpd_min_data_rate, counted from the 354: 421 4.4.2), the input
 * high-water mark (the kernel's buffers hold the rest, so a fast client
 * cannot make us buffer a body in memory). A session that has said its
 * 421 but whose client does not read it is dropped after smtpd_timeout.
 *
 * Shutdown (smtpd_shutdown_all): a session idle after a transaction is
 * closed at once without a word: the client (Postfix's connection cache)
 * finds it closed when it probes it with RSET and opens a new connection,
 * which waits in the listening socket's backlog for the next process. A
 * 421 there would be read as the answer to the client's next command and
 * defer a message. A session in a transaction, or one that has not had its
 * first transaction yet, goes on; each is closed right after the answer
 * to its transaction, never with a 421.
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
#include <event2/event_struct.h>
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
    int used;            /* has had a transaction: a client may have cached it */
    size_t cmds_at_tx;   /* proto.ncommands when the last transaction was answered */
    int lingering;       /* shutdown: FIN sent, reading to EOF before the close */
    /* Deadlines (smtpd_command_deadline, smtpd_min_data_rate). */
    struct event *deadline_ev;
    double cmd_start;            /* the current command line's deadline counts from here */
    double data_start;           /* the 354 of the current DATA */
    size_t seen_ncommands;       /* proto.ncommands when cmd_start was set */
    enum smtpd_state seen_state; /* proto.state then */
    struct smtpd_session *next, *prev;
};

static void session_free(struct smtpd_session *s);
static void session_input(struct smtpd_session *s);
static void deadline_update(struct smtpd_session *s);
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
    s->used = 1;
    s->cmds_at_tx = s->proto.ncommands;
    if (strncmp(reply, "421", 3) == 0 || s->d->shutting_down) {
        /*
         * Overload: the reply said we close. Shutdown: the transaction is
         * answered; close now, before the client reuses the session.
         */
        s->proto.state = SMTPD_S_QUIT;
        ops_close(s);
    }
    if (!s->closing) {
        bufferevent_enable(s->bev, EV_READ);
        session_input(s); /* pipelined commands may be waiting */
    }
    deadline_update(s);
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

/*
 * Lingering close, while shutting down: a client that pipelined a command
 * after its end of data (Postfix sends RSET with "." on a session it means
 * to cache) has input we never read, and close() with unread input sends
 * a reset that can destroy our last reply before the client reads it. So:
 * FIN after the reply, discard what comes, close at the client's EOF or
 * after a second.
 */
static void
linger_read_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
}

static void
linger_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtpd_session *s = arg;
    (void)bev;
    (void)what;
    s->dead = 1;
    session_maybe_free(s);
}

static void
linger_start(struct smtpd_session *s)
{
    struct timeval one = {1, 0};
    s->lingering = 1;
    evtimer_del(s->deadline_ev);
    shutdown(bufferevent_getfd(s->bev), SHUT_WR);
    bufferevent_setcb(s->bev, linger_read_cb, NULL, linger_event_cb, s);
    bufferevent_set_timeouts(s->bev, &one, NULL);
    bufferevent_enable(s->bev, EV_READ);
    linger_read_cb(s->bev, s);
}

/* Free at the end of a callback once flagged and flushed. */
static void
session_maybe_free(struct smtpd_session *s)
{
    if (s->in_callback)
        return;
    if (s->dead) {
        session_free(s);
        return;
    }
    if (s->closing && !s->lingering &&
        evbuffer_get_length(bufferevent_get_output(s->bev)) == 0) {
        if (s->d->shutting_down)
            linger_start(s);
        else
            session_free(s);
    }
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
    deadline_update(s);
    session_maybe_free(s);
}

/*
 * Deadlines. After each input: a completed command (or a change of
 * state) starts the next command's deadline; DATA's runs from the 354 and
 * grows with the bytes received. No deadline while a verdict is awaited.
 */
static void
deadline_update(struct smtpd_session *s)
{
    const struct sr_config *c = services_config(&s->d->svc);
    enum smtpd_state st = s->proto.state;
    double now = clock_mono(), until;

    if (s->proto.ncommands != s->seen_ncommands || st != s->seen_state) {
        if (st == SMTPD_S_DATA && s->seen_state != SMTPD_S_DATA)
            s->data_start = now;
        s->cmd_start = now;
        s->seen_ncommands = s->proto.ncommands;
        s->seen_state = st;
    }
    if (c->smtpd_command_deadline <= 0 || s->closing || st == SMTPD_S_WAIT || st == SMTPD_S_QUIT ||
        (st == SMTPD_S_DATA && c->smtpd_min_data_rate <= 0)) {
        evtimer_del(s->deadline_ev);
        return;
    }
    if (st == SMTPD_S_DATA)
        until = s->data_start + (double)c->smtpd_command_deadline +
                (double)s->proto.data_size / (double)c->smtpd_min_data_rate;
    else
        until = s->cmd_start + (double)c->smtpd_command_deadline;
    double left = until > now ? until - now : 0;
    struct timeval tv = {(time_t)left, (suseconds_t)((left - (double)(time_t)left) * 1e6)};
    evtimer_add(s->deadline_ev, &tv);
}

/* Say 421 and close; a client that does not read it is dropped after smtpd_timeout. */
static void
session_timeout(struct smtpd_session *s)
{
    struct timeval tv = {services_config(&s->d->svc)->smtpd_timeout, 0};

    s->in_callback++;
    smtpd_proto_shutdown(&s->proto, "421 4.4.2 Error: timeout exceeded");
    s->in_callback--;
    evtimer_del(s->deadline_ev);
    bufferevent_set_timeouts(s->bev, NULL, &tv);
    session_maybe_free(s);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtpd_session *s = arg;
    enum smtpd_state st = s->proto.state;
    (void)fd;
    (void)what;

    if (s->closing || st == SMTPD_S_WAIT || st == SMTPD_S_QUIT)
        return;
    if (st == SMTPD_S_DATA)
        log_info("deadline exceeded in DATA from %s (%lld bytes in %.0fs; "
                 "smtpd_min_data_rate = %lld)",
                 s->addr, (long long)s->proto.data_size, clock_mono() - s->data_start,
                 (long long)services_config(&s->d->svc)->smtpd_min_data_rate);
    else
        log_info("deadline exceeded in a command from %s (%zu bytes of it in %.0fs; "
                 "smtpd_command_deadline = %llds)",
                 s->addr, s->proto.linelen, clock_mono() - s->cmd_start,
                 (long long)services_config(&s->d->svc)->smtpd_command_deadline);
    session_timeout(s);
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
        if (s->closing) {
            /* The client does not read our last words: drop it. */
            s->dead = 1;
            session_maybe_free(s);
            return;
        }
        if (s->proto.state == SMTPD_S_WAIT)
            return;
        log_info("timeout after %s from %s",
                 s->proto.state == SMTPD_S_DATA ? "DATA" : "command", s->addr);
        session_timeout(s);
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
    if (s->deadline_ev)
        event_free(s->deadline_ev);
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

/*
 * Refusals for max_connections: the first is logged, then they are counted
 * and a timer logs the count once a second while they go on (a flood of
 * connections must not become a flood of log lines).
 */
static struct {
    struct event ev;
    int assigned, armed;
    long refused; /* since the last line */
    struct daemon *d;
} busy;

static void
busy_cb(evutil_socket_t fd, short what, void *arg)
{
    struct timeval one = {1, 0};
    (void)fd;
    (void)what;
    (void)arg;

    if (busy.refused == 0) {
        busy.armed = 0;
        return;
    }
    log_warnx("too many connections (max_connections = %lld): %ld more client(s) refused "
              "in the last second",
              (long long)services_config(&busy.d->svc)->max_connections, busy.refused);
    busy.refused = 0;
    evtimer_add(&busy.ev, &one);
}

static void
busy_refused(struct daemon *d)
{
    struct timeval one = {1, 0};

    busy.d = d;
    if (busy.armed) {
        busy.refused++;
        return;
    }
    log_warnx("too many connections (max_connections = %lld), refusing a client "
              "(further refusals are counted once a second)",
              (long long)services_config(&d->svc)->max_connections);
    if (!busy.assigned) {
        evtimer_assign(&busy.ev, d->base, busy_cb, NULL);
        busy.assigned = 1;
    }
    busy.armed = 1;
    busy.refused = 0;
    evtimer_add(&busy.ev, &one);
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
        busy_refused(d);
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
    s->deadline_ev = evtimer_new(d->base, deadline_cb, s);
    if (s->deadline_ev == NULL ||
        smtpd_proto_init(&s->proto, &d->lim, &session_ops, s, s->addr, s->port) < 0) {
        if (s->deadline_ev)
            event_free(s->deadline_ev);
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
    s->seen_state = s->proto.state;
    s->cmd_start = clock_mono();
    deadline_update(s);
}

/*
 * Idle after a transaction, no command since (an RSET probe answered means
 * a MAIL is coming) and none on its way in: safe to close silently (once
 * the transaction's answer is out).
 */
static int
session_idle(struct smtpd_session *s)
{
    enum smtpd_state st = s->proto.state;
    char c;

    if (!s->used || s->closing || (st != SMTPD_S_IDLE && st != SMTPD_S_HELO) ||
        s->proto.ncommands != s->cmds_at_tx || s->proto.linelen > 0)
        return 0;
    if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0)
        return 0;
    ssize_t n = recv(bufferevent_getfd(s->bev), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return !(n > 0); /* data: a command is coming, answer it; EOF/error: gone anyway */
}

void
smtpd_shutdown_all(struct daemon *d)
{
    struct smtpd_session *s, *n;
    int closed = 0, inflight = 0;
    for (s = d->sessions; s; s = n) {
        n = s->next;
        if (!session_idle(s)) {
            inflight++; /* answered, then closed (tx_done) */
            continue;
        }
        closed++;
        if (evbuffer_get_length(bufferevent_get_output(s->bev)) > 0) {
            /* The last answer is still on its way out: close after it. */
            s->proto.state = SMTPD_S_QUIT;
            ops_close(s);
        } else {
            s->dead = 1;
        }
        session_maybe_free(s);
    }
    if (closed || inflight)
        log_info("shutdown: closed %d idle session(s); %d session(s) finish their "
                 "transaction first",
                 closed, inflight);
}
