/*
 * test_textfold.c - unit tests of lib/textfold.c: the folding every
 * search key and rule pattern goes through (NFKC + Unicode case folding,
 * an ASCII fast path, invalid UTF-8 folded bytewise, glob characters kept).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "textfold.h"

struct fold_case {
    const char *in, *out;
};

static const struct fold_case cases[] = {
    {"", ""},
    {"Code Name", "code name"},
    {"ALL CAPS 123 *?[x]", "all caps 123 *?[x]"},
    {"\xef\xbc\xa3\xef\xbc\xaf\xef\xbc\xa4\xef\xbc\xa5", "code"}, /* ＣＯＤＥ: NFKC */
    {"Stra\xc3\x9f"
     "e",
     "strasse"},                                /* ß casefolds to ss */
    {"\xc3\x89T\xc3\x89", "\xc3\xa9t\xc3\xa9"}, /* ÉTÉ -> été */
    {"\xef\xbe\x83\xef\xbd\xbd\xef\xbe\x84",
     "\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88"}, /* ﾃｽﾄ -> テスト */
    {"\xef\xbc\x8a\xe8\xa6\x8b\xe7\xa9\x8d", "*\xe8\xa6\x8b\xe7\xa9\x8d"}, /* fullwidth * -> * */
    {"Caf\xe9 BAD\xff", "caf\xe9 bad\xff"}, /* invalid UTF-8: bytewise, ASCII letters only */
};

static void
test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *f = textfold(cases[i].in);
        assert_non_null(f);
        assert_string_equal(f, cases[i].out);
        free(f);
    }
}

static void
test_null_and_idempotent(void **state)
{
    (void)state;
    char *f = textfold(NULL);
    assert_non_null(f);
    assert_string_equal(f, "");
    free(f);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *a = textfold(cases[i].in), *b = textfold(a);
        assert_string_equal(a, b);
        free(a);
        free(b);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_null_and_idempotent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
