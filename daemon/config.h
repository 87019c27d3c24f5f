/* tcpd's settings: the INI file, its defaults and validation. Pure: reads a
 * file or a string, never touches sockets. */
#pragma once

#include "services/list.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "addr.h"
#include "backend.h"

/* The service types (services/list.h). The built-ins come first; each has
 * a short form, a section of its own named as the type. */
#define SERVICE_KIND(name) SERVICE_KIND_##name,
enum service_kind {
        SERVICE_TYPES(SERVICE_KIND)
        _SERVICE_MAX,
};
#undef SERVICE_KIND
#define SERVICE_COUNT(name) +1
#define _SERVICE_BUILTIN_MAX (0 SERVICE_BUILTINS(SERVICE_COUNT))
/* the one the settings and a connection without a saved state default to */
#define SERVICE_ECHO SERVICE_KIND_echo
/* "echo, discard, ...", for messages */
#define SERVICE_NAME_TEXT(name) #name ", "
#define SERVICE_NAMES_TEXT SERVICE_TYPES(SERVICE_NAME_TEXT)
#define SERVICE_NAMES_LEN ((int) sizeof(SERVICE_NAMES_TEXT) - 3) /* without the last ", " */
/* "echo, discard, ...": the short forms */
#define SERVICE_BUILTIN_NAMES_TEXT SERVICE_BUILTINS(SERVICE_NAME_TEXT)
#define SERVICE_BUILTIN_NAMES_LEN ((int) sizeof(SERVICE_BUILTIN_NAMES_TEXT) - 3)

/* A banner is one line, sent with CRLF when a client connects. */
#define CONFIG_BANNER_MAX 160

const char *service_name(enum service_kind k);
/* A type by its name, or -ENOENT. */
int service_from_name(const char *name);
/* A short form's type by its section name, or -ENOENT. */
int service_builtin_from_name(const char *name);
/* A service's kill_timeout when none is set. */
#define EXEC_KILL_TIMEOUT_USEC (5 * 1000 * 1000ULL)


struct listen_spec {
        union sockaddr_in46 addr;
        bool any; /* only a port was given: every address, IPv6 dual-stack */
        char *text;
        unsigned line;
};

/* A service: the short forms [echo], [discard], ... (one for each
 * built-in type, always there, named as their type, first in the array), then any
 * [service NAME] sections, in the order the file has them. */
#define CONFIG_MAX_SERVICES 32
#define CONFIG_SERVICE_NAME_MAX 31
struct service_config {
        char *name; /* NULL for a short form: named as its type */
        enum service_kind type;
        unsigned id; /* in the registry (registry.h), set once the settings are taken */
        bool type_set;
        unsigned line; /* where its section starts */
        struct listen_spec *listen;
        size_t n_listen;
        bool listen_set; /* a listen= line replaced the default */
        char *banner;    /* NULL: none */
        /* The service's own limits, in place of [tcpd]'s where set. */
        bool has_max_connections, has_allow, has_deny;
        bool has_per_source, has_rate, has_idle_timeout, has_max_lifetime;
        unsigned max_connections;
        unsigned max_connections_per_source;
        unsigned max_connection_rate, max_connection_burst; /* as [tcpd]'s */
        const char *max_connection_rate_unit;
        uint64_t idle_timeout_usec, max_lifetime_usec;
        struct cidr *allow, *deny;
        size_t n_allow, n_deny;
        /* load balancers whose PROXY header it takes (proxy_protocol_from=) */
        struct cidr *proxy_from;
        size_t n_proxy_from;
        /* type = exec: the program and its arguments (argv[0] is the
         * absolute path), extra environment (KEY=VALUE), and how long a
         * program may take to exit after SIGTERM before SIGKILL */
        char **exec_argv;
        unsigned exec_line;
        char **environment;
        size_t n_environment;
        uint64_t kill_timeout_usec;
        /* type = forward: its backends (as written; resolved by
         * config_load), how a client's is picked, how long a connect may
         * take before the next backend is tried */
        struct backend_spec *backends;
        size_t n_backends;
        unsigned backend_line;
        enum balance balance;
        uint64_t connect_timeout_usec;
        struct check_spec check; /* check=, check_interval=, rise=, fall= */
        unsigned proxy_protocol; /* the PROXY header it sends its backends: 0 none, 1 or 2 */
        bool splice; /* splice= (yes): large transfers through a pipe */
        unsigned splice_line;
};

struct config {
        char *path; /* NULL when only defaults apply */
        char *source; /* the text it was loaded from (NULL for the defaults) */
        int log_level;
        bool log_connections;
        char *control_socket;
        mode_t control_socket_mode;
        char *admin_group;
        unsigned backlog;
        unsigned workers; /* 0: one per CPU tcpd may run on */
        bool worker_batch; /* worker_scheduling = batch (the default): SCHED_BATCH for the workers */
        unsigned max_connections; /* 0: limited only by open files */
        uint64_t max_buffered;
        uint64_t idle_timeout_usec;     /* 0: none */
        uint64_t shutdown_timeout_usec;
        uint64_t store_after_usec; /* store_after=: a connection's age before it goes into the fd store */
        uint64_t max_lifetime_usec;     /* 0: none */
        unsigned max_connections_per_source; /* 0: no limit */
        unsigned source_prefix_ipv6;    /* IPv6 sources grouped by this prefix */
        unsigned max_connection_rate;   /* new connections per source per minute; 0: none */
        unsigned max_connection_burst;  /* as many at once: the number written, in its unit */
        const char *max_connection_rate_unit; /* "/s", "/min" or "/h", as written */
        struct cidr *allow, *deny;
        size_t n_allow, n_deny;
        bool keepalive;
        uint64_t keepalive_idle_usec, keepalive_interval_usec;
        unsigned keepalive_count;
        uint64_t user_timeout_usec;     /* 0: the kernel's default */
        struct service_config services[CONFIG_MAX_SERVICES];
        size_t n_services;
        /* [metrics]: the scrape endpoint (GET /metrics), off without an
         * address; who may scrape (allow: loopback unless set) */
        bool metrics_set;
        union sockaddr_in46 metrics_addr;
        bool metrics_any;
        char *metrics_listen; /* as written */
        bool metrics_has_allow;
        struct cidr *metrics_allow, *metrics_deny;
        size_t n_metrics_allow, n_metrics_deny;
};

/* A service's name: its own, or its type's for a short form. */
const char *service_config_name(const struct service_config *s);
/* The service named name, or NULL. */
const struct service_config *config_service(const struct config *c, const char *name);

#define CONFIG_MAX_ERRORS 16
#define CONFIG_MAX_WORKERS 256

struct config_errors {
        char *msg[CONFIG_MAX_ERRORS];
        size_t n;     /* kept */
        size_t total; /* found */
};

void config_errors_clear(struct config_errors *e);

/* The defaults, as if from an empty file. */
struct config *config_new(void);
struct config *config_free(struct config *c);
/* Looks up the backend names of forward services (config_load does;
 * config_load_string does not, so that a fuzzer never asks a resolver). */
int config_resolve(struct config *c, struct config_errors *errs);

/* Loads path. A missing file is an error only if must_exist; then the
 * defaults apply. Returns 0 and *ret, or a negative errno with each problem
 * ("FILE:LINE: ...") in errs. */
int config_load(const char *path, bool must_exist, struct config **ret, struct config_errors *errs);
/* Same, from a string, naming it path in messages. */
int config_load_string(const char *path, const char *text, struct config **ret, struct config_errors *errs);

/* The effective settings, as an INI file that would produce them. */
void config_print(const struct config *c, FILE *f);
