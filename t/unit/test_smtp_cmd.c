/*
 * test_smtp_cmd.c - table-driven unit tests of proxy/smtp_cmd.c: verb
 * recognition, MAIL FROM / RCPT TO paths and parameters, XFORWARD.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "envelope.h"
#include "smtp_cmd.h"

/*
 * Verbs.
 */
struct verb_case {
    const char *line;
    enum smtp_verb verb;
    const char *args; /* expected *args (for CMD_UNKNOWN: the line itself) */
};

static const struct verb_case verb_cases[] = {
    {"HELO client.example", CMD_HELO, "client.example"},
    {"ehlo  client.example", CMD_EHLO, "client.example"},
    {"EhLo\tclient.example", CMD_EHLO, "client.example"},
    {"MAIL FROM:<a@b>", CMD_MAIL, "FROM:<a@b>"},
    {"mail from:<a@b>", CMD_MAIL, "from:<a@b>"},
    {"RCPT TO:<a@b>", CMD_RCPT, "TO:<a@b>"},
    {"DATA", CMD_DATA, ""},
    {"data", CMD_DATA, ""},
    {"DATA   ", CMD_DATA, ""},
    {"RSET", CMD_RSET, ""},
    {"NOOP hello", CMD_NOOP, "hello"},
    {"QUIT", CMD_QUIT, ""},
    {"QuIt", CMD_QUIT, ""},
    {"VRFY user", CMD_VRFY, "user"},
    {"HELP", CMD_HELP, ""},
    {"XFORWARD NAME=x", CMD_XFORWARD, "NAME=x"},
    {"xforward addr=1.2.3.4", CMD_XFORWARD, "addr=1.2.3.4"},
    {"BDAT 100 LAST", CMD_BDAT, "100 LAST"},
    {"STARTTLS", CMD_STARTTLS, ""},
    {"AUTH PLAIN AGFAAGI=", CMD_AUTH, "PLAIN AGFAAGI="},
    {"ETRN example.org", CMD_ETRN, "example.org"},
    {"EXPN list", CMD_EXPN, "list"},
    /* Not verbs. */
    {"DATAX", CMD_UNKNOWN, "DATAX"},
    {"MAILFROM:<a@b>", CMD_UNKNOWN, "MAILFROM:<a@b>"},
    {"MAI", CMD_UNKNOWN, "MAI"},
    {"XFORWARDX", CMD_UNKNOWN, "XFORWARDX"},
    {"QUITT", CMD_UNKNOWN, "QUITT"},
    {"", CMD_UNKNOWN, ""},
    {" HELO x", CMD_UNKNOWN, " HELO x"},
    {"FOO bar", CMD_UNKNOWN, "FOO bar"},
    {"HEL0 x", CMD_UNKNOWN, "HEL0 x"},
};

static void
test_verbs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(verb_cases) / sizeof(verb_cases[0]); i++) {
        const struct verb_case *t = &verb_cases[i];
        const char *args = NULL;
        enum smtp_verb v = smtp_cmd_verb(t->line, &args);
        if (v != t->verb || args == NULL || strcmp(args, t->args) != 0)
            fail_msg("case %zu \"%s\": verb %d (want %d) args \"%s\" (want \"%s\")", i, t->line,
                     (int)v, (int)t->verb, args ? args : "(null)", t->args);
        /* args points into the line. */
        assert_true(args >= t->line && args <= t->line + strlen(t->line));
    }
    /* args may be NULL. */
    assert_int_equal(smtp_cmd_verb("NOOP", NULL), CMD_NOOP);
}

/*
 * MAIL FROM / RCPT TO.
 */
#define MAIL 1
#define RCPT 0
#define NOSIZE (-1)

struct path_case {
    const char *args;
    int is_mail;
    int rc;
    const char *addr; /* expected on success */
    int64_t size;     /* NOSIZE when absent */
    int body;
    int smtputf8;
    int ret;
    const char *envid;
    unsigned notify;
    const char *orcpt;
    const char *bad; /* expected *bad, NULL for none */
};

#define OK(a, m, addr_)                                                                            \
    {                                                                                              \
        (a), (m), SMTP_PATH_OK, (addr_), NOSIZE, 0, 0, 0, NULL, 0, NULL, NULL                      \
    }
