/* The per-connection data path. Kept small: one recv into the loop's shared
 * buffer, one send straight back; only a partial send allocates. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "conn-io.h"
#include "fdstore.h"
#include "listener.h"
#include "log.h"
#include "monitor.h"
#include "ops.h"
#include "proxied.h"
#include "services/service.h"

static const char *const reason_names[] = {
        [CLOSE_PEER] = "closed by peer", [CLOSE_RESET] = "reset by peer", [CLOSE_ERROR] = "error",
        [CLOSE_KICKED] = "kicked",       [CLOSE_IDLE] = "idle timeout",   [CLOSE_SHUTDOWN] = "shutdown",
        [CLOSE_LIFETIME] = "max lifetime", [CLOSE_DONE] = "done", [CLOSE_BACKEND_RESET] = "reset by backend",
        [CLOSE_NO_BACKEND] = "no backend",
};

const char *close_reason_name(enum close_reason r) {
        return reason_names[r];
}

const char *conn_state_name(const struct conn *c) {
        if (c->state == CONN_DRAINING)
                return "draining";
        if (c->owed)
                return c->events & EPOLLIN ? "sending" : "blocked";
        return "open";
}

void conn_log_at(const char *code_file, const char *code_line, const char *func, struct loop *l,
                 const struct conn *c, int level, const char *event, const char *extra_field, const char *fmt, ...) {
        char id[48], peer[ADDR_STRLEN + 16], in[48], out[48], ev[48], svc[48], msg[512];
        char host[ADDR_STRLEN];
        const char *fields[8];
        size_t n = 0;
        va_list ap;

        if (level > log_level_get())
                return;
        snprintf(id, sizeof(id), "TCPD_CONNECTION_ID=%llu", (unsigned long long) c->id);
        snprintf(peer, sizeof(peer), "TCPD_PEER=%s", addr_format(&c->peer, host, sizeof(host)));
        snprintf(svc, sizeof(svc), "TCPD_SERVICE=%s", service_id_name(c->service));
        snprintf(in, sizeof(in), "TCPD_BYTES_IN=%llu", (unsigned long long) c->bytes_in);
        snprintf(out, sizeof(out), "TCPD_BYTES_OUT=%llu", (unsigned long long) c->bytes_out);
        snprintf(ev, sizeof(ev), "TCPD_EVENT=%s", event);
        fields[n++] = ev;
        fields[n++] = id;
        fields[n++] = peer;
        fields[n++] = svc;
        fields[n++] = in;
        fields[n++] = out;
        if (extra_field)
                fields[n++] = extra_field;
        fields[n] = NULL;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        log_full(code_file, code_line, func, level, 0, fields, "connection %llu from %s: %s",
                 (unsigned long long) c->id, host, msg);
}

/* A connection is in the epoll set exactly while it wants some event: a
 * program's socket (service.h's external) is not watched while it runs. */
static int conn_set_events(struct loop *l, struct conn *c, uint32_t events) {
        struct epoll_event e = { .events = events, .data.ptr = c };
        int op = !c->events ? EPOLL_CTL_ADD : !events ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;

        if (c->events == events)
                return 0;
        if (epoll_ctl(l->epfd, op, c->fd, &e) < 0)
                return -errno;
        c->events = events;
        return 0;
}

static int conn_flush(struct loop *l, struct conn *c);
static int linger_start(struct loop *l, struct conn *c);
static void wait_start(struct loop *l, struct conn *c, uint64_t until);
static void conn_end(struct loop *l, struct conn *c);
static uint32_t conn_wanted_events(const struct loop *l, const struct conn *c);

