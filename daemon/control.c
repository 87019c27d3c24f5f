/* The control socket: accepts control clients, reads Varlink calls,
 * dispatches them, and writes replies in request order. Calls that need the
 * connections (list, kick) go to the loops as messages (control-conns.c);
 * the client waits, without blocking anyone else, until the answer comes
 * back. */
#include "control-internal.h"

static void control_client_free(struct control_client *cl);

static struct ratelimit control_rl = RATELIMIT_INIT(10 * 1000 * 1000, 10);

bool control_client_is_admin(const struct control_client *cl) {
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

static int control_client_update_events(struct control_client *cl) {
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
int control_client_flush(struct control_client *cl) {
        size_t before = vl_buf_pending(&cl->out);

        while (vl_buf_pending(&cl->out)) {
                ssize_t n = send(cl->fd, cl->out.data + cl->out.start, vl_buf_pending(&cl->out),
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        control_client_free(cl);
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
                control_client_free(cl);
                return -EPIPE;
        }
        return control_client_update_events(cl);
}

void control_reply_error(struct control_client *cl, const char *error, json_t *params) {
        if (vl_put_error(&cl->out, error, params) < 0)
                cl->closing = true;
}

void control_reply(struct control_client *cl, json_t *params, bool continues) {
        if (vl_put_reply(&cl->out, params, continues) < 0)
                cl->closing = true;
}

void control_reply_invalid_parameter(struct control_client *cl, const char *name) {
        control_reply_error(cl, VARLINK_ERROR_INVALID_PARAMETER, json_pack("{s:s}", "parameter", name));
}

/* Every parameter a method does not know is an error, as are wrong types. */
bool control_check_params(struct control_client *cl, json_t *params, const char *const *known) {
        const char *key;
        json_t *v;

        json_object_foreach(params, key, v) {
                bool ok = false;
                for (size_t i = 0; known && known[i]; i++)
                        if (streq(key, known[i]))
                                ok = true;
                if (!ok) {
                        control_reply_invalid_parameter(cl, key);
                        return false;
                }
        }
        return true;
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
        { TCPD_METHOD_SET_BACKEND, method_set_backend },
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
                control_reply_error(cl, VARLINK_ERROR_METHOD_NOT_FOUND, json_pack("{s:s}", "method", call->method));
        else {
                char iface[256];
                size_t n = dot ? (size_t) (dot - call->method) : strlen(call->method);
                snprintf(iface, sizeof(iface), "%.*s", (int) (n < sizeof(iface) ? n : sizeof(iface) - 1),
                         call->method);
                control_reply_error(cl, VARLINK_ERROR_INTERFACE_NOT_FOUND, json_pack("{s:s}", "interface", iface));
        }
out:
        /* oneway: the caller wants no reply, so take back what was queued */
        if (call->oneway && !cl->waiting)
                cl->out.len = cl->out.start + before;
}

/* Handles every whole call that has arrived, in order, until one has to
 * wait for a loop; then writes what it can. */
void control_client_process(struct control_client *cl) {
        for (;;) {
                bool capped = false;

                for (;;) {
                        struct vl_call call;
                        const char *why;
                        int r;

                        control_list_stream(cl);
                        if (cl->monitor)
                                control_monitor_check_input(cl);
                        if (cl->waiting || cl->streaming || cl->closing || cl->monitor)
                                break;
                        /* More calls wait while this much is unread: the
                         * memory a client costs stays bounded, however much
                         * it pipelines. */
                        if (vl_buf_pending(&cl->out) > CONTROL_MAX_OUTPUT) {
                                capped = true;
                                break;
                        }
                        r = vl_next_call(&cl->in, VARLINK_MAX_MESSAGE, &call, &why);
                        if (r == 0)
                                break;
                        if (r < 0) {
                                control_reply_error(cl, VARLINK_ERROR_INVALID_PARAMETER, json_pack("{s:s}", "parameter", why));
                                /* no NUL in sight: the stream cannot be resynchronised */
                                if (r == -EMSGSIZE) {
                                        cl->closing = true;
                                        break;
                                }
                                continue;
                        }
                        dispatch(cl, &call);
                        vl_call_done(&call);
                }
                if (control_client_flush(cl) < 0)
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
                if (control_client_flush(cl) < 0)
                        return 0;
                /* room again: go on with a list, or with calls that waited */
                if (cl->streaming || (!cl->waiting && vl_buf_pending(&cl->out) <= CONTROL_MAX_OUTPUT &&
                                      vl_buf_pending(&cl->in))) {
                        control_client_process(cl);
                        return 0;
                }
        }
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                char *dst;
                ssize_t n;

                if (revents & (EPOLLHUP | EPOLLERR) && (cl->waiting || cl->closing || cl->read_eof)) {
                        control_client_free(cl); /* nobody left to answer */
                        return 0;
                }
                if (cl->waiting || cl->streaming || cl->closing || cl->read_eof)
                        return 0;
                dst = vl_buf_reserve(&cl->in, CONTROL_READ_CHUNK);
                if (!dst) {
                        control_client_free(cl);
                        return 0;
                }
                n = recv(cl->fd, dst, CONTROL_READ_CHUNK, MSG_DONTWAIT);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return 0;
                if (n < 0) {
                        control_client_free(cl);
                        return 0;
                }
                if (n == 0) {
                        /* a half-close (as socat does at the end of its
                         * input) still gets every answer it asked for */
                        cl->read_eof = true;
                        control_client_process(cl);
                        return 0;
                }
                vl_buf_commit(&cl->in, (size_t) n);
                control_client_process(cl);
        }
        return 0;
}

static void control_client_free(struct control_client *cl) {
        struct control *ctl;

        if (!cl)
                return;
        ctl = cl->ctl;
        control_monitor_stop(cl);
        if (cl->waiting)
                cl->waiting->userdata = NULL; /* the loop still has it; list_done/kick_done free it */
        if (cl->streaming)
                control_list_end(cl);
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
                        control_client_free(cl);
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

int control_open(struct tcpd *t, const struct control_hooks *hooks, int fd, struct control **ret) {
        struct control *ctl = calloc(1, sizeof(*ctl));
        int r;

        if (!ctl)
                return log_error_errno(-ENOMEM, "cannot set up the control socket");
        ctl->t = t;
        ctl->hooks = hooks;
        ctl->fd = -1;
        /* where workers send monitor events: set once, before any worker
         * runs, so they read it without a lock (they look only while
         * shared.monitors > 0) */
        t->shared.monitor_inbox = &t->inbox;
        t->shared.monitor_deliver = control_monitor_deliver;
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
                control_client_free(ctl->clients);
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
