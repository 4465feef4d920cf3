/*
 * scanrelayd.c - the daemon's main: options, configuration, listeners,
 * signals, systemd notification, start-up and shutdown.
 *
 *   scanrelayd [-c FILE] [-f] [-d]     run (-f: foreground, log to stderr)
 *   scanrelayd -t [-c FILE]            check the configuration, exit 0/1
 *
 * Signals: SIGHUP re-reads the configuration (a broken file keeps the old
 * one and logs why); SIGTERM/SIGINT stop accepting, let transactions in
 * flight finish within shutdown_timeout, then exit.
 * systemd: READY=1 once listening, WATCHDOG=1 at half of WATCHDOG_USEC,
 * STOPPING=1 on shutdown (plain datagrams to $NOTIFY_SOCKET; no library).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <event2/util.h>

#include "action.h"
#include "config.h"
#include "control.h"
#include "counter.h"
#include "daemon.h"
#include "engine.h"
#include "log.h"
#include "mime.h"
#include "msglog.h"
#include "policy.h"
#include "qstore.h"
#include "scan_pool.h"
#include "wpool.h"
#include "queue.h"
#include "queue_glue.h"
#include "relay.h"
#include "smtpd.h"
#include "xmalloc.h"

static struct daemon daemon_state;
static const char *config_path;
static int config_explicit;
static struct event *shutdown_timer, *watchdog_timer;
static struct event *signal_events[3];

/* Derive d->lim and d->xfnets from the configuration; 0 ok, -1 with err. */
static int
daemon_apply_config(struct daemon *d, const struct sr_config *c, char *err, size_t errlen)
{
    struct cidr *nets = calloc(c->nxforward_networks + 1, sizeof(*nets));
    if (nets == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < c->nxforward_networks; i++) {
        if (cidr_parse(c->xforward_networks[i], &nets[i]) < 0) {
            snprintf(err, errlen, "%s: xforward_networks: bad network '%s'",
                     c->path ? c->path : "(defaults)", c->xforward_networks[i]);
            free(nets);
            return -1;
        }
    }
    free(d->xfnets);
    d->xfnets = nets;
    d->nxfnets = c->nxforward_networks;
    d->lim.max_command_length = (size_t)c->max_command_length;
    d->lim.max_recipients = (size_t)c->max_recipients;
    d->lim.max_commands = (size_t)c->max_commands;
    d->lim.max_errors = (size_t)c->max_errors;
    d->lim.max_message_size = c->max_message_size;
    d->lim.xforward_allowed = 0;
    d->lim.hostname = c->hostname;
    return 0;
}

/*
 * systemd notification.
 */
static void
sd_notify_msg(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || (path[0] != '/' && path[0] != '@'))
        return;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n >= sizeof(sun.sun_path)) {
        close(fd);
        return;
    }
    memcpy(sun.sun_path, path, n);
    if (sun.sun_path[0] == '@')
        sun.sun_path[0] = '\0';
    ssize_t w = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun,
                       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
    (void)w;
    close(fd);
}

static void
watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    sd_notify_msg("WATCHDOG=1");
}

/*
 * Listeners.
 */
static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)l;
    smtpd_accept(arg, fd, sa, salen);
}

static void
accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    int e = EVUTIL_SOCKET_ERROR();
    log_warnx("accept: %s", evutil_socket_error_to_string(e));
}

static void
open_listeners(struct daemon *d)
{
    const struct sr_config *c = services_config(&d->svc);
    d->listeners = xcalloc(c->nlisten, sizeof(*d->listeners));
    for (size_t i = 0; i < c->nlisten; i++) {
        struct sockaddr_storage ss;
        int len = sizeof(ss);
        if (evutil_parse_sockaddr_port(c->listen[i], (struct sockaddr *)&ss, &len) < 0)
            log_fatalx("listen: bad address '%s' (use IP:PORT)", c->listen[i]);
        struct evconnlistener *l = evconnlistener_new_bind(
            d->base, accept_cb, d, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
            1024, (struct sockaddr *)&ss, len);
        if (l == NULL)
            log_fatal("cannot listen on %s", c->listen[i]);
        evconnlistener_set_error_cb(l, accept_error_cb);
        d->listeners[d->nlisteners++] = l;
    }
}

static void
close_listeners(struct daemon *d)
{
    for (size_t i = 0; i < d->nlisteners; i++)
        evconnlistener_free(d->listeners[i]);
    d->nlisteners = 0;
}

