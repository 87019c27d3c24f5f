/* Durations and sizes as admins write and read them, in systemd's units. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define USEC_PER_MSEC 1000ULL
#define USEC_PER_SEC 1000000ULL

/* "30", "30s", "500ms", "5min", "2h", "1d", "1min 30s", "1.5s", "0.2". A bare
 * number is seconds. */
int parse_duration(const char *s, uint64_t *usec);
/* "65536", "64K", "1M", "1G" (powers of 1024, optional "B"/"iB"). */
int parse_size(const char *s, uint64_t *bytes);
/* Unsigned decimal with an upper bound. */
int parse_uint(const char *s, uint64_t max, uint64_t *v);
int parse_bool(const char *s, int *b);

/* "2h 3min", "45s", "120ms", "0". Exact to the two largest units. */
const char *format_duration(uint64_t usec, char *buf, size_t n);
/* Every unit that is not zero ("1h 30s", "9h 6min 7s"): what settings print,
 * so that the text reads back as the same value. */
const char *format_duration_exact(uint64_t usec, char *buf, size_t n);
/* "512B", "1.5K", "20.0M": like systemctl and ss. */
const char *format_size(uint64_t bytes, char *buf, size_t n);
