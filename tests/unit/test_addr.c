/* Unit tests for lib/addr: listen and peer address parsing, IPv4-mapped
 * folding, formatting, and CIDR filters. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"

/* Builds an address with inet_pton, independent of the code under test. */
static union sockaddr_in46 mk(const char *host, uint16_t port) {
        union sockaddr_in46 a;

        memset(&a, 0, sizeof(a));
        if (inet_pton(AF_INET, host, &a.in.sin_addr) == 1) {
                a.in.sin_family = AF_INET;
                a.in.sin_port = htons(port);
        } else {
                assert_int_equal(inet_pton(AF_INET6, host, &a.in6.sin6_addr), 1);
                a.in6.sin6_family = AF_INET6;
                a.in6.sin6_port = htons(port);
        }
        return a;
}

static void test_listen_port_only(void **state) {
        union sockaddr_in46 a;
        bool any = false;
        const char *why = "unset";

        assert_int_equal(addr_parse_listen("7788", &a, &any, &why), 0);
        assert_true(any);
        assert_null(why);
        assert_int_equal(a.sa.sa_family, AF_INET6);
        assert_memory_equal(&a.in6.sin6_addr, &in6addr_any, sizeof(in6addr_any));
        assert_int_equal(addr_port(&a), 7788);
        assert_int_equal(ntohs(a.in6.sin6_port), 7788);
        assert_int_equal(addr_len(&a), sizeof(struct sockaddr_in6));

        assert_int_equal(addr_parse_listen("0", &a, &any, &why), 0);
        assert_true(any);
        assert_int_equal(addr_port(&a), 0);
        assert_int_equal(addr_parse_listen("65535", &a, &any, &why), 0);
        assert_int_equal(addr_port(&a), 65535);
}

static void test_listen_v4(void **state) {
        union sockaddr_in46 a;
        bool any = true;
        const char *why;

        assert_int_equal(addr_parse_listen("127.0.0.1:80", &a, &any, &why), 0);
        assert_false(any);
        assert_int_equal(a.sa.sa_family, AF_INET);
        assert_int_equal(ntohl(a.in.sin_addr.s_addr), 0x7f000001);
        assert_int_equal(addr_port(&a), 80);
        assert_int_equal(addr_len(&a), sizeof(struct sockaddr_in));
}

static void test_listen_v6(void **state) {
        union sockaddr_in46 a, want = mk("::1", 80);
        bool any = true;
        const char *why;

        assert_int_equal(addr_parse_listen("[::1]:80", &a, &any, &why), 0);
        assert_false(any);
        assert_int_equal(a.sa.sa_family, AF_INET6);
        assert_memory_equal(&a.in6.sin6_addr, &want.in6.sin6_addr, 16);
        assert_int_equal(addr_port(&a), 80);

        assert_int_equal(addr_parse_listen("[2001:db8::5]:7788", &a, &any, &why), 0);
        want = mk("2001:db8::5", 7788);
        assert_true(addr_equal(&a, &want));
}

static void test_listen_star(void **state) {
        union sockaddr_in46 a;
        bool any = false;
        const char *why;

        assert_int_equal(addr_parse_listen("*:80", &a, &any, &why), 0);
        assert_true(any);
        assert_int_equal(a.sa.sa_family, AF_INET6);
        assert_memory_equal(&a.in6.sin6_addr, &in6addr_any, sizeof(in6addr_any));
        assert_int_equal(addr_port(&a), 80);
}

static void test_listen_bad(void **state) {
        static const char *const bad[] = {
                "host:80",       /* names are rejected */
                "localhost:80",
                "1.2.3.4",       /* no port */
                "1.2.3.4:70000", /* port out of range */
                "1.2.3.4:65536",
                "1.2.3.4:",
                "1.2.3.4:-1",
                "1.2.3.4:80x",
                "1.2.3.4:+80",
                "[::1",
                "[::1]",
                "[::1]80",
                "::1",           /* v6 needs brackets when a port follows */
                "",
                "70000",
                "-1",
                "1.2.3.256:80",
                "[::1]:99999999999999999999",
                "[fe80::1%nosuchif999]:80",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                union sockaddr_in46 a;
                bool any;
                const char *why = NULL;

                print_message("bad listen address '%s'\n", bad[i]);
                assert_int_equal(addr_parse_listen(bad[i], &a, &any, &why), -EINVAL);
                assert_non_null(why);
                assert_true(strlen(why) > 0);
        }
}

