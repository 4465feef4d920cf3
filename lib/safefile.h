/* safefile.h - the one crash-safe file write: temp file, fsync, rename, folder fsync (see
 * safefile.c). */
#ifndef SR_SAFEFILE_H
#define SR_SAFEFILE_H

#include <sys/types.h>

#define SAFE_NOSYNC 0x1    /* no fsync of file or folder (tests, stores opened "nosync") */
#define SAFE_NOREPLACE 0x2 /* the final name must not exist yet (EEXIST) */
#define SAFE_EXCL 0x4      /* the temporary name must not exist yet (else it is truncated) */
#define SAFE_MKDIR 0x8     /* create dir (0750) when missing, also when it vanishes before open */

/*
 * Write tmppath with fill(fd, arg), fsync it, close it, rename it to path,
 * fsync dir (the folder of path). fill returns 0, or -1 with errno.
 * Returns 0 when path is complete and durable; -1 with errno, and then
 * neither tmppath nor path is left behind.
 */
int safe_write(const char *tmppath, const char *path, const char *dir, mode_t mode, int flags,
               int (*fill)(int fd, void *arg), void *arg);

/* fsync a folder so a create, rename or unlink in it survives a crash; 0 or -1 with errno. */
int fsync_dir(const char *dir);

/* rename() that refuses to replace an existing target (EEXIST); 0 or -1 with errno. */
int rename_noreplace(const char *from, const char *to);

#endif