#define SYNTAX(a, m)                                                                               \
    {                                                                                              \
        (a), (m), SMTP_PATH_ESYNTAX, NULL, NOSIZE, 0, 0, 0, NULL, 0, NULL, NULL                    \
    }
#define PARAM(a, m, bad_)                                                                          \
    {                                                                                              \
        (a), (m), SMTP_PATH_EPARAM, NULL, NOSIZE, 0, 0, 0, NULL, 0, NULL, (bad_)                   \
    }

static const struct path_case path_cases[] = {
    /* Plain addresses. */
    OK("FROM:<a@b.example>", MAIL, "a@b.example"),
    OK("from:<a@b.example>", MAIL, "a@b.example"),
    OK("From:<A@B.EXAMPLE>", MAIL, "A@B.EXAMPLE"),
    OK("FROM: <a@b.example>", MAIL, "a@b.example"),
    OK("FROM:    <a@b.example>", MAIL, "a@b.example"),
    OK("FROM:\t<a@b.example>", MAIL, "a@b.example"),
    OK("FROM:<a@b.example>   ", MAIL, "a@b.example"),
    OK("FROM:<>", MAIL, ""),
    OK("FROM: <>", MAIL, ""),
    OK("TO:<a@b.example>", RCPT, "a@b.example"),
    OK("to:<a@b.example>", RCPT, "a@b.example"),
    OK("TO: <a@b.example>", RCPT, "a@b.example"),
    OK("TO:<postmaster>", RCPT, "postmaster"),
    OK("TO:<u@[IPv6:2001:db8::1]>", RCPT, "u@[IPv6:2001:db8::1]"),
    {"TO:<u@[192.0.2.1]> NOTIFY=NEVER", RCPT, 0, "u@[192.0.2.1]", NOSIZE, 0, 0, 0, NULL,
     DSN_NOTIFY_NEVER, NULL, NULL},
    OK("TO:<Postmaster@b.example>", RCPT, "Postmaster@b.example"),
    /* Quoted local parts. */
    OK("FROM:<\"a b\"@x.example>", MAIL, "\"a b\"@x.example"),
    OK("TO:<\"a b\"@x.example>", RCPT, "\"a b\"@x.example"),
    OK("FROM:<\"a>b\"@x.example>", MAIL, "\"a>b\"@x.example"),
    OK("FROM:<\"a<b\"@x.example>", MAIL, "\"a<b\"@x.example"),
    OK("FROM:<\"a\\\"b\"@x.example>", MAIL, "\"a\\\"b\"@x.example"),
    OK("FROM:<\"a\\\\\"@x.example>", MAIL, "\"a\\\\\"@x.example"),
    OK("FROM:<\"\"@x.example>", MAIL, "\"\"@x.example"),
    /* Source routes are reduced to the mailbox. */
    OK("FROM:<@a.example,@b.example:u@d.example>", MAIL, "u@d.example"),
    OK("TO:<@a.example:u@d.example>", RCPT, "u@d.example"),
    OK("TO:<@a,@b,@c:\"x y\"@d>", RCPT, "\"x y\"@d"),
    /* Bare addresses, as Postfix tolerates. */
    OK("FROM:a@b.example", MAIL, "a@b.example"),
    OK("FROM: a@b.example", MAIL, "a@b.example"),
    OK("TO:a@b.example", RCPT, "a@b.example"),
    OK("TO:\"a b\"@x.example", RCPT, "\"a b\"@x.example"),
    /* 8-bit (SMTPUTF8) addresses are not control characters. */
    OK("TO:<j\xc3\xb6ran@ex\xc3\xa4mple.org>", RCPT, "j\xc3\xb6ran@ex\xc3\xa4mple.org"),

    /* Syntax errors. */
    SYNTAX("TO:<>", RCPT),
    SYNTAX("TO: <>", RCPT),
    SYNTAX("<a@b>", MAIL),
    SYNTAX("FROM<a@b>", MAIL),
    SYNTAX("FROM :<a@b>", MAIL),
    SYNTAX("FROM;<a@b>", MAIL),
    SYNTAX("TO:<a@b>", MAIL),
    SYNTAX("FROM:<a@b>", RCPT),
    SYNTAX("FROMAGE:<a@b>", MAIL),
    SYNTAX("FROM:", MAIL),
    SYNTAX("FROM:   ", MAIL),
    SYNTAX("TO:", RCPT),
    SYNTAX("", MAIL),
    SYNTAX("FROM:<a@b", MAIL),
    SYNTAX("FROM:<", MAIL),
    SYNTAX("FROM:a@b>", MAIL),
    SYNTAX("FROM:>", MAIL),
    SYNTAX("FROM:<<a@b>>", MAIL),
    SYNTAX("FROM:<a@b>>", MAIL),
    SYNTAX("FROM:<a<b@c>", MAIL),
    SYNTAX("FROM:<a@b>x", MAIL),
    SYNTAX("FROM:<a@b>SIZE=10", MAIL),
    SYNTAX("FROM:<a b@c>", MAIL),
    SYNTAX("FROM:< a@b>", MAIL),
    SYNTAX("FROM:<a@b >", MAIL),
    SYNTAX("FROM:<\"a b@x>", MAIL),
    SYNTAX("FROM:<\"a b\\\">", MAIL),
    SYNTAX("TO:\"a b@x", RCPT),
    SYNTAX("FROM:a<b@c", MAIL),
    SYNTAX("FROM:<a\x01"
           "b@c>",
           MAIL),
    SYNTAX("FROM:<a\x7f@b>", MAIL),
    SYNTAX("FROM:<a\tb@c>", MAIL),
    SYNTAX("FROM:<\"a\tb\"@c>", MAIL),
    SYNTAX("FROM:<\"a\x02"
           "b\"@c>",
           MAIL),
    SYNTAX("FROM:<a@b>\r", MAIL),
    SYNTAX("FROM:<a@b>\n", MAIL),
    SYNTAX("TO:<a@b> NOTIFY=NEVER\x1b", RCPT),
    /* Bad source routes. */
    SYNTAX("FROM:<@a,b:u@d>", MAIL),
    SYNTAX("FROM:<@:u@d>", MAIL),
    SYNTAX("FROM:<@a,@b>", MAIL),
    SYNTAX("FROM:<@a:>", MAIL),
    SYNTAX("TO:<@a:>", RCPT),
    SYNTAX("TO:<@>", RCPT),
    SYNTAX("TO:<@a,:u@d>", RCPT),

    /* MAIL parameters. */
    {"FROM:<a@b> SIZE=100", MAIL, 0, "a@b", 100, 0, 0, 0, NULL, 0, NULL, NULL},
    {"FROM:<> SIZE=0", MAIL, 0, "", 0, 0, 0, 0, NULL, 0, NULL, NULL},
    {"FROM:<a@b> size=007", MAIL, 0, "a@b", 7, 0, 0, 0, NULL, 0, NULL, NULL},
    {"FROM:<a@b> SIZE=9223372036854775807", MAIL, 0, "a@b", INT64_MAX, 0, 0, 0, NULL, 0, NULL,
     NULL},
    PARAM("FROM:<a@b> SIZE=9223372036854775808", MAIL, "SIZE"),
    PARAM("FROM:<a@b> SIZE=18446744073709551616", MAIL, "SIZE"),
    PARAM("FROM:<a@b> SIZE=99999999999999999999999999999", MAIL, "SIZE"),
    PARAM("FROM:<a@b> SIZE=12a", MAIL, "SIZE"),
    PARAM("FROM:<a@b> SIZE=-1", MAIL, "SIZE"),
    PARAM("FROM:<a@b> SIZE=+1", MAIL, "SIZE"),
    PARAM("FROM:<a@b> SIZE=", MAIL, "SIZE"),
    PARAM("FROM:<a@b> SIZE", MAIL, "SIZE"),
    PARAM("FROM:<a@b> SIZE=1 SIZE=2", MAIL, "SIZE"),
    PARAM("FROM:<a@b> SIZE=1 size=1", MAIL, "size"),
    {"FROM:<a@b> BODY=7BIT", MAIL, 0, "a@b", NOSIZE, 1, 0, 0, NULL, 0, NULL, NULL},
    {"FROM:<a@b> body=8bitmime", MAIL, 0, "a@b", NOSIZE, 2, 0, 0, NULL, 0, NULL, NULL},
    {"FROM:<a@b> BODY=8BITMIME", MAIL, 0, "a@b", NOSIZE, 2, 0, 0, NULL, 0, NULL, NULL},
    PARAM("FROM:<a@b> BODY=BINARYMIME", MAIL, "BODY"),
    PARAM("FROM:<a@b> BODY=8BIT", MAIL, "BODY"),
    PARAM("FROM:<a@b> BODY", MAIL, "BODY"),
    PARAM("FROM:<a@b> BODY=", MAIL, "BODY"),
    PARAM("FROM:<a@b> BODY=7BIT BODY=7BIT", MAIL, "BODY"),
    {"FROM:<a@b> SMTPUTF8", MAIL, 0, "a@b", NOSIZE, 0, 1, 0, NULL, 0, NULL, NULL},
    {"FROM:<a@b> smtputf8", MAIL, 0, "a@b", NOSIZE, 0, 1, 0, NULL, 0, NULL, NULL},
    PARAM("FROM:<a@b> SMTPUTF8=yes", MAIL, "SMTPUTF8"),
    PARAM("FROM:<a@b> SMTPUTF8=", MAIL, "SMTPUTF8"),
    PARAM("FROM:<a@b> SMTPUTF8 SMTPUTF8", MAIL, "SMTPUTF8"),
    {"FROM:<a@b> RET=FULL", MAIL, 0, "a@b", NOSIZE, 0, 0, 1, NULL, 0, NULL, NULL},
    {"FROM:<a@b> ret=hdrs", MAIL, 0, "a@b", NOSIZE, 0, 0, 2, NULL, 0, NULL, NULL},
    PARAM("FROM:<a@b> RET=ALL", MAIL, "RET"),
    PARAM("FROM:<a@b> RET", MAIL, "RET"),
    PARAM("FROM:<a@b> RET=FULL RET=HDRS", MAIL, "RET"),
    {"FROM:<a@b> ENVID=QQ314159", MAIL, 0, "a@b", NOSIZE, 0, 0, 0, "QQ314159", 0, NULL, NULL},
    {"FROM:<a@b> ENVID=a+2Bb+3Dc", MAIL, 0, "a@b", NOSIZE, 0, 0, 0, "a+2Bb+3Dc", 0, NULL, NULL},
    {"FROM:<a@b> envid=<id@host>", MAIL, 0, "a@b", NOSIZE, 0, 0, 0, "<id@host>", 0, NULL, NULL},
    PARAM("FROM:<a@b> ENVID=a+2b", MAIL, "ENVID"),
    PARAM("FROM:<a@b> ENVID=a+2", MAIL, "ENVID"),
    PARAM("FROM:<a@b> ENVID=a+", MAIL, "ENVID"),
    PARAM("FROM:<a@b> ENVID=a+G0", MAIL, "ENVID"),
    PARAM("FROM:<a@b> ENVID=a=b", MAIL, "ENVID"),
    PARAM("FROM:<a@b> ENVID=", MAIL, "ENVID"),
    PARAM("FROM:<a@b> ENVID", MAIL, "ENVID"),
    PARAM("FROM:<a@b> ENVID=\xc3\xa4", MAIL, "ENVID"),
    PARAM("FROM:<a@b> ENVID=a ENVID=b", MAIL, "ENVID"),
    {"FROM:<a@b> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159", MAIL, 0, "a@b", 1000, 2,
     1, 2, "QQ314159", 0, NULL, NULL},
    {"from: <a@b>   envid=X\tret=full  body=7bit   size=5  ", MAIL, 0, "a@b", 5, 1, 0, 1, "X", 0,
     NULL, NULL},
    {"FROM:a@b SIZE=10", MAIL, 0, "a@b", 10, 0, 0, 0, NULL, 0, NULL, NULL},
    {"FROM:<\"a b\"@x> SIZE=10", MAIL, 0, "\"a b\"@x", 10, 0, 0, 0, NULL, 0, NULL, NULL},
    /* Unknown, malformed and RCPT-only parameters on MAIL. */
    PARAM("FROM:<a@b> AUTH=<>", MAIL, "AUTH"),
    PARAM("FROM:<a@b> XYZ", MAIL, "XYZ"),
    PARAM("FROM:<a@b> SIZE=1 XYZ=2", MAIL, "XYZ"),
    PARAM("FROM:<a@b> NOTIFY=NEVER", MAIL, "NOTIFY"),
    PARAM("FROM:<a@b> ORCPT=rfc822;a@b", MAIL, "ORCPT"),
    PARAM("FROM:<a@b> SI_ZE=1", MAIL, "SI_ZE"),
    PARAM("FROM:<a@b> -SIZE=1", MAIL, "-SIZE"),
    PARAM("FROM:<a@b> =1", MAIL, ""),

    /* RCPT parameters. */
    {"TO:<a@b> NOTIFY=NEVER", RCPT, 0, "a@b", NOSIZE, 0, 0, 0, NULL, DSN_NOTIFY_NEVER, NULL, NULL},
    {"TO:<a@b> notify=success,failure", RCPT, 0, "a@b", NOSIZE, 0, 0, 0, NULL,
     DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE, NULL, NULL},
    {"TO:<a@b> NOTIFY=DELAY,FAILURE,SUCCESS", RCPT, 0, "a@b", NOSIZE, 0, 0, 0, NULL,
     DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY, NULL, NULL},
    PARAM("TO:<a@b> NOTIFY=NEVER,SUCCESS", RCPT, "NOTIFY"),
    PARAM("TO:<a@b> NOTIFY=BOGUS", RCPT, "NOTIFY"),
    PARAM("TO:<a@b> NOTIFY=", RCPT, "NOTIFY"),
    PARAM("TO:<a@b> NOTIFY", RCPT, "NOTIFY"),
    PARAM("TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER", RCPT, "NOTIFY"),
    {"TO:<a@b> ORCPT=rfc822;a@b", RCPT, 0, "a@b", NOSIZE, 0, 0, 0, NULL, 0, "rfc822;a@b", NULL},
    {"TO:<a@b> orcpt=RFC822;x+2By@b", RCPT, 0, "a@b", NOSIZE, 0, 0, 0, NULL, 0, "RFC822;x+2By@b",
     NULL},
    {"TO:<a@b> ORCPT=utf-8;a@b", RCPT, 0, "a@b", NOSIZE, 0, 0, 0, NULL, 0, "utf-8;a@b", NULL},
    PARAM("TO:<a@b> ORCPT=rfc822", RCPT, "ORCPT"),
    PARAM("TO:<a@b> ORCPT=;a@b", RCPT, "ORCPT"),
    PARAM("TO:<a@b> ORCPT=rfc822;", RCPT, "ORCPT"),
    PARAM("TO:<a@b> ORCPT=rfc822;a+zz", RCPT, "ORCPT"),
    PARAM("TO:<a@b> ORCPT=rfc822;a=b", RCPT, "ORCPT"),
    PARAM("TO:<a@b> ORCPT=rf c822;a@b", RCPT, "ORCPT"),
    PARAM("TO:<a@b> ORCPT", RCPT, "ORCPT"),
    PARAM("TO:<a@b> ORCPT=rfc822;a@b ORCPT=rfc822;a@b", RCPT, "ORCPT"),
    {"TO:<a@b> NOTIFY=SUCCESS ORCPT=rfc822;a@b", RCPT, 0, "a@b", NOSIZE, 0, 0, 0, NULL,
     DSN_NOTIFY_SUCCESS, "rfc822;a@b", NULL},
    {"TO: <\"x y\"@b>  ORCPT=rfc822;+22x+20y+22@b\tNOTIFY=FAILURE ", RCPT, 0, "\"x y\"@b", NOSIZE,
     0, 0, 0, NULL, DSN_NOTIFY_FAILURE, "rfc822;+22x+20y+22@b", NULL},
    /* MAIL parameters on RCPT. */
    PARAM("TO:<a@b> SIZE=1", RCPT, "SIZE"),
    PARAM("TO:<a@b> BODY=7BIT", RCPT, "BODY"),
    PARAM("TO:<a@b> SMTPUTF8", RCPT, "SMTPUTF8"),
    PARAM("TO:<a@b> RET=FULL", RCPT, "RET"),
    PARAM("TO:<a@b> ENVID=x", RCPT, "ENVID"),
    PARAM("TO:<a@b> NOTIFY=NEVER FOO", RCPT, "FOO"),
};

