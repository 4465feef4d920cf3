/* smtp_reply.h - incremental SMTP reply parser for the client side (see smtp_reply.c). */
#ifndef SR_SMTP_REPLY_H
#define SR_SMTP_REPLY_H

#include <stddef.h>

#define SMTP_REPLY_MAX 4096 /* bytes of one (multi-line) reply kept */

struct smtp_reply {
    int code;              /* 250, 354, 451, ... */
    /* All lines as received ("250-a\n250 b"), CRLF removed, joined by "\n". */
    char text[SMTP_REPLY_MAX];
    size_t len;
};

struct smtp_reply_parser {
    struct smtp_reply cur;
    char line[1024];       /* partial line; longer lines are truncated, not rejected */
    size_t linelen;
    int in_progress;       /* lines of a multi-line reply seen */
    int error;             /* malformed reply seen */
};

void smtp_reply_parser_init(struct smtp_reply_parser *p);

/*
 * Feed bytes; stops after one complete reply. Returns bytes consumed and
 * sets *done to 1 when p->cur holds a complete reply (call again for the
 * next). A malformed line sets p->error and *done, with code 0.
 */
size_t smtp_reply_feed(struct smtp_reply_parser *p, const char *buf, size_t len, int *done);

/* Class helpers. */
static inline int smtp_reply_class(int code) { return code / 100; }

/* Enhanced status code "x.y.z" at the start of the first line's text, copied to out; 0 if none. */
int smtp_reply_enhanced(const struct smtp_reply *r, char *out, size_t outlen);

/* First line of the reply as "CODE text" without line break, into out. */
void smtp_reply_first_line(const struct smtp_reply *r, char *out, size_t outlen);

#endif
