/* tcpd-bench: a load generator for echo servers, in the manner of
 * redis-benchmark. Three modes: echo (request rate, throughput and latency on
 * long-lived connections), connect (whole connections per second) and hold
 * (how many idle connections a server keeps, and what each one costs it).
 * Every byte that comes back is checked, so a fast but wrong server fails.
 *
 * The BENCH line at the end of a run is for scripts; its fields are listed in
 * help() below and in tests/bench/README.md. Keep their names stable. */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "addr.h"
#include "tcpd-build.h"
#include "util.h"

#define USEC_PER_SEC UINT64_C(1000000)
/* Most bytes per send() or recv(). */
#define MAX_IO (256 * 1024)
/* The byte stream of a connection is a pseudo-random pattern of this period.
 * A prime, so that no shift by a power of two (a lost or repeated buffer)
 * maps the pattern onto itself. */
#define PATTERN_LEN 65521
/* Each connection starts at its own phase of the pattern, so that bytes of
 * one connection that turn up on another are caught too. */
#define PATTERN_STRIDE 7919
/* Connections being opened at once: under the servers' listen backlog (128),
 * so that no SYN is dropped and retried a second later, which would make the
 * time to open a step meaningless. */
#define DEFAULT_WINDOW 64
/* File descriptors each process keeps free for anything but connections. */
#define FD_HEADROOM 100
#define EVENTS_BATCH 256
#define SHOWN_ERRORS 10
#define SETUP_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define STEP_TIMEOUT_USEC (60 * USEC_PER_SEC)
/* A holder process answers a command within its own deadline; this is only
 * for one that hangs. */
#define REPLY_TIMEOUT_MSEC (2 * 60 * 1000)

enum mode {
        MODE_ECHO,
        MODE_CONNECT,
        MODE_HOLD,
};

static const char *const mode_names[] = {
        [MODE_ECHO] = "echo",
        [MODE_CONNECT] = "connect",
        [MODE_HOLD] = "hold",
};

struct options {
        enum mode mode;
        const char *host;
        union sockaddr_in46 addr; /* with the port */
        bool loopback4;           /* in 127.0.0.0/8: source addresses can vary */
        unsigned threads;
        unsigned conns;
        unsigned depth;
        unsigned sources; /* 0: the kernel picks the source address */
        unsigned steps;   /* hold: connections per step */
        unsigned window;
        uint64_t size;
        uint64_t secs_usec;
        uint64_t warmup_usec;
        pid_t pid; /* the server, 0 when not given */
};

/* ---- errors shown to the user ---- */

static unsigned n_shown;

/* Prints the first few problems; a broken server can cause thousands. */
_printf_(1, 2) static void bench_error(const char *fmt, ...) {
        unsigned n = __atomic_fetch_add(&n_shown, 1, __ATOMIC_RELAXED);
        va_list ap;

        if (n > SHOWN_ERRORS)
                return;
        if (n == SHOWN_ERRORS) {
                fprintf(stderr, "tcpd-bench: (further errors not shown)\n");
                return;
        }
        va_start(ap, fmt);
        fputs("tcpd-bench: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
}

/* ---- the byte pattern ---- */

/* One period, then MAX_IO bytes more, so that any window of up to MAX_IO
 * bytes of a connection's stream is one contiguous piece of this array: sends
 * go straight out of it and checks are one memcmp(). */
static uint8_t pattern[PATTERN_LEN + MAX_IO];

static void pattern_init(void) {
        uint64_t x = UINT64_C(0x9e3779b97f4a7c15);

        for (size_t i = 0; i < PATTERN_LEN; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                pattern[i] = (uint8_t) (x >> 29);
        }
        for (size_t i = PATTERN_LEN; i < sizeof(pattern); i++)
                pattern[i] = pattern[i - PATTERN_LEN];
}

static const uint8_t *pattern_at(unsigned conn, uint64_t pos) {
        return pattern + (pos + (uint64_t) conn * PATTERN_STRIDE) % PATTERN_LEN;
}

/* Checks n (at most MAX_IO) bytes received at stream position pos. */
static int pattern_check(unsigned conn, uint64_t pos, const uint8_t *got, size_t n) {
        const uint8_t *want = pattern_at(conn, pos);

        if (_likely_(memcmp(got, want, n) == 0))
                return 0;
        for (size_t i = 0; i < n; i++)
                if (got[i] != want[i]) {
                        bench_error("verify: connection %u, byte %" PRIu64 " of its stream: expected 0x%02x, "
                                    "got 0x%02x",
                                    conn, pos + i, want[i], got[i]);
                        break;
                }
        return -EBADMSG;
}

/* ---- latency histogram ----
 *
 * Log-linear buckets of microseconds, as HdrHistogram keeps them: values
 * under 128 have a bucket each; above, each power of two is split into 64
 * buckets, so a percentile is off by less than 1/64 (1.6%). Fixed size, no
 * allocation per sample; values above 2^41 us (25 days) share the last one. */

#define HIST_SUB_BITS 7
#define HIST_HALF (1u << (HIST_SUB_BITS - 1))
#define HIST_MAX_EXP 35
#define HIST_BUCKETS ((HIST_MAX_EXP + 2) * HIST_HALF)

struct hist {
        uint64_t count;
        uint64_t max;
        uint64_t bucket[HIST_BUCKETS];
};

static unsigned hist_index(uint64_t v) {
        unsigned e;

        if (v < 2 * HIST_HALF)
                return (unsigned) v;
        e = (unsigned) (63 - __builtin_clzll(v)) - (HIST_SUB_BITS - 1);
        if (e > HIST_MAX_EXP)
                return HIST_BUCKETS - 1;
        return e * HIST_HALF + (unsigned) (v >> e);
}

/* The largest value that falls into bucket i. */
static uint64_t hist_bucket_top(unsigned i) {
        unsigned e;

        if (i < 2 * HIST_HALF)
                return i;
        e = i / HIST_HALF - 1;
        return ((uint64_t) (i - e * HIST_HALF + 1) << e) - 1;
}

static void hist_add(struct hist *h, uint64_t v) {
        h->bucket[hist_index(v)]++;
        h->count++;
        if (v > h->max)
                h->max = v;
}

static void hist_merge(struct hist *into, const struct hist *h) {
        for (unsigned i = 0; i < HIST_BUCKETS; i++)
                into->bucket[i] += h->bucket[i];
        into->count += h->count;
        if (h->max > into->max)
                into->max = h->max;
}

/* The value at or below which q (0..1) of the samples lie, reported as the
 * top of its bucket (never above the largest sample). */
static uint64_t hist_percentile(const struct hist *h, double q) {
        uint64_t rank, seen = 0;

        if (h->count == 0)
                return 0;
        rank = (uint64_t) (q * (double) h->count + 0.999999);
        if (rank < 1)
                rank = 1;
        for (unsigned i = 0; i < HIST_BUCKETS; i++) {
                seen += h->bucket[i];
                if (seen >= rank) {
                        uint64_t top = hist_bucket_top(i);
                        return top < h->max ? top : h->max;
                }
        }
        return h->max;
}

/* ---- the server under test, from /proc ---- */

struct server_sample {
        bool ok;
        uint64_t cpu_usec; /* utime + stime of all its threads */
        uint64_t rss_kib;
};

static int read_file(const char *path, char *buf, size_t size) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return -errno;
        n = read(fd, buf, size - 1);
        if (n < 0)
                return -errno;
        buf[n] = '\0';
        return 0;
}

