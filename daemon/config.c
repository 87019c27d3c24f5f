/* Settings: inih calls config_handler for every key; each key's parser
 * checks its value; errors name file, line, key and value. */
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "units.h"
#include "util.h"
#include "words.h"

#include "tcpd-build.h"

#define GLOBAL_SECTION "tcpd"
/* inih cuts lines at ini_max_line bytes, counting "\r\n\0", and silently
 * parses the rest as a line of its own: we refuse such lines instead. */
#define INI_LINE_LIMIT 200
#define CONFIG_MAX_SIZE (1024 * 1024)

#define SERVICE_NAME(name) #name,
static const char *const service_names[_SERVICE_MAX] = { SERVICE_TYPES(SERVICE_NAME) };
#undef SERVICE_NAME

const char *service_name(enum service_kind k) {
        return k < _SERVICE_MAX ? service_names[k] : "?";
}

const char *service_config_name(const struct service_config *s) {
        return s->name ? s->name : service_name(s->type);
}

const struct service_config *config_service(const struct config *c, const char *name) {
        for (size_t i = 0; i < c->n_services; i++)
                if (streq(service_config_name(&c->services[i]), name))
                        return &c->services[i];
        return NULL;
}

int service_from_name(const char *name) {
        for (int i = 0; i < _SERVICE_MAX; i++)
                if (streq(name, service_names[i]))
                        return i;
        return -ENOENT;
}

int service_builtin_from_name(const char *name) {
        int t = service_from_name(name);

        return t >= _SERVICE_BUILTIN_MAX ? -ENOENT : t;
}

void config_errors_clear(struct config_errors *e) {
        for (size_t i = 0; i < e->n; i++)
                free(e->msg[i]);
        memset(e, 0, sizeof(*e));
}

_printf_(2, 3) static void add_error(struct config_errors *e, const char *fmt, ...) {
        va_list ap;
        char *m;

        e->total++;
        if (e->n >= CONFIG_MAX_ERRORS)
                return;
        va_start(ap, fmt);
        if (vasprintf(&m, fmt, ap) >= 0)
                e->msg[e->n++] = m;
        va_end(ap);
}

static unsigned error_line(const char *msg, size_t path_len) {
        return (unsigned) strtoul(msg + path_len + 1, NULL, 10);
}

/* inih names the first syntax error only at the end: move that message to
 * its place among the others, so errors read in file order. */
static void errors_sort_last(struct config_errors *e, size_t path_len) {
        size_t i;
        char *m;

        if (e->n < 2 || e->total > e->n)
                return;
        m = e->msg[e->n - 1];
        for (i = e->n - 1; i > 0 && error_line(e->msg[i - 1], path_len) > error_line(m, path_len); i--)
                e->msg[i] = e->msg[i - 1];
        e->msg[i] = m;
}

static void listen_clear(struct service_config *s) {
        for (size_t i = 0; i < s->n_listen; i++)
                free(s->listen[i].text);
        free(s->listen);
        s->listen = NULL;
        s->n_listen = 0;
}

static int listen_add(struct service_config *s, const char *text, unsigned line, const char **why) {
        struct listen_spec spec = { .line = line };
        struct listen_spec *l;

        if (addr_parse_listen(text, &spec.addr, &spec.any, why) < 0)
                return -EINVAL;
        l = realloc(s->listen, (s->n_listen + 1) * sizeof(*l));
        if (!l)
                return -ENOMEM;
        s->listen = l;
        spec.text = strdup(text);
        if (!spec.text)
                return -ENOMEM;
        s->listen[s->n_listen++] = spec;
        return 0;
}

struct config *config_new(void) {
        struct config *c = calloc(1, sizeof(*c));
        const char *why;

        if (!c)
                return NULL;
        c->log_level = LOG_INFO;
        c->control_socket = strdup(TCPD_CONTROL_PATH);
        c->control_socket_mode = 0660;
        c->admin_group = strdup(TCPD_ADMIN_GROUP);
        c->backlog = 128;
        c->worker_batch = true;
        c->max_buffered = 64 * 1024;
        c->shutdown_timeout_usec = 5 * USEC_PER_SEC;
        c->store_after_usec = 1 * USEC_PER_SEC;
        c->source_prefix_ipv6 = 64;
        c->keepalive = true;
        c->keepalive_idle_usec = 120 * USEC_PER_SEC;
        c->keepalive_interval_usec = 20 * USEC_PER_SEC;
        c->keepalive_count = 5;
        c->user_timeout_usec = 180 * USEC_PER_SEC;
        for (int i = 0; i < _SERVICE_BUILTIN_MAX; i++)
                c->services[i] = (struct service_config) { .type = (enum service_kind) i, .type_set = true };
        c->n_services = _SERVICE_BUILTIN_MAX;
        /* who may scrape the metrics endpoint: loopback unless [metrics] says */
        c->metrics_allow = calloc(2, sizeof(*c->metrics_allow));
        if (!c->metrics_allow || cidr_parse("127.0.0.0/8", &c->metrics_allow[0]) < 0 ||
            cidr_parse("::1/128", &c->metrics_allow[1]) < 0)
                return config_free(c);
        c->n_metrics_allow = 2;
        if (!c->control_socket || !c->admin_group || listen_add(&c->services[SERVICE_ECHO], "7788", 0, &why) < 0)
                return config_free(c);
        return c;
}

struct config *config_free(struct config *c) {
        if (!c)
                return NULL;
        free(c->path);
        free(c->source);
        free(c->control_socket);
        free(c->admin_group);
        free(c->allow);
        free(c->deny);
        free(c->metrics_listen);
        free(c->metrics_allow);
        free(c->metrics_deny);
        for (size_t i = 0; i < c->n_services; i++) {
                listen_clear(&c->services[i]);
                free(c->services[i].banner);
                free(c->services[i].name);
                free(c->services[i].allow);
                free(c->services[i].deny);
                free(c->services[i].proxy_from);
                words_free(c->services[i].exec_argv);
                words_free(c->services[i].environment);
                backends_free(c->services[i].backends, c->services[i].n_backends);
                check_spec_done(&c->services[i].check);
        }
        free(c);
        return NULL;
}

/* Each key: where it lives and how its value is read. A parser returns 0, or
 * a negative errno and sets *why to what the value should have been. */
struct parse_ctx {
        struct config *c;
        struct config_errors *errs;
        const char *path;
        unsigned line;
        char last_bad_section[64];
        char section_label[64]; /* the section as messages name it */
};

