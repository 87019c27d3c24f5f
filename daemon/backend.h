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
#define FORWARD_CONNECT_TIMEOUT_USEC (5 * 1000 * 1000ULL)
/* Without a health check, a backend that failed is tried again after this. */
#define BACKEND_RETRY_USEC (2 * 1000 * 1000ULL)

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
/* Resolves the names among them (getaddrinfo: the first address). 0, or
 * -EHOSTUNREACH with what failed in err. */
int backends_resolve(struct backend_spec *list, size_t n, char *err, size_t err_size);
const char *balance_name(enum balance b);
int balance_from_name(const char *s);

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
        uint64_t retry_at; /* CLOCK_MONOTONIC: a down backend gets a client again from then */
        uint64_t total, failed; /* connections made, connects that failed */
        uint64_t bytes_in, bytes_out; /* from clients to it, from it to clients */
};

struct backend {
        char *text; /* as written */
        union sockaddr_in46 addr;
        struct backend_state *st;
};

struct backend_pool {
        unsigned refs; /* atomic: the settings' copies and each connection */
        enum balance balance;
        uint64_t connect_timeout_usec;
        uint64_t rr; /* atomic: round robin's next */
        size_t n;
        struct backend b[];
};

/* From a forward service's resolved backends; old (NULL for none) is the
 * pool the service had, whose state carries over for the same addresses. */
struct backend_pool *backend_pool_new(const struct backend_spec *specs, size_t n, enum balance balance,
                                      uint64_t connect_timeout_usec, const struct backend_pool *old);
struct backend_pool *backend_pool_ref(struct backend_pool *p);
struct backend_pool *backend_pool_unref(struct backend_pool *p);

/* A backend for a client: one that is up (or due a retry), enabled, not
 * in tried (bit i: backend i), by the pool's balance. -1 when none is. */
int backend_pick(struct backend_pool *p, const union sockaddr_in46 *client, uint64_t tried, uint64_t now);
/* Whether any backend could take a client now (no connect tried). */
bool backend_any_usable(struct backend_pool *p, uint64_t now);
/* A connect to backend i failed: down until a retry. */
void backend_failed(struct backend_pool *p, size_t i, uint64_t now);
/* A connect to backend i worked. */
void backend_connected(struct backend_pool *p, size_t i);
