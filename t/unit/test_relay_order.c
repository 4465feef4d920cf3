/*
 * test_relay_order.c - proxy/relay.c: first attempts before queue retries.
 *
 * A small SMTP server on the same event loop (loopback, ephemeral port)
 * records the order of MAIL commands and how many retry transactions run
 * at once. Checks: a first attempt submitted after waiting retries is
 * served before them; while a first attempt is being relayed, retries
 * hold at most max_conns / 10 connections (one here), not all of them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "envelope.h"
#include "relay.h"

#define NJOBS 8

struct srv {
    struct event_base *base;
    char order[NJOBS * 4];  /* one letter per MAIL: 'f' first attempt, 'r' retry */
    int retries_now, retries_max, retries_done;
    int hold_first;          /* keep the first attempt's final reply until the retries are done */
    struct bufferevent *held; /* the connection whose final reply waits */
    int ndone, nexpect;
    struct bufferevent *conns[32]; /* the server's connections, freed at the end */
    struct sconn *sconns[32];
    int nconns;
};

struct sconn {
    struct srv *s;
    int in_data;
    char kind; /* of the current transaction */
};

static void
srv_final(struct srv *s, struct bufferevent *bev, struct sconn *sc)
{
    if (sc->kind == 'r') {
        s->retries_now--;
        s->retries_done++;
    }
    bufferevent_write(bev, "250 ok\r\n", 8);
    if (s->held && s->retries_done >= NJOBS - 1) {
        bufferevent_write(s->held, "250 ok\r\n", 8);
        s->held = NULL;
    }
}

static void
srv_read(struct bufferevent *bev, void *arg)
{
    struct sconn *sc = arg;
    struct srv *s = sc->s;
    struct evbuffer *in = bufferevent_get_input(bev);
    char *line;
    size_t n;
    while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) != NULL) {
        if (sc->in_data) {
            if (strcmp(line, ".") == 0) {
                sc->in_data = 0;
                if (sc->kind == 'f' && s->hold_first && s->retries_done < NJOBS - 1)
                    s->held = bev;
                else
                    srv_final(s, bev, sc);
            }
        } else if (strncasecmp(line, "EHLO", 4) == 0 || strncasecmp(line, "HELO", 4) == 0) {
            bufferevent_write(bev, "250 t\r\n", 7);
        } else if (strncasecmp(line, "MAIL FROM:<", 11) == 0) {
            sc->kind = line[11];
            size_t k = strlen(s->order);
            if (k + 1 < sizeof(s->order))
                s->order[k] = sc->kind;
            if (sc->kind == 'r' && ++s->retries_now > s->retries_max)
                s->retries_max = s->retries_now;
            bufferevent_write(bev, "250 ok\r\n", 8);
        } else if (strncasecmp(line, "DATA", 4) == 0) {
            sc->in_data = 1;
            bufferevent_write(bev, "354 go\r\n", 8);
        } else if (strncasecmp(line, "QUIT", 4) == 0) {
            bufferevent_write(bev, "221 bye\r\n", 9);
        } else {
            bufferevent_write(bev, "250 ok\r\n", 8);
        }
        free(line);
    }
}

static void
srv_event(struct bufferevent *bev, short what, void *arg)
{
    struct sconn *sc = arg;
    (void)what;
    for (int i = 0; i < sc->s->nconns; i++)
        if (sc->s->conns[i] == bev)
            sc->s->conns[i] = NULL;
    free(sc);
    bufferevent_free(bev);
}

static void
srv_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
    struct srv *s = arg;
    (void)l;
    (void)sa;
    (void)len;
    struct sconn *sc = calloc(1, sizeof(*sc));
    assert_non_null(sc);
    sc->s = s;
    struct bufferevent *bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(bev);
    assert_true(s->nconns < 32);
    s->conns[s->nconns] = bev;
    s->sconns[s->nconns++] = sc;
    bufferevent_setcb(bev, srv_read, NULL, srv_event, sc);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    bufferevent_write(bev, "220 t\r\n", 7);
}

