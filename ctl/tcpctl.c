/* tcpctl: the admin's tool for tcpd. A table of commands, each a Varlink
 * call on tcpd's control socket (but probe, which is a client of the echo
 * service itself); tables for people, --json for scripts. */
#include <getopt.h>
#include <stdarg.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include "addr.h"
#include "format.h"
#include "probe.h"
#include "tcpd-build.h"
#include "tcpd/protocol.h"
#include "unitjob.h"
#include "units.h"
#include "util.h"
#include "varlink.h"

#define EXIT_USAGE 2
#define CALL_TIMEOUT_SEC 30

/* tcpctl monitor runs until Ctrl-C (or SIGTERM): then it ends cleanly. */
static volatile sig_atomic_t stop_requested;
#define EXIT_STOPPED 100 /* internal: a signal ended a wait */
/* A monitor waits for events as long as it takes. */
static bool call_no_timeout;

static void on_stop_signal(int sig) {
        stop_requested = 1;
}

/* Replies may be larger than calls: one connection each, but be generous. */
#define REPLY_MAX (16 * 1024 * 1024)

static const char *arg_socket;
static bool arg_json;
static struct term arg_term;

struct ctl {
        int fd;
        struct vl_buf in;
};

_printf_(1, 2) static int fail(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        term_verror(fmt, ap);
        va_end(ap);
        return EXIT_FAILURE;
}

_printf_(1, 2) static int usage_error(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        term_verror(fmt, ap);
        va_end(ap);
        fputs("Try 'tcpctl --help'.\n", stderr);
        return EXIT_USAGE;
}

static int ctl_connect(struct ctl *c) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = CALL_TIMEOUT_SEC };

        if (strlen(arg_socket) >= sizeof(sa.sun_path))
                return fail("socket path too long: %s", arg_socket);
        strcpy(sa.sun_path, arg_socket);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return fail("cannot create a socket: %m");
        if (!call_no_timeout)
                (void) setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        (void) setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(c->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                if (errno == EACCES || errno == EPERM)
                        return fail("cannot connect to %s: %m; it is open to root and tcpd's admin group "
                                    "(see control_socket_mode in tcpd.ini(5))",
                                    arg_socket);
                return fail("cannot connect to %s: %m; is tcpd running?", arg_socket);
        }
        return 0;
}

static void ctl_close(struct ctl *c) {
        if (c->fd >= 0)
                close(c->fd);
        vl_buf_free(&c->in);
}

static int send_all(int fd, const char *p, size_t n) {
        while (n) {
                ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                p += w;
                n -= (size_t) w;
        }
        return 0;
}

/* Reads one reply. Returns 0, or an exit code after saying what failed. */
static int read_reply(struct ctl *c, struct vl_reply *reply) {
        for (;;) {
                char *frame, *dst;
                size_t len;
                ssize_t n;
                int r = vl_frame_next(&c->in, REPLY_MAX, &frame, &len);

                if (r < 0)
                        return fail("reply from tcpd is too large");
                if (r > 0) {
                        if (vl_reply_parse(frame, len, reply) < 0)
                                return fail("tcpd sent a reply that is not Varlink JSON");
                        return 0;
                }
                dst = vl_buf_reserve(&c->in, 64 * 1024);
                if (!dst)
                        return fail("out of memory");
                if (call_no_timeout) {
                        /* a signal between a check and recv() would be
                         * missed: wait in short steps instead */
                        struct pollfd p = { .fd = c->fd, .events = POLLIN };
                        if (stop_requested)
                                return EXIT_STOPPED;
                        if (poll(&p, 1, 200) <= 0)
                                continue;
                }
                n = recv(c->fd, dst, 64 * 1024, 0);
                if (n < 0 && errno == EINTR && stop_requested)
                        return EXIT_STOPPED;
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        return fail("no answer from tcpd on %s within %d s", arg_socket, CALL_TIMEOUT_SEC);
                if (n < 0)
                        return fail("cannot read from %s: %m", arg_socket);
                if (n == 0)
                        return fail("tcpd closed the control connection without an answer");
                vl_buf_commit(&c->in, (size_t) n);
        }
}

