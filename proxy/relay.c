/*
 * relay.c - delivery to the downstream MTA, the one delivery path used by
 * the first attempt (while the upstream waits) and by every retry from
 * the deferred queue.
 *
 * Public calls: relay_new, relay_configure, relay_submit, relay_busy,
 * relay_set_recovery_cb, relay_close_idle, relay_free.
 *
 * A struct relay owns a cache of SMTP client connections (at most
 * max_conns) and a FIFO of jobs waiting for one. Each connection runs an
 * explicit state machine (enum conn_state): connect, greeting, EHLO (HELO
 * when EHLO is refused), then transactions: [RSET] [XFORWARD] MAIL RCPT...
 * DATA, pipelined when the server offers PIPELINING, then the body,
 * dot-stuffed while it streams from the job's body source with
 * back-pressure (never more than ~64 kB buffered), then the end-of-data
 * reply. Idle connections are reused for the next job and closed with
 * QUIT after idle_time.
 *
 * Results are per recipient (RELAY_OK / TEMP / PERM with the reply) and
 * handed back through job->done, always from the event loop and never
 * from inside relay_submit. A connection that fails before any reply to
 * a job, after it served an earlier transaction, was stale: the job is
 * retried once on a fresh connection.
 *
 * First attempts come before retries from the deferred queue (job->retry):
 * they go ahead of every waiting retry, and while first attempts are
 * being relayed (or were, less than RETRY_PACE_WINDOW seconds ago)
 * retries hold at most RETRY_SHARE of the connections (at least one), so
 * a queue emptying 100,000 released messages takes a small share of the
 * connections and of the loop's time and the sessions keep their rate;
 * with no first attempts about, retries may use every connection. A first
 * attempt may still wait for a retry that started before it came, never
 * behind one that had not.
 *
 * Failures never abort: they become TEMP results ("connect to ...:
 * Connection refused", "lost connection ... while ...", timeouts).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "clock.h"
#include "log.h"
#include "relay.h"
#include "smtp_reply.h"

#define BODY_CHUNK 65536
#define OUT_HIGH 65536
#define RETRY_SHARE 10          /* retries hold max_conns / RETRY_SHARE connections (>= 1) ... */
#define RETRY_PACE_WINDOW 1.0   /* ... while first attempts were relayed this recently (s) */

enum conn_state {
    C_CONNECTING = 0,
    C_GREETING,
    C_EHLO,
    C_HELO,
    C_IDLE,
    C_TX,        /* waiting for replies to the command batch */
    C_DATA_SEND, /* streaming the body */
    C_DATA_END,  /* waiting for the end-of-data reply */
    C_QUIT,      /* closing after QUIT is flushed */
    C_RSET,      /* after a failed transaction: RSET before caching */
};

static const char *const conn_state_what[] = {
    "connecting", "receiving the initial server greeting", "performing the EHLO handshake",
    "performing the HELO handshake", "idle", "sending the envelope", "sending message content",
    "sending end of data", "closing", "resetting the session"};

enum exp_kind { E_RSET, E_XFORWARD, E_MAIL, E_RCPT, E_DATA };

struct relay_conn {
    struct relay *r;
    struct bufferevent *bev;
    enum conn_state state;
    struct smtp_reply_parser rp;
    unsigned ext_pipelining : 1, ext_8bit : 1, ext_dsn : 1, ext_xforward : 1, ext_smtputf8 : 1,
        ext_size : 1;
    unsigned xf_attrs;      /* XFORWARD attributes the server announced (1 << enum xf_attr) */
    int ntx;   /* transactions started on this connection */
    int dirty; /* RSET before the next MAIL */
    struct relay_job *job;
    /* Transaction bookkeeping. */
    struct { enum exp_kind kind; int idx; } *exp;
    int nexp, curexp, exp_cap;
    char *cmds;             /* the batch, for servers without PIPELINING */
    size_t *cmd_off;        /* start of each command in cmds */
    int got_reply;          /* a reply arrived during this job */
    int mail_failed;
    int naccepted;
    off_t body_off;
    int prefix_sent;
    int at_line_start, last_lf;
    struct event *idle_ev;
    int busy;               /* conn_read_cb is looping: conn_free defers free() */
    int dead;               /* conn_free ran while busy */
    struct relay_conn *next, *prev;
    double t_setup_start;
};

struct relay {
    struct event_base *base;
    struct sockaddr_storage ss;
    int sslen;
    char name[128];
    char helo[256];
    int max_conns, connect_timeout, cmd_timeout, data_timeout, idle_time;
    struct relay_conn *conns; /* all connections */
    int nconns;
    struct relay_job *qhead, *qtail; /* waiting for a connection: first attempts, then retries */
    struct relay_job *fg_tail;       /* the last first attempt waiting, or NULL */
    int nfg;                   /* first attempts submitted and not finished */
    int nretry_running;        /* retries holding a connection */
    double fg_last;            /* clock_mono() when a first attempt was last submitted or finished */
    int nwaiting;              /* jobs waiting for a connection */
    int nactive;               /* jobs submitted and not finished */
    int dispatching;
    int down;                  /* last connection attempt failed */
    time_t down_since;         /* when down became 1 */
    void (*recovery_cb)(void *);
    void *recovery_arg;
    struct event *defer_ev;    /* runs completions outside relay_submit */
    struct relay_job *done_head, *done_tail;
};

