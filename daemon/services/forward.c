/* type = forward: each client relayed to a backend (as rinetd, HAProxy's
 * tcp mode and relayd do). The client's socket is the connection's, as for
 * any type; the backend's is this file's, watched through an ev_cb. Both
 * directions move at once with back-pressure: a side is read only while
 * the other has room for what comes (at most max_buffered held each way;
 * what the client has not taken yet is the connection's owed bytes, what
 * the backend has not taken is `up`). A FIN is passed on once what came
 * before it is delivered, and the other direction stays open until it ends
 * too; a reset is passed on as a reset. */
#include <netinet/in.h>
#include <poll.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "backend.h"
#include "conn-io.h"
#include "fdstore.h"
#include "log.h"
#include "monitor.h"
#include "ops.h"
#include "proxyproto.h"
#include "services/service.h"

struct fwd {
        struct ev_cb ev; /* the backend's socket in the loop's epoll */
        struct conn *c;
        int fd;          /* the backend connection; -1 when none */
        uint32_t events; /* its epoll interest */
        struct backend_pool *pool;
        int backend;     /* its index in pool; -1 before the first try */
        uint64_t tried;  /* bit i: backend i was tried for this client */
        uint64_t connect_by; /* CLOCK_MONOTONIC, while connecting */
        int connect_err; /* an adopted connect's failure, for forward_tick to act on */
        bool connecting, client_eof, backend_eof, client_shut, backend_shut;
        bool stored; /* both sockets are in systemd's fd store */
        bool bulk_up, bulk_down; /* large transfers that way: spliced */
        union sockaddr_in46 backend_addr; /* where fd goes, for list (also when adopted) */
        struct owed *up; /* read from the client, not yet taken by the backend */
        uint64_t to_backend; /* bytes the backend took */
        struct fwd *prev, *next; /* the loop's connecting ones, oldest first */
};

/* In each loop: the connections waiting for a backend's answer, in the
 * order of their deadlines (connecting_link), so the first is the first
 * to time out. */
struct fwd_loop {
        struct fwd *head, *tail;
};

static struct ratelimit backend_rl = RATELIMIT_INIT(10 * 1000 * 1000, 20);

/* A direction is spliced (socket to pipe to socket, no copy into tcpd)
 * after a read of SPLICE_ON bytes or more, and read and written again
 * after a splice of less than SPLICE_OFF: small messages cost fewer
 * system calls through memory, large ones less CPU through the pipe. */
#define SPLICE_ON (16 * 1024)
#define SPLICE_OFF (4 * 1024)

/* After a read of n bytes into the pipe (spliced) or into the read buffer:
 * whether the next read of that direction is spliced. */
static bool splice_next(struct loop *l, const struct fwd *f, bool spliced, size_t n) {
        return spliced ? n >= SPLICE_OFF : n >= SPLICE_ON && f->pool->splice && loop_can_splice(l);
}

/* n bytes are in the pipe: out to fd as far as it takes them; the rest
 * into the read buffer, at l->rbuf + what went, as if it had been read.
 * What went, or -1 with errno (the pipe is emptied then too). */
static ssize_t splice_through(struct loop *l, int fd, size_t n) {
        ssize_t w = splice_out(l, fd, n);
        int err = errno;

        if (splice_take(l, l->rbuf + (w > 0 ? w : 0), n - (size_t) (w > 0 ? w : 0)) < 0 && w >= 0) {
                errno = EIO;
                return -1;
        }
        errno = err;
        return w;
}

static struct fwd_loop *fwd_loop(struct loop *l) {
        if (!l->type_state[SERVICE_KIND_forward])
                l->type_state[SERVICE_KIND_forward] = calloc(1, sizeof(struct fwd_loop));
        return l->type_state[SERVICE_KIND_forward];
}

static void connecting_unlink(struct loop *l, struct fwd *f) {
        struct fwd_loop *fl = l->type_state[SERVICE_KIND_forward];

        if (!f->connecting || !fl)
                return;
        if (f->prev)
                f->prev->next = f->next;
        else
                fl->head = f->next;
        if (f->next)
                f->next->prev = f->prev;
        else
                fl->tail = f->prev;
        f->prev = f->next = NULL;
        f->connecting = false;
}

