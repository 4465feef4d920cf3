/*
 * smtp_cmd.c - parsing of inbound SMTP command lines, no I/O.
 *
 * Public calls:
 *   smtp_cmd_verb()           recognise the verb of one command line.
 *   smtp_cmd_parse_path()     split "FROM:<addr> params" / "TO:<addr> params"
 *                             into the address and the ESMTP parameters we
 *                             support (SIZE BODY SMTPUTF8 RET ENVID on MAIL,
 *                             NOTIFY ORCPT on RCPT).
 *   smtp_cmd_parse_xforward() split "NAME=x ADDR=y ..." and hand each decoded
 *                             attribute to a callback: all of them or, on
 *                             any error, none. Decoded control characters
 *                             are replaced by '?' (log and header safety).
 *
 * The caller passes one command line without its CRLF. Nothing is
 * allocated except the short-lived xtext decodings of XFORWARD values,
 * which are freed before smtp_cmd_parse_xforward() returns. The path
 * parser works in place: it writes NULs into the caller's buffer and the
 * strings it returns point into that buffer, so they live as long as it.
 *
 * Address syntax is tolerant where Postfix is (spaces after the colon, a
 * bare address without brackets, source routes that are reduced to the
 * mailbox) and strict where sloppiness would be dangerous: control
 * characters, unbalanced brackets or quotes and "RCPT TO:<>" are syntax
 * errors (SMTP_PATH_ESYNTAX). A parameter that is unknown, repeated, badly
 * formed or belongs to the other command is SMTP_PATH_EPARAM, with *bad
 * naming it. Failures never abort the program.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "envelope.h"
#include "smtp_cmd.h"

#define ENVID_MAX 100    /* RFC 3461 4.4 */
#define ORCPT_MAX 500    /* RFC 3461 4.2 */
#define XF_VALUE_MAX 255 /* as Postfix smtpd */

static const struct {
    const char *name;
    enum smtp_verb verb;
} verbs[] = {
    {"HELO", CMD_HELO},         {"EHLO", CMD_EHLO}, {"MAIL", CMD_MAIL},         {"RCPT", CMD_RCPT},
    {"DATA", CMD_DATA},         {"RSET", CMD_RSET}, {"NOOP", CMD_NOOP},         {"QUIT", CMD_QUIT},
    {"VRFY", CMD_VRFY},         {"HELP", CMD_HELP}, {"XFORWARD", CMD_XFORWARD}, {"BDAT", CMD_BDAT},
    {"STARTTLS", CMD_STARTTLS}, {"AUTH", CMD_AUTH}, {"ETRN", CMD_ETRN},         {"EXPN", CMD_EXPN},
};

static int
is_space(int c)
{
    return c == ' ' || c == '\t';
}

static int
is_ctrl(int c)
{
    return (c >= 0 && c < 32) || c == 127;
}

static int
is_alnum(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* Verb of a command line; unknown verbs leave *args at the line start. */
enum smtp_verb
smtp_cmd_verb(const char *line, const char **args)
{
    size_t n = 0;
    while (line[n] != '\0' && !is_space((unsigned char)line[n]) && line[n] != '\r' &&
           line[n] != '\n')
        n++;
    if (args)
        *args = line;
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (strlen(verbs[i].name) == n && strncasecmp(line, verbs[i].name, n) == 0) {
            const char *a = line + n;
            while (is_space((unsigned char)*a))
                a++;
            if (args)
                *args = a;
            return verbs[i].verb;
        }
    }
    return CMD_UNKNOWN;
}

/* RFC 3461 xtext syntax check of s (NUL-terminated): 0 ok, -1 bad. */
static int
xtext_valid(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '+') {
            for (int i = 1; i <= 2; i++)
                if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'A' && p[i] <= 'F')))
                    return -1;
            p += 2;
        } else if (*p < 33 || *p > 126 || *p == '=') {
            return -1;
        }
    }
    return 0;
}

/*
 * Scan a quoted string starting at *p == '"'; leaves p on the closing
 * quote. -1 when it is not closed.
 */
static int
skip_quoted(char **pp)
{
    char *p = *pp + 1;
    for (;;) {
        if (*p == '\0' || is_ctrl((unsigned char)*p))
            return -1;
        if (*p == '\\') {
            if (p[1] == '\0' || is_ctrl((unsigned char)p[1]))
                return -1;
            p += 2;
            continue;
        }
        if (*p == '"')
            break;
        p++;
    }
    *pp = p;
    return 0;
}

/*
 * Find the mailbox in a bracketed path content (between < and >, already
 * NUL-terminated). Drops an RFC 5321 source route "@a,@b:". NULL on bad syntax.
 */
