/*
 * test_wpool.c - lib/wpool: jobs run in named pool threads and complete on
 * the loop thread, the queue is bounded (EAGAIN), and the one shutdown
 * rule: running jobs finish (WPOOL_DONE), queued ones complete with
 * WPOOL_CANCELLED without running; every job completes exactly once.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>

#include "wpool.h"

/* A gate the test opens to let blocked jobs go on. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open, nstarted;

struct tjob {
    struct wpool_job job;
    int ran, completed, status, block;
    int on_loop;
    char thread_name[16];
};

static pthread_t loop_thread;
static int ncompleted;
static struct event_base *base;

static void
work(struct wpool_job *j)
{
    struct tjob *t = j->arg;
    pthread_getname_np(pthread_self(), t->thread_name, sizeof(t->thread_name));
    pthread_mutex_lock(&gate_mu);
    nstarted++;
    pthread_cond_broadcast(&gate_cv);
    while (t->block && !gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    t->ran++;
}

static void
done(struct wpool_job *j)
{
    struct tjob *t = j->arg;
    t->completed++;
    t->status = j->status;
    t->on_loop = pthread_equal(pthread_self(), loop_thread);
    ncompleted++;
}

static void
tjob_init(struct tjob *t, int block)
{
    memset(t, 0, sizeof(*t));
    t->job.work = work;
    t->job.done = done;
    t->job.arg = t;
    t->block = block;
}

static void
wait_started(int n)
{
    pthread_mutex_lock(&gate_mu);
    while (nstarted < n)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}

static void
reset(void)
{
    gate_open = nstarted = ncompleted = 0;
    loop_thread = pthread_self();
}

/* Run the loop until n jobs completed in all. */
static void
loop_until(int n)
{
    while (ncompleted < n)
        event_base_loop(base, EVLOOP_ONCE);
}

static void *
open_when_taken(void *arg)
{
    struct wpool *p = arg;
    while (wpool_queued(p) != 0)
        sched_yield();
    pthread_mutex_lock(&gate_mu);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    return NULL;
}

static void
test_named_threads_and_loop_completion(void **state)
{
    char err[256];
    struct tjob jobs[8];
    (void)state;
    reset();
    base = event_base_new();
    struct wpool *p = wpool_new(base, "sr-test", 3, 0, err, sizeof(err));
    assert_non_null(p);
    assert_int_equal(wpool_threads(p), 3);
    for (int i = 0; i < 8; i++) {
        tjob_init(&jobs[i], 0);
        assert_int_equal(wpool_submit(p, &jobs[i].job), 0);
    }
    assert_int_equal((int)wpool_pending(p), 8);
    loop_until(8);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(jobs[i].ran, 1);
        assert_int_equal(jobs[i].completed, 1);
        assert_int_equal(jobs[i].status, WPOOL_DONE);
        assert_true(jobs[i].on_loop);
        assert_string_equal(jobs[i].thread_name, "sr-test");
    }
    assert_int_equal((int)wpool_pending(p), 0);
    wpool_free(p);
    event_base_free(base);
}

