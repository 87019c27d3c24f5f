/* tcpctl's output: tables and summaries for people, JSON for scripts. Pure
 * functions of the daemon's replies, so they can be tested without one. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "term.h"

/* What the terminal shows: colour, and a width that tables are cut to fit.
 * Until this is called: no colour, no width limit. */
void format_set_term(const struct term *t);

/* The GetStatus reply as a few lines. */
void format_status(FILE *f, json_t *status);
/* Connection objects (an array) as an aligned table, or "no connections".
 * On a terminal too narrow for it, the widest text column is cut in the
 * middle (format_ellipsize) rather than letting lines wrap. */
void format_connections(FILE *f, json_t *connections);
/* The same table built one connection at a time, as the replies stream in. */
struct conn_table;
enum { SORT_ID, SORT_AGE, SORT_IDLE, SORT_IN, SORT_OUT, SORT_PEER, SORT_RTT, _SORT_MAX };
/* The --sort key by name (id, age, idle, in, out, peer, rtt), or -1. */
int conn_sort_key(const char *name);
struct conn_table *conn_table_new(void);
struct conn_table *conn_table_free(struct conn_table *t);
/* keep_json: keep conn itself too, for conn_table_print_json(). */
int conn_table_add(struct conn_table *t, json_t *conn, bool keep_json);
/* Rows added from now on come from the host at this place in -H's order. */
void conn_table_set_group(struct conn_table *t, size_t group);
/* Orders the rows: id and peer ascending; age, idle, in, out and rtt largest first. */
void conn_table_sort(struct conn_table *t, int key);
void conn_table_print(FILE *f, struct conn_table *t);
/* The kept connections as one JSON array. */
void conn_table_print_json(FILE *f, struct conn_table *t);
/* One element of a JSON array being streamed: "[" before the first, "," between. */
void format_json_element(FILE *f, json_t *v, bool first);
/* Several hosts' GetStatus replies (each with "host", or "host" and
 * "error"): a line per host and the totals. */
void format_fleet_status(FILE *f, json_t *replies);
/* Backends (each with "service"), as tcpctl backends shows them. */
int format_backends(FILE *f, json_t *backends);
/* The Kick reply. */
void format_kick(FILE *f, json_t *reply);
/* s cut to cols columns by replacing its middle with the ellipsis; s itself
 * when it fits. */
const char *format_ellipsize(const char *s, size_t cols, char *buf, size_t n);
/* A Monitor event as one line: time, type, then what the type has. */
void format_event(FILE *f, json_t *event);
/* Any JSON value on one line (JSON lines). */
void format_json_line(FILE *f, json_t *v);
/* Any JSON value, pretty-printed, with a final newline. */
void format_json(FILE *f, json_t *v);
