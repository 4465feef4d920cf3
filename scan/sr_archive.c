/*
 * sr_archive.c - archive expansion under one budget per message
 * (libarchive: zip, 7z, rar, rar5, cab, tar, cpio, lha; gzip, bzip2, xz,
 * lzma, lzip, zstd and compress streams, alone or around a tar).
 *
 * This is the gatekeeper, not the virus scanner: arch_walk() reads every
 * member of an archive, nested archives included, counting files, bytes
 * and depth against the message's struct arch_budget, and stops the
 * moment a limit is hit (reported once, the budget is then spent).
 * Encrypted members are reported and skipped. Detection is libclamav's
 * job on the whole MIME part (scan.c), with its own unpackers, so this
 * module keeps nothing it expands: member data flows through one 64 KiB
 * buffer per nesting level and is dropped.
 *
 * Memory: per level, libarchive's state, a 64 KiB buffer and, for a
 * nested archive, up to ARCH_NEST_BUFFER bytes of it so that seek-needing
 * formats (zip's central directory, 7z) read it from memory; a nested
 * archive larger than that is read as a stream (libarchive's streaming
 * readers) through a callback that pulls from the parent member. With
 * scan.archive_depth_limit 8 that is at most ~17 MB, and only for
 * archives nested eight deep that large.
 *
 * A declared member size above file_size is a hit without expanding a
 * byte. A declared size is not trusted to be small, with one exception
 * that saves expanding every zip twice (here, then in libclamav): with
 * trust on (struct arch_budget), a zip member that is not an archive
 * itself is counted by its declared size and skipped, and the caller
 * checks libclamav's expansion of it against that size (scan.c). Whether
 * it is an archive is told by its first 512 bytes, inflated alone from
 * its local header (zlib). Otherwise bytes are counted as they come out.
 * The ratio limit compares an archive's expanded bytes with the
 * compressed bytes consumed so far, once ARCH_RATIO_FLOOR bytes came out
 * (small, very compressible files are normal).
 *
 * Only formats that are read without touching the file system or running
 * programs are enabled (no mtree, no external decompressors).
 *
 * cpio is enabled only for an archive that starts with a cpio header,
 * and only behind a guard (struct cpio_guard) that follows its headers
 * before libarchive sees them: libarchive 3.6.2 reads a member's name, and
 * a symlink's target, with one read-ahead of the size the header claims,
 * reserving that much (a forged 8-hex-digit name length: 4 GiB). A name
 * or link above CPIO_NAME_MAX, a header where the previous member ends
 * that is not one (libarchive would search onwards for the next magic),
 * or afio's large headers make the archive unreadable (libclamav, which
 * reads cpio with bounded buffers, still scans it). A cpio inside a
 * compressed stream (cpio.gz) is read as the stream's content, one level
 * deeper, so that the guard sees its headers uncompressed.
 *
 * The same read-ahead reserves whatever an LHA level-3 header claims (32-bit
 * header and extension sizes), but only when libarchive reads through a
 * callback: a nested archive too big for memory (stream_read). Archives
 * read from memory are not affected (measured: test_archive). Streamed
 * levels therefore read zip, rar, rar5, tar and guarded cpio only; a
 * nested lha, cab or 7z larger than ARCH_NEST_BUFFER is counted as it is
 * drained, not walked (7z needs seeking anyway).
 * Returns per call: ARCH_OK, ARCH_STOPPED, ARCH_UNREADABLE.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define ZLIB_CONST
#include <zlib.h>

#include "clock.h"
#include "sr_archive.h"

#define CHUNK (64 * 1024)
#define LOC_MAX 1024
#define DATA_ERROR (-2)

static const char *const event_names[] = {
    [ARCH_EV_DEPTH] = "archive_depth",       [ARCH_EV_FILES] = "archive_files",
    [ARCH_EV_FILE_SIZE] = "file_size",       [ARCH_EV_TOTAL] = "total_size",
    [ARCH_EV_RATIO] = "compression_ratio",   [ARCH_EV_ENCRYPTED] = "encrypted",
    [ARCH_EV_BROKEN] = "unreadable_archive",
};

const char *
arch_event_name(enum arch_event ev)
{
    if ((size_t)ev < sizeof(event_names) / sizeof(event_names[0]))
        return event_names[ev];
    return "?";
}

/* One archive being read: its reader, its counters, its current member. */
struct level {
    struct arch_budget *b;
    struct archive *a;
    int depth;
    const char *location;
    unsigned char *chunk; /* CHUNK bytes */
    int64_t out;          /* bytes expanded from this archive */
    int raw;              /* a lone compressed stream, no member names */
    int64_t members;      /* members seen in this archive */
    int broken_reported;
    char entry_loc[LOC_MAX];
    int64_t entry_bytes;
    const unsigned char *mem; /* the archive, when read from memory (NULL: streamed) */
    size_t memlen;
    int64_t cd_off, cd_len; /* its zip central directory: -1 none, 0/0 not looked for */
    int64_t in_seen;        /* compressed bytes passed over by skipping trusted members */
};

