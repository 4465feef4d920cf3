/*
 * metrics.c - what the daemon measures beyond its counter registry, and
 * the optional HTTP listener that serves all of it to Prometheus.
 *
 * Public calls: metrics_new, metrics_free, metrics_message, metrics_relay,
 * metrics_quarantine_release, metrics_rule_hit, metrics_refresh_now, metrics_quarantine_usage,
 * metrics_listen, metrics_render.
 *
 * Owns: labelled counter families (messages by result and action, relay
 * recipients by source and outcome, rule hits), two histograms (scan time,
 * delay from MAIL to the answer), a cache of the quarantine's usage and
 * the listener. Reads, at render time, the daemon's counter registry
 * (lib/counter: each counter becomes scanrelay_NAME_messages_total) and
 * its gauges: sessions, scan pool, queue, signatures, downstream, message
 * log.
 *
 * Threads. Everything runs on the loop thread except metrics_rule_hit
 * (any thread: the families take a mutex) and the quarantine usage query,
 * which blocks on SQLite and so runs in the daemon's side pool every 10 s;
 * the loop only reads the cached numbers. Rendering is a walk over a few
 * dozen numbers into an evbuffer (microseconds), so GET /metrics is
 * answered on the loop without blocking it.
 *
 * The listener (metrics_listen = "addr:port", off by default) is libevent's
 * evhttp on the daemon's loop: GET or HEAD of /metrics, anything else 404
 * or 405; headers bounded to 8 KB, bodies refused, 10 s timeout. A reload
 * opens, moves or closes it. Failures are returned with a message; nothing
 * here exits.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "config.h"
#include "counter.h"
#include "daemon.h"
#include "engine.h"
#include "log.h"
#include "metrics.h"
#include "msglog.h"
#include "qstore.h"
#include "queue.h"
#include "relay.h"
#include "scan_pool.h"
#include "wpool.h"
#include "xmalloc.h"

/*
 * A counter family with up to two labels, created on first use of a label
 * set; bounded (FAM_MAX sets; more are counted under "other").
 */
#define FAM_MAX 256
struct fam_entry {
    char v1[64], v2[32];
    uint64_t value;
};
struct family {
    const char *name, *help, *l1, *l2;
    size_t n;
    struct fam_entry e[FAM_MAX];
};

/* A histogram with fixed bucket bounds (seconds). */
#define HIST_MAX 16
struct histogram {
    const char *name, *help;
    const double *bounds;
    size_t nb;
    uint64_t counts[HIST_MAX]; /* per bucket, not cumulative */
    uint64_t count;
    double sum;
};

static const double scan_bounds[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                     0.25,  0.5,   1,    2.5,   5,    10,  30, 120};
static const double delay_bounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                      2.5,  5,     10,   30,  60,   300, 3600};

struct metrics {
    struct daemon *d;
    pthread_mutex_t mu; /* the families */
    struct family messages, relay, rules;
    struct histogram scan_time, delay;
    uint64_t bytes_in, bytes_out, queue_sent, queue_bounced, q_released;

    /* The quarantine's usage (side pool, every 10 s). */
    struct event *usage_ev;
    int usage_busy;
    int64_t q_bytes, q_bytes_new;
    long q_count, q_count_new;
    int q_ok_new;

    /* The listener. */
    struct evhttp *http;
    char *addr;
};

static void
family_init(struct family *f, const char *name, const char *help, const char *l1, const char *l2)
{
    f->name = name;
    f->help = help;
    f->l1 = l1;
    f->l2 = l2;
}

