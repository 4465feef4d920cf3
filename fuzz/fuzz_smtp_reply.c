/*
 * fuzz_smtp_reply.c - the client side's SMTP reply parser
 * (proxy/smtp_reply). The input is what a downstream server says. It is
 * parsed three ways: whole, one byte at a time, and in chunks whose sizes
 * come from the input itself; the sequence of replies (code, text, error
 * flag, enhanced code, first line) must be the same each way, and every
 * reply must stay within its fixed buffers.
 */
#include <string.h>

#include "fuzz.h"
#include "smtp_reply.h"

struct transcript {
    char *s;
    size_t len, cap;
};

static void
tr_add(struct transcript *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *ns = realloc(t->s, cap);
        FUZZ_CHECK(ns != NULL);
        t->s = ns;
        t->cap = cap;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void
record(struct transcript *t, const struct smtp_reply_parser *p)
{
    char enh[32], first[SMTP_REPLY_MAX + 16], head[64];
    int n;

    FUZZ_CHECK(p->cur.len < sizeof(p->cur.text));
    FUZZ_CHECK(strlen(p->cur.text) <= p->cur.len);
    FUZZ_CHECK(p->cur.code == 0 || (p->cur.code >= 200 && p->cur.code <= 559));
    FUZZ_CHECK(!p->error || p->cur.code == 0);
    int el = smtp_reply_enhanced(&p->cur, enh, sizeof(enh));
    FUZZ_CHECK(el >= 0 && (size_t)el < sizeof(enh) && strlen(enh) == (size_t)el);
    smtp_reply_first_line(&p->cur, first, sizeof(first));
    FUZZ_CHECK(strchr(first, '\n') == NULL);
    n = snprintf(head, sizeof(head), "%d %d %zu [", p->cur.code, p->error, p->cur.len);
    tr_add(t, head, (size_t)n);
    tr_add(t, p->cur.text, p->cur.len);
    tr_add(t, "] ", 2);
    tr_add(t, enh, strlen(enh));
    tr_add(t, " | ", 3);
    tr_add(t, first, strlen(first));
    tr_add(t, "\n", 1);
}

/* Parse data in chunks of the given sizes (cycled, 0 = the rest). */
static void
parse(const char *data, size_t size, const uint8_t *sizes, size_t nsizes, struct transcript *t)
{
    struct smtp_reply_parser p;
    size_t off = 0, k = 0;

    smtp_reply_parser_init(&p);
    while (off < size) {
        size_t n = nsizes ? sizes[k++ % nsizes] : 0;
        if (n == 0 || n > size - off)
            n = size - off;
        size_t used = 0;
        while (used < n) {
            int done = 0;
            size_t c = smtp_reply_feed(&p, data + off + used, n - used, &done);
            FUZZ_CHECK(c <= n - used);
            FUZZ_CHECK(c > 0);
            used += c;
            if (done)
                record(t, &p);
            else
                FUZZ_CHECK(used == n);
        }
        off += n;
    }
    tr_add(t, "end\n", 4);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct transcript whole = {0}, bytes = {0}, chunks = {0};
    static const uint8_t one = 1;

    parse((const char *)data, size, NULL, 0, &whole);
    parse((const char *)data, size, &one, 1, &bytes);
    /* Chunk sizes 1..16 taken from the input's own bytes. */
    uint8_t sizes[64];
    size_t ns = size < sizeof(sizes) ? size : sizeof(sizes);
    for (size_t i = 0; i < ns; i++)
        sizes[i] = (uint8_t)(data[i] % 16 + 1);
    parse((const char *)data, size, sizes, ns, &chunks);
    FUZZ_CHECK(whole.len == bytes.len && memcmp(whole.s, bytes.s, whole.len) == 0);
    FUZZ_CHECK(whole.len == chunks.len && memcmp(whole.s, chunks.s, whole.len) == 0);
    free(whole.s);
    free(bytes.s);
    free(chunks.s);
    return 0;
}
