/*
 * rewrite.c - the message as delivered after an action: header lines
 * prepended (X-Virus-Scanned, X-Virus-Status), and parts stripped, each
 * replaced by a short text/plain notice, every other byte unchanged.
 *
 * Public calls: rewrite_prepend, rewrite_strip, rewrite_message.
 *
 * The raw message is read in 64 kB chunks (spool_pread, pread or memory)
 * and written through a 64 kB buffer to a spool or a file descriptor, so
 * memory use does not depend on the message size. Part ranges come from
 * mime.c (raw_begin/raw_end of a leaf: first header through end of body,
 * the line end before the next boundary excluded), so boundary lines and
 * everything between the ranges are copied as they are. Inside a range,
 * the header block is filtered field by field (non-"Content-" fields are
 * kept verbatim, continuation lines included), then the new Content-*
 * fields and the notice are written and the old body skipped.
 *
 * Nothing is owned past a call: the caller's lines, ranges and names are
 * only read. Returns 0, or -1 with errno (EINVAL for bad ranges or header
 * lines, ENOMEM, or the error of the read or write); nothing aborts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rewrite.h"
#include "spool.h"

#define CHUNK 65536

struct src {
    const struct rewrite_io *io;
    int64_t size;
};

struct sink {
    const struct rewrite_io *io;
    size_t len;
    int failed;
    unsigned char buf[CHUNK];
};

/* Items sorted by begin, nested ones folded into their outer range. */
struct range {
    int64_t begin, end;
    size_t first, count; /* notices: order[first .. first + count) */
};

static int
src_open(struct src *s, const struct rewrite_io *io)
{
    struct stat st;

    s->io = io;
    if (io->sp != NULL) {
        s->size = (int64_t)spool_size(io->sp);
    } else if (io->fd >= 0) {
        if (fstat(io->fd, &st) < 0)
            return -1;
        s->size = (int64_t)st.st_size;
    } else {
        s->size = (int64_t)io->len;
    }
    return 0;
}

/* Read up to len bytes at off; bytes read, 0 at end, -1 error. */
static ssize_t
src_read(struct src *s, void *buf, size_t len, int64_t off)
{
    ssize_t n;

    if (off >= s->size)
        return 0;
    if ((int64_t)len > s->size - off)
        len = (size_t)(s->size - off);
    if (s->io->sp != NULL)
        return spool_pread(s->io->sp, buf, len, (off_t)off);
    if (s->io->fd >= 0) {
        do
            n = pread(s->io->fd, buf, len, (off_t)off);
        while (n < 0 && errno == EINTR);
        return n;
    }
    memcpy(buf, s->io->mem + off, len);
    return (ssize_t)len;
}

static int
sink_flush(struct sink *k)
{
    size_t done = 0;
    ssize_t n;

    if (k->failed)
        return -1;
    if (k->io->sp != NULL) {
        if (k->len > 0 && spool_write(k->io->sp, k->buf, k->len) < 0) {
            k->failed = errno ? errno : EIO;
            return -1;
        }
    } else {
        while (done < k->len) {
            n = write(k->io->fd, k->buf + done, k->len - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                k->failed = n < 0 ? errno : EIO;
                return -1;
            }
            done += (size_t)n;
        }
    }
    k->len = 0;
    return 0;
}

static int
sink_write(struct sink *k, const void *p, size_t len)
{
    const unsigned char *b = p;

    while (len > 0) {
        size_t room = sizeof(k->buf) - k->len, n = len < room ? len : room;
        memcpy(k->buf + k->len, b, n);
        k->len += n;
        b += n;
        len -= n;
        if (k->len == sizeof(k->buf) && sink_flush(k) < 0)
            return -1;
    }
    return k->failed ? -1 : 0;
}

static int
sink_puts(struct sink *k, const char *s)
{
    return sink_write(k, s, strlen(s));
}

