/* Unit tests for ctl/metrics.c: GetStatus's parameters as Prometheus'
 * exposition formats. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static const char *STATUS =
        "{\"version\": \"1.2\\\"3\", \"start_time_usec\": 1700000000500000, \"settings\": \"previous\","
        " \"workers\": 2, \"worker_connections\": [3, 4],"
        " \"connections_kicked\": 5, \"connections_reset\": 6, \"connections_aborted\": 7,"
        " \"refused\": {\"deny\": 1, \"spawn\": 2},"
        " \"services\": [{\"name\": \"git\", \"type\": \"exec\", \"connections_open\": 7, \"connections_total\": 9,"
        "   \"connections_refused\": 2, \"bytes_in\": 10, \"bytes_out\": 20,"
        "   \"programs\": {\"exited\": 8, \"failed\": 3, \"killed\": 1},"
        "   \"durations\": {\"bounds_usec\": [1000, 1000000], \"counts\": [1, 2, 3], \"sum_usec\": 2500000}}]}";

static char *render(bool om) {
        json_error_t err;
        json_t *st = json_loads(STATUS, 0, &err);
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);

        assert_non_null(st);
        assert_non_null(f);
        metrics_print(f, st, om);
        fclose(f);
        json_decref(st);
        return out;
}

static void has(const char *text, const char *line) {
        if (!strstr(text, line))
                fail_msg("no '%s' in:\n%s", line, text);
}

static void test_text_format(void **state) {
        char *t = render(false);

        has(t, "# TYPE tcpd_connections_total counter\n");
        has(t, "tcpd_connections_total{service=\"git\"} 9\n");
        has(t, "tcpd_connections_open{service=\"git\"} 7\n");
        /* a label value escaped */
        has(t, "tcpd_build_info{version=\"1.2\\\"3\"} 1\n");
        has(t, "# TYPE tcpd_build_info gauge\n");
        has(t, "tcpd_start_time_seconds 1700000000.500\n");
        has(t, "tcpd_settings_loaded 0\n");
        has(t, "tcpd_worker_connections_open{worker=\"1\"} 4\n");
        /* cumulative buckets, +Inf, sum in seconds, count */
        has(t, "tcpd_connection_duration_seconds_bucket{service=\"git\",le=\"0.001\"} 1\n");
        has(t, "tcpd_connection_duration_seconds_bucket{service=\"git\",le=\"1\"} 3\n");
        has(t, "tcpd_connection_duration_seconds_bucket{service=\"git\",le=\"+Inf\"} 6\n");
        has(t, "tcpd_connection_duration_seconds_sum{service=\"git\"} 2.500000\n");
        has(t, "tcpd_connection_duration_seconds_count{service=\"git\"} 6\n");
        /* exits: success = exited - failed */
        has(t, "tcpd_exec_exits_total{service=\"git\",status=\"success\"} 5\n");
        has(t, "tcpd_exec_exits_total{service=\"git\",status=\"failure\"} 3\n");
        has(t, "tcpd_exec_exits_total{service=\"git\",status=\"signal\"} 1\n");
        has(t, "tcpd_connections_refused_total{rule=\"spawn\"} 2\n");
        has(t, "tcpd_connections_aborted_total 7\n");
        assert_null(strstr(t, "# EOF"));
        free(t);
}

static void test_openmetrics(void **state) {
        char *t = render(true);
        size_t len = strlen(t);

        /* a counter's family without _total, its samples with it */
        has(t, "# TYPE tcpd_connections counter\n");
        has(t, "tcpd_connections_total{service=\"git\"} 9\n");
        has(t, "# TYPE tcpd_build info\n");
        has(t, "# TYPE tcpd_connection_duration_seconds histogram\n");
        assert_true(len > 6 && strcmp(t + len - 6, "# EOF\n") == 0);
        free(t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_text_format),
                cmocka_unit_test(test_openmetrics),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
