/*
 * cmd_qstats.c - "scanrelay quarantine stats": how big the quarantine is
 * and how long its quota lasts.
 *
 * Prints the messages kept (held or released: with a file), their bytes
 * on disk (compressed: what quarantine.quota counts) and original size,
 * the oldest and newest, the bytes per day over the last 14 days (UTC
 * days), their average, and how many days of quarantine the quota holds
 * at that rate (the sizing rule: the quota should hold more days than the
 * retention). The average divides by 14 days, or by the days since the
 * oldest message when the store is younger. -j: one JSON object.
 * Reads the index read-only; works whether or not the daemon runs.
 * Exit status: 0, 2 usage or runtime error.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "qstore.h"

static void
fmt_time(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t == 0) {
        snprintf(buf, len, "-");
        return;
    }
    localtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static void
fmt_day(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%d", &tm);
}

int
quarantine_stats(struct cli_opts *o, int argc, char **argv)
{
    (void)argv;
    if (argc != 2) {
        fprintf(stderr, "usage: scanrelay [-j] quarantine stats\n");
        return 2;
    }
    struct qstats s;
    int64_t now = (int64_t)time(NULL);
    char path[4096], err[1024];
    snprintf(path, sizeof(path), "%s/quarantine.db", o->cfg->state_directory);
    if (access(path, F_OK) < 0 && errno == ENOENT) {
        memset(&s, 0, sizeof(s)); /* no quarantine yet: all zero */
        for (int i = 0; i < QSTATS_DAYS; i++)
            s.day[i].start = (now / 86400 - (QSTATS_DAYS - 1) + i) * 86400;
    } else {
        struct qstore *qs = qstore_open(o->cfg->state_directory, QSTORE_RDONLY, err, sizeof(err));
        if (qs == NULL) {
            fprintf(stderr, "scanrelay: cannot open the quarantine index: %s\n", err);
            return 2;
        }
        int rc = qstore_stats(qs, now, &s);
        qstore_close(qs);
        if (rc < 0) {
            fprintf(stderr, "scanrelay: cannot read the quarantine index\n");
            return 2;
        }
    }

    /* The rate and what the quota holds at that rate. */
    int64_t sum = 0;
    for (int i = 0; i < QSTATS_DAYS; i++)
        sum += s.day[i].bytes;
    int64_t days = QSTATS_DAYS;
    if (s.oldest > 0 && now - s.oldest < QSTATS_DAYS * 86400)
        days = (now - s.oldest + 86399) / 86400;
    if (days < 1)
        days = 1;
    int64_t per_day = s.messages > 0 ? sum / days : 0;
    int64_t quota = o->cfg->quarantine.quota;
    int64_t quota_days = quota > 0 && per_day > 0 ? quota / per_day : -1;

    char t1[64], t2[64];
    if (o->json) {
        printf("{\"messages\": %ld, \"bytes\": %lld, \"size\": %lld, \"oldest\": %lld, "
               "\"newest\": %lld, \"quota\": %lld, \"retention\": %lld, "
               "\"bytes_per_day\": %lld, \"rate_days\": %lld, \"quota_days\": ",
               s.messages, (long long)s.bytes, (long long)s.size, (long long)s.oldest,
               (long long)s.newest, (long long)quota, (long long)o->cfg->quarantine.retention,
               (long long)per_day, (long long)days);
        if (quota_days >= 0)
            printf("%lld", (long long)quota_days);
        else
            fputs("null", stdout);
        fputs(", \"days\": [", stdout);
        for (int i = 0; i < QSTATS_DAYS; i++) {
            fmt_day(s.day[i].start, t1, sizeof(t1));
            printf("%s{\"day\": \"%s\", \"messages\": %ld, \"bytes\": %lld, \"size\": %lld}",
                   i ? ", " : "", t1, s.day[i].messages, (long long)s.day[i].bytes,
                   (long long)s.day[i].size);
        }
        fputs("]}\n", stdout);
        return cli_flush_stdout();
    }
    fmt_time(s.oldest, t1, sizeof(t1));
    fmt_time(s.newest, t2, sizeof(t2));
    printf("messages:     %ld\n", s.messages);
    printf("bytes:        %lld on disk (compressed), %lld original\n", (long long)s.bytes,
           (long long)s.size);
    printf("oldest:       %s\n", t1);
    printf("newest:       %s\n", t2);
    if (quota > 0)
        printf("quota:        %lld bytes, %.1f%% used\n", (long long)quota,
               100.0 * (double)s.bytes / (double)quota);
    else
        printf("quota:        none\n");
    printf("retention:    %lld days\n", (long long)(o->cfg->quarantine.retention / 86400));
    printf("bytes per day (UTC days, on disk):\n");
    for (int i = 0; i < QSTATS_DAYS; i++) {
        fmt_day(s.day[i].start, t1, sizeof(t1));
        printf("  %s  %6ld messages  %12lld bytes\n", t1, s.day[i].messages,
               (long long)s.day[i].bytes);
    }
    printf("average:      %lld bytes per day over %lld day%s\n", (long long)per_day,
           (long long)days, days == 1 ? "" : "s");
    if (quota_days >= 0)
        printf("quota holds:  %lld days at that rate (retention %lld days)\n",
               (long long)quota_days, (long long)(o->cfg->quarantine.retention / 86400));
    else
        printf("quota holds:  - (%s)\n", quota > 0 ? "no mail in the last days" : "no quota");
    return cli_flush_stdout();
}