static void test_listen_reason(void **state) {
        union sockaddr_in46 a;
        bool any;
        const char *why;

        assert_int_equal(addr_parse_listen("host:80", &a, &any, &why), -EINVAL);
        assert_non_null(strstr(why, "numeric"));
        assert_int_equal(addr_parse_listen("1.2.3.4:70000", &a, &any, &why), -EINVAL);
        assert_non_null(strstr(why, "65535"));
}

static void test_parse(void **state) {
        union sockaddr_in46 a, want;

        assert_int_equal(addr_parse("::1", &a), 0);
        want = mk("::1", 0);
        assert_true(addr_equal(&a, &want));

        assert_int_equal(addr_parse("[::1]:7788", &a), 0);
        want = mk("::1", 7788);
        assert_true(addr_equal(&a, &want));

        assert_int_equal(addr_parse("127.0.0.1:7788", &a), 0);
        want = mk("127.0.0.1", 7788);
        assert_true(addr_equal(&a, &want));
        assert_int_equal(a.sa.sa_family, AF_INET);

        assert_int_equal(addr_parse("127.0.0.1", &a), 0);
        assert_int_equal(a.sa.sa_family, AF_INET);
        assert_int_equal(addr_port(&a), 0);

        assert_int_equal(addr_parse("2001:db8::1", &a), 0);
        assert_int_equal(a.sa.sa_family, AF_INET6);

        assert_int_equal(addr_parse("localhost", &a), -EINVAL);
        assert_int_equal(addr_parse("localhost:80", &a), -EINVAL);
        assert_int_equal(addr_parse("", &a), -EINVAL);
        assert_int_equal(addr_parse("1.2.3.4:70000", &a), -EINVAL);
        assert_int_equal(addr_parse("[::1", &a), -EINVAL);
        assert_int_equal(addr_parse("[::1]x", &a), -EINVAL);
        assert_int_equal(addr_parse("1.2.3", &a), -EINVAL);
        assert_int_equal(addr_parse("[1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17:18:19:20]:1", &a), -EINVAL);
}

static void test_normalize(void **state) {
        union sockaddr_in46 a = mk("::ffff:1.2.3.4", 4242), want4 = mk("1.2.3.4", 4242);
        union sockaddr_in46 v6 = mk("2001:db8::1", 80), v6copy = v6;
        union sockaddr_in46 v4 = mk("10.0.0.1", 1), v4copy = v4;

        addr_normalize(&a);
        assert_int_equal(a.sa.sa_family, AF_INET);
        assert_int_equal(ntohl(a.in.sin_addr.s_addr), 0x01020304);
        assert_int_equal(addr_port(&a), 4242);
        assert_true(addr_equal(&a, &want4));
        assert_int_equal(addr_len(&a), sizeof(struct sockaddr_in));

        addr_normalize(&v6);
        assert_memory_equal(&v6, &v6copy, sizeof(v6));
        addr_normalize(&v4);
        assert_memory_equal(&v4, &v4copy, sizeof(v4));

        /* ::1 and IPv4-compatible ::1.2.3.4 are not mapped addresses */
        v6 = mk("::1.2.3.4", 5);
        v6copy = v6;
        addr_normalize(&v6);
        assert_memory_equal(&v6, &v6copy, sizeof(v6));
}

