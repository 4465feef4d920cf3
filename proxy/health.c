/*
 * health.c - health alerts to the administrator, and the daily report.
 *
 * Every alert.interval seconds a check runs in the side worker pool: it
 * measures each condition (the newest signature database file's mtime: a
 * freshclam that stopped delivering leaves them all old; a failed signature
 * reload, the quarantine quota cutting retention short, free space in the
 * state, queue and scratch folders, deferred queue size, downstream down
 * time, message-log rows dropped) and runs one small state machine per
 * alert: OFF -> ON when the condition starts (a warning in the log, one
 * mail), ON -> OFF when it ends (a line in the log, one mail). Nothing is
 * sent while an alert stays on. The active alerts are written crash-safely
 * to <state_directory>/alerts on each change and read back at start, so a
 * restart does not mail an alert again (and mails its clearing if the
 * condition is gone). Thresholds of 0 turn an alert off.
 *
 * Mail goes through health_send_mail() only (see health.h): the one place
 * to point at the notices module. With no notify.admin address, alerts
 * only go to the log and to `scanrelay status`.
 *
 * With alert.daily_report the first check of a new local day mails the
 * previous day's totals from the message log; health_report_now mails
 * today's so far (`scanrelay report`).
 *
 * Owns: the timer, the alert table (under mu: the worker, the reload
 * thread and the loop read it). A check holds a configuration reference.
 * Failures to write the state file are logged; the alerts keep working.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"
#include "envelope.h"
#include "health.h"
#include "log.h"
#include "msglog.h"
#include "notice.h"
#include "qstore.h"
#include "queue.h"
#include "relay.h"
#include "safefile.h"
#include "services.h"
#include "spool.h"
#include "wpool.h"

#define TEXT_MAX 512
#define MAIL_MAX (2 * HA_COUNT + 1)

static const char *const alert_names[HA_COUNT] = {
    [HA_SIGNATURE_AGE] = "signature_age",     [HA_SIGNATURE_RELOAD] = "signature_reload",
    [HA_QUOTA_RETENTION] = "quota_retention", [HA_FREE_SPACE] = "free_space",
    [HA_QUEUE_SIZE] = "queue_size",           [HA_DOWNSTREAM_DOWN] = "downstream_down",
    [HA_MSGLOG_DROPS] = "msglog_drops",
};

static const char *const alert_titles[HA_COUNT] = {
    [HA_SIGNATURE_AGE] = "virus signatures are out of date",
    [HA_SIGNATURE_RELOAD] = "virus signature reload failed",
    [HA_QUOTA_RETENTION] = "quarantine quota is cutting retention short",
    [HA_FREE_SPACE] = "free disk space is low",
    [HA_QUEUE_SIZE] = "the deferred queue is growing",
    [HA_DOWNSTREAM_DOWN] = "the downstream MTA does not answer",
    [HA_MSGLOG_DROPS] = "the message log is dropping rows",
};

struct alert {
    int active;
    int64_t since;
    char text[TEXT_MAX];
};

struct hmail {
    char subject[256];
    char *body;
    int raise; /* 1 raised, 0 cleared, -1 report */
    int which;
};

struct health {
    struct daemon *d;
    struct event *timer;
    pthread_mutex_t mu;
    struct alert a[HA_COUNT]; /* under mu */
    int reload_failed;        /* under mu */
    char reload_msg[TEXT_MAX];
    char report_day[16];      /* local day last reported (YYYYMMDD), under mu */

    /* The check in flight (one at a time). */
    int busy;
    int again;
    unsigned long checks; /* checks done (status: tests wait on it) */
    struct sr_config *cfg;
    size_t deferred;
    int64_t down_since;
    int have_drops;
    uint64_t last_dropped;
    struct hmail out[MAIL_MAX];
    int nout;
};

struct report_req {
    struct health *h;
    struct sr_config *cfg;
    struct hmail m;
    void (*done)(void *arg, int ok, const char *msg);
    void *arg;
};

struct sent {
    struct envelope *env;
    struct spool *sp;
};

const char *
health_alert_name(enum health_alert a)
{
    return (unsigned)a < HA_COUNT ? alert_names[a] : "?";
}

/*
 * The state file.
 */

static void
state_path(const struct sr_config *c, char *buf, size_t len, int tmp)
{
    snprintf(buf, len, "%s/alerts%s", c->state_directory, tmp ? ".tmp" : "");
}

