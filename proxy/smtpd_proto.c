/*
 * smtpd_proto.c - the inbound SMTP protocol engine.
 *
 * It turns client bytes, in any chunking, into replies and transaction
 * events, and does no I/O of its own: the session (smtpd.c) feeds it with
 * smtpd_proto_feed() and receives output and events through struct
 * smtpd_proto_ops. That keeps the whole dialogue unit-testable
 * (t/unit/test_smtpd_proto.c).
 *
 * States (enum smtpd_state): GREETING -> HELO -> IDLE <-> MAIL -> DATA ->
 * WAIT -> IDLE ... ; QUIT ends it. In DATA the body is dot-unstuffed and
 * streamed to ops->data_chunk; in WAIT input is not consumed until the
 * session calls smtpd_proto_tx_done() with its answer (the downstream's,
 * or the queue's), so pipelined commands after the final dot wait their
 * turn.
 *
 * Limits: command line length, commands per session, errors per session,
 * recipients per message and message size, each with its own reply.
 * Ownership: the engine owns the current envelope until data_end, which
 * hands it to the session. Allocation failures end only this session.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp_cmd.h"
#include "smtpd_proto.h"

enum data_state { DS_LINE_START = 0, DS_MID, DS_DOT, DS_DOT_CR };

static void
reply(struct smtpd_proto *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
reply(struct smtpd_proto *p, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(buf) - 3)
        n = (int)sizeof(buf) - 3;
    buf[n++] = '\r';
    buf[n++] = '\n';
    p->ops->output(p->arg, buf, (size_t)n);
}

/* A client error reply; too many of them end the session. */
static void
reply_error(struct smtpd_proto *p, const char *text)
{
    reply(p, "%s", text);
    if (++p->nerrors >= p->lim->max_errors && p->state != SMTPD_S_QUIT) {
        reply(p, "421 4.7.0 %s Error: too many errors", p->lim->hostname);
        p->state = SMTPD_S_QUIT;
        p->ops->close(p->arg);
    }
}

int
smtpd_proto_init(struct smtpd_proto *p, const struct smtpd_limits *lim,
                 const struct smtpd_proto_ops *ops, void *arg, const char *client_addr,
                 int client_port)
{
    memset(p, 0, sizeof(*p));
    p->lim = lim;
    p->ops = ops;
    p->arg = arg;
    p->state = SMTPD_S_GREETING;
    p->xforward_allowed = lim->xforward_allowed;
    p->line = malloc(lim->max_command_length + 2); /* + CR + NUL */
    p->env = envelope_new();
    if (p->line == NULL || p->env == NULL) {
        free(p->line);
        envelope_free(p->env);
        p->line = NULL;
        p->env = NULL;
        return -1;
    }
    snprintf(p->client_addr, sizeof(p->client_addr), "%s", client_addr ? client_addr : "");
    snprintf(p->client_port, sizeof(p->client_port), "%d", client_port);
    return 0;
}

void
smtpd_proto_free(struct smtpd_proto *p)
{
    free(p->line);
    free(p->helo);
    envelope_free(p->env);
    p->line = NULL;
    p->helo = NULL;
    p->env = NULL;
}

void
smtpd_proto_greet(struct smtpd_proto *p)
{
    reply(p, "220 %s ESMTP scanrelay", p->lim->hostname);
    p->state = SMTPD_S_HELO;
}

/* Abort the transaction in progress, if any. */
static void
tx_abort(struct smtpd_proto *p)
{
    if (p->state == SMTPD_S_DATA)
        p->ops->data_abort(p->arg);
    envelope_reset(p->env);
    if (p->state == SMTPD_S_MAIL || p->state == SMTPD_S_DATA)
        p->state = SMTPD_S_IDLE;
}