static void test_format(void **state) {
        char buf[ADDR_STRLEN];
        union sockaddr_in46 a;

        a = mk("1.2.3.4", 80);
        assert_string_equal(addr_format(&a, buf, sizeof(buf)), "1.2.3.4:80");
        assert_string_equal(addr_format_host(&a, buf, sizeof(buf)), "1.2.3.4");
        /* the IPv4 digits written by hand: every width, and the ends */
        assert_int_equal(addr_parse("0.0.0.0:0", &a), 0);
        assert_string_equal(addr_format(&a, buf, sizeof(buf)), "0.0.0.0:0");
        assert_int_equal(addr_parse("255.255.255.255:65535", &a), 0);
        assert_string_equal(addr_format(&a, buf, sizeof(buf)), "255.255.255.255:65535");
        assert_int_equal(addr_parse("10.200.9.100:7788", &a), 0);
        assert_string_equal(addr_format(&a, buf, sizeof(buf)), "10.200.9.100:7788");
        assert_string_equal(addr_format_host(&a, buf, sizeof(buf)), "10.200.9.100");
        assert_int_equal(addr_parse("1.2.3.4:80", &a), 0);

        a = mk("::1", 80);
        assert_string_equal(addr_format(&a, buf, sizeof(buf)), "[::1]:80");
        assert_string_equal(addr_format_host(&a, buf, sizeof(buf)), "::1");

        a = mk("2001:db8::abcd", 65535);
        assert_string_equal(addr_format(&a, buf, sizeof(buf)), "[2001:db8::abcd]:65535");

        a = mk("::ffff:1.2.3.4", 9);
        assert_string_equal(addr_format(&a, buf, sizeof(buf)), "[::ffff:1.2.3.4]:9");
        addr_normalize(&a);
        assert_string_equal(addr_format(&a, buf, sizeof(buf)), "1.2.3.4:9");

        /* the longest address fits ADDR_STRLEN */
        a = mk("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 65535);
        addr_format(&a, buf, sizeof(buf));
        assert_true(strlen(buf) < sizeof(buf));
        assert_int_equal(buf[0], '[');
        assert_non_null(strstr(buf, "]:65535"));

        /* a short buffer truncates and stays terminated */
        a = mk("1.2.3.4", 80);
        addr_format(&a, buf, 5);
        assert_string_equal(buf, "1.2.");

        /* parse and format round-trip */
        assert_int_equal(addr_parse("[2001:db8::7]:1234", &a), 0);
        assert_string_equal(addr_format(&a, buf, sizeof(buf)), "[2001:db8::7]:1234");
        assert_int_equal(addr_parse("192.168.1.1:22", &a), 0);
        assert_string_equal(addr_format(&a, buf, sizeof(buf)), "192.168.1.1:22");
}

static void test_equal(void **state) {
        union sockaddr_in46 a = mk("1.2.3.4", 80), b = mk("1.2.3.4", 80);

        assert_true(addr_equal(&a, &b));
        b = mk("1.2.3.4", 81);
        assert_false(addr_equal(&a, &b));
        b = mk("1.2.3.5", 80);
        assert_false(addr_equal(&a, &b));
        b = mk("::ffff:1.2.3.4", 80); /* equal only after normalizing */
        assert_false(addr_equal(&a, &b));
        addr_normalize(&b);
        assert_true(addr_equal(&a, &b));

        a = mk("::1", 80);
        b = mk("::1", 80);
        assert_true(addr_equal(&a, &b));
        b = mk("::2", 80);
        assert_false(addr_equal(&a, &b));
        b = mk("::1", 8080);
        assert_false(addr_equal(&a, &b));
}

static void test_cidr_parse(void **state) {
        struct cidr c;
        char buf[64];

        assert_int_equal(cidr_parse("10.1.2.3/8", &c), 0);
        assert_int_equal(c.family, AF_INET);
        assert_int_equal(c.prefix, 8);
        assert_int_equal(c.bytes[0], 10);
        assert_int_equal(c.bytes[1], 0); /* host bits masked */
        assert_int_equal(c.bytes[2], 0);
        assert_int_equal(c.bytes[3], 0);
        assert_string_equal(cidr_format(&c, buf, sizeof(buf)), "10.0.0.0/8");

        assert_int_equal(cidr_parse("192.168.255.255/20", &c), 0);
        assert_string_equal(cidr_format(&c, buf, sizeof(buf)), "192.168.240.0/20");

        assert_int_equal(cidr_parse("2001:db8:ffff::1/32", &c), 0);
        assert_int_equal(c.family, AF_INET6);
        assert_int_equal(c.prefix, 32);
        assert_string_equal(cidr_format(&c, buf, sizeof(buf)), "2001:db8::/32");

        assert_int_equal(cidr_parse("2001:db8::ffff/127", &c), 0);
        assert_string_equal(cidr_format(&c, buf, sizeof(buf)), "2001:db8::fffe/127");

        assert_int_equal(cidr_parse("1.2.3.4", &c), 0);
        assert_int_equal(c.family, AF_INET);
        assert_int_equal(c.prefix, 32);
        assert_string_equal(cidr_format(&c, buf, sizeof(buf)), "1.2.3.4/32");

        assert_int_equal(cidr_parse("::1", &c), 0);
        assert_int_equal(c.family, AF_INET6);
        assert_int_equal(c.prefix, 128);
        assert_string_equal(cidr_format(&c, buf, sizeof(buf)), "::1/128");

        assert_int_equal(cidr_parse("0.0.0.0/0", &c), 0);
        assert_int_equal(c.prefix, 0);
        assert_int_equal(cidr_parse("255.255.255.255/0", &c), 0);
        assert_string_equal(cidr_format(&c, buf, sizeof(buf)), "0.0.0.0/0");
        assert_int_equal(cidr_parse("::/0", &c), 0);
        assert_int_equal(c.family, AF_INET6);
        assert_int_equal(cidr_parse("1.2.3.4/32", &c), 0);
        assert_int_equal(cidr_parse("::1/128", &c), 0);

        /* IPv4-mapped prefixes become IPv4 prefixes */
        assert_int_equal(cidr_parse("::ffff:10.0.0.0/104", &c), 0);
        assert_int_equal(c.family, AF_INET);
        assert_int_equal(c.prefix, 8);
        assert_string_equal(cidr_format(&c, buf, sizeof(buf)), "10.0.0.0/8");
        assert_int_equal(cidr_parse("::ffff:10.9.8.7", &c), 0);
        assert_int_equal(c.family, AF_INET);
        assert_int_equal(c.prefix, 32);
        assert_string_equal(cidr_format(&c, buf, sizeof(buf)), "10.9.8.7/32");
}

static void test_cidr_parse_bad(void **state) {
        static const char *const bad[] = {
                "1.2.3.4/33", "::1/129", "1.2.3.4/abc", "1.2.3.4/", "/8", "", "1.2.3.4/-1", "1.2.3.4/+8",
                "1.2.3.4/8x", "1.2.3.4/8/8", "10.0.0/8", "host/8", "1.2.3.4/ 8", "1.2.3.4/99999999999999999999",
                "[::1]/64", "1.2.3.4:80/8",
        };
        struct cidr c;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                print_message("bad cidr '%s'\n", bad[i]);
                assert_int_equal(cidr_parse(bad[i], &c), -EINVAL);
        }
}