static int server_sample(pid_t pid, struct server_sample *s) {
        char path[64], buf[4096];
        unsigned long long utime, stime, rss;
        const char *p;
        int r;

        *s = (struct server_sample) {};
        if (pid <= 0)
                return 0;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        r = read_file(path, buf, sizeof(buf));
        if (r < 0)
                return r;
        /* the command name may hold spaces and parentheses: fields start
         * after the last ')'; utime and stime are fields 14 and 15 */
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
                return -EBADMSG;
        s->cpu_usec = (utime + stime) * USEC_PER_SEC / (uint64_t) sysconf(_SC_CLK_TCK);

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        r = read_file(path, buf, sizeof(buf));
        if (r < 0)
                return r;
        p = strstr(buf, "\nVmRSS:");
        if (!p || sscanf(p + 7, " %llu", &rss) != 1)
                return -EBADMSG;
        s->rss_kib = rss;
        s->ok = true;
        return 0;
}

static uint64_t cpu_self_usec(void) {
        struct rusage ru;

        if (getrusage(RUSAGE_SELF, &ru) < 0)
                return 0;
        return (uint64_t) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * USEC_PER_SEC +
               (uint64_t) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void sleep_until(uint64_t usec) {
        struct timespec ts = {
                .tv_sec = (time_t) (usec / USEC_PER_SEC),
                .tv_nsec = (long) (usec % USEC_PER_SEC) * 1000,
        };

        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                ;
}

static uint64_t now(void) {
        return now_usec(CLOCK_MONOTONIC);
}

/* ---- sockets ---- */

/* A non-blocking socket with its connect() to the server under way. */
static int bench_connect(const struct options *o, unsigned idx, int *ret) {
        _cleanup_close_ int fd = -1;
        int one = 1;

        fd = socket(o->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        /* as tcpd's accepted sockets: a message must not wait for Nagle */
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (o->sources > 0 && o->loopback4) {
                struct sockaddr_in src = {
                        .sin_family = AF_INET,
                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK + idx % o->sources),
                };

                /* One source address has about 28,000 ephemeral ports for one
                 * server address; 127.0.0.1 ... 127.0.0.N have N times as many.
                 * Without IP_BIND_ADDRESS_NO_PORT bind() would pick the port
                 * alone, without knowing the destination, and run out sooner. */
                (void) setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
                if (bind(fd, (const struct sockaddr *) &src, sizeof(src)) < 0)
                        return -errno;
        }
        if (connect(fd, &o->addr.sa, addr_len(&o->addr)) < 0 && errno != EINPROGRESS)
                return -errno;
        *ret = TAKE_FD(fd);
        return 0;
}

/* The outcome of a connect() once the socket became writable. */
static int connect_result(int fd) {
        int err = 0;
        socklen_t len = sizeof(err);

        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                return -errno;
        return -err;
}

/* Closes with a reset instead of a FIN. Used once a connection's echo has been
 * verified in full: a reset leaves neither end in TIME_WAIT, so a connect run
 * of hundreds of thousands of connections does not use up the ephemeral ports
 * (about 28,000 per source address, each held 60 s in TIME_WAIT). */
static void close_reset(int fd) {
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };

        (void) setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
}

static int epoll_set(int epfd, int op, int fd, uint32_t events, uint64_t data) {
        struct epoll_event ev = { .events = events, .data.u64 = data };

        return epoll_ctl(epfd, op, fd, &ev) < 0 ? -errno : 0;
}

static int raise_nofile(rlim_t *ret) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        if (rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        return -errno;
        }
        *ret = rl.rlim_cur;
        return 0;
}

/* ---- echo and connect: threads with many connections each ---- */

struct conn {
        int fd;
        unsigned idx; /* connection (connect: slot) number: its pattern phase */
        bool connecting;
        bool out_armed;
        uint64_t sent, rcvd; /* stream positions */
        uint64_t began;      /* connect: when this connection's connect() started */
        uint64_t *starts;    /* echo: send time of each message in flight, by number mod depth */
};

struct worker {
        pthread_t thread;
        const struct options *o;
        struct conn *conns;
        unsigned n;
        int epfd;
        int setup_r;
        uint8_t *buf;
        uint64_t requests; /* completed in the measured window */
        uint64_t bytes;    /* echoed back in the measured window */
        uint64_t errors;
        struct hist hist;
};

/* The clock every thread follows; written before the second barrier. */
static struct {
        pthread_barrier_t barrier;
        uint64_t from, to; /* the measured window, CLOCK_MONOTONIC usec */
        bool abort;
} run;

static void conn_fail(struct worker *w, struct conn *c) {
        w->errors++;
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
}

static void conn_want_out(struct worker *w, struct conn *c, bool out) {
        if (out == c->out_armed)
                return;
        if (epoll_set(w->epfd, EPOLL_CTL_MOD, c->fd, EPOLLIN | (out ? EPOLLOUT : 0), (uintptr_t) c) < 0) {
                bench_error("connection %u: epoll_ctl: %m", c->idx);
                conn_fail(w, c);
                return;
        }
        c->out_armed = out;
}

/* How far the stream may be sent: depth messages beyond the last one echoed
 * back in full (echo), or the one message (connect). */
static uint64_t send_limit(const struct worker *w, const struct conn *c) {
        if (w->o->mode == MODE_CONNECT)
                return w->o->size;
        return (c->rcvd / w->o->size + w->o->depth) * w->o->size;
}

static void conn_fill(struct worker *w, struct conn *c) {
        uint64_t limit = send_limit(w, c), size = w->o->size;

        while (c->sent < limit) {
                size_t n = limit - c->sent > MAX_IO ? MAX_IO : (size_t) (limit - c->sent);
                uint64_t t = now();
                ssize_t k = send(c->fd, pattern_at(c->idx, c->sent), n, MSG_NOSIGNAL);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        bench_error("connection %u: send: %m", c->idx);
                        conn_fail(w, c);
                        return;
                }
                /* a message's latency starts when its first byte goes out */
                if (c->starts)
                        for (uint64_t m = (c->sent + size - 1) / size; m * size < c->sent + (uint64_t) k; m++)
                                c->starts[m % w->o->depth] = t;
                c->sent += (uint64_t) k;
                if ((size_t) k < n)
                        break; /* the socket buffer is full: wait for EPOLLOUT */
        }
        conn_want_out(w, c, c->sent < limit);
}

static void connect_start(struct worker *w, struct conn *c) {
        int r;

        c->sent = c->rcvd = 0;
        c->began = now();
        r = bench_connect(w->o, c->idx, &c->fd);
        if (r < 0) {
                c->fd = -1;
                bench_error("connection %u: connect: %s", c->idx, strerror(-r));
                w->errors++;
                return;
        }
        c->connecting = true;
        c->out_armed = true;
        r = epoll_set(w->epfd, EPOLL_CTL_ADD, c->fd, EPOLLOUT, (uintptr_t) c);
        if (r < 0) {
                bench_error("connection %u: epoll_ctl: %s", c->idx, strerror(-r));
                conn_fail(w, c);
        }
}

