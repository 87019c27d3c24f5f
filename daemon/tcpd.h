/* The daemon's state, shared by start-up, reload, shutdown and the control
 * socket. One per process. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "loop.h"
#include "mailbox.h"

struct control;

struct tcpd {
        struct config *config;
        const char *config_path;
        bool config_must_exist;

        /* The control plane (this thread: sd-event, signals, the control
         * socket) and the workers (a thread and an epoll loop each, owning
         * their connections). */
        sd_event *event;
        struct loop_shared shared;
        struct loop *loops; /* one per worker */
        struct loop **loop_ptrs;
        unsigned n_workers;
        bool worker_batch; /* worker_scheduling as at the start: read by the workers as they start */
        pthread_t *threads;
        unsigned threads_started;
        unsigned running; /* workers whose loop has not returned */
        int worker_error;
        struct listener *listeners; /* what the workers watch */
        struct mailbox inbox; /* replies from loops to the control plane */
        sd_event_source *inbox_source;
        struct control *control;
        struct scrape *scrape;  /* GET /metrics, or NULL when off */
        /* type = forward: each service's backends as the workers have them
         * (by service id), for the next settings to carry their state over */
        struct backend_pool *pools[SERVICE_IDS_MAX];
        struct checks *checks; /* their health checks */
        char *saved_backends; /* what an admin drained or disabled before a restart, until applied */
        char *metrics_address;  /* where it listens, for GetStatus */

        gid_t admin_gid;
        bool admin_gid_valid;
        bool activated; /* service listeners came from systemd */
        bool stop_drain; /* PrepareStop: the next SIGTERM is a stop, not a restart */
        bool stopping;
        uint64_t start_monotonic;
        sd_event_source *shutdown_timer;
        sd_event_source *status_timer;
        char last_status[512];
        /* The settings file did not load (at start or at the last reload):
         * what was wrong, "FILE:LINE: ..." */
        char *settings_error;
        /* ... and at start nothing else could be loaded either: tcpd runs,
         * answers tcpctl, and refuses clients until a reload succeeds */
        bool no_settings;
        /* listen= lines not bound because systemd passed the sockets, or NULL */
        char *listen_ignored;
};

/* Re-reads the settings and applies them. On failure the old settings stay
 * and *error (malloc'd) says why, file and line included. */
int tcpd_reload(struct tcpd *t, char **error);
/* Begins a graceful stop (as SIGTERM does). */
void tcpd_stop(struct tcpd *t);
/* Every worker's counters, added up. */
void tcpd_stats(const struct tcpd *t, struct loop_stats *sum);
