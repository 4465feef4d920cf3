/*
 * cmd_log.c - "scanrelay log" and "scanrelay stats": the message log
 * (state_directory/messages.db, quarantine/msglog.h), read-only.
 *
 *   scanrelay log [--from A] [--to A] [--subject GLOB] [--id QID]
 *        [--message-id MID] [--verdict V] [--action A] [--rule NAME]
 *        [--since T] [--until T] [--limit N]
 *   scanrelay stats [--days N] [--by hour|day] [--top N]
 *
 * log prints one line per message, newest first, in the layout of the
 * daemon's log lines (QUEUEID: from=<>, to=<>, size=, client=, result=,
 * virus=, rule=, score=, action=, relay=, delay=, delays=, dsn=, status=) plus
 * subject and message-id; --limit defaults to 100 (0: all). Filters and
 * times as in "scanrelay quarantine list" (cmd_quarantine.c); --rule
 * matches the deciding rule of the verdict exactly.
 *
 * stats prints totals per hour or per local day over the last N days
 * (default 7, by day; 1 or 2 days default to by hour) from the hourly
 * aggregate the daemon keeps, so it costs the same for any log size,
 * then the top viruses and top senders (whole UTC days) of the period.
 * -j: one JSON object per line ("type": "period" | "total" | "virus" |
 * "sender").
 *
 * Exit status: 0, 2 usage or runtime error. No log yet is not an error:
 * nothing is printed but the headings.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "msglog.h"

int cmd_log(struct cli_opts *o, int argc, char **argv);
int cmd_stats(struct cli_opts *o, int argc, char **argv);

/* Open the log read-only; NULL with *absent = 1 when there is none yet. */
static struct msglog *
open_log(struct cli_opts *o, int *absent)
{
    char path[4096], err[1024];
    struct msglog *log;

    *absent = 0;
    snprintf(path, sizeof(path), "%s/messages.db", o->cfg->state_directory);
    if (access(path, F_OK) < 0 && errno == ENOENT) {
        *absent = 1;
        return NULL;
    }
    if ((log = msglog_open_ro(path, err, sizeof(err))) == NULL)
        fprintf(stderr, "scanrelay: cannot open the message log: %s\n", err);
    return log;
}

static void
jstr(FILE *fp, const char *s)
{
    if (s == NULL || s[0] == '\0')
        fputs("null", fp);
    else
        cli_put_json(fp, s);
}

/*
 * log
 */

static int
log_json(const struct msglog_row *r)
{
    char when[32];
    qcli_format_time(r->time, when, sizeof(when));
    fputs("{\"id\": ", stdout);
    cli_put_json(stdout, r->id);
    printf(", \"time\": %lld, \"date\": \"%s\", \"client\": ", (long long)r->time, when);
    jstr(stdout, r->client);
    fputs(", \"sender\": ", stdout);
    cli_put_json(stdout, r->sender ? r->sender : "");
    fputs(", \"recipients\": [", stdout);
    for (size_t i = 0; i < r->nrcpt; i++) {
        if (i)
            fputs(", ", stdout);
        cli_put_json(stdout, r->rcpts[i]);
    }
    fputs("], \"message_id\": ", stdout);
    jstr(stdout, r->message_id);
    fputs(", \"subject\": ", stdout);
    cli_put_json(stdout, r->subject ? r->subject : "");
    printf(", \"size\": %lld, \"verdict\": ", (long long)r->size);
    jstr(stdout, r->verdict);
    fputs(", \"action\": ", stdout);
    jstr(stdout, r->action);
    fputs(", \"virus\": ", stdout);
    jstr(stdout, r->virus);
    fputs(", \"rule\": ", stdout);
    jstr(stdout, r->rule);
    printf(", \"score\": %.2f, \"delay\": %.3f, \"delays\": ", r->score, r->delay);
    jstr(stdout, r->delays);
    fputs(", \"relay\": ", stdout);
    jstr(stdout, r->relay);
    fputs(", \"dsn\": ", stdout);
    jstr(stdout, r->dsn);
    fputs(", \"status\": ", stdout);
    jstr(stdout, r->status);
    fputs(", \"downstream_id\": ", stdout);
    jstr(stdout, r->downstream_id);
    fputs("}\n", stdout);
    return ferror(stdout) ? 1 : 0;
}

static void
kv(const char *key, const char *val)
{
    if (val == NULL || val[0] == '\0')
        return;
    printf(", %s=", key);
    cli_put_safe(stdout, val);
}

