/* Parsing and formatting of durations and sizes. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "units.h"
#include "util.h"

int parse_uint(const char *s, uint64_t max, uint64_t *v) {
        char *end;
        unsigned long long x;

        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        x = strtoull(s, &end, 10);
        if (errno == ERANGE || x > max)
                return -ERANGE;
        if (errno || *end)
                return -EINVAL;
        *v = x;
        return 0;
}

int parse_bool(const char *s, int *b) {
        static const char *const yes[] = { "1", "yes", "true", "on" };
        static const char *const no[] = { "0", "no", "false", "off" };

        for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0)
                        return *b = 1, 0;
                if (strcasecmp(s, no[i]) == 0)
                        return *b = 0, 0;
        }
        return -EINVAL;
}

static const struct {
        const char *suffix;
        uint64_t usec;
} duration_units[] = {
        { "us", 1 },
        { "ms", USEC_PER_MSEC },
        { "s", USEC_PER_SEC },
        { "sec", USEC_PER_SEC },
        { "m", 60 * USEC_PER_SEC },
        { "min", 60 * USEC_PER_SEC },
        { "h", 3600 * USEC_PER_SEC },
        { "d", 86400 * USEC_PER_SEC },
};

int parse_duration(const char *s, uint64_t *usec) {
        uint64_t total = 0;
        bool any = false;

        while (*s) {
                char unit[8];
                size_t ulen = 0;
                uint64_t mult = 0, frac, scale, part;
                unsigned long long v;
                char *end;

                while (isspace((unsigned char) *s))
                        s++;
                if (!*s)
                        break;
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                errno = 0;
                v = strtoull(s, &end, 10);
                if (errno)
                        return -ERANGE;
                s = end;
                /* a fraction, as ping's -i 0.2 and systemd's 1.5s */
                frac = 0;
                scale = 1;
                if (*s == '.') {
                        s++;
                        if (*s < '0' || *s > '9')
                                return -EINVAL;
                        for (; *s >= '0' && *s <= '9'; s++)
                                if (scale < 1000000000ULL) { /* digits past nanoseconds change nothing */
                                        frac = frac * 10 + (uint64_t) (*s - '0');
                                        scale *= 10;
                                }
                }
                while (isalpha((unsigned char) *s) && ulen < sizeof(unit) - 1)
                        unit[ulen++] = *s++;
                unit[ulen] = 0;
                if (isalpha((unsigned char) *s))
                        return -EINVAL;
                if (ulen == 0)
                        mult = USEC_PER_SEC;
                for (size_t i = 0; !mult && i < ARRAY_SIZE(duration_units); i++)
                        if (streq(unit, duration_units[i].suffix))
                                mult = duration_units[i].usec;
                if (!mult)
                        return -EINVAL;
                if (v > UINT64_MAX / mult || total + v * mult < total)
                        return -ERANGE;
                total += v * mult;
                part = (uint64_t) ((unsigned __int128) frac * mult / scale);
                if (total + part < total)
                        return -ERANGE;
                total += part;
                any = true;
        }
        if (!any)
                return -EINVAL;
        *usec = total;
        return 0;
}

int parse_size(const char *s, uint64_t *bytes) {
        unsigned long long v;
        uint64_t mult = 1;
        char *end;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno)
                return -ERANGE;
        switch (*end) {
        case 0:
        case 'B':
                break;
        case 'K': case 'k':
                mult = 1024;
                end++;
                break;
        case 'M':
                mult = 1024 * 1024;
                end++;
                break;
        case 'G':
                mult = 1024ULL * 1024 * 1024;
                end++;
                break;
        default:
                return -EINVAL;
        }
        if (mult > 1 && (streq(end, "iB") || streq(end, "B")))
                end += strlen(end);
        else if (mult == 1 && *end == 'B')
                end++;
        if (*end)
                return -EINVAL;
        if (v > UINT64_MAX / mult)
                return -ERANGE;
        *bytes = v * mult;
        return 0;
}

const char *format_duration(uint64_t usec, char *buf, size_t n) {
        static const struct {
                const char *name;
                uint64_t usec;
        } units[] = {
                { "d", 86400 * USEC_PER_SEC },
                { "h", 3600 * USEC_PER_SEC },
                { "min", 60 * USEC_PER_SEC },
                { "s", USEC_PER_SEC },
                { "ms", USEC_PER_MSEC },
        };
        size_t off = 0;
        int parts = 0;

        if (usec < USEC_PER_MSEC) {
                snprintf(buf, n, usec ? "%lluus" : "0", (unsigned long long) usec);
                return buf;
        }
        for (size_t i = 0; i < ARRAY_SIZE(units) && parts < 2; i++) {
                uint64_t v = usec / units[i].usec;
                int w;

                if (v == 0) {
                        if (parts)
                                break; /* "1h 0min" would say nothing */
                        continue;
                }
                /* once seconds show, milliseconds are noise */
                if (streq(units[i].name, "ms") && parts)
                        break;
                w = snprintf(buf + off, n - off, "%s%llu%s", parts ? " " : "", (unsigned long long) v,
                             units[i].name);
                if (w < 0 || (size_t) w >= n - off)
                        break;
                off += (size_t) w;
                usec -= v * units[i].usec;
                parts++;
        }
        return buf;
}

const char *format_duration_exact(uint64_t usec, char *buf, size_t n) {
        static const struct {
                const char *name;
                uint64_t usec;
        } units[] = {
                { "d", 86400 * USEC_PER_SEC }, { "h", 3600 * USEC_PER_SEC }, { "min", 60 * USEC_PER_SEC },
                { "s", USEC_PER_SEC },         { "ms", USEC_PER_MSEC },       { "us", 1 },
        };
        size_t off = 0;

        snprintf(buf, n, "0");
        for (size_t i = 0; i < ARRAY_SIZE(units) && usec; i++) {
                uint64_t v = usec / units[i].usec;
                int w;

                if (!v)
                        continue;
                w = snprintf(buf + off, n - off, "%s%llu%s", off ? " " : "", (unsigned long long) v, units[i].name);
                if (w < 0 || (size_t) w >= n - off)
                        break;
                off += (size_t) w;
                usec -= v * units[i].usec;
        }
        return buf;
}

const char *format_size(uint64_t bytes, char *buf, size_t n) {
        static const char units[] = "KMGTPE";
        double v = (double) bytes;
        size_t i = 0;

        if (bytes < 1024) {
                snprintf(buf, n, "%lluB", (unsigned long long) bytes);
                return buf;
        }
        v /= 1024;
        /* 1023.96K would print as "1024.0K": move up a unit first */
        while (v >= 1023.95 && i < sizeof(units) - 2) {
                v /= 1024;
                i++;
        }
        snprintf(buf, n, "%.1f%c", v, units[i]);
        return buf;
}
