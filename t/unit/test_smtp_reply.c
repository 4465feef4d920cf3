/*
 * test_smtp_reply.c - table-driven unit tests of proxy/smtp_reply.c. Every
 * input is fed in every chunk size from 1 byte to its full length, and
 * each chunking must give the same replies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_reply.h"

#define MAXR 8

struct exp_reply {
    int code;          /* 0 for a malformed reply */
    const char *text;  /* cur.text */
    const char *enh;   /* smtp_reply_enhanced, "" for none */
    const char *first; /* smtp_reply_first_line */
};

struct reply_case {
    const char *input;
    int n; /* complete replies expected */
    struct exp_reply r[MAXR];
};

static const struct reply_case reply_cases[] = {
    {"220 mx.example ESMTP Postfix\r\n",
     1,
     {{220, "220 mx.example ESMTP Postfix", "", "220 mx.example ESMTP Postfix"}}},
    {"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-ENHANCEDSTATUSCODES\r\n250 "
     "8BITMIME\r\n",
     1,
     {{250,
       "250-mx.example\n250-PIPELINING\n250-SIZE 10240000\n250-ENHANCEDSTATUSCODES\n250 8BITMIME",
       "", "250 mx.example"}}},
    {"250\r\n", 1, {{250, "250", "", "250"}}},
    {"250 \r\n", 1, {{250, "250 ", "", "250 "}}},
    {"250 ok\n", 1, {{250, "250 ok", "", "250 ok"}}},
    {"250-a\n250 b\r\n", 1, {{250, "250-a\n250 b", "", "250 a"}}},
    {"250-\r\n250\r\n", 1, {{250, "250-\n250", "", "250 "}}},
    {"354 End data with <CR><LF>.<CR><LF>\r\n",
     1,
     {{354, "354 End data with <CR><LF>.<CR><LF>", "", "354 End data with <CR><LF>.<CR><LF>"}}},
    /* Enhanced status codes. */
    {"250 2.1.0 Ok\r\n", 1, {{250, "250 2.1.0 Ok", "2.1.0", "250 2.1.0 Ok"}}},
    {"250 2.1.0\r\n", 1, {{250, "250 2.1.0", "2.1.0", "250 2.1.0"}}},
    {"451 4.3.0 Error: queue file write error\r\n",
     1,
     {{451, "451 4.3.0 Error: queue file write error", "4.3.0",
       "451 4.3.0 Error: queue file write error"}}},
    {"550-5.7.1 Rejected\r\n550 5.7.1 see https://x\r\n",
     1,
     {{550, "550-5.7.1 Rejected\n550 5.7.1 see https://x", "5.7.1", "550 5.7.1 Rejected"}}},
    {"550-5.7.1\r\n550 more\r\n", 1, {{550, "550-5.7.1\n550 more", "5.7.1", "550 5.7.1"}}},
    {"554 5.123.456 odd\r\n", 1, {{554, "554 5.123.456 odd", "5.123.456", "554 5.123.456 odd"}}},
    {"250 2.1 Ok\r\n", 1, {{250, "250 2.1 Ok", "", "250 2.1 Ok"}}},
    {"250 3.1.0 Ok\r\n", 1, {{250, "250 3.1.0 Ok", "", "250 3.1.0 Ok"}}},
    {"250 2.1000.0 Ok\r\n", 1, {{250, "250 2.1000.0 Ok", "", "250 2.1000.0 Ok"}}},
    {"250 2.1.0000 Ok\r\n", 1, {{250, "250 2.1.0000 Ok", "", "250 2.1.0000 Ok"}}},
    {"250 2.1.0x Ok\r\n", 1, {{250, "250 2.1.0x Ok", "", "250 2.1.0x Ok"}}},
    {"250 2..0 Ok\r\n", 1, {{250, "250 2..0 Ok", "", "250 2..0 Ok"}}},
    {"250 2.a.0 Ok\r\n", 1, {{250, "250 2.a.0 Ok", "", "250 2.a.0 Ok"}}},
    {"250  2.1.0 Ok\r\n", 1, {{250, "250  2.1.0 Ok", "", "250  2.1.0 Ok"}}},
    {"250-ok\r\n250 2.0.0 later\r\n", 1, {{250, "250-ok\n250 2.0.0 later", "", "250 ok"}}},
    /* Several replies in one stream (pipelining). */
    {"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n",
     3,
     {{250, "250 2.1.0 Ok", "2.1.0", "250 2.1.0 Ok"},
      {250, "250 2.1.5 Ok", "2.1.5", "250 2.1.5 Ok"},
      {354, "354 go", "", "354 go"}}},
    {"250-a\r\n250 b\r\n221-c\n221 d\n",
     2,
     {{250, "250-a\n250 b", "", "250 a"}, {221, "221-c\n221 d", "", "221 c"}}},
    /* An incomplete reply at the end is not reported. */
    {"250-a\r\n250 b", 0, {{0}}},
    {"250 ok\r\n251 partial", 1, {{250, "250 ok", "", "250 ok"}}},
    {"250 ok\r\n251-x\r\n", 1, {{250, "250 ok", "", "250 ok"}}},
    /* Malformed replies: code 0, and parsing goes on with the next line. */
    {"abc\r\n", 1, {{0, "abc", "", "abc"}}},
    {"\r\n", 1, {{0, "", "", ""}}},
    {"\n", 1, {{0, "", "", ""}}},
    {"25\r\n", 1, {{0, "25", "", "25"}}},
    {"25x ok\r\n", 1, {{0, "25x ok", "", "25x ok"}}},
    {"2500 x\r\n", 1, {{0, "2500 x", "", "2500 x"}}},
    {"250x\r\n", 1, {{0, "250x", "", "250x"}}},
    {"650 x\r\n", 1, {{0, "650 x", "", "650 x"}}},
    {"150 x\r\n", 1, {{0, "150 x", "", "150 x"}}},
    {"270 x\r\n", 1, {{0, "270 x", "", "270 x"}}},
    {" 250 x\r\n", 1, {{0, " 250 x", "", " 250 x"}}},
    {"250-a\r\n251 b\r\n", 1, {{0, "250-a\n251 b", "", "250 a"}}},
    {"250-a\r\n251-b\r\n250 c\r\n",
     2,
     {{0, "250-a\n251-b", "", "250 a"}, {250, "250 c", "", "250 c"}}},
    {"xyz\r\n250 ok\r\n", 2, {{0, "xyz", "", "xyz"}, {250, "250 ok", "", "250 ok"}}},
    {"250-a\r\n2x0 b\r\n250 c\r\n",
     2,
     {{0, "250-a\n2x0 b", "", "250 a"}, {250, "250 c", "", "250 c"}}},
};

