/*
 * control.c - the daemon's end of the control socket: a unix stream
 * socket (mode 0660, the daemon's group) taking one request line per
 * connection and answering "* data" lines and a final "OK"/"ERR" line, as
 * lib/ctl.h describes. Verbs: status, reload, and the queue actions
 * (flush, delete, hold, release, requeue), which go to queue_control (answered
 * later: the verbs run off the loop).
 *
 * A stale socket file from a dead daemon is replaced; a live one (connect
 * succeeds) is an error: two daemons must not share a queue.
 * Clients are bounded: a request line over CTL_LINE_MAX or idle 30 s is
 * dropped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "action.h"
#include "control.h"
#include "counter.h"
#include "ctl.h"
#include "daemon.h"
#include "log.h"
#include "policy.h"
#include "qadmin.h"
#include "queue.h"
#include "relay.h"

static struct evconnlistener *ctl_listener;
static char ctl_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static struct daemon *ctl_daemon;

struct ctl_client {
    struct bufferevent *bev;
    int done;
    int pending;   /* an answer will come from a worker */
    int gone;      /* the client left while pending: free on the answer */
};

static void
ctl_client_free(struct ctl_client *c)
{
    if (c->bev)
        bufferevent_free(c->bev);
    c->bev = NULL;
    if (c->pending) {
        c->gone = 1; /* the pending answer frees it */
        return;
    }
    free(c);
}

static void
ctl_out(void *arg, const char *line)
{
    struct ctl_client *c = arg;
    evbuffer_add_printf(bufferevent_get_output(c->bev), "* %s\n", line);
}

static void
ctl_final(struct ctl_client *c, int ok, const char *text)
{
    evbuffer_add_printf(bufferevent_get_output(c->bev), "%s%s%s\n", ok ? "OK" : "ERR",
                        text && *text ? " " : "", text ? text : "");
    c->done = 1;
    bufferevent_disable(c->bev, EV_READ);
}

/* A data line of a request answered later; dropped when the client left. */
static void
ctl_async_out(void *arg, const char *line)
{
    struct ctl_client *c = arg;
    if (!c->gone && c->bev)
        ctl_out(c, line);
}

/* A worker finished a request for this client. */
static void
ctl_async_done(void *arg, int ok, const char *msg)
{
    struct ctl_client *c = arg;
    c->pending = 0;
    if (c->gone) {
        free(c);
        return;
    }
    ctl_final(c, ok, msg);
}

/* The "messages:" line of status: "N name" for each registered counter, comma-separated. */
struct status_line {
    char buf[1024];
    size_t len;
};

static void
status_counter(void *arg, const struct counter *k)
{
    struct status_line *sl = arg;
    if (sl->len >= sizeof(sl->buf))
        return;
    int n = snprintf(sl->buf + sl->len, sizeof(sl->buf) - sl->len, "%s %llu %s",
                     sl->buf[sl->len - 1] == ':' ? "" : ",",
                     (unsigned long long)counter_value(k), counter_name(k));
    if (n > 0)
        sl->len += (size_t)n;
}