/* Puts a new or adopted connection into the table, the lists and epoll. */
static int conn_attach(struct loop *l, struct conn *c) {
        struct epoll_event e = { .data.ptr = c };
        int r;

        c->svc_stats = &l->stats.svc[c->service];
        c->ops = service_types[service_id_type(c->service)];
        e.events = conn_wanted_events(l, c);
        c->events = e.events;
        r = table_put(&l->table, c->id, c);
        if (r < 0)
                goto fail;
        if (e.events && epoll_ctl(l->epfd, EPOLL_CTL_ADD, c->fd, &e) < 0) {
                r = -errno;
                table_remove(&l->table, c->id);
                goto fail;
        }
        c->prev = l->tail;
        if (l->tail)
                l->tail->next = c;
        else
                l->head = c;
        l->tail = c;
        lru_append(l, c);
        CONN_LIST_APPEND(&l->age[c->service], c, age);
        STAT_INC(l, open);
        STAT_INC(l, total);
        STAT_INC(l, svc[c->service].open);
        STAT_INC(l, svc[c->service].total);
        __atomic_add_fetch(&l->shared->conn_fds, 1, __ATOMIC_RELAXED);
        return 0;
fail:
        if (c->ops->release)
                c->ops->release(l, c);
        close(c->fd);
        free(c->owed);
        free(c->data);
        free(c);
        return r;
}

/* A connection on fd, not yet attached; closes fd when out of memory. */
static struct conn *conn_new(struct loop *l, int fd, const union sockaddr_in46 *peer) {
        struct conn *c = calloc(1, sizeof(*c));

        if (!c) {
                close(fd);
                return NULL;
        }
        c->ev.kind = EV_CONN;
        c->fd = fd;
        c->peer = *peer;
        c->started = c->last_active = l->now;
        return c;
}

int conn_send(struct loop *l, struct conn *c, const char *buf, size_t n) {
        ssize_t w = c->owed ? 0 : data_send(c->fd, buf, n);

        if (w < 0 && errno != EAGAIN && errno != EINTR) {
                int r = -errno;

                conn_fail(l, c, r);
                return r;
        }
        w = w < 0 ? 0 : w;
        c->bytes_out += (uint64_t) w;
        STAT_OUT(l, c, (uint64_t) w);
        if ((size_t) w < n) {
                if (owed_append(c, buf + w, n - (size_t) w) < 0) {
                        conn_close(l, c, CLOSE_ERROR);
                        return -ENOMEM;
                }
                conn_update(l, c);
        }
        return 0;
}

/* The service's banner line, first thing on a new connection. What the
 * socket does not take at once (it nearly always does) waits as owed bytes,
 * before anything the service sends. */
static int conn_banner(struct loop *l, struct conn *c, const char *banner) {
        char line[CONFIG_BANNER_MAX + 3];
        int len = snprintf(line, sizeof(line), "%s\r\n", banner);

        return conn_send(l, c, line, (size_t) len);
}

int conn_open(struct loop *l, int fd, const union sockaddr_in46 *peer, unsigned svc, uint32_t local,
              struct source *src, bool proxy_check, bool *spawn_failed) {
        struct conn *c = conn_new(l, fd, peer);
        const char *banner = svc < ARRAY_SIZE(l->settings.banner) ? l->settings.banner[svc] : NULL;
        int r;

        *spawn_failed = false;
        if (!c)
                return -ENOMEM;
        c->id = loop_new_id(l);
        c->service = (uint8_t) svc;
        c->local = local;
        c->connected_usec = now_usec(CLOCK_REALTIME);
        c->src = src;
        c->proxy_check = proxy_check;
        c->ops = service_types[service_id_type(svc)];
        if (c->ops->start) {
                /* a program's banner goes first, before it writes: a new
                 * socket's buffer takes a whole line at once */
                if (banner) {
                        char line[CONFIG_BANNER_MAX + 3];
                        int len = snprintf(line, sizeof(line), "%s\r\n", banner);
                        /* counted with the program's bytes (TCP_INFO) */
                        (void) data_send(fd, line, (size_t) len);
                        banner = NULL;
                }
                r = c->ops->start(l, c);
                if (r < 0) {
                        *spawn_failed = true;
                        free(c->data);
                        free(c);
                        return r;
                }
        }
        r = conn_attach(l, c);
        if (r < 0)
                return r;
        if (l->store_new && service_type_kept(c->ops))
                fdstore_add(l, c);
        if (l->settings.log_connections)
                conn_log(l, c, LOG_INFO, "connect", NULL, "connected");
        if (monitor_active(l))
                monitor_note(l, &(struct monitor_event) { .type = MONITOR_CONNECTED, .service = c->service,
                                                         .id = c->id, .time_usec = c->connected_usec,
                                                         .peer = c->peer });
        if (banner && conn_banner(l, c, banner) < 0)
                return 0; /* closed */
        if (c->ops->open)
                c->ops->open(l, c);
        return 0;
}

