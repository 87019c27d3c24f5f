/* ref-relay: the least a TCP relay can do, the floor tcpd's type = forward
 * is measured against (as ref-echo is for echo). One thread, one epoll,
 * level-triggered; each client gets a backend connection, and each
 * direction moves with read()/write() through one 64 KiB buffer per
 * direction, or with splice() through a pipe per direction (-s). A
 * direction whose writer is full stops reading until it drains. No
 * counters, limits, timeouts, health checks or failover: a connect that
 * fails closes the client.
 *
 *   ref-relay [-s] -p PORT -b BACKEND_PORT      (127.0.0.1 both)
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF (64 * 1024)

struct side;

/* One direction: from one socket to the other. */
struct dir {
        int from, to;
        char *buf;     /* read/write */
        int pipe[2];   /* splice */
        size_t off, len; /* bytes held: buf[off..len), or len in the pipe */
        int eof;
};

struct pair {
        int client, backend;
        struct dir up, down; /* client -> backend, backend -> client */
        int connecting;
        struct side *cs, *bs;
};

struct side {
        struct pair *p;
        int is_client;
        uint32_t events; /* the interest set now: epoll_ctl only on a change */
};

static int ep, use_splice;
static struct side skip; /* an event of a pair freed earlier in the batch */
static struct sockaddr_in backend_addr;

static void set_events(int fd, struct side *s, uint32_t ev, int add) {
        struct epoll_event e = { .events = ev, .data.ptr = s };

        if (!add && s->events == ev)
                return;
        s->events = ev;
        epoll_ctl(ep, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &e);
}

static void pair_free(struct pair *p) {
        close(p->client);
        close(p->backend);
        if (use_splice) {
                close(p->up.pipe[0]);
                close(p->up.pipe[1]);
                close(p->down.pipe[0]);
                close(p->down.pipe[1]);
        }
        free(p->up.buf);
        free(p->down.buf);
        free(p->cs);
        free(p->bs);
        free(p);
}

