/*
 * test_qstore.c - the quarantine store: put/get and a query per filter,
 * the ISO-2022-JP subject found by a Japanese glob, case folding, gzip
 * round trips from memory, fd and spool (byte-identical), corrupt files,
 * delete and release states, crash leftovers repaired by qstore_check,
 * purges by retention and by quota on 100,000 entries (index file and
 * folder measured before and after), and five rounds of "quarantine
 * 20,000, purge by retention" keeping the index within 10% of its size
 * after the first round.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

#include "mime.h"
#include "qstore.h"
#include "spool.h"

#define T0 1789948800 /* 2026-09-21 00:00 UTC: fixed times make day folders predictable */
#define DAY 86400

/*
 * Helpers.
 */

static char statedir[64];

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
    /* tmpfs when there is one: the 100,000-file tests create and remove files
       by the hundred thousand, which some disks take minutes for. */
    const char *base = getenv("SR_TEST_TMPDIR");
    if (base == NULL)
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(statedir, sizeof(statedir), "%s/test_qstore.XXXXXX", base);
    assert_non_null(mkdtemp(statedir));
    return 0;
}

static int
teardown_dir(void **state)
{
    (void)state;
    nftw(statedir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static struct qstore *
open_store(unsigned flags)
{
    char err[512];
    struct qstore *qs = qstore_open(statedir, flags, err, sizeof(err));
    if (qs == NULL)
        fail_msg("qstore_open: %s", err);
    return qs;
}

static int64_t
file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

/* The index file once everything is checkpointed into it (what it really holds). */
static int64_t
db_main(struct qstore *qs)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(qstore_db_path(qs), &db, SQLITE_OPEN_READWRITE, NULL),
                     SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    /* Read the header first, or the connection does not know it is WAL. */
    assert_int_equal(sqlite3_exec(db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL),
                     SQLITE_OK);
    int nlog = -1, nck = -1;
    assert_int_equal(sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &nlog, &nck),
                     SQLITE_OK);
    assert_int_equal(nlog, 0); /* truncated: everything is in the main file */
    sqlite3_close(db);
    return file_size(qstore_db_path(qs));
}

static int64_t du_bytes;
static long du_files, du_dirs;

static int
du_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)path;
    if (flag == FTW_F) {
        du_bytes += sb->st_size;
        du_files++;
    } else if (flag == FTW_D && ftw->level == 1) {
        du_dirs++;
    }
    return 0;
}

/* Files, their bytes and the day folders under the store. */
static void
du(struct qstore *qs)
{
    du_bytes = 0;
    du_files = du_dirs = 0;
    nftw(qstore_dir_path(qs), du_cb, 16, FTW_PHYS);
}

/* Query collector. */
struct got {
    int n;
    char ids[64][QSTORE_ID_MAX];
    int64_t times[64];
    char subject[256];
    char rcpts[256];
    int state;
    int64_t size, stored;
    int reason;
};

static int
collect(void *arg, const struct qmeta *m)
{
    struct got *g = arg;
    if (g->n < 64) {
        snprintf(g->ids[g->n], QSTORE_ID_MAX, "%s", m->id);
        g->times[g->n] = m->time;
    }
    if (g->n == 0) {
        snprintf(g->subject, sizeof(g->subject), "%s", m->subject);
        g->rcpts[0] = '\0';
        for (size_t i = 0; i < m->nrcpt; i++) {
            size_t l = strlen(g->rcpts);
            snprintf(g->rcpts + l, sizeof(g->rcpts) - l, "%s%s", i ? "," : "", m->rcpts[i]);
        }
        g->state = (int)m->state;
        g->size = m->size;
        g->stored = m->stored_size;
        g->reason = (int)m->reason;
    }
    g->n++;
    return 0;
}

static int
collect_nothing(void *arg, const struct qmeta *m)
{
    (void)arg;
    (void)m;
    return 0;
}

static struct got
query(struct qstore *qs, const struct qfilter *f)
{
    struct got g;
    memset(&g, 0, sizeof(g));
    long k = qstore_query(qs, f, collect, &g);
    assert_int_equal(k, g.n);
    return g;
}

static const char *
mkmsg(char *buf, size_t len, const char *subject_hdr, int i)
{
    /* The result is checked: a message that does not fit fails the test. */
    int n = snprintf(buf, len,
             "From: Sender %d <s%d@example.com>\r\n"
             "To: <rcpt@example.org>\r\n"
             "Subject: %s\r\n"
             "Message-ID: <m%d@example.com>\r\n"
             "MIME-Version: 1.0\r\n"
             "Content-Type: text/plain; charset=us-ascii\r\n"
             "\r\n"
             "Body line of message %d.\r\n"
             "Another line with some text to compress, %d %d %d.\r\n",
             i, i, subject_hdr, i, i, i * 7, i * 13, i * 31);
    assert_true(n > 0 && (size_t)n < len);
    return buf;
}

/*
 * Put, get and each filter.
 */