struct fill_arg {
    const char *buf;
    size_t len;
};

static int
fill_buf(int fd, void *arg)
{
    struct fill_arg *f = arg;
    size_t off = 0;
    while (off < f->len) {
        ssize_t n = write(fd, f->buf + off, f->len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        off += (size_t)n;
    }
    return 0;
}

/* Write the active alerts and the report day (worker; caller holds no lock). */
static void
state_save(struct health *h, const struct sr_config *c)
{
    char buf[HA_COUNT * (TEXT_MAX + 64) + 64];
    size_t len = 0;
    pthread_mutex_lock(&h->mu);
    len += (size_t)snprintf(buf + len, sizeof(buf) - len, "report\t%s\n", h->report_day);
    for (int i = 0; i < HA_COUNT; i++)
        if (h->a[i].active && len < sizeof(buf))
            len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s\t%lld\t%s\n",
                                    alert_names[i], (long long)h->a[i].since, h->a[i].text);
    pthread_mutex_unlock(&h->mu);
    if (len > sizeof(buf))
        len = sizeof(buf);
    char path[4096], tmp[4096];
    state_path(c, path, sizeof(path), 0);
    state_path(c, tmp, sizeof(tmp), 1);
    struct fill_arg f = {buf, len};
    if (safe_write(tmp, path, c->state_directory, 0640, 0, fill_buf, &f) < 0)
        log_warn("health: cannot write %s", path);
}

/* Read the alerts active before a restart (start-up). */
static void
state_load(struct health *h, const struct sr_config *c)
{
    char path[4096], line[TEXT_MAX + 128];
    state_path(c, path, sizeof(path), 0);
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return;
    while (fgets(line, sizeof(line), fp)) {
        line[strcspn(line, "\n")] = '\0';
        char *t1 = strchr(line, '\t');
        if (t1 == NULL)
            continue;
        *t1++ = '\0';
        if (strcmp(line, "report") == 0) {
            snprintf(h->report_day, sizeof(h->report_day), "%s", t1);
            continue;
        }
        char *t2 = strchr(t1, '\t');
        if (t2 == NULL)
            continue;
        *t2++ = '\0';
        for (int i = 0; i < HA_COUNT; i++)
            if (strcmp(line, alert_names[i]) == 0) {
                h->a[i].active = 1;
                h->a[i].since = strtoll(t1, NULL, 10);
                snprintf(h->a[i].text, sizeof(h->a[i].text), "%s", t2);
            }
    }
    fclose(fp);
}

/*
 * Measurements (worker).
 */

static void
fmt_age(char *buf, size_t len, int64_t s)
{
    if (s >= 2 * 86400)
        snprintf(buf, len, "%lld days", (long long)(s / 86400));
    else if (s >= 2 * 3600)
        snprintf(buf, len, "%lld hours", (long long)(s / 3600));
    else if (s >= 120)
        snprintf(buf, len, "%lld minutes", (long long)(s / 60));
    else
        snprintf(buf, len, "%lld seconds", (long long)s);
}

static void
fmt_size(char *buf, size_t len, int64_t b)
{
    if (b >= 10LL * 1024 * 1024 * 1024)
        snprintf(buf, len, "%lld GB", (long long)(b >> 30));
    else if (b >= 10LL * 1024 * 1024)
        snprintf(buf, len, "%lld MB", (long long)(b >> 20));
    else
        snprintf(buf, len, "%lld KB", (long long)(b >> 10));
}

/* A signature database by its name (not freshclam.dat, mirrors.dat, locks...). */
static int
is_database(const char *name)
{
    static const char *const ext[] = {".cvd", ".cld", ".cud", ".ndb", ".ndu", ".hdb", ".hdu",
                                      ".hsb", ".hsu", ".mdb", ".mdu", ".msb", ".msu", ".ldb",
                                      ".ldu", ".idb", ".cdb", ".fp",  ".sfp", ".pdb", ".gdb",
                                      ".wdb", ".ftm", ".yar", ".yara", ".ign", ".ign2"};
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof(ext) / sizeof(ext[0]); i++)
        if (strcmp(dot, ext[i]) == 0)
            return 1;
    return 0;
}

