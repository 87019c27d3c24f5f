/* ListConnections and Kick: requests that visit the workers, which own the
 * connections (ops.h), and a list's parts merged back in id order and
 * streamed to the client as they come. */
#include "control-internal.h"

static void list_part_done(struct msg *m);
static void kick_done(struct msg *m);

static void control_conn_reply_free(struct conn_reply *r) {
        json_decref(r->tcp.obj);
        json_decref(r->backend_tcp.obj);
        json_decref(r->pid);
        json_decref(r->bytes_per_sec);
        json_decref(r->backend);
        json_decref(r->msg);
        json_decref(r->columns);
        json_decref(r->row);
        memset(r, 0, sizeof(*r));
}

static int tcp_reply_init(struct tcp_reply *t) {
        t->obj = json_pack("{s:i,s:i,s:i,s:i,s:i}", "rtt_usec", 0, "rttvar_usec", 0, "retransmits", 0, "cwnd", 0,
                           "unacked", 0);
        if (!t->obj)
                return -ENOMEM;
        /* ours, from json_pack; conn takes one more while it holds it */
        t->rtt_usec = json_object_get(t->obj, "rtt_usec");
        t->rttvar_usec = json_object_get(t->obj, "rttvar_usec");
        t->retransmits = json_object_get(t->obj, "retransmits");
        t->cwnd = json_object_get(t->obj, "cwnd");
        t->unacked = json_object_get(t->obj, "unacked");
        return 0;
}

/* conn's member key: the numbers when the kernel gave some, else none. */
static int tcp_reply_set(json_t *conn, const char *key, struct tcp_reply *t, const struct tcp_numbers *n) {
        int k = 0;

        if (!t->obj)
                return 0;
        if (!n->has) {
                (void) json_object_del(conn, key); /* the kernel had nothing to say */
                return 0;
        }
        k |= json_integer_set(t->rtt_usec, n->rtt_usec);
        k |= json_integer_set(t->rttvar_usec, n->rttvar_usec);
        k |= json_integer_set(t->retransmits, n->retransmits);
        k |= json_integer_set(t->cwnd, n->cwnd);
        k |= json_integer_set(t->unacked, n->unacked);
        k |= json_object_set(conn, key, t->obj);
        return k;
}

static int conn_reply_init(struct conn_reply *r, bool tcp_info) {
        struct {
                const char *key;
                json_t **v;
                bool string;
        } fields[] = {
                { "id", &r->id, false },
                { "service", &r->service, true },
                { "peer", &r->peer, true },
                { "peer_address", &r->peer_address, true },
                { "peer_port", &r->peer_port, false },
                { "local", &r->local, true },
                { "connected_usec", &r->connected_usec, false },
                { "age_usec", &r->age_usec, false },
                { "idle_usec", &r->idle_usec, false },
                { "bytes_in", &r->bytes_in, false },
                { "bytes_out", &r->bytes_out, false },
                { "state", &r->state, true },
        };

        r->msg = json_object();
        r->conn = json_object();
        if (!r->msg || !r->conn || json_object_set_new(r->msg, "parameters", json_pack("{s:O}", "connection", r->conn)) < 0) {
                json_decref(r->conn);
                control_conn_reply_free(r);
                return -ENOMEM;
        }
        json_decref(r->conn); /* held by msg from here on */
        r->pid = json_integer(0);
        r->bytes_per_sec = json_integer(0);
        r->backend = json_string("");
        if (!r->pid || !r->bytes_per_sec || !r->backend) {
                control_conn_reply_free(r);
                return -ENOMEM;
        }
        for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
                *fields[i].v = fields[i].string ? json_string("") : json_integer(0);
                if (json_object_set_new(r->conn, fields[i].key, *fields[i].v) < 0) {
                        control_conn_reply_free(r);
                        return -ENOMEM;
                }
        }
        if (tcp_info && (tcp_reply_init(&r->tcp) < 0 || tcp_reply_init(&r->backend_tcp) < 0)) {
                control_conn_reply_free(r);
                return -ENOMEM;
        }
        return 0;
}

