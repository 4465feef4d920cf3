/*
 * smtp_reply.c - incremental parser of SMTP server replies, for the client
 * side of the relay. No I/O.
 *
 * Public calls:
 *   smtp_reply_parser_init()  start with an empty parser.
 *   smtp_reply_feed()         consume bytes in any chunking, stopping after
 *                             one complete (possibly multi-line) reply.
 *   smtp_reply_enhanced()     the RFC 3463 status code of the first line;
 *                             returns its length, 0 when there is none or
 *                             it does not fit (out is then "").
 *   smtp_reply_first_line()   "CODE text" of the first line.
 *
 * Lines end in CRLF or a bare LF. "CODE-text" continues a reply and
 * "CODE text" or a bare "CODE" ends it; every line must carry the same
 * code. A code is three digits, the first 2..5 and the second 0..5
 * (RFC 5321 4.2). The parser owns no memory: the reply lives in the
 * parser's fixed buffers. Lines longer than the line buffer and replies
 * longer than SMTP_REPLY_MAX - 1 bytes are truncated, never rejected, and
 * the rest is consumed; a peer cannot make the parser grow. A malformed
 * line ends the reply with code 0 and p->error set; the next byte starts
 * a new reply.
 */
#include <string.h>

#include "smtp_reply.h"

void
smtp_reply_parser_init(struct smtp_reply_parser *p)
{
    memset(p, 0, sizeof(*p));
}

/* Append s[0..n) to the reply text, truncating at the buffer end. */
static void
text_append(struct smtp_reply *r, const char *s, size_t n)
{
    size_t room = sizeof(r->text) - 1 - r->len;
    if (n > room)
        n = room;
    memcpy(r->text + r->len, s, n);
    r->len += n;
    r->text[r->len] = '\0';
}

/* Code of one reply line, or 0 when the line is malformed. */
static int
line_code(const char *s, size_t n)
{
    if (n < 3 || s[0] < '2' || s[0] > '5' || s[1] < '0' || s[1] > '5' || s[2] < '0' || s[2] > '9')
        return 0;
    if (n > 3 && s[3] != ' ' && s[3] != '-')
        return 0;
    return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

/* One complete line in p->line: 1 when it ends the reply, 0 when more follow. */
static int
line_done(struct smtp_reply_parser *p)
{
    size_t n = p->linelen;
    if (n > 0 && p->line[n - 1] == '\r')
        n--;
    int code = line_code(p->line, n);

    if (p->cur.len > 0)
        text_append(&p->cur, "\n", 1);
    text_append(&p->cur, p->line, n);
    p->linelen = 0;
    if (code == 0 || (p->in_progress > 0 && code != p->cur.code)) {
        p->cur.code = 0;
        p->error = 1;
        p->in_progress = 0;
        return 1;
    }
    p->cur.code = code;
    if (n > 3 && p->line[3] == '-') {
        p->in_progress++;
        return 0;
    }
    p->in_progress = 0;
    return 1;
}

size_t
smtp_reply_feed(struct smtp_reply_parser *p, const char *buf, size_t len, int *done)
{
    *done = 0;
    for (size_t i = 0; i < len; i++) {
        /* First byte of a new reply: forget the previous one. */
        if (p->in_progress == 0 && p->linelen == 0) {
            p->cur.code = 0;
            p->cur.len = 0;
            p->cur.text[0] = '\0';
            p->error = 0;
        }
        if (buf[i] == '\n') {
            if (line_done(p)) {
                *done = 1;
                return i + 1;
            }
            continue;
        }
        if (p->linelen < sizeof(p->line))
            p->line[p->linelen++] = buf[i];
    }
    return len;
}

/* Length of a run of 1..3 digits at s, 0 if none or too long. */
static size_t
digits13(const char *s)
{
    size_t n = 0;
    while (n < 4 && s[n] >= '0' && s[n] <= '9')
        n++;
    return n <= 3 ? n : 0;
}

int
smtp_reply_enhanced(const struct smtp_reply *r, char *out, size_t outlen)
{
    const char *s = r->text, *e;
    size_t n;

    if (outlen > 0)
        out[0] = '\0';
    if (r->len < 4 || (s[3] != ' ' && s[3] != '-'))
        return 0;
    s += 4;
    e = s;
    if (*e != '2' && *e != '4' && *e != '5')
        return 0;
    e++;
    for (int i = 0; i < 2; i++) {
        if (*e++ != '.' || (n = digits13(e)) == 0)
            return 0;
        e += n;
    }
    if (*e != '\0' && *e != ' ' && *e != '\n')
        return 0;
    n = (size_t)(e - s);
    if (n >= outlen)
        return 0;
    memcpy(out, s, n);
    out[n] = '\0';
    return (int)n;
}

void
smtp_reply_first_line(const struct smtp_reply *r, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    size_t n = strcspn(r->text, "\n");
    if (n > r->len)
        n = r->len;
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, r->text, n);
    out[n] = '\0';
    if (n > 3 && out[3] == '-')
        out[3] = ' ';
}