struct tjob {
    struct relay_job job;
    struct envelope *env;
    struct relay_rcpt_result res[1];
    struct srv *s;
};

static ssize_t
body_pread(void *ctx, void *buf, size_t len, off_t off)
{
    static const char body[] = "Subject: t\r\n\r\nhello\r\n";
    (void)ctx;
    if ((size_t)off >= sizeof(body) - 1)
        return 0;
    size_t n = sizeof(body) - 1 - (size_t)off;
    if (n > len)
        n = len;
    memcpy(buf, body + off, n);
    return (ssize_t)n;
}

static void
job_done(struct relay_job *job, void *arg)
{
    struct tjob *t = arg;
    (void)job;
    assert_int_equal(t->res[0].cls, RELAY_OK);
    if (++t->s->ndone == t->s->nexpect)
        event_base_loopbreak(t->s->base);
}

static void
job_init(struct tjob *t, struct srv *s, int retry, const char *sender)
{
    memset(t, 0, sizeof(*t));
    t->s = s;
    t->env = envelope_new();
    assert_non_null(t->env);
    assert_int_equal(envelope_set_sender(t->env, sender), 0);
    assert_true(envelope_add_rcpt(t->env, "rcpt@example.org", NULL, 0) >= 0);
    t->job.qid = sender;
    t->job.env = t->env;
    t->job.body.pread = body_pread;
    t->job.body.size = 21;
    t->job.done = job_done;
    t->job.arg = t;
    t->job.res = t->res;
    t->job.retry = retry;
}

/* Runs NJOBS jobs: NJOBS-1 retries and one first attempt, submitted as number first_at. */
static void
run(struct srv *s, int max_conns, int first_at)
{
    struct event_base *base = event_base_new();
    assert_non_null(base);
    s->base = base;
    s->nexpect = NJOBS;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct evconnlistener *l =
        evconnlistener_new_bind(base, srv_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                16, (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(l);
    struct sockaddr_in bound;
    socklen_t bl = sizeof(bound);
    assert_int_equal(getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&bound, &bl), 0);
    char addr[64], err[256];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(bound.sin_port));
    struct relay *r = relay_new(base, addr, "test", max_conns, 10, 30, 30, 60, err, sizeof(err));
    assert_non_null(r);

    static struct tjob jobs[NJOBS];
    char names[NJOBS][16];
    for (int i = 0; i < NJOBS; i++) {
        int retry = i != first_at;
        snprintf(names[i], sizeof(names[i]), "%c%d@example.org", retry ? 'r' : 'f', i);
        job_init(&jobs[i], s, retry, names[i]);
        assert_int_equal(relay_submit(r, &jobs[i].job), 0);
    }
    struct timeval limit = {60, 0};
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
    assert_int_equal(s->ndone, NJOBS);
    relay_free(r);
    evconnlistener_free(l);
    for (int i = 0; i < s->nconns; i++)
        if (s->conns[i]) {
            bufferevent_free(s->conns[i]);
            free(s->sconns[i]);
        }
    for (int i = 0; i < NJOBS; i++)
        envelope_free(jobs[i].env);
    event_base_free(base);
}

/* One connection: the first attempt goes right after the retry already on the wire. */
static void
test_first_attempt_ahead(void **state)
{
    (void)state;
    struct srv s;
    memset(&s, 0, sizeof(s));
    run(&s, 1, NJOBS - 1);
    assert_string_equal(s.order, "rfrrrrrr");
}

/* Ten connections, a first attempt in progress (its reply held back): one retry at a time, not seven. */
static void
test_retries_paced(void **state)
{
    (void)state;
    struct srv s;
    memset(&s, 0, sizeof(s));
    s.hold_first = 1;
    run(&s, 10, 0);
    assert_int_equal(s.retries_done, NJOBS - 1);
    assert_int_equal(s.retries_max, 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_attempt_ahead),
        cmocka_unit_test(test_retries_paced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
