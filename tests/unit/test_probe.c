/* tcpctl probe's pure parts: targets as users type them, messages that name
 * their sequence number, and ping's statistics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "probe.h"

static void target_ok(const char *s, const char *host, unsigned port) {
        char h[256] = "unset";
        uint16_t p = 0;

        print_message("target '%s'\n", s ? s : "(null)");
        assert_int_equal(probe_parse_target(s, h, sizeof(h), &p), 0);
        assert_string_equal(h, host);
        assert_int_equal(p, port);
}

static void target_bad(const char *s) {
        char h[256];
        uint16_t p;

        print_message("bad target '%s'\n", s);
        assert_int_equal(probe_parse_target(s, h, sizeof(h), &p), -EINVAL);
}

static void test_targets(void **state) {
        target_ok(NULL, "127.0.0.1", 7788);
        target_ok("", "127.0.0.1", 7788);
        target_ok(":7", "127.0.0.1", 7);
        target_ok("127.0.0.1", "127.0.0.1", 7788);
        target_ok("127.0.0.1:7", "127.0.0.1", 7);
        target_ok("localhost", "localhost", 7788);
        target_ok("localhost:65535", "localhost", 65535);
        target_ok("::1", "::1", 7788);
        target_ok("fe80::1%lo", "fe80::1%lo", 7788);
        target_ok("[::1]", "::1", 7788);
        target_ok("[::1]:7789", "::1", 7789);
        target_ok("[2001:db8::5]:1", "2001:db8::5", 1);

        target_bad("localhost:");
        target_bad("localhost:0");
        target_bad("localhost:65536");
        target_bad("localhost:echo");
        target_bad("localhost:-1");
        target_bad("[::1");
        target_bad("[::1]x");
        target_bad("[::1]:");
        target_bad("[]:7788");
        target_bad("a]b");
}

static void test_target_too_long(void **state) {
        char h[8];
        uint16_t p;

        assert_int_equal(probe_parse_target("example.org", h, sizeof(h), &p), -EINVAL);
        assert_int_equal(probe_parse_target("a.org:9", h, sizeof(h), &p), 0);
        assert_string_equal(h, "a.org");
}

static void test_messages(void **state) {
        char a[64], b[64];
        uint64_t seq;

        probe_message(1, a, sizeof(a));
        probe_message(2, b, sizeof(b));
        assert_memory_equal(a, "seq=1 ", 6);
        assert_memory_equal(b, "seq=2 ", 6);
        assert_int_equal(a[63], '\n');
        /* every byte after the number differs between neighbours */
        for (size_t i = 6; i < 63; i++)
                assert_true(a[i] != b[i]);
        assert_int_equal(probe_message_seq(b, sizeof(b), &seq), 0);
        assert_int_equal(seq, 2);

        /* the smallest message still carries a nine-digit number whole */
        probe_message(999999999, a, PROBE_SIZE_MIN);
        assert_memory_equal(a, "seq=999999999 ", 14);
        assert_int_equal(a[PROBE_SIZE_MIN - 1], '\n');
        assert_int_equal(probe_message_seq(a, PROBE_SIZE_MIN, &seq), 0);
        assert_int_equal(seq, 999999999);

        /* and what is not one of ours names no number */
        assert_int_equal(probe_message_seq("hello world", 11, &seq), -EINVAL);
        assert_int_equal(probe_message_seq("seq=12", 6, &seq), -EINVAL);
        assert_int_equal(probe_message_seq("seq= x", 6, &seq), -EINVAL);
        assert_int_equal(probe_message_seq("seq=1x x", 8, &seq), -EINVAL);
}

static void test_stats(void **state) {
        struct probe_stats s = { 0 };
        char buf[32];

        assert_int_equal(probe_stats_loss_percent(&s), 0);
        assert_true(probe_stats_mdev_usec(&s) == 0);
        probe_stats_add(&s, true, 100);
        probe_stats_add(&s, true, 300);
        probe_stats_add(&s, false, 0);
        probe_stats_add(&s, true, 200);
        assert_int_equal(s.sent, 4);
        assert_int_equal(s.verified, 3);
        assert_int_equal(probe_stats_lost(&s), 1);
        assert_int_equal(probe_stats_loss_percent(&s), 25);
        assert_int_equal(s.min_usec, 100);
        assert_int_equal(s.max_usec, 300);
        assert_true(s.mean_usec > 199.999 && s.mean_usec < 200.001);
        /* sqrt((100^2 + 100^2 + 0) / 3) = 81.65 */
        assert_true(probe_stats_mdev_usec(&s) > 81.64 && probe_stats_mdev_usec(&s) < 81.66);

        /* any loss shows: one of 1000 is 1%, not 0% */
        s = (struct probe_stats) { 0 };
        for (int i = 0; i < 999; i++)
                probe_stats_add(&s, true, 50);
        probe_stats_add(&s, false, 0);
        assert_int_equal(probe_stats_loss_percent(&s), 1);
        assert_true(probe_stats_mdev_usec(&s) == 0);

        assert_string_equal(probe_format_rtt(45, buf, sizeof(buf)), "0.045");
        assert_string_equal(probe_format_rtt(1234567, buf, sizeof(buf)), "1234.567");
        assert_string_equal(probe_format_rtt(0, buf, sizeof(buf)), "0.000");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_targets),
                cmocka_unit_test(test_target_too_long),
                cmocka_unit_test(test_messages),
                cmocka_unit_test(test_stats),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
