/*
 * fuzz_smtpd_proto.c - the inbound SMTP protocol engine
 * (proxy/smtpd_proto) as a hostile client sees it.
 *
 * Input: one option byte, then the client's bytes. Option bits: 0x01
 * XFORWARD allowed, 0x02 the body store refuses DATA, 0x04 the body store
 * fails with ENOSPC, 0x08 small limits (3 recipients, 64-byte commands,
 * 3 errors, 30 commands, 100-byte messages) instead of the unit test's.
 *
 * The same bytes are fed whole, one byte at a time, in 7-byte chunks and
 * in chunk sizes taken from the input; a completed transaction is answered
 * "250 ... queued" as the session would. Invariant: the transcript (every
 * byte said to the client, the body of each completed transaction, the order of begin / end /
 * abort / close events, each envelope handed over, the bytes left
 * unconsumed) does not depend on the chunking. The fake session also
 * checks the engine's contract: nothing is said after close, body bytes
 * only between begin and end, the size handed over is the bytes received.
 */
#include <errno.h>
#include <string.h>

#include "envelope.h"
#include "fuzz.h"
#include "smtpd_proto.h"

struct buf {
    char *s;
    size_t len, cap;
};

static void
buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *ns = realloc(b->s, cap);
        FUZZ_CHECK(ns != NULL);
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void
buf_str(struct buf *b, const char *s)
{
    buf_add(b, s ? s : "-", strlen(s ? s : "-"));
}

struct fake {
    struct smtpd_proto *p;
    struct buf t;    /* the transcript: output, events, body and envelopes in order */
    struct buf body; /* the current transaction's body: into t at its end, dropped on abort */
    int in_data, fail_begin, fail_errno, closed, ntx;
    int64_t tx_bytes;
};

static void
f_output(void *arg, const char *s, size_t len)
{
    struct fake *f = arg;
    FUZZ_CHECK(!f->closed);
    buf_add(&f->t, "O:", 2);
    buf_add(&f->t, s, len);
}

static int
f_data_begin(void *arg)
{
    struct fake *f = arg;
    FUZZ_CHECK(!f->in_data && !f->closed);
    buf_add(&f->t, "B\n", 2);
    if (f->fail_begin)
        return -1;
    f->in_data = 1;
    f->tx_bytes = 0;
    f->body.len = 0;
    return 0;
}

static int
f_data_chunk(void *arg, const char *s, size_t len)
{
    struct fake *f = arg;
    FUZZ_CHECK(f->in_data);
    FUZZ_CHECK(len > 0);
    if (f->fail_errno) {
        errno = f->fail_errno;
        return -1;
    }
    /* Chunk boundaries are not part of the transcript; how much of an
     * aborted body was passed on before the abort is not either. */
    f->tx_bytes += (int64_t)len;
    buf_add(&f->body, s, len);
    return 0;
}

static void
f_data_end(void *arg, struct envelope *env, int64_t size)
{
    struct fake *f = arg;
    char tmp[128];
    FUZZ_CHECK(f->in_data);
    FUZZ_CHECK(f->p->state == SMTPD_S_WAIT);
    FUZZ_CHECK(size == f->tx_bytes);
    f->in_data = 0;
    buf_add(&f->t, "D:", 2);
    buf_add(&f->t, f->body.s ? f->body.s : "", f->body.len);
    f->body.len = 0;
    snprintf(tmp, sizeof(tmp), "\nE size=%lld ret=%d body=%d utf8=%d from=", (long long)size,
             (int)env->ret, (int)env->body, env->smtputf8);
    buf_str(&f->t, tmp);
    buf_str(&f->t, env->sender);
    buf_str(&f->t, " envid=");
    buf_str(&f->t, env->envid);
    for (size_t i = 0; i < env->nrcpt; i++) {
        snprintf(tmp, sizeof(tmp), " notify=%u to=", env->rcpt[i].notify);
        buf_str(&f->t, tmp);
        buf_str(&f->t, env->rcpt[i].addr);
        buf_str(&f->t, " orcpt=");
        buf_str(&f->t, env->rcpt[i].orcpt);
    }
    for (int i = 0; i < XF_COUNT; i++) {
        buf_str(&f->t, " xf=");
        buf_str(&f->t, env->xforward[i]);
    }
    buf_add(&f->t, "\n", 1);
    envelope_free(env);
}

static void
f_data_abort(void *arg)
{
    struct fake *f = arg;
    buf_add(&f->t, "A\n", 2);
    f->in_data = 0;
    f->body.len = 0;
}

static void
f_close(void *arg)
{
    struct fake *f = arg;
    buf_add(&f->t, "C\n", 2);
    f->closed = 1;
}

