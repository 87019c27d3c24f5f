/* Numeric address parsing, formatting and CIDR matching. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

static int parse_port(const char *s, uint16_t *port) {
        char *end;
        unsigned long v;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || *end || v > 65535)
                return -EINVAL;
        *port = (uint16_t) v;
        return 0;
}

/* Splits "host:port", "[v6]:port", "v6" or "host" into host and port text. */
static int split_host_port(const char *s, char *host, size_t n, const char **port) {
        const char *colon;
        size_t len;

        *port = NULL;
        if (*s == '[') {
                const char *close = strchr(s, ']');
                if (!close)
                        return -EINVAL;
                len = (size_t) (close - s - 1);
                if (close[1] == ':')
                        *port = close + 2;
                else if (close[1])
                        return -EINVAL;
                s++;
        } else {
                colon = strrchr(s, ':');
                if (colon && strchr(s, ':') == colon) {
                        /* exactly one colon: IPv4 or name with a port */
                        len = (size_t) (colon - s);
                        *port = colon + 1;
                } else
                        len = strlen(s); /* no colon, or a bare IPv6 address */
        }
        if (len >= n)
                return -EINVAL;
        memcpy(host, s, len);
        host[len] = 0;
        return 0;
}

static int parse_host(const char *host, union sockaddr_in46 *a) {
        memset(a, 0, sizeof(*a));
        if (inet_pton(AF_INET, host, &a->in.sin_addr) == 1) {
                a->in.sin_family = AF_INET;
                return 0;
        }
        if (inet_pton(AF_INET6, host, &a->in6.sin6_addr) == 1) {
                a->in6.sin6_family = AF_INET6;
                return 0;
        }
        return -EINVAL;
}

static void set_port(union sockaddr_in46 *a, uint16_t port) {
        if (a->sa.sa_family == AF_INET)
                a->in.sin_port = htons(port);
        else
                a->in6.sin6_port = htons(port);
}

int addr_parse(const char *s, union sockaddr_in46 *a) {
        char host[INET6_ADDRSTRLEN + 1];
        const char *port;
        uint16_t p = 0;

        if (split_host_port(s, host, sizeof(host), &port) < 0)
                return -EINVAL;
        if (port && parse_port(port, &p) < 0)
                return -EINVAL;
        if (parse_host(host, a) < 0)
                return -EINVAL;
        set_port(a, p);
        return 0;
}

int addr_parse_listen(const char *s, union sockaddr_in46 *a, bool *any, const char **why) {
        char host[INET6_ADDRSTRLEN + 1];
        const char *port;
        uint16_t p;

        *any = false;
        *why = NULL;
        if (*s && strspn(s, "0123456789") == strlen(s) && parse_port(s, &p) < 0) {
                *why = "a port is from 1 to 65535 (0 takes any free port)";
                return -EINVAL;
        }
        if (parse_port(s, &p) == 0) {
                memset(a, 0, sizeof(*a));
                a->in6.sin6_family = AF_INET6;
                a->in6.sin6_addr = in6addr_any;
                *any = true;
                goto port;
        }
        if (split_host_port(s, host, sizeof(host), &port) < 0 || !port) {
                *why = "expected PORT, HOST:PORT or [IPV6]:PORT";
                return -EINVAL;
        }
        if (parse_port(port, &p) < 0) {
                *why = "a port is from 1 to 65535 (0 takes any free port)";
                return -EINVAL;
        }
        if (strcmp(host, "*") == 0 || host[0] == 0) {
                memset(a, 0, sizeof(*a));
                a->in6.sin6_family = AF_INET6;
                a->in6.sin6_addr = in6addr_any;
                *any = true;
        } else if (parse_host(host, a) < 0) {
                *why = "host must be a numeric IPv4 or IPv6 address (no names)";
                return -EINVAL;
        }
port:
        set_port(a, p);
        return 0;
}

socklen_t addr_len(const union sockaddr_in46 *a) {
        return a->sa.sa_family == AF_INET ? sizeof(a->in) : sizeof(a->in6);
}

uint16_t addr_port(const union sockaddr_in46 *a) {
        return ntohs(a->sa.sa_family == AF_INET ? a->in.sin_port : a->in6.sin6_port);
}

void addr_normalize(union sockaddr_in46 *a) {
        struct sockaddr_in in = { .sin_family = AF_INET };

        if (a->sa.sa_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&a->in6.sin6_addr))
                return;
        in.sin_port = a->in6.sin6_port;
        memcpy(&in.sin_addr, &a->in6.sin6_addr.s6_addr[12], 4);
        memset(a, 0, sizeof(*a));
        a->in = in;
}

/* Decimal digits of v at p; returns the end. */
static char *put_uint(char *p, unsigned v) {
        char tmp[10];
        size_t k = 0;

        do
                tmp[k++] = (char) ('0' + v % 10);
        while ((v /= 10));
        while (k)
                *p++ = tmp[--k];
        return p;
}

