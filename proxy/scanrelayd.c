/*
 * scanrelayd.c - the daemon's main: options, configuration, listeners,
 * signals, systemd notification, start-up and shutdown.
 *
 *   scanrelayd [-c FILE] [-f] [-d]     run (-f: foreground, log to stderr)
 *   scanrelayd -t [-c FILE] [-s UNIT]  check the configuration, exit 0/1
 *   scanrelayd -V                      versions of scanrelayd and its libraries
 *
 * Listeners: the sockets systemd passes (LISTEN_FDS, the scanrelayd.socket
 * unit) when there are any, so that connections wait in the kernel's
 * backlog while the daemon restarts; otherwise it binds `listen` itself.
 * -t compares the socket unit's ListenStream= with `listen` (warns).
 *
 * Signals: SIGHUP re-reads the configuration (a broken file keeps the old
 * one and logs why); SIGTERM/SIGINT stop accepting, close idle sessions
 * without a word (a 421 would be read by the client's next command as a
 * deferral), let transactions in flight finish and answer them within
 * shutdown_timeout, then exit.
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
#include <time.h>

#include "action.h"
#include "config.h"
#include "control.h"
#include "counter.h"
#include "daemon.h"
#include "engine.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "mime.h"
#include "msglog.h"
#include "notice.h"
#include "privdrop.h"
#include "qdb.h"
#include "policy.h"
#include "qstore.h"
#include "reconf.h"
#include "scan_pool.h"
#include "sdsock.h"
#include "wpool.h"
#include "queue.h"
#include "queue_glue.h"
#include "relay.h"
#include "smtpd.h"
#include "sr_archive.h"
#include "xmalloc.h"

static struct daemon daemon_state;
static const char *config_path;
static int config_explicit;
static struct event *shutdown_timer, *watchdog_timer;
static struct event *signal_events[3];

/* Sockets passed by systemd (or an emulation of it), taken before detaching. */
#define SD_MAX_FDS 16
static int sd_fds[SD_MAX_FDS];
static int sd_nfds;

