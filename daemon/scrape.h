/* The metrics endpoint: GET /metrics over HTTP (see scrape.c). */
#pragma once

#include "tcpd.h"

struct scrape;

/* fd >= 0: the socket systemd passed as "metrics"; otherwise the address
 * of [metrics] listen, or nothing (*ret NULL) when there is none. Returns
 * 0, or a negative errno after logging why. */
int scrape_open(struct tcpd *t, int fd, struct scrape **ret);
struct scrape *scrape_free(struct scrape *s);
