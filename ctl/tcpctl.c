/* tcpctl: the admin's tool for tcpd. A table of commands, each a Varlink
 * call on tcpd's control socket (but probe, which is a client of the echo
 * service itself); tables for people, --json for scripts. */
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "addr.h"
#include "client.h"
#include "format.h"
#include "metrics.h"
#include "loglevel.h"
#include "probe.h"
#include "tcpd-build.h"
#include "tcpd/protocol.h"
#include "top.h"
#include "unitjob.h"
#include "units.h"
#include "words.h"
#include "util.h"
#include "varlink.h"

#define EXIT_USAGE 2

static void on_stop_signal(int sig) {
        ctl_stop_requested = 1;
}

/* Shorter names for what the options set (client.h keeps them). */
#define arg_socket ctl_settings.socket
#define arg_socket_given ctl_settings.socket_given
#define arg_instance ctl_settings.instance
static char instance_socket[256];
static bool arg_json;
static struct term arg_term;

/* -H [USER@]HOST, once or more (or HOST,HOST): tcpd on each, through
 * "ssh -xT HOST tcpctl bridge" (TCPCTL_SSH and TCPCTL_REMOTE name other
 * programs for the two, as words). With several, status, list, kick and
 * reload give one view of them all. */
#define HOSTS_MAX 256
#define HOSTS_AHEAD 32 /* ssh connections started before the one being read */
static const char *arg_hosts[HOSTS_MAX];
static size_t n_hosts;
#define FLEET (n_hosts > 1)
/* The host whose replies are being handled, and its place in -H's order
 * (NULL and 0 with one host or none). */
static const char *cur_host;
static size_t cur_host_index;


_printf_(1, 2) static int usage_error(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        term_verror(fmt, ap);
        va_end(ap);
        fputs("Try 'tcpctl --help'.\n", stderr);
        return EXIT_USAGE;
}

/* One line for a mistake getopt found (opterr is off: it would print a
 * second): the option as typed, and what is wrong with it. */
static int option_error(const char *cmd, char **argv, int c) {
        const char *arg = argv[optind - 1];
        char letter[3] = { '-', (char) optopt, 0 };

        /* a short option, perhaps inside a group such as -ix: the letter */
        if (optopt > 0 && optopt < 0x100 && strncmp(arg, "--", 2) != 0)
                arg = letter;
        if (c == ':')
                return usage_error("%s%s'%s' needs a value", cmd ? cmd : "", cmd ? ": " : "", arg);
        return usage_error("%s%sunknown option '%s'", cmd ? cmd : "", cmd ? ": " : "", arg);
}

static const char *arg_service; /* --service, to name it in an error */
static const char *arg_backend; /* tcpctl backend's, likewise */

static int services_known(json_t *params, void *userdata) {
        char *list = userdata;
        json_t *li;
        size_t i, off = 0;

        json_array_foreach(json_object_get(params, "listeners"), i, li) {
                const char *name = json_string_value(json_object_get(li, "service")) ?: "?";

                if (!strstr(list, name) && off + strlen(name) + 3 < 256)
                        off += (size_t) snprintf(list + off, 256 - off, "%s%s", off ? ", " : "", name);
        }
        return 0;
}

typedef int (*reply_fn)(json_t *params, void *userdata);
static int call_one(const char *host, const char *method, json_t *params, bool more, reply_fn fn, void *userdata);

static int report_error(const char *method, struct vl_reply *reply) {
        _cleanup_free_ char *params = json_dumps(reply->params, JSON_COMPACT);
        const char *msg = json_string_value(json_object_get(reply->params, "message"));
        const char *param = json_string_value(json_object_get(reply->params, "parameter"));

        if (streq(reply->error, VARLINK_ERROR_PERMISSION_DENIED)) {
                char access[128], group[96];

                if (cur_host)
                        return term_fail("permission denied: this needs root or membership of tcpd's admin group there");
                ctl_socket_access(access, sizeof(access), group, sizeof(group));
                return term_fail("permission denied: this needs root or membership of %s, tcpd's admin group", group);
        }
        if (streq(reply->error, VARLINK_ERROR_INVALID_PARAMETER) && param && streq(param, "service") &&
            arg_service) {
                char known[256] = "";

                (void) call_one(cur_host, TCPD_METHOD_GET_STATUS, NULL, false, services_known, known);
                return usage_error("no service named '%s' here; tcpd serves: %s", arg_service,
                                   *known ? known : "nothing");
        }
        if (streq(reply->error, VARLINK_ERROR_INVALID_PARAMETER) && param && streq(param, "backend") && arg_backend)
                return usage_error("service %s has no backend %s (tcpctl backends lists them)", arg_service,
                                   arg_backend);
        if (streq(reply->error, VARLINK_ERROR_INVALID_PARAMETER) && param)
                return usage_error("tcpd refused the value of %s", param);
        if (streq(reply->error, TCPD_ERROR_SHUTTING_DOWN))
                return term_fail("tcpd is shutting down");
        if (streq(reply->error, TCPD_ERROR_RELOAD_FAILED))
                return term_fail("reload failed: %s", msg ? msg : "see the daemon's log");
        if (streq(reply->error, VARLINK_ERROR_METHOD_NOT_FOUND) ||
            streq(reply->error, VARLINK_ERROR_INTERFACE_NOT_FOUND))
                return term_fail("tcpd does not know %s: is it an older version?", method);
        return term_fail("%s failed: %s %s", method, reply->error, params ? params : "");
}

