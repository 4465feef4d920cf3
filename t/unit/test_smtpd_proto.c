/*
 * test_smtpd_proto.c - unit tests of the inbound protocol engine
 * (proxy/smtpd_proto.c), driven through smtpd_proto_feed() with fake
 * session ops that record output, body bytes, events and the envelopes
 * handed over at end of data.
 *
 * Every dialogue of the table is fed whole, 1 byte at a time, in 7-byte
 * chunks, in every chunk size up to 40 and in seeded random chunkings; all
 * must give exactly the expected output, body, events and envelopes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "envelope.h"
#include "smtpd_proto.h"

#define HOST "relay.test"
#define GREETING "220 " HOST " ESMTP scanrelay\r\n"
#define EHLO_BASE(size)                                                                            \
    "250-" HOST "\r\n"                                                                             \
    "250-PIPELINING\r\n"                                                                           \
    "250-SIZE " size "\r\n"                                                                        \
    "250-ENHANCEDSTATUSCODES\r\n"                                                                  \
    "250-8BITMIME\r\n"                                                                             \
    "250-DSN\r\n"
#define EHLO_REPLY EHLO_BASE("10000") "250 SMTPUTF8\r\n"
#define EHLO_REPLY_XF                                                                              \
    EHLO_BASE("10000")                                                                             \
    "250-SMTPUTF8\r\n"                                                                             \
    "250 XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE\r\n"
#define OK_MAIL "250 2.1.0 Ok\r\n"
#define OK_RCPT "250 2.1.5 Ok\r\n"
#define OK_GEN "250 2.0.0 Ok\r\n"
#define GO_AHEAD "354 End data with <CR><LF>.<CR><LF>\r\n"
#define BYE "221 2.0.0 Bye\r\n"
#define QUEUED(n) "250 2.0.0 Ok: queued as T" #n "\r\n"
#define TOO_BIG "552 5.3.4 Message size exceeds fixed limit\r\n"
#define UNKNOWN "502 5.5.2 Error: command not recognized\r\n"

/*
 * The fake session.
 */
struct buf {
    char *s;
    size_t len, cap;
};

static void
buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t ncap = (b->len + n + 1) * 2;
        char *ns = realloc(b->s, ncap);
        assert_non_null(ns);
        b->s = ns;
        b->cap = ncap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof(tmp));
    buf_add(b, tmp, (size_t)n);
}

static void
buf_free(struct buf *b)
{
    free(b->s);
    memset(b, 0, sizeof(*b));
}

static const char *
buf_str(const struct buf *b)
{
    return b->s ? b->s : "";
}

struct fake {
    struct smtpd_proto *p;
    struct buf out, body, events, envs;
    int in_data;    /* between data_begin and data_end/abort */
    int fail_begin; /* data_begin returns -1 */
    int fail_errno; /* data_chunk fails with this errno, 0 never */
    int closed;
    int ntx;
    int64_t tx_bytes; /* body bytes of the current transaction */
    size_t body_mark; /* body length at data_begin: an abort drops the rest */
};

static void
f_output(void *arg, const char *s, size_t len)
{
    struct fake *f = arg;
    assert_false(f->closed); /* nothing is said after close */
    buf_add(&f->out, s, len);
}

static int
f_data_begin(void *arg)
{
    struct fake *f = arg;
    buf_add(&f->events, "B", 1);
    assert_false(f->in_data);
    if (f->fail_begin)
        return -1;
    f->tx_bytes = 0;
    f->body_mark = f->body.len;
    f->in_data = 1;
    return 0;
}

static int
f_data_chunk(void *arg, const char *s, size_t len)
{
    struct fake *f = arg;
    assert_true(f->in_data);
    assert_true(len > 0);
    if (f->fail_errno) {
        errno = f->fail_errno;
        return -1;
    }
    buf_add(&f->body, s, len);
    f->tx_bytes += (int64_t)len;
    return 0;
}

/* One line per envelope: everything the relay must carry end to end. */
static void
dump_env(struct buf *b, const struct envelope *env, int64_t size)
{
    char notify[64];
    buf_printf(b, "from=<%s> size=%lld ret=%d body=%d utf8=%d envid=%s", env->sender,
               (long long)size, (int)env->ret, (int)env->body, env->smtputf8,
               env->envid ? env->envid : "-");
    for (size_t i = 0; i < env->nrcpt; i++) {
        dsn_notify_format(env->rcpt[i].notify, notify, sizeof(notify));
        buf_printf(b, " to=<%s>", env->rcpt[i].addr);
        if (env->rcpt[i].notify)
            buf_printf(b, ",notify=%s", notify);
        if (env->rcpt[i].orcpt)
            buf_printf(b, ",orcpt=%s", env->rcpt[i].orcpt);
    }
    for (int i = 0; i < XF_COUNT; i++)
        if (env->xforward[i])
            buf_printf(b, " %s=%s", xf_attr_names[i], env->xforward[i]);
    buf_add(b, "\n", 1);
}

