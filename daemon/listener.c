/* Binding and adopting listening sockets. */
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>

#include "listener.h"
#include "log.h"

static void listener_tune(int fd) {
        int one = 1;

        /* Accepted sockets inherit TCP_NODELAY from the listener, which saves
         * a setsockopt() per connection: an echo must not wait for Nagle. */
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int listener_new(int fd, enum service_kind svc, struct listener **ret) {
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

int listener_bind(const char *config_path, const struct listen_spec *spec, enum service_kind svc, unsigned backlog,
                  struct listener **ret) {
        union sockaddr_in46 a = spec->addr;
        _cleanup_close_ int fd = -1;
        char where[128];
        int one = 1, zero = 0, r;

        if (config_path)
                snprintf(where, sizeof(where), "%s:%u: ", config_path, spec->line);
        else
                where[0] = 0;

        fd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 && spec->any && errno == EAFNOSUPPORT) {
                /* No IPv6 on this host: a port-only spec means every IPv4 address. */
                memset(&a, 0, sizeof(a));
                a.in.sin_family = AF_INET;
                a.in.sin_port = spec->addr.in6.sin6_port;
                fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        }
        if (fd < 0)
                return log_error_errno(-errno, "%s[%s] listen = %s: cannot create socket", where, service_name(svc),
                                       spec->text);
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (a.sa.sa_family == AF_INET6)
                /* a port-only spec is dual-stack, like systemd's ListenStream=PORT;
                 * an explicit IPv6 address is IPv6 only */
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, spec->any ? &zero : &one, sizeof(int));
        listener_tune(fd);
        if (bind(fd, &a.sa, addr_len(&a)) < 0)
                return log_error_errno(-errno, "%s[%s] listen = %s: cannot bind", where, service_name(svc),
                                       spec->text);
        if (listen(fd, (int) backlog) < 0)
                return log_error_errno(-errno, "%s[%s] listen = %s: cannot listen", where, service_name(svc),
                                       spec->text);
        r = listener_new(fd, svc, ret);
        if (r < 0)
                return log_error_errno(r, "[%s] listen = %s", service_name(svc), spec->text);
        TAKE_FD(fd);
        (*ret)->any = spec->any;
        (*ret)->spec = strdup(spec->text);
        if (!(*ret)->spec) {
                *ret = listener_free(*ret);
                return log_error_errno(-ENOMEM, "[%s] listen = %s", service_name(svc), spec->text);
        }
        return 0;
}

int listener_adopt(int fd, enum service_kind svc, struct listener **ret) {
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
        if (l->fd >= 0)
                close(l->fd);
        free(l->spec);
        free(l);
        return NULL;
}

void listener_set_options(struct listener *l, const struct config *c) {
        int on = c->keepalive, idle = (int) (c->keepalive_idle_usec / 1000000),
            intvl = (int) (c->keepalive_interval_usec / 1000000), cnt = (int) c->keepalive_count;
        unsigned timeout = (unsigned) (c->user_timeout_usec / 1000);

        (void) setsockopt(l->fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
        if (on) {
                (void) setsockopt(l->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
                (void) setsockopt(l->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
                (void) setsockopt(l->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
        }
        (void) setsockopt(l->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof(timeout));
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
