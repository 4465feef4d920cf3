/*
 * test_notice.c - unit tests of queue/notice_fmt.c and notice_check_from:
 * %-variable expansion, RFC 2047 subjects in UTF-8 and ISO-2022-JP, body
 * charsets and transfer encodings, the mark's MAC (whitespace-blind,
 * body- and key-bound), and the notify.from refusals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notice.h"

static void
test_expand(void **state)
{
    (void)state;
    const char *vars[] = {"queue_id", "ABC", "subject", "Hi %queue_id%", "empty", NULL};
    char *s = notice_expand("q=%queue_id% s=%subject% e=[%empty%] u=%unknown% 100%% %", vars, 3);
    /* Values are not expanded again; unknown names stay as written. */
    assert_string_equal(s, "q=ABC s=Hi %queue_id% e=[] u=%unknown% 100% %");
    free(s);
}

static void
test_header(void **state)
{
    (void)state;
    char *s = notice_encode_header("plain subject", "utf-8");
    assert_string_equal(s, "plain subject");
    free(s);
    s = notice_encode_header("\xe6\x97\xa5\xe6\x9c\xac", "utf-8"); /* 日本 */
    assert_string_equal(s, "=?UTF-8?B?5pel5pys?=");
    free(s);
    s = notice_encode_header("\xe6\x97\xa5\xe6\x9c\xac", "iso-2022-jp");
    /* ESC $ B F| K\ ESC ( B */
    assert_string_equal(s, "=?ISO-2022-JP?B?GyRCRnxLXBsoQg==?=");
    free(s);
    /* Long text: several encoded words, folded, none over 75 characters. */
    char longs[400] = "";
    for (int i = 0; i < 40; i++)
        strcat(longs, "\xe6\x97\xa5");
    s = notice_encode_header(longs, "iso-2022-jp");
    for (char *p = strtok(s, "\r\n"); p; p = strtok(NULL, "\r\n"))
        assert_true(strlen(p) <= 76);
    free(s);
}

static void
test_body(void **state)
{
    (void)state;
    const char *cs, *cte;
    char *b = notice_encode_body("hello\nworld\n", "utf-8", &cs, &cte);
    assert_string_equal(b, "hello\r\nworld\r\n");
    assert_string_equal(cte, "7bit");
    free(b);
    b = notice_encode_body("\xe6\x97\xa5\n", "utf-8", &cs, &cte);
    assert_string_equal(cs, "UTF-8");
    assert_string_equal(cte, "base64");
    assert_string_equal(b, "5pelDQo=\r\n");
    free(b);
    b = notice_encode_body("a\xe6\x97\xa5\nb\n", "iso-2022-jp", &cs, &cte);
    assert_string_equal(cs, "ISO-2022-JP");
    assert_string_equal(cte, "7bit");
    /* each line back in ASCII before its end */
    assert_string_equal(b, "a\x1b$BF|\x1b(B\r\nb\r\n");
    free(b);
}

static void
test_mac(void **state)
{
    (void)state;
    unsigned char k1[32] = {1}, k2[32] = {2};
    char *a = notice_mac(k1, 32, 100, "<id@x>", "line one\r\nline two\r\n", 20);
    char *b = notice_mac(k1, 32, 100, "<id@x>", "line one\nline two  \n", 20);
    char *c = notice_mac(k1, 32, 100, "<id@x>", "line one\r\nline tw0\r\n", 20);
    char *d = notice_mac(k2, 32, 100, "<id@x>", "line one\r\nline two\r\n", 20);
    char *e = notice_mac(k1, 32, 101, "<id@x>", "line one\r\nline two\r\n", 20);
    char *f = notice_mac(k1, 32, 100, "<id@y>", "line one\r\nline two\r\n", 20);
    assert_int_equal(strlen(a), 64);
    assert_string_equal(a, b); /* line ends and blanks do not matter */
    assert_string_not_equal(a, c);
    assert_string_not_equal(a, d);
    assert_string_not_equal(a, e);
    assert_string_not_equal(a, f);
    free(a), free(b), free(c), free(d), free(e), free(f);
}

static void
test_from(void **state)
{
    (void)state;
    char why[300];
    const char *bad[] = {"",
                         "NotificationRecipients",
                         "NotificationRecipients@corp.jp",
                         "root@localhost",
                         "root@gateway",
                         "a@example.com",
                         "a@mail.example.org",
                         "postmaster@example.co.jp",
                         "a@host.local",
                         "a@x.test",
                         "a@[127.0.0.1]",
                         "a b@corp.jp",
                         "<a@corp.jp>",
                         "changeme@corp.jp",
                         "user@corp.jp"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        if (notice_check_from(bad[i], why, sizeof(why)) != -1)
            fail_msg("'%s' accepted as notify.from", bad[i]);
        assert_true(why[0] != '\0');
    }
    assert_int_equal(notice_check_from("postmaster@corp.co.jp", why, sizeof(why)), 0);
    assert_int_equal(notice_check_from("security-team@mail.scanrelay-ci.net", why, sizeof(why)), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expand), cmocka_unit_test(test_header), cmocka_unit_test(test_body),
        cmocka_unit_test(test_mac),    cmocka_unit_test(test_from),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
