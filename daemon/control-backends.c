/* type = forward's backends on the control socket: their state in
 * GetStatus (services[].backends) and an admin's drain, disable and enable
 * (SetBackend). */
#include "backend.h"
#include "control-internal.h"
#include "fdstore.h"

json_t *control_backends_json(const struct backend_pool *p) {
        json_t *a = json_array();

        for (size_t i = 0; a && p && i < p->n; i++) {
                const struct backend *b = &p->b[i];
                const struct backend_state *s = b->st;
                char addr[ADDR_STRLEN];
                json_t *o = json_pack(
                        "{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "backend", b->text, "address",
                        addr_format(&b->addr, addr, sizeof(addr)), "state",
                        __atomic_load_n(&s->up, __ATOMIC_RELAXED) ? "up" : "down", "admin",
                        backend_admin_name((enum backend_admin) __atomic_load_n(&s->admin, __ATOMIC_RELAXED)),
                        "check", check_result_name((enum check_result) s->last_check), "connections_open",
                        (json_int_t) __atomic_load_n(&s->open, __ATOMIC_RELAXED), "connections_total",
                        (json_int_t) __atomic_load_n(&s->total, __ATOMIC_RELAXED), "connect_failures",
                        (json_int_t) __atomic_load_n(&s->failed, __ATOMIC_RELAXED), "checks",
                        (json_int_t) __atomic_load_n(&s->checks, __ATOMIC_RELAXED), "checks_failed",
                        (json_int_t) __atomic_load_n(&s->checks_failed, __ATOMIC_RELAXED), "bytes_in",
                        (json_int_t) __atomic_load_n(&s->bytes_in, __ATOMIC_RELAXED), "bytes_out",
                        (json_int_t) __atomic_load_n(&s->bytes_out, __ATOMIC_RELAXED));

                if (o && s->last_check == CHECK_REFUSED && s->check_errno)
                        json_object_set_new(o, "check_error", json_string(strerror(s->check_errno)));
                json_array_append_new(a, o);
        }
        return a;
}

/* The backend of p named as written or by its address; -1 if none. */
static int backend_find(const struct backend_pool *p, const char *name) {
        union sockaddr_in46 a;
        bool numeric = addr_parse(name, &a) == 0;

        for (size_t i = 0; i < p->n; i++)
                if (streq(p->b[i].text, name) || (numeric && addr_equal(&a, &p->b[i].addr)))
                        return (int) i;
        return -1;
}

/* What an admin drained or disabled, kept in the fd store for the next
 * tcpd (a line each: service, backend, admin, tab-separated). */
static void backends_save(struct tcpd *t) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        int r;

        if (!f)
                return;
        for (size_t k = 0; k < ARRAY_SIZE(t->pools); k++)
                for (size_t i = 0; t->pools[k] && i < t->pools[k]->n; i++) {
                        uint8_t a = __atomic_load_n(&t->pools[k]->b[i].st->admin, __ATOMIC_RELAXED);

                        if (a != BACKEND_ENABLED)
                                fprintf(f, "%s\t%s\t%s\n", t->pools[k]->service, t->pools[k]->b[i].text,
                                        backend_admin_name((enum backend_admin) a));
                }
        fclose(f);
        r = fdstore_save_text(FDSTORE_BACKENDS_NAME, text);
        if (r < 0)
                log_warning_errno(r, "cannot keep the backends' admin states in systemd's fd store; a restart "
                                     "enables them all");
        free(text);
}

void method_set_backend(struct control_client *cl, struct vl_call *call) {
        static const char *const known[] = { "service", "backend", "admin", NULL };
        static const char *const admins[_BACKEND_ADMIN_MAX] = {
                [BACKEND_ENABLED] = "enable", [BACKEND_DRAIN] = "drain", [BACKEND_DISABLED] = "disable",
        };
        struct tcpd *t = cl->ctl->t;
        json_t *service, *backend, *admin;
        struct backend_pool *p;
        int svc, i, a, previous;

        if (!control_check_params(cl, call->params, known))
                return;
        if (vl_param(call->params, "service", JSON_STRING, &service) < 0 || !service ||
            (svc = service_lookup(json_string_value(service))) < 0 || !(p = t->pools[svc]))
                return control_reply_invalid_parameter(cl, "service");
        if (vl_param(call->params, "backend", JSON_STRING, &backend) < 0 || !backend ||
            (i = backend_find(p, json_string_value(backend))) < 0)
                return control_reply_invalid_parameter(cl, "backend");
        if (vl_param(call->params, "admin", JSON_STRING, &admin) < 0 || !admin)
                return control_reply_invalid_parameter(cl, "admin");
        for (a = 0; a < _BACKEND_ADMIN_MAX; a++)
                if (streq(json_string_value(admin), admins[a]))
                        break;
        if (a == _BACKEND_ADMIN_MAX)
                return control_reply_invalid_parameter(cl, "admin");
        if (!control_client_is_admin(cl))
                return control_reply_error(cl, VARLINK_ERROR_PERMISSION_DENIED, NULL);
        previous = __atomic_exchange_n(&p->b[i].st->admin, (uint8_t) a, __ATOMIC_RELAXED);
        {
                char svcf[80], bf[96], ev[] = "TCPD_EVENT=backend-admin";
                const char *fields[] = { ev, svcf, bf, NULL };

                snprintf(svcf, sizeof(svcf), "TCPD_SERVICE=%s", p->service);
                snprintf(bf, sizeof(bf), "TCPD_BACKEND=%s", p->b[i].text);
                log_full("CODE_FILE=" __FILE__, "CODE_LINE=" LOG_STRINGIFY(__LINE__), __func__, LOG_NOTICE, 0, fields,
                         "service %s: backend %s %s (was %s) by uid %u pid %d", p->service, p->b[i].text,
                         backend_admin_name((enum backend_admin) a), backend_admin_name((enum backend_admin) previous),
                         (unsigned) cl->cred.uid, (int) cl->cred.pid);
        }
        backends_save(t);
        control_monitor_admin(cl->ctl, p->service, p->b[i].text, backend_admin_name((enum backend_admin) a));
        control_reply(cl, json_pack("{s:s,s:s,s:s,s:s}", "service", p->service, "backend", p->b[i].text, "admin",
                                    backend_admin_name((enum backend_admin) a), "previous",
                                    backend_admin_name((enum backend_admin) previous)),
                      false);
}
