/* The control socket: accepts control clients, reads Varlink calls,
 * dispatches them, and writes replies in request order. Calls that need the
 * connections (list, kick) go to the loop as messages; the client waits,
 * without blocking anyone else, until the answer comes back. */
#include <grp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include "conn.h"
#include "control.h"
#include "limits.h"
#include "listener.h"
#include "log.h"
#include "monitor.h"
#include "ops.h"
#include "tcpd-build.h"
#include "tcpd/protocol.h"
#include "units.h"
#include "varlink.h"

#define CONTROL_MAX_CLIENTS 256
/* Past this much unread output a client's further calls wait (and its
 * input stays in the kernel); one that reads nothing for
 * CONTROL_STALL_USEC while output waits is dropped. */
#define CONTROL_MAX_OUTPUT (256 * 1024)
#define CONTROL_STALL_USEC (5 * 1000 * 1000ULL)
/* A monitor's events wait for it longer (it loses what does not fit, not
 * its place), but one that reads nothing at all for this long is gone. */
#define CONTROL_MONITOR_STALL_USEC (30 * 1000 * 1000ULL)
/* A streamed list is turned into replies only while less than this waits. */
#define CONTROL_STREAM_LOW (64 * 1024)
#define CONTROL_READ_CHUNK (16 * 1024)
#define CONTROL_MAX_GROUPS 1024
#define CONTROL_ACCEPT_RETRY_USEC (250 * 1000)

/* A full list is one reply per connection, 19,000 and more: the reply is
 * built once per list and its values are set in place for each connection,
 * so a reply costs one dump into the output buffer instead of a dozen
 * allocations and a parse of a pack format. */
struct conn_reply {
        json_t *msg, *conn;
        json_t *id, *service, *peer, *peer_address, *peer_port, *local, *connected_usec, *age_usec, *idle_usec,
                *bytes_in, *bytes_out, *state;
        json_t *tcp, *rtt_usec, *rttvar_usec, *retransmits, *cwnd, *unacked; /* with tcp_info */
        json_t *pid; /* a program's (type = exec), set in conn only while there is one */
};

struct control_client {
        struct control *ctl;
        int fd;
        sd_event_source *source;
        struct ucred cred;
        gid_t *groups;
        int n_groups;
        struct vl_buf in, out;
        struct op *waiting;        /* an op sent to a loop: input waits */
        struct list_op *streaming; /* a list being written out */
        struct conn_reply stream_reply;
        struct conn_info held; /* the next reply: sent once it is known whether it is the last */
        bool have_held;
        bool kick_oneway;
        bool monitor; /* a Monitor call: events stream until it goes */
        uint64_t monitor_dropped; /* events it missed since the last it got */
        bool closing; /* close once the output is written */
        bool read_eof; /* the client shut down its side: answer what came, then close */
        uint64_t last_progress; /* CLOCK_MONOTONIC: output last moved, or was empty */
        struct control_client *prev, *next;
};

struct control {
        struct tcpd *t;
        int fd;
        char *path; /* unlinked on exit; NULL when systemd owns the socket */
        sd_event_source *source;
        sd_event_source *retry; /* re-enables source after running out of fds */
        sd_event_source *stall_timer; /* drops clients that stopped reading */
        struct control_client *clients;
        unsigned n_clients;
        unsigned n_monitors;
};

static struct ratelimit control_rl = RATELIMIT_INIT(10 * 1000 * 1000, 10);

static void client_free(struct control_client *cl);
static void client_process(struct control_client *cl);

static bool client_is_admin(const struct control_client *cl) {
        const struct tcpd *t = cl->ctl->t;

        if (cl->cred.uid == 0)
                return true;
        if (!t->admin_gid_valid)
                return false;
        if (cl->cred.gid == t->admin_gid)
                return true;
        for (int i = 0; i < cl->n_groups; i++)
                if (cl->groups[i] == t->admin_gid)
                        return true;
        return false;
}

static int client_update_events(struct control_client *cl) {
        uint32_t ev = 0;

        /* input waits in the kernel while an answer is outstanding: what a
         * client pipelines then cannot grow our memory */
        if (!cl->waiting && !cl->streaming && !cl->closing && !cl->read_eof &&
            vl_buf_pending(&cl->out) <= CONTROL_MAX_OUTPUT)
                ev |= EPOLLIN;
        /* a monitor's call never ends: later calls wait (within the frame
         * limit), and a hang-up must be seen; after its half-close there is
         * nothing left to read, and a level-triggered EOF would fire
         * forever (a full close still shows as EPOLLHUP) */
        if (cl->monitor && !cl->read_eof)
                ev |= EPOLLIN;
        /* a list being streamed wants to hear when there is room again,
         * even if what was queued so far all went out at once */
        if (vl_buf_pending(&cl->out) || cl->streaming)
                ev |= EPOLLOUT;
        return sd_event_source_set_io_events(cl->source, ev);
}

/* Writes what it can. Returns <0 when the client is gone (freed). */
static int client_flush(struct control_client *cl) {
        size_t before = vl_buf_pending(&cl->out);

        while (vl_buf_pending(&cl->out)) {
                ssize_t n = send(cl->fd, cl->out.data + cl->out.start, vl_buf_pending(&cl->out),
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        client_free(cl);
                        return -EPIPE;
                }
                vl_buf_consume(&cl->out, (size_t) n);
        }
        if (!vl_buf_pending(&cl->out) || vl_buf_pending(&cl->out) < before)
                cl->last_progress = now_usec(CLOCK_MONOTONIC);
        /* after a half-close, every whole call that came is still answered */
        if ((cl->closing || (cl->read_eof && !cl->waiting && !cl->streaming && !cl->monitor &&
                             !vl_frame_ready(&cl->in))) &&
            !vl_buf_pending(&cl->out)) {
                client_free(cl);
                return -EPIPE;
        }
        return client_update_events(cl);
}

static void reply_error(struct control_client *cl, const char *error, json_t *params) {
        if (vl_put_error(&cl->out, error, params) < 0)
                cl->closing = true;
}

static void reply(struct control_client *cl, json_t *params, bool continues) {
        if (vl_put_reply(&cl->out, params, continues) < 0)
                cl->closing = true;
}

static void reply_invalid_parameter(struct control_client *cl, const char *name) {
        reply_error(cl, VARLINK_ERROR_INVALID_PARAMETER, json_pack("{s:s}", "parameter", name));
}

