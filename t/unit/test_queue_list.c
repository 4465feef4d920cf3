/*
 * test_queue_list.c - the "scanrelay queue" and "scanrelay flush" commands
 * end to end: queue files written with queue_file_create, the command run
 * as a child process (TZ=UTC), its output compared with golden files
 * (t/golden/queue-list.ref, queue-list-json.ref). Live actions are checked
 * against a fake daemon on a unix socket, and the "not running" message
 * against a missing socket. SR_GOLDEN_UPDATE=1 rewrites the golden files.
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
#include <ftw.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "envelope.h"
#include "queue_file.h"
#include "spool.h"

#ifndef SCANRELAY_BIN
#error "SCANRELAY_BIN must name the scanrelay binary"
#endif
#ifndef GOLDEN_DIR
#error "GOLDEN_DIR must name t/golden"
#endif

struct fixture {
    char dir[200];
    char qdir[256];
    char conf[256];
    char sock[256];
};

static int
rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_queue_list.XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->qdir, sizeof(f->qdir), "%s/queue", f->dir);
    snprintf(f->conf, sizeof(f->conf), "%s/scanrelay.conf", f->dir);
    snprintf(f->sock, sizeof(f->sock), "%s/control.sock", f->dir);
    FILE *fp = fopen(f->conf, "w");
    if (fp == NULL)
        return -1;
    fprintf(fp, "queue_directory = \"%s\"\ncontrol_socket = \"%s\"\n", f->qdir, f->sock);
    fclose(fp);
    if (queue_dir_init(f->qdir) < 0)
        return -1;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Run the command with args; stdout+stderr into a new string, exit status in *status. */
static char *
run(struct fixture *f, const char *args, int *status)
{
    size_t cmdlen = strlen(SCANRELAY_BIN) + strlen(f->conf) + strlen(args) + 64;
    char *cmd = malloc(cmdlen);
    assert_non_null(cmd);
    snprintf(cmd, cmdlen, "TZ=UTC LC_ALL=C %s -c %s %s 2>&1", SCANRELAY_BIN, f->conf, args);
    FILE *p = popen(cmd, "r");
    free(cmd);
    assert_non_null(p);
    size_t len = 0, cap = 4096;
    char *out = malloc(cap);
    size_t n;
    while ((n = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 1024)
            out = realloc(out, cap *= 2);
    }
    out[len] = '\0';
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

static void
compare_golden(const char *name, const char *got)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", GOLDEN_DIR, name);
    if (getenv("SR_GOLDEN_UPDATE")) {
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        fputs(got, fp);
        fclose(fp);
    }
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    char *want = calloc(1, 1 << 16);
    size_t n = fread(want, 1, (1 << 16) - 1, fp);
    want[n] = '\0';
    fclose(fp);
    if (strcmp(want, got) != 0) {
        print_error("--- %s\n%s--- got\n%s---\n", path, want, got);
        free(want);
        fail_msg("output differs from %s", name);
    }
    free(want);
}

static void
add_message(struct fixture *f, const char *id, const char *sender, time_t arrival, size_t size,
            const char *const *rcpts, const char *const *reasons, size_t n)
{
    struct envelope *env = envelope_new();
    assert_non_null(env);
    assert_int_equal(envelope_set_sender(env, sender), 0);
    env->arrival = arrival;
    for (size_t i = 0; i < n; i++) {
        int k = envelope_add_rcpt(env, rcpts[i], NULL, 0);
        assert_true(k >= 0);
        if (reasons[i] && strcmp(reasons[i], "DONE") != 0) {
            env->rcpt[k].state = RCPT_DEFERRED;
            assert_int_equal(envelope_set_reason(&env->rcpt[k], reasons[i]), 0);
        }
    }
    struct spool *sp = spool_new(1 << 20, NULL);
    assert_non_null(sp);
    for (size_t i = 0; i < size; i++)
        assert_int_equal(spool_write(sp, i % 70 == 69 ? "\n" : "x", 1), 0);
    assert_int_equal(queue_file_create(f->qdir, id, env, NULL, 0, sp, 0), 0);
    spool_free(sp);

    /* Recipients marked "DONE" are delivered already: not listed. */
    struct queue_entry *qe = queue_file_load(f->qdir, id, 1);
    assert_non_null(qe);
    for (size_t i = 0; i < n; i++)
        if (reasons[i] && strcmp(reasons[i], "DONE") == 0)
            assert_int_equal(queue_file_set_rcpt(qe, i, RCPT_DONE, "250 2.0.0 Ok", 1), 0);
    queue_entry_free(qe);
    envelope_free(env);
}