/* A nested archive read as a stream: buffered prefix, then the parent member. */
struct stream_src {
    struct level *parent;
    const unsigned char *pre;
    size_t prelen;
    size_t prepos;
    struct cpio_guard *guard; /* a cpio: every block passes it first */
};

static int walk_buffer(struct arch_budget *b, const void *data, size_t len, int depth,
                       const char *location);
static int walk_level(struct level *lv);

void
arch_budget_init(struct arch_budget *b, const struct arch_limits *lim, arch_report_fn fn, void *arg)
{
    memset(b, 0, sizeof(*b));
    b->lim = *lim;
    b->report = fn;
    b->arg = arg;
}

static int
hit(struct arch_budget *b, enum arch_event ev, const char *loc, int64_t value, int64_t limit)
{
    b->spent = 1;
    if (b->report)
        b->report(b->arg, ev, loc, value, limit);
    return ARCH_STOPPED;
}

static void
note(struct arch_budget *b, enum arch_event ev, const char *loc)
{
    if (b->report)
        b->report(b->arg, ev, loc, 0, 0);
}

int
arch_account_file(struct arch_budget *b, int64_t size, const char *location)
{
    if (b->spent)
        return ARCH_STOPPED;
    b->total += size;
    if (b->lim.file_size && size > b->lim.file_size)
        return hit(b, ARCH_EV_FILE_SIZE, location, size, b->lim.file_size);
    if (b->lim.total && b->total > b->lim.total)
        return hit(b, ARCH_EV_TOTAL, location, b->total, b->lim.total);
    return ARCH_OK;
}

int
arch_sniff(const void *data, size_t len)
{
    const unsigned char *p = data;

    if (len < 4)
        return 0;
    if (p[0] == 'P' && p[1] == 'K' &&
        ((p[2] == 3 && p[3] == 4) || (p[2] == 5 && p[3] == 6) || (p[2] == 7 && p[3] == 8)))
        return 1; /* zip */
    if (len >= 6 && memcmp(p, "7z\xBC\xAF\x27\x1C", 6) == 0)
        return 1;
    if (len >= 6 && memcmp(p, "Rar!\x1A\x07", 6) == 0)
        return 1;
    if (len >= 8 && memcmp(p, "MSCF\0\0\0\0", 8) == 0)
        return 1;
    if (p[0] == 0x1F && (p[1] == 0x8B || p[1] == 0x9D))
        return 1; /* gzip, compress */
    if (p[0] == 'B' && p[1] == 'Z' && p[2] == 'h' && p[3] >= '1' && p[3] <= '9')
        return 1;
    if (len >= 6 && memcmp(p,
                           "\xFD"
                           "7zXZ\0",
                           6) == 0)
        return 1;
    if (memcmp(p, "\x28\xB5\x2F\xFD", 4) == 0 || memcmp(p, "LZIP", 4) == 0)
        return 1;
    if (len >= 6 &&
        (memcmp(p, "070701", 6) == 0 || memcmp(p, "070702", 6) == 0 || memcmp(p, "070707", 6) == 0))
        return 1; /* cpio */
    if ((p[0] == 0xC7 && p[1] == 0x71) || (p[0] == 0x71 && p[1] == 0xC7))
        return 1; /* binary cpio */
    if (len >= 7 && p[2] == '-' && p[3] == 'l' && (p[4] == 'h' || p[4] == 'z') && p[6] == '-')
        return 1; /* lha */
    if (len >= 262 && memcmp(p + 257, "ustar", 5) == 0)
        return 1; /* tar */
    return 0;
}

/*
 * The cpio guard: fed the archive's bytes in order (any chunking), it
 * follows the headers as libarchive will read them and says -1 at the
 * first one libarchive must not see (see the contract above).
 */
#define CPIO_NAME_MAX 65536 /* bytes of a member name or a symlink target */

enum { CPIO_NEWC = 1, CPIO_ODC, CPIO_BIN_LE, CPIO_BIN_BE };
enum { CG_HEADER = 0, CG_NAME, CG_SKIP, CG_DONE, CG_BAD };