/* The connect() finished: check how, then start sending. */
static void conn_connected(struct worker *w, struct conn *c) {
        int r = connect_result(c->fd);

        if (r < 0) {
                bench_error("connection %u: connect: %s", c->idx, strerror(-r));
                conn_fail(w, c);
                return;
        }
        c->connecting = false;
        c->out_armed = false;
        if (epoll_set(w->epfd, EPOLL_CTL_MOD, c->fd, EPOLLIN, (uintptr_t) c) < 0) {
                bench_error("connection %u: epoll_ctl: %m", c->idx);
                conn_fail(w, c);
        }
}

static void conn_readable(struct worker *w, struct conn *c) {
        uint64_t t, size = w->o->size;
        bool counted;
        ssize_t n;

        n = recv(c->fd, w->buf, MAX_IO, 0);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return;
                bench_error("connection %u: recv after %" PRIu64 " bytes: %m", c->idx, c->rcvd);
                conn_fail(w, c);
                return;
        }
        if (n == 0) {
                bench_error("connection %u: closed by the server after %" PRIu64 " of %" PRIu64 " bytes",
                            c->idx, c->rcvd, c->sent);
                conn_fail(w, c);
                return;
        }
        if ((uint64_t) n > c->sent - c->rcvd) {
                bench_error("connection %u: the server sent %zd bytes, only %" PRIu64 " were owed", c->idx, n,
                            c->sent - c->rcvd);
                conn_fail(w, c);
                return;
        }
        if (pattern_check(c->idx, c->rcvd, w->buf, (size_t) n) < 0) {
                conn_fail(w, c);
                return;
        }

        t = now();
        counted = t >= run.from && t < run.to;
        if (w->o->mode == MODE_CONNECT) {
                c->rcvd += (uint64_t) n;
                if (c->rcvd < size)
                        return;
                if (counted) {
                        hist_add(&w->hist, t - c->began);
                        w->requests++;
                        w->bytes += size;
                }
                close_reset(c->fd);
                c->fd = -1;
                if (t < run.to)
                        connect_start(w, c);
                return;
        }

        for (uint64_t m = c->rcvd / size; m < (c->rcvd + (uint64_t) n) / size; m++)
                if (counted) {
                        hist_add(&w->hist, t - c->starts[m % w->o->depth]);
                        w->requests++;
                }
        if (counted)
                w->bytes += (uint64_t) n;
        c->rcvd += (uint64_t) n;
        conn_fill(w, c);
}

/* Echo mode: every connection open before the clock starts. */
static int echo_setup(struct worker *w) {
        struct epoll_event evs[EVENTS_BATCH];
        unsigned started = 0, pending = 0, ready = 0;
        uint64_t deadline = now() + SETUP_TIMEOUT_USEC;
        int r;

        while (ready < w->n) {
                int n;

                while (started < w->n && pending < w->o->window) {
                        struct conn *c = &w->conns[started++];

                        r = bench_connect(w->o, c->idx, &c->fd);
                        if (r < 0) {
                                c->fd = -1;
                                bench_error("connection %u: connect: %s", c->idx, strerror(-r));
                                return r;
                        }
                        c->connecting = true;
                        r = epoll_set(w->epfd, EPOLL_CTL_ADD, c->fd, EPOLLOUT, (uintptr_t) c);
                        if (r < 0)
                                return r;
                        pending++;
                }
                if (now() > deadline) {
                        bench_error("timed out opening connections (%u of %u open)", ready, w->n);
                        return -ETIMEDOUT;
                }
                n = epoll_wait(w->epfd, evs, EVENTS_BATCH, 100);
                if (n < 0 && errno != EINTR)
                        return -errno;
                for (int i = 0; i < n; i++) {
                        struct conn *c = (struct conn *) (uintptr_t) evs[i].data.u64;

                        conn_connected(w, c);
                        if (c->fd < 0)
                                return -ECONNREFUSED;
                        pending--;
                        ready++;
                }
        }
        return 0;
}

static void *worker_main(void *arg) {
        struct worker *w = arg;
        struct epoll_event evs[EVENTS_BATCH];

        if (w->o->mode == MODE_ECHO)
                w->setup_r = echo_setup(w);
        pthread_barrier_wait(&run.barrier); /* every thread is set up */
        pthread_barrier_wait(&run.barrier); /* the clock is set */
        if (run.abort)
                return NULL;

        for (unsigned i = 0; i < w->n; i++)
                if (w->o->mode == MODE_ECHO)
                        conn_fill(w, &w->conns[i]);
                else
                        connect_start(w, &w->conns[i]);

        for (;;) {
                uint64_t t = now();
                int n, timeout;

                if (t >= run.to)
                        break;
                timeout = (int) ((run.to - t + 999) / 1000);
                n = epoll_wait(w->epfd, evs, EVENTS_BATCH, timeout > 100 ? 100 : timeout);
                if (n < 0 && errno != EINTR) {
                        bench_error("epoll_wait: %m");
                        w->errors++;
                        break;
                }
                for (int i = 0; i < n; i++) {
                        struct conn *c = (struct conn *) (uintptr_t) evs[i].data.u64;

                        if (c->fd < 0)
                                continue;
                        if (c->connecting) {
                                conn_connected(w, c);
                                if (c->fd >= 0)
                                        conn_fill(w, c);
                                continue;
                        }
                        if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                                conn_readable(w, c);
                        if (c->fd >= 0 && !c->connecting && (evs[i].events & EPOLLOUT))
                                conn_fill(w, c);
                }
        }
        return NULL;
}