/* Hands every reply to the call already sent on c to fn, until the last
 * (or an error). Returns an exit code; on failure *host_failed is set
 * (the call did not complete), unlike a failure fn itself returns. */
static int read_replies(struct ctl *c, const char *method, reply_fn fn, void *userdata, bool *host_failed) {
        for (;;) {
                struct vl_reply reply;
                bool continues;
                int r;

                r = ctl_read_reply(c, &reply);
                if (r) {
                        *host_failed = r != CTL_EXIT_STOPPED;
                        return r;
                }
                if (reply.error) {
                        r = report_error(method, &reply);
                        vl_reply_done(&reply);
                        *host_failed = true;
                        return r;
                }
                continues = reply.continues;
                r = fn(reply.params, userdata);
                vl_reply_done(&reply);
                if (r || !continues)
                        return r;
        }
}

/* One call to tcpd on host (NULL: here). Returns an exit code. */
static int call_one(const char *host, const char *method, json_t *params, bool more, reply_fn fn, void *userdata) {
        struct ctl c;
        bool failed = false;
        int r;

        r = ctl_connect(&c, host);
        if (r == 0)
                r = ctl_send_call(&c, method, json_incref(params), more);
        if (r == 0)
                r = read_replies(&c, method, fn, userdata, &failed);
        json_decref(params);
        ctl_close(&c);
        return r;
}

/* Sends one call and hands every reply's parameters to fn (several when
 * more is set). Returns an exit code.
 *
 * With several hosts, the call goes to each, ssh started for up to
 * HOSTS_AHEAD of them at once, and their replies are read host by host in
 * -H's order (cur_host names the one); a host that fails is said on
 * standard error and given to fn as NULL parameters, the others still
 * answer, and the exit status is 1. */
static int call(const char *method, json_t *params, bool more, reply_fn fn, void *userdata) {
        struct ctl *c;
        int *status, result = 0;
        size_t opened = 0;

        if (!FLEET)
                return call_one(n_hosts ? arg_hosts[0] : NULL, method, params, more, fn, userdata);
        c = calloc(n_hosts, sizeof(*c));
        status = calloc(n_hosts, sizeof(*status));
        if (!c || !status) {
                free(c);
                free(status);
                json_decref(params);
                return term_fail("out of memory");
        }
        for (size_t i = 0; i < n_hosts; i++) {
                bool failed = false;
                int r;

                for (; opened < n_hosts && opened <= i + HOSTS_AHEAD; opened++) {
                        term_set_prefix(arg_hosts[opened]);
                        status[opened] = ctl_connect(&c[opened], arg_hosts[opened]);
                        if (status[opened] == 0)
                                status[opened] = ctl_send_call(&c[opened], method, json_incref(params), more);
                }
                cur_host = arg_hosts[i];
                cur_host_index = i;
                term_set_prefix(cur_host);
                r = status[i];
                if (r == 0)
                        r = read_replies(&c[i], method, fn, userdata, &failed);
                else
                        failed = true;
                ctl_close(&c[i]);
                if (failed && r != CTL_EXIT_STOPPED) {
                        int fr = fn(NULL, userdata);

                        r = fr ? fr : EXIT_FAILURE;
                }
                if (r && !result)
                        result = r;
                if (r == CTL_EXIT_STOPPED) {
                        for (size_t j = i + 1; j < opened; j++)
                                ctl_close(&c[j]);
                        break;
                }
        }
        term_set_prefix(NULL);
        cur_host = NULL;
        json_decref(params);
        free(c);
        free(status);
        return result;
}

/* ---- commands ---- */

/* With several hosts: each one's reply, or its error, as an object whose
 * first member is "host". */
static int fleet_collect(json_t *params, void *userdata) {
        json_t *replies = userdata, *o = json_pack("{s:s}", "host", cur_host);

        if (!o)
                return term_fail("out of memory");
        if (params)
                json_object_update(o, params);
        else
                json_object_set_new(o, "error", json_string(term_last_error()));
        json_array_append_new(replies, o);
        return 0;
}

/* Calls every host, then hands the array of their replies to print.
 * Returns the call's exit code, or print's when that is worse. */
static int fleet_call(const char *method, json_t *params, int (*print)(json_t *replies)) {
        json_t *replies = json_array();
        int r, pr;

        if (!replies) {
                json_decref(params);
                return term_fail("out of memory");
        }
        r = call(method, params, false, fleet_collect, replies);
        pr = print(replies);
        json_decref(replies);
        return r ? r : pr;
}

static int print_status(json_t *params, void *userdata) {
        if (arg_json)
                format_json(stdout, params);
        else
                format_status(stdout, params);
        return 0;
}

static int print_fleet_status(json_t *replies) {
        if (arg_json)
                format_json(stdout, replies);
        else
                format_fleet_status(stdout, replies);
        return 0;
}

static int cmd_status(int argc, char **argv) {
        if (argc > 1)
                return usage_error("status takes no arguments");
        if (FLEET)
                return fleet_call(TCPD_METHOD_GET_STATUS, NULL, print_fleet_status);
        return call(TCPD_METHOD_GET_STATUS, NULL, false, print_status, NULL);
}

