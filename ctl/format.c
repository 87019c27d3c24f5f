/* Formatting of the daemon's replies for tcpctl. */
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "units.h"
#include "util.h"

/* No colour and no width limit until tcpctl says otherwise: what a pipe and
 * the unit tests get. */
static struct term term = { .ellipsis = "...", .ellipsis_cols = 3 };

void format_set_term(const struct term *t) {
        term = *t;
}

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
        const char *state = str(st, "state"), *on = "", *off = "";
        size_t i, width = 7;

        /* the one word that tells at a glance whether all is well */
        if (term.color) {
                on = streq(state, "running") ? ANSI_GREEN : ANSI_YELLOW;
                off = ANSI_NORMAL;
        }
        fprintf(f, "tcpd %s (pid %llu), %s%s%s, up %s\n", str(st, "version"), num(st, "pid"), on, state, off,
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
        bool elide; /* may be cut to fit a terminal: text, never an id or a number */
} columns[_COL_MAX] = {
        [COL_ID] = { "ID", true, false },
        [COL_PEER] = { "PEER", false, true },
        [COL_LOCAL] = { "LOCAL", false, true },
        [COL_SERVICE] = { "SERVICE", false, true },
        [COL_AGE] = { "AGE", true, false },
        [COL_IDLE] = { "IDLE", true, false },
        [COL_IN] = { "IN", true, false },
        [COL_OUT] = { "OUT", true, false },
        [COL_STATE] = { "STATE", false, true },
};

#define CELL 64
#define COLUMN_GAP 2

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

/* Columns on the screen, not bytes: an ellipsis is one column and three
 * bytes in UTF-8. Every byte but a continuation byte starts a character. */
static size_t text_cols(const char *s) {
        size_t n = 0;

        for (; *s; s++)
                n += ((unsigned char) *s & 0xc0) != 0x80;
        return n;
}

/* The byte offset of the k-th character of s (its length when s is shorter). */
static size_t char_offset(const char *s, size_t k) {
        size_t i = 0;

        for (; s[i]; i++)
                if (((unsigned char) s[i] & 0xc0) != 0x80 && k-- == 0)
                        break;
        return i;
}

const char *format_ellipsize(const char *s, size_t cols, char *buf, size_t n) {
        size_t len = text_cols(s), keep, head, tail, head_bytes, tail_bytes;

        if (len <= cols || cols <= term.ellipsis_cols) {
                snprintf(buf, n, "%s", s);
                return buf;
        }
        /* the middle goes: an address keeps its start and its port */
        keep = cols - term.ellipsis_cols;
        tail = keep / 2;
        head = keep - tail;
        head_bytes = char_offset(s, head);
        tail_bytes = strlen(s) - char_offset(s, len - tail);
        snprintf(buf, n, "%.*s%s%s", (int) head_bytes, s, term.ellipsis, s + strlen(s) - tail_bytes);
        return buf;
}

/* Narrows the widest column that may be cut, one column at a time, until
 * the table fits the terminal. When only ids and numbers are left the
 * terminal wraps the lines: a cut number would be a wrong number. */
static void fit_columns(size_t width[_COL_MAX]) {
        size_t total = COLUMN_GAP * (_COL_MAX - 1);

        if (term.columns == 0)
                return;
        for (int k = 0; k < _COL_MAX; k++)
                total += width[k];
        while (total > term.columns) {
                int widest = -1;

                for (int k = 0; k < _COL_MAX; k++) {
                        size_t min = strlen(columns[k].title);

                        if (min < term.ellipsis_cols + 4)
                                min = term.ellipsis_cols + 4;
                        if (columns[k].elide && width[k] > min && (widest < 0 || width[k] > width[widest]))
                                widest = k;
                }
                if (widest < 0)
                        return;
                width[widest]--;
                total--;
        }
}

static void print_row(FILE *f, const size_t width[_COL_MAX], const char *const cells[_COL_MAX], bool header) {
        if (header && term.color)
                fputs(ANSI_BOLD, f);
        for (int k = 0; k < _COL_MAX; k++) {
                size_t cols = text_cols(cells[k]), pad = cols < width[k] ? width[k] - cols : 0;
                bool last = k == _COL_MAX - 1;

                if (columns[k].right)
                        fprintf(f, "%*s%s", (int) pad, "", cells[k]);
                else
                        fprintf(f, "%s%*s", cells[k], last ? 0 : (int) pad, ""); /* no trailing blanks */
                if (!last)
                        fprintf(f, "%*s", COLUMN_GAP, "");
        }
        if (header && term.color)
                fputs(ANSI_NORMAL, f);
        fputc('\n', f);
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
                term_error("out of memory");
                return;
        }
        for (int k = 0; k < _COL_MAX; k++)
                width[k] = strlen(columns[k].title);
        json_array_foreach(conns, i, c) {
                fill_row(c, rows[i]);
                for (int k = 0; k < _COL_MAX; k++)
                        if (text_cols(rows[i][k]) > width[k])
                                width[k] = text_cols(rows[i][k]);
        }
        fit_columns(width);
        for (int k = 0; k < _COL_MAX; k++)
                cells[k] = columns[k].title;
        print_row(f, width, cells, true);
        for (i = 0; i < n; i++) {
                for (int k = 0; k < _COL_MAX; k++) {
                        char cut[CELL];

                        if (text_cols(rows[i][k]) > width[k]) {
                                format_ellipsize(rows[i][k], width[k], cut, sizeof(cut));
                                memcpy(rows[i][k], cut, CELL);
                        }
                        cells[k] = rows[i][k];
                }
                print_row(f, width, cells, false);
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
