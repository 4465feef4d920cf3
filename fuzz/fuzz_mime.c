/*
 * fuzz_mime.c - the message model (scan/mime): parse a message from
 * memory and from a file descriptor, read the decoded Subject, From and
 * Message-ID, and walk every leaf part.
 *
 * Checks: both parses give the same walk (types, names, paths, decoded
 * bytes, offsets, limits); every part's decoded bytes are readable (each
 * byte is touched, so ASan sees a range that runs past its buffer); raw
 * offsets lie within the message and in order; names and the subject are
 * valid UTF-8; the walk ends with 0 (a stopped walk is a limit flag, not
 * an error). Limits are small (depth 8, 64 parts) so that the limit paths
 * are reached often.
 */
#include <glib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "mime.h"

#define DEPTH 8
#define PARTS 64

struct walkrec {
    GString *t;
    size_t rawlen;
    int last_index;
};

static int
part_cb(void *arg, const struct mime_part_info *pi)
{
    struct walkrec *w = arg;
    unsigned h = 2166136261u;

    FUZZ_CHECK(pi->index > w->last_index);
    w->last_index = pi->index;
    FUZZ_CHECK(pi->depth >= 0);
    FUZZ_CHECK(pi->content_type != NULL && pi->path != NULL && pi->section != NULL);
    FUZZ_CHECK(pi->len == 0 || pi->data != NULL);
    for (size_t i = 0; i < pi->len; i++)
        h = (h ^ pi->data[i]) * 16777619u;
    /* The raw range: unknown (-1, -1) or within the message and in order. */
    int unknown = pi->raw_begin == -1 && pi->raw_end == -1;
    if (!unknown &&
        (pi->raw_begin < 0 || pi->raw_begin > pi->raw_end || (size_t)pi->raw_end > w->rawlen))
        fprintf(stderr, "part %d (%s, %s): raw %lld-%lld body %lld, message %zu bytes\n",
                pi->index, pi->path, pi->section, (long long)pi->raw_begin,
                (long long)pi->raw_end, (long long)pi->body_begin, w->rawlen);
    FUZZ_CHECK(unknown || (pi->raw_begin >= 0 && pi->raw_begin <= pi->raw_end));
    FUZZ_CHECK(unknown || (size_t)pi->raw_end <= w->rawlen);
    FUZZ_CHECK(unknown || pi->body_begin == -1 ||
               (pi->body_begin >= pi->raw_begin && pi->body_begin <= pi->raw_end));
    FUZZ_CHECK(pi->encoded_len >= 0);
    for (const char *c = pi->content_type; *c; c++)
        FUZZ_CHECK(!(*c >= 'A' && *c <= 'Z'));
    if (pi->filename)
        FUZZ_CHECK(g_utf8_validate(pi->filename, -1, NULL));
    g_string_append_printf(w->t, "%d %d %s [%s] %s %s %zu %08x %lld %d %lld-%lld %lld %d\n",
                           pi->index, pi->depth, pi->content_type,
                           pi->filename ? pi->filename : "-", pi->path, pi->section, pi->len, h,
                           (long long)pi->encoded_len, pi->decode_error,
                           (long long)pi->raw_begin, (long long)pi->raw_end,
                           (long long)pi->body_begin, pi->embedded);
    return 0;
}

static GString *
parse_walk(struct mime_msg *m, size_t rawlen)
{
    struct walkrec w = {g_string_new(NULL), rawlen, 0};
    size_t len = 0;

    FUZZ_CHECK(mime_raw(m, &len) != NULL || len == 0);
    FUZZ_CHECK(len == rawlen);
    const char *subj = mime_subject(m);
    FUZZ_CHECK(subj != NULL && g_utf8_validate(subj, -1, NULL));
    FUZZ_CHECK(mime_subject(m) == subj); /* computed once */
    const char *from = mime_from(m), *mid = mime_message_id(m);
    FUZZ_CHECK(from != NULL && mid != NULL);
    g_string_append_printf(w.t, "subject=%s from=%s id=%s limits=%u\n", subj, from, mid,
                           mime_limits_hit(m));
    int rc = mime_walk(m, part_cb, &w);
    FUZZ_CHECK(rc == 0);
    g_string_append_printf(w.t, "limits=%u\n", mime_limits_hit(m));
    return w.t;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    struct mime_msg *m = mime_parse_mem((const char *)data, size, DEPTH, PARTS, err, sizeof(err));
    if (m == NULL)
        return 0;
    GString *a = parse_walk(m, size);
    mime_free(m);

    /* The same message from a file descriptor (mapped). */
    int fd = memfd_create("fuzz-mime", 0);
    FUZZ_CHECK(fd >= 0);
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);
        FUZZ_CHECK(n > 0);
        off += (size_t)n;
    }
    m = mime_parse_fd(fd, DEPTH, PARTS, err, sizeof(err));
    close(fd);
    if (m != NULL) {
        GString *b = parse_walk(m, size);
        mime_free(m);
        FUZZ_CHECK(a->len == b->len && memcmp(a->str, b->str, a->len) == 0);
        g_string_free(b, TRUE);
    }
    g_string_free(a, TRUE);
    return 0;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    mime_global_init();
    return 0;
}
