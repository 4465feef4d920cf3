/*
 * qctl.c - the administrator's verbs on the deferred queue: flush,
 * requeue, delete, hold, release, for queue IDs or ALL.
 *
 * Public calls: queue_control.
 *
 * A verb never blocks the event loop. Its targets (the IDs given, or a
 * snapshot of the index for ALL) are taken in slices of QCTL_SLICE: on
 * the loop each ID is found in O(1) in the index and decided (skip,
 * "after the delivery in progress", or a file to move or remove); the
 * slice's file work (renames, one fsync of each folder per slice;
 * unlinks) runs in one worker job; back on the loop the slice's index
 * changes are applied and reported, and the next slice starts. An entry
 * whose file is being moved is marked admin, so the scheduler neither
 * starts nor expires it meanwhile. Verbs run one at a time, in the order
 * they came; flush and requeue need no file work and yield to the loop
 * between slices. Data lines and the summary are the ones the
 * synchronous verbs always gave.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "queue_file.h"
#include "queue_int.h"
#include "qctl.h"
#include "scheduler.h"

#define QCTL_SLICE 512

enum qverb { V_FLUSH, V_REQUEUE, V_DELETE, V_HOLD, V_RELEASE };

struct qctl_item {
    struct qent *e;
    int was_due;
    int err; /* 0 done, else errno */
};

struct qctl_op {
    struct queue *q;
    enum qverb verb;
    int all;
    char **ids; /* the IDs given, or the index snapshot for ALL */
    size_t nids, pos;
    struct qctl_item items[QCTL_SLICE];
    size_t nitems;
    int ndone, nfailed;
    int interrupted; /* the daemon began to shut down */
    void (*out)(void *arg, const char *line);
    void (*done)(void *arg, int ok, const char *msg);
    void *arg;
    struct qctl_op *next;
};

static void op_step(struct qctl_op *op);

static void
op_free(struct qctl_op *op)
{
    for (size_t i = 0; i < op->nids; i++)
        free(op->ids[i]);
    free(op->ids);
    free(op);
}

/* The running verb is over: answer, then start the next one. */
static void
op_finish(struct qctl_op *op)
{
    struct queue *q = op->q;
    char msg[200];
    const char *past = op->verb == V_FLUSH     ? "scheduled for delivery"
                       : op->verb == V_REQUEUE ? "requeued"
                       : op->verb == V_DELETE  ? "deleted"
                       : op->verb == V_HOLD    ? "held"
                                               : "released";
    if (op->verb == V_FLUSH || (op->verb == V_REQUEUE && !op->all))
        q->flushing = 1;
    sched_pump(q, 0);
    snprintf(msg, sizeof(msg), "%d message%s %s%s%s", op->ndone, op->ndone == 1 ? "" : "s",
             past, op->nfailed ? " (some IDs failed)" : "",
             op->interrupted ? " (interrupted by the shutdown)" : "");
    q->ops = op->next;
    if (q->ops == NULL)
        q->ops_tail = NULL;
    op->done(op->arg, !(op->nfailed && !op->ndone), msg);
    op_free(op);
    if (q->ops)
        event_active(q->op_ev, 0, 0);
    q->h.idle(q->h.ctx);
}

