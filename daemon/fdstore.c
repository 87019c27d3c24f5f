/* Hand-over of connections through systemd's file descriptor store. */
#include <poll.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "conn.h"
#include "fdstore.h"
#include "services/service.h"
#include "limits.h"
#include "log.h"
#include "table.h"
#include "units.h"

#define STORE_BATCH LOOP_STORE_BATCH
/* The state a hand-over leaves for the next tcpd, which may be another
 * version (the Debian package restarts tcpd on upgrade): versioned, and a
 * connection's service is saved by name, since types are added between
 * versions. Version 1 (tcpd 0.1.0 until 2026-12) saved the type's index;
 * version 2 had no type state (a relay's). */
#define STATE_MAGIC_V1 "TCPDSTA1"
#define STATE_MAGIC_V2 "TCPDSTA2"
#define STATE_MAGIC "TCPDSTA3"
#define STATE_SERVICE_NAME 32

struct state_header {
        char magic[8];
        uint64_t count;
        uint64_t next_id;
};

struct state_record {
        uint64_t id;
        uint64_t connected_usec;
        uint64_t bytes_in, bytes_out;
        union sockaddr_in46 peer, local;
        char service[STATE_SERVICE_NAME]; /* NUL-terminated */
        uint32_t owed_len; /* this many owed bytes follow the record */
        uint32_t type_len; /* then this many of its type's (conn_handover) */
        uint8_t type_flags;
        uint8_t has_type_state;
        uint8_t pad[6];
};

struct state_record_v2 {
        uint64_t id;
        uint64_t connected_usec;
        uint64_t bytes_in, bytes_out;
        union sockaddr_in46 peer, local;
        char service[STATE_SERVICE_NAME];
        uint32_t owed_len;
        uint32_t pad;
};

struct state_record_v1 {
        uint64_t id;
        uint64_t connected_usec;
        uint64_t bytes_in, bytes_out;
        union sockaddr_in46 peer, local;
        uint8_t service; /* 0 echo, 1 discard, 2 chargen */
        uint8_t pad[3];
        uint32_t owed_len;
};

/* A saved connection as this version reads it, from either format. */
struct saved_rec {
        uint64_t id, connected_usec, bytes_in, bytes_out;
        union sockaddr_in46 peer, local;
        int service; /* its id (registry.h), or -1: a service this tcpd does not have */
        char service_name[STATE_SERVICE_NAME];
        const char *owed;
        uint32_t owed_len;
        bool has_type_state;
        uint8_t type_flags;
        const char *type_data;
        uint32_t type_len;
};

static struct ratelimit store_rl = RATELIMIT_INIT(10 * 1000 * 1000, 5);

bool fdstore_configured(void) {
        const char *s = getenv("FDSTORE");
        uint64_t n;

        return s && getenv("NOTIFY_SOCKET") && parse_uint(s, UINT32_MAX, &n) == 0 && n > 0;
}

void fdstore_add(struct loop *l, struct conn *c) {
        if (c->store_queued)
                return;
        CONN_LIST_APPEND(&l->store_queue, c, store);
        c->store_queued = true;
}

void fdstore_forget(struct loop *l, struct conn *c) {
        if (!c->store_queued)
                return;
        CONN_LIST_UNLINK(&l->store_queue, c, store);
        c->store_queued = false;
}

static void send_batch(struct loop *l, size_t n) {
        int r = sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=" FDSTORE_CONN_NAME, l->store_batch, (unsigned) n);

        if (r <= 0) {
                unsigned suppressed;

                if (ratelimit_pass(&store_rl, l->now, &suppressed))
                        log_warning_errno(r ? r : -ENOTCONN,
                                          "cannot put %zu connection%s into the fd store; they will not survive a "
                                          "restart",
                                          n, plural(n));
        }
}