int conn_adopt(struct loop *l, int fd, const union sockaddr_in46 *peer, const struct conn_saved *saved) {
        struct conn *c = conn_new(l, fd, peer);
        uint64_t age;
        int r;

        if (!c) {
                if (saved && saved->type_fd >= 0)
                        close(saved->type_fd);
                return -ENOMEM;
        }
        if (saved) {
                c->id = saved->id;
                c->service = saved->service;
                c->connected_usec = saved->connected_usec;
                c->bytes_in = saved->bytes_in;
                c->bytes_out = saved->bytes_out;
                /* the age carries on from the wall clock */
                age = now_usec(CLOCK_REALTIME) - saved->connected_usec;
                if (saved->connected_usec && age < c->started)
                        c->started -= age;
                if (saved->owed_len && owed_append(c, saved->owed, saved->owed_len) < 0) {
                        close(fd);
                        if (saved->type_fd >= 0)
                                close(saved->type_fd);
                        free(c);
                        return -ENOMEM;
                }
        } else {
                c->id = loop_new_id(l);
                c->service = SERVICE_ECHO;
                c->connected_usec = now_usec(CLOCK_REALTIME);
        }
        loop_id_seen(l, c->id);
        c->in_store = true; /* it came from there */
        c->ops = service_types[service_id_type(c->service)];
        if (c->ops->adopt) {
                r = c->ops->adopt(l, c, saved);
                if (r < 0) {
                        free(c->owed);
                        close(fd);
                        free(c);
                        return r;
                }
        }
        r = conn_attach(l, c);
        if (r == 0)
                limits_open_add(l, c->service);
        return r;
}

/* How long it lasted, into its service's histogram (tcpctl metrics). */
static void count_duration(struct loop *l, const struct conn *c) {
        static const uint64_t bounds[] = DURATION_BOUNDS_USEC;
        _Static_assert(ARRAY_SIZE(bounds) + 1 == DURATION_BUCKETS, "a bucket above the bounds");
        uint64_t d = l->now > c->started ? l->now - c->started : 0;
        size_t k = 0;

        while (k < ARRAY_SIZE(bounds) && d > bounds[k])
                k++;
        STAT_INC(l, svc[c->service].duration[k]);
        STAT_ADD(l, svc[c->service].duration_sum_usec, d);
}

/* Resets and errors are logged even without log_connections, but a client
 * that resets on purpose must not be able to flood the journal. */
static struct ratelimit close_rl = RATELIMIT_INIT(10 * 1000 * 1000, 20);

