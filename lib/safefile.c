/*
 * safefile.c - the crash-safe write used by the deferred queue (queue
 * files) and the quarantine store (gzip'd messages):
 *
 *   open the temporary name, fill it, fsync, close, rename to the final
 *   name, fsync the final name's folder.
 *
 * After safe_write() returns 0 the file is complete under its final name
 * and survives a crash; after -1 (errno set) nothing of it is left, under
 * either name. One cleanup label unlinks whichever name the file has
 * when a step fails. Also fsync_dir() and rename_noreplace() for callers
 * that move files between folders. Knows nothing of what it writes;
 * nothing here logs or aborts.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safefile.h"

int
fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fsync(fd) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return close(fd);
}

int
rename_noreplace(const char *from, const char *to)
{
#ifdef RENAME_NOREPLACE
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
#endif
    /* File systems without RENAME_NOREPLACE: link() refuses to replace. */
    if (link(from, to) < 0)
        return -1;
    if (unlink(from) < 0) {
        int e = errno;
        unlink(to);
        errno = e;
        return -1;
    }
    return 0;
}

int
safe_write(const char *tmppath, const char *path, const char *dir, mode_t mode, int flags,
           int (*fill)(int fd, void *arg), void *arg)
{
    int oflags = O_WRONLY | O_CREAT | O_CLOEXEC | ((flags & SAFE_EXCL) ? O_EXCL : O_TRUNC);
    int sync = !(flags & SAFE_NOSYNC);
    int fd = -1, renamed = 0, e;

    /* Open; with SAFE_MKDIR the folder may vanish (a purge) between mkdir and open: once more. */
    for (int tries = 0; tries < 2; tries++) {
        if ((flags & SAFE_MKDIR) && mkdir(dir, 0750) < 0 && errno != EEXIST)
            return -1;
        fd = open(tmppath, oflags, mode);
        if (fd >= 0 || errno != ENOENT || !(flags & SAFE_MKDIR))
            break;
    }
    if (fd < 0)
        return -1; /* nothing of ours to remove */

    /* Fill, sync, close, rename into place, sync the folder. */
    if (fill(fd, arg) < 0)
        goto fail;
    if (sync && fsync(fd) < 0)
        goto fail;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (((flags & SAFE_NOREPLACE) ? rename_noreplace(tmppath, path) : rename(tmppath, path)) < 0)
        goto fail;
    renamed = 1;
    if (sync && fsync_dir(dir) < 0)
        goto fail;
    return 0;

fail:
    e = errno;
    if (fd >= 0)
        close(fd);
    unlink(renamed ? path : tmppath);
    errno = e;
    return -1;
}
