/*
 * test_log.c - unit tests of lib/log.c: the lines written to stderr,
 * and the per-thread ID (log_set_id) every line of a scan thread carries:
 * after the level, once, only in the thread that set it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>
#include <unistd.h>

#include "log.h"

static char captured[8192];

/* Run fn with stderr going to a temporary file; its text into captured. */
static void
capture(void (*fn)(void))
{
    char path[] = "/tmp/test_log.XXXXXX";
    int fd = mkstemp(path), saved = dup(STDERR_FILENO);
    ssize_t n;

    assert_true(fd >= 0 && saved >= 0);
    unlink(path);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    fn();
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    n = pread(fd, captured, sizeof(captured) - 1, 0);
    assert_true(n >= 0);
    captured[n] = '\0';
    close(fd);
}

static void *
scan_thread(void *arg)
{
    (void)arg;
    log_set_id("0660EADB0024B7");
    assert_string_equal(log_get_id(), "0660EADB0024B7");
    log_info("scan: %s", "one");
    log_warnx("libclamav: %s", "two");
    log_info("%s: three", "0660EADB0024B7"); /* names it already */
    log_set_id(NULL);
    log_info("after");
    return NULL;
}

static void
lines(void)
{
    pthread_t t;

    log_init("tlog", 1);
    log_set_id("0660EADB0024B8"); /* another thread's ID does not leak over */
    assert_int_equal(pthread_create(&t, NULL, scan_thread, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    log_set_id("");
    log_info("main");
}

static void
test_thread_id(void **state)
{
    char want[256];
    long pid = (long)getpid();
    (void)state;

    capture(lines);
    snprintf(want, sizeof(want),
             "tlog[%ld]: 0660EADB0024B7: scan: one\n"
             "tlog[%ld]: warning: 0660EADB0024B7: libclamav: two\n"
             "tlog[%ld]: 0660EADB0024B7: three\n"
             "tlog[%ld]: after\n"
             "tlog[%ld]: main\n",
             pid, pid, pid, pid, pid);
    assert_string_equal(captured, want);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thread_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
