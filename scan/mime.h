/* mime.h - the message model: MIME tree walk with decoded parts (see mime.c). */
#ifndef SR_MIME_H
#define SR_MIME_H

#include <stddef.h>
#include <stdint.h>

/*
 * A message is parsed once (GMime 3) from memory or a file descriptor.
 * The walk hands every leaf part to a callback with its transfer-decoded
 * content, so the scanner never decodes twice. Names and the subject are
 * decoded to UTF-8 (RFC 2047, RFC 2231, any charset GMime/iconv knows,
 * ISO-2022-JP, Shift_JIS and EUC-JP included). Broken MIME is read the
 * way a mail client would; limits on depth and number of parts produce
 * a flag, never a crash.
 */

struct mime_msg;

enum mime_limit_flags {
    MIME_LIMIT_DEPTH = 0x01, /* max_mime_depth exceeded: deeper parts not walked */
    MIME_LIMIT_PARTS = 0x02, /* max_mime_parts exceeded: further parts not walked */
};

struct mime_part_info {
    int index;                 /* 1-based, walk order (depth first) */
    int depth;                 /* 0 = top-level body */
    const char *content_type;  /* "application/zip" (lowercase) */
    const char *filename;      /* decoded UTF-8 file name, or NULL */
    const char *path;          /* "msg.eml/invoice.zip" style location for reports */
    const unsigned char *data; /* transfer-decoded content */
    size_t len;
    int64_t encoded_len;       /* bytes of the part as transmitted */
    int decode_error;          /* bad base64 etc.: data holds what could be decoded */
    int64_t raw_begin;         /* offset of the part (its headers) in the raw message */
    int64_t raw_end;           /* offset just past its body; for strip rewriting */
    /* Extensions (scan/mime.c): */
    int64_t body_begin;        /* offset of the body (after the blank line), or -1 */
    int embedded;              /* 1: a uuencoded/binhex block found inside a text part;
                                  raw_begin/raw_end are those of that text part */
    const char *section;       /* IMAP-style part number: "1", "2.1", "2.1.3" */
};

/*
 * Parse; NULL with err on failure (out of memory, unreadable, > 4 GB).
 * mime_parse_mem does not copy: buf must stay valid until mime_free.
 * mime_parse_fd maps a regular file read-only (the fd's offset is not
 * touched, the fd may be closed afterwards); a pipe is read into memory.
 * max_depth / max_parts <= 0 mean the built-in defaults (100 / 10000).
 * Offsets (raw_begin...) count from byte 0 of buf / of the file.
 */
struct mime_msg *mime_parse_mem(const char *buf, size_t len, int max_depth, int max_parts,
                                char *err, size_t errlen);
struct mime_msg *mime_parse_fd(int fd, int max_depth, int max_parts, char *err, size_t errlen);
/* The raw message bytes parsed (valid until mime_free) and their length. */
const char *mime_raw(const struct mime_msg *m, size_t *len);
void mime_free(struct mime_msg *m);

/* Decoded UTF-8 Subject (never NULL; "" when absent), From, Message-ID. */
const char *mime_subject(struct mime_msg *m);
const char *mime_from(struct mime_msg *m);
const char *mime_message_id(struct mime_msg *m);
/* MIME_LIMIT_* bits: known after parsing (structure); the walk may add
   MIME_LIMIT_PARTS for uuencoded blocks found inside text parts. */
unsigned mime_limits_hit(const struct mime_msg *m);

/*
 * Walk the leaf parts (nested message/rfc822 included); cb returns 0 to go
 * on, non-zero to stop (returned by mime_walk). Data is valid during the
 * callback only. Thread-safe for distinct messages. Returns 0 when every
 * part was walked (or a limit stopped the walk: see mime_limits_hit), the
 * callback's value when it stopped, -1 when out of memory (callbacks
 * should stop with positive values).
 */
int mime_walk(struct mime_msg *m, int (*cb)(void *arg, const struct mime_part_info *pi), void *arg);

/* One-time library set-up / tear-down (g_mime_init); call from main. */
void mime_global_init(void);
void mime_global_shutdown(void);
/* The GMime library in use ("3.2.13"). */
const char *mime_library_version(void);

#endif
