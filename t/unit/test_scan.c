/*
 * test_scan.c - scan.c end to end with the real libclamav, the test
 * signature set (t/sigs) and the virus corpus built at test time by
 * t/corpus/virus/make-corpus.py: every message of its manifest gets the
 * expected verdict and location (EICAR inline, base64, QP, uuencoded, in
 * zip, tar.gz, 7z, zip in zip five deep; encrypted zip; zip and gzip bombs;
 * every file of clamav-testfiles attached; clean mail), plus actions,
 * headers, strip ranges, size rules, MIME limits, timing of the 1 GiB zip
 * bomb (library and `scanrelay scan`), and scans from many threads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "engine.h"
#include "log.h"
#include "mime.h"
#include "scan.h"

#define SIGS SR_SOURCE_DIR "/t/sigs"
#define CORPUS SR_VIRUS_CORPUS

static struct sr_engine *engine;
static char confdir[] = "/tmp/sr_test_scan.XXXXXX";

/* A config with the test signatures and the given extra lines in scan { }. */
static struct sr_config *
conf(const char *virus_extra, const char *scan_extra)
{
    char path[256], err[512];
    FILE *f;
    struct sr_config *c;

    snprintf(path, sizeof(path), "%s/scanrelay.conf", confdir);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "virus {\n  database_directory = \"%s\"\n  max_recursion = 17\n%s\n}\n", SIGS,
            virus_extra ? virus_extra : "");
    fprintf(f, "scan {\n%s\n}\n", scan_extra ? scan_extra : "");
    fclose(f);
    sr_action_register();
    c = config_load(path, 1, err, sizeof(err));
    if (c == NULL)
        fail_msg("config: %s", err);
    return c;
}

