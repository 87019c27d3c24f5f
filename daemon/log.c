/* Journal and stderr logging with structured fields. */
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include "log.h"

int log_max_level = LOG_INFO;
static bool journal;

void log_open(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        /* systemd sets JOURNAL_STREAM to the device:inode of the stream it
         * connected our stderr to; if stderr is still that stream, talk to
         * the journal directly and keep the fields. */
        journal = e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
                  (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

bool log_to_journal(void) {
        return journal;
}

int log_full(const char *code_file, const char *code_line, const char *func, int level, int err,
             const char *const *fields, const char *fmt, ...) {
        char msg[1024], prio[16], errno_field[32];
        struct iovec iov[24];
        size_t n = 0, len;
        va_list ap;
        int saved = errno;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (err) {
                len = strlen(msg);
                snprintf(msg + len, sizeof(msg) - len, ": %s", strerror(abs(err)));
        }

        if (journal) {
                char message[sizeof(msg) + 8];

                snprintf(message, sizeof(message), "MESSAGE=%s", msg);
                snprintf(prio, sizeof(prio), "PRIORITY=%d", level);
                iov[n++] = (struct iovec) { message, strlen(message) };
                iov[n++] = (struct iovec) { prio, strlen(prio) };
                iov[n++] = (struct iovec) { (char *) "SYSLOG_IDENTIFIER=tcpd", 22 };
                if (err) {
                        snprintf(errno_field, sizeof(errno_field), "ERRNO=%d", abs(err));
                        iov[n++] = (struct iovec) { errno_field, strlen(errno_field) };
                }
                for (size_t i = 0; fields && fields[i] && n < ARRAY_SIZE(iov); i++)
                        iov[n++] = (struct iovec) { (char *) fields[i], strlen(fields[i]) };
                sd_journal_sendv_with_location(code_file, code_line, func, iov, (int) n);
        } else {
                /* A line on stderr: the structured fields stay in the
                 * journal; the message carries what a person needs. */
                char line[1200];
                size_t off = (size_t) snprintf(line, sizeof(line), "tcpd[%d]: %s%s%s", (int) getpid(),
                                               level <= LOG_ERR       ? "error"
                                               : level == LOG_WARNING ? "warning"
                                                                      : "",
                                               level <= LOG_WARNING ? ": " : "", msg);

                if (off >= sizeof(line))
                        off = sizeof(line) - 1;
                line[off++] = '\n';
                (void) !write(STDERR_FILENO, line, off);
        }
        errno = saved;
        return -abs(err);
}

/* Rate limits are shared by every worker; what they guard is rare (a
 * refusal, an error), so one lock for all of them costs nothing. */
static pthread_mutex_t ratelimit_lock = PTHREAD_MUTEX_INITIALIZER;

bool ratelimit_pass(struct ratelimit *rl, uint64_t now, unsigned *suppressed) {
        bool pass;

        pthread_mutex_lock(&ratelimit_lock);
        *suppressed = 0;
        if (rl->begin == 0 || now - rl->begin >= rl->interval_usec) {
                *suppressed = rl->suppressed;
                rl->begin = now;
                rl->count = 0;
                rl->suppressed = 0;
        }
        pass = rl->count < rl->burst;
        if (pass)
                rl->count++;
        else
                rl->suppressed++;
        pthread_mutex_unlock(&ratelimit_lock);
        return pass;
}
