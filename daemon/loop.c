/* The epoll loop that carries the data path, accept, and sd-event. */
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include "conn.h"
#include "limits.h"
#include "fdstore.h"
#include "listener.h"
#include "log.h"
#include "backend.h"
#include "loop.h"
#include "monitor.h"
#include "proxied.h"
#include "services/exec.h"
#include "services/service.h"

#define LOOP_BATCH 256
#define ACCEPT_BATCH 64
#define READ_BUFFER (64 * 1024)
/* After running out of file descriptors, try accept again this soon even
 * if no connection closed in between (another process may free some). */
#define ACCEPT_RETRY_USEC (250 * 1000)

static void loop_reap(struct loop *l);

static struct ratelimit accept_error_rl = RATELIMIT_INIT(10 * 1000 * 1000, 5);
static struct ratelimit refuse_rl = RATELIMIT_INIT(10 * 1000 * 1000, 10);

/* Refused: reset at once (SO_LINGER 0), so a flood leaves no connection in
 * FIN_WAIT or TIME_WAIT behind on our side. */
static void refuse(struct loop *l, int fd, const union sockaddr_in46 *peer, unsigned svc, enum refusal why) {
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        unsigned suppressed;

        (void) setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
        STAT_INC(l, refused);
        STAT_INC(l, refused_by[why]);
        STAT_INC(l, svc[svc].refused);
        if (monitor_active(l))
                monitor_note(l, &(struct monitor_event) { .type = MONITOR_REFUSED, .why = (uint8_t) why,
                                                         .time_usec = now_usec(CLOCK_REALTIME), .peer = *peer });
        if (ratelimit_pass(&refuse_rl, l->now, &suppressed)) {
                char host[ADDR_STRLEN], peer_field[ADDR_STRLEN + 16], rule[64];
                const char *fields[] = { "TCPD_EVENT=refuse", peer_field, rule, NULL };

                addr_format(peer, host, sizeof(host));
                snprintf(peer_field, sizeof(peer_field), "TCPD_PEER=%s", host);
                snprintf(rule, sizeof(rule), "TCPD_RULE=%s", refusal_name(why));
                log_at(LOG_NOTICE, 0, fields, "refused connection from %s: %s%s", host, refusal_name(why),
                       suppressed ? " (some refusals before this were not logged)" : "");
        }
}

static int epoll_add(struct loop *l, int fd, uint32_t events, void *ptr) {
        struct epoll_event e = { .events = events, .data.ptr = ptr };
        return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &e) < 0 ? -errno : 0;
}

static int cidrs_copy(struct cidr **dst, const struct cidr *src, size_t n) {
        *dst = NULL;
        if (!n)
                return 0;
        *dst = malloc(n * sizeof(**dst));
        if (!*dst)
                return -ENOMEM;
        memcpy(*dst, src, n * sizeof(**dst));
        return 0;
}

int loop_settings_copy(struct loop_settings *dst, const struct loop_settings *src) {
        *dst = *src;
        for (size_t i = 0; i < ARRAY_SIZE(dst->exec); i++)
                dst->exec[i] = exec_spec_ref(src->exec[i]);
        for (size_t i = 0; i < ARRAY_SIZE(dst->forward); i++)
                dst->forward[i] = backend_pool_ref(src->forward[i]);
        dst->allow = dst->deny = NULL;
        for (size_t i = 0; i < ARRAY_SIZE(dst->svc_limits); i++)
                dst->svc_limits[i].allow = dst->svc_limits[i].deny = dst->svc_limits[i].proxy_from = NULL;
        for (size_t i = 0; i < ARRAY_SIZE(dst->svc_limits); i++)
                if (cidrs_copy(&dst->svc_limits[i].allow, src->svc_limits[i].allow, src->svc_limits[i].n_allow) < 0 ||
                    cidrs_copy(&dst->svc_limits[i].deny, src->svc_limits[i].deny, src->svc_limits[i].n_deny) < 0 ||
                    cidrs_copy(&dst->svc_limits[i].proxy_from, src->svc_limits[i].proxy_from,
                               src->svc_limits[i].n_proxy_from) < 0) {
                        for (size_t k = 0; k < ARRAY_SIZE(dst->banner); k++)
                                dst->banner[k] = NULL;
                        loop_settings_done(dst);
                        return -ENOMEM;
                }
        for (size_t i = 0; i < ARRAY_SIZE(dst->banner); i++) {
                dst->banner[i] = NULL;
                if (src->banner[i] && !(dst->banner[i] = strdup(src->banner[i]))) {
                        loop_settings_done(dst);
                        return -ENOMEM;
                }
        }
        if (cidrs_copy(&dst->allow, src->allow, src->n_allow) < 0 ||
            cidrs_copy(&dst->deny, src->deny, src->n_deny) < 0) {
                loop_settings_done(dst);
                return -ENOMEM;
        }
        return 0;
}

