/* daemon.h - the state shared by the daemon's modules (one per process). */
#ifndef SR_DAEMON_H
#define SR_DAEMON_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#include "cidr.h"
#include "config.h"
#include "services.h"
#include "smtpd_proto.h"

struct event_base;
struct relay;
struct smtpd_session;
struct evconnlistener;
struct queue;
struct scan_pool;
struct engine_holder;
struct qstore;
struct msglog;
struct wpool;
struct counter;
struct counter_reg;
struct event;
struct notifier;
struct metrics;
struct health;

struct daemon {
    struct event_base *base;
    struct services svc;           /* current config (services_config), idle hint, reload */
    struct smtpd_limits lim;       /* derived from the config; sessions point at it */
    struct cidr *xfnets;
    size_t nxfnets;
    struct relay *relay;
    struct queue *queue;           /* the deferred queue (queue/), or NULL */
    struct engine_holder *engines; /* the libclamav engine and its reload, or NULL */
    struct scan_pool *scan_pool;   /* scan threads, or NULL when scanning is off */
    struct qstore *qstore;         /* the quarantine store */
    struct msglog *msglog;         /* the message log, or NULL (log { enabled = no }) */
    struct notifier *notifier;     /* notices (queue/notice.c): verdicts, admin text */
    struct health *health;         /* health alerts and the daily report, or NULL */
    struct wpool *side_pool;       /* "sr-work": quarantine writes, strip rewrites, admin work */
    struct event *db_check_ev;     /* periodic signature directory check */
    struct event *db_watch_ev;     /* inotify on the signature directory */
    struct event *db_settle_ev;    /* short delay after a change before checking */
    struct evconnlistener **listeners;
    size_t nlisteners;
    struct smtpd_session *sessions; /* all open sessions */
    int nsessions;
    int ntx;                        /* transactions in flight (pipeline) */
    int shutting_down;
    int scan_starting;              /* a reload switched scanning on: the engine compiles */
    int msglog_opening;             /* a reload switched the message log on: it opens */
    struct counter_reg *counters;   /* message counters, in `scanrelay status` order */
    struct {
        struct counter *received, *relayed, *rejected, *deferred, *bounced, *quarantined,
            *discarded;
    } cnt;
    struct metrics *metrics;        /* families, histograms, the /metrics listener */
    int64_t started_at;             /* Unix time the daemon started */
    int64_t config_loaded_at;       /* Unix time the configuration in force was loaded */
};

#endif
