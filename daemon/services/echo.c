/* echo (RFC 862): whatever arrives goes straight back. The hot path: one
 * recv into the loop's shared buffer, one send straight back; only a
 * partial send allocates (the owed bytes). */
#include "conn-io.h"
#include "log.h"
#include "services/service.h"

static void echo_readable(struct loop *l, struct conn *c) {
        size_t room = l->rbuf_size < l->settings.max_buffered ? l->rbuf_size : l->settings.max_buffered;
        ssize_t n, w = 0;

        if (c->owed) {
                size_t owed = owed_bytes(c);
                /* max_buffered may have been lowered by a reload below what
                 * is already owed: then read nothing until it drains */
                if (owed >= l->settings.max_buffered) {
                        conn_update(l, c);
                        return;
                }
                if (l->settings.max_buffered - owed < room)
                        room = l->settings.max_buffered - owed;
        }
        n = data_recv(c->fd, l->rbuf, room);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return;
                conn_fail(l, c, -errno);
                return;
        }
        if (n == 0) {
                /* FIN: what is still owed goes out, then we close */
                c->state = CONN_DRAINING;
                conn_update(l, c);
                return;
        }
        c->bytes_in += (uint64_t) n;
        STAT_IN(l, c, (uint64_t) n);
        conn_touch(l, c);

        if (!c->owed) {
                w = data_send(c->fd, l->rbuf, (size_t) n);
                if (w < 0) {
                        if (errno != EAGAIN && errno != EINTR) {
                                conn_fail(l, c, -errno);
                                return;
                        }
                        w = 0;
                }
                c->bytes_out += (uint64_t) w;
                STAT_OUT(l, c, (uint64_t) w);
                if (w == n)
                        return; /* the common case: no state changes */
        }
        if (owed_append(c, l->rbuf + w, (size_t) (n - w)) < 0) {
                /* Cannot keep the client's bytes: better to say so by
                 * closing than to drop them silently. */
                log_warning("connection %llu: out of memory for %zd owed bytes; closing",
                            (unsigned long long) c->id, n - w);
                conn_close(l, c, CLOSE_ERROR);
                return;
        }
        conn_update(l, c);
}

const struct service_type service_echo = {
        .readable = echo_readable,
};