void loop_settings_done(struct loop_settings *s) {
        for (size_t i = 0; i < ARRAY_SIZE(s->exec); i++)
                s->exec[i] = exec_spec_unref(s->exec[i]);
        for (size_t i = 0; i < ARRAY_SIZE(s->forward); i++)
                s->forward[i] = backend_pool_unref(s->forward[i]);
        for (size_t i = 0; i < ARRAY_SIZE(s->svc_limits); i++) {
                free(s->svc_limits[i].allow);
                free(s->svc_limits[i].deny);
                free(s->svc_limits[i].proxy_from);
                s->svc_limits[i].allow = s->svc_limits[i].deny = s->svc_limits[i].proxy_from = NULL;
        }
        for (size_t i = 0; i < ARRAY_SIZE(s->banner); i++) {
                free((char *) s->banner[i]);
                s->banner[i] = NULL;
        }
        free(s->allow);
        free(s->deny);
        s->allow = s->deny = NULL;
        s->n_allow = s->n_deny = 0;
}

int loop_shared_init(struct loop_shared *sh) {
        memset(sh, 0, sizeof(*sh));
        sh->next_id = 1;
        return -pthread_mutex_init(&sh->sources_lock, NULL);
}

void loop_shared_done(struct loop_shared *sh) {
        limits_shared_done(sh);
        pthread_mutex_destroy(&sh->sources_lock);
}

uint64_t loop_new_id(struct loop *l) {
        return __atomic_fetch_add(&l->shared->next_id, 1, __ATOMIC_RELAXED);
}

void loop_id_seen(struct loop *l, uint64_t id) {
        uint64_t have = __atomic_load_n(&l->shared->next_id, __ATOMIC_RELAXED);

        while (have <= id &&
               !__atomic_compare_exchange_n(&l->shared->next_id, &have, id + 1, false, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED))
                ;
}

void loop_stats_add(struct loop_stats *sum, const struct loop_stats *s) {
        sum->open += stat_get(s->open);
        sum->total += stat_get(s->total);
        sum->kicked += stat_get(s->kicked);
        sum->refused += stat_get(s->refused);
        for (size_t i = 0; i < ARRAY_SIZE(s->refused_by); i++)
                sum->refused_by[i] += stat_get(s->refused_by[i]);
        sum->resets += stat_get(s->resets);
        sum->aborted += stat_get(s->aborted);
        sum->idle_closed += stat_get(s->idle_closed);
        for (size_t i = 0; i < ARRAY_SIZE(s->svc); i++) {
                sum->bytes_in += stat_get(s->svc[i].bytes_in);
                sum->bytes_out += stat_get(s->svc[i].bytes_out);
                sum->svc[i].open += stat_get(s->svc[i].open);
                sum->svc[i].total += stat_get(s->svc[i].total);
                sum->svc[i].refused += stat_get(s->svc[i].refused);
                sum->svc[i].bytes_in += stat_get(s->svc[i].bytes_in);
                sum->svc[i].bytes_out += stat_get(s->svc[i].bytes_out);
                sum->svc[i].exited += stat_get(s->svc[i].exited);
                sum->svc[i].failed += stat_get(s->svc[i].failed);
                sum->svc[i].killed += stat_get(s->svc[i].killed);
                for (size_t k = 0; k < DURATION_BUCKETS; k++)
                        sum->svc[i].duration[k] += stat_get(s->svc[i].duration[k]);
                sum->svc[i].duration_sum_usec += stat_get(s->svc[i].duration_sum_usec);
        }
}

void loop_stats_sum(const struct loop *loops, unsigned n, struct loop_stats *sum) {
        memset(sum, 0, sizeof(*sum));
        for (unsigned i = 0; i < n; i++)
                loop_stats_add(sum, &loops[i].stats);
}

