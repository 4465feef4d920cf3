/* log.h - the one logging API (see log.c for the contract). */
#ifndef SR_LOG_H
#define SR_LOG_H

#include <stdarg.h>

#define SR_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Where lines go: syslog (facility mail) or stderr. */
void log_init(const char *ident, int to_stderr);
void log_set_debug(int on);
/*
 * The ID every line of the calling thread carries from now on, after the
 * level ("ID: text", "warning: ID: text"), e.g. the queue ID of the
 * message a scan thread works on; NULL or "" clears it. Copied (at most
 * LOG_ID_MAX - 1 bytes); per thread. A line whose text already starts
 * with "ID: " is not given it twice.
 */
#define LOG_ID_MAX 64
void log_set_id(const char *id);
/* This thread's ID, "" when none. */
const char *log_get_id(void);
int log_debug_enabled(void);

void log_debug(const char *fmt, ...) SR_PRINTF(1, 2);
void log_info(const char *fmt, ...) SR_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) SR_PRINTF(1, 2);
/* log_warn appends ": strerror(errno)". */
void log_warn(const char *fmt, ...) SR_PRINTF(1, 2);
void log_fatalx(const char *fmt, ...) SR_PRINTF(1, 2) __attribute__((noreturn));
void log_fatal(const char *fmt, ...) SR_PRINTF(1, 2) __attribute__((noreturn));
/* Broken invariant: logs and aborts (core dump). */
void log_panic(const char *fmt, ...) SR_PRINTF(1, 2) __attribute__((noreturn));

#endif
