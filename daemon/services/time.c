/* time (RFC 868): the seconds since 1900-01-01 00:00 UTC as 32 bits in
 * network byte order, then the server closes. The count wraps in 2036, as
 * the RFC's clients expect. */
#include <arpa/inet.h>
#include <time.h>

#include "conn-io.h"
#include "services/service.h"

/* 1970 - 1900 in seconds: 70 years, 17 of them leap years */
#define RFC868_EPOCH_OFFSET 2208988800ULL

static void time_open(struct loop *l, struct conn *c) {
        uint32_t t = htonl((uint32_t) ((uint64_t) time(NULL) + RFC868_EPOCH_OFFSET));

        if (conn_send(l, c, (const char *) &t, sizeof(t)) == 0)
                conn_close(l, c, CLOSE_DONE); /* after what is owed, then a FIN */
}

const struct service_type service_time = {
        .open = time_open,
        .readable = conn_read_drop,
};
