/* Live events for tcpctl monitor: workers note what happens to their
 * connections (connected, closed and why, refused and by which rule) and
 * hand them to the control plane a batch at a time; the control plane
 * writes them to every monitor client that keeps up and counts what it had
 * to drop for one that does not. Nothing of this runs while no monitor is
 * connected but one relaxed atomic load per accept and close. */
#pragma once

#include <stdint.h>

#include "addr.h"
#include "mailbox.h"

struct loop;

enum monitor_type {
        MONITOR_CONNECTED,
        MONITOR_CLOSED,
        MONITOR_REFUSED,
};

struct monitor_event {
        uint8_t type;
        uint8_t service;
        uint8_t why; /* enum close_reason or enum refusal */
        uint32_t worker;
        uint64_t id; /* 0 for a refusal */
        uint64_t time_usec; /* CLOCK_REALTIME */
        uint64_t bytes_in, bytes_out;
        union sockaddr_in46 peer;
        union sockaddr_in46 backend; /* a relay's (type = forward), when closed; AF_UNSPEC otherwise */
};

#define MONITOR_BATCH 256
/* Batches on their way to the control plane, over all workers; past this
 * the workers drop events (and count them) rather than queue without end. */
#define MONITOR_MAX_IN_FLIGHT 64

struct monitor_batch {
        struct msg msg;
        void *owner; /* the daemon's (struct tcpd) */
        size_t n;
        struct monitor_event ev[MONITOR_BATCH];
};

/* Whether some monitor listens (any thread). */
bool monitor_active(const struct loop *l);
/* Worker side: queue an event; sent at the end of the loop's batch. */
void monitor_note(struct loop *l, const struct monitor_event *e);
void monitor_flush(struct loop *l);
