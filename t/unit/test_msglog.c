/*
 * test_msglog.c - the message log: rows through the writer thread, a
 * query per filter (sender, recipient, queue ID, Message-ID, subject glob
 * with Japanese, verdict, time range, limit), hourly/daily totals and top
 * lists, purge by age, appends from a thread while queries run, drops
 * counted when the queue is full, msglog_append never waiting for
 * SQLite even while another process holds the write lock, and the rule
 * column (deciding rule): filter, and a database from before it migrated.
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "msglog.h"

#define T0 1789948800 /* 2026-09-21 00:00 UTC */
#define HOUR 3600
#define DAY 86400

static char statedir[64];
static char dbpath[128];

static int
rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int
setup_dir(void **state)
{
    (void)state;
    const char *base = getenv("SR_TEST_TMPDIR");
    if (base == NULL)
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(statedir, sizeof(statedir), "%s/test_msglog.XXXXXX", base);
    assert_non_null(mkdtemp(statedir));
    snprintf(dbpath, sizeof(dbpath), "%s/messages.db", statedir);
    return 0;
}

static int
teardown_dir(void **state)
{
    (void)state;
    nftw(statedir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static struct msglog *
open_log(const struct msglog_opts *o)
{
    char err[512];
    struct msglog_opts def = {.nosync = 1};
    struct msglog *log = msglog_open(dbpath, o ? o : &def, err, sizeof(err));
    if (log == NULL)
        fail_msg("msglog_open: %s", err);
    return log;
}

struct got {
    int n;
    char ids[64][32];
    char subject[256], rcpts[256], status[256];
    char rule[64]; /* "(null)" when NULL */
    double score;
};

static int
collect(void *arg, const struct msglog_row *r)
{
    struct got *g = arg;
    if (g->n < 64)
        snprintf(g->ids[g->n], sizeof(g->ids[0]), "%s", r->id);
    if (g->n == 0) {
        snprintf(g->subject, sizeof(g->subject), "%s", r->subject);
        snprintf(g->status, sizeof(g->status), "%s", r->status);
        g->rcpts[0] = '\0';
        for (size_t i = 0; i < r->nrcpt; i++) {
            size_t l = strlen(g->rcpts);
            snprintf(g->rcpts + l, sizeof(g->rcpts) - l, "%s%s", i ? "," : "", r->rcpts[i]);
        }
        g->score = r->score;
        snprintf(g->rule, sizeof(g->rule), "%s", r->rule ? r->rule : "(null)");
    }
    g->n++;
    return 0;
}

static struct got
query(struct msglog *log, const struct msglog_filter *f)
{
    struct got g;
    memset(&g, 0, sizeof(g));
    long k = msglog_query(log, f, collect, &g);
    assert_int_equal(k, g.n);
    return g;
}

static void
row(struct msglog_row *r, const char *id, int64_t t, const char *sender, const char *rcpt1,
    const char *rcpt2, const char *subject, const char *verdict, const char *action,
    const char *virus)
{
    static const char *rc[2];
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "%s", id);
    r->time = t;
    r->client = "mx.example.com[192.0.2.1]";
    r->sender = sender;
    rc[0] = rcpt1;
    rc[1] = rcpt2;
    r->rcpts = rc;
    r->nrcpt = rcpt2 ? 2 : 1;
    r->message_id = "<mid-1@example.com>";
    r->subject = subject;
    r->size = 1000;
    r->verdict = verdict;
    r->action = action;
    r->virus = virus;
    r->score = 1.5;
    r->delay = 0.03;
    r->delays = "0.01/0.01/0.01";
    r->relay = "127.0.0.1[127.0.0.1]:10026";
    r->dsn = "2.0.0";
    r->status = "sent (250 2.0.0 Ok: queued as 4F1A)";
    r->downstream_id = "4F1A";
}

static void
append_fixtures(struct msglog *log)
{
    struct msglog_row r;
    row(&r, "00000000000001", T0 + 10, "alice@example.com", "bob@example.org", NULL,
        "Code name Falcon", "clean", "relayed", NULL);
    assert_int_equal(msglog_append(log, &r), 0);
    row(&r, "00000000000002", T0 + 20, "Alice@Example.com", "carol@example.org", "dave@example.org",
        "日本語のテスト", "virus", "quarantined", "Eicar-Test-Signature");
    r.message_id = "<jp@example.jp>";
    assert_int_equal(msglog_append(log, &r), 0);
    row(&r, "00000000000003", T0 + HOUR + 5, "", "carol@example.org", NULL, "Delivery failure",
        "clean", "deferred", NULL);
    assert_int_equal(msglog_append(log, &r), 0);
    row(&r, "00000000000004", T0 + 2 * HOUR, "spam@example.net", "bob@example.org", NULL,
        "CODE NAME cheap", "spam", "bounced", NULL);
    r.score = 9.0;
    assert_int_equal(msglog_append(log, &r), 0);
    row(&r, "00000000000005", T0 + DAY + 1, "eve@example.net", "erin@example.org", NULL,
        "Policy test", "policy", "rejected", NULL);
    assert_int_equal(msglog_append(log, &r), 0);
    row(&r, "00000000000006", T0 + DAY + 2, "eve@example.net", "erin@example.org", NULL,
        "Another virus", "virus", "discarded", "Eicar-Test-Signature");
    assert_int_equal(msglog_append(log, &r), 0);
    row(&r, "00000000000007", T0 + DAY + 3, "eve@example.net", "erin@example.org", NULL,
        "Third virus", "virus", "discarded", "Win.Trojan.Other");
    assert_int_equal(msglog_append(log, &r), 0);
    assert_int_equal(msglog_flush(log), 0);
}

static void
test_filters(void **state)
{
    (void)state;
    struct msglog *log = open_log(NULL);
    struct msglog_filter f;
    struct got g;

    append_fixtures(log);
    struct msglog_counters c;
    msglog_counters(log, &c);
    assert_int_equal(c.written, 7);
    assert_int_equal(c.dropped, 0);

    /* The CLI's read-only view. */
    char err[256];
    struct msglog *ro = msglog_open_ro(dbpath, err, sizeof(err));
    assert_non_null(ro);

    memset(&f, 0, sizeof(f));
    g = query(ro, &f);
    assert_int_equal(g.n, 7);
    assert_string_equal(g.ids[0], "00000000000007");
    assert_string_equal(g.ids[6], "00000000000001");

    memset(&f, 0, sizeof(f));
    f.sender = "alice@EXAMPLE.com";
    assert_int_equal(query(ro, &f).n, 2);
    f.sender = "";
    g = query(ro, &f);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.ids[0], "00000000000003");
    f.sender = "*@example.net";
    assert_int_equal(query(ro, &f).n, 4);

    memset(&f, 0, sizeof(f));
    f.recipient = "carol@example.org";
    assert_int_equal(query(ro, &f).n, 2);
    f.recipient = "DAVE@example.org";
    g = query(ro, &f);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.rcpts, "carol@example.org,dave@example.org");
    assert_string_equal(g.status, "sent (250 2.0.0 Ok: queued as 4F1A)");

    memset(&f, 0, sizeof(f));
    f.id = "00000000000004";
    g = query(ro, &f);
    assert_int_equal(g.n, 1);
    assert_true(g.score > 8.9);
    memset(&f, 0, sizeof(f));
    f.message_id = "<jp@example.jp>";
    g = query(ro, &f);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.ids[0], "00000000000002");

    memset(&f, 0, sizeof(f));
    f.subject = "code name*";
    assert_int_equal(query(ro, &f).n, 2);
    f.subject = "日本語*";
    g = query(ro, &f);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.subject, "日本語のテスト");
    f.subject = "*virus";
    assert_int_equal(query(ro, &f).n, 2);

    memset(&f, 0, sizeof(f));
    f.verdict = "virus";
    assert_int_equal(query(ro, &f).n, 3);
    f.action = "discarded";
    assert_int_equal(query(ro, &f).n, 2);

    memset(&f, 0, sizeof(f));
    f.since = T0 + 20;
    f.until = T0 + DAY;
    g = query(ro, &f);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.ids[0], "00000000000004");
    f.limit = 1;
    assert_int_equal(query(ro, &f).n, 1);

    msglog_close(ro);
    msglog_close(log);
}