uint64_t fdstore_flush(struct loop *l, bool all) {
        struct conn *c;
        size_t n = 0;

        /* One message per batch of up to 253 sockets, not one per accept;
         * the queue is in accept order, so the due ones come first. */
        while ((c = l->store_queue.head)) {
                uint64_t due = c->started + l->settings.store_after_usec;

                if (!all && due > l->now) {
                        if (n)
                                send_batch(l, n);
                        return due;
                }
                fdstore_forget(l, c);
                c->in_store = true; /* (if systemd refuses it, a shutdown at the close does no harm) */
                if (c->ops->store_own) {
                        if (c->ops->store)
                                c->ops->store(l, c); /* a relay: both its sockets */
                        continue;
                }
                l->store_batch[n++] = c->fd;
                if (n == STORE_BATCH) {
                        send_batch(l, n);
                        n = 0;
                }
        }
        if (n)
                send_batch(l, n);
        return 0;
}

int fdstore_add_relay_half(uint64_t id, const char *service, int fd, char side) {
        char msg[128];
        int r;

        /* a message each: one name for all of a message's descriptors */
        snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=" FDSTORE_RELAY_PREFIX "%llu.%s.%c", (unsigned long long) id,
                 service, side);
        r = sd_pid_notify_with_fds(0, 0, msg, &fd, 1);
        return r > 0 ? 0 : r < 0 ? r : -ENOTCONN;
}

