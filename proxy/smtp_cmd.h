/* smtp_cmd.h - SMTP command line parsing, no I/O (see smtp_cmd.c). */
#ifndef SR_SMTP_CMD_H
#define SR_SMTP_CMD_H

#include <stddef.h>
#include <stdint.h>

enum smtp_verb {
    CMD_UNKNOWN = 0,
    CMD_HELO, CMD_EHLO, CMD_MAIL, CMD_RCPT, CMD_DATA, CMD_RSET,
    CMD_NOOP, CMD_QUIT, CMD_VRFY, CMD_HELP, CMD_XFORWARD, CMD_BDAT,
    CMD_STARTTLS, CMD_AUTH, CMD_ETRN, CMD_EXPN,
};

/* Verb of a command line (case-insensitive); *args points past verb and spaces. */
enum smtp_verb smtp_cmd_verb(const char *line, const char **args);

/* Parsed MAIL FROM / RCPT TO. Strings point into the caller's (modified) buffer. */
#define SMTP_MAX_PARAMS 16
struct smtp_path_cmd {
    char *addr;          /* without <>, "" for <> */
    int64_t size;        /* SIZE=, -1 absent */
    int size_overflow;   /* SIZE= digits beyond int64 (rc SMTP_PATH_EPARAM, *bad "SIZE") */
    int body;            /* 0 absent, 1 7BIT, 2 8BITMIME */
    int smtputf8;
    int ret;             /* 0 absent, 1 FULL, 2 HDRS */
    char *envid;         /* ENVID= (xtext as given) */
    unsigned notify;     /* NOTIFY= bits, 0 absent */
    char *orcpt;         /* ORCPT= as given */
};

/* Result codes of smtp_cmd_parse_path: 0 ok, or an SMTP_PATH_E* error. */
enum {
    SMTP_PATH_OK = 0,
    SMTP_PATH_ESYNTAX = -1,   /* 501 5.5.4 / 5.1.7 / 5.1.3 */
    SMTP_PATH_EPARAM = -2,    /* 555 5.5.4 unsupported or bad parameter */
};

/*
 * Parse the argument of MAIL ("FROM:<a> params") or RCPT ("TO:<a> params").
 * is_mail selects which keyword and which parameters are allowed. buf is
 * modified in place. On error *bad names the offending parameter or NULL.
 */
int smtp_cmd_parse_path(char *args, int is_mail, struct smtp_path_cmd *out, const char **bad);

/*
 * Parse XFORWARD arguments ("NAME=x ADDR=y ..."): for each attribute calls
 * cb(arg, index-of-attr, decoded-value). 0 ok, -1 syntax or unknown attribute.
 */
int smtp_cmd_parse_xforward(char *args, void (*cb)(void *, int, const char *), void *arg);

#endif
