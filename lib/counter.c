/*
 * counter.c - the daemon's counters: a registry of named counters, each
 * with a help text and a 64-bit value. Modules register their counters at
 * start-up and increment them from any thread (atomic, relaxed: counters
 * order nothing); `scanrelay status` and, later, a metrics endpoint read
 * them by iterating the registry, so a new counter needs no change to
 * either reader.
 *
 * Public calls: counter_reg_new, counter_reg_free, counter_new,
 * counter_inc, counter_add, counter_value, counter_name, counter_help,
 * counter_reg_each.
 *
 * Owns the counters and copies of their names and help texts.
 * Allocation is start-up allocation (xmalloc: never returns NULL).
 */
#include <stdlib.h>

#include "counter.h"
#include "xmalloc.h"

struct counter {
    char *name;
    char *help;
    uint64_t value;
    struct counter *next;
};

struct counter_reg {
    struct counter *head, *tail;
};

struct counter_reg *
counter_reg_new(void)
{
    return xcalloc(1, sizeof(struct counter_reg));
}

void
counter_reg_free(struct counter_reg *r)
{
    if (r == NULL)
        return;
    for (struct counter *c = r->head, *n; c; c = n) {
        n = c->next;
        free(c->name);
        free(c->help);
        free(c);
    }
    free(r);
}

struct counter *
counter_new(struct counter_reg *r, const char *name, const char *help)
{
    struct counter *c = xcalloc(1, sizeof(*c));
    c->name = xstrdup(name);
    c->help = xstrdup(help);
    if (r->tail)
        r->tail->next = c;
    else
        r->head = c;
    r->tail = c;
    return c;
}

void
counter_inc(struct counter *c)
{
    __atomic_add_fetch(&c->value, 1, __ATOMIC_RELAXED);
}

void
counter_add(struct counter *c, uint64_t n)
{
    __atomic_add_fetch(&c->value, n, __ATOMIC_RELAXED);
}

uint64_t
counter_value(const struct counter *c)
{
    return __atomic_load_n(&c->value, __ATOMIC_RELAXED);
}

const char *
counter_name(const struct counter *c)
{
    return c->name;
}

const char *
counter_help(const struct counter *c)
{
    return c->help;
}

void
counter_reg_each(const struct counter_reg *r, void (*fn)(void *arg, const struct counter *c),
                 void *arg)
{
    for (const struct counter *c = r->head; c; c = c->next)
        fn(arg, c);
}
