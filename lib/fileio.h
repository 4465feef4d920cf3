/* fileio.h - whole-buffer writes that survive short writes and EINTR (see fileio.c). */
#ifndef SR_FILEIO_H
#define SR_FILEIO_H

#include <stddef.h>

/* Write all n bytes; 0 ok, -1 with errno (ENOSPC, EIO...). */
int write_full(int fd, const void *buf, size_t n);

#endif