void conn_close(struct loop *l, struct conn *c, enum close_reason why) {
        char reason[64];
        unsigned suppressed = 0;
        bool notable = why == CLOSE_ERROR || why == CLOSE_RESET;
        uint64_t until;

        if (c->ops->sync)
                c->ops->sync(l, c); /* the bytes a program moved */
        if (monitor_active(l)) {
                struct conn_info info = {};

                if (c->ops->info)
                        c->ops->info(c, &info); /* a relay's backend */
                monitor_note(l, &(struct monitor_event) { .type = MONITOR_CLOSED, .service = c->service,
                                                         .why = (uint8_t) why, .id = c->id,
                                                         .time_usec = now_usec(CLOCK_REALTIME),
                                                         .bytes_in = c->bytes_in, .bytes_out = c->bytes_out,
                                                         .peer = c->peer, .backend = info.backend });
        }

        switch (why) {
        case CLOSE_KICKED:
                STAT_INC(l, kicked);
                break;
        case CLOSE_RESET:
                STAT_INC(l, resets);
                break;
        case CLOSE_IDLE:
        case CLOSE_LIFETIME:
                STAT_INC(l, idle_closed);
                break;
        default:
                break;
        }
        /* a kick has its own line, with who kicked */
        if ((l->settings.log_connections && why != CLOSE_KICKED) ||
            (notable && ratelimit_pass(&close_rl, l->now, &suppressed))) {
                snprintf(reason, sizeof(reason), "TCPD_REASON=%s", close_reason_name(why));
                conn_log(l, c, why == CLOSE_ERROR ? LOG_WARNING : LOG_INFO, "disconnect", reason,
                         "%s after %llu bytes in, %llu out%s", close_reason_name(why),
                         (unsigned long long) c->bytes_in, (unsigned long long) c->bytes_out,
                         suppressed ? " (earlier resets and errors not logged)" : "");
        }

        table_remove(&l->table, c->id);
        loop_conn_unlinking(l, c);
        if (c->prev)
                c->prev->next = c->next;
        else
                l->head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        else
                l->tail = c->prev;
        lru_unlink(l, c);
        CONN_LIST_UNLINK(&l->age[c->service], c, age);
        count_duration(l, c);
        STAT_DEC(l, open);
        STAT_DEC(l, svc[c->service].open);
        limits_open_sub(l, c->service);
        limits_release(l, c->src);
        c->src = NULL;
        fdstore_forget(l, c); /* not stored yet: no copy to worry about */
        if (c->ops->closing && (until = c->ops->closing(l, c, why))) {
                wait_start(l, c, until);
                return;
        }
        if ((why == CLOSE_KICKED || why == CLOSE_IDLE || why == CLOSE_SHUTDOWN || why == CLOSE_LIFETIME ||
             why == CLOSE_DONE) &&
            linger_start(l, c) == 0)
                return;
        conn_end(l, c);
}

/* The last of a connection: its type's resources, its socket, itself
 * (after the batch). */
static void conn_end(struct loop *l, struct conn *c) {
        if (c->ops->release)
                c->ops->release(l, c);
        free(c->owed);
        c->owed = NULL;
        conn_release_fd(l, c);
        loop_conn_closed(l, c);
}

void conn_release_fd(struct loop *l, struct conn *c) {
        int fd = c->fd;

        /* (conn_close already took fd out of the fd store's queue.)
         * systemd's copy in the fd store keeps the socket open after our
         * close(): shut it down, so the peer sees the end and systemd sees
         * EPOLLHUP and drops its copy */
        if (c->in_store) {
                (void) shutdown(fd, SHUT_RDWR);
                /* close() takes a socket out of epoll only when no other
                 * descriptor refers to it, and systemd holds one */
                (void) epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
        }
        close(fd);
        __atomic_sub_fetch(&l->shared->conn_fds, 1, __ATOMIC_RELAXED);
}

/* ---- closing from our side (see conn.h) ---- */

static void linger_wake(struct loop *l) {
        if (!l->linger_check || l->linger_check > l->now + LINGER_QUIET_USEC)
                l->linger_check = l->now + LINGER_QUIET_USEC;
}

/* The FIN after the last owed byte; from here on input is read and dropped. */
static int linger_send_fin(struct loop *l, struct conn *c) {
        if (shutdown(c->fd, SHUT_WR) < 0)
                return -errno;
        c->state = CONN_FIN_SENT;
        if (conn_set_events(l, c, EPOLLIN) < 0)
                return -errno;
        linger_wake(l);
        return 0;
}

static void linger_append(struct loop *l, struct conn *c) {
        c->next = NULL;
        c->prev = l->linger_tail;
        if (l->linger_tail)
                l->linger_tail->next = c;
        else
                l->linger_head = c;
        l->linger_tail = c;
        l->lingering++;
}

static void linger_unlink(struct loop *l, struct conn *c) {
        if (c->prev)
                c->prev->next = c->next;
        else
                l->linger_head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        else
                l->linger_tail = c->prev;
        c->prev = c->next = NULL;
        l->lingering--;
}

static void linger_finish(struct loop *l, struct conn *c) {
        linger_unlink(l, c);
        conn_end(l, c);
}

