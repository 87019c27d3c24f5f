/* Socket addresses as tcpd shows and matches them: numeric only, IPv4-mapped
 * IPv6 peers folded to IPv4, CIDR prefixes for filters. No I/O, no DNS. */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

union sockaddr_in46 {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
};

/* Long enough for "[ffff:...:ffff%ifname]:65535". */
#define ADDR_STRLEN 72

struct cidr {
        int family;        /* AF_INET or AF_INET6 */
        unsigned prefix;   /* 0..32 or 0..128 */
        uint8_t bytes[16]; /* network, host bits cleared */
};

/* Parses a listen address: "PORT" (every address, IPv6 dual-stack),
 * "A.B.C.D:PORT", "[V6]:PORT" or "*:PORT". Sets *any when only a port was
 * given. Returns 0, or -EINVAL with a reason in *why. */
int addr_parse_listen(const char *s, union sockaddr_in46 *a, bool *any, const char **why);

/* Parses a numeric address with an optional port ("::1", "[::1]:7788",
 * "127.0.0.1:7788", "127.0.0.1"). Port 0 when none was given. */
int addr_parse(const char *s, union sockaddr_in46 *a);

socklen_t addr_len(const union sockaddr_in46 *a);
uint16_t addr_port(const union sockaddr_in46 *a);

/* Rewrites ::ffff:a.b.c.d as the IPv4 address a.b.c.d; other addresses stay. */
void addr_normalize(union sockaddr_in46 *a);

/* "1.2.3.4" / "::1" (host only) or "1.2.3.4:80" / "[::1]:80". */
const char *addr_format_host(const union sockaddr_in46 *a, char *buf, size_t n);
const char *addr_format(const union sockaddr_in46 *a, char *buf, size_t n);

bool addr_equal(const union sockaddr_in46 *a, const union sockaddr_in46 *b);

/* "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or /128).
 * ::ffff:a.b.c.d/N becomes the IPv4 prefix a.b.c.d/(N-96). */
int cidr_parse(const char *s, struct cidr *c);
/* The same; on -EINVAL *why says what is wrong ("the prefix length of an
 * IPv4 prefix is from 0 to 32"). */
int cidr_parse_why(const char *s, struct cidr *c, const char **why);
bool cidr_match(const struct cidr *c, const union sockaddr_in46 *a);
const char *cidr_format(const struct cidr *c, char *buf, size_t n);
