/* tcpctl's client of the control socket: the local socket, or the one on
 * another host through "ssh -xT HOST tcpctl bridge". */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"
#include "term.h"
#include "util.h"
#include "words.h"

/* Replies may be larger than calls: one connection each, but be generous. */
#define REPLY_MAX (16 * 1024 * 1024)

struct ctl_settings ctl_settings;
volatile sig_atomic_t ctl_stop_requested;


const char *ctl_target(const struct ctl *c) {
        static char buf[320];

        if (!c->host)
                return ctl_settings.socket;
        snprintf(buf, sizeof(buf), "%s over ssh", c->host);
        return buf;
}

/* Who may use the control socket, from the socket itself: its mode and
 * group are the admin group's, whether systemd's socket unit made it
 * (SocketMode=, SocketGroup=) or tcpd did (control_socket_mode,
 * admin_group). */
void ctl_socket_access(char *buf, size_t size, char *group, size_t gsize) {
        struct stat st;
        struct group *g;

        snprintf(group, gsize, "tcpd's admin group");
        if (stat(ctl_settings.socket, &st) < 0) {
                snprintf(buf, size, "its access could not be read");
                return;
        }
        g = getgrgid(st.st_gid); /* a local lookup, of the socket's own group */
        if (g)
                snprintf(group, gsize, "group %s", g->gr_name);
        else
                snprintf(group, gsize, "group %u", (unsigned) st.st_gid);
        snprintf(buf, size, "the socket is mode %04o, %s", (unsigned) (st.st_mode & 07777), group);
}

/* The local end of a socket pair whose other end is ssh's standard input
 * and output; ssh's standard error stays ours, so its own errors show. */
static int connect_ssh(struct ctl *c) {
        const char *ssh_env = getenv("TCPCTL_SSH"), *remote_env = getenv("TCPCTL_REMOTE"), *why;
        char **ssh = NULL, **remote = NULL, *argv[64];
        size_t n = 0;
        int sv[2];

        if (words_split(ssh_env && *ssh_env ? ssh_env : "ssh", &ssh, &why) <= 0 ||
            words_split(remote_env && *remote_env ? remote_env : "tcpctl", &remote, &why) <= 0) {
                words_free(ssh);
                return term_fail("TCPCTL_SSH or TCPCTL_REMOTE is not a command");
        }
        if (words_count(ssh) + words_count(remote) + 10 > ARRAY_SIZE(argv)) {
                words_free(ssh);
                words_free(remote);
                return term_fail("TCPCTL_SSH and TCPCTL_REMOTE are too long");
        }
        for (size_t i = 0; ssh[i]; i++)
                argv[n++] = ssh[i];
        argv[n++] = (char *) "-xT";
        argv[n++] = (char *) c->host;
        argv[n++] = (char *) "--";
        for (size_t i = 0; remote[i]; i++)
                argv[n++] = remote[i];
        /* sshd passes no environment: what picks the socket goes as options */
        if (ctl_settings.instance) {
                argv[n++] = (char *) "--instance";
                argv[n++] = (char *) ctl_settings.instance;
        }
        if (ctl_settings.socket_given) {
                argv[n++] = (char *) "--socket";
                argv[n++] = (char *) ctl_settings.socket;
        }
        argv[n++] = (char *) "bridge";
        argv[n] = NULL;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                words_free(ssh);
                words_free(remote);
                return term_fail("cannot create a socket pair: %m");
        }
        fflush(stdout);
        c->ssh = fork();
        if (c->ssh == 0) {
                if (dup2(sv[1], STDIN_FILENO) < 0 || dup2(sv[1], STDOUT_FILENO) < 0)
                        _exit(127);
                if (term_quiet()) { /* its messages would scribble over a full-screen view */
                        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

                        if (null >= 0)
                                (void) dup2(null, STDERR_FILENO);
                }
                execvp(argv[0], argv);
                term_error("cannot run %s: %s (TCPCTL_SSH names another)", argv[0], strerror(errno));
                _exit(127);
        }
        words_free(ssh);
        words_free(remote);
        close(sv[1]);
        if (c->ssh < 0) {
                close(sv[0]);
                c->ssh = 0;
                return term_fail("cannot start ssh: %m");
        }
        c->fd = sv[0];
        return 0;
}

