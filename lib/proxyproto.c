/* PROXY protocol headers, v1 and v2: built and parsed. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "proxyproto.h"
#include "util.h"

static const char v2_sig[12] = { '\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n' };
#define V1_SIG "PROXY "

bool proxy_signature(const char *buf, size_t len) {
        return (len >= 6 && memcmp(buf, V1_SIG, 6) == 0) || (len >= 12 && memcmp(buf, v2_sig, 12) == 0);
}

size_t proxy_header_build(int version, const union sockaddr_in46 *src, const union sockaddr_in46 *dst, char *buf) {
        int fam = src->sa.sa_family == dst->sa.sa_family ? src->sa.sa_family : AF_UNSPEC;
        unsigned char *p = (unsigned char *) buf;
        size_t n;

        if (fam != AF_INET && fam != AF_INET6)
                fam = AF_UNSPEC;
        if (version == 1) {
                char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];

                if (fam == AF_UNSPEC)
                        return (size_t) snprintf(buf, PROXY_HEADER_MAX, "PROXY UNKNOWN\r\n");
                inet_ntop(fam, fam == AF_INET ? (const void *) &src->in.sin_addr : (const void *) &src->in6.sin6_addr, s,
                          sizeof(s));
                inet_ntop(fam, fam == AF_INET ? (const void *) &dst->in.sin_addr : (const void *) &dst->in6.sin6_addr, d,
                          sizeof(d));
                return (size_t) snprintf(buf, PROXY_HEADER_MAX, "PROXY %s %s %s %u %u\r\n",
                                         fam == AF_INET ? "TCP4" : "TCP6", s, d, addr_port(src), addr_port(dst));
        }
        memcpy(p, v2_sig, 12);
        if (fam == AF_UNSPEC) {
                p[12] = 0x20; /* version 2, LOCAL */
                p[13] = 0x00;
                p[14] = p[15] = 0;
                return 16;
        }
        p[12] = 0x21; /* version 2, PROXY */
        p[13] = fam == AF_INET ? 0x11 : 0x21; /* TCP over IPv4 / IPv6 */
        if (fam == AF_INET) {
                memcpy(p + 16, &src->in.sin_addr, 4);
                memcpy(p + 20, &dst->in.sin_addr, 4);
                memcpy(p + 24, &src->in.sin_port, 2);
                memcpy(p + 26, &dst->in.sin_port, 2);
                n = 12;
        } else {
                memcpy(p + 16, &src->in6.sin6_addr, 16);
                memcpy(p + 32, &dst->in6.sin6_addr, 16);
                memcpy(p + 48, &src->in6.sin6_port, 2);
                memcpy(p + 50, &dst->in6.sin6_port, 2);
                n = 36;
        }
        p[14] = (unsigned char) (n >> 8);
        p[15] = (unsigned char) n;
        return 16 + n;
}

/* A decimal port, 0 to 65535, the whole of s. */
static int v1_port(const char *s, uint16_t *port) {
        unsigned v = 0;

        if (!*s || strlen(s) > 5 || (s[0] == '0' && s[1]))
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned) (*s - '0');
        }
        if (v > 65535)
                return -EINVAL;
        *port = (uint16_t) v;
        return 0;
}

static int v1_addr(int fam, const char *a, const char *port, union sockaddr_in46 *out) {
        uint16_t p;

        memset(out, 0, sizeof(*out));
        if (v1_port(port, &p) < 0)
                return -EINVAL;
        if (fam == AF_INET) {
                out->in.sin_family = AF_INET;
                out->in.sin_port = htons(p);
                return inet_pton(AF_INET, a, &out->in.sin_addr) == 1 ? 0 : -EINVAL;
        }
        out->in6.sin6_family = AF_INET6;
        out->in6.sin6_port = htons(p);
        return inet_pton(AF_INET6, a, &out->in6.sin6_addr) == 1 ? 0 : -EINVAL;
}

