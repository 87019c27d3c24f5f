/* tcpctl metrics: GetStatus as Prometheus' text exposition format (0.0.4),
 * or OpenMetrics 1.0. Names follow Prometheus' rules: the tcpd_ prefix,
 * base units (seconds, bytes), _total for counters, a label per service,
 * rule or worker. Every value is a counter or a gauge tcpd keeps: the cost
 * does not grow with the connections open. */
#include <stdio.h>
#include <string.h>

#include "metrics.h"
#include "util.h"

static unsigned long long num(json_t *o, const char *key) {
        json_t *v = json_object_get(o, key);

        return json_is_integer(v) && json_integer_value(v) > 0 ? (unsigned long long) json_integer_value(v) : 0;
}

/* A label value, escaped as the format wants (backslash, quote, newline). */
static void put_label(FILE *f, const char *s) {
        fputc('"', f);
        for (; s && *s; s++) {
                if (*s == '\\' || *s == '"')
                        fprintf(f, "\\%c", *s);
                else if (*s == '\n')
                        fputs("\\n", f);
                else
                        fputc(*s, f);
        }
        fputc('"', f);
}

/* The HELP and TYPE lines of a family. OpenMetrics names a counter's family
 * without its _total (its samples keep it) and has an info type. */
static void family(FILE *f, bool om, const char *name, const char *type, const char *help) {
        size_t len = strlen(name);

        if (om && streq(type, "counter") && len > 6 && streq(name + len - 6, "_total"))
                len -= 6;
        else if (om && streq(type, "info") && len > 5 && streq(name + len - 5, "_info"))
                len -= 5;
        if (!om && streq(type, "info"))
                type = "gauge";
        fprintf(f, "# HELP %.*s %s\n# TYPE %.*s %s\n", (int) len, name, help, (int) len, name, type);
}

static void sample_svc(FILE *f, const char *name, const char *service, unsigned long long v) {
        fprintf(f, "%s{service=", name);
        put_label(f, service);
        fprintf(f, "} %llu\n", v);
}

/* One family with a sample per service, from a key of each services[] entry. */
static void per_service(FILE *f, bool om, json_t *services, const char *name, const char *type, const char *help,
                        const char *key) {
        size_t i;
        json_t *s;

        family(f, om, name, type, help);
        json_array_foreach(services, i, s)
                sample_svc(f, name, json_string_value(json_object_get(s, "name")), num(s, key));
}

static void durations(FILE *f, bool om, json_t *services) {
        const char *name = "tcpd_connection_duration_seconds";
        size_t i;
        json_t *s;

        family(f, om, name, "histogram", "How long closed connections lasted.");
        json_array_foreach(services, i, s) {
                json_t *d = json_object_get(s, "durations"), *bounds = json_object_get(d, "bounds_usec"),
                       *counts = json_object_get(d, "counts");
                const char *svc = json_string_value(json_object_get(s, "name"));
                unsigned long long cum = 0;

                if (!json_is_array(bounds) || json_array_size(counts) != json_array_size(bounds) + 1)
                        continue; /* a tcpd from before these counts */
                for (size_t k = 0; k <= json_array_size(bounds); k++) {
                        cum += (unsigned long long) json_integer_value(json_array_get(counts, k));
                        fprintf(f, "%s_bucket{service=", name);
                        put_label(f, svc);
                        if (k < json_array_size(bounds))
                                fprintf(f, ",le=\"%g\"} %llu\n",
                                        (double) json_integer_value(json_array_get(bounds, k)) / 1e6, cum);
                        else
                                fprintf(f, ",le=\"+Inf\"} %llu\n", cum);
                }
                fprintf(f, "%s_sum{service=", name);
                put_label(f, svc);
                fprintf(f, "} %.6f\n", (double) num(d, "sum_usec") / 1e6);
                fprintf(f, "%s_count{service=", name);
                put_label(f, svc);
                fprintf(f, "} %llu\n", cum);
        }
}

/* A program's end (type = exec): "success" (exit 0), "failure" (another
 * status) or "signal". */
static void exec_exits(FILE *f, bool om, json_t *services) {
        const char *name = "tcpd_exec_exits_total";
        size_t i;
        json_t *s;

        family(f, om, name, "counter", "How programs of type = exec services ended.");
        json_array_foreach(services, i, s) {
                json_t *p = json_object_get(s, "programs");
                const char *svc = json_string_value(json_object_get(s, "name"));
                unsigned long long exited = num(p, "exited"), failed = num(p, "failed");
                const struct {
                        const char *status;
                        unsigned long long n;
                } rows[] = { { "success", exited - (failed < exited ? failed : exited) },
                             { "failure", failed },
                             { "signal", num(p, "killed") } };

                if (!p)
                        continue;
                for (size_t k = 0; k < ARRAY_SIZE(rows); k++) {
                        fprintf(f, "%s{service=", name);
                        put_label(f, svc);
                        fprintf(f, ",status=\"%s\"} %llu\n", rows[k].status, rows[k].n);
                }
        }
}

