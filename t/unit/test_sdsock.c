/* test_sdsock.c - lib/sdsock: LISTEN_FDS, socket addresses, ListenStream= parsing and matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "sdsock.h"

static void
test_same(void **state)
{
    (void)state;
    assert_true(sdsock_same("127.0.0.1:10025", "127.0.0.1:10025"));
    assert_false(sdsock_same("127.0.0.1:10025", "127.0.0.1:10026"));
    assert_false(sdsock_same("127.0.0.1:10025", "127.0.0.2:10025"));
    assert_true(sdsock_same("[::1]:10025", "[0:0::1]:10025"));
    assert_false(sdsock_same("[::1]:10025", "127.0.0.1:10025"));
    /* A bare port is every address: it serves only a wildcard listen. */
    assert_true(sdsock_same("0.0.0.0:10025", "10025"));
    assert_true(sdsock_same("[::]:10025", "10025"));
    assert_false(sdsock_same("127.0.0.1:10025", "10025"));
    assert_false(sdsock_same("127.0.0.1:10025", "/run/scanrelay.sock"));
    assert_false(sdsock_same("127.0.0.1:10025", "127.0.0.1:"));
    assert_false(sdsock_same("127.0.0.1:10025", "127.0.0.1:99999"));
}

static void
test_unit(void **state)
{
    (void)state;
    char path[] = "/tmp/test_sdsock.XXXXXX", err[256], **l;
    size_t n;
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "[Unit]\nListenStream=1.2.3.4:1\n"
                       "[Socket]\n# comment\nListenStream = 127.0.0.1:10025\n"
                       "ListenStream=[::1]:10025\nListenStreamX=9\nBacklog=1024\n"
                       "[Install]\nListenStream=5\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(sdsock_unit_streams(path, &l, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 2);
    assert_string_equal(l[0], "127.0.0.1:10025");
    assert_string_equal(l[1], "[::1]:10025");
    sdsock_free_list(l, n);
    unlink(path);
    assert_int_equal(sdsock_unit_streams(path, &l, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, path));
}

static void
test_take(void **state)
{
    (void)state;
    int fds[4];
    char buf[64];
    /* Meant for another process: nothing taken, variables gone. */
    setenv("LISTEN_PID", "1", 1);
    setenv("LISTEN_FDS", "1", 1);
    assert_int_equal(sdsock_take(fds, 4), 0);
    assert_null(getenv("LISTEN_FDS"));
    /* A listening socket on fd 3. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(s, 8), 0);
    int saved = dup(3);
    assert_int_equal(dup2(s, 3), 3);
    snprintf(buf, sizeof(buf), "%ld", (long)getpid());
    setenv("LISTEN_PID", buf, 1);
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_FDNAMES", "scanrelayd.socket", 1);
    assert_int_equal(sdsock_take(fds, 4), 1);
    assert_int_equal(fds[0], 3);
    assert_null(getenv("LISTEN_PID"));
    assert_null(getenv("LISTEN_FDNAMES"));
    assert_int_equal(sdsock_addr(3, buf, sizeof(buf)), 0);
    assert_true(strncmp(buf, "127.0.0.1:", 10) == 0);
    /* Too many for the caller. */
    setenv("LISTEN_PID", "0", 1);
    snprintf(buf, sizeof(buf), "%ld", (long)getpid());
    setenv("LISTEN_PID", buf, 1);
    setenv("LISTEN_FDS", "9", 1);
    assert_int_equal(sdsock_take(fds, 4), -1);
    close(s);
    if (saved >= 0) {
        dup2(saved, 3);
        close(saved);
    } else {
        close(3);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same),
        cmocka_unit_test(test_unit),
        cmocka_unit_test(test_take),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
