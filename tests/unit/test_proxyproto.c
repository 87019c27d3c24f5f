/* Unit tests for lib/proxyproto: PROXY protocol headers built and parsed,
 * whole, in pieces, and broken. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "addr.h"
#include "proxyproto.h"

static union sockaddr_in46 addr(const char *s) {
        union sockaddr_in46 a;

        assert_int_equal(addr_parse(s, &a), 0);
        return a;
}

/* Built, then parsed back whole and byte by byte (0 until the last). */
static void round_trip(int version, const char *src, const char *dst) {
        union sockaddr_in46 s = addr(src), d = addr(dst), ps, pd;
        char buf[PROXY_HEADER_MAX + 8];
        const char *why = NULL;
        bool local = true;
        size_t n = proxy_header_build(version, &s, &d, buf);

        print_message("v%d %s -> %s: %zu bytes\n", version, src, dst, n);
        memcpy(buf + n, "data", 4); /* the client's first bytes follow */
        assert_int_equal(proxy_header_parse(buf, n + 4, &ps, &pd, &local, &why), (int) n);
        assert_false(local);
        assert_true(addr_equal(&ps, &s));
        assert_true(addr_equal(&pd, &d));
        for (size_t k = 0; k < n; k++)
                assert_int_equal(proxy_header_parse(buf, k, &ps, &pd, &local, &why), 0);
}

static void test_round_trips(void **state) {
        round_trip(1, "192.0.2.7:51234", "198.51.100.1:443");
        round_trip(2, "192.0.2.7:51234", "198.51.100.1:443");
        round_trip(1, "[2001:db8::7]:65535", "[2001:db8::1]:1");
        round_trip(2, "[2001:db8::7]:65535", "[2001:db8::1]:1");
        round_trip(1, "10.0.0.1:0", "10.0.0.2:0");
}

static void test_v1_text(void **state) {
        union sockaddr_in46 s = addr("192.0.2.7:51234"), d = addr("198.51.100.1:443");
        char buf[PROXY_HEADER_MAX];
        size_t n = proxy_header_build(1, &s, &d, buf);

        buf[n] = 0;
        assert_string_equal(buf, "PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n");
}

static void test_v2_bytes(void **state) {
        static const unsigned char want[] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
                                              0x21, 0x11, 0x00, 0x0c, 192,  0,    2,    7,    198,  51,   100,  1,
                                              0xc8, 0x22, 0x01, 0xbb };
        union sockaddr_in46 s = addr("192.0.2.7:51234"), d = addr("198.51.100.1:443");
        char buf[PROXY_HEADER_MAX];

        assert_int_equal(proxy_header_build(2, &s, &d, buf), sizeof(want));
        assert_memory_equal(buf, want, sizeof(want));
}

static void test_local_forms(void **state) {
        union sockaddr_in46 s = addr("192.0.2.7:1"), d = addr("[2001:db8::1]:2"), ps, pd;
        char buf[PROXY_HEADER_MAX];
        const char *why;
        bool local = false;
        size_t n;

        /* mixed families: UNKNOWN and LOCAL, which keep the connection's own */
        n = proxy_header_build(1, &s, &d, buf);
        assert_int_equal(n, 15);
        assert_memory_equal(buf, "PROXY UNKNOWN\r\n", 15);
        assert_int_equal(proxy_header_parse(buf, n, &ps, &pd, &local, &why), 15);
        assert_true(local);
        n = proxy_header_build(2, &s, &d, buf);
        local = false;
        assert_int_equal(proxy_header_parse(buf, n, &ps, &pd, &local, &why), 16);
        assert_true(local);
        /* UNKNOWN may carry anything up to its CRLF */
        local = false;
        assert_int_equal(proxy_header_parse("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nx", 36, &ps, &pd, &local, &why), 35);
        assert_true(local);
}

static void bad(const char *buf, size_t len, const char *why_part) {
        union sockaddr_in46 s, d;
        const char *why = NULL;
        bool local;

        print_message("bad: %.*s\n", (int) len, buf);
        assert_int_equal(proxy_header_parse(buf, len, &s, &d, &local, &why), -EBADMSG);
        assert_non_null(why);
        assert_non_null(strstr(why, why_part));
}

static void test_broken(void **state) {
        char longline[200];

        bad("GET / HTTP/1.0\r\n", 16, "no PROXY header");
        bad("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 30, "not PROXY");
        bad("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", 32, "not PROXY");
        bad("PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n", 34, "bad address");
        bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", 36, "bad address or port");
        bad("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", 33, "port");
        bad("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", 28, "bad address");
        bad("PROXY TCP4 1.2.3.4\n", 19, "stray");
        memset(longline, 'x', sizeof(longline));
        memcpy(longline, "PROXY ", 6);
        bad(longline, sizeof(longline), "longer than 107");
        /* v2: another version, another command, too short, too long */
        bad("\r\n\r\n\0\r\nQUIT\n\x11\x11\x00\x0c", 16, "version");
        bad("\r\n\r\n\0\r\nQUIT\n\x22\x11\x00\x0c", 16, "command");
        bad("\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x04xxxx", 20, "too short");
        bad("\r\n\r\n\0\r\nQUIT\n\x21\x11\x10\x00", 16, "longer than");
}

static void test_signature(void **state) {
        assert_true(proxy_signature("PROXY TCP4", 10));
        assert_true(proxy_signature("\r\n\r\n\0\r\nQUIT\nxx", 14));
        assert_false(proxy_signature("PROX", 4));
        assert_false(proxy_signature("hello world", 11));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trips), cmocka_unit_test(test_v1_text),  cmocka_unit_test(test_v2_bytes),
                cmocka_unit_test(test_local_forms), cmocka_unit_test(test_broken), cmocka_unit_test(test_signature),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