struct fixture {
    const char *id, *sender, *subject;
    const char *rcpts[2];
    enum qreason reason;
    const char *rule, *virus;
    int64_t time;
};

static const struct fixture fx[] = {
    {"0000000000000A",
     "alice@example.com",
     "Code name Falcon",
     {"bob@example.org", NULL},
     QREASON_VIRUS,
     NULL,
     "Eicar-Test-Signature",
     T0 + 10},
    {"0000000000000B",
     "Bob@Example.COM",
     "code name eagle",
     {"carol@example.org", "dave@example.org"},
     QREASON_POLICY,
     "no-exe",
     NULL,
     T0 + 20},
    {"0000000000000C",
     "",
     "Invoice 2026",
     {"carol@example.org", NULL},
     QREASON_LIMIT,
     "message_size",
     NULL,
     T0 + 30},
    {"0000000000000D",
     "eve@example.net",
     "ＣＯＤＥ ＮＡＭＥ wide",
     {"Bob@Example.org", NULL},
     QREASON_SPAM,
     "spam",
     NULL,
     T0 + DAY + 40},
    {"0000000000000E",
     "alice@example.com",
     "Encrypted zip",
     {"erin@example.org", NULL},
     QREASON_ENCRYPTED,
     NULL,
     NULL,
     T0 + DAY + 50},
};
#define NFX (sizeof(fx) / sizeof(fx[0]))

static void
put_fixtures(struct qstore *qs)
{
    char buf[1024];
    for (size_t i = 0; i < NFX; i++) {
        struct qmeta m;
        memset(&m, 0, sizeof(m));
        snprintf(m.id, sizeof(m.id), "%s", fx[i].id);
        m.time = fx[i].time;
        m.client = "mx.example.com[192.0.2.1]";
        m.sender = fx[i].sender;
        m.rcpts = fx[i].rcpts;
        m.nrcpt = fx[i].rcpts[1] ? 2 : 1;
        m.subject = fx[i].subject;
        m.hdr_from = fx[i].sender;
        m.message_id = "<x@y>";
        m.reason = fx[i].reason;
        m.rule = fx[i].rule;
        m.virus = fx[i].virus;
        m.score = fx[i].reason == QREASON_SPAM ? 7.5 : 0;
        mkmsg(buf, sizeof(buf), fx[i].subject, (int)i);
        struct qsource src = {.kind = QSRC_MEM, .mem = buf, .len = strlen(buf)};
        char id[QSTORE_ID_MAX];
        assert_int_equal(qstore_put(qs, &m, &src, id), 0);
        assert_string_equal(id, fx[i].id);
    }
}

