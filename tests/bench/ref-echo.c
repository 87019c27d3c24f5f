/* ref-echo: the minimal reference loop tcpd is measured against. One thread,
 * one level-triggered epoll set, read into a stack buffer and write it back:
 * no connection table, no counters, no timeouts, no limits. It keeps only
 * what correctness needs, so that the gap to tcpd is the price of tcpd's
 * bookkeeping and nothing else. Not for use beyond benchmarks. */

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include "util.h"

#define BUF_SIZE (64 * 1024)
#define EVENTS_BATCH 256
/* Connections accepted per wake-up, so a flood of new clients cannot starve
 * the ones already open. */
#define ACCEPT_BATCH 64

/* Events carry the fd itself, except for these two and for a connection
 * whose echo did not fit in its socket buffer: that one carries a pointer to
 * the rest, tagged with the top bit (user-space pointers never have it set
 * on Linux, and fds are small). */
#define TAG_LISTENER UINT64_C(0x7ffffffffffffffe)
#define TAG_SIGNAL UINT64_C(0x7fffffffffffffff)
#define TAG_OWED (UINT64_C(1) << 63)

/* What a connection is still owed when a write came up short. The rare path:
 * while it exists the connection is not read, which is the back-pressure an
 * echo server must apply, and the only state this server ever keeps. */
struct owed {
        int fd;
        size_t len, off;
        char data[];
};

static int epfd = -1;

static void conn_close(int fd) {
        /* close() takes the fd out of the epoll set: it is the only reference */
        close(fd);
}

/* Writes back what could not be written; stops reading the connection. */
static void owe(int fd, const char *data, size_t len) {
        struct owed *o = malloc(sizeof(*o) + len);
        struct epoll_event ev = { .events = EPOLLOUT };

        if (!o) {
                conn_close(fd);
                return;
        }
        o->fd = fd;
        o->len = len;
        o->off = 0;
        memcpy(o->data, data, len);
        ev.data.u64 = (uint64_t) (uintptr_t) o | TAG_OWED;
        if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0) {
                free(o);
                conn_close(fd);
        }
}

static void owed_writable(struct owed *o) {
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t) o->fd };
        ssize_t n = send(o->fd, o->data + o->off, o->len - o->off, MSG_NOSIGNAL);

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n < 0) {
                conn_close(o->fd);
                free(o);
                return;
        }
        o->off += (size_t) n;
        if (o->off < o->len)
                return;
        /* all delivered: back to reading */
        if (epoll_ctl(epfd, EPOLL_CTL_MOD, o->fd, &ev) < 0)
                conn_close(o->fd);
        free(o);
}

static void conn_readable(int fd) {
        char buf[BUF_SIZE];
        ssize_t n, w;

        n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {
                conn_close(fd);
                return;
        }
        w = send(fd, buf, (size_t) n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
                w = 0;
        if (w < 0) {
                conn_close(fd);
                return;
        }
        if (w < n)
                owe(fd, buf + w, (size_t) (n - w));
}

static void listener_readable(int lfd) {
        for (int i = 0; i < ACCEPT_BATCH; i++) {
                struct epoll_event ev = { .events = EPOLLIN };
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                /* EMFILE and the like leave the listener readable: it is
                 * retried on the next wake-up, which is as simple as it gets */
                if (fd < 0)
                        return;
                ev.data.u64 = (uint64_t) fd;
                if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
                        close(fd);
        }
}

static int listen_on(const char *host, uint16_t port, int backlog) {
        _cleanup_close_ int fd = -1;
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } a = {};
        socklen_t len;
        int one = 1;

        if (inet_pton(AF_INET, host, &a.in.sin_addr) == 1) {
                a.in.sin_family = AF_INET;
                a.in.sin_port = htons(port);
                len = sizeof(a.in);
        } else if (inet_pton(AF_INET6, host, &a.in6.sin6_addr) == 1) {
                a.in6.sin6_family = AF_INET6;
                a.in6.sin6_port = htons(port);
                len = sizeof(a.in6);
        } else
                return -EINVAL;

        fd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        /* as tcpd: accepted sockets inherit TCP_NODELAY from the listener */
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (bind(fd, &a.sa, len) < 0 || listen(fd, backlog) < 0)
                return -errno;
        return TAKE_FD(fd);
}

