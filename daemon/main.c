/* tcpd: start-up, signals, reload, shutdown. */
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>

#include "check.h"
#include "conn.h"
#include "control.h"
#include "fdstore.h"
#include "listener.h"
#include "log.h"
#include "ops.h"
#include "services/exec.h"
#include "scrape.h"
#include "spawn.h"
#include "tcpd-build.h"
#include "tcpd.h"
#include "units.h"

#define STATUS_INTERVAL_USEC (1 * USEC_PER_SEC)

static void help(void) {
        printf("Usage: tcpd [OPTIONS]\n"
               "\n"
               "A TCP service daemon: RFC 862 echo on port 7788 by default, with a\n"
               "Varlink control socket for tcpctl(8).\n"
               "\n"
               "Options:\n"
               "  -c, --config=PATH     settings file (default %s)\n"
               "  -t, --check-config    check the settings, print the effective ones, exit\n"
               "  -h, --help            show this help and exit\n"
               "  -V, --version         show the version and exit\n"
               "\n"
               "Signals: SIGHUP reloads the settings, SIGTERM and SIGINT stop gracefully.\n"
               "'tcpctl check-config' runs the check without typing this program's path.\n"
               "See %s(8) and tcpd.ini(5).\n",
               TCPD_CONFIG_PATH, TCPD_DAEMON_PAGE);
}

static void log_config_errors(struct config_errors *errs) {
        for (size_t i = 0; i < errs->n; i++)
                log_error("%s", errs->msg[i]);
        if (errs->total > errs->n)
                log_error("... and %zu more errors", errs->total - errs->n);
}

static char *join_errors(const struct config_errors *errs) {
        char *s = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);

        if (!f)
                return NULL;
        for (size_t i = 0; i < errs->n; i++)
                fprintf(f, "%s%s", i ? "; " : "", errs->msg[i]);
        fclose(f);
        return s;
}

static void resolve_admin_group(struct tcpd *t) {
        struct group *g = getgrnam(t->config->admin_group);

        /* Looked up here, at start and on reload, never on the control path. */
        t->admin_gid_valid = g != NULL;
        t->admin_gid = g ? g->gr_gid : (gid_t) -1;
        if (!g)
                log_warning("admin group '%s' does not exist; only root may kick and reload",
                            t->config->admin_group);
}

static unsigned fd_budget;
_Static_assert(CONFIG_MAX_SERVICES <= SERVICE_IDS_MAX, "an id for every service of one load");

/* Gives each service of the settings its id (registry.h): the same as
 * before for a name and type that stay. Fails when the process has used up
 * its ids (services added and removed by many reloads). */
static int assign_service_ids(struct config *c) {
        for (size_t i = 0; i < c->n_services; i++) {
                int id = service_register(service_config_name(&c->services[i]), c->services[i].type);

                if (id < 0)
                        return log_error_errno(id, "no id left for service '%s': at most %d services in the life "
                                                   "of one tcpd; restart it",
                                               service_config_name(&c->services[i]), SERVICE_IDS_MAX);
                c->services[i].id = (unsigned) id;
        }
        return 0;
}
_Static_assert(_REFUSE_MAX <= ARRAY_SIZE(((struct loop_stats *) 0)->refused_by), "a counter for every rule");

#define settings_from(c)                                                                                    \
        {                                                                                                   \
                .max_connections = (c)->max_connections, .max_buffered = (c)->max_buffered,                 \
                .fd_budget = fd_budget,                                                                     \
                .idle_timeout_usec = (c)->idle_timeout_usec, .log_connections = (c)->log_connections,       \
                .close_timeout_usec = (c)->shutdown_timeout_usec, .store_after_usec = (c)->store_after_usec, \
                .max_connections_per_source = (c)->max_connections_per_source,                              \
                .source_prefix_ipv6 = (c)->source_prefix_ipv6,                                              \
                .max_connection_rate = (c)->max_connection_rate, .allow = (c)->allow,                       \
                .max_connection_burst = (c)->max_connection_burst ? (c)->max_connection_burst : 1,          \
                .n_allow = (c)->n_allow, .deny = (c)->deny, .n_deny = (c)->n_deny,                          \
                .max_lifetime_usec = (c)->max_lifetime_usec,                                                \
        }

static void raise_nofile(void) {
        struct rlimit rl;

        /* Every connection is a descriptor: use all the hard limit allows. */
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        log_warning_errno(-errno, "cannot raise the open files limit");
        }
}

/* How many connections fit: the open-files limit, less what tcpd holds now
 * and each worker's splice pipe once a relay needs it, less a reserve so
 * that tcpctl still gets in when connections use the rest. */
static unsigned compute_fd_budget(unsigned adopted, unsigned workers) {
        struct rlimit rl;
        unsigned used = 0, reserve, limit;
        DIR *d = opendir("/proc/self/fd");

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
                return 0;
        limit = rl.rlim_cur > UINT32_MAX ? UINT32_MAX : (unsigned) rl.rlim_cur;
        while (d && readdir(d))
                used++;
        if (d)
                closedir(d);
        used = used > 3 ? used - 3 : used; /* ".", ".." and the DIR's own fd */
        /* connections adopted from the fd store are clients, not tcpd's own */
        used = used > adopted ? used - adopted : 0;
        used += 2 * workers;
        if (limit <= used + 8)
                return 1;
        reserve = (limit - used) / 4;
        if (reserve > 32)
                reserve = 32;
        return limit - used - reserve;
}

void tcpd_stats(const struct tcpd *t, struct loop_stats *sum) {
        loop_stats_sum(t->loops, t->n_workers, sum);
}

static uint64_t open_connections(const struct tcpd *t) {
        struct loop_stats s;

        tcpd_stats(t, &s);
        return s.open;
}

