/* What a service type (services/) uses of a connection: the raw data
 * path, the owed-bytes buffer and the close rules of conn.c. Only conn.c
 * and services/ include it. */
#pragma once

#include <sys/syscall.h>
#include <unistd.h>

#include "conn.h"

/* recv() and send() are cancellation points: in a process with threads,
 * glibc brackets every call with enabling and disabling asynchronous
 * cancellation (about 60 instructions per echo under callgrind, a quarter
 * of tcpd's own). tcpd never cancels a thread, so the data path makes the
 * system calls directly. */
static inline ssize_t data_recv(int fd, void *buf, size_t n) {
        return syscall(SYS_recvfrom, fd, buf, n, 0, NULL, NULL);
}

static inline ssize_t data_send(int fd, const void *buf, size_t n) {
        return syscall(SYS_sendto, fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT, NULL, 0);
}

/* Keeps what the socket did not take; sent before anything else. Never
 * grows past max_buffered where the caller sizes its reads to the room. */
int owed_append(struct conn *c, const char *p, size_t n);
/* The same for a buffer of a type's own (forward's, towards a backend). */
int owed_buf_append(struct owed **o, const char *p, size_t n);
static inline size_t owed_len(const struct owed *o) {
        return o ? o->len - o->off : 0;
}
static inline size_t owed_bytes(const struct conn *c) {
        return owed_len(c->owed);
}
/* Sets the epoll interest from the state and what is owed; closes a
 * draining connection once nothing is owed. */
void conn_update(struct loop *l, struct conn *c);
/* Closes after an error: a reset by the peer, or another. */
void conn_fail(struct loop *l, struct conn *c, int err);
/* Sends buf; what the socket does not take is owed. Returns 0, or a
 * negative errno when the connection was closed. */
int conn_send(struct loop *l, struct conn *c, const char *buf, size_t n);
/* Reads and drops (counted) what a client sends to a service that does not
 * read it; its FIN ends the connection once nothing is owed. */
void conn_read_drop(struct loop *l, struct conn *c);

static inline void lru_unlink(struct loop *l, struct conn *c) {
        CONN_LIST_UNLINK(&l->lru[c->service], c, lru);
}

static inline void lru_append(struct loop *l, struct conn *c) {
        CONN_LIST_APPEND(&l->lru[c->service], c, lru);
}

/* Activity moves a connection to the tail, so the idle sweep only ever
 * looks at the head: no timer per connection. */
static inline void conn_touch(struct loop *l, struct conn *c) {
        if (c->last_active == l->now)
                return;
        c->last_active = l->now;
        if (l->lru[c->service].tail != c) {
                lru_unlink(l, c);
                lru_append(l, c);
        }
}


/* Activity learnt late (a program's, from the kernel): c moves to where
 * its time puts it, looking from the tail back, so the list stays in
 * order of last activity. */
static inline void conn_seen(struct loop *l, struct conn *c, uint64_t when) {
        struct conn *after;

        if (when <= c->last_active)
                return;
        struct conn_list *list = &l->lru[c->service];

        c->last_active = when;
        lru_unlink(l, c);
        for (after = list->tail; after && after->last_active > when; after = after->lru_prev)
                ;
        c->lru_prev = after;
        c->lru_next = after ? after->lru_next : list->head;
        if (c->lru_next)
                c->lru_next->lru_prev = c;
        else
                list->tail = c;
        if (after)
                after->lru_next = c;
        else
                list->head = c;
}