/* Closes the backend's socket: with a reset (SO_LINGER 0) when the client
 * reset, or the connection broke; otherwise as TCP closes. */
static void backend_close(struct loop *l, struct fwd *f, bool reset) {
        if (f->fd < 0)
                return;
        connecting_unlink(l, f);
        if (f->stored) {
                /* systemd holds a copy: close() alone would neither end
                 * the connection nor take it out of epoll */
                struct sockaddr sa = { .sa_family = AF_UNSPEC };

                if (reset)
                        (void) connect(f->fd, &sa, sizeof(sa));
                else
                        (void) shutdown(f->fd, SHUT_RDWR);
                (void) epoll_ctl(l->epfd, EPOLL_CTL_DEL, f->fd, NULL);
        } else if (reset) {
                struct linger lg = { .l_onoff = 1, .l_linger = 0 };

                (void) setsockopt(f->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        close(f->fd); /* also takes it out of epoll */
        f->fd = -1;
        f->events = 0;
        f->ev.ev.kind = 0; /* an event of it later in this batch is stale */
        __atomic_sub_fetch(&l->shared->conn_fds, 1, __ATOMIC_RELAXED);
        if (f->backend >= 0)
                __atomic_sub_fetch(&f->pool->b[f->backend].st->open, 1, __ATOMIC_RELAXED);
}

static void backend_set_events(struct loop *l, struct fwd *f, uint32_t events) {
        struct epoll_event e = { .events = events, .data.ptr = &f->ev };
        int op = !f->events ? EPOLL_CTL_ADD : !events ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;

        if (f->fd < 0 || f->events == events)
                return;
        if (epoll_ctl(l->epfd, op, f->fd, &e) == 0)
                f->events = events;
}

static void log_backend(struct loop *l, struct fwd *f, int i, int err, const char *what) {
        unsigned suppressed;
        char addr[ADDR_STRLEN];

        if (ratelimit_pass(&backend_rl, l->now, &suppressed))
                conn_log(l, f->c, LOG_WARNING, "backend", NULL, "backend %s: %s: %s%s",
                         i >= 0                            ? f->pool->b[i].text
                         : f->backend_addr.sa.sa_family    ? addr_format(&f->backend_addr, addr, sizeof(addr))
                                                           : "(one connecting before the restart)",
                         what, strerror(err), suppressed ? " (some backend errors before this were not logged)" : "");
}

/* Waits for the backend's answer until by: connected or not, it comes as
 * EPOLLOUT, or the connect times out (forward_tick). The list is kept in
 * the order of by: nearly always the tail (services may differ in
 * connect_timeout, so not always). */
static void connecting_link(struct loop *l, struct fwd *f, uint64_t by) {
        struct fwd_loop *fl = fwd_loop(l);
        struct fwd *after;

        f->connecting = true;
        f->connect_by = by;
        f->connect_err = 0;
        if (!fl)
                return;
        for (after = fl->tail; after && after->connect_by > by; after = after->prev)
                ;
        f->prev = after;
        f->next = after ? after->next : fl->head;
        if (f->next)
                f->next->prev = f;
        else
                fl->tail = f;
        if (after)
                after->next = f;
        else
                fl->head = f;
        if (!l->type_wake[SERVICE_KIND_forward] || l->type_wake[SERVICE_KIND_forward] > by)
                l->type_wake[SERVICE_KIND_forward] = by;
}

/* Both sockets into systemd's fd store, when the store queue says (the
 * relay is store_after old, or a hand-over comes), connected or still
 * connecting, named so that a tcpd after a restart or a crash pairs them
 * again. */
static void forward_store(struct loop *l, struct conn *c) {
        const char *svc = service_id_name(c->service);
        struct fwd *f = c->data;
        unsigned suppressed;
        int r;

        if (!f || f->stored || f->fd < 0)
                return;
        r = fdstore_add_relay_half(c->id, svc, c->fd, 'c');
        if (r == 0)
                r = fdstore_add_relay_half(c->id, svc, f->fd, 'b');
        /* kept only with both halves: with the client's alone, a
         * hand-over resets the backend, and the next tcpd the lone half */
        f->stored = r == 0;
        if (r < 0 && ratelimit_pass(&backend_rl, l->now, &suppressed))
                log_warning_errno(r, "cannot put a relay into the fd store; it will not survive a restart");
}

/* Starts a connect to the next backend the balance gives. 0 (connecting,
 * or connected already), or -EHOSTUNREACH when no backend is left. */
static int connect_next(struct loop *l, struct fwd *f) {
        struct backend_pool *p = f->pool;

        for (;;) {
                int i = backend_pick(p, &f->c->peer, f->tried, l->now), fd, one = 1;
                const struct backend *b;

                if (i < 0)
                        return -EHOSTUNREACH;
                f->tried |= 1ULL << i;
                b = &p->b[i];
                fd = socket(b->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (fd < 0) {
                        int err = errno;

                        log_backend(l, f, i, err, "cannot create a socket");
                        return -err;
                }
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                if (connect(fd, &b->addr.sa, addr_len(&b->addr)) < 0 && errno != EINPROGRESS) {
                        log_backend(l, f, i, errno, "connect failed; trying the next");
                        close(fd);
                        backend_failed(p, (size_t) i, l->now);
                        continue;
                }
                f->fd = fd;
                f->backend = i;
                f->backend_addr = b->addr;
                f->events = 0;
                f->ev.ev.kind = EV_CALLBACK;
                __atomic_add_fetch(&l->shared->conn_fds, 1, __ATOMIC_RELAXED);
                __atomic_add_fetch(&b->st->open, 1, __ATOMIC_RELAXED);
                connecting_link(l, f, l->now + p->connect_timeout_usec);
                if (l->store_new && f->stored) {
                        /* a failover: the client's half is there, the new
                         * backend's goes now (the first waits for its turn
                         * in the store queue, with the client's) */
                        unsigned suppressed;
                        int sr = fdstore_add_relay_half(f->c->id, service_id_name(f->c->service), f->fd, 'b');

                        if (sr < 0 && ratelimit_pass(&backend_rl, l->now, &suppressed))
                                log_warning_errno(sr, "cannot put a relay into the fd store; it will not survive a "
                                                      "restart");
                }
                backend_set_events(l, f, EPOLLOUT);
                return 0;
        }
}

/* No backend took the client: it is reset, and counted as refused. */
static void no_backend(struct loop *l, struct fwd *f) {
        struct conn *c = f->c;
        struct sockaddr sa = { .sa_family = AF_UNSPEC };

        STAT_INC(l, refused);
        STAT_INC(l, refused_by[REFUSE_NO_BACKEND]);
        STAT_INC(l, svc[c->service].refused);
        (void) connect(c->fd, &sa, sizeof(sa));
        conn_close(l, c, CLOSE_NO_BACKEND);
}

/* The connect to the current backend failed (err) or timed out: the next
 * one is tried for this client. */
static void connect_failed(struct loop *l, struct fwd *f, int err) {
        int i = f->backend;

        log_backend(l, f, i, err, "connect failed; trying the next");
        if (i >= 0)
                backend_failed(f->pool, (size_t) i, l->now);
        backend_close(l, f, true);
        f->backend = -1;
        if (connect_next(l, f) < 0)
                no_backend(l, f);
}

static uint64_t forward_tick(struct loop *l) {
        struct fwd_loop *fl = l->type_state[SERVICE_KIND_forward];

        while (fl && fl->head && fl->head->connect_by <= l->now)
                connect_failed(l, fl->head, fl->head->connect_err ? fl->head->connect_err : ETIMEDOUT);
        return fl && fl->head ? fl->head->connect_by : 0;
}

/* Sends what the backend has not taken yet. 1 when all is out, 0 when its
 * socket is full, or a negative errno. */
static int flush_up(struct loop *l, struct fwd *f) {
        struct owed *o = f->up;

        while (o && o->off < o->len) {
                ssize_t n = data_send(f->fd, o->data + o->off, o->len - o->off);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : -errno;
                }
                o->off += (uint32_t) n;
                f->to_backend += (uint64_t) n;
        }
        f->up = mfree(f->up);
        return 1;
}

static void backend_broke(struct loop *l, struct fwd *f, int err);

/* The PROXY header, before anything of the client's: who the client is
 * (its address, or the one a load balancer in front gave), and where it
 * connected. What the socket does not take waits in up. */
static int send_proxy_header(struct loop *l, struct fwd *f) {
        struct conn *c = f->c;
        union sockaddr_in46 local = {};
        socklen_t len = sizeof(local);
        char hdr[PROXY_HEADER_MAX];
        size_t n;
        ssize_t w;

        if (loop_local_address(l, c->local))
                local = *loop_local_address(l, c->local);
        else if (getsockname(c->fd, &local.sa, &len) == 0)
                addr_normalize(&local);
        n = proxy_header_build((int) f->pool->proxy_protocol, &c->peer, &local, hdr);
        w = data_send(f->fd, hdr, n);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
                backend_broke(l, f, errno);
                return -1;
        }
        if (w < 0)
                w = 0;
        if ((size_t) w < n && owed_buf_append(&f->up, hdr + w, n - (size_t) w) < 0) {
                conn_close(l, c, CLOSE_ERROR);
                return -1;
        }
        return 0;
}

/* The backend broke (err): a reset goes to the client too. */
static void backend_broke(struct loop *l, struct fwd *f, int err) {
        struct conn *c = f->c;
        struct sockaddr sa = { .sa_family = AF_UNSPEC };

        if (err != ECONNRESET && err != EPIPE)
                log_backend(l, f, f->backend, err, "connection failed");
        (void) connect(c->fd, &sa, sizeof(sa));
        conn_close(l, c, CLOSE_BACKEND_RESET);
}

/* The backend's bytes to the client, as far as the client has room. */
static void backend_read(struct loop *l, struct fwd *f) {
        struct conn *c = f->c;
        size_t room = l->rbuf_size, owed = owed_bytes(c);
        bool spliced;
        ssize_t n, w;

        if (owed >= l->settings.max_buffered)
                return;
        if (l->settings.max_buffered - owed < room)
                room = l->settings.max_buffered - owed;
        spliced = f->bulk_down && owed == 0 && loop_can_splice(l);
        n = spliced ? splice_in(l, f->fd, room) : data_recv(f->fd, l->rbuf, room);
        if (n < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        backend_broke(l, f, errno);
                else
                        conn_update(l, c);
                return;
        }
        if (n == 0) {
                f->backend_eof = true;
                conn_update(l, c); /* a FIN to the client once what came before is out */
                return;
        }
        conn_touch(l, c);
        f->bulk_down = splice_next(l, f, spliced, (size_t) n);
        if (!spliced) {
                if (conn_send(l, c, l->rbuf, (size_t) n) < 0)
                        return; /* closed */
                conn_update(l, c);
                return;
        }
        w = splice_through(l, c->fd, (size_t) n);
        if (w < 0) {
                conn_fail(l, c, -errno);
                return;
        }
        c->bytes_out += (uint64_t) w;
        STAT_OUT(l, c, (uint64_t) w);
        if (w < n && owed_append(c, l->rbuf + w, (size_t) (n - w)) < 0) {
                conn_close(l, c, CLOSE_ERROR);
                return;
        }
        conn_update(l, c);
}

/* Which of the pool's backends f's socket is connected to (f->backend,
 * and its open count). False while it is not connected. */
static bool backend_find(struct fwd *f) {
        socklen_t len = sizeof(f->backend_addr);

        if (getpeername(f->fd, &f->backend_addr.sa, &len) < 0) {
                memset(&f->backend_addr, 0, sizeof(f->backend_addr));
                return false;
        }
        addr_normalize(&f->backend_addr);
        for (size_t i = 0; i < f->pool->n; i++)
                if (addr_equal(&f->pool->b[i].addr, &f->backend_addr)) {
                        f->backend = (int) i;
                        __atomic_add_fetch(&f->pool->b[i].st->open, 1, __ATOMIC_RELAXED);
                        break;
                }
        return true;
}

static void backend_event(struct loop *l, struct ev_cb *cb, uint32_t events) {
        struct fwd *f = (struct fwd *) cb;
        int r;

        if (f->connecting) {
                int err = 0;
                socklen_t len = sizeof(err);

                if (getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        err = errno;
                if (err) {
                        connect_failed(l, f, err);
                        return;
                }
                /* an event of the socket before it, in the same batch (a
                 * failover): this one is still connecting, unless it has
                 * ended (its error read already: one adopted from the store) */
                {
                        union sockaddr_in46 peer;
                        socklen_t plen = sizeof(peer);
                        struct pollfd pf = { .fd = f->fd, .events = POLLOUT };

                        if (getpeername(f->fd, &peer.sa, &plen) < 0) {
                                if (poll(&pf, 1, 0) == 1 && (pf.revents & (POLLHUP | POLLERR)))
                                        connect_failed(l, f, ECONNREFUSED);
                                return;
                        }
                }
                connecting_unlink(l, f);
                if (f->backend < 0)
                        backend_find(f); /* adopted while connecting: which one answered */
                if (f->backend >= 0)
                        backend_connected(f->pool, (size_t) f->backend);
                if (f->pool->proxy_protocol && send_proxy_header(l, f) < 0)
                        return; /* closed */
                conn_touch(l, f->c);
                conn_update(l, f->c); /* the client may be read now */
                return;
        }
        if (events & EPOLLOUT) {
                uint64_t before = f->to_backend;

                r = flush_up(l, f);
                if (r < 0) {
                        backend_broke(l, f, -r);
                        return;
                }
                if (f->to_backend != before)
                        conn_touch(l, f->c);
        }
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (f->events & EPOLLIN) {
                        backend_read(l, f);
                        return;
                }
                if (events & (EPOLLHUP | EPOLLERR)) {
                        int err = 0;
                        socklen_t len = sizeof(err);

                        (void) getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                        backend_broke(l, f, err ? err : ECONNRESET);
                        return;
                }
        }
        conn_update(l, f->c);
}

/* The client's bytes to the backend, as far as the backend has room. */
static void forward_readable(struct loop *l, struct conn *c) {
        struct fwd *f = c->data;
        size_t room = l->rbuf_size, held = owed_len(f->up);
        ssize_t n, w = 0;
        bool spliced;

        if (held >= l->settings.max_buffered || f->fd < 0 || f->connecting) {
                conn_update(l, c);
                return;
        }
        if (l->settings.max_buffered - held < room)
                room = l->settings.max_buffered - held;
        spliced = f->bulk_up && !f->up && loop_can_splice(l);
        n = spliced ? splice_in(l, c->fd, room) : data_recv(c->fd, l->rbuf, room);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return;
                conn_fail(l, c, -errno);
                return;
        }
        if (n == 0) {
                f->client_eof = true;
                conn_update(l, c); /* a FIN to the backend once what came before is out */
                return;
        }
        c->bytes_in += (uint64_t) n;
        STAT_IN(l, c, (uint64_t) n);
        conn_touch(l, c);
        f->bulk_up = splice_next(l, f, spliced, (size_t) n);
        if (!f->up) {
                w = spliced ? splice_through(l, f->fd, (size_t) n) : data_send(f->fd, l->rbuf, (size_t) n);
                if (w < 0) {
                        if (errno != EAGAIN && errno != EINTR) {
                                backend_broke(l, f, errno);
                                return;
                        }
                        w = 0;
                }
                f->to_backend += (uint64_t) w;
                if (w == n)
                        return; /* the common case: nothing changes */
        }
        if (owed_buf_append(&f->up, l->rbuf + w, (size_t) (n - w)) < 0) {
                conn_log(l, c, LOG_WARNING, "error", NULL, "out of memory for %zd bytes to the backend; closing", n - w);
                conn_close(l, c, CLOSE_ERROR);
                return;
        }
        conn_update(l, c);
}

