/*
 * fileio.c - write_full(): write(2) until every byte is out, retrying on
 * EINTR and short writes. Used by the spool, the queue files and the
 * quarantine store. 0 ok, -1 with errno; nothing here aborts.
 */
#include <errno.h>
#include <unistd.h>

#include "fileio.h"

int
write_full(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}