/* Every parameter a method does not know is an error, as are wrong types. */
static bool check_params(struct control_client *cl, json_t *params, const char *const *known) {
        const char *key;
        json_t *v;

        json_object_foreach(params, key, v) {
                bool ok = false;
                for (size_t i = 0; known && known[i]; i++)
                        if (streq(key, known[i]))
                                ok = true;
                if (!ok) {
                        reply_invalid_parameter(cl, key);
                        return false;
                }
        }
        return true;
}

static void conn_reply_free(struct conn_reply *r) {
        json_decref(r->tcp);
        json_decref(r->pid);
        json_decref(r->msg);
        memset(r, 0, sizeof(*r));
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
                conn_reply_free(r);
                return -ENOMEM;
        }
        json_decref(r->conn); /* held by msg from here on */
        r->pid = json_integer(0);
        if (!r->pid) {
                conn_reply_free(r);
                return -ENOMEM;
        }
        for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
                *fields[i].v = fields[i].string ? json_string("") : json_integer(0);
                if (json_object_set_new(r->conn, fields[i].key, *fields[i].v) < 0) {
                        conn_reply_free(r);
                        return -ENOMEM;
                }
        }
        if (tcp_info) {
                r->tcp = json_pack("{s:i,s:i,s:i,s:i,s:i}", "rtt_usec", 0, "rttvar_usec", 0, "retransmits", 0, "cwnd",
                                   0, "unacked", 0);
                if (!r->tcp) {
                        conn_reply_free(r);
                        return -ENOMEM;
                }
                r->rtt_usec = json_object_get(r->tcp, "rtt_usec");
                r->rttvar_usec = json_object_get(r->tcp, "rttvar_usec");
                r->retransmits = json_object_get(r->tcp, "retransmits");
                r->cwnd = json_object_get(r->tcp, "cwnd");
                r->unacked = json_object_get(r->tcp, "unacked");
                /* ours, from json_pack; conn takes one more while it holds it */
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
        if (r->tcp && i->has_tcp) {
                k |= json_integer_set(r->rtt_usec, i->rtt_usec);
                k |= json_integer_set(r->rttvar_usec, i->rttvar_usec);
                k |= json_integer_set(r->retransmits, i->retransmits);
                k |= json_integer_set(r->cwnd, i->cwnd);
                k |= json_integer_set(r->unacked, i->unacked);
                k |= json_object_set(r->conn, "tcp", r->tcp);
        } else if (r->tcp)
                (void) json_object_del(r->conn, "tcp"); /* the kernel had nothing to say */
        if (i->pid) {
                k |= json_integer_set(r->pid, i->pid);
                k |= json_object_set(r->conn, "pid", r->pid);
        } else
                (void) json_object_del(r->conn, "pid");
        if (continues)
                k |= json_object_set(r->msg, "continues", json_true());
        else
                (void) json_object_del(r->msg, "continues"); /* fails only when absent */
        return k ? -ENOMEM : 0;
}

/* ---- methods ---- */

static void method_get_info(struct control_client *cl, struct vl_call *call) {
        if (!check_params(cl, call->params, NULL))
                return;
        reply(cl,
              json_pack("{s:s,s:s,s:s,s:s,s:[s,s]}", "vendor", "tcpd", "product", "tcpd", "version", TCPD_VERSION,
                        "url", "man:tcpd(8)", "interfaces", VARLINK_SERVICE_INTERFACE, TCPD_INTERFACE),
              false);
}

static void method_get_interface_description(struct control_client *cl, struct vl_call *call) {
        static const char *const known[] = { "interface", NULL };
        json_t *iface;
        const char *name;

        if (!check_params(cl, call->params, known))
                return;
        if (vl_param(call->params, "interface", JSON_STRING, &iface) < 0 || !iface)
                return reply_invalid_parameter(cl, "interface");
        name = json_string_value(iface);
        if (streq(name, TCPD_INTERFACE))
                reply(cl, json_pack("{s:s}", "description", tcpd_interface_description), false);
        else if (streq(name, VARLINK_SERVICE_INTERFACE))
                reply(cl, json_pack("{s:s}", "description", varlink_service_description), false);
        else
                reply_error(cl, VARLINK_ERROR_INTERFACE_NOT_FOUND, json_pack("{s:s}", "interface", name));
}

static json_t *refused_json(const struct loop_stats *s) {
        json_t *o = json_object();

        for (int r = REFUSE_DENY; o && r < _REFUSE_MAX; r++)
                json_object_set_new(o, refusal_name(r), json_integer((json_int_t) s->refused_by[r]));
        return o;
}

static json_t *cidrs_json(const struct cidr *list, size_t n) {
        json_t *a = json_array();
        char buf[64];

        for (size_t i = 0; a && i < n; i++)
                json_array_append_new(a, json_string(cidr_format(&list[i], buf, sizeof(buf))));
        return a;
}

/* Each service that listens, or served or refused a connection. */
static json_t *services_json(const struct tcpd *t, const struct loop_stats *s) {
        json_t *a = json_array();

        for (unsigned k = 0; a && k < service_ids(); k++) {
                const struct service_stats *v = &s->svc[k];
                const struct service_config *sc;
                bool listens = false;
                json_t *o;

                for (const struct listener *li = t->listeners; li; li = li->next)
                        listens |= li->service == k;
                if (!listens && !v->total && !v->refused && !v->open)
                        continue;
                sc = config_service(t->config, service_id_name(k));
                o = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I}", "name", service_id_name(k), "type",
                              service_name(service_id_type(k)), "connections_open", (json_int_t) v->open,
                              "connections_total", (json_int_t) v->total, "connections_refused",
                              (json_int_t) v->refused, "bytes_in", (json_int_t) v->bytes_in, "bytes_out",
                              (json_int_t) v->bytes_out);
                /* its own limits, where it has them */
                if (o && sc && sc->id == k && sc->has_max_connections)
                        json_object_set_new(o, "max_connections", json_integer((json_int_t) sc->max_connections));
                if (o && sc && sc->id == k && sc->has_allow)
                        json_object_set_new(o, "allow", cidrs_json(sc->allow, sc->n_allow));
                if (o && sc && sc->id == k && sc->has_deny)
                        json_object_set_new(o, "deny", cidrs_json(sc->deny, sc->n_deny));
                if (o && sc && sc->id == k && sc->has_per_source)
                        json_object_set_new(o, "max_connections_per_source",
                                            json_integer((json_int_t) sc->max_connections_per_source));
                if (o && sc && sc->id == k && sc->has_rate)
                        json_object_set_new(o, "max_connection_rate_per_min",
                                            json_integer((json_int_t) sc->max_connection_rate));
                if (o && sc && sc->id == k && sc->has_idle_timeout)
                        json_object_set_new(o, "idle_timeout_usec", json_integer((json_int_t) sc->idle_timeout_usec));
                if (o && sc && sc->id == k && sc->has_max_lifetime)
                        json_object_set_new(o, "max_lifetime_usec", json_integer((json_int_t) sc->max_lifetime_usec));
                /* how its programs ended */
                if (o && service_id_type(k) == SERVICE_KIND_exec)
                        json_object_set_new(o, "programs",
                                            json_pack("{s:I,s:I,s:I}", "exited", (json_int_t) v->exited, "failed",
                                                      (json_int_t) v->failed, "killed", (json_int_t) v->killed));
                json_array_append_new(a, o);
        }
        return a;
}