static ssize_t put(struct dir *d) {
        if (use_splice)
                return splice(d->pipe[0], NULL, d->to, NULL, d->len - d->off, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        return write(d->to, d->buf + d->off, d->len - d->off);
}

/* What is held goes out; if all of it did, one read and one write more
 * (level-triggered epoll says when there is more). -1: the pair must go. */
static int pump(struct dir *d) {
        ssize_t n;

        if (d->len > d->off) {
                n = put(d);
                if (n < 0)
                        return errno == EAGAIN ? 0 : -1;
                d->off += (size_t) n;
                if (d->off < d->len)
                        return 0;
                d->off = d->len = 0;
        }
        if (d->eof)
                return 0;
        if (use_splice)
                n = splice(d->from, NULL, d->pipe[1], NULL, BUF, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        else
                n = read(d->from, d->buf, BUF);
        if (n < 0)
                return errno == EAGAIN ? 0 : -1;
        if (n == 0) {
                d->eof = 1;
                shutdown(d->to, SHUT_WR);
                return 0;
        }
        d->len = (size_t) n;
        n = put(d);
        if (n < 0)
                return errno == EAGAIN ? 0 : -1;
        d->off += (size_t) n;
        if (d->off == d->len)
                d->off = d->len = 0;
        return 0;
}

static void update(struct pair *p) {
        uint32_t c = 0, b = 0;

        if (p->up.len == 0 && !p->up.eof)
                c |= EPOLLIN;
        if (p->down.len)
                c |= EPOLLOUT;
        if (p->down.len == 0 && !p->down.eof)
                b |= EPOLLIN;
        if (p->up.len)
                b |= EPOLLOUT;
        set_events(p->client, p->cs, c, 0);
        set_events(p->backend, p->bs, b, 0);
}

static int dir_init(struct dir *d, int from, int to) {
        d->from = from;
        d->to = to;
        if (use_splice)
                return pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC);
        d->buf = malloc(BUF);
        return d->buf ? 0 : -1;
}

static void accept_one(int ls) {
        int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
        struct pair *p;

        if (c < 0)
                return;
        p = calloc(1, sizeof(*p));
        p->client = c;
        p->backend = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        setsockopt(p->backend, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        p->cs = calloc(1, sizeof(*p->cs));
        p->bs = calloc(1, sizeof(*p->bs));
        *p->cs = (struct side) { p, 1, 0 };
        *p->bs = (struct side) { p, 0, 0 };
        if (dir_init(&p->up, c, p->backend) < 0 || dir_init(&p->down, p->backend, c) < 0 ||
            (connect(p->backend, (struct sockaddr *) &backend_addr, sizeof(backend_addr)) < 0 &&
             errno != EINPROGRESS)) {
                pair_free(p);
                return;
        }
        p->connecting = 1;
        set_events(c, p->cs, 0, 1);
        set_events(p->backend, p->bs, EPOLLOUT, 1);
}

int main(int argc, char **argv) {
        struct sockaddr_in a = { .sin_family = AF_INET };
        struct epoll_event evs[256];
        int ls, opt, one = 1, port = 0, bport = 0;

        while ((opt = getopt(argc, argv, "sp:b:")) >= 0) {
                if (opt == 's')
                        use_splice = 1;
                else if (opt == 'p')
                        port = atoi(optarg);
                else if (opt == 'b')
                        bport = atoi(optarg);
                else {
                        fprintf(stderr, "usage: ref-relay [-s] -p PORT -b BACKEND_PORT\n");
                        return 2;
                }
        }
        if (!port || !bport) {
                fprintf(stderr, "usage: ref-relay [-s] -p PORT -b BACKEND_PORT\n");
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        backend_addr = (struct sockaddr_in) { .sin_family = AF_INET, .sin_port = htons((uint16_t) bport) };
        inet_pton(AF_INET, "127.0.0.1", &backend_addr.sin_addr);
        a.sin_port = htons((uint16_t) port);
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        setsockopt(ls, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* inherited by accepted sockets */
        if (bind(ls, (struct sockaddr *) &a, sizeof(a)) < 0 || listen(ls, 128) < 0) {
                perror("ref-relay: listen");
                return 1;
        }
        ep = epoll_create1(EPOLL_CLOEXEC);
        {
                struct epoll_event e = { .events = EPOLLIN, .data.ptr = NULL };
                epoll_ctl(ep, EPOLL_CTL_ADD, ls, &e);
        }
        printf("listening on 127.0.0.1 port %d (%s)\n", port, use_splice ? "splice" : "read/write");
        fflush(stdout);
        for (;;) {
                int n = epoll_wait(ep, evs, 256, -1);

                for (int i = 0; i < n; i++) {
                        struct side *s = evs[i].data.ptr;
                        struct pair *p;

                        if (!s) {
                                accept_one(ls);
                                continue;
                        }
                        if (s == &skip)
                                continue;
                        p = s->p;
                        if (p->connecting) {
                                int err = 0;
                                socklen_t len = sizeof(err);

                                getsockopt(p->backend, SOL_SOCKET, SO_ERROR, &err, &len);
                                if (err) {
                                        pair_free(p);
                                        continue;
                                }
                                p->connecting = 0;
                                update(p);
                                continue;
                        }
                        /* only the directions this event is about */
                        {
                                struct dir *in = s->is_client ? &p->up : &p->down;   /* it reads */
                                struct dir *out = s->is_client ? &p->down : &p->up;  /* it is written */
                                int r = 0;

                                if (evs[i].events & EPOLLOUT)
                                        r = pump(out);
                                if (r == 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                                        r = pump(in);
                                if (r == 0 && !(p->up.eof && p->down.eof && !p->up.len && !p->down.len)) {
                                        update(p);
                                        continue;
                                }
                        }
                        {
                                struct side *cs = p->cs, *bs = p->bs;

                                /* a later event of this batch for the same pair is skipped */
                                for (int k = i + 1; k < n; k++)
                                        if (evs[k].data.ptr == cs || evs[k].data.ptr == bs)
                                                evs[k].data.ptr = &skip;
                                pair_free(p);
                                continue;
                        }
                }
        }
}
