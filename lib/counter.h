/* counter.h - a small registry of named counters: name, help text, value (see counter.c). */
#ifndef SR_COUNTER_H
#define SR_COUNTER_H

#include <stdint.h>

struct counter;
struct counter_reg;

/* An empty registry (never NULL: start-up allocation). */
struct counter_reg *counter_reg_new(void);
/* Frees the registry and its counters. NULL is ignored. */
void counter_reg_free(struct counter_reg *r);

/*
 * Register a counter at 0 (start-up, loop thread; never NULL). name: one
 * word, unique in the registry ("received"); help: one line saying what
 * it counts. Both are copied. Iteration follows registration order.
 */
struct counter *counter_new(struct counter_reg *r, const char *name, const char *help);

/* Atomic: any thread. */
void counter_inc(struct counter *c);
void counter_add(struct counter *c, uint64_t n);
uint64_t counter_value(const struct counter *c);

const char *counter_name(const struct counter *c);
const char *counter_help(const struct counter *c);

/* fn(arg, counter) for each counter, in registration order. */
void counter_reg_each(const struct counter_reg *r, void (*fn)(void *arg, const struct counter *c),
                      void *arg);

#endif
