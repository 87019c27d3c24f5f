/* Loop-side handlers for the control plane's requests. */
#include <stdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "conn.h"
#include "fdstore.h"
#include "listener.h"
#include "log.h"
#include "ops.h"
#include "services/service.h"

bool conn_filter_set(const struct conn_filter *f) {
        return f->has_cidr || f->service >= 0 || f->idle_over || f->older_than;
}

bool conn_filter_match(const struct conn_filter *f, const struct conn *c, uint64_t now) {
        if (f->has_cidr && !cidr_match(&f->cidr, &c->peer))
                return false;
        if (f->service >= 0 && c->service != f->service &&
            !streq(service_id_name(c->service), service_id_name((unsigned) f->service)))
                return false;
        if (f->idle_over && (now < c->last_active || now - c->last_active < f->idle_over))
                return false;
        if (f->older_than && (now < c->started || now - c->started < f->older_than))
                return false;
        return true;
}

/* Makes room for want more entries of size each in *items. */
static int grow(void **items, size_t *cap, size_t have, size_t want, size_t size) {
        void *p;
        size_t n = have + want;

        if (n <= *cap)
                return 0;
        p = reallocarray(*items, n ? n : 1, size);
        if (!p)
                return -ENOMEM;
        *items = p;
        *cap = n;
        return 0;
}

static void tcp_numbers_read(int fd, struct tcp_numbers *t) {
        struct tcp_info ti;
        socklen_t len = sizeof(ti);

        if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
                return;
        *t = (struct tcp_numbers) { .has = true, .rtt_usec = ti.tcpi_rtt, .rttvar_usec = ti.tcpi_rttvar,
                                    .retransmits = ti.tcpi_total_retrans, .cwnd = ti.tcpi_snd_cwnd,
                                    .unacked = ti.tcpi_unacked };
}

static void conn_info_fill(struct conn_info *i, struct loop *l, struct conn *c, uint64_t now, bool tcp_info) {
        socklen_t len = sizeof(i->local);

        if (c->ops->sync)
                c->ops->sync(l, c); /* a program's bytes and idle time */
        *i = (struct conn_info) {
                .id = c->id,
                .service = c->service,
                .state = conn_state_name(c),
                .peer = c->peer,
                .connected_usec = c->connected_usec,
                .age_usec = now - c->started,
                .idle_usec = now > c->last_active ? now - c->last_active : 0,
                .bytes_in = c->bytes_in,
                .bytes_out = c->bytes_out,
        };
        if (c->ops->info)
                c->ops->info(c, i);
        /* a listener bound to one address gave it; a wildcard one's
         * connections each need a system call */
        if (loop_local_address(l, c->local))
                i->local = *loop_local_address(l, c->local);
        else if (getsockname(c->fd, &i->local.sa, &len) == 0)
                addr_normalize(&i->local);
        if (tcp_info) {
                /* one system call per socket: only when asked; a relay's
                 * other socket too, where a slow side shows */
                tcp_numbers_read(c->fd, &i->tcp);
                if (c->ops->other_fd)
                        tcp_numbers_read(c->ops->other_fd(c), &i->backend_tcp);
        }
}

static void cursor_link(struct loop *l, struct list_cursor *cur) {
        cur->prev = NULL;
        cur->link = l->cursors;
        if (l->cursors)
                l->cursors->prev = cur;
        l->cursors = cur;
}

static void cursor_unlink(struct loop *l, struct list_cursor *cur) {
        if (cur->prev)
                cur->prev->link = cur->link;
        else
                l->cursors = cur->link;
        if (cur->link)
                cur->link->prev = cur->prev;
        cur->prev = cur->link = NULL;
        cur->next = NULL;
}

void loop_cursors_skip(struct loop *l, struct conn *c) {
        for (struct list_cursor *cur = l->cursors; cur; cur = cur->link)
                if (cur->next == c)
                        cur->next = c->next;
}

