/*
 * control.c - the daemon's end of the control socket: a unix stream
 * socket (mode 0660, the daemon's group) taking one request line per
 * connection and answering "* data" lines and a final "OK"/"ERR" line, as
 * lib/ctl.h describes. Verbs: status ("key: value" lines, as
 * doc/scanrelay.1 lists them) and "status json" (one JSON object cut into
 * data lines the client joins), reload, and the queue actions
 * (flush, delete, hold, release, requeue), which go to queue_control (answered
 * later: the verbs run off the loop), qrelease/qdelete (qadmin.c) and report
 * (the daily report now, health.c). status lists the active health alerts
 * as "alert: NAME SINCE TEXT" lines.
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
#include <time.h>
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
#include "engine.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "msglog.h"
#include "policy.h"
#include "qadmin.h"
#include "queue.h"
#include "relay.h"
#include "scan_pool.h"

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

/* "2026-12-02 18:00:00 UTC" */
static const char *
utc(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t <= 0 || gmtime_r(&tt, &tm) == NULL || strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(buf, len, "-");
    return buf;
}

/* What status reports, taken on the loop in one go. */
struct status_info {
    int64_t now;
    size_t qd, qh, qa;
    int scan_on, threads;
    size_t busy, waiting;
    struct sr_engine *engine; /* a reference, or NULL */
    const struct engine_dbinfo *db;
    size_t ndb;
    int64_t newest;
    int64_t reload_at;
    int reload_ok;
    char reload_msg[256];
    int64_t q_bytes;
    long q_count;
    int log_on;
    uint64_t log_backlog, log_dropped;
};

static void
status_take(struct daemon *d, struct status_info *si)
{
    const struct sr_config *cfg = services_config(&d->svc);
    memset(si, 0, sizeof(*si));
    si->now = (int64_t)time(NULL);
    if (d->queue)
        queue_counts(d->queue, &si->qd, &si->qh, &si->qa);
    si->scan_on = cfg->scan.enabled && d->scan_pool != NULL;
    if (d->scan_pool) {
        si->threads = scan_pool_threads(d->scan_pool);
        si->busy = scan_pool_running(d->scan_pool);
        si->waiting = scan_pool_queued(d->scan_pool);
    }
    if (d->engines) {
        si->engine = engine_holder_get(d->engines);
        si->ndb = engine_dbinfo(si->engine, &si->db);
        for (size_t i = 0; i < si->ndb; i++)
            if (si->db[i].build_time > si->newest)
                si->newest = si->db[i].build_time;
        engine_holder_last_reload(d->engines, &si->reload_at, &si->reload_ok, si->reload_msg,
                                  sizeof(si->reload_msg));
    }
    if (d->metrics)
        metrics_quarantine_usage(d->metrics, &si->q_bytes, &si->q_count);
    if (d->msglog) {
        struct msglog_counters mc;
        msglog_counters(d->msglog, &mc);
        si->log_on = 1;
        si->log_backlog = mc.appended - mc.written - mc.failed;
        si->log_dropped = mc.dropped + mc.failed;
    }
}

