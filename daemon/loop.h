/* The data loop: a small epoll loop that owns connections and does their
 * I/O. sd-event (signals, timers, the control socket, the watchdog) runs
 * inside it through sd_event_get_fd(), so a busy connection costs one
 * epoll_wait per batch, not one per event. Everything else reaches the
 * connections by posting a message to the loop's mailbox. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "addr.h"
#include "config.h"
#include "limits.h"
#include "mailbox.h"
#include "registry.h"
#include "table.h"

enum ev_kind {
        EV_CONN = 1,
        EV_LISTENER,
        EV_MAILBOX,
        EV_SD_EVENT,
        EV_LINGER, /* a connection we closed, waiting for the client's FIN */
        EV_CALLBACK, /* a service type's own descriptor (struct ev_cb) */
        EV_PROXIED,  /* a connection from a load balancer, before its PROXY header (proxied.c) */
};

/* The first member of everything registered in the loop's epoll set. */
struct ev {
        uint8_t kind;
};

struct loop;

/* A descriptor a service type watches (a program's pidfd, its stderr). */
struct ev_cb {
        struct ev ev; /* EV_CALLBACK; 0 once it is gone, for the rest of the batch */
        void (*fn)(struct loop *l, struct ev_cb *cb, uint32_t events);
};

struct listener;
struct conn;
struct exec_spec;
struct backend_pool;
struct proxied;

struct conn_list {
        struct conn *head, *tail;
};

/* A service's own limits (registry id), where it has them; the others
 * are [tcpd]'s (see the svc_* helpers below). */
struct service_limits {
        bool has_max, has_allow, has_deny, has_per_source, has_rate, has_idle, has_lifetime;
        unsigned max_connections;
        unsigned max_connections_per_source;
        unsigned max_connection_rate, max_connection_burst;
        uint64_t idle_timeout_usec, max_lifetime_usec;
        struct cidr *allow, *deny; /* owned by the settings */
        size_t n_allow, n_deny;
        struct cidr *proxy_from; /* peers whose PROXY header tcpd takes (owned too) */
        size_t n_proxy_from;
};

/* The settings a loop applies; a reload sends it a new copy. */
/* SCM_MAX_FD: the most descriptors one message to the fd store carries. */
#define LOOP_STORE_BATCH 253

struct loop_settings {
        unsigned max_connections;
        unsigned max_connections_per_source;
        unsigned source_prefix_ipv6;
        unsigned max_connection_rate; /* per source per minute */
        unsigned max_connection_burst;
        struct cidr *allow, *deny;    /* owned by the settings */
        size_t n_allow, n_deny;
        uint64_t max_lifetime_usec;
        /* connections that fit under the open-files limit with a reserve
         * kept for the control socket and logging */
        unsigned fd_budget;
        uint64_t max_buffered;
        uint64_t idle_timeout_usec;
        uint64_t close_timeout_usec; /* shutdown_timeout: how long a close may take */
        uint64_t store_after_usec; /* store_after: a connection's age before it is stored */
        bool log_connections;
        bool refuse_all; /* the settings file never loaded: nothing to serve by */
        const char *banner[SERVICE_IDS_MAX]; /* per service id; owned by the settings */
        struct exec_spec *exec[SERVICE_IDS_MAX]; /* type = exec: its program (a reference each) */
        struct backend_pool *forward[SERVICE_IDS_MAX]; /* type = forward: its backends (a reference each) */
        struct service_limits svc_limits[SERVICE_IDS_MAX];
};

/* What every worker's loop shares: connection ids unique across workers,
 * the counts behind max_connections and the open-files budget (atomics,
 * touched once per accept and close, never per byte), and the per-source
 * table (locked, and only while a per-source limit is set). */
struct loop_shared {
        unsigned n_loops;
        uint64_t next_id;   /* atomic */
        uint64_t open;      /* atomic: connections open in every loop */
        uint64_t svc_open[SERVICE_IDS_MAX]; /* atomic: the same per service id */
        uint64_t conn_fds;  /* atomic: their descriptors, lingering ones too */
        pthread_mutex_t sources_lock;
        struct table sources; /* key -> struct source */
        /* tcpctl monitor: how many listen, and where batches go */
        unsigned monitors;          /* atomic */
        unsigned monitor_in_flight; /* atomic */
        uint64_t monitor_dropped;   /* atomic: events workers could not queue */
        struct mailbox *monitor_inbox;
        msg_fn monitor_deliver;
        void *monitor_owner;
};

/* How long closed connections lasted, in buckets whose upper bounds are
 * these (usec; a last bucket above them all): Prometheus' histogram of
 * tcpctl metrics. */
#define DURATION_BOUNDS_USEC                                                                              \
        { 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL, 60000000ULL, 600000000ULL, 3600000000ULL, \
          86400000000ULL }
#define DURATION_BUCKETS 10

/* What tcpctl status shows for each service. */
struct service_stats {
        uint64_t open, total, refused;
        uint64_t bytes_in, bytes_out;
        /* type = exec: how its programs ended (exit 0, another status, a signal) */
        uint64_t exited, failed, killed;
        /* closed connections by how long they lasted, and their sum */
        uint64_t duration[DURATION_BUCKETS];
        uint64_t duration_sum_usec;
};