static int report_error(const char *method, struct vl_reply *reply) {
        _cleanup_free_ char *params = json_dumps(reply->params, JSON_COMPACT);
        const char *msg = json_string_value(json_object_get(reply->params, "message"));

        if (streq(reply->error, VARLINK_ERROR_PERMISSION_DENIED))
                return fail("permission denied: this needs root or membership of tcpd's admin group");
        if (streq(reply->error, TCPD_ERROR_SHUTTING_DOWN))
                return fail("tcpd is shutting down");
        if (streq(reply->error, TCPD_ERROR_RELOAD_FAILED))
                return fail("reload failed: %s", msg ? msg : "see the daemon's log");
        if (streq(reply->error, VARLINK_ERROR_METHOD_NOT_FOUND) ||
            streq(reply->error, VARLINK_ERROR_INTERFACE_NOT_FOUND))
                return fail("tcpd does not know %s: is it an older version?", method);
        return fail("%s failed: %s %s", method, reply->error, params ? params : "");
}

typedef int (*reply_fn)(json_t *params, void *userdata);

/* Sends one call and hands every reply's parameters to fn (several when
 * more is set). Returns an exit code. */
static int call(const char *method, json_t *params, bool more, reply_fn fn, void *userdata) {
        struct ctl c = { .fd = -1 };
        struct vl_buf out = { 0 };
        int r;

        r = ctl_connect(&c);
        if (r) {
                json_decref(params);
                ctl_close(&c);
                return r;
        }
        if (vl_put_call(&out, method, params, more) < 0) {
                ctl_close(&c);
                return fail("out of memory");
        }
        r = send_all(c.fd, out.data + out.start, vl_buf_pending(&out));
        vl_buf_free(&out);
        if (r < 0) {
                ctl_close(&c);
                return fail("cannot send to %s: %s", arg_socket, strerror(-r));
        }
        for (;;) {
                struct vl_reply reply;
                bool continues;

                r = read_reply(&c, &reply);
                if (r)
                        break;
                if (reply.error) {
                        r = report_error(method, &reply);
                        vl_reply_done(&reply);
                        break;
                }
                continues = reply.continues;
                r = fn(reply.params, userdata);
                vl_reply_done(&reply);
                if (r || !continues)
                        break;
        }
        ctl_close(&c);
        return r;
}

/* ---- commands ---- */

static int print_status(json_t *params, void *userdata) {
        if (arg_json)
                format_json(stdout, params);
        else
                format_status(stdout, params);
        return 0;
}

static int cmd_status(int argc, char **argv) {
        if (argc > 1)
                return usage_error("status takes no arguments");
        return call(TCPD_METHOD_GET_STATUS, NULL, false, print_status, NULL);
}

struct list_out {
        struct conn_table *table; /* NULL with --json unsorted: printed as they come */
        bool json;
        size_t n;
};

static int collect_connection(json_t *params, void *userdata) {
        struct list_out *out = userdata;
        json_t *conn = json_object_get(params, "connection");

        if (!conn)
                return 0;
        if (!out->table)
                format_json_element(stdout, conn, out->n == 0);
        else if (conn_table_add(out->table, conn, out->json) < 0)
                return fail("out of memory");
        out->n++;
        return 0;
}

/* --peer CIDR, checked here so a typo is a usage error, not a round trip. */
static int add_peer(json_t *params, const char *arg) {
        struct cidr cidr;

        if (cidr_parse(arg, &cidr) < 0)
                return usage_error("--peer: '%s' is not an address or CIDR prefix", arg);
        json_object_set_new(params, "peer", json_string(arg));
        return 0;
}

enum {
        OPT_SERVICE = 0x100,
        OPT_IDLE_OVER,
        OPT_OLDER_THAN,
        OPT_SORT,
        OPT_RESET,
};

#define SELECT_OPTIONS                                                                                     \
        { "peer", required_argument, NULL, 'p' }, { "service", required_argument, NULL, OPT_SERVICE },     \
                { "idle-over", required_argument, NULL, OPT_IDLE_OVER },                                    \
                { "older-than", required_argument, NULL, OPT_OLDER_THAN }

/* The selection list and kick share (every option given must hold).
 * Returns 1 when c was one of them, 0 when not, EXIT_USAGE on a bad value. */