struct got {
    int n;
    struct smtp_reply r[MAXR];
    int error[MAXR];
};

/* Feed input in chunks of k bytes; every reply completed is copied to g. */
static void
feed_chunked(const char *in, size_t len, size_t k, struct got *g)
{
    struct smtp_reply_parser p;
    smtp_reply_parser_init(&p);
    memset(g, 0, sizeof(*g));
    for (size_t off = 0; off < len; off += k) {
        const char *c = in + off;
        size_t clen = len - off < k ? len - off : k;
        while (clen > 0) {
            int done = -1;
            size_t used = smtp_reply_feed(&p, c, clen, &done);
            assert_true(done == 0 || done == 1);
            assert_true(used > 0 && used <= clen);
            if (!done)
                assert_int_equal(used, clen);
            if (done) {
                assert_true(g->n < MAXR);
                assert_int_equal(p.cur.len, strlen(p.cur.text));
                assert_true(p.cur.len < SMTP_REPLY_MAX);
                assert_int_equal(p.error, p.cur.code == 0);
                g->error[g->n] = p.error;
                g->r[g->n++] = p.cur;
            }
            c += used;
            clen -= used;
        }
    }
}

static void
check_reply(size_t i, size_t k, int j, const struct smtp_reply *r, const struct exp_reply *e)
{
    char enh[32], first[SMTP_REPLY_MAX];
    int ne = smtp_reply_enhanced(r, enh, sizeof(enh));
    smtp_reply_first_line(r, first, sizeof(first));
    if (r->code != e->code || strcmp(r->text, e->text) != 0 || strcmp(enh, e->enh) != 0 ||
        ne != (int)strlen(e->enh) || strcmp(first, e->first) != 0)
        fail_msg("case %zu chunk %zu reply %d: code %d text \"%s\" enh \"%s\" (%d) first \"%s\"; "
                 "want %d \"%s\" \"%s\" \"%s\"",
                 i, k, j, r->code, r->text, enh, ne, first, e->code, e->text, e->enh, e->first);
}