static void
f_data_end(void *arg, struct envelope *env, int64_t size)
{
    struct fake *f = arg;
    buf_add(&f->events, "E", 1);
    assert_true(f->in_data);
    assert_int_equal(f->p->state, SMTPD_S_WAIT);
    assert_int_equal(size, f->tx_bytes);
    f->in_data = 0;
    dump_env(&f->envs, env, size);
    envelope_free(env);
}

static void
f_data_abort(void *arg)
{
    struct fake *f = arg;
    buf_add(&f->events, "A", 1);
    if (f->in_data && f->body.s) {
        f->body.len = f->body_mark;
        f->body.s[f->body.len] = '\0';
    }
    f->in_data = 0;
}

static void
f_close(void *arg)
{
    struct fake *f = arg;
    buf_add(&f->events, "C", 1);
    f->closed = 1;
}

static const struct smtpd_proto_ops fake_ops = {
    .output = f_output,
    .data_begin = f_data_begin,
    .data_chunk = f_data_chunk,
    .data_end = f_data_end,
    .data_abort = f_data_abort,
    .close = f_close,
};

/*
 * Dialogues.
 */
struct dialogue {
    const char *name;
    const char *in;
    size_t inlen;       /* 0: strlen(in) */
    const char *out;    /* everything sent, greeting included */
    const char *body;   /* all data_chunk bytes */
    const char *events; /* B data_begin, E data_end, A data_abort, C close */
    const char *envs;   /* dump_env() lines */
    size_t left;        /* bytes not consumed (after QUIT) */
    /* Limits, 0 for the defaults below. */
    int xforward;
    int64_t max_size;
    size_t max_rcpt, max_cmdlen, max_errors, max_commands;
    int fail_begin, fail_errno;
};

#define D_MAX_SIZE 10000
#define D_MAX_RCPT 100
#define D_MAX_CMDLEN 512
#define D_MAX_ERRORS 20
#define D_MAX_COMMANDS 1000

#define LONG60 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

#define NULIN "EHLO c\r\n\r\nNO\0OP\r\nNOOP\r\nQUIT\r\n"

#define SIZE_HUGE "SIZE=123456789012345678901234567890"
#define BAD_SIZE "555 5.5.4 Unsupported option: SIZE\r\n"