/* Closed by tcpd while its type must end something first (a program must
 * exit): kept with the lingering ones until then, and looked at again at
 * until (closing() says what next). */
static void wait_start(struct loop *l, struct conn *c, uint64_t until) {
        c->ev.kind = EV_LINGER;
        c->state = CONN_WAITING;
        c->close_by = until;
        linger_append(l, c);
        if (!l->linger_check || l->linger_check > until)
                l->linger_check = until;
}

void conn_wait_done(struct loop *l, struct conn *c) {
        if (c->state != CONN_WAITING)
                return;
        linger_unlink(l, c);
        /* the close goes on as any other from our side: the FIN after
         * what the kernel still holds for the client */
        if (linger_start(l, c) < 0)
                conn_end(l, c);
}

/* The bytes the client has not acknowledged yet, ours and the kernel's. */
static size_t linger_unsent(const struct conn *c) {
        size_t n = c->owed ? c->owed->len - c->owed->off : 0;
        int queued = 0;

        if (ioctl(c->fd, SIOCOUTQ, &queued) == 0 && queued > 0)
                n += (size_t) queued;
        return n;
}

/* Reads and drops what the client sent. Returns >0 if something came, 0
 * if nothing did, <0 at its FIN or an error. */
static int linger_read(struct loop *l, struct conn *c) {
        bool got = false;

        /* a few reads per wake-up: a client that floods us while we close
         * it gets no more of the loop than any other */
        for (int i = 0; i < 4; i++) {
                ssize_t n = data_recv(c->fd, l->rbuf, l->rbuf_size);
                if (n > 0) {
                        got = true;
                        c->last_active = l->now;
                        continue;
                }
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        break;
                return -1;
        }
        return got;
}

/* Before a final close: reads what the client sent, all of it (up to 16
 * MiB), since close() with unread input answers with a reset, and a
 * reset throws away what the kernel still holds for the client. */
static void linger_drain_input(struct loop *l, struct conn *c) {
        for (int i = 0; i < 256; i++) {
                ssize_t n = data_recv(c->fd, l->rbuf, l->rbuf_size);
                if (n <= 0 && !(n < 0 && errno == EINTR))
                        return;
        }
}

static struct ratelimit abort_rl = RATELIMIT_INIT(10 * 1000 * 1000, 10);

/* close_by has come: a connection still owed bytes is reset (and counted:
 * those bytes are lost); one that is not ends with the FIN it has. */
static void linger_abort(struct loop *l, struct conn *c) {
        size_t unsent;
        unsigned suppressed;

        if (c->state == CONN_WAITING) {
                linger_finish(l, c); /* its type lets go (release) */
                return;
        }
        unsent = linger_unsent(c);
        if (unsent) {
                /* connect() to AF_UNSPEC resets the socket itself, even while
                 * systemd's fd store holds another descriptor of it */
                struct sockaddr sa = { .sa_family = AF_UNSPEC };

                (void) connect(c->fd, &sa, sizeof(sa));
                STAT_INC(l, aborted);
                if (ratelimit_pass(&abort_rl, l->now, &suppressed))
                        conn_log(l, c, LOG_WARNING, "abort", NULL,
                                 "reset after shutdown_timeout with bytes still unsent%s",
                                 suppressed ? " (some before this were not logged)" : "");
        } else
                linger_drain_input(l, c);
        linger_finish(l, c);
}

/* Done when every byte is acknowledged and the client has been quiet for
 * a moment (a client still sending has not seen our FIN yet: wait for its
 * own FIN, so that a close does not answer its bytes with a reset). */
static bool linger_try_finish(struct loop *l, struct conn *c) {
        if (c->state != CONN_FIN_SENT || l->now - c->last_active < LINGER_QUIET_USEC || linger_unsent(c))
                return false;
        if (linger_read(l, c) > 0)
                return false;
        linger_finish(l, c);
        return true;
}