/*
 * Statistics.
 */

struct stats {
    int n;
    struct msglog_stat s[16];
};

static int
stat_cb(void *arg, const struct msglog_stat *s)
{
    struct stats *st = arg;
    if (st->n < 16)
        st->s[st->n] = *s;
    st->n++;
    return 0;
}

struct tops {
    int n;
    char name[8][64];
    int64_t count[8];
};

static int
top_cb(void *arg, const struct msglog_top *t)
{
    struct tops *tp = arg;
    if (tp->n < 8) {
        snprintf(tp->name[tp->n], 64, "%s", t->name);
        tp->count[tp->n] = t->count;
    }
    tp->n++;
    return 0;
}

static void
test_stats(void **state)
{
    (void)state;
    struct msglog *log = open_log(NULL);
    struct stats st;
    struct tops tp;

    append_fixtures(log);

    memset(&st, 0, sizeof(st));
    assert_int_equal(msglog_stats(log, T0, T0 + 2 * DAY, 0, stat_cb, &st), 4);
    assert_int_equal(st.s[0].start, T0);
    assert_int_equal(st.s[0].messages, 2);
    assert_int_equal(st.s[0].bytes, 2000);
    assert_int_equal(st.s[0].clean, 1);
    assert_int_equal(st.s[0].virus, 1);
    assert_int_equal(st.s[0].quarantined, 1);
    assert_int_equal(st.s[1].start, T0 + HOUR);
    assert_int_equal(st.s[1].deferred, 1);
    assert_int_equal(st.s[2].spam, 1);
    assert_int_equal(st.s[2].bounced, 1);
    assert_int_equal(st.s[3].start, T0 + DAY);
    assert_int_equal(st.s[3].messages, 3);
    assert_int_equal(st.s[3].policy, 1);
    assert_int_equal(st.s[3].virus, 2);
    assert_int_equal(st.s[3].rejected, 1);
    assert_int_equal(st.s[3].discarded, 2);

    /* By day (local days: in UTC they are the two fixture days). */
    setenv("TZ", "UTC", 1);
    tzset();
    memset(&st, 0, sizeof(st));
    assert_int_equal(msglog_stats(log, T0, T0 + 2 * DAY, 1, stat_cb, &st), 2);
    assert_int_equal(st.s[0].start, T0);
    assert_int_equal(st.s[0].messages, 4);
    assert_int_equal(st.s[1].messages, 3);
    /* A range selects whole hours. */
    memset(&st, 0, sizeof(st));
    assert_int_equal(msglog_stats(log, T0 + HOUR, T0 + 2 * HOUR, 0, stat_cb, &st), 1);

    memset(&tp, 0, sizeof(tp));
    assert_int_equal(msglog_top(log, 0, T0, T0 + 2 * DAY, 10, top_cb, &tp), 2);
    assert_string_equal(tp.name[0], "Eicar-Test-Signature");
    assert_int_equal(tp.count[0], 2);
    assert_string_equal(tp.name[1], "Win.Trojan.Other");
    memset(&tp, 0, sizeof(tp));
    assert_int_equal(msglog_top(log, 1, T0, T0 + 2 * DAY, 2, top_cb, &tp), 2);
    assert_string_equal(tp.name[0], "eve@example.net");
    assert_int_equal(tp.count[0], 3);
    assert_string_equal(tp.name[1], "alice@example.com");
    assert_int_equal(tp.count[1], 2);
    msglog_close(log);
}

