/* Connections from a load balancer that speaks the PROXY protocol
 * (proxy_protocol_from=): its header is read first, before admission, so
 * that everything after it (allow and deny, per-source limits and rates,
 * list, logs, monitor, a program's environment) sees the real client. */
#pragma once

#include <stdbool.h>

#include "loop.h"

/* How long a peer may take to send its header. */
#define PROXY_HEADER_TIMEOUT_USEC (3 * 1000 * 1000ULL)

/* Whether svc takes a PROXY header from peer. */
bool proxied_from(const struct loop *l, unsigned svc, const union sockaddr_in46 *peer);
/* Waits for fd's header (takes fd). */
void proxied_start(struct loop *l, int fd, const union sockaddr_in46 *peer, unsigned svc, uint32_t local);
void proxied_handle(struct loop *l, struct proxied *p, uint32_t events);
/* When the oldest one's header is due (there must be one). */
uint64_t proxied_deadline(const struct loop *l);
/* Refuses those whose header is late. Returns when to look again, or 0. */
uint64_t proxied_expire(struct loop *l);
/* Closes every one still waiting (a stop). */
void proxied_close_all(struct loop *l);
/* Frees those that ended in this batch. */
void proxied_reap(struct loop *l);
struct conn;
/* A connection of a service that takes headers from some peers, from
 * another: refused (true) when its first bytes are a PROXY signature;
 * otherwise it is not looked at again. */
bool proxied_refuse_header(struct loop *l, struct conn *c);
