/* Formatting of the daemon's replies for tcpctl. */
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "units.h"
#include "util.h"

static const char *str(json_t *o, const char *key) {
        const char *s = json_string_value(json_object_get(o, key));
        return s ? s : "-";
}

static unsigned long long num(json_t *o, const char *key) {
        json_int_t v = json_integer_value(json_object_get(o, key));
        return v > 0 ? (unsigned long long) v : 0;
}

/* The rest of the limits line: only what is set, so the default is short. */
static void format_limits(FILE *f, json_t *lim) {
        char buf[64];
        json_t *v;
        size_t i;

        if (!lim)
                return;
        if (num(lim, "max_lifetime_usec"))
                fprintf(f, ", max_lifetime %s", format_duration(num(lim, "max_lifetime_usec"), buf, sizeof(buf)));
        if (num(lim, "max_connections_per_source"))
                fprintf(f, ", per source %llu", num(lim, "max_connections_per_source"));
        if (num(lim, "max_connection_rate_per_min"))
                fprintf(f, ", rate %llu/min", num(lim, "max_connection_rate_per_min"));
        if (json_array_size(json_object_get(lim, "allow"))) {
                fprintf(f, "\nallow:      ");
                json_array_foreach(json_object_get(lim, "allow"), i, v)
                        fprintf(f, " %s", json_string_value(v));
        }
        if (json_array_size(json_object_get(lim, "deny"))) {
                fprintf(f, "\ndeny:       ");
                json_array_foreach(json_object_get(lim, "deny"), i, v)
                        fprintf(f, " %s", json_string_value(v));
        }
}

void format_status(FILE *f, json_t *st) {
        char up[64], in[32], out[32], idle[64];
        json_t *listeners = json_object_get(st, "listeners"), *li;
        size_t i, width = 7;

        fprintf(f, "tcpd %s (pid %llu), %s, up %s\n", str(st, "version"), num(st, "pid"), str(st, "state"),
                format_duration(num(st, "uptime_usec"), up, sizeof(up)));
        if (json_array_size(listeners) == 0)
                fprintf(f, "listening:   nothing\n");
        json_array_foreach(listeners, i, li)
                if (strlen(str(li, "service")) > width)
                        width = strlen(str(li, "service"));
        json_array_foreach(listeners, i, li)
                fprintf(f, "%-13s%-*s %s%s\n", i == 0 ? "listening:" : "", (int) width, str(li, "service"),
                        str(li, "address"), json_is_true(json_object_get(li, "activated")) ? " (from systemd)" : "");
        fprintf(f, "connections: %llu open, %llu total, %llu kicked, %llu refused, %llu reset\n",
                num(st, "connections_open"), num(st, "connections_total"), num(st, "connections_kicked"),
                num(st, "connections_refused"), num(st, "connections_reset"));
        if (num(st, "connections_refused")) {
                json_t *by = json_object_get(st, "refused"), *v;
                const char *rule;
                bool first = true;

                fprintf(f, "refused by:  ");
                json_object_foreach(by, rule, v)
                        if (json_integer_value(v) > 0) {
                                fprintf(f, "%s%s %lld", first ? "" : ", ", rule, (long long) json_integer_value(v));
                                first = false;
                        }
                fputc('\n', f);
        }
        if (json_object_get(st, "workers")) {
                json_t *per = json_object_get(st, "worker_connections"), *v;

                /* how the open connections are spread over the threads */
                fprintf(f, "workers:     %llu (open:", num(st, "workers"));
                json_array_foreach(per, i, v)
                        fprintf(f, " %lld", (long long) json_integer_value(v));
                fprintf(f, ")\n");
        }
        fprintf(f, "traffic:     %s in, %s out\n", format_size(num(st, "bytes_in"), in, sizeof(in)),
                format_size(num(st, "bytes_out"), out, sizeof(out)));
        if (num(st, "max_connections"))
                fprintf(f, "limits:      max_connections %llu", num(st, "max_connections"));
        else
                fprintf(f, "limits:      max_connections none");
        if (num(st, "idle_timeout_usec"))
                fprintf(f, ", idle_timeout %s", format_duration(num(st, "idle_timeout_usec"), idle, sizeof(idle)));
        else
                fprintf(f, ", idle_timeout none");
        format_limits(f, json_object_get(st, "limits"));
        fputc('\n', f);
}

