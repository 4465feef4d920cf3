/*
 * sdsock.c - listening sockets handed over by systemd (socket activation),
 * and the socket unit's addresses.
 *
 * Public calls:
 *   sdsock_take(fds, max)          the LISTEN_FDS protocol, by hand
 *   sdsock_addr(fd, buf, len)      "127.0.0.1:10025" / "[::1]:10025" of a socket
 *   sdsock_unit_streams(path, ...) the ListenStream= values of a .socket unit
 *   sdsock_same(listen, stream)    does a `listen` address equal a ListenStream=
 *
 * The protocol is three environment variables (sd_listen_fds(3)):
 * LISTEN_PID names the process meant (a forked child must not take them),
 * LISTEN_FDS counts descriptors starting at 3, LISTEN_FDNAMES names them.
 * sdsock_take checks the PID, marks the descriptors close-on-exec and
 * unsets the three variables, as sd_listen_fds(1) does; done by hand like
 * the daemon's sd_notify, so that the daemon needs no libsystemd.
 *
 * Nothing here allocates on the daemon's behalf except sdsock_unit_streams
 * (a list the caller frees with sdsock_free_list). Returns: counts, or -1
 * with errno / a message in err. Knows nothing of mail.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sdsock.h"

#define SD_LISTEN_FDS_START 3

int
sdsock_take(int *fds, int max)
{
    const char *pid = getenv("LISTEN_PID"), *n = getenv("LISTEN_FDS");
    int count = 0;

    if (pid == NULL || n == NULL)
        goto done;
    char *end;
    errno = 0;
    long p = strtol(pid, &end, 10);
    if (errno || *end || p != (long)getpid())
        goto done; /* meant for another process */
    long c = strtol(n, &end, 10);
    if (errno || *end || c < 0 || c > max) {
        count = -1;
        errno = EINVAL;
        goto done;
    }
    for (int i = 0; i < (int)c; i++) {
        int fd = SD_LISTEN_FDS_START + i;
        int fl = fcntl(fd, F_GETFD);
        if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0) {
            count = -1;
            goto done;
        }
        fds[i] = fd;
    }
    count = (int)c;
done:
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return count;
}

int
sdsock_addr(int fd, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN];

    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return -1;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(s4->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, (unsigned)ntohs(s6->sin6_port));
    } else {
        errno = EAFNOSUPPORT;
        return -1;
    }
    return 0;
}

/* Split "a.b.c.d:port", "[v6]:port" or "port" (host "" then) into binary form; 0 / -1. */
static int
parse_addr(const char *s, int *family, unsigned char addr[16], unsigned *port)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *p;

    memset(addr, 0, 16);
    if (s[0] == '[') {
        const char *e = strchr(s, ']');
        if (e == NULL || e[1] != ':' || (size_t)(e - s - 1) >= sizeof(host))
            return -1;
        memcpy(host, s + 1, (size_t)(e - s - 1));
        host[e - s - 1] = '\0';
        if (inet_pton(AF_INET6, host, addr) != 1)
            return -1;
        *family = AF_INET6;
        p = e + 2;
    } else if ((p = strrchr(s, ':')) != NULL) {
        if ((size_t)(p - s) >= sizeof(host))
            return -1;
        memcpy(host, s, (size_t)(p - s));
        host[p - s] = '\0';
        if (inet_pton(AF_INET, host, addr) != 1)
            return -1;
        *family = AF_INET;
        p++;
    } else {
        *family = 0; /* port only: every address */
        p = s;
    }
    if (*p == '\0')
        return -1;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q))
            return -1;
    long v = strtol(p, NULL, 10);
    if (v < 1 || v > 65535)
        return -1;
    *port = (unsigned)v;
    return 0;
}

int
sdsock_same(const char *listen, const char *stream)
{
    int fl, fs;
    unsigned char al[16], as[16];
    unsigned pl, ps;

    if (parse_addr(listen, &fl, al, &pl) < 0 || parse_addr(stream, &fs, as, &ps) < 0)
        return 0;
    if (pl != ps)
        return 0;
    if (fs == 0) {
        /* ListenStream=PORT: every address, IPv4 and IPv6 (systemd's default). */
        static const unsigned char any[16];
        return fl == 0 || memcmp(al, any, 16) == 0;
    }
    return fl == fs && memcmp(al, as, fl == AF_INET ? 4 : 16) == 0;
}

void
sdsock_free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

int
sdsock_unit_streams(const char *path, char ***out, size_t *nout, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    int in_socket = 0;
    char **list = NULL;
    size_t n = 0;

    *out = NULL;
    *nout = 0;
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        char *s = line, *e;
        while (isspace((unsigned char)*s))
            s++;
        e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1]))
            *--e = '\0';
        if (*s == '#' || *s == ';' || *s == '\0')
            continue;
        if (*s == '[') {
            in_socket = strcmp(s, "[Socket]") == 0;
            continue;
        }
        if (!in_socket || strncmp(s, "ListenStream", 12) != 0)
            continue;
        s += 12;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s != '=')
            continue;
        s++;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '\0') {
            /* An empty assignment resets the list (drop-ins). */
            sdsock_free_list(list, n);
            list = NULL;
            n = 0;
            continue;
        }
        char **nl = realloc(list, (n + 1) * sizeof(*nl));
        char *v = strdup(s);
        if (nl == NULL || v == NULL) {
            free(v);
            sdsock_free_list(nl ? nl : list, n);
            fclose(f);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        list = nl;
        list[n++] = v;
    }
    fclose(f);
    *out = list;
    *nout = n;
    return 0;
}
