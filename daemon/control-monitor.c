/* tcpctl monitor: events the workers batch (monitor.h) fanned out to every
 * client that called Monitor, within what each has room for. */
#include "control-internal.h"


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
                if (e->backend.sa.sa_family) {
                        char backend[ADDR_STRLEN];

                        json_object_set_new(o, "backend",
                                            json_string(addr_format(&e->backend, backend, sizeof(backend))));
                }
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
                (void) control_client_flush(cl); /* may free cl */
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

void control_monitor_deliver(struct msg *m) {
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

void control_monitor_backend(struct control *ctl, const char *service, const char *backend, bool up,
                             const char *why) {
        json_t *e;

        if (!ctl || !ctl->n_monitors)
                return;
        e = json_pack("{s:s,s:I,s:s,s:s,s:s,s:s}", "type", "backend", "time_usec",
                      (json_int_t) now_usec(CLOCK_REALTIME), "service", service, "backend", backend, "state",
                      up ? "up" : "down", "reason", why);
        monitor_send(ctl, e, 0);
}

void control_monitor_admin(struct control *ctl, const char *service, const char *backend, const char *admin) {
        json_t *e;

        if (!ctl || !ctl->n_monitors)
                return;
        e = json_pack("{s:s,s:I,s:s,s:s,s:s}", "type", "backend", "time_usec", (json_int_t) now_usec(CLOCK_REALTIME),
                      "service", service, "backend", backend, "admin", admin);
        monitor_send(ctl, e, 0);
}

/* The client gets no more events. */
void control_monitor_stop(struct control_client *cl) {
        if (!cl->monitor)
                return;
        cl->monitor = false;
        cl->ctl->n_monitors--;
        __atomic_sub_fetch(&cl->ctl->t->shared.monitors, 1, __ATOMIC_RELAXED);
}

void method_monitor(struct control_client *cl, struct vl_call *call) {
        struct tcpd *t = cl->ctl->t;

        if (!control_check_params(cl, call->params, NULL))
                return;
        if (!call->more)
                return control_reply_error(cl, VARLINK_ERROR_EXPECTED_MORE, NULL);
        cl->monitor = true;
        cl->ctl->n_monitors++;
        __atomic_add_fetch(&t->shared.monitors, 1, __ATOMIC_RELEASE);
        /* the first reply says the stream is live: what happens from here
         * on is in it */
        control_reply(cl, json_pack("{s:{s:s,s:I,s:i}}", "event", "type", "started", "time_usec",
                                    (json_int_t) now_usec(CLOCK_REALTIME), "workers", (int) t->n_workers),
                      true);
}


/* A monitor's call never ends, so what it sends later is never answered:
 * it may hold one frame's worth, and past that the stream ends with an
 * error, as for any message too large. */
void control_monitor_check_input(struct control_client *cl) {
        if (vl_buf_pending(&cl->in) <= VARLINK_MAX_MESSAGE)
                return;
        control_monitor_stop(cl);
        control_reply_error(cl, VARLINK_ERROR_INVALID_PARAMETER, json_pack("{s:s}", "parameter", "message too large"));
        cl->closing = true;
}