static void backend_changed(void *userdata, const struct backend_pool *p, size_t i, bool up,
                            enum check_result why) {
        struct tcpd *t = userdata;
        const struct backend_state *s = p->b[i].st;
        char svc[80], backend[96], event[] = "TCPD_EVENT=backend", reason[64];
        const char *fields[] = { event, svc, backend, reason, NULL };

        snprintf(svc, sizeof(svc), "TCPD_SERVICE=%s", p->service);
        snprintf(backend, sizeof(backend), "TCPD_BACKEND=%s", p->b[i].text);
        snprintf(reason, sizeof(reason), "TCPD_CHECK=%s", check_result_name(why));
        log_at(up ? LOG_NOTICE : LOG_WARNING, 0, fields, "service %s: backend %s is %s (check: %s%s%s)", p->service,
               p->b[i].text, up ? "up" : "down", check_result_name(why), why == CHECK_REFUSED ? ", " : "",
               why == CHECK_REFUSED ? strerror(s->check_errno) : "");
        control_monitor_backend(t->control, p->service, p->b[i].text, up, check_result_name(why));
}

/* The backends an admin drained or disabled before a restart (kept in
 * the fd store: see control-backends.c), as they were, where the same
 * service still has them. */
static void backends_restore(struct tcpd *t) {
        _cleanup_free_ char *text = t->saved_backends;
        char *save = NULL;

        t->saved_backends = NULL;
        unsigned n = 0;

        for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
                char *svc = line, *backend = strchr(svc, '\t'), *admin = backend ? strchr(backend + 1, '\t') : NULL;
                int k;

                if (!admin)
                        continue;
                *backend++ = 0;
                *admin++ = 0;
                if ((k = service_lookup(svc)) < 0 || !t->pools[k])
                        continue;
                for (size_t i = 0; i < t->pools[k]->n; i++)
                        for (int a = 0; a < _BACKEND_ADMIN_MAX; a++)
                                if (streq(t->pools[k]->b[i].text, backend) && streq(backend_admin_name(a), admin)) {
                                        __atomic_store_n(&t->pools[k]->b[i].st->admin, (uint8_t) a, __ATOMIC_RELAXED);
                                        n++;
                                }
        }
        if (n)
                log_notice("%u backend%s drained or disabled before the restart: kept so", n, plural(n));
}

/* Settings and stop requests go to every worker. */
static void post_settings(struct tcpd *t, const struct config *c) {
        struct loop_settings ls = settings_from(c);

        ls.refuse_all = t->no_settings;
        /* borrowed here: each worker's copy owns its own */
        for (size_t i = 0; i < c->n_services; i++) {
                const struct service_config *s = &c->services[i];

                ls.banner[s->id] = s->banner;
                if (s->type == SERVICE_KIND_exec && !(ls.exec[s->id] = exec_spec_new(s)))
                        log_error("out of memory: service %s cannot start programs", service_config_name(s));
                if (s->type == SERVICE_KIND_forward) {
                        ls.forward[s->id] = backend_pool_new(s, t->pools[s->id]);
                        if (!ls.forward[s->id])
                                log_error("out of memory: service %s has no backends", service_config_name(s));
                }
                ls.svc_limits[s->id] = (struct service_limits) {
                        .has_max = s->has_max_connections, .max_connections = s->max_connections,
                        .has_allow = s->has_allow, .allow = s->allow, .n_allow = s->n_allow,
                        .has_deny = s->has_deny, .deny = s->deny, .n_deny = s->n_deny,
                        .has_per_source = s->has_per_source, .max_connections_per_source = s->max_connections_per_source,
                        .has_rate = s->has_rate, .max_connection_rate = s->max_connection_rate,
                        .max_connection_burst = s->max_connection_burst,
                        .has_idle = s->has_idle_timeout, .idle_timeout_usec = s->idle_timeout_usec,
                        .has_lifetime = s->has_max_lifetime, .max_lifetime_usec = s->max_lifetime_usec,
                        .proxy_from = s->proxy_from, .n_proxy_from = s->n_proxy_from,
                };
        }

        for (unsigned i = 0; i < t->n_workers; i++)
                if (loop_post_settings(&t->loops[i], &ls) < 0)
                        log_error("out of memory sending new settings to worker %u", i);
        for (size_t i = 0; i < ARRAY_SIZE(ls.exec); i++)
                ls.exec[i] = exec_spec_unref(ls.exec[i]);
        /* kept: the next settings carry the backends' state over */
        for (size_t i = 0; i < ARRAY_SIZE(ls.forward); i++) {
                backend_pool_unref(t->pools[i]);
                t->pools[i] = ls.forward[i];
        }
        /* the checks of the backends the settings now have */
        t->checks = checks_free(t->checks);
        t->checks = checks_new(t->event, t->pools, ARRAY_SIZE(t->pools), backend_changed, t);
}

static void post_stop(struct tcpd *t, enum stop_mode mode) {
        for (unsigned i = 0; i < t->n_workers; i++)
                if (loop_post_stop(&t->loops[i], mode) < 0)
                        log_error("out of memory stopping worker %u", i);
}

/* The control plane's list holds one reference; each worker holds one
 * while it watches the listener. */
static void listener_start(struct tcpd *t, struct listener *li) {
        li->next = t->listeners;
        t->listeners = li;
        for (unsigned i = 0; i < t->n_workers; i++)
                if (loop_post_add_listener(&t->loops[i], li) < 0)
                        log_error("out of memory: worker %u will not accept on a listener", i);
}

static void listener_retire(struct tcpd *t, struct listener *li) {
        for (struct listener **p = &t->listeners; *p; p = &(*p)->next)
                if (*p == li) {
                        *p = li->next;
                        break;
                }
        for (unsigned i = 0; i < t->n_workers; i++)
                if (loop_post_retire_listener(&t->loops[i], li) < 0)
                        log_error("out of memory: worker %u keeps watching a retired listener", i);
        listener_unref(li);
}

