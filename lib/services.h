/* services.h - what the daemon hands its modules: config references, idle hint, reload. */
#ifndef SR_SERVICES_H
#define SR_SERVICES_H

#include <stddef.h>

struct sr_config;

/*
 * One per daemon, embedded in struct daemon (d->svc). main fills it with
 * services_init and services_set_config; the modules it is handed to
 * (smtpd, pipeline, queue manager, control, qadmin) only call
 * services_config*, services_idle and services_reload.
 */
struct services {
    struct sr_config *cfg; /* current configuration; one reference held here */
    void (*idle_fn)(void *arg);
    int (*reload_fn)(void *arg, char *msg, size_t msglen);
    void *arg;
};

/* main: the hooks behind services_idle and services_reload. */
void services_init(struct services *s, void (*idle_fn)(void *arg),
                   int (*reload_fn)(void *arg, char *msg, size_t msglen), void *arg);

/* main: make cfg current (takes over the caller's reference), drop the old one. */
void services_set_config(struct services *s, struct sr_config *cfg);

/* The current configuration, borrowed: loop thread, not kept past the callback. */
struct sr_config *services_config(const struct services *s);

/*
 * A reference to the current configuration for a transaction or a job
 * that outlives the callback (worker threads read it): the job keeps the
 * configuration it started with across reloads. Release it when done.
 */
struct sr_config *services_config_acquire(struct services *s);
void services_config_release(struct sr_config *cfg);

/* Something finished (a session, a transaction, a job): the shutdown may complete now. */
void services_idle(struct services *s);

/* Re-read the configuration (`scanrelay reload`); 0 ok, -1 old kept (msg says why). */
int services_reload(struct services *s, char *msg, size_t msglen);

#endif