static struct dialogue dialogues[] = {
    {.name = "quit", .in = "QUIT\r\n", .out = GREETING BYE, .events = "C"},
    {.name = "quit stops input",
     .in = "QUIT\r\nNOOP\r\n",
     .out = GREETING BYE,
     .events = "C",
     .left = 6},
    {.name = "ehlo",
     .in = "EHLO client.test\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY BYE,
     .events = "C"},
    {.name = "ehlo xforward allowed",
     .in = "ehlo client.test\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY_XF BYE,
     .events = "C",
     .xforward = 1},
    {.name = "helo",
     .in = "HELO client.test\r\nHELO\r\nEHLO\r\nQUIT\r\n",
     .out = GREETING "250 " HOST "\r\n"
                     "501 5.5.4 Syntax: HELO hostname\r\n"
                     "501 5.5.4 Syntax: EHLO hostname\r\n" BYE,
     .events = "C"},
    {.name = "bare LF lines",
     .in = "EHLO c\nNOOP\nQUIT\n",
     .out = GREETING EHLO_REPLY OK_GEN BYE,
     .events = "C"},
    {.name = "no smuggling: only CRLF.CRLF ends the data",
     .in = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n"
           "one\n.\nMAIL FROM:<evil@x>\r\n"
           "two\r\n.\nthree\n.\r\n"
           "four\r\n.\r\n"
           "QUIT\r\n",
     .out = GREETING EHLO_REPLY OK_MAIL OK_RCPT GO_AHEAD QUEUED(1) BYE,
     .body = "one\n.\nMAIL FROM:<evil@x>\r\ntwo\r\n\nthree\n.\r\nfour\r\n",
     .events = "BEC",
     .envs = "from=<a@x> size=47 ret=0 body=0 utf8=0 envid=- to=<b@y>\n"},
    {.name = "pipelined transaction",
     .in = "EHLO client.test\r\n"
           "MAIL FROM:<a@x.test> SIZE=100\r\n"
           "RCPT TO:<b@y.test>\r\n"
           "RCPT TO:<c@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c@y.test\r\n"
           "DATA\r\n"
           "Subject: hi\r\n\r\nbody\r\n.\r\n"
           "QUIT\r\n",
     .out = GREETING EHLO_REPLY OK_MAIL OK_RCPT OK_RCPT GO_AHEAD QUEUED(1) BYE,
     .body = "Subject: hi\r\n\r\nbody\r\n",
     .events = "BEC",
     .envs = "from=<a@x.test> size=21 ret=0 body=0 utf8=0 envid=- to=<b@y.test> "
             "to=<c@y.test>,notify=SUCCESS,FAILURE,orcpt=rfc822;c@y.test\n"},
    {.name = "two transactions",
     .in = "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@y>\r\nDATA\r\none\r\n.\r\n"
           "MAIL FROM:<a@x>\r\nRCPT TO:<c@y>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY OK_MAIL OK_RCPT GO_AHEAD QUEUED(1)
         OK_MAIL OK_RCPT GO_AHEAD QUEUED(2) BYE,
     .body = "one\r\ntwo\r\n",
     .events = "BEBEC",
     .envs = "from=<> size=5 ret=0 body=0 utf8=0 envid=- to=<b@y>\n"
             "from=<a@x> size=5 ret=0 body=0 utf8=0 envid=- to=<c@y>\n"},
    {.name = "dot unstuffing",
     .in = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n"
           "..x\r\n...\r\n..\r\na.b\r\n. \r\n.\rz\r\nend.\r\n.line\r\n\r\n.\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY OK_MAIL OK_RCPT GO_AHEAD QUEUED(1) BYE,
     .body = ".x\r\n..\r\n.\r\na.b\r\n \r\n\rz\r\nend.\r\nline\r\n\r\n",
     .events = "BEC",
     .envs = "from=<a@x> size=37 ret=0 body=0 utf8=0 envid=- to=<b@y>\n"},
    {.name = "empty body",
     .in = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n.\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY OK_MAIL OK_RCPT GO_AHEAD QUEUED(1) BYE,
     .body = "",
     .events = "BEC",
     .envs = "from=<a@x> size=0 ret=0 body=0 utf8=0 envid=- to=<b@y>\n"},
    {.name = "commands after the dot wait for the verdict",
     .in = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nx\r\n.\r\nNOOP\r\nRSET\r\n"
           "QUIT\r\n",
     .out = GREETING EHLO_REPLY OK_MAIL OK_RCPT GO_AHEAD QUEUED(1) OK_GEN OK_GEN BYE,
     .body = "x\r\n",
     .events = "BEC",
     .envs = "from=<a@x> size=3 ret=0 body=0 utf8=0 envid=- to=<b@y>\n"},
    {.name = "size limit exact",
     .in = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n"
           "0123456789012345678901234567890123456789012345\r\n.\r\nQUIT\r\n",
     .out = GREETING EHLO_BASE("48") "250 SMTPUTF8\r\n" OK_MAIL OK_RCPT GO_AHEAD QUEUED(1) BYE,
     .body = "0123456789012345678901234567890123456789012345\r\n",
     .events = "BEC",
     .envs = "from=<a@x> size=48 ret=0 body=0 utf8=0 envid=- to=<b@y>\n",
     .max_size = 48},
    {.name = "size limit exceeded",
     .in = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n"
           "0123456789012345678901234567890123456789012345\r\n"
           "0123456789012345678901234567890123456789012345\r\n.\r\n"
           "MAIL FROM:<a@x>\r\nQUIT\r\n",
     .out =
         GREETING EHLO_BASE("47") "250 SMTPUTF8\r\n" OK_MAIL OK_RCPT GO_AHEAD TOO_BIG OK_MAIL BYE,
     .events = "BAC",
     .max_size = 47},
    {.name = "MAIL SIZE= over the limit",
     .in = "EHLO c\r\nMAIL FROM:<a@x> SIZE=10001\r\nMAIL FROM:<a@x> SIZE=10000\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY TOO_BIG OK_MAIL BYE,
     .events = "C"},
    /*
     * SIZE without '=' or without a value is a bad parameter (555, counted as
     * an error), whatever bytes an earlier, longer line left in the buffer
     * and however the bytes were chunked; only a well-formed SIZE=digits
     * beyond int64 is "too big" (552, not an error). max_errors 3: the third
     * 555 ends the session, so each one must be counted.
     */
    {.name = "MAIL SIZE without '=' or value: 555, counted",
     .in = "EHLO c\r\nMAIL FROM:<a@x> " SIZE_HUGE "\r\nMAIL FROM:<a@x> SIZE 123\r\n"
           "MAIL FROM:<a@x> " SIZE_HUGE "\r\nMAIL FROM:<a@x> SIZE\r\n"
           "MAIL FROM:<a@x> SIZE=1 SIZE=2\r\nNOOP\r\n",
     .out = GREETING EHLO_REPLY TOO_BIG BAD_SIZE TOO_BIG BAD_SIZE BAD_SIZE
     "421 4.7.0 " HOST " Error: too many errors\r\n",
     .events = "C",
     .left = 6,
     .max_errors = 3},
    {.name = "MAIL SIZE alone after a longer line",
     .in = "EHLO c\r\nNOOP xxxxxxxxxxxxxxxx12345678901234567890123\r\n"
           "MAIL FROM:<a@x> SIZE\r\nMAIL FROM:<a@x> SIZE \r\nMAIL FROM:<a@x> SIZE=\r\n"
           "MAIL FROM:<a@x> SIZE=99999999999999999999999\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY OK_GEN BAD_SIZE BAD_SIZE BAD_SIZE TOO_BIG BYE,
     .events = "C"},
    {.name = "too many recipients",
     .in = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b1@y>\r\nRCPT TO:<b2@y>\r\nRCPT TO:<b3@y>\r\n"
           "DATA\r\nx\r\n.\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY OK_MAIL OK_RCPT OK_RCPT
     "452 4.5.3 Error: too many recipients\r\n" GO_AHEAD QUEUED(1) BYE,
     .body = "x\r\n",
     .events = "BEC",
     .envs = "from=<a@x> size=3 ret=0 body=0 utf8=0 envid=- to=<b1@y> to=<b2@y>\n",
     .max_rcpt = 2},
    {.name = "unknown command, session continues",
     .in = "EHLO c\r\nFOO bar\r\nDATAX\r\nNOOP\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY UNKNOWN UNKNOWN OK_GEN BYE,
     .events = "C"},
    {.name = "unimplemented commands",
     .in = "EHLO c\r\nSTARTTLS\r\nAUTH PLAIN\r\nBDAT 10 LAST\r\nNOOP\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY "502 5.5.1 Error: command not implemented\r\n"
                                "502 5.5.1 Error: command not implemented\r\n"
                                "502 5.5.1 Error: command not implemented\r\n" OK_GEN BYE,
     .events = "C"},
    {.name = "over-long command line",
     .in = "EHLO c\r\nNOOP " LONG60 "\r\nNOOP\r\nNOOP " LONG60 LONG60 "\nQUIT\r\n",
     .out = GREETING EHLO_REPLY "500 5.5.2 Error: command line too long\r\n" OK_GEN
                                "500 5.5.2 Error: command line too long\r\n" BYE,
     .events = "C",
     .max_cmdlen = 32},
    {.name = "empty line and NUL",
     .in = NULIN,
     .inlen = sizeof(NULIN) - 1,
     .out = GREETING EHLO_REPLY "500 5.5.2 Error: bad syntax\r\n"
                                "500 5.5.2 Error: bad syntax\r\n" OK_GEN BYE,
     .events = "C"},
    {.name = "RSET",
     .in = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRSET\r\nRCPT TO:<b@y>\r\nDATA\r\n"
           "MAIL FROM:<c@x>\r\nRCPT TO:<d@y>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY OK_MAIL OK_RCPT OK_GEN
     "503 5.5.1 Error: need MAIL command\r\n"
     "503 5.5.1 Error: need RCPT command\r\n" OK_MAIL OK_RCPT GO_AHEAD QUEUED(1) BYE,
     .body = "x\r\n",
     .events = "BEC",
     .envs = "from=<c@x> size=3 ret=0 body=0 utf8=0 envid=- to=<d@y>\n"},
    {.name = "NOOP VRFY HELP",
     .in = "EHLO c\r\nNOOP\r\nVRFY postmaster\r\nVRFY\r\nHELP\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY OK_GEN
     "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n"
     "501 5.5.4 Syntax: VRFY address\r\n"
     "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY XFORWARD\r\n" BYE,
     .events = "C"},
    {.name = "sequence errors",
     .in = "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nEHLO c\r\nDATA\r\nRCPT TO:<b@y>\r\n"
           "MAIL FROM:<a@x>\r\nMAIL FROM:<a@x>\r\nDATA\r\nDATA x\r\nQUIT\r\n",
     .out = GREETING
     "503 5.5.1 Error: send HELO/EHLO first\r\n"
     "503 5.5.1 Error: need MAIL command\r\n"
     "503 5.5.1 Error: send HELO/EHLO first\r\n" EHLO_REPLY "503 5.5.1 Error: need RCPT command\r\n"
     "503 5.5.1 Error: need MAIL command\r\n" OK_MAIL "503 5.5.1 Error: nested MAIL command\r\n"
     "554 5.5.1 Error: no valid recipients\r\n"
     "501 5.5.4 Syntax: DATA\r\n" BYE,
     .events = "C"},
    {.name = "path syntax and parameters",
     .in = "EHLO c\r\nMAIL FROM:<a@x\r\nMAIL FROM:<a@x> FOO=1\r\nMAIL FROM:<a@x> NOTIFY=NEVER\r\n"
           "MAIL FROM:<a@x> BODY=BINARYMIME\r\nMAIL FROM:<a@x>\r\nRCPT TO:<>\r\n"
           "RCPT TO:<b@y> SIZE=1\r\nRCPT TO:<b@y> NOTIFY=NEVER,DELAY\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
                                "555 5.5.4 Unsupported option: FOO\r\n"
                                "555 5.5.4 Unsupported option: NOTIFY\r\n"
                                "555 5.5.4 Unsupported option: BODY\r\n" OK_MAIL
                                "501 5.5.4 Syntax: RCPT TO:<address>\r\n"
                                "555 5.5.4 Unsupported option: SIZE\r\n"
                                "555 5.5.4 Unsupported option: NOTIFY\r\n" BYE,
     .events = "C"},
    {.name = "DSN and MAIL parameters kept",
     .in = "EHLO c\r\n"
           "MAIL FROM:<a@x> RET=HDRS ENVID=QQ+2B1 BODY=8BITMIME SMTPUTF8 SIZE=5\r\n"
           "RCPT TO:<b@y> NOTIFY=NEVER\r\n"
           "RCPT TO:<\"c d\"@y> ORCPT=rfc822;+22c+20d+22@y NOTIFY=DELAY\r\n"
           "RCPT TO:<e@y>\r\n"
           "DATA\r\nx\r\n.\r\n"
           "MAIL FROM:<a@x> RET=FULL BODY=7BIT\r\nRCPT TO:<b@y>\r\nDATA\r\ny\r\n.\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY OK_MAIL OK_RCPT OK_RCPT OK_RCPT GO_AHEAD QUEUED(1)
         OK_MAIL OK_RCPT GO_AHEAD QUEUED(2) BYE,
     .body = "x\r\ny\r\n",
     .events = "BEBEC",
     .envs = "from=<a@x> size=3 ret=2 body=2 utf8=1 envid=QQ+2B1 to=<b@y>,notify=NEVER "
             "to=<\"c d\"@y>,notify=DELAY,orcpt=rfc822;+22c+20d+22@y to=<e@y>\n"
             "from=<a@x> size=3 ret=1 body=1 utf8=0 envid=- to=<b@y>\n"},
    {.name = "XFORWARD unauthorized",
     .in = "EHLO c\r\nXFORWARD NAME=x.test\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n"
           "DATA\r\nx\r\n.\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY
     "550 5.7.0 Error: insufficient authorization\r\n" OK_MAIL OK_RCPT GO_AHEAD QUEUED(1) BYE,
     .body = "x\r\n",
     .events = "BEC",
     .envs = "from=<a@x> size=3 ret=0 body=0 utf8=0 envid=- to=<b@y>\n"},
    {.name = "XFORWARD into the envelope, reset per transaction",
     .in = "EHLO c\r\n"
           "XFORWARD NAME=mx.example ADDR=192.0.2.1 PORT=4711\r\n"
           "XFORWARD PROTO=ESMTP HELO=c+20x IDENT=[UNAVAILABLE] SOURCE=REMOTE\r\n"
           "MAIL FROM:<a@x>\r\nXFORWARD NAME=late\r\nRCPT TO:<b@y>\r\nDATA\r\nx\r\n.\r\n"
           "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\ny\r\n.\r\n"
           "XFORWARD FOO=1\r\nXFORWARD\r\nXFORWARD ADDR=198.51.100.7\r\n"
           "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nz\r\n.\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY_XF OK_GEN OK_GEN OK_MAIL
     "503 5.5.1 Error: MAIL transaction in progress\r\n" OK_RCPT GO_AHEAD QUEUED(1) OK_MAIL OK_RCPT
         GO_AHEAD QUEUED(2) "501 5.5.4 Bad XFORWARD attribute name\r\n"
                            "501 5.5.4 Syntax: XFORWARD attribute=value...\r\n" OK_GEN OK_MAIL
                                OK_RCPT GO_AHEAD QUEUED(3) BYE,
     .body = "x\r\ny\r\nz\r\n",
     .events = "BEBEBEC",
     .envs = "from=<a@x> size=3 ret=0 body=0 utf8=0 envid=- to=<b@y> NAME=mx.example "
             "ADDR=192.0.2.1 PORT=4711 PROTO=ESMTP HELO=c x IDENT=[UNAVAILABLE] SOURCE=REMOTE\n"
             "from=<a@x> size=3 ret=0 body=0 utf8=0 envid=- to=<b@y>\n"
             "from=<a@x> size=3 ret=0 body=0 utf8=0 envid=- to=<b@y> ADDR=198.51.100.7\n",
     .xforward = 1},
    {.name = "too many errors",
     .in = "EHLO c\r\nFOO\r\nBAR\r\nBAZ\r\nNOOP\r\n",
     .out = GREETING EHLO_REPLY UNKNOWN UNKNOWN UNKNOWN "421 4.7.0 " HOST
                                                        " Error: too many errors\r\n",
     .events = "C",
     .left = 6,
     .max_errors = 3},
    {.name = "too many commands",
     .in = "EHLO c\r\nNOOP\r\nNOOP\r\nNOOP\r\n",
     .out = GREETING EHLO_REPLY OK_GEN OK_GEN "421 4.7.0 Error: too many commands\r\n",
     .events = "C",
     .max_commands = 3},
    {.name = "data_begin fails",
     .in = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nRCPT TO:<b@y>\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY OK_MAIL OK_RCPT
     "451 4.3.0 Error: cannot store the message, try again later\r\n"
     "503 5.5.1 Error: need MAIL command\r\n" BYE,
     .events = "BC",
     .fail_begin = 1},
    {.name = "store full",
     .in = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY OK_MAIL OK_RCPT GO_AHEAD
     "452 4.3.1 Insufficient system storage\r\n" BYE,
     .events = "BAC",
     .fail_errno = ENOSPC},
    /* Found by fuzz/ (crashes/smtpd_proto): with the store failing on the first
     * bytes, a whole chunk over the limit got 552 and single bytes 452. */
    {.name = "store full and too big: 552 in every chunking",
     .in = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n"
           "0123456789012345678901234567890123456789012345\r\n.\r\nQUIT\r\n",
     .out = GREETING EHLO_BASE("20") "250 SMTPUTF8\r\n" OK_MAIL OK_RCPT GO_AHEAD TOO_BIG BYE,
     .events = "BAC",
     .max_size = 20,
     .fail_errno = ENOSPC},
    {.name = "store error",
     .in = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY OK_MAIL OK_RCPT GO_AHEAD
     "451 4.3.0 Error: cannot store the message, try again later\r\n" BYE,
     .events = "BAC",
     .fail_errno = EIO},
    {.name = "EHLO resets the transaction",
     .in = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nEHLO c\r\nDATA\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY OK_MAIL OK_RCPT EHLO_REPLY
     "503 5.5.1 Error: need RCPT command\r\n" BYE,
     .events = "C"},
    /* A command of exactly max_command_length characters (here 32) is accepted,
     * whether the line ends in CRLF or in a bare LF. */
    {.name = "command line of exactly the limit, LF",
     .in = "EHLO c\nNOOP 123456789012345678901234567\nQUIT\n",
     .out = GREETING EHLO_REPLY OK_GEN BYE,
     .events = "C",
     .max_cmdlen = 32},
    {.name = "command line of exactly the limit, CRLF",
     .in = "EHLO c\r\nNOOP 123456789012345678901234567\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY OK_GEN BYE,
     .events = "C",
     .max_cmdlen = 32},
    {.name = "command line one over the limit",
     .in = "EHLO c\r\nNOOP 1234567890123456789012345678\r\nNOOP 1234567890123456789012345678\n"
           "QUIT\r\n",
     .out = GREETING EHLO_REPLY "500 5.5.2 Error: command line too long\r\n"
                                "500 5.5.2 Error: command line too long\r\n" BYE,
     .events = "C",
     .max_cmdlen = 32},
    {.name = "QUIT in a transaction",
     .in = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nQUIT\r\n",
     .out = GREETING EHLO_REPLY OK_MAIL OK_RCPT BYE,
     .events = "C"},
};