static void
test_bounded_queue(void **state)
{
    char err[256];
    struct tjob jobs[5];
    (void)state;
    reset();
    base = event_base_new();
    struct wpool *p = wpool_new(base, "sr-test", 1, 2, err, sizeof(err));
    assert_non_null(p);
    for (int i = 0; i < 5; i++)
        tjob_init(&jobs[i], 1);
    assert_int_equal(wpool_submit(p, &jobs[0].job), 0);
    wait_started(1); /* the one thread is busy: the next ones wait */
    assert_int_equal(wpool_submit(p, &jobs[1].job), 0);
    assert_int_equal(wpool_submit(p, &jobs[2].job), 0);
    errno = 0;
    assert_int_equal(wpool_submit(p, &jobs[3].job), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal((int)wpool_queued(p), 2);
    assert_int_equal((int)wpool_running(p), 1);
    pthread_mutex_lock(&gate_mu);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    loop_until(3);
    assert_int_equal(jobs[3].completed, 0); /* refused: never completes */
    wpool_free(p);
    event_base_free(base);
}

static void
test_shutdown_rule(void **state)
{
    char err[256];
    struct tjob jobs[4];
    (void)state;
    reset();
    base = event_base_new();
    struct wpool *p = wpool_new(base, "sr-test", 1, 0, err, sizeof(err));
    assert_non_null(p);
    for (int i = 0; i < 4; i++) {
        tjob_init(&jobs[i], i == 0);
        assert_int_equal(wpool_submit(p, &jobs[i].job), 0);
    }
    wait_started(1);
    /* The running job goes on only once wpool_free has taken the queued ones. */
    pthread_t opener;
    assert_int_equal(pthread_create(&opener, NULL, open_when_taken, p), 0);
    wpool_free(p);
    pthread_join(opener, NULL);
    assert_int_equal(jobs[0].ran, 1);
    assert_int_equal(jobs[0].completed, 1);
    assert_int_equal(jobs[0].status, WPOOL_DONE);
    for (int i = 1; i < 4; i++) {
        assert_int_equal(jobs[i].ran, 0);
        assert_int_equal(jobs[i].completed, 1);
        assert_int_equal(jobs[i].status, WPOOL_CANCELLED);
        assert_true(jobs[i].on_loop);
    }
    event_base_free(base);
}

static int call_status = 99, call_ran;

static void
call_work(void *arg)
{
    (void)arg;
    call_ran++;
}

static void
call_done(void *arg, int status)
{
    *(int *)arg = status;
    ncompleted++;
}

static void
test_call(void **state)
{
    char err[256];
    (void)state;
    reset();
    base = event_base_new();
    struct wpool *p = wpool_new(base, "sr-test", 2, 0, err, sizeof(err));
    assert_non_null(p);
    assert_int_equal(wpool_call(p, call_work, call_done, &call_status), 0);
    loop_until(1);
    assert_int_equal(call_ran, 1);
    assert_int_equal(call_status, WPOOL_DONE);
    wpool_free(p);
    event_base_free(base);
}

/* wpool_resize: more threads start at once; fewer: the extra ones leave when idle. */
static void
test_resize(void **state)
{
    char err[256];
    struct tjob jobs[6];
    (void)state;
    reset();
    base = event_base_new();
    struct wpool *p = wpool_new(base, "sr-test", 1, 0, err, sizeof(err));
    assert_non_null(p);
    for (int i = 0; i < 6; i++)
        tjob_init(&jobs[i], 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(wpool_submit(p, &jobs[i].job), 0);
    wait_started(1);
    assert_int_equal((int)wpool_queued(p), 2);
    /* Grow: the two waiting jobs start while the first still blocks. */
    assert_int_equal(wpool_resize(p, 3), 0);
    assert_int_equal(wpool_threads(p), 3);
    wait_started(3);
    assert_int_equal((int)wpool_running(p), 3);
    pthread_mutex_lock(&gate_mu);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    loop_until(3);

    /* Shrink to one: two blocking jobs run one at a time. */
    assert_int_equal(wpool_resize(p, 1), 0);
    assert_int_equal(wpool_threads(p), 1);
    pthread_mutex_lock(&gate_mu);
    gate_open = 0;
    pthread_mutex_unlock(&gate_mu);
    assert_int_equal(wpool_submit(p, &jobs[3].job), 0);
    assert_int_equal(wpool_submit(p, &jobs[4].job), 0);
    wait_started(4);
    for (int i = 0; i < 2000; i++) {
        assert_int_equal((int)wpool_running(p), 1);
        assert_int_equal((int)wpool_queued(p), 1);
        sched_yield();
    }
    pthread_mutex_lock(&gate_mu);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    loop_until(5);
    /* Grow again (reuses nothing stale), then shut down with everything joined. */
    assert_int_equal(wpool_resize(p, 2), 0);
    assert_int_equal(wpool_submit(p, &jobs[5].job), 0);
    loop_until(6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(jobs[i].completed, 1);
    wpool_free(p);
    event_base_free(base);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_named_threads_and_loop_completion),
        cmocka_unit_test(test_bounded_queue),
        cmocka_unit_test(test_shutdown_rule),
        cmocka_unit_test(test_call),
        cmocka_unit_test(test_resize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