typedef int (*key_parser)(struct parse_ctx *p, const char *value, void *field, const char **why);

static int parse_level(struct parse_ctx *p, const char *v, void *field, const char **why) {
        int l = log_level_from_string(v);

        if (l < 0) {
                *why = "expected one of " LOG_LEVEL_NAMES;
                return -EINVAL;
        }
        *(int *) field = l;
        return 0;
}

static int parse_bool_key(struct parse_ctx *p, const char *v, void *field, const char **why) {
        int b;

        if (parse_bool(v, &b) < 0) {
                *why = "expected yes or no";
                return -EINVAL;
        }
        *(bool *) field = b;
        return 0;
}

static int parse_string(struct parse_ctx *p, const char *v, void *field, const char **why) {
        char *s;

        if (!*v) {
                *why = "must not be empty";
                return -EINVAL;
        }
        /* group names and paths here never hold blanks; a blank is most
         * likely a comment after the value, which inih keeps */
        if (strpbrk(v, " \t")) {
                *why = "must not contain spaces";
                return -EINVAL;
        }
        s = strdup(v);
        if (!s)
                return -ENOMEM;
        free(*(char **) field);
        *(char **) field = s;
        return 0;
}

static int parse_group(struct parse_ctx *p, const char *v, void *field, const char **why) {
        if (strlen(v) > 64) {
                *why = "is longer than a group name may be (64 characters here)";
                return -EINVAL;
        }
        /* the characters group names are made of (as useradd allows) */
        if (strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-$") != strlen(v) ||
            v[0] == '-' || v[0] == '.') {
                *why = "is not a group name (letters, digits, '_', '.', '-')";
                return -EINVAL;
        }
        return parse_string(p, v, field, why);
}

static int parse_socket_path(struct parse_ctx *p, const char *v, void *field, const char **why) {
        if (v[0] != '/') {
                *why = "must be an absolute path";
                return -EINVAL;
        }
        if (strlen(v) >= 108) {
                *why = "is longer than a UNIX socket path may be (107 bytes)";
                return -EINVAL;
        }
        return parse_string(p, v, field, why);
}

static int parse_mode(struct parse_ctx *p, const char *v, void *field, const char **why) {
        char *end;
        unsigned long m;

        errno = 0;
        m = strtoul(v, &end, 8);
        if (!*v || errno || *end || m > 0777) {
                *why = "expected an octal mode such as 0660";
                return -EINVAL;
        }
        *(mode_t *) field = (mode_t) m;
        return 0;
}

static int parse_uint_range(const char *v, uint64_t min, uint64_t max, uint64_t *out, const char **why) {
        if (parse_uint(v, max, out) < 0 || *out < min) {
                *why = "is not a whole number in range";
                return -EINVAL;
        }
        return 0;
}

static int parse_backlog(struct parse_ctx *p, const char *v, void *field, const char **why) {
        uint64_t n;

        if (parse_uint_range(v, 1, 65535, &n, why) < 0) {
                *why = "expected a whole number from 1 to 65535";
                return -EINVAL;
        }
        *(unsigned *) field = (unsigned) n;
        return 0;
}

static int parse_workers(struct parse_ctx *p, const char *v, void *field, const char **why) {
        uint64_t n;

        if (streq(v, "auto")) {
                *(unsigned *) field = 0;
                return 0;
        }
        if (parse_uint_range(v, 1, CONFIG_MAX_WORKERS, &n, why) < 0) {
                *why = "expected 'auto' (one per CPU) or a whole number from 1 to " STRINGIFY(CONFIG_MAX_WORKERS);
                return -EINVAL;
        }
        *(unsigned *) field = (unsigned) n;
        return 0;
}

static int parse_worker_scheduling(struct parse_ctx *p, const char *v, void *field, const char **why) {
        if (!streq(v, "inherit") && !streq(v, "batch")) {
                *why = "expected 'batch' or 'inherit'";
                return -EINVAL;
        }
        *(bool *) field = streq(v, "batch");
        return 0;
}

static int parse_max_conn(struct parse_ctx *p, const char *v, void *field, const char **why) {
        uint64_t n;

        if (parse_uint_range(v, 0, 10000000, &n, why) < 0) {
                *why = "expected a whole number from 0 (no limit) to 10000000";
                return -EINVAL;
        }
        *(unsigned *) field = (unsigned) n;
        return 0;
}

static int parse_buffered(struct parse_ctx *p, const char *v, void *field, const char **why) {
        uint64_t n;

        if (parse_size(v, &n) < 0 || n < 1024 || n > 64 * 1024 * 1024) {
                *why = "expected a size from 1K to 64M, such as 64K";
                return -EINVAL;
        }
        *(uint64_t *) field = n;
        return 0;
}

static int parse_timeout(struct parse_ctx *p, const char *v, void *field, const char **why) {
        uint64_t usec;

        if (parse_duration(v, &usec) < 0 || usec > 365ULL * 86400 * USEC_PER_SEC) {
                *why = "expected a duration such as 30s, 5min or 0 (none)";
                return -EINVAL;
        }
        *(uint64_t *) field = usec;
        return 0;
}

static int parse_store_after(struct parse_ctx *p, const char *v, void *field, const char **why) {
        if (parse_timeout(p, v, field, why) < 0) {
                *why = "expected a duration such as 1s or 500ms, or 0 (at once)";
                return -EINVAL;
        }
        return 0;
}

static int parse_prefix6(struct parse_ctx *p, const char *v, void *field, const char **why) {
        uint64_t n;

        if (parse_uint_range(v, 1, 128, &n, why) < 0) {
                *why = "expected a prefix length from 1 to 128, such as 64";
                return -EINVAL;
        }
        *(unsigned *) field = (unsigned) n;
        return 0;
}

/* "N/min" (the default unit), "N/s" or "N/h": per minute, with the number
 * as written for the burst (5/s lets 5 through at once). */
static int rate_parse(const char *v, unsigned *rate, unsigned *burst, const char **unit_out, const char **why) {
        const char *unit = "/min";
        uint64_t n;
        const char *slash = strchr(v, '/');
        char num[32];
        unsigned mult = 1;

        if ((slash ? (size_t) (slash - v) : strlen(v)) >= sizeof(num))
                goto bad;
        snprintf(num, sizeof(num), "%.*s", (int) (slash ? (size_t) (slash - v) : strlen(v)), v);
        if (slash && (streq(slash, "/s") || streq(slash, "/sec"))) {
                mult = 60;
                unit = "/s";
        } else if (slash && streq(slash, "/h")) {
                mult = 0;
                unit = "/h";
        } else if (slash && !streq(slash, "/min") && !streq(slash, "/m"))
                goto bad;
        if (parse_uint(num, 1000000, &n) < 0)
                goto bad;
        *burst = (unsigned) n;
        *unit_out = unit;
        if (mult == 0) {
                if (n && n < 60)
                        goto bad; /* finer than one a minute is not kept */
                n /= 60;
        } else
                n *= mult;
        *rate = (unsigned) n;
        return 0;
bad:
        *why = "expected connections per source such as 60/min, 5/s or 0 (none)";
        return -EINVAL;
}

