/* Loop-side handlers for the control plane's requests. */
#include <stdio.h>
#include <sys/socket.h>

#include "conn.h"
#include "fdstore.h"
#include "log.h"
#include "ops.h"

bool conn_filter_match(const struct conn_filter *f, const union sockaddr_in46 *peer) {
        return !f->has_cidr || cidr_match(&f->cidr, peer);
}

static void op_reply(struct op *op) {
        mailbox_post(op->reply_to, &op->msg, op->done);
}

static void list_run(struct msg *m) {
        struct list_op *op = (struct list_op *) m;
        struct loop *l = op->op.loop;
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        size_t n = 0;

        /* A snapshot in a compact binary form; the control plane turns it
         * into one reply per connection as its client reads them. */
        op->items = calloc(l->stats.open ? l->stats.open : 1, sizeof(*op->items));
        if (!op->items) {
                op->op.error = -ENOMEM;
                op_reply(&op->op);
                return;
        }
        for (struct conn *c = l->head; c; c = c->next) {
                struct conn_info *i;
                socklen_t len = sizeof(i->local);

                if (!conn_filter_match(&op->filter, &c->peer))
                        continue;
                i = &op->items[n++];
                i->id = c->id;
                i->service = c->service;
                i->state = conn_state_name(c);
                i->peer = c->peer;
                if (getsockname(c->fd, &i->local.sa, &len) == 0)
                        addr_normalize(&i->local);
                i->connected_usec = c->connected_usec;
                i->age_usec = now - c->started;
                i->idle_usec = now > c->last_active ? now - c->last_active : 0;
                i->bytes_in = c->bytes_in;
                i->bytes_out = c->bytes_out;
        }
        op->n = n;
        op_reply(&op->op);
}

void list_op_post(struct list_op *op) {
        mailbox_post(&op->op.loop->inbox, &op->op.msg, list_run);
}

void list_op_free(struct list_op *op) {
        if (!op)
                return;
        free(op->items);
        free(op);
}

static struct ratelimit kick_rl = RATELIMIT_INIT(10 * 1000 * 1000, 100);

static void kick_one(struct kick_op *op, struct loop *l, struct conn *c) {
        char by[64];
        unsigned suppressed;

        op->kicked[op->n_kicked++] = c->id;
        if (ratelimit_pass(&kick_rl, l->now, &suppressed)) {
                snprintf(by, sizeof(by), "TCPD_KICKED_BY_UID=%u", (unsigned) op->uid);
                conn_log(l, c, LOG_NOTICE, "kick", by, "kicked by uid %u pid %d%s", (unsigned) op->uid,
                         (int) op->pid, suppressed ? " (some kicks before this were not logged)" : "");
        }
        conn_close(l, c, CLOSE_KICKED);
}

static void kick_run(struct msg *m) {
        struct kick_op *op = (struct kick_op *) m;
        struct loop *l = op->op.loop;
        size_t cap = op->n_ids ? op->n_ids : l->stats.open;

        op->kicked = calloc(cap ? cap : 1, sizeof(*op->kicked));
        if (!op->kicked) {
                op->op.error = -ENOMEM;
                op_reply(&op->op);
                return;
        }
        if (op->n_ids) {
                for (size_t i = 0; i < op->n_ids; i++) {
                        struct conn *c = table_get(&l->table, op->ids[i]);
                        if (c && conn_filter_match(&op->filter, &c->peer))
                                kick_one(op, l, c);
                }
        } else {
                struct conn *c, *next;
                for (c = l->head; c; c = next) {
                        next = c->next;
                        if (op->all || conn_filter_match(&op->filter, &c->peer))
                                kick_one(op, l, c);
                }
        }
        op_reply(&op->op);
}

void kick_op_post(struct kick_op *op) {
        mailbox_post(&op->op.loop->inbox, &op->op.msg, kick_run);
}

void kick_op_free(struct kick_op *op) {
        if (!op)
                return;
        free(op->ids);
        free(op->kicked);
        free(op);
}

struct settings_op {
        struct msg msg;
        struct loop *loop;
        struct loop_settings s;
};

static void settings_run(struct msg *m) {
        struct settings_op *op = (struct settings_op *) m;

        struct loop_settings *old = &op->loop->settings;
        bool regroup = old->max_connections_per_source != op->s.max_connections_per_source ||
                       old->max_connection_rate != op->s.max_connection_rate ||
                       old->source_prefix_ipv6 != op->s.source_prefix_ipv6;

        loop_settings_done(old);
        op->loop->settings = op->s; /* takes the lists */
        if (regroup)
                limits_rebuild(op->loop);
        free(op);
}

int loop_post_settings(struct loop *l, const struct loop_settings *s) {
        struct settings_op *op = calloc(1, sizeof(*op));

        if (!op)
                return -ENOMEM;
        op->loop = l;
        if (loop_settings_copy(&op->s, s) < 0) {
                free(op);
                return -ENOMEM;
        }
        mailbox_post(&l->inbox, &op->msg, settings_run);
        return 0;
}

struct stop_op {
        struct msg msg;
        struct loop *loop;
        enum stop_mode mode;
};

static void stop_run(struct msg *m) {
        struct stop_op *op = (struct stop_op *) m;

        switch (op->mode) {
        case STOP_NOW:
                loop_stop_now(op->loop);
                break;
        case STOP_HANDOVER:
                fdstore_handover(op->loop);
                break;
        default:
                loop_stop(op->loop);
        }
        free(op);
}

int loop_post_stop(struct loop *l, enum stop_mode mode) {
        struct stop_op *op = calloc(1, sizeof(*op));

        if (!op)
                return -ENOMEM;
        op->loop = l;
        op->mode = mode;
        mailbox_post(&l->inbox, &op->msg, stop_run);
        return 0;
}