enum { COL_ID, COL_PEER, COL_LOCAL, COL_SERVICE, COL_AGE, COL_IDLE, COL_IN, COL_OUT, COL_STATE, _COL_MAX };

static const struct {
        const char *title;
        bool right; /* numbers align right */
} columns[_COL_MAX] = {
        [COL_ID] = { "ID", true },       [COL_PEER] = { "PEER", false }, [COL_LOCAL] = { "LOCAL", false },
        [COL_SERVICE] = { "SERVICE", false }, [COL_AGE] = { "AGE", true }, [COL_IDLE] = { "IDLE", true },
        [COL_IN] = { "IN", true },       [COL_OUT] = { "OUT", true },    [COL_STATE] = { "STATE", false },
};

#define CELL 64

/* Whole seconds: a table of ages in milliseconds is noise. */
static void format_age(unsigned long long usec, char cell[CELL]) {
        if (usec < 1000000)
                snprintf(cell, CELL, "0s");
        else
                format_duration(usec / 1000000 * 1000000, cell, CELL);
}

static void fill_row(json_t *c, char row[_COL_MAX][CELL]) {
        snprintf(row[COL_ID], CELL, "%llu", num(c, "id"));
        snprintf(row[COL_PEER], CELL, "%s", str(c, "peer"));
        snprintf(row[COL_LOCAL], CELL, "%s", str(c, "local"));
        snprintf(row[COL_SERVICE], CELL, "%s", str(c, "service"));
        format_age(num(c, "age_usec"), row[COL_AGE]);
        format_age(num(c, "idle_usec"), row[COL_IDLE]);
        format_size(num(c, "bytes_in"), row[COL_IN], CELL);
        format_size(num(c, "bytes_out"), row[COL_OUT], CELL);
        snprintf(row[COL_STATE], CELL, "%s", str(c, "state"));
}

static void print_row(FILE *f, const size_t width[_COL_MAX], const char *const cells[_COL_MAX]) {
        for (int k = 0; k < _COL_MAX; k++) {
                if (k == _COL_MAX - 1)
                        fprintf(f, "%s\n", cells[k]); /* no trailing blanks */
                else if (columns[k].right)
                        fprintf(f, "%*s  ", (int) width[k], cells[k]);
                else
                        fprintf(f, "%-*s  ", (int) width[k], cells[k]);
        }
}

void format_connections(FILE *f, json_t *conns) {
        size_t n = json_array_size(conns), i;
        size_t width[_COL_MAX];
        const char *cells[_COL_MAX];
        char (*rows)[_COL_MAX][CELL];
        json_t *c;

        if (n == 0) {
                fprintf(f, "no connections\n");
                return;
        }
        rows = calloc(n, sizeof(*rows));
        if (!rows) {
                fprintf(stderr, "tcpctl: out of memory\n");
                return;
        }
        for (int k = 0; k < _COL_MAX; k++)
                width[k] = strlen(columns[k].title);
        json_array_foreach(conns, i, c) {
                fill_row(c, rows[i]);
                for (int k = 0; k < _COL_MAX; k++)
                        if (strlen(rows[i][k]) > width[k])
                                width[k] = strlen(rows[i][k]);
        }
        for (int k = 0; k < _COL_MAX; k++)
                cells[k] = columns[k].title;
        print_row(f, width, cells);
        for (i = 0; i < n; i++) {
                for (int k = 0; k < _COL_MAX; k++)
                        cells[k] = rows[i][k];
                print_row(f, width, cells);
        }
        free(rows);
}

void format_kick(FILE *f, json_t *reply) {
        json_t *ids = json_object_get(reply, "ids"), *id;
        unsigned long long n = num(reply, "kicked");
        size_t i;

        if (n == 0) {
                fprintf(f, "no connection matched\n");
                return;
        }
        fprintf(f, "kicked %llu connection%s:", n, n == 1 ? "" : "s");
        json_array_foreach(ids, i, id)
                fprintf(f, " %lld", (long long) json_integer_value(id));
        fputc('\n', f);
}

void format_json(FILE *f, json_t *v) {
        json_dumpf(v, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', f);
}