static int parse_rate(struct parse_ctx *p, const char *v, void *field, const char **why) {
        return rate_parse(v, (unsigned *) field, &p->c->max_connection_burst, &p->c->max_connection_rate_unit, why);
}

static int parse_count(struct parse_ctx *p, const char *v, void *field, const char **why) {
        uint64_t n;

        if (parse_uint_range(v, 1, 127, &n, why) < 0) {
                *why = "expected a whole number from 1 to 127";
                return -EINVAL;
        }
        *(unsigned *) field = (unsigned) n;
        return 0;
}

static int parse_seconds(struct parse_ctx *p, const char *v, void *field, const char **why) {
        uint64_t usec;

        /* whole seconds, 1 to 32767: what Linux takes for keepalive times */
        if (parse_duration(v, &usec) < 0 || usec < USEC_PER_SEC || usec > 32767 * USEC_PER_SEC ||
            usec % USEC_PER_SEC) {
                *why = "expected whole seconds from 1s to 32767s (9h 6min 7s), such as 20s or 2min";
                return -EINVAL;
        }
        *(uint64_t *) field = usec;
        return 0;
}

static int parse_user_timeout(struct parse_ctx *p, const char *v, void *field, const char **why) {
        uint64_t usec;

        /* TCP_USER_TIMEOUT is an int of milliseconds */
        if (parse_duration(v, &usec) < 0 || usec / 1000 > INT32_MAX) {
                *why = "expected a duration up to 24d, such as 3min, or 0 (the kernel's default)";
                return -EINVAL;
        }
        *(uint64_t *) field = usec;
        return 0;
}

/* allow= and deny= take several prefixes, and add up over several lines. */
static int parse_cidr_list(struct parse_ctx *p, const char *v, struct cidr **list, size_t *n, const char **why) {
        _cleanup_free_ char *copy = strdup(v);
        char *tok, *save = NULL;

        if (!copy)
                return -ENOMEM;
        for (tok = strtok_r(copy, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
                struct cidr c, *g;

                const char *wrong;

                if (cidr_parse_why(tok, &c, &wrong) < 0) {
                        static __thread char buf[160];

                        /* name the prefix that is wrong when there are several */
                        if (streq(tok, v))
                                *why = wrong;
                        else {
                                snprintf(buf, sizeof(buf), "%s: %s", tok, wrong);
                                *why = buf;
                        }
                        return -EINVAL;
                }
                g = realloc(*list, (*n + 1) * sizeof(**list));
                if (!g)
                        return -ENOMEM;
                *list = g;
                (*list)[(*n)++] = c;
        }
        return 0;
}

static int parse_allow(struct parse_ctx *p, const char *v, void *field, const char **why) {
        return parse_cidr_list(p, v, &p->c->allow, &p->c->n_allow, why);
}

static int parse_deny(struct parse_ctx *p, const char *v, void *field, const char **why) {
        return parse_cidr_list(p, v, &p->c->deny, &p->c->n_deny, why);
}

#define FIELD(name) offsetof(struct config, name)

static const struct key {
        const char *name;
        key_parser parse;
        size_t offset;
} global_keys[] = {
        { "log_level", parse_level, FIELD(log_level) },
        { "log_connections", parse_bool_key, FIELD(log_connections) },
        { "control_socket", parse_socket_path, FIELD(control_socket) },
        { "control_socket_mode", parse_mode, FIELD(control_socket_mode) },
        { "admin_group", parse_group, FIELD(admin_group) },
        { "backlog", parse_backlog, FIELD(backlog) },
        { "workers", parse_workers, FIELD(workers) },
        { "worker_scheduling", parse_worker_scheduling, FIELD(worker_batch) },
        { "max_connections", parse_max_conn, FIELD(max_connections) },
        { "max_buffered", parse_buffered, FIELD(max_buffered) },
        { "idle_timeout", parse_timeout, FIELD(idle_timeout_usec) },
        { "shutdown_timeout", parse_timeout, FIELD(shutdown_timeout_usec) },
        { "store_after", parse_store_after, FIELD(store_after_usec) },
        { "max_lifetime", parse_timeout, FIELD(max_lifetime_usec) },
        { "max_connections_per_source", parse_max_conn, FIELD(max_connections_per_source) },
        { "source_prefix_ipv6", parse_prefix6, FIELD(source_prefix_ipv6) },
        { "max_connection_rate", parse_rate, FIELD(max_connection_rate) },
        { "allow", parse_allow, 0 },
        { "deny", parse_deny, 0 },
        { "keepalive", parse_bool_key, FIELD(keepalive) },
        { "keepalive_idle", parse_seconds, FIELD(keepalive_idle_usec) },
        { "keepalive_interval", parse_seconds, FIELD(keepalive_interval_usec) },
        { "keepalive_count", parse_count, FIELD(keepalive_count) },
        { "user_timeout", parse_user_timeout, FIELD(user_timeout_usec) },
};

/* The program of a type = exec service must be there and executable when
 * the settings load (at start, at a reload, and in --check-config), so a
 * typo is found then and not at the first client. */
static int check_program(const char *path, const char **why) {
        static __thread char buf[512];
        struct stat st;

        if (path[0] != '/') {
                *why = "the program's path must be absolute, such as /usr/bin/cat (no search in PATH)";
                return -EINVAL;
        }
        const char *wrong = NULL;

        if (stat(path, &st) < 0)
                wrong = strerror(errno);
        else if (!S_ISREG(st.st_mode))
                wrong = "not a regular file";
        else if (access(path, X_OK) < 0)
                wrong = errno == EACCES ? "not executable (Permission denied)" : strerror(errno);
        if (wrong) {
                snprintf(buf, sizeof(buf), "%s: %s", path, wrong);
                *why = buf;
                return -EINVAL;
        }
        return 0;
}

/* Whether words, as --check-config writes them back (quoted where they
 * must be), still fit on one line of the settings file after "key =". */
static bool words_fit(char *const *w, const char *key) {
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);

        if (!f)
                return true; /* checked again where it is printed: nothing lost */
        words_print(w, f);
        fclose(f);
        free(out);
        return strlen(key) + 2 + len <= INI_LINE_LIMIT - 3;
}

