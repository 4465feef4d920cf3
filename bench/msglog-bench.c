/*
 * msglog-bench.c - builds a message log through the writer API and times
 * the queries the administrator runs; also a fixture tool for the CLI.
 *
 *   msglog-bench log STATE_DIR [ROWS]      (default 1,000,000)
 *       append ROWS synthetic rows (30 days ending now; 50,000 senders,
 *       20,000 recipients, 1% Japanese subjects, 1% viruses, 3% spam)
 *       through msglog_append (the writer thread batches them), report the
 *       sustained rate, then time: a sender query, a recipient query, a
 *       queue ID and a Message-ID lookup, subject globs (prefix, infix,
 *       Japanese) and the statistics of 7 days by hour with top lists.
 *       An existing log is reused (no append) when ROWS is 0.
 *   msglog-bench quarantine STATE_DIR REASON FILE...
 *       quarantine each FILE (sender bench@example.com, recipient
 *       rcpt@example.org) and print its ID (CLI tests).
 *
 * Output: one "name: value" line per measurement.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mime.h"
#include "msglog.h"
#include "clock.h"
#include "qstore.h"

static double
now_ms(void)
{
    return clock_mono() * 1e3;
}

static uint64_t rng = 88172645463325252ull;

static uint64_t
rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static const char *const words[] = {
    "invoice", "report", "meeting",  "order",   "shipment",  "update",  "payment", "review",
    "project", "urgent", "summary",  "request", "contract",  "welcome", "account", "code",
    "name",    "offer",  "delivery", "notice",  "quarterly", "travel",  "budget",  "minutes"};
#define NWORDS (sizeof(words) / sizeof(words[0]))

static int
count_cb(void *arg, const struct msglog_row *r)
{
    (void)r;
    (*(long *)arg)++;
    return 0;
}

static int
stat_cb(void *arg, const struct msglog_stat *s)
{
    (void)s;
    (*(long *)arg)++;
    return 0;
}

static int
top_cb(void *arg, const struct msglog_top *t)
{
    (void)t;
    (*(long *)arg)++;
    return 0;
}

/* Run a query 5 times; print the median. */
static void
timed(struct msglog *log, const char *name, const struct msglog_filter *f)
{
    double t[5];
    long n = 0;
    for (int i = 0; i < 5; i++) {
        n = 0;
        double a = now_ms();
        if (msglog_query(log, f, count_cb, &n) < 0) {
            fprintf(stderr, "%s: query failed\n", name);
            exit(2);
        }
        t[i] = now_ms() - a;
    }
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            if (t[j] < t[i]) {
                double x = t[i];
                t[i] = t[j];
                t[j] = x;
            }
    printf("%-44s %8.2f ms  (%ld rows)\n", name, t[2], n);
}