static void
test_put_query_filters(void **state)
{
    (void)state;
    struct qstore *qs = open_store(QSTORE_NOSYNC);
    struct qfilter f;
    struct got g;

    put_fixtures(qs);

    /* Everything, newest first. */
    qfilter_init(&f);
    g = query(qs, &f);
    assert_int_equal(g.n, 5);
    assert_string_equal(g.ids[0], "0000000000000E");
    assert_string_equal(g.ids[4], "0000000000000A");

    /* Sender: case-insensitive exact, glob, empty sender. */
    qfilter_init(&f);
    f.sender = "ALICE@example.com";
    g = query(qs, &f);
    assert_int_equal(g.n, 2);
    f.sender = "bob@example.com";
    g = query(qs, &f);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.ids[0], "0000000000000B");
    f.sender = "*@example.com";
    g = query(qs, &f);
    assert_int_equal(g.n, 3);
    f.sender = "";
    g = query(qs, &f);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.ids[0], "0000000000000C");

    /* Recipient: any of several, case-insensitive, glob. */
    qfilter_init(&f);
    f.recipient = "carol@example.org";
    g = query(qs, &f);
    assert_int_equal(g.n, 2);
    f.recipient = "dave@EXAMPLE.org";
    g = query(qs, &f);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.rcpts, "carol@example.org,dave@example.org");
    f.recipient = "bob@example.org";
    g = query(qs, &f);
    assert_int_equal(g.n, 2);
    f.recipient = "*@example.org";
    g = query(qs, &f);
    assert_int_equal(g.n, 5);
    f.recipient = "nobody@example.org";
    g = query(qs, &f);
    assert_int_equal(g.n, 0);

    /* Subject glob: case-folded, fullwidth folded to ASCII by NFKC. */
    qfilter_init(&f);
    f.subject = "code name*";
    g = query(qs, &f);
    assert_int_equal(g.n, 3);
    f.subject = "CODE NAME E*";
    g = query(qs, &f);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.subject, "code name eagle");
    f.subject = "code name";
    g = query(qs, &f);
    assert_int_equal(g.n, 0);
    f.subject = "*zip";
    g = query(qs, &f);
    assert_int_equal(g.n, 1);
    f.subject = "Invoice 202?";
    g = query(qs, &f);
    assert_int_equal(g.n, 1);
    f.subject = "[ie]*";
    g = query(qs, &f);
    assert_int_equal(g.n, 2);

    /* Reason, rule. */
    qfilter_init(&f);
    f.reason = QREASON_VIRUS;
    g = query(qs, &f);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.ids[0], "0000000000000A");
    f.reason = QREASON_SPAM;
    g = query(qs, &f);
    assert_int_equal(g.n, 1);
    qfilter_init(&f);
    f.rule = "no-exe";
    g = query(qs, &f);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.ids[0], "0000000000000B");

    /* Time range [since, until). */
    qfilter_init(&f);
    f.since = T0 + 20;
    f.until = T0 + DAY + 40;
    g = query(qs, &f);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.ids[0], "0000000000000C");
    assert_string_equal(g.ids[1], "0000000000000B");

    /* Limit keeps the newest. */
    qfilter_init(&f);
    f.limit = 2;
    g = query(qs, &f);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.ids[0], "0000000000000E");
    assert_string_equal(g.ids[1], "0000000000000D");

    /* Combined filters. */
    qfilter_init(&f);
    f.sender = "alice@example.com";
    f.reason = QREASON_ENCRYPTED;
    g = query(qs, &f);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.ids[0], "0000000000000E");

    /* Get. */
    memset(&g, 0, sizeof(g));
    assert_int_equal(qstore_get(qs, "0000000000000D", collect, &g), 1);
    assert_string_equal(g.subject, "ＣＯＤＥ ＮＡＭＥ wide");
    assert_int_equal(g.reason, QREASON_SPAM);
    assert_int_equal(g.state, QSTATE_HELD);
    assert_true(g.stored > 0);
    assert_true(g.size > 100);
    assert_int_equal(qstore_get(qs, "FFFFFFFFFFFFFF", collect, &g), 0);

    /* A second put of the same ID is refused, nothing changes. */
    struct qmeta m;
    memset(&m, 0, sizeof(m));
    snprintf(m.id, sizeof(m.id), "0000000000000A");
    struct qsource src = {.kind = QSRC_MEM, .mem = "x", .len = 1};
    errno = 0;
    assert_int_equal(qstore_put(qs, &m, &src, NULL), -1);
    assert_int_equal(errno, EEXIST);
    snprintf(m.id, sizeof(m.id), "../etc");
    assert_int_equal(qstore_put(qs, &m, &src, NULL), -1);
    assert_int_equal(errno, EINVAL);

    /* Read-only handle sees the same. */
    struct qstore *ro = open_store(QSTORE_RDONLY);
    qfilter_init(&f);
    f.subject = "code*";
    g = query(ro, &f);
    assert_int_equal(g.n, 3);
    assert_int_equal(qstore_delete(ro, "0000000000000A", 0), -1);
    qstore_close(ro);
    qstore_close(qs);
}

/*
 * The ISO-2022-JP subject, decoded by the message model at put time.
 */
static void
test_japanese_subject(void **state)
{
    (void)state;
    struct qstore *qs = open_store(QSTORE_NOSYNC);
    static const char raw[] =
        "From: =?ISO-2022-JP?B?GyRCJTMhPCVJTD4bKEI=?= <jp@example.jp>\r\n"
        "To: user@example.org\r\n"
        "Subject: =?ISO-2022-JP?B?GyRCRnxLXDhsJE4lRiU5JUgbKEI=?=\r\n"
        "Message-ID: <jp1@example.jp>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=ISO-2022-JP\r\n"
        "\r\n"
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*\r\n";
    const char *rc[] = {"user@example.org"};
    struct qmeta m;
    struct qfilter f;
    struct got g;
    char id[QSTORE_ID_MAX];

    memset(&m, 0, sizeof(m)); /* id "" -> generated; subject NULL -> parsed */
    m.sender = "jp@example.jp";
    m.rcpts = rc;
    m.nrcpt = 1;
    m.reason = QREASON_VIRUS;
    m.virus = "Eicar-Signature";
    struct qsource src = {.kind = QSRC_MEM, .mem = raw, .len = sizeof(raw) - 1};
    assert_int_equal(qstore_put(qs, &m, &src, id), 0);
    assert_int_equal(strlen(id), 14);

    qfilter_init(&f);
    f.subject = "日本語*";
    g = query(qs, &f);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.subject, "日本語のテスト");
    assert_string_equal(g.ids[0], id);
    f.subject = "*テスト";
    assert_int_equal(query(qs, &f).n, 1);
    f.subject = "日本語?テスト"; /* ? is one character, not one byte */
    assert_int_equal(query(qs, &f).n, 1);
    f.subject = "日本語??テスト";
    assert_int_equal(query(qs, &f).n, 0);
    f.subject = "*ﾃｽﾄ"; /* half-width katakana folds to full-width */
    assert_int_equal(query(qs, &f).n, 1);
    f.subject = "中国語*";
    assert_int_equal(query(qs, &f).n, 0);
    qstore_close(qs);
}

/*
 * Round trips.
 */