static int exec_key(struct parse_ctx *p, struct service_config *s, const char *name, const char *value,
                    const char **why) {
        char **w = NULL;
        int n;

        if (streq(name, "kill_timeout")) {
                uint64_t usec;

                if (parse_duration(value, &usec) < 0 || usec < USEC_PER_MSEC || usec > 3600 * USEC_PER_SEC) {
                        *why = "expected a duration from 1ms to 1h, such as 5s";
                        return -EINVAL;
                }
                s->kill_timeout_usec = usec;
                return 0;
        }
        n = words_split(value, &w, why);
        if (n < 0)
                return n;
        if (streq(name, "environment")) {
                /* several lines add up; an empty one clears, as in a unit */
                for (int i = 0; i < n; i++) {
                        const char *eq = strchr(w[i], '=');
                        char *one[] = { w[i], NULL };

                        if (!words_fit(one, "environment")) {
                                words_free(w);
                                *why = "a word too long once written back with its quotes: split it, or set it "
                                       "in the program";
                                return -EINVAL;
                        }

                        if (!eq || eq == w[i] || strspn(w[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                             "0123456789_") != (size_t) (eq - w[i])) {
                                words_free(w);
                                *why = "expected KEY=VALUE words, such as LANG=C.UTF-8 \"GREETING=hello there\"";
                                return -EINVAL;
                        }
                }
                if (!n) {
                        s->environment = words_free(s->environment);
                        s->n_environment = 0;
                        words_free(w);
                        return 0;
                }
                if (!s->environment) {
                        s->environment = w;
                        s->n_environment = (size_t) n;
                        return 0;
                }
                if (words_append(&s->environment, w) < 0) {
                        words_free(w);
                        return -ENOMEM;
                }
                s->n_environment += (size_t) n;
                return 0;
        }
        /* exec= */
        if (!n) {
                words_free(w);
                *why = "expected a program and its arguments, such as /usr/bin/cat";
                return -EINVAL;
        }
        if (check_program(w[0], why) < 0) {
                words_free(w);
                return -EINVAL;
        }
        if (!words_fit(w, "exec")) {
                words_free(w);
                *why = "too long once written back with its quotes (a settings line holds at most "
                       STRINGIFY(INI_LINE_LIMIT) " characters, less 3): put the command in a script";
                return -EINVAL;
        }
        words_free(s->exec_argv);
        s->exec_argv = w;
        s->exec_line = p->line;
        return 0;
}

/* type = forward's keys: backend= (lines add up), balance=, connect_timeout=. */
static int forward_key(struct parse_ctx *p, struct service_config *s, const char *name, const char *value,
                       const char **why) {
        if (streq(name, "splice")) {
                int b;

                if (parse_bool(value, &b) < 0) {
                        *why = "expected yes or no";
                        return -EINVAL;
                }
                s->splice = b;
                s->splice_line = p->line;
                return 0;
        }
        if (streq(name, "balance")) {
                int b = balance_from_name(value);

                if (b < 0) {
                        *why = "expected " BALANCE_NAMES;
                        return -EINVAL;
                }
                s->balance = (enum balance) b;
                return 0;
        }
        if (streq(name, "proxy_protocol")) {
                if (!streq(value, "v1") && !streq(value, "v2") && !streq(value, "none")) {
                        *why = "expected v1, v2 or none";
                        return -EINVAL;
                }
                s->proxy_protocol = streq(value, "none") ? 0 : value[1] - '0';
                return 0;
        }
        if (streq(name, "check")) {
                int r = check_parse(value, &s->check, why);
                char *out = NULL;
                size_t len = 0;
                FILE *f;

                if (r < 0 || !(f = open_memstream(&out, &len)))
                        return r;
                /* --check-config writes it back: it must fit on a line */
                check_print(&s->check, f);
                fclose(f);
                free(out);
                if (strlen("check =") + len > INI_LINE_LIMIT - 3) {
                        *why = "too long once written back with its quotes: use shorter strings";
                        return -EINVAL;
                }
                return 0;
        }
        if (streq(name, "check_interval")) {
                uint64_t usec;

                if (parse_duration(value, &usec) < 0 || usec < 100 * USEC_PER_MSEC || usec > 3600 * USEC_PER_SEC) {
                        *why = "expected a duration from 100ms to 1h, such as 2s";
                        return -EINVAL;
                }
                s->check.interval_usec = usec;
                return 0;
        }
        if (streq(name, "rise") || streq(name, "fall")) {
                uint64_t v;

                if (parse_uint(value, 100, &v) < 0 || v < 1) {
                        *why = "expected a number of checks in a row, from 1 to 100";
                        return -EINVAL;
                }
                *(streq(name, "rise") ? &s->check.rise : &s->check.fall) = (unsigned) v;
                return 0;
        }
        if (streq(name, "connect_timeout")) {
                uint64_t usec;

                if (parse_duration(value, &usec) < 0 || usec < USEC_PER_MSEC || usec > 300 * USEC_PER_SEC) {
                        *why = "expected a duration from 1ms to 5min, such as 5s";
                        return -EINVAL;
                }
                s->connect_timeout_usec = usec;
                return 0;
        }
        /* backend= */
        {
                const char *bad;
                int r = backends_parse(value, &s->backends, &s->n_backends, why, &bad);

                if (r == -EINVAL && bad) {
                        static __thread char msg[256];

                        snprintf(msg, sizeof(msg), "'%s': %s", bad, *why);
                        *why = msg;
                }
                if (!s->backend_line)
                        s->backend_line = p->line;
                return r;
        }
}

static int service_key(struct parse_ctx *p, int svc, const char *name, const char *value, const char **why) {
        struct service_config *s = &p->c->services[svc];
        char *copy, *tok, *save = NULL;
        int r = 0;

        /* limits of the service's own: they replace [tcpd]'s for it */
        if (streq(name, "max_connections")) {
                s->has_max_connections = true;
                return parse_max_conn(p, value, &s->max_connections, why);
        }
        if (streq(name, "allow")) {
                s->has_allow = true;
                return parse_cidr_list(p, value, &s->allow, &s->n_allow, why);
        }
        if (streq(name, "deny")) {
                s->has_deny = true;
                return parse_cidr_list(p, value, &s->deny, &s->n_deny, why);
        }
        if (streq(name, "proxy_protocol_from"))
                return parse_cidr_list(p, value, &s->proxy_from, &s->n_proxy_from, why);
        if (streq(name, "max_connections_per_source")) {
                s->has_per_source = true;
                return parse_max_conn(p, value, &s->max_connections_per_source, why);
        }
        if (streq(name, "max_connection_rate")) {
                s->has_rate = true;
                return rate_parse(value, &s->max_connection_rate, &s->max_connection_burst,
                                  &s->max_connection_rate_unit, why);
        }
        if (streq(name, "idle_timeout")) {
                s->has_idle_timeout = true;
                return parse_timeout(p, value, &s->idle_timeout_usec, why);
        }
        if (streq(name, "max_lifetime")) {
                s->has_max_lifetime = true;
                return parse_timeout(p, value, &s->max_lifetime_usec, why);
        }
        if (streq(name, "type")) {
                int t = s->name ? service_from_name(value) : -1;

                if (!s->name) {
                        *why = "a short form's type is its name; a [service NAME] section sets type=";
                        return -EINVAL;
                }
                if (t < 0) {
                        s->type_set = true; /* said here, not again as missing */
                        *why = "expected one of " SERVICE_NAMES_TEXT "nothing else in this version";
                        return -EINVAL;
                }
                s->type = (enum service_kind) t;
                s->type_set = true;
                return 0;
        }
        if (s->name && (streq(name, "exec") || streq(name, "environment") || streq(name, "kill_timeout")))
                return exec_key(p, s, name, value, why);
        if (s->name && (streq(name, "backend") || streq(name, "balance") || streq(name, "connect_timeout") ||
                        streq(name, "check") || streq(name, "check_interval") || streq(name, "rise") ||
                        streq(name, "fall") || streq(name, "proxy_protocol") || streq(name, "splice")))
                return forward_key(p, s, name, value, why);
        if (streq(name, "banner")) {
                size_t n = strlen(value);

                if (n > CONFIG_BANNER_MAX) {
                        *why = "a banner is one line of at most " STRINGIFY(CONFIG_BANNER_MAX) " characters";
                        return -EINVAL;
                }
                for (size_t i = 0; i < n; i++)
                        if ((unsigned char) value[i] < 0x20 || value[i] == 0x7f) {
                                *why = "a banner may not hold control characters";
                                return -EINVAL;
                        }
                free(s->banner);
                s->banner = n ? strdup(value) : NULL;
                return n && !s->banner ? -ENOMEM : 0;
        }
        if (!streq(name, "listen"))
                return -ENOENT;
        /* The first listen= line replaces the default; later ones add. */
        if (!s->listen_set) {
                listen_clear(s);
                s->listen_set = true;
        }
        copy = strdup(value);
        if (!copy)
                return -ENOMEM;
        for (tok = strtok_r(copy, " \t,", &save); tok && r == 0; tok = strtok_r(NULL, " \t,", &save)) {
                r = listen_add(s, tok, p->line, why);
                if (r == -EINVAL)
                        add_error(p->errs, "%s:%u: [%s] listen: bad address '%s': %s%s", p->path, p->line,
                                  p->section_label, tok, *why,
                                  strchr(value, '#') ? " ('#' starts a comment only at the start of a line)" : "");
        }
        free(copy);
        return r == -EINVAL ? -EALREADY : r;
}

/* Names that systemd's sockets and the fd store use for other things. */
static const char *const reserved_names[] = { "control",    "varlink",       "metrics",      "conn",
                                              "tcpd-state", "tcpd-settings", "tcpd-backends" };

/* The [service NAME] section's service, added at its first key. Returns
 * its index, or -1 after saying (once) what is wrong with the section. */
static int named_service(struct parse_ctx *p, const char *section) {
        const char *name = section + 7, *why = NULL;
        struct config *c = p->c;
        size_t len;

        while (*name == ' ')
                name++;
        len = strlen(name);
        for (size_t i = _SERVICE_BUILTIN_MAX; i < c->n_services; i++)
                if (streq(c->services[i].name, name))
                        return (int) i;
        if (!len)
                why = "a [service NAME] section needs a name, such as [service git]";
        else if (len > CONFIG_SERVICE_NAME_MAX || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != len ||
                 name[0] == '-' || name[0] == '_')
                why = "a service's name is 1 to 31 lower-case letters, digits, '-' and '_', starting with a letter or "
                      "digit";
        else if (service_builtin_from_name(name) >= 0)
                why = "that name is a type's short form: write its section as [NAME], or give the service another name";
        else
                for (size_t i = 0; i < ARRAY_SIZE(reserved_names); i++)
                        if (streq(name, reserved_names[i]))
                                why = "that name is reserved (control, varlink, metrics, conn, tcpd-state, "
                                      "tcpd-settings, tcpd-backends name other sockets under systemd)";
        if (!why && c->n_services == CONFIG_MAX_SERVICES)
                why = "at most " STRINGIFY(CONFIG_MAX_SERVICES) " services, the short forms included";
        if (why) {
                if (!streq(p->last_bad_section, section)) {
                        snprintf(p->last_bad_section, sizeof(p->last_bad_section), "%s", section);
                        add_error(p->errs, "%s:%u: [%s]: %s", p->path, p->line, section, why);
                }
                return -1;
        }
        c->services[c->n_services] = (struct service_config) { .name = strdup(name), .line = p->line,
                                                               .kill_timeout_usec = EXEC_KILL_TIMEOUT_USEC,
                                                               .connect_timeout_usec = FORWARD_CONNECT_TIMEOUT_USEC,
                                                               .splice = true,
                                                               .check = { .interval_usec = CHECK_INTERVAL_USEC,
                                                                          .rise = CHECK_RISE, .fall = CHECK_FALL } };
        if (!c->services[c->n_services].name) {
                add_error(p->errs, "%s:%u: out of memory", p->path, p->line);
                return -1;
        }
        return (int) c->n_services++;
}

/* Levenshtein's distance, for names of a few dozen characters. */
static size_t edit_distance(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b), row[65];

        if (la > 64 || lb > 64)
                return SIZE_MAX;
        for (size_t j = 0; j <= lb; j++)
                row[j] = j;
        for (size_t i = 1; i <= la; i++) {
                size_t diag = row[0];

                row[0] = i;
                for (size_t j = 1; j <= lb; j++) {
                        size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);

                        if (up + 1 < best)
                                best = up + 1;
                        if (row[j - 1] + 1 < best)
                                best = row[j - 1] + 1;
                        diag = up;
                        row[j] = best;
                }
        }
        return row[lb];
}

