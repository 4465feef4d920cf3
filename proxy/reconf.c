/*
 * reconf.c - starting scanning, and applying a reloaded configuration to
 * the parts of the running daemon that keep their own copy of a setting.
 *
 * Public calls: reconf_diff, reconf_apply, reconf_scan_start.
 *
 * reconf_diff compares two configurations key by key and names the keys
 * that changed, and separately those a reload cannot apply: listen (the
 * sockets are bound once; with socket activation systemd holds them),
 * state_directory, queue_directory and control_socket (folders and files
 * in use cannot move under a running daemon). Everything else applies.
 *
 * reconf_apply (loop thread, after the new configuration is current) makes
 * the running parts follow it: the scan pool's thread count
 * (wpool_resize), scanning switched on (the engine compiles in the side
 * pool; until it is ready messages pass unscanned, as they did while
 * scanning was off) or off (new messages are not scanned; the engine stays
 * loaded for a later "on"), the signature check interval, the quarantine
 * purger's retention and quota, the message log switched on (opened in the
 * side pool) or off (closed there, after its rows are written) and its
 * retention. Settings read per message or per delivery (limits, actions,
 * the relay, queue timers) need nothing: jobs take the configuration in
 * force when they start.
 *
 * Failures are logged and leave the part as it was; nothing here exits.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "daemon.h"
#include "engine.h"
#include "health.h"
#include "log.h"
#include "mime.h"
#include "msglog.h"
#include "qstore.h"
#include "reconf.h"
#include "scan_pool.h"
#include "services.h"
#include "wpool.h"

enum kind { K_I64, K_INT, K_STR };

struct key {
    const char *name;
    size_t off;
    enum kind kind;
    int restart; /* a reload cannot apply it */
};

#define KEY(n, m, k, r) {n, offsetof(struct sr_config, m), k, r}

static const struct key keys[] = {
    KEY("relay", relay, K_STR, 0),
    KEY("state_directory", state_directory, K_STR, 1),
    KEY("queue_directory", queue_directory, K_STR, 1),
    KEY("control_socket", control_socket, K_STR, 1),
    KEY("metrics_listen", metrics_listen, K_STR, 0),
    KEY("hostname", hostname, K_STR, 0),
    KEY("max_message_size", max_message_size, K_I64, 0),
    KEY("max_connections", max_connections, K_I64, 0),
    KEY("max_recipients", max_recipients, K_I64, 0),
    KEY("max_command_length", max_command_length, K_I64, 0),
    KEY("max_commands", max_commands, K_I64, 0),
    KEY("max_errors", max_errors, K_I64, 0),
    KEY("smtpd_timeout", smtpd_timeout, K_I64, 0),
    KEY("smtpd_command_deadline", smtpd_command_deadline, K_I64, 0),
    KEY("smtpd_min_data_rate", smtpd_min_data_rate, K_I64, 0),
    KEY("body_memory_limit", body_memory_limit, K_I64, 0),
    KEY("relay_connections", relay_connections, K_I64, 0),
    KEY("relay_connect_timeout", relay_connect_timeout, K_I64, 0),
    KEY("relay_timeout", relay_timeout, K_I64, 0),
    KEY("relay_data_timeout", relay_data_timeout, K_I64, 0),
    KEY("relay_idle_time", relay_idle_time, K_I64, 0),
    KEY("shutdown_timeout", shutdown_timeout, K_I64, 0),
    KEY("debug", debug, K_INT, 0),
    KEY("virus.database_directory", virus.database_directory, K_STR, 0),
    KEY("virus.action", virus.action, K_INT, 0),
    KEY("virus.check_interval", virus.check_interval, K_I64, 0),
    KEY("virus.max_scan_size", virus.max_scan_size, K_I64, 0),
    KEY("virus.max_file_size", virus.max_file_size, K_I64, 0),
    KEY("virus.max_recursion", virus.max_recursion, K_I64, 0),
    KEY("virus.max_files", virus.max_files, K_I64, 0),
    KEY("virus.max_scan_time", virus.max_scan_time, K_I64, 0),
    KEY("scan.enabled", scan.enabled, K_INT, 0),
    KEY("scan.threads", scan.threads, K_I64, 0),
    KEY("scan.max_pending", scan.max_pending, K_I64, 0),
    KEY("scan.timeout", scan.timeout, K_I64, 0),
    KEY("scan.max_mime_depth", scan.max_mime_depth, K_I64, 0),
    KEY("scan.max_mime_parts", scan.max_mime_parts, K_I64, 0),
    KEY("queue.queue_run_delay", queue.queue_run_delay, K_I64, 0),
    KEY("queue.minimal_backoff_time", queue.minimal_backoff_time, K_I64, 0),
    KEY("queue.maximal_backoff_time", queue.maximal_backoff_time, K_I64, 0),
    KEY("queue.maximal_queue_lifetime", queue.maximal_queue_lifetime, K_I64, 0),
    KEY("queue.bounce_queue_lifetime", queue.bounce_queue_lifetime, K_I64, 0),
    KEY("queue.delay_warning_time", queue.delay_warning_time, K_I64, 0),
    KEY("queue.max_parallel", queue.max_parallel, K_I64, 0),
    KEY("queue.min_free_space", queue.min_free_space, K_I64, 0),
    KEY("queue.probe_interval", queue.probe_interval, K_I64, 0),
    KEY("quarantine.retention", quarantine.retention, K_I64, 0),
    KEY("quarantine.quota", quarantine.quota, K_I64, 0),
    KEY("log.enabled", log.enabled, K_INT, 0),
    KEY("log.retention", log.retention, K_I64, 0),
};