static unsigned char *
make_body(size_t n)
{
    unsigned char *b = malloc(n);
    uint32_t x = 12345;
    assert_non_null(b);
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        /* Half text-like, half random bytes, CRLF now and then. */
        b[i] = (i / 4096) % 2 ? (unsigned char)(x >> 24) : (unsigned char)('a' + (x >> 24) % 26);
        if (i % 77 == 75)
            b[i] = '\r';
        if (i % 77 == 76)
            b[i] = '\n';
    }
    return b;
}

static void
check_same(struct qstore *qs, const char *id, const unsigned char *want, size_t n)
{
    /* Through the stream API in odd chunk sizes. */
    struct qmsg *qm = qstore_open_message(qs, id);
    unsigned char *got = malloc(n + 100);
    size_t have = 0;
    ssize_t k;
    assert_non_null(qm);
    while ((k = qmsg_read(qm, got + have, have + 777 < n + 100 ? 777 : n + 100 - have)) > 0)
        have += (size_t)k;
    assert_int_equal(k, 0);
    qmsg_close(qm);
    assert_int_equal(have, n);
    assert_memory_equal(got, want, n);

    /* Through qstore_copy_message into a file. */
    char tmpl[] = "/tmp/test_qstore_copy.XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    unlink(tmpl);
    assert_int_equal(qstore_copy_message(qs, id, fd), 0);
    assert_int_equal(lseek(fd, 0, SEEK_END), (off_t)n);
    assert_int_equal(pread(fd, got, n, 0), (ssize_t)n);
    assert_memory_equal(got, want, n);
    close(fd);
    free(got);
}

static void
test_gzip_round_trip(void **state)
{
    (void)state;
    struct qstore *qs = open_store(0); /* with fsync: the daemon's way */
    size_t n = 3 * 1024 * 1024 + 17;
    unsigned char *body = make_body(n);
    struct qmeta m;
    struct got g;
    char path[512];

    /* From memory. */
    memset(&m, 0, sizeof(m));
    snprintf(m.id, sizeof(m.id), "00000000000100");
    m.time = T0;
    m.subject = m.hdr_from = m.message_id = "";
    struct qsource src = {.kind = QSRC_MEM, .mem = body, .len = n};
    assert_int_equal(qstore_put(qs, &m, &src, NULL), 0);
    check_same(qs, m.id, body, n);

    /* The file is a gzip file in the day folder, smaller than the message. */
    snprintf(path, sizeof(path), "%s/20260921/%s.gz", qstore_dir_path(qs), m.id);
    int fd = open(path, O_RDONLY);
    unsigned char magic[2];
    assert_true(fd >= 0);
    assert_int_equal(read(fd, magic, 2), 2);
    close(fd);
    assert_int_equal(magic[0], 0x1f);
    assert_int_equal(magic[1], 0x8b);
    memset(&g, 0, sizeof(g));
    assert_int_equal(qstore_get(qs, m.id, collect, &g), 1);
    assert_int_equal(g.size, (int64_t)n);
    assert_int_equal(g.stored, file_size(path));
    assert_true(g.stored < (int64_t)n);

    /* From a file descriptor. */
    char tmpl[] = "/tmp/test_qstore_src.XXXXXX";
    fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    unlink(tmpl);
    assert_int_equal(write(fd, body, n), (ssize_t)n);
    snprintf(m.id, sizeof(m.id), "00000000000101");
    struct qsource fsrc = {.kind = QSRC_FD, .fd = fd};
    assert_int_equal(qstore_put(qs, &m, &fsrc, NULL), 0);
    close(fd);
    check_same(qs, m.id, body, n);

    /* From a spool that spilled to a file, and an empty message. */
    struct spool *sp = spool_new(64 * 1024, "/tmp");
    assert_non_null(sp);
    for (size_t off = 0; off < n; off += 10000)
        assert_int_equal(spool_write(sp, body + off, n - off < 10000 ? n - off : 10000), 0);
    snprintf(m.id, sizeof(m.id), "00000000000102");
    struct qsource ssrc = {.kind = QSRC_SPOOL, .spool = sp};
    assert_int_equal(qstore_put(qs, &m, &ssrc, NULL), 0);
    spool_free(sp);
    check_same(qs, m.id, body, n);
    snprintf(m.id, sizeof(m.id), "00000000000103");
    struct qsource esrc = {.kind = QSRC_MEM, .mem = "", .len = 0};
    assert_int_equal(qstore_put(qs, &m, &esrc, NULL), 0);
    check_same(qs, m.id, (const unsigned char *)"", 0);

    /* A truncated file reads as an error, never as a shorter message. */
    snprintf(path, sizeof(path), "%s/20260921/00000000000101.gz", qstore_dir_path(qs));
    assert_int_equal(truncate(path, file_size(path) / 2), 0);
    struct qmsg *qm = qstore_open_message(qs, "00000000000101");
    assert_non_null(qm);
    unsigned char buf[65536];
    ssize_t k;
    while ((k = qmsg_read(qm, buf, sizeof(buf))) > 0)
        ;
    assert_int_equal(k, -1);
    qmsg_close(qm);
    /* A flipped byte in the compressed data fails the CRC or the inflate. */
    snprintf(path, sizeof(path), "%s/20260921/00000000000102.gz", qstore_dir_path(qs));
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, 5000), 1);
    c ^= 0x55;
    assert_int_equal(pwrite(fd, &c, 1, 5000), 1);
    close(fd);
    assert_int_equal(qstore_copy_message(qs, "00000000000102", open("/dev/null", O_WRONLY)), -1);

    free(body);
    qstore_close(qs);
}