static int parse_v1(const char *buf, size_t len, union sockaddr_in46 *src, union sockaddr_in46 *dst, bool *local,
                    const char **why) {
        const char *crlf = NULL;
        char line[PROXY_V1_MAX + 1], *w[7], *save = NULL;
        size_t n = 0, llen;
        int fam;

        for (size_t i = 0; i + 1 < len && i + 1 < PROXY_V1_MAX; i++)
                if (buf[i] == '\r' && buf[i + 1] == '\n') {
                        crlf = buf + i;
                        break;
                }
        if (!crlf) {
                if (len >= PROXY_V1_MAX) {
                        *why = "a v1 header longer than 107 bytes";
                        return -EBADMSG;
                }
                if (memchr(buf, '\n', len) || memchr(buf, 0, len)) {
                        *why = "a v1 header with a stray character";
                        return -EBADMSG;
                }
                return 0;
        }
        llen = (size_t) (crlf - buf);
        memcpy(line, buf, llen);
        line[llen] = 0;
        /* as a prefix of it is judged: the same line is the same answer
         * however it arrives */
        if (strlen(line) != llen || memchr(line, '\n', llen)) {
                *why = "a v1 header with a stray character";
                return -EBADMSG;
        }
        for (char *t = strtok_r(line, " ", &save); t && n < ARRAY_SIZE(w); t = strtok_r(NULL, " ", &save))
                w[n++] = t;
        if (n >= 2 && streq(w[0], "PROXY") && streq(w[1], "UNKNOWN")) {
                *local = true;
                return (int) llen + 2;
        }
        if (n != 6 || !streq(w[0], "PROXY") || (!streq(w[1], "TCP4") && !streq(w[1], "TCP6"))) {
                *why = "not PROXY TCP4|TCP6 SRC DST SRCPORT DSTPORT";
                return -EBADMSG;
        }
        fam = streq(w[1], "TCP4") ? AF_INET : AF_INET6;
        if (v1_addr(fam, w[2], w[4], src) < 0 || v1_addr(fam, w[3], w[5], dst) < 0) {
                *why = "a v1 header with a bad address or port";
                return -EBADMSG;
        }
        *local = false;
        return (int) llen + 2;
}

static int parse_v2(const char *buf, size_t len, union sockaddr_in46 *src, union sockaddr_in46 *dst, bool *local,
                    const char **why) {
        const unsigned char *p = (const unsigned char *) buf;
        size_t body;

        if (len < 16)
                return 0;
        if ((p[12] & 0xf0) != 0x20 || (p[12] & 0x0f) > 1) {
                *why = "a v2 header of another version or command";
                return -EBADMSG;
        }
        body = (size_t) p[14] << 8 | p[15];
        if (16 + body > PROXY_HEADER_MAX) {
                *why = "a v2 header longer than tcpd takes (1024 bytes)";
                return -EBADMSG;
        }
        if (len < 16 + body)
                return 0;
        *local = true;
        if ((p[12] & 0x0f) == 0) /* LOCAL: the proxy's own connection (a health check) */
                return (int) (16 + body);
        memset(src, 0, sizeof(*src));
        memset(dst, 0, sizeof(*dst));
        if (p[13] == 0x11) { /* TCP over IPv4 */
                if (body < 12) {
                        *why = "a v2 header too short for its IPv4 addresses";
                        return -EBADMSG;
                }
                src->in.sin_family = dst->in.sin_family = AF_INET;
                memcpy(&src->in.sin_addr, p + 16, 4);
                memcpy(&dst->in.sin_addr, p + 20, 4);
                memcpy(&src->in.sin_port, p + 24, 2);
                memcpy(&dst->in.sin_port, p + 26, 2);
                *local = false;
        } else if (p[13] == 0x21) { /* TCP over IPv6 */
                if (body < 36) {
                        *why = "a v2 header too short for its IPv6 addresses";
                        return -EBADMSG;
                }
                src->in6.sin6_family = dst->in6.sin6_family = AF_INET6;
                memcpy(&src->in6.sin6_addr, p + 16, 16);
                memcpy(&dst->in6.sin6_addr, p + 32, 16);
                memcpy(&src->in6.sin6_port, p + 48, 2);
                memcpy(&dst->in6.sin6_port, p + 50, 2);
                *local = false;
        }
        /* other families (UDP, UNIX, unspecified): the connection's own
         * addresses, as the specification allows */
        return (int) (16 + body);
}

int proxy_header_parse(const char *buf, size_t len, union sockaddr_in46 *src, union sockaddr_in46 *dst, bool *local,
                       const char **why) {
        size_t n = len < 12 ? len : 12;

        *local = false;
        if (len == 0)
                return 0;
        if (memcmp(buf, v2_sig, n) == 0)
                return parse_v2(buf, len, src, dst, local, why);
        n = len < 6 ? len : 6;
        if (memcmp(buf, V1_SIG, n) == 0)
                return len < 6 ? 0 : parse_v1(buf, len, src, dst, local, why);
        *why = "no PROXY header";
        return -EBADMSG;
}
