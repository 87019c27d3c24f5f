/* libFuzzer target: the control socket end to end. Each input is what a
 * control client sends (any bytes, split into writes at places the input
 * picks); tcpd's own control code reads it from a socket, dispatches it
 * (GetInfo, GetStatus, ListConnections, Kick, Reload, SetLogLevel, Monitor,
 * errors) and writes
 * replies; the harness reads every reply and checks it is a NUL-terminated
 * Varlink reply that parses. A client stuck forever, a reply that does not
 * parse, or anything a sanitizer sees fails. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "control.h"
#include "log.h"
#include "loop.h"
#include "tcpd.h"
#include "varlink.h"

static struct tcpd T;
static struct loop L; /* one worker, run by hand below */
static struct loop *LP[1] = { &L };

/* main.c is not linked in: the daemon's side of the control socket is
 * the hooks control_open() takes. A reload here always fails, with a
 * reason, as one with a broken settings file does. */
static int fuzz_reload(struct tcpd *t, char **error) {
        *error = strdup("not in the fuzzer");
        return -EINVAL;
}

static const struct control_hooks hooks = { .reload = fuzz_reload };

static int on_inbox(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        mailbox_dispatch(&T.inbox);
        return 0;
}

static void setup(void) {
        struct loop_settings ls = { .max_buffered = 65536 };
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        log_max_level = LOG_EMERG - 1; /* quiet */
        T.config = config_new();
        if (loop_shared_init(&T.shared) < 0)
                abort();
        T.shared.n_loops = T.n_workers = 1;
        T.loops = &L;
        T.loop_ptrs = LP;
        if (!T.config || sd_event_new(&T.event) < 0 || loop_init(&L, 0, &T.shared, NULL, &ls) < 0 ||
            mailbox_init(&T.inbox) < 0 || sd_event_add_io(T.event, NULL, T.inbox.efd, EPOLLIN, on_inbox, NULL) < 0)
                abort();
        T.start_monotonic = now_usec(CLOCK_MONOTONIC);
        /* an abstract socket: nothing in the file system to clean up */
        snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "tcpd-fuzz-%d", (int) getpid());
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 16) < 0 ||
            control_open(&T, &hooks, fd, &T.control) < 0)
                abort();
}

/* Set when a Monitor stream started: its call never ends, so tcpd keeps
 * even a half-closed client that made it (it may still read events). */
static bool monitoring;

/* Checks every whole reply in buf; returns how many bytes it consumed. */
static size_t check_replies(const char *buf, size_t len) {
        size_t off = 0;

        for (;;) {
                const char *nul = memchr(buf + off, 0, len - off);
                struct vl_reply r;

                if (!nul)
                        return off;
                if (vl_reply_parse(buf + off, (size_t) (nul - buf - off), &r) < 0) {
                        fprintf(stderr, "tcpd sent a reply that is not Varlink: %.*s\n", (int) (nul - buf - off),
                                buf + off);
                        abort();
                }
                if (r.continues && !r.error &&
                    json_is_string(json_object_get(json_object_get(r.params, "event"), "type")) &&
                    strcmp(json_string_value(json_object_get(json_object_get(r.params, "event"), "type")),
                           "started") == 0)
                        monitoring = true;
                vl_reply_done(&r);
                off = (size_t) (nul - buf) + 1;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static bool ready;
        static char out[1 << 20];
        size_t have = 0, sent = 0;
        int sv[2], idle = 0;
        bool eof = false;

        if (!ready) {
                setup();
                ready = true;
        }
        log_level_set(LOG_EMERG - 1); /* an input may have called SetLogLevel */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        if (control_add_client(T.control, sv[0]) < 0)
                abort();
        monitoring = false;

        /* write in pieces sized by the input's first byte, read as we go,
         * until tcpd closes the client after our half-close */
        for (int round = 0; round < 100000 && !eof; round++) {
                size_t step = size ? (size_t) data[0] % 61 + 1 : 1;
                ssize_t n;
                int r;

                if (sent < size) {
                        n = send(sv[1], data + sent, size - sent < step ? size - sent : step, MSG_NOSIGNAL);
                        if (n > 0)
                                sent += (size_t) n;
                        if (sent == size)
                                shutdown(sv[1], SHUT_WR);
                } else if (size == 0 && round == 0)
                        shutdown(sv[1], SHUT_WR);
                mailbox_dispatch(&L.inbox);
                r = sd_event_run(T.event, 0);
                if (r < 0)
                        abort();
                n = recv(sv[1], out + have, sizeof(out) - have, 0);
                if (n == 0)
                        eof = true;
                else if (n > 0) {
                        size_t used;

                        have += (size_t) n;
                        used = check_replies(out, have);
                        memmove(out, out + used, have - used);
                        have -= used;
                        if (have == sizeof(out))
                                abort(); /* a reply larger than 1 MiB */
                        idle = 0;
                } else if (errno == ECONNRESET)
                        eof = true;
                else if (r == 0 && sent == size && ++idle > 1000) {
                        if (monitoring)
                                break; /* a monitor: answered, and kept */
                        fprintf(stderr, "tcpd neither answered nor closed the client\n");
                        abort();
                }
        }
        if (!eof && !monitoring)
                abort();
        close(sv[1]);
        if (!eof) {
                /* tcpd sees the hang-up and lets the monitor go */
                for (int i = 0; i < 100 && sd_event_run(T.event, 0) > 0; i++)
                        ;
        }
        return 0;
}
