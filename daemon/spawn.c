/* A program per connection, started without copying the daemon.
 *
 * fork() copies tcpd's memory map and posix_spawn() (CLONE_VM|CLONE_VFORK)
 * still copies its file table: with 19,000 connections open that is
 * 19,000 references taken at clone and 19,000 close-on-exec descriptors
 * closed again at execve, about a millisecond per program. Here the child
 * shares the file table (CLONE_FILES) and the memory (CLONE_VM) and the
 * parent thread waits (CLONE_VFORK) until it has called execve. The child
 * first takes a table of its own holding only the descriptors below a
 * few low, reserved slots (close_range() with CLOSE_RANGE_UNSHARE copies
 * no more than that), then moves the connection's socket and the stderr
 * pipe from the slots to 0, 1 and 2 and closes the rest. The parent puts
 * them into its slots (dup3() over a placeholder) just before the clone,
 * and the placeholders back just after. So the cost is the same whether
 * tcpd holds ten descriptors or twenty thousand.
 *
 * The child runs on a small stack of its own, in the parent's memory, and
 * makes raw system calls only: no lock, no allocation, nothing a
 * sanitizer's interceptors would track. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/close_range.h>

#include "spawn.h"

#define CHILD_STACK (64 * 1024)

/* The kernel's struct sigaction for rt_sigaction(). */
struct k_sigaction {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        unsigned long mask;
};

struct slot {
        int sock, err; /* placeholders on /dev/null between spawns */
};

static struct slot *slots;
static unsigned n_slots;
static int devnull = -1;
static int limit; /* the child copies descriptors below this */
/* Signals tcpd ignores (SIGPIPE, and what its parent left ignored): the
 * only dispositions execve() does not reset by itself. tcpd handles no
 * signal with a handler (signalfd), and does not change them later. */
static int ignored[32];
static unsigned n_ignored;

static __thread void *child_stack;

/* glibc's clone() itself: ThreadSanitizer's runtime wraps clone() as a
 * fork and resets its state in the child, which, sharing our memory, would
 * reset the parent's. */
typedef int (*clone_fn)(int (*fn)(void *), void *stack, int flags, void *arg, ...);
static clone_fn real_clone = clone;

struct child_args {
        const struct spawn_req *req;
        int sock, err;
        int error; /* set by the child when execve() fails */
};

#define NO_SANITIZE __attribute__((no_sanitize("address", "undefined", "thread"), noinline))

NO_SANITIZE static int child_main(void *arg) {
        struct child_args *a = arg;
        struct k_sigaction dfl = { .handler = SIG_DFL };
        unsigned long none = 0;
        long r;

        /* a table of its own, of the low descriptors only */
        r = syscall(SYS_close_range, (unsigned) limit, ~0U, CLOSE_RANGE_UNSHARE);
        if (r == 0)
                r = syscall(SYS_dup2, a->sock, 0);
        if (r >= 0)
                r = syscall(SYS_dup2, a->sock, 1);
        if (r >= 0)
                r = syscall(SYS_dup2, a->err, 2);
        if (r >= 0)
                r = syscall(SYS_close_range, 3U, ~0U, 0);
        if (r < 0) {
                a->error = errno ? errno : EBADF;
                syscall(SYS_exit_group, 127);
        }
        /* default dispositions (tcpd ignores SIGPIPE), nothing blocked
         * (tcpd's workers block every signal), a process group of its own
         * so that a kick reaches what the program starts */
        for (unsigned i = 0; i < n_ignored; i++)
                (void) syscall(SYS_rt_sigaction, ignored[i], &dfl, NULL, sizeof(dfl.mask));
        (void) syscall(SYS_setpgid, 0, 0);
        (void) syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof(none));
        syscall(SYS_execve, a->req->path, a->req->argv, a->req->envp);
        a->error = errno;
        syscall(SYS_exit_group, 127);
        return 127;
}

int spawn_init(unsigned n) {
        void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);

        if (libc) {
                clone_fn f = (clone_fn) dlsym(libc, "clone");

                if (f)
                        real_clone = f;
                dlclose(libc);
        }
        n_ignored = 0;
        for (int sig = 1; sig < 32; sig++) {
                struct sigaction sa;

                if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler != SIG_DFL)
                        ignored[n_ignored++] = sig; /* SIG_IGN (or a handler: reset it too) */
        }
        slots = calloc(n, sizeof(*slots));
        if (!slots)
                return -ENOMEM;
        devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0)
                return -errno;
        n_slots = n;
        for (unsigned i = 0; i < n; i++) {
                slots[i].sock = fcntl(devnull, F_DUPFD_CLOEXEC, 3);
                slots[i].err = fcntl(devnull, F_DUPFD_CLOEXEC, 3);
                if (slots[i].sock < 0 || slots[i].err < 0)
                        return -errno;
                if (slots[i].sock >= limit)
                        limit = slots[i].sock + 1;
                if (slots[i].err >= limit)
                        limit = slots[i].err + 1;
        }
        return 0;
}

void spawn_done(void) {
        for (unsigned i = 0; i < n_slots; i++) {
                close(slots[i].sock);
                close(slots[i].err);
        }
        free(slots);
        slots = NULL;
        n_slots = 0;
        if (devnull >= 0)
                close(devnull);
        devnull = -1;
}

int spawn_program(unsigned slot, const struct spawn_req *req, pid_t *pid, int *pidfd) {
        struct child_args a = { .req = req };
        int fd = -1, r = 0;
        pid_t child;

        if (slot >= n_slots)
                return -EINVAL;
        if (!child_stack) {
                void *p = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                               -1, 0);
                if (p == MAP_FAILED)
                        return -errno;
                child_stack = p; /* kept for the thread's life */
        }
        a.sock = slots[slot].sock;
        a.err = slots[slot].err;
        if (dup3(req->stdio, a.sock, O_CLOEXEC) < 0 || dup3(req->stderr_fd, a.err, O_CLOEXEC) < 0) {
                r = -errno;
                goto restore;
        }
        child = real_clone(child_main, (char *) child_stack + CHILD_STACK,
                      CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_PIDFD | SIGCHLD, &a, &fd);
        if (child < 0) {
                r = -errno;
                goto restore;
        }
        /* the child has called execve() or exited by now */
        if (a.error) {
                siginfo_t si;

                r = -a.error;
                (void) waitid(P_PIDFD, (id_t) fd, &si, WEXITED);
                close(fd);
                goto restore;
        }
        *pid = child;
        *pidfd = fd;
restore:
        /* our slots drop their references to the socket and the pipe */
        (void) dup3(devnull, a.sock, O_CLOEXEC);
        (void) dup3(devnull, a.err, O_CLOEXEC);
        return r;
}