static json_t *limits_json(const struct config *c) {
        return json_pack("{s:I,s:I,s:i,s:I,s:I,s:I,s:I,s:o,s:o,s:b,s:I,s:I,s:i,s:I}", "max_connections",
                         (json_int_t) c->max_connections, "max_connections_per_source",
                         (json_int_t) c->max_connections_per_source, "source_prefix_ipv6",
                         (int) c->source_prefix_ipv6, "max_connection_rate_per_min",
                         (json_int_t) c->max_connection_rate, "idle_timeout_usec", (json_int_t) c->idle_timeout_usec,
                         "max_lifetime_usec", (json_int_t) c->max_lifetime_usec, "max_buffered",
                         (json_int_t) c->max_buffered, "allow", cidrs_json(c->allow, c->n_allow), "deny",
                         cidrs_json(c->deny, c->n_deny), "keepalive", c->keepalive, "keepalive_idle_usec",
                         (json_int_t) c->keepalive_idle_usec, "keepalive_interval_usec",
                         (json_int_t) c->keepalive_interval_usec, "keepalive_count", (int) c->keepalive_count,
                         "user_timeout_usec", (json_int_t) c->user_timeout_usec);
}

static void method_get_status(struct control_client *cl, struct vl_call *call) {
        struct tcpd *t = cl->ctl->t;
        struct loop_stats sum, *s = &sum;
        json_t *listeners = json_array(), *workers = json_array(), *params;
        char addr[ADDR_STRLEN];

        if (!check_params(cl, call->params, NULL)) {
                json_decref(listeners);
                json_decref(workers);
                return;
        }
        loop_stats_sum(t->loops, t->n_workers, s);
        /* how the connections are spread over the workers */
        for (unsigned i = 0; i < t->n_workers && workers; i++)
                json_array_append_new(workers, json_integer((json_int_t) stat_get(t->loops[i].stats.open)));
        for (struct listener *li = t->listeners; li && listeners; li = li->next)
                json_array_append_new(listeners,
                                      json_pack("{s:s,s:s,s:b}", "service", service_id_name(li->service), "address",
                                                listener_format(li, addr, sizeof(addr)), "activated",
                                                li->activated));
        params = json_pack("{s:s,s:i,s:I,s:s,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "version", TCPD_VERSION,
                           "pid", (int) getpid(), "uptime_usec",
                           (json_int_t) (now_usec(CLOCK_MONOTONIC) - t->start_monotonic), "state",
                           t->stopping ? "stopping" : "running", "listeners", listeners, "connections_open",
                           (json_int_t) s->open, "connections_total", (json_int_t) s->total, "connections_kicked",
                           (json_int_t) s->kicked, "connections_refused", (json_int_t) s->refused,
                           "connections_reset", (json_int_t) s->resets, "bytes_in", (json_int_t) s->bytes_in,
                           "bytes_out", (json_int_t) s->bytes_out, "max_connections",
                           (json_int_t) t->config->max_connections, "idle_timeout_usec",
                           (json_int_t) t->config->idle_timeout_usec, "workers", (json_int_t) t->n_workers);
        if (params)
                json_object_set_new(params, "log_level", json_string(log_level_to_string(log_level_get())));
        if (!params) {
                json_decref(workers);
                return reply_error(cl, VARLINK_ERROR_INVALID_PARAMETER, NULL);
        }
        json_object_set_new(params, "connections_aborted", json_integer((json_int_t) s->aborted));
        json_object_set_new(params, "services", services_json(t, s));
        /* the file did not load: what is wrong, and what tcpd runs on */
        json_object_set_new(params, "settings_error", t->settings_error ? json_string(t->settings_error) : json_null());
        json_object_set_new(params, "settings", json_string(t->no_settings ? "none" : t->settings_error ? "previous" : "loaded"));
        json_object_set_new(params, "listen_ignored", t->listen_ignored ? json_string(t->listen_ignored) : json_null());
        json_object_set_new(params, "worker_connections", workers);
        json_object_set_new(params, "refused", refused_json(s));
        json_object_set_new(params, "limits", limits_json(t->config));
        reply(cl, params, false);
}

/* The selection list and kick share: peer, service, idle_over_usec,
 * older_than_usec. */
static int parse_filter(struct control_client *cl, json_t *params, struct conn_filter *f) {
        json_t *peer, *service, *idle, *older;

        *f = (struct conn_filter) CONN_FILTER_ANY;
        if (vl_param(params, "peer", JSON_STRING, &peer) < 0 ||
            (peer && cidr_parse(json_string_value(peer), &f->cidr) < 0)) {
                reply_invalid_parameter(cl, "peer");
                return -EINVAL;
        }
        f->has_cidr = peer != NULL;
        if (vl_param(params, "service", JSON_STRING, &service) < 0 ||
            (service && (f->service = service_lookup(json_string_value(service))) < 0)) {
                reply_invalid_parameter(cl, "service");
                return -EINVAL;
        }
        if (vl_param(params, "idle_over_usec", JSON_INTEGER, &idle) < 0 || (idle && json_integer_value(idle) <= 0)) {
                reply_invalid_parameter(cl, "idle_over_usec");
                return -EINVAL;
        }
        if (vl_param(params, "older_than_usec", JSON_INTEGER, &older) < 0 ||
            (older && json_integer_value(older) <= 0)) {
                reply_invalid_parameter(cl, "older_than_usec");
                return -EINVAL;
        }
        f->idle_over = idle ? (uint64_t) json_integer_value(idle) : 0;
        f->older_than = older ? (uint64_t) json_integer_value(older) : 0;
        return 0;
}

static void list_part_done(struct msg *m);
static void client_stream(struct control_client *cl);
static void kick_done(struct msg *m);