static int linger_start(struct loop *l, struct conn *c) {
        int r;

        c->ev.kind = EV_LINGER;
        c->state = CONN_CLOSING;
        c->close_by = l->now + l->settings.close_timeout_usec;
        /* no more input: what was read is all that is owed */
        r = c->owed ? conn_set_events(l, c, EPOLLOUT) : linger_send_fin(l, c);
        if (r < 0)
                return r; /* a socket already reset (kick --reset), or gone */
        linger_append(l, c);
        /* an idle connection is done at once */
        linger_try_finish(l, c);
        return 0;
}

void conn_linger_handle(struct loop *l, struct conn *c, uint32_t events) {
        if (c->state == CONN_CLOSING) {
                int r = 1;

                if (events & EPOLLOUT)
                        r = conn_flush(l, c);
                else if (events & (EPOLLHUP | EPOLLERR))
                        r = -ECONNRESET;
                if (r < 0 || (r == 1 && linger_send_fin(l, c) < 0))
                        linger_finish(l, c); /* the client is gone: nobody to send to */
                return;
        }
        if (linger_read(l, c) < 0)
                linger_finish(l, c); /* the client's FIN, or an error */
}

void conn_linger_handover(struct loop *l) {
        unsigned suppressed;

        while (l->linger_head) {
                struct conn *c = l->linger_head;

                if (c->state == CONN_WAITING) {
                        linger_finish(l, c); /* its program is not kept (release) */
                        continue;
                }
                /* what fits in the socket now, then a FIN; what does not
                 * fit is lost with this process */
                if (c->state == CONN_CLOSING && conn_flush(l, c) <= 0) {
                        STAT_INC(l, aborted);
                        if (ratelimit_pass(&abort_rl, l->now, &suppressed))
                                conn_log(l, c, LOG_WARNING, "abort", NULL,
                                         "closed at a restart with bytes still unsent%s",
                                         suppressed ? " (some before this were not logged)" : "");
                }
                if (c->state == CONN_CLOSING)
                        (void) shutdown(c->fd, SHUT_WR);
                linger_drain_input(l, c);
                linger_finish(l, c);
        }
}

uint64_t conn_linger_expire(struct loop *l, bool force) {
        struct conn *c, *next;
        uint64_t check = 0;

        for (c = l->linger_head; c; c = next) {
                next = c->next;
                if (c->state == CONN_WAITING && !force) {
                        uint64_t until;

                        if (l->now >= c->close_by) {
                                until = c->ops->closing(l, c, CLOSE_SHUTDOWN); /* what next: SIGKILL, or give up */
                                if (!until) {
                                        conn_wait_done(l, c);
                                        continue;
                                }
                                c->close_by = until;
                        }
                        if (!check || c->close_by < check)
                                check = c->close_by;
                } else if (force || l->now >= c->close_by)
                        linger_abort(l, c);
                else if (!linger_try_finish(l, c) && c->state == CONN_FIN_SENT &&
                         (!check || l->now + LINGER_QUIET_USEC < check))
                        check = l->now + LINGER_QUIET_USEC;
        }
        return check;
}

/* Queues the unsent tail of a write. Never grows past max_buffered, because
 * reads are sized to the room left; grows by doubling, so a client that
 * never reads costs each byte a bounded number of copies. */
int owed_append(struct conn *c, const char *p, size_t n) {
        return owed_buf_append(&c->owed, p, n);
}

int owed_buf_append(struct owed **op, const char *p, size_t n) {
        struct owed *o = *op;

        if (o && o->cap - o->len < n && o->off > 0) {
                /* slide the unsent bytes to the front before growing */
                memmove(o->data, o->data + o->off, o->len - o->off);
                o->len -= o->off;
                o->off = 0;
        }
        if (!o || o->cap - o->len < n) {
                size_t used = o ? o->len : 0, cap = o ? (size_t) o->cap * 2 : 4096;
                struct owed *g;

                while (cap < used + n)
                        cap *= 2;
                g = realloc(o, sizeof(*g) + cap);
                if (!g)
                        return -ENOMEM;
                if (!o)
                        g->off = g->len = 0;
                g->cap = (uint32_t) cap;
                *op = o = g;
        }
        memcpy(o->data + o->len, p, n);
        o->len += (uint32_t) n;
        return 0;
}