static int conn_reply_set(struct conn_reply *r, const struct conn_info *i, bool continues) {
        char peer[ADDR_STRLEN], host[ADDR_STRLEN], local[ADDR_STRLEN];
        int k = 0;

        k |= json_integer_set(r->id, (json_int_t) i->id);
        k |= json_string_set(r->service, service_id_name(i->service));
        k |= json_string_set(r->peer, addr_format(&i->peer, peer, sizeof(peer)));
        k |= json_string_set(r->peer_address, addr_format_host(&i->peer, host, sizeof(host)));
        k |= json_integer_set(r->peer_port, (json_int_t) addr_port(&i->peer));
        k |= json_string_set(r->local, i->local.sa.sa_family ? addr_format(&i->local, local, sizeof(local)) : "");
        k |= json_integer_set(r->connected_usec, (json_int_t) i->connected_usec);
        k |= json_integer_set(r->age_usec, (json_int_t) i->age_usec);
        k |= json_integer_set(r->idle_usec, (json_int_t) i->idle_usec);
        k |= json_integer_set(r->bytes_in, (json_int_t) i->bytes_in);
        k |= json_integer_set(r->bytes_out, (json_int_t) i->bytes_out);
        k |= json_string_set(r->state, i->state);
        k |= tcp_reply_set(r->conn, "tcp", &r->tcp, &i->tcp);
        k |= tcp_reply_set(r->conn, "backend_tcp", &r->backend_tcp, &i->backend_tcp);
        if (i->pid) {
                k |= json_integer_set(r->pid, i->pid);
                k |= json_object_set(r->conn, "pid", r->pid);
        } else
                (void) json_object_del(r->conn, "pid");
        if (i->backend.sa.sa_family) {
                char backend[ADDR_STRLEN];

                k |= json_string_set(r->backend, addr_format(&i->backend, backend, sizeof(backend)));
                k |= json_object_set(r->conn, "backend", r->backend);
        } else
                (void) json_object_del(r->conn, "backend");
        if (i->has_rate) {
                k |= json_integer_set(r->bytes_per_sec, (json_int_t) i->bytes_per_sec);
                k |= json_object_set(r->conn, "bytes_per_sec", r->bytes_per_sec);
        } else
                (void) json_object_del(r->conn, "bytes_per_sec");
        if (continues)
                k |= json_object_set(r->msg, "continues", json_true());
        else
                (void) json_object_del(r->msg, "continues"); /* fails only when absent */
        return k ? -ENOMEM : 0;
}

/* The selection list and kick share: peer, service, idle_over_usec,
 * older_than_usec. */
static int parse_filter(struct control_client *cl, json_t *params, struct conn_filter *f) {
        json_t *peer, *service, *idle, *older;

        *f = (struct conn_filter) CONN_FILTER_ANY;
        if (vl_param(params, "peer", JSON_STRING, &peer) < 0 ||
            (peer && cidr_parse(json_string_value(peer), &f->cidr) < 0)) {
                control_reply_invalid_parameter(cl, "peer");
                return -EINVAL;
        }
        f->has_cidr = peer != NULL;
        if (vl_param(params, "service", JSON_STRING, &service) < 0 ||
            (service && (f->service = service_lookup(json_string_value(service))) < 0)) {
                control_reply_invalid_parameter(cl, "service");
                return -EINVAL;
        }
        if (vl_param(params, "idle_over_usec", JSON_INTEGER, &idle) < 0 || (idle && json_integer_value(idle) <= 0)) {
                control_reply_invalid_parameter(cl, "idle_over_usec");
                return -EINVAL;
        }
        if (vl_param(params, "older_than_usec", JSON_INTEGER, &older) < 0 ||
            (older && json_integer_value(older) <= 0)) {
                control_reply_invalid_parameter(cl, "older_than_usec");
                return -EINVAL;
        }
        f->idle_over = idle ? (uint64_t) json_integer_value(idle) : 0;
        f->older_than = older ? (uint64_t) json_integer_value(older) : 0;
        return 0;
}

static void control_op_send(struct control_client *cl, struct op *op, msg_fn done) {
        op->reply_to = &cl->ctl->t->inbox;
        op->done = done;
        op->userdata = cl;
        cl->waiting = op;
}