static void op_send(struct control_client *cl, struct op *op, msg_fn done) {
        op->loops = cl->ctl->t->loop_ptrs;
        op->n_loops = cl->ctl->t->n_workers;
        op->reply_to = &cl->ctl->t->inbox;
        op->done = done;
        op->userdata = cl;
        cl->waiting = op;
}

static void method_list_connections(struct control_client *cl, struct vl_call *call) {
        static const char *const known[] = { "peer", "service", "idle_over_usec", "older_than_usec", "tcp_info", NULL };
        struct list_op *op;
        struct conn_filter f;
        json_t *tcp_info;

        if (!check_params(cl, call->params, known))
                return;
        if (!call->more && !call->oneway)
                return reply_error(cl, VARLINK_ERROR_EXPECTED_MORE, NULL);
        if (parse_filter(cl, call->params, &f) < 0)
                return;
        if (vl_param(call->params, "tcp_info", JSON_TRUE, &tcp_info) < 0)
                return reply_invalid_parameter(cl, "tcp_info");
        if (call->oneway)
                return; /* a list nobody reads: nothing to do */
        op = list_op_new(cl->ctl->t->loop_ptrs, cl->ctl->t->n_workers, &cl->ctl->t->inbox, list_part_done);
        if (!op)
                return reply_error(cl, VARLINK_ERROR_INVALID_PARAMETER, NULL);
        op->userdata = cl;
        op->filter = f;
        op->tcp_info = tcp_info && json_is_true(tcp_info);
        cl->streaming = op;
        cl->have_held = false;
        client_stream(cl);
}

static void method_kick(struct control_client *cl, struct vl_call *call) {
        static const char *const known[] = { "ids", "peer", "service", "idle_over_usec", "older_than_usec",
                                             "all", "reset", NULL };
        struct conn_filter f;
        struct kick_op *op;
        json_t *ids, *all, *reset, *v;
        size_t i;

        if (!check_params(cl, call->params, known))
                return;
        if (vl_param(call->params, "ids", JSON_ARRAY, &ids) < 0)
                return reply_invalid_parameter(cl, "ids");
        if (vl_param(call->params, "all", JSON_TRUE, &all) < 0)
                return reply_invalid_parameter(cl, "all");
        if (vl_param(call->params, "reset", JSON_TRUE, &reset) < 0)
                return reply_invalid_parameter(cl, "reset");
        if (parse_filter(cl, call->params, &f) < 0)
                return;
        if (all && json_is_true(all) && (ids || conn_filter_set(&f)))
                return reply_invalid_parameter(cl, "all");
        if (!(all && json_is_true(all)) && !ids && !conn_filter_set(&f))
                return reply_invalid_parameter(cl, "ids");
        json_array_foreach(ids, i, v)
                if (!json_is_integer(v) || json_integer_value(v) <= 0)
                        return reply_invalid_parameter(cl, "ids");
        if (!client_is_admin(cl))
                return reply_error(cl, VARLINK_ERROR_PERMISSION_DENIED, NULL);

        op = calloc(1, sizeof(*op));
        if (!op)
                return reply_error(cl, VARLINK_ERROR_INVALID_PARAMETER, NULL);
        op->filter = f;
        op->all = all && json_is_true(all);
        op->reset = reset && json_is_true(reset);
        op->uid = cl->cred.uid;
        op->pid = cl->cred.pid;
        if (ids && json_array_size(ids)) {
                op->ids = calloc(json_array_size(ids), sizeof(*op->ids));
                if (!op->ids) {
                        kick_op_free(op);
                        return reply_error(cl, VARLINK_ERROR_INVALID_PARAMETER, NULL);
                }
                json_array_foreach(ids, i, v)
                        op->ids[i] = (uint64_t) json_integer_value(v);
                op->n_ids = json_array_size(ids);
        } else if (ids) {
                /* an empty list kicks nothing */
                kick_op_free(op);
                reply(cl, json_pack("{s:i,s:[]}", "kicked", 0, "ids"), false);
                return;
        }
        cl->kick_oneway = call->oneway;
        op_send(cl, &op->op, kick_done);
        kick_op_post(op);
}

static void method_reload(struct control_client *cl, struct vl_call *call) {
        _cleanup_free_ char *error = NULL;
        int r;

        if (!check_params(cl, call->params, NULL))
                return;
        if (!client_is_admin(cl))
                return reply_error(cl, VARLINK_ERROR_PERMISSION_DENIED, NULL);
        log_info("reload requested by uid %u pid %d", (unsigned) cl->cred.uid, (int) cl->cred.pid);
        r = tcpd_reload(cl->ctl->t, &error);
        if (r == -ESHUTDOWN)
                reply_error(cl, TCPD_ERROR_SHUTTING_DOWN, NULL);
        else if (r < 0)
                reply_error(cl, TCPD_ERROR_RELOAD_FAILED, json_pack("{s:s}", "message", error ? error : "failed"));
        else
                reply(cl, NULL, false);
}

/* What the next SIGTERM means with the fd store on: a restart (hand the
 * connections over) or a stop (drain them). */
static void method_prepare_stop(struct control_client *cl, struct vl_call *call) {
        static const char *const known[] = { "handover", NULL };
        json_t *v;

        if (!check_params(cl, call->params, known))
                return;
        if (vl_param(call->params, "handover", JSON_TRUE, &v) < 0 || !v) /* a boolean */
                return reply_invalid_parameter(cl, "handover");
        if (!client_is_admin(cl))
                return reply_error(cl, VARLINK_ERROR_PERMISSION_DENIED, NULL);
        cl->ctl->t->stop_drain = !json_is_true(v);
        log_info("uid %u pid %d says the next stop is %s", (unsigned) cl->cred.uid, (int) cl->cred.pid,
                 json_is_true(v) ? "a restart: connections will be handed over" : "a stop: connections will be drained");
        reply(cl, NULL, false);
}

static void method_set_log_level(struct control_client *cl, struct vl_call *call) {
        static const char *const known[] = { "level", NULL };
        int previous = log_level_get(), level;
        json_t *v;

        if (!check_params(cl, call->params, known))
                return;
        if (vl_param(call->params, "level", JSON_STRING, &v) < 0 || !v ||
            (level = log_level_from_string(json_string_value(v))) < 0)
                return reply_invalid_parameter(cl, "level");
        if (!client_is_admin(cl))
                return reply_error(cl, VARLINK_ERROR_PERMISSION_DENIED, NULL);
        log_level_set(level);
        /* logged whatever either level is: an admin's change of what gets
         * logged must itself be on record */
        log_full("CODE_FILE=" __FILE__, "CODE_LINE=" LOG_STRINGIFY(__LINE__), __func__, LOG_NOTICE, 0, NULL,
                 "log level set to %s (was %s) by uid %u pid %d; a reload restores log_level from the settings",
                 log_level_to_string(level), log_level_to_string(previous), (unsigned) cl->cred.uid,
                 (int) cl->cred.pid);
        reply(cl, json_pack("{s:s,s:s}", "level", log_level_to_string(level), "previous",
                            log_level_to_string(previous)),
              false);
}