static void update_status(struct tcpd *t, bool force) {
        char status[256];
        struct loop_stats sum, *s = &sum;

        tcpd_stats(t, s);

        if (t->no_settings)
                /* what an admin must see first in systemctl status */
                snprintf(status, sizeof(status),
                         "STATUS=%sNo settings loaded, refusing clients (fix the file, then reload): %s",
                         t->stopping ? "Stopping: " : "", t->settings_error);
        else if (t->settings_error)
                snprintf(status, sizeof(status),
                         "STATUS=%s%llu connection%s open; running on the last settings that loaded, the file has "
                         "errors: %s",
                         t->stopping ? "Stopping: " : "", (unsigned long long) s->open, s->open == 1 ? "" : "s",
                         t->settings_error);
        else
                snprintf(status, sizeof(status), "STATUS=%s%llu connection%s open, %llu served, %llu refused",
                         t->stopping ? "Stopping: " : "", (unsigned long long) s->open, s->open == 1 ? "" : "s",
                         (unsigned long long) s->total, (unsigned long long) s->refused);
        if (!force && streq(status, t->last_status))
                return;
        snprintf(t->last_status, sizeof(t->last_status), "%s", status);
        sd_notify(0, status);
}

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct tcpd *t = userdata;

        update_status(t, false);
        sd_event_source_set_time(s, usec + STATUS_INTERVAL_USEC);
        return 0;
}

/* Whether li already serves spec: the same text (port 0 binds a new port
 * each time, so only the text can tell), or the same address and port. */
static bool listener_matches(const struct listener *li, const struct listen_spec *spec) {
        if (!li->spec)
                return false;
        if (streq(li->spec, spec->text))
                return true;
        return li->any == spec->any && addr_port(&li->addr) == addr_port(&spec->addr) &&
               (spec->any || addr_equal(&li->addr, &spec->addr));
}

/* Binds what the settings list, each listener once. On failure nothing new
 * stays bound. */
static int bind_listeners(struct tcpd *t, const struct config *c, struct listener **ret) {
        struct listener *new = NULL;

        for (size_t k = 0; k < c->n_services; k++)
                for (size_t i = 0; i < c->services[k].n_listen; i++) {
                        const struct listen_spec *spec = &c->services[k].listen[i];
                        unsigned svc = c->services[k].id;
                        struct listener *li = NULL, *have;
                        int r;

                        /* keep a listener that is already bound to this */
                        for (have = t->listeners; have; have = have->next)
                                if (have->service == svc && listener_matches(have, spec))
                                        break;
                        if (have) {
                                listener_set_backlog(have, c->backlog);
                                continue;
                        }
                        r = listener_bind(c->path, spec, svc, c->backlog, t->n_workers, &li);
                        if (r < 0) {
                                while (new) {
                                        li = new->next;
                                        listener_free(new);
                                        new = li;
                                }
                                return r;
                        }
                        li->next = new;
                        new = li;
                }
        *ret = new;
        return 0;
}

static bool listener_wanted(const struct listener *li, const struct config *c) {
        for (size_t k = 0; k < c->n_services; k++) {
                const struct service_config *s = &c->services[k];

                for (size_t i = 0; s->id == li->service && i < s->n_listen; i++)
                        if (listener_matches(li, &s->listen[i]))
                                return true;
        }
        return false;
}

/* Under systemd the socket units decide where tcpd listens: a listen= in
 * the file is not bound. Say so at start and at each reload, not silently
 * (and keep it for tcpctl status). */
static void note_ignored_listen(struct tcpd *t, const struct config *c) {
        char *s = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);

        if (!f)
                return;
        for (size_t k = 0; k < c->n_services; k++)
                for (size_t i = 0; c->services[k].listen_set && i < c->services[k].n_listen; i++) {
                        const struct listen_spec *l = &c->services[k].listen[i];
                        char section[48];

                        snprintf(section, sizeof(section), "%s%s", c->services[k].name ? "service " : "",
                                 service_config_name(&c->services[k]));
                        fprintf(f, "%s[%s] listen = %s", ftell(f) ? ", " : "", section, l->text);
                        log_warning("%s:%u: [%s] listen = %s is not bound: tcpd has its sockets from systemd, whose "
                                    "socket units decide where it listens (ListenStream=)",
                                    c->path ? c->path : t->config_path, l->line, section, l->text);
                }
        fclose(f);
        free(t->listen_ignored);
        t->listen_ignored = s && *s ? s : mfree(s);
}

/* A socket from systemd serves the service its FileDescriptorName= names:
 * when new settings give that name another id (a service whose type
 * changed, or the first settings after a start on none), the socket moves
 * to it, through a new listener on a copy of the descriptor (the workers
 * switch as for any listener). Clients wait in the backlog meanwhile. */
static void remap_activated(struct tcpd *t, const struct config *c) {
        struct listener *li, *next, *moved = NULL;
        char a[ADDR_STRLEN];

        for (li = t->listeners; li; li = next) {
                const struct service_config *s = li->fdname ? config_service(c, li->fdname) : NULL;
                struct listener *nl = NULL;
                int fd;

                next = li->next;
                if (!li->activated || !li->fdname)
                        continue;
                if (!s) {
                        log_warning("the socket '%s' from systemd (%s) names no service of the settings; it stays "
                                    "with its service as it was",
                                    li->fdname, listener_format(li, a, sizeof(a)));
                        continue;
                }
                if (s->id == li->service)
                        continue;
                fd = fcntl(li->fd, F_DUPFD_CLOEXEC, 3);
                if (fd < 0 || listener_adopt(fd, s->id, &nl) < 0 || !(nl->fdname = strdup(li->fdname))) {
                        if (nl)
                                nl = listener_free(nl);
                        else if (fd >= 0)
                                close(fd);
                        log_error("cannot move the socket '%s' from systemd to its service's new settings; it "
                                  "stays as it was",
                                  li->fdname);
                        continue;
                }
                log_info("the socket '%s' from systemd now serves %s as %s", li->fdname, s->name ? s->name : "it",
                         service_name(s->type));
                listener_retire(t, li);
                nl->next = moved;
                moved = nl;
        }
        for (li = moved; li; li = next) {
                next = li->next;
                listener_start(t, li);
        }
}