static int
bench_log(const char *dir, long rows)
{
    char path[4096], err[512];
    struct msglog *log;
    int64_t now = (int64_t)time(NULL), span = 30 * 86400;

    mkdir(dir, 0750);
    snprintf(path, sizeof(path), "%s/messages.db", dir);
    if (rows > 0) {
        struct msglog_opts o = {.queue_max = 100000};
        if ((log = msglog_open(path, &o, err, sizeof(err))) == NULL) {
            fprintf(stderr, "%s\n", err);
            return 2;
        }
        double a = now_ms();
        for (long i = 0; i < rows; i++) {
            struct msglog_row r;
            char sender[64], r1[64], r2[64], subject[160], mid[64], dsid[32];
            const char *rc[2] = {r1, r2};
            uint64_t x = rnd();
            memset(&r, 0, sizeof(r));
            snprintf(r.id, sizeof(r.id), "%014llX", (unsigned long long)(0x6000000000000 + i));
            r.time = now - span + (int64_t)((double)i * (double)span / (double)rows);
            /* Skewed senders: a few send a lot. */
            double u = (double)(x % 1000000) / 1e6;
            snprintf(sender, sizeof(sender), "user%ld@sender%ld.example.com", (long)(u * u * 50000),
                     (long)(u * u * 50000) % 97);
            snprintf(r1, sizeof(r1), "rcpt%llu@example.org", (unsigned long long)(rnd() % 20000));
            snprintf(r2, sizeof(r2), "rcpt%llu@example.org", (unsigned long long)(rnd() % 20000));
            if (x % 100 == 7)
                snprintf(subject, sizeof(subject), "日本語のテスト %ld 会議のお知らせ", i);
            else
                snprintf(subject, sizeof(subject), "%s %s %ld %s", words[rnd() % NWORDS],
                         words[rnd() % NWORDS], i % 1000, words[rnd() % NWORDS]);
            snprintf(mid, sizeof(mid), "<%ld.%llx@mail.example.com>", i, (unsigned long long)rnd());
            snprintf(dsid, sizeof(dsid), "4F%010lX", i);
            r.client = "mail.example.com[198.51.100.7]";
            r.sender = sender;
            r.rcpts = rc;
            r.nrcpt = 1 + (x >> 20) % 2;
            r.message_id = mid;
            r.subject = subject;
            r.size = 2000 + (int64_t)(rnd() % 50000);
            int v = (int)((x >> 32) % 100);
            r.verdict = v == 0 ? "virus" : v <= 3 ? "spam" : v == 4 ? "policy" : "clean";
            r.action = v == 0   ? "quarantined"
                       : v == 4 ? "rejected"
                       : v == 5 ? "deferred"
                                : "relayed";
            r.virus =
                v == 0 ? ((x >> 40) % 3 ? "Eicar-Test-Signature" : "Win.Trojan.Agent-1") : NULL;
            r.score = v >= 1 && v <= 3 ? 8.5 : 0.3;
            r.delay = 0.05;
            r.delays = "0.01/0.02/0.02";
            r.relay = "127.0.0.1[127.0.0.1]:10026";
            r.dsn = "2.0.0";
            r.status = "sent (250 2.0.0 Ok: queued as 4F1A2B3C)";
            r.downstream_id = dsid;
            while (msglog_append(log, &r) < 0) {
                struct timespec ts = {0, 1000 * 1000};
                nanosleep(&ts, NULL); /* queue full: the bench outruns the writer */
            }
        }
        msglog_flush(log);
        double ms = now_ms() - a;
        struct msglog_counters c;
        msglog_counters(log, &c);
        printf("%-44s %8.0f rows/s  (%ld rows in %.1f s, %llu batches, %llu retried drops)\n",
               "append through the writer", (double)rows / (ms / 1e3), rows, ms / 1e3,
               (unsigned long long)c.batches, (unsigned long long)c.dropped);
        msglog_close(log);
    }

    struct stat sb;
    if (stat(path, &sb) == 0)
        printf("%-44s %8.1f MB\n", "database file", (double)sb.st_size / 1e6);

    /* Queries on a read-only handle, as the CLI does. */
    if ((log = msglog_open_ro(path, err, sizeof(err))) == NULL) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    struct msglog_filter f;
    memset(&f, 0, sizeof(f));
    f.sender = "user5000@sender53.example.com";
    timed(log, "sender, all rows", &f);
    f.limit = 100;
    timed(log, "sender, --limit 100", &f);
    f.sender = "user3@sender3.example.com"; /* a heavy sender */
    f.limit = 0;
    timed(log, "heavy sender, all rows", &f);
    f.limit = 100;
    timed(log, "heavy sender, --limit 100", &f);
    memset(&f, 0, sizeof(f));
    f.recipient = "rcpt1234@example.org";
    timed(log, "recipient, all rows", &f);
    memset(&f, 0, sizeof(f));
    f.id = "0600000007A120";
    timed(log, "queue ID", &f);
    memset(&f, 0, sizeof(f));
    f.message_id = "<500000.0@mail.example.com>";
    timed(log, "Message-ID (absent)", &f);
    memset(&f, 0, sizeof(f));
    f.subject = "invoice payment 12*";
    timed(log, "subject 'invoice payment 12*', all", &f);
    f.subject = "*urgent*";
    f.limit = 100;
    timed(log, "subject '*urgent*', --limit 100", &f);
    f.subject = "*quarterly budget 999*";
    f.limit = 100;
    timed(log, "subject '*quarterly budget 999*', --limit 100", &f);
    f.subject = "日本語*";
    f.limit = 100;
    timed(log, "subject '日本語*', --limit 100", &f);
    f.subject = "*会議*";
    f.limit = 0;
    f.since = now - 86400;
    timed(log, "subject '*会議*', last day, all", &f);
    memset(&f, 0, sizeof(f));
    f.subject = "*no such subject*";
    f.limit = 100;
    timed(log, "subject '*no such subject*' (full scan)", &f);
    memset(&f, 0, sizeof(f));
    f.since = now - 3600;
    f.limit = 0;
    timed(log, "last hour, all rows", &f);

    double a = now_ms();
    long periods = 0, tv = 0, ts = 0;
    msglog_stats(log, now - 7 * 86400, now, 0, stat_cb, &periods);
    msglog_top(log, 0, now - 7 * 86400, now, 10, top_cb, &tv);
    msglog_top(log, 1, now - 7 * 86400, now, 10, top_cb, &ts);
    printf("%-44s %8.2f ms  (%ld hours, %ld viruses, %ld senders)\n",
           "stats 7 days by hour + top viruses/senders", now_ms() - a, periods, tv, ts);
    a = now_ms();
    periods = 0;
    msglog_stats(log, now - 30 * 86400, now, 1, stat_cb, &periods);
    printf("%-44s %8.2f ms  (%ld days)\n", "stats 30 days by day", now_ms() - a, periods);
    msglog_close(log);
    return 0;
}

