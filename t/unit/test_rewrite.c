/*
 * test_rewrite.c - prepended header lines and stripped parts. Each strip
 * result is parsed again (mime.c): the structure must stay valid, the
 * stripped part must be the text/plain notice, every other part must
 * decode to the same bytes, and every byte outside the replaced ranges
 * must be identical.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mime.h"
#include "rewrite.h"
#include "spool.h"

#ifndef SR_CORPUS_DIR
#error "SR_CORPUS_DIR must point at t/corpus/mime"
#endif

#define U_SEIKYUSHO "\xe8\xab\x8b\xe6\xb1\x82\xe6\x9b\xb8"

struct part {
    char *path, *filename, *content_type;
    unsigned char *data;
    size_t len;
    int64_t raw_begin, raw_end;
};

struct parts {
    struct part v[6000];
    int n;
};

static int
collect(void *arg, const struct mime_part_info *pi)
{
    struct parts *ps = arg;
    struct part *p = &ps->v[ps->n++];

    assert_true(ps->n < 6000);
    p->path = strdup(pi->path);
    p->filename = pi->filename ? strdup(pi->filename) : NULL;
    p->content_type = strdup(pi->content_type);
    p->data = malloc(pi->len + 1);
    memcpy(p->data, pi->data, pi->len);
    p->len = pi->len;
    p->raw_begin = pi->raw_begin;
    p->raw_end = pi->raw_end;
    return 0;
}

static void
parts_free(struct parts *ps)
{
    for (int i = 0; i < ps->n; i++) {
        free(ps->v[i].path);
        free(ps->v[i].filename);
        free(ps->v[i].content_type);
        free(ps->v[i].data);
    }
    ps->n = 0;
}

static struct parts *
walk_mem(const char *buf, size_t len)
{
    struct parts *ps = calloc(1, sizeof(*ps));
    char err[128];
    struct mime_msg *m = mime_parse_mem(buf, len, 0, 0, err, sizeof(err));

    assert_non_null(ps);
    assert_non_null(m);
    assert_int_equal(mime_walk(m, collect, ps), 0);
    assert_int_equal(mime_limits_hit(m), 0);
    mime_free(m);
    return ps;
}

static void
walk_free(struct parts *ps)
{
    parts_free(ps);
    free(ps);
}

static char *
load(const char *name, size_t *len)
{
    char path[512];
    FILE *f;
    char *buf;
    long n;

    snprintf(path, sizeof(path), "%s/%s", SR_CORPUS_DIR, name);
    f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s (run t/corpus/mime/make-corpus.py)", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int
count_occ(const char *hay, size_t len, const char *needle)
{
    size_t nl = strlen(needle);
    int n = 0;

    for (const char *p = hay; (p = memmem(p, len - (size_t)(p - hay), needle, nl)) != NULL; p++)
        n++;
    return n;
}

/* Output to an unnamed temporary file; returns its contents. */
static char *
run_to_fd(const struct rewrite_io *in, const char *const *lines, size_t nlines,
          const struct rewrite_strip_part *sp, size_t nsp, size_t *outlen, int *rc, int *err)
{
    char tmpl[] = "/tmp/test_rewrite.XXXXXX";
    int fd = mkstemp(tmpl);
    struct rewrite_io out = rewrite_io_fd(fd);
    char *buf;
    off_t n;

    assert_true(fd >= 0);
    unlink(tmpl);
    errno = 0;
    *rc = rewrite_message(in, lines, nlines, sp, nsp, &out);
    *err = errno;
    n = lseek(fd, 0, SEEK_END);
    buf = malloc((size_t)n + 1);
    assert_int_equal(pread(fd, buf, (size_t)n, 0), n);
    buf[n] = '\0';
    close(fd);
    *outlen = (size_t)n;
    return buf;
}

/*
 * Prepend.
 */

