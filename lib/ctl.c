/*
 * ctl.c - the client side of the control-socket protocol (see ctl.h for
 * the protocol): connect to the daemon's unix socket, send one request
 * line, hand each data line to a callback and return the final line.
 *
 * Public call: ctl_request(). It blocks (the CLI is its only user) but
 * never forever: connecting and every wait for the daemon's next bytes
 * are bounded by CTL_TIMEOUT seconds of silence, so a flush that reports
 * progress may take longer in total. Nothing is kept between calls; no
 * signal handler is touched (SIGPIPE is avoided with MSG_NOSIGNAL).
 *
 * Failures: -1 with errno: ENOENT or ECONNREFUSED when nobody listens
 * (the daemon is not running), EACCES, ETIMEDOUT when the daemon stays
 * silent, EPROTO when the answer breaks the protocol (a line too long,
 * a line that is neither data nor final, the connection closed before
 * the final line), EINVAL/EMSGSIZE for a request that cannot be sent.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl.h"

#define CTL_TIMEOUT 30 /* seconds of silence before giving up */

static int
ctl_connect(const char *sock_path)
{
    struct sockaddr_un sun;
    struct timeval tv = {.tv_sec = CTL_TIMEOUT};

    if (strlen(sock_path) >= sizeof(sun.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, sock_path);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* Bounds a connect to a daemon whose backlog is full, and send(). */
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    while (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        if (errno == EINTR)
            continue;
        int e = errno == EAGAIN ? ETIMEDOUT : errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int
ctl_send(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                errno = ETIMEDOUT;
            return -1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Read more bytes, waiting at most CTL_TIMEOUT; bytes read, 0 at EOF, -1. */
static ssize_t
ctl_read(int fd, char *buf, size_t len)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};

    for (;;) {
        int n = poll(&pfd, 1, CTL_TIMEOUT * 1000);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        ssize_t r = read(fd, buf, len);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        return r;
    }
}

static void
copy_final(char *final, size_t finallen, const char *text)
{
    if (final == NULL || finallen == 0)
        return;
    snprintf(final, finallen, "%s", text);
}

/*
 * One answer line (CR and LF removed): 0 data line handed on, 1 final OK,
 * 2 final ERR, -1 not a protocol line.
 */
static int
ctl_line(char *line, void (*line_cb)(void *arg, const char *line), void *arg, char *final,
         size_t finallen)
{
    if (line[0] == '*' && (line[1] == ' ' || line[1] == '\0')) {
        if (line_cb)
            line_cb(arg, line[1] ? line + 2 : line + 1);
        return 0;
    }
    if (strncmp(line, "OK", 2) == 0 && (line[2] == ' ' || line[2] == '\0')) {
        copy_final(final, finallen, line[2] ? line + 3 : "");
        return 1;
    }
    if (strncmp(line, "ERR", 3) == 0 && (line[3] == ' ' || line[3] == '\0')) {
        copy_final(final, finallen, line[3] ? line + 4 : "");
        return 2;
    }
    return -1;
}

int
ctl_request(const char *sock_path, const char *request,
            void (*line_cb)(void *arg, const char *line), void *arg, char *final, size_t finallen)
{
    char req[CTL_LINE_MAX + 1];
    char buf[CTL_LINE_MAX + 2];
    size_t len = 0, reqlen;
    int fd, rc = -1, e;

    /*
     * Sanity checks: one line, not too long.
     */
    copy_final(final, finallen, "");
    reqlen = strlen(request);
    if (reqlen > 0 && request[reqlen - 1] == '\n')
        reqlen--;
    if (reqlen == 0 || memchr(request, '\r', reqlen) || memchr(request, '\n', reqlen)) {
        errno = EINVAL;
        return -1;
    }
    if (reqlen + 1 > CTL_LINE_MAX) {
        errno = EMSGSIZE;
        return -1;
    }
    memcpy(req, request, reqlen);
    req[reqlen++] = '\n';

    if ((fd = ctl_connect(sock_path)) < 0)
        return -1;
    if (ctl_send(fd, req, reqlen) < 0)
        goto out;

    /*
     * Read lines until the final one.
     */
    for (;;) {
        char *nl = memchr(buf, '\n', len);
        if (nl == NULL) {
            if (len > CTL_LINE_MAX) {
                errno = EPROTO;
                goto out;
            }
            ssize_t n = ctl_read(fd, buf + len, sizeof(buf) - 1 - len);
            if (n < 0)
                goto out;
            if (n == 0) {
                errno = EPROTO; /* closed before the final line */
                goto out;
            }
            len += (size_t)n;
            continue;
        }
        *nl = '\0';
        if (nl > buf && nl[-1] == '\r')
            nl[-1] = '\0';
        int k = ctl_line(buf, line_cb, arg, final, finallen);
        if (k < 0) {
            errno = EPROTO;
            goto out;
        }
        if (k > 0) {
            rc = k == 1 ? 0 : 1;
            goto out;
        }
        size_t used = (size_t)(nl + 1 - buf);
        memmove(buf, nl + 1, len - used);
        len -= used;
    }

out:
    e = errno;
    close(fd);
    errno = e;
    return rc;
}