/* ---- tcpctl monitor ---- */

/* A monitor that does not read gets no more than this queued; past it,
 * events for it are counted, and the count is the next thing it reads. */
#define CONTROL_MONITOR_MAX_OUTPUT (64 * 1024)

static json_t *monitor_event_json(const struct monitor_event *e) {
        static const char *const types[] = { [MONITOR_CONNECTED] = "connected", [MONITOR_CLOSED] = "closed",
                                             [MONITOR_REFUSED] = "refused" };
        char peer[ADDR_STRLEN];
        /* a kick is a close too, but the one an admin watches for */
        const char *type = e->type == MONITOR_CLOSED && e->why == CLOSE_KICKED ? "kicked" : types[e->type];
        json_t *o = json_pack("{s:s,s:I,s:s,s:i}", "type", type, "time_usec", (json_int_t) e->time_usec,
                              "peer", addr_format(&e->peer, peer, sizeof(peer)), "worker", (int) e->worker);

        if (!o)
                return NULL;
        if (e->type != MONITOR_REFUSED) {
                json_object_set_new(o, "id", json_integer((json_int_t) e->id));
                json_object_set_new(o, "service", json_string(service_id_name(e->service)));
        }
        if (e->type == MONITOR_CLOSED) {
                json_object_set_new(o, "reason", json_string(close_reason_name(e->why)));
                json_object_set_new(o, "bytes_in", json_integer((json_int_t) e->bytes_in));
                json_object_set_new(o, "bytes_out", json_integer((json_int_t) e->bytes_out));
        }
        if (e->type == MONITOR_REFUSED)
                json_object_set_new(o, "rule", json_string(refusal_name(e->why)));
        return o;
}

/* Queues one event (stolen) for every monitor that keeps up. */
static void monitor_send(struct control *ctl, json_t *event, uint64_t dropped_before) {
        json_t *msg = json_pack("{s:{s:o},s:b}", "parameters", "event", event, "continues", 1);
        struct control_client *cl, *next;

        for (cl = ctl->clients; cl; cl = next) {
                next = cl->next;
                if (!cl->monitor)
                        continue;
                cl->monitor_dropped += dropped_before;
                if (!msg || vl_buf_pending(&cl->out) >= CONTROL_MONITOR_MAX_OUTPUT) {
                        cl->monitor_dropped++;
                        continue;
                }
                if (!vl_buf_pending(&cl->out))
                        cl->last_progress = now_usec(CLOCK_MONOTONIC); /* its stall counts from here */
                if (cl->monitor_dropped) {
                        /* what it missed, then what happened now */
                        json_t *d = json_pack("{s:{s:{s:s,s:I}},s:b}", "parameters", "event", "type", "dropped",
                                              "count", (json_int_t) cl->monitor_dropped, "continues", 1);
                        if (d && vl_put_message(&cl->out, d) == 0)
                                cl->monitor_dropped = 0;
                        json_decref(d);
                }
                if (vl_put_message(&cl->out, msg) < 0)
                        cl->monitor_dropped++;
                (void) client_flush(cl); /* may free cl */
        }
        json_decref(msg);
}

/* Whether some monitor has room for another event. */
static bool monitor_room(const struct control *ctl) {
        for (const struct control_client *cl = ctl->clients; cl; cl = cl->next)
                if (cl->monitor && vl_buf_pending(&cl->out) < CONTROL_MONITOR_MAX_OUTPUT)
                        return true;
        return false;
}

static void monitor_deliver(struct msg *m) {
        struct monitor_batch *b = (struct monitor_batch *) m;
        struct tcpd *t = b->owner;
        uint64_t dropped;

        __atomic_sub_fetch(&t->shared.monitor_in_flight, 1, __ATOMIC_RELAXED);
        /* what any worker had to drop, told with the next events */
        dropped = __atomic_exchange_n(&t->shared.monitor_dropped, 0, __ATOMIC_RELAXED);
        for (size_t i = 0; t->control && t->control->n_monitors && i < b->n; i++) {
                if (!monitor_room(t->control)) {
                        /* nobody can take an event now: count the rest of
                         * the batch as dropped without building them */
                        for (struct control_client *cl = t->control->clients; cl; cl = cl->next)
                                if (cl->monitor)
                                        cl->monitor_dropped += dropped + (b->n - i);
                        break;
                }
                monitor_send(t->control, monitor_event_json(&b->ev[i]), dropped);
                dropped = 0;
        }
        free(b);
}

void control_monitor_reload(struct control *ctl, const char *error) {
        json_t *e;

        if (!ctl || !ctl->n_monitors)
                return;
        e = json_pack("{s:s,s:I,s:b}", "type", "reload", "time_usec", (json_int_t) now_usec(CLOCK_REALTIME), "ok",
                      !error);
        if (e && error)
                json_object_set_new(e, "error", json_string(error));
        monitor_send(ctl, e, 0);
}

/* The client gets no more events. */
static void monitor_stop(struct control_client *cl) {
        if (!cl->monitor)
                return;
        cl->monitor = false;
        cl->ctl->n_monitors--;
        __atomic_sub_fetch(&cl->ctl->t->shared.monitors, 1, __ATOMIC_RELAXED);
}

static void method_monitor(struct control_client *cl, struct vl_call *call) {
        struct tcpd *t = cl->ctl->t;

        if (!check_params(cl, call->params, NULL))
                return;
        if (!call->more)
                return reply_error(cl, VARLINK_ERROR_EXPECTED_MORE, NULL);
        cl->monitor = true;
        cl->ctl->n_monitors++;
        __atomic_add_fetch(&t->shared.monitors, 1, __ATOMIC_RELEASE);
        /* the first reply says the stream is live: what happens from here
         * on is in it */
        reply(cl, json_pack("{s:{s:s,s:I,s:i}}", "event", "type", "started", "time_usec",
                            (json_int_t) now_usec(CLOCK_REALTIME), "workers", (int) t->n_workers),
              true);
}