/* tcpctl bridge: standard input to the control socket, the socket to
 * standard output, until either ends, as systemd-stdio-bridge does for
 * systemctl -H: what tcpctl -H runs on the other host over ssh, and what
 * any Varlink client's bridge option can run ("ssh HOST tcpctl bridge"). */
static int cmd_bridge(int argc, char **argv) {
        struct ctl c;
        struct pollfd p[2];
        bool in_open = true;
        char buf[64 * 1024];
        int r;

        if (argc > 1)
                return usage_error("bridge takes no arguments");
        if (n_hosts)
                return usage_error("bridge joins this host's control socket: -H makes no sense with it");
        ctl_settings.no_timeout = true; /* a monitor may stay quiet for hours */
        r = ctl_connect(&c, NULL);
        if (r)
                return r;
        for (;;) {
                ssize_t n;

                p[0] = (struct pollfd) { .fd = in_open ? STDIN_FILENO : -1, .events = POLLIN };
                p[1] = (struct pollfd) { .fd = c.fd, .events = POLLIN };
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        r = term_fail("bridge: %m");
                        break;
                }
                if (p[0].revents) {
                        n = read(STDIN_FILENO, buf, sizeof(buf));
                        if (n > 0 && ctl_send_all(c.fd, buf, (size_t) n) < 0) {
                                r = term_fail("bridge: cannot send to %s: %m", arg_socket);
                                break;
                        }
                        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
                                /* the caller is done asking: tcpd answers what came, then closes */
                                in_open = false;
                                (void) shutdown(c.fd, SHUT_WR);
                        }
                }
                if (p[1].revents) {
                        n = recv(c.fd, buf, sizeof(buf), 0);
                        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                                continue;
                        if (n <= 0)
                                break; /* tcpd closed */
                        for (ssize_t off = 0; off < n;) {
                                ssize_t w = write(STDOUT_FILENO, buf + off, (size_t) (n - off));
                                if (w < 0 && errno == EINTR)
                                        continue;
                                if (w <= 0) {
                                        ctl_close(&c);
                                        return EXIT_FAILURE; /* the caller went away */
                                }
                                off += w;
                        }
                }
        }
        ctl_close(&c);
        return r;
}

/* tcpctl metrics [--openmetrics] [-o FILE] */
struct metrics_out {
        bool openmetrics;
        const char *path; /* NULL: standard output */
};

#define OPT_OPENMETRICS 0x101
#define METRICS_SHORT ":o:"
static const struct option metrics_options[] = {
        { "openmetrics", no_argument, NULL, OPT_OPENMETRICS },
        { "output", required_argument, NULL, 'o' },
        {},
};

/* Written whole or not at all: a temporary file in the same directory
 * (not named *.prom, which node_exporter's textfile collector would read
 * half-written), then rename(). */
static int metrics_write_file(const char *path, json_t *st, bool om) {
        _cleanup_free_ char *tmp = NULL;
        FILE *f;
        int fd;

        if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0)
                return term_fail("out of memory");
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return term_fail("cannot write %s: %m", path);
        (void) fchmod(fd, 0644); /* node_exporter runs as another user */
        f = fdopen(fd, "w");
        if (!f) {
                close(fd);
                unlink(tmp);
                return term_fail("cannot write %s: %m", path);
        }
        metrics_print(f, st, om);
        if (fflush(f) != 0 || fsync(fd) < 0 || ferror(f)) {
                fclose(f);
                unlink(tmp);
                return term_fail("cannot write %s: %m", path);
        }
        fclose(f);
        if (rename(tmp, path) < 0) {
                int err = errno;

                unlink(tmp);
                return term_fail("cannot rename %s to %s: %s", tmp, path, strerror(err));
        }
        return 0;
}

static int print_metrics(json_t *params, void *userdata) {
        const struct metrics_out *o = userdata;

        if (o->path)
                return metrics_write_file(o->path, params, o->openmetrics);
        metrics_print(stdout, params, o->openmetrics);
        return 0;
}

static int cmd_metrics(int argc, char **argv) {
        struct metrics_out o = {};
        int c;

        optind = 0;
        while ((c = getopt_long(argc, argv, METRICS_SHORT, metrics_options, NULL)) >= 0) {
                if (c == OPT_OPENMETRICS)
                        o.openmetrics = true;
                else if (c == 'o')
                        o.path = optarg;
                else
                        return option_error("metrics", argv, c);
        }
        if (optind < argc)
                return usage_error("metrics takes no arguments besides its options");
        return call(TCPD_METHOD_GET_STATUS, NULL, false, print_metrics, &o);
}

struct list_out {
        struct conn_table *table; /* NULL with --json unsorted: printed as they come */
        bool json;
        size_t n;
};

/* Takes conn (with a host member first when there are several hosts). */
static int collect_one(struct list_out *out, json_t *conn) {
        if (!conn)
                return term_fail("out of memory");
        if (cur_host && out->table)
                conn_table_set_group(out->table, cur_host_index);
        if (!out->table)
                format_json_element(stdout, conn, out->n == 0);
        else if (conn_table_add(out->table, conn, out->json) < 0) {
                json_decref(conn);
                return term_fail("out of memory");
        }
        json_decref(conn);
        out->n++;
        return 0;
}

