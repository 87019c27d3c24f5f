/* tcpctl top: tcpd at a glance, full screen, refreshed every second: per
 * service what is open and what moves, below it the busiest connections.
 * ncurses draws it. The daemon picks the connections (ListConnections
 * with "top": each worker's largest, found in one walk), so a second of
 * this view costs about the same with ten connections or 19,000. */
#include <curses.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "format.h"
#include "tcpd/protocol.h"
#include "top.h"
#include "units.h"
#include "util.h"

#define SERVICES_MAX 64
#define GAP 2
#define MESSAGE_USEC (5 * USEC_PER_SEC)

enum { BY_RATE, BY_AGE, BY_IDLE, _BY_MAX };

static const struct {
        const char *name; /* as ListConnections' "by" takes it */
        const char *key;  /* the connection's member it orders by */
} by_keys[_BY_MAX] = {
        [BY_RATE] = { "rate", "bytes_per_sec" },
        [BY_AGE] = { "age", "age_usec" },
        [BY_IDLE] = { "idle", "idle_usec" },
};

/* A service's counters at the previous refresh, for what moved since. */
enum { S_TOTAL, S_REFUSED, S_IN, S_OUT, _S_MAX };

struct sample {
        char name[64];
        uint64_t v[_S_MAX];
};

struct top {
        const char *host; /* -H, or NULL: this machine */
        struct ctl ctl;
        bool connected;
        unsigned interval_usec;

        json_t *status;  /* the last GetStatus */
        json_t *conns;   /* the last top list: sorted, cut to the screen */
        struct sample prev[SERVICES_MAX], cur[SERVICES_MAX];
        size_t n_prev, n_cur;
        uint64_t prev_usec, cur_usec; /* CLOCK_MONOTONIC of the two samples */

        int by;
        uint64_t selected;   /* the selected connection's id, followed across refreshes */
        int selected_row;    /* where it was, for when it goes */
        uint64_t confirm_id; /* k pressed: waiting for y */
        char message[256];
        uint64_t message_until;
};

static const char *str(json_t *o, const char *key) {
        const char *s = json_string_value(json_object_get(o, key));
        return s ? s : "-";
}

static uint64_t num(json_t *o, const char *key) {
        json_int_t v = json_integer_value(json_object_get(o, key));
        return v > 0 ? (uint64_t) v : 0;
}

_printf_(2, 3) static void say(struct top *t, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(t->message, sizeof(t->message), fmt, ap);
        va_end(ap);
        t->message_until = now_usec(CLOCK_MONOTONIC) + MESSAGE_USEC;
}

static void disconnect(struct top *t) {
        if (t->connected)
                ctl_close(&t->ctl);
        t->connected = false;
}

/* One call on the view's connection; each reply's parameters (or, with
 * member set, that member of them) appended to *out. 0; -EIO when the
 * connection failed (said, and closed: the next refresh connects again);
 * -EPROTO when tcpd answered with an error, whose name is in *error. */
static int top_call(struct top *t, const char *method, json_t *params, bool more, const char *member, json_t *out,
                    char *error, size_t error_size) {
        int r;

        if (!t->connected) {
                r = ctl_connect(&t->ctl, t->host);
                if (r) {
                        ctl_close(&t->ctl);
                        json_decref(params);
                        say(t, "%s", term_last_error());
                        return -EIO;
                }
                t->connected = true;
        }
        r = ctl_send_call(&t->ctl, method, params, more);
        for (bool continues = r == 0; continues;) {
                struct vl_reply reply;

                r = ctl_read_reply(&t->ctl, &reply);
                if (r)
                        break;
                continues = reply.continues;
                if (reply.error) {
                        snprintf(error, error_size, "%s", reply.error);
                        vl_reply_done(&reply);
                        return -EPROTO; /* an error is the last reply */
                }
                json_array_append(out, member ? json_object_get(reply.params, member) : reply.params);
                vl_reply_done(&reply);
        }
        if (r) {
                disconnect(t);
                say(t, "%s; trying again every second", term_last_error());
                return -EIO;
        }
        return 0;
}

static int conn_cmp_key; /* which by_keys entry conn_cmp orders by */