static const struct method {
        const char *name;
        void (*run)(struct control_client *cl, struct vl_call *call);
} methods[] = {
        { VARLINK_METHOD_GET_INFO, method_get_info },
        { VARLINK_METHOD_GET_INTERFACE_DESCRIPTION, method_get_interface_description },
        { TCPD_METHOD_GET_STATUS, method_get_status },
        { TCPD_METHOD_LIST_CONNECTIONS, method_list_connections },
        { TCPD_METHOD_KICK, method_kick },
        { TCPD_METHOD_RELOAD, method_reload },
        { TCPD_METHOD_SET_LOG_LEVEL, method_set_log_level },
        { TCPD_METHOD_MONITOR, method_monitor },
        { TCPD_METHOD_PREPARE_STOP, method_prepare_stop },
};

static bool interface_is(const char *method, const char *dot, const char *iface) {
        size_t n = (size_t) (dot - method);
        return n == strlen(iface) && strncmp(method, iface, n) == 0;
}

static void dispatch(struct control_client *cl, struct vl_call *call) {
        const char *dot = strrchr(call->method, '.');
        size_t before = vl_buf_pending(&cl->out);

        for (size_t i = 0; i < ARRAY_SIZE(methods); i++)
                if (streq(call->method, methods[i].name)) {
                        methods[i].run(cl, call);
                        goto out;
                }
        if (dot && (interface_is(call->method, dot, TCPD_INTERFACE) ||
                    interface_is(call->method, dot, VARLINK_SERVICE_INTERFACE)))
                reply_error(cl, VARLINK_ERROR_METHOD_NOT_FOUND, json_pack("{s:s}", "method", call->method));
        else {
                char iface[256];
                size_t n = dot ? (size_t) (dot - call->method) : strlen(call->method);
                snprintf(iface, sizeof(iface), "%.*s", (int) (n < sizeof(iface) ? n : sizeof(iface) - 1),
                         call->method);
                reply_error(cl, VARLINK_ERROR_INTERFACE_NOT_FOUND, json_pack("{s:s}", "interface", iface));
        }
out:
        /* oneway: the caller wants no reply, so take back what was queued */
        if (call->oneway && !cl->waiting)
                cl->out.len = cl->out.start + before;
}

/* ---- answers from the loop ---- */

/* Ends a list: at once where no part is with a loop or walking one,
 * otherwise once every part has come back done. */