static char *
slurp(const char *name, size_t *len)
{
    char path[512];
    struct stat st;
    char *buf;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", CORPUS, name);
    fd = open(path, O_RDONLY);
    if (fd < 0)
        fail_msg("%s: %s", path, strerror(errno));
    assert_int_equal(fstat(fd, &st), 0);
    buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

static double
now(void)
{
    return clock_mono();
}

static const struct scan_finding *
find_kind(const struct scan_result *r, enum scan_kind k)
{
    for (size_t i = 0; i < r->nfindings; i++)
        if (r->findings[i].kind == k)
            return &r->findings[i];
    return NULL;
}

/* Every message of the manifest. */
static void
test_corpus(void **state)
{
    (void)state;
    struct sr_config *c = conf(NULL, NULL);
    char path[512], line[1024];
    FILE *m;
    int n = 0, testfiles = 0, bad = 0;

    snprintf(path, sizeof(path), "%s/manifest.tsv", CORPUS);
    m = fopen(path, "r");
    assert_non_null(m);
    while (fgets(line, sizeof(line), m)) {
        char *file = strtok(line, "\t\n"), *kind = strtok(NULL, "\t\n"),
             *where = strtok(NULL, "\t\n");
        struct scan_result r;
        size_t len;
        char *msg;

        assert_non_null(where);
        msg = slurp(file, &len);
        assert_int_equal(scan_message(engine, c, msg, len, 1, &r), 0);
        const char *got = scan_kind_name(r.kind);
        int ok = strcmp(got, kind) == 0;
        if (ok && strcmp(where, "-") != 0)
            ok = (r.location && strstr(r.location, where)) || (r.virus && strstr(r.virus, where));
        if (!ok) {
            fprintf(stderr, "%s: expected %s at '%s', got %s at '%s' (%s)\n", file, kind, where,
                    got, r.location ? r.location : "", r.reason ? r.reason : "");
            bad++;
        }
        testfiles += strncmp(file, "testfile-", 9) == 0;
        scan_result_free(&r);
        free(msg);
        n++;
    }
    fclose(m);
    config_free(c);
    assert_int_equal(bad, 0);
    assert_true(n >= 16);
    /* Debian's clamav-testfiles has 44 files; all attached, all detected. */
    assert_true(testfiles >= 40);
}

static void
test_clean_headers(void **state)
{
    (void)state;
    struct sr_config *c = conf(NULL, NULL);
    struct scan_result r;
    char want[256];
    size_t len;
    char *msg = slurp("clean.eml", &len);

    assert_int_equal(scan_message(engine, c, msg, len, 1, &r), 0);
    assert_int_equal(r.kind, SCAN_CLEAN);
    assert_int_equal(r.action, SR_ACTION_DELIVER);
    assert_string_equal(r.result, "clean");
    assert_null(r.virus);
    assert_null(r.reason);
    assert_int_equal(r.nheaders, 2);
    snprintf(want, sizeof(want), "X-Virus-Scanned: scanrelay %s (ClamAV %s/2)", SCANRELAY_VERSION,
             engine_version());
    assert_string_equal(r.headers[0], want);
    assert_string_equal(r.headers[1], "X-Virus-Status: Clean");
    assert_int_equal(r.nparts, 2);
    assert_string_equal(r.parts[1].filename, "notes.txt");
    assert_int_equal(r.nstrips, 0);
    scan_result_free(&r);
    free(msg);
    config_free(c);
}

static void
test_virus_actions(void **state)
{
    (void)state;
    struct scan_result r;
    size_t len;
    char *msg = slurp("eicar-zip.eml", &len);

    /* Default: discard, Infected header, location inside the zip. */
    struct sr_config *c = conf(NULL, NULL);
    assert_int_equal(scan_message(engine, c, msg, len, 1, &r), 0);
    assert_int_equal(r.kind, SCAN_VIRUS);
    assert_int_equal(r.action, SR_ACTION_DISCARD);
    assert_string_equal(r.result, "virus");
    assert_string_equal(r.virus, "Win.Test.EICAR.UNOFFICIAL");
    assert_non_null(strstr(r.location, "invoice.zip/docs/eicar.com"));
    assert_string_equal(r.headers[1], "X-Virus-Status: Infected (Win.Test.EICAR.UNOFFICIAL)");
    assert_non_null(strstr(r.reason, "Win.Test.EICAR.UNOFFICIAL"));
    scan_result_free(&r);
    config_free(c);

    /* strip: the attachment's raw range, for rewrite_strip. */
    c = conf("action = strip", NULL);
    assert_int_equal(scan_message(engine, c, msg, len, 1, &r), 0);
    assert_int_equal(r.action, SR_ACTION_STRIP);
    assert_int_equal(r.nstrips, 1);
    assert_string_equal(r.strips[0].filename, "invoice.zip");
    assert_non_null(strstr(r.strips[0].reason, "Win.Test.EICAR"));
    assert_true(r.strips[0].raw_begin > 0);
    assert_true(r.strips[0].raw_end <= (int64_t)len);
    assert_non_null(memmem(msg + r.strips[0].raw_begin,
                           (size_t)(r.strips[0].raw_end - r.strips[0].raw_begin),
                           "filename=\"invoice.zip\"", 22));
    scan_result_free(&r);
    config_free(c);

    /* Findings disagree: the strongest action wins, the highest kind names it. */
    c = conf("action = tag", "encrypted_action = reject");
    size_t l2;
    char *enc = slurp("encrypted-zip.eml", &l2);
    assert_int_equal(scan_message(engine, c, enc, l2, 1, &r), 0);
    assert_int_equal(r.kind, SCAN_ENCRYPTED);
    assert_int_equal(r.action, SR_ACTION_REJECT);
    assert_string_equal(r.result, "policy");
    assert_string_equal(r.headers[1], "X-Virus-Status: Unchecked");
    assert_non_null(strstr(r.location, "secret.zip/payload.exe"));
    scan_result_free(&r);
    config_free(c);
    free(enc);
    free(msg);
}

static void
test_zip_bomb_timing(void **state)
{
    (void)state;
    struct sr_config *c = conf(NULL, NULL);
    struct scan_result r;
    size_t len;
    char *msg = slurp("zipbomb.eml", &len);
    double t0 = now(), dt;

    assert_true(len < 2 * 1024 * 1024); /* small on the wire */
    assert_int_equal(scan_message(engine, c, msg, len, 1, &r), 0);
    dt = now() - t0;
    assert_int_equal(r.kind, SCAN_LIMIT);
    assert_int_equal(r.action, SR_ACTION_QUARANTINE);
    const struct scan_finding *f = find_kind(&r, SCAN_LIMIT);
    assert_non_null(f);
    assert_string_equal(f->name, "file_size");
    assert_int_equal(f->value, 1LL << 30);
    assert_true(dt < 1.0);
    fprintf(stderr, "zip bomb (1 GiB) scanned in %.3f s\n", dt);
    scan_result_free(&r);

    /* The gzip bomb declares nothing: stopped while expanding. */
    free(msg);
    msg = slurp("gzbomb.eml", &len);
    t0 = now();
    assert_int_equal(scan_message(engine, c, msg, len, 1, &r), 0);
    dt = now() - t0;
    assert_int_equal(r.kind, SCAN_LIMIT);
    assert_true(r.expanded < 200LL * 1024 * 1024);
    assert_true(dt < 1.0);
    scan_result_free(&r);
    free(msg);
    config_free(c);
}

/*
 * A zip member that declares 100,000 bytes and expands to 64 MiB. The walk
 * counts zip members by declared size and leaves the expanding to
 * libclamav (once, not twice); libclamav's expansion tells the lie. Twice
 * in a row: libclamav's cache of clean objects must not hide it the second
 * time. With trust off (virus.max_file_size above 32M) the walk expands it
 * itself and the compression ratio stops it.
 */
static void
test_lying_zip(void **state)
{
    (void)state;
    struct sr_config *c = conf(NULL, NULL);
    struct scan_result r;
    size_t len;
    char *msg = slurp("ziplie.eml", &len);

    for (int round = 0; round < 2; round++) {
        double t0 = now();
        assert_int_equal(scan_message(engine, c, msg, len, 1, &r), 0);
        assert_int_equal(r.kind, SCAN_LIMIT);
        assert_int_equal(r.action, SR_ACTION_QUARANTINE); /* file_size_action */
        const struct scan_finding *f = find_kind(&r, SCAN_LIMIT);
        assert_non_null(f);
        assert_string_equal(f->name, "declared_size");
        assert_string_equal(f->location, "lying.zip/notes.txt");
        assert_int_equal(f->limit, 100000);
        assert_true(f->value > 100000 && f->value <= 64 << 20);
        assert_null(find_kind(&r, SCAN_VIRUS));
        assert_true(now() - t0 < 2.0);
        scan_result_free(&r);
    }
    config_free(c);

    c = conf("max_file_size = 64M", NULL);
    assert_int_equal(scan_message(engine, c, msg, len, 1, &r), 0);
    assert_int_equal(r.kind, SCAN_LIMIT);
    const struct scan_finding *f = find_kind(&r, SCAN_LIMIT);
    assert_non_null(f);
    assert_string_equal(f->name, "compression_ratio");
    scan_result_free(&r);
    config_free(c);
    free(msg);
}

/*
 * Clean zips: members counted by declared size come to the same total as
 * expanding them, on a first scan and on a hit in libclamav's cache.
 */
static void
test_zip_declared_sizes(void **state)
{
    (void)state;
    struct sr_config *c = conf(NULL, NULL), *off = conf("max_file_size = 64M", NULL);
    static const char *const names[] = {"clean-zip200k.eml", "clean-zipzip.eml", "clean-zip.eml"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct scan_result a, b, x;
        size_t len;
        char *msg = slurp(names[i], &len);
        assert_int_equal(scan_message(engine, off, msg, len, 1, &x), 0);
        assert_int_equal(scan_message(engine, c, msg, len, 1, &a), 0);
        assert_int_equal(scan_message(engine, c, msg, len, 1, &b), 0);
        assert_int_equal(x.kind, SCAN_CLEAN);
        assert_int_equal(a.kind, SCAN_CLEAN);
        assert_int_equal(b.kind, SCAN_CLEAN);
        assert_true(x.expanded > (int64_t)len / 2);
        assert_int_equal(a.expanded, x.expanded);
        assert_int_equal(b.expanded, x.expanded);
        assert_int_equal(a.archive_files, x.archive_files);
        scan_result_free(&a);
        scan_result_free(&b);
        scan_result_free(&x);
        free(msg);
    }
    config_free(c);
    config_free(off);
}

/*
 * The engine's cache of clean objects: the second scan of a clean message
 * answers its parts from the cache with the same verdict and totals; a
 * part with a finding is never cached; a new engine starts empty.
 */
static void
test_clean_cache(void **state)
{
    (void)state;
    struct sr_config *c = conf(NULL, NULL);
    char err[512];
    struct sr_engine *e = engine_load(&c->virus, err, sizeof(err));
    struct scan_result a, b;
    size_t len, vlen;
    char *msg = slurp("clean-zip200k.eml", &len), *virus = slurp("eicar-zip.eml", &vlen);

    assert_non_null(e);
    assert_int_equal(scan_message(e, c, msg, len, 1, &a), 0);
    assert_int_equal(scan_message(e, c, msg, len, 1, &b), 0);
    assert_int_equal(a.kind, SCAN_CLEAN);
    assert_int_equal(b.kind, SCAN_CLEAN);
    assert_int_equal(a.cache_hits, 0);
    assert_int_equal(b.cache_hits, b.nparts);
    assert_true(b.nparts >= 2);
    assert_int_equal(b.expanded, a.expanded);
    assert_int_equal(b.archive_files, a.archive_files);
    scan_result_free(&a);
    scan_result_free(&b);

    for (int i = 0; i < 2; i++) {
        assert_int_equal(scan_message(e, c, virus, vlen, 1, &a), 0);
        assert_int_equal(a.kind, SCAN_VIRUS);
        assert_true(a.cache_hits < a.nparts);
        scan_result_free(&a);
    }
    engine_unref(e);

    e = engine_load(&c->virus, err, sizeof(err));
    assert_non_null(e);
    assert_int_equal(scan_message(e, c, msg, len, 1, &a), 0);
    assert_int_equal(a.cache_hits, 0);
    scan_result_free(&a);
    engine_unref(e);
    free(msg);
    free(virus);
    config_free(c);
}

/* The same through `scanrelay scan`, engine load included. */
static void
test_cli(void **state)
{
    (void)state;
    char cmd[1024], buf[8192];
    double t0, dt;
    FILE *p;
    size_t n;
    int st;

    if (access(SR_SCANRELAY_BIN, X_OK) != 0)
        skip();
    snprintf(cmd, sizeof(cmd), "%s -c %s/scanrelay.conf scan %s/zipbomb.eml", SR_SCANRELAY_BIN,
             confdir, CORPUS);
    struct sr_config *c = conf(NULL, NULL); /* writes the config file */
    config_free(c);
    t0 = now();
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(buf, 1, sizeof(buf) - 1, p);
    buf[n] = '\0';
    st = pclose(p);
    dt = now() - t0;
    fprintf(stderr, "scanrelay scan zipbomb.eml: %.3f s\n", dt);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    assert_non_null(strstr(buf, "limit"));
    assert_non_null(strstr(buf, "bomb.zip/zeros.bin: file_size 1073741824 > 104857600"));
    assert_true(dt < 1.0);

    /* -j, and the exit codes for clean and virus, from standard input. */
    snprintf(cmd, sizeof(cmd), "%s -j -c %s/scanrelay.conf scan - < %s/eicar-7z.eml",
             SR_SCANRELAY_BIN, confdir, CORPUS);
    p = popen(cmd, "r");
    n = fread(buf, 1, sizeof(buf) - 1, p);
    buf[n] = '\0';
    st = pclose(p);
    assert_int_equal(WEXITSTATUS(st), 1);
    assert_true(buf[0] == '{');
    assert_non_null(strstr(buf, "\"verdict\":\"virus\""));
    assert_non_null(strstr(buf, "\"location\":\"files.7z/eicar.com\""));
    snprintf(cmd, sizeof(cmd), "%s -c %s/scanrelay.conf scan %s/clean.eml >/dev/null",
             SR_SCANRELAY_BIN, confdir, CORPUS);
    assert_int_equal(WEXITSTATUS(system(cmd)), 0);
    snprintf(cmd, sizeof(cmd), "%s -c %s/scanrelay.conf scan /nonexistent 2>/dev/null",
             SR_SCANRELAY_BIN, confdir);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof(cmd), "%s scan -d /nonexistent %s/clean.eml 2>/dev/null", SR_SCANRELAY_BIN,
             CORPUS);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
}