/* One family with a sample per backend of the relays (type = forward). */
static void per_backend(FILE *f, bool om, json_t *services, const char *name, const char *type, const char *help,
                        const char *key) {
        bool any = false;
        size_t i, j;
        json_t *s, *b;

        json_array_foreach(services, i, s)
                any |= json_array_size(json_object_get(s, "backends")) > 0;
        if (!any)
                return;
        family(f, om, name, type, help);
        json_array_foreach(services, i, s)
                json_array_foreach(json_object_get(s, "backends"), j, b) {
                        fprintf(f, "%s{service=", name);
                        put_label(f, json_string_value(json_object_get(s, "name")));
                        fprintf(f, ",backend=");
                        put_label(f, json_string_value(json_object_get(b, "backend")));
                        if (!key) /* up: from the state */
                                fprintf(f, "} %d\n", streq(json_string_value(json_object_get(b, "state")) ?: "", "up"));
                        else
                                fprintf(f, "} %llu\n", num(b, key));
                }
}

static void backends(FILE *f, bool om, json_t *services) {
        per_backend(f, om, services, "tcpd_backend_up", "gauge",
                    "1 when the backend is up (its checks pass), 0 when it is down.", NULL);
        per_backend(f, om, services, "tcpd_backend_connections_open", "gauge", "Relayed connections to the backend now.",
                    "connections_open");
        per_backend(f, om, services, "tcpd_backend_connections_total", "counter",
                    "Connections relayed to the backend since start.", "connections_total");
        per_backend(f, om, services, "tcpd_backend_connect_failures_total", "counter",
                    "Connects to the backend that failed or timed out.", "connect_failures");
        per_backend(f, om, services, "tcpd_backend_check_failures_total", "counter", "Health checks that failed.",
                    "checks_failed");
        per_backend(f, om, services, "tcpd_backend_received_bytes_total", "counter",
                    "Bytes from the backend to clients, counted when a connection closes.", "bytes_out");
        per_backend(f, om, services, "tcpd_backend_sent_bytes_total", "counter",
                    "Bytes from clients to the backend, counted when a connection closes.", "bytes_in");
}

void metrics_print(FILE *f, json_t *st, bool openmetrics) {
        json_t *services = json_object_get(st, "services"), *refused = json_object_get(st, "refused"), *v;
        json_t *workers = json_object_get(st, "worker_connections");
        const char *rule;
        size_t i;
        bool om = openmetrics;

        family(f, om, "tcpd_build_info", "info", "tcpd's version.");
        fprintf(f, "tcpd_build_info{version=");
        put_label(f, json_string_value(json_object_get(st, "version")));
        fprintf(f, "} 1\n");
        family(f, om, "tcpd_start_time_seconds", "gauge", "When tcpd started, in seconds since 1970.");
        fprintf(f, "tcpd_start_time_seconds %.3f\n", (double) num(st, "start_time_usec") / 1e6);
        family(f, om, "tcpd_settings_loaded", "gauge",
               "1 when the settings file loaded at the last start or reload; 0 when tcpd runs on older settings or "
               "none.");
        v = json_object_get(st, "settings");
        fprintf(f, "tcpd_settings_loaded %d\n", !json_is_string(v) || streq(json_string_value(v), "loaded"));
        family(f, om, "tcpd_workers", "gauge", "Worker threads serving connections.");
        fprintf(f, "tcpd_workers %llu\n", num(st, "workers"));
        family(f, om, "tcpd_worker_connections_open", "gauge", "Connections open on each worker.");
        json_array_foreach(workers, i, v)
                fprintf(f, "tcpd_worker_connections_open{worker=\"%zu\"} %lld\n", i, (long long) json_integer_value(v));

        per_service(f, om, services, "tcpd_connections_open", "gauge", "Connections open now.", "connections_open");
        per_service(f, om, services, "tcpd_connections_total", "counter", "Connections accepted since start.",
                    "connections_total");
        per_service(f, om, services, "tcpd_service_refused_total", "counter",
                    "Connections refused since start, by service (by rule: tcpd_connections_refused_total).",
                    "connections_refused");
        per_service(f, om, services, "tcpd_received_bytes_total", "counter", "Bytes received from clients.",
                    "bytes_in");
        per_service(f, om, services, "tcpd_sent_bytes_total", "counter", "Bytes sent to clients.", "bytes_out");
        durations(f, om, services);
        exec_exits(f, om, services);
        backends(f, om, services);

        family(f, om, "tcpd_connections_refused_total", "counter",
               "Connections refused since start, by the rule that refused them.");
        json_object_foreach(refused, rule, v) {
                fprintf(f, "tcpd_connections_refused_total{rule=");
                put_label(f, rule);
                fprintf(f, "} %lld\n", (long long) json_integer_value(v));
        }
        family(f, om, "tcpd_connections_kicked_total", "counter", "Connections closed by tcpctl kick.");
        fprintf(f, "tcpd_connections_kicked_total %llu\n", num(st, "connections_kicked"));
        family(f, om, "tcpd_connections_reset_total", "counter", "Connections the client reset.");
        fprintf(f, "tcpd_connections_reset_total %llu\n", num(st, "connections_reset"));
        family(f, om, "tcpd_connections_aborted_total", "counter",
               "Connections tcpd closed and had to reset at shutdown_timeout with bytes unsent.");
        fprintf(f, "tcpd_connections_aborted_total %llu\n", num(st, "connections_aborted"));
        if (om)
                fputs("# EOF\n", f);
}
