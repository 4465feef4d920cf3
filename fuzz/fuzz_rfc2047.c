/*
 * fuzz_rfc2047.c - decoding of header text to UTF-8 (scan/mime: RFC 2047
 * encoded words, RFC 2231 parameters, raw 8-bit text through the fallback
 * charsets), through the public calls only: the input becomes the Subject
 * and the attachment's file name (quoted, and as an RFC 2231 value) of a
 * small message, which is parsed and walked.
 *
 * Input: up to the first NUL, the Subject text; after it (or, without a
 * NUL, the same text) the file name. A line break not followed by a blank
 * becomes a space, so the text stays inside its header field (folding is
 * kept). Checks: the decoded Subject and file names are valid UTF-8, and
 * a second call returns the same Subject.
 */
#include <glib.h>
#include <string.h>

#include "fuzz.h"
#include "mime.h"

static void
append_folded(GString *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if ((c == '\r' || c == '\n') && !(i + 1 < n && (p[i + 1] == ' ' || p[i + 1] == '\t' ||
                                                        (c == '\r' && p[i + 1] == '\n'))))
            c = ' ';
        if (c == '\0')
            c = ' ';
        g_string_append_c(s, c);
    }
}

static int
part_cb(void *arg, const struct mime_part_info *pi)
{
    int *n = arg;
    if (pi->filename)
        FUZZ_CHECK(g_utf8_validate(pi->filename, -1, NULL));
    (*n)++;
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nul = memchr(in, '\0', size);
    size_t slen = nul ? (size_t)(nul - in) : size;
    const char *name = nul ? nul + 1 : in;
    size_t nlen = nul ? size - slen - 1 : size;

    GString *msg = g_string_new("From: a@example.test\r\nSubject: ");
    append_folded(msg, in, slen);
    g_string_append(msg, "\r\nMIME-Version: 1.0\r\n"
                         "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
                         "--b\r\nContent-Type: application/octet-stream; name=\"");
    append_folded(msg, name, nlen);
    g_string_append(msg, "\"\r\nContent-Disposition: attachment; filename=\"");
    append_folded(msg, name, nlen);
    g_string_append(msg, "\"\r\n\r\nx\r\n--b\r\nContent-Type: text/plain\r\n"
                         "Content-Disposition: attachment; filename*=");
    append_folded(msg, name, nlen);
    g_string_append(msg, "\r\n\r\ny\r\n--b--\r\n");

    char err[256];
    struct mime_msg *m = mime_parse_mem(msg->str, msg->len, 8, 16, err, sizeof(err));
    if (m != NULL) {
        const char *subj = mime_subject(m);
        FUZZ_CHECK(subj != NULL && g_utf8_validate(subj, -1, NULL));
        FUZZ_CHECK(mime_subject(m) == subj);
        int n = 0;
        FUZZ_CHECK(mime_walk(m, part_cb, &n) == 0);
        mime_free(m);
    }
    g_string_free(msg, TRUE);
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