static int apply_listeners(struct tcpd *t, const struct config *c) {
        struct listener *new = NULL, *li, *next;
        char a[ADDR_STRLEN];
        int r;

        if (t->activated) {
                /* systemd owns the listening sockets */
                note_ignored_listen(t, c);
                remap_activated(t, c);
                return 0;
        }
        r = bind_listeners(t, c, &new);
        if (r < 0)
                return r;
        for (li = t->listeners; li; li = next) {
                next = li->next;
                if (!listener_wanted(li, c)) {
                        log_info("no longer listening on %s (%s)", listener_format(li, a, sizeof(a)),
                                 service_id_name(li->service));
                        listener_retire(t, li);
                }
        }
        for (li = new; li; li = next) {
                next = li->next;
                listener_start(t, li);
                log_info("listening on %s (%s)", listener_format(li, a, sizeof(a)), service_id_name(li->service));
        }
        return 0;
}

/* The next start runs on these if the file is broken by then. */
static void save_settings(struct tcpd *t) {
        int r = fdstore_save_text(FDSTORE_SETTINGS_NAME, t->config->source);

        if (r < 0)
                log_warning_errno(r, "cannot keep the settings in systemd's fd store; a restart with a broken "
                                     "settings file will not find them");
}

int tcpd_reload(struct tcpd *t, char **error) {
        struct config_errors errs = { 0 };
        uint64_t n_open;
        struct config *c = NULL;
        char buf[64];
        int r;

        *error = NULL;
        if (t->stopping) {
                log_notice("reload ignored: tcpd is stopping");
                *error = strdup("tcpd is stopping");
                return -ESHUTDOWN;
        }
        snprintf(buf, sizeof(buf), "MONOTONIC_USEC=%llu", (unsigned long long) now_usec(CLOCK_MONOTONIC));
        sd_notifyf(0, "RELOADING=1\n%s", buf);

        r = config_load(t->config_path, t->config_must_exist, &c, &errs);
        if (r < 0) {
                log_config_errors(&errs);
                log_error(t->no_settings ? "reload failed; still no settings, clients are refused"
                                         : "reload failed; the previous settings stay in force");
                *error = join_errors(&errs);
                config_errors_clear(&errs);
                free(t->settings_error);
                t->settings_error = *error ? strdup(*error) : NULL;
                goto done;
        }
        r = assign_service_ids(c);
        if (r < 0) {
                *error = strdup("no id left for a new service (see the log); the previous settings stay in force");
                config_free(c);
                goto done;
        }
        r = apply_listeners(t, c);
        if (r < 0) {
                *error = strdup("cannot bind a listen address (see the log); the previous settings stay in force");
                config_free(c);
                goto done;
        }
        if (!streq(c->control_socket, t->config->control_socket))
                log_notice("control_socket changed to %s; it takes effect at the next start", c->control_socket);
        if (c->workers != t->config->workers)
                log_notice("workers changed; it takes effect at the next start");
        if (c->worker_batch != t->worker_batch)
                log_notice("worker_scheduling changed; it takes effect at the next start");
        for (struct listener *li = t->listeners; li; li = li->next)
                listener_set_options(li, c);
        n_open = open_connections(t);
        if (c->max_connections && c->max_connections < n_open)
                log_notice("max_connections lowered to %u with %llu open: existing connections stay, new ones are "
                           "refused until fewer are open",
                           c->max_connections, (unsigned long long) n_open);
        if (c->max_connections_per_source &&
            (!t->config->max_connections_per_source || c->max_connections_per_source < t->config->max_connections_per_source))
                log_notice("max_connections_per_source lowered to %u: sources above it keep their connections, and "
                           "get no new ones until they are below it",
                           c->max_connections_per_source);
        if (c->n_allow != t->config->n_allow || c->n_deny != t->config->n_deny ||
            (c->n_allow && memcmp(c->allow, t->config->allow, c->n_allow * sizeof(*c->allow))) ||
            (c->n_deny && memcmp(c->deny, t->config->deny, c->n_deny * sizeof(*c->deny))))
                log_notice("allow/deny changed: they apply to new connections; open ones stay (kick them with "
                           "tcpctl kick --peer)");
        config_free(t->config);
        t->config = c;
        if (t->no_settings)
                log_notice("settings loaded: serving clients");
        t->no_settings = false;
        t->settings_error = mfree(t->settings_error);
        log_level_set(c->log_level);
        resolve_admin_group(t);
        post_settings(t, c);
        save_settings(t);
        r = 0;
        log_info("reloaded settings from %s", t->config_path);
done:
        sd_notify(0, "READY=1");
        update_status(t, true);
        control_monitor_reload(t->control, r < 0 ? (*error ? *error : "failed") : NULL);
        return r;
}

static int on_shutdown_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        struct tcpd *t = userdata;

        uint64_t n = open_connections(t);

        log_notice("shutdown_timeout reached with %llu connection%s still draining; closing them",
                   (unsigned long long) n, plural(n));
        post_stop(t, STOP_NOW);
        return 0;
}

/* systemd sends SIGTERM for a stop and for a restart alike. On a restart
 * the connections wait in the fd store for the next tcpd; on a stop systemd
 * closes what is stored once the unit is down, and the bytes they are
 * owed with them: those are drained instead. tcpd.service's ExecStop=
 * (tcpctl prepare-stop) asks systemd which it is and says so first
 * (PrepareStop); without that word, hand over, as a restart must not lose
 * them. */
