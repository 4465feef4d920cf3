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
 * Every line of a thread that set an ID (log_set_id: a scan or side job
 * sets the queue ID of its message) carries it after the level, as
 * Postfix and OpenSMTPD lines carry theirs.
 *
 * Thread safety: every call formats into a local buffer and writes it
 * with one write(2) or syslog(3) call, so lines from scan threads do not
 * interleave; the ID is thread-local. Nothing here allocates.
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
static _Thread_local char log_id[LOG_ID_MAX];

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

void
log_set_id(const char *id)
{
    snprintf(log_id, sizeof(log_id), "%s", id ? id : "");
}

const char *
log_get_id(void)
{
    return log_id;
}

static void
log_vemit(int pri, const char *prefix, int errnum, const char *fmt, va_list ap)
{
    char text[4096], line[4096];
    size_t idlen = strlen(log_id);
    int n;

    n = vsnprintf(text, sizeof(text), fmt, ap);
    if (n < 0)
        text[0] = '\0';
    /* The thread's ID, unless the text starts with it anyway. */
    int with_id = idlen && !(strncmp(text, log_id, idlen) == 0 && text[idlen] == ':');
    n = snprintf(line, sizeof(line), "%s%s%s%s", prefix ? prefix : "", with_id ? log_id : "",
                 with_id ? ": " : "", text);
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