static int
key_differs(const struct sr_config *a, const struct sr_config *b, const struct key *k)
{
    const char *pa = (const char *)a + k->off, *pb = (const char *)b + k->off;
    switch (k->kind) {
    case K_I64:
        return *(const int64_t *)pa != *(const int64_t *)pb;
    case K_INT:
        return *(const int *)pa != *(const int *)pb;
    case K_STR: {
        const char *sa = *(char *const *)pa, *sb = *(char *const *)pb;
        return strcmp(sa ? sa : "", sb ? sb : "") != 0;
    }
    }
    return 0;
}

static int
lists_differ(char *const *a, size_t na, char *const *b, size_t nb)
{
    if (na != nb)
        return 1;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return 1;
    return 0;
}

/* Append ", name" (or "name") to buf, or "..." once it is full. */
static void
add_name(char *buf, size_t len, const char *name)
{
    size_t o = strlen(buf);
    if (o + strlen(name) + 6 >= len) {
        if (o + 4 < len && (o < 3 || strcmp(buf + o - 3, "...") != 0))
            snprintf(buf + o, len - o, "%s...", o ? ", " : "");
        return;
    }
    snprintf(buf + o, len - o, "%s%s", o ? ", " : "", name);
}

int
reconf_diff(const struct sr_config *old, const struct sr_config *nc, char *changed,
            size_t changed_len, char *restart, size_t restart_len)
{
    int n = 0;
    changed[0] = restart[0] = '\0';
    if (lists_differ(old->listen, old->nlisten, nc->listen, nc->nlisten)) {
        add_name(restart, restart_len, "listen");
        n++;
    }
    if (lists_differ(old->xforward_networks, old->nxforward_networks, nc->xforward_networks,
                     nc->nxforward_networks)) {
        add_name(changed, changed_len, "xforward_networks");
        n++;
    }
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (!key_differs(old, nc, &keys[i]))
            continue;
        if (keys[i].restart)
            add_name(restart, restart_len, keys[i].name);
        else
            add_name(changed, changed_len, keys[i].name);
        n++;
    }
    return n;
}

/*
 * Scanning.
 */

static void
db_check_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    (void)fd;
    (void)what;
    if (engine_check_dir(d->engines) == 1)
        log_info("signature database %s changed: reloading in the background",
                 services_config(&d->svc)->virus.database_directory);
}

static void
db_watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    (void)fd;
    (void)what;
    if (engine_watch_read(d->engines) == 1) {
        /* freshclam writes several files: check once it is done. */
        struct timeval tv = {2, 0};
        evtimer_add(d->db_settle_ev, &tv);
    }
}

