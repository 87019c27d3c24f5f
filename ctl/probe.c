/* tcpctl probe: connect to an echo service, send numbered messages, check
 * that each comes back byte for byte, time it, and sum up like ping. */
#include <jansson.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include "addr.h"
#include "probe.h"
#include "units.h"
#include "util.h"

int probe_parse_target(const char *s, char *host, size_t n, uint16_t *port) {
        const char *h = s ? s : "", *p = NULL;
        size_t len;
        uint64_t v = PROBE_DEFAULT_PORT;

        if (*h == '[') {
                const char *close = strchr(h, ']');

                if (!close || close == h + 1)
                        return -EINVAL;
                if (close[1] == ':')
                        p = close + 2;
                else if (close[1])
                        return -EINVAL;
                len = (size_t) (close - h - 1);
                h++;
        } else {
                const char *colon = strchr(h, ':');

                if (colon && !strchr(colon + 1, ':')) {
                        len = (size_t) (colon - h);
                        p = colon + 1;
                } else
                        len = strlen(h); /* no port, or a bare IPv6 address */
        }
        if (p && (parse_uint(p, 65535, &v) < 0 || v == 0))
                return -EINVAL;
        if (len == 0) {
                h = PROBE_DEFAULT_HOST;
                len = strlen(h);
        }
        if (len >= n || memchr(h, '[', len) || memchr(h, ']', len))
                return -EINVAL;
        memcpy(host, h, len);
        host[len] = 0;
        *port = (uint16_t) v;
        return 0;
}

void probe_message(uint64_t seq, char *buf, size_t size) {
        char head[32];
        int w = snprintf(head, sizeof(head), "seq=%llu ", (unsigned long long) seq);

        for (size_t i = 0; i < size; i++)
                buf[i] = i < (size_t) w ? head[i] : (char) ('a' + (seq + i) % 26);
        /* a line, so that a server or a capture that works on lines shows one each */
        if (size)
                buf[size - 1] = '\n';
}

int probe_message_seq(const char *buf, size_t n, uint64_t *seq) {
        const char *space;
        char digits[24];
        size_t len;

        if (n < 6 || memcmp(buf, "seq=", 4) != 0)
                return -EINVAL;
        space = memchr(buf + 4, ' ', n - 4);
        if (!space)
                return -EINVAL;
        len = (size_t) (space - buf - 4);
        if (len == 0 || len >= sizeof(digits))
                return -EINVAL;
        memcpy(digits, buf + 4, len);
        digits[len] = 0;
        return parse_uint(digits, UINT64_MAX, seq);
}

enum probe_result {
        PROBE_OK,
        PROBE_MISMATCH,
        PROBE_TIMEOUT,
        PROBE_CLOSED,
        PROBE_ERROR,
        PROBE_NO_CONNECTION,
        PROBE_INTERRUPTED,
};

/* What --json calls each outcome. */
static const char *const result_names[] = {
        [PROBE_OK] = "ok",         [PROBE_MISMATCH] = "mismatch", [PROBE_TIMEOUT] = "timeout",
        [PROBE_CLOSED] = "closed", [PROBE_ERROR] = "error",       [PROBE_NO_CONNECTION] = "no-connection",
};

void probe_stats_add(struct probe_stats *s, bool verified, uint64_t rtt_usec) {
        double delta;

        s->sent++;
        if (!verified)
                return;
        s->verified++;
        if (s->verified == 1 || rtt_usec < s->min_usec)
                s->min_usec = rtt_usec;
        if (rtt_usec > s->max_usec)
                s->max_usec = rtt_usec;
        /* Welford: no sum of squares to overflow or to lose precision in */
        delta = (double) rtt_usec - s->mean_usec;
        s->mean_usec += delta / (double) s->verified;
        s->m2 += delta * ((double) rtt_usec - s->mean_usec);
}

uint64_t probe_stats_lost(const struct probe_stats *s) {
        return s->sent - s->verified;
}

unsigned probe_stats_loss_percent(const struct probe_stats *s) {
        if (s->sent == 0)
                return 0;
        return (unsigned) ((probe_stats_lost(s) * 100 + s->sent - 1) / s->sent);
}

double probe_stats_mdev_usec(const struct probe_stats *s) {
        return s->verified ? sqrt(s->m2 / (double) s->verified) : 0;
}