static void
status_text(struct ctl_client *c, struct daemon *d)
{
    const struct sr_config *cfg = services_config(&d->svc);
    struct status_info si;
    char buf[1200], t1[40], t2[40];

    status_take(d, &si);
    snprintf(buf, sizeof(buf), "pid: %ld", (long)getpid());
    ctl_out(c, buf);
    snprintf(buf, sizeof(buf), "version: %s", SCANRELAY_VERSION);
    ctl_out(c, buf);
    snprintf(buf, sizeof(buf), "started: %s (up %lld s)", utc(d->started_at, t1, sizeof(t1)),
             (long long)(si.now - d->started_at));
    ctl_out(c, buf);
    snprintf(buf, sizeof(buf), "configuration: %.900s (loaded %s)",
             cfg->path ? cfg->path : "(built-in defaults)", utc(d->config_loaded_at, t1, sizeof(t1)));
    ctl_out(c, buf);
    size_t o = (size_t)snprintf(buf, sizeof(buf), "listen:");
    for (size_t i = 0; i < cfg->nlisten && o < sizeof(buf); i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, " %s", cfg->listen[i]);
    ctl_out(c, buf);
    snprintf(buf, sizeof(buf), "sessions: %d", d->nsessions);
    ctl_out(c, buf);
    snprintf(buf, sizeof(buf), "deliveries in progress: %d", relay_busy(d->relay));
    ctl_out(c, buf);
    snprintf(buf, sizeof(buf), "queue: %zu deferred, %zu held, %zu being delivered", si.qd, si.qh,
             si.qa);
    ctl_out(c, buf);
    struct status_line sl = {.len = 0};
    sl.len = (size_t)snprintf(sl.buf, sizeof(sl.buf), "messages:");
    counter_reg_each(d->counters, status_counter, &sl);
    ctl_out(c, sl.buf);
    if (si.scan_on)
        snprintf(buf, sizeof(buf), "scan: on, %d threads, %zu busy, %zu jobs waiting", si.threads,
                 si.busy, si.waiting);
    else
        snprintf(buf, sizeof(buf), "scan: off");
    ctl_out(c, buf);
    if (si.engine) {
        snprintf(buf, sizeof(buf), "signatures: %u (ClamAV %s), newest built %lld s ago",
                 engine_signatures(si.engine), engine_version(),
                 (long long)(si.newest ? si.now - si.newest : 0));
        ctl_out(c, buf);
        for (size_t i = 0; i < si.ndb; i++) {
            const struct engine_dbinfo *db = &si.db[i];
            if (db->version[0])
                snprintf(buf, sizeof(buf),
                         "signature database: %s version %s, built %s, %u signatures", db->file,
                         db->version, utc(db->build_time, t1, sizeof(t1)), db->signatures);
            else
                snprintf(buf, sizeof(buf),
                         "signature database: %s, modified %s, %u signatures", db->file,
                         utc(db->build_time, t1, sizeof(t1)), db->signatures);
            ctl_out(c, buf);
        }
        if (si.reload_at)
            snprintf(buf, sizeof(buf), "signature reload: %s %s: %s",
                     utc(si.reload_at, t1, sizeof(t1)), si.reload_ok ? "ok" : "failed",
                     si.reload_msg);
        else
            snprintf(buf, sizeof(buf), "signature reload: none since the start (loaded %s)",
                     utc(engine_loaded_at(si.engine), t1, sizeof(t1)));
        ctl_out(c, buf);
        engine_unref(si.engine);
    }
    time_t down = relay_down_since(d->relay);
    if (relay_down(d->relay))
        snprintf(buf, sizeof(buf), "downstream: %s down since %s", cfg->relay,
                 down ? utc((int64_t)down, t2, sizeof(t2)) : "-");
    else
        snprintf(buf, sizeof(buf), "downstream: %s up", cfg->relay);
    ctl_out(c, buf);
    snprintf(buf, sizeof(buf), "quarantine: %ld messages, %lld bytes (quota %lld bytes)",
             si.q_count, (long long)si.q_bytes, (long long)cfg->quarantine.quota);
    ctl_out(c, buf);
    if (si.log_on)
        snprintf(buf, sizeof(buf), "message log: on, %llu rows waiting, %llu dropped",
                 (unsigned long long)si.log_backlog, (unsigned long long)si.log_dropped);
    else
        snprintf(buf, sizeof(buf), "message log: off");
    ctl_out(c, buf);
    snprintf(buf, sizeof(buf), "metrics: %s%.200s%s", cfg->metrics_listen[0] ? "http://" : "off",
             cfg->metrics_listen, cfg->metrics_listen[0] ? "/metrics" : "");
    ctl_out(c, buf);
    if (d->health)
        health_status(d->health, ctl_out, c); /* "alert: NAME SINCE TEXT" lines */
}

/* A JSON string. */
static void
json_str(struct evbuffer *b, const char *s)
{
    evbuffer_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            evbuffer_add_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            evbuffer_add_printf(b, "\\u%04x", *p);
        else
            evbuffer_add(b, p, 1);
    }
    evbuffer_add(b, "\"", 1);
}

struct counter_json_walk {
    struct evbuffer *b;
    int n;
};

static void
counter_json(void *arg, const struct counter *k)
{
    struct counter_json_walk *w = arg;
    if (w->n++)
        evbuffer_add(w->b, ", ", 2);
    json_str(w->b, counter_name(k));
    evbuffer_add_printf(w->b, ": %llu", (unsigned long long)counter_value(k));
}

/*
 * status json: one JSON object (without the final "state" member, which the
 * client adds from the final line), sent as data lines of at most 3000
 * bytes that the client concatenates.
 */
/* health_status() lines as JSON members: "health_checks": N, "alerts": [{name, since, text}]. */
struct health_json {
    struct evbuffer *b;
    int nalerts;
};

static void
health_json_line(void *arg, const char *line)
{
    struct health_json *hj = arg;
    char name[64];
    long long since = 0;
    int off = 0;

    if (strncmp(line, "health checks: ", 15) == 0) {
        evbuffer_add_printf(hj->b, ", \"health_checks\": %lld, \"alerts\": [",
                            strtoll(line + 15, NULL, 10));
    } else if (strncmp(line, "alert: ", 7) == 0 &&
               sscanf(line + 7, "%63s %lld %n", name, &since, &off) >= 2 && off > 0) {
        evbuffer_add_printf(hj->b, "%s{\"name\": ", hj->nalerts++ ? ", " : "");
        json_str(hj->b, name);
        evbuffer_add_printf(hj->b, ", \"since\": %lld, \"text\": ", since);
        json_str(hj->b, line + 7 + off);
        evbuffer_add(hj->b, "}", 1);
    }
}