static void
test_size_rules(void **state)
{
    (void)state;
    struct scan_result r;
    size_t len;
    char *msg = slurp("clean-zip200k.eml", &len);

    /* message_size (reject) and recipients. */
    struct sr_config *c = conf(NULL, "message_size_limit = 100k\nrecipients_limit = 2\n"
                                     "recipients_action = discard");
    assert_int_equal(scan_message(engine, c, msg, len, 3, &r), 0);
    assert_int_equal(r.kind, SCAN_LIMIT);
    assert_int_equal(r.action, SR_ACTION_REJECT);
    assert_int_equal(r.nfindings, 2);
    assert_string_equal(r.findings[0].name, "message_size");
    assert_string_equal(r.findings[1].name, "recipients");
    assert_int_equal(r.findings[1].action, SR_ACTION_DISCARD);
    /* Each carries its rule and checker; the verdict names the deciding one. */
    assert_string_equal(r.findings[0].rule, "message_size");
    assert_string_equal(r.findings[0].checker, "limits");
    assert_string_equal(r.rule, "message_size");
    assert_string_equal(r.checker, "limits");
    assert_int_equal(r.findings[1].value, 3);
    scan_result_free(&r);
    config_free(c);

    /* file_size of the attachment itself, strip: only that part is cut. */
    c = conf(NULL, "file_size_limit = 150k\nfile_size_action = strip");
    assert_int_equal(scan_message(engine, c, msg, len, 1, &r), 0);
    assert_int_equal(r.kind, SCAN_LIMIT);
    assert_int_equal(r.action, SR_ACTION_STRIP);
    assert_int_equal(r.nstrips, 1);
    assert_string_equal(r.strips[0].filename, "data.zip");
    assert_string_equal(r.location, "data.zip");
    assert_non_null(strstr(r.strips[0].reason, "file_size"));
    scan_result_free(&r);
    config_free(c);

    /* file_size of a member, after decompression. */
    char *small;
    size_t slen;
    small = slurp("clean-zip.eml", &slen);
    c = conf(NULL, "file_size_limit = 1k");
    assert_int_equal(scan_message(engine, c, small, slen, 1, &r), 0);
    assert_int_equal(r.kind, SCAN_LIMIT);
    assert_string_equal(r.location, "report.zip/b/c.txt");
    assert_int_equal(r.findings[0].value, 1720);
    assert_int_equal(r.findings[0].limit, 1024);
    scan_result_free(&r);
    config_free(c);
    free(small);

    /* archive_files and total_size. */
    c = conf(NULL, "archive_files_limit = 3");
    assert_int_equal(scan_message(engine, c, msg, len, 1, &r), 0);
    assert_string_equal(find_kind(&r, SCAN_LIMIT)->name, "archive_files");
    scan_result_free(&r);
    config_free(c);
    c = conf(NULL, "total_size_limit = 300k");
    assert_int_equal(scan_message(engine, c, msg, len, 1, &r), 0);
    assert_string_equal(find_kind(&r, SCAN_LIMIT)->name, "total_size");
    scan_result_free(&r);
    config_free(c);

    /* Depth: five levels of zip against a limit of 3. */
    free(msg);
    msg = slurp("eicar-zip5.eml", &len);
    c = conf(NULL, "archive_depth_limit = 3");
    assert_int_equal(scan_message(engine, c, msg, len, 1, &r), 0);
    /* The virus is still found by libclamav; the depth limit is listed too. */
    assert_int_equal(r.kind, SCAN_VIRUS);
    assert_string_equal(find_kind(&r, SCAN_LIMIT)->name, "archive_depth");
    scan_result_free(&r);
    config_free(c);
    free(msg);
}

