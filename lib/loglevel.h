/* Log level names: one table for the settings file, the control socket's
 * SetLogLevel and tcpctl log-level. */
#pragma once

/* The syslog level (LOG_EMERG ... LOG_DEBUG) named s, or -EINVAL. Takes
 * the eight names and the aliases "error" and "warn". */
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);
/* For messages. */
#define LOG_LEVEL_NAMES "emerg, alert, crit, err (error), warning (warn), notice, info, debug"