struct cpio_guard {
    int fmt;   /* CPIO_*, from the first header */
    int state; /* CG_* */
    unsigned char hdr[110];
    size_t hlen, hsize;
    uint64_t namesize, name_left, skip;
    unsigned char name[11]; /* enough to tell "TRAILER!!!" */
};

/* The cpio variant whose magic starts p, or 0. */
static int
cpio_format(const unsigned char *p, size_t len)
{
    if (len >= 6 && (memcmp(p, "070701", 6) == 0 || memcmp(p, "070702", 6) == 0))
        return CPIO_NEWC;
    if (len >= 6 && memcmp(p, "070707", 6) == 0)
        return CPIO_ODC;
    if (len >= 2 && p[0] == 0xC7 && p[1] == 0x71)
        return CPIO_BIN_LE;
    if (len >= 2 && p[0] == 0x71 && p[1] == 0xC7)
        return CPIO_BIN_BE;
    return 0;
}

/* n digits of base 8 or 16 at p; -1 if one is not a digit. */
static int64_t
cpio_num(const unsigned char *p, size_t n, int base)
{
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int d;
        if (p[i] >= '0' && p[i] <= '7')
            d = p[i] - '0';
        else if (base == 16 && p[i] >= '8' && p[i] <= '9')
            d = p[i] - '0';
        else if (base == 16 && p[i] >= 'a' && p[i] <= 'f')
            d = p[i] - 'a' + 10;
        else if (base == 16 && p[i] >= 'A' && p[i] <= 'F')
            d = p[i] - 'A' + 10;
        else
            return -1;
        v = v * base + d;
    }
    return v;
}

/* A complete header in g->hdr: check it, set what follows. */
static int
cpio_header(struct cpio_guard *g)
{
    const unsigned char *h = g->hdr;
    int64_t mode, namesize, filesize;
    unsigned namepad, datapad;

    switch (g->fmt) {
    case CPIO_NEWC:
        mode = cpio_num(h + 14, 8, 16);
        filesize = cpio_num(h + 54, 8, 16);
        namesize = cpio_num(h + 94, 8, 16);
        namepad = (unsigned)((2 - namesize) & 3);
        datapad = (unsigned)(-filesize & 3);
        for (size_t off = 6; off < 110; off += 8) /* every field hex, as libarchive wants */
            if (cpio_num(h + off, 8, 16) < 0)
                return -1;
        break;
    case CPIO_ODC:
        mode = cpio_num(h + 18, 6, 8);
        namesize = cpio_num(h + 59, 6, 8);
        filesize = cpio_num(h + 65, 11, 8);
        namepad = datapad = 0;
        for (size_t off = 6; off < 76; off++) /* every field octal */
            if (h[off] < '0' || h[off] > '7')
                return -1;
        break;
    default: { /* binary: 16-bit words in the archive's byte order */
        int le = g->fmt == CPIO_BIN_LE;
#define W(o)                                                                                       \
    (le ? (int64_t)h[o] | (int64_t)h[(o) + 1] << 8 : (int64_t)h[o] << 8 | (int64_t)h[(o) + 1])
        mode = W(6);
        namesize = W(20);
        filesize = W(22) << 16 | W(24);
#undef W
        namepad = (unsigned)(namesize & 1);
        datapad = (unsigned)(filesize & 1);
        break;
    }
    }
    if (mode < 0 || namesize < 1 || filesize < 0 || namesize > CPIO_NAME_MAX)
        return -1;
    if ((mode & 0170000) == 0120000 && filesize > CPIO_NAME_MAX)
        return -1; /* a symlink's target is read in one piece too */
    g->namesize = g->name_left = (uint64_t)namesize;
    g->skip = namepad + (uint64_t)filesize + datapad;
    return 0;
}