/* MIME limits: beyond max_mime_parts the raw message still goes to libclamav. */
static void
test_mime_limits(void **state)
{
    (void)state;
    struct scan_result r;
    char msg[4096];
    int n = 0;

    n += snprintf(msg + n, sizeof(msg) - (size_t)n,
                  "From: a@example.com\r\nSubject: many\r\nMIME-Version: 1.0\r\n"
                  "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n");
    for (int i = 0; i < 5; i++)
        n += snprintf(msg + n, sizeof(msg) - (size_t)n,
                      "--b\r\nContent-Type: text/plain\r\n\r\npart %d %s\r\n", i,
                      i == 4 ? "X5O!P%@AP[4\\PZX54(P^)7CC)7}$"
                               "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
                             : "");
    n += snprintf(msg + n, sizeof(msg) - (size_t)n, "--b--\r\n");

    struct sr_config *c = conf(NULL, "max_mime_parts = 2");
    assert_int_equal(scan_message(engine, c, msg, (size_t)n, 1, &r), 0);
    assert_true(r.mime_limits & MIME_LIMIT_PARTS);
    assert_int_equal(r.kind, SCAN_VIRUS);
    assert_string_equal(find_kind(&r, SCAN_LIMIT)->name, "mime_parts");
    assert_memory_equal(find_kind(&r, SCAN_VIRUS)->location, "message", 7);
    scan_result_free(&r);
    config_free(c);

    /* Garbage is a message too: clean, never a crash. */
    c = conf(NULL, NULL);
    assert_int_equal(scan_message(engine, c, "\x01\x02garbage", 9, 1, &r), 0);
    assert_int_equal(r.kind, SCAN_CLEAN);
    scan_result_free(&r);
    assert_int_equal(scan_message(engine, c, "", 0, 0, &r), 0);
    assert_int_equal(r.nheaders, 2);
    scan_result_free(&r);
    config_free(c);
}

