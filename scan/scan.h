/* scan.h - scan one message: MIME parts, size rules, archive budget, libclamav (see scan.c). */
#ifndef SR_SCAN_H
#define SR_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "verdict.h"

struct sr_engine;
struct mime_msg;

/* One MIME leaf part as walked. */
struct scan_part {
    int index;
    int depth;
    char *path;     /* mime.h path ("msg/invoice.zip") */
    char *filename; /* decoded UTF-8 name or NULL */
    char *content_type;
    int64_t size; /* decoded bytes */
    int64_t encoded_size;
    int decode_error;
    int embedded; /* uuencoded/binhex block inside a text part */
    int64_t raw_begin, raw_end;
    enum scan_kind kind;   /* kind of the part's finding with the strongest action */
    enum sr_action action; /* the strongest action its findings ask for */
};

/* A part the verdict strips (action strip): for rewrite_strip(). */
struct scan_strip {
    int part;
    int64_t raw_begin, raw_end;
    char *filename;
    char *reason; /* "infected: Win.Test.EICAR", "file_size limit", "encrypted archive" */
};

struct scan_result {
    enum scan_kind kind;   /* the deciding finding's kind; SCAN_CLEAN without findings */
    enum sr_action action; /* composed from all findings (verdict.h); DELIVER when clean */
    const char *result;    /* scan_result_word(kind) */
    const char *checker;   /* the deciding finding's checker, or NULL */
    char *rule;            /* the deciding finding's rule, or NULL (log rule=) */
    long deciding;         /* index into findings, -1 when none */
    int has_score;         /* a finding had a score; score is their sum */
    double score;
    char *virus;           /* first virus name, or NULL */
    char *location;        /* where the deciding finding was, or NULL */
    char *reason;          /* one line for logs and replies ("virus Win.Test.EICAR in a.zip/x") */
    unsigned notify;       /* SCAN_NOTIFY_* a rule asks for (per-rule notices), 0 none */
    struct scan_finding *findings;
    size_t nfindings;
    size_t findings_dropped; /* beyond SCAN_MAX_FINDINGS */
    struct scan_part *parts;
    size_t nparts;
    struct scan_strip *strips; /* set when action == SR_ACTION_STRIP */
    size_t nstrips;
    /* Header fields to add to a delivered message, without line ends, in
     * order: "X-Virus-Scanned: ...", "X-Virus-Status: ...", then what
     * other checkers added (scan_add_header). */
    char **headers;
    size_t nheaders;
    unsigned mime_limits;        /* MIME_LIMIT_* */
    int64_t expanded;            /* decoded + decompressed bytes counted */
    int64_t archive_files;       /* archive members counted */
    int64_t archive_depth;       /* deepest archive opened */
    int64_t archive_peak_buffer; /* most bytes held for nested archives */
    uint64_t engine_generation;
    unsigned cache_hits; /* parts found clean before by the same engine, not rescanned */
    double elapsed;      /* seconds */
    /* Decoded (UTF-8) header fields, for the message log and the quarantine index;
     * NULL when the message did not parse. */
    char *subject;
    char *hdr_from;
    char *message_id;
};

#define SCAN_MAX_FINDINGS 200

/*
 * Checkers beyond the built-in ones (the virus engine, the size and
 * archive rules): each reads the message and adds findings with
 * scan_add_finding() (and header fields with scan_add_header()). It runs
 * after the built-in checkers, before the composer. Returns 0, or -1 when
 * it failed (out of memory: an error finding is added for it).
 */
struct scan_input {
    const char *msg; /* the raw message */
    size_t len;
    int nrcpts;
    const struct sr_config *cfg;
    const char *subject, *hdr_from, *message_id; /* decoded; NULL when unparsed */
    struct mime_msg *mime; /* the parsed message (scan/mime.h), NULL when unparsed: a
                              checker may mime_walk it again, not free it */
};
struct scan_checker {
    const char *name; /* "policy", "spam", ... */
    int (*check)(void *arg, const struct scan_input *in, struct scan_result *res);
    void *arg;
};
/* Extra checkers and the composer's score thresholds. */
struct scan_opts {
    const struct scan_checker *checkers;
    size_t ncheckers;
    const struct verdict_threshold *thresholds;
    size_t nthresholds;
};

/* A finding as a checker hands it in (see struct scan_finding). */
struct scan_finding_in {
    const char *checker; /* static */
    const char *rule;
    enum scan_kind kind;
    enum sr_action action;
    int has_score;
    double score;
    const char *name, *location;
    int part; /* 1-based index into res->parts, 0 the message */
    int64_t value, limit;
};

/*
 * Add a copy of f (checker is static; rule, name and location are
 * copied) to res. A finding of part p > 0 marks that part. Beyond
 * SCAN_MAX_FINDINGS it is counted in findings_dropped, and the verdict
 * stays right: it replaces the last kept finding when it asks for a
 * stronger action. 0 ok, -1 out of memory.
 */
int scan_add_finding(struct scan_result *res, const struct scan_finding_in *f);
/* Add "name: value" (value made printable ASCII) to res's header list; 0 ok, -1 out of memory. */
int scan_add_header(struct scan_result *res, const char *name, const char *value);

/*
 * Scan one RFC 5322 message (msg/len in memory, or a file descriptor read
 * from offset 0) with engine e under cfg's rules; nrcpts for the recipients
 * rule (0: not checked). Blocking; thread-safe (one engine, many threads,
 * distinct results). Always fills res (free it with scan_result_free):
 * problems with the message are verdicts (kind SCAN_ERROR, action
 * scan.error_action), not failures. Returns 0, or -1 only when res could
 * not be built at all (out of memory; res then reads SCAN_ERROR/DEFER).
 * scan_message_opts also runs opts' checkers and hands the composer its
 * thresholds (opts may be NULL).
 */
int scan_message(struct sr_engine *e, const struct sr_config *cfg, const char *msg, size_t len,
                 int nrcpts, struct scan_result *res);
int scan_message_opts(struct sr_engine *e, const struct sr_config *cfg, const char *msg,
                      size_t len, int nrcpts, const struct scan_opts *opts,
                      struct scan_result *res);
int scan_message_fd(struct sr_engine *e, const struct sr_config *cfg, int fd, int nrcpts,
                    struct scan_result *res);
int scan_message_fd_opts(struct sr_engine *e, const struct sr_config *cfg, int fd, int nrcpts,
                         const struct scan_opts *opts, struct scan_result *res);
void scan_result_free(struct scan_result *res);

/* The X-Virus-Scanned value: "scanrelay 0.1.0 (ClamAV 1.4.6/12345)". */
void scan_scanned_header(struct sr_engine *e, char *buf, size_t len);

#endif
