/* One client connection and its data path: the echo service, partial
 * writes, back-pressure, FIN and reset handling. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "config.h"
#include "limits.h"
#include "log.h"
#include "loop.h"
#include "util.h"

enum conn_state {
        CONN_OPEN,     /* reading and echoing */
        CONN_DRAINING, /* peer sent FIN, or we are stopping: flush, then close */
        /* Closed by us (kick, timeout, stop), off the loop's list: */
        CONN_CLOSING,  /* no longer read; what is owed goes out first */
        CONN_FIN_SENT, /* all sent and a FIN after it: wait until it is delivered */
        CONN_WAITING,  /* its type ends first (a program must exit): see service.h's closing */
};

enum close_reason {
        CLOSE_PEER,     /* the client closed (FIN) */
        CLOSE_RESET,    /* the client reset the connection */
        CLOSE_ERROR,
        CLOSE_KICKED,
        CLOSE_IDLE,
        CLOSE_SHUTDOWN,
        CLOSE_LIFETIME,
        CLOSE_DONE,     /* the service has said all it had to (daytime, time), or its program exited */
        CLOSE_BACKEND_RESET, /* type = forward: the backend reset its side; the client gets a reset too */
        CLOSE_NO_BACKEND,    /* type = forward: no backend took the connection */
};

/* Bytes read but not yet written back: allocated only while some are owed. */
struct owed {
        uint32_t off, len, cap;
        char data[];
};

struct conn {
        struct ev ev; /* first */
        uint8_t state;
        uint8_t service;
        /* its service takes PROXY headers from some peers, not this one: a
         * header as its first bytes is refused (in what was padding) */
        uint8_t proxy_check;
        uint16_t gen_off; /* chargen: where in the pattern the next byte is */
        uint32_t events; /* the epoll interest now set */
        int fd;
        uint32_t local; /* 1 + index in the loop's local addresses; 0: ask the socket */
        uint64_t id;
        uint64_t connected_usec; /* CLOCK_REALTIME */
        uint64_t started;        /* CLOCK_MONOTONIC */
        uint64_t last_active;    /* CLOCK_MONOTONIC; closing: the client's last bytes */
        uint64_t close_by;       /* CLOCK_MONOTONIC: closing, reset if not done by then */
        uint64_t bytes_in, bytes_out;
        uint64_t rate_mark; /* bytes_in + bytes_out when a top list last marked them (ops.c) */
        union sockaddr_in46 peer;
        struct owed *owed;
        struct source *src; /* for per-source limits, or NULL */
        struct service_stats *svc_stats; /* its service's in the loop's counters */
        const struct service_type *ops;  /* its service's type (services/) */
        void *data;                       /* its type's, freed with it */
        struct conn *prev, *next;         /* the loop's list, id order */
        struct conn *lru_prev, *lru_next; /* its service's, least recently active first */
        struct conn *age_prev, *age_next; /* its service's, oldest first */
        struct conn *store_prev, *store_next; /* the loop's store queue, while queued */
        bool store_queued;
        bool in_store; /* systemd's fd store holds a copy of its socket */
};

/* The per-service lists of loop.h (lru: least recently active first;
 * age: oldest first), through the link fields named by f. */
#define CONN_LIST_UNLINK(list, c, f)                          \
        do {                                                  \
                if ((c)->f##_prev)                            \
                        (c)->f##_prev->f##_next = (c)->f##_next; \
                else                                          \
                        (list)->head = (c)->f##_next;         \
                if ((c)->f##_next)                            \
                        (c)->f##_next->f##_prev = (c)->f##_prev; \
                else                                          \
                        (list)->tail = (c)->f##_prev;         \
                (c)->f##_prev = (c)->f##_next = NULL;         \
        } while (0)
#define CONN_LIST_APPEND(list, c, f)               \
        do {                                       \
                (c)->f##_prev = (list)->tail;      \
                (c)->f##_next = NULL;              \
                if ((list)->tail)                  \
                        (list)->tail->f##_next = (c); \
                else                               \
                        (list)->head = (c);        \
                (list)->tail = (c);                \
        } while (0)

/* A connection accepted on fd; registers it with the loop. Takes fd,
 * except when its service could not start (*spawn_failed): the caller
 * then refuses the client. */
int conn_open(struct loop *l, int fd, const union sockaddr_in46 *peer, unsigned svc, uint32_t local,
              struct source *src, bool proxy_check, bool *spawn_failed);

/* What a previous tcpd handed over about a connection (see fdstore.c). */
struct conn_saved {
        uint64_t id;
        uint8_t service;
        uint64_t connected_usec;
        uint64_t bytes_in, bytes_out;
        const char *owed;
        uint32_t owed_len;
        /* a type's own (a relay's): its other socket (-1: none), and what
         * its save() said (conn_handover), when there was a saved state */
        int type_fd;
        bool has_type_state;
        uint8_t type_flags;
        const char *type_data;
        uint32_t type_len;
};

/* A connection from the fd store; saved is NULL when nothing was handed
 * over for it (after a crash): it then gets a new id. Takes fd (and
 * saved's type_fd). */
int conn_adopt(struct loop *l, int fd, const union sockaddr_in46 *peer, const struct conn_saved *saved);
/* Closes a connection's descriptor (shutting it down first while systemd
 * holds a copy). */
void conn_release_fd(struct loop *l, struct conn *c);
void conn_handle(struct loop *l, struct conn *c, uint32_t events);
/* A connection we close (kick, idle timeout, max lifetime, stop) lingers:
 * it is read no more, what it is owed goes out, then a FIN; it ends when
 * the client's FIN comes, or once the client has acknowledged every byte
 * and sent nothing for LINGER_QUIET_USEC. Only a connection still owed
 * bytes at its close_by (close_timeout later) is reset, and counted as
 * aborted: close() with unread input would reset it at once, and the
 * kernel would throw away the bytes still in the send queue. */
#define LINGER_QUIET_USEC (100 * 1000ULL)
/* Events on a lingering connection: send what is owed, then discard input
 * until the client's FIN. */
void conn_linger_handle(struct loop *l, struct conn *c, uint32_t events);
/* Ends lingering connections that are done or past their close_by (all,
 * with force). Returns when to look again (CLOCK_MONOTONIC), or 0. */
uint64_t conn_linger_expire(struct loop *l, bool force);
/* At a hand-over: ends every lingering connection without a reset (the
 * kernel still delivers what is queued, after our FIN). */
void conn_linger_handover(struct loop *l);

void conn_close(struct loop *l, struct conn *c, enum close_reason why);
/* A type whose closing() made the close wait: the wait is over (its
 * program exited), the close goes on. */
void conn_wait_done(struct loop *l, struct conn *c);
/* Stop reading; close at once when nothing is owed. Returns true if closed. */
bool conn_drain(struct loop *l, struct conn *c);

const char *conn_state_name(const struct conn *c);
const char *close_reason_name(enum close_reason r);

/* For log lines: "KEY=value" fields describing c. */
void conn_log_at(const char *code_file, const char *code_line, const char *func, struct loop *l,
                 const struct conn *c, int level, const char *event, const char *extra_field, const char *fmt, ...)
        _printf_(9, 10);
/* with the caller's place in the journal's CODE_ fields */
#define conn_log(l, c, level, event, extra_field, ...)                                                   \
        conn_log_at("CODE_FILE=" __FILE__, "CODE_LINE=" LOG_STRINGIFY(__LINE__), __func__, l, c, level, event, \
                    extra_field, __VA_ARGS__)
