/* spool.h - a byte store kept in memory up to a limit, then in a file (see spool.c). */
#ifndef SR_SPOOL_H
#define SR_SPOOL_H

#include <stddef.h>
#include <sys/types.h>

struct spool;

/* New empty spool; spills to an unnamed file in dir past mem_limit. NULL: no memory. */
struct spool *spool_new(size_t mem_limit, const char *dir);
/* Append; 0 ok, -1 error (errno: ENOSPC, EIO, ENOMEM...). */
int spool_write(struct spool *sp, const void *buf, size_t len);
/* Bytes written so far. */
off_t spool_size(const struct spool *sp);
/* Read up to len bytes at off; returns bytes read, 0 at end, -1 error. */
ssize_t spool_pread(struct spool *sp, void *buf, size_t len, off_t off);
/* Contiguous memory when the spool never spilled, else NULL. */
const char *spool_memory(const struct spool *sp);
/* File descriptor when spilled, else -1. */
int spool_fd(const struct spool *sp);
/* Copy all bytes to fd at its current offset; 0 ok, -1 error. */
int spool_copy_to_fd(struct spool *sp, int fd);
void spool_free(struct spool *sp);

#endif
