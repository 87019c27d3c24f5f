/* A service type: what a connection does with its bytes. conn.c keeps the
 * life of a connection (accept, limits, accounting, close, the fd store)
 * and never knows which service it carries; it calls through this table.
 * Each type is one file here, and one row in list.h. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "services/list.h"

struct loop;
struct conn;
struct conn_info;
struct conn_saved;

/* What a type keeps of a connection across a hand-over, beside its
 * bytes (a relay's: which FINs have passed, what its backend has yet to
 * take). The bytes stay the type's until let_go. */
struct conn_handover {
        uint8_t flags;
        const char *data;
        uint32_t len;
};

struct service_type {
        const char *name;
        /* Before the connection is set up, for a type with work to do
         * first (exec starts its program, forward connects to a backend).
         * Returns 0, or a negative errno: the client is then refused, by
         * start_refusal (spawn, no_backend); c->data is then the type's to
         * have freed already. */
        int (*start)(struct loop *l, struct conn *c);
        uint8_t start_refusal; /* enum refusal */
        /* Descriptors a connection holds beside its socket (forward: the
         * backend's; exec: the program's stderr pipe and pidfd): accept
         * takes a client only while the fd budget has room for all. */
        uint8_t extra_fds;
        /* At the fd budget its clients are refused (reset, counted as
         * fd_limit), not left in the listen queue as other types' are. */
        bool refuse_at_ceiling;
        /* Right after accept and the banner: a type that answers at once
         * (daytime, time) sends and closes here. NULL: nothing. */
        void (*open)(struct loop *l, struct conn *c);
        /* EPOLLIN (or a hang-up) while the connection reads. NULL: tcpd
         * does not read the socket (a program does). */
        void (*readable)(struct loop *l, struct conn *c);
        /* EPOLLOUT with nothing owed, for a type that writes on its own
         * (chargen); it then wants EPOLLOUT while the connection is open. */
        void (*writable)(struct loop *l, struct conn *c);
        /* For a type with a buffer of its own (forward): whether the client
         * may be read now. NULL: while what is owed to it has room. */
        bool (*can_read)(const struct loop *l, const struct conn *c);
        /* conn_update() asks first: the type sets its own descriptors'
         * interest, and may close the connection (then returns true). */
        bool (*update)(struct loop *l, struct conn *c);
        /* tcpd closes the connection (kick, timeout, stop; called again
         * when the time it asked for has passed): returns when it must
         * look again, CLOCK_MONOTONIC, while something of the type's must
         * end first (a program must exit; it then calls conn_wait_done()),
         * or 0 when the close may go on now. */
        uint64_t (*closing)(struct loop *l, struct conn *c, int why);
        /* The connection is gone: release what the type holds for it. */
        void (*release)(struct loop *l, struct conn *c);
        /* For a type whose bytes tcpd does not see: brings bytes_in,
         * bytes_out (and their service's counters) and last_active up to
         * date from the kernel. Before a list, an idle check and a close. */
        void (*sync)(struct loop *l, struct conn *c);
        /* A type's other socket (a relay's backend side, once connected),
         * for list -i; -1 when there is none. */
        int (*other_fd)(const struct conn *c);
        /* What list shows of the type (a program's PID, a backend). */
        void (*info)(const struct conn *c, struct conn_info *i);
        /* For a type with descriptors of its own in the fd store (forward's
         * backend socket): it stores them itself (store_own: the
         * connection's socket is not queued at accept); at a hand-over,
         * save sends what it can and says what is left, and let_go closes
         * its copies without ending anything; adopt takes them back from
         * what the store and the state gave (conn_saved). */
        bool store_own;
        void (*store)(struct loop *l, struct conn *c); /* when the store queue says */
        void (*save)(struct loop *l, struct conn *c, struct conn_handover *h);
        void (*let_go)(struct loop *l, struct conn *c);
        int (*adopt)(struct loop *l, struct conn *c, const struct conn_saved *saved);
        /* Timers of the type's own in a loop (forward's connect timeouts):
         * runs once the time it last returned has come (loop.type_wake);
         * returns when to run again, CLOCK_MONOTONIC, or 0. */
        uint64_t (*tick)(struct loop *l);
        /* A program holds the socket: it is not polled, and it does not
         * survive a restart (the fd store does not keep it). */
        bool external;
        /* Not kept across a restart either, though tcpd polls it: closed
         * at a hand-over. (No type is, today.) */
        bool not_kept;
};

static inline bool service_type_kept(const struct service_type *t) {
        return !t->external && !t->not_kept;
}

#define SERVICE_DECLARE(name) extern const struct service_type service_##name;
SERVICE_TYPES(SERVICE_DECLARE)
#undef SERVICE_DECLARE

/* Indexed by enum service_kind. */
extern const struct service_type *const service_types[];
