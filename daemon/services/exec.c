/* exec: a program per connection, with the socket as its standard input
 * and output, as tcpserver, xinetd and systemd's Accept=yes run them. tcpd
 * keeps its own copy of the socket, so the connection stays listed,
 * counted and kickable, but never reads or writes it: the program does,
 * and its bytes and idle time come from the kernel (TCP_INFO). Its stderr
 * is a pipe that tcpd logs, line by line, with the connection's fields;
 * its end is seen on a pidfd and reaped there, so there is no SIGCHLD to
 * race with and no zombie left. A close from our side (kick, timeout,
 * stop) sends the program's process group SIGTERM, SIGKILL after the
 * service's kill_timeout, and the socket gets its FIN once it has exited. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>

#include "conn-io.h"
#include "ops.h"
#include "services/exec.h"
#include "services/service.h"
#include "spawn.h"
#include "words.h"

/* after SIGKILL, how long a program that still does not exit (stuck in
 * the kernel) may hold up the close of its connection */
#define KILL_GRACE_USEC (5 * 1000 * 1000ULL)

struct exec_spec {
        unsigned refs; /* atomic */
        char **argv;   /* argv[0]: the absolute path */
        char **env;    /* environment= first, then tcpd's own, filtered */
        size_t n_env;
        uint64_t kill_timeout_usec;
};

/* What tcpd sets for each connection, in tcpserver's and systemd's names:
 * these win over the same names anywhere else. */
static const char *const conn_vars[] = {
        "PROTO", "TCPREMOTEIP", "TCPREMOTEPORT", "TCPLOCALIP", "TCPLOCALPORT", "REMOTE_ADDR", "REMOTE_PORT",
        "TCPD_CONNECTION_ID", "TCPD_SERVICE",
};
#define N_CONN_VARS ARRAY_SIZE(conn_vars)

/* tcpd's own environment, but not what systemd said to tcpd alone: a
 * program must not take tcpd's sockets, notify socket or watchdog for its
 * own. */
static bool env_passed(const char *kv) {
        static const char *const dropped[] = { "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                                               "WATCHDOG_PID", "WATCHDOG_USEC", "MAINPID", "MANAGERPID",
                                               "SYSTEMD_EXEC_PID", "JOURNAL_STREAM", "FDSTORE", "TCPD_INSTANCE" };
        size_t len = strcspn(kv, "=");

        for (size_t i = 0; i < ARRAY_SIZE(dropped); i++)
                if (strlen(dropped[i]) == len && !strncmp(kv, dropped[i], len))
                        return false;
        for (size_t i = 0; i < N_CONN_VARS; i++)
                if (strlen(conn_vars[i]) == len && !strncmp(kv, conn_vars[i], len))
                        return false;
        return kv[len] == '=';
}

static bool env_has(char **env, size_t n, const char *kv) {
        size_t len = strcspn(kv, "=");

        for (size_t i = 0; i < n; i++)
                if (!strncmp(env[i], kv, len) && env[i][len] == '=')
                        return true;
        return false;
}

struct exec_spec *exec_spec_new(const struct service_config *s) {
        extern char **environ;
        struct exec_spec *e = calloc(1, sizeof(*e));
        size_t n = 0, cap = s->n_environment + words_count(environ) + 1;

        if (!e)
                return NULL;
        e->refs = 1;
        e->kill_timeout_usec = s->kill_timeout_usec;
        e->argv = calloc(words_count(s->exec_argv) + 1, sizeof(char *));
        e->env = calloc(cap, sizeof(char *));
        if (!e->argv || !e->env)
                return exec_spec_unref(e);
        for (size_t i = 0; s->exec_argv && s->exec_argv[i]; i++)
                if (!(e->argv[i] = strdup(s->exec_argv[i])))
                        return exec_spec_unref(e);
        /* the later of two environment= words with one name wins, as in a unit */
        for (size_t i = s->n_environment; i-- > 0;)
                if (env_passed(s->environment[i]) && !env_has(e->env, n, s->environment[i]) &&
                    !(e->env[n++] = strdup(s->environment[i])))
                        return exec_spec_unref(e);
        for (size_t i = 0; environ && environ[i]; i++)
                if (env_passed(environ[i]) && !env_has(e->env, n, environ[i]) &&
                    !(e->env[n++] = strdup(environ[i])))
                        return exec_spec_unref(e);
        e->n_env = n;
        return e;
}

