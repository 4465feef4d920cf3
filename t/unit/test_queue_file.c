/*
 * test_queue_file.c - unit tests of queue/queue_file.c: round trip of an
 * envelope with odd addresses, DSN and XFORWARD data; in-place updates
 * that survive a reload; hold/release/remove; tmp/ cleanup; refusal of
 * truncated and garbled files; the free-space floor; directory scans.
 * Each test works in its own fresh folder under $TMPDIR (or /tmp).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "envelope.h"
#include "qid.h"
#include "queue_file.h"
#include "spool.h"

#define ID1 "0005F1A2B3C4D5"
#define ID2 "0005F1A2B3C4D6"

struct fixture {
    char dir[256];
};

static int
rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    const char *t = getenv("TMPDIR");
    snprintf(f->dir, sizeof(f->dir), "%s/test_queue_file.XXXXXX", t && *t ? t : "/tmp");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    if (queue_dir_init(f->dir) < 0)
        return -1;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Files in qdir/sub (not . and ..). */
static int
count_files(const char *qdir, const char *sub)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", qdir, sub);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static char *
read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    rewind(fp);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static void
write_file(const char *path, const char *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(buf, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* The test envelope: odd addresses, every DSN and XFORWARD field. */
static struct envelope *
odd_envelope(void)
{
    struct envelope *env = envelope_new();
    assert_non_null(env);
    assert_int_equal(envelope_set_sender(env, "\"odd sender\"+tag=1@ex\xc3\xa4mple.com"), 0);
    env->envid = strdup("QQ+2B314");
    env->ret = DSN_RET_HDRS;
    env->body = BODY_8BITMIME;
    env->smtputf8 = 1;
    env->arrival = 1700000000;
    assert_int_equal(envelope_set_xforward(env, XF_NAME, "mail.example.org"), 0);
    assert_int_equal(envelope_set_xforward(env, XF_ADDR, "IPv6:2001:db8::1"), 0);
    assert_int_equal(envelope_set_xforward(env, XF_HELO, "helo with spaces [x]"), 0);
    assert_int_equal(envelope_set_xforward(env, XF_SOURCE, "REMOTE"), 0);
    /* 0: pending with spaces in the local part */
    assert_int_equal(envelope_add_rcpt(env, "\"john  doe\"@example.com", "rfc822;john+20doe@x",
                                       DSN_NOTIFY_SUCCESS | DSN_NOTIFY_DELAY),
                     0);
    /* 1: done: not written */
    assert_int_equal(envelope_add_rcpt(env, "done@example.com", NULL, 0), 1);
    env->rcpt[1].state = RCPT_DONE;
    /* 2: deferred with a reason: written as pending, reason kept */
    assert_int_equal(envelope_add_rcpt(env, "a=b+c@example.com", NULL, DSN_NOTIFY_NEVER), 2);
    env->rcpt[2].state = RCPT_DEFERRED;
    assert_int_equal(envelope_set_reason(&env->rcpt[2], "451 4.3.0 try later"), 0);
    /* 3: bounced: not written */
    assert_int_equal(envelope_add_rcpt(env, "gone@example.com", NULL, 0), 3);
    env->rcpt[3].state = RCPT_BOUNCED;
    /* 4: pending, empty ORCPT string, tab and newline in the address */
    assert_int_equal(envelope_add_rcpt(env, "we\tird @x", "", DSN_NOTIFY_FAILURE), 4);
    return env;
}

static struct spool *
make_body(const char *text, size_t repeat, size_t mem_limit)
{
    struct spool *sp = spool_new(mem_limit, NULL);
    assert_non_null(sp);
    for (size_t i = 0; i < repeat; i++)
        assert_int_equal(spool_write(sp, text, strlen(text)), 0);
    return sp;
}

/* Whole content of a loaded entry (needs fd). */
static char *
content_of(struct queue_entry *qe)
{
    char *buf = malloc((size_t)qe->content_size + 1);
    assert_non_null(buf);
    off_t off = 0;
    while (off < qe->content_size) {
        ssize_t n = queue_file_read_content(qe, buf + off, 7777, off);
        assert_true(n > 0);
        off += n;
    }
    assert_int_equal(queue_file_read_content(qe, buf, 10, off), 0);
    buf[off] = '\0';
    return buf;
}

static void
create_simple(const char *qdir, const char *id, const char *sender, time_t arrival)
{
    struct envelope *env = envelope_new();
    assert_non_null(env);
    assert_int_equal(envelope_set_sender(env, sender), 0);
    env->arrival = arrival;
    assert_true(envelope_add_rcpt(env, "r1@example.com", NULL, 0) >= 0);
    assert_true(envelope_add_rcpt(env, "r2@example.com", NULL, 0) >= 0);
    struct spool *sp = make_body("Subject: x\r\n\r\nhello\r\n", 1, 4096);
    assert_int_equal(queue_file_create(qdir, id, env, NULL, 0, sp, 0), 0);
    spool_free(sp);
    envelope_free(env);
}

/*
 * Round trip.
 */
static void
test_roundtrip(void **state)
{
    struct fixture *f = *state;
    struct envelope *env = odd_envelope();
    const char *prefix = "X-Virus-Scanned: scanrelay\r\n";
    struct spool *sp = make_body("Subject: hi\r\n\r\nbody\r\n", 1, 4096);

    assert_int_equal(queue_file_create(f->dir, ID1, env, prefix, strlen(prefix), sp, 0), 0);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
    assert_int_equal(count_files(f->dir, "deferred"), 1);

    struct queue_entry *qe = queue_file_load(f->dir, ID1, 1);
    assert_non_null(qe);
    assert_string_equal(qe->id, ID1);
    assert_int_equal(qe->where, QUEUE_DEFERRED);
    assert_true(qe->fd >= 0);
    assert_int_equal(qe->attempts, 0);
    assert_int_equal(qe->next_attempt, 0);
    assert_int_equal(qe->last_attempt, 0);

    struct envelope *e = qe->env;
    assert_string_equal(e->sender, env->sender);
    assert_string_equal(e->envid, "QQ+2B314");
    assert_int_equal(e->ret, DSN_RET_HDRS);
    assert_int_equal(e->body, BODY_8BITMIME);
    assert_int_equal(e->smtputf8, 1);
    assert_int_equal(e->arrival, 1700000000);
    assert_string_equal(e->xforward[XF_NAME], "mail.example.org");
    assert_string_equal(e->xforward[XF_ADDR], "IPv6:2001:db8::1");
    assert_string_equal(e->xforward[XF_HELO], "helo with spaces [x]");
    assert_string_equal(e->xforward[XF_SOURCE], "REMOTE");
    assert_null(e->xforward[XF_PORT]);
    assert_null(e->xforward[XF_PROTO]);
    assert_null(e->xforward[XF_IDENT]);

    assert_int_equal(e->nrcpt, 3);
    assert_string_equal(e->rcpt[0].addr, "\"john  doe\"@example.com");
    assert_string_equal(e->rcpt[0].orcpt, "rfc822;john+20doe@x");
    assert_int_equal(e->rcpt[0].notify, DSN_NOTIFY_SUCCESS | DSN_NOTIFY_DELAY);
    assert_int_equal(e->rcpt[0].state, RCPT_PENDING);
    assert_null(e->rcpt[0].reason);
    assert_string_equal(e->rcpt[1].addr, "a=b+c@example.com");
    assert_null(e->rcpt[1].orcpt);
    assert_int_equal(e->rcpt[1].notify, DSN_NOTIFY_NEVER);
    assert_int_equal(e->rcpt[1].state, RCPT_PENDING);
    assert_string_equal(e->rcpt[1].reason, "451 4.3.0 try later");
    assert_string_equal(e->rcpt[2].addr, "we\tird @x");
    assert_non_null(e->rcpt[2].orcpt);
    assert_string_equal(e->rcpt[2].orcpt, "");
    assert_int_equal(e->rcpt[2].notify, DSN_NOTIFY_FAILURE);

    char *c = content_of(qe);
    assert_string_equal(c, "X-Virus-Scanned: scanrelay\r\nSubject: hi\r\n\r\nbody\r\n");
    assert_int_equal(qe->content_size, (off_t)strlen(c));
    free(c);
    queue_entry_free(qe);

    /* Listing mode: no descriptor kept. */
    qe = queue_file_load(f->dir, ID1, 0);
    assert_non_null(qe);
    assert_int_equal(qe->fd, -1);
    char b[4];
    assert_int_equal(queue_file_read_content(qe, b, sizeof(b), 0), -1);
    assert_int_equal(errno, EBADF);
    assert_int_equal(queue_file_set_meta(qe, 1, 2, 3), -1);
    queue_entry_free(qe);

    spool_free(sp);
    envelope_free(env);
}

/* A body that spilled to a file, no prefix, null sender, minimal envelope. */
static void
test_roundtrip_big_body(void **state)
{
    struct fixture *f = *state;
    struct envelope *env = envelope_new();
    assert_int_equal(envelope_set_sender(env, ""), 0);
    assert_true(envelope_add_rcpt(env, "x@y", NULL, 0) >= 0);
    struct spool *sp = make_body("0123456789abcdef\r\n", 20000, 4096);
    assert_true(spool_fd(sp) >= 0);

    assert_int_equal(queue_file_create(f->dir, ID1, env, NULL, 0, sp, 0), 0);
    struct queue_entry *qe = queue_file_load(f->dir, ID1, 1);
    assert_non_null(qe);
    assert_string_equal(qe->env->sender, "");
    assert_null(qe->env->envid);
    assert_int_equal(qe->env->ret, DSN_RET_NONE);
    assert_int_equal(qe->env->body, BODY_NONE);
    assert_int_equal(qe->env->smtputf8, 0);
    assert_int_equal(qe->content_size, 18 * 20000);
    char *c = content_of(qe);
    for (size_t i = 0; i < 20000; i++)
        assert_memory_equal(c + i * 18, "0123456789abcdef\r\n", 18);
    free(c);
    /* Reads past the end and at odd offsets. */
    char b[32];
    assert_int_equal(queue_file_read_content(qe, b, sizeof(b), qe->content_size - 5), 5);
    assert_memory_equal(b, "def\r\n", 5);
    assert_int_equal(queue_file_read_content(qe, b, sizeof(b), qe->content_size + 100), 0);
    queue_entry_free(qe);
    spool_free(sp);
    envelope_free(env);
}

/*
 * In-place updates.
 */
static void
test_update_persists(void **state)
{
    struct fixture *f = *state;
    struct envelope *env = odd_envelope();
    struct spool *sp = make_body("Subject: hi\r\n\r\nbody\r\n", 1, 4096);
    assert_int_equal(queue_file_create(f->dir, ID1, env, NULL, 0, sp, 0), 0);

    struct queue_entry *qe = queue_file_load(f->dir, ID1, 1);
    assert_non_null(qe);
    assert_int_equal(queue_file_set_rcpt(qe, 0, RCPT_DONE, "250 2.0.0 Ok", 1), 0);
    assert_int_equal(
        queue_file_set_rcpt(qe, 1, RCPT_DEFERRED, "451 4.3.0 try again\r\n451 line two", 0), 0);
    assert_string_equal(qe->env->rcpt[1].reason, "451 4.3.0 try again  451 line two");

    /* 400 bytes with a two-byte character across the 250-byte limit. */
    char longr[401];
    memset(longr, 'a', 400);
    longr[249] = '\xc3';
    longr[250] = '\xa9';
    longr[400] = '\0';
    assert_int_equal(queue_file_set_rcpt(qe, 2, RCPT_BOUNCED, longr, 1), 0);
    assert_int_equal(strlen(qe->env->rcpt[2].reason), 249);
    assert_int_equal(queue_file_set_meta(qe, 3, 1700000100, 1700000400), 0);
    assert_int_equal(queue_file_set_rcpt(qe, 3, RCPT_DONE, NULL, 0), -1);
    assert_int_equal(errno, EINVAL);
    queue_entry_free(qe);

    qe = queue_file_load(f->dir, ID1, 1);
    assert_non_null(qe);
    assert_int_equal(qe->attempts, 3);
    assert_int_equal(qe->last_attempt, 1700000100);
    assert_int_equal(qe->next_attempt, 1700000400);
    assert_int_equal(qe->env->rcpt[0].state, RCPT_DONE);
    assert_string_equal(qe->env->rcpt[0].reason, "250 2.0.0 Ok");
    assert_int_equal(qe->env->rcpt[1].state, RCPT_DEFERRED);
    assert_string_equal(qe->env->rcpt[1].reason, "451 4.3.0 try again  451 line two");
    assert_int_equal(qe->env->rcpt[2].state, RCPT_BOUNCED);
    assert_int_equal(strlen(qe->env->rcpt[2].reason), 249);
    assert_string_equal(qe->env->rcpt[2].addr, "we\tird @x");

    /* Clearing a reason, a shorter reason over a longer one. */
    assert_int_equal(queue_file_set_rcpt(qe, 2, RCPT_PENDING, NULL, 0), 0);
    assert_null(qe->env->rcpt[2].reason);
    assert_int_equal(queue_file_set_rcpt(qe, 1, RCPT_DEFERRED, "x", 0), 0);
    assert_int_equal(queue_file_set_meta(qe, 2147483647, 0, 4102444800), 0);
    char *c = content_of(qe);
    assert_string_equal(c, "Subject: hi\r\n\r\nbody\r\n");
    free(c);
    queue_entry_free(qe);

    qe = queue_file_load(f->dir, ID1, 0);
    assert_non_null(qe);
    assert_int_equal(qe->env->rcpt[2].state, RCPT_PENDING);
    assert_null(qe->env->rcpt[2].reason);
    assert_string_equal(qe->env->rcpt[1].reason, "x");
    assert_int_equal(qe->attempts, 2147483647);
    assert_int_equal(qe->next_attempt, 4102444800);
    queue_entry_free(qe);

    spool_free(sp);
    envelope_free(env);
}

/*
 * Moving and removing.
 */
static void
test_hold_release_remove(void **state)
{
    struct fixture *f = *state;
    create_simple(f->dir, ID1, "s@example.com", 1700000000);

    struct queue_entry *rw = queue_file_load(f->dir, ID1, 1);
    assert_non_null(rw);
    assert_int_equal(queue_file_hold(f->dir, ID1), 0);
    assert_int_equal(count_files(f->dir, "deferred"), 0);
    assert_int_equal(count_files(f->dir, "hold"), 1);
    /* An open entry survives the move. */
    assert_int_equal(queue_file_set_rcpt(rw, 0, RCPT_DONE, NULL, 1), 0);
    queue_entry_free(rw);

    struct queue_entry *qe = queue_file_load(f->dir, ID1, 0);
    assert_non_null(qe);
    assert_int_equal(qe->where, QUEUE_HOLD);
    assert_int_equal(qe->env->rcpt[0].state, RCPT_DONE);
    queue_entry_free(qe);

    assert_int_equal(queue_file_hold(f->dir, ID1), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(queue_file_release(f->dir, ID1), 0);
    assert_int_equal(queue_file_release(f->dir, ID1), -1);
    assert_int_equal(errno, ENOENT);
    qe = queue_file_load(f->dir, ID1, 0);
    assert_non_null(qe);
    assert_int_equal(qe->where, QUEUE_DEFERRED);
    queue_entry_free(qe);

    /* Release never replaces a file of the same name. */
    create_simple(f->dir, ID2, "s@example.com", 1700000000);
    assert_int_equal(queue_file_hold(f->dir, ID2), 0);
    char a[512], b[512];
    snprintf(a, sizeof(a), "%s/deferred/%s", f->dir, ID2);
    snprintf(b, sizeof(b), "%s/deferred/%s", f->dir, ID1);
    assert_int_equal(link(b, a), 0);
    assert_int_equal(queue_file_release(f->dir, ID2), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(count_files(f->dir, "hold"), 1);
    assert_int_equal(unlink(a), 0);

    assert_int_equal(queue_file_remove(f->dir, ID1), 0);
    assert_int_equal(queue_file_remove(f->dir, ID2), 0); /* from hold/ */
    assert_int_equal(queue_file_remove(f->dir, ID1), -1);
    assert_int_equal(errno, ENOENT);
    assert_null(queue_file_load(f->dir, ID1, 0));
    assert_int_equal(errno, ENOENT);

    /* Names that are not queue IDs never reach the file system. */
    assert_int_equal(queue_file_remove(f->dir, "../tmp"), -1);
    assert_int_equal(errno, EINVAL);
    assert_null(queue_file_load(f->dir, "0005f1a2b3c4d5", 0));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(queue_file_hold(f->dir, ""), -1);
    assert_int_equal(errno, EINVAL);
}

static void
test_cleanup(void **state)
{
    struct fixture *f = *state;
    char path[512];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/tmp/0005F1A2B3C4D%d", f->dir, i);
        write_file(path, "scanrelay-queue 1\narr", 21);
    }
    create_simple(f->dir, ID1, "s@example.com", 1700000000);
    assert_int_equal(count_files(f->dir, "tmp"), 3);
    assert_int_equal(queue_dir_cleanup(f->dir), 3);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
    assert_int_equal(count_files(f->dir, "deferred"), 1);
    assert_int_equal(queue_dir_cleanup(f->dir), 0);
}

/*
 * Failures.
 */
static void
test_create_failures(void **state)
{
    struct fixture *f = *state;
    struct envelope *env = envelope_new();
    assert_int_equal(envelope_set_sender(env, "s@x"), 0);
    assert_true(envelope_add_rcpt(env, "r@x", NULL, 0) >= 0);
    struct spool *sp = make_body("Subject: x\r\n\r\n", 1, 4096);

    /* Free-space floor. */
    assert_int_equal(queue_file_create(f->dir, ID1, env, NULL, 0, sp, INT64_MAX), -1);
    assert_int_equal(errno, ENOSPC);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
    assert_int_equal(count_files(f->dir, "deferred"), 0);

    /* Same ID twice: refused, first file intact, nothing left in tmp/. */
    assert_int_equal(queue_file_create(f->dir, ID1, env, NULL, 0, sp, 0), 0);
    assert_int_equal(queue_file_create(f->dir, ID1, env, "X: y\r\n", 6, sp, 0), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(count_files(f->dir, "tmp"), 0);
    struct queue_entry *qe = queue_file_load(f->dir, ID1, 0);
    assert_non_null(qe);
    assert_int_equal(qe->content_size, 14);
    queue_entry_free(qe);

    /* A leftover tmp/ID (O_EXCL) is not overwritten. */
    char path[512];
    snprintf(path, sizeof(path), "%s/tmp/%s", f->dir, ID2);
    write_file(path, "junk", 4);
    assert_int_equal(queue_file_create(f->dir, ID2, env, NULL, 0, sp, 0), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(count_files(f->dir, "tmp"), 1);
    unlink(path);

    /* Nothing to deliver: no file. */
    env->rcpt[0].state = RCPT_DONE;
    assert_int_equal(queue_file_create(f->dir, ID2, env, NULL, 0, sp, 0), -1);
    assert_int_equal(errno, EINVAL);
    env->rcpt[0].state = RCPT_PENDING;

    /* Line breaks in any envelope text. */
    struct envelope *e2 = envelope_dup(env);
    assert_int_equal(envelope_set_sender(e2, "a\r\nRSET@x"), 0);
    assert_int_equal(queue_file_create(f->dir, ID2, e2, NULL, 0, sp, 0), -1);
    assert_int_equal(errno, EINVAL);
    envelope_free(e2);
    e2 = envelope_dup(env);
    assert_true(envelope_add_rcpt(e2, "b@x", "rfc822;b@x\n", 0) >= 0);
    assert_int_equal(queue_file_create(f->dir, ID2, e2, NULL, 0, sp, 0), -1);
    assert_int_equal(errno, EINVAL);
    envelope_free(e2);
    e2 = envelope_dup(env);
    assert_int_equal(envelope_set_xforward(e2, XF_HELO, "x\ry"), 0);
    assert_int_equal(queue_file_create(f->dir, ID2, e2, NULL, 0, sp, 0), -1);
    assert_int_equal(errno, EINVAL);
    envelope_free(e2);
    assert_int_equal(count_files(f->dir, "tmp"), 0);

    /* Bad ID, missing folder. */
    assert_int_equal(queue_file_create(f->dir, "nope", env, NULL, 0, sp, 0), -1);
    assert_int_equal(errno, EINVAL);
    snprintf(path, sizeof(path), "%s/missing", f->dir);
    assert_int_equal(queue_file_create(path, ID2, env, NULL, 0, sp, 0), -1);
    assert_int_equal(errno, ENOENT);

    spool_free(sp);
    envelope_free(env);
}

/* Loading must fail with EINVAL, never crash. */
static void
expect_invalid(const char *qdir, const char *path, const char *buf, size_t len)
{
    write_file(path, buf, len);
    struct queue_entry *qe = queue_file_load(qdir, ID2, 0);
    if (qe != NULL)
        fail_msg("accepted a broken file of %zu bytes: %.*s", len, (int)len, buf);
    assert_int_equal(errno, EINVAL);
}

static void
test_truncated(void **state)
{
    struct fixture *f = *state;
    struct envelope *env = odd_envelope();
    struct spool *sp = make_body("Subject: hi\r\n\r\nbody\r\n", 1, 4096);
    assert_int_equal(queue_file_create(f->dir, ID1, env, "P: 1\r\n", 6, sp, 0), 0);

    char good[512], bad[512];
    snprintf(good, sizeof(good), "%s/deferred/%s", f->dir, ID1);
    snprintf(bad, sizeof(bad), "%s/deferred/%s", f->dir, ID2);
    size_t len;
    char *buf = read_file(good, &len);

    /* Every truncation. */
    for (size_t cut = 0; cut < len; cut++)
        expect_invalid(f->dir, bad, buf, cut);
    /* One byte too many. */
    char *more = malloc(len + 1);
    memcpy(more, buf, len);
    more[len] = 'x';
    expect_invalid(f->dir, bad, more, len + 1);
    free(more);

    /* The intact copy loads. */
    write_file(bad, buf, len);
    struct queue_entry *qe = queue_file_load(f->dir, ID2, 0);
    assert_non_null(qe);
    queue_entry_free(qe);

    free(buf);
    spool_free(sp);
    envelope_free(env);
}

/* Replace the first occurrence of from by to in a copy of the file. */
static void
expect_invalid_edit(const char *qdir, const char *bad, const char *buf, size_t len,
                    const char *from, const char *to)
{
    const char *p = strstr(buf, from);
    assert_non_null(p);
    size_t pre = (size_t)(p - buf), fl = strlen(from), tl = strlen(to);
    char *n = malloc(len - fl + tl + 1);
    memcpy(n, buf, pre);
    memcpy(n + pre, to, tl);
    memcpy(n + pre + tl, p + fl, len - pre - fl);
    expect_invalid(qdir, bad, n, len - fl + tl);
    free(n);
}

static void
test_garbled(void **state)
{
    struct fixture *f = *state;
    struct envelope *env = odd_envelope();
    struct spool *sp = make_body("Subject: hi\r\n\r\nbody\r\n", 1, 4096);
    assert_int_equal(queue_file_create(f->dir, ID1, env, NULL, 0, sp, 0), 0);

    char good[512], bad[512];
    snprintf(good, sizeof(good), "%s/deferred/%s", f->dir, ID1);
    snprintf(bad, sizeof(bad), "%s/deferred/%s", f->dir, ID2);
    size_t len;
    char *buf = read_file(good, &len);

    /* Targeted damage. */
    expect_invalid_edit(f->dir, bad, buf, len, "scanrelay-queue 1", "scanrelay-queue 2");
    expect_invalid_edit(f->dir, bad, buf, len, "arrival ", "arrivel ");
    expect_invalid_edit(f->dir, bad, buf, len, "arrival 1700000000", "arrival -1");
    expect_invalid_edit(f->dir, bad, buf, len, "arrival 1700000000",
                        "arrival 99999999999999999999");
    expect_invalid_edit(f->dir, bad, buf, len, "sender =", "sender ");
    expect_invalid_edit(f->dir, bad, buf, len, "sender =", "sender =+Z");
    expect_invalid_edit(f->dir, bad, buf, len, "ret HDRS", "ret NONE");
    expect_invalid_edit(f->dir, bad, buf, len, "body 8BITMIME", "body BINARYMIME");
    expect_invalid_edit(f->dir, bad, buf, len, "xforward NAME", "xforward NAMES");
    expect_invalid_edit(f->dir, bad, buf, len, "xforward ADDR", "xforward NAME");
    expect_invalid_edit(f->dir, bad, buf, len, "smtputf8\n", "smtputf8 yes\n");
    expect_invalid_edit(f->dir, bad, buf, len, "meta 0000000000", "meta 000000000x");
    expect_invalid_edit(f->dir, bad, buf, len, "meta 0000000000", "meta 00000000000");
    expect_invalid_edit(f->dir, bad, buf, len, "meta ", "mete ");
    expect_invalid_edit(f->dir, bad, buf, len, "rcpt P", "rcpt X");
    expect_invalid_edit(f->dir, bad, buf, len, "rcpt P 000", "rcpt P 0a0");
    expect_invalid_edit(f->dir, bad, buf, len, "rcpt P 000 ", "rcpt P 000");
    expect_invalid_edit(f->dir, bad, buf, len, " 10 =", " 16 =");
    expect_invalid_edit(f->dir, bad, buf, len, " 10 =", " 10  =");
    expect_invalid_edit(f->dir, bad, buf, len, "size ", "sizes ");
    expect_invalid_edit(f->dir, bad, buf, len, "size 21", "size 22");
    expect_invalid_edit(f->dir, bad, buf, len, "\ncontent\n", "\ncontents\n");
    expect_invalid_edit(f->dir, bad, buf, len, "\ncontent\n", "\nbogus 1\ncontent\n");
    expect_invalid_edit(f->dir, bad, buf, len, "\nsender", "\nsender =\nsender");
    expect_invalid_edit(f->dir, bad, buf, len, "=a+3Db", "=a+0D+0Ab");
    expect_invalid_edit(f->dir, bad, buf, len, "=rfc822;", "=rfc822;+0A");
    expect_invalid_edit(f->dir, bad, buf, len, "sender =", "sender =+0D");
    expect_invalid_edit(f->dir, bad, buf, len, "xforward NAME =", "xforward NAME =+0A");

    /* Single-byte damage everywhere in the envelope: EINVAL or a clean
     * load, never a crash (the sanitizers watch). */
    const char *hdr_end = strstr(buf, "\ncontent\n");
    assert_non_null(hdr_end);
    size_t hlen = (size_t)(hdr_end - buf) + 9;
    const char subst[] = {'\0', '\n', ' ', 'x', '=', '+', '9', '\xff'};
    char *copy = malloc(len);
    int refused = 0;
    for (size_t i = 0; i < hlen; i++) {
        for (size_t k = 0; k < sizeof(subst); k++) {
            if (buf[i] == subst[k])
                continue;
            memcpy(copy, buf, len);
            copy[i] = subst[k];
            write_file(bad, copy, len);
            struct queue_entry *qe = queue_file_load(f->dir, ID2, 0);
            if (qe == NULL) {
                assert_int_equal(errno, EINVAL);
                refused++;
            } else {
                assert_int_equal(qe->content_size, 21);
                queue_entry_free(qe);
            }
        }
    }
    assert_true(refused > 0);
    free(copy);

    /* An oversized reason length (torn update) is clamped, not fatal. */
    char *p = strstr(buf, "rcpt P 019 ");
    assert_non_null(p);
    memcpy(p + 7, "999", 3);
    write_file(bad, buf, len);
    struct queue_entry *qe = queue_file_load(f->dir, ID2, 0);
    assert_non_null(qe);
    assert_int_equal(strlen(qe->env->rcpt[1].reason), 250);
    queue_entry_free(qe);

    /* A directory or an empty file under a queue ID. */
    unlink(bad);
    expect_invalid(f->dir, bad, "", 0);
    unlink(bad);
    assert_int_equal(mkdir(bad, 0700), 0);
    assert_null(queue_file_load(f->dir, ID2, 0));
    rmdir(bad);

    free(buf);
    spool_free(sp);
    envelope_free(env);
}

/*
 * Scans.
 */
struct scan_count {
    int deferred, hold;
};

static void
scan_cb(void *arg, const char *id, enum queue_where w)
{
    struct scan_count *c = arg;
    assert_true(qid_valid(id));
    if (w == QUEUE_HOLD)
        c->hold++;
    else
        c->deferred++;
}

static void
test_scan(void **state)
{
    struct fixture *f = *state;
    struct scan_count c = {0};
    char id[QID_LEN + 1], path[512];

    assert_int_equal(queue_dir_scan(f->dir, scan_cb, &c), 0);
    for (int i = 0; i < 7; i++) {
        snprintf(id, sizeof(id), "0005F1A2B3C5%02d", i);
        create_simple(f->dir, id, "s@example.com", 1700000000 + i);
        if (i >= 5)
            assert_int_equal(queue_file_hold(f->dir, id), 0);
    }
    /* Not queue files: skipped. */
    const char *junk[] = {"junk", "0005f1a2b3c500", "0005F1A2B3C5000", ".0005F1A2B3C50"};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        snprintf(path, sizeof(path), "%s/deferred/%s", f->dir, junk[i]);
        write_file(path, "x", 1);
    }
    snprintf(path, sizeof(path), "%s/deferred/0005F1A2B3C5FF", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/tmp/0005F1A2B3C5EE", f->dir);
    write_file(path, "x", 1);

    assert_int_equal(queue_dir_scan(f->dir, scan_cb, &c), 7);
    assert_int_equal(c.deferred, 5);
    assert_int_equal(c.hold, 2);
    assert_int_equal(queue_dir_scan(f->dir, NULL, NULL), 7);

    snprintf(path, sizeof(path), "%s/nonexistent", f->dir);
    assert_int_equal(queue_dir_scan(path, NULL, NULL), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_big_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_persists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_release_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cleanup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