/* A reply of rows (tcpctl asks for them: a third of the bytes, and parsed in
 * half the time), or of one connection, as any Varlink client may ask. */
static int collect_connection(json_t *params, void *userdata) {
        json_t *conn = json_object_get(params, "connection"), *rows = json_object_get(params, "rows");
        int r = 0;

        if (conn && cur_host) { /* several hosts: say which, first */
                json_t *o = json_pack("{s:s}", "host", cur_host);

                if (o && json_object_update(o, conn) < 0)
                        json_decref(o), o = NULL;
                return collect_one(userdata, o);
        }
        if (conn)
                return collect_one(userdata, json_incref(conn));
        for (size_t i = 0; r == 0 && i < json_array_size(rows); i++) {
                conn = vl_row_object(params, i, cur_host);
                if (!conn)
                        return term_fail("tcpd sent a row that does not match its columns");
                r = collect_one(userdata, conn);
        }
        return r;
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
                arg_service = arg;
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

#define LIST_SHORT ":p:i"
static const struct option list_options[] = {
        SELECT_OPTIONS,
        { "sort", required_argument, NULL, OPT_SORT },
        { "tcp-info", no_argument, NULL, 'i' },
        {},
};

static int cmd_list(int argc, char **argv) {
        json_t *params = json_object();
        struct list_out out = {};
        const char *sort = NULL;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, LIST_SHORT, list_options, NULL)) >= 0) {
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
                return option_error("list", argv, c);
        }
        if (optind < argc) {
                json_decref(params);
                return usage_error("list: unexpected argument '%s'", argv[optind]);
        }
        /* sorted output needs every row first; otherwise --json streams */
        if ((!arg_json || sort) && !(out.table = conn_table_new())) {
                json_decref(params);
                return term_fail("out of memory");
        }
        out.json = arg_json;
        json_object_set_new(params, "rows", json_true());
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

/* A line per host that answered, then the total; as pkill, nothing
 * kicked anywhere is a failure. */
static int print_fleet_kick(json_t *replies) {
        unsigned long long kicked = 0;
        size_t i, hosts = 0;
        json_t *o;

        json_array_foreach(replies, i, o) {
                if (json_object_get(o, "error"))
                        continue;
                hosts++;
                kicked += (unsigned long long) json_integer_value(json_object_get(o, "kicked"));
                if (!arg_json) {
                        printf("%s: ", json_string_value(json_object_get(o, "host")));
                        format_kick(stdout, o);
                }
        }
        if (arg_json)
                format_json(stdout, replies);
        else
                printf("kicked %llu connection%s on %zu of %zu hosts\n", kicked, kicked == 1 ? "" : "s", hosts,
                       json_array_size(replies));
        return kicked ? 0 : EXIT_FAILURE;
}

#define KICK_SHORT ":p:a"
static const struct option kick_options[] = {
        SELECT_OPTIONS,
        { "all", no_argument, NULL, 'a' },
        { "reset", no_argument, NULL, OPT_RESET },
        {},
};

static int cmd_kick(int argc, char **argv) {
        json_t *params = json_object(), *ids = json_array();
        bool all = false, selection = false, reset = false;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, KICK_SHORT, kick_options, NULL)) >= 0) {
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
                return r == EXIT_USAGE ? EXIT_USAGE : option_error("kick", argv, c);
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
                bool mixed = all + selection + (json_array_size(ids) > 0) > 1;

                json_decref(params);
                json_decref(ids);
                if (mixed)
                        return usage_error("kick: give connection ids, a selection (--peer, --service, --idle-over, "
                                           "--older-than) or --all, not two of them");
                return usage_error("kick needs one of: connection ids, a selection (--peer, --service, "
                                   "--idle-over, --older-than), --all");
        }
        if (json_array_size(ids) && FLEET) {
                json_decref(params);
                json_decref(ids);
                return usage_error("kick: connection ids are a host's own: give one -H with them, or a "
                                   "selection (--peer, --service, ...) for several hosts");
        }
        if (json_array_size(ids))
                json_object_set_new(params, "ids", ids);
        else
                json_decref(ids);
        if (all)
                json_object_set_new(params, "all", json_true());
        if (reset)
                json_object_set_new(params, "reset", json_true());
        if (FLEET)
                return fleet_call(TCPD_METHOD_KICK, params, print_fleet_kick);
        return call(TCPD_METHOD_KICK, params, false, print_kick, NULL);
}

static int print_reload(json_t *params, void *userdata) {
        if (arg_json)
                format_json(stdout, params);
        else
                printf("reloaded\n");
        return 0;
}

static int print_fleet_reload(json_t *replies) {
        size_t i;
        json_t *o;

        if (arg_json)
                format_json(stdout, replies);
        else
                json_array_foreach(replies, i, o)
                        if (!json_object_get(o, "error"))
                                printf("%s: reloaded\n", json_string_value(json_object_get(o, "host")));
        return 0;
}

