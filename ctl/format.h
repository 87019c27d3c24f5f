/* tcpctl's output: tables and summaries for people, JSON for scripts. Pure
 * functions of the daemon's replies, so they can be tested without one. */
#pragma once

#include <jansson.h>
#include <stdio.h>

/* The GetStatus reply as a few lines. */
void format_status(FILE *f, json_t *status);
/* Connection objects (an array) as an aligned table, or "no connections". */
void format_connections(FILE *f, json_t *connections);
/* The Kick reply. */
void format_kick(FILE *f, json_t *reply);
/* Any JSON value, pretty-printed, with a final newline. */
void format_json(FILE *f, json_t *v);