static bool handover_wanted(const struct tcpd *t) {
        if (t->stop_drain)
                log_info("systemd is stopping the unit, not restarting it: draining the connections");
        return !t->stop_drain;
}

void tcpd_stop(struct tcpd *t) {
        struct listener *li;
        uint64_t now;

        if (t->stopping) {
                log_notice("second stop request: closing every connection now");
                post_stop(t, STOP_NOW);
                return;
        }
        t->stopping = true;
        sd_notify(0, "STOPPING=1");
        while ((li = t->listeners))
                listener_retire(t, li);
        update_status(t, true);
        if (t->loops[0].fdstore && handover_wanted(t)) {
                uint64_t n = open_connections(t);

                log_info("stopping: handing %llu connection%s over to systemd's fd store", (unsigned long long) n,
                         plural(n));
                post_stop(t, STOP_HANDOVER);
                return;
        }
        log_info("stopping: no new connections; flushing and closing %llu open",
                 (unsigned long long) open_connections(t));
        post_stop(t, STOP_DRAIN);
        now = now_usec(CLOCK_MONOTONIC);
        if (sd_event_add_time(t->event, &t->shutdown_timer, CLOCK_MONOTONIC,
                              now + t->config->shutdown_timeout_usec, 0, on_shutdown_timeout, t) < 0)
                post_stop(t, STOP_NOW);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        struct tcpd *t = userdata;
        _cleanup_free_ char *error = NULL;

        if (si->ssi_signo == SIGHUP) {
                log_info("SIGHUP: reloading settings");
                (void) tcpd_reload(t, &error);
        } else {
                log_info("%s: stopping", si->ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
                tcpd_stop(t);
        }
        return 0;
}

static int on_inbox(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct tcpd *t = userdata;

        mailbox_dispatch(&t->inbox);
        return 0;
}

struct activated {
        int control_fd;
        int metrics_fd; /* "metrics": the scrape endpoint's socket */
        int *state_fds; /* saved connection state from the fd store, one per old worker */
        size_t n_state;
        int *conn_fds;  /* connections from the fd store */
        size_t n_conn;
        int *relay_fds; /* relays' sockets from the fd store (FDSTORE_RELAY_PREFIX), */
        char **relay_names; /* with their names */
        size_t n_relay;
};

/* Takes every socket systemd passed: "control" (or "varlink") is the
 * control socket, "conn" and "tcpd-state" come from the fd store; every
 * other name picks a service. */
static int take_activated(struct tcpd *t, struct activated *a) {
        int *control_fd = &a->control_fd;
        char **names = NULL;
        int n, r = 0;

        *control_fd = -1;
        a->metrics_fd = -1;
        n = sd_listen_fds_with_names(1, &names);
        if (n < 0)
                return log_error_errno(n, "cannot read the sockets passed by systemd");
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i, svc;
                const char *name = names && names[i] ? names[i] : "unknown";
                struct listener *li;
                char addr[ADDR_STRLEN];

                if (r < 0) {
                        close(fd);
                        continue;
                }
                if (streq(name, FDSTORE_BACKENDS_NAME) && !t->saved_backends) {
                        /* applied once the settings have made the pools */
                        t->saved_backends = fdstore_read_text(fd);
                        close(fd);
                        continue;
                }
                if (streq(name, FDSTORE_SETTINGS_NAME) || streq(name, FDSTORE_BACKENDS_NAME)) {
                        /* read before (fdstore_saved_settings), if needed;
                         * the store keeps its own copy */
                        close(fd);
                        continue;
                }
                if (strncmp(name, FDSTORE_RELAY_PREFIX, strlen(FDSTORE_RELAY_PREFIX)) == 0) {
                        if ((!a->relay_fds && !(a->relay_fds = calloc((size_t) n, sizeof(int)))) ||
                            (!a->relay_names && !(a->relay_names = calloc((size_t) n, sizeof(char *)))) ||
                            !(a->relay_names[a->n_relay] = strdup(name))) {
                                r = log_error_errno(-ENOMEM, "cannot adopt stored relays");
                                close(fd);
                                continue;
                        }
                        a->relay_fds[a->n_relay++] = fd;
                        continue;
                }
                if (streq(name, FDSTORE_CONN_NAME) || streq(name, FDSTORE_STATE_NAME)) {
                        bool conn = streq(name, FDSTORE_CONN_NAME);
                        int **fds = conn ? &a->conn_fds : &a->state_fds;

                        if (!*fds && !(*fds = calloc((size_t) n, sizeof(int)))) {
                                r = log_error_errno(-ENOMEM, "cannot adopt stored connections");
                                close(fd);
                                continue;
                        }
                        (*fds)[conn ? a->n_conn++ : a->n_state++] = fd;
                        continue;
                }
                if (streq(name, "metrics")) {
                        if (a->metrics_fd >= 0) {
                                r = log_error_errno(-EINVAL, "systemd passed two sockets named 'metrics' (fds %d "
                                                             "and %d)", a->metrics_fd, fd);
                                close(fd);
                                continue;
                        }
                        a->metrics_fd = fd;
                        continue;
                }
                if (streq(name, "control") || streq(name, "varlink")) {
                        if (*control_fd >= 0) {
                                r = log_error_errno(-EINVAL, "systemd passed two control sockets (fds %d and %d); "
                                                             "name only one 'control'", *control_fd, fd);
                                close(fd);
                                continue;
                        }
                        *control_fd = fd;
                        continue;
                }
                svc = config_service(t->config, name) ? (int) config_service(t->config, name)->id : -1;
                if (svc < 0 && t->no_settings) {
                        /* nothing loaded to say what it is: keep the socket
                         * (its clients are refused until a reload) */
                        svc = service_register(name, SERVICE_ECHO);
                        if (svc < 0)
                                svc = SERVICE_ECHO;
                }
                if (svc < 0) {
                        r = log_error_errno(-EINVAL,
                                            "socket %d from systemd is named '%s', which is no service of tcpd "
                                            "(the short forms: %.*s; or a [service NAME] of the settings; the "
                                            "control socket is 'control'); set FileDescriptorName= in the socket "
                                            "unit",
                                            fd, name, SERVICE_BUILTIN_NAMES_LEN, SERVICE_BUILTIN_NAMES_TEXT);
                        close(fd);
                        continue;
                }
                if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
                        r = log_error_errno(-EINVAL, "socket %d from systemd ('%s') is not a listening stream socket",
                                            fd, name);
                        close(fd);
                        continue;
                }
                r = listener_adopt(fd, (unsigned) svc, &li);
                if (r == 0 && !(li->fdname = strdup(name))) {
                        li = listener_free(li);
                        r = -ENOMEM;
                }
                if (r < 0) {
                        log_error_errno(r, "cannot use socket %d from systemd ('%s')", fd, name);
                        close(fd);
                        continue;
                }
                listener_start(t, li);
                t->activated = true;
                log_info("listening on %s (%s, from systemd)", listener_format(li, addr, sizeof(addr)), name);
        }
        for (int i = 0; names && names[i]; i++)
                free(names[i]);
        free(names);
        if (r < 0) {
                if (*control_fd >= 0)
                        close(*control_fd);
                *control_fd = -1;
                for (size_t i = 0; i < a->n_state; i++)
                        close(a->state_fds[i]);
                a->n_state = 0;
                for (size_t i = 0; i < a->n_conn; i++)
                        close(a->conn_fds[i]);
                a->n_conn = 0;
        }
        return r;
}

