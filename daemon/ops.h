/* What the control plane asks of the loops, as messages: list connections,
 * kick some, apply new settings, watch or retire a listener, stop. Each runs
 * on the thread of the loop that owns the connections. List and kick travel
 * from worker to worker, each adding its part, and the last one posts the
 * result back: one message at a time, no gathering, and a worker needs no
 * lock to read its own connections. */
#pragma once

#include <sys/types.h>

#include "addr.h"
#include "loop.h"
#include "mailbox.h"

/* What the kernel knows of a socket (TCP_INFO), when asked for. */
struct tcp_numbers {
        bool has;
        uint32_t rtt_usec, rttvar_usec, retransmits, cwnd, unacked;
};

struct conn_info {
        uint64_t id;
        uint8_t service;
        const char *state; /* a static string */
        union sockaddr_in46 peer, local;
        uint64_t connected_usec, age_usec, idle_usec;
        uint64_t bytes_in, bytes_out;
        int32_t pid; /* type = exec: its program's, while it runs; 0 otherwise */
        union sockaddr_in46 backend; /* type = forward: where it goes (AF_UNSPEC: nowhere yet) */
        bool has_rate; /* a top list's: bytes each way per second since the last mark */
        uint64_t bytes_per_sec;
        struct tcp_numbers tcp;         /* the client's socket */
        struct tcp_numbers backend_tcp; /* a relay's backend socket */
};

/* What list and kick select by; every condition set must hold. */
struct conn_filter {
        bool has_cidr;
        struct cidr cidr;
        int service;           /* -1: any */
        uint64_t idle_over;    /* usec; 0: any */
        uint64_t older_than;   /* usec; 0: any */
};

#define CONN_FILTER_ANY { .service = -1 }
bool conn_filter_set(const struct conn_filter *f);

/* What a request to the loops has in common: every loop gets a part of it
 * at once (a list, a kick), does its share on its own connections, and
 * sends the part back to reply_to, where done() runs for each; the last
 * part back finishes the request. */
struct op {
        struct mailbox *reply_to;
        msg_fn done;
        void *userdata; /* the requester's; NULL once it went away */
        size_t n_parts;
        size_t pending; /* a kick's parts not back yet (the requester's thread); a list's come back
                         * chunk by chunk and say when they are done */
};

/* A list walks each loop's connections (kept in id order) a chunk at a
 * time, so its memory is bounded whatever the number of connections: one
 * part per loop, each with a cursor the loop keeps past connections that
 * close, and two halves of LIST_CHUNK entries. The control plane merges the
 * parts by id, sending from one half while the loop fills the other.
 * Not a snapshot: a connection that closes before the walk reaches it is
 * not listed, one that opens meanwhile may be. */
#define LIST_CHUNK 128
/* With one worker, which then shares its CPU with the control plane (tcpd
 * confined to one CPU by CPUAffinity= gets one worker by default), each
 * chunk waits for the worker's turn on the CPU under SCHED_BATCH: bigger
 * chunks, fewer turns (a list of 19,000 went from 0.62 s to 0.22 s). The
 * memory of a list stays about the same: one part of 1024 instead of
 * several of 128. */
#define LIST_CHUNK_ONE_WORKER 1024

/* A top list (tcpctl top): not every connection in chunks, but each
 * loop's `top` largest by a key, found in one walk, so that a view
 * refreshed every second costs the same whatever the number of
 * connections. By rate: bytes each way per second since the previous top
 * list marked them (at most every LIST_RATE_MIN_USEC, so that two views
 * open at once do not make each other's windows tiny). */
enum list_top_key { LIST_TOP_RATE, LIST_TOP_AGE, LIST_TOP_IDLE, _LIST_TOP_MAX };
#define LIST_TOP_MAX 1000
#define LIST_RATE_MIN_USEC (500 * 1000)

struct list_op;

struct list_part {
        struct msg msg;
        struct list_op *op;
        struct loop *loop;
        struct list_cursor cursor; /* in loop's cursors from the first chunk until done */
        bool started, done;        /* set by the loop */
        bool release;              /* stop the walk: nobody wants the rest */
        bool in_flight;            /* the control plane's: the loop is filling half `fill` */
        bool next_ready;           /* half `fill` came back filled */
        unsigned cur, fill;        /* the half being sent, the one filled */
        size_t n[2], pos;          /* entries in each half; the next to send from cur */
        size_t chunk;              /* entries per half */
        struct conn_info *items[2];
};

struct list_op {
        struct op op; /* done runs for each chunk that comes back */
        struct conn_filter filter;
        bool tcp_info;
        bool rows; /* replies of rows (columns and rows), not one per connection */
        unsigned top; /* 0: every connection; else a top list of this many per loop */
        enum list_top_key top_by;
        struct list_part parts[];
};

struct kick_op;

/* One loop's share of a kick: the ids it closed. */
struct kick_part {
        struct msg msg;
        struct kick_op *op;
        struct loop *loop;
        uint64_t *kicked;
        size_t n_kicked, cap;
        int error; /* negative errno when the loop could not do it */
};

struct kick_op {
        struct op op;
        struct conn_filter filter;
        bool all;
        bool reset; /* close with an RST instead of a FIN */
        uint64_t *ids; /* when n_ids > 0, only these */
        size_t n_ids;
        uid_t uid; /* who asked, for the log */
        pid_t pid;
        struct kick_part parts[];
};

/* One part per loop, none asked for yet; top: as list_op.top. */
struct list_op *list_op_new(struct loop **loops, size_t n_loops, unsigned top, struct mailbox *reply_to, msg_fn done);
/* Sends the part to its loop to fill the half not being sent. */
void list_part_request(struct list_part *p);
/* Sends the part to its loop to end its walk; it comes back done. */
void list_part_release(struct list_part *p);
/* One part per loop. */
struct kick_op *kick_op_new(struct loop **loops, size_t n_loops);
/* Every part to its loop at once; each comes back to op.reply_to. */
void kick_op_post(struct kick_op *op);
void list_op_free(struct list_op *op);
void kick_op_free(struct kick_op *op);

struct conn;
bool conn_filter_match(const struct conn_filter *f, const struct conn *c, uint64_t now);

/* Fire and forget. */
int loop_post_settings(struct loop *l, const struct loop_settings *s);
/* Each loop watches li from when the message runs (taking a reference). */
int loop_post_add_listener(struct loop *l, struct listener *li);
/* Each loop stops watching li and drops its reference. */
int loop_post_retire_listener(struct loop *l, struct listener *li);
enum stop_mode {
        STOP_DRAIN,    /* flush and close every connection */
        STOP_NOW,      /* close every connection at once */
        STOP_HANDOVER, /* leave them open in systemd's fd store */
};
int loop_post_stop(struct loop *l, enum stop_mode mode);
