/* What the control plane asks of the loops, as messages: list connections,
 * kick some, apply new settings, watch or retire a listener, stop. Each runs
 * on the thread of the loop that owns the connections. List and kick travel
 * from worker to worker, each adding its part, and the last one posts the
 * result back: one message at a time, no gathering, and a worker needs no
 * lock to read its own connections. */
#pragma once

#include <sys/types.h>

#include "addr.h"
#include "loop.h"
#include "mailbox.h"

struct conn_info {
        uint64_t id;
        uint8_t service;
        const char *state; /* a static string */
        union sockaddr_in46 peer, local;
        uint64_t connected_usec, age_usec, idle_usec;
        uint64_t bytes_in, bytes_out;
        bool has_tcp; /* what the kernel knows (TCP_INFO), when asked for */
        uint32_t rtt_usec, rttvar_usec, retransmits, cwnd, unacked;
};

/* What list and kick select by; every condition set must hold. */
struct conn_filter {
        bool has_cidr;
        struct cidr cidr;
        int service;           /* -1: any */
        uint64_t idle_over;    /* usec; 0: any */
        uint64_t older_than;   /* usec; 0: any */
};

#define CONN_FILTER_ANY { .service = -1 }
bool conn_filter_set(const struct conn_filter *f);

/* A request that visits every loop in turn and comes back to reply_to
 * with done(). */
struct op {
        struct msg msg;
        struct loop **loops;
        size_t n_loops, hop; /* hop: the loop it is on */
        struct mailbox *reply_to;
        msg_fn done;
        void *userdata; /* the requester's; NULL once it went away */
        int error; /* negative errno when the loop could not do it */
};

struct list_op {
        struct op op;
        struct conn_filter filter;
        bool tcp_info;
        struct conn_info *items; /* sorted by id when it comes back */
        size_t n, cap;
};

struct kick_op {
        struct op op;
        struct conn_filter filter;
        bool all;
        bool reset; /* close with an RST instead of a FIN */
        uint64_t *ids; /* when n_ids > 0, only these */
        size_t n_ids;
        uid_t uid; /* who asked, for the log */
        pid_t pid;
        uint64_t *kicked;
        size_t n_kicked, cap;
};

void list_op_post(struct list_op *op);
void kick_op_post(struct kick_op *op);
void list_op_free(struct list_op *op);
void kick_op_free(struct kick_op *op);

struct conn;
bool conn_filter_match(const struct conn_filter *f, const struct conn *c, uint64_t now);

/* Fire and forget. */
int loop_post_settings(struct loop *l, const struct loop_settings *s);
/* Each loop watches li from when the message runs (taking a reference). */
int loop_post_add_listener(struct loop *l, struct listener *li);
/* Each loop stops watching li and drops its reference. */
int loop_post_retire_listener(struct loop *l, struct listener *li);
enum stop_mode {
        STOP_DRAIN,    /* flush and close every connection */
        STOP_NOW,      /* close every connection at once */
        STOP_HANDOVER, /* leave them open in systemd's fd store */
};
int loop_post_stop(struct loop *l, enum stop_mode mode);