/* Feed the next n bytes of the archive: 0 so far so good, -1 a bad header. */
static int
cpio_guard_feed(struct cpio_guard *g, const unsigned char *p, size_t n)
{
    static const unsigned char trailer[11] = "TRAILER!!!";

    while (n > 0 && g->state != CG_DONE && g->state != CG_BAD) {
        size_t k;
        int f;
        switch (g->state) {
        case CG_HEADER:
            if (g->hlen == 0) {
                /* The first byte tells binary (26 bytes) from ASCII headers. */
                g->hsize = (p[0] == 0xC7 || p[0] == 0x71) ? 26 : p[0] == '0' ? 76 : 0;
                if (g->hsize == 0) {
                    g->state = CG_BAD;
                    break;
                }
            }
            /* An ASCII header's first 6 bytes tell its size (76 or 110). */
            size_t want = g->hsize == 76 && g->hlen < 6 ? 6 : g->hsize;
            k = want - g->hlen < n ? want - g->hlen : n;
            memcpy(g->hdr + g->hlen, p, k);
            g->hlen += k;
            p += k;
            n -= k;
            if (g->hlen == 6 && g->hsize == 76) {
                f = cpio_format(g->hdr, 6);
                if (f == CPIO_NEWC)
                    g->hsize = 110;
                if (f == 0 || f == CPIO_BIN_LE || f == CPIO_BIN_BE) {
                    g->state = CG_BAD;
                    break;
                }
            }
            if (g->hlen < g->hsize)
                break;
            f = cpio_format(g->hdr, g->hlen);
            if (g->fmt == 0)
                g->fmt = f;
            if (f != g->fmt || cpio_header(g) < 0) {
                g->state = CG_BAD;
                break;
            }
            g->hlen = 0;
            g->state = CG_NAME;
            break;
        case CG_NAME:
            k = g->name_left < n ? (size_t)g->name_left : n;
            for (size_t i = 0; i < k; i++) {
                uint64_t at = g->namesize - g->name_left + i;
                if (at < sizeof(g->name))
                    g->name[at] = p[i];
            }
            g->name_left -= k;
            p += k;
            n -= k;
            if (g->name_left > 0)
                break;
            if (g->namesize == sizeof(trailer) && memcmp(g->name, trailer, sizeof(trailer)) == 0)
                g->state = CG_DONE; /* libarchive reads no further */
            else
                g->state = CG_SKIP;
            break;
        case CG_SKIP:
            k = g->skip < n ? (size_t)g->skip : n;
            g->skip -= k;
            p += k;
            n -= k;
            if (g->skip == 0)
                g->state = CG_HEADER;
            break;
        }
    }
    return g->state == CG_BAD ? -1 : 0;
}

/*
 * A reader with the safe formats and filters only (raw_only: a lone
 * compressed stream; cpio: also cpio, for data that starts with a cpio
 * header and is fed through a cpio_guard; streamed: read through
 * stream_read, where lha, cab and 7z are left out, see the contract).
 */
static struct archive *
reader_new(int raw_only, int cpio, int streamed)
{
    struct archive *a = archive_read_new();
    if (a == NULL)
        return NULL;
    if (raw_only)
        goto filters;
    archive_read_support_format_zip(a);
    archive_read_support_format_rar(a);
    archive_read_support_format_rar5(a);
    archive_read_support_format_tar(a);
    if (cpio)
        archive_read_support_format_cpio(a);
    if (!streamed) {
        archive_read_support_format_7zip(a);
        archive_read_support_format_cab(a);
        archive_read_support_format_lha(a);
    }
filters:
    archive_read_support_format_raw(a);
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_bzip2(a);
    archive_read_support_filter_xz(a);
    archive_read_support_filter_lzma(a);
    archive_read_support_filter_lzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_filter_compress(a);
    return a;
}

/* "parent/name" with control characters replaced, truncated to LOC_MAX. */
static void
make_loc(char *dst, const char *parent, const char *name)
{
    size_t n;

    snprintf(dst, LOC_MAX, "%s/%s", parent, name && name[0] ? name : "?");
    n = strlen(parent) + 1;
    for (char *p = dst + (n < LOC_MAX ? n : LOC_MAX - 1); *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7F)
            *p = '?';
}

static int
looks_encrypted(struct archive *a)
{
    const char *s = archive_error_string(a);
    if (archive_read_has_encrypted_entries(a) > 0)
        return 1;
    return s && (strstr(s, "ncrypt") || strstr(s, "assphrase") || strstr(s, "password"));
}

/* Count n bytes of the current member of lv; ARCH_STOPPED on a limit. */
static int
count(struct level *lv, size_t n)
{
    struct arch_budget *b = lv->b;
    const struct arch_limits *lim = &b->lim;

    lv->entry_bytes += (int64_t)n;
    lv->out += (int64_t)n;
    b->total += (int64_t)n;
    if (b->deadline > 0 && clock_mono() >= b->deadline) {
        b->spent = 1;
        b->timed_out = 1;
        return ARCH_STOPPED;
    }
    if (lim->file_size && lv->entry_bytes > lim->file_size)
        return hit(b, ARCH_EV_FILE_SIZE, lv->entry_loc, lv->entry_bytes, lim->file_size);
    if (lim->total && b->total > lim->total)
        return hit(b, ARCH_EV_TOTAL, lv->entry_loc, b->total, lim->total);
    if (lim->ratio && lv->out > ARCH_RATIO_FLOOR) {
        int64_t in = archive_filter_bytes(lv->a, -1);
        if (in < lv->in_seen)
            in = lv->in_seen;
        if (in < 1)
            in = 1;
        if (lv->out > lim->ratio * in)
            return hit(b, ARCH_EV_RATIO, lv->location, lv->out / in, lim->ratio);
    }
    return ARCH_OK;
}

