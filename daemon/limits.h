/* Who may connect: allow/deny lists, a global limit, and per-source limits
 * on open connections and on the rate of new ones. Checked right after
 * accept(); a refused connection is reset at once. */
#pragma once

#include <stdint.h>

#include "addr.h"

struct loop;
struct loop_shared;

enum refusal {
        ADMIT,
        REFUSE_DENY,        /* matched deny= */
        REFUSE_NOT_ALLOWED, /* allow= is set and did not match */
        REFUSE_MAX,         /* max_connections */
        REFUSE_PER_SOURCE,  /* max_connections_per_source */
        REFUSE_RATE,        /* max_connection_rate */
        REFUSE_NO_MEMORY,
        REFUSE_SETTINGS,    /* no settings loaded: every client is refused */
        REFUSE_SPAWN,       /* type = exec: the program could not be started */
        REFUSE_NO_BACKEND,  /* type = forward: no backend is up, or none took the connection */
        REFUSE_PROXY,       /* a PROXY header missing, broken, late, or from a peer not allowed to send one */
        REFUSE_FD_LIMIT,    /* type = forward: the open-files budget has no room for another relay */
        _REFUSE_MAX,
};

const char *refusal_name(enum refusal r);

/* A client address (IPv6 grouped by its prefix) with its open connections
 * and its token bucket. Tracked only while a per-source limit is set. */
struct source {
        uint64_t key;
        uint32_t open;
        uint32_t tokens_milli; /* thousandths of a connection */
        uint32_t rate, burst;  /* per minute, and at once: its service's, or [tcpd]'s */
        uint64_t refilled;     /* CLOCK_MONOTONIC usec */
};

/* Decides on a new connection from peer (already normalised). On ADMIT,
 * *src is the source to pass to limits_release() when it closes (NULL when
 * no per-source limit is set). */
enum refusal limits_admit(struct loop *l, const union sockaddr_in46 *peer, unsigned svc, struct source **src);
void limits_release(struct loop *l, struct source *src);
/* The count behind max_connections: limits_admit() adds to it; adopted
 * connections add with limits_open_add(); every close subtracts. */
void limits_open_add(struct loop *l, unsigned svc);
void limits_open_sub(struct loop *l, unsigned svc);
/* Forgets sources with no connection and a full bucket; call now and then. */
void limits_sweep(struct loop *l);
void limits_shared_done(struct loop_shared *sh);
/* Recounts every open connection's source after the limits changed. */
void limits_rebuild(struct loop *l);