/* "did you mean 'max_connections'? known keys: ..." from the key table
 * itself, so that the list cannot drift from what is parsed. */
static const char *unknown_key_hint(const char *name, const char *const *names, size_t n) {
        static __thread char buf[1024];
        size_t best = SIZE_MAX, off = 0;
        const char *closest = NULL;

        for (size_t i = 0; i < n; i++) {
                size_t d = edit_distance(name, names[i]);

                if (d < best) {
                        best = d;
                        closest = names[i];
                }
        }
        if (closest && best <= 2)
                off = (size_t) snprintf(buf, sizeof(buf), "did you mean '%s'? ", closest);
        off += (size_t) snprintf(buf + off, sizeof(buf) - off, "known keys:");
        for (size_t i = 0; i < n && off < sizeof(buf); i++)
                off += (size_t) snprintf(buf + off, sizeof(buf) - off, "%s %s", i ? "," : "", names[i]);
        return buf;
}

/* [metrics]: where the scrape endpoint listens (one address; empty: off),
 * and who may scrape it. */
static int metrics_key(struct parse_ctx *p, const char *name, const char *value, const char **why) {
        struct config *c = p->c;

        if (streq(name, "allow")) {
                /* the first allow= replaces the default (loopback) */
                if (!c->metrics_has_allow) {
                        c->metrics_allow = mfree(c->metrics_allow);
                        c->n_metrics_allow = 0;
                        c->metrics_has_allow = true;
                }
                return parse_cidr_list(p, value, &c->metrics_allow, &c->n_metrics_allow, why);
        }
        if (streq(name, "deny"))
                return parse_cidr_list(p, value, &c->metrics_deny, &c->n_metrics_deny, why);
        if (!streq(name, "listen"))
                return -ENOENT;
        free(c->metrics_listen);
        c->metrics_listen = NULL;
        c->metrics_set = false;
        if (!*value)
                return 0;
        if (strpbrk(value, " \t,")) {
                *why = "one address, such as 127.0.0.1:9499 or [::1]:9499";
                return -EINVAL;
        }
        if (addr_parse_listen(value, &c->metrics_addr, &c->metrics_any, why) < 0)
                return -EINVAL;
        c->metrics_listen = strdup(value);
        if (!c->metrics_listen)
                return -ENOMEM;
        c->metrics_set = true;
        return 0;
}

