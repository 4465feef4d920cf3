/*
 * textfold.c - the one folding of text that the quarantine index, the
 * message log and the scanner's rules compare by.
 *
 * Public call: textfold.
 *
 * Keys and patterns go through the same function: NFKC, then Unicode
 * case folding (g_utf8_normalize, g_utf8_casefold from GLib), so a glob
 * compares folded against folded. Pure ASCII takes a fast path without
 * GLib. Invalid UTF-8 (envelope addresses may hold anything) has its
 * ASCII letters lowercased and its other bytes kept.
 *
 * Owns nothing; returns a fresh malloc'd copy. Out of memory returns NULL
 * (GLib itself aborts on out of memory inside its calls). Thread-safe.
 */
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "textfold.h"

/* ASCII letters lowercased, every other byte kept. */
static char *
fold_bytes(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    return out;
}

char *
textfold(const char *s)
{
    const unsigned char *p;
    size_t n;
    int ascii = 1;

    if (s == NULL)
        s = "";
    n = strlen(s);
    for (p = (const unsigned char *)s; *p; p++) {
        if (*p >= 0x80) {
            ascii = 0;
            break;
        }
    }
    if (!ascii && g_utf8_validate(s, (gssize)n, NULL)) {
        gchar *norm = g_utf8_normalize(s, (gssize)n, G_NORMALIZE_NFKC);
        if (norm != NULL) {
            gchar *cf = g_utf8_casefold(norm, -1);
            g_free(norm);
            if (cf != NULL) {
                char *out = strdup(cf);
                g_free(cf);
                return out;
            }
        }
    }
    return fold_bytes(s, n);
}