/* Sends what is owed. Returns 1 when all is out, 0 when the socket is full,
 * or a negative errno. */
static int conn_flush(struct loop *l, struct conn *c) {
        struct owed *o = c->owed;

        while (o->off < o->len) {
                ssize_t n = data_send(c->fd, o->data + o->off, o->len - o->off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                o->off += (uint32_t) n;
                c->bytes_out += (uint64_t) n;
                STAT_OUT(l, c, (uint64_t) n);
        }
        free(o);
        c->owed = NULL;
        return 1;
}

void conn_fail(struct loop *l, struct conn *c, int err) {
        if (err == -ECONNRESET || err == -EPIPE)
                conn_close(l, c, CLOSE_RESET);
        else {
                conn_log(l, c, LOG_DEBUG, "error", NULL, "%s", strerror(-err));
                conn_close(l, c, CLOSE_ERROR);
        }
}

/* The interest that follows from what is owed and the state. */
static uint32_t conn_wanted_events(const struct loop *l, const struct conn *c) {
        uint32_t ev = 0;

        if (c->owed || (c->ops->writable && c->state == CONN_OPEN))
                ev |= EPOLLOUT;
        if (c->state == CONN_OPEN && c->ops->readable && owed_bytes(c) < l->settings.max_buffered &&
            (!c->ops->can_read || c->ops->can_read(l, c)))
                ev |= EPOLLIN;
        return ev;
}

void conn_update(struct loop *l, struct conn *c) {
        int r;

        if (c->ops->update && c->ops->update(l, c))
                return; /* the type closed it */
        if (c->state == CONN_DRAINING && !c->owed) {
                conn_close(l, c, l->stopping ? CLOSE_SHUTDOWN : CLOSE_PEER);
                return;
        }
        r = conn_set_events(l, c, conn_wanted_events(l, c));
        if (r < 0)
                conn_fail(l, c, r);
}

/* What a client sends to a service that does not read it: counted and
 * dropped (discard, chargen, daytime, time). */
void conn_read_drop(struct loop *l, struct conn *c) {
        for (int i = 0; i < 4; i++) {
                ssize_t n = data_recv(c->fd, l->rbuf, l->rbuf_size);
                if (n < 0) {
                        if (errno != EAGAIN && errno != EINTR)
                                conn_fail(l, c, -errno);
                        return;
                }
                if (n == 0) {
                        c->state = CONN_DRAINING;
                        conn_update(l, c); /* closes once the banner is out */
                        return;
                }
                c->bytes_in += (uint64_t) n;
                STAT_IN(l, c, (uint64_t) n);
                conn_touch(l, c);
                if ((size_t) n < l->rbuf_size)
                        return;
        }
}

void conn_handle(struct loop *l, struct conn *c, uint32_t events) {
        const struct service_type *type;

        if ((events & EPOLLOUT) && c->owed) {
                int r = conn_flush(l, c);
                if (r < 0) {
                        conn_fail(l, c, r);
                        return;
                }
                conn_touch(l, c);
                conn_update(l, c); /* may close a draining connection */
                return;
        }
        type = c->ops;
        if ((events & EPOLLOUT) && type->writable && c->state == CONN_OPEN) {
                type->writable(l, c);
                if (c->ev.kind != EV_CONN)
                        return; /* closed on an error */
        }
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if ((c->events & EPOLLIN) && c->proxy_check && proxied_refuse_header(l, c))
                        return; /* a PROXY header from a peer not allowed to send one */
                if (c->events & EPOLLIN)
                        type->readable(l, c);
                else if (events & (EPOLLHUP | EPOLLERR)) {
                        int err = 0;
                        socklen_t len = sizeof(err);

                        (void) getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                        conn_fail(l, c, err ? -err : -ECONNRESET);
                }
        }
}

bool conn_drain(struct loop *l, struct conn *c) {
        c->state = CONN_DRAINING;
        if (!c->owed) {
                conn_close(l, c, CLOSE_SHUTDOWN);
                return true;
        }
        conn_update(l, c);
        return false;
}