static int
fill_quarantine(const char *dir, const char *reason, int n, char **files)
{
    char err[512];
    struct qstore *qs = qstore_open(dir, 0, err, sizeof(err));
    int rc = 0;
    const char *rcpt[] = {"rcpt@example.org"};
    int r = qreason_parse(reason);

    if (qs == NULL) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    if (r < 0) {
        fprintf(stderr, "unknown reason %s\n", reason);
        qstore_close(qs);
        return 2;
    }
    mime_global_init();
    for (int i = 0; i < n; i++) {
        FILE *fp = fopen(files[i], "rb");
        if (fp == NULL) {
            perror(files[i]);
            rc = 2;
            continue;
        }
        struct qmeta m;
        memset(&m, 0, sizeof(m));
        m.client = "localhost[127.0.0.1]";
        m.sender = "bench@example.com";
        m.rcpts = rcpt;
        m.nrcpt = 1;
        m.reason = (enum qreason)r;
        m.virus = r == QREASON_VIRUS ? "Eicar-Signature" : NULL;
        m.rule = r == QREASON_POLICY ? "test-rule" : NULL;
        struct qsource src = {.kind = QSRC_FD, .fd = fileno(fp)};
        char id[QSTORE_ID_MAX];
        if (qstore_put(qs, &m, &src, id) < 0) {
            fprintf(stderr, "%s: %s\n", files[i], strerror(errno));
            rc = 2;
        } else {
            printf("%s\n", id);
        }
        fclose(fp);
    }
    mime_global_shutdown();
    qstore_close(qs);
    return rc;
}

int
main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "log") == 0)
        return bench_log(argv[2], argc > 3 ? atol(argv[3]) : 1000000);
    if (argc >= 5 && strcmp(argv[1], "quarantine") == 0)
        return fill_quarantine(argv[2], argv[3], argc - 4, argv + 4);
    fprintf(stderr, "usage: msglog-bench log STATE_DIR [ROWS]\n"
                    "       msglog-bench quarantine STATE_DIR REASON FILE...\n");
    return 2;
}
