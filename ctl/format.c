/* Formatting of the daemon's replies for tcpctl. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>

#include "addr.h"
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

/* One line per service, names aligned: its own counters. A service named
 * otherwise than its type says the type too: "git (echo)". */
static void format_services(FILE *f, json_t *services) {
        char in[32], out[32], name[80];
        size_t i, width = 0;
        json_t *v;

        json_array_foreach(services, i, v) {
                size_t n = strlen(str(v, "name"));

                if (!streq(str(v, "name"), str(v, "type")))
                        n += strlen(str(v, "type")) + 3;
                if (n > width)
                        width = n;
        }
        json_array_foreach(services, i, v) {
                if (streq(str(v, "name"), str(v, "type")))
                        snprintf(name, sizeof(name), "%s", str(v, "name"));
                else
                        snprintf(name, sizeof(name), "%s (%s)", str(v, "name"), str(v, "type"));
                json_t *programs = json_object_get(v, "programs");

                fprintf(f, "%-13s%-*s %llu open, %llu total, %llu refused, %s in, %s out", i == 0 ? "services:" : "",
                        (int) width, name, num(v, "connections_open"), num(v, "connections_total"),
                        num(v, "connections_refused"), format_size(num(v, "bytes_in"), in, sizeof(in)),
                        format_size(num(v, "bytes_out"), out, sizeof(out)));
                /* how its programs ended: exit 0 or not, or a signal */
                if (programs)
                        fprintf(f, "; programs %llu exited (%llu failed), %llu killed", num(programs, "exited"),
                                num(programs, "failed"), num(programs, "killed"));
                /* a relay: how many of its backends take clients */
                if (json_object_get(v, "backends")) {
                        json_t *bk;
                        size_t j, up = 0;

                        json_array_foreach(json_object_get(v, "backends"), j, bk)
                                up += streq(str(bk, "state"), "up") && streq(str(bk, "admin"), "enabled");
                        fprintf(f, "; backends %zu of %zu up", up, json_array_size(json_object_get(v, "backends")));
                }
                fputc('\n', f);
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
        if (json_string_value(json_object_get(st, "settings_error"))) {
                /* first, and in colour: the one thing to fix */
                const char *hl = term.color ? ANSI_RED : "", *end = term.color ? ANSI_NORMAL : "";

                fprintf(f, "%ssettings:    %s%s\n", hl,
                        streq(str(st, "settings"), "none")
                                ? "NONE LOADED: every client is refused until a reload loads the file"
                                : "the file has errors: running on the last settings that loaded",
                        end);
                fprintf(f, "             %s\n", str(st, "settings_error"));
        }
        if (json_array_size(listeners) == 0)
                fprintf(f, "listening:   nothing\n");
        json_array_foreach(listeners, i, li)
                if (strlen(str(li, "service")) > width)
                        width = strlen(str(li, "service"));
        json_array_foreach(listeners, i, li)
                fprintf(f, "%-13s%-*s %s%s\n", i == 0 ? "listening:" : "", (int) width, str(li, "service"),
                        str(li, "address"), json_is_true(json_object_get(li, "activated")) ? " (from systemd)" : "");
        /* after the listeners, since it explains them */
        if (json_string_value(json_object_get(st, "listen_ignored")))
                fprintf(f, "not bound:   %s (in the settings; under systemd the socket units decide)\n",
                        str(st, "listen_ignored"));
        format_services(f, json_object_get(st, "services"));
        fprintf(f, "connections: %llu open, %llu total, %llu kicked, %llu refused, %llu reset",
                num(st, "connections_open"), num(st, "connections_total"), num(st, "connections_kicked"),
                num(st, "connections_refused"), num(st, "connections_reset"));
        /* closes that lost bytes: rare, and then worth a look */
        if (num(st, "connections_aborted"))
                fprintf(f, ", %llu aborted", num(st, "connections_aborted"));
        fputc('\n', f);
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

/* In ss's order: the local address before the peer's. */
enum {
        COL_HOST, /* with several hosts (tcpctl -H a -H b) */
        COL_ID, COL_LOCAL, COL_PEER, COL_SERVICE,
        COL_BACKEND, /* when some connection is relayed (type = forward) */
        COL_AGE, COL_IDLE, COL_IN, COL_OUT,
        COL_RTT, COL_RTTVAR, COL_RETRANS, COL_CWND, COL_UNACKED, /* with -i only */
        COL_STATE, COL_PID, /* PID: when a program runs for some (type = exec) */
        _COL_MAX
};
#define COL_TCP_FIRST COL_RTT
#define COL_TCP_LAST COL_UNACKED

/* The TCP_INFO columns: shown when the connections carry them (list -i). */
static bool show_tcp;
/* The PID column: when some connection has a program. */
static bool show_pid;
/* The HOST column: when the connections come from several hosts. */
static bool show_host;
/* The BACKEND column: when some connection is relayed. */
static bool show_backend;
/* Left out to fit a narrow terminal (fit_columns). */
static bool col_hidden[_COL_MAX];

static bool col_shown(int k) {
        if ((k == COL_PID && !show_pid) || (k == COL_HOST && !show_host) || (k == COL_BACKEND && !show_backend))
                return false;
        return !col_hidden[k] && (show_tcp || k < COL_TCP_FIRST || k > COL_TCP_LAST);
}

/* What goes first when a terminal is too narrow for the table, the least
 * useful first. The host, the id and the peer always stay, and an address is never
 * cut: a column is left out whole instead. */
static const int drop_order[] = { COL_UNACKED, COL_CWND, COL_RETRANS, COL_RTTVAR, COL_STATE, COL_PID, COL_IDLE,
                                  COL_OUT,     COL_IN,   COL_AGE,     COL_SERVICE, COL_LOCAL, COL_BACKEND, COL_RTT };

struct column {
        const char *title;
        bool right; /* numbers align right */
        bool elide; /* may be cut to fit a terminal: text, never an id or a number */
};

static const struct column columns[_COL_MAX] = {
        [COL_HOST] = { "HOST", false, false },
        [COL_ID] = { "ID", true, false },
        [COL_PEER] = { "PEER", false, false },
        [COL_LOCAL] = { "LOCAL", false, false },
        [COL_SERVICE] = { "SERVICE", false, true },
        [COL_BACKEND] = { "BACKEND", false, false },
        [COL_AGE] = { "AGE", true, false },
        [COL_IDLE] = { "IDLE", true, false },
        [COL_IN] = { "IN", true, false },
        [COL_OUT] = { "OUT", true, false },
        [COL_RTT] = { "RTT", true, false },
        [COL_RTTVAR] = { "RTTVAR", true, false },
        [COL_RETRANS] = { "RETRANS", true, false },
        [COL_CWND] = { "CWND", true, false },
        [COL_UNACKED] = { "UNACKED", true, false },
        [COL_STATE] = { "STATE", false, true },
        [COL_PID] = { "PID", true, false },
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
        strncpy(row[COL_HOST], str(c, "host"), CELL - 1);
        row[COL_HOST][CELL - 1] = 0;
        snprintf(row[COL_ID], CELL, "%llu", num(c, "id"));
        strncpy(row[COL_PEER], str(c, "peer"), CELL - 1);
        strncpy(row[COL_LOCAL], str(c, "local"), CELL - 1);
        strncpy(row[COL_SERVICE], str(c, "service"), CELL - 1);
        strncpy(row[COL_BACKEND], str(c, "backend"), CELL - 1);
        row[COL_BACKEND][CELL - 1] = 0;
        format_age(num(c, "age_usec"), row[COL_AGE]);
        format_age(num(c, "idle_usec"), row[COL_IDLE]);
        format_size(num(c, "bytes_in"), row[COL_IN], CELL);
        format_size(num(c, "bytes_out"), row[COL_OUT], CELL);
        strncpy(row[COL_STATE], str(c, "state"), CELL - 1);
        if (json_object_get(c, "pid"))
                snprintf(row[COL_PID], CELL, "%llu", num(c, "pid"));
        else
                snprintf(row[COL_PID], CELL, "-");
        {
                json_t *tcp = json_object_get(c, "tcp");

                /* milliseconds with three decimals, as ss -i prints them */
                if (tcp) {
                        snprintf(row[COL_RTT], CELL, "%.3fms", num(tcp, "rtt_usec") / 1000.0);
                        snprintf(row[COL_RTTVAR], CELL, "%.3fms", num(tcp, "rttvar_usec") / 1000.0);
                        snprintf(row[COL_RETRANS], CELL, "%llu", num(tcp, "retransmits"));
                        snprintf(row[COL_CWND], CELL, "%llu", num(tcp, "cwnd"));
                        snprintf(row[COL_UNACKED], CELL, "%llu", num(tcp, "unacked"));
                } else
                        for (int k = COL_TCP_FIRST; k <= COL_TCP_LAST; k++)
                                snprintf(row[k], CELL, "-");
        }
        row[COL_PEER][CELL - 1] = row[COL_LOCAL][CELL - 1] = row[COL_SERVICE][CELL - 1] = row[COL_STATE][CELL - 1] = 0;
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

/* Narrows the widest column that may be cut (a service name, a state),
 * one column at a time, until the table fits the terminal; then leaves
 * whole columns out, the least useful first. When only the id and the
 * peer are left the terminal wraps the lines: a cut address or number
 * would be a wrong one. */
static void fit_columns(size_t width[_COL_MAX]) {
        size_t total = 0;

        memset(col_hidden, 0, sizeof(col_hidden));
        if (term.columns == 0)
                return;
        for (int k = 0; k < _COL_MAX; k++)
                if (col_shown(k))
                        total += width[k] + (k ? COLUMN_GAP : 0);
        for (size_t i = 0; i < ARRAY_SIZE(drop_order) && total > term.columns; i++) {
                int k = drop_order[i];
                size_t min = strlen(columns[k].title);

                if (!col_shown(k))
                        continue;
                if (columns[k].elide) {
                        /* a text column is narrowed first; it goes only
                         * when that is not enough */
                        if (min < term.ellipsis_cols + 4)
                                min = term.ellipsis_cols + 4;
                        if (width[k] > min && total - (width[k] - min) <= term.columns) {
                                width[k] -= total - term.columns;
                                total = term.columns;
                                break;
                        }
                }
                col_hidden[k] = true;
                total -= width[k] + COLUMN_GAP;
        }
        while (total > term.columns) {
                int widest = -1;

                for (int k = 0; k < _COL_MAX; k++) {
                        size_t min = strlen(columns[k].title);

                        if (min < term.ellipsis_cols + 4)
                                min = term.ellipsis_cols + 4;
                        if (col_shown(k) && columns[k].elide && width[k] > min &&
                            (widest < 0 || width[k] > width[widest]))
                                widest = k;
                }
                if (widest < 0)
                        return;
                width[widest]--;
                total--;
        }
}

static void pad(FILE *f, size_t n) {
        static const char blanks[] = "                                ";

        for (; n > sizeof(blanks) - 1; n -= sizeof(blanks) - 1)
                fwrite(blanks, 1, sizeof(blanks) - 1, f);
        fwrite(blanks, 1, n, f);
}

/* One line of an aligned table: n columns, those not shown left out.
 * fputs and fwrite, not fprintf: a list of 19,000 rows is 170,000 cells. */
static void print_cells(FILE *f, const struct column *cols, int n, const bool *shown, const size_t *width,
                        const char *const *cells, bool header) {
        int last_shown = 0;

        for (int k = 0; k < n; k++)
                if (shown[k])
                        last_shown = k;
        if (header && term.color)
                fputs(ANSI_BOLD, f);
        for (int k = 0; k < n; k++) {
                size_t w, blank;
                bool last = k == last_shown;

                if (!shown[k])
                        continue;
                w = text_cols(cells[k]);
                blank = w < width[k] ? width[k] - w : 0;

                if (cols[k].right)
                        pad(f, blank);
                fputs(cells[k], f);
                if (!cols[k].right && !last)
                        pad(f, blank); /* no trailing blanks */
                if (!last)
                        pad(f, COLUMN_GAP);
        }
        if (header && term.color)
                fputs(ANSI_NORMAL, f);
        fputc('\n', f);
}

static void print_row(FILE *f, const size_t width[_COL_MAX], const char *const cells[_COL_MAX], bool header) {
        bool shown[_COL_MAX];

        for (int k = 0; k < _COL_MAX; k++)
                shown[k] = col_shown(k);
        print_cells(f, columns, _COL_MAX, shown, width, cells, header);
}

/* Rows are kept as their text, packed one after another: a list of 19,000
 * connections costs about a megabyte and no parse tree per connection. */
struct conn_row {
        size_t cell[_COL_MAX]; /* offsets of each cell in text */
        uint64_t key[_SORT_MAX]; /* what --sort compares */
        size_t group;          /* the host's place in -H's order: ties go by it, then by id */
        json_t *json;          /* kept only for sorted --json */
};

struct conn_table {
        char *text;
        size_t len, cap;
        struct conn_row *rows;
        size_t n, rows_cap;
        size_t width[_COL_MAX];
        size_t group; /* stamped on the rows added next */
};

static const char *const sort_names[_SORT_MAX] = {
        [SORT_ID] = "id", [SORT_AGE] = "age", [SORT_IDLE] = "idle",
        [SORT_IN] = "in", [SORT_OUT] = "out", [SORT_PEER] = "peer", [SORT_RTT] = "rtt",
};

int conn_sort_key(const char *name) {
        for (int k = 0; k < _SORT_MAX; k++)
                if (streq(name, sort_names[k]))
                        return k;
        return -1;
}

struct conn_table *conn_table_new(void) {
        struct conn_table *t = calloc(1, sizeof(*t));

        show_tcp = show_host = show_backend = false; /* until a connection comes with TCP_INFO, a host, a backend */
        for (int k = 0; t && k < _COL_MAX; k++)
                t->width[k] = strlen(columns[k].title);
        return t;
}

struct conn_table *conn_table_free(struct conn_table *t) {
        if (t) {
                for (size_t i = 0; i < t->n; i++)
                        json_decref(t->rows[i].json);
                free(t->text);
                free(t->rows);
        }
        free(t);
        return NULL;
}

static int grow(void **p, size_t *cap, size_t need, size_t size) {
        size_t n = *cap ? *cap : 64;
        void *q;

        if (need <= *cap)
                return 0;
        while (n < need)
                n *= 2;
        q = reallocarray(*p, n, size);
        if (!q)
                return -ENOMEM;
        *p = q;
        *cap = n;
        return 0;
}

/* A peer as a number that sorts like the address: family, address, port. */
static uint64_t peer_key(json_t *conn) {
        const char *host = str(conn, "peer_address");
        union sockaddr_in46 a;
        uint64_t k = 0;

        if (addr_parse(host, &a) < 0)
                return UINT64_MAX;
        if (a.sa.sa_family == AF_INET)
                k = (uint64_t) ntohl(a.in.sin_addr.s_addr) << 16;
        else
                for (int i = 0; i < 6; i++) /* the top 48 bits order IPv6 well enough */
                        k = k << 8 | a.in6.sin6_addr.s6_addr[i];
        k = (a.sa.sa_family == AF_INET ? 0 : 1ULL << 63) | (k & ~(1ULL << 63));
        return k + num(conn, "peer_port");
}

int conn_table_add(struct conn_table *t, json_t *conn, bool keep_json) {
        char row[_COL_MAX][CELL];
        struct conn_row *r;

        fill_row(conn, row);
        if (grow((void **) &t->rows, &t->rows_cap, t->n + 1, sizeof(*t->rows)) < 0 ||
            grow((void **) &t->text, &t->cap, t->len + sizeof(row), 1) < 0)
                return -ENOMEM;
        r = &t->rows[t->n];
        r->json = keep_json ? json_incref(conn) : NULL;
        r->group = t->group;
        r->key[SORT_ID] = num(conn, "id");
        r->key[SORT_AGE] = num(conn, "age_usec");
        r->key[SORT_IDLE] = num(conn, "idle_usec");
        r->key[SORT_IN] = num(conn, "bytes_in");
        r->key[SORT_OUT] = num(conn, "bytes_out");
        r->key[SORT_PEER] = peer_key(conn);
        r->key[SORT_RTT] = json_object_get(conn, "tcp") ? num(json_object_get(conn, "tcp"), "rtt_usec") : 0;
        if (json_object_get(conn, "tcp"))
                show_tcp = true;
        if (json_object_get(conn, "pid"))
                show_pid = true;
        if (json_object_get(conn, "host"))
                show_host = true;
        if (json_object_get(conn, "backend"))
                show_backend = true;
        for (int k = 0; k < _COL_MAX; k++) {
                size_t len = strlen(row[k]), cols = text_cols(row[k]);

                r->cell[k] = t->len;
                memcpy(t->text + t->len, row[k], len + 1);
                t->len += len + 1;
                if (cols > t->width[k])
                        t->width[k] = cols;
        }
        t->n++;
        return 0;
}

void conn_table_set_group(struct conn_table *t, size_t group) {
        t->group = group;
}

void conn_table_print(FILE *f, struct conn_table *t) {
        const char *cells[_COL_MAX];
        char cut[_COL_MAX][CELL];

        if (t->n == 0) {
                fprintf(f, "no connections\n");
                return;
        }
        fit_columns(t->width);
        for (int k = 0; k < _COL_MAX; k++)
                cells[k] = columns[k].title;
        print_row(f, t->width, cells, true);
        for (size_t i = 0; i < t->n; i++) {
                for (int k = 0; k < _COL_MAX; k++) {
                        cells[k] = t->text + t->rows[i].cell[k];
                        if (text_cols(cells[k]) > t->width[k])
                                cells[k] = format_ellipsize(cells[k], t->width[k], cut[k], sizeof(cut[k]));
                }
                print_row(f, t->width, cells, false);
        }
}

static int sort_by;

static int row_cmp(const void *a, const void *b) {
        const struct conn_row *x = a, *y = b;
        uint64_t kx = x->key[sort_by], ky = y->key[sort_by];

        /* id and peer ascending; age, idle and bytes largest first; then
         * in -H's order, then by id */
        if (kx != ky && sort_by != SORT_ID)
                return (sort_by == SORT_PEER) == (kx < ky) ? -1 : 1;
        if (x->group != y->group)
                return x->group < y->group ? -1 : 1;
        return (x->key[SORT_ID] > y->key[SORT_ID]) - (x->key[SORT_ID] < y->key[SORT_ID]);
}

void conn_table_sort(struct conn_table *t, int key) {
        if (key < 0 || key >= _SORT_MAX || t->n < 2)
                return;
        sort_by = key;
        qsort(t->rows, t->n, sizeof(*t->rows), row_cmp);
}

void conn_table_print_json(FILE *f, struct conn_table *t) {
        for (size_t i = 0; i < t->n; i++)
                if (t->rows[i].json)
                        format_json_element(f, t->rows[i].json, i == 0);
        fputs(t->n ? "\n]\n" : "[]\n", f);
}

void format_connections(FILE *f, json_t *conns) {
        struct conn_table *t = conn_table_new();
        json_t *c;
        size_t i;

        if (!t) {
                term_error("out of memory");
                return;
        }
        json_array_foreach(conns, i, c)
                if (conn_table_add(t, c, false) < 0) {
                        term_error("out of memory");
                        conn_table_free(t);
                        return;
                }
        conn_table_print(f, t);
        conn_table_free(t);
}

enum { BK_SERVICE, BK_BACKEND, BK_STATE, BK_ADMIN, BK_CHECK, BK_OPEN, BK_TOTAL, BK_FAILED, BK_IN, BK_OUT, _BK_MAX };

static const struct column backend_columns[_BK_MAX] = {
        [BK_SERVICE] = { "SERVICE", false, false }, [BK_BACKEND] = { "BACKEND", false, false },
        [BK_STATE] = { "STATE", false, false },     [BK_ADMIN] = { "ADMIN", false, false },
        [BK_CHECK] = { "CHECK", false, false },     [BK_OPEN] = { "OPEN", true, false },
        [BK_TOTAL] = { "TOTAL", true, false },      [BK_FAILED] = { "FAILED", true, false },
        [BK_IN] = { "IN", true, false },            [BK_OUT] = { "OUT", true, false },
};

int format_backends(FILE *f, json_t *backends) {
        size_t n = json_array_size(backends), width[_BK_MAX], i;
        char (*rows)[_BK_MAX][CELL] = calloc(n + 1, sizeof(*rows));
        const char *cells[_BK_MAX];
        bool shown[_BK_MAX];
        json_t *b;

        if (!rows)
                return -ENOMEM;
        if (n == 0) {
                fprintf(f, "no backends (no service of type = forward)\n");
                free(rows);
                return 0;
        }
        json_array_foreach(backends, i, b) {
                char (*r)[CELL] = rows[i + 1];

                snprintf(r[BK_SERVICE], CELL, "%s", str(b, "service"));
                snprintf(r[BK_BACKEND], CELL, "%s", str(b, "backend"));
                snprintf(r[BK_STATE], CELL, "%s", str(b, "state"));
                snprintf(r[BK_ADMIN], CELL, "%s", str(b, "admin"));
                if (json_object_get(b, "check_error"))
                        snprintf(r[BK_CHECK], CELL, "%s (%s)", str(b, "check"), str(b, "check_error"));
                else
                        snprintf(r[BK_CHECK], CELL, "%s", str(b, "check"));
                snprintf(r[BK_OPEN], CELL, "%llu", num(b, "connections_open"));
                snprintf(r[BK_TOTAL], CELL, "%llu", num(b, "connections_total"));
                snprintf(r[BK_FAILED], CELL, "%llu", num(b, "connect_failures"));
                format_size(num(b, "bytes_in"), r[BK_IN], CELL);
                format_size(num(b, "bytes_out"), r[BK_OUT], CELL);
        }
        for (int k = 0; k < _BK_MAX; k++) {
                shown[k] = true;
                width[k] = strlen(backend_columns[k].title);
                snprintf(rows[0][k], CELL, "%s", backend_columns[k].title);
                for (size_t r = 1; r <= n; r++)
                        if (text_cols(rows[r][k]) > width[k])
                                width[k] = text_cols(rows[r][k]);
        }
        for (size_t r = 0; r <= n; r++) {
                for (int k = 0; k < _BK_MAX; k++)
                        cells[k] = rows[r][k];
                print_cells(f, backend_columns, _BK_MAX, shown, width, cells, r == 0);
        }
        free(rows);
        return 0;
}

enum { FL_HOST, FL_STATE, FL_UP, FL_OPEN, FL_TOTAL, FL_KICKED, FL_REFUSED, FL_IN, FL_OUT, _FL_MAX };

static const struct column fleet_columns[_FL_MAX] = {
        [FL_HOST] = { "HOST", false, false },    [FL_STATE] = { "STATE", false, false },
        [FL_UP] = { "UP", true, false },         [FL_OPEN] = { "OPEN", true, false },
        [FL_TOTAL] = { "TOTAL", true, false },   [FL_KICKED] = { "KICKED", true, false },
        [FL_REFUSED] = { "REFUSED", true, false }, [FL_IN] = { "IN", true, false },
        [FL_OUT] = { "OUT", true, false },
};

/* The counters of the fleet table, summed on the totals line. */
static const struct {
        int col;
        const char *key;
        bool size;
} fleet_counters[] = {
        { FL_OPEN, "connections_open" },     { FL_TOTAL, "connections_total" },
        { FL_KICKED, "connections_kicked" }, { FL_REFUSED, "connections_refused" },
        { FL_IN, "bytes_in", true },         { FL_OUT, "bytes_out", true },
};

static void fleet_cells(char row[_FL_MAX][CELL], const char *host, const char *state, const char *up,
                        const unsigned long long *counts) {
        snprintf(row[FL_HOST], CELL, "%s", host);
        snprintf(row[FL_STATE], CELL, "%s", state);
        snprintf(row[FL_UP], CELL, "%s", up);
        for (size_t j = 0; j < ARRAY_SIZE(fleet_counters); j++) {
                int k = fleet_counters[j].col;

                if (!counts)
                        snprintf(row[k], CELL, "-");
                else if (fleet_counters[j].size)
                        format_size(counts[j], row[k], CELL);
                else
                        snprintf(row[k], CELL, "%llu", counts[j]);
        }
}

void format_fleet_status(FILE *f, json_t *replies) {
        size_t n = json_array_size(replies), up_hosts = 0, width[_FL_MAX];
        char (*rows)[_FL_MAX][CELL] = calloc(n + 2, sizeof(*rows));
        unsigned long long total[ARRAY_SIZE(fleet_counters)] = {};
        const char *cells[_FL_MAX];
        bool shown[_FL_MAX];
        char up[64], hosts[64];
        json_t *st;
        size_t i;

        if (!rows) {
                term_error("out of memory");
                return;
        }
        json_array_foreach(replies, i, st) {
                unsigned long long counts[ARRAY_SIZE(fleet_counters)];

                if (json_object_get(st, "error")) { /* said on stderr as it happened */
                        fleet_cells(rows[i + 1], str(st, "host"), "failed", "-", NULL);
                        continue;
                }
                up_hosts++;
                for (size_t j = 0; j < ARRAY_SIZE(fleet_counters); j++) {
                        counts[j] = num(st, fleet_counters[j].key);
                        total[j] += counts[j];
                }
                /* a host running on old settings, or none, says so here too */
                fleet_cells(rows[i + 1], str(st, "host"),
                            json_string_value(json_object_get(st, "settings_error")) ? "settings error" : str(st, "state"),
                            format_duration(num(st, "uptime_usec") / 1000000 * 1000000, up, sizeof(up)), counts);
        }
        snprintf(hosts, sizeof(hosts), "%zu of %zu up", up_hosts, n);
        fleet_cells(rows[n + 1], "total", hosts, "", total);
        for (int k = 0; k < _FL_MAX; k++) {
                shown[k] = true;
                width[k] = strlen(fleet_columns[k].title);
                snprintf(rows[0][k], CELL, "%s", fleet_columns[k].title);
                for (size_t r = 1; r < n + 2; r++)
                        if (text_cols(rows[r][k]) > width[k])
                                width[k] = text_cols(rows[r][k]);
        }
        for (size_t r = 0; r < n + 2; r++) {
                for (int k = 0; k < _FL_MAX; k++)
                        cells[k] = rows[r][k];
                print_cells(f, fleet_columns, _FL_MAX, shown, width, cells, r == 0);
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

void format_json_element(FILE *f, json_t *v, bool first) {
        /* an element a line: a list of 19,000 connections is 19,000 lines
         * that grep and jq both take, not 266,000, and printing it pretty
         * was a third of tcpctl's time */
        char *text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);

        fputs(first ? "[\n" : ",\n", f);
        if (text)
                fputs(text, f);
        free(text);
}

void format_event(FILE *f, json_t *e) {
        const char *type = str(e, "type");
        time_t secs = (time_t) (num(e, "time_usec") / 1000000);
        char when[32], in[32], out[32];
        struct tm tm;

        localtime_r(&secs, &tm);
        strftime(when, sizeof(when), "%H:%M:%S", &tm);
        fprintf(f, "%s.%03llu ", when, num(e, "time_usec") / 1000 % 1000);
        if (streq(type, "connected"))
                fprintf(f, "connected %llu %s %s\n", num(e, "id"), str(e, "peer"), str(e, "service"));
        else if (streq(type, "closed") || streq(type, "kicked"))
                fprintf(f, "%-9s %llu %s %s%s%s: %s, %s in, %s out\n", type, num(e, "id"), str(e, "peer"),
                        str(e, "service"), json_object_get(e, "backend") ? " to " : "",
                        json_object_get(e, "backend") ? str(e, "backend") : "", str(e, "reason"),
                        format_size(num(e, "bytes_in"), in, sizeof(in)), format_size(num(e, "bytes_out"), out, sizeof(out)));
        else if (streq(type, "refused"))
                fprintf(f, "refused   %s by %s\n", str(e, "peer"), str(e, "rule"));
        else if (streq(type, "reload") && json_is_true(json_object_get(e, "ok")))
                fprintf(f, "reload    ok\n");
        else if (streq(type, "reload"))
                fprintf(f, "reload    failed: %s\n", str(e, "error"));
        else if (streq(type, "backend") && json_object_get(e, "admin"))
                fprintf(f, "backend   %s %s %s\n", str(e, "service"), str(e, "backend"), str(e, "admin"));
        else if (streq(type, "backend"))
                fprintf(f, "backend   %s %s %s (check: %s)\n", str(e, "service"), str(e, "backend"), str(e, "state"),
                        str(e, "reason"));
        else if (streq(type, "dropped"))
                fprintf(f, "dropped   %llu events: this monitor did not read fast enough\n", num(e, "count"));
        else
                fprintf(f, "%s\n", type);
}

void format_json_line(FILE *f, json_t *v) {
        json_dumpf(v, f, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fputc('\n', f);
}

void format_json(FILE *f, json_t *v) {
        json_dumpf(v, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', f);
}