/*
 * States: delete, release.
 */
static void
test_delete_release(void **state)
{
    (void)state;
    struct qstore *qs = open_store(QSTORE_NOSYNC);
    struct qfilter f;
    struct got g;
    char path[512];
    int64_t bytes0, bytes1;
    long files0, files1;

    put_fixtures(qs);
    assert_int_equal(qstore_usage(qs, &bytes0, &files0), 0);
    assert_int_equal(files0, 5);
    du(qs);
    assert_int_equal(du_bytes, bytes0);

    assert_int_equal(qstore_set_state(qs, "0000000000000B", QSTATE_RELEASED, T0 + 100), 1);
    memset(&g, 0, sizeof(g));
    assert_int_equal(qstore_get(qs, "0000000000000B", collect, &g), 1);
    assert_int_equal(g.state, QSTATE_RELEASED);
    qfilter_init(&f);
    f.state = QSTATE_RELEASED;
    assert_int_equal(query(qs, &f).n, 1);

    snprintf(path, sizeof(path), "%s/20260921/0000000000000A.gz", qstore_dir_path(qs));
    assert_true(file_size(path) > 0);
    assert_int_equal(qstore_delete(qs, "0000000000000A", T0 + 200), 1);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(qstore_delete(qs, "0000000000000A", T0 + 200), 0); /* already */
    assert_int_equal(qstore_delete(qs, "FFFFFFFFFFFFFF", T0 + 200), 0);
    assert_null(qstore_open_message(qs, "0000000000000A"));
    assert_int_equal(errno, ENOENT);

    /* Kept for the record, not listed by default. */
    qfilter_init(&f);
    assert_int_equal(query(qs, &f).n, 4);
    f.state = QSTATE_DELETED;
    g = query(qs, &f);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.stored, 0);
    f.state = -2;
    assert_int_equal(query(qs, &f).n, 5);
    assert_int_equal(qstore_set_state(qs, "0000000000000A", QSTATE_RELEASED, 0), 0);

    assert_int_equal(qstore_usage(qs, &bytes1, &files1), 0);
    assert_int_equal(files1, 4);
    du(qs);
    assert_int_equal(du_bytes, bytes1);
    assert_true(bytes1 < bytes0);
    qstore_close(qs);
}

/*
 * Crash leftovers.
 */
static void
test_check_repairs(void **state)
{
    (void)state;
    struct qstore *qs = open_store(QSTORE_NOSYNC);
    char path[512], dir[256];
    long fixed = -1;
    struct got g;
    int fd;

    put_fixtures(qs);
    snprintf(dir, sizeof(dir), "%s/20260921", qstore_dir_path(qs));

    /* A temp file (crash while writing). */
    snprintf(path, sizeof(path), "%s/.00000000000077.tmp", dir);
    assert_true((fd = open(path, O_CREAT | O_WRONLY, 0600)) >= 0);
    close(fd);
    /* A file without a row (crash between rename and insert). */
    snprintf(path, sizeof(path), "%s/00000000000078.gz", dir);
    assert_true((fd = open(path, O_CREAT | O_WRONLY, 0600)) >= 0);
    assert_int_equal(write(fd, "junk", 4), 4);
    close(fd);
    /* A row without a file (file lost). */
    snprintf(path, sizeof(path), "%s/0000000000000C.gz", dir);
    assert_int_equal(unlink(path), 0);
    /* A file of a deleted row (crash between mark and unlink): recreate one. */
    assert_int_equal(qstore_delete(qs, "0000000000000B", 0), 1);
    snprintf(path, sizeof(path), "%s/0000000000000B.gz", dir);
    assert_true((fd = open(path, O_CREAT | O_WRONLY, 0600)) >= 0);
    close(fd);
    /* An empty old day folder. */
    snprintf(path, sizeof(path), "%s/20250101", qstore_dir_path(qs));
    assert_int_equal(mkdir(path, 0700), 0);
    /* Something not ours stays. */
    snprintf(path, sizeof(path), "%s/README", dir);
    assert_true((fd = open(path, O_CREAT | O_WRONLY, 0600)) >= 0);
    close(fd);

    assert_int_equal(qstore_check(qs, &fixed), 0);
    assert_int_equal(fixed, 4);
    snprintf(path, sizeof(path), "%s/.00000000000077.tmp", dir);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/00000000000078.gz", dir);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/0000000000000B.gz", dir);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/20250101", qstore_dir_path(qs));
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/README", dir);
    assert_int_equal(access(path, F_OK), 0);
    memset(&g, 0, sizeof(g));
    assert_int_equal(qstore_get(qs, "0000000000000C", collect, &g), 1);
    assert_int_equal(g.state, QSTATE_DELETED);
    memset(&g, 0, sizeof(g));
    assert_int_equal(qstore_get(qs, "0000000000000A", collect, &g), 1);
    assert_int_equal(g.state, QSTATE_HELD);

    /* Usage matches the disk again; a second check finds nothing. */
    int64_t bytes;
    long files;
    assert_int_equal(qstore_usage(qs, &bytes, &files), 0);
    du(qs);
    assert_int_equal(files, du_files - 1); /* README */
    assert_int_equal(bytes, du_bytes);
    assert_int_equal(qstore_check(qs, &fixed), 0);
    assert_int_equal(fixed, 0);
    qstore_close(qs);
}

