/* qindex.h - the queue's in-memory index: entries by ID, the due list (see qindex.c). */
#ifndef SR_QINDEX_H
#define SR_QINDEX_H

#include <stddef.h>
#include <time.h>

#include "qid.h"

/* One queued message, as the loop knows it (no file content). */
struct qent {
    char id[QID_LEN + 1];
    unsigned held : 1, active : 1, due : 1, del_after : 1, hold_after : 1;
    unsigned warned : 1; /* delay warning sent (this run of the daemon) */
    unsigned admin : 1;  /* an admin verb is moving or removing its file */
    time_t next;         /* next attempt, 0 as soon as possible */
    time_t arrival;
    size_t idx;                       /* position in ents[] */
    struct qent *hnext;               /* hash chain */
    struct qent *due_next, *due_prev; /* the due list, in order */
};

struct qindex {
    struct qent **ents; /* every entry, unordered */
    size_t n, cap;
    struct qent **hash; /* chains by ID */
    size_t nbuckets;    /* a power of two */
    struct qent *due_head, *due_tail;
    size_t nheld;
};

void qindex_init(struct qindex *x);
/* Free every entry and the tables. */
void qindex_clear(struct qindex *x);
/* Add an entry (ID copied); NULL on no memory. The ID must not be there yet. */
struct qent *qindex_add(struct qindex *x, const char *id, int held, time_t next, time_t arrival);
/* Remove and free an entry (also from the due list). */
void qindex_remove(struct qindex *x, struct qent *e);
/* The entry of an ID, or NULL: O(1). */
struct qent *qindex_find(const struct qindex *x, const char *id);
/* Mark held or not (keeps nheld right; held entries leave the due list). */
void qindex_set_held(struct qindex *x, struct qent *e, int held);
/* Append (or put in front) to the due list unless due, active, held or in an admin verb. */
void qindex_due_push(struct qindex *x, struct qent *e, int front);
void qindex_due_unlink(struct qindex *x, struct qent *e);

#endif