/* The connections are gone; answers a control client is still reading (a
 * long list, a kick's reply) are written out before the process ends,
 * within the shutdown timeout. */
static void finish_control_replies(struct tcpd *t) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + t->config->shutdown_timeout_usec;

        control_stop_accepting(t->control);
        while (control_busy(t->control) && now_usec(CLOCK_MONOTONIC) < deadline) {
                /* requests that reached the workers after they stopped (their
                 * threads are gone): they have no connections left, so they
                 * answer at once, here */
                for (unsigned i = 0; i < t->n_workers; i++)
                        mailbox_dispatch(&t->loops[i].inbox);
                if (sd_event_run(t->event, 50 * 1000) < 0)
                        break;
        }
}

static unsigned cpus_available(void) {
        cpu_set_t set;

        if (sched_getaffinity(0, sizeof(set), &set) < 0)
                return 1;
        return CPU_COUNT(&set) > 0 ? (unsigned) CPU_COUNT(&set) : 1;
}

struct worker_exit {
        struct msg msg;
        struct tcpd *t;
        unsigned index;
        int r;
};

static void worker_exited(struct msg *m) {
        struct worker_exit *e = (struct worker_exit *) m;
        struct tcpd *t = e->t;

        t->running--;
        if (e->r < 0 && !t->worker_error) {
                /* its connections are gone with it; stop the rest cleanly so
                 * systemd sees a failure and restarts us */
                t->worker_error = e->r;
                log_error_errno(e->r, "worker %u failed; stopping", e->index);
                tcpd_stop(t);
        }
        free(e);
}

static void *worker_main(void *userdata) {
        struct loop *l = userdata;
        struct tcpd *t = l->userdata;
        struct worker_exit *e;
        char name[16];
        int r;

        if (t->worker_batch && sched_getscheduler(0) == SCHED_OTHER) {
                /* No wake-up preemption: a worker woken while another thread
                 * runs on its CPU waits for the end of that one's slice
                 * instead of switching at once. Workers sharing a CPU then
                 * take turns in whole batches of events (measured in
                 * BENCHMARKS.md). A policy the service unit set
                 * (CPUSchedulingPolicy=) is left as it is. */
                struct sched_param sp = { .sched_priority = 0 };
                r = pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
                if (r)
                        log_warning_errno(-r, "worker %u: cannot use SCHED_BATCH", l->index);
        }
        /* named after the policy is set: a thread named tcpd-worker-N runs
         * under its final policy (the tests rely on it) */
        snprintf(name, sizeof(name), "tcpd-worker-%u", l->index);
        (void) pthread_setname_np(pthread_self(), name);
        r = loop_run(l);
        /* allocated up front would be tidier, but a lost message here would
         * leave the control plane waiting: retry until it is there */
        while (!(e = calloc(1, sizeof(*e))))
                usleep(10000);
        e->t = t;
        e->index = l->index;
        e->r = r;
        mailbox_post(&t->inbox, &e->msg, worker_exited);
        return NULL;
}

static int workers_init(struct tcpd *t, const struct loop_settings *ls) {
        unsigned n = t->config->workers ? t->config->workers : cpus_available();
        int r;

        if (n > CONFIG_MAX_WORKERS)
                n = CONFIG_MAX_WORKERS;
        r = loop_shared_init(&t->shared);
        if (r < 0)
                return log_error_errno(r, "cannot set up the workers");
        t->loops = calloc(n, sizeof(*t->loops));
        t->loop_ptrs = calloc(n, sizeof(*t->loop_ptrs));
        t->threads = calloc(n, sizeof(*t->threads));
        if (!t->loops || !t->loop_ptrs || !t->threads)
                return log_error_errno(-ENOMEM, "cannot set up %u workers", n);
        for (unsigned i = 0; i < n; i++) {
                t->loops[i].epfd = t->loops[i].inbox.efd = -1;
                t->loops[i].pipe[0] = t->loops[i].pipe[1] = -1;
                t->loop_ptrs[i] = &t->loops[i];
        }
        t->n_workers = t->shared.n_loops = n;
        /* low descriptors for starting programs (type = exec), taken
         * before the many others */
        r = spawn_init(n);
        if (r < 0)
                return log_error_errno(r, "cannot set up starting programs");
        /* a reload replaces t->config while workers may still be starting */
        t->worker_batch = t->config->worker_batch;
        for (unsigned i = 0; i < n; i++) {
                r = loop_init(&t->loops[i], i, &t->shared, NULL, ls);
                if (r < 0)
                        return log_error_errno(r, "cannot set up worker %u", i);
                t->loops[i].userdata = t;
        }
        return 0;
}

