/* What the control plane asks of a loop, as messages: list connections,
 * kick some, apply new settings, stop. Each runs on the loop that owns the
 * connections; list and kick post themselves back with their results. */
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
};

struct conn_filter {
        bool has_cidr;
        struct cidr cidr;
};

/* A request that goes to a loop and comes back to reply_to with done(). */
struct op {
        struct msg msg;
        struct loop *loop;
        struct mailbox *reply_to;
        msg_fn done;
        void *userdata; /* the requester's; NULL once it went away */
        int error; /* negative errno when the loop could not do it */
};

struct list_op {
        struct op op;
        struct conn_filter filter;
        struct conn_info *items;
        size_t n;
};

struct kick_op {
        struct op op;
        struct conn_filter filter;
        bool all;
        uint64_t *ids; /* when n_ids > 0, only these */
        size_t n_ids;
        uid_t uid; /* who asked, for the log */
        pid_t pid;
        uint64_t *kicked;
        size_t n_kicked;
};

void list_op_post(struct list_op *op);
void kick_op_post(struct kick_op *op);
void list_op_free(struct list_op *op);
void kick_op_free(struct kick_op *op);

bool conn_filter_match(const struct conn_filter *f, const union sockaddr_in46 *peer);

/* Fire and forget. */
int loop_post_settings(struct loop *l, const struct loop_settings *s);
enum stop_mode {
        STOP_DRAIN,    /* flush and close every connection */
        STOP_NOW,      /* close every connection at once */
        STOP_HANDOVER, /* leave them open in systemd's fd store */
};
int loop_post_stop(struct loop *l, enum stop_mode mode);
