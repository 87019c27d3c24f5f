/* The PROXY protocol (HAProxy's doc/proxy-protocol.txt), versions 1 (a
 * text line) and 2 (binary): a header a proxy sends before the client's
 * bytes, saying whose connection it relays. Pure functions: no sockets. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"

/* v1's longest line (with its CRLF), and the most of a v2 header tcpd
 * takes (its addresses and some TLVs, which it skips). */
#define PROXY_V1_MAX 107
#define PROXY_HEADER_MAX 1024

/* The header for a connection from src to dst (both IPv4 or both IPv6;
 * otherwise v1's UNKNOWN or v2's LOCAL form). Returns its length, at most
 * PROXY_HEADER_MAX; buf needs that room. */
size_t proxy_header_build(int version, const union sockaddr_in46 *src, const union sockaddr_in46 *dst, char *buf);

/* A header at the start of buf[0..len): its length (> 0), with the
 * client's address in *src and the one it connected to in *dst, or
 * *local set when the header says to keep the connection's own (v1's
 * UNKNOWN, v2's LOCAL, a family other than TCP over IPv4 or IPv6); 0
 * when the bytes so far may still become one (read more); -EBADMSG when
 * they cannot, with the reason in *why. */
int proxy_header_parse(const char *buf, size_t len, union sockaddr_in46 *src, union sockaddr_in46 *dst, bool *local,
                       const char **why);

/* Whether buf starts with a whole PROXY signature (v1's "PROXY " or v2's
 * twelve bytes): a header from a peer not allowed to send one. */
bool proxy_signature(const char *buf, size_t len);
