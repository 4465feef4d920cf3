/*
 * test_mime.c - the message model against the corpus of t/corpus/mime
 * (make-corpus.py): decoded names and subjects (exact UTF-8 bytes), part
 * counts and paths, decoded bytes, raw offsets, limits, broken MIME, and
 * robustness on truncated and mutated messages.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>
#include <gmime/gmime.h>

#include "mime.h"

#ifndef SR_CORPUS_DIR
#error "SR_CORPUS_DIR must point at t/corpus/mime"
#endif

/* "請求書" and friends, as UTF-8 bytes. */
#define U_SEIKYUSHO "\xe8\xab\x8b\xe6\xb1\x82\xe6\x9b\xb8"
#define U_NO_SOUFU "\xe3\x81\xae\xe9\x80\x81\xe4\xbb\x98" /* "の送付" */
#define U_NEN "\xe5\xb9\xb4"                              /* "年" */

struct part {
    int index, depth, decode_error, embedded;
    char *content_type, *filename, *path, *section;
    unsigned char *data;
    size_t len;
    int64_t encoded_len, raw_begin, raw_end, body_begin;
};

struct parts {
    struct part *v;
    int n, cap;
    int keep_data;
    int stop_after; /* > 0: return 7 after that many */
};

static char *
dupnul(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int
collect(void *arg, const struct mime_part_info *pi)
{
    struct parts *ps = arg;
    struct part *p;

    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? ps->cap * 2 : 16;
        ps->v = realloc(ps->v, (size_t)ps->cap * sizeof(*ps->v));
        assert_non_null(ps->v);
    }
    p = &ps->v[ps->n++];
    memset(p, 0, sizeof(*p));
    p->index = pi->index;
    p->depth = pi->depth;
    p->decode_error = pi->decode_error;
    p->embedded = pi->embedded;
    p->content_type = dupnul(pi->content_type);
    p->filename = dupnul(pi->filename);
    p->path = dupnul(pi->path);
    p->section = dupnul(pi->section);
    p->len = pi->len;
    if (ps->keep_data) {
        p->data = malloc(pi->len + 1);
        assert_non_null(p->data);
        memcpy(p->data, pi->data, pi->len);
    }
    p->encoded_len = pi->encoded_len;
    p->raw_begin = pi->raw_begin;
    p->raw_end = pi->raw_end;
    p->body_begin = pi->body_begin;
    if (ps->stop_after > 0 && ps->n >= ps->stop_after)
        return 7;
    return 0;
}

static void
parts_free(struct parts *ps)
{
    for (int i = 0; i < ps->n; i++) {
        free(ps->v[i].content_type);
        free(ps->v[i].filename);
        free(ps->v[i].path);
        free(ps->v[i].section);
        free(ps->v[i].data);
    }
    free(ps->v);
    memset(ps, 0, sizeof(*ps));
}

static char *
load(const char *name, size_t *len)
{
    char path[512];
    FILE *f;
    char *buf;
    long n;

    snprintf(path, sizeof(path), "%s/%s", SR_CORPUS_DIR, name);
    f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s: %s (run t/corpus/mime/make-corpus.py)", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* The corpus payloads: byte i is (i * seed + 11) & 0xff. */
static unsigned char *
payload(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i * seed + 11) & 0xff);
    return p;
}

static void
assert_payload(const struct part *p, size_t n, unsigned seed)
{
    unsigned char *want = payload(n, seed);
    assert_int_equal(p->len, n);
    assert_memory_equal(p->data, want, n);
    free(want);
}

/* Parse a corpus file from memory and walk it; the raw buffer is returned in *raw. */
static struct mime_msg *
parse_walk(const char *name, int max_depth, int max_parts, struct parts *ps, char **raw,
           size_t *rawlen)
{
    char err[256] = "";
    struct mime_msg *m;

    *raw = load(name, rawlen);
    m = mime_parse_mem(*raw, *rawlen, max_depth, max_parts, err, sizeof(err));
    if (m == NULL)
        fail_msg("parse %s: %s", name, err);
    ps->keep_data = 1;
    assert_int_equal(mime_walk(m, collect, ps), 0);
    return m;
}

static struct part *
find_path(struct parts *ps, const char *path)
{
    for (int i = 0; i < ps->n; i++)
        if (ps->v[i].path && strcmp(ps->v[i].path, path) == 0)
            return &ps->v[i];
    fail_msg("no part with path \"%s\"", path);
    return NULL;
}

static void
assert_raw_at(const char *raw, size_t rawlen, int64_t off, const char *want)
{
    assert_true(off >= 0);
    assert_true((size_t)off + strlen(want) <= rawlen);
    if (memcmp(raw + off, want, strlen(want)) != 0)
        fail_msg("at %lld: \"%.*s\", want \"%s\"", (long long)off, (int)strlen(want), raw + off,
                 want);
}

/*
 * Subject decoding (our RFC 2047 decoder), table-driven, from memory.
 */
static const struct {
    const char *raw;  /* the Subject header as sent (folded) */
    const char *want; /* decoded UTF-8 */
} subject_cases[] = {
    /* Adjacent padded base64 words of one charset (GMime 3.2 lost all but the first). */
    {"=?utf-8?b?w6k=?= =?utf-8?b?w6k=?=\r\n =?utf-8?b?w6k=?=", "\xc3\xa9\xc3\xa9\xc3\xa9"},
    {"=?iso-2022-jp?b?GyRCRDkbKEI=?=\r\n =?iso-2022-jp?b?GyRCRDkbKEI=?=",
     "\xe9\x95\xb7\xe9\x95\xb7"},
    /* A multibyte character split across two words. */
    {"=?utf-8?b?ww==?= =?utf-8?b?qQ==?=", "\xc3\xa9"},
    /* Q encoding, underscores, text around the words, white space between words dropped. */
    {"Re: =?iso-8859-1?q?caf=E9_au?=   =?iso-8859-1?q?_lait?= ok", "Re: caf\xc3\xa9 au lait ok"},
    /* Mixed charsets. */
    {"=?iso-8859-1?q?=E9?= =?utf-8?b?w6k=?=", "\xc3\xa9\xc3\xa9"},
    /* Raw UTF-8, and a broken word kept as text. */
    {"plain \xc3\xa9t\xc3\xa9", "plain \xc3\xa9t\xc3\xa9"},
    {"=?utf-8?x?abc?= tail", "=?utf-8?x?abc?= tail"},
    {"", ""},
};