static void conn_start_job(struct relay_conn *c);
static void conn_send_tx(struct relay_conn *c);
static void conn_free(struct relay_conn *c);
static void relay_dispatch(struct relay *r);

/*
 * The wait list: first attempts in their order, then retries in theirs.
 * front puts a job back at the head of its class (a stale connection's
 * job, tried again at once).
 */
static void
wait_push(struct relay *r, struct relay_job *j, int front)
{
    struct relay_job **link, *after;
    if (!j->retry) {
        after = front ? NULL : r->fg_tail;
        if (!front || r->fg_tail == NULL)
            r->fg_tail = j;
    } else {
        after = front ? r->fg_tail : r->qtail;
    }
    link = after ? &after->next : &r->qhead;
    j->next = *link;
    *link = j;
    if (j->next == NULL)
        r->qtail = j;
    r->nwaiting++;
}

static struct relay_job *
wait_pop(struct relay *r)
{
    struct relay_job *j = r->qhead;
    r->qhead = j->next;
    if (r->qhead == NULL)
        r->qtail = NULL;
    if (r->fg_tail == j)
        r->fg_tail = NULL;
    r->nwaiting--;
    j->next = NULL;
    if (j->retry)
        r->nretry_running++;
    return j;
}

/* May the head of the wait list take a connection now? Retries are paced (top of file). */
static int
may_start(const struct relay *r)
{
    const struct relay_job *j = r->qhead;
    if (j == NULL || !j->retry)
        return j != NULL;
    int share = r->max_conns / RETRY_SHARE;
    if (share < 1)
        share = 1;
    if (r->nretry_running < share)
        return 1;
    return r->nfg == 0 && clock_mono() - r->fg_last >= RETRY_PACE_WINDOW;
}

/*
 * Address and settings.
 */
static int
relay_set_addr(struct relay *r, const char *addr, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &len) < 0) {
        snprintf(err, errlen, "relay: bad address '%s' (use IP:PORT or [IPv6]:PORT)", addr);
        return -1;
    }
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        port = ntohs(sin->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        port = ntohs(sin6->sin6_port);
    }
    if (port == 0) {
        snprintf(err, errlen, "relay: '%s' needs a port", addr);
        return -1;
    }
    r->ss = ss;
    r->sslen = len;
    snprintf(r->name, sizeof(r->name), "%s[%s]:%d", host, host, port);
    return 0;
}

int
relay_configure(struct relay *r, const char *relay_addr, const char *helo_name, int max_conns,
                int connect_timeout, int cmd_timeout, int data_timeout, int idle_time, char *err,
                size_t errlen)
{
    char oldname[128];
    snprintf(oldname, sizeof(oldname), "%s", r->name);
    if (relay_set_addr(r, relay_addr, err, errlen) < 0)
        return -1;
    snprintf(r->helo, sizeof(r->helo), "%s", helo_name);
    r->max_conns = max_conns;
    r->connect_timeout = connect_timeout;
    r->cmd_timeout = cmd_timeout;
    r->data_timeout = data_timeout;
    r->idle_time = idle_time;
    if (oldname[0] && strcmp(oldname, r->name) != 0)
        relay_close_idle(r);
    return 0;
}

/* The downstream stopped answering: remember since when (status, metrics). */
static void
relay_mark_down(struct relay *r)
{
    if (!r->down)
        r->down_since = time(NULL);
    r->down = 1;
}

static void
defer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct relay *r = arg;
    (void)fd;
    (void)what;
    while (r->done_head) {
        struct relay_job *j = r->done_head;
        r->done_head = j->next;
        if (r->done_head == NULL)
            r->done_tail = NULL;
        j->next = NULL;
        j->done(j, j->arg);
    }
}

struct relay *
relay_new(struct event_base *base, const char *relay_addr, const char *helo_name, int max_conns,
          int connect_timeout, int cmd_timeout, int data_timeout, int idle_time, char *err,
          size_t errlen)
{
    struct relay *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->base = base;
    r->defer_ev = event_new(base, -1, 0, defer_cb, r);
    if (r->defer_ev == NULL ||
        relay_configure(r, relay_addr, helo_name, max_conns, connect_timeout, cmd_timeout,
                        data_timeout, idle_time, err, errlen) < 0) {
        if (r->defer_ev)
            event_free(r->defer_ev);
        free(r);
        return NULL;
    }
    return r;
}

void
relay_set_recovery_cb(struct relay *r, void (*cb)(void *arg), void *arg)
{
    r->recovery_cb = cb;
    r->recovery_arg = arg;
}