void method_list_connections(struct control_client *cl, struct vl_call *call) {
        static const char *const known[] = { "peer", "service", "idle_over_usec", "older_than_usec", "tcp_info",
                                             "top", "by", "rows", NULL };
        static const char *const top_keys[_LIST_TOP_MAX] = {
                [LIST_TOP_RATE] = "rate", [LIST_TOP_AGE] = "age", [LIST_TOP_IDLE] = "idle",
        };
        struct list_op *op;
        struct conn_filter f;
        json_t *tcp_info, *top, *by, *rows;
        int top_by = LIST_TOP_RATE;

        if (!control_check_params(cl, call->params, known))
                return;
        if (!call->more && !call->oneway)
                return control_reply_error(cl, VARLINK_ERROR_EXPECTED_MORE, NULL);
        if (parse_filter(cl, call->params, &f) < 0)
                return;
        if (vl_param(call->params, "tcp_info", JSON_TRUE, &tcp_info) < 0)
                return control_reply_invalid_parameter(cl, "tcp_info");
        if (vl_param(call->params, "rows", JSON_TRUE, &rows) < 0)
                return control_reply_invalid_parameter(cl, "rows");
        if (vl_param(call->params, "top", JSON_INTEGER, &top) < 0 ||
            (top && (json_integer_value(top) < 1 || json_integer_value(top) > LIST_TOP_MAX)))
                return control_reply_invalid_parameter(cl, "top");
        if (vl_param(call->params, "by", JSON_STRING, &by) < 0 || (by && !top))
                return control_reply_invalid_parameter(cl, "by");
        if (by) {
                for (top_by = 0; top_by < _LIST_TOP_MAX; top_by++)
                        if (streq(json_string_value(by), top_keys[top_by]))
                                break;
                if (top_by == _LIST_TOP_MAX)
                        return control_reply_invalid_parameter(cl, "by");
        }
        if (call->oneway)
                return; /* a list nobody reads: nothing to do */
        op = list_op_new(cl->ctl->t->loop_ptrs, cl->ctl->t->n_workers, top ? (unsigned) json_integer_value(top) : 0,
                         &cl->ctl->t->inbox, list_part_done);
        if (!op)
                return control_reply_error(cl, VARLINK_ERROR_INVALID_PARAMETER, NULL);
        op->op.userdata = cl;
        op->filter = f;
        op->tcp_info = tcp_info && json_is_true(tcp_info);
        op->rows = rows && json_is_true(rows);
        op->top_by = (enum list_top_key) top_by;
        cl->streaming = op;
        cl->have_held = false;
        control_list_stream(cl);
}

void method_kick(struct control_client *cl, struct vl_call *call) {
        static const char *const known[] = { "ids", "peer", "service", "idle_over_usec", "older_than_usec",
                                             "all", "reset", NULL };
        struct conn_filter f;
        struct kick_op *op;
        json_t *ids, *all, *reset, *v;
        size_t i;

        if (!control_check_params(cl, call->params, known))
                return;
        if (vl_param(call->params, "ids", JSON_ARRAY, &ids) < 0)
                return control_reply_invalid_parameter(cl, "ids");
        if (vl_param(call->params, "all", JSON_TRUE, &all) < 0)
                return control_reply_invalid_parameter(cl, "all");
        if (vl_param(call->params, "reset", JSON_TRUE, &reset) < 0)
                return control_reply_invalid_parameter(cl, "reset");
        if (parse_filter(cl, call->params, &f) < 0)
                return;
        if (all && json_is_true(all) && (ids || conn_filter_set(&f)))
                return control_reply_invalid_parameter(cl, "all");
        if (!(all && json_is_true(all)) && !ids && !conn_filter_set(&f))
                return control_reply_invalid_parameter(cl, "ids");
        json_array_foreach(ids, i, v)
                if (!json_is_integer(v) || json_integer_value(v) <= 0)
                        return control_reply_invalid_parameter(cl, "ids");
        if (!control_client_is_admin(cl))
                return control_reply_error(cl, VARLINK_ERROR_PERMISSION_DENIED, NULL);

        op = kick_op_new(cl->ctl->t->loop_ptrs, cl->ctl->t->n_workers);
        if (!op)
                return control_reply_error(cl, VARLINK_ERROR_INVALID_PARAMETER, NULL);
        op->filter = f;
        op->all = all && json_is_true(all);
        op->reset = reset && json_is_true(reset);
        op->uid = cl->cred.uid;
        op->pid = cl->cred.pid;
        if (ids && json_array_size(ids)) {
                op->ids = calloc(json_array_size(ids), sizeof(*op->ids));
                if (!op->ids) {
                        kick_op_free(op);
                        return control_reply_error(cl, VARLINK_ERROR_INVALID_PARAMETER, NULL);
                }
                json_array_foreach(ids, i, v)
                        op->ids[i] = (uint64_t) json_integer_value(v);
                op->n_ids = json_array_size(ids);
        } else if (ids) {
                /* an empty list kicks nothing */
                kick_op_free(op);
                control_reply(cl, json_pack("{s:i,s:[]}", "kicked", 0, "ids"), false);
                return;
        }
        cl->kick_oneway = call->oneway;
        control_op_send(cl, &op->op, kick_done);
        kick_op_post(op);
}

