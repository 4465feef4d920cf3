/*
 * notice_fmt.c - the pure parts of a notice: %-variable expansion, RFC
 * 2047 encoded headers, body charset and transfer encoding, and the MAC of
 * the loop mark.
 *
 * Public calls: notice_expand, notice_encode_header, notice_encode_body,
 * notice_mac.
 *
 * Charsets: "utf-8" (base64 when not plain ASCII) and "iso-2022-jp"
 * (RFC 1468: each line and each encoded word converted on its own so it
 * ends in ASCII, 7bit; text that has no JIS form falls back to UTF-8).
 * Every result is malloc'd (GLib's allocator is the system's); NULL on no
 * memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <glib.h>

#include "notice.h"

static int
is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return 0;
    return 1;
}

char *
notice_expand(const char *tmpl, const char *const *vars, size_t nvars)
{
    GString *out = g_string_sized_new(strlen(tmpl) + 256);
    const char *p = tmpl;
    while (*p) {
        if (*p != '%') {
            g_string_append_c(out, *p++);
            continue;
        }
        if (p[1] == '%') {
            g_string_append_c(out, '%');
            p += 2;
            continue;
        }
        const char *end = strchr(p + 1, '%');
        size_t n = end ? (size_t)(end - p - 1) : 0;
        int found = 0;
        for (size_t i = 0; end && n > 0 && n < 40 && i < nvars; i++)
            if (strlen(vars[i * 2]) == n && strncmp(vars[i * 2], p + 1, n) == 0) {
                g_string_append(out, vars[i * 2 + 1] ? vars[i * 2 + 1] : "");
                p = end + 1;
                found = 1;
                break;
            }
        if (!found)
            g_string_append_c(out, *p++);
    }
    return g_string_free(out, FALSE);
}

/* iconv one piece to ISO-2022-JP (ends in ASCII), NULL when it has no JIS form. */
static char *
to_jis(const char *utf8, gsize len, gsize *outlen)
{
    return g_convert(utf8, (gssize)len, "ISO-2022-JP", "UTF-8", NULL, outlen, NULL);
}

char *
notice_encode_header(const char *utf8, const char *charset)
{
    int jis = charset && strcasecmp(charset, "iso-2022-jp") == 0;
    /* Plain ASCII without anything that looks like an encoded word: as is. */
    if (is_ascii(utf8) && strstr(utf8, "=?") == NULL && strlen(utf8) < 900)
        return strdup(utf8);
    if (!g_utf8_validate(utf8, -1, NULL))
        return strdup("(undecodable)");
    GString *out = g_string_new("");
    const char *p = utf8;
    int first = 1;
    while (*p) {
        /* A piece of whole characters: at most 45 bytes (UTF-8), 12 characters (JIS). */
        const char *q = p;
        int nch = 0;
        while (*q) {
            const char *nx = g_utf8_next_char(q);
            if ((size_t)(nx - p) > 45 || (jis && nch >= 12))
                break;
            q = nx;
            nch++;
        }
        if (q == p)
            q = g_utf8_next_char(p);
        gsize jl = 0;
        char *j = jis ? to_jis(p, (gsize)(q - p), &jl) : NULL;
        gchar *b64 = j ? g_base64_encode((const guchar *)j, jl)
                       : g_base64_encode((const guchar *)p, (gsize)(q - p));
        g_string_append_printf(out, "%s=?%s?B?%s?=", first ? "" : "\r\n ",
                               j ? "ISO-2022-JP" : "UTF-8", b64);
        g_free(b64);
        g_free(j);
        first = 0;
        p = q;
    }
    return g_string_free(out, FALSE);
}

char *
notice_encode_body(const char *utf8, const char *charset, const char **cs, const char **cte)
{
    int jis = charset && strcasecmp(charset, "iso-2022-jp") == 0;
    GString *crlf = g_string_new("");
    /* Lines with CRLF ends. */
    for (const char *p = utf8; *p;) {
        size_t n = strcspn(p, "\r\n");
        g_string_append_len(crlf, p, (gssize)n);
        g_string_append(crlf, "\r\n");
        p += n;
        if (*p == '\r')
            p++;
        if (*p == '\n')
            p++;
    }
    if (is_ascii(crlf->str)) {
        *cs = "us-ascii";
        *cte = "7bit";
        return g_string_free(crlf, FALSE);
    }
    if (jis) {
        GString *out = g_string_new("");
        int ok = 1;
        for (const char *p = crlf->str; *p && ok;) {
            size_t n = strcspn(p, "\r");
            gsize jl = 0;
            char *j = n ? to_jis(p, n, &jl) : g_strdup("");
            if (j == NULL) {
                ok = 0;
                break;
            }
            g_string_append_len(out, j, (gssize)jl);
            g_string_append(out, "\r\n");
            g_free(j);
            p += n + 2;
        }
        if (ok) {
            g_string_free(crlf, TRUE);
            *cs = "ISO-2022-JP";
            *cte = "7bit";
            return g_string_free(out, FALSE);
        }
        g_string_free(out, TRUE);
    }
    /* UTF-8, base64 in lines of 76. */
    gchar *b64 = g_base64_encode((const guchar *)crlf->str, crlf->len);
    g_string_free(crlf, TRUE);
    GString *out = g_string_new("");
    size_t bl = strlen(b64);
    for (size_t i = 0; i < bl; i += 76) {
        g_string_append_len(out, b64 + i, (gssize)(bl - i < 76 ? bl - i : 76));
        g_string_append(out, "\r\n");
    }
    g_free(b64);
    *cs = "UTF-8";
    *cte = "base64";
    return g_string_free(out, FALSE);
}

char *
notice_mac(const unsigned char *key, size_t keylen, long long t, const char *msgid,
           const char *body, size_t bodylen)
{
    /* The body's non-blank bytes: line ends or trailing blanks changed on
     * the way do not matter, another body does. */
    GChecksum *bh = g_checksum_new(G_CHECKSUM_SHA256);
    size_t i = 0;
    while (i < bodylen) {
        char chunk[4096];
        size_t n = 0;
        for (; i < bodylen && n < sizeof(chunk); i++) {
            char c = body[i];
            if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
                chunk[n++] = c;
        }
        g_checksum_update(bh, (const guchar *)chunk, (gssize)n);
    }
    char *data = g_strdup_printf("v1|%lld|%s|%s", t, msgid, g_checksum_get_string(bh));
    g_checksum_free(bh);
    char *mac = g_compute_hmac_for_string(G_CHECKSUM_SHA256, key, keylen, data, -1);
    g_free(data);
    return mac;
}
