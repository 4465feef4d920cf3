/* log.h - the one logging API (see log.c for the contract). */
#ifndef SR_LOG_H
#define SR_LOG_H

#include <stdarg.h>

#define SR_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Where lines go: syslog (facility mail) or stderr. */
void log_init(const char *ident, int to_stderr);
void log_set_debug(int on);
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