static void
family_add(struct metrics *m, struct family *f, const char *v1, const char *v2, uint64_t n)
{
    char a[64], b[32];
    snprintf(a, sizeof(a), "%s", v1 && *v1 ? v1 : "none");
    snprintf(b, sizeof(b), "%s", v2 && *v2 ? v2 : "none");
    pthread_mutex_lock(&m->mu);
    size_t i;
    for (i = 0; i < f->n; i++)
        if (strcmp(f->e[i].v1, a) == 0 && strcmp(f->e[i].v2, b) == 0)
            break;
    if (i == f->n) {
        if (f->n == FAM_MAX) {
            /* Full: the last set becomes "other". */
            i = FAM_MAX - 1;
            snprintf(f->e[i].v1, sizeof(f->e[i].v1), "other");
            snprintf(f->e[i].v2, sizeof(f->e[i].v2), "other");
        } else {
            snprintf(f->e[i].v1, sizeof(f->e[i].v1), "%s", a);
            snprintf(f->e[i].v2, sizeof(f->e[i].v2), "%s", b);
            f->e[i].value = 0;
            f->n++;
        }
    }
    f->e[i].value += n;
    pthread_mutex_unlock(&m->mu);
}

static void
hist_init(struct histogram *h, const char *name, const char *help, const double *bounds, size_t nb)
{
    h->name = name;
    h->help = help;
    h->bounds = bounds;
    h->nb = nb < HIST_MAX ? nb : HIST_MAX;
}

static void
hist_observe(struct histogram *h, double v)
{
    size_t i = 0;
    if (v < 0)
        v = 0;
    while (i < h->nb && v > h->bounds[i])
        i++;
    if (i < h->nb)
        h->counts[i]++;
    h->count++;
    h->sum += v;
}

/*
 * Quarantine usage: a query in the side pool, its numbers copied on the loop.
 */
static void
usage_work(void *arg)
{
    struct metrics *m = arg;
    m->q_ok_new = qstore_usage(m->d->qstore, &m->q_bytes_new, &m->q_count_new) == 0;
}

static void
usage_done(void *arg, int status)
{
    struct metrics *m = arg;
    m->usage_busy = 0;
    if (status == WPOOL_DONE && m->q_ok_new) {
        m->q_bytes = m->q_bytes_new;
        m->q_count = m->q_count_new;
    }
}

static void
usage_tick(evutil_socket_t fd, short what, void *arg)
{
    struct metrics *m = arg;
    (void)fd;
    (void)what;
    if (m->usage_busy || m->d->shutting_down || m->d->side_pool == NULL || m->d->qstore == NULL)
        return;
    if (wpool_call(m->d->side_pool, usage_work, usage_done, m) == 0)
        m->usage_busy = 1;
}

void
metrics_refresh_now(struct metrics *m)
{
    if (m->d->qstore == NULL)
        return;
    usage_work(m);
    if (m->q_ok_new) {
        m->q_bytes = m->q_bytes_new;
        m->q_count = m->q_count_new;
    }
}

void
metrics_quarantine_usage(const struct metrics *m, int64_t *bytes, long *count)
{
    *bytes = m->q_bytes;
    *count = m->q_count;
}

struct metrics *
metrics_new(struct daemon *d)
{
    struct metrics *m = xcalloc(1, sizeof(*m));
    m->d = d;
    pthread_mutex_init(&m->mu, NULL);
    family_init(&m->messages, "scanrelay_messages_total",
                "Messages finished, by verdict result and action taken.", "result", "action");
    family_init(&m->relay, "scanrelay_relay_recipients_total",
                "Recipients of delivery attempts to the downstream, by source (first attempt or "
                "queue retry) and outcome.",
                "source", "outcome");
    family_init(&m->rules, "scanrelay_rule_hits_total", "Messages decided by each rule.", "rule",
                NULL);
    hist_init(&m->scan_time, "scanrelay_scan_duration_seconds",
              "Seconds a scan thread spent on a message.", scan_bounds,
              sizeof(scan_bounds) / sizeof(scan_bounds[0]));
    hist_init(&m->delay, "scanrelay_message_delay_seconds",
              "Seconds from MAIL FROM to the final answer to the upstream.", delay_bounds,
              sizeof(delay_bounds) / sizeof(delay_bounds[0]));
    if (d->base) {
        struct timeval tv = {10, 0};
        m->usage_ev = event_new(d->base, -1, EV_PERSIST, usage_tick, m);
        if (m->usage_ev)
            evtimer_add(m->usage_ev, &tv);
    }
    return m;
}