static void
run_path_case(size_t i, const struct path_case *t)
{
    char buf[512];
    struct smtp_path_cmd out;
    const char *bad = (const char *)&out; /* must be overwritten */

    assert_true(strlen(t->args) < sizeof(buf));
    memset(buf, 'Z', sizeof(buf));
    strcpy(buf, t->args);
    int rc = smtp_cmd_parse_path(buf, t->is_mail, &out, &bad);
    if (rc != t->rc)
        fail_msg("case %zu \"%s\": rc %d, want %d", i, t->args, rc, t->rc);
    if (t->bad == NULL) {
        if (bad != NULL)
            fail_msg("case %zu \"%s\": bad \"%s\", want NULL", i, t->args, bad);
    } else {
        if (bad == NULL || strcmp(bad, t->bad) != 0)
            fail_msg("case %zu \"%s\": bad \"%s\", want \"%s\"", i, t->args, bad ? bad : "(null)",
                     t->bad);
        assert_true(bad >= buf && bad < buf + sizeof(buf));
    }
    if (rc != SMTP_PATH_OK)
        return;
    if (strcmp(out.addr, t->addr) != 0)
        fail_msg("case %zu \"%s\": addr \"%s\", want \"%s\"", i, t->args, out.addr, t->addr);
    assert_true(out.addr >= buf && out.addr < buf + sizeof(buf));
    if (out.size != t->size)
        fail_msg("case %zu \"%s\": size %lld, want %lld", i, t->args, (long long)out.size,
                 (long long)t->size);
    if (out.body != t->body || out.smtputf8 != t->smtputf8 || out.ret != t->ret ||
        out.notify != t->notify)
        fail_msg("case %zu \"%s\": body %d smtputf8 %d ret %d notify %u, want %d %d %d %u", i,
                 t->args, out.body, out.smtputf8, out.ret, out.notify, t->body, t->smtputf8, t->ret,
                 t->notify);
    if ((t->envid == NULL) != (out.envid == NULL) || (t->envid && strcmp(t->envid, out.envid) != 0))
        fail_msg("case %zu \"%s\": envid \"%s\", want \"%s\"", i, t->args,
                 out.envid ? out.envid : "(null)", t->envid ? t->envid : "(null)");
    if ((t->orcpt == NULL) != (out.orcpt == NULL) || (t->orcpt && strcmp(t->orcpt, out.orcpt) != 0))
        fail_msg("case %zu \"%s\": orcpt \"%s\", want \"%s\"", i, t->args,
                 out.orcpt ? out.orcpt : "(null)", t->orcpt ? t->orcpt : "(null)");
    if (out.envid)
        assert_true(out.envid >= buf && out.envid < buf + sizeof(buf));
    if (out.orcpt)
        assert_true(out.orcpt >= buf && out.orcpt < buf + sizeof(buf));
}

