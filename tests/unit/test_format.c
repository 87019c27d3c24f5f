/* tcpctl's formatting: tables, status lines and kick summaries from the
 * daemon's JSON replies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "format.h"

/* Runs fn into a memory stream and returns what it printed (malloc'd). */
static char *capture(void (*fn)(FILE *, json_t *), json_t *v) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        assert_non_null(f);
        fn(f, v);
        fclose(f);
        /* a copy: gcc 12 takes buf for a local that escaped into f */
        {
                char *copy = strdup(buf);
                free(buf);
                assert_non_null(copy);
                return copy;
        }
}

static json_t *conn(long long id, const char *peer, unsigned long long age_usec, unsigned long long in,
                    const char *state) {
        return json_pack("{s:I,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s}", "id", (json_int_t) id, "service", "echo", "peer",
                         peer, "local", "127.0.0.1:7788", "age_usec", (json_int_t) age_usec, "idle_usec",
                         (json_int_t) 0, "bytes_in", (json_int_t) in, "bytes_out", (json_int_t) in, "state", state);
}

static void test_empty_list(void **state) {
        json_t *a = json_array();
        char *out = capture(format_connections, a);

        assert_string_equal(out, "no connections\n");
        free(out);
        json_decref(a);
}

static void test_table_aligned(void **state) {
        json_t *a = json_array();
        char *out, *line, *save = NULL;
        size_t header_len = 0, n = 0;
        const char *peer_col;

        json_array_append_new(a, conn(7, "127.0.0.1:40000", 2500000, 1536, "open"));
        json_array_append_new(a, conn(12345, "[2001:db8::1]:5", 7200ULL * 1000000 + 180ULL * 1000000, 20 << 20,
                                      "blocked"));
        out = capture(format_connections, a);

        /* header once, then one row per connection */
        assert_non_null(strstr(out, "ID"));
        assert_null(strstr(strstr(out, "STATE") + 5, "STATE"));
        assert_non_null(strstr(out, "1.5K"));
        assert_non_null(strstr(out, "20.0M"));
        assert_non_null(strstr(out, "2s"));
        assert_non_null(strstr(out, "2h 3min"));
        assert_non_null(strstr(out, "blocked"));

        /* every row puts PEER at the same column as the header */
        peer_col = strstr(out, "PEER");
        for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
                size_t col = (size_t) (peer_col - out);
                if (n == 0) {
                        header_len = col;
                        continue;
                }
                assert_true(line[header_len] == '1' || line[header_len] == '[');
                assert_true(line[strlen(line) - 1] != ' '); /* no trailing blanks */
        }
        assert_int_equal(n, 3);
        free(out);
        json_decref(a);
}

static void test_status(void **state) {
        json_t *st = json_pack("{s:s,s:i,s:I,s:s,s:[{s:s,s:s,s:b}],s:i,s:i,s:i,s:i,s:i,s:I,s:I,s:i,s:I}", "version",
                               "0.1.0", "pid", 42, "uptime_usec", (json_int_t) 3723000000LL, "state", "running",
                               "listeners", "service", "echo", "address", "[::]:7788", "activated", 1,
                               "connections_open", 3, "connections_total", 10, "connections_kicked", 2,
                               "connections_refused", 1, "connections_reset", 0, "bytes_in", (json_int_t) 2048,
                               "bytes_out", (json_int_t) 2048, "max_connections", 0, "idle_timeout_usec",
                               (json_int_t) 300000000);
        char *out = capture(format_status, st);

        assert_non_null(strstr(out, "tcpd 0.1.0 (pid 42), running, up 1h 2min"));
        assert_non_null(strstr(out, "echo"));
        assert_non_null(strstr(out, "[::]:7788 (from systemd)"));
        assert_non_null(strstr(out, "3 open, 10 total, 2 kicked, 1 refused, 0 reset"));
        assert_non_null(strstr(out, "2.0K in, 2.0K out"));
        assert_non_null(strstr(out, "max_connections none, idle_timeout 5min"));
        free(out);
        json_decref(st);
}

static void test_kick(void **state) {
        json_t *r = json_pack("{s:i,s:[i,i]}", "kicked", 2, "ids", 5, 9);
        char *out = capture(format_kick, r);

        assert_string_equal(out, "kicked 2 connections: 5 9\n");
        free(out);
        json_decref(r);
        r = json_pack("{s:i,s:[]}", "kicked", 0, "ids");
        out = capture(format_kick, r);
        assert_string_equal(out, "no connection matched\n");
        free(out);
        json_decref(r);
}