/* Copy [from, to) of the source. */
static int
copy_range(struct src *s, struct sink *k, int64_t from, int64_t to, unsigned char *buf)
{
    while (from < to) {
        size_t want = (size_t)(to - from < CHUNK ? to - from : CHUNK);
        ssize_t n = src_read(s, buf, want, from);
        if (n <= 0) {
            if (n == 0)
                errno = EIO; /* source shorter than announced */
            return -1;
        }
        if (sink_write(k, buf, (size_t)n) < 0)
            return -1;
        from += n;
    }
    return 0;
}

/* The message's line end: that of its first line ("\r\n" when none). */
static const char *
detect_eol(struct src *s, unsigned char *buf)
{
    ssize_t n = src_read(s, buf, 4096, 0);
    unsigned char *nl = n > 0 ? memchr(buf, '\n', (size_t)n) : NULL;

    if (nl != NULL && (nl == buf || nl[-1] != '\r'))
        return "\n";
    return "\r\n";
}

/*
 * Filter the header block of [b, e): keep fields not named Content-*,
 * verbatim. Sets *mime_version when a MIME-Version field was kept.
 */
static int
filter_headers(struct src *s, struct sink *k, int64_t b, int64_t e, const char *eol,
               unsigned char *buf, int *mime_version)
{
    enum { START, KEEP, DROP } st = START;
    char pfx[64];
    size_t pl = 0;
    int keep_prev = 0, done = 0;
    int64_t pos = b;

    *mime_version = 0;
    while (!done && pos < e) {
        size_t want = (size_t)(e - pos < CHUNK ? e - pos : CHUNK);
        ssize_t n = src_read(s, buf, want, pos);
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        for (ssize_t i = 0; i < n && !done; i++) {
            unsigned char c = buf[i];
            switch (st) {
            case START:
                pfx[pl++] = (char)c;
                if (pl == 1 && c == '\n') {
                    done = 1; /* blank line (LF) */
                } else if (pl == 2 && pfx[0] == '\r' && c == '\n') {
                    done = 1; /* blank line (CRLF) */
                } else if (pl == 1 && (c == ' ' || c == '\t')) {
                    st = keep_prev ? KEEP : DROP; /* continuation */
                    if (keep_prev && sink_write(k, pfx, pl) < 0)
                        return -1;
                    pl = 0;
                } else if (c == ':' || c == '\n' || pl == sizeof(pfx)) {
                    keep_prev = !(pl >= 8 && strncasecmp(pfx, "Content-", 8) == 0);
                    if (pl >= 13 && strncasecmp(pfx, "MIME-Version:", 13) == 0)
                        *mime_version = 1;
                    if (keep_prev && sink_write(k, pfx, pl) < 0)
                        return -1;
                    st = c == '\n' ? START : keep_prev ? KEEP : DROP;
                    pl = 0;
                }
                break;
            case KEEP:
                if (sink_write(k, &c, 1) < 0)
                    return -1;
                /* fall through */
            case DROP:
                if (c == '\n')
                    st = START;
                break;
            }
        }
        pos += n;
    }

    /* The range ended inside the header block (a part without body). */
    if (!done) {
        if (st == START && pl > 0) {
            keep_prev = !(pl >= 8 && strncasecmp(pfx, "Content-", 8) == 0);
            if (keep_prev && sink_write(k, pfx, pl) < 0)
                return -1;
            st = keep_prev ? KEEP : DROP;
        }
        if (st == KEEP && sink_puts(k, eol) < 0)
            return -1;
    }
    return 0;
}