/* A member's data failed: encrypted, or broken. The reader may be unusable now. */
static int
data_error(struct level *lv)
{
    if (looks_encrypted(lv->a)) {
        lv->b->encrypted++;
        note(lv->b, ARCH_EV_ENCRYPTED, lv->entry_loc);
    } else if (!lv->broken_reported) {
        lv->broken_reported = 1;
        note(lv->b, ARCH_EV_BROKEN, lv->entry_loc);
    }
    return DATA_ERROR;
}

/* Drain the rest of the current member through the chunk buffer. */
static int
drain(struct level *lv)
{
    la_ssize_t n;

    while ((n = archive_read_data(lv->a, lv->chunk, CHUNK)) > 0)
        if (count(lv, (size_t)n) != ARCH_OK)
            return ARCH_STOPPED;
    if (n < 0)
        return lv->b->spent ? ARCH_STOPPED : data_error(lv);
    return ARCH_OK;
}

/* libarchive read callback of a streamed nested archive. */
static la_ssize_t
stream_read(struct archive *child, void *cd, const void **buf)
{
    struct stream_src *s = cd;
    struct level *p = s->parent;
    la_ssize_t n;

    if (s->prepos < s->prelen) {
        *buf = s->pre + s->prepos;
        n = (la_ssize_t)(s->prelen - s->prepos);
        s->prepos = s->prelen;
    } else {
        n = archive_read_data(p->a, p->chunk, CHUNK);
        if (n < 0) {
            archive_set_error(child, EIO, "outer member: %s",
                              archive_error_string(p->a) ? archive_error_string(p->a) : "error");
            return ARCHIVE_FATAL;
        }
        if (n > 0 && count(p, (size_t)n) != ARCH_OK) {
            archive_set_error(child, EFBIG, "budget spent");
            return ARCHIVE_FATAL;
        }
        *buf = p->chunk;
    }
    if (s->guard && cpio_guard_feed(s->guard, *buf, (size_t)n) < 0) {
        archive_set_error(child, EFBIG, "cpio header beyond bounds");
        return ARCHIVE_FATAL;
    }
    return n;
}

/* The current member of lv is an archive: buffer it, or stream it, and walk it. */
static int
nested(struct level *lv, const unsigned char *first, size_t firstlen)
{
    struct arch_budget *b = lv->b;
    size_t cap = 256 * 1024, len = 0;
    unsigned char *buf = malloc(cap);
    char loc[LOC_MAX];
    la_ssize_t n = 0;
    int rc, complete = 0;

    if (buf == NULL)
        return drain(lv);
    memcpy(buf, first, firstlen);
    len = firstlen;
    snprintf(loc, sizeof(loc), "%s", lv->entry_loc);

    /* Read into memory up to ARCH_NEST_BUFFER. */
    for (;;) {
        if (len == cap) {
            if (cap >= ARCH_NEST_BUFFER)
                break;
            size_t ncap = cap * 2 > ARCH_NEST_BUFFER ? ARCH_NEST_BUFFER : cap * 2;
            unsigned char *nb = realloc(buf, ncap);
            if (nb == NULL)
                break;
            buf = nb;
            cap = ncap;
        }
        n = archive_read_data(lv->a, buf + len, cap - len);
        if (n < 0) {
            free(buf);
            return b->spent ? ARCH_STOPPED : data_error(lv);
        }
        if (n == 0) {
            complete = 1;
            break;
        }
        len += (size_t)n;
        if (count(lv, (size_t)n) != ARCH_OK) {
            free(buf);
            return ARCH_STOPPED;
        }
    }
    b->held += (int64_t)cap;
    if (b->held > b->peak_buffer)
        b->peak_buffer = b->held;

    if (complete) {
        rc = walk_buffer(b, buf, len, lv->depth + 1, loc);
    } else {
        /* Too big for memory: the streaming readers, fed from the parent member. */
        struct cpio_guard guard = {0};
        int cpio = cpio_format(buf, len) != 0;
        struct stream_src src = {lv, buf, len, 0, cpio ? &guard : NULL};
        struct level child = {0};
        child.b = b;
        child.depth = lv->depth + 1;
        child.location = loc;
        child.a = reader_new(0, cpio, 1);
        child.chunk = malloc(CHUNK);
        if (child.a == NULL || child.chunk == NULL ||
            archive_read_open(child.a, &src, NULL, stream_read, NULL) != ARCHIVE_OK) {
            rc = b->spent ? ARCH_STOPPED : ARCH_UNREADABLE;
        } else {
            if (child.depth > b->max_depth)
                b->max_depth = child.depth;
            rc = walk_level(&child);
        }
        if (child.a)
            archive_read_free(child.a);
        free(child.chunk);
        if (rc != ARCH_STOPPED && !b->spent)
            rc = drain(lv) == ARCH_STOPPED ? ARCH_STOPPED : ARCH_OK;
    }
    b->held -= (int64_t)cap;
    free(buf);
    if (b->spent)
        return ARCH_STOPPED;
    return ARCH_OK; /* an unreadable inner archive is libclamav's to judge */
}