/*
 * Retention.
 */
static void
test_purge(void **state)
{
    (void)state;
    struct msglog *log = open_log(NULL);
    struct msglog_filter f;
    struct msglog_row r;
    char id[32];
    struct stat sb0, sb1;

    /* 30 days, 2,000 rows a day. */
    for (int i = 0; i < 60000; i++) {
        snprintf(id, sizeof(id), "%014X", i + 0x1000);
        row(&r, id, T0 + (int64_t)i * (30 * DAY) / 60000, "bulk@example.com", "to@example.org",
            NULL, "A subject of some length for the index", "clean", "relayed", NULL);
        while (msglog_append(log, &r) < 0)
            msglog_flush(log); /* queue full: let the writer catch up */
    }
    assert_int_equal(msglog_flush(log), 0);
    memset(&f, 0, sizeof(f));
    assert_int_equal(query(log, &f).n, 60000);

    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_exec(db, "SELECT 1 FROM sqlite_schema; PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL,
                 NULL);
    assert_int_equal(stat(dbpath, &sb0), 0);

    /* Keep 10 days. */
    long total = 0, k;
    while ((k = msglog_purge(log, T0 + 30 * DAY, 10 * DAY, 5000)) == 5000)
        total += k;
    assert_true(k >= 0);
    total += k;
    assert_int_equal(total, 40000);
    memset(&f, 0, sizeof(f));
    assert_int_equal(query(log, &f).n, 20000);
    f.until = T0 + 20 * DAY;
    assert_int_equal(query(log, &f).n, 0);
    struct stats st;
    memset(&st, 0, sizeof(st));
    assert_int_equal(msglog_stats(log, T0, T0 + 30 * DAY, 0, stat_cb, &st), 10 * 24);

    sqlite3_exec(db, "SELECT 1 FROM sqlite_schema; PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL,
                 NULL);
    sqlite3_close(db);
    assert_int_equal(stat(dbpath, &sb1), 0);
    print_message("60,000 rows: %lld bytes; after purge to 20,000: %lld bytes\n",
                  (long long)sb0.st_size, (long long)sb1.st_size);
    assert_true(sb1.st_size < sb0.st_size * 45 / 100);
    msglog_close(log);
}

