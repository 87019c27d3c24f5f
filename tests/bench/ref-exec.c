/* ref-exec: the least a server that runs a program per connection can do,
 * the floor the exec benchmark measures tcpd against (as ref-echo is for
 * echo). One thread: accept, posix_spawn the program with the socket as
 * its standard input and output, close our copy; children are reaped by
 * the kernel (SIGCHLD ignored). No limits, no logging, no accounting.
 *
 *     ref-exec [-H ADDR] [-p PORT] [-b BACKLOG] [-n FDS] -- PROGRAM [ARG...]
 *
 * -n opens FDS more descriptors (close-on-exec, as a daemon's connections
 * are) first: what posix_spawn() costs a server that holds many.
 * Prints "listening on PORT" once ready. Numeric addresses only. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
        const char *host = "127.0.0.1";
        int port = 0, backlog = 128, extra = 0, opt, fd, one = 1;
        struct sockaddr_in sa = { .sin_family = AF_INET };
        socklen_t len = sizeof(sa);

        while ((opt = getopt(argc, argv, "H:p:b:n:")) != -1) {
                switch (opt) {
                case 'H':
                        host = optarg;
                        break;
                case 'p':
                        port = atoi(optarg);
                        break;
                case 'b':
                        backlog = atoi(optarg);
                        break;
                case 'n':
                        extra = atoi(optarg);
                        break;
                default:
                        fprintf(stderr, "usage: ref-exec [-H ADDR] [-p PORT] [-b BACKLOG] [-n FDS] -- PROGRAM [ARG...]\n");
                        return 2;
                }
        }
        if (optind >= argc || argv[optind][0] != '/') {
                fprintf(stderr, "ref-exec: give the program's absolute path after --\n");
                return 2;
        }
        if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
                fprintf(stderr, "ref-exec: %s is not a numeric IPv4 address\n", host);
                return 2;
        }
        sa.sin_port = htons((uint16_t) port);
        signal(SIGCHLD, SIG_IGN); /* the kernel reaps: no zombies, no waitpid */
        for (int i = 0; i < extra; i++)
                if (socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) < 0) {
                        perror("ref-exec: -n");
                        return 1;
                }
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0 ||
            getsockname(fd, (struct sockaddr *) &sa, &len) < 0) {
                perror("ref-exec: listen");
                return 1;
        }
        printf("listening on %u\n", ntohs(sa.sin_port));
        fflush(stdout);
        for (;;) {
                posix_spawn_file_actions_t fa;
                pid_t pid;
                int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC), r;

                if (c < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        perror("ref-exec: accept");
                        return 1;
                }
                posix_spawn_file_actions_init(&fa);
                posix_spawn_file_actions_adddup2(&fa, c, 0);
                posix_spawn_file_actions_adddup2(&fa, c, 1);
                r = posix_spawn(&pid, argv[optind], &fa, NULL, argv + optind, environ);
                posix_spawn_file_actions_destroy(&fa);
                if (r != 0)
                        fprintf(stderr, "ref-exec: spawn: %s\n", strerror(r));
                close(c);
        }
}
