/*
 * test_engine.c - engine.c with the real libclamav and the test signature
 * set (t/sigs): load, errors, scan and callbacks, reload swap while scans
 * run, failed reload keeps the old engine, directory change detection.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "action.h"
#include "config.h"
#include "engine.h"
#include "log.h"

#define SIGS SR_SOURCE_DIR "/t/sigs"

/* libclamav 1.4 leaks a hash context for each container it loads (t/lsan.supp). */
const char *__lsan_default_suppressions(void);
const char *
__lsan_default_suppressions(void)
{
    return "leak:libcrypto.so\n";
}
#define SHIPPED SR_SOURCE_DIR "/share/signatures"

/* The EICAR test string, in two pieces so that this source is not flagged. */
static const char eicar_str[] = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$"
                                "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

static const char *
eicar(void)
{
    return eicar_str;
}

static struct sr_config_virus
vc_for(const char *dir)
{
    struct sr_config_virus vc = {0};
    vc.database_directory = (char *)(uintptr_t)dir;
    vc.action = SR_ACTION_DISCARD;
    vc.check_interval = 60;
    vc.max_scan_size = 100 << 20;
    vc.max_file_size = 25 << 20;
    vc.max_recursion = 17;
    vc.max_files = 10000;
    vc.max_scan_time = 120;
    return vc;
}

/* A private copy of t/sigs in a temporary folder. */
static char *
sigs_copy(void)
{
    char *dir = strdup("/tmp/sr_test_engine.XXXXXX");
    char cmd[512];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "cp %s/test.ndb %s/test.hdb %s/", SIGS, SIGS, dir);
    assert_int_equal(system(cmd), 0);
    return dir;
}

static void
rm_rf(char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(dir);
}

static void
write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void
test_load(void **state)
{
    (void)state;
    char err[1024] = "";
    struct sr_config_virus vc = vc_for(SIGS);
    struct sr_engine *e = engine_load(&vc, err, sizeof(err));

    assert_non_null(e);
    assert_int_equal(engine_signatures(e), 2);
    assert_true(engine_generation(e) > 0);
    assert_true(strlen(engine_version()) > 0);
    engine_unref(e);

    /* The set the project ships for offline quick starts loads too. */
    vc = vc_for(SHIPPED);
    e = engine_load(&vc, err, sizeof(err));
    assert_non_null(e);
    assert_true(engine_signatures(e) >= 1);
    engine_unref(e);
}