struct top_entry {
        uint64_t key, rate;
        struct conn *c;
};

/* A min-heap of the largest keys seen: the smallest of them on top, to be
 * pushed out by a larger one. */
static void top_sift_down(struct top_entry *h, size_t n, size_t i) {
        for (;;) {
                size_t l = 2 * i + 1, m = i;
                struct top_entry t;

                if (l < n && h[l].key < h[m].key)
                        m = l;
                if (l + 1 < n && h[l + 1].key < h[m].key)
                        m = l + 1;
                if (m == i)
                        return;
                t = h[i];
                h[i] = h[m];
                h[m] = t;
                i = m;
        }
}

static void top_push(struct top_entry *h, size_t *n, size_t max, struct top_entry e) {
        size_t i = (*n)++;

        if (i == max) { /* full: e replaces the smallest, if larger */
                (*n)--;
                if (e.key <= h[0].key)
                        return;
                h[0] = e;
                top_sift_down(h, *n, 0);
                return;
        }
        h[i] = e;
        while (i > 0 && h[(i - 1) / 2].key > h[i].key) {
                struct top_entry t = h[i];

                h[i] = h[(i - 1) / 2];
                h[(i - 1) / 2] = t;
                i = (i - 1) / 2;
        }
}

static int top_id_cmp(const void *a, const void *b) {
        const struct top_entry *x = a, *y = b;

        return x->c->id < y->c->id ? -1 : x->c->id > y->c->id;
}

/* Bytes per second since the loop's last mark (or since it connected, if
 * later), and a new mark when that one is old enough. */
static uint64_t conn_rate(struct loop *l, struct conn *c, uint64_t now, bool mark) {
        uint64_t since = c->started > l->rate_mark_usec ? c->started : l->rate_mark_usec;
        uint64_t bytes = c->bytes_in + c->bytes_out, rate = 0;

        if (bytes >= c->rate_mark && now > since)
                rate = (uint64_t) ((double) (bytes - c->rate_mark) * 1e6 / (double) (now - since));
        if (mark)
                c->rate_mark = bytes;
        return rate;
}

/* On the part's loop, a top list: one walk of every connection, keeping
 * the op->top largest that match in a heap, then filled in id order (the
 * order the control plane merges by). With 10,000 connections a walk is
 * some hundred microseconds. */
static void top_run(struct list_part *p) {
        struct list_op *op = p->op;
        struct loop *l = p->loop;
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        bool mark = now - l->rate_mark_usec >= LIST_RATE_MIN_USEC;
        struct top_entry *h = calloc(op->top, sizeof(*h));
        size_t n = 0;

        for (struct conn *c = l->head; c && h; c = c->next) {
                struct top_entry e = { .c = c };

                if (c->ops->sync)
                        c->ops->sync(l, c); /* a program's bytes are the kernel's count */
                e.rate = conn_rate(l, c, now, mark);
                if (!conn_filter_match(&op->filter, c, now))
                        continue;
                switch (op->top_by) {
                case LIST_TOP_AGE:
                        e.key = now - c->started;
                        break;
                case LIST_TOP_IDLE:
                        e.key = now > c->last_active ? now - c->last_active : 0;
                        break;
                default:
                        e.key = e.rate;
                }
                top_push(h, &n, op->top, e);
        }
        if (mark)
                l->rate_mark_usec = now;
        /* out of memory: an empty part, the list goes on without this loop */
        if (h)
                qsort(h, n, sizeof(*h), top_id_cmp);
        for (size_t k = 0; h && k < n; k++) {
                struct conn_info *i = &p->items[p->fill][k];

                conn_info_fill(i, l, h[k].c, now, op->tcp_info);
                i->has_rate = true;
                i->bytes_per_sec = h[k].rate;
        }
        p->n[p->fill] = h ? n : 0;
        free(h);
        p->done = true;
        mailbox_post(op->op.reply_to, &p->msg, op->op.done);
}