/* Derive d->lim and d->xfnets from the configuration; 0 ok, -1 with err. */
static int
daemon_apply_config(struct daemon *d, const struct sr_config *c, char *err, size_t errlen)
{
    /* Notices: refused here (start, -t, reload) when they could loop. */
    if (notice_check_config(c, err, errlen) < 0)
        return -1;
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
add_listener(struct daemon *d, struct evconnlistener *l, const char *what)
{
    if (l == NULL)
        log_fatal("cannot listen on %s", what);
    evconnlistener_set_error_cb(l, accept_error_cb);
    d->listeners[d->nlisteners++] = l;
}

/* Socket activation: say where `listen` and the passed sockets differ. */
static void
compare_passed(const struct sr_config *c)
{
    char addr[SD_MAX_FDS][80];
    for (int i = 0; i < sd_nfds; i++)
        if (sdsock_addr(sd_fds[i], addr[i], sizeof(addr[i])) < 0)
            snprintf(addr[i], sizeof(addr[i]), "(fd %d)", sd_fds[i]);
    for (size_t j = 0; j < c->nlisten; j++) {
        int found = 0;
        for (int i = 0; i < sd_nfds && !found; i++)
            found = sdsock_same(c->listen[j], addr[i]);
        if (!found)
            log_warnx("listen: %s is not among the sockets systemd passed; the socket unit "
                      "decides where scanrelayd listens (see scanrelayd -t)",
                      c->listen[j]);
    }
    for (int i = 0; i < sd_nfds; i++) {
        int found = 0;
        for (size_t j = 0; j < c->nlisten && !found; j++)
            found = sdsock_same(c->listen[j], addr[i]);
        log_info("listening on %s (socket activation)%s", addr[i],
                 found ? "" : "; not in listen");
    }
}

static void
open_listeners(struct daemon *d)
{
    const struct sr_config *c = services_config(&d->svc);
    if (sd_nfds > 0) {
        /* The sockets belong to systemd: ours are copies, closed on exit. */
        d->listeners = xcalloc((size_t)sd_nfds, sizeof(*d->listeners));
        compare_passed(c);
        for (int i = 0; i < sd_nfds; i++) {
            char what[32];
            snprintf(what, sizeof(what), "passed socket %d", sd_fds[i]);
            evutil_make_socket_nonblocking(sd_fds[i]);
            add_listener(d,
                         evconnlistener_new(d->base, accept_cb, d,
                                            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0,
                                            sd_fds[i]),
                         what);
        }
        return;
    }
    d->listeners = xcalloc(c->nlisten, sizeof(*d->listeners));
    for (size_t i = 0; i < c->nlisten; i++) {
        struct sockaddr_storage ss;
        int len = sizeof(ss);
        if (evutil_parse_sockaddr_port(c->listen[i], (struct sockaddr *)&ss, &len) < 0)
            log_fatalx("listen: bad address '%s' (use IP:PORT)", c->listen[i]);
        add_listener(d,
                     evconnlistener_new_bind(d->base, accept_cb, d,
                                             LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                                 LEV_OPT_CLOSE_ON_EXEC,
                                             1024, (struct sockaddr *)&ss, len),
                     c->listen[i]);
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
        metrics_listen(d->metrics, nc->metrics_listen, err, sizeof(err)) < 0 ||
        relay_configure(d->relay, nc->relay, nc->hostname, (int)nc->relay_connections,
                        (int)nc->relay_connect_timeout, (int)nc->relay_timeout,
                        (int)nc->relay_data_timeout, (int)nc->relay_idle_time, err,
                        sizeof(err)) < 0) {
        char e2[64];
        daemon_apply_config(d, old, e2, sizeof(e2));
        metrics_listen(d->metrics, old->metrics_listen, e2, sizeof(e2));
        relay_configure(d->relay, old->relay, old->hostname, (int)old->relay_connections,
                        (int)old->relay_connect_timeout, (int)old->relay_timeout,
                        (int)old->relay_data_timeout, (int)old->relay_idle_time, e2, sizeof(e2));
        config_unref(nc);
        log_warnx("reload: %s; keeping the old configuration", err);
        snprintf(msg, msglen, "%s; keeping the old configuration", err);
        return -1;
    }
    char changed[600], restart[200];
    reconf_diff(old, nc, changed, sizeof(changed), restart, sizeof(restart));
    /*
     * The new one is current; the old one lives on while transactions and
     * jobs that started with it hold their references.
     */
    services_set_config(&d->svc, nc);
    old = NULL;
    d->config_loaded_at = (int64_t)time(NULL);
    reconf_apply(d);
    if (d->engines) {
        engine_holder_set_config(d->engines, &nc->virus);
        engine_reload_async(d->engines);
    }
    log_info("reload: %zu policy rules", policy_nrules(policy_of(nc)));
    if (d->health)
        health_check_now(d->health); /* new thresholds */
    snprintf(msg, msglen, "configuration reloaded; changed: %s%s%s%s",
             changed[0] ? changed : "nothing",
             restart[0] ? "; needs a restart to apply: " : "", restart,
             d->engines ? "; signature reload started" : "");
    if (restart[0])
        log_warnx("reload: changes of %s take effect after a restart", restart);
    log_info("reload: configuration %s: %s", nc->path ? nc->path : "(built-in defaults)", msg);
    return 0;
}

static int
reload_hook(void *arg, char *msg, size_t msglen)
{
    return daemon_reload(arg, msg, msglen);
}

static const struct sr_config *
notifier_config(void *arg)
{
    struct daemon *d = arg;
    return services_config(&d->svc);
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
        struct msglog_opts o = {.retention = c->log.retention,
                                .queue_max = (size_t)c->log.queue_max};
        snprintf(path, sizeof(path), "%s/messages.db", c->state_directory);
        d->msglog = msglog_open(path, &o, err, sizeof(err));
        if (d->msglog == NULL)
            log_fatalx("message log: %s", err);
    }
    d->side_pool = wpool_new(d->base, "sr-work", 2, 0, err, sizeof(err));
    if (d->side_pool == NULL)
        log_fatalx("%s", err);
    d->notifier = notifier_new(d->base, d->queue, d->side_pool, notifier_config, d,
                               c->state_directory, err, sizeof(err));
    if (d->notifier == NULL)
        log_fatalx("notices: %s", err);
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
    metrics_listen(d->metrics, "", NULL, 0);
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

/*
 * -t: the socket unit's ListenStream= against `listen`. The unit: -s FILE,
 * else $SCANRELAY_SOCKET_UNIT, else the first of the usual places (none
 * found: nothing to check). A difference is a warning: the unit wins.
 */
static const char *const socket_unit_paths[] = {
    "/etc/systemd/system/scanrelayd.socket",
    "/usr/lib/systemd/system/scanrelayd.socket",
    "/lib/systemd/system/scanrelayd.socket",
};

static int
check_socket_unit(const struct sr_config *c, const char *unit)
{
    char err[1024], **streams;
    size_t n;
    int explicit = unit != NULL;

    if (unit == NULL)
        unit = getenv("SCANRELAY_SOCKET_UNIT");
    explicit = explicit || unit != NULL;
    for (size_t i = 0; unit == NULL && i < sizeof(socket_unit_paths) / sizeof(*socket_unit_paths);
         i++)
        if (access(socket_unit_paths[i], R_OK) == 0)
            unit = socket_unit_paths[i];
    if (unit == NULL) {
        printf("scanrelayd: no socket unit (scanrelayd.socket) found: scanrelayd binds listen "
               "itself\n");
        return 0;
    }
    if (sdsock_unit_streams(unit, &streams, &n, err, sizeof(err)) < 0) {
        fprintf(stderr, "scanrelayd: socket unit %s\n", err);
        return explicit ? -1 : 0;
    }
    int mismatch = 0;
    if (n == 0) {
        fprintf(stderr, "scanrelayd: warning: socket unit %s has no ListenStream=\n", unit);
        mismatch = 1;
    }
    for (size_t j = 0; j < c->nlisten; j++) {
        int found = 0;
        for (size_t i = 0; i < n && !found; i++)
            found = sdsock_same(c->listen[j], streams[i]);
        if (!found) {
            fprintf(stderr,
                    "scanrelayd: warning: listen address %s is not a ListenStream= of %s; "
                    "under systemd the socket unit decides where scanrelayd listens\n",
                    c->listen[j], unit);
            mismatch = 1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        for (size_t j = 0; j < c->nlisten && !found; j++)
            found = sdsock_same(c->listen[j], streams[i]);
        if (!found) {
            fprintf(stderr, "scanrelayd: warning: %s: ListenStream=%s is not in listen\n", unit,
                    streams[i]);
            mismatch = 1;
        }
    }
    if (!mismatch)
        printf("scanrelayd: socket unit %s listens where listen says\n", unit);
    sdsock_free_list(streams, n);
    return 0;
}

static void
usage(void)
{
    fprintf(stderr, "usage: scanrelayd [-c FILE] [-f] [-d]\n"
                    "       scanrelayd -t [-c FILE] [-s UNIT]\n"
                    "       scanrelayd -V\n"
                    "  -c FILE  configuration (default %s)\n"
                    "  -f       stay in the foreground, log to stderr\n"
                    "  -d       debug logging\n"
                    "  -t       check the configuration and exit\n"
                    "  -s UNIT  with -t: the systemd socket unit to compare with listen\n"
                    "           (default $SCANRELAY_SOCKET_UNIT, else scanrelayd.socket\n"
                    "           in /etc/systemd/system, /usr/lib/systemd/system)\n"
                    "  -V       print the versions of scanrelayd and its libraries\n",
            SR_DEFAULT_CONFIG);
    exit(2);
}

int
main(int argc, char **argv)
{
    struct daemon *d = &daemon_state;
    int foreground = 0, test = 0, debug = 0, ch;
    const char *socket_unit = NULL;
    char err[1024];

    while ((ch = getopt(argc, argv, "c:fdthVs:")) != -1) {
        switch (ch) {
        case 's':
            socket_unit = optarg;
            break;
        case 'V':
            printf("scanrelayd %s\n"
                   "libclamav %s\n"
                   "libevent %s\n"
                   "GMime %s\n"
                   "%s\n"
                   "SQLite %s\n",
                   SCANRELAY_VERSION, engine_version(), event_get_version(),
                   mime_library_version(), arch_library_version(), qdb_sqlite_version());
            return 0;
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
    if (cfg->metrics_listen[0]) {
        struct sockaddr_storage ss;
        int len = sizeof(ss);
        if (evutil_parse_sockaddr_port(cfg->metrics_listen, (struct sockaddr *)&ss, &len) < 0) {
            fprintf(stderr, "scanrelayd: %s: metrics_listen: bad address '%s' (use IP:PORT)\n",
                    cfg->path ? cfg->path : "(defaults)", cfg->metrics_listen);
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
        if (check_socket_unit(cfg, socket_unit) < 0)
            return 1;
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
        if (privdrop_check(cfg, stdout) < 0)
            return 1;
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

    /* Started as root: the user to drop to, and its folders. */
    if (privdrop_prepare(cfg, err, sizeof(err)) < 0)
        log_fatalx("%s", err);
    if (make_dir(cfg->state_directory, 0750) < 0)
        log_fatal("cannot create state_directory %s", cfg->state_directory);
    if (make_dir(cfg->queue_directory, 0750) < 0)
        log_fatal("cannot create queue_directory %s", cfg->queue_directory);

    /* Sockets from systemd: LISTEN_PID names this process, not the detached child. */
    sd_nfds = sdsock_take(sd_fds, SD_MAX_FDS);
    if (sd_nfds < 0)
        log_fatal("LISTEN_FDS: cannot take the sockets systemd passed");

    /* Without -f: detach (under systemd, the unit passes -f). */
    if (!foreground && getenv("INVOCATION_ID") == NULL && daemon(0, 0) < 0)
        log_fatal("cannot detach from the terminal");

    register_counters(d);
    d->started_at = d->config_loaded_at = (int64_t)time(NULL);
    evthread_use_pthreads();
    d->base = event_base_new();
    if (d->base == NULL)
        log_fatalx("cannot create the event loop");
    /*
     * Started as root with a user to drop to: bind first (a port below 1024
     * needs root), then drop, before the queue, the stores or any mail.
     */
    if (privdrop_pending()) {
        open_listeners(d);
        if (privdrop_drop(err, sizeof(err)) < 0)
            log_fatalx("%s", err);
    }
    d->relay = relay_new(d->base, cfg->relay, cfg->hostname, (int)cfg->relay_connections,
                         (int)cfg->relay_connect_timeout, (int)cfg->relay_timeout,
                         (int)cfg->relay_data_timeout, (int)cfg->relay_idle_time, err,
                         sizeof(err));
    if (d->relay == NULL)
        log_fatalx("%s", err);
    if (queue_glue_open(d, err, sizeof(err)) < 0)
        log_fatalx("%s", err);
    open_stores(d);
    d->metrics = metrics_new(d);
    metrics_refresh_now(d->metrics);
    if (cfg->scan.enabled) {
        engine_fallback_database(&cfg->virus, cfg->path != NULL,
                                 SCANRELAY_SOURCE_DIR "/share/signatures");
        if (reconf_scan_start(d, err, sizeof(err)) < 0)
            log_fatalx("cannot start scanning: %s", err);
    } else {
        log_info("scanning is off (scan { enabled = no }): messages are relayed unscanned");
    }

    if (d->nlisteners == 0)
        open_listeners(d);
    if (control_open(d, err, sizeof(err)) < 0)
        log_fatalx("%s", err);
    if (metrics_listen(d->metrics, cfg->metrics_listen, err, sizeof(err)) < 0)
        log_fatalx("%s", err);
    d->health = health_new(d);
    if (d->health == NULL)
        log_fatalx("health checks: out of memory");

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
    notifier_free(d->notifier); /* after its state writes, before the queue */
    metrics_free(d->metrics); /* after the pools whose completions feed it */
    d->metrics = NULL;
    if (d->engines)
        engine_holder_free(d->engines);
    health_free(d->health); /* after the side pool (a check in flight) and the reload thread */
    d->health = NULL;
    struct event *evs[] = {d->db_check_ev, d->db_watch_ev, d->db_settle_ev};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i])
            event_free(evs[i]);
    if (d->msglog)
        msglog_close(d->msglog);
    qstore_close(d->qstore);
    if (d->engines)
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