const char *probe_format_rtt(uint64_t usec, char *buf, size_t n) {
        snprintf(buf, n, "%llu.%03llu", (unsigned long long) (usec / 1000), (unsigned long long) (usec % 1000));
        return buf;
}

/* ---- the I/O ---- */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
        interrupted = sig;
}

struct probe {
        const struct probe_options *o;
        const char *target; /* for people: what the user typed, or the default */
        union sockaddr_in46 addr;
        char addr_str[ADDR_STRLEN];
        int fd;
        char *msg, *echo;
        /* SIGINT and SIGTERM are blocked but while waiting: a signal then ends
         * the wait it arrives in instead of slipping in between a check of
         * the flag and a wait that would not notice it */
        sigset_t waitmask;
        struct probe_stats stats;
};

/* Waits until fd has one of events (or only until deadline when fd < 0).
 * Returns the events, 0 at the deadline, or -EINTR on SIGINT or SIGTERM. */
static int wait_until(struct probe *p, int fd, short events, uint64_t deadline) {
        for (;;) {
                struct pollfd pfd = { .fd = fd, .events = events };
                uint64_t now = now_usec(CLOCK_MONOTONIC), left;
                struct timespec ts;
                int r;

                if (interrupted)
                        return -EINTR;
                if (now >= deadline)
                        return 0;
                left = deadline - now;
                ts = (struct timespec) { .tv_sec = (time_t) (left / USEC_PER_SEC),
                                         .tv_nsec = (long) (left % USEC_PER_SEC * 1000) };
                r = ppoll(fd >= 0 ? &pfd : NULL, fd >= 0 ? 1 : 0, &ts, &p->waitmask);
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (r > 0)
                        return pfd.revents;
        }
}

/* Connects to a within the timeout. Returns the socket, or -errno
 * (-ETIMEDOUT when the time ran out, -EINTR on a signal). */
static int connect_to(struct probe *p, const union sockaddr_in46 *a, uint64_t *elapsed) {
        uint64_t start = now_usec(CLOCK_MONOTONIC);
        _cleanup_close_ int fd = -1;
        int one = 1, err = 0, r;
        socklen_t len = sizeof(err);

        fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP);
        if (fd < 0)
                return -errno;
        /* Every message leaves at once: the time is the service's, not
         * Nagle's algorithm waiting for an acknowledgement. */
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, &a->sa, addr_len(a)) < 0) {
                if (errno != EINPROGRESS)
                        return -errno;
                r = wait_until(p, fd, POLLOUT, start + p->o->timeout_usec);
                if (r < 0)
                        return r;
                if (r == 0)
                        return -ETIMEDOUT;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        return -errno;
                if (err)
                        return -err;
        }
        *elapsed = now_usec(CLOCK_MONOTONIC) - start;
        return TAKE_FD(fd);
}

struct outcome {
        enum probe_result result;
        uint64_t rtt_usec;
        size_t got; /* bytes that came back */
        size_t at;  /* where they differ, for PROBE_MISMATCH */
        int error;  /* errno, for PROBE_ERROR and PROBE_NO_CONNECTION */
};

/* One message out and its echo back, checked as it arrives. Sending and
 * receiving interleave: a message larger than the socket buffers would
 * otherwise wait on an echo that waits on us to read. */
static void echo_once(struct probe *p, uint64_t seq, struct outcome *out) {
        size_t size = p->o->size, sent = 0;
        uint64_t start = now_usec(CLOCK_MONOTONIC), deadline = start + p->o->timeout_usec;

        probe_message(seq, p->msg, size);
        out->got = 0;
        while (out->got < size) {
                int r = wait_until(p, p->fd, POLLIN | (sent < size ? POLLOUT : 0), deadline);

                if (r == -EINTR) {
                        out->result = PROBE_INTERRUPTED;
                        return;
                }
                if (r <= 0) {
                        out->result = r == 0 ? PROBE_TIMEOUT : PROBE_ERROR;
                        out->error = -r;
                        return;
                }
                /* receive first: a server that closed has said why we cannot send */
                if (r & (POLLIN | POLLHUP | POLLERR)) {
                        ssize_t n = recv(p->fd, p->echo + out->got, size - out->got, 0);

                        if (n < 0 && errno != EAGAIN && errno != EINTR) {
                                out->result = PROBE_ERROR;
                                out->error = errno;
                                return;
                        }
                        if (n == 0) {
                                out->result = PROBE_CLOSED;
                                return;
                        }
                        for (ssize_t i = 0; i < n; i++, out->got++)
                                if (p->echo[out->got] != p->msg[out->got]) {
                                        out->result = PROBE_MISMATCH;
                                        out->at = out->got;
                                        out->got += (size_t) (n - i);
                                        return;
                                }
                }
                if ((r & POLLOUT) && sent < size) {
                        ssize_t w = send(p->fd, p->msg + sent, size - sent, MSG_NOSIGNAL);

                        if (w < 0 && errno != EAGAIN && errno != EINTR) {
                                out->result = PROBE_ERROR;
                                out->error = errno;
                                return;
                        }
                        if (w > 0)
                                sent += (size_t) w;
                }
        }
        out->rtt_usec = now_usec(CLOCK_MONOTONIC) - start;
        out->result = PROBE_OK;
}

