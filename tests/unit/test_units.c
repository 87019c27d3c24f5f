/* Unit tests for lib/units: durations, sizes, numbers and booleans as admins
 * write them, and the short forms tcpd prints. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "units.h"

#define SEC USEC_PER_SEC
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)

static uint64_t duration_ok(const char *s) {
        uint64_t v = 0xdeadbeef;

        print_message("duration '%s'\n", s);
        assert_int_equal(parse_duration(s, &v), 0);
        return v;
}

static void test_duration(void **state) {
        assert_int_equal(duration_ok("30"), 30 * SEC);
        assert_int_equal(duration_ok("30s"), 30 * SEC);
        assert_int_equal(duration_ok("30sec"), 30 * SEC);
        assert_int_equal(duration_ok("500ms"), 500 * USEC_PER_MSEC);
        assert_int_equal(duration_ok("250us"), 250);
        assert_int_equal(duration_ok("5min"), 5 * MIN);
        assert_int_equal(duration_ok("5m"), 5 * MIN);
        assert_int_equal(duration_ok("2h"), 2 * HOUR);
        assert_int_equal(duration_ok("1d"), DAY);
        assert_int_equal(duration_ok("1min 30s"), 90 * SEC);
        assert_int_equal(duration_ok("1h 2min 3s"), HOUR + 2 * MIN + 3 * SEC);
        assert_int_equal(duration_ok("1min30s"), 90 * SEC);
        assert_int_equal(duration_ok("0"), 0);
        assert_int_equal(duration_ok("0s"), 0);
        assert_int_equal(duration_ok("  7s  "), 7 * SEC);
        /* the largest whole number of days that fits */
        assert_int_equal(duration_ok("213503982d"), 213503982ULL * DAY);
        assert_int_equal(duration_ok("18446744073709551615us"), UINT64_MAX);
        /* fractions, as ping -i 0.2 and systemd's 1.5s */
        assert_int_equal(duration_ok("0.2"), 200 * USEC_PER_MSEC);
        assert_int_equal(duration_ok("1.5s"), 1500 * USEC_PER_MSEC);
        assert_int_equal(duration_ok("1.25min"), 75 * SEC);
        assert_int_equal(duration_ok("0.5ms"), 500);
        assert_int_equal(duration_ok("1.0000001s"), SEC); /* below a microsecond: dropped */
        assert_int_equal(duration_ok("0.000001"), 1);
        assert_int_equal(duration_ok("1.5min 30.5s"), 120 * SEC + 500 * USEC_PER_MSEC);
}

static void test_duration_bad(void **state) {
        static const struct {
                const char *s;
                int err;
        } bad[] = {
                { "", -EINVAL },
                { "   ", -EINVAL },
                { "abc", -EINVAL },
                { "5x", -EINVAL },
                { "5parsecs", -EINVAL },
                { "5sx", -EINVAL },
                { "5verylongunit", -EINVAL },
                { "-1", -EINVAL },
                { "+1", -EINVAL },
                { "1.s", -EINVAL },
                { ".5s", -EINVAL },
                { "1..5s", -EINVAL },
                { "1.5.5s", -EINVAL },
                { "s", -EINVAL },
                { "5 s x", -EINVAL },
                { "99999999999999999999", -ERANGE },
                { "99999999999999999999us", -ERANGE },
                { "213503983d", -ERANGE },
                { "18446744073709551615s", -ERANGE },
                { "18446744073709551615us 1us", -ERANGE },
                { "213503982d 213503982d", -ERANGE },
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                uint64_t v = 42;

                print_message("bad duration '%s'\n", bad[i].s);
                assert_int_equal(parse_duration(bad[i].s, &v), bad[i].err);
                assert_int_equal(v, 42); /* untouched on error */
        }
}

static void test_size(void **state) {
        static const struct {
                const char *s;
                uint64_t v;
        } ok[] = {
                { "65536", 65536 },
                { "0", 0 },
                { "64K", 64 * 1024 },
                { "64k", 64 * 1024 },
                { "1M", 1024 * 1024 },
                { "1G", 1024ULL * 1024 * 1024 },
                { "64KiB", 64 * 1024 },
                { "64KB", 64 * 1024 },
                { "3MiB", 3 * 1024 * 1024 },
                { "512B", 512 },
                { "16G", 16ULL * 1024 * 1024 * 1024 },
                { "18446744073709551615", UINT64_MAX },
        };
        static const struct {
                const char *s;
                int err;
        } bad[] = {
                { "1T", -EINVAL },
                { "K", -EINVAL },
                { "-1", -EINVAL },
                { "", -EINVAL },
                { "1.5K", -EINVAL },
                { "64 K", -EINVAL },
                { "64KiBx", -EINVAL },
                { "64Ki", -EINVAL },
                { "64BB", -EINVAL },
                { "64iB", -EINVAL },
                { "99999999999999999999", -ERANGE },
                { "17179869184G", -ERANGE }, /* 2^34 GiB = 2^64 */
        };

        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                uint64_t v = 42;

                print_message("size '%s'\n", ok[i].s);
                assert_int_equal(parse_size(ok[i].s, &v), 0);
                assert_int_equal(v, ok[i].v);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                uint64_t v = 42;

                print_message("bad size '%s'\n", bad[i].s);
                assert_int_equal(parse_size(bad[i].s, &v), bad[i].err);
                assert_int_equal(v, 42);
        }
}