static void
test_prepend_crlf_and_lf(void **state)
{
    const char *lines[] = {"X-Virus-Scanned: scanrelay 0.1.0 (ClamAV 1.0.0/27000)",
                           "X-Virus-Status: Clean"};
    struct rewrite_io in;
    size_t len, olen;
    char *raw, *out;
    int rc, err;
    (void)state;

    raw = load("nomime.eml", &len);
    in = rewrite_io_mem(raw, len);
    out = run_to_fd(&in, lines, 2, NULL, 0, &olen, &rc, &err);
    assert_int_equal(rc, 0);
    static const char want[] = "X-Virus-Scanned: scanrelay 0.1.0 (ClamAV 1.0.0/27000)\r\n"
                               "X-Virus-Status: Clean\r\n";
    assert_int_equal(olen, strlen(want) + len);
    assert_memory_equal(out, want, strlen(want));
    assert_memory_equal(out + strlen(want), raw, len);
    free(out);
    free(raw);

    /* LF message: LF header lines. Source is a file descriptor this time. */
    char path[512];
    snprintf(path, sizeof(path), "%s/lf-only.eml", SR_CORPUS_DIR);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    raw = load("lf-only.eml", &len);
    in = rewrite_io_fd(fd);
    out = run_to_fd(&in, lines + 1, 1, NULL, 0, &olen, &rc, &err);
    close(fd);
    assert_int_equal(rc, 0);
    assert_int_equal(olen, strlen("X-Virus-Status: Clean\n") + len);
    assert_memory_equal(out, "X-Virus-Status: Clean\nFrom: ", 28);
    free(out);
    free(raw);
}

static void
test_prepend_refuses_injection(void **state)
{
    const char *bad[] = {"X-Virus-Status: Clean\r\nBcc: victim@example.org"};
    struct rewrite_io in = rewrite_io_mem("a: b\r\n\r\nx", 9);
    struct rewrite_io out = rewrite_io_fd(-1);
    (void)state;

    errno = 0;
    assert_int_equal(rewrite_prepend(&in, bad, 1, &out), -1);
    assert_int_equal(errno, EINVAL);
}

static void
test_prepend_spool_to_spool(void **state)
{
    const char *lines[] = {"X-Virus-Scanned: yes"};
    struct spool *src = spool_new(1024, "/tmp"), *dst = spool_new(100, "/tmp");
    struct rewrite_io in = rewrite_io_spool(src), out = rewrite_io_spool(dst);
    size_t len;
    char *raw = load("encodings.eml", &len), *back;
    (void)state;

    assert_non_null(src);
    assert_non_null(dst);
    assert_int_equal(spool_write(src, raw, len), 0); /* spills to a file past 1 kB */
    assert_int_equal(rewrite_prepend(&in, lines, 1, &out), 0);
    assert_int_equal(spool_size(dst), (off_t)(len + 22));
    back = malloc(len + 22);
    assert_int_equal(spool_pread(dst, back, len + 22, 0), (ssize_t)(len + 22));
    assert_memory_equal(back, "X-Virus-Scanned: yes\r\n", 22);
    assert_memory_equal(back + 22, raw, len);
    free(back);
    free(raw);
    spool_free(src);
    spool_free(dst);
}

/*
 * Strip.
 */

/*
 * Strip the parts whose paths are listed; check the result: same number of
 * parts, the stripped ones are notices, all others decode identically,
 * and the bytes outside the replaced ranges are unchanged.
 */