static void print_json(json_t *v) {
        json_dumpf(v, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(v);
}

static void report_connect(struct probe *p, uint64_t elapsed, bool first) {
        char size[32], ms[32];

        if (p->o->json && p->o->quiet)
                return;
        if (p->o->json) {
                print_json(json_pack("{s:s,s:s,s:s,s:I}", "type", "connect", "target", p->target, "address",
                                     p->addr_str, "time_usec", (json_int_t) elapsed));
                return;
        }
        if (!first)
                return; /* reconnecting is what the next echo's line shows */
        format_size(p->o->size, size, sizeof(size));
        if (streq(p->target, p->addr_str))
                printf("PROBE %s: %s messages, connected in %s ms\n", p->target, size,
                       probe_format_rtt(elapsed, ms, sizeof(ms)));
        else
                printf("PROBE %s (%s): %s messages, connected in %s ms\n", p->target, p->addr_str, size,
                       probe_format_rtt(elapsed, ms, sizeof(ms)));
}

/* ping -D: "[1733370000.123456] " before a line */
static void print_timestamp(const struct probe *p) {
        uint64_t now;

        if (!p->o->timestamps)
                return;
        now = now_usec(CLOCK_REALTIME);
        printf("[%llu.%06llu] ", (unsigned long long) (now / USEC_PER_SEC), (unsigned long long) (now % USEC_PER_SEC));
}

static void report_echo(struct probe *p, uint64_t seq, const struct outcome *out) {
        char why[256], size[32], ms[32], dur[64];
        uint64_t other;

        if (p->o->quiet)
                return;
        switch (out->result) {
        case PROBE_OK:
                why[0] = 0;
                break;
        case PROBE_MISMATCH:
                if (probe_message_seq(p->echo, out->got, &other) == 0 && other != seq)
                        snprintf(why, sizeof(why), "echo differs from what was sent at byte %zu of %zu: it is the echo of seq=%llu",
                                 out->at, p->o->size, (unsigned long long) other);
                else
                        snprintf(why, sizeof(why), "echo differs from what was sent at byte %zu of %zu", out->at,
                                 p->o->size);
                break;
        case PROBE_TIMEOUT:
                snprintf(why, sizeof(why), "no echo within %s (%zu of %zu bytes came back)",
                         format_duration(p->o->timeout_usec, dur, sizeof(dur)), out->got, p->o->size);
                break;
        case PROBE_CLOSED:
                snprintf(why, sizeof(why), "%s closed the connection after %zu of %zu bytes", p->addr_str, out->got,
                         p->o->size);
                break;
        case PROBE_ERROR:
                snprintf(why, sizeof(why), "%s: %s", p->addr_str, strerror(out->error));
                break;
        case PROBE_NO_CONNECTION:
                snprintf(why, sizeof(why), "cannot connect to %s: %s", p->addr_str, strerror(out->error));
                break;
        case PROBE_INTERRUPTED:
                return;
        }
        if (p->o->json) {
                json_t *v = json_pack("{s:s,s:I,s:s,s:I,s:s}", "type", "echo", "seq", (json_int_t) seq, "address",
                                      p->addr_str, "bytes", (json_int_t) p->o->size, "result",
                                      result_names[out->result]);
                if (out->result == PROBE_OK)
                        json_object_set_new(v, "rtt_usec", json_integer((json_int_t) out->rtt_usec));
                else
                        json_object_set_new(v, "message", json_string(why));
                if (p->o->timestamps)
                        json_object_set_new(v, "time_usec", json_integer((json_int_t) now_usec(CLOCK_REALTIME)));
                print_json(v);
        } else {
                print_timestamp(p);
                if (out->result == PROBE_OK)
                        printf("%s from %s: seq=%llu time=%s ms\n", format_size(p->o->size, size, sizeof(size)),
                               p->addr_str, (unsigned long long) seq, probe_format_rtt(out->rtt_usec, ms, sizeof(ms)));
                else
                        printf("%sseq=%llu: %s%s\n", p->o->term.color ? ANSI_RED : "", (unsigned long long) seq, why,
                               p->o->term.color ? ANSI_NORMAL : "");
        }
        /* one line per echo, as it happens, also into a pipe */
        fflush(stdout);
}

static void report_summary(struct probe *p, uint64_t elapsed) {
        const struct probe_stats *s = &p->stats;
        char dur[64], lo[32], avg[32], hi[32], mdev[32], differed[64] = "";

        if (p->o->json) {
                json_t *v = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I}", "type", "summary", "target", p->target,
                                      "address", p->addr_str, "sent", (json_int_t) s->sent, "verified",
                                      (json_int_t) s->verified, "lost", (json_int_t) probe_stats_lost(s),
                                      "mismatched", (json_int_t) s->mismatched, "time_usec", (json_int_t) elapsed);
                if (s->verified) {
                        json_object_set_new(v, "rtt_min_usec", json_integer((json_int_t) s->min_usec));
                        json_object_set_new(v, "rtt_avg_usec", json_integer((json_int_t) llround(s->mean_usec)));
                        json_object_set_new(v, "rtt_max_usec", json_integer((json_int_t) s->max_usec));
                        json_object_set_new(v, "rtt_mdev_usec",
                                            json_integer((json_int_t) llround(probe_stats_mdev_usec(s))));
                }
                print_json(v);
                fflush(stdout);
                return;
        }
        if (s->mismatched)
                snprintf(differed, sizeof(differed), " (%llu differed)", (unsigned long long) s->mismatched);
        printf("\n%s--- %s probe statistics ---%s\n", p->o->term.color ? ANSI_BOLD : "", p->target,
               p->o->term.color ? ANSI_NORMAL : "");
        printf("%llu sent, %llu verified, %llu lost%s, %u%% loss, time %s\n", (unsigned long long) s->sent,
               (unsigned long long) s->verified, (unsigned long long) probe_stats_lost(s), differed,
               probe_stats_loss_percent(s), format_duration(elapsed, dur, sizeof(dur)));
        if (s->verified)
                printf("rtt min/avg/max/mdev = %s/%s/%s/%s ms\n", probe_format_rtt(s->min_usec, lo, sizeof(lo)),
                       probe_format_rtt((uint64_t) llround(s->mean_usec), avg, sizeof(avg)),
                       probe_format_rtt(s->max_usec, hi, sizeof(hi)),
                       probe_format_rtt((uint64_t) llround(probe_stats_mdev_usec(s)), mdev, sizeof(mdev)));
        fflush(stdout);
}