/* Notice text for one part, control characters blanked; NULL: no memory. */
static char *
notice_text(const struct rewrite_strip_part *p)
{
    const char *name = p->filename ? p->filename : "(unnamed)";
    const char *why = p->reason ? p->reason : "removed by policy";
    static const char fmt1[] = "scanrelay removed the attachment \"";
    size_t len = sizeof(fmt1) + strlen(name) + strlen(why) + 8;
    char *t = malloc(len), *c;

    if (t == NULL)
        return NULL;
    strcpy(t, fmt1);
    strcat(t, name);
    strcat(t, "\": ");
    strcat(t, why);
    if (t[strlen(t) - 1] != '.')
        strcat(t, ".");
    for (c = t; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = ' ';
    return t;
}

/* Write text as quoted-printable lines (soft breaks before 76 columns). */
static int
write_qp(struct sink *k, const char *text, const char *eol)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t col = 0;

    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        char enc[3];
        size_t n;
        if (*c >= 0x80 || *c == '=' || (*c == ' ' && c[1] == '\0')) {
            enc[0] = '=';
            enc[1] = hex[*c >> 4];
            enc[2] = hex[*c & 15];
            n = 3;
        } else {
            enc[0] = (char)*c;
            n = 1;
        }
        if (col + n > 75) {
            if (sink_puts(k, "=") < 0 || sink_puts(k, eol) < 0)
                return -1;
            col = 0;
        }
        if (sink_write(k, enc, n) < 0)
            return -1;
        col += n;
    }
    return 0;
}

/* The replacement part for one (merged) range. */
static int
write_replacement(struct src *s, struct sink *k, const struct range *r,
                  const struct rewrite_strip_part *parts, const size_t *order, const char *eol,
                  unsigned char *buf)
{
    char *text[64];
    size_t nt = r->count < 64 ? r->count : 64, i;
    int mime_version, eightbit = 0, rc = -1;

    for (i = 0; i < nt; i++)
        text[i] = NULL;
    for (i = 0; i < nt; i++) {
        if ((text[i] = notice_text(&parts[order[r->first + i]])) == NULL) {
            errno = ENOMEM;
            goto out;
        }
        for (const unsigned char *c = (const unsigned char *)text[i]; *c; c++)
            if (*c >= 0x80)
                eightbit = 1;
    }

    if (filter_headers(s, k, r->begin, r->end, eol, buf, &mime_version) < 0)
        goto out;
    if (r->begin == 0 && !mime_version &&
        (sink_puts(k, "MIME-Version: 1.0") < 0 || sink_puts(k, eol) < 0))
        goto out;
    if (sink_puts(k, "Content-Type: text/plain; charset=utf-8") < 0 || sink_puts(k, eol) < 0 ||
        sink_puts(k, "Content-Disposition: inline") < 0 || sink_puts(k, eol) < 0 ||
        sink_puts(k, eightbit ? "Content-Transfer-Encoding: quoted-printable"
                              : "Content-Transfer-Encoding: 7bit") < 0 ||
        sink_puts(k, eol) < 0 || sink_puts(k, eol) < 0)
        goto out;
    for (i = 0; i < nt; i++) {
        if (i > 0 && sink_puts(k, eol) < 0)
            goto out;
        if (eightbit ? write_qp(k, text[i], eol) < 0 : sink_puts(k, text[i]) < 0)
            goto out;
    }
    /* Inside a multipart the line end before the boundary follows in the raw copy. */
    if (r->end == s->size && sink_puts(k, eol) < 0)
        goto out;
    rc = 0;
out:
    for (i = 0; i < nt; i++)
        free(text[i]);
    return rc;
}

/* Order: by begin, the outer (longer) range first, then as given. */
static int
cmp_order(const void *a, const void *b, void *arg)
{
    const struct rewrite_strip_part *parts = arg;
    size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
    const struct rewrite_strip_part *x = &parts[ia], *y = &parts[ib];

    if (x->raw_begin != y->raw_begin)
        return x->raw_begin < y->raw_begin ? -1 : 1;
    if (x->raw_end != y->raw_end)
        return x->raw_end > y->raw_end ? -1 : 1;
    return ia < ib ? -1 : ia > ib;
}

/* Sort and merge ranges. Returns the number of ranges, or -1 (EINVAL). */
static long
plan(const struct rewrite_strip_part *parts, size_t n, int64_t size, size_t *order,
     struct range *out)
{
    long nr = 0;

