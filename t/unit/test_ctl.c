/*
 * test_ctl.c - unit tests of lib/ctl.c, the control-socket client, against
 * a scripted fake daemon in a child process: data lines and final lines
 * (also split into single bytes and with CRLF), ERR, broken answers,
 * "not running" errors, and requests that must not be sent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"

struct fixture {
    char dir[64];
    char sock[100];
    char req[CTL_LINE_MAX + 16]; /* what the fake daemon received */
    pid_t pid;
    int pipefd;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_ctl.XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->sock, sizeof(f->sock), "%s/control.sock", f->dir);
    f->pid = -1;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    if (f->pid > 0) {
        kill(f->pid, SIGTERM);
        waitpid(f->pid, NULL, 0);
    }
    unlink(f->sock);
    rmdir(f->dir);
    free(f);
    return 0;
}

/*
 * Serve one connection: read the request line, send it back through a
 * pipe, answer with reply (byte by byte when bytewise).
 */
static void
serve(struct fixture *f, const char *reply, size_t replylen, int bytewise)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int p[2];
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", f->sock);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    assert_int_equal(pipe(p), 0);
    f->pid = fork();
    assert_true(f->pid >= 0);
    if (f->pid > 0) {
        close(lfd);
        close(p[1]);
        f->pipefd = p[0];
        return;
    }
    close(p[0]);
    int c = accept(lfd, NULL, NULL);
    if (c < 0)
        _exit(1);
    char buf[CTL_LINE_MAX + 16];
    size_t len = 0;
    while (len < sizeof(buf) && !memchr(buf, '\n', len)) {
        ssize_t r = read(c, buf + len, sizeof(buf) - len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    if (write(p[1], buf, len) < 0)
        _exit(1);
    close(p[1]);
    for (size_t i = 0; i < replylen;) {
        size_t n = bytewise ? 1 : replylen - i;
        ssize_t w = write(c, reply + i, n);
        if (w <= 0)
            _exit(1);
        i += (size_t)w;
    }
    close(c);
    _exit(0);
}

/* Wait for the fake daemon; its received request into f->req. */
static void
finish(struct fixture *f)
{
    size_t len = 0;
    ssize_t r;
    while ((r = read(f->pipefd, f->req + len, sizeof(f->req) - 1 - len)) > 0)
        len += (size_t)r;
    f->req[len] = '\0';
    close(f->pipefd);
    int st;
    assert_int_equal(waitpid(f->pid, &st, 0), f->pid);
    f->pid = -1;
    unlink(f->sock);
}

struct lines {
    char text[1024];
    int n;
};

static void
collect(void *arg, const char *line)
{
    struct lines *l = arg;
    size_t used = strlen(l->text);
    snprintf(l->text + used, sizeof(l->text) - used, "[%s]", line);
    l->n++;
}

static void
test_ok_with_data(void **state)
{
    struct fixture *f = *state;
    struct lines l = {0};
    char final[64];
    const char *reply = "* one\n* two words\n*\nOK 2 queued\n";

    for (int bytewise = 0; bytewise <= 1; bytewise++) {
        memset(&l, 0, sizeof(l));
        serve(f, reply, strlen(reply), bytewise);
        assert_int_equal(ctl_request(f->sock, "flush", collect, &l, final, sizeof(final)), 0);
        finish(f);
        assert_string_equal(f->req, "flush\n");
        assert_int_equal(l.n, 3);
        assert_string_equal(l.text, "[one][two words][]");
        assert_string_equal(final, "2 queued");
    }

    /* CRLF, bare OK, no callback, request with its own newline. */
    reply = "* x\r\nOK\r\n";
    serve(f, reply, strlen(reply), 0);
    assert_int_equal(ctl_request(f->sock, "status\n", NULL, NULL, final, sizeof(final)), 0);
    finish(f);
    assert_string_equal(f->req, "status\n");
    assert_string_equal(final, "");

    /* Final text cut to the caller's buffer; bytes after the final line ignored. */
    reply = "OK 0123456789abcdef\nOK again\n";
    serve(f, reply, strlen(reply), 0);
    assert_int_equal(ctl_request(f->sock, "reload", NULL, NULL, final, 8), 0);
    finish(f);
    assert_string_equal(final, "0123456");
}

static void
test_err(void **state)
{
    struct fixture *f = *state;
    struct lines l = {0};
    char final[64];
    const char *reply = "* 0005F1A2B3C4D5 deleted\nERR 0005F1A2B3C4D6: no such message\n";
    serve(f, reply, strlen(reply), 0);
    assert_int_equal(ctl_request(f->sock, "delete 0005F1A2B3C4D5 0005F1A2B3C4D6", collect, &l,
                                 final, sizeof(final)),
                     1);
    finish(f);
    assert_string_equal(f->req, "delete 0005F1A2B3C4D5 0005F1A2B3C4D6\n");
    assert_string_equal(l.text, "[0005F1A2B3C4D5 deleted]");
    assert_string_equal(final, "0005F1A2B3C4D6: no such message");

    serve(f, "ERR\n", 4, 0);
    assert_int_equal(ctl_request(f->sock, "hold ALL", NULL, NULL, final, sizeof(final)), 1);
    finish(f);
    assert_string_equal(final, "");
}

static void
expect_broken(struct fixture *f, const char *reply, size_t len)
{
    char final[64];
    serve(f, reply, len, 0);
    assert_int_equal(ctl_request(f->sock, "status", NULL, NULL, final, sizeof(final)), -1);
    assert_int_equal(errno, EPROTO);
    finish(f);
}

static void
test_broken(void **state)
{
    struct fixture *f = *state;
    expect_broken(f, "", 0);               /* closed at once */
    expect_broken(f, "* data\n", 7);       /* closed before the final line */
    expect_broken(f, "OK no newline", 13); /* final line never ended */
    expect_broken(f, "OKAY\n", 5);         /* not a protocol line */
    expect_broken(f, "*data\n", 6);
    expect_broken(f, "HELLO\nOK\n", 9);

    char *big = malloc(CTL_LINE_MAX + 10);
    memset(big, 'x', CTL_LINE_MAX + 9);
    big[0] = '*';
    big[1] = ' ';
    big[CTL_LINE_MAX + 9] = '\n';
    expect_broken(f, big, CTL_LINE_MAX + 10); /* data line too long */
    free(big);
}

static void
test_not_running(void **state)
{
    struct fixture *f = *state;
    char final[16];

    assert_int_equal(ctl_request(f->sock, "status", NULL, NULL, final, sizeof(final)), -1);
    assert_int_equal(errno, ENOENT);

    /* A socket file nobody listens on (daemon died). */
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", f->sock);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    close(fd);
    assert_int_equal(ctl_request(f->sock, "status", NULL, NULL, final, sizeof(final)), -1);
    assert_int_equal(errno, ECONNREFUSED);

    char longpath[300];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = '\0';
    assert_int_equal(ctl_request(longpath, "status", NULL, NULL, final, sizeof(final)), -1);
    assert_int_equal(errno, ENAMETOOLONG);
}

static void
test_bad_requests(void **state)
{
    struct fixture *f = *state;
    char final[16];

    assert_int_equal(ctl_request(f->sock, "status\nreload", NULL, NULL, final, sizeof(final)), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(ctl_request(f->sock, "", NULL, NULL, final, sizeof(final)), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(ctl_request(f->sock, "a\rb", NULL, NULL, final, sizeof(final)), -1);
    assert_int_equal(errno, EINVAL);

    char *big = malloc(CTL_LINE_MAX + 1);
    memset(big, 'x', CTL_LINE_MAX);
    big[CTL_LINE_MAX] = '\0';
    assert_int_equal(ctl_request(f->sock, big, NULL, NULL, final, sizeof(final)), -1);
    assert_int_equal(errno, EMSGSIZE);
    /* The longest line that fits (with its newline) is sent. */
    big[CTL_LINE_MAX - 1] = '\0';
    serve(f, "OK\n", 3, 0);
    assert_int_equal(ctl_request(f->sock, big, NULL, NULL, final, sizeof(final)), 0);
    finish(f);
    assert_int_equal(strlen(f->req), CTL_LINE_MAX);
    free(big);
}

int
main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ok_with_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