/* On a terminal narrower than the table whole columns are left out, the
 * least useful first (STATE, IDLE, OUT, ...); an address is never cut, and
 * what is shown stays aligned. */
static void test_table_fits_terminal(void **state) {
        struct term t = { .columns = 90, .ellipsis = "\u2026", .ellipsis_cols = 1 };
        json_t *a = json_array();
        char *out, *line, *save = NULL;
        size_t n = 0;

        json_array_append_new(a, conn(7, "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:51234", 2500000, 1536, "open"));
        json_array_append_new(a, conn(12345, "127.0.0.1:40000", 3000000, 20 << 20, "blocked"));
        format_set_term(&t);
        out = capture(format_connections, a);
        for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
                size_t cols = 0;

                for (const char *c = line; *c; c++)
                        cols += ((unsigned char) *c & 0xc0) != 0x80;
                assert_true(cols <= 90);
                assert_true(line[strlen(line) - 1] != ' '); /* no trailing blanks */
        }
        assert_int_equal(n, 3);
        free(out);

        out = capture(format_connections, a);
        assert_non_null(strstr(out, "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:51234")); /* whole */
        assert_null(strstr(out, "\u2026"));
        assert_null(strstr(out, "STATE"));                 /* the least useful went first */
        assert_non_null(strstr(out, "LOCAL"));
        assert_true(strstr(out, "LOCAL") < strstr(out, "PEER")); /* as ss prints them */
        assert_non_null(strstr(out, "12345"));
        assert_non_null(strstr(out, "127.0.0.1:40000"));
        free(out);

        /* at 50 columns: the id and the peer, whole, and what else fits */
        t.columns = 50;
        format_set_term(&t);
        out = capture(format_connections, a);
        assert_non_null(strstr(out, "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:51234"));
        assert_non_null(strstr(out, "127.0.0.1:40000"));
        assert_non_null(strstr(out, "PEER"));
        assert_null(strstr(out, "\u2026"));
        free(out);

        /* without a terminal nothing is cut */
        format_set_term(&(struct term) { .ellipsis = "...", .ellipsis_cols = 3 });
        out = capture(format_connections, a);
        assert_non_null(strstr(out, "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:51234"));
        free(out);
        json_decref(a);
}

static void test_ellipsize(void **state) {
        char buf[64];

        format_set_term(&(struct term) { .ellipsis = "...", .ellipsis_cols = 3 });
        assert_string_equal(format_ellipsize("abcdefghij", 10, buf, sizeof(buf)), "abcdefghij");
        assert_string_equal(format_ellipsize("abcdefghij", 9, buf, sizeof(buf)), "abc...hij");
        assert_string_equal(format_ellipsize("abcdefghij", 8, buf, sizeof(buf)), "abc...ij");
        format_set_term(&(struct term) { .ellipsis = "\u2026", .ellipsis_cols = 1 });
        assert_string_equal(format_ellipsize("abcdefghij", 5, buf, sizeof(buf)), "ab\u2026ij");
        format_set_term(&(struct term) { .ellipsis = "...", .ellipsis_cols = 3 });
}

/* Bold header and a coloured state with colour; not a byte of it without. */
static void test_colour(void **state) {
        json_t *a = json_array();
        char *out;

        json_array_append_new(a, conn(7, "127.0.0.1:40000", 2500000, 1536, "open"));
        format_set_term(&(struct term) { .color = true, .ellipsis = "...", .ellipsis_cols = 3 });
        out = capture(format_connections, a);
        assert_memory_equal(out, ANSI_BOLD "ID", strlen(ANSI_BOLD "ID"));
        assert_non_null(strstr(out, "STATE" ANSI_NORMAL "\n"));
        free(out);
        format_set_term(&(struct term) { .ellipsis = "...", .ellipsis_cols = 3 });
        out = capture(format_connections, a);
        assert_null(strchr(out, '\x1b'));
        free(out);
        json_decref(a);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_empty_list),
                cmocka_unit_test(test_table_aligned),
                cmocka_unit_test(test_status),
                cmocka_unit_test(test_kick),
                cmocka_unit_test(test_table_fits_terminal),
                cmocka_unit_test(test_ellipsize),
                cmocka_unit_test(test_colour),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