static void
do_helo(struct smtpd_proto *p, const char *args, int esmtp)
{
    if (*args == '\0') {
        reply_error(p, esmtp ? "501 5.5.4 Syntax: EHLO hostname"
                             : "501 5.5.4 Syntax: HELO hostname");
        return;
    }
    char *h = strdup(args);
    if (h == NULL) {
        smtpd_proto_shutdown(p, "421 4.3.0 Error: out of memory");
        return;
    }
    free(p->helo);
    p->helo = h;
    p->esmtp = esmtp;
    tx_abort(p);
    envelope_reset(p->env);
    p->state = SMTPD_S_IDLE;
    if (!esmtp) {
        reply(p, "250 %s", p->lim->hostname);
        return;
    }
    char size[64];
    if (p->lim->max_message_size > 0)
        snprintf(size, sizeof(size), "SIZE %lld", (long long)p->lim->max_message_size);
    else
        snprintf(size, sizeof(size), "SIZE");
    reply(p, "250-%s", p->lim->hostname);
    reply(p, "250-PIPELINING");
    reply(p, "250-%s", size);
    reply(p, "250-ENHANCEDSTATUSCODES");
    reply(p, "250-8BITMIME");
    reply(p, "250-DSN");
    if (p->xforward_allowed) {
        reply(p, "250-SMTPUTF8");
        reply(p, "250 XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE");
    } else {
        reply(p, "250 SMTPUTF8");
    }
}

static void
do_mail(struct smtpd_proto *p, char *args)
{
    struct smtp_path_cmd pc;
    const char *bad = NULL;

    if (p->state == SMTPD_S_HELO || p->state == SMTPD_S_GREETING) {
        reply_error(p, "503 5.5.1 Error: send HELO/EHLO first");
        return;
    }
    if (p->state == SMTPD_S_MAIL) {
        reply_error(p, "503 5.5.1 Error: nested MAIL command");
        return;
    }
    int rc = smtp_cmd_parse_path(args, 1, &pc, &bad);
    if (rc == SMTP_PATH_ESYNTAX) {
        reply_error(p, "501 5.5.4 Syntax: MAIL FROM:<address>");
        return;
    }
    /*
     * A well-formed SIZE=digits too large to represent is too large for us:
     * the parser says so (pc.size_overflow); every other bad parameter,
     * "SIZE" without '=' or without a value included, is a 555 counted as an
     * error. Nothing is read past the parameter the parser returned.
     */
    if (rc == SMTP_PATH_EPARAM && pc.size_overflow) {
        reply(p, "552 5.3.4 Message size exceeds fixed limit");
        return;
    }
    if (rc == SMTP_PATH_EPARAM) {
        char buf[256];
        snprintf(buf, sizeof(buf), "555 5.5.4 Unsupported option: %.200s", bad ? bad : "");
        reply_error(p, buf);
        return;
    }
    if (p->lim->max_message_size > 0 && pc.size > p->lim->max_message_size) {
        reply(p, "552 5.3.4 Message size exceeds fixed limit");
        return;
    }
    if (envelope_set_sender(p->env, pc.addr) < 0 ||
        (pc.envid && (p->env->envid = strdup(pc.envid)) == NULL)) {
        envelope_reset(p->env);
        smtpd_proto_shutdown(p, "421 4.3.0 Error: out of memory");
        return;
    }
    p->env->ret = pc.ret == 1 ? DSN_RET_FULL : pc.ret == 2 ? DSN_RET_HDRS : DSN_RET_NONE;
    p->env->body = pc.body == 1 ? BODY_7BIT : pc.body == 2 ? BODY_8BITMIME : BODY_NONE;
    p->env->smtputf8 = pc.smtputf8;
    p->state = SMTPD_S_MAIL;
    reply(p, "250 2.1.0 Ok");
}

