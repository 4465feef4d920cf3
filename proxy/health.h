/* health.h - health alerts to the administrator and the daily report (see health.c). */
#ifndef SR_HEALTH_H
#define SR_HEALTH_H

struct daemon;
struct health;

/* The alerts, in `scanrelay status` order. */
enum health_alert {
    HA_SIGNATURE_AGE = 0,
    HA_SIGNATURE_RELOAD,
    HA_QUOTA_RETENTION,
    HA_FREE_SPACE,
    HA_QUEUE_SIZE,
    HA_DOWNSTREAM_DOWN,
    HA_MSGLOG_DROPS,
    HA_COUNT
};

const char *health_alert_name(enum health_alert a);

/*
 * Start the checks (a timer of alert.interval on d->base; the checks run
 * in d->side_pool). The alerts active before a restart are read back from
 * <state_directory>/alerts and are not mailed again. NULL when out of memory.
 */
struct health *health_new(struct daemon *d);
/* Stops the timer; a check in flight finishes first (call after the side pool is drained). */
void health_free(struct health *h);

/* A signature reload ended (any thread): a failure raises an alert, a success clears it. */
void health_reload_result(struct health *h, int ok, const char *msg);

/* Run a check now (after a reload: new thresholds). Loop only. */
void health_check_now(struct health *h);

/*
 * `scanrelay status`: "health checks: N" (checks done since start), then
 * one "alert: NAME SINCE TEXT" line per active alert (SINCE in seconds
 * since the epoch). Loop only.
 */
void health_status(struct health *h, void (*out)(void *arg, const char *line), void *arg);

/*
 * The daily report for today so far, mailed now (`scanrelay report`).
 * done(arg, ok, msg) later on the loop. Loop only.
 */
void health_report_now(struct health *h, void (*done)(void *arg, int ok, const char *msg),
                       void *arg);

/*
 * The one way health mail leaves: a text/plain UTF-8 message to the
 * notify.admin addresses from notify.from (null envelope sender,
 * Auto-Submitted: auto-generated) through queue_inject. 0 handed to the
 * queue, -1 nothing to send to (no admin, no queue) or no memory. Loop only.
 */
int health_send_mail(struct health *h, const char *subject, const char *body_utf8);

#endif