/* Read the current member: sniff its head, recurse or drain. */
static int
read_member(struct level *lv)
{
    struct arch_budget *b = lv->b;
    la_ssize_t n = archive_read_data(lv->a, lv->chunk, CHUNK);

    if (n < 0)
        return b->spent ? ARCH_STOPPED : data_error(lv);
    if (n == 0)
        return ARCH_OK;
    if (count(lv, (size_t)n) != ARCH_OK)
        return ARCH_STOPPED;
    if (arch_sniff(lv->chunk, (size_t)n)) {
        if (b->lim.depth && lv->depth + 1 > b->lim.depth)
            return hit(b, ARCH_EV_DEPTH, lv->entry_loc, lv->depth + 1, b->lim.depth);
        /* With the depth limit off, a zip that contains itself still ends. */
        if (lv->depth + 1 <= ARCH_MAX_DEPTH)
            return nested(lv, lv->chunk, (size_t)n);
    }
    return drain(lv);
}

#define SNIFF_LEN 512
#define LH_SIZE 30
#define LH_BACK (LH_SIZE + 2048) /* farthest a member's data starts after its local header */

static unsigned
le16(const unsigned char *p)
{
    return (unsigned)p[0] | (unsigned)p[1] << 8;
}

static uint32_t
le32(const unsigned char *p)
{
    return (uint32_t)le16(p) | (uint32_t)le16(p + 2) << 16;
}

/*
 * The compressed size the central directory of lv's zip gives the member
 * whose local header is at offset lho; -1 if not found (or zip64).
 */
static int64_t
zip_central_csize(struct level *lv, int64_t lho)
{
    const unsigned char *m = lv->mem, *p;

    if (lv->cd_off == 0 && lv->cd_len == 0) {
        lv->cd_off = lv->cd_len = -1;
        for (int64_t at = (int64_t)lv->memlen - 22; at >= 0 && (int64_t)lv->memlen - at <= 65557;
             at--) {
            p = m + at;
            if (p[0] == 'P' && p[1] == 'K' && p[2] == 5 && p[3] == 6) {
                int64_t off = le32(p + 16), len = le32(p + 12);
                if (off + len <= at) {
                    lv->cd_off = off;
                    lv->cd_len = len;
                }
                break;
            }
        }
    }
    if (lv->cd_off < 0)
        return -1;
    for (int64_t at = 0; at + 46 <= lv->cd_len;) {
        p = m + lv->cd_off + at;
        if (!(p[0] == 'P' && p[1] == 'K' && p[2] == 1 && p[3] == 2))
            return -1;
        if (le32(p + 42) == (uint32_t)lho)
            return le32(p + 20) == 0xFFFFFFFFu ? -1 : (int64_t)le32(p + 20);
        at += 46 + (int64_t)le16(p + 28) + le16(p + 30) + le16(p + 32);
    }
    return -1;
}

/*
 * The first bytes of the current zip member of lv, read from memory
 * without libarchive (which would inflate up to 256 KiB to hand out the
 * first byte): its data starts where libarchive stopped reading, just
 * after a local file header whose name and extra fields end there.
 * Stored and deflated members only, whose local header does not declare
 * a size that cannot be true: more compressed bytes than deflate makes
 * of that many (a lie told to be trusted: better expanded here).
 * Returns the bytes in out (at most want), or -1 when that cannot be done;
 * *end: where the member's compressed data ends.
 */