static int add_selection(json_t *params, int c, const char *arg) {
        uint64_t usec;

        switch (c) {
        case 'p':
                return add_peer(params, arg) ? EXIT_USAGE : 1;
        case OPT_SERVICE:
                if (!*arg || strspn(arg, "abcdefghijklmnopqrstuvwxyz0123456789-_") != strlen(arg))
                        return usage_error("--service: '%s' is not a service name (such as echo)", arg);
                json_object_set_new(params, "service", json_string(arg));
                return 1;
        case OPT_IDLE_OVER:
        case OPT_OLDER_THAN:
                if (parse_duration(arg, &usec) < 0 || usec == 0 || usec > INT64_MAX)
                        return usage_error("--%s: '%s' is not a duration above 0, such as 90s or 10min",
                                           c == OPT_IDLE_OVER ? "idle-over" : "older-than", arg);
                json_object_set_new(params, c == OPT_IDLE_OVER ? "idle_over_usec" : "older_than_usec",
                                    json_integer((json_int_t) usec));
                return 1;
        default:
                return 0;
        }
}

static int cmd_list(int argc, char **argv) {
        static const struct option options[] = {
                SELECT_OPTIONS,
                { "sort", required_argument, NULL, OPT_SORT },
                { "tcp-info", no_argument, NULL, 'i' },
                {},
        };
        json_t *params = json_object();
        struct list_out out = {};
        const char *sort = NULL;
        int c, r;

        optind = 1;
        while ((c = getopt_long(argc, argv, "+p:i", options, NULL)) >= 0) {
                r = add_selection(params, c, optarg);
                if (r == 1)
                        continue;
                if (c == 'i') {
                        json_object_set_new(params, "tcp_info", json_true());
                        continue;
                }
                if (r == EXIT_USAGE) {
                        json_decref(params);
                        return EXIT_USAGE;
                }
                if (c == OPT_SORT && conn_sort_key(optarg) >= 0) {
                        sort = optarg;
                        if (conn_sort_key(optarg) == SORT_RTT) /* needs TCP_INFO */
                                json_object_set_new(params, "tcp_info", json_true());
                        continue;
                }
                json_decref(params);
                if (c == OPT_SORT)
                        return usage_error("list: --sort: '%s' is not one of id, age, idle, in, out, peer, rtt",
                                           optarg);
                return usage_error("list: unknown option");
        }
        if (optind < argc) {
                json_decref(params);
                return usage_error("list: unexpected argument '%s'", argv[optind]);
        }
        /* sorted output needs every row first; otherwise --json streams */
        if ((!arg_json || sort) && !(out.table = conn_table_new())) {
                json_decref(params);
                return fail("out of memory");
        }
        out.json = arg_json;
        r = call(TCPD_METHOD_LIST_CONNECTIONS, params, true, collect_connection, &out);
        if (sort && out.table)
                conn_table_sort(out.table, conn_sort_key(sort));
        if (arg_json && out.table) {
                if (r == 0)
                        conn_table_print_json(stdout, out.table);
        } else if (arg_json && out.n)
                fputs("\n]\n", stdout); /* valid JSON even when the list broke off */
        else if (arg_json && r == 0)
                fputs("[]\n", stdout);
        else if (r == 0)
                conn_table_print(stdout, out.table);
        conn_table_free(out.table);
        return r;
}

static int print_kick(json_t *params, void *userdata) {
        if (arg_json)
                format_json(stdout, params);
        else
                format_kick(stdout, params);
        /* like pkill: nothing matched is a failure scripts can see */
        return json_integer_value(json_object_get(params, "kicked")) > 0 ? 0 : EXIT_FAILURE;
}