static void test_uint(void **state) {
        uint64_t v = 42;

        assert_int_equal(parse_uint("0", 10, &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(parse_uint("10", 10, &v), 0);
        assert_int_equal(v, 10);
        assert_int_equal(parse_uint("18446744073709551615", UINT64_MAX, &v), 0);
        assert_int_equal(v, UINT64_MAX);

        v = 42;
        assert_int_equal(parse_uint("11", 10, &v), -ERANGE);
        assert_int_equal(parse_uint("18446744073709551616", UINT64_MAX, &v), -ERANGE);
        assert_int_equal(parse_uint("", 10, &v), -EINVAL);
        assert_int_equal(parse_uint(NULL, 10, &v), -EINVAL);
        assert_int_equal(parse_uint("-1", 10, &v), -EINVAL);
        assert_int_equal(parse_uint("+1", 10, &v), -EINVAL);
        assert_int_equal(parse_uint(" 1", 10, &v), -EINVAL);
        assert_int_equal(parse_uint("1 ", 10, &v), -EINVAL);
        assert_int_equal(parse_uint("5x", 10, &v), -EINVAL);
        assert_int_equal(parse_uint("0x5", 10, &v), -EINVAL);
        assert_int_equal(v, 42);
}

static void test_bool(void **state) {
        static const char *const yes[] = { "1", "yes", "true", "on", "YES", "True", "On" };
        static const char *const no[] = { "0", "no", "false", "off", "NO", "False", "OFF" };
        static const char *const bad[] = { "", "2", "y", "n", "yess", "enable", " yes", "yes " };

        for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
                int b = -1;
                assert_int_equal(parse_bool(yes[i], &b), 0);
                assert_int_equal(b, 1);
        }
        for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
                int b = -1;
                assert_int_equal(parse_bool(no[i], &b), 0);
                assert_int_equal(b, 0);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                int b = -1;
                print_message("bad bool '%s'\n", bad[i]);
                assert_int_equal(parse_bool(bad[i], &b), -EINVAL);
                assert_int_equal(b, -1);
        }
}

static void test_format_duration(void **state) {
        char buf[64];

        assert_string_equal(format_duration(0, buf, sizeof(buf)), "0");
        assert_string_equal(format_duration(5, buf, sizeof(buf)), "5us");
        assert_string_equal(format_duration(120 * USEC_PER_MSEC, buf, sizeof(buf)), "120ms");
        assert_string_equal(format_duration(45 * SEC, buf, sizeof(buf)), "45s");
        assert_string_equal(format_duration(2 * HOUR + 3 * MIN, buf, sizeof(buf)), "2h 3min");
        assert_string_equal(format_duration(90 * SEC, buf, sizeof(buf)), "1min 30s");
        assert_string_equal(format_duration(5 * MIN, buf, sizeof(buf)), "5min");
        assert_string_equal(format_duration(DAY, buf, sizeof(buf)), "1d");
        assert_string_equal(format_duration(DAY + 2 * HOUR, buf, sizeof(buf)), "1d 2h");
        /* two units at most, and no "0min" */
        assert_string_equal(format_duration(2 * HOUR + 3 * MIN + 4 * SEC, buf, sizeof(buf)), "2h 3min");
        assert_string_equal(format_duration(HOUR + 5 * SEC, buf, sizeof(buf)), "1h");
        /* once seconds show, milliseconds do not */
        assert_string_equal(format_duration(SEC + 500 * USEC_PER_MSEC, buf, sizeof(buf)), "1s");

        /* what it prints, parse_duration reads back (for whole units) */
        {
                static const uint64_t vals[] = { 0, 120 * USEC_PER_MSEC, 45 * SEC, 2 * HOUR + 3 * MIN, 3 * DAY + HOUR,
                                                 90 * SEC, 7 };
                for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
                        uint64_t back;
                        format_duration(vals[i], buf, sizeof(buf));
                        assert_int_equal(parse_duration(buf, &back), 0);
                        assert_int_equal(back, vals[i]);
                }
        }

        /* a short buffer stays terminated */
        {
                char small[4];
                format_duration(2 * HOUR + 3 * MIN, small, sizeof(small));
                assert_true(memchr(small, 0, sizeof(small)) != NULL);
        }
}

static void test_format_size(void **state) {
        char buf[32];

        assert_string_equal(format_size(0, buf, sizeof(buf)), "0B");
        assert_string_equal(format_size(512, buf, sizeof(buf)), "512B");
        assert_string_equal(format_size(1023, buf, sizeof(buf)), "1023B");
        assert_string_equal(format_size(1024, buf, sizeof(buf)), "1.0K");
        assert_string_equal(format_size(1536, buf, sizeof(buf)), "1.5K");
        assert_string_equal(format_size(64 * 1024, buf, sizeof(buf)), "64.0K");
        assert_string_equal(format_size(20 * 1024 * 1024, buf, sizeof(buf)), "20.0M");
        assert_string_equal(format_size(3ULL * 1024 * 1024 * 1024, buf, sizeof(buf)), "3.0G");
        assert_string_equal(format_size(5ULL << 40, buf, sizeof(buf)), "5.0T");
        assert_string_equal(format_size(UINT64_MAX, buf, sizeof(buf)), "16.0E");

        /* just below a unit boundary */
        format_size(1024 * 1024 - 1, buf, sizeof(buf));
        print_message("1M - 1 byte: %s\n", buf);
        assert_int_equal(buf[strlen(buf) - 1] == 'K' || buf[strlen(buf) - 1] == 'M', 1);
        /* Regression (fixed): format_size picks the unit before rounding, so 1048575 bytes
         * print as "1024.0K" (and 1073741823 as "1024.0M") instead of "1.0M". */
        assert_string_equal(buf, "1.0M");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_duration),
                cmocka_unit_test(test_duration_bad),
                cmocka_unit_test(test_size),
                cmocka_unit_test(test_uint),
                cmocka_unit_test(test_bool),
                cmocka_unit_test(test_format_duration),
                cmocka_unit_test(test_format_size),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