static long
zip_member_head(struct level *lv, int64_t size, unsigned char *out, size_t want, int64_t *end)
{
    int64_t off = archive_filter_bytes(lv->a, -1);
    const unsigned char *lh = NULL, *data;
    size_t avail;

    if (lv->mem == NULL || off < LH_SIZE || (uint64_t)off > lv->memlen)
        return -1;
    for (int64_t at = off - LH_SIZE; at >= 0 && off - at <= LH_BACK; at--) {
        const unsigned char *p = lv->mem + at;
        if (p[0] == 'P' && p[1] == 'K' && p[2] == 3 && p[3] == 4 &&
            at + LH_SIZE + (int64_t)le16(p + 26) + (int64_t)le16(p + 28) == off) {
            lh = p;
            break;
        }
    }
    if (lh == NULL || (le16(lh + 6) & 1)) /* not found, or encrypted */
        return -1;
    data = lv->mem + off;
    avail = lv->memlen - (size_t)off;
    /* Sizes in the local header, unless they follow the data (flag 8). */
    int64_t csize = (le16(lh + 6) & 8) ? zip_central_csize(lv, lh - lv->mem) : le32(lh + 18);
    if (csize < 0)
        return -1;
    *end = off + csize;
    switch (le16(lh + 8)) {
    case 0: /* stored */
        if (avail < want || csize != size)
            return -1;
        memcpy(out, data, want);
        return (long)want;
    case 8: { /* deflated */
        z_stream z;
        long got;
        /* Stored blocks cost 5 bytes per 64 KiB; headers and codes a few more. */
        if (csize > size + size / 1000 + 1024)
            return -1;
        memset(&z, 0, sizeof(z));
        if (inflateInit2(&z, -MAX_WBITS) != Z_OK)
            return -1;
        z.next_in = data;
        z.avail_in = avail > (1u << 30) ? (1u << 30) : (uInt)avail;
        z.next_out = out;
        z.avail_out = (uInt)want;
        int zr = inflate(&z, Z_SYNC_FLUSH);
        got = (long)(want - z.avail_out);
        inflateEnd(&z);
        if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
            return -1;
        return got == (long)want ? got : -1;
    }
    default:
        return -1;
    }
}

/*
 * Trust: count the current member by its declared size and skip it,
 * when it qualifies (see struct arch_budget). Returns TRUSTED, 0 read it
 * the usual way, or ARCH_STOPPED on a limit.
 */
#define TRUSTED 2
static int
trusted_member(struct level *lv, struct archive_entry *ent, const char *name)
{
    struct arch_budget *b = lv->b;
    unsigned char head[SNIFF_LEN];
    int64_t size, end = 0;
    size_t want;

    if (b->trust_file <= 0 || b->trust_files <= 0 || lv->mem == NULL || lv->raw ||
        archive_format(lv->a) != ARCHIVE_FORMAT_ZIP || !archive_entry_size_is_set(ent))
        return 0;
    size = archive_entry_size(ent);
    if (size <= 0 || size > b->trust_file || size > b->trust_bytes)
        return 0;
    want = size < SNIFF_LEN ? (size_t)size : SNIFF_LEN;
    if (zip_member_head(lv, size, head, want, &end) < 0 || arch_sniff(head, want))
        return 0;
    if (archive_read_data_skip(lv->a) != ARCHIVE_OK)
        return 0; /* the reader is in trouble: the next header tells */
    b->trust_files--;
    b->trust_bytes -= size;
    b->trusted++;
    if (end > lv->in_seen)
        lv->in_seen = end;
    if (b->member)
        b->member(b->arg, lv->depth, name ? name : "?", size);
    lv->entry_bytes = 0;
    return count(lv, (size_t)size) == ARCH_OK ? TRUSTED : ARCH_STOPPED;
}

/* Tell the caller about a member the walk reads (or stops at). */
static void
member_seen(struct level *lv, const char *name)
{
    if (lv->b->member)
        lv->b->member(lv->b->arg, lv->depth, lv->raw ? NULL : name ? name : "?", -1);
}