static int config_handler(void *user, const char *section, const char *name, const char *value, int lineno) {
        struct parse_ctx *p = user;
        const char *why = NULL;
        int r = -ENOENT, svc;

        p->line = (unsigned) lineno;
        if (!*section) {
                add_error(p->errs, "%s:%u: key '%s' is outside any section (put it under [%s] or a service's section)",
                          p->path, p->line, name, GLOBAL_SECTION);
                return 1;
        }
        if (streq(section, GLOBAL_SECTION)) {
                for (size_t i = 0; i < ARRAY_SIZE(global_keys); i++)
                        if (streq(name, global_keys[i].name)) {
                                r = global_keys[i].parse(p, value, (char *) p->c + global_keys[i].offset, &why);
                                break;
                        }
                if (r == -ENOENT) {
                        const char *names[ARRAY_SIZE(global_keys)];

                        for (size_t i = 0; i < ARRAY_SIZE(global_keys); i++)
                                names[i] = global_keys[i].name;
                        why = unknown_key_hint(name, names, ARRAY_SIZE(names));
                }
        } else if (streq(section, "metrics")) {
                r = metrics_key(p, name, value, &why);
                if (r == -ENOENT) {
                        static const char *const names[] = { "listen", "allow", "deny" };

                        why = unknown_key_hint(name, names, ARRAY_SIZE(names));
                }
        } else if ((svc = service_builtin_from_name(section)) >= 0 ||
                   (strncmp(section, "service", 7) == 0 && (!section[7] || section[7] == ' '))) {
                if (svc < 0 && (svc = named_service(p, section)) < 0)
                        return 1; /* said once for the section */
                snprintf(p->section_label, sizeof(p->section_label), "%s", section);
                r = service_key(p, svc, name, value, &why);
                if (r == -ENOENT) {
                        static const char *const short_names[] = {
                                "listen", "banner", "max_connections", "allow", "deny", "max_connections_per_source",
                                "max_connection_rate", "idle_timeout", "max_lifetime", "proxy_protocol_from",
                        };
                        static const char *const names[] = {
                                "type", "listen", "banner", "max_connections", "allow", "deny",
                                "max_connections_per_source", "max_connection_rate", "idle_timeout", "max_lifetime",
                                "exec", "environment", "kill_timeout", "backend", "balance", "connect_timeout",
                                "check", "check_interval", "rise", "fall", "proxy_protocol", "proxy_protocol_from",
                                "splice",
                        };

                        why = p->c->services[svc].name ? unknown_key_hint(name, names, ARRAY_SIZE(names))
                                                       : unknown_key_hint(name, short_names, ARRAY_SIZE(short_names));
                }
        } else {
                /* One error per unknown section, not one per key in it. */
                if (!streq(p->last_bad_section, section)) {
                        snprintf(p->last_bad_section, sizeof(p->last_bad_section), "%s", section);
                        add_error(p->errs, "%s:%u: unknown section [%s] (known sections: [%s], [metrics], "
                                           "[service NAME] and the short forms: %.*s)",
                                  p->path, p->line, section, GLOBAL_SECTION, SERVICE_BUILTIN_NAMES_LEN,
                                  SERVICE_BUILTIN_NAMES_TEXT);
                }
                return 1;
        }

        /* errors are recorded here; returning 1 keeps inih's own return
         * value for real syntax errors */
        if (r == 0 || r == -EALREADY)
                return 1;
        if (r == -ENOENT)
                add_error(p->errs, "%s:%u: unknown key '%s' in section [%s] (%s)", p->path, p->line, name,
                          section, why);
        else if (r == -ENOMEM)
                add_error(p->errs, "%s:%u: out of memory", p->path, p->line);
        else
                add_error(p->errs, "%s:%u: [%s] %s: bad value '%s': %s%s", p->path, p->line, section, name, value,
                          why ? why : "invalid",
                          strchr(value, '#') ? " ('#' starts a comment only at the start of a line)" : "");
        return 1;
}

