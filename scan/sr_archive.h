/* sr_archive.h - archive expansion under one budget per message (see sr_archive.c). */
#ifndef SR_SR_ARCHIVE_H
#define SR_SR_ARCHIVE_H

/* (Not "archive.h": that name is libarchive's public header.) */

#include <stddef.h>
#include <stdint.h>

/* The limits of scan { }; 0 = off. */
struct arch_limits {
    int64_t depth;     /* archive nesting (an attached archive is depth 1) */
    int64_t files;     /* files in all the archives of one message */
    int64_t file_size; /* bytes of one file, after decompression */
    int64_t total;     /* bytes of all files and MIME parts, after decoding */
    int64_t ratio;     /* expanded / compressed bytes of one archive */
};

/* What the walk reports, one call each. */
enum arch_event {
    ARCH_EV_DEPTH,     /* value: depth reached */
    ARCH_EV_FILES,     /* value: files counted */
    ARCH_EV_FILE_SIZE, /* value: bytes of the file (declared or expanded so far) */
    ARCH_EV_TOTAL,     /* value: total bytes so far */
    ARCH_EV_RATIO,     /* value: ratio reached */
    ARCH_EV_ENCRYPTED, /* an encrypted (password-protected) entry or archive */
    ARCH_EV_BROKEN,    /* libarchive could not read it all (informational) */
};
const char *arch_event_name(enum arch_event ev); /* "file_size", "encrypted", ... */

typedef void (*arch_report_fn)(void *arg, enum arch_event ev, const char *location, int64_t value,
                               int64_t limit);
/*
 * Optional: every member header, depth first. depth 1 = a member of the
 * walked archive itself, 2 = of an archive inside it...; name is the full
 * member path (NULL for the content of a lone compressed stream).
 * declared >= 0: the member was counted by the size its header declares,
 * not expanded (see "trust" below); whoever expands it later must check
 * that it does not come out larger. -1: expanded and counted by the walk.
 */
typedef void (*arch_member_fn)(void *arg, int depth, const char *name, int64_t declared);

/*
 * One budget per message. Counters only grow; the first limit hit spends
 * the budget and every later walk of the message returns ARCH_STOPPED at
 * once. Not shared between threads.
 */
struct arch_budget {
    struct arch_limits lim;
    int64_t files;       /* archive members seen */
    int64_t total;       /* bytes expanded plus MIME part bytes */
    int64_t max_depth;   /* deepest archive opened */
    int spent;           /* a limit was hit */
    int encrypted;       /* encrypted entries seen */
    int64_t peak_buffer; /* most bytes held in nested-archive buffers at once */
    int64_t held;        /* (internal) bytes held now */
    /*
     * Trust (all 0 = off, every member is expanded): a zip member read
     * from memory whose first bytes (inflated alone) are not an archive
     * is counted by its declared size and skipped, not expanded, while its
     * declared size is at most trust_file and trust_bytes / trust_files
     * last. The caller hands the archive to libclamav, which expands such
     * members anyway, and checks each against its declared size
     * (arch_member_fn). Both counters are spent as members are trusted.
     */
    int64_t trust_file;
    int64_t trust_bytes;
    int64_t trust_files;
    int64_t trusted; /* members counted by declared size */
    /*
     * Optional clock_mono() time past which the walk stops (ARCH_STOPPED,
     * spent, timed_out set, nothing reported: the caller's scan timeout
     * says why). 0 = none.
     */
    double deadline;
    int timed_out;
    arch_report_fn report;
    arch_member_fn member; /* optional, set after arch_budget_init */
    void *arg;
};

/* Bytes of a nested archive read into memory (seekable formats); larger ones stream. */
#define ARCH_NEST_BUFFER (2 * 1024 * 1024)
/* Nesting never followed deeper than this, whatever the depth limit says. */
#define ARCH_MAX_DEPTH 32
/* The ratio limit applies once an archive has expanded this much. */
#define ARCH_RATIO_FLOOR (1024 * 1024)

enum { ARCH_OK = 0, ARCH_STOPPED = 1, ARCH_UNREADABLE = -1 };

void arch_budget_init(struct arch_budget *b, const struct arch_limits *lim, arch_report_fn fn,
                      void *arg);

/*
 * Count one plain file (a decoded MIME part) against file_size and total.
 * Returns ARCH_OK or ARCH_STOPPED (limit hit now or before).
 */
int arch_account_file(struct arch_budget *b, int64_t size, const char *location);

/* 1 if data starts like an archive or compressed stream the walk reads. */
int arch_sniff(const void *data, size_t len);

/*
 * Walk the archive in data (nested archives recursively), streaming every
 * member through a fixed buffer, counting against the budget and stopping
 * the moment a limit is hit. location names data in reports
 * ("msg/invoice.zip"); members are appended ("invoice.zip/docs/a.exe").
 * Returns ARCH_OK, ARCH_STOPPED, or ARCH_UNREADABLE (not an archive
 * libarchive can read; reported as ARCH_EV_BROKEN only if it got past
 * the first header).
 */
int arch_walk(struct arch_budget *b, const void *data, size_t len, const char *location);
/* The libarchive in use ("libarchive 3.6.2"). */
const char *arch_library_version(void);

#endif