int
relay_down(const struct relay *r)
{
    return r->down;
}

time_t
relay_down_since(const struct relay *r)
{
    return r->down ? r->down_since : 0;
}

const char *
relay_name(const struct relay *r)
{
    return r->name;
}

int
relay_busy(const struct relay *r)
{
    return r->nactive;
}

/*
 * Job completion: queued and run from the loop.
 */
static void
job_finish(struct relay *r, struct relay_job *j)
{
    j->t_xfer = clock_mono() - j->t_start - j->t_wait - j->t_conn;
    if (j->t_xfer < 0)
        j->t_xfer = 0;
    r->nactive--;
    if (j->retry)
        r->nretry_running--;
    else {
        r->nfg--;
        r->fg_last = clock_mono();
    }
    j->next = NULL;
    if (r->done_tail)
        r->done_tail->next = j;
    else
        r->done_head = j;
    r->done_tail = j;
    event_active(r->defer_ev, 0, 0);
}

/* Derive an enhanced status code when the server gave none. */
static void
set_result(struct relay_rcpt_result *res, enum relay_class cls, int code, const char *dsn,
           const char *text)
{
    res->cls = cls;
    res->code = code;
    if (dsn && *dsn)
        snprintf(res->dsn, sizeof(res->dsn), "%s", dsn);
    else
        snprintf(res->dsn, sizeof(res->dsn), "%s",
                 cls == RELAY_OK ? "2.0.0" : cls == RELAY_TEMP ? "4.0.0" : "5.0.0");
    snprintf(res->text, sizeof(res->text), "%s", text);
}

static enum relay_class
class_of(int code)
{
    if (code >= 200 && code < 400)
        return RELAY_OK;
    if (code >= 500 && code < 600)
        return RELAY_PERM;
    return RELAY_TEMP;
}

/* Remember the first permanent reply in full (CRLF-joined) for the upstream. */
static void
note_perm(struct relay_job *j, const struct smtp_reply *rep)
{
    if (j->perm_reply[0] || class_of(rep->code) != RELAY_PERM)
        return;
    size_t o = 0;
    for (size_t i = 0; i < rep->len && o + 3 < sizeof(j->perm_reply); i++) {
        if (rep->text[i] == '\n') {
            j->perm_reply[o++] = '\r';
            j->perm_reply[o++] = '\n';
        } else {
            j->perm_reply[o++] = rep->text[i];
        }
    }
    j->perm_reply[o] = '\0';
}

static int
rcpt_tried(const struct envelope *env, size_t i)
{
    return env->rcpt[i].state == RCPT_PENDING || env->rcpt[i].state == RCPT_DEFERRED;
}

/* Apply one reply to every tried recipient still pending (cls unset: code 0 marker). */
static void
apply_all(struct relay_conn *c, const struct smtp_reply *rep, int only_accepted)
{
    struct relay_job *j = c->job;
    char first[512], dsn[16];
    smtp_reply_first_line(rep, first, sizeof(first));
    smtp_reply_enhanced(rep, dsn, sizeof(dsn));
    for (size_t i = 0; i < j->env->nrcpt; i++) {
        if (!rcpt_tried(j->env, i))
            continue;
        if (only_accepted && !(j->res[i].cls == RELAY_OK && j->res[i].code > 0))
            continue;
        if (!only_accepted && j->res[i].code != 0)
            continue;
        set_result(&j->res[i], class_of(rep->code), rep->code, dsn, first);
    }
    note_perm(j, rep);
}

/* Connection-level failure: every unfinished recipient gets TEMP with text. */
static void
fail_unfinished(struct relay_job *j, const char *text, const char *dsn)
{
    for (size_t i = 0; i < j->env->nrcpt; i++) {
        if (!rcpt_tried(j->env, i))
            continue;
        /* PERM from RCPT stays; accepted-but-unconfirmed and pending become TEMP. */
        if (j->res[i].code != 0 && j->res[i].cls == RELAY_PERM)
            continue;
        set_result(&j->res[i], RELAY_TEMP, 0, dsn, text);
    }
}

/* A connection broke; finish or retry its job, and free it. */
static void
conn_fail(struct relay_conn *c, const char *why, int stale_ok)
{
    struct relay *r = c->r;
    struct relay_job *j = c->job;
    char text[512];

    if (j) {
        c->job = NULL;
        if (stale_ok && c->ntx > 1 && !c->got_reply && !j->retried) {
            /* A cached connection the server had closed: try once more. */
            j->retried = 1;
            memset(j->res, 0, sizeof(*j->res) * j->env->nrcpt);
            if (j->retry)
                r->nretry_running--;
            wait_push(r, j, 1);
        } else {
            if (c->state == C_CONNECTING)
                snprintf(text, sizeof(text), "connect to %s: %s", r->name, why);
            else
                snprintf(text, sizeof(text), "lost connection with %s while %s: %s", r->name,
                         conn_state_what[c->state], why);
            fail_unfinished(j, text, c->state == C_CONNECTING ? "4.4.1" : "4.4.2");
            if (c->state <= C_HELO)
                j->t_conn = clock_mono() - j->t_start - j->t_wait;
            job_finish(r, j);
        }
    }
    if (c->state <= C_HELO)
        relay_mark_down(r);
    conn_free(c);
    relay_dispatch(r);
}