static int
log_cb(void *arg, const struct msglog_row *r)
{
    struct cli_opts *o = arg;
    char when[32], num[64];

    if (o->json)
        return log_json(r);
    qcli_format_time(r->time, when, sizeof(when));
    printf("%s %s: from=<", when, r->id);
    cli_put_safe(stdout, r->sender);
    fputs(">, to=<", stdout);
    for (size_t i = 0; i < r->nrcpt; i++) {
        if (i)
            fputs(">,<", stdout);
        cli_put_safe(stdout, r->rcpts[i]);
    }
    printf(">, size=%lld", (long long)r->size);
    kv("client", r->client);
    kv("result", r->verdict);
    kv("virus", r->virus);
    kv("rule", r->rule);
    if (r->score != 0) {
        snprintf(num, sizeof(num), "%.2f", r->score);
        kv("score", num);
    }
    kv("action", r->action);
    kv("relay", r->relay);
    snprintf(num, sizeof(num), "%.2f", r->delay);
    kv("delay", num);
    kv("delays", r->delays);
    kv("dsn", r->dsn);
    kv("status", r->status);
    kv("message-id", r->message_id);
    fputs(", subject=\"", stdout);
    cli_put_safe(stdout, r->subject);
    fputs("\"\n", stdout);
    return ferror(stdout) ? 1 : 0;
}

static void
log_usage(void)
{
    fprintf(stderr, "usage: scanrelay [-j] log [--from A] [--to A] [--subject GLOB] [--id QID] "
                    "[--message-id MID] [--verdict V] [--action A] [--rule NAME] [--since T] "
                    "[--until T] [--limit N]\n");
}

int
cmd_log(struct cli_opts *o, int argc, char **argv)
{
    struct msglog_filter f;
    int64_t now = (int64_t)time(NULL);
    int absent;

    memset(&f, 0, sizeof(f));
    f.limit = 100;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (val == NULL) {
            log_usage();
            return 2;
        }
        i++;
        if (strcmp(opt, "--from") == 0)
            f.sender = val;
        else if (strcmp(opt, "--to") == 0)
            f.recipient = val;
        else if (strcmp(opt, "--subject") == 0)
            f.subject = val;
        else if (strcmp(opt, "--id") == 0)
            f.id = val;
        else if (strcmp(opt, "--message-id") == 0)
            f.message_id = val;
        else if (strcmp(opt, "--verdict") == 0 || strcmp(opt, "--result") == 0)
            f.verdict = val;
        else if (strcmp(opt, "--action") == 0)
            f.action = val;
        else if (strcmp(opt, "--rule") == 0)
            f.rule = val;
        else if (strcmp(opt, "--since") == 0 || strcmp(opt, "--until") == 0) {
            if (qcli_parse_time(val, now, opt[2] == 's' ? &f.since : &f.until) < 0) {
                fprintf(stderr,
                        "scanrelay: bad time '%s' (2026-11-23, \"2026-11-23 10:00\", "
                        "2h, 3d)\n",
                        val);
                return 2;
            }
        } else if (strcmp(opt, "--limit") == 0) {
            if (qcli_parse_limit(val, &f.limit) < 0) {
                log_usage();
                return 2;
            }
        } else {
            log_usage();
            return 2;
        }
    }
    struct msglog *log = open_log(o, &absent);
    if (log == NULL)
        return absent ? 0 : 2;
    long k = msglog_query(log, &f, log_cb, o);
    msglog_close(log);
    if (k < 0) {
        fprintf(stderr, "scanrelay: message log query failed\n");
        return 2;
    }
    return cli_flush_stdout();
}

/*
 * stats
 */

struct stats_ctx {
    struct cli_opts *o;
    int by_day;
    long n;
    struct msglog_stat total;
};

static void
human(int64_t b, char *buf, size_t len)
{
    if (b >= 10LL * 1024 * 1024 * 1024)
        snprintf(buf, len, "%.1fG", (double)b / (1024.0 * 1024 * 1024));
    else if (b >= 10LL * 1024 * 1024)
        snprintf(buf, len, "%.1fM", (double)b / (1024.0 * 1024));
    else if (b >= 10LL * 1024)
        snprintf(buf, len, "%.1fk", (double)b / 1024.0);
    else
        snprintf(buf, len, "%lld", (long long)b);
}

static void
stat_line(struct stats_ctx *c, const char *label, const struct msglog_stat *s, const char *type)
{
    if (c->o->json) {
        printf("{\"type\": \"%s\", ", type);
        if (strcmp(type, "period") == 0)
            printf("\"period\": \"%s\", \"start\": %lld, ", label, (long long)s->start);
        printf("\"messages\": %lld, \"bytes\": %lld, \"clean\": %lld, \"virus\": %lld, "
               "\"spam\": %lld, \"policy\": %lld, \"quarantined\": %lld, \"deferred\": %lld, "
               "\"bounced\": %lld, \"rejected\": %lld, \"discarded\": %lld}\n",
               (long long)s->messages, (long long)s->bytes, (long long)s->clean,
               (long long)s->virus, (long long)s->spam, (long long)s->policy,
               (long long)s->quarantined, (long long)s->deferred, (long long)s->bounced,
               (long long)s->rejected, (long long)s->discarded);
        return;
    }
    char b[32];
    human(s->bytes, b, sizeof(b));
    printf("%-16s %9lld %8s %9lld %7lld %7lld %7lld %7lld %7lld %7lld\n", label,
           (long long)s->messages, b, (long long)s->clean, (long long)s->virus, (long long)s->spam,
           (long long)s->policy, (long long)s->quarantined, (long long)s->deferred,
           (long long)s->bounced);
}