/* ---- answers from the loop ---- */

/* Ends a list: at once where no part is with a loop or walking one,
 * otherwise once every part has come back done. */
static void control_list_cancel(struct list_op *op) {
        bool busy = false;

        op->op.userdata = NULL;
        for (size_t k = 0; k < op->op.n_parts; k++) {
                struct list_part *p = &op->parts[k];

                if (p->in_flight)
                        busy = true;
                else if (p->started && !p->done) {
                        list_part_release(p);
                        busy = true;
                }
        }
        if (!busy)
                list_op_free(op);
}

void control_list_end(struct control_client *cl) {
        control_list_cancel(cl->streaming);
        cl->streaming = NULL;
        cl->have_held = false;
        cl->rows_batched = 0;
        control_conn_reply_free(&cl->stream_reply);
}

/* A Connection's members as the columns of a list of rows, each a
 * member's value or null. */
static const char *const list_columns[] = {
        "id",        "service",  "peer",  "peer_address", "peer_port", "local",         "connected_usec",
        "age_usec",  "idle_usec", "bytes_in", "bytes_out", "state",     "pid",           "backend",
        "bytes_per_sec", "tcp",  "backend_tcp",
};
#define N_LIST_COLUMNS (sizeof(list_columns) / sizeof(list_columns[0]))
#define LIST_ROWS_MAX 256 /* rows a reply: about 40 KiB */

static int rows_init(struct conn_reply *r) {
        r->columns = json_array();
        r->row = json_array();
        if (!r->columns || !r->row)
                return -ENOMEM;
        for (size_t k = 0; k < N_LIST_COLUMNS; k++)
                if (json_array_append_new(r->columns, json_string(list_columns[k])) < 0 ||
                    json_array_append(r->row, json_null()) < 0)
                        return -ENOMEM;
        return 0;
}

/* Adds conn's values as a row to the reply being written, which starts
 * here when it has none and ends when full or at the list's last. */
static int stream_put_row(struct control_client *cl, struct conn_reply *r, bool continues) {
        for (size_t k = 0; k < N_LIST_COLUMNS; k++) {
                json_t *v = json_object_get(r->conn, list_columns[k]);

                if (json_array_set(r->row, k, v ? v : json_null()) < 0)
                        return -ENOMEM;
        }
        if (cl->rows_batched == 0 && vl_rows_begin(&cl->out, r->columns) < 0)
                return -ENOMEM;
        if (vl_rows_add(&cl->out, r->row, cl->rows_batched == 0) < 0)
                return -ENOMEM;
        if (++cl->rows_batched < LIST_ROWS_MAX && continues)
                return 0;
        cl->rows_batched = 0;
        return vl_rows_end(&cl->out, continues);
}

static int stream_put(struct control_client *cl, const struct conn_info *i, bool continues) {
        struct conn_reply *r = &cl->stream_reply;

        if (!r->msg && (conn_reply_init(r, cl->streaming->tcp_info) < 0 ||
                        (cl->streaming->rows && rows_init(r) < 0)))
                return -ENOMEM;
        if (conn_reply_set(r, i, continues) < 0)
                return -ENOMEM;
        if (cl->streaming->rows)
                return stream_put_row(cl, r, continues);
        return vl_put_message(&cl->out, r->msg);
}

enum { PART_HEAD, PART_WAIT, PART_END };

/* Whether p has an entry to send (then it is items[cur][pos]), must be
 * waited for, or is at its end. While one half is being sent, the loop
 * fills the other, so a part rarely runs dry. */
static int part_head(struct list_part *p) {
        for (;;) {
                if (p->pos < p->n[p->cur]) {
                        if (!p->in_flight && !p->next_ready && !p->done)
                                list_part_request(p); /* fill the other half meanwhile */
                        return PART_HEAD;
                }
                if (p->next_ready) {
                        p->cur = p->fill;
                        p->pos = 0;
                        p->next_ready = false;
                        continue;
                }
                if (p->in_flight)
                        return PART_WAIT;
                if (p->done)
                        return PART_END;
                list_part_request(p);
                return PART_WAIT;
        }
}

/* Merges the parts by id while the client keeps up. Every part that is not
 * at its end must have an entry before the smallest can go; one entry is
 * held back until it is known whether it is the last ("continues"). */