static int write_all(int fd, const void *p, size_t n) {
        const char *s = p;

        while (n) {
                ssize_t w = write(fd, s, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                s += w;
                n -= (size_t) w;
        }
        return 0;
}

static int save_state(struct loop *l) {
        struct state_header h = { .count = l->stats.open,
                                  .next_id = __atomic_load_n(&l->shared->next_id, __ATOMIC_RELAXED) };
        _cleanup_close_ int fd = memfd_create(FDSTORE_STATE_NAME, MFD_CLOEXEC);
        int r;

        if (fd < 0)
                return -errno;
        memcpy(h.magic, STATE_MAGIC, sizeof(h.magic));
        r = write_all(fd, &h, sizeof(h));
        for (struct conn *c = l->head; c && r == 0; c = c->next) {
                struct conn_handover th = {};
                struct state_record rec = {};
                socklen_t len = sizeof(rec.local);

                if (c->ops->save)
                        c->ops->save(l, c, &th); /* a relay sends what it can first */
                rec = (struct state_record) {
                        .id = c->id,
                        .connected_usec = c->connected_usec,
                        .bytes_in = c->bytes_in,
                        .bytes_out = c->bytes_out,
                        .peer = c->peer,
                        .has_type_state = c->ops->save != NULL,
                        .type_flags = th.flags,
                        .type_len = th.len,
                };
                snprintf(rec.service, sizeof(rec.service), "%s", service_id_name(c->service));
                if (getsockname(c->fd, &rec.local.sa, &len) == 0)
                        addr_normalize(&rec.local);
                if (c->owed)
                        rec.owed_len = c->owed->len - c->owed->off;
                r = write_all(fd, &rec, sizeof(rec));
                if (r == 0 && rec.owed_len)
                        r = write_all(fd, c->owed->data + c->owed->off, rec.owed_len);
                if (r == 0 && rec.type_len)
                        r = write_all(fd, th.data, rec.type_len);
        }
        if (r < 0)
                return r;
        r = sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=" FDSTORE_STATE_NAME, &fd, 1);
        return r > 0 ? 0 : r < 0 ? r : -ENOTCONN;
}

void fdstore_handover(struct loop *l) {
        struct conn *c, *next;
        unsigned n_programs = 0;
        int r;

        fdstore_flush(l, true); /* every connection, whatever its age */
        /* a program is not kept across a restart (under the shipped
         * unit's KillMode=control-group systemd ends it anyway): its
         * connection was never in the store and closes with it */
        for (c = l->head; c; c = next) {
                next = c->next;
                if (!service_type_kept(c->ops)) {
                        conn_close(l, c, CLOSE_SHUTDOWN);
                        n_programs++;
                }
        }
        if (n_programs)
                log_notice("restart: %u connection%s of programs (type = exec) closed; programs are not kept across "
                           "a restart",
                           n_programs, plural(n_programs));
        /* what can go out without waiting does; the rest travels in the state */
        for (c = l->head; c; c = c->next)
                while (c->owed && c->owed->off < c->owed->len) {
                        ssize_t n = send(c->fd, c->owed->data + c->owed->off, c->owed->len - c->owed->off,
                                         MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (n <= 0)
                                break;
                        c->owed->off += (uint32_t) n;
                        c->bytes_out += (uint64_t) n;
                        STAT_OUT(l, c, (uint64_t) n);
                }
        r = save_state(l);
        if (r < 0)
                log_error_errno(r, "cannot save connection state into the fd store; after the restart the "
                                   "connections get new ids and lose bytes they were owed");
        else
                log_info("handed %llu connection%s over to the fd store", (unsigned long long) l->stats.open,
                         plural(l->stats.open));
        /* close our copies only: systemd's keep every connection open */
        for (c = l->head; c; c = next) {
                next = c->next;
                (void) epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                __atomic_sub_fetch(&l->shared->conn_fds, 1, __ATOMIC_RELAXED);
                c->fd = -1;
                if (c->ops->let_go)
                        c->ops->let_go(l, c); /* its own copies (a relay's backend socket) */
                table_remove(&l->table, c->id);
                loop_conn_unlinking(l, c);
                l->head = next;
                if (next)
                        next->prev = NULL;
                else
                        l->tail = NULL;
                c->lru_prev = c->lru_next = c->age_prev = c->age_next = NULL;
                STAT_DEC(l, open);
                STAT_DEC(l, svc[c->service].open);
                limits_open_sub(l, c->service);
                limits_release(l, c->src);
                c->src = NULL;
                free(c->owed);
                c->owed = NULL;
                loop_conn_closed(l, c);
        }
        memset(l->lru, 0, sizeof(l->lru));
        memset(l->age, 0, sizeof(l->age));
        conn_linger_handover(l);
        l->quit = true;
}

static int conn_id_cmp(const void *a, const void *b) {
        const struct conn *x = *(struct conn *const *) a, *y = *(struct conn *const *) b;
        return x->id < y->id ? -1 : x->id > y->id;
}

/* The fd store hands sockets back in its own order, and only some have
 * their saved ids: put the loop's list back in id order, which lists walk
 * in (ops.h). If there is no memory for it, lists come out of order. */
static void sort_by_id(struct loop *l) {
        size_t n = 0, i = 0;
        struct conn **v;

        for (struct conn *c = l->head; c; c = c->next)
                n++;
        if (n < 2 || !(v = calloc(n, sizeof(*v))))
                return;
        for (struct conn *c = l->head; c; c = c->next)
                v[i++] = c;
        qsort(v, n, sizeof(*v), conn_id_cmp);
        for (i = 0; i < n; i++) {
                v[i]->prev = i ? v[i - 1] : NULL;
                v[i]->next = i + 1 < n ? v[i + 1] : NULL;
        }
        l->head = v[0];
        l->tail = v[n - 1];
        /* and each service's oldest-first list (max_lifetime looks at its
         * head): the saved connections came with their ages */
        memset(l->age, 0, sizeof(l->age));
        for (i = 0; i < n; i++)
                CONN_LIST_APPEND(&l->age[v[i]->service], v[i], age);
        free(v);
}

static uint64_t pair_key(const union sockaddr_in46 *peer, const union sockaddr_in46 *local) {
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */
        const union sockaddr_in46 *a[2] = { peer, local };

        for (int k = 0; k < 2; k++) {
                const uint8_t *p = a[k]->sa.sa_family == AF_INET ? (const uint8_t *) &a[k]->in.sin_addr
                                                                 : (const uint8_t *) &a[k]->in6.sin6_addr;
                size_t n = a[k]->sa.sa_family == AF_INET ? 4 : 16;
                uint16_t port = addr_port(a[k]);

                for (size_t i = 0; i < n; i++)
                        h = (h ^ p[i]) * 1099511628211ULL;
                h = (h ^ (port & 0xff)) * 1099511628211ULL;
                h = (h ^ (port >> 8)) * 1099511628211ULL;
        }
        return h | 1; /* table keys are never 0 */
}

/* One record of either version, as this version reads it. Returns its
 * size with the owed bytes, or 0 when the file ends inside it. */
static size_t read_record(const char *p, const char *end, int version, struct saved_rec *out) {
        size_t size;

        if (version == 1) {
                const struct state_record_v1 *r = (const struct state_record_v1 *) p;
                static const char *const v1_names[] = { "echo", "discard", "chargen" };

                if ((size_t) (end - p) < sizeof(*r) || (size_t) (end - p) - sizeof(*r) < r->owed_len)
                        return 0;
                *out = (struct saved_rec) { .id = r->id, .connected_usec = r->connected_usec,
                                            .bytes_in = r->bytes_in, .bytes_out = r->bytes_out,
                                            .peer = r->peer, .local = r->local,
                                            .owed = p + sizeof(*r), .owed_len = r->owed_len };
                snprintf(out->service_name, sizeof(out->service_name), "%s",
                         r->service < ARRAY_SIZE(v1_names) ? v1_names[r->service] : "?");
                size = sizeof(*r) + r->owed_len;
        } else if (version == 2) {
                const struct state_record_v2 *r = (const struct state_record_v2 *) p;

                if ((size_t) (end - p) < sizeof(*r) || (size_t) (end - p) - sizeof(*r) < r->owed_len)
                        return 0;
                *out = (struct saved_rec) { .id = r->id, .connected_usec = r->connected_usec,
                                            .bytes_in = r->bytes_in, .bytes_out = r->bytes_out,
                                            .peer = r->peer, .local = r->local,
                                            .owed = p + sizeof(*r), .owed_len = r->owed_len };
                memcpy(out->service_name, r->service, sizeof(out->service_name));
                out->service_name[sizeof(out->service_name) - 1] = 0;
                size = sizeof(*r) + r->owed_len;
        } else {
                const struct state_record *r = (const struct state_record *) p;
                size_t room = (size_t) (end - p);

                if (room < sizeof(*r) || room - sizeof(*r) < r->owed_len ||
                    room - sizeof(*r) - r->owed_len < r->type_len)
                        return 0;
                *out = (struct saved_rec) { .id = r->id, .connected_usec = r->connected_usec,
                                            .bytes_in = r->bytes_in, .bytes_out = r->bytes_out,
                                            .peer = r->peer, .local = r->local,
                                            .owed = p + sizeof(*r), .owed_len = r->owed_len,
                                            .has_type_state = r->has_type_state, .type_flags = r->type_flags,
                                            .type_data = p + sizeof(*r) + r->owed_len, .type_len = r->type_len };
                memcpy(out->service_name, r->service, sizeof(out->service_name));
                out->service_name[sizeof(out->service_name) - 1] = 0;
                size = sizeof(*r) + r->owed_len + r->type_len;
        }
        /* the services the settings have are registered by now */
        out->service = service_lookup(out->service_name);
        /* a name that is now a program's service (type = exec) has no
         * program for a connection that was another type's */
        if (out->service < 0 || !service_type_kept(service_types[service_id_type((unsigned) out->service)]))
                out->service = -1;
        return size;
}

/* Maps the state memfd and indexes its records by address pair. */
static int load_state(int fd, void **map, size_t *size, struct saved_rec **recs, struct table *index,
                      uint64_t *next_id) {
        struct stat st;
        const char *p, *end;
        const struct state_header *h;
        int version;

        if (fstat(fd, &st) < 0)
                return -errno;
        if ((size_t) st.st_size < sizeof(*h))
                return -EBADMSG;
        *size = (size_t) st.st_size;
        *map = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (*map == MAP_FAILED) {
                *map = NULL;
                return -errno;
        }
        h = *map;
        version = memcmp(h->magic, STATE_MAGIC_V1, sizeof(h->magic)) == 0   ? 1
                  : memcmp(h->magic, STATE_MAGIC_V2, sizeof(h->magic)) == 0 ? 2
                  : memcmp(h->magic, STATE_MAGIC, sizeof(h->magic)) == 0    ? 3
                                                                            : 0;
        if (!version)
                return -EBADMSG;
        *next_id = h->next_id;
        p = (const char *) (h + 1);
        end = (const char *) *map + *size;
        /* a record takes at least this much: the count cannot ask for more */
        if (h->count > (uint64_t) (end - p) / sizeof(struct state_record_v1))
                return -EBADMSG;
        *recs = calloc(h->count ? h->count : 1, sizeof(**recs));
        if (!*recs)
                return -ENOMEM;
        for (uint64_t i = 0; i < h->count; i++) {
                size_t n = read_record(p, end, version, &(*recs)[i]);
                int r;

                if (!n)
                        return -EBADMSG;
                r = table_put(index, pair_key(&(*recs)[i].peer, &(*recs)[i].local), &(*recs)[i]);
                if (r < 0 && r != -EEXIST)
                        return r;
                p += n;
        }
        return 0;
}

/* "fwd.ID.SERVICE.c" or ".b": its id, its service's name, which side.
 * Returns 0, or -EINVAL for a name of another form. */
static int relay_name_parse(const char *name, uint64_t *id, char *service, size_t size, char *side) {
        const char *p = name + strlen(FDSTORE_RELAY_PREFIX), *dot = strchr(p, '.'), *last = strrchr(name, '.');
        _cleanup_free_ char *num = NULL;

        if (!dot || last <= dot || !last[1] || last[2] || (last[1] != 'c' && last[1] != 'b') ||
            (size_t) (last - dot - 1) >= size || last == dot + 1)
                return -EINVAL;
        num = strndup(p, (size_t) (dot - p));
        if (!num || parse_uint(num, INT64_MAX, id) < 0 || *id == 0)
                return -EINVAL;
        memcpy(service, dot + 1, (size_t) (last - dot - 1));
        service[last - dot - 1] = 0;
        *side = last[1];
        return 0;
}

/* A socket whose connection is over (reset, failed, closed): what the
 * kernel says of it at once. */
static bool socket_ended(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT };

        return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

/* Ends a stored socket for good: a reset, since its peer's other half is gone. */
static void drop_stored(int fd) {
        struct sockaddr sa = { .sa_family = AF_UNSPEC };

        (void) connect(fd, &sa, sizeof(sa));
        (void) shutdown(fd, SHUT_RDWR);
        close(fd);
}

/* The relays: each client socket with its backend socket, by the id in
 * their names; with a saved state (a hand-over) their counters, the bytes
 * either side had yet to take and which FINs had passed; without (a crash)
 * as open both ways, what tcpd had read and not written lost. A socket
 * whose other half is not there, or whose service is gone or is no longer
 * a relay, is reset. */
static void adopt_relays(struct loop **loops, size_t n_loops, const int *fds, char *const *names, size_t n,
                         struct table *index, size_t *adopted, size_t *with_state, size_t *dropped) {
        struct table backends = { 0 };
        bool *used = calloc(n ? n : 1, sizeof(bool));

        if (!used) {
                for (size_t i = 0; i < n; i++)
                        drop_stored(fds[i]);
                *dropped += n;
                return;
        }
        for (size_t i = 0; i < n; i++) {
                char svc[STATE_SERVICE_NAME], side;
                uint64_t id;
                size_t other;

                /* the index keeps i + 1: a table's values are never NULL */
                if (relay_name_parse(names[i], &id, svc, sizeof(svc), &side) < 0 || side != 'b')
                        continue;
                /* two backend sockets of one relay: one failed over to the
                 * other and systemd has not dropped the dead one yet */
                other = (size_t) (uintptr_t) table_get(&backends, id);
                if (other && !socket_ended(fds[other - 1]))
                        continue; /* dropped as unused */
                if (other)
                        (void) table_remove(&backends, id);
                (void) table_put(&backends, id, (void *) (uintptr_t) (i + 1));
        }
        for (size_t i = 0; i < n; i++) {
                char svc[STATE_SERVICE_NAME], side;
                union sockaddr_in46 peer, local;
                socklen_t plen = sizeof(peer), llen = sizeof(local);
                const struct saved_rec *rec;
                struct conn_saved saved;
                uint64_t id;
                size_t b;
                int service;

                if (relay_name_parse(names[i], &id, svc, sizeof(svc), &side) < 0 || side != 'c')
                        continue;
                used[i] = true;
                b = (size_t) (uintptr_t) table_get(&backends, id);
                if (!b || getpeername(fds[i], &peer.sa, &plen) < 0 || getsockname(fds[i], &local.sa, &llen) < 0) {
                        drop_stored(fds[i]);
                        (*dropped)++;
                        continue;
                }
                used[b - 1] = true;
                addr_normalize(&peer);
                addr_normalize(&local);
                rec = table_get(index, pair_key(&peer, &local));
                if (rec && (!addr_equal(&rec->peer, &peer) || !addr_equal(&rec->local, &local) || rec->id != id))
                        rec = NULL;
                service = rec ? rec->service : service_lookup(svc);
                if (service < 0 || !service_types[service_id_type((unsigned) service)]->adopt) {
                        drop_stored(fds[i]);
                        drop_stored(fds[b - 1]);
                        *dropped += 2;
                        continue;
                }
                saved = (struct conn_saved) { .id = id, .service = (uint8_t) service,
                                              .connected_usec = now_usec(CLOCK_REALTIME), .type_fd = fds[b - 1] };
                if (rec) {
                        saved.connected_usec = rec->connected_usec;
                        saved.bytes_in = rec->bytes_in;
                        saved.bytes_out = rec->bytes_out;
                        saved.owed = rec->owed;
                        saved.owed_len = rec->owed_len;
                        saved.has_type_state = rec->has_type_state;
                        saved.type_flags = rec->type_flags;
                        saved.type_data = rec->type_data;
                        saved.type_len = rec->type_len;
                        (*with_state)++;
                }
                if (conn_adopt(loops[i % n_loops], fds[i], &peer, &saved) == 0)
                        (*adopted)++;
        }
        for (size_t i = 0; i < n; i++)
                if (!used[i]) {
                        drop_stored(fds[i]);
                        (*dropped)++;
                }
        free(used);
        table_free(&backends);
}

int fdstore_adopt(struct loop **loops, size_t n_loops, const int *fds, size_t n, const int *state_fds,
                  size_t n_state, const int *relay_fds, char *const *relay_names, size_t n_relay) {
        struct table index = { 0 };
        struct { void *map; size_t size; struct saved_rec *recs; } *maps = calloc(n_state ? n_state : 1, sizeof(*maps));
        size_t with_state = 0, adopted = 0, gone = 0, relays = 0, relays_with_state = 0, dropped = 0;
        int r;

        if (!maps)
                return log_error_errno(-ENOMEM, "cannot adopt the stored connections");
        for (size_t k = 0; k < n_loops; k++)
                loops[k]->fdstore = true; /* the sockets came from the store: it holds copies */
        /* one state per worker of the previous tcpd */
        for (size_t k = 0; k < n_state; k++) {
                uint64_t next_id = 0;

                r = load_state(state_fds[k], &maps[k].map, &maps[k].size, &maps[k].recs, &index, &next_id);
                if (r < 0)
                        log_warning_errno(r, "a saved connection state is unusable; adopting its connections "
                                             "with new ids");
                if (next_id > 0)
                        loop_id_seen(loops[0], next_id - 1);
        }
        for (size_t i = 0; i < n; i++) {
                union sockaddr_in46 peer, local;
                socklen_t plen = sizeof(peer), llen = sizeof(local);
                const struct saved_rec *rec;
                struct conn_saved saved;

                if (getpeername(fds[i], &peer.sa, &plen) < 0 || getsockname(fds[i], &local.sa, &llen) < 0) {
                        /* gone while nobody watched: let systemd drop it too */
                        (void) shutdown(fds[i], SHUT_RDWR);
                        close(fds[i]);
                        continue;
                }
                addr_normalize(&peer);
                addr_normalize(&local);
                rec = table_get(&index, pair_key(&peer, &local));
                if (rec && (!addr_equal(&rec->peer, &peer) || !addr_equal(&rec->local, &local)))
                        rec = NULL;
                if (rec && rec->service < 0) {
                        /* its service is gone (a newer tcpd's type, or one
                         * this version dropped): end it, as a stop would */
                        char host[ADDR_STRLEN];

                        log_notice("connection %llu from %s was for service '%s', which this tcpd does not have; "
                                   "closing it",
                                   (unsigned long long) rec->id, addr_format(&peer, host, sizeof(host)),
                                   rec->service_name);
                        (void) shutdown(fds[i], SHUT_RDWR);
                        close(fds[i]);
                        gone++;
                        continue;
                }
                if (rec) {
                        saved = (struct conn_saved) {
                                .id = rec->id,
                                .service = (uint8_t) rec->service,
                                .connected_usec = rec->connected_usec,
                                .bytes_in = rec->bytes_in,
                                .bytes_out = rec->bytes_out,
                                .owed = rec->owed,
                                .owed_len = rec->owed_len,
                                .type_fd = -1,
                        };
                        with_state++;
                }
                /* spread over the workers as accept would */
                if (conn_adopt(loops[i % n_loops], fds[i], &peer, rec ? &saved : NULL) == 0)
                        adopted++;
        }
        adopt_relays(loops, n_loops, relay_fds, relay_names, n_relay, &index, &relays, &relays_with_state, &dropped);
        table_free(&index);
        for (size_t k = 0; k < n_state; k++) {
                if (maps[k].map)
                        munmap(maps[k].map, maps[k].size);
                free(maps[k].recs);
                close(state_fds[k]);
        }
        free(maps);
        if (n_state)
                /* read once: a later restart must not see it again */
                sd_notify(0, "FDSTOREREMOVE=1\nFDNAME=" FDSTORE_STATE_NAME);
        for (size_t k = 0; k < n_loops; k++) {
                limits_rebuild(loops[k]); /* adopted connections count for their sources */
                sort_by_id(loops[k]);
        }
        log_info("adopted %zu connection%s from the fd store (%zu with their saved state)", adopted, plural(adopted),
                 with_state);
        if (gone)
                log_notice("closed %zu stored connection%s whose service this tcpd does not have", gone,
                           plural(gone));
        if (n_relay)
                log_info("adopted %zu relay%s from the fd store (%zu with their saved state)", relays, plural(relays),
                         relays_with_state);
        if (dropped)
                log_notice("reset %zu stored relay socket%s whose other half, or service, is gone", dropped,
                           plural(dropped));
        return 0;
}

int fdstore_save_text(const char *name, const char *text) {
        _cleanup_close_ int fd = -1;
        char msg[96];
        int r;

        if (!fdstore_configured())
                return 0;
        fd = memfd_create(name, MFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        r = write_all(fd, text ? text : "", text ? strlen(text) : 0);
        if (r < 0)
                return r;
        /* one copy in the store: the newest */
        snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
        (void) sd_notify(0, msg);
        snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
        r = sd_pid_notify_with_fds(0, 0, msg, &fd, 1);
        return r > 0 ? 0 : r < 0 ? r : -ENOTCONN;
}

char *fdstore_read_text(int fd) {
        struct stat st;
        char *text;

        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > 1024 * 1024)
                return NULL;
        text = calloc(1, (size_t) st.st_size + 1);
        if (text && pread(fd, text, (size_t) st.st_size, 0) != st.st_size)
                text = mfree(text);
        return text;
}

char *fdstore_saved_text(const char *name) {
        char **names = NULL, *text = NULL;
        int n = sd_listen_fds_with_names(0, &names); /* 0: leaves $LISTEN_FDS for the start-up proper */

        for (int i = 0; i < n && !text; i++)
                if (names && names[i] && streq(names[i], name))
                        text = fdstore_read_text(SD_LISTEN_FDS_START + i);
        for (int i = 0; names && names[i]; i++)
                free(names[i]);
        free(names);
        return text;
}
