/*
 * xmalloc.c - the first allocation tier: start-up, configuration and
 * other allocations whose failure leaves nothing sensible to do. These
 * wrappers never return NULL; they end the program with a fatal log line.
 * Per-connection allocations use plain malloc and refuse only that
 * session on failure (STYLE.md, two-tier allocation).
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xmalloc.h"

void *
xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        log_fatal("malloc %zu", n);
    return p;
}

void *
xcalloc(size_t nmemb, size_t n)
{
    void *p = calloc(nmemb ? nmemb : 1, n ? n : 1);
    if (p == NULL)
        log_fatal("calloc %zu*%zu", nmemb, n);
    return p;
}

void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        log_fatal("realloc %zu", n);
    return q;
}

char *
xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        log_fatal("strdup");
    return p;
}

char *
xstrndup(const char *s, size_t n)
{
    char *p = strndup(s, n);
    if (p == NULL)
        log_fatal("strndup");
    return p;
}