static int run_load(const struct options *o) {
        _cleanup_free_ struct worker *workers = NULL;
        _cleanup_free_ struct conn *conns = NULL;
        _cleanup_free_ uint64_t *starts = NULL;
        _cleanup_free_ struct hist *hist = NULL;
        struct server_sample s0 = {}, s1 = {};
        uint64_t requests = 0, bytes = 0, errors = 0, cpu0 = 0, cpu1 = 0;
        double secs, rps, mbps, srv_per_req = 0, srv_pct = 0, cli_pct;
        bool setup_failed = false;
        int r;

        workers = calloc(o->threads, sizeof(*workers));
        conns = calloc(o->conns, sizeof(*conns));
        hist = calloc(1, sizeof(*hist));
        if (o->mode == MODE_ECHO)
                starts = calloc((size_t) o->conns * o->depth, sizeof(*starts));
        if (!workers || !conns || !hist || (o->mode == MODE_ECHO && !starts)) {
                fprintf(stderr, "tcpd-bench: out of memory\n");
                return EXIT_FAILURE;
        }
        for (unsigned i = 0; i < o->conns; i++) {
                conns[i].fd = -1;
                conns[i].idx = i;
                conns[i].starts = starts ? starts + (size_t) i * o->depth : NULL;
        }
        r = pthread_barrier_init(&run.barrier, NULL, o->threads + 1);
        if (r != 0) {
                fprintf(stderr, "tcpd-bench: pthread_barrier_init: %s\n", strerror(r));
                return EXIT_FAILURE;
        }

        for (unsigned t = 0; t < o->threads; t++) {
                struct worker *w = &workers[t];
                unsigned first = (unsigned) ((uint64_t) o->conns * t / o->threads);

                w->o = o;
                w->conns = conns + first;
                w->n = (unsigned) ((uint64_t) o->conns * (t + 1) / o->threads) - first;
                w->epfd = epoll_create1(EPOLL_CLOEXEC);
                w->buf = malloc(MAX_IO);
                if (w->epfd < 0 || !w->buf) {
                        /* no thread waits at the barrier yet: nothing to unwind but memory */
                        fprintf(stderr, "tcpd-bench: cannot set up a thread: %m\n");
                        exit(EXIT_FAILURE);
                }
        }
        for (unsigned t = 0; t < o->threads; t++) {
                r = pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]);
                if (r != 0) {
                        /* the threads started wait at the barrier forever */
                        fprintf(stderr, "tcpd-bench: pthread_create: %s\n", strerror(r));
                        exit(EXIT_FAILURE);
                }
        }

        pthread_barrier_wait(&run.barrier);
        for (unsigned t = 0; t < o->threads; t++)
                if (workers[t].setup_r < 0)
                        setup_failed = true;
        if (setup_failed) {
                run.abort = true;
        } else {
                run.from = now() + o->warmup_usec;
                run.to = run.from + o->secs_usec;
        }
        pthread_barrier_wait(&run.barrier);

        if (!setup_failed) {
                sleep_until(run.from);
                if (server_sample(o->pid, &s0) < 0)
                        bench_error("cannot read the server's /proc/%d: %m", (int) o->pid);
                cpu0 = cpu_self_usec();
                sleep_until(run.to);
                (void) server_sample(o->pid, &s1);
                cpu1 = cpu_self_usec();
        }

        for (unsigned t = 0; t < o->threads; t++) {
                struct worker *w = &workers[t];

                pthread_join(w->thread, NULL);
                hist_merge(hist, &w->hist);
                requests += w->requests;
                bytes += w->bytes;
                /* a failed setup counts once, logged or not */
                errors += w->errors + (w->setup_r < 0 && w->errors == 0);
                for (unsigned i = 0; i < w->n; i++)
                        if (w->conns[i].fd >= 0)
                                close(w->conns[i].fd);
                close(w->epfd);
                free(w->buf);
        }
        pthread_barrier_destroy(&run.barrier);

        secs = (double) o->secs_usec / 1e6;
        rps = setup_failed ? 0 : (double) requests / secs;
        mbps = setup_failed ? 0 : (double) bytes / secs / 1e6;
        cli_pct = setup_failed ? 0 : (double) (cpu1 - cpu0) / (double) o->secs_usec * 100;
        if (s0.ok && s1.ok) {
                srv_pct = (double) (s1.cpu_usec - s0.cpu_usec) / (double) o->secs_usec * 100;
                if (requests > 0)
                        srv_per_req = (double) (s1.cpu_usec - s0.cpu_usec) / (double) requests;
        }

        if (o->mode == MODE_ECHO)
                printf("echo %s port %u: %u connection%s x %u in flight, %" PRIu64 "-byte messages, "
                       "%u thread%s, %.2f s after %.2f s of warm-up\n",
                       o->host, addr_port(&o->addr), o->conns, o->conns == 1 ? "" : "s", o->depth, o->size,
                       o->threads, o->threads == 1 ? "" : "s", secs, (double) o->warmup_usec / 1e6);
        else
                printf("connect %s port %u: %u at once, each connect, %" PRIu64 " bytes echoed, reset; "
                       "%u thread%s, %.2f s after %.2f s of warm-up\n",
                       o->host, addr_port(&o->addr), o->conns, o->size, o->threads, o->threads == 1 ? "" : "s",
                       secs, (double) o->warmup_usec / 1e6);
        printf("  %-11s %" PRIu64 " (%.0f/s)\n", o->mode == MODE_ECHO ? "requests" : "connections", requests,
               rps);
        printf("  %-11s %.2f MB/s echoed\n", "throughput", mbps);
        printf("  %-11s p50 %" PRIu64 " us, p99 %" PRIu64 " us, p99.9 %" PRIu64 " us, max %" PRIu64 " us\n",
               "latency", hist_percentile(hist, 0.50), hist_percentile(hist, 0.99), hist_percentile(hist, 0.999),
               hist->max);
        if (s0.ok && s1.ok)
                printf("  %-11s pid %d: %.2f us CPU per %s, %.0f%% of a CPU, RSS %" PRIu64 " KiB\n", "server",
                       (int) o->pid, srv_per_req, o->mode == MODE_ECHO ? "request" : "connection", srv_pct,
                       s1.rss_kib);
        printf("  %-11s %.0f%% of a CPU\n", "client", cli_pct);
        printf("  %-11s %" PRIu64 "\n", "errors", errors);

        printf("BENCH mode=%s host=%s port=%u threads=%u conns=%u", mode_names[o->mode], o->host,
               addr_port(&o->addr), o->threads, o->conns);
        if (o->mode == MODE_ECHO)
                printf(" depth=%u", o->depth);
        printf(" size=%" PRIu64 " secs=%.2f requests=%" PRIu64 " rps=%.0f", o->size, secs, requests, rps);
        if (o->mode == MODE_CONNECT)
                printf(" cps=%.0f", rps);
        printf(" mbps=%.2f p50_us=%" PRIu64 " p99_us=%" PRIu64 " p999_us=%" PRIu64 " max_us=%" PRIu64, mbps,
               hist_percentile(hist, 0.50), hist_percentile(hist, 0.99), hist_percentile(hist, 0.999), hist->max);
        if (s0.ok && s1.ok)
                printf(" server_cpu_us_per_req=%.2f server_cpu_pct=%.1f server_rss_kib=%" PRIu64, srv_per_req,
                       srv_pct, s1.rss_kib);
        else
                printf(" server_cpu_us_per_req=na server_cpu_pct=na server_rss_kib=na");
        printf(" client_cpu_pct=%.1f errors=%" PRIu64 "\n", cli_pct, errors);
        fflush(stdout);

        if (errors > 0 || setup_failed)
                return EXIT_FAILURE;
        if (requests == 0) {
                fprintf(stderr, "tcpd-bench: no %s completed in the measured window\n",
                        o->mode == MODE_ECHO ? "request" : "connection");
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}

/* ---- hold: idle connections, held by child processes ----
 *
 * The parent only steers: it tells each holder process to open so many more
 * connections, or to check or close them all, and reads back what happened.
 * A holder takes as many connections as its open-files limit allows; the
 * parent forks as many holders as the target needs. */

enum hold_op {
        HOLD_OPEN = 1, /* open n more connections, each answering one echoed byte */
        HOLD_VERIFY,   /* every held connection echoes one more byte */
        HOLD_CLOSE,    /* close them all and exit */
};

struct hold_cmd {
        uint32_t op;
        uint32_t n;
};

struct hold_reply {
        uint32_t held;    /* connections held now */
        uint32_t done;    /* opened (HOLD_OPEN) or verified (HOLD_VERIFY) by this command */
        uint32_t failed;  /* that did not open, or did not answer */
        uint32_t dropped; /* held ones the server closed or reset since the last reply */
};