/* The newest signature database file's mtime in the folder, or 0. */
static int64_t
newest_signature(const char *dir, char *name, size_t namelen)
{
    DIR *dp = opendir(dir);
    int64_t newest = 0;
    if (dp == NULL)
        return 0;
    struct dirent *de;
    int n = 0;
    while ((de = readdir(dp)) != NULL && n++ < 1000) {
        struct stat st;
        if (de->d_name[0] == '.' || !is_database(de->d_name) ||
            fstatat(dirfd(dp), de->d_name, &st, 0) < 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if ((int64_t)st.st_mtime > newest) {
            newest = (int64_t)st.st_mtime;
            snprintf(name, namelen, "%s", de->d_name);
        }
    }
    closedir(dp);
    return newest;
}

/* Condition of each alert into cond[] and text[] (worker). */
static void
measure(struct health *h, int64_t now, int cond[HA_COUNT], char text[HA_COUNT][TEXT_MAX])
{
    const struct sr_config *c = h->cfg;
    struct daemon *d = h->d;
    char a1[64], a2[64];

    if (c->alert.signature_age > 0 && d->engines) {
        char name[256] = "";
        int64_t newest = newest_signature(c->virus.database_directory, name, sizeof(name));
        if (newest > 0 && now - newest > c->alert.signature_age) {
            cond[HA_SIGNATURE_AGE] = 1;
            fmt_age(a1, sizeof(a1), now - newest);
            fmt_age(a2, sizeof(a2), c->alert.signature_age);
            snprintf(text[HA_SIGNATURE_AGE], TEXT_MAX,
                     "virus signatures are %s old (newest file %s/%s; alert.signature_age is "
                     "%s): is freshclam still delivering updates?",
                     a1, c->virus.database_directory, name, a2);
        }
    }
    pthread_mutex_lock(&h->mu);
    if (h->reload_failed) {
        cond[HA_SIGNATURE_RELOAD] = 1;
        snprintf(text[HA_SIGNATURE_RELOAD], TEXT_MAX, "%s", h->reload_msg);
    }
    pthread_mutex_unlock(&h->mu);

    int64_t oldest = 0;
    if (d->qstore && qstore_quota_cut(d->qstore, &oldest)) {
        cond[HA_QUOTA_RETENTION] = 1;
        int64_t age = now - oldest > 0 ? now - oldest : 0;
        char q[64];
        fmt_age(a1, sizeof(a1), age);
        fmt_age(a2, sizeof(a2), c->quarantine.retention);
        if (age >= 86400 && age < 2 * 86400)
            snprintf(a1, sizeof(a1), "1 day");
        fmt_size(q, sizeof(q), c->quarantine.quota);
        if (oldest == 0)
            snprintf(text[HA_QUOTA_RETENTION], TEXT_MAX,
                     "quota is cutting retention short: no mail is kept at all, retention is "
                     "%s (quarantine.quota %s)",
                     a2, q);
        else
            snprintf(text[HA_QUOTA_RETENTION], TEXT_MAX,
                     "quota is cutting retention short: oldest kept mail is %s old, retention "
                     "is %s (quarantine.quota %s)",
                     a1, a2, q);
    }

    if (c->alert.min_free_space > 0) {
        const char *dirs[3] = {c->state_directory, c->queue_directory,
                               c->virus.temporary_directory};
        size_t len = 0;
        for (int i = 0; i < 3; i++) {
            struct statvfs sv;
            if (dirs[i] == NULL || statvfs(dirs[i], &sv) < 0)
                continue;
            int64_t avail = (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
            if (avail >= c->alert.min_free_space || len >= TEXT_MAX)
                continue;
            fmt_size(a1, sizeof(a1), avail);
            fmt_size(a2, sizeof(a2), c->alert.min_free_space);
            len += (size_t)snprintf(text[HA_FREE_SPACE] + len, TEXT_MAX - len,
                                    "%s%s has %s free (alert.min_free_space %s)",
                                    len ? "; " : "", dirs[i], a1, a2);
            cond[HA_FREE_SPACE] = 1;
        }
    }

    if (c->alert.queue_size > 0 && h->deferred > (size_t)c->alert.queue_size) {
        cond[HA_QUEUE_SIZE] = 1;
        snprintf(text[HA_QUEUE_SIZE], TEXT_MAX,
                 "%zu messages in the deferred queue (alert.queue_size %lld)", h->deferred,
                 (long long)c->alert.queue_size);
    }

    if (c->alert.downstream_down > 0 && h->down_since > 0 &&
        now - h->down_since >= c->alert.downstream_down) {
        cond[HA_DOWNSTREAM_DOWN] = 1;
        fmt_age(a1, sizeof(a1), now - h->down_since);
        snprintf(text[HA_DOWNSTREAM_DOWN], TEXT_MAX,
                 "the downstream MTA %s has not answered for %s; mail waits in the deferred "
                 "queue",
                 c->relay, a1);
    }

    if (d->msglog) {
        struct msglog_counters mc;
        msglog_counters(d->msglog, &mc);
        if (h->have_drops && mc.dropped > h->last_dropped) {
            cond[HA_MSGLOG_DROPS] = 1;
            snprintf(text[HA_MSGLOG_DROPS], TEXT_MAX,
                     "the message log writer dropped %llu rows since the last check (%llu in "
                     "all): it cannot keep up with the mail or its database is locked",
                     (unsigned long long)(mc.dropped - h->last_dropped),
                     (unsigned long long)mc.dropped);
        }
        h->have_drops = 1;
        h->last_dropped = mc.dropped;
    }
}

/*
 * The daily report (worker).
 */

struct topbuf {
    char *buf;
    size_t len, cap;
};

static void
tb_add(struct topbuf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
tb_add(struct topbuf *t, const char *fmt, ...)
{
    va_list ap;
    if (t->len >= t->cap)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len += (size_t)n < t->cap - t->len ? (size_t)n : t->cap - t->len - 1;
}

static int
top_cb(void *arg, const struct msglog_top *t)
{
    tb_add(arg, "  %8lld  %s\n", (long long)t->count, t->name && t->name[0] ? t->name : "<>");
    return 0;
}

static int
stat_cb(void *arg, const struct msglog_stat *s)
{
    struct msglog_stat *sum = arg;
    sum->messages += s->messages;
    sum->bytes += s->bytes;
    sum->clean += s->clean;
    sum->virus += s->virus;
    sum->spam += s->spam;
    sum->policy += s->policy;
    sum->quarantined += s->quarantined;
    sum->deferred += s->deferred;
    sum->bounced += s->bounced;
    sum->rejected += s->rejected;
    sum->discarded += s->discarded;
    return 0;
}

struct qsum {
    int64_t n, bytes;
};

static int
qsum_cb(void *arg, const struct qmeta *m)
{
    struct qsum *q = arg;
    q->n++;
    q->bytes += m->size;
    return 0;
}

/* The report of the local day starting at day0 (until the end of the day or now). */
static void
build_report(struct health *h, const struct sr_config *c, time_t day0, struct hmail *m)
{
    struct daemon *d = h->d;
    time_t day1 = day0 + 86400 + 3600; /* DST: the next local midnight */
    struct tm tm;
    localtime_r(&day1, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_isdst = -1;
    day1 = mktime(&tm);
    char day[32];
    localtime_r(&day0, &tm);
    strftime(day, sizeof(day), "%Y-%m-%d", &tm);

    struct msglog_stat sum = {0};
    struct qsum qs = {0};
    struct topbuf t = {malloc(16384), 0, 16384};
    if (t.buf == NULL)
        return;
    t.buf[0] = '\0';
    if (d->msglog) {
        msglog_flush(d->msglog);
        msglog_stats(d->msglog, (int64_t)day0, (int64_t)day1, 0, stat_cb, &sum);
    }
    if (d->qstore) {
        struct qfilter f;
        qfilter_init(&f);
        f.state = -2;
        f.since = (int64_t)day0;
        f.until = (int64_t)day1;
        qstore_query(d->qstore, &f, qsum_cb, &qs);
    }
    tb_add(&t, "scanrelay on %s, %s\n\n", c->hostname, day);
    tb_add(&t, "messages      %10lld  (%lld bytes)\n", (long long)sum.messages,
           (long long)sum.bytes);
    tb_add(&t, "clean         %10lld\n", (long long)sum.clean);
    tb_add(&t, "virus         %10lld\n", (long long)sum.virus);
    tb_add(&t, "spam          %10lld\n", (long long)sum.spam);
    tb_add(&t, "policy        %10lld\n", (long long)sum.policy);
    tb_add(&t, "quarantined   %10lld  (%lld messages, %lld bytes)\n", (long long)sum.quarantined,
           (long long)qs.n, (long long)qs.bytes);
    tb_add(&t, "deferred      %10lld\n", (long long)sum.deferred);
    tb_add(&t, "bounced       %10lld\n", (long long)sum.bounced);
    tb_add(&t, "rejected      %10lld\n", (long long)sum.rejected);
    tb_add(&t, "discarded     %10lld\n", (long long)sum.discarded);
    static const char *const heads[3] = {"top viruses", "top senders", "top rules"};
    for (int which = 0; which < 3 && d->msglog; which++) {
        tb_add(&t, "\n%s:\n", heads[which]);
        size_t before = t.len;
        msglog_top(d->msglog, which, (int64_t)day0, (int64_t)day1, 10, top_cb, &t);
        if (t.len == before)
            tb_add(&t, "  (none)\n");
    }
    int64_t qbytes = 0;
    long qcount = 0;
    if (d->qstore && qstore_usage(d->qstore, &qbytes, &qcount) == 0)
        tb_add(&t, "\nquarantine: %ld messages, %lld bytes on disk\n", qcount,
               (long long)qbytes);
    m->body = t.buf;
    m->raise = -1;
    snprintf(m->subject, sizeof(m->subject), "scanrelay daily report for %s on %s", day,
             c->hostname);
}

static time_t
local_midnight(time_t t)
{
    struct tm tm;
    localtime_r(&t, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_isdst = -1;
    return mktime(&tm);
}

/*
 * The check.
 */

static void
check_work(void *arg)
{
    struct health *h = arg;
    const struct sr_config *c = h->cfg;
    int64_t now = (int64_t)time(NULL);
    int cond[HA_COUNT] = {0};
    static char text[HA_COUNT][TEXT_MAX]; /* one check at a time */
    int changed = 0;

    memset(text, 0, sizeof(text));
    measure(h, now, cond, text);
    h->nout = 0;

    /* One state machine per alert: mail on a change only. */
    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < HA_COUNT; i++) {
        struct alert *a = &h->a[i];
        if (cond[i] == a->active) {
            if (cond[i])
                memcpy(a->text, text[i], TEXT_MAX); /* status shows it now */
            continue;
        }
        struct hmail *m = &h->out[h->nout];
        m->which = i;
        m->raise = cond[i];
        if (cond[i]) {
            a->active = 1;
            a->since = now;
            memcpy(a->text, text[i], TEXT_MAX);
            snprintf(m->subject, sizeof(m->subject), "scanrelay alert on %s: %s", c->hostname,
                     alert_titles[i]);
            if (asprintf(&m->body,
                         "%s\n\nscanrelay on %s raised the alert %s.\n"
                         "It is mailed once; another mail follows when it clears.\n"
                         "`scanrelay status` lists the active alerts.\n",
                         a->text, c->hostname, alert_names[i]) < 0)
                m->body = NULL;
        } else {
            char dur[64];
            fmt_age(dur, sizeof(dur), now - a->since > 0 ? now - a->since : 0);
            snprintf(m->subject, sizeof(m->subject), "scanrelay alert cleared on %s: %s",
                     c->hostname, alert_titles[i]);
            if (asprintf(&m->body,
                         "The alert %s on %s has cleared after %s.\n\nIt was: %s\n",
                         alert_names[i], c->hostname, dur, a->text) < 0)
                m->body = NULL;
            a->active = 0;
            a->text[0] = '\0';
        }
        h->nout++;
        changed = 1;
    }

    /* The daily report: the first check of a new day mails the day before. */
    char today[16];
    time_t tnow = (time_t)now;
    struct tm tm;
    localtime_r(&tnow, &tm);
    strftime(today, sizeof(today), "%Y%m%d", &tm);
    int report = 0;
    if (strcmp(h->report_day, today) != 0) {
        report = c->alert.daily_report && h->report_day[0] != '\0';
        snprintf(h->report_day, sizeof(h->report_day), "%s", today);
        changed = 1;
    }
    pthread_mutex_unlock(&h->mu);

    if (report)
        build_report(h, c, local_midnight(local_midnight(tnow) - 3600), &h->out[h->nout++]);
    if (changed)
        state_save(h, c);
}

static void schedule(struct health *h);

static void
check_done(void *arg, int status)
{
    struct health *h = arg;
    for (int i = 0; i < h->nout; i++) {
        struct hmail *m = &h->out[i];
        if (status == WPOOL_DONE) {
            if (m->raise == 1)
                log_warnx("alert %s: %s", alert_names[m->which], h->a[m->which].text);
            else if (m->raise == 0)
                log_info("alert %s cleared", alert_names[m->which]);
            else
                log_info("daily report: %s", m->subject);
            if (m->body && !h->d->shutting_down)
                health_send_mail(h, m->subject, m->body);
        }
        free(m->body);
        m->body = NULL;
    }
    h->nout = 0;
    services_config_release(h->cfg);
    h->cfg = NULL;
    h->busy = 0;
    if (status == WPOOL_DONE)
        h->checks++;
    if (status == WPOOL_DONE && h->again) {
        h->again = 0;
        health_check_now(h);
    }
    services_idle(&h->d->svc); /* a shutdown may be waiting for the side pool */
}

void
health_check_now(struct health *h)
{
    struct daemon *d = h->d;
    if (h->busy) {
        h->again = 1;
        return;
    }
    if (d->shutting_down)
        return;
    /* What only the loop may read. */
    h->deferred = 0;
    if (d->queue) {
        size_t held = 0, active = 0;
        queue_counts(d->queue, &h->deferred, &held, &active);
    }
    if (d->relay && relay_down(d->relay)) {
        if (h->down_since == 0)
            h->down_since = (int64_t)time(NULL);
    } else {
        h->down_since = 0;
    }
    h->cfg = services_config_acquire(&d->svc);
    h->busy = 1;
    if (wpool_call(d->side_pool, check_work, check_done, h) < 0) {
        services_config_release(h->cfg);
        h->cfg = NULL;
        h->busy = 0;
    }
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct health *h = arg;
    health_check_now(h);
    schedule(h);
}

static void
schedule(struct health *h)
{
    const struct sr_config *c = services_config(&h->d->svc);
    struct timeval tv = {(time_t)c->alert.interval, 0};
    evtimer_add(h->timer, &tv);
}

struct health *
health_new(struct daemon *d)
{
    struct health *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->d = d;
    pthread_mutex_init(&h->mu, NULL);
    state_load(h, services_config(&d->svc));
    h->timer = evtimer_new(d->base, timer_cb, h);
    if (h->timer == NULL) {
        pthread_mutex_destroy(&h->mu);
        free(h);
        return NULL;
    }
    for (int i = 0; i < HA_COUNT; i++)
        if (h->a[i].active)
            log_warnx("alert %s (active since before the restart): %s", alert_names[i],
                      h->a[i].text);
    health_check_now(h);
    schedule(h);
    return h;
}

void
health_free(struct health *h)
{
    if (h == NULL)
        return;
    event_free(h->timer);
    for (int i = 0; i < h->nout; i++)
        free(h->out[i].body);
    services_config_release(h->cfg);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

void
health_reload_result(struct health *h, int ok, const char *msg)
{
    pthread_mutex_lock(&h->mu);
    h->reload_failed = !ok;
    snprintf(h->reload_msg, sizeof(h->reload_msg), "%s", msg ? msg : "");
    pthread_mutex_unlock(&h->mu);
}

void
health_status(struct health *h, void (*out)(void *arg, const char *line), void *arg)
{
    char line[TEXT_MAX + 128];
    snprintf(line, sizeof(line), "health checks: %lu", h->checks);
    out(arg, line);
    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < HA_COUNT; i++)
        if (h->a[i].active) {
            snprintf(line, sizeof(line), "alert: %s %lld %s", alert_names[i],
                     (long long)h->a[i].since, h->a[i].text);
            out(arg, line);
        }
    pthread_mutex_unlock(&h->mu);
}

/*
 * The report on demand.
 */

static void
report_work(void *arg)
{
    struct report_req *r = arg;
    build_report(r->h, r->cfg, local_midnight(time(NULL)), &r->m);
}

static void
report_done(void *arg, int status)
{
    struct report_req *r = arg;
    int ok = status == WPOOL_DONE && r->m.body != NULL;
    if (ok)
        ok = health_send_mail(r->h, r->m.subject, r->m.body) == 0;
    r->done(r->arg, ok,
            ok ? "daily report queued" : "no report sent (no notify.admin address or no queue)");
    free(r->m.body);
    struct health *h = r->h;
    services_config_release(r->cfg);
    free(r);
    services_idle(&h->d->svc);
}

void
health_report_now(struct health *h, void (*done)(void *arg, int ok, const char *msg), void *arg)
{
    struct report_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        done(arg, 0, "out of memory");
        return;
    }
    r->h = h;
    r->cfg = services_config_acquire(&h->d->svc);
    r->done = done;
    r->arg = arg;
    if (wpool_call(h->d->side_pool, report_work, report_done, r) < 0) {
        services_config_release(r->cfg);
        free(r);
        done(arg, 0, "out of memory");
    }
}

/*
 * The mail.
 */

static void
sent_cb(void *arg, int rc, int err, const char *id)
{
    struct sent *s = arg;
    if (rc < 0)
        log_warnx("health: cannot queue the mail to the administrator: %s", strerror(err));
    else
        log_info("%s: health mail to the administrator queued", id);
    envelope_free(s->env);
    spool_free(s->sp);
    free(s);
}

int
health_send_mail(struct health *h, const char *subject, const char *body_utf8)
{
    struct daemon *d = h->d;
    const struct sr_config *c = services_config(&d->svc);
    if (c->notify.nadmin == 0 || d->queue == NULL)
        return -1;
    struct sent *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -1;
    s->env = envelope_new();
    s->sp = spool_new((size_t)c->body_memory_limit, c->state_directory);
    if (s->env == NULL || s->sp == NULL || envelope_set_sender(s->env, "") < 0)
        goto fail;
    for (size_t i = 0; i < c->notify.nadmin; i++)
        if (envelope_add_rcpt(s->env, c->notify.admin[i], NULL, 0) < 0)
            goto fail;

    /* Headers. */
    char buf[1024], date[64];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
    static unsigned seq;
    int n = snprintf(buf, sizeof(buf),
                     "Date: %s\r\nFrom: %s%s%s\r\nMessage-ID: <%lld.%ld.%u.health@%s>\r\n",
                     date, c->notify.from[0] ? "" : "scanrelay <MAILER-DAEMON@",
                     c->notify.from[0] ? c->notify.from : c->hostname,
                     c->notify.from[0] ? "" : ">", (long long)now, (long)getpid(), ++seq,
                     c->hostname);
    if (spool_write(s->sp, buf, (size_t)n) < 0 || spool_write(s->sp, "To: ", 4) < 0)
        goto fail;
    for (size_t i = 0; i < c->notify.nadmin; i++) {
        n = snprintf(buf, sizeof(buf), "%s%s", i ? ",\r\n " : "", c->notify.admin[i]);
        if (spool_write(s->sp, buf, (size_t)n) < 0)
            goto fail;
    }
    /* Subject and body encoded as notices are (queue/notice_fmt.c), in UTF-8. */
    const char *cs, *cte;
    char *subj = notice_encode_header(subject, "utf-8");
    char *body = notice_encode_body(body_utf8, "utf-8", &cs, &cte);
    if (strcmp(cs, "us-ascii") == 0)
        cs = "UTF-8"; /* ASCII is UTF-8: the alert mail always says UTF-8 */
    n = -1;
    if (subj && body)
        n = snprintf(buf, sizeof(buf),
                     "\r\nAuto-Submitted: auto-generated\r\nX-Scanrelay-Notice: health\r\n"
                     "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=%s\r\n"
                     "Content-Transfer-Encoding: %s\r\nSubject: ",
                     cs, cte);
    int bad = n < 0 || spool_write(s->sp, buf, (size_t)n) < 0 ||
              spool_write(s->sp, subj, strlen(subj)) < 0 ||
              spool_write(s->sp, "\r\n\r\n", 4) < 0 || spool_write(s->sp, body, strlen(body)) < 0;
    free(subj);
    free(body);
    if (bad)
        goto fail;
    s->env->arrival = now;
    queue_inject(d->queue, s->env, NULL, 0, s->sp, sent_cb, s);
    return 0;

fail:
    log_warnx("health: cannot build the mail to the administrator: out of memory");
    envelope_free(s->env);
    spool_free(s->sp);
    free(s);
    return -1;
}