/*
 * The driver.
 */
struct result {
    struct buf out, body, events, envs;
    size_t left;
};

static void
result_free(struct result *r)
{
    buf_free(&r->out);
    buf_free(&r->body);
    buf_free(&r->events);
    buf_free(&r->envs);
}

static void
limits_of(const struct dialogue *d, struct smtpd_limits *lim)
{
    memset(lim, 0, sizeof(*lim));
    lim->max_command_length = d->max_cmdlen ? d->max_cmdlen : D_MAX_CMDLEN;
    lim->max_recipients = d->max_rcpt ? d->max_rcpt : D_MAX_RCPT;
    lim->max_commands = d->max_commands ? d->max_commands : D_MAX_COMMANDS;
    lim->max_errors = d->max_errors ? d->max_errors : D_MAX_ERRORS;
    lim->max_message_size = d->max_size ? d->max_size : D_MAX_SIZE;
    lim->xforward_allowed = d->xforward;
    lim->hostname = HOST;
}

/* Feed the engine one chunk, as the session does: re-feed after verdicts. */
static size_t
feed_chunk(struct smtpd_proto *p, struct fake *f, const char *s, size_t len)
{
    size_t used = 0;
    while (used < len) {
        size_t n = smtpd_proto_feed(p, s + used, len - used);
        assert_true(n <= len - used);
        used += n;
        if (used == len)
            break;
        if (p->state == SMTPD_S_WAIT) {
            /* Paused: nothing more is consumed until the verdict. */
            size_t outlen = f->out.len;
            assert_int_equal(smtpd_proto_feed(p, s + used, len - used), 0);
            assert_int_equal(f->out.len, outlen);
            char reply[64];
            snprintf(reply, sizeof(reply), "250 2.0.0 Ok: queued as T%d", ++f->ntx);
            smtpd_proto_tx_done(p, reply);
            assert_int_equal(p->state, SMTPD_S_IDLE);
            continue;
        }
        assert_int_equal(p->state, SMTPD_S_QUIT);
        assert_true(f->closed);
        return len - used;
    }
    /* A transaction that ended exactly at the chunk end. */
    if (p->state == SMTPD_S_WAIT) {
        char reply[64];
        snprintf(reply, sizeof(reply), "250 2.0.0 Ok: queued as T%d", ++f->ntx);
        smtpd_proto_tx_done(p, reply);
    }
    return 0;
}