static int cmd_kick(int argc, char **argv) {
        static const struct option options[] = {
                SELECT_OPTIONS,
                { "all", no_argument, NULL, 'a' },
                { "reset", no_argument, NULL, OPT_RESET },
                {},
        };
        json_t *params = json_object(), *ids = json_array();
        bool all = false, selection = false, reset = false;
        int c, r;

        optind = 1;
        while ((c = getopt_long(argc, argv, "+p:a", options, NULL)) >= 0) {
                r = add_selection(params, c, optarg);
                if (r == 1) {
                        selection = true;
                        continue;
                }
                if (r == 0 && c == 'a') {
                        all = true;
                        continue;
                }
                if (r == 0 && c == OPT_RESET) {
                        reset = true;
                        continue;
                }
                json_decref(params);
                json_decref(ids);
                return r == EXIT_USAGE ? EXIT_USAGE : usage_error("kick: unknown option");
        }
        for (int i = optind; i < argc; i++) {
                uint64_t id;

                if (parse_uint(argv[i], INT64_MAX, &id) < 0 || id == 0) {
                        json_decref(params);
                        json_decref(ids);
                        return usage_error("kick: '%s' is not a connection id", argv[i]);
                }
                json_array_append_new(ids, json_integer((json_int_t) id));
        }
        if (all + selection + (json_array_size(ids) > 0) != 1) {
                json_decref(params);
                json_decref(ids);
                return usage_error("kick needs exactly one of: connection ids, a selection (--peer, --service, "
                                   "--idle-over, --older-than), --all");
        }
        if (json_array_size(ids))
                json_object_set_new(params, "ids", ids);
        else
                json_decref(ids);
        if (all)
                json_object_set_new(params, "all", json_true());
        if (reset)
                json_object_set_new(params, "reset", json_true());
        return call(TCPD_METHOD_KICK, params, false, print_kick, NULL);
}

static int print_reload(json_t *params, void *userdata) {
        if (arg_json)
                format_json(stdout, params);
        else
                printf("reloaded\n");
        return 0;
}

static int cmd_reload(int argc, char **argv) {
        if (argc > 1)
                return usage_error("reload takes no arguments");
        return call(TCPD_METHOD_RELOAD, NULL, false, print_reload, NULL);
}

static int print_prepare_stop(json_t *params, void *userdata) {
        const bool *handover = userdata;

        if (arg_json)
                format_json(stdout, params);
        else
                printf("tcpd will %s\n", *handover ? "hand its connections over to systemd's fd store"
                                                    : "drain its connections");
        return 0;
}

/* tcpd.service's ExecStop=: tells tcpd whether the SIGTERM that follows is
 * a restart or a stop (see unitjob.c). */
static int cmd_prepare_stop(int argc, char **argv) {
        _cleanup_free_ char *job = NULL;
        bool handover = true;
        int r;

        if (argc != 2)
                return usage_error("prepare-stop takes the unit's name (ExecStop=... prepare-stop %%n)");
        if (getenv("INVOCATION_ID") && !getenv("MAINPID")) {
                /* run by systemd after the main process died (a crash):
                 * nobody to tell, and a call on the control socket would
                 * only wait for the next tcpd */
                printf("tcpd is not running: nothing to prepare\n");
                return 0;
        }
        r = unit_job_type(argv[1], &job);
        if (r < 0)
                fprintf(stderr, "tcpctl: cannot ask systemd about %s (%s); tcpd will hand its connections over\n",
                        argv[1], strerror(-r));
        else
                handover = unit_job_is_restart(job);
        return call(TCPD_METHOD_PREPARE_STOP, json_pack("{s:b}", "handover", handover), false, print_prepare_stop,
                    &handover);
}

static int print_log_level(json_t *params, void *userdata) {
        if (arg_json)
                format_json(stdout, params);
        else if (json_object_get(params, "previous"))
                printf("log level %s (was %s)\n", json_string_value(json_object_get(params, "level")),
                       json_string_value(json_object_get(params, "previous")));
        else
                printf("%s\n", json_string_value(json_object_get(params, "log_level")) ?: "unknown");
        return 0;
}

static int cmd_log_level(int argc, char **argv) {
        static const char *const levels[] = { "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug" };

        if (argc > 2)
                return usage_error("log-level takes at most one level");
        if (argc == 1) /* read: no privilege needed */
                return call(TCPD_METHOD_GET_STATUS, NULL, false, print_log_level, NULL);
        for (size_t i = 0; i < ARRAY_SIZE(levels); i++)
                if (streq(argv[1], levels[i]))
                        return call(TCPD_METHOD_SET_LOG_LEVEL, json_pack("{s:s}", "level", argv[1]), false,
                                    print_log_level, NULL);
        return usage_error("log-level: '%s' is not one of emerg, alert, crit, err, warning, notice, info, debug",
                           argv[1]);
}