static void
strip_and_check(const char *file, const char *const *paths, size_t npaths, const char *reason)
{
    struct rewrite_strip_part sp[16];
    size_t len, olen;
    char *raw = load(file, &len), *out;
    struct parts *before = walk_mem(raw, len), *after;
    struct rewrite_io in = rewrite_io_mem(raw, len);
    int rc, err, stripped[6000] = {0};

    for (size_t k = 0; k < npaths; k++) {
        int found = 0;
        for (int i = 0; i < before->n; i++) {
            if (strcmp(before->v[i].path, paths[k]) == 0) {
                sp[k].raw_begin = before->v[i].raw_begin;
                sp[k].raw_end = before->v[i].raw_end;
                sp[k].filename = before->v[i].filename;
                sp[k].reason = reason;
                stripped[i] = 1;
                found = 1;
            }
        }
        if (!found)
            fail_msg("no part %s in %s", paths[k], file);
    }
    out = run_to_fd(&in, NULL, 0, sp, npaths, &olen, &rc, &err);
    assert_int_equal(rc, 0);

    /* The bytes outside the ranges: the prefix, and (for one range) the suffix. */
    int64_t first = sp[0].raw_begin, last_end = sp[0].raw_end;
    for (size_t k = 1; k < npaths; k++) {
        if (sp[k].raw_begin < first)
            first = sp[k].raw_begin;
        if (sp[k].raw_end > last_end)
            last_end = sp[k].raw_end;
    }
    assert_memory_equal(out, raw, (size_t)first);
    assert_true(olen >= len - (size_t)last_end);
    assert_memory_equal(out + olen - (len - (size_t)last_end), raw + last_end,
                        len - (size_t)last_end);

    /* Parse again. */
    after = walk_mem(out, olen);
    int embedded_gone = 0;
    for (int i = 0; i < before->n; i++)
        if (stripped[i] && i > 0 && before->v[i].raw_begin == before->v[i - 1].raw_begin)
            embedded_gone++; /* an embedded block shares the text part's range */
    assert_int_equal(after->n, before->n - embedded_gone);
    for (int i = 0, j = 0; i < before->n; i++) {
        if (stripped[i] && i > 0 && before->v[i].raw_begin == before->v[i - 1].raw_begin)
            continue;
        struct part *a = &before->v[i], *b = &after->v[j++];
        int is_stripped = stripped[i] || (i + 1 < before->n && stripped[i + 1] &&
                                          before->v[i + 1].raw_begin == a->raw_begin);
        if (is_stripped) {
            char want[512];
            assert_string_equal(b->content_type, "text/plain");
            assert_null(b->filename);
            const char *name = stripped[i] ? a->filename : before->v[i + 1].filename;
            snprintf(want, sizeof(want), "scanrelay removed the attachment \"%s\": %s.",
                     name ? name : "(unnamed)", reason);
            if (b->len < strlen(want) || memcmp(b->data, want, strlen(want)) != 0)
                fail_msg("notice \"%.*s\", want \"%s\"", (int)b->len, b->data, want);
            /* Exactly our Content-* fields: the old ones are gone. */
            size_t rl = (size_t)(b->raw_end - b->raw_begin);
            const char *r = out + b->raw_begin;
            assert_int_equal(count_occ(r, rl, "Content-"), 3);
            assert_int_equal(count_occ(r, rl, "Content-Type: text/plain; charset=utf-8"), 1);
            assert_int_equal(count_occ(r, rl, "Content-Disposition: inline"), 1);
            assert_true(b->raw_end - b->raw_begin < 400);
        } else {
            assert_string_equal(a->path, b->path);
            assert_string_equal(a->content_type, b->content_type);
            assert_int_equal(a->len, b->len);
            assert_memory_equal(a->data, b->data, a->len);
            /* Unchanged parts are byte-identical in the raw output too. */
            assert_int_equal(a->raw_end - a->raw_begin, b->raw_end - b->raw_begin);
            assert_memory_equal(raw + a->raw_begin, out + b->raw_begin,
                                (size_t)(a->raw_end - a->raw_begin));
        }
    }
    walk_free(before);
    walk_free(after);
    free(out);
    free(raw);
}

static void
test_strip_base64_part(void **state)
{
    const char *p[] = {"b64.bin"};
    (void)state;
    strip_and_check("encodings.eml", p, 1, "infected: Win.Test.EICAR");
}

static void
test_strip_last_and_first(void **state)
{
    const char *p[] = {"plain.bin", "qp.txt", "uu.bin"};
    (void)state;
    strip_and_check("encodings.eml", p, 3, "infected: Win.Test.EICAR");
    strip_and_check("lf-only.eml", p, 3, "infected: Win.Test.EICAR");
}

static void
test_strip_embedded_uu(void **state)
{
    const char *p[] = {"inline.bin"};
    (void)state;
    strip_and_check("encodings.eml", p, 1, "infected: Win.Test.EICAR");
}

static void
test_strip_japanese_name(void **state)
{
    const char *p[] = {U_SEIKYUSHO ".zip"};
    size_t len, olen;
    char *raw, *out;
    struct parts *ps, *after;
    struct rewrite_strip_part sp;
    struct rewrite_io in;
    int rc, err;
    (void)state;

    strip_and_check("jp-iso2022-b.eml", p, 1, "encrypted archive");

    /* The notice is 7-bit on the wire (quoted-printable). */
    raw = load("jp-sjis-q.eml", &len);
    ps = walk_mem(raw, len);
    sp.raw_begin = ps->v[1].raw_begin;
    sp.raw_end = ps->v[1].raw_end;
    sp.filename = ps->v[1].filename;
    sp.reason = "infected: Win.Test.EICAR";
    in = rewrite_io_mem(raw, len);
    out = run_to_fd(&in, NULL, 0, &sp, 1, &olen, &rc, &err);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "Content-Transfer-Encoding: quoted-printable\r\n"));
    for (size_t i = 0; i < olen; i++)
        if ((unsigned char)out[i] >= 0x80)
            fail_msg("8-bit byte at %zu", i);
    after = walk_mem(out, olen);
    assert_int_equal(after->n, 2);
    static const char want[] =
        "scanrelay removed the attachment \"" U_SEIKYUSHO ".zip\": infected: Win.Test.EICAR.";
    assert_int_equal(after->v[1].len, strlen(want));
    assert_memory_equal(after->v[1].data, want, strlen(want));
    walk_free(ps);
    walk_free(after);
    free(out);
    free(raw);
}

