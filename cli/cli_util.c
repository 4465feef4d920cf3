/*
 * cli_util.c - helpers shared by the scanrelay subcommands: terminal-safe
 * and JSON output of untrusted strings (addresses, subjects, reasons come
 * from the network), and one request to the daemon over the control
 * socket with the plain "daemon is not running" message.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "ctl.h"

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
size_t
cli_utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0; /* also stops at the terminating NUL */
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* Print s for a terminal: control characters and invalid UTF-8 as '?'. */
void
cli_put_safe(FILE *fp, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = cli_utf8_seq(p);
        if (n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7f))) {
            putc('?', fp);
            p++;
        } else {
            fwrite(p, 1, n, fp);
            p += n;
        }
    }
}

/* Print s as a JSON string with its quotes. */
void
cli_put_json(FILE *fp, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    putc('"', fp);
    while (*p) {
        size_t n = cli_utf8_seq(p);
        if (n == 0) {
            fputs("\\ufffd", fp);
            p++;
            continue;
        }
        if (n > 1) {
            fwrite(p, 1, n, fp);
            p += n;
            continue;
        }
        switch (*p) {
        case '"':
            fputs("\\\"", fp);
            break;
        case '\\':
            fputs("\\\\", fp);
            break;
        case '\n':
            fputs("\\n", fp);
            break;
        case '\r':
            fputs("\\r", fp);
            break;
        case '\t':
            fputs("\\t", fp);
            break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(fp, "\\u%04x", *p);
            else
                putc(*p, fp);
        }
        p++;
    }
    putc('"', fp);
}

static void
print_data_line(void *arg, const char *line)
{
    (void)arg;
    cli_put_safe(stdout, line);
    putc('\n', stdout);
}

/* Send one request; 0 OK, 1 ERR, 2 daemon unreachable. */
int
cli_daemon_request(struct cli_opts *o, const char *req)
{
    const char *sock = o->cfg->control_socket;
    char final[CTL_LINE_MAX];

    int k = ctl_request(sock, req, print_data_line, NULL, final, sizeof(final));
    fflush(stdout);
    if (k < 0) {
        if (errno == ENOENT)
            fprintf(stderr,
                    "scanrelay: the scanrelayd daemon is not running (no control socket at %s)\n",
                    sock);
        else if (errno == ECONNREFUSED)
            fprintf(stderr,
                    "scanrelay: the scanrelayd daemon is not running (nothing listens on %s)\n",
                    sock);
        else
            fprintf(stderr, "scanrelay: cannot talk to scanrelayd on %s: %s\n", sock,
                    strerror(errno));
        return 2;
    }
    if (k == 1) {
        fputs("scanrelay: ", stderr);
        cli_put_safe(stderr, final[0] ? final : "request refused");
        putc('\n', stderr);
        return 1;
    }
    if (final[0]) {
        cli_put_safe(stdout, final);
        putc('\n', stdout);
    }
    return 0;
}

int
cli_flush_stdout(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "scanrelay: write error: %s\n", strerror(errno));
        return 2;
    }
    return 0;
}
