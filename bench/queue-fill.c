/*
 * queue-fill.c - fill a queue folder with N messages through the queue
 * file API (queue_file_create: the same crash-safe write as custody), for
 * bench/queue-admin-bench.sh.
 *
 * usage: queue-fill QUEUE_DIR N SIZE DELAY
 *   N messages of about SIZE bytes each, every one different (its number
 *   and a random nonce in the Subject, Message-ID and body), from
 *   <bench@example.org> to <rcpt@example.net>, next attempt DELAY seconds
 *   from now (the file's mtime, as the scheduler stores it), so a daemon
 *   started on the folder holds them without trying them.
 * The files are written by FILL_THREADS threads at once (each file is
 * fsync'd, as custody does; parallel writers share the journal commits).
 * Prints the time taken. Exit 0 ok, 1 on the first error.
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "envelope.h"
#include "qid.h"
#include "queue_file.h"
#include "spool.h"

#define FILL_THREADS 16

static const char *qdir;
static long total, made;
static size_t size;
static time_t next;
static int failed;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

/* The next message number and a fresh queue ID, or -1 when done. */
static long
take(char *id)
{
    pthread_mutex_lock(&mu);
    long i = failed || made >= total ? -1 : made++;
    if (i >= 0)
        qid_next(id);
    pthread_mutex_unlock(&mu);
    return i;
}

static void *
fill(void *arg)
{
    char line[80];
    unsigned seed = (unsigned)(uintptr_t)arg ^ (unsigned)time(NULL);
    (void)arg;
    for (;;) {
        char id[QID_LEN + 1], path[4096], hdr[512];
        long i = take(id);
        if (i < 0)
            return NULL;
        struct envelope *env = envelope_new();
        struct spool *sp = spool_new(size + 1024, NULL);
        if (env == NULL || sp == NULL || envelope_set_sender(env, "bench@example.org") < 0 ||
            envelope_add_rcpt(env, "rcpt@example.net", NULL, 0) < 0) {
            fprintf(stderr, "out of memory\n");
            failed = 1;
            return NULL;
        }
        env->arrival = time(NULL);
        long nonce = rand_r(&seed);
        int hl = snprintf(hdr, sizeof(hdr),
                          "From: <bench@example.org>\r\nTo: <rcpt@example.net>\r\n"
                          "Subject: queued %ld-%lx\r\nMessage-ID: <%s.%lx@bench>\r\n\r\n",
                          i, nonce, id, nonce);
        spool_write(sp, hdr, (size_t)hl);
        for (size_t w = 0; w < size; w += 78) {
            int ll = snprintf(line, sizeof(line), "%0*lx %ld line %zu\r\n", 40,
                              nonce ^ (long)w, i, w);
            spool_write(sp, line, (size_t)ll);
        }
        if (queue_file_create(qdir, id, env, NULL, 0, sp, 0) < 0) {
            fprintf(stderr, "queue_file_create %s: %s\n", id, strerror(errno));
            failed = 1;
        } else {
            snprintf(path, sizeof(path), "%s/deferred/%s", qdir, id);
            struct timespec ts[2] = {{next, 0}, {next, 0}};
            utimensat(AT_FDCWD, path, ts, 0);
        }
        envelope_free(env);
        spool_free(sp);
    }
}

int
main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: queue-fill QUEUE_DIR N SIZE DELAY\n");
        return 2;
    }
    qdir = argv[1];
    total = atol(argv[2]);
    size = (size_t)atol(argv[3]);
    next = time(NULL) + atol(argv[4]);
    struct timespec t0, t1;
    pthread_t th[FILL_THREADS];
    if (queue_dir_init(qdir) < 0) {
        perror(qdir);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uintptr_t k = 0; k < FILL_THREADS; k++)
        pthread_create(&th[k], NULL, fill, (void *)k);
    for (int k = 0; k < FILL_THREADS; k++)
        pthread_join(th[k], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (failed)
        return 1;
    printf("queue-fill: %ld messages in %.1f s\n", total,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
