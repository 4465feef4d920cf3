/*
 * cidr.c - address ranges (xforward_networks and the like): parse
 * "a.b.c.d/n" or "v6/n", and tell whether a socket address falls in one of
 * a list of them. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) matches
 * IPv4 ranges too. Pure functions: no allocation, nothing kept; a bad
 * range is -1 from cidr_parse, never an abort.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "cidr.h"

int
cidr_parse(const char *s, struct cidr *out)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", s);
    char *slash = strchr(buf, '/');
    int bits = -1;
    if (slash) {
        *slash = '\0';
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (*end || b < 0 || b > 128)
            return -1;
        bits = (int)b;
    }
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        out->bits = bits < 0 ? 32 : bits;
        return out->bits <= 32 ? 0 : -1;
    }
    if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        out->bits = bits < 0 ? 128 : bits;
        return 0;
    }
    return -1;
}

static int
prefix_match(const unsigned char *a, const unsigned char *b, int bits)
{
    int bytes = bits / 8, rem = bits % 8;
    if (memcmp(a, b, (size_t)bytes) != 0)
        return 0;
    if (rem == 0)
        return 1;
    unsigned char m = (unsigned char)(0xff << (8 - rem));
    return (a[bytes] & m) == (b[bytes] & m);
}

int
cidr_match(const struct cidr *nets, size_t n, const struct sockaddr *sa)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    unsigned char a4[4], a6[16];
    int have4 = 0, have6 = 0;

    if (sa->sa_family == AF_INET) {
        memcpy(a4, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        have4 = 1;
    } else if (sa->sa_family == AF_INET6) {
        memcpy(a6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        have6 = 1;
        if (memcmp(a6, mapped, 12) == 0) {
            memcpy(a4, a6 + 12, 4);
            have4 = 1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (nets[i].family == AF_INET && have4 && prefix_match(a4, nets[i].addr, nets[i].bits))
            return 1;
        if (nets[i].family == AF_INET6 && have6 && prefix_match(a6, nets[i].addr, nets[i].bits))
            return 1;
    }
    return 0;
}