/* Resolves host, numeric or a name. Returns 0, or an exit status after
 * saying what failed. */
static int resolve(const char *host, uint16_t port, struct addrinfo **res) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP, .ai_flags = AI_NUMERICSERV };
        char service[8];
        int r;

        snprintf(service, sizeof(service), "%u", port);
        /* the user typed a name: only here does tcpctl ask a resolver */
        r = getaddrinfo(host, service, &hints, res);
        if (r != 0) {
                term_error("cannot resolve %s: %s", host, r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
                return EXIT_FAILURE;
        }
        return 0;
}

/* The first connection tries every address of the name, in the resolver's
 * order, and the probe then stays with the one that answered, so that the
 * times compare. Returns 0, or an exit status after saying what failed. */
static int connect_first(struct probe *p, const struct addrinfo *res) {
        char tried[512] = "";
        size_t off = 0, room;
        int r;

        for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                uint64_t elapsed = 0;

                if (ai->ai_addrlen > sizeof(p->addr) || (ai->ai_family != AF_INET && ai->ai_family != AF_INET6))
                        continue;
                memset(&p->addr, 0, sizeof(p->addr));
                memcpy(&p->addr, ai->ai_addr, ai->ai_addrlen);
                addr_format(&p->addr, p->addr_str, sizeof(p->addr_str));
                r = connect_to(p, &p->addr, &elapsed);
                if (r >= 0) {
                        p->fd = r;
                        report_connect(p, elapsed, true);
                        return 0;
                }
                if (r == -EINTR)
                        return EXIT_FAILURE;
                room = sizeof(tried) - off;
                r = snprintf(tried + off, room, "%s%s: %s", off ? "; " : "", p->addr_str, strerror(-r));
                if (r > 0)
                        off = (size_t) r < room ? off + (size_t) r : sizeof(tried) - 1;
        }
        term_error("cannot connect to %s", tried[0] ? tried : p->target);
        return EXIT_FAILURE;
}

