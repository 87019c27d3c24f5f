/* Log level names (see loglevel.h). */
#include <errno.h>
#include <syslog.h>

#include "loglevel.h"
#include "util.h"

static const struct {
        const char *name;
        int level;
} names[] = {
        { "emerg", LOG_EMERG }, { "alert", LOG_ALERT },     { "crit", LOG_CRIT },     { "err", LOG_ERR },
        { "warning", LOG_WARNING }, { "notice", LOG_NOTICE }, { "info", LOG_INFO }, { "debug", LOG_DEBUG },
        /* aliases, never printed */
        { "error", LOG_ERR },   { "warn", LOG_WARNING },
};

int log_level_from_string(const char *s) {
        for (size_t i = 0; i < ARRAY_SIZE(names); i++)
                if (streq(s, names[i].name))
                        return names[i].level;
        return -EINVAL;
}

const char *log_level_to_string(int level) {
        for (size_t i = 0; i < ARRAY_SIZE(names); i++)
                if (names[i].level == level)
                        return names[i].name;
        return "?";
}