void control_list_stream(struct control_client *cl) {
        struct list_op *op = cl->streaming;

        while (op && vl_buf_pending(&cl->out) < CONTROL_STREAM_LOW) {
                struct list_part *best = NULL;
                bool wait = false;

                for (size_t k = 0; k < op->op.n_parts; k++) {
                        struct list_part *p = &op->parts[k];

                        switch (part_head(p)) {
                        case PART_HEAD:
                                if (!best || p->items[p->cur][p->pos].id < best->items[best->cur][best->pos].id)
                                        best = p;
                                break;
                        case PART_WAIT:
                                wait = true;
                                break;
                        }
                }
                if (wait)
                        return; /* list_part_done() comes back here */
                if (!best) {
                        /* every part is done: the held entry is the last */
                        if (!cl->have_held && op->rows) { /* nothing matched: no rows */
                                struct conn_reply *r = &cl->stream_reply;

                                if ((!r->columns && rows_init(r) < 0) || vl_rows_begin(&cl->out, r->columns) < 0 ||
                                    vl_rows_end(&cl->out, false) < 0)
                                        cl->closing = true;
                        } else if (!cl->have_held)
                                control_reply(cl, NULL, false); /* nothing matched */
                        else if (stream_put(cl, &cl->held, false) < 0)
                                cl->closing = true;
                        control_list_end(cl);
                        return;
                }
                if (cl->have_held && stream_put(cl, &cl->held, true) < 0) {
                        /* out of memory mid-list: the client sees the list end early */
                        cl->closing = true;
                        control_list_end(cl);
                        return;
                }
                cl->held = best->items[best->cur][best->pos++];
                cl->have_held = true;
        }
}

static void list_part_done(struct msg *m) {
        struct list_part *p = (struct list_part *) m;
        struct control_client *cl = p->op->op.userdata;

        p->in_flight = false;
        p->next_ready = true;
        if (!cl)
                control_list_cancel(p->op);
        else
                control_client_process(cl);
}

static int id_cmp(const void *a, const void *b) {
        const uint64_t *x = a, *y = b;
        return *x < *y ? -1 : *x > *y;
}

/* A part back from its loop; the last one answers, with every loop's ids
 * in order. */
static void kick_done(struct msg *m) {
        struct kick_op *op = ((struct kick_part *) m)->op;
        struct control_client *cl = op->op.userdata;
        char uid[48], pid[48], count[48];
        const char *fields[] = { "TCPD_EVENT=kick", uid, pid, count, NULL };
        _cleanup_free_ uint64_t *kicked = NULL;
        size_t n = 0, total = 0;
        int error = 0;
        json_t *ids;

        if (--op->op.pending > 0)
                return;
        for (size_t k = 0; k < op->op.n_parts; k++) {
                total += op->parts[k].n_kicked;
                if (op->parts[k].error)
                        error = op->parts[k].error;
        }
        kicked = calloc(total ? total : 1, sizeof(*kicked));
        if (!kicked)
                error = -ENOMEM;
        for (size_t k = 0; kicked && k < op->op.n_parts; k++)
                for (size_t i = 0; i < op->parts[k].n_kicked; i++)
                        kicked[n++] = op->parts[k].kicked[i];
        if (n > 1)
                qsort(kicked, n, sizeof(*kicked), id_cmp);
        snprintf(uid, sizeof(uid), "TCPD_KICKED_BY_UID=%u", (unsigned) op->uid);
        snprintf(pid, sizeof(pid), "TCPD_KICKED_BY_PID=%d", (int) op->pid);
        snprintf(count, sizeof(count), "TCPD_KICKED=%zu", total);
        /* what was closed is said, even when a loop could not do its share */
        if (!error || total)
                log_at(LOG_NOTICE, 0, fields, "kicked %zu connection%s at the request of uid %u pid %d", total,
                       total == 1 ? "" : "s", (unsigned) op->uid, (int) op->pid);
        if (cl) {
                cl->waiting = NULL;
                if (cl->kick_oneway)
                        ;
                else if (error)
                        control_reply_error(cl, VARLINK_ERROR_INVALID_PARAMETER, NULL);
                else {
                        ids = json_array();
                        for (size_t i = 0; ids && i < n; i++)
                                json_array_append_new(ids, json_integer((json_int_t) kicked[i]));
                        control_reply(cl, json_pack("{s:I,s:o}", "kicked", (json_int_t) n, "ids", ids), false);
                }
        }
        kick_op_free(op);
        if (cl)
                control_client_process(cl);
}