int ctl_connect(struct ctl *c, const char *host) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = CTL_CALL_TIMEOUT_SEC };
        const char *path = ctl_settings.socket;

        *c = (struct ctl) { .fd = -1, .host = host };
        if (host) {
                int r = connect_ssh(c);

                if (r == 0 && !ctl_settings.no_timeout) /* ssh's own connect counts too: twice the time */
                        (void) setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO,
                                          &(struct timeval) { .tv_sec = 2 * CTL_CALL_TIMEOUT_SEC }, sizeof(tv));
                return r;
        }

        if (strlen(path) >= sizeof(sa.sun_path))
                return term_fail("socket path too long: %s", path);
        strcpy(sa.sun_path, path);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return term_fail("cannot create a socket: %m");
        if (!ctl_settings.no_timeout)
                (void) setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        (void) setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(c->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int err = errno;

                if (err == EACCES || err == EPERM) {
                        char access[128], group[96];

                        ctl_socket_access(access, sizeof(access), group, sizeof(group));
                        return term_fail("cannot connect to %s: %s; %s: run as root or as a member of %s (under "
                                    "systemd, tcpd-control.socket's SocketMode= and SocketGroup= set these; "
                                    "otherwise control_socket_mode and admin_group in tcpd.ini)",
                                    path, strerror(err), access, group);
                }
                return term_fail("cannot connect to %s: %s; is tcpd running?", path, strerror(err));
        }
        return 0;
}

void ctl_close(struct ctl *c) {
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        vl_buf_free(&c->in);
        if (c->ssh > 0) {
                /* our end closed: the bridge sees EOF, ssh ends */
                while (waitpid(c->ssh, NULL, 0) < 0 && errno == EINTR)
                        ;
                c->ssh = 0;
        }
}

int ctl_send_all(int fd, const char *p, size_t n) {
        while (n) {
                ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                p += w;
                n -= (size_t) w;
        }
        return 0;
}

int ctl_send_call(struct ctl *c, const char *method, json_t *params, bool more) {
        struct vl_buf out = { 0 };
        int r;

        r = vl_put_call(&out, method, params, more);
        if (r < 0)
                return term_fail("out of memory");
        r = ctl_send_all(c->fd, out.data + out.start, vl_buf_pending(&out));
        vl_buf_free(&out);
        if (r < 0)
                return term_fail("cannot send to %s: %s", ctl_target(c), strerror(-r));
        return 0;
}

int ctl_read_reply(struct ctl *c, struct vl_reply *reply) {
        for (;;) {
                char *frame, *dst;
                size_t len;
                ssize_t n;
                int r = vl_frame_next(&c->in, REPLY_MAX, &frame, &len);

                if (r < 0)
                        return term_fail("reply from tcpd is too large");
                if (r > 0) {
                        if (vl_reply_parse(frame, len, reply) < 0)
                                return term_fail("tcpd sent a reply that is not Varlink JSON");
                        return 0;
                }
                dst = vl_buf_reserve(&c->in, 64 * 1024);
                if (!dst)
                        return term_fail("out of memory");
                if (ctl_settings.no_timeout) {
                        /* a signal between a check and recv() would be
                         * missed: wait in short steps instead */
                        struct pollfd p = { .fd = c->fd, .events = POLLIN };
                        if (ctl_stop_requested)
                                return CTL_EXIT_STOPPED;
                        if (poll(&p, 1, 200) <= 0)
                                continue;
                }
                n = recv(c->fd, dst, 64 * 1024, 0);
                if (n < 0 && errno == EINTR && ctl_stop_requested)
                        return CTL_EXIT_STOPPED;
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        return term_fail("no answer from tcpd on %s within %d s", ctl_target(c),
                                    c->host ? 2 * CTL_CALL_TIMEOUT_SEC : CTL_CALL_TIMEOUT_SEC);
                if (c->host && n <= 0)
                        return term_fail("no answer from tcpd on %s (ssh says why above, if it failed)", ctl_target(c));
                if (n < 0)
                        return term_fail("cannot read from %s: %m", ctl_target(c));
                if (n == 0)
                        return term_fail("tcpd closed the control connection without an answer");
                vl_buf_commit(&c->in, (size_t) n);
        }
}
