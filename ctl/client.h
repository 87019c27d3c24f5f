/* tcpctl's side of the control socket: connect (to the local socket, or
 * through "ssh HOST tcpctl bridge"), send a Varlink call, read its replies.
 * Errors are said here (term_error) and returned as exit codes. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

#include "varlink.h"

#define CTL_EXIT_STOPPED 100 /* internal: a signal ended a wait */
#define CTL_CALL_TIMEOUT_SEC 30

/* Which tcpd, and how patiently: set once by tcpctl's options. */
struct ctl_settings {
        const char *socket;   /* the control socket (here, or on the host) */
        bool socket_given;    /* -s: passed on to the host's tcpctl */
        const char *instance; /* -I NAME: passed on to the host's tcpctl */
        bool no_timeout;      /* wait as long as it takes (monitor, bridge) */
};
extern struct ctl_settings ctl_settings;
/* Set by a signal handler: a wait without timeout returns CTL_EXIT_STOPPED. */
extern volatile sig_atomic_t ctl_stop_requested;

struct ctl {
        int fd;
        struct vl_buf in;
        pid_t ssh;        /* the ssh that carries the socket, or 0 */
        const char *host; /* [USER@]HOST, or NULL: the local socket */
};

/* Connects c to tcpd on host (NULL: this machine). 0, or an exit code. */
int ctl_connect(struct ctl *c, const char *host);
void ctl_close(struct ctl *c);
/* Sends one call. 0, or an exit code. Takes params. */
int ctl_send_call(struct ctl *c, const char *method, json_t *params, bool more);
/* Reads the next reply. 0, or an exit code (CTL_EXIT_STOPPED on a signal). */
int ctl_read_reply(struct ctl *c, struct vl_reply *reply);
/* What c talks to, for messages: the socket, or "HOST over ssh". */
const char *ctl_target(const struct ctl *c);
/* The socket's mode and group, which say who may use it. */
void ctl_socket_access(char *buf, size_t size, char *group, size_t gsize);
int ctl_send_all(int fd, const char *p, size_t n);