static char *
strip_route(char *s)
{
    if (*s != '@')
        return s;
    /* Source route: @domain *("," @domain) ":" mailbox. */
    char *p = s;
    for (;;) {
        if (*p != '@')
            return NULL;
        p++;
        size_t n = strcspn(p, ",:@\"");
        if (n == 0)
            return NULL;
        p += n;
        if (*p == ':')
            return p + 1;
        if (*p != ',')
            return NULL;
        p++;
    }
}

/* Parse the address at *pp, NUL-terminate it and leave *pp after it. */
static int
parse_addr(char **pp, int is_mail, char **addr)
{
    char *p = *pp;

    if (*p == '<') {
        /* Bracketed path: find the closing '>' outside quotes. */
        char *start = p + 1, *q = start;
        for (;;) {
            if (*q == '\0' || *q == '<' || is_space((unsigned char)*q))
                return SMTP_PATH_ESYNTAX;
            if (*q == '"') {
                if (skip_quoted(&q) < 0)
                    return SMTP_PATH_ESYNTAX;
            } else if (*q == '>') {
                break;
            }
            q++;
        }
        if (q[1] != '\0' && !is_space((unsigned char)q[1]))
            return SMTP_PATH_ESYNTAX;
        *q = '\0';
        char *mbox = strip_route(start);
        if (mbox == NULL)
            return SMTP_PATH_ESYNTAX;
        if (*mbox == '\0' && (!is_mail || mbox != start))
            return SMTP_PATH_ESYNTAX;
        *addr = mbox;
        *pp = q + 1;
        return SMTP_PATH_OK;
    }

    /* Bare address, as Postfix tolerates: up to the first unquoted space. */
    char *q = p;
    while (*q != '\0' && !is_space((unsigned char)*q)) {
        if (*q == '<' || *q == '>')
            return SMTP_PATH_ESYNTAX;
        if (*q == '"' && skip_quoted(&q) < 0)
            return SMTP_PATH_ESYNTAX;
        q++;
    }
    if (q == p)
        return SMTP_PATH_ESYNTAX;
    if (*q != '\0')
        *q++ = '\0';
    *addr = p;
    *pp = q;
    return SMTP_PATH_OK;
}

/* MAIL FROM parameter. */
static int
mail_param(struct smtp_path_cmd *out, const char *key, char *val)
{
    if (strcasecmp(key, "SIZE") == 0) {
        if (out->size >= 0 || val == NULL || *val == '\0')
            return -1;
        int64_t v = 0;
        for (const char *s = val; *s; s++) {
            if (*s < '0' || *s > '9')
                return -1;
            if (v > (INT64_MAX - (*s - '0')) / 10) {
                /* Well formed but beyond int64: too large for any limit. */
                out->size_overflow = s[strspn(s, "0123456789")] == '\0';
                return -1;
            }
            v = v * 10 + (*s - '0');
        }
        out->size = v;
    } else if (strcasecmp(key, "BODY") == 0) {
        if (out->body || val == NULL)
            return -1;
        if (strcasecmp(val, "7BIT") == 0)
            out->body = BODY_7BIT;
        else if (strcasecmp(val, "8BITMIME") == 0)
            out->body = BODY_8BITMIME;
        else
            return -1;
    } else if (strcasecmp(key, "SMTPUTF8") == 0) {
        if (out->smtputf8 || val != NULL)
            return -1;
        out->smtputf8 = 1;
    } else if (strcasecmp(key, "RET") == 0) {
        if (out->ret || val == NULL)
            return -1;
        if (strcasecmp(val, "FULL") == 0)
            out->ret = DSN_RET_FULL;
        else if (strcasecmp(val, "HDRS") == 0)
            out->ret = DSN_RET_HDRS;
        else
            return -1;
    } else if (strcasecmp(key, "ENVID") == 0) {
        if (out->envid || val == NULL || *val == '\0' || strlen(val) > ENVID_MAX ||
            xtext_valid(val) < 0)
            return -1;
        out->envid = val;
    } else {
        return -1;
    }
    return 0;
}

/* RCPT TO parameter. */
static int
rcpt_param(struct smtp_path_cmd *out, const char *key, char *val)
{
    if (strcasecmp(key, "NOTIFY") == 0) {
        if (out->notify || val == NULL || dsn_notify_parse(val, &out->notify) < 0)
            return -1;
    } else if (strcasecmp(key, "ORCPT") == 0) {
        if (out->orcpt || val == NULL || strlen(val) > ORCPT_MAX)
            return -1;
        /* addr-type ";" xtext, addr-type an atom. */
        char *semi = strchr(val, ';');
        if (semi == NULL || semi == val || semi[1] == '\0')
            return -1;
        for (const char *s = val; s < semi; s++)
            if (!is_alnum((unsigned char)*s) && *s != '-')
                return -1;
        if (xtext_valid(semi + 1) < 0)
            return -1;
        out->orcpt = val;
    } else {
        return -1;
    }
    return 0;
}