static void
test_paths(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++)
        run_path_case(i, &path_cases[i]);
}

/* bad may be NULL; the result is the same. */
static void
test_path_bad_null(void **state)
{
    (void)state;
    char a[] = "FROM:<a@b> FOO=1", b[] = "FROM:<a@b> SIZE=1";
    struct smtp_path_cmd out;
    assert_int_equal(smtp_cmd_parse_path(a, 1, &out, NULL), SMTP_PATH_EPARAM);
    assert_int_equal(smtp_cmd_parse_path(b, 1, &out, NULL), SMTP_PATH_OK);
    assert_int_equal(out.size, 1);
}

/* ENVID is at most 100 characters (of xtext as given). */
static void
test_path_envid_length(void **state)
{
    (void)state;
    char buf[256];
    struct smtp_path_cmd out;
    const char *bad;
    for (int n = 98; n <= 103; n++) {
        int off = snprintf(buf, sizeof(buf), "FROM:<a@b> ENVID=");
        memset(buf + off, 'e', (size_t)n);
        buf[off + n] = '\0';
        int rc = smtp_cmd_parse_path(buf, 1, &out, &bad);
        if (n <= 100) {
            assert_int_equal(rc, SMTP_PATH_OK);
            assert_int_equal(strlen(out.envid), (size_t)n);
        } else {
            assert_int_equal(rc, SMTP_PATH_EPARAM);
            assert_string_equal(bad, "ENVID");
        }
    }
}