static int conn_cmp(const void *a, const void *b) {
        json_t *x = *(json_t *const *) a, *y = *(json_t *const *) b;
        uint64_t kx = num(x, by_keys[conn_cmp_key].key), ky = num(y, by_keys[conn_cmp_key].key);

        if (kx != ky)
                return kx > ky ? -1 : 1; /* largest first */
        return num(x, "id") < num(y, "id") ? -1 : num(x, "id") > num(y, "id");
}

/* Rows the connections get: the screen less the lines above and below. */
static int conn_rows(const struct top *t) {
        size_t services = json_array_size(json_object_get(t->status, "services"));
        int rows = LINES - 6 - (int) (services < SERVICES_MAX ? services : SERVICES_MAX) - 3;

        return rows > 0 ? rows : 0;
}

static void take_sample(struct top *t) {
        json_t *services = json_object_get(t->status, "services"), *v;
        size_t i;

        memcpy(t->prev, t->cur, sizeof(t->cur));
        t->n_prev = t->n_cur;
        t->prev_usec = t->cur_usec;
        t->cur_usec = now_usec(CLOCK_MONOTONIC);
        t->n_cur = 0;
        json_array_foreach(services, i, v) {
                struct sample *s;

                if (t->n_cur == SERVICES_MAX)
                        break;
                s = &t->cur[t->n_cur++];
                snprintf(s->name, sizeof(s->name), "%s", str(v, "name"));
                s->v[S_TOTAL] = num(v, "connections_total");
                s->v[S_REFUSED] = num(v, "connections_refused");
                s->v[S_IN] = num(v, "bytes_in");
                s->v[S_OUT] = num(v, "bytes_out");
        }
}

/* GetStatus, then the top list for the rows there are. */
static void refresh_data(struct top *t) {
        json_t *replies = json_array(), *params;
        char error[128];
        int rows;

        if (!replies)
                return;
        if (top_call(t, TCPD_METHOD_GET_STATUS, NULL, false, NULL, replies, error, sizeof(error)) < 0 ||
            json_array_size(replies) != 1) {
                json_decref(replies);
                return;
        }
        json_decref(t->status);
        t->status = json_incref(json_array_get(replies, 0));
        json_decref(replies);
        take_sample(t);

        rows = conn_rows(t);
        json_decref(t->conns);
        t->conns = json_array();
        if (rows <= 0 || !t->conns)
                return;
        params = json_pack("{s:i,s:s}", "top", rows < 1000 ? rows : 1000, "by", by_keys[t->by].name);
        if (top_call(t, TCPD_METHOD_LIST_CONNECTIONS, params, true, "connection", t->conns, error, sizeof(error)) ==
            -EPROTO)
                say(t, "tcpd refused the list (%s): is it an older version?", error);
        /* each worker sent its own top: the view's are the largest of all */
        {
                size_t n = json_array_size(t->conns);
                json_t **v = calloc(n ? n : 1, sizeof(*v)), *sorted = json_array();

                for (size_t i = 0; v && i < n; i++)
                        v[i] = json_array_get(t->conns, i);
                conn_cmp_key = t->by;
                if (v)
                        qsort(v, n, sizeof(*v), conn_cmp);
                for (size_t i = 0; v && sorted && i < n && (int) i < rows; i++)
                        json_array_append(sorted, v[i]);
                free(v);
                if (sorted) {
                        json_decref(t->conns);
                        t->conns = sorted;
                }
        }
}

/* What moved per second since the previous sample, for the service at
 * index i of the current one (0 when it is new). */
static double per_sec(const struct top *t, size_t i, int field) {
        const struct sample *c = &t->cur[i];
        double dt = (double) (t->cur_usec - t->prev_usec) / USEC_PER_SEC;

        if (!t->prev_usec || dt <= 0)
                return 0;
        for (size_t k = 0; k < t->n_prev; k++)
                if (streq(t->prev[k].name, c->name))
                        return c->v[field] >= t->prev[k].v[field] ? (double) (c->v[field] - t->prev[k].v[field]) / dt
                                                                  : 0;
        return 0;
}

static void cell(int y, int x, int width, bool right, const char *s) {
        if (width <= 0)
                return;
        mvprintw(y, x, right ? "%*.*s" : "%-*.*s", width, width, s);
}

static const char *rate(double v, char *buf, size_t n) {
        return format_size((uint64_t) (v + 0.5), buf, n);
}

/* Whole seconds, as list shows ages. */
static const char *secs(uint64_t usec, char *buf, size_t n) {
        if (usec < USEC_PER_SEC)
                return snprintf(buf, n, "0s"), buf;
        return format_duration(usec / USEC_PER_SEC * USEC_PER_SEC, buf, n);
}

