/*
 * mime.c - the message model: one GMime 3 parse of the raw message, then
 * a depth-first walk that hands every leaf part, transfer-decoded, to a
 * callback.
 *
 * Public calls: mime_parse_mem, mime_parse_fd, mime_free, mime_raw,
 * mime_subject, mime_from, mime_message_id, mime_limits_hit, mime_walk,
 * mime_global_init, mime_global_shutdown.
 *
 * The raw message is one contiguous buffer: the caller's (parse_mem, not
 * copied), a read-only mapping of the file (parse_fd), or, for a pipe, a
 * buffer read here. GMime parses it through a non-owning memory stream with
 * persist-stream on, so each part's content is a substream of that buffer:
 * its bounds are the body's byte offsets, and header offsets come from
 * g_mime_header_get_offset. A leaf's raw range runs from its first header
 * (for a message body: the message's first header) to the end of its body,
 * the CRLF before the next boundary excluded, so a rewrite can replace the
 * range and keep the boundary lines intact.
 *
 * Decoding: base64 and quoted-printable by GMime's decoders (base64 is also
 * checked here, since GMime skips junk silently: decode_error), uuencode
 * (Content-Transfer-Encoding: x-uuencode, and "begin NNN name" blocks found
 * inside text parts, handed out as separate "embedded" parts) and BinHex 4.0
 * (which GMime lacks) by small decoders here. 7bit/8bit/binary bodies are
 * passed as a pointer into the raw buffer, never copied. At most one
 * decoded part is held at a time, freed after its callback.
 *
 * A message/rfc822 part sent base64 or quoted-printable encoded is a leaf
 * for GMime: it is handed out as is, then its decoded text is parsed and
 * walked too (parts flagged embedded, raw range that of the encoded part).
 * Every limit that sub-parse or its walk hits is added to the message's
 * own flags: a message not walked whole never looks complete.
 *
 * A part whose headers are not followed by a blank line has no body for
 * GMime (the rest reads as broken header lines); its body is taken from
 * the first line that is not a header field, as lenient readers do, up to
 * the next boundary-like line, and flagged decode_error.
 *
 * Names and the subject are decoded to UTF-8 by GMime (RFC 2047, RFC 2231,
 * iconv); raw 8-bit header text is tried as UTF-8, EUC-JP, CP932
 * (Shift_JIS), ISO-8859-1 in that order.
 *
 * Limits: max_depth (multipart and message/rfc822 nesting) and max_parts
 * (leaf parts handed out) set MIME_LIMIT_* (checked on the tree right after
 * parsing, and again by the walk) and stop the walk there. Before
 * GMime sees the message, a cheap scan counts boundary-like lines ("--x");
 * past 4 * max_parts + 1024 of them, GMime is given only the prefix before
 * that line and MIME_LIMIT_PARTS is set, so a message of millions of empty
 * parts cannot make GMime build millions of objects. GMime itself stops
 * nesting at 1024 levels.
 *
 * Failure: parse calls return NULL with a message in err; nothing aborts on
 * bad input. Our allocations are checked; GLib's (inside GMime) abort on
 * out of memory, as GLib does.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmime/gmime.h>

#include "mime.h"

#define DEFAULT_MAX_DEPTH 100
#define DEFAULT_MAX_PARTS 10000
#define MAX_MEM_FD_READ ((size_t)1 << 31) /* a pipe read into memory */

struct mime_msg {
    const unsigned char *raw; /* the whole message */
    size_t raw_len;
    size_t parse_len; /* prefix given to GMime (== raw_len unless capped) */
    void *map;        /* mmap'd file, or NULL */
    size_t map_len;
    unsigned char *owned; /* buffer read from a pipe, or NULL */

    GByteArray *ba; /* non-owning view of raw for the mem stream */
    GMimeStream *stream;
    GMimeParserOptions *opts;
    GMimeMessage *msg;

    int max_depth, max_parts;
    unsigned limits;
    char *from; /* g_malloc'd */
    char *subject; /* g_malloc'd, decoded by decode_rfc2047() */
};

struct walk {
    struct mime_msg *m;
    int (*cb)(void *arg, const struct mime_part_info *pi);
    void *arg;
    int nleaf;
    int rc; /* non-zero: stop */
    /* Walking a message decoded from an encoded message/rfc822 part: that part. */
    const struct mime_part_info *outer;
};

static const char *fallback_charsets[] = {"UTF-8", "EUC-JP", "CP932", "ISO-8859-1", NULL};

static void
set_err(char *err, size_t errlen, const char *what)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", what);
}

/* Boundary-like line: "--" then a non-blank character, short enough to be a delimiter. */
static int
boundary_like(const unsigned char *p, size_t linelen)
{
    return linelen >= 3 && linelen <= 80 && p[0] == '-' && p[1] == '-' && p[2] != ' ' &&
           p[2] != '\t' && p[2] != '\r' && p[2] != '\n';
}

/* Length of the prefix GMime may parse: cut before the cap-th boundary-like line. */
static size_t
parse_budget(const unsigned char *raw, size_t len, long cap, int *capped)
{
    const unsigned char *p = raw, *end = raw + len, *nl;
    long n = 0;

    *capped = 0;
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (boundary_like(p, ll) && ++n > cap) {
            *capped = 1;
            return (size_t)(p - raw);
        }
        if (nl == NULL)
            break;
        /* Only a line that starts with "--" can count: jump to the next one
         * (by its '-': base64 bodies have none, memchr skips them fast). */
        for (p = nl + 1; p < end; p++) {
            if ((p = memchr(p, '-', (size_t)(end - p))) == NULL)
                return len;
            if (p[-1] == '\n' && p + 1 < end && p[1] == '-')
                break;
        }
    }
    return len;
}

