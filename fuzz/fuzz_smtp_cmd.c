/*
 * fuzz_smtp_cmd.c - the inbound SMTP command line parser (proxy/smtp_cmd):
 * verb recognition, MAIL and RCPT paths with their ESMTP parameters, and
 * XFORWARD attributes. The input is one command line (as the protocol
 * engine hands it over: without CRLF, NUL-terminated; an embedded NUL
 * ends it early, as it would there). Checks that everything returned
 * points into the caller's buffer or is a NUL-terminated copy without
 * control characters where the contract says so.
 */
#include <string.h>

#include "envelope.h"
#include "fuzz.h"
#include "smtp_cmd.h"

static int
inside(const char *s, const char *buf, size_t len)
{
    return s >= buf && s <= buf + len && strlen(s) <= (size_t)(buf + len - s);
}

static void
xf_cb(void *arg, int idx, const char *value)
{
    int *n = arg;
    FUZZ_CHECK(idx >= 0 && idx < XF_COUNT);
    FUZZ_CHECK(value != NULL);
    for (const char *c = value; *c; c++)
        FUZZ_CHECK((unsigned char)*c >= 32 && *c != 127);
    (*n)++;
}

static void
path(const char *line, size_t len, int is_mail)
{
    char *buf = malloc(len + 1);
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, line, len);
    buf[len] = '\0';
    struct smtp_path_cmd pc;
    const char *bad = NULL;
    memset(&pc, 0, sizeof(pc));
    int rc = smtp_cmd_parse_path(buf, is_mail, &pc, &bad);
    FUZZ_CHECK(rc == SMTP_PATH_OK || rc == SMTP_PATH_ESYNTAX || rc == SMTP_PATH_EPARAM);
    if (rc == SMTP_PATH_OK) {
        FUZZ_CHECK(pc.addr != NULL && inside(pc.addr, buf, len));
        for (const char *c = pc.addr; *c; c++)
            FUZZ_CHECK((unsigned char)*c >= 32 && *c != 127);
        FUZZ_CHECK(pc.size >= -1);
        FUZZ_CHECK(pc.body >= 0 && pc.body <= 2 && pc.ret >= 0 && pc.ret <= 2);
        FUZZ_CHECK(pc.envid == NULL || inside(pc.envid, buf, len));
        FUZZ_CHECK(pc.orcpt == NULL || inside(pc.orcpt, buf, len));
        FUZZ_CHECK(is_mail || (pc.addr[0] != '\0'));
    } else if (bad != NULL) {
        FUZZ_CHECK(inside(bad, buf, len));
    }
    free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(size + 1);
    FUZZ_CHECK(line != NULL);
    memcpy(line, data, size);
    line[size] = '\0';
    size_t len = strlen(line);

    const char *args = NULL;
    enum smtp_verb v = smtp_cmd_verb(line, &args);
    FUZZ_CHECK(v >= CMD_UNKNOWN && v <= CMD_EXPN);
    if (v != CMD_UNKNOWN)
        FUZZ_CHECK(args != NULL && inside(args, line, len));

    /* The argument parsers get the whole line too, so they need no verb. */
    path(line, len, 1);
    path(line, len, 0);
    if (args && v != CMD_UNKNOWN) {
        path(args, strlen(args), v == CMD_MAIL);
        char *xf = strdup(args);
        FUZZ_CHECK(xf != NULL);
        int n = 0;
        int rc = smtp_cmd_parse_xforward(xf, xf_cb, &n);
        FUZZ_CHECK(rc == 0 || rc == -1);
        FUZZ_CHECK(rc == 0 ? n > 0 : n == 0); /* all attributes or none */
        free(xf);
    }
    char *xf = strdup(line);
    FUZZ_CHECK(xf != NULL);
    int n = 0;
    (void)smtp_cmd_parse_xforward(xf, xf_cb, &n);
    free(xf);
    free(line);
    return 0;
}
