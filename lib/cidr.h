/* cidr.h - address ranges "a.b.c.d/n", "v6/n" and matching a socket address (see cidr.c). */
#ifndef SR_CIDR_H
#define SR_CIDR_H

#include <stddef.h>

struct sockaddr;

/* An address range. */
struct cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;
};

/* Parse "a.b.c.d[/n]" or "v6[/n]" (no /n: one address); 0 ok, -1 bad. */
int cidr_parse(const char *s, struct cidr *out);
/* 1 when the socket address is inside one of the n ranges (IPv4-mapped IPv6 matches v4), else 0. */
int cidr_match(const struct cidr *nets, size_t n, const struct sockaddr *sa);

#endif