static void
test_subject_decoder(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(subject_cases) / sizeof(subject_cases[0]); i++) {
        char msg[1024], err[256];
        int n = snprintf(msg, sizeof(msg), "From: a@x\r\nSubject: %s\r\n\r\nbody\r\n",
                         subject_cases[i].raw);
        struct mime_msg *m = mime_parse_mem(msg, (size_t)n, 0, 0, err, sizeof(err));
        if (m == NULL)
            fail_msg("case %zu: %s", i, err);
        if (strcmp(mime_subject(m), subject_cases[i].want) != 0)
            fail_msg("case %zu: \"%s\" decoded to \"%s\", want \"%s\"", i, subject_cases[i].raw,
                     mime_subject(m), subject_cases[i].want);
        mime_free(m);
    }
}

/*
 * Japanese names and subjects.
 */

static void
test_jp_iso2022_b(void **state)
{
    struct parts ps = {0};
    size_t len;
    char *raw;
    struct mime_msg *m = parse_walk("jp-iso2022-b.eml", 0, 0, &ps, &raw, &len);
    (void)state;

    assert_string_equal(mime_subject(m), U_SEIKYUSHO U_NO_SOUFU);
    assert_string_equal(mime_message_id(m), "jp1@example.org");
    assert_string_equal(mime_from(m), "Sender <sender@example.org>");
    assert_int_equal(ps.n, 2);
    assert_string_equal(ps.v[0].content_type, "text/plain");
    assert_null(ps.v[0].filename);
    assert_string_equal(ps.v[0].path, "part 1");
    assert_string_equal(ps.v[1].filename, U_SEIKYUSHO ".zip");
    assert_string_equal(ps.v[1].path, U_SEIKYUSHO ".zip");
    assert_string_equal(ps.v[1].content_type, "application/zip");
    assert_string_equal(ps.v[1].section, "2");
    assert_int_equal(ps.v[1].depth, 1);
    assert_int_equal(ps.v[1].decode_error, 0);
    assert_payload(&ps.v[1], 1000, 7);
    /* Offsets: the part's first header through the end of its body. */
    assert_raw_at(raw, len, ps.v[1].raw_begin, "Content-Type: application/zip; name=");
    assert_raw_at(raw, len, ps.v[1].raw_begin - 9, "--=_jp1\r\n");
    assert_raw_at(raw, len, ps.v[1].raw_end, "\r\n--=_jp1--\r\n");
    assert_raw_at(raw, len, ps.v[1].body_begin - 2, "\r\nCxIZ");
    assert_int_equal(ps.v[1].encoded_len, ps.v[1].raw_end - ps.v[1].body_begin);
    assert_raw_at(raw, len, ps.v[0].raw_begin, "Content-Type: text/plain; charset=ISO-2022-JP");
    assert_raw_at(raw, len, ps.v[0].raw_end, "\r\n--=_jp1\r\n");
    mime_free(m);
    parts_free(&ps);
    free(raw);
}

static void
test_jp_sjis_q_rfc2231(void **state)
{
    struct parts ps = {0};
    size_t len;
    char *raw;
    struct mime_msg *m = parse_walk("jp-sjis-q.eml", 0, 0, &ps, &raw, &len);
    (void)state;

    assert_string_equal(mime_subject(m), U_SEIKYUSHO U_NO_SOUFU);
    assert_int_equal(ps.n, 2);
    assert_string_equal(ps.v[1].filename, U_SEIKYUSHO ".zip");
    assert_payload(&ps.v[1], 1000, 7);
    mime_free(m);
    parts_free(&ps);
    free(raw);
}

static void
test_jp_rfc2231_continuation_eucjp(void **state)
{
    struct parts ps = {0};
    size_t len;
    char *raw;
    struct mime_msg *m = parse_walk("jp-2231-cont.eml", 0, 0, &ps, &raw, &len);
    (void)state;

    assert_string_equal(mime_subject(m), U_SEIKYUSHO);
    assert_int_equal(ps.n, 2);
    assert_string_equal(ps.v[0].filename, U_SEIKYUSHO "_2024" U_NEN ".zip");
    assert_payload(&ps.v[0], 300, 13);
    assert_string_equal(ps.v[1].filename, U_SEIKYUSHO ".zip");
    assert_payload(&ps.v[1], 200, 5);
    mime_free(m);
    parts_free(&ps);
    free(raw);
}

static void
test_jp_broken_subjects(void **state)
{
    struct parts ps = {0};
    size_t len;
    char *raw;
    struct mime_msg *m;
    (void)state;

    /* Raw Shift_JIS bytes, no encoded word at all. */
    m = parse_walk("jp-raw-sjis.eml", 0, 0, &ps, &raw, &len);
    assert_string_equal(mime_subject(m), U_SEIKYUSHO U_NO_SOUFU);
    assert_int_equal(ps.n, 1);
    assert_string_equal(ps.v[0].content_type, "text/plain");
    mime_free(m);
    parts_free(&ps);
    free(raw);

    /* An encoded word carrying raw 8-bit Shift_JIS. */
    m = parse_walk("jp-ew-raw8bit.eml", 0, 0, &ps, &raw, &len);
    assert_string_equal(mime_subject(m), U_SEIKYUSHO);
    mime_free(m);
    parts_free(&ps);
    free(raw);
}

