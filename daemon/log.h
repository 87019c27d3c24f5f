/* Logging: structured journal entries under systemd, readable lines on
 * stderr otherwise. Messages below the level are never formatted. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

#include "loglevel.h"
#include "util.h"

/* Set by the control plane, read by every worker: a relaxed atomic. */
extern int log_max_level;
#define log_level_get() __atomic_load_n(&log_max_level, __ATOMIC_RELAXED)
#define log_level_set(level) __atomic_store_n(&log_max_level, (level), __ATOMIC_RELAXED)

/* Call once at start: logs to the journal when JOURNAL_STREAM names our stderr. */
void log_open(void);
bool log_to_journal(void);

/* fields: NULL, or "KEY=value" strings ending with NULL. Returns -err when
 * err is non-zero (negative errno), so callers can log and return at once.
 * code_file and code_line are "CODE_FILE=..." and "CODE_LINE=...": the
 * journal's fields for where the message comes from (log_at passes the
 * caller's). */
int log_full(const char *code_file, const char *code_line, const char *func, int level, int err,
             const char *const *fields, const char *fmt, ...) _printf_(7, 8);

#define LOG_STRINGIFY_(x) #x
#define LOG_STRINGIFY(x) LOG_STRINGIFY_(x)
#define log_at(level, err, fields, ...)                                                                \
        ({                                                                                             \
                int _l = (level), _e = (err);                                                          \
                _l <= log_level_get() ? log_full("CODE_FILE=" __FILE__, "CODE_LINE=" LOG_STRINGIFY(__LINE__), \
                                                 __func__, _l, _e, fields, __VA_ARGS__)                  \
                                      : -abs(_e);                                                      \
        })
#define log_debug(...) log_at(LOG_DEBUG, 0, NULL, __VA_ARGS__)
#define log_info(...) log_at(LOG_INFO, 0, NULL, __VA_ARGS__)
#define log_notice(...) log_at(LOG_NOTICE, 0, NULL, __VA_ARGS__)
#define log_warning(...) log_at(LOG_WARNING, 0, NULL, __VA_ARGS__)
#define log_error(...) log_at(LOG_ERR, 0, NULL, __VA_ARGS__)
#define log_error_errno(err, ...) log_at(LOG_ERR, err, NULL, __VA_ARGS__)
#define log_warning_errno(err, ...) log_at(LOG_WARNING, err, NULL, __VA_ARGS__)

/* A token bucket for messages a client can cause: at most burst messages per
 * interval; the first message after a quiet spell says how many were dropped. */
struct ratelimit {
        uint64_t interval_usec;
        unsigned burst;
        uint64_t begin;
        unsigned count;
        unsigned suppressed;
};
#define RATELIMIT_INIT(interval, b) { .interval_usec = (interval), .burst = (b) }
/* True when this message may be logged. *suppressed gets how many were
 * dropped before it (to report), 0 otherwise. */
bool ratelimit_pass(struct ratelimit *rl, uint64_t now, unsigned *suppressed);