static void
ctl_handle(struct ctl_client *c, char *line)
{
    struct daemon *d = ctl_daemon;
    char *argv[1024];
    int argc = 0;
    char msg[1200] = "";

    for (char *tok = strtok(line, " \t"); tok && argc < 1024; tok = strtok(NULL, " \t"))
        argv[argc++] = tok;
    if (argc == 0) {
        ctl_final(c, 0, "empty request");
        return;
    }
    if (strcmp(argv[0], "status") == 0) {
        char buf[256];
        size_t qd = 0, qh = 0, qa = 0;
        if (d->queue)
            queue_counts(d->queue, &qd, &qh, &qa);
        snprintf(buf, sizeof(buf), "pid: %ld", (long)getpid());
        ctl_out(c, buf);
        snprintf(buf, sizeof(buf), "version: %s", SCANRELAY_VERSION);
        ctl_out(c, buf);
        snprintf(buf, sizeof(buf), "sessions: %d", d->nsessions);
        ctl_out(c, buf);
        snprintf(buf, sizeof(buf), "deliveries in progress: %d", relay_busy(d->relay));
        ctl_out(c, buf);
        snprintf(buf, sizeof(buf), "queue: %zu deferred, %zu held, %zu being delivered", qd, qh,
                 qa);
        ctl_out(c, buf);
        struct status_line sl = {.len = 0};
        sl.len = (size_t)snprintf(sl.buf, sizeof(sl.buf), "messages:");
        counter_reg_each(d->counters, status_counter, &sl);
        ctl_out(c, sl.buf);
        ctl_final(c, 1, "running");
        return;
    }
    if (strcmp(argv[0], "rules") == 0) {
        struct sr_config *cfg = services_config(&d->svc);
        const struct policy *pol = policy_of(cfg);
        size_t n = policy_nrules(pol);
        for (size_t i = 0; i < n; i++) {
            char buf[512];
            snprintf(buf, sizeof(buf), "%s: %llu hits, action %s%s%s", policy_rule_name(pol, i),
                     (unsigned long long)policy_rule_hits(pol, i),
                     sr_action_name((enum sr_action)cfg->rules[i].action),
                     cfg->rules[i].expires[0] ? ", expires " : "", cfg->rules[i].expires);
            ctl_out(c, buf);
        }
        snprintf(msg, sizeof(msg), "%zu rules loaded; hits since they were loaded", n);
        ctl_final(c, 1, msg);
        return;
    }
    if (strcmp(argv[0], "reload") == 0) {
        int rc = services_reload(&d->svc, msg, sizeof(msg));
        ctl_final(c, rc == 0, msg);
        return;
    }
    if (strcmp(argv[0], "flush") == 0 || strcmp(argv[0], "delete") == 0 ||
        strcmp(argv[0], "hold") == 0 || strcmp(argv[0], "release") == 0 ||
        strcmp(argv[0], "requeue") == 0) {
        if (d->queue == NULL) {
            ctl_final(c, 0, "no queue");
            return;
        }
        c->pending = 1;
        bufferevent_disable(c->bev, EV_READ);
        queue_control(d->queue, argv[0], argv + 1, argc - 1, ctl_async_out, ctl_async_done, c);
        return;
    }
    if (strcmp(argv[0], "qrelease") == 0) {
        if (argc < 2) {
            ctl_final(c, 0, "qrelease needs a quarantine ID");
            return;
        }
        c->pending = 1;
        bufferevent_disable(c->bev, EV_READ);
        qadmin_release(d, argv[1], argv + 2, argc - 2, ctl_async_done, c);
        return;
    }
    if (strcmp(argv[0], "qdelete") == 0) {
        if (argc < 2) {
            ctl_final(c, 0, "qdelete needs quarantine IDs");
            return;
        }
        c->pending = 1;
        bufferevent_disable(c->bev, EV_READ);
        qadmin_delete(d, argv + 1, argc - 1, ctl_async_done, c);
        return;
    }
    snprintf(msg, sizeof(msg), "unknown request '%.100s'", argv[0]);
    ctl_final(c, 0, msg);
}

static void
ctl_read_cb(struct bufferevent *bev, void *arg)
{
    struct ctl_client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->done)
        return;
    size_t n;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
    if (line == NULL) {
        if (evbuffer_get_length(in) > CTL_LINE_MAX)
            ctl_final(c, 0, "request too long");
        return;
    }
    ctl_handle(c, line);
    free(line);
}

static void
ctl_write_cb(struct bufferevent *bev, void *arg)
{
    struct ctl_client *c = arg;
    if (c->done && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        ctl_client_free(c);
}

static void
ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    ctl_client_free(arg);
}

static void
ctl_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
              void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    struct daemon *d = arg;
    struct ctl_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    c->bev = bufferevent_socket_new(d->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        free(c);
        close(fd);
        return;
    }
    bufferevent_setcb(c->bev, ctl_read_cb, ctl_write_cb, ctl_event_cb, c);
    struct timeval tv = {120, 0};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

int
control_open(struct daemon *d, char *err, size_t errlen)
{
    struct sockaddr_un sun;
    const char *path = services_config(&d->svc)->control_socket;

    ctl_daemon = d;
    if (strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "control_socket: path too long: %s", path);
        return -1;
    }
    /* Make the folder (e.g. /run/scanrelay when not made by systemd). */
    char dir[sizeof(sun.sun_path)];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
            snprintf(err, errlen, "control_socket: cannot create %s: %s", dir, strerror(errno));
            return -1;
        }
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path));

    /* A live daemon on the socket? */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0) {
        if (connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
            close(probe);
            snprintf(err, errlen,
                     "control_socket %s: another scanrelayd is running with this socket", path);
            return -1;
        }
        close(probe);
    }
    unlink(path);
    mode_t old = umask(0117);
    ctl_listener = evconnlistener_new_bind(d->base, ctl_accept_cb, d,
                                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
                                           (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    if (ctl_listener == NULL) {
        snprintf(err, errlen, "control_socket %s: %s", path, strerror(errno));
        return -1;
    }
    chmod(path, 0660);
    snprintf(ctl_path, sizeof(ctl_path), "%s", path);
    return 0;
}

void
control_close(void)
{
    if (ctl_listener) {
        evconnlistener_free(ctl_listener);
        ctl_listener = NULL;
        unlink(ctl_path);
    }
}