/* The signature check timer at the interval in force (0: none). */
static void
db_check_schedule(struct daemon *d, int64_t interval)
{
    if (d->db_check_ev == NULL)
        d->db_check_ev = event_new(d->base, -1, EV_PERSIST, db_check_cb, d);
    if (d->db_check_ev == NULL)
        return;
    event_del(d->db_check_ev);
    if (interval > 0) {
        struct timeval tv = {(time_t)interval, 0};
        evtimer_add(d->db_check_ev, &tv);
    }
}

/* A signature reload ended (the reload thread): health.c alerts on a failure. */
static void
reload_result_cb(void *arg, int ok, const char *msg)
{
    struct daemon *d = arg;
    if (d->health)
        health_reload_result(d->health, ok, msg);
}

/* The engine is loaded (d->engines): start the pool and the directory watch. */
static int
scan_pool_start(struct daemon *d, char *err, size_t errlen)
{
    const struct sr_config *c = services_config(&d->svc);
    engine_holder_on_reload(d->engines, reload_result_cb, d);
    /* No pool-wide configuration: every job carries its transaction's reference. */
    d->scan_pool = scan_pool_new(d->base, d->engines, NULL, (int)c->scan.threads,
                                 (int)c->scan.max_pending, err, errlen);
    if (d->scan_pool == NULL)
        return -1;
    struct sr_engine *e = engine_holder_get(d->engines);
    log_info("scanning with ClamAV %s, %u signatures from %s, %d scan threads", engine_version(),
             engine_signatures(e), c->virus.database_directory, scan_pool_threads(d->scan_pool));
    engine_unref(e);
    db_check_schedule(d, c->virus.check_interval);
    int wfd = engine_watch_fd(d->engines);
    if (wfd >= 0) {
        d->db_watch_ev = event_new(d->base, wfd, EV_READ | EV_PERSIST, db_watch_cb, d);
        if (d->db_watch_ev)
            event_add(d->db_watch_ev, NULL);
        d->db_settle_ev = evtimer_new(d->base, db_check_cb, d);
    }
    return 0;
}

/* Once per process, before the first engine. */
static int
scan_global_init(char *err, size_t errlen)
{
    static int done;
    if (done)
        return 0;
    mime_global_init();
    if (engine_global_init(err, errlen) < 0)
        return -1;
    done = 1;
    return 0;
}

int
reconf_scan_start(struct daemon *d, char *err, size_t errlen)
{
    struct sr_config *c = services_config(&d->svc);
    if (scan_global_init(err, errlen) < 0)
        return -1;
    d->engines = engine_holder_new(&c->virus, err, errlen);
    if (d->engines == NULL)
        return -1;
    return scan_pool_start(d, err, errlen);
}

/* Scanning switched on by a reload: compile in the side pool, then start. */
struct scan_on {
    struct daemon *d;
    struct sr_config *cfg; /* held for the load */
    struct engine_holder *h;
    char err[1024];
};

static void
scan_on_work(void *arg)
{
    struct scan_on *s = arg;
    s->h = engine_holder_new(&s->cfg->virus, s->err, sizeof(s->err));
}

static void
scan_on_done(void *arg, int status)
{
    struct scan_on *s = arg;
    struct daemon *d = s->d;
    d->scan_starting = 0;
    if (status != WPOOL_DONE || s->h == NULL) {
        if (status == WPOOL_DONE)
            log_warnx("reload: cannot start scanning: %s; messages pass unscanned", s->err);
        engine_holder_free(s->h);
    } else if (d->shutting_down || d->engines) {
        engine_holder_free(s->h);
    } else {
        char err[1024];
        d->engines = s->h;
        engine_holder_set_config(d->engines, &services_config(&d->svc)->virus);
        if (scan_pool_start(d, err, sizeof(err)) < 0)
            log_warnx("reload: cannot start the scan threads: %s", err);
    }
    services_config_release(s->cfg);
    free(s);
    services_idle(&d->svc);
}