/*
 * Reload and shutdown.
 */
/* Re-read the configuration file (SIGHUP, `scanrelay reload`); 0 ok, -1 kept the old one. */
static int
daemon_reload(struct daemon *d, char *msg, size_t msglen)
{
    char err[1024];
    struct sr_config *nc = config_load(config_path, config_explicit, err, sizeof(err));
    if (nc == NULL) {
        log_warnx("reload: %s; keeping the old configuration", err);
        snprintf(msg, msglen, "%s; keeping the old configuration", err);
        return -1;
    }
    if (policy_attach(nc, err, sizeof(err)) < 0) {
        config_unref(nc);
        log_warnx("reload: %s; keeping the old configuration", err);
        snprintf(msg, msglen, "%s; keeping the old configuration", err);
        return -1;
    }
    struct sr_config *old = services_config(&d->svc);
    if (daemon_apply_config(d, nc, err, sizeof(err)) < 0 ||
        relay_configure(d->relay, nc->relay, nc->hostname, (int)nc->relay_connections,
                        (int)nc->relay_connect_timeout, (int)nc->relay_timeout,
                        (int)nc->relay_data_timeout, (int)nc->relay_idle_time, err,
                        sizeof(err)) < 0) {
        char e2[64];
        daemon_apply_config(d, old, e2, sizeof(e2));
        relay_configure(d->relay, old->relay, old->hostname, (int)old->relay_connections,
                        (int)old->relay_connect_timeout, (int)old->relay_timeout,
                        (int)old->relay_data_timeout, (int)old->relay_idle_time, e2, sizeof(e2));
        config_unref(nc);
        log_warnx("reload: %s; keeping the old configuration", err);
        snprintf(msg, msglen, "%s; keeping the old configuration", err);
        return -1;
    }
    /* Things that need a restart. */
    int same_listen = old->nlisten == nc->nlisten;
    for (size_t i = 0; same_listen && i < nc->nlisten; i++)
        same_listen = strcmp(old->listen[i], nc->listen[i]) == 0;
    if (!same_listen || strcmp(old->queue_directory, nc->queue_directory) ||
        strcmp(old->state_directory, nc->state_directory) ||
        strcmp(old->control_socket, nc->control_socket) ||
        old->scan.enabled != nc->scan.enabled || old->scan.threads != nc->scan.threads ||
        old->quarantine.retention != nc->quarantine.retention ||
        old->quarantine.quota != nc->quarantine.quota || old->log.enabled != nc->log.enabled)
        log_warnx("reload: changes of listen, state_directory, queue_directory, "
                  "control_socket, scan.enabled, scan.threads, quarantine and log settings "
                  "take effect after a restart");
    /*
     * The new one is current; the old one lives on while transactions and
     * jobs that started with it hold their references.
     */
    services_set_config(&d->svc, nc);
    old = NULL;
    if (d->engines) {
        engine_holder_set_config(d->engines, &nc->virus);
        engine_reload_async(d->engines);
    }
    log_info("reload: configuration %s reloaded (%zu policy rules)%s",
             nc->path ? nc->path : "(built-in defaults)", policy_nrules(policy_of(nc)),
             d->engines ? "; signature reload started" : "");
    snprintf(msg, msglen, "configuration reloaded%s",
             d->engines ? "; signature reload started" : "");
    return 0;
}

static int
reload_hook(void *arg, char *msg, size_t msglen)
{
    return daemon_reload(arg, msg, msglen);
}

/*
 * Signature databases: where, the first load, reloads.
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

/* The quarantine store (checked and purged in the background) and the message log. */
static void
open_stores(struct daemon *d)
{
    char err[1024];
    struct sr_config *c = services_config(&d->svc);
    d->qstore = qstore_open(c->state_directory, 0, err, sizeof(err));
    if (d->qstore == NULL)
        log_fatalx("quarantine: %s", err);
    long fixed = 0;
    if (qstore_check(d->qstore, &fixed) < 0)
        log_warnx("quarantine: the start-up check failed");
    else if (fixed)
        log_info("quarantine: repaired %ld leftover(s) of an interrupted run", fixed);
    if (qstore_purger_start(d->qstore, c->quarantine.retention, c->quarantine.quota, 60) < 0)
        log_warnx("quarantine: cannot start the retention purger");
    if (c->log.enabled) {
        char path[4096];
        struct msglog_opts o = {.retention = c->log.retention};
        snprintf(path, sizeof(path), "%s/messages.db", c->state_directory);
        d->msglog = msglog_open(path, &o, err, sizeof(err));
        if (d->msglog == NULL)
            log_fatalx("message log: %s", err);
    }
    d->side_pool = wpool_new(d->base, "sr-work", 2, 0, err, sizeof(err));
    if (d->side_pool == NULL)
        log_fatalx("%s", err);
}

