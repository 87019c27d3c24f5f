/* The methods the control plane answers itself: GetInfo and
 * GetInterfaceDescription (org.varlink.service), GetStatus, Reload,
 * PrepareStop and SetLogLevel. */
#include "control-internal.h"


void method_get_info(struct control_client *cl, struct vl_call *call) {
        if (!control_check_params(cl, call->params, NULL))
                return;
        control_reply(cl,
                      json_pack("{s:s,s:s,s:s,s:s,s:[s,s]}", "vendor", "tcpd", "product", "tcpd", "version", TCPD_VERSION,
                                "url", "man:tcpd(8)", "interfaces", VARLINK_SERVICE_INTERFACE, TCPD_INTERFACE),
                      false);
}

void method_get_interface_description(struct control_client *cl, struct vl_call *call) {
        static const char *const known[] = { "interface", NULL };
        json_t *iface;
        const char *name;

        if (!control_check_params(cl, call->params, known))
                return;
        if (vl_param(call->params, "interface", JSON_STRING, &iface) < 0 || !iface)
                return control_reply_invalid_parameter(cl, "interface");
        name = json_string_value(iface);
        if (streq(name, TCPD_INTERFACE))
                control_reply(cl, json_pack("{s:s}", "description", tcpd_interface_description), false);
        else if (streq(name, VARLINK_SERVICE_INTERFACE))
                control_reply(cl, json_pack("{s:s}", "description", varlink_service_description), false);
        else
                control_reply_error(cl, VARLINK_ERROR_INTERFACE_NOT_FOUND, json_pack("{s:s}", "interface", name));
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

/* Closed connections by how long they lasted: counts per bucket (not
 * cumulative), the upper bounds of all but the last, and the sum. */
static json_t *durations_json(const struct service_stats *v) {
        static const uint64_t bounds[] = DURATION_BOUNDS_USEC;
        json_t *b = json_array(), *n = json_array();

        for (size_t k = 0; b && k < ARRAY_SIZE(bounds); k++)
                json_array_append_new(b, json_integer((json_int_t) bounds[k]));
        for (size_t k = 0; n && k < DURATION_BUCKETS; k++)
                json_array_append_new(n, json_integer((json_int_t) v->duration[k]));
        return json_pack("{s:o,s:o,s:I}", "bounds_usec", b, "counts", n, "sum_usec", (json_int_t) v->duration_sum_usec);
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
                /* how long its closed connections lasted (tcpctl metrics) */
                if (o)
                        json_object_set_new(o, "durations", durations_json(v));
                /* a relay's backends, and how it picks one */
                if (o && service_id_type(k) == SERVICE_KIND_forward && t->pools[k]) {
                        json_object_set_new(o, "balance", json_string(balance_name(t->pools[k]->balance)));
                        json_object_set_new(o, "backends", control_backends_json(t->pools[k]));
                }
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

json_t *control_status(struct tcpd *t) {
        struct loop_stats sum, *s = &sum;
        json_t *listeners = json_array(), *workers = json_array(), *params;
        char addr[ADDR_STRLEN];

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
        if (params) {
                uint64_t up = now_usec(CLOCK_MONOTONIC) - t->start_monotonic;

                json_object_set_new(params, "log_level", json_string(log_level_to_string(log_level_get())));
                json_object_set_new(params, "start_time_usec", json_integer((json_int_t) (now_usec(CLOCK_REALTIME) - up)));
        }
        if (!params) {
                json_decref(workers);
                return NULL;
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
        json_object_set_new(params, "metrics", t->metrics_address ? json_string(t->metrics_address) : json_null());
        return params;
}

void method_get_status(struct control_client *cl, struct vl_call *call) {
        json_t *params;

        if (!control_check_params(cl, call->params, NULL))
                return;
        params = control_status(cl->ctl->t);
        if (!params)
                return control_reply_error(cl, VARLINK_ERROR_INVALID_PARAMETER, NULL);
        control_reply(cl, params, false);
}

void method_reload(struct control_client *cl, struct vl_call *call) {
        _cleanup_free_ char *error = NULL;
        int r;

        if (!control_check_params(cl, call->params, NULL))
                return;
        if (!control_client_is_admin(cl))
                return control_reply_error(cl, VARLINK_ERROR_PERMISSION_DENIED, NULL);
        log_info("reload requested by uid %u pid %d", (unsigned) cl->cred.uid, (int) cl->cred.pid);
        r = cl->ctl->hooks->reload(cl->ctl->t, &error);
        if (r == -ESHUTDOWN)
                control_reply_error(cl, TCPD_ERROR_SHUTTING_DOWN, NULL);
        else if (r < 0)
                control_reply_error(cl, TCPD_ERROR_RELOAD_FAILED, json_pack("{s:s}", "message", error ? error : "failed"));
        else
                control_reply(cl, NULL, false);
}

/* What the next SIGTERM means with the fd store on: a restart (hand the
 * connections over) or a stop (drain them). */
void method_prepare_stop(struct control_client *cl, struct vl_call *call) {
        static const char *const known[] = { "handover", NULL };
        json_t *v;

        if (!control_check_params(cl, call->params, known))
                return;
        if (vl_param(call->params, "handover", JSON_TRUE, &v) < 0 || !v) /* a boolean */
                return control_reply_invalid_parameter(cl, "handover");
        if (!control_client_is_admin(cl))
                return control_reply_error(cl, VARLINK_ERROR_PERMISSION_DENIED, NULL);
        cl->ctl->t->stop_drain = !json_is_true(v);
        log_info("uid %u pid %d says the next stop is %s", (unsigned) cl->cred.uid, (int) cl->cred.pid,
                 json_is_true(v) ? "a restart: connections will be handed over" : "a stop: connections will be drained");
        control_reply(cl, NULL, false);
}

void method_set_log_level(struct control_client *cl, struct vl_call *call) {
        static const char *const known[] = { "level", NULL };
        int previous = log_level_get(), level;
        json_t *v;

        if (!control_check_params(cl, call->params, known))
                return;
        if (vl_param(call->params, "level", JSON_STRING, &v) < 0 || !v ||
            (level = log_level_from_string(json_string_value(v))) < 0)
                return control_reply_invalid_parameter(cl, "level");
        if (!control_client_is_admin(cl))
                return control_reply_error(cl, VARLINK_ERROR_PERMISSION_DENIED, NULL);
        log_level_set(level);
        /* logged whatever either level is: an admin's change of what gets
         * logged must itself be on record */
        log_full("CODE_FILE=" __FILE__, "CODE_LINE=" LOG_STRINGIFY(__LINE__), __func__, LOG_NOTICE, 0, NULL,
                 "log level set to %s (was %s) by uid %u pid %d; a reload restores log_level from the settings",
                 log_level_to_string(level), log_level_to_string(previous), (unsigned) cl->cred.uid,
                 (int) cl->cred.pid);
        control_reply(cl, json_pack("{s:s,s:s}", "level", log_level_to_string(level), "previous",
                                    log_level_to_string(previous)),
                      false);
}
