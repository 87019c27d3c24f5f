/* The control socket: Varlink over AF_UNIX, served from sd-event. */
#pragma once

#include <jansson.h>

#include "tcpd.h"

/* What the control socket asks of the daemon beyond reading struct tcpd:
 * main.c's, or a test's (the fuzzer's), so that control.c needs no symbol
 * of main.c. */
struct control_hooks {
        /* Loads the settings again; on failure *error (freed by the
         * caller) says why. */
        int (*reload)(struct tcpd *t, char **error);
};

/* fd >= 0: a socket from systemd; otherwise create the configured path. */
int control_open(struct tcpd *t, const struct control_hooks *hooks, int fd, struct control **ret);
struct control *control_free(struct control *c);
/* Stop accepting new control clients (shutdown); existing ones get answers
 * until the process exits. */
void control_stop_accepting(struct control *c);
/* Serves a connected socket as a control client (what accept does; also
 * how the fuzzer feeds bytes in). Takes fd. */
int control_add_client(struct control *c, int fd);
/* Tells every tcpctl monitor about a reload (error: NULL when it worked). */
void control_monitor_reload(struct control *c, const char *error);
/* type = forward: a backend went up or down (a check's result says why). */
void control_monitor_backend(struct control *c, const char *service, const char *backend, bool up,
                             const char *why);
/* GetStatus's parameters (also what the metrics endpoint serves), or NULL
 * when out of memory. On the control plane's thread. */
json_t *control_status(struct tcpd *t);
/* Whether some client still waits for (part of) an answer. */
bool control_busy(const struct control *c);