/*
 * XFORWARD.
 */
struct xf_case {
    const char *args;
    int rc;
    const char *calls; /* "NAME=value|" per callback, in order */
};

static const struct xf_case xf_cases[] = {
    {"NAME=mx.example.com ADDR=192.0.2.1 PORT=4711 PROTO=ESMTP HELO=client.example IDENT=abc123 "
     "SOURCE=REMOTE",
     0,
     "NAME=mx.example.com|ADDR=192.0.2.1|PORT=4711|PROTO=ESMTP|HELO=client.example|IDENT=abc123|"
     "SOURCE=REMOTE|"},
    {"ADDR=192.0.2.1 NAME=x", 0, "ADDR=192.0.2.1|NAME=x|"},
    {"source=LOCAL proto=SMTP", 0, "SOURCE=LOCAL|PROTO=SMTP|"},
    {"  NAME=a    ADDR=b  ", 0, "NAME=a|ADDR=b|"},
    {"NAME=a\tADDR=b", 0, "NAME=a|ADDR=b|"},
    {"NAME=[UNAVAILABLE] ADDR=[TEMPUNAVAIL]", 0, "NAME=[UNAVAILABLE]|ADDR=[TEMPUNAVAIL]|"},
    {"HELO=a+20b+2Bc", 0, "HELO=a b+c|"},
    {"HELO=+5Bx+5D", 0, "HELO=[x]|"},
    {"HELO=a+0D+0AMAIL+09x+7F", 0, "HELO=a??MAIL?x?|"},
    {"IDENT=+2B+3D", 0, "IDENT=+=|"},
    {"ADDR=IPV6:2001:db8::1 PORT=25", 0, "ADDR=IPV6:2001:db8::1|PORT=25|"},
    /* Errors: no callback at all. */
    {"", -1, ""},
    {"   ", -1, ""},
    {"NAME", -1, ""},
    {"NAME=", -1, ""},
    {"=x", -1, ""},
    {"FOO=bar", -1, ""},
    {"NAME=a FOO=bar", -1, ""},
    {"NAME=a ADDR", -1, ""},
    {"NAME=a NAME=b", -1, ""},
    {"NAME=a name=b", -1, ""},
    {"HELO=a+2", -1, ""},
    {"HELO=a+2g", -1, ""},
    {"HELO=a+", -1, ""},
    {"HELO=a=b", -1, ""},
    {"NAMES=a", -1, ""},
    {"NAME=a HELO=x+00y", -1, ""},
};

