/*
 * dsn.c - builds RFC 3464 delivery status notifications: a
 * multipart/report with a human-readable part, the message/delivery-status
 * part (Reporting-MTA, Original-Envelope-Id, Arrival-Date, and per
 * recipient Final-Recipient, Original-Recipient, Action, Status,
 * Remote-MTA, Diagnostic-Code) and the returned message: headers only for
 * RET=HDRS or a message over full_limit, else the whole message.
 *
 * Pure: no I/O but the caller's pread; the result is one malloc'd buffer
 * the caller owns. Fails with -1 on no memory or a read error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dsn.h"

struct dbuf {
    char *p;
    size_t len, cap;
    int err;
};

static void
db_add(struct dbuf *b, const void *s, size_t n)
{
    if (b->err)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (np == NULL) {
            b->err = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void db_printf(struct dbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
db_printf(struct dbuf *b, const char *fmt, ...)
{
    char tmp[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    db_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void
rfc2822_date(time_t t, char *buf, size_t len)
{
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

int
dsn_wanted(const struct env_rcpt *r, const char *action)
{
    if (r->notify == 0)
        return strcmp(action, "failed") == 0 || strcmp(action, "delayed") == 0;
    if (r->notify & DSN_NOTIFY_NEVER)
        return 0;
    if (strcmp(action, "failed") == 0)
        return (r->notify & DSN_NOTIFY_FAILURE) != 0;
    if (strcmp(action, "delayed") == 0)
        return (r->notify & DSN_NOTIFY_DELAY) != 0;
    return 0;
}

/* Copy the original: all of it, or up to the end of the header. */
static int
add_original(struct dbuf *b, const struct dsn_req *req, int headers_only)
{
    char buf[65536];
    off_t off = 0;
    int at_line_start = 1;
    while (off < req->size) {
        ssize_t n = req->pread(req->ctx, buf, sizeof(buf), off);
        if (n <= 0)
            return -1;
        size_t take = (size_t)n;
        if (headers_only) {
            /* Stop at the first empty line. */
            for (size_t i = 0; i < (size_t)n; i++) {
                if (at_line_start && (buf[i] == '\n' || (buf[i] == '\r' && i + 1 < (size_t)n &&
                                                          buf[i + 1] == '\n'))) {
                    db_add(b, buf, i);
                    return 0;
                }
                at_line_start = buf[i] == '\n';
            }
        }
        db_add(b, buf, take);
        off += n;
    }
    return 0;
}