const char *addr_format_host(const union sockaddr_in46 *a, char *buf, size_t n) {
        const void *src = a->sa.sa_family == AF_INET ? (const void *) &a->in.sin_addr
                                                      : (const void *) &a->in6.sin6_addr;

        /* IPv4 by hand: glibc's inet_ntop formats each byte with sprintf(),
         * and a list of 19,000 connections formats 57,000 addresses */
        if (a->sa.sa_family == AF_INET && n >= INET_ADDRSTRLEN) {
                const uint8_t *b = src;
                char *p = buf;

                for (int i = 0; i < 4; i++) {
                        p = put_uint(p, b[i]);
                        *p++ = i < 3 ? '.' : 0;
                }
                return buf;
        }
        if (!inet_ntop(a->sa.sa_family, src, buf, (socklen_t) n))
                snprintf(buf, n, "?");
        return buf;
}

const char *addr_format(const union sockaddr_in46 *a, char *buf, size_t n) {
        char host[INET6_ADDRSTRLEN], *p;
        size_t len;

        addr_format_host(a, host, sizeof(host));
        len = strlen(host);
        /* "[host]:65535" and its NUL */
        if (n < len + 9) {
                snprintf(buf, n, a->sa.sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, addr_port(a));
                return buf;
        }
        p = buf;
        if (a->sa.sa_family == AF_INET6)
                *p++ = '[';
        memcpy(p, host, len);
        p += len;
        if (a->sa.sa_family == AF_INET6)
                *p++ = ']';
        *p++ = ':';
        p = put_uint(p, addr_port(a));
        *p = 0;
        return buf;
}

bool addr_equal(const union sockaddr_in46 *a, const union sockaddr_in46 *b) {
        if (a->sa.sa_family != b->sa.sa_family || addr_port(a) != addr_port(b))
                return false;
        if (a->sa.sa_family == AF_INET)
                return a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
        return memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16) == 0;
}

static void mask_bytes(uint8_t *b, unsigned prefix, unsigned total_bits) {
        for (unsigned bit = prefix; bit < total_bits; bit++)
                b[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
}

int cidr_parse(const char *s, struct cidr *c) {
        const char *why;

        return cidr_parse_why(s, c, &why);
}

int cidr_parse_why(const char *s, struct cidr *c, const char **why) {
        char host[INET6_ADDRSTRLEN + 1];
        const char *slash = strchr(s, '/');
        size_t len = slash ? (size_t) (slash - s) : strlen(s);
        unsigned long prefix;
        char *end;

        *why = "not a numeric IPv4 or IPv6 address or prefix (such as 192.0.2.0/24 or 2001:db8::/32)";
        if (len == 0 || len >= sizeof(host))
                return -EINVAL;
        memcpy(host, s, len);
        host[len] = 0;
        memset(c, 0, sizeof(*c));
        if (inet_pton(AF_INET, host, c->bytes) == 1) {
                c->family = AF_INET;
                c->prefix = 32;
        } else if (inet_pton(AF_INET6, host, c->bytes) == 1) {
                c->family = AF_INET6;
                c->prefix = 128;
        } else
                return -EINVAL;

        if (slash) {
                *why = c->family == AF_INET ? "the prefix length of an IPv4 prefix is from 0 to 32"
                                            : "the prefix length of an IPv6 prefix is from 0 to 128";
                if (slash[1] < '0' || slash[1] > '9')
                        return -EINVAL;
                errno = 0;
                prefix = strtoul(slash + 1, &end, 10);
                if (errno || *end || prefix > c->prefix)
                        return -EINVAL;
                c->prefix = (unsigned) prefix;
        }
        *why = NULL;

        if (c->family == AF_INET6 && IN6_IS_ADDR_V4MAPPED((struct in6_addr *) c->bytes) && c->prefix >= 96) {
                memmove(c->bytes, c->bytes + 12, 4);
                memset(c->bytes + 4, 0, 12);
                c->family = AF_INET;
                c->prefix -= 96;
        }
        mask_bytes(c->bytes, c->prefix, c->family == AF_INET ? 32 : 128);
        return 0;
}

bool cidr_match(const struct cidr *c, const union sockaddr_in46 *a) {
        union sockaddr_in46 n = *a;
        const uint8_t *b;
        unsigned full, rest;

        addr_normalize(&n);
        if (n.sa.sa_family != c->family)
                return false;
        b = c->family == AF_INET ? (const uint8_t *) &n.in.sin_addr : (const uint8_t *) &n.in6.sin6_addr;
        full = c->prefix / 8;
        rest = c->prefix % 8;
        if (memcmp(b, c->bytes, full) != 0)
                return false;
        if (rest) {
                uint8_t mask = (uint8_t) (0xff00u >> rest);
                if ((b[full] & mask) != c->bytes[full])
                        return false;
        }
        return true;
}

const char *cidr_format(const struct cidr *c, char *buf, size_t n) {
        char host[INET6_ADDRSTRLEN];

        if (!inet_ntop(c->family, c->bytes, host, sizeof(host)))
                snprintf(host, sizeof(host), "?");
        snprintf(buf, n, "%s/%u", host, c->prefix);
        return buf;
}