    for (size_t i = 0; i < n; i++) {
        if (parts[i].raw_begin < 0 || parts[i].raw_end < parts[i].raw_begin ||
            parts[i].raw_end > size) {
            errno = EINVAL;
            return -1;
        }
        order[i] = i;
    }
    qsort_r(order, n, sizeof(*order), cmp_order, (void *)(uintptr_t)parts);
    for (size_t i = 0; i < n; i++) {
        const struct rewrite_strip_part *p = &parts[order[i]];
        if (nr > 0 && p->raw_begin < out[nr - 1].end) {
            if (p->raw_end > out[nr - 1].end) {
                errno = EINVAL; /* partial overlap */
                return -1;
            }
            out[nr - 1].count++;
            continue;
        }
        if (nr > 0 && p->raw_begin == out[nr - 1].begin && p->raw_end == out[nr - 1].end) {
            out[nr - 1].count++; /* identical empty ranges */
            continue;
        }
        out[nr].begin = p->raw_begin;
        out[nr].end = p->raw_end;
        out[nr].first = i;
        out[nr].count = 1;
        nr++;
    }
    return nr;
}

int
rewrite_message(const struct rewrite_io *in, const char *const *lines, size_t nlines,
                const struct rewrite_strip_part *parts, size_t nparts, const struct rewrite_io *out)
{
    struct src s;
    struct sink *k = NULL;
    unsigned char *buf = NULL;
    size_t *order = NULL;
    struct range *ranges = NULL;
    const char *eol;
    long nr = 0;
    int64_t pos = 0;
    int rc = -1, saved;

    /* Sanity checks. */
    for (size_t i = 0; i < nlines; i++) {
        if (lines[i] == NULL || strpbrk(lines[i], "\r\n") != NULL) {
            errno = EINVAL;
            return -1;
        }
    }
    if (src_open(&s, in) < 0)
        return -1;

    /* Initialize. */
    k = malloc(sizeof(*k));
    buf = malloc(CHUNK);
    order = malloc((nparts ? nparts : 1) * sizeof(*order));
    ranges = malloc((nparts ? nparts : 1) * sizeof(*ranges));
    if (k == NULL || buf == NULL || order == NULL || ranges == NULL) {
        errno = ENOMEM;
        goto out;
    }
    k->io = out;
    k->len = 0;
    k->failed = 0;
    if ((nr = plan(parts, nparts, s.size, order, ranges)) < 0)
        goto out;
    eol = detect_eol(&s, buf);

    /* Header lines, then the message with its ranges replaced. */
    for (size_t i = 0; i < nlines; i++)
        if (sink_puts(k, lines[i]) < 0 || sink_puts(k, eol) < 0)
            goto out;
    for (long i = 0; i < nr; i++) {
        if (copy_range(&s, k, pos, ranges[i].begin, buf) < 0)
            goto out;
        if (write_replacement(&s, k, &ranges[i], parts, order, eol, buf) < 0)
            goto out;
        pos = ranges[i].end;
    }
    if (copy_range(&s, k, pos, s.size, buf) < 0)
        goto out;
    if (sink_flush(k) < 0)
        goto out;
    rc = 0;
out:
    saved = errno;
    if (rc < 0 && k != NULL && k->failed)
        saved = k->failed;
    free(k);
    free(buf);
    free(order);
    free(ranges);
    errno = saved;
    return rc;
}

int
rewrite_prepend(const struct rewrite_io *in, const char *const *lines, size_t nlines,
                const struct rewrite_io *out)
{
    return rewrite_message(in, lines, nlines, NULL, 0, out);
}

int
rewrite_strip(const struct rewrite_io *in, const struct rewrite_strip_part *parts, size_t nparts,
              const struct rewrite_io *out)
{
    return rewrite_message(in, NULL, 0, parts, nparts, out);
}
