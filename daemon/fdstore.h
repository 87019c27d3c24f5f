/* Connections that survive a restart: every accepted socket goes into
 * systemd's file descriptor store; at a hand-over (SIGTERM with the store
 * on) tcpd writes what the next process needs into a memfd and stores that
 * too; at start it adopts what the store passes back. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "loop.h"

#define FDSTORE_CONN_NAME "conn"
#define FDSTORE_STATE_NAME "tcpd-state"
#define FDSTORE_SETTINGS_NAME "tcpd-settings"
#define FDSTORE_BACKENDS_NAME "tcpd-backends"
/* A relay's two sockets (type = forward): "fwd.ID.SERVICE.c" for the
 * client's, ".b" for the backend's, stored when the backend answers, so
 * that a tcpd after a crash pairs them again without a saved state. */
#define FDSTORE_RELAY_PREFIX "fwd."

/* True when systemd keeps a store for us: $FDSTORE (set by systemd 254 and
 * later, and by our unit for older ones) is above 0 and $NOTIFY_SOCKET set. */
bool fdstore_configured(void);

/* Queues c for the store, where fdstore_flush() sends it (a relay's type
 * sends its two sockets) once it is store_after old: a connection that
 * closes sooner never costs systemd anything. */
void fdstore_add(struct loop *l, struct conn *c);
/* Takes c out of the queue (it closes before it was sent). */
void fdstore_forget(struct loop *l, struct conn *c);
/* Sends the connections that are due (all of them with all), in batches.
 * Returns when the next one is due (CLOCK_MONOTONIC), or 0. */
uint64_t fdstore_flush(struct loop *l, bool all);

/* Runs on the loop: flushes what can go without blocking, saves every
 * connection's state into the store (one memfd per worker, all named
 * tcpd-state), and closes our copies without ending the connections. The
 * loop then quits. */
void fdstore_handover(struct loop *l);

/* Takes the stored connections, spread over the loops, and the states
 * saved by the previous tcpd's workers (one memfd each). Takes every fd. */
int fdstore_adopt(struct loop **loops, size_t n_loops, const int *fds, size_t n, const int *state_fds,
                  size_t n_state, const int *relay_fds, char *const *relay_names, size_t n_relay);
/* Stores one of a relay's two sockets ('c' the client's, 'b' the
 * backend's), named by its id and service, so that its pair is found again
 * after a crash too. */
int fdstore_add_relay_half(uint64_t id, const char *service, int fd, char side);

/* A text kept in the store under name (a memfd that replaces the one
 * before): the last settings that loaded (FDSTORE_SETTINGS_NAME), so that
 * a start that finds the file broken can run on them instead of failing;
 * the backends an admin drained or disabled (FDSTORE_BACKENDS_NAME).
 * Returns 0 or a negative errno; does nothing without a store. */
int fdstore_save_text(const char *name, const char *text);
/* That text, if systemd passed it (as sd_listen_fds_with_names() sees
 * them, before anything takes the descriptors): malloc'd, or NULL. */
char *fdstore_saved_text(const char *name);
/* The text of one such memfd. */
char *fdstore_read_text(int fd);