static void
test_reply_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++) {
        const struct reply_case *t = &reply_cases[i];
        size_t len = strlen(t->input);
        for (size_t k = 1; k <= len; k++) {
            struct got g;
            feed_chunked(t->input, len, k, &g);
            if (g.n != t->n)
                fail_msg("case %zu chunk %zu: %d replies, want %d", i, k, g.n, t->n);
            for (int j = 0; j < g.n; j++)
                check_reply(i, k, j, &g.r[j], &t->r[j]);
        }
    }
}

/* Feed returns after one reply; cur is kept until the next reply's first byte. */
static void
test_reply_boundaries(void **state)
{
    (void)state;
    struct smtp_reply_parser p;
    int done = -1;
    const char *in = "250 a\r\n354 b\r\n";

    smtp_reply_parser_init(&p);
    assert_int_equal(smtp_reply_feed(&p, in, strlen(in), &done), 7);
    assert_int_equal(done, 1);
    assert_int_equal(p.cur.code, 250);
    assert_string_equal(p.cur.text, "250 a");
    /* Nothing fed: nothing changes. */
    assert_int_equal(smtp_reply_feed(&p, in + 7, 0, &done), 0);
    assert_int_equal(done, 0);
    assert_int_equal(p.cur.code, 250);
    assert_string_equal(p.cur.text, "250 a");
    /* First byte of the next reply resets cur. */
    assert_int_equal(smtp_reply_feed(&p, in + 7, 1, &done), 1);
    assert_int_equal(done, 0);
    assert_int_equal(p.cur.code, 0);
    assert_int_equal(p.cur.len, 0);
    assert_string_equal(p.cur.text, "");
    assert_int_equal(smtp_reply_feed(&p, in + 8, 6, &done), 6);
    assert_int_equal(done, 1);
    assert_int_equal(p.cur.code, 354);
    assert_string_equal(p.cur.text, "354 b");

    /* An error is cleared by the next reply. */
    assert_int_equal(smtp_reply_feed(&p, "bad\r\n250 ok\r\n", 13, &done), 5);
    assert_int_equal(done, 1);
    assert_int_equal(p.error, 1);
    assert_int_equal(p.cur.code, 0);
    assert_int_equal(smtp_reply_feed(&p, "250 ok\r\n", 8, &done), 8);
    assert_int_equal(done, 1);
    assert_int_equal(p.error, 0);
    assert_int_equal(p.cur.code, 250);
}

/* A line longer than the line buffer is truncated and the rest consumed. */
static void
test_reply_long_line(void **state)
{
    (void)state;
    struct smtp_reply_parser p0;
    const size_t linemax = sizeof(p0.line);
    size_t len = 0;
    char *in = malloc(8192), *want = malloc(8192);
    assert_non_null(in);
    assert_non_null(want);

    len += (size_t)sprintf(in, "250 ");
    memset(in + len, 'x', 3000);
    len += 3000;
    len += (size_t)sprintf(in + len, "\r\n251 next\r\n");
    memcpy(want, in, linemax);
    want[linemax] = '\0';

    size_t ks[] = {1, 2, 3, 7, 1023, 1024, 1025, 4096, len};
    for (size_t m = 0; m < sizeof(ks) / sizeof(ks[0]); m++) {
        struct got g;
        feed_chunked(in, len, ks[m], &g);
        assert_int_equal(g.n, 2);
        assert_int_equal(g.r[0].code, 250);
        assert_int_equal(g.r[0].len, linemax);
        assert_string_equal(g.r[0].text, want);
        assert_int_equal(g.r[1].code, 251);
        assert_string_equal(g.r[1].text, "251 next");
    }
    /* Exactly the line buffer with CRLF: nothing is lost. */
    len = (size_t)sprintf(in, "250 ");
    memset(in + len, 'y', linemax - 5);
    len += linemax - 5;
    len += (size_t)sprintf(in + len, "\r\n");
    for (size_t k = 1; k <= len; k += 97) {
        struct got g;
        feed_chunked(in, len, k, &g);
        assert_int_equal(g.n, 1);
        assert_int_equal(g.r[0].len, linemax - 1);
        assert_memory_equal(g.r[0].text, in, linemax - 1);
    }
    free(in);
    free(want);
}

