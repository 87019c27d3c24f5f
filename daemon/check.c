/* Health checks of forward's backends, on the control plane's sd-event. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "log.h"
#include "proxyproto.h"
#include "util.h"

struct check {
        struct checks *all;
        struct backend_pool *pool;
        size_t i;
        sd_event_source *timer; /* the next check, or the running one's deadline */
        sd_event_source *io;    /* the running check's socket, or NULL */
        int fd;
        size_t sent;
        char buf[CHECK_STRING_MAX * 2];
        size_t got;
};

struct checks {
        struct check *v;
        size_t n;
        check_changed_fn changed;
        void *userdata;
};

static void check_stop(struct check *k) {
        k->io = sd_event_source_disable_unref(k->io);
        if (k->fd >= 0)
                close(k->fd);
        k->fd = -1;
        k->sent = k->got = 0;
}

static uint64_t now_mono(void) {
        return now_usec(CLOCK_MONOTONIC);
}

/* The result of a check: counted, and a backend whose run of passes or
 * fails is long enough goes up or down. The next check in an interval. */
static void check_done(struct check *k, enum check_result res, int err) {
        struct backend_state *s = k->pool->b[k->i].st;
        bool up = __atomic_load_n(&s->up, __ATOMIC_RELAXED);

        check_stop(k);
        s->last_check = (uint8_t) res;
        s->check_errno = err;
        __atomic_add_fetch(&s->checks, 1, __ATOMIC_RELAXED);
        if (res == CHECK_OK) {
                s->fail_run = 0;
                if (s->ok_run < UINT16_MAX)
                        s->ok_run++;
                if (!up && s->ok_run >= k->pool->check.rise) {
                        __atomic_store_n(&s->up, 1, __ATOMIC_RELAXED);
                        k->all->changed(k->all->userdata, k->pool, k->i, true, res);
                }
        } else {
                __atomic_add_fetch(&s->checks_failed, 1, __ATOMIC_RELAXED);
                s->ok_run = 0;
                if (s->fail_run < UINT16_MAX)
                        s->fail_run++;
                /* down at once after a failed connect from a worker (up
                 * is 0 then already): the checks only bring it back */
                if (up && s->fail_run >= k->pool->check.fall) {
                        __atomic_store_n(&s->up, 0, __ATOMIC_RELAXED);
                        k->all->changed(k->all->userdata, k->pool, k->i, false, res);
                }
        }
        (void) sd_event_source_set_time(k->timer, now_mono() + k->pool->check.interval_usec);
        (void) sd_event_source_set_enabled(k->timer, SD_EVENT_ONESHOT);
}

static int check_io(sd_event_source *src, int fd, uint32_t events, void *userdata) {
        struct check *k = userdata;
        const struct check_spec *spec = &k->pool->check;
        int err = 0;
        socklen_t len = sizeof(err);

        if (k->sent == 0 && k->got == 0) {
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        err = errno;
                if (err) {
                        check_done(k, CHECK_REFUSED, err);
                        return 0;
                }
                if (k->pool->proxy_protocol) {
                        /* a backend that expects the PROXY protocol gets a
                         * header of the LOCAL kind (v1: UNKNOWN): "this is
                         * the proxy's own connection", as HAProxy's
                         * check-send-proxy sends */
                        union sockaddr_in46 none = {};
                        char hdr[PROXY_HEADER_MAX];
                        size_t n = proxy_header_build((int) k->pool->proxy_protocol, &none, &none, hdr);

                        if (send(fd, hdr, n, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t) n) {
                                check_done(k, CHECK_REFUSED, errno ? errno : EIO);
                                return 0;
                        }
                }
                if (!spec->expect) {
                        check_done(k, CHECK_OK, 0);
                        return 0;
                }
        }
        if (spec->send && k->sent < strlen(spec->send)) {
                ssize_t n = send(fd, spec->send + k->sent, strlen(spec->send) - k->sent, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0 && errno != EAGAIN && errno != EINTR) {
                        check_done(k, CHECK_REFUSED, errno);
                        return 0;
                }
                if (n > 0)
                        k->sent += (size_t) n;
                if (k->sent < strlen(spec->send))
                        return 0; /* EPOLLOUT again */
                (void) sd_event_source_set_io_events(src, EPOLLIN);
                return 0;
        }
        (void) sd_event_source_set_io_events(src, EPOLLIN);
        if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return 0;
        for (;;) {
                ssize_t n = recv(fd, k->buf + k->got, sizeof(k->buf) - 1 - k->got, MSG_DONTWAIT);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return 0;
                if (n <= 0) {
                        check_done(k, n < 0 ? CHECK_REFUSED : CHECK_MISMATCH, n < 0 ? errno : 0);
                        return 0;
                }
                k->got += (size_t) n;
                /* the answer may hold NULs: look at every byte of it */
                if (memmem(k->buf, k->got, spec->expect, strlen(spec->expect))) {
                        check_done(k, CHECK_OK, 0);
                        return 0;
                }
                if (k->got == sizeof(k->buf) - 1) {
                        check_done(k, CHECK_MISMATCH, 0);
                        return 0;
                }
        }
}