/* Counters owned by the loop. Each is written by its loop's thread only, as
 * a relaxed atomic store (a plain mov on x86-64), so the control plane may
 * read them from its own thread with stat_get(). */
struct loop_stats {
        uint64_t open;
        uint64_t total;
        uint64_t kicked;
        uint64_t refused;
        uint64_t refused_by[_REFUSE_MAX]; /* by enum refusal */
        uint64_t resets;
        uint64_t aborted; /* reset by us: still owed bytes at close_timeout */
        uint64_t idle_closed;
        uint64_t bytes_in;  /* in a sum only: a loop counts bytes per service */
        uint64_t bytes_out;
        struct service_stats svc[SERVICE_IDS_MAX]; /* by service id */
};

#define STAT_ADD(l, field, n) __atomic_store_n(&(l)->stats.field, (l)->stats.field + (n), __ATOMIC_RELAXED)
#define STAT_INC(l, field) STAT_ADD(l, field, 1)
#define STAT_DEC(l, field) __atomic_store_n(&(l)->stats.field, (l)->stats.field - 1, __ATOMIC_RELAXED)
#define stat_get(v) __atomic_load_n(&(v), __ATOMIC_RELAXED)
/* Bytes of connection c, counted once, for its service: the loop's totals
 * are the sum of its services' (loop_stats_add), so the data path pays one
 * add per direction, as before there were services to count. */
#define STAT_IN(l, c, n) \
        __atomic_store_n(&(c)->svc_stats->bytes_in, (c)->svc_stats->bytes_in + (n), __ATOMIC_RELAXED)
#define STAT_OUT(l, c, n) \
        __atomic_store_n(&(c)->svc_stats->bytes_out, (c)->svc_stats->bytes_out + (n), __ATOMIC_RELAXED)

/* A service's limits in force: its own, or [tcpd]'s. */
#define SVC_LIMIT(st, svc, has, own, global) ((st)->svc_limits[svc].has ? (st)->svc_limits[svc].own : (st)->global)
#define svc_idle_timeout(st, svc) SVC_LIMIT(st, svc, has_idle, idle_timeout_usec, idle_timeout_usec)
#define svc_max_lifetime(st, svc) SVC_LIMIT(st, svc, has_lifetime, max_lifetime_usec, max_lifetime_usec)
#define svc_per_source(st, svc) SVC_LIMIT(st, svc, has_per_source, max_connections_per_source, max_connections_per_source)
#define svc_rate(st, svc) SVC_LIMIT(st, svc, has_rate, max_connection_rate, max_connection_rate)
#define svc_burst(st, svc) SVC_LIMIT(st, svc, has_rate, max_connection_burst, max_connection_burst)

/* Adds a loop's counters to *sum (from any thread). */
void loop_stats_add(struct loop_stats *sum, const struct loop_stats *s);


/* A listener as one loop sees it. A retired one stays here, unwatched,
 * until the batch ends (a later event in the batch may still point at it);
 * then the loop drops its reference. */
/* Where a list's walk of a loop's connections goes on (ops.h). */
struct list_cursor {
        struct conn *next;
        struct list_cursor *prev, *link;
};

struct loop_listener {
        struct listener *li;
        int fd; /* the socket this loop accepts on: li's, or its own in li's group */
        uint32_t local; /* what its connections' conn.local is */
        bool retired;
        bool paused; /* out of epoll while accept is paused */
};

struct loop {
        unsigned index; /* which worker */
        struct loop_shared *shared;
        void *userdata; /* the daemon's */
        int epfd;
        struct ev mailbox_ev;
        struct mailbox inbox;
        struct ev sd_event_ev;
        sd_event *event; /* the control plane's loop, driven from here */
        bool event_armed;

        struct table table;       /* id -> conn */
        struct conn *head, *tail; /* in accept order, which is id order */
        struct list_cursor *cursors; /* lists walking head..tail */
        uint64_t rate_mark_usec; /* CLOCK_MONOTONIC: a top list last marked every conn.rate_mark */
        /* Per service id: its connections least recently active first (the
         * idle sweep looks at each head), and in the order they came (for
         * max_lifetime). A service's own timeouts need lists of its own. */
        struct conn_list lru[SERVICE_IDS_MAX], age[SERVICE_IDS_MAX];
        struct conn *linger_head, *linger_tail; /* oldest first */
        struct proxied *proxied_head, *proxied_tail; /* waiting for their PROXY header, oldest first */
        struct proxied *proxied_dead; /* ended this batch: freed after it */
        uint64_t lingering;
        uint64_t linger_check; /* when to look for lingering connections that are done */
        uint64_t now; /* CLOCK_MONOTONIC at the last wake-up, usec */
        /* Per service type: its own state in this loop, and when its tick
         * runs next (service.h), 0 for never. */
        void *type_state[_SERVICE_MAX];
        uint64_t type_wake[_SERVICE_MAX];

        /* Closed this batch: freed only after it, because a later event in
         * the same epoll batch may still point at them. */
        struct conn *dead_conns;
        bool listeners_retired;