static void
start_scanning(struct daemon *d)
{
    char err[1024];
    struct sr_config *c = services_config(&d->svc);
    d->engines = engine_holder_new(&c->virus, err, sizeof(err));
    if (d->engines == NULL)
        log_fatalx("cannot load the signature databases: %s", err);
    /* The engine logs reloads and their failures itself. */
    /* No pool-wide configuration: every job carries its transaction's reference. */
    d->scan_pool = scan_pool_new(d->base, d->engines, NULL, (int)c->scan.threads,
                                 (int)c->scan.max_pending, err, sizeof(err));
    if (d->scan_pool == NULL)
        log_fatalx("cannot start the scan threads: %s", err);
    struct sr_engine *e = engine_holder_get(d->engines);
    log_info("scanning with ClamAV %s, %u signatures from %s, %d scan threads", engine_version(),
             engine_signatures(e), c->virus.database_directory, scan_pool_threads(d->scan_pool));
    engine_unref(e);
    if (c->virus.check_interval > 0) {
        struct timeval tv = {c->virus.check_interval, 0};
        d->db_check_ev = event_new(d->base, -1, EV_PERSIST, db_check_cb, d);
        evtimer_add(d->db_check_ev, &tv);
    }
    int wfd = engine_watch_fd(d->engines);
    if (wfd >= 0) {
        d->db_watch_ev = event_new(d->base, wfd, EV_READ | EV_PERSIST, db_watch_cb, d);
        event_add(d->db_watch_ev, NULL);
        d->db_settle_ev = evtimer_new(d->base, db_check_cb, d);
    }
}

/* Something finished: during a shutdown, exit once nothing is left. */
static void
daemon_check_exit(struct daemon *d)
{
    if (d->shutting_down && d->nsessions == 0 && d->ntx == 0 &&
        (d->relay == NULL || relay_busy(d->relay) == 0) &&
        (d->queue == NULL || queue_busy(d->queue) == 0) &&
        wpool_pending(d->side_pool) == 0)
        event_base_loopexit(d->base, NULL);
}

static void
idle_hook(void *arg)
{
    daemon_check_exit(arg);
}

static void
shutdown_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    (void)fd;
    (void)what;
    log_warnx("shutdown: %d session(s) still busy after shutdown_timeout; exiting anyway",
              d->nsessions);
    event_base_loopbreak(d->base);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    (void)what;

    if (sig == SIGHUP) {
        char msg[1100];
        sd_notify_msg("RELOADING=1");
        daemon_reload(d, msg, sizeof(msg));
        sd_notify_msg("READY=1");
        return;
    }
    if (d->shutting_down)
        return;
    log_info("terminating on signal %d", (int)sig);
    sd_notify_msg("STOPPING=1");
    d->shutting_down = 1;
    close_listeners(d);
    control_close();
    smtpd_shutdown_all(d);
    relay_close_idle(d->relay);
    struct timeval tv = {services_config(&d->svc)->shutdown_timeout, 0};
    shutdown_timer = evtimer_new(d->base, shutdown_timeout_cb, d);
    evtimer_add(shutdown_timer, &tv);
    daemon_check_exit(d);
}

/* The message counters (`scanrelay status` prints them in this order). */
static void
register_counters(struct daemon *d)
{
    d->counters = counter_reg_new();
    d->cnt.received = counter_new(d->counters, "received", "messages received from the upstream");
    d->cnt.relayed = counter_new(d->counters, "relayed", "messages accepted by the downstream");
    d->cnt.rejected = counter_new(d->counters, "rejected", "messages refused with a 5xx");
    d->cnt.deferred = counter_new(d->counters, "deferred",
                                  "messages answered 4xx or taken into the deferred queue");
    d->cnt.bounced = counter_new(d->counters, "bounced",
                                 "messages with recipients refused permanently downstream");
    d->cnt.quarantined = counter_new(d->counters, "quarantined", "messages quarantined");
    d->cnt.discarded = counter_new(d->counters, "discarded", "messages discarded");
}