int
smtp_cmd_parse_path(char *args, int is_mail, struct smtp_path_cmd *out, const char **bad)
{
    const char *kw = is_mail ? "FROM:" : "TO:";
    size_t kwlen = strlen(kw);
    char *p = args;
    int rc;

    /*
     * Initialize.
     */
    memset(out, 0, sizeof(*out));
    out->size = -1;
    if (bad)
        *bad = NULL;

    /*
     * Sanity checks: no control characters but tabs between words.
     */
    for (const char *s = args; *s; s++)
        if (is_ctrl((unsigned char)*s) && *s != '\t')
            return SMTP_PATH_ESYNTAX;
    if (strncasecmp(p, kw, kwlen) != 0)
        return SMTP_PATH_ESYNTAX;
    p += kwlen;
    while (is_space((unsigned char)*p))
        p++;

    /*
     * The address.
     */
    if ((rc = parse_addr(&p, is_mail, &out->addr)) != SMTP_PATH_OK)
        return rc;

    /*
     * Parameters: KEY or KEY=VALUE, separated by spaces.
     */
    int nparams = 0;
    for (;;) {
        while (is_space((unsigned char)*p))
            p++;
        if (*p == '\0')
            break;
        char *key = p, *val = NULL;
        while (*p != '\0' && !is_space((unsigned char)*p))
            p++;
        if (*p != '\0')
            *p++ = '\0';
        char *eq = strchr(key, '=');
        if (eq) {
            *eq = '\0';
            val = eq + 1;
        }
        if (bad)
            *bad = key;
        if (++nparams > SMTP_MAX_PARAMS || *key == '\0')
            return SMTP_PATH_EPARAM;
        for (const char *s = key; *s; s++)
            if (!is_alnum((unsigned char)*s) && !(*s == '-' && s != key))
                return SMTP_PATH_EPARAM;
        if ((is_mail ? mail_param(out, key, val) : rcpt_param(out, key, val)) < 0)
            return SMTP_PATH_EPARAM;
    }
    if (bad)
        *bad = NULL;
    return SMTP_PATH_OK;
}

/* Attribute index of an XFORWARD name, or -1. */
static int
xf_index(const char *name)
{
    for (int i = 0; i < XF_COUNT; i++)
        if (strcasecmp(name, xf_attr_names[i]) == 0)
            return i;
    return -1;
}

/*
 * Decoded XFORWARD values end up in logs and headers: control characters
 * become '?', as Postfix's printable() does. An encoded NUL ("+00"), which
 * xtext_decode() cannot represent, makes the value bad (-1).
 */
static int
neuter(char *dec, const char *raw)
{
    size_t want = strlen(raw);
    for (const char *s = raw; (s = strchr(s, '+')) != NULL; s++)
        want -= 2;
    if (strlen(dec) != want)
        return -1;
    for (char *s = dec; *s; s++)
        if (is_ctrl((unsigned char)*s))
            *s = '?';
    return 0;
}

int
smtp_cmd_parse_xforward(char *args, void (*cb)(void *, int, const char *), void *arg)
{
    char *val[XF_COUNT] = {0};
    int order[XF_COUNT], n = 0, rc = -1;
    char *p = args;

    /*
     * Parse and decode everything first: the callback sees all attributes
     * of a valid command or none.
     */
    for (;;) {
        while (is_space((unsigned char)*p))
            p++;
        if (*p == '\0')
            break;
        char *name = p;
        while (*p != '\0' && !is_space((unsigned char)*p))
            p++;
        if (*p != '\0')
            *p++ = '\0';
        char *v = strchr(name, '=');
        if (v == NULL)
            goto out;
        *v++ = '\0';
        int i = xf_index(name);
        if (i < 0 || val[i] != NULL || *v == '\0' || strlen(v) > XF_VALUE_MAX)
            goto out;
        if (strcasecmp(v, "[UNAVAILABLE]") == 0 || strcasecmp(v, "[TEMPUNAVAIL]") == 0)
            val[i] = strdup(v);
        else
            val[i] = xtext_decode(v);
        if (val[i] == NULL || neuter(val[i], v) < 0)
            goto out;
        order[n++] = i;
    }
    if (n == 0)
        goto out;
    for (int k = 0; k < n; k++)
        cb(arg, order[k], val[order[k]]);
    rc = 0;
out:
    for (int i = 0; i < XF_COUNT; i++)
        free(val[i]);
    return rc;
}