static void
test_fd_and_pipe(void **state)
{
    (void)state;
    struct sr_config *c = conf(NULL, NULL);
    struct scan_result r;
    char path[512];
    int fd, pfd[2];
    size_t len;
    char *msg = slurp("eicar-targz.eml", &len);

    snprintf(path, sizeof(path), "%s/eicar-targz.eml", CORPUS);
    fd = open(path, O_RDONLY);
    assert_int_equal(scan_message_fd(engine, c, fd, 1, &r), 0);
    close(fd);
    assert_int_equal(r.kind, SCAN_VIRUS);
    assert_non_null(strstr(r.location, "files.tar.gz/files/eicar.com"));
    scan_result_free(&r);

    assert_int_equal(pipe(pfd), 0);
    if (fork() == 0) {
        ssize_t w = write(pfd[1], msg, len);
        _exit(w == (ssize_t)len ? 0 : 1);
    }
    close(pfd[1]);
    assert_int_equal(scan_message_fd(engine, c, pfd[0], 1, &r), 0);
    close(pfd[0]);
    wait(NULL);
    assert_int_equal(r.kind, SCAN_VIRUS);
    scan_result_free(&r);
    free(msg);
    config_free(c);
}

/* Many threads, one engine. */
struct worker {
    const struct sr_config *c;
    const char *msg;
    size_t len;
    int bad;
};

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 20; i++) {
        struct scan_result r;
        if (scan_message(engine, w->c, w->msg, w->len, 1, &r) != 0 || r.kind != SCAN_VIRUS ||
            r.location == NULL || strstr(r.location, "docs/eicar.com") == NULL)
            w->bad++;
        scan_result_free(&r);
    }
    return NULL;
}

