/* rewrite.h - rewrite a message: prepend header lines, strip parts (see rewrite.c). */
#ifndef SR_REWRITE_H
#define SR_REWRITE_H

#include <stddef.h>
#include <stdint.h>

struct spool;

/*
 * Where bytes come from or go to: a spool when sp is set, else the file
 * descriptor fd (a source is read with pread from offset 0 and its offset
 * is not touched; a sink is written at its current offset), else (sources
 * only) the memory mem/len. Build one with the rewrite_io_* helpers.
 */
struct rewrite_io {
    struct spool *sp;
    int fd;
    const char *mem;
    size_t len;
};

static inline struct rewrite_io
rewrite_io_spool(struct spool *sp)
{
    struct rewrite_io io = {sp, -1, NULL, 0};
    return io;
}

static inline struct rewrite_io
rewrite_io_fd(int fd)
{
    struct rewrite_io io = {NULL, fd, NULL, 0};
    return io;
}

static inline struct rewrite_io
rewrite_io_mem(const char *mem, size_t len)
{
    struct rewrite_io io = {NULL, -1, mem, len};
    return io;
}

/* One part to remove: its raw range from struct mime_part_info, and why. */
struct rewrite_strip_part {
    int64_t raw_begin, raw_end; /* [begin, end) in the raw message */
    const char *filename;       /* decoded UTF-8 name for the notice; NULL: unnamed */
    const char *reason;         /* "infected: Win.Test.EICAR"; NULL: "removed by policy" */
};

/*
 * Copy in to out with header lines prepended. Lines are complete header
 * fields without line end ("X-Virus-Scanned: ..."); they get the message's
 * own line end (CRLF or LF, from its first line). A line holding CR or LF
 * is refused (EINVAL). 0 ok, -1 error with errno.
 */
int rewrite_prepend(const struct rewrite_io *in, const char *const *lines, size_t nlines,
                    const struct rewrite_io *out);

/*
 * Copy in to out with each part range replaced by a short text/plain part
 * naming the file and the reason; every other byte is copied unchanged.
 * The replaced part keeps its header fields that do not start with
 * "Content-" (so a whole single-part message keeps From, Subject...), and
 * gets Content-Type: text/plain; charset=utf-8, Content-Disposition: inline
 * and a transfer encoding (7bit, or quoted-printable for a non-ASCII
 * name); a range starting at offset 0 also gets MIME-Version when absent.
 * Ranges may come in any order; identical or nested ranges are merged
 * (one notice line each); partly overlapping or out-of-bounds ranges are
 * refused (EINVAL). Streams: memory use does not grow with the message.
 * 0 ok, -1 error with errno (out may then hold a partial copy).
 */
int rewrite_strip(const struct rewrite_io *in, const struct rewrite_strip_part *parts,
                  size_t nparts, const struct rewrite_io *out);

/* Both in one pass: lines prepended, parts stripped. */
int rewrite_message(const struct rewrite_io *in, const char *const *lines, size_t nlines,
                    const struct rewrite_strip_part *parts, size_t nparts,
                    const struct rewrite_io *out);

#endif