static void draw_header(struct top *t, int *y) {
        json_t *st = t->status;
        char up[64], when[16], in[32], out[32], line[512];
        double new = 0, refused = 0, bin = 0, bout = 0;
        time_t now = time(NULL);
        struct tm tm;

        localtime_r(&now, &tm);
        strftime(when, sizeof(when), "%H:%M:%S", &tm);
        snprintf(line, sizeof(line), "tcpd %s on %s: %s, up %s", str(st, "version"),
                 t->host ? t->host : ctl_settings.socket, st ? str(st, "state") : "no answer",
                 secs(num(st, "uptime_usec"), up, sizeof(up)));
        attron(A_BOLD);
        cell(*y, 0, COLS, false, line);
        attroff(A_BOLD);
        if (COLS > (int) strlen(line) + 10)
                cell(*y, COLS - 8, 8, true, when);
        (*y)++;
        for (size_t i = 0; i < t->n_cur; i++) {
                new += per_sec(t, i, S_TOTAL);
                refused += per_sec(t, i, S_REFUSED);
                bin += per_sec(t, i, S_IN);
                bout += per_sec(t, i, S_OUT);
        }
        snprintf(line, sizeof(line), "connections: %llu open, %.0f/s new, %.0f/s refused; in %s/s, out %s/s; %llu workers",
                 (unsigned long long) num(st, "connections_open"), new, refused, rate(bin, in, sizeof(in)),
                 rate(bout, out, sizeof(out)), (unsigned long long) num(st, "workers"));
        cell(*y, 0, COLS, false, line);
        *y += 2;
}

static void draw_services(struct top *t, int *y) {
        static const char *const titles[] = { "SERVICE", "OPEN", "NEW/s", "REFUSED/s", "IN/s", "OUT/s" };
        json_t *services = json_object_get(t->status, "services"), *v;
        int w[6] = { 7, 7, 7, 9, 8, 8 }, x;
        char buf[6][64];
        size_t i;

        json_array_foreach(services, i, v)
                if ((int) strlen(str(v, "name")) > w[0])
                        w[0] = strlen(str(v, "name")) < 24 ? (int) strlen(str(v, "name")) : 24;
        attron(A_BOLD);
        x = 0;
        for (int k = 0; k < 6; k++) {
                cell(*y, x, w[k] < COLS - x ? w[k] : COLS - x, k > 0, titles[k]);
                x += w[k] + GAP;
        }
        attroff(A_BOLD);
        (*y)++;
        for (i = 0; i < t->n_cur && *y < LINES - 1; i++, (*y)++) {
                snprintf(buf[0], sizeof(buf[0]), "%s", t->cur[i].name);
                snprintf(buf[1], sizeof(buf[1]), "%llu",
                         (unsigned long long) num(json_array_get(services, i), "connections_open"));
                snprintf(buf[2], sizeof(buf[2]), "%.0f", per_sec(t, i, S_TOTAL));
                snprintf(buf[3], sizeof(buf[3]), "%.0f", per_sec(t, i, S_REFUSED));
                rate(per_sec(t, i, S_IN), buf[4], sizeof(buf[4]));
                rate(per_sec(t, i, S_OUT), buf[5], sizeof(buf[5]));
                x = 0;
                for (int k = 0; k < 6; k++) {
                        cell(*y, x, w[k] < COLS - x ? w[k] : COLS - x, k > 0, buf[k]);
                        x += w[k] + GAP;
                }
        }
        (*y)++;
}

enum { C_ID, C_PEER, C_SERVICE, C_RATE, C_IN, C_OUT, C_AGE, C_IDLE, _C_MAX };