/*
 * Concurrency.
 */

struct appender {
    struct msglog *log;
    int n, failed;
};

static void *
appender_main(void *arg)
{
    struct appender *a = arg;
    struct msglog_row r;
    char id[32];
    for (int i = 0; i < a->n; i++) {
        snprintf(id, sizeof(id), "%014X", i);
        row(&r, id, T0 + i, i % 2 ? "odd@example.com" : "even@example.com", "x@example.org", NULL,
            "concurrent", "clean", "relayed", NULL);
        if (msglog_append(a->log, &r) < 0)
            a->failed++;
        if (i % 1000 == 999) {
            struct timespec ts = {0, 2 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

static int
count_cb(void *arg, const struct msglog_row *r)
{
    (void)r;
    (*(long *)arg)++;
    return 0;
}

static void
test_append_while_querying(void **state)
{
    (void)state;
    struct msglog_opts o = {.nosync = 1, .batch_ms = 20};
    struct msglog *log = open_log(&o);
    struct appender a = {log, 30000, 0};
    pthread_t th;
    long last = 0, queries = 0;

    assert_int_equal(pthread_create(&th, NULL, appender_main, &a), 0);
    for (;;) {
        struct msglog_filter f;
        long n = 0;
        memset(&f, 0, sizeof(f));
        f.sender = "even@example.com";
        assert_true(msglog_query(log, &f, count_cb, &n) >= 0);
        assert_true(n >= last); /* committed rows never disappear */
        last = n;
        queries++;
        struct msglog_counters c;
        msglog_counters(log, &c);
        if (c.appended + c.dropped >= 30000)
            break;
    }
    pthread_join(th, NULL);
    assert_int_equal(msglog_flush(log), 0);
    struct msglog_counters c;
    msglog_counters(log, &c);
    assert_int_equal(c.appended + c.dropped, 30000);
    assert_int_equal(c.written, c.appended);
    assert_int_equal(c.dropped, (uint64_t)a.failed);
    assert_int_equal(c.failed, 0);
    struct msglog_filter f;
    memset(&f, 0, sizeof(f));
    long n = 0;
    assert_int_equal(msglog_query(log, &f, count_cb, &n), (long)c.written);
    print_message("%ld queries ran while 30,000 rows were appended (%llu batches, %llu dropped)\n",
                  queries, (unsigned long long)c.batches, (unsigned long long)c.dropped);
    assert_true(queries > 1);
    msglog_close(log);
}

/* With the database locked by another process, appends still return at once; past
   queue_max they are dropped and counted; once unlocked everything queued is written. */
static void
test_append_never_blocks(void **state)
{
    (void)state;
    struct msglog_opts o = {.nosync = 1, .queue_max = 500, .batch_ms = 10};
    struct msglog *log = open_log(&o);
    struct msglog_row r;
    sqlite3 *db;

    assert_int_equal(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int ok = 0, dropped = 0;
    for (int i = 0; i < 2000; i++) {
        char id[32];
        snprintf(id, sizeof(id), "%014X", i);
        row(&r, id, T0 + i, "a@example.com", "b@example.org", NULL, "locked", "clean", "relayed",
            NULL);
        if (msglog_append(log, &r) == 0)
            ok++;
        else
            dropped++;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    print_message("2,000 appends against a locked database: %.1f ms, %d queued, %d dropped\n", ms,
                  ok, dropped);
    /* The writer holds at most one batch it cannot commit; the rest waits in the queue. */
    assert_true(ok >= 500 && ok <= 500 + 1000);
    assert_true(dropped > 0);
    assert_true(ms < 1000); /* the lock lasts 5 s of busy timeout: we did not wait for it */
    struct msglog_counters c;
    msglog_counters(log, &c);
    assert_int_equal(c.dropped, (uint64_t)dropped);

    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(msglog_flush(log), 0);
    msglog_counters(log, &c);
    assert_int_equal(c.written + c.failed, (uint64_t)ok);
    msglog_close(log);
}

/* With opts.retention the writer thread purges by itself. */
static void
test_writer_retention(void **state)
{
    (void)state;
    struct msglog_opts o = {.nosync = 1, .batch_ms = 10, .retention = 7 * DAY};
    struct msglog *log = open_log(&o);
    struct msglog_row r;
    struct msglog_filter f;
    int64_t now = (int64_t)time(NULL);

    row(&r, "00000000000001", now - 30 * DAY, "old@example.com", "x@example.org", NULL, "old",
        "clean", "relayed", NULL);
    assert_int_equal(msglog_append(log, &r), 0);
    row(&r, "00000000000002", now, "new@example.com", "x@example.org", NULL, "new", "clean",
        "relayed", NULL);
    assert_int_equal(msglog_append(log, &r), 0);
    assert_int_equal(msglog_flush(log), 0);
    /* The first purge runs at start and then every purge_interval; the old row
       may have arrived after it: wait for the writer's next purge at most 70 s. */
    struct msglog_counters c;
    for (int i = 0; i < 700; i++) {
        msglog_counters(log, &c);
        if (c.purged >= 1)
            break;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(c.purged, 1);
    memset(&f, 0, sizeof(f));
    struct got g = query(log, &f);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.ids[0], "00000000000002");
    msglog_close(log);
}

/* The message log as the first version wrote it: no rule column. */
static const char old_schema[] =
    "CREATE TABLE msg("
    " n INTEGER PRIMARY KEY, time INTEGER NOT NULL, qid TEXT NOT NULL,"
    " client TEXT, sender TEXT, sender_key TEXT, recipients TEXT,"
    " message_id TEXT, subject TEXT, subject_key TEXT, size INTEGER NOT NULL DEFAULT 0,"
    " verdict TEXT, action TEXT, virus TEXT, score REAL NOT NULL DEFAULT 0,"
    " delay REAL NOT NULL DEFAULT 0, delays TEXT, relay TEXT, dsn TEXT, status TEXT,"
    " downstream_id TEXT);"
    "CREATE INDEX msg_time ON msg(time);"
    "INSERT INTO msg(time, qid, sender, sender_key, recipients, subject, subject_key, verdict,"
    " action, virus) VALUES(1789948810, '000000000000A1', 'a@example.com', 'a@example.com',"
    " 'b@example.org', 'old row', 'old row', 'virus', 'discarded', 'Eicar-Test-Signature');";

static int
column_count(const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int n = -1;
    assert_int_equal(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void
test_rule_column(void **state)
{
    (void)state;
    sqlite3 *db;
    char err[512];
    struct msglog_filter f;
    struct msglog_row r;
    struct got g;

    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, old_schema, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    /* Read-only, not migrated yet: rows read, rule NULL, --rule finds nothing. */
    struct msglog *ro = msglog_open_ro(dbpath, err, sizeof(err));
    if (ro == NULL)
        fail_msg("msglog_open_ro: %s", err);
    memset(&f, 0, sizeof(f));
    g = query(ro, &f);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.rule, "(null)");
    f.rule = "virus";
    assert_int_equal(query(ro, &f).n, 0);
    msglog_close(ro);
    assert_int_equal(column_count("SELECT COUNT(*) FROM pragma_table_info('msg') WHERE name = 'rule'"),
                     0);

    /* The writable open adds the column and its index; new rows carry the rule. */
    struct msglog *log = open_log(NULL);
    assert_int_equal(column_count("SELECT COUNT(*) FROM pragma_table_info('msg') WHERE name = 'rule'"),
                     1);
    assert_int_equal(
        column_count("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'msg_rule'"),
        1);
    row(&r, "000000000000A2", T0 + 20, "c@example.com", "d@example.org", NULL, "too big", "policy",
        "quarantined", NULL);
    r.rule = "file_size";
    assert_int_equal(msglog_append(log, &r), 0);
    row(&r, "000000000000A3", T0 + 30, "c@example.com", "d@example.org", NULL, "eicar", "virus",
        "discarded", "Eicar-Test-Signature");
    r.rule = "virus";
    assert_int_equal(msglog_append(log, &r), 0);
    assert_int_equal(msglog_flush(log), 0);

    memset(&f, 0, sizeof(f));
    g = query(log, &f);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.ids[2], "000000000000A1"); /* the old row is still there */
    f.rule = "file_size";
    g = query(log, &f);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.ids[0], "000000000000A2");
    assert_string_equal(g.rule, "file_size");
    f.rule = "virus";
    g = query(log, &f);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.ids[0], "000000000000A3");
    f.rule = "nosuchrule";
    assert_int_equal(query(log, &f).n, 0);
    msglog_close(log);

    /* Opening again changes nothing. */
    log = open_log(NULL);
    memset(&f, 0, sizeof(f));
    f.rule = "file_size";
    assert_int_equal(query(log, &f).n, 1);
    msglog_close(log);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_filters, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_stats, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_purge, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_append_while_querying, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_append_never_blocks, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_writer_retention, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_rule_column, setup_dir, teardown_dir),
    };
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