static bool forward_can_read(const struct loop *l, const struct conn *c) {
        const struct fwd *f = c->data;

        return f && f->fd >= 0 && !f->connecting && !f->client_eof && owed_len(f->up) < l->settings.max_buffered;
}

enum {
        RELAY_CLIENT_EOF = 1 << 0,
        RELAY_BACKEND_EOF = 1 << 1,
        RELAY_CLIENT_SHUT = 1 << 2,
        RELAY_BACKEND_SHUT = 1 << 3,
};

/* A hand-over: what the backend takes now goes; the rest, and which FINs
 * have passed, go into the saved state. */
static void forward_save(struct loop *l, struct conn *c, struct conn_handover *h) {
        struct fwd *f = c->data;

        if (!f || !f->stored) {
                /* not in the store (it would not take it): it cannot be
                 * kept, and a FIN would look like an end: reset both */
                struct linger lg = { .l_onoff = 1, .l_linger = 0 };

                (void) setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
                if (f && f->fd >= 0)
                        (void) setsockopt(f->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
                return;
        }
        if (f->up && f->fd >= 0 && !f->connecting)
                (void) flush_up(l, f);
        h->flags = (uint8_t) ((f->client_eof ? RELAY_CLIENT_EOF : 0) | (f->backend_eof ? RELAY_BACKEND_EOF : 0) |
                              (f->client_shut ? RELAY_CLIENT_SHUT : 0) | (f->backend_shut ? RELAY_BACKEND_SHUT : 0));
        h->data = f->up ? f->up->data + f->up->off : NULL;
        h->len = (uint32_t) owed_len(f->up);
}

/* After the hand-over: our copy of the backend socket goes; systemd's
 * keeps the connection. */
static void forward_let_go(struct loop *l, struct conn *c) {
        struct fwd *f = c->data;

        if (!f)
                return;
        connecting_unlink(l, f);
        if (f->fd >= 0) {
                (void) epoll_ctl(l->epfd, EPOLL_CTL_DEL, f->fd, NULL);
                close(f->fd);
                f->fd = -1;
                __atomic_sub_fetch(&l->shared->conn_fds, 1, __ATOMIC_RELAXED);
                if (f->backend >= 0)
                        __atomic_sub_fetch(&f->pool->b[f->backend].st->open, 1, __ATOMIC_RELAXED);
        }
        f->ev.ev.kind = 0;
        f->up = mfree(f->up);
        f->pool = backend_pool_unref(f->pool);
}

/* A relay from the fd store: its backend socket (saved->type_fd), and,
 * after a hand-over, what it held and which FINs had passed. */
static int forward_adopt(struct loop *l, struct conn *c, const struct conn_saved *saved) {
        struct backend_pool *p = l->settings.forward[c->service];
        struct fwd *f;
        uint32_t ev = 0;

        if (!p || !saved || saved->type_fd < 0 || !(f = calloc(1, sizeof(*f)))) {
                if (saved && saved->type_fd >= 0)
                        close(saved->type_fd);
                return -EINVAL;
        }
        f->ev.ev.kind = EV_CALLBACK;
        f->ev.fn = backend_event;
        f->c = c;
        f->fd = saved->type_fd;
        f->pool = backend_pool_ref(p);
        f->backend = -1;
        f->stored = true;
        __atomic_add_fetch(&l->shared->conn_fds, 1, __ATOMIC_RELAXED);
        if (!backend_find(f)) {
                struct tcp_info ti = {};
                socklen_t len = sizeof(ti);
                int err = 0;

                (void) getsockopt(f->fd, IPPROTO_TCP, TCP_INFO, &ti, &len);
                len = sizeof(err);
                (void) getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (ti.tcpi_state != TCP_SYN_SENT && (!err || err == ECONNRESET || err == EPIPE)) {
                        /* it was connected, and broke while no tcpd
                         * watched: reset the client too */
                        struct sockaddr sa = { .sa_family = AF_UNSPEC };

                        (void) connect(c->fd, &sa, sizeof(sa));
                        c->data = f;
                        forward_let_go(l, c);
                        c->data = NULL;
                        free(f);
                        return -ECONNRESET;
                }
                /* stored while its connect was under way, and the answer
                 * has not come, or came (refused) while no tcpd watched:
                 * wait for it as for a new one, or fail it over at the
                 * loop's first turn (not here: the connection is not
                 * attached yet); the client was not read, so trying
                 * another backend loses nothing */
                c->data = f;
                connecting_link(l, f, err ? l->now : l->now + p->connect_timeout_usec);
                f->connect_err = err;
                backend_set_events(l, f, EPOLLOUT);
                return 0;
        }
        if (saved->has_type_state) {
                f->client_eof = saved->type_flags & RELAY_CLIENT_EOF;
                f->backend_eof = saved->type_flags & RELAY_BACKEND_EOF;
                f->client_shut = saved->type_flags & RELAY_CLIENT_SHUT;
                f->backend_shut = saved->type_flags & RELAY_BACKEND_SHUT;
                if (saved->type_len && owed_buf_append(&f->up, saved->type_data, saved->type_len) < 0) {
                        c->data = f;
                        forward_let_go(l, c); /* its socket, counts and pool */
                        c->data = NULL;
                        free(f);
                        return -ENOMEM;
                }
        }
        c->data = f;
        /* the backend's interest now; the client's follows from can_read */
        if (f->up)
                ev |= EPOLLOUT;
        if (!f->backend_eof && owed_bytes(c) < l->settings.max_buffered)
                ev |= EPOLLIN;
        backend_set_events(l, f, ev);
        return 0;
}

/* Passes on the FINs that are due, closes when both directions have
 * ended, and sets the backend's interest. */
static bool forward_update(struct loop *l, struct conn *c) {
        struct fwd *f = c->data;
        uint32_t ev = 0;

        if (!f || c->state != CONN_OPEN)
                return false;
        if (f->backend_eof && !c->owed && !f->client_shut) {
                (void) shutdown(c->fd, SHUT_WR);
                f->client_shut = true;
        }
        if (f->client_eof && !f->up && !f->backend_shut && !f->connecting && f->fd >= 0) {
                (void) shutdown(f->fd, SHUT_WR);
                f->backend_shut = true;
        }
        if (f->client_shut && f->backend_shut) {
                conn_close(l, c, CLOSE_PEER);
                return true;
        }
        if (f->connecting || f->up)
                ev |= EPOLLOUT;
        if (!f->connecting && !f->backend_eof && owed_bytes(c) < l->settings.max_buffered)
                ev |= EPOLLIN;
        backend_set_events(l, f, ev);
        return false;
}

static int forward_start(struct loop *l, struct conn *c) {
        struct backend_pool *p = l->settings.forward[c->service];
        struct fwd *f;
        int r;

        if (!p || !backend_any_usable(p, l->now))
                return -EHOSTUNREACH;
        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->ev.ev.kind = EV_CALLBACK;
        f->ev.fn = backend_event;
        f->c = c;
        f->fd = -1;
        f->backend = -1;
        f->pool = backend_pool_ref(p);
        c->data = f;
        r = connect_next(l, f);
        if (r < 0) {
                backend_pool_unref(f->pool);
                free(f);
                c->data = NULL;
        }
        return r;
}

static uint64_t forward_closing(struct loop *l, struct conn *c, int why) {
        struct fwd *f = c->data;

        if (f)
                backend_close(l, f, why == CLOSE_RESET || why == CLOSE_ERROR);
        return 0;
}

static void forward_release(struct loop *l, struct conn *c) {
        struct fwd *f = c->data;

        if (!f)
                return;
        backend_close(l, f, true);
        if (f->backend >= 0) {
                struct backend_state *s = f->pool->b[f->backend].st;

                __atomic_add_fetch(&s->bytes_in, f->to_backend, __ATOMIC_RELAXED);
                __atomic_add_fetch(&s->bytes_out, c->bytes_out + owed_bytes(c), __ATOMIC_RELAXED);
        }
        f->up = mfree(f->up);
        f->pool = backend_pool_unref(f->pool);
        f->backend = -1;
        /* f itself is freed with c after the batch (loop_reap): a later
         * event of this batch may still point at it */
}

static int forward_other_fd(const struct conn *c) {
        const struct fwd *f = c->data;

        return f && !f->connecting ? f->fd : -1;
}

static void forward_info(const struct conn *c, struct conn_info *i) {
        const struct fwd *f = c->data;

        if (!f || !f->pool)
                return;
        i->backend = f->backend_addr;
        if (f->connecting)
                i->state = "connecting";
        else if (f->client_eof || f->backend_eof)
                i->state = "half-closed";
        else if (f->up)
                i->state = "to-backend"; /* the backend is slow to take */
        else if (c->owed)
                i->state = "to-client"; /* the client is slow to take */
}

const struct service_type service_forward = {
        .start = forward_start,
        .start_refusal = REFUSE_NO_BACKEND,
        .extra_fds = 1,
        .refuse_at_ceiling = true,
        .readable = forward_readable,
        .can_read = forward_can_read,
        .update = forward_update,
        .closing = forward_closing,
        .release = forward_release,
        .info = forward_info,
        .other_fd = forward_other_fd,
        .tick = forward_tick,
        .store_own = true,
        .store = forward_store,
        .save = forward_save,
        .let_go = forward_let_go,
        .adopt = forward_adopt,
};