static void list_cancel(struct list_op *op) {
        bool busy = false;

        op->userdata = NULL;
        for (size_t k = 0; k < op->n_parts; k++) {
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

static void stream_end(struct control_client *cl) {
        list_cancel(cl->streaming);
        cl->streaming = NULL;
        cl->have_held = false;
        conn_reply_free(&cl->stream_reply);
}

static int stream_put(struct control_client *cl, const struct conn_info *i, bool continues) {
        if (!cl->stream_reply.msg && conn_reply_init(&cl->stream_reply, cl->streaming->tcp_info) < 0)
                return -ENOMEM;
        if (conn_reply_set(&cl->stream_reply, i, continues) < 0)
                return -ENOMEM;
        return vl_put_message(&cl->out, cl->stream_reply.msg);
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
static void client_stream(struct control_client *cl) {
        struct list_op *op = cl->streaming;

        while (op && vl_buf_pending(&cl->out) < CONTROL_STREAM_LOW) {
                struct list_part *best = NULL;
                bool wait = false;

                for (size_t k = 0; k < op->n_parts; k++) {
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
                        if (!cl->have_held)
                                reply(cl, NULL, false); /* nothing matched */
                        else if (stream_put(cl, &cl->held, false) < 0)
                                cl->closing = true;
                        stream_end(cl);
                        return;
                }
                if (cl->have_held && stream_put(cl, &cl->held, true) < 0) {
                        /* out of memory mid-list: the client sees the list end early */
                        cl->closing = true;
                        stream_end(cl);
                        return;
                }
                cl->held = best->items[best->cur][best->pos++];
                cl->have_held = true;
        }
}

static void list_part_done(struct msg *m) {
        struct list_part *p = (struct list_part *) m;
        struct control_client *cl = p->op->userdata;

        p->in_flight = false;
        p->next_ready = true;
        if (!cl)
                list_cancel(p->op);
        else
                client_process(cl);
}

static int id_cmp(const void *a, const void *b) {
        const uint64_t *x = a, *y = b;
        return *x < *y ? -1 : *x > *y;
}

static void kick_done(struct msg *m) {
        struct kick_op *op = (struct kick_op *) m;
        struct control_client *cl = op->op.userdata;
        char uid[48], pid[48], count[48];
        const char *fields[] = { "TCPD_EVENT=kick", uid, pid, count, NULL };
        json_t *ids;

        snprintf(uid, sizeof(uid), "TCPD_KICKED_BY_UID=%u", (unsigned) op->uid);
        snprintf(pid, sizeof(pid), "TCPD_KICKED_BY_PID=%d", (int) op->pid);
        snprintf(count, sizeof(count), "TCPD_KICKED=%zu", op->n_kicked);
        if (op->n_kicked > 1)
                qsort(op->kicked, op->n_kicked, sizeof(*op->kicked), id_cmp);
        if (!op->op.error)
                log_at(LOG_NOTICE, 0, fields, "kicked %zu connection%s at the request of uid %u pid %d",
                       op->n_kicked, op->n_kicked == 1 ? "" : "s", (unsigned) op->uid, (int) op->pid);
        if (cl) {
                cl->waiting = NULL;
                if (cl->kick_oneway)
                        ;
                else if (op->op.error)
                        reply_error(cl, VARLINK_ERROR_INVALID_PARAMETER, NULL);
                else {
                        ids = json_array();
                        for (size_t i = 0; ids && i < op->n_kicked; i++)
                                json_array_append_new(ids, json_integer((json_int_t) op->kicked[i]));
                        reply(cl, json_pack("{s:I,s:o}", "kicked", (json_int_t) op->n_kicked, "ids", ids), false);
                }
        }
        kick_op_free(op);
        if (cl)
                client_process(cl);
}

/* ---- the client connection ---- */

/* A monitor's call never ends, so what it sends later is never answered:
 * it may hold one frame's worth, and past that the stream ends with an
 * error, as for any message too large. */
static void monitor_check_input(struct control_client *cl) {
        if (vl_buf_pending(&cl->in) <= VARLINK_MAX_MESSAGE)
                return;
        monitor_stop(cl);
        reply_error(cl, VARLINK_ERROR_INVALID_PARAMETER, json_pack("{s:s}", "parameter", "message too large"));
        cl->closing = true;
}

/* Handles every whole call that has arrived, in order, until one has to
 * wait for a loop; then writes what it can. */
static void client_process(struct control_client *cl) {
        for (;;) {
                bool capped = false;

                for (;;) {
                        struct vl_call call;
                        const char *why;
                        char *frame;
                        size_t len;
                        int r;

                        client_stream(cl);
                        if (cl->monitor)
                                monitor_check_input(cl);
                        if (cl->waiting || cl->streaming || cl->closing || cl->monitor)
                                break;
                        /* More calls wait while this much is unread: the
                         * memory a client costs stays bounded, however much
                         * it pipelines. */
                        if (vl_buf_pending(&cl->out) > CONTROL_MAX_OUTPUT) {
                                capped = true;
                                break;
                        }
                        r = vl_frame_next(&cl->in, VARLINK_MAX_MESSAGE, &frame, &len);
                        if (r == 0)
                                break;
                        if (r < 0) {
                                /* no NUL in sight: the stream cannot be resynchronised */
                                reply_error(cl, VARLINK_ERROR_INVALID_PARAMETER,
                                            json_pack("{s:s}", "parameter", "message too large"));
                                cl->closing = true;
                                break;
                        }
                        r = vl_call_parse(frame, len, &call, &why);
                        if (r < 0) {
                                reply_error(cl, VARLINK_ERROR_INVALID_PARAMETER, json_pack("{s:s}", "parameter", why));
                                continue;
                        }
                        dispatch(cl, &call);
                        vl_call_done(&call);
                }
                if (client_flush(cl) < 0)
                        return;
                /* Calls already read wait only for room: when this flush made
                 * it (a client that reads fast), go on now, since no event
                 * will come for input that is no longer in the kernel. */
                if (!capped || vl_buf_pending(&cl->out) > CONTROL_MAX_OUTPUT)
                        return;
        }
}

static int client_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct control_client *cl = userdata;

        if (revents & EPOLLOUT) {
                if (client_flush(cl) < 0)
                        return 0;
                /* room again: go on with a list, or with calls that waited */
                if (cl->streaming || (!cl->waiting && vl_buf_pending(&cl->out) <= CONTROL_MAX_OUTPUT &&
                                      vl_buf_pending(&cl->in))) {
                        client_process(cl);
                        return 0;
                }
        }
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                char *dst;
                ssize_t n;

                if (revents & (EPOLLHUP | EPOLLERR) && (cl->waiting || cl->closing || cl->read_eof)) {
                        client_free(cl); /* nobody left to answer */
                        return 0;
                }
                if (cl->waiting || cl->streaming || cl->closing || cl->read_eof)
                        return 0;
                dst = vl_buf_reserve(&cl->in, CONTROL_READ_CHUNK);
                if (!dst) {
                        client_free(cl);
                        return 0;
                }
                n = recv(cl->fd, dst, CONTROL_READ_CHUNK, MSG_DONTWAIT);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return 0;
                if (n < 0) {
                        client_free(cl);
                        return 0;
                }
                if (n == 0) {
                        /* a half-close (as socat does at the end of its
                         * input) still gets every answer it asked for */
                        cl->read_eof = true;
                        client_process(cl);
                        return 0;
                }
                vl_buf_commit(&cl->in, (size_t) n);
                client_process(cl);
        }
        return 0;
}

static void client_free(struct control_client *cl) {
        struct control *ctl;

        if (!cl)
                return;
        ctl = cl->ctl;
        monitor_stop(cl);
        if (cl->waiting)
                cl->waiting->userdata = NULL; /* the loop still has it; list_done/kick_done free it */
        if (cl->streaming)
                stream_end(cl);
        sd_event_source_disable_unref(cl->source);
        close(cl->fd);
        vl_buf_free(&cl->in);
        vl_buf_free(&cl->out);
        free(cl->groups);
        if (cl->prev)
                cl->prev->next = cl->next;
        else
                ctl->clients = cl->next;
        if (cl->next)
                cl->next->prev = cl->prev;
        ctl->n_clients--;
        free(cl);
}

static void client_read_groups(struct control_client *cl) {
        socklen_t len = 64 * sizeof(gid_t);

        /* SO_PEERGROUPS: the groups the peer had when it connected, from the
         * kernel; asking NSS here could block the whole control plane. */
        for (;;) {
                gid_t *g = realloc(cl->groups, len ? len : sizeof(gid_t));
                if (!g)
                        return;
                cl->groups = g;
                if (getsockopt(cl->fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) == 0) {
                        cl->n_groups = (int) (len / sizeof(gid_t));
                        return;
                }
                if (errno != ERANGE || len > CONTROL_MAX_GROUPS * sizeof(gid_t)) {
                        cl->n_groups = 0;
                        return;
                }
        }
}

static int control_on_stall_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct control *ctl = userdata;
        struct control_client *cl, *next;
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        for (cl = ctl->clients; cl; cl = next) {
                next = cl->next;
                /* a monitor that is slow to read loses events, not its
                 * place; one that reads nothing at all goes too */
                if (vl_buf_pending(&cl->out) &&
                    now - cl->last_progress > (cl->monitor ? CONTROL_MONITOR_STALL_USEC : CONTROL_STALL_USEC)) {
                        unsigned suppressed;
                        if (ratelimit_pass(&control_rl, now, &suppressed))
                                log_notice("control client pid %d uid %u does not read its replies; dropped",
                                           (int) cl->cred.pid, (unsigned) cl->cred.uid);
                        client_free(cl);
                }
        }
        (void) sd_event_source_set_time(s, usec + USEC_PER_SEC);
        return 0;
}

static int control_on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        struct control *ctl = userdata;

        ctl->retry = sd_event_source_unref(ctl->retry);
        if (ctl->source)
                (void) sd_event_source_set_enabled(ctl->source, SD_EVENT_ON);
        return 0;
}

static int control_on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct control *ctl = userdata;
        unsigned suppressed;
        int cfd;

        cfd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)) {
                /* The queue stays readable: without a pause this would spin.
                 * Try again shortly, when connections may have gone. */
                if (ratelimit_pass(&control_rl, now_usec(CLOCK_MONOTONIC), &suppressed))
                        log_warning_errno(-errno, "cannot accept a control client; pausing the control socket");
                (void) sd_event_source_set_enabled(ctl->source, SD_EVENT_OFF);
                if (!ctl->retry &&
                    sd_event_add_time_relative(ctl->t->event, &ctl->retry, CLOCK_MONOTONIC, CONTROL_ACCEPT_RETRY_USEC,
                                               0, control_on_retry, ctl) < 0)
                        (void) sd_event_source_set_enabled(ctl->source, SD_EVENT_ON);
                return 0;
        }
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR && ratelimit_pass(&control_rl, now_usec(CLOCK_MONOTONIC), &suppressed))
                        log_warning_errno(-errno, "cannot accept a control client");
                return 0;
        }
        if (ctl->n_clients >= CONTROL_MAX_CLIENTS) {
                if (ratelimit_pass(&control_rl, now_usec(CLOCK_MONOTONIC), &suppressed))
                        log_warning("too many control clients (%u); refusing another", ctl->n_clients);
                close(cfd);
                return 0;
        }
        (void) control_add_client(ctl, cfd);
        return 0;
}