/* On the part's loop: the next p->chunk connections that match, in the
 * loop's list order (id order). A chunk costs the loop a few hundred
 * microseconds at most, however many connections it has. */
static void chunk_run(struct msg *m) {
        struct list_part *p = (struct list_part *) m;
        struct list_op *op = p->op;
        struct loop *l = p->loop;
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        if (op->top)
                return top_run(p);
        if (!p->started) {
                p->started = true;
                p->cursor.next = l->head;
                cursor_link(l, &p->cursor);
        }
        if (p->release)
                p->cursor.next = NULL;
        while (p->cursor.next && p->n[p->fill] < p->chunk) {
                struct conn *c = p->cursor.next;

                p->cursor.next = c->next;
                if (conn_filter_match(&op->filter, c, now))
                        conn_info_fill(&p->items[p->fill][p->n[p->fill]++], l, c, now, op->tcp_info);
        }
        if (!p->cursor.next) {
                cursor_unlink(l, &p->cursor);
                p->done = true;
        }
        mailbox_post(op->op.reply_to, &p->msg, op->op.done);
}

struct list_op *list_op_new(struct loop **loops, size_t n_loops, unsigned top, struct mailbox *reply_to, msg_fn done) {
        struct list_op *op = calloc(1, sizeof(*op) + n_loops * sizeof(op->parts[0]));

        if (!op)
                return NULL;
        op->op.reply_to = reply_to;
        op->op.done = done;
        op->op.n_parts = n_loops;
        op->top = top;
        for (size_t k = 0; k < n_loops; k++) {
                struct list_part *p = &op->parts[k];

                p->op = op;
                p->loop = loops[k];
                p->chunk = top ? top : n_loops == 1 ? LIST_CHUNK_ONE_WORKER : LIST_CHUNK;
                p->items[0] = calloc(2 * p->chunk, sizeof(struct conn_info));
                if (!p->items[0]) {
                        list_op_free(op);
                        return NULL;
                }
                p->items[1] = p->items[0] + p->chunk;
        }
        return op;
}

void list_part_request(struct list_part *p) {
        p->fill = !p->cur;
        p->n[p->fill] = 0;
        p->next_ready = false;
        p->in_flight = true;
        mailbox_post(&p->loop->inbox, &p->msg, chunk_run);
}

void list_part_release(struct list_part *p) {
        p->release = true;
        list_part_request(p);
}

void list_op_free(struct list_op *op) {
        for (size_t k = 0; op && k < op->op.n_parts; k++)
                free(op->parts[k].items[0]);
        free(op);
}

/* per worker: the parts of a kick run on every worker at once */
static __thread struct ratelimit kick_rl = RATELIMIT_INIT(10 * 1000 * 1000, 100);

static void kick_one(struct kick_part *p, struct loop *l, struct conn *c) {
        const struct kick_op *op = p->op;
        char by[64];
        unsigned suppressed;

        p->kicked[p->n_kicked++] = c->id;
        if (ratelimit_pass(&kick_rl, l->now, &suppressed)) {
                snprintf(by, sizeof(by), "TCPD_KICKED_BY_UID=%u", (unsigned) op->uid);
                conn_log(l, c, LOG_NOTICE, "kick", by, "kicked by uid %u pid %d%s%s", (unsigned) op->uid,
                         (int) op->pid, op->reset ? " with a reset" : "",
                         suppressed ? " (some kicks before this were not logged)" : "");
        }
        if (op->reset) {
                /* An RST, not a FIN. SO_LINGER 0 would reset only if ours
                 * were the last descriptor, and systemd's fd store may hold
                 * another: connect() to AF_UNSPEC disconnects the socket
                 * itself, sending the reset whoever holds it. */
                struct sockaddr sa = { .sa_family = AF_UNSPEC };
                (void) connect(c->fd, &sa, sizeof(sa));
        }
        conn_close(l, c, CLOSE_KICKED);
}

