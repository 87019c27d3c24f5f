/* Binding and adopting listening sockets. */
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>

#include "listener.h"
#include "registry.h"
#include "log.h"

static void listener_tune(int fd) {
        int one = 1;

        /* Accepted sockets inherit TCP_NODELAY from the listener, which saves
         * a setsockopt() per connection: an echo must not wait for Nagle. */
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int listener_new(int fd, unsigned svc, struct listener **ret) {
        struct listener *l = calloc(1, sizeof(*l));
        socklen_t len = sizeof(l->addr);

        if (!l)
                return -ENOMEM;
        l->ev.kind = EV_LISTENER;
        l->refs = 1;
        l->fd = fd;
        l->service = svc;
        if (getsockname(fd, &l->addr.sa, &len) < 0) {
                free(l);
                return -errno;
        }
        addr_normalize(&l->addr);
        *ret = l;
        return 0;
}

/* A socket bound to *a (and listening unless backlog is 0). On failure,
 * -errno with *step naming what failed. A port-only spec on a host without
 * IPv6 turns *a into the IPv4 wildcard. */
static int bind_socket(union sockaddr_in46 *a, bool any, bool reuseport, unsigned backlog, const char **step) {
        _cleanup_close_ int fd = -1;
        int one = 1, zero = 0;

        *step = "cannot create socket";
        fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 && any && errno == EAFNOSUPPORT) {
                /* No IPv6 on this host: a port-only spec means every IPv4 address. */
                in_port_t port = a->in6.sin6_port;

                memset(a, 0, sizeof(*a));
                a->in.sin_family = AF_INET;
                a->in.sin_port = port;
                fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        }
        if (fd < 0)
                return -errno;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
                return -errno;
        if (a->sa.sa_family == AF_INET6)
                /* a port-only spec is dual-stack, like systemd's ListenStream=PORT;
                 * an explicit IPv6 address is IPv6 only */
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, any ? &zero : &one, sizeof(int));
        listener_tune(fd);
        *step = "cannot bind";
        if (bind(fd, &a->sa, addr_len(a)) < 0)
                return -errno;
        *step = "cannot listen";
        if (backlog && listen(fd, (int) backlog) < 0)
                return -errno;
        return TAKE_FD(fd);
}

static void close_fds(int *fds, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

int listener_bind(const char *config_path, const struct listen_spec *spec, unsigned svc, unsigned backlog,
                  unsigned workers, struct listener **ret) {
        union sockaddr_in46 a = spec->addr;
        _cleanup_close_ int probe = -1;
        _cleanup_free_ int *fds = NULL;
        const char *step = NULL;
        char where[128];
        unsigned n = workers > 1 ? workers : 1, i;
        int r;

        if (config_path)
                snprintf(where, sizeof(where), "%s:%u: ", config_path, spec->line);
        else
                where[0] = 0;
        fds = malloc(n * sizeof(*fds));
        if (!fds)
                return log_error_errno(-ENOMEM, "[%s] listen = %s", service_id_name(svc), spec->text);
        if (n > 1) {
                /* A SO_REUSEPORT group takes in any socket of the same user that
                 * asks to join, so a second tcpd on this port would silently
                 * take half the connections. First bind once outside any group:
                 * that fails with EADDRINUSE where anything listens already. It
                 * stays bound (not listening) while the group binds, which
                 * SO_REUSEADDR allows. */
                r = probe = bind_socket(&a, spec->any, false, 0, &step);
                if (r < 0)
                        goto fail;
        }
        for (i = 0; i < n; i++) {
                r = fds[i] = bind_socket(&a, spec->any, n > 1, backlog, &step);
                if (r < 0) {
                        close_fds(fds, i);
                        goto fail;
                }
                if (i == 0 && n > 1) {
                        /* port 0: the others join the port the first one got */
                        union sockaddr_in46 b;
                        socklen_t len = sizeof(b);

                        if (getsockname(fds[0], &b.sa, &len) == 0)
                                a = b;
                }
        }
        r = listener_new(fds[0], svc, ret);
        if (r < 0) {
                close_fds(fds, n);
                return log_error_errno(r, "[%s] listen = %s", service_id_name(svc), spec->text);
        }
        (*ret)->any = spec->any;
        (*ret)->spec = strdup(spec->text);
        if (!(*ret)->spec) {
                close_fds(fds + 1, n - 1);
                *ret = listener_free(*ret);
                return log_error_errno(-ENOMEM, "[%s] listen = %s", service_id_name(svc), spec->text);
        }
        if (n > 1) {
                (*ret)->fds = TAKE_PTR(fds);
                (*ret)->n_fds = n;
        }
        return 0;
fail:
        return log_error_errno(r, "%s[%s] listen = %s: %s", where, service_id_name(svc), spec->text, step);
}

int listener_adopt(int fd, unsigned svc, struct listener **ret) {
        int flags = fcntl(fd, F_GETFL), r;

        /* systemd does not promise non-blocking sockets */
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        listener_tune(fd);
        r = listener_new(fd, svc, ret);
        if (r < 0)
                return r;
        (*ret)->activated = true;
        return 0;
}

struct listener *listener_free(struct listener *l) {
        if (!l)
                return NULL;
        if (l->fds)
                close_fds(l->fds, l->n_fds);
        else if (l->fd >= 0)
                close(l->fd);
        free(l->fds);
        free(l->spec);
        free(l->fdname);
        free(l);
        return NULL;
}

void listener_set_options(struct listener *l, const struct config *c) {
        int on = c->keepalive, idle = (int) (c->keepalive_idle_usec / 1000000),
            intvl = (int) (c->keepalive_interval_usec / 1000000), cnt = (int) c->keepalive_count;
        unsigned timeout = (unsigned) (c->user_timeout_usec / 1000);

        for (unsigned i = 0; i < listener_n_fds(l); i++) {
                int fd = listener_fd(l, i);

                (void) setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
                if (on) {
                        (void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
                        (void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
                        (void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
                }
                (void) setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof(timeout));
        }
}

void listener_set_backlog(struct listener *l, unsigned backlog) {
        for (unsigned i = 0; i < listener_n_fds(l); i++)
                (void) listen(listener_fd(l, i), (int) backlog);
}

struct listener *listener_ref(struct listener *l) {
        __atomic_add_fetch(&l->refs, 1, __ATOMIC_RELAXED);
        return l;
}

struct listener *listener_unref(struct listener *l) {
        /* acq_rel: whatever a loop did with it happens before the free */
        if (l && __atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL) == 0)
                listener_free(l);
        return NULL;
}

const char *listener_format(const struct listener *l, char *buf, size_t n) {
        return addr_format(&l->addr, buf, n);
}