/*
 * Transfer encodings.
 */

static const char qp_want[] = "caf\xc3\xa9 = ok\r\ncaf\xc3\xa9 = ok\r\ncaf\xc3\xa9 = ok\r\n"
                              "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                              "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";

static void
check_encodings(const char *file, const char *nl)
{
    struct parts ps = {0};
    size_t len;
    char *raw, want[64];
    struct mime_msg *m = parse_walk(file, 0, 0, &ps, &raw, &len);
    struct part *p;

    assert_int_equal(ps.n, 6);
    /* The text part, then the uuencoded block found inside it. */
    assert_string_equal(ps.v[0].path, "part 1");
    assert_int_equal(ps.v[0].embedded, 0);
    assert_string_equal(ps.v[1].filename, "inline.bin");
    assert_string_equal(ps.v[1].path, "inline.bin");
    assert_int_equal(ps.v[1].embedded, 1);
    assert_int_equal(ps.v[1].decode_error, 0);
    assert_int_equal(ps.v[1].index, 2);
    assert_payload(&ps.v[1], 100, 3);
    assert_true(ps.v[1].raw_begin == ps.v[0].raw_begin && ps.v[1].raw_end == ps.v[0].raw_end);

    p = find_path(&ps, "b64.bin");
    assert_payload(p, 5000, 31);
    assert_int_equal(p->decode_error, 0);
    assert_raw_at(raw, len, p->raw_begin, "Content-Type: application/octet-stream; name=b64.bin");
    snprintf(want, sizeof(want), "%s--enc%s", nl, nl);
    assert_raw_at(raw, len, p->raw_end, want);

    p = find_path(&ps, "qp.txt");
    if (nl[0] == '\r') {
        assert_int_equal(p->len, sizeof(qp_want) - 1);
        assert_memory_equal(p->data, qp_want, sizeof(qp_want) - 1);
    }
    assert_non_null(memmem(p->data, p->len, "caf\xc3\xa9 = ok", 10));

    p = find_path(&ps, "uu.bin");
    assert_int_equal(p->decode_error, 0);
    assert_payload(p, 500, 17);

    p = find_path(&ps, "plain.bin");
    assert_int_equal(p->len, 10);
    assert_memory_equal(p->data, "0123456789", 10);
    assert_int_equal(p->index, 6);
    snprintf(want, sizeof(want), "%s--enc--%s", nl, nl);
    assert_raw_at(raw, len, p->raw_end, want);
    mime_free(m);
    parts_free(&ps);
    free(raw);
}

static void
test_encodings_crlf(void **state)
{
    (void)state;
    check_encodings("encodings.eml", "\r\n");
}

static void
test_encodings_lf(void **state)
{
    (void)state;
    check_encodings("lf-only.eml", "\n");
}

static void
test_binhex(void **state)
{
    struct parts ps = {0};
    size_t len;
    char *raw;
    unsigned char *want = payload(743, 3);
    struct mime_msg *m = parse_walk("binhex.eml", 0, 0, &ps, &raw, &len);
    (void)state;

    memset(want + 700, 0x90, 3);
    memset(want + 703, 'A', 40);
    assert_int_equal(ps.n, 1);
    assert_string_equal(ps.v[0].filename, "mac.bin.hqx");
    assert_int_equal(ps.v[0].decode_error, 0);
    assert_int_equal(ps.v[0].len, 743);
    assert_memory_equal(ps.v[0].data, want, 743);
    free(want);
    mime_free(m);
    parts_free(&ps);
    free(raw);
}

/*
 * Structure.
 */

static void
test_nested_rfc822(void **state)
{
    struct parts ps = {0};
    size_t len;
    char *raw;
    struct mime_msg *m = parse_walk("nested3.eml", 0, 0, &ps, &raw, &len);
    struct part *p;
    (void)state;

    assert_string_equal(mime_subject(m), "Fwd: level 0");
    assert_int_equal(ps.n, 5);
    assert_string_equal(ps.v[0].path, "part 1");
    assert_string_equal(ps.v[1].path, "forwarded.eml/part 2.1");
    assert_string_equal(ps.v[2].path, "forwarded.eml/part 2.2/part 2.2.1");
    assert_string_equal(ps.v[3].path, "forwarded.eml/part 2.2/third.eml/part 2.2.2.1");
    p = find_path(&ps, "forwarded.eml/part 2.2/third.eml/invoice.zip");
    assert_string_equal(p->filename, "invoice.zip");
    assert_string_equal(p->section, "2.2.2.2");
    assert_int_equal(p->depth, 7);
    assert_payload(p, 600, 9);
    assert_raw_at(raw, len, p->raw_begin, "Content-Type: application/zip; name=invoice.zip\r\n");
    assert_raw_at(raw, len, p->raw_end, "\r\n--L3--\r\n");
    assert_raw_at(raw, len, ps.v[1].raw_begin, "Content-Type: text/plain\r\n\r\nlevel 1 text");
    assert_raw_at(raw, len, ps.v[1].raw_end, "\r\n--L1\r\n");
    mime_free(m);
    parts_free(&ps);
    free(raw);
}