static void
do_rcpt(struct smtpd_proto *p, char *args)
{
    struct smtp_path_cmd pc;
    const char *bad = NULL;

    if (p->state != SMTPD_S_MAIL) {
        reply_error(p, "503 5.5.1 Error: need MAIL command");
        return;
    }
    if (p->env->nrcpt >= p->lim->max_recipients) {
        reply(p, "452 4.5.3 Error: too many recipients");
        return;
    }
    int rc = smtp_cmd_parse_path(args, 0, &pc, &bad);
    if (rc == SMTP_PATH_ESYNTAX || (rc == 0 && pc.addr[0] == '\0')) {
        reply_error(p, "501 5.5.4 Syntax: RCPT TO:<address>");
        return;
    }
    if (rc == SMTP_PATH_EPARAM) {
        char buf[256];
        snprintf(buf, sizeof(buf), "555 5.5.4 Unsupported option: %.200s", bad ? bad : "");
        reply_error(p, buf);
        return;
    }
    if (envelope_add_rcpt(p->env, pc.addr, pc.orcpt, pc.notify) < 0) {
        smtpd_proto_shutdown(p, "421 4.3.0 Error: out of memory");
        return;
    }
    reply(p, "250 2.1.5 Ok");
}

static void
do_data(struct smtpd_proto *p, const char *args)
{
    if (*args) {
        reply_error(p, "501 5.5.4 Syntax: DATA");
        return;
    }
    if (p->state != SMTPD_S_MAIL) {
        reply_error(p, p->state == SMTPD_S_HELO ? "503 5.5.1 Error: send HELO/EHLO first"
                                                : "503 5.5.1 Error: need RCPT command");
        return;
    }
    if (p->env->nrcpt == 0) {
        reply_error(p, "554 5.5.1 Error: no valid recipients");
        return;
    }
    if (p->ops->data_begin(p->arg) < 0) {
        reply(p, "451 4.3.0 Error: cannot store the message, try again later");
        tx_abort(p);
        return;
    }
    p->state = SMTPD_S_DATA;
    p->data_state = DS_LINE_START;
    p->data_last_cr = 0;
    p->data_size = 0;
    p->data_too_big = 0;
    p->data_error = 0;
    reply(p, "354 End data with <CR><LF>.<CR><LF>");
}

static void
xf_set(void *arg, int idx, const char *value)
{
    struct smtpd_proto *p = arg;
    if (idx >= 0 && idx < XF_COUNT && envelope_set_xforward(p->env, (enum xf_attr)idx, value) < 0)
        p->data_error = ENOMEM;
}

static void
do_xforward(struct smtpd_proto *p, char *args)
{
    if (!p->xforward_allowed) {
        reply_error(p, "550 5.7.0 Error: insufficient authorization");
        return;
    }
    if (p->state == SMTPD_S_MAIL) {
        reply_error(p, "503 5.5.1 Error: MAIL transaction in progress");
        return;
    }
    if (p->state == SMTPD_S_HELO) {
        reply_error(p, "503 5.5.1 Error: send HELO/EHLO first");
        return;
    }
    if (*args == '\0') {
        reply_error(p, "501 5.5.4 Syntax: XFORWARD attribute=value...");
        return;
    }
    p->data_error = 0;
    if (smtp_cmd_parse_xforward(args, xf_set, p) < 0) {
        reply_error(p, "501 5.5.4 Bad XFORWARD attribute name");
        return;
    }
    if (p->data_error) {
        smtpd_proto_shutdown(p, "421 4.3.0 Error: out of memory");
        return;
    }
    reply(p, "250 2.0.0 Ok");
}

