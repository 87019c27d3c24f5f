/* Unit tests for lib/words: command lines split as a unit file splits
 * ExecStart=. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "words.h"

static void split_ok(const char *s, const char *const *want) {
        char **w = NULL;
        const char *why = NULL;
        size_t n = 0;

        while (want[n])
                n++;
        print_message("split '%s'\n", s);
        assert_int_equal(words_split(s, &w, &why), (int) n);
        for (size_t i = 0; i < n; i++)
                assert_string_equal(w[i], want[i]);
        assert_null(w[n]);
        words_free(w);
}

static void split_bad(const char *s, const char *why_part) {
        char **w = (char **) 1;
        const char *why = NULL;

        print_message("split '%s' must fail\n", s);
        assert_int_equal(words_split(s, &w, &why), -EINVAL);
        assert_null(w);
        assert_non_null(why);
        assert_non_null(strstr(why, why_part));
}

static void test_plain(void **state) {
        split_ok("/bin/cat", (const char *[]) { "/bin/cat", NULL });
        split_ok("  /usr/lib/git-core/git-daemon --inetd\t--base-path=/srv/git /srv/git ",
                 (const char *[]) { "/usr/lib/git-core/git-daemon", "--inetd", "--base-path=/srv/git", "/srv/git",
                                    NULL });
        split_ok("", (const char *[]) { NULL });
        split_ok("   ", (const char *[]) { NULL });
}

static void test_quotes(void **state) {
        split_ok("/bin/sh -c 'echo hello; exit 3'",
                 (const char *[]) { "/bin/sh", "-c", "echo hello; exit 3", NULL });
        split_ok("/bin/echo \"a b\" 'c \"d\"' \"e 'f'\"",
                 (const char *[]) { "/bin/echo", "a b", "c \"d\"", "e 'f'", NULL });
        /* quotes inside a word join, an empty pair is an empty word */
        split_ok("x\"y z\"w \"\"", (const char *[]) { "xy zw", "", NULL });
        /* no escapes inside single quotes */
        split_ok("'a\\b'", (const char *[]) { "a\\b", NULL });
}

static void test_escapes(void **state) {
        split_ok("a\\ b c\\\\d \"e\\\"f\" g\\nh\\ti",
                 (const char *[]) { "a b", "c\\d", "e\"f", "g\nh\ti", NULL });
        split_ok("KEY=\"two words\" OTHER=1", (const char *[]) { "KEY=two words", "OTHER=1", NULL });
}

static void test_errors(void **state) {
        split_bad("/bin/sh -c 'echo", "single quote");
        split_bad("/bin/echo \"a", "double quote");
        split_bad("a\\", "backslash at the end");
        split_bad("a\\qb", "unknown escape");
}

static void test_append(void **state) {
        char **w = NULL, **add = NULL;
        const char *why;

        assert_int_equal(words_split("A=1 B=2", &w, &why), 2);
        assert_int_equal(words_split("C=3", &add, &why), 1);
        assert_int_equal(words_append(&w, add), 0);
        assert_int_equal(words_count(w), 3);
        assert_string_equal(w[2], "C=3");
        assert_null(w[3]);
        words_free(w);
}

/* What config_print writes reads back as the same words. */
static void test_print_round_trip(void **state) {
        const char *lines[] = { "/bin/sh -c 'echo \"a b\"; exit 3'", "a\\ b \"\" x\\ty \"semi\\;colon #hash\"",
                                "plain words only", "'it''s' \\\\", "ends \"with cr\r\"" };

        for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
                char **a = NULL, **b = NULL, *buf = NULL;
                const char *why;
                size_t len = 0;
                FILE *f = open_memstream(&buf, &len);
                int n = words_split(lines[i], &a, &why);

                assert_true(n > 0);
                words_print(a, f);
                fclose(f);
                print_message("'%s' printed as '%s'\n", lines[i], buf);
                /* no " ;" or " #" that the settings' parser would cut at */
                assert_null(strstr(buf, " ;"));
                assert_null(strstr(buf, " #"));
                /* a control character goes inside quotes: the parser strips a \r at a line's end */
                assert_true(!strchr(buf, '\r') || strchr(buf, '\r')[1] == '"');
                assert_int_equal(words_split(buf, &b, &why), n);
                for (int k = 0; k < n; k++)
                        assert_string_equal(a[k], b[k]);
                words_free(a);
                words_free(b);
                free(buf);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_plain),  cmocka_unit_test(test_quotes), cmocka_unit_test(test_escapes),
                cmocka_unit_test(test_errors), cmocka_unit_test(test_append),
                cmocka_unit_test(test_print_round_trip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