void
metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    if (m->http)
        evhttp_free(m->http);
    if (m->usage_ev)
        event_free(m->usage_ev);
    free(m->addr);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void
metrics_message(struct metrics *m, const char *result, const char *action, int64_t bytes_in,
                int64_t bytes_out, double delay, double scan_seconds)
{
    if (m == NULL)
        return;
    family_add(m, &m->messages, result, action, 1);
    m->bytes_in += bytes_in > 0 ? (uint64_t)bytes_in : 0;
    m->bytes_out += bytes_out > 0 ? (uint64_t)bytes_out : 0;
    hist_observe(&m->delay, delay);
    if (scan_seconds >= 0)
        hist_observe(&m->scan_time, scan_seconds);
}

void
metrics_relay(struct metrics *m, int queue, int nsent, int ndeferred, int nbounced)
{
    if (m == NULL)
        return;
    const char *src = queue ? "queue" : "first";
    if (nsent)
        family_add(m, &m->relay, src, "sent", (uint64_t)nsent);
    if (ndeferred)
        family_add(m, &m->relay, src, "deferred", (uint64_t)ndeferred);
    if (nbounced)
        family_add(m, &m->relay, src, "bounced", (uint64_t)nbounced);
    if (queue) {
        m->queue_sent += (uint64_t)(nsent > 0 ? nsent : 0);
        m->queue_bounced += (uint64_t)(nbounced > 0 ? nbounced : 0);
    }
}

void
metrics_quarantine_release(struct metrics *m)
{
    if (m)
        m->q_released++;
}

void
metrics_rule_hit(struct metrics *m, const char *rule)
{
    if (m == NULL)
        return;
    family_add(m, &m->rules, rule, NULL, 1);
}

/*
 * Rendering (text exposition format 0.0.4).
 */
static void
put_head(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: backslash, double quote and newline escaped. */
static void
put_label(struct evbuffer *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(out, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, v, 1);
    }
}

static void
put_gauge(struct evbuffer *out, const char *name, const char *help, double v)
{
    put_head(out, name, "gauge", help);
    evbuffer_add_printf(out, "%s %.17g\n", name, v);
}

static void
put_counter(struct evbuffer *out, const char *name, const char *help, uint64_t v)
{
    put_head(out, name, "counter", help);
    evbuffer_add_printf(out, "%s %llu\n", name, (unsigned long long)v);
}

static void
put_family(struct metrics *m, struct evbuffer *out, const struct family *f)
{
    put_head(out, f->name, "counter", f->help);
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < f->n; i++) {
        evbuffer_add_printf(out, "%s{%s=\"", f->name, f->l1);
        put_label(out, f->e[i].v1);
        if (f->l2) {
            evbuffer_add_printf(out, "\",%s=\"", f->l2);
            put_label(out, f->e[i].v2);
        }
        evbuffer_add_printf(out, "\"} %llu\n", (unsigned long long)f->e[i].value);
    }
    pthread_mutex_unlock(&m->mu);
}

static void
put_hist(struct evbuffer *out, const struct histogram *h)
{
    uint64_t cum = 0;
    put_head(out, h->name, "histogram", h->help);
    for (size_t i = 0; i < h->nb; i++) {
        cum += h->counts[i];
        evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %llu\n", h->name, h->bounds[i],
                            (unsigned long long)cum);
    }
    evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.17g\n%s_count %llu\n",
                        h->name, (unsigned long long)h->count, h->name, h->sum, h->name,
                        (unsigned long long)h->count);
}

struct reg_walk {
    struct evbuffer *out;
};

static void
put_registry_counter(void *arg, const struct counter *c)
{
    struct reg_walk *w = arg;
    char name[128], help[300];
    snprintf(name, sizeof(name), "scanrelay_%s_messages_total", counter_name(c));
    snprintf(help, sizeof(help), "Count of %s.", counter_help(c));
    put_counter(w->out, name, help, counter_value(c));
}

