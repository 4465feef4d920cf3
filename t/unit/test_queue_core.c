/*
 * test_queue_core.c - unit tests of the deferred queue behind its hooks
 * (queue/queue.c, qindex.c, qctl.c, custody.c, scheduler.c), with a fake
 * daemon: delivery that answers 250 from the loop, work "off the loop"
 * run from a loop callback, counted configuration references.
 *  - the index finds every one of 100,000 IDs by hash and keeps the due
 *    list in order through removals;
 *  - hold ALL and release ALL on 3,000 queue files move every file, answer
 *    with one line per message and the usual summary, and give the loop
 *    back between slices (a ticking event runs meanwhile);
 *  - released messages are delivered through the submit hook and removed;
 *  - queue_inject writes a new queue file, schedules it at once, and it is
 *    delivered; unknown IDs are reported; every configuration reference
 *    taken by a job is given back.
 * Each test works in its own fresh folder under $TMPDIR (or /tmp).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "action.h"
#include "config.h"
#include "envelope.h"
#include "qid.h"
#include "qindex.h"
#include "queue.h"
#include "queue_file.h"
#include "spool.h"

struct fake {
    char dir[256];
    struct event_base *base;
    struct sr_config *cfg;
    struct queue *q;
    int refs;         /* configuration references held now */
    int submitted;    /* deliveries asked */
    int lines;        /* data lines of the last verb */
    int done, ok;     /* the last verb answered */
    char summary[256];
    char first_line[256];
    int ticks;        /* loop turns seen while a verb ran */
    struct event *tick_ev;
    int injected_rc;
    char injected_id[QID_LEN + 1];
};

static int
rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/*
 * Fake daemon: work and done both run from one loop callback, queued
 * behind the events already active (first in, first out), as a worker's
 * completion would come back.
 */
struct job {
    void (*work)(void *);
    void (*done)(void *, int);
    void *arg;
    struct event *ev;
};

static void
job_cb(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;
    (void)fd;
    (void)what;
    j->work(j->arg);
    j->done(j->arg, 0);
    event_free(j->ev);
    free(j);
}

static int
later(struct event_base *base, void (*work)(void *), void (*done)(void *, int), void *arg)
{
    struct job *j = malloc(sizeof(*j));
    j->work = work;
    j->done = done;
    j->arg = arg;
    j->ev = event_new(base, -1, 0, job_cb, j);
    event_active(j->ev, EV_TIMEOUT, 0);
    return 0;
}

static int
h_run(void *ctx, void (*work)(void *), void (*done)(void *, int), void *arg)
{
    struct fake *f = ctx;
    return later(f->base, work, done, arg);
}

static void
nothing(void *arg)
{
    (void)arg;
}

/* While set, the fake downstream answers every recipient 451 (open_queue's start-up probe). */
static int refuse_deliveries;

static void
deliver_cb(void *arg, int cancelled)
{
    struct relay_job *j = arg;
    (void)cancelled;
    for (size_t i = 0; i < j->env->nrcpt; i++) {
        j->res[i].cls = refuse_deliveries ? RELAY_TEMP : RELAY_OK;
        j->res[i].code = refuse_deliveries ? 451 : 250;
        snprintf(j->res[i].dsn, sizeof(j->res[i].dsn), refuse_deliveries ? "4.3.0" : "2.0.0");
        snprintf(j->res[i].text, sizeof(j->res[i].text),
                 refuse_deliveries ? "451 4.3.0 Try again later" : "250 2.0.0 Ok");
    }
    snprintf(j->relay_name, sizeof(j->relay_name), "fake");
    j->done(j, j->arg);
}

static int
h_submit(void *ctx, struct relay_job *job)
{
    struct fake *f = ctx;
    f->submitted++;
    return later(f->base, nothing, deliver_cb, job);
}

static int
h_down(void *ctx)
{
    (void)ctx;
    return 0;
}

static const char *
h_remote(void *ctx)
{
    (void)ctx;
    return "fake";
}