/* Run dialogue d with the given chunk sizes (cycled); size 0 means "the rest". */
static void
run(const struct dialogue *d, const size_t *sizes, size_t nsizes, struct result *r)
{
    struct smtpd_limits lim;
    struct smtpd_proto p;
    struct fake f;
    size_t len = d->inlen ? d->inlen : strlen(d->in);

    limits_of(d, &lim);
    memset(&f, 0, sizeof(f));
    f.p = &p;
    f.fail_begin = d->fail_begin;
    f.fail_errno = d->fail_errno;
    assert_int_equal(smtpd_proto_init(&p, &lim, &fake_ops, &f, "192.0.2.9", 54321), 0);
    assert_int_equal(p.state, SMTPD_S_GREETING);
    smtpd_proto_greet(&p);
    assert_int_equal(p.state, SMTPD_S_HELO);

    memset(r, 0, sizeof(*r));
    size_t off = 0, k = 0;
    while (off < len) {
        size_t n = sizes[k++ % nsizes];
        if (n == 0 || n > len - off)
            n = len - off;
        r->left += feed_chunk(&p, &f, d->in + off, n);
        off += n;
    }
    assert_false(f.in_data);
    smtpd_proto_free(&p);
    r->out = f.out;
    r->body = f.body;
    r->events = f.events;
    r->envs = f.envs;
}