enum hconn_state {
        H_FREE,
        H_CONNECTING,
        H_ECHO, /* a byte sent, waiting for it to come back */
        H_HELD,
};

struct hconn {
        int fd;
        uint8_t state;
};

struct holder {
        const struct options *o;
        int ctl, epfd;
        unsigned first; /* number of its first connection, among all */
        unsigned cap;   /* connections it may hold */
        unsigned used;  /* slots taken, failed ones included */
        unsigned held;
        unsigned pending;
        unsigned done, failed, dropped;
        unsigned round; /* which byte the held connections echo */
        struct hconn *c;
};

#define HOLD_CTL UINT64_MAX

/* The byte connection idx echoes in a round: differs between neighbours and
 * between rounds, so a byte from elsewhere or from before is caught. */
static uint8_t hold_byte(unsigned idx, unsigned round) {
        return (uint8_t) (idx * 131u + round * 29u + 1u);
}

static void hconn_close(struct holder *h, unsigned i) {
        close(h->c[i].fd);
        h->c[i].fd = -1;
        h->c[i].state = H_FREE;
}

/* A connection that was being opened or checked did not make it (err 0:
 * what says it all). */
static void hconn_fail(struct holder *h, unsigned i, const char *what, int err) {
        if (err)
                bench_error("hold: connection %u: %s: %s", h->first + i, what, strerror(err));
        else
                bench_error("hold: connection %u: %s", h->first + i, what);
        hconn_close(h, i);
        h->pending--;
        h->failed++;
        if (h->round > 0)
                h->held--; /* a check of one held before */
}

static void hconn_send_byte(struct holder *h, unsigned i) {
        uint8_t b = hold_byte(h->first + i, h->round);

        if (send(h->c[i].fd, &b, 1, MSG_NOSIGNAL) != 1) {
                hconn_fail(h, i, "send", errno ? errno : EAGAIN);
                return;
        }
        h->c[i].state = H_ECHO;
}

static void hconn_event(struct holder *h, unsigned i, uint32_t events) {
        struct hconn *c = &h->c[i];
        uint8_t buf[16];
        ssize_t n;
        int r;

        switch (c->state) {
        case H_CONNECTING:
                r = connect_result(c->fd);
                if (r < 0) {
                        hconn_fail(h, i, "connect", -r);
                        return;
                }
                r = epoll_set(h->epfd, EPOLL_CTL_MOD, c->fd, EPOLLIN | EPOLLRDHUP, i);
                if (r < 0) {
                        hconn_fail(h, i, "epoll_ctl", -r);
                        return;
                }
                hconn_send_byte(h, i);
                return;

        case H_ECHO:
                n = recv(c->fd, buf, sizeof(buf), 0);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return;
                if (n < 0)
                        hconn_fail(h, i, "recv", errno);
                else if (n == 0)
                        hconn_fail(h, i, "closed by the server before echoing", 0);
                else if (n != 1 || buf[0] != hold_byte(h->first + i, h->round))
                        hconn_fail(h, i, "verify: the echo differs from the byte sent", 0);
                else {
                        c->state = H_HELD;
                        h->pending--;
                        h->done++;
                        if (h->round == 0)
                                h->held++;
                }
                return;

        case H_HELD:
                /* An idle connection has nothing to say: any event is the
                 * server closing or resetting it, or sending what nobody asked. */
                n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n < 0 && (errno == EAGAIN || errno == EINTR) && !(events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)))
                        return;
                bench_error("hold: connection %u: %s while held", h->first + i,
                            n > 0    ? "unexpected data"
                            : n == 0 ? "closed by the server"
                            : errno == EAGAIN ? "hung up"
                                              : strerror(errno));
                hconn_close(h, i);
                h->held--;
                h->dropped++;
                return;

        default:
                return;
        }
}

/* Runs the holder's connections until none is pending and every slot below
 * target has been started, or until the deadline. */
static void holder_pump(struct holder *h, unsigned target, uint64_t deadline) {
        struct epoll_event evs[EVENTS_BATCH];

        while (h->pending > 0 || h->used < target) {
                uint64_t t;
                int n;

                while (h->used < target && h->pending < h->o->window) {
                        unsigned i = h->used++;
                        int r = bench_connect(h->o, h->first + i, &h->c[i].fd);

                        if (r < 0) {
                                h->c[i].fd = -1;
                                bench_error("hold: connection %u: connect: %s", h->first + i, strerror(-r));
                                h->failed++;
                                continue;
                        }
                        r = epoll_set(h->epfd, EPOLL_CTL_ADD, h->c[i].fd, EPOLLOUT, i);
                        if (r < 0) {
                                bench_error("hold: connection %u: epoll_ctl: %s", h->first + i, strerror(-r));
                                close(h->c[i].fd);
                                h->c[i].fd = -1;
                                h->failed++;
                                continue;
                        }
                        h->c[i].state = H_CONNECTING;
                        h->pending++;
                }
                if (h->pending == 0)
                        continue;

                t = now();
                if (t >= deadline) {
                        for (unsigned i = 0; i < h->used; i++)
                                if (h->c[i].state == H_CONNECTING || h->c[i].state == H_ECHO)
                                        hconn_fail(h, i, "no answer in time", 0);
                        return;
                }
                n = epoll_wait(h->epfd, evs, EVENTS_BATCH, 100);
                if (n < 0 && errno != EINTR) {
                        bench_error("hold: epoll_wait: %m");
                        return;
                }
                for (int k = 0; k < n; k++)
                        if (evs[k].data.u64 != HOLD_CTL)
                                hconn_event(h, (unsigned) evs[k].data.u64, evs[k].events);
        }
}

static void holder_command(struct holder *h, const struct hold_cmd *cmd) {
        struct hold_reply reply;

        h->done = h->failed = 0;
        switch (cmd->op) {
        case HOLD_OPEN:
                h->round = 0;
                holder_pump(h, h->used + (cmd->n < h->cap - h->used ? cmd->n : h->cap - h->used),
                            now() + STEP_TIMEOUT_USEC);
                break;
        case HOLD_VERIFY:
                h->round++;
                for (unsigned i = 0; i < h->used; i++)
                        if (h->c[i].state == H_HELD) {
                                h->pending++;
                                hconn_send_byte(h, i);
                        }
                holder_pump(h, h->used, now() + STEP_TIMEOUT_USEC);
                break;
        case HOLD_CLOSE:
                for (unsigned i = 0; i < h->used; i++)
                        if (h->c[i].fd >= 0)
                                hconn_close(h, i);
                h->held = 0;
                break;
        default:
                break;
        }
        reply = (struct hold_reply) {
                .held = h->held,
                .done = h->done,
                .failed = h->failed,
                .dropped = h->dropped,
        };
        h->dropped = 0;
        (void) send(h->ctl, &reply, sizeof(reply), MSG_NOSIGNAL);
}