static void
test_threads(void **state)
{
    (void)state;
    struct sr_config *c = conf(NULL, NULL);
    size_t len;
    char *msg = slurp("eicar-zip5.eml", &len);
    struct worker w[4];
    pthread_t t[4];

    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){c, msg, len, 0};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].bad, 0);
    }
    free(msg);
    config_free(c);
}

static int
setup(void **state)
{
    (void)state;
    char cmd[1024], err[512];
    struct sr_config_virus vc = {0};

    log_init("test_scan", 1);
    snprintf(cmd, sizeof(cmd), "%s %s/t/corpus/virus/make-corpus.py %s", SR_PYTHON3, SR_SOURCE_DIR,
             CORPUS);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot build the corpus: %s\n", cmd);
        return -1;
    }
    if (mkdtemp(confdir) == NULL)
        return -1;
    mime_global_init();
    vc.database_directory = SIGS;
    vc.max_scan_size = 100 << 20;
    vc.max_file_size = 25 << 20;
    vc.max_recursion = 17;
    vc.max_files = 10000;
    vc.max_scan_time = 120;
    engine = engine_load(&vc, err, sizeof(err));
    if (engine == NULL) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

/*
 * A third checker, as a test double: it adds the findings it is given
 * (and a header field) through the checker API. The composer is not
 * touched: its findings compete by the precedence of their actions.
 */
struct double_checker {
    struct scan_finding_in f[4];
    size_t n;
    int calls;
};

static int
double_check(void *arg, const struct scan_input *in, struct scan_result *res)
{
    struct double_checker *d = arg;
    d->calls++;
    assert_non_null(in->msg);
    assert_true(in->len > 0);
    for (size_t i = 0; i < d->n; i++)
        if (scan_add_finding(res, &d->f[i]) < 0)
            return -1;
    return scan_add_header(res, "X-Test-Checker", "seen");
}