int loop_init(struct loop *l, unsigned index, struct loop_shared *shared, sd_event *event,
              const struct loop_settings *s) {
        int r;

        memset(l, 0, sizeof(*l));
        l->index = index;
        l->shared = shared;
        l->epfd = -1;
        l->inbox.efd = -1;
        l->pipe[0] = l->pipe[1] = -1;
        r = loop_settings_copy(&l->settings, s);
        if (r < 0)
                return r;
        l->now = now_usec(CLOCK_MONOTONIC);
        l->rbuf_size = READ_BUFFER;
        l->rbuf = malloc(l->rbuf_size);
        if (!l->rbuf)
                return -ENOMEM;
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (l->epfd < 0)
                return -errno;
        r = mailbox_init(&l->inbox);
        if (r < 0)
                return r;
        l->mailbox_ev.kind = EV_MAILBOX;
        r = epoll_add(l, l->inbox.efd, EPOLLIN, &l->mailbox_ev);
        if (r < 0)
                return r;
        if (event) {
                l->event = sd_event_ref(event);
                l->sd_event_ev.kind = EV_SD_EVENT;
                r = epoll_add(l, sd_event_get_fd(event), EPOLLIN, &l->sd_event_ev);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void pipe_close(struct loop *l) {
        for (int k = 0; k < 2; k++)
                if (l->pipe[k] >= 0) {
                        close(l->pipe[k]);
                        l->pipe[k] = -1;
                }
}

void loop_done(struct loop *l) {
        free(l->monitor);
        l->monitor = NULL;
        proxied_close_all(l);
        while (l->head)
                conn_close(l, l->head, CLOSE_SHUTDOWN);
        conn_linger_expire(l, true);
        for (size_t i = 0; i < l->n_listeners; i++)
                loop_retire_listener(l, l->listeners[i].li);
        loop_reap(l);
        free(l->listeners);
        l->listeners = NULL;
        table_free(&l->table);
        loop_settings_done(&l->settings);
        for (size_t k = 0; k < ARRAY_SIZE(l->type_state); k++)
                l->type_state[k] = mfree(l->type_state[k]);
        mailbox_done(&l->inbox);
        if (l->epfd >= 0)
                close(l->epfd);
        l->epfd = -1;
        l->event = sd_event_unref(l->event);
        free(l->rbuf);
        l->rbuf = NULL;
        pipe_close(l);
        free(l->locals);
        l->locals = NULL;
        l->n_locals = 0;
}

bool loop_can_splice(struct loop *l) {
        if (l->pipe[0] >= 0)
                return true;
        if (l->pipe_failed)
                return false;
        if (pipe2(l->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
                l->pipe_failed = true; /* out of descriptors, most likely: not again */
                l->pipe[0] = l->pipe[1] = -1;
                return false;
        }
        /* as much as one read of the buffer takes; the default (16 pages)
         * already is where pages are 4 KiB */
        (void) fcntl(l->pipe[1], F_SETPIPE_SZ, (int) l->rbuf_size);
        return true;
}

ssize_t splice_in(struct loop *l, int fd, size_t n) {
        return splice(fd, NULL, l->pipe[1], NULL, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

ssize_t splice_out(struct loop *l, int fd, size_t n) {
        size_t done = 0;

        while (done < n) {
                ssize_t w = splice(l->pipe[0], NULL, fd, NULL, n - done, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0 && errno == EAGAIN)
                        break;
                if (w <= 0)
                        return done ? (ssize_t) done : -1; /* errno says why; the rest is still in the pipe */
                done += (size_t) w;
        }
        return (ssize_t) done;
}

int splice_take(struct loop *l, char *buf, size_t n) {
        size_t got = 0;

        while (got < n) {
                ssize_t r = read(l->pipe[0], buf + got, n - got);

                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        break;
                got += (size_t) r;
        }
        if (got == n)
                return 0;
        /* cannot happen; if it did, the pipe's bytes would reach another
         * connection: start over with a new pipe */
        pipe_close(l);
        return -EIO;
}

/* EPOLLEXCLUSIVE: one connection in the queue wakes one waiting loop. */
#define LISTENER_EVENTS (EPOLLIN | EPOLLEXCLUSIVE)

static bool addr_is_wildcard(const union sockaddr_in46 *a) {
        if (a->sa.sa_family == AF_INET)
                return a->in.sin_addr.s_addr == htonl(INADDR_ANY);
        return IN6_IS_ADDR_UNSPECIFIED(&a->in6.sin6_addr);
}

/* What conn.local is for connections accepted on li: 0 where each may have
 * another local address (a wildcard listener). */
static uint32_t loop_local(struct loop *l, const struct listener *li) {
        union sockaddr_in46 *p;

        if (addr_is_wildcard(&li->addr))
                return 0;
        for (uint32_t i = 0; i < l->n_locals; i++)
                if (addr_equal(&l->locals[i], &li->addr))
                        return i + 1;
        p = realloc(l->locals, (l->n_locals + 1) * sizeof(*p));
        if (!p)
                return 0;
        l->locals = p;
        l->locals[l->n_locals++] = li->addr;
        return l->n_locals;
}

const union sockaddr_in46 *loop_local_address(const struct loop *l, uint32_t local) {
        return local && local <= l->n_locals ? &l->locals[local - 1] : NULL;
}

/* Whether a listener stays in epoll while accept is paused: at the budget
 * (not the kernel's limit) a relay's clients are refused and counted. */
static bool armed_while_paused(const struct loop *l, const struct listener *li) {
        return l->accept_pause_err == 0 && service_types[service_id_type(li->service)]->refuse_at_ceiling;
}

int loop_add_listener(struct loop *l, struct listener *li) {
        int fd = listener_fd(li, l->index);

        if (l->n_listeners == l->listeners_cap) {
                size_t cap = l->listeners_cap ? l->listeners_cap * 2 : 4;
                struct loop_listener *p = realloc(l->listeners, cap * sizeof(*p));
                if (!p)
                        return -ENOMEM;
                l->listeners = p;
                l->listeners_cap = cap;
        }
        if (!l->accept_paused || armed_while_paused(l, li)) {
                int r = epoll_add(l, fd, LISTENER_EVENTS, li);
                if (r < 0)
                        return r;
        }
        l->listeners[l->n_listeners++] = (struct loop_listener) {
                .li = listener_ref(li), .fd = fd, .local = loop_local(l, li),
                .paused = l->accept_paused && !armed_while_paused(l, li),
        };
        return 0;
}

void loop_retire_listener(struct loop *l, struct listener *li) {
        for (size_t i = 0; i < l->n_listeners; i++)
                if (l->listeners[i].li == li && !l->listeners[i].retired) {
                        (void) epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->listeners[i].fd, NULL);
                        l->listeners[i].retired = true;
                        l->listeners_retired = true;
                        return;
                }
}

/* This loop's entry for li, while an event for it may still be acted on in
 * this batch. */
static struct loop_listener *loop_watches(struct loop *l, const struct listener *li) {
        for (size_t i = 0; i < l->n_listeners; i++)
                if (l->listeners[i].li == li)
                        return l->listeners[i].retired ? NULL : &l->listeners[i];
        return NULL;
}

static void loop_reap(struct loop *l) {
        proxied_reap(l);
        while (l->dead_conns) {
                struct conn *c = l->dead_conns;
                l->dead_conns = c->lru_next;
                free(c->data);
                free(c);
        }
        if (l->listeners_retired) {
                size_t k = 0;

                for (size_t i = 0; i < l->n_listeners; i++)
                        if (l->listeners[i].retired)
                                listener_unref(l->listeners[i].li);
                        else
                                l->listeners[k++] = l->listeners[i];
                l->n_listeners = k;
                l->listeners_retired = false;
        }
}

/* Out of fds, the listen queue stays readable: without pausing, epoll would
 * report it again at once and the loop would spin. */
static struct ratelimit pause_rl = RATELIMIT_INIT(10 * 1000 * 1000, 2);

static void accept_pause(struct loop *l, int err) {
        bool was = l->accept_paused;
        unsigned suppressed;

        if (was && (l->accept_pause_err || !err))
                return; /* paused as far as it goes */
        l->accept_paused = true;
        l->accept_pause_err = err;
        l->accept_resume_at = l->now + ACCEPT_RETRY_USEC;
        for (size_t i = 0; i < l->n_listeners; i++) {
                struct loop_listener *ll = &l->listeners[i];

                if (!ll->retired && !ll->paused && !armed_while_paused(l, ll->li)) {
                        (void) epoll_ctl(l->epfd, EPOLL_CTL_DEL, ll->fd, NULL);
                        ll->paused = true;
                }
        }
        if (was)
                return;
        /* at the limit with clients churning, pause and resume alternate:
         * say so once in a while, not at every close */
        if (!ratelimit_pass(&pause_rl, l->now, &suppressed))
                return;
        if (err)
                log_warning_errno(err, "cannot accept connections (%llu open); pausing accept until some close",
                                  (unsigned long long) l->stats.open);
        else
                log_warning("open files limit reached with %llu connections; pausing accept until some close "
                            "(a reserve stays free for the control socket)",
                            (unsigned long long) __atomic_load_n(&l->shared->open, __ATOMIC_RELAXED));
}

static void accept_resume(struct loop *l) {
        if (!l->accept_paused || l->stopping)
                return;
        l->accept_paused = false;
        l->accept_pause_err = 0;
        for (size_t i = 0; i < l->n_listeners; i++) {
                struct loop_listener *ll = &l->listeners[i];

                if (ll->paused && !ll->retired)
                        (void) epoll_add(l, ll->fd, LISTENER_EVENTS, ll->li);
                ll->paused = false;
        }
        log_debug("accepting connections again (%llu open)", (unsigned long long) l->stats.open);
}

bool loop_idle(const struct loop *l) {
        return !l->head && !l->linger_head;
}

void loop_conn_closed(struct loop *l, struct conn *c) {
        c->ev.kind = 0;
        c->lru_next = l->dead_conns;
        l->dead_conns = c;
        if (l->accept_paused)
                accept_resume(l);
        if (l->stopping && loop_idle(l))
                l->quit = true;
}

void loop_refuse(struct loop *l, int fd, const union sockaddr_in46 *peer, unsigned svc, enum refusal why) {
        refuse(l, fd, peer, svc, why);
}

void loop_admit(struct loop *l, int fd, const union sockaddr_in46 *peer, unsigned svc, uint32_t local, bool proxied) {
        struct source *src;
        enum refusal why;
        unsigned suppressed;
        bool spawn_failed;
        int r;

        why = limits_admit(l, peer, svc, &src);
        if (why != ADMIT) {
                refuse(l, fd, peer, svc, why);
                return;
        }
        /* a header from a peer not allowed to send one is refused when it
         * comes (conn.c) */
        r = conn_open(l, fd, peer, svc, local, src, !proxied && l->settings.svc_limits[svc].n_proxy_from,
                      &spawn_failed);
        if (r < 0) {
                limits_release(l, src);
                limits_open_sub(l, svc);
                if (spawn_failed) {
                        /* said why already */
                        refuse(l, fd, peer, svc, service_types[service_id_type(svc)]->start_refusal);
                        return;
                }
                STAT_INC(l, refused);
                STAT_INC(l, refused_by[REFUSE_NO_MEMORY]);
                STAT_INC(l, svc[svc].refused);
                if (ratelimit_pass(&accept_error_rl, l->now, &suppressed))
                        log_error_errno(r, "cannot set up a new connection; refused it");
        }
}

static void accept_batch(struct loop *l, const struct loop_listener *ll) {
        const struct listener *li = ll->li;
        const struct service_type *type = service_types[service_id_type(li->service)];

        for (int i = 0; i < ACCEPT_BATCH && !ll->paused; i++) {
                union sockaddr_in46 peer;
                socklen_t len = sizeof(peer);
                unsigned suppressed;
                bool full = l->settings.fd_budget && __atomic_load_n(&l->shared->conn_fds, __ATOMIC_RELAXED) + 1 +
                                                             type->extra_fds > l->settings.fd_budget;
                int fd;

                /* never a relay or a program half made: at the budget the
                 * other listeners wait (their clients in the listen queue
                 * until some close), a relay's clients are refused */
                if (full)
                        accept_pause(l, 0);
                if (full && !type->refuse_at_ceiling)
                        return;
                fd = accept4(ll->fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        switch (errno) {
                        case EAGAIN:
                                return;
                        case EINTR:
                        case ECONNABORTED:
                        case EPROTO:
                                continue;
                        case EMFILE:
                        case ENFILE:
                        case ENOBUFS:
                        case ENOMEM:
                                accept_pause(l, -errno);
                                return;
                        default:
                                if (ratelimit_pass(&accept_error_rl, l->now, &suppressed))
                                        log_error_errno(-errno, "accept failed on %s listener",
                                                        service_id_name(li->service));
                                return;
                        }
                }
                addr_normalize(&peer);
                if (full) {
                        /* one of the reserve's descriptors, for a moment */
                        refuse(l, fd, &peer, li->service, REFUSE_FD_LIMIT);
                        continue;
                }
                /* from a load balancer that says whose connection it is:
                 * its PROXY header first, then the rest for the real client */
                if (proxied_from(l, li->service, &peer)) {
                        proxied_start(l, fd, &peer, li->service, ll->local);
                        continue;
                }
                loop_admit(l, fd, &peer, li->service, ll->local, false);
        }
}

/* With EPOLLEXCLUSIVE the kernel wakes the first idle loop in the listening
 * socket's wait queue, so the loop registered first would take nearly every
 * connection while it keeps up. A loop that holds more than its share
 * registers again, which moves it to the back of the queue: the next
 * connections go to the other loops. Two epoll_ctl() then, and none while
 * the loops are even (measured: re-registering after every wake-up cost 40%
 * more CPU per connection at 50 short connections at a time). A socket of
 * the loop's own in a SO_REUSEPORT group needs none of it: the kernel
 * spreads connections over the group by a hash of their addresses. */
static void loop_accept(struct loop *l, struct loop_listener *ll) {
        uint64_t total, n = l->shared->n_loops;

        accept_batch(l, ll);
        if (n < 2 || l->accept_paused || ll->li->n_fds > 1)
                return;
        total = __atomic_load_n(&l->shared->open, __ATOMIC_RELAXED);
        if (l->stats.open * n > total + n * 2 && epoll_ctl(l->epfd, EPOLL_CTL_DEL, ll->fd, NULL) == 0)
                (void) epoll_add(l, ll->fd, LISTENER_EVENTS, ll->li);
}

/* Each service's idle timeout and max_lifetime (its own, or [tcpd]'s) on
 * the heads of its lists: a few dozen services at most, looked at once a
 * batch. */
static void loop_expire(struct loop *l) {
        unsigned n = service_ids();

        for (unsigned svc = 0; svc < n; svc++) {
                uint64_t timeout = svc_idle_timeout(&l->settings, svc), lifetime = svc_max_lifetime(&l->settings, svc);
                struct conn_list *lru = &l->lru[svc], *age = &l->age[svc];

                while (timeout && lru->head && l->now - lru->head->last_active >= timeout) {
                        struct conn *c = lru->head;

                        /* a program's connection: was it idle, as the kernel saw it? */
                        if (c->ops->sync) {
                                c->ops->sync(l, c);
                                if (lru->head != c || l->now - c->last_active < timeout)
                                        continue;
                        }
                        conn_close(l, c, CLOSE_IDLE);
                }
                while (lifetime && age->head && l->now - age->head->started >= lifetime)
                        conn_close(l, age->head, CLOSE_LIFETIME);
        }
        if (l->index == 0 && l->now >= l->next_sweep) {
                limits_sweep(l);
                l->next_sweep = l->now + 10 * 1000 * 1000;
        }
}

/* When the oldest connection not yet in the fd store is due there. */
static uint64_t store_due(const struct loop *l) {
        return l->store_queue.head->started + l->settings.store_after_usec;
}

static int loop_timeout_ms(const struct loop *l) {
        uint64_t next = UINT64_MAX;

        for (unsigned svc = 0, n = service_ids(); svc < n; svc++) {
                uint64_t timeout = svc_idle_timeout(&l->settings, svc), lifetime = svc_max_lifetime(&l->settings, svc);

                if (timeout && l->lru[svc].head && l->lru[svc].head->last_active + timeout < next)
                        next = l->lru[svc].head->last_active + timeout;
                if (lifetime && l->age[svc].head && l->age[svc].head->started + lifetime < next)
                        next = l->age[svc].head->started + lifetime;
        }
        if (l->accept_paused && l->accept_resume_at < next)
                next = l->accept_resume_at;
        if (l->proxied_head && proxied_deadline(l) < next)
                next = proxied_deadline(l);
        for (size_t k = 0; k < ARRAY_SIZE(l->type_wake); k++)
                if (l->type_wake[k] && l->type_wake[k] < next)
                        next = l->type_wake[k];
        if (l->linger_head && l->linger_head->close_by < next)
                next = l->linger_head->close_by;
        if (l->linger_head && l->linger_check && l->linger_check < next)
                next = l->linger_check;
        if (l->store_queue.head && store_due(l) < next)
                next = store_due(l);
        if (next == UINT64_MAX)
                return -1;
        if (next <= l->now)
                return 0;
        /* round up: waking early would just loop again; an hour at most */
        if (next - l->now > 3600ULL * 1000 * 1000)
                return 3600 * 1000;
        return (int) ((next - l->now + 999) / 1000);
}

static int loop_run_event(struct loop *l) {
        int r = sd_event_wait(l->event, 0);

        l->event_armed = false;
        if (r > 0)
                r = sd_event_dispatch(l->event);
        return r;
}

int loop_run(struct loop *l) {
        struct epoll_event evs[LOOP_BATCH];

        while (!l->quit) {
                int n, r;

                if (l->event && !l->event_armed) {
                        /* Arms sd-event's timers; when something is already
                         * pending it runs it now instead. */
                        r = sd_event_prepare(l->event);
                        if (r < 0)
                                return log_error_errno(r, "sd-event failed");
                        if (r > 0) {
                                r = sd_event_dispatch(l->event);
                                if (r < 0)
                                        return log_error_errno(r, "sd-event dispatch failed");
                                loop_reap(l);
                                continue;
                        }
                        l->event_armed = true;
                }

                n = epoll_wait(l->epfd, evs, LOOP_BATCH, loop_timeout_ms(l));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_error_errno(-errno, "epoll_wait failed");
                }
                l->now = now_usec(CLOCK_MONOTONIC);

                for (int i = 0; i < n; i++) {
                        struct ev *e = evs[i].data.ptr;

                        switch (e->kind) {
                        case EV_CONN:
                                conn_handle(l, (struct conn *) e, evs[i].events);
                                break;
                        case EV_LINGER:
                                conn_linger_handle(l, (struct conn *) e, evs[i].events);
                                break;
                        case EV_CALLBACK:
                                ((struct ev_cb *) e)->fn(l, (struct ev_cb *) e, evs[i].events);
                                break;
                        case EV_PROXIED:
                                proxied_handle(l, (struct proxied *) e, evs[i].events);
                                break;
                        case EV_LISTENER: {
                                struct loop_listener *ll = loop_watches(l, (struct listener *) e);

                                if (ll)
                                        loop_accept(l, ll);
                                break;
                        }
                        case EV_MAILBOX:
                                mailbox_dispatch(&l->inbox);
                                break;
                        case EV_SD_EVENT:
                                r = loop_run_event(l);
                                if (r < 0)
                                        return log_error_errno(r, "sd-event dispatch failed");
                                break;
                        default:
                                break; /* closed earlier in this batch */
                        }
                }
                loop_expire(l);
                if (l->proxied_head && l->now >= proxied_deadline(l))
                        proxied_expire(l);
                for (size_t k = 0; k < ARRAY_SIZE(l->type_wake); k++)
                        if (l->type_wake[k] && l->now >= l->type_wake[k])
                                l->type_wake[k] = service_types[k]->tick(l);
                if (l->linger_head &&
                    ((l->linger_check && l->now >= l->linger_check) || l->now >= l->linger_head->close_by))
                        l->linger_check = conn_linger_expire(l, false);
                if (l->store_queue.head && store_due(l) <= l->now)
                        (void) fdstore_flush(l, false);
                if (l->monitor)
                        monitor_flush(l);
                loop_reap(l);
                if (l->accept_paused && l->now >= l->accept_resume_at)
                        accept_resume(l);
        }
        return 0;
}

void loop_stop(struct loop *l) {
        struct conn *c, *next;

        l->stopping = true;
        proxied_close_all(l); /* not admitted yet: nothing of theirs to flush */
        for (c = l->head; c; c = next) {
                next = c->next;
                conn_drain(l, c);
        }
        if (loop_idle(l))
                l->quit = true;
}

void loop_stop_now(struct loop *l) {
        l->stopping = true;
        proxied_close_all(l);
        while (l->head)
                conn_close(l, l->head, CLOSE_SHUTDOWN);
        conn_linger_expire(l, true);
        l->quit = true;
}