/*
 * Synthetic stores.
 */

/* Put count messages with times spread evenly over [t0, t0 + span). */
static void
fill(struct qstore *qs, long first, long count, int64_t t0, int64_t span)
{
    enum { CHUNK = 2000 };
    static struct qmeta metas[CHUNK];
    static struct qsource srcs[CHUNK];
    static char bodies[CHUNK][700];
    static char subjects[CHUNK][80];
    static const char *rc[2] = {"someone@example.org", "other@example.net"};

    for (long base = 0; base < count; base += CHUNK) {
        long n = count - base < CHUNK ? count - base : CHUNK;
        for (long j = 0; j < n; j++) {
            long i = first + base + j;
            struct qmeta *m = &metas[j];
            memset(m, 0, sizeof(*m));
            snprintf(m->id, sizeof(m->id), "%014lX", (unsigned long)i + 0x100000);
            m->time = t0 + (base + j) * span / count;
            m->client = "mail.example.com[198.51.100.7]";
            m->sender = "bulk-sender@example.com";
            m->rcpts = rc;
            m->nrcpt = 2;
            snprintf(subjects[j], sizeof(subjects[j]), "Quarterly report %ld for review", i);
            m->subject = subjects[j];
            m->hdr_from = "Bulk Sender <bulk-sender@example.com>";
            m->message_id = "<bulk@example.com>";
            m->reason = (enum qreason)(i % 5);
            m->rule = i % 5 == QREASON_POLICY ? "no-exe" : NULL;
            m->virus = i % 5 == QREASON_VIRUS ? "Win.Test.EICAR_HDB-1" : NULL;
            mkmsg(bodies[j], sizeof(bodies[j]), subjects[j], (int)i);
            srcs[j].kind = QSRC_MEM;
            srcs[j].mem = bodies[j];
            srcs[j].len = strlen(bodies[j]);
        }
        assert_int_equal(qstore_put_many(qs, metas, srcs, (size_t)n), 0);
    }
}

static int
min_time(void *arg, const struct qmeta *m)
{
    int64_t *t = arg;
    if (m->time < *t)
        *t = m->time;
    return 0;
}

static long
purge_all(struct qstore *qs, int64_t now, int64_t retention, int64_t quota)
{
    long total = 0, k;
    while ((k = qstore_purge(qs, now, retention, quota, 5000)) == 5000)
        total += k;
    assert_true(k >= 0);
    return total + k;
}

static void
test_purge_100k(void **state)
{
    (void)state;
    struct qstore *qs = open_store(QSTORE_NOSYNC);
    int64_t bytes, db_full, db_after_age, dir_full;
    long files, removed;
    struct qfilter f;

    /* 100,000 messages over 20 days. */
    fill(qs, 0, 100000, T0, 20 * DAY);
    assert_int_equal(qstore_usage(qs, &bytes, &files), 0);
    assert_int_equal(files, 100000);
    du(qs);
    assert_int_equal(du_files, 100000);
    assert_int_equal(du_dirs, 20);
    assert_int_equal(du_bytes, bytes);
    dir_full = du_bytes;
    db_full = db_main(qs);
    print_message("100k: index %lld bytes, files %lld bytes\n", (long long)db_full,
                  (long long)dir_full);

    /* Retention 5 days at T0 + 20 days: the 15 oldest days go, message by message. */
    int64_t now = T0 + 20 * DAY;
    removed = purge_all(qs, now, 5 * DAY, 0);
    assert_int_equal(removed, 75000);
    assert_int_equal(qstore_usage(qs, &bytes, &files), 0);
    assert_int_equal(files, 25000);
    du(qs);
    assert_int_equal(du_files, 25000);
    assert_int_equal(du_bytes, bytes);
    assert_true(du_dirs <= 6); /* emptied day folders removed */
    assert_true(du_bytes < dir_full * 30 / 100);
    db_after_age = db_main(qs);
    print_message("after retention: index %lld bytes, files %lld bytes in %ld folders\n",
                  (long long)db_after_age, (long long)du_bytes, du_dirs);
    assert_true(db_after_age < db_full * 40 / 100);

    /* Nothing older than the cutoff is left, everything newer is. */
    qfilter_init(&f);
    f.until = now - 5 * DAY;
    assert_int_equal(query(qs, &f).n, 0);

    /* Quota: half of what is left; the oldest go first. */
    int64_t quota = bytes / 2;
    removed = purge_all(qs, now, 0, quota);
    assert_int_equal(qstore_usage(qs, &bytes, &files), 0);
    assert_true(bytes <= quota);
    assert_true(bytes > quota - 2000); /* one message at a time, not whole days */
    du(qs);
    assert_int_equal(du_bytes, bytes);
    assert_int_equal(du_files, files);
    assert_true(removed > 10000 && removed < 15000);
    print_message("after quota %lld: %ld files, %lld bytes, index %lld bytes\n", (long long)quota,
                  files, (long long)bytes, (long long)db_main(qs));
    assert_true(db_main(qs) < db_after_age * 70 / 100);
    /* Oldest first: what is left is exactly the newest `files` messages. */
    int64_t tmin = INT64_MAX;
    qfilter_init(&f);
    f.state = -2;
    assert_int_equal(qstore_query(qs, &f, min_time, &tmin), files);
    assert_int_equal(tmin, T0 + (100000 - files) * (20 * DAY) / 100000);
    qstore_close(qs);
}