/* Three messages: grouped reasons, a held one with the null sender and a
 * long reason, and one with bytes that need escaping. */
static void
fill_queue(struct fixture *f)
{
    const char *r7 = "connect to 127.0.0.1[127.0.0.1]:7: Connection refused";
    const char *r9 = "connect to 127.0.0.1[127.0.0.1]:9: Connection refused";
    const char *rlong = "host 127.0.0.1[127.0.0.1] said: 450 4.2.0 <x@c.test>: Recipient "
                        "address rejected: Greylisted (in reply to RCPT TO command)";

    const char *rc1[] = {"bob@a.test", "carol@b.test", "dave@a.test", "erin@c.test",
                         "frank@d.test"};
    const char *rs1[] = {r9, r7, r9, NULL, "DONE"};
    add_message(f, "018BCFE5A0E000", "alice@example.com", 1700000000, 255, rc1, rs1, 5);

    const char *rc2[] = {"null@a.test"};
    const char *rs2[] = {rlong};
    add_message(f, "018BCFE5A0E001", "", 1700000123, 3243, rc2, rs2, 1);
    assert_int_equal(queue_file_hold(f->qdir, "018BCFE5A0E001"), 0);

    const char *rc3[] = {"\"quote\\\"me\"@x.test", "tab\there@x.test"};
    const char *rs3[] = {"451 4.3.0 Sp\xc3\xa4ter \xff bitte",
                         "451 4.3.0 Sp\xc3\xa4ter \xff bitte"};
    add_message(f, "018BCFE5A0E0FF", "odd\x01sender\xc3\xbc@example.com", 1699228800, 1048576, rc3,
                rs3, 2);
}

static void
test_list_text(void **state)
{
    struct fixture *f = *state;
    int st;
    fill_queue(f);
    char *out = run(f, "queue", &st);
    assert_int_equal(st, 0);
    compare_golden("queue-list.ref", out);
    free(out);
}

static void
test_list_json(void **state)
{
    struct fixture *f = *state;
    int st;
    fill_queue(f);
    char *out = run(f, "-j queue", &st);
    assert_int_equal(st, 0);
    compare_golden("queue-list-json.ref", out);
    free(out);
}

static void
test_list_empty(void **state)
{
    struct fixture *f = *state;
    int st;
    char *out = run(f, "queue", &st);
    assert_int_equal(st, 0);
    assert_string_equal(out, "Mail queue is empty\n");
    free(out);
    out = run(f, "queue -j", &st);
    assert_int_equal(st, 0);
    assert_string_equal(out, "");
    free(out);

    /* One small message: singular "Request", Kbytes rounded down. */
    const char *rc[] = {"r@x"};
    const char *rs[] = {NULL};
    add_message(f, "018BCFE5A0E000", "s@x", 1700000000, 1000, rc, rs, 1);
    out = run(f, "queue", &st);
    assert_int_equal(st, 0);
    assert_string_equal(out, "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
                             "018BCFE5A0E000    1000 Tue Nov 14 22:13:20  s@x\n"
                             "                                         r@x\n"
                             "\n"
                             "-- 0 Kbytes in 1 Request.\n");
    free(out);

    /* A broken file is reported and skipped. */
    char path[512];
    snprintf(path, sizeof(path), "%s/deferred/018BCFE5A0E001", f->qdir);
    FILE *fp = fopen(path, "w");
    fputs("garbage\n", fp);
    fclose(fp);
    out = run(f, "queue", &st);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "018BCFE5A0E001: cannot read queue file: malformed"));
    assert_non_null(strstr(out, "-- 0 Kbytes in 1 Request.\n"));
    free(out);
}

static void
test_daemon_not_running(void **state)
{
    struct fixture *f = *state;
    int st;
    char want[512];
    snprintf(want, sizeof(want),
             "scanrelay: the scanrelayd daemon is not running (no control socket at %s)\n",
             f->sock);
    char *out = run(f, "flush", &st);
    assert_int_equal(st, 2);
    assert_string_equal(out, want);
    free(out);
    out = run(f, "queue delete ALL", &st);
    assert_int_equal(st, 2);
    assert_string_equal(out, want);
    free(out);

    /* Usage errors never reach the socket. */
    out = run(f, "queue delete 018bcfe5a0e000", &st);
    assert_int_equal(st, 2);
    assert_string_equal(out, "scanrelay: invalid queue ID: 018bcfe5a0e000\n");
    free(out);
    out = run(f, "flush ALL", &st);
    assert_int_equal(st, 2);
    free(out);
    out = run(f, "queue hold", &st);
    assert_int_equal(st, 2);
    free(out);
    out = run(f, "queue frobnicate 018BCFE5A0E000", &st);
    assert_int_equal(st, 2);
    free(out);
}