static void
test_strip_nested(void **state)
{
    const char *p[] = {"forwarded.eml/part 2.2/third.eml/invoice.zip"};
    (void)state;
    strip_and_check("nested3.eml", p, 1, "infected: Win.Test.EICAR");
}

/* A part inside a base64-encoded message/rfc822: the whole encoded part goes. */
static void
test_strip_inside_encoded_message(void **state)
{
    size_t len, olen;
    char *raw = load("encoded-rfc822.eml", &len), *out;
    struct parts *ps = walk_mem(raw, len), *after;
    struct rewrite_strip_part sp = {0};
    struct rewrite_io in = rewrite_io_mem(raw, len);
    int rc, err;
    (void)state;

    assert_int_equal(ps->n, 4);
    assert_string_equal(ps->v[3].path, "fwd.eml/inner.zip");
    sp.raw_begin = ps->v[3].raw_begin;
    sp.raw_end = ps->v[3].raw_end;
    sp.filename = ps->v[3].filename;
    sp.reason = "infected: Win.Test.EICAR";
    out = run_to_fd(&in, NULL, 0, &sp, 1, &olen, &rc, &err);
    assert_int_equal(rc, 0);
    after = walk_mem(out, olen);
    assert_int_equal(after->n, 2);
    assert_memory_equal(after->v[0].data, "see attached", 12);
    assert_string_equal(after->v[1].content_type, "text/plain");
    assert_non_null(memmem(after->v[1].data, after->v[1].len, "\"inner.zip\"", 11));
    walk_free(ps);
    walk_free(after);
    free(out);
    free(raw);
}

static void
test_strip_many(void **state)
{
    const char *p[] = {"p0.txt", "p1.txt", "p17.txt", "p2500.txt", "p4999.txt"};
    (void)state;
    strip_and_check("parts5000.eml", p, 5, "file name not allowed");
}

static void
test_strip_single_part_message(void **state)
{
    size_t len, olen;
    char *raw = load("single-attach.eml", &len), *out;
    struct parts *ps = walk_mem(raw, len), *after;
    struct rewrite_strip_part sp;
    struct rewrite_io in = rewrite_io_mem(raw, len);
    char err[128];
    int rc, e;
    (void)state;

    assert_int_equal(ps->n, 1);
    assert_int_equal(ps->v[0].raw_begin, 0);
    assert_int_equal(ps->v[0].raw_end, (int64_t)len);
    sp.raw_begin = 0;
    sp.raw_end = (int64_t)len;
    sp.filename = ps->v[0].filename;
    sp.reason = "infected: Win.Test.EICAR";
    out = run_to_fd(&in, NULL, 0, &sp, 1, &olen, &rc, &e);
    assert_int_equal(rc, 0);
    static const char want[] =
        "From: Sender <sender@example.org>\r\n"
        "To: rcpt@example.net\r\n"
        "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        "Subject: single\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Disposition: inline\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n"
        "scanrelay removed the attachment \"only.zip\": infected: Win.Test.EICAR.\r\n";
    if (olen != strlen(want) || memcmp(out, want, olen) != 0)
        fail_msg("got:\n%s", out);

    struct mime_msg *m = mime_parse_mem(out, olen, 0, 0, err, sizeof(err));
    assert_string_equal(mime_subject(m), "single");
    mime_free(m);
    after = walk_mem(out, olen);
    assert_int_equal(after->n, 1);
    assert_string_equal(after->v[0].content_type, "text/plain");
    walk_free(after);
    walk_free(ps);
    free(out);
    free(raw);

    /* No MIME-Version in the original: one is added. */
    const char *plain = "From: a@b\r\nSubject: s\r\n\r\nbody\r\n";
    in = rewrite_io_mem(plain, strlen(plain));
    sp.raw_begin = 0;
    sp.raw_end = (int64_t)strlen(plain);
    sp.filename = NULL;
    sp.reason = "spam";
    out = run_to_fd(&in, NULL, 0, &sp, 1, &olen, &rc, &e);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "From: a@b\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
                             "Content-Type: text/plain; charset=utf-8\r\n"
                             "Content-Disposition: inline\r\n"
                             "Content-Transfer-Encoding: 7bit\r\n\r\n"
                             "scanrelay removed the attachment \"(unnamed)\": spam.\r\n");
    free(out);
}

