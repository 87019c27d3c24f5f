/* type = forward: its backends. The settings give a list (parsed here
 * without a lookup: names are resolved at load and reload only, never on
 * the data path); the workers share a pool built from it, whose per-backend
 * state (up or down, an admin's drain, the counters) lives on across
 * reloads, found again by address. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "addr.h"

#define BACKENDS_MAX 64
#define CHECK_INTERVAL_USEC (2 * 1000 * 1000ULL)
#define CHECK_RISE 2
#define CHECK_FALL 3
#define CHECK_STRING_MAX 512
#define FORWARD_CONNECT_TIMEOUT_USEC (5 * 1000 * 1000ULL)

struct check_spec;

enum balance { BALANCE_ROUNDROBIN, BALANCE_LEASTCONN, BALANCE_SOURCE, _BALANCE_MAX };
#define BALANCE_NAMES "roundrobin, leastconn or source"

/* One word of a backend= line: HOST:PORT as written, and its address once
 * resolved (at once for a numeric one). */
struct backend_spec {
        char *text;
        union sockaddr_in46 addr;
        bool resolved;
};

/* Adds the words of a backend= line to *list. Returns 0, or -EINVAL with
 * the reason in *why (the bad word in *bad, when there is one). */
int backends_parse(const char *value, struct backend_spec **list, size_t *n, const char **why, const char **bad);
void backends_free(struct backend_spec *list, size_t n);
/* check= as written: "connect", or words of "send STRING expect STRING"
 * (or "expect STRING" alone, for a server that speaks first). */
int check_parse(const char *value, struct check_spec *c, const char **why);
void check_spec_done(struct check_spec *c);
/* Back as a settings line would have it, after "check =". */
void check_print(const struct check_spec *c, FILE *f);

/* Resolves the names among them (getaddrinfo: the first address). 0, or
 * -EHOSTUNREACH with what failed in err. */
int backends_resolve(struct backend_spec *list, size_t n, char *err, size_t err_size);
const char *balance_name(enum balance b);
int balance_from_name(const char *s);

/* How a backend's health is checked (check=): a connect, or a connect, a
 * string sent (when send is set) and one that must come back (expect). */
struct check_spec {
        char *send, *expect; /* NULL for a plain connect */
        uint64_t interval_usec;
        unsigned rise, fall;
};

enum check_result {
        CHECK_NONE,     /* not checked yet */
        CHECK_OK,
        CHECK_REFUSED,  /* the connect failed (check_errno says how) */
        CHECK_TIMEOUT,
        CHECK_MISMATCH, /* the answer did not hold expect (or ended first) */
        _CHECK_RESULT_MAX,
};
const char *check_result_name(enum check_result r);

enum backend_admin {
        BACKEND_ENABLED,
        BACKEND_DRAIN,    /* no new clients; those it has stay */
        BACKEND_DISABLED, /* no new clients (and checks still run) */
        _BACKEND_ADMIN_MAX,
};
const char *backend_admin_name(enum backend_admin a);

/* What outlives a reload: shared by the old and the new pool while both
 * exist. Written by the workers and the control plane: relaxed atomics. */
struct backend_state {
        unsigned refs; /* atomic */
        uint8_t up;    /* 0: down (a failed connect, or a check) */
        uint8_t admin; /* enum backend_admin */
        uint32_t open; /* connections to it now */
        uint64_t total, failed; /* connections made, connects that failed */
        uint64_t bytes_in, bytes_out; /* from clients to it, from it to clients */
        /* the health check's, written by the control plane only */
        uint8_t last_check;   /* enum check_result */
        int32_t check_errno;  /* with CHECK_REFUSED */
        uint16_t ok_run, fail_run; /* checks in a row that passed, that failed */
        uint64_t checks, checks_failed;
};

struct backend {
        char *text; /* as written */
        union sockaddr_in46 addr;
        struct backend_state *st;
};

struct backend_pool {
        unsigned refs; /* atomic: the settings' copies and each connection */
        char *service; /* its name, for logs and lists */
        enum balance balance;
        uint64_t connect_timeout_usec;
        struct check_spec check;
        unsigned proxy_protocol; /* the PROXY header sent to a backend first: 0 none, 1, 2 */
        bool splice; /* large transfers through the worker's pipe */
        uint64_t rr; /* atomic: round robin's next */
        size_t n;
        struct backend b[];
};

/* From a forward service's resolved backends; old (NULL for none) is the
 * pool the service had, whose state carries over for the same addresses. */
struct service_config;
struct backend_pool *backend_pool_new(const struct service_config *s, const struct backend_pool *old);
struct backend_pool *backend_pool_ref(struct backend_pool *p);
struct backend_pool *backend_pool_unref(struct backend_pool *p);

/* A backend for a client: one that is up, enabled, not
 * in tried (bit i: backend i), by the pool's balance. -1 when none is. */
int backend_pick(struct backend_pool *p, const union sockaddr_in46 *client, uint64_t tried, uint64_t now);
/* Whether any backend could take a client now (no connect tried). */
bool backend_any_usable(struct backend_pool *p, uint64_t now);
/* A connect to backend i failed: down until its checks pass again. */
void backend_failed(struct backend_pool *p, size_t i, uint64_t now);
/* A connect to backend i worked. */
void backend_connected(struct backend_pool *p, size_t i);