/* On the part's loop: closes its connections that the kick selects. */
static void kick_run(struct msg *m) {
        struct kick_part *p = (struct kick_part *) m;
        const struct kick_op *op = p->op;
        struct loop *l = p->loop;

        /* ids: any loop may hold any of them; each looks up its own table */
        if (grow((void **) &p->kicked, &p->cap, 0, op->n_ids ? op->n_ids : l->stats.open, sizeof(*p->kicked)) < 0)
                p->error = -ENOMEM;
        else if (op->n_ids) {
                for (size_t i = 0; i < op->n_ids; i++) {
                        struct conn *c = table_get(&l->table, op->ids[i]);
                        if (c && conn_filter_match(&op->filter, c, l->now))
                                kick_one(p, l, c);
                }
        } else {
                struct conn *c, *next;
                for (c = l->head; c; c = next) {
                        next = c->next;
                        if (op->all || conn_filter_match(&op->filter, c, l->now))
                                kick_one(p, l, c);
                }
        }
        mailbox_post(op->op.reply_to, &p->msg, op->op.done);
}

struct kick_op *kick_op_new(struct loop **loops, size_t n_loops) {
        struct kick_op *op = calloc(1, sizeof(*op) + n_loops * sizeof(op->parts[0]));

        if (!op)
                return NULL;
        op->op.n_parts = n_loops;
        for (size_t k = 0; k < n_loops; k++) {
                op->parts[k].op = op;
                op->parts[k].loop = loops[k];
        }
        return op;
}

void kick_op_post(struct kick_op *op) {
        op->op.pending = op->op.n_parts;
        for (size_t k = 0; k < op->op.n_parts; k++)
                mailbox_post(&op->parts[k].loop->inbox, &op->parts[k].msg, kick_run);
}

void kick_op_free(struct kick_op *op) {
        if (!op)
                return;
        for (size_t k = 0; k < op->op.n_parts; k++)
                free(op->parts[k].kicked);
        free(op->ids);
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

        /* a service's own per-source limits count its clients apart */
        for (size_t i = 0; i < ARRAY_SIZE(old->svc_limits) && !regroup; i++) {
                const struct service_limits *a = &old->svc_limits[i], *b = &op->s.svc_limits[i];

                regroup = a->has_per_source != b->has_per_source || a->has_rate != b->has_rate ||
                          a->max_connections_per_source != b->max_connections_per_source ||
                          a->max_connection_rate != b->max_connection_rate;
        }

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

struct listener_op {
        struct msg msg;
        struct loop *loop;
        struct listener *li; /* a reference of its own until it ran */
};

static void add_listener_run(struct msg *m) {
        struct listener_op *op = (struct listener_op *) m;
        char a[ADDR_STRLEN];
        int r = loop_add_listener(op->loop, op->li);

        if (r < 0)
                log_error_errno(r, "worker %u cannot watch listener %s", op->loop->index,
                                listener_format(op->li, a, sizeof(a)));
        listener_unref(op->li);
        free(op);
}

static void retire_listener_run(struct msg *m) {
        struct listener_op *op = (struct listener_op *) m;

        loop_retire_listener(op->loop, op->li);
        listener_unref(op->li);
        free(op);
}

static int post_listener(struct loop *l, struct listener *li, msg_fn run) {
        struct listener_op *op = calloc(1, sizeof(*op));

        if (!op)
                return -ENOMEM;
        op->loop = l;
        op->li = listener_ref(li);
        mailbox_post(&l->inbox, &op->msg, run);
        return 0;
}

int loop_post_add_listener(struct loop *l, struct listener *li) {
        return post_listener(l, li, add_listener_run);
}

int loop_post_retire_listener(struct loop *l, struct listener *li) {
        return post_listener(l, li, retire_listener_run);
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