int
dsn_build(const struct dsn_req *req, char **out, size_t *outlen)
{
    struct dbuf b = {0};
    char date[64], arr[64], boundary[128];
    time_t now = time(NULL);
    int failed = strcmp(req->action, "failed") == 0;
    int headers_only = req->env->ret == DSN_RET_HDRS ||
                       (req->env->ret != DSN_RET_FULL && (size_t)req->size > req->full_limit);

    rfc2822_date(now, date, sizeof(date));
    rfc2822_date(req->arrival, arr, sizeof(arr));
    snprintf(boundary, sizeof(boundary), "%s.%lld/%s", req->qid, (long long)now, req->hostname);

    /*
     * Headers.
     */
    db_printf(&b, "From: MAILER-DAEMON@%s (Mail Delivery System)\r\n", req->hostname);
    db_printf(&b, "To: <%s>\r\n", req->env->sender);
    db_printf(&b, "Subject: %s\r\n", failed ? "Undelivered Mail Returned to Sender"
                                            : "Delayed Mail (still being retried)");
    db_printf(&b, "Date: %s\r\n", date);
    db_printf(&b, "Message-ID: <%s.%lld.dsn@%s>\r\n", req->qid, (long long)now, req->hostname);
    db_printf(&b, "Auto-Submitted: auto-replied\r\n");
    db_printf(&b, "MIME-Version: 1.0\r\n");
    db_printf(&b,
              "Content-Type: multipart/report; report-type=delivery-status;\r\n"
              "\tboundary=\"%s\"\r\n",
              boundary);
    db_printf(&b, "Content-Transfer-Encoding: 8bit\r\n\r\n");
    db_printf(&b, "This is a MIME-encapsulated message.\r\n\r\n");

    /*
     * Human-readable part.
     */
    db_printf(&b, "--%s\r\nContent-Description: Notification\r\n"
                  "Content-Type: text/plain; charset=us-ascii\r\n\r\n", boundary);
    db_printf(&b, "This is the scanrelay mail system at host %s.\r\n\r\n", req->hostname);
    if (failed) {
        db_printf(&b, "I'm sorry to have to inform you that your message could not\r\n"
                      "be delivered to one or more recipients%s. It's attached below.\r\n\r\n",
                  req->reason ? " before it expired" : "");
    } else {
        db_printf(&b, "Your message could not be delivered yet to one or more recipients.\r\n"
                      "It will be retried; you do not need to send it again.\r\n\r\n");
    }
    db_printf(&b, "Queue ID: %s\r\n\r\n", req->qid);
    for (size_t i = 0; i < req->nrcpts; i++)
        db_printf(&b, "<%s>: %s\r\n", req->rcpts[i].rcpt->addr, req->rcpts[i].diag);
    db_printf(&b, "\r\n");

    /*
     * Machine-readable part.
     */
    db_printf(&b, "--%s\r\nContent-Description: Delivery report\r\n"
                  "Content-Type: message/delivery-status\r\n\r\n", boundary);
    db_printf(&b, "Reporting-MTA: dns; %s\r\n", req->hostname);
    db_printf(&b, "X-Scanrelay-Queue-ID: %s\r\n", req->qid);
    if (req->env->envid) {
        char *e = xtext_decode(req->env->envid);
        db_printf(&b, "Original-Envelope-Id: %s\r\n", e ? e : req->env->envid);
        free(e);
    }
    db_printf(&b, "Arrival-Date: %s\r\n", arr);
    for (size_t i = 0; i < req->nrcpts; i++) {
        const struct dsn_rcpt *r = &req->rcpts[i];
        db_printf(&b, "\r\nFinal-Recipient: rfc822; %s\r\n", r->rcpt->addr);
        if (r->rcpt->orcpt) {
            const char *semi = strchr(r->rcpt->orcpt, ';');
            char *dec = semi ? xtext_decode(semi + 1) : NULL;
            if (semi && dec)
                db_printf(&b, "Original-Recipient: %.*s; %s\r\n", (int)(semi - r->rcpt->orcpt),
                          r->rcpt->orcpt, dec);
            free(dec);
        }
        db_printf(&b, "Action: %s\r\n", req->action);
        db_printf(&b, "Status: %s\r\n", r->status);
        if (req->remote_mta)
            db_printf(&b, "Remote-MTA: dns; %s\r\n", req->remote_mta);
        /* An SMTP reply is "smtp;"; our own words (connect failures) are not. */
        int is_reply = r->diag[0] >= '2' && r->diag[0] <= '5' && r->diag[1] >= '0' &&
                       r->diag[1] <= '9' && r->diag[2] >= '0' && r->diag[2] <= '9' &&
                       (r->diag[3] == ' ' || r->diag[3] == '-' || r->diag[3] == '\0');
        db_printf(&b, "Diagnostic-Code: %s; %s\r\n", is_reply ? "smtp" : "X-Scanrelay",
                  r->diag);
    }
    db_printf(&b, "\r\n");

    /*
     * The returned message.
     */
    db_printf(&b, "--%s\r\nContent-Description: Undelivered Message%s\r\n"
                  "Content-Type: %s\r\n\r\n",
              boundary, headers_only ? " Headers" : "",
              headers_only ? "text/rfc822-headers" : "message/rfc822");
    if (add_original(&b, req, headers_only) < 0) {
        free(b.p);
        return -1;
    }
    if (b.len >= 2 && b.p[b.len - 1] != '\n')
        db_printf(&b, "\r\n");
    db_printf(&b, "\r\n--%s--\r\n", boundary);
    if (b.err) {
        free(b.p);
        return -1;
    }
    *out = b.p;
    *outlen = b.len;
    return 0;
}