struct exec_spec *exec_spec_ref(struct exec_spec *e) {
        if (e)
                __atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED);
        return e;
}

struct exec_spec *exec_spec_unref(struct exec_spec *e) {
        if (!e || __atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        words_free(e->argv);
        words_free(e->env);
        free(e);
        return NULL;
}

/* A running program: freed with its connection (c->data). */
struct exec_proc {
        struct ev_cb pid_ev, err_ev;
        struct conn *c;
        pid_t pid;
        int pidfd, errfd;     /* -1 once closed */
        uint8_t signals;      /* 0, then 1 after SIGTERM, 2 after SIGKILL */
        bool reaped;
        uint64_t kill_timeout_usec;
};

#define proc_of(c) ((struct exec_proc *) (c)->data)

/* A program gets a blocking socket, as from inetd; the file description is
 * shared, so tcpd's own copy is blocking too while the program runs (tcpd
 * only asks it questions then) and non-blocking again before tcpd reads
 * or writes it itself, at the close. */
static int set_blocking(int fd, bool blocking) {
        /* F_SETFL sets only O_NONBLOCK among a socket's flags tcpd uses
         * (not O_APPEND, O_ASYNC, O_DIRECT, O_NOATIME): no F_GETFL first */
        return fcntl(fd, F_SETFL, blocking ? 0 : O_NONBLOCK) < 0 ? -errno : 0;
}

static void fd_drop(struct loop *l, int *fd) {
        if (*fd < 0)
                return;
        /* not close() alone: another worker's child may hold a copy for
         * a moment (it copies the low descriptors), and epoll would keep
         * reporting a file that is still open */
        (void) epoll_ctl(l->epfd, EPOLL_CTL_DEL, *fd, NULL);
        close(*fd);
        *fd = -1;
        __atomic_sub_fetch(&l->shared->conn_fds, 1, __ATOMIC_RELAXED);
}

/* A program's stderr, line by line, with its connection's fields. A
 * program that writes a lot is read all the same (it must not block on
 * a full pipe), but only so much of it reaches the journal. */
static __thread struct ratelimit stderr_rl = RATELIMIT_INIT(10 * 1000 * 1000, 200);

static void stderr_line(struct loop *l, struct conn *c, const char *p, size_t n) {
        unsigned suppressed;

        if (n && p[n - 1] == '\r')
                n--;
        if (!n || !ratelimit_pass(&stderr_rl, l->now, &suppressed))
                return;
        if (suppressed)
                conn_log(l, c, LOG_WARNING, "stderr", NULL, "%u lines of programs' stderr were not logged (too many)",
                         suppressed);
        conn_log(l, c, LOG_INFO, "stderr", NULL, "%.*s", (int) (n > 400 ? 400 : n), p);
}

/* Reads what is there; at its end (or with all, until EOF or nothing more)
 * the pipe is closed. */
static void stderr_read(struct loop *l, struct exec_proc *p, bool all) {
        for (int i = 0; p->errfd >= 0 && (all || i < 4); i++) {
                ssize_t n = read(p->errfd, l->rbuf, l->rbuf_size);
                const char *s, *end;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n <= 0) {
                        fd_drop(l, &p->errfd);
                        return;
                }
                for (s = l->rbuf, end = l->rbuf + n; s < end;) {
                        const char *nl = memchr(s, '\n', (size_t) (end - s));
                        size_t len = nl ? (size_t) (nl - s) : (size_t) (end - s);

                        stderr_line(l, p->c, s, len);
                        s += len + 1;
                }
        }
}