static const struct sr_config *
h_config(void *ctx)
{
    return ((struct fake *)ctx)->cfg;
}

static struct sr_config *
h_ref(void *ctx)
{
    struct fake *f = ctx;
    f->refs++;
    return f->cfg;
}

static void
h_unref(void *ctx, struct sr_config *c)
{
    struct fake *f = ctx;
    assert_ptr_equal(c, f->cfg);
    f->refs--;
}

static void
h_idle(void *ctx)
{
    (void)ctx;
}

static int
h_stopping(void *ctx)
{
    (void)ctx;
    return 0;
}

static int
setup(void **state)
{
    struct fake *f = calloc(1, sizeof(*f));
    const char *t = getenv("TMPDIR");
    char path[512], err[256];
    snprintf(f->dir, sizeof(f->dir), "%s/test_queue_core.XXXXXX", t && *t ? t : "/tmp");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/scanrelay.conf", f->dir);
    FILE *fp = fopen(path, "w");
    fprintf(fp,
            "queue_directory = \"%s/queue\"\nstate_directory = \"%s\"\n"
            "queue {\n queue_run_delay = 1h\n minimal_backoff_time = 1h\n"
            " maximal_backoff_time = 2h\n probe_interval = 1h\n min_free_space = 0\n}\n",
            f->dir, f->dir);
    fclose(fp);
    f->cfg = config_load(path, 1, err, sizeof(err));
    if (f->cfg == NULL) {
        fprintf(stderr, "config: %s\n", err);
        return -1;
    }
    f->base = event_base_new();
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fake *f = *state;
    queue_free(f->q);
    if (f->tick_ev)
        event_free(f->tick_ev);
    event_base_free(f->base);
    config_free(f->cfg);
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static int count_files(struct fake *f, const char *sub);

static void
open_queue(struct fake *f)
{
    struct queue_hooks h = {
        .ctx = f,
        .submit = h_submit,
        .down = h_down,
        .remote_name = h_remote,
        .run = h_run,
        .config = h_config,
        .config_ref = h_ref,
        .config_unref = h_unref,
        .idle = h_idle,
        .stopping = h_stopping,
    };
    char err[256];
    int left = count_files(f, "deferred");
    /*
     * A queue that opens with mail probes the downstream with the oldest
     * message at once and, when it is taken, delivers everything (mail
     * left by a previous process). These tests want the mail to stay
     * queued, not due for an hour: the probe is refused.
     */
    refuse_deliveries = left > 0;
    f->q = queue_new(f->base, &h, err, sizeof(err));
    assert_non_null(f->q);
    for (int turns = 0; left > 0 && f->submitted == 0 && turns < 1000; turns++)
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    for (int turns = 0; left > 0 && turns < 100; turns++)
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    if (left > 0)
        assert_int_equal(f->submitted, 1);
    refuse_deliveries = 0;
    f->submitted = 0; /* the tests count their own deliveries */
}

static struct envelope *
make_env(void)
{
    struct envelope *env = envelope_new();
    assert_int_equal(envelope_set_sender(env, "s@example.org"), 0);
    assert_true(envelope_add_rcpt(env, "r@example.net", NULL, 0) >= 0);
    env->arrival = time(NULL);
    return env;
}

static struct spool *
make_body(int i)
{
    char buf[128];
    struct spool *sp = spool_new(4096, NULL);
    int n = snprintf(buf, sizeof(buf), "Subject: %d\r\n\r\nbody %d\r\n", i, i);
    assert_int_equal(spool_write(sp, buf, (size_t)n), 0);
    return sp;
}

/* n queue files in deferred/, due in an hour (not tried). */
static void
fill(struct fake *f, int n)
{
    char qdir[512], path[600];
    snprintf(qdir, sizeof(qdir), "%s/queue", f->dir);
    assert_int_equal(queue_dir_init(qdir), 0);
    struct envelope *env = make_env();
    for (int i = 0; i < n; i++) {
        char id[QID_LEN + 1];
        struct spool *sp = make_body(i);
        qid_next(id);
        assert_int_equal(queue_file_create(qdir, id, env, NULL, 0, sp, 0), 0);
        snprintf(path, sizeof(path), "%s/deferred/%s", qdir, id);
        struct timespec ts[2] = {{time(NULL) + 3600, 0}, {time(NULL) + 3600, 0}};
        utimensat(AT_FDCWD, path, ts, 0);
        spool_free(sp);
    }
    envelope_free(env);
}

static int
count_files(struct fake *f, const char *sub)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/queue/%s", f->dir, sub);
    DIR *d = opendir(path);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    if (d)
        closedir(d);
    return n;
}