static void
test_encoded_rfc822(void **state)
{
    struct parts ps = {0};
    size_t len;
    char *raw;
    struct mime_msg *m = parse_walk("encoded-rfc822.eml", 0, 0, &ps, &raw, &len);
    struct part *outer, *p;
    (void)state;

    assert_int_equal(ps.n, 4);
    outer = find_path(&ps, "fwd.eml");
    assert_string_equal(outer->content_type, "message/rfc822");
    assert_int_equal(outer->embedded, 0);
    assert_string_equal(ps.v[2].path, "fwd.eml/part 2.1");
    assert_memory_equal(ps.v[2].data, "inner text", 10);
    p = find_path(&ps, "fwd.eml/inner.zip");
    assert_int_equal(p->embedded, 1);
    assert_int_equal(p->depth, 3);
    assert_payload(p, 333, 7);
    /* Its raw range is the encoded part's: that is what a strip can replace. */
    assert_int_equal(p->raw_begin, outer->raw_begin);
    assert_int_equal(p->raw_end, outer->raw_end);
    assert_raw_at(raw, len, p->raw_begin, "Content-Type: message/rfc822");
    mime_free(m);
    parts_free(&ps);
    free(raw);
}

/*
 * A forwarded message, padded with boundary-like lines ("--pad N") before an
 * attachment, sent as message/rfc822 in base64 or as is. Returns a malloc'd
 * message; *len its length.
 */
static char *
padded_forward(int npad, int encoded, size_t *len)
{
    GString *inner = g_string_new(NULL), *outer = g_string_new(NULL);

    g_string_append(inner, "From: b@example.com\r\nSubject: inner\r\nMIME-Version: 1.0\r\n"
                           "Content-Type: multipart/mixed; boundary=\"in\"\r\n\r\n"
                           "--in\r\nContent-Type: text/plain\r\n\r\n");
    for (int i = 0; i < npad; i++)
        g_string_append_printf(inner, "--pad %d\r\n", i);
    g_string_append(inner, "--in\r\nContent-Type: application/octet-stream; name=after.bin\r\n"
                           "Content-Transfer-Encoding: base64\r\n\r\nYWZ0ZXI=\r\n--in--\r\n");
    g_string_append_printf(outer, "From: a@example.com\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
                                  "Content-Type: multipart/mixed; boundary=\"out\"\r\n\r\n"
                                  "--out\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
                                  "--out\r\nContent-Type: message/rfc822; name=fwd.eml\r\n%s\r\n",
                           encoded ? "Content-Transfer-Encoding: base64\r\n" : "");
    if (encoded) {
        gchar *b64 = g_base64_encode((const guchar *)inner->str, inner->len);
        for (size_t i = 0, n = strlen(b64); i < n; i += 76)
            g_string_append_printf(outer, "%.76s\r\n", b64 + i);
        g_free(b64);
    } else {
        g_string_append(outer, inner->str);
    }
    g_string_append(outer, "--out--\r\n");
    g_string_free(inner, TRUE);
    *len = outer->len;
    return g_string_free(outer, FALSE);
}

/*
 * A limit hit inside a sub-message parsed from an encoded message/rfc822
 * part reaches the message (issue 14, defect 1): with max_parts 10 the
 * boundary-like line budget is 4 * 10 + 1024; 1100 padding lines inside the
 * base64-encoded forward cut its parse short, so after.bin is never walked
 * and the message must say MIME_LIMIT_PARTS. Controls: without padding
 * after.bin is walked and no limit is hit; padded but not encoded, the outer
 * parse is cut and says so.
 */
static void
test_encoded_rfc822_limits(void **state)
{
    static const struct {
        int npad, encoded;
        unsigned limits;
        int after_seen;
    } cases[] = {
        {1100, 1, MIME_LIMIT_PARTS, 0},
        {10, 1, 0, 1},
        {1100, 0, MIME_LIMIT_PARTS, 0},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct parts ps = {0};
        char err[256] = "";
        size_t len;
        char *raw = padded_forward(cases[i].npad, cases[i].encoded, &len);
        struct mime_msg *m = mime_parse_mem(raw, len, 0, 10, err, sizeof(err));
        int seen = 0;

        assert_non_null(m);
        assert_int_equal(mime_walk(m, collect, &ps), 0);
        for (int k = 0; k < ps.n; k++)
            seen |= ps.v[k].filename && strcmp(ps.v[k].filename, "after.bin") == 0;
        if (mime_limits_hit(m) != cases[i].limits || seen != cases[i].after_seen)
            fail_msg("case %zu (pad %d, encoded %d): limits %u (want %u), after.bin %s", i,
                     cases[i].npad, cases[i].encoded, mime_limits_hit(m), cases[i].limits,
                     seen ? "walked" : "not walked");
        mime_free(m);
        parts_free(&ps);
        g_free(raw);
    }
}

static void
test_missing_closing_boundary(void **state)
{
    struct parts ps = {0};
    size_t len;
    char *raw;
    struct mime_msg *m = parse_walk("missing-boundary.eml", 0, 0, &ps, &raw, &len);
    (void)state;

    assert_int_equal(ps.n, 2);
    assert_int_equal(ps.v[0].len, 5);
    assert_memory_equal(ps.v[0].data, "first", 5);
    assert_string_equal(ps.v[1].filename, "last.bin");
    assert_payload(&ps.v[1], 120, 3);
    assert_int_equal(ps.v[1].raw_end, (int64_t)len); /* to the end of the message */
    mime_free(m);
    parts_free(&ps);
    free(raw);
}

static void
test_bad_base64(void **state)
{
    struct parts ps = {0};
    size_t len;
    char *raw;
    unsigned char *want = payload(90, 5);
    struct mime_msg *m = parse_walk("bad-base64.eml", 0, 0, &ps, &raw, &len);
    (void)state;

    assert_int_equal(ps.n, 1);
    assert_int_equal(ps.v[0].decode_error, 1);
    assert_true(ps.v[0].len >= 90);
    assert_memory_equal(ps.v[0].data, want, 90); /* what could be decoded */
    assert_memory_equal(ps.v[0].data + 90, "ABC", 3);
    free(want);
    mime_free(m);
    parts_free(&ps);
    free(raw);
}