static void help(void) {
        printf("Usage: ref-echo [-H ADDR] [-p PORT] [-b BACKLOG]\n"
               "\n"
               "The minimal echo loop tcpd's benchmarks compare against: one thread, epoll,\n"
               "no bookkeeping. Listens on ADDR (127.0.0.1) port PORT (7788; 0 picks one) with\n"
               "a listen backlog of BACKLOG (128), prints \"listening on ADDR port PORT\", and\n"
               "echoes until SIGTERM or SIGINT.\n");
}

int main(int argc, char **argv) {
        static const struct option longopts[] = {
                { "host", required_argument, NULL, 'H' },
                { "port", required_argument, NULL, 'p' },
                { "backlog", required_argument, NULL, 'b' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *host = "127.0.0.1";
        unsigned long port = 7788, backlog = 128;
        _cleanup_close_ int lfd = -1, sfd = -1;
        struct epoll_event ev, evs[EVENTS_BATCH];
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } bound;
        socklen_t len = sizeof(bound);
        struct rlimit rl;
        sigset_t mask;
        char *end;
        int c;

        while ((c = getopt_long(argc, argv, "H:p:b:h", longopts, NULL)) >= 0) {
                switch (c) {
                case 'H':
                        host = optarg;
                        break;
                case 'p':
                        port = strtoul(optarg, &end, 10);
                        if (*optarg == '\0' || *end != '\0' || port > 65535) {
                                fprintf(stderr, "ref-echo: invalid port '%s'\n", optarg);
                                return 2;
                        }
                        break;
                case 'b':
                        backlog = strtoul(optarg, &end, 10);
                        if (*optarg == '\0' || *end != '\0' || backlog < 1 || backlog > 65535) {
                                fprintf(stderr, "ref-echo: invalid backlog '%s'\n", optarg);
                                return 2;
                        }
                        break;
                case 'h':
                        help();
                        return 0;
                default:
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "ref-echo: unexpected argument '%s'\n", argv[optind]);
                return 2;
        }

        /* as tcpd: as many connections as the hard limit allows */
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        lfd = listen_on(host, (uint16_t) port, (int) backlog);
        epfd = epoll_create1(EPOLL_CLOEXEC);
        if (sfd < 0 || epfd < 0) {
                perror("ref-echo");
                return 1;
        }
        if (lfd < 0) {
                fprintf(stderr, "ref-echo: cannot listen on %s port %lu: %s\n", host, port, strerror(-lfd));
                return 1;
        }
        ev = (struct epoll_event) { .events = EPOLLIN, .data.u64 = TAG_LISTENER };
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0) {
                perror("ref-echo: epoll_ctl");
                return 1;
        }
        ev = (struct epoll_event) { .events = EPOLLIN, .data.u64 = TAG_SIGNAL };
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev) < 0) {
                perror("ref-echo: epoll_ctl");
                return 1;
        }
        if (getsockname(lfd, &bound.sa, &len) < 0) {
                perror("ref-echo: getsockname");
                return 1;
        }
        printf("listening on %s port %u\n", host,
               ntohs(bound.sa.sa_family == AF_INET ? bound.in.sin_port : bound.in6.sin6_port));
        fflush(stdout);

        for (;;) {
                int n = epoll_wait(epfd, evs, EVENTS_BATCH, -1);

                if (n < 0 && errno != EINTR) {
                        perror("ref-echo: epoll_wait");
                        return 1;
                }
                for (int i = 0; i < n; i++) {
                        uint64_t d = evs[i].data.u64;

                        if (d == TAG_LISTENER)
                                listener_readable(lfd);
                        else if (d == TAG_SIGNAL)
                                return 0; /* connections close with the process */
                        else if (d & TAG_OWED)
                                owed_writable((struct owed *) (uintptr_t) (d & ~TAG_OWED));
                        else
                                conn_readable((int) d);
                }
        }
}