static int print_event(json_t *params, void *userdata) {
        json_t *e = json_object_get(params, "event");

        if (arg_json)
                /* one object a line, as it comes: for jq and log shippers */
                format_json_line(stdout, e);
        else if (streq(json_string_value(json_object_get(e, "type")) ?: "", "started"))
                fprintf(stderr, "monitoring tcpd on %s (%lld workers); Ctrl-C to stop\n", arg_socket,
                        (long long) json_integer_value(json_object_get(e, "workers")));
        else
                format_event(stdout, e);
        fflush(stdout);
        return 0;
}

static int cmd_monitor(int argc, char **argv) {
        struct sigaction sa = { .sa_handler = on_stop_signal }; /* no SA_RESTART: a signal ends the wait */
        int r;

        if (argc > 1)
                return usage_error("monitor takes no arguments");
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        call_no_timeout = true;
        r = call(TCPD_METHOD_MONITOR, NULL, true, print_event, NULL);
        if (r == EXIT_STOPPED)
                return 0;
        if (r == 0) /* the stream ended: tcpd stopped */
                return fail("tcpd ended the event stream");
        return r;
}

/* Durations for probe: systemd's units, a bare number in seconds. */
static int parse_probe_duration(const char *opt, const char *arg, bool zero_ok, uint64_t *usec) {
        if (parse_duration(arg, usec) < 0 || *usec > PROBE_DURATION_MAX || (*usec == 0 && !zero_ok))
                return usage_error("probe: --%s: '%s' is not a duration from %s to 1d, such as 200ms or 2s", opt, arg,
                                   zero_ok ? "0" : "1us");
        return 0;
}

