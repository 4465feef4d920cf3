/* test_cidr.c - lib/cidr: parsing ranges and matching IPv4, IPv6 and IPv4-mapped addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "cidr.h"

static int
match(const char *range, const char *addr)
{
    struct cidr c;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    assert_int_equal(cidr_parse(range, &c), 0);
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, addr, &s4->sin_addr), 1);
    }
    return cidr_match(&c, 1, (struct sockaddr *)&ss);
}

static void
test_parse(void **state)
{
    struct cidr c;
    (void)state;
    static const struct {
        const char *s;
        int rc, family, bits;
    } t[] = {
        {"127.0.0.0/8", 0, AF_INET, 8},
        {"10.1.2.3", 0, AF_INET, 32},
        {"0.0.0.0/0", 0, AF_INET, 0},
        {"::1", 0, AF_INET6, 128},
        {"2001:db8::/32", 0, AF_INET6, 32},
        {"10.0.0.0/33", -1, 0, 0},
        {"2001:db8::/129", -1, 0, 0},
        {"10.0.0.0/x", -1, 0, 0},
        {"10.0.0.0/-1", -1, 0, 0},
        {"example.com/8", -1, 0, 0},
        {"", -1, 0, 0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        assert_int_equal(cidr_parse(t[i].s, &c), t[i].rc);
        if (t[i].rc == 0) {
            assert_int_equal(c.family, t[i].family);
            assert_int_equal(c.bits, t[i].bits);
        }
    }
}

static void
test_match(void **state)
{
    (void)state;
    static const struct {
        const char *range, *addr;
        int want;
    } t[] = {
        {"127.0.0.0/8", "127.0.0.1", 1},
        {"127.0.0.0/8", "128.0.0.1", 0},
        {"192.168.1.0/25", "192.168.1.127", 1},
        {"192.168.1.0/25", "192.168.1.128", 0}, /* a bit inside the last byte */
        {"10.0.0.1", "10.0.0.1", 1},
        {"10.0.0.1", "10.0.0.2", 0},
        {"0.0.0.0/0", "203.0.113.9", 1},
        {"2001:db8::/32", "2001:db8:ffff::1", 1},
        {"2001:db8::/32", "2001:db9::1", 0},
        {"::1", "::1", 1},
        {"127.0.0.0/8", "::ffff:127.0.0.1", 1}, /* IPv4-mapped matches v4 ranges */
        {"127.0.0.0/8", "::ffff:10.0.0.1", 0},
        {"::1", "127.0.0.1", 0}, /* no v6 range matches a v4 address */
        {"127.0.0.0/8", "::1", 0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int got = match(t[i].range, t[i].addr);
        if (got != t[i].want)
            fail_msg("%s in %s: got %d, want %d", t[i].addr, t[i].range, got, t[i].want);
    }
}

static void
test_list(void **state)
{
    struct cidr nets[2];
    struct sockaddr_in s4;
    (void)state;
    assert_int_equal(cidr_parse("10.0.0.0/8", &nets[0]), 0);
    assert_int_equal(cidr_parse("192.0.2.0/24", &nets[1]), 0);
    memset(&s4, 0, sizeof(s4));
    s4.sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.55", &s4.sin_addr);
    assert_int_equal(cidr_match(nets, 2, (struct sockaddr *)&s4), 1);
    assert_int_equal(cidr_match(nets, 1, (struct sockaddr *)&s4), 0);
    assert_int_equal(cidr_match(nets, 0, (struct sockaddr *)&s4), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