int control_add_client(struct control *ctl, int cfd) {
        struct control_client *cl;
        socklen_t len;
        int r;

        cl = calloc(1, sizeof(*cl));
        if (!cl) {
                close(cfd);
                return -ENOMEM;
        }
        cl->ctl = ctl;
        cl->fd = cfd;
        cl->last_progress = now_usec(CLOCK_MONOTONIC);
        len = sizeof(cl->cred);
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cl->cred, &len) < 0) {
                /* no credentials: treat as nobody in particular */
                cl->cred.uid = (uid_t) -1;
                cl->cred.gid = (gid_t) -1;
        }
        client_read_groups(cl);
        r = sd_event_add_io(ctl->t->event, &cl->source, cfd, EPOLLIN, client_on_io, cl);
        if (r < 0) {
                free(cl->groups);
                close(cfd);
                free(cl);
                return r;
        }
        cl->next = ctl->clients;
        if (ctl->clients)
                ctl->clients->prev = cl;
        ctl->clients = cl;
        ctl->n_clients++;
        return 0;
}

/* ---- the socket ---- */

static int mkdir_parents(const char *path) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
                *s = 0;
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        return 0;
}

/* A socket file left by a tcpd that died is replaced; one that a live tcpd
 * still answers on is not. */
static int check_stale(const struct sockaddr_un *sa) {
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct stat st;

        if (lstat(sa->sun_path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;
        if (fd < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *) sa, sizeof(*sa)) == 0)
                return -EADDRINUSE;
        if (unlink(sa->sun_path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

static int control_create(struct control *ctl) {
        const struct config *c = ctl->t->config;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        mode_t old;
        int r;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", c->control_socket);
        r = mkdir_parents(c->control_socket);
        if (r < 0)
                return log_error_errno(r, "cannot create the directory of control socket %s", c->control_socket);
        r = check_stale(&sa);
        if (r == -EADDRINUSE)
                return log_error_errno(r, "another tcpd is running and answering on %s; not starting a second one",
                                       c->control_socket);
        if (r == -EEXIST)
                return log_error_errno(r, "%s exists and is not a socket; not replacing it", c->control_socket);
        if (r < 0)
                return log_error_errno(r, "cannot replace stale control socket %s", c->control_socket);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(-errno, "cannot create control socket");
        /* Created with no access at all, then opened up: nobody gets in
         * through the window between bind() and chmod(). */
        old = umask(0777);
        r = bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ? -errno : 0;
        umask(old);
        if (r < 0)
                return log_error_errno(r, "cannot bind control socket %s", c->control_socket);
        ctl->path = strdup(c->control_socket);
        if (ctl->t->admin_gid_valid && chown(c->control_socket, (uid_t) -1, ctl->t->admin_gid) < 0)
                log_warning_errno(-errno, "cannot give control socket %s to group %s", c->control_socket,
                                  c->admin_group);
        if (chmod(c->control_socket, c->control_socket_mode) < 0)
                return log_error_errno(-errno, "cannot set the mode of control socket %s", c->control_socket);
        if (listen(fd, 128) < 0)
                return log_error_errno(-errno, "cannot listen on control socket %s", c->control_socket);
        ctl->fd = TAKE_FD(fd);
        return 0;
}

int control_open(struct tcpd *t, int fd, struct control **ret) {
        struct control *ctl = calloc(1, sizeof(*ctl));
        int r;

        if (!ctl)
                return log_error_errno(-ENOMEM, "cannot set up the control socket");
        ctl->t = t;
        ctl->fd = -1;
        /* where workers send monitor events: set once, before any worker
         * runs, so they read it without a lock (they look only while
         * shared.monitors > 0) */
        t->shared.monitor_inbox = &t->inbox;
        t->shared.monitor_deliver = monitor_deliver;
        t->shared.monitor_owner = t;
        if (fd >= 0) {
                ctl->fd = fd;
                if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
                        control_free(ctl);
                        return log_error_errno(-EINVAL, "the socket named 'control' from systemd is not a listening "
                                                        "AF_UNIX stream socket");
                }
        } else {
                r = control_create(ctl);
                if (r < 0) {
                        control_free(ctl);
                        return r;
                }
        }
        r = sd_event_add_io(t->event, &ctl->source, ctl->fd, EPOLLIN, control_on_accept, ctl);
        if (r < 0) {
                control_free(ctl);
                return log_error_errno(r, "cannot watch the control socket");
        }
        r = sd_event_add_time_relative(t->event, &ctl->stall_timer, CLOCK_MONOTONIC, USEC_PER_SEC, 0,
                                       control_on_stall_timer, ctl);
        if (r < 0) {
                control_free(ctl);
                return log_error_errno(r, "cannot set up the control socket's timer");
        }
        (void) sd_event_source_set_enabled(ctl->stall_timer, SD_EVENT_ON);
        *ret = ctl;
        return 0;
}

bool control_busy(const struct control *ctl) {
        /* a monitor's stream has no end to wait for */
        for (const struct control_client *cl = ctl ? ctl->clients : NULL; cl; cl = cl->next)
                if (!cl->monitor && (cl->waiting || cl->streaming || vl_buf_pending(&cl->out)))
                        return true;
        return false;
}

void control_stop_accepting(struct control *ctl) {
        if (ctl)
                ctl->source = sd_event_source_disable_unref(ctl->source);
}

struct control *control_free(struct control *ctl) {
        if (!ctl)
                return NULL;
        while (ctl->clients)
                client_free(ctl->clients);
        sd_event_source_disable_unref(ctl->retry);
        sd_event_source_disable_unref(ctl->stall_timer);
        sd_event_source_disable_unref(ctl->source);
        if (ctl->fd >= 0)
                close(ctl->fd);
        if (ctl->path)
                unlink(ctl->path);
        free(ctl->path);
        free(ctl);
        return NULL;
}