static int cmd_reload(int argc, char **argv) {
        if (argc > 1)
                return usage_error("reload takes no arguments");
        if (FLEET)
                return fleet_call(TCPD_METHOD_RELOAD, NULL, print_fleet_reload);
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

/* The daemon's own check (tcpd --check-config), run from here because the
 * daemon may have no name to type: the Debian package keeps it in
 * /usr/libexec/tcpd beside TCP Wrappers' /usr/sbin/tcpd. Its output and
 * its exit status are the command's. */
static int cmd_check_config(int argc, char **argv) {
        const char *daemon = getenv("TCPD_DAEMON");
        char *args[5];
        int n = 0, status;
        pid_t pid;

        if (argc > 2)
                return usage_error("check-config takes at most one settings file");
        if (!daemon || !*daemon)
                daemon = TCPD_DAEMON_PATH;
        args[n++] = (char *) daemon;
        args[n++] = (char *) "--check-config";
        if (argc == 2) {
                args[n++] = (char *) "-c";
                args[n++] = argv[1];
        } else if (arg_instance) {
                /* tcpd@NAME.service reads NAME.ini */
                static char path[256];

                snprintf(path, sizeof(path), "%s/%s.ini", TCPD_CONFIG_DIR, arg_instance);
                args[n++] = (char *) "-c";
                args[n++] = path;
        }
        args[n] = NULL;
        fflush(stdout);
        pid = fork();
        if (pid < 0)
                return term_fail("cannot run %s: %m", daemon);
        if (pid == 0) {
                execv(daemon, args);
                term_error("cannot run %s: %s (TCPD_DAEMON names another)", daemon, strerror(errno));
                _exit(EXIT_FAILURE);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return term_fail("cannot wait for %s: %m", daemon);
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return term_fail("%s ended by signal %d", daemon, WTERMSIG(status));
}

static int print_log_level(json_t *params, void *userdata) {
        json_t *o;

        if (arg_json && json_object_get(params, "previous"))
                format_json(stdout, params);
        else if (arg_json) {
                /* reading: the same shape as setting, {"level": ...} */
                o = json_pack("{s:O}", "level", json_object_get(params, "log_level") ?: json_null());
                if (!o)
                        return term_fail("out of memory");
                format_json(stdout, o);
                json_decref(o);
        } else if (json_object_get(params, "previous"))
                printf("log level %s (was %s)\n", json_string_value(json_object_get(params, "level")),
                       json_string_value(json_object_get(params, "previous")));
        else
                printf("%s\n", json_string_value(json_object_get(params, "log_level")) ?: "unknown");
        return 0;
}

static int cmd_log_level(int argc, char **argv) {
        if (argc > 2)
                return usage_error("log-level takes at most one level");
        if (argc == 1) /* read: no privilege needed */
                return call(TCPD_METHOD_GET_STATUS, NULL, false, print_log_level, NULL);
        if (log_level_from_string(argv[1]) < 0)
                return usage_error("log-level: '%s' is not one of " LOG_LEVEL_NAMES, argv[1]);
        return call(TCPD_METHOD_SET_LOG_LEVEL, json_pack("{s:s}", "level", argv[1]), false, print_log_level, NULL);
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
        ctl_settings.no_timeout = true;
        r = call(TCPD_METHOD_MONITOR, NULL, true, print_event, NULL);
        if (r == CTL_EXIT_STOPPED)
                return 0;
        if (r == 0) /* the stream ended: tcpd stopped */
                return term_fail("tcpd ended the event stream");
        return r;
}

/* tcpctl backends [SERVICE]: the backends of the services of type forward,
 * from GetStatus. */
static int print_backends(json_t *params, void *userdata) {
        const char *only = userdata;
        json_t *all = json_array(), *s, *b;
        size_t i, j;
        int r = 0;

        if (!all)
                return term_fail("out of memory");
        json_array_foreach(json_object_get(params, "services"), i, s) {
                const char *name = json_string_value(json_object_get(s, "name"));

                if (only && (!name || !streq(name, only)))
                        continue;
                json_array_foreach(json_object_get(s, "backends"), j, b) {
                        json_t *o = json_pack("{s:s}", "service", name ? name : "");

                        if (!o || json_object_update(o, b) < 0) {
                                json_decref(o);
                                json_decref(all);
                                return term_fail("out of memory");
                        }
                        json_array_append_new(all, o);
                }
        }
        if (only && json_array_size(all) == 0)
                r = usage_error("backends: no service of type forward named '%s'", only);
        else if (arg_json)
                format_json(stdout, all);
        else if (format_backends(stdout, all) < 0)
                r = term_fail("out of memory");
        json_decref(all);
        return r;
}

static int cmd_backends(int argc, char **argv) {
        if (argc > 2)
                return usage_error("backends takes at most a service's name");
        return call(TCPD_METHOD_GET_STATUS, NULL, false, print_backends, argc == 2 ? argv[1] : NULL);
}

static int print_set_backend(json_t *params, void *userdata) {
        const char *prev = json_string_value(json_object_get(params, "previous")) ?: "?";

        if (arg_json)
                format_json(stdout, params);
        else
                printf("service %s: backend %s %s (was %s)\n",
                       json_string_value(json_object_get(params, "service")) ?: "?",
                       json_string_value(json_object_get(params, "backend")) ?: "?",
                       json_string_value(json_object_get(params, "admin")) ?: "?", prev);
        return 0;
}

/* tcpctl backend drain|disable|enable SERVICE BACKEND */
static int cmd_backend(int argc, char **argv) {
        if (argc != 4 || (!streq(argv[1], "drain") && !streq(argv[1], "disable") && !streq(argv[1], "enable")))
                return usage_error("backend takes drain, disable or enable, a service and a backend (as in "
                                   "backend= or its address): tcpctl backend drain db 10.0.0.5:5432");
        arg_service = argv[2];
        arg_backend = argv[3];
        return call(TCPD_METHOD_SET_BACKEND,
                    json_pack("{s:s,s:s,s:s}", "service", argv[2], "backend", argv[3], "admin", argv[1]), false,
                    print_set_backend, NULL);
}

/* tcpctl top: the daemon at a glance, refreshed every second (top.c). */
static int cmd_top(int argc, char **argv) {
        struct sigaction sa = { .sa_handler = on_stop_signal }; /* ends the view cleanly */

        if (argc > 1)
                return usage_error("top takes no arguments");
        if (arg_json)
                return usage_error("top is a view for a terminal; for scripts: status --json, list --json");
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        return top_run(n_hosts ? arg_hosts[0] : NULL);
}

/* Durations for probe: systemd's units, a bare number in seconds. */
static int parse_probe_duration(const char *opt, const char *arg, bool zero_ok, uint64_t *usec) {
        if (parse_duration(arg, usec) < 0 || *usec > PROBE_DURATION_MAX || (*usec == 0 && !zero_ok))
                return usage_error("probe: --%s: '%s' is not a duration from %s to 1d, such as 200ms or 2s", opt, arg,
                                   zero_ok ? "0" : "1us");
        return 0;
}

/* ping's letters: -c -i -s -W -w -q -D; -t, the old letter of --timeout,
 * stays as another name for -W */
#define PROBE_SHORT ":c:i:s:t:W:w:qD"
static const struct option probe_options[] = {
        { "count", required_argument, NULL, 'c' },
        { "interval", required_argument, NULL, 'i' },
        { "size", required_argument, NULL, 's' },
        { "timeout", required_argument, NULL, 'W' },
        { "deadline", required_argument, NULL, 'w' },
        { "quiet", no_argument, NULL, 'q' },
        { "timestamp", no_argument, NULL, 'D' },
        {},
};

static int cmd_probe(int argc, char **argv) {
        struct probe_options o = {
                .count = 5,
                .interval_usec = USEC_PER_SEC,
                .timeout_usec = 5 * USEC_PER_SEC,
                .size = 64,
                .json = arg_json,
                .term = arg_term,
        };
        char host[256]; /* a DNS name has at most 253 characters */
        bool count_set = false;
        uint64_t v;
        int c;

        /* No "+": like ping, options may follow the target. 0 rather than
         * 1 makes glibc forget the "+" of the global options' parsing. */
        optind = 0;
        while ((c = getopt_long(argc, argv, PROBE_SHORT, probe_options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        count_set = true;
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
                case 'W':
                        if (parse_probe_duration("timeout", optarg, false, &o.timeout_usec))
                                return EXIT_USAGE;
                        break;
                case 'w':
                        if (parse_probe_duration("deadline", optarg, false, &o.deadline_usec))
                                return EXIT_USAGE;
                        break;
                case 'q':
                        o.quiet = true;
                        break;
                case 'D':
                        o.timestamps = true;
                        break;
                default:
                        return option_error("probe", argv, c);
                }
        if (argc - optind > 1)
                return usage_error("probe: unexpected argument '%s'", argv[optind + 1]);
        if (o.deadline_usec && !count_set)
                o.count = 0; /* as ping -w: as many as fit in the deadline */
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
        /* the command's own options: after the command, its letters win
         * over the global ones */
        const char *shortopts;
        const struct option *longopts;
        bool fleet; /* takes several hosts (-H a -H b) */
} commands[] = {
        { "status", cmd_status, "", "show the daemon's state, listeners and counters", .fleet = true },
        { "list", cmd_list, "[-i] [SELECTION] [--sort KEY]", "list connections, one row each", LIST_SHORT,
          list_options, true },
        { "kick", cmd_kick, "[--reset] ID... | SELECTION | --all", "close connections (root or admin group)",
          KICK_SHORT, kick_options, true },
        { "reload", cmd_reload, "", "re-read the settings file (root or admin group)", .fleet = true },
        { "check-config", cmd_check_config, "[FILE]", "check a settings file (default: the daemon's) before a reload" },
        { "log-level", cmd_log_level, "[LEVEL]", "show, or set until the next reload, the log level" },
        { "bridge", cmd_bridge, "", "join standard input and output to the control socket (for tcpctl -H, over ssh)" },
        { "metrics", cmd_metrics, "[--openmetrics] [-o FILE]", "print the counters for Prometheus (or write FILE)",
          METRICS_SHORT, metrics_options },
        { "backends", cmd_backends, "[SERVICE]", "the backends of relays (type = forward): up or down, checks, counters" },
        { "backend", cmd_backend, "drain|disable|enable SERVICE BACKEND",
          "no new clients for a backend (drain keeps its open ones), or again (root or admin group)" },
        { "top", cmd_top, "", "a live full-screen view: services and the busiest connections (q quits)" },
        { "monitor", cmd_monitor, "", "print connections, closes, refusals and reloads as they happen" },
        { "prepare-stop", cmd_prepare_stop, "UNIT",
          "tell tcpd whether systemd restarts or stops UNIT (tcpd.service's ExecStop=)" },
        { "probe", cmd_probe, "[OPTIONS] [HOST][:PORT]", "check an echo service like ping (default " PROBE_DEFAULT_TARGET ")",
          PROBE_SHORT, probe_options },
};

static void help(void);

static const struct option global_options[] = {
        { "socket", required_argument, NULL, 's' },
        { "instance", required_argument, NULL, 'I' },
        { "host", required_argument, NULL, 'H' },
        { "json", no_argument, NULL, 'j' },
        { "no-pager", no_argument, NULL, 'P' }, /* tcpctl has no pager; as systemctl */
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        {},
};
#define GLOBAL_SHORT ":s:I:H:jhV"

/* -H HOST, or HOST,HOST,...: in the order given, each once. */
static int add_hosts(const char *arg) {
        char *copy = strdup(arg), *save = NULL;

        if (!copy)
                return term_fail("out of memory");
        for (char *h = strtok_r(copy, ",", &save); h; h = strtok_r(NULL, ",", &save)) {
                bool seen = false;

                if (!*h || h[0] == '-' || strpbrk(h, " \t\n"))
                        return usage_error("-H: '%s' is not [USER@]HOST", h);
                for (size_t i = 0; i < n_hosts; i++)
                        seen |= streq(arg_hosts[i], h);
                if (seen)
                        continue;
                if (n_hosts == HOSTS_MAX)
                        return usage_error("-H: at most %d hosts at once", HOSTS_MAX);
                arg_hosts[n_hosts++] = h; /* copy lives as long as tcpctl */
        }
        if (!n_hosts)
                return usage_error("-H: '%s' names no host", arg);
        return -1;
}

/* Applies a global option. Returns -1 to go on, or an exit code. */
static int global_option(int c, const char *arg) {
        switch (c) {
        case 's':
                arg_socket = arg;
                arg_socket_given = true;
                return -1;
        case 'I':
                arg_instance = arg;
                return -1;
        case 'H':
                return add_hosts(arg);
        case 'j':
                arg_json = true;
                return -1;
        case 'P':
                return -1;
        case 'h':
                help();
                return 0;
        case 'V':
                printf("tcpctl %s\n", TCPD_VERSION);
                return 0;
        default:
                return EXIT_USAGE;
        }
}

static const struct option *find_long(const struct option *opts, const char *name, size_t len) {
        for (; opts && opts->name; opts++)
                if (strlen(opts->name) == len && strncmp(opts->name, name, len) == 0)
                        return opts;
        return NULL;
}

/* Options after the command: the long global ones (--json, --socket,
 * --no-pager, --help) work anywhere, and so do the global letters the
 * command does not use itself (-j, -s, -h); they are taken out of argv, and
 * the rest is left for the command. Returns -1 to go on, or an exit code. */
static int take_global_options(const struct command *cmd, int *argc, char **argv) {
        int out = 1, r;

        for (int i = 1; i < *argc; i++) {
                const char *a = argv[i];

                if (streq(a, "--")) { /* the end of options: keep the rest */
                        while (i < *argc)
                                argv[out++] = argv[i++];
                        break;
                }
                if (strncmp(a, "--", 2) == 0) {
                        const char *eq = strchr(a + 2, '=');
                        size_t len = eq ? (size_t) (eq - a - 2) : strlen(a + 2);
                        const struct option *own = find_long(cmd->longopts, a + 2, len),
                                            *glob = own ? NULL : find_long(global_options, a + 2, len);

                        if (glob) {
                                const char *val = eq ? eq + 1 : NULL;

                                if (glob->has_arg == required_argument && !val) {
                                        if (i + 1 >= *argc)
                                                return usage_error("%s: '--%s' needs a value", cmd->name, glob->name);
                                        val = argv[++i];
                                }
                                r = global_option(glob->val, val);
                                if (r >= 0)
                                        return r;
                                continue;
                        }
                        argv[out++] = argv[i];
                        if (own && own->has_arg == required_argument && !eq && i + 1 < *argc)
                                argv[out++] = argv[++i]; /* its value, whatever it looks like */
                        continue;
                }
                if (a[0] == '-' && a[1]) {
                        /* a group of letters: the command's stay, a global
                         * one the command does not use is taken out */
                        char own[64];
                        size_t n = 1;
                        bool value_next = false;

                        own[0] = '-';
                        for (const char *p = a + 1; *p && n < sizeof(own) - 1; p++) {
                                const char *spec = cmd->shortopts ? strchr(cmd->shortopts + 1, *p) : NULL;
                                const char *gspec = strchr(GLOBAL_SHORT + 1, *p);

                                if (*p != ':' && spec) {
                                        own[n++] = *p;
                                        if (spec[1] == ':') { /* the rest is its value, or the next word is */
                                                size_t rest = strlen(p + 1);
                                                if (rest && n + rest < sizeof(own)) {
                                                        memcpy(own + n, p + 1, rest);
                                                        n += rest;
                                                } else if (!rest)
                                                        value_next = true;
                                                break;
                                        }
                                        continue;
                                }
                                if (*p != ':' && gspec) {
                                        const char *val = NULL;

                                        if (gspec[1] == ':') {
                                                val = p[1] ? p + 1 : (i + 1 < *argc ? argv[++i] : NULL);
                                                if (!val)
                                                        return usage_error("%s: '-%c' needs a value", cmd->name, *p);
                                        }
                                        r = global_option(*p, val);
                                        if (r >= 0)
                                                return r;
                                        if (val)
                                                break;
                                        continue;
                                }
                                own[n++] = *p; /* unknown: the command says so */
                        }
                        if (n > 1) {
                                own[n] = 0;
                                if (streq(own, a))
                                        argv[out++] = argv[i];
                                else if (!(argv[out++] = strdup(own)))
                                        return term_fail("out of memory");
                        }
                        if (value_next && i + 1 < *argc)
                                argv[out++] = argv[++i];
                        continue;
                }
                argv[out++] = argv[i];
        }
        argv[out] = NULL;
        *argc = out;
        return -1;
}

/* An instance's name, as systemd takes it in a unit's name and tcpd in a
 * path: letters, digits, '-', '_', '.', not starting with '.'. */
static bool instance_name_valid(const char *s) {
        size_t n = strlen(s);

        return n > 0 && n < 64 && s[0] != '.' &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == n;
}

/* -I NAME (or $TCPD_INSTANCE) picks tcpd@NAME.service's control socket,
 * unless -s named one. Returns -1 to go on, or an exit code. */
static int pick_instance(void) {
        if (!arg_instance) {
                const char *env = getenv("TCPD_INSTANCE");
                if (env && *env)
                        arg_instance = env;
        }
        if (!arg_instance)
                return -1;
        if (!instance_name_valid(arg_instance))
                return usage_error("'%s' is no instance name (letters, digits, '-', '_' and '.', as in "
                                   "tcpd@NAME.service)",
                                   arg_instance);
        if (!arg_socket_given) {
                snprintf(instance_socket, sizeof(instance_socket), "%s/%s/control", TCPD_RUN_DIR, arg_instance);
                arg_socket = instance_socket;
        }
        return -1;
}

static void help(void) {
        printf("Usage: tcpctl [OPTIONS] COMMAND [ARGS]\n\nControl tcpd through its control socket, and probe TCP echo services.\n\nCommands:\n");
        for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
                char left[64];
                snprintf(left, sizeof(left), "%s %s", commands[i].name, commands[i].args);
                printf("  %-34s %s\n", left, commands[i].help);
        }
        printf("\nOptions:\n"
               "  -s, --socket=PATH   control socket (default $TCPD_CONTROL_SOCKET or %s)\n"
               "  -I, --instance=NAME tcpd@NAME.service: socket %s/NAME/control, settings %s/NAME.ini\n"
               "  -H, --host=[USER@]HOST  tcpd on HOST, over ssh (ssh -xT HOST tcpctl bridge); given\n"
               "                      again, or as HOST,HOST: one view for status, list, kick, reload\n"
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
               "\nOptions of metrics:\n"
               "      --openmetrics      OpenMetrics 1.0 instead of the text format 0.0.4\n"
               "  -o, --output=FILE      write FILE whole (a temporary file, then rename), for\n"
               "                         node_exporter's textfile collector\n"
               "\nOptions of probe:\n"
               "  -c, --count=N          echoes to send (default 5; 0: until interrupted)\n"
               "  -i, --interval=TIME    between echoes (default 1s; 0.2, 200ms, 1.5s, 1min 30s, ...)\n"
               "  -s, --size=SIZE        bytes per message, %d to 16M (default 64; 1K, 1M)\n"
               "  -W, --timeout=TIME     for each echo and connection attempt (default 5s; -t too)\n"
               "  -w, --deadline=TIME    stop after this long, however many were sent\n"
               "  -q, --quiet            print the summary only\n"
               "  -D, --timestamp        start each line with the time (seconds since 1970)\n"
               "\nColour only on a terminal, never with NO_COLOR set. Tables fit the terminal's width.\n"
               "Exit status: 0 success, 1 the command failed (probe: an echo was lost or differed),\n"
               "2 usage error. See tcpctl(8).\n",
               TCPD_CONTROL_PATH, TCPD_RUN_DIR, TCPD_CONFIG_DIR, PROBE_SIZE_MIN);
}

int main(int argc, char *argv[]) {
        int c, r;

        term_probe(STDOUT_FILENO, &arg_term);
        format_set_term(&arg_term);
        arg_socket = getenv("TCPD_CONTROL_SOCKET");
        if (!arg_socket || !*arg_socket)
                arg_socket = TCPD_CONTROL_PATH;
        /* one line for one mistake: getopt's own messages are off */
        opterr = 0;
        /* before the command, a letter is global ("+": stop at the command) */
        while ((c = getopt_long(argc, argv, "+" GLOBAL_SHORT, global_options, NULL)) >= 0) {
                if (c == '?' || c == ':')
                        return option_error(NULL, argv, c);
                r = global_option(c, optarg);
                if (r >= 0)
                        return r;
        }
        if (optind >= argc)
                return usage_error("no command given");
        for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
                if (streq(argv[optind], commands[i].name)) {
                        int cargc = argc - optind;

                        r = take_global_options(&commands[i], &cargc, argv + optind);
                        if (r >= 0)
                                return r;
                        r = pick_instance();
                        if (r >= 0)
                                return r;
                        if (FLEET && !commands[i].fleet)
                                return usage_error("%s takes one host (-H) at a time; status, list, kick and "
                                                   "reload take several",
                                                   commands[i].name);
                        return commands[i].run(cargc, argv + optind);
                }
        return usage_error("unknown command '%s'", argv[optind]);
}
