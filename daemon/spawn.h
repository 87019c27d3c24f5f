/* Starting a program for a connection at a cost that does not grow with
 * the descriptors tcpd holds (see spawn.c). */
#pragma once

#include <sys/types.h>

/* Reserves n_slots pairs of low descriptors, one pair for each thread
 * that spawns (a worker's index picks its pair). Call early, while few
 * descriptors are open: the child copies only those below the pairs. */
int spawn_init(unsigned n_slots);
void spawn_done(void);

struct spawn_req {
        const char *path;
        char *const *argv;
        char *const *envp;
        int stdio;  /* the child's 0 and 1 */
        int stderr_fd; /* the child's 2 */
};

/* Starts the program on the calling thread's slot. Returns 0 with *pid
 * and *pidfd (O_CLOEXEC), or a negative errno: the program could not be
 * started (clone failed: EAGAIN at TasksMax=, ENOMEM), or execve() failed
 * (ENOENT, EACCES, ...) and the child has exited (reaped here). */
int spawn_program(unsigned slot, const struct spawn_req *req, pid_t *pid, int *pidfd);