/* The timer: a check begins, or the running one has taken too long. */
static int check_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        struct check *k = userdata;
        const struct backend *b = &k->pool->b[k->i];
        uint64_t limit = k->pool->connect_timeout_usec;
        int one = 1;

        if (k->io) {
                /* an answer that did not hold expect in time is a wrong one */
                check_done(k, k->got ? CHECK_MISMATCH : CHECK_TIMEOUT, ETIMEDOUT);
                return 0;
        }
        if (__atomic_load_n(&b->st->admin, __ATOMIC_RELAXED) == BACKEND_DISABLED) {
                /* an admin took it out: not checked until enabled */
                (void) sd_event_source_set_time(src, now_mono() + k->pool->check.interval_usec);
                (void) sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
                return 0;
        }
        k->fd = socket(b->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (k->fd < 0) {
                check_done(k, CHECK_REFUSED, errno);
                return 0;
        }
        (void) setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(k->fd, &b->addr.sa, addr_len(&b->addr)) < 0 && errno != EINPROGRESS) {
                check_done(k, CHECK_REFUSED, errno);
                return 0;
        }
        if (sd_event_add_io(sd_event_source_get_event(src), &k->io, k->fd, EPOLLOUT, check_io, k) < 0) {
                check_done(k, CHECK_REFUSED, ENOMEM);
                return 0;
        }
        /* a check takes at most the interval, or the connect_timeout
         * when that is shorter (and the answer as long again) */
        if (k->pool->check.expect)
                limit *= 2;
        if (limit > k->pool->check.interval_usec)
                limit = k->pool->check.interval_usec;
        (void) sd_event_source_set_time(src, now_mono() + limit);
        (void) sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
        return 0;
}

struct checks *checks_new(sd_event *e, struct backend_pool *const *pools, size_t n, check_changed_fn changed,
                          void *userdata) {
        struct checks *c = calloc(1, sizeof(*c));
        size_t total = 0, k = 0;

        if (!c)
                return NULL;
        for (size_t i = 0; i < n; i++)
                total += pools[i] ? pools[i]->n : 0;
        c->changed = changed;
        c->userdata = userdata;
        c->v = calloc(total ? total : 1, sizeof(*c->v));
        if (!c->v)
                return checks_free(c);
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; pools[i] && j < pools[i]->n; j++) {
                        struct check *ck = &c->v[k++];
                        /* spread the first checks over an interval, not all at once */
                        uint64_t first = now_mono() + (uint64_t) random() % (pools[i]->check.interval_usec / 4 + 1);

                        *ck = (struct check) { .all = c, .pool = backend_pool_ref(pools[i]), .i = j, .fd = -1 };
                        c->n = k;
                        if (sd_event_add_time(e, &ck->timer, CLOCK_MONOTONIC, first, 10 * 1000, check_timer, ck) < 0) {
                                log_error("out of memory: the backends of %s are not checked", pools[i]->service);
                                return checks_free(c);
                        }
                }
        return c;
}

struct checks *checks_free(struct checks *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n; i++) {
                check_stop(&c->v[i]);
                c->v[i].timer = sd_event_source_disable_unref(c->v[i].timer);
                backend_pool_unref(c->v[i].pool);
        }
        free(c->v);
        free(c);
        return NULL;
}
