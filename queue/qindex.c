/*
 * qindex.c - the deferred queue's in-memory index.
 *
 * Public calls: qindex_init, qindex_clear, qindex_add, qindex_remove,
 * qindex_find, qindex_set_held, qindex_due_push, qindex_due_unlink.
 *
 * One small entry per queued message: an array of every entry (for
 * walks: queue runs, ALL), a chained hash table by queue ID so an
 * administrator's ID is found in O(1), and the due list (messages whose
 * attempt is due, in order). It owns the entries; it does no I/O and is
 * used on the event loop only. Allocation failures return NULL; the
 * table grows when it holds more entries than buckets, and a failed grow
 * only makes chains longer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qindex.h"

static size_t
hash_id(const char *id)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return (size_t)(h ^ (h >> 29));
}

void
qindex_init(struct qindex *x)
{
    memset(x, 0, sizeof(*x));
}

void
qindex_clear(struct qindex *x)
{
    for (size_t i = 0; i < x->n; i++)
        free(x->ents[i]);
    free(x->ents);
    free(x->hash);
    qindex_init(x);
}

/* Double the buckets and rechain; on no memory keep the old table. */
static void
rehash(struct qindex *x)
{
    size_t nb = x->nbuckets ? x->nbuckets * 2 : 1024;
    struct qent **h = calloc(nb, sizeof(*h));
    if (h == NULL)
        return;
    for (size_t i = 0; i < x->n; i++) {
        struct qent *e = x->ents[i];
        size_t b = hash_id(e->id) & (nb - 1);
        e->hnext = h[b];
        h[b] = e;
    }
    free(x->hash);
    x->hash = h;
    x->nbuckets = nb;
}

struct qent *
qindex_add(struct qindex *x, const char *id, int held, time_t next, time_t arrival)
{
    if (x->n == x->cap) {
        size_t nc = x->cap ? x->cap * 2 : 1024;
        struct qent **ne = realloc(x->ents, nc * sizeof(*ne));
        if (ne == NULL)
            return NULL;
        x->ents = ne;
        x->cap = nc;
    }
    if (x->n >= x->nbuckets)
        rehash(x);
    if (x->hash == NULL)
        return NULL;
    struct qent *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    strncpy(e->id, id, QID_LEN);
    e->held = held ? 1 : 0;
    e->next = next;
    e->arrival = arrival;
    e->idx = x->n;
    x->ents[x->n++] = e;
    size_t b = hash_id(e->id) & (x->nbuckets - 1);
    e->hnext = x->hash[b];
    x->hash[b] = e;
    if (held)
        x->nheld++;
    return e;
}

struct qent *
qindex_find(const struct qindex *x, const char *id)
{
    if (x->nbuckets == 0)
        return NULL;
    for (struct qent *e = x->hash[hash_id(id) & (x->nbuckets - 1)]; e; e = e->hnext)
        if (strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

void
qindex_due_unlink(struct qindex *x, struct qent *e)
{
    if (!e->due)
        return;
    if (e->due_prev)
        e->due_prev->due_next = e->due_next;
    else
        x->due_head = e->due_next;
    if (e->due_next)
        e->due_next->due_prev = e->due_prev;
    else
        x->due_tail = e->due_prev;
    e->due = 0;
    e->due_next = e->due_prev = NULL;
}

void
qindex_due_push(struct qindex *x, struct qent *e, int front)
{
    if (e->due || e->active || e->held || e->admin)
        return;
    e->due = 1;
    if (front) {
        e->due_prev = NULL;
        e->due_next = x->due_head;
        if (x->due_head)
            x->due_head->due_prev = e;
        else
            x->due_tail = e;
        x->due_head = e;
    } else {
        e->due_next = NULL;
        e->due_prev = x->due_tail;
        if (x->due_tail)
            x->due_tail->due_next = e;
        else
            x->due_head = e;
        x->due_tail = e;
    }
}

void
qindex_set_held(struct qindex *x, struct qent *e, int held)
{
    if (held && !e->held) {
        qindex_due_unlink(x, e);
        e->held = 1;
        x->nheld++;
    } else if (!held && e->held) {
        e->held = 0;
        x->nheld--;
    }
}

void
qindex_remove(struct qindex *x, struct qent *e)
{
    qindex_due_unlink(x, e);
    if (e->held)
        x->nheld--;
    struct qent **pp = &x->hash[hash_id(e->id) & (x->nbuckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    size_t i = e->idx;
    x->ents[i] = x->ents[--x->n];
    x->ents[i]->idx = i;
    free(e);
}