static void test_cidr_match(void **state) {
        struct cidr c;
        union sockaddr_in46 a;

        assert_int_equal(cidr_parse("10.0.0.0/8", &c), 0);
        a = mk("10.255.1.2", 1);
        assert_true(cidr_match(&c, &a));
        a = mk("10.0.0.0", 1);
        assert_true(cidr_match(&c, &a));
        a = mk("11.0.0.1", 1);
        assert_false(cidr_match(&c, &a));
        a = mk("9.255.255.255", 1);
        assert_false(cidr_match(&c, &a));

        /* a prefix that ends mid-byte */
        assert_int_equal(cidr_parse("192.168.16.0/20", &c), 0);
        a = mk("192.168.31.255", 1);
        assert_true(cidr_match(&c, &a));
        a = mk("192.168.32.0", 1);
        assert_false(cidr_match(&c, &a));
        a = mk("192.168.15.255", 1);
        assert_false(cidr_match(&c, &a));

        /* IPv6 */
        assert_int_equal(cidr_parse("2001:db8::/32", &c), 0);
        a = mk("2001:db8:1::5", 1);
        assert_true(cidr_match(&c, &a));
        a = mk("2001:db9::5", 1);
        assert_false(cidr_match(&c, &a));
        assert_int_equal(cidr_parse("fe80::/10", &c), 0);
        a = mk("febf::1", 1);
        assert_true(cidr_match(&c, &a));
        a = mk("fec0::1", 1);
        assert_false(cidr_match(&c, &a));

        /* exact hosts */
        assert_int_equal(cidr_parse("::1", &c), 0);
        a = mk("::1", 7);
        assert_true(cidr_match(&c, &a));
        a = mk("::2", 7);
        assert_false(cidr_match(&c, &a));
        assert_int_equal(cidr_parse("1.2.3.4", &c), 0);
        a = mk("1.2.3.4", 7);
        assert_true(cidr_match(&c, &a));
        a = mk("1.2.3.5", 7);
        assert_false(cidr_match(&c, &a));

        /* /0 matches its whole family, and only it */
        assert_int_equal(cidr_parse("0.0.0.0/0", &c), 0);
        a = mk("255.255.255.255", 1);
        assert_true(cidr_match(&c, &a));
        a = mk("0.0.0.0", 1);
        assert_true(cidr_match(&c, &a));
        a = mk("::1", 1);
        assert_false(cidr_match(&c, &a));
        assert_int_equal(cidr_parse("::/0", &c), 0);
        a = mk("ffff::1", 1);
        assert_true(cidr_match(&c, &a));
        a = mk("::", 1);
        assert_true(cidr_match(&c, &a));
        a = mk("1.2.3.4", 1);
        assert_false(cidr_match(&c, &a));

        /* an IPv4 CIDR matches an IPv4-mapped IPv6 peer (dual-stack socket) */
        assert_int_equal(cidr_parse("10.0.0.0/8", &c), 0);
        a = mk("::ffff:10.1.2.3", 1);
        assert_true(cidr_match(&c, &a));
        a = mk("::ffff:11.1.2.3", 1);
        assert_false(cidr_match(&c, &a));
        /* and so does a mapped CIDR, which became IPv4 */
        assert_int_equal(cidr_parse("::ffff:10.0.0.0/104", &c), 0);
        a = mk("10.3.3.3", 1);
        assert_true(cidr_match(&c, &a));
        a = mk("::ffff:10.3.3.3", 1);
        assert_true(cidr_match(&c, &a));

        /* family mismatch */
        assert_int_equal(cidr_parse("10.0.0.0/8", &c), 0);
        a = mk("::a00:1", 1); /* same low bytes, but IPv6 */
        assert_false(cidr_match(&c, &a));
        assert_int_equal(cidr_parse("::/96", &c), 0);
        a = mk("10.0.0.1", 1);
        assert_false(cidr_match(&c, &a));

        /* matching does not change the peer */
        a = mk("::ffff:10.1.2.3", 1);
        {
                union sockaddr_in46 copy = a;
                assert_int_equal(cidr_parse("10.0.0.0/8", &c), 0);
                cidr_match(&c, &a);
                assert_memory_equal(&a, &copy, sizeof(a));
        }
}