static void
test_steady_state(void **state)
{
    (void)state;
    struct qstore *qs = open_store(QSTORE_NOSYNC);
    int64_t first = 0;

    for (int round = 0; round < 5; round++) {
        int64_t t0 = T0 + round * 10 * DAY;
        fill(qs, round * 20000L, 20000, t0, 2 * DAY);
        /* Retention: everything before this round goes. */
        long removed = purge_all(qs, t0 + 2 * DAY, 2 * DAY, 0);
        assert_int_equal(removed, round == 0 ? 0 : 20000);
        int64_t sz = db_main(qs);
        du(qs);
        print_message("round %d: index %lld bytes, %ld files (%lld bytes) in %ld folders\n",
                      round + 1, (long long)sz, du_files, (long long)du_bytes, du_dirs);
        assert_int_equal(du_files, 20000);
        assert_true(du_dirs <= 3);
        if (round == 0)
            first = sz;
        else
            assert_true(sz <= first * 110 / 100);
    }
    qstore_close(qs);
}

/*
 * Threads: puts from several threads while the purger thread and queries run.
 */

struct putter {
    struct qstore *qs;
    int base, n, failed;
};

static void *
putter_main(void *arg)
{
    struct putter *p = arg;
    char body[700], subject[64];
    const char *rc[] = {"t@example.org"};
    for (int i = 0; i < p->n; i++) {
        struct qmeta m;
        memset(&m, 0, sizeof(m));
        snprintf(m.id, sizeof(m.id), "%014X", p->base + i);
        m.time = T0 + (p->base + i) % 1000;
        m.sender = "thread@example.com";
        m.rcpts = rc;
        m.nrcpt = 1;
        snprintf(subject, sizeof(subject), "thread %d", p->base + i);
        m.subject = subject;
        m.hdr_from = m.message_id = "";
        mkmsg(body, sizeof(body), subject, p->base + i);
        struct qsource src = {.kind = QSRC_MEM, .mem = body, .len = strlen(body)};
        if (qstore_put(p->qs, &m, &src, NULL) < 0)
            p->failed++;
    }
    return NULL;
}

static void
test_threads(void **state)
{
    (void)state;
    struct qstore *qs = open_store(QSTORE_NOSYNC);
    struct putter p[4];
    pthread_t th[4];
    struct qfilter f;
    int64_t bytes;
    long files;

    /* The purger keeps the store under a quota of about 300 messages meanwhile. */
    assert_int_equal(qstore_purger_start(qs, 0, 300 * 250, 1), 0);
    for (int i = 0; i < 4; i++) {
        p[i] = (struct putter){qs, i * 100000, 1000, 0};
        assert_int_equal(pthread_create(&th[i], NULL, putter_main, &p[i]), 0);
    }
    for (int k = 0; k < 50; k++) {
        qfilter_init(&f);
        f.subject = "thread 1*";
        f.limit = 10;
        assert_true(qstore_query(qs, &f, collect_nothing, NULL) >= 0);
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(p[i].failed, 0);
    }
    qstore_purger_stop(qs);
    /* One last purge, then the disk and the index agree. */
    purge_all(qs, 0, 0, 300 * 250);
    assert_int_equal(qstore_usage(qs, &bytes, &files), 0);
    assert_true(bytes <= 300 * 250);
    du(qs);
    assert_int_equal(du_files, files);
    assert_int_equal(du_bytes, bytes);
    long fixed = -1;
    assert_int_equal(qstore_check(qs, &fixed), 0);
    assert_int_equal(fixed, 0);
    qstore_close(qs);
}