/* One complete command line (CR LF removed). */
static void
do_command(struct smtpd_proto *p, char *line, size_t len)
{
    const char *args;

    if (++p->ncommands > p->lim->max_commands) {
        smtpd_proto_shutdown(p, "421 4.7.0 Error: too many commands");
        return;
    }
    if (memchr(line, '\0', len) != NULL || len == 0) {
        reply_error(p, "500 5.5.2 Error: bad syntax");
        return;
    }
    enum smtp_verb v = smtp_cmd_verb(line, &args);
    char *a = (char *)(uintptr_t)args; /* args points into line, which we own */

    switch (v) {
    case CMD_HELO:
        do_helo(p, args, 0);
        break;
    case CMD_EHLO:
        do_helo(p, args, 1);
        break;
    case CMD_MAIL:
        do_mail(p, a);
        break;
    case CMD_RCPT:
        do_rcpt(p, a);
        break;
    case CMD_DATA:
        do_data(p, args);
        break;
    case CMD_RSET:
        tx_abort(p);
        reply(p, "250 2.0.0 Ok");
        break;
    case CMD_NOOP:
        reply(p, "250 2.0.0 Ok");
        break;
    case CMD_QUIT:
        reply(p, "221 2.0.0 Bye");
        tx_abort(p);
        p->state = SMTPD_S_QUIT;
        p->ops->close(p->arg);
        break;
    case CMD_VRFY:
        if (*args == '\0')
            reply_error(p, "501 5.5.4 Syntax: VRFY address");
        else
            reply(p, "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery");
        break;
    case CMD_HELP:
        reply(p, "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY XFORWARD");
        break;
    case CMD_XFORWARD:
        do_xforward(p, a);
        break;
    case CMD_BDAT:
    case CMD_STARTTLS:
    case CMD_AUTH:
    case CMD_ETRN:
    case CMD_EXPN:
        reply_error(p, "502 5.5.1 Error: command not implemented");
        break;
    case CMD_UNKNOWN:
    default:
        reply_error(p, "502 5.5.2 Error: command not recognized");
        break;
    }
}

/* Pass unstuffed body bytes on, enforcing the size limit. */
static void
data_emit(struct smtpd_proto *p, const char *buf, size_t len)
{
    if (len == 0)
        return;
    /*
     * Too big is decided by the total alone, before a store error, so the
     * reply does not depend on how the bytes were chunked: a message over
     * the limit gets 552 even when the store failed on earlier bytes.
     */
    p->data_size += (int64_t)len;
    if (p->lim->max_message_size > 0 && p->data_size > p->lim->max_message_size)
        p->data_too_big = 1;
    if (p->data_too_big || p->data_error)
        return;
    if (p->ops->data_chunk(p->arg, buf, len) < 0)
        p->data_error = errno ? errno : EIO;
}

/* The final dot was seen: answer now (limit, store error) or hand over. */
static void
data_done(struct smtpd_proto *p)
{
    if (p->data_too_big || p->data_error) {
        int e = p->data_error;
        int big = p->data_too_big;
        p->ops->data_abort(p->arg);
        envelope_reset(p->env);
        p->state = SMTPD_S_IDLE;
        if (big)
            reply(p, "552 5.3.4 Message size exceeds fixed limit");
        else if (e == ENOSPC || e == EDQUOT)
            reply(p, "452 4.3.1 Insufficient system storage");
        else
            reply(p, "451 4.3.0 Error: cannot store the message, try again later");
        return;
    }
    struct envelope *env = p->env;
    p->env = envelope_new();
    if (p->env == NULL) {
        p->env = env;
        p->ops->data_abort(p->arg);
        envelope_reset(p->env);
        smtpd_proto_shutdown(p, "421 4.3.0 Error: out of memory");
        return;
    }
    p->state = SMTPD_S_WAIT;
    p->ops->data_end(p->arg, env, p->data_size);
}

/*
 * Body bytes; returns bytes consumed (stops right after the final dot).
 * Only CR LF ends a line here: a '.' after a bare LF is content, and only
 * CR LF "." CR LF ends the data (no SMTP smuggling through "\n.\n").
 */