/* mkdir -p for a folder we own. */
static int
make_dir(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

static void
usage(void)
{
    fprintf(stderr, "usage: scanrelayd [-c FILE] [-f] [-d]\n"
                    "       scanrelayd -t [-c FILE]\n"
                    "  -c FILE  configuration (default %s)\n"
                    "  -f       stay in the foreground, log to stderr\n"
                    "  -d       debug logging\n"
                    "  -t       check the configuration and exit\n",
            SR_DEFAULT_CONFIG);
    exit(2);
}

int
main(int argc, char **argv)
{
    struct daemon *d = &daemon_state;
    int foreground = 0, test = 0, debug = 0, ch;
    char err[1024];

    while ((ch = getopt(argc, argv, "c:fdth")) != -1) {
        switch (ch) {
        case 'c':
            config_path = optarg;
            config_explicit = 1;
            break;
        case 'f':
            foreground = 1;
            break;
        case 'd':
            debug = 1;
            break;
        case 't':
            test = 1;
            break;
        default:
            usage();
        }
    }
    if (optind != argc)
        usage();

    /*
     * With TZ unset, glibc's tzset() (libclamav calls mktime() in every
     * scan) stats /etc/localtime each time; with it set, once. A changed
     * time zone then needs a restart, as in Postfix.
     */
    if (getenv("TZ") == NULL)
        setenv("TZ", ":/etc/localtime", 0);

    /*
     * Configuration.
     */
    sr_action_register();
    struct sr_config *cfg = config_load(config_path, config_explicit, err, sizeof(err));
    if (cfg == NULL) {
        fprintf(stderr, "scanrelayd: %s\n", err);
        return 1;
    }
    if (policy_attach(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "scanrelayd: %s\n", err);
        config_unref(cfg);
        return 1;
    }
    services_init(&d->svc, idle_hook, reload_hook, d);
    services_set_config(&d->svc, cfg); /* cfg: valid until the loop runs (a reload replaces it) */
    if (daemon_apply_config(d, cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "scanrelayd: %s\n", err);
        return 1;
    }
    {
        struct sockaddr_storage ss;
        int len = sizeof(ss);
        for (size_t i = 0; i < cfg->nlisten; i++)
            if (evutil_parse_sockaddr_port(cfg->listen[i], (struct sockaddr *)&ss, &len) < 0) {
                fprintf(stderr, "scanrelayd: %s: listen: bad address '%s' (use IP:PORT)\n",
                        cfg->path ? cfg->path : "(defaults)", cfg->listen[i]);
                return 1;
            }
    }
    if (test) {
        struct event_base *b = event_base_new();
        struct relay *r = relay_new(b, cfg->relay, "check", 1, 1, 1, 1, 1, err, sizeof(err));
        if (r == NULL) {
            fprintf(stderr, "scanrelayd: %s: %s\n", cfg->path ? cfg->path : "(defaults)",
                    err);
            return 1;
        }
        relay_free(r);
        event_base_free(b);
        if (cfg->scan.enabled) {
            log_init("scanrelayd", 1);
            engine_fallback_database(&cfg->virus, cfg->path != NULL,
                                 SCANRELAY_SOURCE_DIR "/share/signatures");
            struct engine_holder *h = NULL;
            if (engine_global_init(err, sizeof(err)) < 0 ||
                (h = engine_holder_new(&cfg->virus, err, sizeof(err))) == NULL) {
                fprintf(stderr, "scanrelayd: %s: signature databases: %s\n",
                        cfg->path ? cfg->path : "(defaults)", err);
                return 1;
            }
            struct sr_engine *e = engine_holder_get(h);
            printf("scanrelayd: %u signatures loaded from %s\n", engine_signatures(e),
                   cfg->virus.database_directory);
            engine_unref(e);
            engine_holder_free(h);
        }
        printf("scanrelayd: configuration %s is ok\n",
               cfg->path ? cfg->path : "(built-in defaults)");
        services_set_config(&d->svc, NULL);
        free(d->xfnets);
        return 0;
    }

    log_init("scanrelayd", foreground || getenv("INVOCATION_ID") != NULL);
    log_set_debug(debug || cfg->debug);
    signal(SIGPIPE, SIG_IGN);
    umask(027);

    /* Many connections: raise the descriptor limit as far as allowed. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    if (make_dir(cfg->state_directory, 0750) < 0)
        log_fatal("cannot create state_directory %s", cfg->state_directory);
    if (make_dir(cfg->queue_directory, 0750) < 0)
        log_fatal("cannot create queue_directory %s", cfg->queue_directory);

    /* Without -f: detach (under systemd, the unit passes -f). */
    if (!foreground && getenv("INVOCATION_ID") == NULL && daemon(0, 0) < 0)
        log_fatal("cannot detach from the terminal");

    register_counters(d);
    evthread_use_pthreads();
    d->base = event_base_new();
    if (d->base == NULL)
        log_fatalx("cannot create the event loop");
    d->relay = relay_new(d->base, cfg->relay, cfg->hostname, (int)cfg->relay_connections,
                         (int)cfg->relay_connect_timeout, (int)cfg->relay_timeout,
                         (int)cfg->relay_data_timeout, (int)cfg->relay_idle_time, err,
                         sizeof(err));
    if (d->relay == NULL)
        log_fatalx("%s", err);
    if (queue_glue_open(d, err, sizeof(err)) < 0)
        log_fatalx("%s", err);
    open_stores(d);
    if (cfg->scan.enabled) {
        engine_fallback_database(&cfg->virus, cfg->path != NULL,
                                 SCANRELAY_SOURCE_DIR "/share/signatures");
        mime_global_init();
        if (engine_global_init(err, sizeof(err)) < 0)
            log_fatalx("libclamav: %s", err);
        start_scanning(d);
    } else {
        log_info("scanning is off (scan { enabled = no }): messages are relayed unscanned");
    }

    open_listeners(d);
    if (control_open(d, err, sizeof(err)) < 0)
        log_fatalx("%s", err);

    int sigs[] = {SIGHUP, SIGTERM, SIGINT};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        signal_events[i] = evsignal_new(d->base, sigs[i], signal_cb, d);
        evsignal_add(signal_events[i], NULL);
    }
    const char *wd = getenv("WATCHDOG_USEC");
    if (wd && atoll(wd) > 0) {
        long long us = atoll(wd) / 2;
        struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
        watchdog_timer = event_new(d->base, -1, EV_PERSIST, watchdog_cb, NULL);
        evtimer_add(watchdog_timer, &tv);
    }

    char lst[512] = "";
    for (size_t i = 0; i < cfg->nlisten; i++)
        snprintf(lst + strlen(lst), sizeof(lst) - strlen(lst), "%s%s", i ? " " : "",
                 cfg->listen[i]);
    log_info("daemon started -- version %s, configuration %s, listening on %s, relay %s",
             SCANRELAY_VERSION, cfg->path ? cfg->path : "(built-in defaults)", lst,
             cfg->relay);
    sd_notify_msg("READY=1");

    int scanning = cfg->scan.enabled;
    cfg = NULL; /* from here on, a reload may free it */
    event_base_dispatch(d->base);

    /*
     * Tear down.
     */
    log_info("stopped: %llu received, %llu relayed, %llu rejected, %llu deferred",
             (unsigned long long)counter_value(d->cnt.received),
             (unsigned long long)counter_value(d->cnt.relayed),
             (unsigned long long)counter_value(d->cnt.rejected),
             (unsigned long long)counter_value(d->cnt.deferred));
    control_close();
    if (d->scan_pool)
        scan_pool_free(d->scan_pool);
    wpool_free(d->side_pool); /* after the scans: a finished scan may start side work */
    if (d->engines)
        engine_holder_free(d->engines);
    struct event *evs[] = {d->db_check_ev, d->db_watch_ev, d->db_settle_ev};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i])
            event_free(evs[i]);
    if (d->msglog)
        msglog_close(d->msglog);
    qstore_close(d->qstore);
    if (scanning)
        mime_global_shutdown();
    queue_glue_close(d);
    relay_free(d->relay);
    if (shutdown_timer)
        event_free(shutdown_timer);
    if (watchdog_timer)
        event_free(watchdog_timer);
    for (size_t i = 0; i < sizeof(signal_events) / sizeof(signal_events[0]); i++)
        if (signal_events[i])
            event_free(signal_events[i]);
    free(d->xfnets);
    free(d->listeners);
    counter_reg_free(d->counters);
    services_set_config(&d->svc, NULL);
    event_base_free(d->base);
    return 0;
}
