/* What the terminal tcpctl writes to can show (colour, a width, an ellipsis),
 * decided once at start-up, and tcpctl's error lines, which use it. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>

#include "util.h"

#define ANSI_BOLD "\x1b[1m"
#define ANSI_RED "\x1b[0;1;31m"
#define ANSI_GREEN "\x1b[0;32m"
#define ANSI_YELLOW "\x1b[0;33m"
#define ANSI_NORMAL "\x1b[0m"

struct term {
        bool color;             /* ANSI colours and bold */
        unsigned columns;       /* the width to fit tables in; 0: no limit */
        const char *ellipsis;   /* marks where text was cut */
        unsigned ellipsis_cols; /* and how many columns it takes */
};

/* Colour on fd: only on a terminal, never with NO_COLOR set (to anything but
 * the empty string, as no-color.org says), never when TERM is unset or dumb. */
bool term_colors(int fd);

/* The width of the terminal on fd: COLUMNS when it is a number, else the
 * kernel's window size, else 80. 0 when fd is not a terminal: output that
 * goes to a file or a pipe is never cut. */
unsigned term_columns(int fd);

/* Fills t for the terminal on fd: everything off when fd is not one. */
void term_probe(int fd, struct term *t);

/* "tcpctl: MESSAGE" on stderr, red when stderr is a terminal that shows colour. */
/* Messages after this start with "PREFIX: " (NULL: none): the host a
 * message is about when tcpctl talks to several. */
void term_set_prefix(const char *prefix);
/* Quiet: messages are kept (term_last_error) but not printed, and ssh's own
 * go nowhere: a full-screen view shows them itself. */
void term_set_quiet(bool quiet);
bool term_quiet(void);
/* The text of the last message, for a --json report or a view. */
const char *term_last_error(void);
_printf_(1, 0) void term_verror(const char *fmt, va_list ap);
_printf_(1, 2) void term_error(const char *fmt, ...);
/* term_error(), and EXIT_FAILURE for the command to return. */
_printf_(1, 2) int term_fail(const char *fmt, ...);
