/*
 * log.c - the one logging API.
 *
 * Lines go to syslog (facility mail, ident given to log_init) or, for
 * foreground use, to stderr as "ident[pid]: text". Under systemd
 * (JOURNAL_STREAM set) stderr lines carry a "<N>" priority prefix instead,
 * since the journal adds ident and pid itself. Levels:
 * debug (only when enabled), info, warning, fatal (exit 1), panic
 * (abort). The *_x variants log the text as given; the others append
 * ": " and strerror(errno), like OpenSMTPD's log.c.
 *
 * Thread safety: every call formats into a local buffer and writes it
 * with one write(2) or syslog(3) call, so lines from scan threads do not
 * interleave. Nothing here allocates.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"

static const char *log_ident = "scanrelay";
static int log_stderr = 1;
static int log_debug_on;
static int log_journal;

void
log_init(const char *ident, int to_stderr)
{
    log_ident = ident;
    log_stderr = to_stderr;
    log_journal = to_stderr && getenv("JOURNAL_STREAM") != NULL;
    if (!to_stderr)
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_set_debug(int on)
{
    log_debug_on = on;
}

int
log_debug_enabled(void)
{
    return log_debug_on;
}

static void
log_vemit(int pri, const char *prefix, int errnum, const char *fmt, va_list ap)
{
    char line[4096];
    int n = 0;

    if (prefix)
        n = snprintf(line, sizeof(line), "%s", prefix);
    if (n >= 0 && (size_t)n < sizeof(line)) {
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        if (m > 0)
            n += m;
    }
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(line))
        n = sizeof(line) - 1;
    if (errnum)
        n += snprintf(line + n, sizeof(line) - (size_t)n, ": %s", strerror(errnum));
    if ((size_t)n >= sizeof(line))
        n = sizeof(line) - 1;

    if (log_stderr) {
        char out[4200];
        int len = log_journal
                      ? snprintf(out, sizeof(out), "<%d>%s\n", pri, line)
                      : snprintf(out, sizeof(out), "%s[%ld]: %s\n", log_ident, (long)getpid(), line);
        if (len > (int)sizeof(out) - 1)
            len = sizeof(out) - 1;
        ssize_t w = write(STDERR_FILENO, out, (size_t)len);
        (void)w;
    } else {
        syslog(pri, "%s", line);
    }
}

#define LOG_BODY(pri, prefix, errnum)                                                              \
    do {                                                                                           \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        log_vemit(pri, prefix, errnum, fmt, ap);                                                   \
        va_end(ap);                                                                                \
    } while (0)

void
log_debug(const char *fmt, ...)
{
    if (!log_debug_on)
        return;
    LOG_BODY(LOG_DEBUG, NULL, 0);
}

void
log_info(const char *fmt, ...)
{
    LOG_BODY(LOG_INFO, NULL, 0);
}

void
log_warnx(const char *fmt, ...)
{
    LOG_BODY(LOG_WARNING, "warning: ", 0);
}

void
log_warn(const char *fmt, ...)
{
    int e = errno;
    LOG_BODY(LOG_WARNING, "warning: ", e);
}

void
log_fatalx(const char *fmt, ...)
{
    LOG_BODY(LOG_CRIT, "fatal: ", 0);
    exit(1);
}

void
log_fatal(const char *fmt, ...)
{
    int e = errno;
    LOG_BODY(LOG_CRIT, "fatal: ", e);
    exit(1);
}

void
log_panic(const char *fmt, ...)
{
    LOG_BODY(LOG_CRIT, "panic: ", 0);
    abort();
}