static int
stats_cb(void *arg, const struct msglog_stat *s)
{
    struct stats_ctx *c = arg;
    char label[32];
    time_t t = (time_t)s->start;
    struct tm tm;

    localtime_r(&t, &tm);
    strftime(label, sizeof(label), c->by_day ? "%Y-%m-%d" : "%Y-%m-%d %H:00", &tm);
    stat_line(c, label, s, "period");
    c->n++;
    int64_t *dst[] = {&c->total.messages,    &c->total.bytes,    &c->total.clean,
                      &c->total.virus,       &c->total.spam,     &c->total.policy,
                      &c->total.quarantined, &c->total.deferred, &c->total.bounced,
                      &c->total.rejected,    &c->total.discarded};
    const int64_t src[] = {s->messages, s->bytes,    s->clean,       s->virus,
                           s->spam,     s->policy,   s->quarantined, s->deferred,
                           s->bounced,  s->rejected, s->discarded};
    for (size_t i = 0; i < sizeof(src) / sizeof(src[0]); i++)
        *dst[i] += src[i];
    return ferror(stdout) ? 1 : 0;
}

struct top_ctx {
    struct cli_opts *o;
    const char *type;
    long n;
};

static int
top_cb(void *arg, const struct msglog_top *t)
{
    struct top_ctx *c = arg;
    const char *name = t->name[0] ? t->name : "<>";
    if (c->o->json) {
        printf("{\"type\": \"%s\", \"name\": ", c->type);
        cli_put_json(stdout, name);
        printf(", \"count\": %lld}\n", (long long)t->count);
    } else {
        printf("%9lld  ", (long long)t->count);
        cli_put_safe(stdout, name);
        putchar('\n');
    }
    c->n++;
    return ferror(stdout) ? 1 : 0;
}

int
cmd_stats(struct cli_opts *o, int argc, char **argv)
{
    long days = 7, top = 10;
    int by = -1, absent;

    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        i++;
        if (val != NULL && strcmp(opt, "--days") == 0 && qcli_parse_limit(val, &days) == 0 &&
            days > 0 && days <= 3660)
            continue;
        if (val != NULL && strcmp(opt, "--top") == 0 && qcli_parse_limit(val, &top) == 0)
            continue;
        if (val != NULL && strcmp(opt, "--by") == 0 &&
            (strcmp(val, "hour") == 0 || strcmp(val, "day") == 0)) {
            by = strcmp(val, "day") == 0;
            continue;
        }
        fprintf(stderr, "usage: scanrelay [-j] stats [--days N] [--by hour|day] [--top N]\n");
        return 2;
    }
    if (by < 0)
        by = days > 2;

    /* The last N days: from local midnight N-1 days ago (by day) or now - N*24h. */
    int64_t now = (int64_t)time(NULL), since;
    if (by) {
        time_t t = (time_t)now;
        struct tm tm;
        localtime_r(&t, &tm);
        tm.tm_mday -= (int)days - 1;
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        tm.tm_isdst = -1;
        since = (int64_t)mktime(&tm);
    } else {
        since = now - days * 86400;
        since -= since % 3600;
    }

    struct msglog *log = open_log(o, &absent);
    if (log == NULL && !absent)
        return 2;
    struct stats_ctx c;
    memset(&c, 0, sizeof(c));
    c.o = o;
    c.by_day = by;
    if (!o->json)
        printf("%-16s %9s %8s %9s %7s %7s %7s %7s %7s %7s\n", by ? "Day" : "Hour", "Messages",
               "Bytes", "Clean", "Virus", "Spam", "Policy", "Quarant", "Defer", "Bounce");
    long k = log ? msglog_stats(log, since, now + 1, by, stats_cb, &c) : 0;
    if (k < 0) {
        msglog_close(log);
        fprintf(stderr, "scanrelay: message log query failed\n");
        return 2;
    }
    stat_line(&c, "Total", &c.total, "total");

    struct top_ctx tv = {o, "virus", 0}, ts = {o, "sender", 0};
    if (!o->json)
        printf("\nTop viruses:\n");
    if (log && msglog_top(log, 0, since, now + 1, (int)top, top_cb, &tv) < 0)
        k = -1;
    if (!o->json && tv.n == 0)
        printf("%9s  (none)\n", "");
    if (!o->json)
        printf("\nTop senders:\n");
    if (log && msglog_top(log, 1, since, now + 1, (int)top, top_cb, &ts) < 0)
        k = -1;
    if (!o->json && ts.n == 0)
        printf("%9s  (none)\n", "");
    msglog_close(log);
    if (k < 0) {
        fprintf(stderr, "scanrelay: message log query failed\n");
        return 2;
    }
    return cli_flush_stdout();
}