void
metrics_render(struct metrics *m, struct evbuffer *out)
{
    struct daemon *d = m->d;
    const struct sr_config *c = services_config(&d->svc);

    /* Process. */
    put_head(out, "scanrelay_build_info", "gauge",
             "Always 1; the labels give the versions of scanrelay and libclamav.");
    evbuffer_add_printf(out, "scanrelay_build_info{version=\"%s\",clamav=\"%s\"} 1\n",
                        SCANRELAY_VERSION, engine_version());
    put_gauge(out, "scanrelay_start_time_seconds", "When the daemon started (Unix time).",
              (double)d->started_at);
    put_gauge(out, "scanrelay_config_load_time_seconds",
              "When the configuration in force was loaded (Unix time).",
              (double)d->config_loaded_at);

    /* Messages. */
    struct reg_walk w = {out};
    counter_reg_each(d->counters, put_registry_counter, &w);
    put_family(m, out, &m->messages);
    put_counter(out, "scanrelay_received_bytes_total", "Message bytes received from the upstream.",
                m->bytes_in);
    put_counter(out, "scanrelay_relayed_bytes_total",
                "Message bytes accepted by the downstream on the first attempt.", m->bytes_out);
    put_family(m, out, &m->relay);
    put_counter(out, "scanrelay_queue_deliveries_total",
                "Recipients delivered by a retry from the deferred queue.", m->queue_sent);
    put_counter(out, "scanrelay_queue_bounces_total",
                "Recipients refused permanently on a retry from the deferred queue (DSN sent).",
                m->queue_bounced);
    put_counter(out, "scanrelay_quarantine_releases_total",
                "Messages released from the quarantine.", m->q_released);
    put_family(m, out, &m->rules);
    put_hist(out, &m->scan_time);
    put_hist(out, &m->delay);

    /* Sessions, scanning, delivery. */
    put_gauge(out, "scanrelay_sessions", "Open SMTP sessions from the upstream.", d->nsessions);
    put_gauge(out, "scanrelay_transactions", "Messages between end of DATA and the answer.",
              d->ntx);
    put_gauge(out, "scanrelay_scan_threads", "Scan threads.",
              d->scan_pool ? scan_pool_threads(d->scan_pool) : 0);
    put_gauge(out, "scanrelay_scan_jobs_running", "Messages being scanned.",
              d->scan_pool ? (double)scan_pool_running(d->scan_pool) : 0);
    put_gauge(out, "scanrelay_scan_jobs_waiting", "Messages waiting for a scan thread.",
              d->scan_pool ? (double)scan_pool_queued(d->scan_pool) : 0);
    put_gauge(out, "scanrelay_deliveries_in_progress", "Delivery attempts waiting or running.",
              d->relay ? relay_busy(d->relay) : 0);
    put_gauge(out, "scanrelay_downstream_up",
              "1 while the downstream MTA answers, 0 since a connection to it failed.",
              d->relay && relay_down(d->relay) ? 0 : 1);

    /* The deferred queue. */
    size_t qd = 0, qh = 0, qa = 0;
    if (d->queue)
        queue_counts(d->queue, &qd, &qh, &qa);
    put_head(out, "scanrelay_queue_messages", "gauge",
             "Messages in the deferred queue, by state.");
    evbuffer_add_printf(out,
                        "scanrelay_queue_messages{state=\"deferred\"} %zu\n"
                        "scanrelay_queue_messages{state=\"held\"} %zu\n"
                        "scanrelay_queue_messages{state=\"active\"} %zu\n",
                        qd, qh, qa);

    /* Quarantine. */
    put_gauge(out, "scanrelay_quarantine_bytes",
              "Compressed bytes in the quarantine (refreshed every 10 s).", (double)m->q_bytes);
    put_gauge(out, "scanrelay_quarantine_messages",
              "Messages in the quarantine (refreshed every 10 s).", (double)m->q_count);
    put_gauge(out, "scanrelay_quarantine_quota_bytes", "The quarantine's quota (0: none).",
              (double)c->quarantine.quota);

    /* Signatures. */
    if (d->engines) {
        struct sr_engine *e = engine_holder_get(d->engines);
        const struct engine_dbinfo *db;
        size_t n = engine_dbinfo(e, &db);
        int64_t newest = 0, now = (int64_t)time(NULL);
        put_gauge(out, "scanrelay_signatures", "Signatures loaded in the scan engine.",
                  engine_signatures(e));
        put_head(out, "scanrelay_signature_database_build_time_seconds", "gauge",
                 "Build time of each signature database file (container header, else mtime).");
        for (size_t i = 0; i < n; i++) {
            evbuffer_add_printf(out, "scanrelay_signature_database_build_time_seconds{file=\"");
            put_label(out, db[i].file);
            evbuffer_add_printf(out, "\",version=\"%s\"} %lld\n", db[i].version,
                                (long long)db[i].build_time);
            if (db[i].build_time > newest)
                newest = db[i].build_time;
        }
        put_gauge(out, "scanrelay_signature_age_seconds",
                  "Seconds since the newest signature database file was built.",
                  newest ? (double)(now - newest) : 0);
        int64_t when;
        int ok;
        char msg[8];
        engine_holder_last_reload(d->engines, &when, &ok, msg, sizeof(msg));
        put_gauge(out, "scanrelay_signature_reload_success",
                  "1 if the last signature reload succeeded, else 0.", ok ? 1 : 0);
        put_gauge(out, "scanrelay_signature_load_time_seconds",
                  "When the signatures in use were compiled (Unix time).",
                  (double)engine_loaded_at(e));
        engine_unref(e);
    }

    /* The message log writer. */
    if (d->msglog) {
        struct msglog_counters mc;
        msglog_counters(d->msglog, &mc);
        put_gauge(out, "scanrelay_message_log_backlog",
                  "Rows waiting for the message log writer.",
                  (double)(mc.appended - mc.written - mc.failed));
        put_counter(out, "scanrelay_message_log_dropped_total",
                    "Rows the message log dropped (queue full) or failed to write.",
                    mc.dropped + mc.failed);
    }
}

