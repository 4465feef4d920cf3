/*
 * test_scan_pool.c - scan_pool.c on a real libevent event_base with the
 * real libclamav engine (t/sigs): results come back on the loop thread,
 * the loop keeps running while scans run, the queue is bounded, a reload
 * during scans changes nothing for them, shutdown cancels queued jobs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "engine.h"
#include "log.h"
#include "mime.h"
#include "scan.h"
#include "scan_pool.h"

#define SIGS SR_SOURCE_DIR "/t/sigs"

static const char virus_msg[] = "From: a@example.com\r\nSubject: v\r\n\r\n"
                                "X5O!P%@AP[4\\PZX54(P^)7CC)7}$"
                                "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*\r\n";
static const char clean_msg[] = "From: a@example.com\r\nSubject: c\r\n\r\nHello.\r\n";

static struct sr_config *cfg;
static struct engine_holder *holder;
static pthread_t loop_thread;

struct tally {
    struct event_base *base;
    int done, virus, clean, cancelled, wrong_thread, expected;
};

static void
on_done(struct scan_job *job, void *arg)
{
    struct tally *t = arg;

    if (!pthread_equal(pthread_self(), loop_thread))
        t->wrong_thread++;
    if (job->status == SCAN_JOB_CANCELLED) {
        t->cancelled++;
    } else {
        if (job->result.kind == SCAN_VIRUS)
            t->virus++;
        else if (job->result.kind == SCAN_CLEAN)
            t->clean++;
        scan_result_free(&job->result);
    }
    t->done++;
    if (t->done == t->expected)
        event_base_loopbreak(t->base);
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

/* Run the loop until the tally is complete, at most secs seconds. */
static void
run(struct event_base *base, int secs)
{
    struct timeval tv = {secs, 0};
    struct event *guard = evtimer_new(base, timeout_cb, base);
    evtimer_add(guard, &tv);
    event_base_dispatch(base);
    event_free(guard);
}

/* Work that records the log ID its thread carries. */
static void
id_work(struct scan_job *job, struct sr_engine *e)
{
    (void)e;
    snprintf(job->user, 32, "%s", log_get_id());
}

/* Every job's thread carries the job's log ID (the queue ID) while it runs, and only then. */
static void
test_log_id(void **state)
{
    (void)state;
    char err[256], seen[8][32];
    struct event_base *base = event_base_new();
    struct scan_pool *p = scan_pool_new(base, holder, cfg, 1, 100, err, sizeof(err));
    struct scan_job jobs[8];
    struct tally t = {base, 0, 0, 0, 0, 0, 8};

    assert_non_null(p);
    for (int i = 0; i < 8; i++) {
        memset(&jobs[i], 0, sizeof(jobs[i]));
        jobs[i].work = id_work;
        jobs[i].user = seen[i];
        if (i % 2 == 0)
            snprintf(jobs[i].log_id, sizeof(jobs[i].log_id), "0660EADB00240%d", i);
        assert_int_equal(scan_pool_submit(p, &jobs[i], on_done, &t), 0);
    }
    run(base, 20);
    assert_int_equal(t.done, 8);
    for (int i = 0; i < 8; i++) {
        char want[32] = "";
        if (i % 2 == 0)
            snprintf(want, sizeof(want), "0660EADB00240%d", i);
        assert_string_equal(seen[i], want);
    }
    scan_pool_free(p);
    event_base_free(base);
}

static void
test_results_on_loop(void **state)
{
    (void)state;
    char err[256];
    struct event_base *base = event_base_new();
    struct scan_pool *p = scan_pool_new(base, holder, cfg, 2, 100, err, sizeof(err));
    struct scan_job jobs[12];
    struct tally t = {base, 0, 0, 0, 0, 0, 12};

    assert_non_null(p);
    assert_int_equal(scan_pool_threads(p), 2);
    for (int i = 0; i < 12; i++) {
        memset(&jobs[i], 0, sizeof(jobs[i]));
        jobs[i].data = i % 3 ? virus_msg : clean_msg;
        jobs[i].len = strlen(jobs[i].data);
        jobs[i].nrcpts = 1;
        assert_int_equal(scan_pool_submit(p, &jobs[i], on_done, &t), 0);
    }
    /* Never called from inside submit. */
    assert_int_equal(t.done, 0);
    run(base, 20);
    assert_int_equal(t.done, 12);
    assert_int_equal(t.virus, 8);
    assert_int_equal(t.clean, 4);
    assert_int_equal(t.wrong_thread, 0);
    assert_int_equal(scan_pool_queued(p), 0);
    assert_int_equal(scan_pool_running(p), 0);
    scan_pool_free(p);
    event_base_free(base);
}

/* Slow work that waits for a gate, to hold the threads busy. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open;
static atomic_int started;

static void
slow_work(struct scan_job *job, struct sr_engine *e)
{
    (void)job;
    assert_non_null(e);
    atomic_fetch_add(&started, 1);
    pthread_mutex_lock(&gate_mu);
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}

struct ticker {
    struct event *ev;
    int ticks;
};

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct ticker *tk = arg;
    if (++tk->ticks == 5) {
        /* The loop ran five timer turns while both threads were busy: open the gate. */
        pthread_mutex_lock(&gate_mu);
        gate_open = 1;
        pthread_cond_broadcast(&gate_cv);
        pthread_mutex_unlock(&gate_mu);
    } else {
        struct timeval tv = {0, 20000};
        evtimer_add(tk->ev, &tv);
    }
}