/* inih silently splits over-long lines; find them ourselves first. */
static void check_line_lengths(const char *path, const char *text, struct config_errors *errs) {
        unsigned line = 1;

        for (const char *s = text; *s; line++) {
                const char *nl = strchr(s, '\n');
                size_t len = nl ? (size_t) (nl - s) : strlen(s);

                if (len > INI_LINE_LIMIT - 3)
                        add_error(errs, "%s:%u: line is %zu characters long; at most %d are allowed", path, line,
                                  len, INI_LINE_LIMIT - 3);
                if (!nl)
                        break;
                s = nl + 1;
        }
}

/* What a [service NAME] section must have, once all of it is read. */
static void service_check(const char *path, const struct service_config *s, struct config_errors *errs) {
        if (!s->type_set)
                add_error(errs, "%s:%u: [service %s] has no type= (one of %.*s)", path, s->line, s->name,
                          SERVICE_NAMES_LEN, SERVICE_NAMES_TEXT);
        else if (s->type == SERVICE_KIND_exec && !s->exec_argv)
                add_error(errs, "%s:%u: [service %s] has type = exec but no exec= line (the program to run for each "
                                "connection, such as exec = /usr/bin/cat)",
                          path, s->line, s->name);
        else if (s->type != SERVICE_KIND_exec && s->exec_argv)
                add_error(errs, "%s:%u: [service %s] exec: a program is run only by a service of type = exec (this "
                                "one is %s)",
                          path, s->exec_line, s->name, service_name(s->type));
        else if (s->type == SERVICE_KIND_forward && !s->n_backends && !s->backend_line)
                add_error(errs, "%s:%u: [service %s] has type = forward but no backend= line (where its clients go, "
                                "such as backend = 10.0.0.5:5432 10.0.0.6:5432)",
                          path, s->line, s->name);
        else if (s->type != SERVICE_KIND_forward && s->splice_line)
                add_error(errs, "%s:%u: [service %s] splice: only a service of type = forward relays (this one is %s)",
                          path, s->splice_line, s->name, service_name(s->type));
        else if (s->type != SERVICE_KIND_forward && s->proxy_protocol)
                add_error(errs, "%s:%u: [service %s] proxy_protocol: only a service of type = forward sends a PROXY "
                                "header to its backends (to take one from a load balancer: proxy_protocol_from=)",
                          path, s->line, s->name);
        else if (s->type != SERVICE_KIND_forward && s->n_backends)
                add_error(errs, "%s:%u: [service %s] backend: only a service of type = forward has backends (this "
                                "one is %s)",
                          path, s->backend_line, s->name, service_name(s->type));
}

int config_load_string(const char *path, const char *text, struct config **ret, struct config_errors *errs) {
        struct parse_ctx p = { .errs = errs, .path = path };
        int r;

        *ret = NULL;
        p.c = config_new();
        if (!p.c)
                return -ENOMEM;
        p.c->path = strdup(path);
        p.c->source = strdup(text);
        if (!p.c->path || !p.c->source) {
                config_free(p.c);
                return -ENOMEM;
        }

        check_line_lengths(path, text, errs);
        if (errs->total == 0) {
                r = ini_parse_string(text, config_handler, &p);
                if (r > 0) {
                        add_error(errs, "%s:%d: syntax error (expected [section] or key = value)", path, r);
                        errors_sort_last(errs, strlen(path));
                }
                else if (r < 0 && errs->total == 0)
                        add_error(errs, "%s: could not be parsed", path);
        }
        for (size_t i = _SERVICE_BUILTIN_MAX; i < p.c->n_services; i++)
                service_check(path, &p.c->services[i], errs);
        if (errs->total > 0) {
                config_free(p.c);
                return -EINVAL;
        }
        *ret = p.c;
        return 0;
}