static const struct smtpd_proto_ops ops = {
    .output = f_output,
    .data_begin = f_data_begin,
    .data_chunk = f_data_chunk,
    .data_end = f_data_end,
    .data_abort = f_data_abort,
    .close = f_close,
};

/* Answer a completed transaction as the session would. */
static void
answer(struct smtpd_proto *p, struct fake *f)
{
    char reply[64];
    snprintf(reply, sizeof(reply), "250 2.0.0 Ok: queued as T%d", ++f->ntx);
    smtpd_proto_tx_done(p, reply);
    FUZZ_CHECK(p->state == SMTPD_S_IDLE || p->state == SMTPD_S_QUIT);
}

/* Feed one chunk; returns the bytes left unconsumed after QUIT. */
static size_t
feed_chunk(struct smtpd_proto *p, struct fake *f, const char *s, size_t len)
{
    size_t used = 0;
    while (used < len) {
        if (p->state == SMTPD_S_QUIT)
            return len - used;
        size_t n = smtpd_proto_feed(p, s + used, len - used);
        FUZZ_CHECK(n <= len - used);
        used += n;
        if (used == len)
            break;
        if (p->state == SMTPD_S_WAIT) {
            size_t before = f->t.len;
            FUZZ_CHECK(smtpd_proto_feed(p, s + used, len - used) == 0);
            FUZZ_CHECK(f->t.len == before); /* paused: nothing said */
            answer(p, f);
            continue;
        }
        FUZZ_CHECK(p->state == SMTPD_S_QUIT);
        FUZZ_CHECK(f->closed);
        return len - used;
    }
    if (p->state == SMTPD_S_WAIT)
        answer(p, f);
    return 0;
}

/* One session over the input in chunks of the given sizes (cycled; 0 = the rest). */
static void
run(uint8_t opt, const char *in, size_t len, const uint8_t *sizes, size_t nsizes, struct buf *out)
{
    struct smtpd_limits lim = {
        .max_command_length = 512,
        .max_recipients = 100,
        .max_commands = 1000,
        .max_errors = 20,
        .max_message_size = 10000,
        .xforward_allowed = opt & 0x01,
        .hostname = "relay.test",
    };
    if (opt & 0x08) {
        lim.max_command_length = 64;
        lim.max_recipients = 3;
        lim.max_commands = 30;
        lim.max_errors = 3;
        lim.max_message_size = 100;
    }
    struct smtpd_proto p;
    struct fake f;
    memset(&f, 0, sizeof(f));
    f.p = &p;
    f.fail_begin = (opt & 0x02) != 0;
    f.fail_errno = (opt & 0x04) ? ENOSPC : 0;
    FUZZ_CHECK(smtpd_proto_init(&p, &lim, &ops, &f, "192.0.2.9", 54321) == 0);
    smtpd_proto_greet(&p);

    size_t off = 0, k = 0, left = 0;
    while (off < len) {
        size_t n = nsizes ? sizes[k++ % nsizes] : 0;
        if (n == 0 || n > len - off)
            n = len - off;
        left += feed_chunk(&p, &f, in + off, n);
        off += n;
    }
    char tail[64];
    snprintf(tail, sizeof(tail), "left=%zu state=%d\n", left, (int)p.state);
    buf_str(&f.t, tail);
    smtpd_proto_free(&p);
    free(f.body.s);
    *out = f.t;
}

/* The transcripts must be equal; on a difference print both from where they part. */
static void
same(const struct buf *whole, struct buf *other, const char *how)
{
    if (other->len != whole->len || memcmp(other->s, whole->s, whole->len) != 0) {
        size_t i = 0;
        while (i < whole->len && i < other->len && whole->s[i] == other->s[i])
            i++;
        size_t from = i > 200 ? i - 200 : 0;
        fprintf(stderr, "transcript differs in %s chunks at byte %zu\n--- whole:\n%.600s\n"
                        "--- %s:\n%.600s\n", how, i, whole->s + from, how, other->s + from);
        FUZZ_CHECK(!"the transcript depends on the chunking");
    }
    free(other->s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t opt = data[0];
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    static const uint8_t one = 1, seven = 7;
    uint8_t sizes[32];
    size_t ns = len < sizeof(sizes) ? len : sizeof(sizes);
    for (size_t i = 0; i < ns; i++)
        sizes[i] = (uint8_t)(((uint8_t)in[len - 1 - i]) % 23 + 1);

    struct buf whole, other;
    run(opt, in, len, NULL, 0, &whole);
    run(opt, in, len, &one, 1, &other);
    same(&whole, &other, "1-byte");
    run(opt, in, len, &seven, 1, &other);
    same(&whole, &other, "7-byte");
    run(opt, in, len, sizes, ns, &other);
    same(&whole, &other, "input-sized");
    free(whole.s);
    return 0;
}
