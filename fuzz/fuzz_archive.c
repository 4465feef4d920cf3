/*
 * fuzz_archive.c - the archive walker (scan/sr_archive) under one budget:
 * the input is an attachment's decoded bytes, walked as the scanner walks
 * it (nested archives included) with small limits (depth 4, 200 files,
 * 1 MiB a file, 4 MiB in all, ratio 100) so that every limit is reached.
 *
 * Checks: the result is one of ARCH_OK / ARCH_STOPPED / ARCH_UNREADABLE;
 * a spent budget stops every later walk at once; no nested-archive buffer
 * is still counted as held after the walk; counters never run backwards;
 * every report names a location and an event name.
 */
#include <string.h>

#include "fuzz.h"
#include "sr_archive.h"

static void
report(void *arg, enum arch_event ev, const char *location, int64_t value, int64_t limit)
{
    int *n = arg;
    (void)value;
    (void)limit;
    FUZZ_CHECK(location != NULL);
    FUZZ_CHECK(arch_event_name(ev) != NULL);
    (*n)++;
}

static void
member(void *arg, int depth, const char *name, int64_t declared)
{
    (void)arg;
    FUZZ_CHECK(depth >= 1 && depth <= ARCH_MAX_DEPTH);
    FUZZ_CHECK(declared >= -1);
    if (name)
        FUZZ_CHECK(strlen(name) < 1u << 20);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct arch_limits lim = {
        .depth = 4, .files = 200, .file_size = 1 << 20, .total = 4 << 20, .ratio = 100,
    };
    struct arch_budget b;
    int nrep = 0;

    (void)arch_sniff(data, size);
    arch_budget_init(&b, &lim, report, &nrep);
    b.member = member;
    int rc = arch_walk(&b, data, size, "msg/a.bin");
    FUZZ_CHECK(rc == ARCH_OK || rc == ARCH_STOPPED || rc == ARCH_UNREADABLE);
    FUZZ_CHECK(b.held == 0);
    FUZZ_CHECK(b.files >= 0 && b.total >= 0 && b.max_depth >= 0 && b.peak_buffer >= 0);
    FUZZ_CHECK(b.max_depth <= ARCH_MAX_DEPTH);
    if (rc == ARCH_STOPPED)
        FUZZ_CHECK(b.spent);

    /* Walked a second time under the same budget: counters only grow. */
    int64_t files = b.files, total = b.total;
    int spent = b.spent;
    rc = arch_walk(&b, data, size, "msg/b.bin");
    FUZZ_CHECK(b.files >= files && b.total >= total && b.held == 0);
    if (spent)
        FUZZ_CHECK(rc == ARCH_STOPPED);

    /* With trust on, as the scanner sets it for a zip read from memory. */
    arch_budget_init(&b, &lim, report, &nrep);
    b.member = member;
    b.trust_file = 64 << 10;
    b.trust_bytes = 1 << 20;
    b.trust_files = 50;
    rc = arch_walk(&b, data, size, "msg/c.zip");
    FUZZ_CHECK(rc == ARCH_OK || rc == ARCH_STOPPED || rc == ARCH_UNREADABLE);
    FUZZ_CHECK(b.held == 0 && b.trusted >= 0);
    return 0;
}