/* Structure only (no decoding): set the limit flags the walk will hit. */
static void
precheck(struct mime_msg *m, GMimeObject *obj, int depth, int *leaves)
{
    if (obj == NULL)
        return;
    if (depth > m->max_depth) {
        m->limits |= MIME_LIMIT_DEPTH;
        return;
    }
    if (GMIME_IS_MULTIPART(obj)) {
        int n = g_mime_multipart_get_count(GMIME_MULTIPART(obj));
        if (n == 0 && ++*leaves > m->max_parts)
            m->limits |= MIME_LIMIT_PARTS;
        for (int i = 0; i < n && *leaves <= m->max_parts; i++)
            precheck(m, g_mime_multipart_get_part(GMIME_MULTIPART(obj), i), depth + 1, leaves);
    } else if (GMIME_IS_MESSAGE_PART(obj)) {
        GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
        if (inner != NULL)
            precheck(m, g_mime_message_get_mime_part(inner), depth + 1, leaves);
    } else if (++*leaves > m->max_parts) {
        m->limits |= MIME_LIMIT_PARTS;
    }
}

/* Common part of both parse calls: raw/raw_len are set. */
static struct mime_msg *
parse_common(struct mime_msg *m, int max_depth, int max_parts, char *err, size_t errlen)
{
    GMimeParser *parser;
    int capped;

    m->max_depth = max_depth > 0 ? max_depth : DEFAULT_MAX_DEPTH;
    m->max_parts = max_parts > 0 ? max_parts : DEFAULT_MAX_PARTS;
    if (m->raw_len > G_MAXUINT) {
        set_err(err, errlen, "message too large to parse (> 4 GB)");
        mime_free(m);
        return NULL;
    }
    m->parse_len = parse_budget(m->raw, m->raw_len, 4L * m->max_parts + 1024, &capped);
    if (capped)
        m->limits |= MIME_LIMIT_PARTS;

    /*
     * A GByteArray that only points at raw: the stream does not own it and
     * mime_free releases the wrapper without the data. GMime only reads it.
     */
    m->ba = g_byte_array_new_take((guint8 *)(uintptr_t)m->raw, m->parse_len);
    m->stream = g_mime_stream_mem_new_with_byte_array(m->ba);
    g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(m->stream), FALSE);

    m->opts = g_mime_parser_options_new();
    g_mime_parser_options_set_fallback_charsets(m->opts, fallback_charsets);
    g_mime_parser_options_set_rfc2047_compliance_mode(m->opts, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_parameter_compliance_mode(m->opts, GMIME_RFC_COMPLIANCE_LOOSE);

    parser = g_mime_parser_new_with_stream(m->stream);
    g_mime_parser_set_persist_stream(parser, TRUE);
    g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
    m->msg = g_mime_parser_construct_message(parser, m->opts);
    g_object_unref(parser);
    if (m->msg != NULL) {
        int leaves = 0;
        precheck(m, g_mime_message_get_mime_part(m->msg), 0, &leaves);
    }
    /* m->msg == NULL: unparseable; the walk then hands out the whole message as text. */
    return m;
}

struct mime_msg *
mime_parse_mem(const char *buf, size_t len, int max_depth, int max_parts, char *err, size_t errlen)
{
    struct mime_msg *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    m->raw = (const unsigned char *)(buf ? buf : "");
    m->raw_len = buf ? len : 0;
    return parse_common(m, max_depth, max_parts, err, errlen);
}

