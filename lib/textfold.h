/* textfold.h - Unicode text folding for search keys and rule matching (see textfold.c). */
#ifndef SR_TEXTFOLD_H
#define SR_TEXTFOLD_H

/*
 * Fold s for comparison: Unicode NFKC normalization, then Unicode case
 * folding, so "ＣＯＤＥ", "Code" and "code" are one key and half-width
 * katakana equal full-width; pure ASCII is lowercased without GLib.
 * Glob metacharacters * ? [ ] survive folding. Invalid UTF-8 is folded
 * bytewise (ASCII letters only, other bytes kept). Returns malloc'd
 * text, NULL only when out of memory; s NULL gives "".
 */
char *textfold(const char *s);

#endif