static void
conn_free(struct relay_conn *c)
{
    struct relay *r = c->r;
    if (c->prev)
        c->prev->next = c->next;
    else
        r->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    r->nconns--;
    if (c->idle_ev)
        event_free(c->idle_ev);
    if (c->bev)
        bufferevent_free(c->bev);
    free(c->exp);
    free(c->cmds);
    free(c->cmd_off);
    c->bev = NULL;
    c->idle_ev = NULL;
    c->exp = NULL;
    c->cmds = NULL;
    c->cmd_off = NULL;
    if (c->busy)
        c->dead = 1;
    else
        free(c);
}

static void
conn_write(struct relay_conn *c, const char *s, size_t n)
{
    bufferevent_write(c->bev, s, n);
}

static void
conn_printf(struct relay_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
conn_printf(struct relay_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
    va_end(ap);
}

static void
conn_set_timeout(struct relay_conn *c, int rsec)
{
    struct timeval rt = {rsec, 0}, wt = {c->r->cmd_timeout, 0};
    bufferevent_set_timeouts(c->bev, &rt, &wt);
}

/*
 * Idle connections.
 */
static void
idle_cb(evutil_socket_t fd, short what, void *arg)
{
    struct relay_conn *c = arg;
    (void)fd;
    (void)what;
    if (c->state != C_IDLE)
        return;
    c->state = C_QUIT;
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    conn_write(c, "QUIT\r\n", 6);
    bufferevent_disable(c->bev, EV_READ);
}

static void
conn_go_idle(struct relay_conn *c)
{
    struct relay *r = c->r;
    c->state = C_IDLE;
    c->job = NULL;
    if (may_start(r)) {
        conn_start_job(c);
        /* Pacing may have held retries back: other idle connections may take them now. */
        relay_dispatch(r);
        return;
    }
    if (c->dirty) {
        /* Reset the server's state now, not when the next job comes. */
        c->state = C_RSET;
        conn_set_timeout(c, r->cmd_timeout);
        conn_write(c, "RSET\r\n", 6);
        return;
    }
    struct timeval tv = {r->idle_time, 0};
    /* No read timeout while idle: the idle timer decides. */
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    if (c->idle_ev == NULL)
        c->idle_ev = evtimer_new(r->base, idle_cb, c);
    if (c->idle_ev)
        evtimer_add(c->idle_ev, &tv);
}

/*
 * Transactions.
 */
static int
exp_push(struct relay_conn *c, enum exp_kind k, int idx, size_t cmdoff)
{
    if (c->nexp == c->exp_cap) {
        int ncap = c->exp_cap ? c->exp_cap * 2 : 16;
        void *n1 = realloc(c->exp, (size_t)ncap * sizeof(*c->exp));
        if (n1 == NULL)
            return -1;
        c->exp = n1;
        size_t *n2 = realloc(c->cmd_off, (size_t)(ncap + 1) * sizeof(size_t));
        if (n2 == NULL)
            return -1;
        c->cmd_off = n2;
        c->exp_cap = ncap;
    }
    c->exp[c->nexp].kind = k;
    c->exp[c->nexp].idx = idx;
    c->cmd_off[c->nexp] = cmdoff;
    c->nexp++;
    return 0;
}

/* Build the command batch of the job into one buffer. */
static int
build_batch(struct relay_conn *c, struct evbuffer *out)
{
    struct relay_job *j = c->job;
    const struct envelope *env = j->env;

    c->nexp = c->curexp = 0;
    if (c->dirty) {
        if (exp_push(c, E_RSET, 0, evbuffer_get_length(out)) < 0)
            return -1;
        evbuffer_add_printf(out, "RSET\r\n");
    }
    if (c->ext_xforward) {
        char line[600];
        size_t ll = 0;
        for (int a = 0; a < XF_COUNT; a++) {
            if (env->xforward[a] == NULL || !(c->xf_attrs & (1u << a)))
                continue;
            char *v = xtext_encode(env->xforward[a]);
            if (v == NULL)
                return -1;
            char attr[300];
            snprintf(attr, sizeof(attr), " %s=%.250s", xf_attr_names[a], v);
            free(v);
            if (ll && ll + strlen(attr) > 500) {
                if (exp_push(c, E_XFORWARD, 0, evbuffer_get_length(out)) < 0)
                    return -1;
                evbuffer_add_printf(out, "XFORWARD%s\r\n", line);
                ll = 0;
            }
            memcpy(line + ll, attr, strlen(attr) + 1);
            ll += strlen(attr);
        }
        if (ll) {
            if (exp_push(c, E_XFORWARD, 0, evbuffer_get_length(out)) < 0)
                return -1;
            evbuffer_add_printf(out, "XFORWARD%s\r\n", line);
        }
    }
    if (exp_push(c, E_MAIL, 0, evbuffer_get_length(out)) < 0)
        return -1;
    evbuffer_add_printf(out, "MAIL FROM:<%s>", env->sender ? env->sender : "");
    if (c->ext_size)
        evbuffer_add_printf(out, " SIZE=%lld", (long long)(j->body.size + (off_t)j->prefixlen));
    if (c->ext_8bit && env->body == BODY_8BITMIME)
        evbuffer_add_printf(out, " BODY=8BITMIME");
    else if (c->ext_8bit && env->body == BODY_7BIT)
        evbuffer_add_printf(out, " BODY=7BIT");
    if (c->ext_smtputf8 && env->smtputf8)
        evbuffer_add_printf(out, " SMTPUTF8");
    if (c->ext_dsn) {
        if (env->ret != DSN_RET_NONE)
            evbuffer_add_printf(out, " RET=%s", env->ret == DSN_RET_FULL ? "FULL" : "HDRS");
        if (env->envid)
            evbuffer_add_printf(out, " ENVID=%s", env->envid);
    }
    evbuffer_add_printf(out, "\r\n");
    j->ntried = 0;
    for (size_t i = 0; i < env->nrcpt; i++) {
        if (!rcpt_tried(env, i))
            continue;
        if (exp_push(c, E_RCPT, (int)i, evbuffer_get_length(out)) < 0)
            return -1;
        j->ntried++;
        evbuffer_add_printf(out, "RCPT TO:<%s>", env->rcpt[i].addr);
        if (c->ext_dsn) {
            if (env->rcpt[i].notify) {
                char nb[64];
                dsn_notify_format(env->rcpt[i].notify, nb, sizeof(nb));
                evbuffer_add_printf(out, " NOTIFY=%s", nb);
            }
            if (env->rcpt[i].orcpt)
                evbuffer_add_printf(out, " ORCPT=%s", env->rcpt[i].orcpt);
        }
        evbuffer_add_printf(out, "\r\n");
    }
    if (exp_push(c, E_DATA, 0, evbuffer_get_length(out)) < 0)
        return -1;
    evbuffer_add_printf(out, "DATA\r\n");
    c->cmd_off[c->nexp] = evbuffer_get_length(out);
    return 0;
}

/* Does the envelope hold non-ASCII addresses (RFC 6531)? */
static int
needs_smtputf8(const struct envelope *env)
{
    for (const unsigned char *p = (const unsigned char *)env->sender; p && *p; p++)
        if (*p >= 0x80)
            return 1;
    for (size_t i = 0; i < env->nrcpt; i++) {
        if (!rcpt_tried(env, i))
            continue;
        for (const unsigned char *p = (const unsigned char *)env->rcpt[i].addr; *p; p++)
            if (*p >= 0x80)
                return 1;
    }
    return 0;
}

static void
conn_start_job(struct relay_conn *c)
{
    struct relay *r = c->r;
    struct relay_job *j = wait_pop(r);

    c->job = j;
    if (c->idle_ev)
        evtimer_del(c->idle_ev);
    j->t_wait = clock_mono() - j->t_start;
    j->t_conn = 0; /* a cached connection */
    snprintf(j->relay_name, sizeof(j->relay_name), "%s", r->name);
    conn_send_tx(c);
}

/* Start the transaction of the attached job on a ready (idle) connection. */
static void
conn_send_tx(struct relay_conn *c)
{
    struct relay *r = c->r;
    struct relay_job *j = c->job;

    c->got_reply = 0;
    c->mail_failed = 0;
    c->naccepted = 0;
    c->ntx++;

    /* SMTPUTF8 mail with UTF-8 addresses cannot go to a server without it (RFC 6531 3.2). */
    if (j->env->smtputf8 && !c->ext_smtputf8 && needs_smtputf8(j->env)) {
        char text[300];
        snprintf(text, sizeof(text),
                 "554 5.6.7 SMTPUTF8 is required, but was not offered by host %s", r->name);
        for (size_t i = 0; i < j->env->nrcpt; i++)
            if (rcpt_tried(j->env, i))
                set_result(&j->res[i], RELAY_PERM, 554, "5.6.7", text);
        snprintf(j->perm_reply, sizeof(j->perm_reply), "%s", text);
        c->job = NULL;
        job_finish(r, j);
        conn_go_idle(c);
        return;
    }

    struct evbuffer *batch = evbuffer_new();
    if (batch == NULL || build_batch(c, batch) < 0) {
        if (batch)
            evbuffer_free(batch);
        conn_fail(c, "out of memory", 0);
        return;
    }
    c->state = C_TX;
    conn_set_timeout(c, r->cmd_timeout);
    if (c->ext_pipelining) {
        bufferevent_write_buffer(c->bev, batch);
    } else {
        size_t total = evbuffer_get_length(batch);
        free(c->cmds);
        c->cmds = malloc(total + 1);
        if (c->cmds == NULL) {
            evbuffer_free(batch);
            conn_fail(c, "out of memory", 0);
            return;
        }
        evbuffer_remove(batch, c->cmds, total);
        conn_write(c, c->cmds + c->cmd_off[0], c->cmd_off[1] - c->cmd_off[0]);
    }
    evbuffer_free(batch);
}

/* Add body bytes to the output, dot-stuffed, while below the high-water mark. */
static void
conn_fill_body(struct relay_conn *c)
{
    struct relay_job *j = c->job;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char buf[BODY_CHUNK];

    while (evbuffer_get_length(out) < OUT_HIGH) {
        const char *p;
        size_t n;
        if (!c->prefix_sent) {
            c->prefix_sent = 1;
            if (j->prefix == NULL || j->prefixlen == 0)
                continue;
            p = j->prefix;
            n = j->prefixlen;
        } else if (c->body_off < j->body.size) {
            ssize_t got = j->body.pread(j->body.ctx, buf, sizeof(buf), c->body_off);
            if (got <= 0) {
                log_warnx("%s: cannot read message content: %s", j->qid,
                          got < 0 ? strerror(errno) : "unexpected end");
                conn_fail(c, "local error reading the message content", 0);
                return;
            }
            c->body_off += got;
            p = buf;
            n = (size_t)got;
        } else {
            if (!c->last_lf)
                evbuffer_add(out, "\r\n", 2);
            evbuffer_add(out, ".\r\n", 3);
            c->state = C_DATA_END;
            conn_set_timeout(c, c->r->data_timeout);
            return;
        }
        /* Dot-stuff: a line starting with '.' gets another one. */
        size_t i = 0, s = 0;
        while (i < n) {
            if (c->at_line_start && p[i] == '.') {
                evbuffer_add(out, p + s, i - s);
                evbuffer_add(out, ".", 1);
                s = i;
            }
            c->at_line_start = 0;
            const char *nl = memchr(p + i, '\n', n - i);
            if (nl == NULL)
                break;
            i = (size_t)(nl - p) + 1;
            c->at_line_start = 1;
        }
        evbuffer_add(out, p + s, n - s);
        c->last_lf = p[n - 1] == '\n';
    }
}

static void
conn_start_body(struct relay_conn *c)
{
    c->state = C_DATA_SEND;
    c->body_off = 0;
    c->prefix_sent = 0;
    c->at_line_start = 1;
    c->last_lf = 1;
    conn_fill_body(c);
}

/* One complete reply during a transaction. */
static void
tx_reply(struct relay_conn *c, const struct smtp_reply *rep)
{
    struct relay_job *j = c->job;
    char first[512], dsn[16];

    if (c->curexp >= c->nexp) {
        conn_fail(c, "unexpected reply", 0);
        return;
    }
    enum exp_kind k = c->exp[c->curexp].kind;
    int idx = c->exp[c->curexp].idx;
    c->curexp++;
    smtp_reply_first_line(rep, first, sizeof(first));
    smtp_reply_enhanced(rep, dsn, sizeof(dsn));

    switch (k) {
    case E_RSET:
        if (rep->code / 100 != 2) {
            conn_fail(c, first, 0);
            return;
        }
        break;
    case E_XFORWARD:
    case E_MAIL:
        if (rep->code / 100 != 2 && !c->mail_failed) {
            c->mail_failed = 1;
            apply_all(c, rep, 0);
        }
        break;
    case E_RCPT:
        if (c->mail_failed)
            break;
        set_result(&j->res[idx], class_of(rep->code), rep->code, dsn, first);
        if (rep->code / 100 == 2)
            c->naccepted++;
        else
            note_perm(j, rep);
        break;
    case E_DATA:
        c->dirty = 1;
        if (rep->code == 354) {
            if (c->mail_failed || c->naccepted == 0) {
                /* 354 although no recipient was accepted (e.g. smtp-sink):
                 * drop the connection rather than send an empty message. */
                struct relay *r = c->r;
                c->job = NULL;
                job_finish(r, j);
                conn_free(c);
                relay_dispatch(r);
                return;
            }
            conn_start_body(c);
            return;
        }
        if (!c->mail_failed && c->naccepted > 0)
            apply_all(c, rep, 1);
        job_finish(c->r, j);
        conn_go_idle(c);
        return;
    }
    /* Without PIPELINING, send the next command now. */
    if (!c->ext_pipelining && c->curexp < c->nexp)
        conn_write(c, c->cmds + c->cmd_off[c->curexp],
                   c->cmd_off[c->curexp + 1] - c->cmd_off[c->curexp]);
}

/* EHLO reply: note the extensions. */
static void
parse_ehlo(struct relay_conn *c, const struct smtp_reply *rep)
{
    const char *p = rep->text;
    c->ext_pipelining = c->ext_8bit = c->ext_dsn = c->ext_xforward = c->ext_smtputf8 =
        c->ext_size = 0;
    int first = 1;
    while (p && *p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (!first && n > 4) {
            const char *kw = p + 4;
            size_t kl = n - 4;
            const char *sp = memchr(kw, ' ', kl);
            size_t wl = sp ? (size_t)(sp - kw) : kl;
#define KW(s) (wl == sizeof(s) - 1 && strncasecmp(kw, s, wl) == 0)
            if (KW("PIPELINING"))
                c->ext_pipelining = 1;
            else if (KW("8BITMIME"))
                c->ext_8bit = 1;
            else if (KW("DSN"))
                c->ext_dsn = 1;
            else if (KW("XFORWARD")) {
                /* Send only the attributes the server names. */
                c->ext_xforward = 1;
                c->xf_attrs = 0;
                const char *q = kw + wl;
                const char *end = kw + kl;
                while (q < end) {
                    while (q < end && *q == ' ')
                        q++;
                    const char *w = q;
                    while (q < end && *q != ' ')
                        q++;
                    for (int a = 0; a < XF_COUNT; a++)
                        if ((size_t)(q - w) == strlen(xf_attr_names[a]) &&
                            strncasecmp(w, xf_attr_names[a], (size_t)(q - w)) == 0)
                            c->xf_attrs |= 1u << a;
                }
            }
            else if (KW("SMTPUTF8"))
                c->ext_smtputf8 = 1;
            else if (KW("SIZE"))
                c->ext_size = 1;
#undef KW
        }
        first = 0;
        p = e ? e + 1 : NULL;
    }
}

/* Handshake finished: the connection is usable. */
static void
conn_ready(struct relay_conn *c)
{
    struct relay *r = c->r;
    if (r->down) {
        r->down = 0;
        log_info("connection to %s restored", r->name);
        if (r->recovery_cb)
            r->recovery_cb(r->recovery_arg);
    }
    if (c->job) {
        /* The job this connection was opened for. */
        c->job->t_conn = clock_mono() - c->t_setup_start;
        c->state = C_IDLE;
        conn_send_tx(c);
        return;
    }
    conn_go_idle(c);
}

/* A reply before any transaction (greeting, EHLO, HELO). */
static void
setup_reply(struct relay_conn *c, const struct smtp_reply *rep)
{
    char first[512];
    smtp_reply_first_line(rep, first, sizeof(first));

    switch (c->state) {
    case C_GREETING:
        if (rep->code != 220)
            goto refused;
        c->state = C_EHLO;
        conn_printf(c, "EHLO %s\r\n", c->r->helo);
        return;
    case C_EHLO:
        if (rep->code / 100 == 2) {
            parse_ehlo(c, rep);
            conn_ready(c);
            return;
        }
        if (rep->code / 100 == 5) {
            c->state = C_HELO;
            conn_printf(c, "HELO %s\r\n", c->r->helo);
            return;
        }
        goto refused;
    case C_HELO:
        if (rep->code / 100 == 2) {
            c->ext_pipelining = c->ext_8bit = c->ext_dsn = c->ext_xforward = 0;
            c->ext_smtputf8 = c->ext_size = 0;
            conn_ready(c);
            return;
        }
        goto refused;
    case C_QUIT:
        return;
    default:
        conn_fail(c, "unexpected reply", 0);
        return;
    }

refused:
    /* The server refused us before any transaction: answer the job with its reply. */
    if (c->job) {
        struct relay_job *j = c->job;
        char text[700];
        snprintf(text, sizeof(text), "host %s refused to talk to me: %s", c->r->name, first);
        for (size_t i = 0; i < j->env->nrcpt; i++)
            if (rcpt_tried(j->env, i)) {
                char dsn[16];
                smtp_reply_enhanced(rep, dsn, sizeof(dsn));
                set_result(&j->res[i], class_of(rep->code), rep->code, dsn, text);
            }
        note_perm(j, rep);
        j->t_conn = clock_mono() - c->t_setup_start;
        c->job = NULL;
        job_finish(c->r, j);
    }
    if (rep->code / 100 != 5)
        relay_mark_down(c->r);
    c->state = C_QUIT;
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    conn_write(c, "QUIT\r\n", 6);
    bufferevent_disable(c->bev, EV_READ);
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct relay_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    c->busy = 1;
    while (!c->dead && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        int done = 0;
        size_t used = smtp_reply_feed(&c->rp, v.iov_base, v.iov_len, &done);
        evbuffer_drain(in, used);
        if (!done)
            continue;
        if (c->rp.error) {
            conn_fail(c, "malformed reply", 0);
            return;
        }
        struct smtp_reply rep = c->rp.cur; /* handlers may start a new reply */
        if (c->job)
            c->got_reply = 1;
        switch (c->state) {
        case C_TX:
            tx_reply(c, &rep);
            break;
        case C_DATA_END:
            if (c->naccepted > 0) {
                apply_all(c, &rep, 1);
            }
            c->dirty = rep.code / 100 != 2;
            job_finish(c->r, c->job);
            conn_go_idle(c);
            break;
        case C_DATA_SEND:
            /* A reply while we send the body: the server gave up on us. */
            conn_fail(c, "server replied during message content", 0);
            return;
        case C_IDLE:
            /* e.g. 421 timeout from the server: drop the connection. */
            conn_free(c);
            return;
        case C_RSET:
            if (rep.code / 100 != 2) {
                conn_free(c);
                return;
            }
            c->dirty = 0;
            conn_go_idle(c);
            break;
        default:
            setup_reply(c, &rep);
            break;
        }
        /* The handlers may have freed c (conn_fail): the loop checks. */
    }
    c->busy = 0;
    if (c->dead)
        free(c);
}

static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct relay_conn *c = arg;
    if (c->state == C_DATA_SEND)
        conn_fill_body(c);
    else if (c->state == C_QUIT && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_free(c);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct relay_conn *c = arg;
    (void)bev;

    if (what & BEV_EVENT_CONNECTED) {
        c->state = C_GREETING;
        conn_set_timeout(c, c->r->cmd_timeout);
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        return;
    }
    if (c->state == C_QUIT || (c->state == C_IDLE && c->job == NULL)) {
        struct relay *r = c->r;
        conn_free(c);
        relay_dispatch(r);
        return;
    }
    const char *why;
    char ebuf[128];
    if (what & BEV_EVENT_TIMEOUT) {
        why = c->state == C_CONNECTING ? "Connection timed out" : "conversation timed out";
    } else if (what & BEV_EVENT_EOF) {
        why = "Connection closed by remote server";
    } else {
        int e = EVUTIL_SOCKET_ERROR();
        snprintf(ebuf, sizeof(ebuf), "%s", e ? evutil_socket_error_to_string(e) : "I/O error");
        why = ebuf;
    }
    conn_fail(c, why, 1);
}

/* Open a new connection carrying the first waiting job. */
static void
conn_open(struct relay *r)
{
    struct relay_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->r = r;
    c->bev = bufferevent_socket_new(r->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        free(c);
        return;
    }
    smtp_reply_parser_init(&c->rp);
    c->next = r->conns;
    if (r->conns)
        r->conns->prev = c;
    r->conns = c;
    r->nconns++;
    c->state = C_CONNECTING;
    c->t_setup_start = clock_mono();
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, OUT_HIGH / 2, 0);
    struct timeval ct = {r->connect_timeout, 0};
    bufferevent_set_timeouts(c->bev, &ct, &ct);

    /* Take the job now so a later dispatch does not open another connection for it. */
    struct relay_job *j = wait_pop(r);
    j->t_wait = clock_mono() - j->t_start;
    snprintf(j->relay_name, sizeof(j->relay_name), "%s", r->name);
    c->job = j;
    c->ntx = 0;

    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&r->ss, r->sslen) < 0) {
        /* conn_event_cb was not called; fail here. */
        conn_fail(c, strerror(errno ? errno : ECONNREFUSED), 0);
    }
}