/* Compare r with the expectations of d; a mismatch is described in msg. */
static int
check(const struct dialogue *d, const char *how, const struct result *r, char *msg, size_t len)
{
    const char *body = d->body ? d->body : "", *events = d->events ? d->events : "";
    const char *envs = d->envs ? d->envs : "";

    if (strcmp(buf_str(&r->out), d->out) != 0)
        snprintf(msg, len, "%s (%s): output\n--- got ---\n%s--- want ---\n%s", d->name, how,
                 buf_str(&r->out), d->out);
    else if (strcmp(buf_str(&r->body), body) != 0)
        snprintf(msg, len, "%s (%s): body\n--- got ---\n%s--- want ---\n%s", d->name, how,
                 buf_str(&r->body), body);
    else if (strcmp(buf_str(&r->events), events) != 0)
        snprintf(msg, len, "%s (%s): events \"%s\", want \"%s\"", d->name, how, buf_str(&r->events),
                 events);
    else if (strcmp(buf_str(&r->envs), envs) != 0)
        snprintf(msg, len, "%s (%s): envelopes\n--- got ---\n%s--- want ---\n%s", d->name, how,
                 buf_str(&r->envs), envs);
    else if (r->left != d->left)
        snprintf(msg, len, "%s (%s): %zu bytes left, want %zu", d->name, how, r->left, d->left);
    else
        return 0;
    return -1;
}

