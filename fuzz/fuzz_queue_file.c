/*
 * fuzz_queue_file.c - the queue file reader (queue/queue_file) on a file
 * left by a crash or a damaged disk: the input is written as
 * deferred/ID in a scratch queue folder and loaded.
 *
 * Checks, when it loads: the envelope's strings hold no CR or LF (a
 * damaged file must not smuggle an SMTP command into a delivery), the
 * content range lies within the file and reads back whole, and the
 * in-place updates of the contract (each recipient's state and reason,
 * the attempt counters) leave a file that loads again with the same
 * recipients and the new values.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "envelope.h"
#include "fuzz.h"
#include "queue_file.h"

#define ID "0123456789ABCD"

static char qdir[600];

static int
no_crlf(const char *s)
{
    return s == NULL || strpbrk(s, "\r\n") == NULL;
}

static void
check_env(const struct envelope *env)
{
    FUZZ_CHECK(env->sender != NULL && no_crlf(env->sender));
    FUZZ_CHECK(no_crlf(env->envid));
    for (size_t i = 0; i < env->nrcpt; i++) {
        FUZZ_CHECK(env->rcpt[i].addr != NULL && no_crlf(env->rcpt[i].addr));
        FUZZ_CHECK(no_crlf(env->rcpt[i].orcpt));
    }
    for (int i = 0; i < XF_COUNT; i++)
        FUZZ_CHECK(no_crlf(env->xforward[i]));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[700];

    if (qdir[0] == '\0') {
        snprintf(qdir, sizeof(qdir), "%s/queue", fuzz_tmpdir());
        FUZZ_CHECK(queue_dir_init(qdir) == 0);
    }
    snprintf(path, sizeof(path), "%s/deferred/%s", qdir, ID);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FUZZ_CHECK(fd >= 0);
    for (size_t off = 0; off < size;) {
        ssize_t n = write(fd, data + off, size - off);
        FUZZ_CHECK(n > 0);
        off += (size_t)n;
    }
    close(fd);

    struct queue_entry *qe = queue_file_load(qdir, ID, 1);
    if (qe == NULL) {
        FUZZ_CHECK(errno != 0);
        return 0;
    }
    check_env(qe->env);
    FUZZ_CHECK(qe->content_offset >= 0 && qe->content_size >= 0);
    FUZZ_CHECK((size_t)(qe->content_offset + qe->content_size) == size);
    char buf[512];
    off_t got = 0;
    for (;;) {
        ssize_t n = queue_file_read_content(qe, buf, sizeof(buf), got);
        FUZZ_CHECK(n >= 0);
        if (n == 0)
            break;
        FUZZ_CHECK(memcmp(buf, data + qe->content_offset + got, (size_t)n) == 0);
        got += n;
    }
    FUZZ_CHECK(got == qe->content_size);

    /* In-place updates, then load again. */
    size_t nrcpt = qe->env->nrcpt;
    static const char *const reasons[] = {"", "250 2.0.0 ok", "451 4.4.1 \r\ndown\ttoo long? "
                                                              "\xe3\x81\x82\xe3\x81\x84"};
    for (size_t i = 0; i < nrcpt; i++)
        FUZZ_CHECK(queue_file_set_rcpt(qe, i, (enum rcpt_state)(i % 4), reasons[i % 3], 0) == 0);
    FUZZ_CHECK(queue_file_set_meta(qe, 7, 1700000000, 1700000300) == 0);
    queue_entry_free(qe);

    qe = queue_file_load(qdir, ID, 0);
    FUZZ_CHECK(qe != NULL);
    check_env(qe->env);
    FUZZ_CHECK(qe->env->nrcpt == nrcpt);
    FUZZ_CHECK(qe->attempts == 7 && qe->next_attempt == 1700000300 &&
               qe->last_attempt == 1700000000);
    for (size_t i = 0; i < nrcpt; i++)
        FUZZ_CHECK(qe->env->rcpt[i].state == (enum rcpt_state)(i % 4));
    queue_entry_free(qe);
    return 0;
}
