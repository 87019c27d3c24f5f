/* Terminal capabilities for tcpctl's output: colour, width, ellipsis. */
#include <stdio.h>
#include <strings.h>
#include <sys/ioctl.h>

#include "term.h"
#include "units.h"

bool term_colors(int fd) {
        const char *no_color = getenv("NO_COLOR"), *term = getenv("TERM");

        if (no_color && *no_color)
                return false;
        /* like systemd: no TERM at all is as dumb as TERM=dumb */
        if (!term || !*term || streq(term, "dumb"))
                return false;
        return isatty(fd) == 1;
}

unsigned term_columns(int fd) {
        const char *env = getenv("COLUMNS");
        struct winsize ws = { 0 };
        uint64_t v;

        if (isatty(fd) != 1)
                return 0;
        /* COLUMNS first: it is how a user (or a test) overrides the window */
        if (env && parse_uint(env, 10000, &v) == 0 && v > 0)
                return (unsigned) v;
        if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
                return ws.ws_col;
        return 80;
}

/* The locale's character set without calling setlocale(), which would change
 * how the parsers in lib/ classify bytes: the first of LC_ALL, LC_CTYPE and
 * LANG that is set decides, as it would for the C library. */
static bool locale_is_utf8(void) {
        static const char *const vars[] = { "LC_ALL", "LC_CTYPE", "LANG" };

        for (size_t i = 0; i < ARRAY_SIZE(vars); i++) {
                const char *v = getenv(vars[i]);

                if (v && *v)
                        return strcasestr(v, "utf-8") || strcasestr(v, "utf8");
        }
        return false;
}

void term_probe(int fd, struct term *t) {
        bool utf8 = locale_is_utf8();

        *t = (struct term) {
                .color = term_colors(fd),
                .columns = term_columns(fd),
                .ellipsis = utf8 ? "\u2026" : "...",
                .ellipsis_cols = utf8 ? 1 : 3,
        };
}

/* With several hosts (tcpctl -H a -H b), which one a message is about. */
static const char *prefix;
static char last_error[512];
/* A full-screen view (tcpctl top) shows messages itself. */
static bool quiet;

void term_set_quiet(bool q) {
        quiet = q;
}

bool term_quiet(void) {
        return quiet;
}

void term_set_prefix(const char *p) {
        prefix = p;
}

const char *term_last_error(void) {
        return last_error;
}

void term_verror(const char *fmt, va_list ap) {
        int saved = errno; /* for %m: isatty() in the colour check sets it */
        bool color = term_colors(STDERR_FILENO);

        errno = saved;
        vsnprintf(last_error, sizeof(last_error), fmt, ap);
        if (quiet)
                return;
        fprintf(stderr, "%stcpctl: %s%s%s%s\n", color ? ANSI_RED : "", prefix ? prefix : "", prefix ? ": " : "",
                last_error, color ? ANSI_NORMAL : "");
}

int term_fail(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        term_verror(fmt, ap);
        va_end(ap);
        return EXIT_FAILURE;
}

void term_error(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        term_verror(fmt, ap);
        va_end(ap);
}