static void
test_long_header(void **state)
{
    struct parts ps = {0};
    size_t len;
    char *raw;
    struct mime_msg *m = parse_walk("long-header.eml", 0, 0, &ps, &raw, &len);
    (void)state;

    assert_true(len > 200000);
    assert_string_equal(mime_subject(m), "long header");
    assert_int_equal(ps.n, 1);
    assert_string_equal(ps.v[0].filename, "after.bin");
    assert_payload(&ps.v[0], 64, 3);
    assert_raw_at(raw, len, ps.v[0].raw_begin,
                  "Content-Type: application/octet-stream; name=after");
    assert_true(ps.v[0].body_begin - ps.v[0].raw_begin > 102400);
    mime_free(m);
    parts_free(&ps);
    free(raw);
}

static void
test_no_mime(void **state)
{
    struct parts ps = {0};
    size_t len;
    char *raw;
    struct mime_msg *m = parse_walk("nomime.eml", 0, 0, &ps, &raw, &len);
    (void)state;

    assert_string_equal(mime_subject(m), "plain old mail");
    assert_int_equal(ps.n, 1);
    assert_string_equal(ps.v[0].content_type, "text/plain");
    assert_string_equal(ps.v[0].path, "part 1");
    assert_int_equal(ps.v[0].depth, 0);
    assert_int_equal(ps.v[0].len, 24);
    assert_memory_equal(ps.v[0].data, "Just text.\r\nTwo lines.\r\n", 24);
    assert_int_equal(ps.v[0].raw_begin, 0);
    assert_int_equal(ps.v[0].raw_end, (int64_t)len);
    assert_raw_at(raw, len, ps.v[0].body_begin, "Just text.");
    mime_free(m);
    parts_free(&ps);
    free(raw);
}

static void
test_garbage_8bit(void **state)
{
    struct parts ps = {0};
    size_t len;
    char *raw;
    struct mime_msg *m = parse_walk("garbage8bit.eml", 0, 0, &ps, &raw, &len);
    (void)state;

    assert_non_null(mime_subject(m));
    assert_int_equal(ps.n, 2);
    assert_int_equal(ps.v[0].len, 4000 - 0); /* junk body, as is */
    assert_int_equal(ps.v[1].len, 10);
    assert_memory_equal(ps.v[1].data, "after junk", 10);
    mime_free(m);
    parts_free(&ps);
    free(raw);
}

/*
 * Limits.
 */

static void
test_depth_limit(void **state)
{
    struct parts ps = {0};
    size_t len;
    char *raw;
    struct mime_msg *m;
    (void)state;

    m = parse_walk("depth50.eml", 100, 0, &ps, &raw, &len);
    assert_int_equal(mime_limits_hit(m), 0);
    assert_int_equal(ps.n, 1);
    assert_int_equal(ps.v[0].depth, 50);
    assert_string_equal(ps.v[0].filename, "deep.bin");
    assert_memory_equal(ps.v[0].data, "deep", 4);
    mime_free(m);
    parts_free(&ps);
    free(raw);

    m = parse_walk("depth50.eml", 50, 0, &ps, &raw, &len);
    assert_int_equal(mime_limits_hit(m), 0);
    assert_int_equal(ps.n, 1);
    mime_free(m);
    parts_free(&ps);
    free(raw);

    m = parse_walk("depth50.eml", 49, 0, &ps, &raw, &len);
    assert_int_equal(mime_limits_hit(m), MIME_LIMIT_DEPTH);
    assert_int_equal(ps.n, 0);
    mime_free(m);
    parts_free(&ps);
    free(raw);
}

static void
test_parts_limit(void **state)
{
    struct parts ps = {0};
    size_t len;
    char *raw;
    struct mime_msg *m;
    (void)state;

    m = parse_walk("parts5000.eml", 0, 5000, &ps, &raw, &len);
    assert_int_equal(mime_limits_hit(m), 0);
    assert_int_equal(ps.n, 5000);
    assert_string_equal(ps.v[4999].filename, "p4999.txt");
    assert_int_equal(ps.v[4999].index, 5000);
    assert_memory_equal(ps.v[4999].data, "part 4999", 9);
    mime_free(m);
    parts_free(&ps);
    free(raw);

    /* Limit hit in the walk. */
    m = parse_walk("parts5000.eml", 0, 1500, &ps, &raw, &len);
    assert_int_equal(mime_limits_hit(m), MIME_LIMIT_PARTS);
    assert_int_equal(ps.n, 1500);
    mime_free(m);
    parts_free(&ps);
    free(raw);

    /* Limit hit before GMime: only a prefix is parsed (4 * 10 + 1024 boundary lines). */
    m = parse_walk("parts5000.eml", 0, 10, &ps, &raw, &len);
    assert_int_equal(mime_limits_hit(m), MIME_LIMIT_PARTS);
    assert_int_equal(ps.n, 10);
    mime_free(m);
    parts_free(&ps);
    free(raw);
}

/* The limit flags are known right after parsing, before any walk. */
static void
test_limits_known_after_parse(void **state)
{
    size_t len;
    char err[128];
    char *raw = load("depth50.eml", &len);
    struct mime_msg *m;
    (void)state;

    m = mime_parse_mem(raw, len, 20, 0, err, sizeof(err));
    assert_int_equal(mime_limits_hit(m), MIME_LIMIT_DEPTH);
    mime_free(m);
    free(raw);
    raw = load("parts5000.eml", &len);
    m = mime_parse_mem(raw, len, 0, 4999, err, sizeof(err));
    assert_int_equal(mime_limits_hit(m), MIME_LIMIT_PARTS);
    mime_free(m);
    m = mime_parse_mem(raw, len, 0, 5000, err, sizeof(err));
    assert_int_equal(mime_limits_hit(m), 0);
    mime_free(m);
    free(raw);
}