static void
test_bounded_and_loop_free(void **state)
{
    (void)state;
    char err[256];
    struct event_base *base = event_base_new();
    struct scan_pool *p = scan_pool_new(base, holder, cfg, 2, 3, err, sizeof(err));
    struct scan_job jobs[6];
    struct tally t = {base, 0, 0, 0, 0, 0, 5};
    struct ticker tk = {NULL, 0};
    struct timeval tv = {0, 20000};

    gate_open = 0;
    atomic_store(&started, 0);
    assert_non_null(p);
    for (int i = 0; i < 6; i++) {
        memset(&jobs[i], 0, sizeof(jobs[i]));
        jobs[i].work = slow_work;
    }
    /* Two run, three wait; the sixth is refused. */
    assert_int_equal(scan_pool_submit(p, &jobs[0], on_done, &t), 0);
    assert_int_equal(scan_pool_submit(p, &jobs[1], on_done, &t), 0);
    while (atomic_load(&started) < 2)
        usleep(1000);
    for (int i = 2; i < 5; i++)
        assert_int_equal(scan_pool_submit(p, &jobs[i], on_done, &t), 0);
    errno = 0;
    assert_int_equal(scan_pool_submit(p, &jobs[5], on_done, &t), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(scan_pool_queued(p), 3);
    assert_int_equal(scan_pool_running(p), 2);

    /* The loop turns while the scans block. */
    tk.ev = evtimer_new(base, tick_cb, &tk);
    evtimer_add(tk.ev, &tv);
    run(base, 20);
    assert_int_equal(tk.ticks, 5);
    assert_int_equal(t.done, 5);
    assert_int_equal(t.wrong_thread, 0);
    event_free(tk.ev);
    scan_pool_free(p);
    event_base_free(base);
}

static void *
open_gate_later(void *arg)
{
    (void)arg;
    usleep(100000);
    pthread_mutex_lock(&gate_mu);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    return NULL;
}

static void
test_cancel_on_free(void **state)
{
    (void)state;
    char err[256];
    struct event_base *base = event_base_new();
    struct scan_pool *p = scan_pool_new(base, holder, cfg, 1, 0, err, sizeof(err));
    struct scan_job jobs[4];
    struct tally t = {base, 0, 0, 0, 0, 0, 4};

    gate_open = 0;
    atomic_store(&started, 0);
    for (int i = 0; i < 4; i++) {
        memset(&jobs[i], 0, sizeof(jobs[i]));
        jobs[i].work = slow_work;
        assert_int_equal(scan_pool_submit(p, &jobs[i], on_done, &t), 0);
    }
    while (atomic_load(&started) < 1)
        usleep(1000);
    /* Free while job 0 runs: the three queued are cancelled, job 0 completes. */
    pthread_t opener;
    assert_int_equal(pthread_create(&opener, NULL, open_gate_later, NULL), 0);
    scan_pool_free(p);
    pthread_join(opener, NULL);
    assert_int_equal(t.done, 4);
    assert_int_equal(t.cancelled, 3);
    assert_int_equal(t.wrong_thread, 0);
    event_base_free(base);
}

static void
test_reload_during_scans(void **state)
{
    (void)state;
    char err[256];
    struct event_base *base = event_base_new();
    struct scan_pool *p = scan_pool_new(base, holder, cfg, 2, 0, err, sizeof(err));
    enum { N = 60 };
    struct scan_job *jobs = calloc(N, sizeof(*jobs));
    struct tally t = {base, 0, 0, 0, 0, 0, N};

    for (int i = 0; i < N; i++) {
        jobs[i].data = virus_msg;
        jobs[i].len = sizeof(virus_msg) - 1;
        assert_int_equal(scan_pool_submit(p, &jobs[i], on_done, &t), 0);
        if (i == 10 || i == 30)
            assert_int_equal(engine_reload_async(holder), 0);
    }
    run(base, 60);
    assert_int_equal(engine_reload_wait(holder), 1);
    assert_int_equal(t.done, N);
    assert_int_equal(t.virus, N);
    scan_pool_free(p);
    event_base_free(base);
    free(jobs);
}

static int
setup(void **state)
{
    (void)state;
    char path[] = "/tmp/sr_test_pool.XXXXXX", conf[128], err[512];
    FILE *f;

    log_init("test_scan_pool", 1);
    mime_global_init();
    loop_thread = pthread_self();
    if (mkdtemp(path) == NULL)
        return -1;
    snprintf(conf, sizeof(conf), "%s/scanrelay.conf", path);
    f = fopen(conf, "w");
    fprintf(f, "virus {\n  database_directory = \"%s\"\n}\n", SIGS);
    fclose(f);
    sr_action_register();
    cfg = config_load(conf, 1, err, sizeof(err));
    unlink(conf);
    rmdir(path);
    if (cfg == NULL)
        return -1;
    holder = engine_holder_new(&cfg->virus, err, sizeof(err));
    if (holder == NULL) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    engine_holder_free(holder);
    config_free(cfg);
    mime_global_shutdown();
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_results_on_loop),
        cmocka_unit_test(test_log_id),
        cmocka_unit_test(test_bounded_and_loop_free),
        cmocka_unit_test(test_cancel_on_free),
        cmocka_unit_test(test_reload_during_scans),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
