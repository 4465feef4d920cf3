/* sdsock.h - systemd socket activation and socket unit addresses (see sdsock.c). */
#ifndef SR_SDSOCK_H
#define SR_SDSOCK_H

#include <stddef.h>

/* Sockets passed with LISTEN_FDS/LISTEN_PID: count (0 none), -1 bad. Unsets the variables. */
int sdsock_take(int *fds, int max);
/* The local address of a socket as "IP:PORT" or "[IPv6]:PORT"; 0 / -1. */
int sdsock_addr(int fd, char *buf, size_t len);
/* Does listen address "IP:PORT" equal ListenStream value stream ("IP:PORT", "[v6]:PORT", "PORT")? */
int sdsock_same(const char *listen, const char *stream);
/* The ListenStream= values of [Socket] in a unit file; 0 / -1 + err. Free with sdsock_free_list. */
int sdsock_unit_streams(const char *path, char ***out, size_t *n, char *err, size_t errlen);
void sdsock_free_list(char **list, size_t n);

#endif