static int workers_start(struct tcpd *t) {
        sigset_t all, old;
        int r = 0;

        /* signals are the control plane's (signalfd): no worker takes them */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        for (unsigned i = 0; i < t->n_workers; i++) {
                r = -pthread_create(&t->threads[i], NULL, worker_main, &t->loops[i]);
                if (r < 0)
                        break;
                t->threads_started++;
                t->running++;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0)
                return log_error_errno(r, "cannot start worker %u", t->threads_started);
        return 0;
}

static void workers_join(struct tcpd *t) {
        for (unsigned i = 0; i < t->threads_started; i++)
                pthread_join(t->threads[i], NULL);
        t->threads_started = 0;
}

static int run(struct tcpd *t) {
        struct loop_settings ls = settings_from(t->config);
        struct activated act = { .control_fd = -1, .metrics_fd = -1 };
        int control_fd, r;
        sigset_t mask;

        ls.refuse_all = t->no_settings;
        r = assign_service_ids(t->config);
        if (r < 0)
                return r;
        /* relays adopted from the fd store need their service's backends
         * before the settings are posted (borrowed: each loop's copy takes
         * a reference; post_settings carries their state over) */
        for (size_t i = 0; i < t->config->n_services; i++) {
                const struct service_config *s = &t->config->services[i];

                if (s->type == SERVICE_KIND_forward && !t->pools[s->id])
                        ls.forward[s->id] = t->pools[s->id] = backend_pool_new(s, NULL);
        }

        t->start_monotonic = now_usec(CLOCK_MONOTONIC);
        raise_nofile();
        resolve_admin_group(t);

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = sd_event_new(&t->event);
        if (r < 0)
                return log_error_errno(r, "cannot create the event loop");
        if (sd_event_add_signal(t->event, NULL, SIGTERM, on_signal, t) < 0 ||
            sd_event_add_signal(t->event, NULL, SIGINT, on_signal, t) < 0 ||
            sd_event_add_signal(t->event, NULL, SIGHUP, on_signal, t) < 0)
                return log_error("cannot watch signals"), -EIO;
        /* sd-event sends WATCHDOG=1 itself when WATCHDOG_USEC asks for it */
        (void) sd_event_set_watchdog(t->event, true);

        r = workers_init(t, &ls);
        if (r < 0)
                return r;
        r = mailbox_init(&t->inbox);
        if (r < 0)
                return log_error_errno(r, "cannot set up the control mailbox");
        r = sd_event_add_io(t->event, &t->inbox_source, t->inbox.efd, EPOLLIN, on_inbox, t);
        if (r < 0)
                return log_error_errno(r, "cannot watch the control mailbox");

        for (unsigned i = 0; i < t->n_workers; i++)
                t->loops[i].fdstore = t->loops[i].store_new = fdstore_configured();
        r = take_activated(t, &act);
        control_fd = act.control_fd;
        if (r >= 0 && (act.n_conn || act.n_state || act.n_relay))
                fdstore_adopt(t->loop_ptrs, t->n_workers, act.conn_fds, act.n_conn, act.state_fds, act.n_state,
                              act.relay_fds, act.relay_names, act.n_relay);
        free(act.conn_fds);
        free(act.state_fds);
        free(act.relay_fds);
        for (size_t i = 0; i < act.n_relay; i++)
                free(act.relay_names[i]);
        free(act.relay_names);
        if (r < 0)
                return r;
        r = apply_listeners(t, t->config);
        if (r < 0)
                return r;
        if (!t->listeners)
                log_warning("no listen address is configured: serving the control socket only");
        static const struct control_hooks hooks = { .reload = tcpd_reload };

        r = control_open(t, &hooks, control_fd, &t->control);
        if (r < 0)
                return r;
        r = scrape_open(t, act.metrics_fd, &t->scrape);
        if (r < 0)
                return r;
        log_info("control socket %s", control_fd >= 0 ? "from systemd" : t->config->control_socket);
        r = sd_event_add_time_relative(t->event, &t->status_timer, CLOCK_MONOTONIC, STATUS_INTERVAL_USEC, 0,
                                       on_status_timer, t);
        if (r < 0)
                return log_error_errno(r, "cannot set up the status timer");
        (void) sd_event_source_set_enabled(t->status_timer, SD_EVENT_ON);

        for (struct listener *li = t->listeners; li; li = li->next)
                listener_set_options(li, t->config);
        /* everything tcpd keeps open is open now: what is left is for clients */
        fd_budget = compute_fd_budget((unsigned) __atomic_load_n(&t->shared.conn_fds, __ATOMIC_RELAXED), t->n_workers);
        post_settings(t, t->config);
        backends_restore(t);
        r = workers_start(t);
        if (r < 0) {
                tcpd_stop(t);
                post_stop(t, STOP_NOW);
        } else {
                log_info("tcpd %s started with %u worker%s (room for %u connections under the open files limit)",
                         TCPD_VERSION, t->n_workers, t->n_workers == 1 ? "" : "s", fd_budget);
                if (!t->settings_error)
                        save_settings(t);
                sd_notify(0, "READY=1");
                update_status(t, true);
        }

        while (t->running > 0) {
                int k = sd_event_run(t->event, UINT64_MAX);
                if (k < 0) {
                        log_error_errno(k, "sd-event failed");
                        /* the workers cannot be told to stop any more */
                        _exit(1);
                }
        }
        workers_join(t);
        if (r >= 0)
                r = t->worker_error;
        if (r >= 0)
                finish_control_replies(t);
        {
                struct loop_stats sum;
                tcpd_stats(t, &sum);
                log_info("tcpd stopped; %llu connection%s served", (unsigned long long) sum.total, plural(sum.total));
        }
        return r;
}