static void
v_out(void *arg, const char *line)
{
    struct fake *f = arg;
    if (f->lines++ == 0)
        snprintf(f->first_line, sizeof(f->first_line), "%s", line);
}

static void
v_done(void *arg, int ok, const char *msg)
{
    struct fake *f = arg;
    f->done = 1;
    f->ok = ok;
    snprintf(f->summary, sizeof(f->summary), "%s", msg);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fake *f = arg;
    (void)fd;
    (void)what;
    if (f->done)
        return;
    f->ticks++;
    event_active(f->tick_ev, EV_TIMEOUT, 0);
}

/* Run a verb to its answer, counting the loop turns another event gets meanwhile. */
static void
run_verb(struct fake *f, const char *verb, char **ids, int n)
{
    f->lines = f->done = f->ok = f->ticks = 0;
    f->summary[0] = f->first_line[0] = '\0';
    if (f->tick_ev == NULL)
        f->tick_ev = event_new(f->base, -1, 0, tick_cb, f);
    event_active(f->tick_ev, EV_TIMEOUT, 0);
    queue_control(f->q, verb, ids, n, v_out, v_done, f);
    while (!f->done)
        assert_int_equal(event_base_loop(f->base, EVLOOP_ONCE), 0);
}

static void
test_index_hash(void **state)
{
    (void)state;
    struct qindex x;
    char id[QID_LEN + 1];
    qindex_init(&x);
    for (int i = 0; i < 100000; i++) {
        snprintf(id, sizeof(id), "%014X", 0x5F00000 + i);
        assert_non_null(qindex_add(&x, id, i % 7 == 0, 0, 0));
    }
    assert_int_equal(x.n, 100000);
    assert_true(x.nbuckets >= x.n);
    for (int i = 0; i < 100000; i += 1) {
        snprintf(id, sizeof(id), "%014X", 0x5F00000 + i);
        struct qent *e = qindex_find(&x, id);
        assert_non_null(e);
        assert_string_equal(e->id, id);
    }
    assert_null(qindex_find(&x, "00000000000000"));
    /* The due list keeps its order through removals; held ones never enter it. */
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "%014X", 0x5F00000 + i);
        qindex_due_push(&x, qindex_find(&x, id), 0);
    }
    snprintf(id, sizeof(id), "%014X", 0x5F00000 + 3);
    qindex_remove(&x, qindex_find(&x, id));
    assert_null(qindex_find(&x, id));
    int expect[] = {1, 2, 4, 5, 6, 8, 9}; /* 0 and 7 are held, 3 removed */
    size_t k = 0;
    for (struct qent *e = x.due_head; e; e = e->due_next, k++) {
        snprintf(id, sizeof(id), "%014X", 0x5F00000 + expect[k]);
        assert_string_equal(e->id, id);
    }
    assert_int_equal(k, 7);
    assert_int_equal(x.nheld, (100000 + 6) / 7 - 0);
    qindex_clear(&x);
}

