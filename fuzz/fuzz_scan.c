/*
 * fuzz_scan.c - the whole scan of one message (scan/scan: MIME walk,
 * size rules, archive budget, libclamav with the test signature set of
 * t/sigs, plus fuzz/sigs/fuzz.ndb: a harmless marker string, so that the
 * seeds reach the virus paths without holding anything virus-like) as the
 * scan threads run it, with small limits so that each rule is reached.
 *
 * Checks on every verdict: the kind is the highest finding's kind and
 * a message with any finding is not clean; a MIME limit hit is never a
 * clean verdict (a message we could not fully walk is never "clean");
 * the action is known; every finding, part and strip has its strings;
 * strip ranges lie within the message; decoded Subject and From are
 * valid UTF-8.
 */
#include <glib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "action.h"
#include "config.h"
#include "engine.h"
#include "fuzz.h"
#include "mime.h"
#include "scan.h"

#ifndef SR_SOURCE_DIR
#error "SR_SOURCE_DIR: the source tree (for t/sigs)"
#endif

static struct sr_engine *engine;
static struct sr_config *cfg;

/* Copy a signature file into the scratch database folder. */
static void
copy_sig(const char *from, const char *dir, const char *name)
{
    char path[700], buf[4096];
    size_t n;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *in = fopen(from, "rb"), *out = fopen(path, "wb");
    FUZZ_CHECK(in != NULL && out != NULL);
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        FUZZ_CHECK(fwrite(buf, 1, n, out) == n);
    fclose(in);
    FUZZ_CHECK(fclose(out) == 0);
}

static void
cleanup(void)
{
    engine_unref(engine);
    config_free(cfg);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[600], err[512];
    (void)argc;
    (void)argv;

    mime_global_init();
    FUZZ_CHECK(engine_global_init(err, sizeof(err)) == 0);
    char db[600];
    snprintf(db, sizeof(db), "%s/sigs", fuzz_tmpdir());
    FUZZ_CHECK(mkdir(db, 0700) == 0);
    copy_sig(SR_SOURCE_DIR "/t/sigs/test.ndb", db, "test.ndb");
    copy_sig(SR_SOURCE_DIR "/t/sigs/test.hdb", db, "test.hdb");
    copy_sig(SR_SOURCE_DIR "/fuzz/sigs/fuzz.ndb", db, "fuzz.ndb");
    snprintf(path, sizeof(path), "%s/scanrelay.conf", fuzz_tmpdir());
    FILE *f = fopen(path, "w");
    FUZZ_CHECK(f != NULL);
    fprintf(f, "virus {\n  database_directory = \"%s\"\n  max_scan_time = 20s\n"
               "  max_file_size = 8M\n  max_scan_size = 16M\n  temporary_directory = \"%s\"\n}\n"
               "scan {\n  timeout = 30s\n  max_mime_depth = 8\n  max_mime_parts = 64\n"
               "  file_size_limit = 1M\n  total_size_limit = 4M\n  archive_files_limit = 200\n"
               "  archive_depth_limit = 4\n  compression_ratio_limit = 100\n  message_size_limit = 1M\n}\n",
            db, fuzz_tmpdir());
    fclose(f);
    sr_action_register(); /* the action words, as scanrelayd and scanrelay do */
    cfg = config_load(path, 1, err, sizeof(err));
    if (cfg == NULL) {
        fprintf(stderr, "fuzz_scan: %s\n", err);
        abort();
    }
    engine = engine_load(&cfg->virus, err, sizeof(err));
    if (engine == NULL) {
        fprintf(stderr, "fuzz_scan: %s\n", err);
        abort();
    }
    atexit(cleanup);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct scan_result r;

    FUZZ_CHECK(scan_message(engine, cfg, (const char *)data, size, 1, &r) == 0);
    FUZZ_CHECK(r.kind >= SCAN_CLEAN && r.kind <= SCAN_VIRUS);
    FUZZ_CHECK(r.result != NULL && strcmp(r.result, scan_result_word(r.kind)) == 0);
    FUZZ_CHECK(strcmp(sr_action_name(r.action), "?") != 0);
    enum scan_kind worst = SCAN_CLEAN;
    for (size_t i = 0; i < r.nfindings; i++) {
        const struct scan_finding *fi = &r.findings[i];
        FUZZ_CHECK(fi->name != NULL && fi->location != NULL);
        FUZZ_CHECK(fi->kind > SCAN_CLEAN && fi->kind <= SCAN_VIRUS);
        if (fi->kind > worst)
            worst = fi->kind;
    }
    FUZZ_CHECK(r.nfindings <= SCAN_MAX_FINDINGS);
    FUZZ_CHECK(r.kind >= worst);
    if (r.nfindings > 0)
        FUZZ_CHECK(r.kind != SCAN_CLEAN);
    if (r.mime_limits)
        FUZZ_CHECK(r.kind != SCAN_CLEAN);
    if (r.kind == SCAN_CLEAN)
        FUZZ_CHECK(r.action == SR_ACTION_DELIVER && r.virus == NULL);
    if (r.kind == SCAN_VIRUS)
        FUZZ_CHECK(r.virus != NULL);
    for (size_t i = 0; i < r.nparts; i++)
        FUZZ_CHECK(r.parts[i].path != NULL && r.parts[i].content_type != NULL);
    for (size_t i = 0; i < r.nstrips; i++) {
        FUZZ_CHECK(r.strips[i].raw_begin >= 0 && r.strips[i].raw_begin <= r.strips[i].raw_end);
        FUZZ_CHECK((size_t)r.strips[i].raw_end <= size);
        FUZZ_CHECK(r.strips[i].reason != NULL);
    }
    for (size_t i = 0; i < r.nheaders; i++)
        FUZZ_CHECK(r.headers[i] != NULL && strpbrk(r.headers[i], "\r\n") == NULL);
    if (r.subject)
        FUZZ_CHECK(g_utf8_validate(r.subject, -1, NULL));
    if (r.hdr_from)
        FUZZ_CHECK(g_utf8_validate(r.hdr_from, -1, NULL));
    scan_result_free(&r);
    return 0;
}