/* Read a non-seekable fd into memory. 0 ok, -1 error (errno). */
static int
read_all(int fd, unsigned char **out, size_t *outlen)
{
    size_t cap = 65536, len = 0;
    unsigned char *buf = malloc(cap), *nb;
    ssize_t n;

    if (buf == NULL)
        return -1;
    for (;;) {
        if (len == cap) {
            if (cap >= MAX_MEM_FD_READ) {
                free(buf);
                errno = EFBIG;
                return -1;
            }
            nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    *out = buf;
    *outlen = len;
    return 0;
}

struct mime_msg *
mime_parse_fd(int fd, int max_depth, int max_parts, char *err, size_t errlen)
{
    struct mime_msg *m = calloc(1, sizeof(*m));
    struct stat st;
    char ebuf[128];

    if (m == NULL) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        if (st.st_size > 0) {
            m->map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (m->map == MAP_FAILED) {
                m->map = NULL;
                snprintf(ebuf, sizeof(ebuf), "mmap: %s", strerror(errno));
                set_err(err, errlen, ebuf);
                free(m);
                return NULL;
            }
            m->map_len = (size_t)st.st_size;
            m->raw = m->map;
            m->raw_len = m->map_len;
        } else {
            m->raw = (const unsigned char *)"";
        }
    } else {
        if (read_all(fd, &m->owned, &m->raw_len) < 0) {
            snprintf(ebuf, sizeof(ebuf), "read: %s", strerror(errno));
            set_err(err, errlen, ebuf);
            free(m);
            return NULL;
        }
        m->raw = m->owned;
    }
    return parse_common(m, max_depth, max_parts, err, errlen);
}

void
mime_free(struct mime_msg *m)
{
    if (m == NULL)
        return;
    if (m->msg)
        g_object_unref(m->msg);
    if (m->stream)
        g_object_unref(m->stream);
    if (m->ba)
        g_byte_array_free(m->ba, FALSE); /* the wrapper only: data is raw */
    if (m->opts)
        g_mime_parser_options_free(m->opts);
    g_free(m->from);
    g_free(m->subject);
    if (m->map)
        munmap(m->map, m->map_len);
    free(m->owned);
    free(m);
}

const char *
mime_raw(const struct mime_msg *m, size_t *len)
{
    if (len)
        *len = m->raw_len;
    return (const char *)m->raw;
}

/*
 * RFC 2047 decoding of a raw header value into UTF-8 (g_malloc'd).
 *
 * GMime 3.2's decoder drops everything after an encoded word that ends
 * in base64 '=' padding when the next word has the same charset (so long
 * folded Japanese subjects lost their end). Here each word is decoded to
 * bytes and adjacent words of one charset are joined before the charset
 * conversion (a character may be split across words); white space
 * between encoded words is dropped, folding removed; raw 8-bit text is
 * taken as UTF-8 when valid, else through the fallback charsets.
 */
static void
flush_bytes(GString *out, GByteArray *pend, const char *charset)
{
    if (pend->len == 0)
        return;
    gsize w = 0;
    gchar *u = NULL;
    if (charset && g_ascii_strcasecmp(charset, "UTF-8") != 0)
        u = g_convert((const gchar *)pend->data, (gssize)pend->len, "UTF-8", charset, NULL, &w,
                      NULL);
    if (u == NULL && g_utf8_validate((const gchar *)pend->data, (gssize)pend->len, NULL)) {
        g_string_append_len(out, (const gchar *)pend->data, (gssize)pend->len);
    } else if (u == NULL) {
        for (int i = 1; u == NULL && fallback_charsets[i]; i++)
            u = g_convert((const gchar *)pend->data, (gssize)pend->len, "UTF-8",
                          fallback_charsets[i], NULL, &w, NULL);
    }
    if (u) {
        g_string_append_len(out, u, (gssize)w);
        g_free(u);
    }
    g_byte_array_set_size(pend, 0);
}

/*
 * A file name that is not valid UTF-8 (raw 8-bit bytes: an RFC 2231 value
 * without a charset, a "begin 644" line), converted like raw header text;
 * g_malloc'd, or NULL when name is valid UTF-8 already.
 */
static char *
name_utf8(const char *name)
{
    if (g_utf8_validate(name, -1, NULL))
        return NULL;
    GString *u = g_string_new(NULL);
    GByteArray *raw = g_byte_array_new();
    g_byte_array_append(raw, (const guint8 *)name, (guint)strlen(name));
    flush_bytes(u, raw, NULL);
    g_byte_array_free(raw, TRUE);
    return g_string_free(u, FALSE);
}

static int
b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decode the text of one encoded word (B or Q) into pend. */
static void
decode_word(GByteArray *pend, char enc, const char *t, size_t n)
{
    if (enc == 'B' || enc == 'b') {
        unsigned acc = 0;
        int bits = 0;
        for (size_t i = 0; i < n; i++) {
            int v = b64val((unsigned char)t[i]);
            if (v < 0)
                continue; /* '=' padding, stray characters */
            acc = (acc << 6) | (unsigned)v;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                guint8 c = (guint8)((acc >> bits) & 0xff);
                g_byte_array_append(pend, &c, 1);
            }
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        guint8 c = (guint8)t[i];
        if (c == '_') {
            c = ' ';
        } else if (c == '=' && i + 2 < n && g_ascii_isxdigit(t[i + 1]) &&
                   g_ascii_isxdigit(t[i + 2])) {
            c = (guint8)(g_ascii_xdigit_value(t[i + 1]) * 16 + g_ascii_xdigit_value(t[i + 2]));
            i += 2;
        }
        g_byte_array_append(pend, &c, 1);
    }
}

/* An encoded word at p: sets charset, encoding, text and the end. 0 when not one. */
static int
parse_word(const char *p, char *charset, size_t cslen, char *enc, const char **text,
           size_t *tlen, const char **end)
{
    if (p[0] != '=' || p[1] != '?')
        return 0;
    const char *q1 = strchr(p + 2, '?');
    if (q1 == NULL || q1 == p + 2 || (size_t)(q1 - (p + 2)) >= cslen)
        return 0;
    if (!strchr("BbQq", q1[1]) || q1[1] == '\0' || q1[2] != '?')
        return 0;
    const char *t = q1 + 3, *e = strstr(t, "?=");
    if (e == NULL)
        return 0;
    for (const char *c = t; c < e; c++)
        if (*c == ' ' || *c == '\t' || *c == '\r' || *c == '\n')
            return 0;
    memcpy(charset, p + 2, (size_t)(q1 - (p + 2)));
    charset[q1 - (p + 2)] = '\0';
    char *star = strchr(charset, '*'); /* RFC 2231 language */
    if (star)
        *star = '\0';
    *enc = q1[1];
    *text = t;
    *tlen = (size_t)(e - t);
    *end = e + 2;
    return 1;
}

static char *
decode_rfc2047(const char *raw)
{
    GString *out = g_string_new(NULL);
    GByteArray *pend = g_byte_array_new();
    char pcs[64] = "", cs[64];
    const char *p = raw;
    int prev_word = 0;

    while (*p == ' ' || *p == '\t')
        p++;
    while (*p) {
        char enc;
        const char *text, *end;
        size_t tlen;
        if (parse_word(p, cs, sizeof(cs), &enc, &text, &tlen, &end)) {
            if (pend->len && g_ascii_strcasecmp(cs, pcs) != 0)
                flush_bytes(out, pend, pcs[0] ? pcs : NULL);
            snprintf(pcs, sizeof(pcs), "%s", cs);
            decode_word(pend, enc, text, tlen);
            p = end;
            prev_word = 1;
            /* White space up to another encoded word is dropped. */
            const char *q = p;
            while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
                q++;
            if (q != p && q[0] == '=' && q[1] == '?' &&
                parse_word(q, cs, sizeof(cs), &enc, &text, &tlen, &end))
                p = q;
            continue;
        }
        if (prev_word) {
            flush_bytes(out, pend, pcs[0] ? pcs : NULL);
            pcs[0] = '\0';
            prev_word = 0;
        }
        if (*p == '\r' || *p == '\n') { /* unfold */
            p++;
            continue;
        }
        guint8 c = (guint8)*p++;
        g_byte_array_append(pend, &c, 1); /* raw text: UTF-8 or a fallback charset */
    }
    flush_bytes(out, pend, pcs[0] ? pcs : NULL);
    g_byte_array_free(pend, TRUE);
    return g_string_free(out, FALSE);
}

const char *
mime_subject(struct mime_msg *m)
{
    if (m->subject)
        return m->subject;
    const char *raw = NULL;
    GMimeHeaderList *hl = m->msg ? g_mime_object_get_header_list(GMIME_OBJECT(m->msg)) : NULL;
    GMimeHeader *h = hl ? g_mime_header_list_get_header(hl, "Subject") : NULL;
    if (h)
        raw = g_mime_header_get_raw_value(h);
    if (raw) {
        m->subject = decode_rfc2047(raw);
    } else {
        const char *s = m->msg ? g_mime_message_get_subject(m->msg) : NULL;
        m->subject = g_strdup(s ? s : "");
    }
    return m->subject;
}

const char *
mime_from(struct mime_msg *m)
{
    InternetAddressList *l;

    if (m->from == NULL && m->msg && (l = g_mime_message_get_from(m->msg)) != NULL &&
        internet_address_list_length(l) > 0)
        m->from = internet_address_list_to_string(l, NULL, FALSE);
    return m->from ? m->from : "";
}

const char *
mime_message_id(struct mime_msg *m)
{
    const char *s = m->msg ? g_mime_message_get_message_id(m->msg) : NULL;
    return s ? s : "";
}

unsigned
mime_limits_hit(const struct mime_msg *m)
{
    return m->limits;
}

/*
 * Decoders.
 */

/* Growable output buffer for decoders; -1 when out of memory. */
struct obuf {
    unsigned char *p;
    size_t len, cap;
};

static int
obuf_reserve(struct obuf *o, size_t more)
{
    unsigned char *np;
    size_t ncap;

    if (o->len + more <= o->cap)
        return 0;
    ncap = o->cap ? o->cap : 256;
    while (ncap < o->len + more)
        ncap *= 2;
    np = realloc(o->p, ncap);
    if (np == NULL)
        return -1;
    o->p = np;
    o->cap = ncap;
    return 0;
}

/*
 * Base64 in one pass: decode well-formed input (the alphabet, whitespace,
 * padding only at the end) straight into o, four characters at a time.
 * Returns 0 decoded, 1 malformed (o is left as it was: the caller then
 * decodes the way GMime does, leniently, and marks the part), -1 no memory.
 * The value of a character already shifted into place for each of the
 * four positions of a group; B64_NOT (not in the alphabet) does not fit
 * in 24 bits.
 */
#define B64_NOT 0x80000000u
static uint32_t b64_at[4][256];

static void
b64_init(void)
{
    static const char alpha[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    for (int c = 0; c < 256; c++)
        for (int k = 0; k < 4; k++)
            b64_at[k][c] = B64_NOT;
    for (int i = 0; i < 64; i++)
        for (int k = 0; k < 4; k++)
            b64_at[k][(unsigned char)alpha[i]] = (uint32_t)i << (18 - 6 * k);
}

static int
base64_decode_strict(const unsigned char *p, size_t len, struct obuf *o)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    unsigned char *out;
    uint32_t acc = 0;
    size_t i = 0;
    int n = 0, pad = 0;

    pthread_once(&once, b64_init);
    if (obuf_reserve(o, len / 4 * 3 + 3) < 0)
        return -1;
    out = o->p + o->len;
    while (i < len) {
        if (n == 0 && pad == 0) {
            /* The common case: whole groups of four alphabet characters. */
            while (i + 4 <= len) {
                acc = b64_at[0][p[i]] | b64_at[1][p[i + 1]] | b64_at[2][p[i + 2]] |
                      b64_at[3][p[i + 3]];
                if (acc & B64_NOT)
                    break;
                out[0] = (unsigned char)(acc >> 16);
                out[1] = (unsigned char)(acc >> 8);
                out[2] = (unsigned char)acc;
                out += 3;
                i += 4;
            }
            acc = 0;
            if (i >= len)
                break;
        }
        unsigned char c = p[i++];
        uint32_t v = b64_at[n][c];
        if (v != B64_NOT) {
            if (pad > 0) /* data after padding */
                return 1;
            acc |= v;
            if (++n == 4) {
                out[0] = (unsigned char)(acc >> 16);
                out[1] = (unsigned char)(acc >> 8);
                out[2] = (unsigned char)acc;
                out += 3;
                n = 0;
                acc = 0;
            }
        } else if (c == '=') {
            pad++;
        } else if (c != '\r' && c != '\n' && c != ' ' && c != '\t') {
            return 1;
        }
    }
    /* What is left: nothing, or two or three characters with their padding. */
    if (n == 2 && pad == 2) {
        *out++ = (unsigned char)(acc >> 16);
    } else if (n == 3 && pad == 1) {
        *out++ = (unsigned char)(acc >> 16);
        *out++ = (unsigned char)(acc >> 8);
    } else if (n != 0 || pad != 0) {
        return 1;
    }
    o->len = (size_t)(out - o->p);
    return 0;
}

/* GMime's decoder (base64, quoted-printable) over the whole input at once. */
static int
gmime_decode(GMimeContentEncoding enc, const unsigned char *in, size_t len, struct obuf *o)
{
    GMimeEncoding st;
    size_t n;

    g_mime_encoding_init_decode(&st, enc);
    if (obuf_reserve(o, g_mime_encoding_outlen(&st, len) + 16) < 0)
        return -1;
    n = g_mime_encoding_flush(&st, (const char *)in, len, (char *)o->p + o->len);
    o->len += n;
    return 0;
}

#define UU_DEC(c) ((unsigned)((c) - ' ') & 077)

/* Decode uuencoded lines in [p, end) up to "end"; returns 1 if malformed lines were seen. */
static int
uu_decode_lines(const unsigned char *p, const unsigned char *end, struct obuf *o, int *oom,
                const unsigned char **stop)
{
    const unsigned char *nl, *q;
    int bad = 0;

    *oom = 0;
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        const unsigned char *le = nl ? nl : end;
        size_t ll = (size_t)(le - p);
        if (ll > 0 && p[ll - 1] == '\r')
            ll--;
        if (ll >= 3 && memcmp(p, "end", 3) == 0 && (ll == 3 || p[3] == ' ' || p[3] == '\t')) {
            *stop = nl ? nl + 1 : end;
            return bad;
        }
        if (ll > 0) {
            unsigned n = UU_DEC(p[0]);
            if (obuf_reserve(o, n + 3) < 0) {
                *oom = 1;
                return bad;
            }
            for (q = p + 1; n > 0; q += 4) {
                unsigned char c[4];
                for (int k = 0; k < 4; k++) {
                    const unsigned char *cp = q + k;
                    if (cp < p + ll) {
                        if (*cp < ' ' || *cp > '`')
                            bad = 1;
                        c[k] = (unsigned char)UU_DEC(*cp);
                    } else {
                        c[k] = 0;
                        bad = 1; /* short line */
                    }
                }
                unsigned char b[3] = {(unsigned char)(c[0] << 2 | c[1] >> 4),
                                      (unsigned char)(c[1] << 4 | c[2] >> 2),
                                      (unsigned char)(c[2] << 6 | c[3])};
                for (int k = 0; k < 3 && n > 0; k++, n--)
                    o->p[o->len++] = b[k];
                if (q + 4 >= p + ll && n > 0) {
                    bad = 1;
                    break;
                }
            }
        }
        p = nl ? nl + 1 : end;
    }
    *stop = end;
    return 1; /* no "end" line */
}