static void out_line(struct qctl_op *op, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
out_line(struct qctl_op *op, const char *fmt, ...)
{
    char line[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    op->out(op->arg, line);
}

/* Worker: the slice's renames (one fsync per folder) or unlinks. */
static void
op_work(void *arg)
{
    struct qctl_op *op = arg;
    struct queue *q = op->q;
    if (op->verb == V_DELETE) {
        for (size_t i = 0; i < op->nitems; i++) {
            int rc = queue_file_remove(q->qdir, op->items[i].e->id);
            op->items[i].err = rc < 0 && errno != ENOENT ? errno : 0;
        }
        return;
    }
    const char *ids[QCTL_SLICE];
    int errs[QCTL_SLICE];
    for (size_t i = 0; i < op->nitems; i++)
        ids[i] = op->items[i].e->id;
    if (op->verb == V_HOLD)
        queue_file_move_batch(q->qdir, ids, op->nitems, QUEUE_DEFERRED, QUEUE_HOLD, errs);
    else
        queue_file_move_batch(q->qdir, ids, op->nitems, QUEUE_HOLD, QUEUE_DEFERRED, errs);
    for (size_t i = 0; i < op->nitems; i++)
        op->items[i].err = errs[i];
}

/* Loop: apply the slice's outcome to the index and report it. */
static void
op_apply(struct qctl_op *op)
{
    struct queue *q = op->q;
    for (size_t i = 0; i < op->nitems; i++) {
        struct qctl_item *it = &op->items[i];
        struct qent *e = it->e;
        e->admin = 0;
        if (it->err) {
            const char *what = op->verb == V_DELETE ? "delete"
                               : op->verb == V_HOLD ? "hold"
                                                    : "release";
            out_line(op, "%s: cannot %s: %s", e->id, what, strerror(it->err));
            op->nfailed++;
            if (it->was_due)
                qindex_due_push(&q->ix, e, 0);
            continue;
        }
        op->ndone++;
        switch (op->verb) {
        case V_DELETE:
            log_info("%s: removed (deleted by the administrator)", e->id);
            out_line(op, "%s: deleted", e->id);
            qindex_remove(&q->ix, e);
            break;
        case V_HOLD:
            qindex_set_held(&q->ix, e, 1);
            log_info("%s: held", e->id);
            out_line(op, "%s: held", e->id);
            break;
        default: /* release */
            qindex_set_held(&q->ix, e, 0);
            e->hold_after = 0;
            e->next = 0;
            qindex_due_push(&q->ix, e, 0);
            log_info("%s: released from hold", e->id);
            out_line(op, "%s: released", e->id);
            break;
        }
    }
    op->nitems = 0;
}

static void
op_done(void *arg, int cancelled)
{
    struct qctl_op *op = arg;
    struct queue *q = op->q;
    if (cancelled) {
        /* Stopping: the files of this slice stay where they were; the verb ends with the queue. */
        for (size_t i = 0; i < op->nitems; i++)
            op->items[i].e->admin = 0;
        op->nitems = 0;
        q->njobs--;
        return;
    }
    op_apply(op);
    q->njobs--; /* counted by queue_run; the idle hint comes with the verb's end */
    sched_pump(q, 0);
    op_step(op);
}

/* Decide one slice on the loop; file work goes to a worker job. */
static void
op_step(struct qctl_op *op)
{
    struct queue *q = op->q;
    size_t budget = QCTL_SLICE;
    if (q->h.stopping(q->h.ctx) && op->pos < op->nids) {
        /* Shutting down: the rest is left as it is, and said so. */
        op->nfailed += op->all ? 0 : (int)(op->nids - op->pos);
        op->interrupted = 1;
        op->pos = op->nids;
    }
    while (op->pos < op->nids && op->nitems < QCTL_SLICE && budget-- > 0) {
        const char *id = op->ids[op->pos];
        struct qent *e = qindex_find(&q->ix, id);
        if (e == NULL) {
            if (!op->all) {
                out_line(op, "%.40s: no such message in the queue", id);
                op->nfailed++;
            }
            op->pos++;
            continue;
        }
        if (e->admin)
            break; /* the same ID twice in one slice: after this slice */
        op->pos++;
        switch (op->verb) {
        case V_FLUSH:
        case V_REQUEUE:
            if (e->held)
                continue;
            e->next = 0;
            qindex_due_push(&q->ix, e, 0);
            out_line(op, "%s: scheduled", e->id);
            op->ndone++;
            continue;
        case V_DELETE:
            if (e->active) {
                e->del_after = 1;
                out_line(op, "%s: will be deleted after the delivery in progress", e->id);
                op->ndone++;
                continue;
            }
            break;
        case V_HOLD:
            if (e->held)
                continue;
            if (e->active) {
                e->hold_after = 1;
                out_line(op, "%s: will be held after the delivery in progress", e->id);
                op->ndone++;
                continue;
            }
            break;
        case V_RELEASE:
            if (!e->held)
                continue;
            break;
        }
        struct qctl_item *it = &op->items[op->nitems++];
        it->e = e;
        it->was_due = e->due;
        it->err = 0;
        qindex_due_unlink(&q->ix, e);
        e->admin = 1;
    }
    if (op->nitems) {
        if (queue_run(q, op_work, op_done, op) < 0) {
            for (size_t i = 0; i < op->nitems; i++)
                op->items[i].err = ENOMEM;
            op_apply(op);
        } else {
            return;
        }
    }
    if (op->pos < op->nids) {
        event_active(q->op_ev, 0, 0); /* yield to the loop, then the next slice */
        return;
    }
    op_finish(op);
}

void
qctl_resume(evutil_socket_t fd, short what, void *arg)
{
    struct queue *q = arg;
    (void)fd;
    (void)what;
    if (q->ops)
        op_step(q->ops);
}

static int
verb_of(const char *verb, enum qverb *v)
{
    static const char *const names[] = {"flush", "requeue", "delete", "hold", "release"};
    for (int i = 0; i < 5; i++)
        if (strcmp(verb, names[i]) == 0) {
            *v = (enum qverb)i;
            return 0;
        }
    return -1;
}

void
queue_control(struct queue *q, const char *verb, char **ids, int n,
              void (*out)(void *arg, const char *line),
              void (*done)(void *arg, int ok, const char *msg), void *arg)
{
    char msg[200];
    enum qverb v;
    if (verb_of(verb, &v) < 0) {
        snprintf(msg, sizeof(msg), "unknown queue verb '%.40s'", verb);
        done(arg, 0, msg);
        return;
    }
    if (n == 0 && v != V_FLUSH) {
        snprintf(msg, sizeof(msg), "%s needs queue IDs or ALL", verb);
        done(arg, 0, msg);
        return;
    }
    struct qctl_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        done(arg, 0, "out of memory");
        return;
    }
    op->q = q;
    op->verb = v;
    op->all = n == 0 || (n == 1 && strcmp(ids[0], "ALL") == 0);
    op->out = out;
    op->done = done;
    op->arg = arg;
    size_t want = op->all ? q->ix.n : (size_t)n;
    op->ids = calloc(want ? want : 1, sizeof(char *));
    if (op->ids == NULL) {
        free(op);
        done(arg, 0, "out of memory");
        return;
    }
    /* ALL: a snapshot, last entry first (as the verbs always went). */
    for (size_t i = 0; i < want; i++) {
        const char *id = op->all ? q->ix.ents[want - 1 - i]->id : ids[i];
        if ((op->ids[i] = strdup(id)) == NULL) {
            op_free(op);
            done(arg, 0, "out of memory");
            return;
        }
        op->nids++;
    }
    if (q->ops_tail)
        q->ops_tail->next = op;
    else
        q->ops = op;
    q->ops_tail = op;
    if (q->ops == op)
        op_step(op);
}

void
qctl_free_all(struct queue *q)
{
    while (q->ops) {
        struct qctl_op *op = q->ops;
        q->ops = op->next;
        for (size_t i = 0; i < op->nitems; i++)
            op->items[i].e->admin = 0;
        op_free(op);
    }
    q->ops_tail = NULL;
}