static void
test_callback_stops_walk(void **state)
{
    struct parts ps = {0};
    size_t len;
    char err[128];
    char *raw = load("parts5000.eml", &len);
    struct mime_msg *m = mime_parse_mem(raw, len, 0, 0, err, sizeof(err));
    (void)state;

    assert_non_null(m);
    ps.stop_after = 3;
    assert_int_equal(mime_walk(m, collect, &ps), 7);
    assert_int_equal(ps.n, 3);
    assert_int_equal(mime_limits_hit(m), 0);
    mime_free(m);
    parts_free(&ps);
    free(raw);
}

/*
 * Input kinds and size.
 */

static void
test_parse_fd_and_pipe(void **state)
{
    struct parts a = {0}, b = {0}, c = {0};
    char path[512], err[128];
    size_t len;
    char *raw;
    struct mime_msg *m;
    int fd, pfd[2];
    (void)state;

    m = parse_walk("nested3.eml", 0, 0, &a, &raw, &len);
    mime_free(m);

    /* A file: mapped; the fd's offset stays where it was. */
    snprintf(path, sizeof(path), "%s/nested3.eml", SR_CORPUS_DIR);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(lseek(fd, 17, SEEK_SET), 17);
    m = mime_parse_fd(fd, 0, 0, err, sizeof(err));
    assert_non_null(m);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 17);
    close(fd);
    b.keep_data = 1;
    assert_int_equal(mime_walk(m, collect, &b), 0);
    assert_string_equal(mime_subject(m), "Fwd: level 0");
    mime_free(m);

    /* A pipe: read into memory. */
    assert_int_equal(pipe(pfd), 0);
    assert_int_equal(write(pfd[1], raw, len), (ssize_t)len);
    close(pfd[1]);
    m = mime_parse_fd(pfd[0], 0, 0, err, sizeof(err));
    close(pfd[0]);
    assert_non_null(m);
    c.keep_data = 1;
    assert_int_equal(mime_walk(m, collect, &c), 0);
    mime_free(m);

    assert_int_equal(a.n, b.n);
    assert_int_equal(a.n, c.n);
    for (int i = 0; i < a.n; i++) {
        assert_string_equal(a.v[i].path, b.v[i].path);
        assert_string_equal(a.v[i].path, c.v[i].path);
        assert_int_equal(a.v[i].len, b.v[i].len);
        assert_memory_equal(a.v[i].data, b.v[i].data, a.v[i].len);
        assert_memory_equal(a.v[i].data, c.v[i].data, a.v[i].len);
        assert_int_equal(a.v[i].raw_begin, b.v[i].raw_begin);
        assert_int_equal(a.v[i].raw_end, c.v[i].raw_end);
    }
    parts_free(&a);
    parts_free(&b);
    parts_free(&c);
    free(raw);
}

/* Found by fuzz/rfc2047 and fuzz/mime: an RFC 2231 name without a charset and the
 * name on a "begin 644" line are raw bytes; the names handed out are still UTF-8. */
static void
test_name_raw_8bit_is_utf8(void **state)
{
    const char *s = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                    "Content-Type: application/octet-stream\r\n"
                    "Content-Disposition: attachment; filename*=%e8%ab%ce.exe\r\n\r\nx\r\n"
                    "--b\r\nContent-Type: text/plain\r\n\r\n"
                    "begin 644 uu\xe8\xab\xce.exe\r\n#86)C\r\n`\r\nend\r\n--b--\r\n";
    struct parts ps = {0};
    char err[128];
    (void)state;

    struct mime_msg *m = mime_parse_mem(s, strlen(s), 0, 0, err, sizeof(err));
    assert_non_null(m);
    assert_int_equal(mime_walk(m, collect, &ps), 0);
    assert_int_equal(ps.n, 3);
    for (int i = 0; i < ps.n; i++) {
        assert_true(g_utf8_validate(ps.v[i].path, -1, NULL));
        if (ps.v[i].filename)
            assert_true(g_utf8_validate(ps.v[i].filename, -1, NULL));
    }
    assert_non_null(ps.v[0].filename);
    assert_non_null(strstr(ps.v[0].filename, ".exe"));
    assert_int_equal(ps.v[2].embedded, 1);
    assert_non_null(ps.v[2].filename);
    assert_non_null(strstr(ps.v[2].filename, ".exe"));
    mime_free(m);
    parts_free(&ps);
}

/* Found by fuzz/mime: no blank line after a part's headers. GMime has no body for
 * it; the first line that is not a header field starts it, as in lenient readers. */
static void
test_part_without_blank_line(void **state)
{
    const char *s = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                    "Content-Type: application/octet-stream; name=x.bin\r\n"
                    "Content-Transfer-Encoding: base64\r\n"
                    "aGVsbG8s\r\nIHdvcmxk\r\n--b\r\nContent-Type: text/plain\r\n\r\nz\r\n--b--\r\n";
    struct parts ps = {0};
    char err[128];
    (void)state;

    struct mime_msg *m = mime_parse_mem(s, strlen(s), 0, 0, err, sizeof(err));
    assert_non_null(m);
    ps.keep_data = 1;
    assert_int_equal(mime_walk(m, collect, &ps), 0);
    assert_int_equal(ps.n, 2);
    assert_int_equal(ps.v[0].len, 12);
    assert_memory_equal(ps.v[0].data, "hello, world", 12);
    assert_int_equal(ps.v[0].decode_error, 1); /* broken structure, said so */
    assert_true(ps.v[0].raw_begin >= 0 && ps.v[0].raw_begin < ps.v[0].raw_end);
    assert_memory_equal(s + ps.v[0].raw_end, "\r\n--b\r\n", 7);
    assert_int_equal(ps.v[1].len, 1);
    mime_free(m);
    parts_free(&ps);
}