/* The holder process: waits for commands and watches its idle connections. */
static int holder_main(struct holder *h) {
        struct epoll_event evs[EVENTS_BATCH];

        h->epfd = epoll_create1(EPOLL_CLOEXEC);
        h->c = calloc(h->cap, sizeof(*h->c));
        if (h->epfd < 0 || !h->c || epoll_set(h->epfd, EPOLL_CTL_ADD, h->ctl, EPOLLIN, HOLD_CTL) < 0) {
                fprintf(stderr, "tcpd-bench: holder: %m\n");
                return EXIT_FAILURE;
        }
        for (;;) {
                int n = epoll_wait(h->epfd, evs, EVENTS_BATCH, 1000);

                if (n < 0 && errno != EINTR) {
                        fprintf(stderr, "tcpd-bench: holder: epoll_wait: %m\n");
                        return EXIT_FAILURE;
                }
                for (int k = 0; k < n; k++) {
                        struct hold_cmd cmd;
                        ssize_t len;

                        if (evs[k].data.u64 != HOLD_CTL) {
                                hconn_event(h, (unsigned) evs[k].data.u64, evs[k].events);
                                continue;
                        }
                        len = recv(h->ctl, &cmd, sizeof(cmd), 0);
                        if (len <= 0) /* the parent is gone */
                                return EXIT_FAILURE;
                        if (len != sizeof(cmd))
                                continue;
                        holder_command(h, &cmd);
                        if (cmd.op == HOLD_CLOSE)
                                return EXIT_SUCCESS;
                }
        }
}

struct holder_proc {
        pid_t pid;
        int ctl;
        unsigned cap, assigned;
        struct hold_reply last;
};

static int holder_spawn(const struct options *o, struct holder_proc *procs, unsigned k, unsigned first) {
        pid_t parent = getpid();
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        fflush(NULL);
        procs[k].pid = fork();
        if (procs[k].pid < 0) {
                close(sv[0]);
                close(sv[1]);
                return -errno;
        }
        if (procs[k].pid == 0) {
                struct holder h = {
                        .o = o,
                        .ctl = sv[1],
                        .first = first,
                        .cap = procs[k].cap,
                };

                /* a holder must not outlive the run, however the parent ends */
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(EXIT_FAILURE);
                close(sv[0]);
                for (unsigned j = 0; j < k; j++)
                        close(procs[j].ctl);
                _exit(holder_main(&h));
        }
        close(sv[1]);
        procs[k].ctl = sv[0];
        return 0;
}

static int holder_send(struct holder_proc *p, uint32_t op, uint32_t n) {
        struct hold_cmd cmd = { .op = op, .n = n };

        if (send(p->ctl, &cmd, sizeof(cmd), MSG_NOSIGNAL) != sizeof(cmd))
                return -errno;
        return 0;
}

static int holder_wait(struct holder_proc *p, struct hold_reply *reply) {
        struct pollfd pfd = { .fd = p->ctl, .events = POLLIN };
        ssize_t n;
        int r;

        r = poll(&pfd, 1, REPLY_TIMEOUT_MSEC);
        if (r < 0)
                return -errno;
        if (r == 0)
                return -ETIMEDOUT;
        n = recv(p->ctl, reply, sizeof(*reply), 0);
        if (n < 0)
                return -errno;
        if (n != sizeof(*reply))
                return -EPIPE; /* the holder died */
        p->last = *reply;
        return 0;
}

/* Sends op to every holder with a share (n[k] > 0, or all when n is NULL)
 * and sums the replies. */
static int holders_run(struct holder_proc *procs, unsigned n_procs, uint32_t op, const unsigned *n,
                       struct hold_reply *sum) {
        int r, ret = 0;

        *sum = (struct hold_reply) {};
        for (unsigned k = 0; k < n_procs; k++) {
                if (n && n[k] == 0)
                        continue;
                r = holder_send(&procs[k], op, n ? n[k] : 0);
                if (r < 0) {
                        bench_error("hold: holder %u: %s", k, strerror(-r));
                        ret = r;
                }
        }
        for (unsigned k = 0; k < n_procs; k++) {
                struct hold_reply rep;

                if (n && n[k] == 0)
                        continue;
                r = holder_wait(&procs[k], &rep);
                if (r < 0) {
                        bench_error("hold: holder %u: %s", k, strerror(-r));
                        ret = r;
                        continue;
                }
                sum->done += rep.done;
                sum->failed += rep.failed;
                sum->dropped += rep.dropped;
        }
        for (unsigned k = 0; k < n_procs; k++)
                sum->held += procs[k].last.held;
        return ret;
}