static void
status_json(struct ctl_client *c, struct daemon *d)
{
    const struct sr_config *cfg = services_config(&d->svc);
    struct status_info si;
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return;
    status_take(d, &si);
    evbuffer_add_printf(b, "{\"pid\": %ld, \"version\": ", (long)getpid());
    json_str(b, SCANRELAY_VERSION);
    evbuffer_add_printf(b, ", \"started\": %lld, \"uptime\": %lld, \"configuration\": {\"file\": ",
                        (long long)d->started_at, (long long)(si.now - d->started_at));
    if (cfg->path)
        json_str(b, cfg->path);
    else
        evbuffer_add_printf(b, "null");
    evbuffer_add_printf(b, ", \"loaded\": %lld}, \"listen\": [", (long long)d->config_loaded_at);
    for (size_t i = 0; i < cfg->nlisten; i++) {
        if (i)
            evbuffer_add(b, ", ", 2);
        json_str(b, cfg->listen[i]);
    }
    evbuffer_add_printf(b,
                        "], \"sessions\": %d, \"transactions\": %d, \"deliveries_in_progress\": %d, "
                        "\"queue\": {\"deferred\": %zu, \"held\": %zu, \"active\": %zu}, "
                        "\"messages\": {",
                        d->nsessions, d->ntx, relay_busy(d->relay), si.qd, si.qh, si.qa);
    struct counter_json_walk cw = {b, 0};
    counter_reg_each(d->counters, counter_json, &cw);
    evbuffer_add_printf(b, "}, \"scan\": {\"enabled\": %s, \"threads\": %d, \"busy\": %zu, "
                           "\"waiting\": %zu}",
                        si.scan_on ? "true" : "false", si.threads, si.busy, si.waiting);
    if (si.engine) {
        evbuffer_add_printf(b, ", \"engine\": ");
        json_str(b, engine_version());
        evbuffer_add_printf(b, ", \"signatures\": [");
        for (size_t i = 0; i < si.ndb; i++) {
            evbuffer_add_printf(b, "%s{\"file\": ", i ? ", " : "");
            json_str(b, si.db[i].file);
            evbuffer_add_printf(b, ", \"version\": ");
            if (si.db[i].version[0])
                json_str(b, si.db[i].version);
            else
                evbuffer_add_printf(b, "null");
            evbuffer_add_printf(b, ", \"build_time\": %lld, \"signatures\": %u}",
                                (long long)si.db[i].build_time, si.db[i].signatures);
        }
        evbuffer_add_printf(b,
                            "], \"signatures_total\": %u, \"signatures_newest_age\": %lld, "
                            "\"signatures_loaded\": %lld, \"signature_reload\": ",
                            engine_signatures(si.engine),
                            (long long)(si.newest ? si.now - si.newest : 0),
                            (long long)engine_loaded_at(si.engine));
        if (si.reload_at) {
            evbuffer_add_printf(b, "{\"time\": %lld, \"ok\": %s, \"message\": ",
                                (long long)si.reload_at, si.reload_ok ? "true" : "false");
            json_str(b, si.reload_msg);
            evbuffer_add(b, "}", 1);
        } else {
            evbuffer_add_printf(b, "null");
        }
        engine_unref(si.engine);
    } else {
        evbuffer_add_printf(b, ", \"signatures\": []");
    }
    evbuffer_add_printf(b, ", \"downstream\": {\"address\": ");
    json_str(b, cfg->relay);
    if (relay_down(d->relay))
        evbuffer_add_printf(b, ", \"state\": \"down\", \"down_since\": %lld}",
                            (long long)relay_down_since(d->relay));
    else
        evbuffer_add_printf(b, ", \"state\": \"up\", \"down_since\": null}");
    evbuffer_add_printf(b,
                        ", \"quarantine\": {\"messages\": %ld, \"bytes\": %lld, \"quota\": %lld}",
                        si.q_count, (long long)si.q_bytes, (long long)cfg->quarantine.quota);
    if (si.log_on)
        evbuffer_add_printf(b, ", \"message_log\": {\"enabled\": true, \"backlog\": %llu, "
                               "\"dropped\": %llu}",
                            (unsigned long long)si.log_backlog,
                            (unsigned long long)si.log_dropped);
    else
        evbuffer_add_printf(b, ", \"message_log\": {\"enabled\": false}");
    evbuffer_add_printf(b, ", \"metrics_listen\": ");
    json_str(b, cfg->metrics_listen);
    if (d->health) {
        struct health_json hj = {b, 0};
        health_status(d->health, health_json_line, &hj);
        evbuffer_add(b, "]", 1);
    } else {
        evbuffer_add_printf(b, ", \"health_checks\": 0, \"alerts\": []");
    }

    /* Out in pieces (a data line holds at most CTL_LINE_MAX bytes). */
    char piece[3001];
    int n;
    while ((n = evbuffer_remove(b, piece, sizeof(piece) - 1)) > 0) {
        piece[n] = '\0';
        ctl_out(c, piece);
    }
    evbuffer_free(b);
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
        if (argc > 1 && strcmp(argv[1], "json") == 0)
            status_json(c, d);
        else
            status_text(c, d);
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
    if (strcmp(argv[0], "report") == 0) {
        if (d->health == NULL) {
            ctl_final(c, 0, "no health checks");
            return;
        }
        c->pending = 1;
        bufferevent_disable(c->bev, EV_READ);
        health_report_now(d->health, ctl_async_done, c);
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