static void teardown(struct tcpd *t) {
        t->scrape = scrape_free(t->scrape);
        t->metrics_address = mfree(t->metrics_address);
        t->control = control_free(t->control);
        workers_join(t);
        /* Answers still in flight: let the loops run them, then free them. */
        for (int pass = 0; pass < 2; pass++) {
                for (unsigned i = 0; i < t->n_workers; i++)
                        if (t->loops[i].epfd >= 0 && t->loops[i].inbox.efd >= 0)
                                mailbox_dispatch(&t->loops[i].inbox);
                if (t->inbox.efd >= 0)
                        mailbox_dispatch(&t->inbox);
        }
        while (t->listeners)
                listener_retire(t, t->listeners);
        for (unsigned i = 0; i < t->n_workers; i++) {
                if (t->loops[i].inbox.efd >= 0)
                        mailbox_dispatch(&t->loops[i].inbox);
                loop_done(&t->loops[i]);
        }
        if (t->n_workers)
                loop_shared_done(&t->shared);
        spawn_done();
        free(t->loops);
        free(t->loop_ptrs);
        free(t->threads);
        t->loops = NULL;
        t->n_workers = 0;
        t->inbox_source = sd_event_source_disable_unref(t->inbox_source);
        t->status_timer = sd_event_source_disable_unref(t->status_timer);
        t->shutdown_timer = sd_event_source_disable_unref(t->shutdown_timer);
        mailbox_done(&t->inbox);
        t->checks = checks_free(t->checks);
        t->event = sd_event_unref(t->event);
        t->config = config_free(t->config);
        for (size_t i = 0; i < ARRAY_SIZE(t->pools); i++)
                t->pools[i] = backend_pool_unref(t->pools[i]);
        t->settings_error = mfree(t->settings_error);
        t->listen_ignored = mfree(t->listen_ignored);
        t->saved_backends = mfree(t->saved_backends);
}

/* The settings file does not load at a start. Exiting would not help
 * under systemd: with the fd store it would drop every connection, and a
 * client waiting on a socket unit would start tcpd again and again until
 * the socket fails. So tcpd runs on the last settings that loaded (kept in
 * the fd store), or, where it has sockets from systemd but no such
 * settings, answers tcpctl and refuses clients until a reload succeeds.
 * Started by hand, with nothing to keep, it exits. */
static int start_without_settings(struct tcpd *t, struct config_errors *errs) {
        _cleanup_free_ char *saved = fdstore_saved_text(FDSTORE_SETTINGS_NAME);
        struct config_errors saved_errs = { 0 };

        t->settings_error = join_errors(errs);
        if (!t->settings_error)
                return log_error_errno(-ENOMEM, "cannot start"), -ENOMEM;
        if (saved && config_load_string(t->config_path, saved, &t->config, &saved_errs) == 0 &&
            (config_resolve(t->config, &saved_errs) == 0 || (t->config = config_free(t->config), false))) {
                log_error("%s has errors; running on the last settings that loaded, kept in systemd's fd store "
                          "(fix the file, then reload)",
                          t->config_path);
                return 0;
        }
        config_errors_clear(&saved_errs);
        if (sd_listen_fds(0) <= 0)
                return -EINVAL;
        t->config = config_new();
        if (!t->config)
                return log_error_errno(-ENOMEM, "cannot start"), -ENOMEM;
        t->no_settings = true;
        log_error("%s has errors and no earlier settings are kept: refusing every client until a reload loads "
                  "the file",
                  t->config_path);
        return 0;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        struct tcpd t = { .config_path = TCPD_CONFIG_PATH };
        struct config_errors errs = { 0 };
        bool check = false;
        int c, r;

        t.inbox.efd = -1;
        while ((c = getopt_long(argc, argv, "c:thV", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        t.config_path = optarg;
                        t.config_must_exist = true;
                        break;
                case 't':
                        check = true;
                        break;
                case 'h':
                        help();
                        return 0;
                case 'V':
                        printf("tcpd %s\n", TCPD_VERSION);
                        return 0;
                default:
                        fprintf(stderr, "Try 'tcpd --help'.\n");
                        return 2;
                }
        if (optind < argc) {
                fprintf(stderr, "tcpd: unexpected argument '%s'\nTry 'tcpd --help'.\n", argv[optind]);
                return 2;
        }

        log_open();
        r = config_load(t.config_path, t.config_must_exist, &t.config, &errs);
        if (r < 0) {
                log_config_errors(&errs);
                if (check) {
                        config_errors_clear(&errs);
                        fprintf(stderr, "tcpd: settings are not valid\n");
                        return 1;
                }
                r = start_without_settings(&t, &errs);
                config_errors_clear(&errs);
                if (r < 0) {
                        free(t.settings_error);
                        return 1;
                }
        }
        if (!t.config->path && !check && !t.no_settings)
                log_info("no settings file at %s; using the defaults", t.config_path);
        log_level_set(t.config->log_level);
        if (check) {
                config_print(t.config, stdout);
                if (!getgrnam(t.config->admin_group))
                        fprintf(stderr, "tcpd: warning: admin group '%s' does not exist\n", t.config->admin_group);
                fprintf(stderr, "tcpd: settings are valid\n");
                config_free(t.config);
                return 0;
        }

        r = run(&t);
        if (r < 0)
                sd_notifyf(0, "STATUS=Failed: %s\nERRNO=%d", strerror(-r), -r);
        teardown(&t);
        return r < 0 ? 1 : 0;
}