        /* Listening sockets: each loop has its own socket in a SO_REUSEPORT
         * group where tcpd binds them itself; sockets from systemd are
         * shared by every loop, each registered with EPOLLEXCLUSIVE so a new
         * connection wakes one loop, not all. */
        struct loop_listener *listeners;
        size_t n_listeners, listeners_cap;
        /* The addresses of listeners bound to one address: a connection's
         * local address is its listener's, and a list needs no
         * getsockname() for it. Only grows (by distinct addresses). */
        union sockaddr_in46 *locals;
        uint32_t n_locals;
        bool accept_paused;         /* out of file descriptors */
        int accept_pause_err;       /* the kernel's limit (every listener paused), or 0: the budget */
        uint64_t accept_resume_at;

        struct loop_settings settings;
        uint64_t next_sweep;
        struct loop_stats stats;

        bool stopping; /* flushing and closing every connection */
        bool quit;

        /* systemd's fd store: accepted sockets are sent there in batches,
         * each once it is store_after old (all at a hand-over), so that a
         * restart or a crash can adopt them; the queue is in accept order */
        bool fdstore;   /* the store may hold copies of our sockets */
        bool store_new; /* new connections go there ($FDSTORE above 0) */
        struct conn_list store_queue;
        int store_batch[LOOP_STORE_BATCH];

        struct monitor_batch *monitor; /* events for tcpctl monitor, this batch */

        char *rbuf; /* one read buffer for every connection */
        size_t rbuf_size;
        int pipe[2]; /* for splice(): made on first use, empty between events; -1 */
        bool pipe_failed; /* it could not be made: read and write instead */
};

/* splice(): large transfers move from socket to socket through the loop's
 * pipe without a copy into tcpd. The pipe is empty between events: what a
 * splice_in() put there goes out with splice_out(), and what the other
 * socket did not take is read into memory with splice_take() (or dropped
 * the same way when the connection breaks), in the same event. */
/* Whether the pipe is there (made now, the first time). */
bool loop_can_splice(struct loop *l);
/* Up to n bytes from fd into the pipe, as recv() returns (errno set). */
ssize_t splice_in(struct loop *l, int fd, size_t n);
/* The n bytes in the pipe to fd as far as it takes them: how many went
 * (0 when its buffer is full), or -1 with errno when it failed first. */
ssize_t splice_out(struct loop *l, int fd, size_t n);
/* Reads n bytes out of the pipe. 0, or -EIO (the pipe is then replaced). */
int splice_take(struct loop *l, char *buf, size_t n);

int loop_shared_init(struct loop_shared *sh);
void loop_shared_done(struct loop_shared *sh);
/* A new connection id, unique across workers. */
uint64_t loop_new_id(struct loop *l);
/* Makes sure later ids are above id (for ids adopted from the fd store). */
void loop_id_seen(struct loop *l, uint64_t id);

int loop_init(struct loop *l, unsigned index, struct loop_shared *shared, sd_event *event,
              const struct loop_settings *s);
/* Deep copies (allow/deny lists included) and their release. */
int loop_settings_copy(struct loop_settings *dst, const struct loop_settings *src);
void loop_settings_done(struct loop_settings *s);
void loop_done(struct loop *l);
/* Every loop's counters, added up. */
void loop_stats_sum(const struct loop *loops, unsigned n, struct loop_stats *sum);
/* Runs until loop_quit(). */
int loop_run(struct loop *l);

/* Starts accepting on li (taking a reference). Only on the loop's thread,
 * or before it runs: others post listener_post_add() (ops.h). */
int loop_add_listener(struct loop *l, struct listener *li);
/* A connection's local address from its conn.local, or NULL: ask the socket. */
const union sockaddr_in46 *loop_local_address(const struct loop *l, uint32_t local);
/* Stops accepting on li; its reference goes once the current batch is done. */
void loop_retire_listener(struct loop *l, struct listener *li);

/* Stop reading every connection, flush what is owed, close each once its
 * bytes are out; the loop quits when none is left. */
void loop_stop(struct loop *l);
/* Close whatever is still open now and quit. */
void loop_stop_now(struct loop *l);

/* Called before c leaves head..tail: walks that would visit it next go
 * on past it. */
void loop_cursors_skip(struct loop *l, struct conn *c);
static inline void loop_conn_unlinking(struct loop *l, struct conn *c) {
        if (l->cursors)
                loop_cursors_skip(l, c);
}
/* Called by the connection code when c went away: frees it after the
 * batch, and lets a paused accept resume. */
void loop_conn_closed(struct loop *l, struct conn *c);
/* Whether the loop may quit: no connection open or lingering. */
bool loop_idle(const struct loop *l);
/* Admission (allow, deny, the limits) and the connection set up, or the
 * client refused; proxied: its address came in a PROXY header. */
void loop_admit(struct loop *l, int fd, const union sockaddr_in46 *peer, unsigned svc, uint32_t local, bool proxied);
/* Refused: reset at once, counted, logged at a bounded rate. */
void loop_refuse(struct loop *l, int fd, const union sockaddr_in46 *peer, unsigned svc, enum refusal why);
