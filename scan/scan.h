/* scan.h - scan one message: MIME parts, size rules, archive budget, libclamav (see scan.c). */
#ifndef SR_SCAN_H
#define SR_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct sr_engine;

/* Verdict kinds, in rising precedence. */
enum scan_kind {
    SCAN_CLEAN = 0,
    SCAN_ERROR,     /* a part could not be scanned (libclamav error, timeout, parse) */
    SCAN_LIMIT,     /* a size rule / archive budget limit was hit */
    SCAN_ENCRYPTED, /* an encrypted archive (content unchecked) */
    SCAN_VIRUS,     /* a signature matched */
};
/* "clean", "error", "limit", "encrypted", "virus". */
const char *scan_kind_name(enum scan_kind k);
/* The log line's result=: "clean", "error", "policy" (limit, encrypted), "virus". */
const char *scan_result_word(enum scan_kind k);

/* One thing found. */
struct scan_finding {
    enum scan_kind kind;
    enum sr_action action; /* from the config for this kind / rule */
    char *name;            /* virus name, rule ("file_size", "archive_depth", "message_size",
                              "recipients", "mime_parts", ...), "encrypted", or the error */
    char *location;        /* "invoice.zip/docs/a.exe"; the part path; "message" */
    int part;              /* MIME part index (1-based), 0 = the message as a whole */
    int64_t value, limit;  /* rules: value reached and threshold */
};

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
    enum scan_kind kind; /* worst finding in this part */
};

/* A part the verdict strips (action strip): for rewrite_strip(). */
struct scan_strip {
    int part;
    int64_t raw_begin, raw_end;
    char *filename;
    char *reason; /* "infected: Win.Test.EICAR", "file_size limit", "encrypted archive" */
};

/* Header fields to add to a delivered message, without line ends. */
#define SCAN_MAX_HEADERS 2

struct scan_result {
    enum scan_kind kind;   /* the highest kind found */
    enum sr_action action; /* the strongest action of all findings; DELIVER when clean */
    const char *result;    /* scan_result_word(kind) */
    char *virus;           /* first virus name, or NULL */
    char *location;        /* where the deciding finding was, or NULL */
    char *reason;          /* one line for logs and replies ("virus Win.Test.EICAR in a.zip/x") */
    struct scan_finding *findings;
    size_t nfindings;
    size_t findings_dropped; /* beyond SCAN_MAX_FINDINGS */
    struct scan_part *parts;
    size_t nparts;
    struct scan_strip *strips; /* set when action == SR_ACTION_STRIP */
    size_t nstrips;
    char *headers[SCAN_MAX_HEADERS]; /* "X-Virus-Scanned: ...", "X-Virus-Status: ..." */
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
 * Scan one RFC 5322 message (msg/len in memory, or a file descriptor read
 * from offset 0) with engine e under cfg's rules; nrcpts for the recipients
 * rule (0: not checked). Blocking; thread-safe (one engine, many threads,
 * distinct results). Always fills res (free it with scan_result_free):
 * problems with the message are verdicts (kind SCAN_ERROR, action
 * scan.error_action), not failures. Returns 0, or -1 only when res could
 * not be built at all (out of memory; res then reads SCAN_ERROR/DEFER).
 */
int scan_message(struct sr_engine *e, const struct sr_config *cfg, const char *msg, size_t len,
                 int nrcpts, struct scan_result *res);
int scan_message_fd(struct sr_engine *e, const struct sr_config *cfg, int fd, int nrcpts,
                    struct scan_result *res);
void scan_result_free(struct scan_result *res);

/* The X-Virus-Scanned value: "scanrelay 0.1.0 (ClamAV 1.4.6/12345)". */
void scan_scanned_header(struct sr_engine *e, char *buf, size_t len);

#endif
