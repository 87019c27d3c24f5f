/* The metrics endpoint: GET /metrics over HTTP for Prometheus, served by
 * libmicrohttpd in its external mode, driven from the control plane's
 * sd-event loop (its epoll fd and its timeout), so a scrape runs where
 * GetStatus does, reads the same counters, and never touches a worker.
 * The text is what tcpctl metrics prints (lib/metrics.c). */
#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "metrics.h"
#include "scrape.h"

#define SCRAPE_MAX_CLIENTS 32
#define SCRAPE_TIMEOUT_SEC 10

struct scrape {
        struct tcpd *t;
        struct MHD_Daemon *mhd;
        sd_event_source *io, *timer;
        int fd;
};

static struct ratelimit scrape_rl = RATELIMIT_INIT(10 * 1000 * 1000, 5);

static bool cidrs_match(const struct cidr *list, size_t n, const union sockaddr_in46 *a) {
        for (size_t i = 0; i < n; i++)
                if (cidr_match(&list[i], a))
                        return true;
        return false;
}

/* [metrics] allow and deny, as they are now (a reload changes them). */
static enum MHD_Result on_accept(void *userdata, const struct sockaddr *sa, socklen_t len) {
        struct scrape *s = userdata;
        const struct config *c = s->t->config;
        union sockaddr_in46 peer = { 0 };
        char host[ADDR_STRLEN];
        unsigned suppressed;

        if (len > sizeof(peer) || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
                return MHD_NO;
        memcpy(&peer, sa, len);
        addr_normalize(&peer);
        if (cidrs_match(c->metrics_deny, c->n_metrics_deny, &peer) ||
            !cidrs_match(c->metrics_allow, c->n_metrics_allow, &peer)) {
                if (ratelimit_pass(&scrape_rl, now_usec(CLOCK_MONOTONIC), &suppressed))
                        log_notice("metrics: refused a scrape from %s ([metrics] allow and deny)%s",
                                   addr_format(&peer, host, sizeof(host)),
                                   suppressed ? " (some before this were not logged)" : "");
                return MHD_NO;
        }
        return MHD_YES;
}

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned code, const char *type, char *body,
                               size_t len) {
        struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        enum MHD_Result ok;

        if (!r) {
                free(body);
                return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
                MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
        ok = MHD_queue_response(conn, code, r);
        MHD_destroy_response(r);
        return ok;
}

static enum MHD_Result on_request(void *userdata, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state) {
        struct scrape *s = userdata;
        const char *accept;
        char *body = NULL;
        size_t len = 0;
        bool om;
        json_t *st;
        FILE *f;

        if (!streq(method, MHD_HTTP_METHOD_GET) && !streq(method, MHD_HTTP_METHOD_HEAD))
                return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8",
                               strdup("only GET and HEAD\n"), strlen("only GET and HEAD\n"));
        if (!streq(url, "/metrics"))
                return respond(conn, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8",
                               strdup("tcpd serves /metrics only\n"), strlen("tcpd serves /metrics only\n"));
        /* OpenMetrics when the scraper asks for it (Prometheus does) */
        accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
        om = accept && strstr(accept, "application/openmetrics-text");
        st = control_status(s->t);
        f = st ? open_memstream(&body, &len) : NULL;
        if (!f) {
                json_decref(st);
                return MHD_NO;
        }
        metrics_print(f, st, om);
        json_decref(st);
        if (fclose(f) != 0) {
                free(body);
                return MHD_NO;
        }
        return respond(conn, MHD_HTTP_OK,
                       om ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                          : "text/plain; version=0.0.4; charset=utf-8",
                       body, len);
}

static void scrape_arm(struct scrape *s);

static void scrape_run(struct scrape *s) {
        unsigned suppressed;

        if (MHD_run(s->mhd) != MHD_YES && ratelimit_pass(&scrape_rl, now_usec(CLOCK_MONOTONIC), &suppressed))
                log_warning("metrics: the HTTP server reported an error");
        scrape_arm(s);
}

static int on_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        scrape_run(userdata);
        return 0;
}

static int on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        scrape_run(userdata);
        return 0;
}

/* libmicrohttpd's next timeout (idle clients it drops), as a timer. */
static void scrape_arm(struct scrape *s) {
        MHD_UNSIGNED_LONG_LONG ms;

        if (MHD_get_timeout(s->mhd, &ms) != MHD_YES) {
                (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time_relative(s->timer, ms * 1000);
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

/* The listening socket of [metrics] listen = ADDRESS. */
static int scrape_bind(const struct config *c) {
        static const int one = 1;
        int fd = socket(c->metrics_addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return -errno;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (c->metrics_addr.sa.sa_family == AF_INET6) {
                int v6only = !c->metrics_any;
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
        }
        if (bind(fd, &c->metrics_addr.sa, addr_len(&c->metrics_addr)) < 0 || listen(fd, 16) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

int scrape_open(struct tcpd *t, int fd, struct scrape **ret) {
        struct scrape *s;
        const union MHD_DaemonInfo *info;
        union sockaddr_in46 a;
        socklen_t alen = sizeof(a);
        char where[ADDR_STRLEN];
        int r;

        *ret = NULL;
        if (fd < 0 && !t->config->metrics_set)
                return 0; /* off */
        if (fd < 0) {
                fd = scrape_bind(t->config);
                if (fd < 0)
                        return log_error_errno(fd, "cannot listen for metrics on %s ([metrics] listen)",
                                               t->config->metrics_listen);
        }
        s = calloc(1, sizeof(*s));
        if (!s) {
                close(fd);
                return log_error_errno(-ENOMEM, "cannot set up the metrics endpoint");
        }
        s->t = t;
        s->fd = fd;
        s->mhd = MHD_start_daemon(MHD_USE_EPOLL, 0, on_accept, s, on_request, s,
                                  MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
                                  (unsigned) SCRAPE_MAX_CLIENTS, MHD_OPTION_CONNECTION_TIMEOUT,
                                  (unsigned) SCRAPE_TIMEOUT_SEC, MHD_OPTION_END);
        if (!s->mhd) {
                scrape_free(s);
                return log_error_errno(-EIO, "cannot start the metrics endpoint (libmicrohttpd)");
        }
        s->fd = -1; /* libmicrohttpd's now: MHD_stop_daemon() closes it */
        info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info) {
                scrape_free(s);
                return log_error_errno(-EIO, "the metrics endpoint has no epoll descriptor");
        }
        r = sd_event_add_io(t->event, &s->io, info->epoll_fd, EPOLLIN, on_io, s);
        if (r >= 0)
                r = sd_event_add_time_relative(t->event, &s->timer, CLOCK_MONOTONIC, UINT64_MAX / 2, 0, on_timer, s);
        if (r < 0) {
                scrape_free(s);
                return log_error_errno(r, "cannot watch the metrics endpoint");
        }
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        if (getsockname(fd, &a.sa, &alen) == 0) {
                addr_normalize(&a);
                addr_format(&a, where, sizeof(where));
                free(t->metrics_address);
                t->metrics_address = strdup(where);
                log_info("metrics on http://%s/metrics%s", where, t->config->metrics_set ? "" : " (from systemd)");
        }
        *ret = s;
        return 0;
}

struct scrape *scrape_free(struct scrape *s) {
        if (!s)
                return NULL;
        s->io = sd_event_source_disable_unref(s->io);
        s->timer = sd_event_source_disable_unref(s->timer);
        if (s->mhd)
                MHD_stop_daemon(s->mhd);
        if (s->fd >= 0)
                close(s->fd);
        free(s);
        return NULL;
}