static void test_cidr_match_every_prefix(void **state) {
        /* For every v4 prefix length, the network's first and last address
         * match and the addresses just outside do not. */
        for (unsigned p = 1; p <= 32; p++) {
                char s[32];
                struct cidr c;
                union sockaddr_in46 a;
                uint32_t net = 0xC0A80000u & (p == 32 ? 0xffffffffu : ~(0xffffffffu >> p));
                uint32_t last = net | (p == 32 ? 0 : (0xffffffffu >> p));

                snprintf(s, sizeof(s), "192.168.0.0/%u", p);
                assert_int_equal(cidr_parse(s, &c), 0);
                memset(&a, 0, sizeof(a));
                a.in.sin_family = AF_INET;
                a.in.sin_addr.s_addr = htonl(net);
                assert_true(cidr_match(&c, &a));
                a.in.sin_addr.s_addr = htonl(last);
                assert_true(cidr_match(&c, &a));
                a.in.sin_addr.s_addr = htonl(last + 1);
                if (last != 0xffffffffu)
                        assert_false(cidr_match(&c, &a));
                a.in.sin_addr.s_addr = htonl(net - 1);
                if (net != 0)
                        assert_false(cidr_match(&c, &a));
        }
}

static void test_cidr_format_short(void **state) {
        struct cidr c;
        char buf[6];

        assert_int_equal(cidr_parse("10.0.0.0/8", &c), 0);
        cidr_format(&c, buf, sizeof(buf));
        assert_string_equal(buf, "10.0.");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_listen_port_only),
                cmocka_unit_test(test_listen_v4),
                cmocka_unit_test(test_listen_v6),
                cmocka_unit_test(test_listen_star),
                cmocka_unit_test(test_listen_bad),
                cmocka_unit_test(test_listen_reason),
                cmocka_unit_test(test_parse),
                cmocka_unit_test(test_normalize),
                cmocka_unit_test(test_format),
                cmocka_unit_test(test_equal),
                cmocka_unit_test(test_cidr_parse),
                cmocka_unit_test(test_cidr_parse_bad),
                cmocka_unit_test(test_cidr_match),
                cmocka_unit_test(test_cidr_match_every_prefix),
                cmocka_unit_test(test_cidr_format_short),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