static void
test_hold_release_all(void **state)
{
    struct fake *f = *state;
    char *all[] = {"ALL"};
    size_t deferred, held, active;
    fill(f, 3000);
    open_queue(f);
    run_verb(f, "hold", all, 1);
    assert_true(f->ok);
    assert_string_equal(f->summary, "3000 messages held");
    assert_int_equal(f->lines, 3000);
    assert_int_equal(count_files(f, "hold"), 3000);
    assert_int_equal(count_files(f, "deferred"), 0);
    /* Sliced: the loop ran other events while the verb went on. */
    assert_true(f->ticks >= 3000 / 512);
    queue_counts(f->q, &deferred, &held, &active);
    assert_int_equal(held, 3000);
    assert_int_equal(f->submitted, 0);

    /* Held again: nothing to do. */
    run_verb(f, "hold", all, 1);
    assert_string_equal(f->summary, "0 messages held");

    run_verb(f, "release", all, 1);
    assert_true(f->ok);
    assert_string_equal(f->summary, "3000 messages released");
    assert_int_equal(f->lines, 3000);
    assert_true(f->ticks >= 3000 / 512);
    /* Released messages are due: delivered through the hook, then removed. */
    while (queue_busy(f->q) || count_files(f, "deferred") || count_files(f, "hold"))
        assert_int_equal(event_base_loop(f->base, EVLOOP_ONCE), 0);
    assert_int_equal(f->submitted, 3000);
    queue_counts(f->q, &deferred, &held, &active);
    assert_int_equal(deferred + held + active, 0);
    assert_int_equal(f->refs, 0);
}

static void
test_ids(void **state)
{
    struct fake *f = *state;
    fill(f, 3);
    open_queue(f);
    char *ids[3];
    char qdir[512];
    snprintf(qdir, sizeof(qdir), "%s/queue/deferred", f->dir);
    DIR *d = opendir(qdir);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.' && n < 2)
            ids[n++] = strdup(de->d_name);
    closedir(d);
    ids[2] = strdup("0005F1A2B3C4D5");
    /* The same ID twice, one unknown: held once, reported missing once. */
    char *req[] = {ids[0], ids[0], ids[2]};
    run_verb(f, "hold", req, 3);
    assert_true(f->ok);
    assert_string_equal(f->summary, "1 message held (some IDs failed)");
    assert_int_equal(count_files(f, "hold"), 1);
    char *missing[] = {ids[2]};
    run_verb(f, "delete", missing, 1);
    assert_false(f->ok);
    assert_string_equal(f->first_line, "0005F1A2B3C4D5: no such message in the queue");
    char *del[] = {ids[1]};
    run_verb(f, "delete", del, 1);
    assert_true(f->ok);
    assert_string_equal(f->summary, "1 message deleted");
    assert_int_equal(count_files(f, "deferred"), 1);
    run_verb(f, "hold", NULL, 0);
    assert_false(f->ok);
    assert_string_equal(f->summary, "hold needs queue IDs or ALL");
    for (int i = 0; i < 3; i++)
        free(ids[i]);
    assert_int_equal(f->refs, 0);
}

static void
inject_cb(void *arg, int rc, int err, const char *id)
{
    struct fake *f = arg;
    (void)err;
    f->injected_rc = rc;
    if (id)
        snprintf(f->injected_id, sizeof(f->injected_id), "%s", id);
    f->done = 1;
}

static void
test_inject(void **state)
{
    struct fake *f = *state;
    open_queue(f);
    struct envelope *env = make_env();
    struct spool *sp = make_body(1);
    f->done = 0;
    f->injected_rc = -2;
    queue_inject(f->q, env, "X-Test: 1\r\n", 11, sp, inject_cb, f);
    assert_true(f->refs > 0);
    while (!f->done)
        assert_int_equal(event_base_loop(f->base, EVLOOP_ONCE), 0);
    assert_int_equal(f->injected_rc, 0);
    assert_true(qid_valid(f->injected_id));
    envelope_free(env);
    spool_free(sp);
    /* Scheduled at once: delivered and removed without a queue run. */
    while (queue_busy(f->q) || count_files(f, "deferred"))
        assert_int_equal(event_base_loop(f->base, EVLOOP_ONCE), 0);
    assert_int_equal(f->submitted, 1);
    assert_int_equal(f->refs, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_hash),
        cmocka_unit_test_setup_teardown(test_hold_release_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inject, setup, teardown),
    };
    sr_action_register();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