static void
test_empty_and_tiny(void **state)
{
    static const char *inputs[] = {"",
                                   "\r\n",
                                   "\n\n\n",
                                   "Subject: x",
                                   "Subject: x\r\n\r\n",
                                   "Content-Type: multipart/mixed\r\n\r\nno boundary here",
                                   "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n",
                                   /* found by fuzz/mime: no blank line after a part's
                                    * headers, so GMime gives it no body */
                                   "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                                   "Content-Type: text/plain\r\nQUJD\r\n--b--\r\n"};
    char err[128];
    (void)state;

    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        struct parts ps = {0};
        struct mime_msg *m = mime_parse_mem(inputs[i], strlen(inputs[i]), 0, 0, err, sizeof(err));
        assert_non_null(m);
        ps.keep_data = 1;
        assert_int_equal(mime_walk(m, collect, &ps), 0);
        for (int k = 0; k < ps.n; k++) {
            assert_true(ps.v[k].raw_end <= (int64_t)strlen(inputs[i]));
            assert_true(ps.v[k].raw_begin <= ps.v[k].raw_end);
            assert_true(ps.v[k].raw_end >= 0 || ps.v[k].raw_begin == -1); /* unknown: both -1 */
        }
        mime_free(m);
        parts_free(&ps);
    }

    /* A multipart without boundary: its text is still handed out. */
    {
        const char *s = "Subject: nb\r\nContent-Type: multipart/mixed\r\n\r\nhidden text\r\n";
        struct parts ps = {0};
        struct mime_msg *m = mime_parse_mem(s, strlen(s), 0, 0, err, sizeof(err));
        ps.keep_data = 1;
        assert_int_equal(mime_walk(m, collect, &ps), 0);
        assert_int_equal(ps.n, 1);
        assert_non_null(memmem(ps.v[0].data, ps.v[0].len, "hidden text", 11));
        assert_int_equal(ps.v[0].raw_begin, 0);
        assert_int_equal(ps.v[0].raw_end, (int64_t)strlen(s));
        mime_free(m);
        parts_free(&ps);
    }
}

/* A large base64 attachment is decoded once, correctly. */
static void
test_large_attachment(void **state)
{
    const size_t n = 12u << 20; /* 12 MB decoded */
    static const char hdr[] = "From: a@b\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
                              "Content-Type: multipart/mixed; boundary=big\r\n\r\n"
                              "--big\r\nContent-Type: application/octet-stream; name=big.bin\r\n"
                              "Content-Transfer-Encoding: base64\r\n\r\n";
    static const char tail[] = "\r\n--big--\r\n";
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char *data = payload(n, 101);
    size_t enc = (n + 2) / 3 * 4, cap = sizeof(hdr) + enc + enc / 76 * 2 + sizeof(tail) + 16;
    char *msg = malloc(cap), *o = msg, err[128];
    struct parts ps = {0};
    struct mime_msg *m;
    size_t col = 0;
    (void)state;

    assert_non_null(msg);
    o += sprintf(o, "%s", hdr);
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)data[i] << 16 | (i + 1 < n ? (unsigned)data[i + 1] << 8 : 0) |
                     (i + 2 < n ? data[i + 2] : 0);
        *o++ = b64[v >> 18 & 63];
        *o++ = b64[v >> 12 & 63];
        *o++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? b64[v & 63] : '=';
        if ((col += 4) == 76 && i + 3 < n) {
            *o++ = '\r';
            *o++ = '\n';
            col = 0;
        }
    }
    o += sprintf(o, "%s", tail);
    m = mime_parse_mem(msg, (size_t)(o - msg), 0, 0, err, sizeof(err));
    assert_non_null(m);
    ps.keep_data = 1;
    assert_int_equal(mime_walk(m, collect, &ps), 0);
    assert_int_equal(ps.n, 1);
    assert_int_equal(ps.v[0].len, n);
    assert_int_equal(ps.v[0].decode_error, 0);
    assert_memory_equal(ps.v[0].data, data, n);
    assert_int_equal(ps.v[0].raw_end, (int64_t)(o - msg) - (int64_t)strlen(tail));
    mime_free(m);
    parts_free(&ps);
    free(msg);
    free(data);
}

/* One base64 body part through the walk: its decoded bytes and decode_error. */
static void
walk_base64(const char *body, struct parts *ps)
{
    static const char hdr[] = "From: a@b\r\nMIME-Version: 1.0\r\n"
                              "Content-Type: application/octet-stream\r\n"
                              "Content-Transfer-Encoding: base64\r\n\r\n";
    size_t len = strlen(hdr) + strlen(body);
    char *msg = malloc(len + 1), err[128];
    struct mime_msg *m;

    assert_non_null(msg);
    snprintf(msg, len + 1, "%s%s", hdr, body);
    m = mime_parse_mem(msg, len, 0, 0, err, sizeof(err));
    assert_non_null(m);
    memset(ps, 0, sizeof(*ps));
    ps->keep_data = 1;
    assert_int_equal(mime_walk(m, collect, ps), 0);
    assert_int_equal(ps->n, 1);
    mime_free(m);
    free(msg);
}

/*
 * Base64 decoding: every length and padding, line breaks and blanks at any
 * place decode exactly; malformed input is marked and decoded the way
 * GMime decodes it (the lenient way a mail client reads it).
 */