static void
scan_apply(struct daemon *d, struct sr_config *c)
{
    if (!c->scan.enabled)
        return; /* new transactions skip the scan (pipeline_start) */
    if (d->engines == NULL) {
        char err[1024];
        if (d->scan_starting)
            return;
        if (scan_global_init(err, sizeof(err)) < 0) {
            log_warnx("reload: cannot start scanning: %s", err);
            return;
        }
        engine_fallback_database(&c->virus, c->path != NULL,
                                 SCANRELAY_SOURCE_DIR "/share/signatures");
        struct scan_on *s = calloc(1, sizeof(*s));
        if (s == NULL)
            return;
        s->d = d;
        s->cfg = services_config_acquire(&d->svc);
        if (wpool_call(d->side_pool, scan_on_work, scan_on_done, s) < 0) {
            services_config_release(s->cfg);
            free(s);
            log_warnx("reload: cannot start scanning: the side pool refused the job");
            return;
        }
        d->scan_starting = 1;
        log_info("reload: scanning switched on: compiling the signatures in the background; "
                 "messages pass unscanned until they are ready");
        return;
    }
    if (d->scan_pool == NULL)
        return;
    int want = (int)c->scan.threads;
    if (want <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        want = n > 0 ? (int)n : 1;
    }
    if (scan_pool_threads(d->scan_pool) != want) {
        int old = scan_pool_threads(d->scan_pool);
        int rc = scan_pool_resize(d->scan_pool, want);
        if (rc != 0)
            log_warnx("reload: scan threads %d -> %d: %s", old, want, strerror(rc));
        else
            log_info("reload: scan threads %d -> %d", old, want);
    }
    scan_pool_set_max_pending(d->scan_pool, (int)c->scan.max_pending);
    db_check_schedule(d, c->virus.check_interval);
}

/*
 * The message log.
 */
struct log_switch {
    struct daemon *d;
    struct msglog *log; /* close: the one to close; open: the one opened */
    char path[4096];
    struct msglog_opts o;
    char err[1024];
};

static void
log_close_work(void *arg)
{
    struct log_switch *s = arg;
    msglog_close(s->log);
}

static void
log_open_work(void *arg)
{
    struct log_switch *s = arg;
    s->log = msglog_open(s->path, &s->o, s->err, sizeof(s->err));
}

static void
log_switch_done(void *arg, int status)
{
    struct log_switch *s = arg;
    struct daemon *d = s->d;
    (void)status;
    if (s->path[0]) { /* an open */
        d->msglog_opening = 0;
        if (s->log == NULL) {
            if (status == WPOOL_DONE)
                log_warnx("reload: message log: %s", s->err);
        } else if (d->msglog == NULL && services_config(&d->svc)->log.enabled &&
                   !d->shutting_down) {
            d->msglog = s->log;
            msglog_set_retention(d->msglog, services_config(&d->svc)->log.retention);
            log_info("reload: message log switched on (%s)", s->path);
        } else {
            msglog_close(s->log); /* switched off again meanwhile (rare: blocks briefly) */
        }
    } else if (status != WPOOL_DONE) {
        msglog_close(s->log); /* the pool stopped before the close ran */
    }
    free(s);
    services_idle(&d->svc);
}

static void
log_apply(struct daemon *d, const struct sr_config *c)
{
    if (c->log.enabled && d->msglog) {
        msglog_set_retention(d->msglog, c->log.retention);
        return;
    }
    if (!c->log.enabled && d->msglog) {
        /* Rows are appended on the loop only: after this no one appends. */
        struct log_switch *s = calloc(1, sizeof(*s));
        if (s == NULL)
            return;
        s->d = d;
        s->log = d->msglog;
        d->msglog = NULL;
        if (wpool_call(d->side_pool, log_close_work, log_switch_done, s) < 0) {
            msglog_close(s->log);
            free(s);
        }
        log_info("reload: message log switched off");
        return;
    }
    if (c->log.enabled && !d->msglog && !d->msglog_opening) {
        struct log_switch *s = calloc(1, sizeof(*s));
        if (s == NULL)
            return;
        s->d = d;
        snprintf(s->path, sizeof(s->path), "%s/messages.db", c->state_directory);
        s->o.retention = c->log.retention;
        if (wpool_call(d->side_pool, log_open_work, log_switch_done, s) < 0) {
            free(s);
            return;
        }
        d->msglog_opening = 1;
    }
}

void
reconf_apply(struct daemon *d)
{
    struct sr_config *c = services_config(&d->svc);
    scan_apply(d, c);
    if (d->qstore)
        qstore_purger_set(d->qstore, c->quarantine.retention, c->quarantine.quota);
    log_apply(d, c);
}
