/* What the files of the control socket share: control.c (the socket, its
 * clients, reading calls and dispatching them), control-status.c (the
 * methods the control plane answers itself), control-conns.c (list and
 * kick, which visit the workers) and control-monitor.c (tcpctl monitor's
 * stream). Not for the rest of tcpd: control.h is. */
#pragma once

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
/* A TcpInfo object and its members, set in place. */
struct tcp_reply {
        json_t *obj, *rtt_usec, *rttvar_usec, *retransmits, *cwnd, *unacked;
};

struct conn_reply {
        json_t *msg, *conn;
        json_t *id, *service, *peer, *peer_address, *peer_port, *local, *connected_usec, *age_usec, *idle_usec,
                *bytes_in, *bytes_out, *state;
        struct tcp_reply tcp, backend_tcp; /* with tcp_info: the client's socket, a relay's backend's */
        json_t *pid; /* a program's (type = exec), set in conn only while there is one */
        json_t *bytes_per_sec; /* a top list's, set in conn only then */
        json_t *backend; /* type = forward: where it goes, set in conn only then */
        json_t *columns, *row; /* rows: the names, and conn's values in their order */
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
        unsigned rows_batched; /* rows: how many the reply being written has */
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
        const struct control_hooks *hooks;
        int fd;
        char *path; /* unlinked on exit; NULL when systemd owns the socket */
        sd_event_source *source;
        sd_event_source *retry; /* re-enables source after running out of fds */
        sd_event_source *stall_timer; /* drops clients that stopped reading */
        struct control_client *clients;
        unsigned n_clients;
        unsigned n_monitors;
};

/* control.c: the socket and its clients */
bool control_client_is_admin(const struct control_client *cl);
int control_client_flush(struct control_client *cl);
void control_reply_error(struct control_client *cl, const char *error, json_t *params);
void control_reply(struct control_client *cl, json_t *params, bool continues);
void control_reply_invalid_parameter(struct control_client *cl, const char *name);
bool control_check_params(struct control_client *cl, json_t *params, const char *const *known);
void control_client_process(struct control_client *cl);

/* control-status.c: answered by the control plane */
void method_get_info(struct control_client *cl, struct vl_call *call);
void method_get_interface_description(struct control_client *cl, struct vl_call *call);
void method_get_status(struct control_client *cl, struct vl_call *call);
void method_reload(struct control_client *cl, struct vl_call *call);
void method_prepare_stop(struct control_client *cl, struct vl_call *call);
void method_set_log_level(struct control_client *cl, struct vl_call *call);
/* control-backends.c */
struct backend_pool;
json_t *control_backends_json(const struct backend_pool *p);
void method_set_backend(struct control_client *cl, struct vl_call *call);
void control_monitor_admin(struct control *ctl, const char *service, const char *backend, const char *admin);

/* control-conns.c: list and kick */
void method_list_connections(struct control_client *cl, struct vl_call *call);
void method_kick(struct control_client *cl, struct vl_call *call);
void control_list_end(struct control_client *cl);
void control_list_stream(struct control_client *cl);

/* control-monitor.c: tcpctl monitor */
void control_monitor_deliver(struct msg *m);
void control_monitor_stop(struct control_client *cl);
void method_monitor(struct control_client *cl, struct vl_call *call);
void control_monitor_check_input(struct control_client *cl);
