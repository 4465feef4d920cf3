/* smtpd.h - inbound SMTP sessions over libevent (see smtpd.c). */
#ifndef SR_SMTPD_H
#define SR_SMTPD_H

#include <sys/socket.h>

struct daemon;

/* A new client connection (from the listener). */
void smtpd_accept(struct daemon *d, int fd, const struct sockaddr *sa, int salen);
/* Shutdown: close sessions idle after a transaction, silently; others close after their next answer. */
void smtpd_shutdown_all(struct daemon *d);

#endif