static void
test_strip_and_prepend_to_spool(void **state)
{
    const char *lines[] = {"X-Virus-Status: Infected (Win.Test.EICAR)"};
    size_t len;
    char *raw = load("encodings.eml", &len), *back;
    struct parts *ps = walk_mem(raw, len), *after;
    struct spool *dst = spool_new(512, "/tmp");
    struct rewrite_io in = rewrite_io_mem(raw, len), out = rewrite_io_spool(dst);
    struct rewrite_strip_part sp = {ps->v[2].raw_begin, ps->v[2].raw_end, ps->v[2].filename,
                                    "infected: Win.Test.EICAR"};
    off_t n;
    (void)state;

    assert_string_equal(ps->v[2].path, "b64.bin");
    assert_int_equal(rewrite_message(&in, lines, 1, &sp, 1, &out), 0);
    n = spool_size(dst);
    back = malloc((size_t)n);
    assert_int_equal(spool_pread(dst, back, (size_t)n, 0), (ssize_t)n);
    assert_memory_equal(back, "X-Virus-Status: Infected (Win.Test.EICAR)\r\nFrom: ", 49);
    after = walk_mem(back, (size_t)n);
    assert_int_equal(after->n, ps->n);
    assert_string_equal(after->v[2].content_type, "text/plain");
    walk_free(after);
    walk_free(ps);
    spool_free(dst);
    free(back);
    free(raw);
}

static void
test_strip_bad_ranges(void **state)
{
    const char *msg = "Subject: x\r\n\r\n0123456789";
    struct rewrite_io in = rewrite_io_mem(msg, strlen(msg));
    struct rewrite_strip_part overlap[2] = {{0, 20, "a", "r"}, {15, 24, "b", "r"}};
    struct rewrite_strip_part outside = {10, 99, "a", "r"};
    struct rewrite_strip_part reversed = {10, 5, "a", "r"};
    struct rewrite_strip_part nested[2] = {{14, 20, "inner", "r"}, {0, 24, "outer", "r"}};
    size_t olen;
    char *out;
    int rc, err;
    (void)state;

    out = run_to_fd(&in, NULL, 0, overlap, 2, &olen, &rc, &err);
    assert_int_equal(rc, -1);
    assert_int_equal(err, EINVAL);
    free(out);
    out = run_to_fd(&in, NULL, 0, &outside, 1, &olen, &rc, &err);
    assert_int_equal(rc, -1);
    assert_int_equal(err, EINVAL);
    free(out);
    out = run_to_fd(&in, NULL, 0, &reversed, 1, &olen, &rc, &err);
    assert_int_equal(rc, -1);
    assert_int_equal(err, EINVAL);
    free(out);

    /* Nested ranges merge into the outer one, a notice line each. */
    out = run_to_fd(&in, NULL, 0, nested, 2, &olen, &rc, &err);
    assert_int_equal(rc, 0);
    assert_non_null(
        strstr(out, "\"outer\": r.\r\nscanrelay removed the attachment \"inner\": r.\r\n"));
    free(out);
}

static void
test_strip_write_error(void **state)
{
    size_t len;
    char *raw = load("encodings.eml", &len);
    struct rewrite_io in = rewrite_io_mem(raw, len), out;
    int fd = open("/dev/full", O_WRONLY);
    (void)state;

    if (fd < 0) {
        free(raw);
        skip();
    }
    out = rewrite_io_fd(fd);
    errno = 0;
    assert_int_equal(rewrite_prepend(&in, NULL, 0, &out), -1);
    assert_int_equal(errno, ENOSPC);
    close(fd);
    free(raw);
}

static int
setup_all(void **state)
{
    (void)state;
    mime_global_init();
    return 0;
}

static int
teardown_all(void **state)
{
    (void)state;
    mime_global_shutdown();
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prepend_crlf_and_lf),
        cmocka_unit_test(test_prepend_refuses_injection),
        cmocka_unit_test(test_prepend_spool_to_spool),
        cmocka_unit_test(test_strip_base64_part),
        cmocka_unit_test(test_strip_last_and_first),
        cmocka_unit_test(test_strip_embedded_uu),
        cmocka_unit_test(test_strip_japanese_name),
        cmocka_unit_test(test_strip_nested),
        cmocka_unit_test(test_strip_inside_encoded_message),
        cmocka_unit_test(test_strip_many),
        cmocka_unit_test(test_strip_single_part_message),
        cmocka_unit_test(test_strip_and_prepend_to_spool),
        cmocka_unit_test(test_strip_bad_ranges),
        cmocka_unit_test(test_strip_write_error),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
