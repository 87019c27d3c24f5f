/* Connections from load balancers, before their PROXY header. Each waits
 * in a list of its loop (oldest first: they all have the same timeout), its
 * socket watched for input; the header is peeked at until whole, then taken
 * off the socket (what follows it stays there for the service), and the
 * connection is admitted as the header's client. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "proxied.h"
#include "proxyproto.h"

struct proxied {
        struct ev ev; /* first: EV_PROXIED */
        int fd;
        union sockaddr_in46 peer; /* the load balancer's */
        unsigned svc;
        uint32_t local;
        uint64_t deadline;
        struct proxied *prev, *next;
};

static struct ratelimit proxy_rl = RATELIMIT_INIT(10 * 1000 * 1000, 10);

bool proxied_from(const struct loop *l, unsigned svc, const union sockaddr_in46 *peer) {
        const struct service_limits *s = &l->settings.svc_limits[svc];

        for (size_t i = 0; i < s->n_proxy_from; i++)
                if (cidr_match(&s->proxy_from[i], peer))
                        return true;
        return false;
}

static void unlink_one(struct loop *l, struct proxied *p) {
        if (p->prev)
                p->prev->next = p->next;
        else
                l->proxied_head = p->next;
        if (p->next)
                p->next->prev = p->prev;
        else
                l->proxied_tail = p->prev;
        (void) epoll_ctl(l->epfd, EPOLL_CTL_DEL, p->fd, NULL);
        __atomic_sub_fetch(&l->shared->conn_fds, 1, __ATOMIC_RELAXED);
        /* an event of it later in this batch finds kind 0: freed after the batch */
        p->ev.kind = 0;
        p->next = l->proxied_dead;
        l->proxied_dead = p;
}

static void refuse_header(struct loop *l, int fd, const union sockaddr_in46 *peer, unsigned svc, const char *why) {
        unsigned suppressed;

        if (ratelimit_pass(&proxy_rl, l->now, &suppressed)) {
                char host[ADDR_STRLEN];

                log_warning("connection from %s to %s: %s; reset%s", addr_format(peer, host, sizeof(host)),
                            service_id_name(svc), why,
                            suppressed ? " (some PROXY header errors before this were not logged)" : "");
        }
        loop_refuse(l, fd, peer, svc, REFUSE_PROXY);
}

void proxied_start(struct loop *l, int fd, const union sockaddr_in46 *peer, unsigned svc, uint32_t local) {
        struct proxied *p = calloc(1, sizeof(*p));
        struct epoll_event e = { .events = EPOLLIN, .data.ptr = p };

        if (!p || epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
                free(p);
                loop_refuse(l, fd, peer, svc, REFUSE_NO_MEMORY);
                return;
        }
        *p = (struct proxied) { .ev.kind = EV_PROXIED, .fd = fd, .peer = *peer, .svc = svc, .local = local,
                                .deadline = l->now + PROXY_HEADER_TIMEOUT_USEC, .prev = l->proxied_tail };
        if (l->proxied_tail)
                l->proxied_tail->next = p;
        else
                l->proxied_head = p;
        l->proxied_tail = p;
        __atomic_add_fetch(&l->shared->conn_fds, 1, __ATOMIC_RELAXED);
}

void proxied_handle(struct loop *l, struct proxied *p, uint32_t events) {
        char buf[PROXY_HEADER_MAX];
        union sockaddr_in46 src, dst, client;
        const char *why = NULL;
        bool local;
        int fd = p->fd, r;
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {
                /* gone before its header: nothing to serve, counted as refused */
                union sockaddr_in46 peer = p->peer;
                unsigned svc = p->svc;

                unlink_one(l, p);
                refuse_header(l, fd, &peer, svc, n == 0 ? "closed before its PROXY header" : "reset before its PROXY header");
                return;
        }
        r = proxy_header_parse(buf, (size_t) n, &src, &dst, &local, &why);
        if (r == 0)
                return; /* more to come */
        client = p->peer;
        if (r > 0) {
                /* take the header off the socket: what follows is the client's */
                ssize_t got = recv(fd, buf, (size_t) r, MSG_DONTWAIT);

                if (got != r) {
                        r = -EBADMSG;
                        why = "the PROXY header could not be read whole";
                } else if (!local) {
                        client = src;
                        addr_normalize(&client);
                }
        }
        {
                union sockaddr_in46 peer = p->peer;
                unsigned svc = p->svc;
                uint32_t where = p->local;

                unlink_one(l, p);
                if (r < 0) {
                        char msg[160];

                        snprintf(msg, sizeof(msg), "a broken PROXY header (%s)", why);
                        refuse_header(l, fd, &peer, svc, msg);
                        return;
                }
                loop_admit(l, fd, &client, svc, where, true);
        }
}

uint64_t proxied_deadline(const struct loop *l) {
        return l->proxied_head->deadline;
}

uint64_t proxied_expire(struct loop *l) {
        while (l->proxied_head && l->proxied_head->deadline <= l->now) {
                struct proxied *p = l->proxied_head;
                union sockaddr_in46 peer = p->peer;
                unsigned svc = p->svc;
                int fd = p->fd;

                unlink_one(l, p);
                refuse_header(l, fd, &peer, svc, "no PROXY header within 3 s");
        }
        return l->proxied_head ? l->proxied_head->deadline : 0;
}

void proxied_close_all(struct loop *l) {
        while (l->proxied_head) {
                int fd = l->proxied_head->fd;

                unlink_one(l, l->proxied_head);
                close(fd);
        }
}

void proxied_reap(struct loop *l) {
        while (l->proxied_dead) {
                struct proxied *p = l->proxied_dead;

                l->proxied_dead = p->next;
                free(p);
        }
}

bool proxied_refuse_header(struct loop *l, struct conn *c) {
        char buf[12];
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);

        /* the first bytes only: what comes after is the service's (a
         * header from such a peer is never read as one anyway) */
        c->proxy_check = 0;
        if (n > 0 && proxy_signature(buf, (size_t) n)) {
                unsigned suppressed;

                STAT_INC(l, refused);
                STAT_INC(l, refused_by[REFUSE_PROXY]);
                STAT_INC(l, svc[c->service].refused);
                if (ratelimit_pass(&proxy_rl, l->now, &suppressed))
                        conn_log(l, c, LOG_WARNING, "refuse", NULL,
                                 "a PROXY header from a peer not in proxy_protocol_from; reset%s",
                                 suppressed ? " (some PROXY header errors before this were not logged)" : "");
                {
                        struct sockaddr sa = { .sa_family = AF_UNSPEC };

                        (void) connect(c->fd, &sa, sizeof(sa));
                }
                conn_close(l, c, CLOSE_ERROR);
                return true;
        }
        return false;
}
