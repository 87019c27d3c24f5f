/* Listening sockets: taken from systemd socket activation or bound from the
 * settings. */
#pragma once

#include <stdbool.h>

#include "addr.h"
#include "config.h"
#include "loop.h"

struct listener {
        struct ev ev; /* first: what epoll hands back */
        int fd;
        /* Where tcpd binds a listener itself and runs several workers: one
         * socket per worker in one SO_REUSEPORT group (fds[0] == fd), so the
         * kernel spreads connections with no wait queue shared between
         * workers. NULL for one worker and for sockets from systemd. */
        int *fds;
        unsigned n_fds;
        unsigned service; /* id in the registry */
        union sockaddr_in46 addr; /* as bound, from getsockname() */
        bool activated;
        bool any;     /* bound to every address (from a port-only spec) */
        char *spec;   /* the listen= text it came from; NULL when activated */
        char *fdname; /* activated: its FileDescriptorName=, the service's name */
        unsigned refs; /* atomic: the control plane's list and each loop watching it */
        struct listener *next; /* the control plane's list */
};

/* Binds one listen= entry, with one socket per worker when workers > 1.
 * Logs what went wrong, with the entry's line. */
int listener_bind(const char *config_path, const struct listen_spec *spec, unsigned svc, unsigned backlog,
                  unsigned workers, struct listener **ret);
/* The socket worker `index` accepts on. */
static inline int listener_fd(const struct listener *l, unsigned index) {
        return l->n_fds > 1 ? l->fds[index % l->n_fds] : l->fd;
}
/* How many sockets it has: listener_fd() of 0 up to this. */
static inline unsigned listener_n_fds(const struct listener *l) {
        return l->n_fds > 1 ? l->n_fds : 1;
}
/* A new backlog on every socket of a listener tcpd bound. */
void listener_set_backlog(struct listener *l, unsigned backlog);
/* Wraps a socket passed by systemd. */
int listener_adopt(int fd, unsigned svc, struct listener **ret);
struct listener *listener_free(struct listener *l);
/* References: every loop that watches a listener holds one, and so does the
 * control plane while the listener is in its list. The last one frees it. */
struct listener *listener_ref(struct listener *l);
struct listener *listener_unref(struct listener *l);
const char *listener_format(const struct listener *l, char *buf, size_t n);
/* Keepalive and TCP_USER_TIMEOUT on the listener: accepted sockets inherit
 * them, so no connection pays a setsockopt() for them. */
void listener_set_options(struct listener *l, const struct config *c);