/*
 * Find "begin MODE NAME" at a line start in [p, end). Returns the start of
 * that line or NULL; *data is the line after it, name copied to namebuf.
 */
static const unsigned char *
uu_find_begin(const unsigned char *p, const unsigned char *end, char *namebuf, size_t namelen,
              const unsigned char **data)
{
    const unsigned char *line = p, *nl, *q;

    while (line < end) {
        nl = memchr(line, '\n', (size_t)(end - line));
        const unsigned char *le = nl ? nl : end;
        if (le - line > 10 && memcmp(line, "begin ", 6) == 0) {
            q = line + 6;
            int digits = 0;
            while (q < le && *q >= '0' && *q <= '7') {
                q++;
                digits++;
            }
            if (digits >= 3 && digits <= 4 && q < le && *q == ' ') {
                q++;
                const unsigned char *ne = le;
                while (ne > q && (ne[-1] == '\r' || ne[-1] == ' ' || ne[-1] == '\t'))
                    ne--;
                if (ne > q) {
                    size_t n = (size_t)(ne - q);
                    if (n >= namelen)
                        n = namelen - 1;
                    memcpy(namebuf, q, n);
                    namebuf[n] = '\0';
                    *data = nl ? nl + 1 : end;
                    return line;
                }
            }
        }
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    return NULL;
}

/*
 * BinHex 4.0 (RFC 1741), absent from GMime. Decodes the data fork.
 * Returns 0 ok, 1 malformed (o holds what could be decoded), -1 no memory.
 */
static const char binhex_alpha[] =
    "!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";

static int
binhex_decode(const unsigned char *p, size_t len, struct obuf *o, char *namebuf, size_t namelen)
{
    static const char marker[] = "(This file must be converted with BinHex";
    signed char map[256];
    const unsigned char *end = p + len, *s;
    struct obuf raw = {0};
    unsigned acc = 0;
    int bits = 0, last = -1, rle = 0, rc = 0;

    namebuf[0] = '\0';
    memset(map, -1, sizeof(map));
    for (int i = 0; binhex_alpha[i]; i++)
        map[(unsigned char)binhex_alpha[i]] = (signed char)i;

    /* Find the marker, then the first ':' after it. */
    s = p;
    while (s < end && (size_t)(end - s) >= sizeof(marker) - 1 &&
           memcmp(s, marker, sizeof(marker) - 1) != 0)
        s++;
    if ((size_t)(end - s) < sizeof(marker) - 1)
        return 1;
    s = memchr(s, ':', (size_t)(end - s));
    if (s == NULL)
        return 1;
    s++;

    /* 6-bit decode with run-length expansion (0x90 n) into raw. */
    for (; s < end && *s != ':'; s++) {
        if (*s == '\r' || *s == '\n' || *s == ' ' || *s == '\t')
            continue;
        if (map[*s] < 0) {
            rc = 1;
            break;
        }
        acc = (acc << 6) | (unsigned)map[*s];
        bits += 6;
        if (bits < 8)
            continue;
        bits -= 8;
        unsigned char b = (unsigned char)(acc >> bits);
        acc &= (1u << bits) - 1;
        if (rle) {
            rle = 0;
            if (b == 0) {
                if (obuf_reserve(&raw, 1) < 0)
                    goto oom;
                raw.p[raw.len++] = 0x90;
                last = 0x90;
            } else if (last >= 0) {
                if (obuf_reserve(&raw, b) < 0)
                    goto oom;
                for (unsigned k = 1; k < b; k++)
                    raw.p[raw.len++] = (unsigned char)last;
            }
            continue;
        }
        if (b == 0x90) {
            rle = 1;
            continue;
        }
        if (obuf_reserve(&raw, 1) < 0)
            goto oom;
        raw.p[raw.len++] = b;
        last = b;
    }
    if (s >= end)
        rc = 1;

    /* Header: namelen, name, 0, type 4, creator 4, flags 2, dlen 4, rlen 4, crc 2. */
    if (raw.len < 1 || raw.len < (size_t)1 + raw.p[0] + 1 + 4 + 4 + 2 + 4 + 4 + 2) {
        free(raw.p);
        return 1;
    }
    size_t nl = raw.p[0], h = 1 + nl + 1 + 4 + 4 + 2;
    size_t n = nl < namelen - 1 ? nl : namelen - 1;
    memcpy(namebuf, raw.p + 1, n);
    namebuf[n] = '\0';
    uint32_t dlen = (uint32_t)raw.p[h] << 24 | (uint32_t)raw.p[h + 1] << 16 |
                    (uint32_t)raw.p[h + 2] << 8 | raw.p[h + 3];
    h += 4 + 4 + 2;
    size_t avail = raw.len - h;
    if (dlen > avail) {
        rc = 1;
        dlen = (uint32_t)avail;
    }
    if (obuf_reserve(o, dlen + 1) < 0)
        goto oom;
    memcpy(o->p + o->len, raw.p + h, dlen);
    o->len += dlen;
    free(raw.p);
    return rc;
oom:
    free(raw.p);
    return -1;
}

/*
 * The walk.
 */

/* Lowercase "type/subtype" into buf. */
static void
mime_type_of(GMimeObject *obj, char *buf, size_t len)
{
    GMimeContentType *ct = g_mime_object_get_content_type(obj);
    const char *t = ct ? g_mime_content_type_get_media_type(ct) : NULL;
    const char *s = ct ? g_mime_content_type_get_media_subtype(ct) : NULL;

    snprintf(buf, len, "%s/%s", t ? t : "application", s ? s : "octet-stream");
    for (char *c = buf; *c; c++)
        *c = g_ascii_tolower(*c);
}

/* Lowest header offset of obj (and of its owning message, for a message body), or -1. */
static int64_t
headers_begin(GMimeObject *obj, GMimeObject *owner)
{
    int64_t best = -1;
    GMimeObject *objs[2] = {obj, owner};

    for (int k = 0; k < 2; k++) {
        if (objs[k] == NULL)
            continue;
        GMimeHeaderList *hl = g_mime_object_get_header_list(objs[k]);
        int n = hl ? g_mime_header_list_get_count(hl) : 0;
        for (int i = 0; i < n; i++) {
            gint64 off = g_mime_header_get_offset(g_mime_header_list_get_header_at(hl, i));
            if (off >= 0 && (best < 0 || off < best))
                best = off;
        }
    }
    return best;
}

/* Start of the body after a header block beginning at hb (the blank line's end), or -1. */
static int64_t
body_after_headers(const struct mime_msg *m, int64_t hb)
{
    const unsigned char *p = m->raw + hb, *end = m->raw + m->parse_len, *nl;

    if (hb < 0)
        return -1;
    while (p < end) {
        if (*p == '\n')
            return (p + 1) - m->raw;
        if (*p == '\r' && p + 1 < end && p[1] == '\n')
            return (p + 2) - m->raw;
        nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    return (int64_t)m->parse_len;
}

/*
 * The body of a part whose headers are not followed by a blank line, for
 * which GMime has no content (it reads the rest as broken header lines).
 * A lenient reader (Python's email, some mail clients) starts the body at
 * the first line after hb that is neither a header field nor a folded
 * continuation, so that is scanned: from there up to the next
 * boundary-like line (the CRLF before it excluded). 0 with *bb, *be set;
 * -1 when a boundary-like line or the end comes first (no body at all).
 */
static int
unseparated_body(const struct mime_msg *m, int64_t hb, int64_t *bb, int64_t *be)
{
    const unsigned char *p = m->raw + hb, *end = m->raw + m->parse_len, *body = NULL;

    while (p < end) {
        const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
        if (body == NULL) {
            size_t k = 0;
            while (k < n && p[k] > 32 && p[k] < 127 && p[k] != ':')
                k++;
            if (boundary_like(p, n))
                return -1;
            if (!(p[0] == ' ' || p[0] == '\t' || (k > 0 && k < n && p[k] == ':')))
                body = p;
        }
        if (body != NULL && p != body && boundary_like(p, n))
            break;
        p += n;
    }
    if (body == NULL)
        return -1;
    if (p > body && p[-1] == '\n')
        p--;
    if (p > body && p[-1] == '\r')
        p--;
    *bb = body - m->raw;
    *be = p - m->raw;
    return 0;
}

/* "dir/name" (or "name") into a new string; NULL when out of memory. */
static char *
join_path(const char *dir, const char *name)
{
    size_t dl = dir ? strlen(dir) : 0, nl = strlen(name);
    char *s = malloc(dl + 1 + nl + 1);

    if (s == NULL)
        return NULL;
    if (dl) {
        memcpy(s, dir, dl);
        s[dl] = '/';
        memcpy(s + dl + 1, name, nl + 1);
    } else {
        memcpy(s, name, nl + 1);
    }
    return s;
}

/* Hand one part to the callback; counts against max_parts. */
static int
emit(struct walk *w, struct mime_part_info *pi)
{
    if (w->nleaf >= w->m->max_parts) {
        w->m->limits |= MIME_LIMIT_PARTS;
        w->rc = -2; /* stop, but mime_walk returns 0 */
        return -1;
    }
    if (w->outer != NULL) {
        /* Offsets are in the decoded message: report the encoded part's range. */
        pi->raw_begin = w->outer->raw_begin;
        pi->raw_end = w->outer->raw_end;
        pi->body_begin = w->outer->body_begin;
        pi->embedded = 1;
    }
    pi->index = ++w->nleaf;
    if ((w->rc = w->cb(w->arg, pi)) != 0)
        return -1;
    return 0;
}

static int
oom(struct walk *w)
{
    w->rc = -1;
    return -1;
}

/* Hand out uuencoded and BinHex blocks found inside a decoded text part. */
static int
emit_embedded(struct walk *w, const struct mime_part_info *text, const char *dir)
{
    const unsigned char *p = text->data, *end = text->data + text->len, *blk, *data, *stop;
    char name[256];
    int bad, nomem;

    while ((blk = uu_find_begin(p, end, name, sizeof(name), &data)) != NULL) {
        struct obuf o = {0};
        struct mime_part_info pi = *text;
        char *path;

        bad = uu_decode_lines(data, end, &o, &nomem, &stop);
        if (nomem) {
            free(o.p);
            return oom(w);
        }
        char *uname = name_utf8(name);
        if ((path = join_path(dir, uname ? uname : name)) == NULL) {
            g_free(uname);
            free(o.p);
            return oom(w);
        }
        pi.content_type = "application/octet-stream";
        pi.filename = uname ? uname : name;
        pi.path = path;
        pi.data = o.p ? o.p : (const unsigned char *)"";
        pi.len = o.len;
        pi.encoded_len = stop - blk;
        pi.decode_error = bad;
        pi.embedded = 1;
        int r = emit(w, &pi);
        g_free(uname);
        free(path);
        free(o.p);
        if (r < 0)
            return -1;
        p = stop;
    }
    return 0;
}

static int walk_object(struct walk *w, GMimeObject *obj, GMimeObject *owner, int depth,
                       const char *dir, const char *prefix, int is_child);

/*
 * A message/rfc822 part GMime left as a leaf because it was base64 or
 * quoted-printable encoded: parse the decoded message and walk it too.
 */
static int
walk_encoded_message(struct walk *w, const struct mime_part_info *pi, int depth)
{
    struct mime_msg *sub;
    struct walk w2;
    char err[64];
    GMimeObject *top;

    if (depth + 1 > w->m->max_depth) {
        w->m->limits |= MIME_LIMIT_DEPTH;
        return 0;
    }
    sub = mime_parse_mem((const char *)pi->data, pi->len, w->m->max_depth, w->m->max_parts, err,
                         sizeof(err));
    if (sub == NULL)
        return oom(w);
    /*
     * Keep what the sub-parse found: a cut before GMime (boundary-like
     * lines) or a structure past the limits means parts of the forwarded
     * message are never walked, and that must reach this message's verdict.
     * (Its own precheck counts from zero, so it never flags more than the
     * walk against this message's count would.)
     */
    top = sub->msg ? g_mime_message_get_mime_part(sub->msg) : NULL;
    w2 = *w;
    w2.m = sub;
    if (w->outer == NULL)
        w2.outer = pi;
    if (top != NULL)
        walk_object(&w2, top, GMIME_OBJECT(sub->msg), depth + 1, pi->path, pi->section, 0);
    w->nleaf = w2.nleaf;
    w->rc = w2.rc;
    w->m->limits |= sub->limits;
    mime_free(sub);
    return w->rc != 0 ? -1 : 0;
}

/* A leaf: decode, hand out, then any blocks embedded in a text body. */
static int
walk_leaf(struct walk *w, GMimePart *part, GMimeObject *owner, int depth, const char *dir,
          const char *section)
{
    struct mime_msg *m = w->m;
    GMimeDataWrapper *dw = g_mime_part_get_content(part);
    GMimeStream *cs = dw ? g_mime_data_wrapper_get_stream(dw) : NULL;
    GMimeContentEncoding enc = g_mime_part_get_content_encoding(part);
    struct mime_part_info pi;
    struct obuf o = {0};
    char ctype[256], name_part[300], bhname[256];
    const char *fname = g_mime_part_get_filename(part);
    int64_t bb = -1, be = -1;
    int unseparated = 0; /* body found by unseparated_body(), not by GMime */
    char *path;
    int r;

    memset(&pi, 0, sizeof(pi));
    mime_type_of(GMIME_OBJECT(part), ctype, sizeof(ctype));

    /* Body bounds: the content is a substream of our memory stream. */
    if (cs != NULL && cs->super_stream == m->stream && cs->bound_start >= 0) {
        bb = cs->bound_start;
        be = cs->bound_end >= 0 ? cs->bound_end : (int64_t)m->parse_len;
        if (be > (int64_t)m->parse_len)
            be = (int64_t)m->parse_len;
        if (bb > be)
            bb = be;
    } else if (dw == NULL) {
        int64_t hb = headers_begin(GMIME_OBJECT(part), owner);
        if (hb >= 0 && unseparated_body(m, hb, &bb, &be) == 0)
            unseparated = 1;
    }

    pi.depth = depth;
    pi.content_type = ctype;
    pi.section = section;
    pi.body_begin = bb;
    pi.raw_end = be;
    pi.raw_begin = headers_begin(GMIME_OBJECT(part), owner);
    if (pi.raw_begin < 0 && bb >= 0) {
        /* No headers: the part starts with the blank line before the body. */
        pi.raw_begin = bb;
        if (bb > 0 && m->raw[bb - 1] == '\n') {
            pi.raw_begin--;
            if (pi.raw_begin > 0 && m->raw[pi.raw_begin - 1] == '\r')
                pi.raw_begin--;
        }
    }
    if (be < 0)
        pi.raw_begin = -1; /* no body at all: the range is unknown */
    pi.decode_error = unseparated;
    pi.encoded_len = bb >= 0 ? be - bb : 0;

    /* Transfer-decode. */
    const unsigned char *in = bb >= 0 ? m->raw + bb : (const unsigned char *)"";
    size_t inlen = bb >= 0 ? (size_t)(be - bb) : 0;
    switch (enc) {
    case GMIME_CONTENT_ENCODING_BASE64:
        if ((r = base64_decode_strict(in, inlen, &o)) < 0) {
            free(o.p);
            return oom(w);
        }
        if (r == 0) {
            pi.data = o.p;
            pi.len = o.len;
            break;
        }
        pi.decode_error = 1;
        /* malformed: decoded the lenient way, as GMime does */
        /* fall through */
    case GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE:
        if (gmime_decode(enc, in, inlen, &o) < 0) {
            free(o.p);
            return oom(w);
        }
        pi.data = o.p;
        pi.len = o.len;
        break;
    case GMIME_CONTENT_ENCODING_UUENCODE: {
        const unsigned char *data, *stop;
        char uname[256];
        int nomem;
        if (uu_find_begin(in, in + inlen, uname, sizeof(uname), &data) != NULL) {
            pi.decode_error |= uu_decode_lines(data, in + inlen, &o, &nomem, &stop);
            if (nomem) {
                free(o.p);
                return oom(w);
            }
        } else {
            pi.decode_error = 1;
        }
        pi.data = o.p;
        pi.len = o.len;
        break;
    }
    default:
        pi.data = in; /* 7bit, 8bit, binary, unknown: as is, no copy */
        pi.len = inlen;
        break;
    }

    /* BinHex: hand out the data fork instead of the encoded text. */
    if (strcmp(ctype, "application/mac-binhex40") == 0) {
        struct obuf bo = {0};
        int br = binhex_decode(pi.data ? pi.data : (const unsigned char *)"", pi.len, &bo, bhname,
                               sizeof(bhname));
        if (br < 0) {
            free(o.p);
            return oom(w);
        }
        free(o.p);
        o = bo;
        pi.data = o.p;
        pi.len = o.len;
        pi.decode_error |= br;
        if (fname == NULL && bhname[0])
            fname = bhname;
    }
    if (pi.data == NULL)
        pi.data = (const unsigned char *)"";

    /* A name GMime left in raw bytes (RFC 2231 without a charset): as header text. */
    char *fname_utf8 = fname ? name_utf8(fname) : NULL;
    if (fname_utf8)
        fname = fname_utf8;
    snprintf(name_part, sizeof(name_part), "part %s", section);
    pi.filename = fname;
    if ((path = join_path(dir, fname ? fname : name_part)) == NULL) {
        g_free(fname_utf8);
        free(o.p);
        return oom(w);
    }
    pi.path = path;

    r = emit(w, &pi);
    if (r == 0 && strncmp(ctype, "text/", 5) == 0)
        r = emit_embedded(w, &pi, dir);
    if (r == 0 && strcmp(ctype, "message/rfc822") == 0 && pi.len > 0)
        r = walk_encoded_message(w, &pi, depth);
    g_free(fname_utf8);
    free(path);
    free(o.p);
    return r;
}

/* A multipart GMime found no parts in: hand its text (prologue/epilogue) out as one part. */
static int
walk_empty_multipart(struct walk *w, GMimeMultipart *mp, GMimeObject *owner, int depth,
                     const char *dir, const char *section)
{
    const char *pro = g_mime_multipart_get_prologue(mp);
    const char *epi = g_mime_multipart_get_epilogue(mp);
    struct mime_part_info pi;
    char ctype[256], name_part[300];
    size_t pl = pro ? strlen(pro) : 0, el = epi ? strlen(epi) : 0;
    unsigned char *buf;
    char *path;
    int r;

    if (pl + el == 0)
        return 0;
    if ((buf = malloc(pl + el + 1)) == NULL)
        return oom(w);
    memcpy(buf, pro ? pro : "", pl);
    memcpy(buf + pl, epi ? epi : "", el);
    memset(&pi, 0, sizeof(pi));
    mime_type_of(GMIME_OBJECT(mp), ctype, sizeof(ctype));
    snprintf(name_part, sizeof(name_part), "part %s", section);
    if ((path = join_path(dir, name_part)) == NULL) {
        free(buf);
        return oom(w);
    }
    pi.depth = depth;
    pi.content_type = ctype;
    pi.path = path;
    pi.section = section;
    pi.data = buf;
    pi.len = pl + el;
    pi.raw_begin = headers_begin(GMIME_OBJECT(mp), owner);
    pi.body_begin = body_after_headers(w->m, pi.raw_begin);
    /* The exact end is only known for the top-level body (the end of the message). */
    pi.raw_end = depth == 0 ? (int64_t)w->m->parse_len : -1;
    if (pi.raw_end < 0)
        pi.raw_begin = -1;
    pi.encoded_len = (int64_t)(pl + el);
    pi.decode_error = 1;
    r = emit(w, &pi);
    if (r == 0)
        r = emit_embedded(w, &pi, dir);
    free(path);
    free(buf);
    return r;
}

static int
walk_object(struct walk *w, GMimeObject *obj, GMimeObject *owner, int depth, const char *dir,
            const char *prefix, int is_child)
{
    char section[256];

    if (depth > w->m->max_depth) {
        w->m->limits |= MIME_LIMIT_DEPTH;
        return 0; /* skip this subtree, go on with siblings */
    }
    if (is_child || prefix[0] == '\0')
        snprintf(section, sizeof(section), "%s", prefix[0] ? prefix : "1");
    else
        snprintf(section, sizeof(section), "%s.1", prefix);

    if (GMIME_IS_MULTIPART(obj)) {
        GMimeMultipart *mp = GMIME_MULTIPART(obj);
        int n = g_mime_multipart_get_count(mp);
        if (n == 0)
            return walk_empty_multipart(w, mp, owner, depth, dir, section);
        for (int i = 0; i < n; i++) {
            char child[256];
            if (prefix[0])
                snprintf(child, sizeof(child), "%s.%d", prefix, i + 1);
            else
                snprintf(child, sizeof(child), "%d", i + 1);
            if (walk_object(w, g_mime_multipart_get_part(mp, i), NULL, depth + 1, dir, child, 1) <
                0)
                return -1;
        }
        return 0;
    }
    if (GMIME_IS_MESSAGE_PART(obj)) {
        GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
        const char *name = g_mime_object_get_content_disposition_parameter(obj, "filename");
        char comp[300], *sub;
        int r;

        if (name == NULL)
            name = g_mime_object_get_content_type_parameter(obj, "name");
        if (name == NULL) {
            snprintf(comp, sizeof(comp), "part %s", section);
            name = comp;
        }
        if (inner == NULL || g_mime_message_get_mime_part(inner) == NULL)
            return 0;
        if ((sub = join_path(dir, name)) == NULL)
            return oom(w);
        r = walk_object(w, g_mime_message_get_mime_part(inner), GMIME_OBJECT(inner), depth + 1, sub,
                        section, 0);
        free(sub);
        return r;
    }
    if (GMIME_IS_PART(obj))
        return walk_leaf(w, GMIME_PART(obj), owner, depth, dir, section);
    return 0; /* unknown object kind */
}

/* Unparseable: the whole message as one text part. */
static int
walk_unparsed(struct walk *w)
{
    struct mime_part_info pi;

    memset(&pi, 0, sizeof(pi));
    pi.content_type = "text/plain";
    pi.path = "part 1";
    pi.section = "1";
    pi.data = w->m->raw;
    pi.len = w->m->parse_len;
    pi.encoded_len = (int64_t)pi.len;
    pi.raw_begin = 0;
    pi.raw_end = (int64_t)pi.len;
    pi.body_begin = 0;
    if (emit(w, &pi) < 0)
        return -1;
    return emit_embedded(w, &pi, NULL);
}

int
mime_walk(struct mime_msg *m, int (*cb)(void *arg, const struct mime_part_info *pi), void *arg)
{
    struct walk w = {m, cb, arg, 0, 0, NULL};
    GMimeObject *top = m->msg ? g_mime_message_get_mime_part(m->msg) : NULL;

    if (top == NULL)
        walk_unparsed(&w);
    else
        walk_object(&w, top, GMIME_OBJECT(m->msg), 0, NULL, "", 0);
    return w.rc == -2 ? 0 : w.rc;
}

void
mime_global_init(void)
{
    g_mime_init();
}

void
mime_global_shutdown(void)
{
    g_mime_shutdown();
}

const char *
mime_library_version(void)
{
    static char v[32];
    snprintf(v, sizeof(v), "%u.%u.%u", gmime_major_version, gmime_minor_version,
             gmime_micro_version);
    return v;
}