static void on_stderr(struct loop *l, struct ev_cb *cb, uint32_t events) {
        struct exec_proc *p = (struct exec_proc *) ((char *) cb - offsetof(struct exec_proc, err_ev));

        stderr_read(l, p, false);
}

static __thread struct ratelimit exit_rl = RATELIMIT_INIT(10 * 1000 * 1000, 20);

static void on_exit_event(struct loop *l, struct ev_cb *cb, uint32_t events) {
        struct exec_proc *p = (struct exec_proc *) ((char *) cb - offsetof(struct exec_proc, pid_ev));
        struct conn *c = p->c;
        siginfo_t si = { 0 };
        char field[64], what[64];
        unsigned suppressed;
        bool ok;

        if (waitid(P_PIDFD, (id_t) p->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
                return; /* not yet */
        p->reaped = true;
        fd_drop(l, &p->pidfd);
        p->pid_ev.ev.kind = 0;
        stderr_read(l, p, true);
        ok = si.si_code == CLD_EXITED && si.si_status == 0;
        if (si.si_code == CLD_EXITED) {
                STAT_INC(l, svc[c->service].exited);
                if (si.si_status)
                        STAT_INC(l, svc[c->service].failed);
                snprintf(field, sizeof(field), "TCPD_EXIT_STATUS=%d", si.si_status);
                snprintf(what, sizeof(what), "exited with status %d", si.si_status);
        } else {
                STAT_INC(l, svc[c->service].killed);
                snprintf(field, sizeof(field), "TCPD_EXIT_SIGNAL=%s", sigabbrev_np(si.si_status) ?: "?");
                snprintf(what, sizeof(what), "killed by signal %s%s", sigabbrev_np(si.si_status) ?: "?",
                         si.si_code == CLD_DUMPED ? " (core dumped)" : "");
        }
        /* a failure is worth a line (a few); a clean exit only with log_connections */
        if ((ok && l->settings.log_connections) ||
            (!ok && p->signals == 0 && ratelimit_pass(&exit_rl, l->now, &suppressed)))
                conn_log(l, c, ok ? LOG_INFO : LOG_NOTICE, "exit", field, "program %d %s", (int) p->pid, what);
        if (c->state == CONN_WAITING) {
                (void) set_blocking(c->fd, false);
                conn_wait_done(l, c);
        } else if (c->state == CONN_OPEN || c->state == CONN_DRAINING) {
                (void) set_blocking(c->fd, false);
                conn_close(l, c, CLOSE_DONE);
        }
        /* else its close went on without it (it did not exit after
         * SIGKILL in time): it is only reaped now */
}

static void signal_group(struct exec_proc *p, int sig) {
        /* while the program is not reaped its pid (and group) cannot be
         * another's; a program that left its group gets the signal itself */
        if (kill(-p->pid, sig) < 0)
                (void) syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0);
}

static uint64_t exec_closing(struct loop *l, struct conn *c, int why) {
        struct exec_proc *p = proc_of(c);

        if (!p || p->reaped)
                return 0;
        switch (p->signals++) {
        case 0:
                signal_group(p, SIGTERM);
                return l->now + p->kill_timeout_usec;
        case 1:
                signal_group(p, SIGKILL);
                conn_log(l, c, LOG_WARNING, "kill", NULL, "program %d did not exit within kill_timeout of SIGTERM: "
                         "sent SIGKILL", (int) p->pid);
                return l->now + KILL_GRACE_USEC;
        default:
                conn_log(l, c, LOG_ERR, "kill", NULL, "program %d does not exit even after SIGKILL; closing its "
                         "connection without it", (int) p->pid);
                (void) set_blocking(c->fd, false);
                return 0;
        }
}

static void exec_release(struct loop *l, struct conn *c) {
        struct exec_proc *p = proc_of(c);

        if (!p)
                return;
        if (!p->reaped && p->pidfd >= 0) {
                /* tcpd lets go before the program ended (a stop that cannot
                 * wait, a restart): it is asked to end, if it was not yet
                 * (systemd ends what is left of the unit's processes) */
                if (!p->signals)
                        signal_group(p, SIGTERM);
                STAT_INC(l, svc[c->service].killed);
        }
        fd_drop(l, &p->pidfd);
        fd_drop(l, &p->errfd);
        p->pid_ev.ev.kind = p->err_ev.ev.kind = 0; /* later events of this batch */
}

/* The kernel's TCP states after the client's FIN (include/net/tcp_states.h;
 * <linux/tcp.h> does not name them). */
enum { STATE_TIME_WAIT = 6, STATE_CLOSE_WAIT = 8, STATE_LAST_ACK = 9, STATE_CLOSING = 11 };

/* TCP_INFO's counts are the program's bytes: they go to the connection and
 * its service as they grow. */
static void exec_sync(struct loop *l, struct conn *c) {
        struct tcp_info ti;
        socklen_t len = sizeof(ti);
        uint64_t in, out, idle_ms;
        int queued = 0;

        memset(&ti, 0, sizeof(ti));
        if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
                return;
        /* written by the program: acknowledged, or still in the send queue */
        (void) ioctl(c->fd, SIOCOUTQ, &queued);
        /* the client's FIN counts as a byte of sequence space */
        in = ti.tcpi_bytes_received;
        if (in && (ti.tcpi_state == STATE_CLOSE_WAIT || ti.tcpi_state == STATE_LAST_ACK ||
                   ti.tcpi_state == STATE_CLOSING || ti.tcpi_state == STATE_TIME_WAIT))
                in--;
        out = ti.tcpi_bytes_acked + (uint64_t) (queued > 0 ? queued : 0);
        if (in > c->bytes_in) {
                STAT_IN(l, c, in - c->bytes_in);
                c->bytes_in = in;
        }
        if (out > c->bytes_out) {
                STAT_OUT(l, c, out - c->bytes_out);
                c->bytes_out = out;
        }
        idle_ms = ti.tcpi_last_data_recv < ti.tcpi_last_data_sent ? ti.tcpi_last_data_recv : ti.tcpi_last_data_sent;
        if (idle_ms * 1000 < l->now - c->started)
                conn_seen(l, c, l->now - idle_ms * 1000);
}

static void exec_info(const struct conn *c, struct conn_info *i) {
        const struct exec_proc *p = proc_of(c);

        if (p && !p->reaped) {
                i->pid = p->pid;
                i->state = "running"; /* one being stopped is no longer listed */
        }
}

/* The variables of one connection: 9 of them, in buf. */
static void conn_env(struct loop *l, struct conn *c, char **out, char (*buf)[ADDR_STRLEN + 32]) {
        union sockaddr_in46 local = { 0 };
        const union sockaddr_in46 *la = loop_local_address(l, c->local);
        socklen_t len = sizeof(local);
        char peer[ADDR_STRLEN], self[ADDR_STRLEN];

        if (la)
                local = *la;
        else if (getsockname(c->fd, &local.sa, &len) == 0)
                addr_normalize(&local);
        addr_format_host(&c->peer, peer, sizeof(peer));
        addr_format_host(&local, self, sizeof(self));
        snprintf(buf[0], sizeof(buf[0]), "PROTO=TCP");
        snprintf(buf[1], sizeof(buf[1]), "TCPREMOTEIP=%s", peer);
        snprintf(buf[2], sizeof(buf[2]), "TCPREMOTEPORT=%u", addr_port(&c->peer));
        snprintf(buf[3], sizeof(buf[3]), "TCPLOCALIP=%s", self);
        snprintf(buf[4], sizeof(buf[4]), "TCPLOCALPORT=%u", addr_port(&local));
        snprintf(buf[5], sizeof(buf[5]), "REMOTE_ADDR=%s", peer);
        snprintf(buf[6], sizeof(buf[6]), "REMOTE_PORT=%u", addr_port(&c->peer));
        snprintf(buf[7], sizeof(buf[7]), "TCPD_CONNECTION_ID=%llu", (unsigned long long) c->id);
        snprintf(buf[8], sizeof(buf[8]), "TCPD_SERVICE=%s", service_id_name(c->service));
        for (size_t i = 0; i < N_CONN_VARS; i++)
                out[i] = buf[i];
}

static __thread struct ratelimit spawn_rl = RATELIMIT_INIT(10 * 1000 * 1000, 10);

static int exec_start(struct loop *l, struct conn *c) {
        const struct exec_spec *spec = c->service < SERVICE_IDS_MAX ? l->settings.exec[c->service] : NULL;
        char vars[N_CONN_VARS][ADDR_STRLEN + 32];
        struct epoll_event e = { .events = EPOLLIN };
        struct exec_proc *p;
        unsigned suppressed;
        int pipefd[2] = { -1, -1 }, r;

        if (!spec)
                return -ENOENT; /* a service that changed type at a reload, with sockets still queued */
        /* the environment of one start, on the stack (a few hundred entries at most) */
        char *envp[N_CONN_VARS + spec->n_env + 1];

        conn_env(l, c, envp, vars);
        memcpy(envp + N_CONN_VARS, spec->env, spec->n_env * sizeof(*envp));
        envp[N_CONN_VARS + spec->n_env] = NULL;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->pidfd = p->errfd = -1;
        p->c = c;
        p->kill_timeout_usec = spec->kill_timeout_usec;
        /* the write end is the program's (blocking); ours is polled */
        if (pipe2(pipefd, O_CLOEXEC) < 0 || fcntl(pipefd[0], F_SETFL, O_NONBLOCK) < 0 ||
            set_blocking(c->fd, true) < 0) {
                r = -errno;
                goto fail;
        }
        r = spawn_program(l->index,
                          &(struct spawn_req) { .path = spec->argv[0], .argv = spec->argv, .envp = envp,
                                                .stdio = c->fd, .stderr_fd = pipefd[1] },
                          &p->pid, &p->pidfd);
        close(pipefd[1]);
        if (r < 0)
                goto fail;
        p->errfd = pipefd[0];
        pipefd[0] = -1;
        __atomic_add_fetch(&l->shared->conn_fds, 2, __ATOMIC_RELAXED);
        c->data = p;
        p->pid_ev = (struct ev_cb) { .ev.kind = EV_CALLBACK, .fn = on_exit_event };
        p->err_ev = (struct ev_cb) { .ev.kind = EV_CALLBACK, .fn = on_stderr };
        e.data.ptr = &p->pid_ev;
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, p->pidfd, &e) < 0) {
                r = -errno;
                exec_release(l, c);
                c->data = NULL;
                free(p);
                return r;
        }
        e.data.ptr = &p->err_ev;
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, p->errfd, &e) < 0)
                fd_drop(l, &p->errfd); /* it runs; only its stderr is lost */
        return 0;
fail:
        if (pipefd[0] >= 0)
                close(pipefd[0]);
        free(p);
        if (ratelimit_pass(&spawn_rl, l->now, &suppressed))
                conn_log(l, c, LOG_ERR, "spawn", NULL, "cannot start %s: %s; refused%s", spec->argv[0], strerror(-r),
                         suppressed ? " (some failures before this were not logged)" : "");
        return r;
}

const struct service_type service_exec = {
        .start = exec_start,
        .closing = exec_closing,
        .start_refusal = REFUSE_SPAWN,
        .extra_fds = 2,
        .release = exec_release,
        .sync = exec_sync,
        .info = exec_info,
        .external = true,
};