static void
run_check(const struct dialogue *d, const size_t *sizes, size_t nsizes, const char *how)
{
    struct result r;
    char msg[8192];
    run(d, sizes, nsizes, &r);
    int rc = check(d, how, &r, msg, sizeof(msg));
    result_free(&r);
    if (rc < 0)
        fail_msg("%s", msg);
}

/* One test per dialogue, all chunkings. */
static void
test_dialogue(void **state)
{
    const struct dialogue *d = *state;
    size_t len = d->inlen ? d->inlen : strlen(d->in);
    size_t whole = 0, one = 1, seven = 7;
    char how[64];

    run_check(d, &whole, 1, "whole");
    run_check(d, &one, 1, "1 byte");
    run_check(d, &seven, 1, "7 bytes");
    for (size_t k = 2; k <= 40 && k < len; k++) {
        snprintf(how, sizeof(how), "%zu bytes", k);
        run_check(d, &k, 1, how);
    }
    for (unsigned seed = 1; seed <= 20; seed++) {
        size_t sizes[64];
        srand(seed);
        for (size_t i = 0; i < 64; i++)
            sizes[i] = 1 + (size_t)rand() % 23;
        snprintf(how, sizeof(how), "random seed %u", seed);
        run_check(d, sizes, 64, how);
    }
}