static size_t
data_feed(struct smtpd_proto *p, const char *buf, size_t len)
{
    size_t i = 0, start = 0;

    while (i < len) {
        switch (p->data_state) {
        case DS_LINE_START:
            if (buf[i] == '.') {
                data_emit(p, buf + start, i - start);
                i++;
                start = i;
                p->data_state = DS_DOT;
            } else {
                p->data_state = DS_MID;
            }
            break;
        case DS_MID: {
            const char *nl = memchr(buf + i, '\n', len - i);
            if (nl == NULL) {
                i = len;
                p->data_last_cr = buf[len - 1] == '\r';
                break;
            }
            size_t k = (size_t)(nl - buf);
            int cr = k > 0 ? buf[k - 1] == '\r' : p->data_last_cr;
            i = k + 1;
            p->data_last_cr = 0;
            if (cr)
                p->data_state = DS_LINE_START;
            break;
        }
        case DS_DOT:
            if (buf[i] == '\r') {
                i++;
                start = i;
                p->data_state = DS_DOT_CR;
            } else {
                p->data_state = DS_MID; /* the stuffed dot is dropped */
                p->data_last_cr = 0;
            }
            break;
        case DS_DOT_CR:
            if (buf[i] == '\n') {
                data_done(p);
                return i + 1;
            }
            data_emit(p, "\r", 1); /* ".\rX": the CR was content */
            p->data_state = DS_MID;
            p->data_last_cr = 1;
            break;
        }
    }
    if (p->data_state != DS_DOT_CR)
        data_emit(p, buf + start, len - start);
    return len;
}

size_t
smtpd_proto_feed(struct smtpd_proto *p, const char *buf, size_t len)
{
    size_t used = 0;

    while (used < len) {
        if (p->state == SMTPD_S_WAIT || p->state == SMTPD_S_QUIT)
            break;
        if (p->state == SMTPD_S_DATA) {
            used += data_feed(p, buf + used, len - used);
            continue;
        }

        /*
         * Assemble a command line; the part beyond the limit is dropped and
         * the whole line answered with 500 when it ends.
         */
        const char *nl = memchr(buf + used, '\n', len - used);
        size_t seg = nl ? (size_t)(nl - (buf + used)) : len - used;
        if (!p->line_overflow) {
            if (p->linelen + seg > p->lim->max_command_length + 1) { /* + CR */
                p->line_overflow = 1;
            } else {
                memcpy(p->line + p->linelen, buf + used, seg);
                p->linelen += seg;
            }
        }
        used += seg;
        if (nl == NULL)
            break;
        used++; /* the LF */
        size_t n = p->linelen;
        int overflow = p->line_overflow;
        p->linelen = 0;
        p->line_overflow = 0;
        if (overflow) {
            if (++p->ncommands > p->lim->max_commands)
                smtpd_proto_shutdown(p, "421 4.7.0 Error: too many commands");
            else
                reply_error(p, "500 5.5.2 Error: command line too long");
            continue;
        }
        if (n > 0 && p->line[n - 1] == '\r')
            n--;
        if (n > p->lim->max_command_length) {
            reply_error(p, "500 5.5.2 Error: command line too long");
            continue;
        }
        p->line[n] = '\0';
        if (p->state == SMTPD_S_GREETING)
            p->state = SMTPD_S_HELO;
        do_command(p, p->line, n);
    }
    return used;
}

void
smtpd_proto_tx_done(struct smtpd_proto *p, const char *text)
{
    if (p->state != SMTPD_S_WAIT)
        return;
    envelope_reset(p->env);
    p->state = SMTPD_S_IDLE;
    /* Multi-line replies (passed-back downstream ones) come with CRLF inside. */
    p->ops->output(p->arg, text, strlen(text));
    p->ops->output(p->arg, "\r\n", 2);
}

void
smtpd_proto_shutdown(struct smtpd_proto *p, const char *text)
{
    if (p->state == SMTPD_S_QUIT)
        return;
    if (p->state == SMTPD_S_DATA)
        p->ops->data_abort(p->arg);
    reply(p, "%s", text);
    p->state = SMTPD_S_QUIT;
    p->ops->close(p->arg);
}