/* The purger thread applies the retention by itself. */
static void
test_purger_retention(void **state)
{
    (void)state;
    struct qstore *qs = open_store(QSTORE_NOSYNC);
    long files = -1;

    put_fixtures(qs); /* September 2026, older than a day by now */
    assert_int_equal(qstore_purger_start(qs, DAY, 0, 3600), 0);
    for (int i = 0; i < 200 && files != 0; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        assert_int_equal(qstore_usage(qs, NULL, &files), 0);
    }
    assert_int_equal(files, 0);
    du(qs);
    assert_int_equal(du_files, 0);
    assert_int_equal(du_dirs, 0);
    qstore_close(qs); /* stops the purger */
}

/* Quota cutting retention short (qstore_quota_cut), qstore_stats, qstore_purger_set. */
static void
put_aged(struct qstore *qs, int64_t now, int n)
{
    static const char *const rc[] = {"r@example.org"};
    char body[512];
    for (int i = 0; i < n; i++) {
        /* i days and a minute old, oldest first in time */
        int len = snprintf(body, sizeof(body), "Subject: m%d\r\n\r\nbody %d %s\r\n", i, i,
                           "incompressible-ish 8f2a 91cc 1e7b 55d0 aa31 0c9e");
        struct qmeta m = {.time = now - (int64_t)(n - i) * DAY - 60, .sender = "s@example.com",
                          .rcpts = rc, .nrcpt = 1, .reason = QREASON_VIRUS, .virus = "Eicar"};
        struct qsource src = {.kind = QSRC_MEM, .mem = body, .len = (size_t)len};
        assert_int_equal(qstore_put(qs, &m, &src, NULL), 0);
    }
}

static void
test_quota_cut_and_stats(void **state)
{
    (void)state;
    struct qstore *qs = open_store(QSTORE_NOSYNC);
    int64_t now = (int64_t)time(NULL), bytes = 0, oldest = -1;
    long files = 0;

    put_aged(qs, now, 4); /* 4, 3, 2 and 1 days old */
    assert_int_equal(qstore_usage(qs, &bytes, &files), 0);
    assert_int_equal(files, 4);

    struct qstats st;
    assert_int_equal(qstore_stats(qs, now, &st), 0);
    assert_int_equal(st.messages, 4);
    assert_int_equal(st.bytes, bytes);
    assert_int_equal(st.oldest, now - 4 * DAY - 60);
    assert_int_equal(st.newest, now - DAY - 60);
    int64_t sum = 0;
    long msgs = 0;
    for (int i = 0; i < QSTATS_DAYS; i++) {
        sum += st.day[i].bytes;
        msgs += st.day[i].messages;
        assert_int_equal(st.day[i].start % DAY, 0);
    }
    assert_int_equal(sum, bytes);
    assert_int_equal(msgs, 4);
    assert_int_equal(st.day[QSTATS_DAYS - 1].start, now / DAY * DAY);

    /* Not cut: nothing removed, or removed by age only. */
    assert_int_equal(qstore_purge(qs, now, 14 * DAY, 0, 0), 0);
    assert_int_equal(qstore_quota_cut(qs, &oldest), 0);
    assert_int_equal(oldest, 0);

    /* One byte under the total: the oldest goes, the rest is inside the retention. */
    assert_int_equal(qstore_purge(qs, now, 14 * DAY, bytes - 1, 0), 1);
    assert_int_equal(qstore_quota_cut(qs, &oldest), 1);
    assert_int_equal(oldest, now - 3 * DAY - 60);
    /* A pass with nothing to remove while the store is still near the quota: still cut. */
    assert_int_equal(qstore_purge(qs, now, 14 * DAY, bytes - 1, 0), 0);
    assert_int_equal(qstore_quota_cut(qs, NULL), 1);
    /* Room again (a larger quota): cleared. */
    assert_int_equal(qstore_purge(qs, now, 14 * DAY, 100 * bytes, 0), 0);
    assert_int_equal(qstore_quota_cut(qs, NULL), 0);

    /* Removed by age, and the rest fits the quota: no cut. */
    assert_int_equal(qstore_purge(qs, now, 2 * DAY, bytes, 0), 2);
    assert_int_equal(qstore_quota_cut(qs, NULL), 0);

    /* Nothing kept at all, all of it inside the retention: cut, no oldest. */
    assert_int_equal(qstore_purge(qs, now, 30 * DAY, 1, 0), 1);
    assert_int_equal(qstore_quota_cut(qs, &oldest), 1);
    assert_int_equal(oldest, 0);

    /* The purger takes new settings at once (not after its hour-long interval). */
    put_aged(qs, now, 3);
    assert_int_equal(qstore_purger_start(qs, 30 * DAY, 0, 3600), 0);
    qstore_purger_set(qs, 30 * DAY, 1);
    files = -1;
    for (int i = 0; i < 1000 && files != 0; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        assert_int_equal(qstore_usage(qs, NULL, &files), 0);
    }
    assert_int_equal(files, 0);
    qstore_close(qs);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_query_filters, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_japanese_subject, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_gzip_round_trip, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_delete_release, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_check_repairs, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_purge_100k, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_steady_state, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_threads, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_purger_retention, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_quota_cut_and_stats, setup_dir, teardown_dir),
    };
    mime_global_init();
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    mime_global_shutdown();
    return rc;
}