static int cmd_probe(int argc, char **argv) {
        static const struct option options[] = {
                { "count", required_argument, NULL, 'c' },
                { "interval", required_argument, NULL, 'i' },
                { "size", required_argument, NULL, 's' },
                { "timeout", required_argument, NULL, 't' },
                {},
        };
        struct probe_options o = {
                .count = 5,
                .interval_usec = USEC_PER_SEC,
                .timeout_usec = 5 * USEC_PER_SEC,
                .size = 64,
                .json = arg_json,
                .term = arg_term,
        };
        char host[256]; /* a DNS name has at most 253 characters */
        uint64_t v;
        int c;

        /* No "+": like ping, options may follow the target. 0 rather than
         * 1 makes glibc forget the "+" of the global options' parsing. */
        optind = 0;
        while ((c = getopt_long(argc, argv, "c:i:s:t:", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        if (parse_uint(optarg, UINT32_MAX, &o.count) < 0)
                                return usage_error("probe: --count: '%s' is not a number (0: until interrupted)",
                                                   optarg);
                        break;
                case 'i':
                        if (parse_probe_duration("interval", optarg, true, &o.interval_usec))
                                return EXIT_USAGE;
                        break;
                case 's':
                        if (parse_size(optarg, &v) < 0 || v < PROBE_SIZE_MIN || v > PROBE_SIZE_MAX)
                                return usage_error("probe: --size: '%s' is not a size from %d to 16M bytes", optarg,
                                                   PROBE_SIZE_MIN);
                        o.size = (size_t) v;
                        break;
                case 't':
                        if (parse_probe_duration("timeout", optarg, false, &o.timeout_usec))
                                return EXIT_USAGE;
                        break;
                default:
                        return usage_error("probe: unknown option");
                }
        if (argc - optind > 1)
                return usage_error("probe: unexpected argument '%s'", argv[optind + 1]);
        o.target = optind < argc ? argv[optind] : NULL;
        if (probe_parse_target(o.target, host, sizeof(host), &o.port) < 0)
                return usage_error("probe: '%s' is not HOST, HOST:PORT, :PORT, IPV6 or [IPV6]:PORT (port 1 to 65535)",
                                   o.target);
        o.host = host;
        return probe_run(&o);
}

static const struct command {
        const char *name;
        int (*run)(int argc, char **argv);
        const char *args;
        const char *help;
} commands[] = {
        { "status", cmd_status, "", "show the daemon's state, listeners and counters" },
        { "list", cmd_list, "[-i] [SELECTION] [--sort KEY]", "list connections, one row each" },
        { "kick", cmd_kick, "[--reset] ID... | SELECTION | --all", "close connections (root or admin group)" },
        { "reload", cmd_reload, "", "re-read the settings file (root or admin group)" },
        { "log-level", cmd_log_level, "[LEVEL]", "show, or set until the next reload, the log level" },
        { "monitor", cmd_monitor, "", "print connections, closes, refusals and reloads as they happen" },
        { "prepare-stop", cmd_prepare_stop, "UNIT",
          "tell tcpd whether systemd restarts or stops UNIT (tcpd.service's ExecStop=)" },
        { "probe", cmd_probe, "[OPTIONS] [HOST][:PORT]", "check an echo service like ping (default " PROBE_DEFAULT_TARGET ")" },
};

static void help(void) {
        printf("Usage: tcpctl [OPTIONS] COMMAND [ARGS]\n\nControl tcpd through its control socket, and probe TCP echo services.\n\nCommands:\n");
        for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
                char left[64];
                snprintf(left, sizeof(left), "%s %s", commands[i].name, commands[i].args);
                printf("  %-34s %s\n", left, commands[i].help);
        }
        printf("\nOptions:\n"
               "  -s, --socket=PATH   control socket (default $TCPD_CONTROL_SOCKET or %s)\n"
               "  -j, --json          print JSON for scripts\n"
               "  -h, --help          show this help and exit\n"
               "  -V, --version       show the version and exit\n"
               "\nSELECTION, for list and kick (every one given must hold):\n"
               "  -p, --peer=CIDR        connections from this address or prefix\n"
               "      --service=NAME     connections to this service (echo, ...)\n"
               "      --idle-over=TIME   idle at least this long (90s, 10min)\n"
               "      --older-than=TIME  open at least this long\n"
               "\nOptions of list:\n"
               "  -i, --tcp-info         add what the kernel knows (TCP_INFO): RTT, RTTVAR, RETRANS, CWND, UNACKED\n"
               "      --sort=KEY         id (default), age, idle, in, out, peer or rtt; longest and largest first\n"
               "\nOptions of kick:\n"
               "  -a, --all              every connection\n"
               "      --reset            close with an RST instead of a FIN\n"
               "\nOptions of probe:\n"
               "  -c, --count=N          echoes to send (default 5; 0: until interrupted)\n"
               "  -i, --interval=TIME    between echoes (default 1s; 200ms, 1min 30s, ...)\n"
               "  -s, --size=SIZE        bytes per message, %d to 16M (default 64; 1K, 1M)\n"
               "  -t, --timeout=TIME     for each echo and connection attempt (default 5s)\n"
               "\nColour only on a terminal, never with NO_COLOR set. Tables fit the terminal's width.\n"
               "Exit status: 0 success, 1 the command failed (probe: an echo was lost or differed),\n"
               "2 usage error. See tcpctl(8).\n",
               TCPD_CONTROL_PATH, PROBE_SIZE_MIN);
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        int c;

        term_probe(STDOUT_FILENO, &arg_term);
        format_set_term(&arg_term);
        arg_socket = getenv("TCPD_CONTROL_SOCKET");
        if (!arg_socket || !*arg_socket)
                arg_socket = TCPD_CONTROL_PATH;
        /* "+": options after the command belong to the command */
        while ((c = getopt_long(argc, argv, "+s:jhV", options, NULL)) >= 0)
                switch (c) {
                case 's':
                        arg_socket = optarg;
                        break;
                case 'j':
                        arg_json = true;
                        break;
                case 'h':
                        help();
                        return 0;
                case 'V':
                        printf("tcpctl %s\n", TCPD_VERSION);
                        return 0;
                default:
                        fputs("Try 'tcpctl --help'.\n", stderr);
                        return EXIT_USAGE;
                }
        if (optind >= argc)
                return usage_error("no command given");
        for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
                if (streq(argv[optind], commands[i].name))
                        return commands[i].run(argc - optind, argv + optind);
        return usage_error("unknown command '%s'", argv[optind]);
}