/* Walk the members of one opened archive. */
static int
walk_level(struct level *lv)
{
    struct arch_budget *b = lv->b;
    struct archive_entry *ent;
    int first = 1, failures = 0;

    for (;;) {
        int r = archive_read_next_header(lv->a, &ent);
        if (r == ARCHIVE_EOF)
            return ARCH_OK;
        if (b->spent)
            return ARCH_STOPPED;
        if (r == ARCHIVE_FATAL || (r == ARCHIVE_FAILED && ++failures > 16)) {
            if (looks_encrypted(lv->a)) {
                b->encrypted++;
                note(b, ARCH_EV_ENCRYPTED, lv->location);
                return ARCH_OK;
            }
            if (first)
                return ARCH_UNREADABLE;
            if (!lv->broken_reported)
                note(b, ARCH_EV_BROKEN, lv->location);
            lv->broken_reported = 1;
            return ARCH_OK;
        }
        if (r == ARCHIVE_FAILED)
            continue;
        if (first) {
            first = 0;
            if (archive_format(lv->a) == ARCHIVE_FORMAT_RAW) {
                /* A plain file offered as raw: not ours (it would loop). */
                if (archive_filter_count(lv->a) <= 1 ||
                    archive_filter_code(lv->a, 0) == ARCHIVE_FILTER_NONE)
                    return ARCH_UNREADABLE;
                lv->raw = 1;
            }
        }
        if (archive_entry_filetype(ent) == AE_IFDIR)
            continue;

        /* Count, name, check what the header tells. */
        const char *name = NULL;
        b->files++;
        lv->members++;
        if (lv->raw) {
            snprintf(lv->entry_loc, sizeof(lv->entry_loc), "%s", lv->location);
        } else {
            name = archive_entry_pathname_utf8(ent);
            if (name == NULL)
                name = archive_entry_pathname(ent);
            make_loc(lv->entry_loc, lv->location, name);
        }
        if (b->lim.files && b->files > b->lim.files)
            return hit(b, ARCH_EV_FILES, lv->location, b->files, b->lim.files);
        if (archive_entry_is_encrypted(ent)) {
            member_seen(lv, name);
            b->encrypted++;
            note(b, ARCH_EV_ENCRYPTED, lv->entry_loc);
            continue;
        }
        if (b->lim.file_size && archive_entry_size_is_set(ent) &&
            archive_entry_size(ent) > b->lim.file_size) {
            member_seen(lv, name);
            return hit(b, ARCH_EV_FILE_SIZE, lv->entry_loc, archive_entry_size(ent),
                       b->lim.file_size);
        }

        int rc = trusted_member(lv, ent, name);
        if (rc == ARCH_STOPPED)
            return ARCH_STOPPED;
        if (rc == TRUSTED)
            continue;
        member_seen(lv, name);
        lv->entry_bytes = 0;
        rc = read_member(lv);
        if (rc == ARCH_STOPPED)
            return ARCH_STOPPED;
        /* DATA_ERROR: the next header tells whether the reader goes on. */
    }
}

/* Open data (in memory, seekable) as an archive at the given depth and walk it. */
static int
walk_buffer_as(struct arch_budget *b, const void *data, size_t len, int depth, const char *location,
               int raw_only, int *empty_stream)
{
    struct level lv = {0};
    int rc;

    lv.b = b;
    lv.depth = depth;
    lv.location = location;
    int cpio = !raw_only && cpio_format(data, len) != 0;
    if (cpio) {
        struct cpio_guard guard = {0};
        if (cpio_guard_feed(&guard, data, len) < 0) {
            note(b, ARCH_EV_BROKEN, location);
            return ARCH_UNREADABLE;
        }
    }
    lv.a = reader_new(raw_only, cpio, 0);
    lv.chunk = malloc(CHUNK);
    if (lv.a == NULL || lv.chunk == NULL) {
        rc = ARCH_UNREADABLE;
        goto out;
    }
    lv.mem = data;
    lv.memlen = len;
    if (archive_read_open_memory(lv.a, data, len) != ARCHIVE_OK) {
        rc = ARCH_UNREADABLE;
        goto out;
    }
    if (depth > b->max_depth)
        b->max_depth = depth;
    rc = walk_level(&lv);
    /* A compressed stream read as an archive with no member (zeros read as an empty tar). */
    *empty_stream = rc == ARCH_OK && lv.members == 0 && !lv.raw && archive_filter_count(lv.a) > 1;
out:
    if (lv.a)
        archive_read_free(lv.a);
    free(lv.chunk);
    return rc;
}

/*
 * Walk data; when it turned out to be a compressed stream holding an empty
 * archive, measure the stream itself too (its expansion is what it costs).
 */
static int
walk_buffer(struct arch_budget *b, const void *data, size_t len, int depth, const char *location)
{
    int empty = 0, rc = walk_buffer_as(b, data, len, depth, location, 0, &empty);

    if (empty && !b->spent)
        rc = walk_buffer_as(b, data, len, depth, location, 1, &empty);
    return rc;
}

int
arch_walk(struct arch_budget *b, const void *data, size_t len, const char *location)
{
    if (b->spent)
        return ARCH_STOPPED;
    return walk_buffer(b, data, len, 1, location);
}

const char *
arch_library_version(void)
{
    return archive_version_string();
}