struct xf_rec {
    char buf[2048];
};

static void
xf_cb(void *arg, int idx, const char *value)
{
    struct xf_rec *r = arg;
    assert_true(idx >= 0 && idx < XF_COUNT);
    size_t used = strlen(r->buf);
    snprintf(r->buf + used, sizeof(r->buf) - used, "%s=%s|", xf_attr_names[idx], value);
}

static void
test_xforward(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(xf_cases) / sizeof(xf_cases[0]); i++) {
        const struct xf_case *t = &xf_cases[i];
        char buf[512];
        struct xf_rec rec = {{0}};
        strcpy(buf, t->args);
        int rc = smtp_cmd_parse_xforward(buf, xf_cb, &rec);
        if (rc != t->rc || strcmp(rec.buf, t->calls) != 0)
            fail_msg("case %zu \"%s\": rc %d calls \"%s\", want %d \"%s\"", i, t->args, rc, rec.buf,
                     t->rc, t->calls);
    }
}

/* Values are limited to 255 characters, as in Postfix. */
static void
test_xforward_long(void **state)
{
    (void)state;
    char buf[512];
    for (int n = 254; n <= 257; n++) {
        struct xf_rec rec = {{0}};
        memcpy(buf, "HELO=", 5);
        memset(buf + 5, 'h', (size_t)n);
        buf[5 + n] = '\0';
        int rc = smtp_cmd_parse_xforward(buf, xf_cb, &rec);
        assert_int_equal(rc, n <= 255 ? 0 : -1);
        assert_int_equal(strlen(rec.buf), n <= 255 ? (size_t)n + 6 : 0);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verbs),         cmocka_unit_test(test_paths),
        cmocka_unit_test(test_path_bad_null), cmocka_unit_test(test_path_envid_length),
        cmocka_unit_test(test_xforward),      cmocka_unit_test(test_xforward_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