static struct scan_finding_in
policy_finding(const char *rule, enum sr_action a)
{
    struct scan_finding_in f = {.checker = "policy", .rule = rule, .kind = SCAN_POLICY,
                                .action = a, .name = rule, .location = "Subject"};
    return f;
}

static struct scan_finding_in
scored_finding(const char *rule, double score)
{
    struct scan_finding_in f = {.checker = "spam", .rule = rule, .kind = SCAN_SPAM,
                                .action = SR_ACTION_DELIVER, .has_score = 1, .score = score,
                                .name = rule, .location = "message"};
    return f;
}

static void
scan_with(const char *file, struct double_checker *d, const struct verdict_threshold *t, size_t nt,
          struct scan_result *r)
{
    struct sr_config *c = conf(NULL, NULL);
    struct scan_checker ck = {"double", double_check, d};
    struct scan_opts o = {&ck, 1, t, nt};
    size_t len;
    char *msg = slurp(file, &len);

    assert_int_equal(scan_message_opts(engine, c, msg, len, 1, &o, r), 0);
    assert_int_equal(d->calls, 1);
    free(msg);
    config_free(c);
}

static void
test_third_checker_decides(void **state)
{
    (void)state;
    struct double_checker d = {.n = 1};
    struct scan_result r;

    /* Alone on a clean message: its reject decides, its rule is named. */
    d.f[0] = policy_finding("no-invoices", SR_ACTION_REJECT);
    scan_with("clean.eml", &d, NULL, 0, &r);
    assert_int_equal(r.action, SR_ACTION_REJECT);
    assert_int_equal(r.kind, SCAN_POLICY);
    assert_string_equal(r.result, "policy");
    assert_string_equal(r.rule, "no-invoices");
    assert_string_equal(r.checker, "policy");
    assert_int_equal(r.nfindings, 1);
    assert_int_equal(r.deciding, 0);
    /* Header list: the virus checker's two first (still Clean), then the double's. */
    assert_int_equal(r.nheaders, 3);
    assert_string_equal(r.headers[1], "X-Virus-Status: Clean");
    assert_string_equal(r.headers[2], "X-Test-Checker: seen");
    scan_result_free(&r);

    /* Against a virus (discard): its reject is stronger and decides... */
    d.calls = 0;
    scan_with("eicar-zip.eml", &d, NULL, 0, &r);
    assert_int_equal(r.action, SR_ACTION_REJECT);
    assert_string_equal(r.rule, "no-invoices");
    assert_string_equal(r.virus, "Win.Test.EICAR.UNOFFICIAL");
    assert_string_equal(r.headers[1], "X-Virus-Status: Infected (Win.Test.EICAR.UNOFFICIAL)");
    scan_result_free(&r);

    /* ...its tag loses to the virus rule's discard. */
    d.calls = 0;
    d.f[0] = policy_finding("no-invoices", SR_ACTION_TAG);
    scan_with("eicar-zip.eml", &d, NULL, 0, &r);
    assert_int_equal(r.action, SR_ACTION_DISCARD);
    assert_int_equal(r.kind, SCAN_VIRUS);
    assert_string_equal(r.rule, "virus");
    assert_string_equal(r.checker, "virus");
    assert_true(r.nfindings >= 2);
    assert_string_equal(r.findings[r.nfindings - 1].rule, "no-invoices");
    assert_int_equal(r.findings[r.nfindings - 1].action, SR_ACTION_TAG);
    scan_result_free(&r);

    /* Its quarantine loses to discard too (reject > discard > quarantine). */
    d.calls = 0;
    d.f[0] = policy_finding("no-invoices", SR_ACTION_QUARANTINE);
    scan_with("eicar-zip.eml", &d, NULL, 0, &r);
    assert_int_equal(r.action, SR_ACTION_DISCARD);
    assert_string_equal(r.rule, "virus");
    scan_result_free(&r);
}