static int run_hold(const struct options *o) {
        _cleanup_free_ struct holder_proc *procs = NULL;
        _cleanup_free_ unsigned *share = NULL;
        struct server_sample base = {}, prev, cur = {}, opened = {};
        struct hold_reply sum = {};
        uint64_t open_usec = 0, failed = 0, dropped = 0, held = 0, verified = 0;
        unsigned n_procs, per_proc, assigned = 0;
        bool broken = false;
        rlim_t limit;
        int r;

        r = raise_nofile(&limit);
        if (r < 0) {
                fprintf(stderr, "tcpd-bench: cannot raise the open files limit: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        if (limit <= FD_HEADROOM + 1) {
                fprintf(stderr, "tcpd-bench: the open files limit (%llu) leaves no room for connections\n",
                        (unsigned long long) limit);
                return EXIT_FAILURE;
        }
        per_proc = limit - FD_HEADROOM > UINT32_MAX / 2 ? UINT32_MAX / 2 : (unsigned) (limit - FD_HEADROOM);
        n_procs = (o->conns + per_proc - 1) / per_proc;
        procs = calloc(n_procs, sizeof(*procs));
        share = calloc(n_procs, sizeof(*share));
        if (!procs || !share) {
                fprintf(stderr, "tcpd-bench: out of memory\n");
                return EXIT_FAILURE;
        }

        printf("hold %s port %u: %u connections from %u source address%s, steps of %u, %u holder process%s\n",
               o->host, addr_port(&o->addr), o->conns, o->sources && o->loopback4 ? o->sources : 1,
               o->sources > 1 && o->loopback4 ? "es" : "", o->steps, n_procs, n_procs == 1 ? "" : "es");
        for (unsigned k = 0; k < n_procs; k++) {
                procs[k].ctl = -1;
                procs[k].cap = k + 1 < n_procs ? per_proc : o->conns - k * per_proc;
                r = holder_spawn(o, procs, k, k * per_proc);
                if (r < 0) {
                        fprintf(stderr, "tcpd-bench: cannot start a holder process: %s\n", strerror(-r));
                        n_procs = k;
                        broken = true;
                        goto finish;
                }
        }

        if (server_sample(o->pid, &base) < 0)
                bench_error("cannot read the server's /proc/%d: %m", (int) o->pid);
        prev = base;
        printf("  %9s %10s %9s %12s %11s\n", "held", "step ms", "us/conn", "server KiB", "bytes/conn");
        while (assigned < o->conns && !broken) {
                unsigned step = o->conns - assigned < o->steps ? o->conns - assigned : o->steps;
                uint64_t t0;

                /* fill the holders one after the other */
                for (unsigned k = 0, left = step; k < n_procs; k++) {
                        unsigned room = procs[k].cap - procs[k].assigned;

                        share[k] = left < room ? left : room;
                        procs[k].assigned += share[k];
                        left -= share[k];
                }
                assigned += step;

                t0 = now();
                if (holders_run(procs, n_procs, HOLD_OPEN, share, &sum) < 0)
                        broken = true;
                t0 = now() - t0;
                open_usec += t0;
                failed += sum.failed;
                dropped += sum.dropped;
                (void) server_sample(o->pid, &cur);

                printf("  %9u %10.1f %9.1f", sum.held, (double) t0 / 1000, sum.done ? (double) t0 / sum.done : 0);
                if (cur.ok && prev.ok && sum.done)
                        printf(" %12" PRIu64 " %11.0f", cur.rss_kib,
                               ((double) cur.rss_kib - (double) prev.rss_kib) * 1024 / sum.done);
                printf("%s\n", sum.failed || sum.dropped ? "  (some failed, see above)" : "");
                fflush(stdout);
                prev = cur;
        }
        opened = cur;
        held = sum.held;

        if (!broken) {
                sleep_until(now() + o->secs_usec);
                if (holders_run(procs, n_procs, HOLD_VERIFY, NULL, &sum) < 0)
                        broken = true;
                verified = sum.done;
                failed += sum.failed;
                dropped += sum.dropped;
        }

finish:
        if (n_procs > 0 && holders_run(procs, n_procs, HOLD_CLOSE, NULL, &sum) < 0)
                broken = true;
        for (unsigned k = 0; k < n_procs; k++) {
                int status;

                close(procs[k].ctl);
                if (waitpid(procs[k].pid, &status, 0) < 0 || !WIFEXITED(status) ||
                    WEXITSTATUS(status) != EXIT_SUCCESS)
                        broken = true;
        }
        if (broken) {
                fprintf(stderr, "tcpd-bench: hold: a holder process failed\n");
                printf("BENCH mode=hold host=%s port=%u conns=%u held=0 errors=1\n", o->host, addr_port(&o->addr),
                       o->conns);
                return EXIT_FAILURE;
        }

        printf("  held %" PRIu64 " connections for %.2f s; %" PRIu64 " answered a last echo; %" PRIu64
               " dropped, %" PRIu64 " failed\n",
               held, (double) o->secs_usec / 1e6, verified, dropped, failed);
        printf("  opening took %.2f s, %.1f us per connection\n", (double) open_usec / 1e6,
               held ? (double) open_usec / (double) held : 0);
        if (base.ok && opened.ok && held) {
                printf("  server pid %d: RSS %" PRIu64 " KiB (%" PRIu64 " KiB before), %.0f bytes per connection; "
                       "%.1f us CPU per connection opened\n",
                       (int) o->pid, opened.rss_kib, base.rss_kib,
                       ((double) opened.rss_kib - (double) base.rss_kib) * 1024 / (double) held,
                       (double) (opened.cpu_usec - base.cpu_usec) / (double) held);
        }

        printf("BENCH mode=hold host=%s port=%u conns=%u sources=%u steps=%u secs=%.2f held=%" PRIu64
               " verified=%" PRIu64 " open_secs=%.3f open_us_per_conn=%.1f",
               o->host, addr_port(&o->addr), o->conns, o->sources && o->loopback4 ? o->sources : 1, o->steps,
               (double) o->secs_usec / 1e6, held, verified, (double) open_usec / 1e6,
               held ? (double) open_usec / (double) held : 0);
        if (base.ok && opened.ok && held)
                printf(" rss_kib=%" PRIu64 " rss_base_kib=%" PRIu64 " rss_per_conn_bytes=%.0f"
                       " server_cpu_us_per_conn=%.2f",
                       opened.rss_kib, base.rss_kib,
                       ((double) opened.rss_kib - (double) base.rss_kib) * 1024 / (double) held,
                       (double) (opened.cpu_usec - base.cpu_usec) / (double) held);
        else
                printf(" rss_kib=na rss_base_kib=na rss_per_conn_bytes=na server_cpu_us_per_conn=na");
        printf(" dropped=%" PRIu64 " errors=%" PRIu64 "\n", dropped, failed + dropped);
        fflush(stdout);

        return held == o->conns && verified == o->conns && failed == 0 && dropped == 0 ? EXIT_SUCCESS
                                                                                       : EXIT_FAILURE;
}

/* ---- options ---- */

static void help(void) {
        printf("Usage: tcpd-bench [OPTIONS]\n"
               "\n"
               "Load generator for echo servers (tcpd and tests/bench/ref-echo). Every echoed byte\n"
               "is verified; a mismatch fails the run. Send traffic only to your own servers.\n"
               "\n"
               "  -H, --host ADDR        server address, numeric IPv4 or IPv6 (127.0.0.1)\n"
               "  -p, --port PORT        server port (7788)\n"
               "  -m, --mode MODE        echo, connect or hold (echo)\n"
               "  -c, --connections N    echo: connections; connect: connections at once;\n"
               "                         hold: connections to hold (50; hold: 19000)\n"
               "  -d, --depth N          echo: messages in flight per connection (1)\n"
               "  -s, --size BYTES       bytes per message, or per connection in connect mode (64)\n"
               "  -t, --time SECS        measured time; hold: how long to hold them all (5)\n"
               "  -w, --warmup SECS      unmeasured time before it, echo and connect (1)\n"
               "  -T, --threads N        threads, echo and connect (1)\n"
               "      --pid PID          the server's process: its CPU time and RSS are reported\n"
               "      --steps N          hold: report after every N connections (all at once)\n"
               "      --sources N        bind to 127.0.0.1 ... 127.0.0.N in turn, for a server in\n"
               "                         127.0.0.0/8 (hold: 8; others: 0, the kernel's choice)\n"
               "      --window N         connections being opened at once (%d)\n"
               "  -h, --help             this text\n"
               "      --version          the version\n"
               "\n"
               "Modes:\n"
               "  echo     C connections with D messages of S bytes in flight each. Latency runs\n"
               "           from a message's first byte sent to its last byte echoed.\n"
               "  connect  C slots, each over and over: connect, send S bytes, read them back,\n"
               "           close with a reset (SO_LINGER 0, so that no TIME_WAIT piles up).\n"
               "           Latency runs from connect() to the last byte echoed.\n"
               "  hold     Opens C idle connections in steps, each answering one echoed byte,\n"
               "           holds them for -t seconds, checks each echoes once more, closes.\n"
               "           Forks holder processes when C passes the open files limit.\n"
               "\n"
               "The last line of output is one line for scripts: \"BENCH\" and key=value fields,\n"
               "\"na\" where a value is unknown (no --pid).\n"
               "  all:      mode host port conns errors\n"
               "  echo, connect: threads size secs requests rps mbps p50_us p99_us p999_us\n"
               "            max_us server_cpu_us_per_req server_cpu_pct server_rss_kib\n"
               "            client_cpu_pct; echo adds depth, connect adds cps (= rps).\n"
               "            A request is one message (echo) or one whole connection (connect);\n"
               "            mbps is 10^6 bytes per second echoed back.\n"
               "  hold:     sources steps secs held verified open_secs open_us_per_conn rss_kib\n"
               "            rss_base_kib rss_per_conn_bytes server_cpu_us_per_conn dropped\n"
               "\n"
               "Exit status: 0 success, 1 failure (errors, a verify mismatch), 2 usage.\n",
               DEFAULT_WINDOW);
}

static int parse_uint(const char *s, unsigned long long min, unsigned long long max, unsigned long long *ret) {
        unsigned long long v;
        char *end;

        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end != '\0')
                return -EINVAL;
        if (v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

static int parse_secs(const char *s, double min, uint64_t *ret) {
        double v;
        char *end;

        if (!s || !*s)
                return -EINVAL;
        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || *end != '\0' || !(v >= min) || v > 86400)
                return -EINVAL;
        *ret = (uint64_t) (v * 1e6 + 0.5);
        return 0;
}

static int usage_error(const char *opt, const char *arg) {
        fprintf(stderr, "tcpd-bench: invalid value for %s: '%s'\nTry 'tcpd-bench --help'.\n", opt, arg);
        return 2;
}

enum {
        OPT_PID = 0x100,
        OPT_STEPS,
        OPT_SOURCES,
        OPT_WINDOW,
        OPT_VERSION,
};

/* Returns -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, struct options *o) {
        static const struct option longopts[] = {
                { "host", required_argument, NULL, 'H' },
                { "port", required_argument, NULL, 'p' },
                { "mode", required_argument, NULL, 'm' },
                { "connections", required_argument, NULL, 'c' },
                { "depth", required_argument, NULL, 'd' },
                { "size", required_argument, NULL, 's' },
                { "time", required_argument, NULL, 't' },
                { "warmup", required_argument, NULL, 'w' },
                { "threads", required_argument, NULL, 'T' },
                { "pid", required_argument, NULL, OPT_PID },
                { "steps", required_argument, NULL, OPT_STEPS },
                { "sources", required_argument, NULL, OPT_SOURCES },
                { "window", required_argument, NULL, OPT_WINDOW },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, OPT_VERSION },
                {},
        };
        unsigned long long v, port = 7788;
        bool conns_set = false, sources_set = false;
        int c;

        *o = (struct options) {
                .mode = MODE_ECHO,
                .host = "127.0.0.1",
                .threads = 1,
                .conns = 50,
                .depth = 1,
                .window = DEFAULT_WINDOW,
                .size = 64,
                .secs_usec = 5 * USEC_PER_SEC,
                .warmup_usec = 1 * USEC_PER_SEC,
        };
        while ((c = getopt_long(argc, argv, "H:p:m:c:d:s:t:w:T:h", longopts, NULL)) >= 0) {
                switch (c) {
                case 'H':
                        o->host = optarg;
                        break;
                case 'p':
                        if (parse_uint(optarg, 1, 65535, &port) < 0)
                                return usage_error("--port", optarg);
                        break;
                case 'm':
                        if (streq(optarg, "echo"))
                                o->mode = MODE_ECHO;
                        else if (streq(optarg, "connect"))
                                o->mode = MODE_CONNECT;
                        else if (streq(optarg, "hold"))
                                o->mode = MODE_HOLD;
                        else
                                return usage_error("--mode", optarg);
                        break;
                case 'c':
                        if (parse_uint(optarg, 1, 10000000, &v) < 0)
                                return usage_error("--connections", optarg);
                        o->conns = (unsigned) v;
                        conns_set = true;
                        break;
                case 'd':
                        if (parse_uint(optarg, 1, 65536, &v) < 0)
                                return usage_error("--depth", optarg);
                        o->depth = (unsigned) v;
                        break;
                case 's':
                        if (parse_uint(optarg, 1, UINT64_C(1) << 40, &v) < 0)
                                return usage_error("--size", optarg);
                        o->size = v;
                        break;
                case 't':
                        if (parse_secs(optarg, 0.001, &o->secs_usec) < 0)
                                return usage_error("--time", optarg);
                        break;
                case 'w':
                        if (parse_secs(optarg, 0, &o->warmup_usec) < 0)
                                return usage_error("--warmup", optarg);
                        break;
                case 'T':
                        if (parse_uint(optarg, 1, 256, &v) < 0)
                                return usage_error("--threads", optarg);
                        o->threads = (unsigned) v;
                        break;
                case OPT_PID:
                        if (parse_uint(optarg, 1, INT32_MAX, &v) < 0)
                                return usage_error("--pid", optarg);
                        o->pid = (pid_t) v;
                        break;
                case OPT_STEPS:
                        if (parse_uint(optarg, 1, 10000000, &v) < 0)
                                return usage_error("--steps", optarg);
                        o->steps = (unsigned) v;
                        break;
                case OPT_SOURCES:
                        if (parse_uint(optarg, 0, 254, &v) < 0)
                                return usage_error("--sources", optarg);
                        o->sources = (unsigned) v;
                        sources_set = true;
                        break;
                case OPT_WINDOW:
                        if (parse_uint(optarg, 1, 100000, &v) < 0)
                                return usage_error("--window", optarg);
                        o->window = (unsigned) v;
                        break;
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case OPT_VERSION:
                        printf("tcpd-bench %s\n", TCPD_VERSION);
                        return EXIT_SUCCESS;
                default:
                        fprintf(stderr, "Try 'tcpd-bench --help'.\n");
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "tcpd-bench: unexpected argument '%s'\nTry 'tcpd-bench --help'.\n", argv[optind]);
                return 2;
        }

        if (inet_pton(AF_INET, o->host, &o->addr.in.sin_addr) == 1) {
                o->addr.in.sin_family = AF_INET;
                o->addr.in.sin_port = htons((uint16_t) port);
                o->loopback4 = (ntohl(o->addr.in.sin_addr.s_addr) >> 24) == 127;
        } else if (inet_pton(AF_INET6, o->host, &o->addr.in6.sin6_addr) == 1) {
                o->addr.in6.sin6_family = AF_INET6;
                o->addr.in6.sin6_port = htons((uint16_t) port);
        } else
                return usage_error("--host (a numeric address)", o->host);

        if (o->mode == MODE_HOLD) {
                if (!conns_set)
                        o->conns = 19000;
                if (!sources_set)
                        o->sources = 8;
        }
        if (o->steps == 0 || o->steps > o->conns)
                o->steps = o->conns;
        if (o->threads > o->conns)
                o->threads = o->conns;
        if (sources_set && o->sources > 0 && !o->loopback4)
                fprintf(stderr, "tcpd-bench: --sources applies to servers in 127.0.0.0/8 only; ignored\n");
        return -1;
}

int main(int argc, char **argv) {
        struct options o;
        rlim_t limit;
        int r;

        r = parse_options(argc, argv, &o);
        if (r >= 0)
                return r;
        /* every send() passes MSG_NOSIGNAL; this is for anything that does not */
        signal(SIGPIPE, SIG_IGN);
        pattern_init();

        if (o.pid > 0) {
                struct server_sample s;

                r = server_sample(o.pid, &s);
                if (r < 0) {
                        fprintf(stderr, "tcpd-bench: cannot read /proc/%d: %s\n", (int) o.pid, strerror(-r));
                        return EXIT_FAILURE;
                }
        }
        if (o.mode == MODE_HOLD)
                return run_hold(&o);

        r = raise_nofile(&limit);
        if (r < 0 || (rlim_t) o.conns + FD_HEADROOM > limit) {
                fprintf(stderr, "tcpd-bench: %u connections need more open files than the limit allows (%llu)\n",
                        o.conns, r < 0 ? 0ULL : (unsigned long long) limit);
                return EXIT_FAILURE;
        }
        return run_load(&o);
}