static void draw_conns(struct top *t, int *y) {
        static const char *const titles[_C_MAX] = { "ID", "PEER", "SERVICE", "BYTES/s", "IN", "OUT", "AGE", "IDLE" };
        /* what goes first when the terminal is narrow; ID and PEER stay */
        static const int drop[] = { C_IDLE, C_OUT, C_IN, C_AGE, C_SERVICE };
        int w[_C_MAX] = { 2, 4, 7, 7, 6, 6, 6, 6 }, sorted_col = t->by == BY_RATE ? C_RATE : t->by == BY_AGE ? C_AGE : C_IDLE;
        bool shown[_C_MAX];
        size_t n = json_array_size(t->conns), i;
        char buf[_C_MAX][64], line[160];
        int total = 0, x;
        json_t *c;

        snprintf(line, sizeof(line), "busiest connections by %s (of %llu open)", by_keys[t->by].name,
                 (unsigned long long) num(t->status, "connections_open"));
        cell(*y, 0, COLS, false, line);
        (*y)++;
        json_array_foreach(t->conns, i, c) {
                char id[32];
                int len[3] = { snprintf(id, sizeof(id), "%llu", (unsigned long long) num(c, "id")),
                               (int) strlen(str(c, "peer")), (int) strlen(str(c, "service")) };

                for (int k = 0; k < 3; k++)
                        if (len[k] > w[k])
                                w[k] = len[k] < 47 ? len[k] : 47;
        }
        if (w[C_SERVICE] > 16)
                w[C_SERVICE] = 16;
        for (int k = 0; k < _C_MAX; k++) {
                shown[k] = true;
                total += w[k] + (k ? GAP : 0);
        }
        for (size_t d = 0; d < ARRAY_SIZE(drop) && total > COLS; d++) {
                shown[drop[d]] = false;
                total -= w[drop[d]] + GAP;
        }
        attron(A_BOLD);
        x = 0;
        for (int k = 0; k < _C_MAX; k++) {
                if (!shown[k])
                        continue;
                if (k == sorted_col)
                        attron(A_UNDERLINE);
                cell(*y, x, w[k] < COLS - x ? w[k] : COLS - x, k != C_PEER && k != C_SERVICE, titles[k]);
                if (k == sorted_col)
                        attroff(A_UNDERLINE);
                x += w[k] + GAP;
        }
        attroff(A_BOLD);
        (*y)++;
        if (n == 0) {
                cell(*y, 0, COLS, false, "no connections");
                (*y)++;
        }
        if (t->selected_row >= (int) n)
                t->selected_row = n ? (int) n - 1 : 0;
        json_array_foreach(t->conns, i, c)
                if (num(c, "id") == t->selected) /* follow it where it moved */
                        t->selected_row = (int) i;
        if (n)
                t->selected = num(json_array_get(t->conns, (size_t) t->selected_row), "id");
        json_array_foreach(t->conns, i, c) {
                if (*y >= LINES - 1)
                        break;
                snprintf(buf[C_ID], 64, "%llu", (unsigned long long) num(c, "id"));
                snprintf(buf[C_PEER], 64, "%s", str(c, "peer"));
                snprintf(buf[C_SERVICE], 64, "%s", str(c, "service"));
                format_size(num(c, "bytes_per_sec"), buf[C_RATE], 64);
                format_size(num(c, "bytes_in"), buf[C_IN], 64);
                format_size(num(c, "bytes_out"), buf[C_OUT], 64);
                secs(num(c, "age_usec"), buf[C_AGE], 64);
                secs(num(c, "idle_usec"), buf[C_IDLE], 64);
                if ((int) i == t->selected_row) {
                        attron(A_REVERSE); /* the whole line */
                        cell(*y, 0, COLS, false, "");
                }
                x = 0;
                for (int k = 0; k < _C_MAX; k++) {
                        if (!shown[k])
                                continue;
                        cell(*y, x, w[k] < COLS - x ? w[k] : COLS - x, k != C_PEER && k != C_SERVICE, buf[k]);
                        x += w[k] + GAP;
                }
                if ((int) i == t->selected_row)
                        attroff(A_REVERSE);
                (*y)++;
        }
}

static void draw(struct top *t) {
        int y = 0;

        erase();
        draw_header(t, &y);
        if (t->status) {
                draw_services(t, &y);
                draw_conns(t, &y);
        }
        if (t->confirm_id) {
                char line[128];

                snprintf(line, sizeof(line), "kick connection %llu? y/n", (unsigned long long) t->confirm_id);
                attron(A_BOLD);
                cell(LINES - 1, 0, COLS, false, line);
                attroff(A_BOLD);
        } else if (t->message[0] && now_usec(CLOCK_MONOTONIC) < t->message_until)
                cell(LINES - 1, 0, COLS, false, t->message);
        else
                cell(LINES - 1, 0, COLS, false, "q quit  r/a/i by rate/age/idle  up/down select  k kick");
        refresh();
}

