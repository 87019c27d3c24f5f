/* tcpctl probe: the textbook's TCP echo client as a tool, like ping for an
 * RFC 862 echo service. It needs no control socket, so it works against any
 * echo server. The pure parts (targets, messages, statistics) are here for
 * the unit tests; probe_run() is the I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "term.h"

#define PROBE_DEFAULT_HOST "127.0.0.1"
#define PROBE_DEFAULT_PORT 7788
#define PROBE_DEFAULT_TARGET "127.0.0.1:7788"
/* The smallest message holds "seq=N " for N up to 999999999 and a newline,
 * so that every echo names the message it came from. */
#define PROBE_SIZE_MIN 16
/* Two buffers of this size are all the memory a probe takes. */
#define PROBE_SIZE_MAX (16 * 1024 * 1024)
#define PROBE_DURATION_MAX (86400ULL * 1000000ULL)

struct probe_options {
        const char *target; /* as the user typed it, or NULL for the default */
        const char *host;   /* from probe_parse_target() */
        uint16_t port;
        uint64_t count;     /* echoes to send; 0: until SIGINT or SIGTERM */
        uint64_t interval_usec;
        uint64_t timeout_usec; /* per echo, and per connection attempt */
        uint64_t deadline_usec; /* the whole run, as ping's -w; 0: none */
        size_t size;
        bool quiet;      /* the summary only, as ping's -q */
        bool timestamps; /* each line starts with the time, as ping's -D */
        bool json;        /* one JSON object per line instead of text */
        struct term term; /* stdout's */
};

/* Splits a target into host and port: "", "HOST", "HOST:PORT", ":PORT",
 * "[IPV6]", "[IPV6]:PORT" or a bare IPv6 address such as "::1" (which takes
 * brackets to carry a port). A missing host is 127.0.0.1, a missing port
 * 7788. Returns 0, or -EINVAL when the text is not a target or the port is
 * not from 1 to 65535. */
int probe_parse_target(const char *s, char *host, size_t n, uint16_t *port);

/* The message numbered seq, exactly size bytes: "seq=N ", letters that shift
 * with seq, a newline. Two messages of one run never look alike, so a stale
 * or reordered echo shows. */
void probe_message(uint64_t seq, char *buf, size_t size);
/* The sequence number at the start of what came back, if it names one. */
int probe_message_seq(const char *buf, size_t n, uint64_t *seq);

struct probe_stats {
        uint64_t sent;       /* echoes tried, including those that found no connection */
        uint64_t verified;   /* came back whole and byte for byte equal */
        uint64_t mismatched; /* came back different: these count as lost too */
        uint64_t min_usec, max_usec;
        double mean_usec, m2; /* Welford's running mean and sum of squared deviations */
};

/* Counts one echo sent, and, when verified, its round-trip time. */
void probe_stats_add(struct probe_stats *s, bool verified, uint64_t rtt_usec);
uint64_t probe_stats_lost(const struct probe_stats *s);
/* Percent of the echoes sent that did not come back intact, rounded up so
 * that any loss shows: 1 lost of 1000 is 1%. */
unsigned probe_stats_loss_percent(const struct probe_stats *s);
/* ping's mdev: the standard deviation of the round-trip times. */
double probe_stats_mdev_usec(const struct probe_stats *s);

/* A round-trip time in milliseconds with three decimals, "0.045", as ping
 * and ss print them. */
const char *probe_format_rtt(uint64_t usec, char *buf, size_t n);

/* Resolves, connects and runs the echoes. Prints as it goes and a summary at
 * the end, on SIGINT and SIGTERM too. Returns the exit status: 0 when every
 * echo came back intact, 1 otherwise. */
int probe_run(const struct probe_options *o);
