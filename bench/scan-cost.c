/*
 * scan-cost.c - CPU cost of scanning, one thread, no SMTP: each message
 * file through scan_message() with one engine, ROUNDS times over the set.
 * Round 1 sees every message for the first time (libclamav's cache and
 * the engine's clean cache are cold for them); later rounds repeat them.
 * bench/scan-cost.sh builds the messages and runs this.
 *
 * usage: scan-cost CONFIG ROUNDS FILE...
 * Prints per round: milliseconds per message, parts answered from the
 * engine's clean cache, verdicts other than clean.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "engine.h"
#include "mime.h"
#include "policy.h"
#include "scan.h"

static char *
slurp(const char *path, size_t *len)
{
    struct stat st;
    char *buf;
    int fd = open(path, O_RDONLY);

    if (fd < 0 || fstat(fd, &st) < 0 || (buf = malloc((size_t)st.st_size + 1)) == NULL) {
        fprintf(stderr, "scan-cost: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    if (read(fd, buf, (size_t)st.st_size) != st.st_size) {
        fprintf(stderr, "scan-cost: %s: short read\n", path);
        exit(2);
    }
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

static double
now(void)
{
    return clock_mono();
}

int
main(int argc, char **argv)
{
    char err[1024];
    struct sr_config *c;
    struct sr_engine *e;
    int rounds, n;

    if (argc < 4 || (rounds = atoi(argv[2])) < 1) {
        fprintf(stderr, "usage: scan-cost CONFIG ROUNDS FILE...\n");
        return 2;
    }
    n = argc - 3;
    if (getenv("TZ") == NULL)
        setenv("TZ", ":/etc/localtime", 0); /* as scanrelayd does */
    sr_action_register();
    if ((c = config_load(argv[1], 1, err, sizeof(err))) == NULL ||
        engine_global_init(err, sizeof(err)) < 0) {
        fprintf(stderr, "scan-cost: %s\n", err);
        return 2;
    }
    mime_global_init();
    /* The config's policy rules (rule "NAME" { }) run as the daemon runs them. */
    if (policy_attach(c, err, sizeof(err)) < 0) {
        fprintf(stderr, "scan-cost: %s\n", err);
        return 2;
    }
    const char *rcpt[] = {"rcpt@example.org"};
    struct policy_run run = {policy_of(c), "sender@example.com", rcpt, 1, 0};
    struct scan_checker chk = {"policy", policy_check, &run};
    struct scan_opts sopts = {&chk, policy_nrules(run.policy) > 0, NULL, 0};
    if ((e = engine_load(&c->virus, err, sizeof(err))) == NULL) {
        fprintf(stderr, "scan-cost: %s\n", err);
        return 2;
    }
    char **msg = calloc((size_t)n, sizeof(*msg));
    size_t *len = calloc((size_t)n, sizeof(*len));
    if (msg == NULL || len == NULL)
        return 2;
    for (int i = 0; i < n; i++)
        msg[i] = slurp(argv[3 + i], &len[i]);

    for (int r = 1; r <= rounds; r++) {
        unsigned hits = 0, parts = 0, flagged = 0;
        double t0 = now();
        for (int i = 0; i < n; i++) {
            struct scan_result res;
            if (scan_message_opts(e, c, msg[i], len[i], 1, &sopts, &res) < 0) {
                fprintf(stderr, "scan-cost: %s: out of memory\n", argv[3 + i]);
                return 2;
            }
            hits += res.cache_hits;
            parts += (unsigned)res.nparts;
            flagged += res.kind != SCAN_CLEAN;
            scan_result_free(&res);
        }
        printf("round %d: %.3f ms/msg, %u/%u parts from the clean cache, %u flagged\n", r,
               (now() - t0) * 1e3 / n, hits, parts, flagged);
    }
    return 0;
}