/* Explicit pause: input after the final dot is held until the verdict. */
static void
test_wait_pause(void **state)
{
    (void)state;
    static const struct dialogue d = {.name = "pause"};
    struct smtpd_limits lim;
    struct smtpd_proto p;
    struct fake f;
    const char *in = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nhello\r\n.\r\nNOOP\r\n";
    size_t len = strlen(in);

    limits_of(&d, &lim);
    memset(&f, 0, sizeof(f));
    f.p = &p;
    assert_int_equal(smtpd_proto_init(&p, &lim, &fake_ops, &f, "192.0.2.9", 25), 0);
    smtpd_proto_greet(&p);
    size_t n = smtpd_proto_feed(&p, in, len);
    assert_int_equal(n, len - strlen("NOOP\r\n"));
    assert_int_equal(p.state, SMTPD_S_WAIT);
    assert_string_equal(buf_str(&f.events), "BE");
    size_t outlen = f.out.len;
    /* Still paused: nothing consumed, nothing said. */
    assert_int_equal(smtpd_proto_feed(&p, in + n, len - n), 0);
    assert_int_equal(smtpd_proto_feed(&p, in + n, len - n), 0);
    assert_int_equal(f.out.len, outlen);
    /* The verdict, then the rest. */
    smtpd_proto_tx_done(&p, "554 5.7.1 Rejected by policy");
    assert_int_equal(p.state, SMTPD_S_IDLE);
    assert_int_equal(smtpd_proto_feed(&p, in + n, len - n), len - n);
    assert_string_equal(buf_str(&f.out) + outlen, "554 5.7.1 Rejected by policy\r\n" OK_GEN);
    /* tx_done outside WAIT is ignored. */
    outlen = f.out.len;
    smtpd_proto_tx_done(&p, "250 nothing");
    assert_int_equal(f.out.len, outlen);
    /* Shutdown says 421 and closes; later input is not consumed. */
    smtpd_proto_shutdown(&p, "421 4.3.2 Service shutting down");
    assert_string_equal(buf_str(&f.out) + outlen, "421 4.3.2 Service shutting down\r\n");
    assert_string_equal(buf_str(&f.events), "BEC");
    assert_int_equal(smtpd_proto_feed(&p, "NOOP\r\n", 6), 0);
    smtpd_proto_free(&p);
    buf_free(&f.out);
    buf_free(&f.body);
    buf_free(&f.events);
    buf_free(&f.envs);
}

/* Shutdown in the middle of DATA drops the body. */
static void
test_shutdown_in_data(void **state)
{
    (void)state;
    static const struct dialogue d = {.name = "shutdown"};
    struct smtpd_limits lim;
    struct smtpd_proto p;
    struct fake f;
    const char *in = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\npartial";

    limits_of(&d, &lim);
    memset(&f, 0, sizeof(f));
    f.p = &p;
    assert_int_equal(smtpd_proto_init(&p, &lim, &fake_ops, &f, "192.0.2.9", 25), 0);
    smtpd_proto_greet(&p);
    assert_int_equal(smtpd_proto_feed(&p, in, strlen(in)), strlen(in));
    assert_int_equal(p.state, SMTPD_S_DATA);
    assert_string_equal(buf_str(&f.body), "partial");
    smtpd_proto_shutdown(&p, "421 4.4.2 Error: timeout exceeded");
    assert_int_equal(p.state, SMTPD_S_QUIT);
    assert_string_equal(buf_str(&f.events), "BAC");
    assert_string_equal(buf_str(&f.body), ""); /* dropped by data_abort */
    assert_false(f.in_data);
    smtpd_proto_free(&p);
    buf_free(&f.out);
    buf_free(&f.body);
    buf_free(&f.events);
    buf_free(&f.envs);
}

int
main(void)
{
    enum { N = sizeof(dialogues) / sizeof(dialogues[0]) };
    struct CMUnitTest tests[N + 2];

    for (size_t i = 0; i < N; i++) {
        tests[i] = (struct CMUnitTest){dialogues[i].name, test_dialogue, NULL, NULL, NULL};
        tests[i].initial_state = &dialogues[i];
    }
    tests[N] = (struct CMUnitTest)cmocka_unit_test(test_wait_pause);
    tests[N + 1] = (struct CMUnitTest)cmocka_unit_test(test_shutdown_in_data);
    return _cmocka_run_group_tests("smtpd_proto", tests, N + 2, NULL, NULL);
}