/* Hand waiting jobs to idle connections or new ones. */
static void
relay_dispatch(struct relay *r)
{
    if (r->dispatching)
        return;
    r->dispatching = 1;
    while (may_start(r)) {
        struct relay_conn *idle = NULL;
        for (struct relay_conn *c = r->conns; c; c = c->next)
            if (c->state == C_IDLE && c->job == NULL) {
                idle = c;
                break;
            }
        if (idle) {
            conn_start_job(idle);
            continue;
        }
        if (r->nconns >= r->max_conns)
            break;
        int before = r->nwaiting;
        conn_open(r);
        if (r->nwaiting == before)
            break; /* could not even allocate */
    }
    r->dispatching = 0;
}

int
relay_submit(struct relay *r, struct relay_job *job)
{
    job->next = NULL;
    job->retried = 0;
    job->t_start = clock_mono();
    job->t_wait = job->t_conn = job->t_xfer = 0;
    job->perm_reply[0] = '\0';
    job->ntried = 0;
    memset(job->res, 0, sizeof(*job->res) * job->env->nrcpt);
    if (!job->retry) {
        r->nfg++;
        r->fg_last = job->t_start;
    }
    wait_push(r, job, 0);
    r->nactive++;
    relay_dispatch(r);
    return 0;
}

void
relay_close_idle(struct relay *r)
{
    struct relay_conn *c = r->conns, *n;
    for (; c; c = n) {
        n = c->next;
        if (c->state == C_IDLE && c->job == NULL)
            idle_cb(-1, 0, c);
    }
}

void
relay_free(struct relay *r)
{
    if (r == NULL)
        return;
    while (r->conns)
        conn_free(r->conns);
    if (r->defer_ev)
        event_free(r->defer_ev);
    free(r);
}