static void
test_third_checker_scores(void **state)
{
    (void)state;
    static const struct verdict_threshold t[] = {{10, SR_ACTION_QUARANTINE}, {5, SR_ACTION_TAG}};
    struct double_checker d = {.n = 2};
    struct scan_result r;

    /* 3 + 4 = 7: over 5 (tag), under 10; the larger score names the verdict. */
    d.f[0] = scored_finding("BAYES_50", 3);
    d.f[1] = scored_finding("URIBL_RED", 4);
    scan_with("clean.eml", &d, t, 2, &r);
    assert_int_equal(r.has_score, 1);
    assert_true(r.score > 6.99 && r.score < 7.01);
    assert_int_equal(r.action, SR_ACTION_TAG);
    assert_string_equal(r.rule, "URIBL_RED");
    assert_string_equal(r.result, "spam");
    scan_result_free(&r);

    /* 3 + 8 = 11: quarantine. */
    d.calls = 0;
    d.f[1] = scored_finding("URIBL_BLACK", 8);
    scan_with("clean.eml", &d, t, 2, &r);
    assert_int_equal(r.action, SR_ACTION_QUARANTINE);
    assert_string_equal(r.rule, "URIBL_BLACK");
    scan_result_free(&r);

    /* 1 + 2 = 3: no threshold reached, nothing decided by the scores. */
    d.calls = 0;
    d.f[0] = scored_finding("BAYES_20", 1);
    d.f[1] = scored_finding("HTML_MESSAGE", 2);
    scan_with("clean.eml", &d, t, 2, &r);
    assert_int_equal(r.action, SR_ACTION_DELIVER);
    assert_int_equal(r.kind, SCAN_CLEAN);
    assert_null(r.rule);
    assert_true(r.score > 2.99 && r.score < 3.01);
    scan_result_free(&r);

    /* 11 against a virus: quarantine loses to the virus rule's discard. */
    d.calls = 0;
    d.f[0] = scored_finding("BAYES_99", 11);
    scan_with("eicar-zip.eml", &d, t, 2, &r);
    assert_int_equal(r.action, SR_ACTION_DISCARD);
    assert_string_equal(r.rule, "virus");
    scan_result_free(&r);
}

/* The composer alone: every pair of actions, the stronger wins whatever the order. */
static void
test_compose_precedence(void **state)
{
    (void)state;
    static const enum sr_action order[] = {SR_ACTION_DELIVER, SR_ACTION_TAG, SR_ACTION_STRIP,
                                           SR_ACTION_DEFER, SR_ACTION_QUARANTINE,
                                           SR_ACTION_DISCARD, SR_ACTION_REJECT};
    const size_t n = sizeof(order) / sizeof(order[0]);
    struct verdict v;

    verdict_compose(NULL, 0, NULL, &v);
    assert_int_equal(v.action, SR_ACTION_DELIVER);
    assert_int_equal(v.deciding, -1);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            struct scan_finding f[2];
            memset(f, 0, sizeof(f));
            f[0].kind = SCAN_POLICY;
            f[0].action = order[i];
            f[0].part = 1;
            f[1].kind = SCAN_LIMIT;
            f[1].action = order[j];
            f[1].part = 1;
            verdict_compose(f, 2, NULL, &v);
            assert_int_equal(v.action, order[i > j ? i : j]);
            assert_int_equal(v.deciding, j > i ? 1 : 0);
        }
    }
    /* strip of the message as a whole is tag. */
    struct scan_finding g = {.kind = SCAN_LIMIT, .action = SR_ACTION_STRIP, .part = 0};
    verdict_compose(&g, 1, NULL, &v);
    assert_int_equal(v.action, SR_ACTION_TAG);
}

static int
teardown(void **state)
{
    (void)state;
    char cmd[256];
    engine_unref(engine);
    mime_global_shutdown();
    snprintf(cmd, sizeof(cmd), "rm -rf %s", confdir);
    return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus),        cmocka_unit_test(test_clean_headers),
        cmocka_unit_test(test_virus_actions), cmocka_unit_test(test_zip_bomb_timing),
        cmocka_unit_test(test_cli),           cmocka_unit_test(test_size_rules),
        cmocka_unit_test(test_mime_limits),   cmocka_unit_test(test_fd_and_pipe),
        cmocka_unit_test(test_threads),       cmocka_unit_test(test_lying_zip),
        cmocka_unit_test(test_zip_declared_sizes), cmocka_unit_test(test_clean_cache),
        cmocka_unit_test(test_third_checker_decides), cmocka_unit_test(test_third_checker_scores),
        cmocka_unit_test(test_compose_precedence),
    };
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