int probe_run(const struct probe_options *o) {
        struct sigaction sa = { .sa_handler = on_signal }; /* no SA_RESTART: a signal ends the wait */
        _cleanup_free_ char *msg = malloc(o->size), *echo = malloc(o->size);
        struct probe p = { .o = o, .fd = -1, .target = o->target ? o->target : PROBE_DEFAULT_TARGET };
        struct addrinfo *res = NULL;
        uint64_t start, last = 0;
        sigset_t block, old;
        int r;

        if (!msg || !echo) {
                term_error("out of memory");
                return EXIT_FAILURE;
        }
        p.msg = msg;
        p.echo = echo;
        /* before SIGINT is blocked: a resolver that hangs can be interrupted */
        r = resolve(o->host, o->port, &res);
        if (r)
                return r;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        sigprocmask(SIG_BLOCK, &block, &old);
        p.waitmask = old;
        sigdelset(&p.waitmask, SIGINT);
        sigdelset(&p.waitmask, SIGTERM);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);

        start = now_usec(CLOCK_MONOTONIC);
        r = connect_first(&p, res);
        freeaddrinfo(res);
        if (r && interrupted) {
                sigprocmask(SIG_SETMASK, &old, NULL);
                return r;
        }
        if (r) {
                /* as ping to a host that does not answer: the first echo is
                 * lost, the next ones try again, and the summary says so */
                probe_stats_add(&p.stats, false, 0);
                last = start;
        }
        for (uint64_t seq = r ? 2 : 1; o->count == 0 || seq <= o->count; seq++) {
                struct outcome out = { 0 };
                uint64_t elapsed = 0, next = last + o->interval_usec;

                if (o->deadline_usec && next > start + o->deadline_usec)
                        next = start + o->deadline_usec;
                /* like ping: one message per interval, counted from the last
                 * one's start, or at once when that echo took longer */
                if (seq > 1 && wait_until(&p, -1, 0, next) < 0)
                        break;
                last = now_usec(CLOCK_MONOTONIC);
                if (o->deadline_usec && last - start >= o->deadline_usec)
                        break; /* ping -w: the run's time is up */
                /* after a failure the old stream may still deliver stale bytes: start a new one */
                if (p.fd < 0) {
                        r = connect_to(&p, &p.addr, &elapsed);
                        if (r == -EINTR)
                                break;
                        if (r < 0) {
                                out = (struct outcome) { .result = PROBE_NO_CONNECTION, .error = -r };
                                report_echo(&p, seq, &out);
                                probe_stats_add(&p.stats, false, 0);
                                continue;
                        }
                        p.fd = r;
                        report_connect(&p, elapsed, false);
                }
                echo_once(&p, seq, &out);
                /* an echo cut short by ^C is neither sent nor lost: the user stopped it */
                if (out.result == PROBE_INTERRUPTED)
                        break;
                report_echo(&p, seq, &out);
                probe_stats_add(&p.stats, out.result == PROBE_OK, out.rtt_usec);
                if (out.result == PROBE_MISMATCH)
                        p.stats.mismatched++;
                if (out.result != PROBE_OK) {
                        close(p.fd);
                        p.fd = -1;
                }
        }
        report_summary(&p, now_usec(CLOCK_MONOTONIC) - start);
        if (p.fd >= 0)
                close(p.fd);
        sigprocmask(SIG_SETMASK, &old, NULL);
        return p.stats.sent > 0 && p.stats.verified == p.stats.sent ? EXIT_SUCCESS : EXIT_FAILURE;
}
