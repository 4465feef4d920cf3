/*
 * spool.c - a message body store: bytes are kept in one malloc'd buffer
 * up to mem_limit; past it, everything moves to a file in dir and the
 * memory is freed, so a 50 MB body costs a few kB of RAM.
 *
 * The file is opened with O_TMPFILE (never has a name, so a crash or a
 * vanished client leaves nothing on disk); where the file system lacks
 * O_TMPFILE, mkstemp() plus an immediate unlink() gives the same.
 * No fsync: a spool holds a message the upstream still owns.
 * Writers are the event loop; readers (scan threads, delivery) come after
 * the last write. Errors return -1 with errno set; nothing aborts.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "spool.h"

struct spool {
    char *mem;
    size_t len, cap;
    size_t mem_limit;
    int fd;
    off_t fsize;
    char *dir;
};

struct spool *
spool_new(size_t mem_limit, const char *dir)
{
    struct spool *sp = calloc(1, sizeof(*sp));
    if (sp == NULL)
        return NULL;
    sp->fd = -1;
    sp->mem_limit = mem_limit;
    sp->dir = strdup(dir ? dir : "/tmp");
    if (sp->dir == NULL) {
        free(sp);
        return NULL;
    }
    return sp;
}


static int
spool_spill(struct spool *sp)
{
    int fd = open(sp->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/spool.XXXXXX", sp->dir);
        fd = mkostemp(path, O_CLOEXEC);
        if (fd < 0)
            return -1;
        unlink(path);
    }
    if (sp->len && write_full(fd, sp->mem, sp->len) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    sp->fd = fd;
    sp->fsize = (off_t)sp->len;
    free(sp->mem);
    sp->mem = NULL;
    sp->len = sp->cap = 0;
    return 0;
}

int
spool_write(struct spool *sp, const void *buf, size_t len)
{
    if (len == 0)
        return 0;
    if (sp->fd < 0 && sp->len + len > sp->mem_limit) {
        if (spool_spill(sp) < 0)
            return -1;
    }
    if (sp->fd >= 0) {
        if (write_full(sp->fd, buf, len) < 0)
            return -1;
        sp->fsize += (off_t)len;
        return 0;
    }
    if (sp->len + len > sp->cap) {
        size_t ncap = sp->cap ? sp->cap : 4096;
        while (ncap < sp->len + len)
            ncap *= 2;
        if (ncap > sp->mem_limit && sp->mem_limit >= sp->len + len)
            ncap = sp->mem_limit;
        char *n = realloc(sp->mem, ncap);
        if (n == NULL)
            return -1;
        sp->mem = n;
        sp->cap = ncap;
    }
    memcpy(sp->mem + sp->len, buf, len);
    sp->len += len;
    return 0;
}

off_t
spool_size(const struct spool *sp)
{
    return sp->fd >= 0 ? sp->fsize : (off_t)sp->len;
}

ssize_t
spool_pread(struct spool *sp, void *buf, size_t len, off_t off)
{
    if (sp->fd >= 0) {
        ssize_t r;
        do
            r = pread(sp->fd, buf, len, off);
        while (r < 0 && errno == EINTR);
        return r;
    }
    if (off >= (off_t)sp->len)
        return 0;
    size_t n = sp->len - (size_t)off;
    if (n > len)
        n = len;
    memcpy(buf, sp->mem + off, n);
    return (ssize_t)n;
}

const char *
spool_memory(const struct spool *sp)
{
    if (sp->fd >= 0)
        return NULL;
    return sp->mem ? sp->mem : "";
}

int
spool_fd(const struct spool *sp)
{
    return sp->fd;
}

int
spool_copy_to_fd(struct spool *sp, int fd)
{
    if (sp->fd < 0)
        return write_full(fd, sp->mem ? sp->mem : "", sp->len);
    char buf[65536];
    off_t off = 0;
    for (;;) {
        ssize_t r = spool_pread(sp, buf, sizeof(buf), off);
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        if (write_full(fd, buf, (size_t)r) < 0)
            return -1;
        off += r;
    }
}

void
spool_free(struct spool *sp)
{
    if (sp == NULL)
        return;
    if (sp->fd >= 0)
        close(sp->fd);
    free(sp->mem);
    free(sp->dir);
    free(sp);
}