/*
 * A fake daemon: answers each connection with the scripted reply and
 * writes the requests it got to a file, one per line.
 */
static pid_t
fake_daemon(const char *sock, const char *reply, int nconn, const char *log)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(lfd, 8), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid > 0) {
        close(lfd);
        return pid;
    }
    alarm(20); /* never outlive a failed test */
    FILE *lf = fopen(log, "w");
    for (int i = 0; i < nconn; i++) {
        int c = accept(lfd, NULL, NULL);
        if (c < 0)
            _exit(1);
        char buf[8192];
        size_t len = 0;
        while (len < sizeof(buf) - 1 && !memchr(buf, '\n', len)) {
            ssize_t r = read(c, buf + len, sizeof(buf) - 1 - len);
            if (r <= 0)
                break;
            len += (size_t)r;
        }
        fwrite(buf, 1, len, lf);
        fflush(lf);
        if (write(c, reply, strlen(reply)) < 0)
            _exit(1);
        close(c);
    }
    _exit(0);
}

static char *
slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static void
test_live_actions(void **state)
{
    struct fixture *f = *state;
    char log[512];
    int st, ws;
    snprintf(log, sizeof(log), "%s/requests", f->dir);

    pid_t pid = fake_daemon(
        f->sock, "* 018BCFE5A0E000 scheduled\n* 018BCFE5A0E001 scheduled\nOK 2 messages\n", 1, log);
    char *out = run(f, "flush 018BCFE5A0E000 018BCFE5A0E001", &st);
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_int_equal(st, 0);
    assert_string_equal(out, "018BCFE5A0E000 scheduled\n018BCFE5A0E001 scheduled\n2 messages\n");
    free(out);
    out = slurp(log);
    assert_string_equal(out, "flush 018BCFE5A0E000 018BCFE5A0E001\n");
    free(out);
    unlink(f->sock);

    /* ERR: exit 1, text on stderr. */
    pid = fake_daemon(f->sock, "ERR 018BCFE5A0E002: no such message\n", 1, log);
    out = run(f, "queue hold 018BCFE5A0E002", &st);
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_int_equal(st, 1);
    assert_string_equal(out, "scanrelay: 018BCFE5A0E002: no such message\n");
    free(out);
    out = slurp(log);
    assert_string_equal(out, "hold 018BCFE5A0E002\n");
    free(out);
    unlink(f->sock);

    /* ALL stands alone; many IDs are split over several requests. */
    pid = fake_daemon(f->sock, "OK\n", 1, log);
    out = run(f, "queue delete 018BCFE5A0E000 ALL", &st);
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_int_equal(st, 0);
    assert_string_equal(out, "");
    free(out);
    out = slurp(log);
    assert_string_equal(out, "delete ALL\n");
    free(out);
    unlink(f->sock);

    char args[16384] = "queue requeue";
    for (int i = 0; i < 600; i++)
        snprintf(args + strlen(args), sizeof(args) - strlen(args), " 018BCFE5A0%04X", i);
    pid = fake_daemon(f->sock, "OK\n", 3, log);
    out = run(f, args, &st);
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_int_equal(st, 0);
    free(out);
    out = slurp(log);
    int lines = 0, ids = 0;
    for (char *p = out; *p; p++) {
        lines += *p == '\n';
        ids += *p == ' ';
    }
    assert_int_equal(lines, 3);
    assert_int_equal(ids, 600);
    assert_non_null(strstr(out, "requeue 018BCFE5A00000 "));
    assert_non_null(strstr(out, " 018BCFE5A0010F\nrequeue 018BCFE5A00110 "));
    free(out);
    unlink(f->sock);

    /* A broken answer is an error, not a success. */
    pid = fake_daemon(f->sock, "HELLO\n", 1, log);
    out = run(f, "flush", &st);
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_int_equal(st, 2);
    assert_non_null(strstr(out, "cannot talk to scanrelayd"));
    free(out);
}

int
main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_list_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_daemon_not_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_actions, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