/*
 * The HTTP listener.
 */
static void
http_metrics_cb(struct evhttp_request *req, void *arg)
{
    struct metrics *m = arg;
    struct evbuffer *out = evbuffer_new();
    if (out == NULL) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    metrics_render(m, out);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

static void
http_other_cb(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evhttp_send_error(req, 404, "only /metrics here");
}

int
metrics_listen(struct metrics *m, const char *addr, char *err, size_t errlen)
{
    if (addr == NULL)
        addr = "";
    if (m->addr && strcmp(m->addr, addr) == 0)
        return 0;
    struct evhttp *http = NULL;
    if (*addr) {
        struct sockaddr_storage ss;
        int len = sizeof(ss);
        if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &len) < 0) {
            snprintf(err, errlen, "metrics_listen: bad address '%s' (use IP:PORT)", addr);
            return -1;
        }
        struct evconnlistener *l = evconnlistener_new_bind(
            m->d->base, NULL, NULL,
            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED,
            64, (struct sockaddr *)&ss, len);
        if (l == NULL) {
            snprintf(err, errlen, "metrics_listen: cannot listen on %s: %s", addr,
                     strerror(errno));
            return -1;
        }
        http = evhttp_new(m->d->base);
        if (http == NULL || evhttp_bind_listener(http, l) == NULL) {
            if (http)
                evhttp_free(http);
            evconnlistener_free(l);
            snprintf(err, errlen, "metrics_listen: out of memory");
            return -1;
        }
        evconnlistener_enable(l);
        evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
        evhttp_set_max_headers_size(http, 8192);
        evhttp_set_max_body_size(http, 0);
        evhttp_set_timeout(http, 10);
        evhttp_set_cb(http, "/metrics", http_metrics_cb, m);
        evhttp_set_gencb(http, http_other_cb, m);
    }
    if (m->http)
        evhttp_free(m->http);
    m->http = http;
    free(m->addr);
    m->addr = xstrdup(addr);
    if (*addr)
        log_info("metrics: serving Prometheus metrics on http://%s/metrics", addr);
    return 0;
}