int config_load(const char *path, bool must_exist, struct config **ret, struct config_errors *errs) {
        int r;
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *text = NULL;
        struct stat st;
        size_t len = 0;

        *ret = NULL;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                if (errno == ENOENT && !must_exist) {
                        *ret = config_new();
                        return *ret ? 0 : -ENOMEM;
                }
                add_error(errs, "%s: cannot open: %s", path, strerror(errno));
                return -errno;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                add_error(errs, "%s: not a regular file", path);
                return -EINVAL;
        }
        if (st.st_size > CONFIG_MAX_SIZE) {
                add_error(errs, "%s: file is larger than %d bytes", path, CONFIG_MAX_SIZE);
                return -EFBIG;
        }
        text = malloc((size_t) st.st_size + 1);
        if (!text)
                return -ENOMEM;
        while (len < (size_t) st.st_size) {
                ssize_t n = read(fd, text + len, (size_t) st.st_size - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        add_error(errs, "%s: cannot read: %s", path, strerror(errno));
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        text[len] = 0;
        if (strlen(text) != len) {
                unsigned line = 1;
                for (const char *s = text; *s; s++)
                        line += *s == '\n';
                add_error(errs, "%s:%u: contains a NUL byte; not a text file", path, line);
                return -EINVAL;
        }
        r = config_load_string(path, text, ret, errs);
        if (r < 0)
                return r;
        r = config_resolve(*ret, errs);
        if (r < 0)
                *ret = config_free(*ret);
        return r;
}

int config_resolve(struct config *c, struct config_errors *errs) {
        /* backend names: looked up here, at load and reload, never on the
         * data path */
        for (size_t i = 0; i < c->n_services; i++) {
                struct service_config *s = &c->services[i];
                char why[320];

                if (backends_resolve(s->backends, s->n_backends, why, sizeof(why)) < 0)
                        add_error(errs, "%s:%u: [service %s] backend: %s", c->path ? c->path : "settings",
                                  s->backend_line, s->name, why);
        }
        return errs->total > 0 ? -EINVAL : 0;
}

/* One prefix a line (lines add up, and none grows past inih's limit); an
 * empty list as "key =". */
static void print_cidrs(FILE *f, const char *key, const struct cidr *list, size_t n) {
        char buf[64];

        if (!n)
                fprintf(f, "%s =\n", key);
        for (size_t i = 0; i < n; i++)
                fprintf(f, "%s = %s\n", key, cidr_format(&list[i], buf, sizeof(buf)));
}

void config_print(const struct config *c, FILE *f) {
        char buf[64];

        fprintf(f, "# effective settings%s%s\n", c->path ? " from " : " (defaults)", c->path ? c->path : "");
        fprintf(f, "[%s]\n", GLOBAL_SECTION);
        fprintf(f, "log_level = %s\n", log_level_to_string(c->log_level));
        fprintf(f, "log_connections = %s\n", c->log_connections ? "yes" : "no");
        fprintf(f, "control_socket = %s\n", c->control_socket);
        fprintf(f, "control_socket_mode = %04o\n", (unsigned) c->control_socket_mode);
        fprintf(f, "admin_group = %s\n", c->admin_group);
        fprintf(f, "backlog = %u\n", c->backlog);
        if (c->workers)
                fprintf(f, "workers = %u\n", c->workers);
        else
                fprintf(f, "workers = auto\n");
        fprintf(f, "worker_scheduling = %s\n", c->worker_batch ? "batch" : "inherit");
        fprintf(f, "max_connections = %u\n", c->max_connections);
        fprintf(f, "max_buffered = %llu\n", (unsigned long long) c->max_buffered);
        fprintf(f, "idle_timeout = %s\n", format_duration_exact(c->idle_timeout_usec, buf, sizeof(buf)));
        fprintf(f, "shutdown_timeout = %s\n", format_duration_exact(c->shutdown_timeout_usec, buf, sizeof(buf)));
        fprintf(f, "store_after = %s\n", format_duration_exact(c->store_after_usec, buf, sizeof(buf)));
        fprintf(f, "max_lifetime = %s\n", format_duration_exact(c->max_lifetime_usec, buf, sizeof(buf)));
        fprintf(f, "max_connections_per_source = %u\n", c->max_connections_per_source);
        fprintf(f, "source_prefix_ipv6 = %u\n", c->source_prefix_ipv6);
        if (c->max_connection_rate)
                fprintf(f, "max_connection_rate = %u%s\n", c->max_connection_burst, c->max_connection_rate_unit);
        else
                fprintf(f, "max_connection_rate = 0\n");
        print_cidrs(f, "allow", c->allow, c->n_allow);
        print_cidrs(f, "deny", c->deny, c->n_deny);
        fprintf(f, "keepalive = %s\n", c->keepalive ? "yes" : "no");
        fprintf(f, "keepalive_idle = %s\n", format_duration_exact(c->keepalive_idle_usec, buf, sizeof(buf)));
        fprintf(f, "keepalive_interval = %s\n", format_duration_exact(c->keepalive_interval_usec, buf, sizeof(buf)));
        fprintf(f, "keepalive_count = %u\n", c->keepalive_count);
        fprintf(f, "user_timeout = %s\n", format_duration_exact(c->user_timeout_usec, buf, sizeof(buf)));
        fprintf(f, "\n[metrics]\nlisten =%s%s\n", c->metrics_listen ? " " : "", c->metrics_listen ? c->metrics_listen : "");
        print_cidrs(f, "allow", c->metrics_allow, c->n_metrics_allow);
        print_cidrs(f, "deny", c->metrics_deny, c->n_metrics_deny);
        for (size_t i = 0; i < c->n_services; i++) {
                const struct service_config *s = &c->services[i];

                if (s->name)
                        fprintf(f, "\n[service %s]\ntype = %s\n", s->name, service_name(s->type));
                else
                        fprintf(f, "\n[%s]\n", service_name(s->type));
                if (i == 0)
                        fprintf(f, "# listen= is bound when tcpd binds its own sockets; under systemd the socket\n"
                                   "# units decide (ListenStream=), and a listen= here is not bound\n");
                if (!s->n_listen)
                        fprintf(f, "listen =\n");
                for (size_t j = 0; j < s->n_listen; j++)
                        fprintf(f, "listen = %s\n", s->listen[j].text);
                /* inih takes " ;" for the start of a comment: a banner that
                 * begins with ';' (written "banner =;...") prints as it came */
                fprintf(f, "banner =%s%s\n", s->banner && s->banner[0] != ';' ? " " : "",
                        s->banner ? s->banner : "");
                if (s->exec_argv) {
                        fprintf(f, "exec =");
                        words_print(s->exec_argv, f);
                        fprintf(f, "\n");
                }
                /* a word a line: lines add up, and each fits on one */
                for (size_t j = 0; s->environment && s->environment[j]; j++) {
                        char *one[] = { s->environment[j], NULL };

                        fprintf(f, "environment =");
                        words_print(one, f);
                        fprintf(f, "\n");
                }
                if (s->type == SERVICE_KIND_exec)
                        fprintf(f, "kill_timeout = %s\n", format_duration_exact(s->kill_timeout_usec, buf, sizeof(buf)));
                /* a backend a line: lines add up, and each fits on one */
                for (size_t j = 0; j < s->n_backends; j++)
                        fprintf(f, "backend = %s\n", s->backends[j].text);
                if (s->type == SERVICE_KIND_forward) {
                        fprintf(f, "balance = %s\n", balance_name(s->balance));
                        fprintf(f, "connect_timeout = %s\n",
                                format_duration_exact(s->connect_timeout_usec, buf, sizeof(buf)));
                        if (s->proxy_protocol)
                                fprintf(f, "proxy_protocol = v%u\n", s->proxy_protocol);
                        fprintf(f, "splice = %s\n", s->splice ? "yes" : "no");
                        fprintf(f, "check =");
                        check_print(&s->check, f);
                        fprintf(f, "\ncheck_interval = %s\nrise = %u\nfall = %u\n",
                                format_duration_exact(s->check.interval_usec, buf, sizeof(buf)), s->check.rise,
                                s->check.fall);
                }
                /* a service's own limits, only where it has them */
                if (s->has_max_connections)
                        fprintf(f, "max_connections = %u\n", s->max_connections);
                if (s->has_allow)
                        print_cidrs(f, "allow", s->allow, s->n_allow);
                if (s->has_deny)
                        print_cidrs(f, "deny", s->deny, s->n_deny);
                if (s->has_per_source)
                        fprintf(f, "max_connections_per_source = %u\n", s->max_connections_per_source);
                if (s->has_rate && !s->max_connection_rate)
                        fprintf(f, "max_connection_rate = 0\n");
                else if (s->has_rate)
                        fprintf(f, "max_connection_rate = %u%s\n", s->max_connection_burst,
                                s->max_connection_rate_unit);
                if (s->has_idle_timeout)
                        fprintf(f, "idle_timeout = %s\n", format_duration_exact(s->idle_timeout_usec, buf, sizeof(buf)));
                if (s->has_max_lifetime)
                        fprintf(f, "max_lifetime = %s\n", format_duration_exact(s->max_lifetime_usec, buf, sizeof(buf)));
                if (s->n_proxy_from)
                        print_cidrs(f, "proxy_protocol_from", s->proxy_from, s->n_proxy_from);
        }
}