static void kick(struct top *t, uint64_t id) {
        json_t *replies = json_array();
        char error[128];
        int r;

        if (!replies)
                return;
        r = top_call(t, TCPD_METHOD_KICK, json_pack("{s:[I]}", "ids", (json_int_t) id), false, NULL, replies, error,
                     sizeof(error));
        if (r == -EPROTO && streq(error, VARLINK_ERROR_PERMISSION_DENIED))
                say(t, "kick needs root or tcpd's admin group");
        else if (r == -EPROTO)
                say(t, "tcpd refused the kick: %s", error);
        else if (r == 0 && num(json_array_get(replies, 0), "kicked"))
                say(t, "kicked connection %llu", (unsigned long long) id);
        else if (r == 0)
                say(t, "connection %llu was gone already", (unsigned long long) id);
        json_decref(replies);
}

/* A key: returns true to quit. */
static bool key(struct top *t, int ch, bool *fetch) {
        int n = (int) json_array_size(t->conns);

        if (t->confirm_id) {
                uint64_t id = t->confirm_id;

                t->confirm_id = 0;
                if (ch == 'y' || ch == 'Y') {
                        kick(t, id);
                        *fetch = true;
                } else
                        say(t, "not kicked");
                return false;
        }
        switch (ch) {
        case 'q':
        case 'Q':
                return true;
        case 'r':
        case 'a':
        case 'i':
                t->by = ch == 'r' ? BY_RATE : ch == 'a' ? BY_AGE : BY_IDLE;
                t->selected_row = 0;
                t->selected = 0;
                *fetch = true;
                break;
        case KEY_UP:
        case 'K':
                if (t->selected_row > 0)
                        t->selected = num(json_array_get(t->conns, (size_t) --t->selected_row), "id");
                break;
        case KEY_DOWN:
        case 'J':
                if (t->selected_row + 1 < n)
                        t->selected = num(json_array_get(t->conns, (size_t) ++t->selected_row), "id");
                break;
        case 'k':
                if (n)
                        t->confirm_id = t->selected;
                break;
        case KEY_RESIZE:
                *fetch = true; /* more rows, or fewer: another top list */
                break;
        case 12: /* ^L */
                clearok(curscr, TRUE);
                break;
        }
        return false;
}

int top_run(const char *host) {
        struct top t = { .host = host };
        uint64_t next;
        bool fetch = false;

        if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
                term_error("top needs a terminal; for scripts, status --json and list --json");
                return EXIT_FAILURE;
        }
        /* the first call outside the screen: a tcpd that is not there is
         * said as every other command says it */
        {
                json_t *replies = json_array();
                char error[128];
                int r = replies ? top_call(&t, TCPD_METHOD_GET_STATUS, NULL, false, NULL, replies, error, sizeof(error))
                                : -ENOMEM;

                json_decref(replies);
                if (r < 0) { /* a failed connection was said as it failed */
                        if (r != -EIO)
                                term_error("tcpd refused GetStatus: %s", r == -EPROTO ? error : strerror(-r));
                        disconnect(&t);
                        return EXIT_FAILURE;
                }
                t.message[0] = 0;
        }
        term_set_quiet(true);
        if (!initscr()) {
                term_set_quiet(false);
                disconnect(&t);
                term_error("cannot start the screen (TERM=%s)", getenv("TERM") ?: "");
                return EXIT_FAILURE;
        }
        cbreak();
        noecho();
        keypad(stdscr, TRUE);
        curs_set(0);
        refresh_data(&t);
        draw(&t);
        next = now_usec(CLOCK_MONOTONIC) + USEC_PER_SEC;
        while (!ctl_stop_requested) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                int ch;

                if (now >= next || fetch) {
                        refresh_data(&t);
                        draw(&t);
                        next = now_usec(CLOCK_MONOTONIC) + USEC_PER_SEC;
                        fetch = false;
                        continue;
                }
                /* short waits: a signal (Ctrl-C) is seen within a quarter second */
                timeout((int) ((next - now) / 1000 < 250 ? (next - now) / 1000 + 1 : 250));
                ch = getch();
                if (ch == ERR)
                        continue;
                if (key(&t, ch, &fetch))
                        break;
                if (!fetch) /* else at once with what the key asked for */
                        draw(&t);
        }
        endwin();
        term_set_quiet(false);
        disconnect(&t);
        json_decref(t.status);
        json_decref(t.conns);
        return 0;
}