static void
test_base64_decode(void **state)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char *const seps[] = {"", "\r\n", " ", "\t", "\r\n \r\n"};
    static const char *const bad[] = {"QQ=",  "QQ==QQ==", "QUJD*REVG", "Q",   "QUJDRA===",
                                      "====", "QUJ\x80", "QQ==\r\nQg==", "QU=J"};
    (void)state;

    for (size_t n = 0; n < 40; n++) {
        unsigned char *data = payload(n ? n : 1, (unsigned)n + 7);
        for (size_t si = 0; si < sizeof(seps) / sizeof(seps[0]); si++) {
            for (size_t every = 1; every <= 9; every += 4) {
                char body[1024], *o = body;
                size_t k = 0;
                for (size_t i = 0; i < n; i += 3) {
                    unsigned v = (unsigned)data[i] << 16 |
                                 (i + 1 < n ? (unsigned)data[i + 1] << 8 : 0) |
                                 (i + 2 < n ? data[i + 2] : 0);
                    char q[4] = {b64[v >> 18 & 63], b64[v >> 12 & 63],
                                 i + 1 < n ? b64[v >> 6 & 63] : '=', i + 2 < n ? b64[v & 63] : '='};
                    for (int j = 0; j < 4; j++) {
                        *o++ = q[j];
                        if (++k % every == 0)
                            o += sprintf(o, "%s", seps[si]);
                    }
                }
                *o = '\0';
                struct parts ps;
                walk_base64(body, &ps);
                assert_int_equal(ps.v[0].decode_error, 0);
                assert_int_equal(ps.v[0].len, n);
                if (n)
                    assert_memory_equal(ps.v[0].data, data, n);
                parts_free(&ps);
            }
        }
        free(data);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned char want[64];
        int st = 0;
        guint32 save = 0;
        size_t wn = g_mime_encoding_base64_decode_step((const unsigned char *)bad[i], strlen(bad[i]),
                                                       want, &st, &save);
        struct parts ps;
        walk_base64(bad[i], &ps);
        assert_int_equal(ps.v[0].decode_error, 1);
        assert_int_equal(ps.v[0].len, wn);
        if (wn)
            assert_memory_equal(ps.v[0].data, want, wn);
        parts_free(&ps);
    }
}

/*
 * Robustness: every corpus file cut at many points, and mutated bytes.
 */

static int
count_only(void *arg, const struct mime_part_info *pi)
{
    size_t *sum = arg;
    /* Touch every byte handed out (ASan checks the pointers). */
    for (size_t i = 0; i < pi->len; i++)
        *sum += pi->data[i];
    *sum += strlen(pi->path) + strlen(pi->content_type) + (pi->filename ? strlen(pi->filename) : 0);
    return 0;
}

static void
test_truncated_and_mutated(void **state)
{
    static const char *files[] = {"encodings.eml",     "nested3.eml",    "jp-2231-cont.eml",
                                  "binhex.eml",        "bad-base64.eml", "depth50.eml",
                                  "encoded-rfc822.eml"};
    char err[128];
    unsigned seed = 1;
    (void)state;

    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        size_t len, sum = 0;
        char *raw = load(files[f], &len);
        size_t step = len / 97 + 1;
        for (size_t cut = 0; cut <= len; cut += step) {
            char *copy = malloc(cut + 1); /* exact-size copy: ASan catches over-reads */
            memcpy(copy, raw, cut);
            struct mime_msg *m = mime_parse_mem(copy, cut, 20, 200, err, sizeof(err));
            assert_non_null(m);
            mime_walk(m, count_only, &sum);
            mime_free(m);
            free(copy);
        }
        for (int round = 0; round < 60; round++) {
            char *copy = malloc(len);
            memcpy(copy, raw, len);
            for (int k = 0; k < 8; k++) {
                seed = seed * 1103515245u + 12345u;
                size_t at = (seed >> 8) % len;
                static const char junk[] = "-\r\n=:;\"\x1b\x90\xff ";
                copy[at] = junk[(seed >> 3) % (sizeof(junk) - 1)];
            }
            struct mime_msg *m = mime_parse_mem(copy, len, 20, 200, err, sizeof(err));
            assert_non_null(m);
            mime_walk(m, count_only, &sum);
            mime_free(m);
            free(copy);
        }
        free(raw);
    }
}

static int
teardown_all(void **state)
{
    (void)state;
    mime_global_shutdown();
    return 0;
}

static int
setup_all(void **state)
{
    (void)state;
    mime_global_init();
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subject_decoder),
        cmocka_unit_test(test_jp_iso2022_b),
        cmocka_unit_test(test_jp_sjis_q_rfc2231),
        cmocka_unit_test(test_jp_rfc2231_continuation_eucjp),
        cmocka_unit_test(test_jp_broken_subjects),
        cmocka_unit_test(test_encodings_crlf),
        cmocka_unit_test(test_encodings_lf),
        cmocka_unit_test(test_binhex),
        cmocka_unit_test(test_nested_rfc822),
        cmocka_unit_test(test_encoded_rfc822),
        cmocka_unit_test(test_encoded_rfc822_limits),
        cmocka_unit_test(test_missing_closing_boundary),
        cmocka_unit_test(test_bad_base64),
        cmocka_unit_test(test_base64_decode),
        cmocka_unit_test(test_long_header),
        cmocka_unit_test(test_no_mime),
        cmocka_unit_test(test_garbage_8bit),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_parts_limit),
        cmocka_unit_test(test_limits_known_after_parse),
        cmocka_unit_test(test_callback_stops_walk),
        cmocka_unit_test(test_parse_fd_and_pipe),
        cmocka_unit_test(test_empty_and_tiny),
        cmocka_unit_test(test_name_raw_8bit_is_utf8),
        cmocka_unit_test(test_part_without_blank_line),
        cmocka_unit_test(test_large_attachment),
        cmocka_unit_test(test_truncated_and_mutated),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
