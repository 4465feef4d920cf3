/* xmalloc.h - start-up allocations that never return NULL (see xmalloc.c). */
#ifndef SR_XMALLOC_H
#define SR_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