static void
test_load_errors(void **state)
{
    (void)state;
    char err[1024] = "";
    struct sr_config_virus vc = vc_for("/nonexistent/clamav-db");

    assert_null(engine_load(&vc, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/clamav-db"));
    assert_non_null(strstr(err, "No such file"));

    char *dir = strdup("/tmp/sr_test_engine.XXXXXX");
    assert_non_null(mkdtemp(dir));
    vc = vc_for(dir);
    assert_null(engine_load(&vc, err, sizeof(err)));
    assert_non_null(strstr(err, dir));
    assert_non_null(strstr(err, "no signature"));

    write_file(dir, "bad.ndb", "this is not a signature\n");
    assert_null(engine_load(&vc, err, sizeof(err)));
    assert_non_null(strstr(err, dir));
    assert_non_null(strstr(err, "cannot load"));
    rm_rf(dir);

    vc = vc_for("/etc/passwd");
    assert_null(engine_load(&vc, err, sizeof(err)));
    assert_non_null(strstr(err, "not a directory"));
}

struct cbrec {
    char names[16][256];
    int n;
    char virus[128];
    int nvirus;
};

static int
rec_inspect(void *arg, unsigned level, const char *const *names, const char *type, size_t size,
            int normalized)
{
    struct cbrec *r = arg;
    (void)type;
    (void)size;
    (void)normalized;
    if (level > 0 && names[level - 1] && r->n < 16)
        snprintf(r->names[r->n++], 256, "%u:%s", level, names[level - 1]);
    return 0;
}

static void
rec_virus(void *arg, const char *virname)
{
    struct cbrec *r = arg;
    snprintf(r->virus, sizeof(r->virus), "%s", virname);
    r->nvirus++;
}

struct mbuf {
    char *p;
    size_t len;
};

static la_ssize_t
mem_write(struct archive *a, void *cd, const void *buf, size_t n)
{
    struct mbuf *m = cd;
    (void)a;
    m->p = realloc(m->p, m->len + n);
    assert_non_null(m->p);
    memcpy(m->p + m->len, buf, n);
    m->len += n;
    return (la_ssize_t)n;
}

static void
test_scan(void **state)
{
    (void)state;
    char err[256];
    struct sr_config_virus vc = vc_for(SIGS);
    struct sr_engine *e = engine_load(&vc, err, sizeof(err));
    const char *vn = NULL;
    struct cbrec r = {0};
    struct engine_scan_cb cb = {rec_inspect, rec_virus, NULL, &r};

    assert_non_null(e);
    assert_int_equal(
        engine_scan_mem(e, eicar(), strlen(eicar()), "eicar.com", &cb, &vn, err, sizeof(err)),
        ENGINE_VIRUS);
    assert_string_equal(vn, "Win.Test.EICAR.UNOFFICIAL");
    assert_int_equal(r.nvirus, 1);
    assert_int_equal(engine_scan_mem(e, "hello", 5, NULL, NULL, &vn, err, sizeof(err)),
                     ENGINE_CLEAN);
    assert_null(vn);
    assert_int_equal(engine_scan_mem(e, "", 0, NULL, NULL, &vn, err, sizeof(err)), ENGINE_CLEAN);

    /* In a zip: the member is inspected at level 1, the match reported. */
    struct mbuf m = {NULL, 0};
    struct archive *a = archive_write_new();
    archive_write_set_format_zip(a);
    archive_write_open(a, &m, NULL, mem_write, NULL);
    struct archive_entry *ent = archive_entry_new();
    archive_entry_set_pathname(ent, "docs/eicar.com");
    archive_entry_set_size(ent, (la_int64_t)strlen(eicar()));
    archive_entry_set_filetype(ent, AE_IFREG);
    archive_write_header(a, ent);
    archive_write_data(a, eicar(), strlen(eicar()));
    archive_entry_free(ent);
    archive_write_close(a);
    archive_write_free(a);
    memset(&r, 0, sizeof(r));
    assert_int_equal(engine_scan_mem(e, m.p, m.len, "x.zip", &cb, &vn, err, sizeof(err)),
                     ENGINE_VIRUS);
    assert_int_equal(r.nvirus, 1);
    assert_true(r.n >= 1);
    assert_non_null(strstr(r.names[r.n - 1], "1:"));
    assert_non_null(strstr(r.names[r.n - 1], "eicar.com"));
    free(m.p);
    engine_unref(e);
}

/* Reload while scans run. */
struct scanner {
    struct engine_holder *h;
    atomic_int *stop;
    long scans, bad;
    uint64_t gens_seen[2];
};

static void *
scanner_main(void *arg)
{
    struct scanner *s = arg;
    char err[256];
    const char *vn;

    while (!atomic_load(s->stop)) {
        struct sr_engine *e = engine_holder_get(s->h);
        enum engine_status st =
            engine_scan_mem(e, eicar(), strlen(eicar()), NULL, NULL, &vn, err, sizeof(err));
        if (st != ENGINE_VIRUS) {
            if (s->bad++ == 0)
                fprintf(stderr, "scan during reload: status %d: %s gen %llu scans %ld\n", (int)st,
                        st == ENGINE_CLEAN ? "clean" : err,
                        (unsigned long long)engine_generation(e), s->scans);
        }
        if (s->gens_seen[0] == 0)
            s->gens_seen[0] = engine_generation(e);
        s->gens_seen[1] = engine_generation(e);
        engine_unref(e);
        s->scans++;
    }
    return NULL;
}

static atomic_int reload_oks, reload_fails;

static void
on_reload(void *arg, int ok, const char *msg)
{
    (void)arg;
    assert_non_null(msg);
    if (ok)
        atomic_fetch_add(&reload_oks, 1);
    else
        atomic_fetch_add(&reload_fails, 1);
}

static void
test_reload_under_scans(void **state)
{
    (void)state;
    char err[1024];
    struct sr_config_virus vc = vc_for(SIGS);
    struct engine_holder *h = engine_holder_new(&vc, err, sizeof(err));
    atomic_int stop = 0;
    struct scanner s[3];
    pthread_t t[3];

    assert_non_null(h);
    engine_holder_on_reload(h, on_reload, NULL);
    atomic_store(&reload_oks, 0);
    struct sr_engine *old = engine_holder_get(h);
    uint64_t g0 = engine_generation(old);

    for (int i = 0; i < 3; i++) {
        s[i] = (struct scanner){h, &stop, 0, 0, {0, 0}};
        assert_int_equal(pthread_create(&t[i], NULL, scanner_main, &s[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(engine_reload_async(h), 0);
        assert_int_equal(engine_reload_wait(h), 1);
    }
    /* Coalescing: several requests while one runs. */
    assert_int_equal(engine_reload_async(h), 0);
    assert_int_equal(engine_reload_async(h), 0);
    assert_int_equal(engine_reload_async(h), 0);
    assert_int_equal(engine_reload_wait(h), 1);
    usleep(50000);
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(s[i].bad, 0);
        assert_true(s[i].scans > 0);
    }
    assert_true(atomic_load(&reload_oks) >= 5);

    /* The old engine still works while referenced; the current one is new. */
    const char *vn;
    assert_int_equal(
        engine_scan_mem(old, eicar(), strlen(eicar()), NULL, NULL, &vn, err, sizeof(err)),
        ENGINE_VIRUS);
    engine_unref(old);
    struct sr_engine *cur = engine_holder_get(h);
    assert_true(engine_generation(cur) > g0);
    engine_unref(cur);
    engine_holder_free(h);
}

static void
test_failed_reload_keeps_old(void **state)
{
    (void)state;
    char err[1024];
    char *dir = sigs_copy();
    struct sr_config_virus vc = vc_for(dir);
    struct engine_holder *h = engine_holder_new(&vc, err, sizeof(err));

    assert_non_null(h);
    engine_holder_on_reload(h, on_reload, NULL);
    atomic_store(&reload_fails, 0);
    struct sr_engine *e = engine_holder_get(h);
    uint64_t g = engine_generation(e);
    engine_unref(e);

    write_file(dir, "broken.ndb", "garbage line without fields\n");
    assert_int_equal(engine_reload_async(h), 0);
    assert_int_equal(engine_reload_wait(h), 0);
    assert_int_equal(atomic_load(&reload_fails), 1);
    e = engine_holder_get(h);
    assert_int_equal(engine_generation(e), g);
    assert_int_equal(engine_signatures(e), 2);
    engine_unref(e);

    /* A removed directory: the old engine stays as well. */
    struct sr_config_virus gone = vc_for("/nonexistent/db");
    engine_holder_set_config(h, &gone);
    assert_int_equal(engine_reload_async(h), 0);
    assert_int_equal(engine_reload_wait(h), 0);
    e = engine_holder_get(h);
    assert_int_equal(engine_generation(e), g);
    engine_unref(e);
    engine_holder_free(h);
    rm_rf(dir);
}

static void
test_check_dir(void **state)
{
    (void)state;
    char err[1024];
    char *dir = sigs_copy();
    struct sr_config_virus vc = vc_for(dir);
    struct engine_holder *h = engine_holder_new(&vc, err, sizeof(err));
    struct sr_engine *e;

    assert_non_null(h);
    assert_int_equal(engine_check_dir(h), 0);
    assert_int_equal(engine_check_dir(h), 0);

    int fd = engine_watch_fd(h);
    assert_true(fd >= 0);
    assert_int_equal(engine_watch_read(h), 0);

    /* A new database file: inotify says so, the check reloads. */
    write_file(dir, "more.ndb", "Win.Test.More:0:*:73637265616d696e67\n");
    struct pollfd p = {fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 2000), 1);
    assert_int_equal(engine_watch_read(h), 1);
    assert_int_equal(engine_check_dir(h), 1);
    assert_int_equal(engine_reload_wait(h), 1);
    e = engine_holder_get(h);
    assert_int_equal(engine_signatures(e), 3);
    engine_unref(e);
    assert_int_equal(engine_check_dir(h), 0);

    /* Hidden (temporary) files are not databases. */
    write_file(dir, ".tmp-download", "x");
    assert_int_equal(engine_check_dir(h), 0);

    /* A changed file (size) is noticed without inotify. */
    write_file(dir, "more.ndb",
               "Win.Test.More:0:*:73637265616d696e67\nWin.Test.More2:0:*:6d6f7265\n");
    assert_int_equal(engine_check_dir(h), 1);
    assert_int_equal(engine_reload_wait(h), 1);
    e = engine_holder_get(h);
    assert_int_equal(engine_signatures(e), 4);
    engine_unref(e);
    engine_holder_free(h);
    rm_rf(dir);
}

/* The container header parser, on libclamav's format. */
static void
test_cvd_header(void **state)
{
    (void)state;
    char head[ENGINE_CVD_HEADER];
    struct engine_dbinfo di;
    const char *h = "ClamAV-VDB:14 Nov 2023 22-13 +0000:27123:2045678:90:"
                    "0123456789abcdef0123456789abcdef:SIG:builder:1700000000";

    memset(head, ' ', sizeof(head));
    memcpy(head, h, strlen(h));
    memset(&di, 0, sizeof(di));
    assert_int_equal(engine_cvd_header(head, sizeof(head), &di), 0);
    assert_string_equal(di.version, "27123");
    assert_int_equal(di.signatures, 2045678);
    assert_int_equal(di.build_time, 1700000000);
    /* Short, or not a container. */
    assert_int_equal(engine_cvd_header(head, 100, &di), -1);
    memcpy(head, "ClamAV-VDX", 10);
    assert_int_equal(engine_cvd_header(head, sizeof(head), &di), -1);
}

/* Database files of a loaded engine: a .cud container (header) and plain sets (mtime). */
static void
test_dbinfo(void **state)
{
    (void)state;
    char err[1024] = "", cmd[1024], path[512];
    char *dir = sigs_copy();
    struct sr_config_virus vc = vc_for(dir);
    const struct engine_dbinfo *db;
    struct stat st;

    snprintf(cmd, sizeof(cmd),
             "%s %s/t/integ/make_cud.py %s/extra.cud 31 1700000000 "
             "'extra.ndb=Opsview.Test.One:0:*:4f505356494557544553544f4e45' "
             "'extra.ndb=Opsview.Test.Two:0:*:4f505356494557544553545457'",
             SR_PYTHON3, SR_SOURCE_DIR, dir);
    assert_int_equal(system(cmd), 0);
    write_file(dir, "README.txt", "not a database\n");
    struct sr_engine *e = engine_load(&vc, err, sizeof(err));
    assert_non_null(e);
    assert_int_equal(engine_signatures(e), 4);
    assert_int_equal(engine_dbinfo(e, &db), 3);
    assert_string_equal(db[0].file, "extra.cud");
    assert_string_equal(db[0].version, "31");
    assert_int_equal(db[0].signatures, 2);
    assert_int_equal(db[0].build_time, 1700000000);
    assert_string_equal(db[1].file, "test.hdb");
    assert_string_equal(db[1].version, "");
    assert_int_equal(db[1].signatures, 1);
    snprintf(path, sizeof(path), "%s/test.hdb", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(db[1].build_time, st.st_mtim.tv_sec);
    assert_string_equal(db[2].file, "test.ndb");
    assert_true(engine_loaded_at(e) >= st.st_mtim.tv_sec);
    engine_unref(e);
    rm_rf(dir);
}

int
main(void)
{
    char err[256];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_cvd_header),
        cmocka_unit_test(test_dbinfo),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_scan),
        cmocka_unit_test(test_reload_under_scans),
        cmocka_unit_test(test_failed_reload_keeps_old),
        cmocka_unit_test(test_check_dir),
    };
    log_init("test_engine", 1);
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    if (engine_global_init(err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