/* A reply longer than SMTP_REPLY_MAX is truncated, never overflows. */
static void
test_reply_long_reply(void **state)
{
    (void)state;
    size_t cap = 64 * 1024, len = 0, wlen = 0;
    char *in = malloc(cap), *want = malloc(cap);
    assert_non_null(in);
    assert_non_null(want);
    for (int i = 0; i < 200; i++) {
        len += (size_t)snprintf(in + len, cap - len, "250-line %03d %s\r\n", i,
                                "abcdefghijklmnopqrstuvwxyz0123456789");
        wlen += (size_t)snprintf(want + wlen, cap - wlen, "%s250-line %03d %s", i ? "\n" : "", i,
                                 "abcdefghijklmnopqrstuvwxyz0123456789");
    }
    len += (size_t)snprintf(in + len, cap - len, "250 end\r\n220 again\r\n");
    assert_true(wlen > SMTP_REPLY_MAX);
    want[SMTP_REPLY_MAX - 1] = '\0';

    size_t ks[] = {1, 2, 5, 13, 64, 1000, 4095, 4096, 4097, len};
    for (size_t m = 0; m < sizeof(ks) / sizeof(ks[0]); m++) {
        struct got g;
        feed_chunked(in, len, ks[m], &g);
        assert_int_equal(g.n, 2);
        assert_int_equal(g.r[0].code, 250);
        assert_int_equal(g.r[0].len, SMTP_REPLY_MAX - 1);
        assert_string_equal(g.r[0].text, want);
        assert_int_equal(g.r[1].code, 220);
        assert_string_equal(g.r[1].text, "220 again");
    }
    free(in);
    free(want);
}

/* Output buffers too small for the answer. */
static void
test_reply_small_out(void **state)
{
    (void)state;
    struct smtp_reply r = {.code = 250, .text = "250-2.1.0 Ok there\n250 done", .len = 27};
    char out[16];

    assert_int_equal(smtp_reply_enhanced(&r, out, 6), 5);
    assert_string_equal(out, "2.1.0");
    memset(out, 'Q', sizeof(out));
    assert_int_equal(smtp_reply_enhanced(&r, out, 5), 0);
    assert_string_equal(out, "");

    smtp_reply_first_line(&r, out, sizeof(out));
    assert_string_equal(out, "250 2.1.0 Ok th");
    smtp_reply_first_line(&r, out, 4);
    assert_string_equal(out, "250");
    smtp_reply_first_line(&r, out, 1);
    assert_string_equal(out, "");
    out[0] = 'Q';
    smtp_reply_first_line(&r, out, 0);
    assert_int_equal(out[0], 'Q');

    /* An empty reply (parser just initialized). */
    struct smtp_reply_parser p;
    smtp_reply_parser_init(&p);
    assert_int_equal(smtp_reply_enhanced(&p.cur, out, sizeof(out)), 0);
    smtp_reply_first_line(&p.cur, out, sizeof(out));
    assert_string_equal(out, "");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_table),     cmocka_unit_test(test_reply_boundaries),
        cmocka_unit_test(test_reply_long_line), cmocka_unit_test(test_reply_long_reply),
        cmocka_unit_test(test_reply_small_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
