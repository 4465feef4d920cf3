/* daemon.h - the state shared by the daemon's modules (one per process). */
#ifndef SR_DAEMON_H
#define SR_DAEMON_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#include "config.h"
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
struct workq;
struct event;

/* An address range for xforward_networks. */
struct netmask {
    int family;
    unsigned char addr[16];
    int bits;
};

struct daemon {
    struct event_base *base;
    struct sr_config *cfg;
    struct smtpd_limits lim;       /* derived from cfg; sessions point at it */
    struct netmask *xfnets;
    size_t nxfnets;
    struct relay *relay;
    struct queue *queue;           /* the deferred queue (queue/), or NULL */
    struct engine_holder *engines; /* the libclamav engine and its reload, or NULL */
    struct scan_pool *scan_pool;   /* scan threads, or NULL when scanning is off */
    struct qstore *qstore;         /* the quarantine store */
    struct msglog *msglog;         /* the message log, or NULL (log { enabled = no }) */
    struct workq *admin_wq;        /* blocking work for control requests */
    struct event *db_check_ev;     /* periodic signature directory check */
    struct event *db_watch_ev;     /* inotify on the signature directory */
    struct event *db_settle_ev;    /* short delay after a change before checking */
    struct sr_config **retired;    /* old configs still used by messages in flight */
    int cfg_holds;                 /* references held by queue and admin jobs (queue_glue) */
    size_t nretired;
    struct evconnlistener **listeners;
    size_t nlisteners;
    struct smtpd_session *sessions; /* all open sessions */
    int nsessions;
    int ntx;                        /* transactions in flight (pipeline) */
    int shutting_down;
    uint64_t stat_received, stat_relayed, stat_rejected, stat_deferred, stat_bounced;
    uint64_t stat_quarantined, stat_discarded;
};

/* Parse "a.b.c.d/n" or "v6/n"; 0 ok, -1 bad. */
int netmask_parse(const char *s, struct netmask *out);
/* 1 when the socket address is inside one of the ranges. */
int netmask_match(const struct netmask *nets, size_t n, const struct sockaddr *sa);

/* Derive d->lim and d->xfnets from d->cfg; 0 ok, -1 with err. */
int daemon_apply_config(struct daemon *d, char *err, size_t errlen);
/* Re-read the configuration file (SIGHUP, `scanrelay reload`); 0 ok, -1 kept old (msg says why). */
int daemon_reload(struct daemon *d, char *msg, size_t msglen);
/* Free retired configurations once no message in flight uses them. */
void daemon_release_configs(struct daemon *d);
/* Called by sessions and the pipeline when something finished during shutdown. */
void daemon_check_exit(struct daemon *d);

#endif
