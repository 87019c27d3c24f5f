/* chargen (RFC 864): the character pattern, as fast as the client reads;
 * what the client sends is read and dropped. */
#include <pthread.h>

#include "conn-io.h"
#include "services/service.h"

/* RFC 864's pattern: the 95 printable characters, lines of 72, each
 * line starting one character further on, ended with CRLF. Twice over, so
 * that any point of the cycle starts a contiguous run of a whole cycle. */
#define CHARGEN_LINE 72
#define CHARGEN_CYCLE (95 * (CHARGEN_LINE + 2))
static char chargen_pattern[2 * CHARGEN_CYCLE];
static pthread_once_t chargen_once = PTHREAD_ONCE_INIT;

static void chargen_init(void) {
        char *p = chargen_pattern;

        for (int copy = 0; copy < 2; copy++)
                for (int line = 0; line < 95; line++) {
                        for (int i = 0; i < CHARGEN_LINE; i++)
                                *p++ = (char) (' ' + (line + i) % 95); /* as inetd: space to '~' */
                        *p++ = '\r';
                        *p++ = '\n';
                }
}

/* chargen sends only what the socket takes, straight from the pattern: a
 * client that reads slowly costs no memory, only its socket buffer. A few
 * cycles per wake-up at most, so one fast reader cannot hold the loop. */
static void chargen_writable(struct loop *l, struct conn *c) {
        pthread_once(&chargen_once, chargen_init);
        for (int i = 0; i < 8; i++) {
                ssize_t n = data_send(c->fd, chargen_pattern + c->gen_off, CHARGEN_CYCLE);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return;
                        conn_fail(l, c, -errno);
                        return;
                }
                c->gen_off = (uint16_t) ((c->gen_off + (size_t) n) % CHARGEN_CYCLE);
                c->bytes_out += (uint64_t) n;
                STAT_OUT(l, c, (uint64_t) n);
                conn_touch(l, c);
                if (n < CHARGEN_CYCLE)
                        return;
        }
}

const struct service_type service_chargen = {
        .readable = conn_read_drop,
        .writable = chargen_writable,
};
